"""scripts/export_model.py: built-in and user models in fp32/fp16/int8, the files it writes,
the check against eager PyTorch, ETRecord + ETDump in the Inspector, and bad input.

Exports of the whole matrix are run in-process (importing the script) to save the ~5 s of torch
and ExecuTorch imports per export; command-line behaviour (exit codes, one-line errors, --json,
--list) is tested through real subprocesses. The default run covers every dtype on the small
models and one dtype per 224x224 model; `-m slow` runs the full model x dtype matrix.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

import pytest
from conftest import load_script
import torch

BUILTINS = ("toy_cnn", "mobilenet_v3_small", "vit_tiny", "mlp")
DTYPES = ("fp32", "fp16", "int8")
DEFAULT_MATRIX = {
    ("toy_cnn", "fp32"), ("toy_cnn", "fp16"), ("toy_cnn", "int8"),
    ("mlp", "fp32"), ("mlp", "fp16"), ("mlp", "int8"),
    ("mobilenet_v3_small", "fp32"), ("vit_tiny", "fp16"),
}
# The XNNPACK operator names the runtime reports for each dtype (the datatype tag in parentheses).
XNNPACK_CONV_BY_DTYPE = {
    "fp32": "Convolution (NHWC, F32)",
    "fp16": "Convolution (NHWC, F16)",
    "int8": "Convolution (NHWC, QC8)",
}


@dataclass(frozen=True)
class Exported:
    metadata: dict[str, Any]
    pte: Path
    etrecord: Path
    json_path: Path


def matrix_params() -> list[Any]:
    return [
        pytest.param(model, dtype, id=f"{model}-{dtype}",
                     marks=() if (model, dtype) in DEFAULT_MATRIX else pytest.mark.slow)
        for model in BUILTINS
        for dtype in DTYPES
    ]


@pytest.fixture(scope="session")
def export_script(repo_root: Path) -> ModuleType:
    return load_script("export_model")


@pytest.fixture(scope="session")
def export(tmp_path_factory, export_script: ModuleType) -> Callable[..., Exported]:
    """export(model, dtype, backend) -> Exported, each combination exported once per session."""
    outdir = tmp_path_factory.mktemp("exported")
    done: dict[tuple[str, str, str], Exported] = {}

    def run(model: str, dtype: str, backend: str = "xnnpack") -> Exported:
        key = (model, dtype, backend)
        if key not in done:
            code = export_script.main(
                ["--model", model, "--dtype", dtype, "--backend", backend, "--outdir", str(outdir)]
            )
            assert code == 0, f"export of {key} exited {code}"
            stem = outdir / f"{model}_{backend}_{dtype}"
            json_path = stem.with_suffix(".json")
            done[key] = Exported(
                json.loads(json_path.read_text()), stem.with_suffix(".pte"),
                stem.with_suffix(".etrecord"), json_path,
            )
        return done[key]

    return run


def run_cli(venv_python: str, repo_root: Path, *args: str) -> subprocess.CompletedProcess:
    """The script as a learner runs it: a fresh process, its exit code and both streams."""
    return subprocess.run(
        [venv_python, str(repo_root / "scripts/export_model.py"), *args],
        capture_output=True, text=True, timeout=600,
    )


@pytest.fixture
def cli(export_script: ModuleType, capfd: pytest.CaptureFixture) -> Callable[..., subprocess.CompletedProcess]:
    """The script's main() in this process (no 5 s of imports per call), captured at the fd level
    like a subprocess would be, with argparse's exit turned into a return code."""

    def run(*args: str) -> subprocess.CompletedProcess:
        capfd.readouterr()
        try:
            code = export_script.main(list(args))
        except SystemExit as exit_:
            code = exit_.code
        out, err = capfd.readouterr()
        return subprocess.CompletedProcess(list(args), code, out, err)

    return run


def one_line_error(result: subprocess.CompletedProcess) -> str:
    """The error text, after checking it is a single line with no traceback."""
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: ")
    return lines[0]


