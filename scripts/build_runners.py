#!/usr/bin/env python3
"""Build the kit's profiling runner: prebuilt (from the wheel) or SME2 ON/OFF from source.

Two flavors share one command-line contract (see runner/profiling_runner.cpp):

* ``prebuilt`` (default, seconds): compiles ``runner/`` against the C++ runtime that
  ships inside the installed ``executorch`` wheel. On an Apple M4 this is "SME2 as
  shipped". Output: ``runners/prebuilt/``. ``--platform linux-aarch64`` cross-compiles
  it for Arm Linux (boards, or QEMU) against the arm64 wheel of the same version, with
  the runtime libraries copied beside the binary: ``runners/prebuilt-linux-aarch64/``.
* ``source`` (tens of minutes): builds ExecuTorch from a checkout together with the
  runner, twice: ``sme2_on`` and ``sme2_off``. The two configurations differ only in
  ``XNNPACK_ENABLE_ARM_SME2`` and ``XNNPACK_ENABLE_ARM_SME`` (SME2 off alone falls back
  to SME1 kernels on M4). ``--kernels`` adds ``*_kernels`` variants whose XNNPACK
  prints the microkernels it registers.

Every runner folder gets a ``runner.json`` (schema in scripts/README.md) saying what
was built: flavor, platform, CMake flags, ExecuTorch version and commit, compiler,
and whether SME/SME2 kernels are in the binary. Beside every runner sits its feature
mask, ``libhide_cpu_features.so`` (``.dylib`` on macOS): preloaded with
SME_KIT_HIDE_CPU_FEATURES=sme:sme2 it hides SME and SME2 from the runner, so one binary
runs SME2 ON and OFF (runner.json ``feature_mask``; the pipeline sets it up).

Example:
    python scripts/build_runners.py                       # runners/prebuilt
    python scripts/build_runners.py --platform linux-aarch64 --executorch-package DIR
    python scripts/build_runners.py --flavor source --platform mac --kernels
    python scripts/build_runners.py --flavor source --platform android --dry-run
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from rich.console import Console
from rich.table import Table

SCHEMA_VERSION = 1
RUNNER_BINARY = "profiling_runner"
MIN_NDK_CLANG_MAJOR = 18  # older NDK clang silently drops SME2 code paths
ANDROID_PLATFORM = "android-28"
CROSS_TRIPLE = "aarch64-linux-gnu"  # Debian/Ubuntu package g++-aarch64-linux-gnu
# The feature mask built beside every runner (runner/hide_cpu_features_*.c): preloaded with
# the control variable set, it hides SME/SME2 from the runner, so one binary runs ON and OFF.
MASK_CONTROL_VARIABLE = "SME_KIT_HIDE_CPU_FEATURES"

# Flags every source build carries; ON and OFF variants add only the SME switches.
SOURCE_COMMON_FLAGS = {
    "CMAKE_BUILD_TYPE": "Release",
    "EXECUTORCH_BUILD_XNNPACK": "ON",
    "EXECUTORCH_BUILD_DEVTOOLS": "ON",
    "EXECUTORCH_ENABLE_EVENT_TRACER": "ON",
    "EXECUTORCH_BUILD_EXTENSION_DATA_LOADER": "ON",
    "EXECUTORCH_BUILD_EXTENSION_FLAT_TENSOR": "ON",
    "EXECUTORCH_BUILD_KERNELS_OPTIMIZED": "ON",
    "EXECUTORCH_BUILD_KERNELS_QUANTIZED": "ON",
    "EXECUTORCH_BUILD_PTHREADPOOL": "ON",
    "EXECUTORCH_BUILD_CPUINFO": "ON",
    "EXECUTORCH_ENABLE_LOGGING": "ON",
}
SME_SWITCHES = {
    "sme2_on": {"XNNPACK_ENABLE_ARM_SME2": "ON", "XNNPACK_ENABLE_ARM_SME": "ON"},
    "sme2_off": {"XNNPACK_ENABLE_ARM_SME2": "OFF", "XNNPACK_ENABLE_ARM_SME": "OFF"},
}
# Level 4 (info) makes XNNPACK print "Note (XNNPACK): Using <kind> microkernel '<name>'."
KERNEL_LOG_FLAGS = {"EXECUTORCH_XNNPACK_LOG_LEVEL": "4"}
SOURCE_VARIANTS = ("sme2_on", "sme2_off", "sme2_on_kernels", "sme2_off_kernels")
# The source build needs only the runner (with what it links) and the feature mask, not every ExecuTorch target.
SOURCE_BUILD_TARGETS = [RUNNER_BINARY, "hide_cpu_features"]

# Per-platform facts: target architecture, runner-name suffix, extra CMake flags.
PLATFORMS = {
    "mac": {"arch": "arm64", "suffix": "", "flags": {"CMAKE_OSX_ARCHITECTURES": "arm64"}},
    "linux": {"arch": platform.machine().lower().replace("amd64", "x86_64"), "suffix": "", "flags": {}},
    "android": {"arch": "arm64", "suffix": "-android", "flags": {
        "ANDROID_ABI": "arm64-v8a", "ANDROID_PLATFORM": ANDROID_PLATFORM, "ANDROID_STL": "c++_shared"}},
    "linux-aarch64": {"arch": "aarch64", "suffix": "-linux-aarch64", "flags": {}},
}
# Which --platform values the prebuilt flavor can build from each host.
PREBUILT_TARGETS = {"mac": ("mac",), "linux": ("linux", "linux-aarch64")}


class BuildError(Exception):
    """A problem the learner can fix; the message names it and the fix."""


def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


def host_platform() -> str:
    return "mac" if sys.platform == "darwin" else "linux"


def tool(name: str) -> str:
    """Prefer the venv's CMake/Ninja (pinned) over whatever is on PATH."""
    beside_python = Path(sys.executable).parent / name
    found = str(beside_python) if beside_python.exists() else shutil.which(name)
    if not found:
        raise BuildError(f"{name} not found; run scripts/setup_repo.sh to install the pinned {name} into .venv")
    return found


