#!/usr/bin/env python3
"""Check a pipeline config and print the plan of its runs: experiments, compare pairs and run order.

The planning stage of scripts/mac_pipeline.py (which runs it as a subprocess and reads its JSON).
It reads the config, checks it against configs/config.schema.json, resolves every path (models,
runners, the qemu-aarch64 of platform emulated) to an absolute one, reads each runner's runner.json,
expands each experiment into one folder per thread count (<name>_t<threads>), matches the compare
pairs (refusing a pair of two different networks), applies --only and orders the runner
invocations: the timing rounds of a compare pair alternate (A B A B ...), then one trace and one
kernels run each. It runs nothing and writes nothing; a bad config ends it with one line naming the
problem and the fix (exit 2).

Example:
    python scripts/plan_runs.py --config configs/linux_template.json --json

Output: a table of the run order; --json: the plan (what `mac_pipeline.py --dry-run --json` prints);
--full-json: the plan plus what mac_pipeline.py needs to run it. Both formats: scripts/README.md.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Optional

import jsonschema
from rich.console import Console
from rich.markup import escape
from rich.table import Table

SCHEMA_VERSION = 1
RUNNER_BINARY = "profiling_runner"
MODES = ("timing", "trace", "kernels")
DEFAULTS = {"mode": ["timing", "trace"], "runs": 5, "warmup": 2, "rounds": 10, "threads": [1], "timeout_s": 600.0}
# Platform "emulated": the arm64 runner under qemu-aarch64 (scripts/setup_emulator.sh puts it here).
DEFAULT_QEMU = Path(__file__).resolve().parent.parent / "build/emulator/bin/qemu-aarch64"
DEFAULT_SYSROOT = "/usr/aarch64-linux-gnu"
EXIT_OK, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 2, 130


class ConfigError(Exception):
    """Bad input: the message names the problem and the fix in one line."""


@dataclass
class Cell:
    """One experiment at one thread count: one folder of the run directory."""

    name: str
    threads: int
    dir: str
    runner_ref: str
    runner_dir: Path
    runner_binary: Path
    model: Path
    modes: list[str]
    runs: int
    warmup: int
    rounds: int
    timeout_s: float
    env: dict[str, str]
    extra_args: list[str]
    cpu_affinity: list[int]
    emulator: list[str]
    hide_cpu_features: list[str]
    selected: bool = True
    runner_json: Optional[dict] = None
    warnings: list[str] = field(default_factory=list)


# --- config ------------------------------------------------------------------------------


def find_schema(explicit: Optional[Path]) -> Path:
    schema = explicit or Path(__file__).resolve().parent.parent / "configs" / "config.schema.json"
    if not schema.is_file():
        raise ConfigError(f"config schema not found at {schema}; put configs/config.schema.json beside scripts/ "
                          "or pass --schema")
    return schema


def finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is too large for a number")
    return value


def no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number JSON allows")


def read_json(path: Path, what: str, fix: str) -> Any:
    """A JSON file as Python data, or ConfigError naming the problem and `fix` in one line."""
    try:
        return json.loads(path.read_text(encoding="utf-8"), parse_float=finite_float, parse_constant=no_constant)
    except UnicodeDecodeError:
        raise ConfigError(f"{what} {path} is not UTF-8 text; {fix}") from None
    except json.JSONDecodeError as error:
        raise ConfigError(f"{what} {path} is not valid JSON (line {error.lineno}, column {error.colno}: "
                          f"{error.msg}); {fix}") from None
    except ValueError as error:
        raise ConfigError(f"{what} {path}: {error}; {fix}") from None
    except OSError as error:
        raise ConfigError(f"cannot read {what} {path}: {error.strerror}; {fix}") from None


def strict_validator(schema: dict) -> jsonschema.protocols.Validator:
    """JSON Schema validation where an integer is written as one: 1e1 or 10.0 is not a run count."""
    checker = jsonschema.Draft202012Validator.TYPE_CHECKER.redefine(
        "integer", lambda _checker, value: isinstance(value, int) and not isinstance(value, bool))
    return jsonschema.validators.extend(jsonschema.Draft202012Validator, type_checker=checker)(schema)


def load_config(path: Path, schema_path: Path) -> dict:
    """The config as given, checked against the JSON Schema (first problem only, in one line)."""
    if not path.is_file():
        raise ConfigError(f"config not found: {path}; write one with scripts/generate_config.py")
    fix = "fix the file or regenerate it with scripts/generate_config.py"
    config = read_json(path, "config", fix)
    validator = strict_validator(read_json(schema_path, "schema", "get configs/config.schema.json again"))
    problem = jsonschema.exceptions.best_match(validator.iter_errors(config))
    if problem is not None:
        where = "/".join(str(part) for part in problem.absolute_path) or "(top level)"
        hint = " (write whole numbers without a point or exponent)" if "'integer'" in problem.message else ""
        raise ConfigError(f"{path}: invalid config at {where}: {problem.message}{hint}; "
                          "see configs/config.schema.json")
    return config


# --- experiments -------------------------------------------------------------------------


def resolve_runner(reference: str, config_dir: Path, runners_dir: Path) -> tuple[Path, Path]:
    """(runner folder, binary) for a bare runners/<name>, a folder path or a binary path."""
    is_path = "/" in reference or reference.startswith(".")
    candidate = (config_dir / reference).resolve() if is_path else (runners_dir / reference).resolve()
    if candidate.is_file():
        return candidate.parent, candidate
    return candidate, candidate / RUNNER_BINARY


def emulator_command(config: dict, config_dir: Path) -> list[str]:
    """The qemu-aarch64 prefix that runs the arm64 runner on platform emulated, else []. One emulated
    CPU per run: the device facts, and so the SME2 labels, are the run's."""
    if config.get("platform") != "emulated":
        return []
    emulator = config.get("emulator", {})
    qemu = emulator.get("qemu", str(DEFAULT_QEMU))
    qemu = str((config_dir / qemu).resolve()) if "/" in qemu else qemu
    return [qemu, "-L", emulator.get("sysroot", DEFAULT_SYSROOT), "-cpu", emulator.get("cpu", "max")]


