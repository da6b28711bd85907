"""Is a shard what its writer wrote, and is every shard there? Checked on every load, cheaply.

Contents. meta.json carries every file's sha256 (the writer hashes as it writes). The first load of a shard hashes
each file and scans its float arrays for NaN and inf; then `verified.json` in the shard records each verified file's
(inode, size, mtime, ctime) beside the checksum it matched, so later loads hash only what changed since: any write
to a file moves its ctime, which no user call can set back, and a replacement is another inode. File times are coarse
(a clock tick), so a file changed within RACY_S of its verification could change again unseen: it is not recorded
and is hashed again next time (git's "racily clean" rule).

Presence. A finished collect (encode, import) writes `shards.json`: every shard it left and its meta.json's sha256.
A load refuses a dataset where a listed shard is gone or is another one, and, listed or not, one where a worker's
shard indices have a gap (a shard deleted from the middle of an unfinished dataset).
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from pathlib import Path

import numpy as np

from worldsim.io import atomic_write_json

VERIFIED = "verified.json"
COMPLETE = "shards.json"
RACY_S = 2.0  # seconds: far above any filesystem's clock tick for ctime
_NAME = re.compile(r"shard-w(\d+)-(\d+)")
_FINITE_ROWS_BYTES = 64 << 20  # scan float arrays in blocks of about this many bytes: memory stays flat


class ShardError(ValueError):
    """A shard or manifest that cannot be trusted: the message names the file and what is wrong with it."""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _check_finite(path: Path) -> None:
    array = np.load(path, mmap_mode="r")  # (N, ...) float
    step = max(1, _FINITE_ROWS_BYTES // max(1, array[:1].nbytes))
    for start in range(0, len(array), step):
        bad = ~np.isfinite(array[start:start + step])
        if bad.any():
            first = start + int(np.argwhere(bad.reshape(len(bad), -1).any(axis=1))[0, 0])
            count = int(np.count_nonzero(~np.isfinite(array)))
            raise ShardError(f"{path}: {count} non-finite values (NaN or inf), the first in row {first}: a model "
                             f"trained on them diverges. Delete shard {path.parent} and write it again (for a latent "
                             f"cache: encode again with an autoencoder whose encoder gives finite latents)")


def verify_contents(shard: Path, files: dict[str, dict], rehash: bool = False) -> None:
    """Check every file that meta.json lists (`files`) against its sha256, and float arrays for non-finite values,
    skipping files recorded in verified.json as verified and unchanged since (all of them with `rehash`); records
    what it verified. Raises ShardError naming the file."""
    record_path = shard / VERIFIED
    try:
        record = {} if rehash else json.loads(record_path.read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):  # none yet, or damaged: verify everything again
        record = {}
    now, verified = time.time_ns(), {}
    for fname, info in files.items():
        fpath = shard / fname
        st = fpath.stat()  # before hashing: a write during the hash moves the stamp, so it is hashed again next time
        stamp = [st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, info["sha256"]]
        if record.get(fname) == stamp:
            verified[fname] = stamp
            continue
        if sha256_file(fpath) != info["sha256"]:
            raise ShardError(f"{fpath}: contents differ from the checksum in meta.json (edited or corrupt): this "
                             f"shard cannot be trusted; delete {shard} and write it again (re-run the same "
                             f"`worldsim collect` command; for a latent cache, encode again)")
        if fname.endswith(".npy") and np.dtype(info["dtype"]).kind == "f":
            _check_finite(fpath)
        if now - max(st.st_mtime_ns, st.st_ctime_ns) > RACY_S * 1e9:  # see the module docstring
            verified[fname] = stamp
    if verified != record:
        try:
            atomic_write_json(record_path, {"files": verified})
        except OSError:  # a read-only dataset: verified again next time, nothing lost but time
            pass


def parse_name(name: str) -> tuple[int, int] | None:
    """(worker, index) of a shard directory's name, None for anything else."""
    m = _NAME.fullmatch(name)
    return (int(m[1]), int(m[2])) if m else None


def record_complete(root: Path, paths: list[Path], keep: bool = True) -> None:
    """Add the shards at `paths` to the dataset's completion record. With `keep`, entries already there are kept as
    they were, so a shard replaced by hand is never blessed by a later collect; a latent cache, whose every shard
    encode_dataset has just checked against its source, passes keep=False."""
    path = Path(root) / COMPLETE
    listed = _read_complete(root) if keep else {}
    new = {p.name: {"meta_sha256": sha256_file(p / "meta.json")} for p in paths if p.name not in listed}
    if new or not keep or not path.exists():
        atomic_write_json(path, {"shards": {**listed, **new}})


def _read_complete(root: Path) -> dict:
    try:
        return json.loads((Path(root) / COMPLETE).read_text())["shards"]
    except FileNotFoundError:
        return {}
    except (ValueError, KeyError, TypeError) as err:
        raise ShardError(f"{Path(root) / COMPLETE}: not a valid list of shards ({err})") from None


def check_complete(root: Path, paths: list[Path], remedy: str) -> None:
    """Refuse a dataset with a shard missing or swapped: one listed in shards.json and gone or changed, or a gap in
    a worker's shard indices. `remedy` tells the person how to get the shard back."""
    root, present = Path(root), {p.name: p for p in paths}
    listed = _read_complete(root)
    missing = {name for name in listed if name not in present}
    by_worker: dict[int, list[int]] = {}
    for name in present:
        worker, index = parse_name(name)
        by_worker.setdefault(worker, []).append(index)
    for worker, indices in by_worker.items():
        missing |= {f"shard-w{worker:02d}-{i:05d}" for i in set(range(max(indices))) - set(indices)}
    if missing:
        names = sorted(missing)
        raise ShardError(f"{root}: {len(names)} shard(s) missing (deleted?): {', '.join(names)}. {remedy}")
    for name, entry in listed.items():
        if sha256_file(present[name] / "meta.json") != entry["meta_sha256"]:
            raise ShardError(f"{present[name] / 'meta.json'}: not the shard this dataset was written with (its "
                             f"meta.json changed since, or the shard was replaced): delete {present[name]}. {remedy}")
