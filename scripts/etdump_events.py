#!/usr/bin/env python3
"""The events of an ETDump, one row per event per traced run, read straight from its FlatBuffer.

The first stage of the operator breakdown: trace_breakdown.py runs it for every trace and reads the
CSV it writes. It reads the profile events of the ETDump (schema `etdump_schema_flatcc.fbs` in
ExecuTorch's devtools/etdump) and, when given, the ETRecord's maps (debug handles, delegate
backends, graph node names, JSON entries of its zip) without importing torch: ExecuTorch's
Inspector would import torch and round-trip the file through flatc and JSON, most of the 10 s a
200-run trace may take. The test suite checks its durations and node names against the Inspector's.

Example:
    python scripts/etdump_events.py --etdump out/run/xnnpack_t1/trace.etdump \\
        --etrecord models/toy_cnn_xnnpack_fp32.etrecord --out /tmp/events.csv

events.csv: one row per event of every traced run (a run-data block holding Method::execute),
runs ordered by their start:
    run, name, kind, start_us, dur_us, instruction_id, backend, node, position, delegate_call
  run            traced run, from 0
  name           XNNPACK's operator name with its number (`Convolution (NHWC, F32) IGEMM #2`),
                 a portable kernel (`native_call_convolution.out`) or a runtime event
  kind           execute, delegate_call, operator_call or op (an operator: XNNPACK or portable)
  start_us       start, microseconds from the run's Method::execute start
  dur_us         duration in microseconds
  instruction_id the ExecuTorch instruction that ran it (a delegated operator: its delegate call's)
  backend        XNNPACK (or the ETRecord's backend name) for delegated events, portable for
                 portable kernels, empty for runtime events
  node           ETRecord graph nodes behind an operator (an XNNPACK operator gets the nodes its
                 delegate call lowered); empty without --etrecord
  position       the operator's place in its run, from 1 (0 for other kinds); stable across runs
  delegate_call  which DELEGATE_CALL of the run holds it (or is it), from 1; 0 for the others
Exit status: 0; 1 with one `error:` line when a file is missing, truncated, corrupt or not what it
claims to be; 130 on Ctrl-C (nothing half-written is left).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import os
import struct
import sys
import zipfile
from dataclasses import astuple, dataclass, fields
from pathlib import Path
from typing import Any, Optional

from rich.console import Console
from rich.markup import escape

FRAMEWORK_EVENTS = {"Method::execute", "Method::init", "Program::load_method", "DELEGATE_CALL", "OPERATOR_CALL"}


class EventsError(Exception):
    """Bad input: the message is one line naming the problem and the fix."""


@dataclass
class TraceEvent:
    """One event of one traced run; times in microseconds from the run's Method::execute start."""
    name: str
    kind: str  # execute, delegate_call, operator_call, op
    start_us: float
    dur_us: float
    instruction_id: Optional[int]
    backend: str = ""
    node: str = ""
    position: int = 0
    delegate_call: int = 0


def check_etdump_file(path: Path, data: bytes) -> None:
    """Reject an empty, truncated or foreign file (its bytes: `data`) before it is parsed."""
    if len(data) == 0:
        raise EventsError(f"{path}: the ETDump is empty (the traced run probably crashed); re-run the trace")
    if len(data) < 12 or data[8:12] != b"ED00":
        raise EventsError(f"{path}: not an ETDump (no ED00 identifier); pass the file written by --etdump_path")
    declared = struct.unpack("<I", data[:4])[0]
    if declared + 4 > len(data):
        raise EventsError(f"{path}: the ETDump is truncated ({len(data)} of {declared + 4} bytes); "
                          "re-run the trace and let the runner finish")


# The ETDump is a size-prefixed FlatBuffer (identifier ED00; schema: etdump_schema_flatcc.fbs in
# ExecuTorch's devtools/etdump). This stage needs only its profile events, so it reads them
# directly: ExecuTorch's Inspector would first import torch and round-trip the file through flatc
# and JSON, about 8 of the 10 seconds a 200-run trace may take. test_results_validation.py checks
# every duration read here against the Inspector's. Field numbers follow the schema's field order.
RUN_DATA_FIELD, EVENTS_FIELD, PROFILE_EVENT_FIELD = 1, 3, 0
PROFILE_FIELDS = {"name": 0, "instruction_id": 2, "delegate_debug_id_int": 3, "delegate_debug_id_str": 4,
                  "start_time": 6, "end_time": 7}
# Events of the runtime itself; the ETRecord maps none of them to graph nodes.
RESERVED_EVENTS = {"Method::init", "Program::load_method", "Method::execute"}
MAX_UINT32 = 2**32 - 1
UOFFSET, SOFFSET, VOFFSET = struct.Struct("<I"), struct.Struct("<i"), struct.Struct("<H")
INT32, UINT64 = struct.Struct("<i"), struct.Struct("<Q")


