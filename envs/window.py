"""A pygame window that shows an env's frames for render_mode="human", scaled up and paced to render_fps."""

from __future__ import annotations

import numpy as np


class FrameWindow:
    """`FrameWindow("Craft2D", scale=6, fps=10).show(frame)`; opened on the first frame, closed by close()."""

    def __init__(self, caption: str, scale: int, fps: float):
        self.caption, self.scale, self.fps = caption, scale, fps
        self._window = self._clock = None

    def show(self, frame: np.ndarray, tick: bool = True) -> None:
        import pygame

        h, w, _ = frame.shape
        # pygame has one display: another env's close() quits it under us, so reopen the window when it is gone
        if self._window is None or pygame.display.get_surface() is not self._window:
            pygame.display.init()
            pygame.display.set_caption(self.caption)
            self._window = pygame.display.set_mode((w * self.scale, h * self.scale))
            self._clock = pygame.time.Clock()
        surface = pygame.surfarray.make_surface(frame.transpose(1, 0, 2))  # pygame wants (W, H, 3)
        self._window.blit(pygame.transform.scale(surface, self._window.get_size()), (0, 0))
        pygame.event.pump()
        pygame.display.flip()
        if tick:
            self._clock.tick(self.fps)

    @property
    def is_open(self) -> bool:
        return self._window is not None

    def close(self) -> None:
        if self._window is not None:
            import pygame

            pygame.display.quit()
            self._window = self._clock = None
