"""Checkpoints: one `.safetensors` file of weights with everything needed to use them in its metadata.

    weights     tensors named by component: "ae.*" (autoencoder), "dit.*" (transformer and heads), "ema.*", ...
    metadata    JSON strings: format_version, kind ("worldsim"), config (the full resolved run config),
                action_meanings, frame_shape, and whatever else a writer adds (step, dataset, ...)

Loading never unpickles anything: safetensors holds only raw tensors and strings. Writes go to a temporary file
renamed over the target, so a crash leaves the previous checkpoint intact. A file that is missing, truncated, not
safetensors, not worldsim's, or of another format version is refused with a message that says which and what to do.

A world model (what `worldsim train world` writes and Dream-v0 plays) is written by `save_world` (or, during
training, from `world_metadata` and `world_tensors`) and read by `load_world`, nowhere else:

    tensors     ae.* (Autoencoder), dit.* (DiT with its heads), start.frames (K, H, W, 3) uint8 (optional),
                reward.* (a RewardModel, optional: `worldsim train reward` adds it)
    metadata    config, ae_config, dit_config, diffusion (the three model configs as dicts), action_meanings (one
                string per action), frame_shape [H, W, 3], latent_shape [C, H/f, W/f], views (every frame shape it
                was trained on, frame_shape first: [[64, 64, 3], [64, 96, 3]]), env, render_fps, step; with a
                reward model, reward_config (its RewardModelConfig) and world_config (the world's own run config:
                config is then the reward model's run)

load_world checks the file as a whole before it allocates anything big: every size against a bound, every tensor
against the configs, the spaces against the frames the model will make. Format 1 files (the shipped model) load
unchanged: their diffusion.steps is denoise_steps, and dit_config.max_extra_tokens (0) and dit.extra_cond, the
unused caption prefix, are dropped. A file without `views` (written before models trained on several frame sizes) was
trained on its frame_shape alone, and reads so. The start frames are always frame_shape's.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as st_save
from torch.overrides import TorchFunctionMode

from worldsim.io import atomic_write_bytes
from worldsim.models.autoencoder import Autoencoder, AutoencoderConfig
from worldsim.models.diffusion import DiffusionConfig
from worldsim.models.dit import DiT, DiTConfig
from worldsim.models.reward import RewardModel, RewardModelConfig

# 2: world models lost the caption prefix (dit_config.max_extra_tokens, dit.extra_cond); 3: they may take the previous
# frame (dit_config.prev_frame) and classify the reward (dit_config.reward_values, dit.reward_threshold); 4: they may
# read captions (dit_config.vocab, caption_words, text_depth; dit.text.*); 5: they may carry a reward/end model
# (reward_config; reward.*); 6: they may read the previous frame with a border (dit_config.prev_halo; dit.halo_embed.*)
FORMAT_VERSION = 6
READABLE = (1, 2, 3, 4, 5, 6)  # older world models load unchanged (load_world maps format 1's old names; each is the
#                                next's subset)
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
    return read_header(path)[0]


def read_header(path: str | Path) -> tuple[dict[str, Any], dict[str, tuple[tuple[int, ...], str]]]:
    """(metadata, {tensor name: (shape, safetensors dtype such as "F32")}) of a checkpoint, reading no weights."""
    path = _existing(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = f.metadata() or {}
            header = {k: (tuple(f.get_slice(k).get_shape()), f.get_slice(k).get_dtype()) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as err:
        raise _unreadable(path, err) from None
    return _decode(path, raw), header


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[dict[str, torch.Tensor],
                                                                                         dict[str, Any]]:
    """(tensors, metadata) of a worldsim checkpoint; CheckpointError if the file cannot be trusted."""
    metadata, _ = read_header(path)
    return {k: v.to(map_location) for k, v in _read_tensors(Path(path)).items()}, metadata


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


def _read_tensors(path: Path, prefix: str = "") -> dict[str, torch.Tensor]:
    """The tensors named `prefix*`; the others are not read."""
    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: f.get_tensor(k) for k in f.keys() if k.startswith(prefix)}
    except (SafetensorError, OSError, ValueError) as err:
        raise _unreadable(path, err) from None


def _unreadable(path: Path, err: Exception) -> CheckpointError:
    return CheckpointError(f"checkpoint {path}: not a readable safetensors file ({err}); it may be truncated "
                           f"(re-copy it) or not a checkpoint at all")


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
    if meta["format_version"] not in READABLE:
        raise CheckpointError(f"checkpoint {path}: format_version {meta['format_version']}, this worldsim reads "
                              f"{' and '.join(map(str, READABLE))}; use the worldsim version that wrote it")
    return meta


def load_init(model: torch.nn.Module, path: str | Path, prefix: str, what: str, writers: str, fix: str,
              new: tuple[str, ...] = (), adapt=None) -> None:
    """Load the `prefix.*` weights of checkpoint `path` into `model` (init= of a training run), or say what is wrong:
    `what` names the part ("autoencoder"), `writers` the commands that write such checkpoints, `fix` what to set.
    Weights of the model under the prefixes `new` may be missing from the file (a part the run adds, such as a text
    encoder): they keep their initialisation. `adapt(weights, metadata)` may rewrite the file's weights first (a
    vocabulary that grew)."""
    tensors, meta = load_checkpoint(path)
    weights = component(tensors, prefix)
    if not weights:
        raise CheckpointError(f"init={path}: no {what} weights ('{prefix}.*') in it; expected a checkpoint written "
                              f"by {writers}")
    if adapt is not None:
        weights = adapt(weights, meta)
    own = model.state_dict()
    weights.update({k: v for k, v in own.items() if k.startswith(new) and k not in weights} if new else {})
    try:
        model.load_state_dict(weights)
    except RuntimeError as e:
        raise CheckpointError(f"init={path}: its {what} does not fit this run's ({e}); {fix}") from None


# ---- world models ------------------------------------------------------------------------------------------------
# Bounds on what a world checkpoint declares, checked before anything is allocated. Each is far above any model this
# project trains (the shipped one's figure in brackets) and low enough that a file at every bound still loads on a
# laptop: a file past one is damaged or edited (context=1e9 once grew a process to 24 GB before the OOM killer came).
MAX_PARAMS = 500_000_000  # autoencoder + transformer, 2 GB of float32 [4.8M; preset L is 68M]
MAX_CACHE_BYTES = 2 ** 30  # KV cache of one world, float32 [2.25 MiB]: the window, the frame size and the width
MAX_CONTEXT = 4096  # chunks in the window [16]
MAX_TOKENS = 4096  # tokens a frame [16]; 1024x1024 frames at f=16 and 2x2 patches make 1024
MAX_DENOISE_STEPS = 1000  # solver passes a frame, each a transformer pass [2]: 1000 is DDPM's full chain, ~4 s a
#                           frame here; past it a step never seems to end
MAX_FRAME_SIDE = 4096  # pixels [64]
MAX_START_FRAMES = 4096  # the start bank: 48 MiB at 64x64 [64]
MAX_VOCAB = 65536  # caption words [~40]
MAX_WORD = 64  # letters a caption word [9]
MAX_SIZE_FIELD = 65536  # any other integer of ae_config / dit_config (widths, depths, heads...); MAX_PARAMS bounds
#                         what they make together
MAX_FPS = 1000.0  # render_fps, a display rate [null: Dream-v0 shows 10]
MAX_VIEWS = 64  # frame sizes a model was trained on [1]
WORLD_KEYS = ("ae_config", "dit_config", "diffusion", "action_meanings", "frame_shape", "latent_shape")
_FIX = "the file is damaged or was edited: re-copy it, or train it again with `worldsim train world`"
_DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64",
           torch.uint8: "U8", torch.int64: "I64"}


def default_checkpoint() -> Path:
    """The world model shipped inside the package (worldsim/assets/craft2d_s.safetensors)."""
    return Path(__file__).resolve().parent / "assets" / "craft2d_s.safetensors"


@dataclass
class World:
    """A world-model checkpoint that passed every check of `load_world`, its models built (CPU, eval mode)."""

    path: Path
    ae: Autoencoder
    dit: DiT
    diffusion: DiffusionConfig
    start_frames: np.ndarray  # (K, H, W, 3) uint8 real start frames; K may be 0
    metadata: dict[str, Any]  # as written, with format-1 names mapped: diffusion.denoise_steps, no max_extra_tokens
    reward: RewardModel | None = None  # the reward/end model, where the file has one: it pays instead of dit's heads


def world_metadata(config: Any, ae_config: AutoencoderConfig, dit_config: DiTConfig, diffusion: DiffusionConfig,
                   action_meanings: list[str], frame_shape: list[int] | tuple[int, ...], env: str | None = None,
                   render_fps: float | None = None,
                   views: list[list[int] | tuple[int, ...]] | None = None) -> dict[str, Any]:
    """The metadata of a world-model checkpoint (config: the run's resolved config, a dict), checked as load_world
    checks it: a training run refuses a model it could not load before it spends an hour training it. `views`: the
    frame shapes it was trained on besides frame_shape (the main one, where its start frames come from), if any."""
    h, w, _ = frame_shape
    f = ae_config.downsample
    shapes = [[int(s) for s in frame_shape]] + [[int(s) for s in v] for v in views or ()]
    meta = {"config": config, "ae_config": asdict(ae_config), "dit_config": asdict(dit_config),
            "diffusion": asdict(diffusion), "action_meanings": list(action_meanings),
            "frame_shape": shapes[0], "latent_shape": [ae_config.latent_channels, h // f, w // f],
            "views": [v for i, v in enumerate(shapes) if v not in shapes[:i]],  # main first, each once
            "env": env, "render_fps": render_fps}
    _check_world(Path("<new world model>"), json.loads(json.dumps(meta)))  # as it will read back
    return meta


def world_tensors(ae_state: dict[str, torch.Tensor], dit_state: dict[str, torch.Tensor],
                  start_frames: np.ndarray | torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """The tensors of a world-model checkpoint: "ae.*", "dit.*" and the start bank "start.frames" (K, H, W, 3)."""
    tensors = {**prefixed(ae_state, "ae"), **prefixed(dit_state, "dit")}
    if start_frames is not None and len(start_frames):
        tensors["start.frames"] = torch.as_tensor(np.asarray(start_frames, np.uint8))
    return tensors


def save_world(path: str | Path, ae: Autoencoder, dit: DiT, diffusion: DiffusionConfig, *, config: Any,
               action_meanings: list[str], frame_shape: list[int] | tuple[int, ...],
               start_frames: np.ndarray | None = None, env: str | None = None, render_fps: float | None = None,
               step: int | None = None, views: list[list[int] | tuple[int, ...]] | None = None) -> Path:
    """Write a world model (an Autoencoder, a DiT, its DiffusionConfig and what Dream-v0 needs) atomically; `views`:
    other frame shapes it was trained on (world_metadata)."""
    meta = world_metadata(config, ae.cfg, dit.config, diffusion, action_meanings, frame_shape, env, render_fps, views)
    if step is not None:
        meta["step"] = int(step)
    return save_checkpoint(path, world_tensors(ae.state_dict(), dit.state_dict(), start_frames), **meta)


def load_world(path: str | Path) -> World:
    """Read and check a world-model checkpoint as a whole; CheckpointError naming the file and the field if any
    part is wrong. Sizes are checked against the bounds above, and the tensors against the config (names, shapes,
    dtypes) from the header alone; only then are the weights read, checked finite, and loaded strictly."""
    meta, header = read_header(path)
    path = Path(path)
    if "dit_config" not in meta:
        raise CheckpointError(f"checkpoint {path}: no world model in it (an autoencoder checkpoint?): train one with "
                              "`worldsim train world`")
    meta, ae_cfg, dit_cfg, diffusion = _check_world(path, meta)
    h, w, _ = meta["frame_shape"]
    reward_cfg = _reward_config(path, meta, ae_cfg, dit_cfg)
    expected = _shapes(path, ae=lambda: Autoencoder(ae_cfg), dit=lambda: DiT(dit_cfg),
                       **({"reward": lambda: RewardModel(reward_cfg)} if reward_cfg else {}))
    if "start.frames" in header:
        k = (header["start.frames"][0] or (0,))[0]
        _require(path, 1 <= k <= MAX_START_FRAMES, "start.frames", f"{k} frames", f"1 to {MAX_START_FRAMES}")
        expected["start.frames"] = ((k, h, w, 3), "U8")
    legacy = {"dit.extra_cond": ((dit_cfg.width,), "F32")} if meta["format_version"] == 1 else {}  # unused prefix
    _check_header(path, header, expected, legacy)
    tensors = _read_finite(path)
    ae = _load_into(path, Autoencoder(ae_cfg), "ae", tensors)
    dit = _load_into(path, DiT(dit_cfg), "dit", {k: v for k, v in tensors.items() if k not in legacy})
    frames = tensors["start.frames"].numpy() if "start.frames" in tensors else np.zeros((0, h, w, 3), np.uint8)
    reward = _load_into(path, RewardModel(reward_cfg), "reward", tensors) if reward_cfg else None
    return World(path, ae, dit, diffusion, frames, meta, reward)


def _reward_config(path: Path, meta: dict[str, Any], ae: AutoencoderConfig, dit: DiTConfig) -> RewardModelConfig | None:
    """The reward model's config where the file has one, checked against the world it judges."""
    if "reward_config" not in meta:
        return None
    cfg = _config(path, "reward_config", meta["reward_config"], RewardModelConfig)
    _require(path, cfg.latent_channels == ae.latent_channels, "reward_config.latent_channels", cfg.latent_channels,
             f"ae_config.latent_channels = {ae.latent_channels}: it reads the autoencoder's latents")
    _require(path, cfg.n_actions == dit.n_actions, "reward_config.n_actions", cfg.n_actions,
             f"dit_config.n_actions = {dit.n_actions}: it reads the world's actions")
    return cfg


def load_autoencoder(path: str | Path) -> tuple[Autoencoder, dict[str, Any]]:
    """The autoencoder (eval mode) of a checkpoint of `worldsim train ae` or `train world`, and its metadata, checked
    as load_world checks a world model's."""
    meta, header = read_header(path)
    path = Path(path)
    raw = meta.get("ae_config") or (meta["config"].get("model") if isinstance(meta["config"], dict) else None)
    _require(path, raw is not None, "metadata", "no ae_config and no config.model", "an autoencoder's config: a "
             "checkpoint of `worldsim train ae` or `worldsim train world`")
    cfg = _config(path, "ae_config", raw, AutoencoderConfig)
    expected = _shapes(path, ae=lambda: Autoencoder(cfg))
    _check_header(path, {k: v for k, v in header.items() if k.startswith("ae.")}, expected, {})
    return _load_into(path, Autoencoder(cfg), "ae", _read_finite(path, "ae.")), meta


def _shapes(path: Path, **build) -> dict[str, tuple[tuple[int, ...], str]]:
    """{"prefix.name": (shape, dtype)} of the models `build` makes (prefix=factory), built on the meta device
    (no memory) and refused past MAX_PARAMS, before any real one is built."""
    try:
        with torch.device("meta"), _ShapesOnly():
            states = {prefix: make().state_dict() for prefix, make in build.items()}
    except (RuntimeError, ValueError, TypeError) as err:  # a config its model cannot be built from
        raise CheckpointError(f"checkpoint {path}: its configs make no model ({err}); {_FIX}") from None
    shapes = {f"{p}.{k}": t for p, state in states.items() for k, t in state.items()}
    params = sum(t.numel() for t in shapes.values())
    _require(path, params <= MAX_PARAMS, "the models of its configs", f"{params:,} parameters", f"<= {MAX_PARAMS:,}")
    return {k: (tuple(t.shape), _DTYPES.get(t.dtype, str(t.dtype))) for k, t in shapes.items()}


def _check_header(path: Path, header: dict, expected: dict, allowed: dict) -> None:
    """Every tensor of the file is one the config makes (or an `allowed` leftover), of its shape and dtype."""
    for name, (shape, dtype) in header.items():
        want = expected.get(name) or allowed.get(name)
        _require(path, want is not None, f"tensor {name}", "present", "only the tensors its configs make (ae.*, "
                 "dit.*, reward.* with a reward_config, start.frames)")
        _require(path, (shape, dtype) == want, f"tensor {name}", f"{dtype} {list(shape)}",
                 f"{want[1]} {list(want[0])}, as the metadata's configs and frame_shape say")
    missing = sorted(set(expected) - set(header))
    _require(path, not missing, "tensors", f"{len(missing)} missing ({', '.join(missing[:3])}...)",
             "every tensor its configs make")


def _read_finite(path: Path, prefix: str = "") -> dict[str, torch.Tensor]:
    """The tensors named `prefix*`, refused if a float one holds NaN or infinity (it would draw black frames)."""
    tensors = _read_tensors(path, prefix)
    for name, t in tensors.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            bad = int((~torch.isfinite(t)).sum())
            _require(path, False, f"tensor {name}", f"{bad} NaN or infinite value(s)", "finite weights")
    return tensors


def _load_into(path: Path, module: torch.nn.Module, prefix: str, tensors: dict[str, torch.Tensor]):
    try:
        module.load_state_dict(component(tensors, prefix), strict=True)
    except RuntimeError as err:  # _check_header makes this unreachable; the file is named all the same
        raise CheckpointError(f"checkpoint {path}: its {prefix}.* weights do not load ({err}); {_FIX}") from None
    return module.eval()


def _require(path: Path, ok: bool, field: str, value: Any, expected: str) -> None:
    if not ok:
        raise CheckpointError(f"checkpoint {path}: {field} = {value}: expected {expected}; {_FIX}")


def _config(path: Path, key: str, raw: Any, cls: type, renamed: dict[str, str] | None = None,
            limits: dict[str, int] | None = None):
    """cls(**raw), with every field checked for its type and bound first (an integer's: `limits`, else
    MAX_SIZE_FIELD), naming `key.field` when one is wrong."""
    _require(path, isinstance(raw, dict), key, repr(raw)[:80], f"a JSON object of {cls.__name__} fields")
    raw = {(renamed or {}).get(k, k): v for k, v in raw.items()}
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(raw) - set(known))
    _require(path, not unknown, key, f"unknown fields {unknown}", f"fields among {sorted(known)}")
    for name, value in raw.items():
        default = known[name].default
        where = f"{key}.{name}"
        if isinstance(default, bool) or isinstance(default, str):
            _require(path, type(value) is type(default), where, repr(value), type(default).__name__)
        elif isinstance(default, tuple) and "str" in str(known[name].type):  # vocab
            ok = isinstance(value, list) and len(value) <= MAX_VOCAB and all(
                isinstance(v, str) and 1 <= len(v) <= MAX_WORD for v in value)
            _require(path, ok, where, repr(value)[:80], f"a list of at most {MAX_VOCAB} words of 1 to {MAX_WORD} "
                     "letters")
        elif isinstance(default, tuple) and "float" in str(known[name].type):  # e.g. reward_values
            ok = isinstance(value, list) and all(type(v) in (int, float) and math.isfinite(v) and abs(v) <= 1e12
                                                 for v in value)
            _require(path, ok, where, repr(value)[:80], "a list of finite numbers")
        elif isinstance(default, int) or isinstance(default, tuple):
            items, top = value if isinstance(default, tuple) else [value], (limits or {}).get(name, MAX_SIZE_FIELD)
            ok = isinstance(value, list) == isinstance(default, tuple) and all(
                type(v) is int and 0 <= v <= top for v in items)
            _require(path, ok, where, repr(value)[:80], f"{'a list of ' if isinstance(default, tuple) else ''}"
                     f"integer(s) in [0, {top}]")
        elif isinstance(default, float):
            ok = type(value) in (int, float) and math.isfinite(value) and abs(value) <= 1e12
            _require(path, ok, where, repr(value), "a finite number")
    try:
        return cls(**raw)
    except (ValueError, TypeError) as err:
        raise CheckpointError(f"checkpoint {path}: {key}: {err}; {_FIX}") from None


