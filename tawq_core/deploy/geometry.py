"""The shape arithmetic of a deployed conv/linear layer: its torch op for the dense path, and the same
layer seen as a 2-D convolution over ``[rows, C, H, W]`` for the kernels (linear: 1x1 on a 1x1 image,
conv1d: height 1)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tawq_core.plugin_api.errors import ConfigError


@contextmanager
def exact_float32(device: torch.device) -> Iterator[None]:
    """No TF32 inside: on CUDA, cuDNN convolutions use TF32 by default (and matmuls do after
    ``torch.set_float32_matmul_precision("high")``), which rounds the weights to 10 mantissa bits; the
    dense path promises ``conv(x, q) · alpha`` in float32. A no-op elsewhere; flags restored on exit."""
    if device.type != "cuda":
        yield
        return
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    kept = matmul.allow_tf32
    matmul.allow_tf32 = False
    try:
        with cudnn.flags(enabled=cudnn.enabled, benchmark=cudnn.benchmark, deterministic=cudnn.deterministic,
                         allow_tf32=False):
            yield
    finally:
        matmul.allow_tf32 = kept


class LayerKind(str, Enum):
    LINEAR = "linear"
    CONV1D = "conv1d"
    CONV2D = "conv2d"

    @property
    def sample_dims(self) -> int:
        """Dims after the rows: features (linear), C·L (conv1d), C·H·W (conv2d)."""
        return {"linear": 1, "conv1d": 2, "conv2d": 3}[self.value]


@dataclass(frozen=True)
class Geometry:
    kind: LayerKind
    in_channels: int
    out_channels: int
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    padding: Any  # torch's value (ints or 'same'/'valid'), for the dense path
    dilation: tuple[int, ...]
    groups: int
    padding_mode: str
    reversed_padding: tuple[int, ...]  # torch's _reversed_padding_repeated_twice, for non-zero padding modes

    @classmethod
    def of(cls, layer: nn.Module) -> Geometry:
        if isinstance(layer, nn.Linear):
            return cls(LayerKind.LINEAR, layer.in_features, layer.out_features, (), (), 0, (), 1, "zeros", ())
        for kind, conv_type in ((LayerKind.CONV2D, nn.Conv2d), (LayerKind.CONV1D, nn.Conv1d)):
            if isinstance(layer, conv_type):
                return cls(kind, layer.in_channels, layer.out_channels, tuple(layer.kernel_size),
                           tuple(layer.stride), layer.padding, tuple(layer.dilation), layer.groups,
                           layer.padding_mode, tuple(layer._reversed_padding_repeated_twice))
        raise ConfigError(f"only Linear, Conv1d and Conv2d layers deploy, got {type(layer).__name__}")

    @property
    def weight_shape(self) -> tuple[int, ...]:
        return (self.out_channels, self.in_channels // self.groups, *self.kernel)

    def dense(self, x: Tensor, w: Tensor, bias: Tensor | None = None) -> Tensor:
        """torch's own op on rows-form input ``[rows, *sample]``, in float32 without TF32."""
        with exact_float32(x.device):
            if self.kind is LayerKind.LINEAR:
                return F.linear(x, w, bias)
            conv = F.conv1d if self.kind is LayerKind.CONV1D else F.conv2d
            padding = self.padding
            if self.padding_mode != "zeros":
                x = F.pad(x, self.reversed_padding, mode=self.padding_mode)
                padding = 0
            return conv(x, w, bias, self.stride, padding, self.dilation, self.groups)

    @property
    def kernel_padding(self) -> tuple[int, int] | None:
        """(pad_h, pad_w) when the kernels can pad (zeros, explicit ints), else None (dense path only)."""
        if self.kind is LayerKind.LINEAR:
            return (0, 0)
        if self.padding_mode != "zeros" or isinstance(self.padding, str):
            return None
        return (0, self.padding[0]) if self.kind is LayerKind.CONV1D else (self.padding[0], self.padding[1])

    @property
    def kernel_geometry(self) -> tuple[int, ...]:
        """(kh, kw, stride_h, stride_w, dilation_h, dilation_w, groups) of the 2-D view."""
        if self.kind is LayerKind.LINEAR:
            return (1, 1, 1, 1, 1, 1, 1)
        if self.kind is LayerKind.CONV1D:
            return (1, self.kernel[0], 1, self.stride[0], 1, self.dilation[0], self.groups)
        return (*self.kernel, *self.stride, *self.dilation, self.groups)

    def output_size(self, x: Tensor) -> tuple[int, int]:
        """(Ho, Wo) of the 2-D view for 2-D-view input ``x [N, C, H, W]`` (kernel padding)."""
        kh, kw, sh, sw, dh, dw, _ = self.kernel_geometry
        ph, pw = self.kernel_padding or (0, 0)
        return ((x.shape[2] + 2 * ph - dh * (kh - 1) - 1) // sh + 1,
                (x.shape[3] + 2 * pw - dw * (kw - 1) - 1) // sw + 1)

    def as_2d(self, x: Tensor) -> Tensor:
        """Rows-form input -> ``[rows, C, H, W]`` (a view)."""
        if self.kind is LayerKind.LINEAR:
            return x.reshape(*x.shape, 1, 1)
        return x.unsqueeze(2) if self.kind is LayerKind.CONV1D else x

    def from_2d(self, y: Tensor) -> Tensor:
        if self.kind is LayerKind.LINEAR:
            return y.reshape(y.shape[0], y.shape[1])
        return y.squeeze(2) if self.kind is LayerKind.CONV1D else y

    def weight_2d(self, w: Tensor) -> Tensor:
        """``[..., Co, Ci/g, *kernel]`` -> ``[..., Co, Ci/g, kh, kw]``."""
        if self.kind is LayerKind.LINEAR:
            return w.reshape(*w.shape, 1, 1)
        return w.unsqueeze(-2) if self.kind is LayerKind.CONV1D else w
