"""Pixel-space world models for the probe leaderboard: a frame-stacking U-Net, trained as a diffusion model (DIAMOND's
kind) or as a deterministic regressor, and the adapter that makes a checkpoint a probe-protocol model.

    worldsim train pixel experiment=diffusion      # or experiment=regression
    worldsim probe model=worldsim.baselines.pixel:PixelWorldModel model_kwargs.checkpoint=runs/pixel/diffusion/last.safetensors

The network (`PixelUNet`) sees the last `context` frames stacked on the channel axis, the actions that led to them and
the action to take; each residual block is told the actions (and, for diffusion, the noise level) through a
scale and shift of its normalised features. It works on any frame size whose sides divide by 2 ** (levels - 1).

- objective="diffusion": EDM's preconditioning (Karras et al. 2022), as DIAMOND (Alonso et al. 2024) uses it: the
  network denoises the next frame at a log-normal noise level in training, and a few Euler steps from
  `sigma_max` make a frame at play time.
- objective="regression": one pass, no noise. The network predicts the change from the last frame (the next frame is
  the last plus its output), so "nothing moved" is its starting point rather than something to re-synthesise; an MSE
  regressor blurs what it cannot be sure of, and the probes show what that costs.

Neither predicts reward or termination: the reward family scores them at its floor, and the report says so. This
module knows nothing of the latent DiT: the baselines are what the DiT is measured against.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from worldsim.checkpoint import component, load_checkpoint
from worldsim.config import check

OBJECTIVES = ("diffusion", "regression")


@dataclass(frozen=True)
class PixelConfig:
    objective: str = "diffusion"  # diffusion (EDM, a few Euler steps a frame) | regression (one pass, the change)
    context: int = 4  # past frames stacked on the channels: the probes show 4
    channels: list[int] = field(default_factory=lambda: [32, 64, 128])  # per level; each after the first halves the
    #                                                                     frame
    blocks: int = 1  # residual blocks per level, down and up
    attention: bool = True  # one self-attention block at the lowest level: what is far apart in the frame can meet
    cond_dim: int = 128  # the conditioning vector: actions (+ noise level)
    n_actions: int = 0  # the env's actions (0: the training data's); -1 (no action) has an embedding of its own
    denoise_steps: int = 3  # Euler steps a frame at play time (DIAMOND: 3)
    sigma_data: float = 0.5  # EDM: the data's standard deviation (frames in [-1, 1])
    sigma_min: float = 2e-3  # EDM: the lowest noise level of the sampler's schedule
    sigma_max: float = 5.0  # EDM: the noise level a frame starts from at play time
    rho: float = 7.0  # Karras schedule's curvature
    p_mean: float = -0.4  # EDM: training noise levels are log-normal, log sigma of this mean
    p_std: float = 1.2  # EDM: and this standard deviation

    def __post_init__(self):
        check(self.objective in OBJECTIVES, "objective", self.objective, f"one of {OBJECTIVES}")
        check(self.context >= 1, "model.context", self.context, "past frames >= 1")
        check(len(self.channels) >= 1 and min(self.channels) >= 8 and all(c % 8 == 0 for c in self.channels),
              "model.channels", list(self.channels), "a list of channel counts, multiples of 8 (8 groups a norm)")
        check(self.blocks >= 1, "model.blocks", self.blocks, "residual blocks per level >= 1")
        check(self.cond_dim >= 8, "model.cond_dim", self.cond_dim, "an integer >= 8")
        check(self.n_actions >= 0, "model.n_actions", self.n_actions, "actions >= 1, or 0: the training data's")
        check(self.denoise_steps >= 1, "model.denoise_steps", self.denoise_steps, "Euler steps >= 1")
        check(0 < self.sigma_min < self.sigma_max, "model.sigma_min", self.sigma_min,
              f"a noise level in (0, sigma_max={self.sigma_max})")

    @property
    def scale(self) -> int:
        """What a frame's sides must divide by."""
        return 2 ** (len(self.channels) - 1)


