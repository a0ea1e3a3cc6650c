"""The Android pipeline end to end against the stand-in adb (test-cases/adb_standin/adb).

The stand-in maps each simulated device's filesystem to a folder and runs `adb shell` commands
on this machine, so the real profiling runner, pushed to /data/local/tmp, really runs "on the
device", and its timing JSON and ETDump are really pulled back.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
ANDROID_PIPELINE = REPO / "scripts/android_pipeline.py"
ADB = Path(__file__).resolve().parent / "adb_standin" / "adb"
TINY = {"runs": 2, "warmup": 1, "rounds": 2}
PHONE_PROPS = {
    "ro.product.model": "Standin Phone 9", "ro.product.manufacturer": "Arm", "ro.soc.manufacturer": "Acme",
    "ro.soc.model": "SM9999", "ro.product.cpu.abi": "arm64-v8a", "ro.build.version.release": "15",
    "ro.build.version.sdk": "35",
}
ARMV9_FEATURES = "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm sve sve2 sme sme2"


def make_device(root: Path, serial: str, props: dict | None = None, cores: int = 2) -> Path:
    """A simulated phone: getprop values, /proc/cpuinfo, cpufreq of each core, thermal status."""
    device = root / serial
    (device / ".standin/dumpsys").mkdir(parents=True)
    (device / ".standin/getprop.txt").write_text(
        "".join(f"[{k}]: [{v}]\n" for k, v in {**PHONE_PROPS, **(props or {})}.items()))
    (device / "proc").mkdir()
    (device / "proc/cpuinfo").write_text("".join(
        f"processor\t: {c}\nBogoMIPS\t: 48.00\nFeatures\t: {ARMV9_FEATURES}\nCPU implementer\t: 0x41\n\n"
        for c in range(cores)))
    for core in range(cores):
        cpufreq = device / f"sys/devices/system/cpu/cpu{core}/cpufreq"
        cpufreq.mkdir(parents=True)
        (cpufreq / "scaling_governor").write_text("schedutil\n")
        (cpufreq / "scaling_cur_freq").write_text(f"{1800000 + core * 100000}\n")
        (cpufreq / "cpuinfo_max_freq").write_text("3000000\n")
    (device / ".standin/dumpsys/thermalservice.txt").write_text("IsStatusOverride: false\nThermal Status: 1\n")
    return device


def adb_commands(device: Path) -> list[list[str]]:
    log = device / ".standin/commands.log"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.is_file() else []


def run_android(venv_python: str, root: Path, *args) -> subprocess.CompletedProcess:
    env = {**os.environ, "ADB_STANDIN_ROOT": str(root)}
    return subprocess.run([venv_python, str(ANDROID_PIPELINE), "--adb", str(ADB), *map(str, args)],
                          capture_output=True, text=True, env=env)


def error_lines(result: subprocess.CompletedProcess) -> list[str]:
    return [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("error:")]


@pytest.fixture
def config(tmp_path, prebuilt_runner, toy_pte, toy_portable_pte) -> Path:
    """portable vs XNNPACK pinned to core 0, plus a kernels-mode run of a kernel-log runner."""
    logging_runner = tmp_path / "runners/logging"
    logging_runner.mkdir(parents=True)
    shutil.copy2(prebuilt_runner, logging_runner / "profiling_runner")
    runner_json = json.loads((prebuilt_runner.parent / "runner.json").read_text())
    (logging_runner / "runner.json").write_text(json.dumps({**runner_json, "name": "logging", "kernel_log": True}))
    (logging_runner / "libc++_shared.so").write_bytes(b"\x7fELF stand-in library")
    runner = str(prebuilt_runner.parent)
    experiments = [
        {"name": "portable", "runner": runner, "model": str(toy_portable_pte), "cpu_affinity": [0], **TINY},
        {"name": "xnnpack", "runner": runner, "cpu_affinity": [0], **TINY},
        {"name": "kernels", "runner": str(logging_runner), "mode": "kernels"},
    ]
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"platform": "android", "model": str(toy_pte), "output_root": "run",
                                "experiments": experiments,
                                "compare": [{"baseline": "portable", "candidate": "xnnpack"}]}))
    return path


def test_android_pipeline_end_to_end(tmp_path, venv_python, config, toy_pte, toy_portable_pte):
    root = tmp_path / "devices"
    phone = make_device(root, "phone-sme2")
    other = make_device(root, "other-phone")
    result = run_android(venv_python, root, "--config", config, "--serial", "phone-sme2", "--skip-analysis")
    assert result.returncode == 0, result.stdout + result.stderr

    run_dir = tmp_path / "run"
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["pipeline"] == "android_pipeline.py" and manifest["status"] == "complete"
    device = manifest["device"]
    assert (device["serial"], device["model"], device["soc"]) == ("phone-sme2", "Standin Phone 9", "Acme SM9999")
    assert (device["abi"], device["android_version"], device["sdk"]) == ("arm64-v8a", "15", "35")
    assert device["cores"] == 2 and "sme2" in device["features"] and device["sme2"] is True
    assert device["pinned_cores"] == [0]
    assert device["cpufreq"]["0"] == {"governor": "schedutil", "cur_freq_khz": 1800000, "max_freq_khz": 3000000}
    assert device["thermal_status"] == "light" and device["emulated"] is False

    for folder in ("portable_t1", "xnnpack_t1"):
        entry = next(e for e in manifest["experiments"] if e["dir"] == folder)
        assert entry["status"] == "ok", entry
        assert entry["sme2_label"] == "off"  # the runner says no SME2 kernels, whatever the device has
        timing = json.loads((run_dir / folder / "timing.json").read_text())
        assert len(timing["latencies_ms"]) == TINY["runs"] * TINY["rounds"] and min(timing["latencies_ms"]) > 0
        assert (run_dir / folder / "trace.etdump").stat().st_size > 0
        assert "taskset 1 " in (run_dir / folder / "runner.log").read_text()
    kernels_log = (run_dir / "kernels_t1/kernels.log").read_text()
    assert "# adb logcat -d -s XNNPACK" in kernels_log and "# exit 0" in kernels_log
    timing_order = [e["experiment"] for e in manifest["execution_log"] if e["mode"] == "timing"]
    assert timing_order == ["portable_t1", "xnnpack_t1"] * TINY["rounds"]

    commands = adb_commands(phone)
    pushes = [c[1] for c in commands if c[0] == "push"]
    prebuilt = Path(json.loads(config.read_text())["experiments"][0]["runner"])
    assert sorted(pushes) == sorted({str(config.parent / "runners/logging/profiling_runner"),
                                     str(config.parent / "runners/logging/libc++_shared.so"),
                                     str(prebuilt / "profiling_runner"),
                                     str(prebuilt / "libhide_cpu_features.so"),  # the feature mask, with its runner
                                     str(toy_pte), str(toy_portable_pte)})  # each file once per session
    runs = [i for i, c in enumerate(commands) if c[0] == "shell" and "profiling_runner --model_path" in c[1]]
    assert len(runs) == 2 * TINY["rounds"] + 2 + 1  # timing rounds, trace runs, kernels run
    for index in runs:  # the outputs of every run are removed on the device just before it
        command = commands[index][1]
        if "--etdump_path" in command:
            assert command.index("rm -f") < command.index("trace.etdump") < command.index("profiling_runner")
    assert ["logcat", "-c"] in commands and ["logcat", "-d", "-s", "XNNPACK"] in commands
    assert commands[-1][0] == "shell" and commands[-1][1].startswith("rm -rf /data/local/tmp/sme2_profiling/run-")
    assert list((phone / "data/local/tmp/sme2_profiling").iterdir()) == []  # device folder cleaned
    assert all(c[0] != "shell" or "profiling_runner" not in c[1] for c in adb_commands(other))


def test_no_device(tmp_path, venv_python, config):
    (tmp_path / "devices").mkdir()
    result = run_android(venv_python, tmp_path / "devices", "--config", config)
    assert result.returncode == 2
    assert len(error_lines(result)) == 1 and "no adb device found" in error_lines(result)[0]
    assert not (tmp_path / "run").exists()


def test_several_devices(tmp_path, venv_python, config):
    make_device(tmp_path / "devices", "phone-a")
    make_device(tmp_path / "devices", "phone-b")
    result = run_android(venv_python, tmp_path / "devices", "--config", config)
    assert result.returncode == 2
    [line] = error_lines(result)
    assert "phone-a" in line and "phone-b" in line and "--serial" in line
    assert not (tmp_path / "run").exists()
    wrong = run_android(venv_python, tmp_path / "devices", "--config", config, "--serial", "phone-c")
    assert wrong.returncode == 2 and "device phone-c not found" in error_lines(wrong)[0]


def test_device_must_be_arm64(tmp_path, venv_python, config):
    make_device(tmp_path / "devices", "old-phone", {"ro.product.cpu.abi": "armeabi-v7a"})
    result = run_android(venv_python, tmp_path / "devices", "--config", config)
    assert result.returncode == 2
    assert "reports ABI armeabi-v7a" in error_lines(result)[0]
    assert not (tmp_path / "run").exists()


def test_standin_emulation_hooks(tmp_path, prebuilt_runner):
    """What a later emulated device builds on: an exec prefix before device executables only,
    /proc/cpuinfo from a command, XNNPACK stderr lines moved to logcat."""
    device = make_device(tmp_path, "emu")
    (device / "proc/cpuinfo").unlink()
    (device / ".standin/cpuinfo_command").write_text("printf 'processor : 0\\nFeatures : fp asimd sme\\n'")
    env = {**os.environ, "ADB_STANDIN_ROOT": str(tmp_path), "ADB_STANDIN_EXEC_PREFIX": "echo prefixed:"}

    def adb(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(ADB), *args], capture_output=True, text=True, env=env)

    assert adb("push", str(prebuilt_runner), "/data/local/tmp/r/profiling_runner").returncode == 0
    ran = adb("shell", "LD_LIBRARY_PATH=/data/local/tmp/r taskset 1 /data/local/tmp/r/profiling_runner --help"
                       " && ls /data/local/tmp/r/profiling_runner")
    first, second = ran.stdout.splitlines()
    assert first == f"prefixed: {device}/data/local/tmp/r/profiling_runner --help"
    assert second == f"{device}/data/local/tmp/r/profiling_runner"  # an argument, not a command: no prefix
    assert "Features : fp asimd sme" in adb("shell", "cat /proc/cpuinfo").stdout
    logged = adb("shell", "echo 'Note (XNNPACK): Using ukernel x' >&2")
    assert logged.stderr == ""
    assert adb("logcat", "-d", "-s", "XNNPACK").stdout.rstrip().endswith("I XNNPACK : Using ukernel x")
    assert adb("pull", "/data/local/tmp/none", str(tmp_path)).returncode == 1
