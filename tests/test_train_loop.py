"""The shared training loop: resume gives exactly the uninterrupted run; a changed config is refused."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys

import pytest
import torch

from worldsim.checkpoint import CheckpointError, component, load_checkpoint
from worldsim.train.loop import LoopConfig, NonFiniteLoss, OptimConfig, Task, lr_factor, train
from worldsim.train.state import RunInUse

CPU = torch.device("cpu")


def _task(seed: int = 0, bad_at: int = 0, bad: str = "loss", global_noise: bool = False) -> Task:
    """A regression toy; `bad_at`: the step whose loss (or gradient) is NaN; `global_noise`: its loss draws from
    torch's global RNG, as the autoencoder's does, rather than from the loop's generator."""
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.SiLU(), torch.nn.Linear(16, 1))
    target = torch.nn.Linear(4, 1)
    torch.nn.init.constant_(target.weight, 0.5)
    torch.nn.init.constant_(target.bias, -0.25)

    def batch(rng):
        return torch.from_numpy(rng.standard_normal((8, 4)).astype("float32"))

    calls = [0]

    def loss(m, x, gen, rows):
        calls[0] += 1
        noise = torch.randn(x.shape[0], 1, generator=None if global_noise else gen) * 0.01  # gen: restored on resume
        x, noise = x[rows], noise[rows]  # the rows of this process (all of them here), the noise drawn for all
        out = torch.nn.functional.mse_loss(m(x), target(x).detach() + noise)
        if calls[0] == bad_at and bad == "loss":
            out = out * math.nan
        if calls[0] == bad_at and bad == "gradient":
            out = out + (m(x) * 0).abs().sqrt().sum()  # adds 0 to the loss and NaN to the gradient (0 * d sqrt at 0)
        return out, {"loss": out.item()}

    return Task(name="toy", model=model, batch=batch, loss=loss, evaluate=lambda m: {"w0": float(m[0].weight[0, 0])},
                export=lambda ema, final: {f"toy.{k}": v for k, v in ema.items()},
                metadata={"config": {"optim": {"steps": 60}, "width": 16}}, tokens_per_batch=8)


def _log(run) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


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



@pytest.mark.parametrize("now, refused", [(0.0, None), (0.5, r"noise\.prob=0\.0 \(now 0\.5\)")])
def test_a_setting_added_since_the_run_started_resumes_only_at_its_default(tmp_path, now, refused):
    """A run saved before `noise.prob` existed continues where the setting keeps its default (the code's behaviour
    before it), and is refused where it is set to anything else."""
    run = tmp_path / "run"
    train(_task(), OptimConfig(steps=10, warmup=2), LoopConfig(out=str(run), stop_after=5), CPU, quiet=True)
    later = _task()
    later.metadata["config"]["noise"] = {"prob": now}  # nested: a section's new key, as diffusion.noise_prob was
    later.defaults = {"optim": {"steps": 1}, "width": 8, "noise": {"prob": 0.0}}  # only the added key's default counts
    if refused:
        with pytest.raises(ValueError, match=refused):
            train(later, OptimConfig(steps=10, warmup=2), LoopConfig(out=str(run)), CPU, quiet=True)
    else:
        train(later, OptimConfig(steps=10, warmup=2), LoopConfig(out=str(run)), CPU, quiet=True)
        assert _weights(run)[2]["step"] == 10

def test_lr_warms_up_then_decays_to_the_floor():
    cfg = OptimConfig(steps=100, lr=1.0, warmup=10, min_lr_ratio=0.1)
    assert lr_factor(0, cfg) == pytest.approx(0.1) and lr_factor(9, cfg) == pytest.approx(1.0)
    assert lr_factor(10, cfg) == pytest.approx(1.0) and lr_factor(100, cfg) == pytest.approx(0.1)
    assert lr_factor(55, cfg) == pytest.approx(0.55)


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


