#!/usr/bin/env python3
"""Write a profiling pipeline config (configs/config.schema.json) from flags or prompts.

A config names the model, the run directory and the experiments to run, and which of
them to compare. These comparisons are built in, combinable:

  sme2      sme2_off (baseline) vs sme2_on (candidate) on ONE runner: sme2_off hides SME and
            SME2 from it with the feature mask built beside every runner (hide_cpu_features),
            so XNNPACK runs the kernels of a CPU without SME. --sme2-off build uses the two
            source builds of build_runners.py instead (the cross-check; kernel logs).
            Meaningful on an Apple M4 Mac or an Armv9 phone with SME2.
  isa       neon / sme / sme2 on one runner: SME and SME2 hidden, SME2 hidden (KleidiAI SME1
            kernels), nothing hidden; each of neon and sme is compared with sme2
  backends  portable vs xnnpack: the portable export vs the XNNPACK export, on one runner
            (what any host can compare, including one without SME2)
  threads   the candidate at the first vs the last --threads count
  dtypes    two exports of one model, e.g. fp32 (baseline) vs int8 (candidate): give
            --model twice; their operators are paired by operation in comparison.csv
  none      one experiment, no comparison: profile a single model

With no --compare on Linux, one --model gives a single profile unless its portable twin
(<model>_portable_<dtype>.pte beside it) exists, which makes it a backends comparison.

Paths you give are relative to where you run this; the config stores them relative to
its own folder, which is how the pipeline resolves them. Runner names without a slash
(sme2_on, prebuilt) mean runners/<name>/ of the repository. The config is validated
against the schema before it is written, and an existing file is never replaced
without --force.

Example:
    python scripts/generate_config.py --platform mac --model models/toy_cnn_xnnpack_fp32.pte \\
        --output-root out/mac_sme2 --runs 20 --out my_mac.json
    python scripts/generate_config.py --platform linux --compare backends threads --threads 1 2 --out my.json
    python scripts/generate_config.py --platform mac --compare isa --out isa.json
    python scripts/generate_config.py --platform linux --model my_model.pte --out profile.json
    python scripts/generate_config.py --platform linux --compare dtypes \
        --model models/toy_cnn_xnnpack_fp32.pte --model models/toy_cnn_xnnpack_int8.pte --out dtypes.json
    python scripts/generate_config.py --interactive
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path
from typing import Optional

import jsonschema
from rich.console import Console
from rich.prompt import Confirm, IntPrompt, Prompt
from rich.syntax import Syntax

SCHEMA_VERSION = 1
PLATFORMS = ("mac", "linux", "android", "emulated")
COMPARISONS = ("sme2", "isa", "backends", "threads", "dtypes", "none")
EXPORT_DTYPE = re.compile(r"_(?:xnnpack|portable)_(?P<dtype>[a-z0-9]+)$")
SME2_OFF_SOURCES = ("mask", "build")
# What each ISA level hides from the runner (runner.json "feature_mask"; configs/config.schema.json).
ISA_LEVELS = {"neon": ["sme", "sme2"], "sme": ["sme2"], "sme2": []}
MODES = ("timing", "trace", "kernels")
DEFAULT_MODEL = "models/toy_cnn_xnnpack_fp32.pte"
ANDROID_SUFFIX = "-android"
# Platform emulated: the cross-built arm64 runner under qemu-aarch64 >= 11 (scripts/setup_emulator.sh).
EMULATED_RUNNER = "prebuilt-linux-aarch64"
DEFAULT_QEMU = Path(__file__).resolve().parent.parent / "build/emulator/bin/qemu-aarch64"
# Emulated SME is slow (toy_cnn fp32: seconds per inference): one round of one run, after one warm-up run that
# translates the code, is enough to see the path. Elsewhere: more, shorter rounds, each a separate process, so the
# CIs can see the variation between processes.
RUN_COUNTS = {"emulated": {"runs": 1, "warmup": 1, "rounds": 1}, "other": {"runs": 5, "warmup": 2, "rounds": 10}}


class ConfigInputError(Exception):
    """A flag value that cannot make a valid config; the message names it and the fix."""


def host_platform() -> str:
    return "mac" if sys.platform == "darwin" else "linux"


def default_comparisons(platform_name: str) -> list[str]:
    if platform_name == "emulated":
        return ["isa"]
    return ["backends"] if platform_name == "linux" else ["sme2"]


def auto_comparisons(args: argparse.Namespace) -> list[str]:
    """No --compare: backends when the portable twin of the one model exists (Linux), else one profile."""
    if args.platform != "linux":
        return default_comparisons(args.platform)
    if len(args.models) > 1:
        raise ConfigInputError("two --model given: say what to compare, e.g. --compare dtypes")
    if args.portable_model or ("_xnnpack_" in Path(args.models[0]).name and Path(portable_twin(args.models[0])).is_file()):
        return ["backends"]
    return ["none"]


def dtype_name(model: str) -> str:
    """The dtype of an export: export_model.py's <stem>.json, else its file name, else the file stem."""
    sidecar = Path(model).with_suffix(".json")
    try:
        dtype = json.loads(sidecar.read_text()).get("dtype") if sidecar.is_file() else None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        dtype = None
    match = EXPORT_DTYPE.search(Path(model).stem)
    name = str(dtype or (match.group("dtype") if match else Path(model).stem))
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).lstrip("._-") or "model"


