#!/usr/bin/env python3
"""Check a finished profiling run before anyone reads its numbers.

Reads a run directory written by mac_pipeline.py / android_pipeline.py and analysed by
analyze_results.py (manifest.json, one `<experiment>_t<threads>/` folder per experiment, the
CSVs, report.md and analysis_summary.json) and checks that the run is complete and its numbers
are sound: every experiment has its files or a recorded error, latencies are positive and
finite, the median's confidence interval between processes is narrow and the rounds agree,
there are enough runs for the confidence interval, the traced Method::execute median agrees
with the untraced timing median, category shares add up to about 100 %, SME2 labels match what
ran, and each comparison makes sense for this CPU. recompute_results.py (beside this script; it runs
trace_breakdown.py, with its etdump_events.py, and timing_stats.py into a temporary folder) recomputes
every headline from the raw timing.json and trace.etdump: a derived file that disagrees is a FAIL.

Prints one row per check, PASS / WARN / FAIL (SKIP when it does not apply), with the fix for
anything that is not PASS, then a verdict and the next action (proceed, rerun, troubleshoot).
Writes validation.json and validation.md into the run directory and touches nothing else there;
a rerun replaces those two files (they are derived from the run, like the analysis outputs).
Exit status 0 when nothing FAILs, 1 otherwise.

Example:
    .venv/bin/python scripts/validate_results.py --run-dir out/quick_test/run --json
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

from rich.console import Console
from rich.table import Table

SCHEMA_VERSION = 1
TOOL = "validate_results.py"

SCRIPTS = Path(__file__).resolve().parent
# The median's 95 % CI between processes (timing_stats.py), as (high - low) / median. CV is no
# yardstick for a median: one 100x outlier makes CV huge and leaves the median where it was.
CI_WIDTH_WARN_PCT = 10.0   # a quiet machine stays below this
CI_WIDTH_FAIL_PCT = 50.0   # wider: the median is not known well enough to quote
# analyze_results.py computes a 95 % bootstrap CI of the median from this many runs; below it
# the report shows no CI. More runs give a narrower CI.
MIN_RUNS_FOR_CI = 10
RECOMMENDED_RUNS = 30
# Tracing overhead, measured with benchmarks/bench_runner.py: on a ~1 ms model the traced median
# was 0.5-2.5 % above the untraced one; on tiny models the fixed cost of recording each event
# dominates (0.3-0.9 us per operator event on a 2-core x86_64 host; 1 us leaves room for slower
# cores).
TRACE_OVERHEAD_FRACTION = 0.025
TRACE_COST_PER_OP_MS = 0.001
# Beyond the expected overhead, timing and trace runs are separate invocations, so they may
# drift apart by this much on a quiet machine; more is a WARN (FAIL with --strict).
TRACE_TOLERANCE_FRACTION = 0.10
# Medians this far apart (either way, after the overhead) measured different things: another
# model, thread count or time unit. Always a FAIL.
TRACE_MISMATCH_FACTOR = 2.0
# Category shares (including UNATTRIBUTED) are medians over runs divided by the median
# Method::execute: medians do not add up exactly, so the sum is about 100 %.
SHARE_SUM_TOLERANCE_PP = 10.0

ANALYSIS_FILES = ("ops.csv", "op_stats.csv", "categories.csv")
SUMMARY_OBJECTS = ("e2e", "trace_e2e", "categories", "kernels")  # per experiment in analysis_summary.json
RUN_LEVEL_ANALYSIS_FILES = ("report.md", "analysis_summary.json", "trace.json")
OUTPUT_FILES = ("validation.json", "validation.md")
MANIFEST_KEYS = ("schema_version", "created", "pipeline", "config", "versions", "host", "runners",
                 "experiments", "compare")
EXPERIMENT_KEYS = ("name", "threads", "dir", "runner", "model", "modes", "status", "files")
NOT_AVAILABLE_PHRASE = "SME2 not available"
EMULATED_PHRASE = "timings not meaningful"
TROUBLESHOOTING_KIT = "agentic-kits/troubleshooting-agent.md"

# Every check: stable id -> (title, what to do when it FAILs: rerun the run/analysis, or
# troubleshoot the setup first). Report order is this order.
CHECKS: dict[str, tuple[str, str]] = {
    "run_dir": ("Run directory", "troubleshoot"),
    "manifest": ("Manifest complete", "troubleshoot"),
    "experiment_status": ("Experiment status", "rerun"),
    "experiment_files": ("Experiment files", "rerun"),
    "latencies": ("Latencies positive and finite", "rerun"),
    "median_ci": ("Median CI between processes", "rerun"),
    "round_agreement": ("Rounds agree", "rerun"),
    "ci_runs": ("Runs for the confidence interval", "rerun"),
    "trace_vs_timing": ("Trace vs timing median", "rerun"),
    "category_shares": ("Category shares sum to about 100 %", "rerun"),
    "recompute": ("Derived files match the raw data", "rerun"),
    "analysis": ("Analysis outputs", "rerun"),
    "sme2_labels": ("SME2 labels match what ran", "troubleshoot"),
    "comparison": ("Comparison makes sense", "rerun"),
}

EPILOG = f"""\
checks (stable ids, also in --json and validation.json):
  {", ".join(CHECKS)}

expected metrics ranges (what a sound run looks like; the thresholds of the checks):
  median's 95 % CI width       (CI high - CI low) / median, CI resampling rounds then runs:
                               <= {CI_WIDTH_WARN_PCT:.0f} % on a quiet machine; up to {CI_WIDTH_FAIL_PCT:.0f} % noisy (WARN);
                               wider: the median is not known (FAIL); fewer than 5 rounds: WARN
  round agreement              every round's own CI of the median overlaps every other's (else WARN:
                               the machine changed between processes; quote the between-process CI)
  recomputation                every derived file (op_stats.csv, categories.csv, comparison.csv,
                               analysis_summary.json) equals its recomputation from the raw files
                               within the tolerance of recompute_results.py --help (FAIL otherwise)
  runs per experiment          >= {MIN_RUNS_FOR_CI} for a 95 % bootstrap CI of the median (fewer: no CI, FAIL);
                               < {RECOMMENDED_RUNS} gives a wide CI (WARN)
  trace vs timing median       traced Method::execute median = timing median
                               x (1 + up to {100 * TRACE_OVERHEAD_FRACTION:.1f} % tracing overhead) + up to
                               {1000 * TRACE_COST_PER_OP_MS:.0f} us per operator event, within +/-{100 * TRACE_TOLERANCE_FRACTION:.0f} % (WARN outside,
                               FAIL with --strict); more than {TRACE_MISMATCH_FACTOR:g}x apart: FAIL
  category shares              sum to 100 % +/- {SHARE_SUM_TOLERANCE_PP:g} pp (UNATTRIBUTED row included; medians
                               over runs do not add up exactly)
  SME2 ON vs OFF, SME2 CPU     speedup (OFF median / ON median) > 1 with the 95 % CI above 1.0;
                               SME path time > 0 ms for ON, 0 ms for OFF
  SME2 ON vs OFF, no SME2      no SME2 effect to measure: report.md must say "{NOT_AVAILABLE_PHRASE}"
  emulated CPU                 timings not meaningful: noise and speed checks are skipped and
                               report.md must say "{EMULATED_PHRASE}"

