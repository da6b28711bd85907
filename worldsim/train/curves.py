"""`worldsim curves`: a training run's curves as one PNG, from the log.jsonl its training wrote.

    worldsim curves runs/craft2d/world runs/craft2d/world_ft out=docs/world_curves.png

Runs named together are one training chained end to end (a fine-tune continues its parent's step count). The top
panel is the training loss (a moving average, log scale); below it, every evaluation metric that has a copy-last-frame
counterpart (tiles_h8 beside copy_tiles_h8), or, for the autoencoder, its held-out tile accuracy. Drawn by
matplotlib (worldsim.plot), written atomically.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from worldsim.plot import Series, draw, figure, to_png

if TYPE_CHECKING:
    from matplotlib.figure import Figure

SMOOTH = 25  # logged points in the loss's moving average
PANEL = (720, 300)  # pixels (width, height) of each chart, stacked


def read_logs(runs: list[str | Path]) -> tuple[list[dict], list[dict]]:
    """(training lines, evaluation lines) of `runs` chained: each run's steps start where the one before ended."""
    train, evals, offset = [], [], 0
    for run in runs:
        path = Path(run) / "log.jsonl" if Path(run).is_dir() else Path(run)
        if not path.exists():
            raise FileNotFoundError(f"{path}: no training log there; expected a run directory of `worldsim train`")
        last = 0
        for line in path.read_text().splitlines():
            row = json.loads(line)
            row["step"] += offset
            last = max(last, row["step"])
            (evals if "eval" in row else train).append(row)
        offset = last
    return train, evals


def curves(runs: list[str | Path], title: str = "") -> Figure:
    """The runs' curves as one matplotlib figure: the loss on top, the evaluation below where there is one."""
    train, evals = read_logs(runs)
    if not train:
        raise ValueError(f"runs {[str(r) for r in runs]}: their logs hold no training steps yet")
    steps = np.array([r["step"] for r in train], np.float64)
    key = "denoise_loss" if "denoise_loss" in train[0] else "loss"
    loss = np.array([r[key] for r in train], np.float64)
    smooth = np.convolve(loss, np.ones(SMOOTH) / SMOOTH, mode="valid") if len(loss) >= SMOOTH else loss
    panels = [(dict(title=title or "training loss", xlabel="step", logy=True),
               [Series(f"{key} (moving average of {SMOOTH} logged steps)", steps[len(steps) - len(smooth):], smooth)])]
    if evals:
        eval_steps = [r["step"] for r in evals]
        metrics = evals[-1]["eval"]
        if "tiles_h1" in metrics:  # world model: rollout cells right at each horizon, beside copying the last frame
            series = []
            horizons = sorted(int(k[7:]) for k in metrics if k.startswith("tiles_h") and "_s" not in k)
            for k in (f"tiles_h{h}" for h in horizons):
                series.append(Series(f"model, {k[6:]}", eval_steps, [r["eval"].get(k, np.nan) for r in evals]))
                series.append(Series(f"copy last frame, {k[6:]}", eval_steps,
                                     [r["eval"].get(f"copy_{k}", np.nan) for r in evals], style="dashed"))
            panels.append((dict(title="held-out rollouts: share of cells right at horizon h", xlabel="step",
                                ylim=(0, 1.02)), series))
        elif "tile_accuracy" in metrics:  # autoencoder
            acc = [r["eval"]["tile_accuracy"] for r in evals]
            low = min(0.9, np.floor(min(acc) * 20) / 20)  # to the 0.05 below the worst, so every point shows
            panels.append((dict(title="held-out reconstruction", xlabel="step", ylim=(low, 1.0)),
                           [Series("cells decoding to the right sprite", eval_steps, acc)]))
    fig, axes = figure((PANEL[0], PANEL[1] * len(panels)), rows=len(panels))
    for ax, (kwargs, series) in zip(axes, panels):
        draw(ax, series, **kwargs)
    return fig


def main(runs: list[str], out: str, title: str = "") -> Path:
    from worldsim.io import atomic_write_bytes

    if not out.lower().endswith(".png"):
        raise ValueError(f"out={out!r}: expected a .png file name")
    return atomic_write_bytes(out, to_png(curves(runs, title)))
