#!/usr/bin/env python3
"""Turn an emulated run's translated-code log into instruction-level proof of the SME2 path.

For every experiment of a run directory (or one experiment folder) that ran under
qemu-aarch64 with `-d in_asm` (`qemu_in_asm.log`) and recorded the runner's memory map
(`proc_maps.txt`, the runner's --proc_maps_path), it:

  1. reads every instruction QEMU translated: address and 32-bit instruction word (QEMU's
     own disassembler prints SME2 multi-vector instructions as `.byte`, so the words are
     decoded here, with Capstone),
  2. classifies each instruction by what the decoded instruction needs: SME2, SME, SVE, NEON
     (Advanced SIMD and floating point) or other (general-purpose),
  3. maps each address to its library through the memory map and to a function through the
     library's ELF symbol tables (XNNPACK's own microkernels are not exported, KleidiAI's are),

and writes, per experiment folder, `isa_evidence.csv` (instructions reached per library and
ISA class) and `isa_kernels.csv` (XNNPACK/KleidiAI functions reached and their ISA class),
plus `isa_evidence.json` in the run directory: per experiment whether SME2 / SME instructions
were reached, the kernels, and for each compare pair the kernels only in one side.
Formats: scripts/README.md. Emulated timings are never performance; this is about the path.

Example:
    python scripts/isa_evidence.py --run-dir out/emulated_isa
    python scripts/isa_evidence.py --experiment-dir out/emulated_isa/sme2_t1 --reached
"""

from __future__ import annotations

import argparse
import bisect
import csv
import json
import os
import re
import struct
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional

from rich.console import Console
from rich.table import Table

SCHEMA_VERSION = 1
LOG_NAME = "qemu_in_asm.log"
MAPS_NAME = "proc_maps.txt"
EVIDENCE_CSV = "isa_evidence.csv"
KERNELS_CSV = "isa_kernels.csv"
REACHED_CSV = "isa_reached.csv"
SUMMARY_JSON = "isa_evidence.json"
CLASSES = ("SME2", "SME", "SVE", "NEON", "other")  # strongest first
NOT_EXPORTED = "(not exported)"
EMULATED_NOTE = "emulated: timings not meaningful"
# Capstone's feature group of a decoded AArch64 instruction -> ISA class. An instruction two
# extensions share counts for the one that introduced it: `ptrue pn8.b` (SVE2.1 or SME2) came with
# SME2, `psel` (SVE2.1 or SME) with SME, `whilelo p0.b` (SVE or streaming SVE) with SVE, and
# `mov x1, v0.d[0]` (NEON or SME) with NEON.
GROUP_CLASS = {
    "hassme2": "SME2", "hassme2p1": "SME2", "hassmef16f16": "SME2", "hassmef8f16": "SME2",
    "hassmef8f32": "SME2", "hassme_lutv2": "SME2", "hassve2p1_or_hassme2": "SME2",
    "hassve2p1_or_hassme2p1": "SME2", "hasssve_fp8dot2": "SME2", "hasssve_fp8dot4": "SME2",
    "hasssve_fp8fma": "SME2",
    "hassme": "SME", "hassmef64f64": "SME", "hassmei16i64": "SME", "hassmefa64": "SME",
    "hassve2p1_or_hassme": "SME",
    "hassve": "SVE", "hassve2": "SVE", "hassve2p1": "SVE", "hassveorsme": "SVE", "hassve2orsme": "SVE",
    "hassve2orsme2": "SVE", "hassve2aes": "SVE", "hassve2bitperm": "SVE", "hassve2sha3": "SVE",
    "hassve2sm4": "SVE", "hasmatmulfp32": "SVE", "hasmatmulfp64": "SVE",
    "hasneon": "NEON", "hasneonorsme": "NEON", "hasfparmv8": "NEON", "hasfullfp16": "NEON",
    "hasfp16fml": "NEON", "hasbf16": "NEON",
}
# Register names when no feature group decides: ZA/ZT0 are SME state, Z/P registers SVE, V/Q/D/S/H/B
# SIMD&FP registers.
SME_REGISTER = re.compile(r"\b(za\w*|zt0)\b")
SVE_REGISTER = re.compile(r"\b(z\d+|p\d+|pn\d+)\b")
SIMD_REGISTER = re.compile(r"\b[vqdshb]([0-9]|[12][0-9]|3[01])\b")
LOG_LINE = re.compile(r"^0x([0-9a-f]+):\s+([0-9a-f]{8})\s")
MAPS_LINE = re.compile(r"^([0-9a-f]+)-([0-9a-f]+)\s+(\S{4})\s+([0-9a-f]+)\s+\S+\s+\d+\s*(.*)$")
KERNEL_SYMBOL = re.compile(r"^(kai_|xnn_.*ukernel|xnn_.*_ukernel)")


