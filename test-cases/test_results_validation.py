"""analyze_results.py on real run directories: ETDumps and timings from the real runner on real exports.

The session fixture builds a run directory the way the pipeline does (interleaved timing rounds of a
portable and an XNNPACK export, then one traced run each), runs the analysis once, and the tests
check its outputs against the Inspector's raw values and the runner's own timing files.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import shutil
import subprocess
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from conftest import load_script

ROUNDS = 3
RUNS_PER_ROUND = 10
TRACED_RUNS = 12
FRAMEWORK_EVENTS = {"Method::execute", "DELEGATE_CALL", "OPERATOR_CALL", "Program::load_method", "Method::init"}


def load_analyzer(repo_root: Path, script: str = "analyze_results") -> ModuleType:
    """An analysis script as a module, to test its rules and statistics directly."""
    return load_script(script)


def run_runner(runner: Path, model: Path, runs: int, extra: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([str(runner), "--model_path", str(model), "--num_executions", str(runs), "--warmup", "2",
                           "--cpu_threads", "1", *extra], check=True, capture_output=True, text=True)


def build_run_dir(out: Path, runner: Path, models: dict[str, Path], manifest_extra: dict[str, Any],
                  experiment_extra: dict[str, dict[str, Any]], compare: list[tuple[str, str]]) -> Path:
    """A run directory in the documented format (scripts/README.md) from real runner invocations."""
    out.mkdir(parents=True)
    rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in models}
    for k in range(ROUNDS):
        for name, model in models.items():
            folder = out / f"{name}_t1"
            folder.mkdir(exist_ok=True)
            run_runner(runner, model, RUNS_PER_ROUND, ["--timing_json", str(folder / "round.json")])
            timing = json.loads((folder / "round.json").read_text())
            (folder / "round.json").unlink()
            rounds[name].append({"round": k, "latencies_ms": timing["latencies_ms"], "load_ms": timing["load_ms"]})
    for name, model in models.items():
        folder = out / f"{name}_t1"
        done = run_runner(runner, model, TRACED_RUNS, ["--etdump_path", str(folder / "trace.etdump")])
        (folder / "runner.log").write_text(done.stdout + done.stderr)
        latencies = [x for r in rounds[name] for x in r["latencies_ms"]]
        (folder / "timing.json").write_text(json.dumps({
            "schema_version": 1, "experiment": name, "threads": 1, "runs_per_round": RUNS_PER_ROUND, "warmup": 2,
            "rounds": rounds[name], "latencies_ms": latencies,
            "round_medians_ms": [float(np.median(r["latencies_ms"])) for r in rounds[name]]}))
    runner_json = json.loads((runner.parent / "runner.json").read_text())
    manifest = {
        "schema_version": 1, "created": "2026-01-01T00:00:00+00:00", "pipeline": "test", "config_path": "",
        "config": {}, "versions": {"executorch": "1.5.1", "torch": "2.13.0"},
        "host": {"os": "Linux", "os_version": "test", "machine": "x86_64", "chip": "test host", "cores": 2,
                 "sme2": False, "sme": False, "emulated": False},
        "device": None, "runners": {"prebuilt": runner_json},
        "experiments": [{"name": name, "threads": 1, "dir": f"{name}_t1", "runner": "prebuilt", "model": str(model),
                         "modes": ["timing", "trace"], "runs": RUNS_PER_ROUND, "warmup": 2, "rounds": ROUNDS,
                         "sme2_label": None, "sme2_effective": False, "note": "", "status": "ok", "error": None,
                         "files": ["timing.json", "trace.etdump", "runner.log"], **experiment_extra.get(name, {})}
                        for name, model in models.items()],
        "compare": [{"baseline": f"{b}_t1", "candidate": f"{c}_t1"} for b, c in compare],
    }
    manifest.update(manifest_extra)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return out


def analyze(venv_python: str, repo_root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([venv_python, str(repo_root / "scripts/analyze_results.py"), *args],
                          capture_output=True, text=True, timeout=300)


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


def inspector_events(etdump: Path) -> dict[str, list[float]]:
    """Raw per-run durations (ms) of every event name, straight from the Inspector."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from executorch.devtools import Inspector
        inspector = Inspector(etdump_path=str(etdump))
    events: dict[str, list[float]] = {}
    for block in inspector.event_blocks:
        for event in block.events:
            if event.perf_data is not None:
                events.setdefault(event.name, []).extend(event.perf_data.raw)
    return events


@pytest.fixture(scope="session")
def analyzer(repo_root: Path) -> ModuleType:
    return load_analyzer(repo_root)


@pytest.fixture(scope="session")
def breakdown(repo_root: Path) -> ModuleType:
    """trace_breakdown.py: the operator rules and the per-run breakdown."""
    return load_analyzer(repo_root, "trace_breakdown")


@pytest.fixture(scope="session")
def timing(repo_root: Path) -> ModuleType:
    """timing_stats.py: E2E medians and CIs between processes."""
    return load_analyzer(repo_root, "timing_stats")


