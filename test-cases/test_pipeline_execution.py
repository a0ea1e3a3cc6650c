"""The host pipeline (mac_pipeline.py) end to end with the real runner and real exported models.

Also: the config schema and templates, generate_config.py, interleaved rounds, --only,
--resume, --analysis-only, and the bad-input cases (missing model, missing runner, a runner
that fails on a corrupt .pte, invalid configs), which must fail one experiment with a clear
line while the others complete, and never touch an earlier run.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import jsonschema
import pytest

from conftest import write_config

REPO = Path(__file__).resolve().parent.parent
MAC_PIPELINE = REPO / "scripts/mac_pipeline.py"
GENERATE_CONFIG = REPO / "scripts/generate_config.py"
SCHEMA = json.loads((REPO / "configs/config.schema.json").read_text())
TINY = {"runs": 3, "warmup": 1, "rounds": 2}


def run(venv_python: str, script: Path, *args, cwd: Path | None = None, stdin: str | None = None):
    return subprocess.run([venv_python, str(script), *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          input=stdin)


def manifest_of(run_dir: Path) -> dict:
    return json.loads((run_dir / "manifest.json").read_text())


def entry(manifest: dict, folder: str) -> dict:
    return next(e for e in manifest["experiments"] if e["dir"] == folder)


def tree_digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def error_lines(result: subprocess.CompletedProcess) -> list[str]:
    return [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("error:")]


def fake_runner(folder: Path, prebuilt_runner: Path, **claims) -> Path:
    """A runner folder holding the real binary and a runner.json that claims other build options."""
    folder.mkdir(parents=True)
    shutil.copy2(prebuilt_runner, folder / "profiling_runner")
    runner_json = json.loads((prebuilt_runner.parent / "runner.json").read_text())
    runner_json.update(name=folder.name, **claims)
    (folder / "runner.json").write_text(json.dumps(runner_json, indent=2))
    return folder


def pair_config(folder: Path, prebuilt_runner: Path, toy_pte: Path, toy_portable_pte: Path) -> Path:
    experiments = [{"name": "portable", "runner": str(prebuilt_runner.parent), "model": str(toy_portable_pte), **TINY},
                   {"name": "xnnpack", "runner": str(prebuilt_runner.parent), **TINY}]
    return write_config(folder, experiments, [{"baseline": "portable", "candidate": "xnnpack"}], model=str(toy_pte))


@pytest.fixture(scope="module")
def basic_run(tmp_path_factory, venv_python, prebuilt_runner, toy_pte, toy_portable_pte):
    """One full run (with the analysis) of portable vs XNNPACK, shared by the read-only tests."""
    config = pair_config(tmp_path_factory.mktemp("basic"), prebuilt_runner, toy_pte, toy_portable_pte)
    result = run(venv_python, MAC_PIPELINE, "--config", config)
    return result, config.parent / "run"


# --- the whole run directory --------------------------------------------------------------


def test_mac_pipeline_basic(basic_run, prebuilt_runner):
    result, run_dir = basic_run
    assert result.returncode == 0, result.stdout + result.stderr
    manifest = manifest_of(run_dir)
    assert manifest["schema_version"] == 1 and manifest["status"] == "complete"
    assert manifest["pipeline"] == "mac_pipeline.py" and manifest["device"] is None
    assert isinstance(manifest["host"]["sme2"], bool) and manifest["host"]["cores"] >= 1
    assert manifest["versions"]["executorch"].startswith("1.5.1")
    runner_json = json.loads((prebuilt_runner.parent / "runner.json").read_text())
    assert {k: v for k, v in manifest["runners"]["prebuilt"].items() if k != "path"} == runner_json
    assert manifest["compare"][0]["baseline"] == "portable_t1" and manifest["compare"][0]["candidate"] == "xnnpack_t1"
    for folder in ("portable_t1", "xnnpack_t1"):
        exp = entry(manifest, folder)
        assert exp["status"] == "ok" and exp["error"] is None
        assert exp["sme2_label"] == "off" and exp["sme2_effective"] is False
        timing = json.loads((run_dir / folder / "timing.json").read_text())
        assert timing["experiment"] == folder.split("_t")[0] and timing["threads"] == 1
        assert len(timing["latencies_ms"]) == TINY["runs"] * TINY["rounds"]
        assert all(v > 0 for v in timing["latencies_ms"])
        assert [r["round"] for r in timing["rounds"]] == list(range(TINY["rounds"]))
        assert len(timing["round_medians_ms"]) == TINY["rounds"]
        trace_timing = json.loads((run_dir / folder / "trace_timing.json").read_text())
        assert trace_timing["etdump"] is True and trace_timing["num_executions"] == TINY["runs"] * TINY["rounds"]  # the trace runs runs x rounds
        assert (run_dir / folder / "trace.etdump").stat().st_size > 0
        log = (run_dir / folder / "runner.log").read_text()
        assert log.count("\n$ ") + log.startswith("$ ") == TINY["rounds"] + 1  # timing rounds + trace run
        assert set(exp["files"]) >= {"timing.json", "trace.etdump", "runner.log"}
    # Step 5: the pipeline ran the analysis.
    assert manifest["analysis"]["status"] == "ok", result.stdout
    for path in ("report.md", "comparison.csv", "portable_t1/categories.csv", "xnnpack_t1/ops.csv"):
        assert (run_dir / path).is_file(), path


def test_rounds_interleave(basic_run):
    _, run_dir = basic_run
    log = manifest_of(run_dir)["execution_log"]
    timing = [(e["round"], e["experiment"]) for e in log if e["mode"] == "timing"]
    assert timing == [(0, "portable_t1"), (0, "xnnpack_t1"), (1, "portable_t1"), (1, "xnnpack_t1")]
    assert [e["experiment"] for e in log if e["mode"] == "trace"] == ["portable_t1", "xnnpack_t1"]
    assert all(e["status"] == "ok" and e["seconds"] > 0 for e in log)
    assert [e["started"] for e in log] == sorted(e["started"] for e in log)


def test_sme2_comparison(tmp_path, venv_python, prebuilt_runner, toy_pte):
    """An ON/OFF-labelled pair on this CPU: labels follow runner.json, and on a CPU without SME2
    the ON side says 'SME2 not available on this CPU' and the pair claims no SME2 effect."""
    runners = tmp_path / "runners"
    fake_runner(runners / "sme2_on", prebuilt_runner, sme2_kernels=True, sme_kernels=True)
    fake_runner(runners / "sme2_off", prebuilt_runner, sme2_kernels=False, sme_kernels=False)
    experiments = [{"name": n, "runner": n, "mode": "timing", **TINY} for n in ("sme2_off", "sme2_on")]
    config = write_config(tmp_path / "cfg", experiments, [{"baseline": "sme2_off", "candidate": "sme2_on"}],
                          model=str(toy_pte))
    result = run(venv_python, MAC_PIPELINE, "--config", config, "--runners-dir", runners, "--skip-analysis")
    assert result.returncode == 0, result.stdout + result.stderr
    manifest = manifest_of(tmp_path / "cfg/run")
    on, off = entry(manifest, "sme2_on_t1"), entry(manifest, "sme2_off_t1")
    assert (on["sme2_label"], off["sme2_label"]) == ("on", "off")
    assert manifest["runners"]["sme2_on"]["sme2_kernels"] is True
    pair = manifest["compare"][0]
    assert pair["kind"] == "sme2_on_off"
    if manifest["host"]["sme2"] is False:
        assert on["sme2_effective"] is False and on["note"] == "SME2 not available on this CPU"
        assert pair["sme2_effective"] is False and "does not measure an SME2 effect" in pair["note"]
        assert "sme2_on_t1: SME2 not available on this CPU" in result.stdout
    else:
        assert manifest["host"]["sme2"] is True and on["sme2_effective"] is True and on["note"] == ""
    assert off["sme2_effective"] is False and off["note"] == ""


# --- --only, --resume, reruns, --analysis-only --------------------------------------------


def test_only_then_resume(tmp_path, venv_python, prebuilt_runner, toy_pte, toy_portable_pte):
    config = pair_config(tmp_path, prebuilt_runner, toy_pte, toy_portable_pte)
    run_dir = tmp_path / "run"
    first = run(venv_python, MAC_PIPELINE, "--config", config, "--only", "xnnpack", "--skip-analysis")
    assert first.returncode == 0, first.stdout + first.stderr
    manifest = manifest_of(run_dir)
    assert entry(manifest, "xnnpack_t1")["status"] == "ok"
    assert entry(manifest, "portable_t1")["status"] == "skipped"
    assert "--only" in entry(manifest, "portable_t1")["error"]
    assert not (run_dir / "portable_t1").exists()
    xnnpack_files = tree_digest(run_dir / "xnnpack_t1")

    resumed = run(venv_python, MAC_PIPELINE, "--config", config, "--resume", "--skip-analysis")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    manifest = manifest_of(run_dir)
    assert manifest["status"] == "complete"
    assert [entry(manifest, d)["status"] for d in ("portable_t1", "xnnpack_t1")] == ["ok", "ok"]
    assert tree_digest(run_dir / "xnnpack_t1") == xnnpack_files  # the finished experiment was kept as it was
    sessions = {(e["session"], e["experiment"]) for e in manifest["execution_log"]}
    assert sessions == {(0, "xnnpack_t1"), (1, "portable_t1")}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "run"]  # no new run directory


def test_resume_retries_a_failed_experiment(tmp_path, venv_python, prebuilt_runner, toy_pte):
    """Fix what failed, --resume: the failed experiment runs again, its failed attempt is kept aside."""
    runner = str(prebuilt_runner.parent)
    experiments = [{"name": "ready", "runner": runner, "mode": "timing", **TINY},
                   {"name": "late", "runner": runner, "model": "late.pte", "mode": "timing", **TINY}]
    config = write_config(tmp_path, experiments, [{"baseline": "ready", "candidate": "late"}], model=str(toy_pte))
    first = run(venv_python, MAC_PIPELINE, "--config", config, "--skip-analysis")
    assert first.returncode == 1 and "model not found" in first.stdout
    ready_files = tree_digest(tmp_path / "run/ready_t1")
    shutil.copy(toy_pte, tmp_path / "late.pte")
    resumed = run(venv_python, MAC_PIPELINE, "--config", config, "--resume", "--skip-analysis")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    manifest = manifest_of(tmp_path / "run")
    assert manifest["status"] == "complete"
    assert [entry(manifest, d)["status"] for d in ("ready_t1", "late_t1")] == ["ok", "ok"]
    assert tree_digest(tmp_path / "run/ready_t1") == ready_files
    assert (tmp_path / "run/late_t1.attempt1").is_dir()
    assert len(json.loads((tmp_path / "run/late_t1/timing.json").read_text())["latencies_ms"]) == 6


def test_rerun_never_overwrites(tmp_path, venv_python, prebuilt_runner, toy_pte):
    config = write_config(tmp_path, [{"name": "xnnpack", "runner": str(prebuilt_runner.parent), "mode": "timing",
                                      **TINY}], model=str(toy_pte))
    assert run(venv_python, MAC_PIPELINE, "--config", config, "--skip-analysis").returncode == 0
    earlier = tree_digest(tmp_path / "run")
    second = run(venv_python, MAC_PIPELINE, "--config", config, "--skip-analysis")
    assert second.returncode == 0, second.stdout + second.stderr
    assert tree_digest(tmp_path / "run") == earlier
    siblings = [p for p in tmp_path.iterdir() if p.name.startswith("run-")]
    assert len(siblings) == 1 and (siblings[0] / "xnnpack_t1/timing.json").is_file()
    assert "holds an earlier run" in second.stdout and siblings[0].name in second.stdout.replace("\n", "")


def test_analysis_only(basic_run, venv_python):
    result, run_dir = basic_run
    raw = {name: digest for name, digest in tree_digest(run_dir).items()
           if name == "manifest.json" or name.endswith(("timing.json", ".etdump", "runner.log"))}
    report_mtime = (run_dir / "report.md").stat().st_mtime_ns
    again = run(venv_python, MAC_PIPELINE, "--config", run_dir.parent / "config.json", "--analysis-only")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "runner invocations" not in again.stdout  # nothing was run
    assert (run_dir / "report.md").stat().st_mtime_ns > report_mtime
    assert {name: tree_digest(run_dir)[name] for name in raw} == raw


def test_analysis_only_without_a_run(tmp_path, venv_python, toy_pte, prebuilt_runner):
    config = write_config(tmp_path, [{"name": "x", "runner": str(prebuilt_runner.parent)}], model=str(toy_pte))
    result = run(venv_python, MAC_PIPELINE, "--config", config, "--analysis-only")
    assert result.returncode == 2
    assert len(error_lines(result)) == 1 and "no earlier run found" in error_lines(result)[0]


# --- bad input ----------------------------------------------------------------------------


def test_failures_are_isolated(tmp_path, venv_python, prebuilt_runner, toy_pte):
    """A missing model, a missing runner and a runner failing on a corrupt .pte each fail their
    experiment with one clear line; the good experiment still completes all its rounds."""
    corrupt = tmp_path / "corrupt.pte"
    corrupt.write_bytes(toy_pte.read_bytes()[:300])  # a real program, truncated
    runner = str(prebuilt_runner.parent)
    experiments = [{"name": "good", "runner": runner, **TINY},
                   {"name": "no_model", "runner": runner, "model": "missing/model.pte", **TINY},
                   {"name": "no_runner", "runner": "runners_that_do_not_exist/x", **TINY},
                   {"name": "crash", "runner": runner, "model": str(corrupt), **TINY}]
    config = write_config(tmp_path / "cfg", experiments, [{"baseline": "crash", "candidate": "good"}],
                          model=str(toy_pte))
    result = run(venv_python, MAC_PIPELINE, "--config", config, "--skip-analysis")
    assert result.returncode == 1
    assert "Traceback" not in result.stdout + result.stderr
    manifest = manifest_of(tmp_path / "cfg/run")
    assert manifest["status"] == "complete_with_errors"
    good = entry(manifest, "good_t1")
    assert good["status"] == "ok"
    assert len(json.loads((tmp_path / "cfg/run/good_t1/timing.json").read_text())["latencies_ms"]) == 6
    expected = {"no_model_t1": "model not found", "no_runner_t1": "runner not found",
                "crash_t1": "not a valid ExecuTorch program"}
    for folder, words in expected.items():
        failed = entry(manifest, folder)
        assert failed["status"] == "failed" and words in failed["error"], failed
        assert "\n" not in failed["error"]
        assert words in result.stdout.replace("\n", "")
    assert "scripts/export_model.py" in entry(manifest, "no_model_t1")["error"]
    assert "build_runners.py" in entry(manifest, "no_runner_t1")["error"]
    assert "runner.log" in entry(manifest, "crash_t1")["error"]
    crashed = [e for e in manifest["execution_log"] if e["experiment"] == "crash_t1"]
    assert [e["status"] for e in crashed] == ["failed"]  # the crash stopped that experiment only


INVALID_CONFIGS = {
    "not JSON": ("{ this is not json", "not valid JSON"),
    "runs zero": ({"model": "m.pte", "output_root": "run", "experiments": [{"name": "a", "runner": "r", "runs": 0}]},
                  "experiments/0/runs"),
    "unknown mode": ({"model": "m.pte", "output_root": "run", "experiments": [{"name": "a", "runner": "r",
                                                                              "mode": "fast"}]}, "experiments/0/mode"),
    "no model anywhere": ({"output_root": "run", "experiments": [{"name": "a", "runner": "r"}]}, "model"),
    "compare unknown": ({"model": "m.pte", "output_root": "run", "experiments": [{"name": "a", "runner": "r"}],
                         "compare": [{"baseline": "a", "candidate": "b"}]}, "compare candidate 'b'"),
    "duplicate names": ({"model": "m.pte", "output_root": "run", "experiments": [{"name": "a", "runner": "r"},
                                                                                {"name": "a", "runner": "r"}]},
                        "used twice"),
}


@pytest.mark.parametrize("case", sorted(INVALID_CONFIGS))
def test_invalid_config(case, tmp_path, venv_python):
    content, words = INVALID_CONFIGS[case]
    config = tmp_path / "config.json"
    config.write_text(content if isinstance(content, str) else json.dumps(content))
    earlier = tmp_path / "run"
    (earlier / "a_t1").mkdir(parents=True)
    (earlier / "manifest.json").write_text("{}")
    (earlier / "a_t1/timing.json").write_text("{}")
    before = tree_digest(tmp_path)
    result = run(venv_python, MAC_PIPELINE, "--config", config)
    assert result.returncode == 2
    lines = error_lines(result)
    assert len(lines) == 1 and words in lines[0], result.stdout
    assert "Traceback" not in result.stdout + result.stderr
    assert tree_digest(tmp_path) == before  # nothing written, nothing earlier touched


def test_kernels_mode(tmp_path, venv_python, prebuilt_runner, toy_pte):
    """A kernel-log runner gets one kernels run into kernels.log; a runner without the log has the
    mode dropped with a warning instead of a failure."""
    logging_runner = fake_runner(tmp_path / "runners/logging", prebuilt_runner, kernel_log=True)
    experiments = [{"name": "with_log", "runner": str(logging_runner), "mode": ["timing", "kernels"], **TINY},
                   {"name": "without_log", "runner": str(prebuilt_runner.parent), "mode": ["timing", "kernels"],
                    **TINY}]
    config = write_config(tmp_path / "cfg", experiments, model=str(toy_pte))
    result = run(venv_python, MAC_PIPELINE, "--config", config, "--skip-analysis")
    assert result.returncode == 0, result.stdout + result.stderr
    run_dir = tmp_path / "cfg/run"
    manifest = manifest_of(run_dir)
    with_log, without_log = entry(manifest, "with_log_t1"), entry(manifest, "without_log_t1")
    assert with_log["modes"] == ["timing", "kernels"] and "kernels.log" in with_log["files"]
    # The kernels run reports the CPU features it saw, so a masked kernels run is checked like the others.
    assert "kernels_timing.json" in with_log["files"]
    seen = json.loads((run_dir / "with_log_t1/kernels_timing.json").read_text())["cpu_features_seen"]
    assert seen["sme2"] is False and seen["read_with"]
    kernels_log = (run_dir / "with_log_t1/kernels.log").read_text()
    assert "--num_executions 1" in kernels_log and "# exit 0" in kernels_log
    assert without_log["status"] == "ok" and without_log["modes"] == ["timing"]
    assert any("kernel log" in w for w in without_log["warnings"])
    assert not (run_dir / "without_log_t1/kernels.log").exists()


# --- configs ------------------------------------------------------------------------------

TEMPLATE_FLAGS = {
    "mac_template.json": ["--platform", "mac"],
    "android_template.json": ["--platform", "android"],
    "linux_template.json": ["--platform", "linux", "--compare", "backends", "threads", "--threads", "1", "2"],
}


@pytest.mark.parametrize("name", sorted(TEMPLATE_FLAGS))
def test_templates(name, tmp_path, venv_python):
    """Each template is valid, plans an interleaved comparison, and is what generate_config.py writes."""
    template = json.loads((REPO / "configs" / name).read_text())
    jsonschema.Draft202012Validator(SCHEMA).validate(template)
    (tmp_path / "configs").mkdir()
    result = run(venv_python, GENERATE_CONFIG, *TEMPLATE_FLAGS[name], "--out", f"configs/{name}", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads((tmp_path / "configs" / name).read_text()) == template
    plan = run(venv_python, MAC_PIPELINE, "--config", REPO / "configs" / name, "--dry-run", "--json")
    assert plan.returncode == 0, plan.stdout + plan.stderr
    plan = json.loads(plan.stdout)
    for pair in plan["compare"]:
        order = [s["experiment"] for s in plan["schedule"]
                 if s["mode"] == "timing" and s["experiment"] in pair.values()]
        assert order == [pair["baseline"], pair["candidate"]] * template["experiments"][0]["rounds"]
    if name.startswith("linux"):
        assert "without SME2" in template["comment"]
    else:
        assert [e["name"] for e in template["experiments"]] == ["sme2_off", "sme2_on"]
        assert {"timing", "trace"} <= set(template["experiments"][0]["mode"])


def test_generate_config_never_overwrites(tmp_path, venv_python):
    out = tmp_path / "mine.json"
    out.write_text("keep me")
    result = run(venv_python, GENERATE_CONFIG, "--platform", "mac", "--out", out)
    assert result.returncode == 2 and "--force" in result.stdout and out.read_text() == "keep me"
    forced = run(venv_python, GENERATE_CONFIG, "--platform", "mac", "--runs", "7", "--out", out, "--force")
    assert forced.returncode == 0 and json.loads(out.read_text())["experiments"][0]["runs"] == 7
    bad = run(venv_python, GENERATE_CONFIG, "--compare", "threads", "--out", tmp_path / "t.json")
    assert bad.returncode == 2 and "two or more --threads" in bad.stdout and not (tmp_path / "t.json").exists()


def test_generate_config_interactive(tmp_path, venv_python):
    """Enter keeps each default; a changed answer lands in the config, which is validated and written."""
    answers = {"Platform": "linux", "Runs per round": "5", "Write the config to": "interactive.json"}
    prompts = ["Platform", "Comparisons", "Model", "Portable export", "Runner", "Output root", "Runs per round",
               "Warm-up runs", "Interleaved rounds", "Thread counts", "Modes", "Write the config to", "Write"]
    stdin = "".join(answers.get(p, "") + "\n" for p in prompts)
    result = run(venv_python, GENERATE_CONFIG, "--interactive", cwd=tmp_path, stdin=stdin)
    assert result.returncode == 0, result.stdout + result.stderr
    config = json.loads((tmp_path / "interactive.json").read_text())
    jsonschema.Draft202012Validator(SCHEMA).validate(config)
    assert config["platform"] == "linux" and [e["name"] for e in config["experiments"]] == ["portable", "xnnpack"]
    assert all(e["runs"] == 5 for e in config["experiments"])
    assert config["experiments"][0]["model"] == "models/toy_cnn_portable_fp32.pte"


def test_dry_run_plan_resolves_paths(tmp_path, venv_python, prebuilt_runner, toy_pte):
    config = write_config(tmp_path / "cfg", [{"name": "x", "runner": "prebuilt", "threads": [1, 2], "rounds": 2,
                                              "model": "../m.pte"}], [{"baseline": "x_t1", "candidate": "x_t2"}])
    result = run(venv_python, MAC_PIPELINE, "--config", config, "--dry-run", "--json",
                 "--runners-dir", prebuilt_runner.parent.parent)
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    assert [e["dir"] for e in plan["experiments"]] == ["x_t1", "x_t2"]
    assert plan["experiments"][0]["model"] == str(tmp_path / "m.pte")
    assert plan["experiments"][0]["runner_path"] == str(prebuilt_runner)
    assert plan["experiments"][0]["runner_json"]["name"] == "prebuilt"
    assert [(s["round"], s["experiment"]) for s in plan["schedule"] if s["mode"] == "timing"] == [
        (0, "x_t1"), (0, "x_t2"), (1, "x_t1"), (1, "x_t2")]
    assert not (tmp_path / "cfg/run").exists()


def test_plan_stage_is_the_dry_run(tmp_path, venv_python, prebuilt_runner):
    """plan_runs.py owns the plan: the dry run prints its JSON byte for byte; its full schedule holds the
    runs --only left out in their places; its config error is one stderr line the pipeline prints once."""
    runner_dir = prebuilt_runner.parent
    (tmp_path / "damaged").mkdir()
    shutil.copy2(prebuilt_runner, tmp_path / "damaged/profiling_runner")
    (tmp_path / "damaged/runner.json").write_text("[1]")
    config = write_config(tmp_path / "cfg", [
        {"name": "a", "runner": str(runner_dir), "model": "m.pte", "threads": [1, 2], "rounds": 2},
        {"name": "b", "runner": "../damaged", "model": "m.pte", "threads": [1, 2], "rounds": 3},
        {"name": "c", "runner": "prebuilt", "model": "m.pte", "mode": "trace"}], [{"baseline": "a", "candidate": "b"}])
    flags = ["--config", config, "--only", "b", "c_t1", "--runners-dir", runner_dir.parent]
    stage = run(venv_python, REPO / "scripts/plan_runs.py", *flags, "--json")
    dry_run = run(venv_python, MAC_PIPELINE, *flags, "--dry-run", "--json")
    assert stage.returncode == dry_run.returncode == 0, stage.stderr + dry_run.stdout
    assert stage.stdout == dry_run.stdout and stage.stderr == dry_run.stderr == ""
    full = json.loads(run(venv_python, REPO / "scripts/plan_runs.py", *flags, "--full-json").stdout)
    assert full["plan"] == json.loads(stage.stdout) and full["config"] == json.loads(config.read_text())
    assert full["runner_refs"] == {"a_t1": str(runner_dir), "a_t2": str(runner_dir), "b_t1": "../damaged",
                                   "b_t2": "../damaged", "c_t1": "prebuilt"}
    assert "not a runner.json object" in full["warnings"]["b_t1"][0] and full["warnings"]["a_t1"] == []
    selected = {e["dir"] for e in full["plan"]["experiments"] if e["selected"]}
    assert selected == {"b_t1", "b_t2", "c_t1"}
    assert [s for s in full["full_schedule"] if s["experiment"] in selected] == full["plan"]["schedule"]
    assert [(s["round"], s["experiment"]) for s in full["full_schedule"] if s["mode"] == "timing"][:4] == [
        (0, "a_t1"), (0, "b_t1"), (1, "a_t1"), (1, "b_t1")]  # threads 1 pair, interleaved, then b alone
    assert len(full["full_schedule"]) == (2 + 3) * 2 + 4 + 1
    bad = write_config(tmp_path / "bad [old]", [{"name": "a", "runner": "r", "model": "m.pte"}], [
        {"baseline": "a", "candidate": "a"}], comment=1)  # a path with brackets is text, not rich markup
    stage = run(venv_python, REPO / "scripts/plan_runs.py", "--config", bad, "--json")
    assert stage.returncode == 2 and stage.stdout == "" and stage.stderr.startswith(f"error: {bad}: invalid config")
    for extra in ([], ["--dry-run"]):
        pipeline = run(venv_python, MAC_PIPELINE, "--config", bad, *extra)
        assert pipeline.returncode == 2 and pipeline.stdout == stage.stderr and pipeline.stderr == ""
        assert not (tmp_path / "bad [old]/run").exists()


# --- the quick test -----------------------------------------------------------------------


def test_run_quick_test(tmp_path, venv_python, prebuilt_runner):
    """The README's first command after setup: export, pipeline, analysis and validation pass the
    quick test's own checks, and everything lands under its workdir. A config left by an earlier quick
    test with other --runs/--rounds is written again, never silently reused."""
    (tmp_path / "config.json").write_text(json.dumps({"experiments": [{"runs": 30, "rounds": 2}]}))
    first = run(venv_python, REPO / "scripts/run_quick_test.py", "--workdir", tmp_path, "--runs", 10)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "does not match --runs 10 --rounds 5; writing it again" in first.stdout
    assert "quick test passed" in first.stdout and "speedup portable_t1->xnnpack_t1" in first.stdout
    assert "FAIL" not in first.stdout.split("quick test ───")[-1]
    [run_dir] = list((tmp_path / "runs").iterdir())
    manifest = manifest_of(run_dir)
    assert [e["status"] for e in manifest["experiments"]] == ["ok", "ok"]
    assert [e["runs"] for e in manifest["experiments"]] == [10, 10]
    validation = json.loads((run_dir / "validation.json").read_text())
    # A loaded machine may leave the median too uncertain to quote (median_ci FAIL, said plainly);
    # every other check of the quick test's run must hold.
    assert all(c["id"] == "median_ci" for c in validation["checks"] if c["status"] == "FAIL"), validation["checks"]
    assert (tmp_path / "models/toy_cnn_portable_fp32.pte").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "models", "quick_test.log", "runs"]
