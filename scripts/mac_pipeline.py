#!/usr/bin/env python3
"""Run the profiling experiments of a config on this computer and write a run directory.

The host pipeline (macOS on Apple Silicon first; Linux runs the same code). Its stage
scripts/plan_runs.py (beside it) checks the config and plans the runs; --dry-run prints that plan.
For every experiment and thread count it runs the profiling runner in the modes the config asks for:

  timing   --warmup/--num_executions/--timing_json, no tracer: the E2E latencies
  trace    one process with --etdump_path, runs x rounds executions: the operator breakdown (ETDump)
  kernels  one run of a kernel-log runner (build_runners.py --kernels): the XNNPACK
           microkernels it picked, in kernels.log

The two experiments of a compare pair run interleaved, round by round (A B A B ...), so
that drift and heat hit both alike; every round's latencies and median are kept and the
order that really ran is recorded in manifest.json (`execution_log`). Experiments that fail
(missing model or runner, a runner that crashes) are recorded with a one-line error while
the others complete. Labels never lie: an experiment whose runner has SME2 kernels but runs
on a CPU without SME2 is marked "SME2 not available on this CPU". An experiment with
"hide_cpu_features" runs with the feature-mask library beside its runner preloaded
(feature_mask_env), and fails when the runner reports that it still saw what was hidden.

An earlier run is never overwritten: if output_root already holds one, this run goes to a
new timestamped sibling (or continue the earlier run with --resume). The run directory is
claimed atomically and locked while this runs; Ctrl-C, SIGTERM or SIGHUP stop the runner's
whole process group and leave the run `interrupted` for --resume. At the end it calls
scripts/analyze_results.py --run-dir <run> for the CSVs, charts and report.md.

Example:
    python scripts/mac_pipeline.py --config configs/mac_template.json
    python scripts/mac_pipeline.py --config my.json --only sme2_on --resume
    python scripts/mac_pipeline.py --config my.json --analysis-only

Config format: configs/config.schema.json. Plan, run directory and manifest: scripts/README.md.
"""

from __future__ import annotations

import argparse
import errno
import fcntl
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

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
PLAN_STAGE = "plan_runs.py"  # beside this script: checks the config and plans the runs (scripts/README.md)
# Settings that make two runs of one experiment comparable; --resume refuses to mix others.
RESUME_KEYS = ("runner_path", "model", "modes", "runs", "warmup", "rounds", "env", "extra_args", "cpu_affinity",
               "hide_cpu_features")
SME2_MISSING_NOTE = "SME2 not available on this CPU"
SME2_UNKNOWN_NOTE = "SME2 support of this CPU unknown (scripts/validate_setup.py did not report it)"
ARM_ARCHES = {"arm64", "aarch64"}
QEMU_LOG = "qemu_in_asm.log"
PROC_MAPS = "proc_maps.txt"
EMULATED_NOTE = "emulated: timings not meaningful"
EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130
LOCK_FILE = ".pipeline.lock"  # held (flock) by the pipeline that owns the run directory
EXIT_DEVICE_LOST = 75  # android_pipeline.py --launch: the device went away, stop and let --resume continue
LAUNCHER_GRACE_S = 60.0  # a launcher gets this long beyond timeout_s to stop the device side itself


class ConfigError(Exception):
    """Bad input found before anything runs: the message names the problem and the fix."""


class StepError(Exception):
    """One runner invocation failed; the experiment is marked failed, the others go on."""


class DeviceLost(Exception):
    """The launcher lost the device: the run stops as interrupted, --resume continues it."""


class Interrupted(Exception):
    """SIGINT, SIGTERM or SIGHUP arrived: stop, record `interrupted`, exit 128 + signal."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def raise_interrupted(signum: int, _frame: Any) -> None:
    # One interrupt is enough: the cleanup that follows must not be cut short by a second one.
    for name in ("SIGINT", "SIGTERM", "SIGHUP"):
        signal.signal(getattr(signal, name), signal.SIG_IGN)
    raise Interrupted(signum)


def catch_interrupts() -> None:
    for name in ("SIGINT", "SIGTERM", "SIGHUP"):
        signal.signal(getattr(signal, name), raise_interrupted)


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
    emulator: list[str] = field(default_factory=list)  # qemu-aarch64 command prefix on platform emulated
    hide_cpu_features: list[str] = field(default_factory=list)
    mask_env: dict[str, str] = field(default_factory=dict)
    cpu_features_seen: Optional[dict] = None
    selected: bool = True
    runner_json: Optional[dict] = None
    status: str = "pending"
    error: Optional[str] = None
    warnings: list[str] = field(default_factory=list)
    label: tuple = (None, False, "")

    def settings(self) -> dict:
        return {"runner_path": str(self.runner_binary), "model": str(self.model), "modes": self.modes,
                "runs": self.runs, "warmup": self.warmup, "rounds": self.rounds, "env": self.env,
                "extra_args": self.extra_args, "cpu_affinity": self.cpu_affinity,
                "hide_cpu_features": self.hide_cpu_features}


@dataclass
class Step:
    """One runner invocation of the schedule."""

    cell: Cell
    mode: str
    round: Optional[int]


# --- plan (scripts/plan_runs.py) ---------------------------------------------------------


def plan_command(args: argparse.Namespace) -> list[str]:
    """The plan stage with the flags that shape the plan."""
    command = [sys.executable, str(Path(__file__).resolve().parent / PLAN_STAGE), "--config", str(args.config),
               "--runners-dir", str(args.runners_dir)]
    for flag, value in (("--schema", args.schema), ("--output-root", args.output_root)):
        command += [flag, str(value)] if value else []
    return command + (["--only", *args.only] if args.only else [])


def run_plan_stage(command: list[str], capture_stdout: bool) -> str:
    """Run the plan stage; its one-line config error becomes this script's (main() prints it once)."""
    if not Path(command[1]).is_file():
        raise ConfigError(f"{command[1]} not found; this script plans its runs with it: download "
                          f"scripts/{PLAN_STAGE} beside mac_pipeline.py")
    result = subprocess.run(command, stdout=subprocess.PIPE if capture_stdout else None, stderr=subprocess.PIPE,
                            text=True, errors="replace")
    if result.returncode != 0:
        lines = [re.sub(r"\x1b\[[0-9;]*m", "", line).strip() for line in result.stderr.splitlines() if line.strip()]
        errors = [line[len("error:"):].strip() for line in lines if line.startswith("error:")]
        raise ConfigError(errors[-1] if errors else f"{PLAN_STAGE} failed (exit {result.returncode}): "
                          f"{lines[-1] if lines else 'no output'}; run {shlex.join(command)} to see why")
    return result.stdout or ""


