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
        meta.json              row count, the worker's rows before this shard, episodes (id, seed, agent, first
                               row, length, return), and every file's shape, dtype, size and sha256: written last,
                               so a shard without it is incomplete
        verified.json          written by readers: which files were verified against meta.json (see integrity)
      shards.json              written when a collect finishes: every shard and its meta.json's sha256

Rows follow the arrival convention because that is what a world model learns: frame t from the frames before it and
the action between. An episode of T actions is T + 1 rows. Minari's convention converts losslessly (see minari_io).
Readers memory-map the arrays and refuse a shard whose files disagree with its meta.json (checksums verified once,
then only when a file changes), a float array with NaN or inf, and a dataset with a shard missing, naming it.
One writer (`write_shard`) writes every shard directory, of frames (ShardWriter) or of latents (latents.py), and one
function (`dataset_manifest`) builds every manifest.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from worldsim.data.integrity import ShardError, check_complete, parse_name, verify_contents
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


def shard_name(worker: int, index: int) -> str:
    return f"shard-w{worker:02d}-{index:05d}"


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


class _Hashing:
    """A file wrapper that hashes what is written through it: one pass writes and checksums an array."""

    def __init__(self, f):
        self.f, self.sha, self.bytes = f, hashlib.sha256(), 0
        self.name = f.name  # file-like: the path being written

    def write(self, data) -> int:
        self.sha.update(data)
        self.bytes += memoryview(data).nbytes
        return self.f.write(data)


_COLUMNS = ("actions", "rewards", "terminated", "truncated", "episode", "positions", "captions")


class ShardWriter:
    """Accumulates whole episodes for one worker and writes them as a shard when asked.

    Frames go straight into a preallocated buffer that doubles when full (no per-flush copy); the other fields are
    plain lists. The flush writes, checksums and fsyncs every file, then renames the directory into place.
    """

    def __init__(self, root: Path, worker: int, index: int, frame_shape: tuple[int, ...], capacity: int = 1024,
                 rows_before: int = 0):
        self.root, self.worker, self.index = Path(root), worker, index
        self.rows_before = rows_before  # the worker's rows in its shards before this one: where a lost shard began
        self.frames = np.empty((capacity, *frame_shape), np.uint8)  # (capacity, H, W, 3)
        self.cols: dict[str, list] = {name: [] for name in _COLUMNS}
        self.episodes: list[EpisodeMeta] = []
        self.n = 0  # rows held
        self._episode_start = 0

    def __len__(self) -> int:
        return self.n

    def add(self, frame: np.ndarray, action: int, reward: float, terminated: bool, truncated: bool, episode: int,
            caption: str, position: tuple[int, int] | None) -> None:
        if self.n == len(self.frames):
            self.frames = np.concatenate([self.frames, np.empty_like(self.frames)])
        self.frames[self.n] = frame
        c = self.cols
        c["actions"].append(action)
        c["rewards"].append(reward)
        c["terminated"].append(terminated)
        c["truncated"].append(truncated)
        c["episode"].append(episode)
        c["positions"].append(position)
        c["captions"].append(caption)
        self.n += 1

    def mark_truncated(self) -> None:
        """The last row ends its episode by truncation (the collection budget ran out)."""
        self.cols["truncated"][-1] = True

    def end_episode(self, episode: int, seed: int, agent: str, cut: bool) -> None:
        start = self._episode_start
        ret = float(sum(self.cols["rewards"][start:self.n]))
        self.episodes.append(EpisodeMeta(episode, seed, agent, start, self.n - start, ret, cut))
        self._episode_start = self.n

    def _arrays(self, m: int) -> dict[str, np.ndarray]:
        arrays = {"frames": self.frames[:m]}
        for name, dtype in ARRAYS.items():
            if name == "frames" or (name == "positions" and self.cols["positions"][0] is None):
                continue
            arrays[name] = np.asarray(self.cols[name][:m], dtype=dtype)
        return arrays

    def flush(self) -> Path | None:
        """Write the finished episodes as one shard (write_shard); None if there are none."""
        m = self._episode_start
        if m == 0:
            return None
        final = write_shard(self.root / shard_name(self.worker, self.index), self._arrays(m),
                            json.dumps(self.cols["captions"][:m]).encode(), worker=self.worker, index=self.index,
                            rows_before=self.rows_before, episodes=[vars(e) for e in self.episodes])
        rest = self.n - m  # rows of an unfinished episode move to the front
        self.frames[:rest] = self.frames[m:self.n]
        self.cols = {name: values[m:] for name, values in self.cols.items()}
        self.n, self._episode_start = rest, 0
        self.episodes, self.index, self.rows_before = [], self.index + 1, self.rows_before + m
        return final


def write_shard(final: Path, arrays: dict[str, np.ndarray], captions: bytes | None, **meta) -> Path:
    """Write one shard directory at `final`: each array as `name.npy`, `captions` (a JSON list, one string a row)
    as captions.json, every file checksummed as written and fsynced, then meta.json (rows, files, and `meta`) last;
    all in a temporary directory renamed into place, so the shard appears complete or not at all. The one writer of
    shards: frames (ShardWriter) and latents (latents.py) alike. On a disk error nothing partial is left behind."""
    final = Path(final)
    rows = len(next(iter(arrays.values())))
    tmp = final.parent / f".{final.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        files = {f"{name}.npy": _write(tmp / f"{name}.npy", lambda f, a=a: np.save(f, a), shape=list(a.shape),
                                       dtype=a.dtype.str) for name, a in arrays.items()}
        if captions is not None:
            files[CAPTIONS] = _write(tmp / CAPTIONS, lambda f: f.write(captions), shape=[rows], dtype="json")
        atomic_write_json(tmp / META, {"format_version": FORMAT_VERSION, "rows": rows, **meta, "files": files})
        _fsync_dir(tmp)
        os.rename(tmp, final)  # atomic: the shard appears complete or not at all
        _fsync_dir(final.parent)
    except BaseException as err:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(err, OSError):
            raise OSError(err.errno, f"could not write shard {final}: {err.strerror}; nothing partial was left "
                                     f"behind, the complete shards are intact") from err
        raise
    return final


