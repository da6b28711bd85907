"""`worldsim play`: a person plays in a pygame window, the real game, the learned one, or both side by side.

    worldsim play --real                      Craft2D itself
    worldsim play --dream --checkpoint CKPT   the world model (Dream-v0), from a real start frame or --image PNG
    worldsim play --ghost --checkpoint CKPT   both from the same start, driven by the same keys, with the share of
                                              cells where they agree and a graph of it over the last ticks

The game runs at a fixed tick rate whatever the keys do (day, animals and sand keep moving); each tick takes the
action for the keys held or tapped since the last tick, so holding a key repeats it at the game's rate. R restarts,
P pauses, Ctrl+S saves the last `save_seconds` as a GIF and as a one-episode dataset (plain S is mine-down), ESC
quits.
"""

from __future__ import annotations

import os
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
import pygame  # noqa: E402

from worldsim.agents.human import HELP, KeyboardController  # noqa: E402
from worldsim.envs.craft2d.engine import MAX_HEALTH  # noqa: E402
from worldsim.media import side_by_side  # noqa: E402

MODES = ("real", "dream", "ghost")
PANEL_LINES = 5  # text lines under the view
GRAPH_H = 40  # pixels of the ghost mode's agreement graph
BACKGROUND = (24, 24, 28)
TEXT = (230, 230, 230)
CURVE = (120, 220, 120)


@dataclass(frozen=True)
class PlayArgs:
    mode: str = "real"  # real | dream | ghost
    checkpoint: str | None = None  # dream and ghost: the world model (default: the shipped one)
    denoise_steps: int | None = None  # dream and ghost: solver steps a frame (default: the checkpoint's)
    image: str | None = None  # dream: start from this picture (PNG of the checkpoint's frame size)
    seed: int | None = None  # world and start; None: a new world every run
    scale: int = 8  # window pixels per frame pixel
    fps: float = 10.0  # game ticks per second; 0: as fast as possible (tests)
    max_ticks: int | None = None  # stop after this many ticks (tests, demos); None: until ESC or the window closes
    view_width: int = 8  # tiles, as in Craft2DEnv (the real game)
    view_height: int = 8
    screenshot: str | None = None  # save the window as a PNG when play ends
    save_seconds: float = 10.0  # Ctrl+S keeps this much of the recent past
    save_dir: str = "recordings"

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"mode={self.mode!r}: expected one of {MODES}")
        if self.scale < 1 or self.save_seconds <= 0:
            raise ValueError(f"scale={self.scale}, save_seconds={self.save_seconds}: expected scale >= 1 and a "
                             "positive save_seconds")
        if self.image is not None and self.mode != "dream":
            raise ValueError(f"--image starts the dream alone: use it with --dream, not --{self.mode}")


@dataclass
class PlayResult:
    ticks: int
    episodes: int
    total_reward: float
    last_action: str
    agreement: list[float] = field(default_factory=list)  # ghost: share of matching cells, one per tick
    saved: list[str] = field(default_factory=list)  # files written by Ctrl+S


class Session:
    """The worlds being played (one, or the dream and the real game in ghost mode) and their recent past."""

    def __init__(self, args: PlayArgs):
        self.args = args
        self.real = self.dream = None
        if args.mode in ("real", "ghost"):
            from worldsim.envs.craft2d import Craft2DEnv

            self.real = Craft2DEnv(render_mode="rgb_array", view_width=args.view_width, view_height=args.view_height)
        if args.mode in ("dream", "ghost"):
            from worldsim.envs.craft2d import is_craft2d
            from worldsim.envs.dream import DreamEnv

            self.dream = DreamEnv(checkpoint=args.checkpoint, denoise_steps=args.denoise_steps)
            if self.real is not None and self.real.observation_space.shape != self.dream.observation_space.shape:
                raise ValueError(f"the checkpoint makes {self.dream.observation_space.shape} frames and the game "
                                 f"{self.real.observation_space.shape}: set --view to the checkpoint's size")
            if self.real is not None and not is_craft2d(self.dream.env_id):
                raise ValueError(f"--ghost plays the dream beside Craft2D, but {self.dream.checkpoint} was trained on "
                                 f"{self.dream.env_id!r}: use --dream")
        self.meanings = (self.dream or self.real).get_action_meanings()
        self.frames: list[np.ndarray] = []  # the current frame of each world, dream first
        self.info: dict = {}
        keep = max(2, int(args.save_seconds * (args.fps or 10)))
        self.past: deque = deque(maxlen=keep)  # (frames, action, reward, terminated, truncated), oldest first
        self.agreement: deque = deque(maxlen=200)
        self.episodes = 0

    def reset(self, seed: int | None) -> None:
        self.episodes += 1
        self.past.clear()
        if self.real is not None:
            real_obs, self.info = self.real.reset(seed=seed)
        if self.dream is None:
            self.frames = [real_obs]
        else:
            if self.real is not None:
                options = {"image": real_obs}
            elif self.args.image:
                options = {"image": _read_png(self.args.image)}
            else:
                options = None
            dream_obs, dream_info = self.dream.reset(seed=seed, options=options)
            self.frames = [dream_obs] + ([real_obs] if self.real is not None else [])
            self.info = self.info if self.real is not None else dream_info
        self.past.append((list(self.frames), -1, 0.0, False, False))

    def step(self, action: int) -> tuple[float, bool]:
        """One tick of every world under `action`; (reward of the world shown first, episode over)."""
        frames, rewards, done = [], [], False
        for env in (self.dream, self.real):
            if env is None:
                continue
            obs, reward, terminated, truncated, info = env.step(action)
            frames.append(obs)
            rewards.append(reward)
            done = done or terminated or truncated
            if env is self.real or self.real is None:
                self.info, term, trunc = info, terminated, truncated
        self.frames = frames
        if self.dream is not None and self.real is not None:
            from worldsim.train.metrics import tile_accuracy

            self.agreement.append(tile_accuracy(frames[0][None], frames[1][None]))
        self.past.append((list(frames), action, rewards[0], term, trunc))
        return rewards[0], done

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
        for env in (self.dream, self.real):
            if env is not None:
                env.close()


