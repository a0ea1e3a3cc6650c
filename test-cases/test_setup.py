"""Setup and validation: scripts/setup_repo.sh, scripts/validate_setup.py, README.md and .ci/run.

The SME2, clang and cpuinfo parsers are fed the text real machines print. Everything else runs
the real scripts as subprocesses, the way a learner or CI runs them.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from conftest import load_script

REPO_ROOT = Path(__file__).resolve().parent.parent
SETUP = REPO_ROOT / "scripts" / "setup_repo.sh"
VALIDATE = REPO_ROOT / "scripts" / "validate_setup.py"
EVERY_CHECK_ID = ["python", "git", "compiler", "cmake", "ninja", "venv", "requirements", "executorch", "torch",
                  "executorch_cmake", "runners", "sme2", "adb", "android_device", "android_ndk", "ndk_clang",
                  "android_sme2"]

# ---------------------------------------------------------------- texts printed by real machines

# `sysctl hw.optional.arm` on a MacBook Pro with an Apple M4 (macOS 15).
SYSCTL_APPLE_M4 = """\
hw.optional.arm.FEAT_CRC32: 1
hw.optional.arm.FEAT_FlagM: 1
hw.optional.arm.FEAT_FlagM2: 1
hw.optional.arm.FEAT_FHM: 1
hw.optional.arm.FEAT_DotProd: 1
hw.optional.arm.FEAT_SHA3: 1
hw.optional.arm.FEAT_RDM: 1
hw.optional.arm.FEAT_LSE: 1
hw.optional.arm.FEAT_SHA256: 1
hw.optional.arm.FEAT_SHA512: 1
hw.optional.arm.FEAT_SHA1: 1
hw.optional.arm.FEAT_AES: 1
hw.optional.arm.FEAT_PMULL: 1
hw.optional.arm.FEAT_SPECRES: 0
hw.optional.arm.FEAT_SPECRES2: 0
hw.optional.arm.FEAT_SB: 1
hw.optional.arm.FEAT_FRINTTS: 1
hw.optional.arm.FEAT_PACIMP: 1
hw.optional.arm.FEAT_LRCPC: 1
hw.optional.arm.FEAT_LRCPC2: 1
hw.optional.arm.FEAT_FCMA: 1
hw.optional.arm.FEAT_JSCVT: 1
hw.optional.arm.FEAT_PAuth: 1
hw.optional.arm.FEAT_PAuth2: 1
hw.optional.arm.FEAT_FPAC: 1
hw.optional.arm.FEAT_FPACCOMBINE: 1
hw.optional.arm.FEAT_DPB: 1
hw.optional.arm.FEAT_DPB2: 1
hw.optional.arm.FEAT_BF16: 1
hw.optional.arm.FEAT_EBF16: 0
hw.optional.arm.FEAT_I8MM: 1
hw.optional.arm.FEAT_WFxT: 1
hw.optional.arm.FEAT_RPRES: 1
hw.optional.arm.FEAT_CSSC: 0
hw.optional.arm.FEAT_HBC: 0
hw.optional.arm.FEAT_ECV: 1
hw.optional.arm.FEAT_AFP: 1
hw.optional.arm.FEAT_LSE2: 1
hw.optional.arm.FEAT_CSV2: 1
hw.optional.arm.FEAT_CSV3: 1
hw.optional.arm.FEAT_DIT: 1
hw.optional.arm.FEAT_FP16: 1
hw.optional.arm.FEAT_SSBS: 0
hw.optional.arm.FEAT_BTI: 1
hw.optional.arm.FEAT_SME: 1
hw.optional.arm.FEAT_SME2: 1
hw.optional.arm.SME_F32F32: 1
hw.optional.arm.SME_BI32I32: 1
hw.optional.arm.SME_B16F32: 1
hw.optional.arm.SME_F16F32: 1
hw.optional.arm.SME_I8I32: 1
hw.optional.arm.SME_I16I32: 1
hw.optional.arm.FEAT_SME_F64F64: 1
hw.optional.arm.FEAT_SME_I16I64: 1
hw.optional.arm.FP_SyncExceptions: 1
hw.optional.arm.sme_max_svl_b: 64
"""

# `sysctl hw.optional.arm` on a MacBook Air with an Apple M1 (macOS 13): no SME keys at all.
SYSCTL_APPLE_M1 = """\
hw.optional.arm.FEAT_FlagM: 1
hw.optional.arm.FEAT_FlagM2: 1
hw.optional.arm.FEAT_FHM: 1
hw.optional.arm.FEAT_DotProd: 1
hw.optional.arm.FEAT_SHA3: 1
hw.optional.arm.FEAT_RDM: 1
hw.optional.arm.FEAT_LSE: 1
hw.optional.arm.FEAT_SHA256: 1
hw.optional.arm.FEAT_SHA512: 1
hw.optional.arm.FEAT_SHA1: 1
hw.optional.arm.FEAT_AES: 1
hw.optional.arm.FEAT_PMULL: 1
hw.optional.arm.FEAT_SPECRES: 0
hw.optional.arm.FEAT_SB: 1
hw.optional.arm.FEAT_FRINTTS: 1
hw.optional.arm.FEAT_LRCPC: 1
hw.optional.arm.FEAT_LRCPC2: 1
hw.optional.arm.FEAT_FCMA: 1
hw.optional.arm.FEAT_JSCVT: 1
hw.optional.arm.FEAT_PAuth: 1
hw.optional.arm.FEAT_PAuth2: 0
hw.optional.arm.FEAT_FPAC: 0
hw.optional.arm.FEAT_DPB: 1
hw.optional.arm.FEAT_DPB2: 1
hw.optional.arm.FEAT_BF16: 0
hw.optional.arm.FEAT_I8MM: 0
hw.optional.arm.FEAT_ECV: 1
hw.optional.arm.FEAT_LSE2: 1
hw.optional.arm.FEAT_CSV2: 1
hw.optional.arm.FEAT_CSV3: 1
hw.optional.arm.FEAT_DIT: 1
hw.optional.arm.FEAT_FP16: 1
hw.optional.arm.FEAT_SSBS: 1
hw.optional.arm.FEAT_BTI: 0
hw.optional.arm.FP_SyncExceptions: 1
"""

# The same command on an Apple M3 (macOS 15): the SME keys exist and say 0.
SYSCTL_APPLE_M3 = "".join(
    line.split(":")[0] + ": 0\n" if "SME" in line or "sme" in line else line + "\n"
    for line in SYSCTL_APPLE_M4.splitlines() if not line.startswith("hw.optional.arm.SME_"))


def _cpuinfo_block(processor: int, features: str, implementer: str, variant: str, part: str, revision: int) -> str:
    return (f"processor\t: {processor}\nBogoMIPS\t: 26.00\nFeatures\t: {features}\n"
            f"CPU implementer\t: {implementer}\nCPU architecture: 8\nCPU variant\t: {variant}\n"
            f"CPU part\t: {part}\nCPU revision\t: {revision}\n\n")


ARMV9_SME2_FEATURES = (
    "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm jscvt fcma lrcpc dcpop "
    "sha3 asimddp sha512 sve asimdfhm dit uscat ilrcpc flagm sb paca pacg dcpodp sve2 sveaes svepmull "
    "svebitperm flagm2 frint svei8mm svebf16 i8mm bf16 dgh bti ecv afp mte mte3 sme smei16i64 smef64f64 "
    "smei8i32 smef16f32 smeb16f32 smef32f32 smefa64 wfxt ebf16 sveebf16 cssc sme2 smei16i32 smebi32i32 "
    "smef16f16 mops hbc")
# /proc/cpuinfo of an Armv9.3 phone with SME2: MediaTek Dimensity 9500, 1x C1-Ultra + 3x C1-Premium + 4x C1-Pro.
CPUINFO_DIMENSITY_9500 = "".join(
    [_cpuinfo_block(n, ARMV9_SME2_FEATURES, "0x41", "0x0", "0xd8b", 0) for n in range(4)]
    + [_cpuinfo_block(n, ARMV9_SME2_FEATURES, "0x41", "0x0", "0xd90", 0) for n in range(4, 7)]
    + [_cpuinfo_block(7, ARMV9_SME2_FEATURES, "0x41", "0x0", "0xd8c", 0)])

ARMV9_NO_SME_FEATURES = (
    "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm jscvt fcma lrcpc dcpop "
    "sha3 sm3 sm4 asimddp sha512 sve asimdfhm dit uscat ilrcpc flagm ssbs sb paca pacg dcpodp sve2 sveaes "
    "svepmull svebitperm svesha3 svesm4 flagm2 frint svei8mm svebf16 i8mm bf16 dgh bti ecv afp wfxt")
# An Armv9.2 phone without SME (MediaTek Dimensity 9400, 1x Cortex-X925 + 3x Cortex-X4 + 4x Cortex-A720):
# SVE2 is there, SME is not.
CPUINFO_DIMENSITY_9400 = "".join(
    [_cpuinfo_block(n, ARMV9_NO_SME_FEATURES, "0x41", "0x0", "0xd81", 1) for n in range(4)]
    + [_cpuinfo_block(n, ARMV9_NO_SME_FEATURES, "0x41", "0x0", "0xd82", 1) for n in range(4, 7)]
    + [_cpuinfo_block(7, ARMV9_NO_SME_FEATURES, "0x41", "0x0", "0xd85", 1)])

# An Armv8.2 phone on an older kernel (Qualcomm Snapdragon 865): Kryo cores and a Hardware line.
ARMV8_FEATURES = "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp"
CPUINFO_SNAPDRAGON_865 = "".join(
    [_cpuinfo_block(n, ARMV8_FEATURES, "0x51", "0xd", "0x805", 14) for n in range(4)]
    + [_cpuinfo_block(n, ARMV8_FEATURES, "0x41", "0x1", "0xd0d", 0) for n in range(4, 8)]) \
    + "Hardware\t: Qualcomm Technologies, Inc SM8250\n"

# An AMD EPYC server: its x86 `flags` carry `sme`, which is AMD Secure Memory Encryption, not Arm SME.
CPUINFO_AMD_EPYC = """\
processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 1
model name\t: AMD EPYC 7763 64-Core Processor
stepping\t: 1
cpu MHz\t\t: 2450.000
cache size\t: 512 KB
physical id\t: 0
siblings\t: 128
core id\t\t: 0
cpu cores\t: 64
fpu\t\t: yes
flags\t\t: fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse sse2 \
ht syscall nx mmxext fxsr_opt pdpe1gb rdtscp lm constant_tsc rep_good nopl nonstop_tsc cpuid extd_apicid \
aperfmperf rapl pni pclmulqdq monitor ssse3 fma cx16 pcid sse4_1 sse4_2 x2apic movbe popcnt aes xsave avx f16c \
rdrand lahf_lm cmp_legacy svm extapic cr8_legacy abm sse4a misalignsse 3dnowprefetch osvw ibs skinit wdt tce \
topoext perfctr_core perfctr_nb bpext perfctr_llc mwaitx cpb cat_l3 cdp_l3 invpcid_single hw_pstate ssbd mba \
sme ibrs ibpb stibp vmmcall fsgsbase bmi1 avx2 smep bmi2 erms invpcid cqm rdt_a rdseed adx smap clflushopt clwb \
sha_ni xsaveopt xsavec xgetbv1 xsaves cqm_llc cqm_occup_llc cqm_mbm_total cqm_mbm_local clzero irperf xsaveerptr \
rdpru wbnoinvd amd_ppin arat npt lbrv svm_lock nrip_save tsc_scale vmcb_clean flushbyasid decodeassists \
pausefilter pfthreshold v_vmsave_vmload vgif v_spec_ctrl umip pku ospke vaes vpclmulqdq rdpid overflow_recov \
succor smca sev sev_es
bogomips\t: 4900.00
"""

# `clang --version` of the NDK's clang: r26d ships clang 17 (drops SME2), r27c ships clang 18.
NDK_R26_CLANG = """\
Android (11349228, +pgo, +bolt, +lto, -mlgo, based on r487747e) clang version 17.0.2 \
(https://android.googlesource.com/toolchain/llvm-project d9f89f4d16663d5012e5c09495f3b30ece3d2362)
Target: x86_64-unknown-linux-gnu
Thread model: posix
InstalledDir: /opt/android-ndk-r26d/toolchains/llvm/prebuilt/linux-x86_64/bin
"""
NDK_R27_CLANG = """\
Android (12470979, +pgo, +bolt, +lto, +mlgo, based on r522817c) clang version 18.0.3 \
(https://android.googlesource.com/toolchain/llvm-project d8003a456d14a3deb8054cdaa529ffbf02d9b262)
Target: x86_64-unknown-linux-gnu
Thread model: posix
InstalledDir: /opt/android-ndk-r27c/toolchains/llvm/prebuilt/linux-x86_64/bin
"""


# ---------------------------------------------------------------- helpers

@pytest.fixture(scope="module")
def validate_setup() -> ModuleType:
    """scripts/validate_setup.py as a module, for its pure parsers."""
    return load_script("validate_setup")


def run(command: list[str], env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([str(part) for part in command], capture_output=True, text=True, timeout=timeout,
                          env=env, stdin=subprocess.DEVNULL, cwd=REPO_ROOT)


def validate_json(venv_python: str, *args: str, env: dict | None = None) -> tuple[int, dict]:
    result = run([venv_python, VALIDATE, "--json", *args], env=env)
    return result.returncode, json.loads(result.stdout)


def checks_by_id(report: dict) -> dict:
    return {check["id"]: check for check in report["checks"]}


def assert_one_clear_line(result: subprocess.CompletedProcess, *words: str) -> str:
    """Non-zero exit, exactly one line on stderr naming the problem and a fix, no traceback."""
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert "fix:" in lines[0]
    for word in words:
        assert word in lines[0]
    return lines[0]


def write_executable(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def tree_state(*roots: Path) -> dict:
    """Size and mtime of every file and directory under the roots."""
    state = {}
    for root in roots:
        for directory, subdirectories, files in os.walk(root):
            for name in [*subdirectories, *files, "."]:
                path = os.path.join(directory, name)
                info = os.lstat(path)
                state[os.path.normpath(path)] = (info.st_size, info.st_mtime_ns)
    return state


def offline_git_env(tmp_path: Path) -> dict:
    """An environment in which git cannot reach GitHub on any machine: every request goes to a closed local port."""
    env = {key: value for key, value in os.environ.items() if key.lower() != "no_proxy"}
    closed_port_proxy = "http://127.0.0.1:9"
    env.update(HTTPS_PROXY=closed_port_proxy, https_proxy=closed_port_proxy, HTTP_PROXY=closed_port_proxy,
               http_proxy=closed_port_proxy, ALL_PROXY=closed_port_proxy, GIT_TERMINAL_PROMPT="0",
               GIT_CONFIG_GLOBAL=str(tmp_path / "empty.gitconfig"), GIT_CONFIG_NOSYSTEM="1")
    return env


# ---------------------------------------------------------------- pure parsers on real texts

@pytest.mark.parametrize("text, sme, sme2", [
    (SYSCTL_APPLE_M4, True, True),
    (SYSCTL_APPLE_M1, False, False),
    (SYSCTL_APPLE_M3, False, False),
    (CPUINFO_DIMENSITY_9500, True, True),
    (CPUINFO_DIMENSITY_9400, False, False),
    (CPUINFO_SNAPDRAGON_865, False, False),
    (CPUINFO_AMD_EPYC, False, False),
    ("", False, False),
], ids=["apple-m4", "apple-m1", "apple-m3", "dimensity-9500", "dimensity-9400", "snapdragon-865", "amd-epyc",
        "empty"])
def test_sme_features_from_real_listings(validate_setup, text, sme, sme2):
    assert validate_setup.parse_sme_features(text) == {"sme": sme, "sme2": sme2}


def test_sme_sub_features_are_not_sme_itself(validate_setup):
    """FEAT_SME_F64F64 / FEAT_SME2p1 and the hwcaps smef64f64 / sme2p1 are other keys than SME and SME2."""
    assert "hw.optional.arm.FEAT_SME: 0" in SYSCTL_APPLE_M3 and "FEAT_SME_F64F64: 0" in SYSCTL_APPLE_M3
    no_sme = {"sme": False, "sme2": False}
    assert validate_setup.parse_sme_features("hw.optional.arm.FEAT_SME_F64F64: 1\nhw.optional.arm.FEAT_SME2p1: 1\n") \
        == no_sme
    assert validate_setup.parse_sme_features("Features\t: fp asimd smef64f64 smei16i64 sme2p1\n") == no_sme


@pytest.mark.parametrize("text, chip", [
    (CPUINFO_DIMENSITY_9500, "4x C1-Pro + 3x C1-Premium + 1x C1-Ultra"),
    (CPUINFO_DIMENSITY_9400, "4x Cortex-A720 + 3x Cortex-X4 + 1x Cortex-X925"),
    (CPUINFO_SNAPDRAGON_865, "Qualcomm Technologies, Inc SM8250"),
    (CPUINFO_AMD_EPYC, "AMD EPYC 7763 64-Core Processor"),
    ("", "unknown"),
])
def test_chip_name_from_cpuinfo(validate_setup, text, chip):
    assert validate_setup.parse_cpuinfo_chip(text) == chip


def test_clang_version_of_ndk_r26_and_r27(validate_setup):
    assert validate_setup.parse_clang_version(NDK_R26_CLANG) == (17, 0, 2)
    assert validate_setup.parse_clang_version(NDK_R27_CLANG) == (18, 0, 3)
    assert validate_setup.parse_clang_version("Apple clang version 16.0.0 (clang-1600.0.26.6)") == (16, 0, 0)
    assert validate_setup.parse_clang_version("gcc (Debian 12.2.0-14) 12.2.0") is None


def test_adb_devices_listing(validate_setup):
    listing = ("* daemon not running; starting now at tcp:5037\n* daemon started successfully\n"
               "List of devices attached\n10AD5F1E2B000123\tdevice\nR5CT30ABCDE\tunauthorized\n\n")
    assert validate_setup.parse_adb_devices(listing) == [("10AD5F1E2B000123", "device"),
                                                         ("R5CT30ABCDE", "unauthorized")]
    assert validate_setup.parse_adb_devices("List of devices attached\n\n") == []


def test_embedded_default_pins_match_requirements(validate_setup):
    """A downloaded-alone validate_setup.py checks the same torch/executorch pins as requirements.txt."""
    pins = validate_setup.parse_requirement_pins((REPO_ROOT / "requirements.txt").read_text())
    for package, version in validate_setup.DEFAULT_PINS.items():
        assert pins[package] == version


# ---------------------------------------------------------------- validate_setup.py on this machine

def test_json_has_every_check_and_host_facts(venv_python):
    code, report = validate_json(venv_python)
    assert [check["id"] for check in report["checks"]] == EVERY_CHECK_ID
    assert all(check["status"] in {"PASS", "WARN", "FAIL", "SKIP"} for check in report["checks"])
    assert all(check["fix"] for check in report["checks"] if check["status"] in {"WARN", "FAIL"})
    by_id = checks_by_id(report)
    # The README's test command ran setup first, so the tree is ready.
    for check_id in ("python", "git", "compiler", "cmake", "ninja", "venv", "requirements", "executorch",
                     "torch", "executorch_cmake"):
        assert by_id[check_id]["status"] == "PASS", by_id[check_id]
    assert code == 0 and report["ok"] is True
    host = report["host"]
    assert set(host) >= {"os", "os_version", "machine", "chip", "cores", "sme", "sme2", "emulated"}
    assert host["cores"] == os.cpu_count()
    assert by_id["sme2"]["status"] == ("PASS" if host["sme2"] else "WARN")
    assert report["versions"]["executorch"].split("+")[0] == "1.5.1"
    assert len(report["versions"]["executorch_commit"]) == 40
    for runner in report["runners"]:
        assert runner["name"] in by_id["runners"]["detail"]


def test_require_sme2_fails_without_sme2(venv_python):
    code, report = validate_json(venv_python, "--require-sme2")
    sme2 = checks_by_id(report)["sme2"]
    if report["host"]["sme2"]:
        assert sme2["status"] == "PASS"
    else:
        assert code == 1 and sme2["status"] == "FAIL"
        assert "no SME2 effect" in sme2["detail"]


def test_missing_compiler_fails_with_fix(venv_python, tmp_path):
    empty_dir = tmp_path / "empty"
    empty_dir.mkdir()
    env = dict(os.environ, PATH=str(empty_dir), CC=str(tmp_path / "nowhere/cc"), CXX=str(tmp_path / "nowhere/c++"))
    code, report = validate_json(venv_python, "--prerequisites", env=env)
    compiler = checks_by_id(report)["compiler"]
    assert code == 1 and report["ok"] is False
    assert compiler["status"] == "FAIL" and "does not run" in compiler["detail"]
    assert "build-essential" in compiler["fix"] or "xcode-select" in compiler["fix"]
    assert checks_by_id(report)["git"]["status"] == "FAIL"
    env.pop("CC"), env.pop("CXX")
    code, report = validate_json(venv_python, "--prerequisites", env=env)
    assert checks_by_id(report)["compiler"]["status"] == "FAIL" and code == 1


def test_plain_text_report_without_rich(tmp_path):
    """--prerequisites runs on a system Python that lacks rich: plain lines, same verdict."""
    result = run([sys.executable, "-S", VALIDATE, "--prerequisites"])  # -S: no site-packages, so no rich
    assert "Traceback" not in result.stderr
    assert "PASS  git:" in result.stdout
    assert "summary:" in result.stdout
    assert result.returncode == 0


def fake_ndk(root: Path, clang_version_text: str) -> Path:
    (root / "build/cmake").mkdir(parents=True)
    (root / "build/cmake/android.toolchain.cmake").write_text("# toolchain\n")
    (root / "source.properties").write_text("Pkg.Desc = Android NDK\nPkg.Revision = 27.2.12479018\n")
    write_executable(root / "toolchains/llvm/prebuilt/linux-x86_64/bin/clang",
                     f"#!/bin/sh\ncat <<'EOF'\n{clang_version_text}EOF\n")
    return root


def fake_adb(bin_dir: Path, devices: str, cpuinfo: str) -> Path:
    """Stands in for adb and a phone: answers the few commands validate_setup.py sends."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    (bin_dir / "devices.txt").write_text(devices)
    (bin_dir / "cpuinfo.txt").write_text(cpuinfo)
    return write_executable(bin_dir / "adb", f"""#!/bin/sh
[ "$1" = "-s" ] && shift 2
case "$1 $2 $3" in
  "version  ") echo "Android Debug Bridge version 1.0.41" ;;
  "devices  ") cat "{bin_dir}/devices.txt" ;;
  "shell cat /proc/cpuinfo") cat "{bin_dir}/cpuinfo.txt" ;;
  "shell getprop ro.product.model") echo "vivo X300 Pro" ;;
  "shell getprop ro.soc.model") echo "MT6993" ;;
  "shell getprop ro.build.version.release") echo "16" ;;
  "shell getprop ro.product.cpu.abi") echo "arm64-v8a" ;;
  *) exit 1 ;;
esac
""")


def android_env(tmp_path: Path, adb_dir: Path | None, ndk: Path | None) -> dict:
    env = {key: value for key, value in os.environ.items()
           if key not in ("ANDROID_NDK", "ANDROID_NDK_HOME", "ANDROID_NDK_ROOT")}
    path = [str(adb_dir)] if adb_dir else []
    env["PATH"] = os.pathsep.join(path + [p for p in env["PATH"].split(os.pathsep) if not Path(p, "adb").exists()])
    if ndk:
        env["ANDROID_NDK"] = str(ndk)
    return env


def test_android_without_adb_or_ndk(venv_python, tmp_path):
    code, report = validate_json(venv_python, "--android", env=android_env(tmp_path, None, None))
    by_id = checks_by_id(report)
    assert code == 1
    assert by_id["adb"]["status"] == "FAIL" and "platform-tools" in by_id["adb"]["fix"]
    assert by_id["android_ndk"]["status"] == "FAIL" and "r27" in by_id["android_ndk"]["fix"]
    assert by_id["ndk_clang"]["status"] == "SKIP"


def test_android_ndk_r26_clang_is_refused_and_r27_accepted(venv_python, tmp_path):
    old = fake_ndk(tmp_path / "android-ndk-r26d", NDK_R26_CLANG)
    new = fake_ndk(tmp_path / "android-ndk-r27c", NDK_R27_CLANG)
    _, report = validate_json(venv_python, "--android", env=android_env(tmp_path, None, old))
    assert checks_by_id(report)["ndk_clang"]["status"] == "FAIL"
    assert "17.0.2" in checks_by_id(report)["ndk_clang"]["detail"]
    _, report = validate_json(venv_python, "--android", env=android_env(tmp_path, None, new))
    assert checks_by_id(report)["android_ndk"]["status"] == "PASS"
    assert checks_by_id(report)["ndk_clang"]["status"] == "PASS"


def test_android_device_selection_and_device_sme2(venv_python, tmp_path):
    ndk = fake_ndk(tmp_path / "ndk", NDK_R27_CLANG)
    two_phones = "List of devices attached\nAAA111\tdevice\nBBB222\tdevice\n\n"
    adb_dir = tmp_path / "adb"
    fake_adb(adb_dir, two_phones, CPUINFO_DIMENSITY_9500)
    env = android_env(tmp_path, adb_dir, ndk)
    code, report = validate_json(venv_python, "--android", env=env)
    device = checks_by_id(report)["android_device"]
    assert code == 1 and device["status"] == "FAIL" and "--serial" in device["fix"]

    code, report = validate_json(venv_python, "--android", "--serial", "BBB222", "--require-sme2", env=env)
    by_id = checks_by_id(report)
    assert by_id["android_device"]["status"] == "PASS" and "vivo X300 Pro" in by_id["android_device"]["detail"]
    assert by_id["android_sme2"]["status"] == "PASS"
    assert by_id["sme2"]["status"] in {"PASS", "WARN"}  # the device, not the host, must have SME2 here
    assert report["device"]["sme2"] is True and report["device"]["chip"].endswith("1x C1-Ultra")
    assert code == 0

    fake_adb(adb_dir, "List of devices attached\nAAA111\tdevice\n\n", CPUINFO_DIMENSITY_9400)
    code, report = validate_json(venv_python, "--android", "--require-sme2", env=env)
    assert code == 1 and checks_by_id(report)["android_sme2"]["status"] == "FAIL"


# ---------------------------------------------------------------- setup_repo.sh

def test_setup_is_idempotent(venv_python):
    """A second run on a ready tree installs nothing and changes no file of the venv or the runners."""
    venv = Path(venv_python).parent.parent
    first = run(["bash", SETUP, "--venv", venv])
    assert first.returncode == 0, first.stdout + first.stderr
    watched = [venv] + [path for path in [REPO_ROOT / "runners"] if path.exists()]
    before, freeze_before = tree_state(*watched), run([venv_python, "-m", "pip", "freeze"]).stdout

    second = run(["bash", SETUP, "--venv", venv])

    assert second.returncode == 0, second.stdout + second.stderr
    assert "nothing to install" in second.stdout
    assert "installing" not in second.stdout and "creating venv" not in second.stdout
    assert tree_state(*watched) == before
    assert run([venv_python, "-m", "pip", "freeze"]).stdout == freeze_before
    assert "ready" in second.stdout  # validate_setup.py ran and found nothing failing


def old_pythons() -> list[Path]:
    return sorted(Path.home().glob(".pyenv/versions/3.[6-9].*/bin/python3")) + \
        [Path(p) for p in ("/usr/bin/python3.8", "/usr/bin/python3.9") if Path(p).exists()]


@pytest.mark.skipif(not old_pythons(), reason="no Python older than 3.10 on this machine")
def test_setup_refuses_old_python(tmp_path):
    old_python = old_pythons()[-1]
    result = run(["bash", SETUP, "--venv", tmp_path / "venv"], env=dict(os.environ, PYTHON=str(old_python)))
    line = assert_one_clear_line(result, "3.10", "too old")
    assert "PYTHON=" in line
    assert not (tmp_path / "venv").exists()


def test_setup_refuses_a_python_that_does_not_run(tmp_path):
    result = run(["bash", SETUP, "--venv", tmp_path / "venv"],
                 env=dict(os.environ, PYTHON=str(tmp_path / "no-such-python3")))
    assert_one_clear_line(result, "cannot run", "3.10")
    assert not (tmp_path / "venv").exists()


def test_setup_stops_on_missing_compiler_before_installing(tmp_path):
    result = run(["bash", SETUP, "--venv", tmp_path / "venv"], env=dict(os.environ, CC=str(tmp_path / "nowhere/cc")))
    assert_one_clear_line(result, "C/C++ compiler", "CC=")
    assert not (tmp_path / "venv").exists()


def test_with_source_without_network_fails_in_one_line(venv_python, tmp_path):
    venv = Path(venv_python).parent.parent
    checkout = tmp_path / "executorch"
    result = run(["bash", SETUP, "--venv", venv, "--with-source", "--executorch-dir", checkout],
                 env=offline_git_env(tmp_path), timeout=180)
    assert_one_clear_line(result, "cannot reach", "github.com/pytorch/executorch")
    assert not checkout.exists()


def test_with_source_never_touches_a_checkout_at_another_commit(venv_python, tmp_path):
    venv = Path(venv_python).parent.parent
    checkout = tmp_path / "executorch"
    checkout.mkdir()
    env = offline_git_env(tmp_path)
    git = ["git", "-C", checkout, "-c", "user.name=Learner", "-c", "user.email=learner@example.com"]
    for command in (["init", "-q"], ["commit", "-q", "--allow-empty", "-m", "my work"]):
        assert run(git + command, env=env).returncode == 0
    head = run(git + ["rev-parse", "HEAD"], env=env).stdout.strip()

    result = run(["bash", SETUP, "--venv", venv, "--with-source", "--executorch-dir", checkout], env=env)

    wheel_commit = json.loads(run([venv_python, VALIDATE, "--json"]).stdout)["versions"]["executorch_commit"]
    assert_one_clear_line(result, head, wheel_commit, "--executorch-dir")
    assert run(git + ["rev-parse", "HEAD"], env=env).stdout.strip() == head


def test_setup_help_and_bad_option():
    result = run(["bash", SETUP, "--help"])
    assert result.returncode == 0
    for option in ("--venv", "--with-source", "--executorch-dir", "PYTHON"):
        assert option in result.stdout
    assert_one_clear_line(run(["bash", SETUP, "--frobnicate"]), "--frobnicate")


# ---------------------------------------------------------------- README.md and .ci/run

def readme_bash_blocks() -> list[str]:
    blocks, current = [], None
    for line in (REPO_ROOT / "README.md").read_text().splitlines():
        if current is None and line == "```bash":
            current = []
        elif current is not None and line == "```":
            blocks.append("\n".join(current))
            current = None
        elif current is not None:
            current.append(line)
    return blocks


def test_readme_has_exactly_two_commands():
    setup_and_run, setup_and_test = readme_bash_blocks()
    assert setup_and_run == "./scripts/setup_repo.sh && .venv/bin/python scripts/run_quick_test.py"
    assert setup_and_test.startswith("./scripts/setup_repo.sh && ")
    assert setup_and_test.endswith(" && .venv/bin/python -m pytest test-cases")


def test_ci_runs_the_readme_test_command_as_written(tmp_path):
    """.ci/run takes its command from README.md, not from a private copy."""
    shutil.copytree(REPO_ROOT / ".ci", tmp_path / ".ci")
    readme = (REPO_ROOT / "README.md").read_text()
    test_command = readme_bash_blocks()[1]
    (tmp_path / "README.md").write_text(readme.replace(test_command, "echo ran-from-readme && pwd"))
    result = run(["bash", tmp_path / ".ci/run"])
    assert result.returncode == 0, result.stderr
    assert "ran-from-readme" in result.stdout
    assert str(tmp_path) in result.stdout  # from the repository root

    (tmp_path / "README.md").write_text(readme.replace(test_command, "false"))
    assert run(["bash", tmp_path / ".ci/run"]).returncode != 0

    (tmp_path / "README.md").write_text(readme.replace("## Run the tests", "## Tests"))
    assert_one_clear_line(run(["bash", tmp_path / ".ci/run"]), "Run the tests")
