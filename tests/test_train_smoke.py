"""`worldsim train ae` then `worldsim train world` end to end with tiny configs, then the checkpoint steps."""

from __future__ import annotations

import json
import shutil

import numpy as np
import torch
import pytest

from worldsim.checkpoint import component, load_checkpoint
from worldsim.cli import main
from worldsim.data.loader import ClipDataset
from worldsim.simulator import WorldSimulator

from conftest import random_craft2d


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return random_craft2d(tmp_path_factory.mktemp("smoke") / "data", 1200, max_episode_steps=60, shard_steps=400)


def test_train_ae_then_world_then_step(data, tmp_path, capsys):
    ae_run, world_run = tmp_path / "ae", tmp_path / "world"
    assert main(["train", "ae", f"data={data}", "optim.steps=6", "optim.warmup=2", "model.width=8",
                 "batch_size=4", "eval_frames=8", "stats_frames=32", "holdout=0.3", f"loop.out={ae_run}",
                 "loop.eval_every=0"]) == 0
    assert (ae_run / "last.safetensors").exists()
    ae_eval = [json.loads(line) for line in (ae_run / "log.jsonl").read_text().splitlines()][-1]["eval"]
    out = capsys.readouterr().out  # the evaluation is printed, not only logged
    assert f"train ae in {ae_run}: 6 steps planned, to step 6 of optim.steps=6" in out
    assert (f"psnr {ae_eval['psnr']:.2f} dB, cells right {ae_eval['tile_accuracy']:.1%} on 8 held-out frames"
            in out)
    args = ["train", "world", f"data={data}", f"ae={ae_run / 'last.safetensors'}", "dit.width=24", "dit.depth=1",
            "dit.heads=2", "dit.context=4", "clip_len=4", "batch_size=2", "eval_clips=1", "eval_context=2",
            "horizons=[1,2]", "eval_denoise_steps=[1]", "holdout=0.3", "optim.steps=4", "optim.warmup=1",
            f"loop.out={world_run}", "loop.eval_every=0", "loop.stop_after=2"]
    assert main(args) == 0  # stops after 2 steps, as a killed run would have left it
    assert json.loads((world_run / "log.jsonl").read_text().splitlines()[-1])["step"] == 2
    capsys.readouterr()
    assert main(args[:-1]) == 0  # the same command (without the stop) resumes to the end
    evals = [json.loads(line) for line in (world_run / "log.jsonl").read_text().splitlines()]
    last = evals[-1]["eval"]
    assert last.keys() >= {"psnr_h1", "copy_psnr_h1", "tiles_h2", "copy_tiles_h2", "tiles_h2_s1", "psnr_h1_s1"}
    # the reward head classifies (the data pays 0 or 1): the dream plays held-out clips that pay, at its threshold
    assert last["dream_reward_events"] > 0 and 0 <= last["dream_reward_recall"] <= 1
    assert last["dream_false_per_100"] >= 0 and "dream_reward_recall_s1" not in last
    out = capsys.readouterr().out  # printed as a table: the model's figures beside copy-last-frame's, per horizon
    assert (f"reward head in the dream: {last['dream_reward_recall']:.0%} of {last['dream_reward_events']:.0f} "
            "held-out rewards paid") in out
    assert f"resuming {world_run} at step 2: 2 steps planned, to step 4 of optim.steps=4" in out
    table = out[out.index("eval at step 4"):].splitlines()
    assert table[1].split()[-2:] == ["h1", "h2"]
    assert table[2].split()[-2:] == [f"{last['psnr_h1']:.2f}", f"{last['psnr_h2']:.2f}"]
    assert "copy last frame" in table[4] and table[4].split()[-1] == f"{last['copy_psnr_h2']:.2f}"
    assert table[5].split()[-1] == f"{last['tiles_h2']:.1%}" and table[7].split()[-1] == f"{last['copy_tiles_h2']:.1%}"
    tensors, _ = load_checkpoint(world_run / "last.safetensors")
    bank = tensors["start.frames"].numpy()  # where Dream-v0's episodes begin: reset frames of training episodes
    resets = ClipDataset(data, 1, "all", captions=False)
    reset_frames = resets.get(resets.episode_starts).frames[:, 0]
    assert bank.dtype == np.uint8 and bank.shape[1:] == (64, 64, 3) and 1 <= len(bank) <= len(reset_frames)
    assert all((reset_frames == f).all(axis=(1, 2, 3)).any() for f in bank)
    assert (resets.get(resets.episode_starts).actions[:, 0] == -1).all()
    sim = WorldSimulator.from_checkpoint(world_run / "last.safetensors", device="cpu", seed=0)
    frames = np.stack([np.load(next(data.glob("shard-*")) / "frames.npy")[:2]])
    sim.reset(frames)
    out = sim.step([2])
    assert out.frames.shape == (1, 64, 64, 3) and out.frames.dtype == np.uint8
    assert sim.metadata["action_meanings"][2] == "right"

    # fine-tuning: init= starts from the world model's transformer (one step at lr 1e-9 barely moves it)
    tuned = tmp_path / "tuned"
    base = [a for a in args[:-1] if not a.startswith(("loop.out=", "optim."))]
    assert main([*base, f"init={world_run / 'last.safetensors'}", "optim.steps=1", "optim.warmup=0", "optim.lr=1e-9",
                 "optim.ema=0.0", f"loop.out={tuned}"]) == 0
    before, after = (component(load_checkpoint(p)[0], "dit") for p in (world_run / "last.safetensors",
                                                                        tuned / "last.safetensors"))
    assert before.keys() == after.keys() and all(torch.allclose(before[k], after[k], rtol=0, atol=1e-7)
                                                 for k in before)
    assert main([*base, f"init={world_run / 'last.safetensors'}", "dit.width=32", f"loop.out={tmp_path / 'x'}"]) == 2

    # diffusion.reencode is a play setting the checkpoint carries; eval_reencode scores the rollouts both ways
    reencoded = tmp_path / "reencoded"
    capsys.readouterr()
    assert main([*base, f"init={world_run / 'last.safetensors'}", "optim.steps=1", "optim.warmup=0",
                 "diffusion.reencode=true", "eval_reencode=true", f"loop.out={reencoded}"]) == 0
    last = json.loads((reencoded / "log.jsonl").read_text().splitlines()[-1])["eval"]
    assert {"psnr_h2", "psnr_h2_raw", "tiles_h1_raw"} <= last.keys() and "psnr_h2_re" not in last
    table = capsys.readouterr().out.splitlines()
    assert any(line.split()[:2] == ["not", "reencoded"] and line.split()[-1] == f"{last['psnr_h2_raw']:.2f}"
               for line in table)
    assert WorldSimulator.from_checkpoint(reencoded / "last.safetensors", device="cpu").diffusion.reencode is True

    # freeze_text: the transformer learns, the text encoder stays the checkpoint's (prompts read as before)
    frozen = tmp_path / "frozen"
    assert main([*base, f"init={world_run / 'last.safetensors'}", "freeze_text=true", "optim.steps=2",
                 "optim.warmup=0", "optim.lr=1e-2", "optim.ema=0.0", f"loop.out={frozen}"]) == 0
    after = component(load_checkpoint(frozen / "last.safetensors")[0], "dit")
    text = [k for k in before if k.startswith("text.")]
    assert text and all(torch.equal(before[k], after[k]) for k in text)
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("blocks."))


