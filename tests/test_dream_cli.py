"""`worldsim dream`: a headless rollout to GIF/MP4, the real game beside the dream for Craft2D checkpoints."""

from __future__ import annotations

import pytest
from PIL import Image

from worldsim.cli import main

from test_dream import write_world


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return str(write_world(tmp_path_factory.mktemp("dream_cli") / "tiny.safetensors"))


def test_dream_writes_a_gif_beside_the_real_game(ckpt, tmp_path, capsys):
    out = tmp_path / "rollout.gif"
    assert main(["dream", "--checkpoint", ckpt, "--steps", "6", "--out", str(out), "--scale", "2"]) == 0
    gif = Image.open(out)
    assert gif.n_frames == 7 and gif.size == (2 * (64 + 4 + 64), 2 * 64)  # dream | gap | real, doubled
    said = capsys.readouterr().out
    assert "6 steps" in said and "cells matching the real game" in said


def test_dream_alone_and_as_mp4(ckpt, tmp_path):
    assert main(["dream", "--checkpoint", ckpt, "--steps", "3", "--agent", "random", "--no-real",
                 "--out", str(tmp_path / "alone.gif"), "--scale", "1"]) == 0
    assert Image.open(tmp_path / "alone.gif").size == (64, 64)
    assert main(["dream", "--checkpoint", ckpt, "--steps", "3", "--out", str(tmp_path / "r.mp4")]) == 0
    assert (tmp_path / "r.mp4").stat().st_size > 0


def test_dream_names_bad_input(ckpt, tmp_path, capsys):
    assert main(["dream", "--checkpoint", ckpt, "--out", str(tmp_path / "r.avi")]) == 2
    assert "r.avi" in capsys.readouterr().err
    assert main(["dream", "--checkpoint", str(tmp_path / "none.safetensors")]) == 2
    assert "none.safetensors" in capsys.readouterr().err
    assert not list(tmp_path.glob("*"))  # nothing written
