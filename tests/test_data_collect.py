"""`worldsim collect`: the dataset it writes (manifest, arrival convention, budget), on Craft2D and a render()-only
env, determinism across runs and workers, resume after SIGKILL, identity clashes, bad input and a full disk."""

from __future__ import annotations

import errno
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from worldsim import cli
from worldsim.config import parse_overrides
from worldsim.data import shards
from worldsim.data.collect import CollectConfig, collect, derive_seed, resize
from worldsim.data.integrity import VERIFIED
from worldsim.data.shards import open_dataset, shard_paths
from worldsim.data.stats import format_summary

CRAFT = "worldsim/Craft2D-v0"
SMALL_WORLD = {"world_width": 64}  # a small world generates fast; frames stay (64, 64, 3)
ROW_ARRAYS = ("frames", "actions", "rewards", "terminated", "truncated", "episode")


# ---- tiny test envs ----------------------------------------------------------------------------------------------
class CounterEnv(gym.Env):
    """An 8x8 rgb frame that spells out the step: pixel channel 0 is t, channel 1 the action that led here.
    Discrete(3); reward = action; terminated after `length` steps, so every episode is `length + 1` frames."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, render_mode=None, length: int = 3):
        self.render_mode, self.length = render_mode, length
        self.observation_space = gym.spaces.Box(0, 255, (8, 8, 3), np.uint8)
        self.action_space = gym.spaces.Discrete(3)
        self.t = 0

    def _frame(self, action: int) -> np.ndarray:
        frame = np.zeros((8, 8, 3), np.uint8)
        frame[..., 0], frame[..., 1] = self.t, action
        return frame

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        self._last = self._frame(0)
        return self._last, {}

    def step(self, action):
        self.t += 1
        self._last = self._frame(int(action))
        return self._last, float(action), self.t >= self.length, False, {}

    def render(self):
        return self._last


class VectorOnlyEnv(gym.Env):
    """Vector observations and a render() that draws nothing: no rgb frames to collect."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, render_mode=None):
        self.render_mode = render_mode
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (4,), np.float32)
        self.action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(4, np.float32), {}

    def step(self, action):
        return np.zeros(4, np.float32), 0.0, False, False, {}

    def render(self):
        return None


class BoxActionEnv(CounterEnv):
    """Rgb frames, but continuous actions."""

    def __init__(self, render_mode=None):
        super().__init__(render_mode)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)


COUNTER, NO_FRAMES, BOX_ACTIONS = "worldsim_test/Counter-v0", "worldsim_test/NoFrames-v0", "worldsim_test/BoxAct-v0"
for _id, _cls in ((COUNTER, CounterEnv), (NO_FRAMES, VectorOnlyEnv), (BOX_ACTIONS, BoxActionEnv)):
    if _id not in gym.registry:
        gym.register(id=_id, entry_point=_cls)


# ---- helpers -----------------------------------------------------------------------------------------------------
def craft_cfg(out: Path, **overrides) -> CollectConfig:
    fields = dict(out=str(out), agent="random", steps=2000, shard_steps=300, env_kwargs=SMALL_WORLD,
                  max_episode_steps=100)
    return CollectConfig(**{**fields, **overrides})


def episodes_of(root: Path) -> dict[int, dict]:
    """Episode id -> its rows (arrays, captions) and its meta, read through open_dataset."""
    _, opened = open_dataset(root)
    out = {}
    for shard in opened:
        captions = shard.captions()
        for e in shard.meta["episodes"]:
            rows = slice(e["start"], e["start"] + e["length"])
            ep = {k: np.asarray(v[rows]) for k, v in shard.arrays.items()}
            out[e["id"]] = dict(ep, captions=captions[rows], meta=dict(e, worker=shard.meta["worker"]))
    return out


def assert_same_episodes(a: dict[int, dict], b: dict[int, dict]) -> None:
    assert sorted(a) == sorted(b)
    for eid in a:
        for k in ROW_ARRAYS + ("captions",):
            assert np.array_equal(a[eid][k], b[eid][k]), f"episode {eid}: {k} differ"
        assert a[eid]["meta"] == b[eid]["meta"], f"episode {eid}: meta differs"


