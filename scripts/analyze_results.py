#!/usr/bin/env python3
"""Turn a profiling run directory (or one ETDump) into CSVs, charts, a Perfetto trace and a report.

Reads the run directory written by mac_pipeline.py / android_pipeline.py (manifest.json plus one
`<experiment>_t<threads>/` folder per experiment with timing.json, trace.etdump, runner.log and,
for kernel-log runners, kernels.log). For every experiment it answers: how long one inference takes
(timing mode, no tracer), where that time goes (trace mode: exclusive time per operator from the
ETDump, read with ExecuTorch's Inspector), which operators ran on the KleidiAI SME/SME2 packed path
(read from the datatype tag in XNNPACK operator names) and which XNNPACK microkernels were
registered (kernels.log). For every compare pair (SME2 OFF -> ON, portable -> XNNPACK, ...) it
computes the speedup with a bootstrap confidence interval and per-category / per-operator shifts.

Example:
    python scripts/analyze_results.py --run-dir out/my_run
    python scripts/analyze_results.py --etdump trace.etdump --etrecord model.etrecord

Files written (run-directory mode; `--etdump` mode writes the same set into one folder):

  <experiment>/ops.csv         one row per operator event per traced run
      run, name, op_type, category, backend, kernel_path, duration_ms
  <experiment>/op_stats.csv    one row per op_type, plus an UNATTRIBUTED row (shares add to 100 %)
      op_type, category, subcategory, backend, kernel_path, sme_path, count, instances_per_run,
      total_ms, ms_per_inference, mean_ms, median_ms, min_ms, max_ms, share_of_e2e_pct,
      delegation_opportunity
  <experiment>/categories.csv  one row per category, plus UNATTRIBUTED (shares add to 100 %)
      category, ms_per_inference, share_pct, sme_path_ms, sme_path_pct
  <experiment>/kernels.csv     only when <experiment>/kernels.log exists
      kind, name, datatype, operation, tile, isa, isa_family, is_kleidiai, registrations
  comparison.csv               one row per compare pair and level (e2e, category, op_type)
      pair, level, name, baseline_ms, candidate_ms, speedup, speedup_ci_low, speedup_ci_high,
      baseline_share_pct, candidate_share_pct, share_change_pp
  report.md, charts/*.png, trace.json (Chrome trace-event format, opens in ui.perfetto.dev),
  analysis_summary.json (the headline numbers for machines; `--json` also prints it)

Column meanings: `ms_per_inference` is the mean over traced runs of the summed exclusive time
(so rows add up to the mean Method::execute time); `share_*_pct` is that over the mean
Method::execute time; `speedup` is baseline / candidate (> 1 means the candidate is faster);
`kernel_path` is portable, xnnpack, kleidiai_sme (PF32/PF16/PQS8 tags) or kleidiai_qp8 (QP8 tag);
`sme_path` is true when the op ran on the KleidiAI SME/SME2 packed path.

Re-running: analysis outputs are derived data. In run-directory mode a re-run regenerates exactly
the files listed above; the pipeline's own files (manifest.json, timing.json, trace.etdump,
runner.log, kernels.log) are only read, never written. An output of an earlier run that this run
cannot regenerate (its trace is now unreadable) is renamed `<name>.stale` and a warning says so.
Every file is written under a temporary name and renamed, so Ctrl-C (exit 130) leaves no half file. In `--etdump` mode each run writes a new
folder (`<etdump stem>_analysis`, then `_analysis_2`, ...) and never touches an earlier one.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import json
import logging
import math
import os
import re
import struct
import subprocess
import sys
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional

try:
    import numpy as np
    import pandas as pd
    from rich.console import Console
    from rich.table import Table
except KeyboardInterrupt:  # the imports take seconds: Ctrl-C there is a normal stop
    print("interrupted while starting: nothing was written; run the same command again", file=sys.stderr)
    sys.exit(130)

SCHEMA_VERSION = 1
BOOTSTRAP_SAMPLES = 2000
BOOTSTRAP_SEED = 20251123
MIN_RUNS_FOR_CI = 10
MIN_ROUNDS_FOR_PAIRED_CI = 3
HIGH_CV_PCT = 5.0
# Trace and timing medians differ by the tracer's overhead; a gap this large means a unit error.
UNIT_MISMATCH_FACTOR = 3.0

# Per-experiment outputs a re-analysis regenerates; one it cannot regenerate is renamed <name>.stale.
STALE_CANDIDATES = ("ops.csv", "op_stats.csv", "categories.csv", "kernels.csv")
FRAMEWORK_EVENTS = {"Method::execute", "Method::init", "Program::load_method", "DELEGATE_CALL", "OPERATOR_CALL"}
UNATTRIBUTED = "UNATTRIBUTED"
CATEGORIES = ["CONV", "GEMM", "DATA_MOVEMENT", "ELEMENTWISE", "OTHER"]
CATEGORY_COLORS = {
    "CONV": "#1f77b4", "GEMM": "#d62728", "DATA_MOVEMENT": "#ff7f0e",
    "ELEMENTWISE": "#2ca02c", "OTHER": "#9467bd", UNATTRIBUTED: "#b0b0b0",
}

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
# Tags normalized when matching op types across a compare pair, so `Convolution (NHWC, F32) IGEMM`
# (OFF) lines up with `Convolution (NHWC, PF32) IGEMM` (ON).
COMPARE_TAG_ALIASES = {"PF32": "F32", "PF16": "F16", "PQS8": "QS8", "QP8": "QD8", "QDU8": "QD8"}

KERNEL_LINE = re.compile(r"Using (?P<kind>[A-Za-z0-9_ ]+?) microkernel '(?P<name>[A-Za-z0-9_]+)'")
XNN_DATATYPE_TOKEN = re.compile(r"^p?(bf|f|qs|qu|qd|qdu|qp|qc|qb|qa|x|s|u)\d+(w|acc)?$")
KERNEL_QUALIFIERS = {"minmax", "fp32", "rndnu", "rndnu16", "relu", "linear"}
# Tokens before the ISA in a kernel name (`__asm_aarch64_neonfma_ld128`: hand-written assembly for aarch64).
ARCH_PREFIXES = {"asm", "aarch64", "aarch32", "arm", "arm64", "x86", "x64", "amd64"}
TILE_TOKEN = re.compile(r"^\d+(vl)?x\d+(vl)?(x\d+)?[a-z0-9]*$|^\d+p\d*c?$|^\d+vlx\d+vl$")
KAI_OPERATIONS = ["matmul_clamp", "imatmul_clamp", "lhs_imatmul_pack", "rhs_imatmul_pack_kxn", "lhs_quant_pack",
                  "lhs_pack", "rhs_pack_kxn", "rhs_pack_nxk"]
ISA_FAMILY_RULES: list[tuple[str, str]] = [
    (r"sme2", "sme2"), (r"sme", "sme"), (r"sve", "sve"), (r"^neon|^asimd|dotprod|i8mm", "neon"),
    (r"^avx512", "avx512"), (r"^avxvnni|^avx2|^fma3|^avx256", "avx2"), (r"^avx|^f16c", "avx"),
    (r"^sse|^ssse3", "sse"), (r"^wasm", "wasm"), (r"^rvv", "rvv"), (r"^hvx", "hvx"), (r"^scalar", "scalar"),
]


class AnalysisError(Exception):
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


def compare_key(op_type: str) -> str:
    """Op type with packed-path tags mapped to their standard twins, for matching OFF against ON."""
    def normalize(match: re.Match) -> str:
        tags = [COMPARE_TAG_ALIASES.get(tag.strip(), tag.strip()) for tag in match.group(1).split(",")]
        return "(" + ", ".join(tags) + ")"
    return re.sub(r"\(([^)]*)\)", normalize, op_type, count=1)


# ----------------------------------------------------------------------------- kernel log


def isa_family_of(isa: str) -> str:
    for pattern, family in ISA_FAMILY_RULES:
        if re.search(pattern, isa):
            return family
    return "unknown" if not isa else "other"


def normalize_isa(token: str) -> str:
    """`neonsme2` -> `sme2`, `neonsme` -> `sme`; other ISA tokens stay as XNNPACK spells them."""
    return {"neonsme2": "sme2", "neonsme": "sme"}.get(token, token)


def split_xnnpack_kernel(name: str) -> dict[str, Any]:
    """`xnn_f32_gemm_minmax_ukernel_6x8__neonfma_lane_ld128` -> datatype f32, gemm, 6x8, neonfma."""
    head, _, tail = name[len("xnn_"):].partition("__")
    match = re.match(r"(?P<pre>.*?)_ukernel(?:_(?P<tile>[^_]+))?$", head)
    pre, tile = (match.group("pre"), match.group("tile") or "") if match else (head, "")
    tokens = pre.split("_")
    n_types = 0
    while n_types < len(tokens) and XNN_DATATYPE_TOKEN.match(tokens[n_types]):
        n_types += 1
    datatype = "_".join(tokens[:n_types])
    operation = "_".join(t for t in tokens[n_types:] if t not in KERNEL_QUALIFIERS)
    isa_tokens = [t for t in tail.split("_") if t]
    if not tile and isa_tokens and TILE_TOKEN.match(isa_tokens[0]):
        tile = isa_tokens.pop(0)
    while isa_tokens and isa_tokens[0] in ARCH_PREFIXES:
        isa_tokens.pop(0)
    # The ISA may follow a variant (`__16x16_reuse_dec_zip_neon`): take the first token that names one.
    isa = next((normalize_isa(t) for t in isa_tokens if isa_family_of(normalize_isa(t)) != "other"),
               normalize_isa(isa_tokens[0]) if isa_tokens else "")
    if not tile:
        unroll = [t for t in isa_tokens[1:] if re.fullmatch(r"u\d+", t)]
        tile = unroll[-1] if unroll else ""
    kleidiai = datatype.split("_")[0] in {"pf32", "pf16", "pqs8", "qp8"} or operation == "pack_lh"
    return {"datatype": datatype, "operation": operation, "tile": tile, "isa": isa, "is_kleidiai": kleidiai}


def split_kleidiai_kernel(name: str) -> dict[str, Any]:
    """`kai_run_matmul_clamp_f32_qai8dxp1x4_qsi8cxp4x4_1x4_neon_dotprod` -> f32_qai8dxp1x4_qsi8cxp4x4, ..."""
    body = re.sub(r"^kai_(run_)?", "", name)
    operation = next((op for op in KAI_OPERATIONS if body.startswith(op + "_")), body.split("_")[0])
    tokens = body[len(operation) + 1:].split("_")
    isa_at = next((i for i, t in enumerate(tokens) if t in {"sme2", "sme", "neon", "sve", "sve2"}), len(tokens))
    before, after = tokens[:isa_at], tokens[isa_at:]
    tile = next((t for t in before if re.fullmatch(r"\d+(vl)?x\d+(vl)?(x\d+)?", t)), "")
    datatype = "_".join(t for t in before if t != tile)
    isa = ""
    if after:
        isa = after[0]
        if isa == "neon" and len(after) > 1 and after[1] in {"dotprod", "i8mm", "fp16", "bf16"}:
            isa = {"dotprod": "neondot", "i8mm": "neoni8mm"}.get(after[1], "neon" + after[1])
    return {"datatype": datatype, "operation": operation, "tile": tile, "isa": isa, "is_kleidiai": True}


def split_kernel_name(name: str) -> dict[str, Any]:
    """Split an XNNPACK or KleidiAI microkernel name into datatype, operation, tile, ISA."""
    if name.startswith("kai_"):
        parts = split_kleidiai_kernel(name)
    elif name.startswith("xnn_"):
        parts = split_xnnpack_kernel(name)
    else:
        parts = {"datatype": "", "operation": "", "tile": "", "isa": "", "is_kleidiai": False}
    parts["isa_family"] = isa_family_of(parts["isa"])
    return parts


def parse_kernel_log(text: str) -> pd.DataFrame:
    """`Using <kind> microkernel '<name>'` lines (stdout `Note (XNNPACK):` or logcat) -> one row per kernel.

    These lines say which kernels XNNPACK registered for this CPU and configuration, not how often
    each ran: `registrations` counts log lines, not calls.
    """
    counts: dict[tuple[str, str], int] = {}
    for line in text.splitlines():
        match = KERNEL_LINE.search(line)
        if match:
            key = (match.group("kind").strip(), match.group("name"))
            counts[key] = counts.get(key, 0) + 1
    rows = [{"kind": kind, "name": name, **split_kernel_name(name), "registrations": n}
            for (kind, name), n in counts.items()]
    columns = ["kind", "name", "datatype", "operation", "tile", "isa", "isa_family", "is_kleidiai", "registrations"]
    return pd.DataFrame(rows, columns=columns)


# ----------------------------------------------------------------------------- statistics


def bootstrap_median_ci(values: np.ndarray, seed: int = BOOTSTRAP_SEED,
                        samples: int = BOOTSTRAP_SAMPLES) -> tuple[float, float]:
    """95 % percentile-bootstrap CI of the median (fixed seed: the same data gives the same CI)."""
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(values), size=(samples, len(values)))
    medians = np.median(values[picks], axis=1)
    return float(np.percentile(medians, 2.5)), float(np.percentile(medians, 97.5))


def latency_stats(latencies: Iterable[float]) -> dict[str, Any]:
    """median, mean, min, max, p90, p99, std, CV and the bootstrap CI of the median, with warnings."""
    values = np.asarray(list(latencies), dtype=float)
    if values.size == 0:
        raise AnalysisError("no latencies to summarize")
    std = float(np.std(values, ddof=1)) if values.size > 1 else 0.0
    mean = float(np.mean(values))
    stats: dict[str, Any] = {
        "n": int(values.size), "median_ms": float(np.median(values)), "mean_ms": mean,
        "min_ms": float(values.min()), "max_ms": float(values.max()),
        "p90_ms": float(np.percentile(values, 90)), "p99_ms": float(np.percentile(values, 99)),
        "std_ms": std, "cv_pct": 100.0 * std / mean if mean > 0 else float("nan"),
        "ci95_low_ms": None, "ci95_high_ms": None, "warnings": [],
    }
    if values.size >= MIN_RUNS_FOR_CI:
        stats["ci95_low_ms"], stats["ci95_high_ms"] = bootstrap_median_ci(values)
    else:
        stats["warnings"].append(f"only {values.size} runs: too few for a confidence interval "
                                 f"(need {MIN_RUNS_FOR_CI}); raise runs in the config")
    if stats["cv_pct"] > HIGH_CV_PCT:
        stats["warnings"].append(f"CV {stats['cv_pct']:.1f} % > {HIGH_CV_PCT:.0f} %: noisy machine; close other "
                                 "apps, pin threads or raise runs")
    return stats


def paired_round_speedup(baseline_rounds: list[np.ndarray], candidate_rounds: list[np.ndarray],
                         seed: int = BOOTSTRAP_SEED, samples: int = BOOTSTRAP_SAMPLES) -> dict[str, Any]:
    """Speedup = median(baseline) / median(candidate) with a paired two-level bootstrap CI.

    Round k of the baseline ran just before round k of the candidate, so each bootstrap sample
    draws whole rounds with replacement (the same round indices for both sides: slow drift of the
    machine between rounds hits both) and then resamples runs within each drawn round.
    """
    n_rounds = min(len(baseline_rounds), len(candidate_rounds))
    base = [np.asarray(r, dtype=float) for r in baseline_rounds[:n_rounds]]
    cand = [np.asarray(r, dtype=float) for r in candidate_rounds[:n_rounds]]
    speedup = float(np.median(np.concatenate(base)) / np.median(np.concatenate(cand)))
    result: dict[str, Any] = {"speedup": speedup, "ci95_low": None, "ci95_high": None,
                              "rounds": n_rounds, "warnings": []}
    total_runs = min(sum(r.size for r in base), sum(r.size for r in cand))
    if total_runs < MIN_RUNS_FOR_CI:
        result["warnings"].append(f"only {total_runs} runs per side: too few for a speedup CI")
        return result
    rng = np.random.default_rng(seed)
    ratios = np.empty(samples)
    for i in range(samples):
        picked = rng.integers(0, n_rounds, size=n_rounds)
        base_sample = np.concatenate([rng.choice(base[k], size=base[k].size) for k in picked])
        cand_sample = np.concatenate([rng.choice(cand[k], size=cand[k].size) for k in picked])
        ratios[i] = np.median(base_sample) / np.median(cand_sample)
    result["ci95_low"], result["ci95_high"] = float(np.percentile(ratios, 2.5)), float(np.percentile(ratios, 97.5))
    if n_rounds < MIN_ROUNDS_FOR_PAIRED_CI:
        result["warnings"].append(f"only {n_rounds} interleaved round(s): the CI cannot see drift between rounds; "
                                  f"use {MIN_ROUNDS_FOR_PAIRED_CI}+ rounds")
    return result


# ----------------------------------------------------------------------------- ETDump


@dataclass
class TraceEvent:
    """One event of one traced run; times in microseconds from the run's Method::execute start."""
    name: str
    kind: str  # execute, delegate_call, operator_call, op
    start_us: float
    dur_us: float
    instruction_id: Optional[int]
    backend: str = ""


