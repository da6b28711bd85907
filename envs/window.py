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

    def close(self) -> None:
        if self._window is not None:
            import pygame

            pygame.display.quit()
            self._window = self._clock = None


class RendersFrames:
    """render() and close() for an env that keeps its last frame in `_frame`: rgb_array returns a copy, human shows it
    in a FrameWindow titled `window_caption`, scaled by `window_scale` and paced to metadata["render_fps"]."""

    window_caption = "worldsim"
    render_mode: str | None
    window_scale: int
    _frame: np.ndarray | None
    _window: FrameWindow | None = None

    def render(self):
        if self._frame is None:
            from gymnasium.error import ResetNeeded

            raise ResetNeeded(f"{type(self).__name__}.render() was called before reset(): call env.reset() first")
        if self.render_mode == "rgb_array":
            return self._frame.copy()
        if self.render_mode == "human":
            self._show(tick=False)  # step() already showed this frame and kept the pace
        return None

    def close(self):
        if self._window is not None:
            self._window.close()
            self._window = None

    def _show(self, tick: bool = True) -> None:
        if self._window is None:
            self._window = FrameWindow(self.window_caption, self.window_scale, self.metadata["render_fps"])
        self._window.show(self._frame, tick)
