"""The resident weight forms of deployed layers, each with its kernel and its exact dense path.

Every form keeps only its packed arrays, registered as buffers (``state_dict()`` lists exactly what stays
in memory), and computes a layer's pre-activation from rows-form input ``[rows, *sample]``:

* `BitPlanes` (tawq, mtawq, ternary, binary): one sign plane and magnitude planes, 1 bit per weight each;
  kernel ``cpu.bitplane-popcount`` (`tawq_backends.kernels.bitplane`);
* `Columns` (ptq8 int8 codes; the fp32 spike-driven row; optionally TaWQ as int8 per timestep): weight
  columns per input channel; kernel ``cpu.int8-spike-accumulate`` / ``cpu.fp32-spike-accumulate``;
* `UnpackFallback` (any other quantizer, any device): the PackedWeight itself, unpacked per forward
  (``fallback.unpack-per-forward``): nothing float stays resident, nothing is fast.

A kernel runs when its input holds only non-negative integers (spikes, or spike counts from residual
additions, checked per forward) on CPU in float32; otherwise the form rebuilds its integer weights for
that one call and runs torch's op, ``conv(x, q) * alpha + bias`` (``dense.exact``), so a layer is never
silently wrong, and `kernels_used` reports which path ran.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor, nn

from tawq_core.deploy.codes import IntegerWeights
from tawq_core.deploy.geometry import Geometry
from tawq_core.quantizer import PackedWeight, Quantizer

DENSE = "dense.exact"
FALLBACK = "fallback.unpack-per-forward"


def _kernels():  # imported on use: numba's import costs ~0.5 s, and a missing numba must not break tawq
    from tawq_backends import kernels

    return kernels


def per_step(x: Tensor, step_rows: int, weights: Tensor, alpha: Tensor | None, bias: Tensor | None,
             geometry: Geometry) -> Tensor:
    """``op(x_t, w_t) * alpha_t + bias`` per weight step t (rows ``[t·step_rows, (t+1)·step_rows)``)."""
    outputs = []
    for t in range(weights.shape[0]):
        rows = x[t * step_rows:(t + 1) * step_rows] if weights.shape[0] > 1 else x
        y = geometry.dense(rows, weights[t])
        if alpha is not None:
            y = y * alpha[t].reshape(-1, *([1] * (y.dim() - 2)))
        outputs.append(y if bias is None else y + bias.reshape(-1, *([1] * (y.dim() - 2))))
    return outputs[0] if len(outputs) == 1 else torch.cat(outputs)


def _kernel_ready(form: WeightForm, x: Tensor, geometry: Geometry) -> bool:
    return (form.use_kernels and x.device.type == "cpu" and x.dtype == torch.float32
            and geometry.kernel_padding is not None and not _kernels().UNAVAILABLE)


class WeightForm(nn.Module):
    """Base: `run` returns (pre-activation rows, name of the path that ran)."""

    temporal: bool
    steps: int  # weight steps: T for temporal weights, 1 for static ones
    use_kernels = True  # False: always the dense path (deploy backends without kernels)

    def run(self, x: Tensor, geometry: Geometry, step_rows: int, bias: Tensor | None) -> tuple[Tensor, str]:
        raise NotImplementedError

    def integer_weights(self, geometry: Geometry) -> IntegerWeights:
        """(q ``[Tw, *weight shape]``, alpha ``[Tw, Co]``) rebuilt for one call (dense path, re-export)."""
        raise NotImplementedError


class BitPlanes(WeightForm):
    """Sign plane(s) + magnitude planes, 32-bit words along the channels-last receptive field."""

    kernel = "cpu.bitplane-popcount"

    def __init__(self, weights: IntegerWeights, geometry: Geometry):
        super().__init__()
        from tawq_backends.kernels.bitplane import pack_planes

        q = geometry.weight_2d(weights.q)  # [Tw, Co, Ci/g, kh, kw]
        self.steps, self.temporal = q.shape[0], weights.temporal
        magnitude = q.abs().to(torch.int64)
        self.levels = max(1, int(magnitude.max()).bit_length())
        self.binary = bool((magnitude == 1).all())  # +-1 everywhere: no magnitude plane needed
        negative, positive = q < 0, q > 0
        if bool((negative.any(0) & positive.any(0)).any()):  # a sign that changes over time: one plane per step
            signs = negative
        else:
            signs = negative.any(0, keepdim=True)
        groups = geometry.groups
        sign_words, self.layout = pack_planes(signs, groups)
        if self.binary:
            mags = sign_words[:0]
        else:
            bits = torch.stack([(magnitude >> b) & 1 for b in range(self.levels)], dim=1).bool()
            mags, _ = pack_planes(bits.flatten(0, 1), groups)  # [Tw·levels, G, words, Co/G]
        self.register_buffer("signs", sign_words)
        self.register_buffer("magnitudes", mags)
        self.register_buffer("alpha", weights.alpha.contiguous())
        self.kernel_size = q.shape[-2:]

    def run(self, x: Tensor, geometry: Geometry, step_rows: int, bias: Tensor | None) -> tuple[Tensor, str]:
        if _kernel_ready(self, x, geometry):
            from tawq_backends.kernels import bitplane

            x2 = geometry.as_2d(x)
            counts = bitplane.scan_counts(x2)
            if counts is not None and counts < 2**bitplane.MAX_INPUT_PLANES:
                y = bitplane.conv(x2, counts, geometry.kernel_geometry, geometry.kernel_padding, self.layout,
                                  self.magnitudes, self.signs, self.levels,
                                  step_rows, self.alpha, bias)
                return geometry.from_2d(y), self.kernel
        iw = self.integer_weights(geometry)
        return per_step(x, step_rows, iw.q.to(x), iw.alpha.to(x), bias, geometry), DENSE

    def _unpack(self, words: Tensor, count: int, co: int, cig: int) -> Tensor:
        """uint32 words ``[P, G, words, Co/G]`` -> bool ``[P, Co, Ci/g, kh, kw]`` (inverse of pack_planes)."""
        kh, kw = self.kernel_size
        layout = self.layout
        raw = words.cpu().numpy().transpose(0, 1, 3, 2).reshape(count, co, -1)
        bits = np.unpackbits(np.ascontiguousarray(raw).view(np.uint8), axis=2, bitorder="little")
        ci, ky, kx = np.meshgrid(np.arange(cig), np.arange(kh), np.arange(kw), indexing="ij")
        idx = (ky * kw + kx) * layout.chunks + ci // layout.slot_bits
        per_word = 32 // layout.slot_bits
        position = (idx // per_word) * 32 + (idx % per_word) * layout.slot_bits + ci % layout.slot_bits
        return torch.from_numpy(bits[:, :, position.reshape(-1)].reshape(count, co, cig, kh, kw).astype(bool))

    def integer_weights(self, geometry: Geometry) -> IntegerWeights:
        co, cig = geometry.out_channels, geometry.in_channels // geometry.groups
        signs = self._unpack(self.signs, self.signs.shape[0], co, cig)
        if self.binary:
            magnitude = torch.ones(self.steps, co, cig, *self.kernel_size, dtype=torch.int8)
        else:
            bits = self._unpack(self.magnitudes, self.magnitudes.shape[0], co, cig).to(torch.int8)
            bits = bits.reshape(self.steps, self.levels, *bits.shape[1:])
            magnitude = sum(bits[:, b] << b for b in range(self.levels))
        q = torch.where(signs, -magnitude, magnitude).to(torch.int8)
        return IntegerWeights(q.reshape(self.steps, *geometry.weight_shape), self.alpha)


class Columns(WeightForm):
    """Weight columns ``[Tw, kh·kw, Ci/g, Co]`` (int8 or float32) for the spike-accumulate kernel."""

    def __init__(self, q: Tensor, scale: Tensor, geometry: Geometry, temporal: bool):
        super().__init__()
        q2 = geometry.weight_2d(q)  # [Tw, Co, Ci/g, kh, kw]
        self.steps, self.temporal = q2.shape[0], temporal
        self.kernel = "cpu.int8-spike-accumulate" if q.dtype == torch.int8 else "cpu.fp32-spike-accumulate"
        self.register_buffer("columns", q2.flatten(3).permute(0, 3, 2, 1).contiguous())
        self.register_buffer("scale", scale.to(torch.float32).contiguous())
        self.unit_scale = bool((scale == 1).all())  # the fp32 row: no scale to apply on the dense path

    def run(self, x: Tensor, geometry: Geometry, step_rows: int, bias: Tensor | None) -> tuple[Tensor, str]:
        if _kernel_ready(self, x, geometry):
            from tawq_backends.kernels import spikes

            y = spikes.conv(geometry.as_2d(x), geometry.kernel_geometry, geometry.kernel_padding, self.columns,
                            step_rows, self.scale, bias)
            if y is not None:
                return geometry.from_2d(y), self.kernel
        iw = self.integer_weights(geometry)
        alpha = None if self.unit_scale else iw.alpha.to(x)
        return per_step(x, step_rows, iw.q.to(x), alpha, bias, geometry), DENSE

    def integer_weights(self, geometry: Geometry) -> IntegerWeights:
        q = self.columns.permute(0, 3, 2, 1).reshape(self.steps, *geometry.weight_shape)
        return IntegerWeights(q, self.scale)


class UnpackFallback(WeightForm):
    """The PackedWeight's own arrays; ``quantizer.unpack`` rebuilds the effective weights every forward."""

    def __init__(self, packed: PackedWeight, quantizer: Quantizer):
        super().__init__()
        self.quantizer, self.temporal = quantizer, quantizer.temporal
        self.steps = packed.timesteps if quantizer.temporal else 1
        self._keys = {"payload": sorted(packed.payload), "scales": sorted(packed.scales)}
        for part, table in (("payload", packed.payload), ("scales", packed.scales)):
            for key in self._keys[part]:
                self.register_buffer(f"{part}_{key}", table[key].detach().clone())
        self._packed_info = (packed.quantizer, packed.shape, packed.timesteps, dict(packed.meta))

    def packed(self) -> PackedWeight:
        name, shape, timesteps, meta = self._packed_info
        table: Callable[[str], dict[str, Tensor]] = lambda part: {  # noqa: E731
            k: getattr(self, f"{part}_{k}") for k in self._keys[part]}
        return PackedWeight(name, shape, timesteps, table("payload"), table("scales"), dict(meta))

    def run(self, x: Tensor, geometry: Geometry, step_rows: int, bias: Tensor | None) -> tuple[Tensor, str]:
        w = self.quantizer.unpack(self.packed()).to(device=x.device, dtype=x.dtype)
        return per_step(x, step_rows, w if self.temporal else w.unsqueeze(0), None, bias, geometry), FALLBACK
