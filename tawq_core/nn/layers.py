"""Quantized conv and linear layers: latent weight in, effective (possibly per-timestep) weights used.

`QuantLinear`, `QuantConv1d` and `QuantConv2d` subclass the torch layers, so exporters and op
counters that test ``isinstance(m, nn.Conv2d)`` keep working, and keep the latent weight as
``.weight`` with the same state-dict keys (an fp32 checkpoint loads straight into a quantized model).
Every forward asks ``.quantizer`` for the effective weights (`effective_weight`). Temporal
quantizers give one weight set per timestep, applied to all T steps in ONE batched call: a grouped
convolution with groups = T·g over the input folded to [B, T·C, ...], or a batched matmul.

Temporal layers follow the time layout contract of `tawq_core.nn.time_layout`: ``[T, B, ...]``, or
``[T·B, ...]`` with B known from the model's forward, or one step per call inside `tawq_core.stepwise`;
deployed layers import `split_time` from here to apply the same contract. Static quantizers are
time-invariant and accept any leading dims. In eval mode the effective weights are computed once
and cached until the weight changes or the layer goes back to training.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tawq_core.nn.roles import ROLE_ATTRIBUTE
from tawq_core.nn.time_layout import layout_of, split_time
from tawq_core.plugin_api.errors import ShapeError
from tawq_core.plugin_api.quantizer import PackedWeight, Quantizer, check_timesteps, with_state

#: buffer-name prefix of the quantizer state a layer holds (state-dict keys ``<layer>.qstate_<name>``)
STATE_PREFIX = "qstate_"


def fingerprint(t: Tensor) -> tuple[float, ...]:
    """A cheap checksum of `t`'s values for the eval cache: ``.data`` edits bump no version counter.

    The total and the row and column sums weighted by position (so swapped rows or columns show too):
    two float32 reductions, about 2% of computing tawq's effective weights (`benchmarks/eval_cache.py`;
    float64 sums cost 5x more). An edit smaller than the sums' rounding can pass unseen: the price of
    not hashing every byte on every forward.
    """
    m = t.detach().reshape(t.shape[0], -1) if t.dim() else t.detach().reshape(1, 1)
    rows, cols = m.sum(1).double(), m.sum(0).double()
    ramp = torch.arange(1, max(rows.numel(), cols.numel()) + 1, device=m.device, dtype=torch.float64)
    sums = torch.stack((rows.sum(), rows @ ramp[: rows.numel()], cols @ ramp[: cols.numel()]))
    return tuple(sums.tolist())


def resolve_quantizer(quantizer: Quantizer | str) -> Quantizer:
    if isinstance(quantizer, str):
        from tawq_core.plugin_api.registry import create  # the registry imports plugins, which import this package

        return create("quantizer", quantizer)
    if not isinstance(quantizer, Quantizer):
        raise TypeError(f"quantizer must be a tawq_core.Quantizer or a registered name, got {quantizer!r}")
    return quantizer


class _QuantMixin:
    """Quantizer, timesteps, the eval-mode cache and `effective_weight`, shared by the three layers."""

    weight: nn.Parameter
    bias: nn.Parameter | None
    training: bool
    _float_type: type[nn.Module]

    def _setup(self, quantizer: Quantizer | str, timesteps: int) -> None:
        self.quantizer = resolve_quantizer(quantizer)
        self.timesteps = check_timesteps(timesteps)
        self._cache: tuple[tuple[Any, ...], Tensor] | None = None
        self._state_version = 0  # bumped by calibration and load_state_dict: part of the cache key
        for key, value in self.quantizer.init_state(self.weight.detach()).items():
            self.register_buffer(STATE_PREFIX + key, value)  # type: ignore[attr-defined]
        layout_of(self)  # its own layout until quantize() attaches it to the model's

    def quantizer_state(self) -> dict[str, Tensor]:
        """This layer's quantizer state (`Quantizer.init_state`), held as buffers ``qstate_<name>``."""
        buffers: dict[str, Tensor | None] = self._buffers  # type: ignore[attr-defined]
        return {k[len(STATE_PREFIX):]: v for k, v in buffers.items() if k.startswith(STATE_PREFIX) and v is not None}

    def state_changed(self) -> None:
        """Say the quantizer state was updated (calibration does): the eval cache is rebuilt."""
        self._state_version += 1

    def _load_from_state_dict(self, *args: Any, **kwargs: Any) -> None:
        super()._load_from_state_dict(*args, **kwargs)  # type: ignore[misc]
        self.state_changed()

    def pack(self) -> PackedWeight:
        """The storage form of this layer's effective weights (`Quantizer.pack` with the layer's state)."""
        return self.quantizer.pack(self.weight.detach(), self.timesteps, **with_state(self.quantizer_state()))

    @classmethod
    def from_float(cls, layer: nn.Module, quantizer: Quantizer | str, timesteps: int) -> Any:
        """A quantized copy of `layer` (same config, device, dtype; weight and bias data copied)."""
        if not isinstance(layer, cls._float_type) or isinstance(layer, _QuantMixin):
            raise TypeError(f"{cls.__name__}.from_float needs a plain {cls._float_type.__name__}, "
                            f"got {type(layer).__name__}")
        new = cls._like(layer, quantizer, timesteps)
        with torch.no_grad():
            new.weight.copy_(layer.weight)
            if layer.bias is not None:
                new.bias.copy_(layer.bias)
        new.weight.requires_grad_(layer.weight.requires_grad)
        if layer.bias is not None:
            new.bias.requires_grad_(layer.bias.requires_grad)
        if hasattr(layer, ROLE_ATTRIBUTE):  # keep role marks so policies and exporters still see them
            setattr(new, ROLE_ATTRIBUTE, getattr(layer, ROLE_ATTRIBUTE))
        new.train(layer.training)
        return new

    def _cache_key(self) -> tuple[Any, ...]:
        w = self.weight
        state = self.quantizer_state()
        return (id(w), w.data_ptr(), w._version, w.device, w.dtype, self.timesteps, id(self.quantizer),
                self._state_version, fingerprint(w), *(fingerprint(t) for t in state.values()))

    def effective_weight(self) -> Tensor:
        """``[T, *weight.shape]`` for temporal quantizers, ``weight.shape`` for static ones.

        In eval mode the result is cached (the spec: precompute q and alpha once at inference) unless
        gradients are wanted, and rebuilt when the weight or quantizer state changes (version counters,
        `load_state_dict`, calibration, and a checksum for ``.data`` edits, which bump no version), when
        either is replaced, or when T changes.
        """
        if self.training or (torch.is_grad_enabled() and self.weight.requires_grad):
            return self._compute()
        key = self._cache_key()
        if self._cache is None or self._cache[0] != key:
            with torch.no_grad():
                self._cache = (key, self._compute())
        return self._cache[1]

    def _compute(self) -> Tensor:
        w = self.quantizer.weights(self.weight, self.timesteps, **with_state(self.quantizer_state()))
        expected = (self.timesteps, *self.weight.shape) if self.quantizer.temporal else tuple(self.weight.shape)
        if not isinstance(w, Tensor) or tuple(w.shape) != expected:
            from tawq_core.plugin_api.plugin_boundary import PluginFailed, label

            got = tuple(w.shape) if isinstance(w, Tensor) else type(w).__name__
            raise PluginFailed(f"{label(self.quantizer, 'quantizer')} broke its contract: weights() returned "
                               f"{got} for a weight of shape {tuple(self.weight.shape)} at T={self.timesteps}, "
                               f"expected {expected}")
        return w if w.dtype == self.weight.dtype else w.to(self.weight.dtype)

    def train(self, mode: bool = True) -> Any:
        self._cache = None
        return super().train(mode)  # type: ignore[misc]

    def _describe(self) -> str:
        return f"{type(self).__name__}({self.quantizer.name}, timesteps={self.timesteps})"

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, quantizer={self.quantizer.name}, timesteps={self.timesteps}"  # type: ignore[misc]


