"""Shared fixtures: the repository, the venv's Python, a built runner and a tiny exported model."""

from __future__ import annotations

import functools
import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def venv_python() -> str:
    """The interpreter running the tests: the venv the README's test command set up."""
    return sys.executable


@functools.cache
def load_script(name: str) -> ModuleType:
    """scripts/<name>.py as a module, to test its functions directly: scripts are standalone files,
    not a package. One module object per script for the whole session."""
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses resolve their annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def write_config(folder: Path, experiments: list[dict], compare: list[dict] | None = None, **top) -> Path:
    """A pipeline config in `folder` whose runs go to `folder/run`."""
    folder.mkdir(parents=True, exist_ok=True)
    config = {"output_root": "run", "experiments": experiments, **top}
    if compare is not None:
        config["compare"] = compare
    path = folder / "config.json"
    path.write_text(json.dumps(config, indent=2))
    return path


@pytest.fixture(scope="session")
def prebuilt_runner(venv_python: str) -> Path:
    """runners/prebuilt/profiling_runner, built (or found up to date) by build_runners.py."""
    subprocess.run([venv_python, str(REPO_ROOT / "scripts/build_runners.py")], check=True, capture_output=True)
    runner = REPO_ROOT / "runners/prebuilt/profiling_runner"
    assert runner.exists()
    return runner


# The tiny CNN every test model is made from (its source, for export subprocesses).
TINY_CNN_CLASS = """
class TinyCnn(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.fc = torch.nn.Linear(8 * 16 * 16, 10)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).flatten(1))
"""

TINY_CNN_EXPORT = """
import sys, torch
from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
from executorch.exir import to_edge_transform_and_lower
""" + TINY_CNN_CLASS + """
torch.manual_seed(0)
program = torch.export.export(TinyCnn().eval(), (torch.randn(1, 3, 16, 16),))
partitioners = [XnnpackPartitioner()] if sys.argv[2] == "xnnpack" else []
lowered = to_edge_transform_and_lower(program, partitioner=partitioners).to_executorch()
open(sys.argv[1], "wb").write(lowered.buffer)
"""


def _export_tiny(venv_python: str, out: Path, backend: str) -> Path:
    subprocess.run([venv_python, "-c", TINY_CNN_EXPORT, str(out), backend], check=True, capture_output=True)
    return out


@pytest.fixture(scope="session")
def toy_pte(tmp_path_factory, venv_python: str) -> Path:
    """A tiny CNN lowered to XNNPACK (fp32)."""
    return _export_tiny(venv_python, tmp_path_factory.mktemp("models") / "tiny_xnnpack_fp32.pte", "xnnpack")


@pytest.fixture(scope="session")
def toy_portable_pte(tmp_path_factory, venv_python: str) -> Path:
    """The same tiny CNN with no delegate: every operator runs on the portable/optimized kernels."""
    return _export_tiny(venv_python, tmp_path_factory.mktemp("models") / "tiny_portable_fp32.pte", "portable")
