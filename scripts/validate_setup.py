#!/usr/bin/env python3
"""Check that this machine is ready for the SME2 ExecuTorch profiling learning path.

Prints one row per check, PASS / WARN / FAIL (SKIP when not asked for), with the fix for
anything that is not PASS, then the host facts: OS, CPU or chip, core count and whether the
CPU has SME / SME2. Exit status 0 when nothing FAILs, 1 otherwise.

Example:
    .venv/bin/python scripts/validate_setup.py                 # full check of the set-up tree
    python3 scripts/validate_setup.py --prerequisites          # before setup: Python, git, compiler
    .venv/bin/python scripts/validate_setup.py --android --require-sme2 --json

Checks (stable ids, also in --json): python, git, compiler, cmake, ninja, venv, requirements,
executorch, torch, executorch_cmake, runners, sme2, and with --android: adb, android_device,
android_ndk, ndk_clang, android_sme2.

--json prints one document instead of the table:
    {"schema_version": 1, "ok": bool, "checks": [{"id", "name", "status", "detail", "fix"}],
     "host": {"os", "os_version", "machine", "chip", "cores", "sme", "sme2", "emulated"},
     "device": {...} or null, "runners": [{"name", "flavor", "sme2_kernels", ...}],
     "versions": {"python", "executorch", "executorch_commit", "torch"}}

Output degrades to plain text when `rich` cannot be imported: `--prerequisites` is meant to
run with the system Python before scripts/setup_repo.sh has created the venv that holds the
pinned `rich`. Everything else here is standard library, and the packages in the venv are
inspected by running the venv's own Python, so any Python 3.8+ can run this file and report
a too-old Python as a failed check instead of crashing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

SCHEMA_VERSION = 1
MIN_PYTHON = (3, 10)
CMAKE_RANGE = ((3, 29), (4, 0))  # ExecuTorch's source build needs 3.29+, its submodules break on 4.x
MIN_NDK_CLANG_MAJOR = 18  # older NDK clang silently drops the SME2 kernels
# Used when this file was downloaded alone, without the repository's requirements.txt.
DEFAULT_PINS = {"executorch": "1.5.1", "torch": "2.13.0"}
SETUP_HINT = "run ./scripts/setup_repo.sh"
NO_SME2_CONSEQUENCE = "SME2 ON/OFF comparisons on this CPU will show no SME2 effect"
# Every check, in report order: stable id -> the name a reader sees.
CHECKS = {
    "python": "Python", "git": "git", "compiler": "C/C++ compiler", "cmake": "CMake", "ninja": "Ninja",
    "venv": "Python venv", "requirements": "Pinned packages", "executorch": "import executorch",
    "torch": "import torch", "executorch_cmake": "ExecuTorch CMake package", "runners": "Profiling runners",
    "sme2": "Host SME2", "adb": "adb", "android_device": "Android device", "android_ndk": "Android NDK",
    "ndk_clang": "NDK clang >= 18", "android_sme2": "Device SME2",
}
# Arm Ltd (implementer 0x41) CPU part numbers, for Linux hosts and phones whose
# /proc/cpuinfo has no model name.
ARM_CPU_PARTS = {
    "0xd03": "Cortex-A53", "0xd05": "Cortex-A55", "0xd07": "Cortex-A57", "0xd08": "Cortex-A72",
    "0xd09": "Cortex-A73", "0xd0a": "Cortex-A75", "0xd0b": "Cortex-A76", "0xd0c": "Neoverse-N1",
    "0xd0d": "Cortex-A77", "0xd40": "Neoverse-V1", "0xd41": "Cortex-A78", "0xd44": "Cortex-X1",
    "0xd46": "Cortex-A510", "0xd47": "Cortex-A710", "0xd48": "Cortex-X2", "0xd49": "Neoverse-N2",
    "0xd4d": "Cortex-A715", "0xd4e": "Cortex-X3", "0xd4f": "Neoverse-V2", "0xd80": "Cortex-A520",
    "0xd81": "Cortex-A720", "0xd82": "Cortex-X4", "0xd84": "Neoverse-V3", "0xd85": "Cortex-X925",
    "0xd87": "Cortex-A725", "0xd8a": "C1-Nano", "0xd8b": "C1-Pro", "0xd8c": "C1-Ultra", "0xd8e": "Neoverse-N3",
    "0xd90": "C1-Premium",
}
PROBE_TIMEOUT_S = 180
COMMAND_TIMEOUT_S = 30

# Runs inside the venv's Python: what is installed there and what `import` really gives.
VENV_PROBE = r"""
import json, sys
from importlib import metadata
result = {"python": "%d.%d.%d" % sys.version_info[:3], "installed": {}, "imports": {}}
for name in json.loads(sys.argv[1]):
    try:
        result["installed"][name] = metadata.version(name)
    except metadata.PackageNotFoundError:
        result["installed"][name] = None
