"""mTaWQ: L = 1 is TaWQ bit for bit; more levels follow round(c / 2theta) clipped to ±L."""

from __future__ import annotations

import pytest
import torch
from test_quantizer_tawq import plain_loop

import tawq_core
from tawq_core import ConfigError
from tawq_plugins.quantizers.calcium import run_dynamics


def test_two_bits_is_bit_exact_with_tawq_forward_and_backward():
    mtawq, tawq = tawq_core.create("quantizer", "mtawq", bits=2), tawq_core.create("quantizer", "tawq")
    w = torch.randn(7, 5, 3, requires_grad=True)
    upstream = torch.randn(4, 7, 5, 3)
    a = mtawq.weights(w, 4)
    (grad_a,) = torch.autograd.grad((a * upstream).sum(), w)
    b = tawq.weights(w, 4)
    (grad_b,) = torch.autograd.grad((b * upstream).sum(), w)
    assert torch.equal(a, b) and torch.equal(grad_a, grad_b)


def test_levels_from_bits():
    assert [tawq_core.create("quantizer", "mtawq", bits=b).levels for b in (2, 3, 4)] == [1, 3, 7]
    assert tawq_core.create("quantizer", "mtawq").config()["bits"] == 3


@pytest.mark.parametrize("bits", [1, 5, 2.5, True])
def test_invalid_bits(bits):
    with pytest.raises(ConfigError, match="bits"):
        tawq_core.create("quantizer", "mtawq", bits=bits)


def test_multilevel_fire_rounds_half_toward_zero_and_clips():
    # T = 1: c_1 = x / 2, q = round(c_1 / 0.5) with ties toward zero, clipped to ±3
    x = torch.tensor([0.4, 0.6, 1.4, 1.6, 2.6, 3.4, 10.0, 0.5, 1.5, -1.6, -10.0])
    q, _, _ = run_dynamics(x, 1, 3)
    assert q[0].tolist() == [0, 1, 1, 2, 3, 3, 3, 0, 1, -2, -3]


def test_any_spike_resets_to_zero():
    # x = 3: c_1 = 1.5 fires 3 and resets; c_2 = 1.5 fires 3 again: the same every step
    q, _, _ = run_dynamics(torch.tensor([3.0, 0.6]), 3, 3)
    assert q.t().tolist() == [[3, 3, 3], [1, 1, 1]]


@pytest.mark.parametrize("bits", [3, 4])
def test_gradients_equal_the_plain_loop(bits):
    quantizer = tawq_core.create("quantizer", "mtawq", bits=bits)
    gen = torch.Generator().manual_seed(bits)
    w = torch.randn(6, 10, generator=gen).requires_grad_()
    upstream = torch.randn(4, 6, 10, generator=gen)
    fast = quantizer.weights(w, 4)
    (grad_fast,) = torch.autograd.grad((fast * upstream).sum(), w)
    slow = plain_loop(w, 4, levels=quantizer.levels)
    (grad_slow,) = torch.autograd.grad((slow * upstream).sum(), w)
    assert torch.equal(fast, slow)
    q, _ = quantizer.integer_weights(w, 4)
    assert q.abs().max() >= 2  # really multi-level
    torch.testing.assert_close(grad_fast, grad_slow, rtol=1e-5, atol=1e-6)
