"""The probe suite at any view: at the default 8x8 tiles it draws exactly the suite it always drew; at a wider or
taller view every engine plays there, the suite still checks itself (the engine scores 1, copying the last frame 0),
walks still take objects out of view, a checkpoint is probed there whether or not it was trained there, and the
report says which view it was."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import replace

import numpy as np
import pytest

from worldsim.cli import main
from worldsim.probes.families import FAMILIES, Suite, build_suite
from worldsim.probes.predictors import CopyLast, Engine, reference
from worldsim.probes.runner import QUICK, ProbeConfig, run
from worldsim.probes.scenarios import View

from test_dream import write_world

WIDE, TALL = View(12, 8), View(8, 12)  # 96x64 and 64x96 pixels (W x H), the views `train world views=` adds
# Digests of the suite drawn at seed 0 before the probes took a view (commit 235032e): the default view must keep it.
QUICK_SCENARIOS = "66de9cb5560a20f4d6071a9c759bfa801567c2beb5086b85f317f4a08004887a"
QUICK_TRUTH = "1ab8c4b2677220cf9acd9494d2911d5902845a67f2df5f64e6ff41376455136f"  # and the engine's frames of it
FULL_SCENARIOS = "0d45c9af288fd2daf88b2d3df65e6b69887166be526fef185a11353a46afbee7"


def _digest(probes, frames: bool) -> str:
    """The probes' scenarios and actions (and with `frames`, every run's reference trace and the engine's continuation
    of its context under another seed), as one hash."""
    h = hashlib.sha256()
    for p in probes:
        # the steps walked (params "walk" and "leg", numbers) came with the views: at the default view they are k
        params = sorted((k, v) for k, v in p.params.items() if k not in ("walk", "leg") or isinstance(v, str))
        h.update(repr((p.name, p.family, p.split, params, p.score_at, p.labels, p.seen_until, p.paired)).encode())
        for r in p.runs:
            s = r.scenario
            h.update(repr((s.map, sorted(s.inventory.items()), s.selected, s.time_of_day, s.world_seed, s.origin,
                           s.ground_row, r.warmup, r.actions)).encode())
            if frames:
                tr = reference(r, 0)
                for a in (tr.context.frames, tr.frames, tr.cameras, tr.light, tr.rewards, tr.terminated):
                    h.update(np.ascontiguousarray(a).tobytes())
                out = Engine().predict([tr.context], np.array([r.actions]), np.array([1]))
                h.update(out.frames.tobytes())
                h.update(out.rewards.tobytes())
    return h.hexdigest()


def test_the_default_view_draws_the_suite_it_always_drew():
    quick = build_suite(FAMILIES, seed=0, suite=QUICK)
    assert _digest(quick, frames=False) == QUICK_SCENARIOS, "the default view's quick scenarios changed"
    assert _digest(build_suite(FAMILIES, seed=0, suite=Suite()), frames=False) == FULL_SCENARIOS
    for p in quick:
        walked = p.params.get("leg", p.params.get("walk"))
        assert walked is None or isinstance(walked, str) or walked == p.params.get("k", QUICK.causality_walk), p.name
    # the engine's frames too: this also fails if Craft2D's drawing or rules changed (then update QUICK_TRUTH)
    assert _digest(quick, frames=True) == QUICK_TRUTH, "the default view's reference frames changed"


@pytest.mark.parametrize(("view", "families"), [(WIDE, "permanence+causality+control"),
                                                (TALL, "physics+consistency+reward")])
def test_the_engine_scores_one_and_copy_last_zero_at_other_views(tmp_path, view, families):
    for predictor, want in ((Engine(), 1.0), (CopyLast(), 0.0)):
        cfg = ProbeConfig(quick=True, suite=families, seeds=2, out=str(tmp_path), report=False,
                          view_width=view.width, view_height=view.height)
        summary = run(cfg, predictor=predictor, quiet=True)
        assert {f: v["score"] for f, v in summary["families"].items()} == {f: want for f in families.split("+")}
        assert all(v["informative"] == v["probes"] for v in summary["families"].values()), summary["families"]


@pytest.mark.parametrize("view", [WIDE, TALL, View(16, 16)])
def test_every_run_starts_centred_on_the_player_inside_its_patch(view):
    """What a larger view shows at the start is the scenario's patch (its extra rows real sky and ground, drawn for
    it), not an arbitrary cut of the world, and the camera is not clamped to the world's edges."""
    for p in build_suite(FAMILIES, seed=0, suite=replace(QUICK, view=view)):
        run_ = p.runs[0]
        tr = reference(run_, 0)
        assert tr.frames.shape[1:] == view.frame_shape, p.name
        (x0, y0), state = tr.cameras[0], tr.context.state
        assert (state.xs[0] - x0, state.ys[0] - y0) == (view.left, view.above), p.name
        ox, oy = run_.scenario.origin
        rows = run_.scenario.rows()
        assert ox <= x0 and x0 + view.width <= ox + len(rows[0]), p.name
        assert oy <= y0 and y0 + view.height - 1 <= oy + len(rows), p.name


