"""`worldsim dream`: a headless rollout of a world model to a GIF or MP4, beside the real game for Craft2D.

    worldsim dream --steps 300 --agent explorer --out rollout.gif

For a Craft2D checkpoint the real game starts from a seeded world, the dream starts from the real first frame, and
the agent's actions (chosen from the real game, which the scripted agents read) drive both: left the dream, right
the game. The summary gives the fraction of cells that decode to the same sprite in both, over the rollout.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

@dataclass(frozen=True)
class DreamArgs:
    checkpoint: str | None = None  # default: the checkpoint shipped in the package
    steps: int = 300
    agent: str = "explorer"
    out: str = "rollout.gif"
    seed: int = 0
    denoise_steps: int | None = None
    scale: int = 4  # output pixels per frame pixel
    fps: float | None = None  # default: the checkpoint's render_fps
    real: bool = True  # Craft2D checkpoints: run the real game beside the dream

    def __post_init__(self):
        from worldsim.media import FORMATS

        if self.steps < 1 or self.scale < 1:
            raise ValueError(f"steps={self.steps}, scale={self.scale}: expected positive integers")
        if Path(self.out).suffix.lower() not in FORMATS:  # before the rollout, not after it
            raise ValueError(f"out={self.out!r}: expected a file name ending in one of {FORMATS}")


def run(args: DreamArgs, quiet: bool = False) -> dict:
    """Roll out, write `args.out`, and return a summary (steps, episodes, tile accuracy where there is a game)."""
    from worldsim.agents.base import make_agent
    from worldsim.envs.craft2d import TILE_SIZE, Craft2DEnv, is_craft2d
    from worldsim.envs.dream import DreamEnv
    from worldsim.media import upscale, write_video
    from worldsim.progress import Progress

    dream = DreamEnv(checkpoint=args.checkpoint, denoise_steps=args.denoise_steps)
    real = None
    if args.real and is_craft2d(dream.env_id):

        h, w, _ = dream.frame_shape
        real = Craft2DEnv(view_width=w // TILE_SIZE, view_height=h // TILE_SIZE)
    agent = make_agent(args.agent, dream.action_space, dream.env_id if real is not None else None)
    accuracy: list[float] = []
    frames, episodes = [], 0

    def start(seed: int):
        nonlocal episodes
        episodes += 1
        agent.reset(seed)
        if real is None:
            obs, info = dream.reset(seed=seed)
            return obs, None, info
        obs_real, info = real.reset(seed=seed)
        obs, _ = dream.reset(seed=seed, options={"image": obs_real})
        return obs, obs_real, info

    obs, obs_real, info = start(args.seed)
    frames.append(_panel(obs, obs_real))
    progress = None if quiet else Progress(args.steps, "dream", "steps")
    for t in range(1, args.steps + 1):
        action = agent.act(obs_real if real is not None else obs, info)
        obs, _, terminated, truncated, info = dream.step(action)
        if real is not None:
            obs_real, _, real_term, real_trunc, info = real.step(action)
            accuracy.append(_tile_accuracy(obs, obs_real))
            terminated, truncated = terminated or real_term, truncated or real_trunc
        frames.append(_panel(obs, obs_real))
        if terminated or truncated:
            obs, obs_real, info = start(args.seed + t)
            frames.append(_panel(obs, obs_real))
        if progress:
            progress.update(t)
    if progress:
        progress.close(args.steps)
    fps = args.fps or dream.metadata["render_fps"]
    path = write_video(args.out, [upscale(f, args.scale) for f in frames], fps)
    summary = {"out": str(path), "steps": args.steps, "episodes": episodes, "denoise_steps": dream.sim.denoise_steps}
    if accuracy:
        summary["tile_accuracy"] = float(np.mean(accuracy))
        summary["tile_accuracy_first_10"] = float(np.mean(accuracy[:10]))
        summary["tile_accuracy_last_10"] = float(np.mean(accuracy[-10:]))
    return summary


def _panel(dream_frame: np.ndarray, real_frame: np.ndarray | None) -> np.ndarray:
    from worldsim.media import side_by_side

    return side_by_side([dream_frame] if real_frame is None else [dream_frame, real_frame])


def _tile_accuracy(pred: np.ndarray, truth: np.ndarray) -> float:
    from worldsim.train.metrics import tile_accuracy

    return tile_accuracy(pred[None], truth[None])


def describe(summary: dict) -> str:
    line = f"wrote {summary['out']}: {summary['steps']} steps, {summary['episodes']} episode(s), " \
           f"{summary['denoise_steps']} solver step(s) a frame"
    if "tile_accuracy" in summary:
        line += (f"; cells matching the real game: {summary['tile_accuracy']:.1%} over the rollout "
                 f"({summary['tile_accuracy_first_10']:.1%} in the first 10 steps, "
                 f"{summary['tile_accuracy_last_10']:.1%} in the last 10)")
    return line


