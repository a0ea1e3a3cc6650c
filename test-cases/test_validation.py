"""validate_pipeline.py and validate_results.py on real configs, models, runners and run directories.

One session-scoped pipeline run (mac_pipeline.py with the prebuilt runner on the tiny XNNPACK and
portable exports) gives the run directory; each results test works on its own copy, breaks one
thing for real (deletes a trace or a CSV, writes a negative latency) and checks the FAIL line.
The pipeline tests break configs for real: a corrupt and a truncated .pte, a missing runner, and
an SME2 ON/OFF runner pair (copies of the prebuilt binary) whose runner.json differ in more than
the SME switches.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"
VALIDATE_PIPELINE = SCRIPTS / "validate_pipeline.py"
VALIDATE_RESULTS = SCRIPTS / "validate_results.py"
CHECK_KEYS = {"id", "subject", "title", "status", "detail", "fix", "on_fail"}
REPORT_KEYS = {"schema_version", "tool", "target", "created", "verdict", "next_action", "next_action_hint",
               "counts", "checks", "facts"}


def run(*args: Any) -> subprocess.CompletedProcess:
    # A wide console keeps each rich line whole, so a FAIL line can be matched as one line.
    env = {**os.environ, "COLUMNS": "250"}
    return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, env=env)


def run_json(*args: Any) -> tuple[int, dict[str, Any]]:
    result = run(*args, "--json")
    return result.returncode, json.loads(result.stdout)


def shown_python() -> str:
    """sys.executable as the scripts print it: relative to the working directory when inside it."""
    executable = Path(os.path.abspath(sys.executable))
    return str(executable.relative_to(Path.cwd())) if executable.is_relative_to(Path.cwd()) else str(executable)


def checks_of(report: dict[str, Any], check_id: str, status: str | None = None) -> list[dict[str, Any]]:
    return [c for c in report["checks"] if c["id"] == check_id and (status is None or c["status"] == status)]


def fail_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("FAIL ")]


def write_config(path: Path, output_root: Path, experiments: list[dict], compare: list[dict]) -> Path:
    path.write_text(json.dumps({"schema_version": 1, "output_root": str(output_root), "experiments": experiments,
                                "compare": compare}, indent=2))
    return path


def tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def pipeline_config(tmp_path_factory, prebuilt_runner: Path, toy_pte: Path, toy_portable_pte: Path) -> Path:
    """portable vs XNNPACK with the prebuilt runner: 3 interleaved rounds of 10 runs, then a trace each."""
    workdir = tmp_path_factory.mktemp("validation_run")
    experiments = [{"name": "portable", "runner": str(prebuilt_runner.parent), "model": str(toy_portable_pte),
                    "runs": 10, "rounds": 3, "warmup": 2},
                   {"name": "xnnpack", "runner": str(prebuilt_runner.parent), "model": str(toy_pte),
                    "runs": 10, "rounds": 3, "warmup": 2}]
    return write_config(workdir / "config.json", workdir / "run", experiments,
                        [{"baseline": "portable", "candidate": "xnnpack"}])


@pytest.fixture(scope="session")
def pipeline_run(pipeline_config: Path) -> Path:
    result = run(SCRIPTS / "mac_pipeline.py", "--config", pipeline_config)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    run_dir = pipeline_config.parent / "run"
    assert (run_dir / "manifest.json").is_file() and (run_dir / "analysis_summary.json").is_file()
    return run_dir


@pytest.fixture
def run_copy(pipeline_run: Path, tmp_path: Path) -> Path:
    """A private copy of the session run that a test may break."""
    return Path(shutil.copytree(pipeline_run, tmp_path / "run"))


@pytest.fixture(scope="session")
def host_has_sme2(venv_python: str) -> bool:
    report = json.loads(subprocess.run([venv_python, str(SCRIPTS / "validate_setup.py"), "--json"],
                                       capture_output=True, text=True).stdout)
    return bool(report["host"]["sme2"])


def fake_source_runner(runners: Path, name: str, prebuilt_runner: Path, sme2: bool, build_type: str = "Release") -> Path:
    """A runner folder holding the real prebuilt binary and a runner.json written as a source build's."""
    folder = runners / name
    folder.mkdir(parents=True)
    shutil.copy2(prebuilt_runner, folder / "profiling_runner")
    facts = json.loads((prebuilt_runner.parent / "runner.json").read_text())
    switch = "ON" if sme2 else "OFF"
    facts.update(name=name, flavor="source", sme2_kernels=sme2, sme_kernels=sme2, fingerprint=name,
                 cmake_flags={"CMAKE_BUILD_TYPE": build_type, "EXECUTORCH_BUILD_XNNPACK": "ON",
                              "XNNPACK_ENABLE_ARM_SME2": switch, "XNNPACK_ENABLE_ARM_SME": switch})
    (folder / "runner.json").write_text(json.dumps(facts, indent=2))
    return folder


