"""`worldsim scaling`: a compute-scaling study read from world-model runs, as Sora's report shows quality against
compute: held-out loss and probe scores against training FLOPs, one PNG and a markdown table.

    worldsim scaling runs/scale/S runs/scale/M runs/scale/L out=docs/scaling.png

Each run is a `worldsim train world` directory holding
- log.jsonl, whose evaluations carry `heldout_loss` (the denoising loss on held-out clips with fixed noise, the same
  for every model size) and the rollout scores;
- its resolved config: config.yaml, which training writes when a run starts, or the checkpoint's metadata;
- optionally probes/probes.json, from `worldsim probe checkpoint=RUN/last.safetensors out=RUN/probes`.

Training FLOPs are counted, not estimated from a parameter count: one training step of the run's model, at its clip
length and on one clip, runs on the CPU under torch's FlopCounterMode (forward and backward, both streams of a clean
history), times the batch and the steps. Parameters that act once per frame (the adaLN modulation) or not at all
(embeddings) weigh in as they compute, which 6 x parameters x tokens would not.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from worldsim.plot import Series, draw, figure, to_png
from worldsim.train.curves import read_logs

FAMILIES = ("permanence", "causality", "physics", "consistency", "control", "stability", "reward")
PANEL = (720, 320)  # pixels (width, height) of each chart, stacked


@dataclass(frozen=True)
class ScalingRun:
    """One run of the study: what it trained, what it cost, and what it scored."""
    name: str
    preset: str
    parameters: int
    flops_per_step: float
    evals: list[tuple[int, dict[str, float]]]  # (step, evaluation), in order
    probes: dict[str, Any] | None  # probes.json, where the run was probed

    @property
    def steps(self) -> int:
        return self.evals[-1][0]

    @property
    def flops(self) -> float:
        return self.flops_per_step * self.steps


def run_config(run: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the run's resolved config, the checkpoint's metadata or {}) from its checkpoint, else its config.yaml."""
    from worldsim.checkpoint import read_metadata

    ckpt = run / "last.safetensors"
    if ckpt.exists():
        meta = read_metadata(ckpt)
        return meta["config"], meta
    if (run / "config.yaml").exists():
        from omegaconf import OmegaConf

        return OmegaConf.to_container(OmegaConf.load(run / "config.yaml"), resolve=True), {}
    raise FileNotFoundError(f"{run}: neither last.safetensors nor config.yaml there; expected a `worldsim train "
                            "world` run directory")


