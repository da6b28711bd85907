"""The reward/end model: a step's reward and termination from the frames before it and the action taken.

The DiT's heads read the frame the world model has just drawn, so a dream that draws an event wrong (a mined ore
left standing) pays nothing for it. This small network reads what the step starts from instead, the latest `history`
latent frames and the action: the dream pays for mining an ore whether or not it then draws the ore gone. With
`after`, it reads the frame the step made as well, as DIAMOND's reward/end model reads the next observation beside
the last: what the step changed shows there (measured on Craft2D: better on held-out data, worse in the dream, which
seldom draws the change; README, "Ores laid bare"). It is trained apart from the world model, on the same latents
(`worldsim train reward`, worldsim/train/reward.py), and travels in the world's checkpoint ("reward.*").

Convolutions, then the mean and the maximum over the latent grid: any frame size, and an event anywhere on it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from worldsim.config import check


@dataclass(frozen=True)
class RewardModelConfig:
    """Shape of the reward/end model; stored in the checkpoint (metadata "reward_config")."""

    latent_channels: int = 8  # C of the world's latents
    n_actions: int = 12  # the env's discrete actions (one more embedding: no action known)
    values: tuple[float, ...] = (0.0, 1.0)  # the rewards it classifies among, 0 one of them: a step pays or not
    history: int = 2  # latent frames before the step it reads: two show a movement (a ball's direction)
    width: int = 64  # channels of every convolution
    depth: int = 3  # convolutions: a 3x3 one, then depth - 1 of `kernel`
    kernel: int = 3  # of the convolutions after the first: 3 widens the reach, 1 keeps it at the 3x3 neighbourhood
    after: bool = False  # also read the frame the step made (the data's next frame; in a dream, the frame drawn)

    def __post_init__(self):
        object.__setattr__(self, "values", tuple(float(v) for v in self.values))
        check(self.latent_channels >= 1 and self.n_actions >= 1, "latent_channels, n_actions",
              (self.latent_channels, self.n_actions), "integers >= 1")
        values = self.values
        check(len(values) >= 2 and 0.0 in values and all(math.isfinite(v) for v in values)
              and list(values) == sorted(set(values)), "values", list(values),
              ">= 2 distinct finite rewards in increasing order, 0 among them (a step that pays nothing)")
        check(self.history >= 1, "history", self.history, "latent frames >= 1")
        check(self.width >= 1 and self.depth >= 1, "width, depth", (self.width, self.depth), "integers >= 1")
        check(self.kernel in (1, 3), "kernel", self.kernel, "1 or 3")


def nonzero_probability(logits: torch.Tensor, values: tuple[float, ...]) -> torch.Tensor:
    """(...,) the probability of a non-zero reward from logits (..., K) over `values` (0 among them)."""
    return 1 - logits.float().softmax(-1)[..., values.index(0.0)]


def classified_reward(logits: torch.Tensor, values: tuple[float, ...], threshold: float | torch.Tensor) -> torch.Tensor:
    """(...,) rewards from logits (..., K) over `values`: 0 unless the probability of a non-zero reward passes
    `threshold`, then the most likely non-zero value. Rewards are rare, so argmax would never pay."""
    table = torch.tensor(values, device=logits.device)
    likely = logits.float().softmax(-1)
    likely[..., values.index(0.0)] = -1.0  # never the most likely non-zero value
    pays = nonzero_probability(logits, values) > threshold
    return torch.where(pays, table[likely.argmax(-1)], torch.zeros((), device=logits.device))


class RewardModel(nn.Module):
    """(latents (B, frames, C, h, w), actions (B,)) -> (reward logits (B, K), termination logit (B,)); frames: the
    `history` before the step, then (with `after`) the frame it made."""

    def __init__(self, cfg: RewardModelConfig):
        super().__init__()
        self.config = cfg
        d = cfg.width
        self.action = nn.Embedding(cfg.n_actions + 1, d)  # index 0: no action known (-1)
        self.stem = nn.Conv2d(self.frames * cfg.latent_channels, d, 3, padding=1)
        self.convs = nn.ModuleList(nn.Conv2d(d, d, cfg.kernel, padding=cfg.kernel // 2) for _ in range(cfg.depth - 1))
        self.out = nn.Sequential(nn.Linear(2 * d, 4 * d), nn.SiLU(), nn.Linear(4 * d, len(cfg.values) + 1))
        # the probability of a non-zero reward above which a step pays: chosen on held-out data after training
        # (worldsim.train.reward), not argmax's
        self.register_buffer("threshold", torch.tensor(0.5))

    @property
    def frames(self) -> int:
        """Latent frames an example holds: the history, and the frame the step made with `after`."""
        return self.config.history + int(self.config.after)

    def forward(self, latents: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, k, c, h, w = latents.shape
        check(k == self.frames and c == self.config.latent_channels, "latents", tuple(latents.shape),
              f"(B, {self.frames}, {self.config.latent_channels}, h, w): the model's frames and channels")
        x = self.stem(latents.reshape(b, k * c, h, w))  # (B, D, h, w): the frames side by side as channels
        x = x + self.action(actions.long().clamp_min(-1) + 1)[:, :, None, None]  # the action everywhere on the grid
        for conv in self.convs:
            x = conv(F.silu(x))
        x = F.silu(x)
        out = self.out(torch.cat([x.mean((2, 3)), x.amax((2, 3))], 1))  # (B, K + 1)
        return out[:, :-1], out[:, -1]

    def reward_of(self, logits: torch.Tensor, threshold: float | None = None) -> torch.Tensor:
        """(B,) rewards from forward's logits, at the model's threshold (or `threshold`)."""
        return classified_reward(logits, self.config.values, self.threshold if threshold is None else threshold)

    def scores(self, logits: torch.Tensor) -> torch.Tensor:
        """(B,) the probability of a non-zero reward, what the threshold is compared with."""
        return nonzero_probability(logits, self.config.values)
