"""`DeployedLayer`: an inference conv/linear layer holding only a packed weight form, bias and geometry.

It accepts what the fake-quant layer it replaces accepts. Temporal weights follow the time layout
contract through `tawq_core.nn.time_layout.split_time`, exactly as the fake-quant layers do (``[T, B, ...]``,
``[T·B, ...]`` with B from the model's forward hook, one step per call inside `tawq_core.stepwise`);
static weights take any leading dims.
"""

from __future__ import annotations

import math

from torch import Tensor, nn

from tawq_core.deploy.forms import WeightForm
from tawq_core.deploy.geometry import Geometry, LayerKind
from tawq_core.nn.roles import ROLE_ATTRIBUTE
from tawq_core.nn.time_layout import layout_of, split_time
from tawq_core.plugin_api.errors import ShapeError

NOT_RUN = "not run yet"


class DeployedLayer(nn.Module):
    def __init__(self, geometry: Geometry, form: WeightForm, bias: Tensor | None, timesteps: int, source: str):
        super().__init__()
        self.geometry, self.form, self.timesteps, self.source = geometry, form, timesteps, source
        self.register_buffer("bias", None if bias is None else bias.detach().to("cpu", copy=True).float())
        self.last_kernel = NOT_RUN  # the path the last forward ran: what `kernels_used` reports
        if form.temporal:
            layout_of(self)  # its own layout until deploy/load attaches it to the model's

    @classmethod
    def like(cls, template: nn.Module, form: WeightForm, timesteps: int, source: str) -> DeployedLayer:
        layer = cls(Geometry.of(template), form, getattr(template, "bias", None), timesteps, source)
        if hasattr(template, ROLE_ATTRIBUTE):
            setattr(layer, ROLE_ATTRIBUTE, getattr(template, ROLE_ATTRIBUTE))
        return layer.to(template.weight.device)

    def _describe(self) -> str:
        return f"deployed {self.geometry.kind.value} ({self.source}, timesteps={self.timesteps})"

    def forward(self, x: Tensor) -> Tensor:
        g = self.geometry
        dims = g.kind.sample_dims
        channel = x.shape[-1] if g.kind is LayerKind.LINEAR else (x.shape[-dims] if x.dim() > dims else None)
        if x.dim() < dims + (g.kind is not LayerKind.LINEAR) or channel != g.in_channels:
            raise ShapeError(f"{self._describe()} expects {g.in_channels} input channels in "
                             f"[T, B, C, ...] or [T*B, C, ...], got shape {tuple(x.shape)}")
        if not self.form.temporal:
            lead = x.shape[:-dims]
            rows = x.reshape(math.prod(lead), *x.shape[-dims:])
            y, self.last_kernel = self.form.run(rows, g, rows.shape[0], 0, self.bias)
            return y.reshape(*lead, *y.shape[1:])
        view = split_time(self, x, dims, extra_leading=g.kind is LayerKind.LINEAR)
        steps, batch = view.x.shape[:2]
        y, self.last_kernel = self.form.run(view.x.reshape(steps * batch, *view.x.shape[2:]), g, batch,
                                            view.steps.start or 0, self.bias)
        return view.restore(y.reshape(steps, batch, *y.shape[1:]))

    def extra_repr(self) -> str:
        g = self.geometry
        return (f"{g.kind.value}, {g.in_channels}->{g.out_channels}, kernel={g.kernel}, stride={g.stride}, "
                f"source={self.source}, form={type(self.form).__name__}, timesteps={self.timesteps}")
