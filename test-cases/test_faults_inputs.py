"""Fault drills outside the pipeline: export, config, setup and results scripts under bad input.

Each case breaks one thing for real (a model file that exits, a read-only folder on a read-only
tmpfs, Ctrl-C as SIGINT, a config that is not UTF-8, wrong-shaped JSON in a real run directory, a
bit-flipped ETDump of a real export) and asserts the promise of the design's "Bad input" section:
exit code, one line naming the problem and the fix, no traceback, and the state of the files.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from types import ModuleType
from typing import Any, Iterator

import pytest
from conftest import load_script

REPO = Path(__file__).resolve().parent.parent
SCRIPTS = REPO / "scripts"
TRACEBACK = "Traceback (most recent call last)"

TINY_LINEAR = """
import torch
def get_model():
    return torch.nn.Sequential(torch.nn.Linear(16, 8), torch.nn.ReLU(), torch.nn.Linear(8, 4))
def get_example_inputs():
    return (torch.randn(1, 16),)
"""


def run(script: str, *args: Any, cwd: Path | None = None, stdin: Any = None,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """A kit script under the interpreter running the tests, with a wide console (one rich line = one line)."""
    return subprocess.run([sys.executable, str(SCRIPTS / script), *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, stdin=stdin, env={**os.environ, "COLUMNS": "250", **(env or {})}, timeout=600)


def output_lines(done: subprocess.CompletedProcess) -> list[str]:
    return [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]


def ctrl_c_as_at_a_terminal() -> None:
    """In the child before exec: SIGINT as a terminal delivers it. A test suite started in the
    background (`cmd &` without job control) inherits SIGINT ignored, and Python keeps it ignored."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def assert_one_clean_error(done: subprocess.CompletedProcess, code: int, *needles: str) -> str:
    """Exit `code`, no traceback, and exactly one error/interrupted line holding every needle."""
    text = done.stdout + done.stderr
    assert done.returncode == code, text[-2000:]
    assert TRACEBACK not in text, text[-2000:]
    errors = [line for line in output_lines(done) if line.startswith(("error:", "interrupted:"))]
    assert len(errors) == 1, text[-2000:]
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


def files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) if root.exists() else []


def digest(root: Path, names: list[str]) -> dict[str, str]:
    return {name: hashlib.sha256((root / name).read_bytes()).hexdigest() for name in names}


def shown_python() -> str:
    """How the scripts print the running interpreter from the repository root."""
    return os.path.relpath(sys.executable, REPO) if Path(sys.executable).is_relative_to(REPO) else sys.executable


@pytest.fixture
def read_only_dir(tmp_path: Path) -> Iterator[Path]:
    """A folder nobody can write to, even root: a read-only tmpfs when we may mount, else chmod 555."""
    folder = tmp_path / "read_only"
    folder.mkdir()
    if os.geteuid() == 0:
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(folder)],
                                 capture_output=True)
        if mounted.returncode != 0:
            pytest.skip(f"running as root and cannot mount a read-only tmpfs: {mounted.stderr.decode().strip()}")
        try:
            yield folder
        finally:
            subprocess.run(["umount", str(folder)], check=True)
    else:
        folder.chmod(0o555)
        try:
            yield folder
        finally:
            folder.chmod(0o755)


def load_breakdown() -> ModuleType:
    return load_script("trace_breakdown")


def load_analyzer() -> ModuleType:
    return load_script("analyze_results")


# --------------------------------------------------------------------------- export_model.py


