"""The dataset format: a directory with `manifest.json` and complete shards, each a directory of `.npy` arrays.

    dataset/
      manifest.json            env id and kwargs, action meanings, frame size, agent, seed, format version
      shard-w00-00000/         one worker's whole episodes, written under a temporary name and renamed when complete
        frames.npy             (N, H, W, 3) uint8
        actions.npy            (N,) int16: the action that LED TO this frame; -1 on each episode's first (reset) frame
        rewards.npy            (N,) float32: the reward received arriving at this frame
        terminated.npy         (N,) bool: this frame ended the episode (the env said so)
        truncated.npy          (N,) bool: this frame was the last of a truncated episode (time limit, or collection cut)
        episode.npy            (N,) int64: global episode id
        positions.npy          (N, 2) int32: player (x, y) in the world, for envs that report it (Craft2D)
        captions.json          N strings: the env's caption of each frame ("" for envs without captions)
        meta.json              row count, episodes (id, seed, agent, first row, length, return), and every file's
                               shape, dtype, size and sha256: written last, so a shard without it is incomplete

Rows follow the arrival convention because that is what a world model learns: frame t from the frames before it and
the action between. An episode of T actions is T + 1 rows. Minari's convention converts losslessly (see minari_io).
Readers memory-map the arrays and refuse a shard whose files disagree with its meta.json, naming the file.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from worldsim.io import atomic_write_json

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
META = "meta.json"
CAPTIONS = "captions.json"
ARRAYS = {  # name -> (dtype, trailing shape or None for per-row scalars); frames' trailing shape is the frame size
    "frames": np.uint8, "actions": np.int16, "rewards": np.float32, "terminated": np.bool_, "truncated": np.bool_,
    "episode": np.int64, "positions": np.int32,
}
OPTIONAL = ("positions",)


class ShardError(ValueError):
    """A shard or manifest that cannot be trusted: the message names the file and what is wrong with it."""


def shard_name(worker: int, index: int) -> str:
    return f"shard-w{worker:02d}-{index:05d}"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass
class EpisodeMeta:
    id: int
    seed: int
    agent: str
    start: int  # first row in the shard
    length: int  # rows (frames), the reset frame included
    ret: float  # sum of rewards
    cut: bool = False  # ended by the collection budget rather than by the env


@dataclass
class ShardWriter:
    """Accumulates whole episodes for one worker and writes them as a shard when asked."""

    root: Path
    worker: int
    index: int
    rows: list[dict[str, Any]] = field(default_factory=list)
    episodes: list[EpisodeMeta] = field(default_factory=list)
    _episode_start: int = 0

    def add(self, frame: np.ndarray, action: int, reward: float, terminated: bool, truncated: bool, episode: int,
            caption: str, position: tuple[int, int] | None) -> None:
        self.rows.append(dict(frames=frame, actions=action, rewards=reward, terminated=terminated,
                              truncated=truncated, episode=episode, positions=position, caption=caption))

    def end_episode(self, episode: int, seed: int, agent: str, cut: bool) -> None:
        rows = self.rows[self._episode_start:]
        ret = float(sum(r["rewards"] for r in rows))
        self.episodes.append(EpisodeMeta(episode, seed, agent, self._episode_start, len(rows), ret, cut))
        self._episode_start = len(self.rows)

    def flush(self) -> Path | None:
        """Write the finished episodes as one shard (a temporary directory renamed into place); None if empty."""
        rows = self.rows[:self._episode_start]
        if not rows:
            return None
        final = self.root / shard_name(self.worker, self.index)
        tmp = self.root / f".{final.name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            files = {}
            has_positions = rows[0]["positions"] is not None
            for name, dtype in ARRAYS.items():
                if name == "positions" and not has_positions:
                    continue
                array = np.asarray([r[name] for r in rows], dtype=dtype) if name != "frames" else np.stack(
                    [r["frames"] for r in rows])
                path = tmp / f"{name}.npy"
                np.save(path, array)
                files[path.name] = {"shape": list(array.shape), "dtype": array.dtype.str}
            (tmp / CAPTIONS).write_text(json.dumps([r["caption"] for r in rows]))
            files[CAPTIONS] = {"shape": [len(rows)], "dtype": "json"}
            for name, info in files.items():
                path = tmp / name
                with open(path, "rb+") as f:
                    os.fsync(f.fileno())
                info["bytes"] = path.stat().st_size
                info["sha256"] = _sha256(path)
            meta = {"format_version": FORMAT_VERSION, "rows": len(rows), "worker": self.worker, "index": self.index,
                    "episodes": [vars(e) for e in self.episodes], "files": files}
            atomic_write_json(tmp / META, meta)
            _fsync_dir(tmp)
            os.rename(tmp, final)  # atomic: the shard appears complete or not at all
            _fsync_dir(self.root)
        except BaseException as err:
            shutil.rmtree(tmp, ignore_errors=True)
            if isinstance(err, OSError):
                raise OSError(err.errno, f"could not write shard {final}: {err.strerror}; nothing partial was left "
                                         f"behind, the complete shards are intact") from err
            raise
        self.rows = self.rows[self._episode_start:]
        self.episodes, self._episode_start, self.index = [], 0, self.index + 1
        return final


def remove_incomplete(root: Path) -> list[Path]:
    """Delete temporary shard directories left by a killed collect run; returns what was removed."""
    stale = sorted(p for p in Path(root).glob(".shard-*.tmp") if p.is_dir())
    for p in stale:
        shutil.rmtree(p, ignore_errors=True)
    return stale


@dataclass(frozen=True)
class Shard:
    """A complete shard, memory-mapped and checked against its meta.json."""

    path: Path
    meta: dict
    arrays: dict[str, np.ndarray]  # name -> memmap

    @property
    def rows(self) -> int:
        return self.meta["rows"]

    def captions(self) -> list[str]:
        return json.loads((self.path / CAPTIONS).read_text())


def open_shard(path: Path, frame_shape: tuple[int, ...] | None = None, verify_frames: bool = False) -> Shard:
    """Memory-map a shard. Every file's shape, dtype and size must match meta.json, and every file but frames.npy
    (and frames.npy too with `verify_frames`) its sha256; otherwise ShardError names the file."""
    path = Path(path)
    meta_path = path / META
    try:
        meta = json.loads(meta_path.read_text())
        files, rows = meta["files"], int(meta["rows"])
        episodes = meta["episodes"]
    except FileNotFoundError:
        raise ShardError(f"{meta_path}: missing; the shard is incomplete (delete {path})") from None
    except (ValueError, KeyError, TypeError) as err:
        raise ShardError(f"{meta_path}: not a valid shard description ({err})") from None
    if meta.get("format_version") != FORMAT_VERSION:
        raise ShardError(f"{meta_path}: format_version {meta.get('format_version')!r}, expected {FORMAT_VERSION}")
    arrays = {}
    for name in ARRAYS:
        fname = f"{name}.npy"
        if fname not in files:
            if name in OPTIONAL:
                continue
            raise ShardError(f"{meta_path}: lists no {fname}")
    for fname, info in files.items():
        fpath = path / fname
        if not fpath.exists():
            raise ShardError(f"{fpath}: missing")
        size = fpath.stat().st_size
        if size != info["bytes"]:
            raise ShardError(f"{fpath}: {size} bytes, meta.json says {info['bytes']} (truncated or edited)")
        if (fname != "frames.npy" or verify_frames) and _sha256(fpath) != info["sha256"]:
            raise ShardError(f"{fpath}: contents differ from the checksum in meta.json (edited or corrupt)")
        if fname == CAPTIONS:
            continue
        try:
            array = np.load(fpath, mmap_mode="r")
        except (ValueError, OSError) as err:
            raise ShardError(f"{fpath}: not a readable .npy array ({err})") from None
        name = fname[:-4]
        if list(array.shape) != info["shape"] or array.dtype.str != info["dtype"] or array.shape[0] != rows:
            raise ShardError(f"{fpath}: shape {array.shape} {array.dtype.str}, meta.json says {info['shape']} "
                             f"{info['dtype']} with {rows} rows")
        arrays[name] = array
    if frame_shape is not None and arrays["frames"].shape[1:] != tuple(frame_shape):
        raise ShardError(f"{path / 'frames.npy'}: frames of {arrays['frames'].shape[1:]}, the manifest says "
                         f"{tuple(frame_shape)}")
    if sum(e["length"] for e in episodes) != rows:
        raise ShardError(f"{meta_path}: episode lengths add up to {sum(e['length'] for e in episodes)}, not {rows}")
    return Shard(path=path, meta=meta, arrays=arrays)


def write_manifest(root: Path, manifest: dict) -> None:
    atomic_write_json(Path(root) / MANIFEST, {"format_version": FORMAT_VERSION, **manifest})


def read_manifest(root: Path) -> dict:
    path = Path(root) / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise ShardError(f"{path}: missing; {root} is not a worldsim dataset (make one with `worldsim collect`)") \
            from None
    except ValueError as err:
        raise ShardError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(manifest, dict):  # valid JSON, but not a manifest: a clear error, not an AttributeError
        raise ShardError(f"{path}: a JSON {type(manifest).__name__}, expected an object with format_version")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ShardError(f"{path}: format_version {manifest.get('format_version')!r}, expected {FORMAT_VERSION}")
    return manifest


def shard_paths(root: Path) -> list[Path]:
    """Complete shards, in order (temporary directories of interrupted runs are not shards)."""
    return sorted(p for p in Path(root).glob("shard-w*-*") if p.is_dir())


def open_dataset(root: Path, verify_frames: bool = False) -> tuple[dict, list[Shard]]:
    manifest = read_manifest(root)
    shards = [open_shard(p, tuple(manifest["frame_shape"]), verify_frames) for p in shard_paths(root)]
    return manifest, shards
