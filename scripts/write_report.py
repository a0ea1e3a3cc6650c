#!/usr/bin/env python3
"""Write report.md from the files an analysis wrote: the Markdown view of a profiling run.

The last stage of analyze_results.py, which runs it as a subprocess once every other file is
written. It only formats: every number comes from analysis_summary.json, the per-experiment files
of trace_breakdown.py (op_stats.csv, categories.csv, breakdown.json), comparison.csv, kernels.csv,
isa_evidence.json, and, when given, manifest.json (setup facts), e2e_stats.json (bootstrap
settings), the category rules (`trace_breakdown.py --rules`) and the kernel facts of kernel_log.py.

Example:
    python scripts/write_report.py --summary out/run/analysis_summary.json --manifest out/run/manifest.json

Experiment folders are `<summary folder>/<dir>` (the `dir` of each experiment in the summary), or the
summary's folder itself for a single-ETDump analysis. The report goes to --out (default: report.md
beside the summary), written under a temporary name and renamed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

import pandas as pd
from rich.console import Console

UNATTRIBUTED = "UNATTRIBUTED"
SCHEMA_VERSION = 1


class ReportError(Exception):
    """Bad input: the message is one line naming the problem and the fix."""


@dataclass
class Experiment:
    """One experiment as the analysis files describe it."""
    name: str
    folder: Path
    meta: dict[str, Any]
    facts: dict[str, str]
    status: str = "ok"
    error: Optional[str] = None
    e2e: Optional[dict[str, Any]] = None
    e2e_source: str = ""
    breakdown: Optional[dict[str, Any]] = None
    op_stats: Optional[pd.DataFrame] = None
    categories: Optional[pd.DataFrame] = None
    kernels: Optional[pd.DataFrame] = None
    kernel_families: dict[str, int] = field(default_factory=dict)

    @property
    def sme_path_ms(self) -> float:
        return 0.0 if self.categories is None else float(self.categories["sme_path_ms"].sum())

    @property
    def traced_median_ms(self) -> float:
        return float(self.breakdown["execute"]["median_ms"]) if self.breakdown else float("nan")


@dataclass
class Comparison:
    baseline: Experiment
    candidate: Experiment
    speedup: dict[str, Any]
    rows: pd.DataFrame
    narrative: str

    @property
    def file_stem(self) -> str:
        return safe_name(f"{self.baseline.name}_vs_{self.candidate.name}")


# ----------------------------------------------------------------------------- inputs


def read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ReportError(f"{path}: missing {what}; run analyze_results.py first") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ReportError(f"{path}: cannot read the {what} ({error}); re-run analyze_results.py") from None
    if not isinstance(data, dict):
        raise ReportError(f"{path}: the {what} is not a JSON object; re-run analyze_results.py")
    return data


def read_table(path: Path, **options: Any) -> pd.DataFrame:
    try:
        return pd.read_csv(path, **options)
    except FileNotFoundError:
        raise ReportError(f"{path}: missing, yet analysis_summary.json counts on it; re-run analyze_results.py") \
            from None
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise ReportError(f"{path}: unreadable ({error}); re-run analyze_results.py") from None


def manifest_entries(manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Manifest experiment entries by folder name (`dir`, else `<name>_t<threads>`)."""
    return {entry.get("dir") or f"{entry.get('name')}_t{entry.get('threads')}": entry
            for entry in manifest.get("experiments") or [] if isinstance(entry, dict)}


