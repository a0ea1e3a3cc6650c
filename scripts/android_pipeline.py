#!/usr/bin/env python3
"""Run the profiling experiments of a config on an Android phone over adb.

Same config, run directory and manifest as the host pipeline: this script owns everything
adb, and scripts/mac_pipeline.py (which must sit beside it, with its plan stage plan_runs.py)
owns the plan, the interleaved rounds, the run directory and the analysis call. Steps:

  1. pick the device: --serial, or the one attached (clear error for none or several)
  2. check it and record its facts: ABI (must be arm64-v8a), CPU features from
     /proc/cpuinfo (SME2 is read by scripts/validate_setup.py, the one owner of that rule),
     model, SoC, Android version, governor and frequency of the pinned cores, thermal status
  3. push each runner (with the .so files beside it: libc++_shared.so, or the ExecuTorch runtime
     of a self-contained build) and each model once, to a per-run device folder
  4. run mac_pipeline.py, which calls back into this script for every runner invocation:
     remove stale outputs on the device, run (under taskset when cpu_affinity is set), pull the
     timing JSON and ETDump, and in kernels mode the `logcat -s XNNPACK` lines; a runner that
     passes timeout_s, or a Ctrl-C, is stopped on the device too (pkill), and a lost device
     stops the run as interrupted (reconnect it, then --resume)
  5. remove the device folder

Example:
    python scripts/android_pipeline.py --config configs/android_template.json
    python scripts/android_pipeline.py --config my.json --serial R5CX123 --only sme2_on
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Optional

from rich.console import Console

DEFAULT_DEVICE_DIR = "/data/local/tmp/sme2_profiling"
EXPECTED_ABI = "arm64-v8a"
LIBCXX = "libc++_shared.so"
ADB_TIMEOUT_S = 120
# dumpsys thermalservice "Thermal Status: N" (android.os.PowerManager THERMAL_STATUS_*).
THERMAL_STATUS = ["none", "light", "moderate", "severe", "critical", "emergency", "shutdown"]
EMULATOR_HARDWARE = {"ranchu", "goldfish"}
EXIT_BAD_INPUT = 2
EXIT_TIMEOUT = 124  # what timeout(1) returns
EXIT_DEVICE_LOST = 75  # mac_pipeline.py stops the run as interrupted and prints the --resume hint


class DeviceError(Exception):
    """A problem with adb or the device; the message names it and the fix."""


class Interrupted(Exception):
    """SIGINT, SIGTERM or SIGHUP: stop the device side too, then exit 128 + signal."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def raise_interrupted(signum: int, _frame: object) -> None:
    for name in ("SIGINT", "SIGTERM", "SIGHUP"):
        signal.signal(getattr(signal, name), signal.SIG_IGN)  # the cleanup must not be cut short
    raise Interrupted(signum)


def catch_interrupts() -> None:
    for name in ("SIGINT", "SIGTERM", "SIGHUP"):
        signal.signal(getattr(signal, name), raise_interrupted)


# --- adb ---------------------------------------------------------------------------------


def find_adb(explicit: Optional[str]) -> str:
    adb = explicit or os.environ.get("ADB") or shutil.which("adb")
    if not adb or not (Path(adb).is_file() or shutil.which(adb)):
        raise DeviceError("adb not found: install Android platform-tools and put adb on PATH (or pass --adb)")
    return str(Path(adb).resolve()) if Path(adb).is_file() else shutil.which(adb)


def adb_run(adb: str, serial: Optional[str], *args: str, check: bool = True,
            timeout: float = ADB_TIMEOUT_S) -> subprocess.CompletedProcess:
    command = [adb] + (["-s", serial] if serial else []) + list(args)
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise DeviceError(f"adb {args[0]} timed out after {timeout:g} s; check the USB connection") from None
    if check and result.returncode != 0:
        message = (result.stderr.strip() or result.stdout.strip() or f"exit {result.returncode}").splitlines()[-1]
        raise DeviceError(f"adb {' '.join(args[:2])} failed: {message}")
    return result


