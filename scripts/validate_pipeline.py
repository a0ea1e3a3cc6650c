#!/usr/bin/env python3
"""Check a pipeline config before anything runs: config, models, runners, SME2 labels, output.

Answers "will this config give numbers I can trust?" before the pipeline spends minutes on it:
the config validates against configs/config.schema.json; every model is a loadable .pte (its
method found, input shapes read from its metadata); every runner exists, answers `--help` on
this host (or, for Android, on the device) and was built for the platform; compare pairs name
real experiments; the SME2 ON side of an ON/OFF pair on a CPU without SME2, and an SME2 ON/OFF pair
whose runners differ in more than the SME switches, are FAILs (WARNs with --allow-mismatch);
the output root is writable and the run will not overwrite an earlier one (the report says
where the pipeline will write); for Android, the device is reachable and arm64 and the pinned
cores exist.

Prints one row per check, PASS / WARN / FAIL (SKIP when it does not apply), with the fix for
anything that is not PASS, then a verdict and the next action. Writes nothing. Exit status 0
when nothing FAILs, 1 otherwise.

Path resolution (runner names, relative paths, where a run goes) is the pipeline's: this script
asks `mac_pipeline.py --config FILE --dry-run --json` (beside this file) for the resolved plan.
Host and device facts, including SME2 detection, come from `validate_setup.py --json`.

Example:
    .venv/bin/python scripts/validate_pipeline.py --config configs/mac_template.json
    .venv/bin/python scripts/validate_pipeline.py --config my_android.json --platform android --serial R5CX --json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

import jsonschema
from rich.console import Console
from rich.table import Table

SCHEMA_VERSION = 1
TOOL = "validate_pipeline.py"
SCRIPTS_DIR = Path(__file__).resolve().parent
DEFAULT_SCHEMA = SCRIPTS_DIR.parent / "configs" / "config.schema.json"
COMMAND_TIMEOUT_S = 60
SETUP_TIMEOUT_S = 300
MODEL_LOAD_TIMEOUT_S = 300
DEFAULT_DEVICE_DIR = "/data/local/tmp/sme2_profiling"
MAX_SCHEMA_ERRORS = 5
ARM_ARCHES = {"arm64", "aarch64"}
# SME2 ON and OFF runners may differ only in these CMake switches, the facts they imply and
# the fields that name or date a build.
SME_SWITCHES = ("XNNPACK_ENABLE_ARM_SME2", "XNNPACK_ENABLE_ARM_SME")
BUILD_IDENTITY_KEYS = ("name", "built_at", "build_seconds", "fingerprint", "path", "sme2_kernels", "sme_kernels")
# Experiment settings that must match between the two sides of an SME2 ON/OFF pair.
PAIR_SETTINGS = ("model", "modes", "runs", "warmup", "rounds", "threads", "env", "extra_args", "cpu_affinity")
TROUBLESHOOTING_KIT = "agentic-kits/troubleshooting-agent.md"
SCALAR_TYPES = {0: "uint8", 1: "int8", 2: "int16", 3: "int32", 4: "int64", 5: "float16", 6: "float32",
                7: "float64", 11: "bool", 15: "bfloat16"}

CHECKS: dict[str, str] = {
    "config_file": "Config file",
    "config_schema": "Config schema",
    "pipeline_plan": "Pipeline accepts the config",
    "compare_pairs": "Compare pairs",
    "target_cpu": "Target CPU",
    "android_device": "Android device",
    "model": "Model loads",
    "runner": "Runner",
    "sme2_label": "SME2 label vs CPU",
    "sme2_pair": "SME2 ON/OFF pair",
    "pinned_cores": "Pinned cores",
    "threads": "Threads vs cores",
    "output_root": "Output root",
}

# Runs in a child Python so a broken .pte can only take the child down. One JSON line per
# model: "start" before loading, then the result, so a crash is pinned on the right file.
MODEL_PROBE = r"""
import json, os, sys, tempfile
from executorch.runtime import Runtime, Verification
runtime = Runtime.get()
for index, (model, method) in json.loads(sys.argv[1]):
    print(json.dumps({"index": index, "stage": "start"}), flush=True)
    result = {"index": index, "stage": "done"}
    with tempfile.TemporaryFile() as native_log:
        saved_stderr = os.dup(2)
        os.dup2(native_log.fileno(), 2)  # the runtime's C++ log says why a load failed
        try:
            program = runtime.load_program(model, verification=Verification.InternalConsistency)
            result["methods"] = sorted(program.method_names)
            if method in program.method_names:
                meta = program.metadata(method)
                result["inputs"] = [{"sizes": list(meta.input_tensor_meta(i).sizes()),
                                     "dtype": int(meta.input_tensor_meta(i).dtype())}
                                    for i in range(meta.num_inputs())]
        except Exception as error:
            result["error"] = str(error) or type(error).__name__
        finally:
            os.dup2(saved_stderr, 2)
            os.close(saved_stderr)
        native_log.seek(0)
        lines = [line.strip() for line in native_log.read().decode(errors="replace").splitlines() if line.strip()]
        if "error" in result and lines:
            result["error"] += " (" + lines[-1] + ")"
    print(json.dumps(result), flush=True)
"""

EPILOG = f"""\
checks (stable ids, also in --json):
  {", ".join(CHECKS)}