--json prints one document (the same as validation.json):
  {{"schema_version", "tool", "target", "created", "verdict": pass|warn|fail,
   "next_action": proceed|rerun|troubleshoot, "next_action_hint", "counts",
   "checks": [{{"id", "subject", "title", "status", "detail", "fix", "on_fail"}}],
   "facts", "thresholds", "written"}}

next_action: proceed when nothing FAILs; rerun when every FAIL is about this run's data (rerun
the experiment or the analysis, as each fix says); troubleshoot when a FAIL points at the setup
(runner, labels, manifest): see {TROUBLESHOOTING_KIT}.
outputs: validation.json and validation.md in the run directory (replaced on a rerun; nothing
else in the run directory is written).
"""


class ValidationError(Exception):
    """A run directory that cannot be checked at all; the message names the fix."""


@dataclass
class Check:
    id: str
    subject: str
    status: str  # PASS, WARN, FAIL or SKIP
    detail: str
    fix: str = ""
    title: str = ""
    on_fail: str = ""

    def __post_init__(self) -> None:
        self.title, self.on_fail = CHECKS[self.id]


@dataclass
class RunContext:
    """What every check needs to know about the run, read once."""
    run_dir: Path
    manifest: dict[str, Any]
    summary: Optional[dict[str, Any]]
    cpu: dict[str, Any]
    emulated: bool
    strict: bool
    summary_problem: Optional[str] = None  # why analysis_summary.json was set aside (summary None)
    recomputed: Optional[dict[str, Any]] = None  # recompute.json of recompute_results.py, with "stats"

    def analyze_command(self) -> str:
        return f"{kit_command('analyze_results.py')} --run-dir {self.run_dir}"

    def rerun_command(self, resume: bool = False) -> str:
        """The pipeline command that measures again: a fresh run (a new run directory, so compare
        pairs stay interleaved and this run is kept), or --resume for experiments that did not complete."""
        pipeline = Path(str(self.manifest.get("pipeline") or "mac_pipeline.py")).name
        command = f"{kit_command(pipeline)} --config {self.manifest.get('config_path') or 'CONFIG'}"
        serial = (self.manifest.get("device") or {}).get("serial")
        if serial and pipeline == "android_pipeline.py":
            command += f" --serial {serial}"
        if resume:
            return command + f" --resume --run-dir {self.run_dir}"
        return command + " (writes a new run directory)"


# ---------------------------------------------------------------- reading files

def shown_path(path: Path) -> str:
    """Relative to the working directory when inside it; symlinks kept (a venv's bin/python stays the venv's)."""
    path = Path(os.path.abspath(path))
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def kit_command(script: str) -> str:
    """`<running Python> <kit script>`: a fix line that pastes as is outside an activated venv."""
    return f"{shown_path(Path(sys.executable))} {shown_path(Path(__file__).resolve().parent / script)}"


def read_json_file(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ValidationError(f"{path}: missing {what}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ValidationError(f"{path}: cannot read {what} ({error})") from None
    except json.JSONDecodeError as error:
        raise ValidationError(f"{path}: {what} is not valid JSON (line {error.lineno})") from None
    if not isinstance(data, dict):
        raise ValidationError(f"{path}: {what} is not a JSON object")
    return data


def read_csv_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def as_float(value: Any) -> Optional[float]:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def is_positive_finite(value: Any) -> bool:
    number = as_float(value)
    return number is not None and not isinstance(value, bool) and math.isfinite(number) and number > 0


def experiments_of(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    entries = manifest.get("experiments")
    return [entry for entry in entries if isinstance(entry, dict)] if isinstance(entries, list) else []


def folder_of(entry: dict[str, Any]) -> str:
    return str(entry.get("dir") or f"{entry.get('name')}_t{entry.get('threads')}")


def ok_experiments(ctx: RunContext) -> list[dict[str, Any]]:
    return [entry for entry in experiments_of(ctx.manifest)
            if entry.get("status") == "ok" and (ctx.run_dir / folder_of(entry)).is_dir()]


def timing_latencies_from(path: Path) -> tuple[Optional[list[Any]], str]:
    """Latencies of a pipeline timing.json (rounds) or of one runner timing JSON."""
    if not path.is_file():
        return None, f"no {path.name}"
    try:
        timing = read_json_file(path, "timing JSON")
    except ValidationError as error:
        return None, str(error)
    rounds = timing.get("rounds")
    if rounds and not (isinstance(rounds, list) and all(isinstance(r, dict) for r in rounds)
                       and all(isinstance(r.get("latencies_ms"), list) for r in rounds)):
        return None, f"{path}: 'rounds' is not a list of {{round, latencies_ms: [...]}} objects"
    if rounds:
        latencies = [value for round_ in rounds for value in round_["latencies_ms"]]
    else:
        latencies = timing.get("latencies_ms") or []
    if not isinstance(latencies, list):
        return None, f"{path}: latencies_ms is not a list"
    return latencies, ""


def summary_entry(ctx: RunContext, folder: str) -> dict[str, Any]:
    return ((ctx.summary or {}).get("experiments") or {}).get(folder) or {}


# ---------------------------------------------------------------- checks

def check_manifest(ctx: RunContext) -> list[Check]:
    manifest = ctx.manifest
    problems = [f"missing key {key!r}" for key in MANIFEST_KEYS if key not in manifest]
    if manifest.get("schema_version") not in (None, SCHEMA_VERSION):
        problems.append(f"schema_version {manifest.get('schema_version')!r} is not {SCHEMA_VERSION}")
    entries = experiments_of(manifest)
    if not entries:
        problems.append("no experiments listed")
    runners = manifest.get("runners") or {}
    for entry in entries:
        missing = [key for key in EXPERIMENT_KEYS if key not in entry]
        if missing:
            problems.append(f"experiment {entry.get('name', '?')!r} lacks {', '.join(missing)}")
        if entry.get("runner") is not None and entry.get("runner") not in runners:
            problems.append(f"experiment {entry.get('name', '?')!r} names runner {entry.get('runner')!r}, "
                            "whose runner.json is not in the manifest")
    folders = {folder_of(entry) for entry in entries}
    for pair in manifest.get("compare") or []:
        for side in ("baseline", "candidate"):
            if pair.get(side) not in folders:
                problems.append(f"compare {side} {pair.get(side)!r} is not an experiment folder")
    for key in ("sme2", "emulated"):
        if key not in (ctx.cpu or {}):
            problems.append(f"host/device facts lack {key!r}")
    if problems:
        return [Check("manifest", "run", "FAIL", "; ".join(problems),
                      f"the manifest was edited or written by another kit version: rerun the pipeline "
                      f"({ctx.rerun_command()}) into a new output root")]
    if manifest.get("status") in ("running", "interrupted"):
        return [Check("manifest", "run", "FAIL",
                      f"run status {manifest['status']!r}: the pipeline did not finish (or is still running)",
                      f"wait for it to end, or continue it: {ctx.rerun_command(resume=True)}")]
    return [Check("manifest", "run", "PASS",
                  f"{len(entries)} experiment(s), {len(manifest.get('compare') or [])} compare pair(s), "
                  f"written by {manifest.get('pipeline')} on {manifest.get('created')}")]


def check_experiment_status(ctx: RunContext) -> list[Check]:
    checks = []
    for entry in experiments_of(ctx.manifest):
        folder, status = folder_of(entry), entry.get("status")
        if status == "ok":
            warnings = [str(warning) for warning in entry.get("warnings") or []]
            if (ctx.run_dir / folder).is_dir() and warnings:
                checks.append(Check("experiment_status", folder, "WARN", "ok, with pipeline warnings: " +
                                    "; ".join(warnings), "read the warnings; fix the config if they matter"))
            elif (ctx.run_dir / folder).is_dir():
                checks.append(Check("experiment_status", folder, "PASS", "ok"))
            else:
                checks.append(Check("experiment_status", folder, "FAIL",
                                    f"status ok but the folder {folder}/ is missing",
                                    f"measure again: {ctx.rerun_command()}"))
        elif status == "failed":
            error = entry.get("error")
            if error:
                checks.append(Check("experiment_status", folder, "WARN", f"failed: {error}",
                                    f"fix the recorded error, then: {ctx.rerun_command(resume=True)}"))
            else:
                checks.append(Check("experiment_status", folder, "FAIL", "failed with no recorded error",
                                    f"read {folder}/runner.log, then: {ctx.rerun_command(resume=True)}"))
        elif status == "skipped":
            checks.append(Check("experiment_status", folder, "WARN",
                                f"skipped{': ' + entry['error'] if entry.get('error') else ''}",
                                f"run it in this run directory: {ctx.rerun_command(resume=True)}"))
        else:
            checks.append(Check("experiment_status", folder, "FAIL", f"unknown status {status!r}",
                                "status must be ok, failed or skipped: rerun the pipeline"))
    return checks


def expected_files(entry: dict[str, Any], folder: Path) -> list[str]:
    """What an ok experiment folder must hold: its modes' raw files, then the analysis CSVs."""
    modes = entry.get("modes") or []
    names = ["runner.log"] + [str(name) for name in entry.get("files") or []]
    if "timing" in modes:
        names.append("timing.json")
    if "trace" in modes:
        names += ["trace.etdump", *ANALYSIS_FILES]
    if "kernels" in modes or (folder / "kernels.log").exists():
        names += ["kernels.log", "kernels.csv"]
    return list(dict.fromkeys(names))


