"""`worldsim bench`: speed measurements, printed as a table and written to bench.json.

Each figure is the median over `repeats` runs, with every run's value kept in the JSON:
  engine   Craft2D step + render at 64x64, bare and through gymnasium.make
  loader   training clips per second out of a dataset (frames/s into the training loop)
  step     WorldSimulator.step latency, one world at 64x64, preset S with a full context, at 1/2/4 solver steps
           (weights are random: the cost of a step does not depend on what the model has learned; checkpoint=
           measures a trained one instead)
  train    world-model training throughput (tokens/s) of a preset on random latents shaped as Craft2D's
           (8 x 8 x 8 at 64x64), with the peak resident memory of the process
  episode  Dream-v0 step latency at step 50 and at step 1000 of one episode (the cache keeps it flat), and the
           resident memory growth between them
  vector   Dream-v0 env-steps/s with `num_envs` worlds: the native vector env against vectorization_mode="sync"
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

from worldsim.config import to_dict
from worldsim.io import atomic_write_json

BENCHMARKS = ("engine", "loader", "step", "train", "episode", "vector")


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
    model: str = field(default="S", metadata={"help": "DiT preset for the step benchmark"})
    solver_steps: list[int] = field(default_factory=lambda: [1, 2, 4], metadata={"help": "step benchmark"})
    step_calls: int = field(default=50, metadata={"help": "timed simulator steps per run"})
    checkpoint: str | None = field(default=None, metadata={"help": "world-model checkpoint for the step benchmark "
                                                                   "(default: random weights of `model`)"})
    train_batch: int = field(default=8, metadata={"help": "clips per optimizer step in the train benchmark "
                                                          "(clip_len frames each), as `worldsim train world`"})
    train_steps: int = field(default=10, metadata={"help": "optimizer steps per train run"})
    episode_steps: list[int] = field(default_factory=lambda: [50, 1000], metadata={
        "help": "episode benchmark: steps whose latency is compared (median of the 21 steps around each)"})
    num_envs: list[int] = field(default_factory=lambda: [1, 8], metadata={"help": "vector benchmark: batch sizes"})
    vector_steps: int = field(default=20, metadata={"help": "vector benchmark: timed steps per run"})


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


def bench_step(args: BenchArgs) -> list[dict]:
    """Milliseconds per WorldSimulator.step (encode nothing, denoise, cache, decode) for one 64x64 world."""
    from worldsim.simulator import WorldSimulator

    with tempfile.TemporaryDirectory(prefix="worldsim-bench-") as tmp:
        first = WorldSimulator.from_checkpoint(_dream_checkpoint(args, tmp), device="cpu", seed=args.seed)
    ae, dit = first.ae, first.dit
    label = Path(args.checkpoint).name if args.checkpoint else f"preset {args.model}"
    frames = np.random.default_rng(args.seed).integers(0, 256, (1, dit.config.context - 1, 64, 64, 3), np.uint8)
    rows = []
    for steps in args.solver_steps:
        sim = WorldSimulator(ae, dit, first.diffusion, steps=steps, seed=args.seed)
        sim.reset(frames)  # a full window of history: the steady-state cost
        for _ in range(5):
            sim.step([0])  # warm-up
        runs = []
        for _ in range(args.repeats):
            times = []
            for _ in range(args.step_calls):
                start = time.perf_counter()
                sim.step([0])
                times.append(time.perf_counter() - start)
            runs.append(1000 * statistics.median(times))
        rows.append({"name": f"dream step, {label}, 64x64, {steps} solver step(s)", "unit": "ms",
                     "median": statistics.median(runs), "runs": runs, "target": 50})
    return rows


def bench_train(args: BenchArgs) -> list[dict]:
    """World-model training tokens/s (forward, backward, AdamW step) and the process's peak resident memory."""
    import resource

    import torch

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

    def one_step() -> None:
        loss, _ = training_loss(model, x0, actions, zeros, zeros, DiffusionConfig(), gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(2):
        one_step()  # warm-up: allocator, optimizer state
    runs = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        for _ in range(args.train_steps):
            one_step()
        runs.append(args.train_steps * tokens / (time.perf_counter() - start))
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    name = f"train world, preset {args.model}, {b} clips x {t} frames x {tokens // (b * t)} tokens"
    return [{"name": name, "unit": "tokens/s", "median": statistics.median(runs), "runs": runs, "target": 0},
            {"name": "peak resident memory of this bench process", "unit": "MiB", "median": peak_mib,
             "runs": [peak_mib], "target": 0}]


def _dream_checkpoint(args: BenchArgs, tmp: str) -> str:
    """args.checkpoint, or a random-weight checkpoint of preset `args.model` written to `tmp` (the cost of a step
    does not depend on what the model learned)."""
    if args.checkpoint:
        return args.checkpoint
    from dataclasses import asdict

    import torch

    from envs.craft2d import Craft2DEnv
    from worldsim.checkpoint import prefixed, save_checkpoint
    from worldsim.models.autoencoder import Autoencoder, AutoencoderConfig
    from worldsim.models.diffusion import DiffusionConfig
    from worldsim.models.dit import DiT, dit_config

    torch.manual_seed(args.seed)
    ae, dit = Autoencoder(AutoencoderConfig()), DiT(dit_config(args.model))
    env = Craft2DEnv()
    starts = torch.from_numpy(np.stack([env.reset(seed=s)[0] for s in range(4)]))
    path = str(Path(tmp) / f"random-{args.model}.safetensors")
    save_checkpoint(path, {**prefixed(ae.state_dict(), "ae"), **prefixed(dit.state_dict(), "dit"),
                           "start.frames": starts}, config={"bench": f"random weights, preset {args.model}"},
                    ae_config=asdict(ae.cfg), dit_config=asdict(dit.config), diffusion=asdict(DiffusionConfig()),
                    action_meanings=env.get_action_meanings(), frame_shape=[64, 64, 3], latent_shape=[8, 8, 8],
                    env="worldsim/Craft2D-v0")
    return path


def _rss_mib() -> float:
    """Current resident memory of this process (Linux /proc; peak RSS elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20
    except OSError:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_episode(args: BenchArgs) -> list[dict]:
    """Step latency of one Dream-v0 episode around step 50 and around step 1000, and memory growth between them."""
    from envs.dream import DreamEnv

    if len(args.episode_steps) != 2 or not 11 <= args.episode_steps[0] < args.episode_steps[1]:
        raise ValueError(f"episode_steps={args.episode_steps}: expected [early, late] with 11 <= early < late (each "
                         "is timed over the 21 steps around it)")
    early, late = args.episode_steps
    with tempfile.TemporaryDirectory(prefix="worldsim-bench-") as tmp:
        env = DreamEnv(checkpoint=_dream_checkpoint(args, tmp), device="cpu")
        actions = np.random.default_rng(args.seed).integers(env.action_space.n, size=late + 11)
        env.reset(seed=args.seed)
        times, rss = [], {}
        for t, a in enumerate(actions.tolist(), start=1):
            start = time.perf_counter()
            env.step(a)
            times.append(1000 * (time.perf_counter() - start))
            if t in (early, late):
                rss[t] = _rss_mib()
    at = {n: statistics.median(times[n - 11:n + 10]) for n in (early, late)}  # the 21 steps around step n
    label = Path(args.checkpoint).name if args.checkpoint else f"preset {args.model}, random weights"
    return [{"name": f"dream step {n} of an episode, {label}", "unit": "ms", "median": at[n],
             "runs": times[n - 11:n + 10], "target": 50} for n in (early, late)] + [
        {"name": f"step {late} / step {early} latency", "unit": "ratio", "median": at[late] / at[early],
         "runs": [at[late] / at[early]], "target": 0},
        {"name": f"resident memory growth, step {early} to {late}", "unit": "MiB", "median": rss[late] - rss[early],
         "runs": [rss[late] - rss[early]], "target": 0}]


def bench_vector(args: BenchArgs) -> list[dict]:
    """Env-steps/s of make_vec("worldsim/Dream-v0"): the native batched env against SyncVectorEnv of single envs."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="worldsim-bench-") as tmp:
        ckpt = _dream_checkpoint(args, tmp)
        for n in args.num_envs:
            for mode in ("vector_entry_point", "sync"):
                envs = gym.make_vec("worldsim/Dream-v0", num_envs=n, vectorization_mode=mode, checkpoint=ckpt,
                                    device="cpu")
                envs.reset(seed=args.seed)
                rng, n_actions = np.random.default_rng(args.seed), envs.single_action_space.n
                envs.step(rng.integers(n_actions, size=n))  # warm-up
                runs = []
                for _ in range(args.repeats):
                    actions = rng.integers(n_actions, size=(args.vector_steps, n))
                    start = time.perf_counter()
                    for a in actions:
                        envs.step(a)
                    runs.append(args.vector_steps * n / (time.perf_counter() - start))
                envs.close()
                name = f"Dream-v0 x{n}, {'native vector env' if mode != 'sync' else 'SyncVectorEnv'}"
                rows.append({"name": name, "unit": "env-steps/s", "median": statistics.median(runs), "runs": runs,
                             "target": 0})
    return rows


def machine() -> dict:
    return {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(),
            "numpy": np.__version__, "gymnasium": gym.__version__}


def run(args: BenchArgs) -> Path:
    unknown = set(args.only) - set(BENCHMARKS)
    if unknown:
        raise ValueError(f"only={args.only}: unknown {sorted(unknown)}, expected some of {BENCHMARKS}")
    runners = {"engine": bench_engine, "loader": bench_loader, "step": bench_step, "train": bench_train,
               "episode": bench_episode, "vector": bench_vector}
    rows = [row for name in BENCHMARKS if name in args.only for row in runners[name](args)]
    width = max(len(r["name"]) for r in rows)
    print(f"{'benchmark':<{width}}  {'median':>10}  {'target':>8}  unit")
    for r in rows:
        target = f"{r['target']:>8,}" if r["target"] else f"{'-':>8}"
        print(f"{r['name']:<{width}}  {r['median']:>10,.1f}  {target}  {r['unit']}")
    path = atomic_write_json(Path(args.out) / "bench.json",
                             {"machine": machine(), "args": to_dict(args), "results": rows})
    print(f"wrote {path}")
    return path
