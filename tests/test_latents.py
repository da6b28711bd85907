"""The latent cache: shards encoded once and checked, skipped on a rerun, refused when damaged or from another
autoencoder or dataset; latent clips that follow ClipDataset's episode and split rules."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from worldsim.data.latents import LatentClipDataset, ae_identity, encode_dataset, open_cache, open_latent_dataset
from worldsim.data.integrity import COMPLETE
from worldsim.data.loader import ClipDataset
from worldsim.data.shards import ShardError, open_dataset, write_shard
from worldsim.models.autoencoder import Autoencoder, AutoencoderConfig

from conftest import random_craft2d

pytestmark = pytest.mark.filterwarnings("ignore:.*give no clips")
T = 6  # clip length


def make_ae(seed: int, fit_on: np.ndarray | None = None) -> Autoencoder:
    torch.manual_seed(seed)
    ae = Autoencoder(AutoencoderConfig(width=8, latent_channels=4, stem=4, channel_mult=(1, 2), head_width=32))
    ae.initialize_weights()
    if fit_on is not None:
        with torch.no_grad():
            ae.fit_latent_stats(ae.encode_raw(fit_on))
    return ae


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """~300 Craft2D frames, episodes of at most 101 frames, in shards of ~100."""
    return random_craft2d(tmp_path_factory.mktemp("latents") / "ds", 300, max_episode_steps=100, shard_steps=100)


@pytest.fixture(scope="module")
def ae(data) -> Autoencoder:
    _, shards = open_dataset(data)
    return make_ae(0, np.asarray(shards[0].arrays["frames"][:64]))


@pytest.fixture(scope="module")
def cache(data, ae, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("latents") / "cache"
    encode_dataset(ae, data, out, batch_size=64, checkpoint="ae.safetensors")
    return out


def copy_of(cache: Path, tmp_path: Path) -> Path:
    shutil.copytree(cache, tmp_path / "cache")
    return tmp_path / "cache"


# ---- encoding ----------------------------------------------------------------------------------------------------
def test_cache_mirrors_the_dataset_with_latents(data, ae, cache):
    source, src_shards = open_dataset(data)
    manifest, shards = open_latent_dataset(cache, rehash=True)
    assert len(src_shards) >= 2 and [s.path.name for s in shards] == [s.path.name for s in src_shards]
    assert manifest["latent_shape"] == [4, 8, 8] and manifest["frame_shape"] == source["frame_shape"]
    assert manifest["autoencoder"]["sha256"] == ae_identity(ae)
    assert manifest["autoencoder"]["checkpoint"] == "ae.safetensors"
    assert manifest["action_meanings"] == source["action_meanings"]
    for src, lat in zip(src_shards, shards):
        z = lat.arrays["latents"]
        assert z.dtype == np.float16 and z.shape == (src.rows, 4, 8, 8)
        for name in ("actions", "rewards", "terminated", "truncated", "episode"):
            assert np.array_equal(lat.arrays[name], src.arrays[name]) and lat.arrays[name].dtype == \
                src.arrays[name].dtype
        assert lat.meta["episodes"] == src.meta["episodes"] and lat.captions() == src.captions()
        with torch.no_grad():
            expect = ae.encode(np.asarray(src.arrays["frames"])).numpy()  # a read-only memmap is accepted
        np.testing.assert_allclose(z.astype(np.float32), expect, atol=2e-2, rtol=2e-3)  # float16 rounding


def test_rerun_skips_done_shards_and_encodes_only_missing_ones(data, ae, cache, tmp_path):
    out = copy_of(cache, tmp_path)
    n = len(open_latent_dataset(out)[1])
    stamp = {p.name: (p / "latents.npy").stat().st_mtime_ns for p in out.glob("shard-*")}
    counts = encode_dataset(ae, data, out)
    assert counts["encoded"] == 0 and counts["skipped"] == n
    assert stamp == {p.name: (p / "latents.npy").stat().st_mtime_ns for p in out.glob("shard-*")}
    victim = sorted(out.glob("shard-*"))[1]
    shutil.rmtree(victim)
    (out / ".shard-w00-00009.tmp").mkdir()  # left by a killed run
    counts = encode_dataset(ae, data, out)
    assert counts["encoded"] == 1 and counts["skipped"] == n - 1
    assert victim.exists() and not (out / ".shard-w00-00009.tmp").exists()


def test_parts_encode_disjoint_shares_then_a_whole_call_checks_them_and_records_the_cache(data, ae, cache, tmp_path):
    out = tmp_path / "parts"
    with pytest.raises(ValueError, match=r"part=\(1, 2\): .* is not a latent cache yet; make it with open_cache"):
        encode_dataset(ae, data, out, part=(1, 2))
    for bad in ((2, 2), (0, 0), (-1, 3)):
        with pytest.raises(ValueError, match=r"expected \(index, count\) with count >= 1 and 0 <= index < count"):
            encode_dataset(ae, data, out, part=bad)
    open_cache(ae, data, out, checkpoint="ae.safetensors")
    (out / ".shard-w01-00009.tmp").mkdir()  # as if another part were writing it: a part leaves it alone
    n = len(open_dataset(data)[1])
    parts = [encode_dataset(ae, data, out, batch_size=64, checkpoint="ae.safetensors", part=(i, 2)) for i in (0, 1)]
    assert [p["encoded"] for p in parts] == [(n + 1) // 2, n // 2] and (out / ".shard-w01-00009.tmp").exists()
    assert not (out / COMPLETE).exists()  # not recorded complete until a whole call has checked every shard
    whole = encode_dataset(ae, data, out, checkpoint="ae.safetensors")
    assert whole["encoded"] == 0 and whole["skipped"] == n and not (out / ".shard-w01-00009.tmp").exists()
    assert (out / COMPLETE).exists()
    _, got = open_latent_dataset(out, rehash=True)
    _, want = open_latent_dataset(cache)
    for a, b in zip(got, want):  # the same latents as one process encoding the whole dataset
        assert np.array_equal(a.arrays["latents"], b.arrays["latents"])


def test_unfitted_autoencoder_refused(data, tmp_path):
    with pytest.raises(ValueError, match="not fitted.*fit_latent_stats"):
        encode_dataset(make_ae(0), data, tmp_path / "cache")


def test_another_autoencoder_refused(data, cache, tmp_path):
    out = copy_of(cache, tmp_path)
    other = make_ae(1, np.zeros((2, 64, 64, 3), np.uint8) + np.arange(2, dtype=np.uint8)[:, None, None, None])
    with pytest.raises(ValueError, match="another autoencoder"):
        encode_dataset(other, data, out)
    with pytest.raises(ValueError, match="encoded by autoencoder"):
        LatentClipDataset(out, T, autoencoder=ae_identity(other))


def test_another_dataset_refused(data, ae, cache, tmp_path):
    out = copy_of(cache, tmp_path)
    moved = tmp_path / "other"
    shutil.copytree(data, moved)
    manifest = json.loads((moved / "manifest.json").read_text())
    manifest["seed"] = 123
    (moved / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="another dataset"):
        encode_dataset(ae, moved, out)
    manifest["seed"], manifest["steps"] = 0, 999  # only `steps` changed: a continued dataset, the same one
    (moved / "manifest.json").write_text(json.dumps(manifest))
    assert encode_dataset(ae, moved, out)["encoded"] == 0


def test_frame_dataset_as_out_dir_or_latent_dir_refused(data, ae, cache):
    with pytest.raises(ValueError, match="the dataset itself"):
        encode_dataset(ae, data, data)
    with pytest.raises(ShardError, match="not a latent cache"):
        LatentClipDataset(data, T)


@pytest.mark.parametrize("fname", ["latents.npy", "actions.npy"])
def test_truncated_latent_shard_refused_naming_the_file(data, ae, cache, tmp_path, fname):
    out = copy_of(cache, tmp_path)
    victim = sorted(out.glob("shard-*"))[0] / fname
    with open(victim, "r+b") as f:
        f.truncate(victim.stat().st_size - 100)
    with pytest.raises(ShardError, match=f"{victim}.*truncated"):
        LatentClipDataset(out, T)
    with pytest.raises(ShardError, match=f"{victim}.*truncated"):
        encode_dataset(ae, data, out)


def test_changed_source_shard_refused(data, ae, cache, tmp_path):
    out = copy_of(cache, tmp_path)
    moved = tmp_path / "ds"
    shutil.copytree(data, moved)
    meta_path = sorted(moved.glob("shard-*"))[0] / "meta.json"
    meta_path.write_text(meta_path.read_text() + " ")  # another version of the shard
    (moved / "shards.json").unlink()  # (else the source itself is refused first: not the shard it was written with)
    with pytest.raises(ShardError, match="another version"):
        encode_dataset(ae, moved, out)


# ---- clips -------------------------------------------------------------------------------------------------------
def test_latent_clips_match_frame_clips_and_never_cross_episodes(data, ae, cache):
    for split in ("train", "val", "all"):
        lat = LatentClipDataset(cache, T, split=split, holdout=0.3, captions=True)
        frm = ClipDataset(data, T, split=split, holdout=0.3, captions=True)
        assert len(lat) == len(frm) > 0  # the same clip starts: the same episode rule and the same held-out split
        idx = np.random.default_rng(0).integers(len(lat), size=16)
        a, b = lat.get(idx), frm.get(idx)
        assert np.array_equal(a.episode, b.episode) and np.array_equal(a.actions, b.actions)
        assert np.array_equal(a.terminated, b.terminated) and a.captions == b.captions
        with torch.no_grad():
            expect = ae.encode(torch.from_numpy(b.frames)).numpy()  # (B, T, C, h, w)
        np.testing.assert_allclose(a.latents, expect, atol=2e-2, rtol=2e-3)
    batch = LatentClipDataset(cache, T, split="all").sample(500, np.random.default_rng(1))
    assert batch.latents.shape == (500, T, 4, 8, 8) and batch.latents.dtype == np.float32
    assert batch.actions.shape == batch.rewards.shape == batch.terminated.shape == (500, T)
    assert batch.actions.dtype == np.int64
    # inside one episode: a reset frame (action -1) only first, an episode's end only last
    assert (batch.actions[:, 1:] >= 0).all()
    assert not (batch.terminated[:, :-1] | batch.truncated[:, :-1]).any()
    assert (batch.actions[:, 0] == -1).any() and (batch.truncated[:, -1] | batch.terminated[:, -1]).any()


def test_event_clips_are_those_that_pay_or_end_after_their_first_frame_and_event_share_draws_them(cache):
    clips = LatentClipDataset(cache, T, split="all")
    every = clips.get(np.arange(len(clips)))
    shows = ((every.rewards[:, 1:] != 0) | every.terminated[:, 1:]).any(1)  # (N,) what an action in the clip led to
    assert 0 < shows.sum() < len(clips)
    assert clips.event_clips().tolist() == np.flatnonzero(shows).tolist()
    uniform = clips.draw(64, np.random.default_rng(3))
    assert np.array_equal(clips.draw(64, np.random.default_rng(3), 0.0), uniform)  # 0: the same draws as before
    assert shows[clips.draw(64, np.random.default_rng(3), 1.0)].all()
    share = shows[clips.draw(4000, np.random.default_rng(4), 0.25)].mean()
    assert 0.2 < share < 0.3 and shows[uniform].mean() < 0.1  # the share asked for, plus the few uniform ones


def test_train_and_val_episodes_are_disjoint(cache):
    train = LatentClipDataset(cache, T, split="train", holdout=0.3)
    val = LatentClipDataset(cache, T, split="val", holdout=0.3)
    e_train = set(train.get(np.arange(len(train))).episode.tolist())
    e_val = set(val.get(np.arange(len(val))).episode.tolist())
    assert e_train and e_val and not e_train & e_val


def test_the_cache_names_the_encoder_not_the_decoder(ae):
    same = Autoencoder(ae.cfg)
    same.load_state_dict(ae.state_dict())
    with torch.no_grad():
        same.decoder.conv_out.weight.add_(1.0)  # a fine-tuned decoder: the latents, and so the cache, are the same
        assert ae_identity(same) == ae_identity(ae)
        same.encoder.conv_out.weight.add_(1.0)
        assert ae_identity(same) != ae_identity(ae)


# ---- contents: checked by default --------------------------------------------------------------------------------
def test_a_flipped_byte_in_latents_is_refused_naming_the_shard(cache, tmp_path):
    out = copy_of(cache, tmp_path)
    victim = sorted(out.glob("shard-*"))[1] / "latents.npy"
    with open(victim, "r+b") as f:  # in place, one byte: same size, same inode
        f.seek(victim.stat().st_size - 7)
        byte = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([byte[0] ^ 0x01]))
    with pytest.raises(ShardError, match="checksum") as err:
        LatentClipDataset(out, T)
    assert str(victim) in str(err.value)


def test_nan_latents_in_a_cache_are_refused_naming_the_shard(cache, tmp_path):
    """A cache whose latents are NaN but whose checksums match (what a diverged encoder used to write): never
    trained on."""
    out = copy_of(cache, tmp_path)
    victim = sorted(out.glob("shard-*"))[0]
    meta = json.loads((victim / "meta.json").read_text())
    arrays = {f[:-4]: np.load(victim / f) for f in meta["files"] if f.endswith(".npy")}
    arrays["latents"][5, 1] = np.nan
    captions = (victim / "captions.json").read_bytes()
    shutil.rmtree(victim)
    write_shard(victim, arrays, captions, **{k: v for k, v in meta.items() if k not in ("format_version", "rows",
                                                                                       "files")})
    (out / "shards.json").unlink()  # (the listing would name the shard as changed, before its contents)
    with pytest.raises(ShardError, match=r"non-finite values \(NaN or inf\), the first in row 5") as err:
        LatentClipDataset(out, T)
    assert str(victim / "latents.npy") in str(err.value)


def test_an_encoder_giving_nan_is_refused_before_anything_is_cached(data, ae, tmp_path):
    broken = make_ae(0)
    broken.load_state_dict(ae.state_dict())
    with torch.no_grad():
        next(broken.encoder.parameters()).fill_(float("nan"))
    out = tmp_path / "cache"
    with pytest.raises(ValueError, match=r"non-finite latent values .* retrain or pick another checkpoint") as err:
        encode_dataset(broken, data, out)
    assert "shard-w00-00000" in str(err.value)
    assert not list(out.glob("shard-*")) and not list(out.glob(".shard-*"))


def test_a_deleted_latent_shard_is_named_and_encoding_again_restores_it(data, ae, cache, tmp_path):
    out = copy_of(cache, tmp_path)
    victim = sorted(out.glob("shard-*"))[-1]  # the last: only the cache's shards.json knows it was there
    shutil.rmtree(victim)
    with pytest.raises(ShardError, match=rf"missing \(deleted\?\): {victim.name}\. Encode the dataset again"):
        LatentClipDataset(out, T)
    assert encode_dataset(ae, data, out)["encoded"] == 1
    assert len(LatentClipDataset(out, T, split="all")) == len(LatentClipDataset(cache, T, split="all"))


def test_a_dataset_with_a_shard_missing_is_never_encoded(data, ae, tmp_path):
    moved = tmp_path / "ds"
    shutil.copytree(data, moved)
    shutil.rmtree(sorted(moved.glob("shard-*"))[1])
    with pytest.raises(ShardError, match="missing.*Re-run the same `worldsim collect` command"):
        encode_dataset(ae, moved, tmp_path / "cache")