def load_experiment(name: str, entry: dict[str, Any], meta: dict[str, Any], analysis_dir: Path) -> Experiment:
    folder = analysis_dir / str(entry.get("dir") or name)
    folder = folder if folder.is_dir() else analysis_dir  # a single-ETDump analysis keeps its files in one folder
    exp = Experiment(name=name, folder=folder, meta=meta, status=entry.get("status") or "ok", error=entry.get("error"),
                     facts={"model": entry.get("model"), "backend": entry.get("backend"),
                            "dtype": entry.get("dtype"), "hidden": entry.get("hide_cpu_features")},
                     e2e=entry.get("e2e"), e2e_source=entry.get("e2e_source") or "")
    if "categories" in entry:
        exp.breakdown = read_json(folder / "breakdown.json", "trace_breakdown.py output")
        exp.op_stats = read_table(folder / "op_stats.csv", keep_default_na=False, na_values={
            c: [""] for c in ("ci95_low_ms", "ci95_high_ms", "min_ms", "max_ms")})
        exp.op_stats["sme_path"] = exp.op_stats["sme_path"].astype(str) == "True"
        exp.op_stats["delegation_opportunity"] = exp.op_stats["delegation_opportunity"].astype(str) == "True"
        exp.categories = read_table(folder / "categories.csv")
    if "kernels" in entry:
        exp.kernels = read_table(folder / "kernels.csv", dtype=str, keep_default_na=False)
        exp.kernel_families = dict(entry["kernels"].get("isa_families") or {})
    return exp


def load_run(summary: dict[str, Any], manifest: dict[str, Any], summary_path: Path
             ) -> tuple[list[Experiment], list[Comparison]]:
    analysis_dir = summary_path.parent
    if summary.get("schema_version") != SCHEMA_VERSION:
        raise ReportError(f"{summary_path}: schema_version {summary.get('schema_version')!r} "
                          f"is not {SCHEMA_VERSION}; write the report with the kit version that wrote the analysis")
    metas = manifest_entries(manifest)
    try:
        experiments = [load_experiment(name, entry, metas.get(name, {}), analysis_dir)
                       for name, entry in summary["experiments"].items()]
        by_name = {e.name: e for e in experiments}
        rows = read_table(analysis_dir / "comparison.csv") if summary["comparisons"] else None
        comparisons = [Comparison(by_name[c["baseline"]], by_name[c["candidate"]], c,
                                  rows[rows["pair"] == c["pair"]].reset_index(drop=True), c["narrative"])
                       for c in summary["comparisons"]]
    except (KeyError, TypeError, AttributeError) as error:
        raise ReportError(f"{summary_path}: not the analysis summary this script reads "
                          f"(no {error}); re-run analyze_results.py") from None
    return experiments, comparisons


# ----------------------------------------------------------------------------- sections


def safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def fmt_ms(value: Optional[float]) -> str:
    """E2E times from the runner's clock: 4 significant digits."""
    return "n/a" if is_missing(value) else f"{value:.4g}"


def fmt_trace_ms(value: Optional[float]) -> str:
    """Operator times: XNNPACK reports whole microseconds, so no digit below 0.001 ms is shown."""
    return "n/a" if is_missing(value) else f"{value:.3f}"


def fmt_ci(low: Optional[float], high: Optional[float], fmt: Any = fmt_ms) -> str:
    return "n/a (too few runs)" if is_missing(low) or is_missing(high) else f"[{fmt(low)}, {fmt(high)}]"


def fmt_ratio(value: float) -> str:
    """3 significant digits, never in exponent notation (a speedup of 5070, not 5.07e+03)."""
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"


def fmt_speedup(value: Optional[float]) -> str:
    return "" if is_missing(value) else f"{fmt_ratio(value)}x"


def md_table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell).replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def exp_cell(exp: Experiment) -> str:
    """An experiment as every report table names it: folder, model file, backend, dtype, hidden features."""
    f = exp.facts
    return f"{exp.name} (`{f.get('model', '?')}`, {f.get('backend', '?')} {f.get('dtype', '?')}, hidden: " \
           f"{f.get('hidden', 'none')})"


def sme2_fact(cpu: dict[str, Any]) -> str:
    """What the run says about SME2 on its CPU; nothing is claimed without host/device facts."""
    if not cpu:
        return "unknown: no host or device facts (single ETDump)"
    return "yes" if cpu.get("sme2") else "no: SME2 not available on this CPU"


