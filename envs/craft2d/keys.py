"""Which keys play which Craft2D action: the game's own bindings, as `Craft2DEnv.get_keys_to_action()` gives them to
`gymnasium.utils.play.play`. The keyboard agent (worldsim.agents.human) reads them from here, so the dependency runs
from the agent to the game, never back."""

from __future__ import annotations

import os

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
import pygame  # noqa: E402

from worldsim.envs.craft2d.tiles import Action  # noqa: E402

LEFT_KEYS = (pygame.K_LEFT, pygame.K_a)
RIGHT_KEYS = (pygame.K_RIGHT, pygame.K_d)
JUMP_KEYS = (pygame.K_UP, pygame.K_w, pygame.K_SPACE)
# One key per tool action; these win over movement when held together.
TOOL_KEYS = {
    pygame.K_j: Action.MINE, pygame.K_u: Action.MINE_UP, pygame.K_s: Action.MINE_DOWN, pygame.K_DOWN: Action.MINE_DOWN,
    pygame.K_k: Action.PLACE, pygame.K_l: Action.PLACE_DOWN, pygame.K_q: Action.NEXT_BLOCK,
    pygame.K_TAB: Action.NEXT_BLOCK,
}
HELP = "arrows/WASD move, W/up/space jump, J mine, U mine up, S/down mine down, K place, L place down, " \
       "Q/tab next block, ESC quit"


def action_for(keys: set[int]) -> int:
    """The action for a set of held pygame key codes."""
    for key, action in TOOL_KEYS.items():
        if key in keys:
            return int(action)
    left = any(k in keys for k in LEFT_KEYS)
    right = any(k in keys for k in RIGHT_KEYS)
    if left and right:  # opposite directions cancel
        left = right = False
    if any(k in keys for k in JUMP_KEYS):
        return int(Action.JUMP_LEFT if left else Action.JUMP_RIGHT if right else Action.JUMP)
    return int(Action.LEFT if left else Action.RIGHT if right else Action.NOOP)


def keys_to_action() -> dict[tuple[int, ...], int]:
    """Every single key and every move+jump pair, for `gymnasium.utils.play.play`."""
    mapping: dict[tuple[int, ...], int] = {}
    for key in (*LEFT_KEYS, *RIGHT_KEYS, *JUMP_KEYS, *TOOL_KEYS):
        mapping[(key,)] = action_for({key})
    for jump in JUMP_KEYS:
        for side in (*LEFT_KEYS, *RIGHT_KEYS):
            mapping[tuple(sorted((jump, side)))] = action_for({jump, side})
    return mapping
