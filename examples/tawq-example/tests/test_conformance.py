"""The plugin's own tests: tawq's conformance checks, plus what only this plugin knows."""

import torch
from tawq_example.quantizer import PowerOfTwo

from tawq_core.testing import check_dataset, check_model, check_neuron, check_quantizer


def test_quantizer_meets_the_contract():
    check_quantizer("example-pow2")
    check_quantizer(PowerOfTwo, exponents=2)


def test_quantizer_values():
    w = torch.tensor([[1.0, -0.5, 0.26, 0.01]])
    assert PowerOfTwo(exponents=4).weights(w, 4).tolist() == [[1.0, -0.5, 0.25, 0.0]]


def test_neuron_meets_the_contract():
    check_neuron("example-if")


def test_dataset_meets_the_contract():
    check_dataset("example-pulses", timesteps=4)


def test_a_model_built_on_the_neuron_trains_quantizes_and_deploys():
    check_model("mlp", sample_shape=(12,), timesteps=4, quantizer="example-pow2", neuron="example-if",
                hidden=(16, 12), bn=False)
