"""Spiking transformer blocks shared by `spikingformer` and `qkformer`.

Tokens travel as feature maps ``[T, B, C, H, W]``; attention flattens them to ``[T, B, C, N]``. All
projections are 1x1 convolutions followed by BatchNorm (no LayerNorm, no softmax), so every matrix
product acts on binary spikes. Two activation orders exist in the literature and both are here:

* pre-activation (Spikingformer): neuron -> conv -> BN; the residual stream carries real values and
  every conv sees spikes;
* post-activation (QKFormer): conv -> BN -> neuron; the residual stream carries spike counts.

The attention neuron fires at ``v_threshold = 0.5`` (the reference's choice), whatever the neuron plugin.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from tawq_core import ConfigError
from tawq_plugins.models.blocks import Flat, NeuronFactory, positive_float, positive_int

ATTENTION_SCALE = 0.125
ATTENTION_THRESHOLD = 0.5


def _projection(dim: int, bias: bool) -> Flat:
    return Flat(nn.Conv1d(dim, dim, 1, bias=bias), nn.BatchNorm1d(dim))


class ConvMLP(nn.Module):
    """Two 1x1 conv + BN layers (``dim -> hidden -> dim``) with spiking activations."""

    def __init__(self, dim: int, hidden: int, neurons: NeuronFactory, pre_activation: bool):
        super().__init__()
        self.pre_activation = pre_activation
        self.fc1 = Flat(nn.Conv2d(dim, hidden, 1), nn.BatchNorm2d(hidden))
        self.sn1 = neurons()
        self.fc2 = Flat(nn.Conv2d(hidden, dim, 1), nn.BatchNorm2d(dim))
        self.sn2 = neurons()

    def forward(self, x: Tensor) -> Tensor:
        if self.pre_activation:
            return self.fc2(self.sn2(self.fc1(self.sn1(x))))
        return self.sn2(self.fc2(self.sn1(self.fc1(x))))


class SpikingSelfAttention(nn.Module):
    """Spiking self-attention: Q, K, V spikes from 1x1 conv + BN + neuron; ``Q·Kᵀ·V·0.125`` -> neuron
    (v_th 0.5) -> 1x1 conv + BN. No softmax: products of spikes are counts, so the two ways to
    associate the product give identical results and the cheaper one is used (``Q(KᵀV)`` when there are
    more tokens than channels per head).
    """

    def __init__(self, dim: int, heads: int, neurons: NeuronFactory, pre_activation: bool):
        super().__init__()
        self.heads, self.pre_activation = heads, pre_activation
        self.input_sn = neurons() if pre_activation else None
        self.q, self.k, self.v = (_projection(dim, bias=False) for _ in range(3))
        self.q_sn, self.k_sn, self.v_sn = neurons(), neurons(), neurons()
        self.attn_sn = neurons(v_threshold=ATTENTION_THRESHOLD)
        self.proj = _projection(dim, bias=True)
        self.output_sn = None if pre_activation else neurons()

    def _heads(self, x: Tensor) -> Tensor:
        """``[T, B, C, N]`` -> ``[T, B, heads, N, C/heads]``."""
        t, b, c, n = x.shape
        return x.transpose(-1, -2).reshape(t, b, n, self.heads, c // self.heads).transpose(2, 3)

    def forward(self, x: Tensor) -> Tensor:
        if self.input_sn is not None:
            x = self.input_sn(x)
        tokens = x.flatten(3)
        q = self._heads(self.q_sn(self.q(tokens)))
        k = self._heads(self.k_sn(self.k(tokens)))
        v = self._heads(self.v_sn(self.v(tokens)))
        n, d = q.shape[-2:]
        attn = q @ (k.transpose(-2, -1) @ v) if n > d else (q @ k.transpose(-2, -1)) @ v
        out = (attn * ATTENTION_SCALE).transpose(3, 4).reshape(tokens.shape)
        out = self.proj(self.attn_sn(out))
        if self.output_sn is not None:
            out = self.output_sn(out)
        return out.reshape(x.shape)


class TokenQKAttention(nn.Module):
    """QKFormer's Q-K token attention: linear in the number of tokens.

    Per head, the query spikes summed over channels give each token a score; a neuron (v_th 0.5) turns
    the scores into a binary token mask, which gates the key spikes. Then 1x1 conv + BN + neuron.
    """

    def __init__(self, dim: int, heads: int, neurons: NeuronFactory):
        super().__init__()
        self.heads = heads
        self.q, self.k = _projection(dim, bias=False), _projection(dim, bias=False)
        self.q_sn, self.k_sn = neurons(), neurons()
        self.attn_sn = neurons(v_threshold=ATTENTION_THRESHOLD)
        self.proj = _projection(dim, bias=True)
        self.output_sn = neurons()

    def forward(self, x: Tensor) -> Tensor:
        tokens = x.flatten(3)
        t, b, c, n = tokens.shape
        q = self.q_sn(self.q(tokens)).reshape(t, b, self.heads, c // self.heads, n)
        k = self.k_sn(self.k(tokens)).reshape(t, b, self.heads, c // self.heads, n)
        mask = self.attn_sn(q.sum(3, keepdim=True))
        out = self.output_sn(self.proj((mask * k).reshape(t, b, c, n)))
        return out.reshape(x.shape)


class TransformerBlock(nn.Module):
    """``x + attention(x)``, then ``x + mlp(x)``."""

    def __init__(self, attention: nn.Module, mlp: nn.Module):
        super().__init__()
        self.attn, self.mlp = attention, mlp

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(x)
        return x + self.mlp(x)


def check_transformer(model: str, shape: tuple[int, ...], embed_dim: Any, depth: Any, heads: Any,
                      mlp_ratio: Any, min_depth: int = 1) -> tuple[int, int, int, int]:
    """Validate the options both transformers share; returns embed_dim, depth, heads, mlp hidden size."""
    if len(shape) != 3:
        raise ConfigError(f"model {model!r} needs image-like samples [C, H, W], got sample_shape {shape}; "
                          "use 'sew-resnet' or 'mlp' for sequences")
    embed_dim = positive_int(model, "embed_dim", embed_dim)
    depth = positive_int(model, "depth", depth)
    heads = positive_int(model, "heads", heads)
    ratio = positive_float(model, "mlp_ratio", mlp_ratio)
    if embed_dim % 8:
        raise ConfigError(f"model {model!r}: embed_dim must be a multiple of 8 (the tokenizer starts at "
                          f"embed_dim/8 channels), got {embed_dim}")
    if depth < min_depth:
        raise ConfigError(f"model {model!r}: depth must be >= {min_depth}, got {depth}")
    return embed_dim, depth, heads, max(1, int(embed_dim * ratio))