@dataclass
class ExperimentTrace:
    e2e_ms: list[float] = field(default_factory=list)
    runs: list[list[TraceEvent]] = field(default_factory=list)
    ops: pd.DataFrame = field(default_factory=pd.DataFrame)
    warnings: list[str] = field(default_factory=list)


def check_etdump_file(path: Path) -> None:
    """Reject a missing, empty, truncated or foreign file before the Inspector sees it."""
    if not path.is_file():
        raise AnalysisError(f"{path}: no such ETDump file; pass the trace.etdump the runner wrote with --etdump_path")
    data = path.read_bytes()
    if len(data) == 0:
        raise AnalysisError(f"{path}: the ETDump is empty (the traced run probably crashed); re-run the trace")
    if len(data) < 12 or data[8:12] != b"ED00":
        raise AnalysisError(f"{path}: not an ETDump (no ED00 identifier); pass the file written by --etdump_path")
    declared = struct.unpack("<I", data[:4])[0]
    if declared + 4 > len(data):
        raise AnalysisError(f"{path}: the ETDump is truncated ({len(data)} of {declared + 4} bytes); "
                            "re-run the trace and let the runner finish")


@contextlib.contextmanager
def quiet_library_output() -> Iterator[None]:
    """Silence the Inspector's own prints and warnings (flatc, torchao): this script reports errors itself."""
    logging.getLogger("torchao").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        saved = [os.dup(1), os.dup(2)]
        sys.stdout.flush()
        sys.stderr.flush()
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in (*saved, devnull):
                os.close(fd)


def open_inspector(etdump: Path, etrecord: Optional[Path]) -> Any:
    """The ExecuTorch Inspector on one ETDump (the source of truth for every event and duration)."""
    check_etdump_file(etdump)
    with quiet_library_output():
        from executorch.devtools import Inspector
        try:
            return Inspector(etdump_path=str(etdump), etrecord=str(etrecord) if etrecord else None)
        except Exception as error:  # the Inspector raises many types for a bad file
            failure = error
        # Blame the right file: if the ETDump reads alone, the ETRecord is the problem.
        etdump_alone_reads = False
        if etrecord is not None:
            with contextlib.suppress(Exception):
                Inspector(etdump_path=str(etdump))
                etdump_alone_reads = True
    if etdump_alone_reads:
        raise AnalysisError(f"{etrecord}: the Inspector could not use this ETRecord with {etdump} "
                            f"({type(failure).__name__}); pass the .etrecord exported with this model, "
                            "or run without --etrecord")
    raise AnalysisError(f"{etdump}: the ETDump is corrupt, the Inspector could not parse it "
                        f"({type(failure).__name__}); re-run the trace with this kit's runner")


def backend_label(event: Any) -> str:
    """XNNPACK for XNNPACK delegate events (all delegated events when no ETRecord names the backend)."""
    name = event.delegate_backend_name or ""
    if not name or "xnnpack" in name.lower():
        return "XNNPACK"
    return name.replace("Backend", "")


