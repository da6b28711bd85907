"""`worldsim bench`'s measurements of the learned world: step latency (with and without the KV cache), achieved
FLOP/s against this machine's matmul roofline, latency along an episode, and batched stepping.

Each uses the checkpoint shipped in the package when there is one (`checkpoint=` names another); without either, a
random-weight model of preset `model`, since the cost of a step does not depend on what the model learned.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Protocol

import gymnasium as gym
import numpy as np


class DreamBenchArgs(Protocol):
    """The fields of worldsim.bench.BenchArgs that these benchmarks read (named here, so this module needs nothing
    from worldsim.bench, which runs it)."""

    checkpoint: str | None
    compare: str | None
    model: str
    seed: int
    repeats: int
    denoise_steps: list[int]
    step_calls: int
    episode_steps: list[int]
    num_envs: list[int]
    vector_steps: int
    action_guidance: float | None
    history_guidance: float | None


def dream_checkpoint(args: DreamBenchArgs, tmp: str) -> str:
    """args.checkpoint, else the shipped checkpoint, else a random-weight checkpoint of preset `args.model` in `tmp`."""
    from worldsim.checkpoint import default_checkpoint

    if args.checkpoint:
        return args.checkpoint
    if default_checkpoint().exists():
        return str(default_checkpoint())
    import torch

    from worldsim.checkpoint import save_world
    from worldsim.envs.craft2d import Craft2DEnv
    from worldsim.models.autoencoder import Autoencoder, AutoencoderConfig
    from worldsim.models.diffusion import DiffusionConfig
    from worldsim.models.dit import DiT, dit_config

    torch.manual_seed(args.seed)
    ae, dit = Autoencoder(AutoencoderConfig()), DiT(dit_config(args.model))
    env = Craft2DEnv()
    starts = np.stack([env.reset(seed=s)[0] for s in range(4)])
    path = Path(tmp) / f"random-{args.model}.safetensors"
    save_world(path, ae, dit, DiffusionConfig(), config={"bench": f"random weights, preset {args.model}"},
               action_meanings=env.get_action_meanings(), frame_shape=starts.shape[1:], start_frames=starts,
               env="worldsim/Craft2D-v0")
    return str(path)


def _label(args: DreamBenchArgs, path: str) -> str:
    return Path(path).name if "random-" not in Path(path).name else f"preset {args.model}, random weights"


def _full_window(sim) -> np.ndarray:
    """(1, T, H, W, 3): the first bank frame repeated, a history that fills the window and the strided memory beyond it
    (T = context - 1 + memory * memory_stride), so a step attends to all it ever will."""
    cfg = sim.dit.config
    return sim.start_frames[:1, None].repeat(cfg.context - 1 + cfg.memory * cfg.memory_stride, 1)


def _timed_steps(step, calls: int) -> list[float]:
    """Milliseconds of each of `calls` calls of step()."""
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        step()
        times.append(1000 * (time.perf_counter() - start))
    return times


def bench_step(args: DreamBenchArgs) -> list[dict]:
    """Dream-v0 single-env step latency (median and p95 over every timed step of every run) and the FPS it allows,
    at each solver step count, from a full window of history: the steady-state cost. With `compare=`, a second
    model's runs alternate with the first's, so both meet the same machine load (machines differ 3-4x); with
    `action_guidance=` or `history_guidance=` the first plays with that guidance (compare= the same file: what it
    costs)."""
    from worldsim.envs.dream import DreamEnv

    rows = []
    with tempfile.TemporaryDirectory(prefix="worldsim-bench-") as tmp:
        paths = [dream_checkpoint(args, tmp)] + ([args.compare] if args.compare else [])
        play = {k: getattr(args, k) for k in ("action_guidance", "history_guidance") if getattr(args, k) is not None}
        first = _label(args, paths[0]) + "".join(f", {k}={v:g}" for k, v in play.items())
        envs = {first: DreamEnv(checkpoint=paths[0], device="cpu", **play)}
        envs |= {f"{Path(p).name} (compare=)": DreamEnv(checkpoint=p, device="cpu") for p in paths[1:]}
        for steps in args.denoise_steps:
            for env in envs.values():
                env.sim.denoise_steps = steps
                env.reset(seed=args.seed)
                for _ in range(env.sim.dit.config.context + 5):
                    env.step(0)  # fill the window, and warm up
            runs = {label: [] for label in envs}
            for _ in range(args.repeats):  # interleaved: run r of each model, then run r + 1
                for label, env in envs.items():
                    runs[label].append(_timed_steps(lambda: env.step(0), args.step_calls))
            for label, model_runs in runs.items():
                every = [t for run in model_runs for t in run]
                median, p95 = statistics.median(every), float(np.percentile(every, 95))
                name = f"Dream-v0 step, {label}, {steps} solver step(s)"
                rows += [{"name": name, "unit": "ms", "median": median,  # targets: 30 FPS, real time
                          "runs": [statistics.median(r) for r in model_runs], "target": 33},
                         {"name": f"{name}, p95", "unit": "ms", "median": p95, "runs": [p95], "target": 33},
                         {"name": f"{name}, FPS", "unit": "FPS", "median": 1000 / median, "runs": [1000 / median],
                          "target": 30}]
        for env in envs.values():
            env.close()
    return rows


def bench_cache(args: DreamBenchArgs) -> list[dict]:
    """The KV cache's worth, at each solver step count: a step that recomputes the whole window every solver pass (what
    a model without a cache does) against the cached step, and the ratio."""
    import torch

    from worldsim.models.diffusion import sample, to_velocity
    from worldsim.simulator import WorldSimulator

    with tempfile.TemporaryDirectory(prefix="worldsim-bench-") as tmp:
        ckpt = dream_checkpoint(args, tmp)
        sim = WorldSimulator.from_checkpoint(ckpt, device="cpu", seed=args.seed)
    dit, window = sim.dit, sim.dit.config.context
    frames = _full_window(sim)  # (1, window - 1 + memory's reach, H, W, 3)
    with torch.no_grad():
        # (1, window - 1, C, h, w): the recomputed step sees the window alone, not a memory beyond it
        start = sim.ae.encode(torch.from_numpy(np.ascontiguousarray(frames[:, -(window - 1):])))
    actions = torch.full((1, window), -1, dtype=torch.long)
    hist_sigma = torch.full((1, window - 1), sim.diffusion.history_sigma)
    rows = []
    for steps in args.denoise_steps:
        sim.denoise_steps = steps
        sim.reset(frames)
        cached = [statistics.median(_timed_steps(lambda: sim.step([0]), args.step_calls))
                  for _ in range(args.repeats)]
        history, gen = start, torch.Generator().manual_seed(args.seed)

        @torch.no_grad()
        def recompute_step() -> None:
            nonlocal history

            def velocity(x, s):  # the whole window, history and the new chunk, through every layer
                sigma = torch.cat([hist_sigma, s.reshape(1, 1)], 1)
                out = dit(torch.cat([history, x], 1), sigma, actions).out[:, -1:]
                return to_velocity(out, x, s, sim.diffusion.prediction)

            noise = torch.randn((1, 1) + tuple(history.shape[2:]), generator=gen)
            z = sample(velocity, noise, steps, sim.diffusion.shift)
            sim.ae.decode_uint8(z[:, 0])
            history = torch.cat([history[:, 1:], z], 1)  # slide the window

        recompute_step()  # warm-up
        recomputed = [statistics.median(_timed_steps(recompute_step, args.step_calls)) for _ in range(args.repeats)]
        c, r = statistics.median(cached), statistics.median(recomputed)
        name = f"{_label(args, ckpt)}, {steps} solver step(s), window {window}"
        if dit.config.memory:
            name += f" (the cached step also attends to {dit.config.memory} memory chunks)"
        rows += [{"name": f"step with KV cache, {name}", "unit": "ms", "median": c, "runs": cached, "target": 0},
                 {"name": f"step recomputing the window, {name}", "unit": "ms", "median": r, "runs": recomputed,
                  "target": 0},
                 {"name": f"recompute / cached, {steps} solver step(s)", "unit": "ratio", "median": r / c,
                  "runs": [r / c], "target": 0}]
    return rows


def bench_flops(args: DreamBenchArgs) -> list[dict]:
    """Achieved FLOP/s of a cached step (FLOPs counted by torch's FlopCounterMode, over the median step time) against
    the FLOP/s of a large fp32 matmul measured in the same run: how close a step comes to this machine's limit. Beside
    it, the same matmul in bf16: CPUs with native bf16 (avx512_bf16, amx_bf16) run it several times faster, and
    training uses it there (`loop.precision=auto`); others emulate it, slower than fp32."""
    import multiprocessing

    import torch

    from worldsim.simulator import WorldSimulator

    n = 1024
    roof, half = (_matmul_rate(n, dtype, args.repeats) for dtype in (torch.float32, torch.bfloat16))
    with tempfile.TemporaryDirectory(prefix="worldsim-bench-") as tmp:
        ckpt = dream_checkpoint(args, tmp)
        sim = WorldSimulator.from_checkpoint(ckpt, device="cpu", seed=args.seed)  # its default solver steps
        # Counted in a child process: after FlopCounterMode, torch 2.13 on CPU runs every op ~7 ms slower for the
        # rest of the process (seen with the profiler), which would spoil every timing after this one.
        with multiprocessing.get_context("spawn").Pool(1) as pool:
            flops = pool.apply(count_step_flops, (ckpt, args.seed))
    sim.reset(_full_window(sim))
    times = [statistics.median(_timed_steps(lambda: sim.step([0]), args.step_calls)) for _ in range(args.repeats)]
    ms = statistics.median(times)
    achieved = flops / (ms / 1000) / 1e9
    peak, peak_bf16 = statistics.median(roof), statistics.median(half)
    return [{"name": f"fp32 matmul {n}x{n} (the roofline)", "unit": "GFLOP/s", "median": peak, "runs": roof,
             "target": 0},
            {"name": f"bf16 matmul {n}x{n}", "unit": "GFLOP/s", "median": peak_bf16, "runs": half, "target": 0},
            {"name": "bf16 / fp32 matmul", "unit": "x", "median": peak_bf16 / peak, "runs": [peak_bf16 / peak],
             "target": 0},
            {"name": f"Dream step, {sim.denoise_steps} solver step(s): {flops / 1e6:.1f} MFLOP in {ms:.1f} ms",
             "unit": "GFLOP/s", "median": achieved, "runs": [achieved], "target": 0},
            {"name": "Dream step / roofline", "unit": "%", "median": 100 * achieved / peak,
             "runs": [100 * achieved / peak], "target": 0}]


def _matmul_rate(n: int, dtype, repeats: int) -> list[float]:
    """GFLOP/s of an (n x n) @ (n x n) matmul in `dtype`, one figure per repeat of 10 calls (after a warm-up)."""
    import torch

    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    torch.matmul(a, b)  # warm-up
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(10):
            torch.matmul(a, b)
        rates.append(10 * 2 * n ** 3 / (time.perf_counter() - start) / 1e9)
    return rates


def count_step_flops(checkpoint: str, seed: int) -> int:
    """FLOPs of one cached step of `checkpoint` at its default solver steps, from a history that fills its window (and
    its strided memory, if it has one)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

    from worldsim.simulator import WorldSimulator

    sim = WorldSimulator.from_checkpoint(checkpoint, device="cpu", seed=seed)
    sim.reset(_full_window(sim))
    # torch's counter knows the GPU kernels of scaled_dot_product_attention, not the CPU one (it counts 0): count
    # attention as they are counted (QK^T and AV over every key, masked ones too: the kernel computes them)
    cpu_sdpa = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
    counter = FlopCounterMode(display=False, custom_mapping={
        cpu_sdpa: lambda q, k, v, *args, out_shape=None, **kwargs: sdpa_flop_count(q, k, v)})  # shapes (B, nh, N, hs)
    with counter:
        sim.step([0])
    return int(counter.get_total_flops())


def _rss_mib() -> float:
    """Current resident memory of this process (Linux /proc; peak RSS elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20
    except OSError:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_episode(args: DreamBenchArgs) -> list[dict]:
    """Step latency of one Dream-v0 episode around step 50 and around step 1000, and memory growth between them."""
    from worldsim.envs.dream import DreamEnv

    early, late = args.episode_steps
    with tempfile.TemporaryDirectory(prefix="worldsim-bench-") as tmp:
        ckpt = dream_checkpoint(args, tmp)
        env = DreamEnv(checkpoint=ckpt, device="cpu")
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
    label = _label(args, ckpt)
    return [{"name": f"dream step {n} of an episode, {label}", "unit": "ms", "median": at[n],
             "runs": times[n - 11:n + 10], "target": 50} for n in (early, late)] + [
        {"name": f"step {late} / step {early} latency", "unit": "ratio", "median": at[late] / at[early],
         "runs": [at[late] / at[early]], "target": 0},
        {"name": f"resident memory growth, step {early} to {late}", "unit": "MiB", "median": rss[late] - rss[early],
         "runs": [rss[late] - rss[early]], "target": 0}]


def bench_vector(args: DreamBenchArgs) -> list[dict]:
    """Env-steps/s of make_vec("worldsim/Dream-v0"): the native batched env against SyncVectorEnv of single envs."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="worldsim-bench-") as tmp:
        ckpt = dream_checkpoint(args, tmp)
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
