"""Checkpoints that load safely and rebuild their model: safetensors weights + tawq metadata in one file.

A checkpoint is one ``.safetensors`` file whose header metadata holds a JSON record (model name and
options, quantizer and timesteps, training config, tawq version...). Nothing is ever unpickled: files
are read with safetensors, or, for state dicts from other tools, ``torch.load(weights_only=True)``.
Writes go through `tawq_core.files.atomic_path` (temporary file, fsync, `os.replace`), so an interrupted
save never leaves a half-written checkpoint under the real name.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from tawq_core.files import atomic_path
from tawq_core.files import write_json_atomic as write_json  # noqa: F401 - summaries and results, re-exported
from tawq_core.finite import require_finite
from tawq_core.plugin_api.errors import CheckpointError, ConfigError

META_KEY = "tawq"
FORMAT_VERSION = 1
WEIGHTS_NAME = "model.safetensors"


def _resolve(path: str | os.PathLike[str]) -> Path:
    """A folder (or a suffix-less path) means ``model.safetensors`` inside it, as `tawq train --out` writes."""
    p = Path(path)
    return p / WEIGHTS_NAME if p.is_dir() or not p.suffix else p


def save_checkpoint(path: str | os.PathLike[str], model: nn.Module, meta: dict[str, Any] | None = None) -> Path:
    """Save `model`'s state dict and `meta` (JSON-serializable) atomically; returns the file written.

    Record what `build_from_checkpoint` needs: ``model`` (plugin name), ``model_options`` (every keyword
    given to the model factory, including ``num_classes`` and ``sample_shape``), and, if the model was
    quantized, ``quantizer``, ``quantizer_options``, ``timesteps`` and, for a non-default policy,
    ``quant_policy`` (the `tawq_core.QuantPolicy` fields as a dict).
    """
    from tawq_core import __version__
    from tawq_core.training.distributed import unwrap

    target = _resolve(path)
    record = {"format": FORMAT_VERSION, "tawq_version": __version__, "torch_version": torch.__version__,
              **(meta or {})}
    try:
        header = {META_KEY: json.dumps(record, sort_keys=True)}
    except TypeError as exc:
        raise ConfigError(f"checkpoint metadata must be JSON-serializable: {exc}") from None
    # clone: safetensors refuses tensors that share storage (tied weights); loading re-ties them.
    state = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in unwrap(model).state_dict().items()
             if isinstance(v, torch.Tensor)}
    with atomic_path(target) as tmp:
        save_file(state, str(tmp), metadata=header)
    return target


def _read_meta(path: Path) -> dict[str, Any]:
    with path.open("rb") as f:
        size = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(size))
    raw = header.get("__metadata__", {}).get(META_KEY)
    if raw is None:
        return {}
    meta = json.loads(raw)
    check_meta(meta, path)
    if meta.get("format", FORMAT_VERSION) > FORMAT_VERSION:
        raise CheckpointError(f"{path} was written by a newer tawq (format {meta['format']}, "
                              f"tawq {meta.get('tawq_version')}); upgrade tawq to load it")
    return meta


#: checkpoint record fields -> (accepted types, what they must be); absent fields are allowed
META_SCHEMA: dict[str, tuple[tuple[type, ...], str]] = {
    "format": ((int,), "an integer format version"),
    "model": ((str,), "a model plugin name"),
    "model_options": ((dict,), "a table of model options"),
    "quantizer": ((str, type(None)), "a quantizer plugin name or null"),
    "quantizer_options": ((dict, type(None)), "a table of quantizer options"),
    "quant_policy": ((dict, type(None)), "a table of QuantPolicy fields"),
    "timesteps": ((int, type(None)), "an integer >= 1"),
}


def check_meta(meta: Any, path: Path) -> None:
    """The checkpoint record against `META_SCHEMA`: a violation is one line naming the file and the field
    (a hand-edited ``"timesteps": "four"`` must not surface as a TypeError deep in the rebuild)."""
    if not isinstance(meta, dict):
        raise CheckpointError(f"checkpoint {path}: its tawq record is a {type(meta).__name__}, not a table; "
                              "save the checkpoint again")
    if meta.get("format") == "tawq-packed":
        raise CheckpointError(f"{path} is a packed tawq file (inference only, no latent weights), not a training "
                              "checkpoint; load it with tawq_core.load_packed, or export from the checkpoint it "
                              "was made from")
    for key, (types, wanted) in META_SCHEMA.items():
        value = meta.get(key)
        bad_type = key in meta and (not isinstance(value, types) or isinstance(value, bool))
        if bad_type or (key in ("timesteps", "format") and isinstance(value, int) and value < 1):
            raise CheckpointError(f"checkpoint {path}: field {key!r} must be {wanted}, got {value!r}; the record "
                                  "was edited or damaged, save the checkpoint again")


def _load_torch(path: Path, head: bytes) -> dict[str, torch.Tensor]:
    if not (head.startswith(b"PK\x03\x04") or head.startswith(b"\x80")):  # torch zip, or a raw pickle
        raise CheckpointError(f"{path} is neither a safetensors file nor a torch state dict (unrecognized or "
                              "corrupt data); pass a checkpoint written by tawq")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # protocol notices from the weights-only unpickler
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError for unsafe pickles, RuntimeError for damaged archives
        unsafe = "weights only load failed" in str(exc).lower()
        reason = ("it contains pickled Python objects, which tawq never loads (unsafe); save weights with "
                  "safetensors or a plain torch state dict") if unsafe else f"it is corrupt ({type(exc).__name__})"
        raise CheckpointError(f"cannot load {path}: {reason}") from None
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path} holds a {type(obj).__name__}, not a state dict of tensors")
    return obj


def load_checkpoint(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read ``(state_dict, meta)`` from a safetensors checkpoint (or a plain torch state dict, meta {}).

    Anything else (a pickle of arbitrary objects, a truncated or corrupt file) raises `CheckpointError`.
    """
    p = _resolve(path)
    if not p.is_file():
        raise CheckpointError(f"checkpoint {p} does not exist; pass the file or the --out folder of `tawq train`")
    with p.open("rb") as f:
        head = f.read(9)
    if len(head) == 9 and head[8:9] == b"{":  # safetensors: u64 header length, then a JSON header
        try:
            state, meta = load_file(str(p)), _read_meta(p)
        except (SafetensorError, ValueError, OSError) as exc:
            raise CheckpointError(f"checkpoint {p} is corrupt or truncated ({exc}); save it again") from None
    else:
        state, meta = _load_torch(p, head), {}
    require_finite(state, f"checkpoint {p}", "the weights are corrupt or training diverged before it was saved; "
                   "use an earlier checkpoint or retrain", CheckpointError)
    return state, meta


