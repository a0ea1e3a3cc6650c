#!/usr/bin/env python3
"""How long analyze_results.py takes on a big ETDump, next to the ExecuTorch Inspector alone.

Exports a model with well over 100 operators (a stack of inverted-residual blocks, lowered to
XNNPACK), traces 200 runs of it with the kit's runner, then times:
  1. the Inspector parsing that ETDump (in this process, after its import),
  2. the Inspector including its import: what reading the trace would cost with it (the kit's
     etdump_events.py reads the ETDump's FlatBuffer directly instead),
  3. `analyze_results.py --etdump` end to end (a fresh process: imports, its stage scripts
     trace_breakdown.py with etdump_events.py, timing_stats.py, plot_analysis.py and
     write_report.py, CSVs, charts, trace, report), wall clock and the CPU seconds of the whole
     process tree (the figure to read on a shared machine).
Target: the full analysis under 10 s on this machine.

Example:
    python benchmarks/bench_analysis.py --runs 200 --blocks 24
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

REPO_ROOT = Path(__file__).resolve().parent.parent
RUNNER = REPO_ROOT / "runners/prebuilt/profiling_runner"
TARGET_SECONDS = 10.0

EXPORT = """
import sys, torch
from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
from executorch.exir import to_edge_transform_and_lower

class Block(torch.nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.expand = torch.nn.Conv2d(channels, channels * 2, 1)
        self.depthwise = torch.nn.Conv2d(channels * 2, channels * 2, 3, padding=1, groups=channels * 2)
        self.project = torch.nn.Conv2d(channels * 2, channels, 1)

    def forward(self, x):
        y = torch.nn.functional.hardswish(self.expand(x))
        y = torch.relu(self.depthwise(y))
        return x + self.project(y) * 0.5

class Net(torch.nn.Module):
    def __init__(self, blocks):
        super().__init__()
        self.stem = torch.nn.Conv2d(3, 16, 3, padding=1)
        self.blocks = torch.nn.Sequential(*[Block(16) for _ in range(blocks)])
        self.head = torch.nn.Linear(16, 10)

    def forward(self, x):
        return torch.softmax(self.head(self.blocks(self.stem(x)).mean(dim=(2, 3))), dim=-1)

torch.manual_seed(0)
program = torch.export.export(Net(int(sys.argv[2])).eval(), (torch.randn(1, 3, 16, 16),))
lowered = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()]).to_executorch()
open(sys.argv[1], "wb").write(lowered.buffer)
"""

INSPECT = """
import sys, time, warnings
warnings.simplefilter("ignore")
start = time.perf_counter()
from executorch.devtools import Inspector
imported = time.perf_counter()
inspector = Inspector(etdump_path=sys.argv[1])
parsed = time.perf_counter()
events = sum(len(e.perf_data.raw) for b in inspector.event_blocks for e in b.events if e.perf_data)
print(imported - start, parsed - imported, events)
"""


def ensure_runner(console: Console) -> None:
    if not RUNNER.exists():
        console.print("Building the prebuilt runner (scripts/build_runners.py)...")
        subprocess.run([sys.executable, str(REPO_ROOT / "scripts/build_runners.py")], check=True)


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(command: list[str]) -> tuple[float, float, subprocess.CompletedProcess]:
    """Wall seconds, CPU seconds of the process and its children, and the result."""
    start, cpu = time.perf_counter(), children_cpu_s()
    done = subprocess.run(command, capture_output=True, text=True)
    return time.perf_counter() - start, children_cpu_s() - cpu, done


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=200, help="traced runs in the ETDump (default 200)")
    parser.add_argument("--blocks", type=int, default=24, help="inverted-residual blocks (5+ ops each, default 24)")
    args = parser.parse_args()
    console = Console()
    ensure_runner(console)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model, etdump = work / "bench_model.pte", work / "bench.etdump"
        with console.status("Exporting the benchmark model..."):
            subprocess.run([sys.executable, "-c", EXPORT, str(model), str(args.blocks)], check=True,
                           capture_output=True)
        with console.status(f"Tracing {args.runs} runs..."):
            subprocess.run([str(RUNNER), "--model_path", str(model), "--num_executions", str(args.runs),
                            "--warmup", "2", "--cpu_threads", "1", "--etdump_path", str(etdump)],
                           check=True, capture_output=True)
        with console.status("Timing the Inspector alone..."):
            inspect = subprocess.run([sys.executable, "-c", INSPECT, str(etdump)], check=True, capture_output=True,
                                     text=True)
            import_s, parse_s, events = inspect.stdout.split()
        with console.status("Timing analyze_results.py end to end..."):
            analysis_s, analysis_cpu_s, done = timed([sys.executable, str(REPO_ROOT / "scripts/analyze_results.py"), "--etdump",
                                      str(etdump), "--outdir", str(work / "analysis")])
        if done.returncode != 0:
            console.print(f"[red]analyze_results.py failed:[/red] {done.stdout}{done.stderr}")
            return 1
        ops_rows = sum(1 for _ in (work / "analysis" / "ops.csv").open()) - 1
        op_events_per_run = ops_rows // args.runs
        table = Table(title=f"Analysis of {etdump.stat().st_size / 1e6:.1f} MB ETDump: {args.runs} runs x "
                            f"{op_events_per_run} operator events ({int(events)} events in all)")
        table.add_column("step")
        table.add_column("seconds", justify="right")
        table.add_row("for reference, ExecuTorch Inspector: parse the ETDump (after import)", f"{float(parse_s):.2f}")
        table.add_row("for reference, ExecuTorch Inspector: import executorch.devtools", f"{float(import_s):.2f}")
        table.add_row("for reference, ExecuTorch Inspector: import + parse", f"{float(import_s) + float(parse_s):.2f}")
        table.add_row("analyze_results.py --etdump, end to end (wall)", f"{analysis_s:.2f}")
        table.add_row("analyze_results.py --etdump, end to end (CPU, all processes)", f"{analysis_cpu_s:.2f}")
        console.print(table)
        verdict = "[green]within[/green]" if analysis_s < TARGET_SECONDS else "[red]over[/red]"
        console.print(f"Target: full analysis under {TARGET_SECONDS:.0f} s: {verdict} "
                      f"({op_events_per_run} operators per run; the target asks for >= 100).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
