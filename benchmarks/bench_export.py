#!/usr/bin/env python3
"""Measure how long scripts/export_model.py takes for each built-in model and dtype.

Runs the export script as a learner does (one fresh process per export) and prints a table:
the script's own export time (torch.export + int8 calibration + lowering + serialization, as
recorded in its JSON), the wall time of the whole command (Python start, imports, model
construction, export, .pte check), the .pte size, the delegated share, and whether the export
met the target of 60 s. The machine (CPU, cores, load average) is printed with it, because
export time depends on how busy the cores are.

Example:
    .venv/bin/python benchmarks/bench_export.py
    .venv/bin/python benchmarks/bench_export.py --models toy_cnn mlp --dtypes int8
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

REPO = Path(__file__).resolve().parent.parent
EXPORT_SCRIPT = REPO / "scripts/export_model.py"
MODELS = ("toy_cnn", "mobilenet_v3_small", "vit_tiny", "mlp")
DTYPES = ("fp32", "fp16", "int8")
TARGET_SECONDS = 60.0


def cpu_name() -> str:
    if platform.system() == "Darwin":
        result = subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True)
        return result.stdout.strip() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.lower().startswith(("model name", "hardware")):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def machine_table() -> Table:
    table = Table(title="Machine", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("OS", f"{platform.system()} {platform.release()} ({platform.machine()})")
    table.add_row("CPU", cpu_name())
    table.add_row("cores", str(os.cpu_count()))
    if hasattr(os, "getloadavg"):
        table.add_row("load average (1/5/15 min)", " / ".join(f"{x:.2f}" for x in os.getloadavg()))
    table.add_row("Python", platform.python_version())
    return table


def export_once(model: str, dtype: str, backend: str, outdir: Path, verify: bool) -> dict:
    command = [sys.executable, str(EXPORT_SCRIPT), "--model", model, "--dtype", dtype,
               "--backend", backend, "--outdir", str(outdir), "--json", "--force"]
    if not verify:
        command.append("--no-verify")
    started = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True)
    wall = time.monotonic() - started
    if result.returncode != 0:
        message = (result.stderr.strip().splitlines() or ["no output"])[-1]
        return {"model": model, "dtype": dtype, "error": message, "wall_seconds": wall}
    return {"model": model, "dtype": dtype, "wall_seconds": wall, "metadata": json.loads(result.stdout)}


def results_table(rows: list[dict], backend: str) -> Table:
    table = Table(title=f"export_model.py, backend {backend} (target < {TARGET_SECONDS:.0f} s per export)")
    for column in ("model", "dtype", "export s", "stages s", "command wall s", ".pte MB", "delegated", "check", "target"):
        table.add_column(column, justify="left" if column in ("model", "dtype", "stages s", "check") else "right")
    for row in rows:
        if "error" in row:
            table.add_row(row["model"], row["dtype"], "-", "-", f"{row['wall_seconds']:.1f}", "-", "-",
                          f"[red]{row['error']}[/]", "[red]failed[/]")
            continue
        meta = row["metadata"]
        stages = ", ".join(f"{name} {seconds:.1f}" for name, seconds in meta["stage_seconds"].items())
        met = meta["export_seconds"] < TARGET_SECONDS
        table.add_row(
            row["model"], row["dtype"], f"{meta['export_seconds']:.1f}", stages, f"{row['wall_seconds']:.1f}",
            f"{meta['files']['pte_bytes'] / 1e6:.2f}", f"{meta['delegated_share']:.0%}",
            meta["verification"]["status"], "[green]met[/]" if met else "[red]missed[/]",
        )
    return table


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--dtypes", nargs="+", choices=DTYPES, default=list(DTYPES))
    parser.add_argument("--backend", choices=("xnnpack", "portable"), default="xnnpack")
    parser.add_argument("--no-verify", action="store_true", help="skip the .pte check (export time is unchanged)")
    parser.add_argument("--keep", type=Path, help="write the models here instead of a temporary directory")
    args = parser.parse_args()

    console = Console()
    console.print(machine_table())
    pairs = [(m, d) for m in args.models for d in args.dtypes]
    rows = []
    with tempfile.TemporaryDirectory() as scratch, Progress(console=console, transient=True) as progress:
        outdir = args.keep or Path(scratch)
        task = progress.add_task("exporting", total=len(pairs))
        for model, dtype in pairs:
            progress.update(task, description=f"exporting {model} {dtype}")
            rows.append(export_once(model, dtype, args.backend, outdir, verify=not args.no_verify))
            progress.advance(task)
    console.print(results_table(rows, args.backend))
    failed = [r for r in rows if "error" in r]
    missed = [r for r in rows if "metadata" in r and r["metadata"]["export_seconds"] >= TARGET_SECONDS]
    console.print(f"{len(rows) - len(failed)} of {len(rows)} exports succeeded; "
                  f"{len(missed)} over the {TARGET_SECONDS:.0f} s target")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
