"""The time layout contract: [T, B, ...] or [T*B, ...] with B from the model's forward, per-step calls only
inside `stepwise`, time-collapsed input refused by name, and op counting exact for every T and B."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import tawq_core
from tawq_core import QuantConv1d, QuantLinear, QuantPolicy, ShapeError, count_ops, quantize, stepwise
from tawq_core.nn.layers import split_time


class Folded(nn.Module):
    """Linear -> conv1d on the flattened [T*B, ...] view, then the time mean into a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Linear(3, 4)
        self.mid = nn.Linear(4, 4)
        self.conv = nn.Conv1d(1, 2, 3, padding=1)
        self.head = nn.Linear(8, 2)

    def forward(self, x: Tensor) -> Tensor:
        t, b = x.shape[:2]
        h = self.mid(self.stem(x.flatten(0, 1)))  # [T*B, 4]
        h = self.conv(h.unsqueeze(1)).reshape(t, b, 8)
        return self.head(h.mean(0))  # [B, 8]: time-collapsed


def _reference(model: Folded, x: Tensor) -> Tensor:
    """The per-timestep loop the batched layers must equal: weight set t on timestep t."""
    w_mid, w_conv = model.mid.effective_weight(), model.conv.effective_weight()
    steps = []
    for t in range(x.shape[0]):
        h = F.linear(model.stem(x[t]), w_mid[t], model.mid.bias)
        steps.append(F.conv1d(h.unsqueeze(1), w_conv[t], model.conv.bias, padding=1).flatten(1))
    return model.head(torch.stack(steps).mean(0))


@pytest.mark.parametrize(("T", "B"), [(1, 1), (1, 64), (2, 3), (3, 64), (4, 128), (5, 3), (7, 1), (100, 128),
                                      (3, 3), (4, 2)])
def test_flattened_layers_use_weight_set_t_for_every_t_and_b(T, B):
    torch.manual_seed(T * 1000 + B)
    model = Folded()
    quantize(model, "tawq", T, QuantPolicy(exclude=("stem", "head")))
    x = torch.randn(T, B, 3)
    with torch.no_grad():
        torch.testing.assert_close(model(x), _reference(model, x), rtol=1e-5, atol=1e-5)
    assert count_ops(model, x).samples == B


def test_per_step_calls_are_refused_outside_stepwise_and_exact_inside():
    T, B = 4, 4  # T == B: the case a divisibility guess got silently wrong
    torch.manual_seed(0)
    layer = nn.Sequential(nn.Linear(3, 5), nn.Linear(5, 2))
    quantize(layer, "tawq", T, QuantPolicy(unmarked="quantize-all"))
    x = torch.randn(T, B, 3)
    with torch.no_grad():
        whole = layer(x)
        with pytest.raises(ShapeError, match="stepwise"):
            layer(x[0])  # [B=4, 3] passes the model's T check as [T, 3, ...]; the layer refuses it
        with stepwise(layer):
            steps = torch.stack([layer(x[t]) for t in range(T)])
            with pytest.raises(ShapeError, match="called 5 times in one `tawq_core.stepwise` block"):
                layer(x[0])
        torch.testing.assert_close(steps, whole)
        with stepwise(layer):  # entering again restarts at t = 0
            torch.testing.assert_close(layer(x[0]), whole[0])


def test_a_loop_inside_the_model_forward_runs_in_stepwise():
    class Loop(nn.Module):  # snntorch style: the model steps its layers itself
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b, self.c = nn.Linear(3, 6), nn.Linear(6, 6), nn.Linear(6, 2)

        def forward(self, x: Tensor) -> Tensor:
            return torch.stack([self.c(torch.relu(self.b(self.a(x_t)))) for x_t in x])

    torch.manual_seed(1)
    model = Loop()
    quantize(model, "tawq", 3)
    x = torch.randn(3, 5, 3)
    with pytest.raises(ShapeError, match="leading dim 5 is the batch"):
        model(x)
    with torch.no_grad(), stepwise(model):
        got = model(x)
    w = model.b.effective_weight()
    ref = torch.stack([model.c(torch.relu(F.linear(model.a(x[t]), w[t], model.b.bias))) for t in range(3)])
    torch.testing.assert_close(got, ref)


def test_a_per_step_token_loop_with_b_equal_t_is_refused_not_read_as_time_major():
    """[B, N, F] with B == T and N == B has the shape of [T, B, F]; the second call in one forward gives the
    per-step loop away, so the forward raises instead of returning mixed-up weight sets."""
    class TokenLoop(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem, self.mid, self.head = nn.Linear(3, 4), nn.Linear(4, 4), nn.Linear(4, 2)

        def forward(self, x: Tensor) -> Tensor:  # x: [T, B, N, 3]
            return torch.stack([self.head(self.mid(self.stem(x_t))) for x_t in x])

    T = 3
    torch.manual_seed(2)
    model = TokenLoop()
    quantize(model, "tawq", T)
    x = torch.randn(T, T, T, 3)  # B = N = T
    with torch.no_grad():
        with pytest.raises(ShapeError, match="called again in one forward with input \\(3, 3, 4\\)"):
            model(x)
        with stepwise(model):
            got = model(x)
        w = model.mid.effective_weight()
        ref = torch.stack([model.head(F.linear(model.stem(x[t]), w[t], model.mid.bias)) for t in range(T)])
        torch.testing.assert_close(got, ref)
        once = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 4), nn.Linear(4, 2))
        quantize(once, "tawq", T)
        once(torch.randn(T, T, 3))  # a genuine [T, B, F] with B == T, called once per forward, still runs
        once(torch.randn(T, T, 3))  # ... and again in the next forward


