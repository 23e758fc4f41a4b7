"""`check_quantizer`: the quantizer contract, on several weight shapes and timestep counts."""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import Tensor

from tawq_core.plugin_api.quantizer import PackedWeight, Quantizer, QuantMode, with_state
from tawq_core.testing.subject import CheckReport, Subject, resolve

#: Linear, Conv1d and Conv2d weight layouts; small so the check runs in well under a second.
SHAPES: tuple[tuple[int, ...], ...] = ((6, 5), (4, 3, 5), (4, 2, 3, 3))
TIMESTEPS: tuple[int, ...] = (1, 2, 4)


def _weight(shape: tuple[int, ...], seed: int) -> Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _config(s: Subject, q: Quantizer, report: CheckReport) -> None:
    config = s.call("config()", q.config)
    if not isinstance(config, dict):
        s.fail(f"config() returned {type(config).__name__}, not a dict")
    s.json("config()", config)
    try:
        params = inspect.signature(s.factory).parameters.values()
    except (TypeError, ValueError):
        params = []
    defaults = {p.name: p.default for p in params if p.default is not inspect.Parameter.empty}
    for option, value in {**defaults, **s.options}.items():
        if option in config and config[option] != value:
            s.fail(f"config() says {option}={config[option]!r} but the quantizer was built with {value!r}")
        if option not in config:
            s.fail(f"config() does not record option {option!r} (every factory option must be in it)")
    report.passed("config() is a JSON-serialisable dict recording every option")


def _state(s: Subject, q: Quantizer, w: Tensor, where: str) -> dict[str, Any]:
    """The keyword arguments giving a stateful quantizer its (uncalibrated) per-layer state."""
    state = s.call(f"init_state() {where}", q.init_state, w)
    if not isinstance(state, dict) or not all(isinstance(k, str) and k.isidentifier() and isinstance(v, Tensor)
                                              for k, v in state.items()):
        s.fail(f"init_state() {where} must return a dict of identifier names to tensors, got {state!r}")
    return with_state(state)


def _packed(s: Subject, q: Quantizer, w: Tensor, T: int, where: str) -> PackedWeight:
    packed = s.call(f"pack() {where}", q.pack, w, T, **_state(s, q, w, where))
    if not isinstance(packed, PackedWeight):
        s.fail(f"pack() {where} returned {type(packed).__name__}, not a tawq_core.PackedWeight")
    if tuple(packed.shape) != tuple(w.shape) or packed.timesteps != T:
        s.fail(f"pack() {where} records shape {tuple(packed.shape)} and T={packed.timesteps}")
    if packed.quantizer != q.name:
        s.fail(f"pack() {where} names quantizer {packed.quantizer!r}, its name is {q.name!r}")
    s.json(f"PackedWeight.meta {where}", packed.meta)
    payload = sum(t.numel() * t.element_size() for t in packed.payload.values())
    if not packed.payload or payload == 0:
        s.fail(f"pack() {where} stores no payload bytes: bits/weight would read 0")
    if packed.bits_per_weight != 8.0 * payload / packed.numel or packed.nbytes < packed.payload_bytes:
        s.fail(f"PackedWeight {where}: bits_per_weight {packed.bits_per_weight} disagrees with its "
               f"{payload} payload bytes for {packed.numel} weights")
    problem = s.call(f"check_packed() {where}", q.check_packed, packed)
    if problem is not None:
        s.fail(f"check_packed() rejects its own pack() output {where}: {problem}")
    return packed


def _round_trip(s: Subject, q: Quantizer, shape: tuple[int, ...], T: int) -> None:
    where = f"at shape {shape}, T={T}"
    w = _weight(shape, seed=T)
    original = w.clone()
    with torch.no_grad():
        state = _state(s, q, w, where)
        out = s.call(f"weights() {where}", q.weights, w, T, **state)
        expected = (T, *shape) if q.temporal else shape
        if not isinstance(out, Tensor) or tuple(out.shape) != expected:
            got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            s.fail(f"weights() {where} returned {got}, expected {expected} (temporal={q.temporal})")
        if not out.is_floating_point() or not bool(torch.isfinite(out).all()):
            s.fail(f"weights() {where} returned non-finite or non-float values ({out.dtype})")
        if not torch.equal(w, original):
            s.fail(f"weights() {where} modified the latent weight in place")
        if not torch.equal(s.call(f"weights() {where}", q.weights, w, T, **state), out):
            s.fail(f"weights() {where} is not deterministic (two calls differ)")
        packed = _packed(s, q, w, T, where)
        again = _packed(s, q, w, T, where)
        if any(not torch.equal(packed.payload[k], again.payload.get(k, torch.empty(0))) for k in packed.payload):
            s.fail(f"pack() {where} is not deterministic (two calls give different payloads)")
        back = s.call(f"unpack() {where}", q.unpack, packed)
    if not isinstance(back, Tensor) or tuple(back.shape) != tuple(out.shape):
        got = tuple(back.shape) if isinstance(back, Tensor) else type(back).__name__
        s.fail(f"unpack(pack(w)) {where} has shape {got}, weights(w) {tuple(out.shape)}")
    if not torch.equal(back.to(out.dtype), out):
        diff = float((back.to(out.dtype) - out).abs().max())
        s.fail(f"unpack(pack(w)) differs from weights(w) {where} (max abs difference {diff:.3g}); "
               "they must be bit-exact (use tawq_core.plugin.straight_through for the STE)")


def _gradients(s: Subject, q: Quantizer) -> None:
    w = _weight(SHAPES[0], seed=7).requires_grad_(True)
    state = _state(s, q, w.detach(), "with gradients")
    out = s.call("weights() with gradients", q.weights, w, 4, **state)
    if not out.requires_grad:
        s.fail("weights() returns no gradient path to the latent weight, but mode is QAT")
    s.call("backward through weights()", (out * torch.linspace(-1, 1, out.numel()).reshape(out.shape)).sum().backward)
    if w.grad is None or not bool(torch.isfinite(w.grad).all()) or not bool(w.grad.abs().sum() > 0):
        s.fail("gradients do not reach the latent weight (QAT quantizers must pass them, e.g. by STE)")
    with torch.no_grad():
        plain = q.weights(w.detach(), 4, **state)
    if not torch.equal(out.detach(), plain):
        s.fail("weights() gives different values with and without gradients")


def check_quantizer(quantizer: Any, **options: Any) -> CheckReport:
    """Check a quantizer (registered name, factory, class or instance) against the quantizer contract.

    Raises `ConformanceError` (an AssertionError) with one line naming what broke; returns what was
    checked. `options` are passed to the factory as keyword arguments.
    """
    s = resolve("quantizer", quantizer, Quantizer, options)
    report = CheckReport(s.label)
    q = s.make(Quantizer)
    if not isinstance(q.name, str) or not q.name or not isinstance(q.mode, QuantMode):
        s.fail(f"needs a non-empty `name` and a QuantMode `mode`, got name={q.name!r}, mode={q.mode!r}")
    _config(s, q, report)
    for shape in SHAPES:
        for T in TIMESTEPS:
            _round_trip(s, q, shape, T)
    report.passed(f"weights() shapes, determinism, no in-place change; pack/unpack bit-exact on {len(SHAPES)} "
                  f"shapes x T in {TIMESTEPS}; JSON meta; bits/weight from payload bytes; check_packed")
    if q.mode is QuantMode.QAT:
        _gradients(s, q)
        report.passed("gradients reach the latent weight (QAT)")
    return report
