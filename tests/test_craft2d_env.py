"""Contract tests for Craft2D-v0: the Gymnasium API, registration, determinism, state round trips, and bad input."""

from __future__ import annotations

import copy
import dataclasses
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.envs.registration import load_env_creator
from gymnasium.error import ResetNeeded
from gymnasium.utils.env_checker import check_env

from worldsim.envs.craft2d import Action, Craft2DEnv, GameState, Scenario, Tile
from worldsim.registration import ENVS

from conftest import ENV_ID, random_actions

REPO = Path(__file__).resolve().parents[1]
CRAFT2D = sorted(env_id for env_id in ENVS if "Craft2D" in env_id)  # Dream-v0 needs a checkpoint: test_dream.py
MODES = [(env_id, mode) for env_id in CRAFT2D
         for mode in load_env_creator(ENVS[env_id]["entry_point"]).metadata["render_modes"]]


# ---- contract ----------------------------------------------------------------------------------------------------
def test_render_modes_declared():
    assert {mode for _, mode in MODES} == {"human", "rgb_array"}


@pytest.mark.parametrize(("env_id", "render_mode"), MODES)
def test_check_env(env_id, render_mode):
    env = gym.make(env_id, render_mode=render_mode)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            check_env(env.unwrapped)  # the raw env: check_env warns about (and misjudges) wrapped ones
        assert [str(w.message) for w in caught] == []
        env.reset(seed=0)
        frame = env.render()
        if render_mode == "rgb_array":
            assert frame.shape == env.observation_space.shape and frame.dtype == np.uint8
        else:
            assert frame is None  # human mode draws into the (dummy) window instead
    finally:
        env.close()


@pytest.mark.parametrize("env_id", CRAFT2D)
def test_spaces_and_first_observation(env_id):
    env = gym.make(env_id)
    obs, info = env.reset(seed=3)
    assert env.action_space == gym.spaces.Discrete(12)
    assert env.observation_space.shape == (64, 64, 3) and env.observation_space.dtype == np.uint8
    assert obs in env.observation_space
    assert env.unwrapped.get_action_meanings() == [a.name.lower() for a in Action]
    for key in ("player_pos", "camera", "facing", "health", "inventory", "selected", "time_of_day", "light_level",
                "biome", "visible_entities", "events", "caption"):
        assert key in info
    assert info["health"] == 6 and info["inventory"] == {}


def test_make_after_import_and_by_module_name():
    assert gym.make(ENV_ID).unwrapped.__class__ is Craft2DEnv
    assert gym.make(f"worldsim:{ENV_ID}").unwrapped.__class__ is Craft2DEnv


