"""The video compression network: a conv autoencoder from uint8 frames to a small grid of normalised latents.

    frames (N, H, W, 3) uint8 --encode--> latents (N, C, H/f, W/f), ~zero mean and unit std per channel
    latents --decode--> frames (N, 3, H, W) float in [0, 1] (decode_uint8: (N, H, W, 3) uint8)

Every entry point also takes a time axis, (B, T, ...), and keeps it. The latent scale (a mean and std per channel)
is a pair of buffers, so it travels in the state dict and the checkpoint and is never typed anywhere else.
The workflow:

    ae = Autoencoder(AutoencoderConfig())                    # initialised in the constructor, as the DiT is
    ... train on ae.loss(frames) ...                          # latent noise is scaled by the batch's own std
    ae.fit_latent_stats(ae.encode_raw(sample_of_frames))      # once, on a few thousand frames
    latents = ae.encode(frames)                               # normalised from now on; save the state dict

Until the stats are fitted, encode returns the raw encoder output (mean 0, std 1 buffers: the identity).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

DOWNSAMPLES = (8, 16)


@dataclass(frozen=True)
class AutoencoderConfig:
    downsample: int = 8  # f, 8 or 16: 8 gives one latent per Craft2D tile (64 tokens at 64x64); 16 gives 16 tokens
    latent_channels: int = 8  # C: a tile's sprite, light level and neighbours fit in 8 numbers; more is harder to model
    width: int = 64  # channels at the finest level (H/stem); the cost of a step grows with its square
    channel_mult: tuple[int, ...] = (1, 2, 2, 4)  # width multiplier per level, finest first (log2(f / stem) + 1 used)
    blocks: int = 1  # residual blocks per level (each level also has one down/up-sampling conv)
    stem: int = 8  # space-to-depth at the input, pixel shuffle at the output: convs run at H/stem. 8 = one 8x8
    #                patch per position, 2.5x the frames/s of 4 and 4x of 2 on CPU, and the best PSNR per minute
    head_width: int = 512  # hidden units of the decoder's last, per-position MLP: room for every sprite's pixels
    latent_noise: float = 0.1  # std (in units of the latent std) of noise added before decoding in training, so the
    #                            decoder tolerates the imperfect latents a diffusion model produces
    mse_weight: float = 1.0  # loss = L1 + mse_weight * MSE on [0, 1] pixels: L1 keeps edges sharp, MSE drives PSNR
    hard_fraction: float = 0.05  # the worst fraction of f x f cells (one latent position each) of every batch ...
    hard_weight: float = 1.0  # ... adds its mean loss times this: a sprite with one wrong digit is a wrong sprite,
    #                           though it barely moves the mean (0: plain mean loss)

    def __post_init__(self):
        if self.downsample not in DOWNSAMPLES:
            raise ValueError(f"downsample={self.downsample}: expected one of {DOWNSAMPLES}")
        if self.stem not in (1, 2, 4, 8) or self.stem > self.downsample:
            raise ValueError(f"stem={self.stem}: expected 1, 2, 4 or 8, at most downsample={self.downsample}")
        if len(self.channel_mult) < self.levels:
            raise ValueError(f"channel_mult={tuple(self.channel_mult)}: downsample={self.downsample} with "
                             f"stem={self.stem} needs {self.levels} levels, give one multiplier per level")
        if not 0.0 < self.hard_fraction <= 1.0 or self.hard_weight < 0:
            raise ValueError(f"hard_fraction={self.hard_fraction}, hard_weight={self.hard_weight}: expected a "
                             "fraction in (0, 1] and a weight >= 0")
        if min(self.latent_channels, self.width, self.head_width) < 1 or self.blocks < 0 or self.latent_noise < 0:
            raise ValueError(f"latent_channels={self.latent_channels}, width={self.width}, head_width="
                             f"{self.head_width}, blocks={self.blocks}, "
                             f"latent_noise={self.latent_noise}: expected positive sizes and a noise std >= 0")

    @property
    def levels(self) -> int:
        """Resolutions the network works at: H/stem, H/(2 stem), ..., H/downsample."""
        return int(math.log2(self.downsample // self.stem)) + 1

    def channels(self, level: int) -> int:
        return self.width * self.channel_mult[level]


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(32, channels), channels)  # 32 groups where the width allows, fewer for thin layers


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, plus a skip (a 1x1 conv where the width changes)."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.norm1, self.conv1 = _norm(c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.norm2, self.conv2 = _norm(c_out), nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class Encoder(nn.Module):
    """(N, 3, H, W) in [-1, 1] -> raw latents (N, C, H/f, W/f)."""

    def __init__(self, cfg: AutoencoderConfig):
        super().__init__()
        s, L = cfg.stem, cfg.levels
        self.stem = nn.PixelUnshuffle(s)
        self.conv_in = nn.Conv2d(3 * s * s, cfg.channels(0), 3, padding=1)
        self.down = nn.ModuleList()
        for lvl in range(L):
            c = cfg.channels(lvl)
            blocks = [ResBlock(c, c) for _ in range(cfg.blocks)]
            if lvl < L - 1:
                blocks.append(nn.Conv2d(c, cfg.channels(lvl + 1), 3, stride=2, padding=1))  # halve H and W
            self.down.append(nn.Sequential(*blocks))
        c = cfg.channels(L - 1)
        self.mid = ResBlock(c, c)
        self.norm_out, self.conv_out = _norm(c), nn.Conv2d(c, cfg.latent_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(self.stem(x))  # (N, width, H/stem, W/stem)
        for level in self.down:
            h = level(h)
        h = self.mid(h)  # (N, D, H/f, W/f)
        return self.conv_out(F.silu(self.norm_out(h)))


class Upsample(nn.Module):
    """Nearest-neighbour x2 then a 3x3 conv: no checkerboard, unlike a strided transposed conv."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Decoder(nn.Module):
    """Raw latents (N, C, H/f, W/f) -> (N, 3, H, W), about [-1, 1] (unclamped: the loss sees overshoot)."""

    def __init__(self, cfg: AutoencoderConfig):
        super().__init__()
        s, L = cfg.stem, cfg.levels
        c = cfg.channels(L - 1)
        self.conv_in = nn.Conv2d(cfg.latent_channels, c, 3, padding=1)
        self.mid = ResBlock(c, c)
        self.up = nn.ModuleList()
        for lvl in reversed(range(L)):
            c = cfg.channels(lvl)
            blocks = [ResBlock(c, c) for _ in range(cfg.blocks)]
            if lvl > 0:
                blocks.append(Upsample(c, cfg.channels(lvl - 1)))
            self.up.append(nn.Sequential(*blocks))
        self.norm_out = _norm(cfg.channels(0))
        # A per-position MLP to the pixels: its last layer is a basis of stem x stem patches, and a wide one can hold
        # every sprite (a 3x3 conv straight from `width` channels could mix only width x 9 of them)
        self.head = nn.Conv2d(cfg.channels(0), cfg.head_width, 1)
        self.conv_out = nn.Conv2d(cfg.head_width, 3 * s * s, 1)
        self.unstem = nn.PixelShuffle(s)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.mid(self.conv_in(z))  # (N, D, H/f, W/f)
        for level in self.up:
            h = level(h)  # (N, width, H/stem, W/stem) after the last
        h = F.silu(self.head(F.silu(self.norm_out(h))))  # (N, head_width, H/stem, W/stem)
        return self.unstem(self.conv_out(h))  # (N, 3 * stem^2, H/stem, W/stem) -> (N, 3, H, W)


