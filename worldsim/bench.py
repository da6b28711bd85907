"""`worldsim bench`: speed measurements, all in one run on this machine, printed as a table and written to
bench.json.

Each figure is the median over `repeats` runs, with every run's value kept in the JSON:
  engine   Craft2D step + render at 64x64, bare and through gymnasium.make
  loader   training clips per second out of a dataset (frames/s into the training loop)
  step     Dream-v0 single-env step latency (median, p95) and FPS at each solver step count, full window of history
  cache    a step that recomputes the whole window every solver pass against the cached step: the ratio
  flops    achieved FLOP/s of a step against a fp32 matmul roofline measured in the same run, and bf16 matmul beside it
  episode  Dream-v0 step latency at step 50 and at step 1000 of one episode (the cache keeps it flat), and the
           resident memory growth between them
  vector   Dream-v0 env-steps/s with `num_envs` worlds: the native vector env against vectorization_mode="sync"
  train    world-model training throughput (tokens/s) of a preset on random latents shaped as Craft2D's
           (8 x 8 x 8 at 64x64), with the peak resident memory of the process
  agents   PPO env-steps/s (rollout and learning) on Dream-v0 with `agent_envs` worlds: `worldsim agent train`, and
           Stable-Baselines3's PPO through SB3VecEnv and on its own make_vec_env (worldsim/bench_agents.py; the SB3
           rows skipped, with a note, where stable-baselines3 is not installed)
The dream benchmarks (worldsim/bench_dream.py) use the shipped checkpoint, `checkpoint=` another, and random weights
of preset `model` when there is neither: the cost of a step does not depend on what the model learned.
"""

from __future__ import annotations

import os
import platform
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import gymnasium as gym
import numpy as np

from worldsim.bench_agents import bench_agents
from worldsim.bench_dream import bench_cache, bench_episode, bench_flops, bench_step, bench_vector
from worldsim.config import check, check_guidance, to_dict
from worldsim.io import atomic_write_json

BENCHMARKS = ("engine", "loader", "step", "cache", "flops", "episode", "vector", "train", "agents")


@dataclass(frozen=True)
class BenchArgs:
    only: list[str] = field(default_factory=lambda: list(BENCHMARKS), metadata={"help": f"which of {BENCHMARKS}"})
    steps: int = field(default=20_000, metadata={"help": "env steps per engine run"})
    repeats: int = field(default=5, metadata={"help": "runs per benchmark; the median is reported"})
    seed: int = field(default=0, metadata={"help": "seed of actions and clip draws"})
    out: str = field(default=".", metadata={"help": "directory for bench.json"})
    data: str | None = field(default=None, metadata={"help": "dataset for the loader benchmark (default: collect "
                                                             "a temporary 20,000-frame Craft2D dataset)"})
    clip_len: int = field(default=16, metadata={"help": "frames per training clip"})
    batch_size: int = field(default=32, metadata={"help": "clips per batch"})
    batches: int = field(default=200, metadata={"help": "batches per loader run"})
    model: str = field(default="S", metadata={"help": "DiT preset of the random-weight model (without a checkpoint) "
                                                      "and of the train benchmark"})
    denoise_steps: list[int] = field(default_factory=lambda: [1, 2, 4], metadata={"help": "step benchmark"})
    step_calls: int = field(default=50, metadata={"help": "timed simulator steps per run"})
    checkpoint: str | None = field(default=None, metadata={"help": "world model for the dream benchmarks (default: "
                                                                   "the shipped one, else random weights of `model`)"})
    compare: str | None = field(default=None, metadata={"help": "a second world model for the step benchmark, its "
                                                                "runs alternating with the first's (e.g. the previous "
                                                                "shipped model)"})
    action_guidance: float | None = field(default=None, metadata={
        "help": "step benchmark: guidance on the action the first model plays with (default: its checkpoint's; "
                "compare= keeps its own), to time guidance's extra conditioning against the plain step"})
    history_guidance: float | None = field(default=None, metadata={
        "help": "step benchmark: guidance on the older history the first model plays with, as action_guidance"})
    train_batch: int = field(default=8, metadata={"help": "clips per optimizer step in the train benchmark "
                                                          "(clip_len frames each), as `worldsim train world`"})
    train_steps: int = field(default=10, metadata={"help": "optimizer steps per train run"})
    episode_steps: list[int] = field(default_factory=lambda: [50, 1000], metadata={
        "help": "episode benchmark: steps whose latency is compared (median of the 21 steps around each)"})
    num_envs: list[int] = field(default_factory=lambda: [1, 8, 64], metadata={"help": "vector benchmark: batch "
                                                                                       "sizes"})
    vector_steps: int = field(default=20, metadata={"help": "vector benchmark: timed steps per run"})
    agent_envs: int = field(default=8, metadata={"help": "agents benchmark: worlds each PPO steps together"})
    agent_steps: int = field(default=32, metadata={"help": "agents benchmark: steps per world of a run (one PPO "
                                                           "update: the rollout and its learning)"})

    def __post_init__(self):
        unknown = sorted(set(self.only) - set(BENCHMARKS))
        check(not unknown and len(self.only) > 0, "only", self.only, f"some of {BENCHMARKS}")
        for name in ("steps", "repeats", "clip_len", "batch_size", "batches", "step_calls", "train_batch",
                     "train_steps", "vector_steps", "agent_envs", "agent_steps"):
            check(getattr(self, name) >= 1, name, getattr(self, name), "an integer >= 1")
        check(self.agent_envs * self.agent_steps >= 2, "agent_envs x agent_steps", (self.agent_envs, self.agent_steps),
              "a rollout of at least 2 steps (SB3's PPO learns from no fewer)")
        for name in ("denoise_steps", "num_envs"):
            values = getattr(self, name)
            check(len(values) > 0 and min(values) >= 1, name, values, "a non-empty list of integers >= 1")
        check_guidance(self)
        early, late = (list(self.episode_steps) + [0, 0])[:2]
        check(len(self.episode_steps) == 2 and 11 <= early < late, "episode_steps", self.episode_steps,
              "[early, late] with 11 <= early < late (each is timed over the 21 steps around it)")
        from worldsim.models.dit import DIT_PRESETS

        check(self.model in DIT_PRESETS, "model", self.model, f"one of {sorted(DIT_PRESETS)}")


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
    from worldsim.envs.craft2d import Craft2DEnv

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


