"""The dream beside the real game, one loop for both commands that show it: `worldsim dream` (an agent drives it,
headless, into a GIF or MP4) and `worldsim play` (a person drives it, in a window).

    worldsim dream steps=300 agent=explorer out=rollout.gif

For a Craft2D checkpoint the real game starts from a seeded world, the dream starts from the real first frame, and
the same actions drive both: left the dream, right the game. Agreement is measured as a person sees the two frames:
a cell counts when it shows the same sprite at the same light level (Craft2D's exact decoder reads both); the
summary also gives the sprites alone, and how often the light and the HUD (health, inventory) differ.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from worldsim.config import check, check_out
from worldsim.media import FORMATS


@dataclass(frozen=True)
class DreamConfig:
    checkpoint: str | None = field(default=None, metadata={"help": "world-model checkpoint (default: the shipped one)"})
    steps: int = field(default=300, metadata={"help": "env steps to roll out"})
    agent: str | None = field(default=None, metadata={
        "help": "who chooses the actions: explorer (reads the real game's state, so it needs real=true and a Craft2D "
                "checkpoint), random or mixture (default: explorer beside the real game, random without it)"})
    out: str = field(default="rollout.gif", metadata={"help": f"the file to write, one of {FORMATS}"})
    seed: int = field(default=0, metadata={"help": "seed of the world, the agent and the sampling noise"})
    denoise_steps: int | None = field(default=None, metadata={"help": "solver steps a frame (default: the "
                                                                      "checkpoint's)"})
    scale: int = field(default=4, metadata={"help": "output pixels per frame pixel"})
    fps: float | None = field(default=None, metadata={"help": "frames per second of the output (default: the "
                                                              "checkpoint's)"})
    real: bool = field(default=True, metadata={"help": "Craft2D checkpoints: the real game beside the dream, from the "
                                                       "same start and under the same actions (false: the dream alone)"})
    prompt: str | None = field(default=None, metadata={
        "help": "start from a first frame dreamt from this text, for checkpoints trained with captions (the dream "
                "alone: the real game cannot start from text)"})
    guidance: float = field(default=10.0, metadata={"help": "with prompt=: how hard the first frame follows it "
                                                           "(classifier-free guidance; 1: none)"})
    view_width: int | None = field(default=None, metadata={
        "help": "Craft2D checkpoints: view width in tiles, for the dream and the game beside it (default: the "
                "checkpoint's; one it was not trained at is allowed, and said)"})
    view_height: int | None = field(default=None, metadata={"help": "Craft2D checkpoints: view height in tiles, "
                                                                     "HUD row included (default: the checkpoint's)"})

    def __post_init__(self):
        from worldsim.agents.base import agent_names

        check(self.steps >= 1, "steps", self.steps, "an integer >= 1")
        check(self.scale >= 1, "scale", self.scale, "an integer >= 1")
        check(self.denoise_steps is None or self.denoise_steps >= 1, "denoise_steps", self.denoise_steps,
              "an integer >= 1, or null for the checkpoint's")
        check(self.fps is None or self.fps > 0, "fps", self.fps, "a positive frame rate, or null for the checkpoint's")
        check(self.agent is None or self.agent in agent_names(), "agent", self.agent, f"one of {agent_names()}")
        check(self.agent != "explorer" or self.real, "agent", self.agent,
              "an agent that sees only frames when real=false: the explorer reads the real game's state (player "
              "position, inventory); use agent=random, or real=true")
        check_out("out", self.out, FORMATS)
        check(0 <= self.guidance <= 100, "guidance", self.guidance, "a scale in [0, 100] (1: no guidance)")
        check(self.prompt is None or self.agent != "explorer", "agent", self.agent,
              "random or mixture with prompt=: the explorer reads the real game's state, and a prompt's world has none")
        for name in ("view_width", "view_height"):
            value = getattr(self, name)
            check(value is None or value >= 2, name, value, "at least 2 tiles, or null")


@dataclass(frozen=True)
class Agreement:
    """How the dream's frame matches the real game's, read by Craft2D's exact decoder from both."""

    sprites: float  # share of cells (world and HUD row) right as the probes judge them, whatever the light
    light: tuple[int, int]  # light levels of the dream and of the game
    hud: bool  # health, selected block and inventory read the same

    @property
    def seen(self) -> float:
        """Share of cells a person sees alike: the same sprite at the same light level. Night beside day differs in
        every cell, however alike the sprites are."""
        return self.sprites if self.light[0] == self.light[1] else 0.0