def listing(root: Path) -> dict[str, tuple[bytes, int]]:
    """Every shard's meta.json bytes and frames.npy mtime: changes if anything is rewritten."""
    return {p.name: ((p / "meta.json").read_bytes(), (p / "frames.npy").stat().st_mtime_ns) for p in shard_paths(root)}


# ---- Craft2D, one worker -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def craft(tmp_path_factory):
    """A 2,000-frame Craft2D dataset of ~20 episodes in 7 shards, with its config and summary."""
    cfg = craft_cfg(tmp_path_factory.mktemp("craft") / "ds")
    summary = collect(cfg, quiet=True)
    return cfg, summary, episodes_of(Path(cfg.out))


def test_craft2d_manifest_describes_the_collection(craft):
    cfg, _, _ = craft
    manifest = json.loads((Path(cfg.out) / "manifest.json").read_text())
    env = gym.make(CRAFT, **SMALL_WORLD)
    assert manifest["env"] == CRAFT and manifest["env_kwargs"] == SMALL_WORLD
    assert manifest["action_meanings"] == env.unwrapped.get_action_meanings()
    assert manifest["frame_shape"] == [64, 64, 3]
    assert manifest["agent"] == "random" and manifest["seed"] == 0 and manifest["workers"] == 1
    assert manifest["format_version"] == shards.FORMAT_VERSION
    assert manifest["action_convention"] == "arrival"
    assert manifest["frame_source"] == "observation" and manifest["captions"] is True
    assert manifest["max_episode_steps"] == 100 and manifest["shard_steps"] == 300


def test_craft2d_rows_add_up_to_steps_in_several_shards(craft):
    cfg, summary, eps = craft
    rows = sum(len(e["actions"]) for e in eps.values())
    assert cfg.steps <= rows <= cfg.steps + 1  # one worker may store one extra frame, never fewer
    assert summary["frames"] == rows
    assert len(shard_paths(Path(cfg.out))) >= 5
    assert all(len(e["actions"]) >= 2 for e in eps.values())  # every episode has a transition
    assert sorted(eps) == list(range(len(eps)))  # one worker plays episodes 0, 1, 2, ...


def test_craft2d_rows_follow_the_arrival_convention(craft):
    _, _, eps = craft
    for eid, e in eps.items():
        assert e["actions"][0] == -1 and e["rewards"][0] == 0.0, f"episode {eid}: reset row"
        assert ((e["actions"][1:] >= 0) & (e["actions"][1:] < 12)).all(), f"episode {eid}: action out of range"
        assert (e["episode"] == eid).all()
        assert e["rewards"].sum() == pytest.approx(e["meta"]["ret"])
        assert e["meta"]["seed"] == derive_seed(0, eid, 0)  # episode e is seeded from (seed, e)


def test_craft2d_episode_flags_only_on_the_last_row_and_the_budget_cut(craft):
    _, summary, eps = craft
    for eid, e in eps.items():
        assert not e["terminated"][:-1].any() and not e["truncated"][:-1].any(), f"episode {eid}: flag mid-episode"
        assert e["terminated"][-1] or e["truncated"][-1], f"episode {eid}: its last row is not marked"
    cut = [eid for eid, e in eps.items() if e["meta"]["cut"]]
    assert cut == [max(eps)], "only the last episode is cut by the budget"
    last = eps[max(eps)]
    assert last["truncated"][-1] and not last["terminated"][-1]
    assert len(last["actions"]) < 101  # not the env's time limit (100 steps = 101 frames)
    assert summary["episodes_cut"] == 1
    natural = [e for e in eps.values() if not e["meta"]["cut"]]
    assert all(len(e["actions"]) == 101 or e["terminated"][-1] for e in natural)


def test_craft2d_captions_and_positions_are_stored(craft):
    _, _, eps = craft
    for e in eps.values():
        assert all(isinstance(c, str) and c for c in e["captions"])
        assert e["positions"].shape == (len(e["actions"]), 2) and e["positions"].dtype == np.int32
        assert (e["positions"][:, 0] >= 0).all() and (e["positions"][:, 0] < 64).all()


