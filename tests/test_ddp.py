"""Training on 2 processes (torchrun, gloo on CPU) is training on one: the same global batch and seed give the same
weights, a rank killed with SIGKILL resumes with the same command to the uninterrupted run's weights, and a run whose
ranks would disagree (a batch that does not split evenly, other settings) is refused with a message saying why."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from worldsim.cli import main

from conftest import random_craft2d

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]

# A regression toy, as tests/test_train_loop.py's, run by the loop in this script's process (one process, or one rank
# of torchrun's). argv: run directory, global batch rows, steps, then options: slow (sleep after each save, so a kill
# lands mid-run), differ (rank 1 gets another setting), other-data (rank 1 another data fingerprint), compile
# (loop.compile: torch.compile over the DDP-wrapped model).
TOY = textwrap.dedent("""
    import os, sys, time
    import numpy as np, torch
    import worldsim.train.loop as loop
    from worldsim.train import dist
    from worldsim.train.loop import LoopConfig, OptimConfig, Task, train

    out, rows, steps, *options = sys.argv[1:]
    rows, steps = int(rows), int(steps)
    if "slow" in options:
        save = loop.save_run
        loop.save_run = lambda *a, **k: (save(*a, **k), time.sleep(0.2))
    with dist.process_group():
        os.makedirs(out, exist_ok=True)
        open(os.path.join(out, f"pid.{dist.rank()}"), "w").write(str(os.getpid()))
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.SiLU(), torch.nn.Linear(16, 1))
        target = torch.nn.Linear(4, 1)

        def loss(m, x, gen, rows):
            noise = torch.randn(x.shape[0], 1, generator=gen)[rows] * 0.1  # drawn for the global batch
            x = x[rows]
            out = torch.nn.functional.mse_loss(m(x), target(x).detach() + noise)
            return out, {"loss": out.item()}

        other = dist.rank() == 1
        batch = lambda r: torch.from_numpy(r.standard_normal((rows, 4)).astype("float32"))  # the global batch
        task = Task(name="toy", model=model, batch=batch, loss=loss, evaluate=lambda m: {}, export=lambda ema, final: {f"toy.{k}": v for k, v in ema.items()},
                    metadata={"config": {"width": 17 if "differ" in options and other else 16, "rows": rows}},
                    data_id="b" if "other-data" in options and other else "a")
        # fp32: bf16 sums a half batch in another order than a whole one, and keeps ~3 digits of the difference
        train(task, OptimConfig(steps=steps, lr=1e-2, warmup=2), LoopConfig(out=out, eval_every=0, log_every=1,
              save_every_s=0 if "slow" in options else 1e9, precision="fp32", compile="compile" in options),
              torch.device("cpu"), quiet=True)
""")


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ddp") / "toy.py"
    path.write_text(TOY)
    return path


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    return {**env, "OMP_NUM_THREADS": "1"}


def _run(cmd: list[str], check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=300)
    if check:
        assert done.returncode == 0, done.stderr[-3000:]
    return done


def _state(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "last.state.safetensors"))


def _close(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], prefixes: tuple[str, ...], atol: float) -> None:
    names = [k for k in a if k.startswith(prefixes)]
    assert names and set(names) == {k for k in b if k.startswith(prefixes)}
    for k in names:
        torch.testing.assert_close(a[k], b[k], atol=atol, rtol=1e-4, msg=lambda m, k=k: f"{k}: {m}")


def _log(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


def _log_steps(run: Path) -> list[int]:
    """The steps of the training lines of a run's log (not its evaluations)."""
    return [line["step"] for line in _log(run) if "eval" not in line]


def test_two_nodes_rendezvous_as_the_readme_says_and_train_and_log_what_one_process_does(toy, tmp_path):
    # the README's two-machine command, both "machines" here: one torchrun per node, c10d rendezvous at node 0's
    # address, a process each
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    one, two = tmp_path / "one", tmp_path / "two"
    _run([sys.executable, str(toy), str(one), "8", "6"])
    nodes = [subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nnodes=2", f"--node_rank={rank}",
                               "--nproc_per_node=1", "--rdzv_backend=c10d", f"--rdzv_endpoint=127.0.0.1:{port}",
                               "--rdzv_id=readme", str(toy), str(two), "8", "6"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
             for rank in (0, 1)]
    for node in nodes:
        _, err = node.communicate(timeout=300)
        assert node.returncode == 0, err[-3000:]
    _close(_state(one), _state(two), ("train.", "ema."), atol=1e-6)
    assert _log_steps(two) == list(range(1, 7))  # rank 0 alone writes the log
    logged = [line["loss"] for line in _log(one) if "eval" not in line]
    # the global batch's loss is logged, not rank 0's half
    assert [line["loss"] for line in _log(two) if "eval" not in line] == pytest.approx(logged, rel=1e-5)