try:
    import executorch, executorch.version
    result["imports"]["executorch"] = {"version": executorch.version.__version__,
                                       "commit": executorch.version.git_version,
                                       "package_dir": list(executorch.__path__)[0]}
except Exception as error:
    result["imports"]["executorch"] = {"error": "%s: %s" % (type(error).__name__, error)}
try:
    import torch
    result["imports"]["torch"] = {"version": torch.__version__}
except Exception as error:
    result["imports"]["torch"] = {"error": "%s: %s" % (type(error).__name__, error)}
print(json.dumps(result))
"""


@dataclass
class Check:
    id: str
    name: str = field(init=False)
    status: str  # PASS, WARN, FAIL or SKIP
    detail: str
    fix: str = ""

    def __post_init__(self) -> None:
        self.name = CHECKS[self.id]


# ---------------------------------------------------------------- pure parsers (tested on real texts)

def parse_sme_features(text: str) -> Dict[str, bool]:
    """SME / SME2 support from `sysctl hw.optional.arm` (macOS) or /proc/cpuinfo (Linux, Android).

    macOS lists `hw.optional.arm.FEAT_SME2: 1`; Arm Linux lists hwcaps on `Features :` lines.
    Only those lines count: x86 `flags` lines can hold an unrelated `sme` (AMD memory encryption).
    """
    found = {"sme": False, "sme2": False}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        sysctl_feature = re.fullmatch(r"hw\.optional\.arm\.FEAT_(SME2?)", key)
        if sysctl_feature and value.strip() == "1":
            found[sysctl_feature.group(1).lower()] = True
        elif key == "Features":
            hwcaps = value.split()
            found["sme"] = found["sme"] or "sme" in hwcaps
            found["sme2"] = found["sme2"] or "sme2" in hwcaps
    return found


def parse_cpuinfo_chip(text: str) -> str:
    """A CPU name from /proc/cpuinfo: `model name`, else `Hardware`, else the Arm core types."""
    fields: Dict[str, List[str]] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and value.strip():
            fields.setdefault(key.strip(), []).append(value.strip())
    if fields.get("model name"):
        return fields["model name"][0]
    if fields.get("Hardware"):
        return fields["Hardware"][0]
    parts = []
    for implementer, part in zip(fields.get("CPU implementer", []), fields.get("CPU part", [])):
        name = ARM_CPU_PARTS.get(part.lower(), f"CPU part {part}") if implementer == "0x41" else \
            f"implementer {implementer} part {part}"
        parts.append(name)
    if not parts:
        return "unknown"
    counts: Dict[str, int] = {}
    for name in parts:
        counts[name] = counts.get(name, 0) + 1
    return " + ".join(f"{count}x {name}" for name, count in counts.items())


def parse_clang_version(text: str) -> Optional[Tuple[int, int, int]]:
    """(major, minor, patch) from `clang --version`, e.g. NDK r27: 'clang version 18.0.1 (...)'."""
    match = re.search(r"clang version (\d+)\.(\d+)(?:\.(\d+))?", text)
    if not match:
        return None
    return int(match.group(1)), int(match.group(2)), int(match.group(3) or 0)


def parse_cmake_version(text: str) -> Optional[Tuple[int, ...]]:
    match = re.search(r"cmake version (\d+)\.(\d+)\.(\d+)", text)
    return tuple(int(part) for part in match.groups()) if match else None


def parse_adb_devices(text: str) -> List[Tuple[str, str]]:
    """(serial, state) pairs from `adb devices`; state is device, unauthorized, offline, ..."""
    devices = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 2 and not line.startswith(("List of devices", "*")):
            devices.append((fields[0], fields[1]))
    return devices


def parse_requirement_pins(text: str) -> Dict[str, str]:
    """name -> version for each `name==version` line of a requirements file."""
    pins = {}
    for line in text.splitlines():
        match = re.match(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([^\s;#]+)", line)
        if match:
            pins[match.group(1).lower()] = match.group(2)
    return pins


def base_version(version: str) -> str:
    """'2.13.0+cpu' -> '2.13.0': a local build label does not change which release it is."""
    return version.split("+")[0]


# ---------------------------------------------------------------- running commands

def run_command(command: List[str], timeout: float = COMMAND_TIMEOUT_S,
                env: Optional[Dict[str, str]] = None) -> Tuple[int, str]:
    """Exit code and combined output; 127 when the program is missing, 124 on timeout."""
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env,
                                stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        return 127, ""
    except PermissionError:
        return 126, ""
    except subprocess.TimeoutExpired:
        return 124, f"timed out after {timeout:.0f} s"
    return result.returncode, (result.stdout or "") + (result.stderr or "")


def first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def last_line(text: str) -> str:
    return next((line.strip() for line in reversed(text.splitlines()) if line.strip()), "")


# ---------------------------------------------------------------- repository and venv

def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


def load_pins(root: Path) -> Tuple[Dict[str, str], Optional[Path]]:
    requirements = root / "requirements.txt"
    if requirements.is_file():
        return parse_requirement_pins(requirements.read_text()), requirements
    return dict(DEFAULT_PINS), None


def find_venv(explicit: Optional[Path], root: Path) -> Tuple[Optional[Path], str]:
    """The venv to inspect and how it was found: --venv, the running one, $VIRTUAL_ENV, .venv."""
    candidates = []
    if explicit is not None:
        candidates.append((explicit, "given with --venv"))
    else:
        if sys.prefix != sys.base_prefix:
            candidates.append((Path(sys.prefix), "active: runs this script"))
        if os.environ.get("VIRTUAL_ENV"):
            candidates.append((Path(os.environ["VIRTUAL_ENV"]), "active: $VIRTUAL_ENV"))
        candidates.append((root / ".venv", "found, not active"))
    for path, how in candidates:
        if (path / "bin" / "python").exists():
            return path.absolute(), how
    return None, ""


def probe_venv(venv: Path, pins: Dict[str, str]) -> Dict:
    """Installed versions and import results, as seen by the venv's own Python."""
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")  # inspecting must not change the venv
    code, output = run_command([str(venv / "bin" / "python"), "-c", VENV_PROBE, json.dumps(sorted(pins))],
                               timeout=PROBE_TIMEOUT_S, env=env)
    try:
        return json.loads(last_line(output))
    except json.JSONDecodeError:
        return {"error": last_line(output) or f"the venv's Python exited with {code}"}