def play(args: PlayArgs = PlayArgs(), on_tick: Callable[[int], None] | None = None) -> PlayResult:
    """Play with the keyboard until ESC, the window closing or `max_ticks`. `on_tick(n)` runs before tick n reads
    the events (tests post key events there). Returns what happened."""
    session = Session(args)
    session.reset(args.seed)
    pygame.display.init()
    pygame.font.init()
    font = pygame.font.Font(None, max(14, 2 * args.scale + 4))
    line_h = font.get_linesize()
    view = side_by_side(session.frames)
    view_size = (view.shape[1] * args.scale, view.shape[0] * args.scale)
    graph_h = GRAPH_H if args.mode == "ghost" else 0
    window = pygame.display.set_mode((view_size[0], view_size[1] + graph_h + PANEL_LINES * line_h + 8))
    title = {"real": "Craft2D (real game)", "dream": "the dream (world model)",
             "ghost": "left the dream, right the real game"}[args.mode]
    pygame.display.set_caption(f"worldsim: {title}")
    clock = pygame.time.Clock()
    controller = KeyboardController()
    ticks, total, paused, running, action = 0, 0.0, False, True, 0
    episode_return, status, saved, agreement = 0.0, "", [], []
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
                if session.agreement:
                    agreement.append(session.agreement[-1])
                if done:
                    status = f"episode over (return {episode_return:g}): a new start"
                    session.reset(None)
                    episode_return = 0.0
            _draw(window, font, line_h, view_size, graph_h, session, clock.get_fps(), episode_return,
                  "paused (P)" if paused else status)
            clock.tick(args.fps)
            ticks += 1
            if args.max_ticks is not None and ticks >= args.max_ticks:
                break
        if args.screenshot:
            pygame.image.save(window, args.screenshot)
    finally:
        session.close()
        pygame.display.quit()
    return PlayResult(ticks=ticks, episodes=session.episodes, total_reward=total,
                      last_action=session.meanings[action], agreement=agreement, saved=saved)


def _draw(window, font, line_h, view_size, graph_h, session: Session, fps, episode_return, status) -> None:
    window.fill(BACKGROUND)
    view = side_by_side(session.frames)
    surface = pygame.surfarray.make_surface(view.transpose(1, 0, 2))  # pygame wants (W, H, 3)
    window.blit(pygame.transform.scale(surface, view_size), (0, 0))
    if graph_h:
        _graph(window, pygame.Rect(0, view_size[1], view_size[0], graph_h), list(session.agreement))
    info = session.info
    head = f"{fps:4.1f} fps  return {episode_return:g}"
    if "health" in info:
        inv = " ".join(f"{k}:{v}" for k, v in info["inventory"].items()) or "empty"
        head += f"  health {info['health']}/{MAX_HEALTH}  inventory {inv}"
    if session.agreement:
        head += f"  cells agreeing {session.agreement[-1]:.0%}"
    lines = [head, status or info.get("caption", "")]
    lines += _wrap(HELP + ", R restart, P pause, Ctrl+S save", font, view_size[0] - 8)
    for n, text in enumerate(lines[:PANEL_LINES]):
        window.blit(font.render(text, True, TEXT), (4, view_size[1] + graph_h + 4 + n * line_h))
    pygame.display.flip()


def _graph(window, rect: pygame.Rect, values: list[float]) -> None:
    """Agreement between the dream and the game over the last ticks: 100% at the top, 0% at the bottom."""
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

    if not Path(path).exists():
        raise FileNotFoundError(f"--image {path}: no such file")
    return np.asarray(Image.open(path).convert("RGB"))
