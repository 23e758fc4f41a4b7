"""Tiny tensors gain nothing from intra-op threads, and on a shared 2-core runner they lose a lot."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _single_thread(one_thread):
    """Every test here runs on one torch thread (the shared `one_thread` fixture of tests/conftest.py)."""
