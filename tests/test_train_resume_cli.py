"""`kill -9` in the middle of `worldsim train world` or `train ae`, then the same command: it resumes from the last
checkpoint and finishes with the weights an uninterrupted run gets (one that never saved before its end), and its log
reads as one run. When a run saves or evaluates changes nothing about its weights."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from worldsim.cli import main

from conftest import random_craft2d

STEPS = 12


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return random_craft2d(tmp_path_factory.mktemp("resume") / "data", 600, max_episode_steps=60, shard_steps=300)


def _ae_args(data) -> list[str]:
    return ["train", "ae", f"data={data}", "model.width=8", "batch_size=4", "eval_frames=8", "stats_frames=32",
            "holdout=0.3", "optim.warmup=2"]


@pytest.fixture(scope="module")
def args(data, tmp_path_factory) -> dict[str, list[str]]:
    ae = tmp_path_factory.mktemp("resume") / "ae"
    assert main([*_ae_args(data), "optim.steps=4", f"loop.out={ae}", "loop.eval_every=0"]) == 0
    world = ["train", "world", f"data={data}", f"ae={ae / 'last.safetensors'}", "dit.width=24", "dit.depth=1",
             "dit.heads=2", "dit.context=4", "clip_len=4", "batch_size=2", "eval_clips=1", "eval_context=2",
             "horizons=[1,2]", "holdout=0.3", "optim.warmup=2", "loop.eval_every=0"]
    return {"world": [*world, f"optim.steps={STEPS}", "loop.log_every=1"],
            "ae": [*_ae_args(data), f"optim.steps={STEPS}", "loop.eval_every=0", "loop.log_every=1"]}


def _weights(run) -> dict[str, torch.Tensor]:
    return load_file(str(run / "last.safetensors"))


def _logged_step(run) -> int:
    try:
        return json.loads((run / "log.jsonl").read_text().splitlines()[-1])["step"]
    except (FileNotFoundError, IndexError, ValueError):
        return 0


@pytest.mark.parametrize("task", ["world", "ae"])
def test_kill_9_then_the_same_command_continues_the_same_run(args, task, tmp_path):
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    assert main([*args[task], f"loop.out={reference}", "loop.save_every_s=inf"]) == 0  # saves only at its end

    # A checkpoint every step (save_every_s=0), a slow-down so the kill lands mid-run, then SIGKILL: no clean-up runs
    cmd = [*args[task], f"loop.out={killed}", "loop.save_every_s=0"]
    code = ("import sys, time, worldsim.train.loop as loop\n"
            "step = loop.save_run\n"
            "loop.save_run = lambda *a, **k: (step(*a, **k), time.sleep(0.2))\n"
            "from worldsim.cli import main\nsys.exit(main(sys.argv[1:]))\n")
    # the same thread count as this process, so the same float sums as the reference run
    proc = subprocess.Popen([sys.executable, "-c", code, *cmd], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while _logged_step(killed) < 5 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, f"the run ended before it could be killed: {proc.stderr.read().decode()[-2000:]}"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    stopped_at = _logged_step(killed)
    assert 5 <= stopped_at < STEPS

    assert main(cmd) == 0  # the same command
    lines = [json.loads(line) for line in (killed / "log.jsonl").read_text().splitlines()]
    steps = [line["step"] for line in lines if "eval" not in line]
    assert steps == list(range(1, STEPS + 1))  # one run: no step logged twice, none missing
    ref, got = _weights(reference), _weights(killed)
    assert ref.keys() == got.keys()
    for name in ref:
        assert torch.equal(ref[name], got[name]), name


def test_autoencoder_weights_do_not_depend_on_when_it_saves(data, tmp_path):
    """Exporting an autoencoder builds one, which drew from the RNG the training loss's latent noise draws from: a
    run that saved every step ended with other weights than one that saved only at its end."""
    runs = {every: tmp_path / str(every) for every in ("0", "inf")}
    for every, run in runs.items():
        assert main([*_ae_args(data), "optim.steps=6", "loop.eval_every=2", f"loop.save_every_s={every}",
                     f"loop.out={run}"]) == 0
    a, b = (_weights(run) for run in runs.values())
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    states = [load_file(str(run / "last.state.safetensors")) for run in runs.values()]
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0] if k.startswith(("train.", "ema.")))
