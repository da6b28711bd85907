"""`worldsim bench`'s measurements of agents learning in the dream: PPO's env-steps/s on Dream-v0, a rollout and its
learning together, three ways:
  native        `worldsim agent train` (worldsim.agents.ppo) on Dream-v0's native vector env, all worlds in one
                batched world-model step
  SB3VecEnv     Stable-Baselines3's PPO("CnnPolicy") on the same native vector env, through worldsim.envs.sb3.SB3VecEnv
  make_vec_env  SB3's PPO on SB3's own make_vec_env(n_envs=N): N single worlds stepped one after another
Each way learns alike: `agent_envs` worlds, rollouts of `agent_steps` steps a world, one epoch in 4 minibatches (the
Nature CNN on both sides). A run is one update (a rollout and its learning), timed after one update of warm-up; the
median of `repeats` runs. The world model is at its default settings (the checkpoint of the other dream benchmarks).
Without stable-baselines3 its two rows are kept, with a note and no figure. The envs alone: the vector benchmark.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
import warnings
from pathlib import Path
from typing import Callable, Protocol

from worldsim.bench_dream import DreamBenchArgs, dream_checkpoint

MINIBATCHES, EPOCHS = 4, 1  # the learning of every way: a rollout's steps in 4 minibatches, one pass
NO_SB3 = "skipped: stable-baselines3 is not installed (pip install 'worldsim[rl]')"


class AgentBenchArgs(DreamBenchArgs, Protocol):
    """The fields of worldsim.bench.BenchArgs that these benchmarks read, beside the dream benchmarks' own."""

    agent_envs: int
    agent_steps: int


def bench_agents(args: AgentBenchArgs) -> list[dict]:
    """PPO env-steps/s on Dream-v0 with `agent_envs` worlds: worldsim's own PPO, then SB3's through SB3VecEnv and
    through make_vec_env (module docstring)."""
    n, what = args.agent_envs, f"PPO on Dream-v0 x{args.agent_envs}"
    names = {"native": f"{what}, worldsim agent train (native vector env)",
             "adapter": f"{what}, SB3 CnnPolicy through SB3VecEnv (native vector env)",
             "single": f"{what}, SB3 CnnPolicy on make_vec_env (single envs)"}
    with tempfile.TemporaryDirectory(prefix="worldsim-bench-") as tmp:
        kwargs = {"checkpoint": dream_checkpoint(args, tmp), "device": "cpu"}
        rows = [_row(names["native"], _native_runs(args, kwargs, Path(tmp) / "ppo"))]
        try:
            import stable_baselines3  # noqa: F401
        except ImportError:
            return rows + [{"name": names[way], "unit": "env-steps/s", "median": None, "runs": [], "target": 0,
                            "note": NO_SB3} for way in ("adapter", "single")]
        import gymnasium as gym
        from stable_baselines3.common.env_util import make_vec_env

        from worldsim.envs.sb3 import SB3VecEnv

        def adapter():
            with warnings.catch_warnings():  # Dream-v0's lockstep worlds cannot reset one alone: said once, known
                warnings.simplefilter("ignore")
                return SB3VecEnv(gym.make_vec("worldsim/Dream-v0", num_envs=n, **kwargs))

        rows.append(_row(names["adapter"], _sb3_runs(args, adapter)))
        rows.append(_row(names["single"], _sb3_runs(args, lambda: make_vec_env("worldsim/Dream-v0", n_envs=n,
                                                                               seed=args.seed, env_kwargs=kwargs))))
    return rows


def _row(name: str, runs: list[float]) -> dict:
    return {"name": name, "unit": "env-steps/s", "median": statistics.median(runs), "runs": runs, "target": 0}


def _native_runs(args: AgentBenchArgs, env_kwargs: dict, out: Path) -> list[float]:
    """`worldsim agent train` itself for 1 + repeats updates; each update's env-steps/s from its `update_s` in the
    log (the rollout and the learning, not the save), the first one left out as the warm-up."""
    from worldsim.agents.ppo import Args, train

    updates = 1 + args.repeats
    ppo = Args(env="worldsim/Dream-v0", env_kwargs=env_kwargs, num_envs=args.agent_envs, num_steps=args.agent_steps,
               total_steps=updates * args.agent_steps * args.agent_envs, update_epochs=EPOCHS,
               num_minibatches=MINIBATCHES, seed=args.seed, out=str(out), save_every=updates)
    train(ppo, quiet=True)
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    return [ppo.batch_size / r["update_s"] for r in log if r["kind"] == "update"][1:]


def _sb3_runs(args: AgentBenchArgs, make_env: Callable) -> list[float]:
    """SB3's PPO("CnnPolicy"), one learn() of one rollout per run, after one of warm-up."""
    from stable_baselines3 import PPO
    from stable_baselines3.common.logger import Logger

    env = make_env()
    batch = args.agent_steps * args.agent_envs
    model = PPO("CnnPolicy", env, n_steps=args.agent_steps, batch_size=max(2, batch // MINIBATCHES), n_epochs=EPOCHS,
                seed=args.seed, device="cpu", verbose=0)
    model.set_logger(Logger(folder=None, output_formats=[]))  # logs nowhere (its default makes a folder a learn())
    model.learn(batch)  # warm-up: the first reset, rollout and allocations
    runs = []
    for _ in range(args.repeats):
        before, start = model.num_timesteps, time.perf_counter()
        model.learn(batch, reset_num_timesteps=False)  # one more rollout from where the last one stopped
        runs.append((model.num_timesteps - before) / (time.perf_counter() - start))
    env.close()
    return runs