class FlatBuffer:
    """Bounds-checked reads of FlatBuffer tables; a bad offset raises ValueError, never reads elsewhere."""

    def __init__(self, data: bytes):
        self.data = data
        self.vtables: dict[int, tuple[int, ...]] = {}  # the writer shares one vtable between like tables

    def read(self, layout: struct.Struct, pos: int) -> Any:
        if pos < 0 or pos + layout.size > len(self.data):
            raise ValueError(f"offset {pos} lies outside the {len(self.data)}-byte buffer")
        return layout.unpack_from(self.data, pos)[0]

    def fields(self, table: int) -> tuple[int, ...]:
        """Each field's offset inside the table (0: absent, so the schema default applies)."""
        vtable = table - self.read(SOFFSET, table)
        if vtable not in self.vtables:
            size = self.read(VOFFSET, vtable)
            if size < 4 or size % 2:
                raise ValueError(f"vtable at {vtable} has an impossible size {size}")
            self.vtables[vtable] = tuple(self.read(VOFFSET, vtable + slot) for slot in range(4, size, 2))
        return self.vtables[vtable]

    def field(self, table: int, index: int) -> int:
        offsets = self.fields(table)
        return table + offsets[index] if index < len(offsets) and offsets[index] else 0

    def scalar(self, table: int, index: int, layout: struct.Struct, default: int) -> int:
        pos = self.field(table, index)
        return self.read(layout, pos) if pos else default

    def string(self, table: int, index: int) -> Optional[str]:
        pos = self.field(table, index)
        if not pos:
            return None
        start = pos + self.read(UOFFSET, pos)
        length = self.read(UOFFSET, start)
        if start + 4 + length > len(self.data):
            raise ValueError(f"string at {start} runs past the end of the buffer")
        return self.data[start + 4:start + 4 + length].decode("utf-8")

    def tables(self, table: int, index: int) -> list[int]:
        """The tables of a vector field (each element is an offset relative to itself)."""
        pos = self.field(table, index)
        if not pos:
            return []
        start = pos + self.read(UOFFSET, pos)
        count = self.read(UOFFSET, start)
        if start + 4 + 4 * count > len(self.data):
            raise ValueError(f"vector at {start} claims {count} elements, more than the buffer holds")
        return [start + 4 + 4 * i + self.read(UOFFSET, start + 4 + 4 * i) for i in range(count)]


@dataclass
class RecordedEvent:
    """One profile event as the runtime wrote it; start and duration in the runtime's ticks (nanoseconds)."""
    name: str
    instruction_id: int
    delegate_id: Optional[Any]  # XNNPACK's operator name (str) or a backend's int id; None: not delegated
    start: int
    duration: int

    @property
    def signature(self) -> tuple[str, int, Any]:
        return self.name, self.instruction_id, self.delegate_id



def elapsed_ticks(name: str, start: int, end: int) -> int:
    if start <= end:
        return end - start
    if max(start, end) > MAX_UINT32:
        raise ValueError(f"event {name!r} ends before it starts")
    return MAX_UINT32 - start + end  # a 32-bit clock wrapped around


def recorded_event(buffer: FlatBuffer, event: int) -> Optional[RecordedEvent]:
    profile = buffer.field(event, PROFILE_EVENT_FIELD)
    if not profile:
        return None  # an allocation or debug event
    profile += buffer.read(UOFFSET, profile)
    delegate_int = buffer.scalar(profile, PROFILE_FIELDS["delegate_debug_id_int"], INT32, -1)
    delegate_str = buffer.string(profile, PROFILE_FIELDS["delegate_debug_id_str"]) or None
    delegate_id = delegate_int if delegate_int != -1 else delegate_str
    name = str(delegate_id) if delegate_id is not None else buffer.string(profile, PROFILE_FIELDS["name"])
    if not name:
        return None  # neither a name nor a delegate id: nothing to attribute it to
    start = buffer.scalar(profile, PROFILE_FIELDS["start_time"], UINT64, 0)
    end = buffer.scalar(profile, PROFILE_FIELDS["end_time"], UINT64, 0)
    return RecordedEvent(name, buffer.scalar(profile, PROFILE_FIELDS["instruction_id"], INT32, -1), delegate_id,
                         start, elapsed_ticks(name, start, end))


def read_etdump(path: Path) -> list[list[RecordedEvent]]:
    """The profile events of every run-data block, in recorded order."""
    if not path.is_file():
        raise EventsError(f"{path}: no such ETDump file; pass the trace.etdump the runner wrote with --etdump_path")
    data = path.read_bytes()
    check_etdump_file(path, data)
    buffer = FlatBuffer(data[4:4 + struct.unpack("<I", data[:4])[0]])
    try:
        root = buffer.read(UOFFSET, 0)
        blocks = [[e for e in (recorded_event(buffer, event) for event in buffer.tables(run_data, EVENTS_FIELD))
                   if e is not None]
                  for run_data in buffer.tables(root, RUN_DATA_FIELD)]
    except (ValueError, UnicodeDecodeError) as error:
        raise EventsError(f"{path}: the ETDump is corrupt ({error}); re-run the trace with this kit's "
                          "runner") from None
    return blocks