def _python(code: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_module_form_imports_worldsim_itself():
    # In this process worldsim is imported already; a fresh interpreter shows "worldsim:" does the import.
    out = _python(
        "import sys, gymnasium\n"
        "assert 'worldsim' not in sys.modules\n"
        "env = gymnasium.make('worldsim:worldsim/Craft2D-v0')\n"
        "obs, info = env.reset(seed=0)\n"
        "print(type(env.unwrapped).__name__, obs.shape, env.spec.max_episode_steps)\n")
    assert out.split() == ["Craft2DEnv", "(64,", "64,", "3)", "1000"]


def test_the_games_key_bindings_are_the_keyboard_agents_and_need_no_agent():
    from worldsim.agents.human import keys_to_action

    assert Craft2DEnv().get_keys_to_action() == keys_to_action()
    out = _python(  # the game owns its bindings: asking for them imports no agent (that was an import cycle)
        "import sys, pygame, worldsim\n"
        "from worldsim.envs.craft2d import Craft2DEnv\n"
        "mapping = Craft2DEnv().get_keys_to_action()\n"
        "print(mapping[(pygame.K_a,)], mapping[(pygame.K_j,)], 'worldsim.agents.human' in sys.modules)\n")
    assert out.split() == [str(int(Action.LEFT)), str(int(Action.MINE)), "False"]


def test_import_worldsim_registers_lazily():
    out = _python(
        "import sys, gymnasium, worldsim\n"
        "print('worldsim/Craft2D-v0' in gymnasium.registry, "
        "any(m in sys.modules for m in ('worldsim.envs.craft2d.env', 'pygame', 'torch')))\n")
    assert out.split() == ["True", "False"]


def test_registered_time_limit_is_1000_and_truncates():
    assert gym.spec(ENV_ID).max_episode_steps == 1000
    env = gym.make(ENV_ID)
    assert env.spec.max_episode_steps == 1000
    env.reset(seed=0)
    for t in range(1, 1001):
        _, _, terminated, truncated, _ = env.step(int(Action.NOOP))  # standing still never hurts
        assert not terminated
        assert truncated == (t == 1000), f"truncated={truncated} at step {t}"


def test_max_episode_steps_override_truncates():
    env = gym.make(ENV_ID, max_episode_steps=7)
    env.reset(seed=1)
    flags = [env.step(int(Action.NOOP))[3] for _ in range(7)]
    assert flags == [False] * 6 + [True]


# ---- determinism -------------------------------------------------------------------------------------------------
def _rollout(seed: int, actions: list[int]):
    env = gym.make(ENV_ID)
    obs, info = env.reset(seed=seed)
    steps = [(obs, 0.0, False, False, info)]
    for a in actions:
        obs, reward, terminated, truncated, info = env.step(a)
        steps.append((obs, reward, terminated, truncated, info))
        if terminated or truncated:
            obs, info = env.reset()
            steps.append((obs, 0.0, False, False, info))
    return steps, env.unwrapped.game


def test_same_seed_same_rollout_over_500_steps():
    actions = random_actions(0, 500)
    a, game_a = _rollout(123, actions)
    b, game_b = _rollout(123, actions)
    assert len(a) == len(b)
    for t, (sa, sb) in enumerate(zip(a, b)):
        assert np.array_equal(sa[0], sb[0]), f"observations differ at step {t}"
        assert sa[1:] == sb[1:], f"reward/terminated/truncated/info differ at step {t}"
    assert np.array_equal(game_a.grid, game_b.grid)
    assert (game_a.xs, game_a.ys) == (game_b.xs, game_b.ys)
    assert len({s[0].tobytes() for s in a}) > 50  # the rollout actually went somewhere


def test_different_seed_different_world():
    env_a, env_b = gym.make(ENV_ID), gym.make(ENV_ID)
    obs_a, _ = env_a.reset(seed=1)
    obs_b, _ = env_b.reset(seed=2)
    assert not np.array_equal(env_a.unwrapped.game.grid, env_b.unwrapped.game.grid)
    assert not np.array_equal(obs_a, obs_b)


def test_reset_seed_repeats_world_and_start():
    env = gym.make(ENV_ID)
    obs1, info1 = env.reset(seed=9)
    grid1 = env.unwrapped.game.grid.copy()
    for a in random_actions(1, 50):
        env.step(a)
    obs2, info2 = env.reset(seed=9)
    assert np.array_equal(obs1, obs2) and info1 == info2
    assert np.array_equal(grid1, env.unwrapped.game.grid)


def test_world_seed_fixes_the_world_across_episodes():
    env = Craft2DEnv(world_seed=5)
    env.reset(seed=0)
    grid = env.game.grid.copy()
    env.reset(seed=1)
    assert np.array_equal(grid, env.game.grid)


def test_reset_info_names_the_world_seed_played():
    env = Craft2DEnv()
    _, info = env.reset(seed=3)
    world = env.game.grid.copy()
    _, again = env.reset(options={"world_seed": info["world_seed"]})
    assert isinstance(info["world_seed"], int) and np.array_equal(world, env.game.grid)
    assert env.reset(options={"scenario": ".>.\nGGG"})[1]["world_seed"] is None
    assert env.reset(options={"scenario": Scenario(".>.\nGGG", world_seed=7)})[1]["world_seed"] == 7


def test_start_inventory_puts_blocks_in_hand_and_changes_nothing_else():
    """The player starts holding `start_inventory`, a held block selected, and places it at once; the world, the
    start and the time are the seed's, and without it the episodes are the same as before, bit for bit."""
    plain, held = Craft2DEnv(), Craft2DEnv(start_inventory={"dirt": 3, "wood": 2, "coal": 1})
    selected = set()
    for seed in range(12):
        _, a = plain.reset(seed=seed)
        _, b = held.reset(seed=seed)
        assert np.array_equal(plain.game.grid, held.game.grid)
        assert (a["player_pos"], a["time_of_day"], a["facing"]) == (b["player_pos"], b["time_of_day"], b["facing"])
        assert a["inventory"] == {} and b["inventory"] == {"dirt": 3, "wood": 2, "coal": 1}
        selected.add(b["selected"])
    assert selected == {"dirt", "wood"}  # drawn among the placeable blocks held: coal is no block
    held.reset(options={"scenario": ".>..\nGGGG"})
    assert held.game.info()["inventory"] == {}  # a scenario brings its own inventory
    held.reset(seed=0, options={"world_seed": 4, "time_of_day": 0.5})
    before = held.game.info()["inventory"]
    item = held.game.info()["selected"]
    _, _, _, _, info = held.step(int(Action.PLACE))
    assert info["events"] == [f"player placed {item}"] and info["inventory"][item] == before[item] - 1
    empty = Craft2DEnv(start_inventory={"dirt": 0})  # nothing held: empty hands, the episodes of the plain env
    for seed in (0, 1):
        assert np.array_equal(empty.reset(seed=seed)[0], plain.reset(seed=seed)[0])
        for action in random_actions(seed, 30):
            assert np.array_equal(empty.step(action)[0], plain.step(action)[0])


def test_stamped_map_brings_its_own_ground_line():
    """Air in a stamped map above the map's ground is sky, not cave, wherever the generated hills are, and mining
    there follows the map's ground line (what is mined below it becomes cave, as in a generated world)."""
    rows = ["......", "......", "..>...", "GGGGGG", "DDDDDD"]
    for oy in (5, 30):  # high in the sky of the world, and deep under its ground
        env = Craft2DEnv()
        env.reset(options={"scenario": Scenario("\n".join(rows), world_seed=1, origin=(100, oy))})
        grid = env.game.grid
        assert (grid[oy:oy + 3, 100:106] == Tile.SKY).all(), oy
        assert (env.game.sky_line[100:106] == oy + 3).all(), oy


def test_scenario_ground_row_makes_pillars_and_pits_mine_like_the_ground_around():
    """With ground_row, a block standing on the ground opens to the sky when mined, and a pit in the ground is
    cave, in a map alone and stamped into a world alike."""
    rows = ["......", "...S..", "..>D..", "GGG.GG", "DDD.DD", "DDDDDD"]
    for extra in ({}, {"world_seed": 1, "origin": (100, 30)}):
        env = Craft2DEnv()
        env.reset(options={"scenario": Scenario("\n".join(rows), ground_row=3, **extra)})
        x, y = env.game.xs[0], env.game.ys[0]
        grid = env.game.grid
        assert grid[y - 2, x + 1] == Tile.SKY and grid[y + 1, x + 1] == Tile.CAVE, extra
        env.step(Action.MINE)  # the dirt block in front: the sand on it falls into the pit
        assert grid[y - 1, x + 1] == Tile.SKY and grid[y, x + 1] == Tile.SAND, extra
    with pytest.raises(ValueError, match="ground_row=9"):
        Scenario("\n".join(rows), ground_row=9)


# ---- get_state / set_state ---------------------------------------------------------------------------------------
def _entities(game) -> list[tuple[int, int, int, int]]:
    return list(zip(game.kinds, game.xs, game.ys, game.facings))


def _run(env: Craft2DEnv, actions: list[int]) -> tuple[list[np.ndarray], list]:
    frames, entities = [], []
    for a in actions:
        frames.append(env.step(a)[0])
        entities.append(_entities(env.game))
    return frames, entities


def _assert_states_equal(a: GameState, b: GameState) -> None:
    for f in dataclasses.fields(GameState):
        va, vb = getattr(a, f.name), getattr(b, f.name)
        if isinstance(va, np.ndarray):
            assert np.array_equal(va, vb), f.name
        else:
            assert va == vb, f.name


def test_state_round_trip_replays_exactly_rng_included():
    env = Craft2DEnv()
    env.reset(seed=4, options={"world_seed": 4})
    actions = random_actions(2, 100)
    saved = env.get_state()
    frames, entities = _run(env, actions)
    start = [(x, y) for _, x, y, _ in _entities_from_state(saved)[1:]]
    assert start != [(x, y) for _, x, y, _ in entities[-1][1:]], "no animal moved in 100 steps: a weak test"

    env.set_state(saved)
    replay_frames, replay_entities = _run(env, actions)
    for t, (f1, f2) in enumerate(zip(frames, replay_frames)):
        assert np.array_equal(f1, f2), f"frame {t} differs after set_state"
    assert entities == replay_entities

    # Control: the same game state without the saved RNG makes the animals wander differently.
    env.set_state(dataclasses.replace(saved, rng_state=None))
    _, other = _run(env, actions)
    assert other != entities


def _entities_from_state(s: GameState):
    return list(zip(s.kinds, s.xs, s.ys, s.facings))


def test_set_state_restores_the_rendered_frame():
    env = Craft2DEnv(render_mode="rgb_array")
    obs, _ = env.reset(seed=6)
    saved = env.get_state()
    for a in random_actions(3, 30):
        env.step(a)
    env.set_state(saved)
    assert np.array_equal(env.render(), obs)


def test_state_is_a_deep_copy():
    env = Craft2DEnv()
    env.reset(seed=8)
    saved = env.get_state()
    snapshot = copy.deepcopy(saved)
    for a in random_actions(4, 100):  # the game changes...
        env.step(a)
    _assert_states_equal(saved, snapshot)  # ...the saved state does not

    env.set_state(saved)
    live = env.get_state()
    saved.grid[:] = 0  # mutating the state after set_state does not reach into the game
    saved.xs[0] += 3
    saved.inventory[0] = 50
    saved.rng_state["state"]["state"] = 0
    _assert_states_equal(env.get_state(), live)
    # and mutating a state from get_state does not reach into the game either
    got = env.get_state()
    got.grid[:] = 0
    got.ys[0] = 0
    assert env.game.grid.any() and env.game.ys[0] == live.ys[0]


# ---- bad input ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [12, -1, "left", 1.5, None])
def test_action_outside_space(bad):
    env = Craft2DEnv()
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"action .*" + re.escape(repr(bad))) as err:
        env.step(bad)
    assert "[0, 11]" in str(err.value)