def bench_loader(args: BenchArgs) -> list[dict]:
    """Frames per second out of ClipDataset.sample: random clips gathered from memory-mapped shards."""
    from worldsim.data.loader import ClipDataset

    with tempfile.TemporaryDirectory(prefix="worldsim-bench-") as tmp:
        data = args.data
        if data is None:
            from worldsim.data.collect import CollectConfig, collect

            data = str(Path(tmp) / "data")
            collect(CollectConfig(out=data, agent="random", steps=20_000, seed=args.seed), quiet=True)
        dataset = ClipDataset(data, args.clip_len, split="all")
        rng = np.random.default_rng(args.seed)
        dataset.sample(args.batch_size, rng)  # warm-up: page cache, first touches of the memory maps
        runs = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            for _ in range(args.batches):
                dataset.sample(args.batch_size, rng)
            runs.append(args.batches * args.batch_size * args.clip_len / (time.perf_counter() - start))
    name = f"loader clips of {args.clip_len} x batch {args.batch_size} ({Path(data).name if args.data else 'temp'})"
    return [{"name": name, "unit": "frames/s", "median": statistics.median(runs), "runs": runs, "target": 5_000}]


def bench_train(args: BenchArgs) -> list[dict]:
    """World-model training tokens/s (forward, backward, AdamW step) in fp32 and under bf16 autocast, their runs
    interleaved so both see the same machine, and the process's peak resident memory. `loop.precision=auto` trains
    in bf16 where the device has it natively; the two rows say what that buys on this machine."""
    import resource

    import torch

    from worldsim.device import autocast, native_bf16
    from worldsim.models.diffusion import DiffusionConfig, training_loss
    from worldsim.models.dit import DiT, dit_config

    torch.manual_seed(args.seed)
    model = DiT(dit_config(args.model))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    gen = torch.Generator().manual_seed(args.seed)
    b, t = args.train_batch, args.clip_len
    x0 = torch.randn(b, t, model.config.latent_channels, 8, 8, generator=gen)  # Craft2D at 64x64, downsample 8
    actions = torch.randint(model.config.n_actions, (b, t), generator=gen)
    zeros = torch.zeros(b, t)
    _, ph, pw = model.config.patch
    tokens = b * t * (8 // ph) * (8 // pw)
    cpu = torch.device("cpu")

    def one_step(precision: str) -> None:
        with autocast(precision, cpu):
            loss, _ = training_loss(model, x0, actions, zeros, zeros, DiffusionConfig(), gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    precisions = ("fp32", "bf16")
    for precision in precisions:
        for _ in range(2):
            one_step(precision)  # warm-up: allocator, optimizer state, bf16 kernels
    runs: dict[str, list[float]] = {p: [] for p in precisions}
    for _ in range(args.repeats):
        for precision in precisions:
            start = time.perf_counter()
            for _ in range(args.train_steps):
                one_step(precision)
            runs[precision].append(args.train_steps * tokens / (time.perf_counter() - start))
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    name = f"train world, preset {args.model}, {b} clips x {t} frames x {tokens // (b * t)} tokens"
    native = "native" if native_bf16(cpu) else "emulated: auto keeps fp32"
    ratio = [bf / fp for bf, fp in zip(runs["bf16"], runs["fp32"])]
    return [{"name": f"{name}, fp32", "unit": "tokens/s", "median": statistics.median(runs["fp32"]),
             "runs": runs["fp32"], "target": 0},
            {"name": f"{name}, bf16 autocast ({native})", "unit": "tokens/s",
             "median": statistics.median(runs["bf16"]), "runs": runs["bf16"], "target": 0},
            {"name": "train world, bf16 / fp32 tokens/s", "unit": "ratio", "median": statistics.median(ratio),
             "runs": ratio, "target": 0},
            {"name": "peak resident memory of this bench process", "unit": "MiB", "median": peak_mib,
             "runs": [peak_mib], "target": 0}]


def machine() -> dict:
    return {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(),
            "numpy": np.__version__, "gymnasium": gym.__version__}


def run(args: BenchArgs) -> Path:
    runners = {"engine": bench_engine, "loader": bench_loader, "step": bench_step, "cache": bench_cache,
               "flops": bench_flops, "episode": bench_episode, "vector": bench_vector, "train": bench_train,
               "agents": bench_agents}
    rows = [row for name in BENCHMARKS if name in args.only for row in runners[name](args)]
    width = max(len(r["name"]) for r in rows)
    print(f"{'benchmark':<{width}}  {'median':>10}  {'target':>8}  unit")
    for r in rows:  # a row that could not be measured here has no median, and a note that says why
        target = f"{r['target']:>8,}" if r["target"] else f"{'-':>8}"
        median = f"{r['median']:>10,.1f}" if r["median"] is not None else f"{'-':>10}"
        note = f"  ({r['note']})" if r.get("note") else ""
        print(f"{r['name']:<{width}}  {median}  {target}  {r['unit']}{note}")
    path = atomic_write_json(Path(args.out) / "bench.json",
                             {"machine": machine(), "args": to_dict(args), "results": rows})
    print(f"wrote {path}")
    return path
