"""`binary`: static 1-bit weights alpha_o · sign(W - mean_o), trained with a straight-through estimator.

mean_o is the mean of output channel o's weights, and alpha_o = mean |W - mean_o| over the channel:
the scale that minimises ||(W - mean_o) - alpha_o · b|| for the signs b being stored. sign(0) counts
as +1, so every weight is exactly ±alpha_o. The same tensor serves every timestep. Backward: the
gradient of the effective weights passes straight to W (identity STE). Stored as 1 bit per weight
plus one float32 alpha per output channel.
"""

from __future__ import annotations

import torch
from torch import Tensor

from tawq_core import PackedWeight, Quantizer, QuantMode, hookimpl
from tawq_core.plugin import (
    check_timesteps,
    fan_in_dims,
    float32_weights,
    pack_digits,
    packed_checks,
    straight_through,
    unpack_digits,
)


def _scaled(alpha: Tensor, signs: Tensor) -> Tensor:
    """The one multiplication `weights` and `unpack` share, so round trips are bit-exact."""
    return alpha * signs


class Binary(Quantizer):
    name = "binary"
    mode = QuantMode.QAT
    temporal = False

    def signs(self, w: Tensor) -> tuple[Tensor, Tensor]:
        """(±1 float32 signs of w's shape, alpha of shape [Co, 1, ...]) without gradients."""
        with torch.no_grad(), torch.autocast(device_type=w.device.type, enabled=False):
            w = float32_weights(w)
            dims = fan_in_dims(w)
            centered = w - w.mean(dim=dims, keepdim=True)
            alpha = centered.abs().mean(dim=dims, keepdim=True)
            signs = torch.where(centered >= 0, 1.0, -1.0).to(torch.float32)
        return signs, alpha

    def weights(self, w: Tensor, timesteps: int) -> Tensor:
        check_timesteps(timesteps)
        signs, alpha = self.signs(w)
        return straight_through(w, _scaled(alpha, signs))

    def pack(self, w: Tensor, timesteps: int) -> PackedWeight:
        check_timesteps(timesteps)
        signs, alpha = self.signs(w)
        bits = pack_digits((signs > 0).to(torch.int64), 2)
        return PackedWeight(self.name, tuple(w.shape), timesteps, payload={"signs": bits},
                            scales={"alpha": alpha.reshape(-1).contiguous()})

    def unpack(self, packed: PackedWeight) -> Tensor:
        bits = unpack_digits(packed.payload["signs"], 2, packed.numel).reshape(packed.shape)
        signs = (2 * bits - 1).to(torch.float32)
        alpha = packed.scales["alpha"].reshape(-1, *([1] * (signs.dim() - 1)))
        return _scaled(alpha, signs)

    def check_packed(self, packed: PackedWeight) -> str | None:
        return packed_checks.digits_and_alpha(packed, "signs", 2)


@hookimpl
def tawq_register_quantizers(register):
    register("binary", Binary)