def executorch_facts() -> dict:
    """Version, commit and package folder of the installed executorch wheel."""
    try:
        import executorch
        import executorch.version as version
    except ImportError:
        raise BuildError("executorch is not installed in this Python; run scripts/setup_repo.sh first") from None
    package_dir = Path(list(executorch.__path__)[0])
    return {"version": version.__version__.split("+")[0], "commit": version.git_version, "package_dir": package_dir}


def cross_compiling(target: str) -> bool:
    return target == "linux-aarch64" and PLATFORMS["linux"]["arch"] not in ("aarch64", "arm64")


def unpacked_package_facts(package_dir: Path) -> dict:
    """Version and commit of an unpacked executorch package, read from its version.py as text
    (it is another architecture's package, so it cannot be imported here)."""
    text = (package_dir / "version.py").read_text()
    version = re.search(r"""__version__\s*=\s*["']([^"'+]+)""", text)
    commit = re.search(r"""git_version[^=]*=\s*["']([0-9a-f]{40})""", text)
    return {"version": version.group(1) if version else "unknown",
            "commit": commit.group(1) if commit else "unknown", "package_dir": package_dir}


def arm64_package(package_arg: str | None, installed: dict) -> dict:
    """The arm64 executorch package to cross-compile against: --executorch-package, or the one
    scripts/setup_emulator.sh unpacks. It must be the venv's executorch version."""
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    default = repo_root() / "build" / "emulator" / f"executorch-{installed['version']}-{tag}-aarch64"
    folder = Path(package_arg).resolve() if package_arg else default
    package_dir = next((d for d in (folder, folder / "executorch") if (d / "share/cmake/executorch-config.cmake").exists()), None)
    if package_dir is None:
        raise BuildError(f"no arm64 executorch package at {folder}; run scripts/setup_emulator.sh, or "
                         f"pip download --no-deps --only-binary=:all: --platform manylinux_2_28_aarch64 "
                         f"executorch=={installed['version']}, unzip it and pass --executorch-package DIR")
    facts = unpacked_package_facts(package_dir)
    if facts["version"] != installed["version"]:
        raise BuildError(f"arm64 executorch {facts['version']} at {package_dir} does not match the installed "
                         f"{installed['version']} (its .pte files would not load); unpack executorch=="
                         f"{installed['version']} instead")
    return facts