# ---- settings refused at construction, naming the key --------------------------------------------------------------
WORLD_BAD = ["optim.steps=-1", "optim.steps=0", "optim.ema=1.5", "optim.ema=1.0", "optim.grad_clip=0",
             "optim.warmup=-5", "optim.warmup=20001", "optim.lr=0", "optim.lr=-1e-3", "optim.lr=nan",
             "optim.min_lr_ratio=1.5", "optim.weight_decay=-0.1", "loop.log_every=0", "loop.eval_every=-1",
             "loop.save_every_s=-1", "loop.seed=-1", "loop.stop_after=-1", "loop.device=tpu", "loop.out=",
             "batch_size=0", "eval_clips=0", "horizons=[]", "horizons=[0]", "horizons=[1,-8]", "eval_context=0",
             "holdout=0", "holdout=1", "clip_len=0", "clip_len=8", "model=XL", "dit.context=0", "dit.n_actions=5",
             "dit.widht=64", "eval_denoise_steps=[0]", "start_noise_prob=0.95", "start_noise_prob=-0.1",
             "freeze_text=true"]
AE_BAD = ["optim.steps=0", "optim.ema=1.5", "loop.log_every=0", "batch_size=0", "eval_frames=0", "stats_frames=0",
          "holdout=0", "holdout=1.5", "freeze_encoder=true"]


@pytest.mark.parametrize("override", WORLD_BAD)
def test_a_bad_world_setting_is_refused_naming_its_key(override):
    from worldsim.config import parse_overrides
    from worldsim.train.world import TrainWorldConfig

    key = override.split("=")[0]
    named = "dit=" if key.startswith("dit.") else f"{key}="  # a DiT field is named with the overrides it is in
    with pytest.raises(ValueError, match=re.escape(named)):
        parse_overrides(TrainWorldConfig, ["data=d", "ae=a", override], "train_world")


@pytest.mark.parametrize("override", AE_BAD)
def test_a_bad_autoencoder_setting_is_refused_naming_its_key(override):
    from worldsim.config import parse_overrides
    from worldsim.train.autoencoder import TrainAEConfig

    with pytest.raises(ValueError, match=re.escape(override.split("=")[0] + "=")):
        parse_overrides(TrainAEConfig, ["data=d", override], "train_ae")


def test_the_defaults_and_edge_values_are_accepted():
    from worldsim.train.autoencoder import TrainAEConfig
    from worldsim.train.world import TrainWorldConfig

    TrainAEConfig(data="d")
    TrainWorldConfig(data="d", ae="a", clip_len=4, dit={"context": 4}, horizons=[1])
    OptimConfig(steps=1, warmup=1, ema=0.0, min_lr_ratio=1.0, grad_clip=math.inf, weight_decay=0.0)
    LoopConfig(save_every_s=0, eval_every=0, seed=0)


# ---- what the loop does ------------------------------------------------------------------------------------------
def test_the_logged_lr_follows_the_schedule_also_when_a_resumed_run_is_made_longer(tmp_path):
    run, short, longer = tmp_path / "run", OptimConfig(steps=20, lr=1e-2, warmup=5), OptimConfig(steps=40, lr=1e-2,
                                                                                                   warmup=5)
    train(_task(), short, LoopConfig(out=str(run), eval_every=0, log_every=1, stop_after=10), CPU, quiet=True)
    train(_task(), longer, LoopConfig(out=str(run), eval_every=0, log_every=1), CPU, quiet=True)
    lines = [r for r in _log(run) if "eval" not in r]
    assert [r["step"] for r in lines] == list(range(1, 41))
    for r in lines:  # steps 1-10 on the 20-step schedule, then the 40-step one: the lr of step s is lr_factor(s - 1)
        cfg = short if r["step"] <= 10 else longer
        assert r["lr"] == pytest.approx(cfg.lr * lr_factor(r["step"] - 1, cfg), rel=1e-6), r["step"]


