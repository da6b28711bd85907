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

from dataclasses import dataclass

import numpy as np

from worldsim.config import check
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
            strength: float = 0.6, guidance: float = 3.0, steps: int = 8, seed: int = 0) -> Edit:
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
                    caption: str = "", guidance: float = 3.0, seed: int = 0) -> Edit:
    """`length` frames that lead into the clip (T, H, W, 3), then the clip: a first frame dreamt from `caption` (""
    for an unconditioned one; needs a model trained with captions), connected to the clip's first frame by
    length - 1 transition frames under `actions` (length - 1,)."""
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
    return connect(sim, first, frames, length - 1, b_actions=clip_actions, actions=actions, seed=seed)