@pytest.fixture(scope="session")
def sme2_pair_config(tmp_path_factory, prebuilt_runner: Path, toy_pte: Path) -> Path:
    """sme2_off -> sme2_on differ only in the SME switches; sme2_off_debug -> sme2_on also in the build type."""
    workdir = tmp_path_factory.mktemp("sme2_pair")
    runners = workdir / "runners"
    fake_source_runner(runners, "sme2_on", prebuilt_runner, sme2=True)
    fake_source_runner(runners, "sme2_off", prebuilt_runner, sme2=False)
    fake_source_runner(runners, "sme2_off_debug", prebuilt_runner, sme2=False, build_type="Debug")
    experiments = [{"name": name, "runner": str(runners / name), "model": str(toy_pte), "runs": 5}
                   for name in ("sme2_off", "sme2_on", "sme2_off_debug")]
    return write_config(workdir / "config.json", workdir / "out", experiments,
                        [{"baseline": "sme2_off", "candidate": "sme2_on"},
                         {"baseline": "sme2_off_debug", "candidate": "sme2_on"}])


# --------------------------------------------------------------------------- validate_results.py


# How noisy the machine was is the one thing a real run cannot promise: these checks may FAIL on a
# loaded machine (and say so); every other check of a real run must pass.
NOISE_CHECKS = {"median_ci"}


def test_results_pass_on_a_real_run(run_copy: Path):
    before = tree_digest(run_copy)
    code, report = run_json(VALIDATE_RESULTS, "--run-dir", run_copy)
    failed = [c for c in report["checks"] if c["status"] == "FAIL"]
    assert all(c["id"] in NOISE_CHECKS for c in failed), failed
    assert code == (1 if failed else 0)
    assert report["next_action"] == ("rerun" if failed else "proceed")
    assert {c["subject"] for c in checks_of(report, "recompute", "PASS")} == {
        "portable_t1/op_stats.csv", "portable_t1/categories.csv", "xnnpack_t1/op_stats.csv",
        "xnnpack_t1/categories.csv", "comparison.csv", "analysis_summary.json"}
    assert not checks_of(report, "latencies", "FAIL") and len(checks_of(report, "latencies", "PASS")) == 2
    assert {c["subject"] for c in checks_of(report, "category_shares", "PASS")} == {"portable_t1", "xnnpack_t1"}
    comparison = checks_of(report, "comparison")[0]
    assert comparison["subject"] == "portable_t1->xnnpack_t1" and comparison["status"] == "PASS"
    # This CPU's SME2 as recorded by the pipeline; without SME2 the report must say so.
    manifest = json.loads((run_copy / "manifest.json").read_text())
    assert report["facts"]["cpu_sme2"] is bool(manifest["host"]["sme2"])
    if not manifest["host"]["sme2"]:
        assert "SME2 not available" in checks_of(report, "analysis", "PASS")[-1]["detail"]

    written = json.loads((run_copy / "validation.json").read_text())
    assert written["checks"] == report["checks"] and written["verdict"] == report["verdict"]
    assert (run_copy / "validation.md").read_text().startswith("# Validation of")
    # A rerun replaces validation.json / validation.md and touches nothing else.
    assert run(VALIDATE_RESULTS, "--run-dir", run_copy).returncode == code
    after = tree_digest(run_copy)
    assert set(after) == set(before) | {"validation.json", "validation.md"}
    assert all(after[name] == digest for name, digest in before.items())


def test_results_json_is_stable(run_copy: Path):
    first = run_json(VALIDATE_RESULTS, "--run-dir", run_copy)[1]
    second = run_json(VALIDATE_RESULTS, "--run-dir", run_copy)[1]
    assert set(first) == set(second) == REPORT_KEYS | {"thresholds", "written"}
    assert [(c["id"], c["subject"]) for c in first["checks"]] == [(c["id"], c["subject"]) for c in second["checks"]]
    assert all(set(check) == CHECK_KEYS for check in first["checks"] + second["checks"])
    assert {c["status"] for c in first["checks"]} <= {"PASS", "WARN", "FAIL", "SKIP"}
    assert first["thresholds"]["ci_width_warn_pct"] == 10.0 and first["thresholds"]["min_runs_for_ci"] >= 2


