"""`worldsim leaderboard`: every row probed the same way into one table, the references first and the models ranked;
a second run reuses what it has, a changed setting probes again, and a bad entry is refused before anything runs."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from worldsim.cli import main
from worldsim.probes import runner
from worldsim.probes.leaderboard import LeaderboardConfig, run

# Two toy protocol models in a file of their own, as a user's would be (model=path/to/file.py:NAME): one that scrolls
# the view the way a walk does, so it recognises some actions; one that repeats the last frame and counts nothing.
TOY = '''
import numpy as np

LEFT, RIGHT, JUMP_LEFT, JUMP_RIGHT = 1, 2, 4, 5


class Scroll:
    name = "scroll"
    num_parameters = 1234

    def reset(self, frames, actions, seed):
        self.last = frames[:, -1].copy()  # (B, H, W, 3)

    def step(self, actions):
        moves = np.select([np.isin(actions, (LEFT, JUMP_LEFT)), np.isin(actions, (RIGHT, JUMP_RIGHT))], [-1, 1], 0)
        h, w = self.last.shape[1:3]
        for i, move in enumerate(moves):
            cols = np.clip(np.arange(w) + 8 * move, 0, w - 1)
            self.last[i, :h - 8] = self.last[i, :h - 8][:, cols]  # the world rows scroll; the HUD row stays
        return self.last.copy()


class Still:
    def reset(self, frames, actions, seed):
        self.last = frames[:, -1]

    def step(self, actions):
        return self.last
'''
ORDER = ["engine", "copy-last", "scroll toy", "still toy"]  # the references first, then the models, best first


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("toy") / "leaderboard_toy.py"
    path.write_text(TOY)
    return str(path)


def _cfg(toy: str, out, **overrides) -> LeaderboardConfig:
    entries = [{"name": "still toy", "model": f"{toy}:Still", "note": "repeats the last frame"},  # listed first:
               {"name": "engine", "reference": "engine"},  # the ranking, not the list, puts it last
               {"name": "scroll toy", "model": f"{toy}:Scroll"},
               {"name": "copy-last", "reference": "copy-last"}]
    settings = dict(entries=entries, out=str(out), quick=True, seeds=1, suite="control", latency_steps=3,
                    device="cpu")
    return LeaderboardConfig(**{**settings, **overrides})


@pytest.fixture(scope="module")
def board(toy, tmp_path_factory):
    out = tmp_path_factory.mktemp("board")
    return out, run(_cfg(toy, out), quiet=True)


def test_rows_are_ranked_with_the_engine_at_the_ceiling_and_copy_last_at_the_floor(board):
    out, doc = board
    rows = {r["name"]: r for r in doc["rows"]}
    assert [r["name"] for r in doc["rows"]] == ORDER
    assert rows["engine"]["families"]["control"]["score"] == 1.0 and rows["engine"]["mean"] == 1.0
    assert rows["engine"]["actions_recognised"] == 1.0 and rows["engine"]["left_right_swaps"] == 0.0
    assert rows["copy-last"]["mean"] == 0.0 and rows["still toy"]["mean"] == 0.0
    assert rows["scroll toy"]["mean"] > 0.0  # what puts it above the still toy
    assert [rows[n]["parameters"] for n in ORDER] == [None, 0, 1234, None]  # still toy has no num_parameters
    assert all(rows[n]["latency_ms"] > 0 for n in ORDER)
    assert not any(r["reused"] for r in doc["rows"])
    assert json.loads((out / "leaderboard.json").read_text()) == json.loads(json.dumps(doc))
    assert doc["machine"]["cpu"] and doc["machine"]["torch"]
    assert all(Path(rows[n]["probes"]).parent.parent == out for n in ORDER)


def test_the_markdown_table_has_a_row_per_entry_in_rank_order(board):
    out, _ = board
    text = (out / "leaderboard.md").read_text()
    head, rule, *body = [line for line in text.splitlines() if line.startswith("|")]
    assert head.split(" | ")[1:4] == ["control", "mean", "id"]
    assert [r.split(" | ")[0].lstrip("| ").split(" [")[0] for r in body] == ORDER
    engine, copy_last, scroll, still = body
    assert "| 1.00 | 1.00 | 1.00 | 1.00 | 100% | 0% |" in engine
    assert scroll.endswith("| 1.2k |") and copy_last.endswith("| 0 |") and still.endswith("| n/a |")
    assert "still toy [1]" in still and "[1] still toy: repeats the last frame" in text


def test_a_second_run_reuses_every_row_and_a_changed_setting_probes_again(board, toy, tmp_path, monkeypatch):
    out = tmp_path / "board"
    shutil.copytree(board[0], out)
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("*/probes.json")}
    real = runner.run
    probed = []

    def counting(cfg, predictor=None, quiet=False):
        probed.append(cfg.out)
        return real(cfg, predictor, quiet)

    monkeypatch.setattr(runner, "run", counting)
    doc = run(_cfg(toy, out), quiet=True)
    assert probed == [] and all(r["reused"] for r in doc["rows"])
    assert {p: p.stat().st_mtime_ns for p in out.glob("*/probes.json")} == stamps
    assert [r["name"] for r in doc["rows"]] == ORDER

    extended = _cfg(toy, out)  # one more entry: only it is probed
    extended = replace(extended, entries=extended.entries + [{"name": "scroll again", "model": f"{toy}:Scroll"}])
    doc = run(extended, quiet=True)
    assert probed == [str(out / "scroll-again")] and len(doc["rows"]) == 5

    probed.clear()
    doc = run(_cfg(toy, out, seed=1, only=["copy-last"]), quiet=True)  # another draw of scenarios
    assert probed == [str(out / "copy-last")]
    assert [r["name"] for r in doc["rows"]] == ["copy-last"]  # the others hold no results of seed=1: left out
    assert json.loads((out / "copy-last" / "probes.json").read_text())["config"]["seed"] == 1

    probed.clear()
    run(_cfg(toy, out, seed=1, only=["copy-last"], force=True), quiet=True)
    assert probed == [str(out / "copy-last")]


@pytest.mark.parametrize(("entries", "said"), [
    ([{"name": "x", "reference": "engine", "colour": "red"}], ["entry 0 ('x')", "colour"]),
    ([{"name": "both", "reference": "engine", "checkpoint": "shipped"}], ["entry 0 ('both')", "exactly one"]),
    ([{"name": "neither", "note": "nothing to probe"}], ["entry 0 ('neither')", "exactly one"]),
    ([{"name": "oracle", "reference": "oracle"}], ["entry 0 ('oracle')", "'oracle'", "engine"]),
    ([{"name": "e", "reference": "engine"}, {"name": "ghost", "checkpoint": "nowhere/w.safetensors",
                                             "make": "worldsim train world data=d"}],
     ["entry 1 ('ghost')", "nowhere/w.safetensors", "make it with `worldsim train world data=d`"]),
    ([{"name": "no module", "model": "no_such_package.world:Model"}], ["entry 0 ('no module')", "no_such_package"]),
    ([{"name": "kw", "reference": "copy-last", "model_kwargs": {"a": 1}}], ["entry 0 ('kw')", "model_kwargs"]),
    ([{"name": "Engine", "reference": "engine"}, {"name": "engine", "reference": "copy-last"}],
     ["entry 1 ('engine')", "entry 0 ('Engine')"]),
    ([], ["entries", "at least one"]),
])
def test_a_bad_entry_is_refused_naming_it(entries, said, monkeypatch):
    monkeypatch.setattr(runner, "run", lambda *a, **k: pytest.fail("probed before the entries were checked"))
    with pytest.raises(ValueError) as err:
        run(LeaderboardConfig(entries=entries, quick=True, seeds=1, suite="control", device="cpu"))
    for part in said:
        assert part in str(err.value)


def test_a_model_file_that_is_missing_says_how_to_make_it_unless_only_leaves_it_out(toy, tmp_path):
    entries = [{"name": "engine", "reference": "engine"},
               {"name": "trained toy", "model": f"{toy}:Still", "model_kwargs": {"checkpoint": "runs/t/w.st"},
                "make": "worldsim train pixel experiment=diffusion"}]
    with pytest.raises(ValueError, match=r"entry 1 \('trained toy'\): model_kwargs.checkpoint='runs/t/w.st'.*"
                                         r"make it with `worldsim train pixel experiment=diffusion`"):
        LeaderboardConfig(entries=entries, device="cpu")
    with pytest.raises(ValueError, match="only=.*nobody"):
        LeaderboardConfig(entries=entries, only=["nobody"], device="cpu")
    LeaderboardConfig(entries=entries, only=["engine"], device="cpu")  # the missing file is not needed now


def test_the_command_lists_its_keys_and_runs_the_recipe_in_part(tmp_path, monkeypatch, capsys):
    assert main(["leaderboard", "--help"]) == 0
    shown = capsys.readouterr().out
    for key in ("entries=", "only=", "latency_steps=", "force=", "recipes", "craft2d"):
        assert key in shown
    monkeypatch.chdir(tmp_path)  # the recipe's pixel checkpoints are relative paths: none here
    assert main(["leaderboard", "experiment=craft2d", "quick=true", "out=board"]) == 2
    assert "worldsim train pixel experiment=diffusion" in capsys.readouterr().err
    assert not (tmp_path / "board").exists()  # refused before anything was probed
    assert main(["leaderboard", "experiment=craft2d", "only=[engine,copy-last]", "quick=true", "seeds=1",
                 "suite=control", "latency_steps=2", "out=board", "device=cpu"]) == 0
    rows = json.loads((tmp_path / "board" / "leaderboard.json").read_text())["rows"]
    assert [r["name"] for r in rows] == ["engine", "copy-last"]
