"""The reward/end model: it pays from the frames before a step and the action, so a dream that draws an event wrong
still pays for it. `worldsim train reward` learns it on a world's latents and writes the world with it added; the
simulator then pays and ends by it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from worldsim.checkpoint import CheckpointError, load_world, save_world
from worldsim.cli import main
from worldsim.data.shards import ShardWriter, write_manifest
from worldsim.models.autoencoder import Autoencoder, AutoencoderConfig
from worldsim.models.diffusion import DiffusionConfig
from worldsim.models.dit import DiT, DiTConfig
from worldsim.models.reward import RewardModel, RewardModelConfig
from worldsim.simulator import WorldSimulator
from worldsim.train.reward import examples

from test_checkpoint import _edit

FRAME = (16, 16, 3)
ACTIONS = ["noop", "mine", "move"]


def _frame(right: bool) -> np.ndarray:
    """A dark frame with a bright block on the left or the right half."""
    frame = np.zeros(FRAME, np.uint8)
    frame[4:12, 10:14 if right else 2:6] = 255
    return frame


def _game(root, episodes: int = 40, length: int = 30, seed: int = 0, meanings=ACTIONS, pays: bool = True,
          after: bool = False):
    """A dataset of a game that pays 1 for "mine" when the block stands on the right before the step (`after`: in the
    frame the step makes), and ends an episode when "move" is taken with the block on the left on its last step: the
    rule is in the frame before (or after)."""
    rng = np.random.default_rng(seed)
    write_manifest(root, {"env": "synthetic", "action_meanings": list(meanings), "frame_shape": list(FRAME)})
    writer = ShardWriter(root, 0, 0, FRAME)
    for eid in range(episodes):
        right = bool(rng.integers(2))
        writer.add(_frame(right), -1, 0.0, False, False, eid, "", None)
        for t in range(1, length):
            action = int(rng.integers(3))
            new = bool(rng.integers(2))
            paid = pays and action == 1 and (new if after else right)
            ends = t == length - 1 and action == 2 and not right
            right = new
            writer.add(_frame(right), action, float(paid), ends, False, eid, "", None)
        writer.end_episode(eid, seed=seed * 1000 + eid, agent="random", cut=False)
    writer.flush()
    return root


def _world(path, n_actions: int = 3, seed: int = 0):
    """A tiny untrained world of 16x16 frames whose rewards are the classes (0, 1)."""
    torch.manual_seed(seed)
    ae = Autoencoder(AutoencoderConfig(width=8, latent_channels=4, head_width=16))
    with torch.no_grad():
        frames = torch.from_numpy(np.stack([_frame(False), _frame(True)]))
        ae.fit_latent_stats(ae.encode_raw(frames))
    dit = DiT(DiTConfig(latent_channels=4, width=24, depth=1, heads=2, n_actions=n_actions, context=4,
                        reward_values=(0.0, 1.0)))
    return save_world(path, ae, dit, DiffusionConfig(denoise_steps=1), config={"tiny": True},
                      action_meanings=ACTIONS[:n_actions], frame_shape=list(FRAME), env="synthetic")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(world, the reward run) after `worldsim train reward` on the game."""
    root = tmp_path_factory.mktemp("reward")
    world, run = _world(root / "world.safetensors"), root / "run"
    assert main(["train", "reward", f"world={world}", f"data={_game(root / 'data')}", "width=16", "depth=2",
                 "batch_size=64", "holdout=0.25", "optim.steps=150", "optim.warmup=10", "optim.ema=0.9",
                 "loop.eval_every=0", f"loop.out={run}"]) == 0
    return world, run


def test_examples_read_the_frames_before_each_step_the_first_standing_in_for_earlier_ones():
    latents = torch.arange(3.0).view(1, 3, 1, 1, 1).expand(2, 3, 1, 2, 2)  # frame t holds the value t
    actions = torch.tensor([[-1, 4, 5], [-1, 6, 7]])
    hist, acts, steps = examples(latents, actions, 2)
    assert steps == [1, 2] and acts.tolist() == [4, 6, 5, 7]
    assert hist[:, :, 0, 0, 0].tolist() == [[0, 0], [0, 0], [0, 1], [0, 1]]  # step 1 reads frame 0 twice
    hist, acts, steps = examples(latents, actions, 2, last_only=True)
    assert steps == [2] and acts.tolist() == [5, 7] and hist[:, :, 0, 0, 0].tolist() == [[0, 1], [0, 1]]
    hist, _, _ = examples(latents, actions, 2, after=True)  # and the frame each step made
    assert hist[:, :, 0, 0, 0].tolist() == [[0, 0, 1], [0, 0, 1], [0, 1, 2], [0, 1, 2]]