def test_results_missing_trace(run_copy: Path):
    (run_copy / "xnnpack_t1" / "trace.etdump").unlink()
    result = run(VALIDATE_RESULTS, "--run-dir", run_copy)
    assert result.returncode == 1
    line = next(line for line in fail_lines(result.stdout) if "(xnnpack_t1)" in line and "Experiment files" in line)
    assert "missing trace.etdump" in line and "scripts/mac_pipeline.py --config" in line
    # The fix names the interpreter that runs (pastes outside an activated venv), not a bare `python`.
    assert "fix: measure again: python " not in line and f"measure again: {shown_python()} scripts/" in line
    report = json.loads((run_copy / "validation.json").read_text())
    assert report["verdict"] == "fail" and report["next_action"] == "rerun"


def test_results_deleted_csv(run_copy: Path):
    (run_copy / "portable_t1" / "categories.csv").unlink()
    code, report = run_json(VALIDATE_RESULTS, "--run-dir", run_copy)
    assert code == 1 and report["next_action"] == "rerun"
    failed = checks_of(report, "experiment_files", "FAIL")
    assert [c["subject"] for c in failed] == ["portable_t1"]
    assert "missing categories.csv" in failed[0]["detail"] and "analyze_results.py --run-dir" in failed[0]["fix"]
    assert checks_of(report, "category_shares", "SKIP")[0]["subject"] == "portable_t1"


def test_results_negative_latency(run_copy: Path):
    timing_path = run_copy / "xnnpack_t1" / "timing.json"
    timing = json.loads(timing_path.read_text())
    timing["rounds"][1]["latencies_ms"][3] = -0.5
    timing["latencies_ms"] = [v for r in timing["rounds"] for v in r["latencies_ms"]]
    timing_path.write_text(json.dumps(timing))
    result = run(VALIDATE_RESULTS, "--run-dir", run_copy)
    assert result.returncode == 1
    line = next(line for line in fail_lines(result.stdout) if "(xnnpack_t1)" in line)
    assert line.startswith("FAIL Latencies positive and finite") and "-0.5" in line and "fix:" in line
    report = json.loads((run_copy / "validation.json").read_text())
    ci = next(c for c in checks_of(report, "median_ci") if c["subject"] == "xnnpack_t1")
    assert ci["status"] == "SKIP"  # no CI from broken data


def test_results_failed_experiment_needs_a_recorded_error(run_copy: Path):
    manifest_path = run_copy / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["experiments"][0].update(status="failed", error=None)
    manifest_path.write_text(json.dumps(manifest))
    code, report = run_json(VALIDATE_RESULTS, "--run-dir", run_copy)
    assert code == 1
    assert checks_of(report, "experiment_status", "FAIL")[0]["detail"] == "failed with no recorded error"
    assert checks_of(report, "comparison", "FAIL")  # a comparison with a failed side is no comparison


def test_results_missing_run_dir(tmp_path: Path):
    result = run(VALIDATE_RESULTS, "--run-dir", tmp_path / "nope")
    assert result.returncode == 1
    assert any("no such run directory" in line and "fix:" in line for line in result.stdout.splitlines())
    code, report = run_json(VALIDATE_RESULTS, "--run-dir", tmp_path / "nope")
    assert code == 1 and report["verdict"] == "fail" and report["next_action"] == "troubleshoot"
    assert not (tmp_path / "nope").exists()


# --------------------------------------------------------------------------- validate_pipeline.py


def test_pipeline_passes_and_says_where_it_writes(pipeline_config: Path, pipeline_run: Path):
    code, first = run_json(VALIDATE_PIPELINE, "--config", pipeline_config)
    assert code == 0, [c for c in first["checks"] if c["status"] == "FAIL"]
    assert first["next_action"] == "proceed" and "mac_pipeline.py --config" in first["next_action_hint"]
    models = checks_of(first, "model", "PASS")
    assert len(models) == 2 and all(c["detail"] == "forward: inputs 1x3x16x16 float32" for c in models)
    assert checks_of(first, "runner", "PASS")[0]["subject"] == "prebuilt"
    # output_root holds the session's run: the next run goes to a new sibling, the old one is kept.
    run_dir = Path(first["facts"]["run_dir"])
    assert run_dir != pipeline_run and run_dir.parent == pipeline_run.parent and not run_dir.exists()
    assert str(run_dir) in checks_of(first, "output_root", "PASS")[0]["detail"]

    second = run_json(VALIDATE_PIPELINE, "--config", pipeline_config)[1]
    assert set(first) == set(second) == REPORT_KEYS
    assert [(c["id"], c["subject"], c["status"]) for c in first["checks"]] == \
        [(c["id"], c["subject"], c["status"]) for c in second["checks"]]
    assert all(set(check) == CHECK_KEYS for check in first["checks"])