def find_tool(name: str, venv: Optional[Path]) -> Optional[str]:
    """The venv's copy of a tool first (pinned), else the one on PATH."""
    if venv is not None and (venv / "bin" / name).exists():
        return str(venv / "bin" / name)
    return shutil.which(name)


# ---------------------------------------------------------------- host facts

def host_facts() -> Dict:
    system = platform.system()
    facts = {"os": "macOS" if system == "Darwin" else system, "os_version": platform.release(),
             "machine": platform.machine(), "chip": "unknown", "cores": os.cpu_count() or 0,
             "sme": False, "sme2": False, "emulated": False, "sme_source": ""}
    if system == "Darwin":
        facts["os_version"] = platform.mac_ver()[0] or platform.release()
        code, brand = run_command(["sysctl", "-n", "machdep.cpu.brand_string"])
        facts["chip"] = first_line(brand) if code == 0 else "unknown"
        code, features = run_command(["sysctl", "hw.optional.arm"])
        facts.update(parse_sme_features(features))
        facts["sme_source"] = "sysctl hw.optional.arm"
        code, translated = run_command(["sysctl", "-n", "sysctl.proc_translated"])
        facts["emulated"] = code == 0 and first_line(translated) == "1"
    elif Path("/proc/cpuinfo").exists():
        cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
        facts["chip"] = parse_cpuinfo_chip(cpuinfo)
        facts.update(parse_sme_features(cpuinfo))
        facts["sme_source"] = "/proc/cpuinfo Features"
    return facts


