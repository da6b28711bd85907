"""`worldsim collect` across processes: the worker processes of workers=K > 1, and the ranks torchrun starts.

Each worker is a process that reports the frames it holds through shared memory and its error through a queue; the
parent draws the progress of all of them and raises the workers' errors as one (worldsim/data/collect.py is what a
worker does, and collects with workers=1 in its own process).

Across processes and machines that share a file system, torchrun starts collection R times:

    torchrun --nproc_per_node=R -m worldsim.data collect out=DIR steps=N workers=K ...

Rank r runs workers r*K .. r*K + K - 1 of R*K, so the dataset is the one a single process with workers=R*K writes,
shard for shard, and it records workers=R*K: one process with that many workers, or torchrun again, continues it.
Rank 0 alone checks and writes the manifest (before any rank writes a shard), prints, and, once every rank's workers
are done, records the shards and the summary (worldsim/data/__main__.py is the command).
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing as mp
import os
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from worldsim.config import to_dict
from worldsim.data.shards import MANIFEST

if TYPE_CHECKING:
    from worldsim.data.collect import CollectConfig, EnvFacts
    from worldsim.progress import Progress

    Work = Callable[[CollectConfig, int, EnvFacts, Callable[[int], None]], None]  # collect.run_worker


def run_processes(cfg: CollectConfig, facts: EnvFacts, progress: Progress | None, ours: range,
                  ranks: Ranks | None = None, *, work: Work, method: str) -> None:
    """Run workers `ours` of `cfg.workers` as processes (`work`, started by `method`: fork or spawn), drawing the
    progress of all of them. Under torchrun (`ranks`) the ranks agree at every tick on the frames held and on whether
    any worker still runs: the bar counts every rank's, and no rank waits in a long collective while another has
    hours of work left (gloo times out)."""
    ctx = mp.get_context(method)
    counts = ctx.RawArray("q", cfg.workers)  # frames held by each worker (by its global number)
    errors = ctx.Queue()
    procs = [ctx.Process(target=_worker_main, args=(work, cfg, k, facts, counts, errors), daemon=True) for k in ours]
    for p in procs:
        p.start()
    reports = []
    try:
        while True:
            while not errors.empty():  # read as they come: a worker blocks on a full queue until it is read
                reports.append(errors.get())
            alive, held = any(p.is_alive() for p in procs), sum(counts)
            if ranks:
                held, alive = ranks.tally(held, alive)
            if progress:
                progress.update(held)
            if not alive:
                break
            time.sleep(0.2)
    except KeyboardInterrupt:
        for p in procs:
            p.terminate()
        for p in procs:
            p.join()
        raise
    for p in procs:
        p.join()
    while not errors.empty():
        reports.append(errors.get())
    error = _failure(procs, reports)
    if ranks:
        ranks.raise_together(error)  # a worker's error stops every rank, each naming it
    elif error:
        raise error


def _worker_main(work: Work, cfg: CollectConfig, k: int, facts: EnvFacts, counts, errors) -> None:
    """Process entry point: report progress through shared memory, errors through a queue."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core per worker: resizing must not oversubscribe
    # Die with the parent. A parent killed with SIGKILL (a torchrun rank, whose launcher then signals only the ranks
    # still alive) leaves its daemon workers running, and an orphan would go on writing the shards that the same
    # command, run again, restores. The parent's end of this pipe closes only when the parent is gone.
    parent = mp.parent_process()
    if parent is not None:
        threading.Thread(target=lambda: (parent.join(), os._exit(1)), daemon=True).start()
    try:
        work(cfg, k, facts, lambda rows: counts.__setitem__(k, rows))
    except BaseException as err:  # noqa: BLE001 - the parent reports it
        user_error = isinstance(err, (ValueError, TypeError, OSError))  # bad input or disk: a message, not a bug
        errors.put((k, user_error, f"{type(err).__name__}: {err}", traceback.format_exc()))
        raise SystemExit(1)


