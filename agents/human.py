"""A person at the keyboard: which keys mean which Craft2D action, and a controller that turns key events into one
action per game tick (a key tapped between two ticks still counts; a held key repeats at the game's rate)."""

from __future__ import annotations

import os

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
import pygame  # noqa: E402

# The bindings are the game's (Craft2DEnv.get_keys_to_action gives them too): read from it, re-exported here.
from worldsim.envs.craft2d.keys import (  # noqa: E402, F401
    HELP, JUMP_KEYS, LEFT_KEYS, RIGHT_KEYS, TOOL_KEYS, action_for, keys_to_action,
)


class KeyboardController:
    """Feed it pygame events; `action()` once per tick gives the action for the keys held or tapped since the last tick."""

    def __init__(self):
        self.held: set[int] = set()
        self.tapped: set[int] = set()

    def handle(self, event) -> None:
        if event.type == pygame.KEYDOWN:
            self.held.add(event.key)
            self.tapped.add(event.key)
        elif event.type == pygame.KEYUP:
            self.held.discard(event.key)

    def action(self) -> int:
        action = action_for(self.held | self.tapped)
        self.tapped.clear()
        return action

    def reset(self) -> None:
        self.held.clear()
        self.tapped.clear()
