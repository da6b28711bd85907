"""Collecting on 2 processes (torchrun, gloo on CPU) is collecting with one process and twice the workers: the same
shards, byte for byte, and the same manifest; a rank killed with SIGKILL, or a shard deleted, comes back with the same
command to that dataset; agent=human, and ranks given other settings, are refused with a message saying why."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from worldsim.data.collect import CollectConfig, collect
from worldsim.data.shards import open_dataset, shard_paths

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
ENTRY = ["-m", "worldsim.data", "collect"]
# Craft2D in a narrow world, short episodes, small shards: each worker writes 8 shards of ~100 frames in 2-4 s
ARGS = ["agent=random", "steps=1600", "shard_steps=100", "env_kwargs.world_width=64", "max_episode_steps=50"]

# torchrun's script for a rank that records its pid (to be killed), or is given another setting on rank 1; otherwise
# `python -m worldsim.data collect`. argv: a directory for the pid files, an option (plain, differ), the settings.
RANK = textwrap.dedent("""
    import os, sys
    from worldsim.data.__main__ import main

    if __name__ == "__main__":  # (the workers' spawned processes import this file too)
        pids, option, *args = sys.argv[1:]
        rank = os.environ["RANK"]
        open(os.path.join(pids, f"pid.{rank}"), "w").write(str(os.getpid()))
        sys.exit(main(["collect", *args] + (["seed=1"] if option == "differ" and rank == "1" else [])))
""")


@pytest.fixture(scope="module")
def rank_script(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("collect_ddp") / "rank.py"
    path.write_text(RANK)
    return path


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The dataset one process with workers=2 writes."""
    from worldsim.config import parse_overrides

    out = tmp_path_factory.mktemp("collect_ddp") / "reference"
    collect(parse_overrides(CollectConfig, [f"out={out}", "workers=2", *ARGS]), quiet=True)
    return out


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    return {**env, "OMP_NUM_THREADS": "1", **extra}


def _processes_with(marker: str) -> list[int]:
    """The live processes whose environment holds `marker`: those of one run (torchrun, its ranks, their workers)."""
    pids = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if marker.encode() in (proc / "environ").read_bytes():  # (empty for a zombie)
                pids.append(int(proc.name))
        except OSError:  # gone, or not ours to read
            pass
    return pids


def _run(cmd: list[str], check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=300)
    if check:
        assert done.returncode == 0, done.stderr[-3000:]
    return done


def assert_same_dataset(a: Path, b: Path) -> None:
    """The same manifest and shards: every shard's meta.json (episodes, seeds, checksums) and every array, row for
    row; and each loads as a complete dataset."""
    assert (a / "manifest.json").read_text() == (b / "manifest.json").read_text()
    assert [p.name for p in shard_paths(a)] == [p.name for p in shard_paths(b)]
    (_, shards_a), (_, shards_b) = open_dataset(a), open_dataset(b)
    for sa, sb in zip(shards_a, shards_b):
        assert sa.meta == sb.meta, f"{sa.path.name}: meta.json differs"
        assert sa.captions() == sb.captions(), f"{sa.path.name}: captions differ"
        assert sorted(sa.arrays) == sorted(sb.arrays)
        for name in sa.arrays:
            assert np.array_equal(sa.arrays[name], sb.arrays[name]), f"{sa.path.name}: {name} differ"


def test_two_processes_write_the_dataset_of_one_process_with_twice_the_workers(reference, tmp_path):
    out = tmp_path / "two"
    done = _run([*TORCHRUN, *ENTRY, f"out={out}", "workers=1", *ARGS])
    assert_same_dataset(reference, out)
    assert '"workers": 2' in (out / "manifest.json").read_text()  # the dataset's workers: every rank's
    assert done.stdout.count("workers: 2") == 1 and done.stdout.count("frames ") == 1  # rank 0 alone prints
    assert (out / "summary.json").exists() and (out / "shards.json").exists()


def test_torchrun_continues_a_dataset_of_one_process_restoring_a_deleted_shard(reference, tmp_path):
    out = tmp_path / "ds"
    shutil.copytree(reference, out)
    shutil.rmtree(out / "shard-w01-00003")  # rank 1's (worker 1), from the middle
    _run([*TORCHRUN, *ENTRY, f"out={out}", "workers=1", *ARGS])
    assert_same_dataset(reference, out)


