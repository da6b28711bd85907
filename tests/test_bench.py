"""`worldsim bench` runs every benchmark with tiny budgets and writes bench.json (speed is measured, never asserted)."""

from __future__ import annotations

import json
import sys

import pytest

from worldsim.cli import main


def test_bench_runs_every_benchmark_and_writes_json(tmp_path, capsys):
    assert main(["bench", "steps=300", "repeats=1", "batches=3", "step_calls=2", "denoise_steps=[1]",
                 "train_steps=1", "train_batch=1", "clip_len=4", "episode_steps=[11,14]", "num_envs=[2]",
                 "vector_steps=1", "agent_envs=2", "agent_steps=2", f"out={tmp_path}"]) == 0
    report = json.loads((tmp_path / "bench.json").read_text())
    names = [r["name"] for r in report["results"]]
    assert any("craft2d" in n for n in names) and any("loader" in n for n in names)
    assert any(n.startswith("Dream-v0 step") and n.endswith("1 solver step(s)") for n in names)
    assert any(n.startswith("Dream-v0 step") and n.endswith(", p95") for n in names)
    assert "recompute / cached, 1 solver step(s)" in names and "Dream step / roofline" in names
    rows = {r["name"]: r for r in report["results"]}  # speed is never asserted: the ratios must be of their rows
    cached, recomputed = ([r["median"] for n, r in rows.items() if n.startswith(f"step {what}")][0]
                          for what in ("with KV cache", "recomputing the window"))
    assert rows["recompute / cached, 1 solver step(s)"]["median"] == pytest.approx(recomputed / cached)
    matmul, step = rows[next(n for n in rows if n.startswith("fp32 matmul"))], rows[next(
        n for n in rows if n.startswith("Dream step,"))]
    assert rows["Dream step / roofline"]["median"] == pytest.approx(100 * step["median"] / matmul["median"])
    bf16_matmul = rows[next(n for n in rows if n.startswith("bf16 matmul"))]
    assert rows["bf16 / fp32 matmul"]["median"] == pytest.approx(bf16_matmul["median"] / matmul["median"])
    fp32, bf16 = (rows[next(n for n in rows if n.startswith("train world, preset S, 1 clips x 4 frames") and
                            f", {p}" in n)] for p in ("fp32", "bf16 autocast"))
    assert rows["train world, bf16 / fp32 tokens/s"]["median"] == pytest.approx(bf16["median"] / fp32["median"])
    assert any(n.startswith("dream step 14 of an episode") for n in names) and "step 14 / step 11 latency" in names
    assert "Dream-v0 x2, native vector env" in names and "Dream-v0 x2, SyncVectorEnv" in names
    assert "PPO on Dream-v0 x2, worldsim agent train (native vector env)" in names
    assert all(r["median"] > 0 and len(r["runs"]) == 1 for r in report["results"]
               if r["unit"] not in ("ms", "MiB") and not r.get("note"))  # a note: not measured here (SB3 missing)
    assert report["machine"]["cpus"] >= 1
    assert "benchmark" in capsys.readouterr().out


AGENT_ROWS = ["PPO on Dream-v0 x2, worldsim agent train (native vector env)",
              "PPO on Dream-v0 x2, SB3 CnnPolicy through SB3VecEnv (native vector env)",
              "PPO on Dream-v0 x2, SB3 CnnPolicy on make_vec_env (single envs)"]


