"""The conformance checks fail, in one line naming the plugin and what broke, for each way a plugin can
break its contract (and accept a registered name, a factory, a class or an instance)."""

from __future__ import annotations

import sys

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from tawq_backends.cpu import CpuBackend, PerfCounterTimer
from tawq_core import (
    Availability,
    DatasetNotFound,
    DatasetSplits,
    Encoding,
    Neuron,
    PackedWeight,
    mark,
)
from tawq_core.plugin import NeuronDynamics, straight_through
from tawq_core.testing import (
    ConformanceError,
    check_backend,
    check_dataset,
    check_model,
    check_neuron,
    check_quantizer,
)
from tawq_plugins.quantizers.fp32 import Fp32
from tawq_plugins.quantizers.ternary import Ternary


def fails(check, target, *fragments, **options) -> str:
    with pytest.raises(ConformanceError) as info:
        check(target, **options)
    message = str(info.value)
    assert isinstance(info.value, AssertionError) and "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, message
    return message


# -- quantizers ----------------------------------------------------------------------------------
class OffByATenthPercent(Fp32):
    def unpack(self, packed):
        return super().unpack(packed) * 1.001


class SignFlipped(Ternary):
    def unpack(self, packed):
        return -super().unpack(packed)


class WrongShape(Fp32):
    def weights(self, w, timesteps):
        return w[:1]


class HandWrittenSte(Ternary):
    """``w + (q - w).detach()``: the STE the plugin docs warn about (not bit-exact)."""

    def weights(self, w, timesteps):
        q = super().weights(w.detach(), timesteps)
        return w + (q - w).detach()


class TensorMeta(Fp32):
    def pack(self, w, timesteps):
        packed = super().pack(w, timesteps)
        return PackedWeight(packed.quantizer, packed.shape, timesteps, packed.payload, meta={"scale": torch.ones(1)})


class ForgetsItsOption(Fp32):
    def __init__(self, gain: float = 1.0):
        self.gain = gain


class Exits(Fp32):
    def weights(self, w, timesteps):
        sys.exit(3)


@pytest.mark.parametrize("cls, fragments", [
    (OffByATenthPercent, ("unpack(pack(w)) differs from weights(w)", "bit-exact")),
    (SignFlipped, ("unpack(pack(w)) differs from weights(w)",)),
    (WrongShape, ("weights() at shape (6, 5), T=1 returned (1, 5), expected (6, 5)",)),
    (HandWrittenSte, ("unpack(pack(w)) differs from weights(w)", "straight_through")),
    (TensorMeta, ("PackedWeight.meta", "not JSON-serialisable")),
    (ForgetsItsOption, ("config() does not record option 'gain'",)),
    (Exits, ("weights() at shape", "raised SystemExit: called sys.exit(3)")),
])
def test_broken_quantizers_fail_in_one_line(cls, fragments):
    message = fails(check_quantizer, cls, *fragments)
    assert message.startswith(f"quantizer {cls.__qualname__}: ")


def test_quantizer_targets_name_instance_class():
    assert check_quantizer("fp32").subject.startswith("quantizer 'fp32' from distribution tawq ")
    check_quantizer(Fp32())
    check_quantizer(Fp32)
    with pytest.raises(ConformanceError, match="options are for factories"):
        check_quantizer(Fp32(), gain=2)
    fails(check_quantizer, lambda: "not a quantizer",
          "the factory returned str, not a tawq_core.plugin_api.quantizer.Quantizer")


# -- neurons -------------------------------------------------------------------------------------
class SoftIF(Neuron):
    def __init__(self, v_threshold: float = 1.0):
        super().__init__()
        self.v_threshold = v_threshold

    def step(self, v, x_t):
        h = v + x_t
        fired = (h >= self.v_threshold).to(h.dtype)
        return h - fired * self.v_threshold, straight_through(torch.sigmoid(4 * (h - self.v_threshold)), fired)

    def forward(self, x):
        v, out = torch.zeros_like(x[0]), []
        for x_t in x:
            v, s = self.step(v, x_t)
            out.append(s)
        return torch.stack(out)

    def describe_dynamics(self):
        return NeuronDynamics("none", None, v_threshold=self.v_threshold, v_reset=None)


class KeepsState(SoftIF):
    def forward(self, x):
        v, out = getattr(self, "v", torch.zeros_like(x[0])), []
        if v.shape != x[0].shape:
            v = torch.zeros_like(x[0])
        for x_t in x:
            v, s = self.step(v, x_t)
            out.append(s)
        self.v = v.detach()
        return torch.stack(out)


