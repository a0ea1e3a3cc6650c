#!/usr/bin/env python3
"""Run the profiling experiments of a config on this computer and write a run directory.

The host pipeline (macOS on Apple Silicon first; Linux runs the same code). For every
experiment and thread count it runs the profiling runner in the modes the config asks for:

  timing   --warmup/--num_executions/--timing_json, no tracer: the E2E latencies
  trace    one process with --etdump_path, runs x rounds executions: the operator breakdown (ETDump)
  kernels  one run of a kernel-log runner (build_runners.py --kernels): the XNNPACK
           microkernels it picked, in kernels.log

The two experiments of a compare pair run interleaved, round by round (A B A B ...), so
that drift and heat hit both alike; every round's latencies and median are kept and the
order that really ran is recorded in manifest.json (`execution_log`). Experiments that fail
(missing model or runner, a runner that crashes) are recorded with a one-line error while
the others complete. Labels never lie: an experiment whose runner has SME2 kernels but runs
on a CPU without SME2 is marked "SME2 not available on this CPU".

An earlier run is never overwritten: if output_root already holds one, this run goes to a
new timestamped sibling (or continue the earlier run with --resume). At the end it calls
scripts/analyze_results.py --run-dir <run> for the CSVs, charts and report.md.

Example:
    python scripts/mac_pipeline.py --config configs/mac_template.json
    python scripts/mac_pipeline.py --config my.json --only sme2_on --resume
    python scripts/mac_pipeline.py --config my.json --analysis-only

Config format: configs/config.schema.json. Run directory and manifest: scripts/README.md.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import math
import os
import platform
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

import jsonschema
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
RUNNER_BINARY = "profiling_runner"
MODES = ("timing", "trace", "kernels")
DEFAULTS = {"mode": ["timing", "trace"], "runs": 5, "warmup": 2, "rounds": 10, "threads": [1], "timeout_s": 600.0}
# Settings that make two runs of one experiment comparable; --resume refuses to mix others.
RESUME_KEYS = ("runner_path", "model", "modes", "runs", "warmup", "rounds", "env", "extra_args", "cpu_affinity")
SME2_MISSING_NOTE = "SME2 not available on this CPU"
SME2_UNKNOWN_NOTE = "SME2 support of this CPU unknown (scripts/validate_setup.py did not report it)"
ARM_ARCHES = {"arm64", "aarch64"}
EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130


class ConfigError(Exception):
    """Bad input found before anything runs: the message names the problem and the fix."""


class StepError(Exception):
    """One runner invocation failed; the experiment is marked failed, the others go on."""


@dataclass
class Cell:
    """One experiment at one thread count: one folder of the run directory."""

    name: str
    threads: int
    dir: str
    runner_ref: str
    runner_dir: Path
    runner_binary: Path
    model: Path
    modes: list[str]
    runs: int
    warmup: int
    rounds: int
    timeout_s: float
    env: dict[str, str]
    extra_args: list[str]
    cpu_affinity: list[int]
    selected: bool = True
    runner_json: Optional[dict] = None
    status: str = "pending"
    error: Optional[str] = None
    warnings: list[str] = field(default_factory=list)
    label: tuple = (None, False, "")

    def settings(self) -> dict:
        return {"runner_path": str(self.runner_binary), "model": str(self.model), "modes": self.modes,
                "runs": self.runs, "warmup": self.warmup, "rounds": self.rounds, "env": self.env,
                "extra_args": self.extra_args, "cpu_affinity": self.cpu_affinity}


@dataclass
class Step:
    """One runner invocation of the schedule."""

    cell: Cell
    mode: str
    round: Optional[int]


# --- config ------------------------------------------------------------------------------


def find_schema(explicit: Optional[Path]) -> Path:
    schema = explicit or Path(__file__).resolve().parent.parent / "configs" / "config.schema.json"
    if not schema.is_file():
        raise ConfigError(f"config schema not found at {schema}; put configs/config.schema.json beside scripts/ "
                          "or pass --schema")
    return schema


def load_config(path: Path, schema_path: Path) -> dict:
    """The config as given, checked against the JSON Schema (first problem only, in one line)."""
    if not path.is_file():
        raise ConfigError(f"config not found: {path}; write one with scripts/generate_config.py")
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ConfigError(f"{path} is not valid JSON (line {error.lineno}, column {error.colno}: {error.msg}); "
                          "fix the file or regenerate it with scripts/generate_config.py") from None
    validator = jsonschema.Draft202012Validator(json.loads(schema_path.read_text()))
    problem = jsonschema.exceptions.best_match(validator.iter_errors(config))
    if problem is not None:
        where = "/".join(str(part) for part in problem.absolute_path) or "(top level)"
        raise ConfigError(f"{path}: invalid config at {where}: {problem.message}; see configs/config.schema.json")
    return config


def resolve_runner(reference: str, config_dir: Path, runners_dir: Path) -> tuple[Path, Path]:
    """(runner folder, binary) for a bare runners/<name>, a folder path or a binary path."""
    is_path = "/" in reference or reference.startswith(".")
    candidate = (config_dir / reference).resolve() if is_path else (runners_dir / reference).resolve()
    if candidate.is_file():
        return candidate.parent, candidate
    return candidate, candidate / RUNNER_BINARY


def plan_cells(config: dict, config_dir: Path, runners_dir: Path) -> list[Cell]:
    cells = []
    seen = set()
    for experiment in config["experiments"]:
        name = experiment["name"]
        if name in seen:
            raise ConfigError(f"experiment name '{name}' is used twice; give every experiment its own name")
        seen.add(name)
        runner_dir, binary = resolve_runner(experiment["runner"], config_dir, runners_dir)
        modes = experiment.get("mode", DEFAULTS["mode"])
        modes = [modes] if isinstance(modes, str) else list(modes)
        for threads in experiment.get("threads", DEFAULTS["threads"]):
            cells.append(Cell(
                name=name, threads=threads, dir=f"{name}_t{threads}", runner_ref=experiment["runner"],
                runner_dir=runner_dir, runner_binary=binary,
                model=(config_dir / experiment.get("model", config.get("model", ""))).resolve(),
                modes=[m for m in MODES if m in modes],
                runs=experiment.get("runs", DEFAULTS["runs"]), warmup=experiment.get("warmup", DEFAULTS["warmup"]),
                rounds=experiment.get("rounds", DEFAULTS["rounds"]),
                timeout_s=float(experiment.get("timeout_s", DEFAULTS["timeout_s"])),
                env=dict(experiment.get("env", {})), extra_args=list(experiment.get("extra_args", [])),
                cpu_affinity=list(experiment.get("cpu_affinity", []))))
    dirs = [cell.dir for cell in cells]
    clash = next((d for d in dirs if dirs.count(d) > 1), None)
    if clash:
        raise ConfigError(f"two experiments would both write {clash}/; rename one of them")
    return cells


def cells_named(name: str, cells: list[Cell]) -> list[Cell]:
    """Cells an experiment name (all its thread counts) or a folder name (<name>_t<threads>) refers to."""
    return [c for c in cells if c.name == name] or [c for c in cells if c.dir == name]


def resolve_compare(config: dict, cells: list[Cell]) -> list[dict]:
    """Folder-level pairs: matching thread counts, or the single count of each side."""
    pairs = []
    for entry in config.get("compare", []):
        sides = {}
        for role in ("baseline", "candidate"):
            sides[role] = cells_named(entry[role], cells)
            if not sides[role]:
                names = ", ".join(sorted({c.name for c in cells}))
                raise ConfigError(f"compare {role} '{entry[role]}' names no experiment (experiments: {names}); "
                                  "fix the compare list")
        base, cand = sides["baseline"], sides["candidate"]
        if len(base) == 1 and len(cand) == 1:
            matched = [(base[0], cand[0])]
        else:
            by_threads = {c.threads: c for c in cand}
            matched = [(b, by_threads[b.threads]) for b in base if b.threads in by_threads]
        if not matched:
            raise ConfigError(f"compare {entry['baseline']} -> {entry['candidate']}: no thread count in common; "
                              "give both experiments the same threads or name folders (<name>_t<threads>)")
        for b, c in matched:
            if b.dir == c.dir:
                raise ConfigError(f"compare pair {b.dir} -> {c.dir} compares an experiment with itself")
            pairs.append({"baseline": b.dir, "candidate": c.dir, **({"comment": entry["comment"]}
                                                                      if "comment" in entry else {})})
    return pairs


def select_cells(cells: list[Cell], only: Optional[list[str]]) -> None:
    if not only:
        return
    chosen = set()
    for name in only:
        found = cells_named(name, cells)
        if not found:
            names = ", ".join(sorted({c.name for c in cells}))
            raise ConfigError(f"--only {name}: no such experiment (experiments: {names})")
        chosen.update(c.dir for c in found)
    for cell in cells:
        cell.selected = cell.dir in chosen


# --- schedule ----------------------------------------------------------------------------


def compare_groups(cells: list[Cell], pairs: list[dict]) -> list[list[Cell]]:
    """Cells linked by compare pairs form one group, ordered baseline first; others stand alone."""
    by_dir = {c.dir: c for c in cells}
    group_of: dict[str, list[str]] = {c.dir: [c.dir] for c in cells}
    for pair in pairs:
        first, second = group_of[pair["baseline"]], group_of[pair["candidate"]]
        if first is not second:
            first.extend(d for d in second if d not in first)
            for member in first:
                group_of[member] = first
    groups, seen = [], set()
    for pair in pairs:
        group = group_of[pair["baseline"]]
        if id(group) not in seen:
            seen.add(id(group))
            groups.append([by_dir[d] for d in group])
    for cell in cells:
        if len(group_of[cell.dir]) == 1:
            groups.append([cell])
    return groups


def build_schedule(cells: list[Cell], pairs: list[dict]) -> list[Step]:
    """Timing rounds alternate within each group (A B A B ...), then one trace and one kernels run each."""
    steps = []
    for group in compare_groups(cells, pairs):
        todo = [c for c in group if c.selected and c.status == "pending"]
        rounds = max([c.rounds for c in todo if "timing" in c.modes], default=0)
        for round_index in range(rounds):
            steps += [Step(c, "timing", round_index) for c in todo if "timing" in c.modes and round_index < c.rounds]
        for mode in ("trace", "kernels"):
            steps += [Step(c, mode, None) for c in todo if mode in c.modes]
    return steps


# --- run directory -----------------------------------------------------------------------


def now_iso(timespec: str = "seconds") -> str:
    return datetime.now(timezone.utc).astimezone().isoformat(timespec=timespec)


def run_dirs_of(output_root: Path) -> list[Path]:
    """output_root and its timestamped siblings that hold a run, newest first."""
    candidates = [output_root] + sorted(output_root.parent.glob(output_root.name + "-*"))
    runs = [p for p in candidates if (p / MANIFEST).is_file()]
    return sorted(runs, key=lambda p: (p / MANIFEST).stat().st_mtime, reverse=True)


def fresh_run_dir(output_root: Path) -> Path:
    """output_root if unused, else a new timestamped sibling: an earlier run is never written into."""
    if not output_root.exists() or (output_root.is_dir() and not any(output_root.iterdir())):
        return output_root
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    candidate = output_root.with_name(f"{output_root.name}-{stamp}")
    suffix = 2
    while candidate.exists():
        candidate = output_root.with_name(f"{output_root.name}-{stamp}-{suffix}")
        suffix += 1
    return candidate


def existing_run_dir(output_root: Path, explicit: Optional[Path], why: str) -> Path:
    if explicit:
        if not (explicit / MANIFEST).is_file():
            raise ConfigError(f"--run-dir {explicit} holds no {MANIFEST}; point it at a run directory")
        return explicit
    runs = run_dirs_of(output_root)
    if not runs:
        raise ConfigError(f"no earlier run found at {output_root} for {why}; run the pipeline without it first")
    return runs[0]


def write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)


# --- host facts and labels ---------------------------------------------------------------


def package_versions() -> dict:
    """Versions from package metadata: no import of torch, so this is instant."""
    versions = {"python": platform.python_version()}
    for package in ("executorch", "torch"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    try:
        version_file = importlib.metadata.distribution("executorch").locate_file("executorch/version.py")
        found = re.search(r"git_version\s*=\s*['\"]([0-9a-f]+)['\"]", Path(version_file).read_text())
        versions["executorch_commit"] = found.group(1) if found else None
    except (importlib.metadata.PackageNotFoundError, OSError):
        versions["executorch_commit"] = None
    return versions


def host_facts(console: Console) -> tuple[dict, dict]:
    """(host, versions) from scripts/validate_setup.py --json, the one owner of SME2 detection."""
    versions = package_versions()
    basic = {"os": platform.system(), "os_version": platform.release(), "machine": platform.machine(),
             "chip": platform.processor() or platform.machine(), "cores": os.cpu_count(),
             "sme": None, "sme2": None, "emulated": None}
    validate_setup = Path(__file__).resolve().parent / "validate_setup.py"
    if not validate_setup.is_file():
        console.print(f"[yellow]warning:[/yellow] {validate_setup} not found: SME2 of this CPU not detected "
                      "(labels will say 'unknown')")
        return {**basic, "sme_source": "not detected: scripts/validate_setup.py not found"}, versions
    result = subprocess.run([sys.executable, str(validate_setup), "--json"], capture_output=True, text=True,
                            timeout=300)
    try:
        report = json.loads(result.stdout)
    except json.JSONDecodeError:
        console.print(f"[yellow]warning:[/yellow] validate_setup.py --json gave no JSON (exit {result.returncode}): "
                      "SME2 of this CPU not detected")
        return {**basic, "sme_source": "not detected: validate_setup.py failed"}, versions
    return {**basic, **(report.get("host") or {})}, {**versions, **(report.get("versions") or {})}


def sme2_label(runner_json: Optional[dict], cpu_sme2: Optional[bool]) -> tuple[Optional[str], bool, str]:
    """(label, effective, note): what the runner claims, and whether this CPU can make it true."""
    claimed = (runner_json or {}).get("sme2_kernels")
    if not isinstance(claimed, bool):
        return None, False, ""
    if not claimed:
        return "off", False, ""
    if cpu_sme2 is True:
        return "on", True, ""
    return "on", False, SME2_MISSING_NOTE if cpu_sme2 is False else SME2_UNKNOWN_NOTE


def compare_entry(pair: dict, cells_by_dir: dict[str, Cell]) -> dict:
    """A compare pair with what it can claim: an SME2 effect only when ON really ran on SME2."""
    base, cand = cells_by_dir[pair["baseline"]], cells_by_dir[pair["candidate"]]
    labels = {base.label[0], cand.label[0]}
    entry = dict(pair)
    if labels == {"on", "off"}:
        effective = bool(base.label[1] or cand.label[1])
        entry.update(kind="sme2_on_off", sme2_effective=effective,
                     note="" if effective else f"{SME2_MISSING_NOTE}: this pair does not measure an SME2 effect")
    else:
        entry.update(kind="other", sme2_effective=False, note="")
    return entry


# --- preflight ---------------------------------------------------------------------------


def read_runner_json(cell: Cell) -> Optional[dict]:
    path = cell.runner_dir / "runner.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return None


def host_platform() -> str:
    return "mac" if sys.platform == "darwin" else "linux"


def preflight(cell: Cell, local: bool) -> Optional[str]:
    """The one-line reason this cell cannot run, or None. Runs before anything is timed."""
    if not cell.model.is_file():
        return f"model not found: {cell.model} (export it with scripts/export_model.py or fix 'model' in the config)"
    if not cell.runner_binary.is_file():
        return (f"runner not found: {cell.runner_binary} (build it with scripts/build_runners.py or fix 'runner' "
                "in the config)")
    if cell.runner_json is None:
        cell.warnings.append(f"no runner.json beside {cell.runner_binary}: the SME2 label is unknown")
    if local and cell.runner_json:
        built_for = cell.runner_json.get("platform")
        arch = str(cell.runner_json.get("target_arch", "")).lower()
        here = platform.machine().lower().replace("amd64", "x86_64")
        if built_for == "android":
            return f"runner {cell.runner_ref} is an Android build; run this experiment with scripts/android_pipeline.py"
        if built_for in ("mac", "linux") and built_for != host_platform():
            return f"runner {cell.runner_ref} was built for {built_for}, this host is {host_platform()}; rebuild it here"
        if arch and arch != here and not (arch in ARM_ARCHES and here in ARM_ARCHES):
            return f"runner {cell.runner_ref} targets {arch}, this host is {here}; build a runner for this host"
    if "kernels" in cell.modes and not (cell.runner_json or {}).get("kernel_log"):
        cell.modes.remove("kernels")
        cell.warnings.append("kernels mode skipped: the runner was not built with the kernel log "
                             "(build_runners.py --flavor source --kernels)")
        if not cell.modes:
            return "only kernels mode was asked for and the runner has no kernel log; use a *_kernels runner"
    return None


# --- running -----------------------------------------------------------------------------


def runner_args(step: Step, cell_dir: Path) -> tuple[list[str], list[Path]]:
    """(argv, output files) of one invocation, following the runner's CLI contract."""
    cell = step.cell
    runs, warmup = (1, 0) if step.mode == "kernels" else (cell.runs, cell.warmup)
    if step.mode == "trace":
        runs = cell.runs * cell.rounds  # as many traced runs as timed ones: enough for CIs of the breakdown
    args = [str(cell.runner_binary), "--model_path", str(cell.model), "--num_executions", str(runs),
            "--warmup", str(warmup), "--cpu_threads", str(cell.threads)]
    outputs = []
    if step.mode == "timing":
        outputs = [cell_dir / f".round{step.round}.timing.json"]
        args += ["--timing_json", str(outputs[0])]
    elif step.mode == "trace":
        outputs = [cell_dir / "trace.etdump", cell_dir / "trace_timing.json"]
        args += ["--etdump_path", str(outputs[0]), "--timing_json", str(outputs[1])]
    return args + cell.extra_args, outputs