@pytest.mark.parametrize("sb3", [True, False], ids=["with-sb3", "without-sb3"])
def test_the_agents_benchmark_times_each_way_of_training_ppo_in_the_dream(tmp_path, capsys, monkeypatch, sb3):
    if sb3:
        pytest.importorskip("stable_baselines3")
    else:
        monkeypatch.setitem(sys.modules, "stable_baselines3", None)  # as if it were not installed
    assert main(["bench", "only=[agents]", "repeats=2", "agent_envs=2", "agent_steps=2", f"out={tmp_path}"]) == 0
    rows = json.loads((tmp_path / "bench.json").read_text())["results"]
    assert [r["name"] for r in rows] == AGENT_ROWS and {r["unit"] for r in rows} == {"env-steps/s"}
    measured = rows if sb3 else rows[:1]
    assert all(len(r["runs"]) == 2 and r["median"] > 0 and "note" not in r for r in measured)  # 2 runs after warm-up
    out = capsys.readouterr().out
    if not sb3:
        assert all(r["median"] is None and r["runs"] == [] and "not installed" in r["note"] for r in rows[1:])
        assert "stable-baselines3 is not installed" in out
    assert all(name in out for name in AGENT_ROWS)


def test_bench_refuses_an_unknown_benchmark(tmp_path, capsys):
    assert main(["bench", "only=[engine,warp]", f"out={tmp_path}"]) == 2
    assert "warp" in capsys.readouterr().err


def test_the_dream_benchmarks_do_not_import_the_bench_command():
    """bench runs bench_dream; bench_dream needs nothing from bench (the fields it reads are a Protocol of its own),
    so the two modules import in one direction only: not even a TYPE_CHECKING import goes back."""
    import ast

    import worldsim.bench_dream

    tree = ast.parse(open(worldsim.bench_dream.__file__).read())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)} | {
        a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert "worldsim.bench" not in imported and "worldsim.bench_dream" in open(
        worldsim.bench_dream.__file__.replace("bench_dream", "bench")).read()


def test_compare_times_a_second_model_in_the_same_runs(tmp_path):
    import shutil

    from worldsim.checkpoint import default_checkpoint

    other = tmp_path / "previous.safetensors"
    shutil.copy(default_checkpoint(), other)
    assert main(["bench", "only=[step]", "repeats=2", "step_calls=2", "denoise_steps=[1]", f"compare={other}",
                 f"out={tmp_path}"]) == 0
    rows = {r["name"]: r for r in json.loads((tmp_path / "bench.json").read_text())["results"]}
    first = f"Dream-v0 step, {default_checkpoint().name}, 1 solver step(s)"
    second = "Dream-v0 step, previous.safetensors (compare=), 1 solver step(s)"
    assert len(rows[first]["runs"]) == len(rows[second]["runs"]) == 2 and f"{second}, FPS" in rows


def test_a_steps_flop_count_includes_the_memory_beyond_the_window(tmp_path):
    """The bench steps from a history that fills the window and the strided memory: a model that attends to 3 memory
    chunks counts more FLOPs a step than the same weights without them (attention's share), and no more than the
    window's full cost again."""
    from test_dream import write_world

    from worldsim.bench_dream import count_step_flops

    plain = count_step_flops(str(write_world(tmp_path / "plain.safetensors")), 0)
    memory = count_step_flops(str(write_world(tmp_path / "memory.safetensors", memory=3)), 0)
    assert plain < memory < 2 * plain


def test_guidance_times_the_first_model_guided_beside_the_same_file_plain(tmp_path, capsys):
    from worldsim.checkpoint import default_checkpoint

    shipped = default_checkpoint()
    assert main(["bench", "only=[step]", "repeats=1", "step_calls=2", "denoise_steps=[1]", "history_guidance=3",
                 f"compare={shipped}", f"out={tmp_path}"]) == 0
    rows = {r["name"] for r in json.loads((tmp_path / "bench.json").read_text())["results"]}
    assert {f"Dream-v0 step, {shipped.name}, history_guidance=3, 1 solver step(s)",
            f"Dream-v0 step, {shipped.name} (compare=), 1 solver step(s)"} <= rows
    assert main(["bench", "only=[step]", "action_guidance=-1", f"out={tmp_path}"]) == 2
    assert "action_guidance=-1.0: expected null (the checkpoint's) or a scale in [0, 100]" in capsys.readouterr().err