class EvidenceError(Exception):
    """Input that cannot be read: the message names the problem and the fix."""


# --- decoding ------------------------------------------------------------------------------


class Classifier:
    """Decodes 32-bit AArch64 instruction words with Capstone and gives each its ISA class."""

    def __init__(self) -> None:
        try:
            import capstone
        except ImportError:
            raise EvidenceError("the capstone package is missing; install the pinned one: "
                                "python -m pip install -r requirements.txt") from None
        if capstone.cs_version()[0] < 6:
            raise EvidenceError(f"capstone {capstone.__version__} cannot decode SME2; install the pinned 6.x: "
                                "python -m pip install -r requirements.txt")
        self.md = capstone.Cs(capstone.CS_ARCH_AARCH64, capstone.CS_MODE_ARM)
        self.md.detail = True
        self.cache: dict[int, tuple[str, str]] = {}

    def decode(self, word: int) -> tuple[str, str]:
        """(ISA class, 'mnemonic operands'); undecodable words are class other."""
        if word not in self.cache:
            self.cache[word] = self._decode(word)
        return self.cache[word]

    def _decode(self, word: int) -> tuple[str, str]:
        insn = next(self.md.disasm(word.to_bytes(4, "little"), 0), None)
        if insn is None:
            return "other", f".word 0x{word:08x}"
        text = f"{insn.mnemonic} {insn.op_str}".strip()
        found = {GROUP_CLASS.get((self.md.group_name(g) or "").lower()) for g in insn.groups}
        for isa in CLASSES[:-1]:
            if isa in found:
                return isa, text
        if SME_REGISTER.search(insn.op_str):
            return "SME", text
        if SVE_REGISTER.search(insn.op_str):
            return "SVE", text
        if SIMD_REGISTER.search(insn.op_str):
            return "NEON", text
        return "other", text


# --- inputs --------------------------------------------------------------------------------


def read_translated(log: Path) -> dict[int, int]:
    """Address -> instruction word of every instruction QEMU translated (a cut-off log reads as far as it goes)."""
    reached: dict[int, int] = {}
    with log.open(errors="replace") as lines:
        for line in lines:
            match = LOG_LINE.match(line)
            if match:
                reached[int(match.group(1), 16)] = int(match.group(2), 16)
    return reached


@dataclass(frozen=True)
class Region:
    start: int
    end: int
    offset: int
    path: str


def read_maps(maps: Path) -> list[Region]:
    """File-backed executable regions of a /proc/<pid>/maps copy, sorted by start."""
    regions = []
    for line in maps.read_text(errors="replace").splitlines():
        match = MAPS_LINE.match(line)
        if match and "x" in match.group(3) and match.group(5).startswith("/"):
            regions.append(Region(int(match.group(1), 16), int(match.group(2), 16), int(match.group(4), 16),
                                  match.group(5).strip()))
    return sorted(regions, key=lambda r: r.start)


@dataclass
class ElfImage:
    """What an address needs from an ELF file: its loadable segments and function symbols."""

    loads: list[tuple[int, int, int]] = field(default_factory=list)  # (file offset, size, vaddr)
    starts: list[int] = field(default_factory=list)
    symbols: list[tuple[int, int, str]] = field(default_factory=list)  # (vaddr, size, name), sorted

    def vaddr_of(self, file_offset: int) -> Optional[int]:
        for offset, size, vaddr in self.loads:
            if offset <= file_offset < offset + size:
                return file_offset - offset + vaddr
        return None

    def symbol_at(self, vaddr: int) -> Optional[str]:
        index = bisect.bisect_right(self.starts, vaddr) - 1
        while index >= 0:
            start, size, name = self.symbols[index]
            if start <= vaddr < start + max(size, 1):
                return name
            if size:  # sized symbols do not nest; an unsized one covers nothing
                return None
            index -= 1
        return None