def load_into(model: nn.Module, state: dict[str, torch.Tensor], meta: dict[str, Any] | None = None,
              source: str = "checkpoint") -> nn.Module:
    """Load `state` into `model` strictly; any missing/unexpected key or shape mismatch -> `CheckpointError`."""
    from tawq_core.training.distributed import unwrap

    target = unwrap(model)
    own = target.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
                  for k in sorted(set(own) & set(state)) if tuple(own[k].shape) != tuple(state[k].shape)]
    if missing or unexpected or mismatched:
        problems = []
        for label, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched)):
            if items:
                shown = ", ".join(items[:3]) + (f" (+{len(items) - 3} more)" if len(items) > 3 else "")
                problems.append(f"{label}: {shown}")
        origin = ""
        if meta and meta.get("model"):
            origin = f" it was saved from model {meta['model']!r} with options {meta.get('model_options', {})};"
        raise CheckpointError(f"{source} does not fit this model ({'; '.join(problems)});{origin} "
                              "rebuild the same model (tawq_core.build_from_checkpoint does this)")
    target.load_state_dict(state, strict=True)
    return model


def _model_options(meta: dict[str, Any]) -> dict[str, Any]:
    options = dict(meta.get("model_options") or {})
    if isinstance(options.get("sample_shape"), list):  # JSON turned the tuple into a list
        options["sample_shape"] = tuple(options["sample_shape"])
    return options


def build_from_checkpoint(path: str | os.PathLike[str], device: torch.device | str = "cpu"
                          ) -> tuple[nn.Module, dict[str, Any]]:
    """Recreate the model a checkpoint was saved from, re-apply its quantization, load the weights.

    Uses ``create("model", meta["model"], **meta["model_options"])`` and, when the checkpoint records a
    quantizer, ``tawq_core.quantize(model, create("quantizer", ...), meta["timesteps"], policy)``.
    """
    import tawq_core

    state, meta = load_checkpoint(path)
    if not meta.get("model"):
        raise CheckpointError(f"{path} records no model name; load it into a model you build with load_into()")
    model = tawq_core.create("model", meta["model"], **_model_options(meta))
    if meta.get("quantizer"):
        quantize = getattr(tawq_core, "quantize", None)
        if quantize is None:
            raise CheckpointError(f"{path} was quantized with {meta['quantizer']!r} but this tawq has no "
                                  "tawq_core.quantize; upgrade tawq")
        quantizer = tawq_core.create("quantizer", meta["quantizer"], **(meta.get("quantizer_options") or {}))
        if meta.get("timesteps") is None:  # T sets the weight sets of temporal layers: never defaulted
            raise CheckpointError(f"{path} was quantized with {meta['quantizer']!r} but records no timesteps; "
                                  "save it again with meta timesteps=T (tawq train records it)")
        policy = meta.get("quant_policy")
        quantize(model, quantizer, meta["timesteps"], tawq_core.QuantPolicy(**policy) if policy else None)
    load_into(model, state, meta, source=f"checkpoint {path}")
    return model.to(device), meta
