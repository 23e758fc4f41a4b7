"""`mlp`: a spiking multilayer perceptron (linear -> BN -> neuron, per hidden layer).

Each timestep's sample is flattened, so it takes any sample shape: images ``[C, H, W]``, 1-D signals
``[C, L]`` or SHD-like ``[channels]`` frames. The first linear layer sees the analog input and is the
stem; the classifier reads the last hidden layer's spikes averaged over time.
"""

from __future__ import annotations

import math
from typing import Any

from torch import Tensor, nn

from tawq_core import hookimpl, mark
from tawq_plugins.models.blocks import (
    Flat,
    NeuronFactory,
    SpikingClassifier,
    check_common,
    positive_ints,
)

NAME = "mlp"


class SpikingMLP(SpikingClassifier):
    def __init__(self, num_classes: int, sample_shape: tuple[int, ...], neurons: NeuronFactory,
                 hidden: tuple[int, ...], bn: bool):
        super().__init__(NAME, sample_shape, hidden[-1], num_classes)
        layers: list[nn.Module] = []
        width = math.prod(sample_shape)
        for i, size in enumerate(hidden):
            linear = nn.Linear(width, size, bias=not bn)
            if i == 0:
                mark(linear, "stem")
            layers += [Flat(linear, nn.BatchNorm1d(size)) if bn else Flat(linear), neurons()]
            width = size
        self.body = nn.Sequential(*layers)

    def features(self, x: Tensor) -> Tensor:
        return self.body(x.flatten(2))


def build_mlp(*, num_classes: int, sample_shape: tuple[int, ...], neuron: str = "lif",
              neuron_options: dict[str, Any] | None = None, hidden: tuple[int, ...] = (256, 256),
              bn: bool = True) -> nn.Module:
    """Spiking MLP with hidden layer sizes `hidden` (BatchNorm1d after each linear unless ``bn=False``)."""
    num_classes, shape = check_common(NAME, num_classes, sample_shape)
    sizes = positive_ints(NAME, "hidden", hidden)
    return SpikingMLP(num_classes, shape, NeuronFactory(neuron, neuron_options), sizes, bool(bn))


@hookimpl
def tawq_register_models(register):
    register("mlp", build_mlp)
