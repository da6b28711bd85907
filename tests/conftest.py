"""Shared fixtures for the Craft2D tests: a headless pygame, a made env, and scenarios addressed in map coordinates."""

from __future__ import annotations

import os

# Before anything imports pygame: no window and no sound device, so the suite runs on a headless CI machine.
os.environ["SDL_VIDEODRIVER"] = "dummy"
os.environ["SDL_AUDIODRIVER"] = "dummy"
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
# Under pytest-xdist (`pytest -n auto`, the README's test command) each worker takes its share of the cores, as do the
# processes its tests start: torch's default, every core in each worker, would have them fight over the same cores.
if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1)
                                                     // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))))

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import worldsim  # noqa: E402, F401  (registers the env ids)
from worldsim.envs.craft2d import Action, Scenario, Tile  # noqa: E402
from worldsim.envs.craft2d.tiles import EMPTY, KIND_NAMES  # noqa: E402

ENV_ID = "worldsim/Craft2D-v0"


@pytest.fixture(autouse=True, scope="session")
def _sb3_logs_in_a_test_folder(tmp_path_factory):
    """SB3 makes a log folder in the system's temporary directory at every learn() that has no logger of its own:
    the suite's go where pytest keeps (and prunes) its own."""
    os.environ.setdefault("SB3_LOGDIR", str(tmp_path_factory.mktemp("sb3-logs")))


def random_craft2d(out, steps: int, max_episode_steps: int, shard_steps: int):
    """A small Craft2D dataset at `out` (a narrow 64-column world, the random agent, short episodes): what the data,
    training and distributed tests train on. Returns `out`."""
    from worldsim.data.collect import CollectConfig, collect

    collect(CollectConfig(out=str(out), agent="random", steps=steps, env_kwargs={"world_width": 64},
                          max_episode_steps=max_episode_steps, shard_steps=shard_steps), quiet=True)
    return out


class Scene:
    """A scenario running in an env, addressed in map coordinates: (col, row) of the ASCII map, (0, 0) top-left.

    The scenario pads the map to the view and walls it with bedrock, so map and world coordinates differ by an
    offset; it is read back from where the player ('>' or '<') ended up.
    """

    def __init__(self, env: gym.Env, scenario: Scenario):
        self.env = env
        self.scenario = scenario
        self.obs, self.info = env.reset(options={"scenario": scenario})
        rows = scenario.rows()
        col, row = next((c, r) for r, line in enumerate(rows) for c, ch in enumerate(line) if ch in "<>")
        px, py = self.info["player_pos"]
        self.origin = (px - col, py - row)
        self.reward, self.terminated, self.truncated = 0.0, False, False

    @property
    def game(self):
        return self.env.unwrapped.game

    def world(self, col: int, row: int) -> tuple[int, int]:
        return col + self.origin[0], row + self.origin[1]

    def to_map(self, x: int, y: int) -> tuple[int, int]:
        return x - self.origin[0], y - self.origin[1]

    def tile(self, col: int, row: int) -> Tile:
        x, y = self.world(col, row)
        return Tile(int(self.game.grid[y, x]))

    def is_empty(self, col: int, row: int) -> bool:
        return EMPTY[self.tile(col, row)]

    @property
    def player(self) -> tuple[int, int]:
        """The player's map position, from info["player_pos"]."""
        return self.to_map(*self.info["player_pos"])

    def animals(self) -> list[tuple[str, int, int]]:
        """(kind, col, row) of every animal, on screen or not, from the engine's entity lists."""
        g = self.game
        return [(KIND_NAMES[g.kinds[k]], *self.to_map(g.xs[k], g.ys[k])) for k in range(1, len(g.kinds))]

    def step(self, action: int | Action, n: int = 1) -> float:
        """Take `action` n times; returns the summed reward and keeps the last obs/info/flags."""
        total = 0.0
        for _ in range(n):
            self.obs, reward, self.terminated, self.truncated, self.info = self.env.step(int(action))
            total += reward
        self.reward = total
        return total


@pytest.fixture
def env():
    env = gym.make(ENV_ID)
    yield env
    env.close()


@pytest.fixture
def start(env):
    """start(map, **scenario_fields) -> Scene: reset the env into a Scenario built from an ASCII map."""

    def _start(map_: str, **fields) -> Scene:
        return Scene(env, Scenario(map_, **fields))

    return _start


def random_actions(seed: int, n: int) -> list[int]:
    return np.random.default_rng(seed).integers(len(Action), size=n).tolist()


@pytest.fixture
def actions():
    return random_actions