def write_cross_toolchain(build_dir: Path) -> Path:
    """A CMake toolchain file for the GNU aarch64 cross compiler, in the build folder."""
    compiler = shutil.which(f"{CROSS_TRIPLE}-g++")
    if not compiler:
        raise BuildError(f"{CROSS_TRIPLE}-g++ not found; install g++-{CROSS_TRIPLE} (Debian/Ubuntu) or run "
                         "scripts/setup_emulator.sh")
    bin_dir = Path(compiler).parent
    sysroot = bin_dir.parent / CROSS_TRIPLE
    # PACKAGE BOTH: the executorch package is an unpacked wheel outside the sysroot.
    text = f"""set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER {bin_dir / (CROSS_TRIPLE + "-gcc")})
set(CMAKE_CXX_COMPILER {compiler})
set(CMAKE_FIND_ROOT_PATH {sysroot})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE BOTH)
"""
    build_dir.mkdir(parents=True, exist_ok=True)
    path = build_dir / f"{CROSS_TRIPLE}.toolchain.cmake"
    path.write_text(text)
    return path


def needed_libraries(elf: Path) -> list[str]:
    """DT_NEEDED entries of an ELF file (GNU readelf reads any architecture)."""
    readelf = shutil.which("readelf") or shutil.which(f"{CROSS_TRIPLE}-readelf")
    if not readelf:
        raise BuildError("readelf not found; install binutils")
    output = subprocess.run([readelf, "-d", str(elf)], capture_output=True, text=True, check=True).stdout
    return re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", output)


def bundle_runtime_libraries(binary: Path, lib_dir: Path, runner_dir: Path) -> list[str]:
    """Copy the package libraries the runner loads (transitively) beside it. Its $ORIGIN rpath
    finds them there, so the folder runs anywhere, e.g. pushed to a board as is."""
    copied: list[str] = []
    pending = needed_libraries(binary)
    while pending:
        name = pending.pop()
        if name in copied or not (lib_dir / name).exists():
            continue  # system libraries (libc, libstdc++) come from the target
        shutil.copy2(lib_dir / name, runner_dir / name)
        copied.append(name)
        pending += needed_libraries(lib_dir / name)
    return sorted(copied)


def parse_clang_major(version_text: str) -> int | None:
    """Major version from `clang --version` output, e.g. 'Android (...) clang version 18.0.3 (...)' -> 18."""
    match = re.search(r"clang version (\d+)\.", version_text)
    return int(match.group(1)) if match else None


def find_ndk(ndk_arg: str | None) -> Path:
    candidates = [ndk_arg] + [os.environ.get(k) for k in ("ANDROID_NDK", "ANDROID_NDK_HOME", "ANDROID_NDK_ROOT")]
    for candidate in filter(None, candidates):
        if (Path(candidate) / "build/cmake/android.toolchain.cmake").exists():
            return Path(candidate)
    raise BuildError("Android NDK not found; install NDK r27 or newer and pass --ndk DIR or set ANDROID_NDK")


def check_ndk_clang(ndk: Path) -> str:
    clangs = sorted(ndk.glob("toolchains/llvm/prebuilt/*/bin/clang"))
    if not clangs:
        raise BuildError(f"no clang under {ndk}/toolchains/llvm/prebuilt; reinstall the NDK (r27 or newer)")
    text = subprocess.run([str(clangs[0]), "--version"], capture_output=True, text=True).stdout
    major = parse_clang_major(text)
    if major is None or major < MIN_NDK_CLANG_MAJOR:
        raise BuildError(f"NDK clang {major} at {clangs[0]} is older than {MIN_NDK_CLANG_MAJOR} and silently drops "
                         "SME2 kernels; install NDK r27 or newer")
    return text.splitlines()[0].strip()