def cells_of(document: dict) -> list[Cell]:
    """The plan's experiments as cells to run."""
    return [Cell(name=e["name"], threads=e["threads"], dir=e["dir"], runner_ref=document["runner_refs"][e["dir"]],
                 runner_dir=Path(e["runner_dir"]), runner_binary=Path(e["runner_path"]), model=Path(e["model"]),
                 modes=e["modes"], runs=e["runs"], warmup=e["warmup"], rounds=e["rounds"], timeout_s=e["timeout_s"],
                 env=e["env"], extra_args=e["extra_args"], cpu_affinity=e["cpu_affinity"], emulator=e["emulator"],
                 hide_cpu_features=e["hide_cpu_features"], selected=e["selected"], runner_json=e["runner_json"],
                 warnings=document["warnings"][e["dir"]]) for e in document["plan"]["experiments"]]


def prepare(args: argparse.Namespace) -> tuple[Path, dict, list[Cell], list[dict], list[dict], Path]:
    """The checked config and its plan from the plan stage: (config path, config, cells, compare pairs,
    the schedule of every experiment, output root)."""
    document = json.loads(run_plan_stage(plan_command(args) + ["--full-json"], capture_stdout=True))
    plan = document["plan"]
    return (Path(plan["config_path"]), document["config"], cells_of(document), plan["compare"],
            document["full_schedule"], Path(plan["output_root"]))


# --- JSON files --------------------------------------------------------------------------


def finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is too large for a number")
    return value


def no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number JSON allows")


def read_json(path: Path, what: str, fix: str) -> Any:
    """A JSON file as Python data, or ConfigError naming the problem and `fix` in one line."""
    try:
        return json.loads(path.read_text(encoding="utf-8"), parse_float=finite_float, parse_constant=no_constant)
    except UnicodeDecodeError:
        raise ConfigError(f"{what} {path} is not UTF-8 text; {fix}") from None
    except json.JSONDecodeError as error:
        raise ConfigError(f"{what} {path} is not valid JSON (line {error.lineno}, column {error.colno}: "
                          f"{error.msg}); {fix}") from None
    except ValueError as error:
        raise ConfigError(f"{what} {path}: {error}; {fix}") from None
    except OSError as error:
        raise ConfigError(f"cannot read {what} {path}: {error.strerror}; {fix}") from None


# --- schedule ----------------------------------------------------------------------------


def build_schedule(full_schedule: list[dict], cells: list[Cell]) -> list[Step]:
    """The steps of the plan stage's order still to run: selected cells still pending, modes preflight kept
    (the stage orders every experiment; the order of any subset is the subset of that order)."""
    by_dir = {c.dir: c for c in cells}
    todo = [(by_dir[s["experiment"]], s) for s in full_schedule]
    return [Step(cell, s["mode"], s["round"]) for cell, s in todo
            if cell.selected and cell.status == "pending" and s["mode"] in cell.modes]


# --- run directory -----------------------------------------------------------------------


def now_iso(timespec: str = "seconds") -> str:
    return datetime.now(timezone.utc).astimezone().isoformat(timespec=timespec)


def run_dirs_of(output_root: Path) -> list[Path]:
    """output_root and its timestamped siblings that hold a run, newest first."""
    candidates = [output_root] + sorted(output_root.parent.glob(output_root.name + "-*"))
    runs = [p for p in candidates if (p / MANIFEST).is_file()]
    return sorted(runs, key=lambda p: (p / MANIFEST).stat().st_mtime, reverse=True)


def existing_run_dir(output_root: Path, explicit: Optional[Path], why: str) -> Path:
    if explicit:
        if not (explicit / MANIFEST).is_file():
            raise ConfigError(f"--run-dir {explicit} holds no {MANIFEST}; point it at a run directory")
        return explicit.resolve()
    runs = run_dirs_of(output_root)
    if not runs:
        raise ConfigError(f"no earlier run found at {output_root} for {why}; run the pipeline without it first")
    return runs[0]


