"""SME2 ON and OFF from one runner binary: the feature-mask library built beside every runner.

The mask hides SME/SME2 from the runner process (runner/hide_cpu_features_*.c), the runner
reports what it saw (`cpu_features_seen`), and the pipeline fails a run whose mask did not take
effect. On Linux x86_64 the arm64 runner runs under qemu-aarch64 `-cpu max` (SME; QEMU 11 also
SME2): hiding SME there must turn XNNPACK's packed KleidiAI operators (PF32) into the plain ones
(F32), as on a CPU without SME. The macOS library cannot run here: its name matching is compiled
and checked as host C code.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BUILD_RUNNERS = REPO / "scripts/build_runners.py"
MAC_PIPELINE = REPO / "scripts/mac_pipeline.py"
ANDROID_PIPELINE = REPO / "scripts/android_pipeline.py"
GENERATE_CONFIG = REPO / "scripts/generate_config.py"
ADB_STANDIN = REPO / "test-cases/adb_standin/adb"
SYSROOT = Path("/usr/aarch64-linux-gnu")
CONTROL = "SME_KIT_HIDE_CPU_FEATURES"
FEW = {"mode": ["timing", "trace"], "runs": 2, "warmup": 1, "rounds": 1}


def run(*command, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in command], capture_output=True, text=True, **kwargs)


def write_config(path: Path, experiments: list[dict], compare: list[dict] | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"schema_version": 1, "output_root": "unused", "experiments": experiments,
                                "compare": compare or []}))
    return path


def experiments_of(run_dir: Path) -> dict[str, dict]:
    return {e["name"]: e for e in json.loads((run_dir / "manifest.json").read_text())["experiments"]}


def matmul_ops(etdump: Path) -> set[str]:
    from executorch.devtools import Inspector

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Output Buffer not found")
        inspector = Inspector(etdump_path=str(etdump))
    names = {event.name for block in inspector.event_blocks for event in block.events}
    return {re.sub(r" #\d+$", "", n) for n in names if n.startswith(("Convolution", "Fully Connected"))}


# --- the macOS library's name matching, as host C code ----------------------------------------

MATCH_HARNESS = r"""
#include <stdio.h>
int hide_cpu_features_hides(const char* name);
int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) printf("%d", hide_cpu_features_hides(argv[i]));
  printf("\n");
  return 0;
}
"""
SYSCTL_NAMES = ["hw.optional.arm.FEAT_SME", "hw.optional.arm.FEAT_SME2", "hw.optional.arm.FEAT_SME2p1",
                "hw.optional.arm.FEAT_SME_F64F64", "hw.optional.arm.SME_F32F32", "hw.optional.arm.sme_max_svl_b",
                "hw.optional.arm.FEAT_SVE", "hw.optional.arm.FEAT_BF16", "hw.optional.arm.FEAT_I8MM",
                "hw.optional.neon", "hw.perflevel0.logicalcpu", "hw.optional.arm.FEAT_SM"]
# Which of SYSCTL_NAMES each control value hides (1) on macOS.
HIDDEN_NAMES = {
    "": "000000000000",
    "sme2": "011000000000",
    "sme:sme2": "111111000000",
    "sme": "111111000000",  # SME2 needs SME: hiding SME hides both
    "sme2:sme": "111111000000",
}


@pytest.fixture(scope="module")
def macos_matcher(tmp_path_factory) -> Path:
    compiler = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if not compiler:
        pytest.skip("no host C compiler")
    folder = tmp_path_factory.mktemp("macos_matcher")
    (folder / "harness.c").write_text(MATCH_HARNESS)
    binary = folder / "matcher"
    result = run(compiler, "-std=c11", "-Wall", "-Werror", "-DHIDE_CPU_FEATURES_MATCH_ONLY", "-o", binary,
                 folder / "harness.c", REPO / "runner/hide_cpu_features_macos.c")
    assert result.returncode == 0, result.stderr
    return binary


@pytest.mark.parametrize("control", sorted(HIDDEN_NAMES))
def test_macos_mask_hides_exactly_the_sme_sysctl_names(macos_matcher, control):
    result = run(macos_matcher, *SYSCTL_NAMES, env={**os.environ, CONTROL: control})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == HIDDEN_NAMES[control]


def test_macos_mask_unset_variable_hides_nothing(macos_matcher):
    env = {k: v for k, v in os.environ.items() if k != CONTROL}
    assert run(macos_matcher, *SYSCTL_NAMES, env=env).stdout.strip() == "0" * len(SYSCTL_NAMES)


@pytest.mark.parametrize("control", ["sme2,sme", "SME2", "sve"])
def test_macos_mask_stops_on_an_unknown_feature(macos_matcher, control):
    result = run(macos_matcher, "hw.optional.arm.FEAT_SME2", env={**os.environ, CONTROL: control})
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("error: ") and "use sme2 or sme:sme2" in result.stderr
    assert len(result.stderr.splitlines()) == 1


# --- the Linux library and the runner on this host ----------------------------------------------


def test_runner_folder_carries_the_mask_and_runner_json_says_how(prebuilt_runner):
    facts = json.loads((prebuilt_runner.parent / "runner.json").read_text())
    mask = facts["feature_mask"]
    assert mask == {"library": "libhide_cpu_features.so", "preload_variable": "LD_PRELOAD", "control_variable": CONTROL}
    symbols = run("nm", "-D", "--defined-only", prebuilt_runner.parent / mask["library"]).stdout
    assert {"getauxval", "__getauxval", "prctl"} <= set(re.findall(r" T (\S+)$", symbols, re.M))


def test_linux_mask_stops_on_an_unknown_feature(prebuilt_runner, tmp_path):
    """A typo in the control variable must not run unmasked under a masked label."""
    probe = tmp_path / "probe.c"
    probe.write_text("#include <sys/auxv.h>\n#include <stdio.h>\n"
                     "int main(void) { printf(\"%lu\\n\", getauxval(AT_HWCAP2)); return 0; }\n")
    run("cc", "-o", tmp_path / "probe", probe, check=True)
    library = str(prebuilt_runner.parent / "libhide_cpu_features.so")
    masked = run(tmp_path / "probe", env={**os.environ, "LD_PRELOAD": library, CONTROL: "sme2"})
    assert masked.returncode == 0 and masked.stdout.strip().isdigit()
    typo = run(tmp_path / "probe", env={**os.environ, "LD_PRELOAD": library, CONTROL: "sme,sme2"})
    assert typo.returncode == 2 and typo.stdout == ""
    assert typo.stderr.strip() == f"error: {CONTROL}='sme,sme2' names an unknown feature 'sme,sme2'; use sme2 or sme:sme2"


def test_pipeline_preloads_the_mask_and_records_what_the_runner_saw(prebuilt_runner, toy_pte, venv_python, tmp_path):
    """On this x86_64 host there is no SME to hide: the run completes, and the manifest shows the
    preload the pipeline set and the features the runner read (none: not arm64)."""
    runner = str(prebuilt_runner.parent)
    config = write_config(tmp_path / "config.json", [
        {"name": "sme2_off", "runner": runner, "model": str(toy_pte), "hide_cpu_features": ["sme", "sme2"], **FEW},
        {"name": "sme2_on", "runner": runner, "model": str(toy_pte), "hide_cpu_features": [], **FEW}],
        [{"baseline": "sme2_off", "candidate": "sme2_on"}])
    result = run(venv_python, MAC_PIPELINE, "--config", config, "--output-root", tmp_path / "run", "--skip-analysis")
    assert result.returncode == 0, result.stdout + result.stderr
    experiments = experiments_of(tmp_path / "run")
    off, on = experiments["sme2_off"], experiments["sme2_on"]
    assert off["feature_mask_env"] == {"LD_PRELOAD": str(prebuilt_runner.parent / "libhide_cpu_features.so"),
                                       CONTROL: "sme:sme2"}
    assert on["feature_mask_env"] == {} and off["hide_cpu_features"] == ["sme", "sme2"]
    for name in ("sme2_off", "sme2_on"):
        seen = experiments[name]["cpu_features_seen"]
        assert seen == {"sme": False, "sme2": False, "sme_vector_length_bytes": None, "read_with": "none (not arm64)"}
        for record in ("timing.json", "trace_timing.json"):
            assert json.loads((tmp_path / "run" / f"{name}_t1" / record).read_text())["cpu_features_seen"] == seen


def test_runner_without_a_mask_library_fails_before_running(prebuilt_runner, toy_pte, venv_python, tmp_path):
    old = tmp_path / "old_runner"
    old.mkdir()
    shutil.copy2(prebuilt_runner, old / prebuilt_runner.name)
    facts = json.loads((prebuilt_runner.parent / "runner.json").read_text())
    facts.pop("feature_mask")
    (old / "runner.json").write_text(json.dumps(facts))
    config = write_config(tmp_path / "config.json", [
        {"name": "masked", "runner": str(old), "model": str(toy_pte), "hide_cpu_features": ["sme2"], **FEW},
        {"name": "plain", "runner": str(old), "model": str(toy_pte), **FEW}])
    result = run(venv_python, MAC_PIPELINE, "--config", config, "--output-root", tmp_path / "run", "--skip-analysis")
    assert result.returncode == 1 and "Traceback" not in result.stdout + result.stderr
    experiments = experiments_of(tmp_path / "run")
    assert experiments["plain"]["status"] == "ok" and experiments["masked"]["status"] == "failed"
    assert "has no feature-mask library" in experiments["masked"]["error"]
    assert "build_runners.py" in experiments["masked"]["error"]
    assert not (tmp_path / "run/masked_t1/timing.json").exists()


def test_config_schema_rejects_hiding_sme_but_not_sme2(prebuilt_runner, toy_pte, venv_python, tmp_path):
    config = write_config(tmp_path / "config.json", [
        {"name": "odd", "runner": str(prebuilt_runner.parent), "model": str(toy_pte), "hide_cpu_features": ["sme"]}])
    result = run(venv_python, MAC_PIPELINE, "--config", config, "--dry-run")
    assert result.returncode == 2 and "hide_cpu_features" in result.stdout


# --- generate_config.py -------------------------------------------------------------------------


def generated(venv_python: str, *flags) -> dict:
    result = run(venv_python, GENERATE_CONFIG, *flags, "--out", "-")
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout)


def test_generate_config_sme2_defaults_to_one_runner_with_the_mask(venv_python):
    config = generated(venv_python, "--platform", "mac", "--compare", "sme2")
    assert [(e["name"], e["runner"], e["hide_cpu_features"]) for e in config["experiments"]] == [
        ("sme2_off", "prebuilt", ["sme", "sme2"]), ("sme2_on", "prebuilt", [])]
    assert config["compare"] == [{"baseline": "sme2_off", "candidate": "sme2_on"}]
    android = generated(venv_python, "--platform", "android", "--compare", "sme2")
    assert {e["runner"] for e in android["experiments"]} == {"sme2_on-android"}


def test_generate_config_sme2_off_build_keeps_the_two_source_builds(venv_python):
    config = generated(venv_python, "--platform", "mac", "--compare", "sme2", "--sme2-off", "build")
    assert [(e["name"], e["runner"]) for e in config["experiments"]] == [("sme2_off", "sme2_off"), ("sme2_on", "sme2_on")]
    assert not any("hide_cpu_features" in e for e in config["experiments"])


def test_generate_config_isa_writes_three_levels_on_one_runner(venv_python):
    config = generated(venv_python, "--platform", "linux", "--compare", "isa", "threads", "--threads", "1", "2")
    assert [(e["name"], e["runner"], e["hide_cpu_features"]) for e in config["experiments"]] == [
        ("neon", "prebuilt", ["sme", "sme2"]), ("sme", "prebuilt", ["sme2"]), ("sme2", "prebuilt", [])]
    assert config["compare"] == [{"baseline": "neon", "candidate": "sme2"}, {"baseline": "sme", "candidate": "sme2"},
                                 {"baseline": "sme2_t1", "candidate": "sme2_t2"}]


@pytest.mark.parametrize("flags, message", [
    (["--compare", "isa", "sme2"], "choose sme2 or isa"),
    (["--compare", "isa", "--sme2-off", "build"], "--sme2-off build applies to --compare sme2 only"),
    (["--compare", "isa", "backends"], "unrelated pairs"),
])
def test_generate_config_refuses_mixed_isa_flags(venv_python, tmp_path, flags, message):
    result = run(venv_python, GENERATE_CONFIG, *flags, "--out", tmp_path / "c.json")
    assert result.returncode == 2 and message in result.stdout and not (tmp_path / "c.json").exists()


# --- the arm64 runner under QEMU: the mask really changes the kernels ---------------------------


def arm64_package() -> Path | None:
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    found = sorted((REPO / "build/emulator").glob(f"executorch-*-{tag}-aarch64/executorch/share/cmake"))
    return found[-1].parent.parent if found else None


@pytest.fixture(scope="module")
def qemu() -> str:
    if platform.system() != "Linux" or platform.machine() != "x86_64":
        pytest.skip("the emulated arm64 runner runs on Linux x86_64 hosts only")
    qemu = REPO / "build/emulator/bin/qemu-aarch64"  # QEMU 11 from scripts/setup_emulator.sh, never the system's
    missing = ("build/emulator/bin/qemu-aarch64 is missing" if not qemu.is_file() else
               "the aarch64 cross toolchain is not installed" if not (SYSROOT / "lib/ld-linux-aarch64.so.1").exists()
               else "the arm64 executorch wheel is not unpacked under build/emulator" if arm64_package() is None
               else None)
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the emulated tests: {missing}; run ./scripts/setup_emulator.sh",
                        pytrace=False)
        pytest.skip(f"{missing}; run ./scripts/setup_emulator.sh")
    return str(qemu)


@pytest.fixture(scope="module")
def arm64_runner(qemu, venv_python) -> Path:
    result = run(venv_python, BUILD_RUNNERS, "--platform", "linux-aarch64")
    assert result.returncode == 0, result.stdout + result.stderr
    return REPO / "runners/prebuilt-linux-aarch64/profiling_runner"


def run_emulated(qemu: str, runner: Path, model: Path, out: Path, control: str | None, cpu: str = "max") -> dict:
    """One traced run on `-cpu <cpu>`, the mask preloaded when control is given; returns the timing JSON.
    qemu-aarch64 is static, so LD_PRELOAD in its environment reaches only the guest."""
    out.mkdir(parents=True)
    env = dict(os.environ)
    if control is not None:
        env.update({"LD_PRELOAD": str(runner.parent / "libhide_cpu_features.so"), CONTROL: control})
    result = run(qemu, "-L", SYSROOT, "-cpu", cpu, runner, "--model_path", model, "--timing_json", out / "timing.json",
                 "--etdump_path", out / "trace.etdump", env=env, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads((out / "timing.json").read_text())


@pytest.mark.emulated
def test_hiding_sme_gives_the_kernels_of_a_cpu_without_sme(qemu, arm64_runner, toy_pte, tmp_path):
    plain = run_emulated(qemu, arm64_runner, toy_pte, tmp_path / "plain", None)["cpu_features_seen"]
    assert plain["sme"] is True and plain["sme2"] is True and plain["read_with"] == "getauxval+prctl"
    assert plain["sme_vector_length_bytes"] and plain["sme_vector_length_bytes"] % 16 == 0
    sme1 = run_emulated(qemu, arm64_runner, toy_pte, tmp_path / "sme", "sme2")["cpu_features_seen"]
    assert sme1["sme"] is True and sme1["sme2"] is False
    assert sme1["sme_vector_length_bytes"] == plain["sme_vector_length_bytes"]
    neon = run_emulated(qemu, arm64_runner, toy_pte, tmp_path / "neon", "sme:sme2")["cpu_features_seen"]
    assert neon == {"sme": False, "sme2": False, "sme_vector_length_bytes": None, "read_with": "getauxval+prctl"}
    no_sme_cpu = run_emulated(qemu, arm64_runner, toy_pte, tmp_path / "no_sme_cpu", None, cpu="max,sme=off")
    assert no_sme_cpu["cpu_features_seen"] == neon

    packed = {"Convolution (NHWC, PF32) IGEMM", "Fully Connected (NC, PF32) GEMM"}
    plain_ops = {"Convolution (NHWC, F32) IGEMM", "Fully Connected (NC, F32) GEMM"}
    assert matmul_ops(tmp_path / "plain/trace.etdump") == packed
    assert matmul_ops(tmp_path / "sme/trace.etdump") == packed  # SME1 kernels: same names, other instructions
    assert matmul_ops(tmp_path / "neon/trace.etdump") == plain_ops
    assert matmul_ops(tmp_path / "no_sme_cpu/trace.etdump") == plain_ops


@pytest.fixture(scope="module")
def adb_root(qemu, tmp_path_factory) -> Path:
    """Two emulated phones (-cpu max, SME): `phone` passes the environment to the runner, `stripped`
    loses LD_PRELOAD on the way, as a wrapper that clears it would."""
    root = tmp_path_factory.mktemp("adb_mask")
    guest_cat = root / "cat"
    run("aarch64-linux-gnu-gcc", "-O2", "-static", "-o", guest_cat, REPO / "test-cases/emulator/guest_cat.c", check=True)
    emulate = [qemu, "-L", str(SYSROOT), "-cpu", "max"]
    props = {"ro.product.model": "QEMU user mode -cpu max", "ro.product.manufacturer": "QEMU",
             "ro.hardware": "qemu-user", "ro.product.cpu.abi": "arm64-v8a", "ro.boot.qemu": "1"}
    for serial, prefix in (("phone", emulate), ("stripped", ["env", "-u", "LD_PRELOAD"] + emulate)):
        standin = root / serial / ".standin"
        standin.mkdir(parents=True)
        (standin / "getprop.txt").write_text("".join(f"[{k}]: [{v}]\n" for k, v in props.items()))
        (standin / "exec_prefix").write_text(shlex.join(prefix))
        (standin / "cpuinfo_command").write_text(shlex.join(emulate + [str(guest_cat), "/proc/cpuinfo"]))
    return root


def android_run(venv_python, adb_root: Path, serial: str, config: Path, out: Path) -> subprocess.CompletedProcess:
    return run(venv_python, ANDROID_PIPELINE, "--config", config, "--serial", serial, "--adb", ADB_STANDIN,
               "--output-root", out, "--skip-analysis", env={**os.environ, "ADB_STANDIN_ROOT": str(adb_root)})


@pytest.mark.emulated
def test_android_pipeline_pushes_and_preloads_the_mask(venv_python, adb_root, arm64_runner, toy_pte, tmp_path):
    runner = str(arm64_runner.parent)
    config = write_config(tmp_path / "config.json", [
        {"name": "sme2_off", "runner": runner, "model": str(toy_pte), "hide_cpu_features": ["sme", "sme2"], **FEW},
        {"name": "sme2_on", "runner": runner, "model": str(toy_pte), "hide_cpu_features": [], **FEW}],
        [{"baseline": "sme2_off", "candidate": "sme2_on"}])
    result = android_run(venv_python, adb_root, "phone", config, tmp_path / "run")
    assert result.returncode == 0, result.stdout + result.stderr
    experiments = experiments_of(tmp_path / "run")
    assert experiments["sme2_off"]["cpu_features_seen"]["sme"] is False
    assert experiments["sme2_on"]["cpu_features_seen"]["sme"] is True
    assert experiments["sme2_off"]["sme2_label"] == "off" and experiments["sme2_on"]["sme2_label"] == "on"
    assert matmul_ops(tmp_path / "run/sme2_off_t1/trace.etdump") == {"Convolution (NHWC, F32) IGEMM",
                                                                     "Fully Connected (NC, F32) GEMM"}
    assert matmul_ops(tmp_path / "run/sme2_on_t1/trace.etdump") == {"Convolution (NHWC, PF32) IGEMM",
                                                                    "Fully Connected (NC, PF32) GEMM"}
    # The preload named the library's device copy, pushed with the runner.
    commands = (adb_root / "phone/.standin/commands.log").read_text()
    assert re.search(r"LD_PRELOAD=/data/local/tmp/\S+/libhide_cpu_features\.so SME_KIT_HIDE_CPU_FEATURES=sme:sme2",
                     commands)


@pytest.mark.emulated
def test_mask_that_does_not_reach_the_runner_fails_with_the_cause(venv_python, adb_root, arm64_runner, toy_pte,
                                                                  tmp_path):
    runner = str(arm64_runner.parent)
    config = write_config(tmp_path / "config.json", [
        {"name": "sme2_off", "runner": runner, "model": str(toy_pte), "hide_cpu_features": ["sme", "sme2"],
         **FEW, "mode": ["timing"]},
        {"name": "sme2_on", "runner": runner, "model": str(toy_pte), **FEW, "mode": ["timing"]}])
    result = android_run(venv_python, adb_root, "stripped", config, tmp_path / "run")
    assert result.returncode == 1 and "Traceback" not in result.stdout + result.stderr
    experiments = experiments_of(tmp_path / "run")
    assert experiments["sme2_on"]["status"] == "ok"
    off = experiments["sme2_off"]
    assert off["status"] == "failed" and off["cpu_features_seen"]["sme"] is True
    assert off["error"].startswith("feature mask did not take effect: the runner still saw SME")
    assert "LD_PRELOAD" in off["error"] and "build_runners.py" in off["error"]
    # The unmasked latencies never became an OFF result.
    assert not (tmp_path / "run/sme2_off_t1/timing.json").exists()


def test_validate_pipeline_treats_a_masked_pair_as_sme2_off_vs_on(prebuilt_runner, toy_pte, venv_python, tmp_path):
    """One runner with SME2 kernels (claimed here: this host's wheel has none) and the mask: the
    hidden side is OFF, and the ON side on this CPU without SME2 is the FAIL it always was."""
    runner = tmp_path / "runner_with_sme2"
    runner.mkdir()
    for file in ("profiling_runner", "libhide_cpu_features.so"):
        shutil.copy2(prebuilt_runner.parent / file, runner / file)
    facts = json.loads((prebuilt_runner.parent / "runner.json").read_text())
    (runner / "runner.json").write_text(json.dumps({**facts, "sme2_kernels": True, "sme_kernels": True}))
    config = write_config(tmp_path / "config.json", [
        {"name": "sme2_off", "runner": str(runner), "model": str(toy_pte), "hide_cpu_features": ["sme", "sme2"], **FEW},
        {"name": "sme2_on", "runner": str(runner), "model": str(toy_pte), "hide_cpu_features": [], **FEW}],
        [{"baseline": "sme2_off", "candidate": "sme2_on"}])
    result = run(venv_python, REPO / "scripts/validate_pipeline.py", "--config", config, "--json")
    checks = {(c["id"], c["subject"]): c for c in json.loads(result.stdout)["checks"]}
    assert checks[("sme2_pair", "sme2_off_t1->sme2_on_t1")]["status"] == "PASS"
    assert "feature mask" in checks[("sme2_pair", "sme2_off_t1->sme2_on_t1")]["detail"]
    assert checks[("sme2_label", "sme2_on_t1")]["status"] == "FAIL"  # this host has no SME2
    assert ("sme2_label", "sme2_off_t1") not in checks
