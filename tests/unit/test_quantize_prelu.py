"""PReLU under ptq_int8: torch's quantized PReLU kernel is wrong (torch 2.13, x86), so
PReLU layers stay in float between dequantize and quantize. Before that a Conv → PReLU
model's int8 outputs were off by 1.6 on values up to 2.1."""

from __future__ import annotations

import torch
from torch import nn

from robustness_harness.compress.base import CompressContext
from robustness_harness.compress.quantize import QuantizeParams, ptq_int8


class ConvPReLU(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.act = nn.PReLU(8)
        self.fc = nn.Linear(8 * 6 * 6, 4)
        with torch.no_grad():
            self.act.weight.uniform_(0.0, 0.3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.act(self.conv(x)).flatten(1))


def test_prelu_model_quantizes_close_to_float() -> None:
    torch.manual_seed(0)
    model = ConvPReLU().eval()
    images = torch.rand(32, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    ctx = CompressContext(example_inputs=images, progress=lambda _line: None)
    quantized = ptq_int8(model, QuantizeParams(calibration_images=32), ctx)
    with torch.no_grad():
        error = (quantized(images) - model(images)).abs().max()
        scale = model(images).abs().max()
    assert error < 0.05 * scale, f"int8 error {error:.3f} on outputs up to {scale:.3f}"
    assert not any(isinstance(m, torch.ao.nn.quantized.PReLU) for m in quantized.modules())
    assert type(model.act) is nn.PReLU  # the float model is left as it was
