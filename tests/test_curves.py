"""`worldsim curves`: runs' logs chained end to end into one PNG."""

from __future__ import annotations

import json

import numpy as np
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
