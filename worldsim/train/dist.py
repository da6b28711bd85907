"""Training on many processes (torchrun), with the one-process code path: every function here is the identity, or
does nothing, when the run has one process.

`torchrun --nproc_per_node=N -m worldsim.train world ...` starts N processes, each with RANK, WORLD_SIZE and
LOCAL_RANK in its environment; `process_group()` joins them (gloo for CPU tensors, NCCL for CUDA ones, each process on
cuda:LOCAL_RANK) and the loop wraps the model in DistributedDataParallel.

The semantics, chosen so that the same config trains the same model on 1 or N processes:
- batch_size is the GLOBAL batch. Every rank draws the same global batch from the same seeded numpy Generator and
  computes the loss of its contiguous share of the rows (`rows`); the noise is drawn for the whole batch and sliced
  (the task's loss gets the rows), so the draws are one process's, and DDP's gradient average of the equal shares'
  mean losses is the one-process gradient. The learning rate is therefore the one-process one: nothing to scale.
- Rank 0 alone holds the run's lock and writes checkpoints, log.jsonl, the progress bar and evaluations. Every rank
  loads the same saved state on resume.
- Whatever ends or branches the loop is agreed (a collective), never one rank's own: a non-finite loss on any rank,
  the loop.max_minutes deadline, when to save, and errors in setting up (a run directory another process holds).
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import os
from typing import Any, Iterator

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

# Rank 0 evaluates and saves while the others wait at their next collective: the wait must outlast a long evaluation
# (minutes on a CPU), not torch's 10-minute default. A killed rank does not leave the others waiting this long:
# torchrun stops every process of the group when one dies.
TIMEOUT = datetime.timedelta(hours=2)


def launched() -> bool:
    """Whether this process was started by torchrun (or another launcher that sets its variables)."""
    return all(k in os.environ for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))


@contextlib.contextmanager
def process_group() -> Iterator[None]:
    """Join the launcher's process group for the block (nothing outside torchrun). CUDA processes each take
    cuda:LOCAL_RANK as their current device, so loop.device=auto or cuda means that GPU."""
    if not launched() or dist.is_initialized():
        yield
        return
    backend = "gloo"
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
        backend = "cpu:gloo,cuda:nccl"  # the loop's agreements are CPU tensors; the gradients are where the model is
    dist.init_process_group(backend, timeout=TIMEOUT)
    try:
        yield
    finally:
        dist.destroy_process_group()


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def is_main() -> bool:
    """Rank 0: the one process that writes the run directory and prints."""
    return rank() == 0


def rows(n: int) -> slice:
    """This rank's contiguous share of a global batch of n rows (all of them in one process)."""
    size = world_size()
    if n % size:
        raise ValueError(f"batch_size={n}: the global batch (all processes together) must divide evenly among the "
                         f"{size} processes of this run (WORLD_SIZE={size}); choose a multiple of {size}, or another "
                         "--nproc_per_node")
    share = n // size
    return slice(rank() * share, (rank() + 1) * share)


def wrap(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """The model as the training forward calls it: DistributedDataParallel where the run has many processes (its
    backward averages the gradients over ranks), else the model itself."""
    if world_size() == 1:
        return model
    return _DDP(model, device_ids=[device.index] if device.type == "cuda" else None)


class _DDP(DistributedDataParallel):
    """DDP that lends its module's attributes (a task's loss reads model.config), so the task's code is unchanged."""

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.module, name)


def mean(values: list[float]) -> list[float]:
    """The mean over ranks of each value (one collective): of equal shares' mean losses, the global batch's."""
    if world_size() == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(t)  # a NaN on any rank makes the sum NaN on every rank: all stop together
    return (t / world_size()).tolist()


def any_rank(flags: list[bool]) -> list[bool]:
    """Each flag, true on every rank when it is true on any (one collective)."""
    if world_size() == 1:
        return flags
    t = torch.tensor(flags, dtype=torch.uint8)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return [bool(f) for f in t.tolist()]


def raise_together(error: BaseException | None) -> None:
    """Raise on every rank the error any rank met (its own first), so none is left waiting at a collective for one
    that stopped."""
    if world_size() == 1:
        if error is not None:
            raise error
        return
    errors: list[BaseException | None] = [None] * world_size()
    dist.all_gather_object(errors, error)
    first = error or next((e for e in errors if e is not None), None)
    if first is not None:
        raise first


@contextlib.contextmanager
def on_main(context: contextlib.AbstractContextManager) -> Iterator[None]:
    """Enter `context` on rank 0 only (the run's lock); the error it raises there is raised on every rank."""
    with contextlib.ExitStack() as stack:
        error = None
        if is_main():
            try:
                stack.enter_context(context)
            except Exception as err:  # noqa: BLE001 -- re-raised below, on every rank
                error = err
        raise_together(error)
        yield


@contextlib.contextmanager
def main_first() -> Iterator[None]:
    """Run the block on rank 0 first while the others wait, then on the first process of each other node (which find
    rank 0's work done on a shared filesystem, or do it for their node), then on the rest: the latent cache is
    encoded once, never by two processes into one directory. If rank 0 fails, torchrun stops the waiting ranks."""
    if world_size() == 1:
        yield
        return
    local = int(os.environ.get("LOCAL_RANK", rank()))
    if is_main():
        yield
    dist.barrier()
    if local == 0 and not is_main():
        yield
    dist.barrier()
    if local != 0:
        yield


def fingerprint(value: Any) -> str:
    """A short hash of a JSON-able value (a dataset manifest): what ranks compare to know they read the same data."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def same_everywhere(settings: dict[str, Any]) -> None:
    """Refuse a run whose ranks were given different settings (flattened `key: value`; a data fingerprint among
    them), naming what differs, before any of them trains: their gradients would be averaged into nonsense."""
    if world_size() == 1:
        return
    everyone: list[dict[str, Any] | None] = [None] * world_size()
    dist.all_gather_object(everyone, settings)
    mine = everyone[0]
    for r, theirs in enumerate(everyone[1:], start=1):
        diff = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
        if diff:
            said = "; ".join(f"{k}={mine.get(k)!r} on rank 0, {theirs.get(k)!r} on rank {r}" for k in diff[:6])
            raise ValueError(f"the {world_size()} processes of this run disagree: {said}. Start every rank with the "
                             "same command and the same data (on every node: the same files at the same paths)")


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()
