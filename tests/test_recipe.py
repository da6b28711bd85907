"""`worldsim recipe`: every stage of the shipped model's recipe chained by one command, tiny, then run again."""

from __future__ import annotations

from worldsim.checkpoint import load_world
from worldsim.cli import main

TINY_WORLD = ["dit.width=24", "dit.depth=1", "dit.heads=2", "dit.context=4", "clip_len=4", "batch_size=2",
              "eval_clips=1", "eval_context=2", "horizons=[1,2]", "eval_denoise_steps=[]", "holdout=0.3",
              "optim.steps=2", "optim.warmup=1", "loop.eval_every=0"]


def _quoted(settings: list[str]) -> str:
    return "[" + ",".join(f"'{s}'" for s in settings) + "]"


def _argv(root, **extra) -> list[str]:
    stages = {
        "collect": [f"out={root / 'data'}", "steps=1200", "workers=1", "agent=random", "env_kwargs.world_width=64",
                    "max_episode_steps=60", "shard_steps=400"],
        "ae": [f"loop.out={root / 'ae'}", "optim.steps=4", "optim.warmup=1", "model.width=8", "batch_size=4",
               "eval_frames=8", "stats_frames=32", "holdout=0.3", "loop.eval_every=0"],
        "world": [f"loop.out={root / 'world'}", *TINY_WORLD],
        "world_ft": [f"loop.out={root / 'world_ft'}", *TINY_WORLD],
        "collect_text": [f"out={root / 'data_text'}", "steps=1200", "seed=5", "workers=1", "agent=random",
                         "env_kwargs.world_width=64", "max_episode_steps=60", "shard_steps=400"],
        "world_text": [f"loop.out={root / 'world_text'}", "loop.max_minutes=0", *TINY_WORLD],
        "collect_views": [f"out={root / 'data_view'}", "steps=900", "workers=1", "agent=random",
                          "env_kwargs.world_width=64", "max_episode_steps=60", "shard_steps=300"],
        "world_views": [f"loop.out={root / 'world_views'}", "loop.max_minutes=0", "start_frames=2", *TINY_WORLD],
        # the explorer mining ahead pays in 1,200 steps (seed 1: 3 times), where random play may not
        "collect_work": [f"out={root / 'data_work'}", "steps=1200", "workers=1", "env_kwargs.world_width=64",
                         "max_episode_steps=60", "shard_steps=400"],
        "collect_build": [f"out={root / 'data_build'}", "steps=1200", "workers=1", "env_kwargs.world_width=64",
                          "max_episode_steps=60", "shard_steps=400"],
        "world_build": [f"loop.out={root / 'world_build'}", "start_frames=2", *TINY_WORLD],
    }
    for stage, settings in extra.items():
        stages[stage] = stages[stage] + settings
    return ["recipe", *(f"{stage}={_quoted(s)}" for stage, s in stages.items()), f"ship={root / 'shipped.safetensors'}"]


def test_the_recipe_chains_every_stage_ships_the_fine_tune_and_a_second_run_changes_nothing(tmp_path, capsys):
    assert main(_argv(tmp_path)) == 0
    shipped = tmp_path / "shipped.safetensors"
    assert shipped.read_bytes() == (tmp_path / "world_build" / "last.safetensors").read_bytes()
    world = load_world(shipped)
    assert world.reward is None  # the world's own heads pay: no reward/end model is trained
    assert world.metadata["config"]["init"] == str(tmp_path / "world_views" / "last.safetensors")  # 9 from 8
    assert world.metadata["config"]["data"] == str(tmp_path / "data_text")
    assert world.metadata["config"]["views"] == [str(tmp_path / d) for d in ("data_view", "data_view_1", "data_work",
                                                                            "data_build")]
    assert world.metadata["config"]["freeze_text"] and world.dit.text is not None
    world = load_world(tmp_path / "world_views" / "last.safetensors")
    assert world.metadata["config"]["init"] == str(tmp_path / "world_text" / "last.safetensors")  # 8 from 6
    assert world.metadata["config"]["data"] == str(tmp_path / "data_text")  # on stage 5's data
    assert world.metadata["config"]["views"] == [str(tmp_path / "data_view"), str(tmp_path / "data_view_1")]
    assert world.metadata["views"] == [[64, 64, 3], [64, 96, 3], [96, 64, 3]]  # and stage 7's two frame sizes
    assert world.metadata["config"]["ae"] == str(tmp_path / "ae" / "last.safetensors")  # on stage 2's autoencoder
    assert world.dit.text is not None  # it reads captions
    text = load_world(tmp_path / "world_text" / "last.safetensors")
    assert text.metadata["config"]["init"] == str(tmp_path / "world_ft" / "last.safetensors")  # 6 from 4
    ft = load_world(tmp_path / "world_ft" / "last.safetensors")
    assert ft.metadata["config"]["init"] == str(tmp_path / "world" / "last.safetensors")  # stage 4 from stage 3
    out = capsys.readouterr().out
    assert [line for line in out.splitlines() if line.startswith("== recipe stage")] == [
        f"== recipe stage {s}" for s in ("collect", "ae", "world", "world_ft", "collect_text", "world_text",
                                         "collect_views", "world_views", "collect_work", "collect_build",
                                         "world_build", "ship")]
    before = (tmp_path / "world_build" / "last.safetensors").read_bytes()
    assert main(_argv(tmp_path)) == 0  # done: every training stage says so, and the same file ships again
    out = capsys.readouterr().out
    assert out.count("nothing to train") == 6
    assert (tmp_path / "world_build" / "last.safetensors").read_bytes() == before == shipped.read_bytes()


def test_a_bad_setting_of_the_last_stage_stops_the_recipe_before_the_first(tmp_path, capsys):
    assert main(_argv(tmp_path, world_ft=["optim.steps=0"])) == 2
    assert "optim.steps=0" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_unknown_stages_are_refused(tmp_path, capsys):
    assert main(["recipe", "stages=[collect,deploy]", f"ship={tmp_path / 'x.safetensors'}"]) == 2
    assert "stages=['collect', 'deploy']: expected some of" in capsys.readouterr().err