def test_pipeline_more_threads_than_cores_is_a_warning(tmp_path: Path, prebuilt_runner: Path, toy_pte: Path):
    cores = os.cpu_count() or 1
    experiments = [{"name": "x", "runner": str(prebuilt_runner.parent), "model": str(toy_pte),
                    "threads": [1, cores + 1]},
                   {"name": "pinned", "runner": str(prebuilt_runner.parent), "model": str(toy_pte), "threads": [2],
                    "cpu_affinity": [0]}]
    code, report = run_json(VALIDATE_PIPELINE, "--config", write_config(tmp_path / "config.json", tmp_path / "out",
                                                                         experiments, []))
    assert code == 0 and report["next_action"] == "proceed"
    statuses = {c["subject"]: c["status"] for c in checks_of(report, "threads")}
    assert statuses == {"x_t1": "PASS", f"x_t{cores + 1}": "WARN", "pinned_t2": "WARN"}
    assert "1 pinned core(s)" in next(c for c in checks_of(report, "threads", "WARN") if c["subject"] == "pinned_t2")[
        "detail"]


def test_pipeline_corrupt_models_and_missing_runner(tmp_path: Path, prebuilt_runner: Path, toy_pte: Path):
    garbage = tmp_path / "garbage.pte"
    garbage.write_bytes(os.urandom(4096))
    truncated = tmp_path / "truncated.pte"
    truncated.write_bytes(toy_pte.read_bytes()[: toy_pte.stat().st_size // 2])
    experiments = [{"name": "garbage", "runner": str(prebuilt_runner.parent), "model": str(garbage)},
                   {"name": "truncated", "runner": str(prebuilt_runner.parent), "model": str(truncated)},
                   {"name": "no_runner", "runner": str(tmp_path / "runners" / "sme2_on"), "model": str(toy_pte)}]
    config = write_config(tmp_path / "config.json", tmp_path / "out", experiments, [])
    result = run(VALIDATE_PIPELINE, "--config", config)
    assert result.returncode == 1
    lines = fail_lines(result.stdout)
    garbage_line = next(line for line in lines if str(garbage) in line)
    assert garbage_line.startswith("FAIL Model loads") and "not an ExecuTorch program" in garbage_line
    truncated_line = next(line for line in lines if str(truncated) in line)
    assert "not a loadable .pte" in truncated_line and "File size is too small" in truncated_line
    runner_line = next(line for line in lines if line.startswith("FAIL Runner"))
    assert "runner not found" in runner_line and "build_runners.py" in runner_line and "fix:" in runner_line
    assert not (tmp_path / "out").exists()  # validation writes nothing


def test_pipeline_sme2_pair_must_differ_only_in_sme_switches(sme2_pair_config: Path, host_has_sme2: bool):
    result = run(VALIDATE_PIPELINE, "--config", sme2_pair_config)
    assert result.returncode == 1
    lines = fail_lines(result.stdout)
    pair_line = next(line for line in lines if line.startswith("FAIL SME2 ON/OFF pair"))
    assert "(sme2_off_debug_t1->sme2_on_t1)" in pair_line and "fix:" in pair_line
    assert "cmake_flags.CMAKE_BUILD_TYPE: 'Debug' vs 'Release'" in pair_line
    assert not any("(sme2_off_t1->sme2_on_t1)" in line for line in lines)
    label_lines = [line for line in lines if line.startswith("FAIL SME2 label vs CPU (sme2_on_t1)")]
    if host_has_sme2:
        assert not label_lines
    else:
        assert "SME2 is not available on this CPU" in label_lines[0] and "--allow-mismatch" in label_lines[0]

    code, allowed = run_json(VALIDATE_PIPELINE, "--config", sme2_pair_config, "--allow-mismatch")
    assert code == 0 and allowed["verdict"] == "warn" and allowed["next_action"] == "proceed"
    pairs = {c["subject"]: c for c in checks_of(allowed, "sme2_pair")}
    assert pairs["sme2_off_t1->sme2_on_t1"]["status"] == "PASS"
    assert "XNNPACK_ENABLE_ARM_SME2, XNNPACK_ENABLE_ARM_SME" in pairs["sme2_off_t1->sme2_on_t1"]["detail"]
    assert pairs["sme2_off_debug_t1->sme2_on_t1"]["status"] == "WARN"
    label = checks_of(allowed, "sme2_label")[0]
    assert (label["subject"], label["status"]) == ("sme2_on_t1", "PASS" if host_has_sme2 else "WARN")


def test_pipeline_sme2_kernels_outside_a_pair_is_a_warning(tmp_path: Path, prebuilt_runner: Path, toy_pte: Path,
                                                          host_has_sme2: bool):
    """The macOS wheel's prebuilt runner ships SME2 kernels; on an M1-M3 Mac that claims no SME2 effect."""
    runner = fake_source_runner(tmp_path / "runners", "shipped_sme2", prebuilt_runner, sme2=True)
    config = write_config(tmp_path / "config.json", tmp_path / "out",
                          [{"name": "shipped", "runner": str(runner), "model": str(toy_pte), "runs": 5}], [])
    code, report = run_json(VALIDATE_PIPELINE, "--config", config)
    assert code == 0
    label = checks_of(report, "sme2_label")[0]
    assert label["status"] == ("PASS" if host_has_sme2 else "WARN")
    if not host_has_sme2:
        assert "ships SME2 kernels, but this CPU has no SME2" in label["detail"]


def test_pipeline_invalid_config(tmp_path: Path):
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"output_root": "out", "experiments": [{"name": "a b", "runner": "prebuilt",
                                                                         "model": "m.pte", "runs": 0}],
                                  "compare": [{"baseline": "a b", "candidate": "missing"}]}))
    code, report = run_json(VALIDATE_PIPELINE, "--config", config)
    assert code == 1 and report["next_action"] == "troubleshoot"
    schema = checks_of(report, "config_schema", "FAIL")[0]["detail"]
    assert "experiments/0/name" in schema and "experiments/0/runs" in schema
    assert "'missing' names no experiment" in checks_of(report, "compare_pairs", "FAIL")[0]["detail"]
    assert checks_of(report, "pipeline_plan", "FAIL")
    assert {c["status"] for c in checks_of(report, "model")} == {"SKIP"}