def run_pte(pte: Path, inputs: tuple[torch.Tensor, ...]) -> list[torch.Tensor]:
    from executorch.runtime import Runtime

    return list(Runtime.get().load_program(pte).load_method("forward").execute(inputs))


def inputs_from_metadata(metadata: dict[str, Any]) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(1234)
    return tuple(
        torch.randn(spec["shape"], generator=generator).to(getattr(torch, spec["dtype"]))
        for spec in metadata["inputs"]
    )


# ---------------------------------------------------------------------------------- listing


def test_list_names_every_builtin_with_inputs(venv_python: str, repo_root: Path) -> None:
    result = run_cli(venv_python, repo_root, "--list", "--json")
    assert result.returncode == 0, result.stderr
    listed = json.loads(result.stdout)
    assert [m["name"] for m in listed["models"]] == list(BUILTINS)
    assert listed["dtypes"] == list(DTYPES)
    shapes = {m["name"]: m["inputs"] for m in listed["models"]}
    assert shapes["mobilenet_v3_small"] == shapes["vit_tiny"] == "1x3x224x224"
    assert all(m["description"] and m["parameters"] > 0 for m in listed["models"])

def test_list_table_names_every_builtin(cli: Callable[..., subprocess.CompletedProcess]) -> None:
    table = cli("--list")
    assert table.returncode == 0
    assert all(name in table.stdout for name in BUILTINS)


# -------------------------------------------------------------------------- the three dtypes


def check_files_match_metadata(exported: Exported) -> None:
    meta = exported.metadata
    assert exported.pte.stat().st_size == meta["files"]["pte_bytes"]
    assert exported.etrecord.stat().st_size == meta["files"]["etrecord_bytes"]
    assert meta["files"]["pte"] == exported.pte.name
    assert meta["versions"]["torch"] == torch.__version__
    import executorch.version

    assert meta["versions"]["executorch"] == executorch.version.__version__
    assert meta["export_seconds"] == pytest.approx(sum(meta["stage_seconds"].values()), abs=0.01)
    assert not list(exported.pte.parent.glob(".*partial*")), "temporary files left behind"


def test_export_fp32(export: Callable[..., Exported]) -> None:
    exported = export("toy_cnn", "fp32")
    meta = exported.metadata
    check_files_match_metadata(exported)
    assert (meta["model"], meta["dtype"], meta["backend"]) == ("toy_cnn", "fp32", "xnnpack")
    assert meta["inputs"] == [{"shape": [1, 3, 64, 64], "dtype": "float32"}]
    assert meta["delegated_share"] == 1.0 and meta["non_delegated_ops"] == {}
    assert meta["delegated_ops"]["aten.convolution.default"] == 3
    assert meta["graph_nodes"] == meta["delegated_nodes"] + meta["non_delegated_nodes"]
    assert meta["verification"]["status"] == "passed"


def test_export_fp16(export: Callable[..., Exported]) -> None:
    exported = export("toy_cnn", "fp16")
    meta = exported.metadata
    check_files_match_metadata(exported)
    assert meta["inputs"] == [{"shape": [1, 3, 64, 64], "dtype": "float16"}]
    # fp16 weights and activations: everything still goes to XNNPACK, which runs F16 kernels.
    assert meta["delegated_share"] == 1.0
    outputs = run_pte(exported.pte, inputs_from_metadata(meta))
    assert outputs[0].dtype == torch.float16
    assert meta["verification"]["status"] == "passed"
    assert meta["verification"]["cosine_similarity"] >= 0.999


def test_export_int8(export: Callable[..., Exported]) -> None:
    exported = export("toy_cnn", "int8")
    meta = exported.metadata
    check_files_match_metadata(exported)
    assert meta["inputs"] == [{"shape": [1, 3, 64, 64], "dtype": "float32"}]
    assert meta["calibration"]["batches"] == 8 and meta["calibration"]["source"].startswith("generated")
    assert "quantize" in meta["stage_seconds"]
    # Quantize/dequantize pairs around every operator are absorbed into the XNNPACK delegate.
    assert any("quantize_per_tensor" in op for op in meta["delegated_ops"])
    assert meta["delegated_share"] == 1.0
    assert meta["files"]["pte_bytes"] < export("toy_cnn", "fp32").metadata["files"]["pte_bytes"]
    assert meta["verification"]["status"] == "passed"


