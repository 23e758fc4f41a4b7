"""Tiny quantized models shared by the export tests (built once per module; tests never mutate them)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import tawq_core

T = 4
SIZES = {
    "mlp": ({"hidden": (24, 16)}, (1, 6, 6)),
    "sew-resnet": ({"layers": (1, 1), "width": 4}, (2, 8, 8)),
    "spikingformer": ({"embed_dim": 16, "depth": 1, "heads": 2, "pools": 1}, (3, 8, 8)),
}


def randomize_norms(model: nn.Module, seed: int = 0) -> None:
    """Give every BatchNorm non-trivial statistics, so exports that fold or convert BN are really tested."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            with torch.no_grad():
                m.running_mean.copy_(0.2 * torch.randn(m.num_features, generator=g))
                m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=g))
                m.weight.copy_(1.0 + 0.3 * torch.randn(m.num_features, generator=g))
                m.bias.copy_(0.2 * torch.randn(m.num_features, generator=g))


def build(name: str, quantizer: str | None = "tawq", seed: int = 0, **neuron: object) -> tuple[nn.Module, dict]:
    """(eval-mode model quantized with `quantizer` at T=4, the options that rebuild it)."""
    size, shape = SIZES[name]
    options = {"num_classes": 3, "sample_shape": shape, **size, **neuron}
    torch.manual_seed(seed)
    model = tawq_core.create("model", name, **options)
    randomize_norms(model, seed)
    if quantizer is not None:
        tawq_core.quantize(model, quantizer, T)
    return model.eval(), options


def inputs(model: nn.Module, batch: int, seed: int = 1) -> torch.Tensor:
    return 1.5 * torch.randn(T, batch, *model.sample_shape, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Single-threaded torch: on a loaded 2-core machine two OpenMP threads per op spin-wait for each other."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def mlp():
    return build("mlp")


@pytest.fixture(scope="module")
def sew():
    return build("sew-resnet")


@pytest.fixture(scope="session")
def tiny_model():
    """`build(name, quantizer="tawq", seed=0, **neuron_options)` as a fixture."""
    return build


@pytest.fixture(scope="session")
def make_inputs():
    return inputs
