"""The fused Triton kernels against the eager loops (CUDA, or Triton's CPU interpreter).

Skipped where neither runs: CI has no GPU. Run on a GPU machine, or locally with Triton installed and
``TRITON_INTERPRET=1``.
"""

from __future__ import annotations

import itertools
import os

import pytest
import torch

import tawq_core
from tawq_plugins.neurons import dynamics, fused

if torch.cuda.is_available():
    DEVICE = "cuda"
elif os.environ.get("TRITON_INTERPRET") == "1":
    DEVICE = "cpu"
else:
    DEVICE = None
pytestmark = pytest.mark.skipif(bool(fused.UNAVAILABLE) or DEVICE is None,
                                reason=fused.UNAVAILABLE or "needs CUDA or TRITON_INTERPRET=1")

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
    return tawq_core.create("neuron", kind, **options).to(DEVICE)


@pytest.mark.parametrize("case", CASES)
def test_fused_kernels_equal_eager_loops(case):
    n = make(*case)
    d = n.dynamics
    with torch.no_grad():
        k = n.leak_constant()  # inside autograd.Function the kernels never record a graph
    gen = torch.Generator().manual_seed(CASES.index(case))
    x = (torch.randn(5, 3, 1000, generator=gen) * 1.5 + 0.6).to(DEVICE)  # 3000: not a multiple of BLOCK
    grad_s = torch.randn(x.shape, generator=gen).to(DEVICE)
    assert not fused.unsupported(d, x)

    spikes, charged = fused.run(d, x, k, keep_h=True)
    ref_spikes, ref_charged = dynamics._run(d, x, k, keep_h=True)
    assert torch.equal(spikes, ref_spikes) and torch.equal(charged, ref_charged)
    assert torch.equal(fused.run(d, x, k, keep_h=False)[0], spikes)

    need_k = case[0] == "plif"
    grad_x, grad_k = fused.bptt(d, grad_s, charged, x, k, need_k)
    ref_x, ref_k = dynamics._bptt(d, grad_s, ref_charged, x, k, need_k)
    torch.testing.assert_close(grad_x, ref_x, rtol=1e-4, atol=1e-5)
    if need_k:
        torch.testing.assert_close(grad_k, ref_k.sum(), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("timesteps", [1, 4])
def test_neuron_module_runs_fused_for_any_float_dtype(dtype, timesteps):
    if DEVICE == "cpu" and dtype == torch.bfloat16:
        pytest.skip("Triton's CPU interpreter cannot emulate bfloat16 stores")
    n = make("plif", 0.0, True, True, "sigmoid")
    x = (torch.randn(timesteps, 2, 3, 7, 5) + 0.8).to(DEVICE, dtype).requires_grad_()
    out = n(x)
    assert out.dtype == dtype and out.shape == x.shape
    assert set(out.unique().tolist()) <= {0.0, 1.0}
    out.float().sum().backward()
    assert torch.isfinite(x.grad.float()).all() and torch.isfinite(n.w.grad).all()
