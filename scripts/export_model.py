#!/usr/bin/env python3
"""Export a PyTorch model to an ExecuTorch program (.pte) ready for profiling.

Takes one of the built-in models (see --list) or your own model file, exports it in fp32, fp16
or int8, lowers it to the XNNPACK backend (or leaves it on the portable backend), and writes
three files to --outdir:

  <model>_<backend>_<dtype>.pte       the program the profiling runner loads
  <model>_<backend>_<dtype>.etrecord  the export-time graphs, so the ExecuTorch Inspector can
                                      link the events of an ETDump to the model's operators
  <model>_<backend>_<dtype>.json      metadata: input shapes, parameter count, which operators
                                      XNNPACK took, file sizes, export time, versions and the
                                      result of the check below

After exporting it runs the .pte with the ExecuTorch Python runtime and compares the outputs
with eager PyTorch in fp32 (max abs error, cosine similarity, a tolerance per dtype).

A model file is a Python file that defines get_model() and get_example_inputs(), and optionally
get_dynamic_shapes(), get_calibration_inputs() and SUPPORTED_DTYPES; copy
scripts/model_template.py to start one.

Existing outputs are never replaced unless you pass --force. Exit code: 0 on success, 1 on bad
input or a failed export, 3 when --strict-verify is given and the check fails (the files are
still written, their JSON records the failure), 130 when interrupted (no file is written).

Example:
    python scripts/export_model.py --model toy_cnn --dtype int8
    python scripts/export_model.py --model-file my_model.py --dtype fp16 --outdir models/
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime as dt
import hashlib
import importlib.util
import io
import json
import math
import os
import platform
import re
import signal
import sys
import tempfile
import time
import traceback
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Iterator, Sequence

try:
    import torch
    from torch import nn
    from rich.console import Console
    from rich.table import Table
except KeyboardInterrupt:  # torch takes seconds to import: Ctrl-C there is a normal stop
    print("interrupted while starting: nothing was written; run the same command again", file=sys.stderr)
    sys.exit(130)

SCHEMA_VERSION = 1
DTYPES = ("fp32", "fp16", "int8")
BACKENDS = ("xnnpack", "portable")
OUTPUT_SUFFIXES = (".pte", ".etrecord", ".json")
CALIBRATION_BATCHES = 8
SEED = 0
EXIT_ERROR = 1
EXIT_VERIFY_FAILED = 3
EXIT_INTERRUPTED = 130
TEMPLATE_HINT = "copy scripts/model_template.py to start a model file"
EXPORT_LIBRARIES = (
    "executorch.exir",
    "executorch.backends.xnnpack.partition.xnnpack_partitioner",
    "executorch.backends.xnnpack.quantizer.xnnpack_quantizer",
    "torchao.quantization.pt2e.quantize_pt2e",
)


class ExportError(Exception):
    """A problem the user can fix; the message is one line naming the problem and the fix."""


# ----------------------------------------------------------------------------------------------
# Built-in models: plain PyTorch with random weights (latency does not depend on trained values).
# ----------------------------------------------------------------------------------------------


class ToyCNN(nn.Module):
    """Three conv-BN-ReLU stages and a linear classifier: exports in seconds, runs in about 1 ms."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            conv_bn_act(3, 16, kernel=3, stride=1, activation=nn.ReLU),
            conv_bn_act(16, 32, kernel=3, stride=2, activation=nn.ReLU),
            conv_bn_act(32, 64, kernel=3, stride=2, activation=nn.ReLU),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


def conv_bn_act(
    in_ch: int,
    out_ch: int,
    kernel: int,
    stride: int,
    activation: type[nn.Module] | None,
    groups: int = 1,
) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(in_ch, out_ch, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_ch),
    ]
    if activation is not None:
        layers.append(activation())
    return nn.Sequential(*layers)


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round a channel count to a multiple of 8, never dropping more than 10%, as MobileNets do."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        squeezed = make_divisible(channels / 4)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.reduce = nn.Conv2d(channels, squeezed, 1)
        self.relu = nn.ReLU()
        self.expand = nn.Conv2d(squeezed, channels, 1)
        self.gate = nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(self.expand(self.relu(self.reduce(self.pool(x)))))


class InvertedResidual(nn.Module):
    """Expand (1x1) -> depthwise (kxk) -> optional squeeze-excite -> project (1x1)."""

    def __init__(
        self,
        in_ch: int,
        kernel: int,
        expanded: int,
        out_ch: int,
        use_se: bool,
        activation: type[nn.Module],
        stride: int,
    ) -> None:
        super().__init__()
        self.use_residual = stride == 1 and in_ch == out_ch
        layers: list[nn.Module] = []
        if expanded != in_ch:
            layers.append(conv_bn_act(in_ch, expanded, 1, 1, activation))
        layers.append(conv_bn_act(expanded, expanded, kernel, stride, activation, groups=expanded))
        if use_se:
            layers.append(SqueezeExcite(expanded))
        layers.append(conv_bn_act(expanded, out_ch, 1, 1, activation=None))
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return x + out if self.use_residual else out


