"""The profiling runner (built from the wheel) and the SME2 ON/OFF source-build plans."""

from __future__ import annotations

import json
import shutil
import stat
import struct
import subprocess
from pathlib import Path

import pytest

BUILD_RUNNERS = Path(__file__).resolve().parent.parent / "scripts/build_runners.py"


def run(cmd: list, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kwargs)


def error_lines(result: subprocess.CompletedProcess) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


# --- prebuilt flavor -------------------------------------------------------------


def test_prebuilt_builds_from_scratch(tmp_path, venv_python):
    result = run([venv_python, BUILD_RUNNERS, "--runners-dir", tmp_path / "runners",
                  "--build-dir", tmp_path / "build", "--json"])
    assert result.returncode == 0, result.stderr
    facts = json.loads(result.stdout)[0]
    runner_json = json.loads((tmp_path / "runners/prebuilt/runner.json").read_text())
    assert runner_json == facts
    assert facts["flavor"] == "prebuilt" and facts["executorch_version"] == "1.5.1"
    assert len(facts["executorch_commit"]) == 40
    assert facts["compiler"]["id"] != "unknown"
    assert (tmp_path / "runners/prebuilt/profiling_runner").stat().st_mode & stat.S_IXUSR

    again = run([venv_python, BUILD_RUNNERS, "--runners-dir", tmp_path / "runners",
                 "--build-dir", tmp_path / "build"])
    assert again.returncode == 0 and "up to date" in again.stdout


def test_prebuilt_sme_flags_follow_the_wheel(prebuilt_runner):
    facts = json.loads((prebuilt_runner.parent / "runner.json").read_text())
    # The x86_64 wheel's XNNPACK carries no Arm kernels; an arm64 Mac wheel carries SME2 ones.
    expected = facts["target_arch"] in ("arm64", "aarch64") and facts["platform"] == "mac"
    assert facts["sme2_kernels"] is expected


def test_timing_json(prebuilt_runner, toy_pte, tmp_path):
    timing = tmp_path / "timing.json"
    result = run([prebuilt_runner, "--model_path", toy_pte, "--num_executions", 7, "--warmup", 2,
                  "--cpu_threads", 1, "--timing_json", timing])
    assert result.returncode == 0, result.stderr
    data = json.loads(timing.read_text())
    assert data["num_executions"] == 7 and len(data["latencies_ms"]) == 7
    assert all(ms > 0 for ms in data["latencies_ms"])
    assert data["cpu_threads"] == 1 and data["warmup"] == 2 and data["etdump"] is False
    assert data["load_ms"]["method"] > 0
    assert min(data["latencies_ms"]) == data["summary"]["min_ms"]
    assert "median" in result.stdout and "7 runs" in result.stdout


def test_etdump_has_one_execute_per_run(prebuilt_runner, toy_pte, tmp_path):
    from executorch.devtools import Inspector

    etdump = tmp_path / "trace.etdump"
    result = run([prebuilt_runner, "--model_path", toy_pte, "--num_executions", 5, "--warmup", 3,
                  "--etdump_path", etdump])
    assert result.returncode == 0, result.stderr
    inspector = Inspector(etdump_path=str(etdump))
    events = {event.name: event for block in inspector.event_blocks for event in block.events}
    assert len(events["Method::execute"].perf_data.raw) == 5  # warm-up runs are not in the trace
    assert any("Convolution" in name for name in events), sorted(events)


def test_inputs_from_files(prebuilt_runner, toy_pte, tmp_path):
    data = tmp_path / "x.bin"
    data.write_bytes(struct.pack("<768f", *([0.5] * 768)))  # 1x3x16x16 float32
    ok = run([prebuilt_runner, "--model_path", toy_pte, "--inputs", data])
    assert ok.returncode == 0, ok.stderr
    data.write_bytes(b"\0" * 12)
    short = run([prebuilt_runner, "--model_path", toy_pte, "--inputs", data])
    assert short.returncode == 1 and "has 12 bytes, the method expects 3072" in short.stderr


EMBEDDING_EXPORT = """
import sys, torch
from executorch.exir import to_edge_transform_and_lower
model = torch.nn.Embedding(10, 4).eval()
program = torch.export.export(model, (torch.tensor([1, 2, 3]),))
open(sys.argv[1], "wb").write(to_edge_transform_and_lower(program).to_executorch().buffer)
"""


@pytest.mark.parametrize("case", ["missing", "not_pte", "bad_method", "bad_flag", "missing_backend", "execute"])
def test_bad_input_gives_one_clear_error(case, prebuilt_runner, toy_pte, tmp_path, venv_python):
    model = toy_pte
    extra: list = []
    if case == "missing":
        model, expected = tmp_path / "nope.pte", "model file not found"
    elif case == "not_pte":
        model = tmp_path / "notes.pte"
        model.write_text("this is not a flatbuffer at all")
        expected = "is not an ExecuTorch program"
    elif case == "bad_method":
        extra, expected = ["--method_name", "backward"], "method 'backward' not found"
    elif case == "bad_flag":
        extra, expected = ["--num_executons", "3"], "unknown option --num_executons"
    elif case == "missing_backend":
        # Rename the delegate's backend id inside the program: the runner has no such backend.
        model = tmp_path / "unknown_backend.pte"
        model.write_bytes(toy_pte.read_bytes().replace(b"XnnpackBackend", b"XnnpackBackenX"))
        expected = "an operator or backend the model needs is missing"
    else:
        model = tmp_path / "embedding.pte"
        run([venv_python, "-c", EMBEDDING_EXPORT, model]).check_returncode()
        indices = tmp_path / "indices.bin"
        indices.write_bytes(struct.pack("<3q", 1, 2, 99))  # 99 is out of range for 10 rows
        extra, expected = ["--inputs", indices], "execute failed on run 0"
    result = run([prebuilt_runner, "--model_path", model, *extra])
    assert result.returncode == 1
    assert len(error_lines(result)) == 1 and expected in error_lines(result)[0], result.stderr


