"""The quantizers and quantized layers on a CUDA device (skipped where there is none)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import tawq_core
from tawq_core import QuantConv2d, QuantLinear
from tawq_plugins.quantizers import calcium, calcium_fused

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
NAMES = [("fp32", {}), ("tawq", {}), ("mtawq", {"bits": 3}), ("ptq8", {}), ("binary", {}), ("ternary", {})]


@pytest.mark.parametrize(("name", "options"), NAMES)
def test_cuda_matches_cpu_and_packs_bit_exactly(name, options):
    q = tawq_core.create("quantizer", name, **options)
    w = torch.randn(32, 16, 3, 3, generator=torch.Generator().manual_seed(0))
    cpu = q.weights(w, 4)
    gpu = q.weights(w.cuda(), 4)
    assert gpu.device.type == "cuda" and gpu.dtype == torch.float32
    # reductions round differently on the GPU: allow a weight sitting on a threshold to flip
    assert (torch.isclose(gpu.cpu(), cpu, rtol=1e-5, atol=1e-6).float().mean() > 0.999)
    with torch.no_grad():
        expected = q.weights(w.cuda(), 4)
    packed = q.pack(w.cuda(), 4)
    assert torch.equal(q.unpack(packed).view(torch.int32), expected.contiguous().view(torch.int32))


def test_tawq_gradients_on_cuda_match_cpu():
    q = tawq_core.create("quantizer", "tawq")
    w = torch.randn(16, 24, generator=torch.Generator().manual_seed(1))
    upstream = torch.randn(4, 16, 24, generator=torch.Generator().manual_seed(2))
    grads = []
    for device in ("cpu", "cuda"):
        wd = w.to(device).requires_grad_()
        out = q.weights(wd, 4)
        (grad,) = torch.autograd.grad((out * upstream.to(device)).sum(), wd)
        grads.append(grad.cpu())
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-3, atol=1e-4)


def test_temporal_conv_and_linear_on_cuda_equal_the_loop_and_run_under_autocast(monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)  # TF32 convs differ by ~1e-2 per algorithm
    torch.manual_seed(0)
    conv = QuantConv2d.from_float(nn.Conv2d(8, 16, 3, padding=1, groups=2), "tawq", 4).cuda()
    x = torch.randn(4, 3, 8, 10, 10, device="cuda", requires_grad=True)
    y = conv(x)
    w = conv.effective_weight()
    ref = torch.stack([F.conv2d(x[t], w[t], conv.bias, padding=1, groups=2) for t in range(4)])
    torch.testing.assert_close(y, ref, rtol=1e-4, atol=1e-4)
    g = torch.randn_like(y)
    (gx,) = torch.autograd.grad((y * g).sum(), x)
    (gr,) = torch.autograd.grad((ref * g).sum(), x)
    torch.testing.assert_close(gx, gr, rtol=1e-4, atol=1e-4)
    linear = QuantLinear.from_float(nn.Linear(10, 6), "tawq", 4).cuda()
    with torch.autocast("cuda", dtype=torch.float16):
        out = linear(torch.randn(4 * 5, 10, device="cuda"))
        assert conv(x).dtype == torch.float16
    assert out.dtype == torch.float16 and out.shape == (20, 6)


def test_quantized_model_trains_on_cuda_with_amp():
    model = tawq_core.create("model", "sew-resnet", num_classes=10, sample_shape=(1, 40), layers=(1, 1), width=16)
    tawq_core.quantize(model, "tawq", 4)
    model.cuda().train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler("cuda")
    x, y = torch.randn(4, 8, 1, 40, device="cuda"), torch.randint(0, 10, (8,), device="cuda")
    before = model.blocks[0].conv1[0].weight.detach().clone()
    with torch.autocast("cuda", dtype=torch.float16):
        loss = F.cross_entropy(model(x).float(), y)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    assert torch.isfinite(loss) and not torch.equal(before, model.blocks[0].conv1[0].weight)


@pytest.mark.skipif(bool(calcium_fused.UNAVAILABLE), reason=calcium_fused.UNAVAILABLE or "triton")
@pytest.mark.parametrize("levels", [1, 3])
@pytest.mark.parametrize("steps", [1, 4, 7])
def test_fused_kernel_equals_the_eager_path(levels, steps, monkeypatch):
    x = torch.randn(3001, device="cuda", generator=torch.Generator("cuda").manual_seed(steps)) * 1.5
    assert calcium_fused.unsupported(x) == ""
    q_fused, alpha_fused, slopes_fused = calcium.run_dynamics(x, steps, levels, jacobian=True)
    monkeypatch.setenv("TAWQ_QUANT_KERNEL", "torch")
    q_eager, alpha_eager, slopes_eager = calcium.run_dynamics(x, steps, levels, jacobian=True)
    assert torch.equal(q_fused, q_eager) and torch.equal(alpha_fused, alpha_eager)
    torch.testing.assert_close(slopes_fused, slopes_eager, rtol=1e-5, atol=1e-6)


@pytest.mark.skipif(bool(calcium_fused.UNAVAILABLE), reason=calcium_fused.UNAVAILABLE or "triton")
def test_fused_weights_and_gradients_equal_the_eager_quantizer(monkeypatch):
    q = tawq_core.create("quantizer", "tawq")
    w = torch.randn(24, 8, 3, 3, device="cuda", requires_grad=True)
    upstream = torch.randn(4, 24, 8, 3, 3, device="cuda")
    fused_out = q.weights(w, 4)
    (fused_grad,) = torch.autograd.grad((fused_out * upstream).sum(), w)
    monkeypatch.setenv("TAWQ_QUANT_KERNEL", "torch")
    eager_out = q.weights(w, 4)
    (eager_grad,) = torch.autograd.grad((eager_out * upstream).sum(), w)
    assert torch.equal(fused_out, eager_out)
    torch.testing.assert_close(fused_grad, eager_grad, rtol=1e-4, atol=1e-5)
