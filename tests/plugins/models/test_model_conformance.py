"""Every built-in model passes tawq_core.testing.check_model at a tiny size (quantized, trained, deployed)."""

from __future__ import annotations

import pytest

import tawq_core
from tawq_core.testing import check_model

TINY = {
    "mlp": ((1, 8, 8), {"hidden": (16, 12)}),
    "sew-resnet": ((2, 8, 8), {"layers": (1, 1), "width": 8}),
    "spikingformer": ((3, 16, 16), {"embed_dim": 32, "depth": 1, "heads": 2}),
    "qkformer": ((3, 16, 16), {"embed_dim": 32, "depth": 3, "heads": 2}),
}


def test_every_builtin_model_has_a_tiny_size_here():
    assert set(tawq_core.list_plugins("model")) == set(TINY)


@pytest.mark.parametrize("name", sorted(TINY))
def test_builtin_model_passes_the_conformance_check(name):
    shape, options = TINY[name]
    check_model(name, sample_shape=shape, timesteps=2, **options)