def write_json_atomic(path: Path, data: Any) -> None:
    """Write a temporary file and rename it over `path`: a reader sees the old file or the new one, never half."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def lock_run_dir(run_dir: Path, create: bool) -> Optional[int]:
    """Take the run directory's lock (held until this process ends), or None if another pipeline holds it.
    The kernel drops an flock when its holder dies, so a killed pipeline never leaves a lock that blocks."""
    path = run_dir / LOCK_FILE
    flags = os.O_RDWR | os.O_CREAT | (os.O_EXCL if create else 0)
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as error:
        if error.errno not in (errno.EROFS, errno.EACCES) or create or not path.is_file():
            raise
        fd = os.open(path, os.O_RDONLY)  # a read-only run directory can still be locked and read
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def lock_holder(run_dir: Path) -> str:
    try:
        return (run_dir / LOCK_FILE).read_text().split()[0]
    except (OSError, IndexError):
        return "unknown"


def note_lock_owner(fd: int) -> Optional[str]:
    """Record this process in the lock file; returns the PID written there before (a dead holder's)."""
    previous = os.pread(fd, 64, 0).decode(errors="replace").split()
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {now_iso()}\n".encode(), 0)
    except OSError:
        pass  # read-only run directory: the lock still works, only the note is missing
    return previous[0] if previous else None


def claim_new_run_dir(output_root: Path) -> tuple[Path, int]:
    """Create and lock a run directory no other pipeline can share: output_root if it is unused,
    else a new timestamped sibling. mkdir and O_EXCL are atomic, so two pipelines never pick one folder."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    candidates = [output_root] + [output_root.with_name(f"{output_root.name}-{stamp}" + (f"-{n}" if n > 1 else ""))
                                  for n in range(1, 1000)]
    for candidate in candidates:
        try:
            candidate.mkdir(parents=True)
        except FileExistsError:
            if candidate != output_root or not candidate.is_dir() or any(candidate.iterdir()):
                continue  # a folder someone made but left empty is still free to claim
        try:
            fd = lock_run_dir(candidate, create=True)
        except FileExistsError:
            continue
        if fd is None or any(p.name != LOCK_FILE for p in candidate.iterdir()):
            if fd is not None:
                os.close(fd)
            continue
        note_lock_owner(fd)
        return candidate, fd
    raise ConfigError(f"no free run directory next to {output_root}; clean up old runs")


def claim_existing_run_dir(run_dir: Path, why: str) -> tuple[int, Optional[str]]:
    """Lock an earlier run for --resume / --analysis-only: (lock, PID of the pipeline that had it before)."""
    try:
        fd = lock_run_dir(run_dir, create=False)
    except OSError as error:
        raise ConfigError(f"cannot lock {run_dir} for {why}: {error.strerror}; check the folder's permissions") from None
    if fd is None:
        raise ConfigError(f"{run_dir} is in use by another pipeline (PID {lock_holder(run_dir)}); "
                          f"wait for it to finish, then run {why} again")
    return fd, note_lock_owner(fd)


def read_manifest(run_dir: Path) -> dict:
    fix = "this run cannot be continued; start a new run without --resume / --analysis-only"
    manifest = read_json(run_dir / MANIFEST, "manifest", fix)
    if not isinstance(manifest, dict) or not isinstance(manifest.get("experiments"), list) or not all(
            isinstance(e, dict) and isinstance(e.get("dir"), str) for e in manifest["experiments"]):
        raise ConfigError(f"manifest {run_dir / MANIFEST} does not have the manifest's shape "
                          f"(an object with an experiments list); {fix}")
    return manifest


def close_stale_run(run_dir: Path, manifest: dict, previous_pid: Optional[str], console: Console) -> None:
    """A manifest left `running` by a pipeline that no longer holds the lock: it was killed."""
    if manifest.get("status") != "running":
        return
    manifest["status"] = "interrupted"
    manifest["interrupted_by"] = f"the pipeline (PID {previous_pid or 'unknown'}) stopped without closing the run"
    for entry in manifest["experiments"]:
        if entry.get("status") == "running":
            entry["status"] = "pending"
    write_json_atomic(run_dir / MANIFEST, manifest)
    console.print(f"[yellow]{run_dir} was left running by PID {previous_pid or 'unknown'}, which is gone;[/yellow] "
                  "marked interrupted", soft_wrap=True)


def close_stale_runs(output_root: Path, console: Console) -> None:
    """Mark earlier runs of this output_root that a killed pipeline left `running` as interrupted."""
    for run_dir in run_dirs_of(output_root) if output_root.parent.is_dir() else []:
        try:
            manifest = json.loads((run_dir / MANIFEST).read_text())
            if not isinstance(manifest, dict) or manifest.get("status") != "running":
                continue
            fd = lock_run_dir(run_dir, create=False)
        except (OSError, ValueError):
            continue
        if fd is not None:
            try:
                holder = os.pread(fd, 64, 0).decode(errors="replace").split()
                close_stale_run(run_dir, manifest, holder[0] if holder else None, console)
            except OSError:
                pass
            finally:
                os.close(fd)


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


def sme2_label(runner_json: Optional[dict], cpu_sme2: Optional[bool],
               hidden: Optional[list[str]] = None) -> tuple[Optional[str], bool, str]:
    """(label, effective, note): what the runner claims, and whether this CPU can make it true.
    A runner whose SME2 the feature mask hides is OFF (the pipeline checks that the mask took)."""
    claimed = (runner_json or {}).get("sme2_kernels")
    if not isinstance(claimed, bool):
        return None, False, ""
    if not claimed or "sme2" in (hidden or []):
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


# --- feature mask ------------------------------------------------------------------------


def feature_mask_env(runner_dir: Path, runner_json: Optional[dict], hide: list[str]) -> dict[str, str]:
    """The environment that makes the runner in runner_dir see a CPU without the `hide` features:
    its feature-mask library (runner.json "feature_mask") preloaded, and the control variable.
    Empty when nothing is hidden. Raises ConfigError when the runner has no mask library."""
    if not hide:
        return {}
    mask = (runner_json or {}).get("feature_mask")
    if not isinstance(mask, dict) or not all(isinstance(mask.get(k), str) for k in
                                             ("library", "preload_variable", "control_variable")):
        raise ConfigError(f"runner {runner_dir.name} has no feature-mask library (no feature_mask in its "
                          "runner.json), so it cannot hide SME/SME2; rebuild it with python scripts/build_runners.py")
    library = runner_dir / mask["library"]
    if not library.is_file():
        raise ConfigError(f"feature-mask library {library} is missing; rebuild the runner with "
                          "python scripts/build_runners.py")
    return {mask["preload_variable"]: str(library), mask["control_variable"]: ":".join(sorted(hide))}


MASK_NOT_APPLIED_CAUSE = {
    "DYLD_INSERT_LIBRARIES": "macOS drops DYLD_* for SIP-protected and hardened binaries and for anything started "
                             "through /bin/sh or /usr/bin/env; run the runner that build_runners.py built, directly",
    "LD_PRELOAD": "the preload did not reach the runner (a wrapper cleared LD_PRELOAD, or the runner is statically "
                  "linked); run the dynamically linked runner that build_runners.py built, with nothing in between",
}


def check_features_seen(cell: Cell, runner_timing: dict, cpu_sme2: Optional[bool]) -> None:
    """Labels never lie: the CPU features the runner saw must be what the experiment asked for."""
    seen = runner_timing.get("cpu_features_seen")
    if isinstance(seen, dict):
        cell.cpu_features_seen = seen
    if not cell.hide_cpu_features:
        if isinstance(seen, dict) and cpu_sme2 is True and seen.get("sme2") is False and \
                str(seen.get("read_with", "")).startswith(("getauxval", "sysctl")):
            raise StepError("the runner did not see SME2 although this CPU has it: something in the environment "
                            "hides it (an LD_PRELOAD / DYLD_INSERT_LIBRARIES or SME_KIT_HIDE_CPU_FEATURES you set); "
                            "unset it, or say \"hide_cpu_features\" in the config")
        return
    if not isinstance(seen, dict):
        raise StepError("the runner does not report cpu_features_seen, so its feature mask cannot be checked; "
                        "rebuild it with python scripts/build_runners.py")
    leaked = [name for name in cell.hide_cpu_features if seen.get(name) is True]
    if leaked:
        preload = next((k for k in cell.mask_env if k in MASK_NOT_APPLIED_CAUSE), "LD_PRELOAD")
        raise StepError(f"feature mask did not take effect: the runner still saw {' and '.join(leaked).upper()} "
                        f"with hide_cpu_features {cell.hide_cpu_features}; {MASK_NOT_APPLIED_CAUSE[preload]}")


# --- preflight ---------------------------------------------------------------------------


def host_platform() -> str:
    return "mac" if sys.platform == "darwin" else "linux"


def emulated_device_facts(cells: list[Cell]) -> Optional[dict]:
    """The emulated CPU of platform emulated (every cell has the plan's qemu-aarch64 prefix), as device facts
    (QEMU >= 11's -cpu max has SME and SME2)."""
    emulator = next((cell.emulator for cell in cells if cell.emulator), None)
    if not emulator:
        return None
    qemu, _, sysroot, _, cpu = emulator
    try:
        version = subprocess.run([qemu, "--version"], capture_output=True, text=True, timeout=30).stdout.split("\n")[0]
    except OSError:
        version = ""
    major = re.search(r"version (\d+)\.", version)
    sme = bool(major) and "sme=off" not in cpu
    return {"pipeline": "mac_pipeline.py", "device": {
        "model": f"QEMU user mode -cpu {cpu}", "emulator": version or f"{qemu} (not found)", "cpu_model": cpu,
        "sysroot": sysroot, "abi": "arm64", "emulated": True, "note": EMULATED_NOTE,
        "sme": sme, "sme2": sme and int(major.group(1)) >= 11,
        "sme_source": "QEMU -cpu max emulates SME, and SME2 from QEMU 11 on"}}


def preflight(cell: Cell, local: bool) -> Optional[str]:
    """The one-line reason this cell cannot run, or None. Runs before anything is timed."""
    if not cell.model.is_file():
        return f"model not found: {cell.model} (export it with scripts/export_model.py or fix 'model' in the config)"
    if not cell.runner_binary.is_file():
        return (f"runner not found: {cell.runner_binary} (build it with scripts/build_runners.py or fix 'runner' "
                "in the config)")
    if cell.runner_json is None:
        cell.warnings.append(f"no runner.json beside {cell.runner_binary}: the SME2 label is unknown")
    if cell.emulator:
        if not (Path(cell.emulator[0]).is_file() or shutil.which(cell.emulator[0])):
            return f"emulator not found: {cell.emulator[0]} (run scripts/setup_emulator.sh, or fix 'emulator' in the config)"
        if cell.runner_json and str(cell.runner_json.get("target_arch", "")).lower() not in ARM_ARCHES:
            return (f"runner {cell.runner_ref} is not an arm64 build; the emulated platform runs "
                    "prebuilt-linux-aarch64 (python scripts/build_runners.py --platform linux-aarch64)")
    elif local and cell.runner_json:
        built_for = cell.runner_json.get("platform")
        arch = str(cell.runner_json.get("target_arch", "")).lower()
        here = platform.machine().lower().replace("amd64", "x86_64")
        if built_for == "android":
            return f"runner {cell.runner_ref} is an Android build; run this experiment with scripts/android_pipeline.py"
        if built_for in ("mac", "linux") and built_for != host_platform():
            return f"runner {cell.runner_ref} was built for {built_for}, this host is {host_platform()}; rebuild it here"
        if arch and arch != here and not (arch in ARM_ARCHES and here in ARM_ARCHES):
            return f"runner {cell.runner_ref} targets {arch}, this host is {here}; build a runner for this host"
    try:
        cell.mask_env = feature_mask_env(cell.runner_dir, cell.runner_json, cell.hide_cpu_features)
    except ConfigError as error:
        return str(error)
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
    elif step.mode == "kernels":  # its timing JSON says which CPU features the run saw (the mask check)
        outputs = [cell_dir / "kernels_timing.json"]
        args += ["--timing_json", str(outputs[0])]
    elif step.mode == "trace":
        outputs = [cell_dir / "trace.etdump", cell_dir / "trace_timing.json"]
        args += ["--etdump_path", str(outputs[0]), "--timing_json", str(outputs[1])]
        if cell.emulator:  # the map and QEMU's translated-code log give the instructions reached
            args += ["--proc_maps_path", str(cell_dir / PROC_MAPS)]
            outputs[1:1] = [cell_dir / PROC_MAPS, cell_dir / QEMU_LOG]  # the runner's timing JSON stays last
    return args + cell.extra_args, outputs


def emulated(step: Step, cell_dir: Path) -> list[str]:
    """qemu-aarch64 and its options for this step on platform emulated (the trace run logs translated code)."""
    if not step.cell.emulator:
        return []
    return step.cell.emulator + (["-d", "in_asm", "-D", str(cell_dir / QEMU_LOG)] if step.mode == "trace" else [])


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


def stop_process_group(process: subprocess.Popen, grace_s: float) -> None:
    """End a step's whole process group: the runner and anything it started. A launcher first gets
    SIGTERM and grace_s to stop the device side itself."""
    if grace_s > 0 and process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def run_step_process(command: list[str], env: dict, timeout_s: float, launcher: bool) -> tuple[str, Optional[int]]:
    """(output, exit code or None on timeout). The step runs in its own process group (session) so a
    timeout or an interrupt can end it with its children, and a terminal's Ctrl-C reaches only us."""
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, errors="replace", env=env, start_new_session=True)
    grace_s = 20.0 if launcher else 0.0
    try:
        stdout, stderr = process.communicate(timeout=timeout_s + (LAUNCHER_GRACE_S if launcher else 0.0))
        return stdout + stderr, process.returncode
    except subprocess.TimeoutExpired:
        stop_process_group(process, grace_s)
        try:
            stdout, stderr = process.communicate(timeout=10)
        except subprocess.TimeoutExpired:  # a grandchild that left the group still holds the pipes
            stdout, stderr = "", ""
        return stdout + stderr, None
    except BaseException:
        stop_process_group(process, grace_s)
        raise


def invoke(step: Step, cell_dir: Path, launcher: Optional[list[str]]) -> tuple[float, list[Path]]:
    """Run one step, log its output, raise StepError with one line on failure. Returns (seconds, outputs)."""
    cell = step.cell
    args, outputs = runner_args(step, cell_dir)
    for stale in outputs:
        stale.unlink(missing_ok=True)  # a leftover file must never pass for this run's output
    if launcher:
        spec = {"runner": str(cell.runner_binary), "args": args[1:], "outputs": [str(p) for p in outputs],
                "env": {**cell.mask_env, **cell.env}, "cpu_affinity": cell.cpu_affinity, "mode": step.mode,
                "model": str(cell.model), "timeout_s": cell.timeout_s}
        spec_path = cell_dir / ".launch.json"
        write_json_atomic(spec_path, spec)
        command, env = launcher + [str(spec_path)], dict(os.environ)
    else:
        command, env = local_command(emulated(step, cell_dir) + args, cell), {**os.environ, **cell.mask_env, **cell.env}
    log_name = "kernels.log" if step.mode == "kernels" else "runner.log"
    where = f"round {step.round}" if step.round is not None else "run"
    started = time.monotonic()
    try:
        output, code = run_step_process(command, env, cell.timeout_s, launcher is not None)
    except OSError as error:  # not executable, not a binary for this machine, deleted meanwhile
        raise StepError(f"{step.mode} {where}: cannot start {command[0]}: {error.strerror} (rebuild the runner with "
                        "scripts/build_runners.py or fix 'runner' in the config)") from None
    finally:
        if launcher:
            spec_path.unlink(missing_ok=True)
    seconds = time.monotonic() - started
    try:
        with (cell_dir / log_name).open("a") as log:
            log.write(f"$ {shlex.join(command)}\n# {step.mode} {where}, {now_iso()}\n{output}")
            log.write(f"# exit {code}, {seconds:.3f} s\n\n")
        if code == EXIT_DEVICE_LOST and launcher:
            raise DeviceLost(failure_line(output, code))
        if code is None:
            raise StepError(f"{step.mode} {where} timed out after {cell.timeout_s:g} s; the runner and its children "
                            "were stopped (raise timeout_s in the config and continue with --resume)")
        if code != 0:
            raise StepError(f"{step.mode} {where} failed: {failure_line(output, code)} (log: {cell_dir / log_name})")
        missing = [p.name for p in outputs if not p.is_file() or p.stat().st_size == 0]
        if missing:
            raise StepError(f"{step.mode} {where}: the runner exited 0 but wrote no {', '.join(missing)} "
                            f"(log: {cell_dir / log_name})")
    except BaseException:
        for partial in outputs:
            partial.unlink(missing_ok=True)  # a half-written trace must not pass for a result later
        raise
    return seconds, outputs


def finite_latencies(values: Any) -> list[float]:
    if not isinstance(values, list) or not values:
        raise StepError("the runner's timing JSON has no latencies_ms")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        raise StepError("the runner's timing JSON holds a latency that is not a number")
    latencies = [float(v) for v in values]
    if not all(math.isfinite(v) and v > 0 for v in latencies):
        raise StepError("the runner's timing JSON holds a latency that is not a positive number")
    return latencies


def read_runner_timing(path: Path) -> dict:
    """The runner's own timing JSON (timing round or trace run); {} if unreadable (add_round says why)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def add_round(cell: Cell, cell_dir: Path, round_index: int, round_file: Path) -> None:
    """Fold one timing round into <cell>/timing.json (format: scripts/README.md)."""
    try:
        runner_timing = json.loads(round_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise StepError(f"timing round {round_index}: the runner wrote invalid JSON to {round_file.name}") from None
    if not isinstance(runner_timing, dict):
        raise StepError(f"timing round {round_index}: {round_file.name} is not a JSON object; is this runner "
                        "built from runner/ (scripts/build_runners.py)?")
    latencies = finite_latencies(runner_timing.get("latencies_ms"))
    round_file.unlink()
    timing_path = cell_dir / "timing.json"
    timing = json.loads(timing_path.read_text()) if timing_path.is_file() else {
        "schema_version": SCHEMA_VERSION, "experiment": cell.name, "threads": cell.threads,
        "runs_per_round": cell.runs, "warmup": cell.warmup, "rounds": []}
    timing["cpu_threads_reported"] = runner_timing.get("cpu_threads")
    timing["cpu_features_seen"] = runner_timing.get("cpu_features_seen")
    timing["rounds"].append({"round": round_index, "latencies_ms": latencies, "load_ms": runner_timing.get("load_ms")})
    timing["latencies_ms"] = [v for r in timing["rounds"] for v in r["latencies_ms"]]
    timing["round_medians_ms"] = [statistics.median(r["latencies_ms"]) for r in timing["rounds"]]
    write_json_atomic(timing_path, timing)


def cell_files(cell_dir: Path) -> list[str]:
    wanted = ("timing.json", "trace.etdump", "trace_timing.json", "runner.log", "kernels.log", "kernels_timing.json",
              PROC_MAPS, QEMU_LOG)
    return [name for name in wanted if (cell_dir / name).is_file()]


def experiment_entry(cell: Cell, run_dir: Path, runner_key: str) -> dict:
    label, effective, note = cell.label
    return {"name": cell.name, "threads": cell.threads, "dir": cell.dir, "runner": runner_key,
            "runner_path": str(cell.runner_binary), "model": str(cell.model), "modes": cell.modes,
            "runs": cell.runs, "warmup": cell.warmup, "rounds": cell.rounds, "cpu_affinity": cell.cpu_affinity,
            "env": cell.env, "extra_args": cell.extra_args,
            "hide_cpu_features": cell.hide_cpu_features, "feature_mask_env": cell.mask_env,
            "cpu_features_seen": cell.cpu_features_seen,
            "sme2_label": label, "sme2_effective": effective, "note": note,
            "status": cell.status, "error": cell.error, "warnings": cell.warnings,
            "files": cell_files(run_dir / cell.dir)}


def runner_key(cell: Cell) -> str:
    return cell.runner_dir.name


def mark_pairing(manifest: dict) -> None:
    """Say per compare pair whether its timing rounds really alternated in one session (the paired
    analysis relies on it): after --resume a side may have run in another session than its partner."""
    last_session: dict[str, int] = {}
    for entry in manifest.get("execution_log", []):
        if entry.get("mode") == "timing":
            last_session[entry["experiment"]] = entry["session"]
    for pair in manifest.get("compare", []):
        base, cand = last_session.get(pair["baseline"]), last_session.get(pair["candidate"])
        pair["rounds_interleaved"] = base is not None and base == cand
        if base is None or cand is None:
            pair["pairing_note"] = "one side has no timing rounds yet: nothing to pair"
        elif base != cand:
            pair["pairing_note"] = (f"baseline rounds ran in session {base}, candidate rounds in session {cand}: "
                                    "the rounds were not interleaved, compare them as independent samples")
        else:
            pair["pairing_note"] = ""


def write_manifest(manifest: dict, cells: list[Cell], run_dir: Path) -> None:
    mark_pairing(manifest)
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
    cpu = manifest.get("device") or manifest["host"]
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
                if step.mode in ("timing", "trace", "kernels"):
                    check_features_seen(cell, read_runner_timing(outputs[-1]), cpu.get("sme2"))
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
    rerun = (f"rerun it alone with: {python_command()} scripts/mac_pipeline.py --config {config_path} "
             f"--analysis-only --run-dir {run_dir}")
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
    manifest = json.loads((run_dir / MANIFEST).read_text())
    emulated_note = f" ({EMULATED_NOTE})" if (manifest.get("device") or {}).get("emulated") else ""
    table = Table(title=f"Run {run_dir}{emulated_note}")
    for column in ("experiment", "status", "runs", "E2E median ms", "round medians ms", "SME2 label"):
        table.add_column(column, overflow="fold")
    remarks = []
    for entry in manifest["experiments"]:
        timing_path = run_dir / entry["dir"] / "timing.json"
        median, rounds, count = "", "", ""
        try:  # a timing.json edited by hand must not stop the summary
            timing = json.loads(timing_path.read_text()) if timing_path.is_file() else {}
            if isinstance(timing, dict) and timing.get("latencies_ms"):
                median = f"{statistics.median(timing['latencies_ms']):.4f}"
                rounds = " ".join(f"{v:.4f}" for v in timing["round_medians_ms"])
                count = str(len(timing["latencies_ms"]))
        except (OSError, ValueError, TypeError, KeyError, statistics.StatisticsError):
            median = "unreadable timing.json"
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


def start_manifest(run_dir: Path, config_path: Path, config: dict, facts: tuple[dict, dict],
                   device_facts: Optional[dict]) -> dict:
    host, versions = facts
    return {"schema_version": SCHEMA_VERSION, "created": now_iso(), "updated": now_iso(), "status": "running",
            "pipeline": (device_facts or {}).get("pipeline", "mac_pipeline.py"),
            "config_path": str(config_path), "config": config, "versions": versions, "host": host,
            "device": (device_facts or {}).get("device"), "runners": {}, "experiments": [], "compare": [],
            "execution_log": [], "sessions": []}


def comparable_config(config: Any) -> Any:
    """A config without what may change between a run and its --resume: comments and timeouts."""
    if isinstance(config, dict):
        return {k: comparable_config(v) for k, v in config.items() if k not in ("comment", "timeout_s")}
    if isinstance(config, list):
        return [comparable_config(v) for v in config]
    return config


def check_resumable(manifest: dict, config: dict, pipeline: str, run_dir: Path) -> None:
    """--resume continues the same experiments with the same tool, or refuses in one line."""
    made_by = manifest.get("pipeline", "mac_pipeline.py")
    if made_by != pipeline:
        raise ConfigError(f"{run_dir} was made by {made_by}; continue it with {made_by} --resume, not {pipeline}")
    earlier = comparable_config(manifest.get("config"))
    if earlier != comparable_config(config):
        keys = sorted(k for k in set(earlier or {}) | set(config) if (earlier or {}).get(k) != config.get(k))
        raise ConfigError(f"--resume: {run_dir} was run with another config (differs in: {', '.join(keys)}); "
                          "start a new run without --resume, or resume with the config saved in its manifest.json")


def apply_resume(manifest: dict, cells: list[Cell], run_dir: Path, console: Console) -> None:
    """Keep experiments that completed with the same settings and still have their files; rerun the rest."""
    previous = {e["dir"]: e for e in manifest.get("experiments", [])}
    for cell in cells:
        entry = previous.get(cell.dir)
        if not entry:
            continue
        earlier = {key: entry.get(key, [] if key == "hide_cpu_features" else None) for key in RESUME_KEYS}
        now = cell.settings()
        if entry.get("status") == "ok":
            changed = [key for key in RESUME_KEYS if key != "modes" and earlier[key] != now[key]]
            if changed:
                raise ConfigError(f"--resume: {cell.dir} already ran in {run_dir} with another {changed[0]} "
                                  f"({earlier[changed[0]]} vs {now[changed[0]]}); start a new run without --resume")
            gone = [name for name in entry.get("files") or [] if not (run_dir / cell.dir / name).is_file()]
            if not gone:
                cell.status = "kept"
                continue
            console.print(f"[yellow]{cell.dir}:[/yellow] {', '.join(gone)} gone from {run_dir}; running it again",
                          soft_wrap=True)
            cell.selected = True
        if cell.selected and (run_dir / cell.dir).exists():
            # Keep the earlier attempt's files for the record; the retry starts from an empty folder.
            attempt = 1
            while (run_dir / f"{cell.dir}.attempt{attempt}").exists():
                attempt += 1
            (run_dir / cell.dir).rename(run_dir / f"{cell.dir}.attempt{attempt}")


def prepare_cells(cells: list[Cell], manifest: dict, run_dir: Path, local: bool, console: Console) -> None:
    """Label every cell, mark the ones not selected, and fail (with one line) those that cannot run."""
    cpu = manifest.get("device") or manifest["host"]
    previous = {e["dir"]: e for e in manifest["experiments"]}
    for cell in cells:
        if cell.status == "kept":
            entry = previous[cell.dir]
            cell.label = (entry.get("sme2_label"), entry.get("sme2_effective", False), entry.get("note", ""))
            continue
        cell.label = sme2_label(cell.runner_json, cpu.get("sme2"), cell.hide_cpu_features)
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


def run_status(experiments: list[dict]) -> str:
    """complete only when every experiment ran: a pair with one side still to run is `partial`."""
    statuses = [e.get("status") for e in experiments]
    if any(status not in ("ok", "failed") for status in statuses):
        return "partial"
    return "complete_with_errors" if "failed" in statuses else "complete"


def finish(manifest: dict, cells: list[Cell], run_dir: Path) -> int:
    """Close the session in the manifest; returns how many experiments of the run failed."""
    for cell in cells:
        if cell.status == "pending":  # selected, but nothing was left to run for it
            cell.status = "ok"
    write_manifest(manifest, cells, run_dir)
    failed = sum(e["status"] == "failed" for e in manifest["experiments"])
    manifest["status"] = run_status(manifest["experiments"])
    manifest["sessions"][-1]["finished"] = now_iso()
    write_manifest(manifest, cells, run_dir)
    return failed


def python_command() -> str:
    """The interpreter that is running now (relative when under this folder): a fix line that says bare
    `python` fails outside an activated venv."""
    try:
        return str(Path(sys.executable).relative_to(Path.cwd()))
    except ValueError:
        return sys.executable


def resume_hint(pipeline: str, config_path: Path, run_dir: Path) -> str:
    return f"{python_command()} scripts/{pipeline} --config {config_path} --resume --run-dir {run_dir}"


def problem_of(error: OSError, where: Optional[Path]) -> tuple[str, str]:
    """(what went wrong, what to do) for a file system error, in words a reader can act on."""
    reason = f"cannot write {error.filename or where}: {error.strerror}"
    if error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return reason, "free disk space"
    if error.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return reason, "make the folder writable or choose another --output-root"
    return reason, "check the disk"


@dataclass
class Run:
    """What the fault handlers of main() need to close the run directory properly."""

    config_path: Path
    pipeline: str = "mac_pipeline.py"
    run_dir: Optional[Path] = None
    manifest: Optional[dict] = None
    cells: list[Cell] = field(default_factory=list)
    phase: str = "start"  # start, run, analysis


def close_run(run: Run, status: str, console: Console) -> None:
    """Record why the run stopped; if even that cannot be written, the previous manifest stays intact."""
    if run.manifest is None or run.run_dir is None:
        return
    if run.phase == "analysis":
        run.manifest["analysis"] = {"status": "interrupted", "command": "", "detail": status}
    else:
        run.manifest["status"] = status
        if run.manifest.get("sessions"):
            run.manifest["sessions"][-1]["finished"] = now_iso()
    try:
        write_manifest(run.manifest, run.cells, run.run_dir)
    except OSError as error:
        console.print(f"[red]could not record '{status}' in {run.run_dir / MANIFEST}:[/red] {error.strerror}; "
                      "the manifest keeps its previous state", soft_wrap=True)


def next_step_hint(run: Run) -> str:
    if run.phase == "analysis":
        return (f"{python_command()} scripts/mac_pipeline.py --config {run.config_path} --analysis-only "
                f"--run-dir {run.run_dir}")
    return resume_hint(run.pipeline, run.config_path, run.run_dir)


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    console = Console()
    catch_interrupts()
    run = Run(config_path=args.config.resolve())
    try:
        return run_pipeline(args, run, console)
    except ConfigError as error:  # escaped: a path such as "out [old]" is text, not markup
        console.print(f"[bold red]error:[/bold red] {escape(str(error))}", soft_wrap=True)
        return EXIT_BAD_INPUT
    except Interrupted as interrupt:
        close_run(run, "interrupted", console)
        if run.manifest is None:
            console.print(f"[yellow]interrupted ({interrupt}) before the run started;[/yellow] nothing was written; "
                          "run the same command again", soft_wrap=True)
        else:
            console.print(f"[yellow]interrupted ({interrupt});[/yellow] continue with: {next_step_hint(run)}",
                          soft_wrap=True)
        return 128 + interrupt.signum
    except DeviceLost as lost:
        if run.manifest is not None:
            run.manifest["interrupted_by"] = "device disconnected"
        close_run(run, "interrupted", console)
        console.print(f"[bold red]error:[/bold red] {lost}; reconnect the device (adb devices must list it as "
                      f"'device') and continue with: {next_step_hint(run)}", soft_wrap=True)
        return EXIT_FAILED
    except OSError as error:
        reason, fix = problem_of(error, run.run_dir)
        close_run(run, f"failed: {reason}", console)
        written = run.run_dir is not None and (run.run_dir / MANIFEST).is_file()
        then = f", then continue with: {next_step_hint(run)}" if written else ", then run the same command again"
        console.print(f"[bold red]error:[/bold red] {reason}; {fix}{then}", soft_wrap=True)
        return EXIT_FAILED


def check_flags(args: argparse.Namespace) -> None:
    if args.run_dir and not (args.resume or args.analysis_only):
        raise ConfigError("--run-dir works with --resume or --analysis-only; a new run goes to the config's "
                          "output_root (choose another with --output-root)")
    if args.resume and args.analysis_only:
        raise ConfigError("--resume and --analysis-only exclude each other; --resume also runs the analysis")


def check_writable(run_dir: Path, why: str) -> None:
    if not os.access(run_dir, os.W_OK):
        raise ConfigError(f"{run_dir} is read-only, so {why} cannot write to it; make it writable, or copy the "
                          "run directory somewhere writable and pass that with --run-dir")


def run_pipeline(args: argparse.Namespace, run: Run, console: Console) -> int:
    check_flags(args)
    if args.dry_run:  # the plan stage prints the plan itself
        run_plan_stage(plan_command(args) + (["--json"] if args.json else []), capture_stdout=False)
        return EXIT_OK
    config_path, config, cells, pairs, full_schedule, output_root = prepare(args)
    device_facts = (read_json(args.device_facts, "device facts", "rerun android_pipeline.py") if args.device_facts
                    else emulated_device_facts(cells))
    run.pipeline = (device_facts or {}).get("pipeline", "mac_pipeline.py")
    if args.analysis_only:
        run.run_dir = existing_run_dir(output_root, args.run_dir, "--analysis-only")
        claim_existing_run_dir(run.run_dir, "--analysis-only")
        check_writable(run.run_dir, "--analysis-only")
        console.print(f"analysing {run.run_dir}")
        run.phase = "analysis"
        return EXIT_OK if run_analysis(run.run_dir, config_path, console)["status"] == "ok" else EXIT_FAILED
    if args.resume:
        run.run_dir = existing_run_dir(output_root, args.run_dir, "--resume")
        _, previous_pid = claim_existing_run_dir(run.run_dir, "--resume")
        manifest = read_manifest(run.run_dir)
        check_writable(run.run_dir, "--resume")
        close_stale_run(run.run_dir, manifest, previous_pid, console)
        check_resumable(manifest, config, run.pipeline, run.run_dir)
        console.print(f"resuming {run.run_dir}")
        apply_resume(manifest, cells, run.run_dir, console)
        manifest["status"] = "running"
        manifest.pop("interrupted_by", None)
    else:
        facts = host_facts(console)  # before the claim: an interrupt here leaves nothing behind
        close_stale_runs(output_root, console)
        try:
            run.run_dir, _ = claim_new_run_dir(output_root)
        except OSError as error:
            reason, fix = problem_of(error, output_root)
            raise ConfigError(f"{reason}; {fix}") from None
        if run.run_dir != output_root:
            console.print(f"[yellow]{output_root} holds an earlier run;[/yellow] writing this run to {run.run_dir} "
                          "(use --resume to continue the earlier one)", soft_wrap=True)
        manifest = start_manifest(run.run_dir, config_path, config, facts, device_facts)
    run.manifest, run.cells, run.phase = manifest, cells, "run"
    run_dir = run.run_dir

    launcher = shlex.split(args.launcher) if args.launcher else None
    prepare_cells(cells, manifest, run_dir, local=launcher is None, console=console)
    cells_by_dir = {c.dir: c for c in cells}
    manifest["compare"] = [compare_entry(p, cells_by_dir) for p in pairs]
    session = len(manifest.setdefault("sessions", []))
    manifest["sessions"].append({"started": now_iso(), "argv": sys.argv[1:], "resume": args.resume})
    write_manifest(manifest, cells, run_dir)

    steps = build_schedule(full_schedule, cells)
    console.print(f"[bold]{len(steps)} runner invocations[/bold] for {sum(c.status == 'pending' for c in cells)} "
                  f"experiment(s) -> {run_dir}")
    execute(steps, cells, manifest, run_dir, launcher, session, console)
    failed = finish(manifest, cells, run_dir)
    summarize(run_dir, console)

    if not any(e["status"] == "ok" for e in manifest["experiments"]):
        manifest["analysis"] = {"status": "not_run", "command": "", "detail": "no experiment completed"}
        write_json_atomic(run_dir / MANIFEST, manifest)
    elif not args.skip_analysis:
        run.phase = "analysis"
        manifest["analysis"] = run_analysis(run_dir, config_path, console)
        write_json_atomic(run_dir / MANIFEST, manifest)
    analysis_failed = manifest.get("analysis", {}).get("status") == "failed"
    console.print(f"run directory: [bold]{run_dir}[/bold]" + (f" ({failed} experiment(s) failed)" if failed else ""))
    if manifest["status"] == "partial":
        waiting = [e["dir"] for e in manifest["experiments"] if e["status"] not in ("ok", "failed")]
        console.print(f"[yellow]not run yet:[/yellow] {', '.join(waiting)}; run them with: "
                      f"{resume_hint(run.pipeline, config_path, run_dir)}", soft_wrap=True)
    return EXIT_FAILED if failed or analysis_failed else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
