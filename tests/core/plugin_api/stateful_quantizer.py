"""A stateful test quantizer (not shipped): per-tensor int8 of ``w · gain``, where ``gain`` is per-layer
state fitted by calibration (the running mean of 1 + mean|x| over the layer's calibration inputs).

Its effective weights depend on the state, so a lost or stale state shows in the outputs. Registered
through an in-process entry point by the tests that use it (tests/core/plugin_api/test_quantizer_state.py).
"""

from __future__ import annotations

import torch
from torch import Tensor

from tawq_core import ConfigError, PackedWeight, Quantizer, QuantMode, hookimpl

NAME = "stateful-gain"


class StatefulGain(Quantizer):
    name = NAME
    mode = QuantMode.PTQ
    temporal = False

    def init_state(self, w: Tensor) -> dict[str, Tensor]:
        return {"gain": torch.ones((), device=w.device), "batches": torch.zeros((), device=w.device)}

    def calibrate(self, state: dict[str, Tensor], w: Tensor, x: Tensor) -> None:
        n = state["batches"]
        state["gain"].mul_(n).add_(1 + x.abs().mean()).div_(n + 1)
        n.add_(1)

    def _codes(self, w: Tensor, state: dict[str, Tensor] | None) -> tuple[Tensor, Tensor]:
        if state is None:
            raise ConfigError(f"{NAME} needs its layer's state (call the layer, or layer.pack())")
        with torch.no_grad():
            scaled = w.float() * state["gain"]
            scale = (scaled.abs().amax() / 127).clamp_min(1e-12).reshape(1)
            return torch.round(scaled / scale).clamp_(-127, 127).to(torch.int8), scale

    def weights(self, w: Tensor, timesteps: int, state: dict[str, Tensor] | None = None) -> Tensor:
        codes, scale = self._codes(w, state)
        return codes.float() * scale

    def pack(self, w: Tensor, timesteps: int, state: dict[str, Tensor] | None = None) -> PackedWeight:
        codes, scale = self._codes(w, state)
        return PackedWeight(NAME, tuple(w.shape), timesteps, payload={"codes": codes}, scales={"scale": scale})

    def unpack(self, packed: PackedWeight) -> Tensor:
        return packed.payload["codes"].float() * packed.scales["scale"]


@hookimpl
def tawq_register_quantizers(register):
    register(NAME, StatefulGain)
