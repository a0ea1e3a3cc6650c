#!/usr/bin/env python3
"""Measure the pipelines themselves: quick-test wall time and the cost of each runner invocation.

Prints the figures the docs quote:

1. Wall time of scripts/run_quick_test.py: a first run (exports toy_cnn) and a second run
   (reuses the exports), each in a fresh workdir-run. The target is under 2 minutes.
2. Pipeline cost per runner invocation: the mean wall time of one invocation as the pipeline
   logs it (execution_log) vs the runner's own measured time inside it, on the host
   (mac_pipeline.py) and through adb (android_pipeline.py with the stand-in adb, which adds
   what an adb round trip costs on this machine, not what a phone's USB link costs).
3. Fixed cost of a pipeline run: wall time minus the time spent in runner invocations
   (host facts from validate_setup.py, manifest writes, summary).

Example:
    .venv/bin/python benchmarks/bench_pipeline.py --invocations 10
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parent.parent
SCRIPTS = REPO / "scripts"
ADB_STANDIN = REPO / "test-cases/adb_standin/adb"


def timed(command: list[str], env: dict | None = None) -> float:
    started = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        sys.exit(f"failed: {' '.join(command)}\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
    return time.monotonic() - started


def quick_test_seconds(workdir: Path) -> tuple[float, float]:
    command = [sys.executable, str(SCRIPTS / "run_quick_test.py"), "--workdir", str(workdir)]
    return timed(command), timed(command)


def standin_device(root: Path) -> None:
    device = root / "bench-phone" / ".standin"
    device.mkdir(parents=True)
    (device / "getprop.txt").write_text("[ro.product.model]: [bench]\n[ro.product.cpu.abi]: [arm64-v8a]\n")


def invocation_costs(workdir: Path, model: Path, invocations: int, android: bool) -> dict:
    """Mean pipeline seconds per invocation vs the runner's own time, and the run's fixed cost."""
    config = workdir / ("android.json" if android else "host.json")
    config.write_text(json.dumps({"model": str(model), "output_root": str(workdir / config.stem), "experiments": [
        {"name": "toy", "runner": "prebuilt", "mode": "timing", "runs": 1, "warmup": 0, "rounds": invocations}]}))
    script = "android_pipeline.py" if android else "mac_pipeline.py"
    command = [sys.executable, str(SCRIPTS / script), "--config", str(config), "--skip-analysis"]
    env = dict(os.environ)
    if android:
        standin_device(workdir / "devices")
        command += ["--adb", str(ADB_STANDIN)]
        env["ADB_STANDIN_ROOT"] = str(workdir / "devices")
    wall = timed(command, env)
    run_dir = workdir / config.stem
    log = json.loads((run_dir / "manifest.json").read_text())["execution_log"]
    timing = json.loads((run_dir / "toy_t1/timing.json").read_text())
    per_invocation = statistics.mean(e["seconds"] for e in log)
    runner_ms = statistics.mean(r["load_ms"]["program"] + r["load_ms"]["method"] + sum(r["latencies_ms"])
                                for r in timing["rounds"])
    return {"wall_s": wall, "per_invocation_s": per_invocation, "runner_s": runner_ms / 1000,
            "fixed_s": wall - sum(e["seconds"] for e in log)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--invocations", type=int, default=10, help="runner invocations per pipeline run")
    parser.add_argument("--skip-quick-test", action="store_true", help="measure only the invocation costs")
    args = parser.parse_args()
    console = Console()
    with tempfile.TemporaryDirectory(prefix="bench_pipeline_") as scratch:
        work = Path(scratch)
        if not args.skip_quick_test:
            with console.status("running run_quick_test.py twice..."):
                first, second = quick_test_seconds(work / "quick")
            console.print(f"run_quick_test.py: {first:.1f} s with exports, {second:.1f} s reusing them "
                          "(target < 120 s)")
            model = work / "quick/models/toy_cnn_xnnpack_fp32.pte"
        else:
            model = work / "toy.pte"
            exporter = [sys.executable, str(SCRIPTS / "export_model.py"), "--model", "toy_cnn", "--outdir", str(work)]
            with console.status("exporting toy_cnn..."):
                timed(exporter)
            shutil.move(work / "toy_cnn_xnnpack_fp32.pte", model)
        table = Table(title=f"Pipeline cost per runner invocation ({args.invocations} invocations, toy_cnn, 1 run each)")
        for column in ("pipeline", "per invocation ms", "runner's own ms", "overhead ms", "fixed cost s", "wall s"):
            table.add_column(column, justify="right")
        for android in (False, True):
            with console.status("android (stand-in adb)" if android else "host"):
                cost = invocation_costs(work, model, args.invocations, android)
            table.add_row("android_pipeline.py (stand-in adb)" if android else "mac_pipeline.py",
                          f"{1000 * cost['per_invocation_s']:.1f}", f"{1000 * cost['runner_s']:.1f}",
                          f"{1000 * (cost['per_invocation_s'] - cost['runner_s']):.1f}", f"{cost['fixed_s']:.1f}",
                          f"{cost['wall_s']:.1f}")
        console.print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
