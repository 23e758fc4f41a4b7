"""Every Triton launch runs with its tensor's CUDA device current (GPU stand-in: no GPU here).

The stand-in replaces torch's two device-exchange primitives with a simulated current index, so the
real `torch.cuda.device` context manager runs on this CPU-only machine; the kernels are replaced by
recorders that note the simulated current device at launch.
"""

from __future__ import annotations

import inspect
import re
from types import SimpleNamespace

import pytest
import torch

from tawq_core.plugin import NeuronDynamics
from tawq_plugins import device_guard
from tawq_plugins.neurons import fused
from tawq_plugins.quantizers import calcium_fused


class GpuStandIn:
    """Two simulated CUDA devices; `current` is what `torch.cuda.current_device()` would say."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch):
        self.current = 0
        monkeypatch.setattr(torch.cuda, "_exchange_device", self._exchange)
        monkeypatch.setattr(torch.cuda, "_maybe_exchange_device", self._exchange)

    def _exchange(self, index: int) -> int:
        previous = self.current
        if index >= 0:
            self.current = index
        return previous


def test_guard_makes_the_tensors_device_current_and_restores_it(monkeypatch):
    gpu = GpuStandIn(monkeypatch)
    on_cuda1 = SimpleNamespace(device=torch.device("cuda", 1))  # what the guard reads of a cuda:1 tensor
    with device_guard.on_device_of(on_cuda1):
        assert gpu.current == 1
    assert gpu.current == 0


def test_guard_is_a_no_op_for_cpu_tensors(monkeypatch):
    gpu = GpuStandIn(monkeypatch)
    with device_guard.on_device_of(torch.zeros(1)):  # Triton's CPU interpreter
        assert gpu.current == 0


class RecordingKernel:
    """Stands in for a @triton.jit kernel: ``kernel[grid](*args)`` records the device that was current."""

    def __init__(self, gpu: GpuStandIn):
        self.gpu, self.launches = gpu, []

    def __getitem__(self, grid):
        return lambda *args, **kwargs: self.launches.append(self.gpu.current)


@pytest.fixture
def cuda1(monkeypatch):
    """The launch sites see their tensors as living on cuda:1 (the tensors stay on the CPU)."""
    gpu = GpuStandIn(monkeypatch)
    real = device_guard.on_device_of

    def as_cuda1(tensor):
        assert isinstance(tensor, torch.Tensor)
        return real(SimpleNamespace(device=torch.device("cuda", 1)))

    for module in (fused, calcium_fused):
        monkeypatch.setattr(module, "on_device_of", as_cuda1)
    return gpu


def test_calcium_kernel_launches_on_the_tensors_device(cuda1, monkeypatch):
    kernel = RecordingKernel(cuda1)
    monkeypatch.setattr(calcium_fused, "_calcium_kernel", kernel, raising=False)
    calcium_fused.run(torch.zeros(3, 4), timesteps=2, levels=1, jacobian=True, tau=2.0, theta=0.5, slope=4.0)
    assert kernel.launches == [1] and cuda1.current == 0


def test_neuron_kernels_launch_on_the_tensors_device(cuda1, monkeypatch):
    forward, backward = RecordingKernel(cuda1), RecordingKernel(cuda1)
    monkeypatch.setattr(fused, "_forward_kernel", forward, raising=False)
    monkeypatch.setattr(fused, "_backward_kernel", backward, raising=False)
    d = NeuronDynamics("div", 2.0, decay_input=True, v_threshold=1.0, v_reset=0.0, detach_reset=False,
                       surrogate="sigmoid", alpha=4.0)
    x = torch.zeros(2, 3)
    _, charged = fused.run(d, x, 2.0, keep_h=True)
    fused.bptt(d, torch.zeros(2, 3), charged, x, 2.0, need_k=False)
    assert forward.launches == [1] and backward.launches == [1] and cuda1.current == 0


def test_every_triton_launch_site_is_guarded():
    """A new ``kernel[grid](...)`` launch without the guard fails here, not on someone's second GPU."""
    for module in (fused, calcium_fused):
        source = inspect.getsource(module)
        launches = re.findall(r"\n( *)_\w+_kernel\[", source)
        guards = re.findall(r"\n( *)with on_device_of\(", source)
        assert launches and len(launches) == len(guards), module.__name__
        nested = [len(launch) == len(guard) + 4 for launch, guard in zip(launches, guards, strict=True)]
        assert all(nested), module.__name__
