"""The pixel baselines of the leaderboard: `worldsim train pixel` end to end at a tiny size, and its checkpoints as
probe-protocol world models."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from worldsim.baselines.pixel import PixelConfig, PixelUNet, PixelWorldModel, load_pixel, to_unit, training_loss
from worldsim.cli import main
from worldsim.data.loader import ClipDataset
from worldsim.probes.protocol import Probed

from conftest import random_craft2d

TINY = ["model.channels=[8,16]", "model.cond_dim=16", "batch_size=4", "eval_clips=2", "horizons=[1,2]",
        "holdout=0.3", "optim.steps=3", "optim.warmup=1", "loop.eval_every=0"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return random_craft2d(tmp_path_factory.mktemp("pixel") / "data", 600, max_episode_steps=60, shard_steps=300)


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    runs = {}
    for objective in ("diffusion", "regression"):
        out = tmp_path_factory.mktemp(objective)
        assert main(["train", "pixel", f"data={data}", f"model.objective={objective}", f"loop.out={out}", *TINY]) == 0
        runs[objective] = out
    return runs


@pytest.mark.parametrize("objective", ["diffusion", "regression"])
def test_train_pixel_writes_a_checkpoint_and_scores_rollouts_beside_copy_last(trained, objective, capsys):
    run = trained[objective]
    lines = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    evals = lines[-1]["eval"]
    assert lines[-1]["step"] == 3
    assert evals.keys() == {f"{k}_h{h}" for k in ("psnr", "copy_psnr", "tiles", "copy_tiles") for h in (1, 2)}
    net, meta = load_pixel(run / "last.safetensors")
    assert net.cfg.objective == objective and net.cfg.n_actions == 12  # the data's actions, not a setting
    assert meta["frame_shape"] == [64, 64, 3] and meta["pixel_config"]["channels"] == [8, 16]


def test_a_checkpoint_keeps_the_probe_protocol_and_its_seeds(trained, data):
    clips = ClipDataset(data, 6, "all").sample(3, np.random.default_rng(0))
    model = PixelWorldModel(str(trained["diffusion"] / "last.safetensors"))
    assert model.name == "pixel-diffusion" and model.context == 4
    assert model.num_parameters == sum(p.numel() for p in model.net.parameters()) > 0
    probed = Probed(model)

    def roll(seed: int) -> np.ndarray:
        model.reset(clips.frames[:, :4], clips.actions[:, :4], seed)
        return np.stack([probed._check(model.step(clips.actions[:, 4 + t]), 3, (64, 64, 3), (t, 2))[0]
                         for t in range(2)])

    first = roll(7)
    assert first.dtype == np.uint8 and first.shape == (2, 3, 64, 64, 3)
    assert (roll(7) == first).all()  # a seed repeats exactly
    assert (roll(8) != first).any()  # and another draws another frame


def test_an_untrained_regressor_is_copy_last_and_a_short_history_is_padded(data):
    net = PixelUNet(PixelConfig(objective="regression", channels=[8, 16], cond_dim=16, n_actions=12))
    model = PixelWorldModel.of(net)
    clips = ClipDataset(data, 3, "all").sample(2, np.random.default_rng(1))
    model.reset(clips.frames[:, :2], clips.actions[:, :2], 0)  # 2 frames where the network stacks 4
    assert model.frames.shape[1] == 4 and (model.actions[:, :2] == -1).all()
    assert (model.frames[:, 0] == model.frames[:, 2]).all()  # the first frame repeats into the missing past
    assert (model.step(clips.actions[:, 2]) == clips.frames[:, 1]).all()  # its output starts at zero: the change
    with pytest.raises(ValueError, match="63x64 px.*divide by 2"):
        model.reset(np.zeros((1, 2, 64, 63, 3), np.uint8), np.zeros((1, 2), np.int64), 0)


@pytest.mark.parametrize("objective", ["diffusion", "regression"])
def test_a_process_share_of_the_batch_draws_what_one_process_draws(objective):
    torch.manual_seed(0)
    net = PixelUNet(PixelConfig(objective=objective, channels=[8, 16], cond_dim=16, n_actions=12))
    frames = to_unit(torch.randint(0, 256, (4, 5, 16, 16, 3), dtype=torch.uint8))
    actions = torch.randint(-1, 12, (4, 5))
    whole = training_loss(net, frames, actions, torch.Generator().manual_seed(3))
    halves = [training_loss(net, frames, actions, torch.Generator().manual_seed(3), slice(lo, lo + 2))
              for lo in (0, 2)]
    torch.testing.assert_close(torch.cat(halves), whole)


def test_a_world_model_checkpoint_is_refused_by_name(tmp_path):
    from worldsim.checkpoint import default_checkpoint

    with pytest.raises(ValueError, match="not a pixel baseline.*worldsim train pixel"):
        load_pixel(default_checkpoint())


def test_the_baseline_is_probed_through_the_protocol_end_to_end(trained, tmp_path):
    ckpt = trained["regression"] / "last.safetensors"
    assert main(["probe", "model=worldsim.baselines.pixel:PixelWorldModel", f"model_kwargs.checkpoint={ckpt}",
                 "suite=control", "quick=true", "seeds=1", "report=false", f"out={tmp_path}"]) == 0
    summary = json.loads((tmp_path / "probes.json").read_text())
    assert summary["predictor"] == "pixel-regression" and summary["model"]["events"] is False
    assert 0.0 <= summary["families"]["control"]["score"] <= 1.0
