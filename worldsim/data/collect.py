"""`worldsim collect`: trajectories from any Gymnasium env with rgb frames and Discrete actions, into shards.

Episode e is reset with a seed derived from (seed, e) and its agent likewise, and worker k of K plays episodes
k, k + K, k + 2K, ... So a run is reproducible, and after a crash or Ctrl-C the same command re-plays exactly the
episodes whose shard was lost and continues: the resumed dataset equals an uninterrupted one. A shard deleted from
the middle comes back the same way: each shard records the worker's rows before it, so the gap between two shards
says which episodes to play again and where the old budget cut the last one.

With workers=K > 1 the workers are processes, and across processes and machines that share a file system torchrun
starts it R times, each rank running its share of the workers: worldsim/data/collect_dist.py.
"""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import gymnasium as gym
import numpy as np
from omegaconf import MISSING

from worldsim.config import check, show, to_dict
from worldsim.data.collect_dist import join, run_processes
from worldsim.data.integrity import parse_name, record_complete
from worldsim.data.shards import (
    MANIFEST, ShardError, ShardWriter, dataset_manifest, open_shard, read_manifest, remove_incomplete, shard_name,
    shard_paths, write_manifest,
)
from worldsim.progress import Progress

AUTO_SHORT_SIDE = 64  # frames larger than MAX_NATIVE on a side are resized to this short side by default
MAX_NATIVE = 128
# Settings that decide what the data is: a dataset directory only continues a run with the same ones.
_IDENTITY = ("env", "env_kwargs", "agent", "agent_options", "seed", "workers", "frame_size", "shard_steps",
             "max_episode_steps")


@dataclass(frozen=True)
class CollectConfig:
    out: str = field(default=MISSING, metadata={"help": "dataset directory (created; an existing one is continued)"})
    env: str = field(default="worldsim/Craft2D-v0", metadata={"help": "Gymnasium env id (rgb frames, Discrete "
                                                                        "actions); 'module:id' imports module"})
    env_kwargs: dict[str, Any] = field(default_factory=dict, metadata={"help": "keyword arguments for gym.make"})
    agent: str = field(default="mixture", metadata={"help": "random | explorer (Craft2D) | mixture | human (Craft2D, a person at the keyboard; workers=1)"})
    agent_options: dict[str, Any] = field(default_factory=dict, metadata={"help": "keyword arguments of the agent"})
    steps: int = field(default=200_000, metadata={"help": "frames to store in all (an episode of T actions is "
                                                          "T + 1 frames; each has at least 2, so a worker may "
                                                          "store one more than its share). Raising it on a "
                                                          "finished dataset continues it: the episode the old "
                                                          "budget cut stays cut (marked truncated)"})
    workers: int = field(default=1, metadata={"help": "processes collecting in parallel (under torchrun: each "
                                                        "rank's; the dataset records all ranks' together)"})
    seed: int = field(default=0, metadata={"help": "seeds every episode and agent (episode e: from seed and e)"})
    frame_size: list[int] | None = field(default=None, metadata={
        "help": f"[H, W] to resize frames to; null: native size, or a {AUTO_SHORT_SIDE}-pixel short side for "
                f"frames over {MAX_NATIVE} pixels"})
    shard_steps: int = field(default=10_000, metadata={"help": "frames per shard (whole episodes; a crash loses "
                                                               "at most one shard per worker)"})
    max_episode_steps: int | None = field(default=None, metadata={"help": "override the env's time limit"})

    def __post_init__(self):
        for name in ("steps", "workers", "shard_steps"):
            check(getattr(self, name) >= 1, name, getattr(self, name), "an integer >= 1")
        check(self.max_episode_steps is None or self.max_episode_steps >= 1, "max_episode_steps",
              self.max_episode_steps, "null (the env's own limit) or an integer >= 1")
        check(self.frame_size is None or (len(self.frame_size) == 2 and min(self.frame_size) >= 8), "frame_size",
              self.frame_size, "null or [H, W], each at least 8")


@dataclass(frozen=True)
class EnvFacts:
    """What the collector learns from the env before any work, checked and stored in the manifest."""

    action_meanings: list[str]
    frame_shape: tuple[int, int, int]  # stored frames (H, W, 3)
    native_shape: tuple[int, int, int]
    from_observation: bool  # the observation is the frame; else env.render()
    has_positions: bool
    has_captions: bool