def describe_sme(facts: Dict) -> str:
    return f"SME2 {'yes' if facts['sme2'] else 'no'}, SME {'yes' if facts['sme'] else 'no'}"


# ---------------------------------------------------------------- checks: prerequisites

def check_python(probe: Optional[Dict]) -> Check:
    running = "%d.%d.%d" % sys.version_info[:3]
    detail = f"{running} ({sys.executable})"
    versions = [tuple(sys.version_info[:2])]
    if probe and probe.get("python"):
        detail += f"; venv: {probe['python']}"
        versions.append(tuple(int(part) for part in probe["python"].split(".")[:2]))
    if min(versions) < MIN_PYTHON:
        return Check("python", "FAIL", detail + " is older than 3.10",
                     "install Python 3.10 or newer (3.11 recommended) and rerun: PYTHON=python3.11 ./scripts/setup_repo.sh")
    return Check("python", "PASS", detail)


def check_git() -> Check:
    code, output = run_command(["git", "--version"])
    if code != 0:
        return Check("git", "FAIL", "git not found on PATH",
                     "install git (macOS: xcode-select --install; Debian/Ubuntu: sudo apt-get install git)")
    return Check("git", "PASS", first_line(output))


def compiler_candidates(variable: str, defaults: Tuple[str, ...]) -> Tuple[List[str], str]:
    """The compiler command named by $CC/$CXX, else the first default found on PATH."""
    if os.environ.get(variable):
        return shlex.split(os.environ[variable]), f"${variable}"
    for name in defaults:
        if shutil.which(name):
            return [name], "PATH"
    return [], "PATH"


def check_compiler() -> Check:
    if platform.system() == "Darwin":
        code, _ = run_command(["xcode-select", "-p"])
        if code != 0:  # /usr/bin/clang exists even then, as a stub that only offers the install
            return Check("compiler", "FAIL", "Xcode Command Line Tools are not installed",
                         "run: xcode-select --install")
    details = []
    for variable, defaults, language in (("CC", ("cc", "gcc", "clang"), "C"),
                                         ("CXX", ("c++", "g++", "clang++"), "C++")):
        command, source = compiler_candidates(variable, defaults)
        code, output = run_command(command + ["--version"]) if command else (127, "")
        if code != 0:
            where = f"{variable}={os.environ[variable]!r} does not run" if source.startswith("$") \
                else f"no {language} compiler ({', '.join(defaults)}) on PATH"
            return Check("compiler", "FAIL", where,
                         f"install a C/C++ compiler (macOS: xcode-select --install; Debian/Ubuntu: "
                         f"sudo apt-get install build-essential) or point {variable} at one")
        details.append(f"{language}: {first_line(output)}")
    return Check("compiler", "PASS", "; ".join(details))


# ---------------------------------------------------------------- checks: the set-up tree

def check_cmake(venv: Optional[Path]) -> Check:
    low, high = CMAKE_RANGE
    wanted = f">= {low[0]}.{low[1]} and < {high[0]}"
    cmake = find_tool("cmake", venv)
    fix = f"{SETUP_HINT} (it installs the pinned CMake into the venv)"
    if not cmake:
        return Check("cmake", "FAIL", "cmake not found in the venv or on PATH", fix)
    code, output = run_command([cmake, "--version"])
    version = parse_cmake_version(output)
    if code != 0 or version is None:
        return Check("cmake", "FAIL", f"{cmake} --version failed: {last_line(output)}", fix)
    shown = ".".join(map(str, version))
    if not low <= version[:2] < high:
        return Check("cmake", "FAIL", f"{cmake} is {shown}; need {wanted}", fix)
    return Check("cmake", "PASS", f"{shown} ({cmake})")


def check_ninja(venv: Optional[Path]) -> Check:
    ninja = find_tool("ninja", venv)
    code, output = run_command([ninja, "--version"]) if ninja else (127, "")
    if code != 0:
        return Check("ninja", "FAIL", "ninja not found in the venv or on PATH",
                     f"{SETUP_HINT} (it installs the pinned Ninja into the venv)")
    return Check("ninja", "PASS", f"{first_line(output)} ({ninja})")