def portable_twin(model: str) -> str:
    """The portable export beside an XNNPACK one, by export_model.py's naming (<model>_<backend>_<dtype>.pte)."""
    if "_xnnpack_" not in Path(model).name:
        raise ConfigInputError(f"cannot guess the portable export of {model}; pass --portable-model")
    return str(Path(model).with_name(Path(model).name.replace("_xnnpack_", "_portable_")))


def relative_to(path: str, folder: Path) -> str:
    """A path given relative to the working directory, rewritten relative to the config's folder."""
    return os.path.relpath(Path(path).resolve(), folder.resolve())


def runner_names(args: argparse.Namespace) -> dict[str, str]:
    suffix = ANDROID_SUFFIX if args.platform == "android" else ""
    return {"on": args.runner_on or f"sme2_on{suffix}", "off": args.runner_off or f"sme2_off{suffix}",
            "single": args.runner or {"android": "sme2_on" + suffix, "emulated": EMULATED_RUNNER}.get(args.platform,
                                                                                                 "prebuilt")}


def make_comment(args: argparse.Namespace) -> str:
    parts = []
    masked = "sme2" in args.compare and args.sme2_off == "mask"
    if masked:
        parts.append("SME2 OFF (baseline) vs SME2 ON (candidate): one runner, SME and SME2 hidden from it for "
                     "sme2_off by its feature mask (hide_cpu_features), so XNNPACK runs the kernels of a CPU without "
                     "SME; meaningful on a CPU with SME2 (Apple M4, Armv9 phones with SME2)")
    if "isa" in args.compare:
        parts.append("NEON / SME / SME2 kernels from one runner: neon hides SME and SME2, sme hides SME2 (KleidiAI "
                     "SME1 kernels), sme2 hides nothing; needs a CPU with SME2 for all three levels")
    if "sme2" in args.compare and not masked:
        parts.append("SME2 OFF (baseline) vs SME2 ON (candidate): the same model on the two source builds, which "
                     "differ only in XNNPACK_ENABLE_ARM_SME2/SME; meaningful on a CPU with SME2 (Apple M4, "
                     "Armv9 phones with SME2); build both with: python scripts/build_runners.py --flavor source "
                     f"--platform {args.platform}")
    if "backends" in args.compare:
        parts.append("portable export (baseline) vs XNNPACK export (candidate) on one runner")
    if "dtypes" in args.compare:
        parts.append(f"{Path(args.models[0]).name} (baseline) vs {Path(args.models[1]).name} (candidate): two "
                     "exports of one model, operators paired by operation")
    if "none" in args.compare:
        parts.append(f"one profile of {Path(args.models[0]).name}, no comparison")
    if "threads" in args.compare:
        parts.append(f"{args.threads[0]} vs {args.threads[-1]} threads")
    if args.platform == "emulated":
        parts.append("emulated: timings not meaningful; the arm64 runner runs under qemu-aarch64 -cpu max (SME2), and "
                     "the trace run's translated-code log shows the instructions reached (scripts/isa_evidence.py)")
    if args.platform == "linux":
        parts.append("a Linux host without SME2 compares what it can; SME2 ON/OFF needs mac_template.json on an "
                     "Apple M4 Mac or android_template.json on an Armv9 phone with SME2")
    if args.platform == "android" and not args.cpu_affinity:
        parts.append("add \"cpu_affinity\": [7] (the prime core of most phones) to pin the runner with taskset")
    return "; ".join(parts) + "."


