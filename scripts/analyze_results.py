#!/usr/bin/env python3
"""Turn a profiling run directory (or one ETDump) into CSVs, charts, a Perfetto trace and a report.

Reads the run directory written by mac_pipeline.py / android_pipeline.py (manifest.json plus one
`<experiment>_t<threads>/` folder per experiment with timing.json, trace.etdump, runner.log and,
for kernel-log runners, kernels.log) and runs the analysis stages beside it as subprocesses:

  trace_breakdown.py  trace.etdump -> per-run operator sums, medians with CIs, operator identity
                      (owns the operator category rules and how two experiments' ops are paired;
                      it reads the ETDump through etdump_events.py)
  timing_stats.py     timing.json -> E2E medians, CIs between processes, speedups of compare pairs
  kernel_log.py       kernels.log -> kernels.csv, registered kernels per ISA family, kernel diff of a pair
  isa_evidence.py     emulated runs: the instructions each run reached (isa_evidence.json)

then adds what needs the whole run (which operators ran on the KleidiAI SME/SME2 packed path,
label checks, comparison.csv, trace.json, analysis_summary.json) and, from those files, runs the
output stages plot_analysis.py (charts/*.png) and write_report.py (report.md).

Example:
    python scripts/analyze_results.py --run-dir out/my_run
    python scripts/analyze_results.py --etdump trace.etdump --etrecord model.etrecord

Files written (run-directory mode; `--etdump` mode writes the same set into one folder):

  <experiment>/ops.csv, runs.csv, op_instances.csv, op_stats.csv, categories.csv, breakdown.json,
      trace_events.json          written by trace_breakdown.py (columns: scripts/README.md)
  <experiment>/kernels.csv     written by kernel_log.py, only when <experiment>/kernels.log exists
  e2e_stats.json               written by timing_stats.py (E2E medians, CIs, speedups)
  comparison.csv               one row per compare pair and level (e2e, category, op_type)
      pair, level, name, baseline_ms, candidate_ms, speedup, speedup_ci_low, speedup_ci_high,
      baseline_share_pct, candidate_share_pct, share_change_pp
  trace.json (Chrome trace-event format, opens in ui.perfetto.dev), analysis_summary.json (the
  headline numbers for machines; `--json` also prints it), then charts/*.png (plot_analysis.py)
  and report.md (write_report.py)

Column meanings: operator and category times are the MEDIAN over traced runs of each run's
summed exclusive time (mean and p90 beside it); shares are of the median Method::execute;
`speedup` is baseline / candidate (> 1 means the candidate is faster) and is empty when only one
side has the operator; E2E CIs resample timing rounds (processes), then runs within rounds.

Re-running: analysis outputs are derived data. In run-directory mode a re-run regenerates exactly
the files listed above; the pipeline's own files (manifest.json, timing.json, trace.etdump,
runner.log, kernels.log) are only read, never written. An output of an earlier run that this run
cannot regenerate (its trace is now unreadable) is renamed `<name>.stale` and a warning says so.
Every file is written under a temporary name and renamed, so Ctrl-C (exit 130) leaves no half file.
In `--etdump` mode each run writes a new
folder (`<etdump stem>_analysis`, then `_analysis_2`, ...) and never touches an earlier one.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import math
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

try:
    import numpy as np
    import pandas as pd
    from rich.console import Console
    from rich.table import Table
except KeyboardInterrupt:  # the imports take seconds: Ctrl-C there is a normal stop
    print("interrupted while starting: nothing was written; run the same command again", file=sys.stderr)
    sys.exit(130)

SCHEMA_VERSION = 1
SCRIPTS = Path(__file__).resolve().parent
TRACE_BREAKDOWN = SCRIPTS / "trace_breakdown.py"
TIMING_STATS = SCRIPTS / "timing_stats.py"
KERNEL_LOG = SCRIPTS / "kernel_log.py"
PLOT_ANALYSIS = SCRIPTS / "plot_analysis.py"
WRITE_REPORT = SCRIPTS / "write_report.py"
ISA_EVIDENCE = SCRIPTS / "isa_evidence.py"
# Trace and timing medians differ by the tracer's overhead; a gap this large means a unit error.
UNIT_MISMATCH_FACTOR = 3.0

UNATTRIBUTED = "UNATTRIBUTED"
CATEGORIES = ["CONV", "GEMM", "DATA_MOVEMENT", "ELEMENTWISE", "OTHER"]
# export_model.py names its exports <model>_<backend>_<dtype>.pte (and writes <stem>.json beside it).
EXPORT_NAME = re.compile(r"_(?P<backend>xnnpack|portable)_(?P<dtype>fp32|fp16|bf16|int8|int4|[a-z0-9]+)$")





class AnalysisError(Exception):
    """Bad input: the message is one line naming the problem and the fix."""


# ----------------------------------------------------------------------------- stages


def run_stage(command: list[str], what: str) -> subprocess.CompletedProcess:
    """Run an analysis stage script; its own error lines are passed on, a crash becomes one line."""
    return stage_done(subprocess.run([sys.executable, *command], capture_output=True, text=True), what)


def stage_done(done: subprocess.CompletedProcess, what: str) -> subprocess.CompletedProcess:
    if done.returncode != 0 and "error:" not in done.stderr:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise AnalysisError(f"{what} failed (exit {done.returncode}): {tail}; run that stage alone to see its "
                            "whole output, and report it if the inputs are intact")
    return done


def stage_errors(done: subprocess.CompletedProcess) -> list[str]:
    return [line.split("error:", 1)[1].strip() for line in done.stderr.splitlines() if "error:" in line]


def read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise AnalysisError(f"{path}: missing {what}; point --run-dir at a folder the pipeline wrote") from None
    except (OSError, UnicodeDecodeError) as error:
        raise AnalysisError(f"{path}: cannot read the {what} ({error}); check the file, or re-run the pipeline") from None
    except json.JSONDecodeError as error:
        raise AnalysisError(f"{path}: {what} is not valid JSON (line {error.lineno}); restore it from the run") from None
    if not isinstance(data, dict):
        raise AnalysisError(f"{path}: the {what} is a JSON {type(data).__name__}, not an object; "
                            "restore it from the run or re-run the pipeline")
    return data


# The per-entry fields the analysis reads and their types (absent or null is fine).
EXPERIMENT_FIELDS = {"name": str, "dir": str, "runner": str, "model": str, "status": str, "error": str,
                     "sme2_label": str, "threads": int}
COMPARE_FIELDS = {"baseline": str, "candidate": str}


def check_manifest_shape(path: Path, manifest: dict[str, Any]) -> None:
    """Fields the analysis reads must have the documented types (scripts/README.md), or it stops here."""
    expected = {"experiments": list, "compare": (list, type(None)), "host": (dict, type(None)),
                "device": (dict, type(None)), "runners": (dict, type(None))}
    for key, types in expected.items():
        if key in manifest and not isinstance(manifest[key], types):
            raise AnalysisError(f"{path}: '{key}' has the wrong type ({type(manifest[key]).__name__}); "
                                "restore manifest.json from the run or re-run the pipeline")
    for key in ("experiments", "compare"):
        if any(not isinstance(entry, dict) for entry in manifest.get(key) or []):
            raise AnalysisError(f"{path}: an entry of '{key}' is not a JSON object; "
                                "restore manifest.json from the run or re-run the pipeline")
    for key, fields in (("experiments", EXPERIMENT_FIELDS), ("compare", COMPARE_FIELDS)):
        for entry in manifest.get(key) or []:
            wrong = [name for name, kind in fields.items() if entry.get(name) is not None
                     and (not isinstance(entry[name], kind) or isinstance(entry[name], bool))]
            if wrong:
                raise AnalysisError(f"{path}: {', '.join(repr(name) for name in wrong)} of an entry of '{key}' has "
                                    "the wrong type; restore manifest.json from the run or re-run the pipeline")


# ----------------------------------------------------------------------------- experiments


@dataclass
class Experiment:
    """One experiment folder and everything measured about it."""
    name: str
    folder: Path
    meta: dict[str, Any]
    status: str = "ok"
    error: Optional[str] = None
    etdump: Optional[Path] = None
    timing_path: Optional[Path] = None
    e2e: Optional[dict[str, Any]] = None
    e2e_source: str = ""
    breakdown: Optional[dict[str, Any]] = None
    trace_e2e: Optional[dict[str, Any]] = None
    op_stats: Optional[pd.DataFrame] = None
    categories: Optional[pd.DataFrame] = None
    kernels: Optional[dict[str, Any]] = None  # kernel_log.py facts: count, isa_families, kleidiai, warnings
    facts: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def sme_path_ms(self) -> float:
        return 0.0 if self.categories is None else float(self.categories["sme_path_ms"].sum())

    @property
    def traced_median_ms(self) -> float:
        return float(self.breakdown["execute"]["median_ms"]) if self.breakdown else float("nan")


def cpu_facts(manifest: dict[str, Any]) -> dict[str, Any]:
    """The CPU the experiments ran on: the Android device when there is one, else the host."""
    return manifest.get("device") or manifest.get("host") or {}


def is_emulated(manifest: dict[str, Any]) -> bool:
    return bool((manifest.get("device") or {}).get("emulated") or (manifest.get("host") or {}).get("emulated"))


def cpu_has_sme(cpu: dict[str, Any]) -> bool:
    return bool(cpu.get("sme2") or cpu.get("sme"))


def model_facts(exp: Experiment) -> dict[str, str]:
    """Model file, backend, dtype and hidden CPU features of an experiment, for every report table.

    Backend and dtype come from export_model.py's `<stem>.json` beside the model, else its file
    name (`<model>_<backend>_<dtype>.pte`), else the operators the trace saw.
    """
    model = exp.meta.get("model") or ""
    facts = {"model": Path(model).name if model else "unknown", "backend": "unknown", "dtype": "unknown"}
    sidecar = Path(model).with_suffix(".json") if model else None
    if sidecar is not None and sidecar.is_file():
        try:
            data = json.loads(sidecar.read_text())
            facts["backend"] = str(data.get("backend") or "unknown")
            facts["dtype"] = str(data.get("dtype") or "unknown")
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
            pass
    match = EXPORT_NAME.search(Path(model).stem) if model else None
    if match and facts["backend"] == "unknown":
        facts["backend"], facts["dtype"] = match.group("backend"), match.group("dtype")
    if facts["backend"] == "unknown" and exp.op_stats is not None:
        backends = set(exp.op_stats["backend"]) - {""}
        facts["backend"] = "xnnpack" if backends - {"portable"} else "portable" if backends else "unknown"
    hidden = exp.meta.get("hide_cpu_features")
    if hidden is None:
        hidden = ((exp.meta.get("config") or {}).get("hide_cpu_features"))
    facts["hidden"] = ", ".join(hidden) if hidden else "none"
    return facts


def run_trace_stage(experiments: list[Experiment], pairs: list[tuple[Experiment, Experiment]], cpu: dict[str, Any],
                    etrecords: dict[str, Optional[Path]], work: Path) -> list[tuple[str, Path]]:
    """trace_breakdown.py once for every trace and compare pair (one process); returns the
    (pair name, rows CSV) of each compare."""
    traced = [e for e in experiments if e.etdump is not None]
    compares = [(f"{b.name}->{c.name}", b, c) for b, c in pairs if b.etdump is not None and c.etdump is not None]
    if not traced:
        return []
    compare_jobs = [{"pair": name, "baseline": str(b.folder), "candidate": str(c.folder),
                     "out": str(work / f"compare_{n}.csv")} for n, (name, b, c) in enumerate(compares)]
    jobs = {"traces": [{"etdump": str(e.etdump), "outdir": str(e.folder), "name": e.name,
                        "etrecord": str(etrecords[e.name]) if etrecords.get(e.name) else None} for e in traced],
            "compares": compare_jobs, "rules_out": str(work / "rules.json")}
    (work / "jobs.json").write_text(json.dumps(jobs))
    run_stage([str(TRACE_BREAKDOWN), "--jobs", str(work / "jobs.json")] + ["--cpu-has-sme"] * cpu_has_sme(cpu),
              "trace_breakdown.py")
    for exp in traced:
        try:
            exp.breakdown = read_json(exp.folder / "breakdown.json", "trace_breakdown.py output")
        except AnalysisError as error:
            exp.errors.append(str(error))
            continue
        if exp.breakdown.get("error"):
            exp.errors.append(exp.breakdown["error"])
            if exp.breakdown.get("retired"):
                exp.warnings.append("outputs of an earlier analysis that this one could not regenerate were renamed "
                                    "to *.stale: " + ", ".join(f"{exp.name}/{n}" for n in exp.breakdown["retired"]))
            exp.breakdown = None
            continue
        exp.op_stats = pd.read_csv(exp.folder / "op_stats.csv", keep_default_na=False,
                                   na_values={c: [""] for c in ("ci95_low_ms", "ci95_high_ms", "min_ms", "max_ms")})
        exp.op_stats["sme_path"] = exp.op_stats["sme_path"].astype(str) == "True"
        exp.op_stats["delegation_opportunity"] = exp.op_stats["delegation_opportunity"].astype(str) == "True"
        exp.categories = pd.read_csv(exp.folder / "categories.csv")
        exp.trace_e2e = dict(exp.breakdown["execute"], n=exp.breakdown["kept_runs"])
        exp.warnings.extend(exp.breakdown.get("warnings") or [])
    ok = {e.name for e in traced if e.breakdown}  # the stage skipped compares with a failed side
    return [(job["pair"], Path(job["out"])) for job, (_, b, c) in zip(compare_jobs, compares)
            if b.name in ok and c.name in ok]


def not_interleaved_pairs(manifest: dict[str, Any]) -> set[tuple[str, str]]:
    """Compare pairs whose timing rounds did not alternate in one session (mac_pipeline.py records
    `rounds_interleaved: false` after a --resume ran one side alone): no paired bootstrap for them."""
    return {(p.get("baseline"), p.get("candidate")) for p in manifest.get("compare") or []
            if isinstance(p, dict) and p.get("rounds_interleaved") is False}


def run_timing_stage(experiments: list[Experiment], pairs: list[tuple[Experiment, Experiment]],
                     not_interleaved: set[tuple[str, str]], out: Path) -> dict[str, Any]:
    """timing_stats.py for every experiment and pair; E2E from timing mode, else from the trace."""
    command = [str(TIMING_STATS), "--out", str(out)]
    for exp in experiments:
        if exp.timing_path is not None:
            command += ["--experiment", exp.name, str(exp.timing_path)]
        if exp.breakdown is not None:
            command += ["--trace-runs", exp.name, str(exp.folder / "runs.csv")]
    for base, cand in pairs:
        command += ["--pair", base.name, cand.name]
        if (base.name, cand.name) in not_interleaved:
            command += ["--not-interleaved", base.name, cand.name]
    if "--experiment" not in command and "--trace-runs" not in command:
        return {"experiments": {}, "pairs": []}
    run_stage(command, "timing_stats.py")
    stats = read_json(out, "timing_stats.py output")
    for exp in experiments:
        entry = (stats.get("experiments") or {}).get(exp.name)
        if not entry:
            continue
        if entry.get("error"):
            exp.errors.append(entry["error"])
            continue
        exp.e2e, exp.e2e_source = entry, entry["source"]
        exp.warnings.extend(entry.get("warnings") or [])
        if exp.e2e_source == "trace":
            exp.warnings.append("no timing.json: E2E comes from the traced runs (tracer overhead included)")
    return stats


def check_units(exp: Experiment) -> None:
    if exp.e2e_source == "timing" and exp.breakdown:
        ratio = exp.traced_median_ms / exp.e2e["median_ms"]
        if not 1 / UNIT_MISMATCH_FACTOR <= ratio <= UNIT_MISMATCH_FACTOR:
            exp.warnings.append(f"traced Method::execute median is {ratio:.2f}x the timing median: check the "
                                "ETDump time unit and that both files come from the same model and runner")


def run_kernel_stage(experiments: list[Experiment], pairs: list[tuple[Experiment, Experiment]], work: Path) -> None:
    """kernel_log.py: kernels.log -> kernels.csv per experiment, kernel facts (families, pair diffs) in work/."""
    logged = [e for e in experiments if (e.folder / "kernels.log").exists()]
    if not logged:
        return
    command = [str(KERNEL_LOG), "--out", str(work / "kernel_facts.json"), "--quiet"]
    for exp in logged:
        command += ["--experiment", exp.name, str(exp.folder)]
    names = {e.name for e in logged}
    for base, cand in pairs:
        if base.name in names and cand.name in names:
            command += ["--pair", base.name, cand.name]
    run_output_stage(command, "kernel_log.py")
    facts = read_json(work / "kernel_facts.json", "kernel_log.py output")["experiments"]
    for exp in logged:
        exp.kernels = facts.get(exp.name)


def write_csv(table: pd.DataFrame, path: Path) -> None:
    # 10 significant digits keep nanosecond resolution for durations up to seconds.
    write_text_atomic(path, table.to_csv(index=False, float_format="%.10g"))


def write_text_atomic(path: Path, text: str) -> None:
    """Temporary file + rename: an interrupted or failed write never leaves a half file behind."""
    temporary = path.with_name(f".{path.name}.partial-{os.getpid()}")
    try:
        temporary.write_text(text)
        temporary.replace(path)
    finally:
        if temporary.exists():
            temporary.unlink()


# ----------------------------------------------------------------------------- comparisons


@dataclass
class Comparison:
    baseline: Experiment
    candidate: Experiment
    speedup: dict[str, Any]
    rows: pd.DataFrame
    narrative: str
    warnings: list[str] = field(default_factory=list)

    @property
    def pair(self) -> str:
        return f"{self.baseline.name}->{self.candidate.name}"


COMPARISON_COLUMNS = ["pair", "level", "name", "baseline_ms", "candidate_ms", "speedup", "speedup_ci_low",
                      "speedup_ci_high", "baseline_share_pct", "candidate_share_pct", "share_change_pp"]


def e2e_row(pair: str, base: Experiment, cand: Experiment, speedup: dict[str, Any]) -> dict[str, Any]:
    return {"pair": pair, "level": "e2e", "name": "E2E median", "baseline_ms": base.e2e["median_ms"],
            "candidate_ms": cand.e2e["median_ms"], "speedup": speedup["speedup"],
            "speedup_ci_low": speedup["ci95_low"], "speedup_ci_high": speedup["ci95_high"],
            "baseline_share_pct": 100.0, "candidate_share_pct": 100.0, "share_change_pp": 0.0}


def category_narrative(base: Experiment, cand: Experiment, rows: pd.DataFrame) -> str:
    """How the category shares moved and which category is largest, from numbers with CIs."""
    if base.breakdown is None or cand.breakdown is None:
        return "No trace for one side of the pair: no category breakdown."
    cats = rows[(rows["level"] == "category") & rows["name"].isin(CATEGORIES)]
    cats = cats[(cats["baseline_ms"] > 0) | (cats["candidate_ms"] > 0)]
    if cats.empty:
        return "No operator time in either trace."
    moved = cats.loc[cats["share_change_pp"].abs().idxmax()]
    direction = "fell" if moved["share_change_pp"] < 0 else "rose"
    return (f"{moved['name']} {direction} from {moved['baseline_share_pct']:.0f} % to "
            f"{moved['candidate_share_pct']:.0f} % of the median traced inference. {cand.name}: "
            f"{cand.breakdown['largest_sentence']}; {base.name}: {base.breakdown['largest_sentence']}.")


def packed_path_warnings(exp: Experiment, cpu: dict[str, Any]) -> list[str]:
    """Red warnings when the ETDump's op names contradict the experiment's SME2 label.

    XNNPACK takes the KleidiAI packed path (PF32/PF16/PQS8 op names) on any CPU with SME or SME2,
    so an ON experiment with XNNPACK conv/matmul ops on such a CPU must show some packed-path time.
    """
    if exp.op_stats is None:
        return []
    label = exp.meta.get("sme2_label")
    has_matmul = bool(((exp.op_stats["backend"] == "XNNPACK") & exp.op_stats["category"].isin(["CONV", "GEMM"])).any())
    sme_ops = exp.op_stats[exp.op_stats["sme_path"]]
    if label == "on" and cpu_has_sme(cpu) and has_matmul and sme_ops.empty:
        which = "SME2" if cpu.get("sme2") else "SME"
        return [f"labelled SME2 ON on a CPU with {which}, yet no operator ran on the KleidiAI packed path "
                "(no PF32/PF16/PQS8 op names): check the runner's SME2/SME flags"]
    hidden = exp.meta.get("hide_cpu_features") or []
    if label == "off" and not sme_ops.empty and not (hidden and "sme" not in hidden):  # SME1 level: packed path expected
        return [f"labelled SME2 OFF, yet {len(sme_ops)} op type(s) ran on the KleidiAI SME packed "
                "path: the OFF runner still has SME kernels"]
    return []


def sme_checks(base: Experiment, cand: Experiment, cpu: dict[str, Any]) -> list[str]:
    """Red warnings when an SME2 ON/OFF pair is not what its labels say (registered kernels)."""
    warnings_out = []
    labels = {base.meta.get("sme2_label"), cand.meta.get("sme2_label")}
    for exp in (base, cand):
        label = exp.meta.get("sme2_label")
        if exp.kernels is not None and labels == {"on", "off"}:
            families = set(exp.kernels["isa_families"])
            if label == "on" and exp.meta.get("sme2_effective") and "sme2" not in families:
                warnings_out.append(f"{exp.name} (SME2 ON) registered no SME2 microkernel: the comparison is not "
                                    "what its labels say")
            if label == "off" and families & {"sme2", "sme"}:
                warnings_out.append(f"{exp.name} (SME2 OFF) registered SME/SME2 microkernels: the comparison is not "
                                    "what its labels say")
    if "on" in labels and cpu and not cpu.get("sme2"):
        warnings_out.append("SME2 not available on this CPU: the SME2 ON experiment cannot use SME2 kernels")
    return warnings_out


def build_comparisons(pairs: list[tuple[Experiment, Experiment]], stats: dict[str, Any],
                      compare_csvs: list[tuple[str, Path]], cpu: dict[str, Any]) -> list[Comparison]:
    by_pair = {}
    for entry in stats.get("pairs") or []:
        by_pair[(entry["baseline"], entry["candidate"])] = entry
    csvs = dict(compare_csvs)
    comparisons = []
    for base, cand in pairs:
        speedup = by_pair.get((base.name, cand.name))
        if not base.e2e or not cand.e2e or speedup is None or speedup.get("error"):
            continue
        pair = f"{base.name}->{cand.name}"
        rows = pd.DataFrame([e2e_row(pair, base, cand, speedup)], columns=COMPARISON_COLUMNS)
        if pair in csvs:
            rows = pd.concat([rows, pd.read_csv(csvs[pair])], ignore_index=True)
        comparison = Comparison(base, cand, speedup, rows, category_narrative(base, cand, rows))
        comparison.warnings = list(speedup.get("warnings") or []) + sme_checks(base, cand, cpu)
        if speedup.get("source") == "trace":
            comparison.warnings.append("speedup from traced runs (no timing.json on both sides): tracer overhead "
                                       "included")
        comparisons.append(comparison)
    return comparisons


# ----------------------------------------------------------------------------- trace.json


def chrome_trace(experiments: list[Experiment]) -> dict[str, Any]:
    """Chrome trace-event JSON: one process per experiment (trace_breakdown.py's trace_events.json)."""
    events: list[dict[str, Any]] = []
    for pid, exp in enumerate((e for e in experiments if e.breakdown), start=1):
        path = exp.folder / "trace_events.json"
        try:
            for event in json.loads(path.read_text()):
                events.append(dict(event, pid=pid))
        except (OSError, json.JSONDecodeError):
            exp.warnings.append(f"{path.name} unreadable: this experiment is missing from trace.json")
    return {"traceEvents": events, "displayTimeUnit": "ms",
            "otherData": {"producer": "analyze_results.py", "time_unit": "microseconds"}}


# ----------------------------------------------------------------------------- terminal summary


def is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def fmt_ms(value: Optional[float]) -> str:
    """E2E times from the runner's clock: 4 significant digits."""
    return "n/a" if is_missing(value) else f"{value:.4g}"


def fmt_ci(low: Optional[float], high: Optional[float], fmt: Any = fmt_ms) -> str:
    return "n/a (too few runs)" if is_missing(low) or is_missing(high) else f"[{fmt(low)}, {fmt(high)}]"


def fmt_ratio(value: float) -> str:
    """3 significant digits, never in exponent notation (a speedup of 5070, not 5.07e+03)."""
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"


def fmt_speedup(value: Optional[float]) -> str:
    return "" if is_missing(value) else f"{fmt_ratio(value)}x"


def run_isa_evidence(run_dir: Path) -> list[str]:
    """Emulated runs: scripts/isa_evidence.py (the owner of instruction classes) writes isa_evidence.json.
    Returns warnings: why the instruction-level evidence is missing, if it is."""
    if not any(run_dir.glob("*/qemu_in_asm.log")):
        return []
    script = ISA_EVIDENCE
    if not script.is_file():
        return [f"{script} not found: no instruction-level evidence for the emulated runs; get scripts/isa_evidence.py"]
    result = subprocess.run([sys.executable, str(script), "--run-dir", str(run_dir), "--quiet"],
                            capture_output=True, text=True)
    errors = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    return [f"isa_evidence.py: {line}" for line in errors] if result.returncode else []


# ----------------------------------------------------------------------------- summary


def jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return None if math.isnan(float(value)) else float(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def summary_dict(source: str, manifest: dict[str, Any], experiments: list[Experiment],
                 comparisons: list[Comparison], all_warnings: list[str], errors: list[str], top_n: int) -> dict:
    cpu = cpu_facts(manifest)
    exps = {}
    for exp in experiments:
        entry: dict[str, Any] = {"status": exp.status, "error": exp.error, "dir": exp.folder.name,
                                 "threads": exp.meta.get("threads"), "sme2_label": exp.meta.get("sme2_label"),
                                 "sme2_effective": exp.meta.get("sme2_effective"),
                                 "model": exp.facts.get("model"), "backend": exp.facts.get("backend"),
                                 "dtype": exp.facts.get("dtype"), "hide_cpu_features": exp.facts.get("hidden"),
                                 "e2e_source": exp.e2e_source or None,
                                 "e2e": {k: v for k, v in (exp.e2e or {}).items() if k != "warnings"} or None,
                                 "trace_e2e": exp.trace_e2e, "warnings": exp.warnings, "errors": exp.errors}
        if exp.categories is not None:
            entry["categories"] = {r["category"]: {"ms_per_inference": r["ms_per_inference"], "share_pct": r["share_pct"],
                                                   "share_ci95_low_pct": r["share_ci95_low_pct"],
                                                   "share_ci95_high_pct": r["share_ci95_high_pct"],
                                                   "sme_path_ms": r["sme_path_ms"]}
                                   for _, r in exp.categories.iterrows()}
            entry["category_share_sum_pct"] = float(exp.categories["share_pct"].sum())
            entry["largest_category"] = exp.breakdown["largest"]
            entry["largest_category_sentence"] = exp.breakdown["largest_sentence"]
            entry["category_ranking"] = exp.breakdown["ranking"]
            entry["top_ops"] = [{"op_type": r["op_type"], "category": r["category"], "backend": r["backend"],
                                 "kernel_path": r["kernel_path"], "instances_per_run": r["instances_per_run"],
                                 "ms_per_inference": r["ms_per_inference"], "share_of_e2e_pct": r["share_of_e2e_pct"]}
                                for _, r in exp.op_stats[exp.op_stats["category"] != UNATTRIBUTED].head(top_n).iterrows()]
            entry["sme_path_ms"] = exp.sme_path_ms
            entry["sme_path_share_pct"] = 100.0 * exp.sme_path_ms / exp.traced_median_ms
            entry["portable_ops"] = exp.op_stats[exp.op_stats["backend"] == "portable"]["op_type"].tolist()
            entry["traced_runs"] = exp.breakdown["traced_runs"]
            entry["outlier_runs"] = [o["run"] for o in exp.breakdown["outlier_runs"]]
        if exp.kernels is not None:
            entry["kernels"] = {key: exp.kernels[key] for key in ("count", "isa_families", "kleidiai")}
        exps[exp.name] = entry
    comps = []
    for c in comparisons:
        cats = c.rows[c.rows["level"] == "category"]
        comps.append({"pair": c.pair, "baseline": c.baseline.name, "candidate": c.candidate.name,
                      "speedup": c.speedup["speedup"], "ci95_low": c.speedup["ci95_low"],
                      "ci95_high": c.speedup["ci95_high"], "rounds": c.speedup["rounds"],
                      "method": c.speedup["method"],
                      "emulated": is_emulated(manifest), "narrative": c.narrative, "warnings": c.warnings,
                      "categories": {r["name"]: {"baseline_ms": r["baseline_ms"], "candidate_ms": r["candidate_ms"],
                                                 "speedup": r["speedup"], "speedup_ci_low": r["speedup_ci_low"],
                                                 "speedup_ci_high": r["speedup_ci_high"],
                                                 "share_change_pp": r["share_change_pp"]}
                                     for _, r in cats.iterrows()}})
    return jsonable({"schema_version": SCHEMA_VERSION, "source": source,
                     "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                     "cpu": {"chip": cpu.get("chip"), "sme2": bool(cpu.get("sme2")), "sme": bool(cpu.get("sme"))},
                     "sme2_available": bool(cpu.get("sme2")), "emulated": is_emulated(manifest),
                     "experiments": exps, "comparisons": comps, "warnings": all_warnings, "errors": errors})


def print_summary(console: Console, experiments: list[Experiment], comparisons: list[Comparison],
                  all_warnings: list[str], emulated: bool, out_dir: Path) -> None:
    table = Table(title="End-to-end latency per inference (ms)")
    table.add_column("experiment", no_wrap=True)
    for column in ("model", "runs/rounds", "median", "95 % CI", "largest category", "SME path"):
        table.add_column(column, justify="right")
    for exp in experiments:
        if not exp.e2e:
            table.add_row(exp.name, exp.facts.get("model", ""), f"[red]{exp.status}[/red]", "", "", "", "")
            continue
        s = exp.e2e
        largest, sme = "", ""
        if exp.breakdown is not None:
            largest = exp.breakdown["largest"] or "no clear largest"
            sme = f"{100.0 * exp.sme_path_ms / exp.traced_median_ms:.0f} %"
        table.add_row(exp.name, f"{exp.facts.get('model')} ({exp.facts.get('dtype')})", f"{s['n']}/{s['rounds']}",
                      fmt_ms(s["median_ms"]), fmt_ci(s["ci95_low_ms"], s["ci95_high_ms"]), largest, sme)
    console.print(table)
    if comparisons:
        if emulated:
            console.print("[bold yellow]emulated: timings not meaningful[/bold yellow] (the CPU was emulated; "
                          "the speedups below only show that the flow works)", soft_wrap=True)
        comp_table = Table(title="Speedup = baseline / candidate")
        comp_table.add_column("pair", no_wrap=True)
        comp_table.add_column("speedup", justify="right")
        comp_table.add_column("95 % CI", justify="right")
        for c in comparisons:
            comp_table.add_row(c.pair, fmt_speedup(c.speedup["speedup"]),
                               fmt_ci(c.speedup["ci95_low"], c.speedup["ci95_high"], fmt_ratio))
        console.print(comp_table)
        for c in comparisons:
            console.print(f"[bold]{c.pair}[/bold]: {c.narrative}", soft_wrap=True)
    for warning in all_warnings:
        console.print(f"[bold red]WARNING:[/bold red] {warning}", soft_wrap=True)
    console.print(f"Report: [bold]{out_dir / 'report.md'}[/bold]")


# ----------------------------------------------------------------------------- inputs

def experiments_from_run_dir(run_dir: Path, manifest: dict[str, Any]) -> list[Experiment]:
    if manifest.get("schema_version") != SCHEMA_VERSION:
        raise AnalysisError(f"{run_dir / 'manifest.json'}: schema_version {manifest.get('schema_version')!r} is not "
                            f"{SCHEMA_VERSION}; analyse it with the kit version that wrote it")
    entries = manifest.get("experiments")
    if not isinstance(entries, list) or not entries:
        raise AnalysisError(f"{run_dir / 'manifest.json'}: no experiments listed; re-run the pipeline")
    experiments = []
    for entry in entries:
        folder_name = entry.get("dir") or f"{entry.get('name')}_t{entry.get('threads')}"
        if folder_name in (".", "..") or "/" in folder_name or "\\" in folder_name:
            # The analysis writes into each experiment's folder: it must lie directly in the run directory.
            raise AnalysisError(f"{run_dir / 'manifest.json'}: experiment folder {folder_name!r} is not a folder "
                                "name in the run directory; restore manifest.json from the run or re-run the pipeline")
        exp = Experiment(name=folder_name, folder=run_dir / folder_name, meta=entry,
                         status=entry.get("status", "ok"), error=entry.get("error"))
        if exp.status == "ok" and not exp.folder.is_dir():
            exp.status, exp.error = "failed", f"folder {folder_name}/ is missing from the run directory"
        experiments.append(exp)
    return experiments


def etrecord_for(exp: Experiment, override: Optional[Path]) -> Optional[Path]:
    """--etrecord when given, else `<model>.etrecord` beside the experiment's model, when it exists.

    An ETRecord of another model reads without error and silently mislabels operators, so one whose
    export metadata (the .json export_model.py writes beside it) names a different .pte is refused.
    """
    model = Path(exp.meta["model"]) if isinstance(exp.meta.get("model"), str) else None
    etrecord = override or (model.with_suffix(".etrecord") if model else None)
    if etrecord is None or not etrecord.is_file():
        return None
    problem = etrecord_model_mismatch(etrecord, model)
    if problem:
        exp.errors.append(problem)
        return None
    return etrecord


def etrecord_model_mismatch(etrecord: Path, model: Optional[Path]) -> Optional[str]:
    """Why this ETRecord does not belong to this .pte, when its export metadata can tell."""
    metadata_path = etrecord.with_suffix(".json")
    if model is None or not model.is_file() or not metadata_path.is_file():
        return None
    try:
        files = json.loads(metadata_path.read_text()).get("files") or {}
    except (OSError, ValueError, AttributeError):
        return None
    recorded = files.get("pte_sha256") if isinstance(files, dict) else None
    if not isinstance(recorded, str):
        return None
    if hashlib.sha256(model.read_bytes()).hexdigest() != recorded:
        return (f"{etrecord}: this ETRecord belongs to another model (its export, {metadata_path.name}, made a "
                f".pte other than {model}); pass the .etrecord exported with {model.name}, or leave --etrecord out")
    return None


def pairs_to_compare(experiments: list[Experiment], manifest: dict[str, Any], baseline: Optional[str],
                     candidate: Optional[str]) -> list[tuple[str, str]]:
    names = {e.name for e in experiments} | {e.meta.get("name") for e in experiments}
    if baseline or candidate:
        if not (baseline and candidate):
            raise AnalysisError("give both --baseline and --candidate (experiment folder names), or neither")
        for name in (baseline, candidate):
            if name not in names:
                raise AnalysisError(f"--baseline/--candidate {name!r} is not an experiment of this run "
                                    f"(have: {', '.join(sorted(e.name for e in experiments))})")
        return [(baseline, candidate)]
    return [(p["baseline"], p["candidate"]) for p in manifest.get("compare") or []]


def find_experiment(experiments: list[Experiment], name: str) -> Optional[Experiment]:
    return next((e for e in experiments if e.name == name), None) or \
        next((e for e in experiments if e.meta.get("name") == name), None)




def fresh_outdir(etdump: Path, requested: Optional[Path]) -> Path:
    """A folder that holds no earlier analysis: --outdir if new/empty, else `<stem>_analysis[_N]` beside the ETDump."""
    if requested is not None:
        if requested.exists() and any(requested.iterdir()):
            raise AnalysisError(f"{requested}: already holds files; pass a new --outdir (earlier results are kept)")
        return requested
    base = etdump.parent / f"{etdump.stem}_analysis"
    candidate, n = base, 2
    while candidate.exists():
        candidate, n = base.with_name(f"{base.name}_{n}"), n + 1
    return candidate


# ----------------------------------------------------------------------------- main


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    doc_lines = (__doc__ or "").split("\n")
    epilog = "\n".join(doc_lines[doc_lines.index("Files written (run-directory mode; `--etdump` mode writes the "
                                                  "same set into one folder):"):])
    parser = argparse.ArgumentParser(
        description="Analyse ExecuTorch profiling results: E2E statistics, operator and category breakdown, "
                    "SME2 ON/OFF comparison, kernel view, charts, Perfetto trace and a Markdown report.",
        epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--run-dir", type=Path, help="run directory written by a pipeline (holds manifest.json)")
    source.add_argument("--etdump", type=Path, help="analyse one ETDump file without a run directory")
    parser.add_argument("--etrecord", type=Path, help="ETRecord of the model (adds backend names); in --run-dir mode "
                        "it applies to every experiment, otherwise <model>.etrecord beside each model is used")
    parser.add_argument("--baseline", help="experiment folder to compare from (default: the manifest's compare list)")
    parser.add_argument("--candidate", help="experiment folder to compare to")
    parser.add_argument("--top", type=int, default=10, help="operators in the top-N tables and charts (default 10)")
    parser.add_argument("--outdir", type=Path, help="--etdump mode: output folder (default: a new "
                        "<etdump stem>_analysis folder beside the ETDump)")
    parser.add_argument("--json", action="store_true", help="print analysis_summary.json to stdout "
                        "(the terminal summary then goes to stderr)")
    args = parser.parse_args(argv)
    if args.top < 1:
        parser.error("--top must be >= 1")
    if args.outdir and not args.etdump:
        parser.error("--outdir is for --etdump mode; run-directory outputs go into the run directory")
    return args


def prepare_inputs(args: argparse.Namespace) -> tuple[dict[str, Any], list[Experiment], Path, str]:
    """Manifest, experiments, output folder and a label of the source, for either mode."""
    if args.etrecord and not args.etrecord.is_file():
        raise AnalysisError(f"{args.etrecord}: no such ETRecord; pass the .etrecord export_model.py wrote, "
                            "or leave --etrecord out")
    if args.etdump:
        if not args.etdump.is_file():
            raise AnalysisError(f"{args.etdump}: no such ETDump file; pass the trace.etdump the runner wrote with "
                                "--etdump_path")
        out_dir = fresh_outdir(args.etdump, args.outdir)
        out_dir.mkdir(parents=True)
        exp = Experiment(name=args.etdump.stem, folder=out_dir, meta={"name": args.etdump.stem}, etdump=args.etdump)
        exp.warnings.append("single ETDump: QP8 operators are not counted as SME path because the CPU is unknown")
        return {}, [exp], out_dir, str(args.etdump)
    run_dir = args.run_dir
    if not run_dir.is_dir():
        raise AnalysisError(f"{run_dir}: no such run directory; pass the output folder a pipeline wrote")
    manifest = read_json(run_dir / "manifest.json", "manifest")
    check_manifest_shape(run_dir / "manifest.json", manifest)
    experiments = experiments_from_run_dir(run_dir, manifest)
    for exp in experiments:
        if exp.status == "ok":
            exp.etdump = exp.folder / "trace.etdump" if (exp.folder / "trace.etdump").exists() else None
            exp.timing_path = exp.folder / "timing.json" if (exp.folder / "timing.json").exists() else None
    return manifest, experiments, run_dir, str(run_dir)


def analyze(args: argparse.Namespace, manifest: dict[str, Any], experiments: list[Experiment], out_dir: Path,
            work: Path, console: Console) -> tuple[list[Comparison], dict[str, Any]]:
    """Run the stages, then read what they wrote: (comparisons, timing statistics)."""
    cpu = cpu_facts(manifest)
    pairs = []
    for base_name, cand_name in pairs_to_compare(experiments, manifest, args.baseline, args.candidate):
        base, cand = find_experiment(experiments, base_name), find_experiment(experiments, cand_name)
        if base is not None and cand is not None and base.status == "ok" and cand.status == "ok":
            pairs.append((base, cand))
    etrecords = {e.name: etrecord_for(e, args.etrecord) for e in experiments}
    if not args.etdump:  # a bad single ETDump must give exactly one line
        console.print("Reading ETDumps (trace_breakdown.py)...")
    ok = [e for e in experiments if e.status == "ok"]
    compare_csvs = run_trace_stage(ok, pairs, cpu, etrecords, work)
    stats = run_timing_stage(ok, pairs, not_interleaved_pairs(manifest), out_dir / "e2e_stats.json")
    run_kernel_stage(ok, pairs, work)
    for exp in experiments:
        if exp.status == "ok":
            check_units(exp)
            exp.warnings += (exp.kernels or {}).get("warnings") or []
            exp.warnings += packed_path_warnings(exp, cpu)
        exp.facts = model_facts(exp)
    return build_comparisons(pairs, stats, compare_csvs, cpu), stats


def run_output_stage(command: list[str], what: str) -> None:
    """A stage whose files the analysis needs (kernels, charts, report): its error line stops the analysis."""
    check_output_stage(run_stage(command, what), what)


def check_output_stage(done: subprocess.CompletedProcess, what: str) -> None:
    if done.returncode != 0:
        problem, _, fix = stage_errors(done)[0].partition("; ")
        raise AnalysisError(f"{what}: {problem}; {fix or 'run that stage alone to see its whole output'}")


def write_outputs(args: argparse.Namespace, out_dir: Path, work: Path, stats: dict[str, Any]) -> None:
    """charts/*.png (plot_analysis.py) and report.md (write_report.py), from the files written so far; the two
    read the same files and write different ones, so they run side by side."""
    summary = out_dir / "analysis_summary.json"
    plot = subprocess.Popen([sys.executable, str(PLOT_ANALYSIS), "--summary", str(summary), "--top", str(args.top),
                             "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        write_report_stage(args, out_dir, work, stats)
    finally:
        stdout, stderr = plot.communicate()
    check_output_stage(stage_done(subprocess.CompletedProcess(plot.args, plot.returncode, stdout, stderr),
                                  "plot_analysis.py"), "plot_analysis.py")


def write_report_stage(args: argparse.Namespace, out_dir: Path, work: Path, stats: dict[str, Any]) -> None:
    summary = out_dir / "analysis_summary.json"
    command = [str(WRITE_REPORT), "--summary", str(summary), "--top", str(args.top)]
    inputs = {"--manifest": None if args.etdump else out_dir / "manifest.json", "--rules": work / "rules.json",
              "--e2e-stats": out_dir / "e2e_stats.json" if stats.get("bootstrap") else None,
              "--kernel-facts": work / "kernel_facts.json"}
    for flag, path in inputs.items():
        if path is not None and path.is_file():
            command += [flag, str(path)]
    run_output_stage(command, "write_report.py")


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    console = Console(stderr=args.json)
    try:
        return run_analysis(args, console)
    except KeyboardInterrupt:
        console.print("[bold red]interrupted:[/bold red] the analysis stopped; the run's measurements are untouched, "
                      "run the same command again to regenerate the outputs", soft_wrap=True)
        return 130
    except OSError as error:
        console.print(f"[bold red]error:[/bold red] could not write {error.filename or 'the outputs'} "
                      f"({error.strerror or error}); free disk space or fix the folder's permissions, then run "
                      "the same command again", soft_wrap=True)
        return 1


def run_analysis(args: argparse.Namespace, console: Console) -> int:
    """Read, run the stages, write; bad input ends in one error line (exit 1)."""
    with tempfile.TemporaryDirectory(prefix="analysis_") as tmp:
        return analyze_and_write(args, console, Path(tmp))


def analyze_and_write(args: argparse.Namespace, console: Console, work: Path) -> int:
    try:
        manifest, experiments, out_dir, source = prepare_inputs(args)
        comparisons, stats = analyze(args, manifest, experiments, out_dir, work, console)
    except AnalysisError as error:
        console.print(f"[bold red]error:[/bold red] {error}", soft_wrap=True)
        return 1
    if args.etdump and experiments[0].errors:
        for stale in out_dir.iterdir():  # nothing of this failed analysis stays behind
            stale.unlink()
        out_dir.rmdir()
        console.print(f"[bold red]error:[/bold red] {experiments[0].errors[0]}", soft_wrap=True)
        return 1

    all_warnings, errors = [], []
    for exp in experiments:
        if exp.status != "ok":
            all_warnings.append(f"{exp.name}: {exp.status} in the manifest ({exp.error or 'no error recorded'})")
        all_warnings += [f"{exp.name}: {w}" for w in exp.warnings]
        errors += exp.errors
    compared = {(c.baseline.name, c.candidate.name) for c in comparisons}
    for base_name, cand_name in pairs_to_compare(experiments, manifest, args.baseline, args.candidate):
        base, cand = find_experiment(experiments, base_name), find_experiment(experiments, cand_name)
        if base is None or cand is None or (base.name, cand.name) not in compared:
            all_warnings.append(f"comparison {base_name} -> {cand_name} skipped: one side has no results")
    for c in comparisons:
        all_warnings += [f"{c.pair}: {w}" for w in c.warnings]

    if not args.etdump:
        all_warnings += run_isa_evidence(out_dir)
    if comparisons:
        write_csv(pd.concat([c.rows for c in comparisons], ignore_index=True), out_dir / "comparison.csv")
    write_text_atomic(out_dir / "trace.json", json.dumps(chrome_trace(experiments)))
    summary = summary_dict(source, manifest, experiments, comparisons, all_warnings, errors, args.top)
    write_text_atomic(out_dir / "analysis_summary.json", json.dumps(summary, indent=2) + "\n")
    try:
        write_outputs(args, out_dir, work, stats)
    except AnalysisError as error:
        console.print(f"[bold red]error:[/bold red] {error}", soft_wrap=True)
        return 1

    print_summary(console, experiments, comparisons, all_warnings, is_emulated(manifest), out_dir)
    for error in errors:
        console.print(f"[bold red]error:[/bold red] {error}", soft_wrap=True)
    if args.json:
        print(json.dumps(summary, indent=2))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
