"""The CUDA bit-plane kernel, run by Triton's CPU interpreter (a stand-in for a GPU; none is here): deployed
layers through `triton_bitplane` equal the fp32 reference bit for bit. Skipped where triton is not installed
(it is in the dev set-up)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

needs_triton = pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton is not installed")


@needs_triton
@pytest.mark.slow  # every geometry through Triton's CPU interpreter, in its own interpreter
def test_interpreted_triton_kernel_is_exact_on_every_geometry_and_quantizer():
    script = Path(__file__).with_name("triton_interpret_check.py")
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "checked 20" in done.stdout


def test_without_triton_the_gpu_branch_is_never_taken():
    """`gpu_kernel_ready` is False for CPU tensors whatever is installed: the CPU kernels serve them."""
    import torch
    from torch import nn

    from tawq_core.deploy import deploy_packed_layer
    from tawq_core.nn.layers import quantized_layer_type

    conv = nn.Conv1d(3, 4, 3, padding=1)
    fake_quant = quantized_layer_type(conv).from_float(conv, "ternary", 1).eval()
    layer = deploy_packed_layer(fake_quant, fake_quant.pack(), fake_quant.quantizer, backend="cuda")
    x = (torch.rand(2, 3, 8) < 0.3).float()
    assert not layer.form.gpu_kernel_ready(x, layer.geometry)
    with torch.no_grad():
        layer(x)
    assert layer.last_kernel.startswith("cpu.")
