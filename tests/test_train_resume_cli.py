"""`kill -9` in the middle of `worldsim train world`, then the same command: it resumes from the last checkpoint and
finishes with the weights an uninterrupted run gets, and its log reads as one run."""

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
from worldsim.data.collect import CollectConfig, collect

STEPS = 12


@pytest.fixture(scope="module")
def world_args(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    data, ae = root / "data", root / "ae"
    collect(CollectConfig(out=str(data), agent="random", steps=600, env_kwargs={"world_width": 64},
                          max_episode_steps=60, shard_steps=300), quiet=True)
    assert main(["train", "ae", f"data={data}", "optim.steps=4", "optim.warmup=1", "model.width=8", "batch_size=4",
                 "eval_frames=8", "stats_frames=32", "holdout=0.3", f"loop.out={ae}", "loop.eval_every=0"]) == 0
    return ["train", "world", f"data={data}", f"ae={ae / 'last.safetensors'}", "dit.width=24", "dit.depth=1",
            "dit.heads=2", "dit.context=4", "clip_len=4", "batch_size=2", "eval_clips=1", "eval_context=2",
            "horizons=[1,2]", "holdout=0.3", f"optim.steps={STEPS}", "optim.warmup=2", "loop.eval_every=0",
            "loop.log_every=1"]


def _weights(run) -> dict[str, torch.Tensor]:
    return load_file(str(run / "last.safetensors"))


def _logged_step(run) -> int:
    try:
        return json.loads((run / "log.jsonl").read_text().splitlines()[-1])["step"]
    except (FileNotFoundError, IndexError, ValueError):
        return 0


def test_kill_9_then_the_same_command_continues_the_same_run(world_args, tmp_path):
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    assert main([*world_args, f"loop.out={reference}"]) == 0

    # A checkpoint every step (save_every_s=0), a slow-down so the kill lands mid-run, then SIGKILL: no clean-up runs
    args = [*world_args, f"loop.out={killed}", "loop.save_every_s=0"]
    code = ("import sys, time, worldsim.train.loop as loop\n"
            "step = loop.save_run\n"
            "loop.save_run = lambda *a, **k: (step(*a, **k), time.sleep(0.2))\n"
            "from worldsim.cli import main\nsys.exit(main(sys.argv[1:]))\n")
    # the same thread count as this process, so the same float sums as the reference run
    proc = subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while _logged_step(killed) < 5 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, f"the run ended before it could be killed: {proc.stderr.read().decode()[-2000:]}"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    stopped_at = _logged_step(killed)
    assert 5 <= stopped_at < STEPS

    assert main(args) == 0  # the same command
    lines = [json.loads(line) for line in (killed / "log.jsonl").read_text().splitlines()]
    steps = [line["step"] for line in lines if "eval" not in line]
    assert steps == list(range(1, STEPS + 1))  # one run: no step logged twice, none missing
    ref, got = _weights(reference), _weights(killed)
    assert ref.keys() == got.keys()
    for name in ref:
        assert torch.equal(ref[name], got[name]), name
