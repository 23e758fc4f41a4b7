"""`ternary`: static TWN-style ternary weights, one tensor for all timesteps (the TaWQ ablation).

Per output channel o: threshold delta_o = 0.7 · mean |W_o|; q = +1 where W > delta_o, -1 where
W < -delta_o, else 0; alpha_o = mean of |W| over the weights above the threshold (Li & Liu 2016,
applied per channel to match the other quantizers). W_eff = alpha_o · q, trained with an identity
straight-through estimator. Comparing it with `tawq` isolates what the temporal adaptation buys.
Stored as 5 trits per byte (1.6 bits per weight) plus one float32 alpha per output channel.
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

THRESHOLD_FACTOR = 0.7


def _scaled(alpha: Tensor, q: Tensor) -> Tensor:
    """The one multiplication `weights` and `unpack` share, so round trips are bit-exact."""
    return alpha * q


class Ternary(Quantizer):
    name = "ternary"
    mode = QuantMode.QAT
    temporal = False

    def trits(self, w: Tensor) -> tuple[Tensor, Tensor]:
        """(q in {-1, 0, 1} as float32 of w's shape, alpha of shape [Co, 1, ...]) without gradients."""
        with torch.no_grad(), torch.autocast(device_type=w.device.type, enabled=False):
            w = float32_weights(w)
            dims = fan_in_dims(w)
            magnitude = w.abs()
            delta = THRESHOLD_FACTOR * magnitude.mean(dim=dims, keepdim=True)
            q = (w > delta).to(torch.float32) - (w < -delta).to(torch.float32)
            kept = q != 0
            count = kept.sum(dim=dims, keepdim=True).clamp_min(1)
            alpha = (magnitude * kept).sum(dim=dims, keepdim=True) / count
        return q, alpha

    def weights(self, w: Tensor, timesteps: int) -> Tensor:
        check_timesteps(timesteps)
        q, alpha = self.trits(w)
        return straight_through(w, _scaled(alpha, q))

    def pack(self, w: Tensor, timesteps: int) -> PackedWeight:
        check_timesteps(timesteps)
        q, alpha = self.trits(w)
        return PackedWeight(self.name, tuple(w.shape), timesteps,
                            payload={"trits": pack_digits((q + 1).to(torch.int64), 3)},
                            scales={"alpha": alpha.reshape(-1).contiguous()})

    def unpack(self, packed: PackedWeight) -> Tensor:
        q = (unpack_digits(packed.payload["trits"], 3, packed.numel) - 1).to(torch.float32)
        alpha = packed.scales["alpha"].reshape(-1, *([1] * (len(packed.shape) - 1)))
        return _scaled(alpha, q.reshape(packed.shape))

    def check_packed(self, packed: PackedWeight) -> str | None:
        return packed_checks.digits_and_alpha(packed, "trits", 3)


@hookimpl
def tawq_register_quantizers(register):
    register("ternary", Ternary)
