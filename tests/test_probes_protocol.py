"""Any world model keeping the probe protocol (reset from frames and actions, stepped by actions, numpy in and out) is
probed end to end by `worldsim probe model=...`: a model written outside the package scores as the suite's own
copy-last does, a model that pays is scored on reward, a model that breaks the protocol is refused with a message
that names it before anything is scored, and the guide's example runs as written."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from worldsim.cli import main
from worldsim.envs.craft2d import Action
from worldsim.probes.predictors import CopyLast
from worldsim.probes.protocol import ModelError, ModelFailed, Probed, WorldModel, batch_seed
from worldsim.probes.reward import starts
from worldsim.probes.runner import ProbeConfig, run

from test_readme import SKIP, commands

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "probe_your_model.md"
FILE = re.compile(r"<!--\s*probe-doc:\s*file\s+(\S+)\s*-->")  # the block after it is saved as that file
# What a user writes: numpy only, no worldsim import.
MODELS = '''
import numpy as np


class CopyLastClone:
    def reset(self, frames, actions, seed):
        self.last = frames[:, -1].copy()

    def step(self, actions):
        return self.last


class MinePays(CopyLastClone):
    """Copy-last frames, and a payment whenever the player mines (mine, mine_up, mine_down)."""

    name = "mine-pays"

    def step(self, actions):
        return self.last, np.isin(actions, (6, 7, 8)).astype(np.float32), np.zeros(len(actions), bool)


class Faulty(CopyLastClone):
    """Keeps the protocol for `after` steps of each reset, then breaks it as `fault` says."""

    def __init__(self, fault, after=0, max_batch=None):
        self.fault, self.after, self.max_batch = fault, after, max_batch

    def reset(self, frames, actions, seed):
        super().reset(frames, actions, seed)
        self.t = 0

    def step(self, actions):
        self.t += 1
        x, b = self.last, len(actions)
        if self.t <= self.after:
            return x
        return {"shape": lambda: x[:, :32, :32], "float": lambda: x.astype(np.float32) / 255,
                "batch": lambda: x[:1], "nothing": lambda: None, "list": lambda: list(x),
                "pair": lambda: (x, np.zeros(b)), "rewards": lambda: (x, np.zeros(b + 1), np.zeros(b, bool)),
                "terminated": lambda: (x, np.zeros(b), np.full(b, 0.5)),
                "raise": lambda: [][b]}[self.fault]()
'''


@pytest.fixture
def models(tmp_path, monkeypatch):
    """`user_models`, a module of the test's own in the current directory, as `model=user_models:...` imports it."""
    (tmp_path / "user_models.py").write_text(MODELS)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))  # and sys.path is put back as it was, whatever the loader added
    monkeypatch.delitem(sys.modules, "user_models", raising=False)
    yield tmp_path
    sys.modules.pop("user_models", None)


def _probe(out: Path, *settings: str) -> dict:
    assert main(["probe", *settings, "quick=true", "seeds=1", f"out={out}"]) == 0
    return json.loads((out / "probes.json").read_text())


def _same_numbers(a: dict, b: dict) -> None:
    """Two summaries measured the same: every probe's m over seeds, floor, ceiling, score and PSNR, the control
    figures and the reward counts."""
    assert [p["name"] for p in a["probes"]] == [p["name"] for p in b["probes"]]
    for p, q in zip(a["probes"], b["probes"]):
        for key in ("model", "floor", "ceiling", "score", "psnr"):
            assert p[key] == q[key], (p["name"], key)
    assert a["families"] == b["families"] and a["control"] == b["control"] and a["reward"] == b["reward"]


def test_a_model_written_outside_the_package_scores_as_the_builtin_copy_last(models, capsys):
    run(ProbeConfig(quick=True, seeds=1, out=str(models / "builtin"), report=False), CopyLast(), quiet=True)
    clone = _probe(models / "clone", "model=user_models:CopyLastClone")
    _same_numbers(clone, json.loads((models / "builtin" / "probes.json").read_text()))
    assert {f: v["score"] for f, v in clone["families"].items()} == {f: 0.0 for f in clone["families"]}
    assert clone["predictor"] == "CopyLastClone" and clone["config"]["model"] == "user_models:CopyLastClone"
    assert clone["model"] == {"spec": "user_models:CopyLastClone", "name": "CopyLastClone", "context": None,
                              "max_batch": None, "batch": 64, "events": False}
    printed = capsys.readouterr().out
    assert "note: CopyLastClone returns frames alone: it never pays and never ends" in printed
    report = (models / "clone" / "probes.md").read_text()
    assert "- model: `CopyLastClone` (`model=user_models:CopyLastClone`)" in report
    # the suite's own copy-last, named from the command line: a reference row through the same path
    reference = _probe(models / "reference", "model=worldsim.probes.protocol:CopyLast", "report=false")
    _same_numbers(reference, clone)
    assert reference["predictor"] == "copy-last"