@pytest.fixture(scope="session")
def analyzed_run(tmp_path_factory, prebuilt_runner: Path, toy_pte: Path, toy_portable_pte: Path,
                 venv_python: str, repo_root: Path) -> Path:
    """A portable -> XNNPACK run directory with one failed experiment, analysed once."""
    run_dir = build_run_dir(tmp_path_factory.mktemp("analysis") / "run", prebuilt_runner,
                            {"portable": toy_portable_pte, "xnnpack": toy_pte}, {}, {},
                            [("portable", "xnnpack")])
    manifest = json.loads((run_dir / "manifest.json").read_text())
    manifest["experiments"].append({"name": "crashed", "threads": 1, "dir": "crashed_t1", "runner": "prebuilt",
                                    "model": str(toy_pte), "status": "failed",
                                    "error": "runner exited with signal 11", "files": []})
    (run_dir / "manifest.json").write_text(json.dumps(manifest, indent=2))
    done = analyze(venv_python, repo_root, "--run-dir", str(run_dir))
    assert done.returncode == 0, done.stdout + done.stderr
    return run_dir


@pytest.fixture(scope="session")
def summary(analyzed_run: Path) -> dict[str, Any]:
    return json.loads((analyzed_run / "analysis_summary.json").read_text())


def test_latency_metrics(analyzed_run: Path, summary: dict[str, Any]) -> None:
    for name in ("portable_t1", "xnnpack_t1"):
        timing = json.loads((analyzed_run / name / "timing.json").read_text())
        latencies = np.asarray(timing["latencies_ms"])
        e2e = summary["experiments"][name]["e2e"]
        assert summary["experiments"][name]["e2e_source"] == "timing"
        assert e2e["n"] == ROUNDS * RUNS_PER_ROUND
        assert e2e["median_ms"] == pytest.approx(float(np.median(latencies)))
        assert e2e["mean_ms"] == pytest.approx(float(np.mean(latencies)))
        assert e2e["min_ms"] == pytest.approx(float(latencies.min()))
        assert e2e["max_ms"] == pytest.approx(float(latencies.max()))
        assert e2e["p90_ms"] == pytest.approx(float(np.percentile(latencies, 90)))
        assert e2e["p99_ms"] == pytest.approx(float(np.percentile(latencies, 99)))
        assert e2e["cv_pct"] == pytest.approx(100 * np.std(latencies, ddof=1) / np.mean(latencies))
        assert e2e["ci95_low_ms"] <= e2e["median_ms"] <= e2e["ci95_high_ms"]
        # The traced E2E is Method::execute exactly as the Inspector reports it.
        raw = inspector_events(analyzed_run / name / "trace.etdump")["Method::execute"]
        assert len(raw) == TRACED_RUNS
        kept = [float(r["execute_ms"]) for r in read_csv(analyzed_run / name / "runs.csv") if r["outlier"] == "False"]
        assert sorted(kept) == sorted(v for v in raw if v in kept) and len(kept) >= TRACED_RUNS // 2
        assert summary["experiments"][name]["trace_e2e"]["median_ms"] == pytest.approx(float(np.median(kept)))
        # Units: the traced and the timed medians are the same order of magnitude (ms both).
        assert 0.2 < float(np.median(raw)) / e2e["median_ms"] < 5


