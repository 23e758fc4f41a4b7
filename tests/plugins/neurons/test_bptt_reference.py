"""The hand-written BPTT must equal autograd through a plain loop of the same equations.

The reference below is written independently of the plugin: its spike is a straight-through Heaviside
whose backward is autograd's derivative of the smooth surrogate itself.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch

import tawq_core


def spike(u: torch.Tensor, surrogate: str, alpha: float) -> torch.Tensor:
    smooth = torch.sigmoid(alpha * u) if surrogate == "sigmoid" else torch.atan(math.pi / 2 * alpha * u) / math.pi
    return (u >= 0).to(u.dtype) + (smooth - smooth.detach())


def reference(x, kind, k, *, v_threshold, v_reset, decay_input, detach_reset, surrogate, alpha):
    rest = 0.0 if v_reset is None else v_reset
    v = torch.full_like(x[0], rest)
    out = []
    for x_t in x:
        if kind == "if":
            h = v + x_t
        elif kind == "lif":
            h = v + (x_t - (v - rest)) / k if decay_input else v - (v - rest) / k + x_t
        else:
            h = v + (x_t - (v - rest)) * k if decay_input else v - (v - rest) * k + x_t
        s = spike(h - v_threshold, surrogate, alpha)
        r = s.detach() if detach_reset else s
        v = r * v_reset + (1 - r) * h if v_reset is not None else h - r * v_threshold
        out.append(s)
    return torch.stack(out)


CASES = [
    case
    for case in itertools.product(["lif", "plif", "if"], [0.0, -0.2, None], [True, False], [True, False])
    if case[0] != "if" or case[2]  # IF has no decay_input option
]


@pytest.mark.parametrize(("kind", "v_reset", "decay_input", "detach_reset"), CASES)
def test_gradients_equal_autograd_reference(kind, v_reset, decay_input, detach_reset):
    gen = torch.Generator().manual_seed(CASES.index((kind, v_reset, decay_input, detach_reset)))
    options = {"v_threshold": 0.8, "v_reset": v_reset, "detach_reset": detach_reset}
    if kind != "if":
        options.update(decay_input=decay_input, tau=2.5)
    for surrogate in ("sigmoid", "atan"):
        n = tawq_core.create("neuron", kind, surrogate=surrogate, **options)
        x = (torch.randn(6, 5, 40, generator=gen) * 1.5 + 0.6).requires_grad_()
        upstream = torch.randn(6, 5, 40, generator=gen)
        spikes = n(x)
        params = [x] + ([n.w] if kind == "plif" else [])
        grads = torch.autograd.grad(spikes, params, upstream)

        k = {"if": None, "lif": 2.5, "plif": torch.sigmoid(getattr(n, "w", torch.tensor(0.0)))}[kind]
        ref = reference(x, kind, k, v_threshold=0.8, v_reset=v_reset, decay_input=decay_input,
                        detach_reset=detach_reset, surrogate=surrogate, alpha=n.dynamics.alpha)
        ref_grads = torch.autograd.grad(ref, params, upstream)

        assert torch.equal(spikes, ref.detach())
        assert 0.05 < spikes.mean().item() < 0.95  # both regimes exercised
        torch.testing.assert_close(grads[0], ref_grads[0], rtol=1e-5, atol=1e-6)
        if kind == "plif":
            torch.testing.assert_close(grads[1], ref_grads[1], rtol=1e-5, atol=1e-5)


def test_gradient_of_unused_steps_is_zero_and_graph_frees_memory():
    n = tawq_core.create("neuron", "lif")
    x = torch.randn(4, 3, requires_grad=True)
    out = n(x)
    (out[0] * 0).sum().backward()
    assert torch.count_nonzero(x.grad) == 0
