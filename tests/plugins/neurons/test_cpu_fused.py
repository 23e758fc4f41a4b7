"""The fused CPU kernels (numba) against the eager loops: bit-equal spikes and h, gradients to rounding."""

from __future__ import annotations

import itertools

import pytest
import torch

import tawq_core
from tawq_plugins.neurons import cpu_fused, dynamics

pytestmark = pytest.mark.skipif(bool(cpu_fused.UNAVAILABLE), reason=cpu_fused.UNAVAILABLE or "")

CASES = [
    case
    for case in itertools.product(["lif", "plif", "if"], [0.0, -0.2, None], [True, False], [True, False],
                                  ["sigmoid", "atan"])
    if case[0] != "if" or case[2]
]


def make(kind, v_reset, decay_input, detach_reset, surrogate):
    options = {"v_threshold": 0.8, "v_reset": v_reset, "detach_reset": detach_reset, "surrogate": surrogate}
    if kind != "if":
        options.update(decay_input=decay_input, tau=2.5)
    return tawq_core.create("neuron", kind, **options)


def check_against_eager(neuron, x, grad_s, need_k):
    d = neuron.dynamics
    with torch.no_grad():
        k = neuron.leak_constant()
    spikes, charged = cpu_fused.run(d, x, k, keep_h=True)
    ref_spikes, ref_charged = dynamics._run(d, x, k, keep_h=True)
    assert torch.equal(spikes, ref_spikes) and torch.equal(charged, ref_charged)
    assert torch.equal(cpu_fused.run(d, x, k, keep_h=False)[0], spikes)
    ref_x, ref_k = dynamics._bptt(d, grad_s, ref_charged, x, k, need_k)
    grad_x, grad_k = cpu_fused.bptt(d, grad_s, x, x, k, need_k)
    torch.testing.assert_close(grad_x, ref_x, rtol=1e-5, atol=1e-6)
    if need_k:
        torch.testing.assert_close(grad_k, ref_k.sum(), rtol=1e-5, atol=1e-5)
    return spikes, grad_x


@pytest.mark.parametrize("case", CASES)
def test_fused_cpu_kernels_equal_eager_loops(case):
    gen = torch.Generator().manual_seed(CASES.index(case))
    x = torch.randn(5, 3, 1100, generator=gen) * 1.5 + 0.6  # 3300 neurons: several blocks, a ragged tail
    grad_s = torch.randn(x.shape, generator=gen)
    spikes, _ = check_against_eager(make(*case), x, grad_s, need_k=case[0] == "plif")
    assert 0.05 < spikes.mean().item() < 0.95


def test_threads_split_and_layouts_are_kept():
    """Two threads over a large tensor; channels-last stays channels-last; a transposed input is copied."""
    gen = torch.Generator().manual_seed(0)
    n = make("plif", 0.0, True, True, "sigmoid")
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        x = torch.randn(4, 8, 16, 24, 24, generator=gen) + 0.6  # 73 k neurons x 4 steps: split over threads
        check_against_eager(n, x, torch.randn(x.shape, generator=gen), need_k=True)
    finally:
        torch.set_num_threads(before)
    flat = (torch.randn(12, 6, 5, 7, generator=gen) + 0.6).contiguous(memory_format=torch.channels_last)
    x = flat.reshape(3, 4, 6, 5, 7)
    spikes, grad_x = check_against_eager(n, x, torch.randn(x.shape, generator=gen).expand_as(x), need_k=True)
    assert spikes.stride() == x.stride() and grad_x.stride() == x.stride()
    x = (torch.randn(6, 3, 50, generator=gen) + 0.6).transpose(0, 1)  # time is not the outer dimension
    check_against_eager(n, x, torch.randn(x.shape, generator=gen), need_k=True)


def test_module_uses_fused_kernels_for_float64_and_eager_for_half():
    n = make("lif", 0.0, True, True, "sigmoid")
    x = (torch.randn(4, 3, 50, dtype=torch.float64) + 0.6).requires_grad_()
    assert dynamics._kernels(n.dynamics, x)[0] is cpu_fused.run
    out = n(x)
    assert out.dtype == torch.float64
    out.sum().backward()
    assert torch.isfinite(x.grad).all()
    assert dynamics._kernels(n.dynamics, x.detach().half())[0] is dynamics._run


def test_environment_forces_eager_loop(monkeypatch):
    n = make("lif", 0.0, True, True, "sigmoid")
    monkeypatch.setenv("TAWQ_NEURON_KERNEL", "torch")
    assert dynamics._kernels(n.dynamics, torch.zeros(2, 3))[0] is dynamics._run
