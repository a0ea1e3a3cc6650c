"""The emulated Armv9 device: the arm64 ExecuTorch runtime under qemu-aarch64, with SME on and off.

QEMU 11's `-cpu max` emulates SME and SME2; `-cpu max,sme=off` has neither. The same cross-built
runner (`build_runners.py --platform linux-aarch64`) and the same .pte take XNNPACK's KleidiAI
packed path only when the CPU has SME, which shows in the ETDump operator names: `PF32` instead
of `F32`. The Android pipeline then runs end to end on two emulated devices, `sme` and `nosme`:
the stand-in adb (test-cases/adb_standin/adb) runs device executables under qemu-aarch64 and
serves QEMU's emulated /proc/cpuinfo.

scripts/setup_emulator.sh fetches QEMU 11 into build/emulator/ (the README's test command runs it).
These tests run on Linux x86_64 only; there, with CI set, missing tools are a failure.
"""

from __future__ import annotations

import csv
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import TINY_CNN_CLASS

pytestmark = pytest.mark.emulated

REPO_ROOT = Path(__file__).resolve().parent.parent
BUILD_RUNNERS = REPO_ROOT / "scripts/build_runners.py"
ANDROID_PIPELINE = REPO_ROOT / "scripts/android_pipeline.py"
ANALYZE_RESULTS = REPO_ROOT / "scripts/analyze_results.py"
ADB_STANDIN = REPO_ROOT / "test-cases/adb_standin/adb"
SETUP_EMULATOR = "./scripts/setup_emulator.sh"
QEMU = REPO_ROOT / "build/emulator/bin/qemu-aarch64"  # never the system's: it may be an older QEMU
SYSROOT = Path("/usr/aarch64-linux-gnu")
MIN_QEMU_MAJOR = 11
EM_AARCH64 = 183  # ELF e_machine
# The two emulated devices: name -> QEMU CPU model.
DEVICES = {"sme": "max", "nosme": "max,sme=off"}

# Conv and FC operator types (XNNPACK names without ' #N') the tiny CNN gives per export and device,
# observed with the arm64 executorch 1.5.1 wheel under QEMU 10.0 and 11.1. The datatype tag is the kernel
# path: P-prefixed tags are KleidiAI's packed SME kernels; QP8 is KleidiAI on either CPU.
MATMUL_OPS = {
    ("fp32", "sme"): {"Convolution (NHWC, PF32) IGEMM", "Fully Connected (NC, PF32) GEMM"},
    ("fp32", "nosme"): {"Convolution (NHWC, F32) IGEMM", "Fully Connected (NC, F32) GEMM"},
    ("fp16", "sme"): {"Convolution (NHWC, PF16) IGEMM", "Fully Connected (NC, PF16) GEMM"},
    ("fp16", "nosme"): {"Convolution (NHWC, F16) IGEMM", "Fully Connected (NC, F16) GEMM"},
    ("int8_static", "sme"): {"Convolution (NHWC, PQS8, QS8, QC8W) IGEMM", "Fully Connected (NC, PQS8, QC8W) GEMM"},
    ("int8_static", "nosme"): {"Convolution (NHWC, QC8) IGEMM", "Fully Connected (NC, QS8, QC8W) GEMM"},
    # Dynamic quantization covers linear layers only: the conv stays fp32.
    ("int8_dynamic", "sme"): {"Convolution (NHWC, PF32) IGEMM", "Fully Connected (NC, QP8, F32, QC8W) GEMM"},
    ("int8_dynamic", "nosme"): {"Convolution (NHWC, F32) IGEMM", "Fully Connected (NC, QP8, F32, QC8W) GEMM"},
}
SME_PACKED_TAGS = {"PF32", "PF16", "PQS8"}

