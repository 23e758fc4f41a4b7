"""A spikingjelly network (multi-step layers, SeqToANNContainer, LIFNode) through quantize -> train -> export."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import tawq_core
from tawq_core.nn.quantization import quantized_layers

sj = pytest.importorskip("spikingjelly.activation_based")
from spikingjelly.activation_based import functional, layer, neuron  # noqa: E402

T = 4


class SJNet(nn.Module):
    """How spikingjelly users write a multi-step convolutional SNN; readout = mean firing of the last layer."""

    def __init__(self) -> None:
        super().__init__()
        lif = lambda: neuron.LIFNode(tau=2.0, detach_reset=True, step_mode="m")  # noqa: E731
        self.net = nn.Sequential(
            layer.Conv2d(1, 8, 3, padding=1, bias=False, step_mode="m"), layer.BatchNorm2d(8, step_mode="m"), lif(),
            layer.SeqToANNContainer(nn.Conv2d(8, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16)), lif(),
            layer.Conv2d(16, 16, 3, padding=1, bias=False, step_mode="m"), layer.BatchNorm2d(16, step_mode="m"),
            lif(), layer.AvgPool2d(2, step_mode="m"), layer.Flatten(step_mode="m"),
            layer.Linear(16 * 4 * 4, 2, step_mode="m"),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        functional.reset_net(self)  # spikingjelly neurons keep state between calls
        return self.net(x).mean(0)


def _task(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two classes of 8x8 images: the bright blob sits in the top or the bottom half."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    x = 0.3 * torch.randn(n, 1, 8, 8, generator=g)
    for i in range(n):
        rows = slice(0, 4) if y[i] == 0 else slice(4, 8)
        x[i, 0, rows, 2:6] += 1.5
    return x.unsqueeze(0).repeat(T, 1, 1, 1, 1), y


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    model = SJNet()
    report = tawq_core.quantize(model, "tawq", T)
    x, y = _task(64, seed=0)
    opt = torch.optim.AdamW(model.parameters(), lr=5e-3)
    losses = []
    for step in range(20):
        idx = torch.arange(step * 16, step * 16 + 16) % 64
        loss = nn.functional.cross_entropy(model(x[:, idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return model.eval(), report, losses


def test_quantize_swaps_spikingjelly_layers(trained):
    model, report, _ = trained
    names = [n for n, _ in quantized_layers(model)]
    assert names == ["net.3.0", "net.5"]  # SeqToANNContainer conv and layer.Conv2d; first and last kept fp32
    assert {s.name for s in report.skipped} == {"net.0", "net.10"}


def test_training_lowers_the_loss(trained):
    _, _, losses = trained
    assert sum(losses[-5:]) / 5 < 0.8 * sum(losses[:5]) / 5


def test_onnx_nir_and_packed_exports(trained, tmp_path):
    import nir
    import onnxruntime as ort

    from tawq_core.export import run_nir

    model, _, _ = trained
    x, _ = _task(6, seed=1)
    with torch.no_grad():
        expected = model(x)
    onnx_report = tawq_core.export(model, "onnx", tmp_path / "sj.onnx", example=x[:, :2])
    got = ort.InferenceSession(str(tmp_path / "sj.onnx")).run(None, {"input": x.numpy()})[0]
    torch.testing.assert_close(torch.from_numpy(got), expected, rtol=0, atol=1e-5)
    assert onnx_report.max_abs_diff <= 1e-5

    tawq_core.export(model, "nir", tmp_path / "sj.nir", example=x[:, :2])
    graph = nir.read(str(tmp_path / "sj.nir"))
    kinds = [type(n).__name__ for n in graph.nodes.values()]
    assert kinds.count("LIF") == 3 and kinds.count("Conv2d") == 3 and "AvgPool2d" in kinds
    assert graph.nodes["net.2"].metadata["tawq"]["source"] == "spikingjelly:LIFNode"
    assert graph.nodes["net.5"].metadata["tawq"]["quantizer"] == "tawq"
    torch.testing.assert_close(run_nir(graph, x).mean(0), expected, rtol=0, atol=1e-5)

    tawq_core.export(model, "tawq", tmp_path / "sj.tawq")
    loaded = tawq_core.load_packed(tmp_path / "sj.tawq", model=SJNet(), deploy=False)
    with torch.no_grad():
        assert torch.equal(loaded(x), expected)


def test_single_step_mode_inside_stepwise_equals_multi_step():
    """spikingjelly's single-step mode calls every layer once per timestep on [B, ...]: inside
    `tawq_core.stepwise` it gives what multi-step mode gives on the whole [T, B, ...] sequence."""
    torch.manual_seed(0)
    lif = lambda: neuron.LIFNode(tau=2.0, step_mode="m")  # noqa: E731
    net = nn.Sequential(layer.Conv2d(1, 4, 3, padding=1, step_mode="m"), lif(),
                        layer.Conv2d(4, 4, 3, padding=1, step_mode="m"), lif(),
                        layer.Flatten(step_mode="m"), layer.Linear(4 * 8 * 8, 2, step_mode="m"))
    tawq_core.quantize(net, "tawq", T)
    x, _ = _task(3, seed=3)
    with torch.no_grad():
        functional.reset_net(net)
        expected = net(x)
        functional.set_step_mode(net, "s")
        functional.reset_net(net)
        with pytest.raises(tawq_core.ShapeError, match="stepwise"):
            net(x[0])  # a per-step call outside the block is refused
        functional.reset_net(net)
        with tawq_core.stepwise(net):
            got = torch.stack([net(x[t]) for t in range(T)])
    torch.testing.assert_close(got, expected)


def test_a_quantized_spikingjelly_model_deploys_and_loads_deployed(trained, tmp_path):
    """No tawq skeleton: the quantized layers inside the user's spikingjelly net deploy in place, in memory and
    from a packed file loaded into the user's own class, with the kernels named and logits unchanged."""
    from tawq_core.deploy import deploy, kernels_used

    model, _, _ = trained
    x, _ = _task(6, seed=1)
    tawq_core.export(model, "tawq", tmp_path / "sj.tawq")
    with torch.no_grad():
        expected = model(x)
        for deployed in (deploy(model), tawq_core.load_packed(tmp_path / "sj.tawq", model=SJNet())):
            got = deployed(x)
            assert set(kernels_used(deployed)) == {"net.3.0", "net.5"}
            assert all(k.startswith("cpu.") for k in kernels_used(deployed).values())
            assert (got - expected).abs().max() <= 1e-4 * expected.abs().max()
            assert torch.equal(got.argmax(1), expected.argmax(1))
