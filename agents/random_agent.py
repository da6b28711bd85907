"""Uniformly random actions with momentum: each step repeats the last action with probability `repeat_prob`."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np


class RandomAgent:
    """Sticky uniform random actions. With repeat_prob=0.8 an action lasts 5 steps on average, so walks go places."""

    name = "random"

    def __init__(self, action_space: gym.Space, env_id: str | None = None, repeat_prob: float = 0.8):
        if not isinstance(action_space, gym.spaces.Discrete):
            raise ValueError(f"agent=random needs a Discrete action space, got {action_space}")
        self.n = int(action_space.n)
        if not 0.0 <= repeat_prob < 1.0:
            raise ValueError(f"repeat_prob={repeat_prob}: expected a probability in [0, 1)")
        self.repeat_prob = repeat_prob
        self.current = self.name
        self.reset()

    def reset(self, seed: int | None = None) -> None:
        self.rng = np.random.default_rng(seed)
        self.last: int | None = None

    def act(self, obs: np.ndarray, info: dict[str, Any]) -> int:
        if self.last is None or self.rng.random() >= self.repeat_prob:
            self.last = int(self.rng.integers(self.n))
        return self.last
