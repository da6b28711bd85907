"""The latent cache: every shard of a dataset encoded once by a trained autoencoder, for world-model training.

    latents/
      manifest.json          the source dataset's manifest plus latent_shape [C, h, w], latent_dtype, the
                             autoencoder's identity (sha256 of its encoder and latent scale, its config, a
                             checkpoint path if given) and the source's identity (a hash of its manifest,
                             `steps` aside: a continued dataset is the same dataset)
      shard-w00-00000/       one per source shard, same name, written under a temporary name and renamed when complete
        latents.npy          (N, C, h, w) float16: normalised latents (ae.encode), ~unit std, so float16 loses nothing
        actions.npy ...      the source's other arrays, copied: actions, rewards, terminated, truncated, episode
                             (and positions, captions.json where the source has them)
        meta.json            rows, episodes (copied), every file's shape, dtype, size and sha256, and the sha256 of
                             the source shard's meta.json: written last, so a shard without it is incomplete

Encoding again skips the shards already done (a continued dataset only costs its new shards) and refuses a cache made
from another dataset or by another autoencoder, or from a source shard that has changed since.
`LatentClipDataset` samples clips of latents exactly as `ClipDataset` samples clips of frames: inside one episode,
with the same held-out episodes. `ViewBuckets` samples from several caches of one game at different frame sizes, a
whole batch from one of them.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from worldsim.data.loader import ClipFields, ClipIndex
from worldsim.data.integrity import check_complete, record_complete, sha256_file
from worldsim.data.shards import (
    CAPTIONS, META, Shard, ShardError, complete_shard_paths, open_shard, read_manifest, remove_incomplete,
    restore_hint, shard_paths, write_manifest, write_shard,
)
from worldsim.models.autoencoder import Autoencoder
from worldsim.progress import Progress

LATENT_DTYPE = np.float16
COPIED = {"actions": np.int16, "rewards": np.float32, "terminated": np.bool_, "truncated": np.bool_,
          "episode": np.int64, "positions": np.int32}  # the source arrays a latent shard carries over
OPTIONAL = ("positions",)


def ae_identity(ae: Autoencoder) -> str:
    """sha256 of what makes the latents: the encoder's weights and the latent scale (names, dtypes, shapes, values).
    The decoder is left out, so a decoder fine-tuned later (`worldsim train ae freeze_encoder=true`) keeps the cache
    and the world models trained on it."""
    h = hashlib.sha256()
    for name, t in sorted(ae.state_dict().items()):
        if name.startswith("decoder."):
            continue
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _source_identity(manifest: dict) -> str:
    """What makes a dataset itself: its manifest but `steps`, which grows when a collection is continued."""
    same = {k: v for k, v in manifest.items() if k != "steps"}
    return hashlib.sha256(json.dumps(same, sort_keys=True).encode()).hexdigest()


def _check_cache(out: Path, new: dict) -> None:
    old = read_manifest(out)
    if "latent_shape" not in old:
        raise ValueError(f"out_dir={str(out)!r} holds a frame dataset, not a latent cache: choose another out_dir")
    if old["source"]["identity"] != new["source"]["identity"]:
        raise ValueError(f"out_dir={str(out)!r} caches another dataset ({old['source']['path']}, env "
                         f"{old.get('env')!r}), not {new['source']['path']}: choose another out_dir or delete it")
    if old["autoencoder"]["sha256"] != new["autoencoder"]["sha256"]:
        raise ValueError(f"out_dir={str(out)!r} was encoded by another autoencoder (sha256 "
                         f"{old['autoencoder']['sha256'][:12]}..., checkpoint {old['autoencoder']['checkpoint']}), "
                         f"not this one ({new['autoencoder']['sha256'][:12]}...): latents of two autoencoders must "
                         f"not mix; choose another out_dir or delete it")


def open_cache(ae: Autoencoder, data_dir: str | Path, out_dir: str | Path, checkpoint: str | None = None) -> dict:
    """Create the latent cache of the dataset at `data_dir` in `out_dir`, or check that the one there caches this
    dataset with this autoencoder, and clear the temporary shards of a killed run. Returns its manifest."""
    _, manifest = _manifest(ae, data_dir, out_dir, checkpoint)
    _open(Path(out_dir), manifest)
    return manifest


def _open(out: Path, manifest: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    if (out / "manifest.json").exists():
        _check_cache(out, manifest)
    write_manifest(out, manifest)
    remove_incomplete(out)


def _manifest(ae: Autoencoder, data_dir: str | Path, out_dir: str | Path,
              checkpoint: str | None) -> tuple[dict, dict]:
    """The source dataset's manifest, and the cache's."""
    data_dir, out = Path(data_dir), Path(out_dir)
    if out.resolve() == data_dir.resolve():
        raise ValueError(f"out_dir={str(out)!r} is the dataset itself: the cache needs its own directory")
    if not ae.stats_fitted:
        raise ValueError("the autoencoder's latent scale is not fitted (latent_mean 0, latent_std 1): after training "
                         "call ae.fit_latent_stats(ae.encode_raw(sample_frames)) and save it, then encode")
    source = read_manifest(data_dir)
    H, W, _ = source["frame_shape"]
    f, C = ae.cfg.downsample, ae.cfg.latent_channels
    if H % f or W % f:
        raise ValueError(f"{data_dir}: frames of {H}x{W} are not multiples of the autoencoder's downsample={f}")
    return source, {**source, "latent_shape": [C, H // f, W // f], "latent_dtype": np.dtype(LATENT_DTYPE).str,
                    "autoencoder": {"sha256": ae_identity(ae), "config": asdict(ae.cfg), "checkpoint": checkpoint},
                    "source": {"path": str(data_dir.resolve()), "identity": _source_identity(source)}}


@torch.inference_mode()
def encode_dataset(ae: Autoencoder, data_dir: str | Path, out_dir: str | Path, batch_size: int = 256,
                   device: str | torch.device = "cpu", checkpoint: str | None = None, quiet: bool = True,
                   part: tuple[int, int] = (0, 1)) -> dict:
    """Encode every shard of the dataset at `data_dir` into a latent cache at `out_dir` (created, or continued:
    shards already encoded are checked and skipped). `ae` must have its latent scale fitted; it is moved to
    `device` and left in eval mode. `checkpoint` is recorded in the manifest for people; the state-dict hash is
    what identifies the autoencoder. Returns counts: shards encoded and skipped, rows, seconds.

    `part=(i, n)`, n > 1, encodes only shards i, i + n, i + 2n, ... of a cache `open_cache` has made, so n
    processes encode at once, no two writing one shard; a whole call afterwards checks every shard and records the
    cache complete (a part records nothing, and leaves the temporary shards alone: they may be another part's)."""
    index, count = part
    if not (count >= 1 and 0 <= index < count):
        raise ValueError(f"part={part!r}: expected (index, count) with count >= 1 and 0 <= index < count")
    data_dir, out = Path(data_dir), Path(out_dir)
    source, manifest = _manifest(ae, data_dir, out, checkpoint)
    if count == 1:
        _open(out, manifest)  # as open_cache, with the manifest already built
    else:
        if not (out / "manifest.json").exists():
            raise ValueError(f"part={part!r}: {out} is not a latent cache yet; make it with open_cache first")
        _check_cache(out, manifest)
    latent_shape, frame_shape = manifest["latent_shape"], tuple(manifest["frame_shape"])

    ae.to(device).eval()
    paths = shard_paths(data_dir)
    check_complete(data_dir, paths, restore_hint(source))  # never encode a dataset with a shard missing
    mine = paths[index::count]
    progress = None if quiet else Progress(len(mine), "encode", "shards")
    start, counts = time.perf_counter(), {"encoded": 0, "skipped": 0, "rows": 0}
    for i, path in enumerate(mine):
        final = out / path.name
        source_meta = sha256_file(path / META)
        if final.exists():
            done = open_latent_shard(final, latent_shape)
            if done.meta["source"]["meta_sha256"] != source_meta:
                raise ShardError(f"{final}: encoded from another version of {path} (its meta.json has changed "
                                 f"since): delete {final} and encode again")
            counts["skipped"] += 1
        else:
            done = _encode_shard(ae, open_shard(path, frame_shape), final, batch_size, source_meta)
            counts["encoded"] += 1
        counts["rows"] += done.rows
        if progress:
            progress.update(i + 1, f"{counts['rows']:,} frames")
    if progress:
        progress.close(len(mine))
    if count == 1:
        record_complete(out, [out / p.name for p in paths], keep=False)  # each one checked above
    return {**counts, "shards": len(mine), "seconds": time.perf_counter() - start}


def _encode_shard(ae: Autoencoder, src: Shard, final: Path, batch_size: int, source_meta: str) -> Shard:
    """Encode one source shard into the latent shard `final` (written by shards.write_shard)."""
    frames = src.arrays["frames"]  # (N, H, W, 3) memmap
    device = ae.latent_mean.device
    chunks = []
    for i in range(0, src.rows, batch_size):
        x = torch.from_numpy(np.array(frames[i:i + batch_size])).to(device)  # (n, H, W, 3) uint8, read from the memmap
        chunks.append(ae.encode(x).float().cpu().numpy().astype(LATENT_DTYPE))  # (n, C, h, w)
    latents = np.concatenate(chunks)  # (N, C, h, w)
    bad = ~np.isfinite(latents)
    if bad.any():  # a diverged encoder, or latents beyond float16's range: never cached, never trained on
        raise ValueError(f"{src.path}: the autoencoder encodes it to {int(bad.sum())} non-finite latent values (NaN "
                         f"or inf, beyond float16's range): its weights or latent scale are broken; retrain or pick "
                         f"another checkpoint, then encode again")
    arrays = {"latents": latents, **{name: np.asarray(src.arrays[name]) for name in COPIED if name in src.arrays}}
    captions = (src.path / CAPTIONS).read_bytes() if CAPTIONS in src.meta["files"] else None
    write_shard(final, arrays, captions, worker=src.meta.get("worker"), index=src.meta.get("index"),
                episodes=src.meta["episodes"], source={"shard": src.path.name, "meta_sha256": source_meta})
    return open_latent_shard(final, list(latents.shape[1:]))


def open_latent_shard(path: str | Path, latent_shape: list[int] | tuple[int, ...] | None = None,
                      rehash: bool = False) -> Shard:
    """Memory-map a latent shard, checked like a frame shard (sizes, shapes, checksums verified once, finite
    latents); ShardError names the file (delete the shard and encode again)."""
    required = tuple(name for name in ("latents", *COPIED) if name not in OPTIONAL)
    return open_shard(Path(path), latent_shape, rehash=rehash, bulk="latents", required=required)


def open_latent_dataset(root: str | Path, rehash: bool = False) -> tuple[dict, list[Shard]]:
    manifest = read_manifest(root)
    if "latent_shape" not in manifest:
        raise ShardError(f"{Path(root) / 'manifest.json'}: a frame dataset, not a latent cache (make one with "
                         f"worldsim.data.latents.encode_dataset)")
    paths = complete_shard_paths(Path(root), manifest)
    return manifest, [open_latent_shard(p, manifest["latent_shape"], rehash) for p in paths]


@dataclass(frozen=True, kw_only=True)
class LatentBatch(ClipFields):
    """A batch of latent clips."""

    latents: np.ndarray  # (B, T, C, h, w) float32, normalised


class LatentClipDataset(ClipIndex):
    """`LatentClipDataset(latent_dir, clip_len=16, split="train").sample(32, rng)` -> LatentBatch; the clip and
    split rules of ClipDataset. `autoencoder`: the sha256 (ae_identity) the cache must have been encoded with."""

    def __init__(self, latent_dir: str | Path, clip_len: int, split: str = "train", holdout: float = 0.05,
                 autoencoder: str | None = None, captions: bool = False):
        manifest, shards = open_latent_dataset(Path(latent_dir))
        encoded_by = manifest["autoencoder"]["sha256"]
        if autoencoder is not None and autoencoder != encoded_by:
            raise ValueError(f"{latent_dir}: encoded by autoencoder {encoded_by[:12]}..., expected "
                             f"{autoencoder[:12]}...: encode the dataset again with this autoencoder (encode_dataset)")
        self._index(Path(latent_dir), shards, manifest, clip_len, split, holdout, captions)
        self.latent_shape = tuple(manifest["latent_shape"])  # (C, h, w)

    def get(self, indices: np.ndarray) -> LatentBatch:
        """The clips with these indices (0 <= i < len(self))."""
        parts = self._gather(indices, ("latents", "actions", "rewards", "terminated", "truncated"))
        return LatentBatch(**{**parts, "latents": parts["latents"].astype(np.float32)})  # (B, T, C, h, w)

    def sample(self, batch_size: int, rng: np.random.Generator, event_share: float = 0.0) -> LatentBatch:
        return self.get(self.draw(batch_size, rng, event_share))


class ViewBuckets:
    """`ViewBuckets([LatentClipDataset, ...]).sample(32, rng)` -> LatentBatch: clips of one game at several frame sizes
    (views), one latent cache each. A batch must share one shape, so each draw picks one dataset (a bucket) with the
    rng, then all its clips from it; with one dataset it draws exactly what that dataset's `sample` does.

    A bucket is picked with probability proportional to its clips: every clip of the union is then drawn equally
    often, so each dataset is trained on for the same number of epochs. Weighting by tokens would count a larger
    frame's size twice (its batches already carry more tokens). `mix`, one weight >= 0 a dataset, sets the chances
    instead (their shares of the batches): a small dataset of rare events drawn more often than its size."""

    def __init__(self, datasets: list[LatentClipDataset], mix: list[float] | None = None):
        if not datasets:
            raise ValueError("ViewBuckets needs at least one dataset")
        self.datasets = list(datasets)
        weights = np.array([len(d) for d in self.datasets] if not mix else mix, np.float64)
        if len(weights) != len(self.datasets) or (weights < 0).any() or not weights.sum() > 0:
            raise ValueError(f"mix={list(mix or [])}: expected {len(self.datasets)} weights >= 0, one a dataset, "
                             "not all 0")
        self.p = weights / weights.sum()  # (K,) chance of each bucket

    def sample(self, batch_size: int, rng: np.random.Generator, event_share: float = 0.0) -> LatentBatch:
        k = int(rng.choice(len(self.datasets), p=self.p)) if len(self.datasets) > 1 else 0
        return self.datasets[k].sample(batch_size, rng, event_share)
