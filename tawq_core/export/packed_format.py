"""The packed tawq format: one safetensors file that stores a quantized model at its packed size.

Layout (all tensors little-endian, no pickled objects anywhere; loading uses safetensors only):

* ``q/<layer>/payload/<key>``: the quantizer's integer codes for layer ``<layer>`` (e.g. the dense
  base-K pattern indices of `tawq`, int8 codes of `ptq8`), exactly `PackedWeight.payload`;
* ``q/<layer>/scales/<key>``: its side tables (alpha ``[T, Co]`` and the pattern codebook for tawq,
  per-channel scales for ptq8), exactly `PackedWeight.scales`;
* ``fp/<state key>``: every other state-dict entry in full precision (stem, head, biases,
  BatchNorm parameters and statistics, learned neuron constants); latent weights are not stored;
* header metadata ``tawq``: JSON with the format version, tawq and torch versions, model name and
  options (to rebuild it), timesteps, the quantizer (name, config, options) and, per quantized layer,
  its shape and packing meta, plus the layer policy (which layers are quantized, which are kept fp).

The file is ``8 + header + Σ tensor bytes`` long: safetensors stores tensors back to back after an
8-byte length and a JSON header padded to a multiple of 8 bytes. `write_packed` measures the header
and reports the accounting, so file size = header overhead + packed bytes + full-precision bytes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from tawq_core.export.packed_deployed import packed_layers
from tawq_core.finite import require_finite
from tawq_core.nn.roles import role_of
from tawq_core.plugin_api.errors import CheckpointError, ConfigError
from tawq_core.plugin_api.quantizer import PackedWeight, Quantizer
from tawq_core.training.checkpoint import atomic_path
from tawq_core.validators import is_int_at_least

FORMAT = "tawq-packed"
FORMAT_VERSION = 1
META_KEY = "tawq"


@dataclass(frozen=True)
class PackedReport:
    """Byte accounting of one packed file; ``file_bytes == header_bytes + packed + fp`` exactly."""

    path: Path
    file_bytes: int
    header_bytes: int  # the 8-byte length plus the padded JSON header
    payload_bytes: int  # integer codes of all quantized layers
    scale_bytes: int  # their side tables (alpha, codebooks, scales)
    fp_bytes: int  # full-precision tensors (stem, head, biases, norms)
    quantized_weights: int
    bit_exact: bool | None = None  # the reloaded model's outputs equal the model's (None: not checked)

    @property
    def bits_per_weight(self) -> float:
        """Payload bits per quantized weight (the codes alone)."""
        return 8.0 * self.payload_bytes / self.quantized_weights if self.quantized_weights else 0.0

    @property
    def bits_per_weight_total(self) -> float:
        """Codes plus side tables per quantized weight: what `PackedWeight.bits_per_weight_total` sums to."""
        return 8.0 * (self.payload_bytes + self.scale_bytes) / self.quantized_weights if self.quantized_weights else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"format": "tawq", "path": str(self.path), "bytes": self.file_bytes, "header_bytes": self.header_bytes,
                "payload_bytes": self.payload_bytes, "scale_bytes": self.scale_bytes, "fp_bytes": self.fp_bytes,
                "quantized_weights": self.quantized_weights, "bits_per_weight": self.bits_per_weight,
                "bits_per_weight_total": self.bits_per_weight_total,
                "bit_exact": self.bit_exact}


def _nbytes(t: Tensor) -> int:
    return t.numel() * t.element_size()


def _policy(model: nn.Module, quantized: list[str]) -> dict[str, Any]:
    from tawq_core.nn.layers import quantized_layer_type

    kept = []
    for name, module in model.named_modules():
        if name not in quantized and quantized_layer_type(module) is not None and name:
            role = role_of(module)
            kept.append({"name": name, "role": role.value if role else None})
    return {"quantized": quantized, "full_precision": kept}


def write_packed(model: nn.Module, path: str | Path, *, timesteps: int, model_name: str | None = None,
                 model_options: dict[str, Any] | None = None,
                 quantizer_options: dict[str, Any] | None = None) -> PackedReport:
    """Pack every quantized layer of `model` and write the container; see the module docstring."""
    from tawq_core import __version__

    tensors: dict[str, Tensor] = {}
    layers: dict[str, Any] = {}
    payload = scales = numel = 0
    latent_keys: set[str] = set()
    quantizers: dict[str, dict[str, Any]] = {}  # name -> config()
    with torch.no_grad():
        for entry in packed_layers(model):  # fake-quant layers and deployed layers (re-export)
            name, packed = entry.name, entry.packed
            if packed.timesteps != timesteps:
                raise ConfigError(f"layer {name!r} runs at T={packed.timesteps}, the export at T={timesteps}; "
                                  "use one T (tawq_core.set_timesteps)")
            quantizers[entry.quantizer] = entry.config
            for part, table in (("payload", packed.payload), ("scales", packed.scales)):
                for key, t in table.items():
                    tensors[f"q/{name}/{part}/{key}"] = t.detach().to("cpu", copy=True).contiguous()
            layers[name] = {"quantizer": entry.quantizer, "kind": entry.kind, "shape": list(packed.shape),
                            "timesteps": packed.timesteps, "meta": packed.meta,
                            "payload": sorted(packed.payload), "scales": sorted(packed.scales)}
            payload += packed.payload_bytes
            scales += packed.scale_bytes
            numel += packed.numel
            latent_keys |= entry.not_fp
    fp = 0
    for key, t in model.state_dict().items():
        if key in latent_keys or not isinstance(t, Tensor):
            continue
        tensors[f"fp/{key}"] = t.detach().to("cpu", copy=True).contiguous()  # copy: safetensors refuses shared storage
        fp += _nbytes(tensors[f"fp/{key}"])
    if len(quantizers) > 1 and quantizer_options:
        raise ConfigError("quantizer_options is ambiguous for a model with several quantizers")
    record = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "tawq_version": __version__,
        "torch_version": torch.__version__, "model": model_name, "model_options": model_options or {},
        "timesteps": timesteps, "layers": layers, "policy": _policy(model, list(layers)),
        "quantizers": {n: {"config": c, "options": quantizer_options or {}} for n, c in quantizers.items()},
    }
    try:
        header = {META_KEY: json.dumps(record, sort_keys=True)}
    except TypeError as exc:
        raise ConfigError(f"packed-file metadata must be JSON-serializable (model options?): {exc}") from None
    target = Path(path)
    with atomic_path(target) as tmp:
        save_file(tensors, str(tmp), metadata=header)
    with target.open("rb") as f:
        header_bytes = 8 + int.from_bytes(f.read(8), "little")
    return PackedReport(target, target.stat().st_size, header_bytes, payload, scales, fp, numel)


def read_packed(path: str | Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """(tensors, metadata record) of a packed file, read with safetensors (never unpickles)."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"packed file {p} does not exist; write one with `tawq export --format tawq`")
    try:
        tensors = load_file(str(p))
        with p.open("rb") as f:
            header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
        record = json.loads(header["__metadata__"][META_KEY])
    except (SafetensorError, ValueError, KeyError, OSError, TypeError) as exc:
        raise CheckpointError(f"{p} is not a tawq packed file or is corrupt ({type(exc).__name__}); "
                              "export it again with `tawq export --format tawq`") from None
    if record.get("format") != FORMAT:
        raise CheckpointError(f"{p} is a safetensors file but not a tawq packed model (format "
                              f"{record.get('format')!r}); load checkpoints with tawq_core.build_from_checkpoint")
    version = record.get("format_version")
    if isinstance(version, int) and version > FORMAT_VERSION:
        raise CheckpointError(f"{p} uses packed format {record['format_version']} (tawq "
                              f"{record.get('tawq_version')}); this tawq reads up to {FORMAT_VERSION}: upgrade tawq")
    check_record(record, tensors, p)
    return tensors, record