def check_experiment_files(ctx: RunContext) -> list[Check]:
    checks = []
    for entry in ok_experiments(ctx):
        folder = ctx.run_dir / folder_of(entry)
        wanted = expected_files(entry, folder)
        missing = [file for file in wanted if not (folder / file).is_file()]
        empty = [file for file in wanted if (folder / file).is_file() and (folder / file).stat().st_size == 0
                 and file != "runner.log"]
        if not missing and not empty:
            checks.append(Check("experiment_files", folder.name, "PASS", ", ".join(wanted)))
            continue
        raw_missing = [file for file in missing + empty if file not in ANALYSIS_FILES and file != "kernels.csv"]
        fix = (f"measure again: {ctx.rerun_command()}" if raw_missing
               else f"regenerate the analysis: {ctx.analyze_command()}")
        detail = "; ".join(part for part in (f"missing {', '.join(missing)}" if missing else "",
                                             f"empty {', '.join(empty)}" if empty else "") if part)
        checks.append(Check("experiment_files", folder.name, "FAIL", detail, fix))
    missing_run_files = [file for file in RUN_LEVEL_ANALYSIS_FILES if not (ctx.run_dir / file).is_file()]
    if ctx.manifest.get("compare") and not (ctx.run_dir / "comparison.csv").is_file():
        missing_run_files.append("comparison.csv")
    if missing_run_files:
        checks.append(Check("experiment_files", "run", "FAIL", f"missing {', '.join(missing_run_files)}",
                            f"regenerate the analysis: {ctx.analyze_command()}"))
    else:
        checks.append(Check("experiment_files", "run", "PASS", "report.md, analysis_summary.json, trace.json"
                            + (", comparison.csv" if ctx.manifest.get("compare") else "")))
    return checks


def check_latencies(ctx: RunContext) -> list[Check]:
    checks = []
    for entry in ok_experiments(ctx):
        folder = ctx.run_dir / folder_of(entry)
        bad_manifest = [f"{key}={value!r}" for key, value in entry.items()
                        if key.endswith("_ms") and isinstance(value, (int, float)) and not is_positive_finite(value)]
        if "timing" not in (entry.get("modes") or []) and not (folder / "timing.json").exists():
            checks.append(Check("latencies", folder.name, "SKIP" if not bad_manifest else "FAIL",
                                "no timing mode" + (f"; manifest has {', '.join(bad_manifest)}" if bad_manifest else ""),
                                f"measure again: {ctx.rerun_command()}" if bad_manifest else ""))
            continue
        latencies, why = timing_latencies_from(folder / "timing.json")
        if latencies is None:
            checks.append(Check("latencies", folder.name, "FAIL", why, f"measure again: {ctx.rerun_command()}"))
            continue
        bad = [value for value in latencies if not is_positive_finite(value)]
        if not latencies or bad or bad_manifest:
            parts = ["no latencies"] if not latencies else []
            if bad:
                parts.append(f"{len(bad)} of {len(latencies)} latencies not positive finite numbers "
                             f"(e.g. {bad[0]!r}) in timing.json")
            if bad_manifest:
                parts.append(f"manifest has {', '.join(bad_manifest)}")
            checks.append(Check("latencies", folder.name, "FAIL", "; ".join(parts),
                                f"the runner's monotonic clock cannot give these; the file was edited or cut short: "
                                f"measure again: {ctx.rerun_command()}"))
            continue
        expected = (entry.get("runs") or 0) * (entry.get("rounds") or 1)
        count_note = "" if not expected or expected == len(latencies) else \
            f" (manifest expects {expected}: runs x rounds)"
        status = "WARN" if count_note else "PASS"
        checks.append(Check("latencies", folder.name, status,
                            f"{len(latencies)} latencies, {min(latencies):.4g}-{max(latencies):.4g} ms{count_note}",
                            f"measure again: {ctx.rerun_command()}" if count_note else ""))
    return checks


def valid_latencies(ctx: RunContext, entry: dict[str, Any]) -> Optional[list[float]]:
    latencies, _ = timing_latencies_from(ctx.run_dir / folder_of(entry) / "timing.json")
    if not latencies or not all(is_positive_finite(value) for value in latencies):
        return None
    return [float(value) for value in latencies]