def setup_section(manifest: dict[str, Any], cpu: dict[str, Any]) -> list[str]:
    host = manifest.get("host") or {}
    device = manifest.get("device")
    sme2_text = sme2_fact(cpu)
    rows = [["chip", cpu.get("chip") or cpu.get("soc") or cpu.get("model") or "unknown"],
            ["OS", f"{host.get('os', '?')} {host.get('os_version', '')}".strip()],
            ["cores", cpu.get("cores", "?")], ["SME2 detected", sme2_text],
            ["SME detected", ("yes" if cpu.get("sme") else "no") if cpu else "unknown"],
            ["emulated", "yes: timings not meaningful" if is_emulated(manifest) else "no"]]
    if device:
        rows.insert(0, ["device", f"{device.get('model', '?')} ({device.get('abi', '?')}, Android "
                                  f"{device.get('android_version', '?')})"])
    versions = manifest.get("versions") or {}
    rows += [[f"{name} version", value] for name, value in versions.items()]
    lines = ["## Setup", "", md_table(["fact", "value"], rows), ""]
    runners = manifest.get("runners") or {}
    if runners:
        runner_rows = [[name, r.get("flavor", "?"), r.get("platform", "?"), yes_no(r.get("sme2_kernels")),
                        yes_no(r.get("sme_kernels")), yes_no(r.get("kernel_log")),
                        ", ".join(f"{k}={v}" for k, v in sorted((r.get("cmake_flags") or {}).items())
                                  if k.startswith(("XNNPACK", "EXECUTORCH", "CMAKE_BUILD")))]
                       for name, r in runners.items()]
        lines += ["Runners:", "", md_table(["runner", "flavor", "platform", "SME2 kernels", "SME kernels",
                                            "kernel log", "key CMake flags"], runner_rows), ""]
    return lines


def yes_no(value: Any) -> str:
    return "yes" if value else "no"



def experiments_section(experiments: list[Experiment]) -> list[str]:
    rows = [[e.name, f"`{e.facts.get('model')}`", e.facts.get("backend"), e.facts.get("dtype"),
             e.facts.get("hidden"), e.meta.get("runner", ""), e.meta.get("threads", "?"), e.status]
            for e in experiments]
    return ["## Experiments", "",
            md_table(["experiment", "model file", "backend", "dtype", "hidden CPU features", "runner", "threads",
                      "status"], rows), ""]


def e2e_section(experiments: list[Experiment]) -> list[str]:
    rows, notes = [], []
    for exp in experiments:
        if not exp.e2e:
            rows.append([exp_cell(exp), exp.meta.get("threads", "?"), exp.status] + [""] * 8)
            continue
        s = exp.e2e
        rows.append([exp_cell(exp), exp.meta.get("threads", "?"), exp.status, f"{s['n']} / {s['rounds']}",
                     fmt_ms(s["median_ms"]), fmt_ci(s["ci95_low_ms"], s["ci95_high_ms"]), s.get("ci_method") or "",
                     " ".join(fmt_ms(m) for m in s["round_medians_ms"]),
                     {True: "yes", False: "**no**", None: "n/a"}[s.get("rounds_agree")], fmt_ms(s["mean_ms"]),
                     f"{fmt_ms(s['p90_ms'])} / {fmt_ms(s['max_ms'])}"])
        if s.get("rounds_agree") is False:
            notes.append(f"- **{exp.name}: {s['rounds_note']}.**")
    sources = {exp.e2e_source for exp in experiments if exp.e2e}
    how = {"timing": "Timing-mode runs (no tracer attached); every round is a separate process.",
           "trace": "Traced runs (Method::execute; tracer overhead included: no timing.json was available)."}
    return ["## End-to-end latency", "",
            " ".join(how[source] for source in sorted(sources)) + " Times in ms per inference; the CI of the "
            "median resamples rounds, then runs within rounds.", "",
            md_table(["experiment", "threads", "status", "runs / rounds", "median", "95 % CI of median",
                      "CI over", "round medians", "rounds agree", "mean", "p90 / max"], rows), ""] + notes + \
        ([""] if notes else []) + ["![E2E latency](charts/e2e_latency.png)", ""]