def test_a_model_that_pays_is_scored_on_reward_and_one_from_a_file_too(models, capsys):
    paid = _probe(models / "paid", f"model={models / 'user_models.py'}:MinePays", "suite=reward", "report=false")
    assert paid["model"]["events"] is True and paid["predictor"] == "mine-pays"
    assert paid["families"]["reward"]["score"] > 0.5, paid["families"]
    assert paid["reward"]["recall"] == 1.0 and paid["reward"]["counts"]["pred"] > 0
    assert "returns frames alone" not in capsys.readouterr().out
    silent = _probe(models / "silent", "model=user_models:CopyLastClone", "suite=reward", "report=false")
    assert silent["families"]["reward"]["score"] == 0.0 and silent["reward"]["counts"]["pred"] == 0


@pytest.mark.parametrize(("fault", "message"), [
    ("shape", r"returned frames of shape \(2, 32, 32, 3\) and dtype uint8 .*: expected frames, a numpy uint8 array of "
              r"shape \(B, H, W, 3\) = \(2, 64, 64, 3\)"),
    ("float", r"returned frames of shape \(2, 64, 64, 3\) and dtype float32 \(values 0\.0\d+\.\.1\): expected uint8 in "
              r"0\.\.255: convert with"),
    ("batch", r"\(2 rows\) returned frames of shape \(1, 64, 64, 3\).* = \(2, 64, 64, 3\) \(B: one row per action"),
    ("nothing", r"returned None as its frames: expected frames, a numpy uint8 array"),
    ("list", r"returned a list of 2 as its frames"),
    ("pair", r"returned a tuple of 2: expected .* or a tuple \(frames, rewards \(2,\), terminated \(2,\)\)"),
    ("rewards", r"returned rewards of shape \(3,\) .*: expected \(2,\) finite numbers"),
    ("terminated", r"returned terminated of shape \(2,\) and dtype float64 \(values 0\.5\.\.0\.5\): expected \(2,\) "
                   r"bool"),
])
def test_a_model_that_breaks_the_protocol_is_refused_before_anything_is_scored(models, capsys, fault, message):
    out = models / "out"
    assert main(["probe", "model=user_models:Faulty", f"model_kwargs.fault={fault}", "quick=true",
                 f"out={out}"]) == 2
    err = capsys.readouterr().err
    assert "worldsim probe: error: model 'Faulty' (user_models:Faulty): step 1 of 1 (2 rows)" in err, err
    assert re.search(message, err), err
    assert not out.exists()


def test_a_model_that_breaks_later_is_named_at_the_step(models):
    from user_models import Faulty

    with pytest.raises(ModelError, match=r"model 'Faulty': step 4 of [456] \(\d+ rows\) returned frames of shape"):
        run(ProbeConfig(quick=True, seeds=1, suite="physics", out=str(models / "out"), report=False),
            Faulty("shape", after=3), quiet=True)


def test_an_exception_in_the_model_keeps_its_traceback_and_says_where(models):
    with pytest.raises(ModelFailed, match=r"model 'Faulty' \(user_models:Faulty\): step raised IndexError on step 1 "
                                          r"of 1: list index out of range") as caught:
        main(["probe", "model=user_models:Faulty", "model_kwargs.fault=raise", "quick=true", f"out={models}"])
    assert isinstance(caught.value.__cause__, IndexError)


@pytest.mark.parametrize(("settings", "message"), [
    (["model=user_models:CopyLastClone", "checkpoint=x.safetensors"],
     r"model='user_models:CopyLastClone': expected a model or a checkpoint, not both \(checkpoint=x.safetensors\)"),
    (["model_kwargs.fault=shape"], r"model_kwargs=\{'fault': 'shape'\}: expected model=MODULE:NAME with them"),
    (["model=user_models:CopyLastClone", "denoise_steps=2"], r"denoise_steps=2: expected null with model="),
    (["model=no.such:Thing"], r"model=no.such:Thing: cannot import 'no.such': No module named 'no' \(it must be "
                              r"importable"),
    (["model=user_models:Nothing"], r"model=user_models:Nothing: module 'user_models' \(.*user_models.py\) has no "
                                    r"'Nothing'; it defines \['CopyLastClone', 'Faulty', 'MinePays'\]"),
    (["model=user_models"], r"model=user_models: expected MODULE:NAME"),
    (["model=missing.py:Thing"], r"model=missing.py:Thing: no file .*missing.py"),
    (["model=user_models:CopyLastClone", "model_kwargs.size=3"],
     r"model=user_models:CopyLastClone: CopyLastClone\(\) cannot take model_kwargs=\{'size': 3\}"),
    (["model=user_models:Faulty", "model_kwargs={fault: shape, max_batch: 0}"],
     r"model user_models:Faulty: max_batch=0: expected null or an integer >= 1"),
    (["model=numpy:pi"], r"model=numpy:pi: pi is a float: expected a class, a factory function or a model"),
    (["model=json:JSONDecoder"], r"model=json:JSONDecoder: JSONDecoder has no reset or step method"),
])
def test_a_model_setting_that_cannot_work_is_refused_naming_it(models, capsys, settings, message):
    assert main(["probe", *settings, "quick=true", f"out={models / 'out'}"]) == 2
    err = capsys.readouterr().err
    assert re.search(message, err), err
    assert not (models / "out").exists()


