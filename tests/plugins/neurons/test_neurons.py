"""Neuron behaviour pinned against hand-computed spikes and gradients, plus options and errors."""

from __future__ import annotations

import math

import pytest
import torch

import tawq_core
from tawq_core import ConfigError, ShapeError


def neuron(name: str, **options):
    return tawq_core.create("neuron", name, **options)


def sigmoid_slope(u: float, alpha: float = 4.0) -> float:
    s = 1 / (1 + math.exp(-alpha * u))
    return alpha * s * (1 - s)


def test_all_three_are_registered():
    assert {"lif", "if", "plif"} <= set(tawq_core.list_plugins("neuron"))


def test_lif_spikes_and_hard_reset_by_hand():
    # tau 2, constant drive 1.5: h = 0.75 (silent), 1.125 (spike, reset to 0), 0.75 (silent)
    x = torch.full((3, 1), 1.5)
    assert neuron("lif")(x).flatten().tolist() == [0.0, 1.0, 0.0]


def test_if_soft_reset_by_hand():
    # no leak, soft reset keeps the surplus: 0.75, 1.5 -> spike, 1.25 -> spike, 1.0 -> spike, 0.75
    x = torch.full((5, 1), 0.75)
    assert neuron("if", v_reset=None)(x).flatten().tolist() == [0.0, 1.0, 1.0, 1.0, 0.0]
    # a hard reset drops it: 0.75, 1.5 -> spike, 0.75, 1.5 -> spike, 0.75
    assert neuron("if")(x).flatten().tolist() == [0.0, 1.0, 0.0, 1.0, 0.0]


def test_lif_without_decay_input_by_hand():
    # h = v - v/2 + x: 0.8 (silent), 0.4 + 0.8 = 1.2 (spike) -> 0, 0.8
    x = torch.full((3, 1), 0.8)
    assert neuron("lif", decay_input=False)(x).flatten().tolist() == [0.0, 1.0, 0.0]


def test_lif_gradient_by_hand():
    # T = 2, one neuron, L = w1 s1 + w2 s2 with detached hard reset:
    # h1 = a/2, h2 = v1/2 + b/2 with v1 = h1 (no spike at step 1)
    a, b, w1, w2 = 1.2, 1.4, 0.7, -1.3
    x = torch.tensor([[a], [b]], requires_grad=True)
    s = neuron("lif")(x)
    (s.flatten() * torch.tensor([w1, w2])).sum().backward()
    h1 = a / 2
    h2 = h1 / 2 + b / 2
    assert s.flatten().tolist() == [0.0, 1.0]
    grad_b = w2 * sigmoid_slope(h2 - 1) / 2
    grad_a = w1 * sigmoid_slope(h1 - 1) / 2 + w2 * sigmoid_slope(h2 - 1) * 0.5 * 0.5
    assert x.grad.flatten().tolist() == pytest.approx([grad_a, grad_b], rel=1e-6)


def test_hard_reset_blocks_gradient_after_a_spike():
    # a spike at step 1 resets v to 0, so with detach_reset step 1 gets no gradient from step 2
    x = torch.tensor([[3.0], [0.5]], requires_grad=True)
    s = neuron("lif", surrogate="atan")(x)
    s[1].sum().backward()
    assert s.flatten().tolist() == [1.0, 0.0]
    assert x.grad[0].item() == 0.0
    z = (0.25 - 1) * math.pi / 2 * 2.0
    assert x.grad[1].item() == pytest.approx(0.5 * (2.0 / 2) / (1 + z * z), rel=1e-6)


def test_plif_starts_at_tau_and_learns_it():
    n = neuron("plif", tau=3.0)
    assert n.tau == pytest.approx(3.0)
    x = (torch.randn(4, 8, 5) + 1).requires_grad_()
    n(x).sum().backward()
    assert n.w.grad is not None and n.w.grad.abs().item() > 0
    assert [name for name, _ in n.named_parameters()] == ["w"]


def test_state_is_fresh_on_every_call_and_batch_items_are_independent():
    n = neuron("lif")
    x = torch.randn(6, 4, 3) * 2
    first = n(x)
    assert torch.equal(n(x), first)
    assert torch.equal(n(x[:, :1]), first[:, :1])


def test_no_grad_path_equals_training_path():
    n = neuron("plif", v_reset=None)
    x = torch.randn(5, 3, 7, 7) * 2
    trained = n(x.clone().requires_grad_())
    with torch.no_grad():
        plain = n(x)
    assert not plain.requires_grad
    assert torch.equal(plain, trained.detach())
    assert set(plain.unique().tolist()) <= {0.0, 1.0}


def test_output_keeps_shape_and_dtype():
    x = torch.randn(2, 3, 4, 5, 6, dtype=torch.float64)
    out = neuron("if")(x)
    assert out.shape == x.shape and out.dtype == torch.float64
    assert neuron("lif")(torch.ones(3, 2, dtype=torch.int64)).dtype == torch.get_default_dtype()


def test_non_time_major_input_is_a_shape_error():
    with pytest.raises(ShapeError, match="T, B"):
        neuron("lif")(torch.randn(5))
    with pytest.raises(ShapeError, match="T = 0"):
        neuron("if")(torch.randn(0, 3))


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("lif", {"surrogate": "relu"}, "known surrogates: atan, sigmoid"),
        ("lif", {"tau": 0.5}, "tau must be >= 1"),
        ("plif", {"tau": 1.0}, "tau must be > 1"),
        ("lif", {"v_reset": 1.0}, "must be below v_threshold"),
        ("if", {"alpha": -1.0}, "alpha must be > 0"),
        ("lif", {"v_threshold": float("nan")}, "finite"),
        ("if", {"tau": 2.0}, "invalid options"),
    ],
)
def test_bad_options_are_config_errors(name, options, message):
    with pytest.raises(ConfigError, match=message):
        neuron(name, **options)


def test_surrogate_alpha_defaults_follow_the_surrogate():
    assert neuron("lif").dynamics.alpha == 4.0
    assert neuron("lif", surrogate="atan").dynamics.alpha == 2.0
    assert neuron("lif", surrogate="atan", alpha=3).dynamics.alpha == 3.0