@pytest.mark.parametrize("body, needles", [
    ("import sys\nsys.exit(0)\n", ["exited (code 0) while being imported", "sys.exit()"]),
    ("import argparse\nparser = argparse.ArgumentParser()\nparser.add_argument('--size', type=int, required=True)\n"
     "args = parser.parse_args()\n" + TINY_LINEAR, ["exited (code 2) while being imported", "--size", "__main__"]),
], ids=["sys_exit_0", "own_argparse"])
def test_export_model_file_that_exits(tmp_path: Path, body: str, needles: list[str]) -> None:
    """A model file that exits at import is an error (not exit 0 with no files), and its usage is not shown."""
    model_file = tmp_path / "user_model.py"
    model_file.write_text(body)
    done = run("export_model.py", "--model-file", model_file, "--outdir", tmp_path / "models")
    line = assert_one_clean_error(done, 1, "user_model.py", *needles)
    assert "usage:" not in (done.stdout + done.stderr) and "export_model.py" not in line
    assert files_under(tmp_path / "models") == []


def test_export_read_only_outdir_fails_before_the_export(tmp_path: Path, read_only_dir: Path) -> None:
    """The outdir is checked before the model even runs: no minutes of export thrown away."""
    marker = tmp_path / "forward_ran"
    model_file = tmp_path / "tiny.py"
    model_file.write_text(TINY_LINEAR.replace(
        "def get_model():",
        f"class Marked(torch.nn.Sequential):\n    def forward(self, x):\n        open({str(marker)!r}, 'w').close()\n"
        "        return super().forward(x)\ndef get_model():\n    return Marked(torch.nn.Linear(16, 4))\n"
        "def unused():"))
    done = run("export_model.py", "--model-file", model_file, "--outdir", read_only_dir / "models")
    assert_one_clean_error(done, 1, "cannot write to --outdir", "writable --outdir")
    assert not marker.exists(), "the model ran before the outdir check"


def test_export_interrupted_leaves_no_file(tmp_path: Path) -> None:
    """Ctrl-C while torch.export traces: exit 130, one line, nothing in the outdir (no partial .pte)."""
    started = tmp_path / "export_started"
    model_file = tmp_path / "slow.py"
    model_file.write_text(f"""
import time, torch
class Slow(torch.nn.Module):
    calls = 0
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(4, 2)
    def forward(self, x):
        Slow.calls += 1
        if Slow.calls == 2:  # call 1 is the eager reference, call 2 is torch.export's trace
            open({str(started)!r}, "w").close()
            time.sleep(60)
        return self.fc(x)
def get_model():
    return Slow()
def get_example_inputs():
    return (torch.randn(1, 4),)
""")
    process = subprocess.Popen([sys.executable, str(SCRIPTS / "export_model.py"), "--model-file", str(model_file),
                                "--outdir", str(tmp_path / "models")], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, preexec_fn=ctrl_c_as_at_a_terminal)
    deadline = time.monotonic() + 300
    while not started.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    done = subprocess.CompletedProcess(process.args, process.returncode, out, err)
    assert_one_clean_error(done, 130, "interrupted", "no output file was written")
    assert files_under(tmp_path / "models") == []


# --------------------------------------------------------------------------- ETRecord / ETDump blame


@pytest.fixture(scope="module")
def exported_linear(tmp_path_factory) -> dict[str, Path]:
    """A real export_model.py export (.pte, .etrecord, .json) and a real ETDump of it from the runner."""
    folder = tmp_path_factory.mktemp("linear")
    (folder / "linear.py").write_text(TINY_LINEAR)
    done = run("export_model.py", "--model-file", folder / "linear.py", "--outdir", folder, "--no-verify")
    assert done.returncode == 0, done.stdout + done.stderr
    return {suffix: folder / f"linear_xnnpack_fp32.{suffix}" for suffix in ("pte", "etrecord", "json")}


@pytest.fixture(scope="module")
def linear_etdump(exported_linear: dict[str, Path], prebuilt_runner: Path) -> Path:
    etdump = exported_linear["pte"].with_suffix(".etdump")
    subprocess.run([str(prebuilt_runner), "--model_path", str(exported_linear["pte"]), "--num_executions", "2",
                    "--etdump_path", str(etdump)], check=True, capture_output=True)
    return etdump


@pytest.fixture(scope="module")
def analyzer() -> ModuleType:
    return load_analyzer()