def runs_from_inspector(inspector: Any) -> list[tuple[int, list[TraceEvent]]]:
    """Per traced run: (start tick, events), from every event block that holds Method::execute."""
    runs: list[tuple[int, list[TraceEvent]]] = []
    for block in inspector.event_blocks:
        execute = next((e for e in block.events if e.name == "Method::execute" and e.perf_data), None)
        if execute is None:
            continue  # the load/init block
        for k in range(len(execute.perf_data.raw)):
            origin = execute.start_time[k]
            events = []
            for event in block.events:
                if event.perf_data is None or event.start_time is None:
                    continue
                if event.is_delegated_op:
                    kind, backend = "op", backend_label(event)
                elif event.name == "Method::execute":
                    kind, backend = "execute", ""
                elif event.name == "DELEGATE_CALL":
                    kind, backend = "delegate_call", backend_label(event)
                elif event.name == "OPERATOR_CALL":
                    kind, backend = "operator_call", ""
                elif event.name in FRAMEWORK_EVENTS:
                    continue
                else:
                    kind, backend = "op", "portable"
                # Start ticks are nanoseconds (ExecuTorch's default PAL clock); durations are already ms.
                events.append(TraceEvent(event.name, kind, (event.start_time[k] - origin) / 1000.0,
                                         event.perf_data.raw[k] * 1000.0, event._instruction_id, backend))
            runs.append((origin, events))
    runs.sort(key=lambda item: item[0])
    return runs


def opaque_delegate_ops(events: list[TraceEvent]) -> list[TraceEvent]:
    """Delegate calls with no per-op events inside (backend built without profiling) become one op row."""
    with_children = {e.instruction_id for e in events if e.kind == "op" and e.backend != "portable"}
    return [TraceEvent(f"{e.backend} delegate call (no per-op events) #{e.instruction_id}", "op", e.start_us,
                       e.dur_us, e.instruction_id, e.backend)
            for e in events if e.kind == "delegate_call" and e.instruction_id not in with_children]


def load_trace(etdump: Path, etrecord: Optional[Path]) -> ExperimentTrace:
    """Read one ETDump: per-run E2E (Method::execute) and one row per operator event (exclusive time)."""
    inspector = open_inspector(etdump, etrecord)
    runs = runs_from_inspector(inspector)
    if not runs:
        raise AnalysisError(f"{etdump}: the ETDump holds no Method::execute event (no inference was traced); "
                            "run the runner with --num_executions >= 1 and --etdump_path")
    trace = ExperimentTrace()
    rows = []
    opaque_seen = False
    for index, (_, events) in enumerate(runs):
        opaque = opaque_delegate_ops(events)
        opaque_seen = opaque_seen or bool(opaque)
        events = events + opaque
        trace.runs.append(events)
        trace.e2e_ms.append(next(e.dur_us for e in events if e.kind == "execute") / 1000.0)
        for event in events:
            if event.kind != "op":
                continue
            op_type = op_type_of(event.name)
            category, _ = classify_op(op_type, event.backend)
            rows.append({"run": index, "name": event.name, "op_type": op_type, "category": category,
                         "backend": event.backend, "kernel_path": kernel_path_of(op_type, event.backend),
                         "duration_ms": event.dur_us / 1000.0})
    trace.ops = pd.DataFrame(rows, columns=["run", "name", "op_type", "category", "backend", "kernel_path",
                                            "duration_ms"])
    if opaque_seen:
        trace.warnings.append("some delegate calls have no per-operator events (the runner's backend was built "
                              "without profiling): each is shown as one opaque row")
    return trace


# ----------------------------------------------------------------------------- tables


def op_stats_table(ops: pd.DataFrame, e2e_ms: list[float], cpu_has_sme: bool) -> pd.DataFrame:
    """Per op type: counts and times, plus the UNATTRIBUTED remainder so shares add to 100 %."""
    n_runs = len(e2e_ms)
    mean_e2e = float(np.mean(e2e_ms))
    # A portable op is a delegation opportunity in a model that already uses a delegate; in a
    # portable-only baseline every op is portable on purpose.
    uses_delegate = bool((ops["backend"] != "portable").any())
    rows = []
    for (op_type, backend), group in ops.groupby(["op_type", "backend"], sort=False):
        category, subcategory = classify_op(op_type, backend)
        kernel_path = group["kernel_path"].iloc[0]
        durations = group["duration_ms"].to_numpy()
        per_inference = float(durations.sum()) / n_runs
        rows.append({
            "op_type": op_type, "category": category, "subcategory": subcategory, "backend": backend,
            "kernel_path": kernel_path, "sme_path": on_sme_path(kernel_path, cpu_has_sme),
            "count": int(durations.size), "instances_per_run": int(group["name"].nunique()),
            "total_ms": float(durations.sum()), "ms_per_inference": per_inference,
            "mean_ms": float(durations.mean()), "median_ms": float(np.median(durations)),
            "min_ms": float(durations.min()), "max_ms": float(durations.max()),
            "share_of_e2e_pct": 100.0 * per_inference / mean_e2e,
            "delegation_opportunity": uses_delegate and backend == "portable",
        })
    attributed = sum(r["ms_per_inference"] for r in rows)
    remainder = mean_e2e - attributed
    rows.append({
        "op_type": "(framework and delegate overhead)", "category": UNATTRIBUTED, "subcategory": "remainder",
        "backend": "", "kernel_path": "", "sme_path": False, "count": n_runs, "instances_per_run": 1,
        "total_ms": remainder * n_runs, "ms_per_inference": remainder, "mean_ms": remainder,
        "median_ms": float(np.median(np.asarray(e2e_ms) - ops.groupby("run")["duration_ms"].sum()
                                     .reindex(range(n_runs), fill_value=0.0).to_numpy())),
        "min_ms": float("nan"), "max_ms": float("nan"), "share_of_e2e_pct": 100.0 * remainder / mean_e2e,
        "delegation_opportunity": False,
    })
    table = pd.DataFrame(rows)
    ranked = table[table["category"] != UNATTRIBUTED].sort_values("ms_per_inference", ascending=False)
    return pd.concat([ranked, table[table["category"] == UNATTRIBUTED]], ignore_index=True)


def category_table(op_stats: pd.DataFrame) -> pd.DataFrame:
    """Per category: ms per inference, share of E2E and how much of it ran on the SME path."""
    rows = []
    for category in CATEGORIES + [UNATTRIBUTED]:
        group = op_stats[op_stats["category"] == category]
        ms = float(group["ms_per_inference"].sum())
        sme_ms = float(group.loc[group["sme_path"].astype(bool), "ms_per_inference"].sum())
        rows.append({"category": category, "ms_per_inference": ms,
                     "share_pct": float(group["share_of_e2e_pct"].sum()),
                     "sme_path_ms": sme_ms, "sme_path_pct": 100.0 * sme_ms / ms if ms > 0 else 0.0})
    return pd.DataFrame(rows)


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


def retire_stale_outputs(folder: Path, names: Iterable[str], written: list[Path]) -> list[str]:
    """Outputs of an earlier analysis that this one could not regenerate become <name>.stale, never left looking
    current beside this run's errors (renamed, not deleted: they may be the only copy)."""
    retired = []
    for name in names:
        path = folder / name
        if path.exists() and path not in written:
            path.replace(path.with_name(name + ".stale"))
            retired.append(f"{folder.name}/{name}")
    return retired


# ----------------------------------------------------------------------------- experiments


@dataclass
class Experiment:
    """One experiment folder and everything measured about it."""
    name: str
    folder: Path
    meta: dict[str, Any]
    status: str = "ok"
    error: Optional[str] = None
    timing: Optional[dict[str, Any]] = None
    rounds: list[np.ndarray] = field(default_factory=list)
    e2e: Optional[dict[str, Any]] = None
    e2e_source: str = ""
    trace: Optional[ExperimentTrace] = None
    trace_e2e: Optional[dict[str, Any]] = None
    op_stats: Optional[pd.DataFrame] = None
    categories: Optional[pd.DataFrame] = None
    kernels: Optional[pd.DataFrame] = None
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def sme_path_ms(self) -> float:
        return 0.0 if self.categories is None else float(self.categories["sme_path_ms"].sum())


def read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise AnalysisError(f"{path}: missing {what}; point --run-dir at a folder the pipeline wrote") from None
    except (OSError, UnicodeDecodeError) as error:
        raise AnalysisError(f"{path}: cannot read the {what} ({error}); check the file, or re-run the pipeline") from None
    except json.JSONDecodeError as error:
        raise AnalysisError(f"{path}: {what} is not valid JSON (line {error.lineno}); restore it from the run") from None
    if not isinstance(data, dict):
        raise AnalysisError(f"{path}: the {what} is a JSON {type(data).__name__}, not an object; "
                            "restore it from the run or re-run the pipeline")
    return data


def check_manifest_shape(path: Path, manifest: dict[str, Any]) -> None:
    """Fields the analysis reads must have the documented types (scripts/README.md), or it stops here."""
    expected = {"experiments": list, "compare": (list, type(None)), "host": (dict, type(None)),
                "device": (dict, type(None)), "runners": (dict, type(None))}
    for key, types in expected.items():
        if key in manifest and not isinstance(manifest[key], types):
            raise AnalysisError(f"{path}: '{key}' has the wrong type ({type(manifest[key]).__name__}); "
                                "restore manifest.json from the run or re-run the pipeline")
    for key in ("experiments", "compare"):
        if any(not isinstance(entry, dict) for entry in manifest.get(key) or []):
            raise AnalysisError(f"{path}: an entry of '{key}' is not a JSON object; "
                                "restore manifest.json from the run or re-run the pipeline")


def read_timing(path: Path) -> tuple[dict[str, Any], list[np.ndarray]]:
    """The pipeline's timing.json (rounds) or a single runner timing JSON (one round)."""
    timing = read_json(path, "timing JSON")
    if timing.get("schema_version") != SCHEMA_VERSION:
        raise AnalysisError(f"{path}: timing schema_version {timing.get('schema_version')!r} is not "
                            f"{SCHEMA_VERSION}; re-run the pipeline with this kit's version")
    try:
        if timing.get("rounds"):
            rounds = [np.asarray(r["latencies_ms"], dtype=float).reshape(-1)
                      for r in sorted(timing["rounds"], key=lambda r: int(r["round"]))]
        else:
            rounds = [np.asarray(timing.get("latencies_ms", []), dtype=float).reshape(-1)]
    except (TypeError, ValueError, KeyError, AttributeError):
        raise AnalysisError(f"{path}: 'rounds' / 'latencies_ms' do not have the documented shape (a list of "
                            "objects with round and latencies_ms, a list of numbers); restore the file or re-run the experiment") from None
    latencies = np.concatenate(rounds) if rounds else np.array([])
    if latencies.size == 0 or not np.all(np.isfinite(latencies)) or np.any(latencies <= 0):
        raise AnalysisError(f"{path}: latencies must be positive finite numbers; re-run the experiment")
    return timing, rounds


