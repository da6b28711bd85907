"""The reward family checks itself: the engine scores 1 and a predictor that never pays 0; paying on every step is
caught as false payments, paying exactly (or a step late) when the game pays scores 1 whatever the frames, and the
idle-return check tells a dream that pays an idle agent from one that does not."""

from __future__ import annotations

import json

import numpy as np
import pytest

from worldsim.cli import main
from worldsim.probes.families import FAMILIES, NOOP, build_suite
from worldsim.probes.predictors import CopyLast, Engine, Rollout, TeacherForced, reference
from worldsim.probes.reward import count_run, idle_return, starts
from worldsim.probes.runner import QUICK, ProbeConfig, run

from test_dream import write_world


class Paying:
    """The engine's frames (or copy-last's), with the engine's rewards and endings passed through `pay`."""

    name = "paying"

    def __init__(self, pay, frames=Engine()):
        self.pay, self.frames = pay, frames

    def predict(self, contexts, actions, seeds, on_step=None):
        truth = Engine().predict(contexts, actions, seeds)
        return Rollout(self.frames.predict(contexts, actions, seeds).frames, *self.pay(truth.rewards,
                                                                                      truth.terminated))


def _late(x: np.ndarray, k: int) -> np.ndarray:
    out = np.zeros_like(x)
    out[:, k:] = x[:, :-k]
    return out


def _reward(predictor, out) -> dict:
    summary = run(ProbeConfig(quick=True, suite="reward", seeds=1, out=str(out), report=False), predictor=predictor,
                  quiet=True)
    return {"score": summary["families"]["reward"]["score"], **summary["reward"]}


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    return tmp_path_factory.mktemp("reward")


def test_the_family_is_in_the_suite_and_its_quick_probes_pay_and_end():
    assert "reward" in FAMILIES
    probes = build_suite(["reward"], seed=0, suite=QUICK)
    assert len(probes) >= 5 and {p.split for p in probes} == {"id", "ood"}
    assert all(p.steps <= 40 for p in probes)  # quick stays quick
    assert any(p.params["kind"] == "lava" for p in probes)


def test_the_engine_scores_one_and_a_predictor_that_never_pays_zero(out):
    engine = _reward(Engine(), out)
    assert engine["score"] == 1.0 and engine["precision"] == engine["recall"] == 1.0
    assert engine["termination_recall"] == 1.0 and engine["false_per_100_idle"] == 0.0
    assert engine["events"] >= 7 and engine["endings"] >= 1
    never = _reward(CopyLast(), out)
    assert never["score"] == 0.0 and never["recall"] == 0.0 and never["termination_recall"] == 0.0


def test_paying_on_every_step_is_caught_as_false_payments(out):
    always = _reward(Paying(lambda r, t: (np.ones_like(r), t)), out)
    assert always["recall"] == 1.0  # it catches every payment, and pays for every quiet step too
    assert always["precision"] < 0.2 and always["false_per_100_idle"] > 90
    assert always["score"] < 0.3


def test_paying_when_the_game_pays_scores_one_whatever_the_frames(out):
    exact = _reward(Paying(lambda r, t: (r, t), frames=CopyLast()), out)
    assert exact["score"] == 1.0 and exact["false_per_100_idle"] == 0.0
    assert _reward(Paying(lambda r, t: (_late(r, 1), _late(t, 1))), out)["score"] == 1.0  # within the tolerance
    late = _reward(Paying(lambda r, t: (_late(r, 2), t)), out)
    assert late["recall"] == 0.0 and late["false_per_100_idle"] > 0 and late["termination_recall"] == 1.0


def test_a_run_is_scored_up_to_the_games_ending():
    actions = np.array([NOOP, 6, NOOP, 1, NOOP, NOOP])
    truth_r, truth_t = np.array([0, 1, 0, 0, 0, 0.]), np.array([0, 0, 0, 1, 1, 1], bool)
    # a payment two steps late on a quiet step is false; payments after the ending (and its tolerance) are not scored
    got = count_run(actions, truth_r, truth_t, np.array([0, 0, 0, 1, 0, 1.]), np.array([0, 0, 0, 0, 1, 1], bool))
    assert (got["true"], got["pred"], got["hit"], got["false_idle"]) == (1, 1, 0, 0)  # step 3 is no NOOP
    assert (got["ends"], got["end_hit"], got["idle"]) == (1, 1, 3)
    got = count_run(actions, truth_r, np.zeros(6, bool), np.array([0, 0, 1, 0, 0, 1.]), np.zeros(6, bool))
    assert (got["pred"], got["hit"], got["false_idle"], got["ends"], got["false_end"]) == (2, 1, 1, 0, 0)