def test_portable_backend_delegates_nothing(export: Callable[..., Exported]) -> None:
    meta = export("toy_cnn", "fp32", "portable").metadata
    assert meta["delegated_nodes"] == 0 and meta["delegate_subgraphs"] == 0
    assert meta["non_delegated_ops"]["aten.convolution.default"] == 3
    assert meta["verification"]["status"] == "passed"


def test_verification_numbers_are_real(export: Callable[..., Exported], export_script: ModuleType) -> None:
    """Recompute the recorded error: same seeded model and inputs, our own comparison."""
    exported = export("toy_cnn", "fp32")
    model = export_script.load_builtin("toy_cnn")
    with torch.no_grad():
        expected = model.module(*model.example_inputs)
    actual = run_pte(exported.pte, model.example_inputs)[0]
    max_abs = (actual - expected).abs().max().item()
    assert exported.metadata["verification"]["max_abs_error"] == pytest.approx(max_abs, rel=1e-3, abs=1e-12)


# ----------------------------------------------------------------- every built-in x every dtype


@pytest.mark.parametrize("model,dtype", matrix_params())
def test_builtin_exports_loads_and_runs(export: Callable[..., Exported], model: str, dtype: str) -> None:
    exported = export(model, dtype)
    meta = exported.metadata
    check_files_match_metadata(exported)
    outputs = run_pte(exported.pte, inputs_from_metadata(meta))
    assert outputs and all(torch.isfinite(o.float()).all() for o in outputs)
    check = meta["verification"]
    assert check["status"] == "passed", check
    assert check["max_rel_error"] <= check["tolerance"]["max_rel_error"]
    assert check["cosine_similarity"] >= check["tolerance"]["min_cosine"]
    assert meta["delegated_share"] >= 0.8, meta["non_delegated_ops"]
    assert meta["delegate_subgraphs"] >= 1


@pytest.mark.parametrize(
    "model",
    [pytest.param(m, marks=() if m in ("toy_cnn", "mlp") else pytest.mark.slow) for m in BUILTINS],
)
def test_int8_smaller_than_fp32(export: Callable[..., Exported], model: str) -> None:
    fp32 = export(model, "fp32").metadata["files"]["pte_bytes"]
    int8 = export(model, "int8").metadata["files"]["pte_bytes"]
    assert int8 < fp32
    if model == "mlp":  # weights are almost all of the file: 1 byte per weight instead of 4
        assert int8 < 0.3 * fp32
        assert export(model, "fp16").metadata["files"]["pte_bytes"] < 0.55 * fp32


# ----------------------------------------------------------------------- ETRecord + ETDump


@pytest.mark.filterwarnings("ignore:Output Buffer not found", "ignore:Unsupported kwarg")
@pytest.mark.parametrize("dtype", DTYPES)
def test_etrecord_links_runner_etdump_to_graph(
    export: Callable[..., Exported], prebuilt_runner: Path, tmp_path: Path, dtype: str, repo_root: Path
) -> None:
    from executorch.devtools import Inspector

    exported = export("toy_cnn", dtype)
    etdump = tmp_path / "trace.etdump"
    subprocess.run(
        [str(prebuilt_runner), "--model_path", str(exported.pte), "--num_executions", "2",
         "--etdump_path", str(etdump)],
        check=True, capture_output=True, timeout=120,
    )
    inspector = Inspector(etdump_path=str(etdump), etrecord=str(exported.etrecord))
    events = [event for block in inspector.event_blocks for event in block.events]
    xnnpack_names = {e.name for e in events if e.delegate_backend_name == "XnnpackBackend"}
    assert any(name.startswith(XNNPACK_CONV_BY_DTYPE[dtype]) for name in xnnpack_names), xnnpack_names
    # The operator types of the delegate call come from the ETRecord's graph, not the ETDump.
    delegate_calls = [e for e in events if e.name == "DELEGATE_CALL"]
    assert delegate_calls and "aten.convolution.default" in delegate_calls[0].op_types
    # trace_breakdown.py reads the same two files without the Inspector and finds the same graph
    # nodes (the Inspector appends "_" to each name for TensorBoard) and the same operators.
    breakdown = load_script("trace_breakdown")
    trace = breakdown.load_trace(etdump, exported.etrecord)
    lowered = ";".join(name.removesuffix("_") for name in delegate_calls[0].stack_traces)
    assert {e.node for e in trace.runs[0] if e.kind == "op"} == {lowered}
    assert {e.name for e in trace.runs[0] if e.kind == "op"} == xnnpack_names - {"DELEGATE_CALL"}
    assert {e.backend for e in trace.runs[0] if e.kind in ("op", "delegate_call")} == {"XNNPACK"}


