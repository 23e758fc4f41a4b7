"""Resident memory cross-check: the RSS a fresh process grows by over load + first forward of a model.

`resident_bytes` counts the tensors a module can reach; a hidden cache (an unpacked float copy kept by a
kernel, a lookup table outside the module) would not show there but would show here. The parent saves
the fp32 weights, then one child process per network loads each form twice: the first time warms up
everything that is loaded once per process (imports, compiled kernels, torch's allocator pools), the
second is measured: RSS after ``gc`` and ``malloc_trim`` before loading, and after loading and one batch-1
forward whose output is dropped. Freed activations go back to the OS (``malloc_trim``); what stays is
what the model keeps.

    python benchmarks/speed_rss.py SPEC.json   # the child; prints one JSON line
"""

from __future__ import annotations

import ctypes
import gc
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

SPIKE = "fp32 (spike-driven)"


def probe(fp32: nn.Module, name: str, options: dict[str, Any], files: dict[str, str | None], folder: Path,
          x1: Tensor) -> dict[str, Any]:
    """variant -> {"growth_bytes": ...} measured in a child process; {"error": ...} if the child failed."""
    from safetensors.torch import save_file

    weights = folder / f"{name}-fp32.safetensors"
    save_file({k: v.contiguous() for k, v in fp32.state_dict().items()}, str(weights))
    torch.save(x1, folder / f"{name}-x1.pt")
    spec = {"model": name, "options": options, "fp32": str(weights), "files": files,
            "input": str(folder / f"{name}-x1.pt"), "threads": torch.get_num_threads()}
    (folder / f"{name}-rss.json").write_text(json.dumps(spec, default=list))
    proc = subprocess.run([sys.executable, __file__, str(folder / f"{name}-rss.json")], capture_output=True,
                          text=True, timeout=300)
    if proc.returncode != 0:
        return {k: {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "failed"}
                for k in files}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _settle() -> None:
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _load(spec: dict[str, Any], variant: str) -> nn.Module:
    from safetensors.torch import load_file

    import tawq_core

    path = spec["files"].get(variant)
    if path:
        return tawq_core.load_packed(path)
    model = tawq_core.create("model", spec["model"], **spec["options"])
    model.load_state_dict(load_file(spec["fp32"]))
    model.eval()
    if variant == SPIKE:
        from tawq_core.deploy import spike_driven

        deployed = spike_driven(model, backend="cpu")
        del model
        return deployed
    return model


def _child(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    torch.set_num_threads(spec["threads"])
    x1 = torch.load(spec["input"])
    result = {}
    for variant in spec["files"]:
        for measured in (False, True):
            _settle()
            before = _rss()
            net = _load(spec, variant)
            with torch.inference_mode():
                out = net(x1)
            del out
            _settle()
            after = _rss()
            del net
            if measured:
                result[variant] = {"growth_bytes": after - before}
    print(json.dumps(result))


if __name__ == "__main__":
    _child(sys.argv[1])
