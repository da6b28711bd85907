"""The protocol a world model implements to be probed, and the adapter that makes any such model one of the suite's
predictors.

    worldsim probe model=mypkg.mymodule:MyWorldModel [model_kwargs.KEY=VALUE ...]
    worldsim probe model=path/to/my_model.py:MyWorldModel

A world model here is any object with `reset(frames, actions, seed)` and `step(actions)` on numpy arrays:
`WorldModel` below is the spec, and a model needs neither to import this module nor to subclass anything. The suite
resets it from real Craft2D frames and the actions that led to them, steps it with actions, and compares the frames
it returns with the game's. `Probed` makes a model one of the suite's predictors: it batches rows, derives each
batch's seed, and checks everything the model returns, so a wrong shape or dtype is named on the first step instead
of showing up as a bad score. `load` makes one from a `model=` spec.

The suite's own trivial floors (`CopyLast`, `MeanFrame`) are protocol models and go through the same adapter, and so
does a worldsim checkpoint (`predictors.Checkpoint`). The engine and its corrupted versions do not: they go on from
the game's state, which the protocol does not carry on purpose. A benchmark that handed models the state would stop
measuring a world model of pixels (a model could read where the ore is instead of remembering it), and the engine's
ceiling needs a seed per row, not per batch. So the engine stays a `predictors.Predictor` beside the protocol, and the
protocol gives a model what an agent sees: frames and actions.

This module imports only numpy: the predictors module imports it, not the other way round.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    from worldsim.probes.predictors import Context

CHECK_ROWS = 2  # rows of the first reset and step, checked before the engine runs: 2 catches a model stuck at 1


@runtime_checkable
class WorldModel(Protocol):
    """A world model the probe suite can measure: reset from real frames and actions, then stepped by actions.

    Frames
        Craft2D-v0's RGB frames: numpy `uint8` in 0..255, shaped (H, W, 3), `view_width` x `view_height` tiles of
        8 px with the HUD as the bottom row. 64x64 px by default; `worldsim probe view_width=12` plays every run at
        96x64. Every frame `step` returns has the size of the frames `reset` was given (a model that cannot make
        that size raises in `reset`, which ends the run before any scoring, with its message).
    Actions
        numpy `int64` in 0..11, Craft2D-v0's Discrete(12): noop, left, right, jump, jump_left, jump_right, mine,
        mine_up, mine_down, place, place_down, next_block (`worldsim.envs.craft2d.ACTION_MEANINGS`).

    reset(frames, actions, seed) -> None
        Start B rows, forgetting any earlier ones. `frames` (B, T0, H, W, 3) uint8 are the last T0 frames of each
        row's episode so far, oldest first; `actions` (B, T0) int64, where `actions[:, t]` is the action that led to
        `frames[:, t]`, or -1 where none did (an episode's first frame). `seed` is an int in [0, 2**32) for the
        model's own sampling: seed every random draw from it (`np.random.default_rng(seed)`,
        `torch.Generator().manual_seed(seed)`) and a run of the suite repeats exactly. The suite derives it from
        its `seeds=` and `seed=` and the rows in the batch, so other sampling seeds get other values. What reset
        returns is ignored.
    step(actions) -> frames, or (frames, rewards, terminated)
        Advance every row by one action. `actions` (B,) int64 -> `frames` (B, H, W, 3) uint8, each row's frame
        after its action; or a tuple that adds `rewards` (B,) float (what the action paid) and `terminated` (B,)
        bool (the episode ended on this step). A model that returns frames alone never pays and never ends: the
        reward family scores it at its floor, 0. The suite steps every row to the end of its actions, past
        `terminated` too: what comes after an ending is not scored, but must still have the shapes above.

    Batches
        B is at most `max_batch` and the suite's `batch=` (64 by default), and can be any size from 1 to that: the
        suite groups rows by length, and a group's last batch is smaller. Rows of one batch have the same T0 and
        take the same number of steps; `step` gets the B of the last `reset`.

    Optional attributes, read once when the suite starts
        name: str       the report's label (default: the class name)
        context: int    the most past frames `reset` wants: it gets the last `context` (default: all the suite has;
                        every probe shows 4 today)
        max_batch: int  the most rows `reset` may start at once (default: no limit of its own)

    What the suite checks
        Each `step`'s return, the first one on a small batch before the engine plays anything: frames that are not
        a numpy uint8 array of (B, H, W, 3), rewards or terminated that are not (B,) numbers, nothing at all, are
        refused with a `ModelError` that names the model, the method, what came back and what was expected. An
        exception the model raises is re-raised as `ModelFailed`, with the model's own traceback under it.
    """

    def reset(self, frames: np.ndarray, actions: np.ndarray, seed: int) -> None: ...

    def step(self, actions: np.ndarray) -> np.ndarray | tuple[np.ndarray, np.ndarray, np.ndarray]: ...


class CopyLast:
    """Every future frame is the last context frame: the floor a world model must beat."""

    name = "copy-last"
    context = 1  # the last frame is all it looks at

    def reset(self, frames, actions, seed):
        self.last = frames[:, -1]  # (B, H, W, 3)

    def step(self, actions):
        return self.last


class MeanFrame:
    """Every future frame is the pixel mean of the context: a blurry guess of what stays."""

    name = "mean-frame"

    def reset(self, frames, actions, seed):
        self.mean = frames.astype(np.float32).mean(1).round().astype(np.uint8)  # (B, H, W, 3)

    def step(self, actions):
        return self.mean


class Scroller:
    """A walk scrolls the world rows of the last frame a tile the other way, wrapping around; every other action
    leaves the frame as it is. No learning and no memory, yet a walk away and back undoes its own scroll exactly, so
    it shows what permanence and consistency reward when a model merely keeps the frame's content: the leaderboard
    carries it as a reference row beside copy-last."""

    name = "scroller"
    context = 1
    TILE = 8  # Craft2D's tile, in px: the camera follows the player a tile a step
    MOVES = {1: -1, 2: 1, 4: -1, 5: 1}  # left, right, jump_left, jump_right (Craft2D-v0's action numbers)

    def reset(self, frames, actions, seed):
        self.frame = frames[:, -1].copy()  # (B, H, W, 3)

    def step(self, actions):
        world = self.frame[:, :-self.TILE]  # the HUD row stays
        for i, a in enumerate(actions.tolist()):
            if a in self.MOVES:
                world[i] = np.roll(world[i], -self.MOVES[a] * self.TILE, axis=1)  # a walk right shows what is right
        return self.frame.copy()


class ModelError(ValueError):
    """A model that does not keep the protocol, or a `model=` spec that names none: said before any scoring."""


class ModelFailed(RuntimeError):
    """The model raised: its traceback is the cause, this says which model, method and step."""


@dataclass
class Rollout:
    """What a predictor made of R rows of T actions."""

    frames: np.ndarray  # (R, T, H, W, 3) uint8 after each action
    rewards: np.ndarray  # (R, T) float32 paid by each action
    terminated: np.ndarray  # (R, T) bool: the episode has ended at this step


class Probed:
    """A protocol model as the suite's predictor: `predict(contexts, actions, seeds, on_step) -> Rollout`.

    Rows go to the model in batches of at most `batch` (and its `max_batch`), each batch reset with the seed its rows'
    sampling seeds make and stepped to the end. `spec` is the `model=` it was loaded from, for messages and the
    report."""

    def __init__(self, model, spec: str | None = None, batch: int | None = None):
        self.model, self.spec = model, spec
        self.name = _attribute(model, "name", type(model).__name__, str, "a non-empty string, the report's label", spec)
        self.context = _attribute(model, "context", None, int, "null or an integer >= 1, the most past frames reset "
                                  "wants", spec)
        self.max_batch = _attribute(model, "max_batch", None, int, "null or an integer >= 1, the most rows reset "
                                    "may start", spec)
        self.batch = min((n for n in (batch, self.max_batch) if n), default=None)  # None: every row at once
        self.label = f"model {self.name!r}" + (f" ({spec})" if spec else "")
        self.events = None  # whether its steps return rewards and terminated: known after the first step

    def predict(self, contexts: list[Context], actions: np.ndarray, seeds: np.ndarray, on_step=None) -> Rollout:
        rows, steps = actions.shape
        frame = contexts[0].frames.shape[1:]  # (H, W, 3): what every step must make
        out = Rollout(np.zeros((rows, steps) + frame, np.uint8), np.zeros((rows, steps), np.float32),
                      np.zeros((rows, steps), bool))
        keep = self.context or len(contexts[0].frames)
        size = self.batch or max(rows, 1)
        for lo in range(0, rows, size):
            hi = min(rows, lo + size)
            frames = np.stack([c.frames[-keep:] for c in contexts[lo:hi]])  # (B, T0, H, W, 3), the model's own copy
            past = np.stack([c.actions[-keep:] for c in contexts[lo:hi]]).astype(np.int64)  # (B, T0)
            self._call("reset", None, frames, past, batch_seed(seeds[lo:hi]))
            for t in range(steps):
                got = self._call("step", (t, steps), actions[lo:hi, t].astype(np.int64))  # a copy: theirs to keep
                out.frames[lo:hi, t], out.rewards[lo:hi, t], out.terminated[lo:hi, t] = self._check(
                    got, hi - lo, frame, (t, steps))
                if on_step:
                    on_step(hi - lo)
        return out

    def check(self, contexts: list[Context]) -> dict:
        """One reset and one step of the model on `contexts` (NOOP), through the checks every step gets; what the
        report says of the model."""
        self.predict(contexts, np.zeros((len(contexts), 1), np.int64), np.arange(len(contexts)))
        return {"spec": self.spec, "name": self.name, "context": self.context, "max_batch": self.max_batch,
                "batch": self.batch, "events": self.events}

    def _call(self, method: str, when, *args):
        try:
            return getattr(self.model, method)(*args)
        except Exception as err:  # the model's own: keep its traceback (the CLI would print only a ValueError's text)
            where = f" on step {when[0] + 1} of {when[1]}" if when else ""
            raise ModelFailed(f"{self.label}: {method} raised {type(err).__name__}{where}: {err}") from err

    def _check(self, got, b: int, frame: tuple, when) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The frames, rewards and terminated of one step's return, or a ModelError saying what is wrong with it."""
        h, w, _ = frame
        want = (f"frames, a numpy uint8 array of shape (B, H, W, 3) = {(b, h, w, 3)} (B: one row per action "
                f"given; H x W: the size of the frames reset was given), or a tuple (frames, rewards ({b},), "
                f"terminated ({b},))")
        where = f"{self.label}: step {when[0] + 1} of {when[1]} ({b} rows)"
        events = isinstance(got, tuple)
        if events and len(got) != 3:
            raise ModelError(f"{where} returned a tuple of {len(got)}: expected {want}")
        frames, rewards, ended = got if events else (got, None, None)
        if not isinstance(frames, np.ndarray):
            raise ModelError(f"{where} returned {_what(frames)} as its frames: expected {want}")
        if frames.dtype != np.uint8:
            hint = (": convert with (x * 255).round().clip(0, 255).astype(np.uint8) if x is in [0, 1]"
                    if frames.dtype.kind == "f" else "")
            raise ModelError(f"{where} returned frames {_what(frames)}: expected uint8 in 0..255{hint}")
        if frames.shape != (b, h, w, 3):
            raise ModelError(f"{where} returned frames {_what(frames)}: expected {want}")
        if self.events is None:
            self.events = events
        if not events:
            return frames, np.zeros(b, np.float32), np.zeros(b, bool)
        rewards, ended = np.asarray(rewards), np.asarray(ended)
        if rewards.shape != (b,) or rewards.dtype.kind not in "biuf" or not np.isfinite(rewards).all():
            raise ModelError(f"{where} returned rewards {_what(rewards)}: expected ({b},) finite numbers, what each "
                             "row's action paid")
        flags = ended.dtype.kind == "b" or (ended.dtype.kind in "iu" and np.isin(ended, (0, 1)).all())  # 0/1 too
        if ended.shape != (b,) or not flags:
            raise ModelError(f"{where} returned terminated {_what(ended)}: expected ({b},) bool, whether each row's "
                             "episode ended on this step")
        return frames, rewards.astype(np.float32), ended.astype(bool)


