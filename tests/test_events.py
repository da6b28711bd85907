"""`worldsim events`: steps of real play sorted by what the engine did, and the one-step scores against predictors
whose answers are known (the truth itself, copying the last frame), end to end on a tiny checkpoint."""

from __future__ import annotations

import json

import numpy as np
import pytest

from worldsim.cli import main
from worldsim.probes.events import EventsConfig, _kind, play, score
from worldsim.probes.protocol import Rollout

from test_dream import write_world


class Known:
    """A predictor that makes, for each row, the given frame (the truth) or the context's last frame (copy-last), or
    the truth with the last frame's HUD (the bottom 8 pixels: a model that never counts)."""

    def __init__(self, found: dict, truth: bool, hud_kept: bool = False):
        def answer(f, o):
            if hud_kept:
                return np.concatenate([o[:-8], f[-1][-8:]])
            return o if truth else f[-1]

        self.answers = {id(f): answer(f, o) for items in found.values() for f, _, _, o in items}

    def predict(self, contexts, actions, seeds, on_step=None):
        frames = np.stack([self.answers[id(c.frames)] for c in contexts])[:, None]
        return Rollout(frames, np.zeros(actions.shape, np.float32), np.zeros(actions.shape, bool))


@pytest.fixture(scope="module")
def found():
    return play(EventsConfig(episodes=2, steps=300, per_kind=6, context=4))


def test_play_sorts_steps_by_what_the_engine_did(found):
    assert {"moved", "still"} <= set(found)
    assert any(k.startswith("mined (") for k in found) and any(k.startswith("placed (") for k in found), list(found)
    for items in found.values():
        assert 1 <= len(items) <= 6
        frames, actions, action, after = items[0]
        assert frames.shape == (4, 64, 64, 3) and actions.shape == (4,) and after.shape == (64, 64, 3)
        assert actions[-1] != -1 or len(actions) == 1  # the context's actions led to its frames
    for kind in found:  # where the mined or placed tile lay
        assert not kind.startswith(("mined", "placed")) or kind.endswith(("above ground", "in the ground")), kind


def test_blocks_in_hand_build_above_ground():
    """env_kwargs reach the game: with blocks in hand from the start the explorer places above ground at once."""
    built = play(EventsConfig(episodes=1, steps=100, per_kind=2, context=2, agent_options={"plan_weights": {
        "tinker": 1.0}}, env_kwargs={"start_inventory": {"dirt": 20}}))
    assert any(k.startswith("placed (place)") and k.endswith("above ground") for k in built), list(built)


def test_scores_against_known_predictors(found):
    truth, copy = score(Known(found, True), found), score(Known(found, False), found)
    for kind, row in truth.items():
        assert row["all_right"] == 1.0 and row["changed_right"] in (1.0, None), (kind, row)
        if row["changed_cells"]:
            assert copy[kind]["changed_right"] == 0.0 and copy[kind]["all_right"] < 1.0, (kind, copy[kind])
            assert row["changed_kept"] == 0.0 and copy[kind]["changed_kept"] == 1.0, (kind, row, copy[kind])
    assert truth["still"]["changed_cells"] == 0 or truth["still"]["changed_right"] == 1.0
    assert truth["moved"]["changed_cells"] > 0  # the view scrolls
    counted = score(Known(found, True, hud_kept=True), found)
    mined = next(k for k in found if k.startswith("mined ("))
    row = counted[mined]
    assert row["hud_changed"] > 0 and row["world_changed"] > 0  # a mined block leaves the world and joins the HUD
    assert row["world_changed"] + row["hud_changed"] == row["changed_cells"]
    assert row["world_right"] == 1.0 and row["hud_right"] == 0.0 and 0 < row["changed_right"] < 1
    assert row["world_kept"] == 0.0 and row["hud_kept"] == 1.0  # the HUD kept as it was, the world's change drawn


def test_kind_names_the_action_behind_a_change():
    assert _kind({"events": ["player mined stone"], "player_pos": (3, 4)}, (3, 4), "mine_up") == "mined (mine_up)"
    assert _kind({"events": ["player mined stone"], "player_pos": (3, 5)}, (3, 4), "mine") == "mined (mine), falling"
    assert _kind({"events": ["pig moved", "player placed dirt"], "player_pos": (3, 4)}, (3, 4), "place") == \
        "placed (place)"
    assert _kind({"events": ["player took fall damage"], "player_pos": (3, 5)}, (3, 4), "noop") == "took fall"
    assert _kind({"events": [], "player_pos": (4, 4)}, (3, 4), "right") == "moved"
    assert _kind({"events": [], "player_pos": (3, 4)}, (3, 4), "noop") == "still"
    assert _kind({"events": ["player mined sand"], "player_pos": (3, 4)}, (3, 4), "mine", True) == \
        "mined (mine), above ground"
    assert _kind({"events": ["player placed dirt"], "player_pos": (3, 5)}, (3, 4), "place", False) == \
        "placed (place), falling, in the ground"
    assert _kind({"events": [], "player_pos": (3, 4)}, (3, 4), "noop", True) == "still"


def test_events_command_writes_its_table(tmp_path, capsys):
    ckpt = write_world(tmp_path / "tiny.safetensors")
    out = tmp_path / "events"
    assert main(["events", f"checkpoint={ckpt}", "episodes=1", "steps=40", "per_kind=3", "context=3",
                 f"out={out}"]) == 0
    results = json.loads((out / "events.json").read_text())
    assert "moved" in results["kinds"]
    for row in results["kinds"].values():
        assert 0.0 <= row["all_right"] <= 1.0 and row["steps"] <= 3
    assert "| moved |" in (out / "events.md").read_text() and "of those, right" in capsys.readouterr().out


@pytest.mark.parametrize("bad", ["per_kind=0", "episodes=0", "context=0", "agent=human"])
def test_events_refuses_bad_settings(bad, tmp_path, capsys):
    assert main(["events", bad, f"out={tmp_path}"]) == 2
    assert bad.split("=")[0] in capsys.readouterr().err
