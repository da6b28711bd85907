"""Hydra configs: recipes in configs/<command>/experiment/ select and override the typed dataclasses, nothing more."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from worldsim import cli
from worldsim.agents.ppo import Args
from worldsim.bench import BenchArgs
from worldsim.baselines.train import TrainPixelConfig
from worldsim.cli import main
from worldsim.config import configs_root, parse_overrides, recipes
from worldsim.data.collect import CollectConfig
from worldsim.data.minari_io import ExportConfig, ImportConfig
from worldsim.probes.leaderboard import LeaderboardConfig
from worldsim.train.autoencoder import TrainAEConfig
from worldsim.train.reward import TrainRewardConfig
from worldsim.train.world import TrainWorldConfig

COMMANDS = {"collect": CollectConfig, "train_ae": TrainAEConfig, "train_world": TrainWorldConfig,
            "export": ExportConfig, "import": ImportConfig, "bench": BenchArgs, "agent": Args,
            "train_pixel": TrainPixelConfig, "train_reward": TrainRewardConfig, "leaderboard": LeaderboardConfig}
MANDATORY = {"collect": ["out=x"], "train_ae": ["data=x"], "train_world": ["data=x", "ae=y"],
             "export": ["data=x", "id=a/b-v0"], "import": ["id=a/b-v0", "out=x"], "bench": [], "agent": [],
             "train_pixel": ["data=x"], "train_reward": ["world=w", "data=x"], "leaderboard": []}


def test_the_checkout_has_the_recipe_folders():
    root = configs_root()
    assert root is not None and root == Path(__file__).resolve().parents[1] / "configs"
    assert "craft2d_s" in recipes("train_world")
    assert "craft2d" in recipes("collect") and "craft2d" in recipes("train_ae")
    for folder in root.glob("*/experiment"):
        assert folder.parent.name in COMMANDS, f"{folder}: no command is called {folder.parent.name!r}"


@pytest.mark.parametrize("command, name", [(c, r) for c in COMMANDS for r in recipes(c)])
def test_every_recipe_composes_onto_its_schema(command, name):
    # the leaderboard checks its rows' files at once: a clone has the references, not the trained rows
    extra = ["only=[engine,copy-last]"] if command == "leaderboard" else []
    cfg = parse_overrides(COMMANDS[command], [f"experiment={name}", *extra], command)
    assert dataclasses.is_dataclass(cfg) and type(cfg) is COMMANDS[command]


def test_a_recipe_overrides_and_the_command_line_wins(tmp_path, monkeypatch):
    (tmp_path / "train_world" / "experiment").mkdir(parents=True)
    (tmp_path / "train_world" / "experiment" / "mine.yaml").write_text(
        "# @package _global_\ndata: d\nae: a\noptim:\n  steps: 777\n  lr: 1.0e-3\ndit:\n  context: 6\n")
    monkeypatch.setenv("WORLDSIM_CONFIGS", str(tmp_path))
    cfg = parse_overrides(TrainWorldConfig, ["experiment=mine", "optim.lr=2e-3", "dit.depth=2"], "train_world")
    assert (cfg.data, cfg.ae, cfg.optim.steps, cfg.optim.lr) == ("d", "a", 777, 2e-3)
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


def test_a_free_form_dict_field_takes_a_whole_dict_or_dotted_keys():
    for form in (["env_kwargs={view_width: 12, world_width: 64}"], ["env_kwargs.view_width=12", "env_kwargs.world_width=64"]):
        cfg = parse_overrides(CollectConfig, ["out=x", *form], "collect")
        assert cfg.env_kwargs == {"view_width": 12, "world_width": 64}
    cfg = parse_overrides(CollectConfig, ["out=x", "experiment=craft2d_96x64", "env_kwargs={world_width: 64}"],
                          "collect")
    assert cfg.env_kwargs == {"view_width": 12, "world_width": 64}  # merged into the recipe's, as Hydra merges dicts


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_parses_its_mandatory_keys(command):
    assert type(parse_overrides(COMMANDS[command], MANDATORY[command], command)) is COMMANDS[command]


# The command line: one convention (key=value) for every command, --help the one flag.

def _help(capsys, *argv) -> str:
    assert main([*argv, "--help"]) == 0
    return capsys.readouterr().out


def _keys(cls, prefix="") -> list[str]:
    """Every key a user can set on `cls`, nested dataclasses with dots, as --help must list them."""
    keys = []
    for f in dataclasses.fields(cls):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        keys += _keys(type(default), f"{prefix}{f.name}.") if dataclasses.is_dataclass(default) else [prefix + f.name]
    return keys


@pytest.mark.parametrize("argv", [[c] for c in cli.COMMANDS] + [["train", t] for t in cli.TRAIN])
def test_help_lists_every_key_with_its_default_and_meaning(argv, capsys):
    cmd = cli.COMMANDS[argv[0]] if len(argv) == 1 else cli.TRAIN[argv[1]]
    text = _help(capsys, *argv)
    lines = text.splitlines()
    for key in _keys(cmd.config()):
        row = next((i for i, line in enumerate(lines) if re.match(rf"  {re.escape(key)}(\.KEY)?=", line)), None)
        assert row is not None, f"worldsim {' '.join(argv)} --help does not list {key}"
        assert lines[row + 1].startswith("      ") and lines[row + 1].strip(), f"{key} has no meaning in --help"
    assert "Config(" not in text  # nested configs as keys with dots, never a dataclass repr


def test_help_of_train_lists_the_tasks_and_of_a_task_its_recipes(capsys):
    text = _help(capsys, "train")
    assert "ae" in text and "world" in text
    text = _help(capsys, "train", "world")
    assert "optim.steps=20000" in text and "loop.out=runs/world" in text and "craft2d_s" in text
    assert "model.objective=diffusion" in _help(capsys, "train", "pixel") and "regression" in _help(capsys, "train", "pixel")
    assert "model.width=64" in _help(capsys, "train", "ae")
    assert "quick=false" in _help(capsys, "probe")
    assert main(["train"]) == 2 and main(["train", "gan"]) == 2
    assert "one of ['ae', 'world', 'pixel', 'reward']" in capsys.readouterr().err
    assert main(["--help"]) == 0 and "collect" in capsys.readouterr().out
    assert main(["nope"]) == 2 and "no command 'nope'" in capsys.readouterr().err


@pytest.mark.parametrize("argv, guess", [
    (["collect", "--out", "X"], "out=X"),
    (["collect", "--out=X"], "out=X"),
    (["dream", "--denoise-steps", "4"], "denoise_steps=4"),
    (["dream", "--fps", "-5"], "fps=-5"),
    (["dream", "--no-real"], "real=false"),
    (["probe", "--quick"], "quick=true"),
    (["play", "--ghost"], "ghost=true"),
    (["train", "world", "-x"], "x=true"),
])
def test_flags_typed_by_habit_are_answered_with_the_key_value(argv, guess, capsys):
    assert main(argv) == 2
    assert f"settings are key=value: did you mean {guess}?" in capsys.readouterr().err


def test_one_name_per_setting_across_commands():
    """The solver-step count is denoise_steps everywhere; a command's output is `out`, its seed `seed`."""
    configs = [c.config() for c in [*cli.COMMANDS.values(), *cli.TRAIN.values()]]
    keys = {k for cls in configs for k in _keys(cls)}
    assert not {k for k in keys if re.search(r"solver|sampling_steps|(^|[._])n_steps|max_ticks|num_steps|output|outdir", k)}
    assert {k for k in keys if "denoise" in k} <= {"denoise_steps", "eval_denoise_steps", "diffusion.denoise_steps",
                                                      "model.denoise_steps"}  # train pixel: the U-Net's sampler


