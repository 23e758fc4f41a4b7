"""`example-pow2`: every weight becomes 0 or a signed power of two times its output channel's peak."""

import torch

from tawq_core import PackedWeight, Quantizer, QuantMode
from tawq_core.plugin import check_timesteps, fan_in_dims, pack_digits, straight_through, unpack_digits


class PowerOfTwo(Quantizer):
    """w ~ peak_o * sign * 2**-e with e in [0, exponents), or 0; trained with a straight-through estimator."""

    name = "example-pow2"
    mode = QuantMode.QAT

    def __init__(self, exponents: int = 4):
        if not isinstance(exponents, int) or not 1 <= exponents <= 16:
            raise ValueError(f"example-pow2: exponents must be an integer in [1, 16], got {exponents!r}")
        self.exponents = exponents
        self.states = 2 * exponents + 1  # 0, and +-2**-e for each exponent

    def codes(self, w):
        """Integer codes in [0, states) and the per-output-channel peak: what `pack` stores."""
        with torch.no_grad():
            w = w.float()
            peak = w.abs().amax(dim=fan_in_dims(w), keepdim=True).clamp_min(1e-12)
            e = torch.round(-torch.log2(w.abs() / peak + 1e-30)).clamp(0, self.exponents)
            magnitude = torch.where(e < self.exponents, e + 1, torch.zeros_like(e))  # 0 means "zero"
            code = torch.where(w < 0, self.exponents + magnitude, magnitude).to(torch.int64)
        return code, peak

    def decode(self, code, peak):
        """The one place codes become weights: `weights` and `unpack` share it, so they agree bit for bit."""
        magnitude = torch.where(code > self.exponents, code - self.exponents, code)
        sign = torch.where(code > self.exponents, -1.0, 1.0)
        value = torch.where(magnitude > 0, sign * torch.pow(2.0, -(magnitude - 1).float()), 0.0)
        return value * peak

    def weights(self, w, timesteps):
        check_timesteps(timesteps)
        return straight_through(w, self.decode(*self.codes(w)))

    def pack(self, w, timesteps):
        check_timesteps(timesteps)
        code, peak = self.codes(w)
        return PackedWeight(self.name, tuple(w.shape), timesteps,
                            payload={"codes": pack_digits(code, self.states)},
                            scales={"peak": peak.reshape(-1).contiguous()},
                            meta={"exponents": self.exponents})

    def unpack(self, packed):
        code = unpack_digits(packed.payload["codes"], self.states, packed.numel).reshape(packed.shape)
        peak = packed.scales["peak"].reshape(-1, *([1] * (len(packed.shape) - 1)))
        return self.decode(code, peak)

    def config(self):
        return {**super().config(), "exponents": self.exponents}
