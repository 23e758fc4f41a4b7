"""One torch thread for the deployed-form tests (helpers live in deploy_models.py)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _single_thread(one_thread):
    """Every test here runs on one torch thread (the shared `one_thread` fixture of tests/conftest.py)."""
