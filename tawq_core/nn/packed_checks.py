"""Building blocks for `Quantizer.check_packed`: is a stored `PackedWeight` one this quantizer could have written?

A packed file is read back from disk, where anyone can edit it. `unpack` is written for `pack`'s own
output: given codes outside the quantizer's code set, a payload whose dtype was changed, or a NaN
scale, it returns *some* tensor, and the loaded model silently computes something else. Each check
here returns a one-phrase problem (or None) that the loader turns into a `CheckpointError` naming the
file and the layer; a quantizer's `check_packed` chains them with ``or`` (first problem wins, and
later checks may assume the earlier ones passed).
"""

from __future__ import annotations

import torch
from torch import Tensor

from tawq_core.nn.packing import dense_layout, packed_size, uses_bit_planes
from tawq_core.plugin_api.quantizer import PackedWeight


def entry(packed: PackedWeight, part: str, key: str, dtype: torch.dtype, numel: int | None = None) -> str | None:
    """``packed.<part>[key]`` exists with this dtype and, when given, this many elements."""
    table = packed.payload if part == "payload" else packed.scales
    t = table.get(key)
    if t is None:
        return f"{part} tensor {key!r} is missing"
    if t.dtype != dtype:
        return f"{part} tensor {key!r} has dtype {str(t.dtype).removeprefix('torch.')}, expected " \
               f"{str(dtype).removeprefix('torch.')}"
    if numel is not None and t.numel() != numel:
        return f"{part} tensor {key!r} has {t.numel():,} elements, expected {numel:,}"
    return None


def keys(packed: PackedWeight, payload: set[str], scales: set[str]) -> str | None:
    """Exactly these payload and scale entries (an extra one is as suspicious as a missing one)."""
    for part, have, want in (("payload", set(packed.payload), payload), ("scales", set(packed.scales), scales)):
        if have != want:
            return f"{part} entries {sorted(have)}, expected {sorted(want)}"
    return None


def finite(packed: PackedWeight) -> str | None:
    """Every floating-point entry is finite (a NaN scale turns a whole channel into NaN)."""
    for part, table in (("payload", packed.payload), ("scales", packed.scales)):
        for key, t in table.items():
            if t.is_floating_point() and t.numel() and not bool(torch.isfinite(t).all()):
                return f"{part} tensor {key!r} holds NaN/inf"
    return None


def in_range(t: Tensor, name: str, low: float, high: float) -> str | None:
    """All values of `t` lie in ``[low, high]``."""
    if t.numel() and (float(t.min()) < low or float(t.max()) > high):
        return f"{name} holds values in [{t.min().item()}, {t.max().item()}], outside the code set [{low}, {high}]"
    return None


def positive(t: Tensor, name: str) -> str | None:
    """Scales are > 0 (a zero or negative scale flips or erases a channel)."""
    if t.numel() and not bool((t > 0).all()):
        return f"{name} holds values <= 0 (scales are positive)"
    return None


def digits(data: Tensor, name: str, base: int, count: int) -> str | None:
    """`pack_digits` output for `count` digits of `base` states: the exact byte count, and no group
    encoding a value >= base**n (which `unpack_digits` would wrap around into other, valid-looking codes)."""
    if data.numel() != packed_size(base, count):
        return f"{name} has {data.numel():,} bytes, expected {packed_size(base, count):,} for {count:,} codes " \
               f"of {base} states"
    if base == 1 or uses_bit_planes(base) or not data.numel():
        return None
    n, m = dense_layout(base)
    shifts = 8 * torch.arange(m, dtype=torch.int64)
    groups = (data.reshape(-1, m).to(torch.int64) << shifts).sum(dim=1)
    if int(groups.max()) >= base**n:
        return f"{name} holds codes outside the quantizer's {base} states"
    return None


def digits_and_alpha(packed: PackedWeight, key: str, base: int) -> str | None:
    """The layout binary and ternary share: one payload of `base`-state digits (`pack_digits`, uint8) and a
    float32 ``alpha`` per output channel."""
    return (keys(packed, {key}, {"alpha"})
            or entry(packed, "payload", key, torch.uint8)
            or digits(packed.payload[key], key, base, packed.numel)
            or entry(packed, "scales", "alpha", torch.float32, packed.shape[0])
            or finite(packed))
