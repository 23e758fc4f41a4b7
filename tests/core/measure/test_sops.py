"""Operation counting against hand computations and an independent (unfold-based) reference."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tawq_core import Neuron, QuantConv2d, QuantLinear, ShapeError, create, mark
from tawq_core.measure.sops import OpsCounter, count_ops, layer_macs


class TimeFlatten(nn.Module):
    """Runs a layer on the flattened [T*B, ...] layout, as spikingjelly's SeqToANNContainer does."""

    def __init__(self, layer: nn.Module):
        super().__init__()
        self.layer = layer

    def forward(self, x: Tensor) -> Tensor:
        y = self.layer(x.flatten(0, 1))
        return y.reshape(x.shape[0], x.shape[1], *y.shape[1:])


class ThresholdNeuron(Neuron):
    """A stand-in neuron with a known output: spike where the input exceeds 0.5."""

    def forward(self, x: Tensor) -> Tensor:
        return (x > 0.5).float()


def linear_3_to_2() -> nn.Linear:
    layer = nn.Linear(3, 2, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, 0.0, 2.0], [0.0, 0.0, -1.0]]))
    return layer


def test_linear_counts_by_hand():
    x = torch.tensor([[[1.0, 1.0, 0.0]], [[0.0, 1.0, 1.0]]])  # [T=2, B=1, 3]
    report = count_ops(nn.Sequential(linear_3_to_2()), x)
    (row,) = report.layers
    assert (report.timesteps, report.samples) == (2, 1)
    assert row.charged_as == "ac" and row.reason == "binary spike input"
    assert row.macs_per_step == 6  # 2 outputs x 3 inputs
    assert row.input_rate == pytest.approx(4 / 6)
    assert row.weight_density == pytest.approx(0.5)
    assert row.conventional_ac == pytest.approx(2 * (4 / 6) * 6)  # T · rate · MACs = 8
    # t0: inputs 0,1 spike -> non-zero weights in their columns: 1 + 0; t1: inputs 1,2 -> 0 + 2
    assert row.exact_per_step == [1.0, 2.0]
    assert report.exact_ac == 3 and report.conventional_mac == report.exact_mac == 0


def test_conv1d_counts_by_hand_in_the_flattened_layout():
    conv = nn.Conv1d(1, 1, 3, padding=1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([[[1.0, 0.0, 1.0]]]))
    x = torch.tensor([[1.0, 1.0, 0.0, 1.0], [0.0, 0.0, 0.0, 1.0]]).reshape(2, 1, 1, 4)  # [T, B, C, L]
    (row,) = count_ops(TimeFlatten(conv), x).layers
    assert row.macs_per_step == 12  # 4 outputs x 3 taps (padding taps included, as in syops)
    assert row.input_rate == 0.5
    assert row.conventional_ac == pytest.approx(2 * 0.5 * 12)
    # each output sums its left and right neighbour (centre weight is zero):
    # t0 x=[1,1,0,1]: outputs 0..3 see 1,1,2,0 spikes -> 4; t1 x=[0,0,0,1]: only output 2 -> 1
    assert row.exact_per_step == [4.0, 1.0]


def test_stem_and_non_binary_inputs_are_charged_as_macs():
    stem = mark(nn.Linear(3, 2, bias=False), "stem")
    spikes = torch.tensor([[[1.0, 0.0, 0.0]]])  # binary, but the layer is the stem
    (row,) = count_ops(nn.Sequential(stem), spikes).layers
    assert (row.charged_as, row.reason) == ("mac", "stem role")
    assert row.conventional_mac == 6 and row.conventional_ac == 0
    assert row.exact_mac == 2  # one non-zero input x its two non-zero weights
    analog = torch.tensor([[[0.3, 2.0, 0.0]]])
    (row,) = count_ops(nn.Sequential(linear_3_to_2()), analog).layers
    assert (row.charged_as, row.reason) == ("mac", "non-binary input")
    assert row.conventional_mac == 6  # T · MACs, whatever the input's zeros
    assert row.exact_mac == 1  # inputs 0,1 non-zero; only column 0 has a non-zero weight


def test_flattened_and_time_major_layouts_count_the_same():
    torch.manual_seed(0)
    x = (torch.rand(3, 4, 5) > 0.6).float()
    layer = nn.Linear(5, 7)
    a = count_ops(nn.Sequential(layer), x)
    b = count_ops(TimeFlatten(layer), x)
    assert a.layers[0].exact_per_step == pytest.approx(b.layers[0].exact_per_step)
    assert a.conventional_ac == pytest.approx(b.conventional_ac)


def unfold_pairs(x: Tensor, w: Tensor, padding: int) -> float:
    """Reference: (non-zero input, non-zero weight) pairs of a stride-1 conv, via unfold."""
    cols = F.unfold((x != 0).double(), w.shape[-1], padding=padding)  # [N, C*k*k, L]
    return float(torch.einsum("nkl,ok->", cols, (w != 0).double().flatten(1)))


