#!/usr/bin/env python3
"""Recompute a run's derived numbers from its raw files and compare them with what the analysis wrote.

Reads a finished, analysed run directory (manifest.json, each experiment's timing.json and
trace.etdump, and the derived op_stats.csv, categories.csv, comparison.csv and
analysis_summary.json), runs trace_breakdown.py (with its etdump_events.py) and timing_stats.py,
which sit beside this script, on the raw files into a work folder, and compares every derived
file with its recomputation within one tolerance. Writes only into the work folder: one
recomputed breakdown folder per traced experiment, e2e_stats.json and recompute.json (one entry
per derived file compared, listing every value that disagrees). Nothing in the run directory is
written. validate_results.py runs this script and turns recompute.json into its `recompute` checks.

Exit status 0 when every derived file matches, 1 when one disagrees or the recomputation failed
(recompute.json says which), 2 on bad input (one line naming the problem and the fix).

Example:
    .venv/bin/python scripts/recompute_results.py --run-dir out/quick_test/run --out-dir /tmp/recompute
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

try:
    from rich.console import Console
except KeyboardInterrupt:  # Ctrl-C while starting is a normal stop
    print("interrupted while starting: nothing was written; run the same command again", file=sys.stderr)
    sys.exit(130)

SCHEMA_VERSION = 1
TOOL = "recompute_results.py"
OUTPUT = "recompute.json"
# Derived numbers must equal their recomputation from the raw files (same code, same seed);
# the CSVs keep 10 significant digits.
RECOMPUTE_REL_TOLERANCE = 1e-6
RECOMPUTE_ABS_TOLERANCE_MS = 1e-9
# Each derived file: the columns that identify a row, then the columns compared.
OP_STATS_KEY = ["op_type", "backend"]
OP_STATS_COLUMNS = ["instances_per_run", "count", "ms_per_inference", "ci95_low_ms", "ci95_high_ms", "mean_ms",
                    "share_of_e2e_pct"]
CATEGORIES_KEY = ["category"]
CATEGORIES_COLUMNS = ["ms_per_inference", "share_pct", "share_ci95_low_pct", "share_ci95_high_pct", "sme_path_ms"]
COMPARISON_KEY = ["pair", "level", "name"]
COMPARISON_COLUMNS = ["baseline_ms", "candidate_ms", "speedup", "speedup_ci_low", "speedup_ci_high",
                      "baseline_share_pct", "candidate_share_pct"]
SUMMARY_E2E_COLUMNS = ["median_ms", "ci95_low_ms", "ci95_high_ms"]
SUMMARY_CATEGORY_COLUMNS = ["ms_per_inference", "share_pct"]
SUMMARY_PAIR_COLUMNS = ["speedup", "ci95_low", "ci95_high"]


def compared_line(name: str, rows: str, columns: list[str]) -> str:
    """One file of the epilog's list, wrapped under its own column."""
    return textwrap.fill(f"{rows}: {', '.join(columns)}", width=100, initial_indent=f"  {name:<30}",
                         subsequent_indent=" " * 32)


EPILOG = "\n".join([
    f"compared (each value equal within {RECOMPUTE_REL_TOLERANCE:g} relative or {RECOMPUTE_ABS_TOLERANCE_MS:g} ms):",
    compared_line("<experiment>/op_stats.csv", "per (op_type, backend)", OP_STATS_COLUMNS),
    compared_line("<experiment>/categories.csv", "per category", CATEGORIES_COLUMNS),
    compared_line("comparison.csv", "per (pair, level, name)", COMPARISON_COLUMNS),
    compared_line("analysis_summary.json", "per experiment e2e", SUMMARY_E2E_COLUMNS) + ";",
    compared_line("", "categories", SUMMARY_CATEGORY_COLUMNS) + ";",
    compared_line("", "per comparison", SUMMARY_PAIR_COLUMNS), ""]) + """
outputs in --out-dir (the run directory is never written):
  <experiment>/                 the recomputed breakdown of each traced experiment (trace_breakdown.py)
  e2e_stats.json                the recomputed timing statistics (timing_stats.py)
  recompute.json                {"schema_version", "tool", "run_dir",
                                 "tolerance": {"relative", "absolute_ms"},
                                 "errors": [one line each], "e2e_stats": path or null,
                                 "traced": {experiment folder: recomputed breakdown folder},
                                 "files": [{"subject", "what", "problems": ["row column: found, recomputed"]}]}
                                one files entry per derived file compared; problems is empty when it matches

exit status: 0 every file matches, 1 a file disagrees or the recomputation failed, 2 bad input.
"""


