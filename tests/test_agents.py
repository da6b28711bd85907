"""The agents that collect data: the explorer on real Craft2D rollouts, the sticky random agent, the mixture, and the
registry they are built from."""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import pytest

from worldsim.agents.base import Agent, agent_names, make_agent
from worldsim.agents.explorer import ExplorerAgent
from worldsim.agents.mixture import MixtureAgent
from worldsim.agents.random_agent import RandomAgent
from worldsim.envs.craft2d import ACTION_MEANINGS, Action, is_craft2d
from worldsim.data.stats import coverage

from conftest import ENV_ID

CRAFT2D_SPACE = gym.spaces.Discrete(len(Action))
EPISODES = 6  # of 1000 steps (the registered limit): about 0.5 s in all


@dataclass
class Rollouts:
    xs: list[np.ndarray]  # per episode, (T + 1,) player columns, the reset's included
    actions: list[list[int]]
    moved: float  # fraction of steps after which player_pos changed
    done: list[bool]  # per step, all episodes in a row: the step's first event is the player's (mined, placed...)


def run_explorer(episodes: int, steps: int | None = None, agent_seed: int = 100, **options) -> Rollouts:
    env = gym.make(ENV_ID)
    agent = ExplorerAgent(env.action_space, env_id=ENV_ID, **options)
    xs, actions, moved, total, done = [], [], 0, 0, []
    for ep in range(episodes):
        obs, info = env.reset(seed=ep)
        agent.reset(seed=agent_seed + ep)
        ep_xs, ep_actions, pos = [info["player_pos"][0]], [], info["player_pos"]
        for _ in range(steps or 10 ** 9):
            a = agent.act(obs, info)
            obs, _, terminated, truncated, info = env.step(a)
            ep_actions.append(a)
            ep_xs.append(info["player_pos"][0])
            moved += info["player_pos"] != pos
            pos = info["player_pos"]
            done.append(bool(info["events"]) and info["events"][0].startswith("player"))
            if terminated or truncated:
                break
        xs.append(np.array(ep_xs))
        actions.append(ep_actions)
        total += len(ep_actions)
    env.close()
    return Rollouts(xs, actions, moved / total, done)


@pytest.fixture(scope="module")
def rollouts() -> Rollouts:
    return run_explorer(EPISODES)


# ---- explorer ------------------------------------------------------------------------------------------------------
def test_explorer_wanders_far(rollouts):
    wander = [coverage(xs).wander for xs in rollouts.xs]
    assert np.mean(wander) >= 60, f"columns spanned per episode: {wander}"


def test_explorer_comes_back_after_long_excursions(rollouts):
    gaps = [coverage(xs).return_gaps for xs in rollouts.xs]
    assert sum(len(g) for g in gaps) >= 3 * EPISODES, f"return gaps per episode: {gaps}"
    assert all(len(g) >= 2 for g in gaps), f"an episode with hardly any return: {gaps}"
    # past a 32-64 step model context: the place was seen, then left out of view for longer than the model remembers
    assert max(max(g) for g in gaps) > 64, f"return gaps per episode: {gaps}"


def test_explorer_uses_its_whole_toolbox(rollouts):
    counts = np.bincount(np.concatenate(rollouts.actions), minlength=len(Action))
    hist = dict(zip(ACTION_MEANINGS, counts.tolist()))
    for name in ("left", "right", "mine", "mine_down", "next_block"):
        assert hist[name] > 0, f"never used {name}: {hist}"
    assert hist["jump_left"] > 0 and hist["jump_right"] > 0, hist
    assert hist["place"] > 0 and hist["place_down"] > 0, hist
    assert hist["left"] + hist["right"] > 0.4 * counts.sum(), f"mostly walking, expected: {hist}"


def test_explorer_keeps_moving(rollouts):
    assert rollouts.moved > 0.5


def test_explorer_never_stalls_long(rollouts):
    for xs in rollouts.xs:
        same = np.diff(xs) == 0
        longest = max((len(run) for run in "".join("x" if s else " " for s in same).split()), default=0)
        assert longest < 100, f"stood in one column for {longest} steps"


def test_explorer_is_deterministic_per_seed():
    a = run_explorer(2, steps=300)
    b = run_explorer(2, steps=300)
    c = run_explorer(2, steps=300, agent_seed=7)
    assert a.actions == b.actions
    assert a.actions != c.actions


def test_explorer_reads_info_not_frames():
    env = gym.make(ENV_ID)
    agent = ExplorerAgent(env.action_space, env_id=ENV_ID)
    _, info = env.reset(seed=3)
    agent.reset(seed=3)
    for _ in range(200):
        a = agent.act(None, info)
        assert isinstance(a, int) and 0 <= a < env.action_space.n
        _, _, terminated, truncated, info = env.step(a)
        assert not (terminated or truncated)
    env.close()


