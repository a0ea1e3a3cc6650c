"""The kernel view: kernel_log.py (XNNPACK microkernel log lines -> kernels.csv, kernel facts) and the
ON/OFF check and report sections analyze_results.py builds on it (its output stages plot_analysis.py and
write_report.py are run alone here too, on the same real run).

Kernel names are real: from the executorch 1.5.1 macOS arm64 wheel's XNNPACK library
(test-cases/data/xnnpack-kernel-names_executorch-1.5.1_macos-arm64.txt) and XNNPACK's x86 and NEON
kernels; the lines use XNNPACK's own log formats (stdout `Note (XNNPACK): ...` and Android logcat).
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
from pathlib import Path
from types import ModuleType

import pandas as pd
import pytest

from test_results_validation import analyze, build_run_dir, load_analyzer

KERNEL_NAMES_FILE = "xnnpack-kernel-names_executorch-1.5.1_macos-arm64.txt"

# name -> datatype, operation, tile, isa, isa_family, is_kleidiai
EXPECTED_FIELDS = {
    "xnn_pf32_gemm_minmax_ukernel_32x32__neonsme2": ("pf32", "gemm", "32x32", "sme2", "sme2", True),
    "xnn_pf32_igemm_minmax_ukernel_32x32__neonsme": ("pf32", "igemm", "32x32", "sme", "sme", True),
    "xnn_pqs8_qc8w_igemm_minmax_fp32_ukernel_32x32c4__neonsme2": ("pqs8_qc8w", "igemm", "32x32c4", "sme2", "sme2",
                                                                   True),
    "xnn_qp8_f32_qc8w_gemm_minmax_ukernel_16x4c8__neoni8mm_mstep4": ("qp8_f32_qc8w", "gemm", "16x4c8", "neoni8mm",
                                                                      "neon", True),
    "xnn_qp8_f32_qc4w_gemm_minmax_ukernel_1x4c8s2__aarch64_neondot": ("qp8_f32_qc4w", "gemm", "1x4c8s2", "neondot",
                                                                       "neon", True),
    "xnn_f32_gemm_minmax_ukernel_6x8__neonfma_lane_ld128": ("f32", "gemm", "6x8", "neonfma", "neon", False),
    "xnn_qd8_f32_qc8w_igemm_minmax_ukernel_1x8c2s4__neon_mlal": ("qd8_f32_qc8w", "igemm", "1x8c2s4", "neon", "neon",
                                                                  False),
    "xnn_f16_gemm_minmax_ukernel_6x16__neonfp16arith_ld64": ("f16", "gemm", "6x16", "neonfp16arith", "neon", False),
    "xnn_x32_transposec_ukernel__4x4_aarch64_neon_tbl128": ("x32", "transposec", "4x4", "neon", "neon", False),
    "xnn_f32_maxpool_minmax_ukernel_9p__neon_u4": ("f32", "maxpool", "9p", "neon", "neon", False),
    "xnn_f32_vexp_ukernel__scalar_rational_3_2_div_u8": ("f32", "vexp", "u8", "scalar", "scalar", False),
    "xnn_f16_f32acc_vexp_ukernel__neonfp16_poly_3_u16": ("f16_f32acc", "vexp", "u16", "neonfp16", "neon", False),
    "xnn_f32_igemm_minmax_ukernel_4x8__avx_broadcast": ("f32", "igemm", "4x8", "avx", "avx", False),
    "xnn_f32_gemm_minmax_ukernel_4x16__avx512f_broadcast": ("f32", "gemm", "4x16", "avx512f", "avx512", False),
    "kai_run_matmul_clamp_f32_f32p2vlx1_f32p2vlx1biasf32_sme2_mopa": ("f32_f32p2vlx1_f32p2vlx1biasf32",
                                                                      "matmul_clamp", "", "sme2", "sme2", True),
    "kai_run_matmul_clamp_f32_qai8dxp1x4_qsi8cxp4x4_1x4_neon_dotprod": ("f32_qai8dxp1x4_qsi8cxp4x4", "matmul_clamp",
                                                                        "1x4", "neondot", "neon", True),
    "kai_run_matmul_clamp_f16_f16p2vlx2_f16p2vlx2_2vlx2vl_sme2_mopa": ("f16_f16p2vlx2_f16p2vlx2", "matmul_clamp",
                                                                       "2vlx2vl", "sme2", "sme2", True),
    "kai_run_lhs_pack_f32p2vlx1_f32_sme": ("f32p2vlx1_f32", "lhs_pack", "", "sme", "sme", True),
}


@pytest.fixture(scope="module")
def kernel_log(repo_root: Path) -> ModuleType:
    """kernel_log.py: the owner of the kernel-name rules."""
    return load_analyzer(repo_root, "kernel_log")


def parse(kernel_log: ModuleType, text: str) -> pd.DataFrame:
    """kernel_log.py's rows of a log as a table (the columns of kernels.csv)."""
    return pd.DataFrame(kernel_log.parse_kernel_log(text), columns=kernel_log.COLUMNS)