def test_craft2d_replaying_the_stored_actions_reproduces_frames_rewards_and_flags(craft):
    """The arrival convention, checked against the env itself: stepping actions[t] from frame t-1 gives frame t."""
    _, _, eps = craft
    env = gym.make(CRAFT, max_episode_steps=100, **SMALL_WORLD)
    for eid in (0, 1, max(eps)):
        e = eps[eid]
        obs, info = env.reset(seed=e["meta"]["seed"])
        assert np.array_equal(obs, e["frames"][0])
        assert info["caption"] == e["captions"][0] and tuple(e["positions"][0]) == tuple(info["player_pos"])
        for t in range(1, len(e["actions"])):
            obs, reward, terminated, truncated, info = env.step(int(e["actions"][t]))
            assert np.array_equal(obs, e["frames"][t]), f"episode {eid}, row {t}"
            assert reward == e["rewards"][t] and terminated == e["terminated"][t]
            assert info["caption"] == e["captions"][t] and tuple(e["positions"][t]) == tuple(info["player_pos"])
            if not e["meta"]["cut"]:
                assert truncated == e["truncated"][t]
    env.close()


def test_craft2d_summary_totals(craft):
    cfg, summary, eps = craft
    assert {"frames", "episodes", "action_histogram", "mean_return", "bytes_on_disk", "coverage"} <= set(summary)
    assert summary["episodes"] == len(eps)
    actions = np.concatenate([e["actions"][1:] for e in eps.values()])
    assert summary["action_histogram"] == dict(zip(gym.make(CRAFT).unwrapped.get_action_meanings(),
                                                   np.bincount(actions, minlength=12).tolist()))
    returns = [e["meta"]["ret"] for e in eps.values() if not e["meta"]["cut"]]
    assert summary["mean_return"] == pytest.approx(np.mean(returns))
    # the data files; verified.json is the readers' record, rewritten as loads verify more (timing: its racy rule)
    on_disk = sum(f.stat().st_size for p in shard_paths(Path(cfg.out)) for f in p.iterdir()
                  if f.name not in ("meta.json", VERIFIED))
    assert summary["bytes_on_disk"] == on_disk
    assert summary["coverage"]["max_wander_tiles"] >= 1
    stored = json.loads((Path(cfg.out) / "summary.json").read_text())
    assert {k: v for k, v in stored.items() if k != "collect_seconds"} == \
        {k: v for k, v in summary.items() if k != "collect_seconds"}


# ---- the budget, exactly, on an env with fixed-length episodes ----------------------------------------------------
def test_craft2d_changes_count_what_mining_and_placing_left_as_the_engine_did(tmp_path):
    """The summary's `changes`, read from the frames, against the engine replaying the episodes: every block mined
    where the player stood still, and whether it left open sky or a cave wall; every block placed, and whether into
    the open sky. Builders holding blocks from the start (start_inventory), so there is placing to count."""
    from worldsim.data.stats import craft2d_changes
    from worldsim.data.shards import read_manifest
    from worldsim.envs.craft2d.tiles import EMPTY, Action, Tile

    kwargs = {**SMALL_WORLD, "start_inventory": {"dirt": 30, "sand": 10}}
    options = {"explorer": {"plan_weights": {"tinker": 3.0, "build": 1.0, "loop": 0.5, "dig": 0.5}}}
    cfg = craft_cfg(tmp_path / "ds", agent="mixture", agent_options=options, steps=600, env_kwargs=kwargs,
                    max_episode_steps=150)
    summary = collect(cfg, quiet=True)
    root = Path(cfg.out)
    assert summary["changes"] == craft2d_changes(root, read_manifest(root))
    got = craft2d_changes(root, read_manifest(root), most=10 ** 9)
    truth = dict.fromkeys(("mined", "mined_to_sky", "placed", "placed_in_sky"), 0)
    tried = {name: [0, 0] for name in ("mine", "mine_up", "mine_down", "place", "place_down")}
    env = gym.make(CRAFT, max_episode_steps=150, **kwargs)
    for e in episodes_of(root).values():
        env.reset(seed=e["meta"]["seed"])
        game = env.unwrapped.game
        for t in range(1, len(e["actions"])):
            a, w = int(e["actions"][t]), game.width
            i = game.ys[0] * w + game.xs[0]
            j = {Action.MINE: i + game.facings[0], Action.PLACE: i + game.facings[0], Action.MINE_UP: i - w,
                 Action.MINE_DOWN: i + w, Action.PLACE_DOWN: i + w}.get(a)
            was = None if j is None else int(game.cells[j])
            _, _, _, _, info = env.step(a)
            if j is None or tuple(e["positions"][t]) != tuple(e["positions"][t - 1]):
                continue
            now = int(game.cells[j])
            name = Action(a).name.lower()
            tried[name][0] += 1
            if any(ev.startswith("player mined") for ev in info["events"]) and EMPTY[now]:
                truth["mined"] += 1
                truth["mined_to_sky"] += now == Tile.SKY
                tried[name][1] += 1
            if any(ev.startswith("player placed") for ev in info["events"]) and EMPTY[was] and not EMPTY[now]:
                truth["placed"] += 1
                truth["placed_in_sky"] += was == Tile.SKY
                tried[name][1] += 1
    assert {k: got[k] for k in truth} == truth, (got, truth)
    assert truth["mined_to_sky"] > 0 and truth["mined"] > truth["mined_to_sky"] and truth["placed_in_sky"] > 0
    assert got["read"] == got["steps"] > truth["mined"] + truth["placed"]  # mining air and placing on solid count not
    assert got["by_action"] == tried and sum(t for t, _ in tried.values()) == got["read"]
    assert sum(d for _, d in tried.values()) == truth["mined"] + truth["placed"]  # tried, not done: counted apart
    assert all(t > d for t, d in tried.values() if t), tried
    line = format_summary({**summary, "collect_seconds": 1.0})
    t, d = tried["place"]
    assert "blocks mined" in line and f"place {100 * d / t:.0f}% of {t} " in line


