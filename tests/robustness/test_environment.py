"""#19 class 6: an optional speed-up never costs a built-in. With a read-only install and an unwritable
HOME, numba finds no folder for its kernel cache; the kernels then compile uncached, with one warning.

A fresh interpreter is the point here (the failure was at import time). Running as root, no folder
can be made unwritable for real, so the interpreter is started with numba's cache locators removed:
exactly the state numba is in when none of them finds a writable place (a stand-in for the read-only
filesystem, named as such)."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings

import pytest
from robustness_helpers import cli_env

pytest.importorskip("numba")

NO_CACHE_LOCATION = """
import numba.core.caching as caching
caching.CacheImpl._locator_classes = []  # stand-in: read-only install, unwritable HOME, no NUMBA_CACHE_DIR
import json, warnings
warnings.simplefilter("always")
with warnings.catch_warnings(record=True) as caught:
    import torch
    from tawq_core import create, get_registry
    quantizers = get_registry().names("quantizer")
    w = create("quantizer", "tawq").weights(torch.randn(8, 6), 4)  # the fused numba calcium kernel
    neuron = create("neuron", "lif")
    spikes = neuron(torch.rand(4, 2, 300) * 3)  # the fused numba neuron kernel
print(json.dumps({"quantizers": quantizers, "shape": list(w.shape), "spikes": float(spikes.sum()),
                  "warnings": [f"{type(c.message).__name__}: {c.message}" for c in caught]}))
"""


@pytest.mark.slow
def test_kernels_compile_uncached_with_one_warning_when_no_cache_folder_is_writable():
    result = subprocess.run([sys.executable, "-c", NO_CACHE_LOCATION], capture_output=True, text=True,
                            env=cli_env(), timeout=300)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.splitlines()[-1])
    assert "tawq" in report["quantizers"] and "mtawq" in report["quantizers"]  # no built-in lost
    assert report["shape"] == [4, 8, 6] and report["spikes"] > 0
    cache_warnings = [w for w in report["warnings"] if w.startswith("KernelCacheWarning")]
    assert len(cache_warnings) == 1, report["warnings"]
    assert "compile in every process" in cache_warnings[0] and "NUMBA_CACHE_DIR" in cache_warnings[0]


def test_the_wrapper_falls_back_only_for_the_cache(monkeypatch):
    import numba.core.caching as caching

    from tawq_core import jit

    monkeypatch.setattr(caching.CacheImpl, "_locator_classes", [])
    monkeypatch.setattr(jit, "_warned", [False])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")

        @jit.njit(cache=True)
        def add(a, b):
            return a + b

        @jit.njit(cache=True)
        def mul(a, b):
            return a * b

    assert add(2, 3) == 5 and mul(2, 3) == 6
    assert [type(c.message) for c in caught] == [jit.KernelCacheWarning]  # once per process, not per kernel
