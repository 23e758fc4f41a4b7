"""`tawq_core.quantize`: policy, report, in-place swap, and models from other SNN libraries."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import tawq_core
from tawq_core import (
    ConfigError,
    LayerRole,
    QuantConv1d,
    QuantLinear,
    QuantPolicy,
    SkipReason,
    UnmarkedRule,
    mark,
    quantize,
    quantized_layers,
    set_timesteps,
)

T = 4


class TinyNet(nn.Module):
    """Multi-step [T, B, C, L] -> [B, classes], layers called on x.flatten(0, 1) like the model plugins."""

    def __init__(self, marked: bool = True):
        super().__init__()
        stem = nn.Conv1d(1, 8, 3, padding=1)
        head = nn.Linear(8, 3)
        self.stem = mark(stem, "stem") if marked else stem
        self.bn = nn.BatchNorm1d(8)
        self.body = nn.Sequential(nn.Conv1d(8, 8, 3, padding=1), nn.ReLU(), nn.Conv1d(8, 8, 3, padding=1))
        self.proj = nn.Linear(8, 8)
        self.head = mark(head, "head") if marked else head

    def forward(self, x):
        steps = x.shape[0]
        y = self.body(self.bn(self.stem(x.flatten(0, 1))))
        y = self.proj(y.mean(-1))
        return self.head(y.reshape(steps, -1, 8).mean(0))


def names(report, reason=None):
    if reason is None:
        return [s.name for s in report.swapped]
    return [s.name for s in report.skipped if s.reason is reason]


def test_default_policy_keeps_marked_stem_head_and_norms():
    model = TinyNet()
    report = quantize(model, "tawq", T)
    assert names(report) == ["body.0", "body.2", "proj"]
    assert names(report, SkipReason.ROLE) == ["stem", "head"]
    assert isinstance(model.body[0], QuantConv1d) and isinstance(model.proj, QuantLinear)
    assert type(model.stem) is nn.Conv1d and type(model.bn) is nn.BatchNorm1d and type(model.head) is nn.Linear
    assert all(layer.timesteps == T for _, layer in quantized_layers(model))
    quantized = 2 * 8 * 8 * 3 + 8 * 8
    assert report.params_quantized == quantized
    assert report.total_params == sum(p.numel() for p in model.parameters())
    assert report.fraction_quantized == pytest.approx(quantized / report.total_params)
    assert model(torch.randn(T, 2, 1, 10)).shape == (2, 3)
    text = str(report)
    assert "quantized 3 of 5" in text and "body.2" in text and "stem layer (marked)" in text
    assert report.to_dict()["skipped"][0]["reason"] == "role"


def test_unmarked_model_keeps_first_and_last_and_says_so():
    report = quantize(TinyNet(marked=False), "ternary", T)
    assert names(report, SkipReason.FIRST_LAYER) == ["stem"] and names(report, SkipReason.LAST_LAYER) == ["head"]
    assert any("marks no stem/head" in note for note in report.notes)
    everything = quantize(TinyNet(marked=False), "ternary", T, QuantPolicy(unmarked="quantize-all"))
    assert len(everything.swapped) == 5 and not everything.notes


def test_fp32_quantized_model_computes_exactly_the_original():
    torch.manual_seed(0)
    model = TinyNet().eval()
    x = torch.randn(T, 3, 1, 10)
    expected = model(x)
    quantize(model, "fp32", T, QuantPolicy(skip_roles=()))
    torch.testing.assert_close(model(x), expected, rtol=0, atol=0)


def test_fp32_state_dict_loads_into_the_quantized_model():
    fp32, quantized = TinyNet(), TinyNet()
    quantize(quantized, "tawq", T)
    quantized.load_state_dict(fp32.state_dict())
    assert torch.equal(quantized.body[0].weight, fp32.body[0].weight)


def test_include_exclude_globs_and_roles():
    report = quantize(TinyNet(), "binary", T, QuantPolicy(exclude=("body.2",)))
    assert names(report) == ["body.0", "proj"] and names(report, SkipReason.EXCLUDED) == ["body.2"]
    report = quantize(TinyNet(), "binary", T, QuantPolicy(include=("body.*",)))
    assert names(report) == ["body.0", "body.2"] and names(report, SkipReason.NOT_INCLUDED) == ["proj"]
    report = quantize(TinyNet(), "binary", T, QuantPolicy(skip_roles={"head"}))
    assert names(report) == ["stem", "body.0", "body.2", "proj"]


@pytest.mark.parametrize("kwargs", [{"skip_roles": {"tail"}}, {"unmarked": "sometimes"}, {"include": "body.*"},
                                    {"exclude": ("",)}])
def test_policy_is_validated_on_construction(kwargs):
    with pytest.raises(ConfigError, match="polic"):
        QuantPolicy(**kwargs)


def test_policy_normalises_strings_to_enums():
    policy = QuantPolicy(skip_roles=["stem"], unmarked="quantize-all", include=["a*"])
    assert policy.skip_roles == frozenset({LayerRole.STEM}) and policy.unmarked is UnmarkedRule.QUANTIZE_ALL
    assert policy.include == ("a*",)


def test_requantizing_is_refused_and_bad_arguments_are_user_errors():
    model = TinyNet()
    quantize(model, "tawq", T)
    with pytest.raises(ConfigError, match="already quantized"):
        quantize(model, "binary", T)
    with pytest.raises(ConfigError, match="timesteps"):
        quantize(TinyNet(), "tawq", 0)
    with pytest.raises(tawq_core.PluginNotFound, match="no-such"):
        quantize(TinyNet(), "no-such", T)
    with pytest.raises(ConfigError, match="QuantPolicy"):
        quantize(TinyNet(), "tawq", T, policy={"exclude": ()})


def test_set_timesteps_changes_every_quantized_layer():
    model = TinyNet()
    quantize(model, "tawq", T)
    assert set_timesteps(model, 2) == 3
    assert {layer.timesteps for _, layer in quantized_layers(model)} == {2}
    assert model(torch.randn(2, 2, 1, 10)).shape == (2, 3)


def test_shared_layers_stay_shared_and_unsupported_layers_are_reported():
    shared = nn.Linear(4, 4)
    model = nn.Sequential(mark(nn.Linear(4, 4), "stem"), shared, nn.ReLU(), shared, nn.Conv3d(1, 1, 1),
                          nn.MultiheadAttention(4, 1), mark(nn.Linear(4, 2), "head"))
    report = quantize(model, "ternary", T)
    assert model[1] is model[3] and isinstance(model[1], QuantLinear)
    assert names(report) == ["1"]
    unsupported = {s.name: s.detail for s in report.skipped if s.reason is SkipReason.UNSUPPORTED}
    assert set(unsupported) == {"4", "5.out_proj"} and "MultiheadAttention" in unsupported["5.out_proj"]


def test_root_layer_cannot_be_swapped_in_place():
    report = quantize(nn.Linear(3, 3), "tawq", T, QuantPolicy(unmarked="quantize-all"))
    assert not report.swapped and "root module" in report.skipped[0].detail


def test_spikingjelly_multistep_network():
    sj = pytest.importorskip("spikingjelly.activation_based")
    from spikingjelly.activation_based import layer, neuron

    del sj
    net = nn.Sequential(
        layer.Conv2d(1, 4, 3, padding=1, step_mode="m"), layer.BatchNorm2d(4, step_mode="m"),
        neuron.LIFNode(step_mode="m"),
        layer.Conv2d(4, 4, 3, padding=1, step_mode="m"), layer.BatchNorm2d(4, step_mode="m"),
        neuron.LIFNode(step_mode="m"),
        layer.SeqToANNContainer(nn.Conv2d(4, 4, 3, padding=1)), neuron.LIFNode(step_mode="m"),
        layer.Flatten(step_mode="m"), layer.Linear(4 * 6 * 6, 3, step_mode="m"),
    )
    x = torch.rand(T, 2, 1, 6, 6)
    report = quantize(net, "tawq", T)
    assert names(report) == ["3", "6.0"]  # [T, B, ...] into one, [T*B, ...] into the other
    assert net(x).shape == (T, 2, 3)


def test_snntorch_network_with_a_static_quantizer():
    snn = pytest.importorskip("snntorch")
    net = nn.Sequential(nn.Linear(5, 8), snn.Leaky(beta=0.9, init_hidden=True), nn.Linear(8, 8),
                        snn.Leaky(beta=0.9, init_hidden=True), nn.Linear(8, 2))
    report = quantize(net, "ternary", T)
    assert names(report) == ["2"]
    outputs = [net(torch.rand(3, 5)) for _ in range(T)]  # snntorch steps one timestep per call
    assert outputs[-1].shape == (3, 2)