def sources_fingerprint(runner_dir: Path, extra: dict) -> str:
    digest = hashlib.sha256(json.dumps(extra, sort_keys=True, default=str).encode())
    for path in sorted(runner_dir.glob("*")):
        if path.is_file() and path.name != "CMakeUserPresets.json":
            digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:16]


def scan_sme_kernels(library: Path) -> dict:
    """Which SME compute kernels a library carries, from the microkernel symbol names in it.

    Only compute kernels count (XNNPACK `*ukernel*`, KleidiAI `*matmul*`): a source build with both
    SME switches OFF still links KleidiAI's SME weight-packing routines (`kai_run_rhs_pack_*_sme`,
    `xnn_pack_kai_*_sme`), which never run without the kernels they pack for."""
    names = {name for name in re.findall(rb"(?:kai|xnn)_[A-Za-z0-9_]*sme[A-Za-z0-9_]*", library.read_bytes())
             if (b"ukernel" in name or b"matmul" in name) and b"pack" not in name}
    sme2 = any(b"sme2" in name for name in names)
    sme = any(re.search(rb"sme(?!2)", name) for name in names)
    return {"sme2_kernels": sme2, "sme_kernels": sme}


def compiler_facts(build_dir: Path) -> dict:
    """Compiler id and version as CMake detected them for this build."""
    for cmake_file in build_dir.glob("CMakeFiles/*/CMakeCXXCompiler.cmake"):
        text = cmake_file.read_text()
        found = dict(re.findall(r'set\(CMAKE_CXX_COMPILER_(ID|VERSION) "([^"]*)"\)', text))
        return {"id": found.get("ID", "unknown"), "version": found.get("VERSION", "unknown")}
    return {"id": "unknown", "version": "unknown"}


def configure_command(source_dir: Path, build_dir: Path, flags: dict) -> list[str]:
    return [tool("cmake"), "-S", str(source_dir), "-B", str(build_dir), "-G", "Ninja",
            f"-DCMAKE_MAKE_PROGRAM={tool('ninja')}"] + [f"-D{key}={value}" for key, value in flags.items()]


def build_command(build_dir: Path) -> list[str]:
    return [tool("cmake"), "--build", str(build_dir), "-j", str(os.cpu_count() or 2)]


def run_logged(command: list[str], log: Path, console: Console, what: str) -> None:
    with log.open("a") as out:
        out.write("$ " + " ".join(command) + "\n")
        out.flush()
        result = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        tail = "".join(log.read_text().splitlines(keepends=True)[-15:])
        console.print(f"[dim]{tail}[/dim]")
        raise BuildError(f"{what} failed (full log: {log}); see 'runner build failure' in "
                         "agentic-kits/troubleshooting-agent.md")


def copy_feature_mask(build_dir: Path, runner_dir: Path, target: str, console: Console) -> dict | None:
    """Put the feature-mask library beside the runner; returns runner.json's "feature_mask"."""
    mac = target == "mac"
    name = "libhide_cpu_features.dylib" if mac else "libhide_cpu_features.so"
    if not (build_dir / name).is_file():
        console.print(f"[yellow]warning:[/yellow] no {name} in {build_dir}: experiments of this runner cannot "
                      "hide CPU features (rebuild it with this build_runners.py)")
        return None
    shutil.copy2(build_dir / name, runner_dir / name)
    return {"library": name, "preload_variable": "DYLD_INSERT_LIBRARIES" if mac else "LD_PRELOAD",
            "control_variable": MASK_CONTROL_VARIABLE}


def write_runner_json(runner_dir: Path, facts: dict) -> dict:
    record = {"schema_version": SCHEMA_VERSION, **facts}
    (runner_dir / "runner.json").write_text(json.dumps(record, indent=2) + "\n")
    return record


