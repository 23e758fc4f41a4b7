"""`DeployedLayer`: an inference conv/linear layer holding only a packed weight form, bias and geometry.

It accepts what the fake-quant layer it replaces accepts (same time-major contract): ``[T, B, ...]`` or
the flattened ``[T·B, ...]`` for convs, ``[..., features]`` with T-major leading dims for linear layers.
Rows ``[t·R, (t+1)·R)`` of the flattened input belong to timestep t (R = rows / T), which selects the
weight step of temporal weights; static weights serve every row.
"""

from __future__ import annotations

import math

from torch import Tensor, nn

from tawq_core.deploy.forms import WeightForm
from tawq_core.deploy.geometry import Geometry, LayerKind
from tawq_core.errors import ShapeError
from tawq_core.roles import ROLE_ATTRIBUTE

NOT_RUN = "not run yet"


class DeployedLayer(nn.Module):
    def __init__(self, geometry: Geometry, form: WeightForm, bias: Tensor | None, timesteps: int, source: str):
        super().__init__()
        self.geometry, self.form, self.timesteps, self.source = geometry, form, timesteps, source
        self.register_buffer("bias", None if bias is None else bias.detach().to("cpu", copy=True).float())
        self.last_kernel = NOT_RUN  # the path the last forward ran: what `kernels_used` reports

    @classmethod
    def like(cls, template: nn.Module, form: WeightForm, timesteps: int, source: str) -> DeployedLayer:
        layer = cls(Geometry.of(template), form, getattr(template, "bias", None), timesteps, source)
        if hasattr(template, ROLE_ATTRIBUTE):
            setattr(layer, ROLE_ATTRIBUTE, getattr(template, ROLE_ATTRIBUTE))
        return layer.to(template.weight.device)

    def _describe(self) -> str:
        return f"deployed {self.geometry.kind.value} ({self.source}, timesteps={self.timesteps})"

    def _step_rows(self, rows: int) -> int:
        if not self.form.temporal:
            return rows
        if rows % self.timesteps:
            raise ShapeError(f"{self._describe()} got {rows} rows, not a multiple of timesteps={self.timesteps}; "
                             "feed T-major [T, B, ...] or [T*B, ...] input")
        return rows // self.timesteps

    def forward(self, x: Tensor) -> Tensor:
        g = self.geometry
        dims = g.kind.sample_dims
        channel = x.shape[-1] if g.kind is LayerKind.LINEAR else (x.shape[-dims] if x.dim() > dims else None)
        if x.dim() < dims + (g.kind is not LayerKind.LINEAR) or channel != g.in_channels:
            raise ShapeError(f"{self._describe()} expects {g.in_channels} input channels in "
                             f"[T, B, C, ...] or [T*B, C, ...], got shape {tuple(x.shape)}")
        lead = x.shape[:-dims]
        rows = x.reshape(math.prod(lead), *x.shape[-dims:])
        y, self.last_kernel = self.form.run(rows, g, self._step_rows(rows.shape[0]), self.bias)
        return y.reshape(*lead, *y.shape[1:])

    def extra_repr(self) -> str:
        g = self.geometry
        return (f"{g.kind.value}, {g.in_channels}->{g.out_channels}, kernel={g.kernel}, stride={g.stride}, "
                f"source={self.source}, form={type(self.form).__name__}, timesteps={self.timesteps}")
