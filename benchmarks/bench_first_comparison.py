#!/usr/bin/env python3
"""Seconds from a fresh clone to a first SME2 ON/OFF comparison: prebuilt runner + mask vs source builds.

Measures, in a fresh copy of the committed tree (git archive HEAD, so runners/, models/, out/ and
build/ start empty), the steps a learner runs for a first SME2 ON/OFF comparison with the
prebuilt runner and its feature mask:

  setup      ./scripts/setup_repo.sh (venv check, prebuilt runner + feature-mask build, checks)
  export     scripts/export_model.py --model toy_cnn --backend xnnpack --dtype fp32
  config     scripts/generate_config.py --compare sme2 (one runner, sme2_off hides SME and SME2)
  pipeline   scripts/mac_pipeline.py on that config (timing + trace, 3 interleaved rounds,
             analysis included)

The source-build path needs the same export, config and pipeline steps plus two ExecuTorch
builds (sme2_on, sme2_off) and a checkout with submodules from GitHub. Neither can run here (no
GitHub): their cost is cited, not measured (CITED_SOURCE_BUILD below, from issue 17).

By default the clone reuses this interpreter's venv (a fresh venv install is what
benchmarks/bench_setup.sh measures: pip and the wheel cache dominate it); --fresh-venv creates a
new one inside the clone instead. On a CPU without SME2 (this kit's CI) both sides of the
comparison run the same kernels, but every step does the same work as on an M4 Mac.

Example:
    .venv/bin/python benchmarks/bench_first_comparison.py
    .venv/bin/python benchmarks/bench_first_comparison.py --fresh-venv --keep
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parent.parent
# One source build of the runner (ExecuTorch + XNNPACK + KleidiAI), per variant, on 2 cores:
# as issue 17 reports it (measured there, not here: this machine has no GitHub for the checkout).
CITED_SOURCE_BUILD = {"ninja_steps": 1520, "low_load_s": 374.0, "high_load_s": 18 * 60.0, "variants": 2,
                      "source": "issue 17: about 1,520 ninja steps, 374 s at low load up to 18 min at high load "
                                "per variant on 2 cores"}


class BenchError(Exception):
    """A step failed; the message names it and where its log is."""


def fresh_tree(work: Path) -> Path:
    """The committed tree (HEAD) unpacked into work/repo, as a clone would hold it."""
    tree = work / "repo"
    tree.mkdir()
    archive = subprocess.run(["git", "-C", str(REPO), "archive", "HEAD"], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    return tree


def timed(name: str, command: list[str], cwd: Path, logs: Path) -> float:
    log = logs / f"{name}.log"
    env = {**os.environ, "COLUMNS": "120"}
    env.pop("VIRTUAL_ENV", None)
    started = time.monotonic()
    with log.open("w") as out:
        result = subprocess.run(command, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, env=env)
    seconds = time.monotonic() - started
    if result.returncode != 0:
        raise BenchError(f"step '{name}' failed (exit {result.returncode}); read {log}")
    return seconds


def first_comparison_steps(python: str) -> list[tuple[str, list[str]]]:
    return [
        ("setup", ["./scripts/setup_repo.sh"]),
        ("export", [python, "scripts/export_model.py", "--model", "toy_cnn", "--backend", "xnnpack", "--dtype", "fp32"]),
        ("config", [python, "scripts/generate_config.py", "--compare", "sme2", "--out", "sme2_on_off.json"]),
        ("pipeline", [python, "scripts/mac_pipeline.py", "--config", "sme2_on_off.json"]),
    ]


def load_average() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "unknown"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fresh-venv", action="store_true",
                        help="create a new venv in the clone (default: reuse this interpreter's venv)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary clone and step logs")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    console = Console()
    if sys.prefix == sys.base_prefix and not args.fresh_venv:
        console.print("[bold red]error:[/bold red] run this from the kit's venv (.venv/bin/python), or pass --fresh-venv")
        return 1
    work = Path(tempfile.mkdtemp(prefix="bench_first_comparison_"))
    logs = work / "logs"
    logs.mkdir()
    load_before = load_average()
    failed = False
    try:
        tree = fresh_tree(work)
        if not args.fresh_venv:
            (tree / ".venv").symlink_to(Path(sys.prefix), target_is_directory=True)
        python = str(tree / ".venv/bin/python")
        seconds = {}
        for name, command in first_comparison_steps(python):
            with console.status(f"{name}: {' '.join(Path(c).name if '/' in c else c for c in command)}"):
                seconds[name] = timed(name, command, tree, logs)
        runner = json.loads((tree / "runners/prebuilt/runner.json").read_text())
        runs = sorted((tree / "out").glob("*/manifest.json"))
        manifest = json.loads(runs[-1].read_text()) if runs else {}
    except BenchError as error:
        failed = True  # keep the clone and its logs for reading
        console.print(f"[bold red]error:[/bold red] {error}")
        return 1
    finally:
        if not args.keep and not failed:
            shutil.rmtree(work, ignore_errors=True)

    statuses = {e["name"]: e["status"] for e in manifest.get("experiments", [])}
    seen = {e["name"]: e.get("cpu_features_seen") for e in manifest.get("experiments", [])}
    prebuilt_total = sum(seconds.values())
    common = seconds["export"] + seconds["config"] + seconds["pipeline"]
    setup_without_build = seconds["setup"] - float(runner["build_seconds"])
    cited = CITED_SOURCE_BUILD
    source_low = setup_without_build + cited["variants"] * cited["low_load_s"] + common
    source_high = setup_without_build + cited["variants"] * cited["high_load_s"] + common

    table = Table(title="Fresh clone -> first SME2 ON/OFF comparison (toy_cnn fp32)")
    table.add_column("step")
    table.add_column("prebuilt + mask, s", justify="right")
    table.add_column("source builds, s", justify="right")
    table.add_row("setup (venv " + ("fresh" if args.fresh_venv else "reused") + ")", f"{seconds['setup']:.1f}",
                  f"{setup_without_build:.1f} + checkout (not measured)")
    table.add_row("  of which runner + mask build", f"{runner['build_seconds']:.1f}",
                  f"{cited['variants']} x {cited['low_load_s']:.0f} .. {cited['variants']} x "
                  f"{cited['high_load_s']:.0f} (cited)")
    for name in ("export", "config", "pipeline"):
        table.add_row(name, f"{seconds[name]:.1f}", f"{seconds[name]:.1f} (same step)")
    table.add_row("[bold]total", f"[bold]{prebuilt_total:.1f}", f"[bold]{source_low:.0f} .. {source_high:.0f}")
    console.print(table)
    console.print(f"prebuilt path measured on this machine ({os.cpu_count()} cores, load average before "
                  f"{load_before}, after {load_average()}); experiments {statuses}; cpu_features_seen {seen}")
    console.print(f"source path: the same export/config/pipeline seconds plus {cited['source']} (cited, not "
                  "measured here), plus a git checkout with submodules from GitHub (not measured: no GitHub here)")
    builds = (cited["variants"] * cited["low_load_s"], cited["variants"] * cited["high_load_s"])
    console.print(f"build step: {runner['build_seconds']:.1f} s (runner + mask, measured) vs {builds[0]:.0f} .. "
                  f"{builds[1]:.0f} s (two source builds, cited); first comparison: {prebuilt_total:.0f} s measured "
                  f"vs {source_low:.0f} .. {source_high:.0f} s ({source_low / prebuilt_total:.1f}x .. "
                  f"{source_high / prebuilt_total:.1f}x; the measured steps ran at the load above, the cited builds "
                  "at low to high load)")
    if args.keep:
        console.print(f"kept {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
