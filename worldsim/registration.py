"""Gymnasium registration of worldsim's environments (string entry points, so registering imports nothing heavy)."""

from __future__ import annotations

import gymnasium as gym

ENVS = {
    "worldsim/Craft2D-v0": dict(entry_point="worldsim.envs.craft2d.env:Craft2DEnv", max_episode_steps=1000),
    "worldsim/Dream-v0": dict(entry_point="worldsim.envs.dream:DreamEnv", vector_entry_point="worldsim.envs.dream:DreamVectorEnv",
                              max_episode_steps=1000),
}


def register_envs() -> None:
    for env_id, kwargs in ENVS.items():
        if env_id not in gym.registry:
            gym.register(id=env_id, **kwargs)