def test_operator_analysis(analyzed_run: Path) -> None:
    for name, backends in (("portable_t1", {"portable"}), ("xnnpack_t1", {"XNNPACK"})):
        folder = analyzed_run / name
        ops = read_csv(folder / "ops.csv")
        assert list(ops[0]) == ["run", "position", "delegate_call", "instance_id", "name", "op_type", "category",
                                "backend", "kernel_path", "duration_ms"]
        assert not {row["name"] for row in ops} & FRAMEWORK_EVENTS
        assert {row["backend"] for row in ops} >= backends
        assert {int(row["run"]) for row in ops} == set(range(TRACED_RUNS))
        # Every operator duration is the Inspector's raw value for that event.
        raw = inspector_events(folder / "trace.etdump")
        for row in ops:
            assert float(row["duration_ms"]) == pytest.approx(raw[row["name"]][int(row["run"])], rel=1e-8, abs=1e-9)
        # Exclusive times: per run, operators never exceed Method::execute.
        per_run = np.zeros(TRACED_RUNS)
        for row in ops:
            per_run[int(row["run"])] += float(row["duration_ms"])
        assert np.all(per_run <= np.asarray(raw["Method::execute"]) + 1e-9)
        # Every instance has one stable id: the same ids, in the same order, in every run.
        ids = [[row["instance_id"] for row in ops if int(row["run"]) == run] for run in range(TRACED_RUNS)]
        assert all(run_ids == ids[0] for run_ids in ids) and len(set(ids[0])) == len(ids[0])
        runs = read_csv(folder / "runs.csv")
        execute = np.asarray([float(r["execute_ms"]) for r in runs])
        assert execute == pytest.approx(np.asarray(raw["Method::execute"]), rel=1e-8)
        kept = [i for i, r in enumerate(runs) if r["outlier"] == "False"]
        categories = read_csv(folder / "categories.csv")
        assert [r["category"] for r in categories] == ["CONV", "GEMM", "DATA_MOVEMENT", "ELEMENTWISE", "OTHER",
                                                       "UNATTRIBUTED"]
        # The headline is the median over (kept) runs of each run's summed exclusive time.
        for r in categories:
            if r["category"] == "UNATTRIBUTED":
                continue
            sums = np.zeros(TRACED_RUNS)
            for row in ops:
                if row["category"] == r["category"]:
                    sums[int(row["run"])] += float(row["duration_ms"])
            assert float(r["ms_per_inference"]) == pytest.approx(float(np.median(sums[kept])), abs=1e-9)
            assert float(r["share_pct"]) == pytest.approx(
                100 * float(np.median(sums[kept])) / float(np.median(execute[kept])), rel=1e-6)
        stats = read_csv(folder / "op_stats.csv")
        assert stats[-1]["category"] == "UNATTRIBUTED"
        for r in stats[:-1]:  # instances per run = events per run, not distinct names
            events = sum(1 for row in ops if row["op_type"] == r["op_type"] and row["backend"] == r["backend"])
            assert int(r["instances_per_run"]) * TRACED_RUNS == events
        conv = [r for r in stats if r["category"] == "CONV"]
        gemm = [r for r in stats if r["category"] == "GEMM"]
        assert conv and gemm, "the tiny CNN has a convolution and a linear layer"
    xnn_stats = read_csv(analyzed_run / "xnnpack_t1" / "op_stats.csv")
    assert any(r["op_type"].startswith("Convolution (NHWC, F32)") and r["kernel_path"] == "xnnpack" for r in xnn_stats)
    assert any(r["op_type"].startswith("Fully Connected (NC, F32)") and r["category"] == "GEMM" for r in xnn_stats)
    portable_stats = read_csv(analyzed_run / "portable_t1" / "op_stats.csv")
    conv = next(r for r in portable_stats if r["op_type"] == "native_call_convolution.out")
    assert conv["category"] == "CONV" and conv["backend"] == "portable"
    # A portable-only baseline runs everything on portable kernels on purpose: no delegation flag there.
    assert all(r["delegation_opportunity"] == "False" for r in portable_stats)


REAL_XNNPACK_NAMES = [
    ("Convolution (NHWC, F32) IGEMM #1", "CONV", "conv"),
    ("Convolution (NHWC, PF32) IGEMM #1", "CONV", "conv"),
    ("Convolution (NHWC, F32) GEMM #3", "CONV", "conv"),
    ("Convolution (NHWC, QC8) IGEMM #1", "CONV", "conv"),
    ("Convolution (NHWC, F32) DWConv #2", "CONV", "depthwise"),
    ("Deconvolution (NHWC, F32) #1", "CONV", "transposed"),
    ("Fully Connected (NC, F32) GEMM #1", "GEMM", "fully_connected"),
    ("Fully Connected (NC, PF32) GEMM #1", "GEMM", "fully_connected"),
    ("Fully Connected (NC, QS8, QC8W) GEMM #2", "GEMM", "fully_connected"),
    ("Fully Connected (NC, QDU8, F32, QC8W) GEMM #1", "GEMM", "fully_connected"),
    ("Batch Matrix Multiply (NC, F32) GEMM #1", "GEMM", "batch_matmul"),
    ("Transpose (ND, X32) #2", "DATA_MOVEMENT", "layout"),
    ("Copy (NC, X32) #1", "DATA_MOVEMENT", "copy"),
    ("Static Reshape (NC) #1", "DATA_MOVEMENT", "copy"),
    ("Static Slice (ND, X32) #1", "DATA_MOVEMENT", "slice_concat_pad"),
    ("Convert (NC) #1", "DATA_MOVEMENT", "convert"),
    ("Concatenate (ND, X32) #1", "DATA_MOVEMENT", "slice_concat_pad"),
    ("Even Split (ND, X32) #1", "DATA_MOVEMENT", "slice_concat_pad"),
    ("Constant Pad (ND, X32) #1", "DATA_MOVEMENT", "slice_concat_pad"),
    ("Softmax (NC, F32) #1", "OTHER", "softmax"),
    ("Add (ND) #1", "ELEMENTWISE", "binary"),
    ("Multiply (ND) #4", "ELEMENTWISE", "binary"),
    ("Subtract (ND) #1", "ELEMENTWISE", "binary"),
    ("Clamp (NC) #1", "ELEMENTWISE", "unary"),
    ("HardSwish (NC) #1", "ELEMENTWISE", "unary"),
    ("Sigmoid (NC) #1", "ELEMENTWISE", "unary"),
    ("GELU (NC) #1", "ELEMENTWISE", "unary"),
    ("Tanh (NC) #1", "ELEMENTWISE", "unary"),
    ("Invalid Unary Op #1", "ELEMENTWISE", "unary"),
    ("Global Average Pooling (NWC, F32) #1", "OTHER", "pooling"),
    ("Max Pooling (NHWC, F32) #1", "OTHER", "pooling"),
    ("Average Pooling (NHWC, F32) #1", "OTHER", "pooling"),
    ("Mean (ND, F32) #1", "OTHER", "reduction"),
]
REAL_PORTABLE_NAMES = [
    ("native_call_convolution.out", "CONV"), ("native_call_addmm.out", "GEMM"), ("native_call_mm.out", "GEMM"),
    ("native_call_bmm.out", "GEMM"), ("native_call_permute_copy.out", "DATA_MOVEMENT"),
    ("native_call_view_copy.out", "DATA_MOVEMENT"), ("native_call_cat.out", "DATA_MOVEMENT"),
    ("native_call__to_dim_order_copy.out", "DATA_MOVEMENT"), ("native_call_unsqueeze_copy.out", "DATA_MOVEMENT"),
    ("native_call_squeeze_copy.dims_out", "DATA_MOVEMENT"), ("native_call_add.out", "ELEMENTWISE"),
    ("native_call_mul.out", "ELEMENTWISE"), ("native_call_relu.out", "ELEMENTWISE"),
    ("native_call_clamp.out", "ELEMENTWISE"), ("native_call__softmax.out", "OTHER"),
    ("native_call_max_pool2d_with_indices.out", "OTHER"), ("native_call_mean.out", "OTHER"),
]


