"""One step ahead of the engine's history (`worldsim probe one_step=true`): the simulator dreams a step and then
remembers the true frame, exactly as if it had been reset on it; the predictor feeds it the engine's frames under the
same actions and seeds; the walks' moves are read from the engine's frame before; bad settings are refused."""

from __future__ import annotations

import json

import numpy as np
import pytest

from worldsim.cli import main
from worldsim.models.diffusion import DiffusionConfig
from worldsim.probes.families import FAMILIES, build_suite
from worldsim.probes.predictors import Engine, OneStep, reference
from worldsim.probes.protocol import Rollout
from worldsim.probes.runner import QUICK, ProbeConfig
from worldsim.probes.score import view_moves
from worldsim.simulator import WorldSimulator

from test_dream import write_world
from test_simulator import _clip, _models


@pytest.mark.parametrize("reencode", [False, True])
def test_teacher_step_dreams_as_step_then_remembers_the_true_frame_as_reset_would(reencode):
    ae, dit = _models()
    diffusion = DiffusionConfig(denoise_steps=2, reencode=reencode)
    frames = _clip(b=2, t=3)
    past = np.array([[-1, 3, 4], [-1, 1, 2]])
    a1, a2 = past[:, 2], np.array([5, 6])

    forced = WorldSimulator(ae, dit, diffusion, seed=7)
    forced.reset(frames[:, :2], past[:, :2])
    dreamt = forced.teacher_step(a1, frames[:, 2])
    after = forced.step(a2)

    plain = WorldSimulator(ae, dit, diffusion, seed=7)
    plain.reset(frames[:, :2], past[:, :2])
    same = plain.step(a1)  # the same draw as the teacher step's: its dream is step()'s
    plain.reset(frames, past)  # the true frame in the history; the noise goes on as one stream
    then = plain.step(a2)
    assert np.array_equal(dreamt.frames, same.frames)
    assert np.allclose(after.latents, then.latents, atol=1e-5)  # the cache held the true frame, not the dream
    assert not np.allclose(after.latents, _free(ae, dit, diffusion, frames, past, a1, a2), atol=1e-3)


def _free(ae, dit, diffusion, frames, past, a1, a2):
    """The second step's latents when the dream, not the true frame, enters the history."""
    sim = WorldSimulator(ae, dit, diffusion, seed=7)
    sim.reset(frames[:, :2], past[:, :2])
    sim.step(a1)
    return sim.step(a2).latents


def test_teacher_step_refuses_frames_of_another_batch_or_type():
    ae, dit = _models()
    sim = WorldSimulator(ae, dit, DiffusionConfig(denoise_steps=1), seed=0)
    with pytest.raises(RuntimeError, match="before reset"):
        sim.teacher_step(np.array([1]), _clip(b=1, t=1)[:, 0])
    sim.reset(_clip(b=2, t=2))
    with pytest.raises(ValueError, match="frames"):
        sim.teacher_step(np.array([1, 2]), _clip(b=1, t=1)[:, 0])  # one frame for two worlds
    with pytest.raises(ValueError, match="frames"):
        sim.teacher_step(np.array([1, 2]), _clip(b=2, t=1)[:, 0].astype(np.float32))


class _Forced:
    """A stand-in simulator for OneStep: it dreams a grey frame and records the true frames it is made to remember."""

    class dit:
        class config:
            context = 4

    def __init__(self):
        self.truth, self.seeds, self.resets = [], [], []

    def seed(self, seed):
        self.seeds.append(seed)

    def reset(self, frames, actions):
        assert frames.shape[1] <= 3 and actions.shape == frames.shape[:2]  # at most the window's older frames
        self.resets.append(len(frames))

    def teacher_step(self, actions, frames):
        self.truth.append(frames)
        grey = np.full_like(frames, 128)
        return Rollout(grey, np.zeros(len(frames), np.float32), np.zeros(len(frames), bool))


def test_one_step_feeds_the_engines_frames_under_the_same_actions_and_seeds():
    probes = build_suite(["permanence"], seed=0, suite=QUICK)[:3]
    contexts = [reference(p.runs[0], 0).context for p in probes]
    actions = np.stack([np.array(p.runs[0].actions[:5]) for p in probes])
    seeds = np.array([4, 5, 6])
    sim = _Forced()
    out = OneStep(sim, batch=2).predict(contexts, actions, seeds)
    truth = Engine().predict(contexts, actions, seeds)
    fed = np.concatenate([np.stack(sim.truth[:5], 1), np.stack(sim.truth[5:], 1)])  # batches of 2, then 1 row
    assert np.array_equal(fed, truth.frames)
    assert sim.resets == [2, 1] and len(set(sim.seeds)) == 2  # each batch reset once, seeded by its own rows
    assert (out.frames == 128).all()  # the frames are the model's dreams, never the engine's


def test_moves_read_from_the_engines_frame_before():
    probe = build_suite(["permanence"], seed=0, suite=QUICK)[0]
    trace = reference(probe.runs[0], 0)
    before = np.concatenate([trace.context.frames[-1:], trace.frames[:-1]])
    engine = view_moves(trace, trace.frames[None], before)
    assert engine[:, 0].sum() > 0 and (engine[:, 1] == engine[:, 0]).all()  # the engine's own frames: every move right
    stuck = view_moves(trace, before[None], before)  # each frame a copy of the one before: the view never moves
    assert stuck[:, 0].sum() > 0 and stuck[:, 1].sum() == 0
    assert view_moves(trace, before[None])[:, 1].sum() > 0  # read from its own frames, the lag looks like moves


def test_cli_one_step_probes_a_checkpoint_and_refuses_what_it_cannot_do(tmp_path, capsys):
    ckpt = write_world(tmp_path / "tiny.safetensors")
    common = ["seeds=1", "suite=permanence+control", "device=cpu", "quick=true", "report=false"]
    assert main(["probe", f"checkpoint={ckpt}", "one_step=true", f"out={tmp_path / 'one'}", *common]) == 0
    assert main(["probe", f"checkpoint={ckpt}", f"out={tmp_path / 'free'}", *common]) == 0
    one, free = (json.loads((tmp_path / d / "probes.json").read_text()) for d in ("one", "free"))
    assert one["one_step"] is True and free["one_step"] is False
    assert "one step ahead of the engine's history" in capsys.readouterr().out
    walks = [(o, f) for o, f in zip(one["probes"], free["probes"]) if o["family"] == "permanence"]
    # copy-last copies the engine's frame before each step: a floor one step behind, never the context's last frame
    assert all(o["floors"]["copy_last"] >= f["floors"]["copy_last"] for o, f in walks)
    assert any(o["floors"]["copy_last"] > f["floors"]["copy_last"] for o, f in walks)
    for extra in ([f"checkpoint={ckpt}", "teacher_forced=true", "suite=reward"], ["model=x:y"]):
        assert main(["probe", *common, "one_step=true", *extra, f"out={tmp_path / 'x'}"]) == 2
        assert "one_step=True: expected false, or true with a checkpoint" in capsys.readouterr().err
    assert main(["probe", *common, "one_step=true", f"checkpoint={ckpt}", "suite=control+stability",
                 f"out={tmp_path / 'x'}"]) == 2
    assert "without stability with one_step=true" in capsys.readouterr().err
    assert "stability" not in ProbeConfig(one_step=True).families()  # suite=all: every family that means something
    assert set(ProbeConfig(one_step=True).families()) == set(FAMILIES) - {"stability"}
