"""The shard format: ShardWriter round trips, and readers that refuse a damaged shard or manifest naming the file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from worldsim.data import integrity
from worldsim.data.loader import ClipDataset
from worldsim.data.shards import (
    FORMAT_VERSION, ShardError, ShardWriter, open_dataset, open_shard, read_manifest, remove_incomplete, shard_paths,
    write_manifest,
)

FRAME = (16, 16, 3)


def fill(writer: ShardWriter, eid: int, length: int, rng: np.random.Generator, positions: bool = True) -> dict:
    """Add one episode of random rows (arrival convention) to `writer`; returns what was added."""
    ep = dict(frames=rng.integers(0, 256, (length,) + FRAME, dtype=np.uint8),
              actions=np.r_[-1, rng.integers(0, 4, length - 1)], rewards=np.r_[0.0, rng.random(length - 1)],
              terminated=np.arange(length) == length - 1, truncated=np.zeros(length, bool),
              positions=rng.integers(0, 50, (length, 2)), captions=[f"ep {eid} row {t}" for t in range(length)])
    for t in range(length):
        writer.add(ep["frames"][t], int(ep["actions"][t]), float(ep["rewards"][t]), bool(ep["terminated"][t]),
                   False, eid, ep["captions"][t], tuple(ep["positions"][t]) if positions else None)
    return ep


@pytest.fixture
def dataset(tmp_path) -> Path:
    """A manifest and two complete shards of worker 0 (episodes 0-1, then 2)."""
    write_manifest(tmp_path, {"env": "synthetic", "action_meanings": list("abcd"), "frame_shape": list(FRAME)})
    writer, rng = ShardWriter(tmp_path, 0, 0, FRAME), np.random.default_rng(0)
    for eid, length in ((0, 5), (1, 7)):
        fill(writer, eid, length, rng)
        writer.end_episode(eid, seed=eid, agent="random", cut=False)
    writer.flush()
    fill(writer, 2, 4, rng)
    writer.end_episode(2, seed=2, agent="random", cut=True)
    writer.flush()
    return tmp_path


def test_writer_round_trip_whole_episodes_only(tmp_path):
    writer, rng = ShardWriter(tmp_path, worker=3, index=7, frame_shape=FRAME), np.random.default_rng(0)
    a = fill(writer, 10, 5, rng)
    writer.end_episode(10, seed=111, agent="random", cut=False)
    b = fill(writer, 13, 3, rng)
    writer.end_episode(13, seed=222, agent="explorer", cut=True)
    fill(writer, 16, 4, rng)  # unfinished: stays in the writer for the next shard
    path = writer.flush()
    assert path == tmp_path / "shard-w03-00007" and writer.index == 8 and len(writer) == 4
    shard = open_shard(path, FRAME)
    assert shard.rows == 8 and shard.meta["worker"] == 3 and shard.meta["index"] == 7
    for name, dtype in (("frames", np.uint8), ("actions", np.int16), ("rewards", np.float32),
                        ("terminated", np.bool_), ("truncated", np.bool_), ("episode", np.int64),
                        ("positions", np.int32)):
        expected = np.concatenate([a[name], b[name]]) if name != "episode" else np.r_[[10] * 5, [13] * 3]
        assert shard.arrays[name].dtype == dtype, name
        np.testing.assert_allclose(shard.arrays[name], expected.astype(dtype), err_msg=name)
    assert shard.captions() == a["captions"] + b["captions"]
    assert shard.meta["episodes"] == [
        dict(id=10, seed=111, agent="random", start=0, length=5, ret=pytest.approx(float(a["rewards"].sum())),
             cut=False),
        dict(id=13, seed=222, agent="explorer", start=5, length=3, ret=pytest.approx(float(b["rewards"].sum())),
             cut=True)]
    assert writer.flush() is None  # nothing finished: no empty shard
    writer.end_episode(16, seed=333, agent="random", cut=False)
    second = open_shard(writer.flush())
    assert second.path.name == "shard-w03-00008" and second.meta["episodes"][0]["start"] == 0
    assert second.rows == 4 and (second.arrays["episode"] == 16).all()
    assert not list(tmp_path.glob(".shard-*"))


def test_envs_without_positions_write_no_positions_file(tmp_path):
    writer = ShardWriter(tmp_path, 0, 0, FRAME)
    fill(writer, 0, 3, np.random.default_rng(0), positions=False)
    writer.end_episode(0, 0, "random", False)
    shard = open_shard(writer.flush())
    assert "positions" not in shard.arrays and not (shard.path / "positions.npy").exists()


def test_readers_ignore_and_collect_removes_hidden_tmp_shards(dataset):
    stale = dataset / ".shard-w00-00002.tmp"
    stale.mkdir()
    (stale / "frames.npy").write_bytes(b"\x93NUMPY half")
    (dataset / "notes").mkdir()  # not a shard either
    assert [p.name for p in shard_paths(dataset)] == ["shard-w00-00000", "shard-w00-00001"]
    manifest, opened = open_dataset(dataset)
    assert manifest["format_version"] == FORMAT_VERSION and [s.rows for s in opened] == [12, 4]
    assert remove_incomplete(dataset) == [stale]
    assert not stale.exists() and (dataset / "notes").exists() and len(shard_paths(dataset)) == 2


# ---- damage, refused naming the file ------------------------------------------------------------------------------
def _cut(path: Path, keep: int = -100) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:keep])


def _edit_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


def _set_meta(shard: Path, **changes) -> None:
    meta = json.loads((shard / "meta.json").read_text())
    (shard / "meta.json").write_text(json.dumps({**meta, **changes}))


DAMAGE = {  # name -> (what to do to shard-w00-00000, the file the error names, what it says)
    "truncated frames.npy": (lambda s: _cut(s / "frames.npy"), "frames.npy", r"bytes, meta.json says .*truncated"),
    "truncated actions.npy": (lambda s: _cut(s / "actions.npy", 130), "actions.npy", r"truncated or edited"),
    "edited actions.npy": (lambda s: _edit_last_byte(s / "actions.npy"), "actions.npy", r"checksum"),
    "edited captions.json": (lambda s: (s / "captions.json").write_text(
        (s / "captions.json").read_text().replace("ep 0", "EP 0")), "captions.json", r"checksum"),
    "missing meta.json": (lambda s: (s / "meta.json").unlink(), "meta.json", r"missing; the shard is incomplete"),
    "corrupt meta.json": (lambda s: _cut(s / "meta.json", 40), "meta.json", r"not a valid shard description"),
    "meta.json of another format": (lambda s: _set_meta(s, format_version=2), "meta.json", r"format_version 2"),
    "missing rewards.npy": (lambda s: (s / "rewards.npy").unlink(), "rewards.npy", r"missing"),
    "unlisted episode.npy": (lambda s: _set_meta(s, files={k: v for k, v in json.loads(
        (s / "meta.json").read_text())["files"].items() if k != "episode.npy"}), "meta.json", r"lists no episode.npy"),
    # (meta.json lists files in sorted order, so actions.npy is the first found disagreeing)
    "rows that disagree": (lambda s: _set_meta(s, rows=11), "actions.npy", r"with 11 rows"),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_shard_is_refused_naming_the_file(dataset, damage):
    do, fname, message = DAMAGE[damage]
    shard = dataset / "shard-w00-00000"
    open_shard(shard)  # fine before
    do(shard)
    with pytest.raises(ShardError, match=message) as err:
        open_shard(shard)
    assert str(shard / fname) in str(err.value)
    with pytest.raises(ShardError, match=message):
        open_dataset(dataset)
    with pytest.raises(ValueError, match=message):  # ShardError is a ValueError: the CLI reports it plainly
        ClipDataset(dataset, clip_len=2, split="all")
    open_shard(dataset / "shard-w00-00001")  # its neighbour is untouched


# ---- contents verified by default, once ----------------------------------------------------------------------------
@pytest.fixture
def settled(monkeypatch):
    """Files count as settled at once (RACY_S = 0): a test need not wait for its shards to age to see them recorded."""
    monkeypatch.setattr(integrity, "RACY_S", 0.0)


def _hashed(monkeypatch) -> list[Path]:
    """Every file integrity hashes from now on is appended to the returned list."""
    calls = []
    real = integrity.sha256_file
    monkeypatch.setattr(integrity, "sha256_file", lambda path: calls.append(Path(path)) or real(path))
    return calls


def test_a_flipped_byte_in_frames_is_refused_by_default_naming_the_file(dataset):
    shard = dataset / "shard-w00-00000"
    open_dataset(dataset)  # verified and fine; just written, so not yet recorded as settled
    _edit_last_byte(shard / "frames.npy")
    for load in (lambda: open_shard(shard), lambda: open_dataset(dataset),
                 lambda: ClipDataset(dataset, clip_len=2, split="all")):
        with pytest.raises(ShardError, match="checksum") as err:
            load()
        assert str(shard / "frames.npy") in str(err.value)


def test_a_same_size_replacement_after_verification_is_refused(dataset, settled):
    shard = dataset / "shard-w00-00000"
    open_dataset(dataset)
    assert "frames.npy" in json.loads((shard / integrity.VERIFIED).read_text())["files"]  # recorded as verified
    frames = np.load(shard / "frames.npy")
    np.save(dataset / "other.npy", 255 - frames)  # same shape, dtype and size; another file renamed over it
    (dataset / "other.npy").rename(shard / "frames.npy")
    assert (shard / "frames.npy").stat().st_size == json.loads((shard / "meta.json").read_text())["files"][
        "frames.npy"]["bytes"]
    with pytest.raises(ShardError, match="checksum") as err:
        open_dataset(dataset)
    assert str(shard / "frames.npy") in str(err.value)


def test_verification_is_recorded_and_a_second_load_hashes_nothing(dataset, settled, monkeypatch):
    hashed = _hashed(monkeypatch)
    open_dataset(dataset)
    first = [p.name for p in hashed if p.name != "meta.json"]
    assert sorted(first) == sorted(f for s in shard_paths(dataset) for f in json.loads(
        (s / "meta.json").read_text())["files"])  # every listed file of both shards, frames.npy included
    for shard in shard_paths(dataset):
        record = json.loads((shard / integrity.VERIFIED).read_text())["files"]
        meta = json.loads((shard / "meta.json").read_text())["files"]
        assert sorted(record) == sorted(meta)
        assert all(stamp[-1] == meta[f]["sha256"] for f, stamp in record.items())
    hashed.clear()
    open_dataset(dataset)
    ClipDataset(dataset, clip_len=2, split="all")
    assert [p for p in hashed if p.name != "meta.json"] == []
    open_dataset(dataset, rehash=True)  # asked to: everything again
    assert len([p for p in hashed if p.name != "meta.json"]) == len(first)


def test_files_changed_moments_before_verification_are_not_recorded(dataset, monkeypatch):
    """Racily clean: within a clock tick a second edit would leave size and times unchanged, so a file changed
    less than RACY_S before it was verified is hashed again next time."""
    hashed = _hashed(monkeypatch)
    open_dataset(dataset)
    assert not (dataset / "shard-w00-00000" / integrity.VERIFIED).exists()  # nothing settled to record
    hashed.clear()
    open_dataset(dataset)
    assert "frames.npy" in [p.name for p in hashed]


def test_a_read_only_dataset_still_loads_and_is_verified_each_time(dataset, settled, monkeypatch):
    monkeypatch.setattr(integrity, "atomic_write_json", lambda *a: (_ for _ in ()).throw(PermissionError(13, "no")))
    hashed = _hashed(monkeypatch)
    open_dataset(dataset)
    open_dataset(dataset)
    assert [p.name for p in hashed].count("frames.npy") == 4  # two shards, twice: nothing recorded, nothing lost


def test_non_finite_rewards_are_refused_naming_the_file_and_row(tmp_path):
    write_manifest(tmp_path, {"env": "synthetic", "action_meanings": list("abcd"), "frame_shape": list(FRAME)})
    writer = ShardWriter(tmp_path, 0, 0, FRAME)
    fill(writer, 0, 5, np.random.default_rng(0))
    writer.cols["rewards"][3] = float("nan")
    writer.end_episode(0, seed=0, agent="random", cut=False)
    path = writer.flush()
    with pytest.raises(ShardError, match=r"1 non-finite values .* row 3") as err:
        open_shard(path)
    assert str(path / "rewards.npy") in str(err.value)


# ---- shards missing -----------------------------------------------------------------------------------------------
def test_a_shard_missing_from_the_middle_is_named(dataset):
    import shutil

    fill_more = ShardWriter(dataset, 0, 2, FRAME)
    fill(fill_more, 3, 4, np.random.default_rng(1))
    fill_more.end_episode(3, seed=3, agent="random", cut=False)
    fill_more.flush()
    shutil.rmtree(dataset / "shard-w00-00001")
    for load in (open_dataset, lambda root: ClipDataset(root, clip_len=2, split="all")):
        with pytest.raises(ShardError, match=r"1 shard\(s\) missing \(deleted\?\): shard-w00-00001\. Re-run the "
                                              r"same `worldsim collect` command"):
            load(dataset)


def test_the_last_shard_of_a_finished_dataset_missing_is_named(dataset):
    import shutil

    integrity.record_complete(dataset, shard_paths(dataset))
    open_dataset(dataset)
    shutil.rmtree(dataset / "shard-w00-00001")  # the last: no gap in the indices, only the record knows
    with pytest.raises(ShardError, match=r"missing \(deleted\?\): shard-w00-00001\."):
        open_dataset(dataset)


def test_a_shard_swapped_for_another_is_refused(dataset, tmp_path_factory):
    import shutil

    integrity.record_complete(dataset, shard_paths(dataset))
    other = tmp_path_factory.mktemp("other")  # a dataset of its own, its shard sound but not this one
    writer = ShardWriter(other, 0, 0, FRAME)
    for eid, length in ((0, 5), (1, 7)):
        fill(writer, eid, length, np.random.default_rng(7))
        writer.end_episode(eid, seed=eid, agent="random", cut=False)
    writer.flush()
    shutil.rmtree(dataset / "shard-w00-00000")
    shutil.copytree(other / "shard-w00-00000", dataset / "shard-w00-00000")
    open_shard(dataset / "shard-w00-00000")  # sound on its own
    with pytest.raises(ShardError, match="not the shard this dataset was written with") as err:
        open_dataset(dataset)
    assert str(dataset / "shard-w00-00000" / "meta.json") in str(err.value)


def test_a_dataset_without_shards_is_refused(tmp_path):
    write_manifest(tmp_path, {"env": "synthetic", "action_meanings": list("abcd"), "frame_shape": list(FRAME)})
    with pytest.raises(ShardError, match="holds no complete shards"):
        open_dataset(tmp_path)


def test_frames_of_another_size_than_the_manifest_says_are_refused(dataset):
    manifest = json.loads((dataset / "manifest.json").read_text())
    (dataset / "manifest.json").write_text(json.dumps({**manifest, "frame_shape": [64, 64, 3]}))
    with pytest.raises(ShardError, match=r"frames of \(16, 16, 3\), the manifest says \(64, 64, 3\)") as err:
        open_dataset(dataset)
    assert str(dataset / "shard-w00-00000" / "frames.npy") in str(err.value)


@pytest.mark.parametrize("damage, message", [
    ("missing", r"missing; .* is not a worldsim dataset"),
    ("not json", r"not valid JSON"),
    ("format 99", r"format_version 99, expected 1"),
    ("no format", r"format_version None, expected 1"),
    ("a list", r"a JSON list, expected an object"),
])
def test_a_bad_manifest_is_refused_naming_the_file(dataset, damage, message):
    path = dataset / "manifest.json"
    manifest = json.loads(path.read_text())
    if damage == "missing":
        path.unlink()
    elif damage == "not json":
        path.write_text('{"format_version": 1, "frame_sh')
    elif damage == "format 99":
        path.write_text(json.dumps({**manifest, "format_version": 99}))
    elif damage == "no format":
        path.write_text(json.dumps({k: v for k, v in manifest.items() if k != "format_version"}))
    else:
        path.write_text(json.dumps([manifest]))
    for read in (read_manifest, open_dataset, lambda root: ClipDataset(root, clip_len=2, split="all")):
        with pytest.raises(ShardError, match=message) as err:
            read(dataset)
        assert str(path) in str(err.value)
