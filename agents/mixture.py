"""A different agent each episode, drawn with fixed weights: varied data from one collect run."""

from __future__ import annotations

from typing import Any, Mapping

import gymnasium as gym
import numpy as np

from worldsim.agents.explorer import ExplorerAgent
from worldsim.agents.random_agent import RandomAgent
from worldsim.envs.craft2d.tiles import is_craft2d

# What a mixture draws from, by registry name. It builds them itself rather than through
# worldsim.agents.base.make_agent, whose registry holds the mixture: importing that here would be an import cycle.
MIXABLE = {"explorer": ExplorerAgent, "random": RandomAgent}
CRAFT2D_WEIGHTS = {"explorer": 0.8, "random": 0.2}  # mostly purposeful walks, some button-mashing


class MixtureAgent:
    """Switches agent per episode. `weights` maps names in MIXABLE to relative weights; `current` names the driver.
    Options for one agent go under its name: `MixtureAgent(space, env_id, explorer={"stuck_limit": 10})`."""

    name = "mixture"

    def __init__(self, action_space: gym.Space, env_id: str | None = None,
                 weights: Mapping[str, float] | None = None, **options: Any):
        if weights is None:
            weights = CRAFT2D_WEIGHTS if is_craft2d(env_id) else {"random": 1.0}
        weights = dict(weights)
        if "mixture" in weights:
            raise ValueError("mixture weights may not include 'mixture' itself")
        unknown = sorted(set(weights) - set(MIXABLE))
        if unknown:
            raise ValueError(f"mixture weights name {unknown}: expected agents among {sorted(MIXABLE)}")
        if not weights or any(w < 0 for w in weights.values()) or sum(weights.values()) <= 0:
            raise ValueError(f"mixture weights {weights}: expected non-negative weights with a positive sum")
        self.names = sorted(n for n, w in weights.items() if w > 0)  # a zero weight: never built, never drawn
        self.probs = np.array([weights[n] for n in self.names], np.float64)
        self.probs /= self.probs.sum()
        self.agents: dict[str, ExplorerAgent | RandomAgent] = {
            n: MIXABLE[n](action_space, env_id=env_id, **options.get(n, {})) for n in self.names}
        self.reset()

    def reset(self, seed: int | None = None) -> None:
        rng = np.random.default_rng(seed)
        self.current = self.names[int(rng.choice(len(self.names), p=self.probs))]
        self.agents[self.current].reset(None if seed is None else int(rng.integers(2 ** 63)))

    def act(self, obs: np.ndarray, info: dict[str, Any]) -> int:
        return self.agents[self.current].act(obs, info)