class ResBlock(nn.Module):
    """GroupNorm, then a scale and shift from the conditioning vector, SiLU, 3x3 conv; twice; plus the input."""

    def __init__(self, c_in: int, c_out: int, cond_dim: int):
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(8, c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.norm2, self.conv2 = nn.GroupNorm(8, c_out), nn.Conv2d(c_out, c_out, 3, padding=1)
        self.film = nn.Linear(cond_dim, 2 * c_out)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()
        nn.init.zeros_(self.conv2.weight)  # every block starts as the identity
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.film(cond)[:, :, None, None].chunk(2, 1)
        h = self.conv2(F.silu(self.norm2(h) * (1 + scale) + shift))
        return self.skip(x) + h


class Attention(nn.Module):
    """Self-attention over the positions of a feature map (one head per 32 channels), plus the input."""

    def __init__(self, c: int):
        super().__init__()
        self.heads = max(1, c // 32)
        self.norm, self.qkv, self.out = nn.GroupNorm(8, c), nn.Conv2d(c, 3 * c, 1), nn.Conv2d(c, c, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).view(b, 3, self.heads, c // self.heads, h * w).transpose(-1, -2).unbind(1)
        y = F.scaled_dot_product_attention(q, k, v)  # (B, heads, h*w, c/heads)
        return x + self.out(y.transpose(-1, -2).reshape(b, c, h, w))


class PixelUNet(nn.Module):
    """(target (B, 3, H, W), context (B, K, 3, H, W), actions (B, K + 1), noise (B,)) -> (B, 3, H, W).

    `actions[:, :K]` led to the context frames (-1 where none did), `actions[:, K]` is the one to take. `noise` is
    EDM's c_noise for diffusion; the regressor passes zeros and a target of zeros."""

    def __init__(self, cfg: PixelConfig):
        super().__init__()
        check(cfg.n_actions >= 1, "model.n_actions", cfg.n_actions, "the env's actions, >= 1")
        self.cfg = cfg
        ch, d = cfg.channels, cfg.cond_dim
        self.action = nn.Embedding((cfg.context + 1) * (cfg.n_actions + 1), d)  # one table per position
        self.noise = nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Linear(d, d))
        self.cond = nn.Sequential(nn.SiLU(), nn.Linear(d, d))
        self.stem = nn.Conv2d(3 * (cfg.context + 1), ch[0], 3, padding=1)
        self.down, self.downsample = nn.ModuleList(), nn.ModuleList()
        c = ch[0]
        for i, c_out in enumerate(ch):
            self.down.append(nn.ModuleList([ResBlock(c if j == 0 else c_out, c_out, d) for j in range(cfg.blocks)]))
            c = c_out
            if i < len(ch) - 1:
                self.downsample.append(nn.Conv2d(c, c, 3, stride=2, padding=1))
        self.mid = nn.ModuleList([ResBlock(c, c, d), ResBlock(c, c, d)])
        self.attn = Attention(c) if cfg.attention else nn.Identity()
        self.up, self.upsample = nn.ModuleList(), nn.ModuleList()
        for i, c_skip in reversed(list(enumerate(ch))):
            self.up.append(nn.ModuleList([ResBlock((c if j == 0 else c_skip) + c_skip, c_skip, d)
                                          for j in range(cfg.blocks)]))
            c = c_skip
            if i > 0:
                self.upsample.append(nn.Conv2d(c, ch[i - 1], 3, padding=1))
                c = ch[i - 1]
        self.head = nn.Sequential(nn.GroupNorm(8, c), nn.SiLU(), nn.Conv2d(c, 3, 3, padding=1))
        nn.init.zeros_(self.head[-1].weight)  # the regressor starts as copy-last; the denoiser as c_skip * x
        nn.init.zeros_(self.head[-1].bias)

    def forward(self, target: torch.Tensor, context: torch.Tensor, actions: torch.Tensor,
                noise: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        offsets = torch.arange(cfg.context + 1, device=actions.device) * (cfg.n_actions + 1)
        cond = self.action(actions + 1 + offsets).sum(1) + self.noise(_fourier(noise, cfg.cond_dim))
        cond = self.cond(cond)
        h = self.stem(torch.cat([target, context.flatten(1, 2)], 1))
        skips = []
        for i, blocks in enumerate(self.down):
            for block in blocks:
                h = block(h, cond)
                skips.append(h)
            if i < len(self.downsample):
                h = self.downsample[i](h)
        h = self.attn(self.mid[0](h, cond))
        h = self.mid[1](h, cond)
        for i, blocks in enumerate(self.up):
            for block in blocks:
                h = block(torch.cat([h, skips.pop()], 1), cond)
            if i < len(self.upsample):
                h = self.upsample[i](F.interpolate(h, scale_factor=2, mode="nearest"))
        return self.head(h)


def _fourier(x: torch.Tensor, dim: int) -> torch.Tensor:
    """(B,) scalars -> (B, dim) sines and cosines at geometric frequencies."""
    freqs = torch.exp(-math.log(1e4) * torch.arange(dim // 2, device=x.device) / (dim // 2))
    angles = x.float()[:, None] * freqs[None] * 100
    return torch.cat([angles.sin(), angles.cos()], 1)


def to_unit(frames: torch.Tensor) -> torch.Tensor:
    """uint8 (..., H, W, 3) -> float (..., 3, H, W) in [-1, 1]."""
    return frames.movedim(-1, -3).float() / 127.5 - 1


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """float (..., 3, H, W) in [-1, 1] -> uint8 (..., H, W, 3)."""
    return ((x.float() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).movedim(-3, -1)


class EDM:
    """EDM's preconditioning of a network F: D(x, sigma) = c_skip x + c_out F(c_in x, c_noise); its loss and sampler."""

    def __init__(self, cfg: PixelConfig):
        self.cfg = cfg

    def _coefficients(self, sigma: torch.Tensor):
        sd = self.cfg.sigma_data
        s = sigma[:, None, None, None]
        return (sd ** 2 / (s ** 2 + sd ** 2), s * sd / (s ** 2 + sd ** 2).sqrt(), 1 / (s ** 2 + sd ** 2).sqrt(),
                sigma.log() / 4)

    def denoise(self, net: nn.Module, x: torch.Tensor, sigma: torch.Tensor, context: torch.Tensor,
                actions: torch.Tensor) -> torch.Tensor:
        c_skip, c_out, c_in, c_noise = self._coefficients(sigma)
        return c_skip * x + c_out * net(c_in * x, context, actions, c_noise).float()

    def loss(self, net: nn.Module, target: torch.Tensor, context: torch.Tensor, actions: torch.Tensor,
             gen: torch.Generator | None, rows: slice = slice(None)) -> torch.Tensor:
        """The per-row loss of the batch's rows `rows`: F's error against what it should output, EDM's weighting
        folded in. The noise is drawn for the whole batch and sliced, so N processes draw what one does."""
        b = target.shape[0]
        sigma = (torch.randn(b, generator=gen, device=target.device) * self.cfg.p_std + self.cfg.p_mean).exp()
        eps = torch.randn(target.shape, generator=gen, device=target.device)
        target, context, actions, sigma, eps = (t[rows] for t in (target, context, actions, sigma, eps))
        noisy = target + sigma[:, None, None, None] * eps
        c_skip, c_out, c_in, c_noise = self._coefficients(sigma)
        out = net(c_in * noisy, context, actions, c_noise).float()
        return ((out - (target - c_skip * noisy) / c_out) ** 2).flatten(1).mean(1)

    def sigmas(self, steps: int, device: torch.device) -> torch.Tensor:
        """Karras et al.'s schedule: `steps` levels from sigma_max to sigma_min, then 0."""
        c = self.cfg
        ramp = torch.linspace(0, 1, steps, device=device)
        s = (c.sigma_max ** (1 / c.rho) + ramp * (c.sigma_min ** (1 / c.rho) - c.sigma_max ** (1 / c.rho))) ** c.rho
        return torch.cat([s, s.new_zeros(1)])

    @torch.no_grad()
    def sample(self, net: nn.Module, context: torch.Tensor, actions: torch.Tensor, steps: int,
               gen: torch.Generator | None) -> torch.Tensor:
        """A next frame (B, 3, H, W) by Euler steps of the probability-flow ODE from pure noise."""
        b, _, c, h, w = context.shape
        sigmas = self.sigmas(steps, context.device)
        x = torch.randn((b, c, h, w), generator=gen, device=context.device) * sigmas[0]
        for s_from, s_to in zip(sigmas[:-1], sigmas[1:]):
            denoised = self.denoise(net, x, s_from.expand(b), context, actions)
            x = x + (s_to - s_from) * (x - denoised) / s_from  # dx/dsigma = (x - D(x)) / sigma
        return x.clamp(-1, 1)


def training_loss(net: nn.Module, frames: torch.Tensor, actions: torch.Tensor, gen: torch.Generator | None,
                  rows: slice = slice(None)) -> torch.Tensor:
    """The per-row loss of clips `frames` (B, K + 1, 3, H, W) in [-1, 1] and `actions` (B, K + 1): the last frame
    predicted from the K before it and the actions. `rows`: the rows this process computes (under torchrun)."""
    cfg = _config_of(net)
    context, target = frames[:, :-1], frames[:, -1]
    if cfg.objective == "diffusion":
        return EDM(cfg).loss(net, target, context, actions, gen, rows)
    context, target, actions = context[rows], target[rows], actions[rows]
    pred = predict(net, context, actions, None)
    return ((pred - target) ** 2).flatten(1).mean(1)


def predict(net: nn.Module, context: torch.Tensor, actions: torch.Tensor, gen: torch.Generator | None,
            steps: int | None = None) -> torch.Tensor:
    """The next frame (B, 3, H, W) in [-1, 1] after `context` (B, K, 3, H, W) and `actions` (B, K + 1)."""
    cfg = _config_of(net)
    if cfg.objective == "diffusion":
        return EDM(cfg).sample(net, context, actions, steps or cfg.denoise_steps, gen)
    zeros = torch.zeros_like(context[:, -1])
    return context[:, -1] + net(zeros, context, actions, zeros.new_zeros(len(zeros))).float()


def _config_of(net: nn.Module) -> PixelConfig:
    return getattr(net, "module", net).cfg  # through DDP's wrapper too


def load_pixel(path: str, device: str | torch.device = "cpu") -> tuple[PixelUNet, dict]:
    """(network in eval mode, checkpoint metadata) of a `worldsim train pixel` checkpoint."""
    tensors, meta = load_checkpoint(path, device)
    raw = meta.get("pixel_config")
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: not a pixel baseline (no pixel_config in its metadata): expected a checkpoint of "
                         "`worldsim train pixel`; a world model is probed with checkpoint=")
    cfg = PixelConfig(**raw)
    net = PixelUNet(cfg).to(device)
    net.load_state_dict(component(tensors, "pixel"))
    return net.eval(), meta


class PixelWorldModel:
    """A `worldsim train pixel` checkpoint as a probe-protocol world model (worldsim.probes.protocol.WorldModel).

    `denoise_steps` overrides the checkpoint's Euler steps a frame (diffusion only)."""

    max_batch = 64

    def __init__(self, checkpoint: str, denoise_steps: int | None = None, device: str = "cpu"):
        check(denoise_steps is None or denoise_steps >= 1, "denoise_steps", denoise_steps,
              "null (the checkpoint's) or Euler steps >= 1")
        net, _ = load_pixel(checkpoint, device)
        self._use(net, denoise_steps)

    @classmethod
    def of(cls, net: PixelUNet, denoise_steps: int | None = None) -> PixelWorldModel:
        """A network in memory (training's evaluation) as the same world model."""
        model = cls.__new__(cls)
        model._use(net, denoise_steps)
        return model

    def _use(self, net: PixelUNet, denoise_steps: int | None) -> None:
        self.net, self.device = net, next(net.parameters()).device
        self.steps = denoise_steps or net.cfg.denoise_steps
        self.context = net.cfg.context
        self.name = f"pixel-{net.cfg.objective}"
        self.num_parameters = sum(p.numel() for p in net.parameters())

    def reset(self, frames: np.ndarray, actions: np.ndarray, seed: int) -> None:
        h, w = frames.shape[2:4]
        scale = self.net.cfg.scale
        if h % scale or w % scale:
            raise ValueError(f"frames of {w}x{h} px: this network's {len(self.net.cfg.channels)} levels need sides "
                             f"that divide by {scale}")
        k = self.context
        x = to_unit(torch.from_numpy(np.ascontiguousarray(frames[:, -k:])).to(self.device))  # (B, <=K, 3, H, W)
        a = torch.from_numpy(np.ascontiguousarray(actions[:, -k:])).to(self.device)
        if x.shape[1] < k:  # fewer past frames than the network stacks: the first repeated, with no action
            pad = k - x.shape[1]
            x = torch.cat([x[:, :1].expand(-1, pad, -1, -1, -1), x], 1)
            a = torch.cat([a.new_full((len(a), pad), -1), a], 1)
        self.frames, self.actions = x, a
        self.gen = torch.Generator(self.device).manual_seed(int(seed))

    @torch.no_grad()
    def step(self, actions: np.ndarray) -> np.ndarray:
        a = torch.cat([self.actions, torch.from_numpy(actions).to(self.device)[:, None]], 1)  # (B, K + 1)
        nxt = to_uint8(predict(self.net, self.frames, a, self.gen, self.steps))  # what the player sees
        self.frames = torch.cat([self.frames[:, 1:], to_unit(nxt)[:, None]], 1)  # and what the model sees next
        self.actions = a[:, 1:]
        return nxt.cpu().numpy()