def run_stage(venv_python: str, repo_root: Path, script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([venv_python, str(repo_root / "scripts" / script), *args], capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope="module")
def real_kernel_names(repo_root: Path) -> list[str]:
    path = repo_root / "test-cases" / "data" / KERNEL_NAMES_FILE
    return [line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]


def stdout_line(kind: str, name: str) -> str:
    return f"Note (XNNPACK): Using {kind} microkernel '{name}'."


def logcat_line(kind: str, name: str) -> str:
    return f"11-23 20:30:00.123  4321  4321 I XNNPACK : Using {kind} microkernel '{name}'."


def test_kernel_extraction(kernel_log: ModuleType, real_kernel_names: list[str]) -> None:
    # Most names come from the wheel's list; the NEON transpose/fma and AVX ones are XNNPACK's own kernels.
    from_elsewhere = {n for n in EXPECTED_FIELDS if n not in real_kernel_names}
    assert from_elsewhere == {"xnn_f32_gemm_minmax_ukernel_6x8__neonfma_lane_ld128",
                              "xnn_x32_transposec_ukernel__4x4_aarch64_neon_tbl128",
                              "xnn_f32_igemm_minmax_ukernel_4x8__avx_broadcast",
                              "xnn_f32_gemm_minmax_ukernel_4x16__avx512f_broadcast"}
    lines = ["I 00:00:00.001 executorch:runner.cpp:10] loading model"]
    for i, name in enumerate(EXPECTED_FIELDS):
        kind = "gemm" if "gemm" in name or "matmul" in name else "other"
        lines.append(stdout_line(kind, name) if i % 2 else logcat_line(kind, name))
    table = parse(kernel_log, "\n".join(lines))
    assert list(table.columns) == ["kind", "name", "datatype", "operation", "tile", "isa", "isa_family",
                                   "is_kleidiai", "registrations"]
    assert len(table) == len(EXPECTED_FIELDS)
    for _, row in table.iterrows():
        expected = EXPECTED_FIELDS[row["name"]]
        got = (row["datatype"], row["operation"], row["tile"], row["isa"], row["isa_family"], bool(row["is_kleidiai"]))
        assert got == expected, row["name"]


def test_every_shipped_kernel_name_parses(kernel_log: ModuleType, real_kernel_names: list[str]) -> None:
    """Every real kernel of the macOS arm64 wheel gets an operation and, where the name has one, an ISA."""
    assert len(real_kernel_names) > 100
    families = set()
    for name in real_kernel_names:
        fields = kernel_log.split_kernel_name(name)
        assert fields["operation"], name
        if name.startswith("xnn_"):
            assert fields["isa"], name
            assert fields["isa_family"] in {"sme2", "sme", "neon", "scalar"}, name
            assert fields["is_kleidiai"] == (name.split("_")[1] in {"pf32", "pf16", "pqs8", "qp8"}), name
        else:
            assert fields["is_kleidiai"], name
        if "sme2" in name:
            assert fields["isa_family"] == "sme2", name
        families.add(fields["isa_family"])
    assert {"sme2", "sme", "neon", "scalar"} <= families


def test_registrations_are_counted_not_calls(kernel_log: ModuleType) -> None:
    name = "xnn_pf32_gemm_minmax_ukernel_32x32__neonsme2"
    text = "\n".join([stdout_line("gemm", name)] * 3 + ["Note (XNNPACK): unrelated line", "garbage 'quoted'"])
    table = parse(kernel_log, text)
    assert table["registrations"].tolist() == [3]
    assert parse(kernel_log, "no kernel lines here\n").empty


def log_text(names: list[str]) -> str:
    return "\n".join(stdout_line("gemm", n) for n in names) + "\n"


@pytest.fixture(scope="module")
def on_off_run(tmp_path_factory, prebuilt_runner: Path, toy_pte: Path, repo_root: Path) -> Path:
    """Real timings and ETDumps of one XNNPACK model as three SME2 OFF -> ON pairs on an "SME2 CPU".

    This x86 host has no SME2: the labels exercise the label checks, and the kernel logs supply the
    registrations an ON and an OFF runner print. Pair `bad` is mislabelled (ON registered no SME2
    kernel, OFF did); pair `good` is what its labels say; pair `rec` has the recorded real fp32 logs
    of source-built runners under QEMU (no SME / SME2).
    """
    names = ["bad_off", "bad_on", "good_off", "good_on"]
    labels = {n: {"sme2_label": n.split("_")[1], "sme2_effective": n.endswith("_on")} for n in names}
    run_dir = build_run_dir(tmp_path_factory.mktemp("kernels") / "run", prebuilt_runner, {n: toy_pte for n in names},
                            {"host": {"os": "Linux", "chip": "test host", "cores": 2, "sme2": True, "sme": True,
                                      "emulated": False}},
                            labels, [("bad_off", "bad_on"), ("good_off", "good_on")])
    for name, kernels in (("bad_off", NEON + SME2), ("bad_on", NEON), ("good_off", NEON), ("good_on", NEON + SME2)):
        (run_dir / f"{name}_t1" / "kernels.log").write_text(log_text(kernels))
    # The recorded pair reuses the good pair's timings and ETDumps (the kernel section reads only the logs).
    manifest = json.loads((run_dir / "manifest.json").read_text())
    for name, cpu in (("rec_off", "nosme"), ("rec_on", "sme2")):
        source = "good_" + name.split("_")[1]
        shutil.copytree(run_dir / f"{source}_t1", run_dir / f"{name}_t1")
        (run_dir / f"{name}_t1" / "kernels.log").write_text(recorded_log(repo_root, "fp32", cpu))
        entry = next(e for e in manifest["experiments"] if e["name"] == source)
        manifest["experiments"].append({**entry, "name": name, "dir": f"{name}_t1"})
    manifest["compare"].append({"baseline": "rec_off_t1", "candidate": "rec_on_t1"})
    (run_dir / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return run_dir


@pytest.fixture(scope="module")
def on_off_summary(on_off_run: Path, venv_python: str, repo_root: Path) -> dict:
    done = analyze(venv_python, repo_root, "--run-dir", str(on_off_run), "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


NEON = ["xnn_f32_gemm_minmax_ukernel_6x8__neonfma_lane_ld128", "xnn_f32_maxpool_minmax_ukernel_9p__neon_u4"]
SME2 = ["xnn_pf32_gemm_minmax_ukernel_32x32__neonsme2", "xnn_pf32_igemm_minmax_ukernel_32x32__neonsme2"]


def test_on_off_pair_kernel_check(on_off_run: Path, on_off_summary: dict) -> None:
    summary = on_off_summary
    bad, good, _ = summary["comparisons"]
    assert any("bad_on_t1 (SME2 ON) registered no SME2 microkernel" in w for w in bad["warnings"])
    assert any("bad_off_t1 (SME2 OFF) registered SME/SME2 microkernels" in w for w in bad["warnings"])
    assert not any("microkernel" in w for w in good["warnings"])
    # The ETDumps show F32 (not PF32) op names for the "ON" side on this x86 host: that is flagged too.
    assert any(w.startswith("good_on_t1: ") and "no operator ran on the KleidiAI packed path" in w
               for w in summary["warnings"])
    # Only label warnings count here: a busy machine adds CV warnings that say nothing about kernels.
    assert not any(w.startswith("good_off_t1: ") and ("microkernel" in w or "packed path" in w)
                   for w in summary["warnings"]), summary["warnings"]
    with (on_off_run / "bad_on_t1" / "kernels.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert {r["name"] for r in rows} == set(NEON) and {r["isa"] for r in rows} == {"neonfma", "neon"}
    assert summary["experiments"]["good_on_t1"]["kernels"]["isa_families"] == {"neon": 2, "sme2": 2}
    report = (on_off_run / "report.md").read_text()
    assert "registered, not how often each ran" in report
    assert "`xnn_pf32_gemm_minmax_ukernel_32x32__neonsme2`" in report


# --- recorded real kernel logs (source-built _kernels runners under qemu-aarch64 11) -----------------------

RECORDED_LOGS = "xnnpack-kernel-logs-linux-aarch64-qemu11"
GEMM_KINDS = {"gemm", "igemm"}
# ISA family every GEMM/IGEMM kernel has under each CPU view: SME2, SME2 hidden (SME1), no SME.
FAMILY_OF_CPU = {"sme2": "sme2", "sme_shim": "sme", "nosme": "neon"}


def recorded_log(repo_root: Path, dtype: str, cpu: str) -> str:
    return (repo_root / "test-cases" / "data" / RECORDED_LOGS / f"{dtype}.{cpu}.log").read_text()


@pytest.mark.parametrize("dtype", ["fp32", "fp16", "int8"])
def test_recorded_logs_gemm_kernels_follow_the_cpu(dtype: str, kernel_log: ModuleType, repo_root: Path) -> None:
    tables = {cpu: parse(kernel_log, recorded_log(repo_root, dtype, cpu)) for cpu in FAMILY_OF_CPU}
    others = {}
    for cpu, table in tables.items():
        gemm = table[table["kind"].isin(GEMM_KINDS)]
        assert not gemm.empty, cpu
        assert set(gemm["isa_family"]) == {FAMILY_OF_CPU[cpu]}, (cpu, gemm["name"].tolist())
        # The SME paths are KleidiAI's packed-LHS kernels (pf32/pf16/pqs8); the NEON path is XNNPACK's own.
        assert set(gemm["is_kleidiai"]) == {cpu != "nosme"}, cpu
        others[cpu] = set(table.loc[~table["kind"].isin(GEMM_KINDS), "name"])
    # Only the matrix kernels change with SME: everything else XNNPACK registers is the same NEON code.
    assert others["sme2"] == others["sme_shim"] == others["nosme"]
    assert all(kernel_log.split_kernel_name(name)["isa_family"] in {"neon", "scalar"} for name in others["nosme"])


def test_recorded_log_counts_registrations(kernel_log: ModuleType, repo_root: Path) -> None:
    table = parse(kernel_log, recorded_log(repo_root, "fp32", "nosme")).set_index("name")
    # Without SME XNNPACK registers the NEON f32 GEMMs twice (two configs share them), once with SME2.
    assert table.loc["xnn_f32_gemm_minmax_ukernel_4x8__asm_aarch64_neonfma_ld128_2", "registrations"] == 2
    assert table.loc["xnn_f32_igemm_minmax_ukernel_6x8__asm_aarch64_neonfma_ld128", "tile"] == "6x8"
    sme2 = parse(kernel_log, recorded_log(repo_root, "fp32", "sme2")).set_index("name")
    assert sme2.loc["xnn_pf32_igemm_minmax_ukernel_32x32__neonsme2", "registrations"] == 1


def test_report_kernel_diff_on_recorded_logs(on_off_run: Path, on_off_summary: dict, repo_root: Path) -> None:
    # Real logs that match their labels: no kernel warning on the pair.
    assert not any("microkernel" in w for w in on_off_summary["comparisons"][2]["warnings"])
    assert on_off_summary["experiments"]["rec_on_t1"]["kernels"]["isa_families"]["sme2"] == 3
    report = (on_off_run / "report.md").read_text()
    section = report.split("### Kernel diff rec_off_t1 -> rec_on_t1", 1)[1].split("\n#", 1)[0]
    off = kind_names(recorded_log(repo_root, "fp32", "nosme"))
    on = kind_names(recorded_log(repo_root, "fp32", "sme2"))
    assert f"{len(off & on)} kernels registered by both; 2 kinds differ:" in section
    rows = {line.split(" | ")[0].strip("| "): line for line in section.splitlines() if line.startswith("| ")}
    assert set(rows) == {"kind", "gemm", "igemm"}
    gemm_off, gemm_on = rows["gemm"].split(" | ")[1:3]
    assert "`xnn_f32_gemm_minmax_ukernel_4x8__asm_aarch64_neonfma_ld128_2`" in gemm_off and "neonsme2" not in gemm_off
    assert gemm_on.count("__neonsme2`") == 2 and "neonfma" not in gemm_on
    assert "`xnn_pf32_igemm_minmax_ukernel_32x32__neonsme2`" in rows["igemm"]


def kind_names(text: str) -> set[tuple[str, str]]:
    """(kind, kernel) pairs in a log, read independently of the analyzer (a plain regex over the lines)."""
    import re
    return set(re.findall(r"Using ([a-z_ ]+) microkernel '([A-Za-z0-9_]+)'", text))


# --- the stages as real processes -------------------------------------------------------------------------

TRACEBACK = "Traceback (most recent call last)"


def assert_one_error_line(done: subprocess.CompletedProcess, *needles: str) -> None:
    """Exit 2, no traceback, one `error:` line that names the problem and its fix."""
    text = done.stdout + done.stderr
    assert done.returncode == 2 and TRACEBACK not in text, text
    errors = [line for line in text.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and all(needle in errors[0] for needle in needles), text


def test_kernel_log_stage_on_recorded_logs(tmp_path: Path, venv_python: str, repo_root: Path) -> None:
    """kernel_log.py on the recorded real logs: kernels.csv per folder, facts and the pair's kernel diff."""
    folders = {name: tmp_path / name for name in ("off", "on", "nolog")}
    for name, folder in folders.items():
        folder.mkdir()
    (folders["off"] / "kernels.log").write_text(recorded_log(repo_root, "fp32", "nosme"))
    (folders["on"] / "kernels.log").write_text(recorded_log(repo_root, "fp32", "sme2"))
    facts_path = tmp_path / "facts.json"
    args = [arg for name, folder in folders.items() for arg in ("--experiment", name, str(folder))]
    done = run_stage(venv_python, repo_root, "kernel_log.py", *args, "--pair", "off", "on", "--out", str(facts_path))
    assert done.returncode == 0, done.stderr
    facts = json.loads(facts_path.read_text())
    assert set(facts["experiments"]) == {"off", "on"} and not (folders["nolog"] / "kernels.csv").exists()
    off, on = kind_names(recorded_log(repo_root, "fp32", "nosme")), kind_names(recorded_log(repo_root, "fp32", "sme2"))
    for name, expected in (("off", off), ("on", on)):
        rows = read_rows(folders[name] / "kernels.csv")
        assert {(r["kind"], r["name"]) for r in rows} == expected
        assert facts["experiments"][name]["count"] == len(expected)
    assert facts["experiments"]["on"]["isa_families"]["sme2"] == 3
    assert "sme2" not in facts["experiments"]["off"]["isa_families"]
    (pair,) = facts["pairs"]
    assert pair["both"] == len(off & on) and [k["kind"] for k in pair["kinds"]] == ["gemm", "igemm"]
    igemm = pair["kinds"][1]
    assert igemm["only_candidate"] == sorted(n for k, n in on - off if k == "igemm")
    assert "xnn_pf32_igemm_minmax_ukernel_32x32__neonsme2" in igemm["only_candidate"]


def test_kernel_log_stage_bad_folder(tmp_path: Path, venv_python: str, repo_root: Path) -> None:
    done = run_stage(venv_python, repo_root, "kernel_log.py", "--experiment", "gone", str(tmp_path / "gone"),
                     "--out", str(tmp_path / "facts.json"))
    assert_one_error_line(done, "no such experiment folder", "pass a folder of a run directory")
    assert not (tmp_path / "facts.json").exists()
    (tmp_path / "off").mkdir()
    (tmp_path / "off" / "kernels.log").write_text(recorded_log(repo_root, "fp32", "nosme"))
    done = run_stage(venv_python, repo_root, "kernel_log.py", "--experiment", "off", str(tmp_path / "off"),
                     "--pair", "off", "on")
    assert_one_error_line(done, "--pair names 'on'", "pass --experiment NAME FOLDER for both sides")
    assert sorted(p.name for p in (tmp_path / "off").iterdir()) == ["kernels.log"]  # nothing written


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


def test_output_stages_alone_redraw_the_analysis(on_off_run: Path, on_off_summary: dict, tmp_path: Path,
                                                 venv_python: str, repo_root: Path) -> None:
    """plot_analysis.py and write_report.py, run alone on the analysed run, give its charts and report.md."""
    summary = on_off_run / "analysis_summary.json"
    charts = {path.name: path.read_bytes() for path in (on_off_run / "charts").glob("*.png")}
    assert len(charts) == 1 + 1 + 6 + 3  # E2E, categories, top ops per experiment, one per compare pair
    shutil.rmtree(on_off_run / "charts")
    done = run_stage(venv_python, repo_root, "plot_analysis.py", "--summary", str(summary))
    assert done.returncode == 0, done.stderr
    assert {path.name: path.read_bytes() for path in (on_off_run / "charts").glob("*.png")} == charts

    rules = tmp_path / "rules.json"
    rules.write_text(run_stage(venv_python, repo_root, "trace_breakdown.py", "--rules").stdout)
    names = [name for name in on_off_summary["experiments"]]
    kernel_args = [arg for name in names for arg in ("--experiment", name, str(on_off_run / name))]
    for pair in on_off_summary["comparisons"]:
        kernel_args += ["--pair", pair["baseline"], pair["candidate"]]
    done = run_stage(venv_python, repo_root, "kernel_log.py", *kernel_args, "--out", str(tmp_path / "facts.json"))
    assert done.returncode == 0, done.stderr
    done = run_stage(venv_python, repo_root, "write_report.py", "--summary", str(summary), "--manifest",
                     str(on_off_run / "manifest.json"), "--rules", str(rules), "--e2e-stats",
                     str(on_off_run / "e2e_stats.json"), "--kernel-facts", str(tmp_path / "facts.json"),
                     "--out", str(tmp_path / "report.md"))
    assert done.returncode == 0, done.stderr

    def body(path: Path) -> list[str]:  # all but the line with the generation time
        return [line for line in path.read_text().splitlines() if not line.startswith("Source: ")]
    assert body(tmp_path / "report.md") == body(on_off_run / "report.md")


def test_output_stages_bad_summary(tmp_path: Path, venv_python: str, repo_root: Path) -> None:
    broken = tmp_path / "analysis_summary.json"
    broken.write_text('{"experiments": ')
    done = run_stage(venv_python, repo_root, "write_report.py", "--summary", str(broken))
    assert_one_error_line(done, "analysis_summary.json", "re-run analyze_results.py")
    done = run_stage(venv_python, repo_root, "plot_analysis.py", "--summary", str(tmp_path / "missing.json"))
    assert_one_error_line(done, "no such analysis summary", "run analyze_results.py first")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["analysis_summary.json"]
