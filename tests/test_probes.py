"""The probe suite checks itself: the engine scores 1, copying the last frame 0, an engine broken step by step scores
lower and lower on the family it breaks, an action-blind predictor nothing on control; and the CLI writes a report."""

from __future__ import annotations

import json

import numpy as np
import pytest

from worldsim.cli import main
from worldsim.probes.families import FAMILIES, build_suite
from worldsim.probes.predictors import CopyLast, Engine, MeanFrame
from worldsim.probes.runner import QUICK, ProbeConfig, run
from worldsim.probes.scenarios import OOD_SEED_BASE, Patch, place, training_world_seeds

from test_dream import write_world


def _summary(predictor, suite="all", tmp_path=None) -> dict:
    return run(ProbeConfig(quick=True, suite=suite, seeds=2, out=str(tmp_path), report=False), predictor=predictor,
               quiet=True)


def _family_scores(summary: dict) -> dict[str, float]:
    return {k: v["score"] for k, v in summary["families"].items()}


def _scores(predictor, suite="all", tmp_path=None) -> dict[str, float]:
    return _family_scores(_summary(predictor, suite, tmp_path))


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    return tmp_path_factory.mktemp("probes")


def test_engine_scores_one_and_trivial_guesses_zero_on_every_family(out):
    engine, copy = _summary(Engine(), tmp_path=out), _summary(CopyLast(), tmp_path=out)
    assert _family_scores(engine) == {f: 1.0 for f in FAMILIES}
    assert _family_scores(copy) == {f: 0.0 for f in FAMILIES}
    # stability's terms say why: copying is a frozen world (every tile a valid sprite, none changing) whose light
    # never moves, where the engine's world changes and its day goes on
    assert engine["stability"]["live"] > 0.95 and engine["stability"]["daynight"] == 1.0
    assert copy["stability"]["valid"] == 1.0 and copy["stability"]["live"] == 0.0
    assert copy["stability"]["daynight"] < 0.9 and copy["stability"]["continuity"] == 1.0
    assert _scores(MeanFrame(), "physics+control", out) == {"physics": 0.0, "control": 0.0}
    # permanence at each distance walked away, the probes of each k averaged as the family's score averages them all
    assert [(d["k"], d["score"]) for d in engine["permanence"]] == [(k, 1.0) for k in QUICK.permanence_k]
    assert [(d["k"], d["score"]) for d in copy["permanence"]] == [(k, 0.0) for k in QUICK.permanence_k]
    assert sum(d["probes"] for d in copy["permanence"]) == copy["families"]["permanence"]["informative"]
    # the walks: the engine's view moves as its camera does on every step its frames tell; copying the context never
    # moves, so it is right only on the steps the camera stood still (a walk turning back)
    assert set(copy["moves"]) == {"permanence", "consistency"}
    for fam in ("permanence", "consistency"):
        assert engine["moves"][fam]["model"] > 0.95 and engine["moves"][fam]["ceiling"] > 0.95
        assert engine["moves"][fam]["told"] > 50 and copy["moves"][fam]["model"] < 0.1


@pytest.mark.parametrize(("corruption", "family"), [
    ("noise", "permanence"), ("drop", "consistency"), ("swap", "control"), ("freeze", "physics"), ("stall", "stability"),
])
def test_a_corrupted_engine_scores_lower_the_more_it_is_broken(out, corruption, family):
    scores = [_scores(Engine(corruption, level), family, out)[family] for level in (0.0, 0.5, 1.0)]
    assert scores[0] == 1.0
    assert scores[0] > scores[1] > scores[2], scores


def test_an_action_blind_predictor_scores_about_zero_on_control(out):
    assert _scores(Engine("blind", 1.0), "control", out)["control"] < 0.05


def test_every_family_has_five_scenarios_in_and_out_of_distribution():
    probes = build_suite(FAMILIES, seed=0, suite=QUICK)
    seen = training_world_seeds()
    for family in FAMILIES:
        mine = [p for p in probes if p.family == family]
        places = {(p.runs[0].scenario.map, p.runs[0].scenario.world_seed, p.runs[0].scenario.origin) for p in mine}
        assert len(places) >= 5, family
        assert {p.split for p in mine} == {"id", "ood"}, family
        for p in mine:
            seed = p.runs[0].scenario.world_seed
            assert (seed in seen) if p.split == "id" else seed >= OOD_SEED_BASE, (p.name, seed)
            if p.split == "ood" and family != "stability":
                assert p.params["biome"] != p.params["world_biome"], p.name


def test_the_same_seed_draws_the_same_suite_and_another_seed_another():
    a, b = (build_suite(["permanence", "control"], seed=s, suite=QUICK) for s in (0, 0))
    c = build_suite(["permanence", "control"], seed=1, suite=QUICK)
    assert [p.runs for p in a] == [p.runs for p in b]
    assert [p.runs for p in a] != [p.runs for p in c]