def speedup_section(comparisons: list[Comparison], emulated: bool) -> list[str]:
    if not comparisons:
        return []
    lines = ["## Speedup", ""]
    if emulated:
        lines += ["**emulated: timings not meaningful.** These runs used an emulated CPU; the numbers below show "
                  "that the flow works, not how fast real hardware is.", ""]
    rows = []
    for c in comparisons:
        s = c.speedup
        rows.append([exp_cell(c.baseline), exp_cell(c.candidate), fmt_ms(c.baseline.e2e["median_ms"]),
                     fmt_ms(c.candidate.e2e["median_ms"]),
                     fmt_speedup(s["speedup"]) + (" (emulated: timings not meaningful)" if emulated else ""),
                     fmt_ci(s["ci95_low"], s["ci95_high"], fmt_ratio), s["rounds"]])
    lines += [md_table(["baseline", "candidate", "baseline median ms", "candidate median ms", "speedup",
                        "95 % CI", "rounds"], rows), ""]
    for c in comparisons:
        lines += [f"### {c.baseline.name} -> {c.candidate.name}", "", c.narrative, "",
                  f"Baseline {exp_cell(c.baseline)}; candidate {exp_cell(c.candidate)}. Category times are medians "
                  "of per-run sums over traced runs; speedup is the ratio of those medians (the same statistic as "
                  "E2E), CI from resampling each side's traced runs.", ""]
        cats = c.rows[c.rows["level"] == "category"]
        if not cats.empty:
            lines += [md_table(["category", "baseline ms", "candidate ms", "speedup", "95 % CI", "baseline share",
                                "candidate share", "change"],
                               [[r["name"], fmt_trace_ms(r["baseline_ms"]), fmt_trace_ms(r["candidate_ms"]),
                                 fmt_speedup(r["speedup"]),
                                 fmt_ci(r["speedup_ci_low"], r["speedup_ci_high"], fmt_ratio),
                                 f"{r['baseline_share_pct']:.1f} %", f"{r['candidate_share_pct']:.1f} %",
                                 f"{r['share_change_pp']:+.1f} pp"] for _, r in cats.iterrows()]), "",
                      f"![categories](charts/compare_{c.file_stem}.png)", ""]
    return lines


def category_section(experiments: list[Experiment]) -> list[str]:
    traced = [e for e in experiments if e.categories is not None]
    if not traced:
        return []
    lines = ["## Where the time goes", "",
             "Exclusive operator time, summed per traced run; the table shows the median over runs, the 95 % CI "
             "of the share, mean and p90. Shares are of the median `Method::execute`; UNATTRIBUTED is traced "
             "time no operator accounts for (framework dispatch, delegate overhead). Medians do not add up "
             "exactly, so the shares sum to about 100 %.", ""]
    for exp in traced:
        rows = [[r["category"], fmt_trace_ms(r["ms_per_inference"]), f"{r['share_pct']:.1f} %",
                 fmt_ci(r["share_ci95_low_pct"], r["share_ci95_high_pct"], lambda v: f"{v:.1f} %"),
                 fmt_trace_ms(r["mean_ms"]), fmt_trace_ms(r["p90_ms"])] for _, r in exp.categories.iterrows()]
        rows.append(["Method::execute", fmt_trace_ms(exp.traced_median_ms), "100 %", "", "", ""])
        b = exp.breakdown
        set_aside = b["traced_runs"] - b["kept_runs"]
        lines += [f"### {exp_cell(exp)}", "",
                  f"{b['largest_sentence'][0].upper() + b['largest_sentence'][1:]}. Traced runs: {b['traced_runs']}, "
                  + (f"{set_aside} set aside as outliers ({b['outlier_rule']}; runs "
                     f"{', '.join(str(o['run']) for o in b['outlier_runs'])}, flagged in runs.csv, kept in ops.csv)."
                     if set_aside else "none set aside."), "",
                  md_table(["category", "median ms", "share", "95 % CI of share", "mean ms", "p90 ms"], rows), ""]
    return lines + ["![categories](charts/categories_stacked.png)", ""]


