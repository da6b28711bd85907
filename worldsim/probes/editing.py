"""How well a Craft2D world model edits clips (worldsim.edit), scored by the frame decoder on clips the real game plays.

Clips come from Craft2D worlds the mixture agent plays from fixed seeds (never the probe scenarios), so every model
is scored on the same ones.
- **restyle**: each clip made again at another time of day (night for a day clip, day for the others; its biome
  kept in the caption). `changed`: the share of restyled frames whose decoded phase is the one asked; `kept`: the
  share of cells that show the input's sprite (the decoder reads sprites whatever the light, so a night frame of the
  same place keeps every cell). The input itself is the reference row: kept 1, changed what the clips already were.
- **connect**: clip A from one world, clip B from another, `transition` frames between. `arrival`: the cells of the
  last made frame that show B's first frame's sprite (1: it arrived); `valid`: the share of made cells that look like
  some sprite (`VALID_DISTANCE`): a transition must stay a Craft2D picture. A pixel cross-fade from A's last frame to
  B's first is the reference row: it arrives, but its middle frames are no sprites at all.
- **extend**: the same for `extend_backward` into clip B.
- **starts** (image to world, video extension forward): the model started from a clip's first frame (an image), or
  from its first half (a video), then driven by the clip's own actions; `image_h{k}` / `video_h{k}`: the cells of the
  model's frame k steps on that show the real game's sprite (same place, same time). The worlds are ones the model
  never saw (seeds far from the training data's), so this is how well an unseen world is kept.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from worldsim.envs.craft2d.decoder import VALID_DISTANCE, cells_right, decode_cells


@dataclass(frozen=True)
class Clip:
    frames: np.ndarray  # (T, H, W, 3) uint8
    actions: np.ndarray  # (T,) int64, -1 for the first
    phase: str  # of the first frame, from the engine's caption
    biome: str


def craft2d_clips(n: int, length: int, seed: int = 0, view: tuple[int, int] = (8, 8), warmup: int = 20) -> list[Clip]:
    """`n` clips of `length` frames from Craft2D worlds seeded seed, seed + 1, ..., played by the mixture agent after
    `warmup` steps (so the player has walked off its spawn)."""
    import gymnasium as gym

    from worldsim.agents.base import make_agent

    env = gym.make("worldsim/Craft2D-v0", view_width=view[0], view_height=view[1])
    clips = []
    try:
        for i in range(n):
            agent = make_agent("mixture", env.action_space, "worldsim/Craft2D-v0")
            obs, info = env.reset(seed=seed + i)
            agent.reset(seed + i)
            for _ in range(warmup):
                obs, _, terminated, truncated, info = env.step(agent.act(obs, info))
                if terminated or truncated:
                    obs, info = env.reset(seed=seed + 1000 + i)
            frames, actions, first = [obs], [-1], info
            for _ in range(length - 1):
                action = agent.act(obs, info)
                obs, _, terminated, truncated, info = env.step(action)
                if terminated or truncated:
                    break
                frames.append(obs)
                actions.append(action)
            phase = first["caption"].split(",")[0].strip()
            clips.append(Clip(np.stack(frames), np.array(actions, np.int64), phase, first["biome"]))
    finally:
        env.close()
    return clips


def restyle_target(clip: Clip) -> str:
    """The caption a restyle asks for: the other end of the day, the clip's own biome."""
    return f"{'night' if clip.phase in ('day', 'dawn') else 'day'}, {clip.biome} biome"


def _kept(made: np.ndarray, truth: np.ndarray) -> float:
    cells, distance = decode_cells(made)
    truth_cells, _ = decode_cells(truth)
    return float(cells_right(cells, distance, truth_cells).mean())


