"""`worldsim play` headless: scripted key events drive the real game, the dream, and both side by side (ghost)."""

from __future__ import annotations

import numpy as np
import pygame
import pytest
from PIL import Image

from worldsim.envs.craft2d import Craft2DEnv
from worldsim.cli import main
from worldsim.data.loader import ClipDataset
from worldsim.play import PlayArgs, play

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

    result = play(PlayArgs(mode="real", seed=0, fps=0, max_ticks=5, scale=2), on_tick=script)
    assert result.ticks == 5 and result.episodes == 1 and result.last_action == "noop" and result.agreement == []


def test_ghost_plays_both_from_one_start_and_saves_on_ctrl_s(ckpt, tmp_path):
    def script(tick):
        if tick == 0:
            _key(pygame.K_d)
        if tick == 4:
            _key(pygame.K_s, mod=pygame.KMOD_CTRL)  # save; plain S would mine down
        if tick == 6:
            _key(pygame.K_ESCAPE)

    result = play(PlayArgs(mode="ghost", checkpoint=ckpt, seed=1, fps=0, scale=2, save_dir=str(tmp_path)),
                  on_tick=script)
    assert result.ticks == 6 and len(result.agreement) == 6 and all(0 <= a <= 1 for a in result.agreement)
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
    result = play(PlayArgs(mode="dream", checkpoint=ckpt, image=str(tmp_path / "start.png"), fps=0, max_ticks=2,
                           scale=1, screenshot=str(shots)))
    assert result.ticks == 2 and shots.exists()


def test_cli_play_modes_and_bad_input(ckpt, tmp_path, capsys):
    assert main(["play", "--ghost", "--checkpoint", ckpt, "--max-ticks", "2", "--fps", "0", "--scale", "1"]) == 0
    assert "cells agreeing with the real game" in capsys.readouterr().out
    assert main(["play", "--max-ticks", "1", "--fps", "0", "--scale", "1"]) == 0  # the shipped model, dreamed
    out = capsys.readouterr().out
    assert "played 1 ticks" in out and "playing the real game" not in out
    assert main(["play", "--ghost", "--checkpoint", ckpt, "--image", "x.png"]) == 2
    assert "--image" in capsys.readouterr().err
    cartpole = str(write_world(tmp_path / "cp.safetensors", env="CartPole-v1"))
    assert main(["play", "--ghost", "--checkpoint", cartpole, "--max-ticks", "1"]) == 2
    assert "CartPole-v1" in capsys.readouterr().err
