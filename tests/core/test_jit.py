"""Kernel infrastructure: which kernel ran (and why a faster one did not) reaches provenance; one pool."""

from __future__ import annotations

import pytest
import torch

from tawq_core import create, jit
from tawq_core.bench.provenance import provenance


@pytest.fixture
def fresh_record(monkeypatch):
    monkeypatch.setattr(jit, "_KERNEL_USE", {})


def test_each_choice_is_counted_with_its_reason(fresh_record):
    assert jit.use_kernel("k", "") and not jit.use_kernel("k", "float64 tensor") and jit.use_kernel("k", "")
    assert jit.kernel_use() == {"k": {"not run: float64 tensor": 1, "ran": 2}}
    assert provenance({})["kernels"] == jit.kernel_use()


def test_the_tawq_quantizer_records_its_cpu_kernel(fresh_record, monkeypatch):
    quantizer = create("quantizer", "tawq")
    quantizer.weights(torch.randn(8, 6), 4)
    expected = f"not run: {jit.UNAVAILABLE}" if jit.UNAVAILABLE else "ran"
    assert jit.kernel_use() == {"calcium (numba, CPU)": {expected: 1}}
    monkeypatch.setenv("TAWQ_QUANT_KERNEL", "torch")
    quantizer.weights(torch.randn(8, 6), 4)
    assert "not run: TAWQ_QUANT_KERNEL=torch" in jit.kernel_use()["calcium (numba, CPU)"]


def test_one_pool_grows_and_is_shared(monkeypatch):
    monkeypatch.setattr(jit, "_POOL", None)
    small = jit.worker_pool(2)
    assert jit.worker_pool(1) is small
    large = jit.worker_pool(3)
    assert large is not small and jit.worker_pool(2) is large
    assert sorted(large.map(abs, [-1, -2, -3])) == [1, 2, 3]
    large.shutdown()
