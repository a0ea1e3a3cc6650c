#!/usr/bin/env python3
"""Operator breakdown of ETDump traces: per-run sums, medians with bootstrap CIs, operator identity.

The stage of the analysis that turns a `trace.etdump` (and the model's `.etrecord`, when given)
into the operator tables, and owns the operator rules of this kit: the category rule table, the
kernel path read from XNNPACK datatype tags, and how operators of two experiments are paired. It
reads the events through the stage etdump_events.py (which must sit beside it);
analyze_results.py and recompute_results.py run it as a subprocess and read the files it writes.

Every operator event of every traced run is kept (ops.csv). Exclusive times are summed per
operator instance, op type and category within each run; the headline is the median over runs
(95 % bootstrap CI), with mean and p90 beside it, so one preempted run cannot rewrite the
breakdown. Runs whose Method::execute is an outlier are flagged in runs.csv and set aside from the
medians (breakdown.json says how many and why); they are never dropped from ops.csv.

Example:
    python scripts/trace_breakdown.py --etdump out/run/xnnpack_t1/trace.etdump --outdir /tmp/breakdown
    python scripts/trace_breakdown.py --compare out/run/portable_t1 out/run/xnnpack_t1 \\
        --pair portable_t1-\\>xnnpack_t1 --out /tmp/rows.csv
    python scripts/trace_breakdown.py --rules

Files written into --outdir (one traced experiment):

  ops.csv            one row per operator event per traced run
      run, position, delegate_call, instance_id, name, op_type, category, backend, kernel_path, duration_ms
  runs.csv           one row per traced run: Method::execute, per-category sums, outlier flag
      run, execute_ms, operators_ms, CONV_ms, GEMM_ms, DATA_MOVEMENT_ms, ELEMENTWISE_ms, OTHER_ms,
      UNATTRIBUTED_ms, sme_path_ms, outlier, outlier_reason
  op_instances.csv   one row per operator instance (stable across runs)
      instance_id, position, delegate_call, name, op_type, category, backend, median_ms, mean_ms,
      max_ms, share_pct, etrecord_node
  op_stats.csv       one row per op type, plus an UNATTRIBUTED row
      op_type, category, subcategory, backend, kernel_path, sme_path, instances_per_run, count,
      ms_per_inference, ci95_low_ms, ci95_high_ms, mean_ms, p90_ms, min_ms, max_ms,
      share_of_e2e_pct, delegation_opportunity
  categories.csv     one row per category, plus UNATTRIBUTED
      category, ms_per_inference, ci95_low_ms, ci95_high_ms, mean_ms, p90_ms, share_pct,
      share_ci95_low_pct, share_ci95_high_pct, sme_path_ms, sme_path_pct
  breakdown.json     runs kept and set aside, Method::execute statistics, category ranking, the
                     largest-category sentence, warnings (or the error when the trace is unusable)
  trace_events.json  Chrome trace events of this experiment (one track per run)

`--compare BASE_DIR CAND_DIR --pair NAME --out FILE` reads two such folders and writes the
category and op-type rows of comparison.csv (see scripts/README.md).

Column meanings: `ms_per_inference` is the MEDIAN over kept runs of the per-run sum; `share_*` is
that median over the median Method::execute of the kept runs (medians do not add up exactly, so
the shares sum to about, not exactly, 100 %); `instances_per_run` is operator events per run;
`etrecord_node` names the graph nodes from the ETRecord when one is given (an XNNPACK operator gets
the nodes its delegate call lowered: the ETRecord maps delegate calls, not XNNPACK's operators).
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pandas as pd
from rich.console import Console

SCHEMA_VERSION = 1
BOOTSTRAP_SAMPLES = 2000
BOOTSTRAP_SEED = 20251123
MIN_RUNS_FOR_CI = 10
# A traced run is an outlier when its Method::execute is this far from the median, in robust
# standard deviations (1.4826 x MAD) AND relative to the median: both, so a very steady trace
# (MAD of a microsecond) does not flag ordinary runs: an outlier took more than twice the median
# (a preemption or a page fault), not a little longer.
OUTLIER_ROBUST_SIGMAS = 5.0
OUTLIER_MIN_RELATIVE = 1.0
MIN_KEPT_RUNS = 3
OUTPUT_FILES = ("ops.csv", "runs.csv", "op_instances.csv", "op_stats.csv", "categories.csv", "breakdown.json",
                "trace_events.json")

UNATTRIBUTED = "UNATTRIBUTED"
CATEGORIES = ["CONV", "GEMM", "DATA_MOVEMENT", "ELEMENTWISE", "OTHER"]

# The one operator-category rule table of this kit. Ordered: the first match wins.
# source "xnnpack" matches the op type of an XNNPACK event (`Convolution (NHWC, F32) IGEMM`);
# source "portable" matches a portable kernel name with `native_call_` and the overload removed
# (`native_call_convolution.out` -> `convolution`).
CATEGORY_RULES: list[tuple[str, str, str, str]] = [
    ("xnnpack", r"^Convolution \(.*\) DWConv|^Depthwise Convolution", "CONV", "depthwise"),
    ("xnnpack", r"^Deconvolution", "CONV", "transposed"),
    ("xnnpack", r"^Convolution", "CONV", "conv"),
    ("xnnpack", r"^(Dynamic )?Fully Connected", "GEMM", "fully_connected"),
    ("xnnpack", r"^Batch Matrix Multiply", "GEMM", "batch_matmul"),
    ("xnnpack", r"^Scaled Dot-Product Attention", "GEMM", "attention"),
    ("xnnpack", r"^(Static )?Transpose|^Channel Shuffle|^Depth To Space|^Space To Depth", "DATA_MOVEMENT", "layout"),
    ("xnnpack", r"^Convert", "DATA_MOVEMENT", "convert"),
    ("xnnpack", r"^(Static )?(Reshape|Expand Dims)|^Copy \(", "DATA_MOVEMENT", "copy"),
    ("xnnpack", r"^(Static )?Slice|^Even Split|^Concatenate|^(Static )?(Constant )?Pad|^Constant Pad|^Unpooling",
     "DATA_MOVEMENT", "slice_concat_pad"),
    ("xnnpack", r"^(Add|Subtract|Multiply|Divide|Maximum|Minimum|Squared Difference|Copy ?Sign|AND|OR|XOR|"
                r"Invalid Binary Op)\b", "ELEMENTWISE", "binary"),
    ("xnnpack", r"^(Clamp|HardSwish|Sigmoid|GELU|Approx GELU|Tanh|ELU|Leaky ReLU|PReLU|ReLU|Negate|Abs|Square|"
                r"Square Root|Reciprocal Square Root|Exp|Log|Bankers Rounding|Ceiling|Floor|Truncation|Sine|"
                r"Cosine|Power|Invalid Unary Op)\b", "ELEMENTWISE", "unary"),
    ("xnnpack", r"^Softmax", "OTHER", "softmax"),
    ("xnnpack", r"Pooling", "OTHER", "pooling"),
    ("xnnpack", r"^(Mean|Sum|Reduce|Max|Min)\b", "OTHER", "reduction"),
    ("xnnpack", r"Norm", "OTHER", "normalization"),
    ("xnnpack", r"^Resize", "OTHER", "resize"),
    ("xnnpack", r"^RoPE", "OTHER", "rope"),
    ("portable", r"^(_?convolution|conv\d?d|conv_transpose\d?d|quantized_conv.*)$", "CONV", "conv"),
    ("portable", r"^(addmm|mm|bmm|baddbmm|linear|matmul|quantized_linear.*|_weight_int\w*mm)$", "GEMM", "matmul"),
    ("portable", r"^(permute_copy|transpose_copy|t_copy|pixel_shuffle|pixel_unshuffle)$", "DATA_MOVEMENT", "layout"),
    ("portable", r"^(_to_copy|_to_dim_order_copy|to_copy|quantize_per_\w+|dequantize_per_\w+|choose_qparams\w*)$",
     "DATA_MOVEMENT", "convert"),
    ("portable", r"^(view_copy|_unsafe_view|clone|copy|copy_|squeeze_copy|unsqueeze_copy|expand_copy|repeat|"
                 r"alias_copy|as_strided_copy|full|full_like|zeros|ones|fill)$", "DATA_MOVEMENT", "copy"),
    ("portable", r"^(cat|stack|split\w*|unbind_copy|slice_copy|select_copy|index|index_select|gather|"
                 r"constant_pad_nd|pad|narrow_copy|slice_scatter|select_scatter)$", "DATA_MOVEMENT", "slice_concat_pad"),
    ("portable", r"^(add|sub|rsub|mul|div|maximum|minimum|pow|where|eq|ne|lt|le|gt|ge|logical_\w+|bitwise_\w+|"
                 r"fmod|remainder)$", "ELEMENTWISE", "binary"),
    ("portable", r"^(relu|relu6|clamp|hardtanh|hardswish|hardsigmoid|sigmoid|tanh|gelu|elu|leaky_relu|silu|"
                 r"exp|log|sqrt|rsqrt|neg|abs|erf|sin|cos|floor|ceil|round|reciprocal|sign|prelu)$",
     "ELEMENTWISE", "unary"),
    ("portable", r"^_?(log_)?softmax$", "OTHER", "softmax"),
    ("portable", r"pool", "OTHER", "pooling"),
    ("portable", r"^(mean|sum|amax|amin|max|min|argmax|argmin|var|var_mean|prod|cumsum)$", "OTHER", "reduction"),
    ("portable", r"norm", "OTHER", "normalization"),
    ("portable", r"^(upsample\w*|grid_sampler\w*)$", "OTHER", "resize"),
]
COMPILED_RULES = [(source, re.compile(pattern), cat, sub) for source, pattern, cat, sub in CATEGORY_RULES]

# Datatype tags inside XNNPACK operator names and the kernel path each one means.
KERNEL_PATH_TAGS: list[tuple[str, str, str]] = [
    ("PF32", "kleidiai_sme", "fp32 LHS packed for KleidiAI SME/SME2 matmul kernels"),
    ("PF16", "kleidiai_sme", "fp16 LHS packed for KleidiAI SME/SME2 matmul kernels"),
    ("PQS8", "kleidiai_sme", "int8 (static) LHS packed for KleidiAI SME/SME2 matmul kernels"),
    ("QP8", "kleidiai_qp8", "dynamically quantized int8 LHS packed for KleidiAI: NEON dotprod/i8mm, or "
                            "SME/SME2 on a CPU that has it (counted as SME path only there)"),
    ("F32, F16, BF16", "xnnpack", "floating point, standard XNNPACK microkernels"),
    ("QS8, QU8, QC8, QC8W, QC4W, QB4W", "xnnpack", "int8/int4 quantized, standard XNNPACK microkernels"),
    ("QD8, QDU8", "xnnpack", "dynamically quantized activations, standard XNNPACK microkernels"),
    ("X8, X16, X32, X64", "xnnpack", "untyped data movement (element size only)"),
]
SME_PACKED_TAGS = {"PF32", "PF16", "PQS8"}
QP8_TAGS = {"QP8"}
# A datatype tag in an XNNPACK op name; layout tags (NHWC, NC, ND, NWC) are not. Two experiments'
# op types are paired by operation: the name with its datatype tags removed, so
# `Convolution (NHWC, F32) IGEMM` (fp32, or SME2 OFF) pairs with `Convolution (NHWC, QC8) IGEMM`
# (int8) and `Convolution (NHWC, PF32) IGEMM` (SME2 ON).
DATATYPE_TAG = re.compile(r"^(P?(F|BF)\d+|P?Q[A-Z]*\d+[A-Z]*|X\d+)$")


class BreakdownError(Exception):
    """Bad input: the message is one line naming the problem and the fix."""


# ----------------------------------------------------------------------------- rules


@functools.lru_cache(maxsize=None)  # the same few names repeat in every traced run
def op_type_of(name: str) -> str:
    """The operator name without XNNPACK's per-instance ` #N` suffix."""
    return re.sub(r" #\d+$", "", name)