def _failure(procs: list, reports: list) -> Exception | None:
    """The error of the workers that failed (a ValueError when all of them report bad input), else None."""
    failed = [p for p in procs if p.exitcode != 0]
    if not failed:
        return None
    msgs = [f"worker {k}: {msg}" for k, _, msg, _ in reports]
    if reports and all(user for _, user, _, _ in reports):
        return ValueError("; ".join(msgs))
    detail = "\n".join(tb for _, _, _, tb in reports)
    return RuntimeError("; ".join(msgs) or f"workers exited with codes {[p.exitcode for p in failed]}\n{detail}")


def join(cfg: CollectConfig) -> Ranks | None:
    """This process's place among the ranks when it is one of several that torchrun started and that joined its
    process group (`python -m worldsim.data collect`), else None. Never imports torch: one process collects without
    it (~2 s of start-up, and a forked worker must not inherit its threads)."""
    if "torch" not in sys.modules:
        return None
    from worldsim.train import dist

    if dist.world_size() <= 1:
        return None
    if cfg.agent == "human":
        raise ValueError(f"agent=human under torchrun ({dist.world_size()} processes): one person plays at one "
                         "keyboard, in one window; run `worldsim collect agent=human` without torchrun")
    return Ranks(dist, cfg)


@dataclass(frozen=True)
class Ranks:
    """One rank of a collection under torchrun: `dist` is worldsim/train/dist.py, `given` the settings every rank
    was started with (its `workers` are each rank's)."""

    dist: Any
    given: CollectConfig

    @property
    def is_main(self) -> bool:
        return self.dist.is_main()

    @property
    def ours(self) -> range:
        """The dataset's workers that this rank runs, by their global number."""
        k, r = self.given.workers, self.dist.rank()
        return range(r * k, (r + 1) * k)

    @property
    def dataset(self) -> CollectConfig:
        """The settings the dataset records: its workers are every rank's."""
        return dataclasses.replace(self.given, workers=self.dist.world_size() * self.given.workers)

    def banner(self) -> str:
        return (f"# torchrun: {self.dist.world_size()} processes x workers={self.given.workers}: the dataset of one "
                f"process with workers={self.dataset.workers}")

    def agree(self, facts: EnvFacts) -> None:
        """Refuse ranks given other settings, or seeing another env, before anything is written: ranks that disagree
        would write two datasets into one directory."""
        self.dist.same_everywhere({**to_dict(self.given), **{f"the env's {k}": v for k, v in vars(facts).items()}})

    def prepare(self, root: Path, prepare: Callable[[], None]) -> None:
        """`prepare()` the directory on rank 0 (no rank writes a shard before stale ones are gone), then check that
        every rank sees the manifest it wrote."""
        self._on_main(prepare)
        self.dist.raise_together(None if (root / MANIFEST).exists() else _not_shared(root, self.dist.rank()))

    def tally(self, held: int, alive: bool) -> tuple[int, bool]:
        """The frames all ranks' workers hold, and whether any of them still runs (two collectives)."""
        held = round(self.dist.mean([held])[0] * self.dist.world_size())  # exact: float64 sums of integers
        return held, self.dist.any_rank([alive])[0]

    def raise_together(self, error: Exception | None) -> None:
        self.dist.raise_together(error)

    def finish(self, root: Path, finish: Callable[[], dict]) -> dict:
        """`finish()` on rank 0 once every rank's workers are done (the loop's end is agreed); the summary, on every
        rank."""
        summary = self._on_main(finish)
        return summary if self.is_main else json.loads((root / "summary.json").read_text())

    def _on_main(self, work: Callable[[], Any]) -> Any:
        """`work()` on rank 0 while the others wait; the error it raises there is raised on every rank."""
        result, error = None, None
        if self.is_main:
            try:
                result = work()
            except Exception as err:  # noqa: BLE001 -- re-raised below, on every rank
                error = err
        self.dist.raise_together(error)
        return result


def _not_shared(root: Path, rank: int) -> ValueError:
    return ValueError(f"out={str(root)!r}: rank {rank} does not see the manifest rank 0 has just written there: "
                      "under torchrun every process writes into the same directory, so on many machines out= must "
                      "be on a file system they all share, at the same path")