class InputError(Exception):
    """Input this script cannot work from; the message names the problem and the fix."""


@dataclass
class Run:
    """What the recomputation needs from the run directory, read once."""
    run_dir: Path
    experiments: list[dict[str, Any]]   # ok experiments whose folder exists
    pairs: list[dict[str, Any]]         # the manifest's compare entries
    cpu_sme: bool
    summary: Optional[dict[str, Any]]   # None: no analysis_summary.json (or --skip-summary)


@dataclass
class Recomputed:
    """What the stage scripts computed afresh into the work folder."""
    stats: dict[str, Any]
    stats_path: Optional[Path]
    traced: dict[str, Path]       # experiment folder -> recomputed breakdown folder
    compares: dict[str, Path]     # pair name -> recomputed comparison rows
    errors: list[str]


# ---------------------------------------------------------------- reading the run

def read_json_object(path: Path, what: str, fix: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"{path}: missing {what}; {fix}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"{path}: cannot read the {what} ({error}); {fix}") from None
    except json.JSONDecodeError as error:
        raise InputError(f"{path}: {what} is not valid JSON (line {error.lineno}); {fix}") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: the {what} is a JSON {type(data).__name__}, not an object; {fix}")
    return data


def check_manifest_shape(path: Path, manifest: dict[str, Any]) -> None:
    """The fields read here must have the documented types (scripts/README.md)."""
    fix = "restore manifest.json from the run or re-run the pipeline"
    if "experiments" not in manifest:
        raise InputError(f"{path}: no 'experiments' list; {fix}")
    expected = {"experiments": list, "compare": (list, type(None)), "host": (dict, type(None)),
                "device": (dict, type(None))}
    for key, types in expected.items():
        if key in manifest and not isinstance(manifest[key], types):
            raise InputError(f"{path}: '{key}' has the wrong type ({type(manifest[key]).__name__}); {fix}")
    for key in ("experiments", "compare"):
        if any(not isinstance(entry, dict) for entry in manifest.get(key) or []):
            raise InputError(f"{path}: an entry of '{key}' is not a JSON object; {fix}")


def check_summary_shape(path: Path, summary: dict[str, Any]) -> None:
    """The parts of analysis_summary.json compared here must have the documented types."""
    fix = "regenerate it with analyze_results.py --run-dir RUN"
    experiments, comparisons = summary.get("experiments"), summary.get("comparisons")
    if not isinstance(experiments, (dict, type(None))) or not isinstance(comparisons, (list, type(None))):
        raise InputError(f"{path}: 'experiments' must be an object and 'comparisons' a list; {fix}")
    for name, entry in (experiments or {}).items():
        if not isinstance(entry, dict) or not isinstance(entry.get("e2e"), (dict, type(None))) \
                or not isinstance(entry.get("categories"), (dict, type(None))):
            raise InputError(f"{path}: experiment {name!r} is not an object with 'e2e' and 'categories' objects; {fix}")
    if any(not isinstance(entry, dict) for entry in comparisons or []):
        raise InputError(f"{path}: an entry of 'comparisons' is not a JSON object; {fix}")


def folder_of(entry: dict[str, Any]) -> str:
    return str(entry.get("dir") or f"{entry.get('name')}_t{entry.get('threads')}")


def read_run(run_dir: Path, skip_summary: bool) -> Run:
    if not run_dir.is_dir():
        raise InputError(f"{run_dir}: no such run directory; pass the output folder a pipeline wrote "
                         "(it holds manifest.json)")
    manifest_path = run_dir / "manifest.json"
    manifest = read_json_object(manifest_path, "manifest", "restore it from the run or re-run the pipeline")
    check_manifest_shape(manifest_path, manifest)
    summary = None
    summary_path = run_dir / "analysis_summary.json"
    if not skip_summary and summary_path.exists():
        summary = read_json_object(summary_path, "analysis summary",
                                   "regenerate it with analyze_results.py --run-dir RUN")
        check_summary_shape(summary_path, summary)
    cpu = manifest.get("device") or manifest.get("host") or {}
    experiments = [entry for entry in manifest["experiments"]
                   if entry.get("status") == "ok" and is_folder_name(folder_of(entry))
                   and (run_dir / folder_of(entry)).is_dir()]
    return Run(run_dir, experiments, list(manifest.get("compare") or []),
               bool(cpu.get("sme2") or cpu.get("sme")), summary)


def is_folder_name(name: str) -> bool:
    """An experiment folder lies directly in the run directory (a hostile 'dir' may not point elsewhere)."""
    return name not in ("", ".", "..") and "/" not in name and "\\" not in name


def read_csv_rows(path: Path) -> list[dict[str, str]]:
    try:
        with path.open(newline="") as handle:
            return list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise InputError(f"{path}: cannot read it as CSV ({error}); regenerate the analysis with "
                         "analyze_results.py --run-dir RUN") from None


# ---------------------------------------------------------------- recomputing

def run_stage(command: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *command], capture_output=True, text=True)


