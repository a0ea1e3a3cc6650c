#!/usr/bin/env python3
"""Measure the profiling runner itself: build time, harness overhead, tracing overhead.

Prints three figures the docs quote:

1. Cold build time of the prebuilt runner (fresh build tree).
2. Harness overhead: for a model whose execute takes about 1 ms, the runner's own
   per-iteration latency vs the ETDump ``Method::execute`` duration of the same
   iteration (same traced run, paired), as a median difference in microseconds and
   as a percentage.
3. Tracing overhead: median of an untraced timing run vs median of a traced run.

Example:
    .venv/bin/python benchmarks/bench_runner.py --runs 300
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parent.parent

MLP_EXPORT = """
import sys, torch
from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
from executorch.exir import to_edge_transform_and_lower
width, layers = int(sys.argv[2]), int(sys.argv[3])
blocks = []
for _ in range(layers):
    blocks += [torch.nn.Linear(width, width), torch.nn.ReLU()]
model = torch.nn.Sequential(*blocks).eval()
program = torch.export.export(model, (torch.randn(8, width),))
lowered = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()]).to_executorch()
open(sys.argv[1], "wb").write(lowered.buffer)
"""


def cold_build_seconds(workdir: Path) -> float:
    started = time.monotonic()
    subprocess.run([sys.executable, str(REPO / "scripts/build_runners.py"), "--force",
                    "--runners-dir", str(workdir / "runners"), "--build-dir", str(workdir / "build")],
                   check=True, capture_output=True)
    return time.monotonic() - started


def run_runner(runner: Path, model: Path, runs: int, warmup: int, workdir: Path, trace: bool) -> dict:
    timing = workdir / ("trace_timing.json" if trace else "timing.json")
    cmd = [str(runner), "--model_path", str(model), "--num_executions", str(runs), "--warmup", str(warmup),
           "--cpu_threads", "1", "--timing_json", str(timing)]
    if trace:
        cmd += ["--etdump_path", str(workdir / "trace.etdump")]
    subprocess.run(cmd, check=True, capture_output=True)
    return json.loads(timing.read_text())


def method_execute_ms(etdump: Path) -> list[float]:
    from executorch.devtools import Inspector

    inspector = Inspector(etdump_path=str(etdump))
    for block in inspector.event_blocks:
        for event in block.events:
            if event.name == "Method::execute":
                return list(event.perf_data.raw)
    raise SystemExit(f"no Method::execute event in {etdump}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=300, help="measured executions per run (default: 300)")
    parser.add_argument("--width", type=int, default=1024, help="MLP width; pick one that executes in ~1 ms (default: 1024)")
    parser.add_argument("--layers", type=int, default=4, help="MLP depth (default: 4)")
    args = parser.parse_args()
    console = Console()

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        build_s = cold_build_seconds(workdir)
        runner = workdir / "runners/prebuilt/profiling_runner"
        model = workdir / "mlp.pte"
        subprocess.run([sys.executable, "-c", MLP_EXPORT, str(model), str(args.width), str(args.layers)],
                       check=True, capture_output=True)

        timing = run_runner(runner, model, args.runs, 20, workdir, trace=False)
        traced = run_runner(runner, model, args.runs, 20, workdir, trace=True)
        execute_ms = method_execute_ms(workdir / "trace.etdump")

    runner_ms = traced["latencies_ms"]
    extra_us = [1000 * (r - e) for r, e in zip(runner_ms, execute_ms)]
    timing_median = statistics.median(timing["latencies_ms"])
    traced_median = statistics.median(runner_ms)
    execute_median = statistics.median(execute_ms)

    table = Table(title=f"Profiling runner on {platform.machine()} {platform.system()}, "
                        f"{args.runs} runs, 1 thread, MLP {args.layers}x{args.width}")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_column("target", justify="right")
    table.add_row("prebuilt runner cold build", f"{build_s:.1f} s", "< 60 s")
    table.add_row("timing-mode median (no tracer)", f"{timing_median:.4f} ms", "~1 ms")
    table.add_row("trace-mode runner median", f"{traced_median:.4f} ms", "")
    table.add_row("ETDump Method::execute median", f"{execute_median:.4f} ms", "")
    table.add_row("runner extra cost per iteration (median, paired)",
                  f"{statistics.median(extra_us):.2f} us", "< 20 us")
    table.add_row("runner vs Method::execute", f"{100 * (traced_median / execute_median - 1):+.2f} %", "within 2 %")
    table.add_row("tracing overhead (trace vs timing median)",
                  f"{100 * (traced_median / timing_median - 1):+.2f} %", "")
    console.print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