def test_an_event_share_beyond_the_batch_is_refused_naming_it():
    from worldsim.train.world import TrainWorldConfig

    with pytest.raises(ValueError, match="event_share"):
        TrainWorldConfig(data="d", ae="a", event_share=1.5)


@pytest.mark.parametrize("settings, expected", [([], 0.2), (["start_noise_prob=0.0"], 0.0),
                                                 (["start_noise_prob=0.5"], 0.5)])
def test_start_frames_are_given_pure_noise_as_the_clips_unless_told_otherwise(settings, expected):
    from worldsim.config import parse_overrides
    from worldsim.train.world import TrainWorldConfig, start_frames_diffusion

    cfg = parse_overrides(TrainWorldConfig, ["data=d", "ae=a", "diffusion.noise_prob=0.2",
                                             "diffusion.change_weight=4", *settings], "train_world")
    starts = start_frames_diffusion(cfg)
    assert starts.noise_prob == expected and starts.change_weight == 0.0  # a first frame has no change to weigh
    assert (starts.clean_prob, starts.caption_dropout) == (cfg.diffusion.clean_prob, cfg.diffusion.caption_dropout)


def test_world_training_refuses_an_autoencoder_checkpoint_as_world(tmp_path):
    assert main(["train", "world", "data=/nonexistent", "ae=/nonexistent.safetensors"]) == 2


def _one_step_autoencoder(data, out):
    """An autoencoder checkpoint trained one step on `data`: enough for a world run to get as far as its refusals."""
    assert main(["train", "ae", f"data={data}", "optim.steps=1", "optim.warmup=0", "model.width=8", "batch_size=2",
                 "eval_frames=2", "stats_frames=2", "holdout=0.3", f"loop.out={out}", "loop.eval_every=0"]) == 0
    return out / "last.safetensors"