def cpu_facts(manifest: dict[str, Any]) -> dict[str, Any]:
    """The CPU the experiments ran on: the Android device when there is one, else the host."""
    return manifest.get("device") or manifest.get("host") or {}


def is_emulated(manifest: dict[str, Any]) -> bool:
    return bool((manifest.get("device") or {}).get("emulated") or (manifest.get("host") or {}).get("emulated"))


def analyze_experiment(exp: Experiment, etrecord: Optional[Path], cpu_has_sme: bool) -> None:
    """Fill in E2E stats, operator tables and kernels for one experiment; record bad input as errors."""
    timing_path = exp.folder / "timing.json"
    try:
        if timing_path.exists():
            exp.timing, exp.rounds = read_timing(timing_path)
        trace_path = exp.folder / "trace.etdump"
        if trace_path.exists():
            exp.trace = load_trace(trace_path, etrecord)
    except AnalysisError as error:
        exp.errors.append(str(error))
    if exp.trace is not None:
        exp.trace_e2e = latency_stats(exp.trace.e2e_ms)
        exp.op_stats = op_stats_table(exp.trace.ops, exp.trace.e2e_ms, cpu_has_sme)
        exp.categories = category_table(exp.op_stats)
        exp.warnings.extend(exp.trace.warnings)
    if exp.rounds:
        exp.e2e, exp.e2e_source = latency_stats(np.concatenate(exp.rounds)), "timing"
    elif exp.trace_e2e is not None:
        exp.e2e, exp.e2e_source = exp.trace_e2e, "trace"
        exp.warnings.append("no timing.json: E2E comes from the traced runs (tracer overhead included)")
    if exp.e2e:
        exp.warnings.extend(exp.e2e["warnings"])
    if exp.e2e_source == "timing" and exp.trace_e2e:
        ratio = exp.trace_e2e["median_ms"] / exp.e2e["median_ms"]
        if not 1 / UNIT_MISMATCH_FACTOR <= ratio <= UNIT_MISMATCH_FACTOR:
            exp.warnings.append(f"traced Method::execute median is {ratio:.2f}x the timing median: check the "
                                "ETDump time unit and that both files come from the same model and runner")
    kernel_log = exp.folder / "kernels.log"
    if kernel_log.exists():
        exp.kernels = parse_kernel_log(kernel_log.read_text(errors="replace"))
        if exp.kernels.empty:
            exp.warnings.append("kernels.log has no `Using ... microkernel` lines: was the runner built with "
                                "the kernel log (a *_kernels variant)?")


def write_experiment_outputs(exp: Experiment) -> list[Path]:
    written = []
    if exp.trace is not None and exp.op_stats is not None and exp.categories is not None:
        for table, name in ((exp.trace.ops, "ops.csv"), (exp.op_stats, "op_stats.csv"),
                            (exp.categories, "categories.csv")):
            write_csv(table, exp.folder / name)
            written.append(exp.folder / name)
    if exp.kernels is not None:
        write_csv(exp.kernels, exp.folder / "kernels.csv")
        written.append(exp.folder / "kernels.csv")
    return written


# ----------------------------------------------------------------------------- comparisons


@dataclass
class Comparison:
    baseline: Experiment
    candidate: Experiment
    speedup: dict[str, Any]
    rows: pd.DataFrame
    narrative: str
    warnings: list[str] = field(default_factory=list)

    @property
    def pair(self) -> str:
        return f"{self.baseline.name}->{self.candidate.name}"

    @property
    def file_stem(self) -> str:
        return safe_name(f"{self.baseline.name}_vs_{self.candidate.name}")


def ratio(base: float, cand: float) -> float:
    return base / cand if cand > 0 else float("nan")


def compare_levels(pair: str, base: Experiment, cand: Experiment, speedup: dict[str, Any]) -> pd.DataFrame:
    """comparison.csv rows for one pair: e2e, then per category, then per op type."""
    rows = [{"pair": pair, "level": "e2e", "name": "E2E median", "baseline_ms": base.e2e["median_ms"],
             "candidate_ms": cand.e2e["median_ms"], "speedup": speedup["speedup"],
             "speedup_ci_low": speedup["ci95_low"], "speedup_ci_high": speedup["ci95_high"],
             "baseline_share_pct": 100.0, "candidate_share_pct": 100.0, "share_change_pp": 0.0}]
    if base.categories is not None and cand.categories is not None:
        merged = base.categories.merge(cand.categories, on="category", suffixes=("_b", "_c"))
        for _, r in merged.iterrows():
            rows.append({"pair": pair, "level": "category", "name": r["category"],
                         "baseline_ms": r["ms_per_inference_b"], "candidate_ms": r["ms_per_inference_c"],
                         "speedup": ratio(r["ms_per_inference_b"], r["ms_per_inference_c"]),
                         "baseline_share_pct": r["share_pct_b"], "candidate_share_pct": r["share_pct_c"],
                         "share_change_pp": r["share_pct_c"] - r["share_pct_b"]})
    if base.op_stats is not None and cand.op_stats is not None:
        def keyed(stats: pd.DataFrame) -> pd.DataFrame:
            ops = stats[stats["category"] != UNATTRIBUTED].copy()
            ops["key"] = [compare_key(t) + "|" + b for t, b in zip(ops["op_type"], ops["backend"])]
            return ops.groupby("key", sort=False).agg(op_type=("op_type", "first"),
                                                      ms=("ms_per_inference", "sum"),
                                                      share=("share_of_e2e_pct", "sum"))
        merged = keyed(base.op_stats).merge(keyed(cand.op_stats), how="outer", left_index=True, right_index=True,
                                            suffixes=("_b", "_c"))
        merged = merged.fillna({"ms_b": 0.0, "ms_c": 0.0, "share_b": 0.0, "share_c": 0.0})
        merged = merged.sort_values("ms_b", ascending=False)
        for _, r in merged.iterrows():
            names = [n for n in (r["op_type_b"], r["op_type_c"]) if isinstance(n, str)]
            name = names[0] if len(set(names)) == 1 else " -> ".join(names)
            rows.append({"pair": pair, "level": "op_type", "name": name, "baseline_ms": r["ms_b"],
                         "candidate_ms": r["ms_c"], "speedup": ratio(r["ms_b"], r["ms_c"]),
                         "baseline_share_pct": r["share_b"], "candidate_share_pct": r["share_c"],
                         "share_change_pp": r["share_c"] - r["share_b"]})
    columns = ["pair", "level", "name", "baseline_ms", "candidate_ms", "speedup", "speedup_ci_low",
               "speedup_ci_high", "baseline_share_pct", "candidate_share_pct", "share_change_pp"]
    return pd.DataFrame(rows, columns=columns)


def category_narrative(base: Experiment, cand: Experiment) -> str:
    """One or two sentences on how the category shares moved, generated from the numbers."""
    if base.categories is None or cand.categories is None:
        return "No trace for one side of the pair: no category breakdown."
    b = base.categories.set_index("category")["share_pct"]
    c = cand.categories.set_index("category")["share_pct"]
    named = [cat for cat in CATEGORIES if b[cat] > 0 or c[cat] > 0]
    if not named:
        return "No operator time in either trace."
    biggest_move = max(named, key=lambda cat: abs(c[cat] - b[cat]))
    direction = "fell" if c[biggest_move] < b[biggest_move] else "rose"
    top_before = max(CATEGORIES + [UNATTRIBUTED], key=lambda cat: b[cat])
    top_after = max(CATEGORIES + [UNATTRIBUTED], key=lambda cat: c[cat])
    label = {UNATTRIBUTED: "UNATTRIBUTED (framework and delegate overhead)"}
    sentence = (f"{biggest_move} {direction} from {b[biggest_move]:.0f} % to {c[biggest_move]:.0f} % of "
                f"the traced inference time")
    if top_after != top_before:
        return (f"{sentence}; {label.get(top_after, top_after)} is now the largest category at "
                f"{c[top_after]:.0f} % (it was {top_before} at {b[top_before]:.0f} %).")
    return f"{sentence}; {label.get(top_after, top_after)} is still the largest category at {c[top_after]:.0f} %."


def cpu_has_sme(cpu: dict[str, Any]) -> bool:
    return bool(cpu.get("sme2") or cpu.get("sme"))


def packed_path_warnings(exp: Experiment, cpu: dict[str, Any]) -> list[str]:
    """Red warnings when the ETDump's op names contradict the experiment's SME2 label.

    XNNPACK takes the KleidiAI packed path (PF32/PF16/PQS8 op names) on any CPU with SME or SME2,
    so an ON experiment with XNNPACK conv/matmul ops on such a CPU must show some packed-path time.
    """
    if exp.op_stats is None:
        return []
    label = exp.meta.get("sme2_label")
    has_matmul = bool(((exp.op_stats["backend"] == "XNNPACK") & exp.op_stats["category"].isin(["CONV", "GEMM"])).any())
    if label == "on" and cpu_has_sme(cpu) and has_matmul and exp.sme_path_ms == 0:
        which = "SME2" if cpu.get("sme2") else "SME"
        return [f"labelled SME2 ON on a CPU with {which}, yet no operator ran on the KleidiAI packed path "
                "(no PF32/PF16/PQS8 op names): check the runner's SME2/SME flags"]
    hidden = exp.meta.get("hide_cpu_features") or []
    if label == "off" and exp.sme_path_ms > 0 and not (hidden and "sme" not in hidden):  # SME1 level: packed path expected
        return [f"labelled SME2 OFF, yet {exp.sme_path_ms:.3f} ms per inference ran on the KleidiAI SME packed "
                "path: the OFF runner still has SME kernels"]
    return []


