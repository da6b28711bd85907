"""A person at the keyboard: which keys mean which Craft2D action, a controller that turns key events into one
action per game tick (a key tapped between two ticks still counts; a held key repeats at the game's rate), and the
human agent that plays through the agents' protocol (`worldsim collect agent=human`)."""

from __future__ import annotations

import os
import sys

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


class HumanAgent:
    """A person playing through the agents' protocol, so `worldsim collect agent=human` records their play as a
    dataset: `act` shows the frame in a pygame window, waits one tick (`fps` a second, the game's pace) and returns
    the action for the keys held or tapped during it (Craft2D's keys, `HELP`). ESC or closing the window stops the
    collection (KeyboardInterrupt: the shards already written are kept, so shard_steps=1 keeps every finished
    episode). It needs a display, and the process's one window: workers=1."""

    name = "human"

    def __init__(self, action_space, env_id: str | None = None, fps: float = 10.0, scale: int = 8):
        import multiprocessing

        from worldsim.envs.craft2d.tiles import N_ACTIONS, is_craft2d

        if env_id is not None and not is_craft2d(env_id):
            raise ValueError(f"agent=human plays with Craft2D's keys, not {env_id!r}'s: record another game with "
                             "gymnasium.utils.play and your own key map")
        if getattr(action_space, "n", None) != N_ACTIONS:
            raise ValueError(f"agent=human needs Craft2D's Discrete({N_ACTIONS}) action space, got {action_space}")
        if multiprocessing.current_process().name != "MainProcess":
            raise ValueError("agent=human plays in the main process, where the window is: collect with workers=1")
        problem = display_problem()
        if problem:
            raise ValueError(f"agent=human: {problem}")
        if fps <= 0 or scale < 1:
            raise ValueError(f"agent=human fps={fps}, scale={scale}: expected fps > 0 and scale >= 1")
        self.fps, self.scale, self.current = fps, scale, self.name
        self.controller = KeyboardController()
        self._window = self._clock = None

    def reset(self, seed: int | None = None) -> None:
        self.controller.tapped.clear()  # keys still held go on acting, as in `worldsim play` when an episode ends

    def act(self, obs, info) -> int:
        h, w = obs.shape[:2]
        if self._window is None or pygame.display.get_surface() is not self._window:
            pygame.display.init()
            pygame.display.set_caption("worldsim collect: you play (ESC stops; finished episodes are kept)")
            self._window = pygame.display.set_mode((w * self.scale, h * self.scale))
            self._clock = pygame.time.Clock()
        surface = pygame.surfarray.make_surface(obs.transpose(1, 0, 2))  # pygame wants (W, H, 3)
        self._window.blit(pygame.transform.scale(surface, self._window.get_size()), (0, 0))
        pygame.display.flip()
        self._clock.tick(self.fps)  # the tick: the keys pressed during it make this step's action
        for event in pygame.event.get():
            if event.type == pygame.QUIT or (event.type == pygame.KEYDOWN and event.key == pygame.K_ESCAPE):
                self.close()
                raise KeyboardInterrupt("the player pressed ESC")
            self.controller.handle(event)
        return self.controller.action()

    def close(self) -> None:
        if self._window is not None:
            pygame.display.quit()
            self._window = self._clock = None


def display_problem() -> str | None:
    """Why nobody could see a window here, or None. SDL's dummy and offscreen drivers draw to memory, as the tests
    do: fine, since a collection ends by its step budget. On Linux a window needs X or Wayland."""
    driver = os.environ.get("SDL_VIDEODRIVER", "").lower()
    if sys.platform.startswith("linux") and not driver and not (os.environ.get("DISPLAY")
                                                                  or os.environ.get("WAYLAND_DISPLAY")):
        return ("no display to open a window on (DISPLAY and WAYLAND_DISPLAY are unset): collect on a machine with a "
                "screen, or record with `worldsim play`, whose Ctrl+S saves the last seconds as a dataset")
    return None