def build_prebuilt(args: argparse.Namespace, console: Console) -> list[dict]:
    """Compile runner/ against the wheel's CMake package into runners/prebuilt[-<platform>]."""
    et = executorch_facts()
    if args.platform == "linux-aarch64" and (cross_compiling(args.platform) or args.executorch_package):
        et = arm64_package(args.executorch_package, et)
    root = repo_root()
    name = "prebuilt" + PLATFORMS[args.platform]["suffix"]
    runner_dir = root / args.runners_dir / name
    build_dir = root / args.build_dir / name
    flags = {"CMAKE_BUILD_TYPE": "Release", "CMAKE_PREFIX_PATH": str(et["package_dir"])}
    if cross_compiling(args.platform):
        flags["CMAKE_TOOLCHAIN_FILE"] = str(write_cross_toolchain(build_dir))
    fingerprint = sources_fingerprint(root / "runner", {"flags": flags, "version": et["version"]})
    existing = runner_dir / "runner.json"
    if not args.force and existing.exists() and (runner_dir / RUNNER_BINARY).exists():
        previous = json.loads(existing.read_text())
        if previous.get("fingerprint") == fingerprint:
            console.print(f"[green]up to date[/green] {runner_dir} (use --force to rebuild)")
            return [previous]

    build_dir.mkdir(parents=True, exist_ok=True)
    log = build_dir / "build.log"
    log.write_text("")
    started = time.monotonic()
    with console.status(f"Building the {name} runner against the executorch wheel..."):
        run_logged(configure_command(root / "runner", build_dir, flags), log, console, "CMake configure")
        run_logged(build_command(build_dir), log, console, "runner build")
    seconds = round(time.monotonic() - started, 2)

    runner_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy2(build_dir / RUNNER_BINARY, runner_dir / RUNNER_BINARY)
    if args.platform == "linux-aarch64":
        bundle_runtime_libraries(runner_dir / RUNNER_BINARY, et["package_dir"] / "lib", runner_dir)
    feature_mask = copy_feature_mask(build_dir, runner_dir, args.platform, console)
    xnnpack_lib = next(et["package_dir"].glob("lib/libexecutorch_backend_xnnpack.*"))
    facts = {
        "name": name, "flavor": "prebuilt", "platform": args.platform,
        "target_arch": PLATFORMS[args.platform]["arch"], "binary": RUNNER_BINARY,
        "executorch_version": et["version"], "executorch_commit": et["commit"],
        "compiler": compiler_facts(build_dir), "cmake_flags": flags,
        **scan_sme_kernels(xnnpack_lib), "kernel_log": False, "feature_mask": feature_mask,
        "build_seconds": seconds, "built_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "fingerprint": fingerprint,
    }
    console.print(f"[green]built[/green] {runner_dir / RUNNER_BINARY} in {seconds:.1f} s")
    return [write_runner_json(runner_dir, facts)]


def source_variants(kernels: bool, only: list[str] | None = None) -> list[tuple[str, dict]]:
    """(name, SME/log switches) of each variant: --variant picks some, else ON/OFF (+ _kernels)."""
    every = {name: dict(switches) for name, switches in SME_SWITCHES.items()}
    every |= {f"{name}_kernels": {**switches, **KERNEL_LOG_FLAGS} for name, switches in SME_SWITCHES.items()}
    names = only or [name for name in every if kernels or not name.endswith("_kernels")]
    return [(name, every[name]) for name in dict.fromkeys(names)]


def kleidiai_dir(kleidiai_arg: str | None, checkout: Path) -> Path | None:
    """KleidiAI sources for XNNPACK, so its configure downloads nothing: --kleidiai-dir, else a
    kleidiai/ folder beside the checkout; None lets XNNPACK download it (needs network)."""
    if kleidiai_arg:
        folder = Path(kleidiai_arg).resolve()
        if not (folder / "kai").is_dir():
            raise BuildError(f"--kleidiai-dir {folder} holds no KleidiAI sources (no kai/ folder); pass the folder "
                             "of a KleidiAI checkout at the commit XNNPACK's cmake/DownloadKleidiAI.cmake names")
        return folder
    beside = checkout.parent / "kleidiai"
    return beside if (beside / "kai").is_dir() else None


