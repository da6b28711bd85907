"""ClipDataset: clips inside one episode, every valid start reachable, whole-episode held-out split, batch contents."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from worldsim.data.collect import CollectConfig, collect
from worldsim.data.loader import ClipDataset, held_out
from worldsim.data.shards import ShardWriter, open_dataset, write_manifest

from conftest import random_craft2d

FRAME = (8, 8, 3)
# Collected episodes can be shorter than a clip (an early death, the budget cut): expected, and tested on its own.
pytestmark = pytest.mark.filterwarnings("ignore:.*give no clips")


def write_dataset(root: Path, episodes: list[tuple[int, int, int]], shard_rows: int = 10, worker: int = 0) -> None:
    """A synthetic dataset of (id, seed, length) episodes whose frames spell out (id, t, seed % 256) in pixel (0, 0),
    so a clip says where it came from."""
    write_manifest(root, {"env": "synthetic", "action_meanings": ["a", "b", "c", "d"], "frame_shape": list(FRAME),
                          "captions": True, "action_convention": "arrival"})
    writer = ShardWriter(root, worker, 0, FRAME)
    for eid, seed, length in episodes:
        for t in range(length):
            frame = np.zeros(FRAME, np.uint8)
            frame[0, 0] = eid, t, seed % 256
            writer.add(frame, -1 if t == 0 else t % 4, 0.0 if t == 0 else 1.0, False, t == length - 1, eid,
                       f"e{eid}t{t}", (t, eid))
        writer.end_episode(eid, seed, "random", cut=False)
        if len(writer) >= shard_rows:
            writer.flush()
    writer.flush()


def where(batch) -> np.ndarray:
    """(episode, t) of every frame of every clip, decoded from the pixels: (B, T, 2)."""
    return batch.frames[:, :, 0, 0, :2].astype(int)


def all_clips(ds: ClipDataset):
    return ds.get(np.arange(len(ds)))


@pytest.fixture(scope="module")
def craft(tmp_path_factory) -> Path:
    """A real Craft2D dataset of ~35 short episodes over 8 shards."""
    return random_craft2d(tmp_path_factory.mktemp("loader") / "ds", 1500, max_episode_steps=40, shard_steps=200)


# ---- episode boundaries ------------------------------------------------------------------------------------------
def test_clips_never_cross_an_episode_boundary_on_synthetic_data(tmp_path):
    write_dataset(tmp_path, [(e, 100 + e, 3 + (7 * e) % 11) for e in range(30)], shard_rows=25)
    ds = ClipDataset(tmp_path, clip_len=4, split="all")
    batch = ds.sample(2000, np.random.default_rng(0))
    pos = where(batch)  # (B, T, 2)
    assert (pos[:, :, 0] == pos[:, :1, 0]).all(), "a clip mixes episodes"
    assert (pos[:, :, 0] == batch.episode[:, None]).all()
    assert (np.diff(pos[:, :, 1], axis=1) == 1).all(), "a clip skips or repeats rows"


def test_clips_never_cross_an_episode_boundary_on_collected_data(craft):
    ds = ClipDataset(craft, clip_len=8, split="all")
    batch = ds.sample(1000, np.random.default_rng(1))
    assert (batch.actions[:, 1:] >= 0).all(), "a reset frame inside a clip: it crossed into the next episode"
    ended = batch.terminated[:, :-1] | batch.truncated[:, :-1]
    assert not ended.any(), "an episode's last frame inside a clip, not at its end"
    assert (batch.actions[:, 0] == -1).any()  # clips do start on reset frames too


def test_every_valid_start_is_reachable_and_no_other(tmp_path):
    lengths = {0: 3, 1: 5, 2: 1, 3: 8, 4: 4}
    write_dataset(tmp_path, [(e, e, n) for e, n in lengths.items()], shard_rows=6)
    clip_len = 3
    expected = {(e, t) for e, n in lengths.items() for t in range(n - clip_len + 1)}
    with pytest.warns(UserWarning):
        ds = ClipDataset(tmp_path, clip_len=clip_len, split="all")
    assert len(ds) == len(expected)
    got = [tuple(p[0]) for p in where(all_clips(ds))]
    assert sorted(got) == sorted(expected)
    sampled = {tuple(p[0]) for p in where(ds.sample(3000, np.random.default_rng(0)))}
    assert sampled == expected


def test_episodes_shorter_than_a_clip_are_skipped_with_a_count(tmp_path):
    write_dataset(tmp_path, [(0, 0, 2), (1, 1, 5), (2, 2, 1), (3, 3, 6), (4, 4, 2)])
    with pytest.warns(UserWarning, match=r"3 of 5 all episodes are shorter than clip_len=3"):
        ds = ClipDataset(tmp_path, clip_len=3, split="all")
    assert ds.too_short == 3 and ds.episodes == 5
    assert set(all_clips(ds).episode.tolist()) == {1, 3}


def test_no_clips_at_all_is_an_error(tmp_path):
    write_dataset(tmp_path, [(0, 0, 4), (1, 1, 6)])
    with pytest.warns(UserWarning, match="2 of 2"), pytest.raises(ValueError, match=r"no all clips of 7 frames"):
        ClipDataset(tmp_path, clip_len=7, split="all")
    with pytest.raises(ValueError, match=r"no val clips"):
        ClipDataset(tmp_path, clip_len=2, split="val", holdout=0.0)  # nothing held out


# ---- the held-out split ------------------------------------------------------------------------------------------
def _split_seeds(root: Path, holdout: float) -> dict[str, set[int]]:
    """The seeds of the episodes in each split, from the frames the clips carry."""
    return {split: {int(s) for s in all_clips(ClipDataset(root, 2, split, holdout)).frames[:, 0, 0, 0, 2]}
            for split in ("train", "val", "all")}


def test_train_and_val_split_whole_episodes_disjointly_and_cover_all(tmp_path):
    write_dataset(tmp_path, [(e, e, 4 + e % 3) for e in range(200)], shard_rows=50)
    seeds = _split_seeds(tmp_path, 0.25)
    assert seeds["train"].isdisjoint(seeds["val"])
    assert seeds["train"] | seeds["val"] == seeds["all"] == set(range(200))
    assert 25 <= len(seeds["val"]) <= 75  # about a quarter
    assert seeds["val"] == {s for s in range(200) if held_out(s, 0.25)}
    train, val = ClipDataset(tmp_path, 2, "train", 0.25), ClipDataset(tmp_path, 2, "val", 0.25)
    assert train.episodes + val.episodes == 200
    for ds in (train, val):  # every clip of an episode lands in its episode's split
        batch = all_clips(ds)
        assert set(batch.frames[:, 0, 0, 0, 2].tolist()) <= seeds[ds.split]


def test_split_membership_is_stable_across_datasets_with_the_same_seeds(tmp_path):
    seeds = [1 + 3 * i for i in range(60)]  # (frames carry seed % 256: keep every seed below 256)
    write_dataset(tmp_path / "a", [(i, s, 4) for i, s in enumerate(seeds)], shard_rows=20)
    # the same seeds under other ids, in reverse order, in other shards, from another worker, beside new ones
    extra = [(100 + i, 200 + i, 5) for i in range(20)]
    write_dataset(tmp_path / "b", [(200 - i, s, 4) for i, s in enumerate(seeds)][::-1] + extra, shard_rows=33,
                  worker=1)
    a, b = _split_seeds(tmp_path / "a", 0.3), _split_seeds(tmp_path / "b", 0.3)
    assert a["val"] and a["train"] and a["all"] == set(seeds)
    assert a["val"] == b["val"] & a["all"] and a["train"] == b["train"] & a["all"]


@pytest.mark.parametrize("kwargs, message", [
    (dict(split="test"), r"split='test': expected one of"),
    (dict(clip_len=0), r"clip_len=0: expected at least 1"),
    (dict(holdout=1.0), r"holdout=1.0: expected a fraction in \[0, 1\)"),
    (dict(holdout=-0.1), r"holdout=-0.1"),
])
def test_bad_arguments_are_refused(tmp_path, kwargs, message):
    write_dataset(tmp_path, [(0, 0, 5)])
    with pytest.raises(ValueError, match=message):
        ClipDataset(tmp_path, **{"clip_len": 2, **kwargs})


# ---- batch contents ----------------------------------------------------------------------------------------------
def test_batch_shapes_and_dtypes(craft):
    ds = ClipDataset(craft, clip_len=6, split="all")
    b = ds.sample(5, np.random.default_rng(0))
    assert b.frames.shape == (5, 6, 64, 64, 3) and b.frames.dtype == np.uint8
    assert b.actions.shape == (5, 6) and b.actions.dtype == np.int64
    assert b.rewards.shape == (5, 6) and b.rewards.dtype == np.float32
    assert b.terminated.shape == b.truncated.shape == (5, 6) and b.terminated.dtype == b.truncated.dtype == np.bool_
    assert b.episode.shape == (5,) and b.episode.dtype == np.int64
    assert b.captions is None  # by default: no caller trains on captions yet, and reading them costs a load
    with_captions = ClipDataset(craft, clip_len=6, split="all", captions=True).sample(5, np.random.default_rng(0))
    c = with_captions.captions
    assert len(c) == 5 and all(len(clip) == 6 and all(isinstance(s, str) and s for s in clip) for clip in c)
    assert ClipDataset(craft, clip_len=1, split="all").sample(3, np.random.default_rng(0)).frames.shape == \
        (3, 1, 64, 64, 3)


def test_batch_rows_are_the_shard_rows_of_one_episode(craft):
    _, opened = open_dataset(craft)
    rows = {}  # episode id -> its arrays and captions, straight from the shards
    for shard in opened:
        captions = shard.captions()
        for e in shard.meta["episodes"]:
            r = slice(e["start"], e["start"] + e["length"])
            rows[e["id"]] = {k: np.asarray(shard.arrays[k][r]) for k in
                             ("frames", "actions", "rewards", "terminated", "truncated")} | {"captions": captions[r]}
    ds = ClipDataset(craft, clip_len=5, split="all", captions=True)
    batch = ds.sample(24, np.random.default_rng(3))
    for i, eid in enumerate(batch.episode.tolist()):
        ep = rows[eid]
        matches = [s for s in range(len(ep["actions"]) - 4)
                   if np.array_equal(ep["frames"][s:s + 5], batch.frames[i])
                   and np.array_equal(ep["actions"][s:s + 5], batch.actions[i])
                   and np.array_equal(ep["rewards"][s:s + 5], batch.rewards[i])
                   and np.array_equal(ep["terminated"][s:s + 5], batch.terminated[i])
                   and np.array_equal(ep["truncated"][s:s + 5], batch.truncated[i])
                   and ep["captions"][s:s + 5] == batch.captions[i]]
        assert matches, f"clip {i} is not five consecutive rows of episode {eid}"


def test_cartpole_batches_have_no_captions(tmp_path):
    collect(CollectConfig(out=str(tmp_path), env="CartPole-v1", agent="random", steps=60, shard_steps=30), quiet=True)
    ds = ClipDataset(tmp_path, clip_len=3, split="all", captions=True)  # asked for, but CartPole has none
    b = ds.sample(4, np.random.default_rng(0))
    assert b.captions is None and b.frames.shape == (4, 3, 64, 96, 3)
