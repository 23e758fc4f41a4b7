"""Published configurations (parameter counts on the meta device) and option validation."""

from __future__ import annotations

import pytest
import torch

import tawq_core
from tawq_core import ConfigError, PluginNotFound, ShapeError
from tawq_plugins.models.blocks import auto_pools
from tawq_plugins.models.qkformer import stage_depths
from tawq_plugins.models.transformer import SpikingSelfAttention, TokenQKAttention

IMAGENET = {"num_classes": 1000, "sample_shape": (3, 224, 224)}


def parameter_count(name: str, **options) -> int:
    with torch.device("meta"):  # no memory is allocated for weights, no activations are computed
        model = tawq_core.create("model", name, **IMAGENET, **options)
    assert all(p.is_meta for p in model.parameters())
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    ("name", "options", "published"),
    [
        ("spikingformer", {"embed_dim": 384, "depth": 8}, 16.81e6),  # Spikingformer-8-384
        ("spikingformer", {"embed_dim": 512, "depth": 8}, 29.68e6),  # Spikingformer-8-512
        ("qkformer", {"embed_dim": 384, "depth": 10, "heads": 6}, 16.47e6),  # QKFormer-10-384
        ("qkformer", {"embed_dim": 512, "depth": 10}, 29.08e6),  # QKFormer-10-512
        ("sew-resnet", {"layers": (2, 2, 2, 2)}, 11.69e6),  # SEW-ResNet-18
        ("sew-resnet", {"layers": (3, 4, 6, 3)}, 21.80e6),  # SEW-ResNet-34
    ],
)
def test_published_parameter_counts(name, options, published):
    assert parameter_count(name, **options) == pytest.approx(published, rel=0.05)


def test_qkformer_splits_blocks_over_stages_like_the_published_models():
    assert stage_depths(10) == (1, 2, 7)
    assert stage_depths(4) == (1, 1, 2)
    assert stage_depths(3) == (1, 1, 1)
    with torch.device("meta"):
        model = tawq_core.create("model", "qkformer", **IMAGENET, embed_dim=384, depth=10, heads=6)
    kinds = [type(m).__name__ for m in model.modules() if isinstance(m, (TokenQKAttention, SpikingSelfAttention))]
    assert kinds == ["TokenQKAttention"] * 3 + ["SpikingSelfAttention"] * 7


def test_default_downsampling_keeps_about_8_tokens_per_side():
    assert [auto_pools("m", None, size, 4) for size in (224, 128, 32, 16, 8, 4)] == [4, 4, 2, 1, 0, 0]
    model = tawq_core.create("model", "spikingformer", num_classes=10, sample_shape=(3, 32, 32),
                             embed_dim=16, depth=1, heads=2)
    seen = []
    model.blocks[0].register_forward_hook(lambda m, args, out: seen.append(out.shape))
    model(torch.zeros(1, 2, 3, 32, 32))
    assert seen == [torch.Size([1, 2, 16, 8, 8])]


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("spikingformer", {"sample_shape": (1, 40)}, "needs image-like samples"),
        ("qkformer", {"sample_shape": (140,)}, "use 'sew-resnet' or 'mlp'"),
        ("spikingformer", {"embed_dim": 36}, "multiple of 8"),
        ("spikingformer", {"embed_dim": 32, "heads": 3}, "divisible by heads"),
        ("qkformer", {"embed_dim": 32, "heads": 16}, "divisible by heads"),
        ("qkformer", {"depth": 2}, "depth must be >= 3"),
        ("spikingformer", {"mlp_ratio": 0}, "mlp_ratio"),
        ("spikingformer", {"pools": 5}, "pools must be an integer in 0..4"),
        ("sew-resnet", {"sample_shape": (1, 2, 8, 8)}, "sample_shape must be"),
        ("sew-resnet", {"layers": ()}, "layers must be a list"),
        ("sew-resnet", {"layers": (2, 0)}, "positive integer"),
        ("sew-resnet", {"width": 0}, "width must be a positive integer"),
        ("mlp", {"hidden": ()}, "hidden must be a list"),
        ("mlp", {"num_classes": 1}, "num_classes must be an integer >= 2"),
        ("mlp", {"sample_shape": (0, 8)}, "sample_shape must be positive ints"),
        ("mlp", {"neuron_options": ["tau", 2]}, "neuron_options must be a dict"),
        ("mlp", {"neuron_options": {"tau": 0.5}}, "tau must be >= 1"),
        ("mlp", {"depth": 3}, "invalid options for model 'mlp'"),
    ],
)
def test_bad_options_are_config_errors(name, options, message):
    kwargs = {"num_classes": 10, "sample_shape": (3, 16, 16), **options}
    with pytest.raises(ConfigError, match=message):
        tawq_core.create("model", name, **kwargs)


def test_unknown_neuron_lists_the_known_ones():
    with pytest.raises(PluginNotFound, match="known neurons: .*lif"):
        tawq_core.create("model", "mlp", num_classes=10, sample_shape=(4,), neuron="izhikevich")


@pytest.mark.parametrize("bad", [torch.zeros(2, 3, 16, 16), torch.zeros(4, 2, 3, 8, 8)])
def test_wrong_input_layout_is_a_shape_error(bad):
    model = tawq_core.create("model", "spikingformer", num_classes=10, sample_shape=(3, 16, 16),
                             embed_dim=16, depth=1, heads=2)
    with pytest.raises(ShapeError, match=r"expects \[T, B, 3, 16, 16\]"):
        model(bad)
