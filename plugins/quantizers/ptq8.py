"""`ptq8`: symmetric per-output-channel int8 post-training quantization of a trained fp32 model.

scale_o = max|W_o| / 127, q = round(W / scale_o) clipped to [-127, 127], W_eff = q · scale_o. No
retraining: the effective weights carry no gradient. Stored as int8 codes (8 bits per weight) plus
one float32 scale per output channel.
"""

from __future__ import annotations

import torch
from torch import Tensor

from tawq_core import PackedWeight, Quantizer, QuantMode, hookimpl
from tawq_core.plugin import check_timesteps, fan_in_dims, float32_weights, packed_checks

QMAX = 127


def _dequantize(q: Tensor, scale: Tensor) -> Tensor:
    """The one multiplication `weights` and `unpack` share, so round trips are bit-exact."""
    return q.to(torch.float32) * scale


class Ptq8(Quantizer):
    """Weight-only int8: ``weights(w, T)`` returns ``w.shape`` (static over time), no gradient.

    Stateless, so calibration fits nothing: weight scales come from the weights themselves, and the
    activations between quantized layers are binary spikes, which need no range. The only analog
    activations feed the stem, which the default policy keeps in full precision.
    """

    name = "ptq8"
    mode = QuantMode.PTQ
    temporal = False

    def codes(self, w: Tensor) -> tuple[Tensor, Tensor]:
        """(int8 codes of w's shape, float32 scale broadcastable against them)."""
        with torch.no_grad(), torch.autocast(device_type=w.device.type, enabled=False):
            w = float32_weights(w)
            peak = w.abs().amax(dim=fan_in_dims(w), keepdim=True)
            scale = torch.where(peak > 0, peak / QMAX, torch.ones_like(peak))  # all-zero channel: any scale
            q = torch.round(w / scale).clamp_(-QMAX, QMAX).to(torch.int8)
        return q, scale

    def weights(self, w: Tensor, timesteps: int) -> Tensor:
        check_timesteps(timesteps)
        return _dequantize(*self.codes(w))

    def pack(self, w: Tensor, timesteps: int) -> PackedWeight:
        check_timesteps(timesteps)
        q, scale = self.codes(w)
        return PackedWeight(self.name, tuple(w.shape), timesteps, payload={"codes": q.contiguous()},
                            scales={"scale": scale.reshape(-1).contiguous()})

    def unpack(self, packed: PackedWeight) -> Tensor:
        q = packed.payload["codes"].reshape(packed.shape)
        scale = packed.scales["scale"].reshape(-1, *([1] * (q.dim() - 1)))
        return _dequantize(q, scale)

    def check_packed(self, packed: PackedWeight) -> str | None:
        c = packed_checks
        return (c.keys(packed, {"codes"}, {"scale"})
                or c.entry(packed, "payload", "codes", torch.int8, packed.numel)
                or c.in_range(packed.payload["codes"], "codes", -QMAX, QMAX)
                or c.entry(packed, "scales", "scale", torch.float32, packed.shape[0])
                or c.finite(packed)
                or c.positive(packed.scales["scale"], "scale"))


@hookimpl
def tawq_register_quantizers(register):
    register("ptq8", Ptq8)
