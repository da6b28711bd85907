"""Everything a probe can ask for the next frames: the engine (truth, ceiling, and corrupted for self-tests), a world
model, and the trivial floors.

A predictor sees a run's context (frames, the actions that led to them, and for engines the game state) and the
actions to continue under, and returns what follows: `predict(contexts, actions, seeds) -> Rollout`, the frames
(R, T, H, W, 3) uint8 with the reward and termination of every step; it may call `on_step(rows)` as it goes, for a
progress bar. The engine's RNG (animals) is seeded per row, so engine rows with other seeds than the reference
measure the engine's own variance. Every engine plays at the view of what it continues: a run's `view`, a context's
frame size.

Everything but the engine is a protocol model (`worldsim.probes.protocol`: reset from frames and actions, stepped
by actions) made a predictor by `protocol.Probed`, the path a user's model takes: the trivial floors (copy-last,
mean-frame, which never pay and never end: the reward floor) and a worldsim checkpoint (`Checkpoint`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from worldsim.envs.craft2d.engine import GameState
from worldsim.envs.craft2d.tiles import TILE_SIZE, Action
from worldsim.probes import protocol
from worldsim.probes.protocol import Probed, Rollout
from worldsim.probes.scenarios import Run, View

MIRROR = {int(Action.LEFT): int(Action.RIGHT), int(Action.RIGHT): int(Action.LEFT),
          int(Action.JUMP_LEFT): int(Action.JUMP_RIGHT), int(Action.JUMP_RIGHT): int(Action.JUMP_LEFT)}
CORRUPTIONS = ("noise", "drop", "swap", "freeze", "blind", "stall")


@dataclass
class Context:
    """The frames a predictor is shown, and the engine state behind the last of them."""

    frames: np.ndarray  # (T0, H, W, 3) uint8
    actions: np.ndarray  # (T0,) int64: the action that led to each frame, -1 for the first
    state: GameState

    @property
    def view(self) -> View:
        return View.of(self.frames.shape[1:])


@dataclass
class Trace:
    """What the engine did on one run: context and continuation, with the camera of every frame."""

    context: Context
    frames: np.ndarray  # (T, H, W, 3) uint8 after each action
    cameras: np.ndarray  # (T0 + T, 2) top-left world tile (x, y) of every frame, context first
    light: np.ndarray  # (T0 + T,) light level of every frame
    rewards: np.ndarray  # (T,) float32 paid by each action
    terminated: np.ndarray  # (T,) bool


def reference(run: Run, seed: int) -> Trace:
    """Play `run` in the engine at its view: the context from its warm-up, then its actions."""
    env = run.view.env()
    obs, _ = env.reset(seed=seed, options={"scenario": run.scenario})
    frames, cameras, light = [obs], [env.game.camera], [env.game.light_level]
    for a in run.warmup:
        frames.append(env.step(a)[0])
        cameras.append(env.game.camera)
        light.append(env.game.light_level)
    context = Context(np.stack(frames), np.array((-1,) + tuple(run.warmup), np.int64), env.get_state())
    steps, rewards, ended = [], [], []
    for a in run.actions:
        obs, reward, terminated, _, _ = env.step(a)
        steps.append(obs)
        rewards.append(reward)
        ended.append(terminated)
        cameras.append(env.game.camera)
        light.append(env.game.light_level)
    return Trace(context, np.stack(steps), np.array(cameras, np.int64), np.array(light, np.int64),
                 np.array(rewards, np.float32), np.array(ended, bool))


class Predictor(Protocol):
    name: str

    def predict(self, contexts: list[Context], actions: np.ndarray, seeds: np.ndarray, on_step=None) -> Rollout:
        ...


class Engine:
    """Craft2D itself, continuing each row from the context's game state with the row's own RNG seed.

    `corruption` breaks it on purpose, `level` in [0, 1] saying how often (the probe suite's self-test): in that
    fraction of steps "noise" adds Gaussian pixel noise (24 grey levels), "swap" exchanges left and right, "freeze"
    skips the animals' update, "blind" ignores the action and "stall" stops the clock (at level 1 the light never
    changes: a day, or a night, that never ends); "drop" blanks that fraction of the view's cells in
    every frame. The random draws do not depend on `level`, so a higher level corrupts everything a lower one does,
    and more.
    """

    def __init__(self, corruption: str | None = None, level: float = 0.0):
        if corruption is not None and corruption not in CORRUPTIONS:
            raise ValueError(f"corruption={corruption!r}: expected None or one of {CORRUPTIONS}")
        if not 0.0 <= level <= 1.0:
            raise ValueError(f"level={level}: expected a fraction in [0, 1]")
        self.corruption, self.level = corruption, level
        self.name = "engine" if corruption is None else f"engine+{corruption}@{level:g}"

    def predict(self, contexts: list[Context], actions: np.ndarray, seeds: np.ndarray, on_step=None) -> Rollout:
        envs = {}  # view -> Craft2D at it: each row goes on at its context's view
        out, rewards, ended = [], [], []
        for ctx, row, seed in zip(contexts, actions, seeds):
            if ctx.view not in envs:
                envs[ctx.view] = ctx.view.env()
            env = envs[ctx.view]
            env.set_state(ctx.state)
            env.np_random = np.random.default_rng(int(seed))  # the animals' own draw for this row
            draws = np.random.default_rng([int(seed), 7919])  # the corruption's draws: the same at every level
            frames, paid, done = [], [], []
            for a in row:
                a = int(a)
                u = draws.random()
                if self.corruption == "swap" and u < self.level:
                    a = MIRROR.get(a, a)
                elif self.corruption == "blind" and u < self.level:
                    a = int(Action.NOOP)
                if self.corruption == "freeze" and u < self.level:
                    env.game._animals = lambda _u: None  # this step only: the instance attribute shadows the method
                if self.corruption == "stall" and u < self.level:
                    env.game.time -= 1  # the step's tick brings it back: this frame is lit as the last one
                frame, reward, terminated, _, _ = env.step(a)
                env.game.__dict__.pop("_animals", None)
                frames.append(self._spoil(frame, draws, u < self.level))
                paid.append(reward)
                done.append(terminated)
            out.append(np.stack(frames))
            rewards.append(paid)
            ended.append(done)
        return Rollout(np.stack(out), np.array(rewards, np.float32), np.array(ended, bool))

    def _spoil(self, frame: np.ndarray, draws: np.random.Generator, hit: bool) -> np.ndarray:
        if self.corruption == "noise":
            noise = draws.standard_normal(frame.shape) * 24  # drawn every step, so the stream is level-independent
            return np.clip(frame + noise, 0, 255).astype(np.uint8) if hit else frame
        if self.corruption == "drop":
            ts = TILE_SIZE
            rows, cols = frame.shape[0] // ts - 1, frame.shape[1] // ts
            gone = draws.random((rows, cols)) < self.level
            frame = frame.copy()
            frame[:rows * ts][np.repeat(np.repeat(gone, ts, 0), ts, 1)] = 0  # (rows * ts, cols * ts) pixel mask
            return frame
        return frame


class CopyLast(Probed):
    """Every future frame is the last context frame, the floor a world model must beat: `protocol.CopyLast` through the
    adapter every user's model goes through."""

    def __init__(self):
        super().__init__(protocol.CopyLast())