def training_flops(config: dict[str, Any], meta: dict[str, Any], frame_shape: list[int] | None = None
                   ) -> tuple[float, int]:
    """(FLOPs of one training step, parameters) of a world-model run's config, counted on one clip on the CPU."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from worldsim.checkpoint import load_autoencoder
    from worldsim.models.dit import DiT, dit_config

    if meta:  # the checkpoint knows every shape
        dit_cfg = dit_config(config["model"], **{k: v for k, v in meta["dit_config"].items()
                                                 if k not in ("vocab", "reward_values")})
        c, h, w = meta["latent_shape"]
    else:  # from the config: the autoencoder's latent size, the data's frame size
        ae = load_autoencoder(config["ae"])[0].cfg
        shape = frame_shape or _data_frame_shape(config["data"])
        c, h, w = ae.latent_channels, shape[0] // ae.downsample, shape[1] // ae.downsample
        dit_cfg = dit_config(config["model"], latent_channels=c, **config.get("dit", {}))
    t, history = config["clip_len"], config["diffusion"]["history"] == "clean"
    torch.manual_seed(0)
    model = DiT(dit_cfg)
    x = torch.randn(1, t, c, h, w)  # (B, T, C, h, w)
    sigma, actions = torch.rand(1, t // dit_cfg.patch[0]), torch.zeros(1, t // dit_cfg.patch[0], dtype=torch.long)
    streams = {"history": x, "history_sigma": torch.zeros_like(sigma)} if history else {}
    with FlopCounterMode(display=False) as counter:
        out = model(x, sigma, actions, **streams)
        (out.out.float().pow(2).mean() + out.reward.float().mean()).backward()
    per_clip = counter.get_total_flops()
    # single first frames (start_frames): about a frame's share of one stream, as they run with no history
    starts = config.get("start_frames", 0) * per_clip / (t * (2 if history else 1))
    return float(per_clip * config["batch_size"] + starts), sum(p.numel() for p in model.parameters())


def _data_frame_shape(data: str) -> list[int]:
    from worldsim.data.shards import read_manifest

    try:
        return list(read_manifest(Path(data))["frame_shape"])
    except (OSError, ValueError, KeyError) as err:
        raise ValueError(f"data={data}: its manifest gives the frame size FLOPs are counted at ({err}); pass "
                         "frame_shape=[H,W] where the dataset is elsewhere") from None


def read_run(path: str | Path, frame_shape: list[int] | None = None) -> ScalingRun:
    run = Path(path)
    config, meta = run_config(run)
    evals = [(r["step"], r["eval"]) for r in read_logs([run])[1]]  # one run: its steps as logged
    if not any("heldout_loss" in e for _, e in evals):
        raise ValueError(f"{run}: its evaluations hold no heldout_loss (a run trained before it was measured); "
                         "train with loop.eval_every=N to get a curve")
    probes_path = run / "probes" / "probes.json"
    probes = json.loads(probes_path.read_text()) if probes_path.exists() else None
    flops, parameters = training_flops(config, meta, frame_shape)
    return ScalingRun(run.name, config["model"], parameters, flops, evals, probes)


def scaling_figure(runs: list[ScalingRun]):
    """Held-out loss against training FLOPs (each run's evaluations), and, for the probed runs, each probe family's
    score at the run's end against its FLOPs."""
    loss = [Series(f"{r.name}: preset {r.preset}, {r.parameters / 1e6:.1f}M parameters",
                   [s * r.flops_per_step for s, e in r.evals if "heldout_loss" in e],
                   [e["heldout_loss"] for _, e in r.evals if "heldout_loss" in e]) for r in runs]
    panels = [(dict(title="held-out denoising loss against training compute", xlabel="training FLOPs",
                    logx=True, logy=True), loss)]
    probed = sorted((r for r in runs if r.probes), key=lambda r: r.flops)
    if probed:
        x = [r.flops for r in probed]
        fams = [f for f in FAMILIES if all(f in r.probes["families"] for r in probed)]
        series = [Series(f, x, [r.probes["families"][f]["score"] for r in probed],
                         band=[r.probes["families"][f]["std"] for r in probed]) for f in fams]
        series.append(Series("mean of the families", x, [np.mean([r.probes["families"][f]["score"] for f in fams])
                                                          for r in probed], style="dashed"))
        panels.append((dict(title="probe family scores at the end of each run (0: copy-last, 1: the game)",
                            xlabel="training FLOPs", logx=True, ylim=(0, 1)), series))
    fig, axes = figure((PANEL[0], PANEL[1] * len(panels)), rows=len(panels))
    for ax, (kwargs, series) in zip(axes, panels):
        draw(ax, series, **kwargs)
    return fig


def scaling_table(runs: list[ScalingRun]) -> str:
    """The study as a markdown table, a row per run: its size, its compute, and its scores at the end."""
    head = ["run", "preset", "parameters", "steps", "training FLOPs", "held-out loss", "cells right h1 / h8 / h32"]
    probed = any(r.probes for r in runs)
    if probed:
        head += [*FAMILIES, "mean"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in sorted(runs, key=lambda r: r.flops):
        last = next(e for _, e in reversed(r.evals) if "heldout_loss" in e)
        cells = " / ".join(f"{last[k]:.1%}" if k in last else "n/a" for k in ("tiles_h1", "tiles_h8", "tiles_h32"))
        row = [r.name, r.preset, f"{r.parameters / 1e6:.1f}M", f"{r.steps:,}", f"{r.flops:.2e}",
               f"{last['heldout_loss']:.4f}", cells]
        if probed:
            fams = r.probes["families"] if r.probes else {}
            scores = [fams[f]["score"] if f in fams else None for f in FAMILIES]
            row += [f"{s:.2f}" if s is not None else "n/a" for s in scores]
            known = [s for s in scores if s is not None]
            row.append(f"{np.mean(known):.2f}" if known else "n/a")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def main(paths: list[str], out: str, frame_shape: list[int] | None = None) -> tuple[Path, str]:
    """Read the runs, write the figure to `out` and the table beside it (.md); returns (figure path, table)."""
    from worldsim.io import atomic_write_bytes

    if not out.lower().endswith(".png"):
        raise ValueError(f"out={out!r}: expected a .png file name")
    runs = [read_run(p, frame_shape) for p in paths]  # every run read (and refused) before anything is written
    table = scaling_table(runs)
    atomic_write_bytes(Path(out).with_suffix(".md"), (table + "\n").encode())
    return atomic_write_bytes(out, to_png(scaling_figure(runs))), table