def read_elf(path: Path) -> Optional[ElfImage]:
    """Segments and STT_FUNC symbols (.dynsym and .symtab) of a 64-bit little-endian ELF, or None."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        return None
    try:
        image = ElfImage()
        phoff, shoff = struct.unpack_from("<QQ", data, 0x20)
        phentsize, phnum, shentsize, shnum = struct.unpack_from("<HHHH", data, 0x36)
        for i in range(phnum):
            p_type, _flags, p_offset, p_vaddr, _paddr, p_filesz = struct.unpack_from("<IIQQQQ", data, phoff + i * phentsize)
            if p_type == 1:  # PT_LOAD
                image.loads.append((p_offset, p_filesz, p_vaddr))
        sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
        names: dict[int, str] = {}
        for _name, sh_type, _flags, _addr, sh_offset, sh_size, sh_link, _info, _align, sh_entsize in sections:
            if sh_type not in (2, 11) or not sh_entsize:  # SHT_SYMTAB, SHT_DYNSYM
                continue
            strtab_offset = sections[sh_link][4]
            for entry in range(sh_offset, sh_offset + sh_size, sh_entsize):
                st_name, st_info, _other, st_shndx, st_value, st_size = struct.unpack_from("<IBBHQQ", data, entry)
                if st_info & 0xF == 2 and st_shndx != 0 and st_value:  # defined STT_FUNC
                    end = data.index(b"\0", strtab_offset + st_name)
                    names.setdefault(st_value, data[strtab_offset + st_name:end].decode(errors="replace"))
                    image.symbols.append((st_value, st_size, names[st_value]))
    except (struct.error, IndexError, ValueError):
        return None
    image.symbols = sorted(set(image.symbols))
    image.starts = [s[0] for s in image.symbols]
    return image


# --- evidence ------------------------------------------------------------------------------


@dataclass
class Instruction:
    library: str
    vaddr: Optional[int]
    symbol: str
    word: int
    isa: str
    text: str


def locate(address: int, regions: list[Region], starts: list[int], images: dict[str, Optional[ElfImage]]
           ) -> tuple[str, Optional[int], str]:
    """(library file name, address in the library's ELF, function) of a translated address."""
    index = bisect.bisect_right(starts, address) - 1
    if index < 0 or address >= regions[index].end:
        return "(anonymous)", None, ""
    region = regions[index]
    if region.path not in images:
        images[region.path] = read_elf(Path(region.path))
    image = images[region.path]
    name = os.path.basename(region.path)
    if image is None:
        return name, None, ""
    vaddr = image.vaddr_of(address - region.start + region.offset)
    return name, vaddr, (image.symbol_at(vaddr) or "") if vaddr is not None else ""


def experiment_instructions(folder: Path, classifier: Classifier) -> list[Instruction]:
    log, maps = folder / LOG_NAME, folder / MAPS_NAME
    if not log.is_file():
        raise EvidenceError(f"no {LOG_NAME} in {folder}: the trace run did not run under the emulator")
    if not maps.is_file():
        raise EvidenceError(f"no {MAPS_NAME} in {folder}: the runner did not record its memory map "
                            "(rebuild it: python scripts/build_runners.py --platform linux-aarch64)")
    regions = read_maps(maps)
    starts = [r.start for r in regions]
    images: dict[str, Optional[ElfImage]] = {}
    instructions = []
    for address, word in sorted(read_translated(log).items()):
        library, vaddr, symbol = locate(address, regions, starts, images)
        isa, text = classifier.decode(word)
        instructions.append(Instruction(library, vaddr, symbol, word, isa, text))
    if not instructions:
        raise EvidenceError(f"{log} holds no translated instructions (QEMU's -d in_asm output); rerun the trace")
    return instructions


def strongest(counts: Counter) -> str:
    return next((isa for isa in CLASSES if counts.get(isa)), "other")


def kernel_rows(instructions: list[Instruction]) -> list[dict]:
    """XNNPACK/KleidiAI functions reached (and XNNPACK-library code that has no exported name)."""
    per_function: dict[tuple[str, str], Counter] = defaultdict(Counter)
    for ins in instructions:
        if KERNEL_SYMBOL.match(ins.symbol):
            per_function[(ins.library, ins.symbol)][ins.isa] += 1
        elif not ins.symbol and "xnnpack" in ins.library and ins.isa != "other":
            per_function[(ins.library, NOT_EXPORTED)][ins.isa] += 1
    rows = []
    for (library, symbol), counts in sorted(per_function.items()):
        rows.append({"library": library, "symbol": symbol, "isa_class": strongest(counts),
                     "instructions": sum(counts.values()), **{isa.lower(): counts.get(isa, 0) for isa in CLASSES}})
    return rows


def write_csv(path: Path, header: list[str], rows: list[dict]) -> None:
    partial = path.with_name(f".{path.name}.partial")
    with partial.open("w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)
    partial.replace(path)


def analyse_experiment(folder: Path, name: str, classifier: Classifier, reached: bool) -> dict:
    """Write the experiment's CSVs; return its summary entry."""
    instructions = experiment_instructions(folder, classifier)
    per_library: dict[str, Counter] = defaultdict(Counter)
    for ins in instructions:
        per_library[ins.library][ins.isa] += 1
    write_csv(folder / EVIDENCE_CSV, ["experiment", "library", "isa_class", "instructions"],
              [{"experiment": name, "library": library, "isa_class": isa, "instructions": counts[isa]}
               for library, counts in sorted(per_library.items()) for isa in CLASSES if counts.get(isa)])
    kernels = kernel_rows(instructions)
    write_csv(folder / KERNELS_CSV, ["experiment", "library", "symbol", "isa_class", "instructions",
                                     *[isa.lower() for isa in CLASSES]],
              [{"experiment": name, **row} for row in kernels])
    if reached:
        write_csv(folder / REACHED_CSV, ["library", "address", "word", "isa_class", "symbol", "instruction"],
                  [{"library": i.library, "address": "" if i.vaddr is None else f"0x{i.vaddr:x}",
                    "word": f"{i.word:08x}", "isa_class": i.isa, "symbol": i.symbol, "instruction": i.text}
                   for i in instructions])
    totals = Counter(ins.isa for ins in instructions)
    return {"status": "ok", "instructions": {isa: totals.get(isa, 0) for isa in CLASSES},
            "sme2_reached": totals["SME2"] > 0, "sme_reached": totals["SME"] > 0,
            "kernels": [{"symbol": k["symbol"], "library": k["library"], "isa_class": k["isa_class"]}
                        for k in kernels if k["isa_class"] != "other"]}


def kernel_diff(pair: dict, experiments: dict) -> dict:
    """Kernels (by name and ISA class) only in the baseline, only in the candidate."""
    def kernels(side: str) -> set[str]:
        entry = experiments.get(pair[side]) or {}
        return {f"{k['symbol']} [{k['isa_class']}]" for k in entry.get("kernels", []) if k["symbol"] != NOT_EXPORTED}
    base, cand = kernels("baseline"), kernels("candidate")
    return {"baseline": pair["baseline"], "candidate": pair["candidate"],
            "only_in_baseline": sorted(base - cand), "only_in_candidate": sorted(cand - base)}


# --- run directory -------------------------------------------------------------------------


def run_experiments(run_dir: Path) -> tuple[list[tuple[str, Path]], list[dict]]:
    """(experiment folder name, folder) of a run, and its compare pairs, from manifest.json."""
    manifest_path = run_dir / "manifest.json"
    if not manifest_path.is_file():
        raise EvidenceError(f"{run_dir} holds no manifest.json; point --run-dir at a pipeline run directory "
                            "(or use --experiment-dir for one folder)")
    try:
        manifest = json.loads(manifest_path.read_text())
        entries = [(str(e["dir"]), run_dir / str(e["dir"])) for e in manifest.get("experiments", [])
                   if isinstance(e, dict) and e.get("dir")]
        pairs = [p for p in manifest.get("compare", []) if isinstance(p, dict) and "baseline" in p and "candidate" in p]
    except (json.JSONDecodeError, TypeError, AttributeError) as error:
        raise EvidenceError(f"{manifest_path} is not a pipeline manifest ({error}); rerun the pipeline") from None
    if any(Path(name).name != name for name, _ in entries):
        raise EvidenceError(f"{manifest_path} names an experiment folder outside the run; rerun the pipeline")
    return entries, pairs


def analyse(folders: list[tuple[str, Path]], pairs: list[dict], reached: bool) -> dict:
    classifier = Classifier()
    experiments = {}
    for name, folder in folders:
        if not (folder / LOG_NAME).is_file():
            continue  # not an emulated trace run: nothing to prove here
        try:
            experiments[name] = analyse_experiment(folder, name, classifier, reached)
        except EvidenceError as error:
            experiments[name] = {"status": f"failed: {error}"}
    diffs = [kernel_diff(pair, experiments) for pair in pairs
             if experiments.get(pair["baseline"], {}).get("status") == "ok"
             and experiments.get(pair["candidate"], {}).get("status") == "ok"]
    return {"schema_version": SCHEMA_VERSION, "note": EMULATED_NOTE, "classes": list(CLASSES),
            "experiments": experiments, "compare": diffs}


def show(summary: dict, console: Console) -> None:
    table = Table(title=f"Instructions reached per ISA class ({summary['note']})")
    for column in ("experiment", *CLASSES, "SME2 reached", "kernels"):
        table.add_column(column)
    for name, entry in summary["experiments"].items():
        if entry["status"] != "ok":
            table.add_row(name, *[""] * len(CLASSES), "[red]" + entry["status"], "")
            continue
        named = Counter(k["isa_class"] for k in entry["kernels"] if k["symbol"] != NOT_EXPORTED)
        kernels = ", ".join(f"{named[isa]} {isa}" for isa in CLASSES if named[isa]) or "none named"
        table.add_row(name, *[str(entry["instructions"][isa]) for isa in CLASSES],
                      "yes" if entry["sme2_reached"] else "no", kernels)
    console.print(table)


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--run-dir", type=Path, help="a pipeline run directory (reads manifest.json)")
    where.add_argument("--experiment-dir", type=Path, help=f"one experiment folder holding {LOG_NAME} and {MAPS_NAME}")
    parser.add_argument("--reached", action="store_true",
                        help=f"also write {REACHED_CSV}: every instruction reached, its library address and class")
    parser.add_argument("--quiet", action="store_true", help="no table, only errors")
    return parser.parse_args(argv)


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    console = Console()
    try:
        if args.run_dir:
            folders, pairs = run_experiments(args.run_dir)
            out = args.run_dir
        else:
            folder = args.experiment_dir
            if not (folder / LOG_NAME).is_file():
                raise EvidenceError(f"no {LOG_NAME} in {folder}; run the experiment on the emulated platform "
                                    "(generate_config.py --platform emulated)")
            folders, pairs, out = [(folder.name, folder)], [], folder
        summary = analyse(folders, pairs, args.reached)
        partial = out / f".{SUMMARY_JSON}.partial"
        partial.write_text(json.dumps(summary, indent=2) + "\n")
        partial.replace(out / SUMMARY_JSON)
    except EvidenceError as error:
        console.print(f"[bold red]error:[/bold red] {error}", soft_wrap=True)
        return 2
    except OSError as error:  # a full disk or a read-only run directory
        console.print(f"[bold red]error:[/bold red] cannot read or write {error.filename or 'a file'}: "
                      f"{error.strerror or error}; free space or fix the permissions, then rerun", soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        console.print("[yellow]interrupted;[/yellow] rerun the same command (earlier files are kept)")
        return 130
    if not args.quiet:
        show(summary, console)
    failed = [name for name, entry in summary["experiments"].items() if entry["status"] != "ok"]
    for name in failed:
        console.print(f"[red]{name}:[/red] {summary['experiments'][name]['status']}", soft_wrap=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