def test_a_non_finite_loss_stops_the_run_naming_the_step_and_keeps_the_last_save(tmp_path):
    run = tmp_path / "run"
    with pytest.raises(NonFiniteLoss, match=r"step 7: the loss is nan.*last save, of step 6.*optim.lr"):
        train(_task(bad_at=7), OptimConfig(steps=20, lr=1e-2, warmup=2), LoopConfig(out=str(run), save_every_s=0,
                                                                                     eval_every=0), CPU, quiet=True)
    live, ema, meta = _weights(run)
    assert meta["step"] == 6 and all(torch.isfinite(t).all() for t in [*live.values(), *ema.values()])


def test_a_non_finite_gradient_stops_the_run_before_it_changes_the_weights(tmp_path):
    run = tmp_path / "run"
    with pytest.raises(NonFiniteLoss, match=r"step 4: the gradient norm is nan.*nothing was saved"):
        train(_task(bad_at=4, bad="gradient"), OptimConfig(steps=20, lr=1e-2, warmup=2), LoopConfig(out=str(run)),
              CPU, quiet=True)
    assert not (run / "last.safetensors").exists()


def test_weights_that_are_not_finite_are_never_saved(tmp_path):
    run, task = tmp_path / "run", _task()
    task.model.register_parameter("spare", torch.nn.Parameter(torch.zeros(2)))  # in no loss: no gradient
    loss, calls = task.loss, [0]

    def corrupting(m, x, gen, rows):  # the loss and the gradient stay finite; a weight does not
        calls[0] += 1
        if calls[0] == 4:
            with torch.no_grad():
                m.spare[0] = math.inf
        return loss(m, x, gen, rows)

    task.loss = corrupting
    with pytest.raises(NonFiniteLoss, match=r"step 4: weight spare holds NaN or infinity, so this step is not saved.*"
                                            r"last save, of step 3"):
        train(task, OptimConfig(steps=20, warmup=2), LoopConfig(out=str(run), save_every_s=0, log_every=1), CPU,
              quiet=True)
    assert _weights(run)[2]["step"] == 3


def test_a_second_process_on_the_same_run_directory_is_refused_naming_the_holder(tmp_path):
    run = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom pathlib import Path\n"
                               "from worldsim.train.state import lock_run\n"
                               f"with lock_run(Path({str(run)!r})):\n    print('locked', flush=True)\n"
                               "    time.sleep(600)\n"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunInUse, match=rf"{re.escape(str(run))} is being trained by another process \(pid "
                                           rf"{holder.pid}"):
            train(_task(), OptimConfig(steps=10, warmup=2), LoopConfig(out=str(run)), CPU, quiet=True)
        assert not (run / "log.jsonl").exists()  # the refused process wrote nothing
    finally:
        holder.kill()  # SIGKILL: no clean-up runs, and the OS drops the lock all the same
        holder.wait()
    train(_task(), OptimConfig(steps=10, warmup=2), LoopConfig(out=str(run)), CPU, quiet=True)
    assert _weights(run)[2]["step"] == 10


