"""Packed storage: bit-exact round trips for every quantizer, and bits/weight measured from the bytes."""

from __future__ import annotations

import pytest
import torch

import tawq_core

QUANTIZERS = [("fp32", {}), ("tawq", {}), ("mtawq", {"bits": 3}), ("mtawq", {"bits": 4}), ("ptq8", {}),
              ("binary", {}), ("ternary", {})]


def bits_of(t: torch.Tensor) -> torch.Tensor:
    """The raw float32 bit patterns: equality here also tells +0 from -0."""
    return t.contiguous().view(torch.int32)


@pytest.mark.parametrize(("name", "options"), QUANTIZERS)
@pytest.mark.parametrize("shape", [(8, 3, 3, 3), (10, 7), (4, 2, 5)])
@pytest.mark.parametrize("steps", [1, 4, 7])
def test_round_trip_is_bit_exact(name, options, shape, steps):
    q = tawq_core.create("quantizer", name, **options)
    w = torch.randn(*shape, generator=torch.Generator().manual_seed(steps)) * 0.2
    with torch.no_grad():
        expected = q.weights(w, steps)
    packed = q.pack(w, steps)
    rebuilt = q.unpack(packed)
    assert rebuilt.dtype == torch.float32 and rebuilt.shape == expected.shape
    assert torch.equal(bits_of(rebuilt), bits_of(expected))
    assert packed.quantizer == name and packed.shape == shape and packed.timesteps == steps


@pytest.mark.parametrize(("name", "bits"), [("fp32", 32.0), ("ptq8", 8.0), ("ternary", 1.6), ("binary", 1.0)])
def test_static_bits_per_weight(name, bits):
    packed = tawq_core.create("quantizer", name).pack(torch.randn(64, 40), 4)  # 2560 weights: no padding
    assert packed.bits_per_weight == pytest.approx(bits)
    assert packed.bits_per_weight_total > packed.bits_per_weight or name == "fp32"


def test_tawq_bits_per_weight_at_t4_is_at_most_3_2():
    q = tawq_core.create("quantizer", "tawq")
    packed = q.pack(torch.randn(60, 32, 3, 3), 4)  # a multiple of 5 weights: no padding in the last group
    assert packed.meta["states"] == 9  # 2T + 1 patterns
    assert packed.payload["patterns"].dtype == torch.uint8
    assert packed.bits_per_weight <= 3.2
    padded = q.pack(torch.randn(64, 32, 3, 3), 4)  # otherwise at most one partial 2-byte group
    assert padded.bits_per_weight <= 3.2 + 16 / padded.numel
    assert packed.scales["alpha"].shape == (4, 60)


def test_tawq_bits_grow_with_log2_of_2t_plus_1_not_with_t():
    q = tawq_core.create("quantizer", "tawq")
    w = torch.randn(120, 64, generator=torch.Generator().manual_seed(0))
    packed = {steps: q.pack(w, steps) for steps in (1, 2, 8, 16)}
    bits = {steps: p.bits_per_weight for steps, p in packed.items()}
    assert all(p.meta["states"] <= 2 * steps + 1 for steps, p in packed.items())
    assert bits[1] == pytest.approx(1.6)  # 3 states
    assert bits[2] <= 2.4  # 5 states: log2 5 = 2.32
    assert bits[16] <= 5.1  # <= 33 states: log2 33 = 5.04, far below 16 ternary planes (25.4 bits)
    assert bits[1] < bits[2] < bits[8] <= bits[16]  # rare long patterns may be absent from a small tensor