def shell_text(adb: str, serial: str, command: str) -> str:
    """stdout of a device command; a failing command (a file the device lacks) is not an error here."""
    return adb_run(adb, serial, "shell", command, check=False).stdout


def parse_devices(text: str) -> list[tuple[str, str]]:
    devices = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 2 and not line.startswith(("List of devices", "*")):
            devices.append((fields[0], fields[1]))
    return devices


def choose_device(adb: str, serial: Optional[str]) -> str:
    devices = parse_devices(adb_run(adb, None, "devices").stdout)
    states = dict(devices)
    if serial:
        if serial not in states:
            listed = ", ".join(f"{s} ({state})" for s, state in devices) or "none"
            raise DeviceError(f"device {serial} not found (adb devices lists: {listed}); check the serial")
    elif not devices:
        raise DeviceError("no adb device found: connect the phone by USB with USB debugging on "
                          "(adb devices lists nothing)")
    elif len(devices) > 1:
        raise DeviceError(f"several adb devices attached ({', '.join(s for s, _ in devices)}): "
                          "pass --serial with one of them")
    else:
        serial = devices[0][0]
    if states[serial] == "unauthorized":
        raise DeviceError(f"device {serial} is unauthorized: unlock it and accept the USB debugging prompt")
    if states[serial] != "device":
        raise DeviceError(f"device {serial} is {states[serial]}: reconnect it (adb devices must say 'device')")
    return serial


# --- device facts ------------------------------------------------------------------------


def parse_getprop(text: str) -> dict[str, str]:
    return dict(re.findall(r"^\[([^\]]*)\]: \[([^\]]*)\]", text, re.M))


def parse_features(cpuinfo: str) -> list[str]:
    features: list[str] = []
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() == "features":
            features += [f for f in value.split() if f not in features]
    return features


def parse_cpufreq(text: str) -> dict[str, dict]:
    """`grep -H . .../cpuN/cpufreq/<file>` lines -> {N: {governor, cur_freq_khz, max_freq_khz}}."""
    names = {"scaling_governor": "governor", "scaling_cur_freq": "cur_freq_khz", "cpuinfo_max_freq": "max_freq_khz"}
    cores: dict[str, dict] = {}
    for core, name, value in re.findall(r"cpu(\d+)/cpufreq/(\w+):(.*)", text):
        if name in names:
            value = value.strip()
            cores.setdefault(core, {})[names[name]] = int(value) if value.isdigit() else value
    return cores


def parse_thermal(text: str) -> Optional[str]:
    found = re.search(r"Thermal Status:\s*(\d+)", text)
    if not found:
        return None
    level = int(found.group(1))
    return THERMAL_STATUS[level] if level < len(THERMAL_STATUS) else str(level)


def sme_facts(adb: str, serial: str, console: Console) -> dict:
    """SME/SME2 of the device from scripts/validate_setup.py --android --json (the owner of that rule)."""
    validate_setup = Path(__file__).resolve().parent / "validate_setup.py"
    unknown = {"sme": None, "sme2": None, "sme_source": "not detected: scripts/validate_setup.py not found"}
    if not validate_setup.is_file():
        console.print("[yellow]warning:[/yellow] scripts/validate_setup.py not found: device SME2 not detected")
        return unknown
    env = {**os.environ, "PATH": str(Path(adb).parent) + os.pathsep + os.environ.get("PATH", "")}
    result = subprocess.run([sys.executable, str(validate_setup), "--android", "--serial", serial, "--json"],
                            capture_output=True, text=True, env=env, timeout=300)
    try:
        device = json.loads(result.stdout).get("device") or {}
    except json.JSONDecodeError:
        device = {}
    if "sme2" not in device:
        console.print("[yellow]warning:[/yellow] validate_setup.py did not report the device's SME2")
        return {**unknown, "sme_source": "not detected: validate_setup.py gave no device facts"}
    return {key: device.get(key) for key in ("sme", "sme2", "sme_source", "chip")}


