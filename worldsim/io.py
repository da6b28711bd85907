"""Files that are never half-written: write to a temporary name beside the target, then rename over it."""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path beside `path` for a writer to fill (any writer: np.save, Pillow, moviepy); when the
    block ends without error the file is fsynced and renamed over `path`, else removed. A crash leaves either the
    old file or the new one, never a torn one. `suffix` ends the temporary name: writers that choose the format
    from the file name (Pillow, moviepy) need the real one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes files private (0600); give them the usual mode
        yield Path(tmp)
        with open(tmp, "rb") as f:  # the writer may not have synced: the rename must not land before the data
            os.fsync(f.fileno())
        os.replace(tmp, path)  # atomic on POSIX and Windows when on the same filesystem
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` so that a crash leaves either the old file or the new one, never a torn one."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def write_results(out: str | os.PathLike, stem: str, results: dict, markdown: str) -> Path:
    """A measuring command's output: `out`/`stem`.json (the figures) and `stem`.md (the report), each written
    atomically; the folder is made. Returns the folder."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / f"{stem}.json", json.dumps(results, indent=1).encode())
    atomic_write_bytes(out / f"{stem}.md", markdown.encode())
    return out