@pytest.mark.parametrize(("env_id", "expected"), [
    (ENV_ID, True), ("worldsim:worldsim/Craft2D-v0", True), ("worldsim/Craft2D-v3", True),
    ("CartPole-v1", False), ("worldsim/Craft2D", False), ("worldsim/Craft2D-v0x", False), ("Craft2D-v0", False),
    ("someone/MyCraft2D-v0", False), ("worldsim/Dream-v0", False), (None, False), (7, False),
])
def test_is_craft2d(env_id, expected):
    assert is_craft2d(env_id) is expected


def test_explorer_refuses_other_envs_and_spaces():
    with pytest.raises(ValueError, match=r"CartPole-v1.*agent=random"):
        ExplorerAgent(gym.spaces.Discrete(2), env_id="CartPole-v1")
    with pytest.raises(ValueError, match=r"Discrete\(4\).*agent=random"):
        ExplorerAgent(gym.spaces.Discrete(4), env_id=ENV_ID)
    with pytest.raises(ValueError, match=r"Box.*agent=random"):
        ExplorerAgent(gym.spaces.Box(-1, 1, (2,)))
    with pytest.raises(ValueError, match="agent=random"):
        make_agent("explorer", gym.spaces.Discrete(2), env_id="CartPole-v1")


def event_rates(episodes: int, steps: int, **options) -> dict[str, float]:
    """Share of steps on which the explorer placed ahead, mined ahead or waited, over real Craft2D play."""
    run = run_explorer(episodes, steps, agent_seed=0, **options)
    actions, done = np.concatenate(run.actions), np.array(run.done)
    return {"place": float(np.mean(done & (actions == Action.PLACE))),
            "mine": float(np.mean(done & (actions == Action.MINE))), "noop": float(np.mean(actions == Action.NOOP))}


def test_explorer_work_plans_change_the_world_more():
    """forage and tinker (off by default) make placing and mining ahead, and waiting after them, several times more
    common: the data lever of configs/collect/experiment/craft2d_work.yaml."""
    weights = {"loop": 0.5, "triangle": 0.5, "one_way": 0.25, "dig": 1.0, "build": 0.5, "pillar": 0.5, "chase": 0.5,
               "forage": 4.0, "tinker": 4.0}
    base = event_rates(4, 500)
    work = event_rates(4, 500, plan_weights=weights, long_prob=0.25)
    assert work["place"] > 2 * base["place"] and work["place"] > 0.003, (base, work)
    assert work["mine"] > 1.2 * base["mine"], (base, work)
    assert work["noop"] > 2 * base["noop"], (base, work)


def test_explorer_defaults_never_forage_or_tinker(monkeypatch):
    """Off by default, so the recipe's stage-1 data replays as it was collected."""
    called = []
    monkeypatch.setattr(ExplorerAgent, "_forage", lambda self, d: called.append("forage") or [])
    monkeypatch.setattr(ExplorerAgent, "_tinker", lambda self, d: called.append("tinker") or [])
    run_explorer(2, steps=1000)
    assert not called


def test_explorer_options():
    agent = ExplorerAgent(CRAFT2D_SPACE, env_id=ENV_ID, long_leg=(20, 30), stuck_limit=10)
    assert agent.long_leg == (20, 30) and agent.stuck_limit == 10
    with pytest.raises(TypeError):
        ExplorerAgent(CRAFT2D_SPACE, leg_length=(1, 2))
    for bad in (dict(short_leg=(10, 4)), dict(hop_prob=1.5), dict(tower_height=(1, 3)),
                dict(plan_weights={"fly": 1.0}), dict(plan_weights={"loop": 0.0}), dict(wait_steps=(-1, 4)),
                dict(wait_steps=(5, 2))):
        with pytest.raises(ValueError):
            ExplorerAgent(CRAFT2D_SPACE, **bad)


# ---- random --------------------------------------------------------------------------------------------------------
def actions_of(agent: Agent, seed: int | None, n: int) -> list[int]:
    agent.reset(seed)
    return [agent.act(None, {}) for _ in range(n)]


def test_random_is_deterministic_per_seed():
    agent = RandomAgent(CRAFT2D_SPACE)
    assert actions_of(agent, 1, 200) == actions_of(RandomAgent(CRAFT2D_SPACE), 1, 200)
    assert actions_of(agent, 1, 200) != actions_of(agent, 2, 200)