def read_runner_json(cell: Cell) -> Optional[dict]:
    """The runner's runner.json, or None when it has none; a damaged one is a warning of the cell."""
    path = cell.runner_dir / "runner.json"
    if not path.is_file():
        return None
    try:
        runner_json = json.loads(path.read_text())
    except (OSError, ValueError):
        runner_json = None
    if not isinstance(runner_json, dict):
        cell.warnings.append(f"{path} is not a runner.json object (damaged?): ignored; rebuild the runner with "
                             "scripts/build_runners.py")
        return None
    return runner_json


def plan_cells(config: dict, config_dir: Path, runners_dir: Path) -> list[Cell]:
    cells = []
    seen = set()
    for experiment in config["experiments"]:
        name = experiment["name"]
        if name in seen:
            raise ConfigError(f"experiment name '{name}' is used twice; give every experiment its own name")
        seen.add(name)
        runner_dir, binary = resolve_runner(experiment["runner"], config_dir, runners_dir)
        modes = experiment.get("mode", DEFAULTS["mode"])
        modes = [modes] if isinstance(modes, str) else list(modes)
        for threads in experiment.get("threads", DEFAULTS["threads"]):
            cells.append(Cell(
                name=name, threads=threads, dir=f"{name}_t{threads}", runner_ref=experiment["runner"],
                runner_dir=runner_dir, runner_binary=binary,
                model=(config_dir / experiment.get("model", config.get("model", ""))).resolve(),
                modes=[m for m in MODES if m in modes],
                runs=experiment.get("runs", DEFAULTS["runs"]), warmup=experiment.get("warmup", DEFAULTS["warmup"]),
                rounds=experiment.get("rounds", DEFAULTS["rounds"]),
                timeout_s=float(experiment.get("timeout_s", DEFAULTS["timeout_s"])),
                env=dict(experiment.get("env", {})), extra_args=list(experiment.get("extra_args", [])),
                cpu_affinity=list(experiment.get("cpu_affinity", [])),
                emulator=emulator_command(config, config_dir),
                hide_cpu_features=sorted(experiment.get("hide_cpu_features", []))))
    dirs = [cell.dir for cell in cells]
    clash = next((d for d in dirs if dirs.count(d) > 1), None)
    if clash:
        raise ConfigError(f"two experiments would both write {clash}/; rename one of them")
    return cells


def cells_named(name: str, cells: list[Cell]) -> list[Cell]:
    """Cells an experiment name (all its thread counts) or a folder name (<name>_t<threads>) refers to."""
    return [c for c in cells if c.name == name] or [c for c in cells if c.dir == name]


