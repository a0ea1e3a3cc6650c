"""Fault drills for the pipeline: what a hostile but realistic user (or machine) does to a run.

Each drill asserts the promise of the design's "Bad input" section: one line naming the problem
and the fix, a non-zero exit (128 + signal for an interrupt), no traceback, no partial file a
later step would trust, and a manifest status that says what happened. Covered: two pipelines
on one output_root, the run directory's lock, SIGINT/SIGTERM/SIGHUP/SIGKILL and --resume,
timeouts (the runner's whole process group on the host, the remote runner on Android),
runners that cannot start or crash or vanish, a full disk (a small tmpfs), a read-only output
root, JSON of the wrong shape, configs with impossible numbers, Android pull failures and
disconnects (the stand-in adb), run_quick_test.py's options, and .pte files corrupted in each
part of the file (header, flatbuffer tables, data segment) against the real runner.

Fault runners are small shell scripts beside a copy of the real runner.json: they hang, crash
or spawn children on purpose and record their PIDs so the tests can check what is still alive.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import struct
import subprocess
import time
from pathlib import Path

import pytest

from conftest import write_config

REPO = Path(__file__).resolve().parent.parent
MAC_PIPELINE = REPO / "scripts/mac_pipeline.py"
ANDROID_PIPELINE = REPO / "scripts/android_pipeline.py"
QUICK_TEST = REPO / "scripts/run_quick_test.py"
ADB = Path(__file__).resolve().parent / "adb_standin" / "adb"
FAST = {"runs": 1, "warmup": 0, "rounds": 2, "mode": "timing"}


# --- helpers ------------------------------------------------------------------------------


def pair_config(folder: Path, runner: Path, model: Path, **extra) -> Path:
    experiments = [{"name": "a", "runner": str(runner), **FAST, **extra},
                   {"name": "b", "runner": str(runner), **FAST, **extra}]
    return write_config(folder, experiments, [{"baseline": "a", "candidate": "b"}], model=str(model))


def pipeline(python: str, *args, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([python, str(MAC_PIPELINE), *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=300)


def start_pipeline(python: str, *args) -> subprocess.Popen:
    return subprocess.Popen([python, str(MAC_PIPELINE), *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def output(result) -> str:
    return result.stdout + (result.stderr or "")


def assert_one_error_line(result, *needles: str) -> str:
    """Exactly one `error:` line holding every needle, and no traceback."""
    text = output(result)
    assert "Traceback" not in text, text
    lines = [line for line in text.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, text
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def manifest_of(run_dir: Path) -> dict:
    return json.loads((run_dir / "manifest.json").read_text())


def entry(manifest: dict, folder: str) -> dict:
    return next(e for e in manifest["experiments"] if e["dir"] == folder)


def no_temporary_files(folder: Path) -> None:
    leftovers = [p for p in folder.rglob("*") if p.name.endswith(".tmp")]
    assert not leftovers, leftovers


def alive(pid: int) -> bool:
    """True while the process exists and is not a zombie waiting for a parent that never reaps it."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def wait_for(condition, what: str, seconds: float = 120.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def fault_runner(folder: Path, prebuilt_runner: Path, script: str) -> Path:
    """A runner folder whose `profiling_runner` is a shell script (REAL: the real runner), with the real
    runner.json so the pipeline's preflight accepts it."""
    folder.mkdir(parents=True)
    runner = folder / "profiling_runner"
    runner.write_text("#!/bin/sh\nHERE=$(dirname \"$0\")\n" + script.replace("REAL", str(prebuilt_runner)))
    runner.chmod(0o755)
    shutil.copy(prebuilt_runner.parent / "runner.json", folder / "runner.json")
    return folder


# Hangs while the `hang` file in FOLDER exists (with a child process, on the host, to prove the whole group
# is ended); without the file it is the real runner. FOLDER is absolute: on the stand-in phone the script
# runs from the device's copy.
HANGING = """echo $$ > "FOLDER/runner.pid"
if [ -e "FOLDER/hang" ]; then
  CHILD
  while [ -e "FOLDER/hang" ]; do sleep 0.1; done
fi
exec REAL "$@"
"""
CHILD = 'sleep 300 & echo $! > "FOLDER/child.pid"'