def derive_seed(seed: int, episode: int, stream: int) -> int:
    return int(np.random.SeedSequence([seed, episode, stream]).generate_state(1, np.uint32)[0])


def make_env(cfg: CollectConfig) -> gym.Env:
    kwargs = dict(cfg.env_kwargs)
    if cfg.max_episode_steps is not None:
        kwargs["max_episode_steps"] = cfg.max_episode_steps
    try:
        return gym.make(cfg.env, render_mode="rgb_array", **kwargs)
    except gym.error.Error as err:
        hint = ""
        if isinstance(err, gym.error.UnregisteredEnv) and ":" not in cfg.env:  # ids a package registers on import
            hint = (f"; if a package registers it when imported, name the package first: env=PACKAGE:{cfg.env} "
                    "(Atari: env=ale_py:ALE/Breakout-v5)")
        raise ValueError(f"env={cfg.env!r}: {err}{hint}") from None


def _is_image(x: Any) -> bool:
    return isinstance(x, np.ndarray) and x.dtype == np.uint8 and x.ndim == 3 and x.shape[2] == 3


def target_shape(native: tuple[int, ...], frame_size: list[int] | None) -> tuple[int, int, int]:
    h, w = native[:2]
    if frame_size is not None:
        if len(frame_size) != 2 or min(frame_size) < 8:
            raise ValueError(f"frame_size={frame_size}: expected [H, W], each at least 8")
        return int(frame_size[0]), int(frame_size[1]), 3
    if max(h, w) <= MAX_NATIVE:
        return h, w, 3
    scale = AUTO_SHORT_SIDE / min(h, w)  # keep the aspect ratio, sides a multiple of 8
    return max(8, round(h * scale / 8) * 8), max(8, round(w * scale / 8) * 8), 3


def resize(frame: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """Antialiased bilinear resize of a (H, W, 3) uint8 frame (so thin lines survive downscaling)."""
    if frame.shape == shape:
        return frame
    import torch  # imported only when a frame needs resizing: it costs ~2 s of start-up per worker
    import torch.nn.functional as F

    x = torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1)[None]  # (1, 3, H, W) uint8, channels last
    # note: stay in uint8. A float copy of every native frame fragmented the heap between the small frames we
    # keep, and memory grew by a native float frame per stored frame (OOM at 20k CartPole frames).
    y = F.interpolate(x, size=shape[:2], mode="bilinear", antialias=True, align_corners=False)
    return np.array(y[0].permute(1, 2, 0).numpy(), order="C", copy=True)  # a plain array: .numpy() keeps y alive


def inspect_env(cfg: CollectConfig) -> EnvFacts:
    """Make the env once and check it can be collected from; a clear error before any work if not."""
    env = make_env(cfg)
    try:
        if not isinstance(env.action_space, gym.spaces.Discrete):
            raise ValueError(f"env={cfg.env!r} has action space {env.action_space}: worldsim needs a Discrete one")
        obs, info = env.reset(seed=cfg.seed)
        from_obs = _is_image(obs)
        frame = obs if from_obs else env.render()
        if not _is_image(frame):
            what = "None" if frame is None else f"{type(frame).__name__} {getattr(frame, 'shape', '')}"
            raise ValueError(f"env={cfg.env!r} gives no rgb frames: its observations are not (H, W, 3) uint8 images "
                             f"and render() with render_mode='rgb_array' returned {what}")
        unwrapped = env.unwrapped
        meanings = (list(unwrapped.get_action_meanings()) if hasattr(unwrapped, "get_action_meanings")
                    else [str(i) for i in range(env.action_space.n)])
        pos = info.get("player_pos")
        return EnvFacts(action_meanings=meanings, frame_shape=target_shape(frame.shape, cfg.frame_size),
                        native_shape=tuple(frame.shape), from_observation=from_obs,
                        has_positions=isinstance(pos, tuple) and len(pos) == 2,
                        has_captions=isinstance(info.get("caption"), str))
    finally:
        env.close()


