"""worldsim.envs.sb3: Stable-Baselines3 driving Gymnasium 1.x vector envs (Dream-v0's native one, Craft2D's sync one).
The autoreset conversion is checked on a fake vector env whose episodes end at known steps, and against SB3's own
DummyVecEnv on the same seeded Craft2D envs."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest

pytest.importorskip("stable_baselines3")
from stable_baselines3 import PPO  # noqa: E402
from stable_baselines3.common.env_checker import check_env  # noqa: E402
from stable_baselines3.common.evaluation import evaluate_policy  # noqa: E402
from stable_baselines3.common.vec_env import DummyVecEnv, VecTransposeImage, is_vecenv_wrapped  # noqa: E402
from stable_baselines3.common.vec_env.util import obs_space_info  # noqa: E402

from worldsim.envs.sb3 import SB3VecEnv  # noqa: E402

from conftest import ENV_ID  # noqa: E402
from test_dream import DREAM, write_world  # noqa: E402
from test_ppo import FakeVectorEnv  # noqa: E402


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return write_world(tmp_path_factory.mktemp("sb3") / "tiny.safetensors")


def _frame_value(obs) -> int:
    return int(np.asarray(obs)[0, 0, 0])


def test_partial_reset_gives_sb3_its_same_step_autoreset_exactly():
    fake = FakeVectorEnv(lengths=(3, 5), ends=("terminated", "truncated"), partial=True)
    env = SB3VecEnv(fake, partial_reset=True)
    obs = env.reset()
    assert obs.shape == (2, 36, 36, 3) and env.observation_space.shape == (36, 36, 3)
    seen = []
    for t in range(1, 11):
        obs, rewards, dones, infos = env.step(np.array([1, 2]))
        seen.append((t, dones.tolist()))
        for i in np.flatnonzero(dones):
            length = fake.lengths[i]
            assert _frame_value(infos[i]["terminal_observation"]) == length  # the episode's last frame
            assert infos[i]["TimeLimit.truncated"] is bool(i == 1)  # sub-env 1 truncates, sub-env 0 terminates
            assert infos[i]["episode"]["r"] == length and infos[i]["episode"]["l"] == length
            assert _frame_value(obs[i]) == 0  # SB3 gets the new episode's first frame at once
        assert not any("terminal_observation" in infos[i] for i in np.flatnonzero(~dones))
        assert rewards.tolist() == [1.0, 1.0]  # every step is a move: no autoreset step reaches SB3
    assert [t for t, d in seen if d[0]] == [3, 6, 9] and [t for t, d in seen if d[1]] == [5, 10]
    assert not any(ignored for row in fake.log for _, ignored in row)  # the env never ignored an action


def test_without_partial_reset_the_done_flags_are_exact_and_the_ignored_step_is_said(recwarn):
    fake = FakeVectorEnv(lengths=(3, 5), ends=("terminated", "truncated"))
    with pytest.warns(UserWarning, match="cannot reset single sub-envs"):
        env = SB3VecEnv(fake)
    assert env.partial_reset is False
    env.reset()
    dones_at, rewards_seen = [], []
    for t in range(1, 13):
        obs, rewards, dones, infos = env.step(np.array([1, 2]))
        rewards_seen.append(rewards.tolist())
        for i in np.flatnonzero(dones):
            dones_at.append((t, int(i)))
            assert _frame_value(infos[i]["terminal_observation"]) == fake.lengths[i]
            assert infos[i]["TimeLimit.truncated"] is bool(i == 1)
            assert infos[i]["episode"] == {"r": fake.lengths[i], "l": fake.lengths[i], "t": infos[i]["episode"]["t"]}
    # one step more per episode: the env's own autoreset step, whose action it ignored and which pays nothing
    assert dones_at == [(3, 0), (5, 1), (7, 0), (11, 0), (11, 1)]
    assert [t + 1 for t, row in enumerate(fake.log) if row[0][1]] == [4, 8, 12]
    assert rewards_seen[3] == [0.0, 1.0] and rewards_seen[5] == [1.0, 0.0]


def test_craft2d_through_the_adapter_is_sb3s_dummy_vec_env_step_for_step():
    def make():
        return gym.make(ENV_ID, max_episode_steps=4, world_width=64)

    ours = SB3VecEnv(gym.make_vec(ENV_ID, num_envs=2, max_episode_steps=4, world_width=64))
    theirs = DummyVecEnv([make, make])
    assert ours.partial_reset and ours.observation_space == theirs.observation_space
    ours.seed(7)
    theirs.seed(7)
    assert np.array_equal(ours.reset(), theirs.reset())
    actions = np.random.default_rng(0).integers(12, size=(10, 2))
    for a in actions:
        o1, r1, d1, i1 = ours.step(a)
        o2, r2, d2, i2 = theirs.step(a)
        assert np.array_equal(o1, o2) and np.array_equal(r1, r2) and np.array_equal(d1, d2)
        for x, y in zip(i1, i2):
            assert ("terminal_observation" in x) == ("terminal_observation" in y)
            if "terminal_observation" in x:
                assert np.array_equal(x["terminal_observation"], y["terminal_observation"])
                assert x["TimeLimit.truncated"] == y["TimeLimit.truncated"]
    assert ours.env_is_wrapped(gym.wrappers.TimeLimit) == [True, True]
    assert ours.get_attr("tile_size") == [8, 8] and ours.env_method("get_action_meanings", indices=[1])[0][1] == "left"
    ours.close()


def test_sb3s_checks_pass_on_dream_and_the_native_vector_env_answers_the_vec_env_calls(ckpt):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check_env(gym.make(DREAM, checkpoint=str(ckpt)).unwrapped)  # the single env make_vec_env would wrap
    with pytest.warns(UserWarning, match="cannot reset single sub-envs"):
        env = SB3VecEnv(gym.make_vec(DREAM, num_envs=2, checkpoint=str(ckpt), max_episode_steps=3))
    keys, shapes, dtypes = obs_space_info(env.observation_space)
    assert shapes[None] == (64, 64, 3) and dtypes[None] == np.uint8
    assert env.get_attr("action_meanings")[1][2] == "right" and env.env_method("get_action_meanings") == \
        [env.get_attr("action_meanings")[0]] * 2
    assert env.env_is_wrapped(gym.Wrapper) == [False, False] and env.render_mode is None
    env.seed(3)
    first = env.reset()
    env.seed(3)
    assert np.array_equal(env.reset(), first)  # SB3's seed() reaches the native env's per-sub-env seeds
    for _ in range(3):
        _, _, dones, infos = env.step(np.array([1, 2]))
    assert dones.all() and all(i["TimeLimit.truncated"] and i["terminal_observation"].shape == (64, 64, 3)
                               for i in infos)
    env.close()


def test_the_three_line_example_learns_on_dream(ckpt):
    with pytest.warns(UserWarning, match="cannot reset single sub-envs"):
        env = SB3VecEnv(gym.make_vec("worldsim/Dream-v0", num_envs=2, checkpoint=str(ckpt), max_episode_steps=6))
    model = PPO("CnnPolicy", env, n_steps=16, batch_size=16, n_epochs=1, seed=0).learn(total_timesteps=32)
    assert is_vecenv_wrapped(model.get_env(), VecTransposeImage)  # SB3 made the frames channel-first itself
    assert len(model.ep_info_buffer) >= 4 and {e["l"] for e in model.ep_info_buffer} == {6}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "not wrapped with a Monitor": the adapter reports episodes itself
        rewards, lengths = evaluate_policy(model, model.get_env(), n_eval_episodes=2, return_episode_rewards=True)
    assert lengths == [6, 6]