def portable_base_name(name: str) -> str:
    """`native_call_convolution.out` -> `convolution` (the aten op the portable kernel implements)."""
    base = name[len("native_call_"):] if name.startswith("native_call_") else name
    return base.split(".", 1)[0]


@functools.lru_cache(maxsize=None)
def classify_op(op_type: str, backend: str) -> tuple[str, str]:
    """Category and sub-label of an operator from CATEGORY_RULES (first match wins)."""
    source = "portable" if backend == "portable" else "xnnpack"
    subject = portable_base_name(op_type) if source == "portable" else op_type
    for rule_source, pattern, category, subcategory in COMPILED_RULES:
        if rule_source == source and pattern.search(subject):
            return category, subcategory
    return "OTHER", "unmatched"


def datatype_tags(op_type: str) -> list[str]:
    """The tags inside the parentheses of an XNNPACK op name: `(NC, QS8, QC8W)` -> [NC, QS8, QC8W]."""
    match = re.search(r"\(([^)]*)\)", op_type)
    return [tag.strip() for tag in match.group(1).split(",")] if match else []


@functools.lru_cache(maxsize=None)
def kernel_path_of(op_type: str, backend: str) -> str:
    """portable, xnnpack, kleidiai_sme or kleidiai_qp8, from the datatype tag (see KERNEL_PATH_TAGS)."""
    if backend == "portable":
        return "portable"
    if backend != "XNNPACK":
        return "delegate"
    tags = set(datatype_tags(op_type))
    if tags & SME_PACKED_TAGS:
        return "kleidiai_sme"
    if tags & QP8_TAGS:
        return "kleidiai_qp8"
    return "xnnpack"