def batch_seed(seeds) -> int:
    """The one seed a batch is reset with, from its rows' sampling seeds: the same rows, the same seed."""
    return int(np.random.SeedSequence([int(s) for s in seeds]).generate_state(1)[0])


def as_predictor(subject, batch: int | None = None):
    """A predictor (anything with `predict`) as it is; a protocol model wrapped in `Probed`."""
    if hasattr(subject, "predict"):
        return subject
    if not (callable(getattr(subject, "reset", None)) and callable(getattr(subject, "step", None))):
        raise ModelError(f"{subject!r}: expected a protocol model (reset(frames, actions, seed) and step(actions), "
                         "see worldsim.probes.protocol.WorldModel) or a predictor (predict)")
    return Probed(subject, batch=batch)


def load(spec: str, kwargs: dict | None = None, batch: int | None = None) -> Probed:
    """The model `spec` names, made with `kwargs`, as a predictor. `spec` is `MODULE:NAME`, MODULE a dotted module
    name imported by Python's import (the current directory searched first, as `python -m` does) or a path to a .py
    file (loaded as the module of its folder, which goes first on sys.path, as `python file.py` has it); NAME a class
    or a factory function, called with `kwargs`, or a ready model (then no kwargs)."""
    where, _, name = spec.rpartition(":")
    if not where or not name.isidentifier():
        raise ModelError(f"model={spec}: expected MODULE:NAME, such as mypkg.mymodule:MyWorldModel or "
                         "path/to/my_model.py:MyWorldModel")
    module = _import(spec, where)
    if not hasattr(module, name):
        have = sorted(k for k, v in vars(module).items() if not k.startswith("_") and callable(v)
                      and getattr(v, "__module__", None) == module.__name__)
        raise ModelError(f"model={spec}: module {module.__name__!r} ({module.__file__}) has no {name!r}; it defines "
                         f"{have or 'no classes or functions'}")
    made = getattr(module, name)
    kwargs = dict(kwargs or {})
    if not _is_model(made):
        if not callable(made):
            raise ModelError(f"model={spec}: {name} is {_what(made)}: expected a class, a factory function or a "
                             "model (reset and step)")
        try:
            inspect.signature(made).bind(**kwargs)
        except TypeError as err:
            raise ModelError(f"model={spec}: {name}{_signature(made)} cannot take model_kwargs={kwargs}: {err}") \
                from None
        except ValueError:
            pass  # no signature to read (a builtin): let the call say
        try:
            made = made(**kwargs)
        except Exception as err:
            raise ModelFailed(f"model={spec}: {name}(**{kwargs}) raised {type(err).__name__}: {err}") from err
    elif kwargs:
        raise ModelError(f"model={spec}: {name} is a model already, not a class: model_kwargs={kwargs} has nothing "
                         "to go to")
    if not _is_model(made):
        missing = [m for m in ("reset", "step") if not callable(getattr(made, m, None))]
        raise ModelError(f"model={spec}: {type(made).__name__} has no {' or '.join(missing)} method: expected the "
                         "protocol's reset(frames, actions, seed) and step(actions) (worldsim.probes.protocol."
                         "WorldModel)")
    return Probed(made, spec, batch)


