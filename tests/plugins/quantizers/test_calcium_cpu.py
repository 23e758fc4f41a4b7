"""The fused CPU calcium kernel equals the eager dynamics bit for bit: q, alpha, slopes, weights, gradients."""

from __future__ import annotations

import pytest
import torch

import tawq_core
from tawq_plugins.quantizers import _calcium_cpu, calcium

pytestmark = pytest.mark.skipif(bool(_calcium_cpu.UNAVAILABLE), reason=_calcium_cpu.UNAVAILABLE or "")


@pytest.mark.parametrize("levels", [1, 3])
@pytest.mark.parametrize("steps", [1, 4, 7, 12])
def test_dynamics_equal_the_eager_closed_form(levels, steps, monkeypatch):
    gen = torch.Generator().manual_seed(steps + 10 * levels)
    x = torch.randn(3000, generator=gen) * 1.2  # more than one block; |x| near every threshold somewhere
    x[:8] = torch.tensor([0.25, -0.25, 0.75, -0.75, 4 / 15, 2 / 7, 1 / 3, 0.5])
    q, alpha, slopes = _calcium_cpu.run_dynamics(x.reshape(30, 100), steps, levels, jacobian=True)
    monkeypatch.setenv("TAWQ_QUANT_KERNEL", "torch")
    ref_q, ref_alpha, ref_slopes = calcium.run_dynamics(x.reshape(30, 100), steps, levels, jacobian=True)
    assert torch.equal(q, ref_q) and torch.equal(alpha, ref_alpha) and torch.equal(slopes, ref_slopes)
    assert torch.equal(torch.signbit(q), torch.signbit(ref_q))  # zeros are +0 in both


@pytest.mark.parametrize("shape", [(16, 8, 3, 3), (10, 64), (7,)])
def test_tawq_weights_and_gradients_are_bit_identical_on_cpu(shape, monkeypatch):
    gen = torch.Generator().manual_seed(len(shape))
    w = (0.2 * torch.randn(*shape, generator=gen)).requires_grad_()
    quantizer = tawq_core.create("quantizer", "tawq")
    upstream = torch.randn(4, *shape, generator=gen)
    fast = quantizer.weights(w, 4)
    (grad_fast,) = torch.autograd.grad((fast * upstream).sum(), w)
    monkeypatch.setenv("TAWQ_QUANT_KERNEL", "torch")
    assert _calcium_cpu.unsupported(w) == "TAWQ_QUANT_KERNEL=torch"
    slow = quantizer.weights(w, 4)
    (grad_slow,) = torch.autograd.grad((slow * upstream).sum(), w)
    assert torch.equal(fast, slow) and torch.equal(grad_fast, grad_slow)


def test_other_dtypes_use_the_eager_path():
    assert "float32" in _calcium_cpu.unsupported(torch.zeros(4, dtype=torch.float64))
    quantizer = tawq_core.create("quantizer", "tawq")
    out = quantizer.weights(torch.randn(5, 6, dtype=torch.float64, requires_grad=True), 3)
    assert out.shape == (3, 5, 6) and out.dtype == torch.float32
