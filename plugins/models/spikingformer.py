"""`spikingformer`: Spikingformer-L-D (Zhou et al. 2023), a pre-activation spiking transformer.

* Tokenizer: full-precision stem (3x3 conv + BN, marked "stem", embed_dim/8 channels), then four
  stages ``neuron -> (3x3 max-pool stride 2) -> 3x3 conv -> BN`` widening to embed_dim/4, /2, 1, 1.
  ``pools`` of them (the last ones) downsample: 4 at 224x224 (14x14 tokens), 2 at 32x32 (8x8 tokens);
  by default as many as keep the token grid at least 8 wide.
* ``depth`` blocks of spiking self-attention (Q·Kᵀ·V·0.125, attention neuron at v_th 0.5) and a
  ratio-4 MLP, each pre-activation (neuron before every conv) with a residual add.
* Readout: mean over tokens, mean over time, linear head.

Spikingformer-8-384 on 224x224 ImageNet has 16.81 M parameters (checked by the tests).
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
    TransformerBlock,
    check_transformer,
)

NAME = "spikingformer"


def _conv_bn(cin: int, cout: int, pool: bool) -> Flat:
    conv, bn = nn.Conv2d(cin, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout)
    return Flat(nn.MaxPool2d(3, 2, 1), conv, bn) if pool else Flat(conv, bn)


class Tokenizer(nn.Module):
    def __init__(self, channels: int, embed_dim: int, pools: int, neurons: NeuronFactory):
        super().__init__()
        stem = mark(nn.Conv2d(channels, embed_dim // 8, 3, 1, 1, bias=False), "stem")
        self.stem = Flat(stem, nn.BatchNorm2d(embed_dim // 8))
        widths = [embed_dim // 8, embed_dim // 4, embed_dim // 2, embed_dim, embed_dim]
        self.stages = nn.Sequential(*(
            nn.Sequential(neurons(), _conv_bn(widths[i], widths[i + 1], pool=i >= 4 - pools))
            for i in range(4)
        ))

    def forward(self, x: Tensor) -> Tensor:
        return self.stages(self.stem(x))


class Spikingformer(SpikingClassifier):
    def __init__(self, num_classes: int, sample_shape: tuple[int, ...], neurons: NeuronFactory,
                 embed_dim: int, depth: int, heads: int, hidden: int, pools: int):
        super().__init__(NAME, sample_shape, embed_dim, num_classes)
        self.tokenizer = Tokenizer(sample_shape[0], embed_dim, pools, neurons)
        self.blocks = nn.Sequential(*(
            TransformerBlock(SpikingSelfAttention(embed_dim, heads, neurons, pre_activation=True),
                             ConvMLP(embed_dim, hidden, neurons, pre_activation=True))
            for _ in range(depth)
        ))

    def features(self, x: Tensor) -> Tensor:
        return tokens_mean(self.blocks(self.tokenizer(x)))


def build_spikingformer(*, num_classes: int, sample_shape: tuple[int, ...], neuron: str = "lif",
                        neuron_options: dict[str, Any] | None = None, embed_dim: int = 384, depth: int = 4,
                        heads: int = 8, mlp_ratio: float = 4.0, pools: int | None = None) -> nn.Module:
    """Spikingformer-`depth`-`embed_dim`; `pools` 2x downsamplings in the tokenizer (None: by size)."""
    num_classes, shape = check_common(NAME, num_classes, sample_shape)
    embed_dim, depth, heads, hidden = check_transformer(NAME, shape, embed_dim, depth, heads, mlp_ratio)
    if embed_dim % heads:
        raise ConfigError(f"model {NAME!r}: embed_dim ({embed_dim}) must be divisible by heads ({heads})")
    pools = auto_pools(NAME, pools, min(shape[1:]), limit=4)
    return Spikingformer(num_classes, shape, NeuronFactory(neuron, neuron_options), embed_dim, depth, heads,
                         hidden, pools)


@hookimpl
def tawq_register_models(register):
    register("spikingformer", build_spikingformer)