what a FAIL means and how to fix it is printed with each row. SME2 rules:
  - the SME2 ON side of an ON/OFF compare pair, on a CPU without SME2, is a FAIL (WARN with
    --allow-mismatch: the pipeline then runs it and its manifest and report say "SME2 not
    available on this CPU"); any other runner that ships SME2 kernels (the macOS wheel's
    prebuilt runner on an M1-M3 Mac) is a WARN: XNNPACK runs its other kernels there
  - an experiment whose hide_cpu_features hides SME2 counts as SME2 OFF (one runner, feature mask)
  - an SME2 ON/OFF compare pair (the two sides disagree on SME2 kernels) must use runners
    whose runner.json differ only in the CMake switches
      {", ".join(SME_SWITCHES)}
    (and the build's name, date and fingerprint), and experiments with the same
      {", ".join(PAIR_SETTINGS)};
    otherwise FAIL (WARN with --allow-mismatch)

--json prints one document:
  {{"schema_version", "tool", "target", "created", "verdict": pass|warn|fail,
   "next_action": proceed|troubleshoot, "next_action_hint", "counts",
   "checks": [{{"id", "subject", "title", "status", "detail", "fix", "on_fail"}}], "facts"}}
facts: platform, cpu (SME2 etc.), device, output_root, run_dir (where the pipeline will write),
models (inputs per model), runners.
"""


@dataclass
class Check:
    id: str
    subject: str
    status: str  # PASS, WARN, FAIL or SKIP
    detail: str
    fix: str = ""
    title: str = ""
    on_fail: str = "troubleshoot"

    def __post_init__(self) -> None:
        self.title = CHECKS[self.id]


@dataclass
class Target:
    """Where the runners will run: this host or an Android device, with its facts."""
    platform: str
    cpu: dict[str, Any] = field(default_factory=dict)
    serial: Optional[str] = None
    device: Optional[dict[str, Any]] = None
    adb: str = "adb"
    emulator: list[str] = field(default_factory=list)  # platform emulated: the qemu-aarch64 prefix


class ProbeError(Exception):
    """A helper command gave nothing usable; the message says which and why."""


# ---------------------------------------------------------------- commands

def run_command(command: list[str], timeout: float = COMMAND_TIMEOUT_S,
                env: Optional[dict[str, str]] = None) -> tuple[int, str, str]:
    """(exit code, stdout, stderr); 127 when the program is missing, 126 when it cannot execute, 124 on timeout."""
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                                env=env)
    except FileNotFoundError:
        return 127, "", f"{command[0]}: not found"
    except OSError as error:
        return 126, "", f"{command[0]}: {error.strerror}"
    except subprocess.TimeoutExpired:
        return 124, "", f"timed out after {timeout:.0f} s"
    return result.returncode, result.stdout or "", result.stderr or ""


def shown_path(path: Path) -> str:
    """A path as a printed line shows it: relative to the working directory when inside it. Symlinks are not
    resolved, so a venv's bin/python stays the venv's."""
    path = Path(os.path.abspath(path))
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def kit_command(script: str) -> str:
    """`<running Python> <kit script>`: a fix line that pastes as is outside an activated venv (a bare
    `python` may not have the pinned packages)."""
    return f"{shown_path(Path(sys.executable))} {shown_path(SCRIPTS_DIR / script)}"


def last_line(text: str) -> str:
    return next((line.strip() for line in reversed(text.splitlines()) if line.strip()), "")


def strip_markup(text: str) -> str:
    """The pipeline's error line without rich markup."""
    return re.sub(r"\[/?[a-z ]+\]", "", text).replace("error: ", "", 1).strip()


def host_platform() -> str:
    return "mac" if sys.platform == "darwin" else "linux"


def host_arch() -> str:
    return platform.machine().lower().replace("amd64", "x86_64")


# ---------------------------------------------------------------- config

def load_config(path: Path) -> tuple[Optional[dict[str, Any]], Check]:
    if not path.is_file():
        return None, Check("config_file", str(path), "FAIL", "no such file",
                           f"write one with: {kit_command('generate_config.py')} --out CONFIG.json")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as error:
        return None, Check("config_file", str(path), "FAIL",
                           f"not UTF-8 text (byte {error.start}: {error.reason}); JSON configs must be UTF-8",
                           "save the file as UTF-8 (or regenerate it with scripts/generate_config.py)")
    except OSError as error:
        return None, Check("config_file", str(path), "FAIL", f"cannot read it: {error.strerror or error}",
                           "check the file's permissions")
    except json.JSONDecodeError as error:
        return None, Check("config_file", str(path), "FAIL",
                           f"not valid JSON (line {error.lineno}, column {error.colno}: {error.msg})",
                           "fix the JSON or regenerate it with scripts/generate_config.py")
    if not isinstance(config, dict):
        return None, Check("config_file", str(path), "FAIL", "the top level is not a JSON object",
                           "regenerate it with scripts/generate_config.py")
    return config, Check("config_file", str(path), "PASS", "valid JSON")


def check_schema(config: dict[str, Any], schema_path: Path) -> Check:
    if not schema_path.is_file():
        return Check("config_schema", str(schema_path), "FAIL", "schema file not found",
                     "put configs/config.schema.json beside scripts/ or pass --schema")
    validator = strict_validator_class()(json.loads(schema_path.read_text()))
    errors = sorted(validator.iter_errors(config), key=lambda error: list(error.absolute_path))
    too_large = [f"at {where}: the number is too large (JSON has no infinity); use an ordinary number"
                 for where in non_finite_numbers(config)]
    if not errors and not too_large:
        return Check("config_schema", "config", "PASS", f"valid against {schema_path.name}")
    shown = ["at " + ("/".join(str(part) for part in error.absolute_path) or "(top level)") + f": {error.message}"
             for error in errors[:MAX_SCHEMA_ERRORS]]
    more = f" (and {len(errors) - MAX_SCHEMA_ERRORS} more)" if len(errors) > MAX_SCHEMA_ERRORS else ""
    return Check("config_schema", "config", "FAIL", "; ".join(too_large + shown) + more,
                 f"fix the config to match {schema_path} (each property is described there)")


def strict_validator_class() -> Any:
    """Draft 2020-12 with integers that are JSON integers: `"runs": 1e1` is 10.0 in Python, which the schema
    would accept and the runner refuses."""
    def is_strict_integer(_checker: Any, instance: Any) -> bool:
        return isinstance(instance, int) and not isinstance(instance, bool)

    checker = jsonschema.Draft202012Validator.TYPE_CHECKER.redefine("integer", is_strict_integer)
    return jsonschema.validators.extend(jsonschema.Draft202012Validator, type_checker=checker)


def non_finite_numbers(value: Any, where: str = "") -> list[str]:
    """Paths of numbers Python read as inf/nan (`1e400`): they pass `exclusiveMinimum` and break later."""
    if isinstance(value, float) and not math.isfinite(value):
        return [where or "(top level)"]
    if isinstance(value, dict):
        return [p for key, item in value.items() for p in non_finite_numbers(item, f"{where}/{key}".lstrip("/"))]
    if isinstance(value, list):
        return [p for index, item in enumerate(value) for p in non_finite_numbers(item, f"{where}/{index}".lstrip("/"))]
    return []


def check_compare_names(config: dict[str, Any]) -> list[Check]:
    """Each pair names an experiment, or one thread count of it (<name>_t<threads>)."""
    pairs = config.get("compare") or []
    if not pairs:
        return [Check("compare_pairs", "config", "SKIP", "no compare pairs")]
    experiments = [e for e in config.get("experiments") or [] if isinstance(e, dict)]
    known = {str(e.get("name")) for e in experiments}
    folders = {f"{e.get('name')}_t{threads}" for e in experiments for threads in (e.get("threads") or [1])}
    checks = []
    for pair in pairs:
        if not isinstance(pair, dict):
            continue
        subject = f"{pair.get('baseline')}->{pair.get('candidate')}"
        unknown = [pair.get(side) for side in ("baseline", "candidate") if pair.get(side) not in known | folders]
        if unknown:
            checks.append(Check("compare_pairs", subject, "FAIL",
                                f"{', '.join(map(repr, unknown))} names no experiment (experiments: "
                                f"{', '.join(sorted(known)) or 'none'})",
                                "use experiment names (or <name>_t<threads> folders) in the compare list"))
        elif pair.get("baseline") == pair.get("candidate"):
            checks.append(Check("compare_pairs", subject, "FAIL", "compares an experiment with itself",
                                "name two different experiments"))
        else:
            checks.append(Check("compare_pairs", subject, "PASS", "both sides are experiments of this config"))
    return checks


def pipeline_plan(config_path: Path, args: argparse.Namespace) -> tuple[Optional[dict[str, Any]], Check]:
    """The pipeline's own resolution of the config: paths, folders, runner.json, where it writes."""
    pipeline = SCRIPTS_DIR / "mac_pipeline.py"
    if not pipeline.is_file():
        return None, Check("pipeline_plan", "mac_pipeline.py", "FAIL", f"{pipeline} not found",
                           "download scripts/mac_pipeline.py beside this script")
    command = [sys.executable, str(pipeline), "--config", str(config_path), "--dry-run", "--json"]
    if args.runners_dir:
        command += ["--runners-dir", str(args.runners_dir)]
    if args.schema:
        command += ["--schema", str(args.schema)]
    code, out, err = run_command(command)
    if code != 0:
        reason = strip_markup(last_line(err) or last_line(out)) or f"exit {code}"
        return None, Check("pipeline_plan", "config", "FAIL", f"the pipeline rejects the config: {reason}",
                           "fix what the message names, then validate again")
    try:
        plan = json.loads(out)
    except json.JSONDecodeError:
        plan = None
    if not (isinstance(plan, dict) and isinstance(plan.get("experiments"), list) and isinstance(plan.get("schedule"), list)
            and all(isinstance(experiment, dict) for experiment in plan["experiments"])):
        return None, Check("pipeline_plan", "config", "FAIL", "mac_pipeline.py --dry-run --json printed no plan",
                           "use the kit's mac_pipeline.py from the same version as this script")
    for experiment in plan["experiments"]:
        # A hand-edited runner.json of the wrong shape reaches us as is: keep it out of every rule below.
        runner_json = experiment.get("runner_json")
        if runner_json is not None and not isinstance(runner_json, dict):
            experiment["runner_json"] = None
            experiment["runner_json_problem"] = f"its runner.json is a JSON {type(runner_json).__name__}, not an object"
    return plan, Check("pipeline_plan", "config", "PASS",
                       f"{len(plan['experiments'])} experiment folder(s), {len(plan['schedule'])} runner invocations")


# ---------------------------------------------------------------- target facts

def find_adb(explicit: Optional[str]) -> str:
    """--adb, else $ADB, else adb on PATH (as android_pipeline.py finds it)."""
    adb = explicit or os.environ.get("ADB") or shutil.which("adb") or "adb"
    return str(Path(adb).resolve()) if Path(adb).is_file() else adb


def setup_report(extra: list[str], adb: str) -> dict[str, Any]:
    script = SCRIPTS_DIR / "validate_setup.py"
    if not script.is_file():
        raise ProbeError(f"{script} not found")
    # validate_setup.py looks adb up on PATH: put the chosen one first.
    env = {**os.environ, "PATH": str(Path(adb).parent) + os.pathsep + os.environ.get("PATH", "")} \
        if Path(adb).is_file() else None
    code, out, err = run_command([sys.executable, str(script), "--json", *extra], timeout=SETUP_TIMEOUT_S, env=env)
    try:
        return json.loads(out)
    except json.JSONDecodeError:
        raise ProbeError(f"validate_setup.py --json gave no JSON (exit {code}): {last_line(err)}") from None


def find_target(platform_name: str, serial: Optional[str], adb: str) -> tuple[Target, list[Check]]:
    """The CPU the runners will run on, from validate_setup.py (the one owner of SME2 detection)."""
    target = Target(platform=platform_name, serial=serial, adb=adb)
    android = platform_name == "android"
    try:
        report = setup_report(["--android"] + (["--serial", serial] if serial else []) if android else [], adb)
    except ProbeError as error:
        target.cpu = {"sme2": None, "sme": None, "emulated": None}
        return target, [Check("target_cpu", platform_name, "WARN", f"SME2 of the CPU unknown: {error}",
                              "run from the kit's scripts/ folder with the venv's Python")]
    if not android:
        target.cpu = report.get("host") or {}
        return target, [describe_cpu(target.cpu, "this host")]
    device_check = next((c for c in report.get("checks", []) if c.get("id") == "android_device"), None)
    target.device = report.get("device")
    if not target.device:
        # The first of adb / android_device that did not pass says why there is no device.
        blocking = next((c for c in report.get("checks", []) if c.get("id") in ("adb", "android_device")
                         and c.get("status") == "FAIL"), None)
        detail = blocking["detail"] if blocking else "no device"
        fix = (blocking or {}).get("fix") or "connect the phone by USB and enable USB debugging"
        target.cpu = {"sme2": None, "sme": None, "emulated": None}
        return target, [Check("android_device", serial or "adb", "FAIL", detail, fix),
                        Check("target_cpu", "device", "SKIP", "no device")]
    target.cpu = target.device
    target.serial = target.device.get("serial") or serial
    checks = []
    abi = str(target.device.get("abi", ""))
    if abi.startswith("arm64"):
        checks.append(Check("android_device", target.serial or "device", "PASS", device_check["detail"]))
    else:
        checks.append(Check("android_device", target.serial or "device", "FAIL",
                            f"{device_check['detail']}: ABI {abi or 'unknown'} is not arm64-v8a",
                            "use an arm64 (Armv9) phone; SME2 needs arm64"))
    checks.append(describe_cpu(target.cpu, f"the device ({target.device.get('model', '?')})"))
    return target, checks


def describe_cpu(cpu: dict[str, Any], where: str) -> Check:
    detail = (f"{where}: {cpu.get('chip', 'unknown')}, {cpu.get('cores', '?')} cores, "
              f"SME2 {'yes' if cpu.get('sme2') else 'no'}, SME {'yes' if cpu.get('sme') else 'no'}")
    if cpu.get("emulated"):
        return Check("target_cpu", "cpu", "WARN", detail + ", emulated: timings not meaningful",
                     "use a native arm64 Python (not Rosetta) or real hardware for timings")
    return Check("target_cpu", "cpu", "PASS", detail)


def adb_command(target: Target, *args: str) -> list[str]:
    return [target.adb] + (["-s", target.serial] if target.serial else []) + list(args)


def device_cores(target: Target) -> Optional[set[int]]:
    """CPU numbers the device has: /sys/devices/system/cpu/possible ('0-7'), else /proc/cpuinfo's processors."""
    code, out, _ = run_command(adb_command(target, "shell", "cat", "/sys/devices/system/cpu/possible"))
    cores = parse_cpu_list(last_line(out)) if code == 0 and last_line(out) else None
    if cores is None:
        code, out, _ = run_command(adb_command(target, "shell", "cat", "/proc/cpuinfo"))
        numbers = {int(n) for n in re.findall(r"^processor\s*:\s*(\d+)", out, re.M)} if code == 0 else set()
        cores = numbers or None
    return cores


def parse_cpu_list(text: str) -> Optional[set[int]]:
    cores: set[int] = set()
    for part in text.split(","):
        match = re.fullmatch(r"\s*(\d+)(?:-(\d+))?\s*", part)
        if not match:
            return None
        first, last = int(match.group(1)), int(match.group(2) or match.group(1))
        cores.update(range(first, last + 1))
    return cores or None


def host_cores() -> set[int]:
    if hasattr(os, "sched_getaffinity"):
        return set(os.sched_getaffinity(0))
    return set(range(os.cpu_count() or 1))


# ---------------------------------------------------------------- models

def method_of(experiment: dict[str, Any]) -> str:
    extra = [str(arg) for arg in experiment.get("extra_args") or []]
    for index, arg in enumerate(extra):
        if arg == "--method_name" and index + 1 < len(extra):
            return extra[index + 1]
        if arg.startswith("--method_name="):
            return arg.split("=", 1)[1]
    return "forward"


def pte_identifier_problem(path: Path) -> Optional[str]:
    """Why a file cannot be an ExecuTorch program, from its header, or None.

    A .pte is a flatbuffer whose file identifier (bytes 4-7) is 'ET' and a two-digit version;
    checking it first spares the runtime a file that is plainly something else.
    """
    with path.open("rb") as handle:
        header = handle.read(8)
    if len(header) < 8:
        return f"only {len(header)} bytes: empty or cut short"
    if not re.fullmatch(rb"ET\d\d", header[4:8]):
        return f"file identifier {header[4:8]!r} is not ETnn: not an ExecuTorch program"
    return None


def probe_models(models: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """What the ExecuTorch runtime says about each (model, method): methods and inputs, or an error.

    A file can crash the runtime outright; the child then dies on it, that model is marked,
    and a new child carries on with the rest.
    """
    results: list[dict[str, Any]] = [{} for _ in models]
    todo = list(enumerate(models))
    while todo:
        code, out, err = run_command([sys.executable, "-c", MODEL_PROBE, json.dumps(todo)],
                                     timeout=MODEL_LOAD_TIMEOUT_S)
        for line in out.splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and isinstance(record.get("index"), int):
                results[record["index"]] = record
        pending = [index for index, _ in todo if results[index].get("stage") != "done"]
        if not pending:
            break
        crashed = pending[0]
        if results[crashed].get("stage") == "start":
            signal_text = f"signal {-code}" if code < 0 else f"exit {code}"
            results[crashed] = {"error": f"the ExecuTorch runtime crashed loading it ({signal_text})"}
        else:  # the child died before reaching any model: no point in retrying
            for index in pending:
                results[index] = {"error": f"the model loader did not run (exit {code}: {last_line(err)})"}
            break
        todo = [(index, model) for index, model in todo if index in pending and index != crashed]
    return results


def check_models(plan: dict[str, Any]) -> tuple[list[Check], dict[str, Any]]:
    wanted = list(dict.fromkeys((experiment["model"], method_of(experiment))
                                for experiment in plan["experiments"] if experiment.get("selected", True)))
    fix_export = (f"export it with: {kit_command('export_model.py')} --outdir models, then set 'model' in "
                  "the config to the .pte it prints")
    fix_corrupt = (f"re-export it with {kit_command('export_model.py')} --force (same executorch version as the "
                   "runner) and check that 'model' in the config names that new .pte")
    checks, facts, loadable = [], {}, []
    for model, method in wanted:
        path = Path(model)
        if not path.is_file():
            checks.append(Check("model", model, "FAIL", "no such file", fix_export))
        elif problem := pte_identifier_problem(path):
            checks.append(Check("model", model, "FAIL", f"not a loadable .pte: {problem}", fix_corrupt))
        else:
            loadable.append((model, method))
    for (model, method), record in zip(loadable, probe_models(loadable) if loadable else []):
        if "error" in record:
            checks.append(Check("model", model, "FAIL", f"not a loadable .pte: {record['error']}", fix_corrupt))
        elif method not in record.get("methods", []):
            checks.append(Check("model", model, "FAIL",
                                f"no method {method!r} (methods: {', '.join(record.get('methods', [])) or 'none'})",
                                "pass the right --method_name in extra_args, or re-export the model"))
        else:
            facts[model] = {"method": method, "inputs": record.get("inputs", [])}
            checks.append(Check("model", model, "PASS", f"{method}: inputs {shape_text(record.get('inputs', []))}"))
    return checks, facts


def shape_text(inputs: list[dict[str, Any]]) -> str:
    return ", ".join("x".join(str(size) for size in tensor["sizes"]) + " " +
                     SCALAR_TYPES.get(tensor["dtype"], f"dtype {tensor['dtype']}") for tensor in inputs) or "no inputs"


# ---------------------------------------------------------------- runners

def runners_of(plan: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """runner folder -> binary path and runner.json, for the selected experiments."""
    found: dict[str, dict[str, Any]] = {}
    for experiment in plan["experiments"]:
        if experiment.get("selected", True):
            found.setdefault(experiment["runner_dir"], {"binary": experiment["runner_path"],
                                                        "runner_json": experiment.get("runner_json"),
                                                        "problem": experiment.get("runner_json_problem")})
    return found


def damaged_runner_json(path: Path) -> Optional[str]:
    """Why a runner.json that exists cannot be used (the pipeline ignores it and loses the runner's facts)."""
    if not path.is_file():
        return None
    try:
        facts = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        return f"its runner.json cannot be read ({type(error).__name__})"
    return None if isinstance(facts, dict) else f"its runner.json is a JSON {type(facts).__name__}, not an object"


def emulated_target(plan: dict[str, Any], target: Target) -> list[Check]:
    """Platform emulated: the runners run under the qemu-aarch64 that mac_pipeline.py's plan names,
    on its emulated CPU (QEMU 11's -cpu max has SME and SME2; max,sme=off has neither)."""
    emulator = next((e["emulator"] for e in plan.get("experiments", []) if e.get("emulator")), None)
    if not emulator:
        return []
    target.emulator, cpu_model = list(emulator), emulator[-1]
    code, out, _ = run_command([emulator[0], "--version"]) if Path(emulator[0]).is_file() else (1, "", "")
    major = re.search(r"version (\d+)\.", out)
    if code != 0 or not major:
        target.cpu = {"sme2": None, "sme": None, "emulated": True}
        return [Check("target_cpu", "emulator", "FAIL", f"emulator not found: {emulator[0]}",
                      "run ./scripts/setup_emulator.sh, or fix 'emulator' in the config")]
    sme = "sme=off" not in cpu_model
    target.cpu = {"chip": f"QEMU {major.group(1)} -cpu {cpu_model}", "cores": os.cpu_count(), "emulated": True,
                  "sme": sme, "sme2": sme and int(major.group(1)) >= 11}
    return [describe_cpu(target.cpu, "the emulated CPU")]


def platform_problem(runner_json: dict[str, Any], target: Target) -> Optional[str]:
    built_for = runner_json.get("platform")
    arch = str(runner_json.get("target_arch", "")).lower()
    if target.emulator:
        return None if built_for == "linux-aarch64" else (f"built for {built_for}; the emulated platform runs "
                                                          "prebuilt-linux-aarch64 (build_runners.py --platform linux-aarch64)")
    if target.platform == "android":
        # linux-aarch64 runners are self-contained arm64 folders (boards, emulated devices): --help decides.
        return None if built_for in ("android", "linux-aarch64") else f"built for {built_for}, not android"
    if built_for == "android":
        return "an Android build; run its experiments with scripts/android_pipeline.py"
    if built_for == "linux-aarch64" and host_arch() not in ARM_ARCHES:
        return f"built for linux-aarch64, this host is {host_arch()}"
    if built_for in ("mac", "linux") and built_for != target.platform:
        return f"built for {built_for}, this host is {target.platform}"
    if arch and arch != host_arch() and not (arch in ARM_ARCHES and host_arch() in ARM_ARCHES):
        return f"targets {arch}, this host is {host_arch()}"
    return None


def help_on_host(binary: Path, prefix: Optional[list[str]] = None) -> tuple[bool, str]:
    code, out, err = run_command([*(prefix or []), str(binary), "--help"])
    if code == 0 and "--model_path" in out + err:
        return True, "--help works"
    return False, f"--help failed: {last_line(err) or last_line(out) or f'exit {code}'}"


def help_on_device(binary: Path, target: Target, device_dir: str) -> tuple[bool, str]:
    """Push the runner (and libc++_shared.so) to a scratch folder, run --help, remove the folder."""
    scratch = f"{device_dir.rstrip('/')}/validate_{uuid.uuid4().hex[:8]}"
    try:
        code, _, err = run_command(adb_command(target, "shell", "mkdir", "-p", scratch))
        if code != 0:
            return False, f"cannot create {scratch} on the device: {last_line(err)}"
        for local in (binary, binary.parent / "libc++_shared.so"):
            if local.is_file():
                code, _, err = run_command(adb_command(target, "push", str(local), f"{scratch}/{local.name}"))
                if code != 0:
                    return False, f"adb push {local.name} failed: {last_line(err)}"
        code, out, err = run_command(adb_command(
            target, "shell", f"cd {scratch} && chmod 755 {binary.name} && LD_LIBRARY_PATH={scratch} "
                             f"./{binary.name} --help"))
        if code == 0 and "--model_path" in out + err:
            return True, "--help works on the device"
        return False, f"--help failed on the device: {last_line(err) or last_line(out) or f'exit {code}'}"
    finally:
        run_command(adb_command(target, "shell", "rm", "-rf", scratch))


def build_command(runner_name: str, platform_name: str) -> str:
    """How to build a runner like this one: source builds for SME2 ON/OFF and for Android."""
    if platform_name == "android" or "sme2" in runner_name:
        return f"{kit_command('build_runners.py')} --flavor source --platform {platform_name}"
    return kit_command("build_runners.py")


def check_runners(plan: dict[str, Any], target: Target, device_dir: str) -> list[Check]:
    checks = []
    for folder, runner in runners_of(plan).items():
        binary, runner_json = Path(runner["binary"]), runner["runner_json"]
        name = Path(folder).name
        if not binary.is_file():
            checks.append(Check("runner", name, "FAIL", f"runner not found: {binary}",
                                f"build it with: {build_command(name, target.platform)}, or fix 'runner' in the config"))
            continue
        if runner_json is None and not runner.get("problem"):
            runner["problem"] = damaged_runner_json(Path(folder) / "runner.json")
        if runner.get("problem"):
            checks.append(Check("runner", name, "FAIL", f"{binary}: {runner['problem']}",
                                f"rebuild it: {build_command(name, target.platform)} --force"))
            continue
        if runner_json is None:
            checks.append(Check("runner", name, "WARN", f"no readable runner.json beside {binary}: its platform "
                                "and SME2 kernels are unknown", f"rebuild it: {build_command(name, target.platform)} --force"))
            problem = None
        else:
            problem = platform_problem(runner_json, target)
        if problem:
            checks.append(Check("runner", name, "FAIL", f"{binary}: {problem}",
                                f"build a runner for {target.platform}: {build_command(name, target.platform)}"))
            continue
        if target.platform == "android":
            if target.device is None:
                checks.append(Check("runner", name, "SKIP", "no device to run --help on"))
                continue
            works, how = help_on_device(binary, target, device_dir)
        elif target.emulator and not Path(target.emulator[0]).is_file():
            checks.append(Check("runner", name, "SKIP", "no emulator to run --help under (see target_cpu)"))
            continue
        else:
            works, how = help_on_host(binary, target.emulator)
        if not works:
            checks.append(Check("runner", name, "FAIL", f"{binary}: {how}",
                                f"rebuild it: {build_command(name, target.platform)} --force"))
        elif runner_json is not None:
            checks.append(Check("runner", name, "PASS",
                                f"{runner_json.get('flavor', '?')} for {runner_json.get('platform', '?')}/"
                                f"{runner_json.get('target_arch', '?')}, SME2 kernels "
                                f"{'yes' if runner_json.get('sme2_kernels') else 'no'}; {how}"))
    return checks


# ---------------------------------------------------------------- SME2 rules

def mismatch_status(allow: bool) -> str:
    return "WARN" if allow else "FAIL"


def claims_sme2(experiment: Optional[dict[str, Any]]) -> Optional[bool]:
    """Whether an experiment runs with SME2 kernels: its runner has them and its feature mask
    (hide_cpu_features) does not hide SME2."""
    kernels = ((experiment or {}).get("runner_json") or {}).get("sme2_kernels")
    return False if kernels is True and "sme2" in ((experiment or {}).get("hide_cpu_features") or []) else kernels


def sme2_on_sides(plan: dict[str, Any]) -> set[str]:
    """Experiments that are the SME2 ON side of a compare pair whose sides differ in SME2 kernels."""
    experiments = {experiment["dir"]: experiment for experiment in plan["experiments"]}
    on_sides = set()
    for pair in plan.get("compare") or []:
        sides = [experiments.get(pair["baseline"]), experiments.get(pair["candidate"])]
        kernels = [claims_sme2(side) for side in sides]
        if kernels[0] is not kernels[1] and None not in kernels:
            on_sides.add((pair["baseline"], pair["candidate"])[kernels.index(True)])
    return on_sides


def check_sme2_labels(plan: dict[str, Any], target: Target, allow: bool) -> list[Check]:
    """An SME2 ON/OFF comparison on a CPU without SME2 would claim an effect that cannot happen (FAIL);
    a runner that merely ships SME2 kernels (the macOS wheel's) runs its other kernels there (WARN)."""
    checks = []
    cpu_sme2 = target.cpu.get("sme2")
    on_sides = sme2_on_sides(plan)
    for experiment in plan["experiments"]:
        runner_json = experiment.get("runner_json") or {}
        if not experiment.get("selected", True) or claims_sme2(experiment) is not True:
            continue
        subject = experiment["dir"]
        if cpu_sme2 is True:
            checks.append(Check("sme2_label", subject, "PASS", "SME2 ON runner on a CPU with SME2"))
        elif cpu_sme2 is False and subject not in on_sides:
            checks.append(Check("sme2_label", subject, "WARN",
                                f"runner {Path(experiment['runner_dir']).name} ships SME2 kernels, but this CPU has "
                                "no SME2: XNNPACK runs its other kernels and the report says \"SME2 not available "
                                "on this CPU\"", "for an SME2 effect, run on an SME2 CPU (Apple M4 or an Armv9 "
                                "phone with SME2)"))
        elif cpu_sme2 is False:
            checks.append(Check("sme2_label", subject, mismatch_status(allow),
                                f"runner {Path(experiment['runner_dir']).name} has SME2 kernels, but SME2 is not "
                                "available on this CPU: an SME2 ON label would not be true",
                                "run on an SME2 CPU (Apple M4 or an Armv9 phone with SME2), or pass "
                                "--allow-mismatch to run anyway (the manifest and report then say "
                                "\"SME2 not available on this CPU\")"))
        else:
            checks.append(Check("sme2_label", subject, "WARN", "SME2 ON runner; SME2 of the CPU unknown",
                                "run scripts/validate_setup.py to see whether the CPU has SME2"))
    if not checks:
        checks.append(Check("sme2_label", "config", "SKIP", "no experiment uses a runner with SME2 kernels"))
    return checks


def runner_differences(first: dict[str, Any], second: dict[str, Any]) -> list[str]:
    """runner.json fields that differ, other than the SME switches and build identity."""
    differences = []
    for key in sorted(set(first) | set(second)):
        if key in BUILD_IDENTITY_KEYS:
            continue
        if key == "cmake_flags":
            flags_a, flags_b = first.get(key) or {}, second.get(key) or {}
            for flag in sorted(set(flags_a) | set(flags_b)):
                if flag not in SME_SWITCHES and flags_a.get(flag) != flags_b.get(flag):
                    differences.append(f"cmake_flags.{flag}: {flags_a.get(flag)!r} vs {flags_b.get(flag)!r}")
        elif first.get(key) != second.get(key):
            differences.append(f"{key}: {first.get(key)!r} vs {second.get(key)!r}")
    return differences


def check_sme2_pairs(plan: dict[str, Any], allow: bool) -> list[Check]:
    experiments = {experiment["dir"]: experiment for experiment in plan["experiments"]}
    checks = []
    for pair in plan.get("compare") or []:
        base, cand = experiments.get(pair["baseline"]), experiments.get(pair["candidate"])
        if base is None or cand is None:
            continue
        base_json, cand_json = base.get("runner_json") or {}, cand.get("runner_json") or {}
        labels = (claims_sme2(base), claims_sme2(cand))
        if not (isinstance(labels[0], bool) and isinstance(labels[1], bool) and labels[0] != labels[1]):
            continue
        subject = f"{pair['baseline']}->{pair['candidate']}"
        problems = runner_differences(base_json, cand_json)
        problems += [f"experiment {key}: {base.get(key)!r} vs {cand.get(key)!r}"
                     for key in PAIR_SETTINGS if base.get(key) != cand.get(key)]
        flags_a, flags_b = base_json.get("cmake_flags") or {}, cand_json.get("cmake_flags") or {}
        switched = [flag for flag in SME_SWITCHES if flags_a.get(flag) != flags_b.get(flag)]
        if problems:
            checks.append(Check("sme2_pair", subject, mismatch_status(allow),
                                "the ON/OFF pair differs in more than the SME switches: " + "; ".join(problems),
                                f"build both with: {kit_command('build_runners.py')} --flavor source (same checkout, "
                                "same flags but XNNPACK_ENABLE_ARM_SME2/SME) and give both experiments the same "
                                "settings; or pass --allow-mismatch to compare anyway"))
        elif labels == (True, False):
            checks.append(Check("sme2_pair", subject, "WARN",
                                "baseline is SME2 ON and candidate OFF: the speedup will read OFF relative to ON",
                                "swap baseline and candidate (the templates compare sme2_off -> sme2_on)"))
        else:
            masked = base.get("runner_dir") == cand.get("runner_dir")
            checks.append(Check("sme2_pair", subject, "PASS",
                                ("one runner, SME2 hidden from one side by its feature mask" if masked else
                                 "runners differ only in " + (", ".join(switched) or "their SME2 kernels")) +
                                "; experiment settings identical"))
    if not checks:
        checks.append(Check("sme2_pair", "config", "SKIP", "no SME2 ON/OFF compare pair"))
    return checks


# ---------------------------------------------------------------- cores and output

def check_pinned_cores(plan: dict[str, Any], target: Target) -> list[Check]:
    pinned = sorted({core for e in plan["experiments"] if e.get("selected", True) for core in e.get("cpu_affinity") or []})
    if not pinned:
        return [Check("pinned_cores", "config", "SKIP", "no cpu_affinity in the config")]
    if target.platform == "mac":
        return [Check("pinned_cores", "config", "WARN", f"cpu_affinity {pinned} is ignored: macOS has no CPU pinning",
                      "drop cpu_affinity from the config (or keep it for an Android run)")]
    if target.platform == "android":
        if target.device is None:
            return [Check("pinned_cores", "device", "SKIP", "no device")]
        cores, where = device_cores(target), "the device"
    else:
        cores, where = host_cores(), "this host"
    if cores is None:
        return [Check("pinned_cores", where, "WARN", "could not read the CPU list", "check adb shell access")]
    missing = [core for core in pinned if core not in cores]
    if missing:
        return [Check("pinned_cores", where, "FAIL", f"cpu_affinity {pinned}: cores {missing} do not exist on {where} "
                      f"(has {min(cores)}-{max(cores)})", "pin to existing cores (on a phone, the big cores)")]
    return [Check("pinned_cores", where, "PASS", f"cpu_affinity {pinned} within {min(cores)}-{max(cores)}")]


def check_threads(plan: dict[str, Any], target: Target) -> list[Check]:
    """More threads than cores (or than pinned cores) time the scheduler, not the model."""
    cores = (target.cpu or {}).get("cores")
    checks = []
    for experiment in plan["experiments"]:
        if not experiment.get("selected", True):
            continue
        threads, pinned = experiment.get("threads"), experiment.get("cpu_affinity") or []
        limit, what = (len(pinned), f"the {len(pinned)} pinned core(s)") if pinned else (cores, f"the {cores} cores")
        if not isinstance(threads, int) or not isinstance(limit, int) or limit < 1:
            checks.append(Check("threads", experiment["dir"], "SKIP", "core count unknown"))
        elif threads > limit:
            checks.append(Check("threads", experiment["dir"], "WARN",
                                f"{threads} threads on {what}: threads wait for each other and the timings measure "
                                "the scheduler", f"use at most {limit} threads (or pin to more cores)"))
        else:
            checks.append(Check("threads", experiment["dir"], "PASS", f"{threads} thread(s) on {what}"))
    return checks or [Check("threads", "config", "SKIP", "no selected experiment")]


def nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_output_root(plan: dict[str, Any]) -> list[Check]:
    output_root, run_dir = Path(plan["output_root"]), Path(plan["run_dir"])
    if output_root.exists() and not output_root.is_dir():
        return [Check("output_root", str(output_root), "FAIL", "exists and is not a folder",
                      "set output_root in the config to a folder path")]
    existing = nearest_existing(run_dir.parent)
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        return [Check("output_root", str(output_root), "FAIL", f"{existing} is not writable",
                      "set output_root to a folder you can write (e.g. out/my_run)")]
    if run_dir.exists() and any(run_dir.iterdir()):
        return [Check("output_root", str(output_root), "FAIL", f"{run_dir} already holds files",
                      "choose a new output_root")]
    if run_dir != output_root:
        return [Check("output_root", str(output_root), "PASS",
                      f"holds an earlier run (kept); this run will write to {run_dir} "
                      "(or pass --resume to the pipeline to continue the earlier one)")]
    return [Check("output_root", str(output_root), "PASS", f"this run will write to {run_dir} (new folder)")]


# ---------------------------------------------------------------- putting it together

def choose_platform(args: argparse.Namespace, config: Optional[dict[str, Any]]) -> tuple[str, list[Check]]:
    configured = (config or {}).get("platform")
    chosen = args.platform or ("android" if configured == "android" else host_platform())
    checks = []
    if args.platform and configured and configured != args.platform:
        checks.append(Check("target_cpu", "platform", "WARN",
                            f"--platform {args.platform} but the config says platform {configured}",
                            "make them agree (the config's platform field is informational)"))
    if not args.platform and configured in ("mac", "linux") and configured != host_platform():
        checks.append(Check("target_cpu", "platform", "WARN",
                            f"the config is for {configured}, this host is {host_platform()}: checking for this host",
                            "use the template for this host (configs/<platform>_template.json)"))
    if chosen in ("mac", "linux") and chosen != host_platform():
        checks.append(Check("target_cpu", "platform", "FAIL", f"platform {chosen} but this host is {host_platform()}",
                            f"run this check on the {chosen} machine, or pass --platform {host_platform()}"))
    return chosen, checks


def run_checks(args: argparse.Namespace) -> tuple[list[Check], dict[str, Any]]:
    config_path = args.config.expanduser().resolve()
    config, file_check = load_config(config_path)
    checks = [file_check]
    facts: dict[str, Any] = {"config_path": str(config_path), "platform": None, "cpu": None, "device": None,
                             "output_root": None, "run_dir": None, "models": {}, "runners": {}}
    if config is None:
        return checks, facts
    checks.append(check_schema(config, (args.schema or DEFAULT_SCHEMA).expanduser()))
    checks += check_compare_names(config)
    plan, plan_check = pipeline_plan(config_path, args)
    checks.append(plan_check)
    platform_name, platform_checks = choose_platform(args, config)
    checks += platform_checks
    # Host/device facts and the model loader each start a Python that imports torch: overlap them.
    with ThreadPoolExecutor(max_workers=1) as pool:
        finding_target = pool.submit(find_target, platform_name, args.serial, find_adb(args.adb))
        model_checks, facts["models"] = check_models(plan) if plan is not None else ([], {})
        target, target_checks = finding_target.result()
    checks += (emulated_target(plan, target) if plan is not None else []) or target_checks
    facts.update(platform=platform_name, cpu=target.cpu, device=target.device)
    if plan is None:
        checks += [Check(check_id, "config", "SKIP", "needs a config the pipeline accepts (see pipeline_plan)")
                   for check_id in ("model", "runner", "sme2_label", "sme2_pair", "pinned_cores", "threads",
                                    "output_root")]
        return checks, facts
    facts.update(output_root=plan["output_root"], run_dir=plan["run_dir"],
                 runners={Path(folder).name: runner["runner_json"] for folder, runner in runners_of(plan).items()})
    checks += model_checks
    checks += check_runners(plan, target, config.get("device_dir", DEFAULT_DEVICE_DIR))
    checks += check_sme2_labels(plan, target, args.allow_mismatch)
    checks += check_sme2_pairs(plan, args.allow_mismatch)
    checks += check_pinned_cores(plan, target)
    checks += check_threads(plan, target)
    checks += check_output_root(plan)
    return checks, facts


def build_report(args: argparse.Namespace, checks: list[Check], facts: dict[str, Any]) -> dict[str, Any]:
    order = list(CHECKS)
    checks = sorted(checks, key=lambda check: order.index(check.id))  # stable: sorted() keeps subject order
    failed = any(check.status == "FAIL" for check in checks)
    warned = any(check.status == "WARN" for check in checks)
    pipeline = "android_pipeline.py" + (f" --serial {args.serial}" if args.serial else "") \
        if facts.get("platform") == "android" else "mac_pipeline.py"
    run_command_text = f"{kit_command(pipeline)} --config {facts['config_path']}"
    if failed:
        verdict, action = "fail", "troubleshoot"
        hint = f"fix each FAIL row as its fix says and validate again; stuck: see {TROUBLESHOOTING_KIT}"
    else:
        verdict, action = ("warn" if warned else "pass"), "proceed"
        hint = f"run: {run_command_text}" + (" (read the WARN rows first)" if warned else "")
    return {"schema_version": SCHEMA_VERSION, "tool": TOOL, "target": facts["config_path"],
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "verdict": verdict, "next_action": action, "next_action_hint": hint,
            "counts": {status: sum(c.status == status for c in checks) for status in ("PASS", "WARN", "FAIL", "SKIP")},
            "checks": [asdict(check) for check in checks], "facts": facts}


def print_table(console: Console, report: dict[str, Any]) -> None:
    colors = {"PASS": "green", "WARN": "yellow", "FAIL": "bold red", "SKIP": "dim"}
    table = Table(title=f"Pipeline checks: {report['target']}")
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
    if report["facts"].get("run_dir"):
        console.print(f"the pipeline will write to [bold]{report['facts']['run_dir']}[/bold]", highlight=False,
                      soft_wrap=True)
    counts = ", ".join(f"{n} {status}" for status, n in report["counts"].items())
    color = {"pass": "green", "warn": "yellow", "fail": "bold red"}[report["verdict"]]
    console.print(f"{counts}: [{color}]{report['verdict'].upper()}[/], next action: [bold]{report['next_action']}"
                  f"[/bold] ({report['next_action_hint']})", highlight=False, soft_wrap=True)


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Check a pipeline config before running it: PASS/WARN/FAIL per check with the fix, a verdict "
                    "and the next action. Writes nothing. Exit 0 when nothing FAILs.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, required=True, help="pipeline config (configs/config.schema.json)")
    parser.add_argument("--platform", choices=["mac", "linux", "android"],
                        help="where the runners will run (default: the config's platform if android, else this host)")
    parser.add_argument("--serial", help="android: adb serial of the device (needed when several are attached)")
    parser.add_argument("--adb", help="android: adb executable (default: $ADB, else adb on PATH)")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of the table")
    parser.add_argument("--allow-mismatch", action="store_true",
                        help="WARN instead of FAIL for an SME2 ON label on a CPU without SME2 and for an ON/OFF pair "
                             "whose runners differ in more than the SME switches")
    parser.add_argument("--runners-dir", type=Path, help="where bare runner names are looked up (default: runners/)")
    parser.add_argument("--schema", type=Path, help=f"config schema (default: {DEFAULT_SCHEMA.relative_to(SCRIPTS_DIR.parent)})")
    return parser.parse_args(argv)


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    console = Console(stderr=args.json)
    try:
        checks, facts = run_checks(args)
    except KeyboardInterrupt:
        console.print("[bold red]interrupted:[/bold red] nothing was checked to the end (this script writes "
                      "nothing); run the same command again", highlight=False, soft_wrap=True)
        return 130
    report = build_report(args, checks, facts)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_table(console, report)
    return 1 if report["verdict"] == "fail" else 0


if __name__ == "__main__":
    sys.exit(main())
