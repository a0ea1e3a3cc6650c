"""The source flavor of build_runners.py, from a pruned ExecuTorch + KleidiAI source tree (no network).

The tree is the tarball `executorch-cff6f4dd32-xnnpack-kleidiai-src.tar.xz` (third-party code, never
in this repository): $SME2_KIT_SOURCE_TARBALL, else ../shared/data/ beside the repository, else
/work/shared/data/. It is unpacked once into build/source-tarball/<hash>/.

Default suite: the CMake configure of the SME2 ON/OFF kernel-log variants for linux-aarch64 and of
this host (about a minute). `slow`: the full cross build of sme2_on_kernels and sme2_off_kernels
(about 1,650 ninja steps each, 6-18 minutes on 2 cores), run under qemu-aarch64 11 with SME2, with
SME2 hidden, with SME hidden and without SME.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
BUILD_RUNNERS = REPO_ROOT / "scripts/build_runners.py"
TARBALL_NAME = "executorch-cff6f4dd32-xnnpack-kleidiai-src.tar.xz"
TARBALL_ENV = "SME2_KIT_SOURCE_TARBALL"
SOURCE_COMMIT = "cff6f4dd32"  # the tarball's ExecuTorch commit (its tree has no .git)
SOURCE_VERSION = "1.5.0"  # its version.txt
# KleidiAI file Debian bookworm's aarch64 GCC 12 cannot vectorize (internal compiler error).
GCC_ICE_SOURCE = "kai/ukernels/matmul/pack/kai_lhs_quant_pack_qai8dxp_bf16_neon.c"


def find_tarball() -> Path | None:
    if os.environ.get(TARBALL_ENV):
        return Path(os.environ[TARBALL_ENV])
    candidates = [REPO_ROOT.parent / "shared/data" / TARBALL_NAME, Path("/work/shared/data") / TARBALL_NAME]
    return next((path for path in candidates if path.is_file()), None)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@pytest.fixture(scope="session")
def source_tree() -> Path:
    """The unpacked tarball (executorch/ and kleidiai/ side by side), cached by the tarball's hash."""
    tarball = find_tarball()
    if tarball is None or not tarball.is_file():
        message = (f"source tarball {TARBALL_NAME} not found ({tarball or 'not in ../shared/data/'}); "
                   f"fix: set {TARBALL_ENV}=/path/to/{TARBALL_NAME}")
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    cache_root = REPO_ROOT / "build" / "source-tarball"
    cache_root.mkdir(parents=True, exist_ok=True)
    key = file_sha256(tarball)[:16]
    tree = cache_root / key
    # Concurrent sessions unpack once: the first holds the lock, the others then find the marker.
    with (cache_root / f"{key}.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (tree / ".unpacked").exists():
            partial = cache_root / f"{key}.partial"
            shutil.rmtree(partial, ignore_errors=True)
            partial.mkdir()
            subprocess.run(["tar", "-xJf", str(tarball), "-C", str(partial)], check=True)
            shutil.rmtree(tree, ignore_errors=True)
            partial.rename(tree)
            (tree / ".unpacked").write_text(f"{tarball}\n")
    assert (tree / "executorch/CMakeLists.txt").exists() and (tree / "kleidiai/kai").is_dir()
    return tree


def build_runners(venv_python: str, tree: Path, out: Path, platform: str, variants: list[str], *extra: str,
                  **popen) -> list[str]:
    command = [venv_python, str(BUILD_RUNNERS), "--flavor", "source", "--platform", platform,
               "--executorch-dir", str(tree / "executorch"), "--build-dir", str(out / "build"),
               "--runners-dir", str(out / "runners"), "--json", *extra]
    for variant in variants:
        command += ["--variant", variant]
    return command


def cmake_cache(build_dir: Path) -> dict[str, str]:
    entries = re.findall(r"^([A-Za-z_0-9]+):[A-Z]+=(.*)$", (build_dir / "CMakeCache.txt").read_text(), re.M)
    return dict(entries)


def ninja_edge(build_ninja: str, output_name: str) -> str:
    """The build statement (with its indented variables) whose first output is the file output_name."""
    for block in build_ninja.split("\nbuild ")[1:]:
        output = block.split(":", 1)[0].split()[0]
        if output == output_name or output.endswith("/" + output_name):
            return block.split("\n\n", 1)[0]
    raise AssertionError(f"no build statement for {output_name}")


def xnnpack_sources(build_ninja: str) -> list[str]:
    """File names of the XNNPACK sources the build compiles (KleidiAI, a library of its own, always
    compiles all its kernels; XNNPACK's switches decide which of them XNNPACK uses)."""
    return [Path(source).name for source in re.findall(r"^build \S+\.o: \S+ (\S+\.[cS])", build_ninja, re.M)
            if "/XNNPACK/src/" in source]


# --- configure only (default suite) ------------------------------------------------------------


def test_linux_aarch64_on_and_off_configure_offline(source_tree: Path, venv_python: str, tmp_path: Path):
    if not shutil.which("aarch64-linux-gnu-g++"):
        pytest.skip("the aarch64 cross compiler (g++-aarch64-linux-gnu) is not installed")
    variants = ["sme2_on_kernels", "sme2_off_kernels"]
    result = subprocess.run(build_runners(venv_python, source_tree, tmp_path, "linux-aarch64", variants,
                                          "--configure-only", "--executorch-commit", SOURCE_COMMIT),
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    configured = {entry["name"]: entry for entry in json.loads(result.stdout)}
    assert set(configured) == {"sme2_on_kernels-linux-aarch64", "sme2_off_kernels-linux-aarch64"}
    sources = {}
    for name, entry in configured.items():
        assert (entry["executorch_version"], entry["executorch_commit"]) == (SOURCE_VERSION, SOURCE_COMMIT)
        build_dir = Path(entry["configured"])
        log = (build_dir / "build.log").read_text()
        assert "Downloading KleidiAI" not in log  # offline: KleidiAI found beside the checkout
        cache = cmake_cache(build_dir)
        assert Path(cache["KLEIDIAI_SOURCE_DIR"]) == source_tree / "kleidiai"
        assert cache["PYTHON_EXECUTABLE"] == venv_python
        assert cache["EXECUTORCH_XNNPACK_LOG_LEVEL"] == "4"
        build_ninja = (build_dir / "build.ninja").read_text()
        sources[name] = xnnpack_sources(build_ninja)
        # Linked plainly: ExecuTorch's own whole-archive option is the only one (twice = duplicate symbols).
        link = ninja_edge(build_ninja, "profiling_runner")
        assert len(re.findall(r"--whole-archive \S*/libxnnpack_backend\.a", link)) == 1, link
        # The GCC 12 workaround is appended to the one KleidiAI file, after KleidiAI's own -march.
        ice = ninja_edge(build_ninja, GCC_ICE_SOURCE.rsplit("/", 1)[1] + ".o")
        assert re.search(r"FLAGS = .* -march=armv8\S* .*-fno-tree-vectorize", ice), ice
    on, off = sources["sme2_on_kernels-linux-aarch64"], sources["sme2_off_kernels-linux-aarch64"]
    assert any(s.endswith("-neonsme2.c") for s in on) and any(s.endswith("-neonsme.c") for s in on)
    assert not [s for s in off if "sme" in s], "the OFF build compiles XNNPACK SME kernels"
    assert len(off) > 500 and set(off) < set(on)  # the NEON kernels are all still there


def test_host_configure_waits_for_a_build_holding_the_checkout(source_tree: Path, venv_python: str,
                                                               tmp_path: Path):
    """Configures share the checkout's flatcc output folder, so a second build waits for the first."""
    lock_path = source_tree / "executorch" / ".build_runners.lock"
    with lock_path.open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        process = subprocess.Popen(build_runners(venv_python, source_tree, tmp_path, "linux", ["sme2_on"],
                                                 "--configure-only"),
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        first_lines = []
        for line in process.stderr:  # stops at the waiting line: the process then blocks on the lock
            first_lines.append(line)
            if "waiting for another build" in line or "error" in line:
                break
        assert "waiting for another build" in first_lines[-1], first_lines
        assert process.poll() is None and not (tmp_path / "build/sme2_on/CMakeCache.txt").exists()
    stdout, stderr = process.communicate(timeout=900)
    assert process.returncode == 0, stderr[-3000:]
    entry = json.loads(stdout)[0]
    # The tree sits inside this repository's git work tree: its commit is unknown, not this repo's HEAD.
    assert entry["executorch_commit"] == "unknown" and entry["executorch_version"] == SOURCE_VERSION
    cache = cmake_cache(Path(entry["configured"]))
    assert cache["XNNPACK_ENABLE_ARM_SME2"] == "ON" and "EXECUTORCH_XNNPACK_LOG_LEVEL" not in cache
    assert Path(cache["EXECUTORCH_SOURCE_DIR"]) == source_tree / "executorch"


# --- checks that need no source tree ------------------------------------------------------------


def test_plan_builds_only_the_runner_of_the_chosen_variants(venv_python: str, tmp_path: Path):
    checkout = tmp_path / "src" / "executorch"
    (tmp_path / "src" / "kleidiai" / "kai").mkdir(parents=True)
    result = subprocess.run([venv_python, str(BUILD_RUNNERS), "--flavor", "source", "--platform", "linux",
                             "--executorch-dir", str(checkout), "--variant", "sme2_off_kernels", "--dry-run", "--json"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    (plan,) = json.loads(result.stdout)["variants"]
    assert plan["variant"] == "sme2_off_kernels"
    assert plan["build"][-3:] == ["--target", "profiling_runner", "hide_cpu_features"]
    flags = plan["cmake_flags"]
    assert flags["PYTHON_EXECUTABLE"] == venv_python
    assert Path(flags["KLEIDIAI_SOURCE_DIR"]) == tmp_path / "src" / "kleidiai"  # found beside the checkout
    assert Path(plan["build_dir"]).name == "sme2_off_kernels"  # one build tree per variant


@pytest.mark.parametrize("case", ["no_kai", "not_named_executorch"])
def test_bad_source_arguments_give_one_line(case: str, venv_python: str, tmp_path: Path):
    checkout = tmp_path / ("executorch" if case == "no_kai" else "et-main")
    (checkout / "backends/xnnpack").mkdir(parents=True)
    (checkout / "CMakeLists.txt").write_text("")
    extra = ["--kleidiai-dir", str(tmp_path / "empty")] if case == "no_kai" else []
    result = subprocess.run([venv_python, str(BUILD_RUNNERS), "--flavor", "source", "--platform", "linux",
                             "--executorch-dir", str(checkout), "--build-dir", str(tmp_path / "build"), *extra],
                            capture_output=True, text=True)
    assert result.returncode == 1
    errors = [line for line in result.stdout.splitlines() if line.startswith("error:")]
    expected = "holds no KleidiAI sources" if case == "no_kai" else "must be named 'executorch'"
    assert len(errors) == 1 and expected in errors[0], result.stdout
    assert not (tmp_path / "build").exists()


def test_setup_with_source_wants_a_folder_named_executorch(venv_python: str, tmp_path: Path):
    venv = Path(venv_python).parent.parent
    result = subprocess.run(["bash", str(REPO_ROOT / "scripts/setup_repo.sh"), "--venv", str(venv), "--with-source",
                             "--executorch-dir", str(tmp_path / "et")], capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "folder named executorch" in result.stderr
    assert f"--executorch-dir {tmp_path}/executorch" in result.stderr and not (tmp_path / "et").exists()


# --- full build + QEMU 11 (slow) -----------------------------------------------------------------

QEMU_ENV = "SME2_KIT_QEMU"
MIN_QEMU_FOR_SME2 = 11  # QEMU 10's -cpu max has SME but not SME2
SYSROOT = Path("/usr/aarch64-linux-gnu")
GEMM_LINE = re.compile(r"Using (gemm|igemm) microkernel '([A-Za-z0-9_]+)'")
PACKED_TAGS = {"PF32", "PF16", "PQS8"}  # KleidiAI packed-LHS op names: the SME/SME2 path

def qemu_with_sme2() -> tuple[str | None, str]:
    """A qemu-aarch64 that emulates SME2: $SME2_KIT_QEMU, build/emulator/bin (setup_emulator.sh), PATH."""
    seen = []
    for candidate in (os.environ.get(QEMU_ENV), str(REPO_ROOT / "build/emulator/bin/qemu-aarch64"),
                      shutil.which("qemu-aarch64")):
        if candidate and Path(candidate).exists():
            version = subprocess.run([candidate, "--version"], capture_output=True, text=True).stdout
            major = re.search(r"version (\d+)\.", version)
            if major and int(major.group(1)) >= MIN_QEMU_FOR_SME2:
                return candidate, ""
            seen.append(f"{candidate}: {version.splitlines()[0] if version else 'no version'}")
    return None, "; ".join(seen) or "no qemu-aarch64"


@pytest.fixture(scope="module")
def qemu11() -> str:
    qemu, seen = qemu_with_sme2()
    if not qemu:
        message = (f"needs qemu-aarch64 {MIN_QEMU_FOR_SME2} or newer ({seen}); fix: run scripts/setup_emulator.sh "
                   f"or set {QEMU_ENV}")
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    if not shutil.which("aarch64-linux-gnu-gcc") or not (SYSROOT / "lib/ld-linux-aarch64.so.1").exists():
        pytest.skip("the aarch64 cross toolchain (g++-aarch64-linux-gnu) is not installed")
    return qemu


@pytest.fixture(scope="module")
def kernel_runners(source_tree: Path, venv_python: str) -> dict[str, Path]:
    """sme2_on_kernels and sme2_off_kernels for linux-aarch64, built into this repository's build/ and
    runners/ as a learner would (ninja rebuilds nothing when they are up to date)."""
    command = ["nice", "-n", "10"] + build_runners(
        venv_python, source_tree, REPO_ROOT, "linux-aarch64", ["sme2_on_kernels", "sme2_off_kernels"],
        "--executorch-commit", SOURCE_COMMIT)
    result = subprocess.run(command, capture_output=True, text=True, timeout=4 * 3600)
    assert result.returncode == 0, result.stderr[-3000:]
    built = {entry["name"].split("-")[0]: entry for entry in json.loads(result.stdout)}
    assert (built["sme2_on_kernels"]["sme2_kernels"], built["sme2_on_kernels"]["sme_kernels"]) == (True, True)
    assert (built["sme2_off_kernels"]["sme2_kernels"], built["sme2_off_kernels"]["sme_kernels"]) == (False, False)
    assert built["sme2_on_kernels"]["feature_mask"]["library"] == "libhide_cpu_features.so"
    print({name: entry["build_seconds"] for name, entry in built.items()})
    return {name: REPO_ROOT / "runners" / entry["name"] / "profiling_runner" for name, entry in built.items()}


@pytest.fixture(scope="module")
def prebuilt_arm64_runner(venv_python: str, qemu11: str) -> Path:
    """runners/prebuilt-linux-aarch64 (the arm64 wheel's runtime and its feature mask), as build_runners.py makes it."""
    result = subprocess.run([venv_python, str(BUILD_RUNNERS), "--platform", "linux-aarch64"], capture_output=True,
                            text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:]
    return REPO_ROOT / "runners/prebuilt-linux-aarch64/profiling_runner"


@pytest.fixture(scope="module")
def toy_models(tmp_path_factory, venv_python: str) -> dict[str, Path]:
    """The built-in toy_cnn in each datatype, exported by the kit."""
    out = tmp_path_factory.mktemp("toy")
    models = {}
    for dtype in ("fp32", "fp16", "int8"):
        subprocess.run([venv_python, str(REPO_ROOT / "scripts/export_model.py"), "--model", "toy_cnn", "--dtype", dtype,
                        "--outdir", str(out), "--no-verify"], check=True, capture_output=True)
        models[dtype] = out / f"toy_cnn_xnnpack_{dtype}.pte"
    return models


def run_emulated(qemu: str, runner: Path, model: Path, etdump: Path, cpu: str = "max",
                 mask: Path | None = None, hide: str = "") -> tuple[set[str], set[str]]:
    """(GEMM/IGEMM microkernels XNNPACK logged, XNNPACK conv/FC op types in the ETDump) of one run."""
    env = ["-E", f"LD_PRELOAD={mask}", "-E", f"SME_KIT_HIDE_CPU_FEATURES={hide}"] if mask else []
    result = subprocess.run([qemu, "-L", str(SYSROOT), "-cpu", cpu, *env, str(runner), "--model_path", str(model),
                             "--num_executions", "1", "--cpu_threads", "1", "--etdump_path", str(etdump)],
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    from test_emulated_device import event_names, matmul_op_types
    return {name for _, name in GEMM_LINE.findall(result.stderr)}, matmul_op_types(event_names(etdump))


def op_tags(op_types: set[str]) -> set[str]:
    return {tag.strip() for op in op_types for tag in re.search(r"\(([^)]*)\)", op).group(1).split(",")}


@pytest.mark.slow
@pytest.mark.emulated
@pytest.mark.parametrize("dtype", ["fp32", "fp16", "int8"])
def test_kernel_runners_under_qemu11(dtype: str, qemu11: str, kernel_runners: dict[str, Path],
                                     prebuilt_arm64_runner: Path, toy_models: dict[str, Path], tmp_path: Path):
    """The kit's feature mask hiding SME and SME2 (`hide_cpu_features: ["sme", "sme2"]`) on the ON build
    chooses exactly the GEMM/IGEMM microkernels of the OFF build (both XNNPACK SME switches OFF)."""
    on, off, model = kernel_runners["sme2_on_kernels"], kernel_runners["sme2_off_kernels"], toy_models[dtype]
    mask_library = on.parent / "libhide_cpu_features.so"  # built beside the runner by build_runners.py
    sme2, sme2_ops = run_emulated(qemu11, on, model, tmp_path / "sme2.etdump")
    sme1, _ = run_emulated(qemu11, on, model, tmp_path / "sme1.etdump", mask=mask_library, hide="sme2")
    nosme, nosme_ops = run_emulated(qemu11, on, model, tmp_path / "nosme.etdump", cpu="max,sme=off")
    masked, masked_ops = run_emulated(qemu11, on, model, tmp_path / "masked.etdump", mask=mask_library, hide="sme:sme2")
    off_build, off_ops = run_emulated(qemu11, off, model, tmp_path / "off.etdump")

    assert sme2 and all(name.endswith("__neonsme2") for name in sme2), sme2
    assert sme1 and all(name.endswith("__neonsme") for name in sme1), sme1
    assert op_tags(sme2_ops) & PACKED_TAGS, sme2_ops  # the ETDump shows the KleidiAI packed path
    for kernels, ops in ((nosme, nosme_ops), (masked, masked_ops), (off_build, off_ops)):
        assert kernels and not any("sme" in name for name in kernels), kernels
        assert not op_tags(ops) & PACKED_TAGS, ops
    # The run-time mask reaches exactly the kernels of the build without SME, and of a CPU without SME.
    assert masked == off_build == nosme
    assert masked_ops == off_ops == nosme_ops
    # The prebuilt runner logs no kernels, but under the same mask its operators are the OFF build's too.
    prebuilt_mask = prebuilt_arm64_runner.parent / "libhide_cpu_features.so"
    _, prebuilt_ops = run_emulated(qemu11, prebuilt_arm64_runner, model, tmp_path / "prebuilt.etdump",
                                   mask=prebuilt_mask, hide="sme:sme2")
    assert prebuilt_ops == off_ops
