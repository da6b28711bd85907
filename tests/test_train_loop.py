"""The shared training loop: resume gives exactly the uninterrupted run; a changed config is refused."""

from __future__ import annotations

import json

import pytest
import torch

from worldsim.checkpoint import CheckpointError, component, load_checkpoint
from worldsim.train.loop import LoopConfig, OptimConfig, Task, lr_at, train


def _task(seed: int = 0) -> Task:
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.SiLU(), torch.nn.Linear(16, 1))
    target = torch.nn.Linear(4, 1)
    torch.nn.init.constant_(target.weight, 0.5)
    torch.nn.init.constant_(target.bias, -0.25)

    def batch(rng):
        return torch.from_numpy(rng.standard_normal((8, 4)).astype("float32"))

    def loss(m, x, gen):
        noise = torch.randn(x.shape[0], 1, generator=gen) * 0.01  # the loop's generator: restored on resume
        out = torch.nn.functional.mse_loss(m(x), target(x).detach() + noise)
        return out, {"loss": out.item()}

    return Task(name="toy", model=model, batch=batch, loss=loss, evaluate=lambda m: {"w0": float(m[0].weight[0, 0])},
                export=lambda ema: {f"toy.{k}": v for k, v in ema.items()},
                metadata={"config": {"optim": {"steps": 60}, "width": 16}}, tokens_per_batch=8)


def _weights(run):
    tensors, meta = load_checkpoint(run / "last.safetensors")
    state, _ = load_checkpoint(run / "last.state.safetensors")
    assert not component(tensors, "train")  # the checkpoint people load carries no training state
    return component(state, "train"), component(tensors, "toy"), meta


def test_n_steps_then_resume_n_steps_equals_2n_steps(tmp_path):
    optim = OptimConfig(steps=60, lr=1e-2, warmup=5)
    train(_task(), optim, LoopConfig(out=str(tmp_path / "straight"), eval_every=0), torch.device("cpu"), quiet=True)
    split = tmp_path / "split"
    train(_task(), optim, LoopConfig(out=str(split), eval_every=0, stop_after=30), torch.device("cpu"), quiet=True)
    assert _weights(split)[2]["step"] == 30
    train(_task(seed=99), optim, LoopConfig(out=str(split), eval_every=0), torch.device("cpu"), quiet=True)
    a, b = _weights(tmp_path / "straight"), _weights(split)
    assert b[2]["step"] == 60
    for live_or_ema in (0, 1):
        for k in a[live_or_ema]:
            assert torch.equal(a[live_or_ema][k], b[live_or_ema][k]), k
    lines = [json.loads(line) for line in (split / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines if "eval" not in r] == [20, 30, 40, 60]  # 30: where the first run stopped


def test_training_reduces_the_loss_and_logs_it(tmp_path):
    run = tmp_path / "run"
    train(_task(), OptimConfig(steps=200, lr=1e-2, warmup=10), LoopConfig(out=str(run), eval_every=100, log_every=50),
          torch.device("cpu"), quiet=True)
    lines = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in lines if "loss" in r]
    assert losses[-1] < losses[0] / 10
    assert [r["step"] for r in lines if "eval" in r] == [100, 200]
    assert all(r["tokens_per_s"] > 0 for r in lines if "loss" in r)


def test_resuming_under_another_config_is_refused(tmp_path):
    run = tmp_path / "run"
    train(_task(), OptimConfig(steps=10, warmup=2), LoopConfig(out=str(run)), torch.device("cpu"), quiet=True)
    other = _task()
    other.metadata["config"]["width"] = 32
    with pytest.raises(ValueError, match=r"width=16 \(now 32\)"):
        train(other, OptimConfig(steps=20, warmup=2), LoopConfig(out=str(run)), torch.device("cpu"), quiet=True)


def test_lr_warms_up_then_decays_to_the_floor():
    cfg = OptimConfig(steps=100, lr=1.0, warmup=10, min_lr_ratio=0.1)
    assert lr_at(0, cfg) == pytest.approx(0.1) and lr_at(9, cfg) == pytest.approx(1.0)
    assert lr_at(10, cfg) == pytest.approx(1.0) and lr_at(100, cfg) == pytest.approx(0.1)
    assert lr_at(55, cfg) == pytest.approx(0.55)


def test_a_crash_between_the_state_and_the_checkpoint_loses_nothing(tmp_path, monkeypatch):
    import worldsim.train.state as state

    optim = OptimConfig(steps=60, lr=1e-2, warmup=5)
    train(_task(), optim, LoopConfig(out=str(tmp_path / "straight"), eval_every=0), torch.device("cpu"), quiet=True)
    run, real_save = tmp_path / "crashed", state.save_checkpoint

    def save_then_die(path, tensors, **meta):
        if path.name == state.WEIGHTS and meta["step"] == 40:
            raise KeyboardInterrupt  # killed after the state of step 40 was written, before its checkpoint
        return real_save(path, tensors, **meta)

    monkeypatch.setattr(state, "save_checkpoint", save_then_die)
    train(_task(), optim, LoopConfig(out=str(run), eval_every=0, stop_after=20), torch.device("cpu"), quiet=True)
    with pytest.raises(KeyboardInterrupt):
        train(_task(), optim, LoopConfig(out=str(run), eval_every=0, stop_after=20), torch.device("cpu"), quiet=True)
    assert _weights(run)[2]["step"] == 20  # the checkpoint is a save behind the state
    monkeypatch.setattr(state, "save_checkpoint", real_save)
    train(_task(seed=99), optim, LoopConfig(out=str(run), eval_every=0), torch.device("cpu"), quiet=True)
    a, b = _weights(tmp_path / "straight"), _weights(run)
    for live_or_ema in (0, 1):
        for k in a[live_or_ema]:
            assert torch.equal(a[live_or_ema][k], b[live_or_ema][k]), k


def test_a_checkpoint_without_its_training_state_is_not_resumed(tmp_path):
    run = tmp_path / "run"
    train(_task(), OptimConfig(steps=10, warmup=2), LoopConfig(out=str(run)), torch.device("cpu"), quiet=True)
    (run / "last.state.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"no last.state.safetensors.*choose another loop.out"):
        train(_task(), OptimConfig(steps=20, warmup=2), LoopConfig(out=str(run)), torch.device("cpu"), quiet=True)
