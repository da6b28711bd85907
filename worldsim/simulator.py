"""WorldSimulator: the one object that steps a trained world model, for a batch of worlds at once.

Each world is a history of latent frames held as keys and values in the transformer's cache (a sliding window of
`context` chunks, so a step costs the same at step 10 and at step 10,000 and memory stays bounded). A step denoises
the new chunk from pure noise in `denoise_steps` solver passes that attend to the cache, then runs one more pass on
the clean result to cache it; the reward and termination heads read that last pass, or, where the checkpoint has a
reward/end model (worldsim.models.reward), it reads the frames the step starts from and the action.

Every world draws its sampling noise from its own generator, so a world's frames depend on its seed, its history and
its actions, never on its row or on how many worlds share the batch: world i of a batch seeded with s + i dreams what
a batch of one seeded with s + i dreams (up to float rounding: batched matmuls round differently, ~1e-6).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from worldsim.checkpoint import default_checkpoint, load_world, trained_views, view_problem
from worldsim.config import check
from worldsim.device import resolve_device
from worldsim.models.diffusion import DiffusionConfig, add_noise, sample, to_velocity
from worldsim.models.dit import Condition, DiTOutput


@dataclass
class StepResult:
    frames: np.ndarray  # (B, H, W, 3) uint8
    rewards: np.ndarray  # (B,) float32
    terminated: np.ndarray  # (B,) bool
    latents: np.ndarray  # (B, C, h, w) float32: the new frame before decoding


class WorldSimulator:
    """Steps `B` learned worlds: `reset(frames, actions)`, then `step(actions)` -> frames, rewards, terminated."""

    def __init__(self, autoencoder, dit, diffusion: DiffusionConfig, *, denoise_steps: int | None = None,
                 device: str | torch.device = "cpu", seed: int | Sequence[int] | None = None, reward=None):
        self.device = resolve_device(device)
        self.ae = autoencoder.to(self.device).eval()
        self.dit = dit.to(self.device).eval()
        # a RewardModel (worldsim.models.reward) pays and ends instead of the DiT's heads: it reads the latest frames
        # before the step (`recent`, kept clean as the frames were made) and the action
        self.reward = None if reward is None else reward.to(self.device).eval()
        self.recent: torch.Tensor | None = None  # (B, history, C, h, w), oldest first; None: no frame yet
        self.diffusion = diffusion
        self.denoise_steps = diffusion.denoise_steps if denoise_steps is None else denoise_steps
        if self.denoise_steps < 1:
            raise ValueError(f"denoise_steps={self.denoise_steps}: expected at least 1 solver step")
        self.generators: list[torch.Generator] = []  # one per world, made for the batch at reset()
        self.cache = None
        self._batch = 0
        self.seed(seed)
        self.t = 0  # absolute chunk index of the next chunk
        self.metadata: dict = {}  # a checkpoint's metadata (from_checkpoint)
        self.start_frames = np.zeros((0, 0, 0, 3), np.uint8)  # (K, H, W, 3) real start frames (from_checkpoint)

    @classmethod
    def from_checkpoint(cls, path: str | Path, *, denoise_steps: int | None = None, device: str | torch.device = "auto",
                        seed: int | Sequence[int] | None = None) -> "WorldSimulator":
        """The simulator of a world-model checkpoint (checked whole by worldsim.checkpoint.load_world)."""
        world = load_world(path)
        sim = cls(world.ae, world.dit, world.diffusion, denoise_steps=denoise_steps, device=device, seed=seed,
                  reward=world.reward)
        sim.metadata, sim.start_frames = world.metadata, world.start_frames
        return sim

    def set_context(self, context: int) -> None:
        """Attend to fewer frames than the checkpoint's window (faster, less memory); from the next reset on."""
        if not 1 <= context <= self.dit.config.context:
            raise ValueError(f"context={context}: expected 1 to {self.dit.config.context}, the window this model "
                             "has (a longer one would show it histories it never learned from)")
        self.dit.config = replace(self.dit.config, context=context)
        self.cache = None

    def seed(self, seed: int | Sequence[int] | None) -> None:
        """Seed each world's sampling noise: an int s seeds world b with s + b (as a vector env seeds its sub-envs),
        a sequence gives one seed per world, None fresh ones. The same seed, history and actions give the same frames
        (on one device). Takes effect now for the current batch, else at the next reset()."""
        if isinstance(seed, Sequence) and not isinstance(seed, str):
            self._seeds: int | list[int] | None = [int(s) for s in seed]
        else:
            self._seeds = None if seed is None else int(seed)
        self.generators = []
        if self._batch:
            self._make_generators(self._batch)

    def _make_generators(self, b: int) -> None:
        if isinstance(self._seeds, list) and len(self._seeds) != b:
            raise ValueError(f"{len(self._seeds)} seeds for {b} worlds: expected one seed per world, or one int")
        seeds = (self._seeds if isinstance(self._seeds, list) else
                 [int(torch.seed() % 2 ** 63) for _ in range(b)] if self._seeds is None else
                 [self._seeds + i for i in range(b)])
        self.generators = [torch.Generator(self.device).manual_seed(s % 2 ** 64) for s in seeds]

    def _noise(self, shape: tuple[int, ...]) -> torch.Tensor:
        """(B, *shape) standard normal noise, row b from world b's own generator: what a world draws never depends
        on the other worlds of the batch."""
        return torch.stack([torch.randn(shape, generator=g, device=self.device) for g in self.generators])

    @property
    def batch_size(self) -> int:
        return 0 if self.cache is None else self._batch

    @torch.no_grad()
    def reset(self, frames: np.ndarray, actions: np.ndarray | None = None) -> None:
        """Start every world from a clip: frames (B, T0, H, W, 3) uint8, actions (B, T0) (action that led to each
        frame; -1, the default, for a first frame)."""
        frames = np.asarray(frames)
        if frames.ndim != 5 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValueError(f"frames of shape {frames.shape} and dtype {frames.dtype}: expected (B, T, H, W, 3) "
                             f"uint8")
        b, t0 = frames.shape[:2]
        if actions is None:
            actions = np.full((b, t0), -1, np.int64)
        actions = np.asarray(actions, np.int64)
        if actions.shape != (b, t0):
            raise ValueError(f"actions of shape {actions.shape}: expected {(b, t0)}, one per frame")
        if not frames.flags.writeable:
            frames = frames.copy()  # torch.from_numpy wants a writable array (a decoded picture may not be)
        z = self._given(self.ae.encode(torch.from_numpy(frames).to(self.device)))  # (B, T0, C, h, w) normalised
        if len(self.generators) != b:
            self._make_generators(b)  # kept across resets of the same batch: the noise goes on, as one stream
        self._batch = b
        self.cache, self.recent = self.dit.new_cache(b), None
        self.t = 0
        a = torch.from_numpy(actions).to(self.device)
        for i in range(t0):
            self._commit(z[:, i:i + 1], a[:, i])

    @torch.no_grad()
    def step(self, actions: np.ndarray, restart: np.ndarray | None = None, start_frames: np.ndarray | None = None,
             restart_seeds: Sequence[int] | None = None) -> StepResult:
        """Advance every world by one frame under `actions` (B,) and return what the model predicts.

        `restart` (B,) bool marks worlds that start over instead (a vector env's autoreset): their history is dropped,
        `start_frames[b]` (B, H, W, 3) uint8 becomes their first frame and is what they return, with reward 0 and not
        terminated; their action is ignored. `restart_seeds[b]` (B,) reseeds their noise (None: it goes on). All worlds
        still take one batched step.
        """
        if self.cache is None:
            raise RuntimeError("WorldSimulator.step() before reset(): call reset(frames) first")
        actions = np.asarray(actions, np.int64).reshape(-1)
        if actions.shape[0] != self._batch:
            raise ValueError(f"{actions.shape[0]} actions for {self._batch} worlds: expected one action per world")
        a = torch.from_numpy(actions).to(self.device)
        z, drafted, frames, seen, judged = self._dream(a)
        rows = None
        if restart is not None and np.any(restart):
            rows = np.flatnonzero(restart)
            if start_frames is None or len(start_frames) != self._batch:
                raise ValueError(f"restart needs start_frames for all {self._batch} worlds (B, H, W, 3) uint8")
            first = torch.from_numpy(np.ascontiguousarray(start_frames[rows])).to(self.device)
            idx = torch.from_numpy(rows).to(self.device)
            z[idx, 0] = seen[idx, 0] = self._given(self.ae.encode(first))  # (R, C, h, w): as reset() takes it
            a = a.clone()
            a[idx] = -1  # no action led to a first frame
            self.cache.reset_rows(idx)
            if self.recent is not None:  # their history is gone: their first frame alone, as after reset()
                self.recent[idx] = z[idx, 0, None]
            for row in rows if restart_seeds is not None else ():  # after this step's draw: as reset() then step()
                self.generators[row].manual_seed(int(restart_seeds[row]) % 2 ** 64)
        result = self._result(z, frames, self._commit(seen, a), drafted, judged)
        if rows is not None:
            result.frames[rows], result.rewards[rows], result.terminated[rows] = start_frames[rows], 0.0, False
        return result

    @torch.no_grad()
    def teacher_step(self, actions: np.ndarray, frames: np.ndarray) -> StepResult:
        """A step dreamt under `actions` (B,) as step() dreams it, after which the history takes the true next
        `frames` (B, H, W, 3) uint8 (as reset() takes a frame) in place of the dreamt ones: teacher forcing, so every
        step is made one step ahead of a true history and what it gets wrong is the model's own, never drift fed
        back (`worldsim probe one_step=true`). Its reward and ending are read as step()'s are: by the reward model
        from the dreamt frame, or by the heads on the pass that caches the frame, here the true one."""
        if self.cache is None:
            raise RuntimeError("WorldSimulator.teacher_step() before reset(): call reset(frames) first")
        b = self._batch
        a = torch.as_tensor(np.asarray(actions, np.int64).reshape(-1), device=self.device)
        check(a.shape[0] == b, "actions", tuple(a.shape), f"one action per world ({b})")
        frames = np.ascontiguousarray(frames)
        check(frames.ndim == 4 and frames.shape[0] == b and frames.shape[-1] == 3 and frames.dtype == np.uint8,
              "frames", (frames.shape, str(frames.dtype)), f"the true next frames, ({b}, H, W, 3) uint8")
        z, drafted, shown, _, judged = self._dream(a)
        true = self._given(self.ae.encode(torch.from_numpy(frames).to(self.device)))[:, None]  # (B, 1, C, h, w)
        return self._result(z, shown, self._commit(true, a), drafted, judged)

    def _dream(self, a: torch.Tensor):
        """(z, drafted, frames, seen, judged) of the next chunk under actions `a` (B,), against the cache, which it
        does not write: the chunk z (B, 1, C, h, w), the action heads' draft, the frames it shows, the chunk to cache
        (_shown) and the reward model's verdict."""
        noise = self._noise((1, *self._latent_shape))  # (B, 1, C, h, w)
        # each solver pass attends to the cached history and does not write to it
        z, first = self._denoise(noise, a, None, 1.0, self.denoise_steps, self.cache, self.t)
        drafted = self._action_heads(first, a, None)
        frames, seen = self._shown(z)
        return z, drafted, frames, seen, self._judge(a, seen)

    @torch.no_grad()
    def begin(self, batch_size: int) -> None:
        """Start `batch_size` worlds with no history: the next step (`guided_step`) makes their first frame, from text
        or a target frame."""
        check(isinstance(batch_size, (int, np.integer)) and batch_size >= 1, "batch_size", batch_size, "worlds >= 1")
        if len(self.generators) != batch_size:
            self._make_generators(batch_size)
        self._batch, self._latent_shape = batch_size, self._metadata_latent_shape("begin")
        self.cache, self.recent = self.dit.new_cache(batch_size), None
        self.t = 0

    @torch.no_grad()
    def guided_step(self, actions: np.ndarray, *, captions: Sequence[str] | None = None, guidance: float = 1.0,
                    target: np.ndarray | None = None, strength: float = 1.0,
                    steps: int | None = None) -> StepResult:
        """A step that follows text and/or a target frame; step() is its plain case.

        The new frame is denoised against each world's history under `actions` (B,) (-1: none, for a first frame),
        conditioned on `captions` (one per world; "" none) with classifier-free guidance `guidance` (1: none), from
        `target` frames (B, H, W, 3) uint8 noised to `strength` instead of pure noise (SDEdit: 1 ignores the target,
        0 returns it as it encodes; between, the result keeps the target's layout and follows the history and the
        caption in what the noise erased). `steps`: solver passes (default denoise_steps), over the noise levels
        below `strength`. The caption also conditions the pass that caches the frame, as training shows a
        captioned history. Restyle, connect and backward extension (worldsim.edit) are made of these steps.
        """
        if self.cache is None:
            raise RuntimeError("WorldSimulator.guided_step() before reset() or begin()")
        b = self._batch
        a = torch.as_tensor(np.asarray(actions, np.int64).reshape(-1), device=self.device)
        check(a.shape[0] == b, "actions", tuple(a.shape), f"one action per world ({b})")
        check(0.0 <= strength <= 1.0, "strength", strength, "a noise level in [0, 1] (1: from pure noise)")
        check(math.isfinite(guidance) and guidance >= 0, "guidance", guidance, "a finite scale >= 0 (1: none)")
        text = None
        if captions is not None:
            check(len(captions) == b, "captions", len(captions), f"one caption per world ({b})")
            if self.dit.text is None:
                raise ValueError("captions for a model trained without them (no text encoder): pass captions=None")
            text = self.dit.tokenize(list(captions)).to(self.device)  # (B, L)
        x = self._noise((1, *self._latent_shape))  # (B, 1, C, h, w)
        if target is not None:
            target = np.ascontiguousarray(target)
            z_target = self.ae.encode(torch.from_numpy(target).to(self.device))[:, None]  # (B, 1, C, h, w)
            x = add_noise(z_target, torch.full((b, 1), float(strength), device=self.device), x)
        if target is not None and strength == 0:
            z, first = z_target, None  # nothing to denoise: the target as it encodes
        else:
            z, first = self._denoise(x, a, text, guidance, steps or self.denoise_steps, self.cache, self.t,
                                     start=1.0 if target is None else strength)
        frames, seen = self._shown(z)
        judged = self._judge(a, seen)
        return self._result(z, frames, self._commit(seen, a, text), self._action_heads(first, a, text),
                            judged)

    def _shown(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(the frames a step shows (B, H, W, 3) uint8, the chunk to cache (B, 1, C, h, w)) for the finished chunk z.
        With diffusion.reencode the cache gets the shown frames as the autoencoder encodes them: what the solver left
        between the latents a picture can have (a blur of two sprites, a shade no frame has) is not fed back. Else z
        itself."""
        frames = self.ae.decode_uint8(z[:, 0])  # (B, H, W, 3)
        return frames, self.ae.encode(frames)[:, None] if self.diffusion.reencode else z

    def _given(self, z: torch.Tensor) -> torch.Tensor:
        """Latents (..., C, h, w) of given frames (reset, restart) as the cache takes them: with diffusion.reencode,
        after one round trip through the autoencoder (decoded to uint8, encoded again), as a dreamt frame enters
        (_shown), so the history is one kind of latent throughout, real frames and dreamt ones alike."""
        return self.ae.encode(self.ae.decode_uint8(z)) if self.diffusion.reencode else z

    def _result(self, z: torch.Tensor, frames: torch.Tensor, committed, drafted=None,
                judged: tuple[torch.Tensor, torch.Tensor] | None = None) -> StepResult:
        """What a step returns for the finished chunk z (B, 1, C, h, w) shown as `frames` (B, H, W, 3) uint8: the
        reward and termination from the reward model (`judged`, where there is one), else from the DiT's heads on the
        pass that cached the chunk (`committed`) or, for dit.heads_read="action", on the solver pass on pure noise
        (`drafted`)."""
        out = committed if drafted is None else drafted
        if judged is None:
            rewards, ended = self.dit.reward_of(out.reward)[:, 0], out.terminated_logit[:, 0] > 0
        else:
            rewards, ended = judged
        return StepResult(frames=frames.cpu().numpy(),
                          rewards=rewards.float().cpu().numpy(), terminated=ended.cpu().numpy(),
                          latents=z[:, 0].float().cpu().numpy())

    def _judge(self, actions: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(rewards (B,), terminated (B,) bool) of this step from the reward model, read before the new frame is
        cached: the frames the step starts from, `actions` (B,) and, for a model that reads it (`after`), the frame
        made as it will be cached, z (B, 1, C, h, w) (_shown's: under diffusion.reencode the picture's latents, as
        `recent` holds the frames before); None without a reward model. A world with no frame yet (begin) pays
        nothing and goes on."""
        if self.reward is None:
            return None
        if self.recent is None:
            return torch.zeros(self._batch, device=self.device), torch.zeros(self._batch, dtype=torch.bool,
                                                                             device=self.device)
        frames = torch.cat([self.recent, z], 1) if self.reward.config.after else self.recent  # (B, frames, C, h, w)
        logits, ended = self.reward(frames.float(), actions)
        return self.reward.reward_of(logits), ended > 0

    def _metadata_latent_shape(self, caller: str) -> tuple[int, ...]:
        """(C, h, w) of the frames this simulator makes, from its checkpoint's metadata (a world with no history yet
        has no latent to read it from)."""
        shape = self.metadata.get("latent_shape")
        if shape is None:
            raise ValueError(f"{caller} needs the latent shape from a checkpoint's metadata: make the simulator with "
                             "WorldSimulator.from_checkpoint")
        return tuple(shape)

    def _denoise(self, x: torch.Tensor, actions: torch.Tensor, text: torch.Tensor | None, guidance: float,
                 steps: int, cache, t_index: int, start: float = 1.0) -> tuple[torch.Tensor, DiTOutput | None]:
        """(the new chunk, its first conditioned pass): the chunk (absolute index t_index) from x (B, 1, C, h, w) at
        noise level `start`, against `cache`, optionally under captions `text` (B, L) with classifier-free guidance
        `guidance`, and with guidance on the action at diffusion.action_guidance. Guidance is on the network's
        prediction (x0 or v: both affine in it), each contrast with the pass that drops its one condition (the
        caption, the action, or the history older than diffusion.history_window frames):
            out = cond + (guidance - 1) (cond - no caption) + (action_guidance - 1) (cond - no action)
                       + (history_guidance - 1) (cond - only the latest history_window frames of history).
        The first pass is returned when it ran on pure noise (`start` 1), else None: what _action_heads reads."""
        text_scale = guidance - 1 if text is not None else 0.0
        action_scale = self.diffusion.action_guidance - 1 if bool((actions >= 0).any()) else 0.0
        window, history_scale = self.diffusion.history_window, self.diffusion.history_guidance - 1
        # nothing older than the window in any row (a first frame, a prompt's start): the contrast would be zero
        if history_scale and not bool((cache.lengths > window).any() or (cache.memory_lengths > 0).any()):
            history_scale = 0.0
        none = torch.full_like(actions, -1)
        prediction = self.diffusion.prediction

        contrasts = [(scale, c) for scale, c in (
            (text_scale, Condition(actions)),  # no caption
            (action_scale, Condition(none, text)),  # no action
            (history_scale, Condition(actions, text, window)),  # the latest frames only
        ) if scale]
        conditions = [Condition(actions, text), *(c for _, c in contrasts)]  # one call runs them all

        def velocity(x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
            full, *others = self.dit.forward_conditions(x, s, conditions, t_index, cache)
            if not first:
                first.append(full)
            guided = full.out
            for (scale, _), other in zip(contrasts, others):
                guided = guided + scale * (full.out - other.out)
            return to_velocity(guided, x, s, prediction)

        first = []  # the first conditioned pass
        z = sample(velocity, x, steps, self.diffusion.shift, start)
        return z, first[0] if start == 1.0 else None

    def _action_heads(self, first: DiTOutput | None, actions: torch.Tensor,
                      text: torch.Tensor | None) -> DiTOutput | None:
        """Where this step's reward and termination are read, decided here alone and before the cache write: None for
        dit.heads_read="frame" (the pass that caches the frame, `_commit`'s); for "action", the solver's first pass
        when it ran on pure noise (`first`), else one more pass on a new chunk of pure noise against the history."""
        if self.dit.config.heads_read == "frame":
            return None
        if first is not None:
            return first
        noise = self._noise((1, *self._latent_shape))
        return self.dit.forward_chunk(noise, 1.0, actions, self.t, self.cache, text=text)

    @torch.no_grad()
    def imagine(self, captions: Sequence[str], *, steps: int = 16, guidance: float = 10.0,
                seed: int | None = None) -> np.ndarray:
        """First frames dreamt from captions alone: (N, H, W, 3) uint8, one per caption ("" = unconditioned).

        Each starts from pure noise with no history and no action and is denoised in `steps` solver passes (a
        world's first frame is made once, so it can afford more than a step's few), with classifier-free guidance
        `guidance` (1: the conditioned model alone; more follows the caption harder). Frame i draws its noise from
        seed + i, so a caption and a seed always give the same frame. The worlds in play are left as they are:
        start one from a result with reset(frames[:, None]).
        """
        if self.dit.text is None:
            raise ValueError("this model was trained without captions (no text encoder): it cannot start a world "
                             "from text; start from a frame (reset) instead, or train on a dataset with captions")
        check(isinstance(steps, (int, np.integer)) and steps >= 1, "steps", steps, "solver steps >= 1")
        check(isinstance(guidance, (int, float)) and math.isfinite(guidance) and guidance >= 0, "guidance", guidance,
              "a finite scale >= 0 (1: no guidance)")
        shape = self._metadata_latent_shape("imagine")
        n, base = len(captions), int(torch.seed() % 2 ** 62) if seed is None else int(seed)
        ids = self.dit.tokenize(list(captions)).to(self.device)  # (N, L)
        noise = torch.stack([torch.randn((1, *shape), generator=torch.Generator(self.device).manual_seed(base + i),
                                         device=self.device) for i in range(n)])  # (N, 1, C, h, w)
        # an empty cache of its own (no history: chunk 0), so the worlds in play keep theirs
        z, _ = self._denoise(noise, torch.full((n,), -1, device=self.device), ids, float(guidance), int(steps),
                             self.dit.new_cache(n), 0)
        return self.ae.decode_uint8(z[:, 0]).cpu().numpy()

    def _commit(self, z: torch.Tensor, actions: torch.Tensor, text: torch.Tensor | None = None):
        """Cache the finished chunk z (B, 1, C, h, w), shown at the history noise level (under captions `text`
        (B, L), if any); returns that pass's output."""
        self._latent_shape = tuple(z.shape[2:])
        if self.reward is not None:  # the clean frame, as the reward model was trained on the data's latents
            k = self.reward.config.history
            self.recent = (z.repeat(1, k, 1, 1, 1) if self.recent is None  # a first frame stands for those before
                           else torch.cat([self.recent[:, 1:], z], 1))  # (B, history, C, h, w)
        sigma = torch.full((z.shape[0],), self.diffusion.history_sigma, device=self.device)
        if self.diffusion.history_sigma > 0:
            eps = self._noise(tuple(z.shape[1:]))  # (B, 1, C, h, w)
            z = add_noise(z, sigma[:, None], eps)
        out = self.dit.forward_chunk(z, sigma, actions, self.t, self.cache, write=True, text=text)
        self.t += 1
        return out


def load_simulator(checkpoint: str | Path | None, denoise_steps: int | None, context: int | None,
                   device: str | torch.device, batch_size: int,
                   history_sigma: float | None = None, action_guidance: float | None = None,
                   reencode: bool | None = None, history_guidance: float | None = None,
                   history_window: int | None = None) -> tuple[WorldSimulator, Path]:
    """(WorldSimulator, path) for Dream-v0's arguments (checkpoint None: the shipped one), each checked with a message
    that names it. `history_sigma` overrides the noise level the history is shown at, `action_guidance` and
    `history_guidance` the scales of guidance on the action and on the older history, `history_window` the latest
    frames the short-history pass sees, `reencode` whether every frame is cached as its picture encodes (the
    checkpoint's by default)."""
    path = Path(checkpoint) if checkpoint is not None else default_checkpoint()
    if checkpoint is None and not path.exists():
        raise FileNotFoundError(f"the shipped checkpoint is missing from this install ({path}): reinstall worldsim, "
                                "or pass checkpoint=PATH, a world model from `worldsim train world`")
    if denoise_steps is not None and (not isinstance(denoise_steps, (int, np.integer)) or denoise_steps < 1):
        raise ValueError(f"denoise_steps={denoise_steps!r}: expected an integer >= 1")
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"num_envs={batch_size!r}: expected an integer >= 1")
    if history_sigma is not None and not (isinstance(history_sigma, (int, float)) and 0 <= history_sigma < 1):
        raise ValueError(f"history_sigma={history_sigma!r}: expected a noise level in [0, 1), or None for the "
                         "checkpoint's")
    guidance = {"action_guidance": action_guidance, "history_guidance": history_guidance}
    for name, scale in guidance.items():
        if scale is not None and not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale >= 0):
            raise ValueError(f"{name}={scale!r}: expected a finite scale >= 0 (1: none), or None for the checkpoint's")
    if history_window is not None and (not isinstance(history_window, (int, np.integer)) or history_window < 1):
        raise ValueError(f"history_window={history_window!r}: expected an integer >= 1 (cached frames), or None for "
                         "the checkpoint's")
    if reencode is not None and not isinstance(reencode, (bool, np.bool_)):
        raise ValueError(f"reencode={reencode!r}: expected True, False, or None for the checkpoint's")
    sim = WorldSimulator.from_checkpoint(path, denoise_steps=denoise_steps, device=device, seed=0)
    if history_sigma is not None:
        sim.diffusion = replace(sim.diffusion, history_sigma=float(history_sigma))
    for name, scale in guidance.items():
        if scale is not None:
            sim.diffusion = replace(sim.diffusion, **{name: float(scale)})
    if history_window is not None:
        sim.diffusion = replace(sim.diffusion, history_window=int(history_window))
    if reencode is not None:
        sim.diffusion = replace(sim.diffusion, reencode=bool(reencode))
    trained = sim.dit.config.context
    if context is not None:
        if not isinstance(context, (int, np.integer)) or not 2 <= context <= trained:
            raise ValueError(f"context={context!r}: expected an integer in [2, {trained}] (the checkpoint was "
                             f"trained with a window of {trained} frames)")
        sim.set_context(int(context))
    return sim, path