def recompute(ctx: RunContext, work: Path) -> dict[str, Any]:
    """recompute_results.py's recompute.json (it writes only into `work`), plus "stats": its e2e_stats.json."""
    done = subprocess.run([sys.executable, str(SCRIPTS / "recompute_results.py"), "--run-dir", str(ctx.run_dir),
                           "--out-dir", str(work)] + ["--skip-summary"] * (ctx.summary is None),
                          capture_output=True, text=True)
    try:
        found = read_json_file(work / "recompute.json", "recomputation")
        found["stats"] = read_json_file(Path(found["e2e_stats"]), "recomputed timing statistics") \
            if found.get("e2e_stats") else {}
    except ValidationError as error:  # bad input ends recompute_results.py in one line: keep that line
        found = {"errors": [(done.stderr.strip().splitlines() or [str(error)])[-1].removeprefix("error: ")]}
    return found


def check_recompute(ctx: RunContext) -> list[Check]:
    """One row per derived file recompute_results.py compared with its recomputation."""
    rec = ctx.recomputed
    if rec is None:
        return [Check("recompute", "run", "SKIP", "nothing to recompute")]
    errors = [str(line) for line in rec.get("errors") or []]
    checks = [Check("recompute", "run", "FAIL", "recomputation failed: " + "; ".join(errors),
                    f"measure again: {ctx.rerun_command()}")] if errors else []
    fix = f"the file was edited or is stale: regenerate the analysis ({ctx.analyze_command()})"
    for entry in (entry for entry in rec.get("files") or [] if isinstance(entry, dict)):
        subject, what, problems = str(entry.get("subject")), str(entry.get("what")), list(entry.get("problems") or [])
        shown = "; ".join(map(str, problems[:3])) + (f"; and {len(problems) - 3} more" if len(problems) > 3 else "")
        checks.append(Check("recompute", subject, "FAIL", f"{what} disagrees with the raw data: {shown}", fix)
                      if problems else Check("recompute", subject, "PASS",
                                             f"{what} matches its recomputation from the raw files"))
    return checks


def check_median_ci(ctx: RunContext) -> list[Check]:
    """The median's CI between processes (recomputed from timing.json), and whether the rounds agree."""
    checks = []
    stats = ((ctx.recomputed or {}).get("stats") or {}).get("experiments") or {}
    fix = ("quiet the machine (close other apps, plug in power, let it cool), pin threads with cpu_affinity, or "
           f"raise rounds; then: {ctx.rerun_command()}")
    for entry in ok_experiments(ctx):
        folder = folder_of(entry)
        found = stats.get(folder) or {}
        if found.get("source") != "timing":
            checks.append(Check("median_ci", folder, "SKIP", "no valid timing latencies (see latencies)"))
            checks.append(Check("round_agreement", folder, "SKIP", "no timing rounds"))
            continue
        width = found.get("rel_ci_width_pct")
        detail = (f"median {found['median_ms']:.4g} ms, 95 % CI [{found['ci95_low_ms']:.4g}, {found['ci95_high_ms']:.4g}] "
                  f"ms = {width:.1f} % of the median, over {found['ci_method']} ({found['rounds']} rounds, CV "
                  f"{found['cv_pct']:.0f} %)" if width is not None else "no CI (see ci_runs)")
        if ctx.emulated:
            checks.append(Check("median_ci", folder, "SKIP", f"{detail}; emulated CPU: {EMULATED_PHRASE}"))
        elif width is None:
            checks.append(Check("median_ci", folder, "SKIP", detail))
        elif width > CI_WIDTH_FAIL_PCT:
            checks.append(Check("median_ci", folder, "FAIL",
                                f"{detail} > {CI_WIDTH_FAIL_PCT:.0f} %: the median is not known well enough", fix))
        elif width > CI_WIDTH_WARN_PCT:
            checks.append(Check("median_ci", folder, "WARN", f"{detail}: > {CI_WIDTH_WARN_PCT:.0f} %: noisy machine", fix))
        elif found["ci_method"] != "rounds, then runs":
            checks.append(Check("median_ci", folder, "WARN",
                                f"{detail}: too few rounds to see the variation between processes", fix))
        else:
            checks.append(Check("median_ci", folder, "PASS", f"{detail} (<= {CI_WIDTH_WARN_PCT:.0f} %)"))
        agree = found.get("rounds_agree")
        if ctx.emulated or agree is None:
            checks.append(Check("round_agreement", folder, "SKIP", found.get("rounds_note") or "not checked"))
        elif agree:
            checks.append(Check("round_agreement", folder, "PASS", found["rounds_note"]))
        else:
            checks.append(Check("round_agreement", folder, "WARN", found["rounds_note"], fix))
    return checks


def check_ci_runs(ctx: RunContext) -> list[Check]:
    checks = []
    for entry in ok_experiments(ctx):
        folder = folder_of(entry)
        latencies = valid_latencies(ctx, entry)
        if latencies is None:
            checks.append(Check("ci_runs", folder, "SKIP", "no valid timing latencies (see latencies)"))
            continue
        e2e = summary_entry(ctx, folder).get("e2e") or {}
        has_ci = e2e.get("ci95_low_ms") is not None and e2e.get("ci95_high_ms") is not None
        n = len(latencies)
        fix = f"raise runs (or rounds) for {entry.get('name')} in the config, then: {ctx.rerun_command()}"
        if ctx.emulated:
            checks.append(Check("ci_runs", folder, "SKIP", f"{n} runs; emulated CPU: {EMULATED_PHRASE}"))
        elif n < MIN_RUNS_FOR_CI:
            checks.append(Check("ci_runs", folder, "FAIL",
                                f"{n} runs < {MIN_RUNS_FOR_CI}: too few for a 95 % CI of the median", fix))
        elif ctx.summary is not None and not has_ci:
            checks.append(Check("ci_runs", folder, "FAIL", f"{n} runs but analysis_summary.json has no CI",
                                f"regenerate the analysis: {ctx.analyze_command()}"))
        elif n < RECOMMENDED_RUNS:
            ci = f", CI [{e2e['ci95_low_ms']:.4g}, {e2e['ci95_high_ms']:.4g}] ms" if has_ci else ""
            checks.append(Check("ci_runs", folder, "WARN",
                                f"{n} runs >= {MIN_RUNS_FOR_CI} (enough for a CI){ci}; "
                                f"< {RECOMMENDED_RUNS} gives a wide CI", fix))
        else:
            ci = f", CI [{e2e['ci95_low_ms']:.4g}, {e2e['ci95_high_ms']:.4g}] ms" if has_ci else ""
            checks.append(Check("ci_runs", folder, "PASS", f"{n} runs >= {RECOMMENDED_RUNS}{ci}"))
    return checks


def operators_per_run(folder: Path) -> Optional[int]:
    """Operator events per traced run: the instances of every op type in op_stats.csv."""
    path = folder / "op_stats.csv"
    if not path.is_file():
        return None
    total = 0
    for row in read_csv_rows(path):
        if row.get("category") != "UNATTRIBUTED":
            total += int(as_float(row.get("instances_per_run")) or 0)
    return total