def check_venv(venv: Optional[Path], how: str, explicit: Optional[Path]) -> Check:
    if venv is None:
        where = f"no venv at {explicit}" if explicit else "no active venv and no .venv in the repository"
        return Check("venv", "FAIL", where, SETUP_HINT)
    return Check("venv", "PASS", f"{venv} ({how})")


def check_requirements(probe: Dict, pins: Dict[str, str], requirements: Optional[Path],
                       venv: Optional[Path]) -> Check:
    if requirements is None:
        return Check("requirements", "SKIP", "no requirements.txt beside this script's repository")
    wrong = []
    for package, pinned in sorted(pins.items()):
        installed = probe.get("installed", {}).get(package)
        if installed is None or base_version(installed) != pinned:
            wrong.append(f"{package} {installed or 'missing'} (pinned {pinned})")
    if wrong:
        return Check("requirements", "FAIL", "; ".join(wrong),
                     f"{SETUP_HINT}, or: {venv_python_command(venv)} -m pip install -r {shown_path(requirements)}")
    return Check("requirements", "PASS", f"all {len(pins)} pins of {requirements.name} installed")


def check_import(package: str, probe: Dict, pins: Dict[str, str]) -> Check:
    result = probe.get("imports", {}).get(package) or {"error": probe.get("error", "not probed")}
    fix = f"{SETUP_HINT} (installs {package}=={pins.get(package, DEFAULT_PINS[package])})"
    if "error" in result:
        return Check(package, "FAIL", result["error"], fix)
    version = result["version"]
    pinned = pins.get(package, DEFAULT_PINS[package])
    if base_version(version) != pinned:
        return Check(package, "FAIL", f"{version}, pinned {pinned}", fix)
    detail = version + (f" (commit {result['commit'][:12]})" if result.get("commit") else "")
    return Check(package, "PASS", detail)


def check_executorch_cmake(probe: Dict, venv: Optional[Path]) -> Check:
    package_dir = probe.get("imports", {}).get("executorch", {}).get("package_dir")
    if not package_dir:
        return Check("executorch_cmake", "FAIL", "executorch is not importable", SETUP_HINT)
    config = Path(package_dir) / "share" / "cmake" / "executorch-config.cmake"
    if not config.is_file():
        return Check("executorch_cmake", "FAIL", f"{config} is missing",
                     f"reinstall the pinned wheel: {venv_python_command(venv)} -m pip install --force-reinstall "
                     "--no-deps executorch==" + DEFAULT_PINS["executorch"])
    return Check("executorch_cmake", "PASS", str(config))


def find_runners(root: Path) -> List[Dict]:
    runners = []
    for runner_json in sorted((root / "runners").glob("*/runner.json")):
        try:
            facts = json.loads(runner_json.read_text())
        except (OSError, ValueError) as error:
            facts = {"error": f"unreadable: {error}"}
        if not isinstance(facts, dict):
            facts = {"error": f"{runner_json} is not a JSON object"}
        facts.setdefault("name", runner_json.parent.name)
        facts["binary_present"] = (runner_json.parent / str(facts.get("binary", "profiling_runner"))).is_file()
        facts["path"] = str(runner_json.parent)
        runners.append(facts)
    return runners


def shown_path(path: Path) -> str:
    """A path as a fix line shows it: relative to the working directory when inside it (no symlinks resolved,
    so a venv's bin/python stays the venv's)."""
    path = Path(os.path.abspath(path))
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def venv_python_command(venv: Optional[Path]) -> str:
    """The venv's Python as a fix line names it, so the line pastes outside an activated venv."""
    return shown_path(venv / "bin" / "python") if venv else shown_path(Path(sys.executable))


