"""`worldsim restyle | connect | extend` on a dataset's clips and `worldsim features` end to end, on a tiny
random-weight Craft2D checkpoint: files written, the scores' shape and range, refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from worldsim.cli import main
from worldsim.edit import read_clip

from conftest import random_craft2d
from test_dream import write_world

VOCAB = ("biome", "day", "desert", "dusk", "forest", "left", "night", "of", "pig", "plains", "player", "right",
         "sheep", "snow")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return write_world(tmp_path_factory.mktemp("features") / "text.safetensors", vocab=VOCAB)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return random_craft2d(tmp_path_factory.mktemp("clips") / "data", 240, max_episode_steps=40, shard_steps=120)


def test_read_clip_takes_an_episode_by_id_and_names_a_missing_one(data):
    frames, actions = read_clip(data, 1, start=2, length=5)
    assert frames.shape == (5, 64, 64, 3) and actions.shape == (5,) and (actions >= 0).all()
    assert read_clip(data, 0)[1][0] == -1  # an episode's first frame: no action led to it
    with pytest.raises(ValueError, match="episode=99: not in"):
        read_clip(data, 99)
    with pytest.raises(ValueError, match="inside episode 1"):
        read_clip(data, 1, start=30, length=20)


@pytest.mark.parametrize("command, extra, frames", [
    ("restyle", ["prompt=snowy night", "strength=0.5"], 4),
    ("connect", ["to_episode=2", "transition=2"], 4 + 2 + 4),
    ("extend", ["prompt=desert at dawn", "transition=2"], 3 + 4),
])
def test_edit_commands_write_a_video(ckpt, data, tmp_path, capsys, command, extra, frames):
    out = tmp_path / f"{command}.gif"
    assert main([command, f"data={data}", "episode=1", "length=4", "steps=1", f"checkpoint={ckpt}", "scale=1",
                 f"out={out}", *extra]) == 0
    with Image.open(out) as gif:
        assert 2 <= gif.n_frames <= frames  # (Pillow merges identical neighbours: random weights make some)
        assert gif.size == ((64 * 2 + 4) if command == "restyle" else 64, 64)  # restyle: the clip beside it
    said = capsys.readouterr().out
    assert f"wrote {out}" in said and ("-> caption" in said) == ("prompt=" in " ".join(extra))
    assert f"wrote {out}, {frames} frames" in said


def test_features_measures_prompts_and_edits(ckpt, tmp_path, capsys):
    out = tmp_path / "features"
    assert main(["features", f"checkpoint={ckpt}", "seeds=1", "clips=2", "length=3", "transition=2",
                 f"out={out}"]) == 0
    results = json.loads((out / "features.json").read_text())
    assert set(results["adherence"]) >= {"phase", "biome", "entities"}
    for row in (results["adherence"][k] for k in ("phase", "biome")):
        assert 0.0 <= row["ceiling"] <= 1.0 and (np.isnan(row["score"]) or 0.0 <= row["score"] <= 1.0)
    assert set(results["restyle"]) == {"changed", "kept", "input_changed"}
    assert set(results["starts"]) == {"image_h1", "video_h1"} and all(0 <= v <= 1 for v in results["starts"].values())
    assert all(0.0 <= v <= 1.0 for v in [*results["restyle"].values(), *results["connect"].values()])
    assert results["connect"]["fade_arrival"] > 0.2  # a cross-fade heads for the goal (2/3 of the way here)
    with Image.open(out / "prompts.png") as sheet:
        assert sheet.size[0] > 4 * 128  # four biomes a row, model beside engine
    assert "## Restyle" in (out / "features.md").read_text() and "## Prompt adherence" in capsys.readouterr().out


def test_features_of_a_model_without_captions_is_refused_unless_only_connect(tmp_path, capsys):
    plain = write_world(tmp_path / "plain.safetensors")
    assert main(["features", f"checkpoint={plain}", f"out={tmp_path / 'f'}"]) == 2
    assert "trained without captions" in capsys.readouterr().err
    assert main(["features", f"checkpoint={plain}", "only=[connect]", "clips=2", "length=2", "transition=1",
                 f"out={tmp_path / 'f'}"]) == 0