def test_rows_go_in_batches_with_the_context_asked_for_and_a_seed_each():
    calls, stepped = [], []

    class Recorder:
        context, max_batch = 2, 2

        def reset(self, frames, actions, seed):
            calls.append((frames.shape, actions.tolist(), seed))
            self.last = frames[:, -1]

        def step(self, actions):
            assert actions.dtype == np.int64 and actions.shape == (len(self.last),)
            return self.last

    assert isinstance(Recorder(), WorldModel)
    contexts = starts(3, 0)  # the first frame, then three NOOPs
    actions = np.arange(15).reshape(3, 5) % 12
    out = Probed(Recorder(), batch=64).predict(contexts, actions, np.array([1, 2, 3]), on_step=stepped.append)
    assert [c[0] for c in calls] == [(2, 2, 64, 64, 3), (1, 2, 64, 64, 3)]  # max_batch rows, context frames
    assert calls[0][1] == [[0, 0], [0, 0]]  # the actions that led to the last two frames: NOOPs, not -1
    assert [c[2] for c in calls] == [batch_seed([1, 2]), batch_seed([3])] and sum(stepped) == 15
    assert np.array_equal(out.frames, np.stack([np.repeat(c.frames[-1:], 5, 0) for c in contexts]))
    assert not out.rewards.any() and not out.terminated.any()
    calls.clear()
    Probed(Recorder(), batch=1).predict(contexts, actions, np.array([1, 2, 3]))  # the suite's batch= caps it too
    assert [c[2] for c in calls] == [batch_seed([s]) for s in (1, 2, 3)] and batch_seed([1, 2]) != batch_seed([2, 1])


def test_probe_help_lists_the_model_settings(capsys):
    assert main(["probe", "--help"]) == 0
    text = capsys.readouterr().out
    assert "model=null" in text and "model_kwargs.KEY={}" in text


def guide_blocks() -> list[tuple[str, str, str | None]]:
    """(language, code, file it is saved as) of the guide's ```python and ```bash blocks, less skipped ones."""
    lines, found = GUIDE.read_text().splitlines(), []
    for i, line in enumerate(lines):
        fence = re.fullmatch(r"```(\w+)", line.strip())
        if not fence or fence.group(1) not in ("python", "bash") or (i and SKIP.search(lines[i - 1])):
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == "```")
        saved = FILE.search(lines[i - 1]) if i else None
        found.append((fence.group(1), "\n".join(lines[i + 1:end]), saved.group(1) if saved else None))
    return found


def test_the_guides_example_runs_as_written(tmp_path, monkeypatch, capsys):
    blocks = guide_blocks()
    assert [b[2] for b in blocks if b[2]] == ["my_model.py"] and len(blocks) >= 3
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "my_model", raising=False)
    try:
        for language, code, saved in blocks:
            if saved:
                (tmp_path / saved).write_text(code + "\n")
            elif language == "python":
                exec(compile(code, str(GUIDE), "exec"), {"__name__": "__guide__"})
            else:
                for i, argv in enumerate(commands(code)):  # the budget: the quick suite, one sampling seed
                    argv = [a for a in argv if not a.startswith(("quick=", "seeds="))] + ["quick=true", "seeds=1"]
                    if i:  # the first ran every family and wrote the report: the next ones check their settings
                        argv += ["suite=control", "report=false"]
                    assert main(argv) == 0, f"worldsim {' '.join(argv)}: {capsys.readouterr().err}"
        import my_model

        assert (tmp_path / "probes-toy" / "probes.md").is_file()  # the guide's first command writes the report
        summary = json.loads((tmp_path / "probes-toy" / "probes.json").read_text())
        assert summary["predictor"] == "toy-scroll" and summary["model"]["events"] is True
        assert summary["model"]["max_batch"] == 32 and summary["model"]["batch"] == 32
        # the toy's action numbers are Craft2D's
        assert (my_model.LEFT, my_model.RIGHT, my_model.JUMP_LEFT, my_model.JUMP_RIGHT, my_model.MINE,
                my_model.MINE_UP, my_model.MINE_DOWN) == (Action.LEFT, Action.RIGHT, Action.JUMP_LEFT,
                                                          Action.JUMP_RIGHT, Action.MINE, Action.MINE_UP,
                                                          Action.MINE_DOWN)
    finally:
        sys.modules.pop("my_model", None)


def test_the_scroller_scrolls_the_world_rows_on_a_walk_and_a_walk_back_undoes_it():
    from worldsim.probes.protocol import Scroller

    frames = np.random.default_rng(0).integers(0, 256, (2, 3, 64, 64, 3), dtype=np.uint8)
    model = Scroller()
    model.reset(frames, np.zeros((2, 3), np.int64), 0)
    right = model.step(np.array([2, 0]))  # row 0 walks right, row 1 waits
    assert (right[0, :56, :56] == frames[0, -1, :56, 8:]).all() and (right[0, 56:] == frames[0, -1, 56:]).all()
    assert (right[1] == frames[1, -1]).all()
    assert (model.step(np.array([1, 0])) == frames[:, -1]).all()  # and left brings the first frame back
