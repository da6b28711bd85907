"""Dream-v0: a trained world-model checkpoint as a Gymnasium environment."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.error import ResetNeeded
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space

from worldsim.envs.window import RendersFrames
from worldsim.simulator import load_simulator, set_view

_RESET_OPTIONS = ("image", "video", "actions", "scenario", "prompt", "guidance")
PROMPT_STEPS = 16  # solver passes of a prompt's first frame: made once, so it affords more than a step's few
GUIDANCE = 10.0  # classifier-free guidance of a prompt's first frame (1: none); measured best of 1, 3, 5, 7, 10, 15
#                   on prompt adherence (README)


class DreamEnv(RendersFrames, gym.Env):
    """A learned world: every frame, reward and termination comes from a world model, none from a game engine.

    ## Description
    A checkpoint of `worldsim train world` (an autoencoder and a spacetime-patch diffusion transformer) is stepped by
    `worldsim.simulator.WorldSimulator`: each step denoises the next frame from the history held in a KV cache (a
    sliding window of `context` frames, so a step costs the same at step 50 and at step 10,000) and the action taken.
    A Craft2D checkpoint dreams Craft2D; a checkpoint trained on another Gymnasium env dreams that env.

    ## Action Space
    `Discrete(n)` with the checkpoint's actions; `get_action_meanings()` names them (for Craft2D, the 12 of
    Craft2D-v0). An action outside the space raises ValueError.

    ## Observation Space
    `Box(0, 255, (H, W, 3), uint8)`: the decoded frame, at the checkpoint's frame size (its `frame_shape`), or at
    `view=(H, W)` when given. One model plays at any size its autoencoder and patches tile (the transformer's rotary
    positions extend to any grid): the sizes it was trained on (the checkpoint's `views`, e.g. [64, 64, 3],
    [64, 96, 3] and [96, 64, 3] for a model of `worldsim train world views=[...]`) play as well as its main one;
    any other size is allowed, with `info["view_trained"]` False, since the model has never seen it and may make
    poor frames.

    ## Rewards
    The model's prediction for the step (float): a step pays only past the threshold fitted on held-out data. A
    checkpoint with a reward/end model (`worldsim train reward`; the shipped one pays by its heads) reads it, and the
    termination, from the frames the step starts from and the action, so the dream pays for an event whether or not
    it then draws it right; without one, the world's heads read the frame drawn (or, for a model trained with
    `dit.heads_read=action`, the solver's first pass, before the frame is drawn).

    ## Starting State
    By default a real start frame, drawn with the env's RNG from the bank stored in the checkpoint (reset frames of
    training episodes, at its frame_shape). At another `view` a Craft2D checkpoint starts from the real game's reset
    frame at that view (Craft2D-v0 with its defaults but the view, seeded with the env's RNG: info `start` "engine");
    other checkpoints have no start frames at another view, so a reset there needs an image or a video.
    `reset(options=...)` starts elsewhere, every start at the env's frame size:
    - `{"image": frame}`: any (H, W, 3) uint8 frame;
    - `{"video": frames, "actions": actions}`: continues a clip, frames (T, H, W, 3) uint8 and the action that led
      to each frame, (T,) ints (-1 for an episode's first frame; all -1 when `actions` is left out);
    - `{"scenario": Scenario or ASCII map}`: for Craft2D checkpoints, the scenario's first frame as Craft2D renders it;
    - `{"prompt": text}`: a first frame dreamt from text, for checkpoints trained with captions: the prompt is
      expanded into the captions' style (`worldsim.prompt.expand_prompt`, "snowy night with a pig" -> "night, snow
      biome, pig ..."), and the frame is denoised from noise under it with classifier-free guidance (`"guidance"`,
      default 10); the episode then plays on unconditioned, as from any frame. Info `caption` says what the model
      was given, `unknown_words` what it could not use.

    ## Episode End
    Terminated when the termination head says so (its logit > 0). Truncated after `max_episode_steps` (1000 when
    made with `gymnasium.make`).

    ## Info
    `denoise_steps` (solver passes per step), `t` (steps since reset), `start` ("bank", "engine", "image", "video",
    "scenario" or "prompt"; after a prompt also `caption` and `unknown_words`) and `view_trained` (whether the
    checkpoint was trained at this frame size); deterministic: nothing depends on the wall clock.

    ## Arguments
    ```python
    gymnasium.make("worldsim/Dream-v0", checkpoint=None, denoise_steps=None, context=None, history_sigma=None,
                   device="auto", render_mode=None, view=None, action_guidance=None, reencode=None,
                   history_guidance=None, history_window=None)
    ```
    `view`: the frame size to play at, `(H, W)` in pixels as the observation's shape reads (for Craft2D, 8 px a
    tile, the HUD row included: `view=(64, 96)` is 12 tiles wide and 8 high, `Craft2D-v0`'s view_width=12); each
    side a multiple of the model's downsample x patch (16 for the shipped model). Default: the checkpoint's.
    `checkpoint`: a `.safetensors` path (default: the one shipped in the package). `denoise_steps`: solver steps
    per frame (default: the checkpoint's). `context`: frames in the sliding window (default and maximum: the
    checkpoint's). `history_sigma`: the noise level the history is shown at, in [0, 1) (default: the
    checkpoint's). `action_guidance`: classifier-free guidance on the action, a scale >= 0 (1: none; more makes each
    action's own effect stronger, at one more model pass per solver step; measured in the README's fidelity
    ladder; default: the checkpoint's). `history_guidance`: guidance on the older history, a scale >= 0 (1: none;
    more makes what the frames before the latest few show count for more; its contrast runs in the solver's own
    model call, ~1.2x a step; default: the checkpoint's); `history_window`: the latest frames the pass it contrasts
    with sees (default: the checkpoint's). `reencode`: cache every frame as the autoencoder encodes its picture, the
    frame shown for a dreamt one (one encoder pass a step; default: the checkpoint's). `device`: "auto" (CUDA
    when present), "cpu" or "cuda". The same seed and actions give the same frames on the same device.

    ## Version History
    * v0: initial release; `view=` added with models trained on several frame sizes (same version: the default is
      unchanged); `history_guidance=` and `history_window=` added (the shipped checkpoint plays guided since
      2026-12-03: play settings come from the checkpoint).
    """

    metadata = {"render_modes": ["human", "rgb_array"], "render_fps": 10}
    window_caption = "worldsim dream"

    def __init__(self, checkpoint: str | Path | None = None, denoise_steps: int | None = None,
                 context: int | None = None, device: str = "auto", render_mode: str | None = None,
                 window_scale: int = 6, history_sigma: float | None = None,
                 view: tuple[int, int] | tuple[int, int, int] | None = None, action_guidance: float | None = None,
                 reencode: bool | None = None, history_guidance: float | None = None,
                 history_window: int | None = None):
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode={render_mode!r}: expected None or one of {self.metadata['render_modes']}")
        self.sim, path = load_simulator(checkpoint, denoise_steps, context, device, batch_size=1,
                                        history_sigma=history_sigma, action_guidance=action_guidance,
                                        reencode=reencode, history_guidance=history_guidance,
                                        history_window=history_window)
        self.checkpoint, self.render_mode, self.window_scale = path, render_mode, window_scale
        self.frame_shape, self.view_trained, bank = set_view(self.sim, view, path)
        meta = self.sim.metadata
        self.env_id = meta.get("env")
        self.action_meanings = list(meta["action_meanings"])
        self.start_frames = self.sim.start_frames if bank else np.zeros((0, *self.frame_shape), np.uint8)
        self._bank_view = bank  # the view of the start bank (the checkpoint's frame_shape)
        # a Craft2D checkpoint at another view than its bank's starts from the real game's reset frames there
        self._engine_starts = not bank and is_craft2d(self.env_id)
        self._game = None  # the real game at this view, made when a start needs it
        self.action_space = spaces.Discrete(len(self.action_meanings))
        self.observation_space = spaces.Box(0, 255, self.frame_shape, np.uint8)
        self.metadata = {**self.metadata, "render_fps": meta.get("render_fps") or 10}
        self._frame: np.ndarray | None = None
        self._t = 0
        self._start = ""
        self._prompt: dict[str, Any] = {}  # caption and unknown words of a prompt start, for the info
        self._window = None

    # ---- Gymnasium API -----------------------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        frames, actions, self._start = self._start_clip(dict(options or {}))
        self.sim.seed(int(self.np_random.integers(2 ** 63)))
        self.sim.reset(frames[None], actions[None])
        self._frame, self._t = frames[-1].copy(), 0
        if self.render_mode == "human":
            self._show()
        return self._frame.copy(), self._info()

    def step(self, action):
        if self._frame is None:
            raise ResetNeeded("DreamEnv.step() was called before reset(): call env.reset() first")
        if not self.action_space.contains(action):
            raise ValueError(f"action {action!r} is outside Discrete({self.action_space.n}): expected an integer in "
                             f"[0, {self.action_space.n - 1}], one of {dict(enumerate(self.action_meanings))}")
        out = self.sim.step(np.array([int(action)]))
        self._frame, self._t = out.frames[0], self._t + 1
        if self.render_mode == "human":
            self._show()
        return self._frame.copy(), float(out.rewards[0]), bool(out.terminated[0]), False, self._info()

    def get_action_meanings(self) -> list[str]:
        return list(self.action_meanings)

    def close(self):
        if self._game is not None:
            self._game.close()
            self._game = None
        super().close()

    # ---- internals ---------------------------------------------------------------------------------------------
    def _info(self) -> dict[str, Any]:
        return {"denoise_steps": self.sim.denoise_steps, "t": self._t, "start": self._start,
                "view_trained": self.view_trained, **self._prompt}

    def _start_clip(self, options: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, str]:
        """(frames (T, H, W, 3) uint8, actions (T,) int64, how) to start from."""
        unknown = set(options) - set(_RESET_OPTIONS)
        if unknown:
            raise ValueError(f"reset options {sorted(unknown)}: expected keys among {_RESET_OPTIONS}")
        starts = [k for k in ("image", "video", "scenario", "prompt") if k in options]
        if len(starts) > 1:
            raise ValueError(f"reset options {starts}: give one way to start, not several")
        if "actions" in options and "video" not in options:
            raise ValueError("reset option 'actions' goes with 'video' (the action that led to each frame)")
        if "guidance" in options and "prompt" not in options:
            raise ValueError("reset option 'guidance' goes with 'prompt' (how hard the first frame follows it)")
        self._prompt = {}
        if "prompt" in options:
            return self._prompt_frame(options["prompt"], options.get("guidance", GUIDANCE))[None], \
                np.array([-1], np.int64), "prompt"
        if "image" in options:
            frame = self._check_frames(options["image"], "image", 3)
            return frame[None], np.array([-1], np.int64), "image"
        if "video" in options:
            frames = self._check_frames(options["video"], "video", 4)
            actions = options.get("actions")
            actions = np.full(len(frames), -1, np.int64) if actions is None else np.asarray(actions)
            if actions.shape != (len(frames),) or not np.issubdtype(actions.dtype, np.integer) or (
                    (actions < -1) | (actions >= self.action_space.n)).any():
                raise ValueError(f"actions of shape {actions.shape} and dtype {actions.dtype}: expected "
                                 f"({len(frames)},) integers in [-1, {self.action_space.n - 1}], one per video frame")
            keep = self.sim.dit.config.context - 1  # older frames would leave the window at once
            return frames[-keep:], actions[-keep:].astype(np.int64), "video"
        if "scenario" in options:
            return self._scenario_frame(options["scenario"])[None], np.array([-1], np.int64), "scenario"
        if self._engine_starts:
            frame, _ = self._engine().reset(seed=int(self.np_random.integers(2 ** 31)))
            return frame[None], np.array([-1], np.int64), "engine"
        if not len(self.start_frames):
            at = "" if self._bank_view else \
                f" at view {self.frame_shape[:2]} (its start frames are {tuple(self.sim.metadata['views'][0])})"
            raise ValueError(f"checkpoint {self.checkpoint} has no start frames{at}: reset with options={{'image': "
                             "frame}} or {'video': frames}")
        pick = int(self.np_random.integers(len(self.start_frames)))
        return self.start_frames[pick:pick + 1].copy(), np.array([-1], np.int64), "bank"

    def _prompt_frame(self, prompt, guidance) -> np.ndarray:
        from worldsim.prompt import expand_prompt

        if self.sim.dit.text is None:
            raise ValueError(f"reset option 'prompt': checkpoint {self.checkpoint} was trained without captions, so "
                             "it cannot read a prompt; start from 'image', 'video' or 'scenario', or use a checkpoint "
                             "trained on a dataset with captions")
        if not isinstance(guidance, (int, float)) or isinstance(guidance, bool) or not 0 <= guidance <= 100:
            raise ValueError(f"reset option guidance={guidance!r}: expected a number in [0, 100] (1: no guidance)")
        expansion = expand_prompt(prompt, vocabulary=self.sim.dit.config.vocab)
        self._prompt = {"caption": expansion.caption, "unknown_words": expansion.unknown}
        seed = int(self.np_random.integers(2 ** 62))
        return self.sim.imagine([expansion.caption], steps=PROMPT_STEPS, guidance=float(guidance), seed=seed)[0]

    def _check_frames(self, frames, name: str, ndim: int) -> np.ndarray:
        frames = np.asarray(frames)
        want = ("(T, " if ndim == 4 else "(") + ", ".join(map(str, self.frame_shape)) + ")"
        if frames.dtype != np.uint8 or frames.ndim != ndim or tuple(frames.shape[-3:]) != self.frame_shape or (
                ndim == 4 and len(frames) == 0):
            raise ValueError(f"{name} of shape {frames.shape} and dtype {frames.dtype}: expected uint8 {want}, the "
                             f"frame size this env plays at (view=, by default the checkpoint's frame_shape)")
        return np.ascontiguousarray(frames)

    def _scenario_frame(self, scenario) -> np.ndarray:
        if not is_craft2d(self.env_id):
            raise ValueError(f"reset option 'scenario' needs a Craft2D checkpoint; {self.checkpoint} was trained on "
                             f"{self.env_id!r}: start from 'image' or 'video' instead")
        frame, _ = self._engine().reset(seed=int(self.np_random.integers(2 ** 31)), options={"scenario": scenario})
        return frame

    def _engine(self):
        if self._game is None:
            self._game = engine_at(self.frame_shape)
        return self._game


def is_craft2d(env_id: object) -> bool:
    from worldsim.envs.craft2d import is_craft2d as craft2d  # imported when asked: the game is not needed otherwise

    return craft2d(env_id)


def engine_at(frame_shape: tuple[int, ...]):
    """Craft2D-v0 with its defaults, at the view that draws frames of `frame_shape` (H, W, 3)."""
    from worldsim.envs.craft2d import TILE_SIZE, Craft2DEnv

    h, w, _ = frame_shape
    if h % TILE_SIZE or w % TILE_SIZE:
        raise ValueError(f"view ({h}, {w}): Craft2D draws {TILE_SIZE} px a tile, so it has no start frames of this "
                         "size; start from an image or a video")
    try:
        return Craft2DEnv(view_width=w // TILE_SIZE, view_height=h // TILE_SIZE)
    except ValueError as err:
        raise ValueError(f"view ({h}, {w}): the real game cannot draw it ({err}), so it has no start frames of this "
                         "size; start from an image or a video") from None


class DreamVectorEnv(gym.vector.VectorEnv):
    """`num_envs` learned worlds stepped by one batched forward pass: Dream-v0's native vector env.

    `gymnasium.make_vec("worldsim/Dream-v0", num_envs=64)` returns it. The spaces and every argument are those of
    `DreamEnv` (see its docstring), batched. Autoreset is `AutoresetMode.NEXT_STEP`: the step after a sub-env
    terminates or truncates returns its new start frame (reward 0, not done) and ignores its action. `reset(seed=s)`
    seeds sub-env i with s + i: its start frame and its sampling noise are those of a `DreamEnv` reset with seed
    s + i, so it dreams the same frames under the same actions (to float rounding, ~1e-6, below a uint8 level).
    `view=(H, W)` plays every world at that frame size, as DreamEnv's `view` (a Craft2D checkpoint starts them from
    the real game's reset frames there; other checkpoints only at their frame_shape, where their start bank is).
    Infos are dicts of arrays with `_key` masks, as Gymnasium's vector envs give them.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10, "autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(self, num_envs: int = 1, checkpoint: str | Path | None = None, denoise_steps: int | None = None,
                 context: int | None = None, device: str = "auto", render_mode: str | None = None,
                 max_episode_steps: int | None = None, history_sigma: float | None = None,
                 view: tuple[int, int] | tuple[int, int, int] | None = None, action_guidance: float | None = None,
                 reencode: bool | None = None, history_guidance: float | None = None,
                 history_window: int | None = None):
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode={render_mode!r}: expected None or one of {self.metadata['render_modes']}")
        if max_episode_steps is not None and max_episode_steps < 1:
            raise ValueError(f"max_episode_steps={max_episode_steps}: expected None or an integer >= 1")
        self.sim, self.checkpoint = load_simulator(checkpoint, denoise_steps, context, device, batch_size=num_envs,
                                                   history_sigma=history_sigma, action_guidance=action_guidance,
                                                   reencode=reencode, history_guidance=history_guidance,
                                                   history_window=history_window)
        self.frame_shape, self.view_trained, bank = set_view(self.sim, view, self.checkpoint)
        meta = self.sim.metadata
        # the real game at this view, where a Craft2D checkpoint's worlds start when its bank is of another size
        try:
            self._game = engine_at(self.frame_shape) if not bank and is_craft2d(meta.get("env")) else None
        except ValueError as err:
            raise ValueError(f"{err} (in DreamEnv: the vector env starts its worlds from start frames)") from None
        if bank and not len(self.sim.start_frames) or not bank and self._game is None:
            at = "" if bank else f" at view {self.frame_shape[:2]} (its start frames are {tuple(meta['views'][0])})"
            raise ValueError(f"checkpoint {self.checkpoint} has no start frames{at}: the vector env starts its worlds "
                             "from them")
        self.num_envs, self.render_mode, self.max_episode_steps = int(num_envs), render_mode, max_episode_steps
        self.action_meanings = list(meta["action_meanings"])
        self.single_action_space = spaces.Discrete(len(self.action_meanings))
        self.single_observation_space = spaces.Box(0, 255, self.frame_shape, np.uint8)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.metadata = {**self.metadata, "render_fps": meta.get("render_fps") or 10}
        self._rngs = [np.random.default_rng() for _ in range(self.num_envs)]
        self._frames: np.ndarray | None = None
        self._elapsed = np.zeros(self.num_envs, np.int64)
        self._autoreset = np.zeros(self.num_envs, bool)

    def reset(self, *, seed: int | list[int | None] | None = None, options: dict[str, Any] | None = None):
        if options:
            raise ValueError(f"reset options {sorted(options)}: the vector env starts every world from the "
                             "checkpoint's start frames; use DreamEnv for image, video or scenario starts")
        seeds = seed if isinstance(seed, (list, tuple)) else [None if seed is None else seed + i
                                                              for i in range(self.num_envs)]
        if len(seeds) != self.num_envs:
            raise ValueError(f"{len(seeds)} seeds for {self.num_envs} envs: expected one per sub-env")
        if seed is not None:
            self._rngs = [np.random.default_rng(s) for s in seeds]
            self._np_random, self._np_random_seed = np.random.default_rng(seeds[0]), seeds[0]
        self._frames = self._draw_starts(np.ones(self.num_envs, bool))  # first, as DreamEnv draws: same start frames
        self.sim.seed(self._draw_seeds(np.ones(self.num_envs, bool)))  # then its noise: sub-env i dreams as DreamEnv
        self.sim.reset(self._frames[:, None], np.full((self.num_envs, 1), -1, np.int64))
        self._elapsed[:] = 0
        self._autoreset[:] = False
        return self._frames.copy(), self._info(np.ones(self.num_envs, bool))

    def step(self, actions):
        if self._frames is None:
            raise ResetNeeded("DreamVectorEnv.step() was called before reset(): call envs.reset() first")
        actions = np.asarray(actions)
        if actions.shape != (self.num_envs,) or not self.action_space.contains(actions.astype(np.int64)) or \
                not np.issubdtype(actions.dtype, np.integer):
            raise ValueError(f"actions {actions.tolist()!r} of shape {actions.shape}: expected {self.num_envs} "
                             f"integers in [0, {self.single_action_space.n - 1}], one per sub-env")
        restart = self._autoreset.copy()
        starts = self._draw_starts(restart)
        out = self.sim.step(actions, restart=restart, start_frames=starts, restart_seeds=self._draw_seeds(restart))
        self._frames = out.frames
        self._elapsed = np.where(restart, 0, self._elapsed + 1)
        terminated = out.terminated & ~restart
        truncated = (np.zeros(self.num_envs, bool) if self.max_episode_steps is None
                     else (self._elapsed >= self.max_episode_steps) & ~restart & ~terminated)
        self._autoreset = terminated | truncated
        return (self._frames.copy(), out.rewards.astype(np.float64), terminated, truncated,
                self._info(np.ones(self.num_envs, bool)))

    def render(self):
        if self._frames is None:
            raise ResetNeeded("DreamVectorEnv.render() was called before reset(): call envs.reset() first")
        return tuple(self._frames.copy()) if self.render_mode == "rgb_array" else None

    def get_action_meanings(self) -> list[str]:
        return list(self.action_meanings)

    def close_extras(self, **kwargs):
        if self._game is not None:
            self._game.close()

    def _draw_starts(self, which: np.ndarray) -> np.ndarray:
        """(N, H, W, 3): a start frame, drawn with its sub-env's RNG as DreamEnv draws it (a bank frame, or the real
        game's reset frame at another view), for each sub-env in `which` (zeros elsewhere)."""
        bank = self.sim.start_frames
        out = np.zeros((self.num_envs, *self.frame_shape), np.uint8)
        for i in np.flatnonzero(which):
            if self._game is not None:
                out[i] = self._game.reset(seed=int(self._rngs[i].integers(2 ** 31)))[0]
            else:
                out[i] = bank[int(self._rngs[i].integers(len(bank)))]
        return out

    def _draw_seeds(self, which: np.ndarray) -> list[int]:
        """(N,) noise seeds, drawn with each sub-env's RNG for those in `which` (0 elsewhere), as DreamEnv.reset draws
        one after its start frame."""
        return [int(self._rngs[i].integers(2 ** 63)) if which[i] else 0 for i in range(self.num_envs)]

    def _info(self, mask: np.ndarray) -> dict[str, np.ndarray]:
        return {"denoise_steps": np.full(self.num_envs, self.sim.denoise_steps), "_denoise_steps": mask.copy(),
                "t": self._elapsed.copy(), "_t": mask.copy(),
                "view_trained": np.full(self.num_envs, self.view_trained), "_view_trained": mask.copy()}