def write_text_atomic(path: Path, text: str) -> None:
    """Temporary file + rename: an interrupted or failed write never leaves a half file behind."""
    temporary = path.with_name(f".{path.name}.partial-{os.getpid()}")
    try:
        temporary.write_text(text)
        temporary.replace(path)
    except OSError as error:
        raise InputError(f"{path}: cannot write it ({error.strerror}); free space or pick another --out-dir") from None
    finally:
        if temporary.exists():
            temporary.unlink()


def recorded_etrecord(folder: Path) -> Optional[str]:
    """The ETRecord the analysis used (breakdown.json), when it is still there."""
    try:
        recorded = json.loads((folder / "breakdown.json").read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    etrecord = recorded.get("etrecord") if isinstance(recorded, dict) else None
    return etrecord if isinstance(etrecord, str) and Path(etrecord).is_file() else None


def recompute_breakdowns(run: Run, work: Path, scripts: Path) -> tuple[dict[str, Path], dict[str, Path], list[str]]:
    """trace_breakdown.py on every trace.etdump, and --compare on every pair with both sides traced."""
    traced, jobs = {}, []
    for entry in run.experiments:
        folder = run.run_dir / folder_of(entry)
        if (folder / "trace.etdump").is_file():
            traced[folder.name] = work / folder.name
            jobs.append({"etdump": str(folder / "trace.etdump"), "outdir": str(work / folder.name),
                         "name": folder.name, "etrecord": recorded_etrecord(folder)})
    pairs = [(str(pair.get("baseline")), str(pair.get("candidate"))) for pair in run.pairs]
    compares = {f"{b}->{c}": work / f"compare_{n}.csv" for n, (b, c) in enumerate(pairs) if b in traced and c in traced}
    if not jobs:
        return {}, {}, []
    # One process: the stage skips a compare whose side failed (its error line is kept below).
    compare_jobs = [{"pair": name, "baseline": str(traced[name.split("->")[0]]),
                     "candidate": str(traced[name.split("->")[1]]), "out": str(out)} for name, out in compares.items()]
    write_text_atomic(work / "jobs.json", json.dumps({"traces": jobs, "compares": compare_jobs}))
    done = run_stage([str(scripts / "trace_breakdown.py"), "--jobs", str(work / "jobs.json")]
                     + ["--cpu-has-sme"] * run.cpu_sme)
    errors = [line for line in done.stderr.splitlines() if "error" in line.lower()]
    traced = {name: out for name, out in traced.items() if (out / "runs.csv").is_file()}
    return traced, {name: out for name, out in compares.items() if out.is_file()}, errors


def recompute_e2e(run: Run, traced: dict[str, Path], work: Path, scripts: Path) -> tuple[dict[str, Any], Optional[Path], list[str]]:
    """timing_stats.py on every timing.json (and the recomputed traced runs), with the manifest's pairs."""
    out = work / "e2e_stats.json"
    command = [str(scripts / "timing_stats.py"), "--out", str(out)]
    for entry in run.experiments:
        name = folder_of(entry)
        if (run.run_dir / name / "timing.json").is_file():
            command += ["--experiment", name, str(run.run_dir / name / "timing.json")]
        if name in traced:
            command += ["--trace-runs", name, str(traced[name] / "runs.csv")]
    for pair in run.pairs:
        command += ["--pair", str(pair.get("baseline")), str(pair.get("candidate"))]
    for pair in run.pairs:  # as analyze_results.py: no pairing across sessions
        if pair.get("rounds_interleaved") is False:
            command += ["--not-interleaved", str(pair.get("baseline")), str(pair.get("candidate"))]
    if "--experiment" not in command and "--trace-runs" not in command:
        return {"experiments": {}, "pairs": []}, None, []
    run_stage(command)
    try:
        stats = read_json_object(out, "recomputed timing statistics", "see timing_stats.py's error above")
    except InputError as error:
        return {"experiments": {}, "pairs": []}, None, [str(error)]
    return stats, out, []


def recompute(run: Run, work: Path) -> Recomputed:
    scripts = Path(__file__).resolve().parent
    traced, compares, errors = recompute_breakdowns(run, work, scripts)
    stats, stats_path, stats_errors = recompute_e2e(run, traced, work, scripts)
    return Recomputed(stats, stats_path, traced, compares, errors + stats_errors)


# ---------------------------------------------------------------- comparing

def as_float(value: Any) -> Optional[float]:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def close(a: Any, b: Any) -> bool:
    """Equal within the recomputation tolerance; both empty counts as equal."""
    x, y = as_float(a), as_float(b)
    if x is None or y is None or not math.isfinite(x) or not math.isfinite(y):
        return (x is None or not math.isfinite(x)) and (y is None or not math.isfinite(y))
    return abs(x - y) <= max(RECOMPUTE_ABS_TOLERANCE_MS, RECOMPUTE_REL_TOLERANCE * max(abs(x), abs(y)))


def differences(found: dict[str, dict[str, Any]], expected: dict[str, dict[str, Any]], columns: list[str]) -> list[str]:
    """'row column: found X, recomputed Y' for every value that disagrees, and missing/extra rows."""
    problems = [f"{key}: missing" for key in expected if key not in found]
    problems += [f"{key}: not in the raw data" for key in found if key not in expected]
    for key, row in expected.items():
        if key in found:
            problems += [f"{key} {column}: {found[key].get(column)!r}, recomputed {row.get(column)!r}"
                         for column in columns if not close(found[key].get(column), row.get(column))]
    return problems


def csv_rows(path: Path, key: list[str]) -> dict[str, dict[str, Any]]:
    if not path.is_file():
        return {}
    return {" | ".join(row.get(k) or "" for k in key): row for row in read_csv_rows(path)}


def file_entry(subject: str, what: str, problems: list[str]) -> dict[str, Any]:
    return {"subject": subject, "what": what, "problems": problems}


def compare_breakdowns(run: Run, rec: Recomputed) -> list[dict[str, Any]]:
    entries = []
    for folder, out in rec.traced.items():
        entries.append(file_entry(f"{folder}/op_stats.csv", "op_stats.csv", differences(
            csv_rows(run.run_dir / folder / "op_stats.csv", OP_STATS_KEY), csv_rows(out / "op_stats.csv", OP_STATS_KEY),
            OP_STATS_COLUMNS)))
        entries.append(file_entry(f"{folder}/categories.csv", "categories.csv", differences(
            csv_rows(run.run_dir / folder / "categories.csv", CATEGORIES_KEY),
            csv_rows(out / "categories.csv", CATEGORIES_KEY), CATEGORIES_COLUMNS)))
    return entries


def usable_e2e(rec: Recomputed) -> dict[str, dict[str, Any]]:
    experiments = rec.stats.get("experiments") or {}
    return {folder: entry for folder, entry in experiments.items() if isinstance(entry, dict) and not entry.get("error")}


def usable_pairs(rec: Recomputed) -> list[dict[str, Any]]:
    return [pair for pair in rec.stats.get("pairs") or [] if isinstance(pair, dict) and not pair.get("error")]


def compare_comparison(run: Run, rec: Recomputed) -> list[dict[str, Any]]:
    if not run.pairs:
        return []
    expected: dict[str, dict[str, Any]] = {}
    e2e = usable_e2e(rec)
    for pair in usable_pairs(rec):
        name = f"{pair['baseline']}->{pair['candidate']}"
        expected[f"{name} | e2e | E2E median"] = {
            "baseline_ms": e2e.get(pair["baseline"], {}).get("median_ms"),
            "candidate_ms": e2e.get(pair["candidate"], {}).get("median_ms"), "speedup": pair["speedup"],
            "speedup_ci_low": pair["ci95_low"], "speedup_ci_high": pair["ci95_high"],
            "baseline_share_pct": 100.0, "candidate_share_pct": 100.0}
        if name in rec.compares:
            expected.update(csv_rows(rec.compares[name], COMPARISON_KEY))
    return [file_entry("comparison.csv", "comparison.csv", differences(
        csv_rows(run.run_dir / "comparison.csv", COMPARISON_KEY), expected, COMPARISON_COLUMNS))]


def compare_summary(run: Run, rec: Recomputed) -> list[dict[str, Any]]:
    if run.summary is None:
        return []
    problems: list[str] = []
    analysed = run.summary.get("experiments") or {}
    for folder, entry in usable_e2e(rec).items():
        summary_exp = analysed.get(folder) or {}
        problems += differences({f"{folder} e2e": summary_exp.get("e2e") or {}}, {f"{folder} e2e": entry},
                                SUMMARY_E2E_COLUMNS)
        if folder in rec.traced:
            rows = {f"{folder} {row['category']}": row for row in read_csv_rows(rec.traced[folder] / "categories.csv")}
            categories = summary_exp.get("categories") or {}
            found = {key: categories.get(key.split(" ", 1)[1]) or {} for key in rows}
            problems += differences({key: value if isinstance(value, dict) else {} for key, value in found.items()},
                                    rows, SUMMARY_CATEGORY_COLUMNS)
    for pair in usable_pairs(rec):
        key = f"{pair['baseline']}->{pair['candidate']}"
        found_pair = next((c for c in run.summary.get("comparisons") or [] if c.get("baseline") == pair["baseline"]
                           and c.get("candidate") == pair["candidate"]), {})
        problems += differences({key: found_pair}, {key: pair}, SUMMARY_PAIR_COLUMNS)
    return [file_entry("analysis_summary.json", "analysis_summary.json", problems)]


# ---------------------------------------------------------------- writing

def prepare_out_dir(out_dir: Path, run_dir: Path) -> None:
    """The work folder exists, is writable and lies outside the run directory."""
    if out_dir.resolve() == run_dir.resolve() or run_dir.resolve() in out_dir.resolve().parents:
        raise InputError(f"--out-dir {out_dir} is inside the run directory, which this script never writes; "
                         "pick a folder outside it")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / f".write-probe-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as error:
        raise InputError(f"--out-dir {out_dir}: cannot write there ({error.strerror}); "
                         "pick a writable folder") from None


def document(run: Run, rec: Recomputed, files: list[dict[str, Any]]) -> dict[str, Any]:
    return {"schema_version": SCHEMA_VERSION, "tool": TOOL, "run_dir": str(run.run_dir.resolve()),
            "tolerance": {"relative": RECOMPUTE_REL_TOLERANCE, "absolute_ms": RECOMPUTE_ABS_TOLERANCE_MS},
            "errors": rec.errors, "e2e_stats": str(rec.stats_path.resolve()) if rec.stats_path else None,
            "traced": {name: str(path.resolve()) for name, path in rec.traced.items()}, "files": files}


def print_summary(console: Console, result: dict[str, Any], path: Path) -> None:
    for line in result["errors"]:
        console.print(f"[bold red]recomputation error:[/bold red] {line}", highlight=False, soft_wrap=True)
    for entry in result["files"]:
        if entry["problems"]:
            console.print(f"[bold red]differs[/bold red] {entry['subject']}: {len(entry['problems'])} value(s), "
                          f"first: {entry['problems'][0]}", highlight=False, soft_wrap=True)
        else:
            console.print(f"[green]matches[/green] {entry['subject']}", highlight=False, soft_wrap=True)
    console.print(f"wrote {path}", highlight=False, soft_wrap=True)


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Recompute a run's derived files (op_stats.csv, categories.csv, comparison.csv, "
                    "analysis_summary.json) from timing.json and trace.etdump into a work folder, and list every "
                    "value that disagrees in recompute.json. The run directory is only read.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", type=Path, required=True, help="a run directory a pipeline wrote and "
                        "analyze_results.py analysed")
    parser.add_argument("--out-dir", type=Path, required=True, help="work folder for the recomputed files and "
                        "recompute.json (created; outside the run directory)")
    parser.add_argument("--skip-summary", action="store_true", help="do not compare analysis_summary.json "
                        "(validate_results.py passes this when it cannot read the summary, which its analysis "
                        "check reports)")
    return parser.parse_args(argv)


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    console = Console()
    errors = Console(stderr=True)
    try:
        run = read_run(args.run_dir.expanduser(), args.skip_summary)
        out_dir = args.out_dir.expanduser()
        prepare_out_dir(out_dir, run.run_dir)
        rec = recompute(run, out_dir)
        files = compare_breakdowns(run, rec) + compare_comparison(run, rec) + compare_summary(run, rec)
        result = document(run, rec, files)
        write_text_atomic(out_dir / OUTPUT, json.dumps(result, indent=2) + "\n")
    except InputError as error:
        errors.print(f"[bold red]error:[/bold red] {error}", highlight=False, soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        errors.print("[bold red]interrupted:[/bold red] recompute.json was not written; run the same command again",
                     highlight=False, soft_wrap=True)
        return 130
    print_summary(console, result, out_dir / OUTPUT)
    return 1 if result["errors"] or any(entry["problems"] for entry in files) else 0


if __name__ == "__main__":
    sys.exit(main())