def _check_world(path: Path, meta: dict[str, Any]) -> tuple[dict[str, Any], AutoencoderConfig, DiTConfig,
                                                             DiffusionConfig]:
    """Everything about a world model that its metadata alone says: (meta with format-1 names mapped, ae config,
    DiT config, diffusion config). Tensors are checked against these by load_world."""
    missing = [k for k in ("config", *WORLD_KEYS) if k not in meta]
    _require(path, not missing, "metadata", f"missing {missing}", f"all of {['config', *WORLD_KEYS]}")
    meta = dict(meta)
    dit_raw = dict(meta["dit_config"]) if isinstance(meta["dit_config"], dict) else meta["dit_config"]
    if isinstance(dit_raw, dict) and "max_extra_tokens" in dit_raw:  # format 1: a caption prefix, never used
        extra = dit_raw.pop("max_extra_tokens")
        _require(path, extra == 0, "dit_config.max_extra_tokens", repr(extra), "0: caption prefixes are gone from "
                 "this worldsim (the model would need tokens it no longer makes)")
    ae = _config(path, "ae_config", meta["ae_config"], AutoencoderConfig)
    dit = _config(path, "dit_config", dit_raw, DiTConfig, limits={"context": MAX_CONTEXT})
    diffusion = _config(path, "diffusion", meta["diffusion"], DiffusionConfig, renamed={"steps": "denoise_steps"},
                        limits={"denoise_steps": MAX_DENOISE_STEPS})
    meta.update(ae_config=asdict(ae), dit_config=asdict(dit), diffusion=asdict(diffusion))
    _require(path, dit.patch[0] == 1, "dit_config.patch", list(dit.patch), "pt = 1: the simulator makes one frame "
             "a step")
    _require(path, not dit.prev_frame or diffusion.prediction == "x0", "dit_config.prev_frame", dit.prev_frame,
             f"false with diffusion.prediction={diffusion.prediction!r} (its output is a change of the clean frame)")
    _require(path, dit.latent_channels == ae.latent_channels, "dit_config.latent_channels", dit.latent_channels,
             f"ae_config.latent_channels = {ae.latent_channels}: the transformer models the autoencoder's latents")

    shape, f = meta["frame_shape"], ae.downsample
    _check_view(path, "frame_shape", shape, ae, dit)
    latent = [ae.latent_channels, shape[0] // f, shape[1] // f]
    _require(path, meta["latent_shape"] == latent, "latent_shape", meta["latent_shape"], f"{latent}: "
             f"[latent_channels, H / {f}, W / {f}] of frame_shape {shape}")
    views = meta.setdefault("views", [shape])  # older files: trained on frame_shape alone
    _require(path, isinstance(views, list) and 1 <= len(views) <= MAX_VIEWS, "views", repr(views)[:120],
             f"a list of 1 to {MAX_VIEWS} frame shapes [H, W, 3]")
    _require(path, views[0] == shape, "views[0]", views[0], f"frame_shape {shape}: the main view comes first")
    for i, view in enumerate(views):
        _check_view(path, f"views[{i}]", view, ae, dit)
        _require(path, view not in views[:i], f"views[{i}]", view, "each frame shape once")

    meanings = meta["action_meanings"]
    ok = isinstance(meanings, list) and all(isinstance(m, str) for m in meanings) and len(meanings) == dit.n_actions
    _require(path, ok, "action_meanings", repr(meanings)[:120], f"a list of {dit.n_actions} strings, one per action "
             "of dit_config.n_actions")
    env, fps, step = meta.get("env"), meta.get("render_fps"), meta.get("step", 0)
    _require(path, env is None or isinstance(env, str), "env", repr(env), "an env id (a string) or null")
    _require(path, fps is None or (type(fps) in (int, float) and 0 < fps <= MAX_FPS), "render_fps", repr(fps),
             f"null or a number in (0, {MAX_FPS:g}]")
    _require(path, type(step) is int and step >= 0, "step", repr(step), "an integer >= 0")
    return meta, ae, dit, diffusion


def view_problem(shape: Any, ae: AutoencoderConfig, dit: DiTConfig) -> str | None:
    """Why a model of these configs cannot make frames of `shape` [H, W, 3] (what is expected), or None: the
    autoencoder and the patches must tile the frame, and the bounds on frame sides, tokens and the KV cache hold.
    The one rule for a checkpoint's frame_shape and views and for a view Dream-v0 is asked to play at."""
    f, (_, ph, pw) = ae.downsample, dit.patch
    ok = isinstance(shape, (list, tuple)) and len(shape) == 3 and all(type(s) is int for s in shape) and \
        shape[2] == 3 and all(1 <= s <= MAX_FRAME_SIDE and s % (f * p) == 0 for s, p in zip(shape[:2], (ph, pw)))
    if not ok:
        return (f"[H, W, 3], H a multiple of {f * ph} and W of {f * pw} (downsample {f} x patch), each <= "
                f"{MAX_FRAME_SIDE}")
    tokens = (shape[0] // (f * ph)) * (shape[1] // (f * pw))
    if tokens > MAX_TOKENS:
        return f"at most {MAX_TOKENS} tokens a frame, not {tokens}"
    # K and V, every layer, the whole window and the memory, float32
    cache = 2 * dit.depth * (dit.context + dit.memory) * tokens * dit.width * 4
    if cache > MAX_CACHE_BYTES:
        return (f"a KV cache of at most {MAX_CACHE_BYTES / 2 ** 20:,.0f} MiB a world (depth x (context + memory) x "
                f"tokens x width), not {cache / 2 ** 20:,.0f} MiB")
    return None


def _check_view(path: Path, field: str, shape: Any, ae: AutoencoderConfig, dit: DiTConfig) -> None:
    problem = view_problem(shape, ae, dit)
    _require(path, problem is None, field, shape, problem or "")


def trained_views(metadata: dict[str, Any]) -> list[tuple[int, int, int]]:
    """The frame shapes (H, W, 3) a world model was trained on, its frame_shape first (a load_world'ed metadata)."""
    return [tuple(v) for v in metadata.get("views") or [metadata["frame_shape"]]]


class _ShapesOnly(TorchFunctionMode):
    """Skips in-place ops on meta tensors while a model is built there, for its shapes: they do nothing to a tensor
    without data, and torch's meta normal_ imports torch._dynamo the first time (1.3 s of every load)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name, target = getattr(func, "__name__", ""), args[0] if args else kwargs.get("tensor")
        if name.endswith("_") and not name.startswith("__") and isinstance(target, torch.Tensor) and target.is_meta:
            return target
        return func(*args, **kwargs)