def on_sme_path(kernel_path: str, cpu_has_sme: bool) -> bool:
    """PF32/PF16/PQS8 always run SME/SME2 kernels; QP8 runs them only on a CPU with SME or SME2
    (XNNPACK ships QP8 GEMMs for neonsme and neonsme2 next to its NEON dotprod/i8mm ones)."""
    return kernel_path == "kleidiai_sme" or (kernel_path == "kleidiai_qp8" and cpu_has_sme)


@functools.lru_cache(maxsize=None)
def operation_key(op_type: str) -> str:
    """The op type without datatype tags: what two experiments' operators are paired on."""
    def strip(match: re.Match) -> str:
        kept = [tag.strip() for tag in match.group(1).split(",") if not DATATYPE_TAG.match(tag.strip())]
        return "(" + ", ".join(kept) + ")"
    return re.sub(r"\(([^)]*)\)", strip, op_type, count=1)


def rules_document() -> dict[str, Any]:
    """The rule tables, for a report to print (`--rules`)."""
    return {"schema_version": SCHEMA_VERSION, "categories": CATEGORIES + [UNATTRIBUTED],
            "category_rules": [{"source": s, "pattern": p, "category": c, "subcategory": sub}
                               for s, p, c, sub in CATEGORY_RULES],
            "kernel_path_tags": [{"tags": t, "kernel_path": k, "meaning": m} for t, k, m in KERNEL_PATH_TAGS],
            "pairing": "op types of two experiments are paired by backend and operation: the XNNPACK name "
                       "with its datatype tags removed (F32, PF32, QC8, QS8, QD8, X32, ...)"}


# ----------------------------------------------------------------------------- statistics


def bootstrap_picks(n: int, seed: int = BOOTSTRAP_SEED, samples: int = BOOTSTRAP_SAMPLES) -> np.ndarray:
    """Resampled run indices (samples x n), from a fixed seed: the same data gives the same CIs."""
    return np.random.default_rng(seed).integers(0, n, size=(samples, n))


def median_ci(values: np.ndarray, picks: Optional[np.ndarray]) -> tuple[Optional[float], Optional[float]]:
    """95 % percentile-bootstrap CI of the median of each column (None below MIN_RUNS_FOR_CI runs)."""
    if picks is None:
        return None, None
    medians = np.median(values[picks], axis=1)
    return float(np.percentile(medians, 2.5)), float(np.percentile(medians, 97.5))


def summary_of(values: np.ndarray, picks: Optional[np.ndarray]) -> dict[str, Any]:
    low, high = median_ci(values, picks)
    return {"median_ms": float(np.median(values)), "ci95_low_ms": low, "ci95_high_ms": high,
            "mean_ms": float(np.mean(values)), "p90_ms": float(np.percentile(values, 90)),
            "min_ms": float(values.min()), "max_ms": float(values.max())}


def outlier_runs(execute_ms: np.ndarray) -> dict[int, str]:
    """Runs whose Method::execute is far from the median: {run: reason}."""
    median = float(np.median(execute_ms))
    robust_sd = 1.4826 * float(np.median(np.abs(execute_ms - median)))
    limit = max(OUTLIER_ROBUST_SIGMAS * robust_sd, OUTLIER_MIN_RELATIVE * median)
    return {int(run): (f"Method::execute {value:.4g} ms vs median {median:.4g} ms (more than "
                       f"{limit:.3g} ms away: {OUTLIER_ROBUST_SIGMAS:g} robust SD and {100 * OUTLIER_MIN_RELATIVE:.0f} %)")
            for run, value in enumerate(execute_ms) if abs(value - median) > limit}


# ----------------------------------------------------------------------------- events (from etdump_events.py)


@dataclass
class TraceEvent:
    """One row of etdump_events.py's events.csv (its --help documents the columns): one event of one
    traced run, times in microseconds from the run's Method::execute start."""
    name: str
    kind: str  # execute, delegate_call, operator_call, op
    start_us: float
    dur_us: float
    instruction_id: Optional[int]
    backend: str = ""
    node: str = ""
    position: int = 0
    delegate_call: int = 0


