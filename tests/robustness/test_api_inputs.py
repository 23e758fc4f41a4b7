"""Tensors handed to the Python API in the wrong layout or for the wrong T: a ShapeError saying what is expected."""

from __future__ import annotations

import pytest
import torch

import tawq_core
from tawq_core import ShapeError, create, quantize


def test_wrong_layout_is_a_shape_error_saying_what_is_expected():
    model = create("model", "mlp", num_classes=10, sample_shape=(1, 8, 8), hidden=[16])
    for shape in [(4, 1, 8, 8), (2, 4, 8, 8, 1), (2, 4, 64)]:  # no T axis, channels last, flattened
        with pytest.raises(ShapeError, match=r"model 'mlp' expects \[T, B, 1, 8, 8\], got .*time-major"):
            model(torch.zeros(shape))


def test_timesteps_that_do_not_match_a_temporal_quantizer_are_a_shape_error():
    """Folded [T*B, ...] input cannot tell T from B: T=2 x B=4 would silently run as T=4 x B=2."""
    model = create("model", "sew-resnet", num_classes=10, sample_shape=(1, 40), layers=[1, 1, 1], width=8)
    quantize(model, "tawq", timesteps=4)
    assert model(torch.zeros(4, 2, 1, 40)).shape == (2, 10)
    with pytest.raises(ShapeError, match=r"T=2 timesteps, but .* quantized with tawq for T=4.*set_timesteps"):
        model(torch.zeros(2, 4, 1, 40))
    splits = create("dataset", "digits")
    mlp = create("model", "mlp", num_classes=10, sample_shape=(1, 8, 8), hidden=[16, 16])
    quantize(mlp, "tawq", timesteps=4)
    with pytest.raises(ShapeError, match="T=2 timesteps"):
        tawq_core.evaluate(mlp, splits.test, splits, timesteps=2)
    tawq_core.set_timesteps(mlp, 2)
    assert 0.0 <= tawq_core.evaluate(mlp, splits.test, splits, timesteps=2) <= 1.0