@pytest.mark.parametrize("argv, named", [
    (["collect", "out=x", "workers=0"], "workers=0"),
    (["collect", "out=x", "shard_steps=0"], "shard_steps=0"),
    (["collect", "out=x", "max_episode_steps=0"], "max_episode_steps=0"),
    (["collect", "out=x", "frame_size=[4,4]"], "frame_size=[4, 4]"),
    (["probe", "batch=0"], "batch=0"),
    (["probe", "denoise_steps=0"], "denoise_steps=0"),
    (["probe", "history_sigma=1.0"], "history_sigma=1.0"),
    (["probe", "action_guidance=-2"], "action_guidance=-2.0"),
    (["events", "action_guidance=101"], "action_guidance=101.0"),
    (["probe", "history_guidance=-1"], "history_guidance=-1.0"),
    (["events", "history_guidance=101"], "history_guidance=101.0"),
    (["probe", "history_window=0"], "history_window=0"),
    (["probe", "device=tpu"], "device='tpu'"),
    (["bench", "repeats=0"], "repeats=0"),
    (["bench", "steps=-3"], "steps=-3"),
    (["bench", "only=[]"], "only=[]"),
    (["bench", "num_envs=[]"], "num_envs=[]"),
    (["bench", "episode_steps=[5]"], "episode_steps=[5]"),
    (["bench", "model=Q"], "model='Q'"),
])
def test_bad_settings_are_refused_before_any_work_naming_the_setting(argv, named, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing may be written: a refused command leaves the folder as it was
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"error: {named}: " in err
    assert list(tmp_path.iterdir()) == []
