"""The time layout contract of temporal layers: exact, never guessed from divisibility.

A model's input is time-major ``[T, B, ...]``. `tawq_core.quantize` gives the model one shared
`TimeLayout` and hooks the model's forward, so every temporal layer of that model knows, while the
model runs, the B of the batch in flight. A temporal layer then accepts exactly:

- ``[T, B, ...]``, or the flattened ``[T·B, ...]`` (spikingjelly's SeqToANNContainer style);
- inside ``with tawq_core.stepwise(model):``, one timestep ``[B, ...]`` per call: the layer's t-th call
  in the block uses weight set t (the snntorch idiom, spikingjelly's single-step mode). The block
  restarts every layer at t = 0 on entry, so enter it once per sequence::

      for x, y in loader:                      # x: [T, B, ...]
          with tawq_core.stepwise(model):
              for t in range(T):
                  out = model(x[t])            # every temporal layer uses weight set t

Anything else is refused with one line, naming the layer: a per-step call outside `stepwise`, a layer
fed time-collapsed input (``[B, ...]`` after a mean over T: keep it in full precision with
``QuantPolicy(exclude=[name])``), a (T+1)-th call inside one `stepwise` block, and flattened
``[T·B, ...]`` input to a layer used on its own (outside a quantized model's forward, B is unknown).

Deployed layers (`tawq_core.deploy`) apply the same contract through `split_time`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from tawq_core.plugin_api.errors import ConfigError, ShapeError
from tawq_core.plugin_api.quantizer import check_timesteps


class TimeLayout:
    """T, the batch of the model forward in flight and the stepwise counters, shared by the temporal
    layers of one model.

    It is the model's forward pre-hook and forward hook (bound methods), so ``copy.deepcopy(model)``
    copies it once and re-links the copy's layers to the copy. It keeps no reference to its layers
    outside a `stepwise` block: a layer swapped out of the model (deployment) is freed.
    """

    def __init__(self, timesteps: int):
        self.timesteps = check_timesteps(timesteps)
        self.quantizers: set[str] = set()  # the attached layers' quantizer names, for messages
        self.steps: dict[nn.Module, int] | None = None  # per-layer next timestep inside `stepwise`
        self._batches: list[int | None] = []  # one entry per model forward in flight (re-entrant)
        self._shape_twins: list[set[int]] = []  # per forward in flight: layers that read a [T, T, ...] input

    @property
    def batch(self) -> int | None:
        """B of the model forward in flight; None outside one (a layer used on its own)."""
        return self._batches[-1] if self._batches else None

    @property
    def in_stepwise(self) -> bool:
        return self.steps is not None

    def attach(self, layer: nn.Module, name: str) -> None:
        """Make `layer` (quantized or deployed) follow this layout; `name` is its qualified name."""
        layer.time_layout = self
        layer.time_layout_name = name
        quantizer = getattr(layer, "quantizer", None)
        self.quantizers.add(getattr(quantizer, "name", None) or type(layer).__name__)

    def install(self, model: nn.Module) -> None:
        """Hook `model`'s forward: record B of each input, check T. Hooks of layouts no layer of `model`
        follows any more are removed (a stale one would check a T nobody updates)."""
        live = {id(layout) for layout in time_layouts(model)} - {id(self)}
        for hooks in (model._forward_pre_hooks, model._forward_hooks):
            for key, hook in list(hooks.items()):
                owner = getattr(hook, "__self__", None)
                if isinstance(owner, TimeLayout) and id(owner) not in live:
                    del hooks[key]
                    model._forward_hooks_always_called.pop(key, None)
        model.register_forward_pre_hook(self.enter_forward)
        model.register_forward_hook(self.leave_forward, always_call=True)

    def enter_forward(self, model: nn.Module, args: tuple[Any, ...]) -> None:
        self._batches.append(None)  # first, so `leave_forward` (called even if this raises) pops this entry
        self._shape_twins.append(set())
        x = args[0] if args else None
        if self.in_stepwise or not isinstance(x, Tensor):
            return  # stepwise calls need no B; a non-tensor input gives none
        T = self.timesteps
        if x.dim() < 2:
            raise ShapeError(f"model input {tuple(x.shape)} is not time-major [T={T}, B, ...]; for one step per "
                             "call wrap the time loop in `with tawq_core.stepwise(model):`")
        if x.shape[0] != T:
            quantizers = ", ".join(sorted(self.quantizers))
            raise ShapeError(f"model input {tuple(x.shape)} has T={x.shape[0]} timesteps, but this model's layers "
                             f"were quantized with {quantizers} for T={T} (one weight set per timestep); encode "
                             f"inputs with T={T}, call tawq_core.set_timesteps(model, {x.shape[0]}), or for one step "
                             "per call wrap the time loop in `with tawq_core.stepwise(model):`")
        self._batches[-1] = int(x.shape[1])

    def leave_forward(self, model: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        if self._batches:
            self._batches.pop()
            self._shape_twins.pop()

    def check_not_per_step(self, layer: nn.Module, shape: tuple[int, ...]) -> None:
        """With B == T, a per-step call ``[B, N, F]`` (N == B) has the very shape of ``[T, B, F]``: the only
        difference is that a per-step loop calls the layer again in the same forward. Refuse that second
        call, so the forward raises instead of returning outputs of mixed-up weight sets."""
        if not self._shape_twins:
            return  # used on its own: no forward to count calls in
        seen = self._shape_twins[-1]
        if id(layer) in seen:
            raise ShapeError(f"{self.describe(layer)} was called again in one forward with input {shape}, whose "
                             f"[T, B] = [{shape[0]}, {shape[1]}] cannot be told apart from a per-step [B, N] call "
                             "(B == T); run a per-step loop inside `with tawq_core.stepwise(model):`, or use a "
                             f"batch size other than T={shape[0]}")
        seen.add(id(layer))

    @staticmethod
    def describe(layer: nn.Module) -> str:
        """``QuantLinear 'body.2.0'`` (the qualified name `attach` gave it), or the class alone."""
        name = layer.__dict__.get("time_layout_name", "")
        return f"{type(layer).__name__} {name!r}" if name else type(layer).__name__


def install_time_layout(model: nn.Module, layers: Iterable[tuple[str, nn.Module]]) -> TimeLayout | None:
    """Give `model`'s temporal `layers` (qualified name, layer) one shared layout, fed B by a hook on
    `model`'s forward. `quantize` calls it, and so does whatever swaps in temporal layers later (packed
    loading, deployment). None, and no hook, when there is no temporal layer: static weights take any layout."""
    layers = list(layers)
    if not layers:
        return None
    steps = sorted({layer.timesteps for _, layer in layers})
    if len(steps) > 1:
        raise ConfigError(f"the temporal layers of one model must share T, got timesteps {steps}; "
                          "use tawq_core.set_timesteps")
    layout = TimeLayout(steps[0])
    for name, layer in layers:
        layout.attach(layer, name)
    layout.install(model)
    return layout


def layout_of(layer: nn.Module) -> TimeLayout:
    """The layout `layer` follows: its own (made here on first use) until `quantize` attaches it to the
    model's. Layers create theirs at construction, so `stepwise(layer)` finds it before any call."""
    layout = layer.__dict__.get("time_layout")
    if layout is None:
        layout = TimeLayout(layer.timesteps)
        layout.attach(layer, "")  # unnamed: used on its own
    return layout