def sme_checks(base: Experiment, cand: Experiment, cpu: dict[str, Any]) -> list[str]:
    """Red warnings when an SME2 ON/OFF pair is not what its labels say (registered kernels)."""
    warnings_out = []
    labels = {base.meta.get("sme2_label"), cand.meta.get("sme2_label")}
    for exp in (base, cand):
        label = exp.meta.get("sme2_label")
        if exp.kernels is not None and labels == {"on", "off"}:
            families = set(exp.kernels["isa_family"])
            if label == "on" and exp.meta.get("sme2_effective") and "sme2" not in families:
                warnings_out.append(f"{exp.name} (SME2 ON) registered no SME2 microkernel: the comparison is not "
                                    "what its labels say")
            if label == "off" and families & {"sme2", "sme"}:
                warnings_out.append(f"{exp.name} (SME2 OFF) registered SME/SME2 microkernels: the comparison is not "
                                    "what its labels say")
    if "on" in labels and cpu and not cpu.get("sme2"):
        warnings_out.append("SME2 not available on this CPU: the SME2 ON experiment cannot use SME2 kernels")
    return warnings_out


def compare(base: Experiment, cand: Experiment, cpu: dict[str, Any]) -> Comparison:
    if base.rounds and cand.rounds:
        rounds_b, rounds_c = base.rounds, cand.rounds
    else:
        rounds_b = [np.asarray(base.trace.e2e_ms)] if base.trace else []
        rounds_c = [np.asarray(cand.trace.e2e_ms)] if cand.trace else []
    speedup = paired_round_speedup(rounds_b, rounds_c)
    pair = f"{base.name}->{cand.name}"
    rows = compare_levels(pair, base, cand, speedup)
    comparison = Comparison(base, cand, speedup, rows, category_narrative(base, cand))
    comparison.warnings = list(speedup["warnings"]) + sme_checks(base, cand, cpu)
    if not (base.rounds and cand.rounds):
        comparison.warnings.append("speedup from traced runs (no timing.json on both sides): tracer overhead included")
    return comparison


# ----------------------------------------------------------------------------- trace.json


def chrome_trace(experiments: list[Experiment]) -> dict[str, Any]:
    """Chrome trace-event JSON: one process per experiment, one thread (track) per traced run."""
    events: list[dict[str, Any]] = []
    for pid, exp in enumerate((e for e in experiments if e.trace), start=1):
        events.append({"ph": "M", "name": "process_name", "pid": pid, "tid": 0, "args": {"name": exp.name}})
        offset = 0.0
        for run, run_events in enumerate(exp.trace.runs):
            tid = run + 1
            events.append({"ph": "M", "name": "thread_name", "pid": pid, "tid": tid, "args": {"name": f"run {run}"}})
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
                    args.update(op_type=op_type, backend=event.backend,
                                kernel_path=kernel_path_of(op_type, event.backend))
                events.append({"ph": "X", "name": event.name, "cat": category, "pid": pid, "tid": tid,
                               "ts": round(offset + start, 3), "dur": round(end - start, 3), "args": args})
            # Runs are laid one after another (with a gap) so every track has its own time window.
            offset += execute.dur_us * 1.1
    return {"traceEvents": events, "displayTimeUnit": "ms",
            "otherData": {"producer": "analyze_results.py", "time_unit": "microseconds"}}


# ----------------------------------------------------------------------------- charts


def make_charts(experiments: list[Experiment], comparisons: list[Comparison], charts_dir: Path,
                top_n: int) -> list[Path]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    charts_dir.mkdir(parents=True, exist_ok=True)
    written = []
    timed = [e for e in experiments if e.e2e]
    if timed:
        fig, ax = plt.subplots(figsize=(max(5, 1.4 * len(timed) + 2), 4))
        medians = [e.e2e["median_ms"] for e in timed]
        low = [e.e2e["median_ms"] - (e.e2e["ci95_low_ms"] if e.e2e["ci95_low_ms"] is not None else e.e2e["median_ms"])
               for e in timed]
        high = [(e.e2e["ci95_high_ms"] if e.e2e["ci95_high_ms"] is not None else e.e2e["median_ms"]) - e.e2e["median_ms"]
                for e in timed]
        ax.bar([e.name for e in timed], medians, yerr=[low, high], capsize=6, color="#4c72b0")
        for i, value in enumerate(medians):
            ax.annotate(f"{value:.3g}", (i, value), ha="center", va="bottom", xytext=(0, 3),
                        textcoords="offset points")
        ax.set_ylabel("median latency per inference (ms)")
        ax.set_title("End-to-end latency, timing mode\n(error bars: 95 % bootstrap CI of the median)", fontsize=10)
        plt.setp(ax.get_xticklabels(), rotation=20, ha="right")
        fig.tight_layout()
        written.append(save_figure(fig, charts_dir / "e2e_latency.png"))
    traced = [e for e in experiments if e.categories is not None]
    if traced:
        # Absolute time shows the speedup; shares show the composition, which a large speedup hides.
        fig, (ms_ax, share_ax) = plt.subplots(1, 2, figsize=(max(8, 2.4 * len(traced) + 4), 4.5))
        names = [e.name for e in traced]
        ms_bottoms, share_bottoms = np.zeros(len(traced)), np.zeros(len(traced))
        for category in CATEGORIES + [UNATTRIBUTED]:
            rows = [e.categories.set_index("category").loc[category] for e in traced]
            values = np.array([float(row["ms_per_inference"]) for row in rows])
            shares = np.array([float(row["share_pct"]) for row in rows])
            color = CATEGORY_COLORS[category]
            ms_ax.bar(names, values, bottom=ms_bottoms, label=category, color=color)
            share_ax.bar(names, shares, bottom=share_bottoms, color=color)
            ms_bottoms += values
            share_bottoms += shares
        ms_ax.set_ylabel("ms per inference (traced runs, mean)")
        ms_ax.set_title("Time per category")
        share_ax.set_ylabel("share of traced inference time (%)")
        share_ax.set_ylim(0, 100)
        share_ax.set_title("Share per category")
        share_ax.legend(*ms_ax.get_legend_handles_labels(), loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
        for ax in (ms_ax, share_ax):
            plt.setp(ax.get_xticklabels(), rotation=20, ha="right")
        fig.suptitle("Where the time goes, by operator category")
        fig.tight_layout()
        written.append(save_figure(fig, charts_dir / "categories_stacked.png"))
    for exp in traced:
        top = exp.op_stats[exp.op_stats["category"] != UNATTRIBUTED].head(top_n).iloc[::-1]
        if top.empty:
            continue
        fig, ax = plt.subplots(figsize=(8, 0.35 * len(top) + 1.5))
        labels = [f"{t} [portable]" if b == "portable" else t for t, b in zip(top["op_type"], top["backend"])]
        ax.barh(labels, top["ms_per_inference"], color=[CATEGORY_COLORS[c] for c in top["category"]])
        ax.set_xlabel("ms per inference (exclusive time, traced runs)")
        ax.set_title(f"Top {len(top)} operator types: {exp.name}")
        ax.tick_params(axis="y", labelsize=8)
        shown = list(dict.fromkeys(top["category"].iloc[::-1]))
        ax.legend(handles=[Patch(color=CATEGORY_COLORS[c], label=c) for c in shown], fontsize=8, loc="lower right")
        fig.tight_layout()
        written.append(save_figure(fig, charts_dir / f"top_ops_{safe_name(exp.name)}.png"))
    for comparison in comparisons:
        cats = comparison.rows[comparison.rows["level"] == "category"]
        cats = cats[(cats["baseline_ms"] > 0) | (cats["candidate_ms"] > 0)]
        if cats.empty:
            continue
        fig, ax = plt.subplots(figsize=(7, 4))
        x = np.arange(len(cats))
        ax.bar(x - 0.2, cats["baseline_ms"], 0.4, label=comparison.baseline.name, color="#8c8c8c")
        ax.bar(x + 0.2, cats["candidate_ms"], 0.4, label=comparison.candidate.name, color="#4c72b0")
        ax.set_xticks(x, cats["name"], rotation=20, ha="right")
        ax.set_ylabel("ms per inference (traced runs, mean)")
        positive = pd.concat([cats["baseline_ms"], cats["candidate_ms"]])
        positive = positive[positive > 0]
        if positive.max() / positive.min() > 20:  # a linear axis would flatten the faster side to nothing
            ax.set_yscale("log")
            ax.set_ylabel("ms per inference (traced runs, mean; log scale)")
        ax.set_title(f"Per category: {comparison.baseline.name} vs {comparison.candidate.name}")
        ax.legend()
        fig.tight_layout()
        written.append(save_figure(fig, charts_dir / f"compare_{comparison.file_stem}.png"))
    return written


def save_figure(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


# ----------------------------------------------------------------------------- report


def fmt_ms(value: Optional[float]) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.4g}"


def fmt_ci(low: Optional[float], high: Optional[float]) -> str:
    return "n/a (too few runs)" if low is None or high is None else f"[{low:.4g}, {high:.4g}]"


def md_table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell).replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


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