def measured_overhead(folder: Path, timing_median: float) -> str:
    """The tracing overhead this run saw: the runner's own clock in the traced run vs the timing runs."""
    traced, _ = timing_latencies_from(folder / "trace_timing.json")
    if not traced or not all(is_positive_finite(value) for value in traced):
        return ""
    traced_median = statistics.median(float(value) for value in traced)
    return f"; tracing overhead in this run {100 * (traced_median / timing_median - 1):+.1f} % (trace_timing.json)"


def trace_window(timing_median: float, operators: int) -> tuple[float, float]:
    """The range a traced Method::execute median may take for a given untraced median."""
    overhead = timing_median * TRACE_OVERHEAD_FRACTION + operators * TRACE_COST_PER_OP_MS
    return (timing_median * (1 - TRACE_TOLERANCE_FRACTION),
            (timing_median + overhead) * (1 + TRACE_TOLERANCE_FRACTION))


def check_trace_vs_timing(ctx: RunContext) -> list[Check]:
    checks = []
    for entry in ok_experiments(ctx):
        folder = folder_of(entry)
        latencies = valid_latencies(ctx, entry)
        trace_e2e = summary_entry(ctx, folder).get("trace_e2e") or {}
        trace_median = as_float(trace_e2e.get("median_ms"))
        if latencies is None or trace_median is None:
            missing = "timing latencies" if latencies is None else "a traced Method::execute median in analysis_summary.json"
            checks.append(Check("trace_vs_timing", folder, "SKIP", f"no {missing}"))
            continue
        timing_median = statistics.median(latencies)
        operators = operators_per_run(ctx.run_dir / folder) or 0
        low, high = trace_window(timing_median, operators)
        ratio = trace_median / timing_median
        detail = (f"trace median {trace_median:.4g} ms vs timing median {timing_median:.4g} ms ({ratio:.3f}x); "
                  f"expected {low:.4g}-{high:.4g} ms with {operators} operator events per run"
                  + measured_overhead(ctx.run_dir / folder, timing_median))
        if ctx.emulated:
            checks.append(Check("trace_vs_timing", folder, "SKIP", f"{detail}; emulated CPU: {EMULATED_PHRASE}"))
            continue
        excess = max(trace_median / high, low / trace_median)
        if excess > TRACE_MISMATCH_FACTOR:
            checks.append(Check("trace_vs_timing", folder, "FAIL",
                                f"{detail}: more than {TRACE_MISMATCH_FACTOR:g}x off, so trace and timing measured "
                                "different things (model, threads or time unit)",
                                f"check that both modes ran the same model and runner, then: "
                                f"{ctx.rerun_command()}"))
        elif not low <= trace_median <= high:
            checks.append(Check("trace_vs_timing", folder, "FAIL" if ctx.strict else "WARN",
                                f"{detail}: outside the window (the machine's speed changed between the modes)",
                                f"quiet the machine and rerun: {ctx.rerun_command()}"))
        else:
            checks.append(Check("trace_vs_timing", folder, "PASS", detail))
    return checks


def check_category_shares(ctx: RunContext) -> list[Check]:
    checks = []
    for entry in ok_experiments(ctx):
        folder = ctx.run_dir / folder_of(entry)
        path = folder / "categories.csv"
        if not path.is_file():
            checks.append(Check("category_shares", folder.name, "SKIP", "no categories.csv (see experiment_files)"))
            continue
        rows = read_csv_rows(path)
        shares = {row.get("category", "?"): as_float(row.get("share_pct")) for row in rows}
        if not shares or any(value is None or not math.isfinite(value) for value in shares.values()):
            checks.append(Check("category_shares", folder.name, "FAIL", "categories.csv has no numeric share_pct column",
                                f"regenerate the analysis: {ctx.analyze_command()}"))
            continue
        total = sum(shares.values())
        negative = {name: value for name, value in shares.items() if value < -SHARE_SUM_TOLERANCE_PP}
        shown = ", ".join(f"{name} {value:.1f} %" for name, value in shares.items() if abs(value) >= 0.05)
        if abs(total - 100.0) > SHARE_SUM_TOLERANCE_PP:
            checks.append(Check("category_shares", folder.name, "FAIL",
                                f"shares sum to {total:.2f} %, not 100 +/- {SHARE_SUM_TOLERANCE_PP} % ({shown})",
                                f"regenerate the analysis: {ctx.analyze_command()}"))
        elif negative:
            checks.append(Check("category_shares", folder.name, "WARN",
                                f"sum {total:.2f} %, but negative shares {negative}: operator times exceed "
                                "Method::execute (nested events counted twice?)",
                                f"regenerate the analysis: {ctx.analyze_command()}"))
        else:
            checks.append(Check("category_shares", folder.name, "PASS", f"sum {total:.2f} % ({shown})"))
    return checks


def check_analysis(ctx: RunContext) -> list[Check]:
    recorded = ctx.manifest.get("analysis") or {}
    if ctx.summary is None:
        why = f" (the pipeline's analysis {recorded['status']}: {recorded.get('detail') or 'see its output'})" \
            if recorded.get("status") in ("failed", "not_run") else ""
        what = f"has the wrong shape: {ctx.summary_problem}" if ctx.summary_problem else "is missing or unreadable"
        return [Check("analysis", "run", "FAIL", f"analysis_summary.json {what}{why}",
                      f"run the analysis: {ctx.analyze_command()}")]
    checks = []
    if recorded.get("status") == "failed":
        checks.append(Check("analysis", "run", "FAIL",
                            f"the pipeline's call of analyze_results.py failed ({recorded.get('detail')}); "
                            "the analysis files may be from an earlier attempt",
                            f"rerun the analysis: {ctx.analyze_command()}"))
    if ctx.summary.get("schema_version") != SCHEMA_VERSION:
        checks.append(Check("analysis", "run", "FAIL",
                            f"analysis_summary.json schema_version {ctx.summary.get('schema_version')!r} "
                            f"is not {SCHEMA_VERSION}", f"regenerate the analysis: {ctx.analyze_command()}"))
    analysed = (ctx.summary.get("experiments") or {})
    for entry in ok_experiments(ctx):
        folder = folder_of(entry)
        if folder not in analysed:
            checks.append(Check("analysis", folder, "FAIL", "not in analysis_summary.json",
                                f"regenerate the analysis: {ctx.analyze_command()}"))
            continue
        errors = analysed[folder].get("errors") or []
        warnings = analysed[folder].get("warnings") or []
        if errors:
            checks.append(Check("analysis", folder, "FAIL", "analysis error: " + "; ".join(errors),
                                f"rerun the experiment: {ctx.rerun_command()}"))
        elif warnings:
            checks.append(Check("analysis", folder, "WARN", "analysis warnings: " + "; ".join(warnings),
                                "read the warnings in report.md"))
        else:
            checks.append(Check("analysis", folder, "PASS", "analysed without warnings"))
    report = ctx.run_dir / "report.md"
    if report.is_file():
        text = report.read_text(errors="replace")
        if not ctx.cpu.get("sme2") and NOT_AVAILABLE_PHRASE not in text:
            checks.append(Check("analysis", "report.md", "FAIL",
                                f"this CPU has no SME2 but report.md never says \"{NOT_AVAILABLE_PHRASE}\"",
                                f"regenerate the report: {ctx.analyze_command()}"))
        elif ctx.emulated and EMULATED_PHRASE not in text:
            checks.append(Check("analysis", "report.md", "FAIL",
                                f"the CPU was emulated but report.md never says \"{EMULATED_PHRASE}\"",
                                f"regenerate the report: {ctx.analyze_command()}"))
        else:
            said = [f"says \"{phrase}\"" for phrase, applies in ((NOT_AVAILABLE_PHRASE, not ctx.cpu.get("sme2")),
                                                                (EMULATED_PHRASE, ctx.emulated)) if applies]
            checks.append(Check("analysis", "report.md", "PASS", "present" + (": " + ", ".join(said) if said else "")))
    return checks


