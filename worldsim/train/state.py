"""Training state beside a checkpoint, so `kill -9` and the same command continue the same run, and one lock per
run directory, so two commands never write one run.

`<run>/last.state.safetensors` holds everything a run continues from: the live weights, optimizer moments (their
param groups carry the schedule's peak lr, `initial_lr`), the EMA model with its update count, the step, the config
and every RNG (torch's, the training device's, the data sampler's numpy generator). The learning-rate schedule is a
closed form of the step, so the step is its state. `<run>/last.safetensors` is the exported checkpoint people load
(EMA weights, no training state), written after it. Both are safetensors (nothing is unpickled on resume), each
written atomically. Resuming reads only the state file, so a kill between the two writes loses nothing: the
checkpoint is one save behind until the next save.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from worldsim.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

WEIGHTS, STATE, LOG, LOCK = "last.safetensors", "last.state.safetensors", "log.jsonl", "train.lock"


class RunInUse(OSError):
    """Another process holds the run directory's lock."""


@contextlib.contextmanager
def lock_run(run_dir: Path) -> Iterator[None]:
    """Hold `<run>/train.lock` while a run trains: a second writer would interleave log.jsonl and overwrite the other's
    checkpoints, so it is refused. An flock is dropped by the OS when its process dies (kill -9 included): a lock
    file left behind never blocks the next run, and is never deleted (deleting it would let two processes lock two
    different files of one name)."""
    import fcntl  # POSIX; imported here so that the rest of worldsim still imports where it is missing

    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(run_dir / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise RunInUse(f"{run_dir} is being trained by another process (pid {holder}, which holds "
                           f"{run_dir / LOCK}): wait for it to finish or stop it, or choose another loop.out=") \
                from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], list[dict]]:
    """(tensors, param_groups) of an optimizer's state dict, flattened for safetensors."""
    sd = optimizer.state_dict()
    tensors = {}
    for idx, state in sd["state"].items():
        for name, value in state.items():
            tensors[f"opt.{idx}.{name}"] = value if torch.is_tensor(value) else torch.tensor(value)
    return tensors, sd["param_groups"]


def load_optimizer(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], groups: list[dict]) -> None:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("opt."):
            _, idx, name = key.split(".", 2)
            state.setdefault(int(idx), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def save_run(run_dir: Path, step: int, live: dict[str, torch.Tensor], export: dict[str, torch.Tensor],
             metadata: dict[str, Any], optimizer: torch.optim.Optimizer, ema: dict[str, torch.Tensor],
             sampler_rng: np.random.Generator, generator: torch.Generator) -> None:
    """Write the training state (live weights included), then the exported checkpoint, both atomically. `ema` is the
    state dict of a torch.optim.swa_utils.AveragedModel (module.* and n_averaged)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    tensors, groups = optimizer_tensors(optimizer)
    tensors.update({f"train.{k}": v for k, v in live.items()})
    tensors.update({f"ema.{k}": v for k, v in ema.items()})
    tensors["rng.torch"] = torch.get_rng_state()
    tensors["rng.generator"] = generator.get_state()
    if generator.device.type == "cuda":  # the global CUDA stream (a task's randn_like on the GPU) is state too
        tensors["rng.cuda"] = torch.cuda.get_rng_state(generator.device)
    save_checkpoint(run_dir / STATE, tensors, config=metadata["config"], step=step, param_groups=groups,
                    sampler_rng=sampler_rng.bit_generator.state)
    save_checkpoint(run_dir / WEIGHTS, export, **{**metadata, "step": step})


def load_run(run_dir: Path) -> tuple[dict[str, torch.Tensor], dict] | None:
    """(state tensors, state metadata) of the last save, or None for a new run."""
    state_path = run_dir / STATE
    if not state_path.exists():
        if (run_dir / WEIGHTS).exists():
            raise CheckpointError(f"{run_dir} has {WEIGHTS} but no {STATE}: the training state is gone, so the run "
                                  f"cannot continue; choose another loop.out= (and init from the checkpoint where "
                                  "the task allows it)")
        return None
    return load_checkpoint(state_path)


def ema_state(state: dict[str, torch.Tensor], step: int) -> dict[str, torch.Tensor]:
    """The AveragedModel state dict in a state file's `ema.*` tensors. A state written before the EMA was an
    AveragedModel holds the bare module's weights: they were updated at every step, so the count is the step."""
    ema = {k[len("ema."):]: v for k, v in state.items() if k.startswith("ema.")}
    if "n_averaged" not in ema:
        ema = {**{f"module.{k}": v for k, v in ema.items()}, "n_averaged": torch.tensor(step)}
    return ema


def restore_rngs(state: dict[str, torch.Tensor], state_meta: dict, sampler_rng: np.random.Generator,
                 generator: torch.Generator) -> None:
    torch.set_rng_state(state["rng.torch"])
    generator.set_state(state["rng.generator"])
    if "rng.cuda" in state and generator.device.type == "cuda":
        torch.cuda.set_rng_state(state["rng.cuda"], generator.device)
    sampler_rng.bit_generator.state = state_meta["sampler_rng"]


# settings that may change between invocations of one run: the budget and the bookkeeping, never the model or data
# (loop.out too: a run directory copied or moved elsewhere continues from what it holds)
RESUMABLE_CHANGES = ("optim.steps", "loop.stop_after", "loop.max_minutes", "loop.out", "loop.save_every_s",
                     "loop.eval_every", "loop.log_every", "loop.device", "loop.compile", "loop.precision",
                     "eval_denoise_steps", "eval_reencode")


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    """A nested config as `a.b.c: value`, the command line's keys."""
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        out.update(flatten(v, key + ".") if isinstance(v, dict) else {key: v})
    return out


def settings_diff(saved: dict, current: dict, ignore: tuple[str, ...], defaults: dict | None = None) -> str:
    """The settings of two nested configs that differ, as `key=saved (now current), ...` ("" where none does), but
    for the `ignore`d keys (dotted, or a top-level section). `defaults` (the config class's, nested alike): a setting
    the saved config lacks was added since it was saved, and compares as its default, the value that behaves as the
    code did before the setting existed."""
    missing = object()

    def kept(config: dict) -> dict[str, Any]:
        return {k: v for k, v in flatten(config).items() if k not in ignore and k.split(".")[0] not in ignore}

    before, a, b = flatten(defaults or {}), kept(saved), kept(current)
    a.update({k: before.get(k, missing) for k in b.keys() - a.keys()})
    diff = sorted(k for k in a.keys() | b.keys() if a.get(k, missing) != b.get(k, missing))

    def shown(d: dict, k: str) -> str:
        return "(not set)" if d.get(k, missing) is missing else repr(d[k])
    return ", ".join(f"{k}={shown(a, k)} (now {shown(b, k)})" for k in diff[:6])


def same_config(saved: dict, current: dict, run_dir: Path, ignore: tuple[str, ...] = RESUMABLE_CHANGES,
                defaults: dict | None = None) -> None:
    """Refuse to resume a run under another config, except for settings that may change (the step budget...) and
    settings added since the run was saved, at their `defaults`."""
    said = settings_diff(saved, current, ignore, defaults)
    if said:
        raise ValueError(f"{run_dir} holds a run with other settings: {said}; resume with the same settings or "
                         f"choose another loop.out=")