def device_facts(adb: str, serial: str, pinned: list[int], console: Console) -> dict:
    props = parse_getprop(shell_text(adb, serial, "getprop"))
    cpuinfo = shell_text(adb, serial, "cat /proc/cpuinfo")
    cores = len(re.findall(r"^processor\s*:", cpuinfo, re.M))
    watched = pinned or list(range(cores))
    files = [f"/sys/devices/system/cpu/cpu{c}/cpufreq/{name}" for c in watched
             for name in ("scaling_governor", "scaling_cur_freq", "cpuinfo_max_freq")]
    cpufreq = parse_cpufreq(shell_text(adb, serial, "grep -H . " + " ".join(files))) if files else {}
    soc = " ".join(filter(None, [props.get("ro.soc.manufacturer"), props.get("ro.soc.model")]))
    facts = {
        "serial": serial,
        "model": props.get("ro.product.model", "unknown"),
        "manufacturer": props.get("ro.product.manufacturer", "unknown"),
        "soc": soc or props.get("ro.board.platform") or props.get("ro.hardware") or "unknown",
        "abi": props.get("ro.product.cpu.abi", "unknown"),
        "android_version": props.get("ro.build.version.release", "unknown"),
        "sdk": props.get("ro.build.version.sdk", "unknown"),
        "cores": cores, "features": parse_features(cpuinfo),
        "pinned_cores": pinned, "cpufreq": {str(c): cpufreq.get(str(c), {}) for c in watched},
        "thermal_status": parse_thermal(shell_text(adb, serial, "dumpsys thermalservice")) or "unknown",
        "emulated": (props.get("ro.kernel.qemu") == "1" or props.get("ro.boot.qemu") == "1"
                     or props.get("ro.hardware") in EMULATOR_HARDWARE),
    }
    if facts["abi"] != EXPECTED_ABI:
        raise DeviceError(f"device {serial} reports ABI {facts['abi']}; the Android runners are "
                          f"{EXPECTED_ABI} builds: use a 64-bit Arm phone")
    facts.update(sme_facts(adb, serial, console))
    if facts.get("chip") in (None, "", "unknown"):
        facts["chip"] = facts["soc"]
    return facts


def warn_about(facts: dict, console: Console) -> None:
    """Things that do not stop a run but change what its numbers mean."""
    if facts["sme2"] is False:
        console.print(f"[yellow]warning:[/yellow] {facts['model']} has no SME2 in /proc/cpuinfo: SME2 ON runs "
                      "will be labelled 'SME2 not available on this CPU'")
    for core, freq in facts["cpufreq"].items():
        if freq.get("governor") not in (None, "performance"):
            console.print(f"[dim]cpu{core} governor is {freq['governor']}: frequency may vary between runs[/dim]")


# --- session: push once, run many times --------------------------------------------------


def plan_of(config: Path, only: Optional[list[str]], mac_pipeline: Path, extra: list[str]) -> dict:
    """The resolved plan (paths, runners, selected experiments) from mac_pipeline.py --dry-run --json."""
    command = [sys.executable, str(mac_pipeline), "--config", str(config), "--dry-run", "--json"] + extra
    if only:
        command += ["--only", *only]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
        raise DeviceError(re.sub(r"^error:\s*", "", lines[-1] if lines else f"mac_pipeline.py exit {result.returncode}"))
    return json.loads(result.stdout)


