"""`worldsim play`: a person plays in a pygame window, the real game, the learned one, or both side by side.

    worldsim play mode=real                      Craft2D itself
    worldsim play mode=dream checkpoint=CKPT     the world model (Dream-v0), from a real start frame or image=PNG
    worldsim play mode=ghost checkpoint=CKPT     both from the same start, driven by the same keys (rollout.Worlds,
                                                 the loop `worldsim dream` runs too), with the share of cells a
                                                 person sees alike and a graph of it over the last ticks

The game runs at a fixed tick rate whatever the keys do (day, animals and sand keep moving); each tick takes the
action for the keys held or tapped since the last tick, so holding a key repeats it at the game's rate. R restarts,
P pauses, Ctrl+S saves the last `save_seconds` as a GIF and as a one-episode dataset (plain S is mine-down), ESC
quits.
"""

from __future__ import annotations

import os
import sys
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
import pygame  # noqa: E402

from worldsim.agents.human import HELP, KeyboardController  # noqa: E402
from worldsim.config import check, check_out  # noqa: E402
from worldsim.envs.craft2d.engine import MAX_HEALTH  # noqa: E402
from worldsim.media import side_by_side  # noqa: E402
from worldsim.rollout import Agreement, open_worlds  # noqa: E402

MODES = ("real", "dream", "ghost")
PANEL_LINES = 5  # text lines under the view
GRAPH_H = 40  # pixels of the ghost mode's agreement graph
GRAPH_TICKS = 200  # the last ticks the graph shows
BACKGROUND = (24, 24, 28)
TEXT = (230, 230, 230)
CURVE = (120, 220, 120)
HEADLESS_DRIVERS = ("dummy", "offscreen")  # SDL drivers that draw to memory, as the tests do


@dataclass(frozen=True)
class PlayConfig:
    mode: str | None = field(default=None, metadata={
        "help": "dream (the world model), real (Craft2D itself) or ghost (both side by side, same start, same keys); "
                "default: dream when there is a checkpoint to play, else real"})
    checkpoint: str | None = field(default=None, metadata={"help": "world model for dream and ghost (default: the "
                                                                   "shipped one)"})
    denoise_steps: int | None = field(default=None, metadata={"help": "solver steps a frame (default: the "
                                                                      "checkpoint's)"})
    image: str | None = field(default=None, metadata={"help": "dream: start from this PNG (the view's frame size)"})
    prompt: str | None = field(default=None, metadata={
        "help": "dream: start from a first frame dreamt from this text (\"snowy night with a pig\"), for checkpoints "
                "trained with captions; every new episode starts from it again"})
    guidance: float = field(default=10.0, metadata={"help": "with prompt=: how hard the first frame follows it "
                                                           "(classifier-free guidance; 1: none)"})
    seed: int | None = field(default=None, metadata={"help": "world seed (default: a new world each run)"})
    scale: int = field(default=8, metadata={"help": "window pixels per game pixel"})
    fps: float = field(default=10.0, metadata={"help": "game ticks per second (0: as fast as it goes)"})
    steps: int | None = field(default=None, metadata={"help": "stop after this many ticks (default: at ESC); with "
                                                              "screenshot=, how to play without a display"})
    view_width: int | None = field(default=None, metadata={"help": "view width in tiles (default: the checkpoint's; "
                                                                   "8 for the real game); the dream plays at any view "
                                                                   "its model tiles, and says when it was not trained "
                                                                   "at it"})
    view_height: int | None = field(default=None, metadata={"help": "view height in tiles, HUD row included "
                                                                     "(default: the checkpoint's; 8 for the real game)"})
    screenshot: str | None = field(default=None, metadata={"help": "save the window to this PNG when play ends"})
    save_seconds: float = field(default=10.0, metadata={"help": "Ctrl+S saves this many seconds of the recent past"})
    save_dir: str = field(default="recordings", metadata={"help": "folder of what Ctrl+S saves (a GIF and a "
                                                                  "one-episode dataset)"})

    def __post_init__(self):
        check(self.mode is None or self.mode in MODES, "mode", self.mode, f"one of {MODES}")
        check(self.scale >= 1, "scale", self.scale, "an integer >= 1")
        check(self.fps >= 0, "fps", self.fps, "ticks per second >= 0 (0: as fast as it goes)")
        check(self.steps is None or self.steps >= 1, "steps", self.steps, "an integer >= 1, or null to play until ESC")
        check(self.denoise_steps is None or self.denoise_steps >= 1, "denoise_steps", self.denoise_steps,
              "an integer >= 1, or null for the checkpoint's")
        check(self.save_seconds > 0, "save_seconds", self.save_seconds, "a positive number of seconds")
        for name in ("view_width", "view_height"):
            value = getattr(self, name)
            check(value is None or value >= 2, name, value, "at least 2 tiles, or null")
        check(self.image is None or self.mode in (None, "dream"), "image", self.image,
              f"a start for the dream alone: use it with mode=dream, not mode={self.mode}")
        check(self.image is None or Path(self.image).is_file(), "image", self.image, "an existing PNG file")
        check(self.prompt is None or self.mode in (None, "dream"), "prompt", self.prompt,
              f"a start for the dream alone (the real game cannot start from text): use it with mode=dream, not "
              f"mode={self.mode}")
        check(self.prompt is None or self.image is None, "prompt", self.prompt, "one start: a prompt or an image")
        check(0 <= self.guidance <= 100, "guidance", self.guidance, "a scale in [0, 100] (1: no guidance)")
        if self.screenshot is not None:
            check_out("screenshot", self.screenshot, (".png",))


