"""A person at the keyboard: key bindings, the per-tick controller, and gymnasium's play loop run headless."""

from __future__ import annotations

import warnings

import gymnasium as gym
import pygame
import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # "matplotlib is not installed": only play_plot needs it
    from gymnasium.utils.play import play

from worldsim.agents.human import KeyboardController, action_for, keys_to_action
from worldsim.envs.craft2d import Action

from conftest import ENV_ID

A = Action


@pytest.mark.parametrize(("keys", "action"), [
    (set(), A.NOOP),
    ({pygame.K_a}, A.LEFT),
    ({pygame.K_LEFT}, A.LEFT),
    ({pygame.K_d}, A.RIGHT),
    ({pygame.K_RIGHT}, A.RIGHT),
    ({pygame.K_w}, A.JUMP),
    ({pygame.K_SPACE}, A.JUMP),
    ({pygame.K_d, pygame.K_w}, A.JUMP_RIGHT),
    ({pygame.K_a, pygame.K_UP}, A.JUMP_LEFT),
    ({pygame.K_a, pygame.K_d}, A.NOOP),  # opposite directions cancel
    ({pygame.K_a, pygame.K_d, pygame.K_w}, A.JUMP),
    ({pygame.K_j}, A.MINE),
    ({pygame.K_u}, A.MINE_UP),
    ({pygame.K_s}, A.MINE_DOWN),
    ({pygame.K_DOWN}, A.MINE_DOWN),
    ({pygame.K_k}, A.PLACE),
    ({pygame.K_l}, A.PLACE_DOWN),
    ({pygame.K_q}, A.NEXT_BLOCK),
    ({pygame.K_TAB}, A.NEXT_BLOCK),
    ({pygame.K_j, pygame.K_d}, A.MINE),  # a tool key wins over movement
])
def test_action_for(keys, action):
    got = action_for(keys)
    assert got == action and type(got) is int


def _key(kind: int, key: int) -> pygame.event.Event:
    return pygame.event.Event(kind, key=key)


def test_controller_counts_a_tap_between_ticks_once():
    c = KeyboardController()
    c.handle(_key(pygame.KEYDOWN, pygame.K_j))
    c.handle(_key(pygame.KEYUP, pygame.K_j))
    assert c.action() == A.MINE
    assert c.action() == A.NOOP


def test_controller_repeats_held_keys_and_combines_taps():
    c = KeyboardController()
    c.handle(_key(pygame.KEYDOWN, pygame.K_a))
    assert [c.action() for _ in range(3)] == [A.LEFT] * 3
    c.handle(_key(pygame.KEYDOWN, pygame.K_w))
    c.handle(_key(pygame.KEYUP, pygame.K_w))  # a tapped jump while walking left
    assert c.action() == A.JUMP_LEFT
    assert c.action() == A.LEFT
    c.handle(_key(pygame.KEYUP, pygame.K_a))
    assert c.action() == A.NOOP
    c.handle(_key(pygame.KEYDOWN, pygame.K_d))
    c.handle(pygame.event.Event(pygame.MOUSEBUTTONDOWN, button=1, pos=(0, 0)))  # other events are ignored
    c.reset()
    assert c.action() == A.NOOP


def test_keys_to_action_is_valid_for_play():
    env = gym.make(ENV_ID)
    mapping = env.unwrapped.get_keys_to_action()
    assert mapping == keys_to_action()
    for keys, action in mapping.items():
        assert isinstance(keys, tuple) and keys and all(type(k) is int for k in keys)
        assert keys == tuple(sorted(keys))  # play() looks up sorted tuples of held keys
        assert env.action_space.contains(action)
        assert action == action_for(set(keys))
    assert mapping[tuple(sorted((pygame.K_d, pygame.K_w)))] == A.JUMP_RIGHT
    assert mapping[(pygame.K_a,)] == A.LEFT and mapping[(pygame.K_j,)] == A.MINE
    assert set(mapping.values()) == set(range(1, len(Action)))  # every action but noop has a key


def test_play_runs_headless_and_quits():
    env = gym.make(ENV_ID, render_mode="rgb_array")
    steps = []

    def callback(obs_t, obs_tp1, action, reward, terminated, truncated, info):
        steps.append(action)
        if len(steps) > 50:  # a safety net: the posted QUIT was lost
            raise RuntimeError("play() kept running after a QUIT event")

    pygame.init()
    pygame.event.post(pygame.event.Event(pygame.QUIT))
    play(env, keys_to_action=env.unwrapped.get_keys_to_action(), fps=30, callback=callback, seed=0)
    assert steps == []  # it quit on the first pass through the event queue, before any step
    assert not pygame.get_init()
    env.close()