def test_etrecord_of_another_model_is_refused(exported_linear: dict[str, Path], toy_pte: Path,
                                               analyzer: ModuleType) -> None:
    """The export records the .pte's hash; an ETRecord paired with another .pte is an error, not mislabels."""
    metadata = json.loads(exported_linear["json"].read_text())
    assert metadata["files"]["pte_sha256"] == hashlib.sha256(exported_linear["pte"].read_bytes()).hexdigest()
    own = analyzer.Experiment(name="linear_t1", folder=exported_linear["pte"].parent,
                              meta={"model": str(exported_linear["pte"])})
    assert analyzer.etrecord_for(own, None) == exported_linear["etrecord"] and own.errors == []
    other = analyzer.Experiment(name="tiny_t1", folder=toy_pte.parent, meta={"model": str(toy_pte)})
    assert analyzer.etrecord_for(other, exported_linear["etrecord"]) is None
    assert len(other.errors) == 1 and "belongs to another model" in other.errors[0]
    assert other.errors[0].startswith(str(exported_linear["etrecord"])) and "\n" not in other.errors[0]


def test_corrupt_etdump_or_etrecord_blames_the_right_file(tmp_path: Path, exported_linear: dict[str, Path],
                                                          linear_etdump: Path, analyzer: ModuleType) -> None:
    """A bit flip in the ETDump names the ETDump even with an ETRecord; a broken ETRecord names the ETRecord."""
    data = linear_etdump.read_bytes()
    flipped = tmp_path / "flipped.etdump"
    blamed = None
    breakdown = load_breakdown()  # trace_breakdown.py reads ETDumps for the analysis
    for offset in range(16, len(data)):  # the first offset whose flip the reader rejects
        corrupt = bytearray(data)
        corrupt[offset] ^= 0x80
        flipped.write_bytes(bytes(corrupt))
        try:
            breakdown.load_trace(flipped, exported_linear["etrecord"])
        except breakdown.BreakdownError as error:
            blamed = str(error)
            break
    assert blamed is not None, "no single bit flip made the ETDump unreadable"
    assert blamed.startswith(str(flipped)) and "ETDump is corrupt" in blamed and "re-run the trace" in blamed
    broken_record = tmp_path / "broken.etrecord"
    broken_record.write_bytes(exported_linear["etrecord"].read_bytes()[:2000])
    with pytest.raises(breakdown.BreakdownError) as error:
        breakdown.load_trace(linear_etdump, broken_record)
    assert str(error.value).startswith(str(broken_record)) and "without --etrecord" in str(error.value)
    # Hostile JSON inside an intact zip: maps of the wrong shape are refused the same way.
    for entry, value in (("debug_handle_map", [1, 2]), ("delegate_map", {"forward": {"0": [1]}}),
                         ("edge_dialect_exported_program/forward", {"graph_module": {"graph": []}})):
        with zipfile.ZipFile(exported_linear["etrecord"]) as source, zipfile.ZipFile(broken_record, "w") as target:
            for item in source.infolist():
                target.writestr(item, json.dumps(value) if item.filename == entry else source.read(item.filename))
        with pytest.raises(breakdown.BreakdownError) as error:
            breakdown.load_trace(linear_etdump, broken_record)
        assert "not a readable ETRecord" in str(error.value) and "without --etrecord" in str(error.value), entry


def test_no_etdump_bit_flip_crashes_the_reader(tmp_path: Path, linear_etdump: Path) -> None:
    """Every single-bit flip (the top bit of each byte) of a real ETDump is either one clear error or a
    read: the FlatBuffer reader bounds-checks every offset, so no flip raises anything else."""
    events = load_script("etdump_events")
    data = linear_etdump.read_bytes()
    flipped = tmp_path / "flipped.etdump"
    outcomes = {"error": 0, "read": 0}
    for offset in range(len(data)):
        corrupt = bytearray(data)
        corrupt[offset] ^= 0x80
        flipped.write_bytes(bytes(corrupt))
        try:
            events.traced_runs(events.read_etdump(flipped), None)
            outcomes["read"] += 1
        except events.EventsError as error:
            assert str(error).startswith(str(flipped)) and "\n" not in str(error)
            outcomes["error"] += 1
    assert outcomes["error"] > 0 and sum(outcomes.values()) == len(data), outcomes


