"""`fp32`: the identity quantizer, the unquantized reference row of every comparison."""

from __future__ import annotations

import torch
from torch import Tensor

from tawq_core import PackedWeight, Quantizer, QuantMode, hookimpl
from tawq_core.plugin import check_timesteps, float32_weights, packed_checks


class Fp32(Quantizer):
    """Effective weight = latent weight; stored as plain float32 (32 bits per weight)."""

    name = "fp32"
    mode = QuantMode.NONE
    temporal = False

    def weights(self, w: Tensor, timesteps: int) -> Tensor:
        check_timesteps(timesteps)
        return w

    def pack(self, w: Tensor, timesteps: int) -> PackedWeight:
        check_timesteps(timesteps)
        data = float32_weights(w).detach().contiguous().clone()
        return PackedWeight(self.name, tuple(w.shape), timesteps, payload={"weight": data})

    def unpack(self, packed: PackedWeight) -> Tensor:
        return packed.payload["weight"].reshape(packed.shape)

    def check_packed(self, packed: PackedWeight) -> str | None:
        c = packed_checks
        return (c.keys(packed, {"weight"}, set())
                or c.entry(packed, "payload", "weight", torch.float32, packed.numel)
                or c.finite(packed))


@hookimpl
def tawq_register_quantizers(register):
    register("fp32", Fp32)