def test_a_fresh_run_starts_a_fresh_log(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    # what a run killed before its first save leaves: log lines, no state
    (run / "log.jsonl").write_text("".join(json.dumps({"step": s, "loss": 1.0}) + "\n" for s in range(1, 40)))
    train(_task(), OptimConfig(steps=20, warmup=2), LoopConfig(out=str(run), log_every=10, eval_every=0), CPU,
          quiet=True)
    assert [(r["step"], "eval" in r) for r in _log(run)] == [(10, False), (20, False), (20, True)]


def test_saving_and_evaluating_do_not_change_the_weights(tmp_path):
    """A task whose export and evaluation draw from torch's global RNG (as building a module does) while its loss
    draws from it too: saves every step and no save before the end give the same run."""
    optim = OptimConfig(steps=12, lr=1e-2, warmup=2)
    for name, save_every_s in (("every", 0.0), ("end", math.inf)):
        task = _task(global_noise=True)
        export, evaluate = task.export, task.evaluate
        task.export = lambda ema, final, f=export: (torch.randn(100), f(ema, final))[1]
        task.evaluate = lambda m, f=evaluate: (torch.randn(100), f(m))[1]
        train(task, optim, LoopConfig(out=str(tmp_path / name), eval_every=3, save_every_s=save_every_s), CPU,
              quiet=True)
    a, b = _weights(tmp_path / "every"), _weights(tmp_path / "end")
    assert all(torch.equal(a[0][k], b[0][k]) for k in a[0]) and all(torch.equal(a[1][k], b[1][k]) for k in a[1])


def test_the_plan_the_estimate_and_each_evaluation_are_printed(tmp_path, capsys):
    run = tmp_path / "run"
    evals = train(_task(), OptimConfig(steps=30, lr=1e-2, warmup=2),
                  LoopConfig(out=str(run), eval_every=15, precision="fp32"), CPU)
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"train toy in {run}: 30 steps planned, to step 30 of optim.steps=30, fp32 on cpu"
    assert re.fullmatch(r"train toy: ~0:00:\d\d for the 19 steps to step 30 at [\d,.]+ steps/s \(timed over steps "
                        r"2-11; evaluations and saves come on top\)", out[1])
    logged = [r["eval"] for r in _log(run) if "eval" in r]
    assert [line.split(":", 1)[1] for line in out[2:]] == [f" w0 {e['w0']:.4g}" for e in logged]
    assert evals == logged[-1]
    train(_task(), OptimConfig(steps=30, lr=1e-2, warmup=2), LoopConfig(out=str(run)), CPU)
    assert "nothing to train (raise optim.steps" in capsys.readouterr().out


def test_a_state_saved_before_the_scheduler_and_averaged_model_resumes_as_the_run_would_have(tmp_path):
    from worldsim.checkpoint import save_checkpoint

    optim = OptimConfig(steps=20, lr=1e-2, warmup=5)
    train(_task(), optim, LoopConfig(out=str(tmp_path / "straight"), eval_every=0), CPU, quiet=True)
    old = tmp_path / "old"
    train(_task(), optim, LoopConfig(out=str(old), eval_every=0, stop_after=10), CPU, quiet=True)
    # the earlier layout: ema.<name> (no module. prefix, no n_averaged), param groups without initial_lr
    tensors, meta = load_checkpoint(old / "last.state.safetensors")
    tensors = {k.replace("ema.module.", "ema."): v for k, v in tensors.items() if k != "ema.n_averaged"}
    groups = [{k: v for k, v in g.items() if k != "initial_lr"} for g in meta["param_groups"]]
    save_checkpoint(old / "last.state.safetensors", tensors, config=meta["config"], step=meta["step"],
                    param_groups=groups, sampler_rng=meta["sampler_rng"])
    train(_task(), optim, LoopConfig(out=str(old), eval_every=0), CPU, quiet=True)
    a, b = _weights(tmp_path / "straight"), _weights(old)
    assert all(torch.equal(a[0][k], b[0][k]) for k in a[0]) and all(torch.equal(a[1][k], b[1][k]) for k in a[1])


@pytest.mark.parametrize("precision, autocast_dtype", [("fp32", None), ("bf16", torch.bfloat16)])
def test_precision_chooses_what_the_forward_runs_in(tmp_path, precision, autocast_dtype):
    task, seen = _task(), []
    inner = task.loss

    def loss(m, x, gen, rows):
        on = torch.is_autocast_enabled("cpu")
        seen.append(torch.get_autocast_dtype("cpu") if on else None)
        return inner(m, x, gen, rows)

    task.loss = loss
    train(task, OptimConfig(steps=3, warmup=1), LoopConfig(out=str(tmp_path), precision=precision), CPU, quiet=True)
    assert seen == [autocast_dtype] * 3


def test_auto_precision_is_bf16_exactly_where_the_device_has_it_natively():
    from worldsim.device import native_bf16, resolve_precision

    assert resolve_precision("auto", CPU) == ("bf16" if native_bf16(CPU) else "fp32")
    assert resolve_precision("fp32", CPU) == "fp32" and resolve_precision("bf16", CPU) == "bf16"
    with pytest.raises(ValueError, match=r"loop.precision='fp16': expected one of \('auto', 'fp32', 'bf16'\)"):
        LoopConfig(precision="fp16")
