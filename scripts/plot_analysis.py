#!/usr/bin/env python3
"""Draw the analysis charts (charts/*.png) from the files an analysis wrote.

A stage of analyze_results.py, which runs it as a subprocess after writing analysis_summary.json.
It reads only files: analysis_summary.json (experiments, E2E medians and CIs, compare pairs), each
experiment's categories.csv and op_stats.csv (trace_breakdown.py) and comparison.csv, so charts can
be redrawn (say, with another --top) without re-analysing.

Example:
    python scripts/plot_analysis.py --summary out/run/analysis_summary.json --top 15

Charts written to <summary folder>/charts/ (each under a temporary name, then renamed):
  e2e_latency.png            median E2E latency per experiment, error bars: 95 % CI between processes
  categories_stacked.png     time and share per operator category, one bar per traced experiment
  top_ops_<experiment>.png   the top --top operator types of one experiment
  compare_<base>_vs_<cand>.png  per-category medians of a compare pair (log scale when they differ > 20x)
Experiment folders are `<summary folder>/<dir>`, or the summary's folder itself for a single-ETDump analysis.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pandas as pd
from rich.console import Console

UNATTRIBUTED = "UNATTRIBUTED"
CATEGORIES = ["CONV", "GEMM", "DATA_MOVEMENT", "ELEMENTWISE", "OTHER"]
CATEGORY_COLORS = {
    "CONV": "#1f77b4", "GEMM": "#d62728", "DATA_MOVEMENT": "#ff7f0e",
    "ELEMENTWISE": "#2ca02c", "OTHER": "#9467bd", UNATTRIBUTED: "#b0b0b0",
}


class PlotError(Exception):
    """Bad input: the message is one line naming the problem and the fix."""


def read_summary(path: Path) -> dict[str, Any]:
    try:
        summary = json.loads(path.read_text())
    except FileNotFoundError:
        raise PlotError(f"{path}: no such analysis summary; run analyze_results.py first") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise PlotError(f"{path}: cannot read the analysis summary ({error}); re-run analyze_results.py") from None
    if not isinstance(summary, dict) or not isinstance(summary.get("experiments"), dict) \
            or not isinstance(summary.get("comparisons"), list):
        raise PlotError(f"{path}: not an analysis summary (no experiments/comparisons); re-run analyze_results.py")
    return summary


def read_table(path: Path, **options: Any) -> pd.DataFrame:
    try:
        return pd.read_csv(path, **options)
    except FileNotFoundError:
        raise PlotError(f"{path}: missing, yet analysis_summary.json counts on it; re-run analyze_results.py") \
            from None
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise PlotError(f"{path}: unreadable ({error}); re-run analyze_results.py") from None


def experiment_folder(analysis_dir: Path, entry: dict[str, Any], name: str) -> Path:
    folder = analysis_dir / str(entry.get("dir") or name)
    return folder if folder.is_dir() else analysis_dir  # a single-ETDump analysis keeps its files in one folder


def safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def save_figure(fig: Any, path: Path) -> Path:
    """Save under a temporary name and rename: an interrupted run never leaves half a PNG."""
    import matplotlib.pyplot as plt
    temporary = path.with_name(f".{path.stem}.partial-{os.getpid()}.png")
    try:
        fig.savefig(temporary, dpi=120)
        temporary.replace(path)
    finally:
        plt.close(fig)
        if temporary.exists():
            temporary.unlink()
    return path


def e2e_chart(plt: Any, timed: list[tuple[str, dict[str, Any]]], charts_dir: Path) -> Path:
    fig, ax = plt.subplots(figsize=(max(5, 1.4 * len(timed) + 2), 4))
    medians = [e2e["median_ms"] for _, e2e in timed]
    low = [e2e["median_ms"] - (e2e["ci95_low_ms"] if e2e["ci95_low_ms"] is not None else e2e["median_ms"])
           for _, e2e in timed]
    high = [(e2e["ci95_high_ms"] if e2e["ci95_high_ms"] is not None else e2e["median_ms"]) - e2e["median_ms"]
            for _, e2e in timed]
    ax.bar([name for name, _ in timed], medians, yerr=[low, high], capsize=6, color="#4c72b0")
    for i, value in enumerate(medians):
        ax.annotate(f"{value:.3g}", (i, value), ha="center", va="bottom", xytext=(0, 3), textcoords="offset points")
    ax.set_ylabel("median latency per inference (ms)")
    ax.set_title("End-to-end latency, timing mode\n(error bars: 95 % CI of the median between processes)",
                 fontsize=10)
    plt.setp(ax.get_xticklabels(), rotation=20, ha="right")
    fig.tight_layout()
    return save_figure(fig, charts_dir / "e2e_latency.png")


def categories_chart(plt: Any, traced: list[tuple[str, pd.DataFrame]], charts_dir: Path) -> Path:
    # Absolute time shows the speedup; shares show the composition, which a large speedup hides.
    fig, (ms_ax, share_ax) = plt.subplots(1, 2, figsize=(max(8, 2.4 * len(traced) + 4), 4.5))
    names = [name for name, _ in traced]
    ms_bottoms, share_bottoms = np.zeros(len(traced)), np.zeros(len(traced))
    for category in CATEGORIES + [UNATTRIBUTED]:
        rows = [categories.set_index("category").loc[category] for _, categories in traced]
        values = np.array([float(row["ms_per_inference"]) for row in rows])
        shares = np.array([float(row["share_pct"]) for row in rows])
        color = CATEGORY_COLORS[category]
        ms_ax.bar(names, values, bottom=ms_bottoms, label=category, color=color)
        share_ax.bar(names, shares, bottom=share_bottoms, color=color)
        ms_bottoms += values
        share_bottoms += shares
    ms_ax.set_ylabel("ms per inference (median over traced runs)")
    ms_ax.set_title("Time per category")
    share_ax.set_ylabel("share of the median traced inference (%)")
    share_ax.set_ylim(0, max(100, float(share_bottoms.max()) * 1.02))
    share_ax.set_title("Share per category")
    share_ax.legend(*ms_ax.get_legend_handles_labels(), loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    for ax in (ms_ax, share_ax):
        plt.setp(ax.get_xticklabels(), rotation=20, ha="right")
    fig.suptitle("Where the time goes, by operator category")
    fig.tight_layout()
    return save_figure(fig, charts_dir / "categories_stacked.png")


def top_ops_chart(plt: Any, name: str, op_stats: pd.DataFrame, top_n: int, charts_dir: Path) -> Optional[Path]:
    from matplotlib.patches import Patch
    top = op_stats[op_stats["category"] != UNATTRIBUTED].head(top_n).iloc[::-1]
    if top.empty:
        return None
    fig, ax = plt.subplots(figsize=(8, 0.35 * len(top) + 1.5))
    labels = [f"{t} [portable]" if b == "portable" else t for t, b in zip(top["op_type"], top["backend"])]
    ax.barh(labels, top["ms_per_inference"], color=[CATEGORY_COLORS[c] for c in top["category"]])
    ax.set_xlabel("ms per inference (median over traced runs, exclusive time)")
    ax.set_title(f"Top {len(top)} operator types: {name}")
    ax.tick_params(axis="y", labelsize=8)
    shown = list(dict.fromkeys(top["category"].iloc[::-1]))
    ax.legend(handles=[Patch(color=CATEGORY_COLORS[c], label=c) for c in shown], fontsize=8, loc="lower right")
    fig.tight_layout()
    return save_figure(fig, charts_dir / f"top_ops_{safe_name(name)}.png")


def compare_chart(plt: Any, baseline: str, candidate: str, rows: pd.DataFrame, charts_dir: Path) -> Optional[Path]:
    cats = rows[rows["level"] == "category"]
    cats = cats[(cats["baseline_ms"] > 0) | (cats["candidate_ms"] > 0)]
    if cats.empty:
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    x = np.arange(len(cats))
    ax.bar(x - 0.2, cats["baseline_ms"], 0.4, label=baseline, color="#8c8c8c")
    ax.bar(x + 0.2, cats["candidate_ms"], 0.4, label=candidate, color="#4c72b0")
    ax.set_xticks(x, cats["name"], rotation=20, ha="right")
    ax.set_ylabel("ms per inference (median over traced runs)")
    positive = pd.concat([cats["baseline_ms"], cats["candidate_ms"]])
    positive = positive[positive > 0]
    if positive.max() / positive.min() > 20:  # a linear axis would flatten the faster side to nothing
        ax.set_yscale("log")
        ax.set_ylabel("ms per inference (median over traced runs; log scale)")
    ax.set_title(f"Per category: {baseline} vs {candidate}")
    ax.legend()
    fig.tight_layout()
    return save_figure(fig, charts_dir / f"compare_{safe_name(f'{baseline}_vs_{candidate}')}.png")


def make_charts(summary: dict[str, Any], analysis_dir: Path, top_n: int) -> list[Path]:
    """Every chart the summary has data for; returns the files written."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    charts_dir = analysis_dir / "charts"
    charts_dir.mkdir(parents=True, exist_ok=True)
    ok = {name: entry for name, entry in summary["experiments"].items() if entry.get("status") == "ok"}
    written: list[Optional[Path]] = []
    timed = [(name, entry["e2e"]) for name, entry in ok.items() if entry.get("e2e")]
    if timed:
        written.append(e2e_chart(plt, timed, charts_dir))
    folders = {name: experiment_folder(analysis_dir, entry, name) for name, entry in ok.items()
               if "categories" in entry}
    if folders:
        written.append(categories_chart(plt, [(n, read_table(f / "categories.csv")) for n, f in folders.items()],
                                        charts_dir))
    for name, folder in folders.items():
        op_stats = read_table(folder / "op_stats.csv", keep_default_na=False)
        written.append(top_ops_chart(plt, name, op_stats, top_n, charts_dir))
    if summary["comparisons"]:
        rows = read_table(analysis_dir / "comparison.csv")
        for comparison in summary["comparisons"]:
            written.append(compare_chart(plt, comparison["baseline"], comparison["candidate"],
                                         rows[rows["pair"] == comparison["pair"]], charts_dir))
    return [path for path in written if path is not None]


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    doc_lines = (__doc__ or "").split("\n")
    parser = argparse.ArgumentParser(description="Draw the analysis charts from analysis_summary.json and the "
                                     "CSVs beside it.",
                                     epilog="\n".join(doc_lines[doc_lines.index(
                                         "Charts written to <summary folder>/charts/ (each under a temporary name, "
                                         "then renamed):"):]),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--summary", type=Path, required=True, help="analysis_summary.json of the analysis")
    parser.add_argument("--top", type=int, default=10, help="operators in each top-operators chart (default 10)")
    parser.add_argument("--quiet", action="store_true", help="print nothing but errors")
    args = parser.parse_args(argv)
    if args.top < 1:
        parser.error("--top must be >= 1")
    return args


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    console = Console(stderr=True)
    try:
        written = make_charts(read_summary(args.summary), args.summary.parent, args.top)
    except PlotError as error:
        console.print(f"[bold red]error:[/bold red] {error}", soft_wrap=True)
        return 2
    except OSError as error:  # a full disk or a read-only folder
        console.print(f"[bold red]error:[/bold red] cannot write {error.filename or 'a chart'}: "
                      f"{error.strerror or error}; free space or fix the permissions, then rerun", soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        console.print("[bold red]interrupted:[/bold red] nothing half-written is left; rerun the same command",
                      soft_wrap=True)
        return 130
    if not args.quiet:
        console.print(f"{len(written)} charts in {args.summary.parent / 'charts'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