def plan_source_builds(args: argparse.Namespace) -> list[dict]:
    """The configure/build steps for each variant; ON and OFF differ only in the SME switches."""
    root = repo_root()
    checkout = Path(args.executorch_dir).resolve()
    target = PLATFORMS[args.platform]
    # CMake's FindPython may pick an interpreter without torch; ExecuTorch's configure imports it.
    base = {**SOURCE_COMMON_FLAGS, "EXECUTORCH_SOURCE_DIR": str(checkout), "PYTHON_EXECUTABLE": sys.executable,
            **target["flags"]}
    kleidiai = kleidiai_dir(args.kleidiai_dir, checkout)
    if kleidiai:
        base["KLEIDIAI_SOURCE_DIR"] = str(kleidiai)
    if args.platform == "android":
        base["CMAKE_TOOLCHAIN_FILE"] = str(find_ndk(args.ndk) / "build/cmake/android.toolchain.cmake")
    if cross_compiling(args.platform):
        base["CMAKE_TOOLCHAIN_FILE"] = str(write_cross_toolchain(root / args.build_dir / "toolchains"))
    plans = []
    for variant, switches in source_variants(args.kernels, args.variant):
        name = variant + target["suffix"]
        flags = {**base, **switches}
        build_dir = root / args.build_dir / name
        plans.append({
            "name": name, "variant": variant, "platform": args.platform, "target_arch": target["arch"],
            "cmake_flags": flags, "build_dir": str(build_dir),
            "configure": configure_command(root / "runner", build_dir, flags),
            "build": build_command(build_dir) + ["--target", *SOURCE_BUILD_TARGETS],
        })
    return plans


def user_presets(plans: list[dict]) -> dict:
    """CMakeUserPresets.json for runner/: one configure and one build preset per variant."""
    configure = [{"name": p["name"], "displayName": f"{p['name']} ({p['platform']})", "generator": "Ninja",
                  "binaryDir": p["build_dir"], "cacheVariables": p["cmake_flags"]} for p in plans]
    build = [{"name": p["name"], "configurePreset": p["name"], "jobs": os.cpu_count() or 2} for p in plans]
    return {"version": 6, "cmakeMinimumRequired": {"major": 3, "minor": 29, "patch": 0},
            "configurePresets": configure, "buildPresets": build}


def checkout_commit(checkout: Path) -> str | None:
    """HEAD of the checkout when it is a git work tree of its own (not a folder inside another repo)."""
    def git(*command: str) -> str:
        result = subprocess.run(["git", "-C", str(checkout), *command], capture_output=True, text=True)
        return result.stdout.strip() if result.returncode == 0 else ""
    top = git("rev-parse", "--show-toplevel")
    if not top or Path(top).resolve() != checkout.resolve():
        return None
    return git("rev-parse", "HEAD") or None


def check_checkout(checkout: Path, commit_arg: str | None, wheel: dict, console: Console) -> dict:
    """Version and commit of the ExecuTorch source tree: the commit from git, else --executorch-commit
    (an unpacked tree has no .git and its version files name no commit), else 'unknown'."""
    if not (checkout / "CMakeLists.txt").exists() or not (checkout / "backends/xnnpack").exists():
        raise BuildError(f"ExecuTorch checkout not found at {checkout}; run scripts/setup_repo.sh --with-source "
                         "or pass --executorch-dir")
    if checkout.name != "executorch":
        raise BuildError(f"the ExecuTorch source folder must be named 'executorch' (its CMake includes use that "
                         f"name), not {checkout.name!r}; rename or symlink it to .../executorch")
    version_file = checkout / "version.txt"
    version = version_file.read_text().strip() if version_file.exists() else "unknown"
    git_commit = checkout_commit(checkout)
    if git_commit and commit_arg and not git_commit.startswith(commit_arg):
        raise BuildError(f"--executorch-commit {commit_arg} does not match the checkout's HEAD {git_commit}; "
                         "drop --executorch-commit (git knows the commit)")
    commit = git_commit or commit_arg or "unknown"
    if commit == "unknown":
        console.print("[yellow]warning:[/yellow] the source tree has no .git; pass --executorch-commit HASH so "
                      "runner.json records which ExecuTorch it is")
    if commit != wheel["commit"]:
        console.print(f"[yellow]warning:[/yellow] source is {version} at {commit[:12]}, the wheel is "
                      f"{wheel['version']} from {wheel['commit'][:12]}: runner and Python export may disagree")
    return {"version": version, "commit": commit}


