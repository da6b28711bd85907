"""Frame metrics shared by evaluation and probes: PSNR, and Craft2D tile accuracy through the exact decoder."""

from __future__ import annotations

import numpy as np

from worldsim.envs.craft2d.decoder import cells_right, decode_cells
from worldsim.envs.craft2d.tiles import TILE_SIZE


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB between uint8 frame arrays of the same shape (inf when identical)."""
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0 ** 2 / mse))


def tile_accuracy(pred: np.ndarray, truth: np.ndarray, tile_size: int = TILE_SIZE) -> float:
    """Fraction of cells (tiles, entities, HUD glyphs) of `pred` frames that are right against `truth` frames, as the
    probes judge a cell (`worldsim.envs.craft2d.decoder.cells_right`); both (N, H, W, 3) uint8 Craft2D frames."""
    if pred.shape != truth.shape:
        raise ValueError(f"pred frames {pred.shape} and truth frames {truth.shape}: expected the same (N, H, W, 3)")
    if len(pred) == 0:
        return 0.0
    cells, distance = decode_cells(pred, tile_size)
    return float(cells_right(cells, distance, decode_cells(truth, tile_size)[0]).mean())