def experiment(name: str, runner: str, args: argparse.Namespace, threads: list[int],
               model: Optional[str] = None, hide: Optional[list[str]] = None) -> dict:
    entry = {"name": name, "runner": runner}
    if model:
        entry["model"] = model
    if hide is not None:
        entry["hide_cpu_features"] = hide
    entry.update(mode=list(args.modes), runs=args.runs, warmup=args.warmup, rounds=args.rounds, threads=threads)
    if args.cpu_affinity:
        entry["cpu_affinity"] = list(args.cpu_affinity)
    return entry


def build_config(args: argparse.Namespace, config_dir: Path) -> dict:
    """The config for the chosen platform and comparisons, paths relative to config_dir."""
    if not args.compare:
        raise ConfigInputError("choose at least one comparison with --compare")
    if "threads" in args.compare and len(args.threads) < 2:
        raise ConfigInputError("--compare threads needs two or more --threads counts, e.g. --threads 1 2")
    if "backends" in args.compare and ({"sme2", "isa"} & set(args.compare)):
        raise ConfigInputError("--compare backends and sme2/isa make unrelated pairs; write two configs")
    if "sme2" in args.compare and "isa" in args.compare:
        raise ConfigInputError("--compare isa already holds SME2 ON vs OFF (neon vs sme2); choose sme2 or isa")
    if "isa" in args.compare and args.sme2_off == "build":
        raise ConfigInputError("--compare isa hides features from one runner; --sme2-off build applies to "
                               "--compare sme2 only")
    if "none" in args.compare and len(args.compare) > 1:
        raise ConfigInputError("--compare none is a single profile; leave the other comparisons out")
    if "dtypes" in args.compare and (len(args.models) != 2 or set(args.compare) - {"dtypes", "threads"}):
        raise ConfigInputError("--compare dtypes needs exactly two --model (baseline first, e.g. fp32 then int8) "
                               "and combines only with threads")
    if "dtypes" not in args.compare and len(args.models) > 1:
        raise ConfigInputError("more than one --model is for --compare dtypes; pass one --model, or add "
                               "--compare dtypes to compare two exports of one model")
    runners = runner_names(args)
    model = relative_to(args.models[0], config_dir)
    experiments, compare = [], []
    if "dtypes" in args.compare:
        names = [dtype_name(m) for m in args.models]
        if names[0] == names[1]:
            names = [f"{names[0]}_a", f"{names[1]}_b"]
        for name, path in zip(names, args.models):
            experiments.append(experiment(name, runners["single"], args, args.threads,
                                          model=relative_to(path, config_dir)))
        compare.append({"baseline": names[0], "candidate": names[1]})
        candidate = names[1]
    elif "none" in args.compare:
        experiments.append(experiment("profile", runners["single"], args, args.threads))
        candidate = "profile"
    elif "isa" in args.compare:
        experiments += [experiment(level, runners["single"], args, args.threads, hide=hide)
                        for level, hide in ISA_LEVELS.items()]
        compare += [{"baseline": "neon", "candidate": "sme2"}, {"baseline": "sme", "candidate": "sme2"}]
        candidate = "sme2"
    elif "sme2" in args.compare and args.sme2_off == "mask":
        experiments += [experiment("sme2_off", runners["single"], args, args.threads, hide=ISA_LEVELS["neon"]),
                        experiment("sme2_on", runners["single"], args, args.threads, hide=[])]
        compare.append({"baseline": "sme2_off", "candidate": "sme2_on"})
        candidate = "sme2_on"
    elif "sme2" in args.compare:
        experiments += [experiment("sme2_off", runners["off"], args, args.threads),
                        experiment("sme2_on", runners["on"], args, args.threads)]
        compare.append({"baseline": "sme2_off", "candidate": "sme2_on"})
        candidate = "sme2_on"
    else:
        portable = relative_to(args.portable_model or portable_twin(args.models[0]), config_dir)
        if "backends" in args.compare:
            experiments.append(experiment("portable", runners["single"], args, args.threads[:1], model=portable))
            compare.append({"baseline": "portable", "candidate": "xnnpack"})
        experiments.append(experiment("xnnpack", runners["single"], args, args.threads))
        candidate = "xnnpack"
    if "threads" in args.compare:
        if "dtypes" in args.compare:  # the dtype pair compares at the first thread count
            compare[0] = {"baseline": f"{compare[0]['baseline']}_t{args.threads[0]}",
                          "candidate": f"{compare[0]['candidate']}_t{args.threads[0]}"}
        compare.append({"baseline": f"{candidate}_t{args.threads[0]}", "candidate": f"{candidate}_t{args.threads[-1]}"})
    config = {"schema_version": SCHEMA_VERSION, "comment": args.comment or make_comment(args), "platform": args.platform,
              "model": model, "output_root": relative_to(args.output_root, config_dir),
              "experiments": experiments, "compare": compare}
    if args.platform == "emulated":
        config["emulator"] = {"qemu": relative_to(str(args.qemu), config_dir), "cpu": "max"}
    return config


