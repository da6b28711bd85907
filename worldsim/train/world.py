"""`worldsim train world`: the spacetime-patch DiT on latent clips of a dataset, with diffusion forcing.

The dataset is encoded once into a latent cache by the given autoencoder (skipped when already there). Evaluation
rolls the EMA model out autoregressively from held-out clips: after `eval_context` real frames it plays the recorded
actions for max(horizons) steps, and scores the frames at each horizon (PSNR, and Craft2D tile accuracy) beside the
copy-last-frame baseline, which a model must beat to have learned anything about the world; and it runs the model
clean on held-out latent clips to score its reward head against the true rewards (correlation, F1 of reward events),
and, for a head that classifies, plays held-out clips with a reward in the dream to see whether it pays for them
(worldsim.train.dream_reward).

`views=[DIR, ...]` trains the same model on more datasets of the game at other frame sizes (Sora's native-size
training; the rotary positions make one set of weights work at every size): each step's batch comes from one of them
(latents.ViewBuckets), the same on every process. Evaluation, the reward threshold and the start frames stay on `data`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import MISSING

from worldsim.checkpoint import (load_autoencoder, load_init, read_metadata, view_problem, world_metadata,
                                 world_tensors)
from worldsim.config import check, show, to_dict
from worldsim.data.latents import LatentClipDataset, ViewBuckets, ae_identity, encode_dataset, open_cache
from worldsim.data.loader import SAME_GAME, ClipDataset, same_game
from worldsim.data.shards import read_manifest
from worldsim.models.autoencoder import Autoencoder
from worldsim.envs.craft2d import is_craft2d
from worldsim.models.diffusion import DiffusionConfig, training_loss
from worldsim.models.dit import DIT_PRESETS, DiT, dit_config
from worldsim.models.text import remap_embedding, vocabulary
from worldsim.device import resolve_device
from worldsim.simulator import WorldSimulator
from worldsim.train import dist
from worldsim.train.dream_reward import dream_scores, paying_clips, payments, rollout
from worldsim.train.loop import LoopConfig, OptimConfig, Task, train
from worldsim.train.metrics import psnr, tile_accuracy


START_BANK = 64  # episode-start frames kept in the checkpoint (64x64: 768 KiB): where a simulator's worlds begin


@dataclass(frozen=True)
class TrainWorldConfig:
    data: str = field(default=MISSING, metadata={"help": "dataset directory (worldsim collect)"})
    ae: str = field(default=MISSING, metadata={"help": "autoencoder checkpoint (worldsim train ae)"})
    latents: str | None = field(default=None, metadata={"help": "latent cache directory (default: beside data, "
                                                                "named after the autoencoder)"})
    views: list[str] = field(default_factory=list, metadata={
        "help": "more datasets of the same env at other frame sizes (Craft2D: worldsim collect "
                "env_kwargs.view_width=12), encoded by the same autoencoder into caches beside them and trained on "
                "with data, a whole batch from one of them; evaluation and start frames stay data's"})
    mix: list[float] = field(default_factory=list, metadata={
        "help": "each dataset's share of the batches, data's then the views' in order, e.g. mix=[3,1,1,1,2] (any "
                "scale; 0: not trained on); empty: in proportion to their clips, so every clip alike"})
    model: str = field(default="S", metadata={"help": "DiT preset: S | M | L"})
    init: str | None = field(default=None, metadata={"help": "start from this world-model checkpoint's transformer "
                                                              "(fine-tuning; the model fields must match it)"})
    dit: dict[str, Any] = field(default_factory=dict, metadata={"help": "DiTConfig overrides, e.g. dit.context=8"})
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(steps=20_000, lr=3e-4, warmup=500))
    loop: LoopConfig = field(default_factory=lambda: LoopConfig(out="runs/world", eval_every=1000))
    clip_len: int = field(default=16, metadata={"help": "frames per training clip"})
    batch_size: int = field(default=8, metadata={"help": "clips per step, over all processes under torchrun"})
    start_frames: int = field(default=0, metadata={
        "help": "first frames trained a step beside the clips: single frames of the data, no history, no action, "
                "the case of a world started from a prompt (a clip holds one such frame in clip_len); 0: none"})
    start_noise_prob: float | None = field(default=None, metadata={
        "help": "chance a start frame is given pure noise in training (null: diffusion.noise_prob, as the clips' "
                "chunks); a prompt's first frame is made by its own sampler (16 guided passes), not by a step's 2"})
    captions: bool = field(default=True, metadata={
        "help": "condition on the dataset's captions where it has them (Craft2D's), with a text encoder trained "
                "along (worldsim/models/text.py); false, or a dataset without captions: no text encoder"})
    freeze_text: bool = field(default=False, metadata={
        "help": "keep the text encoder at init='s weights (a fine-tune's captions stay read as the model that made "
                "its prompts work read them; words new to the data keep their fresh embeddings)"})
    reward_classes: int = field(default=8, metadata={
        "help": "classify the reward among the training data's distinct values when it has 2 to this many (sparse "
                "rewards stay sparse: an idle step pays exactly 0); else, or 0, regress it"})
    event_share: float = field(default=0.0, metadata={
        "help": "share of a batch's clips drawn from the clips where the env pays or ends after their first frame "
                "(a non-zero reward or a termination), the rest from all: rare events, and the changes that cause "
                "them, trained on more often, by the denoiser and the heads alike (0: every clip equally likely)"})
    holdout: float = field(default=0.05, metadata={"help": "fraction of episodes held out"})
    eval_clips: int = field(default=4, metadata={"help": "held-out rollouts per evaluation"})
    eval_context: int = field(default=8, metadata={"help": "real frames a rollout starts from"})
    eval_event_clips: int = field(default=32, metadata={
        "help": "held-out clips with a reward in their rollout steps, also played in the dream: the share of their "
                "rewards the dream pays (dream_reward_recall), beside its false payments on the ordinary rollouts "
                "(dream_false_per_100); for a reward head that classifies, 0: none"})
    horizons: list[int] = field(default_factory=lambda: [1, 8, 32], metadata={"help": "rollout steps scored"})
    eval_denoise_steps: list[int] = field(default_factory=list, metadata={
        "help": "also score rollouts at these solver step counts (keys tiles_h8_s4...), to choose diffusion.denoise_steps"})
    eval_reencode: bool = field(default=False, metadata={
        "help": "also score rollouts with diffusion.reencode the other way (keys psnr_h8_re, or _raw where the run "
                "reencodes), the same weights and noise: whether caching each frame as its picture encodes pays"})

    def __post_init__(self):
        for key in ("data", "ae", "latents", "init"):
            check(getattr(self, key) != "", key, "", "a path" + (", or null" if key in ("latents", "init") else ""))
        dirs = [str(Path(d).resolve()) for d in (self.data, *self.views) if d]
        check(all(self.views) and len(set(dirs)) == len(dirs), "views", list(self.views),
              "dataset directories, each once and none of them data")
        check(not self.mix or (len(self.mix) == 1 + len(self.views) and min(self.mix) >= 0 and sum(self.mix) > 0),
              "mix", list(self.mix), f"empty, or {1 + len(self.views)} weights >= 0 (data's, then one a view), not "
                                     "all 0")
        check(self.model in DIT_PRESETS, "model", self.model, f"a DiT preset, one of {sorted(DIT_PRESETS)}")
        given = sorted({"latent_channels", "n_actions", "vocab", "reward_values"} & set(self.dit))
        check(not given, "dit", dict(self.dit), f"no {given}: the autoencoder and the dataset decide them")
        try:
            dit = dit_config(self.model, **self.dit)
        except (ValueError, TypeError) as err:  # an unknown field, or a value DiTConfig refuses
            raise ValueError(f"dit={dict(self.dit)}: {err}") from None
        pt = dit.patch[0]
        check(not dit.prev_frame or self.diffusion.prediction == "x0", "dit.prev_frame", dit.prev_frame,
              f"false with diffusion.prediction={self.diffusion.prediction!r}: its output is a change of the clean "
              "frame, so it needs diffusion.prediction=x0")
        check(dit.heads_read == "frame" or self.diffusion.noise_prob > 0, "diffusion.noise_prob",
              self.diffusion.noise_prob, "> 0 with dit.heads_read=action: its heads learn on the chunks given pure "
              "noise, the solver pass they are read on (e.g. diffusion.noise_prob=0.2)")
        check(self.clip_len >= 1 and self.clip_len % pt == 0, "clip_len", self.clip_len,
              f"frames >= 1, a multiple of the patch's pt={pt}")
        check(self.clip_len >= dit.context * pt, "clip_len", self.clip_len,
              f">= {dit.context * pt} frames, the model's window (dit.context={dit.context} chunks): it plays with a "
              "full window of history, so training clips must show it one (or lower dit.context)")
        check(not self.freeze_text or bool(self.init), "freeze_text", self.freeze_text,
              "false without init=PATH (it would freeze a random text encoder): name the checkpoint whose prompts "
              "to keep")
        check(not self.freeze_text or self.captions, "freeze_text", self.freeze_text,
              "false with captions=false: the model has no text encoder to freeze")
        check(self.reward_classes >= 0, "reward_classes", self.reward_classes, "an integer >= 0 (0: regress)")
        check(self.batch_size >= 1, "batch_size", self.batch_size, "clips per step >= 1")
        check(self.start_frames >= 0, "start_frames", self.start_frames, "frames a step >= 0 (0: none)")
        check(self.start_noise_prob is None or 0.0 <= self.start_noise_prob <= 1.0 - self.diffusion.clean_prob,
              "start_noise_prob", self.start_noise_prob,
              f"null or a probability in [0, 1 - diffusion.clean_prob = {1 - self.diffusion.clean_prob:g}]")
        check(0.0 <= self.event_share <= 1.0, "event_share", self.event_share, "a fraction of the batch in [0, 1] "
                                                                               "(0: clips drawn uniformly)")
        check(0.0 < self.holdout < 1.0, "holdout", self.holdout, "a fraction in (0, 1): evaluation needs held-out "
                                                                 "episodes, training the rest")
        check(self.eval_clips >= 1, "eval_clips", self.eval_clips, "held-out rollouts >= 1")
        check(self.eval_context >= 1, "eval_context", self.eval_context, "real frames >= 1 to start a rollout from")
        check(self.eval_event_clips >= 0, "eval_event_clips", self.eval_event_clips, "held-out clips >= 0 (0: none)")
        check(len(self.horizons) > 0 and min(self.horizons) >= 1, "horizons", list(self.horizons),
              "a list of rollout steps >= 1, e.g. [1,8,32]")
        check(all(s >= 1 for s in self.eval_denoise_steps), "eval_denoise_steps", list(self.eval_denoise_steps),
              "solver step counts >= 1")


def _load_init(model: DiT, path: str) -> None:
    def adapt(weights: dict, meta: dict) -> dict:
        # the captions of this run's data may hold words the checkpoint's did not (or lack some): every word it knew
        # keeps its embedding, new ones start fresh
        old = tuple((meta.get("dit_config") or {}).get("vocab", ()))
        if "text.embed.weight" in weights and model.text is not None and old != model.config.vocab:
            fresh = model.state_dict()["text.embed.weight"]
            weights = {**weights, "text.embed.weight": remap_embedding(weights["text.embed.weight"], old,
                                                                       model.config.vocab, fresh)}
        return weights

    load_init(model, path, "dit", "transformer", "`worldsim train world`",
              f"set model= and dit.* to the checkpoint's (this run: {model.config})",
              new=("text.",) * (model.text is not None) + ("halo_embed.",) * bool(model.config.prev_halo),
              adapt=adapt)


def start_frames_diffusion(cfg: TrainWorldConfig) -> DiffusionConfig:
    """How the start frames are trained: as the clips' chunks, but no change to weigh (a first frame has no last
    frame) and pure noise at start_noise_prob where that is set."""
    noise_prob = cfg.diffusion.noise_prob if cfg.start_noise_prob is None else cfg.start_noise_prob
    return replace(cfg.diffusion, change_weight=0.0, noise_prob=noise_prob)


def build_task(cfg: TrainWorldConfig) -> Task:
    ae, _ = load_autoencoder(cfg.ae)
    ae.requires_grad_(False)
    horizon = max(cfg.horizons)
    try:  # before the dataset is encoded: held-out episodes too short for a rollout fail now, not after training
        val = ClipDataset(cfg.data, cfg.eval_context + horizon, "val", cfg.holdout)
    except ValueError as err:
        raise ValueError(f"eval_context={cfg.eval_context} + max(horizons)={horizon}: a rollout needs that many "
                         f"frames of one held-out episode; {err} (or lower eval_context or horizons)") from None
    clips = val.sample(cfg.eval_clips, np.random.default_rng(12345))  # fixed, independent of training draws
    _check_views(cfg, ae)  # before anything is encoded
    check(not cfg.freeze_text or bool(val.manifest.get("captions")), "freeze_text", cfg.freeze_text,
          f"false for {cfg.data}: the dataset has no captions, so its model has no text encoder to freeze")
    if cfg.event_share:  # the same clips as the caches will give: their rewards are the frame datasets'
        check(any(len(ClipDataset(d, cfg.clip_len, "train", cfg.holdout).event_clips())
                  for d in (cfg.data, *cfg.views)),
              "event_share", cfg.event_share, "0 for this data: none of its training clips holds a reward or a "
                                              "termination after its first frame")
    latents_dir = cfg.latents or cache_dir(cfg.data, ae)
    caches = [(cfg.data, latents_dir)] + [(d, cache_dir(d, ae)) for d in cfg.views]
    encode_caches(ae, caches, str(cfg.ae))
    # the views hold out the same worlds as data (the split is a hash of each episode's seed): a world evaluated at
    # one size is never trained on at another
    sets = [LatentClipDataset(cache, cfg.clip_len, "train", cfg.holdout, captions=cfg.captions) for _, cache in caches]
    train_set, buckets = sets[0], ViewBuckets(sets, list(cfg.mix))
    if len(sets) > 1 and dist.is_main():
        shares = ", ".join(f"{d} {p:.1%} ({len(s):,} clips)" for (d, _), s, p in zip(caches, sets, buckets.p))
        print(f"batches drawn from: {shares}" + (" (as mix= sets)" if cfg.mix else ""), flush=True)
    c, h, w = train_set.latent_shape
    values = reward_values(sets, cfg.reward_classes)
    n_actions = len(train_set.manifest["action_meanings"])
    by_action = action_weights_of(sets, n_actions, cfg.diffusion.action_balance) \
        if cfg.diffusion.action_balance > 0 else None
    vocab = vocabulary(c for s in sets for shard in s.captions or [] for c in shard)  # () without captions
    if cfg.init:
        init_dit = read_metadata(cfg.init).get("dit_config", {})
        # a fine-tune keeps its checkpoint's reward head (classes or a regression), whatever values this data shows
        values = tuple(init_dit.get("reward_values", values))
        if vocab:  # and every caption word it knew, learning the data's new ones
            vocab = tuple(sorted(set(vocab) | set(init_dit.get("vocab", ()))))
    dit_cfg = dit_config(cfg.model, latent_channels=c, n_actions=n_actions,
                         reward_values=values, vocab=vocab, **cfg.dit)
    torch.manual_seed(cfg.loop.seed)
    model = DiT(dit_cfg)
    if cfg.init:
        _load_init(model, cfg.init)
    if cfg.freeze_text:
        check(model.text is not None, "freeze_text", cfg.freeze_text,
              f"false for {cfg.data}: its captions hold no word, so this run's model has no text encoder to freeze")
        model.text.requires_grad_(False)  # AdamW skips parameters without gradients; the EMA keeps them as they are
    craft2d = is_craft2d(val.manifest.get("env"))
    _, ph, pw = dit_cfg.patch
    heldout = _heldout_latent_clips(latents_dir, cfg)  # the reward head's evaluation and threshold
    calibration = heldout if 0.0 in dit_cfg.reward_values else None
    # held-out clips with a reward in their rollout steps, played in the dream at each evaluation (classes only)
    paying = paying_clips(val, cfg.views, cfg.holdout, cfg.eval_context, cfg.eval_event_clips) \
        if calibration is not None else None
    threshold: float | None = None  # the last one fitted in this process
    fitted_now = False  # `threshold` is of the weights as they are now: an evaluation fitted it since the last step

    starts_set = LatentClipDataset(latents_dir, 1, "train", cfg.holdout, captions=cfg.captions) \
        if cfg.start_frames else None
    start_diffusion = start_frames_diffusion(cfg)

    def batch(r: np.random.Generator):
        # (B, T, C, h, w) latents of one view, drawn alike on every rank
        b = buckets.sample(cfg.batch_size, r, cfg.event_share)
        arrays = tuple(torch.from_numpy(a) for a in (b.latents, b.actions, b.rewards, b.terminated))
        clips = arrays + ((model.tokenize(b.captions),) if vocab else ())  # + (B, T, L) caption word ids
        if starts_set is None:
            return clips, None
        s = starts_set.sample(cfg.start_frames, r)  # (S, 1, C, h, w): each a first frame, whatever preceded it
        return clips, (torch.from_numpy(s.latents), model.tokenize(s.captions) if vocab else None)

    def loss(m, b, gen, rows):
        nonlocal fitted_now
        fitted_now = False  # this step moves the weights
        device = next(m.parameters()).device
        (x0, actions, rewards, terminated, *text), starts = [t.to(device) for t in b[0]], b[1]
        out = training_loss(m, x0, actions, rewards, terminated, cfg.diffusion, gen, rows,
                            text=text[0] if text else None, action_weights=by_action)
        if starts is None:
            return out
        # the first frames' loss joins the clips' in proportion to their frames (each a token set of the same size)
        n, (lo, hi, _) = cfg.start_frames, rows.indices(cfg.batch_size)
        s_rows = slice(lo * n // cfg.batch_size, hi * n // cfg.batch_size)  # this process's share, as for the clips
        z, ids = starts[0].to(device), None if starts[1] is None else starts[1].to(device)
        none = torch.full(z.shape[:2], -1, dtype=torch.long, device=device)  # no action led to a first frame
        zeros = torch.zeros(z.shape[:2], device=device)
        s_loss, s_logs = training_loss(m, z, none, zeros, zeros, start_diffusion, gen, s_rows, text=ids)
        w = n / (n + cfg.batch_size * x0.shape[1])
        total = (1 - w) * out[0] + w * s_loss
        return total, {**out[1], "loss": total.item(), "start_loss": s_logs["denoise_loss"]}

    def evaluate(m) -> dict[str, float]:
        nonlocal threshold, fitted_now
        logs = {}
        for hz in cfg.horizons:
            truth, last = clips.frames[:, cfg.eval_context + hz - 1], clips.frames[:, cfg.eval_context - 1]
            logs[f"copy_psnr_h{hz}"] = psnr(last, truth)
            if craft2d:
                logs[f"copy_tiles_h{hz}"] = tile_accuracy(last, truth)
        if paying is not None:  # the dream pays at the threshold an export of these weights writes
            kept = m.reward_threshold.clone()  # put back below: an evaluation leaves the EMA model as it found it
            threshold, fitted_now = fit_reward_threshold(m, *(torch.from_numpy(a) for a in calibration)), True
            m.reward_threshold.fill_(threshold)
        for steps in dict.fromkeys([cfg.diffusion.denoise_steps, *cfg.eval_denoise_steps]):
            suffix = "" if steps == cfg.diffusion.denoise_steps else f"_s{steps}"
            scores, paid = rollout_scores(m, steps)
            logs.update({f"{k}{suffix}": v for k, v in scores.items()})
            if paying is not None and not suffix:
                ctx = cfg.eval_context
                _, events_paid = rollout(simulator(m, steps), paying.frames, paying.actions, ctx)
                logs.update(dream_scores(payments(clips.rewards[:, ctx:], paid),
                                         payments(paying.rewards[:, ctx:], events_paid)))
        if cfg.eval_reencode:
            flipped = not cfg.diffusion.reencode
            scores, _ = rollout_scores(m, cfg.diffusion.denoise_steps, flipped)
            logs.update({f"{k}{REENCODE_SUFFIX[flipped]}": v for k, v in scores.items()})
        if paying is not None:
            m.reward_threshold.copy_(kept)
        if heldout is not None:
            logs.update(reward_agreement(m, *(torch.from_numpy(a) for a in heldout)))
            logs["heldout_loss"] = heldout_loss(m, *heldout)
        return logs

    def heldout_loss(m, latents: np.ndarray, actions: np.ndarray, rewards: np.ndarray) -> float:
        """The denoising loss on held-out clips, uncaptioned, with the same noise at every evaluation and for every
        model size: comparable along a run and across runs (the scaling study's y axis)."""
        device = next(m.parameters()).device
        x0, a, r = (torch.from_numpy(v[:HELDOUT_LOSS_CLIPS]).to(device) for v in (latents, actions, rewards))
        gen = torch.Generator(device).manual_seed(0)
        # the loss itself, at the usual noise levels, the real clip as history whatever a run's training shows it
        plain = replace(cfg.diffusion, change_weight=0.0, history_noise=0.0, noise_prob=0.0, self_history=0.0,
                        self_rollout=0)
        sums = [training_loss(m, x0[i:i + 16], a[i:i + 16], r[i:i + 16], torch.zeros_like(r[i:i + 16]), plain,
                              gen)[1]["denoise_loss"] * len(x0[i:i + 16])
                for i in range(0, len(x0), 16)]  # 16 clips a pass (each pass's mean, weighted): bounded memory
        return sum(sums) / len(x0)

    def simulator(m, steps: int, reencode: bool | None = None) -> WorldSimulator:
        diffusion = cfg.diffusion if reencode is None else replace(cfg.diffusion, reencode=reencode)
        return WorldSimulator(ae, m, diffusion, denoise_steps=steps, device=next(m.parameters()).device, seed=0)

    def rollout_scores(m, steps: int, reencode: bool | None = None) -> tuple[dict[str, float], np.ndarray]:
        """Autoregressive rollouts from `eval_context` real frames, driven by the recorded actions: their scores,
        and the rewards the dream paid (B, horizon); `reencode`: diffusion.reencode (None: the run's)."""
        ctx = cfg.eval_context
        predicted, paid = rollout(simulator(m, steps, reencode), clips.frames, clips.actions, ctx)
        logs = {}
        for hz in cfg.horizons:
            truth = clips.frames[:, ctx + hz - 1]
            logs[f"psnr_h{hz}"] = psnr(predicted[hz - 1], truth)
            if craft2d:
                logs[f"tiles_h{hz}"] = tile_accuracy(predicted[hz - 1], truth)
        return logs, paid

    def report(logs: dict[str, float]) -> str:
        return eval_table(logs, cfg.horizons, cfg.diffusion.denoise_steps, cfg.eval_denoise_steps, len(clips.frames),
                          cfg.diffusion.reencode if cfg.eval_reencode else None)

    # Real start frames for the simulator's resets (Dream-v0 draws one per episode): reset frames of training episodes
    starts = ClipDataset(cfg.data, 1, "train", cfg.holdout)
    picks = np.random.default_rng(0).permutation(starts.episode_starts)[:START_BANK]
    start_frames = torch.from_numpy(starts.get(np.sort(picks)).frames[:, 0])  # (K, H, W, 3) uint8
    # checked as a loader will check the file, so a model that could not be played is refused before training
    metadata = world_metadata(to_dict(cfg), ae.cfg, dit_cfg, cfg.diffusion, train_set.manifest["action_meanings"],
                              train_set.manifest["frame_shape"], env=train_set.manifest.get("env"),
                              views=[s.manifest["frame_shape"] for s in sets[1:]])
    ae_state = ae.state_dict()

    def export(ema: dict[str, torch.Tensor], final: bool) -> dict[str, torch.Tensor]:
        nonlocal threshold
        if calibration is not None:  # the reward head's threshold, chosen on held-out clips for these weights
            # a periodic save keeps the last fit (a fit is ~30 s at one thread, a tenth of a 5-minute save interval);
            # the last save fits its own weights, unless the run's last evaluation just did
            if threshold is None or (final and not fitted_now):
                scratch = DiT(dit_cfg).to(next(iter(ema.values())).device)
                scratch.load_state_dict(ema)
                threshold = fit_reward_threshold(scratch, *(torch.from_numpy(a) for a in calibration))
            ema = {**ema, "reward_threshold": torch.tensor(threshold)}
        return world_tensors(ae_state, ema, start_frames)

    return Task(name="world", model=model, batch=batch, loss=loss, evaluate=evaluate, report=report,
                export=export, defaults=to_dict(type(cfg)),
                metadata=metadata,
                data_id=dist.fingerprint(train_set.manifest if len(sets) == 1 else [s.manifest for s in sets]),
                # the loop counts a fixed number a step: with views, the mean over the buckets' chances
                tokens_per_batch=round(sum(p * cfg.batch_size * cfg.clip_len * (s.latent_shape[1] // ph) *
                                           (s.latent_shape[2] // pw) for p, s in zip(buckets.p, sets))
                                       + cfg.start_frames * (h // ph) * (w // pw)))


def cache_dir(data: str, ae: Autoencoder) -> str:
    """The default latent cache of a dataset: beside it, named after the autoencoder that encodes it."""
    return str(Path(data).with_name(f"{Path(data).name}.latents-{ae_identity(ae)[:8]}"))


def encode_caches(ae: Autoencoder, caches: list[tuple[str, str]], checkpoint: str) -> None:
    """Encode each (dataset, cache) pair's missing shards. Under torchrun the ranks share the work: rank 0 opens
    the caches while the others wait, then every rank encodes its own shards at once, then each checks them all
    (rank 0 first; a node without a shared file system encodes there what it still lacks) and records them done."""
    if dist.world_size() > 1:
        with dist.main_first():
            for data_dir, cache in caches:
                open_cache(ae, data_dir, cache, checkpoint)
        dist.barrier()  # no rank still opening (clearing temporary shards) while another writes its first
        for data_dir, cache in caches:
            encode_dataset(ae, data_dir, cache, checkpoint=checkpoint, part=(dist.rank(), dist.world_size()))
        dist.barrier()
    with dist.main_first():
        for data_dir, cache in caches:
            encode_dataset(ae, data_dir, cache, checkpoint=checkpoint)


def _check_views(cfg: TrainWorldConfig, ae: Autoencoder) -> None:
    """Refuse views that are not of data's game, or whose frames the autoencoder and the patches do not tile,
    naming the dataset, before anything is encoded."""
    if not cfg.views:
        return
    manifests = {f"data={cfg.data}": read_manifest(Path(cfg.data))}
    manifests.update({f"views: {d}": read_manifest(Path(d)) for d in cfg.views})
    same_game(manifests, SAME_GAME if cfg.captions else tuple(k for k in SAME_GAME if k != "captions"))
    dit = dit_config(cfg.model, **cfg.dit)  # the patch, depth, width and window: what tiling and the bounds need
    for name, manifest in manifests.items():
        problem = view_problem(list(manifest["frame_shape"]), ae.cfg, dit)
        if problem:
            raise ValueError(f"{name}: frames of {manifest['frame_shape']}: expected {problem}; collect it at a view "
                             "that tiles (Craft2D draws 8 px a tile: env_kwargs.view_width and view_height)")


HELDOUT_LOSS_CLIPS = 64  # held-out clips the evaluation's denoising loss is the mean of
CALIBRATION_CLIPS = 512  # held-out clips the reward threshold is chosen on: Craft2D pays ~1 step in 800, so ~20
#                          events at 32 frames a clip, for ~30 s of forward passes at one thread (2-core AMX Xeon,
#                          preset S, stage 11's 431 held-out clips), at a run's first and last save


def _heldout_latent_clips(latents_dir: str, cfg: TrainWorldConfig) -> tuple[np.ndarray, ...] | None:
    """Held-out latent clips, actions and rewards, for the reward head (its evaluation, and its threshold where it
    has one); None when the held-out episodes are shorter than a training clip."""
    try:
        val = LatentClipDataset(latents_dir, cfg.clip_len, "val", cfg.holdout)
    except ValueError:
        return None
    b = val.get(np.arange(0, len(val), cfg.clip_len)[:CALIBRATION_CLIPS])  # clip starts clip_len apart: no overlap
    return b.latents, b.actions, b.rewards


@torch.no_grad()
def reward_logits(dit: DiT, latents: torch.Tensor, actions: torch.Tensor, batch_size: int = 32) -> torch.Tensor:
    """The reward head's output on clips (B, T, C, h, w) with their actions (B, T), on the pass the simulator reads
    it from at play time: the clip run clean, as the pass that caches a chunk sees it (a clean clip under the
    block-causal mask is exactly the history stream), or, for dit.config.heads_read="action", each chunk from pure
    noise (seeded) against its clean history, as the first solver pass sees it: (B, T), or (B, T, K) logits over
    dit.config.reward_values."""
    was_training = dit.training
    dit.eval()
    device = next(dit.parameters()).device
    noise = torch.Generator().manual_seed(0)  # the same draw at every evaluation: scores that move are the model's
    out = []
    for i in range(0, len(latents), batch_size):
        x, a = latents[i:i + batch_size].to(device), actions[i:i + batch_size].to(device)
        clean = torch.zeros(a.shape, device=device)
        if dit.config.heads_read == "action":
            eps = torch.randn(x.shape, generator=noise).to(device)
            reward = dit(eps, torch.ones(a.shape, device=device), a, history=x, history_sigma=clean).reward
        else:
            reward = dit(x, clean, a).reward
        out.append(reward.float().cpu())
    dit.train(was_training)
    return torch.cat(out)


def best_threshold(score: torch.Tensor, event: torch.Tensor) -> float:
    """The score (N,) above which a step pays that gives the best F1 of the events (N,) bool; 0.5 if none."""
    score, event = score.double(), event.bool()
    n_events = int(event.sum())
    if n_events == 0:
        return 0.5
    order = torch.argsort(score, descending=True)
    hits = event[order].double().cumsum(0)  # true payments when the k highest-scoring steps pay
    f1 = 2 * hits / (torch.arange(1, len(score) + 1) + n_events)
    k = int(f1.argmax())  # pay on steps 0..k of the order
    below = score[order[k + 1]] if k + 1 < len(score) else 0.0
    return float((score[order[k]] + below) / 2)


def fit_reward_threshold(dit: DiT, latents: torch.Tensor, actions: torch.Tensor, rewards: torch.Tensor,
                         batch_size: int = 32) -> float:
    """The probability of a non-zero reward above which a step pays that gives the best F1 of reward events on these
    clips (B, T, C, h, w), with their actions and rewards (B, T); 0.5 if they hold no event.

    Rewards are rare (Craft2D: ~1 step in 800), so argmax would never pay."""
    score = dit.reward_scores(reward_logits(dit, latents, actions, batch_size))
    return best_threshold(score.flatten(), (rewards != 0).flatten())


@torch.no_grad()
def reward_agreement(dit: DiT, latents: torch.Tensor, actions: torch.Tensor, rewards: torch.Tensor) -> dict[str, float]:
    """How well the reward head, teacher-forced on real clips (B, T, C, h, w) with their actions, agrees with their
    true rewards (B, T): `reward_r`, the Pearson correlation of its values (DiT.reward_of) with the rewards, and
    where it pays by a threshold, `reward_f1`, the F1 of reward events (a step pays or not); `reward_events`, how
    many steps paid. {} when the rewards do not vary (no correlation to measure).

    The threshold is what an export fits on held-out clips, so to score it on clips it was not fit on, each half of
    the clips is scored with the threshold chosen on the other half."""
    if rewards.numel() < 2 or float(rewards.float().std()) == 0.0:
        return {}
    device = next(dit.parameters()).device
    logits = reward_logits(dit, latents, actions).to(device)  # (B, T) or (B, T, K)
    truth, event = rewards.double().flatten(), (rewards != 0).flatten()
    logs = {"reward_events": float(event.sum())}
    if 0.0 not in dit.config.reward_values:  # a regression, or classes without "nothing": values as they are
        predicted = dit.reward_of(logits).cpu().double().flatten()
    else:
        predicted = torch.zeros_like(truth)
        halves = torch.arange(len(rewards)) % 2  # alternate clips: both halves span the held-out episodes
        for half in (0, 1):
            fit, scored = halves != half, halves == half
            score = dit.reward_scores(logits[fit]).cpu()
            threshold = best_threshold(score.flatten(), (rewards[fit] != 0).flatten())
            predicted.view(rewards.shape)[scored] = dit.reward_of(logits[scored], threshold).cpu().double()
        paid = predicted != 0
        hits = float((paid & event).sum())
        logs["reward_f1"] = 2 * hits / max(1.0, float(paid.sum() + event.sum()))
    spread = float(predicted.std())
    logs["reward_r"] = (0.0 if spread == 0.0 else  # a head that never pays says nothing about the rewards
                        float(torch.corrcoef(torch.stack([predicted, truth]))[0, 1]))
    return logs


def reward_values(datasets: list[LatentClipDataset], max_classes: int) -> tuple[float, ...]:
    """The distinct rewards of the training data (every view's), the reward head's classes, when there are 2 to
    max_classes of them; () (regression) otherwise."""
    values = np.unique(np.concatenate([shard.arrays["rewards"] for data in datasets for shard in data.shards])
                       .astype(np.float64))
    return tuple(values.tolist()) if 2 <= len(values) <= max_classes else ()


def action_weights_of(datasets: list[LatentClipDataset], n_actions: int, exponent: float) -> torch.Tensor:
    """(n_actions,) frame loss weights: each action's frequency in the training data (every view's) to the power
    -exponent, scaled so that a frame of the data weighs 1 on average; an action the data never shows weighs as the
    rarest one that it does."""
    actions = np.concatenate([shard.arrays["actions"] for data in datasets for shard in data.shards])
    counts = np.bincount(actions[actions >= 0], minlength=n_actions)[:n_actions].astype(np.float64)
    freq = counts / max(counts.sum(), 1)
    seen = freq > 0
    w = np.ones(n_actions)
    if seen.any():
        w[seen] = freq[seen] ** -exponent
        w[~seen] = w[seen].max()
        w /= (freq * w).sum()
    return torch.tensor(w, dtype=torch.float32)


REENCODE_SUFFIX = {True: "_re", False: "_raw"}  # eval_reencode's keys: the flipped setting's rollouts


def eval_table(logs: dict[str, float], horizons: list[int], denoise_steps: int, more_steps: list[int],
               clips: int, reencode: bool | None = None) -> str:
    """An evaluation as a small table: PSNR and cells right at each horizon, the model's (at each solver step count,
    and with diffusion.reencode the other way where `reencode`, the run's, is given) beside copy-last-frame's, which
    a model must beat to have learned anything about the world; then the reward head's agreement with the true
    rewards."""
    rows = [(f"model, {s} solver step{'s' if s > 1 else ''}", "", "" if s == denoise_steps else f"_s{s}")
            for s in dict.fromkeys([denoise_steps, *more_steps])]  # (label, key prefix, key suffix)
    if reencode is not None:
        rows.insert(1, ("  reencoded" if not reencode else "  not reencoded", "", REENCODE_SUFFIX[not reencode]))
    rows.append(("copy last frame", "copy_", ""))
    lines = [f"  {clips} held-out rollouts (EMA weights)".ljust(36) + "".join(f"{f'h{hz}':>9}" for hz in horizons)]
    for title, metric, fmt in (("psnr dB", "psnr", "{:.2f}"), ("cells right", "tiles", "{:.1%}")):
        for label, prefix, suffix in rows:
            names = [f"{prefix}{metric}_h{hz}{suffix}" for hz in horizons]
            if all(n in logs for n in names):  # tiles only for Craft2D
                lines.append(f"  {title:12}{label:22}" + "".join(f"{fmt.format(logs[n]):>9}" for n in names))
                title = ""  # named on its first row only
    if "reward_r" in logs:
        f1 = f", F1 of reward events {logs['reward_f1']:.2f}" if "reward_f1" in logs else ""
        lines.append(f"  reward head, teacher-forced on held-out clips ({logs['reward_events']:.0f} rewards): "
                     f"correlation {logs['reward_r']:.2f}{f1}")
    if "dream_reward_recall" in logs:
        lines.append(f"  reward head in the dream: {logs['dream_reward_recall']:.0%} of "
                     f"{logs['dream_reward_events']:.0f} held-out rewards paid (within a step), "
                     f"{logs['dream_false_per_100']:.2f} false payments per 100 steps of the rollouts")
    return "\n".join(lines)


def run(cfg: TrainWorldConfig) -> dict[str, float]:
    print(show(cfg), end="")
    return train(build_task(cfg), cfg.optim, cfg.loop, resolve_device(cfg.loop.device))