def _write(path: Path, write, **info) -> dict:
    """Write a file through `write(f)`, checksumming as it goes, and fsync it; returns its meta.json entry."""
    with open(path, "wb") as raw:
        f = _Hashing(raw)
        write(f)
        raw.flush()
        os.fsync(raw.fileno())
    return {**info, "bytes": f.bytes, "sha256": f.sha.hexdigest()}


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


def open_shard(path: Path, frame_shape: tuple[int, ...] | None = None, *, rehash: bool = False,
               bulk: str = "frames", required: tuple[str, ...] | None = None) -> Shard:
    """Memory-map a shard. Every file's shape, dtype, size and sha256 must match meta.json and float arrays must be
    finite, otherwise ShardError names the file. Checksums are verified once and recorded (integrity.py): a later
    open hashes only files changed since, or all of them with `rehash`. `frame_shape` checks the bulk array's
    (frames.npy; latents.npy for a latent cache) per-row shape."""
    path = Path(path)
    meta_path = path / META
    required = tuple(name for name in ARRAYS if name not in OPTIONAL) if required is None else required
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
    for name in required:
        if f"{name}.npy" not in files:
            raise ShardError(f"{meta_path}: lists no {name}.npy")
    for fname, info in files.items():  # the cheap checks first: a truncated file is named as such
        fpath = path / fname
        if not fpath.exists():
            raise ShardError(f"{fpath}: missing")
        size = fpath.stat().st_size
        if size != info["bytes"]:
            raise ShardError(f"{fpath}: {size} bytes, meta.json says {info['bytes']} (truncated or edited)")
    verify_contents(path, files, rehash)
    arrays = {}
    for fname, info in files.items():
        if fname == CAPTIONS:
            continue
        fpath = path / fname
        try:
            array = np.load(fpath, mmap_mode="r")
        except (ValueError, OSError) as err:
            raise ShardError(f"{fpath}: not a readable .npy array ({err})") from None
        if list(array.shape) != info["shape"] or array.dtype.str != info["dtype"] or array.shape[0] != rows:
            raise ShardError(f"{fpath}: shape {array.shape} {array.dtype.str}, meta.json says {info['shape']} "
                             f"{info['dtype']} with {rows} rows")
        arrays[fname[:-4]] = array
    if frame_shape is not None and tuple(arrays[bulk].shape[1:]) != tuple(frame_shape):
        raise ShardError(f"{path / (bulk + '.npy')}: {bulk} of {arrays[bulk].shape[1:]}, the manifest says "
                         f"{tuple(frame_shape)}")
    if sum(e["length"] for e in episodes) != rows:
        raise ShardError(f"{meta_path}: episode lengths add up to {sum(e['length'] for e in episodes)}, not {rows}")
    return Shard(path=path, meta=meta, arrays=arrays)


def dataset_manifest(*, env: str | None, action_meanings: Sequence[str], frame_shape: Sequence[int],
                     captions: bool, native_frame_shape: Sequence[int] | None = None,
                     frame_source: str = "observation", **made_by) -> dict:
    """The one builder of a dataset's manifest (collect, `worldsim play` recordings, Minari imports): what readers
    need, then `made_by`, the settings that made the data (agent, seed, steps, ...)."""
    return {**made_by, "env": env, "action_meanings": list(action_meanings), "frame_shape": list(frame_shape),
            "native_frame_shape": list(native_frame_shape if native_frame_shape is not None else frame_shape),
            "frame_source": frame_source, "action_convention": "arrival", "captions": bool(captions)}


def write_manifest(root: Path, manifest: dict) -> None:
    atomic_write_json(Path(root) / MANIFEST, {**manifest, "format_version": FORMAT_VERSION})


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
    return sorted(p for p in Path(root).glob("shard-w*-*") if p.is_dir() and parse_name(p.name))


def restore_hint(manifest: dict) -> str:
    """How to get a lost shard of this dataset back, for error messages."""
    if "latent_shape" in manifest:
        return ("Encode the dataset again (encode_dataset, which `worldsim train world` runs first): it encodes "
                "only the missing shards.")
    if "imported_from" in manifest:
        return f"Import it again (`worldsim import`, from {manifest['imported_from']}) into a new directory."
    if manifest.get("source") == "worldsim play":
        return "A recording cannot be played again: record a new one."
    return ("Re-run the same `worldsim collect` command: episodes are seeded, so it restores exactly the missing "
            "shards, byte for byte.")


def complete_shard_paths(root: Path, manifest: dict) -> list[Path]:
    """The dataset's shards, refusing a dataset without any or with one missing (integrity.check_complete); the
    shards of a frame dataset and of a latent cache alike."""
    paths = shard_paths(root)
    if not paths:
        raise ShardError(f"{root}: holds no complete shards. {restore_hint(manifest)}")
    check_complete(root, paths, restore_hint(manifest))
    return paths


def open_dataset(root: Path, rehash: bool = False) -> tuple[dict, list[Shard]]:
    """The manifest and every shard, checked: no shard missing (integrity.check_complete), each one intact."""
    manifest = read_manifest(root)
    paths = complete_shard_paths(root, manifest)
    return manifest, [open_shard(p, tuple(manifest["frame_shape"]), rehash=rehash) for p in paths]