def push_session(adb: str, serial: str, plan: dict, device_dir: str, console: Console) -> dict:
    """Push every runner (with the .so files beside it) and model of the selected experiments, once."""
    files: dict[str, str] = {}
    runner_dirs: dict[str, str] = {}
    libraries: dict[str, str] = {}
    selected = [e for e in plan["experiments"] if e["selected"]]
    adb_run(adb, serial, "shell", f"mkdir -p {shlex.quote(device_dir)}/out")
    for experiment in selected:
        runner = Path(experiment["runner_path"])
        if runner.is_file() and str(runner) not in files:
            remote_dir = f"{device_dir}/runners/{len(runner_dirs)}_{runner.parent.name}"
            adb_run(adb, serial, "push", str(runner), f"{remote_dir}/{runner.name}")
            adb_run(adb, serial, "shell", f"chmod 755 {shlex.quote(remote_dir + '/' + runner.name)}")
            for library in shared_libraries(runner.parent):
                adb_run(adb, serial, "push", str(library), f"{remote_dir}/{library.name}")
                libraries[str(library)] = f"{remote_dir}/{library.name}"  # e.g. the feature mask to preload
            if not (runner.parent / LIBCXX).is_file() and (experiment.get("runner_json") or {}).get("platform") == "android":
                console.print(f"[yellow]warning:[/yellow] no {LIBCXX} beside {runner}: the runner may not start; "
                              "rebuild it with build_runners.py --flavor source --platform android")
            files[str(runner)] = f"{remote_dir}/{runner.name}"
            runner_dirs[str(runner)] = remote_dir
        model = Path(experiment["model"])
        if model.is_file() and str(model) not in files:
            files[str(model)] = f"{device_dir}/models/{len([k for k in files if k.endswith('.pte')])}_{model.name}"
            adb_run(adb, serial, "push", str(model), files[str(model)])
    console.print(f"pushed {len(runner_dirs)} runner(s) and {len(files) - len(runner_dirs)} model(s) to "
                  f"{serial}:{device_dir}")
    return {"adb": adb, "serial": serial, "device_dir": device_dir, "files": {**libraries, **files},
            "runner_dirs": runner_dirs}


def shared_libraries(runner_dir: Path) -> list[Path]:
    """The .so files of a runner folder (libc++_shared.so, or the runtime of a self-contained build);
    on the device the runner finds them through LD_LIBRARY_PATH."""
    return sorted(p for p in runner_dir.iterdir() if p.is_file() and (p.suffix == ".so" or ".so." in p.name))


def affinity_mask(cores: list[int]) -> str:
    """taskset's hex mask (toybox taskset on Android takes a mask, not a core list)."""
    return format(sum(1 << core for core in cores), "x")


def device_present(adb: str, serial: str) -> bool:
    try:
        state = adb_run(adb, serial, "get-state", check=False, timeout=20)
    except DeviceError:
        return False
    return state.returncode == 0 and state.stdout.strip() == "device"


def stop_remote(adb: str, serial: str, device_dir: str) -> None:
    """End the runner on the device: killing the host's `adb shell` leaves it running there. Every runner
    of this pipeline run lives under its own device folder, so the pattern matches nothing else."""
    try:
        adb_run(adb, serial, "shell", f"pkill -9 -f {shlex.quote(device_dir + '/runners/')}", check=False, timeout=30)
    except DeviceError:
        pass  # device gone: nothing left to stop from here


def lost_or(adb: str, serial: str, code: int) -> int:
    """EXIT_DEVICE_LOST, with its error line, when the device went away; else `code`."""
    if device_present(adb, serial):
        return code
    print(f"error: device {serial} disconnected during the run", file=sys.stderr)
    return EXIT_DEVICE_LOST