class MeanFrame(Probed):
    """Every future frame is the pixel mean of the context: `protocol.MeanFrame` through the adapter."""

    def __init__(self):
        super().__init__(protocol.MeanFrame())


class Checkpoint:
    """A world-model checkpoint as a protocol model, stepped by `WorldSimulator`: the row's noise is seeded from the
    batch's seed (row b: seed + b), and the context is what the window holds beside the frame being made."""

    name = "model"

    def __init__(self, sim):
        self.sim = sim
        self.context = sim.dit.config.context - 1  # older context frames would leave the window at once

    def reset(self, frames, actions, seed):
        self.sim.seed(seed)
        self.sim.reset(frames, actions)

    def step(self, actions):
        s = self.sim.step(actions)
        return s.frames, s.rewards, s.terminated


class TeacherForced:
    """A checkpoint's rewards and endings on the engine's own frames: each engine frame is cached as the step's frame
    (`guided_step` with the frame as its target at strength 0: nothing is dreamt) and the model pays by what it
    reads, its reward/end model or its heads. The frames are the engine's, so only the reward family means anything
    here: it scores the reward model with the dream's drift taken out."""

    name = "model"

    def __init__(self, sim):
        self.sim = sim
        self.context = sim.dit.config.context - 1  # as Checkpoint: older frames would leave the window at once

    def predict(self, contexts: list[Context], actions: np.ndarray, seeds: np.ndarray, on_step=None) -> Rollout:
        truth = Engine().predict(contexts, actions, seeds)
        rewards, ended = np.zeros(actions.shape, np.float32), np.zeros(actions.shape, bool)
        for r, ctx in enumerate(contexts):
            self.sim.seed(int(seeds[r]))
            self.sim.reset(ctx.frames[None, -self.context:], ctx.actions[None, -self.context:])
            for t, a in enumerate(actions[r]):
                out = self.sim.guided_step(np.array([a]), target=truth.frames[r, t][None], strength=0.0)
                rewards[r, t], ended[r, t] = out.rewards[0], out.terminated[0]
            if on_step:
                on_step(len(actions[r]))  # frames
        return Rollout(truth.frames, rewards, ended)


