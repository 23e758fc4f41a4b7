"""The static baselines: ptq8, binary, ternary (TWN) and the fp32 identity."""

from __future__ import annotations

import pytest
import torch

import tawq_core
from tawq_core import QuantMode, ShapeError


def make(name, **options):
    return tawq_core.create("quantizer", name, **options)


def test_all_six_quantizers_are_registered_plugins():
    assert {"fp32", "tawq", "mtawq", "ptq8", "binary", "ternary"} <= set(tawq_core.list_plugins("quantizer"))


@pytest.mark.parametrize("name", ["fp32", "ptq8", "binary", "ternary"])
def test_static_shape_and_flags(name):
    q = make(name)
    w = torch.randn(5, 3, 2, 2)
    assert not q.temporal
    assert q.weights(w, 4).shape == w.shape


def test_ptq8_symmetric_per_channel_int8():
    q = make("ptq8")
    w = torch.randn(6, 20) * torch.linspace(0.1, 3, 6).unsqueeze(1)
    out = q.weights(w, 4)
    scale = w.abs().amax(dim=1, keepdim=True) / 127
    codes = out / scale
    assert torch.allclose(codes, codes.round(), atol=1e-4) and codes.abs().max() <= 127 + 1e-4
    assert torch.allclose(out.abs().amax(dim=1), w.abs().amax(dim=1))  # the peak maps to ±127 exactly
    assert ((out - w).abs() <= scale / 2 + 1e-7).all()  # round to nearest
    assert q.mode is QuantMode.PTQ and not out.requires_grad


def test_ptq8_zero_channel_and_calibrate_is_a_no_op():
    w = torch.randn(3, 4)
    w[1] = 0
    q = make("ptq8")
    assert torch.equal(q.weights(w, 1)[1], torch.zeros(4))
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 4), torch.nn.Linear(4, 3))
    tawq_core.quantize(model, q, 1)
    before = model[1].weight.clone()
    assert q.init_state(w) == {} and tawq_core.calibrate(model, [torch.randn(1, 2, 4)]) == 0  # stateless
    assert torch.equal(model[1].weight, before)


def test_binary_values_scale_and_ste():
    q = make("binary")
    w = (torch.randn(4, 3, 3) + 0.3).requires_grad_()
    out = q.weights(w, 4)
    centered = w.detach() - w.detach().mean(dim=(1, 2), keepdim=True)
    alpha = centered.abs().mean(dim=(1, 2), keepdim=True)
    expected = torch.where(centered >= 0, alpha, -alpha)
    assert torch.equal(out, expected)
    upstream = torch.randn_like(out)
    (grad,) = torch.autograd.grad((out * upstream).sum(), w)
    assert torch.equal(grad, upstream)  # identity straight-through estimator
    assert q.mode is QuantMode.QAT


def test_ternary_twn_threshold_and_scale():
    q = make("ternary")
    w = torch.randn(5, 40).requires_grad_()
    out = q.weights(w, 4)
    wd = w.detach()
    delta = 0.7 * wd.abs().mean(dim=1, keepdim=True)
    kept = wd.abs() > delta
    alpha = (wd.abs() * kept).sum(dim=1, keepdim=True) / kept.sum(dim=1, keepdim=True)
    expected = torch.where(kept, torch.sign(wd) * alpha, torch.zeros_like(wd))
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    assert set(torch.unique(torch.sign(out)).tolist()) <= {-1.0, 0.0, 1.0}
    upstream = torch.randn_like(out)
    (grad,) = torch.autograd.grad((out * upstream).sum(), w)
    assert torch.equal(grad, upstream)


def test_fp32_is_the_identity():
    w = torch.randn(3, 4)
    assert make("fp32").weights(w, 4) is w


@pytest.mark.parametrize("name", ["ptq8", "binary", "ternary"])
def test_per_channel_quantizers_need_a_channel_dim(name):
    with pytest.raises(ShapeError, match="dims"):
        make(name).weights(torch.randn(8), 4)


@pytest.mark.parametrize("name", ["ptq8", "binary", "ternary"])
def test_float32_under_autocast(name):
    w = torch.randn(6, 5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = make(name).weights(w, 2)
    assert out.dtype == torch.float32 and torch.equal(out, make(name).weights(w, 2))
