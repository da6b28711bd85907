"""The world model that ships inside the package: present, small, declared as package data, and it plays Craft2D."""

from __future__ import annotations

import fnmatch
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import worldsim
from worldsim.checkpoint import default_checkpoint
from worldsim.envs.craft2d import is_craft2d
from worldsim.envs.craft2d.decoder import VALID_DISTANCE, decode_cells

ROOT = Path(__file__).resolve().parents[1]


def test_the_checkpoint_ships_in_the_package_under_25_mib():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    path = default_checkpoint()
    assert path.exists(), f"{path} is missing: a fresh install must play without training"
    assert path.stat().st_size <= 25 * 2 ** 20
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["worldsim"]
    inside = path.relative_to(Path(worldsim.__file__).parent).as_posix()
    assert any(fnmatch.fnmatch(inside, p) for p in patterns), f"{inside} is not package data: wheels would lack it"


def test_dream_v0_plays_the_shipped_model_when_no_checkpoint_is_named():
    env = gym.make("worldsim/Dream-v0", device="cpu")
    try:
        obs, info = env.reset(seed=0)
        assert info["start"] == "bank" and obs.shape == (64, 64, 3)
        frames = np.stack([env.step(a)[0] for a in (2, 2, 2, 1, 0, 3, 0, 6)])
    finally:
        env.close()
    meta = env.unwrapped.sim.metadata
    assert is_craft2d(meta["env"]) and meta["action_meanings"][1] == "left"
    diffusion = env.unwrapped.sim.diffusion
    assert diffusion.reencode  # its play default: every frame cached as its picture encodes
    # and guided on the history older than the latest frame and on the action, as its recipe's last stage sets
    assert (diffusion.history_guidance, diffusion.history_window, diffusion.action_guidance) == (3.0, 1, 1.5)
    _, distance = decode_cells(frames)
    assert (distance <= VALID_DISTANCE).mean() > 0.8  # Craft2D's sprites, not mush (94% over these 8 steps)
