"""`worldsim play`: a person plays in a pygame window.

The game runs at a fixed tick rate whatever the keys do (day, animals and sand keep moving); each tick takes the
action for the keys held or tapped since the last tick, so holding a key repeats it at the game's rate.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
import pygame  # noqa: E402

from agents.human import HELP, KeyboardController  # noqa: E402
from envs.craft2d import Craft2DEnv  # noqa: E402
from envs.craft2d.tiles import ACTION_MEANINGS  # noqa: E402

PANEL_LINES = 5  # text lines under the game view
BACKGROUND = (24, 24, 28)
TEXT = (230, 230, 230)


@dataclass(frozen=True)
class PlayArgs:
    seed: int | None = None  # world and start; None: a new world every run
    scale: int = 8  # window pixels per frame pixel
    fps: float = 10.0  # game ticks per second; 0: as fast as possible (tests)
    max_ticks: int | None = None  # stop after this many ticks (tests, demos); None: until ESC or the window closes
    view_width: int = 8  # tiles, as in Craft2DEnv
    view_height: int = 8
    screenshot: str | None = None  # save the window as a PNG when play ends


@dataclass
class PlayResult:
    ticks: int
    episodes: int
    total_reward: float
    last_info: dict
    last_action: str


def _wrap(text: str, font: pygame.font.Font, width: int) -> list[str]:
    lines, line = [], ""
    for word in text.split(" "):
        trial = f"{line} {word}".strip()
        if font.size(trial)[0] > width and line:
            lines.append(line)
            line = word
        else:
            line = trial
    return lines + [line]


def play_real(args: PlayArgs = PlayArgs()) -> PlayResult:
    """Play Craft2D with the keyboard. R restarts, P pauses, ESC quits. Returns what happened, for tests."""
    if args.scale < 1:
        raise ValueError(f"scale={args.scale}: expected an integer >= 1")
    env = Craft2DEnv(render_mode="rgb_array", view_width=args.view_width, view_height=args.view_height)
    obs, info = env.reset(seed=args.seed)
    h, w, _ = obs.shape
    pygame.display.init()
    pygame.font.init()
    font = pygame.font.Font(None, max(14, 2 * args.scale + 4))
    line_h = font.get_linesize()
    view_size = (w * args.scale, h * args.scale)
    window = pygame.display.set_mode((view_size[0], view_size[1] + PANEL_LINES * line_h + 8))
    pygame.display.set_caption("worldsim: Craft2D (real game)")
    clock = pygame.time.Clock()
    controller = KeyboardController()
    ticks, episodes, total, paused, running, action = 0, 1, 0.0, False, True, 0
    episode_return, status = 0.0, ""
    try:
        while running:
            for event in pygame.event.get():
                if event.type == pygame.QUIT or (event.type == pygame.KEYDOWN and event.key == pygame.K_ESCAPE):
                    running = False
                elif event.type == pygame.KEYDOWN and event.key == pygame.K_r:
                    obs, info = env.reset()
                    episodes, episode_return, status = episodes + 1, 0.0, "restarted"
                    controller.reset()
                elif event.type == pygame.KEYDOWN and event.key == pygame.K_p:
                    paused = not paused
                else:
                    controller.handle(event)
            if not running:
                break
            if not paused:
                action = controller.action()
                obs, reward, terminated, truncated, info = env.step(action)
                total += reward
                episode_return += reward
                status = ""
                if terminated or truncated:
                    status = f"game over (return {episode_return:g}): new world"
                    obs, info = env.reset()
                    episodes, episode_return = episodes + 1, 0.0
            _draw(window, font, line_h, view_size, obs, info, clock.get_fps(), episode_return,
                  "paused (P)" if paused else status)
            clock.tick(args.fps)
            ticks += 1
            if args.max_ticks is not None and ticks >= args.max_ticks:
                break
        if args.screenshot:
            pygame.image.save(window, args.screenshot)
    finally:
        env.close()
        pygame.display.quit()
    return PlayResult(ticks=ticks, episodes=episodes, total_reward=total, last_info=info,
                      last_action=ACTION_MEANINGS[action])


def _draw(window, font, line_h, view_size, obs, info, fps, episode_return, status) -> None:
    window.fill(BACKGROUND)
    surface = pygame.surfarray.make_surface(obs.transpose(1, 0, 2))  # pygame wants (W, H, 3)
    window.blit(pygame.transform.scale(surface, view_size), (0, 0))
    inv = " ".join(f"{k}:{v}" for k, v in info["inventory"].items()) or "empty"
    lines = [f"{fps:4.1f} fps  return {episode_return:g}  health {info['health']}/6  inventory {inv}",
             status or info["caption"]]
    lines += _wrap(HELP + ", R restart, P pause", font, view_size[0] - 8)
    for n, text in enumerate(lines[:PANEL_LINES]):
        window.blit(font.render(text, True, TEXT), (4, view_size[1] + 4 + n * line_h))
    pygame.display.flip()