def agreement(dream_frame: np.ndarray, real_frame: np.ndarray) -> Agreement:
    from worldsim.envs.craft2d.decoder import cells_right, decode

    a, b = decode(dream_frame), decode(real_frame)
    return Agreement(float(cells_right(a.cell, a.distance, b.cell).mean()), (a.light_level, b.light_level),
                     a.hud == b.hud)


class Worlds:
    """The dream, the real game, or both from the same start under the same actions. `frames` holds the current
    frame of each, dream first; `info` is the real game's where it runs (agents and the HUD line read it)."""

    def __init__(self, dream=None, real=None):
        self.dream, self.real = dream, real
        self.frames: list[np.ndarray] = []
        self.info: dict = {}
        self.agreement: Agreement | None = None  # of the current frames, when both run
        self.episodes = 0

    @property
    def meanings(self) -> list[str]:
        return (self.dream or self.real).get_action_meanings()

    @property
    def action_space(self):
        return (self.dream or self.real).action_space

    def reset(self, seed: int | None, image: np.ndarray | None = None, prompt: str | None = None,
              guidance: float = 10.0) -> None:
        """A new episode; the dream starts from the real game's first frame, else from `image`, else from a frame
        dreamt from `prompt` (the dream alone), else from its bank."""
        if prompt is not None and (self.real is not None or image is not None):
            raise ValueError("a prompt starts the dream alone: the real game cannot start from text, and an image is "
                             "another start")
        self.episodes += 1
        self.agreement = None
        self.frames = []
        if self.real is not None:
            real_obs, self.info = self.real.reset(seed=seed)
            image = real_obs
            self.frames.append(real_obs)
        if self.dream is not None:
            options = {"image": image} if image is not None else \
                {"prompt": prompt, "guidance": guidance} if prompt is not None else None
            dream_obs, dream_info = self.dream.reset(seed=seed, options=options)
            self.info = self.info if self.real is not None else dream_info
            self.frames.insert(0, dream_obs)

    def step(self, action: int) -> tuple[float, bool, bool]:
        """One step of every world under `action`: (reward of the world shown first, terminated, truncated), the
        episode ending when either world's does."""
        frames, rewards, terminated, truncated = [], [], False, False
        for env in (self.dream, self.real):
            if env is None:
                continue
            obs, reward, term, trunc, info = env.step(action)
            frames.append(obs)
            rewards.append(float(reward))
            terminated, truncated = terminated or term, truncated or trunc
            if env is self.real or self.real is None:
                self.info = info
        self.frames = frames
        if len(frames) == 2:
            self.agreement = agreement(*frames)
        return rewards[0], terminated, truncated

    def close(self) -> None:
        for env in (self.dream, self.real):
            if env is not None:
                env.close()