def hanging_runner(folder: Path, prebuilt_runner: Path, child: bool = True) -> Path:
    script = HANGING.replace("CHILD", CHILD if child else ":").replace("FOLDER", str(folder))
    runner = fault_runner(folder, prebuilt_runner, script)
    (runner / "hang").write_text("")
    return runner


def pid_in(path: Path) -> int:
    wait_for(lambda: path.is_file() and path.read_text().strip(), f"{path}")
    return int(path.read_text())


# --- bad input before anything runs ----------------------------------------------------------


@pytest.mark.parametrize("case", ["timeout_1e400", "runs_1e1", "not_utf8", "run_dir_alone", "two_models"])
def test_refused_before_running(case, tmp_path, venv_python, prebuilt_runner, toy_pte, toy_portable_pte):
    """Impossible numbers, a config that is not text, --run-dir without --resume and a pair of two different
    networks: exit 2, one line, no run directory."""
    config = pair_config(tmp_path, prebuilt_runner.parent, toy_pte)
    extra, needles = [], []
    if case == "timeout_1e400":
        config.write_text(config.read_text().replace('"runs": 1,', '"runs": 1, "timeout_s": 1e400,', 1))
        needles = ["1e400 is too large"]
    elif case == "runs_1e1":
        config.write_text(config.read_text().replace('"runs": 1,', '"runs": 1e1,', 1))
        needles = ["experiments/0/runs", "not of type 'integer'"]
    elif case == "not_utf8":
        config.write_bytes(config.read_bytes().replace(b'"a"', b'"\xe9"', 1))
        needles = ["not UTF-8"]
    elif case == "run_dir_alone":
        extra, needles = ["--run-dir", tmp_path / "run"], ["--run-dir works with --resume"]
    else:  # export_model.py's JSON beside each .pte names the network it came from
        for pte, name in ((toy_pte, "toy_cnn"), (toy_portable_pte, "mlp")):
            shutil.copy(pte, tmp_path / pte.name)
            (tmp_path / pte.name).with_suffix(".json").write_text(json.dumps({"schema_version": 1, "model": name}))
        data = json.loads(config.read_text())
        data["experiments"][0]["model"], data["experiments"][1]["model"] = toy_pte.name, toy_portable_pte.name
        config.write_text(json.dumps(data))
        needles = ["two different models (toy_cnn vs mlp)", "compare two exports of one model"]
    result = pipeline(venv_python, "--config", config, "--skip-analysis", *extra)
    assert result.returncode == 2
    assert_one_error_line(result, *needles)
    assert not (tmp_path / "run").exists()


def test_quick_test_refuses_zero(venv_python, tmp_path):
    for flag in ("--runs", "--rounds"):
        result = subprocess.run([venv_python, str(QUICK_TEST), "--workdir", tmp_path, flag, "0"],
                                capture_output=True, text=True)
        assert result.returncode == 2 and "0 is too small" in result.stderr and "Traceback" not in result.stderr
    assert not any(tmp_path.iterdir())


# --- the run directory: claimed once, locked while in use --------------------------------------


def test_two_pipelines_never_share_a_run_dir(tmp_path, venv_python, prebuilt_runner, toy_pte):
    """Two pipelines started together on one new output_root: two run directories, each with exactly
    the configured latencies and only its own invocations."""
    config = pair_config(tmp_path, prebuilt_runner.parent, toy_pte)
    jobs = [start_pipeline(venv_python, "--config", config, "--skip-analysis") for _ in range(2)]
    texts = [job.communicate(timeout=300)[0] for job in jobs]
    assert [job.returncode for job in jobs] == [0, 0], texts
    runs = sorted(p for p in tmp_path.iterdir() if p.name.startswith("run"))
    assert len(runs) == 2
    for run_dir in runs:
        manifest = manifest_of(run_dir)
        assert manifest["status"] == "complete"
        assert len(manifest["execution_log"]) == 4  # 2 experiments x 2 rounds, nothing of the other run
        for folder in ("a_t1", "b_t1"):
            timing = json.loads((run_dir / folder / "timing.json").read_text())
            assert len(timing["latencies_ms"]) == 2 and [r["round"] for r in timing["rounds"]] == [0, 1]