@pytest.mark.parametrize("steps, lengths, cut", [
    (8, [4, 4], False),  # the budget ends with an episode: nothing cut
    (10, [4, 4, 2], True),  # cut after one transition
    (9, [4, 4, 2], True),  # the budget ends on a reset frame: one more transition, one extra frame
])
def test_budget_cuts_episodes_after_at_least_one_transition(tmp_path, steps, lengths, cut):
    summary = collect(CollectConfig(out=str(tmp_path / "ds"), env=COUNTER, agent="random", steps=steps,
                                    shard_steps=100), quiet=True)
    eps = episodes_of(tmp_path / "ds")
    assert [len(e["actions"]) for e in eps.values()] == lengths
    assert summary["frames"] == sum(lengths) and summary["episodes_cut"] == int(cut)
    last = eps[max(eps)]
    assert last["meta"]["cut"] == cut and last["truncated"][-1] == cut
    for e in eps.values():
        # the frame spells out its step and the action that led to it: the arrival convention, exactly
        assert (e["frames"][:, 0, 0, 0] == np.arange(len(e["actions"]))).all()
        assert (e["frames"][1:, 0, 0, 1] == e["actions"][1:]).all() and (e["rewards"][1:] == e["actions"][1:]).all()


# ---- render()-only envs ------------------------------------------------------------------------------------------
def test_cartpole_frames_come_from_render_resized_to_a_64_pixel_short_side(tmp_path):
    out = tmp_path / "ds"
    summary = collect(CollectConfig(out=str(out), env="CartPole-v1", agent="random", steps=120, shard_steps=50),
                      quiet=True)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["frame_shape"] == [64, 96, 3] and manifest["native_frame_shape"] == [400, 600, 3]
    assert manifest["frame_source"] == "render" and manifest["captions"] is False
    assert manifest["action_meanings"] == ["0", "1"]
    eps = episodes_of(out)
    assert 120 <= summary["frames"] <= 121 and len(shard_paths(out)) >= 2
    assert "coverage" not in summary
    for e in eps.values():
        assert e["frames"].shape[1:] == (64, 96, 3) and e["frames"].dtype == np.uint8
        assert e["captions"] == [""] * len(e["actions"]) and "positions" not in e
    assert not any((p / "positions.npy").exists() for p in shard_paths(out))
    first = eps[0]
    assert not np.array_equal(first["frames"][0], first["frames"][-1])  # the pole moves: real frames, not a blank
    env = gym.make("CartPole-v1", render_mode="rgb_array")
    env.reset(seed=first["meta"]["seed"])
    assert np.array_equal(first["frames"][0], resize(env.render(), (64, 96, 3)))
    env.close()