# ----------------------------------------------------------------------------- user models


@pytest.mark.parametrize("dtype", ["fp32", "int8"])
def test_user_model_from_template(
    venv_python: str, repo_root: Path, tmp_path: Path, cli: Callable[..., subprocess.CompletedProcess], dtype: str
) -> None:
    model_file = tmp_path / "my_model.py"
    shutil.copy(repo_root / "scripts/model_template.py", model_file)
    args = ("--model-file", str(model_file), "--dtype", dtype, "--outdir", str(tmp_path / "out"), "--json")
    # fp32 exactly as a learner runs it (a fresh process); int8 in-process to save the imports.
    result = run_cli(venv_python, repo_root, *args) if dtype == "fp32" else cli(*args)
    assert result.returncode == 0, result.stdout + result.stderr
    meta = json.loads(result.stdout)
    assert meta["model"] == "my_model" and meta["source"] == str(model_file)
    assert meta["description"].startswith("Keyword-spotting CNN")
    assert meta["verification"]["status"] == "passed"
    assert (tmp_path / "out" / f"my_model_xnnpack_{dtype}.pte").is_file()
    if dtype == "int8":
        assert meta["calibration"] == {"batches": 8, "source": "get_calibration_inputs()"}


DYNAMIC_BATCH_MODEL = '''
import torch
def get_model():
    return torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4))
def get_example_inputs():
    return torch.randn(2, 16)
def get_dynamic_shapes():
    return ({0: torch.export.Dim("batch", min=1, max=8)},)
'''