# --------------------------------------------------------------------------- generate_config.py


def test_generate_config_read_only_out(read_only_dir: Path) -> None:
    done = run("generate_config.py", "--out", read_only_dir / "my.json")
    assert_one_clean_error(done, 2, "cannot write", "my.json", "writable --out")
    assert files_under(read_only_dir) == []


def test_generate_config_interactive_without_a_terminal(tmp_path: Path) -> None:
    done = run("generate_config.py", "--interactive", cwd=tmp_path, stdin=subprocess.DEVNULL)
    assert_one_clean_error(done, 2, "standard input", "nothing was written")
    assert files_under(tmp_path) == []


def test_generate_config_prints_the_running_python(tmp_path: Path) -> None:
    done = run("generate_config.py", "--out", tmp_path / "c.json", cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert f"run it with: {shown_python()} scripts/mac_pipeline.py --config" in done.stdout


# --------------------------------------------------------------------------- validate_pipeline.py


def fail_rows(done: subprocess.CompletedProcess) -> list[str]:
    return [line for line in done.stdout.splitlines() if line.startswith("FAIL ")]


@pytest.fixture
def good_config(tmp_path: Path, prebuilt_runner: Path, toy_pte: Path) -> dict[str, Any]:
    return {"schema_version": 1, "output_root": str(tmp_path / "out"), "experiments": [
        {"name": "tiny", "runner": str(prebuilt_runner.parent), "model": str(toy_pte), "runs": 3, "rounds": 1}]}


def test_validate_pipeline_config_not_utf8(tmp_path: Path, good_config: dict[str, Any]) -> None:
    path = tmp_path / "latin1.json"
    path.write_bytes(json.dumps({**good_config, "comment": "CAFE"}).encode().replace(b"CAFE", b"caf\xe9"))
    done = run("validate_pipeline.py", "--config", path)
    assert done.returncode == 1 and TRACEBACK not in done.stdout + done.stderr
    rows = fail_rows(done)
    assert len(rows) == 1 and "not UTF-8" in rows[0] and "permission" not in rows[0].lower()


def test_validate_pipeline_numbers_python_misreads(tmp_path: Path, good_config: dict[str, Any]) -> None:
    """1e400 reads as inf and 1e1 as 10.0: both pass a plain schema check and break mid-run."""
    good_config["experiments"][0].update(timeout_s="TIMEOUT", runs="RUNS")
    path = tmp_path / "config.json"
    path.write_text(json.dumps(good_config).replace('"TIMEOUT"', "1e400").replace('"RUNS"', "1e1"))
    done = run("validate_pipeline.py", "--config", path)
    assert done.returncode == 1 and TRACEBACK not in done.stdout + done.stderr
    rows = fail_rows(done)
    assert any("timeout_s" in row and "too large" in row for row in rows), done.stdout
    assert any("runs" in row and "10.0 is not of type 'integer'" in row for row in rows), rows
    schema = json.loads((REPO / "configs/config.schema.json").read_text())
    assert schema["$defs"]["experiment"]["properties"]["timeout_s"]["maximum"] < float("inf")


def test_validate_pipeline_runner_json_of_the_wrong_shape(tmp_path: Path, good_config: dict[str, Any],
                                                          prebuilt_runner: Path) -> None:
    runner = tmp_path / "runner_list"
    runner.mkdir()
    shutil.copy2(prebuilt_runner, runner / "profiling_runner")
    (runner / "runner.json").write_text("[1, 2]\n")
    good_config["experiments"][0]["runner"] = str(runner)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(good_config))
    done = run("validate_pipeline.py", "--config", path, cwd=REPO)
    assert done.returncode == 1 and TRACEBACK not in done.stdout + done.stderr
    rows = [row for row in fail_rows(done) if "runner.json is a JSON list" in row]
    assert len(rows) == 1 and f"{shown_python()} scripts/build_runners.py" in rows[0], done.stdout