@dataclass
class RecordMaps:
    """What an ETRecord says about instructions: debug handles, delegate backends, graph nodes."""
    handles: dict[str, Any]            # instruction id -> debug handle(s)
    delegates: dict[str, dict]         # instruction id -> {"name": backend, "delegate_map": {...}}
    nodes: dict[int, list[str]]        # debug handle -> edge-dialect graph node names


def read_etrecord(path: Path) -> RecordMaps:
    """The ETRecord's maps, read from its zip entries (JSON) without loading the graphs into torch."""
    def method_map(archive: zipfile.ZipFile, entry: str) -> dict[str, Any]:
        maps = json.loads(archive.read(entry)) if entry in archive.namelist() else {}
        if not isinstance(maps, dict):
            raise ValueError(f"{entry} is not a JSON object")
        return maps.get("forward") or next(iter(maps.values()), {})

    try:
        with zipfile.ZipFile(path) as archive:
            handles, delegates = method_map(archive, "debug_handle_map"), method_map(archive, "delegate_map")
            names = archive.namelist()
            graph_entry = next(n for n in ("edge_dialect_exported_program/forward", "edge_dialect_exported_program")
                               if n in names)
            graph = json.loads(archive.read(graph_entry))["graph_module"]["graph"]
        check_record_shapes(handles, delegates, graph)
    except (OSError, zipfile.BadZipFile, StopIteration, KeyError, TypeError, ValueError) as error:
        raise EventsError(f"{path}: not a readable ETRecord ({type(error).__name__}); pass the .etrecord exported "
                          "with this model, or run without --etrecord") from None
    nodes: dict[int, list[str]] = {}
    for node in graph.get("nodes") or []:
        with contextlib.suppress(KeyError, TypeError, ValueError):
            if isinstance(node["name"], str):
                nodes.setdefault(int(node["metadata"]["debug_handle"]), []).append(node["name"])
    return RecordMaps(handles, delegates or {}, nodes)


def check_record_shapes(handles: Any, delegates: Any, graph: Any) -> None:
    """The maps have the shapes the ETRecord format gives them (a damaged file is refused, not half-read)."""
    def is_handles(value: Any) -> bool:
        return isinstance(value, int) or (isinstance(value, list) and all(isinstance(h, int) for h in value))

    if not isinstance(handles, dict) or not all(is_handles(v) for v in handles.values()):
        raise ValueError("debug_handle_map has the wrong shape")
    if not isinstance(delegates, dict) or not all(
            isinstance(v, dict) and isinstance(v.get("name", ""), str) and isinstance(v.get("delegate_map") or {}, dict)
            and all(is_handles(h) for h in (v.get("delegate_map") or {}).values()) for v in delegates.values()):
        raise ValueError("delegate_map has the wrong shape")
    if not isinstance(graph, dict) or not isinstance(graph.get("nodes") or [], list):
        raise ValueError("the edge program's graph has the wrong shape")


def backend_of(event: RecordedEvent, record: Optional[RecordMaps]) -> str:
    """XNNPACK for XNNPACK delegate events (all delegated events when no ETRecord names the backend)."""
    known = record is not None and str(event.instruction_id) in record.handles
    name = (record.delegates.get(str(event.instruction_id)) or {}).get("name", "") if known else ""
    if not name or "xnnpack" in name.lower():
        return "XNNPACK"
    return name.replace("Backend", "")


def nodes_of(event: RecordedEvent, record: Optional[RecordMaps]) -> str:
    """The ETRecord graph node(s) behind an event (empty without an ETRecord), the way the Inspector maps them."""
    instruction = str(event.instruction_id)
    if record is None or event.name in RESERVED_EVENTS or instruction not in record.handles:
        return ""
    handles = record.handles[instruction]
    delegate = record.delegates.get(instruction)
    if event.delegate_id is not None and delegate is not None:
        lowered = delegate.get("delegate_map") or {}
        handles = lowered.get(str(event.delegate_id))
        for key, value in lowered.items():
            if key in str(event.delegate_id):
                handles = value
    names: list[str] = []
    for handle in [handles] if isinstance(handles, int) else handles or []:
        names += [name for name in record.nodes.get(handle, []) if name not in names]
    return ";".join(names)