# --------------------------------------------------------------------------- Android, via the stand-in adb

ADB_STANDIN = Path(__file__).resolve().parent / "adb_standin" / "adb"
PHONE_CPUINFO = "".join(f"processor\t: {core}\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics "
                        "fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp sve sve2 i8mm bf16 sme sme2\n"
                        "CPU implementer\t: 0x41\nCPU part\t: 0xd85\n\n" for core in range(8))


@pytest.fixture
def standin_phone(tmp_path: Path, prebuilt_runner: Path) -> tuple[dict[str, str], Path]:
    """An attached 'phone' (a folder the stand-in adb serves: arm64, 8 cores, SME2) and an
    'Android' runner folder holding the host's runner, which the stand-in runs locally."""
    device = tmp_path / "devices" / "phone1"
    (device / ".standin").mkdir(parents=True)
    props = {"ro.product.model": "Test Phone", "ro.product.cpu.abi": "arm64-v8a", "ro.soc.model": "TestSoC",
             "ro.build.version.release": "15"}
    (device / ".standin" / "getprop.txt").write_text("".join(f"[{k}]: [{v}]\n" for k, v in props.items()))
    (device / "proc").mkdir()
    (device / "proc" / "cpuinfo").write_text(PHONE_CPUINFO)
    (device / "sys/devices/system/cpu").mkdir(parents=True)
    (device / "sys/devices/system/cpu/possible").write_text("0-7\n")
    runner = fake_source_runner(tmp_path / "runners", "sme2_on-android", prebuilt_runner, sme2=True)
    facts = json.loads((runner / "runner.json").read_text())
    facts.update(platform="android", target_arch="arm64")
    (runner / "runner.json").write_text(json.dumps(facts))
    env = {**os.environ, "ADB_STANDIN_ROOT": str(tmp_path / "devices"), "COLUMNS": "250"}
    return env, runner


