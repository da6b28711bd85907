"""The own-env path on an Atari game (ale-py, which ships its ROMs): `worldsim collect` from ALE/Breakout-v5 resized
to 64x64, then `worldsim train ae` and `worldsim train world` on it, with tiny budgets (the Breakout recipe's own
settings otherwise: configs/*/experiment/breakout.yaml)."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("ale_py")

from worldsim.cli import main  # noqa: E402
from worldsim.data.loader import ClipDataset  # noqa: E402
from worldsim.simulator import WorldSimulator  # noqa: E402

ENV = "ale_py:ALE/Breakout-v5"  # the module first: importing ale_py registers the ALE/ ids


def test_breakout_collects_and_trains_through_the_cli(tmp_path, capsys):
    data, ae, world = tmp_path / "data", tmp_path / "ae", tmp_path / "world"
    assert main(["collect", "experiment=breakout", f"out={data}", "steps=200", "workers=1",
                 "max_episode_steps=40", "shard_steps=100"]) == 0
    manifest = json.loads((data / "manifest.json").read_text())
    assert manifest["env"] == ENV and manifest["env_kwargs"] == {"frameskip": 4, "repeat_action_probability": 0.0}
    assert manifest["action_meanings"] == ["NOOP", "FIRE", "RIGHT", "LEFT"]
    assert manifest["frame_shape"] == [64, 64, 3] and manifest["native_frame_shape"] == [210, 160, 3]
    frames = ClipDataset(data, 1, "all", captions=False)
    assert len(frames) == 200 and frames.get([0]).frames.shape == (1, 1, 64, 64, 3)

    assert main(["train", "ae", "experiment=breakout", f"data={data}", f"loop.out={ae}", "optim.steps=2",
                 "optim.warmup=1", "model.width=8", "batch_size=4", "eval_frames=8", "stats_frames=32",
                 "holdout=0.3", "loop.eval_every=0"]) == 0
    capsys.readouterr()
    assert main(["train", "world", "experiment=breakout", f"data={data}", f"ae={ae / 'last.safetensors'}",
                 f"loop.out={world}", "dit.width=24", "dit.depth=1", "dit.heads=2", "dit.context=4", "clip_len=4",
                 "batch_size=2", "eval_clips=2", "eval_context=2", "horizons=[1,2]", "holdout=0.3",
                 "optim.steps=2", "optim.warmup=1", "loop.eval_every=0"]) == 0
    out = capsys.readouterr().out
    last = json.loads((world / "log.jsonl").read_text().splitlines()[-1])
    assert last["step"] == 2 and last["eval"].keys() >= {"psnr_h1", "psnr_h2", "copy_psnr_h1", "copy_psnr_h2"}
    assert "tiles_h1" not in last["eval"]  # cells right are Craft2D's; other games are scored in PSNR
    assert "copy last frame" in out

    sim = WorldSimulator.from_checkpoint(world / "last.safetensors", device="cpu", seed=0)
    assert sim.metadata["action_meanings"] == ["NOOP", "FIRE", "RIGHT", "LEFT"]
    sim.reset(frames.get([0]).frames)
    step = sim.step([1])  # FIRE
    assert step.frames.shape == (1, 64, 64, 3) and step.frames.dtype == np.uint8


def test_an_unregistered_id_is_refused_with_how_to_name_its_package(tmp_path, capsys):
    # (ALE/ itself is registered by now: importorskip imported ale_py, as env=ale_py:... does)
    assert main(["collect", f"out={tmp_path / 'data'}", "env=Nope/Breakout-v5", "agent=random"]) == 2
    assert "name the package first: env=PACKAGE:Nope/Breakout-v5" in capsys.readouterr().err
    assert not (tmp_path / "data").exists()  # refused before any work