def fill_run_counts(args: argparse.Namespace) -> None:
    """Runs, warm-up and rounds not given: short on the emulated platform, statistically useful elsewhere."""
    counts = RUN_COUNTS["emulated" if args.platform == "emulated" else "other"]
    for key, value in counts.items():
        if getattr(args, key) is None:
            setattr(args, key, value)


def find_schema(explicit: Optional[Path]) -> Path:
    schema = explicit or Path(__file__).resolve().parent.parent / "configs" / "config.schema.json"
    if not schema.is_file():
        raise ConfigInputError(f"config schema not found at {schema}; put configs/config.schema.json beside "
                               "scripts/ or pass --schema")
    return schema


def validate(config: dict, schema_path: Path) -> None:
    validator = jsonschema.Draft202012Validator(json.loads(schema_path.read_text()))
    problem = jsonschema.exceptions.best_match(validator.iter_errors(config))
    if problem is not None:
        where = "/".join(str(p) for p in problem.absolute_path) or "(top level)"
        raise ConfigInputError(f"the generated config is invalid at {where}: {problem.message}; check the flags")


def ask_list(prompt: str, default: list, cast=str) -> list:
    text = Prompt.ask(prompt, default=" ".join(map(str, default)))
    try:
        return [cast(part) for part in text.replace(",", " ").split()]
    except ValueError:
        raise ConfigInputError(f"'{text}' is not a list of {cast.__name__} values") from None