class QuantLinear(_QuantMixin, nn.Linear):
    """`nn.Linear` whose weight is quantized; input ``[..., in_features]``, T-major leading dims."""

    _float_type = nn.Linear

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *,
                 quantizer: Quantizer | str, timesteps: int, device: Any = None, dtype: Any = None):
        super().__init__(in_features, out_features, bias, device=device, dtype=dtype)
        self._setup(quantizer, timesteps)

    @classmethod
    def _like(cls, layer: nn.Linear, quantizer: Quantizer | str, timesteps: int) -> QuantLinear:
        return cls(layer.in_features, layer.out_features, layer.bias is not None, quantizer=quantizer,
                   timesteps=timesteps, device=layer.weight.device, dtype=layer.weight.dtype)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() < 1 or x.shape[-1] != self.in_features:
            raise ShapeError(f"{self._describe()} expects [..., {self.in_features}] features, "
                             f"got shape {tuple(x.shape)}")
        w = self.effective_weight()
        if not self.quantizer.temporal:
            return F.linear(x, w, self.bias)
        view = split_time(self, x, 1, extra_leading=True)
        wt = w[view.steps].transpose(1, 2)  # [T', in, out]
        if self.bias is None:
            y = torch.bmm(view.x, wt)
        else:
            y = torch.baddbmm(self.bias.reshape(1, 1, -1), view.x, wt)
        return view.restore(y)