def test_two_compiled_processes_train_the_weights_one_process_trains(toy, tmp_path):
    # loop.compile=true under DDP: torch.compile wraps the DistributedDataParallel module, whose gradient buckets
    # (DDPOptimizer) must still average the two halves of the batch as one process's whole batch
    one, two = tmp_path / "one", tmp_path / "two"
    _run([sys.executable, str(toy), str(one), "8", "6"])
    _run([*TORCHRUN, str(toy), str(two), "8", "6", "compile"])
    _close(_state(one), _state(two), ("train.", "ema."), atol=1e-5)


def _pid(run: Path, rank: int) -> int | None:
    try:
        return int((run / f"pid.{rank}").read_text())
    except (FileNotFoundError, ValueError):
        return None


def test_a_rank_killed_with_sigkill_resumes_with_the_same_command_to_the_same_weights(toy, tmp_path):
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    _run([sys.executable, str(toy), str(reference), "8", "16"])  # uninterrupted, one process: the weights to reach
    cmd = [*TORCHRUN, str(toy), str(killed), "8", "16", "slow"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=_env())
    deadline = time.monotonic() + 120
    while (not (killed / "log.jsonl").exists() or len(_log_steps(killed)) < 5) and proc.poll() is None \
            and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, f"the run ended before it could be killed: {proc.stderr.read().decode()[-2000:]}"
    os.kill(_pid(killed, 1), signal.SIGKILL)  # rank 1; torchrun then stops rank 0
    assert proc.wait(timeout=120) != 0
    stopped_at = _log_steps(killed)[-1]
    assert 5 <= stopped_at < 16

    _run(cmd)  # the same command
    assert _log_steps(killed) == list(range(1, 17))  # one run: no step logged twice, none missing
    _close(_state(reference), _state(killed), ("train.", "ema.", "opt."), atol=1e-6)


def test_a_global_batch_that_does_not_split_among_the_processes_is_refused(toy, tmp_path):
    done = _run([*TORCHRUN, str(toy), str(tmp_path / "run"), "5", "4"], check=False)
    assert done.returncode != 0
    assert "batch_size=5: the global batch (all processes together) must divide evenly among the 2 processes" \
        in done.stderr


@pytest.mark.parametrize("option, said", [("differ", "width=16 on rank 0, 17 on rank 1"),
                                          ("other-data", "training data='a' on rank 0, 'b' on rank 1")])
def test_ranks_with_other_settings_or_other_data_are_refused_naming_the_difference(toy, tmp_path, option, said):
    run = tmp_path / "run"
    done = _run([*TORCHRUN, str(toy), str(run), "8", "4", option], check=False)
    assert done.returncode != 0
    assert f"the 2 processes of this run disagree: {said}" in done.stderr
    assert not (run / "log.jsonl").exists()  # refused before anything was written


# ---- the real tasks, through the CLI -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return random_craft2d(tmp_path_factory.mktemp("ddp_cli") / "data", 600, max_episode_steps=60, shard_steps=300)


def test_the_world_model_trains_on_two_processes_as_on_one(data, tmp_path):
    ae = tmp_path / "ae"
    ae_args = [f"data={data}", "model.width=8", "batch_size=4", "eval_frames=8", "stats_frames=32", "holdout=0.3",
               "optim.steps=4", "optim.warmup=2", "loop.eval_every=0", "loop.log_every=1", f"loop.out={ae}"]
    _run([*TORCHRUN, "-m", "worldsim.train", "ae", *ae_args])  # the autoencoder's path runs under torchrun too
    assert [line["step"] for line in _log(ae)] == [1, 2, 3, 4, 4]  # rank 0's lines only (the last: its evaluation)
    world = ["world", f"data={data}", f"ae={ae / 'last.safetensors'}", "dit.width=24", "dit.depth=1",
             "dit.heads=2", "dit.context=4", "clip_len=4", "batch_size=4", "eval_clips=1", "eval_context=2",
             "horizons=[1,2]", "holdout=0.3", "optim.steps=6", "optim.warmup=2", "loop.eval_every=0",
             "loop.precision=fp32"]
    # two processes first: rank 0 encodes the latent cache while rank 1 waits
    _run([*TORCHRUN, "-m", "worldsim.train", *world, f"loop.out={tmp_path / 'two'}"])
    assert main(["train", *world, f"loop.out={tmp_path / 'one'}"]) == 0
    _close(_state(tmp_path / "one"), _state(tmp_path / "two"), ("train.", "ema."), atol=1e-5)