def resolve_compare(config: dict, cells: list[Cell]) -> list[dict]:
    """Folder-level pairs: matching thread counts, or the single count of each side."""
    pairs = []
    for entry in config.get("compare", []):
        sides = {}
        for role in ("baseline", "candidate"):
            sides[role] = cells_named(entry[role], cells)
            if not sides[role]:
                names = ", ".join(sorted({c.name for c in cells}))
                raise ConfigError(f"compare {role} '{entry[role]}' names no experiment (experiments: {names}); "
                                  "fix the compare list")
        base, cand = sides["baseline"], sides["candidate"]
        if len(base) == 1 and len(cand) == 1:
            matched = [(base[0], cand[0])]
        else:
            by_threads = {c.threads: c for c in cand}
            matched = [(b, by_threads[b.threads]) for b in base if b.threads in by_threads]
        if not matched:
            raise ConfigError(f"compare {entry['baseline']} -> {entry['candidate']}: no thread count in common; "
                              "give both experiments the same threads or name folders (<name>_t<threads>)")
        for b, c in matched:
            if b.dir == c.dir:
                raise ConfigError(f"compare pair {b.dir} -> {c.dir} compares an experiment with itself")
            pairs.append({"baseline": b.dir, "candidate": c.dir, **({"comment": entry["comment"]}
                                                                      if "comment" in entry else {})})
    return pairs


def model_identity(model: Path) -> Optional[str]:
    """The network a .pte was exported from, from export_model.py's JSON beside it (None if unknown)."""
    try:
        metadata = json.loads(model.with_suffix(".json").read_text())
    except (OSError, ValueError):
        return None
    name = metadata.get("model") if isinstance(metadata, dict) else None
    return name if isinstance(name, str) and name else None


def check_pair_models(pairs: list[dict], cells: list[Cell]) -> None:
    """A compare pair measures one network two ways (runner, backend, dtype, mask); two networks make a
    'speedup' that means nothing. Unknown identity (no export JSON) is recorded, not refused."""
    by_dir = {c.dir: c for c in cells}
    for pair in pairs:
        base, cand = by_dir[pair["baseline"]], by_dir[pair["candidate"]]
        names = (model_identity(base.model), model_identity(cand.model))
        if None not in names and names[0] != names[1]:
            raise ConfigError(f"compare {base.name} -> {cand.name} runs two different models ({names[0]} vs "
                              f"{names[1]}): a speedup between them means nothing; compare two exports of one "
                              "model, or drop the compare entry")
        pair["model"] = names[0] if names[0] == names[1] else None


def select_cells(cells: list[Cell], only: Optional[list[str]]) -> None:
    if not only:
        return
    chosen = set()
    for name in only:
        found = cells_named(name, cells)
        if not found:
            names = ", ".join(sorted({c.name for c in cells}))
            raise ConfigError(f"--only {name}: no such experiment (experiments: {names})")
        chosen.update(c.dir for c in found)
    for cell in cells:
        cell.selected = cell.dir in chosen


# --- schedule ----------------------------------------------------------------------------


def compare_groups(cells: list[Cell], pairs: list[dict]) -> list[list[Cell]]:
    """Cells linked by compare pairs form one group, ordered baseline first; others stand alone."""
    by_dir = {c.dir: c for c in cells}
    group_of: dict[str, list[str]] = {c.dir: [c.dir] for c in cells}
    for pair in pairs:
        first, second = group_of[pair["baseline"]], group_of[pair["candidate"]]
        if first is not second:
            first.extend(d for d in second if d not in first)
            for member in first:
                group_of[member] = first
    groups, seen = [], set()
    for pair in pairs:
        group = group_of[pair["baseline"]]
        if id(group) not in seen:
            seen.add(id(group))
            groups.append([by_dir[d] for d in group])
    for cell in cells:
        if len(group_of[cell.dir]) == 1:
            groups.append([cell])
    return groups


def build_schedule(cells: list[Cell], pairs: list[dict], everything: bool = False) -> list[dict]:
    """Timing rounds alternate within each group (A B A B ...), then one trace and one kernels run each.
    Only selected cells, unless `everything`: any subset of that order is the order of the subset."""
    steps = []
    for group in compare_groups(cells, pairs):
        todo = [c for c in group if c.selected or everything]
        rounds = max([c.rounds for c in todo if "timing" in c.modes], default=0)
        for round_index in range(rounds):
            steps += [{"round": round_index, "experiment": c.dir, "mode": "timing"} for c in todo
                      if "timing" in c.modes and round_index < c.rounds]
        for mode in ("trace", "kernels"):
            steps += [{"round": None, "experiment": c.dir, "mode": mode} for c in todo if mode in c.modes]
    return steps


# --- plan --------------------------------------------------------------------------------