class OneStep:
    """A checkpoint dreaming every step one step ahead of the engine's own history (`WorldSimulator.teacher_step`):
    each frame is the model's, each frame it remembers the engine's, so the families score what the model knows with
    its drift taken out, and a walk away and back asks its memory alone. The engine plays each row's actions from its
    context with the row's seed, as the ceiling's rows do; rows go in batches of at most `batch`, seeded as
    Checkpoint's are. Its rewards are step()'s: read by the heads as the true frame is cached."""

    name = "model"

    def __init__(self, sim, batch: int):
        self.sim, self.batch = sim, batch
        self.context = sim.dit.config.context - 1  # as Checkpoint: older frames would leave the window at once

    def predict(self, contexts: list[Context], actions: np.ndarray, seeds: np.ndarray, on_step=None) -> Rollout:
        truth = Engine().predict(contexts, actions, seeds)
        out = Rollout(np.zeros_like(truth.frames), np.zeros_like(truth.rewards), np.zeros_like(truth.terminated))
        rows, steps = actions.shape
        for lo in range(0, rows, self.batch):
            hi = min(rows, lo + self.batch)
            self.sim.seed(protocol.batch_seed(seeds[lo:hi]))
            self.sim.reset(np.stack([c.frames[-self.context:] for c in contexts[lo:hi]]),  # (B, T0, H, W, 3)
                           np.stack([c.actions[-self.context:] for c in contexts[lo:hi]]))
            for t in range(steps):
                s = self.sim.teacher_step(actions[lo:hi, t], truth.frames[lo:hi, t])
                out.frames[lo:hi, t], out.rewards[lo:hi, t], out.terminated[lo:hi, t] = s.frames, s.rewards, \
                    s.terminated
                if on_step:
                    on_step(hi - lo)
        return out


def load_model(checkpoint: str | None, view: View, *, denoise_steps: int | None = None,
               history_sigma: float | None = None, action_guidance: float | None = None,
               history_guidance: float | None = None, history_window: int | None = None,
               reencode: bool | None = None, device: str = "auto", batch: int = 64,
               teacher_forced: bool = False, one_step: bool = False) -> tuple[Probed | TeacherForced | OneStep, dict]:
    """A Craft2D world-model checkpoint (None: the shipped one) as a predictor that makes frames of `view`, and what
    the report says of it: `view_trained` is whether `view` is among the frame shapes it was trained on. A view its
    autoencoder and patches do not tile is refused, naming it. `teacher_forced`: the TeacherForced predictor of it
    (rewards on the engine's frames); `one_step`: the OneStep predictor (every frame dreamt from the engine's
    history)."""
    from worldsim.checkpoint import trained_views, view_problem
    from worldsim.envs.craft2d import is_craft2d
    from worldsim.simulator import load_simulator, set_view

    sim, path = load_simulator(checkpoint, denoise_steps, None, device, batch_size=1, history_sigma=history_sigma,
                               action_guidance=action_guidance, reencode=reencode,
                               history_guidance=history_guidance, history_window=history_window)
    if not is_craft2d(sim.metadata.get("env")):
        raise ValueError(f"checkpoint {path} was trained on {sim.metadata.get('env')!r}: the probes ask questions "
                         "of Craft2D, and need a Craft2D world model")
    views = trained_views(sim.metadata)  # before set_view, which makes the view the metadata's frame_shape
    h, w, _ = view.frame_shape
    problem = view_problem([h, w, 3], sim.ae.cfg, sim.dit.config)
    if problem:
        raise ValueError(f"view_width={view.width}, view_height={view.height}: checkpoint {path} cannot make frames "
                         f"of {w}x{h} px (W x H): expected {problem}; it was trained at {frame_sizes(views)}")
    _, trained, _ = set_view(sim, (h, w), path)  # as Dream-v0 plays at a view: the metadata says what it makes
    meta = {"checkpoint": str(path), "denoise_steps": sim.denoise_steps, "history_sigma": sim.diffusion.history_sigma,
            "action_guidance": sim.diffusion.action_guidance, "history_guidance": sim.diffusion.history_guidance,
            "history_window": sim.diffusion.history_window, "reencode": sim.diffusion.reencode,
            "context": sim.dit.config.context, "view_trained": trained, "trained_views": [list(v) for v in views],
            "teacher_forced": teacher_forced, "one_step": one_step}
    if teacher_forced:
        return TeacherForced(sim), meta
    return (OneStep(sim, batch) if one_step else Probed(Checkpoint(sim), batch=batch)), meta


def frame_sizes(shapes) -> str:
    """Frame shapes (H, W, 3) as W x H pixels: '64x64, 96x64'."""
    return ", ".join(f"{s[1]}x{s[0]}" for s in shapes)