def e2e_section(experiments: list[Experiment]) -> list[str]:
    rows = []
    for exp in experiments:
        if not exp.e2e:
            rows.append([exp.name, exp.meta.get("threads", "?"), exp.status, "", "", "", "", "", "", "", ""])
            continue
        s = exp.e2e
        rows.append([exp.name, exp.meta.get("threads", "?"), exp.status, s["n"], fmt_ms(s["median_ms"]),
                     fmt_ci(s["ci95_low_ms"], s["ci95_high_ms"]), fmt_ms(s["mean_ms"]), fmt_ms(s["p90_ms"]),
                     fmt_ms(s["p99_ms"]), f"{fmt_ms(s['min_ms'])} / {fmt_ms(s['max_ms'])}", f"{s['cv_pct']:.1f} %"])
    sources = {exp.e2e_source for exp in experiments if exp.e2e}
    how = {"timing": "Timing-mode runs (no tracer attached), all rounds pooled.",
           "trace": "Traced runs (Method::execute; tracer overhead included: no timing.json was available)."}
    return ["## End-to-end latency", "",
            " ".join(how[source] for source in sorted(sources)) + " Times in ms per inference.", "",
            md_table(["experiment", "threads", "status", "runs", "median", "95 % CI of median", "mean", "p90",
                      "p99", "min / max", "CV"], rows), "", "![E2E latency](charts/e2e_latency.png)", ""]


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
        rows.append([c.baseline.name, c.candidate.name, fmt_ms(c.baseline.e2e["median_ms"]),
                     fmt_ms(c.candidate.e2e["median_ms"]),
                     f"{s['speedup']:.3f}x" + (" (emulated: timings not meaningful)" if emulated else ""),
                     fmt_ci(s["ci95_low"], s["ci95_high"]), s["rounds"]])
    lines += [md_table(["baseline", "candidate", "baseline median ms", "candidate median ms", "speedup",
                        "95 % CI", "rounds"], rows), ""]
    for c in comparisons:
        lines += [f"### {c.baseline.name} -> {c.candidate.name}", "", c.narrative, ""]
        cats = c.rows[c.rows["level"] == "category"]
        if not cats.empty:
            lines += [md_table(["category", "baseline ms", "candidate ms", "speedup", "baseline share",
                                "candidate share", "change"],
                               [[r["name"], fmt_ms(r["baseline_ms"]), fmt_ms(r["candidate_ms"]),
                                 "n/a" if math.isnan(r["speedup"]) else f"{r['speedup']:.2f}x",
                                 f"{r['baseline_share_pct']:.1f} %", f"{r['candidate_share_pct']:.1f} %",
                                 f"{r['share_change_pp']:+.1f} pp"] for _, r in cats.iterrows()]), "",
                      f"![categories](charts/compare_{c.file_stem}.png)", ""]
    return lines


def category_section(experiments: list[Experiment]) -> list[str]:
    traced = [e for e in experiments if e.categories is not None]
    if not traced:
        return []
    header = ["category"] + [f"{e.name} ms" for e in traced] + [f"{e.name} share" for e in traced]
    rows = []
    for category in CATEGORIES + [UNATTRIBUTED]:
        values = [e.categories.set_index("category").loc[category] for e in traced]
        rows.append([category] + [fmt_ms(v["ms_per_inference"]) for v in values]
                    + [f"{v['share_pct']:.1f} %" for v in values])
    rows.append(["total (= mean Method::execute)"] + [fmt_ms(float(np.mean(e.trace.e2e_ms))) for e in traced]
                + [f"{e.categories['share_pct'].sum():.1f} %" for e in traced])
    return ["## Where the time goes", "",
            "Exclusive operator time from the traced runs (mean per inference). UNATTRIBUTED is the traced "
            "inference time no operator accounts for: framework dispatch and delegate overhead.", "",
            md_table(header, rows), "", "![categories](charts/categories_stacked.png)", ""]


def top_ops_section(experiments: list[Experiment], top_n: int) -> list[str]:
    lines = []
    for exp in experiments:
        if exp.op_stats is None:
            continue
        top = exp.op_stats[exp.op_stats["category"] != UNATTRIBUTED].head(top_n)
        rows = [[r["op_type"], r["category"], r["backend"], r["kernel_path"], r["instances_per_run"],
                 fmt_ms(r["ms_per_inference"]), f"{r['share_of_e2e_pct']:.1f} %",
                 "delegation opportunity" if r["delegation_opportunity"] else ""] for _, r in top.iterrows()]
        lines += [f"### Top {len(top)} operator types: {exp.name}", "",
                  md_table(["op type", "category", "backend", "kernel path", "per run", "ms / inference", "share",
                            "note"], rows), "", f"![top ops](charts/top_ops_{safe_name(exp.name)}.png)", ""]
    return (["## Top operators", ""] + lines) if lines else []


def sme_section(experiments: list[Experiment], cpu: dict[str, Any]) -> list[str]:
    traced = [e for e in experiments if e.op_stats is not None]
    if not traced:
        return []
    rows = []
    for exp in traced:
        total = float(np.mean(exp.trace.e2e_ms))
        per_cat = exp.categories[exp.categories["sme_path_ms"] > 0]
        detail = ", ".join(f"{r['category']} {r['sme_path_pct']:.0f} %" for _, r in per_cat.iterrows()) or "none"
        sme_ops = exp.op_stats[exp.op_stats["sme_path"].astype(bool)]["op_type"].tolist()
        rows.append([exp.name, exp.meta.get("sme2_label") or "", fmt_ms(exp.sme_path_ms),
                     f"{100.0 * exp.sme_path_ms / total:.1f} %", detail, ", ".join(sme_ops) or "none"])
    note = "" if cpu.get("sme2") else f" SME2 on this CPU: {sme2_fact(cpu)}."
    return ["## SME path (from operator names)", "",
            "Operators whose XNNPACK name carries a KleidiAI packed tag (PF32, PF16, PQS8; QP8 on a CPU with SME or SME2) "
            f"ran on the KleidiAI SME/SME2 kernels.{note}", "",
            md_table(["experiment", "SME2 label", "SME path ms / inference", "share of E2E",
                      "share of each category on the SME path", "op types on the SME path"], rows), ""]


def run_isa_evidence(run_dir: Path) -> list[str]:
    """Emulated runs: scripts/isa_evidence.py (the owner of instruction classes) writes isa_evidence.json.
    Returns warnings: why the instruction-level evidence is missing, if it is."""
    if not any(run_dir.glob("*/qemu_in_asm.log")):
        return []
    script = Path(__file__).resolve().parent / "isa_evidence.py"
    if not script.is_file():
        return [f"{script} not found: no instruction-level evidence for the emulated runs; get scripts/isa_evidence.py"]
    result = subprocess.run([sys.executable, str(script), "--run-dir", str(run_dir), "--quiet"],
                            capture_output=True, text=True)
    errors = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    return [f"isa_evidence.py: {line}" for line in errors] if result.returncode else []


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
        by_family = exp.kernels.groupby("isa_family").size().to_dict()
        lines += [f"### {exp.name}: {len(exp.kernels)} kernels ("
                  + ", ".join(f"{fam} {n}" for fam, n in sorted(by_family.items())) + ")", "",
                  md_table(["kind", "kernel", "datatype", "operation", "tile", "ISA", "KleidiAI"],
                           [[r["kind"], f"`{r['name']}`", r["datatype"], r["operation"], r["tile"], r["isa"],
                             yes_no(r["is_kleidiai"])] for _, r in exp.kernels.iterrows()]), ""]
    return lines


def kernel_diff_section(comparisons: list[Comparison]) -> list[str]:
    """Per compare pair with kernel logs on both sides: the registered kernels only one side has."""
    lines = []
    for comp in comparisons:
        base, cand = comp.baseline.kernels, comp.candidate.kernels
        if base is None or cand is None:
            continue
        base_set, cand_set = set(zip(base["kind"], base["name"])), set(zip(cand["kind"], cand["name"]))
        rows = [[kind, "<br>".join(f"`{n}`" for k, n in sorted(base_set - cand_set) if k == kind) or "-",
                 "<br>".join(f"`{n}`" for k, n in sorted(cand_set - base_set) if k == kind) or "-"]
                for kind in sorted({k for k, _ in base_set ^ cand_set})]
        lines += [f"### Kernel diff {comp.baseline.name} -> {comp.candidate.name}", "",
                  f"{len(base_set & cand_set)} kernels registered by both; "
                  + (f"{len(rows)} kinds differ:" if rows else "no kind differs."), ""]
        if rows:
            lines += [md_table(["kind", f"only {comp.baseline.name}", f"only {comp.candidate.name}"], rows), ""]
    return lines


def portable_section(experiments: list[Experiment], top_n: int) -> list[str]:
    rows = []
    for exp in experiments:
        if exp.op_stats is None:
            continue
        ranked = exp.op_stats[exp.op_stats["category"] != UNATTRIBUTED].reset_index(drop=True)
        for rank, r in ranked.iterrows():
            if r["backend"] == "portable":
                rows.append([exp.name, r["op_type"], r["category"], fmt_ms(r["ms_per_inference"]),
                             f"{r['share_of_e2e_pct']:.1f} %", rank + 1,
                             "yes: in the hot list" if rank < top_n else "no"])
    if not rows:
        return ["## Portable operators", "", "Every operator ran inside a delegate: nothing left on portable kernels.", ""]
    return ["## Portable operators (delegation opportunities)", "",
            "These operators ran on ExecuTorch's portable kernels, outside XNNPACK. One in the hot list is worth "
            "delegating (a supported op variant, a different export, or a partitioner option).", "",
            md_table(["experiment", "op", "category", "ms / inference", "share", "rank", "hot"], rows), ""]


def method_section() -> list[str]:
    rule_rows = [[source, f"`{pattern}`", category, sub] for source, pattern, category, sub in CATEGORY_RULES]
    tag_rows = [[tags, path, meaning] for tags, path, meaning in KERNEL_PATH_TAGS]
    return [
        "## How each number was measured", "",
        f"- **E2E latency**: the runner's monotonic clock around `Method::execute()`, in timing mode (no tracer), "
        f"pooled over all interleaved rounds. CI: 95 % percentile bootstrap of the median, {BOOTSTRAP_SAMPLES} "
        f"resamples, fixed seed {BOOTSTRAP_SEED} (re-running gives the same numbers); no CI below "
        f"{MIN_RUNS_FOR_CI} runs. CV = sample standard deviation / mean; above {HIGH_CV_PCT:.0f} % is flagged.",
        "- **Speedup**: median(baseline) / median(candidate), > 1 means the candidate is faster. CI: paired "
        "two-level bootstrap over the interleaved rounds: each resample draws round indices with replacement "
        "(the same rounds for both sides, because round k of both ran back to back) and then resamples runs "
        "within each drawn round; the 2.5th and 97.5th percentiles of the resampled ratios bound the CI.",
        "- **Operator breakdown**: trace-mode runs read with ExecuTorch's Inspector. Each operator's exclusive "
        "time is its own event: XNNPACK per-operator events inside `DELEGATE_CALL`, and `native_call_*` events "
        "of portable kernels inside `OPERATOR_CALL`. The nesting events (`Method::execute`, `DELEGATE_CALL`, "
        "`OPERATOR_CALL`) are never added to operator totals. ms / inference is the mean over traced runs; "
        "shares are of the mean `Method::execute` time, and the UNATTRIBUTED row (E2E minus the sum of "
        "operators) makes them add up to 100 %.",
        "- **XNNPACK timer resolution**: XNNPACK reports each operator in whole microseconds and the delegate lays "
        "them end to end from the start of the call, so operators under 1 us show as 0 and their start times in "
        "trace.json are approximate; the truncated time lands in UNATTRIBUTED.",
        "- **Traced vs timed**: the tracer adds overhead, so traced E2E is a little above the timing E2E; the "
        "analysis warns when they differ by more than a factor of 3 (a unit or file mix-up).",
        "- **Kernel log**: `Using <kind> microkernel '<name>'` lines are registrations, not call counts.", "",
        "Category rules (ordered, first match wins; `portable` rules see the kernel name without `native_call_` "
        "and the overload):", "", md_table(["source", "pattern", "category", "sub-label"], rule_rows), "",
        "Kernel path from the datatype tags in XNNPACK operator names (`Convolution (NHWC, PF32) IGEMM` -> "
        "kleidiai_sme). Observed with the arm64 ExecuTorch 1.5.1 runtime on an emulated SME CPU (QEMU `-cpu max`): "
        "PF32 (fp32 conv/GEMM), PF16 (fp16), PQS8 (static int8 conv/GEMM) and QP8 (dynamic int8 GEMM, also "
        "without SME); with SME off the same ops show F32, F16, QC8 and QS8/QC8W. QDU8 was observed on x86_64:", "",
        md_table(["tags", "kernel_path", "meaning"], tag_rows), "",
    ]