def _import(spec: str, where: str):
    path, from_file = Path(where), where.endswith(".py")
    if from_file:
        if not path.is_file():
            raise ModelError(f"model={spec}: no file {path.resolve()}")
        folder, where = str(path.resolve().parent), path.stem
    else:
        folder = str(Path.cwd())
    if folder not in sys.path:
        sys.path.insert(0, folder)
    try:
        module = importlib.import_module(where)
    except ImportError as err:
        hint = ""
        if isinstance(err, ModuleNotFoundError) and err.name and (where + ".").startswith(err.name + "."):
            hint = (" (it must be importable: installed, on PYTHONPATH or under the current directory; or give "
                    "the file: model=path/to/file.py:NAME)")
        raise ModelError(f"model={spec}: cannot import {where!r}: {err}{hint}") from err
    if from_file and Path(module.__file__).resolve() != path.resolve():
        raise ModelError(f"model={spec}: a module {where!r} is already imported from {module.__file__}: rename "
                         f"{path.name}, or give the module by its dotted name")
    return module


def _is_model(obj) -> bool:
    return not inspect.isclass(obj) and callable(getattr(obj, "reset", None)) and callable(getattr(obj, "step", None))


def _attribute(model, key: str, default, kind: type, expected: str, spec: str | None):
    value = getattr(model, key, None)
    if value is None:
        return default
    if kind is int and isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 1:
        return int(value)
    if kind is str and isinstance(value, str) and value:
        return value
    raise ModelError(f"model {spec or type(model).__name__}: {key}={value!r}: expected {expected}")


def _signature(f) -> str:
    try:
        return str(inspect.signature(f))
    except (TypeError, ValueError):
        return "(...)"


def _what(x: Any) -> str:
    """What came back, in a few words: its type, shape, dtype and, for numbers, the range of values."""
    if x is None:
        return "None"
    if isinstance(x, np.ndarray):
        text = f"of shape {x.shape} and dtype {x.dtype}"
        if x.size and x.dtype.kind in "biuf":
            text += f" (values {x.min():.3g}..{x.max():.3g})"
        return text
    shape = getattr(x, "shape", None)
    kind = f"{type(x).__module__}.{type(x).__qualname__}".removeprefix("builtins.")
    size = f" of shape {tuple(shape)}" if shape is not None else f" of {len(x)}" if isinstance(x, (list, tuple)) else ""
    return f"{'an' if kind[0] in 'aeiou' else 'a'} {kind}{size}"