def test_pipeline_android_device_runner_and_cores(tmp_path: Path, standin_phone, toy_pte: Path):
    env, runner = standin_phone
    experiments = [{"name": "sme2_on", "runner": str(runner), "model": str(toy_pte), "cpu_affinity": [6, 7]},
                   {"name": "pinned_far", "runner": str(runner), "model": str(toy_pte), "cpu_affinity": [9]}]
    config = write_config(tmp_path / "config.json", tmp_path / "out", experiments, [])
    result = subprocess.run([sys.executable, VALIDATE_PIPELINE, "--config", config, "--platform", "android",
                             "--adb", ADB_STANDIN, "--json"], capture_output=True, text=True, env=env)
    report = json.loads(result.stdout)
    assert result.returncode == 1
    device = checks_of(report, "android_device")[0]
    assert (device["status"], device["subject"]) == ("PASS", "phone1") and "arm64-v8a" in device["detail"]
    assert "SME2 yes" in checks_of(report, "target_cpu")[0]["detail"]
    assert checks_of(report, "runner")[0]["status"] == "PASS"
    assert "--help works on the device" in checks_of(report, "runner")[0]["detail"]
    assert {c["status"] for c in checks_of(report, "sme2_label")} == {"PASS"}  # the phone has SME2
    cores = checks_of(report, "pinned_cores")[0]
    assert cores["status"] == "FAIL" and "cores [9] do not exist" in cores["detail"]
    assert [c["id"] for c in report["checks"] if c["status"] == "FAIL"] == ["pinned_cores"]
    # The --help probe cleaned up after itself on the device.
    assert not list((tmp_path / "devices/phone1/data/local/tmp").rglob("validate_*"))


def test_pipeline_android_no_such_device(tmp_path: Path, standin_phone):
    env, runner = standin_phone
    config = write_config(tmp_path / "config.json", tmp_path / "out",
                          [{"name": "sme2_on", "runner": str(runner), "model": str(tmp_path / "absent.pte")}], [])
    result = subprocess.run([sys.executable, VALIDATE_PIPELINE, "--config", config, "--platform", "android",
                             "--adb", ADB_STANDIN, "--serial", "phone2"], capture_output=True, text=True, env=env)
    assert result.returncode == 1
    line = next(line for line in fail_lines(result.stdout) if line.startswith("FAIL Android device"))
    assert "phone2 is not attached" in line and "phone1" in line and "fix:" in line


def edit_manifest(run_dir: Path, edit) -> None:
    path = run_dir / "manifest.json"
    manifest = json.loads(path.read_text())
    edit(manifest)
    path.write_text(json.dumps(manifest))


def test_results_emulated_run_must_say_timings_are_not_meaningful(run_copy: Path):
    edit_manifest(run_copy, lambda m: m["host"].update(emulated=True))
    code, report = run_json(VALIDATE_RESULTS, "--run-dir", run_copy)
    assert code == 1  # the report was written for a native run and never says so
    report_check = next(c for c in checks_of(report, "analysis", "FAIL") if c["subject"] == "report.md")
    assert "timings not meaningful" in report_check["detail"] and "analyze_results.py" in report_check["fix"]
    assert {c["status"] for c in checks_of(report, "median_ci") + checks_of(report, "trace_vs_timing")} == {"SKIP"}
    assert checks_of(report, "comparison")[0]["status"] == "WARN"


def test_results_sme2_labels_that_lie(run_copy: Path):
    """An SME2 ON/OFF pair on an SME2 CPU whose ON side ran nothing on the SME path, and whose
    label disagrees with its runner.json: both are FAILs that send the learner to troubleshoot."""
    def claim_sme2(manifest: dict) -> None:
        manifest["host"]["sme2"] = True
        manifest["experiments"][0].update(sme2_label="off", sme2_effective=False)
        manifest["experiments"][1].update(sme2_label="on", sme2_effective=True)
    edit_manifest(run_copy, claim_sme2)
    code, report = run_json(VALIDATE_RESULTS, "--run-dir", run_copy)
    assert code == 1 and report["next_action"] == "troubleshoot"
    label = next(c for c in checks_of(report, "sme2_labels", "FAIL") if c["subject"] == "xnnpack_t1")
    assert "has sme2_kernels False" in label["detail"]
    comparison = checks_of(report, "comparison", "FAIL")[0]
    assert "spent 0 ms on the KleidiAI SME path" in comparison["detail"]