class NoDisplay(RuntimeError):
    """Play would open a window nobody can see."""


def display_problem(cfg: PlayConfig, scripted: bool = False) -> str | None:
    """Why a window could not be seen, or None. SDL's dummy and offscreen drivers draw to memory: fine for a run that
    ends by itself (steps=, or a script posting the keys: the tests), a silent hang otherwise. On Linux, a window
    needs X or Wayland."""
    driver = os.environ.get("SDL_VIDEODRIVER", "").lower()
    instead = ("to see the learned world without a display, write a rollout: `worldsim dream out=rollout.gif` (or "
               "play headless with steps=N screenshot=PNG)")
    if driver in HEADLESS_DRIVERS:
        if cfg.steps is None and not scripted:
            return f"SDL_VIDEODRIVER={driver} draws to no screen, and without steps= play would never end; {instead}"
        return None
    if sys.platform.startswith("linux") and not driver and not (os.environ.get("DISPLAY")
                                                                  or os.environ.get("WAYLAND_DISPLAY")):
        return f"no display to open a window on (DISPLAY and WAYLAND_DISPLAY are unset); {instead}"
    return None


@dataclass
class PlayResult:
    ticks: int
    episodes: int
    total_reward: float
    last_action: str
    agreement: list[Agreement] = field(default_factory=list)  # ghost: one per tick
    saved: list[str] = field(default_factory=list)  # files written by Ctrl+S