def test_the_model_runs_at_any_grid_size_and_takes_an_unknown_action():
    model = RewardModel(RewardModelConfig(latent_channels=4, n_actions=3, history=2, width=8, depth=2))
    for h, w in ((8, 8), (8, 12)):
        logits, ended = model(torch.randn(5, 2, 4, h, w), torch.tensor([-1, 0, 1, 2, 2]))
        assert logits.shape == (5, 2) and ended.shape == (5,)
    with pytest.raises(ValueError, match=r"latents=\(5, 3, 4, 8, 8\): expected \(B, 2, 4, h, w\)"):
        model(torch.randn(5, 3, 4, 8, 8), torch.zeros(5))


def test_a_config_without_a_zero_reward_is_refused():
    with pytest.raises(ValueError, match=r"values=\[1.0, 2.0\]: expected .* 0 among them"):
        RewardModelConfig(values=(1.0, 2.0))


def test_it_learns_a_reward_that_is_in_the_frame_before_the_step(trained, capsys):
    _, run = trained
    last = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()][-1]["eval"]
    assert last["events"] > 20 and last["reward_f1"] >= 0.9, last
    world = load_world(run / "last.safetensors")
    assert world.reward is not None and 0.0 < float(world.reward.threshold) < 1.0
    assert world.metadata["world_config"] == {"tiny": True}  # the world's own run config, kept
    assert world.metadata["config"]["history"] == 2 and world.metadata["reward_config"]["values"] == [0.0, 1.0]


def test_the_simulator_pays_by_the_reward_model_from_the_frame_before_the_step(trained):
    _, run = trained
    sim = WorldSimulator.from_checkpoint(run / "last.safetensors", device="cpu", seed=0)
    start = np.stack([_frame(True), _frame(False), _frame(True)])[:, None]  # (3, 1, H, W, 3)
    sim.reset(start)
    out = sim.step([1, 1, 0])  # mine with the block on the right pays; on the left, or a noop, does not
    assert out.rewards.tolist() == [1.0, 0.0, 0.0]
    sim.reset(start)
    out = sim.step([1, 1, 1], restart=np.array([True, False, False]), start_frames=start[:, 0])
    assert out.rewards.tolist() == [0.0, 0.0, 1.0]  # a world that starts over is paid nothing
    assert sim.recent.shape == (3, 2, 4, 2, 2)


def test_the_reward_model_changes_no_frame_of_the_dream(trained):
    world, run = trained
    start = np.stack([_frame(True), _frame(False)])[:, None]
    frames = []
    for path in (world, run / "last.safetensors"):
        sim = WorldSimulator.from_checkpoint(path, device="cpu", seed=3)
        sim.reset(start)
        frames.append(np.stack([sim.step([1, 2]).frames for _ in range(4)]))
    assert np.array_equal(*frames)


def test_training_it_again_on_its_own_output_keeps_one_reward_model_and_the_world_config(trained, tmp_path):
    _, run = trained
    again = tmp_path / "again"
    assert main(["train", "reward", f"world={run / 'last.safetensors'}", f"data={_game(tmp_path / 'data')}",
                 "width=16", "depth=2", "batch_size=8", "holdout=0.25", "optim.steps=1", "optim.warmup=0",
                 "loop.eval_every=0", f"loop.out={again}"]) == 0
    world = load_world(again / "last.safetensors")
    assert world.metadata["world_config"] == {"tiny": True} and world.reward.config.width == 16


def test_a_dataset_of_another_game_is_refused_before_any_work(tmp_path, capsys):
    world = _world(tmp_path / "world.safetensors")
    data = _game(tmp_path / "data", episodes=2, meanings=["a", "b", "c"])
    assert main(["train", "reward", f"world={world}", f"data={data}", f"loop.out={tmp_path / 'run'}"]) == 2
    assert "a dataset of the world's game, with its actions ['noop', 'mine', 'move']" in capsys.readouterr().err
    assert not (tmp_path / "run").exists() and not list(tmp_path.glob("data.latents-*"))


def test_data_that_never_pays_is_refused_naming_it(tmp_path, capsys):
    world = _world(tmp_path / "world.safetensors")
    data = _game(tmp_path / "data", episodes=4, length=10, pays=False)
    assert main(["train", "reward", f"world={world}", f"data={data}", f"loop.out={tmp_path / 'run'}"]) == 2
    assert "whose steps pay 2 to 8 distinct rewards, 0 among them" in capsys.readouterr().err
    assert not (tmp_path / "run").exists() and not list(tmp_path.glob("data.latents-*"))  # before any work