def run_on_device(adb: str, serial: str, command: str, timeout_s: float) -> Optional[subprocess.CompletedProcess]:
    """`adb shell command`, or None when it timed out."""
    try:
        return subprocess.run([adb, "-s", serial, "shell", command], capture_output=True, text=True,
                              errors="replace", timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return None


def launch(session_path: Path, spec_path: Path) -> int:
    """One runner invocation on the device, called by mac_pipeline.py; exits with the runner's code."""
    catch_interrupts()
    session = json.loads(session_path.read_text())
    spec = json.loads(spec_path.read_text())
    try:
        return launch_steps(session, spec)
    except Interrupted as interrupt:
        stop_remote(session["adb"], session["serial"], session["device_dir"])
        print(f"error: interrupted ({interrupt}); the runner on {session['serial']} was stopped", file=sys.stderr)
        return 128 + interrupt.signum
    except DeviceError as error:
        print(f"error: {error}", file=sys.stderr)
        return lost_or(session["adb"], session["serial"], 1)


def launch_steps(session: dict, spec: dict) -> int:
    """Prepare the device folders, run the runner, pull its outputs (and the kernel log)."""
    adb, serial, device_dir = session["adb"], session["serial"], session["device_dir"]
    runner = session["files"].get(spec["runner"])
    if runner is None:
        print(f"error: runner {spec['runner']} was not pushed to the device", file=sys.stderr)
        return 1
    outputs = {host: f"{device_dir}/out/{Path(host).parent.name}/{Path(host).name}" for host in spec["outputs"]}
    args = [outputs.get(a, session["files"].get(a, a)) for a in spec["args"]]
    out_dirs = sorted({str(Path(p).parent) for p in outputs.values()})
    # A stale ETDump or timing JSON must never pass for this run's: remove them in the same shell call.
    prepare = [f"mkdir -p {shlex.join(out_dirs)}", f"rm -f {shlex.join(list(outputs.values()))}"] if outputs else []
    if spec["mode"] == "kernels":
        adb_run(adb, serial, "logcat", "-c")
    # Host paths in the environment (the feature-mask library to preload) become their device copies.
    env = {"LD_LIBRARY_PATH": session["runner_dirs"][spec["runner"]],
           **{key: session["files"].get(value, value) for key, value in spec.get("env", {}).items()}}
    pin = ["taskset", affinity_mask(spec["cpu_affinity"])] if spec.get("cpu_affinity") else []
    run = " ".join([f"{k}={shlex.quote(v)}" for k, v in env.items()] + pin + [shlex.join([runner] + args)])
    command = " && ".join(prepare + [run])
    print(f"# on {serial}: {command}")
    timeout_s = float(spec.get("timeout_s", 3600))
    started = time.monotonic()
    result = run_on_device(adb, serial, command, timeout_s)
    if result is None:
        stop_remote(adb, serial, device_dir)
        print(f"error: timed out after {timeout_s:g} s on {serial}; the runner there was stopped "
              "(raise timeout_s in the config)", file=sys.stderr)
        return lost_or(adb, serial, EXIT_TIMEOUT)
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr)
    print(f"# adb shell exit {result.returncode} after {time.monotonic() - started:.2f} s")
    if result.returncode != 0:
        return lost_or(adb, serial, result.returncode)
    for host, remote in outputs.items():
        pulled = adb_run(adb, serial, "pull", remote, host, check=False)
        if pulled.returncode != 0:
            why = (pulled.stderr.strip() or pulled.stdout.strip() or f"exit {pulled.returncode}").splitlines()[-1]
            print(f"error: the runner finished but adb pull of {remote} failed: {why}", file=sys.stderr)
            return lost_or(adb, serial, 1)
    if spec["mode"] == "kernels":
        print("# adb logcat -d -s XNNPACK")
        sys.stdout.write(adb_run(adb, serial, "logcat", "-d", "-s", "XNNPACK", check=False).stdout)
    return 0


def clean_device(adb: str, serial: str, device_dir: str, console: Console) -> None:
    try:
        result = adb_run(adb, serial, "shell", f"rm -rf {shlex.quote(device_dir)}", check=False, timeout=60)
    except DeviceError:
        result = None
    if result is None or result.returncode != 0:
        console.print(f"[yellow]warning:[/yellow] could not remove {serial}:{device_dir}; remove it with "
                      f"adb -s {serial} shell rm -rf {device_dir}")


