"""Dense integer packing for quantized weights: base-K digits into bytes, and pattern codebooks.

A weight that can take K states needs log2(K) bits. Packing each into a whole number of bits wastes
space when K is not a power of two (9 states in 4 bits = 4.0 bits), so digits are grouped: n base-K
digits form one integer below K**n, stored in m little-endian bytes. The layout (n, m) is chosen to
minimise 8·m / n bits per digit, e.g. 5 nine-state digits in 2 bytes (3.2 bits), 5 trits in one byte
(1.6 bits), 8 binary digits in one byte (1 bit). For large bases (> 128) where 7-byte groups lose to
plain ceil(log2 K)-bit fields, those are used instead. Everything is vectorised over int64 tensors.

Temporal quantizers store one *pattern* index per weight: the T-step sequence of integer weights is
looked up in a per-tensor codebook of the patterns that actually occur (at most 2T+1 for TaWQ), so
the payload needs log2(K) bits per weight whatever T is.
"""

from __future__ import annotations

import torch
from torch import Tensor

from tawq_core.plugin_api.errors import ConfigError

#: Groups are assembled in int64; keep every group value below 2**56 so shifts never overflow.
MAX_GROUP_BYTES = 7


def dense_layout(base: int) -> tuple[int, int]:
    """(digits per group, bytes per group) minimising bits per digit for `base` states (base >= 2)."""
    if base < 2:
        raise ConfigError(f"dense_layout needs base >= 2, got {base}")
    best: tuple[int, int] | None = None
    for nbytes in range(1, MAX_GROUP_BYTES + 1):
        capacity, digits, value = 256**nbytes, 0, 1
        while value * base <= capacity:  # exact integer arithmetic: no float log rounding
            value *= base
            digits += 1
        if digits and (best is None or nbytes * best[0] < best[1] * digits):
            best = (digits, nbytes)
    if best is None:
        raise ConfigError(f"base {base} does not fit in {MAX_GROUP_BYTES} bytes")
    return best


def uses_bit_planes(base: int) -> bool:
    """True when plain ceil(log2 base)-bit fields beat the grouped layout (large bases only, e.g. > 128)."""
    digits, nbytes = dense_layout(base)
    return (base - 1).bit_length() * digits < 8 * nbytes


def packed_size(base: int, count: int) -> int:
    """Bytes `pack_digits` produces for `count` digits of `base` states."""
    if base == 1:
        return 0
    if uses_bit_planes(base):
        return -(-count // 8) * (base - 1).bit_length()
    digits, nbytes = dense_layout(base)
    return -(-count // digits) * nbytes


def pack_digits(digits: Tensor, base: int) -> Tensor:
    """Pack a flat tensor of integers in [0, base) into a 1-D uint8 tensor (see `dense_layout`)."""
    flat = digits.reshape(-1).to(torch.int64)
    if flat.numel() and (int(flat.min()) < 0 or int(flat.max()) >= base):
        raise ConfigError(f"digits must lie in [0, {base}), got range [{int(flat.min())}, {int(flat.max())}]")
    if base == 1:
        return torch.empty(0, dtype=torch.uint8, device=flat.device)  # one state carries no information
    device = flat.device
    if uses_bit_planes(base):
        width = (base - 1).bit_length()
        padded = torch.zeros(-(-flat.numel() // 8) * 8, dtype=torch.int64, device=device)
        padded[: flat.numel()] = flat
        bits = (padded.unsqueeze(1) >> torch.arange(width, device=device)) & 1  # [N, width]
        weights = 1 << torch.arange(8, dtype=torch.int64, device=device)
        return (bits.reshape(-1, 8) * weights).sum(dim=1).to(torch.uint8)
    n, m = dense_layout(base)
    padded = torch.zeros(-(-flat.numel() // n) * n, dtype=torch.int64, device=device)
    padded[: flat.numel()] = flat
    powers = base ** torch.arange(n, dtype=torch.int64, device=device)
    values = (padded.view(-1, n) * powers).sum(dim=1)
    shifts = 8 * torch.arange(m, dtype=torch.int64, device=device)
    return ((values.unsqueeze(1) >> shifts) & 0xFF).to(torch.uint8).reshape(-1)


def unpack_digits(data: Tensor, base: int, count: int) -> Tensor:
    """Inverse of `pack_digits`: the first `count` digits as an int64 tensor."""
    if data.numel() != packed_size(base, count):
        raise ConfigError(f"packed data has {data.numel()} bytes, expected {packed_size(base, count)} "
                          f"for {count} digits of base {base}")
    device = data.device
    if base == 1:
        return torch.zeros(count, dtype=torch.int64, device=device)
    if uses_bit_planes(base):
        width = (base - 1).bit_length()
        bits = (data.to(torch.int64).unsqueeze(1) >> torch.arange(8, device=device)) & 1
        weights = 1 << torch.arange(width, dtype=torch.int64, device=device)
        return (bits.reshape(-1, width) * weights).sum(dim=1)[:count]
    n, m = dense_layout(base)
    shifts = 8 * torch.arange(m, dtype=torch.int64, device=device)
    values = (data.view(-1, m).to(torch.int64) << shifts).sum(dim=1)
    powers = base ** torch.arange(n, dtype=torch.int64, device=device)
    return ((values.unsqueeze(1) // powers) % base).reshape(-1)[:count]


def pack_patterns(q: Tensor) -> tuple[Tensor, Tensor]:
    """Integer weights ``[T, *shape]`` -> (packed pattern indices, codebook ``[K, T]`` int8).

    The codebook lists the distinct T-step patterns present, sorted; each weight stores its index.
    Patterns are keyed as base-(2L+1) integers when they fit in int64 (1-D unique is ~100x faster
    than row-wise unique), else compared row by row.
    """
    steps = q.shape[0]
    columns = q.reshape(steps, -1).t().to(torch.int64)
    levels = int(columns.abs().max()) if columns.numel() else 0
    base = 2 * levels + 1
    if base**steps < 2**62:
        # timestep 0 most significant: key order = row order, the same codebook as the fallback
        powers = base ** torch.arange(steps - 1, -1, -1, dtype=torch.int64, device=q.device)
        keys, index = torch.unique(((columns + levels) * powers).sum(dim=1), return_inverse=True)
        codebook = (keys.unsqueeze(1) // powers) % base - levels
    else:
        codebook, index = torch.unique(columns, dim=0, return_inverse=True)
    return pack_digits(index, codebook.shape[0]), codebook.to(torch.int8).contiguous()


def unpack_patterns(data: Tensor, codebook: Tensor, shape: tuple[int, ...]) -> Tensor:
    """Inverse of `pack_patterns`: the integer weights ``[T, *shape]`` as int8."""
    count = 1
    for size in shape:
        count *= size
    index = unpack_digits(data, codebook.shape[0], count)
    return codebook[index].t().reshape(codebook.shape[1], *shape)
