"""`worldsim curves`: a training run's curves as one PNG, from the log.jsonl its training wrote.

    worldsim curves runs/craft2d/world runs/craft2d/world_ft out=docs/world_curves.png

Runs named together are one training chained end to end (a fine-tune continues its parent's step count). The top
panel is the training loss (a moving average, log scale); below it, every evaluation metric that has a copy-last-frame
counterpart (tiles_h8 beside copy_tiles_h8), or, for the autoencoder, its held-out tile accuracy. Drawn by
matplotlib (worldsim.plot), written atomically.

Runs of `worldsim agent train` are compared, not chained: each run's episode return (a moving average) against its
env steps, in the env it trained in, and the return its policy earned in the evaluation after training (eval.json)
as a dashed line: `worldsim curves runs/agent/craft2d_real runs/agent/craft2d_dream out=docs/agents/curves.png`.
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
EPISODES = 50  # episodes in an agent's return's moving average
PANEL = (720, 300)  # pixels (width, height) of each chart, stacked


def log_path(run: str | Path) -> Path:
    """A run's log: `run` itself where it is a file, else the log.jsonl in the run directory."""
    return Path(run) / "log.jsonl" if Path(run).is_dir() else Path(run)


def read_logs(runs: list[str | Path]) -> tuple[list[dict], list[dict]]:
    """(training lines, evaluation lines) of `runs` chained: each run's steps start where the one before ended."""
    train, evals, offset = [], [], 0
    for run in runs:
        path = log_path(run)
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


def _agent_log(run: str | Path) -> list[dict] | None:
    """The lines of a `worldsim agent train` run's log, or None for another kind of run."""
    path = log_path(run)
    if not path.exists():
        return None
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return lines if lines and "kind" in lines[0] else None


def agent_curves(runs: list[str | Path], title: str = "") -> Figure:
    """PPO runs side by side: episode return against env steps, and the evaluated return of each final policy."""
    series = []
    for run in runs:
        log, folder = _agent_log(run), Path(run) if Path(run).is_dir() else Path(run).parent
        if log is None:
            raise ValueError(f"{run}: not a `worldsim agent train` run (no agent log.jsonl), and agent runs are "
                             "compared only with agent runs")
        episodes = [r for r in log if r["kind"] == "episode"]
        if not episodes:
            raise ValueError(f"{run}: its log holds no finished episode yet")
        steps = np.array([r["step"] for r in episodes], np.float64)
        ret = np.array([r["return"] for r in episodes], np.float64)
        total = np.cumsum(np.r_[0.0, ret])
        first = np.maximum(0, np.arange(len(ret)) - EPISODES + 1)  # a trailing mean, over fewer at the start
        smooth = (total[1:] - total[first]) / (np.arange(len(ret)) + 1 - first)
        series.append(Series(f"{folder.name}: return per episode in {_env_of(folder)} (mean of the last "
                             f"{EPISODES})", steps, smooth))
        if (folder / "eval.json").exists():
            ev = json.loads((folder / "eval.json").read_text())
            series.append(Series(f"{folder.name}: its policy in {ev['env']}, {ev['episodes']} episodes: "
                                 f"{ev['return_mean']:.2f}", [0, steps[-1]], [ev["return_mean"]] * 2,
                                 style="dashed"))
    fig, axes = figure(PANEL if len(series) < 3 else (PANEL[0], PANEL[1] * 3 // 2))
    draw(axes[0], series, title=title or "PPO: episode return while training, and the final policy evaluated",
         xlabel="env steps")
    return fig


def _env_of(folder: Path) -> str:
    """The env a PPO run trained in, from its policy's metadata (or its folder name when that is not there)."""
    from worldsim.agents.ppo_state import read_policy_meta

    try:
        return str(read_policy_meta(folder / "policy.safetensors")["config"]["env"])
    except (OSError, ValueError, KeyError, TypeError):
        return "its env"


def _is_agent_run(run: str | Path) -> bool:
    """Whether `run` is a `worldsim agent train` run: its log's first line says what kind of line it is."""
    path = log_path(run)
    if not path.exists():
        return False
    with open(path) as f:
        first = f.readline().strip()
    return bool(first) and "kind" in json.loads(first)


def curves(runs: list[str | Path], title: str = "") -> Figure:
    """The runs' curves as one matplotlib figure: the loss on top, the evaluation below where there is one (agent
    runs: `agent_curves`)."""
    if runs and _is_agent_run(runs[0]):
        return agent_curves(runs, title)
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