def test_a_locked_run_is_refused(tmp_path, venv_python, prebuilt_runner, toy_pte):
    """While a pipeline holds a run directory, --resume and --analysis-only on it are refused."""
    config = pair_config(tmp_path, prebuilt_runner.parent, toy_pte)
    assert pipeline(venv_python, "--config", config, "--skip-analysis").returncode == 0
    before = (tmp_path / "run/manifest.json").read_bytes()
    with open(tmp_path / "run/.pipeline.lock", "r+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        lock.write("4242 held by the test\n")
        lock.flush()
        for flag in ("--resume", "--analysis-only"):
            result = pipeline(venv_python, "--config", config, flag)
            assert result.returncode == 2
            assert_one_error_line(result, "in use by another pipeline (PID 4242)", "wait for it to finish")
    assert (tmp_path / "run/manifest.json").read_bytes() == before


# --- interrupts -----------------------------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_interrupt_records_and_resume_continues(signum, tmp_path, venv_python, prebuilt_runner, toy_pte):
    """A signal mid-run: exit 128 + signal, `interrupted`, the runner and its child ended, a hint naming
    this pipeline; after SIGINT, --resume finishes the run."""
    runner = hanging_runner(tmp_path / "runners/hang", prebuilt_runner)
    config = pair_config(tmp_path, runner, toy_pte)
    job = start_pipeline(venv_python, "--config", config, "--skip-analysis")
    runner_pid, child_pid = pid_in(runner / "runner.pid"), pid_in(runner / "child.pid")
    job.send_signal(signum)
    text = job.communicate(timeout=120)[0]
    assert job.returncode == 128 + signum, text
    assert "Traceback" not in text
    assert f"interrupted ({signal.Signals(signum).name})" in text
    assert "mac_pipeline.py --config" in text and f"--resume --run-dir {tmp_path / 'run'}" in text.replace("\n", "")
    wait_for(lambda: not alive(runner_pid) and not alive(child_pid), "the runner's process group to end", 30)
    manifest = manifest_of(tmp_path / "run")
    assert manifest["status"] == "interrupted"
    assert entry(manifest, "a_t1")["status"] == "pending"
    no_temporary_files(tmp_path / "run")
    if signum != signal.SIGINT:
        return
    (runner / "hang").unlink()
    resumed = pipeline(venv_python, "--config", config, "--resume", "--skip-analysis")
    assert resumed.returncode == 0, output(resumed)
    manifest = manifest_of(tmp_path / "run")
    assert manifest["status"] == "complete"
    assert manifest["compare"][0]["rounds_interleaved"] is True  # both sides ran all rounds in session 1
    assert (tmp_path / "run/a_t1.attempt1").is_dir()


def test_sigkill_leaves_a_stale_lock_the_next_run_detects(tmp_path, venv_python, prebuilt_runner, toy_pte):
    """SIGKILL leaves `running` behind; the lock died with the process, so --resume takes the run, marks it
    interrupted (naming the dead PID) and completes it."""
    runner = hanging_runner(tmp_path / "runners/hang", prebuilt_runner)
    config = pair_config(tmp_path, runner, toy_pte)
    job = start_pipeline(venv_python, "--config", config, "--skip-analysis")
    runner_pid = pid_in(runner / "runner.pid")
    job.kill()
    job.communicate(timeout=60)
    os.killpg(runner_pid, signal.SIGKILL)  # nothing is left to end the runner's group after a SIGKILL
    assert manifest_of(tmp_path / "run")["status"] == "running"
    (runner / "hang").unlink()
    resumed = pipeline(venv_python, "--config", config, "--resume", "--skip-analysis")
    assert resumed.returncode == 0, output(resumed)
    assert f"left running by PID {job.pid}, which is gone" in output(resumed).replace("\n", "")
    assert manifest_of(tmp_path / "run")["status"] == "complete"


# --- runners that hang, crash, cannot start or vanish ------------------------------------------


def test_timeout_ends_the_whole_process_group(tmp_path, venv_python, prebuilt_runner, toy_pte):
    runner = hanging_runner(tmp_path / "runners/hang", prebuilt_runner)
    experiments = [{"name": "stuck", "runner": str(runner), **FAST, "timeout_s": 1},
                   {"name": "fine", "runner": str(prebuilt_runner.parent), **FAST}]
    config = write_config(tmp_path, experiments, model=str(toy_pte))
    result = pipeline(venv_python, "--config", config, "--skip-analysis")
    assert result.returncode == 1 and "Traceback" not in output(result)
    manifest = manifest_of(tmp_path / "run")
    assert manifest["status"] == "complete_with_errors"
    stuck = entry(manifest, "stuck_t1")
    assert stuck["status"] == "failed" and "timed out after 1 s" in stuck["error"]
    assert "raise timeout_s in the config" in stuck["error"]
    assert entry(manifest, "fine_t1")["status"] == "ok"
    for pid_file in ("runner.pid", "child.pid"):
        assert not alive(int((runner / pid_file).read_text())), f"{pid_file} still running"


def test_runners_that_cannot_run(tmp_path, venv_python, prebuilt_runner, toy_pte):
    """Not executable, not a binary for this machine, crashing, deleted between rounds, writing a timing
    file of the wrong shape: each fails its own experiment with its reason; the good one completes."""
    def runner_dir(name: str) -> Path:
        folder = tmp_path / "runners" / name
        folder.mkdir(parents=True)
        shutil.copy(prebuilt_runner.parent / "runner.json", folder)
        return folder

    not_executable = runner_dir("not_executable")
    shutil.copy(prebuilt_runner, not_executable / "profiling_runner")
    (not_executable / "profiling_runner").chmod(0o644)
    wrong_format = runner_dir("wrong_format")
    (wrong_format / "profiling_runner").write_bytes(b"\x7fELF\x02\x01\x01" + bytes(200))
    (wrong_format / "profiling_runner").chmod(0o755)
    crashing = fault_runner(tmp_path / "runners/crashing", prebuilt_runner, "kill -SEGV $$\n")
    vanishing = fault_runner(tmp_path / "runners/vanishing", prebuilt_runner, 'rm "$0"\nexec REAL "$@"\n')
    list_timing = fault_runner(tmp_path / "runners/list_timing", prebuilt_runner,
                               'while [ "$1" != --timing_json ]; do shift; done\necho "[]" > "$2"\n')
    runners = {"not_executable": not_executable, "wrong_format": wrong_format, "crashing": crashing,
               "vanishing": vanishing, "list_timing": list_timing, "good": prebuilt_runner.parent}
    config = write_config(tmp_path, [{"name": n, "runner": str(r), **FAST} for n, r in runners.items()],
                          model=str(toy_pte))
    result = pipeline(venv_python, "--config", config, "--skip-analysis")
    assert result.returncode == 1 and "Traceback" not in output(result), output(result)
    manifest = manifest_of(tmp_path / "run")
    assert manifest["status"] == "complete_with_errors"
    expected = {"not_executable": "Permission denied", "wrong_format": "Exec format error",
                "crashing": "runner crashed (SIGSEGV)", "vanishing": "round 1: cannot start",
                "list_timing": "not a JSON object"}
    for name, reason in expected.items():
        found = entry(manifest, f"{name}_t1")
        assert found["status"] == "failed" and reason in found["error"], found
    assert "No such file or directory" in entry(manifest, "vanishing_t1")["error"]
    assert entry(manifest, "good_t1")["status"] == "ok"


# --- --resume ----------------------------------------------------------------------------------


def test_resume_refuses_another_config(tmp_path, venv_python, prebuilt_runner, toy_pte):
    config = pair_config(tmp_path, prebuilt_runner.parent, toy_pte)
    assert pipeline(venv_python, "--config", config, "--skip-analysis", "--only", "a").returncode == 0
    before = (tmp_path / "run/manifest.json").read_bytes()
    config.write_text(config.read_text().replace('"rounds": 2', '"rounds": 3'))
    result = pipeline(venv_python, "--config", config, "--resume", "--skip-analysis")
    assert result.returncode == 2
    assert_one_error_line(result, "was run with another config (differs in: experiments)", "without --resume")
    assert (tmp_path / "run/manifest.json").read_bytes() == before


def test_only_is_partial_and_resume_says_rounds_were_not_paired(tmp_path, venv_python, prebuilt_runner, toy_pte):
    """--only a leaves the run `partial` (never `complete` with b pending); after --resume the pair's rounds
    ran in two sessions, and the manifest says so for the analysis."""
    config = pair_config(tmp_path, prebuilt_runner.parent, toy_pte)
    first = pipeline(venv_python, "--config", config, "--skip-analysis", "--only", "a")
    assert first.returncode == 0
    manifest = manifest_of(tmp_path / "run")
    assert manifest["status"] == "partial"
    assert "not run yet: b_t1" in first.stdout and "--resume" in first.stdout
    assert manifest["compare"][0]["rounds_interleaved"] is False
    resumed = pipeline(venv_python, "--config", config, "--resume", "--skip-analysis")
    assert resumed.returncode == 0
    pair = manifest_of(tmp_path / "run")["compare"][0]
    assert manifest_of(tmp_path / "run")["status"] == "complete"
    assert pair["rounds_interleaved"] is False
    assert "session 0" in pair["pairing_note"] and "session 1" in pair["pairing_note"]
    # The analysis reads that: no paired bootstrap over rounds that did not alternate.
    analysis = subprocess.run([venv_python, str(MAC_PIPELINE.parent / "analyze_results.py"), "--run-dir",
                               str(tmp_path / "run")], capture_output=True, text=True, timeout=600)
    assert analysis.returncode == 0, output(analysis)
    speedup = json.loads((tmp_path / "run/e2e_stats.json").read_text())["pairs"][0]
    assert speedup["interleaved"] is False and "independent bootstrap" in speedup["method"]
    assert "different sessions" in (tmp_path / "run/report.md").read_text()


def test_resume_reruns_an_experiment_whose_files_are_gone(tmp_path, venv_python, prebuilt_runner, toy_pte):
    config = pair_config(tmp_path, prebuilt_runner.parent, toy_pte)
    assert pipeline(venv_python, "--config", config, "--skip-analysis").returncode == 0
    (tmp_path / "run/a_t1/timing.json").unlink()
    resumed = pipeline(venv_python, "--config", config, "--resume", "--skip-analysis")
    assert resumed.returncode == 0, output(resumed)
    assert "timing.json gone" in resumed.stdout
    manifest = manifest_of(tmp_path / "run")
    assert manifest["status"] == "complete"
    assert len(json.loads((tmp_path / "run/a_t1/timing.json").read_text())["latencies_ms"]) == 2
    assert {e["experiment"] for e in manifest["execution_log"] if e["session"] == 1} == {"a_t1"}
    assert manifest["compare"][0]["rounds_interleaved"] is False
    # --only b does not hide it: a's files are gone again, so a runs again (in the plan's order), b is kept
    (tmp_path / "run/a_t1/timing.json").unlink()
    resumed = pipeline(venv_python, "--config", config, "--resume", "--skip-analysis", "--only", "b")
    assert resumed.returncode == 0 and "timing.json gone" in resumed.stdout, output(resumed)
    log = [(e["round"], e["experiment"]) for e in manifest_of(tmp_path / "run")["execution_log"] if e["session"] == 2]
    assert log == [(0, "a_t1"), (1, "a_t1")]


@pytest.mark.parametrize("damage", ["truncated", "a_list"])
def test_resume_of_a_damaged_manifest(damage, tmp_path, venv_python, prebuilt_runner, toy_pte):
    config = pair_config(tmp_path, prebuilt_runner.parent, toy_pte)
    assert pipeline(venv_python, "--config", config, "--skip-analysis").returncode == 0
    manifest = tmp_path / "run/manifest.json"
    manifest.write_text(manifest.read_text()[:200] if damage == "truncated" else "[]")
    result = pipeline(venv_python, "--config", config, "--resume", "--skip-analysis")
    assert result.returncode == 2
    assert_one_error_line(result, "manifest", "start a new run")


def test_damaged_runner_json_and_timing_json(tmp_path, venv_python, prebuilt_runner, toy_pte):
    """runner.json `[1, 2]`: the run goes on with a warning; a kept experiment's timing.json turned into a
    list or holding `"rounds": "abc"` does not stop --resume."""
    runner = tmp_path / "runners/odd"
    runner.mkdir(parents=True)
    shutil.copy(prebuilt_runner, runner / "profiling_runner")
    (runner / "runner.json").write_text("[1, 2]")
    config = pair_config(tmp_path, runner, toy_pte)
    result = pipeline(venv_python, "--config", config, "--skip-analysis")
    assert result.returncode == 0, output(result)
    assert any("not a runner.json object" in w for w in entry(manifest_of(tmp_path / "run"), "a_t1")["warnings"])
    (tmp_path / "run/a_t1/timing.json").write_text("[1, 2]")
    (tmp_path / "run/b_t1/timing.json").write_text('{"latencies_ms": [1.0], "rounds": "abc"}')
    resumed = pipeline(venv_python, "--config", config, "--resume", "--skip-analysis")
    assert resumed.returncode == 0 and "Traceback" not in output(resumed), output(resumed)
    assert manifest_of(tmp_path / "run")["status"] == "complete"


# --- a full disk, a read-only output root ------------------------------------------------------


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 256 KiB tmpfs (root only); skipped where mounting is not allowed."""
    mount_point = tmp_path / "tmpfs"
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount_point)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    yield mount_point
    subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill(mount_point: Path, leave_kib: int) -> None:
    """Fill the file system up to `leave_kib` KiB free."""
    stats = os.statvfs(mount_point)
    free = stats.f_bavail * stats.f_frsize
    (mount_point / "filler").write_bytes(b"\0" * max(0, free - leave_kib * 1024))


@pytest.mark.parametrize("leave_kib", [0, 8, 16])
def test_disk_full(leave_kib, small_tmpfs, tmp_path, venv_python, prebuilt_runner, toy_pte):
    """The disk fills at start-up, after the manifest, or mid-run: one line naming the disk, a manifest
    that is the last good one (valid JSON, never `running` when it could be written), no temporary files,
    and no experiment `ok` whose files are missing."""
    experiments = [{"name": n, "runner": str(prebuilt_runner.parent), **FAST, "mode": ["timing", "trace"]}
                   for n in ("a", "b")]
    config = write_config(tmp_path / "cfg", experiments, model=str(toy_pte), output_root=str(small_tmpfs / "run"))
    fill(small_tmpfs, leave_kib)
    result = pipeline(venv_python, "--config", config, "--skip-analysis")
    text = output(result)
    assert result.returncode != 0 and "Traceback" not in text, text
    assert "No space left on device" in text
    run_dir = small_tmpfs / "run"
    no_temporary_files(small_tmpfs)
    if (run_dir / "manifest.json").is_file():
        manifest = manifest_of(run_dir)
        for found in manifest["experiments"]:
            if found["status"] == "ok":
                assert all((run_dir / found["dir"] / name).is_file() for name in found["files"])
    errors = [line for line in text.splitlines() if line.startswith("error:")]
    assert len(errors) <= 1, errors
    if errors:
        assert "No space left on device; free disk space" in errors[0]
    else:  # the runner hit the full disk first: its experiments failed and say why
        manifest = manifest_of(run_dir)
        assert any("No space left on device" in (e["error"] or "") for e in manifest["experiments"])


def test_read_only_output_root(small_tmpfs, tmp_path, venv_python, prebuilt_runner, toy_pte):
    """A run on a file system that became read-only: --resume and --analysis-only refuse in one line and
    leave it as it was; a new run there cannot be created."""
    config = pair_config(tmp_path / "cfg", prebuilt_runner.parent, toy_pte)
    config.write_text(config.read_text().replace('"output_root": "run"', f'"output_root": "{small_tmpfs / "run"}"'))
    assert pipeline(venv_python, "--config", config, "--skip-analysis", "--only", "a").returncode == 0
    before = (small_tmpfs / "run/manifest.json").read_bytes()
    subprocess.run(["mount", "-o", "remount,ro", str(small_tmpfs)], check=True)
    for flags in (["--resume"], ["--analysis-only"]):
        result = pipeline(venv_python, "--config", config, *flags)
        assert result.returncode == 2
        assert_one_error_line(result, "read-only")
    result = pipeline(venv_python, "--config", config, "--skip-analysis", "--output-root", small_tmpfs / "new")
    assert result.returncode == 2
    assert_one_error_line(result, "Read-only file system", "--output-root")
    assert (small_tmpfs / "run/manifest.json").read_bytes() == before


# --- Android (the stand-in adb) ------------------------------------------------------------------


PHONE = {"ro.product.model": "Standin Phone 9", "ro.product.manufacturer": "Arm", "ro.product.cpu.abi": "arm64-v8a",
         "ro.build.version.release": "15", "ro.build.version.sdk": "35"}


def make_phone(root: Path, serial: str = "phone") -> Path:
    device = root / serial
    (device / ".standin").mkdir(parents=True)
    (device / ".standin/getprop.txt").write_text("".join(f"[{k}]: [{v}]\n" for k, v in PHONE.items()))
    (device / "proc").mkdir()
    (device / "proc/cpuinfo").write_text("processor\t: 0\nFeatures\t: fp asimd sve sve2 sme sme2\n\n")
    return device


def android(python: str, root: Path, *args) -> subprocess.Popen:
    env = {**os.environ, "ADB_STANDIN_ROOT": str(root)}
    return subprocess.Popen([python, str(ANDROID_PIPELINE), "--adb", str(ADB), *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


def finish(job: subprocess.Popen) -> str:
    text = job.communicate(timeout=300)[0]
    assert "Traceback" not in text, text
    return text


def device_processes(device: Path) -> list[int]:
    """PIDs whose command line runs something from the simulated device's folder."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and str(device) in (proc / "cmdline").read_bytes().decode(errors="replace") \
                    and alive(int(proc.name)):
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def test_android_pull_failure_is_named(tmp_path, venv_python, prebuilt_runner, toy_pte):
    root = tmp_path / "devices"
    phone = make_phone(root)
    (phone / ".standin/fail_pull").write_text("adb: error: failed to copy: remote Permission denied")
    config = pair_config(tmp_path, prebuilt_runner.parent, toy_pte)
    job = android(venv_python, root, "--config", config, "--skip-analysis")
    finish(job)
    assert job.returncode == 1
    failed = entry(manifest_of(tmp_path / "run"), "a_t1")
    assert failed["status"] == "failed"
    assert "adb pull of" in failed["error"] and "remote Permission denied" in failed["error"]
    assert "wrote no" not in failed["error"]


def test_android_disconnect_then_resume(tmp_path, venv_python, prebuilt_runner, toy_pte):
    """The phone goes away before round 1: the run stops as interrupted with a reconnect + --resume hint that
    names android_pipeline.py; after reconnecting, that command finishes the run."""
    root = tmp_path / "devices"
    phone = make_phone(root)
    (phone / ".standin/disconnect_on").write_text(".round1.timing.json")
    config = pair_config(tmp_path, prebuilt_runner.parent, toy_pte)
    job = android(venv_python, root, "--config", config, "--skip-analysis")
    text = finish(job).replace("\n", "")
    assert job.returncode == 1
    assert "device phone disconnected" in text and "reconnect the device" in text
    assert f"android_pipeline.py --config {config} --resume --run-dir {tmp_path / 'run'}" in text
    manifest = manifest_of(tmp_path / "run")
    assert manifest["status"] == "interrupted" and manifest["interrupted_by"] == "device disconnected"
    (phone / ".standin/state").unlink()  # reconnected
    job = android(venv_python, root, "--config", config, "--resume", "--run-dir", tmp_path / "run", "--skip-analysis")
    finish(job)
    assert job.returncode == 0
    assert manifest_of(tmp_path / "run")["status"] == "complete"


def test_android_timeout_and_interrupt_stop_the_remote_runner(tmp_path, venv_python, prebuilt_runner, toy_pte):
    """A runner that hangs on the phone: the timeout ends it there (killing the host's adb would not);
    then Ctrl-C during a second hang: exit 130, the hint names android_pipeline.py, nothing left running."""
    root = tmp_path / "devices"
    phone = make_phone(root)
    runner = hanging_runner(tmp_path / "runners/hang", prebuilt_runner, child=False)
    experiments = [{"name": "stuck", "runner": str(runner), **FAST, "rounds": 1, "timeout_s": 2}]
    config = write_config(tmp_path, experiments, model=str(toy_pte))
    job = android(venv_python, root, "--config", config, "--skip-analysis")
    finish(job)
    assert job.returncode == 1
    stuck = entry(manifest_of(tmp_path / "run"), "stuck_t1")
    assert "timed out after 2 s on phone" in stuck["error"]
    assert device_processes(phone) == []

    config.write_text(config.read_text().replace('"timeout_s": 2', '"timeout_s": 600'))
    (runner / "runner.pid").unlink()
    job = android(venv_python, root, "--config", config, "--skip-analysis", "--output-root", tmp_path / "second")
    pid_in(runner / "runner.pid")
    job.send_signal(signal.SIGINT)
    text = finish(job).replace("\n", "")
    assert job.returncode == 130
    assert "android_pipeline.py --config" in text and "--resume" in text and "mac_pipeline.py --config" not in text
    assert manifest_of(tmp_path / "second")["status"] == "interrupted"
    wait_for(lambda: device_processes(phone) == [], "the runner on the phone to stop", 30)


# --- corrupted .pte files against the real runner ------------------------------------------------


def pte_regions(data: bytes) -> dict[str, range]:
    """The three parts of a .pte: the headers (flatbuffer root + `eh00` extended header), the flatbuffer
    tables of the program, and the data segments (delegate blobs, constants) after segment_base_offset."""
    assert data[4:8] == b"ET12" and data[8:12] == b"eh00"
    header_length = struct.unpack_from("<I", data, 12)[0]
    segment_base = struct.unpack_from("<Q", data, 24)[0]
    return {"header": range(0, 8 + header_length), "flatbuffer": range(8 + header_length, segment_base),
            "segment": range(segment_base, len(data))}


@pytest.mark.parametrize("region", ["header", "flatbuffer", "segment"])
def test_corrupted_pte(region, tmp_path, prebuilt_runner, toy_pte):
    """A byte flipped anywhere: a clear one-line error naming the file, or a run that completes; never a
    crash. The header and flatbuffer regions are sampled densely (where unverified loads used to segfault)."""
    data = toy_pte.read_bytes()
    span = pte_regions(data)[region]
    step = 1 if region == "header" else max(1, len(span) // 40)
    outcomes = {"error": 0, "ran": 0}
    for offset in span[::step]:
        damaged = bytearray(data)
        damaged[offset] ^= 0xFF
        pte = tmp_path / "damaged.pte"
        pte.write_bytes(damaged)
        result = subprocess.run([str(prebuilt_runner), "--model_path", str(pte), "--num_executions", "1"],
                                capture_output=True, text=True, errors="replace", timeout=60)
        assert result.returncode in (0, 1), f"offset {offset}: exit {result.returncode}"
        if result.returncode == 1:
            errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
            assert len(errors) == 1 and "re-export it with scripts/export_model.py" in errors[0], (offset, errors)
            outcomes["error"] += 1
        else:
            outcomes["ran"] += 1
    if region != "segment":  # the verifier catches most damage to the program's structure
        assert outcomes["error"] > outcomes["ran"], outcomes