@pytest.mark.parametrize("name,category,subcategory", REAL_XNNPACK_NAMES)
def test_xnnpack_categories(breakdown: ModuleType, name: str, category: str, subcategory: str) -> None:
    op_type = breakdown.op_type_of(name)
    assert not re.search(r" #\d+$", op_type)
    assert breakdown.classify_op(op_type, "XNNPACK") == (category, subcategory)


@pytest.mark.parametrize("name,category", REAL_PORTABLE_NAMES)
def test_portable_categories(breakdown: ModuleType, name: str, category: str) -> None:
    assert breakdown.classify_op(name, "portable")[0] == category


@pytest.mark.parametrize("op_type,path", [
    ("Convolution (NHWC, PF32) IGEMM", "kleidiai_sme"), ("Fully Connected (NC, PF16) GEMM", "kleidiai_sme"),
    ("Fully Connected (NC, PQS8, QC8W) GEMM", "kleidiai_sme"), ("Fully Connected (NC, QP8, F32, QC4W) GEMM",
                                                                  "kleidiai_qp8"),
    ("Convolution (NHWC, F32) IGEMM", "xnnpack"), ("Fully Connected (NC, QS8, QC8W) GEMM", "xnnpack"),
    ("Transpose (ND, X32)", "xnnpack"), ("Convert (NC)", "xnnpack"),
])
def test_kernel_path_from_op_names(breakdown: ModuleType, op_type: str, path: str) -> None:
    assert breakdown.kernel_path_of(op_type, "XNNPACK") == path
    assert breakdown.kernel_path_of("native_call_convolution.out", "portable") == "portable"
    assert breakdown.on_sme_path("kleidiai_sme", cpu_has_sme=False)
    assert breakdown.on_sme_path("kleidiai_qp8", cpu_has_sme=True)
    assert not breakdown.on_sme_path("kleidiai_qp8", cpu_has_sme=False)


@pytest.mark.parametrize("first,second", [
    ("Convolution (NHWC, F32) IGEMM", "Convolution (NHWC, QC8) IGEMM"),      # fp32 vs int8
    ("Convolution (NHWC, F32) IGEMM", "Convolution (NHWC, PF32) IGEMM"),     # SME2 OFF vs ON
    ("Fully Connected (NC, F32) GEMM", "Fully Connected (NC, QD8, F32, QC8W) GEMM"),
    ("Fully Connected (NC, QP8, F32, QC4W) GEMM", "Fully Connected (NC, QDU8, F32, QC4W) GEMM"),
])
def test_operators_pair_by_operation(breakdown: ModuleType, first: str, second: str) -> None:
    assert breakdown.operation_key(first) == breakdown.operation_key(second)
    assert breakdown.operation_key("Convolution (NHWC, F32) IGEMM") != breakdown.operation_key(
        "Convolution (NHWC, F32) DWConv")