def test_numpy_integer_actions_are_accepted():
    env = Craft2DEnv()
    env.reset(seed=0)
    assert env.step(np.int64(Action.RIGHT))[-1]["facing"] == "right"
    assert env.step(np.array(Action.LEFT))[-1]["facing"] == "left"


def test_step_before_reset():
    with pytest.raises(ResetNeeded):
        gym.make(ENV_ID).step(0)
    with pytest.raises(ResetNeeded, match="reset"):
        Craft2DEnv().step(0)
    with pytest.raises(ResetNeeded, match="reset"):
        Craft2DEnv(render_mode="rgb_array").render()
    with pytest.raises(ResetNeeded, match="reset"):
        Craft2DEnv().get_state()


@pytest.mark.parametrize(("map_", "message"), [
    ("....\n..>x\nGGGG", r"line 2, column 4: unknown character 'x'"),
    ("\n    ....\n    .>..\n    GG?G\n", r"line 3, column 3: unknown character '\?'"),
    ("....\n....\nGGGG", r"0 players"),
    ("....\n.>.<\nGGGG", r"2 players"),
    ("   \n", r"empty"),
])
def test_bad_scenario_map(map_, message):
    with pytest.raises(ValueError, match=message):  # refused where it is written, before any env sees it
        Scenario(map_)


