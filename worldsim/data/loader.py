"""Training clips: random runs of `clip_len` consecutive frames, each inside one episode, from memory-mapped shards.

A clip never crosses an episode boundary: starts are drawn only where `clip_len` frames of the same episode follow.
Episodes shorter than a clip cannot give one; they are counted and reported, never stitched to their neighbours.
The split holds out whole episodes (for Craft2D, whole worlds: each episode's world comes from its seed), chosen by a
hash of the episode seed, so the same episodes are held out whatever the shard layout or the order of loading.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from worldsim.data.shards import open_dataset

SPLITS = ("train", "val", "all")
SAME_GAME = ("env", "action_meanings", "captions")  # what datasets trained into one model must share (frame sizes
#                                                     may differ: the views of `worldsim train world views=[...]`)


@dataclass(frozen=True, kw_only=True)
class ClipFields:
    """What every batch of clips carries beside its frames or latents; arrival convention: actions[:, t] led to
    step t (-1 on an episode's first)."""

    actions: np.ndarray  # (B, T) int64
    rewards: np.ndarray  # (B, T) float32
    terminated: np.ndarray  # (B, T) bool
    truncated: np.ndarray  # (B, T) bool
    episode: np.ndarray  # (B,) int64 global episode id
    captions: list[list[str]] | None  # (B, T) for datasets with captions


@dataclass(frozen=True, kw_only=True)
class Batch(ClipFields):
    """A batch of frame clips."""

    frames: np.ndarray  # (B, T, H, W, 3) uint8


def held_out(seed: int, fraction: float) -> bool:
    """Whether the episode with this seed belongs to the held-out split (a stable hash of the seed)."""
    return np.random.default_rng([int(seed), 0x5EED]).random() < fraction


def same_game(manifests: dict[str, dict], keys: tuple[str, ...] = SAME_GAME) -> None:
    """Refuse datasets that are not of one game, naming the dataset and the field: `manifests` maps each dataset's
    name to its manifest, the first being the one the others must agree with on `keys`."""
    (first, ref), *rest = manifests.items()
    for name, manifest in rest:
        for key in keys:
            if manifest.get(key) != ref.get(key):
                raise ValueError(f"{name}: {key} {manifest.get(key)!r}, but {first} has {ref.get(key)!r}: datasets "
                                 f"trained into one model must agree on {', '.join(keys)} (collect it from the same "
                                 "env with the same settings, the view size aside)")


class ClipIndex:
    """Clip starts inside the episodes of memory-mapped shards, and gathering clips from them: the one rule that
    frame clips (ClipDataset) and latent clips (latents.LatentClipDataset) share."""

    def _index(self, root: Path, shards: list, manifest: dict, clip_len: int, split: str, holdout: float,
               captions: bool) -> None:
        if split not in SPLITS:
            raise ValueError(f"split={split!r}: expected one of {SPLITS}")
        if clip_len < 1:
            raise ValueError(f"clip_len={clip_len}: expected at least 1")
        if not 0.0 <= holdout < 1.0:
            raise ValueError(f"holdout={holdout}: expected a fraction in [0, 1)")
        self.root, self.clip_len, self.split, self.shards, self.manifest = root, clip_len, split, shards, manifest
        self.action_meanings = manifest["action_meanings"]
        self.frame_shape = tuple(manifest["frame_shape"])
        shard_ids, starts, firsts = [], [], []
        self.episodes = self.too_short = 0
        count = 0  # clip starts so far
        for i, shard in enumerate(shards):
            for e in shard.meta["episodes"]:
                if split != "all" and held_out(e["seed"], holdout) != (split == "val"):
                    continue
                self.episodes += 1
                n = e["length"] - clip_len + 1  # clip starts inside this episode
                if n <= 0:
                    self.too_short += 1
                    continue
                starts.append(np.arange(e["start"], e["start"] + n))
                shard_ids.append(np.full(n, i))
                firsts.append(count)
                count += n
        if self.too_short:
            warnings.warn(f"{root}: {self.too_short} of {self.episodes} {split} episodes are shorter than "
                          f"clip_len={clip_len} and give no clips", stacklevel=3)
        if not starts:
            raise ValueError(f"{root}: no {split} clips of {clip_len} frames (episodes: {self.episodes}, too "
                             f"short: {self.too_short}); collect more data, lower clip_len or change holdout")
        self._shard = np.concatenate(shard_ids)  # (N,) shard of each clip start
        self._start = np.concatenate(starts)  # (N,) first row of each clip
        self.episode_starts = np.asarray(firsts, np.int64)  # (E,) index of the clip at the start of each episode
        self._events = None  # event_clips(), found at the first call
        self._captions = [shard.captions() for shard in shards] if captions and manifest.get("captions") else None

    def __len__(self) -> int:
        return len(self._start)

    @property
    def captions(self) -> list[list[str]] | None:
        """Every frame's caption, shard by shard (read with captions=True from a dataset that has them), else None."""
        return self._captions

    def event_clips(self) -> np.ndarray:
        """(M,) sorted indices of the clips where the env pays or ends after their first frame: a non-zero reward or a
        termination at frames 1..clip_len-1, what an action inside the clip led to."""
        if self._events is None:
            found = []
            for i, shard in enumerate(self.shards):
                mine = np.flatnonzero(self._shard == i)  # (n,) this shard's clips
                event = (np.asarray(shard.arrays["rewards"]) != 0) | np.asarray(shard.arrays["terminated"], bool)
                before = np.concatenate([[0], np.cumsum(event)])  # events in rows [0, r)
                starts = self._start[mine]
                found.append(mine[before[starts + self.clip_len] > before[starts + 1]])
            self._events = np.concatenate(found)
        return self._events

    @property
    def starts(self) -> np.ndarray:
        """(N,) each clip's first row in its shard (shard_of)."""
        return self._start

    @property
    def shard_of(self) -> np.ndarray:
        """(N,) each clip's shard, an index into `shards`."""
        return self._shard

    def rewards_of(self, indices: np.ndarray) -> np.ndarray:
        """(B, T) the rewards of the clips with these indices, no frames read."""
        return self._gather(indices, ("rewards",))["rewards"]

    def draw(self, batch_size: int, rng: np.random.Generator, event_share: float = 0.0) -> np.ndarray:
        """(batch_size,) clip indices, uniform over the clips; with `event_share`, each one in that share drawn from
        event_clips() instead (uniform when there are none). With 0 the draws are exactly the uniform ones."""
        picks = rng.integers(len(self), size=batch_size)
        events = self.event_clips() if event_share else ()
        if len(events):
            chosen = np.flatnonzero(rng.random(batch_size) < event_share)  # (k,) rows that show an event
            picks[chosen] = events[rng.integers(len(events), size=len(chosen))]
        return picks

    def _gather(self, indices: np.ndarray, keys: tuple[str, ...]) -> dict:
        """Stacked arrays `keys` (B, T, ...) of the clips with these indices, their episode ids and captions."""
        T = self.clip_len
        parts = {k: [] for k in keys}
        episode, captions = [], [] if self._captions is not None else None
        for i in np.asarray(indices).tolist():
            shard, s = self.shards[self._shard[i]], int(self._start[i])
            for k in keys:
                parts[k].append(shard.arrays[k][s:s + T])  # a slice of the memmap: read, not copied, until stacked
            episode.append(shard.arrays["episode"][s])
            if captions is not None:
                captions.append(self._captions[self._shard[i]][s:s + T])
        out = {k: np.stack(v) for k, v in parts.items()}
        if "actions" in out:
            out["actions"] = out["actions"].astype(np.int64)
        return {**out, "episode": np.asarray(episode, np.int64), "captions": captions}


class ClipDataset(ClipIndex):
    """`ClipDataset(root, clip_len=16, split="train").sample(32, rng)` -> Batch. The shards are checked on load
    (shards.open_dataset); `captions=True` also reads every frame's caption (the batches carry them)."""

    def __init__(self, root: str | Path, clip_len: int, split: str = "train", holdout: float = 0.05,
                 captions: bool = False):
        manifest, shards = open_dataset(Path(root))
        self._index(Path(root), shards, manifest, clip_len, split, holdout, captions)

    def get(self, indices: np.ndarray) -> Batch:
        """The clips with these indices (0 <= i < len(self))."""
        return Batch(**self._gather(indices, ("frames", "actions", "rewards", "terminated", "truncated")))

    def sample(self, batch_size: int, rng: np.random.Generator, event_share: float = 0.0) -> Batch:
        return self.get(self.draw(batch_size, rng, event_share))
