"""Hydra configs: recipes in configs/<command>/experiment/ select and override the typed dataclasses, nothing more."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from worldsim.bench import BenchArgs
from worldsim.config import configs_root, parse_overrides, recipes
from worldsim.data.collect import CollectConfig
from worldsim.data.minari_io import ExportConfig, ImportConfig
from worldsim.train.autoencoder import TrainAEConfig
from worldsim.train.world import TrainWorldConfig

COMMANDS = {"collect": CollectConfig, "train_ae": TrainAEConfig, "train_world": TrainWorldConfig,
            "export": ExportConfig, "import": ImportConfig, "bench": BenchArgs}
MANDATORY = {"collect": ["out=x"], "train_ae": ["data=x"], "train_world": ["data=x", "ae=y"],
             "export": ["data=x", "id=a/b-v0"], "import": ["id=a/b-v0", "out=x"], "bench": []}


def test_the_checkout_has_the_recipe_folders():
    root = configs_root()
    assert root is not None and root == Path(__file__).resolve().parents[1] / "configs"
    assert "craft2d_s" in recipes("train_world")
    assert "craft2d" in recipes("collect") and "craft2d" in recipes("train_ae")
    for folder in root.glob("*/experiment"):
        assert folder.parent.name in COMMANDS, f"{folder}: no command is called {folder.parent.name!r}"


@pytest.mark.parametrize("command, name", [(c, r) for c in COMMANDS for r in recipes(c)])
def test_every_recipe_composes_onto_its_schema(command, name):
    cfg = parse_overrides(COMMANDS[command], [f"experiment={name}"], command)
    assert dataclasses.is_dataclass(cfg) and type(cfg) is COMMANDS[command]


def test_a_recipe_overrides_and_the_command_line_wins(tmp_path, monkeypatch):
    (tmp_path / "train_world" / "experiment").mkdir(parents=True)
    (tmp_path / "train_world" / "experiment" / "mine.yaml").write_text(
        "# @package _global_\ndata: d\nae: a\noptim:\n  steps: 77\n  lr: 1.0e-3\ndit:\n  context: 6\n")
    monkeypatch.setenv("WORLDSIM_CONFIGS", str(tmp_path))
    cfg = parse_overrides(TrainWorldConfig, ["experiment=mine", "optim.lr=2e-3", "dit.depth=2"], "train_world")
    assert (cfg.data, cfg.ae, cfg.optim.steps, cfg.optim.lr) == ("d", "a", 77, 2e-3)
    assert cfg.dit == {"context": 6, "depth": 2}  # a new key inside a dict field needs no '+'
    assert cfg.optim.warmup == TrainWorldConfig().optim.warmup  # untouched fields keep the dataclass default
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.optim.steps = 1  # type: ignore[misc]
    plain = parse_overrides(TrainWorldConfig, ["data=d", "ae=a"], "train_world")
    assert plain.optim.steps == TrainWorldConfig().optim.steps  # no recipe unless one is asked for


def test_bad_recipes_and_keys_are_named(tmp_path, monkeypatch):
    (tmp_path / "collect" / "experiment").mkdir(parents=True)
    (tmp_path / "collect" / "experiment" / "typo.yaml").write_text("# @package _global_\nout: x\nstepz: 3\n")
    (tmp_path / "collect" / "experiment" / "wrong.yaml").write_text("# @package _global_\nout: x\nsteps: many\n")
    monkeypatch.setenv("WORLDSIM_CONFIGS", str(tmp_path))
    with pytest.raises(ValueError, match=r"experiment=nope: no such recipe.*one of \['typo', 'wrong'\]"):
        parse_overrides(CollectConfig, ["experiment=nope"], "collect")
    with pytest.raises(ValueError, match=r"stepz"):
        parse_overrides(CollectConfig, ["experiment=typo"], "collect")
    with pytest.raises(ValueError, match=r"many"):
        parse_overrides(CollectConfig, ["experiment=wrong"], "collect")
    with pytest.raises(ValueError, match=r"no recipes for train_ae.*configs/train_ae/experiment"):
        parse_overrides(TrainAEConfig, ["data=x", "experiment=craft2d"], "train_ae")


def test_commands_without_a_configs_folder_still_take_overrides(monkeypatch, tmp_path):
    monkeypatch.setenv("WORLDSIM_CONFIGS", str(tmp_path / "missing"))
    assert configs_root() is None
    cfg = parse_overrides(CollectConfig, ["out=x", "steps=5", "env_kwargs.world_width=64"], "collect")
    assert (cfg.out, cfg.steps, cfg.env_kwargs) == ("x", 5, {"world_width": 64})
    with pytest.raises(ValueError, match=r"no recipes for collect"):
        parse_overrides(CollectConfig, ["out=x", "experiment=craft2d"], "collect")


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_parses_its_mandatory_keys(command):
    assert type(parse_overrides(COMMANDS[command], MANDATORY[command], command)) is COMMANDS[command]
