"""`worldsim dream`: a headless rollout to GIF/MP4, the real game beside the dream for Craft2D checkpoints."""

from __future__ import annotations

import pytest
from PIL import Image

from worldsim.cli import main
from worldsim.envs.craft2d import Craft2DEnv, Scenario
from worldsim.rollout import DreamConfig, agreement, summarise

from test_dream import write_world


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return str(write_world(tmp_path_factory.mktemp("dream_cli") / "tiny.safetensors"))


def test_dream_writes_a_gif_beside_the_real_game(ckpt, tmp_path, capsys):
    out = tmp_path / "rollout.gif"
    assert main(["dream", f"checkpoint={ckpt}", "steps=6", f"out={out}", "scale=2"]) == 0
    gif = Image.open(out)
    assert gif.n_frames == 7 and gif.size == (2 * (64 + 4 + 64), 2 * 64)  # dream | gap | real, doubled
    said = capsys.readouterr().out
    assert "6 steps" in said and "same sprite, same light" in said and "the sprites alone" in said


def test_dream_alone_and_as_mp4(ckpt, tmp_path):
    assert main(["dream", f"checkpoint={ckpt}", "steps=3", "agent=random", "real=false",
                 f"out={tmp_path / 'alone.gif'}", "scale=1"]) == 0
    assert Image.open(tmp_path / "alone.gif").size == (64, 64)
    pytest.importorskip("moviepy", reason="MP4 needs the [video] extra")
    assert main(["dream", f"checkpoint={ckpt}", "steps=3", f"out={tmp_path / 'r.mp4'}"]) == 0
    assert (tmp_path / "r.mp4").stat().st_size > 0


def test_dream_alone_defaults_to_an_agent_that_needs_no_game(ckpt, tmp_path, capsys):
    # the explorer reads the real game's state (info["player_pos"]): without the game it used to crash with KeyError
    assert main(["dream", f"checkpoint={ckpt}", "steps=2", "real=false", f"out={tmp_path / 'a.gif'}"]) == 0
    assert main(["dream", f"checkpoint={ckpt}", "real=false", "agent=explorer", f"out={tmp_path / 'b.gif'}"]) == 2
    assert "agent=random" in capsys.readouterr().err
    cartpole = str(write_world(tmp_path / "cp.safetensors", env="CartPole-v1"))
    assert main(["dream", f"checkpoint={cartpole}", "agent=explorer", f"out={tmp_path / 'c.gif'}"]) == 2
    assert "CartPole-v1" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.glob("*.gif")) == ["a.gif"]


@pytest.mark.parametrize("setting, message", [
    ("out=r.avi", "out='r.avi'"),
    ("out=/proc/worldsim/r.gif", "/proc"),  # a folder nobody can write in, root included
    ("fps=-5", "fps=-5"),
    ("fps=0", "fps=0"),
    ("steps=0", "steps=0"),
    ("scale=0", "scale=0"),
    ("denoise_steps=0", "denoise_steps=0"),
    ("agent=chess", "agent='chess'"),
])
def test_dream_refuses_bad_settings_before_the_rollout(ckpt, setting, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["dream", f"checkpoint={ckpt}", setting]) == 2
    assert message in capsys.readouterr().err
    assert not list(tmp_path.glob("*"))  # nothing written


def test_out_inside_a_file_is_refused(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="is a file"):
        DreamConfig(out=str(tmp_path / "file" / "r.gif"))


def test_dream_names_a_missing_checkpoint(tmp_path, capsys):
    assert main(["dream", f"checkpoint={tmp_path / 'none.safetensors'}", f"out={tmp_path / 'r.gif'}"]) == 2
    assert "none.safetensors" in capsys.readouterr().err
    assert not list(tmp_path.glob("*"))


def test_agreement_counts_the_light_a_person_sees():
    """Night beside day used to score ~100% (the decoder reads sprites at any light): now no cell looks alike."""
    env = Craft2DEnv()
    room = "\n.....\n.>...\n#####\n"
    day = env.reset(options={"scenario": Scenario(room, time_of_day=0.0)})[0]
    night = env.reset(options={"scenario": Scenario(room, time_of_day=0.75)})[0]
    same = agreement(day, day)
    assert (same.sprites, same.seen, same.hud) == (1.0, 1.0, True)
    apart = agreement(night, day)
    assert apart.light == (5, 0) and apart.sprites > 0.9 and apart.seen == 0.0
    hurt = env.reset(options={"scenario": Scenario(room, time_of_day=0.0, health=2)})[0]
    differs = agreement(hurt, day)
    assert not differs.hud and differs.sprites < 1.0  # the hearts of the HUD row count as cells too
    summary = summarise([same, apart])
    assert (summary["seen"], summary["light_differs"], summary["hud_differs"]) == (0.5, 0.5, 0.0)
