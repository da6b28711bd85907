"""Video editing with a world model, made of guided steps (WorldSimulator.guided_step): restyle a clip under another
caption, connect two clips with a transition, extend a clip backward in time.

All three run the model forward in time, one frame a step, under the clip's actions, as it plays: what changes is
where each frame's denoising starts and what it is told.
- **restyle** (SDEdit, as Sora edits video): every frame of the clip is noised to `strength` and denoised under the
  new caption, against the restyled frames before it. The noise erases what the caption may change (light, ground
  cover); what it spares (the layout) is kept. 0 returns the clip, 1 ignores it.
- **connect**: after clip A's frames, each transition frame is denoised from clip B's first frame noised to a level
  that falls from 1 to 0 along the transition: the first frames continue A freely, the last ones are B's first frame
  but for a little noise, and the frame after the transition is B's first, exactly.
- **extend backward**: the frames that lead into a clip, ending exactly at its first frame: a first frame dreamt from
  a caption (or none), connected to the clip.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from worldsim.config import check, check_out
from worldsim.simulator import WorldSimulator


@dataclass
class Edit:
    frames: np.ndarray  # (T, H, W, 3) uint8: the whole result
    actions: np.ndarray  # (T,) int64: the action that led to each frame (-1: none)
    made: np.ndarray  # (T,) bool: the frames the model made (False: copied from the input)


def _clip(frames, actions, name: str, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    frames = np.asarray(frames)
    check(frames.ndim == 4 and frames.dtype == np.uint8 and frames.shape[1:] == shape and len(frames) >= 1,
          f"{name} frames", f"{frames.shape} {frames.dtype}", f"uint8 (T, {', '.join(map(str, shape))}), T >= 1: "
          "the model's frame size")
    actions = np.full(len(frames), -1, np.int64) if actions is None else np.asarray(actions, np.int64)
    check(actions.shape == (len(frames),), f"{name} actions", actions.shape, f"({len(frames)},): one per frame")
    return frames, actions


def _frame_shape(sim: WorldSimulator) -> tuple[int, ...]:
    shape = sim.metadata.get("frame_shape")
    if shape is None:
        raise ValueError("editing needs a checkpoint's metadata: make the simulator with WorldSimulator.from_checkpoint")
    return tuple(shape)


def restyle(sim: WorldSimulator, frames: np.ndarray, actions: np.ndarray | None, caption: str, *,
            strength: float = 0.8, guidance: float = 10.0, steps: int = 8, seed: int = 0) -> Edit:
    """The clip (T, H, W, 3) uint8 with its actions (T,) (the action that led to each frame; -1 or None for none)
    made again under `caption`: each frame noised to `strength` and denoised against the restyled frames before it,
    in `steps` solver passes, with classifier-free guidance `guidance`."""
    frames, actions = _clip(frames, actions, "clip", _frame_shape(sim))
    check(0.0 <= strength <= 1.0, "strength", strength, "a noise level in [0, 1] (0: the clip as it is)")
    sim.seed(seed)
    sim.begin(1)
    out = [sim.guided_step(actions[i:i + 1], captions=[caption], guidance=guidance, target=frames[i:i + 1],
                           strength=strength, steps=steps).frames[0] for i in range(len(frames))]
    return Edit(np.stack(out), actions, np.ones(len(frames), bool))


def connect(sim: WorldSimulator, a: np.ndarray, b: np.ndarray, length: int = 8, *, a_actions=None, b_actions=None,
            actions=None, caption: str = "", guidance: float = 1.0, steps: int = 8, seed: int = 0) -> Edit:
    """Clip A (T_a, H, W, 3), then `length` transition frames the model makes under `actions` (length,) (default:
    the first action, repeated: e.g. Craft2D's "noop"), then clip B (T_b, H, W, 3) as it is. Transition frame k of
    L is denoised from B's first frame noised to 1 - k / (L + 1), against A and the transition so far."""
    shape = _frame_shape(sim)
    a, a_actions = _clip(a, a_actions, "clip A", shape)
    b, b_actions = _clip(b, b_actions, "clip B", shape)
    check(isinstance(length, (int, np.integer)) and length >= 1, "length", length, "transition frames >= 1")
    actions = np.zeros(length, np.int64) if actions is None else np.asarray(actions, np.int64)
    check(actions.shape == (length,), "actions", actions.shape, f"({length},): one per transition frame")
    keep = sim.dit.config.context - 1  # older frames of A would leave the window at once
    sim.seed(seed)
    sim.reset(a[None, -keep:], a_actions[None, -keep:])
    made = [sim.guided_step(actions[k - 1:k], captions=[caption] if caption else None, guidance=guidance,
                            target=b[:1], strength=1.0 - k / (length + 1), steps=steps).frames[0]
            for k in range(1, length + 1)]
    b_actions = b_actions.copy()
    if b_actions[0] < 0:  # B's first frame now follows the transition: the transition's action led to it
        b_actions[0] = actions[-1]
    return Edit(np.concatenate([a, np.stack(made), b]), np.concatenate([a_actions, actions, b_actions]),
                np.concatenate([np.zeros(len(a), bool), np.ones(length, bool), np.zeros(len(b), bool)]))


def extend_backward(sim: WorldSimulator, frames: np.ndarray, length: int = 8, *, clip_actions=None, actions=None,
                    caption: str = "", guidance: float = 10.0, steps: int = 8, seed: int = 0) -> Edit:
    """`length` frames that lead into the clip (T, H, W, 3), then the clip: a first frame dreamt from `caption` (""
    for an unconditioned one; needs a model trained with captions), connected to the clip's first frame by
    length - 1 transition frames under `actions` (length - 1,), `steps` solver passes each."""
    shape = _frame_shape(sim)
    frames, clip_actions = _clip(frames, clip_actions, "clip", shape)
    check(isinstance(length, (int, np.integer)) and length >= 2, "length", length, "frames >= 2 (a first frame "
          "and at least one transition frame)")
    if sim.dit.text is not None:
        first = sim.imagine([caption], guidance=guidance, seed=seed)
    else:
        check(not caption, "caption", caption, "'' for a model trained without captions")
        sim.seed(seed)
        sim.begin(1)
        first = sim.guided_step(np.array([-1]), steps=16).frames
    out = connect(sim, first, frames, length - 1, b_actions=clip_actions, actions=actions, steps=steps, seed=seed)
    out.made[0] = True  # the dreamt first frame is the model's too
    return out


# ---- the commands: worldsim restyle | connect | extend ----------------------------------------------------------

def read_clip(data: str | Path, episode: int, start: int = 0, length: int | None = None) -> tuple[np.ndarray,
                                                                                                  np.ndarray]:
    """Frames (T, H, W, 3) uint8 and actions (T,) of episode `episode` (its id) of a dataset (`worldsim collect`, or
    a recording saved from `worldsim play`), from frame `start`, `length` frames (None: to the episode's end)."""
    from worldsim.data.shards import open_dataset

    _, shards = open_dataset(Path(data))
    for shard in shards:
        for e in shard.meta["episodes"]:
            if e["id"] != episode:
                continue
            n = e["length"] - start if length is None else length
            check(0 <= start and n >= 1 and start + n <= e["length"], "start, length", (start, length),
                  f"a run of frames inside episode {episode}'s {e['length']}")
            rows = slice(e["start"] + start, e["start"] + start + n)
            return np.array(shard.arrays["frames"][rows]), np.array(shard.arrays["actions"][rows], np.int64)
    ids = [e["id"] for shard in shards for e in shard.meta["episodes"]]
    raise ValueError(f"episode={episode}: not in {data}; its episodes are {ids[:10]}{'...' if len(ids) > 10 else ''}")


@dataclass(frozen=True)
class EditConfig:
    data: str = field(default="", metadata={"help": "dataset directory the clip comes from (worldsim collect, or a "
                                                    "recording saved from worldsim play)"})
    episode: int = field(default=0, metadata={"help": "the clip's episode id in data"})
    start: int = field(default=0, metadata={"help": "the clip's first frame in its episode"})
    length: int = field(default=32, metadata={"help": "frames of the clip"})
    checkpoint: str | None = field(default=None, metadata={"help": "world model (default: the shipped one)"})
    prompt: str = field(default="", metadata={"help": "text the result should follow, expanded into the captions' "
                                                      "style (worldsim.prompt)"})
    guidance: float = field(default=10.0, metadata={"help": "how hard the result follows the prompt (classifier-free "
                                                           "guidance; 1: none)"})
    seed: int = field(default=0, metadata={"help": "seed of the sampling noise"})
    out: str = field(default="edit.gif", metadata={"help": "the file to write (.gif or .mp4)"})
    scale: int = field(default=4, metadata={"help": "output pixels per frame pixel"})
    steps: int = field(default=8, metadata={"help": "solver passes a made frame"})

    def __post_init__(self):
        check(bool(self.data), "data", self.data, "a dataset directory to take the clip from")
        check(self.steps >= 1, "steps", self.steps, "an integer >= 1")
        check(self.length >= 1 and self.start >= 0, "start, length", (self.start, self.length), "start >= 0 and "
              "length >= 1")
        check(0 <= self.guidance <= 100, "guidance", self.guidance, "a scale in [0, 100] (1: no guidance)")
        check(self.scale >= 1, "scale", self.scale, "an integer >= 1")
        check_out("out", self.out, (".gif", ".mp4"))


@dataclass(frozen=True)
class RestyleConfig(EditConfig):
    strength: float = field(default=0.8, metadata={"help": "noise level each frame is remade from: 0 keeps the clip, "
                                                           "1 ignores it"})

    def __post_init__(self):
        super().__post_init__()
        check(0 <= self.strength <= 1, "strength", self.strength, "a noise level in [0, 1]")


@dataclass(frozen=True)
class ExtendConfig(EditConfig):
    transition: int = field(default=8, metadata={"help": "frames the model makes: before the clip (extend), between "
                                                          "the clips (connect)"})

    def __post_init__(self):
        super().__post_init__()
        check(self.transition >= 1, "transition", self.transition, "frames >= 1")


@dataclass(frozen=True)
class ConnectConfig(ExtendConfig):
    to_episode: int = field(default=1, metadata={"help": "clip B's episode id in data"})
    to_start: int = field(default=0, metadata={"help": "clip B's first frame in its episode"})


def _open(cfg: EditConfig) -> tuple[WorldSimulator, str]:
    from worldsim.prompt import expand_prompt
    from worldsim.simulator import load_simulator

    sim, _ = load_simulator(cfg.checkpoint, None, None, "cpu", batch_size=1)
    caption = ""
    if cfg.prompt:
        expansion = expand_prompt(cfg.prompt, vocabulary=sim.dit.config.vocab)
        caption = expansion.caption
        unknown = f" (words it could not use: {', '.join(expansion.unknown)})" if expansion.unknown else ""
        print(f"prompt {cfg.prompt!r} -> caption {caption!r}{unknown}")
    return sim, caption


def _write(cfg: EditConfig, panels: list[np.ndarray], sim: WorldSimulator) -> Path:
    from worldsim.media import side_by_side, upscale, write_video

    frames = [upscale(side_by_side(list(row)), cfg.scale) for row in zip(*panels)]
    return write_video(cfg.out, frames, sim.metadata.get("render_fps") or 10)


def run_restyle(cfg: RestyleConfig) -> str:
    sim, caption = _open(cfg)
    frames, actions = read_clip(cfg.data, cfg.episode, cfg.start, cfg.length)
    out = restyle(sim, frames, actions, caption, strength=cfg.strength, guidance=cfg.guidance, steps=cfg.steps,
                  seed=cfg.seed)
    return f"wrote {_write(cfg, [frames, out.frames], sim)}, {len(frames)} frames: the clip (left), restyled (right)"


def run_connect(cfg: ConnectConfig) -> str:
    sim, caption = _open(cfg)
    a, a_actions = read_clip(cfg.data, cfg.episode, cfg.start, cfg.length)
    b, b_actions = read_clip(cfg.data, cfg.to_episode, cfg.to_start, cfg.length)
    out = connect(sim, a, b, cfg.transition, a_actions=a_actions, b_actions=b_actions, caption=caption,
                  guidance=cfg.guidance, steps=cfg.steps, seed=cfg.seed)
    path = _write(cfg, [out.frames], sim)
    return f"wrote {path}, {len(out.frames)} frames: clip A ({len(a)}), {cfg.transition} made, clip B ({len(b)})"


def run_extend(cfg: ExtendConfig) -> str:
    sim, caption = _open(cfg)
    frames, actions = read_clip(cfg.data, cfg.episode, cfg.start, cfg.length)
    out = extend_backward(sim, frames, cfg.transition + 1, clip_actions=actions, caption=caption,
                          guidance=cfg.guidance, steps=cfg.steps, seed=cfg.seed)
    return f"wrote {_write(cfg, [out.frames], sim)}, {len(out.frames)} frames: {cfg.transition + 1} made, then the clip"