def write_report(path: Path, manifest: dict[str, Any], experiments: list[Experiment],
                 comparisons: list[Comparison], all_warnings: list[str], top_n: int, title_source: str) -> None:
    cpu = cpu_facts(manifest)
    lines = ["# ExecuTorch profiling report", "",
             f"Source: `{title_source}`. Generated {datetime.now(timezone.utc).isoformat(timespec='seconds')} by "
             "analyze_results.py.", ""]
    if all_warnings:
        lines += ["## Warnings", ""] + [f"> **WARNING:** {w}" + "\n>" for w in all_warnings] + [""]
    failed = [e for e in experiments if e.status != "ok"]
    if failed:
        lines += ["Experiments that did not run:", ""] + [f"- {e.name}: {e.status}: {e.error or 'no error recorded'}"
                                                          for e in failed] + [""]
    lines += setup_section(manifest, cpu)
    lines += e2e_section([e for e in experiments if e.status == "ok"])
    lines += speedup_section(comparisons, is_emulated(manifest))
    ok = [e for e in experiments if e.status == "ok"]
    lines += category_section(ok) + top_ops_section(ok, top_n) + sme_section(ok, cpu)
    lines += isa_evidence_section(path.parent)
    lines += kernels_section(ok) + kernel_diff_section(comparisons) + portable_section(ok, top_n) + method_section()
    path.write_text("\n".join(lines) + "\n")


# ----------------------------------------------------------------------------- summary


def jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return None if math.isnan(float(value)) else float(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def summary_dict(source: str, manifest: dict[str, Any], experiments: list[Experiment],
                 comparisons: list[Comparison], all_warnings: list[str], errors: list[str], top_n: int) -> dict:
    cpu = cpu_facts(manifest)
    exps = {}
    for exp in experiments:
        entry: dict[str, Any] = {"status": exp.status, "error": exp.error, "dir": exp.folder.name,
                                 "threads": exp.meta.get("threads"), "sme2_label": exp.meta.get("sme2_label"),
                                 "sme2_effective": exp.meta.get("sme2_effective"),
                                 "e2e_source": exp.e2e_source or None,
                                 "e2e": {k: v for k, v in (exp.e2e or {}).items() if k != "warnings"} or None,
                                 "trace_e2e": {k: v for k, v in (exp.trace_e2e or {}).items() if k != "warnings"}
                                 or None, "warnings": exp.warnings, "errors": exp.errors}
        if exp.categories is not None:
            entry["categories"] = {r["category"]: {"ms_per_inference": r["ms_per_inference"], "share_pct": r["share_pct"],
                                                   "sme_path_ms": r["sme_path_ms"]}
                                   for _, r in exp.categories.iterrows()}
            entry["category_share_sum_pct"] = float(exp.categories["share_pct"].sum())
            entry["top_ops"] = [{"op_type": r["op_type"], "category": r["category"], "backend": r["backend"],
                                 "kernel_path": r["kernel_path"], "ms_per_inference": r["ms_per_inference"],
                                 "share_of_e2e_pct": r["share_of_e2e_pct"]}
                                for _, r in exp.op_stats[exp.op_stats["category"] != UNATTRIBUTED].head(top_n).iterrows()]
            entry["sme_path_ms"] = exp.sme_path_ms
            entry["sme_path_share_pct"] = 100.0 * exp.sme_path_ms / float(np.mean(exp.trace.e2e_ms))
            entry["portable_ops"] = exp.op_stats[exp.op_stats["backend"] == "portable"]["op_type"].tolist()
            entry["traced_runs"] = len(exp.trace.e2e_ms)
        if exp.kernels is not None:
            entry["kernels"] = {"count": len(exp.kernels),
                                "isa_families": exp.kernels.groupby("isa_family").size().to_dict(),
                                "kleidiai": int(exp.kernels["is_kleidiai"].sum())}
        exps[exp.name] = entry
    comps = []
    for c in comparisons:
        cats = c.rows[c.rows["level"] == "category"]
        comps.append({"pair": c.pair, "baseline": c.baseline.name, "candidate": c.candidate.name,
                      "speedup": c.speedup["speedup"], "ci95_low": c.speedup["ci95_low"],
                      "ci95_high": c.speedup["ci95_high"], "rounds": c.speedup["rounds"],
                      "method": "ratio of medians; paired two-level bootstrap over interleaved rounds",
                      "emulated": is_emulated(manifest), "narrative": c.narrative, "warnings": c.warnings,
                      "categories": {r["name"]: {"baseline_ms": r["baseline_ms"], "candidate_ms": r["candidate_ms"],
                                                 "speedup": r["speedup"], "share_change_pp": r["share_change_pp"]}
                                     for _, r in cats.iterrows()}})
    return jsonable({"schema_version": SCHEMA_VERSION, "source": source,
                     "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                     "cpu": {"chip": cpu.get("chip"), "sme2": bool(cpu.get("sme2")), "sme": bool(cpu.get("sme"))},
                     "sme2_available": bool(cpu.get("sme2")), "emulated": is_emulated(manifest),
                     "experiments": exps, "comparisons": comps, "warnings": all_warnings, "errors": errors})


def print_summary(console: Console, experiments: list[Experiment], comparisons: list[Comparison],
                  all_warnings: list[str], emulated: bool, out_dir: Path) -> None:
    table = Table(title="End-to-end latency per inference (ms)")
    table.add_column("experiment", no_wrap=True)
    for column in ("runs", "median", "95 % CI", "CV", "largest category", "SME path"):
        table.add_column(column, justify="right")
    for exp in experiments:
        if not exp.e2e:
            table.add_row(exp.name, f"[red]{exp.status}[/red]", "", "", "", "", "")
            continue
        s = exp.e2e
        largest, sme = "", ""
        if exp.categories is not None:
            top = exp.categories.sort_values("ms_per_inference", ascending=False).iloc[0]
            largest = f"{top['category']} {top['share_pct']:.0f} %"
            sme = f"{100.0 * exp.sme_path_ms / float(np.mean(exp.trace.e2e_ms)):.0f} %"
        table.add_row(exp.name, str(s["n"]), fmt_ms(s["median_ms"]), fmt_ci(s["ci95_low_ms"], s["ci95_high_ms"]),
                      f"{s['cv_pct']:.1f} %", largest, sme)
    console.print(table)
    if comparisons:
        if emulated:
            console.print("[bold yellow]emulated: timings not meaningful[/bold yellow] (the CPU was emulated; "
                          "the speedups below only show that the flow works)", soft_wrap=True)
        comp_table = Table(title="Speedup = baseline / candidate")
        comp_table.add_column("pair", no_wrap=True)
        comp_table.add_column("speedup", justify="right")
        comp_table.add_column("95 % CI", justify="right")
        for c in comparisons:
            comp_table.add_row(c.pair, f"{c.speedup['speedup']:.3f}x", fmt_ci(c.speedup["ci95_low"], c.speedup["ci95_high"]))
        console.print(comp_table)
        for c in comparisons:
            console.print(f"[bold]{c.pair}[/bold]: {c.narrative}")
    for warning in all_warnings:
        console.print(f"[bold red]WARNING:[/bold red] {warning}", soft_wrap=True)
    console.print(f"Report: [bold]{out_dir / 'report.md'}[/bold]")


# ----------------------------------------------------------------------------- inputs


def experiments_from_run_dir(run_dir: Path, manifest: dict[str, Any]) -> list[Experiment]:
    if manifest.get("schema_version") != SCHEMA_VERSION:
        raise AnalysisError(f"{run_dir / 'manifest.json'}: schema_version {manifest.get('schema_version')!r} is not "
                            f"{SCHEMA_VERSION}; analyse it with the kit version that wrote it")
    entries = manifest.get("experiments")
    if not isinstance(entries, list) or not entries:
        raise AnalysisError(f"{run_dir / 'manifest.json'}: no experiments listed; re-run the pipeline")
    experiments = []
    for entry in entries:
        folder_name = entry.get("dir") or f"{entry.get('name')}_t{entry.get('threads')}"
        exp = Experiment(name=folder_name, folder=run_dir / folder_name, meta=entry,
                         status=entry.get("status", "ok"), error=entry.get("error"))
        if exp.status == "ok" and not exp.folder.is_dir():
            exp.status, exp.error = "failed", f"folder {folder_name}/ is missing from the run directory"
        experiments.append(exp)
    return experiments


def etrecord_for(exp: Experiment, override: Optional[Path]) -> Optional[Path]:
    """--etrecord when given, else `<model>.etrecord` beside the experiment's model, when it exists.

    An ETRecord of another model reads without error and silently mislabels operators, so one whose
    export metadata (the .json export_model.py writes beside it) names a different .pte is refused.
    """
    model = Path(exp.meta["model"]) if isinstance(exp.meta.get("model"), str) else None
    etrecord = override or (model.with_suffix(".etrecord") if model else None)
    if etrecord is None or not etrecord.is_file():
        return None
    problem = etrecord_model_mismatch(etrecord, model)
    if problem:
        exp.errors.append(problem)
        return None
    return etrecord


def etrecord_model_mismatch(etrecord: Path, model: Optional[Path]) -> Optional[str]:
    """Why this ETRecord does not belong to this .pte, when its export metadata can tell."""
    metadata_path = etrecord.with_suffix(".json")
    if model is None or not model.is_file() or not metadata_path.is_file():
        return None
    try:
        files = json.loads(metadata_path.read_text()).get("files") or {}
    except (OSError, ValueError, AttributeError):
        return None
    recorded = files.get("pte_sha256") if isinstance(files, dict) else None
    if not isinstance(recorded, str):
        return None
    if hashlib.sha256(model.read_bytes()).hexdigest() != recorded:
        return (f"{etrecord}: this ETRecord belongs to another model (its export, {metadata_path.name}, made a "
                f".pte other than {model}); pass the .etrecord exported with {model.name}, or leave --etrecord out")
    return None


def pairs_to_compare(experiments: list[Experiment], manifest: dict[str, Any], baseline: Optional[str],
                     candidate: Optional[str]) -> list[tuple[str, str]]:
    names = {e.name for e in experiments} | {e.meta.get("name") for e in experiments}
    if baseline or candidate:
        if not (baseline and candidate):
            raise AnalysisError("give both --baseline and --candidate (experiment folder names), or neither")
        for name in (baseline, candidate):
            if name not in names:
                raise AnalysisError(f"--baseline/--candidate {name!r} is not an experiment of this run "
                                    f"(have: {', '.join(sorted(e.name for e in experiments))})")
        return [(baseline, candidate)]
    return [(p["baseline"], p["candidate"]) for p in manifest.get("compare") or []]


def find_experiment(experiments: list[Experiment], name: str) -> Optional[Experiment]:
    return next((e for e in experiments if e.name == name), None) or \
        next((e for e in experiments if e.meta.get("name") == name), None)


def fresh_outdir(etdump: Path, requested: Optional[Path]) -> Path:
    """A folder that holds no earlier analysis: --outdir if new/empty, else `<stem>_analysis[_N]` beside the ETDump."""
    if requested is not None:
        if requested.exists() and any(requested.iterdir()):
            raise AnalysisError(f"{requested}: already holds files; pass a new --outdir (earlier results are kept)")
        return requested
    base = etdump.parent / f"{etdump.stem}_analysis"
    candidate, n = base, 2
    while candidate.exists():
        candidate, n = base.with_name(f"{base.name}_{n}"), n + 1
    return candidate


# ----------------------------------------------------------------------------- main


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    doc_lines = (__doc__ or "").split("\n")
    epilog = "\n".join(doc_lines[doc_lines.index("Files written (run-directory mode; `--etdump` mode writes the "
                                                  "same set into one folder):"):])
    parser = argparse.ArgumentParser(
        description="Analyse ExecuTorch profiling results: E2E statistics, operator and category breakdown, "
                    "SME2 ON/OFF comparison, kernel view, charts, Perfetto trace and a Markdown report.",
        epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--run-dir", type=Path, help="run directory written by a pipeline (holds manifest.json)")
    source.add_argument("--etdump", type=Path, help="analyse one ETDump file without a run directory")
    parser.add_argument("--etrecord", type=Path, help="ETRecord of the model (adds backend names); in --run-dir mode "
                        "it applies to every experiment, otherwise <model>.etrecord beside each model is used")
    parser.add_argument("--baseline", help="experiment folder to compare from (default: the manifest's compare list)")
    parser.add_argument("--candidate", help="experiment folder to compare to")
    parser.add_argument("--top", type=int, default=10, help="operators in the top-N tables and charts (default 10)")
    parser.add_argument("--outdir", type=Path, help="--etdump mode: output folder (default: a new "
                        "<etdump stem>_analysis folder beside the ETDump)")
    parser.add_argument("--json", action="store_true", help="print analysis_summary.json to stdout "
                        "(the terminal summary then goes to stderr)")
    args = parser.parse_args(argv)
    if args.top < 1:
        parser.error("--top must be >= 1")
    if args.outdir and not args.etdump:
        parser.error("--outdir is for --etdump mode; run-directory outputs go into the run directory")
    return args


def prepare_inputs(args: argparse.Namespace) -> tuple[dict[str, Any], list[Experiment], Path, str]:
    """Manifest, experiments, output folder and a label of the source, for either mode."""
    if args.etrecord and not args.etrecord.is_file():
        raise AnalysisError(f"{args.etrecord}: no such ETRecord; pass the .etrecord export_model.py wrote, "
                            "or leave --etrecord out")
    if args.etdump:
        check_etdump_file(args.etdump)
        out_dir = fresh_outdir(args.etdump, args.outdir)
        out_dir.mkdir(parents=True)
        exp = Experiment(name=args.etdump.stem, folder=out_dir, meta={"name": args.etdump.stem})
        return {}, [exp], out_dir, str(args.etdump)
    run_dir = args.run_dir
    if not run_dir.is_dir():
        raise AnalysisError(f"{run_dir}: no such run directory; pass the output folder a pipeline wrote")
    manifest = read_json(run_dir / "manifest.json", "manifest")
    check_manifest_shape(run_dir / "manifest.json", manifest)
    return manifest, experiments_from_run_dir(run_dir, manifest), run_dir, str(run_dir)


def load_etdump_mode_trace(args: argparse.Namespace, exp: Experiment) -> None:
    """--etdump mode: the trace lives outside the output folder."""
    exp.trace = load_trace(args.etdump, args.etrecord)
    exp.trace_e2e = latency_stats(exp.trace.e2e_ms)
    exp.e2e, exp.e2e_source = exp.trace_e2e, "trace"
    exp.op_stats = op_stats_table(exp.trace.ops, exp.trace.e2e_ms, cpu_has_sme=False)
    exp.categories = category_table(exp.op_stats)
    exp.warnings += exp.trace.warnings + exp.e2e["warnings"]
    exp.warnings.append("single ETDump: E2E comes from the traced runs (tracer overhead included); "
                        "QP8 operators are not counted as SME path because the CPU is unknown")


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    console = Console(stderr=args.json)
    try:
        return analyze(args, console)
    except KeyboardInterrupt:
        console.print("[bold red]interrupted:[/bold red] the analysis stopped; the run's measurements are untouched, "
                      "run the same command again to regenerate the outputs", soft_wrap=True)
        return 130
    except OSError as error:
        console.print(f"[bold red]error:[/bold red] could not write {error.filename or 'the outputs'} "
                      f"({error.strerror or error}); free disk space or fix the folder's permissions, then run "
                      "the same command again", soft_wrap=True)
        return 1


def analyze(args: argparse.Namespace, console: Console) -> int:
    """Read, analyse, write; bad input ends in one error line (exit 1)."""
    try:
        manifest, experiments, out_dir, source = prepare_inputs(args)
        cpu = cpu_facts(manifest)
        # A plain line, not a spinner: a refresh thread slows the Inspector's import-heavy start.
        console.print("Reading ETDumps with the ExecuTorch Inspector...")
        if args.etdump:
            load_etdump_mode_trace(args, experiments[0])
        else:
            for exp in experiments:
                if exp.status == "ok":
                    analyze_experiment(exp, etrecord_for(exp, args.etrecord), cpu_has_sme(cpu))
                    exp.warnings += packed_path_warnings(exp, cpu)
        comparisons = []
        for base_name, cand_name in pairs_to_compare(experiments, manifest, args.baseline, args.candidate):
            base, cand = find_experiment(experiments, base_name), find_experiment(experiments, cand_name)
            if base is None or cand is None or not base.e2e or not cand.e2e:
                continue  # reported below as a skipped comparison
            comparisons.append(compare(base, cand, cpu))
    except AnalysisError as error:
        console.print(f"[bold red]error:[/bold red] {error}", soft_wrap=True)
        return 1

    all_warnings, errors = [], []
    for exp in experiments:
        if exp.status != "ok":
            all_warnings.append(f"{exp.name}: {exp.status} in the manifest ({exp.error or 'no error recorded'})")
        all_warnings += [f"{exp.name}: {w}" for w in exp.warnings]
        errors += exp.errors
    compared = {c.pair for c in comparisons}
    for base_name, cand_name in pairs_to_compare(experiments, manifest, args.baseline, args.candidate):
        if f"{base_name}->{cand_name}" not in compared and not any(
                c.baseline.meta.get("name") == base_name and c.candidate.meta.get("name") == cand_name
                for c in comparisons):
            all_warnings.append(f"comparison {base_name} -> {cand_name} skipped: one side has no results")
    for c in comparisons:
        all_warnings += [f"{c.pair}: {w}" for w in c.warnings]

    if not args.etdump:
        all_warnings += run_isa_evidence(out_dir)
    written = []
    for exp in experiments:
        written += write_experiment_outputs(exp)
    if comparisons:
        write_csv(pd.concat([c.rows for c in comparisons], ignore_index=True), out_dir / "comparison.csv")
        written.append(out_dir / "comparison.csv")
    retired = retire_stale_outputs(out_dir, ["comparison.csv"], written)
    for exp in experiments:
        retired += retire_stale_outputs(exp.folder, STALE_CANDIDATES, written)
    if retired:
        all_warnings.append(f"outputs of an earlier analysis that this one could not regenerate were renamed to "
                            f"*.stale: {', '.join(retired)}")
    written += make_charts([e for e in experiments if e.status == "ok"], comparisons, out_dir / "charts", args.top)
    write_text_atomic(out_dir / "trace.json", json.dumps(chrome_trace(experiments)))
    write_report(out_dir / "report.md", manifest, experiments, comparisons, all_warnings + errors, args.top, source)
    summary = summary_dict(source, manifest, experiments, comparisons, all_warnings, errors, args.top)
    write_text_atomic(out_dir / "analysis_summary.json", json.dumps(summary, indent=2) + "\n")

    print_summary(console, experiments, comparisons, all_warnings, is_emulated(manifest), out_dir)
    for error in errors:
        console.print(f"[bold red]error:[/bold red] {error}", soft_wrap=True)
    if args.json:
        print(json.dumps(summary, indent=2))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
