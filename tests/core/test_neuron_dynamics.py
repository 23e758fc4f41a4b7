"""Every implementation of the neuron equations against the one description (`NeuronDynamics.run`).

The eager loop, the fused numba kernel, the autograd path of the module, the NIR runner and the ONNX
file (onnxruntime) must give the description's spikes bit for bit, for a tau that is a power of two and
one that is not (tau = 3: 1/3 is inexact, so division and multiplication by the reciprocal differ),
hard and soft reset, decay_input on and off, IF and PLIF. The Triton kernel runs only on CUDA or under
``TRITON_INTERPRET=1`` with Triton installed; elsewhere its case is skipped, and its constants are
checked below without running it.
"""

from __future__ import annotations

import nir
import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

import tawq_core
from tawq_core.export import run_nir
from tawq_core.plugin import NeuronDynamics
from tawq_plugins.neurons import cpu_fused, dynamics, fused

CASES = [("lif", {"tau": tau, "v_reset": v_reset, "decay_input": decay_input})
         for tau in (2.0, 3.0) for v_reset in (0.0, None) for decay_input in (True, False)]
CASES += [("lif", {"tau": 3.0, "v_reset": -0.25, "v_threshold": 0.8}),  # rest != 0 enters the charge
          ("plif", {"tau": 3.0, "v_reset": 0.0}), ("plif", {"tau": 3.0, "v_reset": None, "decay_input": False}),
          ("if", {"v_reset": 0.0}), ("if", {"v_reset": None})]


def _eager(neuron, x, tmp_path):
    return dynamics._run(neuron.dynamics, x, neuron.leak_constant(), keep_h=False)[0]


def _fused(kernels):
    """A fused kernel module (numba `cpu_fused`, Triton `fused`), skipped where it cannot run this input."""
    def run(neuron, x, tmp_path):
        why = kernels.unsupported(neuron.dynamics, x)
        if why:
            pytest.skip(why)
        with torch.no_grad():
            return kernels.run(neuron.dynamics, x, neuron.leak_constant(), keep_h=False)[0]
    return run


_numba, _triton = _fused(cpu_fused), _fused(fused)


def _module(neuron, x, tmp_path):
    return neuron(x.clone().requires_grad_()).detach()  # the training path: autograd Function + kernels


def _nir(neuron, x, tmp_path):
    tawq_core.export(nn.Sequential(neuron).eval(), "nir", tmp_path / "n.nir", example=x, verify=False)
    return run_nir(nir.read(str(tmp_path / "n.nir")), x)


def _onnx(neuron, x, tmp_path):
    tawq_core.export(nn.Sequential(neuron).eval(), "onnx", tmp_path / "n.onnx", example=x, verify=False)
    session = ort.InferenceSession(str(tmp_path / "n.onnx"))
    return torch.from_numpy(session.run(None, {session.get_inputs()[0].name: x.numpy()})[0])


IMPLEMENTATIONS = {"eager": _eager, "numba": _numba, "triton": _triton, "module": _module, "nir": _nir,
                   "onnx": _onnx}


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("kind, options", CASES)
def test_every_implementation_follows_the_description(implementation, kind, options, tmp_path):
    neuron = tawq_core.create("neuron", kind, **options)
    spec = neuron.describe_dynamics()
    x = torch.randn(6, 2, 300, generator=torch.Generator().manual_seed(len(options))) * 1.5 + 0.6
    expected = spec.run(x)
    assert 0.05 < expected.mean().item() < 0.95  # both regimes exercised
    got = IMPLEMENTATIONS[implementation](neuron, x, tmp_path)
    assert torch.equal(got, expected)


def test_kernel_constants_come_from_the_description():
    soft = NeuronDynamics("div", 3.0, decay_input=False, v_reset=None)
    assert (soft.leak_id, soft.hard, soft.reset_value, soft.rest) == (1, False, 0.0, 0.0)
    assert soft.kernel_k() == 3.0 and soft.kernel_k(reciprocal=True) == float(np.float32(1) / np.float32(3))
    _, k_value, flags = fused._launch_args(soft, 3.0, torch.zeros(1))  # off CUDA the kernel divides
    assert k_value == 3.0 and flags == {"LEAK": 1, "DECAY_INPUT": False, "HARD": False, "RECIPROCAL": False}
    hard = NeuronDynamics("mul", 0.25, v_reset=-0.5)
    assert (hard.leak_id, hard.reset_value, hard.rest, hard.kernel_k(reciprocal=True)) == (2, -0.5, -0.5, 0.25)
    assert NeuronDynamics("none", None).kernel_k() == 1.0
    # why CUDA kernels need the reciprocal form: x * (1/tau) is x / tau only for a power-of-two tau
    x = torch.rand(10_000, generator=torch.Generator().manual_seed(0))
    assert not torch.equal(x * soft.kernel_k(reciprocal=True), x / 3.0)
    assert torch.equal(x * NeuronDynamics("div", 2.0).kernel_k(reciprocal=True), x / 2.0)

