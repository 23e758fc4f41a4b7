"""Every built-in neuron passes tawq_core.testing.check_neuron and describes its dynamics for export."""

from __future__ import annotations

import pytest

import tawq_core
from tawq_core.testing import check_neuron


@pytest.mark.parametrize("name", tawq_core.list_plugins("neuron"))
def test_builtin_neuron_passes_the_conformance_check(name):
    report = check_neuron(name)
    assert not report.notes  # every built-in describes its dynamics
    assert any("describe_dynamics()" in check for check in report.checks)


@pytest.mark.parametrize("options", [{"v_reset": None}, {"decay_input": False, "tau": 3.0}])
def test_lif_variants_pass(options):
    check_neuron("lif", **options)
