"""The training loop every `worldsim train` task shares: AdamW with warmup and cosine decay, gradient clipping, EMA,
bf16 autocast on CUDA (fp32 on CPU), optional torch.compile, a progress bar with loss and tokens/s, a JSONL log,
periodic evaluation, and checkpoints every few minutes that a killed run resumes from.

A task supplies the model and three functions; the loop owns everything else:
    batch(rng)            -> a training batch drawn with the loop's numpy Generator (saved and restored on resume)
    loss(model, batch, g) -> (loss tensor, logs dict); g is the loop's torch.Generator for noise (also restored)
    evaluate(model)       -> logs dict (held-out metrics), run with the EMA weights
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from worldsim.checkpoint import component
from worldsim.io import atomic_write_bytes
from worldsim.progress import Progress
from worldsim.train.state import load_optimizer, load_run, restore_rngs, same_config, save_run


@dataclass(frozen=True)
class OptimConfig:
    steps: int = field(default=10_000, metadata={"help": "optimizer steps in all (raise it to train a run longer)"})
    lr: float = field(default=3e-4, metadata={"help": "peak learning rate"})
    warmup: int = field(default=200, metadata={"help": "steps of linear warmup"})
    min_lr_ratio: float = field(default=0.1, metadata={"help": "cosine decay ends at lr * this"})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW decoupled weight decay"})
    grad_clip: float = field(default=1.0, metadata={"help": "max global gradient norm"})
    ema: float = field(default=0.999, metadata={"help": "EMA decay of the weights used for eval and export"})


@dataclass(frozen=True)
class LoopConfig:
    out: str = field(default="runs/run", metadata={"help": "run directory: checkpoints, log.jsonl"})
    device: str = field(default="auto", metadata={"help": "auto (CUDA when present) | cpu | cuda"})
    seed: int = field(default=0, metadata={"help": "seeds init, data order and noise"})
    compile: bool = field(default=False, metadata={"help": "torch.compile the model (slow first steps)"})
    save_every_s: float = field(default=300.0, metadata={"help": "seconds between checkpoints"})
    eval_every: int = field(default=1000, metadata={"help": "steps between evaluations (0: only at the end)"})
    log_every: int = field(default=20, metadata={"help": "steps between log.jsonl lines"})
    stop_after: int = field(default=0, metadata={"help": "save and stop after this many steps in this invocation "
                                                         "(0: run to optim.steps); the same command continues"})


def lr_at(step: int, cfg: OptimConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = min(1.0, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


@dataclass
class Task:
    name: str
    model: torch.nn.Module
    batch: Callable[[np.random.Generator], Any]
    loss: Callable[[torch.nn.Module, Any, torch.Generator], tuple[torch.Tensor, dict[str, float]]]
    evaluate: Callable[[torch.nn.Module], dict[str, float]]
    export: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]  # EMA state dict -> checkpoint tensors
    metadata: dict[str, Any]  # goes into every checkpoint; must hold "config" (compared on resume)
    tokens_per_batch: int = 0


def train(task: Task, optim: OptimConfig, loop: LoopConfig, device: torch.device,
          quiet: bool = False) -> dict[str, float]:
    """Run (or resume) the task to `optim.steps`; returns the last evaluation."""
    run = Path(loop.out)
    model = task.model.to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=optim.lr, weight_decay=optim.weight_decay, betas=(0.9, 0.99))
    ema = {k: v.detach().clone() for k, v in model.state_dict().items()}
    rng, gen = np.random.default_rng(loop.seed), torch.Generator(device).manual_seed(loop.seed)
    step = 0
    resumed = load_run(run)
    if resumed is not None:
        state, state_meta = resumed
        same_config(state_meta["config"], task.metadata["config"], run)
        model.load_state_dict({k: v.to(device) for k, v in component(state, "train").items()})
        load_optimizer(opt, {k: v.to(device) for k, v in state.items()}, state_meta["param_groups"])
        ema = {k: v.to(device) for k, v in component(state, "ema").items()}
        restore_rngs(state, state_meta, rng, gen)
        step = int(state_meta["step"])
        _trim_log(run / "log.jsonl", step)
        if not quiet:
            print(f"resuming {run} at step {step}")
    fwd = torch.compile(model) if loop.compile else model
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda"
                else contextlib.nullcontext())  # fp32 on CPU: bf16 matmuls are slow there
    log = None  # opened on the first line written, creating the run directory if needed

    def save() -> None:
        save_run(run, step, model.state_dict(), task.export(ema), task.metadata, opt, ema, rng, gen)

    def log_line(record: dict) -> None:
        nonlocal log
        if log is None:
            run.mkdir(parents=True, exist_ok=True)
            log = open(run / "log.jsonl", "a")
        log.write(json.dumps(record) + "\n")
        log.flush()

    progress = None if quiet else Progress(optim.steps, f"train {task.name}", "steps", initial=step)
    last_save, t0, tokens, logs, evals = time.monotonic(), time.perf_counter(), 0, {}, {}
    end = min(optim.steps, step + loop.stop_after) if loop.stop_after else optim.steps
    model.train()
    while step < end:
        for g in opt.param_groups:
            g["lr"] = lr_at(step, optim)
        batch = task.batch(rng)
        with autocast:
            loss, logs = task.loss(fwd, batch, gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), optim.grad_clip)
        opt.step()
        with torch.no_grad():
            for k, v in model.state_dict().items():
                if v.dtype.is_floating_point:
                    ema[k].lerp_(v, 1 - optim.ema)  # note: ema += (1 - decay) * (v - ema)
                else:
                    ema[k].copy_(v)
        step += 1
        tokens += task.tokens_per_batch
        rate = tokens / (time.perf_counter() - t0)
        if step % loop.log_every == 0 or step == end:
            log_line({"step": step, "lr": lr_at(step - 1, optim), "grad_norm": float(grad_norm),
                      "tokens_per_s": rate, **logs})
        if progress:
            progress.update(step, f"loss {logs['loss'] if 'loss' in logs else loss.item():.4f}  {rate:,.0f} tok/s")
        if (loop.eval_every and step % loop.eval_every == 0) or step == optim.steps:
            evals = _evaluate(task, model, ema)
            log_line({"step": step, "eval": evals})
            model.train()
        if time.monotonic() - last_save >= loop.save_every_s or step == end:
            save()
            last_save = time.monotonic()
    if progress:
        progress.close(step, f"loss {logs.get('loss', 0):.4f}")
    if log:
        log.close()
    return evals


def _trim_log(path: Path, step: int) -> None:
    """Drop the log lines past the checkpoint a resumed run restarts from (a killed run logged steps it will now
    redo, and its last line may be torn), so the log reads as one run."""
    if not path.exists():
        return
    lines = path.read_text().splitlines(keepends=True)
    keep = []
    for line in lines:
        try:
            if json.loads(line)["step"] <= step:
                keep.append(line if line.endswith("\n") else line + "\n")
        except (ValueError, KeyError, TypeError):
            pass  # a line torn by the kill
    if keep != lines:
        atomic_write_bytes(path, "".join(keep).encode())


def _evaluate(task: Task, model: torch.nn.Module, ema: dict[str, torch.Tensor]) -> dict[str, float]:
    """Evaluate with the EMA weights, then put the training weights back."""
    live = {k: v.detach().clone() for k, v in model.state_dict().items()}
    model.load_state_dict(ema)
    model.eval()
    try:
        with torch.no_grad():
            return task.evaluate(model)
    finally:
        model.load_state_dict(live)