def fresh_run_dir(output_root: Path) -> Path:
    """output_root if unused, else a new timestamped sibling: an earlier run is never written into."""
    if not output_root.exists() or (output_root.is_dir() and not any(output_root.iterdir())):
        return output_root
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    candidate = output_root.with_name(f"{output_root.name}-{stamp}")
    suffix = 2
    while candidate.exists():
        candidate = output_root.with_name(f"{output_root.name}-{stamp}-{suffix}")
        suffix += 1
    return candidate


def experiment_of(cell: Cell) -> dict:
    return {"runner_path": str(cell.runner_binary), "model": str(cell.model), "modes": cell.modes,
            "runs": cell.runs, "warmup": cell.warmup, "rounds": cell.rounds, "env": cell.env,
            "extra_args": cell.extra_args, "cpu_affinity": cell.cpu_affinity,
            "hide_cpu_features": cell.hide_cpu_features, "name": cell.name, "threads": cell.threads, "dir": cell.dir,
            "runner_dir": str(cell.runner_dir), "runner_json": cell.runner_json, "timeout_s": cell.timeout_s,
            "selected": cell.selected, "emulator": cell.emulator}


def plan_of(config_path: Path, cells: list[Cell], pairs: list[dict], output_root: Path) -> dict:
    return {"config_path": str(config_path), "output_root": str(output_root),
            "run_dir": str(fresh_run_dir(output_root)),
            "experiments": [experiment_of(c) for c in cells],
            "compare": pairs,
            "schedule": build_schedule(cells, pairs)}


def full_document(plan: dict, config: dict, cells: list[Cell], pairs: list[dict]) -> dict:
    """The plan plus what a pipeline needs to run it (format: scripts/README.md)."""
    return {"schema_version": SCHEMA_VERSION, "plan": plan, "config": config,
            "runner_refs": {c.dir: c.runner_ref for c in cells}, "warnings": {c.dir: c.warnings for c in cells},
            "full_schedule": build_schedule(cells, pairs, everything=True)}


def show_plan(plan: dict, console: Console) -> None:
    table = Table(title=f"Plan for {plan['config_path']}")
    for column in ("#", "experiment", "mode", "round"):
        table.add_column(column)
    for index, step in enumerate(plan["schedule"], 1):
        table.add_row(str(index), step["experiment"], step["mode"], "" if step["round"] is None else str(step["round"]))
    console.print(table)
    console.print(f"would write to {plan['run_dir']}")


# --- main --------------------------------------------------------------------------------


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, required=True, help="pipeline config (configs/config.schema.json)")
    parser.add_argument("--only", nargs="+", metavar="EXP",
                        help="select only these experiments (names, or <name>_t<threads> folders)")
    parser.add_argument("--output-root", type=Path, help="override the config's output_root")
    parser.add_argument("--runners-dir", type=Path, default=Path(__file__).resolve().parent.parent / "runners",
                        help="where bare runner names are looked up (default: runners/ of this repository)")
    parser.add_argument("--schema", type=Path, help="config schema (default: configs/config.schema.json)")
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print the plan as JSON instead of a table")
    output.add_argument("--full-json", action="store_true",
                        help="print the plan with the config, runner names, warnings and the schedule of every "
                             "experiment (what mac_pipeline.py reads)")
    return parser.parse_args(argv)


def make_plan(args: argparse.Namespace) -> tuple[dict, dict, list[Cell], list[dict]]:
    """Load and check the config, then plan it: (plan, config, cells, compare pairs)."""
    config_path = args.config.resolve()
    config = load_config(config_path, find_schema(args.schema))
    cells = plan_cells(config, config_path.parent, args.runners_dir.resolve())
    pairs = resolve_compare(config, cells)
    check_pair_models(pairs, cells)
    select_cells(cells, args.only)
    for cell in cells:
        cell.runner_json = read_runner_json(cell)
    output_root = (args.output_root.resolve() if args.output_root
                   else (config_path.parent / config["output_root"]).resolve())
    return plan_of(config_path, cells, pairs, output_root), config, cells, pairs


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    try:
        plan, config, cells, pairs = make_plan(args)
    except ConfigError as error:
        Console(stderr=True).print(f"[bold red]error:[/bold red] {escape(str(error))}", soft_wrap=True)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        Console(stderr=True).print("interrupted: nothing was planned or written; run the same command again")
        return EXIT_INTERRUPTED
    if args.full_json:
        print(json.dumps(full_document(plan, config, cells, pairs), indent=2))
    elif args.json:
        print(json.dumps(plan, indent=2))
    else:
        show_plan(plan, Console())
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
