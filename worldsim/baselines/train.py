"""`worldsim train pixel`: a pixel-space baseline (worldsim/baselines/pixel.py) trained on a collected dataset, with
the loop every `worldsim train` task shares (resume, EMA, bf16 where it is fast, torchrun).

A training example is a run of `model.context + 1` frames of one episode: the last is predicted from those before it
and the actions. Evaluation rolls held-out clips out autoregressively from `model.context` real frames, driven by
the recorded actions, and scores the frames `horizons` steps on (PSNR and, for Craft2D, cells right) beside copying
the last real frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import torch
from omegaconf import MISSING

from worldsim.baselines.pixel import PixelConfig, PixelUNet, PixelWorldModel, to_unit, training_loss
from worldsim.checkpoint import prefixed
from worldsim.config import check, show, to_dict
from worldsim.data.loader import ClipDataset
from worldsim.device import resolve_device
from worldsim.envs.craft2d import is_craft2d
from worldsim.train import dist
from worldsim.train.loop import LoopConfig, OptimConfig, Task, train
from worldsim.train.metrics import psnr, tile_accuracy


@dataclass(frozen=True)
class TrainPixelConfig:
    data: str = field(default=MISSING, metadata={"help": "dataset directory (worldsim collect)"})
    model: PixelConfig = field(default_factory=PixelConfig)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(steps=3000, lr=3e-4, warmup=100))
    loop: LoopConfig = field(default_factory=lambda: LoopConfig(out="runs/pixel", eval_every=500))
    batch_size: int = field(default=32, metadata={"help": "clips per step, over all processes under torchrun"})
    holdout: float = field(default=0.05, metadata={"help": "fraction of episodes held out"})
    eval_clips: int = field(default=16, metadata={"help": "held-out rollouts per evaluation"})
    horizons: list[int] = field(default_factory=lambda: [1, 8, 32], metadata={"help": "rollout steps scored"})

    def __post_init__(self):
        check(bool(self.data), "data", self.data, "a dataset directory (worldsim collect)")
        check(self.batch_size >= 1, "batch_size", self.batch_size, "clips per step >= 1")
        check(0.0 < self.holdout < 1.0, "holdout", self.holdout, "a fraction in (0, 1): evaluation needs held-out "
                                                                 "episodes, training the rest")
        check(self.eval_clips >= 1, "eval_clips", self.eval_clips, "held-out rollouts >= 1")
        check(len(self.horizons) > 0 and min(self.horizons) >= 1, "horizons", list(self.horizons),
              "a list of rollout steps >= 1, e.g. [1,8,32]")


def build_task(cfg: TrainPixelConfig) -> Task:
    k = cfg.model.context
    train_set = ClipDataset(cfg.data, k + 1, "train", cfg.holdout)
    n_actions = len(train_set.action_meanings)
    check(cfg.model.n_actions in (0, n_actions), "model.n_actions", cfg.model.n_actions,
          f"0 or {n_actions}, the actions of {cfg.data} ({train_set.manifest.get('env')})")
    net_cfg = replace(cfg.model, n_actions=n_actions)
    h, w = train_set.frame_shape[:2]
    check(h % cfg.model.scale == 0 and w % cfg.model.scale == 0, "model.channels", list(cfg.model.channels),
          f"at most {_levels(h, w)} levels for {cfg.data}'s {w}x{h} px frames (each level after the first halves "
          "them)")
    horizon = max(cfg.horizons)
    try:
        val = ClipDataset(cfg.data, k + horizon, "val", cfg.holdout)
    except ValueError as err:
        raise ValueError(f"model.context={k} + max(horizons)={horizon}: a rollout needs that many frames of one "
                         f"held-out episode; {err} (or lower horizons)") from None
    clips = val.sample(cfg.eval_clips, np.random.default_rng(12345))  # fixed, independent of the training draws
    craft2d = is_craft2d(train_set.manifest.get("env"))
    torch.manual_seed(cfg.loop.seed)
    model = PixelUNet(net_cfg)

    def batch(r: np.random.Generator):
        b = train_set.sample(cfg.batch_size, r)
        return torch.from_numpy(b.frames), torch.from_numpy(b.actions)

    def loss(m, b, gen, rows):
        device = next(m.parameters()).device
        frames, actions = b[0].to(device), b[1].to(device)
        value = training_loss(m, to_unit(frames), actions, gen, rows).mean()
        return value, {"loss": value.item()}

    def evaluate(m) -> dict[str, float]:
        world = PixelWorldModel.of(m)
        world.reset(clips.frames[:, :k], clips.actions[:, :k], seed=0)
        predicted = [world.step(clips.actions[:, k + i]) for i in range(horizon)]
        logs = {}
        for hz in cfg.horizons:
            truth, last = clips.frames[:, k + hz - 1], clips.frames[:, k - 1]
            logs[f"psnr_h{hz}"], logs[f"copy_psnr_h{hz}"] = psnr(predicted[hz - 1], truth), psnr(last, truth)
            if craft2d:
                logs[f"tiles_h{hz}"] = tile_accuracy(predicted[hz - 1], truth)
                logs[f"copy_tiles_h{hz}"] = tile_accuracy(last, truth)
        return logs

    def report(logs: dict[str, float]) -> str:
        lines = [f"{len(clips.frames)} held-out rollouts from {k} real frames (EMA weights), against copying the last:"]
        for hz in cfg.horizons:
            line = f"  {hz:>3} steps ahead: PSNR {logs[f'psnr_h{hz}']:.2f} dB (copy {logs[f'copy_psnr_h{hz}']:.2f})"
            if craft2d:
                line += f", cells right {logs[f'tiles_h{hz}']:.1%} (copy {logs[f'copy_tiles_h{hz}']:.1%})"
            lines.append(line)
        return "\n".join(lines)

    def export(ema: dict[str, torch.Tensor], final: bool) -> dict[str, torch.Tensor]:
        return prefixed(ema, "pixel")

    config = to_dict(cfg)
    return Task(name=f"pixel {cfg.model.objective}", model=model, batch=batch, loss=loss, evaluate=evaluate,
                export=export, report=report, data_id=dist.fingerprint(train_set.manifest), defaults=to_dict(type(cfg)),
                metadata={"config": config, "pixel_config": to_dict(net_cfg),
                          "action_meanings": train_set.action_meanings, "frame_shape": list(train_set.frame_shape),
                          "env": train_set.manifest.get("env")},
                tokens_per_batch=cfg.batch_size * h * w)  # pixels a step: the progress bar's "tok/s"


def _levels(h: int, w: int) -> int:
    levels = 1
    while h % (2 ** levels) == 0 and w % (2 ** levels) == 0:
        levels += 1
    return levels


def run(cfg: TrainPixelConfig) -> dict[str, float]:
    print(show(cfg), end="")
    return train(build_task(cfg), cfg.optim, cfg.loop, resolve_device(cfg.loop.device))