def event_kind(event: RecordedEvent, record: Optional[RecordMaps]) -> Optional[tuple[str, str]]:
    if event.delegate_id is not None:
        return "op", backend_of(event, record)
    if event.name == "Method::execute":
        return "execute", ""
    if event.name == "DELEGATE_CALL":
        return "delegate_call", backend_of(event, record)
    if event.name == "OPERATOR_CALL":
        return "operator_call", ""
    if event.name in FRAMEWORK_EVENTS:
        return None
    return "op", "portable"


def traced_runs(blocks: list[list[RecordedEvent]], record: Optional[RecordMaps]) -> list[tuple[int, list[TraceEvent]]]:
    """Per traced run: (start tick, events), from every block that holds Method::execute.

    Runs that recorded the same events form a group; an event's place in its group's first run,
    ordered by start time, is its stable identity across runs.
    """
    groups: dict[tuple, list[list[RecordedEvent]]] = {}
    for block in blocks:
        if any(e.name == "Method::execute" for e in block):  # not the load/init block
            groups.setdefault(tuple(e.signature for e in block), []).append(block)
    runs: list[tuple[int, list[TraceEvent]]] = []
    for group in groups.values():
        first = group[0]
        kinds = [event_kind(e, record) for e in first]
        order = sorted((i for i, kind in enumerate(kinds) if kind is not None), key=lambda i: (first[i].start, i))
        call_starts: dict[int, int] = {}
        for i in order:
            if kinds[i][0] == "delegate_call":
                call_starts.setdefault(first[i].instruction_id, first[i].start)
        call_index = {iid: n for n, iid in enumerate(sorted(call_starts, key=call_starts.get), start=1)}
        # The ETRecord maps a delegate call, not XNNPACK's own operators, to graph nodes: an XNNPACK
        # operator gets the nodes its delegate call lowered.
        call_nodes = {first[i].instruction_id: nodes_of(first[i], record) for i in order
                      if kinds[i][0] == "delegate_call"}
        nodes = [nodes_of(e, record) if kind and kind[0] == "op" else "" for e, kind in zip(first, kinds)]
        execute = next(i for i, e in enumerate(first) if e.name == "Method::execute")
        for block in group:
            origin = block[execute].start
            events, position = [], 0
            for i in order:
                event, (kind, backend) = block[i], kinds[i]
                if kind == "op":
                    position += 1
                # Ticks are nanoseconds (ExecuTorch's default PAL clock).
                events.append(TraceEvent(event.name, kind, (event.start - origin) / 1000.0, event.duration / 1000.0,
                                         event.instruction_id, backend,
                                         (nodes[i] or call_nodes.get(event.instruction_id, "")) if kind == "op" else "",
                                         position if kind == "op" else 0,
                                         call_index.get(event.instruction_id, 0)
                                         if kind in ("op", "delegate_call") and backend != "portable" else 0))
            runs.append((origin, events))
    runs.sort(key=lambda item: item[0])
    return runs


def write_events(runs: list[tuple[int, list[TraceEvent]]], path: Path) -> None:
    """events.csv through a temporary file + rename: an interrupted write never leaves a half file."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["run", *(f.name for f in fields(TraceEvent))])
    for run, (_, events) in enumerate(runs):
        writer.writerows([run, *astuple(event)] for event in events)
    temporary = path.with_name(f".{path.name}.partial-{os.getpid()}")
    try:
        temporary.write_text(buffer.getvalue())
        temporary.replace(path)
    finally:
        if temporary.exists():
            temporary.unlink()


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="The events of an ETDump (and the ETRecord's graph nodes), one CSV row per event per traced run.",
        epilog=(__doc__ or "")[(__doc__ or "").index("events.csv:"):], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--etdump", type=Path, required=True, help="the trace.etdump the runner wrote with --etdump_path")
    parser.add_argument("--etrecord", type=Path, help="the model's .etrecord from export_model.py (adds backend and node names)")
    parser.add_argument("--out", type=Path, required=True, help="events.csv to write")
    return parser.parse_args(argv)


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    console = Console(stderr=True)
    try:
        blocks = read_etdump(args.etdump)
        record = read_etrecord(args.etrecord) if args.etrecord else None
        runs = traced_runs(blocks, record)
        if not runs:
            raise EventsError(f"{args.etdump}: the ETDump holds no Method::execute event (no inference was traced); "
                              "run the runner with --num_executions >= 1 and --etdump_path")
        write_events(runs, args.out)
    except EventsError as error:
        console.print(f"[bold red]error:[/bold red] {escape(str(error))}", soft_wrap=True, highlight=False)
        return 1
    except OSError as error:
        console.print(f"[bold red]error:[/bold red] cannot write {escape(str(args.out))} ({error.strerror or error}); free disk "
                      "space or choose a writable --out", soft_wrap=True, highlight=False)
        return 1
    except KeyboardInterrupt:
        console.print("[bold red]interrupted:[/bold red] nothing half-written is left; rerun the same command",
                      soft_wrap=True, highlight=False)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