class Session:
    """The worlds being played (rollout.Worlds: one, or the dream beside the real game) and their recent past."""

    def __init__(self, args: PlayConfig):
        self.args = args
        self.mode = args.mode or "dream"
        self.worlds = open_worlds(args.checkpoint, args.denoise_steps, dream=self.mode != "real",
                                  real=self.mode != "dream", view=(args.view_width, args.view_height))
        self.dream = self.worlds.dream
        self.meanings = self.worlds.meanings
        self.image = _read_png(args.image) if args.image else None
        keep = max(2, int(args.save_seconds * (args.fps or 10)))
        self.past: deque = deque(maxlen=keep)  # (frames, action, reward, terminated, truncated), oldest first
        self.agreement: list[Agreement] = []  # ghost: one per tick, over every episode

    @property
    def frames(self) -> list[np.ndarray]:
        return self.worlds.frames

    @property
    def info(self) -> dict:
        return self.worlds.info

    @property
    def episodes(self) -> int:
        return self.worlds.episodes

    def reset(self, seed: int | None) -> None:
        self.past.clear()
        self.worlds.reset(seed, self.image, self.args.prompt, self.args.guidance)
        self.past.append((list(self.frames), -1, 0.0, False, False))

    def step(self, action: int) -> tuple[float, bool]:
        """One tick of every world under `action`; (reward of the world shown first, episode over)."""
        reward, term, trunc = self.worlds.step(action)
        if self.worlds.agreement is not None:
            self.agreement.append(self.worlds.agreement)
        self.past.append((list(self.frames), action, reward, term, trunc))
        return reward, term or trunc

    def save(self, directory: Path, name: str) -> list[str]:
        """The recent past as a GIF (the views side by side) and as a one-episode dataset of the first world."""
        from worldsim.media import write_video

        directory.mkdir(parents=True, exist_ok=True)
        gif = write_video(directory / f"{name}.gif", [side_by_side(f) for f, *_ in self.past], self.args.fps or 10)
        return [str(gif), str(self._save_episode(directory / name))]

    def _save_episode(self, root: Path) -> Path:
        from worldsim.data.shards import ShardWriter, dataset_manifest, write_manifest

        rows = list(self.past)
        manifest = dataset_manifest(env="worldsim/Dream-v0" if self.dream else "worldsim/Craft2D-v0",
                                    action_meanings=self.meanings, frame_shape=rows[0][0][0].shape, captions=False,
                                    agent="human", steps=len(rows), workers=1, seed=self.args.seed,
                                    source="worldsim play",
                                    checkpoint=str(self.dream.checkpoint) if self.dream else None)
        root.mkdir(parents=True, exist_ok=True)
        write_manifest(root, manifest)
        writer = ShardWriter(root, 0, 0, tuple(manifest["frame_shape"]), capacity=len(rows))
        for i, (frames, action, reward, terminated, truncated) in enumerate(rows):
            # the first kept row starts the saved episode: no action led to it there
            writer.add(frames[0], -1 if i == 0 else action, reward, terminated, truncated, 0, "", None)
        writer.mark_truncated()  # the recording stops, the episode does not end
        writer.end_episode(0, -1 if self.args.seed is None else self.args.seed, "human", cut=True)
        writer.flush()
        return root

    def close(self) -> None:
        self.worlds.close()


def play(args: PlayConfig = PlayConfig(), on_tick: Callable[[int], None] | None = None) -> PlayResult:
    """Play with the keyboard until ESC, the window closing or `steps`. `on_tick(n)` runs before tick n reads the
    events (tests post key events there). Returns what happened. Raises NoDisplay, before loading anything, where no
    one could see the window."""
    problem = display_problem(args, scripted=on_tick is not None)
    if problem:
        raise NoDisplay(problem)
    session = Session(args)
    session.reset(args.seed)
    pygame.display.init()
    pygame.font.init()
    font = pygame.font.Font(None, max(14, 2 * args.scale + 4))
    line_h = font.get_linesize()
    view = side_by_side(session.frames)
    view_size = (view.shape[1] * args.scale, view.shape[0] * args.scale)
    graph_h = GRAPH_H if session.mode == "ghost" else 0
    window = pygame.display.set_mode((view_size[0], view_size[1] + graph_h + PANEL_LINES * line_h + 8))
    title = {"real": "Craft2D (real game)", "dream": "the dream (world model)",
             "ghost": "left the dream, right the real game"}[session.mode]
    pygame.display.set_caption(f"worldsim: {title}")
    clock = pygame.time.Clock()
    controller = KeyboardController()
    ticks, total, paused, running, action = 0, 0.0, False, True, 0
    episode_return, status, saved = 0.0, "", []
    if session.dream is not None and not session.dream.view_trained:
        status = "a view this model was not trained at: its frames may be poor"
    try:
        while running:
            if on_tick:
                on_tick(ticks)
            for event in pygame.event.get():
                if event.type == pygame.QUIT or (event.type == pygame.KEYDOWN and event.key == pygame.K_ESCAPE):
                    running = False
                elif event.type == pygame.KEYDOWN and event.key == pygame.K_r:
                    session.reset(None)
                    episode_return, status = 0.0, "restarted"
                    controller.reset()
                elif event.type == pygame.KEYDOWN and event.key == pygame.K_p:
                    paused = not paused
                elif event.type == pygame.KEYDOWN and event.key == pygame.K_s and event.mod & pygame.KMOD_CTRL:
                    files = session.save(Path(args.save_dir), f"play-{session.episodes}-{ticks}")
                    saved += files
                    status = f"saved {files[0]} and the episode {files[1]}"
                else:
                    controller.handle(event)
            if not running:
                break
            if not paused:
                action = controller.action()
                reward, done = session.step(action)
                total += reward
                episode_return += reward
                if done:
                    status = f"episode over (return {episode_return:g}): a new start"
                    session.reset(None)
                    episode_return = 0.0
            _draw(window, font, line_h, view_size, graph_h, session, clock.get_fps(), episode_return,
                  "paused (P)" if paused else status)
            clock.tick(args.fps)
            ticks += 1
            if args.steps is not None and ticks >= args.steps:
                break
        if args.screenshot:
            pygame.image.save(window, args.screenshot)
    finally:
        session.close()
        pygame.display.quit()
    return PlayResult(ticks=ticks, episodes=session.episodes, total_reward=total,
                      last_action=session.meanings[action], agreement=session.agreement, saved=saved)