def _kill_mid_run(cmd: list[str], out: Path, pid: Callable[[subprocess.Popen], int], tag: Path) -> None:
    """Run `cmd`, SIGKILL the process `pid` names once worker 1 has written a shard, and wait for the run to end:
    then none of its processes may be left (tagged by `tag` in their environment). An orphaned worker would go on
    writing the shards that the same command, run again, restores."""
    marker = f"WORLDSIM_TEST_RUN={tag}"
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env=_env(WORLDSIM_TEST_RUN=str(tag)))
    try:
        deadline = time.monotonic() + 120
        while not (out / "shard-w01-00000").exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert proc.poll() is None, f"the run ended before it could be killed: {proc.stderr.read().decode()[-2000:]}"
        os.kill(pid(proc), signal.SIGKILL)
        assert proc.wait(timeout=120) != 0
        deadline = time.monotonic() + 2  # a worker's watch notices at once; its exit takes a moment
        while _processes_with(marker) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _processes_with(marker) == [], "a worker outlived the process that started it"
    finally:
        proc.kill()
        proc.communicate()
    assert not (out / "summary.json").exists()


def test_a_rank_killed_with_sigkill_resumes_with_the_same_command_to_the_same_dataset(reference, rank_script,
                                                                                        tmp_path):
    out, pids = tmp_path / "killed", tmp_path / "pids"
    pids.mkdir()
    cmd = [*TORCHRUN, str(rank_script), str(pids), "plain", f"out={out}", "workers=1", *ARGS]
    _kill_mid_run(cmd, out, lambda proc: int((pids / "pid.1").read_text()), pids)  # rank 1; torchrun stops rank 0
    assert 1 <= len(shard_paths(out)) < len(shard_paths(reference)), "the kill should land mid-run"

    _run([*TORCHRUN, *ENTRY, f"out={out}", "workers=1", *ARGS])  # the same command, through the module
    assert not list(out.glob(".shard-*"))  # what the kill left half-written is gone
    assert_same_dataset(reference, out)


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds a run's processes through /proc")
@pytest.mark.parametrize("launch", ["torchrun", "one process"])
def test_workers_die_with_the_process_that_started_them(rank_script, tmp_path, launch):
    out, pids = tmp_path / "ds", tmp_path / "pids"
    pids.mkdir()
    args = [f"out={out}", "workers=2", "agent=random", "steps=1000000", "env_kwargs.world_width=64"]
    if launch == "torchrun":  # rank 1 killed: torchrun stops the ranks still alive, not what rank 1 started
        _kill_mid_run([*TORCHRUN, str(rank_script), str(pids), "plain", *args], out,
                      lambda proc: int((pids / "pid.1").read_text()), pids)
    else:
        _kill_mid_run([sys.executable, "-m", "worldsim.cli", "collect", *args], out, lambda proc: proc.pid, pids)


@pytest.mark.parametrize("option, args, said", [
    ("plain", ["agent=human"], "agent=human under torchrun (2 processes): one person plays at one keyboard"),
    ("differ", ["agent=random"], "the 2 processes of this run disagree: seed=0 on rank 0, 1 on rank 1"),
])
def test_agent_human_or_ranks_with_other_settings_are_refused(rank_script, tmp_path, option, args, said):
    out = tmp_path / "ds"
    done = _run([*TORCHRUN, str(rank_script), str(tmp_path), option, f"out={out}", "steps=100",
                 "env_kwargs.world_width=64", *args], check=False)
    assert done.returncode != 0
    assert f"worldsim collect: error: {said}" in done.stderr
    assert not out.exists()  # refused before anything was written


def test_without_torchrun_the_module_is_worldsim_collect(tmp_path, capsys):
    from worldsim.cli import main as cli
    from worldsim.data.__main__ import main

    args = ["agent=random", "steps=120", "shard_steps=50", "env_kwargs.world_width=64", "max_episode_steps=30"]
    assert main(["collect", f"out={tmp_path / 'a'}", *args]) == 0
    assert cli(["collect", f"out={tmp_path / 'b'}", *args]) == 0
    assert_same_dataset(tmp_path / "a", tmp_path / "b")
    assert main([f"out={tmp_path / 'c'}", *args]) == 2  # the command's word first, as `python -m worldsim.train`
    assert "usage: python -m worldsim.data collect" in capsys.readouterr().err