# The conftest's tiny CNN in fp16 and in int8 (XNNPACKQuantizer, static and dynamic per-channel).
DTYPE_EXPORT = """
import sys, torch
from pathlib import Path
from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
    XNNPACKQuantizer, get_symmetric_quantization_config)
from executorch.exir import to_edge_transform_and_lower
from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
""" + TINY_CNN_CLASS + """
def lower(model, example, out):
    program = torch.export.export(model, example)
    out.write_bytes(to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()]).to_executorch().buffer)

def quantized(example, **config):
    captured = torch.export.export(TinyCnn().eval(), example).module()
    prepared = prepare_pt2e(captured, XNNPACKQuantizer().set_global(get_symmetric_quantization_config(**config)))
    prepared(*example)
    return convert_pt2e(prepared)

out = Path(sys.argv[1])
torch.manual_seed(0)
x = torch.randn(1, 3, 16, 16)
lower(TinyCnn().eval().half(), (x.half(),), out / "fp16.pte")
lower(quantized((x,), is_per_channel=True), (x,), out / "int8_static.pte")
lower(quantized((x,), is_per_channel=True, is_dynamic=True), (x,), out / "int8_dynamic.pte")
"""


@dataclass(frozen=True)
class Emulator:
    qemu: str
    sysroot: Path

    def command(self, device: str) -> list[str]:
        """The prefix that runs an aarch64 program on one emulated device."""
        return [self.qemu, "-L", str(self.sysroot), "-cpu", DEVICES[device]]


def arm64_package() -> Path | None:
    """The arm64 executorch package setup_emulator.sh unpacked for this Python."""
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    found = sorted((REPO_ROOT / "build/emulator").glob(f"executorch-*-{tag}-aarch64/executorch/share/cmake"))
    return found[-1].parent.parent if found else None


def missing_tooling() -> str | None:
    """What the emulated device lacks on this host, or None."""
    if not QEMU.is_file():
        return f"{QEMU.relative_to(REPO_ROOT)} is missing"
    version = subprocess.run([str(QEMU), "--version"], capture_output=True, text=True).stdout
    major = re.search(r"version (\d+)\.", version)
    if not major or int(major.group(1)) < MIN_QEMU_MAJOR:
        return f"qemu-aarch64 is older than {MIN_QEMU_MAJOR} ({version.splitlines()[0] if version else 'unknown'})"
    if not shutil.which("aarch64-linux-gnu-g++") or not (SYSROOT / "lib/ld-linux-aarch64.so.1").exists():
        return "the aarch64 cross toolchain (g++-aarch64-linux-gnu) is not installed"
    if arm64_package() is None:
        return "the arm64 executorch wheel is not unpacked under build/emulator"
    return None


@pytest.fixture(scope="session")
def emulator() -> Emulator:
    if platform.system() != "Linux" or platform.machine() != "x86_64":
        pytest.skip(f"the emulated Armv9 device runs on Linux x86_64 hosts only (this is "
                    f"{platform.system()} {platform.machine()})")
    missing = missing_tooling()
    if missing:
        message = f"{missing}; run {SETUP_EMULATOR}"
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the emulated device tests: {message}", pytrace=False)
        pytest.skip(message)
    return Emulator(qemu=str(QEMU), sysroot=SYSROOT)


