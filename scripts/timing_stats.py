#!/usr/bin/env python3
"""End-to-end latency statistics with confidence intervals between processes.

The stage of the analysis that turns timing-mode latencies into the headline numbers: the median
per inference, its 95 % CI, the speedup of each compare pair and its CI. Every timing round is a
separate runner process, and what a reader meets on the next run is the variation between
processes, so the CIs resample rounds first and then runs within each drawn round (as pyperf
treats processes). A single round (or a trace) gives only a within-process CI, and says so.
analyze_results.py and recompute_results.py run it as a subprocess and read the JSON it writes.

Example:
    python scripts/timing_stats.py --experiment portable_t1 out/run/portable_t1/timing.json \\
        --experiment xnnpack_t1 out/run/xnnpack_t1/timing.json \\
        --pair portable_t1 xnnpack_t1 --out /tmp/e2e_stats.json

Inputs: --experiment NAME FILE takes a pipeline timing.json (rounds) or a runner --timing_json file
(one round); --trace-runs NAME FILE takes the runs.csv of trace_breakdown.py (traced runs in one
process, tracer attached: its execute_ms column). An experiment's E2E comes from its timing file,
else from its traced runs; a pair uses timing when both sides have it, else both sides' traces.

Output (--out, JSON):
  {"schema_version", "method", "bootstrap": {"samples", "seed"},
   "experiments": {NAME: {"source", "n", "rounds", "median_ms", "ci95_low_ms", "ci95_high_ms",
                          "ci_method", "rel_ci_width_pct", "mean_ms", "min_ms", "max_ms", "p90_ms",
                          "p99_ms", "std_ms", "cv_pct", "round_medians_ms", "round_ci95_ms",
                          "rounds_agree", "rounds_note", "warnings"}},
   "pairs": [{"baseline", "candidate", "source", "speedup", "ci95_low", "ci95_high", "rounds", "interleaved",
              "method", "warnings"}]}

`rel_ci_width_pct` is (CI high - CI low) / median; `rounds_agree` is false when two rounds'
within-round CIs of the median do not overlap: the rounds differ more than their own runs explain
(the machine changed between processes), and only the between-process CI is worth quoting.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from pathlib import Path
from typing import Any, Optional

import numpy as np
from rich.console import Console

SCHEMA_VERSION = 1
BOOTSTRAP_SAMPLES = 2000
BOOTSTRAP_SEED = 20251123
MIN_RUNS_FOR_CI = 10
# Fewer rounds than this cannot show how much processes differ: the CI then covers runs only.
MIN_ROUNDS_FOR_BETWEEN_CI = 5
# A round needs this many runs for its own CI (the between-round agreement check).
MIN_RUNS_FOR_ROUND_CI = 3


class StatsError(Exception):
    """Bad input: the message is one line naming the problem and the fix."""


def read_rounds(path: Path) -> tuple[list[np.ndarray], str]:
    """Latencies per round (one array per process) and the source kind."""
    if path.suffix == ".csv":
        try:
            with path.open(newline="") as handle:
                values = [float(row["execute_ms"]) for row in csv.DictReader(handle)]
        except (OSError, KeyError, ValueError) as error:
            raise StatsError(f"{path}: not a runs.csv of trace_breakdown.py ({type(error).__name__}); "
                             "run trace_breakdown.py on the trace first") from None
        rounds, source = [np.asarray(values)], "trace"
    else:
        try:
            timing = json.loads(path.read_text())
        except FileNotFoundError:
            raise StatsError(f"{path}: no such timing file; pass the timing.json a pipeline wrote") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise StatsError(f"{path}: not valid timing JSON ({type(error).__name__}); restore it from the run "
                             "or measure again") from None
        if not isinstance(timing, dict):
            raise StatsError(f"{path}: the timing JSON is a JSON {type(timing).__name__}, not an object; "
                             "restore it from the run or re-run the experiment")
        try:
            if timing.get("rounds"):
                ordered = sorted(timing["rounds"], key=lambda r: r["round"])
                rounds = [np.asarray(r["latencies_ms"], dtype=float) for r in ordered]
            else:
                rounds = [np.asarray(timing.get("latencies_ms", []), dtype=float)]
        except (TypeError, KeyError, ValueError, AttributeError):
            raise StatsError(f"{path}: 'rounds' / 'latencies_ms' do not have the documented shape (a list of objects "
                             "with round and latencies_ms, a list of numbers); restore the file or re-run the "
                             "experiment") from None
        source = "timing"
    rounds = [r for r in rounds if r.size]
    values = np.concatenate(rounds) if rounds else np.array([])
    if values.size == 0 or not np.all(np.isfinite(values)) or np.any(values <= 0):
        raise StatsError(f"{path}: latencies must be positive finite numbers; measure again")
    return rounds, source


def percentile_ci(samples: np.ndarray) -> tuple[float, float]:
    return float(np.percentile(samples, 2.5)), float(np.percentile(samples, 97.5))


def two_level_medians(rounds: list[np.ndarray], rng: np.random.Generator, samples: int) -> np.ndarray:
    """Medians of resamples: rounds drawn with replacement, then runs within each drawn round."""
    out = np.empty(samples)
    for i in range(samples):
        picked = rng.integers(0, len(rounds), size=len(rounds))
        out[i] = np.median(np.concatenate([rng.choice(rounds[k], size=rounds[k].size) for k in picked]))
    return out


def run_medians(values: np.ndarray, rng: np.random.Generator, samples: int) -> np.ndarray:
    return np.median(values[rng.integers(0, values.size, size=(samples, values.size))], axis=1)


def round_agreement(rounds: list[np.ndarray]) -> tuple[Optional[bool], str, list[Optional[list[float]]]]:
    """Whether each round's within-round CI of the median overlaps every other's."""
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    cis: list[Optional[list[float]]] = []
    for values in rounds:
        cis.append(list(percentile_ci(run_medians(values, rng, 500))) if values.size >= MIN_RUNS_FOR_ROUND_CI
                   else None)
    known = [(k, ci) for k, ci in enumerate(cis) if ci is not None]
    if len(known) < 2:
        return None, "fewer than two rounds with enough runs: round agreement not checked", cis
    highest_low = max(known, key=lambda item: item[1][0])
    lowest_high = min(known, key=lambda item: item[1][1])
    if highest_low[1][0] > lowest_high[1][1]:
        return False, (f"rounds disagree: round {highest_low[0]} (CI {highest_low[1][0]:.4g}-{highest_low[1][1]:.4g} ms) "
                       f"and round {lowest_high[0]} (CI {lowest_high[1][0]:.4g}-{lowest_high[1][1]:.4g} ms) do not "
                       "overlap; the machine changed between processes: quote the between-process CI"), cis
    return True, f"all {len(known)} rounds' CIs overlap", cis


def experiment_stats(rounds: list[np.ndarray], source: str) -> dict[str, Any]:
    values = np.concatenate(rounds)
    mean = float(np.mean(values))
    std = float(np.std(values, ddof=1)) if values.size > 1 else 0.0
    median = float(np.median(values))
    stats: dict[str, Any] = {
        "source": source, "n": int(values.size), "rounds": len(rounds), "median_ms": median, "mean_ms": mean,
        "min_ms": float(values.min()), "max_ms": float(values.max()), "p90_ms": float(np.percentile(values, 90)),
        "p99_ms": float(np.percentile(values, 99)), "std_ms": std, "cv_pct": 100.0 * std / mean if mean > 0 else None,
        "ci95_low_ms": None, "ci95_high_ms": None, "ci_method": None, "rel_ci_width_pct": None,
        "round_medians_ms": [float(np.median(r)) for r in rounds], "warnings": []}
    stats["rounds_agree"], stats["rounds_note"], stats["round_ci95_ms"] = round_agreement(rounds)
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    if values.size < MIN_RUNS_FOR_CI:
        stats["warnings"].append(f"only {values.size} runs: too few for a confidence interval "
                                 f"(need {MIN_RUNS_FOR_CI}); raise runs in the config")
        return stats
    if len(rounds) >= MIN_ROUNDS_FOR_BETWEEN_CI:
        medians, stats["ci_method"] = two_level_medians(rounds, rng, BOOTSTRAP_SAMPLES), "rounds, then runs"
    else:
        medians, stats["ci_method"] = run_medians(values, rng, BOOTSTRAP_SAMPLES), "runs (within process)"
        what = "a trace (one process)" if source == "trace" else f"{len(rounds)} round(s)"
        stats["warnings"].append(f"{what}: the CI covers runs within processes only, not the variation between "
                                 f"processes; use {MIN_ROUNDS_FOR_BETWEEN_CI}+ rounds")
    stats["ci95_low_ms"], stats["ci95_high_ms"] = percentile_ci(medians)
    stats["rel_ci_width_pct"] = 100.0 * (stats["ci95_high_ms"] - stats["ci95_low_ms"]) / median
    if stats["rounds_agree"] is False:
        stats["warnings"].append(stats["rounds_note"])
    return stats


def pair_speedup(base: list[np.ndarray], cand: list[np.ndarray], interleaved: bool = True) -> dict[str, Any]:
    """median(baseline) / median(candidate), CI from a two-level bootstrap (rounds, then runs).

    When the rounds alternated in one session, round k of the baseline ran just before round k of
    the candidate, so each resample draws the same round indices for both sides (slow drift of the
    machine hits both). When they did not (a side was resumed in another session), the two sides
    are independent samples and each side's rounds are drawn on their own.
    """
    if interleaved:
        n_rounds = min(len(base), len(cand))
        base, cand = base[:n_rounds], cand[:n_rounds]
    speedup = float(np.median(np.concatenate(base)) / np.median(np.concatenate(cand)))
    method = ("ratio of medians; paired bootstrap: rounds, then runs within rounds" if interleaved else
              "ratio of medians; independent bootstrap of each side (rounds not interleaved): rounds, then runs")
    result: dict[str, Any] = {"speedup": speedup, "ci95_low": None, "ci95_high": None,
                              "rounds": min(len(base), len(cand)), "interleaved": interleaved, "method": method,
                              "warnings": []}
    if min(sum(r.size for r in base), sum(r.size for r in cand)) < MIN_RUNS_FOR_CI:
        result["warnings"].append("too few runs per side for a speedup CI")
        return result
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    ratios = np.empty(BOOTSTRAP_SAMPLES)
    for i in range(BOOTSTRAP_SAMPLES):
        picked_base = rng.integers(0, len(base), size=len(base))
        picked_cand = picked_base if interleaved else rng.integers(0, len(cand), size=len(cand))
        b = np.concatenate([rng.choice(base[k], size=base[k].size) for k in picked_base])
        c = np.concatenate([rng.choice(cand[k], size=cand[k].size) for k in picked_cand])
        ratios[i] = np.median(b) / np.median(c)
    result["ci95_low"], result["ci95_high"] = percentile_ci(ratios)
    if result["rounds"] < MIN_ROUNDS_FOR_BETWEEN_CI:
        what = "interleaved round(s)" if interleaved else "round(s) on one side"
        result["warnings"].append(f"only {result['rounds']} {what}: the CI cannot see the variation between "
                                  f"processes; use {MIN_ROUNDS_FOR_BETWEEN_CI}+ rounds")
    if not interleaved:
        result["warnings"].append("the two sides' rounds ran in different sessions (--resume): the speedup CI "
                                  "treats them as independent samples; rerun the pair in one session for a paired CI")
    return result


def jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return None if math.isnan(float(value)) else float(value)
    return value


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    doc = __doc__ or ""
    parser = argparse.ArgumentParser(
        description="E2E latency medians, CIs between processes (rounds, then runs) and speedups of compare pairs.",
        epilog=doc[doc.index("Inputs:"):], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiment", nargs=2, action="append", default=[], metavar=("NAME", "FILE"),
                        help="an experiment and its timing.json; repeat")
    parser.add_argument("--trace-runs", nargs=2, action="append", default=[], metavar=("NAME", "FILE"),
                        help="an experiment and the runs.csv of its trace (trace_breakdown.py); repeat")
    parser.add_argument("--pair", nargs=2, action="append", default=[], metavar=("BASELINE", "CANDIDATE"),
                        help="a compare pair of experiment names; repeat")
    parser.add_argument("--not-interleaved", nargs=2, action="append", default=[], metavar=("BASELINE", "CANDIDATE"),
                        help="a --pair whose rounds did not alternate in one session (manifest compare entry "
                             "with rounds_interleaved false): its sides are bootstrapped independently; repeat")
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write ('-' prints it)")
    return parser.parse_args(argv)


def main(argv: Optional[list[str]] = None) -> int:
    try:
        return run(parse_args(argv))
    except KeyboardInterrupt:  # the caller reports the interruption; the output is written atomically
        return 130


def run(args: argparse.Namespace) -> int:
    console = Console(stderr=True)
    experiments, errors = {}, {}
    rounds_of: dict[str, dict[str, list[np.ndarray]]] = {"timing": {}, "trace": {}}
    for kind, entries in (("trace", args.trace_runs), ("timing", args.experiment)):
        for name, file in entries:
            try:
                rounds, source = read_rounds(Path(file))
            except StatsError as error:  # a bad timing file is this experiment's error, even with a trace
                errors[name] = str(error)
                experiments[name] = {"error": str(error)}
                rounds_of["trace"].pop(name, None)
                continue
            rounds_of[kind][name] = rounds
            experiments[name] = experiment_stats(rounds, source)  # timing (read last) wins over the trace
            if kind == "timing":
                errors.pop(name, None)
    pairs = []
    not_interleaved = {tuple(pair) for pair in args.not_interleaved}
    for base, cand in args.pair:
        kind = next((k for k in ("timing", "trace") if base in rounds_of[k] and cand in rounds_of[k]), None)
        if kind is None:
            pairs.append({"baseline": base, "candidate": cand, "error": "no latencies of one mode on both sides"})
            continue
        pairs.append({"baseline": base, "candidate": cand, "source": kind,
                      **pair_speedup(rounds_of[kind][base], rounds_of[kind][cand],
                                   interleaved=(base, cand) not in not_interleaved)})
    document = jsonable({"schema_version": SCHEMA_VERSION,
                         "method": "median of all runs; 95 % percentile bootstrap CI resampling rounds (processes), "
                                   "then runs within each drawn round",
                         "bootstrap": {"samples": BOOTSTRAP_SAMPLES, "seed": BOOTSTRAP_SEED},
                         "experiments": experiments, "pairs": pairs})
    text = json.dumps(document, indent=2) + "\n"
    if str(args.out) == "-":
        print(text, end="")
    else:
        tmp = args.out.with_name(args.out.name + ".tmp")
        tmp.write_text(text)
        tmp.replace(args.out)
    for name, error in errors.items():
        console.print(f"[bold red]error:[/bold red] {name}: {error}", soft_wrap=True, highlight=False)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
