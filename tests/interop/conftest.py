"""Interop tests run torch single-threaded: on a loaded 2-core machine, two OpenMP threads per op can make
small training loops many times slower (threads spin-wait for each other)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
