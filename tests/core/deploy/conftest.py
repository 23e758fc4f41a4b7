"""One torch thread for the deployed-form tests (helpers live in deploy_models.py)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _single_thread(one_thread):
    """Every test here runs on one torch thread (the shared `one_thread` fixture of tests/conftest.py)."""


@pytest.fixture(autouse=True)
def _int8_gemm(monkeypatch):
    """The int8 kernels under test whatever this machine's probe would pick (without int8 dot-product
    instructions it picks float32 GEMM; `test_float32_gemm_choice_is_exact_too` covers that path)."""
    from tawq_backends.kernels.gemm_choice import ENV, choice

    monkeypatch.setenv(ENV, "on")
    choice.cache_clear()
    yield
    choice.cache_clear()