def ask(args: argparse.Namespace, console: Console) -> None:
    """Fill args from prompts, offering the flag values (or defaults) as the answers."""
    console.print("[bold]Pipeline config[/bold] (Enter keeps the value in brackets)")
    args.platform = Prompt.ask("Platform", choices=list(PLATFORMS), default=args.platform)
    args.compare = ask_list(f"Comparisons ({', '.join(COMPARISONS)})",
                            args.compare or default_comparisons(args.platform))
    unknown = [c for c in args.compare if c not in COMPARISONS]
    if unknown:
        raise ConfigInputError(f"unknown comparison {unknown[0]}; choose from {', '.join(COMPARISONS)}")
    args.models = [Prompt.ask("Model (.pte)", default=args.models[0])]
    if "dtypes" in args.compare:
        args.models.append(Prompt.ask("Second model (.pte, the candidate)"))
    if "sme2" in args.compare:
        args.sme2_off = Prompt.ask("SME2 OFF from (mask: one runner, build: two source builds)",
                                   choices=list(SME2_OFF_SOURCES), default=args.sme2_off)
    if "sme2" not in args.compare or args.sme2_off == "mask":
        try:
            guess = args.portable_model or portable_twin(args.models[0])
        except ConfigInputError:
            guess = None
        if "backends" in args.compare:
            args.portable_model = Prompt.ask("Portable export (.pte)", default=guess)
        args.runner = Prompt.ask("Runner", default=runner_names(args)["single"])
    else:
        args.runner_off = Prompt.ask("Baseline runner (SME2 OFF)", default=runner_names(args)["off"])
        args.runner_on = Prompt.ask("Candidate runner (SME2 ON)", default=runner_names(args)["on"])
    args.output_root = Prompt.ask("Output root", default=args.output_root or default_output_root(args))
    fill_run_counts(args)
    args.runs = IntPrompt.ask("Runs per round", default=args.runs)
    args.warmup = IntPrompt.ask("Warm-up runs", default=args.warmup)
    args.rounds = IntPrompt.ask("Interleaved rounds", default=args.rounds)
    args.threads = ask_list("Thread counts", args.threads, int)
    args.modes = ask_list(f"Modes ({', '.join(MODES)})", args.modes)
    if args.platform == "android":
        args.cpu_affinity = ask_list("CPU cores to pin to (empty: none)", args.cpu_affinity or [], int)
    args.out = Path(Prompt.ask("Write the config to", default=str(args.out or f"{args.platform}_config.json")))


def default_output_root(args: argparse.Namespace) -> str:
    names = ["profile" if c == "none" else c for c in args.compare]
    return f"out/{args.platform}_{'_'.join(names)}"


def write_config(config: dict, out: Path, force: bool) -> None:
    if out.exists() and not force:
        raise ConfigInputError(f"{out} exists; pass --force to replace it or choose another --out")
    temporary = out.with_name(f".{out.name}.partial-{os.getpid()}")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        temporary.write_text(json.dumps(config, indent=2) + "\n")
        temporary.replace(out)  # a config is never left half written
    except OSError as error:
        raise ConfigInputError(f"cannot write {out} ({error.strerror or error}): choose a writable --out "
                               "or fix the folder's permissions") from None
    finally:
        if temporary.exists():
            temporary.unlink()


