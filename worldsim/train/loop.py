"""The training loop every `worldsim train` task shares: AdamW with warmup and cosine decay (torch's LambdaLR), gradient
clipping, an EMA of the weights (torch's AveragedModel), bf16 autocast where the device has bf16 natively (loop.precision), optional torch.compile,
a progress bar with loss and tokens/s, a JSONL log, periodic evaluation printed beside its baseline, and checkpoints
every few minutes that a killed run resumes from, bit for bit.

A task supplies the model and these functions; the loop owns everything else:
    batch(rng)            -> a training batch drawn with the loop's numpy Generator (saved and restored on resume)
    loss(model, batch, g, rows) -> (loss tensor, logs dict) of the batch's rows `rows` (a slice: all of them in one
                             process, this rank's share under torchrun); g is the loop's torch.Generator for noise (also
                             restored): draw the noise for the whole batch and keep its rows, so that N processes
                             draw what one does
    evaluate(model)       -> logs dict (held-out metrics), run with the EMA weights
    export(ema_state, final) -> the tensors of the checkpoint people load, from the EMA weights; final is True at the
                             run's last save (a periodic save may reuse a costly fit an earlier one made)
    report(logs)          -> an evaluation as printed (optional; default: key value, ...)

One process trains a run directory at a time (a lock file), its log.jsonl follows its checkpoint (a fresh run starts
a fresh log, a resumed one drops the lines past the step it resumes from), and a loss or gradient that is not finite
stops the run before it touches the weights. Evaluating and exporting run on forked RNGs, so the weights a run ends
with do not depend on when it evaluated or saved.

Under torchrun the same code trains on N processes (worldsim/train/dist.py): the batch is the global one, each rank
computes its share's loss in DistributedDataParallel, rank 0 alone writes, and every decision that ends the loop is
agreed among the ranks.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable, NoReturn

import numpy as np
import torch
from torch.optim.lr_scheduler import LambdaLR
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from worldsim.checkpoint import component
from worldsim.config import check
from worldsim.device import PRECISIONS, autocast, resolve_device, resolve_precision
from worldsim.io import atomic_write_bytes
from worldsim.progress import Progress
from worldsim.train import dist
from worldsim.train.state import (LOG, WEIGHTS, ema_state, flatten, load_optimizer, load_run, lock_run,
                                  restore_rngs, same_config, save_run)

ESTIMATE_AFTER = 10  # steps timed, after an invocation's first (compilation, first allocations), before the estimate


@dataclass(frozen=True)
class OptimConfig:
    steps: int = field(default=10_000, metadata={"help": "optimizer steps in all (raise it to train a run longer)"})
    lr: float = field(default=3e-4, metadata={"help": "peak learning rate"})
    warmup: int = field(default=200, metadata={"help": "steps of linear warmup"})
    min_lr_ratio: float = field(default=0.1, metadata={"help": "cosine decay ends at lr * this"})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW decoupled weight decay"})
    grad_clip: float = field(default=1.0, metadata={"help": "max global gradient norm (inf: no clipping)"})
    ema: float = field(default=0.999, metadata={"help": "EMA decay of the weights used for eval and export "
                                                        "(0: the live weights)"})

    # The names are the command line's (optim.*): these configs live only under that key.
    def __post_init__(self):
        check(self.steps >= 1, "optim.steps", self.steps, "an integer >= 1")
        check(math.isfinite(self.lr) and self.lr > 0, "optim.lr", self.lr, "a learning rate > 0")
        check(0 <= self.warmup <= self.steps, "optim.warmup", self.warmup,
              f"0 to optim.steps={self.steps} steps (lower optim.warmup with optim.steps)")
        check(0.0 <= self.min_lr_ratio <= 1.0, "optim.min_lr_ratio", self.min_lr_ratio, "a fraction of optim.lr in "
                                                                                         "[0, 1]")
        check(math.isfinite(self.weight_decay) and self.weight_decay >= 0, "optim.weight_decay", self.weight_decay,
              "a decay >= 0")
        check(self.grad_clip > 0, "optim.grad_clip", self.grad_clip, "a gradient norm > 0 (inf: no clipping)")
        check(0.0 <= self.ema < 1.0, "optim.ema", self.ema, "a decay in [0, 1) (0: the EMA is the live weights; 1 "
                                                            "would never move from the random start)")


@dataclass(frozen=True)
class LoopConfig:
    out: str = field(default="runs/run", metadata={"help": "run directory: checkpoints, log.jsonl"})
    device: str = field(default="auto", metadata={"help": "auto (CUDA when present) | cpu | cuda | cuda:N | mps"})
    seed: int = field(default=0, metadata={"help": "seeds init, data order and noise"})
    compile: bool = field(default=False, metadata={"help": "torch.compile the model (slow first steps)"})
    precision: str = field(default="auto", metadata={"help": "auto (bf16 where the device has it natively: CUDA, or a "
                                                             "CPU with AVX512-BF16/AMX; else fp32) | fp32 | bf16"})
    save_every_s: float = field(default=300.0, metadata={"help": "seconds between checkpoints (0: after every "
                                                                 "step; the last step always saves)"})
    eval_every: int = field(default=1000, metadata={"help": "steps between evaluations (0: only at the end)"})
    log_every: int = field(default=20, metadata={"help": "steps between log.jsonl lines"})
    stop_after: int = field(default=0, metadata={"help": "save and stop after this many steps in this invocation "
                                                         "(0: run to optim.steps); the same command continues"})
    max_minutes: float = field(default=0.0, metadata={"help": "evaluate, save and stop after this many minutes in "
                                                              "this invocation (0: no limit); the same command "
                                                              "continues, with this budget or another. With "
                                                              "optim.min_lr_ratio=1 (no decay) a run trains for a "
                                                              "fixed time"})

    def __post_init__(self):
        check(bool(self.out) and not Path(self.out).is_file(), "loop.out", self.out, "a run directory (not a file)")
        try:
            resolve_device(self.device)  # a device this machine lacks is refused before any work
        except ValueError as err:
            raise ValueError(f"loop.{err}") from None
        check(self.precision in PRECISIONS, "loop.precision", self.precision, f"one of {PRECISIONS}")
        check(self.seed >= 0, "loop.seed", self.seed, "an integer >= 0 (numpy's generators take no negative seed)")
        check(self.save_every_s >= 0, "loop.save_every_s", self.save_every_s, "seconds >= 0 (0: save every step)")
        check(self.eval_every >= 0, "loop.eval_every", self.eval_every, "steps >= 0 (0: evaluate only at the end)")
        check(self.log_every >= 1, "loop.log_every", self.log_every, "steps >= 1")
        check(self.stop_after >= 0, "loop.stop_after", self.stop_after, "steps >= 0 (0: run to optim.steps)")
        check(self.max_minutes >= 0, "loop.max_minutes", self.max_minutes, "minutes >= 0 (0: no limit)")


def lr_factor(step: int, cfg: OptimConfig) -> float:
    """The learning rate of step `step` (0-based) as a fraction of cfg.lr: linear warmup, then cosine decay to
    min_lr_ratio. A closed form of the step, so a run resumed with optim.steps raised follows the longer schedule."""
    if step < cfg.warmup:
        return (step + 1) / cfg.warmup
    progress = min(1.0, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup))
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


@dataclass
class Task:
    name: str
    model: torch.nn.Module
    batch: Callable[[np.random.Generator], Any]
    loss: Callable[[torch.nn.Module, Any, torch.Generator, slice], tuple[torch.Tensor, dict[str, float]]]
    evaluate: Callable[[torch.nn.Module], dict[str, float]]
    export: Callable[[dict[str, torch.Tensor], bool], dict[str, torch.Tensor]]  # (EMA state dict, final) -> tensors
    metadata: dict[str, Any]  # goes into every checkpoint; must hold "config" (compared on resume)
    tokens_per_batch: int = 0
    report: Callable[[dict[str, float]], str] | None = None  # an evaluation as printed (default: key value, ...)
    data_id: str = ""  # a fingerprint of the training data (its manifest): the processes of a run must agree on it
    # the config class's defaults (to_dict(type(cfg))): on resume, a setting added since the run was saved compares as
    # its default, so runs started before it still continue
    defaults: dict[str, Any] = field(default_factory=dict)


class NonFiniteLoss(ValueError):
    """Training diverged: a loss, gradient norm or weight that is NaN or infinite. The fix is a setting."""


def train(task: Task, optim: OptimConfig, loop: LoopConfig, device: torch.device,
          quiet: bool = False) -> dict[str, float]:
    """Run (or resume) the task to `optim.steps`; returns the last evaluation. RunInUse if another process trains in
    loop.out; NonFiniteLoss if the loss or the gradient stops being finite (the last save is kept as it was). Under
    torchrun, every rank calls it with the same settings (refused otherwise) and rank 0 alone writes and prints."""
    run = Path(loop.out)
    dist.same_everywhere({**flatten(task.metadata["config"]), "training data": task.data_id})
    quiet = quiet or not dist.is_main()
    say = (lambda text: None) if quiet else _say
    with dist.on_main(lock_run(run)):  # one lock per run, held by rank 0: the other ranks write nothing
        evals = _train(task, optim, loop, device, run, say, quiet)
    dist.barrier()  # train returns on every rank once rank 0's last save is written
    return evals


def _train(task: Task, optim: OptimConfig, loop: LoopConfig, device: torch.device, run: Path,
           say: Callable[[str], None], quiet: bool) -> dict[str, float]:
    model = task.model.to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=optim.lr, weight_decay=optim.weight_decay, betas=(0.9, 0.99))
    # Parameters averaged; buffers (the autoencoder's latent statistics) copied from the live model at each update
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(optim.ema), use_buffers=False).eval()
    rng, gen = np.random.default_rng(loop.seed), torch.Generator(device).manual_seed(loop.seed)
    step, saved = 0, None  # saved: the step of the last save, which a diverged run still has
    resumed = load_run(run)
    if resumed is None:
        if dist.is_main():
            (run / LOG).unlink(missing_ok=True)  # no state: the lines of a run killed before its first save go
    else:
        state, state_meta = resumed
        same_config(state_meta["config"], task.metadata["config"], run, defaults=task.defaults)
        step = saved = int(state_meta["step"])
        model.load_state_dict({k: v.to(device) for k, v in component(state, "train").items()})
        load_optimizer(opt, {k: v.to(device) for k, v in state.items()}, state_meta["param_groups"])
        ema.load_state_dict({k: v.to(device) for k, v in ema_state(state, step).items()})
        restore_rngs(state, state_meta, rng, gen)  # every rank's: their draws are the same global ones
        if dist.is_main():
            _trim_log(run / LOG, step)
    if dist.is_main():  # the run's settings beside its log, readable without the weights (worldsim scaling reads it)
        from omegaconf import OmegaConf

        atomic_write_bytes(run / "config.yaml", OmegaConf.to_yaml(task.metadata["config"]).encode())
    for group in opt.param_groups:
        group.setdefault("initial_lr", optim.lr)  # a state saved before the scheduler: the peak it was run with
    scheduler = LambdaLR(opt, partial(lr_factor, cfg=optim), last_epoch=step - 1)  # -1: new; else resume at `step`
    if step >= optim.steps:
        say(f"{run} is at step {step:,} of optim.steps={optim.steps:,}: nothing to train (raise optim.steps to "
            f"train it longer)")
        return {}
    end = min(optim.steps, step + loop.stop_after) if loop.stop_after else optim.steps
    precision = resolve_precision(loop.precision, device)
    where = f"resuming {run} at step {step:,}" if resumed else f"train {task.name} in {run}"
    say(f"{where}: {end - step:,} steps planned, to step {end:,} of optim.steps={optim.steps:,}, {precision} on "
        f"{device}")
    fwd = dist.wrap(model, device)  # DDP under torchrun (after the load: it starts every rank from rank 0's weights)
    fwd = torch.compile(fwd) if loop.compile else fwd

    def save(final: bool) -> None:
        live, averaged = model.state_dict(), ema.module.state_dict()
        bad = next((name for name, t in [*live.items(), *(("ema " + k, v) for k, v in averaged.items())]
                    if t.is_floating_point() and not bool(torch.isfinite(t).all())), None)
        if dist.any_rank([bad is not None])[0]:  # every rank checks, and all stop if one finds one
            _diverged(f"weight {bad or '(on another rank)'} holds NaN or infinity, so this step is not saved", step,
                      saved, run, optim)
        if not dist.is_main():
            return
        with _rngs_kept(device):  # an export that draws (the autoencoder builds a module) moves no training draw
            exported = task.export(averaged, final)
        save_run(run, step, live, exported, task.metadata, opt, ema.state_dict(), rng, gen)

    progress = None if quiet else Progress(optim.steps, f"train {task.name}", "steps", initial=step)
    last_save, t0, tokens, logs, evals = time.monotonic(), time.perf_counter(), 0, {}, {}
    first, timed_s = step, 0.0
    deadline = time.monotonic() + 60 * loop.max_minutes if loop.max_minutes else math.inf
    timed_out = -1  # the step loop.max_minutes stopped at
    model.train()
    try:
        with open(run / LOG if dist.is_main() else os.devnull, "a") as log:
            while step < end:
                started = time.perf_counter()
                lr = opt.param_groups[0]["lr"]
                batch = task.batch(rng)  # the global batch, the same on every rank
                rows = dist.rows(_rows_in(batch))  # this rank's share of it (all of it in one process)
                with autocast(precision, device):
                    loss, logs = task.loss(fwd, batch, gen, rows)
                loss_value = float(loss.detach())  # note: a device sync, as the logs' .item() already are
                # the global batch's loss and logs: the mean of the ranks' equal shares (agreed before the backward,
                # whose gradient average every rank must join)
                loss_value, *values = dist.mean([loss_value, *logs.values()])
                logs = dict(zip(logs, values))
                if not math.isfinite(loss_value):
                    _diverged(f"the loss is {loss_value}; stopped before it changed the weights", step + 1, saved,
                              run, optim)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                # the same on every rank: DDP's backward left every rank the same averaged gradients
                grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), optim.grad_clip))
                if not math.isfinite(grad_norm):  # checked before opt.step: the weights stay those of the last step
                    _diverged(f"the gradient norm is {grad_norm}; stopped before it changed the weights", step + 1,
                              saved, run, optim)
                opt.step()
                scheduler.step()
                ema.update_parameters(model)
                step += 1
                # agreed (a collective), not each rank's own clock: a rank that stopped alone would leave the others
                # waiting for it
                late, save_due = dist.any_rank([time.monotonic() >= deadline,
                                                time.monotonic() - last_save >= loop.save_every_s])
                if late and step < end:
                    say(f"train {task.name}: loop.max_minutes={loop.max_minutes:g} reached at step {step:,}")
                    end = timed_out = step  # evaluated and saved below, as a run's last step is
                tokens += task.tokens_per_batch
                rate = tokens / (time.perf_counter() - t0)
                if step > first + 1:
                    timed_s += time.perf_counter() - started
                if step == first + 1 + ESTIMATE_AFTER and step < end:
                    per_step = timed_s / ESTIMATE_AFTER
                    say(f"train {task.name}: ~{_clock(per_step * (end - step))} for the {end - step:,} steps to "
                        f"step {end:,} at {1 / per_step:,.2f} steps/s (timed over steps {first + 2:,}-{step:,}; "
                        "evaluations and saves come on top)")
                if step % loop.log_every == 0 or step == end:
                    log.write(json.dumps({"step": step, "lr": lr, "grad_norm": grad_norm, "tokens_per_s": rate,
                                          **logs}) + "\n")
                    log.flush()
                if progress:
                    progress.update(step, f"loss {logs.get('loss', loss_value):.4f}  {rate:,.0f} tok/s")
                evaluate = (loop.eval_every and step % loop.eval_every == 0) or step in (optim.steps, timed_out)
                if evaluate and dist.is_main():  # the other ranks wait at their next step's first collective
                    began = time.perf_counter()
                    evals = _evaluate(task, ema.module, device)
                    log.write(json.dumps({"step": step, "eval": evals}) + "\n")
                    log.flush()
                    report = (task.report or _report)(evals)
                    took = f"eval at step {step:,} ({time.perf_counter() - began:.0f} s):"
                    say(f"{took}\n{report}" if "\n" in report else f"{took} {report}")
                if save_due or step == end:
                    save(final=step == end)
                    saved, last_save = step, time.monotonic()
    finally:
        if progress:
            progress.close(step, f"loss {logs.get('loss', 0):.4f}")
    return evals


def _rows_in(batch: Any) -> int:
    """The number of rows of a batch: the length of its (first) tensor or array."""
    while isinstance(batch, (tuple, list, dict)):
        batch = next(iter(batch.values() if isinstance(batch, dict) else batch))
    return len(batch)


def _diverged(what: str, step: int, saved: int | None, run: Path, optim: OptimConfig) -> NoReturn:
    kept = f"{run / WEIGHTS} is the last save, of step {saved:,}" if saved is not None else "nothing was saved"
    raise NonFiniteLoss(
        f"step {step:,}: {what}. Training diverged ({kept}): try "
        f"a lower optim.lr (now {optim.lr:g}), a longer optim.warmup (now {optim.warmup}) or a lower optim.grad_clip "
        f"(now {optim.grad_clip:g}) in a new loop.out= (init= a checkpoint starts from its weights)")


def _rngs_kept(device: torch.device) -> contextlib.AbstractContextManager:
    """Torch's global RNGs (the CPU one, and the device's) as they were once the block ends."""
    if device.type != "cuda":
        return torch.random.fork_rng(devices=[])
    return torch.random.fork_rng(devices=[device.index if device.index is not None else torch.cuda.current_device()],
                                 device_type="cuda")


def _evaluate(task: Task, ema_model: torch.nn.Module, device: torch.device) -> dict[str, float]:
    """Evaluate the EMA weights, on forked RNGs: evaluating moves no training draw."""
    with _rngs_kept(device), torch.no_grad():
        return task.evaluate(ema_model)


def _say(text: str) -> None:
    tqdm.write(text, file=sys.stdout)  # above the progress bar (stderr), which tqdm redraws below it
    sys.stdout.flush()


def _report(evals: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.4g}" for k, v in evals.items())


def _clock(seconds: float) -> str:
    return str(datetime.timedelta(seconds=round(seconds)))  # 2:46:40


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