@contextlib.contextmanager
def checkout_lock(checkout: Path, console: Console):
    """Hold the checkout for one configure + build. flatcc writes its libraries into the source tree
    and every configure deletes them, so two builds sharing a checkout would break each other."""
    lock_path = checkout / ".build_runners.lock"
    try:
        handle = lock_path.open("a")
    except OSError as error:
        raise BuildError(f"cannot create {lock_path} ({error.strerror}); the source build writes into the "
                         "checkout (flatcc), so it must be writable") from None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            console.print(f"waiting for another build that uses {checkout} ...", soft_wrap=True)
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def build_source(args: argparse.Namespace, console: Console) -> list[dict]:
    checkout = Path(args.executorch_dir).resolve()
    source = check_checkout(checkout, args.executorch_commit, executorch_facts(), console)
    plans = plan_source_builds(args)
    ndk_clang = check_ndk_clang(find_ndk(args.ndk)) if args.platform == "android" else None
    presets_path = repo_root() / "runner" / "CMakeUserPresets.json"
    presets_path.write_text(json.dumps(user_presets(plans), indent=2) + "\n")
    console.print(f"wrote {presets_path} (cmake --preset <name> from runner/ reproduces each build)")

    built: list[dict] = []
    for plan in plans:
        build_dir = Path(plan["build_dir"])
        log = build_dir / "build.log"
        with checkout_lock(checkout, console), console.status(f"Building {plan['name']} from source..."):
            started = time.monotonic()  # after the wait for the checkout
            build_dir.mkdir(parents=True, exist_ok=True)
            log.write_text("")
            run_logged(plan["configure"], log, console, f"CMake configure of {plan['name']}")
            if args.configure_only:
                console.print(f"[green]configured[/green] {build_dir} in {time.monotonic() - started:.1f} s")
                built.append({"name": plan["name"], "configured": str(build_dir),
                              "executorch_version": source["version"], "executorch_commit": source["commit"],
                              "configure_seconds": round(time.monotonic() - started, 2)})
                continue
            run_logged(plan["build"], log, console, f"build of {plan['name']}")
        runner_dir = repo_root() / args.runners_dir / plan["name"]
        runner_dir.mkdir(parents=True, exist_ok=True)
        # Copy then rename: a runner still running from this folder keeps its old file.
        shutil.copy2(build_dir / RUNNER_BINARY, runner_dir / f".{RUNNER_BINARY}.new")
        os.replace(runner_dir / f".{RUNNER_BINARY}.new", runner_dir / RUNNER_BINARY)
        if args.platform == "android":
            libcxx = next(find_ndk(args.ndk).glob("toolchains/llvm/prebuilt/*/sysroot/usr/lib/aarch64-linux-android/libc++_shared.so"))
            shutil.copy2(libcxx, runner_dir / "libc++_shared.so")
        feature_mask = copy_feature_mask(build_dir, runner_dir, args.platform, console)
        flags = plan["cmake_flags"]
        facts = {
            "name": plan["name"], "flavor": "source", "platform": plan["platform"], "target_arch": plan["target_arch"],
            "binary": RUNNER_BINARY, "executorch_version": source["version"], "executorch_commit": source["commit"],
            "compiler": compiler_facts(build_dir) | ({"ndk_clang": ndk_clang} if ndk_clang else {}),
            "cmake_flags": flags,
            # What the binary carries (statically linked XNNPACK), not what the flags asked for.
            **scan_sme_kernels(runner_dir / RUNNER_BINARY),
            "kernel_log": "EXECUTORCH_XNNPACK_LOG_LEVEL" in flags,
            "feature_mask": feature_mask,
            "build_seconds": round(time.monotonic() - started, 2),
            "built_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        built.append(write_runner_json(runner_dir, facts))
        console.print(f"[green]built[/green] {runner_dir / RUNNER_BINARY} in {facts['build_seconds']:.0f} s")
    return built


def show_plan(plans: list[dict], console: Console) -> None:
    for plan in plans:
        console.print(f"[bold]{plan['name']}[/bold]")
        console.print("  " + " ".join(plan["configure"]), soft_wrap=True)
        console.print("  " + " ".join(plan["build"]), soft_wrap=True)


def summarize(built: list[dict], console: Console) -> None:
    table = Table(title="Runners")
    for column in ("name", "flavor", "platform", "SME2 kernels", "SME kernels", "kernel log", "build s"):
        table.add_column(column)
    for facts in built:
        table.add_row(facts["name"], facts["flavor"], facts["platform"], str(facts["sme2_kernels"]),
                      str(facts["sme_kernels"]), str(facts["kernel_log"]), str(facts["build_seconds"]))
    console.print(table)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--flavor", choices=["prebuilt", "source"], default="prebuilt",
                        help="prebuilt: link the wheel's runtime (seconds); source: SME2 ON/OFF from a checkout")
    parser.add_argument("--platform", choices=sorted(PLATFORMS), default=host_platform(),
                        help="target platform (default: this host)")
    parser.add_argument("--executorch-dir", default=str(repo_root() / "third_party" / "executorch"),
                        help="ExecuTorch checkout for --flavor source (default: third_party/executorch, made by "
                             "setup_repo.sh --with-source)")
    parser.add_argument("--kernels", action="store_true",
                        help="also build sme2_on_kernels / sme2_off_kernels, which log XNNPACK microkernels")
    parser.add_argument("--variant", action="append", choices=SOURCE_VARIANTS,
                        help="build only this source variant (repeatable; default: sme2_on and sme2_off, "
                             "plus the _kernels pair with --kernels)")
    parser.add_argument("--kleidiai-dir",
                        help="KleidiAI sources for an offline source build (default: a kleidiai/ folder beside "
                             "the ExecuTorch checkout; without one XNNPACK downloads KleidiAI while configuring)")
    parser.add_argument("--executorch-commit",
                        help="commit of an ExecuTorch source tree without .git, recorded in runner.json")
    parser.add_argument("--configure-only", action="store_true",
                        help="--flavor source: run only the CMake configure of each variant (a minute), no build")
    parser.add_argument("--executorch-package",
                        help="unpacked arm64 executorch wheel for --flavor prebuilt --platform linux-aarch64 "
                             "(default: build/emulator/executorch-<version>-cp<python>-aarch64, made by "
                             "scripts/setup_emulator.sh)")
    parser.add_argument("--ndk", help="Android NDK r27+ (default: $ANDROID_NDK, $ANDROID_NDK_HOME, $ANDROID_NDK_ROOT)")
    parser.add_argument("--runners-dir", default="runners", help="where runner folders go (default: runners)")
    parser.add_argument("--build-dir", default="build", help="CMake build trees (default: build)")
    parser.add_argument("--force", action="store_true", help="rebuild the prebuilt runner even if up to date")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the configure and build commands (and presets) without building")
    parser.add_argument("--json", action="store_true", help="print the result (or with --dry-run, the plan) as JSON")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    console = Console(stderr=args.json)
    try:
        if args.flavor == "prebuilt" and args.platform not in PREBUILT_TARGETS[host_platform()]:
            raise BuildError(f"--flavor prebuilt on {host_platform()} builds for "
                             f"{' or '.join(PREBUILT_TARGETS[host_platform()])}; use --flavor source for {args.platform}")
        if args.configure_only and args.flavor != "source":
            raise BuildError("--configure-only applies to --flavor source")
        if args.dry_run:
            if args.flavor != "source":
                raise BuildError("--dry-run applies to --flavor source")
            plans = plan_source_builds(args)
            if args.json:
                print(json.dumps({"variants": plans, "presets": user_presets(plans)}, indent=2))
            else:
                show_plan(plans, console)
            return 0
        built = build_prebuilt(args, console) if args.flavor == "prebuilt" else build_source(args, console)
    except BuildError as error:
        console.print(f"[bold red]error:[/bold red] {error}", soft_wrap=True)
        return 1
    if args.json:
        print(json.dumps(built, indent=2))
    elif not args.configure_only:
        summarize(built, console)
    return 0


if __name__ == "__main__":
    sys.exit(main())