def test_resize_returns_an_owned_uint8_frame_close_to_a_float_reference():
    import torch
    import torch.nn.functional as F

    frame = np.random.default_rng(0).integers(0, 256, (400, 600, 3), dtype=np.uint8)
    small = resize(frame, (64, 96, 3))
    assert small.shape == (64, 96, 3) and small.dtype == np.uint8
    assert small.base is None and small.flags["C_CONTIGUOUS"]  # holds no torch buffer alive
    x = torch.from_numpy(frame).permute(2, 0, 1)[None].double()
    ref = F.interpolate(x, size=(64, 96), mode="bilinear", antialias=True)[0].permute(1, 2, 0).numpy()
    assert np.abs(small.astype(np.float64) - ref).max() <= 1.0


def test_frame_size_resizes_to_that_size(tmp_path):
    out = tmp_path / "ds"
    collect(CollectConfig(out=str(out), env="CartPole-v1", agent="random", steps=40, shard_steps=20,
                          frame_size=[32, 48]), quiet=True)
    manifest, opened = open_dataset(out)
    assert manifest["frame_shape"] == [32, 48, 3]
    assert all(s.arrays["frames"].shape[1:] == (32, 48, 3) for s in opened)


# ---- determinism, workers, resume --------------------------------------------------------------------------------
def test_same_config_twice_gives_identical_data_and_a_rerun_is_a_no_op(tmp_path, craft):
    cfg, _, eps = craft
    again = craft_cfg(tmp_path / "again")
    collect(again, quiet=True)
    assert_same_episodes(eps, episodes_of(tmp_path / "again"))
    assert [p.name for p in shard_paths(tmp_path / "again")] == [p.name for p in shard_paths(Path(cfg.out))]
    before = listing(tmp_path / "again")
    summary = collect(again, quiet=True)
    assert listing(tmp_path / "again") == before
    assert summary["frames"] == sum(len(e["actions"]) for e in eps.values())
    other_seed = craft_cfg(tmp_path / "seed1", seed=1, steps=300)
    collect(other_seed, quiet=True)
    assert not np.array_equal(episodes_of(tmp_path / "seed1")[0]["frames"], eps[0]["frames"])


def test_two_worker_processes_share_the_budget_and_play_the_same_episodes(tmp_path, craft):
    _, _, one_worker = craft
    out = tmp_path / "ds"
    cfg = craft_cfg(out, steps=1001, shard_steps=200, workers=2)
    summary = collect(cfg, quiet=True)
    eps = episodes_of(out)
    names = [p.name for p in shard_paths(out)]
    assert any(n.startswith("shard-w00-") for n in names) and any(n.startswith("shard-w01-") for n in names)
    for k, share in ((0, 501), (1, 500)):
        mine = [e for e in eps.values() if e["meta"]["worker"] == k]
        assert all(e["meta"]["id"] % 2 == k for e in mine)  # worker k plays episodes k, k + 2, ...
        assert share <= sum(len(e["actions"]) for e in mine) <= share + 1
        assert sum(e["meta"]["cut"] for e in mine) <= 1
    assert summary["frames"] == sum(len(e["actions"]) for e in eps.values())
    # an episode's content depends only on (seed, id): the same as when one worker played it
    common = [eid for eid in eps if eid in one_worker and not eps[eid]["meta"]["cut"]
              and not one_worker[eid]["meta"]["cut"]]
    assert len(common) >= 5
    for eid in common:
        for k in ROW_ARRAYS + ("captions",):
            assert np.array_equal(eps[eid][k], one_worker[eid][k]), f"episode {eid}: {k}"
    before = listing(out)
    assert collect(cfg, quiet=True)["frames"] == summary["frames"]  # nothing re-collected
    assert listing(out) == before


def test_fork_and_spawn_workers_collect_the_same_data(tmp_path, monkeypatch):
    import worldsim.data.collect as collect_module

    results = {}
    for method in ("fork", "spawn"):
        monkeypatch.setattr(collect_module, "start_method", lambda m=method: m)
        collect(craft_cfg(tmp_path / method, steps=600, shard_steps=200, workers=2), quiet=True)
        results[method] = episodes_of(tmp_path / method)
    assert_same_episodes(results["fork"], results["spawn"])


