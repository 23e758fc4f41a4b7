"""`qkformer`: QKFormer (Zhou et al. 2024), a hierarchical post-activation spiking transformer.

Three stages at embed_dim/4, /2 and embed_dim channels:

* stem embedding: full-precision 3x3 conv + BN (the marked stem, embed_dim/8 channels) -> neuron ->
  3x3 conv + BN -> neuron -> 3x3 conv + BN -> neuron, plus a spiking 1x1 conv shortcut; then
  Q-K token-attention blocks;
* stage embedding (twice): 3x3 conv + BN -> neuron -> 3x3 conv + BN -> neuron with a spiking 1x1 conv
  shortcut; Q-K token attention after the first, spiking self-attention (Q·Kᵀ·V·0.125) after the second.
* every block is ``x + attention(x)``, ``x + mlp(x)`` (MLP ratio 4), everything post-activation.

``depth`` blocks are split 1 / 2 / rest over the stages (1 / 1 / rest when depth < 5), as in the
published 10-block ImageNet model (1 / 2 / 7) and the 4-block CIFAR one (1 / 1 / 2). ``pools`` 2x
downsamplings (max-pool after a 3x3 conv, stride-2 shortcut) are placed in the stage embeddings first,
then in the stem embedding: 4 at 224x224 (14x14 tokens), 2 at 32x32 (8x8). QKFormer-10-384 has
16.47 M parameters (checked by the tests). Readout: mean over tokens, mean over time, linear head.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from tawq_core import ConfigError, hookimpl, mark
from tawq_plugins.models.blocks import (
    Flat,
    NeuronFactory,
    SpikingClassifier,
    auto_pools,
    check_common,
    tokens_mean,
)
from tawq_plugins.models.transformer import (
    ConvMLP,
    SpikingSelfAttention,
    TokenQKAttention,
    TransformerBlock,
    check_transformer,
)

NAME = "qkformer"


def _conv_bn(conv: nn.Conv2d, pool: bool) -> Flat:
    bn = nn.BatchNorm2d(conv.out_channels)
    return Flat(conv, bn, nn.MaxPool2d(3, 2, 1)) if pool else Flat(conv, bn)


def _conv3(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, 1, 1, bias=False)


def _shortcut(cin: int, cout: int, pool: bool) -> Flat:
    return Flat(nn.Conv2d(cin, cout, 1, 2 if pool else 1, bias=False), nn.BatchNorm2d(cout))


class StemEmbedding(nn.Module):
    def __init__(self, channels: int, dim: int, pool_first: bool, pool_second: bool, neurons: NeuronFactory):
        super().__init__()
        stem = mark(_conv3(channels, dim // 2), "stem")
        self.conv0, self.sn0 = _conv_bn(stem, pool_first), neurons()
        self.conv1, self.sn1 = _conv_bn(_conv3(dim // 2, dim), pool_second), neurons()
        self.conv2, self.sn2 = _conv_bn(_conv3(dim, dim), False), neurons()
        self.shortcut, self.shortcut_sn = _shortcut(dim // 2, dim, pool_second), neurons()

    def forward(self, x: Tensor) -> Tensor:
        x = self.sn0(self.conv0(x))
        return self.sn2(self.conv2(self.sn1(self.conv1(x)))) + self.shortcut_sn(self.shortcut(x))


class StageEmbedding(nn.Module):
    def __init__(self, dim_in: int, dim: int, pool: bool, neurons: NeuronFactory):
        super().__init__()
        self.conv1, self.sn1 = _conv_bn(_conv3(dim_in, dim), pool), neurons()
        self.conv2, self.sn2 = _conv_bn(_conv3(dim, dim), False), neurons()
        self.shortcut, self.shortcut_sn = _shortcut(dim_in, dim, pool), neurons()

    def forward(self, x: Tensor) -> Tensor:
        return self.sn2(self.conv2(self.sn1(self.conv1(x)))) + self.shortcut_sn(self.shortcut(x))


def stage_depths(depth: int) -> tuple[int, int, int]:
    second = 2 if depth >= 5 else 1
    return 1, second, depth - 1 - second


class QKFormer(SpikingClassifier):
    def __init__(self, num_classes: int, sample_shape: tuple[int, ...], neurons: NeuronFactory,
                 embed_dim: int, depth: int, heads: int, mlp_ratio: float, pools: int):
        super().__init__(NAME, sample_shape, embed_dim, num_classes)
        # downsampling slots in order of use: stage embedding 2, stage embedding 3, stem (2nd, 1st conv)
        pool2, pool3, stem_second, stem_first = (pools > i for i in range(4))
        dims = (embed_dim // 4, embed_dim // 2, embed_dim)
        d1, d2, d3 = stage_depths(depth)

        def blocks(count: int, dim: int, token_qk: bool) -> nn.Sequential:
            def attention() -> nn.Module:
                if token_qk:
                    return TokenQKAttention(dim, heads, neurons)
                return SpikingSelfAttention(dim, heads, neurons, pre_activation=False)

            return nn.Sequential(*(
                TransformerBlock(attention(), ConvMLP(dim, int(dim * mlp_ratio), neurons, pre_activation=False))
                for _ in range(count)
            ))

        self.embed1 = StemEmbedding(sample_shape[0], dims[0], stem_first, stem_second, neurons)
        self.stage1 = blocks(d1, dims[0], token_qk=True)
        self.embed2 = StageEmbedding(dims[0], dims[1], pool2, neurons)
        self.stage2 = blocks(d2, dims[1], token_qk=True)
        self.embed3 = StageEmbedding(dims[1], dims[2], pool3, neurons)
        self.stage3 = blocks(d3, dims[2], token_qk=False)

    def features(self, x: Tensor) -> Tensor:
        x = self.stage1(self.embed1(x))
        x = self.stage2(self.embed2(x))
        return tokens_mean(self.stage3(self.embed3(x)))


def build_qkformer(*, num_classes: int, sample_shape: tuple[int, ...], neuron: str = "lif",
                   neuron_options: dict[str, Any] | None = None, embed_dim: int = 384, depth: int = 4,
                   heads: int = 8, mlp_ratio: float = 4.0, pools: int | None = None) -> nn.Module:
    """QKFormer-`depth`-`embed_dim` (depth >= 3); `pools` 2x downsamplings (None: by input size)."""
    num_classes, shape = check_common(NAME, num_classes, sample_shape)
    embed_dim, depth, heads, _ = check_transformer(NAME, shape, embed_dim, depth, heads, mlp_ratio, min_depth=3)
    if (embed_dim // 4) % heads:
        raise ConfigError(f"model {NAME!r}: embed_dim/4 ({embed_dim // 4}, the first stage's width) must be "
                          f"divisible by heads ({heads})")
    pools = auto_pools(NAME, pools, min(shape[1:]), limit=4)
    return QKFormer(num_classes, shape, NeuronFactory(neuron, neuron_options), embed_dim, depth, heads,
                    float(mlp_ratio), pools)


@hookimpl
def tawq_register_models(register):
    register("qkformer", build_qkformer)