def top_ops_section(experiments: list[Experiment], top_n: int) -> list[str]:
    lines = []
    for exp in experiments:
        if exp.op_stats is None:
            continue
        top = exp.op_stats[exp.op_stats["category"] != UNATTRIBUTED].head(top_n)
        rows = [[r["op_type"], r["category"], r["backend"], r["kernel_path"], r["instances_per_run"],
                 fmt_trace_ms(r["ms_per_inference"]), fmt_ci(r["ci95_low_ms"], r["ci95_high_ms"], fmt_trace_ms),
                 fmt_trace_ms(r["mean_ms"]), fmt_trace_ms(r["p90_ms"]), f"{r['share_of_e2e_pct']:.1f} %",
                 "delegation opportunity" if r["delegation_opportunity"] else ""] for _, r in top.iterrows()]
        lines += [f"### Top {len(top)} operator types: {exp_cell(exp)}", "",
                  md_table(["op type", "category", "backend", "kernel path", "per run", "median ms", "95 % CI",
                            "mean ms", "p90 ms", "share", "note"], rows), "",
                  f"![top ops](charts/top_ops_{safe_name(exp.name)}.png)", ""]
    return (["## Top operators", "", "Per operator instance (delegate call and position): "
             "`<experiment>/op_instances.csv`.", ""] + lines) if lines else []


def sme_section(experiments: list[Experiment], cpu: dict[str, Any]) -> list[str]:
    traced = [e for e in experiments if e.op_stats is not None]
    if not traced:
        return []
    rows = []
    for exp in traced:
        per_cat = exp.categories[exp.categories["sme_path_ms"] > 0]
        detail = ", ".join(f"{r['category']} {r['sme_path_pct']:.0f} %" for _, r in per_cat.iterrows()) or "none"
        sme_ops = exp.op_stats[exp.op_stats["sme_path"]]["op_type"].tolist()
        rows.append([exp_cell(exp), exp.meta.get("sme2_label") or "", fmt_trace_ms(exp.sme_path_ms),
                     f"{100.0 * exp.sme_path_ms / exp.traced_median_ms:.1f} %", detail, ", ".join(sme_ops) or "none"])
    note = "" if cpu.get("sme2") else f" SME2 on this CPU: {sme2_fact(cpu)}."
    return ["## SME path (from operator names)", "",
            "Operators whose XNNPACK name carries a KleidiAI packed tag (PF32, PF16, PQS8; QP8 on a CPU with SME or SME2) "
            f"ran on the KleidiAI SME/SME2 kernels.{note}", "",
            md_table(["experiment", "SME2 label", "SME path ms / inference", "share of E2E",
                      "share of each category on the SME path", "op types on the SME path"], rows), ""]


def isa_evidence_section(run_dir: Path) -> list[str]:
    """Per experiment: SME2 instructions reached yes/no and the kernels; per compare pair the kernel diff."""
    try:
        evidence = json.loads((run_dir / "isa_evidence.json").read_text())
        experiments, pairs = dict(evidence["experiments"]), list(evidence.get("compare", []))
    except (OSError, ValueError, KeyError, TypeError):
        return []
    rows = []
    for name, entry in experiments.items():
        if not isinstance(entry, dict) or entry.get("status") != "ok":
            rows.append([name, str((entry or {}).get("status")), "", "", "", ""])
            continue
        counts = entry["instructions"]
        named = [f"`{k['symbol']}` ({k['isa_class']})" for k in entry["kernels"] if not k["symbol"].startswith("(")]
        unnamed = sorted({k["isa_class"] for k in entry["kernels"] if k["symbol"].startswith("(")})
        if unnamed:
            named.append(f"XNNPACK code without exported names ({', '.join(unnamed)})")
        rows.append([name, f"{'yes' if entry['sme2_reached'] else 'no'} ({counts['SME2']})",
                     f"{'yes' if entry['sme_reached'] else 'no'} ({counts['SME']})", str(counts["SVE"]),
                     str(counts["NEON"]), "<br>".join(named) or "none"])
    lines = ["## SME path (from the instructions reached, emulated)", "",
             f"**{evidence.get('note', 'emulated: timings not meaningful')}.** QEMU logged the code each trace run "
             "translated; scripts/isa_evidence.py decoded every instruction and counted the distinct instructions "
             "reached per ISA class (files: `isa_evidence.csv`, `isa_kernels.csv` in each experiment folder).", "",
             md_table(["experiment", "SME2 instructions reached", "SME instructions reached", "SVE", "NEON",
                       "kernels reached (ISA class)"], rows), ""]
    for pair in pairs:
        only_base = ", ".join(f"`{k}`" for k in pair["only_in_baseline"]) or "none"
        only_cand = ", ".join(f"`{k}`" for k in pair["only_in_candidate"]) or "none"
        lines += [f"Kernels {pair['baseline']} -> {pair['candidate']}: only in {pair['candidate']}: {only_cand}; "
                  f"only in {pair['baseline']}: {only_base}.", ""]
    return lines


