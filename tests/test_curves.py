"""`worldsim curves`: runs' logs chained end to end into one PNG."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from worldsim.cli import main
from worldsim.train.curves import PANEL, read_logs
from worldsim.train.curves import main as write_curves


def _log(path, steps, eval_at):
    path.mkdir()
    lines = [{"step": s, "loss": 1.0 / s, "denoise_loss": 1.0 / s} for s in steps]
    lines += [{"step": s, "eval": {"tiles_h1": 0.9, "copy_tiles_h1": 0.8, "tiles_h8": 0.7, "copy_tiles_h8": 0.6}}
              for s in eval_at]
    (path / "log.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")


def test_a_fine_tune_continues_its_parents_steps_and_the_png_is_written(tmp_path, capsys):
    _log(tmp_path / "a", range(1, 61), [30, 60])
    _log(tmp_path / "b", range(1, 41), [40])
    train, evals = read_logs([tmp_path / "a", tmp_path / "b"])
    assert [r["step"] for r in evals] == [30, 60, 100] and train[-1]["step"] == 100
    out = tmp_path / "curves.png"
    assert main(["curves", str(tmp_path / "a"), str(tmp_path / "b"), f"out={out}"]) == 0
    image = np.asarray(Image.open(out))
    assert image.shape[0] > image.shape[1] / 2 and "wrote" in capsys.readouterr().out  # two panels stacked


def test_a_missing_run_and_a_bad_name_are_named(tmp_path, capsys):
    assert main(["curves", str(tmp_path / "nope")]) == 2
    assert "nope" in capsys.readouterr().err
    _log(tmp_path / "a", range(1, 61), [])
    assert main(["curves", str(tmp_path / "a"), f"out={tmp_path / 'c.jpg'}"]) == 2
    assert "c.jpg" in capsys.readouterr().err
    assert main(["curves", f"runs=[{tmp_path / 'a'}]", f"out={tmp_path / 'c.png'}"]) == 0  # runs= works too
    assert main(["curves", str(tmp_path / "a"), f"runs=[{tmp_path / 'a'}]"]) == 2
    assert "runs given twice" in capsys.readouterr().err
    assert main(["curves"]) == 2
    assert "at least one run directory" in capsys.readouterr().err


def test_one_panel_per_kind_of_curve_each_of_the_panel_size(tmp_path):
    _log(tmp_path / "loss_only", range(1, 61), [])
    ae = tmp_path / "ae"
    ae.mkdir()
    rows = [{"step": s, "loss": 1.0 / s} for s in range(1, 61)] + [{"step": 60, "eval": {"tile_accuracy": 0.97}}]
    (ae / "log.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    for run, panels in (("loss_only", 1), ("ae", 2)):
        out = write_curves([str(tmp_path / run)], str(tmp_path / f"{run}.png"))
        with Image.open(out) as image:
            assert image.size == (PANEL[0], PANEL[1] * panels)
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["ae.png", "loss_only.png"]  # no temp file


def _agent_run(path, returns, evaluated=None):
    path.mkdir()
    lines = [{"kind": "episode", "step": 100 * (i + 1), "env": 0, "return": r, "length": 100}
             for i, r in enumerate(returns)]
    lines.append({"kind": "update", "step": 100 * len(returns), "update": 1})
    (path / "log.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    if evaluated is not None:
        (path / "eval.json").write_text(json.dumps({"env": "worldsim/Craft2D-v0", "episodes": 100,
                                                    "return_mean": evaluated}))


def test_agent_runs_are_compared_side_by_side_with_their_evaluated_return(tmp_path):
    from worldsim.train.curves import agent_curves

    real, dream = tmp_path / "real", tmp_path / "dream"
    _agent_run(real, [1.0] * 10 + [3.0] * 10, evaluated=2.5)
    _agent_run(dream, [0.0, 2.0], evaluated=None)
    lines = agent_curves([real, dream]).axes[0].get_lines()
    labels = [line.get_label() for line in lines]
    assert len(labels) == 3 and labels[1].endswith("100 episodes: 2.50") and labels[2].startswith("dream:")
    y = lines[0].get_ydata()  # a trailing mean from the first episode on, over all of them here (fewer than 50)
    assert len(y) == 20 and y[0] == 1.0 and np.isclose(y[10], 13 / 11) and np.isclose(y[-1], 2.0)
    assert lines[2].get_ydata().tolist() == [0.0, 1.0]
    assert main(["curves", str(real), str(dream), f"out={tmp_path / 'agents.png'}"]) == 0
    _log(tmp_path / "world", range(1, 5), [])
    with pytest.raises(ValueError, match="not a `worldsim agent train` run"):
        agent_curves([real, tmp_path / "world"])
