"""Dream-v0: a world-model checkpoint as a Gymnasium env (a tiny random-weight checkpoint stands in for a trained one:
the contract does not depend on what the model has learned)."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.error import ResetNeeded
from gymnasium.utils.env_checker import check_env

from worldsim.envs.craft2d import Craft2DEnv, Scenario
from worldsim.checkpoint import default_checkpoint, save_world
from worldsim.envs.dream import DreamEnv
from worldsim.models.autoencoder import Autoencoder, AutoencoderConfig
from worldsim.models.diffusion import DiffusionConfig
from worldsim.models.dit import DiT, DiTConfig

DREAM = "worldsim/Dream-v0"


def write_world(path, env: str = "worldsim/Craft2D-v0", n_actions: int = 12, starts: int = 3, context: int = 4,
                vocab: tuple[str, ...] = (), views: list[list[int]] | None = None, memory: int = 0):
    """A tiny world-model checkpoint in the format `worldsim train world` writes, with perturbed random weights
    (`vocab`: caption words, for a model with a text encoder; `views`: frame shapes it says it was trained on besides
    64x64; `memory`: chunks of strided memory beyond the window, one in 2)."""
    torch.manual_seed(0)
    ae = Autoencoder(AutoencoderConfig(width=8, latent_channels=4, head_width=16))
    dit = DiT(DiTConfig(latent_channels=4, width=24, depth=1, heads=2, n_actions=n_actions, context=context,
                        vocab=vocab, memory=memory, memory_stride=2))
    for p in dit.parameters():  # adaLN-Zero starts as the identity: perturb so rewards and frames vary
        p.data.add_(torch.randn_like(p) * 0.05)
    dit.terminated_head[-1].bias.data.fill_(-30.0)  # episodes end by the time limit, as a trained model's mostly do
    frames = np.stack([Craft2DEnv().reset(seed=s)[0] for s in range(starts)])
    meanings = Craft2DEnv().get_action_meanings() if n_actions == 12 else [f"a{i}" for i in range(n_actions)]
    return save_world(path, ae, dit, DiffusionConfig(denoise_steps=2), config={"tiny": True},
                      action_meanings=meanings, frame_shape=[64, 64, 3], start_frames=frames, env=env, step=0,
                      views=views)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return write_world(tmp_path_factory.mktemp("dream") / "tiny.safetensors")


@pytest.mark.parametrize("render_mode", ["rgb_array", "human"])
def test_check_env_as_registered(ckpt, render_mode):
    env = gym.make(DREAM, checkpoint=str(ckpt), render_mode=render_mode)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            check_env(env.unwrapped)
        assert [str(w.message) for w in caught] == []
        assert env.spec.max_episode_steps == 1000
        env.reset(seed=0)
        frame = env.render()
        assert (frame.shape == (64, 64, 3)) if render_mode == "rgb_array" else frame is None
    finally:
        env.close()


def _rollout(env, seed, actions):
    obs, _ = env.reset(seed=seed)
    frames, rewards = [obs], []
    for a in actions:
        obs, r, terminated, truncated, info = env.step(a)
        assert isinstance(terminated, bool) and truncated is False and isinstance(r, float)
        frames.append(obs)
        rewards.append(r)
    return np.stack(frames), rewards, info


def test_same_seed_same_frames(ckpt):
    actions = np.random.default_rng(0).integers(12, size=8).tolist()
    a = _rollout(gym.make(DREAM, checkpoint=str(ckpt)), 5, actions)
    b = _rollout(gym.make(DREAM, checkpoint=str(ckpt)), 5, actions)
    c = _rollout(gym.make(DREAM, checkpoint=str(ckpt)), 6, actions)
    assert np.array_equal(a[0], b[0]) and a[1] == b[1]
    assert not np.array_equal(a[0], c[0])
    assert a[2] == {"denoise_steps": 2, "t": 8, "start": "bank", "view_trained": True}


def test_spaces_meanings_and_defaults_come_from_the_checkpoint(ckpt, tmp_path):
    env = DreamEnv(checkpoint=ckpt, denoise_steps=1)
    assert env.action_space == gym.spaces.Discrete(12)
    assert env.observation_space.shape == (64, 64, 3) and env.observation_space.dtype == np.uint8
    assert env.get_action_meanings()[2] == "right"
    assert env.reset(seed=0)[1]["denoise_steps"] == 1
    other = DreamEnv(checkpoint=write_world(tmp_path / "five.safetensors", env="CartPole-v1", n_actions=5))
    assert other.action_space == gym.spaces.Discrete(5) and other.get_action_meanings()[4] == "a4"


def test_the_start_frame_comes_from_the_bank(ckpt):
    env = DreamEnv(checkpoint=ckpt)
    bank = env.start_frames
    seen = {int(np.flatnonzero((bank == env.reset(seed=s)[0]).all(axis=(1, 2, 3)))[0]) for s in range(12)}
    assert seen == {0, 1, 2}  # every bank frame, chosen by the seed


def test_reset_options_start_anywhere(ckpt):
    env = DreamEnv(checkpoint=ckpt)
    image = Craft2DEnv().reset(seed=9)[0]
    obs, info = env.reset(seed=0, options={"image": image})
    assert np.array_equal(obs, image) and info["start"] == "image"
    video = np.stack([Craft2DEnv().reset(seed=s)[0] for s in range(6)])
    obs, info = env.reset(seed=0, options={"video": video, "actions": [-1, 2, 2, 1, 0, 3]})
    assert np.array_equal(obs, video[-1]) and info["start"] == "video"
    assert env.step(2)[0].shape == (64, 64, 3)
    scenario = Scenario("..........\n....>.....\nGGGGGGGGGG\nDDDDDDDDDD")
    obs, info = env.reset(seed=0, options={"scenario": scenario})
    real, _ = Craft2DEnv().reset(seed=0, options={"scenario": scenario})
    assert info["start"] == "scenario" and np.array_equal(obs, real)
    with pytest.raises(ValueError, match="prompt.*trained without captions"):
        env.reset(options={"prompt": "a desert at night"})


def test_a_prompt_starts_a_world_from_text(tmp_path):
    path = write_world(tmp_path / "text.safetensors", vocab=("biome", "day", "desert", "night", "of", "pig", "snow"))
    env = DreamEnv(checkpoint=path)
    obs, info = env.reset(seed=0, options={"prompt": "a desert at night near a cave"})
    assert obs.shape == (64, 64, 3) and obs.dtype == np.uint8
    assert info["start"] == "prompt" and info["caption"] == "night, desert biome" and "cave" in info["unknown_words"]
    again, _ = env.reset(seed=0, options={"prompt": "a desert at night near a cave"})
    other, _ = env.reset(seed=0, options={"prompt": "snowy day"})
    unguided, _ = env.reset(seed=0, options={"prompt": "a desert at night near a cave", "guidance": 1.0})
    assert np.array_equal(obs, again)  # a prompt and a seed always give the same start
    assert not np.array_equal(obs, other) and not np.array_equal(obs, unguided)
    step = env.step(3)
    assert step[0].shape == (64, 64, 3) and step[4]["caption"] == "night, desert biome"  # the episode's start
    assert env.reset(seed=0)[1] == {"denoise_steps": 2, "t": 0, "start": "bank",
                                    "view_trained": True}  # a plain reset forgets it
    with pytest.raises(ValueError, match="guidance=-1"):
        env.reset(options={"prompt": "night", "guidance": -1})
    with pytest.raises(ValueError, match="'guidance' goes with 'prompt'"):
        env.reset(options={"guidance": 2.0})


@pytest.mark.parametrize("options, message", [
    ({"image": np.zeros((64, 64, 3), np.float32)}, r"image of shape \(64, 64, 3\) and dtype float32.*uint8"),
    ({"image": np.zeros((32, 64, 3), np.uint8)}, r"image of shape \(32, 64, 3\).*\(64, 64, 3\)"),
    ({"video": np.zeros((2, 64, 64, 3), np.uint8), "actions": [0]}, r"actions of shape \(1,\).*\(2,\)"),
    ({"video": np.zeros((2, 64, 64, 3), np.uint8), "actions": [-1, 12]}, r"in \[-1, 11\]"),
    ({"actions": [0]}, r"'actions' goes with 'video'"),
    ({"image": np.zeros((64, 64, 3), np.uint8), "scenario": "x"}, r"one way to start"),
    ({"seed": 3}, r"\['seed'\]"),
])
def test_bad_reset_options_are_named(ckpt, options, message):
    with pytest.raises(ValueError, match=message):
        DreamEnv(checkpoint=ckpt).reset(options=options)


def test_bad_actions_and_arguments_are_named(ckpt, tmp_path):
    env = DreamEnv(checkpoint=ckpt)
    with pytest.raises(ResetNeeded):
        env.step(0)
    env.reset(seed=0)
    for bad in (12, -1, 2.5, "left"):
        with pytest.raises(ValueError, match=r"outside Discrete\(12\)"):
            env.step(bad)
    with pytest.raises(FileNotFoundError, match="nope.safetensors"):
        DreamEnv(checkpoint=tmp_path / "nope.safetensors")
    if not default_checkpoint().exists():  # a broken install: the default says what to do
        with pytest.raises(FileNotFoundError, match="missing from this install.*checkpoint=PATH"):
            gym.make(DREAM)
    with pytest.raises(ValueError, match=r"context=9.*\[2, 4\]"):
        DreamEnv(checkpoint=ckpt, context=9)
    with pytest.raises(ValueError, match="denoise_steps=0"):
        DreamEnv(checkpoint=ckpt, denoise_steps=0)
    with pytest.raises(ValueError, match=r"history_sigma=1.0: expected a noise level in \[0, 1\)"):
        DreamEnv(checkpoint=ckpt, history_sigma=1.0)
    with pytest.raises(ValueError, match=r"action_guidance=-1.0: expected a finite scale >= 0"):
        DreamEnv(checkpoint=ckpt, action_guidance=-1.0)
    assert DreamEnv(checkpoint=ckpt, action_guidance=2).sim.diffusion.action_guidance == 2.0  # else the checkpoint's
    assert DreamEnv(checkpoint=ckpt).sim.diffusion.action_guidance == 1.0
    with pytest.raises(ValueError, match=r"history_guidance=nan: expected a finite scale >= 0"):
        DreamEnv(checkpoint=ckpt, history_guidance=float("nan"))
    assert DreamEnv(checkpoint=ckpt, history_guidance=3).sim.diffusion.history_guidance == 3.0
    with pytest.raises(ValueError, match=r"history_window=0: expected an integer >= 1"):
        DreamEnv(checkpoint=ckpt, history_window=0)
    assert DreamEnv(checkpoint=ckpt, history_window=1).sim.diffusion.history_window == 1
    cartpole = DreamEnv(checkpoint=write_world(tmp_path / "cp.safetensors", env="CartPole-v1"))
    with pytest.raises(ValueError, match=r"scenario.*Craft2D checkpoint.*'CartPole-v1'"):
        cartpole.reset(options={"scenario": Scenario("....>....\nGGGGGGGGG")})


def test_a_shorter_context_is_a_smaller_window(ckpt):
    env = DreamEnv(checkpoint=ckpt, context=2)
    env.reset(seed=0)
    for a in range(5):
        env.step(a)
    assert env.sim.dit.config.context == 2 and int(env.sim.cache.lengths.max()) == 1


def test_memory_is_bounded_by_the_window(ckpt):
    """The cache is preallocated for `context` frames: stepping far past it reallocates nothing and keeps no more."""
    env = DreamEnv(checkpoint=ckpt)
    env.reset(seed=0)
    env.step(0)
    cache = env.sim.cache
    buffers = [t.data_ptr() for t in cache.k + cache.v]
    shapes = [tuple(t.shape) for t in cache.k + cache.v]
    for a in np.random.default_rng(0).integers(12, size=12 * env.sim.dit.config.context):
        env.step(int(a))
    assert env.sim.cache is cache and [t.data_ptr() for t in cache.k + cache.v] == buffers
    assert [tuple(t.shape) for t in cache.k + cache.v] == shapes
    assert int(cache.lengths.max()) == env.sim.dit.config.context - 1


def test_a_checkpoint_with_nan_weights_is_refused_by_the_cli(ckpt, tmp_path, capsys):
    """NaN weights used to dream black frames and `worldsim dream` exited 0: now the file is refused by name."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from worldsim.cli import main

    bad = tmp_path / "nan.safetensors"
    tensors = load_file(str(ckpt))
    tensors["dit.final_layer.linear.weight"][0, 0] = float("nan")
    with safe_open(str(ckpt), framework="pt") as f:
        save_file(tensors, str(bad), metadata=f.metadata())
    assert main(["dream", f"checkpoint={bad}", "steps=2", f"out={tmp_path / 'r.gif'}"]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "dit.final_layer.linear.weight = 1 NaN" in err
    assert not (tmp_path / "r.gif").exists()


def test_reencode_overrides_the_checkpoints_and_changes_what_follows(ckpt):
    assert DreamEnv(checkpoint=ckpt).sim.diffusion.reencode is False
    frames = {}
    for reencode in (False, True):
        env = DreamEnv(checkpoint=ckpt, reencode=reencode)
        assert env.sim.diffusion.reencode is reencode
        env.reset(seed=0)
        frames[reencode] = [env.step(a)[0] for a in (1, 2, 0)]
    assert any((a != b).any() for a, b in zip(frames[False], frames[True]))
    with pytest.raises(ValueError, match=r"reencode='yes': expected True, False, or None"):
        DreamEnv(checkpoint=ckpt, reencode="yes")


def test_history_sigma_overrides_the_checkpoints_and_noises_the_cached_history(ckpt):
    assert DreamEnv(checkpoint=ckpt).sim.diffusion.history_sigma == 0.0
    frames = {}
    for sigma in (0.0, 0.3):
        env = DreamEnv(checkpoint=ckpt, history_sigma=sigma)
        assert env.sim.diffusion.history_sigma == sigma
        env.reset(seed=0)
        frames[sigma] = [env.step(a)[0] for a in (1, 2, 0)]
    assert any((a != b).any() for a, b in zip(frames[0.0], frames[0.3]))  # the noised history changes what follows