@pytest.mark.parametrize(("fields", "message"), [
    (dict(inventory={"diamond": 1}), r"'diamond'"),
    (dict(inventory={"dirt": 100}), r"dirt=100"),
    (dict(selected="coal"), r"'coal'"),
    (dict(health=0), r"health=0"),
    (dict(biome="jungle"), r"'jungle'"),
    (dict(time_of_day=1.5), r"time_of_day=1.5"),
    (dict(origin=(10, 10)), r"origin=\(10, 10\).*world_seed"),
])
def test_bad_scenario_fields(fields, message):
    with pytest.raises(ValueError, match=message):
        Scenario(".>.\nGGG", **fields)


@pytest.mark.parametrize("option", [{"time_of_day": 0.75}, {"world_seed": 3}])
def test_reset_options_beside_a_scenario_are_refused_not_ignored(env, option):
    with pytest.raises(ValueError, match=f"{list(option)[0]}.*set them on the Scenario"):
        env.reset(options={"scenario": Scenario(".>.\nGGG"), **option})


def test_scenario_as_plain_string_and_wrong_type(env):
    _, info = env.reset(options={"scenario": "...\n.>.\nGGG"})
    assert info["facing"] == "right"
    with pytest.raises(TypeError, match="int"):
        env.reset(options={"scenario": 42})