# --------------------------------------------------------------------------- validate_setup.py


@pytest.mark.parametrize("runner_files", [{}, {"prebuilt/runner.json": "{}"}], ids=["no_runner", "binary_missing"])
def test_validate_setup_missing_runner_is_a_fail_once_set_up(tmp_path: Path, runner_files: dict[str, str]) -> None:
    """A tree with a working venv but no runner binary is not ready."""
    (tmp_path / "scripts").mkdir()
    shutil.copy2(SCRIPTS / "validate_setup.py", tmp_path / "scripts")
    shutil.copy2(REPO / "requirements.txt", tmp_path)
    for name, text in runner_files.items():
        (tmp_path / "runners" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "runners" / name).write_text(text)
    done = subprocess.run([sys.executable, str(tmp_path / "scripts/validate_setup.py"), "--venv", sys.prefix,
                           "--json"], capture_output=True, text=True)
    report = json.loads(done.stdout)
    runners = next(check for check in report["checks"] if check["id"] == "runners")
    assert runners["status"] == "FAIL" and "build_runners.py --flavor prebuilt" in runners["fix"]
    assert done.returncode == 1 and not report["ok"]


# --------------------------------------------------------------------------- analyze_results.py / validate_results.py


@pytest.fixture(scope="module")
def analyzed_run(tmp_path_factory, prebuilt_runner: Path, toy_pte: Path) -> Path:
    """A run directory in the documented format from real runner invocations, analysed once."""
    run_dir = tmp_path_factory.mktemp("faults_run") / "run"
    folder = run_dir / "tiny_t1"
    folder.mkdir(parents=True)
    rounds = []
    for index in range(2):
        subprocess.run([str(prebuilt_runner), "--model_path", str(toy_pte), "--num_executions", "5", "--warmup", "1",
                        "--timing_json", str(folder / "round.json")], check=True, capture_output=True)
        timing = json.loads((folder / "round.json").read_text())
        rounds.append({"round": index, "latencies_ms": timing["latencies_ms"], "load_ms": timing["load_ms"]})
    (folder / "round.json").unlink()
    traced = subprocess.run([str(prebuilt_runner), "--model_path", str(toy_pte), "--num_executions", "3",
                             "--etdump_path", str(folder / "trace.etdump")], check=True, capture_output=True, text=True)
    (folder / "runner.log").write_text(traced.stdout + traced.stderr)
    (folder / "timing.json").write_text(json.dumps({
        "schema_version": 1, "experiment": "tiny", "threads": 1, "runs_per_round": 5, "warmup": 1, "rounds": rounds,
        "latencies_ms": [x for r in rounds for x in r["latencies_ms"]]}))
    (run_dir / "manifest.json").write_text(json.dumps({
        "schema_version": 1, "created": "2026-01-01T00:00:00+00:00", "status": "complete", "pipeline": "test",
        "config_path": "", "config": {}, "versions": {},
        "host": {"os": "Linux", "machine": "x86_64", "chip": "test", "cores": 2, "sme2": False, "sme": False},
        "device": None, "runners": {"prebuilt": json.loads((prebuilt_runner.parent / "runner.json").read_text())},
        "experiments": [{"name": "tiny", "threads": 1, "dir": "tiny_t1", "runner": "prebuilt", "model": str(toy_pte),
                         "modes": ["timing", "trace"], "runs": 5, "warmup": 1, "rounds": 2, "status": "ok",
                         "error": None, "files": ["timing.json", "trace.etdump", "runner.log"]}],
        "compare": []}, indent=2))
    done = run("analyze_results.py", "--run-dir", run_dir)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (folder / "ops.csv").is_file()
    return run_dir


