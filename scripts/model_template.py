"""Keyword-spotting CNN on 49x40 MFCC frames: a template for bringing your own model.

Copy this file, replace the model and the example inputs with yours, then export it:

    cp scripts/model_template.py my_model.py
    python my_model.py                                   # quick check in eager PyTorch
    python scripts/export_model.py --model-file my_model.py --dtype fp32

export_model.py imports this file and calls the functions below; nothing else needs to change,
no registry to edit and no ExecuTorch source tree. The output is named after the file
(my_model_xnnpack_fp32.pte) and the first line of this docstring becomes its description.

Required:  get_model(), get_example_inputs()
Optional:  get_dynamic_shapes(), get_calibration_inputs(), SUPPORTED_DTYPES
"""

from __future__ import annotations

import torch
from torch import nn

# Optional: the dtypes export_model.py may use. Remove a dtype your model cannot run in, and
# --dtype with that value stops with a clear message instead of a long failure.
SUPPORTED_DTYPES = ("fp32", "fp16", "int8")


class KeywordSpotter(nn.Module):
    """Replace this class with your model (or import it: any torch.nn.Module works)."""

    def __init__(self, num_keywords: int = 12) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 64, kernel_size=(10, 4), stride=(2, 2), padding=(5, 1)),
            nn.BatchNorm2d(64),
            nn.ReLU(),
            # Depthwise-separable pairs: a 3x3 per-channel conv, then a 1x1 across channels.
            nn.Conv2d(64, 64, kernel_size=3, padding=1, groups=64),
            nn.BatchNorm2d(64),
            nn.ReLU(),
            nn.Conv2d(64, 64, kernel_size=1),
            nn.BatchNorm2d(64),
            nn.ReLU(),
            nn.Conv2d(64, 64, kernel_size=3, padding=1, groups=64),
            nn.BatchNorm2d(64),
            nn.ReLU(),
            nn.Conv2d(64, 64, kernel_size=1),
            nn.BatchNorm2d(64),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
        )
        self.classifier = nn.Linear(64, num_keywords)

    def forward(self, mfcc: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(mfcc), 1))


def get_model() -> nn.Module:
    """Return the model to export. Load trained weights here, for example:

    model.load_state_dict(torch.load("weights.pt", map_location="cpu"))
    """
    return KeywordSpotter()


def get_example_inputs() -> tuple[torch.Tensor, ...]:
    """One tensor per forward() argument, with the shape and dtype the model runs on.

    These are traced by torch.export, run once more to check the exported .pte against eager
    PyTorch, and their shapes are what the profiling runner feeds the model.
    """
    return (torch.randn(1, 1, 49, 40),)


def get_dynamic_shapes() -> object:
    """Return None for fixed shapes (the usual case for profiling).

    To let a dimension vary, return a spec for torch.export, for example a batch of 1 to 8:
        batch = torch.export.Dim("batch", min=1, max=8)
        return ({0: batch},)
    """
    return None


def get_calibration_inputs() -> list[tuple[torch.Tensor, ...]]:
    """Batches used to calibrate int8 quantization: use a few real samples when you have them.

    Without this function export_model.py calibrates on random tensors shaped like the example
    inputs, which is fine for measuring speed but not for accuracy.
    """
    generator = torch.Generator().manual_seed(0)
    return [(torch.randn(1, 1, 49, 40, generator=generator),) for _ in range(8)]


if __name__ == "__main__":
    from rich.console import Console

    console = Console()
    model = get_model().eval()
    with torch.no_grad():
        output = model(*get_example_inputs())
    parameters = sum(p.numel() for p in model.parameters())
    console.print(
        f"[green]eager run OK[/]: output shape {tuple(output.shape)}, {parameters:,} parameters. "
        "Next: python scripts/export_model.py --model-file <this file>"
    )
