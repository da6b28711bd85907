"""WorldSimulator: the one object that steps a trained world model, for a batch of worlds at once.

Each world is a history of latent frames held as keys and values in the transformer's cache (a sliding window of
`context` chunks, so a step costs the same at step 10 and at step 10,000 and memory stays bounded). A step denoises
the new chunk from pure noise in `denoise_steps` solver passes that attend to the cache, then runs one more pass on
the clean result to cache it; the reward and termination heads read that last pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from worldsim.models.diffusion import DiffusionConfig, add_noise, sample, to_velocity


@dataclass
class StepResult:
    frames: np.ndarray  # (B, H, W, 3) uint8
    rewards: np.ndarray  # (B,) float32
    terminated: np.ndarray  # (B,) bool
    latents: np.ndarray  # (B, C, h, w) float32: the new frame before decoding


def resolve_device(device: str | torch.device) -> torch.device:
    """'auto' means CUDA when present, else CPU; nothing requires a GPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class WorldSimulator:
    """Steps `B` learned worlds: `reset(frames, actions)`, then `step(actions)` -> frames, rewards, terminated."""

    def __init__(self, autoencoder, dit, diffusion: DiffusionConfig, *, denoise_steps: int | None = None,
                 device: str | torch.device = "cpu", seed: int | None = None):
        self.device = resolve_device(device)
        self.ae = autoencoder.to(self.device).eval()
        self.dit = dit.to(self.device).eval()
        self.diffusion = diffusion
        self.denoise_steps = diffusion.denoise_steps if denoise_steps is None else denoise_steps
        if self.denoise_steps < 1:
            raise ValueError(f"denoise_steps={self.denoise_steps}: expected at least 1 solver step")
        self.generator = torch.Generator(self.device)
        self.seed(seed)
        self.cache = None
        self.t = 0  # absolute chunk index of the next chunk
        self.metadata: dict = {}  # a checkpoint's metadata (from_checkpoint)
        self.start_frames = np.zeros((0, 0, 0, 3), np.uint8)  # (K, H, W, 3) real start frames (from_checkpoint)

    @classmethod
    def from_checkpoint(cls, path, *, denoise_steps: int | None = None, device: str | torch.device = "auto",
                        seed: int | None = None) -> "WorldSimulator":
        """Build the autoencoder, transformer and sampler a world-model checkpoint describes."""
        from dataclasses import fields

        from worldsim.checkpoint import CheckpointError, component, load_checkpoint
        from worldsim.models.autoencoder import Autoencoder, AutoencoderConfig
        from worldsim.models.dit import DiT, DiTConfig

        tensors, meta = load_checkpoint(path)
        if "dit_config" not in meta:
            raise CheckpointError(f"checkpoint {path}: no world model in it (an autoencoder checkpoint?): train one "
                                  f"with `worldsim train world`")
        ae = Autoencoder(AutoencoderConfig(**meta["ae_config"]))
        ae.load_state_dict(component(tensors, "ae"))
        dit = DiT(DiTConfig(**meta["dit_config"]))
        dit.load_state_dict(component(tensors, "dit"))
        known = {f.name for f in fields(DiffusionConfig)}
        saved = dict(meta["diffusion"])
        if "steps" in saved:  # format 1 files written before the name was unified
            saved["denoise_steps"] = saved.pop("steps")
        diffusion = DiffusionConfig(**{k: v for k, v in saved.items() if k in known})
        sim = cls(ae, dit, diffusion, denoise_steps=denoise_steps, device=device, seed=seed)
        sim.metadata = meta
        if "start.frames" in tensors:
            sim.start_frames = tensors["start.frames"].numpy()
        return sim

    def set_context(self, context: int) -> None:
        """Attend to fewer frames than the checkpoint's window (faster, less memory); from the next reset on."""
        from dataclasses import replace

        if not 1 <= context <= self.dit.config.context:
            raise ValueError(f"context={context}: expected 1 to {self.dit.config.context}, the window this model "
                             "has (a longer one would show it histories it never learned from)")
        self.dit.config = replace(self.dit.config, context=context)
        self.cache = None

    def seed(self, seed: int | None) -> None:
        """Seed the sampling noise: the same seed, history and actions give the same frames (on one device)."""
        self.generator.manual_seed(int(seed) if seed is not None else int(torch.seed() % 2 ** 63))

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
        z = self.ae.encode(torch.from_numpy(frames).to(self.device))  # (B, T0, C, h, w) normalised latents
        self._batch = b
        self.cache = self.dit.new_cache(b)
        self.t = 0
        a = torch.from_numpy(actions).to(self.device)
        for i in range(t0):
            self._commit(z[:, i:i + 1], a[:, i])

    @torch.no_grad()
    def step(self, actions: np.ndarray, restart: np.ndarray | None = None,
             start_frames: np.ndarray | None = None) -> StepResult:
        """Advance every world by one frame under `actions` (B,) and return what the model predicts.

        `restart` (B,) bool marks worlds that start over instead (a vector env's autoreset): their history is dropped,
        `start_frames[b]` (B, H, W, 3) uint8 becomes their first frame and is what they return, with reward 0 and not
        terminated; their action is ignored. All worlds still take one batched step.
        """
        if self.cache is None:
            raise RuntimeError("WorldSimulator.step() before reset(): call reset(frames) first")
        actions = np.asarray(actions, np.int64).reshape(-1)
        if actions.shape[0] != self._batch:
            raise ValueError(f"{actions.shape[0]} actions for {self._batch} worlds: expected one action per world")
        a = torch.from_numpy(actions).to(self.device)
        c, h, w = self._latent_shape
        noise = torch.randn((self._batch, 1, c, h, w), generator=self.generator, device=self.device)
        # each solver pass attends to the cached history and does not write to it
        prediction = self.diffusion.prediction

        def velocity(x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
            out = self.dit.forward_chunk(x, s, a, self.t, self.cache, write=False).out
            return to_velocity(out, x, s, prediction)

        z = sample(velocity, noise, self.denoise_steps, self.diffusion.shift)
        rows = None
        if restart is not None and np.any(restart):
            rows = np.flatnonzero(restart)
            if start_frames is None or len(start_frames) != self._batch:
                raise ValueError(f"restart needs start_frames for all {self._batch} worlds (B, H, W, 3) uint8")
            first = torch.from_numpy(np.ascontiguousarray(start_frames[rows])).to(self.device)
            idx = torch.from_numpy(rows).to(self.device)
            z[idx, 0] = self.ae.encode(first)  # (R, C, h, w): their first frame, as reset() would encode it
            a = a.clone()
            a[idx] = -1  # no action led to a first frame
            self.cache.reset_rows(idx)
        out = self._commit(z, a)
        frames = self.ae.decode_uint8(z[:, 0]).cpu().numpy()  # (B, H, W, 3)
        rewards = out.reward[:, 0].float().cpu().numpy()
        terminated = (out.terminated_logit[:, 0] > 0).cpu().numpy()
        if rows is not None:
            frames[rows], rewards[rows], terminated[rows] = start_frames[rows], 0.0, False
        return StepResult(frames=frames, rewards=rewards, terminated=terminated, latents=z[:, 0].float().cpu().numpy())

    def _commit(self, z: torch.Tensor, actions: torch.Tensor):
        """Cache the finished chunk z (B, 1, C, h, w), shown at the history noise level; returns that pass's output."""
        self._latent_shape = tuple(z.shape[2:])
        sigma = torch.full((z.shape[0],), self.diffusion.history_sigma, device=self.device)
        if self.diffusion.history_sigma > 0:
            eps = torch.randn(z.shape, generator=self.generator, device=self.device)
            z = add_noise(z, sigma[:, None], eps)
        out = self.dit.forward_chunk(z, sigma, actions, self.t, self.cache, write=True)
        self.t += 1
        return out