@pytest.mark.parametrize("quantizer", ["tawq", "ternary"])
def test_quantized_conv_exact_pairs_match_the_reference(quantizer):
    torch.manual_seed(1)
    T, B = 3, 2
    layer = QuantConv2d(2, 3, 3, padding=1, quantizer=quantizer, timesteps=T).eval()
    x = (torch.rand(T, B, 2, 5, 5) > 0.5).float()
    (row,) = count_ops(nn.Sequential(layer), x).layers
    with torch.no_grad():
        w = layer.effective_weight()
    w = w if w.dim() == 5 else w.expand(T, *w.shape)
    expected = [unfold_pairs(x[t], w[t], padding=1) / B for t in range(T)]
    assert row.exact_per_step == pytest.approx(expected)
    assert row.weight_density == pytest.approx(float((w != 0).float().mean()))
    assert row.macs_per_step == 3 * 25 * 2 * 9
    assert row.exact_ac < row.conventional_ac  # ternary zeros do no operation


def test_temporal_quantized_linear_uses_each_timesteps_weights():
    torch.manual_seed(2)
    T = 4
    layer = QuantLinear(6, 5, quantizer=create("quantizer", "tawq"), timesteps=T).eval()
    x = (torch.rand(T * 3, 6) > 0.5).float()  # the flattened [T*B, F] layout
    (row,) = count_ops(nn.Sequential(layer), x.reshape(T, 3, 6)).layers
    with torch.no_grad():
        w = layer.effective_weight()
    xt = x.reshape(T, 3, 6)
    expected = [float(((xt[t] != 0).double() @ (w[t] != 0).double().T).sum()) / 3 for t in range(T)]
    assert row.exact_per_step == pytest.approx(expected)


def test_neuron_firing_rates():
    model = nn.Sequential(ThresholdNeuron(), nn.Linear(4, 2), ThresholdNeuron())
    x = torch.tensor([[[0.9, 0.1, 0.7, 0.2]], [[0.0, 0.0, 0.0, 0.6]]])  # [T=2, B=1, 4]
    report = count_ops(model, x)
    first = report.neurons[0]
    assert (first.name, first.rate, first.elements) == ("0", 3 / 8, 8)
    spikes = sum(n.rate * n.elements for n in report.neurons)
    assert report.firing_rate == pytest.approx(spikes / 12)


def test_stem_macs_of_spikingformer_8_512_at_224_on_the_meta_device():
    stem = nn.Conv2d(3, 64, 3, padding=1, bias=False, device="meta")
    out = stem(torch.empty(1, 3, 224, 224, device="meta"))
    per_step = layer_macs(stem, out.shape[1:])
    assert per_step == 3 * 64 * 9 * 224**2
    assert 4 * per_step == pytest.approx(0.347e9, rel=1e-3)


def test_several_batches_average_per_sample_and_modes_are_restored():
    torch.manual_seed(3)
    norm = nn.BatchNorm1d(5)
    model = nn.Sequential(nn.Linear(5, 5), TimeFlatten(norm)).train()
    stats = norm.running_mean.clone()
    x1, x2 = (torch.rand(2, 3, 5) > 0.5).float(), (torch.rand(2, 1, 5) > 0.5).float()
    both = count_ops(model, [x1, x2])
    one, two = count_ops(model, x1), count_ops(model, x2)
    assert both.samples == 4
    assert both.exact_ac == pytest.approx((3 * one.exact_ac + 1 * two.exact_ac) / 4)
    assert model.training and norm.training
    assert torch.equal(norm.running_mean, stats)


class PerStep(nn.Module):
    """The snntorch idiom: the layer is called once per timestep on [B, F]."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x: Tensor) -> Tensor:
        return torch.stack([self.fc(x_t) for x_t in x])


def test_per_step_calls_count_the_same_as_one_time_major_call():
    model = PerStep()
    x = (torch.rand(3, 5, 4) > 0.5).float()
    per_step = count_ops(model, x).layers[0]
    whole = count_ops(nn.Sequential(model.fc), x).layers[0]
    assert per_step.steps == whole.steps == 3 and per_step.calls == 3
    assert per_step.exact_per_step == pytest.approx(whole.exact_per_step)
    assert per_step.conventional_ac == pytest.approx(whole.conventional_ac)


def test_layer_input_that_is_not_t_b_or_t_times_b_is_a_shape_error():
    class Chunked(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 2)

        def forward(self, x: Tensor) -> Tensor:
            return self.fc(x.flatten(0, 1)[:4])  # 4 rows: neither T*B=6, B=2 nor [T, B, ...]

    with pytest.raises(ShapeError, match=r"neither \[T, B, ...\]"):
        count_ops(Chunked(), torch.zeros(3, 2, 4))


def test_no_forward_and_changing_t_are_errors():
    model = nn.Sequential(nn.Linear(4, 2))
    with pytest.raises(ShapeError, match="saw no forward pass"):
        with OpsCounter(model) as counter:
            pass
        counter.report()
    with pytest.raises(ShapeError, match="same number of timesteps"):
        count_ops(model, [torch.zeros(2, 1, 4), torch.zeros(3, 1, 4)])
