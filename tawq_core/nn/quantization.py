"""`quantize`: swap a model's conv/linear layers for quantized ones, by policy, and report what changed.

Works on any ``nn.Module`` (tawq models, spikingjelly or snntorch networks): every `nn.Linear`,
`nn.Conv1d` and `nn.Conv2d` (subclasses included) is a candidate. The default policy keeps the layers
marked stem or head (`tawq_core.mark`) in full precision; a model without any marks gets the same
effect by keeping its first and last candidate in module order, and the report says so. BatchNorm
and every other module are never touched. Swapping is in place and copies weight and bias data, so
a quantized model fine-tunes from its fp32 weights; state-dict keys do not change.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any

from torch import nn

from tawq_core.nn.layers import is_quantized, quantized_layer_type, resolve_quantizer
from tawq_core.nn.roles import LayerRole, role_of
from tawq_core.nn.time_layout import install_time_layout, time_layouts
from tawq_core.plugin_api.errors import ConfigError
from tawq_core.plugin_api.quantizer import Quantizer, check_timesteps

#: Layers that look like conv/linear but have no quantized counterpart: reported, never swapped.
_UNSUPPORTED = (nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


class UnmarkedRule(str, Enum):
    """What the policy does with a model that marks no stem or head."""

    SKIP_FIRST_LAST = "skip-first-last"  # the first and last candidates play stem and head
    QUANTIZE_ALL = "quantize-all"


class SkipReason(str, Enum):
    ROLE = "role"
    FIRST_LAYER = "first-layer"
    LAST_LAYER = "last-layer"
    EXCLUDED = "excluded"
    NOT_INCLUDED = "not-included"
    UNSUPPORTED = "unsupported"


@dataclass(frozen=True)
class QuantPolicy:
    """Which conv/linear layers `quantize` swaps.

    skip_roles: roles kept in full precision (default stem and head). unmarked: the rule for models
    without marks. include: if given, only layers whose qualified name matches one of these globs are
    candidates. exclude: globs of names never quantized. Globs match `named_modules` names ("blocks.*").
    layer_quantizers: per-layer mixed precision, ``{glob: quantizer}`` (a registered name or an instance;
    a dict or a sequence of pairs, first matching glob wins): the layers the policy quantizes and a glob
    matches get that quantizer instead of the one passed to `quantize`, e.g. ``{"stages.0.*": "ptq8"}``
    keeps the first stage at 8 bits and the rest at 1.58. It never changes *which* layers are quantized,
    and a glob that matches none of them is an error, not a silent no-op.
    """

    skip_roles: frozenset[LayerRole] = frozenset({LayerRole.STEM, LayerRole.HEAD})
    unmarked: UnmarkedRule = UnmarkedRule.SKIP_FIRST_LAST
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    layer_quantizers: tuple[tuple[str, Quantizer | str], ...] = ()

    def __post_init__(self) -> None:
        try:
            roles = frozenset(LayerRole(r) for r in self.skip_roles)
            unmarked = UnmarkedRule(self.unmarked)
        except ValueError as exc:
            raise ConfigError(f"invalid quantization policy: {exc}; roles: "
                              f"{[r.value for r in LayerRole]}, unmarked: {[u.value for u in UnmarkedRule]}"
                              ) from None
        for label in ("include", "exclude"):
            globs = getattr(self, label)
            if isinstance(globs, str) or not all(isinstance(g, str) and g for g in globs):
                raise ConfigError(f"policy {label} must be a sequence of non-empty glob strings, got {globs!r}")
            object.__setattr__(self, label, tuple(globs))
        object.__setattr__(self, "skip_roles", roles)
        object.__setattr__(self, "unmarked", unmarked)
        object.__setattr__(self, "layer_quantizers", _layer_quantizers(self.layer_quantizers))

    def quantizer_for(self, name: str) -> tuple[str, Quantizer | str] | None:
        """The first (glob, quantizer) of `layer_quantizers` that matches layer `name`, if any."""
        return next(((g, q) for g, q in self.layer_quantizers if fnmatch.fnmatchcase(name, g)), None)


def _layer_quantizers(value: Any) -> tuple[tuple[str, Quantizer | str], ...]:
    pairs = list(value.items()) if isinstance(value, dict) else value
    ok = not isinstance(pairs, str) and all(
        isinstance(p, (tuple, list)) and len(p) == 2 and isinstance(p[0], str) and p[0]
        and (isinstance(p[1], Quantizer) or (isinstance(p[1], str) and p[1])) for p in pairs)
    if not ok:
        raise ConfigError(f"policy layer_quantizers must map non-empty globs to quantizer names or instances, "
                          f"e.g. {{'stages.0.*': 'ptq8'}}; got {value!r}")
    return tuple((g, q) for g, q in pairs)


@dataclass(frozen=True)
class SwappedLayer:
    name: str
    kind: str  # the quantized class, e.g. "QuantConv2d"
    params: int  # weights quantized (bias stays full precision)
    quantizer: str = ""  # the quantizer's name (differs between layers under a mixed-precision policy)


@dataclass(frozen=True)
class SkippedLayer:
    name: str
    kind: str
    params: int
    reason: SkipReason
    detail: str


@dataclass
class QuantizeReport:
    """What `quantize` did; ``print(report)`` gives a table, `to_dict` a JSON-ready record."""

    quantizer: str
    timesteps: int
    swapped: list[SwappedLayer] = field(default_factory=list)
    skipped: list[SkippedLayer] = field(default_factory=list)
    total_params: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def params_quantized(self) -> int:
        return sum(layer.params for layer in self.swapped)

    @property
    def quantizers(self) -> list[str]:
        """Quantizer names in the order layers use them: one, or several under a mixed-precision policy."""
        return list(dict.fromkeys(s.quantizer for s in self.swapped)) or [self.quantizer]

    @property
    def fraction_quantized(self) -> float:
        return self.params_quantized / self.total_params if self.total_params else 0.0

    def to_dict(self) -> dict[str, Any]:
        record = asdict(self)
        for layer in record["skipped"]:
            layer["reason"] = layer["reason"].value
        record.update(params_quantized=self.params_quantized, fraction_quantized=self.fraction_quantized,
                      quantizers=self.quantizers)
        return record

    def __str__(self) -> str:
        count = len(self.swapped) + len(self.skipped)
        lines = [f"quantized {len(self.swapped)} of {count} conv/linear layers with {'+'.join(self.quantizers)} "
                 f"(T={self.timesteps}): {self.params_quantized:,} of {self.total_params:,} parameters "
                 f"({100 * self.fraction_quantized:.1f}%)"]
        width = max((len(layer.name) for layer in [*self.swapped, *self.skipped]), default=4)
        lines += [f"  swapped  {s.name:<{width}}  {s.kind:<12} {s.params:>10,}  {s.quantizer}" for s in self.swapped]
        lines += [f"  skipped  {s.name:<{width}}  {s.kind:<12} {s.params:>10,}  {s.detail}" for s in self.skipped]
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)


def _matches(name: str, globs: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(name, g) for g in globs)


def _candidates(model: nn.Module) -> tuple[list[tuple[str, nn.Module]], list[SkippedLayer]]:
    """Swappable layers in module order, and conv/linear-like layers that cannot be swapped."""
    parents = {id(child): parent for parent in model.modules() for child in parent.children()}
    found, unsupported = [], []
    for name, module in model.named_modules():
        params = sum(p.numel() for p in module.parameters(recurse=False) if not nn.parameter.is_lazy(p))
        kind = type(module).__name__
        why = None
        if isinstance(module, _UNSUPPORTED):
            why = f"no quantized {kind} in tawq"
        elif quantized_layer_type(module) is None:
            continue
        elif module is model:
            why = "the root module cannot be replaced in place; wrap it in nn.Sequential"
        elif isinstance(parents.get(id(module)), nn.MultiheadAttention):
            why = "nn.MultiheadAttention reads this layer's weight directly"
        elif isinstance(module, nn.modules.lazy.LazyModuleMixin) and module.has_uninitialized_params():
            why = "lazy layer not initialized yet; run one forward pass first"
        if why:
            unsupported.append(SkippedLayer(name, kind, params, SkipReason.UNSUPPORTED, why))
        else:
            found.append((name, module))
    return found, unsupported


def _skip_reason(policy: QuantPolicy, name: str, module: nn.Module, position: int, last: int,
                 marked: bool) -> tuple[SkipReason, str] | None:
    role = role_of(module)
    if role in policy.skip_roles:
        return SkipReason.ROLE, f"{role.value} layer (marked), kept full precision"
    if not marked and policy.unmarked is UnmarkedRule.SKIP_FIRST_LAST:
        if position == 0:
            return SkipReason.FIRST_LAYER, "first conv/linear of an unmarked model (stem), kept full precision"
        if position == last:
            return SkipReason.LAST_LAYER, "last conv/linear of an unmarked model (head), kept full precision"
    if _matches(name, policy.exclude):
        return SkipReason.EXCLUDED, "matches an exclude glob"
    if policy.include and not _matches(name, policy.include):
        return SkipReason.NOT_INCLUDED, "matches no include glob"
    return None


def quantize(model: nn.Module, quantizer: Quantizer | str, timesteps: int,
             policy: QuantPolicy | None = None) -> QuantizeReport:
    """Swap `model`'s conv/linear layers in place for quantized ones and return the report.

    `quantizer` is an instance or a registered name (``"tawq"``); one instance serves every layer,
    since quantizers keep no state between calls. `timesteps` is set on every swapped layer. A model
    that already holds quantized layers is refused: quantize a fresh fp32 model instead (an fp32
    state dict loads into a quantized model unchanged, the keys are the same). The model's forward is
    hooked to record the B of its ``[T, B, ...]`` input for the layers (`tawq_core.nn.time_layout`).
    """
    check_timesteps(timesteps)
    policy = policy if policy is not None else QuantPolicy()
    if not isinstance(policy, QuantPolicy):
        raise ConfigError(f"policy must be a tawq_core.QuantPolicy, got {type(policy).__name__}")
    quantizer = resolve_quantizer(quantizer)
    per_glob = {glob: resolve_quantizer(q) for glob, q in policy.layer_quantizers}  # one instance per glob
    already = [name for name, m in model.named_modules() if is_quantized(m)]
    if already:
        raise ConfigError(f"model is already quantized ({len(already)} layers, e.g. {already[0]!r}); "
                          "quantize a fresh fp32 model (its state dict loads into the quantized one)")
    candidates, skipped = _candidates(model)
    marked = any(role_of(m) is not None for m in model.modules())
    report = QuantizeReport(quantizer.name, timesteps, skipped=skipped)
    if not marked and policy.unmarked is UnmarkedRule.SKIP_FIRST_LAST and candidates:
        report.notes.append("model marks no stem/head: kept its first and last conv/linear layers in full "
                            "precision (QuantPolicy(unmarked='quantize-all') quantizes them too)")
    replacements: dict[int, nn.Module] = {}
    for position, (name, module) in enumerate(candidates):
        reason = _skip_reason(policy, name, module, position, len(candidates) - 1, marked)
        if reason is not None:
            report.skipped.append(SkippedLayer(name, type(module).__name__, module.weight.numel(), *reason))
            continue
        quant_type = quantized_layer_type(module)
        chosen = policy.quantizer_for(name)
        layer_quantizer = per_glob[chosen[0]] if chosen else quantizer
        replacements[id(module)] = quant_type.from_float(module, layer_quantizer, timesteps)
        report.swapped.append(SwappedLayer(name, quant_type.__name__, module.weight.numel(), layer_quantizer.name))
    unused = [g for g, _ in policy.layer_quantizers if not any(fnmatch.fnmatchcase(s.name, g) for s in report.swapped)]
    if unused:
        raise ConfigError(f"policy layer_quantizers glob {unused[0]!r} matches none of the layers the policy "
                          f"quantizes ({', '.join(s.name for s in report.swapped) or 'none'}); layers kept full "
                          "precision by skip_roles/exclude/include cannot get a quantizer")
    for parent in list(model.modules()):
        for child_name, child in list(parent._modules.items()):  # named_children() hides repeats
            if child is not None and id(child) in replacements:
                setattr(parent, child_name, replacements[id(child)])
    install_time_layout(model, temporal_layers(model))
    report.total_params = sum(p.numel() for p in model.parameters() if not nn.parameter.is_lazy(p))
    return report


def quantized_layers(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """(qualified name, layer) for every quantized layer of `model`, in module order."""
    for name, module in model.named_modules():
        if is_quantized(module):
            yield name, module


def temporal_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The quantized layers whose quantizer gives one weight set per timestep (the time layout applies)."""
    return [(name, layer) for name, layer in quantized_layers(model) if layer.quantizer.temporal]


def set_timesteps(model: nn.Module, timesteps: int) -> int:
    """Set T on every quantized layer (e.g. to evaluate at another T); returns how many were set."""
    check_timesteps(timesteps)
    layers = list(quantized_layers(model))
    for _, layer in layers:
        layer.timesteps = timesteps
    for layout in time_layouts(model):
        layout.timesteps = timesteps
    return len(layers)