@pytest.mark.parametrize("p", [0.0, 0.5, 0.8])
def test_random_repeat_prob_makes_runs(p):
    n = len(Action)
    actions = np.array(actions_of(RandomAgent(CRAFT2D_SPACE, repeat_prob=p), 0, 20_000))
    runs = np.diff(np.flatnonzero(np.diff(actions) != 0))  # lengths of the runs of one action, inner ones
    # A fresh draw repeats the last action with chance 1/n too, so runs are 1/((1-p)(1-1/n)) long: 5.45 for p=0.8
    assert runs.mean() == pytest.approx(1 / ((1 - p) * (1 - 1 / n)), rel=0.1)


@pytest.mark.parametrize("n", [2, 5, 12])
def test_random_covers_the_action_space(n):
    assert set(actions_of(RandomAgent(gym.spaces.Discrete(n)), 0, 2000)) == set(range(n))


@pytest.mark.parametrize("p", [1.0, -0.1, 2.0])
def test_random_bad_repeat_prob_raises(p):
    with pytest.raises(ValueError, match="repeat_prob"):
        RandomAgent(CRAFT2D_SPACE, repeat_prob=p)


def test_random_needs_a_discrete_space():
    with pytest.raises(ValueError, match="Discrete"):
        RandomAgent(gym.spaces.Box(-1, 1, (2,)))


# ---- mixture -------------------------------------------------------------------------------------------------------
def test_mixture_switches_agent_per_episode_deterministically():
    weights = {"explorer": 0.5, "random": 0.5}
    a = MixtureAgent(CRAFT2D_SPACE, env_id=ENV_ID, weights=weights)
    b = MixtureAgent(CRAFT2D_SPACE, env_id=ENV_ID, weights=weights)
    drivers = []
    for seed in range(40):
        a.reset(seed)
        b.reset(seed)
        assert a.current == b.current
        drivers.append(a.current)
    assert set(drivers) == {"explorer", "random"}
    a.reset(5)
    first = a.current
    for seed in (6, 7, 5):
        a.reset(seed)
    assert a.current == first


def test_mixture_default_weights():
    assert MixtureAgent(CRAFT2D_SPACE, env_id=ENV_ID).names == ["explorer", "random"]
    other = MixtureAgent(gym.spaces.Discrete(2), env_id="CartPole-v1")
    assert other.names == ["random"]
    for seed in range(10):
        other.reset(seed)
        assert other.current == "random"


def test_mixture_never_builds_a_zero_weight_agent():
    # the explorer refuses CartPole; with weight 0 it must not even be built
    agent = MixtureAgent(gym.spaces.Discrete(2), env_id="CartPole-v1", weights={"explorer": 0.0, "random": 1.0})
    assert agent.names == ["random"] and list(agent.agents) == ["random"]


def test_mixture_passes_options_to_its_agents():
    agent = MixtureAgent(CRAFT2D_SPACE, env_id=ENV_ID, explorer={"stuck_limit": 10}, random={"repeat_prob": 0.5})
    assert agent.agents["explorer"].stuck_limit == 10
    assert agent.agents["random"].repeat_prob == 0.5


@pytest.mark.parametrize("weights", [
    {"explorer": -1.0, "random": 2.0}, {"explorer": 0.0, "random": 0.0}, {}, {"mixture": 1.0, "random": 1.0},
])
def test_mixture_bad_weights_raise(weights):
    with pytest.raises(ValueError, match="mixture"):
        MixtureAgent(CRAFT2D_SPACE, env_id=ENV_ID, weights=weights)


def test_mixture_names_an_agent_it_cannot_draw():
    with pytest.raises(ValueError, match=r"\['greedy'\].*expected agents among \['explorer', 'random'\]"):
        MixtureAgent(CRAFT2D_SPACE, env_id=ENV_ID, weights={"greedy": 1.0, "random": 1.0})


# ---- registry ------------------------------------------------------------------------------------------------------
def test_make_agent_unknown_name_lists_known_ones():
    with pytest.raises(ValueError) as err:
        make_agent("greedy", CRAFT2D_SPACE, env_id=ENV_ID)
    for name in agent_names():
        assert repr(name) in str(err.value)


@pytest.mark.parametrize("name", agent_names())
def test_every_agent_follows_the_protocol(name):
    agent = make_agent(name, CRAFT2D_SPACE, env_id=ENV_ID)
    assert isinstance(agent, Agent)
    assert agent.name == name
    assert agent.current in agent_names()
    agent.reset(0)
    env = gym.make(ENV_ID)
    obs, info = env.reset(seed=0)
    assert env.action_space.contains(agent.act(obs, info))
    env.close()

