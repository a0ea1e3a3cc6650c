"""The emulated SME2 platform: `--platform emulated --compare isa`, proved instruction by instruction.

The cross-built arm64 runner runs under QEMU 11 (`-cpu max` has SME and SME2) three times, with the
feature mask hiding nothing (sme2), SME2 (sme) or SME and SME2 (neon). QEMU's translated-code log
of each trace run, decoded by scripts/isa_evidence.py, must show SME2 instructions in sme2 only,
SME instructions in sme2 and sme, neither in neon; the masked neon run must reach exactly the
XNNPACK code of a CPU without SME (`-cpu max,sme=off`). Runs are one inference each: emulated
SME is slow, and emulated timings are never performance.

Linux x86_64 only; scripts/setup_emulator.sh sets up the tools (with CI set, missing tools fail).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from conftest import load_script

from test_emulated_device import QEMU, SYSROOT, arm64_runner, emulator  # noqa: F401 (fixtures)

pytestmark = pytest.mark.emulated

REPO_ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = REPO_ROOT / "scripts"
XNNPACK_LIBRARY = "libexecutorch_backend_xnnpack.so"
LEVELS = ("neon", "sme", "sme2")
# Matrix operators' datatype tags per ISA level: KleidiAI's packed path needs SME (SME1 and SME2 share
# the op names; only the instructions tell them apart).
PACKED_TAGS = {"fp32": "PF32", "int8": "PQS8"}
PLAIN_TAGS = {"fp32": "F32", "int8": "QC8"}

# A user's model file in the style of scripts/model_template.py: small, so that emulated SME stays quick.
USER_MODEL = '''"""Tiny sensor classifier: a user model file for the emulated ISA test."""
import torch
from torch import nn

SUPPORTED_DTYPES = ("fp32", "int8")


class SensorNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 8, 3, padding=1)
        self.head = nn.Linear(8 * 8 * 8, 6)

    def forward(self, x):
        return self.head(torch.relu(self.conv(x)).flatten(1))


def get_model():
    torch.manual_seed(0)
    return SensorNet()


def get_example_inputs():
    return (torch.randn(1, 2, 8, 8),)
'''

# Known encodings of each class (taken from the emulated runs' logs and checked against the Arm ARM).
KNOWN_ENCODINGS = {
    0xC15F8080: "SME2",  # fmla za.s[w8, 0, vgx4], { z4.s - z7.s }, z15.s[0]
    0xC15993A0: "SME2",  # sdot za.s[w8, 0, vgx4], { z28.b - z31.b }, z9.b[0]
    0xA04045D4: "SME2",  # ld1w { z20.s, z21.s }, pn9/z, [x14]
    0x25B567F0: "SME2",  # whilelt pn8.s, xzr, x21, vlx4
    0x25207811: "SME2",  # ptrue pn9.b
    0xE11F8000: "SME2",  # ldr zt0, [x0]
    0x808C02C0: "SME",   # fmopa za0.s, p0/m, p0/m, z22.s, z12.s
    0xA0902440: "SME",   # smopa za0.s, p1/m, p1/m, z2.b, z16.b
    0xE0960F60: "SME",   # ld1w {za0h.s[w12, 0]}, p3/z, [x27, x22, lsl #2]
    0x04BF5820: "SME",   # rdsvl x0, #1
    0xC00800FF: "SME",   # zero {za}
    0x25221FE0: "SVE",   # whilelo p0.b, xzr, x2
    0x65A20000: "SVE",   # fmla z0.s, p0/m, z0.s, z2.s
    0x4E20CE98: "NEON",  # fmla v24.4s, v20.4s, v0.4s
    0x4F000400: "NEON",  # movi v0.4s, #0
    0x1E222820: "NEON",  # fadd s0, s1, s2 (scalar floating point)
    0x8B020020: "other",  # add x0, x1, x2
    0xD503201F: "other",  # nop
}


def load_isa_evidence() -> ModuleType:
    return load_script("isa_evidence")


def run(args: list, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, **kwargs)


def read_csv(path: Path) -> list[dict]:
    with path.open() as rows:
        return list(csv.DictReader(rows))


def matrix_op_types(run_dir: Path, experiment: str) -> set[str]:
    rows = read_csv(run_dir / f"{experiment}_t1" / "op_stats.csv")
    return {r["op_type"] for r in rows if r["op_type"].startswith(("Convolution", "Fully Connected"))}


@pytest.fixture(scope="session")
def user_model_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("user_model") / "sensor_net.py"
    path.write_text(USER_MODEL)
    return path


@pytest.fixture(scope="session")
def exported(tmp_path_factory, venv_python, user_model_file):
    """(model, dtype) -> .pte, exported by export_model.py on first use."""
    out = tmp_path_factory.mktemp("isa_models")
    cache: dict[tuple[str, str], Path] = {}

    def export(model: str, dtype: str) -> Path:
        if (model, dtype) not in cache:
            source = ["--model", "toy_cnn"] if model == "toy_cnn" else ["--model-file", user_model_file]
            result = run([venv_python, SCRIPTS / "export_model.py", *source, "--dtype", dtype, "--outdir", out,
                          "--no-verify"])
            assert result.returncode == 0, result.stdout + result.stderr
            cache[(model, dtype)] = out / f"{'toy_cnn' if model == 'toy_cnn' else 'sensor_net'}_xnnpack_{dtype}.pte"
        return cache[(model, dtype)]
    return export


@pytest.fixture(scope="session", params=[("toy_cnn", "fp32"), ("toy_cnn", "int8"), ("user", "fp32"), ("user", "int8")],
                ids=lambda p: f"{p[0]}-{p[1]}")
def isa_run(request, emulator, arm64_runner, exported, venv_python, tmp_path_factory) -> tuple[str, Path, subprocess.CompletedProcess]:
    """One `generate_config --platform emulated --compare isa` + mac_pipeline.py run, analysis included."""
    _, dtype = request.param
    model = exported(*request.param)
    work = tmp_path_factory.mktemp(f"isa_{request.param[0]}_{dtype}")
    result = run([venv_python, SCRIPTS / "generate_config.py", "--platform", "emulated", "--compare", "isa",
                  "--model", model, "--output-root", work / "run", "--out", work / "config.json"], cwd=REPO_ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    return dtype, work / "run", run([venv_python, SCRIPTS / "mac_pipeline.py", "--config", work / "config.json"],
                                    cwd=REPO_ROOT, timeout=900)


def completed(isa_run) -> tuple[str, Path]:
    dtype, run_dir, result = isa_run
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return dtype, run_dir


def test_isa_run_completes_and_says_emulated(isa_run):
    _, run_dir = completed(isa_run)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["analysis"]["status"] == "ok"
    assert [e["name"] for e in manifest["experiments"]] == list(LEVELS)
    assert all(e["status"] == "ok" for e in manifest["experiments"])
    device = manifest["device"]
    assert device["emulated"] is True and device["note"] == "emulated: timings not meaningful"
    assert device["sme2"] is True and "11." in device["emulator"]
    seen = {e["name"]: e["cpu_features_seen"] for e in manifest["experiments"]}
    assert (seen["neon"]["sme"], seen["sme"]["sme"], seen["sme"]["sme2"], seen["sme2"]["sme2"]) == (False, True, False, True)
    report = (run_dir / "report.md").read_text()
    assert "emulated: timings not meaningful" in report
    assert "## SME path (from the instructions reached, emulated)" in report
    for level in LEVELS:
        assert (run_dir / f"{level}_t1" / "isa_evidence.csv").is_file()
        assert (run_dir / f"{level}_t1" / "isa_kernels.csv").is_file()


def test_sme2_instructions_only_at_the_sme2_level(isa_run):
    _, run_dir = completed(isa_run)
    evidence = json.loads((run_dir / "isa_evidence.json").read_text())["experiments"]
    reached = {level: {row["isa_class"] for row in read_csv(run_dir / f"{level}_t1" / "isa_evidence.csv")}
               for level in LEVELS}
    assert "SME2" in reached["sme2"] and "SME2" not in reached["sme"] and "SME2" not in reached["neon"]
    assert "SME" in reached["sme2"] and "SME" in reached["sme"] and "SME" not in reached["neon"]
    assert [evidence[f"{level}_t1"]["sme2_reached"] for level in LEVELS] == [False, False, True]
    assert [evidence[f"{level}_t1"]["sme_reached"] for level in LEVELS] == [False, True, True]
    # The SME2 instructions sit in KleidiAI's SME2 kernels, named in the library's symbol table.
    kernels = read_csv(run_dir / "sme2_t1" / "isa_kernels.csv")
    sme2_kernels = {k["symbol"] for k in kernels if k["isa_class"] == "SME2"}
    assert sme2_kernels and all(name.startswith("kai_") and "sme2" in name for name in sme2_kernels)
    sme1_kernels = {k["symbol"] for k in read_csv(run_dir / "sme_t1" / "isa_kernels.csv") if k["isa_class"] == "SME"}
    assert any("_sme_mopa" in name for name in sme1_kernels) and not any("sme2" in name for name in sme1_kernels)
    neon = read_csv(run_dir / "neon_t1" / "isa_kernels.csv")
    assert {k["isa_class"] for k in neon if k["symbol"] == "(not exported)"} == {"NEON"}
    report = (run_dir / "report.md").read_text()
    assert "| sme2_t1 | yes (" in report and "| sme_t1 | no (0) | yes (" in report and "| neon_t1 | no (0) | no (0)" in report
    assert "Kernels neon_t1 -> sme2_t1: only in sme2_t1: `kai_" in report


def test_validation_accepts_the_masked_levels(isa_run, venv_python):
    """Three ISA levels on one runner are no mislabelled pair, and one emulated run is no CI to fail."""
    _, run_dir = completed(isa_run)
    result = run([venv_python, SCRIPTS / "validate_results.py", "--run-dir", run_dir, "--json"])
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    checks = json.loads(result.stdout)["checks"]
    assert not [c for c in checks if c["status"] == "FAIL"], [c for c in checks if c["status"] == "FAIL"]
    assert {c["status"] for c in checks if c["id"] == "sme2_labels"} == {"PASS"}


def test_op_names_follow_the_isa_level(isa_run):
    dtype, run_dir = completed(isa_run)
    for level in LEVELS:
        tags = {tag.strip() for op in matrix_op_types(run_dir, level) for tag in op.split("(")[1].split(")")[0].split(",")}
        if level == "neon":
            assert PLAIN_TAGS[dtype] in tags and PACKED_TAGS[dtype] not in tags, tags
        else:
            assert PACKED_TAGS[dtype] in tags and PLAIN_TAGS[dtype] not in tags, tags


@pytest.mark.parametrize("dtype", ["fp32", "int8"])
def test_masked_neon_reaches_the_code_of_a_cpu_without_sme(dtype, emulator, arm64_runner, exported, venv_python,
                                                           tmp_path):
    """The mask is not an approximation: with SME and SME2 hidden, the runner reaches the same XNNPACK
    and ExecuTorch instructions (library-relative addresses) as on a CPU without SME."""
    model = exported("toy_cnn", dtype)
    folders = {}
    for name, cpu, hide in (("masked", "max", ["sme", "sme2"]), ("nosme", "max,sme=off", [])):
        config = {"schema_version": 1, "platform": "emulated", "model": str(model), "output_root": str(tmp_path / name),
                  "emulator": {"qemu": str(QEMU), "cpu": cpu, "sysroot": str(SYSROOT)},
                  "experiments": [{"name": name, "runner": str(arm64_runner.parent), "hide_cpu_features": hide,
                                   "mode": ["trace"], "runs": 1, "warmup": 0}]}
        (tmp_path / f"{name}.json").write_text(json.dumps(config))
        result = run([venv_python, SCRIPTS / "mac_pipeline.py", "--config", tmp_path / f"{name}.json", "--skip-analysis"])
        assert result.returncode == 0, result.stdout + result.stderr
        folders[name] = tmp_path / name / f"{name}_t1"
        result = run([venv_python, SCRIPTS / "isa_evidence.py", "--experiment-dir", folders[name], "--reached", "--quiet"])
        assert result.returncode == 0, result.stdout + result.stderr

    def code(folder: Path) -> dict[str, set[tuple[str, str]]]:
        per_library: dict[str, set[tuple[str, str]]] = {}
        for row in read_csv(folder / "isa_reached.csv"):
            if row["library"].startswith("libexecutorch"):
                per_library.setdefault(row["library"], set()).add((row["address"], row["word"]))
        return per_library

    masked, nosme = code(folders["masked"]), code(folders["nosme"])
    assert XNNPACK_LIBRARY in masked and len(masked[XNNPACK_LIBRARY]) > 1000
    assert masked == nosme


@pytest.mark.parametrize("word, isa", sorted(KNOWN_ENCODINGS.items()))
def test_classifier_knows_each_isa_class(word, isa):
    assert load_isa_evidence().Classifier().decode(word)[0] == isa


def test_translated_address_maps_to_the_kleidiai_symbol(arm64_runner, tmp_path):
    """A log line at <load base + symbol address> is attributed to that KleidiAI kernel, whatever the base."""
    module = load_isa_evidence()
    library = arm64_runner.parent / XNNPACK_LIBRARY
    image = module.read_elf(library)
    name = "kai_kernel_matmul_clamp_f32_f32p2vlx1_f32p2vlx1biasf32_sme2_mopa"
    vaddr = next(start for start, _, symbol in image.symbols if symbol == name)
    base = 0x7F3A1C000000
    folder = tmp_path / "sme2_t1"
    folder.mkdir()
    maps = [f"{base + v:x}-{base + v + size:x} r-xp {offset:08x} fe:00 42 {library}" for offset, size, v in image.loads]
    (folder / "proc_maps.txt").write_text("\n".join(maps) + "\n")
    (folder / "qemu_in_asm.log").write_text(
        f"----------------\nIN: \n0x{base + vaddr:x}:  c15f8080  .byte    0x80, 0x80, 0x5f, 0xc1\n"
        f"0x{base + vaddr + 4:x}:  808c02c0  fmopa    za0.s, p0/m, p0/m, z22.s, z12.s\n0x{base + vaddr + 8:x}:  d50")
    result = run([sys.executable, SCRIPTS / "isa_evidence.py", "--experiment-dir", folder, "--quiet"])
    assert result.returncode == 0, result.stdout + result.stderr
    kernels = read_csv(folder / "isa_kernels.csv")
    assert [(k["symbol"], k["isa_class"], k["sme2"], k["sme"]) for k in kernels] == [(name, "SME2", "1", "1")]
    rows = read_csv(folder / "isa_evidence.csv")
    assert {(r["library"], r["isa_class"], r["instructions"]) for r in rows} == {(XNNPACK_LIBRARY, "SME2", "1"),
                                                                                  (XNNPACK_LIBRARY, "SME", "1")}


def test_isa_evidence_bad_input_is_one_line(tmp_path):
    result = run([sys.executable, SCRIPTS / "isa_evidence.py", "--run-dir", tmp_path])
    assert result.returncode == 2 and "Traceback" not in result.stdout + result.stderr
    assert result.stdout.count("error:") == 1 and "manifest.json" in result.stdout
    folder = tmp_path / "sme2_t1"
    folder.mkdir()
    (folder / "qemu_in_asm.log").write_text("0x1000:  d503201f  nop\n")
    (tmp_path / "manifest.json").write_text(json.dumps({"experiments": [{"dir": "sme2_t1"}]}))
    result = run([sys.executable, SCRIPTS / "isa_evidence.py", "--run-dir", tmp_path, "--quiet"])
    assert result.returncode == 1 and "no proc_maps.txt" in result.stdout
    summary = json.loads((tmp_path / "isa_evidence.json").read_text())
    assert summary["experiments"]["sme2_t1"]["status"].startswith("failed: no proc_maps.txt")


def test_generated_emulated_config_runs_the_arm64_runner_briefly(venv_python, tmp_path):
    result = run([venv_python, SCRIPTS / "generate_config.py", "--platform", "emulated", "--out", tmp_path / "c.json"],
                 cwd=REPO_ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    config = json.loads((tmp_path / "c.json").read_text())
    assert config["platform"] == "emulated" and (tmp_path / config["emulator"]["qemu"]).resolve() == QEMU
    assert [e["name"] for e in config["experiments"]] == list(LEVELS)
    assert {(e["runner"], e["runs"], e["warmup"], e["rounds"]) for e in config["experiments"]} == \
        {("prebuilt-linux-aarch64", 1, 1, 1)}
    assert "emulated: timings not meaningful" in config["comment"]


def test_runner_copies_its_memory_map(prebuilt_runner, toy_pte, tmp_path):
    maps = tmp_path / "maps.txt"
    result = run([prebuilt_runner, "--model_path", toy_pte, "--proc_maps_path", maps])
    assert result.returncode == 0, result.stderr
    lines = maps.read_text().splitlines()
    assert any(line.endswith(str(prebuilt_runner.resolve())) and " r-xp " in line for line in lines)


def test_setup_emulator_rerun_changes_nothing_system_wide(emulator):
    apt_state = [p for p in sorted(Path("/etc/apt").rglob("*")) if p.is_file()]
    before = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in apt_state}
    result = run([REPO_ROOT / "scripts/setup_emulator.sh"], cwd=REPO_ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "qemu: qemu-aarch64 version 11." in result.stdout and "downloading" not in result.stdout
    assert {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in apt_state} == before


def test_setup_emulator_skips_other_hosts(tmp_path):
    """On a Mac (uname says Darwin arm64) the script prints one skip line and changes nothing."""
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "uname").write_text('#!/bin/sh\n[ "$1" = -s ] && echo Darwin || echo arm64\n')
    (fake / "uname").chmod(0o755)
    result = run([REPO_ROOT / "scripts/setup_emulator.sh"], env={**os.environ, "PATH": f"{fake}:{os.environ['PATH']}",
                                                                 "EMULATOR_DIR": str(tmp_path / "emulator")})
    assert result.returncode == 0 and result.stdout.startswith("skip: ") and "Darwin arm64" in result.stdout
    assert not (tmp_path / "emulator").exists()


@pytest.mark.parametrize("ci, code", [("true", 1), ("", 0)])
def test_setup_emulator_without_debian_is_a_failure_only_in_ci(ci, code, tmp_path):
    """No reachable Debian archive: CI must fail (its emulated tests would not run); elsewhere a skip line."""
    env = {**os.environ, "CI": ci, "EMULATOR_DIR": str(tmp_path / "emulator"),
           "DEBIAN_MIRROR": "http://127.0.0.1:9/debian"}  # nothing listens on the discard port
    result = run([REPO_ROOT / "scripts/setup_emulator.sh"], env=env, timeout=300)
    assert result.returncode == code, result.stdout + result.stderr
    last = (result.stderr if ci else result.stdout).strip().splitlines()[-1]
    assert last.startswith("error: " if ci else "skip: ") and "qemu-user >= 11" in last
    assert not (tmp_path / "emulator/bin").exists()


def test_validate_pipeline_checks_the_emulated_platform(emulator, arm64_runner, toy_pte, venv_python, tmp_path):
    """The arm64 runner is right for the emulated platform, the target CPU is QEMU's, and a missing QEMU is a FAIL."""
    result = run([venv_python, SCRIPTS / "generate_config.py", "--platform", "emulated", "--model", toy_pte,
                  "--output-root", tmp_path / "run", "--out", tmp_path / "ok.json"], cwd=REPO_ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    result = run([venv_python, SCRIPTS / "validate_pipeline.py", "--config", tmp_path / "ok.json", "--json"])
    report = json.loads(result.stdout)
    assert [c for c in report["checks"] if c["status"] == "FAIL"] == [] and result.returncode == 0
    assert report["facts"]["cpu"]["emulated"] is True and report["facts"]["cpu"]["sme2"] is True
    config = json.loads((tmp_path / "ok.json").read_text())
    config["emulator"]["qemu"] = "no_such_dir/qemu-aarch64"
    (tmp_path / "no_qemu.json").write_text(json.dumps(config))
    result = run([venv_python, SCRIPTS / "validate_pipeline.py", "--config", tmp_path / "no_qemu.json", "--json"])
    failed = [c for c in json.loads(result.stdout)["checks"] if c["status"] == "FAIL"]
    assert result.returncode != 0 and [c["id"] for c in failed] == ["target_cpu"]
    assert "emulator not found" in failed[0]["detail"] and "setup_emulator.sh" in failed[0]["fix"]