def test_out_of_distribution_patches_sit_across_a_biome_border():
    rng = np.random.default_rng(0)
    scenario, params = place(Patch("snow", left=4, right=4), rng, "ood")
    assert params["world_biome"] != "snow" and scenario.world_seed >= OOD_SEED_BASE
    with pytest.raises(ValueError, match="split='train'"):
        place(Patch("snow", left=4, right=4), rng, "train")


@pytest.mark.parametrize(("override", "message"), [
    ("suite=permanence+telepathy", r"suite='permanence\+telepathy'.*expected 'all'"),
    ("seeds=0", r"seeds=0: expected at least 1"),
])
def test_bad_settings_are_named(tmp_path, capsys, override, message):
    import re

    assert main(["probe", override, f"out={tmp_path}"]) == 2
    assert re.search(message, capsys.readouterr().err)


def test_a_checkpoint_of_another_game_is_refused(tmp_path, capsys):
    ckpt = write_world(tmp_path / "other.safetensors", env="CartPole-v1", n_actions=2)
    assert main(["probe", f"checkpoint={ckpt}", "quick=true", f"out={tmp_path}"]) == 2
    assert "CartPole-v1" in capsys.readouterr().err


def test_cli_quick_run_writes_json_and_a_report(tmp_path, capsys):
    ckpt = write_world(tmp_path / "tiny.safetensors")
    out = tmp_path / "report"
    assert main(["probe", f"checkpoint={ckpt}", "seeds=1", "suite=causality+control+stability",
                 f"out={out}", "device=cpu", "quick=true"]) == 0
    printed = capsys.readouterr().out
    assert "causality" in printed and "wrote" in printed and "stability: live" in printed
    summary = json.loads((out / "probes.json").read_text())
    assert set(summary["families"]) == {"causality", "control", "stability"}
    assert summary["denoise_steps"] == 2 and summary["config"]["seeds"] == 1
    for p in summary["probes"]:
        assert {"model", "floor", "ceiling", "score", "floors"} <= set(p)
        assert 0.5 < p["ceiling"]["mean"] <= 1.0, p["name"]  # below 1 only where animals wander
    assert len(summary["control"]["confusion"]) == 12
    report = (out / "probes.md").read_text()
    strips = [p for p in (out / "strips").iterdir()]
    assert len(strips) == len(summary["probes"])
    assert all(f"strips/{s.name}" in report for s in strips)
    assert (out / "plots" / "stability_valid.png").exists() and "plots/causality.png" in report
    assert f"live {summary['stability']['live']:.2f}" in report and "Stability's terms" in report


def test_the_control_matrix_credits_an_action_only_for_a_frame_that_looks_like_its_outcome():
    import gymnasium as gym

    from worldsim.envs.craft2d.decoder import decode_cells
    from worldsim.probes.score import control_matrix

    env = gym.make("worldsim/Craft2D-v0")
    start, _ = env.reset(seed=3)
    first = env.step(2)[0]  # right: the view scrolls
    env.close()
    frames = [first[None], start[None], first[None]]  # actions 0 and 2 have one outcome, action 1 another (none)
    ref = [decode_cells(f)[0] for f in frames]  # the engine's cells per action, (T, rows, cols)
    mask = [r != decode_cells(start[None])[0] for r in ref]  # the cells each outcome changed
    truth = np.stack(frames)[:, None]  # (A, replicas, T, H, W, 3)
    assert np.allclose(control_matrix(ref, truth, mask), np.eye(3))  # the right outcome: a (or its twin) counted
    noise = np.random.default_rng(0).integers(0, 256, truth.shape, dtype=np.uint8)  # no sprite: no outcome at all
    conf = control_matrix(ref, noise, mask)
    assert np.allclose(conf.sum(1), 1) and np.trace(conf) / 3 < 0.8  # not "recognised" for matching nothing
    assert np.isclose(conf[1, 1], 1 / 3) and np.isclose(conf[0, 0], 2 / 3)  # a tie shares; the twin's share is a's


def test_a_view_that_stops_scrolling_is_counted_wrong_from_the_step_it_stops():
    """view_moves by spans of steps: the engine's own frames for four steps, then its fourth frame held (a dream that
    stops following the player): every move told is right at steps 1-4, and after that the walk's moves go wrong."""
    from worldsim.probes.predictors import reference
    from worldsim.probes.score import view_moves

    probe = next(p for p in build_suite(("permanence",), 0, QUICK) if p.params["k"] == max(QUICK.permanence_k))
    trace = reference(probe.runs[0], 0)
    stalled = np.concatenate([trace.frames[:4], np.repeat(trace.frames[3:4], len(trace.frames) - 4, 0)])
    counts = view_moves(trace, np.stack([trace.frames, stalled]))  # (spans, [told, right]) over both rows
    engine = view_moves(trace, trace.frames[None])
    assert (engine[:, 0] > 0).all() and (engine[:, 1] == engine[:, 0]).all()  # the truth moves right when told
    assert counts[0, 1] == counts[0, 0] == 2 * engine[0, 0]  # steps 1-4: both rows are the engine's
    assert (counts[1:, 1] == engine[1:, 1]).all() and (counts[1:, 0] > engine[1:, 0]).all()  # the held frame: wrong
