"""Non-finite numbers (NaN, inf) are caught where they enter, in one line that names where.

One NaN pixel in one training sample is enough to turn a network's weights and BatchNorm statistics
into NaN; its neurons then stop spiking, the loss stays finite and training "succeeds" at chance
accuracy. One NaN latent weight zeroes every effective weight of a quantized layer. And a comparison
with a NaN is never true, so a check written ``diff > atol`` passes for NaN outputs. Every entry point
(dataset batches, checkpoints, weights after optimizer steps, export verification) uses the helpers
here, so the message and the rule ("NaN never compares equal") are the same everywhere.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import torch
from torch import Tensor

from tawq_core.plugin_api.errors import ConfigError, TawqError


def _is_float(t: Tensor) -> bool:
    return t.is_floating_point() or t.is_complex()


def nonfinite_names(tensors: Mapping[str, Tensor] | Iterable[tuple[str, Tensor]]) -> list[str]:
    """Names of the floating-point tensors that hold a NaN or an infinity (integer tensors cannot)."""
    items = tensors.items() if isinstance(tensors, Mapping) else tensors
    return [name for name, t in items
            if isinstance(t, Tensor) and _is_float(t) and t.numel() and not bool(torch.isfinite(t).all())]


def counts(t: Tensor) -> str:
    """``3 NaN, 0 inf of 1,024 values``."""
    return f"{int(torch.isnan(t).sum()):,} NaN, {int(torch.isinf(t).sum()):,} inf of {t.numel():,} values"


def describe(name: str, t: Tensor) -> str:
    """``'body.0.weight' (3 NaN, 0 inf of 1,024 values)``: enough to find the bad entry."""
    return f"{name!r} ({counts(t)})"


def require_finite(tensors: Mapping[str, Tensor], where: str, todo: str,
                   error: type[TawqError] = ConfigError) -> None:
    """Raise `error` naming the first non-finite tensor: ``{where}: tensor ... holds NaN/inf; {todo}``."""
    bad = nonfinite_names(tensors)
    if bad:
        more = f" (and {len(bad) - 1} more tensor(s))" if len(bad) > 1 else ""
        raise error(f"{where}: tensor {describe(bad[0], tensors[bad[0]])} is not finite{more}; {todo}")


def max_abs_difference(got: Tensor | np.ndarray, expected: Tensor | np.ndarray) -> float:
    """Largest absolute difference, where a NaN or inf on either side counts as infinitely far: NaN never
    compares equal, so a verification written ``difference > atol`` cannot pass for NaN outputs."""
    a = np.asarray(got.detach().cpu() if isinstance(got, Tensor) else got, dtype=np.float64)
    b = np.asarray(expected.detach().cpu() if isinstance(expected, Tensor) else expected, dtype=np.float64)
    if a.size == 0 and b.size == 0:
        return 0.0
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        return float("inf")
    return float(np.abs(a - b).max())


def nonfinite_outputs(got: Tensor | np.ndarray, expected: Tensor | np.ndarray, checker: str) -> str | None:
    """Why a verification cannot vouch for outputs holding NaN/inf (which side has them), or None."""
    sides = []
    for label, value in (("the model", expected), (checker, got)):
        array = np.asarray(value.detach().cpu() if isinstance(value, Tensor) else value, dtype=np.float64)
        if array.size and not np.isfinite(array).all():
            sides.append(label)
    if not sides:
        return None
    return (f"{' and '.join(sides)} {'output' if len(sides) > 1 else 'outputs'} NaN/inf, so the outputs cannot be "
            "verified (NaN never compares equal)")