def check_sme2_labels(ctx: RunContext) -> list[Check]:
    checks = []
    cpu_sme2 = bool(ctx.cpu.get("sme2"))
    runners = ctx.manifest.get("runners") or {}
    for entry in ok_experiments(ctx):
        folder = folder_of(entry)
        label = entry.get("sme2_label")
        runner = runners.get(entry.get("runner")) or {}
        claimed = {True: "on", False: "off"}.get(runner.get("sme2_kernels")) if runner else None
        hidden = entry.get("hide_cpu_features") or []
        if "sme2" in hidden:  # the feature mask hid SME2 from this runner: OFF (the pipeline checked the mask took)
            claimed = "off"
        sme_ms = as_float(summary_entry(ctx, folder).get("sme_path_ms"))
        families = set(((summary_entry(ctx, folder).get("kernels") or {}).get("isa_families") or {}))
        path_note = f"SME path {sme_ms:.4g} ms per inference" if sme_ms is not None else "SME path not measured"
        problems = []
        if claimed is not None and label is not None and label != claimed:
            problems.append(f"labelled SME2 {label} but runner {entry.get('runner')} has sme2_kernels "
                            f"{runner.get('sme2_kernels')}")
        if entry.get("sme2_effective") and not (label == "on" and cpu_sme2):
            problems.append("sme2_effective is true but the label is not on or the CPU has no SME2")
        if label == "on" and not cpu_sme2 and "not available" not in (entry.get("note") or ""):
            problems.append("labelled SME2 on, the CPU has no SME2, and the note does not say "
                            f"\"{NOT_AVAILABLE_PHRASE} on this CPU\"")
        if label == "off" and sme_ms is not None and sme_ms > 0 and not (hidden and "sme" not in hidden):
            problems.append(f"labelled SME2 off but {sme_ms:.4g} ms per inference ran on the KleidiAI SME path")
        if label == "off" and families & {"sme", "sme2"}:
            problems.append("labelled SME2 off but registered SME/SME2 microkernels")
        if label == "on" and cpu_sme2 and "sme2" not in families and families:
            problems.append("labelled SME2 on (SME2 CPU) but registered no SME2 microkernel")
        if problems:
            checks.append(Check("sme2_labels", folder, "FAIL", "; ".join(problems),
                                "the runner is not what its label says: rebuild the pair with "
                                "scripts/build_runners.py --flavor source and check runner.json cmake_flags"))
        elif label == "on" and not cpu_sme2:
            checks.append(Check("sme2_labels", folder, "WARN",
                                f"labelled SME2 on, but {NOT_AVAILABLE_PHRASE} on this CPU: it ran without SME2 "
                                f"({path_note})",
                                "measure SME2 on an SME2 CPU (Apple M4 or an Armv9 phone with SME2)"))
        else:
            checks.append(Check("sme2_labels", folder, "PASS",
                                f"label {label or 'none'}, CPU SME2 {'yes' if cpu_sme2 else 'no'}, {path_note}"))
    return checks


def check_comparisons(ctx: RunContext) -> list[Check]:
    pairs = ctx.manifest.get("compare") or []
    if not pairs:
        return [Check("comparison", "run", "SKIP", "no compare pairs in the manifest")]
    entries = {folder_of(entry): entry for entry in experiments_of(ctx.manifest)}
    analysed = {(c.get("baseline"), c.get("candidate")): c for c in (ctx.summary or {}).get("comparisons") or []}
    checks = []
    for pair in pairs:
        base_name, cand_name = pair.get("baseline"), pair.get("candidate")
        subject = f"{base_name}->{cand_name}"
        base, cand = entries.get(base_name) or {}, entries.get(cand_name) or {}
        found = analysed.get((base_name, cand_name))
        if base.get("status") != "ok" or cand.get("status") != "ok":
            checks.append(Check("comparison", subject, "FAIL", "one side did not complete (see experiment_status)",
                                f"rerun the failed side: {ctx.rerun_command(resume=True)}"))
            continue
        if found is None:
            checks.append(Check("comparison", subject, "FAIL", "not in analysis_summary.json",
                                f"regenerate the analysis: {ctx.analyze_command()}"))
            continue
        checks.append(judge_comparison(ctx, subject, found, base, cand))
    return checks


def judge_comparison(ctx: RunContext, subject: str, found: dict[str, Any], base: dict[str, Any],
                     cand: dict[str, Any]) -> Check:
    speedup, low, high = (as_float(found.get(key)) for key in ("speedup", "ci95_low", "ci95_high"))
    if speedup is None or not math.isfinite(speedup) or speedup <= 0:
        return Check("comparison", subject, "FAIL", f"speedup {found.get('speedup')!r} is not a positive number",
                     f"regenerate the analysis: {ctx.analyze_command()}")
    ci_text = f"CI [{low:.3f}, {high:.3f}]" if low is not None and high is not None else "no CI"
    detail = f"speedup {speedup:.3f}x ({ci_text}, {found.get('rounds')} round(s))"
    if low is not None and high is not None and not low <= speedup <= high:
        return Check("comparison", subject, "FAIL", f"{detail}: the CI does not contain the speedup",
                     f"regenerate the analysis: {ctx.analyze_command()}")
    if ctx.emulated:
        return Check("comparison", subject, "WARN", f"{detail}; emulated CPU: {EMULATED_PHRASE}",
                     "measure speed on real hardware; use emulated runs for kernel paths only")
    labels = (base.get("sme2_label"), cand.get("sme2_label"))
    if set(labels) != {"on", "off"}:
        if low is None:
            return Check("comparison", subject, "WARN", f"{detail}: too few runs for a CI",
                         f"raise runs, then: {ctx.rerun_command()}")
        return Check("comparison", subject, "PASS", detail)
    if not ctx.cpu.get("sme2"):
        return Check("comparison", subject, "WARN",
                     f"{detail}; SME2 ON vs OFF on a CPU without SME2: {NOT_AVAILABLE_PHRASE}, so no SME2 effect "
                     "is measured (report.md says so)",
                     "measure SME2 on an SME2 CPU (Apple M4 or an Armv9 phone with SME2)")
    on_side = cand if labels[1] == "on" else base
    sme_ms = as_float(summary_entry(ctx, folder_of(on_side)).get("sme_path_ms"))
    if sme_ms is not None and sme_ms <= 0:
        return Check("comparison", subject, "FAIL",
                     f"{detail}; the SME2 ON side ({folder_of(on_side)}) spent 0 ms on the KleidiAI SME path",
                     "the ON runner did not use SME2 kernels: check its runner.json cmake_flags "
                     f"(XNNPACK_ENABLE_ARM_SME2=ON) and see {TROUBLESHOOTING_KIT}")
    # Speedup of ON over OFF and its CI, whichever side the config made the candidate.
    on_low, on_high = (low, high) if labels[1] == "on" else ((1 / high if high else None), (1 / low if low else None))
    if on_low is None or on_low <= 1.0:
        slower = on_high is not None and on_high < 1.0
        return Check("comparison", subject, "FAIL",
                     f"{detail}: SME2 ON is {'slower than' if slower else 'not measurably faster than'} OFF "
                     "(the CI of OFF median / ON median must lie above 1.0)",
                     f"raise runs and rounds and quiet the machine, then: {ctx.rerun_command()}; if it persists, "
                     f"see {TROUBLESHOOTING_KIT}")
    return Check("comparison", subject, "PASS",
                 f"{detail}: SME2 ON faster, SME path {sme_ms:.4g} ms per inference" if sme_ms is not None
                 else f"{detail}: SME2 ON faster")