def kernels_section(experiments: list[Experiment]) -> list[str]:
    with_kernels = [e for e in experiments if e.kernels is not None]
    if not with_kernels:
        return ["## Kernels", "", "No kernels.log in this run: build a `*_kernels` runner variant to see which "
                "XNNPACK microkernels were registered. The SME path section above works without it.", ""]
    lines = ["## Kernels (registrations)", "",
             "XNNPACK prints one `Using <kind> microkernel '<name>'` line when it registers a kernel for this CPU "
             "and configuration. These lines say which kernels were **registered, not how often each ran**.", ""]
    for exp in with_kernels:
        lines += [f"### {exp_cell(exp)}: {len(exp.kernels)} kernels ("
                  + ", ".join(f"{fam} {n}" for fam, n in sorted(exp.kernel_families.items())) + ")", "",
                  md_table(["kind", "kernel", "datatype", "operation", "tile", "ISA", "KleidiAI"],
                           [[r["kind"], f"`{r['name']}`", r["datatype"], r["operation"], r["tile"], r["isa"],
                             yes_no(r["is_kleidiai"] == "True")] for _, r in exp.kernels.iterrows()]), ""]
    return lines


def kernel_diff_section(kernel_facts: dict[str, Any], compared: set[tuple[str, str]]) -> list[str]:
    """Per compared pair with kernel logs on both sides: the registered kernels only one side has (kernel_log.py)."""
    lines = []
    for pair in kernel_facts.get("pairs") or []:
        base, cand = pair["baseline"], pair["candidate"]
        if (base, cand) not in compared:
            continue
        rows = [[k["kind"], "<br>".join(f"`{n}`" for n in k["only_baseline"]) or "-",
                 "<br>".join(f"`{n}`" for n in k["only_candidate"]) or "-"] for k in pair["kinds"]]
        lines += [f"### Kernel diff {base} -> {cand}", "",
                  f"{pair['both']} kernels registered by both; "
                  + (f"{len(rows)} kinds differ:" if rows else "no kind differs."), ""]
        if rows:
            lines += [md_table(["kind", f"only {base}", f"only {cand}"], rows), ""]
    return lines


def portable_section(experiments: list[Experiment], top_n: int) -> list[str]:
    rows = []
    for exp in experiments:
        if exp.op_stats is None:
            continue
        ranked = exp.op_stats[exp.op_stats["category"] != UNATTRIBUTED].reset_index(drop=True)
        for rank, r in ranked.iterrows():
            if r["backend"] == "portable":
                rows.append([exp_cell(exp), r["op_type"], r["category"], r["instances_per_run"],
                             fmt_trace_ms(r["ms_per_inference"]), f"{r['share_of_e2e_pct']:.1f} %", rank + 1,
                             "yes: in the hot list" if rank < top_n else "no"])
    if not rows:
        return ["## Portable operators", "", "Every operator ran inside a delegate: nothing left on portable kernels.", ""]
    return ["## Portable operators (delegation opportunities)", "",
            "These operators ran on ExecuTorch's portable kernels, outside XNNPACK. One in the hot list is worth "
            "delegating (a supported op variant, a different export, or a partitioner option).", "",
            md_table(["experiment", "op", "category", "per run", "median ms", "share", "rank", "hot"], rows), ""]