def _field(path: Path, where: str, value: Any, ok: bool, wanted: str) -> None:
    if not ok:
        raise CheckpointError(f"packed file {path}: field {where} must be {wanted}, got {value!r}; the file was "
                              "edited or damaged, export it again")


def _positive_int(value: Any) -> bool:
    return is_int_at_least(value, 1)


def check_record(record: dict[str, Any], tensors: dict[str, Tensor], path: Path) -> None:
    """The header record and the tensor names against the layout in the module docstring, and every
    floating-point tensor finite: a violation names the file and the field or tensor."""
    _field(path, "'format_version'", record.get("format_version"), _positive_int(record.get("format_version")),
           "an integer >= 1")
    _field(path, "'timesteps'", record.get("timesteps"), _positive_int(record.get("timesteps")), "an integer >= 1")
    _field(path, "'model'", record.get("model"), isinstance(record.get("model"), (str, type(None))),
           "a model plugin name or null")
    for key in ("model_options", "layers", "quantizers"):
        _field(path, repr(key), record.get(key), isinstance(record.get(key), dict), "a table")
    for name, info in record["quantizers"].items():
        _field(path, f"quantizers.{name}", info, isinstance(info, dict), "a table")
        for key in ("config", "options"):
            _field(path, f"quantizers.{name}.{key}", info.get(key), isinstance(info.get(key) or {}, dict), "a table")
    expected: set[str] = set()
    for name, layer in record["layers"].items():
        where = f"layers.{name}"
        _field(path, where, layer, isinstance(layer, dict), "a table")
        quantizer = layer.get("quantizer")
        _field(path, f"{where}.quantizer", quantizer, isinstance(quantizer, str) and quantizer in record["quantizers"],
               f"one of the recorded quantizers {sorted(record['quantizers'])}")
        shape = layer.get("shape")
        _field(path, f"{where}.shape", shape, isinstance(shape, list) and bool(shape)
               and all(_positive_int(s) for s in shape), "a list of positive integers")
        _field(path, f"{where}.timesteps", layer.get("timesteps"), layer.get("timesteps") == record["timesteps"],
               f"the file's timesteps ({record['timesteps']})")
        _field(path, f"{where}.meta", layer.get("meta"), isinstance(layer.get("meta", {}), dict), "a table")
        for part in ("payload", "scales"):
            names = layer.get(part)
            _field(path, f"{where}.{part}", names, isinstance(names, list) and all(isinstance(k, str) for k in names),
                   "a list of tensor names")
            expected.update(f"q/{name}/{part}/{k}" for k in names)
    stored = {k for k in tensors if not k.startswith("fp/")}
    if stored != expected:
        missing, extra = sorted(expected - stored), sorted(stored - expected)
        raise CheckpointError(f"packed file {path}: tensor{'s' if len(missing + extra) > 1 else ''} "
                              f"{', '.join(missing[:2] + extra[:2])} {'missing' if missing else 'not in the record'}"
                              f"{' (+ more)' if len(missing + extra) > 2 else ''}; the file was edited or is "
                              "truncated, export it again")
    require_finite(tensors, f"packed file {path}", "the file was edited or the model had diverged; export it again",
                   CheckpointError)


def check_layer(quantizer: Quantizer, packed: PackedWeight, name: str, path: Path) -> None:
    """`Quantizer.check_packed` on one layer read from `path`: a problem is a `CheckpointError` naming both."""
    problem = quantizer.check_packed(packed)
    if problem:
        raise CheckpointError(f"packed file {path}: layer {name!r}: {problem}; the file was edited or damaged, "
                              f"export it again")
