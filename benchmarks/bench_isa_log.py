#!/usr/bin/env python3
"""Measure what the instruction-level evidence costs on an emulated trace run.

The emulated platform's trace run adds QEMU's translated-code log (`-d in_asm -D`) and the
runner's memory map (`--proc_maps_path`). This runs the same trace invocation of the arm64
runner under `qemu-aarch64 -cpu max` with and without them, alternating, and prints:

1. the log's size (MB) and line count (the pipeline's trace run: one warm-up, one measured run),
2. the added wall-clock seconds per trace run (median of the paired differences, and the
   medians of both sides),
3. how long scripts/isa_evidence.py takes to decode that log.

Wall-clock seconds of a whole process under emulation, on a shared machine: read the medians,
not single runs. Emulated timings say nothing about the model's speed on real hardware.

Needs scripts/setup_emulator.sh and the cross-built runner (build_runners.py --platform linux-aarch64).

Example:
    .venv/bin/python benchmarks/bench_isa_log.py --model models/toy_cnn_xnnpack_fp32.pte --pairs 5
"""

from __future__ import annotations

import argparse
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
QEMU = REPO / "build/emulator/bin/qemu-aarch64"
RUNNER = REPO / "runners/prebuilt-linux-aarch64/profiling_runner"
SYSROOT = "/usr/aarch64-linux-gnu"


def trace_run(model: Path, folder: Path, with_log: bool) -> float:
    """Seconds of one emulated trace invocation, as the pipeline runs it."""
    folder.mkdir(parents=True, exist_ok=True)
    command = [str(QEMU), "-L", SYSROOT, "-cpu", "max"]
    extra = []
    if with_log:
        command += ["-d", "in_asm", "-D", str(folder / "qemu_in_asm.log")]
        extra = ["--proc_maps_path", str(folder / "proc_maps.txt")]
    command += [str(RUNNER), "--model_path", str(model), "--num_executions", "1", "--warmup", "1",
                "--cpu_threads", "1", "--etdump_path", str(folder / "trace.etdump"),
                "--timing_json", str(folder / "trace_timing.json"), *extra]
    started = time.monotonic()
    subprocess.run(command, check=True, capture_output=True)
    return time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=REPO / "models/toy_cnn_xnnpack_fp32.pte", help="the .pte to trace")
    parser.add_argument("--pairs", type=int, default=5, help="alternating with/without pairs (default 5)")
    args = parser.parse_args()
    console = Console()
    for needed, fix in ((QEMU, "./scripts/setup_emulator.sh"), (RUNNER, "python scripts/build_runners.py --platform "
                        "linux-aarch64"), (args.model, "python scripts/export_model.py --model toy_cnn")):
        if not needed.is_file():
            console.print(f"[bold red]error:[/bold red] {needed} is missing; run {fix}")
            return 2
    work = Path(tempfile.mkdtemp(prefix="bench_isa_log_"))
    try:
        trace_run(args.model, work / "warm", False)  # page cache, dynamic loader: not part of either side
        plain, logged = [], []
        for index in range(args.pairs):
            plain.append(trace_run(args.model, work / f"plain{index}", False))
            logged.append(trace_run(args.model, work / f"logged{index}", True))
        log = work / "logged0/qemu_in_asm.log"
        lines = sum(1 for _ in log.open(errors="replace"))
        started = time.monotonic()
        subprocess.run([sys.executable, str(REPO / "scripts/isa_evidence.py"), "--experiment-dir",
                        str(work / "logged0"), "--quiet"], check=True, capture_output=True)
        decode_seconds = time.monotonic() - started
        table = Table(title=f"Translated-code log on an emulated trace run of {args.model.name} "
                            "(emulated: timings not meaningful)")
        table.add_column("figure")
        table.add_column("value", justify="right")
        table.add_row("log size", f"{log.stat().st_size / 1e6:.2f} MB ({lines:,} lines)")
        table.add_row("proc_maps.txt", f"{(work / 'logged0/proc_maps.txt').stat().st_size / 1e3:.1f} kB")
        table.add_row(f"trace run without log (median of {args.pairs})", f"{statistics.median(plain):.2f} s")
        table.add_row(f"trace run with log (median of {args.pairs})", f"{statistics.median(logged):.2f} s")
        table.add_row("added per trace run (median of paired differences)",
                      f"{statistics.median(b - a for a, b in zip(plain, logged)):+.2f} s")
        table.add_row("isa_evidence.py on that log", f"{decode_seconds:.2f} s")
        console.print(table)
        console.print(f"machine load (1/5/15 min): {' '.join(f'{v:.2f}' for v in os.getloadavg())}, "
                      f"{os.cpu_count()} cores")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