class NoSurrogate(SoftIF):
    def forward(self, x):
        return super().forward(x).detach()


class MisDescribed(SoftIF):
    def describe_dynamics(self):
        return NeuronDynamics("div", 2.0, v_threshold=self.v_threshold, v_reset=0.0)


class Opaque(SoftIF):
    def describe_dynamics(self):
        return None


@pytest.mark.parametrize("cls, fragment", [
    (KeepsState, "state must start fresh on every forward"),
    (NoSurrogate, "its spikes carry no gradient"),
    (MisDescribed, "describe_dynamics() (div leak, v_reset=0.0) does not reproduce its spikes"),
])
def test_broken_neurons_fail_in_one_line(cls, fragment):
    fails(check_neuron, cls, f"neuron {cls.__qualname__}: ", fragment)


def test_neuron_that_cannot_describe_itself_passes_with_a_note():
    assert check_neuron(SoftIF).notes == []
    assert "NIR export will refuse" in check_neuron(Opaque).notes[0]


# -- models --------------------------------------------------------------------------------------
class Tiny(nn.Module):
    def __init__(self, num_classes, sample_shape, marked=True, classes_out=None):
        super().__init__()
        features = int(torch.tensor(sample_shape).prod())
        self.stem, self.body = nn.Linear(features, 8), nn.Linear(8, 8)
        self.head = nn.Linear(8, classes_out or num_classes)
        if marked:
            mark(self.stem, "stem")
            mark(self.head, "head")
        self.neuron = SoftIF()

    def forward(self, x):
        h = self.neuron(self.stem(x.flatten(2)))
        return self.head(self.neuron(self.body(h))).mean(0)


def test_models_breaking_the_contract_fail_in_one_line():
    check_model(Tiny, sample_shape=(4,))
    fails(check_model, Tiny, "marks no stem and no head", sample_shape=(4,), marked=False)
    fails(check_model, Tiny, "expected logits [B, num_classes] = (2, 3)", sample_shape=(4,), classes_out=5)


# -- datasets ------------------------------------------------------------------------------------
def _splits(shape=(4,), label=0, meta=None, **kwargs):
    data = TensorDataset(torch.zeros(4, *shape), torch.full((4,), label))
    return DatasetSplits("stand-in", data, data, num_classes=2, sample_shape=(4,), meta=meta or {}, **kwargs)


def test_datasets_breaking_the_contract_fail_in_one_line():
    check_dataset(lambda data_dir=None, download=False: _splits())
    fails(check_dataset, lambda data_dir=None, download=False: _splits(shape=(5,)), "train[0] is (5,), expected (4,)")
    fails(check_dataset, lambda data_dir=None, download=False: _splits(label=7), "label 7, outside [0, 2)")
    fails(check_dataset, lambda data_dir=None, download=False: _splits(meta={"x": object()}), "DatasetSplits.meta")
    fails(check_dataset, lambda: _splits(), "the factory takes no 'data_dir' keyword")

    def multi_line_refusal(data_dir=None, download=False):
        raise DatasetNotFound("missing\nfiles")

    fails(check_dataset, multi_line_refusal, "DatasetNotFound must say in one line")


def test_temporal_dataset_ignoring_timesteps_fails():
    def fixed(data_dir=None, download=False, timesteps=4):
        return _splits(shape=(4, 4), encoding=Encoding.TEMPORAL, timesteps=4)

    fails(check_dataset, fixed, "called with timesteps=3 it gives T=4")


# -- backends ------------------------------------------------------------------------------------
class Unexplained(CpuBackend):
    def is_available(self):
        return Availability(False, "")


class _StoppedTimer(PerfCounterTimer):
    """A timer that always reads 0 s (a subclass: patching the real timer class would leak into later tests)."""

    @property
    def elapsed_s(self) -> float:
        return 0.0


class ClockStopped(CpuBackend):
    def timer(self):
        return _StoppedTimer()


def test_backends_breaking_the_contract_fail_in_one_line():
    fails(check_backend, Unexplained, "says unavailable without a reason")
    fails(check_backend, ClockStopped, "timer measured 0.0 s")


class StatefulScale(Fp32):
    """Per-layer state (the quantizer-state API): weights and pack receive it as ``state=``."""

    def init_state(self, w):
        return {"scale": torch.full((w.shape[0],), 0.5)}

    def weights(self, w, timesteps, state):
        return w * state["scale"].reshape(-1, *([1] * (w.dim() - 1)))

    def pack(self, w, timesteps, state):
        return super().pack(self.weights(w, timesteps, state), timesteps)


def test_stateful_quantizers_get_their_state():
    check_quantizer(StatefulScale)
