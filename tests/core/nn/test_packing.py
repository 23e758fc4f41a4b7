"""Dense base-K packing and pattern codebooks."""

from __future__ import annotations

import pytest
import torch

from tawq_core import ConfigError
from tawq_core.nn.packing import (
    dense_layout,
    pack_digits,
    pack_patterns,
    packed_size,
    unpack_digits,
    unpack_patterns,
)


@pytest.mark.parametrize(("base", "layout"), [(2, (8, 1)), (3, (5, 1)), (9, (5, 2)), (256, (1, 1))])
def test_dense_layouts(base, layout):
    assert dense_layout(base) == layout


def test_never_worse_than_whole_bits():
    for base in [*range(2, 300), 1000, 20_000, 70_000]:
        digits, nbytes = dense_layout(base)
        assert base**digits <= 256**nbytes
        assert packed_size(base, 8000) * 8 / 8000 <= (base - 1).bit_length()


@pytest.mark.parametrize("base", [1, 2, 3, 5, 9, 17, 100, 257, 1000, 20_000])
@pytest.mark.parametrize("count", [0, 1, 4, 5, 6, 1001])
def test_digit_round_trip(base, count):
    digits = torch.randint(0, base, (count,), generator=torch.Generator().manual_seed(base + count))
    data = pack_digits(digits, base)
    assert data.dtype == torch.uint8 and data.dim() == 1
    assert torch.equal(unpack_digits(data, base, count), digits)


def test_nine_states_take_3_2_bits():
    assert 8 * pack_digits(torch.zeros(1000, dtype=torch.int64), 9).numel() / 1000 == pytest.approx(3.2)


def test_out_of_range_digits_and_wrong_sizes_are_user_errors():
    with pytest.raises(ConfigError, match=r"\[0, 3\)"):
        pack_digits(torch.tensor([0, 3]), 3)
    with pytest.raises(ConfigError, match="bytes"):
        unpack_digits(torch.zeros(3, dtype=torch.uint8), 3, 20)


@pytest.mark.parametrize("steps", [1, 4, 45])  # 3**45 > 2**62: the row-wise fallback
def test_pattern_round_trip(steps):
    q = torch.randint(-2, 3, (steps, 30, 4), generator=torch.Generator().manual_seed(steps))
    data, codebook = pack_patterns(q)
    assert codebook.dtype == torch.int8 and codebook.shape[1] == steps
    assert torch.equal(unpack_patterns(data, codebook, (30, 4)), q.to(torch.int8))
    assert torch.equal(torch.unique(codebook, dim=0), codebook)  # distinct, sorted