def method_section(rules: Optional[dict[str, Any]], stats: dict[str, Any]) -> list[str]:
    bootstrap = stats.get("bootstrap") or {}
    lines = [
        "## How each number was measured", "",
        "- **E2E latency**: the runner's monotonic clock around `Method::execute()`, in timing mode (no tracer). "
        "Median of all runs. CI: 95 % percentile bootstrap that resamples rounds (each one a separate process), "
        "then runs within each drawn round, as pyperf treats processes "
        f"({bootstrap.get('samples', '?')} resamples, fixed seed {bootstrap.get('seed', '?')}: re-running gives "
        "the same numbers). Fewer than 5 rounds give only a within-process CI, and the report says so. Rounds "
        "agree when each round's own CI of the median overlaps every other's.",
        "- **Speedup**: median(baseline) / median(candidate), > 1 means the candidate is faster. CI: paired "
        "bootstrap over the interleaved rounds (the same round indices for both sides, because round k of both "
        "ran back to back), then runs within each drawn round; a pair whose rounds ran in different sessions "
        "(after a --resume) is bootstrapped side by side instead, and its warnings say so. Speedup is empty "
        "where one side has no such operator.",
        "- **Operator breakdown** (`trace_breakdown.py`): trace-mode runs, read straight from the ETDump (and the ETRecord's graph nodes when there is one). "
        "Each operator's exclusive time is its own event (XNNPACK per-operator events inside `DELEGATE_CALL`, "
        "`native_call_*` events of portable kernels inside `OPERATOR_CALL`); nesting events are never added. "
        "Times are summed per run (per instance, op type and category); the table value is the median over "
        "runs, with a bootstrap CI, mean and p90. Runs whose `Method::execute` is an outlier are flagged in "
        "runs.csv and set aside from the medians; ops.csv keeps every event. An operator instance is its "
        "delegate call and its position in the run.",
        "- **XNNPACK timer resolution**: XNNPACK reports each operator in whole microseconds, so operator times "
        "are shown to 0.001 ms; operators under 1 us show as 0 and the truncated time lands in UNATTRIBUTED.",
        "- **Traced vs timed**: the tracer adds overhead, so traced E2E is a little above the timing E2E; the "
        "analysis warns when they differ by more than a factor of 3 (a unit or file mix-up).",
        "- **Kernel log**: `Using <kind> microkernel '<name>'` lines are registrations, not call counts.", ""]
    if rules:
        lines += ["Category rules (ordered, first match wins; `portable` rules see the kernel name without "
                  "`native_call_` and the overload; owned by `trace_breakdown.py --rules`):", "",
                  md_table(["source", "pattern", "category", "sub-label"],
                           [[r["source"], f"`{r['pattern']}`", r["category"], r["subcategory"]]
                            for r in rules.get("category_rules", [])]), "",
                  "Kernel path from the datatype tags in XNNPACK operator names (`Convolution (NHWC, PF32) IGEMM` -> "
                  "kleidiai_sme). Observed with the arm64 ExecuTorch 1.5.1 runtime on an emulated SME CPU (QEMU "
                  "`-cpu max`): PF32 (fp32 conv/GEMM), PF16 (fp16), PQS8 (static int8 conv/GEMM) and QP8 (dynamic "
                  "int8 GEMM, also without SME); with SME off the same ops show F32, F16, QC8 and QS8/QC8W. QDU8 "
                  "was observed on x86_64:", "",
                  md_table(["tags", "kernel_path", "meaning"],
                           [[r["tags"], r["kernel_path"], r["meaning"]] for r in rules.get("kernel_path_tags", [])]),
                  "", f"Pairing across a comparison: {rules.get('pairing', '')}.", ""]
    return lines


def cpu_facts(manifest: dict[str, Any]) -> dict[str, Any]:
    """The CPU the experiments ran on: the Android device when there is one, else the host."""
    return manifest.get("device") or manifest.get("host") or {}


def is_emulated(manifest: dict[str, Any]) -> bool:
    return bool((manifest.get("device") or {}).get("emulated") or (manifest.get("host") or {}).get("emulated"))