def test_a_worker_process_finding_a_damaged_shard_reports_it_as_bad_input(tmp_path, capsys):
    out = tmp_path / "ds"
    collect(craft_cfg(out, steps=600, shard_steps=200, workers=2), quiet=True)
    damaged = shard_paths(out)[0] / "actions.npy"
    damaged.write_bytes(damaged.read_bytes()[:-10])
    argv = ["collect", f"out={out}", "agent=random", "steps=900", "shard_steps=200", "workers=2",
            "max_episode_steps=100", "env_kwargs.world_width=64"]
    assert cli.main(argv) == 2  # a clear message and exit code 2, not a traceback
    err = capsys.readouterr().err
    assert "worker 0" in err and str(damaged) in err and "Traceback" not in err


def test_resume_after_sigkill_equals_an_uninterrupted_run(tmp_path):
    out, reference = tmp_path / "killed", tmp_path / "reference"
    args = ["agent=random", "steps=12000", "shard_steps=600", "env_kwargs.world_width=64", "max_episode_steps=150"]
    proc = subprocess.Popen([sys.executable, "-m", "worldsim.cli", "collect", f"out={out}", *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=dict(os.environ))
    try:
        deadline = time.monotonic() + 60
        while not shard_paths(out) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        _, err = proc.communicate()
    assert proc.returncode == -signal.SIGKILL, f"collect ended before the kill: {err.decode()[-2000:]}"
    complete = shard_paths(out)
    assert 1 <= len(complete) < 20, "the kill should land mid-run"
    for p in out.iterdir():  # only the manifest, complete shards, and at most an unfinished hidden .tmp shard
        assert p.name == "manifest.json" or p in complete or re.fullmatch(r"\.shard-w00-\d{5}\.tmp", p.name), p
    assert not (out / "summary.json").exists()
    _, partial = open_dataset(out)  # the loader ignores the hidden leftover
    assert [s.path for s in partial] == complete

    assert cli.main(["collect", f"out={out}", *args]) == 0
    assert not list(out.glob(".shard-*"))
    assert collect(parse_overrides(CollectConfig, [f"out={reference}", *args]), quiet=True)["frames"] >= 12000
    assert [p.name for p in shard_paths(out)] == [p.name for p in shard_paths(reference)]
    assert_same_episodes(episodes_of(out), episodes_of(reference))


def test_a_stale_tmp_shard_is_ignored_by_readers_and_removed_by_collect(tmp_path, capsys):
    cfg = craft_cfg(tmp_path / "ds", steps=400, shard_steps=100)
    collect(cfg, quiet=True)
    stale = tmp_path / "ds" / ".shard-w00-00099.tmp"
    stale.mkdir()
    (stale / "frames.npy").write_bytes(b"half a file")
    _, opened = open_dataset(tmp_path / "ds")
    assert stale not in [s.path for s in opened]
    collect(cfg)
    assert not stale.exists()
    assert "removed 1 incomplete shard" in capsys.readouterr().out


def shard_bytes(root: Path) -> dict[str, dict[str, bytes]]:
    """Every shard's files, byte for byte (verified.json aside: readers write it, it records file times)."""
    return {p.name: {f.name: f.read_bytes() for f in sorted(p.iterdir()) if f.name != "verified.json"}
            for p in shard_paths(root)}


@pytest.mark.parametrize("workers", [1, 2])
def test_deleted_shards_are_named_on_load_and_the_same_collect_restores_them_byte_identically(tmp_path, workers):
    import shutil

    out = tmp_path / "ds"
    cfg = craft_cfg(out, steps=1500, shard_steps=200, workers=workers)
    collect(cfg, quiet=True)
    before = shard_bytes(out)
    names = sorted(before)
    lost = [names[1], names[-1]]  # one from the middle (a gap), and the last (only shards.json knows of it)
    for name in lost:
        shutil.rmtree(out / name)
    with pytest.raises(shards.ShardError, match=r"2 shard\(s\) missing \(deleted\?\): " + ", ".join(lost) +
                       r"\. Re-run the same `worldsim collect` command"):
        open_dataset(out)
    summary = collect(cfg, quiet=True)
    assert shard_bytes(out) == before  # the same shards, not later episodes appended
    assert summary["frames"] == sum(json.loads(files["meta.json"])["rows"] for files in before.values())
    open_dataset(out)


def test_a_deleted_shard_cut_by_an_earlier_budget_comes_back_cut(tmp_path):
    import shutil

    out = tmp_path / "ds"
    collect(craft_cfg(out, steps=500, shard_steps=200), quiet=True)
    collect(craft_cfg(out, steps=1000, shard_steps=200), quiet=True)  # continued: the old last episode stays cut
    before = shard_bytes(out)
    cut = [name for name, files in before.items() if any(e["cut"] for e in json.loads(files["meta.json"])[
        "episodes"])]
    assert len(cut) == 2 and cut[0] != sorted(before)[-1]  # the old budget's cut, in the middle; the new one's
    shutil.rmtree(out / cut[0])
    collect(craft_cfg(out, steps=1000, shard_steps=200), quiet=True)
    assert shard_bytes(out) == before


def test_a_replay_that_does_not_reach_the_next_shard_is_an_error(tmp_path):
    import shutil

    out = tmp_path / "ds"
    collect(craft_cfg(out, steps=900, shard_steps=200), quiet=True)
    victim = shard_paths(out)[1]
    meta_path = shard_paths(out)[2] / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["episodes"][0]["id"] += 1  # as if the env had played differently this time
    meta_path.write_text(json.dumps(meta))
    shutil.rmtree(victim)
    with pytest.raises(RuntimeError, match=rf"restoring {victim.name}: .* does not replay deterministically"):
        collect(craft_cfg(out, steps=900, shard_steps=200), quiet=True)


@pytest.mark.parametrize("change, key", [
    (dict(seed=1), "seed"),
    (dict(workers=2), "workers"),
    (dict(agent="mixture"), "agent"),
    (dict(agent_options={"repeat_prob": 0.5}), "agent_options"),
    (dict(env_kwargs={"world_width": 80}), "env_kwargs"),
    (dict(max_episode_steps=50), "max_episode_steps"),
    (dict(shard_steps=100), "shard_steps"),
    (dict(frame_size=[32, 32]), "frame_size"),
])
def test_continuing_with_other_identity_settings_is_refused_naming_the_key(tmp_path, change, key):
    out = tmp_path / "ds"
    collect(craft_cfg(out, steps=300), quiet=True)
    before = (out / "manifest.json").read_bytes(), listing(out)
    with pytest.raises(ValueError, match=rf"\b{key}=") as err:
        collect(craft_cfg(out, steps=600, **change), quiet=True)
    assert str(out) in str(err.value)
    assert ((out / "manifest.json").read_bytes(), listing(out)) == before


def test_a_larger_steps_budget_continues_the_dataset(tmp_path):
    out = tmp_path / "ds"
    collect(craft_cfg(out, steps=300, shard_steps=100), quiet=True)
    first = episodes_of(out)
    summary = collect(craft_cfg(out, steps=700, shard_steps=100), quiet=True)
    assert 700 <= summary["frames"] <= 701
    after = episodes_of(out)
    assert_same_episodes(first, {eid: after[eid] for eid in first})  # kept as they were


# ---- bad input: a clear error before any work --------------------------------------------------------------------
@pytest.mark.parametrize("overrides, message", [
    (dict(env=NO_FRAMES), r"gives no rgb frames.*render\(\).*returned None"),
    (dict(env=BOX_ACTIONS), r"action space Box.*needs a Discrete one"),
    (dict(env="Pendulum-v1"), r"env='Pendulum-v1' has action space Box.*needs a Discrete one"),
    (dict(env="NoSuchEnv-v0"), r"env='NoSuchEnv-v0'"),
    (dict(agent="nope"), r"agent='nope': expected one of \[.*'random'"),
    (dict(agent_options={"repeat_prob": 2.0}), r"repeat_prob=2.0"),
    (dict(steps=0), r"steps=0"),
    (dict(frame_size=[32]), r"frame_size=\[32\]"),
])
@pytest.mark.filterwarnings("ignore:.*RGB-array rendering should return a numpy array")
def test_bad_input_fails_before_anything_is_written(tmp_path, overrides, message):
    out = tmp_path / "ds"
    with pytest.raises(ValueError, match=message):
        collect(CollectConfig(**{**dict(out=str(out), agent="random", steps=100), **overrides}), quiet=True)
    assert not out.exists()


def test_a_misspelt_env_kwarg_fails_naming_it(tmp_path):
    out = tmp_path / "ds"
    with pytest.raises(TypeError, match="world_widht"):
        collect(craft_cfg(out, env_kwargs={"world_widht": 64}), quiet=True)
    assert not out.exists()


def test_explorer_refuses_a_non_craft2d_env(tmp_path):
    pytest.importorskip("worldsim.agents.explorer")
    out = tmp_path / "ds"
    with pytest.raises(ValueError, match=r"agent=explorer.*CartPole-v1"):
        collect(CollectConfig(out=str(out), env="CartPole-v1", agent="explorer", steps=10), quiet=True)
    assert not out.exists()


def test_parse_overrides_names_an_unknown_key():
    with pytest.raises(ValueError, match=r"stepz.*known keys:.*'steps'"):
        parse_overrides(CollectConfig, ["out=x", "stepz=3"])
    with pytest.raises(ValueError, match=r"expected key=value"):
        parse_overrides(CollectConfig, ["out=x", "steps"])
    with pytest.raises(ValueError, match=r"missing mandatory value: out"):
        parse_overrides(CollectConfig, ["steps=3"])
    cfg = parse_overrides(CollectConfig, ["out=x", "env_kwargs.world_width=64", "frame_size=[32,48]", "steps=7"])
    assert cfg.env_kwargs == {"world_width": 64} and cfg.frame_size == [32, 48] and cfg.steps == 7


def test_parse_overrides_rejects_a_wrong_type():
    with pytest.raises(ValueError, match=r"'lots'.*Integer"):
        parse_overrides(CollectConfig, ["out=x", "steps=lots"])


def test_parse_overrides_names_the_key_of_a_wrong_type():
    with pytest.raises(ValueError) as err:
        parse_overrides(CollectConfig, ["out=x", "steps=lots"])
    assert "steps" in str(err.value).split("(known keys")[0]


@pytest.mark.parametrize("argv, message", [
    (["stepz=3"], "stepz"),
    (["agent=random", "env=NoSuchEnv-v0"], "NoSuchEnv-v0"),
])
def test_cli_collect_reports_bad_input_with_exit_code_2(tmp_path, capsys, argv, message):
    out = tmp_path / "ds"
    assert cli.main(["collect", f"out={out}", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("worldsim collect: error:") and message in err
    assert not out.exists()


# ---- a full disk -------------------------------------------------------------------------------------------------
def _no_space(real, on: str):
    def fake(*args, **kwargs):
        if on in str(getattr(args[0], "name", args[0])):  # a path, or a file object with its name
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*args, **kwargs)

    return fake


@pytest.mark.parametrize("patch", ["np.save", "os.rename"])
def test_a_full_disk_fails_naming_the_shard_and_leaves_nothing_partial(tmp_path, monkeypatch, patch):
    out = tmp_path / "ds"
    cfg = craft_cfg(out, steps=900, shard_steps=300)
    if patch == "np.save":  # fails while writing the second shard's arrays
        monkeypatch.setattr(shards.np, "save", _no_space(np.save, ".shard-w00-00001.tmp"))
    else:  # everything written, the final rename fails
        monkeypatch.setattr(shards.os, "rename", _no_space(os.rename, ".shard-w00-00001.tmp"))
    with pytest.raises(OSError) as err:
        collect(cfg, quiet=True)
    assert err.value.errno == errno.ENOSPC
    assert str(out / "shard-w00-00001") in str(err.value) and "No space left on device" in str(err.value)
    monkeypatch.undo()
    assert not list(out.glob(".shard-*")) and not (out / "shard-w00-00001").exists()
    _, opened = open_dataset(out)
    assert [s.path.name for s in opened] == ["shard-w00-00000"]  # written before the failure, still readable
    collect(cfg, quiet=True)  # space freed: the same command finishes the job, as if nothing had happened
    collect(craft_cfg(tmp_path / "reference", steps=900, shard_steps=300), quiet=True)
    assert_same_episodes(episodes_of(out), episodes_of(tmp_path / "reference"))
