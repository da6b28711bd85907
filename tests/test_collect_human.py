"""`worldsim collect agent=human`: a person's play recorded as a dataset through the agents' protocol, keys read from
a pygame window (SDL's dummy driver here, with the key events posted), refused without a display or with workers > 1."""

from __future__ import annotations

import numpy as np
import pygame
import pytest

from worldsim.agents.base import agent_names, make_agent
from worldsim.cli import main
from worldsim.data.collect import CollectConfig, collect
from worldsim.data.shards import open_shard, shard_paths
from worldsim.envs.craft2d import Action

from conftest import ENV_ID

SPACE = __import__("gymnasium").spaces.Discrete(len(Action))


def _config(out, **kw) -> CollectConfig:
    return CollectConfig(out=str(out), agent="human", max_episode_steps=5, env_kwargs={"world_width": 64},
                         agent_options={"fps": 1000.0}, **kw)


def test_a_persons_keys_are_recorded_as_the_actions(tmp_path):
    assert "human" in agent_names()
    pygame.display.init()
    pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=pygame.K_d, mod=0))  # held from the first tick on
    collect(_config(tmp_path, steps=12), quiet=True)
    actions = np.concatenate([open_shard(p).arrays["actions"] for p in shard_paths(tmp_path)])
    moves = actions[actions >= 0]  # -1 marks an episode's first frame
    assert len(moves) >= 8 and set(moves.tolist()) == {int(Action.RIGHT)}
    assert {e["agent"] for p in shard_paths(tmp_path) for e in open_shard(p).meta["episodes"]} == {"human"}


def test_esc_stops_and_keeps_the_finished_episodes(tmp_path):
    pygame.init()
    pygame.time.set_timer(pygame.event.Event(pygame.KEYDOWN, key=pygame.K_ESCAPE, mod=0), 300, loops=1)
    with pytest.raises(KeyboardInterrupt, match="complete shards are kept"):
        collect(_config(tmp_path, steps=10 ** 6, shard_steps=1), quiet=True)
    kept = shard_paths(tmp_path)
    assert kept and all(open_shard(p).rows == 6 for p in kept)  # whole episodes of 5 steps and a first frame


def test_refused_without_a_display_or_with_several_workers(tmp_path, monkeypatch, capsys):
    assert main(["collect", "agent=human", "workers=2", f"out={tmp_path / 'a'}"]) == 2
    assert "workers=2: expected 1 with agent=human" in capsys.readouterr().err
    with pytest.raises(ValueError, match="agent=human plays with Craft2D's keys"):
        make_agent("human", SPACE, "CartPole-v1")
    monkeypatch.setenv("SDL_VIDEODRIVER", "")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.raises(ValueError, match="no display to open a window on"):
        make_agent("human", SPACE, ENV_ID)
    assert main(["collect", "agent=human", f"out={tmp_path / 'b'}"]) == 2
    assert "no display" in capsys.readouterr().err and not (tmp_path / "b").exists()  # before any work
