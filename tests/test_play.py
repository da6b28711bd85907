"""`worldsim play` headless: scripted key events drive the real game, the dream, and both side by side (ghost)."""

from __future__ import annotations

import sys

import numpy as np
import pygame
import pytest
from PIL import Image

from worldsim.envs.craft2d import Craft2DEnv
from worldsim.cli import main
from worldsim.data.loader import ClipDataset
from worldsim.play import PlayConfig, display_problem, play

from test_dream import write_world


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return str(write_world(tmp_path_factory.mktemp("play") / "tiny.safetensors"))


def _key(key, down=True, mod=0):
    pygame.event.post(pygame.event.Event(pygame.KEYDOWN if down else pygame.KEYUP, key=key, mod=mod))


def test_real_game_follows_held_keys():
    def script(tick):
        if tick == 0:
            _key(pygame.K_d)  # held: right every tick
        if tick == 3:
            _key(pygame.K_d, down=False)

    result = play(PlayConfig(mode="real", seed=0, fps=0, steps=5, scale=2), on_tick=script)
    assert result.ticks == 5 and result.episodes == 1 and result.last_action == "noop" and result.agreement == []


def test_ghost_plays_both_from_one_start_and_saves_on_ctrl_s(ckpt, tmp_path):
    def script(tick):
        if tick == 0:
            _key(pygame.K_d)
        if tick == 4:
            _key(pygame.K_s, mod=pygame.KMOD_CTRL)  # save; plain S would mine down
        if tick == 6:
            _key(pygame.K_ESCAPE)

    result = play(PlayConfig(mode="ghost", checkpoint=ckpt, seed=1, fps=0, scale=2, save_dir=str(tmp_path)),
                  on_tick=script)
    assert result.ticks == 6 and len(result.agreement) == 6
    assert all(0 <= a.seen <= a.sprites <= 1 for a in result.agreement)
    gif, episode = result.saved
    frames = Image.open(gif)
    assert frames.size == (64 + 4 + 64, 64) and frames.n_frames == 5  # the start and 4 ticks, dream | real
    data = ClipDataset(episode, 1, "all", captions=False)
    rows = data.get(np.arange(len(data)))
    assert len(data) == 5 and rows.actions[0, 0] == -1 and (rows.actions[1:, 0] == 2).all()  # right, as held
    assert data.manifest["env"] == "worldsim/Dream-v0"


def test_dream_starts_from_a_picture(ckpt, tmp_path):
    frame = Craft2DEnv().reset(seed=5)[0]
    Image.fromarray(frame).save(tmp_path / "start.png")
    shots = tmp_path / "shot.png"
    result = play(PlayConfig(mode="dream", checkpoint=ckpt, image=str(tmp_path / "start.png"), fps=0, steps=2,
                           scale=1, screenshot=str(shots)))
    assert result.ticks == 2 and shots.exists()


def test_dream_starts_from_a_prompt_and_a_prompt_is_for_the_dream_alone(tmp_path, capsys):
    text = str(write_world(tmp_path / "text.safetensors", vocab=("biome", "day", "desert", "night", "snow")))
    result = play(PlayConfig(mode="dream", checkpoint=text, prompt="snowy night", fps=0, steps=2, scale=1,
                             screenshot=str(tmp_path / "shot.png")))
    assert result.ticks == 2 and (tmp_path / "shot.png").exists()
    assert main(["play", "mode=ghost", f"checkpoint={text}", "prompt=snowy night", "steps=1"]) == 2
    err = capsys.readouterr().err
    assert "prompt=" in err and "the real game cannot start from text" in err
    assert main(["dream", f"checkpoint={text}", "prompt=desert at night", "steps=2", f"out={tmp_path / 'd.gif'}"]) == 0
    assert "started from the caption 'night, desert biome'" in capsys.readouterr().out


def test_cli_play_modes_and_bad_input(ckpt, tmp_path, capsys):
    assert main(["play", "mode=ghost", f"checkpoint={ckpt}", "steps=2", "fps=0", "scale=1"]) == 0
    said = capsys.readouterr().out
    assert "same sprite, same light" in said and "light level differing on" in said
    assert main(["play", "steps=1", "fps=0", "scale=1"]) == 0  # the shipped model, dreamed
    out = capsys.readouterr().out
    assert "played 1 ticks" in out and "playing the real game" not in out
    frame = Craft2DEnv().reset(seed=5)[0]
    Image.fromarray(frame).save(tmp_path / "x.png")
    assert main(["play", "mode=ghost", f"checkpoint={ckpt}", f"image={tmp_path / 'x.png'}", "steps=1"]) == 2
    assert "image=" in capsys.readouterr().err
    assert main(["play", "mode=dream", f"checkpoint={ckpt}", f"image={tmp_path / 'none.png'}", "steps=1"]) == 2
    assert "none.png" in capsys.readouterr().err
    cartpole = str(write_world(tmp_path / "cp.safetensors", env="CartPole-v1"))
    assert main(["play", "mode=ghost", f"checkpoint={cartpole}", "steps=1"]) == 2
    assert "CartPole-v1" in capsys.readouterr().err
    assert main(["play", "mode=ghost", f"checkpoint={ckpt}", "view_width=12", "steps=1"]) == 0  # any view that tiles
    assert main(["play", "mode=dream", f"checkpoint={ckpt}", "view_width=11", "steps=1"]) == 2
    assert "view_width=11" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["mode=chess"], "mode='chess'"),
    (["scale=0"], "scale=0"),
    (["fps=-1"], "fps=-1"),
    (["steps=0"], "steps=0"),
    (["save_seconds=0"], "save_seconds=0"),
    (["view_height=1"], "view_height=1"),
    (["denoise_steps=0"], "denoise_steps=0"),
    (["steps=1", "screenshot=shot.jpg"], "screenshot='shot.jpg'"),
])
def test_play_refuses_bad_settings_before_opening_anything(argv, message, capsys):
    assert main(["play", *argv]) == 2
    assert message in capsys.readouterr().err


def test_play_without_a_display_says_so_and_what_to_do(monkeypatch, capsys):
    monkeypatch.delenv("SDL_VIDEODRIVER")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr(sys, "platform", "linux")
    assert main(["play", "mode=real"]) == 2
    err = capsys.readouterr().err
    assert "no display" in err and "worldsim dream out=rollout.gif" in err
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")  # the tests' own driver: a window drawn to memory
    assert main(["play", "mode=real"]) == 2  # ... which would never end without steps=
    assert "SDL_VIDEODRIVER=dummy" in capsys.readouterr().err
    assert main(["play", "mode=real", "steps=1", "fps=0", "scale=1"]) == 0
    monkeypatch.setenv("SDL_VIDEODRIVER", "")
    monkeypatch.setenv("DISPLAY", ":0")
    assert display_problem(PlayConfig()) is None  # a display is there: play would open its window