@dataclass
class Trace:
    runs: list[list[TraceEvent]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def opaque_delegate_ops(events: list[TraceEvent]) -> list[TraceEvent]:
    """Delegate calls with no per-op events inside (backend built without profiling) become one op row."""
    with_children = {e.instruction_id for e in events if e.kind == "op" and e.backend != "portable"}
    last = max((e.position for e in events if e.kind == "op"), default=0)
    opaque = []
    for e in events:
        if e.kind == "delegate_call" and e.instruction_id not in with_children:
            last += 1
            opaque.append(TraceEvent(f"{e.backend} delegate call (no per-op events) #{e.instruction_id}", "op",
                                     e.start_us, e.dur_us, e.instruction_id, e.backend, "", last, e.delegate_call))
    return opaque


def read_events(etdump: Path, etrecord: Optional[Path], work: Path) -> list[list[TraceEvent]]:
    """Every event of every traced run, from the stage etdump_events.py (which reads the ETDump)."""
    script = Path(__file__).resolve().parent / "etdump_events.py"
    if not script.is_file():
        raise BreakdownError(f"{script}: missing; trace_breakdown.py runs it to read ETDumps: download it "
                             "beside this script")
    events_csv = work / "events.csv"
    command = [sys.executable, str(script), "--etdump", str(etdump), "--out", str(events_csv)]
    done = subprocess.run(command + (["--etrecord", str(etrecord)] if etrecord else []), capture_output=True,
                          text=True)
    if done.returncode == 130:
        raise KeyboardInterrupt
    if done.returncode != 0:
        errors = [line.split("error:", 1)[1].strip() for line in done.stderr.splitlines() if "error:" in line]
        raise BreakdownError(errors[0] if errors else f"etdump_events.py failed (exit {done.returncode}) on "
                             f"{etdump}; run it alone to see why")
    table = pd.read_csv(events_csv, keep_default_na=False, dtype={"name": str, "backend": str, "node": str})
    runs: list[list[TraceEvent]] = [[] for _ in range(int(table["run"].max()) + 1)] if len(table) else []
    columns = [table[c].tolist() for c in ("run", "name", "kind", "start_us", "dur_us", "instruction_id", "backend",
                                           "node", "position", "delegate_call")]
    for run, *values in zip(*columns):
        runs[run].append(TraceEvent(*values))
    return runs


def load_trace(etdump: Path, etrecord: Optional[Path]) -> Trace:
    with tempfile.TemporaryDirectory(prefix="trace_breakdown_") as tmp:
        runs = read_events(etdump, etrecord, Path(tmp))
    trace = Trace()
    for events in runs:
        opaque = opaque_delegate_ops(events)
        if opaque and not trace.warnings:
            trace.warnings.append("some delegate calls have no per-operator events (the runner's backend was built "
                                  "without profiling): each is shown as one opaque row")
        trace.runs.append(events + opaque)
    return trace


# ----------------------------------------------------------------------------- tables


def instance_id(event: TraceEvent) -> str:
    """Stable id of an operator instance: its position in the run, its delegate call, its name."""
    where = f"call {event.delegate_call}" if event.delegate_call else "portable"
    return f"{event.position:04d} {where}: {event.name}"


def ops_table(trace: Trace) -> pd.DataFrame:
    rows = []
    for run, events in enumerate(trace.runs):
        for event in events:
            if event.kind != "op":
                continue
            op_type = op_type_of(event.name)
            rows.append({"run": run, "position": event.position, "delegate_call": event.delegate_call,
                         "instance_id": instance_id(event), "name": event.name, "op_type": op_type,
                         "category": classify_op(op_type, event.backend)[0], "backend": event.backend,
                         "kernel_path": kernel_path_of(op_type, event.backend), "duration_ms": event.dur_us / 1000.0})
    columns = ["run", "position", "delegate_call", "instance_id", "name", "op_type", "category", "backend",
               "kernel_path", "duration_ms"]
    return pd.DataFrame(rows, columns=columns)


def per_run(ops: pd.DataFrame, key: str, n_runs: int, mask: Optional[pd.Series] = None) -> pd.DataFrame:
    """runs x key matrix of summed exclusive time (0 where a key has no event in a run)."""
    frame = ops if mask is None else ops[mask]
    table = frame.pivot_table(index="run", columns=key, values="duration_ms", aggfunc="sum", fill_value=0.0)
    return table.reindex(index=range(n_runs), fill_value=0.0)


def runs_table(ops: pd.DataFrame, execute_ms: np.ndarray, cpu_has_sme: bool) -> pd.DataFrame:
    n_runs = len(execute_ms)
    by_category = per_run(ops, "category", n_runs).reindex(columns=CATEGORIES, fill_value=0.0)
    operators = by_category.sum(axis=1).to_numpy()
    sme = ops["kernel_path"].map(lambda path: on_sme_path(path, cpu_has_sme)) if len(ops) else pd.Series(dtype=bool)
    sme_ms = ops[sme.astype(bool)].groupby("run")["duration_ms"].sum().reindex(range(n_runs), fill_value=0.0)
    outliers = outlier_runs(execute_ms)
    table = pd.DataFrame({"run": range(n_runs), "execute_ms": execute_ms, "operators_ms": operators})
    for category in CATEGORIES:
        table[f"{category}_ms"] = by_category[category].to_numpy()
    table[f"{UNATTRIBUTED}_ms"] = execute_ms - operators
    table["sme_path_ms"] = sme_ms.to_numpy()
    table["outlier"] = [run in outliers for run in range(n_runs)]
    table["outlier_reason"] = [outliers.get(run, "") for run in range(n_runs)]
    return table


def kept_runs(runs: pd.DataFrame) -> np.ndarray:
    """Runs the medians use: all but the outliers (all of them when too few would remain)."""
    kept = runs.loc[~runs["outlier"].astype(bool), "run"].to_numpy()
    return kept if kept.size >= MIN_KEPT_RUNS else runs["run"].to_numpy()


def op_stats_table(ops: pd.DataFrame, runs: pd.DataFrame, cpu_has_sme: bool) -> pd.DataFrame:
    """Per op type: instances per run and the median of per-run sums, with the UNATTRIBUTED remainder."""
    n_runs = len(runs)
    kept = kept_runs(runs)
    picks = bootstrap_picks(kept.size) if kept.size >= MIN_RUNS_FOR_CI else None
    median_execute = float(np.median(runs["execute_ms"].to_numpy()[kept]))
    # A portable op is a delegation opportunity in a model that already uses a delegate; in a
    # portable-only baseline every op is portable on purpose.
    uses_delegate = bool((ops["backend"] != "portable").any())
    keyed = ops.assign(key=ops["op_type"] + "\t" + ops["backend"])
    sums = per_run(keyed, "key", n_runs).to_numpy()[kept] if len(ops) else np.zeros((kept.size, 0))
    columns = list(per_run(keyed, "key", n_runs).columns) if len(ops) else []
    counts = keyed.groupby("key").size()
    rows = []
    for index, key in enumerate(columns):
        op_type, backend = key.split("\t")
        category, subcategory = classify_op(op_type, backend)
        kernel_path = kernel_path_of(op_type, backend)
        stats = summary_of(sums[:, index], picks)
        rows.append({"op_type": op_type, "category": category, "subcategory": subcategory, "backend": backend,
                     "kernel_path": kernel_path, "sme_path": on_sme_path(kernel_path, cpu_has_sme),
                     "instances_per_run": int(round(counts[key] / n_runs)), "count": int(counts[key]),
                     "ms_per_inference": stats["median_ms"], "ci95_low_ms": stats["ci95_low_ms"],
                     "ci95_high_ms": stats["ci95_high_ms"], "mean_ms": stats["mean_ms"], "p90_ms": stats["p90_ms"],
                     "min_ms": stats["min_ms"], "max_ms": stats["max_ms"],
                     "share_of_e2e_pct": 100.0 * stats["median_ms"] / median_execute,
                     "delegation_opportunity": uses_delegate and backend == "portable"})
    remainder = summary_of(runs[f"{UNATTRIBUTED}_ms"].to_numpy()[kept], picks)
    rows.append({"op_type": "(framework and delegate overhead)", "category": UNATTRIBUTED, "subcategory": "remainder",
                 "backend": "", "kernel_path": "", "sme_path": False, "instances_per_run": 1, "count": n_runs,
                 "ms_per_inference": remainder["median_ms"], "ci95_low_ms": remainder["ci95_low_ms"],
                 "ci95_high_ms": remainder["ci95_high_ms"], "mean_ms": remainder["mean_ms"],
                 "p90_ms": remainder["p90_ms"], "min_ms": remainder["min_ms"], "max_ms": remainder["max_ms"],
                 "share_of_e2e_pct": 100.0 * remainder["median_ms"] / median_execute,
                 "delegation_opportunity": False})
    table = pd.DataFrame(rows)
    ranked = table[table["category"] != UNATTRIBUTED].sort_values(["ms_per_inference", "mean_ms"], ascending=False)
    return pd.concat([ranked, table[table["category"] == UNATTRIBUTED]], ignore_index=True)


def category_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per category (and UNATTRIBUTED): median of per-run sums, its CI, and its share of the median E2E."""
    kept = kept_runs(runs)
    picks = bootstrap_picks(kept.size) if kept.size >= MIN_RUNS_FOR_CI else None
    execute = runs["execute_ms"].to_numpy()[kept]
    median_execute = float(np.median(execute))
    execute_medians = np.median(execute[picks], axis=1) if picks is not None else None
    rows = []
    for category in CATEGORIES + [UNATTRIBUTED]:
        values = runs[f"{category}_ms"].to_numpy()[kept]
        stats = summary_of(values, picks)
        share_low = share_high = None
        if picks is not None:
            shares = 100.0 * np.median(values[picks], axis=1) / execute_medians
            share_low, share_high = float(np.percentile(shares, 2.5)), float(np.percentile(shares, 97.5))
        rows.append({"category": category, "ms_per_inference": stats["median_ms"],
                     "ci95_low_ms": stats["ci95_low_ms"], "ci95_high_ms": stats["ci95_high_ms"],
                     "mean_ms": stats["mean_ms"], "p90_ms": stats["p90_ms"],
                     "share_pct": 100.0 * stats["median_ms"] / median_execute,
                     "share_ci95_low_pct": share_low, "share_ci95_high_pct": share_high,
                     "sme_path_ms": 0.0, "sme_path_pct": 0.0})
    return pd.DataFrame(rows)


def add_sme_path(categories: pd.DataFrame, ops: pd.DataFrame, runs: pd.DataFrame, cpu_has_sme: bool) -> None:
    """sme_path_ms per category: median over kept runs of the SME-path operators' time in it."""
    kept = kept_runs(runs)
    if ops.empty:
        return
    sme = ops[ops["kernel_path"].map(lambda path: on_sme_path(path, cpu_has_sme)).astype(bool)]
    if sme.empty:
        return
    by_category = per_run(sme, "category", len(runs)).to_numpy()[kept]
    columns = list(per_run(sme, "category", len(runs)).columns)
    for index, category in enumerate(columns):
        row = categories.index[categories["category"] == category][0]
        median = float(np.median(by_category[:, index]))
        categories.loc[row, "sme_path_ms"] = median
        total = categories.loc[row, "ms_per_inference"]
        categories.loc[row, "sme_path_pct"] = 100.0 * median / total if total > 0 else 0.0


def instances_table(ops: pd.DataFrame, runs: pd.DataFrame, nodes: dict[str, str]) -> pd.DataFrame:
    kept = set(kept_runs(runs).tolist())
    median_execute = float(np.median(runs.loc[runs["run"].isin(kept), "execute_ms"]))
    frame = ops[ops["run"].isin(kept)]
    grouped = frame.groupby("instance_id", sort=False).agg(
        position=("position", "first"), delegate_call=("delegate_call", "first"), name=("name", "first"),
        op_type=("op_type", "first"), category=("category", "first"), backend=("backend", "first"),
        median_ms=("duration_ms", "median"), mean_ms=("duration_ms", "mean"), max_ms=("duration_ms", "max"))
    grouped["share_pct"] = 100.0 * grouped["median_ms"] / median_execute
    grouped["etrecord_node"] = [nodes.get(i, "") for i in grouped.index]
    return grouped.reset_index().sort_values("position", kind="stable")[
        ["instance_id", "position", "delegate_call", "name", "op_type", "category", "backend", "median_ms",
         "mean_ms", "max_ms", "share_pct", "etrecord_node"]]


def ranking_of(categories: pd.DataFrame) -> dict[str, Any]:
    """Categories by median share, and whether the largest is clearly largest (share CIs apart)."""
    ranked = categories.sort_values("ms_per_inference", ascending=False, kind="stable")
    order = ranked["category"].tolist()
    top, second = ranked.iloc[0], ranked.iloc[1]
    has_ci = top["share_ci95_low_pct"] is not None and not pd.isna(top["share_ci95_low_pct"])
    label = {UNATTRIBUTED: "UNATTRIBUTED (framework and delegate overhead)"}
    if not has_ci:
        clear = None
        sentence = (f"{label.get(top['category'], top['category'])} is the largest category at "
                    f"{top['share_pct']:.0f} % (too few traced runs for a CI of the shares)")
    elif top["share_ci95_low_pct"] > second["share_ci95_high_pct"]:
        clear = True
        sentence = (f"{label.get(top['category'], top['category'])} is the largest category at {top['share_pct']:.0f} % "
                    f"(95 % CI {top['share_ci95_low_pct']:.0f}-{top['share_ci95_high_pct']:.0f} %)")
    else:
        clear = False
        sentence = (f"no clear largest category: {top['category']} {top['share_pct']:.0f} % "
                    f"({top['share_ci95_low_pct']:.0f}-{top['share_ci95_high_pct']:.0f} %) and {second['category']} "
                    f"{second['share_pct']:.0f} % ({second['share_ci95_low_pct']:.0f}-"
                    f"{second['share_ci95_high_pct']:.0f} %) overlap")
    return {"ranking": order, "largest": top["category"] if clear is not False else None,
            "largest_is_clear": clear, "largest_sentence": sentence}


def chrome_events(trace: Trace, name: str) -> list[dict[str, Any]]:
    """Chrome trace events of one experiment (pid 1; the caller renumbers it), one track per run."""
    events: list[dict[str, Any]] = [{"ph": "M", "name": "process_name", "pid": 1, "tid": 0, "args": {"name": name}}]
    offset = 0.0
    for run, run_events in enumerate(trace.runs):
        tid = run + 1
        events.append({"ph": "M", "name": "thread_name", "pid": 1, "tid": tid, "args": {"name": f"run {run}"}})
        execute = next(e for e in run_events if e.kind == "execute")
        parents = {e.instruction_id: e for e in run_events if e.kind in ("delegate_call", "operator_call")}
        for event in sorted(run_events, key=lambda e: (e.start_us, -e.dur_us)):
            start, end = event.start_us, event.start_us + event.dur_us
            parent = parents.get(event.instruction_id) if event.kind == "op" else execute
            if event.kind != "execute" and parent is not None:
                # XNNPACK op times are whole microseconds laid end to end: keep them inside their parent.
                start = min(max(start, parent.start_us), parent.start_us + parent.dur_us)
                end = min(max(end, start), parent.start_us + parent.dur_us)
            op_type = op_type_of(event.name)
            args: dict[str, Any] = {"run": run}
            category = event.kind
            if event.kind == "op":
                category = classify_op(op_type, event.backend)[0]
                args.update(op_type=op_type, backend=event.backend, kernel_path=kernel_path_of(op_type, event.backend),
                            instance_id=instance_id(event))
            events.append({"ph": "X", "name": event.name, "cat": category, "pid": 1, "tid": tid,
                           "ts": round(offset + start, 3), "dur": round(end - start, 3), "args": args})
        # Runs are laid one after another (with a gap) so every track has its own time window.
        offset += execute.dur_us * 1.1
    return events


def write_csv(table: pd.DataFrame, path: Path) -> None:
    # 10 significant digits keep nanosecond resolution for durations up to seconds.
    write_text_atomic(path, table.to_csv(index=False, float_format="%.10g"))


def write_text_atomic(path: Path, text: str) -> None:
    """Temporary file + rename: an interrupted or failed write never leaves a half file behind."""
    temporary = path.with_name(f".{path.name}.partial-{os.getpid()}")
    try:
        temporary.write_text(text)
        temporary.replace(path)
    finally:
        if temporary.exists():
            temporary.unlink()


def jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return None if math.isnan(float(value)) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def write_json(path: Path, data: dict[str, Any]) -> None:
    write_text_atomic(path, json.dumps(jsonable(data), indent=2) + "\n")


def breakdown(etdump: Path, outdir: Path, etrecord: Optional[Path], cpu_has_sme: bool, name: str) -> dict[str, Any]:
    """Read one ETDump and write every file of one experiment; returns breakdown.json's content."""
    outdir.mkdir(parents=True, exist_ok=True)
    try:
        trace = load_trace(etdump, etrecord)
    except BreakdownError as error:
        # Outputs of an earlier analysis are never left looking current beside this error; renamed, not
        # deleted: they may be the only copy.
        retired = [name for name in OUTPUT_FILES if name != "breakdown.json" and (outdir / name).exists()]
        for name in retired:
            (outdir / name).replace(outdir / (name + ".stale"))
        result = {"schema_version": SCHEMA_VERSION, "etdump": str(etdump), "error": str(error), "retired": retired}
        write_json(outdir / "breakdown.json", result)
        return result
    execute_ms = np.asarray([next(e.dur_us for e in run if e.kind == "execute") / 1000.0 for run in trace.runs])
    ops = ops_table(trace)
    runs = runs_table(ops, execute_ms, cpu_has_sme)
    stats = op_stats_table(ops, runs, cpu_has_sme)
    categories = category_table(runs)
    add_sme_path(categories, ops, runs, cpu_has_sme)
    nodes = {instance_id(e): e.node for e in trace.runs[0] if e.kind == "op"}
    kept = kept_runs(runs)
    picks = bootstrap_picks(kept.size) if kept.size >= MIN_RUNS_FOR_CI else None
    outliers = runs[runs["outlier"]]
    warnings_out = list(trace.warnings)
    if len(outliers):
        set_aside = len(runs) - kept.size
        warnings_out.append(f"{len(outliers)} of {len(runs)} traced runs are Method::execute outliers "
                            f"(runs {', '.join(str(r) for r in outliers['run'])}); "
                            + (f"{set_aside} set aside from the medians (kept in ops.csv, flagged in runs.csv)"
                               if set_aside else f"kept: fewer than {MIN_KEPT_RUNS} runs would remain"))
    if picks is None:
        warnings_out.append(f"only {kept.size} traced runs: too few for confidence intervals "
                            f"(need {MIN_RUNS_FOR_CI}); raise runs in the config")
    result = {"schema_version": SCHEMA_VERSION, "name": name, "etdump": str(etdump),
              "etrecord": str(etrecord) if etrecord else None, "cpu_has_sme": cpu_has_sme, "error": None,
              "traced_runs": len(runs), "kept_runs": int(kept.size),
              "outlier_runs": [{"run": int(r["run"]), "execute_ms": float(r["execute_ms"]), "reason": r["outlier_reason"]}
                               for _, r in outliers.iterrows()],
              "outlier_rule": f"|Method::execute - median| > max({OUTLIER_ROBUST_SIGMAS:g} x 1.4826 x MAD, "
                              f"{100 * OUTLIER_MIN_RELATIVE:.0f} % of the median)",
              "execute": summary_of(execute_ms[kept], picks), "execute_all_runs_ms": execute_ms.tolist(),
              "operators_per_run": int(len(ops) / len(runs)) if len(runs) else 0,
              **ranking_of(categories), "warnings": warnings_out}
    write_csv(ops, outdir / "ops.csv")
    write_csv(runs, outdir / "runs.csv")
    write_csv(instances_table(ops, runs, nodes), outdir / "op_instances.csv")
    write_csv(stats, outdir / "op_stats.csv")
    write_csv(categories, outdir / "categories.csv")
    write_text_atomic(outdir / "trace_events.json", json.dumps(chrome_events(trace, name)))
    write_json(outdir / "breakdown.json", result)
    return result


# ----------------------------------------------------------------------------- comparison


def read_folder(folder: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    try:
        ops = pd.read_csv(folder / "ops.csv", keep_default_na=False)
        runs = pd.read_csv(folder / "runs.csv")
    except (FileNotFoundError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise BreakdownError(f"{folder}: cannot read ops.csv/runs.csv ({type(error).__name__}); run "
                             "trace_breakdown.py --etdump on its trace first") from None
    return ops, runs


def ratio_ci(base: np.ndarray, cand: np.ndarray, seed: int) -> tuple[Optional[float], Optional[float]]:
    """95 % CI of median(base)/median(cand), traced runs of each side resampled independently."""
    if base.size < MIN_RUNS_FOR_CI or cand.size < MIN_RUNS_FOR_CI:
        return None, None
    b = np.median(base[bootstrap_picks(base.size, seed)], axis=1)
    c = np.median(cand[bootstrap_picks(cand.size, seed + 1)], axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = b / c
    if not np.all(np.isfinite(ratios)):
        return None, None
    return float(np.percentile(ratios, 2.5)), float(np.percentile(ratios, 97.5))


def speedup_of(base: float, cand: float) -> Optional[float]:
    return base / cand if base > 0 and cand > 0 else None


def compare_rows(pair: str, base_dir: Path, cand_dir: Path) -> pd.DataFrame:
    """Category and op-type rows of comparison.csv: medians of per-run sums, speedup = their ratio."""
    (base_ops, base_runs), (cand_ops, cand_runs) = read_folder(base_dir), read_folder(cand_dir)
    rows = []
    sides = []
    for ops, runs in ((base_ops, base_runs), (cand_ops, cand_runs)):
        kept = kept_runs(runs)
        sides.append((ops, runs, kept, float(np.median(runs["execute_ms"].to_numpy()[kept]))))
    (b_ops, b_runs, b_kept, b_exe), (c_ops, c_runs, c_kept, c_exe) = sides
    for category in CATEGORIES + [UNATTRIBUTED]:
        b = b_runs[f"{category}_ms"].to_numpy()[b_kept]
        c = c_runs[f"{category}_ms"].to_numpy()[c_kept]
        bm, cm = float(np.median(b)), float(np.median(c))
        low, high = ratio_ci(b, c, BOOTSTRAP_SEED) if bm > 0 and cm > 0 else (None, None)
        rows.append({"pair": pair, "level": "category", "name": category, "baseline_ms": bm, "candidate_ms": cm,
                     "speedup": speedup_of(bm, cm), "speedup_ci_low": low, "speedup_ci_high": high,
                     "baseline_share_pct": 100.0 * bm / b_exe, "candidate_share_pct": 100.0 * cm / c_exe,
                     "share_change_pp": 100.0 * cm / c_exe - 100.0 * bm / b_exe})

    def keyed(ops: pd.DataFrame, n_runs: int, kept: np.ndarray) -> tuple[pd.DataFrame, dict[str, str]]:
        frame = ops.assign(key=[operation_key(t) + "|" + b for t, b in zip(ops["op_type"], ops["backend"])])
        names = frame.groupby("key")["op_type"].agg(lambda s: " + ".join(dict.fromkeys(s))).to_dict()
        return per_run(frame, "key", n_runs).iloc[kept], names

    b_table, b_names = keyed(b_ops, len(b_runs), b_kept)
    c_table, c_names = keyed(c_ops, len(c_runs), c_kept)
    # Sorted by name first, so rows that tie (zero-time operators) keep one order in every analysis.
    keys = sorted(sorted(set(b_table.columns) | set(c_table.columns)),
                  key=lambda k: -float(np.median(b_table[k])) if k in b_table else 0.0)
    for key in keys:
        b = b_table[key].to_numpy() if key in b_table else None
        c = c_table[key].to_numpy() if key in c_table else None
        bm = float(np.median(b)) if b is not None else None
        cm = float(np.median(c)) if c is not None else None
        names = [n for n in (b_names.get(key), c_names.get(key)) if n]
        name = names[0] if len(set(names)) == 1 else " -> ".join(names)
        both = b is not None and c is not None
        speedup = speedup_of(bm, cm) if both else None  # one-sided rows have no speedup
        low, high = ratio_ci(b, c, BOOTSTRAP_SEED) if both and speedup is not None else (None, None)
        rows.append({"pair": pair, "level": "op_type", "name": name, "baseline_ms": bm, "candidate_ms": cm,
                     "speedup": speedup, "speedup_ci_low": low, "speedup_ci_high": high,
                     "baseline_share_pct": 100.0 * bm / b_exe if bm is not None else None,
                     "candidate_share_pct": 100.0 * cm / c_exe if cm is not None else None,
                     "share_change_pp": (100.0 * (cm or 0.0) / c_exe - 100.0 * (bm or 0.0) / b_exe)})
    columns = ["pair", "level", "name", "baseline_ms", "candidate_ms", "speedup", "speedup_ci_low",
               "speedup_ci_high", "baseline_share_pct", "candidate_share_pct", "share_change_pp"]
    return pd.DataFrame(rows, columns=columns)


# ----------------------------------------------------------------------------- main


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    doc = __doc__ or ""
    epilog = doc[doc.index("Files written into --outdir"):]
    parser = argparse.ArgumentParser(
        description="Operator breakdown of ETDump traces (per-run sums, medians with bootstrap CIs, operator "
                    "identity) and the operator rows of a comparison. Owns the category rule table.",
        epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter)
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--etdump", type=Path, help="one trace.etdump to break down (with --outdir)")
    what.add_argument("--jobs", type=Path, help='JSON file: {"traces": [{"etdump", "outdir", "etrecord", "name"}], '
                      '"compares": [{"pair", "baseline", "candidate", "out"}], "rules_out": FILE} (one process '
                      'for all; rules_out receives the --rules JSON; a compare is skipped when a trace of the same '
                      'job failed for one of its folders)')
    what.add_argument("--compare", nargs=2, type=Path, metavar=("BASE_DIR", "CAND_DIR"),
                      help="two folders this script wrote: category and op-type rows of comparison.csv (with --out)")
    what.add_argument("--rules", action="store_true", help="print the rule tables as JSON and exit")
    parser.add_argument("--outdir", type=Path, help="--etdump: folder for the files listed below")
    parser.add_argument("--etrecord", type=Path, help="--etdump: the model's ETRecord (adds backend and node names)")
    parser.add_argument("--name", help="--etdump: experiment name in trace_events.json (default: the folder name)")
    parser.add_argument("--cpu-has-sme", action="store_true",
                        help="the CPU that ran the trace has SME or SME2 (QP8 operators then count as SME path)")
    parser.add_argument("--pair", help="--compare: pair name written in the rows (default BASE->CAND)")
    parser.add_argument("--out", type=Path, help="--compare: CSV to write")
    args = parser.parse_args(argv)
    if args.etdump and not args.outdir:
        parser.error("--etdump needs --outdir")
    if args.compare and not args.out:
        parser.error("--compare needs --out")
    return args


def read_jobs(path: Path) -> dict[str, Any]:
    try:
        jobs = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise BreakdownError(f"{path}: cannot read the jobs file ({type(error).__name__}); write it as documented "
                             "in --help") from None
    if not isinstance(jobs, dict) or not isinstance(jobs.get("traces", []), list) \
            or not isinstance(jobs.get("compares", []), list):
        raise BreakdownError(f"{path}: the jobs file must be an object with lists 'traces' and 'compares'; "
                             "write it as analyze_results.py does (see --help)")
    return jobs


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    console = Console(stderr=True)
    try:
        if args.rules:
            print(json.dumps(rules_document(), indent=2))
            return 0
        if args.compare:
            base, cand = args.compare
            write_csv(compare_rows(args.pair or f"{base.name}->{cand.name}", base, cand), args.out)
            return 0
        if args.etdump:
            jobs = {"traces": [{"etdump": str(args.etdump), "outdir": str(args.outdir),
                                "etrecord": str(args.etrecord) if args.etrecord else None,
                                "name": args.name or args.outdir.name}], "compares": []}
        else:
            jobs = read_jobs(args.jobs)
        failed: set[Path] = set()
        for job in jobs.get("traces", []):
            etrecord = Path(job["etrecord"]) if job.get("etrecord") else None
            result = breakdown(Path(job["etdump"]), Path(job["outdir"]), etrecord, args.cpu_has_sme,
                               job.get("name") or Path(job["outdir"]).name)
            if result.get("error"):
                failed.add(Path(job["outdir"]).resolve())
                console.print(f"[bold red]error:[/bold red] {result['error']}", soft_wrap=True, highlight=False)
        if jobs.get("rules_out"):
            Path(jobs["rules_out"]).write_text(json.dumps(rules_document(), indent=2) + "\n")
        for job in jobs.get("compares", []):
            if {Path(job["baseline"]).resolve(), Path(job["candidate"]).resolve()} & failed:
                continue  # a side whose trace failed above (its error is printed) has no tables to compare
            write_csv(compare_rows(job["pair"], Path(job["baseline"]), Path(job["candidate"])), Path(job["out"]))
    except BreakdownError as error:
        console.print(f"[bold red]error:[/bold red] {error}", soft_wrap=True, highlight=False)
        return 1
    except KeyError as error:
        console.print(f"[bold red]error:[/bold red] a job lacks the key {error}; see --help for the jobs format",
                      soft_wrap=True, highlight=False)
        return 1
    except KeyboardInterrupt:  # the caller reports the interruption; no half file is left (atomic writes)
        return 130
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
