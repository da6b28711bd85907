"""Frame metrics shared by evaluation and probes: PSNR, and Craft2D tile accuracy through the exact decoder."""

from __future__ import annotations

import numpy as np


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB between uint8 frame arrays of the same shape (inf when identical)."""
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0 ** 2 / mse))


def tile_accuracy(pred: np.ndarray, truth: np.ndarray, tile_size: int = 8) -> float:
    """Fraction of cells (tiles, entities, HUD glyphs) of `pred` frames that decode to the same atlas cell as in
    `truth` frames; both (N, H, W, 3) uint8 Craft2D frames."""
    from worldsim.envs.craft2d.decoder import decode

    same = total = 0
    for p, t in zip(pred, truth):
        a, b = decode(p, tile_size).cell, decode(t, tile_size).cell
        same += int((a == b).sum())
        total += a.size
    return same / max(total, 1)


def is_craft2d(manifest: dict) -> bool:
    return "Craft2D" in str(manifest.get("env", ""))