def check_runners(runners: List[Dict], venv: Optional[Path]) -> Check:
    """Once setup ran (the venv exists) a runner is required: a missing or broken one is a FAIL."""
    build = shown_path(Path(__file__).resolve().parent / "build_runners.py")
    fix = f"build one: {venv_python_command(venv)} {build} --flavor prebuilt"
    missing_status = "FAIL" if venv is not None else "WARN"
    if not runners:
        return Check("runners", missing_status, "no runners/*/runner.json yet", fix)
    described, broken = [], []
    for runner in runners:
        if "error" in runner or not runner["binary_present"]:
            broken.append(f"{runner['name']}: {runner.get('error', 'binary missing')}")
            continue
        described.append(f"{runner['name']} (flavor {runner.get('flavor', '?')}, "
                         f"sme2 {'on' if runner.get('sme2_kernels') else 'off'}, "
                         f"sme {'on' if runner.get('sme_kernels') else 'off'})")
    if broken:
        return Check("runners", "FAIL", "; ".join(broken + described), fix + " (add --force to rebuild)")
    return Check("runners", "PASS", "; ".join(described))


def check_sme2(check_id: str, facts: Dict, require: bool, where: str) -> Check:
    status = "FAIL" if require else "WARN"
    if facts.get("emulated"):
        return Check(check_id, status, "Python runs under Rosetta (x86_64 emulation), so SME2 is hidden",
                     "install an arm64 Python (e.g. from python.org) and recreate the venv")
    if facts.get("sme2"):
        return Check(check_id, "PASS", describe_sme(facts))
    fix = ("profile on an SME2 CPU: an Apple M4 (or newer) Mac, or an Armv9 Android phone with SME2 "
           "(--android)") if check_id == "sme2" else "attach an Armv9 phone whose /proc/cpuinfo lists sme2"
    return Check(check_id, status, f"{where} has no SME2 (SME {'yes' if facts['sme'] else 'no'}): "
                 f"{NO_SME2_CONSEQUENCE}", fix)


# ---------------------------------------------------------------- checks: Android

def find_ndk() -> Tuple[Optional[Path], str]:
    for variable in ("ANDROID_NDK", "ANDROID_NDK_HOME", "ANDROID_NDK_ROOT"):
        if os.environ.get(variable):
            return Path(os.environ[variable]), f"${variable}"
    return None, ""


def ndk_revision(ndk: Path) -> str:
    properties = ndk / "source.properties"
    if properties.is_file():
        match = re.search(r"Pkg\.Revision\s*=\s*(\S+)", properties.read_text())
        if match:
            return match.group(1)
    return "unknown revision"


def check_android(serial: Optional[str], require_sme2: bool) -> Tuple[List[Check], Optional[Dict]]:
    checks: List[Check] = []
    adb = shutil.which("adb")
    code, output = run_command([adb, "version"]) if adb else (127, "")
    if code != 0:
        checks.append(Check("adb", "FAIL", "adb not found on PATH",
                            "install Android platform-tools (macOS: brew install android-platform-tools) "
                            "and put adb on PATH"))
    else:
        checks.append(Check("adb", "PASS", f"{first_line(output)} ({adb})"))
    device_check, device = check_android_device(adb if code == 0 else None, serial)
    checks.append(device_check)
    checks.extend(check_ndk())
    if device is None:
        checks.append(Check("android_sme2", "SKIP", "no device to inspect"))
    else:
        checks.append(check_sme2("android_sme2", device, require_sme2,
                                 f"the device ({device['model']})"))
    return checks, device


def check_android_device(adb: Optional[str], serial: Optional[str]) -> Tuple[Check, Optional[Dict]]:
    if adb is None:
        return Check("android_device", "SKIP", "needs adb"), None
    code, output = run_command([adb, "devices"])
    devices = parse_adb_devices(output) if code == 0 else []
    ready = [found for found, state in devices if state == "device"]
    not_ready = [f"{found} ({state})" for found, state in devices if state != "device"]
    connect_fix = "connect the phone by USB, enable USB debugging and accept the computer's key on the phone"
    if serial is not None:
        if serial not in ready:
            return Check("android_device", "FAIL", f"device {serial} is not attached and ready "
                         f"(attached: {', '.join(ready + not_ready) or 'none'})", connect_fix), None
        chosen = serial
    elif len(ready) == 1:
        chosen = ready[0]
    elif not ready:
        detail = "no device attached" + (f"; not ready: {', '.join(not_ready)}" if not_ready else "")
        return Check("android_device", "FAIL", detail, connect_fix), None
    else:
        return Check("android_device", "FAIL", f"{len(ready)} devices attached: {', '.join(ready)}",
                     "pick one with --serial SERIAL"), None
    device = android_device_facts(adb, chosen)
    return Check("android_device", "PASS",
                 f"{chosen}: {device['model']}, SoC {device['soc']}, Android {device['android_version']}, "
                 f"{device['abi']}"), device


