"""Any aspect ratio: one world model trained on Craft2D at several frame sizes (`train world views=[...]`), its
checkpoint recording them, and Dream-v0 playing at any view the model tiles (`view=(H, W)`)."""

from __future__ import annotations

import json
import re
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from PIL import Image

from worldsim.checkpoint import load_world, read_metadata, trained_views
from worldsim.cli import main
from worldsim.data.collect import CollectConfig, collect
from worldsim.data.latents import LatentClipDataset, ViewBuckets
from worldsim.envs.craft2d import Craft2DEnv, Scenario
from worldsim.envs.dream import DreamEnv, DreamVectorEnv
from worldsim.simulator import WorldSimulator
from worldsim.train.world import TrainWorldConfig, build_task

from test_checkpoint import _edit
from test_dream import write_world

SHAPES = [[64, 64, 3], [64, 96, 3], [96, 64, 3]]  # (H, W, 3): 8x8 tiles (the main view), 12 wide, 12 high


def _craft2d(out, **view):
    """A small random Craft2D dataset at a view (view_width=, view_height= in tiles), as conftest.random_craft2d."""
    collect(CollectConfig(out=str(out), agent="random", steps=360, env_kwargs={"world_width": 64, **view},
                          max_episode_steps=30, shard_steps=360), quiet=True)
    return out


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Three datasets (64x64, 96x64, 64x96 pixels, W x H), an autoencoder, and a few steps of a world model trained on
    all three."""
    root = tmp_path_factory.mktemp("views")
    data = [_craft2d(root / "main"), _craft2d(root / "wide", view_width=12), _craft2d(root / "tall", view_height=12)]
    assert main(["train", "ae", f"data={data[0]}", "optim.steps=1", "optim.warmup=0", "model.width=8",
                 "batch_size=2", "eval_frames=2", "stats_frames=8", "holdout=0.3", f"loop.out={root / 'ae'}",
                 "loop.eval_every=0"]) == 0
    args = [f"data={data[0]}", f"ae={root / 'ae' / 'last.safetensors'}", f"views=[{data[1]},{data[2]}]",
            "dit.width=24", "dit.depth=1", "dit.heads=2", "dit.context=4", "clip_len=4", "batch_size=2",
            "eval_clips=1", "eval_context=2", "horizons=[1]", "holdout=0.3", "optim.steps=3", "optim.warmup=1",
            f"loop.out={root / 'world'}", "loop.eval_every=0"]
    assert main(["train", "world", *args]) == 0
    return {"root": root, "data": data, "args": args, "ckpt": root / "world" / "last.safetensors"}


def test_a_mixed_view_run_records_its_views_and_trains_on_every_view_of_the_game(run):
    world = load_world(run["ckpt"])
    assert world.metadata["views"] == SHAPES and world.metadata["frame_shape"] == SHAPES[0]
    assert world.start_frames.shape[1:] == (64, 64, 3)  # the start bank is the main view's
    assert world.metadata["config"]["views"] == [str(d) for d in run["data"][1:]]
    rewards = np.concatenate([np.load(p / "rewards.npy") for d in run["data"] for p in d.glob("shard-*")])
    values = np.unique(rewards).tolist()
    assert world.dit.config.reward_values == (tuple(values) if len(values) >= 2 else ())  # over all the views
    sim_frames = np.load(next(run["data"][1].glob("shard-*")) / "frames.npy")[:2]  # 96x64 (W x H), trained
    sim = WorldSimulator.from_checkpoint(run["ckpt"], device="cpu", seed=0)
    sim.reset(sim_frames[None])
    assert sim.step([2]).frames.shape == (1, 64, 96, 3)


def test_a_run_says_each_datasets_share_of_the_batches(run, capsys):
    cfg = TrainWorldConfig(data=str(run["data"][0]), ae=str(run["root"] / "ae" / "last.safetensors"),
                           views=[str(d) for d in run["data"][1:]], mix=[0, 0, 1],
                           dit={"width": 24, "depth": 1, "heads": 2, "context": 4}, clip_len=4, batch_size=3,
                           eval_clips=1, eval_context=2, horizons=[1], holdout=0.3)
    build_task(cfg)
    out = capsys.readouterr().out
    assert f"batches drawn from: {run['data'][0]} 0.0% (" in out and f"{run['data'][2]} 100.0% (" in out, out


def test_a_batch_is_one_view_drawn_alike_from_the_same_rng(run):
    cfg = TrainWorldConfig(data=str(run["data"][0]), ae=str(run["root"] / "ae" / "last.safetensors"),
                           views=[str(d) for d in run["data"][1:]],
                           dit={"width": 24, "depth": 1, "heads": 2, "context": 4}, clip_len=4, batch_size=3,
                           eval_clips=1, eval_context=2, horizons=[1], holdout=0.3)
    task = build_task(cfg)  # the caches exist: nothing is encoded again
    draws = [task.batch(np.random.default_rng(7))[0] for _ in range(2)]  # two ranks: the same global batch (clips)
    assert all(np.array_equal(a, b) for a, b in zip(*draws))
    shapes = []
    rng = np.random.default_rng(0)
    for _ in range(40):
        latents = task.batch(rng)[0][0]  # the clips' (B, T, C, h, w) latents: every row of one view
        shapes.append(tuple(latents.shape[-2:]))
    assert set(shapes) == {(8, 8), (8, 12), (12, 8)}  # latents (h, w) of the three views
    sets = [LatentClipDataset(next(d.parent.glob(f"{d.name}.latents-*")), 4, "train", 0.3) for d in run["data"]]
    buckets = ViewBuckets(sets)
    assert np.allclose(buckets.p, [len(s) for s in sets] / np.sum([len(s) for s in sets]))  # by clips
    one = LatentClipDataset(sets[0].root, 4, "train", 0.3)
    assert np.array_equal(ViewBuckets([one]).sample(3, np.random.default_rng(1)).latents,
                          one.sample(3, np.random.default_rng(1)).latents)  # one dataset: draws as before


def test_mix_sets_each_datasets_share_of_the_batches(run):
    sets = [LatentClipDataset(next(d.parent.glob(f"{d.name}.latents-*")), 4, "train", 0.3) for d in run["data"]]
    buckets = ViewBuckets(sets, [3, 0, 1])  # not by clips: the weights given, the second never drawn
    assert np.allclose(buckets.p, [0.75, 0.0, 0.25])
    rng = np.random.default_rng(0)
    shapes = [tuple(buckets.sample(2, rng).latents.shape[-2:]) for _ in range(200)]
    assert (8, 12) not in shapes  # the 96x64 view, weight 0
    assert 0.65 < shapes.count((8, 8)) / len(shapes) < 0.85  # data's 3 of 4 (binomial sd 0.03)
    with pytest.raises(ValueError, match=r"mix=\[1.0, 2.0\]: expected 3 weights >= 0"):
        ViewBuckets(sets, [1.0, 2.0])
    cfg = TrainWorldConfig(data=str(run["data"][0]), ae=str(run["root"] / "ae" / "last.safetensors"),
                           views=[str(d) for d in run["data"][1:]], mix=[0, 0, 1],
                           dit={"width": 24, "depth": 1, "heads": 2, "context": 4}, clip_len=4, batch_size=3,
                           eval_clips=1, eval_context=2, horizons=[1], holdout=0.3)
    task, rng = build_task(cfg), np.random.default_rng(0)  # a run's batches: the 64x96 view's only
    assert {tuple(task.batch(rng)[0][0].shape[-2:]) for _ in range(10)} == {(12, 8)}


@pytest.mark.parametrize("mix", ["[1,1]", "[1,-1,1]", "[0,0,0]"])
def test_a_mix_that_does_not_fit_the_datasets_is_refused_before_any_work(run, tmp_path, capsys, mix):
    args = [a for a in run["args"] if not a.startswith("loop.out=")]
    assert main(["train", "world", *args, f"mix={mix}", f"loop.out={tmp_path / 'w'}"]) == 2
    err = capsys.readouterr().err
    assert "mix=" in err and "3 weights >= 0" in err, err
    assert not (tmp_path / "w").exists()


def _manifest_copy(src, dst, **changes):
    """A dataset directory holding only `src`'s manifest, edited: views are refused from their manifests, before any
    shard is read or encoded."""
    dst.mkdir()
    manifest = json.loads((src / "manifest.json").read_text()) | changes
    (dst / "manifest.json").write_text(json.dumps(manifest))
    return dst


@pytest.mark.parametrize("changes, message", [
    ({"env": "CartPole-v1"}, r"env 'CartPole-v1', but data=.* has 'worldsim/Craft2D-v0'"),
    ({"action_meanings": ["noop", "left"]}, r"action_meanings \['noop', 'left'\], but data="),
    ({"captions": False}, r"captions False, but data=.* has True"),
    ({"frame_shape": [64, 72, 3]}, r"frames of \[64, 72, 3\]: expected \[H, W, 3\], H a multiple of 16 and W of 16"),
])
def test_views_of_another_game_or_that_do_not_tile_are_refused_naming_them(run, tmp_path, capsys, changes, message):
    bad = _manifest_copy(run["data"][1], tmp_path / "bad", **changes)
    args = [a for a in run["args"] if not a.startswith(("views=", "loop.out="))]
    assert main(["train", "world", *args, f"views=[{bad}]", f"loop.out={tmp_path / 'w'}"]) == 2
    err = capsys.readouterr().err
    assert f"views: {bad}" in err and re.search(message, err), err
    assert not list(tmp_path.glob("bad.latents-*")) and not (tmp_path / "w").exists()


def test_views_given_twice_or_as_the_data_are_refused(run, capsys):
    data = str(run["data"][0])
    for views in (f"[{data}]", f"[{run['data'][1]},{run['data'][1]}]"):
        assert main(["train", "world", *[a for a in run["args"] if not a.startswith("views=")], f"views={views}"]) == 2
        assert "views=" in capsys.readouterr().err


def test_a_checkpoint_without_views_was_trained_on_its_frame_shape(tmp_path):
    path = write_world(tmp_path / "old.safetensors")
    _edit(path, lambda m: m.pop("views"))
    assert "views" not in read_metadata(path)
    assert load_world(path).metadata["views"] == [[64, 64, 3]] and trained_views(read_metadata(path)) == [(64, 64, 3)]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """A tiny random-weight Craft2D model that says it was trained at 64x64 and 96x64 (W x H), with a text
    encoder."""
    return write_world(tmp_path_factory.mktemp("views_dream") / "w.safetensors", views=[[64, 96, 3]],
                       vocab=("biome", "day", "desert", "night"))


def test_dream_plays_at_a_trained_view_from_every_start(ckpt):
    env = gym.make("worldsim/Dream-v0", checkpoint=str(ckpt), view=(64, 96))
    assert env.observation_space.shape == (64, 96, 3)
    obs, info = env.reset(seed=3)  # the real game's reset frame at this view, seeded by the env's RNG
    assert info["start"] == "engine" and info["view_trained"] and obs.shape == (64, 96, 3)
    assert np.array_equal(obs, env.reset(seed=3)[0]) and not np.array_equal(obs, env.reset(seed=4)[0])
    assert env.step(2)[0].shape == (64, 96, 3)
    image = Craft2DEnv(view_width=12).reset(seed=9)[0]
    video = np.stack([Craft2DEnv(view_width=12).reset(seed=s)[0] for s in range(3)])
    scenario = Scenario("..........\n....>.....\nGGGGGGGGGG\nDDDDDDDDDD")
    for options, start in (({"image": image}, "image"), ({"video": video}, "video"), ({"scenario": scenario},
                           "scenario"), ({"prompt": "a desert at night"}, "prompt")):
        obs, info = env.reset(seed=0, options=options)
        assert info["start"] == start and obs.shape == (64, 96, 3), start
        obs, _, _, _, info = env.step(1)
        assert obs.shape == (64, 96, 3) and obs.dtype == np.uint8 and info["view_trained"], start
    real = Craft2DEnv(view_width=12).reset(seed=0, options={"scenario": scenario})[0]
    assert np.array_equal(env.reset(seed=0, options={"scenario": scenario})[0], real)
    with pytest.raises(ValueError, match=r"image of shape \(64, 64, 3\).*\(64, 96, 3\)"):
        env.reset(options={"image": Craft2DEnv().reset(seed=0)[0]})
    env.close()


def test_dream_at_a_view_passes_gymnasiums_checks(ckpt):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        env = gym.make("worldsim/Dream-v0", checkpoint=str(ckpt), view=(96, 64))
        check_env(env.unwrapped)
    assert [str(w.message) for w in caught] == []
    env.close()


def test_dream_plays_at_an_untrained_view_and_says_so(ckpt):
    env = DreamEnv(checkpoint=ckpt, view=(96, 96, 3))
    obs, info = env.reset(seed=0)
    assert obs.shape == (96, 96, 3) and info["view_trained"] is False and info["start"] == "engine"
    assert env.step(0)[4]["view_trained"] is False
    narrow = DreamEnv(checkpoint=ckpt, view=(64, 32))  # 4 tiles wide: the model tiles it, the game cannot draw it
    with pytest.raises(ValueError, match=r"view \(64, 32\): the real game cannot draw it.*start from an image"):
        narrow.reset(seed=0)
    assert narrow.reset(seed=0, options={"image": np.zeros((64, 32, 3), np.uint8)})[0].shape == (64, 32, 3)
    with pytest.raises(ValueError, match=r"the real game cannot draw it.*the vector env starts its worlds"):
        DreamVectorEnv(1, checkpoint=ckpt, view=(64, 32))
    main_view = DreamEnv(checkpoint=ckpt, view=(64, 64))
    assert main_view.reset(seed=0)[1] == {"denoise_steps": 2, "t": 0, "start": "bank", "view_trained": True}


@pytest.mark.parametrize("view, message", [
    ((64, 72), r"view=\(64, 72\): .* cannot make frames of 72x64 pixels \(W x H\).*W of 16"),
    ((12, 8), r"view=\(12, 8\).*Craft2D draws 8 px a tile, so view_width=12, view_height=8 is view=\(64, 96\)"),
    ("wide", r"view='wide': expected a frame size \(H, W\) in pixels"),
    ((64, 64, 4), r"view=\(64, 64, 4\): expected a frame size"),
])
def test_a_view_that_does_not_tile_is_refused(ckpt, view, message):
    with pytest.raises(ValueError, match=message):
        DreamEnv(checkpoint=ckpt, view=view)


def test_another_game_at_another_view_needs_an_image_or_a_video(tmp_path):
    path = write_world(tmp_path / "cp.safetensors", env="CartPole-v1", n_actions=3, views=[[64, 96, 3]])
    env = DreamEnv(checkpoint=path, view=(64, 96))
    with pytest.raises(ValueError, match=r"no start frames at view \(64, 96\).*'image'"):
        env.reset(seed=0)
    image = np.zeros((64, 96, 3), np.uint8)
    assert env.reset(seed=0, options={"image": image})[0].shape == (64, 96, 3)
    with pytest.raises(ValueError, match=r"no start frames at view \(64, 96\)"):
        DreamVectorEnv(2, checkpoint=path, view=(64, 96))


def test_the_vector_env_plays_at_a_view_as_dream_env_does(ckpt):
    envs = gym.make_vec("worldsim/Dream-v0", num_envs=2, checkpoint=str(ckpt), view=(64, 96))
    assert envs.single_observation_space.shape == (64, 96, 3) and envs.observation_space.shape == (2, 64, 96, 3)
    obs, info = envs.reset(seed=5)
    assert obs.shape == (2, 64, 96, 3) and info["view_trained"].all()
    one = DreamEnv(checkpoint=ckpt, view=(64, 96))
    assert np.array_equal(obs[1], one.reset(seed=6)[0])  # sub-env i starts as DreamEnv seeded s + i
    assert envs.step(np.array([1, 2]))[0].shape == (2, 64, 96, 3)
    envs.close()


def test_dream_and_play_take_a_view_in_tiles(ckpt, tmp_path, capsys):
    out = tmp_path / "r.gif"
    assert main(["dream", f"checkpoint={ckpt}", "view_width=12", "steps=2", f"out={out}", "scale=1"]) == 0
    assert Image.open(out).size == (96 + 4 + 96, 64)  # the dream and the game beside it, both 12 x 8 tiles
    assert main(["dream", f"checkpoint={ckpt}", "view_height=12", "steps=1", "real=false", "agent=random",
                 f"out={tmp_path / 't.gif'}", "scale=1"]) == 0
    assert Image.open(tmp_path / "t.gif").size == (64, 96)
    assert "a frame size the model was not trained at" in capsys.readouterr().out
    assert main(["play", "mode=dream", f"checkpoint={ckpt}", "view_width=12", "steps=1", "fps=0", "scale=1"]) == 0
    assert main(["dream", f"checkpoint={ckpt}", "view_width=9", f"out={tmp_path / 'x.gif'}"]) == 2
    assert "view_width=9" in capsys.readouterr().err


def test_the_recipe_configs_parse():
    from worldsim.config import parse_overrides
    from worldsim.data.collect import CollectConfig

    wide = parse_overrides(CollectConfig, ["experiment=craft2d_96x64"], "collect")  # W x H, as Craft2D-v0 says
    tall = parse_overrides(CollectConfig, ["experiment=craft2d_64x96"], "collect")
    assert wide.env_kwargs["view_width"] == 12 and tall.env_kwargs["view_height"] == 12 and wide.seed != tall.seed
    cfg = parse_overrides(TrainWorldConfig, ["experiment=craft2d_s_views"], "train_world")
    text = parse_overrides(TrainWorldConfig, ["experiment=craft2d_s_text"], "train_world")
    assert sorted(cfg.views) == sorted([wide.out, tall.out])
    assert cfg.data == text.data and cfg.ae == text.ae and cfg.init == f"{text.loop.out}/last.safetensors"
    assert cfg.dit == text.dit and cfg.diffusion == text.diffusion  # the model it fine-tunes, unchanged


def test_probes_take_a_model_at_a_view_it_was_trained_at_or_not(tmp_path):
    from worldsim.probes.runner import ProbeConfig, _load

    path = write_world(tmp_path / "w.safetensors")
    _edit(path, lambda m: m.update(frame_shape=[64, 96, 3], latent_shape=[4, 8, 12], views=[[64, 96, 3], [64, 64, 3]]),
          lambda t: t.pop("start.frames"))  # a model whose main view is 96x64: the probes' 64x64 is one of its views
    cfg = ProbeConfig(checkpoint=str(path), device="cpu")
    _, meta = _load(cfg)
    assert meta["checkpoint"] == str(path) and meta["view_trained"] is True
    _edit(path, lambda m: m.update(views=[[64, 96, 3]]))  # 64x64 untrained: probed anyway (the square-only baseline)
    _, meta = _load(cfg)
    assert meta["view_trained"] is False and meta["trained_views"] == [[64, 96, 3]]
