"""Every built-in model at a tiny size: layout, readout, roles, gradients, neuron plumbing."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import tawq_core
from tawq_core import LayerRole, role_of

TINY = {
    "mlp-digits": ("mlp", (1, 8, 8), {"hidden": (16, 12)}),
    "mlp-shd": ("mlp", (20,), {"hidden": (16,), "bn": False}),
    "sew-2d": ("sew-resnet", (2, 8, 8), {"layers": (1, 1), "width": 8}),
    "sew-1d": ("sew-resnet", (1, 40), {"layers": (1, 1, 1), "width": 8}),
    "sew-shd": ("sew-resnet", (20,), {"layers": (1, 1), "width": 4}),
    "spikingformer": ("spikingformer", (3, 16, 16), {"embed_dim": 32, "depth": 1, "heads": 2}),
    "qkformer": ("qkformer", (3, 16, 16), {"embed_dim": 32, "depth": 3, "heads": 2}),
}
WEIGHTED = (nn.Conv1d, nn.Conv2d, nn.Linear)


def build(key: str, **extra) -> nn.Module:
    name, shape, options = TINY[key]
    torch.manual_seed(0)
    return tawq_core.create("model", name, num_classes=5, sample_shape=shape, **options, **extra)


def test_all_models_are_registered():
    assert {"mlp", "sew-resnet", "spikingformer", "qkformer"} <= set(tawq_core.list_plugins("model"))


@pytest.mark.parametrize("timesteps", [1, 4])
@pytest.mark.parametrize("key", list(TINY))
def test_forward_backward_on_flattened_layout(key, timesteps):
    model = build(key)
    shape = TINY[key][1]
    batch = 6
    calls: list[tuple[nn.Module, int]] = []
    hooks = [m.register_forward_hook(lambda m, args, out: calls.append((m, args[0].shape[0])))
             for m in model.modules() if isinstance(m, WEIGHTED)]
    x = torch.randn(timesteps, batch, *shape) * 2
    logits = model(x)
    for hook in hooks:
        hook.remove()
    assert logits.shape == (batch, 5) and torch.isfinite(logits).all()

    # the analog input enters through the marked stem; every other layer is called once per step on
    # the folded [T*B, ...] layout, the head once on the time-averaged features
    assert role_of(calls[0][0]) is LayerRole.STEM
    assert role_of(calls[-1][0]) is LayerRole.HEAD
    assert all(first_dim == timesteps * batch for _, first_dim in calls[:-1])
    assert calls[-1][1] == batch
    roles = [role_of(m) for m in model.modules() if role_of(m) is not None]
    assert sorted(r.value for r in roles) == ["head", "stem"]

    nn.functional.cross_entropy(logits, torch.arange(batch) % 5).backward()
    stem = calls[0][0]
    assert stem.weight.grad is not None and stem.weight.grad.abs().sum() > 0
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name


@pytest.mark.parametrize("key", ["sew-1d", "spikingformer", "qkformer"])
def test_neuron_plugin_and_options_reach_every_neuron(key):
    model = build(key, neuron="plif", neuron_options={"tau": 3.0, "v_reset": None})
    neurons = [m for m in model.modules() if isinstance(m, tawq_core.Neuron)]
    assert neurons and all(type(n).__name__ == "PLIF" for n in neurons)
    assert all(n.tau == pytest.approx(3.0) and n.dynamics.v_reset is None for n in neurons)
    thresholds = sorted({n.dynamics.v_threshold for n in neurons})
    assert thresholds == ([1.0] if key == "sew-1d" else [0.5, 1.0])  # attention neurons fire at 0.5


def test_eval_mode_is_deterministic_and_needs_no_graph():
    model = build("qkformer").eval()
    x = torch.randn(2, 2, 3, 16, 16)
    with torch.no_grad():
        first = model(x)
        assert torch.equal(model(x), first)


@pytest.mark.parametrize("key", ["mlp-digits", "sew-1d"])
def test_a_few_steps_fit_a_fixed_batch(key):
    model = build(key)
    shape = TINY[key][1]
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(1, 16, *shape, generator=gen).expand(2, 16, *shape)
    y = (x[0].flatten(1).mean(1) > 0).long()  # a rule every model can pick up quickly
    opt = torch.optim.AdamW(model.parameters(), lr=2e-2)
    losses = []
    for _ in range(12):
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]