@dataclass(frozen=True)
class TimeView:
    """A layer input viewed as ``[T', N, *sample]``: T' = T for a whole sequence, 1 for a stepwise call.

    ``steps`` selects the weight sets to use (all T, or the one of this step); `restore` gives the output
    the input's leading dims back.
    """

    x: Tensor
    steps: slice
    lead: tuple[int, ...]

    def restore(self, y: Tensor) -> Tensor:
        """``[T', N, *out_sample]`` -> ``[*lead, *out_sample]``."""
        return y.reshape(*self.lead, *y.shape[2:])


def split_time(layer: nn.Module, x: Tensor, sample_dims: int, *, extra_leading: bool = False) -> TimeView:
    """View `x` as ``[T', N, *sample]`` by the contract above, or raise a one-line `ShapeError`.

    `layer` needs ``.timesteps``; it follows `layout_of(layer)`. `sample_dims` is the number of trailing
    per-sample dims (1 for linear features, 2 for conv1d [C, L], 3 for conv2d [C, H, W]);
    `extra_leading` lets linear layers take token dims after T and B (``[T, B, N, F]``, ``[T·B, N, F]``).
    Used by tawq's quantized layers and by the deployed layers, so both read time the same way.
    """
    T = layer.timesteps
    layout = layout_of(layer)
    shape = tuple(x.shape)
    lead = shape[: x.dim() - sample_dims]
    sample = shape[x.dim() - sample_dims:]
    who = layout.describe(layer)
    if not lead:
        raise ShapeError(f"{who} got {shape} without a batch dim; feed [T, B, ...] or [T*B, ...]")
    if layout.steps is not None:
        t = layout.steps.get(layer, 0)
        if t >= T:
            raise ShapeError(f"{who} was called {T + 1} times in one `tawq_core.stepwise` block but holds T={T} "
                             "weight sets (one per timestep); enter the block once per sequence of T steps")
        if len(lead) != 1 and not extra_leading:
            raise ShapeError(f"{who} inside `tawq_core.stepwise` takes one timestep [B, ...] per call, got "
                             f"{shape}; outside the block it takes [T, B, ...]")
        layout.steps[layer] = t + 1
        return TimeView(x.reshape(1, -1, *sample), slice(t, t + 1), lead)
    B = layout.batch
    one_batch_dim = extra_leading or len(lead) == 1
    if len(lead) >= 2 and lead[0] == T and (B is None or lead[1] == B) and (extra_leading or len(lead) == 2):
        if extra_leading and len(lead) == 2 and B == T:
            layout.check_not_per_step(layer, shape)
        return TimeView(x.reshape(T, -1, *sample), slice(None), lead)  # [T, B, ...]
    if one_batch_dim and (lead[0] == T * B if B is not None else T == 1):
        return TimeView(x.reshape(T, -1, *sample), slice(None), lead)  # [T*B, ...]
    if one_batch_dim and B is not None and lead[0] == B:
        name = layer.__dict__.get("time_layout_name") or type(layer).__name__
        raise ShapeError(f"{who} got {shape}: leading dim {B} is the batch, not T*B={T * B}; if the input was "
                         f"averaged over time, keep this layer in full precision with "
                         f"QuantPolicy(exclude=[{name!r}]); if it is called once per timestep, run the time "
                         "loop inside `with tawq_core.stepwise(model):`")
    if one_batch_dim and B is None:
        raise ShapeError(f"{who} got {shape}, used on its own: flattened [T*B, ...] input is ambiguous without "
                         f"the model's B; feed [T={T}, B, ...], or call the quantized model, whose forward "
                         "records B")
    expected = f"[T={T}, B={B}, ...] or [T*B={T * B}, ...]" if B is not None else f"[T={T}, B, ...]"
    raise ShapeError(f"{who} expects {expected} with {sample_dims} per-sample dims, got {shape}; for one "
                     "timestep per call use `with tawq_core.stepwise(model):`")


def time_layouts(model: nn.Module) -> list[TimeLayout]:
    """The distinct layouts of `model`'s temporal layers (one per quantized model)."""
    found: dict[int, TimeLayout] = {}
    for module in model.modules():
        layout = module.__dict__.get("time_layout")
        if isinstance(layout, TimeLayout):
            found.setdefault(id(layout), layout)
    return list(found.values())


@contextmanager
def stepwise(model: nn.Module) -> Iterator[None]:
    """Calls inside the block are one timestep each: a layer's t-th call uses weight set t (t from 0).

    Entering restarts every layer of `model` at t = 0, so enter once per sequence; a layer called more
    than T times in one block is refused. Nested blocks restart too and restore the outer count on exit.
    """
    layouts = time_layouts(model)
    saved = [(layout, layout.steps) for layout in layouts]
    for layout in layouts:
        layout.steps = {}
    try:
        yield
    finally:
        for layout, steps in saved:
            layout.steps = steps