class Autoencoder(nn.Module):
    """Conv encoder/decoder between uint8 frames and normalised latents, with the latent scale in its buffers."""

    def __init__(self, cfg: AutoencoderConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder, self.decoder = Encoder(cfg), Decoder(cfg)
        self.register_buffer("latent_mean", torch.zeros(cfg.latent_channels))  # (C,) in the state dict: the
        self.register_buffer("latent_std", torch.ones(cfg.latent_channels))  # checkpoint carries the latent scale
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """Kaiming-normal convs, zero biases, identity GroupNorms, and the last conv of every residual branch at
        zero, so each block starts as the identity and deep stacks train from the first step."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="linear")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.GroupNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        for m in self.modules():
            if isinstance(m, ResBlock):
                nn.init.zeros_(m.conv2.weight)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    @property
    def stats_fitted(self) -> bool:
        """False while the latent scale is still the identity (mean 0, std 1): call fit_latent_stats."""
        return bool(self.latent_mean.any() or (self.latent_std != 1).any())

    # ---- frames <-> tensors ------------------------------------------------------------------------------------
    def _frames_in(self, frames: torch.Tensor | np.ndarray) -> tuple[torch.Tensor, tuple[int, ...]]:
        """uint8 (..., H, W, 3) -> float (N, 3, H, W) in [-1, 1] on the model's device, and the leading shape."""
        if isinstance(frames, np.ndarray):
            frames = torch.from_numpy(frames if frames.flags.writeable else frames.copy())  # memmaps are read-only
        f = self.cfg.downsample
        if frames.dtype != torch.uint8 or frames.ndim not in (4, 5) or frames.shape[-1] != 3:
            raise ValueError(f"frames of shape {tuple(frames.shape)} {frames.dtype}: expected uint8 (N, H, W, 3) or "
                             f"(B, T, H, W, 3)")
        h, w = frames.shape[-3:-1]
        if h % f or w % f:
            raise ValueError(f"frame size {h}x{w}: height and width must be multiples of downsample={f}; resize or "
                             f"crop the frames (collect frame_size=[H,W]) or choose another downsample")
        lead = tuple(frames.shape[:-3])
        x = frames.reshape(-1, h, w, 3).to(self.latent_mean.device)  # (N, H, W, 3): move uint8, 4x fewer bytes
        x = x.permute(0, 3, 1, 2).float() / 127.5 - 1.0  # (N, 3, H, W)
        return x, lead

    def _latents_in(self, latents: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...]]:
        c = self.cfg.latent_channels
        if latents.ndim not in (4, 5) or latents.shape[-3] != c:
            raise ValueError(f"latents of shape {tuple(latents.shape)}: expected (N, {c}, h, w) or (B, T, {c}, h, w)")
        return latents.reshape(-1, *latents.shape[-3:]), tuple(latents.shape[:-3])  # (N, C, h, w)

    # ---- the public maps -----------------------------------------------------------------------------------------
    def encode_raw(self, frames: torch.Tensor | np.ndarray) -> torch.Tensor:
        """uint8 (N, H, W, 3) or (B, T, H, W, 3) -> un-normalised latents (N, C, h, w) or (B, T, C, h, w)."""
        x, lead = self._frames_in(frames)
        z = self.encoder(x)  # (N, C, h, w)
        return z.reshape(*lead, *z.shape[1:])

    def encode(self, frames: torch.Tensor | np.ndarray) -> torch.Tensor:
        """uint8 (N, H, W, 3) or (B, T, H, W, 3) -> normalised latents (N, C, h, w) or (B, T, C, h, w)."""
        z = self.encode_raw(frames)
        return (z - self.latent_mean[:, None, None]) / self.latent_std[:, None, None]

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Normalised latents (..., C, h, w) -> frames (..., 3, H, W) float in [0, 1]."""
        return ((self._decode_raw(latents) + 1.0) / 2.0).clamp(0.0, 1.0)

    def decode_uint8(self, latents: torch.Tensor) -> torch.Tensor:
        """Normalised latents (..., C, h, w) -> frames (..., H, W, 3) uint8."""
        x = self.decode(latents)
        return (x * 255.0).round().to(torch.uint8).movedim(-3, -1)  # (..., H, W, 3)

    def _decode_raw(self, latents: torch.Tensor) -> torch.Tensor:
        z, lead = self._latents_in(latents)
        z = z * self.latent_std[:, None, None] + self.latent_mean[:, None, None]  # back to the decoder's scale
        x = self.decoder(z)  # (N, 3, H, W) about [-1, 1]
        return x.reshape(*lead, *x.shape[1:])

    @torch.no_grad()
    def fit_latent_stats(self, latents_raw: torch.Tensor) -> None:
        """Set the latent scale from un-normalised latents (..., C, h, w) (encode_raw of a few thousand frames)."""
        z, _ = self._latents_in(latents_raw)
        z = z.transpose(0, 1).reshape(self.cfg.latent_channels, -1).double()  # (C, N*h*w)
        self.latent_mean.copy_(z.mean(1).to(self.latent_mean))
        self.latent_std.copy_(z.std(1).clamp_min(1e-4).to(self.latent_std))  # a dead channel must not divide by 0

    # ---- training ------------------------------------------------------------------------------------------------
    def forward(self, frames: torch.Tensor | np.ndarray,
                rows: slice = slice(None)) -> tuple[torch.Tensor, dict[str, float]]:
        return self.loss(frames, rows)

    def loss(self, frames: torch.Tensor | np.ndarray,
             rows: slice = slice(None)) -> tuple[torch.Tensor, dict[str, float]]:
        """Reconstruction loss of a batch of uint8 frames, through noisy latents; logs: loss, l1, mse, psnr (dB,
        of the noisy reconstruction) and the latents' mean std. `rows`: the frames whose loss this process computes
        (distributed training: its share of the global batch; the latent noise is drawn for the whole batch and
        sliced, but the noise scale and the hardest cells are of these rows alone)."""
        n, part = len(frames), frames[rows]
        x, _ = self._frames_in(part)  # (N, 3, H, W)
        z = self.encoder(x)  # (N, C, h, w)
        # Noise in units of each channel's std over the batch (not the buffers, unfitted while training): scaling a
        # channel up scales its noise too, so the encoder cannot shout over it.
        std = z.detach().transpose(0, 1).reshape(z.shape[1], -1).std(1)  # (C,)
        per_row = len(x) // max(1, len(part))  # frames per row: 1 of (N, H, W, 3), T of (B, T, H, W, 3)
        noise = torch.randn((n, per_row, *z.shape[1:]), dtype=z.dtype, device=z.device)  # the whole batch's draws
        noise = noise[rows].flatten(0, 1)  # (N, C, h, w)
        z_noisy = z + self.cfg.latent_noise * std[:, None, None] * noise
        x_hat = self.decoder(z_noisy)  # (N, 3, H, W)
        target, pred = (x + 1.0) / 2.0, (x_hat + 1.0) / 2.0  # [0, 1] pixels: loss and PSNR in the usual units
        err = pred - target  # (N, 3, H, W)
        l1, mse = err.abs().mean(), err.square().mean()
        loss = l1 + self.cfg.mse_weight * mse
        if self.cfg.hard_weight:
            per_pixel = (err.abs() + self.cfg.mse_weight * err.square()).mean(1, keepdim=True)  # (N, 1, H, W)
            per_cell = F.avg_pool2d(per_pixel, self.cfg.downsample).flatten()  # (N * h * w,)
            k = max(1, int(self.cfg.hard_fraction * per_cell.numel()))
            loss = loss + self.cfg.hard_weight * per_cell.topk(k).values.mean()
        with torch.no_grad():
            mse_clamped = (pred.clamp(0, 1) - target).square().mean()
        values = torch.stack([loss, l1, mse, psnr(mse_clamped), std.mean()]).tolist()  # one device sync, not five
        return loss, dict(zip(("loss", "l1", "mse", "psnr", "latent_std"), values))


def psnr(mse: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB of an MSE on [0, 1] pixels."""
    return -10.0 * torch.log10(mse.clamp_min(1e-10))