def test_results_outliers_do_not_move_the_median_ci(run_copy: Path):
    """A 20x outlier in most rounds: CV explodes, the median's CI between processes barely moves."""
    def width(report: dict) -> float:
        ci = next(c for c in checks_of(report, "median_ci") if c["subject"] == "portable_t1")
        return float(ci["detail"].split(" ms = ")[1].split(" %")[0])
    _, before = run_json(VALIDATE_RESULTS, "--run-dir", run_copy)
    ci_high = json.loads((run_copy / "e2e_stats.json").read_text())["experiments"]["portable_t1"]["ci95_high_ms"]
    timing_path = run_copy / "portable_t1" / "timing.json"
    timing = json.loads(timing_path.read_text())
    outliers = 0
    for round_ in timing["rounds"]:  # a machine busy with something else makes a slow run far slower
        slowest = max(range(len(round_["latencies_ms"])), key=lambda i: round_["latencies_ms"][i])
        # Only a run already above the median's CI: it was above the median of (nearly) every
        # bootstrap resample and stays there, so the CI below may move only by its 2.5 % tail. A
        # fast round's slowest run could cross the median, which is a different run, not an outlier.
        if round_["latencies_ms"][slowest] > ci_high:
            round_["latencies_ms"][slowest] *= 20
            outliers += 1
    assert outliers >= 2, (ci_high, [r["latencies_ms"] for r in timing["rounds"]])
    timing["latencies_ms"] = [v for r in timing["rounds"] for v in r["latencies_ms"]]
    timing_path.write_text(json.dumps(timing))
    _, after = run_json(VALIDATE_RESULTS, "--run-dir", run_copy)
    detail = next(c for c in checks_of(after, "median_ci") if c["subject"] == "portable_t1")["detail"]
    cv = float(detail.split("CV ")[1].split(" %")[0])
    assert cv > 100, detail
    # Only runs above the CI changed, so the median and its CI stay where they were.
    assert width(after) <= width(before) * 1.5 + 1.0, (width(before), width(after))


def double_first_value(path: Path, column: str) -> tuple[dict[str, str], str]:
    """Edit a derived CSV by hand: double the first non-empty, non-zero value of `column`.
    Returns the edited row and the value it had."""
    rows = list(csv.DictReader(path.open()))
    edited = next(r for r in rows if r[column] not in ("", "0"))
    original = edited[column]
    edited[column] = str(float(original) * 2)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return edited, original


@pytest.mark.parametrize("doctored", ["analysis_summary.json", "xnnpack_t1/op_stats.csv", "comparison.csv",
                                      "portable_t1/categories.csv"])
def test_results_doctored_derived_file_fails(run_copy: Path, doctored: str):
    """A derived file edited by hand (or stale) disagrees with its recomputation from the raw files."""
    path = run_copy / doctored
    if doctored == "analysis_summary.json":
        summary = json.loads(path.read_text())
        summary["comparisons"][0]["speedup"] = 0.5
        path.write_text(json.dumps(summary))
    else:
        double_first_value(path, {"op_stats.csv": "share_of_e2e_pct", "comparison.csv": "speedup",
                                  "categories.csv": "ms_per_inference"}[path.name])
    code, report = run_json(VALIDATE_RESULTS, "--run-dir", run_copy)
    assert code == 1 and report["verdict"] == "fail"
    (failed,) = checks_of(report, "recompute", "FAIL")
    assert failed["subject"] == doctored and "disagrees with the raw data" in failed["detail"]
    assert "analyze_results.py --run-dir" in failed["fix"]


# --------------------------------------------------------------------------- recompute_results.py

RECOMPUTE_RESULTS = SCRIPTS / "recompute_results.py"
DERIVED_FILES = {"portable_t1/op_stats.csv", "portable_t1/categories.csv", "xnnpack_t1/op_stats.csv",
                 "xnnpack_t1/categories.csv", "comparison.csv", "analysis_summary.json"}


def test_recompute_results_matches_a_fresh_run(pipeline_run: Path, tmp_path: Path):
    """Every derived file of a fresh run is listed, with no problem; the run directory is only read."""
    before = tree_digest(pipeline_run)
    result = run(RECOMPUTE_RESULTS, "--run-dir", pipeline_run, "--out-dir", tmp_path / "work")
    assert result.returncode == 0, result.stdout + result.stderr
    found = json.loads((tmp_path / "work" / "recompute.json").read_text())
    assert found["errors"] == [] and found["tolerance"]["relative"] > 0
    assert {entry["subject"]: entry["problems"] for entry in found["files"]} == {name: [] for name in DERIVED_FILES}
    assert set(json.loads(Path(found["e2e_stats"]).read_text())["experiments"]) == {"portable_t1", "xnnpack_t1"}
    assert all((Path(folder) / "op_stats.csv").is_file() for folder in found["traced"].values())
    assert tree_digest(pipeline_run) == before
    assert not list((tmp_path / "work").glob(".*partial*"))


