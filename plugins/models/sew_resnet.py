"""`sew-resnet`: spike-element-wise ResNet (SEW-ResNet, ADD connection), 2-D and 1-D.

Topology follows ResNet-18/34 (`layers=(2, 2, 2, 2)` / `(3, 4, 6, 3)`) with basic blocks
``conv-BN-neuron-conv-BN-neuron`` whose output spikes are ADDed to the (downsampled, spiking) identity,
as in Fang et al. 2021. Stage i has ``width * 2**i`` channels; every stage after the first halves the
resolution. Any number of stages works, e.g. ``layers=(1, 1, 1)`` for small inputs.

Which convolution: sample_shape ``[C, H, W]`` -> Conv2d; ``[C, L]`` (e.g. MNIST-1D ``[1, 40]``) ->
Conv1d; ``[channels]`` (SHD-like frames) is read as a 1-channel signal ``[1, channels]`` so the
convolution slides over neighbouring input channels. The stem is a full-precision 3-tap (3x3) conv + BN
with stride 1, which keeps the resolution of short sequences and small images; 2-D inputs larger than
64 pixels get the ImageNet stem instead (7x7 stride-2 conv + BN + neuron + 3x3 stride-2 max-pool).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from tawq_core import ConfigError, hookimpl, mark
from tawq_plugins.models.blocks import (
    Flat,
    NeuronFactory,
    SpikingClassifier,
    check_common,
    positive_int,
    positive_ints,
    tokens_mean,
)

NAME = "sew-resnet"
LARGE_INPUT = 64  # 2-D inputs wider than this get the ImageNet stem


def _layers(dims: int) -> tuple[type[nn.Module], type[nn.Module]]:
    return (nn.Conv2d, nn.BatchNorm2d) if dims == 2 else (nn.Conv1d, nn.BatchNorm1d)


class BasicBlock(nn.Module):
    """``sn(BN(conv(sn(BN(conv(x)))))) + identity``, the identity downsampled by a spiking 1x1 conv."""

    def __init__(self, dims: int, cin: int, cout: int, stride: int, neurons: NeuronFactory):
        super().__init__()
        conv, bn = _layers(dims)
        self.conv1 = Flat(conv(cin, cout, 3, stride, 1, bias=False), bn(cout))
        self.sn1 = neurons()
        self.conv2 = Flat(conv(cout, cout, 3, 1, 1, bias=False), bn(cout))
        self.sn2 = neurons()
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(Flat(conv(cin, cout, 1, stride, bias=False), bn(cout)), neurons())

    def forward(self, x: Tensor) -> Tensor:
        out = self.sn2(self.conv2(self.sn1(self.conv1(x))))
        return out + (x if self.downsample is None else self.downsample(x))


class SEWResNet(SpikingClassifier):
    def __init__(self, num_classes: int, sample_shape: tuple[int, ...], neurons: NeuronFactory,
                 layers: tuple[int, ...], width: int):
        super().__init__(NAME, sample_shape, width * 2 ** (len(layers) - 1), num_classes)
        self.as_signal = len(sample_shape) == 1  # [channels] -> [1, channels]
        channels = 1 if self.as_signal else sample_shape[0]
        dims = 2 if len(sample_shape) == 3 else 1
        conv, bn = _layers(dims)
        if dims == 2 and min(sample_shape[1:]) > LARGE_INPUT:
            stem = mark(conv(channels, width, 7, 2, 3, bias=False), "stem")
            self.stem = nn.Sequential(Flat(stem, bn(width)), neurons(), Flat(nn.MaxPool2d(3, 2, 1)))
        else:
            stem = mark(conv(channels, width, 3, 1, 1, bias=False), "stem")
            self.stem = nn.Sequential(Flat(stem, bn(width)), neurons())
        blocks: list[nn.Module] = []
        cin = width
        for stage, count in enumerate(layers):
            cout = width * 2**stage
            for i in range(count):
                blocks.append(BasicBlock(dims, cin, cout, 2 if stage > 0 and i == 0 else 1, neurons))
                cin = cout
        self.blocks = nn.Sequential(*blocks)

    def features(self, x: Tensor) -> Tensor:
        if self.as_signal:
            x = x.unsqueeze(2)
        return tokens_mean(self.blocks(self.stem(x)))


def build_sew_resnet(*, num_classes: int, sample_shape: tuple[int, ...], neuron: str = "lif",
                     neuron_options: dict[str, Any] | None = None, layers: tuple[int, ...] = (2, 2, 2, 2),
                     width: int = 64) -> nn.Module:
    """SEW-ResNet with `layers` basic blocks per stage and `width` channels in the first stage."""
    num_classes, shape = check_common(NAME, num_classes, sample_shape)
    if len(shape) > 3:
        raise ConfigError(f"model {NAME!r}: sample_shape must be [C, H, W], [C, L] or [channels], got {shape}")
    return SEWResNet(num_classes, shape, NeuronFactory(neuron, neuron_options),
                     positive_ints(NAME, "layers", layers), positive_int(NAME, "width", width))


@hookimpl
def tawq_register_models(register):
    register("sew-resnet", build_sew_resnet)
