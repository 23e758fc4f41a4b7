"""Every built-in quantizer passes tawq_core.testing.check_quantizer, the checker plugin authors use."""

from __future__ import annotations

import pytest

import tawq_core
from tawq_core.testing import check_quantizer


@pytest.mark.parametrize("name", tawq_core.list_plugins("quantizer"))
def test_builtin_quantizer_passes_the_conformance_check(name):
    report = check_quantizer(name)
    assert report.checks and not report.notes


def test_options_reach_the_factory_and_config():
    assert "config()" in check_quantizer("mtawq", bits=2).checks[0]
