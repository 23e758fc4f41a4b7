"""The model-factory contract shared by every model plugin.

A model factory is called with keyword options and returns an ``nn.Module`` whose forward takes
``[T, B, *sample_shape]`` and returns logits ``[B, num_classes]`` (averaged over time). It must mark
its stem and head with `tawq_core.nn.roles.mark` so quantization policies can leave them unquantized.
"""

from __future__ import annotations

from typing import Any, Protocol

from torch import nn


class ModelFactory(Protocol):
    def __call__(
        self,
        *,
        num_classes: int,
        sample_shape: tuple[int, ...],
        neuron: str = "lif",
        neuron_options: dict[str, Any] | None = None,
        **size_options: Any,
    ) -> nn.Module: ...