def _out_of_view(probe) -> list[bool]:
    """Per frame (context first), whether the permanence object (the columns left of the player's start) is out of
    view: the camera's left edge is right of them."""
    tr = reference(probe.runs[0], 0)
    return list(tr.cameras[:, 0] > tr.context.state.xs[0] - 1)


def test_a_wider_views_permanence_walk_takes_the_object_as_long_out_of_view():
    wide = build_suite(["permanence"], seed=0, suite=replace(QUICK, view=WIDE))
    assert [p.name for p in wide] == [p.name for p in build_suite(["permanence"], seed=0, suite=QUICK)]
    for p in wide:
        k = p.params["k"]
        assert p.params["walk"] == k + 2 and p.steps == 2 * (k + 2) - 1  # 6 columns left of the player, not 4
        gone = _out_of_view(p)
        assert gone[p.context_length - 1 + p.params["walk"]], p.name  # at the walk's far end it is out of view
        assert not any(gone[:p.context_length]) and not gone[-1], p.name  # seen in the context, and back at the end
        # out of view from k - 4 steps before the far end to as many after, as at the default view (k = 6: 5 frames)
        assert sum(gone) == 2 * (k - 4) + 1, p.name


def test_another_view_probes_the_same_worlds_at_the_same_times():
    """A larger view's probe is the default view's, shown larger: the same world, time of day and place, unless the
    columns it adds do not fit there (then the nearest place that fits, or where none does, another world)."""
    def draw(view):
        return [(p.name, p.params["world_seed"], p.params["time_of_day"], p.params["x"])
                for p in build_suite(FAMILIES, seed=0, suite=replace(QUICK, view=view))]

    default, wide = draw(View()), draw(WIDE)
    assert draw(TALL) == default  # a taller view adds no columns: the very same places
    assert [d[0] for d in wide] == [d[0] for d in default]
    assert sum(w[:3] == d[:3] for w, d in zip(wide, default)) >= 0.8 * len(default)
    assert sum(w == d for w, d in zip(wide, default)) >= 0.7 * len(default)


@pytest.mark.parametrize(("override", "message"), [
    ("view_width=7", r"view_width=7: expected a whole number of tiles from 8 to 16"),
    ("view_height=17", r"view_height=17: expected a whole number of tiles from 8 to 16"),
])
def test_a_view_the_probes_cannot_take_is_refused_before_any_work(tmp_path, capsys, override, message):
    assert main(["probe", override, "quick=true", f"out={tmp_path / 'out'}"]) == 2
    assert re.search(message, capsys.readouterr().err)
    assert not (tmp_path / "out").exists()
    with pytest.raises(ValueError, match="view_width=8.0"):
        ProbeConfig(view_width=8.0)


def test_a_view_the_model_does_not_tile_is_refused_naming_it(tmp_path, capsys):
    ckpt = write_world(tmp_path / "tiny.safetensors")  # 8 px latents in 2x2 patches: sides a multiple of 16 px
    assert main(["probe", f"checkpoint={ckpt}", "view_width=9", "quick=true", "device=cpu",
                 f"out={tmp_path / 'out'}"]) == 2
    err = capsys.readouterr().err
    assert "view_width=9, view_height=8" in err and "cannot make frames of 72x64 px" in err, err
    assert not (tmp_path / "out" / "probes.json").exists()


@pytest.mark.parametrize("trained", [False, True])
def test_a_checkpoint_is_probed_at_a_wider_view_and_probes_json_says_so(tmp_path, capsys, trained):
    ckpt = write_world(tmp_path / "tiny.safetensors", views=[[64, 96, 3]] if trained else None)
    out = tmp_path / "report"
    assert main(["probe", f"checkpoint={ckpt}", "seeds=1", "suite=control", "quick=true", "device=cpu",
                 "view_width=12", f"out={out}"]) == 0
    printed = capsys.readouterr().out
    assert ("not at 12x8 tiles (96x64 px, W x H): probing it there anyway" in printed) is not trained, printed
    summary = json.loads((out / "probes.json").read_text())
    assert summary["view"] == [12, 8] and summary["frame_shape"] == [64, 96, 3]
    assert summary["view_trained"] is trained and summary["config"]["view_width"] == 12
    assert summary["trained_views"] == [[64, 64, 3]] + ([[64, 96, 3]] if trained else [])
    report = (out / "probes.md").read_text()
    assert "- view: 12x8 tiles (96x64 px, W x H)" in report
    assert ("a view the model was not trained at" in report) is not trained
    from PIL import Image

    strip = Image.open(next((out / "strips").iterdir()))
    assert strip.size[1] == 14 + 2 * 2 * 64 + 2 and (strip.size[0] + 2) % (2 * 96 + 2) == 0  # 96x64 frames, x2