class _QuantConv(_QuantMixin):
    """Time-folded forward for `QuantConv1d` / `QuantConv2d` (the conv attributes come from torch)."""

    in_channels: int
    out_channels: int
    groups: int
    padding_mode: str
    _reversed_padding_repeated_twice: list[int]
    _sample_dims: int

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Any, stride: Any = 1,
                 padding: Any = 0, dilation: Any = 1, groups: int = 1, bias: bool = True,
                 padding_mode: str = "zeros", *, quantizer: Quantizer | str, timesteps: int,
                 device: Any = None, dtype: Any = None):
        # super() is the torch conv class that follows this mixin in QuantConv1d/QuantConv2d's MRO
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                         padding_mode, device=device, dtype=dtype)
        self._setup(quantizer, timesteps)

    @classmethod
    def _like(cls, layer: nn.Module, quantizer: Quantizer | str, timesteps: int) -> Any:
        return cls(layer.in_channels, layer.out_channels, layer.kernel_size, stride=layer.stride,
                   padding=layer.padding, dilation=layer.dilation, groups=layer.groups,
                   bias=layer.bias is not None, padding_mode=layer.padding_mode, quantizer=quantizer,
                   timesteps=timesteps, device=layer.weight.device, dtype=layer.weight.dtype)

    def _conv(self, x: Tensor, w: Tensor, bias: Tensor | None, groups: int) -> Tensor:
        conv = F.conv1d if self._sample_dims == 2 else F.conv2d
        padding: Any = self.padding  # type: ignore[attr-defined]
        if self.padding_mode != "zeros":
            x = F.pad(x, self._reversed_padding_repeated_twice, mode=self.padding_mode)
            padding = 0
        return conv(x, w, bias, self.stride, padding, self.dilation, groups)  # type: ignore[attr-defined]

    def forward(self, x: Tensor) -> Tensor:
        channel_dim = x.dim() - self._sample_dims
        if x.dim() < self._sample_dims + 1 or x.shape[channel_dim] != self.in_channels:
            raise ShapeError(f"{self._describe()} expects {self.in_channels} input channels in "
                             f"[T, B, C, ...] or [T*B, C, ...], got shape {tuple(x.shape)}")
        w = self.effective_weight()
        if not self.quantizer.temporal:  # time-invariant: any leading dims, one conv call
            flat = x.reshape(-1, *x.shape[-self._sample_dims:])
            y = self._conv(flat, w, self.bias, self.groups)
            return y.reshape(*x.shape[:-self._sample_dims], *y.shape[1:])
        view = split_time(self, x, self._sample_dims)
        T, B = view.x.shape[:2]  # T' weight sets: all T, or the one of a stepwise call
        w = w[view.steps]
        folded = view.x.transpose(0, 1).reshape(B, T * self.in_channels, *view.x.shape[3:])
        bias = self.bias.repeat(T) if self.bias is not None else None
        y = self._conv(folded, w.reshape(T * self.out_channels, *w.shape[2:]), bias, T * self.groups)
        return view.restore(y.reshape(B, T, self.out_channels, *y.shape[2:]).transpose(0, 1))


class QuantConv1d(_QuantConv, nn.Conv1d):
    """`nn.Conv1d` with a quantized weight; input ``[T, B, C, L]`` or ``[T·B, C, L]``."""

    _float_type = nn.Conv1d
    _sample_dims = 2


class QuantConv2d(_QuantConv, nn.Conv2d):
    """`nn.Conv2d` with a quantized weight; input ``[T, B, C, H, W]`` or ``[T·B, C, H, W]``."""

    _float_type = nn.Conv2d
    _sample_dims = 3


def quantized_layer_type(layer: nn.Module) -> type[_QuantMixin] | None:
    """The quantized class that replaces `layer`, or None if it is not a conv/linear tawq can quantize."""
    for quant_type in (QuantConv2d, QuantConv1d, QuantLinear):
        if isinstance(layer, quant_type._float_type):
            return quant_type
    return None


def is_quantized(module: nn.Module) -> bool:
    return isinstance(module, _QuantMixin)