def test_rollouts_longer_than_the_held_out_episodes_are_refused_before_encoding(data, tmp_path, capsys):
    ae = _one_step_autoencoder(data, tmp_path / "ae")
    capsys.readouterr()
    latents = tmp_path / "latents"
    assert main(["train", "world", f"data={data}", f"ae={ae}", "eval_context=8",
                 "horizons=[1,60]", f"latents={latents}", f"loop.out={tmp_path / 'world'}"]) == 2  # episodes: 60
    assert "eval_context=8 + max(horizons)=60: a rollout needs that many frames" in capsys.readouterr().err
    assert not latents.exists() and not (tmp_path / "world").exists()  # refused before encoding or training


def test_freeze_text_on_data_without_captions_is_refused_before_encoding(data, tmp_path, capsys):
    plain = tmp_path / "plain"  # the same frames, collected without captions
    shutil.copytree(data, plain)
    (plain / "manifest.json").write_text(json.dumps(json.loads((data / "manifest.json").read_text())
                                                    | {"captions": False}))
    ae = _one_step_autoencoder(plain, tmp_path / "ae")
    capsys.readouterr()
    latents = tmp_path / "latents"
    assert main(["train", "world", f"data={plain}", f"ae={ae}", "holdout=0.3", "freeze_text=true",
                 f"init={ae}", f"latents={latents}", f"loop.out={tmp_path / 'world'}"]) == 2
    assert f"freeze_text=True: expected false for {plain}: the dataset has no captions" in capsys.readouterr().err
    assert not latents.exists() and not (tmp_path / "world").exists()


def test_an_event_share_on_data_that_never_pays_or_ends_is_refused_before_encoding(tmp_path, capsys):
    from worldsim.data.loader import ClipDataset

    quiet = random_craft2d(tmp_path / "quiet", 200, max_episode_steps=50, shard_steps=200)  # no event in 200 steps
    assert not len(ClipDataset(quiet, 16, "train", 0.3).event_clips()), "the fixture should hold no event"
    ae = _one_step_autoencoder(quiet, tmp_path / "ae")
    capsys.readouterr()
    latents = tmp_path / "latents"
    assert main(["train", "world", f"data={quiet}", f"ae={ae}", "clip_len=16", "holdout=0.3",
                 "eval_context=4", "horizons=[1,8]", "event_share=0.25", f"latents={latents}",
                 f"loop.out={tmp_path / 'world'}"]) == 2
    assert "event_share=0.25: expected 0 for this data: none of its training clips holds a reward" in \
        capsys.readouterr().err
    assert not latents.exists() and not (tmp_path / "world").exists()


def test_decoder_fine_tune_keeps_the_encoder_and_the_cache(data, tmp_path):
    from worldsim.data.latents import ae_identity
    from worldsim.train.world import load_autoencoder

    base = ["train", "ae", f"data={data}", "model.width=8", "batch_size=4", "eval_frames=8", "stats_frames=32",
            "holdout=0.3", "loop.eval_every=0", "optim.warmup=1"]
    assert main([*base, "optim.steps=4", f"loop.out={tmp_path / 'ae'}"]) == 0
    first = tmp_path / "ae" / "last.safetensors"
    assert main([*base, "optim.steps=3", f"loop.out={tmp_path / 'dec'}", "freeze_encoder=true",
                 f"init={first}", "optim.ema=0.0"]) == 0
    before, after = load_autoencoder(first)[0], load_autoencoder(tmp_path / "dec" / "last.safetensors")[0]
    enc, dec = before.state_dict(), after.state_dict()
    assert all(torch.equal(enc[k], dec[k]) for k in enc if not k.startswith("decoder."))
    assert any(not torch.equal(enc[k], dec[k]) for k in enc if k.startswith("decoder."))
    assert ae_identity(before) == ae_identity(after)
    assert main([*base, f"loop.out={tmp_path / 'x'}", "freeze_encoder=true"]) == 2  # without init=: refused