# --- source flavor: plans, presets, checks ---------------------------------------


def fake_ndk(root: Path, clang_version: str) -> Path:
    (root / "build/cmake").mkdir(parents=True)
    (root / "build/cmake/android.toolchain.cmake").write_text("# stand-in\n")
    clang = root / "toolchains/llvm/prebuilt/linux-x86_64/bin/clang"
    clang.parent.mkdir(parents=True)
    clang.write_text(f"#!/bin/sh\necho 'Android (12470979, based on r522817) clang version {clang_version} (https://android.googlesource.com/toolchain/llvm-project)'\n")
    clang.chmod(0o755)
    return root


def source_plan(venv_python, platform: str, *extra) -> dict:
    result = run([venv_python, BUILD_RUNNERS, "--flavor", "source", "--platform", platform, "--kernels",
                  "--dry-run", "--json", *extra])
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.parametrize("platform", ["mac", "linux", "android"])
def test_on_and_off_differ_only_in_sme_switches(platform, venv_python, tmp_path):
    extra = ["--ndk", fake_ndk(tmp_path / "ndk", "18.0.3")] if platform == "android" else []
    plan = source_plan(venv_python, platform, *extra)
    variants = {v["variant"]: v for v in plan["variants"]}
    assert set(variants) == {"sme2_on", "sme2_off", "sme2_on_kernels", "sme2_off_kernels"}
    sme = {"XNNPACK_ENABLE_ARM_SME2", "XNNPACK_ENABLE_ARM_SME"}
    for on, off in [("sme2_on", "sme2_off"), ("sme2_on_kernels", "sme2_off_kernels")]:
        on_flags, off_flags = variants[on]["cmake_flags"], variants[off]["cmake_flags"]
        differing = {k for k in on_flags.keys() | off_flags.keys() if on_flags.get(k) != off_flags.get(k)}
        assert differing == sme
        assert {on_flags[k] for k in sme} == {"ON"} and {off_flags[k] for k in sme} == {"OFF"}
        assert on_flags["CMAKE_BUILD_TYPE"] == "Release" and on_flags["EXECUTORCH_ENABLE_EVENT_TRACER"] == "ON"
        assert any(arg == "Ninja" for arg in variants[on]["configure"])
    assert variants["sme2_on_kernels"]["cmake_flags"]["EXECUTORCH_XNNPACK_LOG_LEVEL"] == "4"
    assert "EXECUTORCH_XNNPACK_LOG_LEVEL" not in variants["sme2_on"]["cmake_flags"]
    if platform == "android":
        flags = variants["sme2_on"]["cmake_flags"]
        assert flags["ANDROID_ABI"] == "arm64-v8a" and int(flags["ANDROID_PLATFORM"].split("-")[1]) >= 24
        assert flags["CMAKE_TOOLCHAIN_FILE"].endswith("build/cmake/android.toolchain.cmake")
        assert all(v["name"].endswith("-android") for v in plan["variants"])


def test_generated_presets_are_accepted_by_cmake(venv_python, repo_root, tmp_path):
    plan = source_plan(venv_python, "mac")
    source = tmp_path / "runner"
    shutil.copytree(repo_root / "runner", source, ignore=shutil.ignore_patterns("CMakeUserPresets.json"))
    (source / "CMakeUserPresets.json").write_text(json.dumps(plan["presets"]))
    cmake = Path(venv_python).parent / "cmake"
    listed = run([cmake, "--list-presets"], cwd=source)
    assert listed.returncode == 0, listed.stderr
    for name in ("sme2_on", "sme2_off", "sme2_on_kernels", "sme2_off_kernels"):
        assert f'"{name}"' in listed.stdout


def test_missing_checkout_is_a_clear_error(venv_python, tmp_path):
    result = run([venv_python, BUILD_RUNNERS, "--flavor", "source", "--platform", "linux",
                  "--executorch-dir", tmp_path / "no-checkout"])
    assert result.returncode == 1
    assert "ExecuTorch checkout not found" in result.stdout and "--with-source" in result.stdout


def test_old_ndk_clang_is_refused(venv_python, tmp_path):
    checkout = tmp_path / "executorch"
    (checkout / "backends/xnnpack").mkdir(parents=True)
    (checkout / "CMakeLists.txt").write_text("")
    result = run([venv_python, BUILD_RUNNERS, "--flavor", "source", "--platform", "android",
                  "--executorch-dir", checkout, "--ndk", fake_ndk(tmp_path / "ndk", "17.0.2")])
    assert result.returncode == 1
    assert "NDK clang 17" in result.stdout and "r27 or newer" in result.stdout