@pytest.fixture
def run_copy(analyzed_run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(analyzed_run, tmp_path / "run"))


def rewrite_timing(run_dir: Path, change: Any) -> None:
    path = run_dir / "tiny_t1" / "timing.json"
    path.write_text(json.dumps(change(json.loads(path.read_text()))))


@pytest.mark.parametrize("name, breakage, needle", [
    ("manifest_list", lambda r: (r / "manifest.json").write_text("[]"), "is a JSON list, not an object"),
    ("manifest_truncated", lambda r: (r / "manifest.json").write_text((r / "manifest.json").read_text()[:200]),
     "not valid JSON"),
    ("experiments_string", lambda r: (r / "manifest.json").write_text(json.dumps(
        {**json.loads((r / "manifest.json").read_text()), "experiments": "tiny"})), "'experiments' has the wrong type"),
])
def test_wrong_shaped_manifest(run_copy: Path, name: str, breakage: Any, needle: str) -> None:
    """Analysis and validation each end in one line; the validator's verdict is fail."""
    breakage(run_copy)
    analysed = run("analyze_results.py", "--run-dir", run_copy)
    assert_one_clean_error(analysed, 1, "manifest.json", needle, "re-run the pipeline" if name != "manifest_truncated"
                           else "restore it")
    validated = run("validate_results.py", "--run-dir", run_copy, "--json")
    assert validated.returncode == 1 and TRACEBACK not in validated.stderr
    report = json.loads(validated.stdout)
    assert report["verdict"] == "fail" and "manifest.json" in report["checks"][0]["detail"]


def edit_json(path: Path, change: Any) -> None:
    document = json.loads(path.read_text())
    change(document)
    path.write_text(json.dumps(document))


@pytest.mark.parametrize("change, needle", [
    (lambda d: d["experiments"][0].update(name=[1], dir=None), "'name' of an entry of 'experiments'"),
    (lambda d: d["experiments"][0].update(model=["a.pte"]), "'model' of an entry of 'experiments'"),
    (lambda d: d["experiments"][0].update(threads="1"), "'threads' of an entry of 'experiments'"),
    (lambda d: d.update(compare=[{"baseline": [1], "candidate": "tiny_t1"}]), "'baseline' of an entry of 'compare'"),
    (lambda d: d["experiments"][0].update(dir="../outside"), "is not a folder name in the run directory"),
], ids=["name_list", "model_list", "threads_string", "compare_side_list", "dir_outside_the_run"])
def test_wrong_typed_manifest_field_stops_the_analysis(run_copy: Path, change: Any, needle: str) -> None:
    """An experiment or compare field of a type no pipeline writes (or a folder outside the run): one line
    before anything is written, never a traceback or a file outside the run directory."""
    edit_json(run_copy / "manifest.json", change)
    before = files_under(run_copy.parent)
    analysed = run("analyze_results.py", "--run-dir", run_copy)
    assert_one_clean_error(analysed, 1, "manifest.json", needle, "re-run the pipeline")
    assert files_under(run_copy.parent) == before


@pytest.mark.parametrize("file, change, check_id, needle", [
    ("analysis_summary.json", lambda d: d.update(comparisons="x"), "analysis", "has the wrong shape"),
    ("analysis_summary.json", lambda d: d["experiments"]["tiny_t1"].update(e2e=7), "analysis", "has the wrong shape"),
    ("analysis_summary.json", lambda d: d["experiments"]["tiny_t1"].update(warnings=[None, 1]), None, None),
    ("manifest.json", lambda d: d["experiments"][0].update(files=7), "experiment_files", "wrong type"),
    ("manifest.json", lambda d: d.update(analysis=[1]), "analysis", "wrong type"),
    ("manifest.json", lambda d: d["runners"].update({k: "x" for k in d["runners"]}), "sme2_labels", "wrong type"),
], ids=["summary_comparisons_string", "summary_e2e_number", "summary_warnings_not_text", "manifest_files_number",
        "manifest_analysis_list", "manifest_runner_string"])
