#!/usr/bin/env python3
"""Turn the XNNPACK kernel log of each experiment into kernels.csv and kernel facts.

A `*_kernels` runner prints one `Using <kind> microkernel '<name>'` line (stdout
`Note (XNNPACK): ...`, or logcat on Android) each time XNNPACK registers a microkernel for this CPU
and configuration; the pipeline keeps them in `<experiment>/kernels.log`. This stage splits every
kernel name into datatype, operation, tile and ISA (XNNPACK `xnn_...` and KleidiAI `kai_...`
names), writes `<experiment>/kernels.csv`, and with --out a JSON of kernel facts: per experiment
the count per ISA family, per compare pair the kernels only one side registered. The lines say
which kernels were registered, not how often each ran. analyze_results.py runs it as a subprocess.

Example:
    python scripts/kernel_log.py --experiment off_t1 out/run/off_t1 --experiment on_t1 out/run/on_t1 \\
        --pair off_t1 on_t1 --out /tmp/kernel_facts.json

Files written:
  <experiment folder>/kernels.csv   only when the folder holds kernels.log
      kind, name, datatype, operation, tile, isa, isa_family, is_kleidiai, registrations
  --out FILE (JSON)
      {"schema_version", "experiments": {NAME: {"count", "isa_families": {FAMILY: n}, "kleidiai",
                                                "warnings"}},
       "pairs": [{"baseline", "candidate", "both", "kinds": [{"kind", "only_baseline", "only_candidate"}]}]}
An experiment without kernels.log has no kernels.csv and no entry; a pair needs both sides' logs.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import re
import sys
from collections import Counter
from pathlib import Path
from typing import Any, Optional

from rich.console import Console
from rich.table import Table

SCHEMA_VERSION = 1
LOG_NAME = "kernels.log"
CSV_NAME = "kernels.csv"
COLUMNS = ["kind", "name", "datatype", "operation", "tile", "isa", "isa_family", "is_kleidiai", "registrations"]
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


class KernelLogError(Exception):
    """Bad input: the message is one line naming the problem and the fix."""


# ----------------------------------------------------------------------------- kernel names


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


def parse_kernel_log(text: str) -> list[dict[str, Any]]:
    """`Using <kind> microkernel '<name>'` lines -> one row per (kind, kernel), in first-seen order.

    `registrations` counts log lines, not calls: XNNPACK logs a kernel when it registers it.
    """
    counts: Counter[tuple[str, str]] = Counter()
    for line in text.splitlines():
        match = KERNEL_LINE.search(line)
        if match:
            counts[(match.group("kind").strip(), match.group("name"))] += 1
    return [{"kind": kind, "name": name, **split_kernel_name(name), "registrations": n}
            for (kind, name), n in counts.items()]


# ----------------------------------------------------------------------------- facts


def experiment_facts(rows: list[dict[str, Any]]) -> dict[str, Any]:
    families = Counter(row["isa_family"] for row in rows)
    warnings = [] if rows else ["kernels.log has no `Using ... microkernel` lines: was the runner built with "
                                "the kernel log (a *_kernels variant)?"]
    return {"count": len(rows), "isa_families": dict(sorted(families.items())),
            "kleidiai": sum(bool(row["is_kleidiai"]) for row in rows), "warnings": warnings}


def kernel_diff(baseline: str, candidate: str, tables: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Registered (kind, kernel) pairs only one side has, grouped by kind."""
    base = {(row["kind"], row["name"]) for row in tables[baseline]}
    cand = {(row["kind"], row["name"]) for row in tables[candidate]}
    kinds = [{"kind": kind, "only_baseline": [n for k, n in sorted(base - cand) if k == kind],
              "only_candidate": [n for k, n in sorted(cand - base) if k == kind]}
             for kind in sorted({k for k, _ in base ^ cand})]
    return {"baseline": baseline, "candidate": candidate, "both": len(base & cand), "kinds": kinds}


# ----------------------------------------------------------------------------- files


def write_text_atomic(path: Path, text: str) -> None:
    """Temporary file + rename: an interrupted or failed write never leaves a half file behind."""
    temporary = path.with_name(f".{path.name}.partial-{os.getpid()}")
    try:
        temporary.write_text(text)
        temporary.replace(path)
    finally:
        if temporary.exists():
            temporary.unlink()