def test_bootstrap_ci_contains_median_and_narrows(timing: ModuleType, analyzed_run: Path) -> None:
    rounds, source = timing.read_rounds(analyzed_run / "xnnpack_t1" / "timing.json")
    assert source == "timing" and len(rounds) == ROUNDS
    stats = timing.experiment_stats(rounds, source)
    assert stats["ci95_low_ms"] <= stats["median_ms"] <= stats["ci95_high_ms"]
    assert timing.experiment_stats(rounds, source) == stats, "fixed seed: the same data gives the same CI"
    assert stats["ci_method"] == "runs (within process)", f"{ROUNDS} rounds are too few to see between processes"
    rng = np.random.default_rng(7)
    population = rng.lognormal(mean=0.0, sigma=0.2, size=4000)
    widths = []
    for n in (20, 200, 2000):
        s = timing.experiment_stats([population[i * n // 5:(i + 1) * n // 5] for i in range(5)], "timing")
        assert s["ci95_low_ms"] <= s["median_ms"] <= s["ci95_high_ms"] and s["ci_method"] == "rounds, then runs"
        widths.append(s["ci95_high_ms"] - s["ci95_low_ms"])
    assert widths[0] > widths[1] > widths[2]
    few = timing.experiment_stats([rounds[0][:5]], source)
    assert few["ci95_low_ms"] is None and any("too few" in w for w in few["warnings"])
    # One 100x outlier among steady runs: the median and its CI do not move (CV would be huge).
    steady = [np.full(8, 1.0) + 0.001 * np.arange(8) for _ in range(6)]
    steady[2][3] = 100.0
    robust = timing.experiment_stats(steady, "timing")
    assert robust["rel_ci_width_pct"] < 1.0 and robust["cv_pct"] > 100
    # Rounds from a machine that changed between processes: the CI between processes is wider than
    # the one within them, and the disagreement is said.
    shifted = [rng.normal(1.0 + 0.05 * k, 0.005, 10) for k in range(6)]  # a machine slowing down
    between = timing.experiment_stats(shifted, "timing")
    within = timing.experiment_stats([np.concatenate(shifted)], "timing")
    assert between["rounds_agree"] is False and any("rounds disagree" in w for w in between["warnings"])
    assert (between["ci95_high_ms"] - between["ci95_low_ms"]) > 2 * (within["ci95_high_ms"] - within["ci95_low_ms"])


def test_speedup_from_interleaved_rounds(timing: ModuleType, analyzed_run: Path, summary: dict[str, Any]) -> None:
    base = json.loads((analyzed_run / "portable_t1" / "timing.json").read_text())
    cand = json.loads((analyzed_run / "xnnpack_t1" / "timing.json").read_text())
    expected = np.median(base["latencies_ms"]) / np.median(cand["latencies_ms"])
    (comparison,) = summary["comparisons"]
    assert comparison["speedup"] == pytest.approx(expected)
    assert comparison["rounds"] == ROUNDS
    assert comparison["ci95_low"] <= comparison["speedup"] <= comparison["ci95_high"]
    assert comparison["speedup"] > 1, "XNNPACK beats portable kernels on a convolution"
    rows = read_csv(analyzed_run / "comparison.csv")
    assert list(rows[0]) == ["pair", "level", "name", "baseline_ms", "candidate_ms", "speedup", "speedup_ci_low",
                             "speedup_ci_high", "baseline_share_pct", "candidate_share_pct", "share_change_pp"]
    e2e = next(r for r in rows if r["level"] == "e2e")
    assert float(e2e["speedup"]) == pytest.approx(expected, rel=1e-5)
    categories = [r for r in rows if r["level"] == "category"]
    assert [r["name"] for r in categories] == ["CONV", "GEMM", "DATA_MOVEMENT", "ELEMENTWISE", "OTHER", "UNATTRIBUTED"]
    op_rows = [r for r in rows if r["level"] == "op_type"]
    # portable vs XNNPACK share no operator: every row is one-sided and has no speedup (not 0).
    assert op_rows and all(r["speedup"] == "" for r in op_rows)
    assert all((r["baseline_ms"] == "") != (r["candidate_ms"] == "") for r in op_rows)
    # Paired rounds: a machine that slows down between rounds slows both sides of a round, so the
    # drift cancels in the ratio and the CI stays narrow.
    rng = np.random.default_rng(3)
    drift = (1.0, 1.6, 2.2, 1.3)
    baseline = [f * rng.lognormal(0.0, 0.02, 15) for f in drift]
    candidate = [f / 2 * rng.lognormal(0.0, 0.02, 15) for f in drift]
    paired = timing.pair_speedup(baseline, candidate)
    assert paired["ci95_low"] <= 2.0 <= paired["ci95_high"]
    assert paired["ci95_high"] - paired["ci95_low"] < 0.2


def test_chrome_trace_is_valid(analyzed_run: Path) -> None:
    trace = json.loads((analyzed_run / "trace.json").read_text())
    events = trace["traceEvents"]
    complete = [e for e in events if e["ph"] == "X"]
    assert all(isinstance(e["ts"], (int, float)) and e["dur"] >= 0 for e in complete)
    processes = {e["args"]["name"]: e["pid"] for e in events if e["ph"] == "M" and e["name"] == "process_name"}
    assert set(processes) == {"portable_t1", "xnnpack_t1"}
    xnn = processes["xnnpack_t1"]
    tracks = [e for e in events if e["ph"] == "M" and e["name"] == "thread_name" and e["pid"] == xnn]
    assert len(tracks) == TRACED_RUNS, "one track per traced run"
    for tid in {t["tid"] for t in tracks}:
        on_track = [e for e in complete if e["pid"] == xnn and e["tid"] == tid]
        (execute,) = [e for e in on_track if e["name"] == "Method::execute"]
        calls = [e for e in on_track if e["name"] == "DELEGATE_CALL"]
        ops = [e for e in on_track if e["args"].get("backend") == "XNNPACK"]
        assert calls and ops
        for op in ops:  # every XNNPACK operator sits inside a delegate call, inside Method::execute
            assert any(c["ts"] <= op["ts"] and op["ts"] + op["dur"] <= c["ts"] + c["dur"] + 1e-6 for c in calls)
            assert execute["ts"] <= op["ts"] <= execute["ts"] + execute["dur"]


def test_report_and_failed_experiment(analyzed_run: Path, summary: dict[str, Any]) -> None:
    report = (analyzed_run / "report.md").read_text()
    assert summary["experiments"]["crashed_t1"]["status"] == "failed"
    assert "runner exited with signal 11" in report
    assert "SME2 not available on this CPU" in report
    for heading in ("## Setup", "## End-to-end latency", "## Speedup", "## Where the time goes", "## Top operators",
                    "## SME path", "## Kernels", "## How each number was measured"):
        assert heading in report
    assert "fell from" in report or "rose from" in report
    for chart in ("e2e_latency.png", "categories_stacked.png", "top_ops_xnnpack_t1.png",
                  "compare_portable_t1_vs_xnnpack_t1.png"):
        png = analyzed_run / "charts" / chart
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"charts/{chart}" in report


def test_csv_columns_are_documented(analyzed_run: Path, venv_python: str, repo_root: Path) -> None:
    help_text = analyze(venv_python, repo_root, "--help").stdout + subprocess.run(
        [venv_python, str(repo_root / "scripts/trace_breakdown.py"), "--help"], capture_output=True, text=True).stdout
    for csv_path in [*analyzed_run.glob("*/*.csv"), analyzed_run / "comparison.csv"]:
        header = csv_path.read_text().splitlines()[0].split(",")
        for column in header:
            assert column in help_text, f"{csv_path.name} column {column!r} missing from --help"


def test_bad_etdump_gives_one_clear_line(tmp_path: Path, analyzed_run: Path, toy_pte: Path, venv_python: str,
                                         repo_root: Path) -> None:
    real = (analyzed_run / "xnnpack_t1" / "trace.etdump").read_bytes()
    cases = {"empty.etdump": b"", "truncated.etdump": real[: len(real) // 2], "model.etdump": toy_pte.read_bytes(),
             "noise.etdump": bytes(range(256)) * 8}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        done = analyze(venv_python, repo_root, "--etdump", str(tmp_path / name))
        assert done.returncode == 1, name
        output = (done.stdout + done.stderr).strip()
        assert "Traceback" not in output
        assert len(output.splitlines()) == 1 and output.startswith("error:"), output
        assert not list(tmp_path.glob("*_analysis*")), "no output folder for a bad input"


def test_comparison_rows_do_not_depend_on_hash_order(tmp_path: Path, analyzed_run: Path, venv_python: str,
                                                     repo_root: Path) -> None:
    """The same two folders give the same comparison rows, byte for byte, whatever Python's hash seed."""
    outputs = []
    for seed in ("1", "2", "3"):
        out = tmp_path / f"rows_{seed}.csv"
        subprocess.run([venv_python, str(repo_root / "scripts/trace_breakdown.py"), "--compare",
                        str(analyzed_run / "portable_t1"), str(analyzed_run / "xnnpack_t1"), "--out", str(out)],
                       check=True, capture_output=True, env={**os.environ, "PYTHONHASHSEED": seed})
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1] == outputs[2]


def test_etdump_events_stage_alone(tmp_path: Path, analyzed_run: Path, venv_python: str, repo_root: Path) -> None:
    """etdump_events.py as a process: every traced run's events, Method::execute equal to the
    Inspector's; a flipped offset is one error line, exit 1, and no events.csv."""
    trace = analyzed_run / "xnnpack_t1" / "trace.etdump"
    events = tmp_path / "events.csv"
    done = subprocess.run([venv_python, str(repo_root / "scripts/etdump_events.py"), "--etdump", str(trace),
                           "--out", str(events)], capture_output=True, text=True)
    assert done.returncode == 0 and not done.stdout + done.stderr, done.stderr
    rows = read_csv(events)
    execute = [float(r["dur_us"]) / 1000.0 for r in rows if r["kind"] == "execute"]
    assert execute == pytest.approx(inspector_events(trace)["Method::execute"], rel=1e-9)
    assert {int(r["run"]) for r in rows} == set(range(TRACED_RUNS))
    assert all(r["delegate_call"] == "1" for r in rows if r["kind"] in ("op", "delegate_call"))
    events.unlink()
    data = bytearray(trace.read_bytes())
    data[7] ^= 0x80  # the high byte of the root table's offset (after the 4-byte size prefix)
    (tmp_path / "flipped.etdump").write_bytes(bytes(data))
    done = subprocess.run([venv_python, str(repo_root / "scripts/etdump_events.py"), "--etdump",
                           str(tmp_path / "flipped.etdump"), "--out", str(events)], capture_output=True, text=True)
    lines = (done.stdout + done.stderr).strip().splitlines()
    assert done.returncode == 1 and len(lines) == 1 and "the ETDump is corrupt" in lines[0], lines
    assert not events.exists() and not list(tmp_path.glob(".events.csv.partial*"))


def test_etdump_mode_never_overwrites(tmp_path: Path, analyzer: ModuleType, analyzed_run: Path,
                                      venv_python: str, repo_root: Path) -> None:
    etdump = tmp_path / "trace.etdump"
    shutil.copy(analyzed_run / "xnnpack_t1" / "trace.etdump", etdump)
    (tmp_path / "trace_analysis").mkdir()
    (tmp_path / "trace_analysis" / "earlier.md").write_text("an earlier analysis")
    done = analyze(venv_python, repo_root, "--etdump", str(etdump), "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["experiments"]["trace"]["traced_runs"] == TRACED_RUNS
    assert summary["experiments"]["trace"]["e2e_source"] == "trace"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["trace.etdump", "trace_analysis", "trace_analysis_2"]
    assert [p.name for p in (tmp_path / "trace_analysis").iterdir()] == ["earlier.md"]
    for name in ("ops.csv", "op_stats.csv", "categories.csv", "report.md", "trace.json", "analysis_summary.json"):
        assert (tmp_path / "trace_analysis_2" / name).exists()
    assert analyzer.fresh_outdir(etdump, None).name == "trace_analysis_3"
    report = (tmp_path / "trace_analysis_2" / "report.md").read_text()
    assert "SME2 not available" not in report, "no CPU facts: nothing may be claimed about SME2"
    assert "unknown: no host or device facts" in report and "Traced runs (Method::execute" in report
    taken = analyze(venv_python, repo_root, "--etdump", str(etdump), "--outdir", str(tmp_path / "trace_analysis"))
    assert taken.returncode == 1 and "already holds files" in taken.stdout + taken.stderr


def test_rerun_with_labels_emulated_and_sme_warning(tmp_path: Path, analyzed_run: Path, venv_python: str,
                                                    repo_root: Path) -> None:
    """A re-run regenerates the analysis only; an emulated CPU and an 'SME2 ON' experiment that ran no
    packed-path op are both called out."""
    run_dir = tmp_path / "run"
    shutil.copytree(analyzed_run, run_dir)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    manifest["host"].update(sme2=True, emulated=True)
    for exp in manifest["experiments"]:
        if exp["name"] == "xnnpack":
            exp.update(sme2_label="on", sme2_effective=True)
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    raw = [run_dir / "manifest.json"] + [p for p in run_dir.glob("*/*")
                                         if p.name in ("timing.json", "trace.etdump", "runner.log")]
    before = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in raw}
    done = analyze(venv_python, repo_root, "--run-dir", str(run_dir), "--json")
    assert done.returncode == 0, done.stderr
    assert {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in raw} == before, "measurements are never written"
    assert (run_dir / "xnnpack_t1" / "ops.csv").read_text() == (analyzed_run / "xnnpack_t1" / "ops.csv").read_text()
    summary = json.loads(done.stdout)
    assert summary["emulated"] is True and summary["comparisons"][0]["emulated"] is True
    assert any("no operator ran on the KleidiAI packed path" in w for w in summary["warnings"])
    report = (run_dir / "report.md").read_text()
    assert "emulated: timings not meaningful" in report
    assert "no operator ran on the KleidiAI packed path" in report
    assert "emulated: timings not meaningful" in done.stderr


def test_etrecord_gives_the_same_numbers(tmp_path: Path, breakdown: ModuleType, prebuilt_runner: Path,
                                         venv_python: str) -> None:
    """With an ETRecord the backend name comes from it; every operator row is the same as without."""
    export = (
        "import sys, torch\n"
        "from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner\n"
        "from executorch.exir import to_edge_transform_and_lower\n"
        "model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Flatten(),\n"
        "                            torch.nn.Linear(8 * 14 * 14, 4)).eval()\n"
        "program = torch.export.export(model, (torch.randn(1, 3, 16, 16),))\n"
        "edge = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()], generate_etrecord=True)\n"
        "et = edge.to_executorch()\n"
        "open(sys.argv[1] + '.pte', 'wb').write(et.buffer)\n"
        "et.get_etrecord().save(sys.argv[1] + '.etrecord')\n")
    subprocess.run([venv_python, "-c", export, str(tmp_path / "m")], check=True, capture_output=True)
    run_runner(prebuilt_runner, tmp_path / "m.pte", 5, ["--etdump_path", str(tmp_path / "m.etdump")])
    with_record = breakdown.load_trace(tmp_path / "m.etdump", tmp_path / "m.etrecord")
    without = breakdown.load_trace(tmp_path / "m.etdump", None)
    ops = breakdown.ops_table(with_record)
    assert ops.equals(breakdown.ops_table(without)) and len(without.runs) == 5
    assert set(ops["backend"]) == {"XNNPACK"}
    assert set(ops["category"]) >= {"CONV", "GEMM"}
    # op_instances.csv maps an instance back to its ETRecord graph node when there is one.
    nodes = {e.name: e.node for e in with_record.runs[0] if e.kind == "op"}
    conv = next(name for name in nodes if name.startswith("Convolution"))
    assert "convolution" in nodes[conv] and not any(e.node for e in without.runs[0])  # the delegate's nodes


def test_corrupt_trace_in_run_dir_is_an_error_not_a_crash(tmp_path: Path, breakdown: ModuleType,
                                                         analyzed_run: Path) -> None:
    """A truncated trace is reported in one line; the earlier breakdown is renamed *.stale, never left current."""
    folder = tmp_path / "xnnpack_t1"
    shutil.copytree(analyzed_run / "xnnpack_t1", folder)
    real = (folder / "trace.etdump").read_bytes()
    (folder / "trace.etdump").write_bytes(real[:100])
    result = breakdown.breakdown(folder / "trace.etdump", folder, None, False, "xnnpack_t1")
    assert "truncated" in result["error"] and "\n" not in result["error"]
    assert not (folder / "ops.csv").exists() and not (folder / "categories.csv").exists()
    assert (folder / "ops.csv.stale").is_file() and "ops.csv" in result["retired"]
    assert json.loads((folder / "breakdown.json").read_text())["error"] == result["error"]


def test_packed_path_check_covers_sme_and_sme2_cpus(analyzer: ModuleType, analyzed_run: Path) -> None:
    """XNNPACK takes the packed path on SME CPUs too: an ON run with F32 op names is flagged on either."""
    import pandas as pd
    exp = analyzer.Experiment(name="xnnpack_t1", folder=analyzed_run / "xnnpack_t1",
                              meta={"name": "xnnpack", "sme2_label": "on"})
    exp.op_stats = pd.read_csv(exp.folder / "op_stats.csv", keep_default_na=False)
    exp.op_stats["sme_path"] = exp.op_stats["sme_path"].astype(str) == "True"
    exp.categories = pd.read_csv(exp.folder / "categories.csv")
    assert exp.sme_path_ms == 0, "this x86 trace has F32 op names only"
    (on_sme,) = analyzer.packed_path_warnings(exp, {"sme": True, "sme2": False})
    assert "CPU with SME," in on_sme and "no operator ran on the KleidiAI packed path" in on_sme
    (on_sme2,) = analyzer.packed_path_warnings(exp, {"sme": True, "sme2": True})
    assert "CPU with SME2," in on_sme2
    assert analyzer.packed_path_warnings(exp, {"sme": False, "sme2": False}) == []
    exp.meta["sme2_label"] = "off"
    assert analyzer.packed_path_warnings(exp, {"sme": True, "sme2": True}) == []


TWO_DELEGATES_EXPORT = """
import sys, torch
from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
from executorch.exir import to_edge_transform_and_lower

class TwoDelegates(torch.nn.Module):
    # XNNPACK has no cumsum: the graph splits into two delegate calls around two portable ops.
    def __init__(self):
        super().__init__()
        self.first = torch.nn.Sequential(*[torch.nn.Conv2d(4, 4, 3, padding=1) for _ in range(6)])
        self.second = torch.nn.Sequential(*[torch.nn.Conv2d(4, 4, 3, padding=1) for _ in range(5)])

    def forward(self, x):
        return self.second(torch.cumsum(torch.cumsum(self.first(x), dim=3), dim=2))

torch.manual_seed(0)
program = torch.export.export(TwoDelegates().eval(), (torch.randn(1, 4, 8, 8),))
open(sys.argv[1], "wb").write(to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()])
                              .to_executorch().buffer)
"""


def test_instances_per_run_with_two_delegate_calls(tmp_path: Path, prebuilt_runner: Path, venv_python: str,
                                                   repo_root: Path) -> None:
    """11 convolutions in two XNNPACK delegate calls (numbered #1.. afresh in each) and two portable
    cumsums between them: every instance is counted and has its own id."""
    subprocess.run([venv_python, "-c", TWO_DELEGATES_EXPORT, str(tmp_path / "two.pte")], check=True,
                   capture_output=True)
    run_runner(prebuilt_runner, tmp_path / "two.pte", 4, ["--etdump_path", str(tmp_path / "two.etdump")])
    done = subprocess.run([venv_python, str(repo_root / "scripts/trace_breakdown.py"), "--etdump",
                           str(tmp_path / "two.etdump"), "--outdir", str(tmp_path / "out")], capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr
    per_run = {r["op_type"]: int(r["instances_per_run"]) for r in read_csv(tmp_path / "out" / "op_stats.csv")}
    assert per_run["Convolution (NHWC, F32) IGEMM"] == 11 and per_run["native_call_cumsum.out"] == 2
    # The Inspector's own events of one run, counted per op type, are the real counts.
    raw = inspector_events(tmp_path / "two.etdump")
    real: dict[str, int] = {}
    for name, values in raw.items():
        if name not in FRAMEWORK_EVENTS:
            op_type = re.sub(r" #\d+$", "", name)
            real[op_type] = real.get(op_type, 0) + len(values) // 4
    assert {k: v for k, v in per_run.items() if k != "(framework and delegate overhead)"} == real
    instances = read_csv(tmp_path / "out" / "op_instances.csv")
    assert len({r["instance_id"] for r in instances}) == len(instances) == sum(real.values())
    calls = [(int(r["delegate_call"]), r["name"]) for r in instances if r["name"].startswith("Convolution")]
    assert [c for c, _ in calls] == [1] * 6 + [2] * 5
    assert calls[0][1] == calls[6][1] == "Convolution (NHWC, F32) IGEMM #1", "XNNPACK numbers afresh per call"
    assert [int(r["position"]) for r in instances] == list(range(1, len(instances) + 1))
    cumsums = [r for r in instances if r["backend"] == "portable"]
    assert [int(r["delegate_call"]) for r in cumsums] == [0, 0]
    assert all(int(r["position"]) for r in cumsums)