def test_the_idle_return_check_tells_a_paying_dream_from_the_game():
    contexts = starts(2, seed=0)
    game = idle_return(Engine(), contexts, 40, np.arange(2))
    assert game["random_return"] > 0 and game["idle_return"] == 0.0 and game["met"] is True
    greedy = idle_return(Paying(lambda r, t: (np.full_like(r, 0.05), t)), contexts, 40, np.arange(2))
    assert greedy["idle_return"] == pytest.approx(2.0) and greedy["met"] is False
    assert greedy["ratio"] == pytest.approx(2.0 / greedy["random_return"])


def test_cli_reward_suite_on_a_checkpoint_writes_its_figures(tmp_path, capsys):
    ckpt = write_world(tmp_path / "tiny.safetensors")
    report = tmp_path / "report"
    assert main(["probe", f"checkpoint={ckpt}", "seeds=1", "suite=reward", f"out={report}", "device=cpu",
                 "quick=true"]) == 0
    assert "idle agent's return" in capsys.readouterr().out
    summary = json.loads((report / "probes.json").read_text())
    assert set(summary["families"]) == {"reward"}
    assert summary["reward"]["idle"]["steps"] == QUICK.idle_steps and summary["reward"]["events"] >= 7
    assert all("reward" in p for p in summary["probes"])
    assert "idle-return check" in (report / "probes.md").read_text()


def test_the_idle_return_check_wants_a_seed_per_start():
    with pytest.raises(ValueError, match="1 seeds for 2 idle starts"):
        idle_return(Engine(), starts(2, seed=0), 5, np.arange(1))


class _Recording:
    """A stand-in simulator for TeacherForced: it pays 1 on every "mine" and records the frames it is made to cache."""

    class dit:
        class config:
            context = 4

    def __init__(self):
        self.targets, self.strengths = [], []

    def seed(self, seed):
        pass

    def reset(self, frames, actions):
        assert frames.shape[1] <= 3 and actions.shape == frames.shape[:2]  # at most the window's older frames

    def guided_step(self, actions, target, strength):
        self.targets.append(target[0])
        self.strengths.append(strength)
        return Rollout(target, np.array([float(actions[0] == 6)]), np.array([False]))


def test_teacher_forced_caches_the_engines_frames_and_pays_by_what_the_model_reads():

    probes = build_suite(["reward"], seed=0, suite=QUICK)[:2]
    contexts = [reference(p.runs[0], 0).context for p in probes]
    actions = np.stack([np.array(p.runs[0].actions[:6]) for p in probes])
    actions[:, 2] = 6  # a mine in every row
    sim = _Recording()
    out = TeacherForced(sim).predict(contexts, actions, np.array([0, 1]))
    truth = Engine().predict(contexts, actions, np.array([0, 1]))
    assert np.array_equal(out.frames, truth.frames)  # the engine's frames, each cached as the step's
    assert np.array_equal(np.stack(sim.targets).reshape(truth.frames.shape), truth.frames)
    assert set(sim.strengths) == {0.0}  # nothing dreamt
    assert out.rewards.tolist() == (actions == 6).astype(np.float32).tolist()


def test_cli_teacher_forced_scores_the_reward_family_alone(tmp_path, capsys):
    ckpt = write_world(tmp_path / "tiny.safetensors")
    assert main(["probe", f"checkpoint={ckpt}", "seeds=1", "suite=reward", "teacher_forced=true",
                 f"out={tmp_path / 'r'}", "device=cpu", "quick=true", "report=false"]) == 0
    summary = json.loads((tmp_path / "r" / "probes.json").read_text())
    assert set(summary["families"]) == {"reward"} and summary["teacher_forced"] is True
    capsys.readouterr()
    assert main(["probe", f"checkpoint={ckpt}", "suite=reward+control", "teacher_forced=true",
                 f"out={tmp_path / 'x'}"]) == 2
    assert "true with suite=reward and a checkpoint" in capsys.readouterr().err
