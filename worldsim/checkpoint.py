"""Checkpoints: one `.safetensors` file of weights with everything needed to use them in its metadata.

    weights     tensors named by component: "ae.*" (autoencoder), "dit.*" (transformer and heads), "ema.*", ...
    metadata    JSON strings: format_version, kind ("worldsim"), config (the full resolved run config),
                action_meanings, frame_shape, and whatever else a writer adds (step, dataset, ...)

Loading never unpickles anything: safetensors holds only raw tensors and strings. Writes go to a temporary file
renamed over the target, so a crash leaves the previous checkpoint intact. A file that is missing, truncated, not
safetensors, not worldsim's, or of another format version is refused with a message that says which and what to do.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from worldsim.io import atomic_write_bytes

FORMAT_VERSION = 1
KIND = "worldsim"
REQUIRED = ("format_version", "kind", "config")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file and the problem."""


def save_checkpoint(path: str | Path, tensors: dict[str, torch.Tensor], **metadata: Any) -> Path:
    """Write `tensors` and JSON-encoded `metadata` (config=..., action_meanings=..., ...) atomically to `path`."""
    if "config" not in metadata:
        raise ValueError("save_checkpoint needs config=...: a checkpoint must carry the config that made it")
    meta = {"format_version": json.dumps(FORMAT_VERSION), "kind": json.dumps(KIND)}
    meta.update({k: json.dumps(v) for k, v in metadata.items()})
    # contiguous CPU copies: safetensors refuses views that share storage and non-contiguous tensors
    flat = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    return atomic_write_bytes(path, st_save(flat, metadata=meta))


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The decoded metadata of a worldsim checkpoint, without reading the weights."""
    path = _existing(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"checkpoint {path}: not a readable safetensors file ({err}); it may be truncated or "
                              f"not a checkpoint at all") from None
    return _decode(path, raw)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[dict[str, torch.Tensor],
                                                                                         dict[str, Any]]:
    """(tensors, metadata) of a worldsim checkpoint; CheckpointError if the file cannot be trusted."""
    path = _existing(path)
    data = path.read_bytes()
    try:
        tensors = st_load(data)
        with safe_open(str(path), framework="pt") as f:
            raw = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"checkpoint {path}: not a readable safetensors file ({err}); it may be truncated "
                              f"(re-copy it) or not a checkpoint at all") from None
    metadata = _decode(path, raw)
    return {k: v.to(map_location) for k, v in tensors.items()}, metadata


def component(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The state dict of one component: tensors named `prefix.*`, with the prefix removed."""
    p = prefix + "."
    return {k[len(p):]: v for k, v in tensors.items() if k.startswith(p)}


def prefixed(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {f"{prefix}.{k}": v for k, v in state.items()}


def _existing(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path}: no such file (train one with `worldsim train`, or pass "
                                f"checkpoint=PATH)")
    return path


def _decode(path: Path, raw: dict[str, str]) -> dict[str, Any]:
    missing = [k for k in REQUIRED if k not in raw]
    if missing:
        raise CheckpointError(f"checkpoint {path}: safetensors without worldsim metadata (missing {missing}): not a "
                              f"worldsim checkpoint")
    try:
        meta = {k: json.loads(v) for k, v in raw.items()}
    except ValueError as err:
        raise CheckpointError(f"checkpoint {path}: metadata is not valid JSON ({err})") from None
    if meta["kind"] != KIND:
        raise CheckpointError(f"checkpoint {path}: kind {meta['kind']!r}, expected {KIND!r}")
    if meta["format_version"] != FORMAT_VERSION:
        raise CheckpointError(f"checkpoint {path}: format_version {meta['format_version']}, this worldsim reads "
                              f"{FORMAT_VERSION}; use the worldsim version that wrote it")
    return meta


def load_init(model: torch.nn.Module, path: str | Path, prefix: str, what: str, writers: str, fix: str) -> None:
    """Load the `prefix.*` weights of checkpoint `path` into `model` (init= of a training run), or say what is wrong:
    `what` names the part ("autoencoder"), `writers` the commands that write such checkpoints, `fix` what to set."""
    tensors, _ = load_checkpoint(path)
    weights = component(tensors, prefix)
    if not weights:
        raise CheckpointError(f"init={path}: no {what} weights ('{prefix}.*') in it; expected a checkpoint written "
                              f"by {writers}")
    try:
        model.load_state_dict(weights)
    except RuntimeError as e:
        raise CheckpointError(f"init={path}: its {what} does not fit this run's ({e}); {fix}") from None