def kit_command(script: str) -> str:
    """`<running Python> <kit script>`, relative to the working directory where it can be: pastes as is
    outside an activated venv (a bare `python` may not have the pinned packages)."""
    def shown(path: Path) -> str:
        path = Path(os.path.abspath(path))
        try:
            return str(path.relative_to(Path.cwd()))
        except ValueError:
            return str(path)
    return f"{shown(Path(sys.executable))} {shown(Path(__file__).resolve().parent / script)}"


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--platform", choices=PLATFORMS, default=host_platform(),
                        help="where the runners run (default: this host)")
    parser.add_argument("--compare", nargs="+", choices=COMPARISONS,
                        help="what to compare (default: sme2 on mac/android, backends on linux)")
    parser.add_argument("--model", dest="models", action="append",
                        help=f"the .pte to profile (default {DEFAULT_MODEL}); twice with --compare dtypes")
    parser.add_argument("--portable-model", help="the portable .pte for --compare backends "
                                                 "(default: the model's name with _portable_ for _xnnpack_)")
    parser.add_argument("--runner", help="the one runner of sme2 (mask), isa, backends, threads (default prebuilt; "
                                         "android: sme2_on-android)")
    parser.add_argument("--sme2-off", choices=SME2_OFF_SOURCES, default="mask",
                        help="--compare sme2: mask (default) hides SME/SME2 from one runner; build uses the two "
                             "source builds (build_runners.py --flavor source)")
    parser.add_argument("--runner-on", help="--sme2-off build: SME2 ON runner (default sme2_on, android: sme2_on-android)")
    parser.add_argument("--runner-off", help="--sme2-off build: SME2 OFF runner (default sme2_off, android: "
                                             "sme2_off-android)")
    parser.add_argument("--output-root", help="run directory (default out/<platform>_<compare>)")
    parser.add_argument("--runs", type=int, help="measured runs per round (default 5; emulated 1)")
    parser.add_argument("--warmup", type=int,
                        help="warm-up runs before each round (default 2; emulated 1: the first run translates the code)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds, each a separate process (default 10: 5+ give "
                                                   "CIs between processes; emulated 1)")
    parser.add_argument("--qemu", type=Path, default=DEFAULT_QEMU,
                        help="--platform emulated: qemu-aarch64 >= 11 (default build/emulator/bin/qemu-aarch64, "
                             "from scripts/setup_emulator.sh)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1], help="thread counts (default 1)")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=["timing", "trace"],
                        help="modes per experiment (default timing trace)")
    parser.add_argument("--cpu-affinity", type=int, nargs="+", help="cores to pin the runner to (taskset)")
    parser.add_argument("--comment", help="comment stored in the config (default: says what is compared)")
    parser.add_argument("--out", type=Path, help="config file to write; '-' prints it instead")
    parser.add_argument("--force", action="store_true", help="replace an existing --out file")
    parser.add_argument("--interactive", action="store_true", help="ask for each value with rich prompts")
    parser.add_argument("--schema", type=Path, help="schema to validate against (default configs/config.schema.json)")
    args = parser.parse_args(argv)
    args.models = args.models or [DEFAULT_MODEL]
    return args


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    console = Console(stderr=str(args.out) == "-")
    try:
        schema = find_schema(args.schema)
        if args.interactive:
            ask(args, console)
        elif args.out is None:
            raise ConfigInputError("--out is required (a file name, or '-' to print); or use --interactive")
        args.compare = args.compare or (default_comparisons(args.platform) if args.interactive
                                        else auto_comparisons(args))
        fill_run_counts(args)
        args.output_root = args.output_root or default_output_root(args)
        to_stdout = str(args.out) == "-"
        config = build_config(args, Path.cwd() if to_stdout else args.out.resolve().parent)
        validate(config, schema)
        if to_stdout:
            print(json.dumps(config, indent=2))
            return 0
        if args.interactive:
            console.print(Syntax(json.dumps(config, indent=2), "json"))
            if args.out.exists() and not args.force:
                raise ConfigInputError(f"{args.out} exists; rerun with --force to replace it or choose another name")
            if not Confirm.ask(f"Write {args.out}?", default=True):
                console.print("nothing written")
                return 1
        write_config(config, args.out, args.force)
    except ConfigInputError as error:
        console.print(f"[bold red]error:[/bold red] {error}", soft_wrap=True)
        return 2
    except EOFError:
        console.print("\n[bold red]error:[/bold red] --interactive needs answers on standard input, which ended; "
                      "run it in a terminal, or pass the values as flags with --out FILE (nothing was written)",
                      soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        console.print("\n[bold red]interrupted:[/bold red] nothing was written; run the same command again",
                      soft_wrap=True)
        return 130
    pipeline = "android_pipeline.py" if args.platform == "android" else "mac_pipeline.py"
    console.print(f"[green]wrote[/green] {args.out} ({len(config['experiments'])} experiments, "
                  f"{len(config['compare'])} compare pairs); run it with: {kit_command(pipeline)} --config {args.out}",
                  soft_wrap=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
