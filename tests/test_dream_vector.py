"""DreamVectorEnv: Dream-v0's native vector env under Gymnasium 1.x vector semantics."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode
from gymnasium.wrappers.vector import RecordEpisodeStatistics, RecordVideo

from worldsim.envs.dream import DreamVectorEnv

from test_dream import DREAM, write_world


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return write_world(tmp_path_factory.mktemp("dream_vec") / "tiny.safetensors")


def _in_bank(envs, frames) -> bool:
    bank = envs.unwrapped.sim.start_frames
    return all((bank == f).all(axis=(1, 2, 3)).any() for f in frames)


def test_make_vec_gives_the_native_batched_env(ckpt):
    envs = gym.make_vec(DREAM, num_envs=3, checkpoint=str(ckpt))
    assert isinstance(envs.unwrapped, DreamVectorEnv) and envs.num_envs == 3
    assert envs.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    assert envs.single_action_space == gym.spaces.Discrete(12)
    assert envs.action_space == gym.spaces.MultiDiscrete([12, 12, 12])
    obs, info = envs.reset(seed=0)
    assert obs.shape == (3, 64, 64, 3) and obs.dtype == np.uint8 and obs in envs.observation_space
    assert _in_bank(envs, obs)
    obs, rewards, terminated, truncated, info = envs.step(np.array([1, 2, 3]))
    assert obs.shape == (3, 64, 64, 3) and rewards.shape == terminated.shape == truncated.shape == (3,)
    assert terminated.dtype == truncated.dtype == np.bool_
    assert info["denoise_steps"].tolist() == [2, 2, 2] and info["_denoise_steps"].all() and info["t"].tolist() == [1] * 3
    assert envs.unwrapped.max_episode_steps == 1000  # the registered limit reaches the vector env


def test_next_step_autoreset(ckpt):
    envs = gym.make_vec(DREAM, num_envs=2, checkpoint=str(ckpt), max_episode_steps=2)
    envs.reset(seed=1)
    _, _, term, trunc, _ = envs.step(np.array([2, 2]))
    assert not (term | trunc).any()
    _, _, term, trunc, info = envs.step(np.array([2, 2]))
    assert (trunc | term).all() and info["t"].tolist() == [2, 2]
    obs, rewards, term, trunc, info = envs.step(np.array([5, 5]))  # the next step resets, ignoring the action
    assert _in_bank(envs, obs) and rewards.tolist() == [0.0, 0.0] and not (term | trunc).any()
    assert info["t"].tolist() == [0, 0]
    obs, *_ = envs.step(np.array([5, 5]))
    assert not _in_bank(envs, obs)  # dreaming again


def test_seeded_determinism_and_per_env_seeds(ckpt):
    def run(seed):
        envs = gym.make_vec(DREAM, num_envs=2, checkpoint=str(ckpt))
        frames = [envs.reset(seed=seed)[0]]
        for a in np.random.default_rng(0).integers(12, size=(4, 2)):
            frames.append(envs.step(a)[0])
        return np.stack(frames)

    a, b, c = run(3), run(3), run(4)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    single = gym.make(DREAM, checkpoint=str(ckpt))
    # sub-env i is seeded with seed + i: its start frame is the single env's for that seed
    assert np.array_equal(a[0, 1], single.reset(seed=4)[0]) and np.array_equal(a[0, 0], single.reset(seed=3)[0])


def test_sub_env_i_dreams_what_a_single_env_seeded_s_plus_i_dreams(ckpt):
    """The same start frame and the same sampling noise per sub-env: a vector env is N single envs, batched. Floats
    round differently in a batched matmul (~1e-6), so a pixel may differ by one level at most."""
    n, seed, steps = 3, 10, 6
    plan = np.random.default_rng(0).integers(12, size=(steps, n))
    envs = gym.make_vec(DREAM, num_envs=n, checkpoint=str(ckpt))
    together = [envs.reset(seed=seed)[0]] + [envs.step(a)[0] for a in plan]
    for i in range(n):
        single = gym.make(DREAM, checkpoint=str(ckpt))
        alone = [single.reset(seed=seed + i)[0]] + [single.step(int(a))[0] for a in plan[:, i]]
        for t, (a, b) in enumerate(zip(alone, together)):
            assert np.abs(a.astype(int) - b[i]).max() <= 1, f"sub-env {i} differs at step {t}"
    assert not np.array_equal(together[1][0], together[1][1])


def test_gymnasium_vector_wrappers_work(ckpt, tmp_path):
    envs = RecordEpisodeStatistics(gym.make_vec(DREAM, num_envs=2, checkpoint=str(ckpt), max_episode_steps=3))
    envs.reset(seed=0)
    for _ in range(3):
        *_, info = envs.step(np.array([1, 2]))
    assert info["_episode"].all() and info["episode"]["l"].tolist() == [3, 3]
    videos = RecordVideo(gym.make_vec(DREAM, num_envs=2, checkpoint=str(ckpt), render_mode="rgb_array",
                                      max_episode_steps=3), str(tmp_path / "videos"), episode_trigger=lambda e: True)
    videos.reset(seed=0)
    for _ in range(4):
        videos.step(np.array([0, 1]))
    videos.close()
    assert list((tmp_path / "videos").glob("*.mp4"))


@pytest.mark.parametrize("actions, message", [
    (np.array([1, 2, 3]), r"shape \(3,\).*2 integers"),
    (np.array([1, 12]), r"\[1, 12\].*\[0, 11\]"),
    (np.array([0.5, 1.0]), r"integers"),
])
def test_bad_actions_are_named(ckpt, actions, message):
    envs = gym.make_vec(DREAM, num_envs=2, checkpoint=str(ckpt))
    envs.reset(seed=0)
    with pytest.raises(ValueError, match=message):
        envs.step(actions)