def score_starts(sim, clips: list[Clip], horizons: tuple[int, ...] = (1, 4, 8)) -> dict:
    """{"image_h{k}", "video_h{k}"}: cells right k steps after an image start (the clip's first frame) and after a
    video start (its first half), the model driven by the clip's actions, against the real game's frames."""
    rows: dict[str, list[float]] = {}
    for i, clip in enumerate(clips):
        for name, given in (("image", 1), ("video", len(clip.frames) // 2)):
            ahead = [k for k in horizons if given - 1 + k < len(clip.frames)]
            if not ahead:
                continue
            sim.seed(i)
            sim.reset(clip.frames[None, :given], clip.actions[None, :given])
            made = [sim.step(clip.actions[given + j:given + j + 1]).frames[0] for j in range(max(ahead))]
            for k in ahead:
                rows.setdefault(f"{name}_h{k}", []).append(_kept(made[k - 1][None], clip.frames[given - 1 + k][None]))
    return {k: float(np.mean(v)) for k, v in sorted(rows.items())}


def score_restyle(sim, clips: list[Clip], strength: float = 0.8, guidance: float = 10.0, steps: int = 8) -> dict:
    """{"changed", "kept"} of the model's restyles, and the input's own ("input_changed"; its kept is 1)."""
    from worldsim.edit import restyle
    from worldsim.probes.adherence import attributes

    changed, kept, before = [], [], []
    for i, clip in enumerate(clips):
        caption = restyle_target(clip)
        target = caption.split(",")[0]
        out = restyle(sim, clip.frames, clip.actions, caption, strength=strength, guidance=guidance, steps=steps,
                      seed=i)
        changed += [attributes(f)["phase"] == target for f in out.frames]
        before += [attributes(f)["phase"] == target for f in clip.frames]
        kept.append(_kept(out.frames, clip.frames))
    return {"changed": float(np.mean(changed)), "kept": float(np.mean(kept)), "input_changed": float(np.mean(before))}


def _transition_scores(made: np.ndarray, goal: np.ndarray) -> tuple[float, float]:
    """(arrival, valid) of made frames (L, H, W, 3) heading for the goal frame (H, W, 3)."""
    cells, distance = decode_cells(made)
    goal_cells, _ = decode_cells(goal[None])
    arrival = float(cells_right(cells[-1:], distance[-1:], goal_cells).mean())
    return arrival, float((distance <= VALID_DISTANCE).mean())


def crossfade(a: np.ndarray, b: np.ndarray, length: int) -> np.ndarray:
    """`length` frames blending frame a into frame b in pixels: the reference a transition is compared with."""
    w = (np.arange(1, length + 1) / (length + 1))[:, None, None, None]
    return np.round((1 - w) * a.astype(np.float64) + w * b.astype(np.float64)).astype(np.uint8)


def score_connect(sim, clips: list[Clip], transition: int = 8, steps: int = 8) -> dict:
    """{"arrival", "valid"} of connect between consecutive clips, of extend_backward into each, and of the
    cross-fade reference ("fade_*")."""
    from worldsim.edit import connect, extend_backward

    rows = {k: [] for k in ("arrival", "valid", "extend_arrival", "extend_valid", "fade_arrival", "fade_valid")}
    for i, (a, b) in enumerate(zip(clips, clips[1:] + clips[:1])):
        out = connect(sim, a.frames, b.frames, transition, a_actions=a.actions, b_actions=b.actions, steps=steps,
                      seed=i)
        for key, value in zip(("arrival", "valid"), _transition_scores(out.frames[out.made], b.frames[0])):
            rows[key].append(value)
        back = extend_backward(sim, b.frames, transition + 1, clip_actions=b.actions, steps=steps, seed=i)
        for key, value in zip(("extend_arrival", "extend_valid"),
                              _transition_scores(back.frames[back.made], b.frames[0])):
            rows[key].append(value)
        fade = crossfade(a.frames[-1], b.frames[0], transition)
        for key, value in zip(("fade_arrival", "fade_valid"), _transition_scores(fade, b.frames[0])):
            rows[key].append(value)
    return {k: float(np.mean(v)) for k, v in rows.items()}