@pytest.fixture(scope="session")
def arm64_runner(emulator: Emulator, venv_python: str) -> Path:
    """runners/prebuilt-linux-aarch64/profiling_runner, cross-built (or found up to date)."""
    result = subprocess.run([venv_python, str(BUILD_RUNNERS), "--platform", "linux-aarch64"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    return REPO_ROOT / "runners/prebuilt-linux-aarch64/profiling_runner"


@pytest.fixture(scope="session")
def standalone_arm64_runner(emulator: Emulator, venv_python: str, tmp_path_factory) -> Path:
    """The arm64 runner folder built against a package that is removed afterwards, so the build
    machine's paths baked into the binary lead nowhere: the folder must run on its own, as on a board."""
    work = tmp_path_factory.mktemp("standalone")
    package = work / "executorch"
    package.mkdir()
    for entry in arm64_package().iterdir():
        (package / entry.name).symlink_to(entry)
    result = subprocess.run([venv_python, str(BUILD_RUNNERS), "--platform", "linux-aarch64", "--executorch-package",
                             str(package), "--runners-dir", str(work / "runners"), "--build-dir", str(work / "build")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    shutil.rmtree(package)
    return work / "runners/prebuilt-linux-aarch64/profiling_runner"


@pytest.fixture(scope="session")
def guest_cat(emulator: Emulator, tmp_path_factory) -> Path:
    """A static aarch64 `cat`, to read files as the emulated device sees them."""
    binary = tmp_path_factory.mktemp("guest") / "cat"
    subprocess.run(["aarch64-linux-gnu-gcc", "-O2", "-static", "-o", str(binary),
                    str(REPO_ROOT / "test-cases/emulator/guest_cat.c")], check=True)
    return binary


@pytest.fixture(scope="session")
def models(toy_pte: Path, tmp_path_factory, venv_python: str) -> dict[str, Path]:
    """The tiny CNN lowered to XNNPACK in each datatype."""
    out = tmp_path_factory.mktemp("dtype_models")
    subprocess.run([venv_python, "-c", DTYPE_EXPORT, str(out)], check=True, capture_output=True)
    return {"fp32": toy_pte, **{dtype: out / f"{dtype}.pte" for dtype in ("fp16", "int8_static", "int8_dynamic")}}


def adb_device_props(device: str) -> str:
    """getprop of an emulated device: an arm64 CPU under QEMU user mode (no Android build to report)."""
    props = {"ro.product.model": f"QEMU user mode -cpu {DEVICES[device]}", "ro.product.manufacturer": "QEMU",
             "ro.hardware": "qemu-user", "ro.product.cpu.abi": "arm64-v8a", "ro.boot.qemu": "1"}
    return "".join(f"[{key}]: [{value}]\n" for key, value in props.items())


@pytest.fixture(scope="session")
def adb_devices(emulator: Emulator, guest_cat: Path, tmp_path_factory) -> Path:
    """ADB_STANDIN_ROOT with the emulated devices: device executables run under qemu-aarch64 with the
    device's CPU model, and /proc/cpuinfo is what that emulated CPU reports."""
    root = tmp_path_factory.mktemp("adb_devices")
    for device in DEVICES:
        standin = root / device / ".standin"
        standin.mkdir(parents=True)
        (standin / "getprop.txt").write_text(adb_device_props(device))
        (standin / "exec_prefix").write_text(shlex.join(emulator.command(device)))
        (standin / "cpuinfo_command").write_text(shlex.join(emulator.command(device) + [str(guest_cat), "/proc/cpuinfo"]))
    return root


@pytest.fixture(scope="session")
def android_runs(adb_devices, standalone_arm64_runner, toy_pte, toy_portable_pte, venv_python,
                 tmp_path_factory) -> dict[str, tuple[Path, subprocess.CompletedProcess]]:
    """One Android pipeline run per emulated device: portable -> XNNPACK, same arm64 runner."""
    work = tmp_path_factory.mktemp("android_runs")
    runner_dir = str(standalone_arm64_runner.parent)
    few = {"runner": runner_dir, "mode": ["timing", "trace"], "runs": 2, "warmup": 1, "rounds": 1}
    config = {"schema_version": 1, "platform": "android", "output_root": str(work / "unused"),
              "experiments": [{"name": "portable", "model": str(toy_portable_pte), **few},
                              {"name": "xnnpack", "model": str(toy_pte), **few}],
              "compare": [{"baseline": "portable", "candidate": "xnnpack"}]}
    (work / "config.json").write_text(json.dumps(config))
    runs = {}
    for device in DEVICES:
        result = subprocess.run([venv_python, str(ANDROID_PIPELINE), "--config", str(work / "config.json"),
                                 "--serial", device, "--adb", str(ADB_STANDIN), "--output-root", str(work / device)],
                                capture_output=True, text=True, env={**os.environ, "ADB_STANDIN_ROOT": str(adb_devices)})
        runs[device] = (work / device, result)
    return runs


def pipeline_run(android_runs: dict, device: str) -> Path:
    run_dir, result = android_runs[device]
    assert result.returncode == 0, result.stdout + result.stderr
    return run_dir


def run_on_device(emulator: Emulator, runner: Path, device: str, model: Path, out: Path) -> dict:
    """One timing + trace invocation of the runner on an emulated device; returns its timing JSON."""
    out.mkdir(parents=True, exist_ok=True)
    command = emulator.command(device) + [str(runner), "--model_path", str(model), "--num_executions", "2",
                                          "--warmup", "1", "--timing_json", str(out / "timing.json"),
                                          "--etdump_path", str(out / "trace.etdump")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads((out / "timing.json").read_text())


def event_names(etdump: Path) -> set[str]:
    import warnings

    from executorch.devtools import Inspector

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Output Buffer not found")  # no debug buffer: op timing only
        inspector = Inspector(etdump_path=str(etdump))
    return {event.name for block in inspector.event_blocks for event in block.events}


def matmul_op_types(names: set[str]) -> set[str]:
    return {re.sub(r" #\d+$", "", name) for name in names if name.startswith(("Convolution", "Fully Connected"))}


def datatype_tags(op_type: str) -> set[str]:
    match = re.search(r"\(([^)]*)\)", op_type)
    return {tag.strip() for tag in match.group(1).split(",")} if match else set()


def test_cross_built_runner_is_a_self_contained_arm64_folder(arm64_runner: Path):
    facts = json.loads((arm64_runner.parent / "runner.json").read_text())
    assert facts["name"] == "prebuilt-linux-aarch64" and facts["flavor"] == "prebuilt"
    assert facts["platform"] == "linux-aarch64" and facts["target_arch"] == "aarch64"
    assert facts["executorch_version"] == "1.5.1" and len(facts["executorch_commit"]) == 40
    assert facts["compiler"]["id"] == "GNU"
    assert "CMAKE_TOOLCHAIN_FILE" in facts["cmake_flags"]
    # Scanned from the arm64 wheel's XNNPACK, which carries KleidiAI SME and SME2 kernels.
    assert facts["sme2_kernels"] is True and facts["sme_kernels"] is True
    header = arm64_runner.read_bytes()[:20]
    assert header[:4] == b"\x7fELF" and int.from_bytes(header[18:20], "little") == EM_AARCH64
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]",
                        subprocess.run(["readelf", "-d", str(arm64_runner)], capture_output=True, text=True).stdout)
    executorch_libs = [name for name in needed if name.startswith("libexecutorch")]
    assert "libexecutorch_backend_xnnpack.so" in executorch_libs
    for name in executorch_libs:
        assert (arm64_runner.parent / name).exists(), f"{name} is not beside the runner"


@pytest.mark.parametrize("device, sme_listed", [("sme", True), ("nosme", False)])
def test_emulated_cpuinfo_lists_sme_only_on_the_sme_device(emulator, guest_cat, device, sme_listed):
    result = subprocess.run(emulator.command(device) + [str(guest_cat), "/proc/cpuinfo"],
                            capture_output=True, text=True, check=True)
    features = set(re.search(r"^Features\s*:(.*)$", result.stdout, re.M).group(1).split())
    assert "asimd" in features  # the guest's CPU, not the x86 host's
    assert ("sme" in features) is sme_listed
    assert ("sme2" in features) is sme_listed  # QEMU 11 emulates SME2 too


@pytest.mark.parametrize("device", list(DEVICES))
def test_runner_times_and_traces_under_emulation(emulator, arm64_runner, toy_pte, device, tmp_path):
    timing = run_on_device(emulator, arm64_runner, device, toy_pte, tmp_path)
    assert timing["num_executions"] == 2 and timing["warmup"] == 1
    assert len(timing["latencies_ms"]) == 2 and all(ms > 0 for ms in timing["latencies_ms"])
    assert "Method::execute" in event_names(tmp_path / "trace.etdump")


@pytest.mark.parametrize("dtype, device", sorted(MATMUL_OPS))
def test_datatype_tag_shows_the_kernel_path(emulator, arm64_runner, models, dtype, device, tmp_path):
    run_on_device(emulator, arm64_runner, device, models[dtype], tmp_path)
    ops = matmul_op_types(event_names(tmp_path / "trace.etdump"))
    assert ops == MATMUL_OPS[(dtype, device)]
    packed = {op for op in ops if datatype_tags(op) & SME_PACKED_TAGS}
    # Same binary, same model: only the CPU's SME decides whether XNNPACK takes the packed path.
    assert bool(packed) is (device == "sme")


def test_cross_build_without_the_arm64_package_fails_with_the_fix(venv_python, tmp_path):
    result = subprocess.run([venv_python, str(BUILD_RUNNERS), "--platform", "linux-aarch64", "--executorch-package",
                             str(tmp_path / "nowhere"), "--runners-dir", str(tmp_path / "runners")],
                            capture_output=True, text=True)
    assert result.returncode == 1
    errors = [line for line in result.stdout.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "setup_emulator.sh" in errors[0] and "Traceback" not in result.stdout + result.stderr
    assert not (tmp_path / "runners").exists()


def test_cross_build_refuses_an_arm64_package_of_another_version(venv_python, tmp_path):
    package = tmp_path / "executorch"
    (package / "share/cmake").mkdir(parents=True)
    (package / "share/cmake/executorch-config.cmake").write_text("")
    (package / "version.py").write_text('__version__ = "1.4.0+cpu"\ngit_version = "' + "0" * 40 + '"\n')
    result = subprocess.run([venv_python, str(BUILD_RUNNERS), "--platform", "linux-aarch64", "--executorch-package",
                             str(tmp_path), "--runners-dir", str(tmp_path / "runners")], capture_output=True, text=True)
    assert result.returncode == 1
    assert "error: arm64 executorch 1.4.0" in result.stdout and "does not match the installed 1.5.1" in result.stdout


def test_runner_folder_runs_without_the_build_machines_package(emulator, standalone_arm64_runner, toy_pte, tmp_path):
    run_on_device(emulator, standalone_arm64_runner, "sme", toy_pte, tmp_path / "folder")
    alone = tmp_path / "alone" / standalone_arm64_runner.name
    alone.parent.mkdir()
    shutil.copy2(standalone_arm64_runner, alone)
    # The binary alone does not start: the libraries really come from its folder.
    result = subprocess.run(emulator.command("sme") + [str(alone), "--model_path", str(toy_pte)],
                            capture_output=True, text=True)
    assert result.returncode != 0 and "libexecutorch" in result.stderr


@pytest.mark.parametrize("device", list(DEVICES))
def test_android_pipeline_records_the_emulated_device(android_runs, device):
    run_dir = pipeline_run(android_runs, device)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    facts = manifest["device"]
    assert facts["serial"] == device and facts["abi"] == "arm64-v8a" and facts["emulated"] is True
    assert ("sme" in facts["features"]) is (device == "sme") and "asimd" in facts["features"]
    assert facts["sme"] is (device == "sme") and facts["sme2"] is (device == "sme")
    assert [e["status"] for e in manifest["experiments"]] == ["ok", "ok"]
    assert manifest["runners"] and all(r["platform"] == "linux-aarch64" for r in manifest["runners"].values())
    report = (run_dir / "report.md").read_text()
    assert "emulated: timings not meaningful" in report
    summary = json.loads((run_dir / "analysis_summary.json").read_text())
    assert summary["emulated"] is True and all(c["emulated"] for c in summary["comparisons"])


@pytest.mark.parametrize("device", list(DEVICES))
def test_android_pipeline_labels_the_kernel_path_per_device(android_runs, device):
    run_dir = pipeline_run(android_runs, device)
    with (run_dir / "xnnpack_t1/op_stats.csv").open() as stats:
        rows = {row["op_type"]: row for row in csv.DictReader(stats)}
    assert {op for op in rows if op.startswith(("Convolution", "Fully Connected"))} == MATMUL_OPS[("fp32", device)]
    for op in MATMUL_OPS[("fp32", device)]:
        assert rows[op]["kernel_path"] == ("kleidiai_sme" if device == "sme" else "xnnpack")
        assert rows[op]["sme_path"] == str(device == "sme")
    with (run_dir / "xnnpack_t1/categories.csv").open() as categories:
        conv = next(row for row in csv.DictReader(categories) if row["category"] == "CONV")
    assert (float(conv["sme_path_ms"]) > 0) is (device == "sme")


def test_on_run_without_packed_path_on_an_sme_cpu_is_a_red_warning(android_runs, venv_python, tmp_path):
    """What a runner that does not take the packed path looks like: the device's CPU has SME, yet the
    experiment labelled on ran no PF32 op. Made from the nosme run's traces and the sme device's facts."""
    run_dir = tmp_path / "run"
    shutil.copytree(pipeline_run(android_runs, "nosme"), run_dir)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    manifest["device"] = json.loads((pipeline_run(android_runs, "sme") / "manifest.json").read_text())["device"]
    assert manifest["device"]["sme"] is True
    assert next(e for e in manifest["experiments"] if e["name"] == "xnnpack")["sme2_label"] == "on"
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    result = subprocess.run([venv_python, str(ANALYZE_RESULTS), "--run-dir", str(run_dir)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    warnings = json.loads((run_dir / "analysis_summary.json").read_text())["warnings"]
    assert any("xnnpack_t1" in warning and "packed path" in warning for warning in warnings), warnings
