"""Run under ``TRITON_INTERPRET=1`` by test_triton_bitplane.py: deployed bit-plane layers through the Triton
kernel, executed by Triton's CPU interpreter as a stand-in for a GPU, against the fp32 reference."""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "core" / "deploy"))
from deploy_models import B, T, reference  # noqa: E402

from tawq_backends.kernels import triton_bitplane  # noqa: E402
from tawq_core.deploy import deploy_packed_layer, forms  # noqa: E402
from tawq_core.nn.layers import quantized_layer_type  # noqa: E402

LAYERS = {
    "conv2d-groups-stride-dilation": (lambda: nn.Conv2d(4, 6, 3, stride=2, padding=2, dilation=2, groups=2),
                                      (4, 5, 5)),
    "conv1d-stride": (lambda: nn.Conv1d(5, 7, 3, stride=2, padding=1), (5, 9)),
    "conv2d-1x1": (lambda: nn.Conv2d(6, 5, 1, bias=False), (6, 3, 3)),
    "linear-wide": (lambda: nn.Linear(70, 4), (70,)),  # fan-in over one 64-bit word
}


def main() -> int:
    assert not triton_bitplane.UNAVAILABLE, triton_bitplane.UNAVAILABLE
    # the stand-in: CPU tensors take the GPU branch, which the interpreter can run
    forms.WeightForm.gpu_kernel_ready = lambda self, x, geometry: isinstance(self, forms.BitPlanes)
    checked = 0
    for kind, (make, sample) in LAYERS.items():
        for quantizer in ("tawq", "mtawq", "ternary", "binary"):
            torch.manual_seed(checked)
            fake_quant = quantized_layer_type(make()).from_float(make(), quantizer, T).eval()
            layer = deploy_packed_layer(fake_quant, fake_quant.pack(), fake_quant.quantizer, backend="cuda")
            inputs = {"spikes": (torch.rand(T, B, *sample) < 0.3).float()}
            if kind.startswith("conv2d-groups"):  # spike counts (residual additions) on one geometry
                inputs["counts"] = torch.randint(0, 4, (T, B, *sample)).float()
            for label, x in inputs.items():
                with torch.no_grad():
                    y = layer(x)
                where = f"{kind} {quantizer} {label}"
                assert layer.last_kernel == triton_bitplane.KERNEL, (where, layer.last_kernel)
                assert torch.equal(y, reference(fake_quant, x)), where
                checked += 1
    print(f"checked {checked}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
