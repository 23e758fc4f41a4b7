"""The inference form of a model: what every exporter traces or walks instead of the training model.

Two substitutions make a trained model exportable without changing its outputs:

* every quantized layer gets a `FrozenQuantizer` that serves its effective weights, computed once
  (and, for the packed format, rebuilt from the packed codes): exporters see constants, not the
  calcium dynamics or a straight-through estimator, and the layer's own forward (grouped conv / bmm)
  still runs, so outputs stay bit-identical;
* every recognised neuron becomes an `InferenceNeuron` (plain ops); snntorch neurons switch to their
  documented ONNX path (``surrogate_disable``: a plain comparison instead of an autograd Function).
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import Tensor, nn

from tawq_core.export.errors import ExportError
from tawq_core.export.neurons import InferenceNeuron, neuron_spec
from tawq_core.nn.quantization import quantized_layers
from tawq_core.plugin_api.errors import ConfigError
from tawq_core.plugin_api.neuron import Neuron
from tawq_core.plugin_api.plugin_boundary import label
from tawq_core.plugin_api.quantizer import PackedWeight, Quantizer, QuantMode, with_state


class FrozenQuantizer(Quantizer):
    """Serves fixed effective weights for one layer; `pack` returns the stored packed form if there is one.

    Keeps the source quantizer's name and `temporal` flag, so the layer takes the same code path as
    before; the latent weight it is handed is ignored. Inference only (mode "none").
    """

    mode = QuantMode.NONE

    def __init__(self, source: Quantizer, effective: Tensor, timesteps: int, packed: PackedWeight | None = None,
                 state: dict[str, Tensor] | None = None):
        self.source = source
        self.name = source.name  # type: ignore[misc]  # instance value shadows the ClassVar on purpose
        self.temporal = source.temporal  # type: ignore[misc]
        self.effective = effective.detach()
        self.timesteps = timesteps
        self.packed = packed
        self.state = {k: v.detach().clone() for k, v in (state or {}).items()}  # the layer's, for `pack`

    def init_state(self, w: Tensor) -> dict[str, Tensor]:
        """The source's state layout, so a loaded layer has the buffers the file's state loads into."""
        return self.source.init_state(w)

    def _check(self, timesteps: int) -> None:
        if timesteps != self.timesteps:
            raise ConfigError(f"these {self.name} weights were frozen for T={self.timesteps}, asked for "
                              f"T={timesteps}; export and load the model at the T it runs with")

    def weights(self, w: Tensor, timesteps: int, state: dict[str, Tensor] | None = None) -> Tensor:
        self._check(timesteps)
        return self.effective.to(device=w.device)

    def pack(self, w: Tensor, timesteps: int, state: dict[str, Tensor] | None = None) -> PackedWeight:
        self._check(timesteps)
        if self.packed is not None:
            return self.packed
        return self.source.pack(w, timesteps, **with_state(self.state))

    def unpack(self, packed: PackedWeight) -> Tensor:
        return self.source.unpack(packed)

    def config(self) -> dict[str, Any]:
        return {**self.source.config(), "frozen": True}


def source_of(quantizer: Quantizer) -> Quantizer:
    """The quantizer that produced the weights (a loaded or exported model wraps it in FrozenQuantizers)."""
    while isinstance(quantizer, FrozenQuantizer):
        quantizer = quantizer.source
    return quantizer


def freeze_quantized(model: nn.Module) -> int:
    """Give every quantized layer of `model` (in place) a `FrozenQuantizer` with its current effective
    weights (eval mode, no gradient); returns how many layers were frozen."""
    layers = list(quantized_layers(model))
    with torch.no_grad():
        for _, layer in layers:
            was_training = layer.training
            layer.eval()
            effective = layer.effective_weight().detach().clone()
            layer.train(was_training)
            layer.quantizer = FrozenQuantizer(layer.quantizer, effective, layer.timesteps,
                                              state=layer.quantizer_state())
    return len(layers)


def _bypass_snntorch(module: nn.Module) -> bool:
    """snntorch neurons: use the plain ``(x > 0).float()`` spike their ``surrogate_disable`` option selects."""
    if not type(module).__module__.startswith("snntorch.") or not hasattr(module, "_surrogate_bypass"):
        return False
    module.spike_grad = module._surrogate_bypass
    module.surrogate_disable = True
    return True


def inference_form(model: nn.Module, need_dynamics: bool = False) -> nn.Module:
    """An eval-mode deep copy of `model` with frozen quantized layers and plain-op neurons.

    `need_dynamics` (NIR): a tawq neuron without a `describe_dynamics()` is refused in one line naming it;
    otherwise (ONNX) it is kept as it is, to be traced, and the onnxruntime verification judges it.
    """
    form = copy.deepcopy(model).eval()
    freeze_quantized(form)
    for parent in list(form.modules()):
        for name, child in list(parent.named_children()):
            spec = neuron_spec(child)
            if spec is not None:
                setattr(parent, name, InferenceNeuron(spec))
            elif need_dynamics and isinstance(child, Neuron):
                raise ExportError(f"{label(child, 'neuron')} cannot be expressed for NIR export: its "
                                  "describe_dynamics() returns None (see docs/plugins.md, neuron dynamics)")
            else:
                _bypass_snntorch(child)
    for p in form.parameters():
        p.requires_grad_(False)
    return form