def local_command(args: list[str], cell: Cell) -> list[str]:
    """Pin to cell.cpu_affinity where the OS allows it (Linux taskset)."""
    if not cell.cpu_affinity:
        return args
    if sys.platform.startswith("linux") and shutil.which("taskset"):
        return ["taskset", "-c", ",".join(map(str, cell.cpu_affinity))] + args
    note = "cpu_affinity ignored: no CPU pinning on this OS (macOS has none; on Linux install util-linux taskset)"
    if note not in cell.warnings:
        cell.warnings.append(note)
    return args


def failure_line(output: str, returncode: int) -> str:
    """The runner's own error line if it printed one, else what the exit status says."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    if errors:
        return errors[-1][len("error:"):].strip()
    if returncode < 0:
        try:
            return f"runner crashed ({signal.Signals(-returncode).name})"
        except ValueError:
            return f"runner killed by signal {-returncode}"
    return f"runner exited with code {returncode}" + (f": {lines[-1]}" if lines else "")


def invoke(step: Step, cell_dir: Path, launcher: Optional[list[str]]) -> tuple[float, list[Path]]:
    """Run one step, log its output, raise StepError with one line on failure. Returns (seconds, outputs)."""
    cell = step.cell
    args, outputs = runner_args(step, cell_dir)
    for stale in outputs:
        stale.unlink(missing_ok=True)  # a leftover file must never pass for this run's output
    if launcher:
        spec = {"runner": str(cell.runner_binary), "args": args[1:], "outputs": [str(p) for p in outputs],
                "env": cell.env, "cpu_affinity": cell.cpu_affinity, "mode": step.mode, "model": str(cell.model)}
        spec_path = cell_dir / ".launch.json"
        spec_path.write_text(json.dumps(spec))
        command, env = launcher + [str(spec_path)], dict(os.environ)
    else:
        command, env = local_command(args, cell), {**os.environ, **cell.env}
    log_name = "kernels.log" if step.mode == "kernels" else "runner.log"
    started = time.monotonic()
    try:
        result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=cell.timeout_s)
        output, code = result.stdout + result.stderr, result.returncode
    except subprocess.TimeoutExpired as timeout:
        output = (timeout.stdout or b"").decode(errors="replace") if isinstance(timeout.stdout, bytes) else (timeout.stdout or "")
        code = None
    seconds = time.monotonic() - started
    if launcher:
        spec_path.unlink(missing_ok=True)
    where = f"round {step.round}" if step.round is not None else "run"
    with (cell_dir / log_name).open("a") as log:
        log.write(f"$ {shlex.join(command)}\n# {step.mode} {where}, {now_iso()}\n{output}")
        log.write(f"# exit {code}, {seconds:.3f} s\n\n")
    if code is None:
        raise StepError(f"{step.mode} {where} timed out after {cell.timeout_s:g} s (raise timeout_s in the config)")
    if code != 0:
        raise StepError(f"{step.mode} {where} failed: {failure_line(output, code)} (log: {cell_dir / log_name})")
    missing = [p.name for p in outputs if not p.is_file() or p.stat().st_size == 0]
    if missing:
        raise StepError(f"{step.mode} {where}: the runner exited 0 but wrote no {', '.join(missing)} "
                        f"(log: {cell_dir / log_name})")
    return seconds, outputs


def finite_latencies(values: Any) -> list[float]:
    if not isinstance(values, list) or not values:
        raise StepError("the runner's timing JSON has no latencies_ms")
    latencies = [float(v) for v in values]
    if not all(math.isfinite(v) and v > 0 for v in latencies):
        raise StepError("the runner's timing JSON holds a latency that is not a positive number")
    return latencies


def add_round(cell: Cell, cell_dir: Path, round_index: int, round_file: Path) -> None:
    """Fold one timing round into <cell>/timing.json (format: scripts/README.md)."""
    try:
        runner_timing = json.loads(round_file.read_text())
    except json.JSONDecodeError:
        raise StepError(f"timing round {round_index}: the runner wrote invalid JSON to {round_file.name}") from None
    latencies = finite_latencies(runner_timing.get("latencies_ms"))
    round_file.unlink()
    timing_path = cell_dir / "timing.json"
    timing = json.loads(timing_path.read_text()) if timing_path.is_file() else {
        "schema_version": SCHEMA_VERSION, "experiment": cell.name, "threads": cell.threads,
        "runs_per_round": cell.runs, "warmup": cell.warmup, "rounds": []}
    timing["cpu_threads_reported"] = runner_timing.get("cpu_threads")
    timing["rounds"].append({"round": round_index, "latencies_ms": latencies, "load_ms": runner_timing.get("load_ms")})
    timing["latencies_ms"] = [v for r in timing["rounds"] for v in r["latencies_ms"]]
    timing["round_medians_ms"] = [statistics.median(r["latencies_ms"]) for r in timing["rounds"]]
    write_json_atomic(timing_path, timing)


def cell_files(cell_dir: Path) -> list[str]:
    wanted = ("timing.json", "trace.etdump", "trace_timing.json", "runner.log", "kernels.log")
    return [name for name in wanted if (cell_dir / name).is_file()]


def experiment_entry(cell: Cell, run_dir: Path, runner_key: str) -> dict:
    label, effective, note = cell.label
    return {"name": cell.name, "threads": cell.threads, "dir": cell.dir, "runner": runner_key,
            "runner_path": str(cell.runner_binary), "model": str(cell.model), "modes": cell.modes,
            "runs": cell.runs, "warmup": cell.warmup, "rounds": cell.rounds, "cpu_affinity": cell.cpu_affinity,
            "env": cell.env, "extra_args": cell.extra_args,
            "sme2_label": label, "sme2_effective": effective, "note": note,
            "status": cell.status, "error": cell.error, "warnings": cell.warnings,
            "files": cell_files(run_dir / cell.dir)}


def runner_key(cell: Cell) -> str:
    return cell.runner_dir.name


def write_manifest(manifest: dict, cells: list[Cell], run_dir: Path) -> None:
    kept = {e["dir"]: e for e in manifest.get("experiments", [])}
    for cell in cells:
        if cell.status != "kept":
            kept[cell.dir] = experiment_entry(cell, run_dir, runner_key(cell))
    order = [c.dir for c in cells] + [d for d in kept if d not in {c.dir for c in cells}]
    manifest["experiments"] = [kept[d] for d in order if d in kept]
    manifest["updated"] = now_iso()
    write_json_atomic(run_dir / MANIFEST, manifest)


def execute(steps: list[Step], cells: list[Cell], manifest: dict, run_dir: Path, launcher: Optional[list[str]],
            session: int, console: Console) -> None:
    """Run the schedule with progress bars; a failing step fails its experiment only."""
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        whole = progress.add_task("[bold]plan", total=len(steps))
        current = progress.add_task("", total=1)
        for index, step in enumerate(steps):
            cell = step.cell
            cell_steps = [s for s in steps if s.cell is cell]
            where = f"round {step.round + 1}/{cell.rounds}" if step.round is not None else "run"
            progress.update(current, description=f"{cell.dir} {step.mode} {where}", total=len(cell_steps),
                            completed=cell_steps.index(step))
            if cell.status == "failed":
                progress.advance(whole)
                continue
            cell_dir = run_dir / cell.dir
            entry = {"session": session, "round": step.round, "experiment": cell.dir, "mode": step.mode,
                     "started": now_iso("milliseconds")}
            try:
                seconds, outputs = invoke(step, cell_dir, launcher)
                if step.mode == "timing":
                    add_round(cell, cell_dir, step.round, outputs[0])
                entry.update(seconds=round(seconds, 4), status="ok")
            except StepError as error:
                cell.status, cell.error = "failed", str(error)
                entry.update(seconds=None, status="failed")
                progress.console.print(f"[red]{cell.dir}:[/red] {error}", soft_wrap=True)
            manifest["execution_log"].append(entry)
            if cell.status != "failed" and all(s.cell is not cell for s in steps[index + 1:]):
                cell.status = "ok"
            write_manifest(manifest, cells, run_dir)
            progress.advance(whole)
        progress.update(current, description="done", completed=progress.tasks[current].total)


# --- analysis ----------------------------------------------------------------------------


def run_analysis(run_dir: Path, config_path: Path, console: Console) -> dict:
    """Call analyze_results.py; a failure leaves raw results and manifest in place."""
    script = Path(__file__).resolve().parent / "analyze_results.py"
    command = [sys.executable, str(script), "--run-dir", str(run_dir)]
    rerun = (f"rerun it alone with: python scripts/mac_pipeline.py --config {config_path} --analysis-only "
             f"--run-dir {run_dir}")
    if not script.is_file():
        console.print(f"[yellow]analysis not run:[/yellow] {script} not found; the raw results are in {run_dir}; "
                      f"get scripts/analyze_results.py and {rerun}", soft_wrap=True)
        return {"status": "not_run", "command": shlex.join(command), "detail": "scripts/analyze_results.py not found"}
    console.rule("analysis")
    result = subprocess.run(command)
    if result.returncode != 0:
        console.print(f"[red]analysis failed[/red] (exit {result.returncode}); the raw results and manifest are "
                      f"intact in {run_dir}; fix the problem above and {rerun}", soft_wrap=True)
        return {"status": "failed", "command": shlex.join(command), "detail": f"exit {result.returncode}"}
    return {"status": "ok", "command": shlex.join(command), "detail": ""}


# --- output ------------------------------------------------------------------------------


def summarize(run_dir: Path, console: Console) -> None:
    """A table of what ran, then one line per error, SME2 note or warning (tables fold long text)."""
    table = Table(title=f"Run {run_dir}")
    for column in ("experiment", "status", "runs", "E2E median ms", "round medians ms", "SME2 label"):
        table.add_column(column, overflow="fold")
    manifest = json.loads((run_dir / MANIFEST).read_text())
    remarks = []
    for entry in manifest["experiments"]:
        timing_path = run_dir / entry["dir"] / "timing.json"
        median, rounds, count = "", "", ""
        if timing_path.is_file():
            timing = json.loads(timing_path.read_text())
            if timing.get("latencies_ms"):
                median = f"{statistics.median(timing['latencies_ms']):.4f}"
                rounds = " ".join(f"{v:.4f}" for v in timing["round_medians_ms"])
                count = str(len(timing["latencies_ms"]))
        status = {"ok": "[green]ok", "failed": "[red]failed", "skipped": "[dim]skipped"}.get(entry["status"],
                                                                                         entry["status"])
        label = entry.get("sme2_label") or "-"
        table.add_row(entry["dir"], status, count, median, rounds, label + ("*" if entry.get("note") else ""))
        if entry.get("error"):
            remarks.append(f"[red]{entry['dir']}:[/red] {entry['error']}")
        if entry.get("note"):
            remarks.append(f"[yellow]* {entry['dir']}:[/yellow] {entry['note']}")
        remarks += [f"[dim]{entry['dir']}: {warning}[/dim]" for warning in entry.get("warnings") or []]
    console.print(table)
    for pair in manifest.get("compare", []):
        if pair.get("note"):
            remarks.append(f"[yellow]{pair['baseline']} -> {pair['candidate']}:[/yellow] {pair['note']}")
    for remark in remarks:
        console.print(remark, soft_wrap=True)


def dry_run_plan(config_path: Path, cells: list[Cell], pairs: list[dict], steps: list[Step],
                 output_root: Path) -> dict:
    return {
        "config_path": str(config_path), "output_root": str(output_root),
        "run_dir": str(fresh_run_dir(output_root)),
        "experiments": [{**c.settings(), "name": c.name, "threads": c.threads, "dir": c.dir,
                         "runner_dir": str(c.runner_dir), "runner_json": c.runner_json,
                         "timeout_s": c.timeout_s, "selected": c.selected} for c in cells],
        "compare": pairs,
        "schedule": [{"round": s.round, "experiment": s.cell.dir, "mode": s.mode} for s in steps],
    }


def show_plan(plan: dict, console: Console) -> None:
    table = Table(title=f"Plan for {plan['config_path']}")
    for column in ("#", "experiment", "mode", "round"):
        table.add_column(column)
    for index, step in enumerate(plan["schedule"], 1):
        table.add_row(str(index), step["experiment"], step["mode"], "" if step["round"] is None else str(step["round"]))
    console.print(table)
    console.print(f"would write to {plan['run_dir']}")


# --- main --------------------------------------------------------------------------------


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, required=True, help="pipeline config (configs/config.schema.json)")
    parser.add_argument("--only", nargs="+", metavar="EXP",
                        help="run only these experiments (names, or <name>_t<threads> folders)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the newest earlier run of this config (or --run-dir): run what is not done yet")
    parser.add_argument("--analysis-only", action="store_true",
                        help="run only scripts/analyze_results.py on the newest run of this config (or --run-dir)")
    parser.add_argument("--run-dir", type=Path, help="with --resume / --analysis-only: the run directory to use")
    parser.add_argument("--output-root", type=Path, help="override the config's output_root")
    parser.add_argument("--runners-dir", type=Path, default=Path(__file__).resolve().parent.parent / "runners",
                        help="where bare runner names are looked up (default: runners/ of this repository)")
    parser.add_argument("--schema", type=Path, help="config schema (default: configs/config.schema.json)")
    parser.add_argument("--skip-analysis", action="store_true", help="do not call analyze_results.py at the end")
    parser.add_argument("--dry-run", action="store_true", help="check the config and print the plan; run nothing")
    parser.add_argument("--json", action="store_true", help="with --dry-run: print the resolved plan as JSON")
    parser.add_argument("--launcher", help=argparse.SUPPRESS)  # android_pipeline.py: runs each step on the device
    parser.add_argument("--device-facts", type=Path, help=argparse.SUPPRESS)  # android_pipeline.py: device facts
    return parser.parse_args(argv)


def prepare(args: argparse.Namespace) -> tuple[Path, dict, list[Cell], list[dict], Path]:
    """Load and check the config: (config path, config, cells, compare pairs, output root)."""
    config_path = args.config.resolve()
    config = load_config(config_path, find_schema(args.schema))
    cells = plan_cells(config, config_path.parent, args.runners_dir.resolve())
    pairs = resolve_compare(config, cells)
    select_cells(cells, args.only)
    output_root = (args.output_root.resolve() if args.output_root
                   else (config_path.parent / config["output_root"]).resolve())
    return config_path, config, cells, pairs, output_root


def start_manifest(run_dir: Path, config_path: Path, config: dict, resume: bool, device_facts: Optional[dict],
                   console: Console) -> dict:
    if resume:
        manifest = json.loads((run_dir / MANIFEST).read_text())
        manifest.setdefault("execution_log", [])
        manifest["status"] = "running"
        return manifest
    host, versions = host_facts(console)
    return {"schema_version": SCHEMA_VERSION, "created": now_iso(), "updated": now_iso(), "status": "running",
            "pipeline": (device_facts or {}).get("pipeline", "mac_pipeline.py"),
            "config_path": str(config_path), "config": config, "versions": versions, "host": host,
            "device": (device_facts or {}).get("device"), "runners": {}, "experiments": [], "compare": [],
            "execution_log": [], "sessions": []}


def apply_resume(manifest: dict, cells: list[Cell], run_dir: Path) -> None:
    """Keep experiments that already completed with the same settings; rerun the rest afresh."""
    previous = {e["dir"]: e for e in manifest.get("experiments", [])}
    for cell in cells:
        entry = previous.get(cell.dir)
        if not entry:
            continue
        earlier = {key: entry.get(key) for key in RESUME_KEYS}
        now = cell.settings()
        if entry.get("status") == "ok":
            changed = [key for key in RESUME_KEYS if key != "modes" and earlier[key] != now[key]]
            if changed:
                raise ConfigError(f"--resume: {cell.dir} already ran in {run_dir} with another {changed[0]} "
                                  f"({earlier[changed[0]]} vs {now[changed[0]]}); start a new run without --resume")
            cell.status = "kept"
        elif cell.selected and (run_dir / cell.dir).exists():
            # Keep the failed attempt's files for the record; the retry starts from an empty folder.
            attempt = 1
            while (run_dir / f"{cell.dir}.attempt{attempt}").exists():
                attempt += 1
            (run_dir / cell.dir).rename(run_dir / f"{cell.dir}.attempt{attempt}")


def choose_run_dir(args: argparse.Namespace, output_root: Path, console: Console) -> Path:
    if args.resume:
        run_dir = existing_run_dir(output_root, args.run_dir, "--resume")
        console.print(f"resuming {run_dir}")
        return run_dir
    run_dir = fresh_run_dir(output_root)
    if run_dir != output_root:
        console.print(f"[yellow]{output_root} holds an earlier run;[/yellow] writing this run to {run_dir} "
                      "(use --resume to continue the earlier one)", soft_wrap=True)
    return run_dir


def prepare_cells(cells: list[Cell], manifest: dict, run_dir: Path, local: bool, console: Console) -> None:
    """Label every cell, mark the ones not selected, and fail (with one line) those that cannot run."""
    cpu = manifest.get("device") or manifest["host"]
    previous = {e["dir"]: e for e in manifest["experiments"]}
    for cell in cells:
        if cell.status == "kept":
            entry = previous[cell.dir]
            cell.label = (entry.get("sme2_label"), entry.get("sme2_effective", False), entry.get("note", ""))
            continue
        cell.label = sme2_label(cell.runner_json, cpu.get("sme2"))
        if not cell.selected:
            if cell.dir in previous:
                cell.status = "kept"  # --resume --only: what ran before stays as it was
            else:
                cell.status, cell.error = "skipped", "not selected (--only)"
            continue
        (run_dir / cell.dir).mkdir(parents=True, exist_ok=True)
        reason = preflight(cell, local)
        if reason:
            cell.status, cell.error = "failed", reason
            console.print(f"[red]{cell.dir}:[/red] {reason}", soft_wrap=True)
        elif cell.runner_json:
            manifest["runners"][runner_key(cell)] = {**cell.runner_json, "path": str(cell.runner_dir)}


def finish(manifest: dict, cells: list[Cell], run_dir: Path) -> int:
    """Close the session in the manifest; returns how many experiments of the run failed."""
    for cell in cells:
        if cell.status == "pending":  # selected, but nothing was left to run for it
            cell.status = "ok"
    write_manifest(manifest, cells, run_dir)
    failed = sum(e["status"] == "failed" for e in manifest["experiments"])
    manifest["status"] = "complete_with_errors" if failed else "complete"
    manifest["sessions"][-1]["finished"] = now_iso()
    write_manifest(manifest, cells, run_dir)
    return failed


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    console = Console()
    try:
        config_path, config, cells, pairs, output_root = prepare(args)
        for cell in cells:
            cell.runner_json = read_runner_json(cell)
        if args.dry_run:
            plan = dry_run_plan(config_path, cells, pairs, build_schedule(cells, pairs), output_root)
            if args.json:
                print(json.dumps(plan, indent=2))
            else:
                show_plan(plan, console)
            return EXIT_OK
        if args.analysis_only:
            run_dir = existing_run_dir(output_root, args.run_dir, "--analysis-only")
            console.print(f"analysing {run_dir}")
            return EXIT_OK if run_analysis(run_dir, config_path, console)["status"] == "ok" else EXIT_FAILED
        run_dir = choose_run_dir(args, output_root, console)
        device_facts = json.loads(args.device_facts.read_text()) if args.device_facts else None
        manifest = start_manifest(run_dir, config_path, config, args.resume, device_facts, console)
        if args.resume:
            apply_resume(manifest, cells, run_dir)
    except ConfigError as error:
        console.print(f"[bold red]error:[/bold red] {error}", soft_wrap=True)
        return EXIT_BAD_INPUT

    run_dir.mkdir(parents=True, exist_ok=True)
    launcher = shlex.split(args.launcher) if args.launcher else None
    prepare_cells(cells, manifest, run_dir, local=launcher is None, console=console)
    cells_by_dir = {c.dir: c for c in cells}
    manifest["compare"] = [compare_entry(p, cells_by_dir) for p in pairs]
    session = len(manifest.setdefault("sessions", []))
    manifest["sessions"].append({"started": now_iso(), "argv": sys.argv[1:], "resume": args.resume})
    write_manifest(manifest, cells, run_dir)

    steps = build_schedule(cells, pairs)
    console.print(f"[bold]{len(steps)} runner invocations[/bold] for {sum(c.status == 'pending' for c in cells)} "
                  f"experiment(s) -> {run_dir}")
    try:
        execute(steps, cells, manifest, run_dir, launcher, session, console)
    except KeyboardInterrupt:
        manifest["status"] = "interrupted"
        write_manifest(manifest, cells, run_dir)
        console.print(f"[yellow]interrupted;[/yellow] continue with: python scripts/mac_pipeline.py --config "
                      f"{config_path} --resume --run-dir {run_dir}", soft_wrap=True)
        return EXIT_INTERRUPTED
    failed = finish(manifest, cells, run_dir)
    summarize(run_dir, console)

    if not any(e["status"] == "ok" for e in manifest["experiments"]):
        manifest["analysis"] = {"status": "not_run", "command": "", "detail": "no experiment completed"}
        write_json_atomic(run_dir / MANIFEST, manifest)
    elif not args.skip_analysis:
        manifest["analysis"] = run_analysis(run_dir, config_path, console)
        write_json_atomic(run_dir / MANIFEST, manifest)
    analysis_failed = manifest.get("analysis", {}).get("status") == "failed"
    console.print(f"run directory: [bold]{run_dir}[/bold]" + (f" ({failed} experiment(s) failed)" if failed else ""))
    return EXIT_FAILED if failed or analysis_failed else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