def test_user_model_with_dynamic_shapes(tmp_path: Path, cli: Callable[..., subprocess.CompletedProcess]) -> None:
    model_file = tmp_path / "dynamic_batch.py"
    model_file.write_text(DYNAMIC_BATCH_MODEL)
    result = cli("--model-file", str(model_file), "--outdir", str(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    meta = json.loads((tmp_path / "dynamic_batch_xnnpack_fp32.json").read_text())
    assert meta["dynamic_shapes"] is True
    outputs = run_pte(tmp_path / "dynamic_batch_xnnpack_fp32.pte", (torch.randn(5, 16),))
    assert outputs[0].shape == (5, 4)


# ------------------------------------------------------------------------------- bad input


def test_unknown_model_lists_valid_names(venv_python: str, repo_root: Path, tmp_path: Path) -> None:
    line = one_line_error(run_cli(venv_python, repo_root, "--model", "resnet50", "--outdir", str(tmp_path / "o")))
    assert "resnet50" in line and all(name in line for name in BUILTINS)
    assert not (tmp_path / "o").exists()


def test_model_file_without_required_functions(tmp_path: Path, cli: Callable[..., subprocess.CompletedProcess]) -> None:
    model_file = tmp_path / "half_done.py"
    model_file.write_text("import torch\ndef get_model():\n    return torch.nn.Linear(4, 4)\n")
    line = one_line_error(cli("--model-file", str(model_file), "--outdir", str(tmp_path)))
    assert "get_example_inputs" in line and "model_template.py" in line


BRANCHING_MODEL = '''
import torch
class Branchy(torch.nn.Module):
    def forward(self, x):
        if x.sum() > 0:
            return x * 2
        return x - 1
def get_model():
    return Branchy()
def get_example_inputs():
    return (torch.randn(2, 4),)
'''


def test_torch_export_failure_names_cause_and_leaves_nothing(
    tmp_path: Path, cli: Callable[..., subprocess.CompletedProcess]
) -> None:
    model_file = tmp_path / "branchy.py"
    model_file.write_text(BRANCHING_MODEL)
    outdir = tmp_path / "out"
    line = one_line_error(cli("--model-file", str(model_file), "--outdir", str(outdir)))
    assert "torch.export failed" in line
    assert "branchy.py:5" in line  # the `if` on a tensor value
    assert "hint:" in line and "torch.cond" in line
    assert not outdir.exists() or not any(outdir.iterdir())


def test_unsupported_dtype_is_refused(tmp_path: Path, cli: Callable[..., subprocess.CompletedProcess]) -> None:
    model_file = tmp_path / "fp32_only.py"
    model_file.write_text(
        "import torch\nSUPPORTED_DTYPES = ('fp32',)\n"
        "def get_model():\n    return torch.nn.Linear(4, 4)\n"
        "def get_example_inputs():\n    return (torch.randn(2, 4),)\n"
    )
    line = one_line_error(cli("--model-file", str(model_file), "--dtype", "int8", "--outdir", str(tmp_path / "o")))
    assert "--dtype int8" in line and "fp32" in line
    line = one_line_error(cli("--model", "toy_cnn", "--backend", "portable", "--dtype", "int8",
                              "--outdir", str(tmp_path / "o")))
    assert "--backend xnnpack" in line
    line = one_line_error(cli("--model", "toy_cnn", "--dtype", "bf16"))
    assert "bf16" in line
    assert not (tmp_path / "o").exists()


def test_existing_outputs_are_kept_unless_forced(
    tmp_path: Path, export: Callable[..., Exported], cli: Callable[..., subprocess.CompletedProcess]
) -> None:
    original = export("toy_cnn", "fp32")
    for path in (original.pte, original.etrecord, original.json_path):
        shutil.copy(path, tmp_path / path.name)
    before = (tmp_path / original.json_path.name).read_bytes()
    line = one_line_error(cli("--model", "toy_cnn", "--outdir", str(tmp_path)))
    assert "already exists" in line and "--force" in line
    assert (tmp_path / original.json_path.name).read_bytes() == before

    forced = cli("--model", "toy_cnn", "--outdir", str(tmp_path), "--force", "--json")
    assert forced.returncode == 0, forced.stderr
    metadata = json.loads(forced.stdout)  # --json: stdout is only the metadata
    assert metadata == json.loads((tmp_path / original.json_path.name).read_text())
    assert (tmp_path / original.json_path.name).read_bytes() != before


STATEFUL_MODEL = '''
import torch
class CountsCalls(torch.nn.Module):
    """Python state: torch.export freezes the count it saw while tracing."""
    def __init__(self):
        super().__init__()
        self.calls = 0
    def forward(self, x):
        self.calls += 1
        return x * self.calls
def get_model():
    return CountsCalls()
def get_example_inputs():
    return (torch.randn(2, 4),)
'''


def test_failed_verification_is_loud(tmp_path: Path, cli: Callable[..., subprocess.CompletedProcess]) -> None:
    model_file = tmp_path / "stateful.py"
    model_file.write_text(STATEFUL_MODEL)
    result = cli("--model-file", str(model_file), "--outdir", str(tmp_path), "--strict-verify")
    assert result.returncode == 3, result.stdout + result.stderr
    assert "verification FAILED" in result.stdout and "relative 1 " in result.stdout
    meta = json.loads((tmp_path / "stateful_xnnpack_fp32.json").read_text())
    assert meta["verification"]["status"] == "failed"
    assert meta["verification"]["max_rel_error"] == pytest.approx(1.0)