def test_time_collapsed_input_names_the_layer_and_the_exclude_that_fixes_it():
    model = tawq_core.create("model", "mlp", num_classes=3, sample_shape=(5,), hidden=(4, 4))
    quantize(model, "tawq", 3, QuantPolicy(skip_roles=frozenset({"stem"})))
    with pytest.raises(ShapeError, match=r"QuantLinear 'head' got \(2, 4\).*QuantPolicy\(exclude=\['head'\]\)"):
        model(torch.randn(3, 2, 5))
    fixed = tawq_core.create("model", "mlp", num_classes=3, sample_shape=(5,), hidden=(4, 4))
    quantize(fixed, "tawq", 3, QuantPolicy(skip_roles=frozenset({"stem"}), exclude=("head",)))
    assert fixed(torch.randn(3, 2, 5)).shape == (2, 3)


def test_model_input_with_another_t_is_refused_at_the_model():
    model = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 3), nn.Linear(3, 3))
    quantize(model, "tawq", 4)
    with pytest.raises(ShapeError, match=r"model input \(3, 2, 3\) has T=3 timesteps, but .* tawq for T=4"):
        model(torch.randn(3, 2, 3))


def test_standalone_layers_take_t_b_and_refuse_flattened_input():
    conv = QuantConv1d.from_float(nn.Conv1d(2, 3, 3), "tawq", 3)
    assert conv(torch.randn(3, 2, 2, 5)).shape == (3, 2, 3, 3)
    with pytest.raises(ShapeError, match="used on its own"):
        conv(torch.randn(6, 2, 5))
    single = QuantLinear.from_float(nn.Linear(2, 2), "tawq", 1)
    assert single(torch.randn(7, 2)).shape == (7, 2)  # T = 1: T*B is B, nothing to guess
    linear = QuantLinear.from_float(nn.Linear(2, 2), "tawq", 3)
    with torch.no_grad(), stepwise(linear):
        assert [linear(torch.randn(5, 2)).shape for _ in range(3)] == [(5, 2)] * 3


def test_split_time_views_and_restores():
    linear = QuantLinear.from_float(nn.Linear(2, 2), "tawq", 3)
    x = torch.randn(3, 4, 5, 2)  # [T, B, tokens, F]
    view = split_time(linear, x, 1, extra_leading=True)
    assert view.x.shape == (3, 20, 2) and view.steps == slice(None)
    assert view.restore(view.x).shape == x.shape


def test_a_deep_copy_keeps_its_own_layout():
    model = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 3), nn.Linear(3, 3))
    quantize(model, "tawq", 2)
    twin = copy.deepcopy(model)
    assert twin[1].time_layout is not model[1].time_layout
    tawq_core.set_timesteps(twin, 3)
    assert twin(torch.randn(3, 2, 3)).shape == (3, 2, 3) and model(torch.randn(2, 2, 3)).shape == (2, 2, 3)


def test_count_ops_on_the_shd_mlp_shape():
    """The shd-mlp preset's T = 100 and measure batch 128 (tiny widths): the head reads the mean over T."""
    model = tawq_core.create("model", "mlp", num_classes=20, sample_shape=(140,), hidden=(8, 8))
    quantize(model, "tawq", 100)
    x = (torch.rand(100, 128, 140) < 0.1).float()
    report = count_ops(model, x)
    rows = {row.name: row for row in report.layers}
    assert report.samples == 128 and report.timesteps == 100
    assert rows["body.2.0"].steps == 100 and rows["head"].steps == 1
    assert rows["head"].macs_per_step == 8 * 20  # once per sample, not divided by T
    assert rows["head"].calls == 1 and len(rows["head"].exact_per_step) == 1


def test_layouts_hold_no_layers_and_stale_hooks_go():
    import gc
    import weakref

    from tawq_core.nn.time_layout import install_time_layout

    model = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 3), nn.Linear(3, 3), nn.Linear(3, 3))
    quantize(model, "tawq", 2)
    first = model[1].time_layout
    gone = weakref.ref(model[1])
    model[1] = nn.Identity()  # swapped out, as deployment does: nothing may keep it (and its weights) alive
    gc.collect()
    assert gone() is None
    second = install_time_layout(model, [("2", model[2])])  # the first layout is left with no layer: unhooked
    assert len(model._forward_pre_hooks) == 1 and second is not first
    assert model(torch.randn(2, 4, 3)).shape == (2, 4, 3)
