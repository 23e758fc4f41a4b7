"""Bit-plane expansion: the table-driven numba kernel equals the weights it was packed from."""

import pytest
import torch

from tawq_backends.kernels import bitplane


def _planes(q: torch.Tensor, levels: int) -> tuple[torch.Tensor, torch.Tensor]:
    magnitude = q.abs()
    signs = bitplane.pack_planes((q < 0).unsqueeze(0))[0]
    bits = [((magnitude >> b) & 1).bool() for b in range(levels)]
    mags = torch.stack(bits) if bits else torch.zeros(0, *q.shape, dtype=torch.bool)
    return signs, bitplane.pack_planes(mags)


@pytest.mark.parametrize("levels", [0, 1, 2, 3])
@pytest.mark.parametrize("fan_in", [1, 63, 64, 65, 200])
def test_expand_rebuilds_the_packed_weights(levels, fan_in):
    torch.manual_seed(levels * 1000 + fan_in)
    if levels == 0:  # +-1 only: the sign plane is the whole weight
        q = torch.where(torch.rand(7, fan_in) < 0.5, -1, 1)
    else:  # zeros with either sign bit (a TaWQ zero keeps its sign plane) included
        q = torch.randint(-(2 ** levels - 1), 2 ** levels, (7, fan_in))
    signs, mags = _planes(q, levels)
    out = bitplane.expand(signs, mags, fan_in)
    assert out.dtype == torch.int8 and out.shape == (7, fan_in)
    assert torch.equal(out, q.to(torch.int8))


def test_zero_magnitude_under_a_set_sign_bit_is_zero():
    """A negative-sign weight whose magnitude is 0 at this step must expand to 0, not -0 borrowed from a
    neighbouring byte."""
    q = torch.zeros(2, 64, dtype=torch.int64)
    q[:, 1::2] = 1
    signs = bitplane.pack_planes(torch.ones(1, 2, 64, dtype=torch.bool))[0]
    mags = bitplane.pack_planes((q == 1).unsqueeze(0))
    assert torch.equal(bitplane.expand(signs, mags, 64), -q.to(torch.int8))