def set_view(sim: WorldSimulator, view: Any, checkpoint: Path) -> tuple[tuple[int, int, int], bool, bool]:
    """Make `sim` play at `view`, (H, W) or (H, W, 3) pixels (None: the checkpoint's frame_shape), refused with the
    rule when the model's autoencoder and patches do not tile it. The simulator's metadata then describes the frames
    it makes: frame_shape and latent_shape are the view's (what WorldSimulator.imagine reads), views still the
    trained ones. Returns (frame shape, whether the model was trained at it, whether its start bank is of it)."""
    meta = sim.metadata
    main = tuple(meta["frame_shape"])
    if view is None:
        return main, True, True
    sides = tuple(view) if isinstance(view, (tuple, list, np.ndarray)) else ()
    if not (len(sides) in (2, 3) and all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in sides)
            and (len(sides) == 2 or sides[2] == 3)):
        raise ValueError(f"view={view!r}: expected a frame size (H, W) in pixels, or None for the checkpoint's "
                         f"{main[:2]}")
    shape = (int(sides[0]), int(sides[1]), 3)
    problem = view_problem(list(shape), sim.ae.cfg, sim.dit.config)
    if problem:
        from worldsim.envs.craft2d import TILE_SIZE, is_craft2d as craft2d

        a, b = shape[:2]  # tiles, if that is what was meant: Craft2D names them width first (view_width=a)
        tiles = (f"; Craft2D draws {TILE_SIZE} px a tile, so view_width={a}, view_height={b} is view=({TILE_SIZE * b}, "
                 f"{TILE_SIZE * a})" if craft2d(meta.get("env")) and max(a, b) < 16 else "")
        raise ValueError(f"view={view!r}: {checkpoint} cannot make frames of {shape[1]}x{shape[0]} pixels (W x H): "
                         f"expected {problem}{tiles}")
    f = sim.ae.cfg.downsample
    sim.metadata = {**meta, "frame_shape": list(shape), "latent_shape": [sim.ae.cfg.latent_channels, shape[0] // f,
                                                                          shape[1] // f]}
    return shape, shape in trained_views(meta), shape == main
