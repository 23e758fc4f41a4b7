"""Layer roles: which layers a quantization policy must leave in full precision.

A model marks its stem (the first layer, which sees the analog input) and its classifier head;
`tawq_core.quantize` reads these marks, so policies work on any model without name matching.
"""

from __future__ import annotations

from enum import Enum

from torch import nn

ROLE_ATTRIBUTE = "tawq_role"


class LayerRole(str, Enum):
    STEM = "stem"
    HEAD = "head"


def mark(module: nn.Module, role: LayerRole | str) -> nn.Module:
    """Tag `module` with a role and return it, so it can be used inline when building a model."""
    setattr(module, ROLE_ATTRIBUTE, LayerRole(role).value)
    return module


def role_of(module: nn.Module) -> LayerRole | None:
    value = getattr(module, ROLE_ATTRIBUTE, None)
    return LayerRole(value) if value is not None else None