# --- main --------------------------------------------------------------------------------


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, help="pipeline config (configs/config.schema.json)")
    parser.add_argument("--serial", help="adb serial of the device (needed when several are attached)")
    parser.add_argument("--only", nargs="+", metavar="EXP", help="run only these experiments")
    parser.add_argument("--resume", action="store_true", help="continue the newest earlier run (see mac_pipeline.py)")
    parser.add_argument("--run-dir", type=Path, help="with --resume: the run directory to continue")
    parser.add_argument("--output-root", type=Path, help="override the config's output_root")
    parser.add_argument("--skip-analysis", action="store_true", help="do not call analyze_results.py at the end")
    parser.add_argument("--adb", help="adb executable (default: $ADB, else adb on PATH)")
    parser.add_argument("--keep-device-files", action="store_true", help="leave the device folder in place")
    parser.add_argument("--session", type=Path, help=argparse.SUPPRESS)  # internal: see launch()
    parser.add_argument("--launch", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not args.launch and not args.config:
        parser.error("--config is required")
    if args.run_dir and not args.resume:
        parser.error("--run-dir works with --resume; a new run goes to the config's output_root "
                     "(choose another with --output-root)")
    return args


def pipeline_args(args: argparse.Namespace) -> list[str]:
    """Flags passed through to mac_pipeline.py."""
    extra = ["--output-root", str(args.output_root)] if args.output_root else []
    extra += ["--run-dir", str(args.run_dir)] if args.run_dir else []
    extra += ["--resume"] * args.resume + ["--skip-analysis"] * args.skip_analysis
    return extra


def run_pipeline(command: list[str]) -> int:
    """Run mac_pipeline.py to its end: a signal is passed on to it (it records `interrupted` and prints the
    --resume hint) instead of killing it half-way."""
    pipeline = subprocess.Popen(command)

    def forward(signum: int, _frame: object) -> None:
        if pipeline.poll() is None:
            pipeline.send_signal(signum)

    for name in ("SIGINT", "SIGTERM", "SIGHUP"):
        signal.signal(getattr(signal, name), forward)
    return pipeline.wait()


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    if args.launch:
        return launch(args.session, args.launch)
    console = Console()
    mac_pipeline = Path(__file__).resolve().parent / "mac_pipeline.py"
    if not mac_pipeline.is_file():
        console.print(f"[bold red]error:[/bold red] {mac_pipeline} not found; this script runs its plan through "
                      "mac_pipeline.py: download it beside android_pipeline.py")
        return EXIT_BAD_INPUT
    output_root = ["--output-root", str(args.output_root)] if args.output_root else []
    catch_interrupts()
    try:
        adb = find_adb(args.adb)
        plan = plan_of(args.config, args.only, mac_pipeline, output_root)
        serial = choose_device(adb, args.serial)
        pinned = sorted({core for e in plan["experiments"] if e["selected"] for core in e["cpu_affinity"]})
        with console.status(f"reading the facts of {serial}..."):
            facts = device_facts(adb, serial, pinned, console)
        warn_about(facts, console)
        console.print(f"device {serial}: {facts['manufacturer']} {facts['model']}, SoC {facts['soc']}, Android "
                      f"{facts['android_version']}, {facts['cores']} cores, SME2 "
                      f"{ {True: 'yes', False: 'no'}.get(facts['sme2'], 'unknown') }, thermal {facts['thermal_status']}"
                      + (" (emulated)" if facts["emulated"] else ""), soft_wrap=True)
        config = json.loads(args.config.read_text())
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        device_dir = f"{config.get('device_dir', DEFAULT_DEVICE_DIR).rstrip('/')}/run-{stamp}-{os.getpid()}"
        session = push_session(adb, serial, plan, device_dir, console)
    except DeviceError as error:
        console.print(f"[bold red]error:[/bold red] {error}", soft_wrap=True)
        return EXIT_BAD_INPUT
    except Interrupted as interrupt:
        console.print(f"[yellow]interrupted ({interrupt}) before the run started;[/yellow] nothing was written; "
                      "run the same command again", soft_wrap=True)
        return 128 + interrupt.signum
    try:
        with tempfile.TemporaryDirectory(prefix="android_pipeline_") as scratch:
            session_file, facts_file = Path(scratch) / "session.json", Path(scratch) / "device.json"
            session_file.write_text(json.dumps(session))
            facts_file.write_text(json.dumps({"pipeline": "android_pipeline.py", "device": facts}))
            launcher = shlex.join([sys.executable, str(Path(__file__).resolve()), "--session", str(session_file),
                                   "--launch"])
            command = [sys.executable, str(mac_pipeline), "--config", str(args.config), "--launcher", launcher,
                       "--device-facts", str(facts_file)] + pipeline_args(args)
            if args.only:
                command += ["--only", *args.only]
            return run_pipeline(command)
    finally:
        if not args.keep_device_files:
            clean_device(adb, serial, device_dir, console)


if __name__ == "__main__":
    sys.exit(main())