def report_lines(summary: dict[str, Any], manifest: dict[str, Any], experiments: list[Experiment],
                 comparisons: list[Comparison], analysis_dir: Path, top_n: int, rules: Optional[dict[str, Any]],
                 stats: dict[str, Any], kernel_facts: dict[str, Any]) -> list[str]:
    cpu = cpu_facts(manifest)
    all_warnings = list(summary.get("warnings") or []) + list(summary.get("errors") or [])
    lines = ["# ExecuTorch profiling report", "",
             f"Source: `{summary.get('source')}`. Generated {datetime.now(timezone.utc).isoformat(timespec='seconds')} "
             "by analyze_results.py.", ""]
    if all_warnings:
        lines += ["## Warnings", ""] + [f"> **WARNING:** {w}" + "\n>" for w in all_warnings] + [""]
    failed = [e for e in experiments if e.status != "ok"]
    if failed:
        lines += ["Experiments that did not run:", ""] + [f"- {e.name}: {e.status}: {e.error or 'no error recorded'}"
                                                          for e in failed] + [""]
    lines += setup_section(manifest, cpu)
    lines += experiments_section(experiments)
    ok = [e for e in experiments if e.status == "ok"]
    lines += e2e_section(ok)
    lines += speedup_section(comparisons, is_emulated(manifest))
    lines += category_section(ok) + top_ops_section(ok, top_n) + sme_section(ok, cpu)
    lines += isa_evidence_section(analysis_dir)
    compared = {(c.baseline.name, c.candidate.name) for c in comparisons}
    lines += kernels_section(ok) + kernel_diff_section(kernel_facts, compared) + portable_section(ok, top_n)
    lines += method_section(rules, stats)
    return lines


def write_text_atomic(path: Path, text: str) -> None:
    """Temporary file + rename: an interrupted or failed write never leaves a half file behind."""
    temporary = path.with_name(f".{path.name}.partial-{os.getpid()}")
    try:
        temporary.write_text(text)
        temporary.replace(path)
    finally:
        if temporary.exists():
            temporary.unlink()


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Write report.md from the files an analysis wrote "
                                     "(analysis_summary.json and the stage outputs beside it).",
                                     epilog="The report's sections and where each number comes from: "
                                     "scripts/README.md, 'Analysis files'.")
    parser.add_argument("--summary", type=Path, required=True, help="analysis_summary.json of the analysis")
    parser.add_argument("--manifest", type=Path, help="the run's manifest.json (setup facts, runners, threads)")
    parser.add_argument("--rules", type=Path, help="category rules JSON (trace_breakdown.py --rules)")
    parser.add_argument("--e2e-stats", type=Path, help="e2e_stats.json of timing_stats.py (bootstrap settings)")
    parser.add_argument("--kernel-facts", type=Path, help="kernel facts JSON of kernel_log.py --out (kernel diffs)")
    parser.add_argument("--top", type=int, default=10, help="operators in the top-N tables (default 10)")
    parser.add_argument("--out", type=Path, help="report path (default: report.md beside the summary)")
    args = parser.parse_args(argv)
    if args.top < 1:
        parser.error("--top must be >= 1")
    return args


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    console = Console(stderr=True)
    analysis_dir = args.summary.parent
    try:
        summary = read_json(args.summary, "analysis summary")
        manifest = read_json(args.manifest, "manifest") if args.manifest else {}
        rules = read_json(args.rules, "category rules") if args.rules else None
        stats = read_json(args.e2e_stats, "timing statistics") if args.e2e_stats else {}
        kernel_facts = read_json(args.kernel_facts, "kernel facts") if args.kernel_facts else {}
        experiments, comparisons = load_run(summary, manifest, args.summary)
        lines = report_lines(summary, manifest, experiments, comparisons, analysis_dir, args.top, rules, stats,
                             kernel_facts)
        write_text_atomic(args.out or analysis_dir / "report.md", "\n".join(lines) + "\n")
    except ReportError as error:
        console.print(f"[bold red]error:[/bold red] {error}", soft_wrap=True)
        return 2
    except OSError as error:  # a full disk or a read-only folder
        console.print(f"[bold red]error:[/bold red] cannot write {error.filename or 'report.md'}: "
                      f"{error.strerror or error}; free space or fix the permissions, then rerun", soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        console.print("[bold red]interrupted:[/bold red] nothing half-written is left; rerun the same command",
                      soft_wrap=True)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