def open_worlds(checkpoint: str | None = None, denoise_steps: int | None = None, dream: bool = True,
                real: bool | None = None, view: tuple[int | None, int | None] = (None, None)) -> Worlds:
    """`dream`: the world model of `checkpoint`; `real`: the real game beside it (True: required, so the checkpoint
    must be Craft2D's; None: when it is; False: never). `view`: Craft2D tiles (width, height, the HUD row included),
    each None for the checkpoint's (the real game alone: 8); the dream plays at that view (Dream-v0's view=, where a
    view the model was not trained at is allowed: `dream.view_trained` says so), and the game beside it too."""
    from worldsim.envs.craft2d import TILE_SIZE, Craft2DEnv, is_craft2d

    if not dream:
        width, height = (v or 8 for v in view)
        return Worlds(real=Craft2DEnv(render_mode="rgb_array", view_width=width, view_height=height))
    from worldsim.checkpoint import default_checkpoint, read_metadata
    from worldsim.envs.dream import DreamEnv

    frame = None
    if any(v is not None for v in view):  # tiles -> pixels, a side left unset from the checkpoint's frames
        path = checkpoint or default_checkpoint()
        meta = read_metadata(path)
        if not is_craft2d(meta.get("env")):
            raise ValueError(f"view_width={view[0]}, view_height={view[1]}: Craft2D tiles, but {path} was trained on "
                             f"{meta.get('env')!r}; leave them unset")
        h, w, _ = meta["frame_shape"]
        frame = ((view[1] or h // TILE_SIZE) * TILE_SIZE, (view[0] or w // TILE_SIZE) * TILE_SIZE)
    try:
        model = DreamEnv(checkpoint=checkpoint, denoise_steps=denoise_steps, view=frame)
    except ValueError as err:
        if frame is None:
            raise
        raise ValueError(f"view_width={view[0]}, view_height={view[1]} (tiles of {TILE_SIZE} px): {err}") from None
    h, w, _ = model.frame_shape
    size = (w // TILE_SIZE, h // TILE_SIZE)
    if real and not is_craft2d(model.env_id):
        model.close()
        raise ValueError(f"the real game beside the dream is Craft2D, but {model.checkpoint} was trained on "
                         f"{model.env_id!r}: play the dream alone")
    game = None
    if real is not False and is_craft2d(model.env_id):
        game = Craft2DEnv(render_mode="rgb_array", view_width=size[0], view_height=size[1])
    return Worlds(dream=model, real=game)


def run(cfg: DreamConfig, quiet: bool = False) -> dict:
    """Roll out, write `cfg.out`, and return a summary (steps, episodes, and the agreement where there is a game)."""
    from worldsim.agents.base import make_agent
    from worldsim.media import side_by_side, upscale, write_video
    from worldsim.progress import Progress

    worlds = open_worlds(cfg.checkpoint, cfg.denoise_steps, real=None if cfg.real and cfg.prompt is None else False,
                         view=(cfg.view_width, cfg.view_height))
    try:
        game = worlds.real is not None
        name = cfg.agent or ("explorer" if game else "random")
        if name == "explorer" and not game:  # real=true, but the checkpoint is another game's: no state to read
            raise ValueError(f"agent=explorer plays Craft2D from its state, and {worlds.dream.checkpoint} was "
                             f"trained on {worlds.dream.env_id!r}: use agent=random")
        agent = make_agent(name, worlds.action_space, worlds.dream.env_id if game else None)
        seen: list[Agreement] = []
        worlds.reset(cfg.seed, prompt=cfg.prompt, guidance=cfg.guidance)
        start = {k: worlds.info[k] for k in ("caption", "unknown_words")} if cfg.prompt is not None else {}
        agent.reset(cfg.seed)
        frames = [side_by_side(worlds.frames)]
        progress = None if quiet else Progress(cfg.steps, "dream", "steps")
        for t in range(1, cfg.steps + 1):
            _, terminated, truncated = worlds.step(agent.act(worlds.frames[-1], worlds.info))
            frames.append(side_by_side(worlds.frames))
            if worlds.agreement is not None:
                seen.append(worlds.agreement)
            if terminated or truncated:
                worlds.reset(cfg.seed + t, prompt=cfg.prompt, guidance=cfg.guidance)
                agent.reset(cfg.seed + t)
                frames.append(side_by_side(worlds.frames))
            if progress:
                progress.update(t)
        if progress:
            progress.close(cfg.steps)
        fps = cfg.fps or worlds.dream.metadata["render_fps"]
        path = write_video(cfg.out, [upscale(f, cfg.scale) for f in frames], fps)
        summary = {"out": str(path), "steps": cfg.steps, "episodes": worlds.episodes,
                   "denoise_steps": worlds.dream.sim.denoise_steps, "frame_shape": worlds.dream.frame_shape,
                   "view_trained": worlds.dream.view_trained}
        return summary | start | (summarise(seen) if seen else {})
    finally:
        worlds.close()


def summarise(seen: list[Agreement]) -> dict:
    alike = [a.seen for a in seen]
    return {"seen": float(np.mean(alike)), "seen_first_10": float(np.mean(alike[:10])),
            "seen_last_10": float(np.mean(alike[-10:])), "sprites": float(np.mean([a.sprites for a in seen])),
            "light_differs": float(np.mean([a.light[0] != a.light[1] for a in seen])),
            "hud_differs": float(np.mean([not a.hud for a in seen]))}


def describe(summary: dict) -> str:
    line = f"wrote {summary['out']}: {summary['steps']} steps, {summary['episodes']} episode(s), " \
           f"{summary['denoise_steps']} solver step(s) a frame"
    if not summary.get("view_trained", True):
        h, w, _ = summary["frame_shape"]
        line += f", at {w}x{h} pixels, a frame size the model was not trained at"
    if "caption" in summary:
        unknown = summary["unknown_words"]
        line += f"; started from the caption {summary['caption']!r}" + (
            f" (words it could not use: {', '.join(unknown)})" if unknown else "")
    if "seen" in summary:
        line += (f"; cells that look the same in the dream and the real game (same sprite, same light): "
                 f"{summary['seen']:.1%} over the rollout ({summary['seen_first_10']:.1%} in the first 10 steps, "
                 f"{summary['seen_last_10']:.1%} in the last 10); the sprites alone {summary['sprites']:.1%}; the "
                 f"light level differs on {summary['light_differs']:.0%} of steps, the HUD (health, inventory) on "
                 f"{summary['hud_differs']:.0%}")
    return line