def test_a_reward_model_that_does_not_fit_its_world_is_refused_naming_the_field(trained, tmp_path):
    _, run = trained
    path = tmp_path / "w.safetensors"
    path.write_bytes((run / "last.safetensors").read_bytes())
    _edit(path, lambda meta: meta["reward_config"].update(n_actions=5))
    with pytest.raises(CheckpointError, match=r"reward_config.n_actions = 5: expected dit_config.n_actions = 3"):
        load_world(path)
    path.write_bytes((run / "last.safetensors").read_bytes())
    _edit(path, lambda meta: meta.pop("reward_config"))  # its tensors left without a config
    with pytest.raises(CheckpointError, match=r"tensor reward\.\S+ = present: expected only the tensors"):
        load_world(path)


def test_init_carries_a_reward_model_onto_another_world_of_the_same_autoencoder(trained, tmp_path):
    _, run = trained
    other = _world(tmp_path / "other.safetensors")  # the same autoencoder (seed 0), as a fine-tuned world's
    out = tmp_path / "carried"
    assert main(["train", "reward", f"world={other}", f"data={_game(tmp_path / 'data')}", "width=16", "depth=2",
                 "batch_size=8", "holdout=0.25", f"init={run / 'last.safetensors'}", "optim.steps=1",
                 "optim.warmup=0", "optim.lr=1e-12", "optim.ema=0", "loop.eval_every=0", f"loop.out={out}"]) == 0
    before, after = (load_world(p).reward.state_dict() for p in (run / "last.safetensors", out / "last.safetensors"))
    assert all(torch.allclose(before[n], after[n]) for n in before if n != "threshold")  # its weights, carried


def test_init_of_another_autoencoder_or_shape_is_refused_before_any_work(trained, tmp_path, capsys):
    _, run = trained
    data = _game(tmp_path / "data", episodes=4, length=10)
    common = [f"data={data}", "depth=2", f"init={run / 'last.safetensors'}", f"loop.out={tmp_path / 'run'}"]
    other = _world(tmp_path / "other.safetensors", seed=1)
    assert main(["train", "reward", f"world={other}", "width=16", *common]) == 2
    assert f"whose autoencoder is world={other}'s" in capsys.readouterr().err
    world = _world(tmp_path / "same.safetensors")
    assert main(["train", "reward", f"world={world}", "width=8", *common]) == 2
    assert "its reward_config has width=16 (this run: 8)" in capsys.readouterr().err
    assert main(["train", "reward", f"world={world}", "width=8", *common[:2], f"init={world}",
                 f"loop.out={tmp_path / 'run'}"]) == 2
    assert "a checkpoint with a reward model" in capsys.readouterr().err
    assert not (tmp_path / "run").exists() and not list(tmp_path.glob("data.latents-*"))


def test_a_reward_model_that_reads_the_frame_made_learns_a_reward_shown_after_the_step_and_pays_by_the_frame_drawn(
        tmp_path):
    world, run = _world(tmp_path / "world.safetensors"), tmp_path / "run"
    assert main(["train", "reward", f"world={world}", f"data={_game(tmp_path / 'data', after=True)}", "after=true",
                 "width=16", "depth=2", "batch_size=64", "holdout=0.25", "optim.steps=150", "optim.warmup=10",
                 "optim.ema=0.9", "loop.eval_every=0", f"loop.out={run}"]) == 0
    last = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()][-1]["eval"]
    assert last["events"] > 20 and last["reward_f1"] >= 0.9, last
    sim = WorldSimulator.from_checkpoint(run / "last.safetensors", device="cpu", seed=0)
    assert sim.reward.config.after
    sim.reset(np.stack([_frame(False)] * 3)[:, None])
    drawn = np.stack([_frame(True), _frame(False), _frame(True)])  # the frames each world's step makes
    out = sim.guided_step(np.array([1, 1, 0]), target=drawn, strength=0.0)
    assert out.rewards.tolist() == [1.0, 0.0, 0.0]  # mine, with the block on the right in the frame drawn, pays


def test_after_dropout_without_after_is_refused_naming_it(tmp_path, capsys):
    world = _world(tmp_path / "world.safetensors")
    assert main(["train", "reward", f"world={world}", f"data={tmp_path / 'none'}", "after_dropout=0.5",
                 f"loop.out={tmp_path / 'run'}"]) == 2
    assert "after_dropout=0.5: expected a share in [0, 1], and 0 without after=true" in capsys.readouterr().err