def test_wrong_typed_field_fails_its_check(run_copy: Path, file: str, change: Any, check_id: str | None,
                                            needle: str | None) -> None:
    """A field of a type no kit writes (a hand edit): the check that reads it FAILs in one row naming
    the file, the other checks still run, and nothing ends in a traceback."""
    edit_json(run_copy / file, change)
    validated = run("validate_results.py", "--run-dir", run_copy, "--json")
    assert validated.returncode == 1 and TRACEBACK not in validated.stderr, validated.stderr[-2000:]
    report = json.loads(validated.stdout)
    assert report["verdict"] == "fail" and any(c["id"] == "latencies" for c in report["checks"])
    if check_id:
        failed = [c for c in report["checks"] if c["id"] == check_id and c["status"] == "FAIL"]
        assert failed and needle in failed[0]["detail"] and file in failed[0]["detail"], report["checks"]


@pytest.mark.parametrize("change, needle", [
    (lambda timing: [1, 2], "is a JSON list, not an object"),
    (lambda timing: {**timing, "rounds": "abc"}, "'rounds'"),
], ids=["timing_list", "rounds_string"])
def test_wrong_shaped_timing(run_copy: Path, change: Any, needle: str) -> None:
    """A bad timing.json is that experiment's error; the trace is still analysed, nothing crashes."""
    rewrite_timing(run_copy, change)
    analysed = run("analyze_results.py", "--run-dir", run_copy)
    assert_one_clean_error(analysed, 1, "timing.json", needle)
    validated = run("validate_results.py", "--run-dir", run_copy, "--json")
    assert validated.returncode == 1 and TRACEBACK not in validated.stderr
    report = json.loads(validated.stdout)
    latencies = [c for c in report["checks"] if c["id"] == "latencies" and c["status"] == "FAIL"]
    assert latencies and "timing.json" in latencies[0]["detail"]


def test_failed_reanalysis_retires_the_old_operator_tables(run_copy: Path) -> None:
    """The trace is now truncated: the old ops.csv/op_stats.csv become *.stale, never left looking current."""
    trace = run_copy / "tiny_t1" / "trace.etdump"
    trace.write_bytes(trace.read_bytes()[:100])
    old_ops = (run_copy / "tiny_t1" / "ops.csv").read_bytes()
    analysed = run("analyze_results.py", "--run-dir", run_copy)
    assert_one_clean_error(analysed, 1, "trace.etdump", "truncated")
    folder = run_copy / "tiny_t1"
    assert not (folder / "ops.csv").exists() and not (folder / "op_stats.csv").exists()
    assert (folder / "ops.csv.stale").read_bytes() == old_ops
    summary = json.loads((run_copy / "analysis_summary.json").read_text())
    assert any("ops.csv" in w and ".stale" in w for w in summary["warnings"])
    assert json.loads(run("validate_results.py", "--run-dir", run_copy, "--json").stdout)["verdict"] == "fail"


def test_analysis_interrupted(run_copy: Path) -> None:
    """Ctrl-C while the ETDumps are read: exit 130, one line, measurements untouched, no half-written file."""
    measured = ["manifest.json", "tiny_t1/timing.json", "tiny_t1/trace.etdump"]
    before = digest(run_copy, measured)
    process = subprocess.Popen([sys.executable, str(SCRIPTS / "analyze_results.py"), "--run-dir", str(run_copy)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=ctrl_c_as_at_a_terminal)
    # Right after this line the stages start: seconds of work, so the signal always lands inside them.
    assert "Reading ETDumps" in process.stdout.readline()
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    done = subprocess.CompletedProcess(process.args, process.returncode, out, err)
    assert_one_clean_error(done, 130, "interrupted", "run the same command again")
    assert digest(run_copy, measured) == before
    assert not [p for p in run_copy.rglob(".*partial*")]
