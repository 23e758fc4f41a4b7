"""Same settings as spikingjelly's multi-step neurons -> identical spikes, matching input gradients."""

from __future__ import annotations

import itertools

import pytest
import torch

import tawq_core

sj_neuron = pytest.importorskip("spikingjelly.activation_based.neuron")
sj_surrogate = pytest.importorskip("spikingjelly.activation_based.surrogate")

SETTINGS = list(itertools.product([0.0, None], [True, False], [True, False], ["sigmoid", "atan"]))


def their_node(kind, v_reset, decay_input, detach_reset, surrogate):
    fn = sj_surrogate.Sigmoid(alpha=4.0) if surrogate == "sigmoid" else sj_surrogate.ATan(alpha=2.0)
    common = {"v_reset": v_reset, "detach_reset": detach_reset, "surrogate_function": fn, "step_mode": "m"}
    if kind == "lif":
        return sj_neuron.LIFNode(tau=2.0, decay_input=decay_input, **common)
    if kind == "plif":
        return sj_neuron.ParametricLIFNode(init_tau=2.0, decay_input=decay_input, **common)
    return sj_neuron.IFNode(**common)


@pytest.mark.parametrize(("v_reset", "decay_input", "detach_reset", "surrogate"), SETTINGS)
@pytest.mark.parametrize("kind", ["lif", "plif", "if"])
def test_matches_spikingjelly(kind, v_reset, decay_input, detach_reset, surrogate):
    options = {"v_reset": v_reset, "detach_reset": detach_reset, "surrogate": surrogate}
    if kind != "if":
        options["decay_input"] = decay_input
    ours = tawq_core.create("neuron", kind, **options)
    theirs = their_node(kind, v_reset, decay_input, detach_reset, surrogate)

    gen = torch.Generator().manual_seed(7)
    x = (torch.randn(8, 4, 3, 6, 6, generator=gen) * 1.5 + 0.5).requires_grad_()
    upstream = torch.randn(x.shape, generator=gen)
    s_ours = ours(x)
    g_ours = torch.autograd.grad(s_ours, x, upstream)[0]
    s_theirs = theirs(x)
    g_theirs = torch.autograd.grad(s_theirs, x, upstream)[0]

    assert torch.equal(s_ours, s_theirs)
    torch.testing.assert_close(g_ours, g_theirs, rtol=1e-5, atol=1e-6)
    if kind == "plif":
        ours.zero_grad()
        theirs.reset()
        (ours(x) * upstream).sum().backward()
        (theirs(x) * upstream).sum().backward()
        torch.testing.assert_close(ours.w.grad, theirs.w.grad, rtol=1e-5, atol=1e-5)