def _draw(window, font, line_h, view_size, graph_h, session: Session, fps, episode_return, status) -> None:
    window.fill(BACKGROUND)
    view = side_by_side(session.frames)
    surface = pygame.surfarray.make_surface(view.transpose(1, 0, 2))  # pygame wants (W, H, 3)
    window.blit(pygame.transform.scale(surface, view_size), (0, 0))
    if graph_h:
        _graph(window, pygame.Rect(0, view_size[1], view_size[0], graph_h),
               [a.seen for a in session.agreement[-GRAPH_TICKS:]])
    info = session.info
    head = f"{fps:4.1f} fps  return {episode_return:g}"
    if "health" in info:
        inv = " ".join(f"{k}:{v}" for k, v in info["inventory"].items()) or "empty"
        head += f"  health {info['health']}/{MAX_HEALTH}  inventory {inv}"
    seen = session.worlds.agreement
    if seen is not None:  # what a person sees: sprite and light; the parts beside it say which one differs
        head += (f"  seen alike {seen.seen:.0%} (sprites {seen.sprites:.0%}, light {seen.light[0]}/{seen.light[1]}"
                 f"{'' if seen.hud else ', HUD differs'})")
    lines = [head, status or info.get("caption", "")]
    lines += _wrap(HELP + ", R restart, P pause, Ctrl+S save", font, view_size[0] - 8)
    for n, text in enumerate(lines[:PANEL_LINES]):
        window.blit(font.render(text, True, TEXT), (4, view_size[1] + graph_h + 4 + n * line_h))
    pygame.display.flip()


def _graph(window, rect: pygame.Rect, values: list[float]) -> None:
    """Cells seen alike in the dream and the game over the last ticks: 100% at the top, 0% at the bottom."""
    pygame.draw.rect(window, (40, 40, 46), rect)
    if len(values) > 1:
        step = rect.width / (len(values) - 1)
        points = [(rect.x + i * step, rect.bottom - 2 - v * (rect.height - 4)) for i, v in enumerate(values)]
        pygame.draw.lines(window, CURVE, False, points, 2)


def _wrap(text: str, font: pygame.font.Font, width: int) -> list[str]:
    lines, line = [], ""
    for word in text.split(" "):
        trial = f"{line} {word}".strip()
        if font.size(trial)[0] > width and line:
            lines.append(line)
            line = word
        else:
            line = trial
    return lines + [line]


def _read_png(path: str) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(path).convert("RGB"))
