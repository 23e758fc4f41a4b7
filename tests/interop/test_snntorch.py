"""An snntorch network (snn.Leaky stepped in a time loop) through quantize -> train -> export."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import tawq_core
from tawq_core.export import ExportError
from tawq_core.nn.quantization import quantized_layers

snn = pytest.importorskip("snntorch")

T = 6


class LeakyLoop(nn.Module):
    """snntorch's idiom: a single-step `snn.Leaky` driven by a Python loop over time, fresh membrane per call."""

    def __init__(self, beta: float) -> None:
        super().__init__()
        self.lif = snn.Leaky(beta=beta)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mem = self.lif.init_leaky()
        spikes = []
        for t in range(x.shape[0]):
            spk, mem = self.lif(x[t], mem)
            spikes.append(spk)
        return torch.stack(spikes)


class SnnNet(nn.Module):
    """Linear layers act on the whole [T, B, features] sequence; the readout is the mean over time."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(12, 32), LeakyLoop(0.8), nn.Linear(32, 32), LeakyLoop(0.8),
                                  nn.Linear(32, 32), LeakyLoop(0.8), nn.Linear(32, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).mean(0)


def _task(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Three classes of 12-channel inputs: each class drives its own block of four channels."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    x = 0.3 * torch.randn(T, n, 12, generator=g)
    for i in range(n):
        x[:, i, 4 * y[i]: 4 * y[i] + 4] += 1.0
    return x, y


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    model = SnnNet()
    report = tawq_core.quantize(model, "tawq", T)
    x, y = _task(96, seed=0)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for step in range(25):
        idx = torch.arange(step * 16, step * 16 + 16) % 96
        loss = nn.functional.cross_entropy(model(x[:, idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return model.eval(), report, losses


def test_quantize_swaps_the_hidden_linears(trained):
    model, report, _ = trained
    assert [n for n, _ in quantized_layers(model)] == ["body.2", "body.4"]
    assert {s.name for s in report.skipped} == {"body.0", "body.6"}


def test_training_lowers_the_loss(trained):
    _, _, losses = trained
    assert sum(losses[-5:]) / 5 < 0.8 * sum(losses[:5]) / 5


def test_onnx_and_packed_exports(trained, tmp_path):
    import onnxruntime as ort

    model, _, _ = trained
    x, _ = _task(5, seed=1)
    with torch.no_grad():
        expected = model(x)
    assert (expected.max(0).values - expected.min(0).values).max() > 1e-3
    tawq_core.export(model, "onnx", tmp_path / "snn.onnx", example=x[:, :2])
    got = ort.InferenceSession(str(tmp_path / "snn.onnx")).run(None, {"input": x.numpy()})[0]
    torch.testing.assert_close(torch.from_numpy(got), expected, rtol=0, atol=1e-5)

    tawq_core.export(model, "tawq", tmp_path / "snn.tawq")
    loaded = tawq_core.load_packed(tmp_path / "snn.tawq", model=SnnNet(), deploy=False)
    with torch.no_grad():
        assert torch.equal(loaded(x), expected)


def test_nir_refuses_the_python_time_loop(trained, tmp_path):
    model, _, _ = trained
    with pytest.raises(ExportError, match="NIR cannot express"):
        tawq_core.export(model, "nir", tmp_path / "snn.nir", example=_task(2, seed=2)[0])


def test_per_step_calls_run_inside_stepwise():
    """snntorch's other idiom: the whole network is called once per timestep on [B, ...]. Temporal weights
    need `tawq_core.stepwise`, which hands weight set t to each layer's t-th call."""
    from snntorch import utils

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 8), snn.Leaky(beta=0.9, init_hidden=True), nn.Linear(8, 8),
                        snn.Leaky(beta=0.9, init_hidden=True), nn.Linear(8, 2))
    tawq_core.quantize(net, "tawq", T)
    x = 2 * torch.rand(T, 3, 5)
    with pytest.raises(tawq_core.ShapeError, match="stepwise"):
        net(x[0])
    utils.reset(net)
    with torch.no_grad(), tawq_core.stepwise(net):
        got = torch.stack([net(x[t]) for t in range(T)])
    utils.reset(net)
    w = net[2].effective_weight().detach()
    with torch.no_grad():
        ref = torch.stack([net[4](net[3](nn.functional.linear(net[1](net[0](x[t])), w[t], net[2].bias)))
                           for t in range(T)])
    torch.testing.assert_close(got, ref)
