"""Minari interchange: export then import gives back identical arrays; foreign datasets import or are refused."""

from __future__ import annotations

import re
import warnings

import gymnasium as gym
import numpy as np
import pytest

pytest.importorskip("minari")
import minari  # noqa: E402
from minari.data_collector import EpisodeBuffer  # noqa: E402

from worldsim.cli import main  # noqa: E402
from worldsim.data.collect import CollectConfig, collect  # noqa: E402
from worldsim.data.minari_io import ExportConfig, ImportConfig, export_minari, import_minari  # noqa: E402
from worldsim.data.shards import open_dataset, read_manifest  # noqa: E402


@pytest.fixture(autouse=True)
def quiet_minari():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # Minari nags about author, permalink and eval_env
        yield


def _rows(root):
    """Every array of a dataset concatenated in episode order, with captions and per-episode facts."""
    _, shards = open_dataset(root, rehash=True)
    arrays = {k: np.concatenate([s.arrays[k] for s in shards]) for k in shards[0].arrays}
    arrays["captions"] = [c for s in shards for c in s.captions()]
    arrays["episodes"] = [(e["id"], e["seed"], e["agent"], e["length"], e["ret"], e["cut"])
                          for s in shards for e in s.meta["episodes"]]
    return arrays


@pytest.mark.parametrize("env_kwargs", [{"world_width": 64}, None], ids=["craft2d", "cartpole"])
def test_export_then_import_gives_identical_arrays(tmp_path, env_kwargs):
    env = "worldsim/Craft2D-v0" if env_kwargs else "CartPole-v1"
    data = tmp_path / "data"
    collect(CollectConfig(out=str(data), env=env, env_kwargs=env_kwargs or {}, agent="random", steps=700,
                          shard_steps=300, max_episode_steps=120, workers=1), quiet=True)
    n = export_minari(ExportConfig(data=str(data), id="worldsim/roundtrip-v0", minari_path=str(tmp_path / "mx")))
    back = tmp_path / "back"
    assert import_minari(ImportConfig(id="worldsim/roundtrip-v0", out=str(back), minari_path=str(tmp_path / "mx"),
                                      shard_steps=250)) == n
    a, b = _rows(data), _rows(back)
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], np.ndarray):
            assert a[key].dtype == b[key].dtype and np.array_equal(a[key], b[key]), key
        else:
            assert a[key] == b[key], key
    assert len(a["episodes"]) == n > 3
    manifest = read_manifest(back)
    assert manifest["action_meanings"] == read_manifest(data)["action_meanings"]
    assert manifest["imported_from"] == "minari:worldsim/roundtrip-v0"


def test_minari_sees_raw_frames_and_the_shifted_convention(tmp_path):
    data = tmp_path / "data"
    collect(CollectConfig(out=str(data), env_kwargs={"world_width": 64}, agent="random", steps=300,
                          max_episode_steps=100), quiet=True)
    export_minari(ExportConfig(data=str(data), id="worldsim/shift-v0", minari_path=str(tmp_path / "mx")))
    import os

    os.environ["MINARI_DATASETS_PATH"] = str(tmp_path / "mx")
    try:
        dataset = minari.load_dataset("worldsim/shift-v0")
        assert dataset.storage.metadata["jpeg_encoding"] is False
        episode = next(dataset.iterate_episodes())
    finally:
        del os.environ["MINARI_DATASETS_PATH"]
    rows = _rows(data)
    length = rows["episodes"][0][3]
    assert np.array_equal(episode.observations, rows["frames"][:length])  # lossless
    assert np.array_equal(episode.actions, rows["actions"][1:length])  # Minari: the action taken at frame t
    assert len(episode.actions) == length - 1


def _foreign(tmp_path, observation_space, observations, action_space=gym.spaces.Discrete(3)):
    buffers = [EpisodeBuffer(id=0, observations=observations, actions=np.array([0, 2, 1]),
                             rewards=np.array([0.0, 1.0, 0.5]), terminations=np.array([False, False, True]),
                             truncations=np.zeros(3, bool))]
    import os

    os.environ["MINARI_DATASETS_PATH"] = str(tmp_path / "mx")
    try:
        minari.create_dataset_from_buffers("other/foreign-v0", buffers, action_space=action_space,
                                           observation_space=observation_space, jpeg_encoding=False)
    finally:
        del os.environ["MINARI_DATASETS_PATH"]


def test_import_a_dataset_made_elsewhere(tmp_path):
    frames = np.random.default_rng(0).integers(0, 256, (4, 16, 24, 3), dtype=np.uint8)
    _foreign(tmp_path, gym.spaces.Box(0, 255, (16, 24, 3), np.uint8), frames)
    out = tmp_path / "imported"
    import_minari(ImportConfig(id="other/foreign-v0", out=str(out), minari_path=str(tmp_path / "mx")))
    manifest = read_manifest(out)
    assert manifest["action_meanings"] == ["0", "1", "2"] and manifest["frame_shape"] == [16, 24, 3]
    rows = _rows(out)
    assert np.array_equal(rows["frames"], frames)
    assert rows["actions"].tolist() == [-1, 0, 2, 1]
    assert rows["rewards"].tolist() == [0.0, 0.0, 1.0, 0.5]
    assert rows["terminated"].tolist() == [False, False, False, True]
    assert rows["captions"] == [""] * 4


def test_import_refuses_observations_that_are_not_frames(tmp_path):
    _foreign(tmp_path, gym.spaces.Box(-1, 1, (4,), np.float32), np.zeros((4, 4), np.float32))
    with pytest.raises(ValueError, match=r"other/foreign-v0.*\(H, W, 3\) uint8"):
        import_minari(ImportConfig(id="other/foreign-v0", out=str(tmp_path / "x"), minari_path=str(tmp_path / "mx")))


def test_import_of_a_dataset_that_is_not_there_says_where_it_looked_and_never_downloads(tmp_path):
    with pytest.raises(ValueError, match=r"id='no/such-v0': no such Minari dataset in .*mx.*local datasets only"):
        import_minari(ImportConfig(id="no/such-v0", out=str(tmp_path / "x"), minari_path=str(tmp_path / "mx")))
    assert not (tmp_path / "x").exists()


def test_import_refuses_a_non_empty_directory(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match="not empty"):
        import_minari(ImportConfig(id="any/thing-v0", out=str(tmp_path / "x"), minari_path=str(tmp_path / "mx")))
    assert (tmp_path / "x" / "keep.txt").read_text() == "mine"


def test_cli_export_and_import(tmp_path, capsys):
    data = tmp_path / "data"
    collect(CollectConfig(out=str(data), env_kwargs={"world_width": 64}, agent="random", steps=200,
                          max_episode_steps=100), quiet=True)
    mx = tmp_path / "mx"
    assert main(["export", f"data={data}", "id=worldsim/cli-v0", f"minari_path={mx}"]) == 0
    assert main(["import", "id=worldsim/cli-v0", f"minari_path={mx}", f"out={tmp_path / 'back'}"]) == 0
    out = capsys.readouterr().out
    exported = re.search(r"exported (\d+) episodes to Minari", out).group(1)
    assert f"imported {exported} episodes from Minari" in out
    assert main(["export", f"data={tmp_path / 'nothing'}", "id=worldsim/x-v0"]) == 2  # no dataset there
    assert "manifest.json: missing" in capsys.readouterr().err
