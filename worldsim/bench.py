"""`worldsim bench`: speed measurements, printed as a table and written to bench.json.

Each figure is the median over `repeats` runs, with every run's value kept in the JSON. This issue measures the
Craft2D engine (step + render); later benchmarks (Dream-v0 step latency, batched stepping) join the same table.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np

from worldsim.io import atomic_write_json


@dataclass(frozen=True)
class BenchArgs:
    steps: int = 20_000  # env steps per run
    repeats: int = 5  # runs per benchmark; the median is reported
    seed: int = 0
    out: str = "."  # directory for bench.json


def _steps_per_second(env: gym.Env, steps: int, seed: int) -> float:
    """Random actions (drawn up front, so the RNG is not timed); resets on episode end are timed, as in real use."""
    actions = np.random.default_rng(seed).integers(env.action_space.n, size=steps).tolist()
    env.reset(seed=seed)
    start = time.perf_counter()
    for a in actions:
        _, _, terminated, truncated, _ = env.step(a)
        if terminated or truncated:
            env.reset()
    return steps / (time.perf_counter() - start)


def bench_engine(args: BenchArgs) -> list[dict]:
    """Craft2D step + render at 64x64, one process: the bare env and the same env through gymnasium.make."""
    from envs.craft2d import Craft2DEnv

    rows = []
    for name, make in (("craft2d step+render 64x64 (Craft2DEnv)", lambda: Craft2DEnv()),
                       ("craft2d step+render 64x64 (gymnasium.make)", lambda: gym.make("worldsim/Craft2D-v0"))):
        env = make()
        _steps_per_second(env, min(2000, args.steps), args.seed)  # warm-up: caches, first world
        runs = [_steps_per_second(env, args.steps, args.seed + r) for r in range(args.repeats)]
        env.close()
        rows.append({"name": name, "unit": "steps/s", "median": statistics.median(runs), "runs": runs,
                     "target": 10_000})
    return rows


def machine() -> dict:
    return {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(),
            "numpy": np.__version__, "gymnasium": gym.__version__}


def run(args: BenchArgs) -> Path:
    rows = bench_engine(args)
    width = max(len(r["name"]) for r in rows)
    print(f"{'benchmark':<{width}}  {'median':>10}  {'target':>8}  unit")
    for r in rows:
        print(f"{r['name']:<{width}}  {r['median']:>10,.0f}  {r['target']:>8,}  {r['unit']}")
    path = atomic_write_json(Path(args.out) / "bench.json",
                             {"machine": machine(), "args": asdict(args), "results": rows})
    print(f"wrote {path}")
    return path