def android_device_facts(adb: str, serial: str) -> Dict:
    def shell(*command: str) -> str:
        code, output = run_command([adb, "-s", serial, "shell", *command])
        return output if code == 0 else ""

    cpuinfo = shell("cat", "/proc/cpuinfo")
    facts = {"serial": serial, "model": first_line(shell("getprop", "ro.product.model")) or "unknown",
             "soc": first_line(shell("getprop", "ro.soc.model")) or "unknown",
             "android_version": first_line(shell("getprop", "ro.build.version.release")) or "unknown",
             "abi": first_line(shell("getprop", "ro.product.cpu.abi")) or "unknown",
             "chip": parse_cpuinfo_chip(cpuinfo), "emulated": False, "sme_source": "device /proc/cpuinfo"}
    facts.update(parse_sme_features(cpuinfo))
    return facts


def check_ndk() -> List[Check]:
    ndk, source = find_ndk()
    ndk_fix = "install NDK r27 or newer and export ANDROID_NDK=/path/to/android-ndk-r27c"
    if ndk is None:
        return [Check("android_ndk", "FAIL", "ANDROID_NDK, ANDROID_NDK_HOME and ANDROID_NDK_ROOT "
                      "are unset", ndk_fix),
                Check("ndk_clang", "SKIP", "needs the NDK")]
    if not (ndk / "build" / "cmake" / "android.toolchain.cmake").is_file():
        return [Check("android_ndk", "FAIL", f"{source}={ndk} is not an NDK "
                      "(no build/cmake/android.toolchain.cmake)", ndk_fix),
                Check("ndk_clang", "SKIP", "needs the NDK")]
    ndk_check = Check("android_ndk", "PASS", f"{ndk} ({ndk_revision(ndk)}, from {source})")
    clangs = sorted(ndk.glob("toolchains/llvm/prebuilt/*/bin/clang"))
    code, output = run_command([str(clangs[0]), "--version"]) if clangs else (127, "")
    version = parse_clang_version(output) if code == 0 else None
    if version is None:
        return [ndk_check, Check("ndk_clang", "FAIL", f"no working clang under {ndk}",
                                 ndk_fix)]
    shown = ".".join(map(str, version))
    if version[0] < MIN_NDK_CLANG_MAJOR:
        return [ndk_check, Check("ndk_clang", "FAIL",
                                 f"clang {shown} silently drops the SME2 kernels", ndk_fix)]
    return [ndk_check, Check("ndk_clang", "PASS", f"clang {shown}")]


# ---------------------------------------------------------------- putting it together

def run_checks(args: argparse.Namespace) -> Dict:
    root = repo_root()
    pins, requirements = load_pins(root)
    explicit = Path(args.venv).expanduser() if args.venv else None
    venv, how = (None, "") if args.prerequisites else find_venv(explicit, root)
    probe = probe_venv(venv, pins) if venv else {}
    facts = host_facts()
    checks = [check_python(probe), check_git(), check_compiler()]
    runners: List[Dict] = []
    if not args.prerequisites:
        runners = find_runners(root)
        checks += [check_cmake(venv), check_ninja(venv), check_venv(venv, how, explicit)]
        if venv is None:
            checks += [Check(check_id, "SKIP", "needs the venv")
                       for check_id in ("requirements", "executorch", "torch", "executorch_cmake")]
        else:
            checks += [check_requirements(probe, pins, requirements, venv), check_import("executorch", probe, pins),
                       check_import("torch", probe, pins), check_executorch_cmake(probe, venv)]
        checks.append(check_runners(runners, venv))
    checks.append(check_sme2("sme2", facts, args.require_sme2 and not args.android, "this CPU"))
    device = None
    if args.android:
        android_checks, device = check_android(args.serial, args.require_sme2)
        checks += android_checks
    present = {check.id for check in checks}
    skipped_reason = "not asked for (--prerequisites)" if args.prerequisites else "not asked for (--android)"
    checks += [Check(check_id, "SKIP", skipped_reason) for check_id in CHECKS if check_id not in present]
    order = list(CHECKS)
    checks.sort(key=lambda check: order.index(check.id))
    executorch = probe.get("imports", {}).get("executorch", {})
    versions = {"python": probe.get("python", "%d.%d.%d" % sys.version_info[:3]),
                "executorch": executorch.get("version"), "executorch_commit": executorch.get("commit"),
                "torch": probe.get("imports", {}).get("torch", {}).get("version")}
    return {"schema_version": SCHEMA_VERSION, "ok": all(check.status != "FAIL" for check in checks),
            "checks": [asdict(check) for check in checks], "host": facts, "device": device,
            "runners": runners, "versions": versions}