# ---------------------------------------------------------------- putting it together

def load_context(run_dir: Path, strict: bool) -> RunContext:
    if not run_dir.is_dir():
        raise ValidationError(f"{run_dir}: no such run directory; pass the output folder a pipeline wrote "
                              "(it holds manifest.json)")
    manifest = read_json_file(run_dir / "manifest.json", "manifest")
    check_manifest_shape(run_dir / "manifest.json", manifest)
    try:
        summary: Optional[dict[str, Any]] = read_json_file(run_dir / "analysis_summary.json", "analysis summary")
    except ValidationError:
        summary = None
    problem = summary_shape_problem(summary) if summary is not None else None
    cpu = manifest.get("device") or manifest.get("host") or {}
    emulated = bool((manifest.get("device") or {}).get("emulated") or (manifest.get("host") or {}).get("emulated"))
    return RunContext(run_dir=run_dir, manifest=manifest, summary=None if problem else summary, cpu=cpu,
                      emulated=emulated, strict=strict, summary_problem=problem)


def summary_shape_problem(summary: dict[str, Any]) -> Optional[str]:
    """What in analysis_summary.json lacks the documented type (scripts/README.md), or None."""
    experiments, comparisons = summary.get("experiments") or {}, summary.get("comparisons") or []
    if not isinstance(experiments, dict) or not isinstance(comparisons, list):
        return "'experiments' must be an object and 'comparisons' a list"
    for name, entry in experiments.items():
        if not isinstance(entry, dict) or any(not isinstance(entry.get(key) or {}, dict) for key in SUMMARY_OBJECTS) \
                or any(not isinstance(entry.get(key) or [], list) for key in ("errors", "warnings")):
            return f"experiment {name!r} needs {', '.join(SUMMARY_OBJECTS)} objects and errors, warnings lists"
    if any(not isinstance(entry, dict) for entry in comparisons):
        return "an entry of 'comparisons' is not an object"
    return None


def check_manifest_shape(path: Path, manifest: dict[str, Any]) -> None:
    """Fields every check reads must have the documented types (scripts/README.md)."""
    expected = {"experiments": list, "compare": (list, type(None)), "host": (dict, type(None)),
                "device": (dict, type(None)), "runners": (dict, type(None))}
    for key, types in expected.items():
        if key in manifest and not isinstance(manifest[key], types):
            raise ValidationError(f"{path}: '{key}' has the wrong type ({type(manifest[key]).__name__}); restore "
                                  "manifest.json from the run or re-run the pipeline")
    for key in ("experiments", "compare"):
        if any(not isinstance(entry, dict) for entry in manifest.get(key) or []):
            raise ValidationError(f"{path}: an entry of '{key}' is not a JSON object; restore manifest.json "
                                  "from the run or re-run the pipeline")


def run_checks(ctx: RunContext) -> list[Check]:
    checks = [Check("run_dir", "run", "PASS", f"{ctx.run_dir} with manifest.json")]
    with tempfile.TemporaryDirectory(prefix="validate_") as work:
        ctx.recomputed = recompute(ctx, Path(work))
        checks += run_check_groups(ctx)
    return checks


def run_check_groups(ctx: RunContext) -> list[Check]:
    checks = []
    for check_id, check_group in (
            ("manifest", check_manifest), ("experiment_status", check_experiment_status),
            ("experiment_files", check_experiment_files), ("latencies", check_latencies), ("median_ci", check_median_ci),
            ("ci_runs", check_ci_runs), ("trace_vs_timing", check_trace_vs_timing),
            ("category_shares", check_category_shares), ("recompute", check_recompute), ("analysis", check_analysis),
            ("sme2_labels", check_sme2_labels), ("comparison", check_comparisons)):
        try:
            checks.extend(check_group(ctx))
        except (AttributeError, TypeError, ValueError, KeyError, IndexError) as error:
            # A field of a hand-edited or half-written JSON file has a type no kit writes: this
            # check fails in one row, and the others still run.
            checks.append(Check(check_id, "run", "FAIL", "a field of manifest.json or analysis_summary.json has the "
                                f"wrong type ({type(error).__name__}: {error})",
                                f"restore the file from the run, or rerun the analysis ({ctx.analyze_command()}) "
                                f"or the pipeline ({ctx.rerun_command()})"))
    return checks


def verdict_of(checks: list[Check]) -> tuple[str, str, str]:
    """(verdict, next action, hint) from the statuses and what each FAIL asks for."""
    failed = [check for check in checks if check.status == "FAIL"]
    if failed:
        if any(check.on_fail == "troubleshoot" for check in failed):
            return "fail", "troubleshoot", (f"fix the setup first ({TROUBLESHOOTING_KIT}); the FAIL rows name "
                                            "what is wrong")
        return "fail", "rerun", "follow each FAIL row's fix (rerun the experiment or the analysis), then validate again"
    warned = [f"{check.id} ({check.subject})" for check in checks if check.status == "WARN"]
    if warned:
        return "warn", "proceed", ("the numbers are usable; before quoting them read the WARN rows: "
                                   + ", ".join(warned))
    return "pass", "proceed", "the run is sound: read report.md"