class MobileNetV3Small(nn.Module):
    """The MobileNetV3-Small layer table (Howard et al. 2019) at 224x224, 1000 classes."""

    # kernel, expanded channels, output channels, squeeze-excite, hardswish, stride
    BLOCKS = (
        (3, 16, 16, True, False, 2),
        (3, 72, 24, False, False, 2),
        (3, 88, 24, False, False, 1),
        (5, 96, 40, True, True, 2),
        (5, 240, 40, True, True, 1),
        (5, 240, 40, True, True, 1),
        (5, 120, 48, True, True, 1),
        (5, 144, 48, True, True, 1),
        (5, 288, 96, True, True, 2),
        (5, 576, 96, True, True, 1),
        (5, 576, 96, True, True, 1),
    )

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        layers: list[nn.Module] = [conv_bn_act(3, 16, 3, 2, nn.Hardswish)]
        channels = 16
        for kernel, expanded, out_ch, use_se, hardswish, stride in self.BLOCKS:
            activation = nn.Hardswish if hardswish else nn.ReLU
            layers.append(
                InvertedResidual(channels, kernel, expanded, out_ch, use_se, activation, stride)
            )
            channels = out_ch
        layers.append(conv_bn_act(channels, 576, 1, 1, nn.Hardswish))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            nn.Linear(576, 1024), nn.Hardswish(), nn.Dropout(0.2), nn.Linear(1024, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


class SelfAttention(nn.Module):
    """Multi-head self-attention written out as matmuls so each step is visible in a profile.

    Slices and 3-D batched matmuls keep the whole block inside XNNPACK: a 4-D `q @ k` would
    decompose into expand copies that run outside the delegate.
    """

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, dim = x.shape
        head_dim = dim // self.heads
        return x.reshape(batch, tokens, self.heads, head_dim).permute(0, 2, 1, 3).reshape(
            batch * self.heads, tokens, head_dim
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, dim = x.shape
        qkv = self.qkv(x)
        q = self.split_heads(qkv[:, :, :dim])
        k = self.split_heads(qkv[:, :, dim : 2 * dim])
        v = self.split_heads(qkv[:, :, 2 * dim :])
        attention = torch.softmax(torch.bmm(q * self.scale, k.transpose(1, 2)), dim=-1)
        out = torch.bmm(attention, v).reshape(batch, self.heads, tokens, dim // self.heads)
        return self.proj(out.permute(0, 2, 1, 3).reshape(batch, tokens, dim))


class EncoderBlock(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attention = SelfAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(
            nn.Linear(dim, dim * mlp_ratio), nn.GELU(), nn.Linear(dim * mlp_ratio, dim)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class VisionTransformerTiny(nn.Module):
    """ViT-Tiny widths (192 wide, 3 heads, patch 16) with 4 encoder blocks instead of 12."""

    def __init__(
        self,
        image: int = 224,
        patch: int = 16,
        dim: int = 192,
        depth: int = 4,
        heads: int = 3,
        mlp_ratio: int = 4,
        num_classes: int = 1000,
    ) -> None:
        super().__init__()
        self.patch_embed = nn.Conv2d(3, dim, kernel_size=patch, stride=patch)
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.pos_embed = nn.Parameter(torch.randn(1, (image // patch) ** 2 + 1, dim) * 0.02)
        self.blocks = nn.Sequential(*[EncoderBlock(dim, heads, mlp_ratio) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        patches = self.patch_embed(x).flatten(2).transpose(1, 2)
        cls = self.cls_token.expand(patches.shape[0], -1, -1)
        tokens = torch.cat([cls, patches], dim=1) + self.pos_embed
        return self.head(self.norm(self.blocks(tokens))[:, 0])


class GemmMLP(nn.Module):
    """Linear layers on a 32-row batch: almost all time goes to matrix multiplication."""

    def __init__(self, features: int = 512, hidden: int = 1024, hidden_layers: int = 4) -> None:
        super().__init__()
        widths = [features] + [hidden] * hidden_layers
        layers: list[nn.Module] = []
        for in_f, out_f in zip(widths, widths[1:]):
            layers += [nn.Linear(in_f, out_f), nn.ReLU()]
        layers.append(nn.Linear(hidden, features))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


@dataclass(frozen=True)
class BuiltinModel:
    description: str
    input_shapes: tuple[tuple[int, ...], ...]
    build: Callable[[], nn.Module]


def builtin_models() -> dict[str, BuiltinModel]:
    return {
        "toy_cnn": BuiltinModel(
            "3 conv-BN-ReLU + linear at 64x64; seconds to export, ~1 ms to run (quick tests)",
            ((1, 3, 64, 64),),
            ToyCNN,
        ),
        "mobilenet_v3_small": BuiltinModel(
            "MobileNetV3-Small at 224x224: depthwise-separable convs, hardswish, squeeze-excite",
            ((1, 3, 224, 224),),
            MobileNetV3Small,
        ),
        "vit_tiny": BuiltinModel(
            "ViT-Tiny-style transformer at 224x224: patch embed, 4 attention blocks, LayerNorm, GELU",
            ((1, 3, 224, 224),),
            VisionTransformerTiny,
        ),
        "mlp": BuiltinModel(
            "GEMM-heavy MLP: 32 rows x 512 features through 4 hidden layers of 1024",
            ((32, 512),),
            GemmMLP,
        ),
    }


# ----------------------------------------------------------------------------------------------
# Loading a model: built-in or from a user's file.
# ----------------------------------------------------------------------------------------------


@dataclass
class ModelUnderExport:
    name: str
    source: str
    description: str
    module: nn.Module
    example_inputs: tuple[Any, ...]
    dynamic_shapes: Any = None
    calibration_inputs: list[tuple[Any, ...]] | None = None
    supported_dtypes: tuple[str, ...] = DTYPES


def random_like(example: Any, generator: torch.Generator) -> Any:
    """A fresh random tensor shaped like a float example; non-float inputs are reused as given."""
    if isinstance(example, torch.Tensor) and example.is_floating_point():
        return torch.randn(example.shape, generator=generator, dtype=example.dtype)
    return example


def generated_batches(example_inputs: tuple[Any, ...], count: int) -> list[tuple[Any, ...]]:
    generator = torch.Generator().manual_seed(SEED + 1)
    return [tuple(random_like(x, generator) for x in example_inputs) for _ in range(count)]


def load_builtin(name: str) -> ModelUnderExport:
    models = builtin_models()
    if name not in models:
        raise ExportError(
            f"unknown model '{name}': choose one of {', '.join(models)} "
            "(or pass --model-file for your own model)"
        )
    spec = models[name]
    torch.manual_seed(SEED)
    generator = torch.Generator().manual_seed(SEED)
    inputs = tuple(torch.randn(shape, generator=generator) for shape in spec.input_shapes)
    return ModelUnderExport(name, "builtin", spec.description, spec.build().eval(), inputs)


def user_code_location(exc: BaseException, model_file: Path) -> str:
    """'my_model.py:23' for the deepest frame of the user's file in the traceback, if any."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if Path(f.filename) == model_file]
    if frames:
        return f"{model_file.name}:{frames[-1].lineno}"
    match = re.search(rf'File "[^"]*{re.escape(model_file.name)}", line (\d+)', str(exc))
    if match:
        return f"{model_file.name}:{match.group(1)}"
    if isinstance(exc, SyntaxError) and exc.lineno:
        return f"{model_file.name}:{exc.lineno}"
    return ""


def first_line(exc: BaseException) -> str:
    if isinstance(exc, SyntaxError):
        return f"SyntaxError: {exc.msg}"
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0] if lines else 'no message'}"


def exit_problem(exc: SystemExit, model_file: Path, stage: str, stderr_text: str) -> ExportError:
    """A model file that calls sys.exit() or argparse: name it, never exit as if nothing happened."""
    said = next((line.strip() for line in reversed(stderr_text.splitlines()) if line.strip()), "")
    return ExportError(
        f"{model_file.name} exited (code {exc.code!r}) {stage}{' (' + said + ')' if said else ''}: "
        "a model file must not call sys.exit() or parse command-line arguments outside "
        "`if __name__ == '__main__':`; move that code under it"
    )


@contextlib.contextmanager
def user_code_context(model_file: Path, stage: str) -> Iterator[None]:
    """Run user code with its own argv (not export_model.py's); a SystemExit becomes an ExportError.

    What the code writes to stderr is held back and shown afterwards, unless it exited: then only
    its last line goes into the error (argparse would otherwise print a usage under our name).
    """
    saved_argv, held_stderr = sys.argv, io.StringIO()
    sys.argv = [str(model_file)]
    try:
        with contextlib.redirect_stderr(held_stderr):
            yield
    except SystemExit as exc:
        raise exit_problem(exc, model_file, stage, held_stderr.getvalue()) from None
    else:
        sys.stderr.write(held_stderr.getvalue())
    finally:
        sys.argv = saved_argv


def call_user_function(module: ModuleType, name: str, model_file: Path) -> Any:
    try:
        with user_code_context(model_file, f"in {name}()"):
            return getattr(module, name)()
    except ExportError:
        raise
    except Exception as exc:
        where = user_code_location(exc, model_file)
        raise ExportError(
            f"{name}() in {model_file.name} failed{' at ' + where if where else ''}: "
            f"{first_line(exc)}"
        ) from exc


def as_input_tuple(value: Any, what: str, model_file: Path) -> tuple[Any, ...]:
    if isinstance(value, torch.Tensor):
        return (value,)
    if isinstance(value, (tuple, list)) and value:
        return tuple(value)
    raise ExportError(
        f"{what} in {model_file.name} must return a tensor or a tuple of tensors, "
        f"got {type(value).__name__}"
    )


def import_model_file(model_file: Path) -> ModuleType:
    if not model_file.is_file():
        raise ExportError(f"model file {model_file} not found: check the path ({TEMPLATE_HINT})")
    spec = importlib.util.spec_from_file_location(f"user_model_{model_file.stem}", model_file)
    if spec is None or spec.loader is None:
        raise ExportError(f"{model_file} is not a Python file: {TEMPLATE_HINT}")
    module = importlib.util.module_from_spec(spec)
    # Registered before running it, as a normal import does: dataclasses in the file need it.
    sys.modules[spec.name] = module
    try:
        with user_code_context(model_file, "while being imported"):
            spec.loader.exec_module(module)
    except ExportError:
        raise
    except Exception as exc:
        where = user_code_location(exc, model_file)
        raise ExportError(
            f"could not import {model_file.name}{' (' + where + ')' if where else ''}: "
            f"{first_line(exc)}"
        ) from exc
    return module


def load_model_file(model_file: Path) -> ModelUnderExport:
    model_file = model_file.resolve()
    module = import_model_file(model_file)
    missing = [f for f in ("get_model", "get_example_inputs") if not callable(getattr(module, f, None))]
    if missing:
        raise ExportError(
            f"{model_file.name} must define get_model() and get_example_inputs(); "
            f"missing: {', '.join(missing)} ({TEMPLATE_HINT})"
        )
    torch.manual_seed(SEED)
    model = call_user_function(module, "get_model", model_file)
    if not isinstance(model, nn.Module):
        raise ExportError(
            f"get_model() in {model_file.name} must return a torch.nn.Module, "
            f"got {type(model).__name__}"
        )
    inputs = as_input_tuple(
        call_user_function(module, "get_example_inputs", model_file), "get_example_inputs()", model_file
    )
    dynamic_shapes = None
    if callable(getattr(module, "get_dynamic_shapes", None)):
        dynamic_shapes = call_user_function(module, "get_dynamic_shapes", model_file)
    calibration = None
    if callable(getattr(module, "get_calibration_inputs", None)):
        batches = call_user_function(module, "get_calibration_inputs", model_file)
        calibration = [as_input_tuple(b, "get_calibration_inputs()", model_file) for b in batches]
    supported = tuple(getattr(module, "SUPPORTED_DTYPES", DTYPES))
    unknown = [d for d in supported if d not in DTYPES]
    if unknown:
        raise ExportError(
            f"SUPPORTED_DTYPES in {model_file.name} lists {', '.join(map(str, unknown))}: "
            f"use only {', '.join(DTYPES)}"
        )
    description = next(iter((module.__doc__ or "").strip().splitlines()), "")
    return ModelUnderExport(
        name=re.sub(r"[^A-Za-z0-9_-]", "_", model_file.stem),
        source=str(model_file),
        description=description,
        module=model.eval(),
        example_inputs=inputs,
        dynamic_shapes=dynamic_shapes,
        calibration_inputs=calibration,
        supported_dtypes=supported,
    )


def check_dtype_supported(model: ModelUnderExport, dtype: str, backend: str) -> None:
    if dtype not in model.supported_dtypes:
        raise ExportError(
            f"model '{model.name}' does not support --dtype {dtype}: "
            f"its SUPPORTED_DTYPES are {', '.join(model.supported_dtypes)}"
        )
    if dtype == "int8" and backend != "xnnpack":
        raise ExportError(
            "--dtype int8 needs --backend xnnpack: the portable backend has no int8 compute "
            "kernels, so use fp32 or fp16 with --backend portable"
        )


# ----------------------------------------------------------------------------------------------
# Quiet library output: torch, torchao and the ExecuTorch runtime print warnings and log lines
# that bury the result. They go to a temporary file; an error message quotes the relevant line.
# ----------------------------------------------------------------------------------------------


@dataclass
class CapturedOutput:
    text: str = ""

    def error_line(self) -> str:
        """The first runtime log line that reports an error (ExecuTorch logs 'E 00:00:01 ...')."""
        for line in self.text.splitlines():
            if re.search(r"(^|\s)E \d|\berror\b|Missing operator", line, re.IGNORECASE):
                return line.strip()
        return ""


@contextlib.contextmanager
def library_output_captured(enabled: bool) -> Iterator[CapturedOutput]:
    """Send file descriptors 1 and 2 (C++ logs) and sys.stdout/sys.stderr to a temporary file."""
    captured = CapturedOutput()
    if not enabled:
        yield captured
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    with tempfile.TemporaryFile(mode="w+", errors="replace") as sink, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for fd in saved:
            os.dup2(sink.fileno(), fd)
        try:
            with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
                yield captured
        finally:
            sink.flush()
            for fd, original in saved.items():
                os.dup2(original, fd)
                os.close(original)
            sink.seek(0)
            captured.text = sink.read()


# ----------------------------------------------------------------------------------------------
# Export: dtype conversion, torch.export, quantization, lowering, serialization.
# ----------------------------------------------------------------------------------------------


@dataclass
class ExportResult:
    program: bytes
    etrecord: Any
    delegation: dict[str, Any]
    stage_seconds: dict[str, float] = field(default_factory=dict)


def to_dtype(values: tuple[Any, ...], dtype: torch.dtype) -> tuple[Any, ...]:
    return tuple(
        v.to(dtype) if isinstance(v, torch.Tensor) and v.is_floating_point() else v for v in values
    )


def program_inputs(model: ModelUnderExport, dtype: str) -> tuple[Any, ...]:
    """The example inputs as the exported program takes them: fp16 programs take fp16 tensors."""
    return to_dtype(model.example_inputs, torch.float16) if dtype == "fp16" else model.example_inputs


def export_hint(message: str) -> str:
    rules = (
        ("data-dependent", "forward() branches on tensor values: use torch.where or torch.cond"),
        ("guard", "forward() branches on tensor values or shapes: use torch.where or torch.cond"),
        ("dynamic_shapes", "check get_dynamic_shapes() matches forward()'s arguments"),
        ("constraint", "check the ranges in get_dynamic_shapes() against get_example_inputs()"),
        ("unsupported", "forward() uses Python that torch.export cannot trace; keep it to tensor ops"),
    )
    lowered = message.lower()
    for needle, hint in rules:
        if needle in lowered:
            return hint
    return "make forward() traceable by torch.export (https://pytorch.org/docs/stable/export.html)"


def run_torch_export(model: ModelUnderExport, module: nn.Module, inputs: tuple[Any, ...]) -> Any:
    try:
        return torch.export.export(module, inputs, dynamic_shapes=model.dynamic_shapes, strict=False)
    except Exception as exc:
        where = user_code_location(exc, Path(model.source)) if model.source != "builtin" else ""
        raise ExportError(
            f"torch.export failed for '{model.name}'{' at ' + where if where else ''}: "
            f"{first_line(exc)}; hint: {export_hint(str(exc))}"
        ) from exc


def quantize_int8(model: ModelUnderExport, exported: Any) -> nn.Module:
    """Static int8 with the XNNPACK quantizer: per-channel weights, per-tensor activations."""
    # torchao is where PT2E quantization lives for executorch 1.5 (torch.ao's copy is deprecated).
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    quantizer = XNNPACKQuantizer()
    quantizer.set_global(get_symmetric_quantization_config(is_per_channel=True))
    batches = model.calibration_inputs or generated_batches(model.example_inputs, CALIBRATION_BATCHES)
    try:
        prepared = prepare_pt2e(exported.module(), quantizer)
        with torch.no_grad():
            for batch in batches:
                prepared(*batch)
        return convert_pt2e(prepared)
    except Exception as exc:
        raise ExportError(
            f"model '{model.name}' cannot be quantized to int8: {first_line(exc)}; "
            "try --dtype fp32 or fp16"
        ) from exc


def op_name(target: Any) -> str:
    name = getattr(target, "__name__", str(target))
    namespace = getattr(target, "namespace", "")
    return name if not namespace or name.startswith(namespace + ".") else f"{namespace}.{name}"


def is_bookkeeping(node: torch.fx.Node) -> bool:
    """getitem unpacks a delegate's outputs and executorch_call_delegate is the call itself."""
    return node.op != "call_function" or op_name(node.target) in ("getitem", "_operator.getitem") or (
        "executorch_call_delegate" in op_name(node.target)
    )


def delegation_summary(graph_module: torch.fx.GraphModule) -> dict[str, Any]:
    delegated: Counter[str] = Counter()
    not_delegated: Counter[str] = Counter()
    subgraphs = 0
    for node in graph_module.graph.nodes:
        if node.op == "get_attr" and node.name.startswith("lowered_module_"):
            subgraphs += 1
            lowered = getattr(graph_module, node.target)
            delegated.update(
                op_name(n.target) for n in lowered.original_module.graph.nodes if not is_bookkeeping(n)
            )
        elif not is_bookkeeping(node):
            not_delegated[op_name(node.target)] += 1
    total = sum(delegated.values()) + sum(not_delegated.values())
    return {
        "graph_nodes": total,
        "delegated_nodes": sum(delegated.values()),
        "non_delegated_nodes": sum(not_delegated.values()),
        "delegated_share": round(sum(delegated.values()) / total, 4) if total else 0.0,
        "delegate_subgraphs": subgraphs,
        "delegated_ops": dict(sorted(delegated.items())),
        "non_delegated_ops": dict(sorted(not_delegated.items())),
    }


def lower_to_executorch(exported: Any, backend: str, model_name: str) -> tuple[bytes, Any, dict]:
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    partitioners = [XnnpackPartitioner()] if backend == "xnnpack" else []
    try:
        edge = to_edge_transform_and_lower(
            exported, partitioner=partitioners, generate_etrecord=True
        )
        delegation = delegation_summary(edge.exported_program().graph_module)
        program = edge.to_executorch()
    except Exception as exc:
        hint = "try --backend portable to rule out XNNPACK" if backend == "xnnpack" else "see the message"
        raise ExportError(
            f"lowering '{model_name}' to ExecuTorch failed: {first_line(exc)}; hint: {hint}"
        ) from exc
    return program.buffer, program.get_etrecord(), delegation


def preload_export_libraries() -> None:
    """Import ExecuTorch and torchao up front so their import time is not counted as export time."""
    for name in EXPORT_LIBRARIES:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise ExportError(
                f"cannot import {name} ({exc}): install the pinned packages with "
                "scripts/setup_repo.sh (or pip install -r requirements.txt) and use that Python"
            ) from exc


def export_model(model: ModelUnderExport, dtype: str, backend: str) -> ExportResult:
    preload_export_libraries()
    stages: dict[str, float] = {}
    start = time.perf_counter()
    module, inputs = model.module, program_inputs(model, dtype)
    if dtype == "fp16":
        # XNNPACK runs fp16 operators when the graph itself is fp16 (weights and activations).
        module = copy.deepcopy(module).half()
    exported = run_torch_export(model, module, inputs)
    stages["torch_export"] = time.perf_counter() - start
    if dtype == "int8":
        mark = time.perf_counter()
        quantized = quantize_int8(model, exported)
        exported = run_torch_export(model, quantized, inputs)
        stages["quantize"] = time.perf_counter() - mark
    mark = time.perf_counter()
    program, etrecord, delegation = lower_to_executorch(exported, backend, model.name)
    stages["lower_and_serialize"] = time.perf_counter() - mark
    return ExportResult(program, etrecord, delegation, {k: round(v, 3) for k, v in stages.items()})


# ----------------------------------------------------------------------------------------------
# Verification: run the .pte with the ExecuTorch Python runtime and compare with eager fp32.
# ----------------------------------------------------------------------------------------------

# The reference is the fp32 eager model, so the fp16 and int8 bounds include their precision
# loss. Relative error is max |pte - eager| / max |eager|: output scales differ between models.
TOLERANCES = {
    "fp32": {"max_rel_error": 1e-3, "min_cosine": 0.9999},
    "fp16": {"max_rel_error": 5e-2, "min_cosine": 0.999},
    "int8": {"max_rel_error": 0.5, "min_cosine": 0.95},
}


def tensor_leaves(value: Any) -> list[torch.Tensor]:
    leaves = torch.utils._pytree.tree_leaves(value)
    return [leaf for leaf in leaves if isinstance(leaf, torch.Tensor)]


def cosine_similarity(a: torch.Tensor, b: torch.Tensor) -> float:
    norms = a.norm() * b.norm()
    if norms == 0:
        return 1.0 if torch.equal(a, b) else 0.0
    return (a @ b / norms).item()


def compare_outputs(actual: list[torch.Tensor], expected: list[torch.Tensor]) -> dict[str, float]:
    """Worst case over all outputs; a NaN anywhere stays NaN so the check cannot pass."""
    if len(actual) != len(expected):
        raise ExportError(
            f"the .pte returned {len(actual)} outputs but eager PyTorch returned {len(expected)}"
        )
    errors, relative, cosines = [], [], []
    for index, (got, want) in enumerate(zip(actual, expected)):
        if got.shape != want.shape:
            raise ExportError(
                f"output {index} of the .pte has shape {tuple(got.shape)} but eager PyTorch "
                f"returns {tuple(want.shape)}"
            )
        got64, want64 = got.detach().double().flatten(), want.detach().double().flatten()
        error = (got64 - want64).abs().max().item() if want64.numel() else 0.0
        scale = want64.abs().max().item() if want64.numel() else 0.0
        errors.append(error)
        relative.append(error / scale if scale else error)
        cosines.append(cosine_similarity(got64, want64))
    return {
        "max_abs_error": torch.tensor(errors).max().item(),
        "max_rel_error": torch.tensor(relative).max().item(),
        "cosine_similarity": torch.tensor(cosines).min().item(),
    }


def run_pte(pte_path: Path, inputs: tuple[Any, ...], quiet: bool) -> list[torch.Tensor]:
    with library_output_captured(quiet) as captured:
        try:
            from executorch.runtime import Runtime

            program = Runtime.get().load_program(pte_path)
            outputs = program.load_method("forward").execute(inputs)
        except Exception as exc:
            failure = exc
        else:
            failure = None
    if failure is not None:
        detail = captured.error_line() or first_line(failure)
        raise ExportError(
            f"the exported .pte did not run in the ExecuTorch Python runtime: {detail} "
            "(--no-verify skips this check and keeps the files)"
        )
    return tensor_leaves(list(outputs))


def run_eager(model: ModelUnderExport) -> list[torch.Tensor]:
    """The fp32 reference outputs; running eagerly first also gives the clearest error message."""
    try:
        with torch.no_grad():
            return tensor_leaves(model.module(*model.example_inputs))
    except Exception as exc:
        where = user_code_location(exc, Path(model.source)) if model.source != "builtin" else ""
        raise ExportError(
            f"'{model.name}' fails in eager PyTorch on its example inputs"
            f"{' at ' + where if where else ''}: {first_line(exc)}; "
            "check that get_example_inputs() matches what forward() expects"
        ) from exc


def verify(
    model: ModelUnderExport, expected: list[torch.Tensor], pte_path: Path, dtype: str, quiet: bool
) -> dict[str, Any]:
    numbers = compare_outputs(run_pte(pte_path, program_inputs(model, dtype), quiet), expected)
    tolerance = TOLERANCES[dtype]
    passed = (
        numbers["max_rel_error"] <= tolerance["max_rel_error"]
        and numbers["cosine_similarity"] >= tolerance["min_cosine"]
    )
    return {
        "status": "passed" if passed else "failed",
        "reference": "eager PyTorch fp32 on the example inputs",
        # JSON has no NaN: a non-finite number is recorded as null (and has failed the check).
        **{k: float(f"{v:.6g}") if math.isfinite(v) else None for k, v in numbers.items()},
        "tolerance": tolerance,
    }


# ----------------------------------------------------------------------------------------------
# Output files: written under temporary names, renamed only when everything succeeded.
# ----------------------------------------------------------------------------------------------


def output_paths(outdir: Path, model: str, backend: str, dtype: str) -> dict[str, Path]:
    stem = f"{model}_{backend}_{dtype}"
    return {suffix: outdir / f"{stem}{suffix}" for suffix in OUTPUT_SUFFIXES}


def refuse_overwrite(paths: dict[str, Path], force: bool) -> None:
    existing = [p for p in paths.values() if p.exists()]
    if existing and not force:
        raise ExportError(
            f"{existing[0]} already exists: pass --force to replace it, or --outdir to write elsewhere"
        )


def check_outdir_writable(outdir: Path) -> None:
    """Fail before the export (which can take minutes), not after it, when --outdir cannot be written."""
    try:
        outdir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=outdir, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise ExportError(
            f"cannot write to --outdir {outdir} ({exc.strerror or exc}): pass a writable --outdir "
            "or fix the folder's permissions"
        ) from None


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Hold SIGINT/SIGTERM while the three files are renamed, so a Ctrl-C never leaves one of them alone."""
    held = {signal.SIGINT, signal.SIGTERM}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def temporary_path(final: Path) -> Path:
    return final.with_name(f".{final.name}.partial-{os.getpid()}")


def tensor_specs(values: Sequence[Any]) -> list[dict[str, Any]]:
    return [
        {"shape": list(v.shape), "dtype": str(v.dtype).removeprefix("torch.")}
        if isinstance(v, torch.Tensor)
        else {"type": type(v).__name__}
        for v in values
    ]


def library_versions() -> dict[str, str | None]:
    import executorch.version

    versions: dict[str, str | None] = {
        "torch": torch.__version__,
        "executorch": executorch.version.__version__,
        "executorch_commit": executorch.version.git_version,
        "python": platform.python_version(),
    }
    with contextlib.suppress(Exception):
        from importlib.metadata import version

        versions["torchao"] = version("torchao")
    return versions


def calibration_record(model: ModelUnderExport) -> dict[str, Any]:
    if model.calibration_inputs:
        return {"batches": len(model.calibration_inputs), "source": "get_calibration_inputs()"}
    return {
        "batches": CALIBRATION_BATCHES,
        "source": "generated: random normal, shaped like the example inputs",
    }


def build_metadata(
    model: ModelUnderExport,
    dtype: str,
    backend: str,
    result: ExportResult,
    paths: dict[str, Path],
    sizes: dict[str, int],
    verification: dict[str, Any],
) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "model": model.name,
        "source": model.source,
        "description": model.description,
        "dtype": dtype,
        "backend": backend,
        "inputs": tensor_specs(program_inputs(model, dtype)),
        "dynamic_shapes": model.dynamic_shapes is not None,
        "parameters": sum(p.numel() for p in model.module.parameters()),
        **result.delegation,
        "files": {
            "pte": paths[".pte"].name,
            "pte_bytes": sizes[".pte"],
            # Lets the analysis refuse an ETRecord paired with another model's .pte.
            "pte_sha256": hashlib.sha256(result.program).hexdigest(),
            "etrecord": paths[".etrecord"].name,
            "etrecord_bytes": sizes[".etrecord"],
        },
        "export_seconds": round(sum(result.stage_seconds.values()), 3),
        "stage_seconds": result.stage_seconds,
        "calibration": calibration_record(model) if dtype == "int8" else None,
        "verification": verification,
        "versions": library_versions(),
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }


def write_outputs(
    model: ModelUnderExport,
    dtype: str,
    backend: str,
    result: ExportResult,
    paths: dict[str, Path],
    verify_pte: Callable[[Path], dict[str, Any]],
) -> dict[str, Any]:
    """Write .pte and .etrecord, check the .pte, write .json; rename all three only at the end."""
    temporary = {suffix: temporary_path(path) for suffix, path in paths.items()}
    try:
        paths[".pte"].parent.mkdir(parents=True, exist_ok=True)
        temporary[".pte"].write_bytes(result.program)
        result.etrecord.save(str(temporary[".etrecord"]))
        sizes = {s: temporary[s].stat().st_size for s in (".pte", ".etrecord")}
        verification = verify_pte(temporary[".pte"])
        metadata = build_metadata(model, dtype, backend, result, paths, sizes, verification)
        temporary[".json"].write_text(json.dumps(metadata, indent=2) + "\n")
        with interrupts_deferred():
            for suffix, path in paths.items():
                temporary[suffix].replace(path)
    except OSError as exc:
        raise ExportError(
            f"could not write {exc.filename or paths['.pte'].parent} ({exc.strerror or exc}): free disk "
            "space or pass another --outdir, then export again (no output file was written)"
        ) from None
    finally:
        for path in temporary.values():
            if path.exists():  # unlink(missing_ok) still fails on a read-only file system
                path.unlink()
    return metadata


# ----------------------------------------------------------------------------------------------
# Terminal output.
# ----------------------------------------------------------------------------------------------


def print_model_list(console: Console, as_json: bool) -> None:
    rows = []
    for name, spec in builtin_models().items():
        params = sum(p.numel() for p in spec.build().parameters())
        shapes = ", ".join("x".join(map(str, s)) for s in spec.input_shapes)
        rows.append({"name": name, "inputs": shapes, "parameters": params, "description": spec.description})
    if as_json:
        print(json.dumps({"models": rows, "dtypes": list(DTYPES), "backends": list(BACKENDS)}, indent=2))
        return
    table = Table(title="Built-in models (all export in fp32, fp16 and int8)")
    for column in ("name", "input (float32)", "parameters", "description"):
        table.add_column(column, justify="right" if column == "parameters" else "left")
    for row in rows:
        table.add_row(row["name"], row["inputs"], f"{row['parameters']:,}", row["description"])
    console.print(table)


def print_summary(console: Console, metadata: dict[str, Any], outdir: Path) -> None:
    title = f"{metadata['model']} ({metadata['backend']}, {metadata['dtype']})"
    table = Table(title=title, show_header=False)
    table.add_column(style="bold")
    table.add_column()
    inputs = "; ".join(
        f"{'x'.join(map(str, spec['shape']))} {spec['dtype']}"
        for spec in metadata["inputs"]
        if "shape" in spec
    )
    table.add_row("inputs", inputs)
    table.add_row("parameters", f"{metadata['parameters']:,}")
    table.add_row(
        "delegated to XNNPACK",
        f"{metadata['delegated_nodes']} of {metadata['graph_nodes']} graph nodes "
        f"({metadata['delegated_share']:.1%}) in {metadata['delegate_subgraphs']} subgraph(s)",
    )
    not_delegated = ", ".join(f"{op} x{n}" for op, n in metadata["non_delegated_ops"].items())
    table.add_row("not delegated", not_delegated or "none")
    files = metadata["files"]
    table.add_row(".pte", f"{outdir / files['pte']} ({files['pte_bytes'] / 1e6:.2f} MB)")
    table.add_row(".etrecord", str(outdir / files["etrecord"]))
    table.add_row("export time", f"{metadata['export_seconds']:.1f} s")
    console.print(table)
    check = metadata["verification"]
    if check["status"] == "skipped":
        console.print("[yellow]verification skipped (--no-verify)[/]")
        return
    shown = {
        key: "nan" if check[key] is None else f"{check[key]:.6g}"
        for key in ("max_abs_error", "max_rel_error", "cosine_similarity")
    }
    numbers = (
        f"max abs error {shown['max_abs_error']}, relative {shown['max_rel_error']} "
        f"(limit {check['tolerance']['max_rel_error']}), cosine similarity "
        f"{shown['cosine_similarity']} (limit {check['tolerance']['min_cosine']})"
    )
    if check["status"] == "passed":
        console.print(f"[green]verification passed[/] against eager fp32: {numbers}", soft_wrap=True)
    else:
        console.print(
            f"[bold red]WARNING: verification FAILED[/] - the .pte does not match eager fp32 "
            f"within the {metadata['dtype']} tolerance: {numbers}",
            soft_wrap=True,
        )


# ----------------------------------------------------------------------------------------------
# Command line.
# ----------------------------------------------------------------------------------------------


class OneLineErrorParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        Console(stderr=True).print(f"[bold red]error:[/] {message} (see --help)", soft_wrap=True)
        sys.exit(EXIT_ERROR)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = OneLineErrorParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--model", help="built-in model name (see --list); default toy_cnn")
    which.add_argument(
        "--model-file", type=Path, help="your Python file defining get_model() and get_example_inputs()"
    )
    parser.add_argument("--dtype", choices=DTYPES, default="fp32", help="weights/activations precision")
    parser.add_argument(
        "--backend", choices=BACKENDS, default="xnnpack",
        help="xnnpack: delegate supported operators to XNNPACK; portable: no delegation",
    )
    parser.add_argument(
        "--outdir", type=Path, default=Path("models"), help="output directory (default models/)"
    )
    parser.add_argument("--list", action="store_true", help="list the built-in models and exit")
    parser.add_argument("--force", action="store_true", help="replace existing output files")
    parser.add_argument(
        "--no-verify", action="store_true", help="skip running the .pte against eager PyTorch"
    )
    parser.add_argument(
        "--strict-verify", action="store_true", help="exit with code 3 when the verification fails"
    )
    parser.add_argument(
        "--json", action="store_true",
        help="print the metadata JSON to stdout; messages go to stderr (for scripts and AI assistants)",
    )
    parser.add_argument("--verbose", action="store_true", help="show torch/ExecuTorch warnings and logs")
    args = parser.parse_args(argv)
    if args.no_verify and args.strict_verify:
        parser.error("--no-verify and --strict-verify contradict each other")
    return args


def run(args: argparse.Namespace, console: Console) -> int:
    model = load_model_file(args.model_file) if args.model_file else load_builtin(args.model or "toy_cnn")
    check_dtype_supported(model, args.dtype, args.backend)
    paths = output_paths(args.outdir, model.name, args.backend, args.dtype)
    refuse_overwrite(paths, args.force)
    check_outdir_writable(args.outdir)

    quiet = not args.verbose
    expected = run_eager(model)
    with console.status(f"Exporting {model.name} ({args.backend}, {args.dtype})..."):
        with library_output_captured(quiet):
            result = export_model(model, args.dtype, args.backend)

    def verify_pte(pte: Path) -> dict[str, Any]:
        if args.no_verify:
            return {"status": "skipped"}
        with console.status("Running the .pte with the ExecuTorch runtime..."):
            return verify(model, expected, pte, args.dtype, quiet)

    metadata = write_outputs(model, args.dtype, args.backend, result, paths, verify_pte)
    print_summary(console, metadata, args.outdir)
    if args.json:
        print(json.dumps(metadata, indent=2))
    failed = metadata["verification"]["status"] == "failed"
    return EXIT_VERIFY_FAILED if failed and args.strict_verify else 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # With --json, stdout carries only JSON and everything for people goes to stderr. The console
    # writes to its own copy of the descriptor so that silencing library output cannot hide it.
    with os.fdopen(os.dup(2 if args.json else 1), "w", buffering=1) as terminal:
        console = Console(file=terminal)
        if args.list:
            print_model_list(console, args.json)
            return 0
        try:
            return run(args, console)
        except ExportError as exc:
            console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            if args.json:
                print(json.dumps({"error": str(exc)}))
            return EXIT_ERROR
        except KeyboardInterrupt:
            # write_outputs removed its temporary files on the way out: nothing partial is left.
            console.print(
                "[bold red]interrupted:[/] no output file was written; run the same command again",
                highlight=False, soft_wrap=True,
            )
            return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
