"""The resident weight forms of deployed layers, each with its kernel and its exact dense path.

Every form keeps only its packed arrays, registered as buffers (``state_dict()`` lists exactly what stays
in memory), and computes a layer's pre-activation from rows-form input ``[rows, *sample]``:

* `BitPlanes` (tawq, mtawq, ternary, binary; the default): a sign plane and magnitude planes, 1 bit per
  weight each; the int8 weights of one timestep are rebuilt per call (``cpu.int8-gemm.bitplanes``);
* `Int8Codes` (ptq8; TaWQ with ``WeightLayout.INT8``): int8 weights resident (``cpu.int8-gemm.int8``);
* `SpikeColumns` (the fp32 spike-driven reference row): float32 weight columns added for active inputs
  only (``cpu.fp32-spike-accumulate``);
* `UnpackFallback` (any other quantizer): the PackedWeight itself, unpacked per forward
  (``fallback.unpack-per-forward``): nothing float stays resident, nothing is fast.

A kernel runs on CPU float32 input holding only integers in int8 range (spikes, or spike counts from
residual additions, checked per call); otherwise the form rebuilds its integer weights for that one call
and runs torch's op, ``conv(x, q) * alpha + bias`` (``dense.exact``), so a layer is never silently wrong,
and `kernels_used` reports which path ran.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from tawq_core.deploy.codes import IntegerWeights
from tawq_core.deploy.geometry import Geometry
from tawq_core.plugin_api.quantizer import PackedWeight, Quantizer

DENSE = "dense.exact"
FALLBACK = "fallback.unpack-per-forward"


def _kernels():  # imported on use: numba's import costs ~0.5 s, and a missing numba must not break tawq
    from tawq_backends import kernels

    return kernels


def _int8_gemm_chosen() -> bool:
    """The measured choice (`tawq_backends.kernels.gemm_choice`), counted for provenance like every kernel."""
    from tawq_backends.kernels.gemm_choice import choice
    from tawq_core.jit import use_kernel

    made = choice()
    return use_kernel("cpu.int8-gemm", "" if made.int8 else f"float32 GEMM is faster here ({made.why})")


def per_step(x: Tensor, step_rows: int, first_step: int, weights: Tensor, alpha: Tensor | None,
             bias: Tensor | None, geometry: Geometry) -> Tensor:
    """``op(x_i, w_t) * alpha_t + bias`` per block i of `step_rows` rows, t = first_step + i (static weights:
    one block, t = 0)."""
    outputs = []
    temporal = weights.shape[0] > 1
    for i in range(x.shape[0] // step_rows if temporal else 1):
        t = first_step + i if temporal else 0
        rows = x[i * step_rows:(i + 1) * step_rows] if temporal else x
        y = geometry.dense(rows, weights[t])
        if alpha is not None:
            y = y * alpha[t].reshape(-1, *([1] * (y.dim() - 2)))
        outputs.append(y if bias is None else y + bias.reshape(-1, *([1] * (y.dim() - 2))))
    return outputs[0] if len(outputs) == 1 else torch.cat(outputs)


def gemm_order(q: Tensor) -> Tensor:
    """``[Tw, Co, Ci/g, *kernel]`` -> weight rows ``[Tw, Co, Ci/g·kh·kw]`` (torch's own order)."""
    return q.reshape(q.shape[0], q.shape[1], -1)


def weight_order(rows: Tensor, geometry: Geometry) -> Tensor:
    """Inverse of `gemm_order`: ``[Tw, Co, K]`` -> ``[Tw, *weight shape]``."""
    return rows.reshape(rows.shape[0], *geometry.weight_shape)


class WeightForm(nn.Module):
    """Base: `run` returns (pre-activation rows, name of the path that ran)."""

    temporal: bool
    steps: int  # weight steps: T for temporal weights, 1 for static ones
    use_kernels = True  # False: always the dense path (deploy backends without kernels)

    def kernel_ready(self, x: Tensor, geometry: Geometry) -> bool:
        return (self.use_kernels and x.device.type == "cpu" and x.dtype == torch.float32
                and geometry.kernel_padding is not None and not _kernels().UNAVAILABLE)

    def gpu_kernel_ready(self, x: Tensor, geometry: Geometry) -> bool:
        """The Triton kernel serves bit-plane forms on CUDA float input (see `triton_bitplane`)."""
        if not (self.use_kernels and x.is_cuda and x.dtype in (torch.float32, torch.float16, torch.bfloat16)
                and geometry.kernel_padding is not None and isinstance(self, BitPlanes)):
            return False
        from tawq_backends.kernels import triton_bitplane

        return not triton_bitplane.UNAVAILABLE

    def run(self, x: Tensor, geometry: Geometry, step_rows: int, first_step: int, bias: Tensor | None
            ) -> tuple[Tensor, str]:
        raise NotImplementedError

    def integer_weights(self, geometry: Geometry) -> IntegerWeights:
        """(q ``[Tw, *weight shape]``, alpha ``[Tw, Co]``) rebuilt for one call (dense path, re-export)."""
        raise NotImplementedError


class IntegerForm(WeightForm):
    """Integer weights and a scale per (step, output channel): int8 GEMM on integer input, else dense."""

    kernel: str  # the int8 GEMM path's name
    fp32_kernel: str  # the same integer weights through float32 GEMM (where int8 GEMM is slower)
    alpha: Tensor

    def step_weights(self, t: int) -> Tensor:
        """int8 ``[Co, Ci/g·kh·kw]`` of weight step t."""
        raise NotImplementedError

    def run(self, x: Tensor, geometry: Geometry, step_rows: int, first_step: int, bias: Tensor | None
            ) -> tuple[Tensor, str]:
        if self.gpu_kernel_ready(x, geometry):
            from tawq_backends.kernels import triton_bitplane

            y = triton_bitplane.conv(geometry.as_2d(x), geometry.kernel_geometry, geometry.kernel_padding,
                                     step_rows, first_step, self.steps, self.step_planes, self.alpha, bias)
            if y is not None:
                return geometry.from_2d(y).to(x.dtype), triton_bitplane.KERNEL
        path = DENSE
        if self.kernel_ready(x, geometry) and _int8_gemm_chosen():
            from tawq_backends.kernels import int8_gemm

            x2 = geometry.as_2d(x)
            batched = int8_gemm.batched(geometry.kernel_geometry)
            x8 = int8_gemm.int8_input(x2, geometry.kernel_padding, channel_major=batched)
            if x8 is not None and batched:
                y = int8_gemm.conv_batched(x8, geometry.kernel_geometry, geometry.output_size(x2), step_rows,
                                           first_step, self.steps, self.step_weights, self.alpha, bias)
                return geometry.from_2d(y), self.kernel
            if x8 is not None:
                y = int8_gemm.conv(x8, geometry.kernel_geometry, step_rows, first_step, self.steps,
                                   self.step_weights, self.alpha, bias)
                return geometry.from_2d(y), self.kernel
        elif self.kernel_ready(x, geometry):  # float32 GEMM is the faster product here: the same op serves
            path = self.fp32_kernel  # any input, so none is scanned (a check would cost ~20 % of the conv)
        iw = self.integer_weights(geometry)
        return per_step(x, step_rows, first_step, iw.q.to(x), iw.alpha.to(x), bias, geometry), path


class BitPlanes(IntegerForm):
    """Sign plane(s) + magnitude planes ``[planes, Co, words]``, bits in weight order (see `bitplane`)."""

    kernel = "cpu.int8-gemm.bitplanes"
    fp32_kernel = "cpu.fp32-gemm.bitplanes"

    def __init__(self, weights: IntegerWeights, geometry: Geometry):
        super().__init__()
        from tawq_backends.kernels.bitplane import pack_planes

        q = gemm_order(weights.q)  # [Tw, Co, K]
        self.steps, self.temporal, self.fan_in = q.shape[0], weights.temporal, q.shape[2]
        magnitude = q.abs().to(torch.int64)
        self.levels = max(1, int(magnitude.max()).bit_length())
        negative, positive = q < 0, q > 0
        if bool((magnitude == 1).all()):
            self.levels = 0  # +-1 everywhere (binary): the sign plane is the whole weight
        # a TaWQ sign never changes over time: one plane for all steps, unless some weight flips
        signs = negative if bool((negative.any(0) & positive.any(0)).any()) else negative.any(0, keepdim=True)
        bits = [(magnitude >> b) & 1 for b in range(self.levels)]  # each [Tw, Co, K]
        mags = torch.stack(bits, dim=1).flatten(0, 1).bool() if bits else q[:0].bool()
        self.register_buffer("signs", pack_planes(signs))  # [1 or Tw, Co, words]
        self.register_buffer("magnitudes", pack_planes(mags))  # [Tw·levels, Co, words]
        self.register_buffer("alpha", weights.alpha.to(torch.float32).contiguous())

    def step_planes(self, t: int) -> tuple[Tensor, Tensor]:
        """Weight step t's words: signs ``[Co, words]``, magnitudes ``[levels, Co, words]``."""
        return self.signs[t if self.signs.shape[0] > 1 else 0], self.magnitudes[t * self.levels:(t + 1) * self.levels]

    def step_weights(self, t: int) -> Tensor:
        from tawq_backends.kernels.bitplane import expand

        return expand(*self.step_planes(t), self.fan_in)

    def integer_weights(self, geometry: Geometry) -> IntegerWeights:
        rows = torch.stack([self.step_weights(t) for t in range(self.steps)])
        return IntegerWeights(weight_order(rows, geometry), self.alpha)


class Int8Codes(IntegerForm):
    """int8 weights ``[Tw, Co, K]`` resident: 8 bits per weight per step."""

    kernel = "cpu.int8-gemm.int8"
    fp32_kernel = "cpu.fp32-gemm.int8"

    def __init__(self, weights: IntegerWeights, geometry: Geometry):
        super().__init__()
        self.steps, self.temporal = weights.q.shape[0], weights.temporal
        self.register_buffer("codes", gemm_order(weights.q.to(torch.int8)).contiguous())
        self.register_buffer("alpha", weights.alpha.to(torch.float32).contiguous())

    def step_weights(self, t: int) -> Tensor:
        return self.codes[t]

    def integer_weights(self, geometry: Geometry) -> IntegerWeights:
        return IntegerWeights(weight_order(self.codes, geometry), self.alpha)


class SpikeColumns(WeightForm):
    """fp32 weight columns ``[1, kh·kw, Ci/g, Co]`` for the spike-accumulate kernel (the fp32 reference row)."""

    kernel = "cpu.fp32-spike-accumulate"

    def __init__(self, weight: Tensor, geometry: Geometry):
        super().__init__()
        w2 = geometry.weight_2d(weight.detach().float().unsqueeze(0))  # [1, Co, Ci/g, kh, kw]
        self.steps, self.temporal = 1, False
        self.register_buffer("columns", w2.flatten(3).permute(0, 3, 2, 1).contiguous())
        self.register_buffer("alpha", torch.ones(1, geometry.out_channels))

    def dense_weight(self, geometry: Geometry) -> Tensor:
        return self.columns.permute(0, 3, 2, 1).reshape(1, *geometry.weight_shape)

    def run(self, x: Tensor, geometry: Geometry, step_rows: int, first_step: int, bias: Tensor | None
            ) -> tuple[Tensor, str]:
        if self.kernel_ready(x, geometry):
            from tawq_backends.kernels import spikes

            y = spikes.conv(geometry.as_2d(x), geometry.kernel_geometry, geometry.kernel_padding, self.columns,
                            step_rows, first_step, self.alpha, bias)
            if y is not None:
                return geometry.from_2d(y), self.kernel
        return per_step(x, step_rows, first_step, self.dense_weight(geometry), None, bias, geometry), DENSE


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

    def run(self, x: Tensor, geometry: Geometry, step_rows: int, first_step: int, bias: Tensor | None
            ) -> tuple[Tensor, str]:
        w = self.quantizer.unpack(self.packed()).to(device=x.device, dtype=x.dtype)
        return per_step(x, step_rows, first_step, w if self.temporal else w.unsqueeze(0), None, bias,
                        geometry), FALLBACK
