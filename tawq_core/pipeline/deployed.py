"""Pipeline stage `deploy`: the runnable forms of a produced model on a backend, and what they ran.

A quantized model runs as its deployed form (`tawq_core.deploy`: packed weights only, tawq's kernels), so
what is timed is what quantization buys once a model runs, never the fake-quant training graph. The fp32
model has two forms: torch's dense eval (the reference every ratio is taken against, what users run
today) and `tawq_core.deploy.spike_driven` (the same fp32 weights, accumulated only for active inputs),
so a reader can tell what skipping silent inputs buys from what low bits buy. A backend that cannot
deploy gets the eval model instead, and the form says so.
"""

from __future__ import annotations

import copy
from collections import Counter
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from tawq_core.nn.layers import is_quantized
from tawq_core.nn.quantization import quantized_layers
from tawq_core.plugin_api.backend import Backend
from tawq_core.plugin_api.errors import TawqError

#: form names: the fp32 reference, the fp32 spike-driven variant, a quantized model's deployed form
TORCH_DENSE = "torch dense"
SPIKE_DRIVEN = "spike-driven"
DEPLOYED = "deployed"
#: kernel names recorded for torch's own layers (the fp32 reference, stem, head) and for fake-quant layers
TORCH_KERNEL = "torch dense fp32"
FAKE_QUANT_KERNEL = "torch fake-quant eval"


@dataclass(frozen=True)
class Form:
    """One runnable form of a model and how it was obtained."""

    name: str
    net: nn.Module
    note: str = ""  # why this form is not the one asked for (deploy unavailable on the backend)


def _eval_copy(model: nn.Module, device: torch.device) -> nn.Module:
    return copy.deepcopy(model).to(device).eval()


def deployed_forms(model: nn.Module, backend: Backend) -> list[Form]:
    """The forms to run `model` in on `backend`: [torch dense, spike-driven] for an unquantized model,
    [deployed] for a quantized one (the eval model, with the reason, where deploying fails)."""
    from tawq_core.deploy import deploy, spike_driven

    quantized = any(True for _ in quantized_layers(model))
    wanted = [(DEPLOYED, deploy)] if quantized else [(SPIKE_DRIVEN, spike_driven)]
    found = [] if quantized else [Form(TORCH_DENSE, _eval_copy(model, backend.device))]
    for name, convert in wanted:
        try:
            net = convert(model, backend=backend.name).to(backend.device).eval()
            found.append(Form(name, net))
        except TawqError as exc:
            if not quantized:
                continue  # the dense reference is already there; nothing else to stand in for
            net = _eval_copy(model, backend.device)
            found.append(Form(f"fake-quant eval ({DEPLOYED} unavailable)", net, note=str(exc)))
    return found


def layer_kernels(net: nn.Module) -> dict[str, str]:
    """Layer name -> the kernel its last forward ran: deployed layers name their path
    (`tawq_core.deploy.kernels_used`); torch's own conv/linear layers (stem, head, the fp32 reference) run
    torch's dense fp32 op, fake-quant layers torch's op on their effective weights."""
    from tawq_core.deploy import kernels_used

    found = kernels_used(net)
    for name, m in net.named_modules():
        if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d)) and name not in found:
            found[name] = FAKE_QUANT_KERNEL if is_quantized(m) else TORCH_KERNEL
    return found


def kernel_summary(kernels: dict[str, str]) -> str:
    """``"3× cpu.fp32-gemm.bitplanes, 2× torch dense fp32"``: how many layers ran each kernel."""
    counts = Counter(kernels.values())
    return ", ".join(f"{n}× {kernel}" for kernel, n in counts.most_common()) or "no conv/linear layers"


def agreement(reference: nn.Module, form: nn.Module, x: Tensor) -> dict[str, Any]:
    """How closely `form` reproduces `reference` on `x`: identical top-1 predictions and the largest logit
    difference relative to max |logit| (the exactness tests hold it under 1e-4)."""
    with torch.inference_mode():
        want, got = reference(x), form(x)
    scale = float(want.abs().max()) or 1.0
    return {"predictions_equal": int((want.argmax(-1) == got.argmax(-1)).sum()), "samples": int(want.shape[0]),
            "max_rel_diff": float((want - got).abs().max()) / scale}