def test_recompute_results_names_a_doctored_value(run_copy: Path, tmp_path: Path):
    """A share doubled by hand in op_stats.csv is that file's one problem, naming row, column and both values."""
    edited, original = double_first_value(run_copy / "xnnpack_t1" / "op_stats.csv", "share_of_e2e_pct")
    result = run(RECOMPUTE_RESULTS, "--run-dir", run_copy, "--out-dir", tmp_path / "work")
    assert result.returncode == 1 and "differs xnnpack_t1/op_stats.csv" in result.stdout
    problems = {entry["subject"]: entry["problems"] for entry in
                json.loads((tmp_path / "work" / "recompute.json").read_text())["files"]}
    (problem,) = problems.pop("xnnpack_t1/op_stats.csv")
    prefix = f"{edited['op_type']} | {edited['backend']} share_of_e2e_pct: {edited['share_of_e2e_pct']!r}, recomputed "
    assert problem.startswith(prefix), problem
    assert float(problem.removeprefix(prefix).strip("'")) == pytest.approx(float(original), rel=1e-6)
    assert problems == {name: [] for name in DERIVED_FILES - {"xnnpack_t1/op_stats.csv"}}


def write_run(folder: Path, manifest: Any, summary: Any = None) -> Path:
    folder.mkdir()
    (folder / "manifest.json").write_text(manifest if isinstance(manifest, str) else json.dumps(manifest))
    if summary is not None:
        (folder / "analysis_summary.json").write_text(json.dumps(summary))
    return folder


GOOD_MANIFEST = {"experiments": [], "compare": [], "host": {"sme2": False}}


@pytest.mark.parametrize("manifest, summary, needle", [
    ("[]", None, "the manifest is a JSON list, not an object"),
    ('{"experiments": [', None, "manifest is not valid JSON"),
    ({"compare": []}, None, "no 'experiments' list"),
    ({"experiments": "tiny"}, None, "'experiments' has the wrong type (str)"),
    ({"experiments": [1]}, None, "an entry of 'experiments' is not a JSON object"),
    ({"experiments": [], "compare": [["a", "b"]]}, None, "an entry of 'compare' is not a JSON object"),
    ({"experiments": [], "host": "x86"}, None, "'host' has the wrong type (str)"),
    (GOOD_MANIFEST, ["not", "an", "object"], "the analysis summary is a JSON list, not an object"),
    (GOOD_MANIFEST, {"experiments": ["tiny_t1"]}, "'experiments' must be an object and 'comparisons' a list"),
    (GOOD_MANIFEST, {"experiments": {"tiny_t1": {"e2e": 3}}}, "experiment 'tiny_t1' is not an object"),
    (GOOD_MANIFEST, {"experiments": {}, "comparisons": [None]}, "an entry of 'comparisons' is not a JSON object"),
], ids=["manifest_list", "manifest_truncated", "no_experiments", "experiments_string", "experiment_number",
        "compare_list", "host_string", "summary_list", "summary_experiments_list", "summary_e2e_number",
        "summary_comparison_null"])
def test_recompute_results_hostile_json(tmp_path: Path, manifest: Any, summary: Any, needle: str):
    run_dir = write_run(tmp_path / "run", manifest, summary)
    result = run(RECOMPUTE_RESULTS, "--run-dir", run_dir, "--out-dir", tmp_path / "work")
    assert result.returncode == 2 and "Traceback" not in result.stderr and result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: ") and needle in line and "; " in line, line
    assert not (tmp_path / "work" / "recompute.json").exists()


def test_recompute_results_bad_places(tmp_path: Path):
    """A missing run directory, an --out-dir that cannot be created, one inside the run directory."""
    run_dir = write_run(tmp_path / "run", GOOD_MANIFEST)
    (tmp_path / "a_file").write_text("")
    for args, needle in [((tmp_path / "nowhere", tmp_path / "work"), "no such run directory"),
                         ((run_dir, tmp_path / "a_file" / "work"), "cannot write there"),
                         ((run_dir, run_dir / "work"), "is inside the run directory")]:
        result = run(RECOMPUTE_RESULTS, "--run-dir", args[0], "--out-dir", args[1])
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
        (line,) = result.stderr.splitlines()
        assert line.startswith("error: ") and needle in line, line
    assert sorted(p.name for p in run_dir.iterdir()) == ["manifest.json"]
