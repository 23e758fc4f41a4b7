"""TaWQ against the method spec: the closed-form pattern table, T = 1, entropy, and a plain-loop oracle."""

from __future__ import annotations

import math

import pytest
import torch

import tawq_core
from tawq_core import ConfigError, ShapeError
from tawq_plugins.quantizers.calcium import run_dynamics, standardize

TAU, THETA, SLOPE = 2.0, 0.25, 4.0  # restated from the spec, not imported: the oracle is independent


class _SurrogateSign(torch.autograd.Function):
    """sgn forward, derivative of sigmoid(4u) backward: the spec's surrogate, written independently."""

    @staticmethod
    def forward(ctx, u):
        ctx.save_for_backward(u)
        return torch.sign(u)

    @staticmethod
    def backward(ctx, grad):
        (u,) = ctx.saved_tensors
        s = torch.sigmoid(SLOPE * u)
        return grad * SLOPE * s * (1 - s)


def plain_loop(w: torch.Tensor, steps: int, levels: int = 1) -> torch.Tensor:
    """The spec as a plain autograd loop: standardize, charge, fire, detached hard reset, alpha."""
    x = (w - w.mean()) / w.std()
    c = torch.zeros_like(x)
    out = []
    for _ in range(steps):
        c = c + (x - c) / TAU
        q = sum(0.5 * (_SurrogateSign.apply(c - th) + _SurrogateSign.apply(c + th))
                for th in [(2 * k - 1) * THETA for k in range(1, levels + 1)])
        c = (1 - (q.detach() != 0).to(c.dtype)) * c
        alpha = 1 / (q.abs().mean(dim=tuple(range(1, q.dim())), keepdim=True) + 1e-6)
        out.append(alpha * q)
    return torch.stack(out)


@pytest.fixture
def tawq():
    return tawq_core.create("quantizer", "tawq")


# the spec's table at T = 4; the pattern is odd in the standardized weight
TABLE = [((0.0, 4 / 15), (0, 0, 0, 0)), ((4 / 15, 2 / 7), (0, 0, 0, 1)), ((2 / 7, 1 / 3), (0, 0, 1, 0)),
         ((1 / 3, 1 / 2), (0, 1, 0, 1)), ((1 / 2, 6.0), (1, 1, 1, 1))]


@pytest.mark.parametrize(("interval", "pattern"), TABLE)
def test_closed_form_pattern_table_t4(interval, pattern):
    lo, hi = interval
    inside = torch.linspace(lo, hi, 203)[1:-1]  # strictly inside, away from float ties at the ends
    x = torch.cat([inside, -inside])
    q, _, _ = run_dynamics(x, 4, 1)
    expected = torch.tensor(pattern, dtype=torch.float32)
    n = inside.numel()
    assert torch.equal(q[:, :n].t(), expected.expand(n, 4))
    assert torch.equal(q[:, n:].t(), -expected.expand(n, 4))


def test_interval_ends_belong_to_the_lower_pattern():
    # 1/2 is exact in float32 and c_1 = 0.25 = theta exactly: the table's interval (1/3, 1/2] is closed there
    q, _, _ = run_dynamics(torch.tensor([0.5, -0.5, 0.0]), 4, 1)
    assert q.t().tolist() == [[0, 1, 0, 1], [0, -1, 0, -1], [0, 0, 0, 0]]


def test_exactly_t_plus_one_patterns_times_sign():
    x = torch.linspace(-4, 4, 20_001)
    for steps in (1, 2, 4, 6):
        q, _, _ = run_dynamics(x, steps, 1)
        assert torch.unique(q.t(), dim=0).shape[0] == 2 * steps + 1


def test_t1_is_a_static_threshold_at_one_half(tawq):
    w = torch.randn(12, 30)
    x = standardize(w)
    q = (x > 0.5).float() - (x < -0.5).float()
    alpha = 1 / (q.abs().mean(dim=1, keepdim=True) + 1e-6)
    assert torch.equal(tawq.weights(w, 1), (alpha * q).unsqueeze(0))


def test_per_timestep_entropy_and_firing_fractions_on_standard_normal():
    gen = torch.Generator().manual_seed(0)
    q, _, _ = run_dynamics(torch.randn(200_000, generator=gen), 4, 1)
    nonzero = [float((q[t] != 0).float().mean()) for t in range(4)]
    assert nonzero == pytest.approx([0.62, 0.74, 0.65, 0.75], abs=0.01)
    for t in range(4):
        p = torch.stack([(q[t] == v).float().mean() for v in (-1, 0, 1)])
        entropy = -float((p * torch.log2(p)).sum())
        assert 1.55 <= entropy <= math.log2(3)


@pytest.mark.parametrize("shape", [(6, 4, 3, 3), (9, 13), (5, 2, 7)])
@pytest.mark.parametrize("steps", [1, 4, 6, 12])
def test_forward_and_gradients_equal_the_plain_loop(tawq, shape, steps):
    gen = torch.Generator().manual_seed(steps)
    w = (0.3 * torch.randn(*shape, generator=gen) + 0.05).requires_grad_()
    upstream = torch.randn(steps, *shape, generator=gen)
    fast = tawq.weights(w, steps)
    (grad_fast,) = torch.autograd.grad((fast * upstream).sum(), w)
    slow = plain_loop(w, steps)
    (grad_slow,) = torch.autograd.grad((slow * upstream).sum(), w)
    assert torch.equal(fast, slow)
    torch.testing.assert_close(grad_fast, grad_slow, rtol=1e-5, atol=1e-6)
    assert grad_fast.abs().sum() > 0


def test_shape_alpha_and_values(tawq):
    w = torch.randn(8, 3, 3, 3)
    out = tawq.weights(w, 4)
    assert out.shape == (4, 8, 3, 3, 3) and out.dtype == torch.float32
    for t in range(4):
        for o in range(8):
            values = out[t, o]
            nonzero = values[values != 0]
            alpha = 1 / ((values != 0).float().mean() + 1e-6)
            assert torch.allclose(nonzero.abs(), alpha.expand_as(nonzero))


def test_deterministic_and_stateless(tawq):
    w, other = torch.randn(16, 8), torch.randn(16, 8)
    first = tawq.weights(w, 4)
    tawq.weights(other, 4)
    assert torch.equal(first, tawq.weights(w, 4))


def test_float32_under_autocast_and_for_half_weights(tawq):
    w = torch.randn(16, 8, 3)
    reference = tawq.weights(w, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(tawq.weights(w, 4), reference)
    assert tawq.weights(w.half(), 4).dtype == torch.float32


def test_constant_weights_give_zeros_not_nan(tawq):
    assert torch.equal(tawq.weights(torch.ones(4, 5), 3), torch.zeros(3, 4, 5))


def test_bad_inputs_raise_user_errors(tawq):
    with pytest.raises(ConfigError, match="timesteps"):
        tawq.weights(torch.randn(4, 4), 0)
    with pytest.raises(ShapeError, match=">= 2 weights"):
        tawq.weights(torch.randn(1, 1), 4)


def test_registered_as_temporal_qat(tawq):
    assert tawq.temporal and tawq.mode is tawq_core.QuantMode.QAT
    assert tawq.config()["theta"] == 0.25 and tawq.config()["tau"] == 2.0