def _release_memory() -> None:
    """Give freed heap pages back to the OS (glibc). Large native frames (CartPole's 400x600 renders) raise glibc's
    mmap threshold, land in the heap and fragment it among the small frames kept: resident memory crept up ~50 KB
    per frame. Only needed when resizing; elsewhere the re-faulted pages would cost 5-9% of the collection rate."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to do
        pass


def _share(steps: int, workers: int, k: int) -> int:
    return steps // workers + (k < steps % workers)


@dataclass(frozen=True)
class Segment:
    """A run of shards worker k has to write: the first one's index, its first episode, the worker's rows before
    it and after the run; `next_episode` is where the next shard on disk starts (None: the run ends the share)."""

    index: int
    episode: int
    rows: int
    end: int
    next_episode: int | None


def _segments(root: Path, k: int, workers: int, share: int) -> tuple[list[Segment], int]:
    """What worker k still has to write, from its complete shards: each gap between them (shards deleted, or lost
    to a crash), then the rest of its share; and the rows it holds."""
    shards = [open_shard(p) for p in shard_paths(root) if parse_name(p.name)[0] == k]  # in index order
    segments, index, episode, rows, held = [], 0, k, 0, 0
    for shard in shards:
        m = shard.meta
        before = m.get("rows_before", rows)  # (shards written before it was recorded follow one another)
        if m["index"] > index:
            if "rows_before" not in m:
                raise ShardError(f"{shard.path}: shards before it are missing and it was written before shards "
                                 f"recorded their place, so they cannot be restored: collect into a new directory")
            segments.append(Segment(index, episode, rows, before, m["episodes"][0]["id"]))
        index, rows, held = m["index"] + 1, before + shard.rows, held + shard.rows
        episode = max(e["id"] for e in m["episodes"]) + workers
    if rows < share:
        segments.append(Segment(index, episode, rows, share, None))
    return segments, held


def run_worker(cfg: CollectConfig, k: int, facts: EnvFacts, report: Callable[[int], None]) -> None:
    """Worker k: restore its missing shards, then play its episodes until its share of `steps` is stored, writing a
    shard every `shard_steps`."""
    from worldsim.agents.base import make_agent

    root = Path(cfg.out)
    segments, held = _segments(root, k, cfg.workers, _share(cfg.steps, cfg.workers, k))
    report(held)
    if not segments:
        return
    env = make_env(cfg)
    agent = make_agent(cfg.agent, env.action_space, cfg.env, **cfg.agent_options)
    for seg in segments:
        writer = ShardWriter(root, k, seg.index, facts.frame_shape, rows_before=seg.rows)
        episode = _play(cfg, facts, env, agent, writer, seg, lambda rows: report(held + rows - seg.rows))
        held += seg.end - seg.rows
        if seg.next_episode is not None and episode != seg.next_episode:
            raise RuntimeError(f"restoring {shard_name(k, seg.index)}: the replay reached episode {episode} where "
                               f"the next shard starts with episode {seg.next_episode}: {cfg.env} or agent "
                               f"{cfg.agent!r} does not replay deterministically from its seeds")
    env.close()


def _play(cfg: CollectConfig, facts: EnvFacts, env: gym.Env, agent, writer: ShardWriter, seg: Segment,
          report: Callable[[int], None]) -> int:
    """Play episodes from `seg.episode` until the worker holds `seg.end` rows, cutting the last episode there (the
    budget, or the cut an earlier budget made), and write them; returns the next episode id."""
    shape = facts.frame_shape

    def frame_of(obs) -> np.ndarray:
        raw = obs if facts.from_observation else env.render()
        return resize(raw, shape) if raw.shape != shape else np.array(raw)  # a copy: envs may reuse buffers

    rows, episode = seg.rows, seg.episode
    while rows < seg.end:
        seed = derive_seed(cfg.seed, episode, 0)
        obs, info = env.reset(seed=seed)
        agent.reset(derive_seed(cfg.seed, episode, 1))
        writer.add(frame_of(obs), -1, 0.0, False, False, episode, info.get("caption", ""),
                   info.get("player_pos") if facts.has_positions else None)
        rows += 1
        cut, length = False, 1
        while True:
            if rows >= seg.end and length >= 2:  # the budget ends this episode (after at least one transition)
                writer.mark_truncated()
                cut = True
                break
            action = agent.act(obs, info)
            obs, reward, terminated, truncated, info = env.step(action)
            writer.add(frame_of(obs), action, float(reward), bool(terminated), bool(truncated), episode,
                       info.get("caption", ""), info.get("player_pos") if facts.has_positions else None)
            rows += 1
            length += 1
            if rows % 256 == 0:
                report(rows)
            if terminated or truncated:
                break
        writer.end_episode(episode, seed, getattr(agent, "current", cfg.agent), cut)
        episode += cfg.workers
        if len(writer) >= cfg.shard_steps:
            writer.flush()
            if facts.native_shape != shape:
                _release_memory()
    writer.flush()
    report(rows)
    return episode


def _check_manifest(root: Path, manifest: dict) -> None:
    old = read_manifest(root)
    clash = {key: (old.get(key), manifest[key]) for key in _IDENTITY if old.get(key) != manifest[key]}
    if clash:
        said = ", ".join(f"{k}={v[0]!r} (now {v[1]!r})" for k, v in clash.items())
        raise ValueError(f"out={str(root)!r} holds a dataset collected with {said}: collect again with the same "
                         f"settings to continue it, or choose another out=")


def _prepare(root: Path, manifest: dict, quiet: bool) -> None:
    """Check a dataset already at `root` is this one, write the manifest, and clear what a killed run left."""
    if (root / MANIFEST).exists():
        _check_manifest(root, manifest)
    write_manifest(root, manifest)
    stale = remove_incomplete(root)
    if stale and not quiet:
        print(f"removed {len(stale)} incomplete shard(s) left by an interrupted run; continuing")


def collect(cfg: CollectConfig, quiet: bool = False) -> dict:
    """Collect `cfg.steps` frames into `cfg.out` (continuing a dataset already there); returns the summary. Under
    torchrun every rank calls it with the same settings (refused otherwise) and plays its `cfg.workers` of them all."""
    ranks, ours = join(cfg), range(cfg.workers)  # ranks: None unless torchrun started several processes
    if ranks:
        cfg, ours, quiet = ranks.dataset, ranks.ours, quiet or not ranks.is_main  # rank 0 alone prints
    if not quiet:
        print(show(cfg), end="")
        if ranks:
            print(ranks.banner())
    facts = inspect_env(cfg)
    from worldsim.agents.base import make_agent

    make_agent(cfg.agent, gym.spaces.Discrete(len(facts.action_meanings)), cfg.env, **cfg.agent_options)  # check
    if ranks:
        ranks.agree(facts)
    root = Path(cfg.out)
    root.mkdir(parents=True, exist_ok=True)
    settings = {k: v for k, v in to_dict(cfg).items() if k != "out"}  # the directory may move; its data won't
    manifest = dataset_manifest(**settings, action_meanings=facts.action_meanings, frame_shape=facts.frame_shape,
                                native_frame_shape=facts.native_shape, captions=facts.has_captions,
                                frame_source="observation" if facts.from_observation else "render")
    if ranks:
        ranks.prepare(root, lambda: _prepare(root, manifest, quiet))
    else:
        _prepare(root, manifest, quiet)

    start = time.perf_counter()
    progress = Progress(cfg.steps, "collect", "frames") if not quiet else None
    try:
        if cfg.workers == 1:  # (never under torchrun: there the dataset's workers are R*K >= 2)
            run_worker(cfg, 0, facts, lambda rows: progress and progress.update(rows))
        else:
            run_processes(cfg, facts, progress, ours, ranks, work=run_worker, method=start_method())
    except KeyboardInterrupt:
        raise KeyboardInterrupt("collect interrupted: complete shards are kept; run the same command to "
                                "continue") from None
    seconds = time.perf_counter() - start
    if ranks:
        return ranks.finish(root, lambda: _finish(root, seconds, progress))
    return _finish(root, seconds, progress)


def _finish(root: Path, seconds: float, progress: Progress | None) -> dict:
    """Once every worker is done: record the shards as the complete dataset, and write and print the summary."""
    from worldsim.data.stats import format_summary, summarize

    record_complete(root, shard_paths(root))  # every worker is done: from now on a lost shard is named on load
    summary = summarize(root)
    summary["collect_seconds"] = seconds
    if progress:
        progress.close(summary["frames"])
        print(format_summary(summary))
    from worldsim.io import atomic_write_json

    atomic_write_json(root / "summary.json", summary)
    return summary


def start_method() -> str:
    """fork where it is safe (no other threads, torch not loaded: OpenMP does not survive a fork), as it starts a
    worker ~0.5 s sooner than spawn, which re-imports everything in a clean interpreter; spawn otherwise."""
    if "fork" in mp.get_all_start_methods() and threading.active_count() == 1 and "torch" not in sys.modules:
        return "fork"
    return "spawn"