def print_report(report: Dict) -> None:
    """A rich table when rich is importable, plain lines otherwise (see the module docstring)."""
    shown = [check for check in report["checks"] if check["status"] != "SKIP"]
    counts = {status: sum(check["status"] == status for check in report["checks"])
              for status in ("PASS", "WARN", "FAIL", "SKIP")}
    host = report["host"]
    host_line = (f"{host['os']} {host['os_version']} {host['machine']}, {host['chip']}, {host['cores']} cores, "
                 f"SME2 {'yes' if host['sme2'] else 'no'}, SME {'yes' if host['sme'] else 'no'}")
    summary = ", ".join(f"{count} {status}" for status, count in counts.items())
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        for check in shown:
            print(f"{check['status']:4}  {check['name']}: {check['detail']}"
                  + (f"\n      fix: {check['fix']}" if check["fix"] and check["status"] != "PASS" else ""))
        print(f"host: {host_line}")
        print(f"summary: {summary}")
        return
    colors = {"PASS": "green", "WARN": "yellow", "FAIL": "bold red"}
    table = Table(title="Setup checks")
    for column in ("Check", "Status", "Detail"):
        table.add_column(column, overflow="fold")
    for check in shown:
        table.add_row(check["name"], f"[{colors[check['status']]}]{check['status']}[/]", check["detail"])
    console = Console()
    console.print(table)
    for check in shown:
        if check["status"] != "PASS" and check["fix"]:
            console.print(f"[{colors[check['status']]}]{check['status']}[/] {check['name']}: "
                          f"[bold]fix:[/bold] {check['fix']}", highlight=False)
    console.print(f"[bold]Host:[/bold] {host_line}", highlight=False)
    if report["device"]:
        device = report["device"]
        console.print(f"[bold]Device:[/bold] {device['model']} ({device['soc']}), {device['chip']}, "
                      f"SME2 {'yes' if device['sme2'] else 'no'}", highlight=False)
    verdict = "[green]ready[/green]" if report["ok"] else "[bold red]not ready[/bold red]: fix the FAIL rows"
    console.print(f"{summary}: {verdict}", highlight=False)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Check this machine for the SME2 ExecuTorch profiling learning path: PASS/WARN/FAIL per check, "
                    "with the fix for each failure. Exit 0 when nothing FAILs.",
        epilog="example: .venv/bin/python scripts/validate_setup.py --android --require-sme2")
    parser.add_argument("--prerequisites", action="store_true",
                        help="check only what must exist before setup (Python, git, C/C++ compiler); "
                             "works with the system Python")
    parser.add_argument("--json", action="store_true", help="print a JSON document (checks, host facts) instead")
    parser.add_argument("--require-sme2", action="store_true",
                        help="FAIL instead of WARN when the CPU (or with --android, the device) lacks SME2")
    parser.add_argument("--android", action="store_true", help="also check adb, the attached device and the NDK")
    parser.add_argument("--serial", help="with --android: the adb serial of the device to use")
    parser.add_argument("--venv", help="the venv to inspect (default: the active one, else .venv in the repository)")
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    try:
        report = run_checks(args)
    except KeyboardInterrupt:
        print("interrupted: the setup check stopped (it writes nothing); run the same command again", file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_report(report)
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
