"""Every built-in backend passes tawq_core.testing.check_backend: available ones fully, the others by
saying why they are unavailable (no GPU or NPU here: those are checked for their refusal only)."""

from __future__ import annotations

import pytest

import tawq_core
from tawq_core.testing import check_backend


@pytest.mark.parametrize("name", tawq_core.list_plugins("backend"))
def test_builtin_backend_passes_the_conformance_check(name):
    report = check_backend(name)
    available = tawq_core.create("backend", name).is_available().available
    assert bool(report.notes) != available  # unavailable: noted as such; available: everything checked


def test_cpu_is_checked_in_full():
    assert not check_backend("cpu").notes
