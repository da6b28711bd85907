"""The PPO agent's network: the Nature-CNN actor-critic over uint8 frames (worldsim.agents.ppo trains it,
worldsim.agents.ppo_state saves and loads it), and the image layouts it takes."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
from torch.distributions.categorical import Categorical

MIN_SIDE = 36  # the Nature CNN's three convolutions need at least 36 pixels a side


def image_layout(space: gym.Space, what: str) -> bool:
    """True for (H, W, C) frames, False for (C, H, W) (frame stacks of Atari wrappers); refuses anything else."""
    ok = isinstance(space, gym.spaces.Box) and space.dtype == np.uint8 and len(space.shape) == 3
    channels_last = ok and space.shape[-1] in (1, 3, 4)
    ok = ok and (channels_last or space.shape[0] in (1, 3, 4))
    side = min(space.shape[:2] if channels_last else space.shape[1:]) if ok else 0
    if not ok or side < MIN_SIDE:
        raise ValueError(f"{what} observes {space}: expected uint8 images (H, W, C) or (C, H, W) with 1, 3 or 4 "
                         f"channels and sides of at least {MIN_SIDE} pixels")
    return channels_last


def layer_init(layer: nn.Module, std: float = np.sqrt(2), bias_const: float = 0.0) -> nn.Module:
    torch.nn.init.orthogonal_(layer.weight, std)
    torch.nn.init.constant_(layer.bias, bias_const)
    return layer


class Policy(nn.Module):
    """The Nature-CNN actor-critic (Mnih et al. 2015) over uint8 frames, CleanRL's Atari agent."""

    def __init__(self, obs_shape: tuple[int, ...], n_actions: int, channels_last: bool):
        super().__init__()
        self.channels_last = channels_last
        c, h, w = (obs_shape[2], *obs_shape[:2]) if channels_last else obs_shape
        self.network = nn.Sequential(
            layer_init(nn.Conv2d(c, 32, 8, stride=4)), nn.ReLU(),
            layer_init(nn.Conv2d(32, 64, 4, stride=2)), nn.ReLU(),
            layer_init(nn.Conv2d(64, 64, 3, stride=1)), nn.ReLU(),
            nn.Flatten(),
        )
        with torch.no_grad():  # 1024 features at 64x64, 3136 at 84x84
            n = self.network(torch.zeros(1, c, h, w)).shape[1]
        self.network.append(layer_init(nn.Linear(n, 512)))
        self.network.append(nn.ReLU())
        self.actor = layer_init(nn.Linear(512, n_actions), std=0.01)  # near-uniform first policy
        self.critic = layer_init(nn.Linear(512, 1), std=1)

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float() / 255.0
        if self.channels_last:
            x = x.permute(0, 3, 1, 2)  # (B, H, W, C) -> (B, C, H, W)
        return self.network(x)

    def get_value(self, x: torch.Tensor) -> torch.Tensor:
        return self.critic(self.hidden(x)).flatten()

    def get_action_and_value(self, x: torch.Tensor, action: torch.Tensor | None = None, greedy: bool = False):
        hidden = self.hidden(x)
        probs = Categorical(logits=self.actor(hidden))
        if action is None:
            action = probs.logits.argmax(-1) if greedy else probs.sample()
        return action, probs.log_prob(action), probs.entropy(), self.critic(hidden).flatten()


def pick_device(name: str) -> torch.device:
    return torch.device("cuda" if name == "auto" and torch.cuda.is_available() else "cpu" if name == "auto" else name)