def csv_text(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def read_log(folder: Path) -> Optional[list[dict[str, Any]]]:
    """The kernel rows of a folder's kernels.log, or None when it has none."""
    if not folder.is_dir():
        raise KernelLogError(f"{folder}: no such experiment folder; pass a folder of a run directory "
                             "(<run>/<experiment>_t<threads>)")
    log = folder / LOG_NAME
    if not log.is_file():
        return None
    return parse_kernel_log(log.read_text(errors="replace"))


def analyse(experiments: list[tuple[str, Path]], pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Write each folder's kernels.csv; return the kernel facts."""
    known = {name for name, _ in experiments}
    for pair in pairs:
        unknown = [side for side in pair if side not in known]
        if unknown:
            raise KernelLogError(f"--pair names {unknown[0]!r}, which no --experiment gives; "
                                 "pass --experiment NAME FOLDER for both sides of every pair")
    logs = {name: read_log(folder) for name, folder in experiments}  # every folder checked before any write
    tables: dict[str, list[dict[str, Any]]] = {}
    for name, folder in experiments:
        rows = logs[name]
        if rows is not None:
            write_text_atomic(folder / CSV_NAME, csv_text(rows))
            tables[name] = rows
    return {"schema_version": SCHEMA_VERSION,
            "experiments": {name: experiment_facts(rows) for name, rows in tables.items()},
            "pairs": [kernel_diff(b, c, tables) for b, c in pairs if b in tables and c in tables]}


def show(facts: dict[str, Any], console: Console) -> None:
    table = Table(title="Registered microkernels (registrations, not calls)")
    for column in ("experiment", "kernels", "KleidiAI", "per ISA family"):
        table.add_column(column)
    for name, entry in facts["experiments"].items():
        table.add_row(name, str(entry["count"]), str(entry["kleidiai"]),
                      ", ".join(f"{family} {n}" for family, n in entry["isa_families"].items()) or "none")
    console.print(table)
    for pair in facts["pairs"]:
        differ = ", ".join(pair_kind["kind"] for pair_kind in pair["kinds"]) or "none"
        console.print(f"{pair['baseline']} -> {pair['candidate']}: {pair['both']} kernels in both; "
                      f"kinds that differ: {differ}", soft_wrap=True)


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    doc_lines = (__doc__ or "").split("\n")
    parser = argparse.ArgumentParser(description="Split each experiment's XNNPACK kernel log into a CSV of its "
                                     "registered kernels and kernel facts (per ISA family, the diff of a pair).",
                                     epilog="\n".join(doc_lines[doc_lines.index("Files written:"):]),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiment", nargs=2, action="append", default=[], metavar=("NAME", "FOLDER"),
                        required=True, help="an experiment folder holding kernels.log (its CSV is written beside it)")
    parser.add_argument("--pair", nargs=2, action="append", default=[], metavar=("BASELINE", "CANDIDATE"),
                        help="two experiment NAMEs whose registered kernels to diff")
    parser.add_argument("--out", type=Path, metavar="FILE", help="write the kernel facts here (JSON)")
    parser.add_argument("--quiet", action="store_true", help="no table, only errors")
    return parser.parse_args(argv)


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    console = Console()
    try:
        facts = analyse([(name, Path(folder)) for name, folder in args.experiment],
                        [(base, cand) for base, cand in args.pair])
        if args.out:
            write_text_atomic(args.out, json.dumps(facts, indent=2) + "\n")
    except KernelLogError as error:
        console.print(f"[bold red]error:[/bold red] {error}", soft_wrap=True)
        return 2
    except OSError as error:  # a full disk, an unreadable log or a read-only folder
        console.print(f"[bold red]error:[/bold red] cannot read or write {error.filename or 'a file'}: "
                      f"{error.strerror or error}; free space or fix the permissions, then rerun", soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        console.print("[bold red]interrupted:[/bold red] nothing half-written is left; rerun the same command",
                      soft_wrap=True)
        return 130
    if not args.quiet:
        show(facts, console)
    return 0


if __name__ == "__main__":
    sys.exit(main())
