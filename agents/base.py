"""The one small protocol every agent follows, and the registry that `collect`, `play` and the probes pick from.

The agents import nothing from here: the registry depends on them, never the other way (no import cycle)."""

from __future__ import annotations

from typing import Any, Callable, Protocol, runtime_checkable

import gymnasium as gym
import numpy as np

from worldsim.agents.explorer import ExplorerAgent
from worldsim.agents.mixture import MixtureAgent
from worldsim.agents.random_agent import RandomAgent


@runtime_checkable
class Agent(Protocol):
    """Acts in an env with a Discrete action space. `reset(seed)` at each episode start, then `act` every step."""

    name: str  # the registry name; a mixture reports the agent driving the current episode in `current`

    def reset(self, seed: int | None = None) -> None: ...

    def act(self, obs: np.ndarray, info: dict[str, Any]) -> int: ...


def _human(action_space: gym.Space, env_id: str | None = None, **options: Any) -> Agent:
    from worldsim.agents.human import HumanAgent  # pygame and a window: imported only when a person plays

    return HumanAgent(action_space, env_id=env_id, **options)


AGENTS: dict[str, Callable[..., Agent]] = {"random": RandomAgent, "explorer": ExplorerAgent, "mixture": MixtureAgent,
                                           "human": _human}


def agent_names() -> list[str]:
    return sorted(AGENTS)


def make_agent(name: str, action_space: gym.Space, env_id: str | None = None, **options: Any) -> Agent:
    """Build the agent registered as `name` for an env with `action_space` (and `env_id`, for agents that need one)."""
    if name not in AGENTS:
        raise ValueError(f"agent={name!r}: expected one of {agent_names()}")
    return AGENTS[name](action_space, env_id=env_id, **options)