def build_report(target: Path, checks: list[Check], ctx: Optional[RunContext]) -> dict[str, Any]:
    verdict, action, hint = verdict_of(checks)
    facts: dict[str, Any] = {"cpu_sme2": None, "emulated": None, "chip": None, "experiments": [], "compare": []}
    recompute_tolerance = None  # recompute_results.py owns the tolerance and writes it into recompute.json
    if ctx is not None:
        recompute_tolerance = ((ctx.recomputed or {}).get("tolerance") or {}).get("relative")
        facts = {"cpu_sme2": bool(ctx.cpu.get("sme2")), "emulated": ctx.emulated,
                 "chip": ctx.cpu.get("chip") or ctx.cpu.get("model"),
                 "experiments": [folder_of(entry) for entry in experiments_of(ctx.manifest)],
                 "compare": [f"{p.get('baseline')}->{p.get('candidate')}" for p in ctx.manifest.get("compare") or []]}
    return {
        "schema_version": SCHEMA_VERSION, "tool": TOOL, "target": str(target),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "verdict": verdict, "next_action": action, "next_action_hint": hint,
        "counts": {status: sum(check.status == status for check in checks) for status in ("PASS", "WARN", "FAIL", "SKIP")},
        "checks": [asdict(check) for check in checks], "facts": facts,
        "thresholds": {"ci_width_warn_pct": CI_WIDTH_WARN_PCT, "ci_width_fail_pct": CI_WIDTH_FAIL_PCT,
                       "recompute_rel_tolerance": recompute_tolerance, "min_runs_for_ci": MIN_RUNS_FOR_CI,
                       "recommended_runs": RECOMMENDED_RUNS, "trace_overhead_fraction": TRACE_OVERHEAD_FRACTION,
                       "trace_cost_per_op_ms": TRACE_COST_PER_OP_MS,
                       "trace_tolerance_fraction": TRACE_TOLERANCE_FRACTION,
                       "trace_mismatch_factor": TRACE_MISMATCH_FACTOR,
                       "share_sum_tolerance_pp": SHARE_SUM_TOLERANCE_PP, "strict": bool(ctx and ctx.strict)},
        "written": [],
    }


def markdown(report: dict[str, Any]) -> str:
    lines = [f"# Validation of {report['target']}", "",
             f"Verdict: **{report['verdict'].upper()}**; next action: **{report['next_action']}** "
             f"({report['next_action_hint']}).", "",
             f"Checked by `{TOOL}` on {report['created']}: " +
             ", ".join(f"{n} {status}" for status, n in report["counts"].items()) + ".", "",
             "| check | subject | status | detail |", "|---|---|---|---|"]
    for check in report["checks"]:
        detail = check["detail"].replace("|", "\\|")
        lines.append(f"| {check['title']} (`{check['id']}`) | {check['subject']} | {check['status']} | {detail} |")
    fixes = [check for check in report["checks"] if check["status"] in ("WARN", "FAIL") and check["fix"]]
    if fixes:
        lines += ["", "## Fixes", ""]
        lines += [f"- **{c['status']}** {c['title']} ({c['subject']}): {c['fix']}" for c in fixes]
    lines += ["", "## Thresholds", "", "Expected ranges (`python scripts/validate_results.py --help`):", ""]
    lines += [f"- `{key}`: {value}" for key, value in report["thresholds"].items()]
    return "\n".join(lines) + "\n"


def write_outputs(run_dir: Path, report: dict[str, Any]) -> Optional[str]:
    """validation.json and validation.md into the run directory; the reason when that fails."""
    report["written"] = [str(run_dir / name) for name in OUTPUT_FILES]
    try:
        for name, text in (("validation.json", json.dumps(report, indent=2) + "\n"),
                           ("validation.md", markdown(report))):
            temporary = run_dir / f".{name}.partial-{os.getpid()}"
            try:
                temporary.write_text(text)
                temporary.replace(run_dir / name)
            finally:
                if temporary.exists():
                    temporary.unlink()
    except OSError as error:
        report["written"] = []
        return f"could not write validation.json/validation.md into {run_dir}: {error.strerror}"
    return None


def print_table(console: Console, report: dict[str, Any]) -> None:
    colors = {"PASS": "green", "WARN": "yellow", "FAIL": "bold red", "SKIP": "dim"}
    table = Table(title=f"Results checks: {report['target']}")
    for column in ("Check", "Subject", "Status", "Detail"):
        table.add_column(column, overflow="fold")
    for check in report["checks"]:
        table.add_row(check["title"], check["subject"], f"[{colors[check['status']]}]{check['status']}[/]",
                      check["detail"])
    console.print(table)
    for check in report["checks"]:
        if check["status"] in ("WARN", "FAIL") and check["fix"]:
            console.print(f"[{colors[check['status']]}]{check['status']}[/] {check['title']} ({check['subject']}): "
                          f"{check['detail']}; [bold]fix:[/bold] {check['fix']}", highlight=False, soft_wrap=True)
    counts = ", ".join(f"{n} {status}" for status, n in report["counts"].items())
    color = {"pass": "green", "warn": "yellow", "fail": "bold red"}[report["verdict"]]
    console.print(f"{counts}: [{color}]{report['verdict'].upper()}[/], next action: [bold]{report['next_action']}"
                  f"[/bold] ({report['next_action_hint']})", highlight=False, soft_wrap=True)
    if report["written"]:
        console.print(f"wrote {', '.join(report['written'])}", highlight=False, soft_wrap=True)


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Check a profiling run directory after the pipeline and the analysis: PASS/WARN/FAIL per check "
                    "with the fix, a verdict and the next action. Writes validation.json and validation.md into "
                    "the run directory. Exit 0 when nothing FAILs.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", type=Path, required=True, help="run directory written by a pipeline")
    parser.add_argument("--json", action="store_true", help="print the JSON report (as in validation.json) instead "
                        "of the table")
    parser.add_argument("--strict", action="store_true",
                        help="FAIL (not WARN) when the trace median is outside its "
                             "window")
    return parser.parse_args(argv)


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    console = Console(stderr=args.json)
    try:
        return validate(args, console)
    except KeyboardInterrupt:
        console.print("[bold red]interrupted:[/bold red] no verdict was written; run the same command again",
                      highlight=False, soft_wrap=True)
        return 130


def validate(args: argparse.Namespace, console: Console) -> int:
    run_dir = args.run_dir.expanduser()
    try:
        ctx: Optional[RunContext] = load_context(run_dir, args.strict)
        checks = run_checks(ctx)
    except ValidationError as error:
        ctx = None
        checks = [Check("run_dir", "run", "FAIL", str(error),
                        "point --run-dir at the output_root of a pipeline run "
                        f"({kit_command('mac_pipeline.py')} --config CONFIG writes one); if it is one, restore its "
                        "manifest.json or run the pipeline again")]
    report = build_report(run_dir, checks, ctx)
    write_problem = write_outputs(run_dir, report) if ctx is not None else None
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_table(console, report)
    if write_problem:
        console.print(f"[yellow]warning:[/yellow] {write_problem}", highlight=False, soft_wrap=True)
    if ctx is None:
        console.print(f"[bold red]error:[/bold red] {checks[0].detail}; fix: {checks[0].fix}",
                      highlight=False, soft_wrap=True)
    return 1 if report["verdict"] == "fail" else 0


if __name__ == "__main__":
    sys.exit(main())
