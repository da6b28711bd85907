"""`worldsim scaling`: held-out loss and probes of world-model runs against their training FLOPs, end to end on two
tiny runs of different widths."""

from __future__ import annotations

import json
import shutil

import pytest
from omegaconf import OmegaConf

from worldsim.checkpoint import read_metadata
from worldsim.cli import main
from worldsim.train.scaling import read_run

from conftest import random_craft2d


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("scaling")
    data = random_craft2d(root / "data", 900, max_episode_steps=60, shard_steps=300)
    assert main(["train", "ae", f"data={data}", "optim.steps=2", "optim.warmup=0", "model.width=8", "batch_size=2",
                 "eval_frames=4", "stats_frames=16", "holdout=0.3", f"loop.out={root / 'ae'}",
                 "loop.eval_every=0"]) == 0
    out = {}
    for name, width in (("small", 16), ("wide", 48)):
        out[name] = root / name
        assert main(["train", "world", f"data={data}", f"ae={root / 'ae' / 'last.safetensors'}",
                     f"dit.width={width}", "dit.depth=1", "dit.heads=2", "dit.context=4", "clip_len=4",
                     "batch_size=2", "eval_clips=1", "eval_context=2", "horizons=[1]", "holdout=0.3",
                     "optim.steps=4", "optim.warmup=1", "loop.eval_every=2", f"loop.out={out[name]}"]) == 0
    return out


def test_every_evaluation_logs_a_heldout_loss_and_training_writes_its_config(runs):
    evals = [json.loads(line)["eval"] for line in (runs["small"] / "log.jsonl").read_text().splitlines()
             if "eval" in line]
    assert len(evals) == 2 and all(e["heldout_loss"] > 0 for e in evals)
    written = OmegaConf.to_container(OmegaConf.load(runs["small"] / "config.yaml"))
    assert written == read_metadata(runs["small"] / "last.safetensors")["config"]


def test_the_study_plots_and_tabulates_every_run(runs, tmp_path, capsys):
    png = tmp_path / "scaling.png"
    assert main(["scaling", str(runs["small"]), str(runs["wide"]), f"out={png}"]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = png.with_suffix(".md").read_text().splitlines()
    assert table[0].startswith("| run | preset | parameters | steps | training FLOPs | held-out loss")
    assert [row.split(" | ")[0] for row in table[2:]] == ["| small", "| wide"]  # in order of compute
    assert capsys.readouterr().out.startswith(table[0])
    small, wide = read_run(runs["small"]), read_run(runs["wide"])
    assert small.steps == wide.steps == 4 and small.parameters < wide.parameters
    assert 2 < wide.flops / small.flops < 9  # ~3x the width: 3-9x the matmuls (attention's share grows slower)


def test_flops_read_from_the_config_alone_equal_the_checkpoints(runs, tmp_path):
    weightless = tmp_path / "weightless"  # a run whose weights stayed on another machine: log and config only
    weightless.mkdir()
    for name in ("log.jsonl", "config.yaml"):
        shutil.copy(runs["wide"] / name, weightless / name)
    assert read_run(weightless).flops_per_step == read_run(runs["wide"]).flops_per_step
    assert read_run(weightless, frame_shape=[64, 128]).flops_per_step > read_run(weightless).flops_per_step


def test_runs_it_cannot_read_are_refused_before_anything_is_written(runs, tmp_path, capsys):
    old = tmp_path / "old"  # evaluated before the held-out loss existed
    old.mkdir()
    shutil.copy(runs["small"] / "config.yaml", old / "config.yaml")
    lines = [json.loads(line) for line in (runs["small"] / "log.jsonl").read_text().splitlines()]
    for line in lines:
        line.get("eval", {}).pop("heldout_loss", None)
    (old / "log.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    png = tmp_path / "s.png"
    assert main(["scaling", str(runs["small"]), str(old), f"out={png}"]) == 2
    assert "no heldout_loss" in capsys.readouterr().err and not png.exists()
    assert main(["scaling", str(tmp_path / "missing"), f"out={png}"]) == 2
    assert "neither last.safetensors nor config.yaml" in capsys.readouterr().err
    assert main(["scaling", str(runs["small"]), "out=s.gif"]) == 2
