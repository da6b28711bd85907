"""Frames to GIF, MP4 or PNG files, written to a temporary name and renamed (a crash never leaves half a file)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from worldsim.io import atomic_path

FORMATS = (".gif", ".mp4")


GAP = 4  # white pixels between two views side by side


def side_by_side(frames: list[np.ndarray]) -> np.ndarray:
    """One frame, or two (H, W, 3) frames left and right of a white gap: the dream beside the real game."""
    if len(frames) == 1:
        return frames[0]
    gap = np.full((frames[0].shape[0], GAP, 3), 255, np.uint8)
    return np.concatenate([frames[0], gap, frames[1]], axis=1)


def upscale(frame: np.ndarray, scale: int) -> np.ndarray:
    """(H, W, 3) -> (H*scale, W*scale, 3), nearest neighbour: pixel art stays sharp."""
    return frame.repeat(scale, axis=0).repeat(scale, axis=1) if scale > 1 else frame


def grid(frames: list[np.ndarray], columns: int) -> np.ndarray:
    """Equal-sized (H, W, 3) frames tiled row by row, `columns` a row, white gaps between: a contact sheet."""
    h, w, _ = frames[0].shape
    rows = -(-len(frames) // columns)
    sheet = np.full((rows * (h + GAP) - GAP, columns * (w + GAP) - GAP, 3), 255, np.uint8)
    for i, f in enumerate(frames):
        r, c = divmod(i, columns)
        sheet[r * (h + GAP):r * (h + GAP) + h, c * (w + GAP):c * (w + GAP) + w] = f
    return sheet


def write_png(path: str | Path, image: np.ndarray) -> Path:
    """Write a uint8 (H, W, 3) image as a PNG."""
    from PIL import Image

    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"out={str(path)!r}: expected a file name ending in .png")
    with atomic_path(path, suffix=".png") as tmp:
        Image.fromarray(np.ascontiguousarray(image)).save(tmp)
    return path


def write_video(path: str | Path, frames: list[np.ndarray] | np.ndarray, fps: float) -> Path:
    """Write uint8 (H, W, 3) frames as a looping GIF (Pillow) or an MP4 (moviepy), chosen by the suffix."""
    path = Path(path)
    if path.suffix.lower() not in FORMATS:
        raise ValueError(f"out={str(path)!r}: expected a file name ending in one of {FORMATS}")
    if len(frames) == 0:
        raise ValueError("no frames to write")
    if fps <= 0:
        raise ValueError(f"fps={fps}: expected a positive frame rate")
    with atomic_path(path, suffix=path.suffix) as tmp:
        if path.suffix.lower() == ".gif":
            from PIL import Image

            images = [Image.fromarray(np.ascontiguousarray(f)) for f in frames]
            images[0].save(tmp, save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0,
                           optimize=False)
        else:
            try:
                from moviepy import ImageSequenceClip
            except ImportError:
                raise ImportError("writing MP4 needs moviepy: pip install 'worldsim[video]', or write a .gif") from None
            ImageSequenceClip([np.ascontiguousarray(f) for f in frames], fps=fps).write_videofile(
                str(tmp), codec="libx264", audio=False, logger=None)
    return path