def test_unknown_reset_option(env):
    with pytest.raises(ValueError, match=r"\['world'\]"):
        env.reset(options={"world": 3})


@pytest.mark.parametrize(("kwargs", "message"), [
    (dict(render_mode="rgb"), r"render_mode='rgb'"),
    (dict(view_width=4), r"view 4x8"),
    (dict(view_height=2), r"view 8x2"),
    (dict(tile_size=3), r"tile_size=3"),
    (dict(tile_size=8.0), r"tile_size=8.0"),
    (dict(rewards={"diamond": 1.0}), r"'diamond'"),
    (dict(day_length=5), r"day_length=5"),
    (dict(start_inventory={"diamond": 1}), r"start_inventory item 'diamond': expected one of"),
    (dict(start_inventory={"dirt": 100}), r"start_inventory dirt=100: expected a count from 0 to 99"),
    (dict(start_inventory={"dirt": 2.5}), r"start_inventory dirt=2.5"),
])
def test_bad_constructor_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Craft2DEnv(**kwargs)


def test_bad_render_mode_through_make():
    with pytest.warns(UserWarning), pytest.raises(ValueError, match=r"render_mode='rgb'"):
        gym.make(ENV_ID, render_mode="rgb")


def test_world_smaller_than_allowed():
    env = Craft2DEnv(world_width=16)
    with pytest.raises(ValueError, match=r"16x48"):
        env.reset(seed=0)


def test_set_state_rejects_other_objects():
    env = Craft2DEnv()
    env.reset(seed=0)
    with pytest.raises(TypeError, match="dict"):
        env.set_state({"grid": None})


def test_human_window_survives_another_env_closing():
    # pygame has a single display: closing a second human-mode env quits it under the first one.
    first = Craft2DEnv(render_mode="human")
    first.reset(seed=0)
    second = Craft2DEnv(render_mode="human")
    second.reset(seed=1)
    second.close()
    first.step(int(Action.NOOP))  # reopens the window instead of raising "display Surface quit"
    assert first.render() is None
    first.close()
    first.close()  # closing twice is allowed