def test_the_fidelity_levers_train_and_play_and_a_time_budget_stops_a_run_that_continues(data, tmp_path, capsys):
    """history=clean, the previous frame as input (with a halo, from init=), change-weighted and action-balanced loss,
    action and history dropout, a strided memory beyond the window, the model's own samples as history
    (self_history), reward classes and extra first frames (start_frames, kept off pure noise), chunks at pure noise
    (noise_prob), clips that pay or end drawn more often (event_share), end to end; and loop.max_minutes: evaluated
    and saved when the time is up, and the same command goes on from there (and from a copy of the run directory,
    with another time budget)."""
    ae = _one_step_autoencoder(data, tmp_path / "ae")
    run = tmp_path / "world"
    args = ["train", "world", f"data={data}", f"ae={ae}", "dit.width=24", "dit.depth=1",
            "dit.heads=2", "dit.context=4", "dit.prev_frame=true", "diffusion.history=clean",
            "diffusion.history_noise=0.1", "diffusion.change_weight=2", "diffusion.self_history=0.5", "clip_len=6",
            "diffusion.action_balance=1.0", "diffusion.action_dropout=0.2",
            "diffusion.history_dropout=0.3", "diffusion.history_dropout_window=2", "dit.memory=1",
            "dit.memory_stride=2",
            "batch_size=2", "eval_clips=1", "eval_context=2", "horizons=[1]", "holdout=0.3", "optim.steps=50",
            "optim.warmup=1", "start_frames=3", "start_noise_prob=0.0", "diffusion.noise_prob=0.2", "event_share=0.5",
            f"loop.out={run}", "loop.eval_every=0", "loop.max_minutes=1e-6", "loop.log_every=1"]
    capsys.readouterr()
    assert main(args) == 0
    assert "loop.max_minutes=1e-06 reached at step 1" in capsys.readouterr().out
    lines = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert lines[-1]["step"] == 1 and "psnr_h1" in lines[-1]["eval"]
    assert all(np.isfinite(line["start_loss"]) for line in lines if "loss" in line)  # first frames trained too
    assert main(args) == 0  # the same command continues
    assert [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()][-1]["step"] == 2
    moved = tmp_path / "moved"  # a run directory copied elsewhere goes on, with another time budget
    shutil.copytree(run, moved)
    assert main([*args[:-4], f"loop.out={moved}", "loop.eval_every=0", "loop.max_minutes=2e-6",
                 "loop.log_every=1"]) == 0
    assert [json.loads(line) for line in (moved / "log.jsonl").read_text().splitlines()][-1]["step"] == 3
    sim = WorldSimulator.from_checkpoint(run / "last.safetensors", device="cpu", seed=0)
    rewards = np.concatenate([np.load(p / "rewards.npy") for p in data.glob("shard-*")])
    assert sim.dit.config.prev_frame and sim.dit.config.reward_values == tuple(np.unique(rewards).tolist())
    assert sim.dit.config.memory == 1 and sim.diffusion.action_balance == 1.0
    sim.reset(np.stack([np.load(next(data.glob("shard-*")) / "frames.npy")[:2]]))
    out = sim.step([2])
    assert out.frames.shape == (1, 64, 64, 3) and out.rewards[0] in sim.dit.config.reward_values
    # dit.prev_halo from a file without one: the halo joins at zero (the start is that model) and trains
    halo = tmp_path / "halo"
    assert main([*(a for a in args[:-4] if not a.startswith("optim.")), f"init={run / 'last.safetensors'}",
                 "dit.prev_halo=1", "optim.steps=1", "optim.warmup=0", f"loop.out={halo}", "loop.eval_every=0"]) == 0
    tuned = WorldSimulator.from_checkpoint(halo / "last.safetensors", device="cpu", seed=0).dit
    assert tuned.config.prev_halo == 1 and tuned.halo_embed.weight.abs().amax() > 0


def test_the_reward_threshold_is_fitted_at_the_first_and_last_save_not_at_every_save(data, tmp_path, monkeypatch):
    """A fit runs the held-out clips through the model (~30 s at one thread, a tenth of a 5-minute save interval):
    periodic saves keep the last one, the run's last save fits its own weights (or keeps the fit its last evaluation
    just made of them)."""
    import worldsim.train.world as world

    fits, fit = [], world.fit_reward_threshold
    monkeypatch.setattr(world, "fit_reward_threshold", lambda *a, **k: fits.append(fit(*a, **k)) or fits[-1])
    ae = _one_step_autoencoder(data, tmp_path / "ae")
    run = tmp_path / "world"
    args = ["train", "world", f"data={data}", f"ae={ae}", "dit.width=24", "dit.depth=1", "dit.heads=2", "dit.context=4",
            "clip_len=4", "batch_size=2", "eval_clips=1", "eval_context=2", "horizons=[1]", "holdout=0.3",
            "optim.steps=4", "optim.warmup=1", "loop.eval_every=0", "loop.save_every_s=0"]  # a save after every step
    assert main([*args, f"loop.out={run}", "eval_event_clips=0"]) == 0
    assert len(fits) == 2  # the first save's and the last's (an evaluation with clips that pay fits one of its own)
    last = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()][-1]["eval"]
    assert "dream_reward_recall" not in last  # eval_event_clips=0: no clips played for it
    assert float(load_checkpoint(run / "last.safetensors")[0]["dit.reward_threshold"]) == pytest.approx(fits[-1])
    # with clips that pay, the last evaluation fits the weights the last save writes: that save keeps its fit
    fits.clear()
    again = tmp_path / "again"
    assert main([*args, f"loop.out={again}"]) == 0
    last = [json.loads(line) for line in (again / "log.jsonl").read_text().splitlines()][-1]["eval"]
    assert "dream_reward_recall" in last and len(fits) == 2  # the first save's and the last evaluation's
    assert float(load_checkpoint(again / "last.safetensors")[0]["dit.reward_threshold"]) == pytest.approx(fits[-1])
