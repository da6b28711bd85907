"""`worldsim train ae`: the video compression network, trained on frames of a collected dataset.

Evaluation on held-out episodes reports PSNR and, for Craft2D, the fraction of cells that decode to the right
sprite. The exported weights carry the latent statistics (fitted on training frames at every save), so the latent
scale lives in the checkpoint and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from omegaconf import MISSING

from worldsim.checkpoint import load_init, prefixed
from worldsim.config import check, show, to_dict
from worldsim.data.loader import ClipDataset
from worldsim.envs.craft2d import is_craft2d
from worldsim.models.autoencoder import Autoencoder, AutoencoderConfig
from worldsim.device import resolve_device
from worldsim.train import dist
from worldsim.train.loop import LoopConfig, OptimConfig, Task, train
from worldsim.train.metrics import psnr, tile_accuracy


@dataclass(frozen=True)
class TrainAEConfig:
    data: str = field(default=MISSING, metadata={"help": "dataset directory (worldsim collect)"})
    model: AutoencoderConfig = field(default_factory=AutoencoderConfig)
    # lr 1e-2 beat 2e-3 and 5e-3 in 90 s comparisons on Craft2D; no weight decay, as in that run
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(steps=4000, lr=1e-2, warmup=100, weight_decay=0.0))
    # fp32: bf16 keeps ~3 significant digits, near what 46 dB reconstructions need, and it has not been measured on
    # the autoencoder (the world model's 1.4x was); loop.precision=bf16 tries it
    loop: LoopConfig = field(default_factory=lambda: LoopConfig(out="runs/ae", eval_every=500, precision="fp32"))
    init: str | None = field(default=None, metadata={"help": "start from this autoencoder checkpoint's weights "
                                                             "(fine-tuning); its config must match model"})
    freeze_encoder: bool = field(default=False, metadata={"help": "train the decoder only (with init=): the latents, "
                                                                   "and latent caches made from them, stay valid"})
    batch_size: int = field(default=32, metadata={"help": "frames per step, over all processes under torchrun"})
    eval_frames: int = field(default=128, metadata={"help": "held-out frames scored at each evaluation"})
    stats_frames: int = field(default=512, metadata={"help": "training frames the latent statistics are fit on"})
    holdout: float = field(default=0.05, metadata={"help": "fraction of episodes held out"})

    def __post_init__(self):
        check(bool(self.data), "data", self.data, "a dataset directory (worldsim collect)")
        check(self.init is None or bool(self.init), "init", self.init, "an autoencoder checkpoint, or null")
        check(not self.freeze_encoder or bool(self.init), "freeze_encoder", self.freeze_encoder,
              "false without init=PATH (it would freeze a random encoder): name the autoencoder checkpoint whose "
              "decoder to fine-tune")
        check(self.batch_size >= 1, "batch_size", self.batch_size, "frames per step >= 1")
        check(self.eval_frames >= 1, "eval_frames", self.eval_frames, "held-out frames >= 1")
        check(self.stats_frames >= 1, "stats_frames", self.stats_frames, "training frames >= 1")
        check(0.0 < self.holdout < 1.0, "holdout", self.holdout, "a fraction in (0, 1): evaluation needs held-out "
                                                                 "episodes, training the rest")


def build_task(cfg: TrainAEConfig) -> Task:
    train_set = ClipDataset(cfg.data, 1, "train", cfg.holdout)
    val_set = ClipDataset(cfg.data, 1, "val", cfg.holdout)
    rng = np.random.default_rng(12345)  # fixed samples, independent of the training draws
    val = val_set.sample(cfg.eval_frames, rng).frames[:, 0]  # (N, H, W, 3)
    stats = train_set.sample(cfg.stats_frames, rng).frames[:, 0]
    craft2d = is_craft2d(train_set.manifest.get("env"))
    torch.manual_seed(cfg.loop.seed)
    model = Autoencoder(cfg.model)
    if cfg.init:
        _load_init(model, cfg.init)
    if cfg.freeze_encoder:
        model.encoder.requires_grad_(False)  # AdamW skips parameters without gradients
    h, w = train_set.frame_shape[:2]

    def batch(r: np.random.Generator) -> torch.Tensor:
        return torch.from_numpy(train_set.sample(cfg.batch_size, r).frames[:, 0])

    def evaluate(m: Autoencoder) -> dict[str, float]:
        device = next(m.parameters()).device
        _fit_stats(m, stats, device)
        recon = m.decode_uint8(m.encode(torch.from_numpy(val).to(device))).cpu().numpy()
        logs = {"psnr": psnr(recon, val)}
        if craft2d:
            logs["tile_accuracy"] = tile_accuracy(recon, val)
        return logs

    def export(ema: dict[str, torch.Tensor], final: bool) -> dict[str, torch.Tensor]:
        copy = Autoencoder(cfg.model)
        copy.load_state_dict({k: v.cpu() for k, v in ema.items()})
        _fit_stats(copy, stats, torch.device("cpu"))
        return prefixed(copy.state_dict(), "ae")

    def report(logs: dict[str, float]) -> str:
        cells = f", cells right {logs['tile_accuracy']:.1%}" if "tile_accuracy" in logs else ""
        return f"psnr {logs['psnr']:.2f} dB{cells} on {len(val)} held-out frames (EMA weights)"

    return Task(name="ae", model=model, batch=batch,
                loss=lambda m, x, g, rows: m(x.to(next(m.parameters()).device), rows),  # forward: DDP's hooks
                evaluate=evaluate, export=export, report=report, data_id=dist.fingerprint(train_set.manifest),
                defaults=to_dict(type(cfg)),
                metadata={"config": to_dict(cfg), "action_meanings": train_set.action_meanings,
                          "frame_shape": list(train_set.frame_shape), "env": train_set.manifest.get("env")},
                tokens_per_batch=cfg.batch_size * h * w)


def _load_init(model: Autoencoder, path: str) -> None:
    load_init(model, path, "ae", "autoencoder", "`worldsim train ae` or `worldsim train world`",
              f"set the model fields to the checkpoint's (this run: {model.cfg})")


@torch.no_grad()
def _fit_stats(model: Autoencoder, frames: np.ndarray, device: torch.device) -> None:
    chunks = [frames[i:i + 64] for i in range(0, len(frames), 64)]  # bounded memory, whatever stats_frames is
    raw = torch.cat([model.encode_raw(torch.from_numpy(chunk).to(device)) for chunk in chunks])
    model.fit_latent_stats(raw)


def run(cfg: TrainAEConfig) -> dict[str, float]:
    print(show(cfg), end="")
    return train(build_task(cfg), cfg.optim, cfg.loop, resolve_device(cfg.loop.device))
