"""Flow matching with a noise level per chunk (diffusion forcing), its loss, and a few-step sampler.

Notation (rectified flow): a clean latent chunk x0, noise eps ~ N(0, I), noise level sigma in [0, 1],
    x_sigma = (1 - sigma) * x0 + sigma * eps,        velocity v = eps - x0 = d x_sigma / d sigma.
The network predicts v (prediction="velocity") or x0 (prediction="x0", turned into v = (x_sigma - x0) / sigma
for the sampler). Every chunk of a training clip gets its own sigma, so the model learns to denoise a chunk
whatever the state of the others; at play time the history is clean (or at `history_sigma`) and only the new chunk
starts from pure noise and is integrated from sigma = 1 to 0 in `denoise_steps` Euler steps.
With `history="clean"` a training clip also runs as a clean copy beside the noisy one, and each noisy chunk is
denoised against the clean chunks before it: what play time does, rather than a history as noisy as diffusion forcing
draws it (the fidelity ladder in the README measured it: 96.6 against 92.0% of cells right one step ahead).

Why flow matching: straight paths make few-step Euler sampling usable, and the target (eps - x0) has the same scale
at every noise level, so one unweighted MSE trains all of them. The step count is chosen by measurement (the note of
the world-model issue): each solver step is one transformer pass, the dominant cost of a simulator step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from worldsim.config import check


@dataclass(frozen=True)
class DiffusionConfig:
    sigma_mean: float = 0.0  # logit-normal sigma in training: most samples mid-way, where learning is hardest
    sigma_std: float = 1.0  # spread of that logit-normal: larger puts more samples near clean and near pure noise
    clean_prob: float = 0.1  # chance a chunk is given sigma 0 in training: clean history, as at play time
    noise_prob: float = 0.0  # chance a chunk is given sigma 1 in training: pure noise, as the first solver pass sees
    #                          it; the pass a model with dit.heads_read="action" reads its reward from, so its heads
    #                          learn on these chunks alone
    history_sigma: float = 0.0  # noise level the history is shown at in play (a little can stabilise long rollouts)
    reencode: bool = False  # play: every frame enters the history as the autoencoder encodes its picture (decoded
    #                         to uint8): a dreamt frame as the step shows it, not as the solver left it, and a given
    #                         one (reset) after the same round trip, so the history is one kind of latent throughout
    #                         (one encoder pass a step). Measured (README, ladder): it lifts six probe families of
    #                         seven; the dreamt frames alone, real ones as they encode, kept less of it
    denoise_steps: int = 2  # Euler steps per new chunk at play time
    shift: float = 1.0  # > 1 spends more of the steps at high noise (sigma' = shift*s / (1 + (shift-1)*s))
    prediction: str = "x0"  # what the network outputs: "x0" (the clean chunk; its MSE is v's weighted by sigma^2,
    #                         so low noise counts less) or "velocity" (v, unweighted MSE). x0 measured better at every
    #                         horizon and step count (Craft2D, preset S, 700 steps each: cells right one step ahead
    #                         at 2 solver steps 73.1% vs 68.2%, 32 steps ahead 40.7% vs 37.0%)
    history: str = "noisy"  # how training shows a chunk its history: "noisy", the clip's own chunks at their noise
    #                         levels (diffusion forcing: one stream, but mostly noisier history than play's clean one);
    #                         "clean", a clean copy of the clip beside it, as the cache holds at play time (2x tokens)
    history_noise: float = 0.0  # history="clean": each history chunk noised to a level drawn in [0, this] (against
    #                             drift: the model learns not to trust its own frames blindly)
    history_dropout: float = 0.0  # history="clean": chance a chunk is denoised against only the latest k history
    #                               chunks before it and no memory, k drawn in [1, history_dropout_window]: the short
    #                               pass history guidance contrasts with (history_window), learnt as the whole
    #                               history is (History-Guided Video Diffusion trains on random history masks).
    #                               Measured (README, ladder, "History dropout"): at 0.25 for 50 CPU minutes, below
    #                               its baseline in causality, stability and reward in two draws
    history_dropout_window: int = 4  # the most history chunks a dropped history keeps
    self_history: float = 0.0  # history="clean": chance a history chunk is replaced by the model's own one-pass
    #                            prediction of it (error recycling against drift: the next chunk is then learnt
    #                            against the kind of mistakes play feeds back; one more no-grad pass a step)
    self_rollout: int = 0  # history="clean": in a share self_rollout_share of the clips, a stretch of up to this many
    #                        history chunks (from one random chunk on, the same for the batch) is replaced by the
    #                        model's own autoregressive rollout of it, sampled as play samples (denoise_steps passes a
    #                        chunk against a KV cache, no caption) from the real chunks before it under the clip's
    #                        actions; the chunks after it are learnt against the drift play feeds back, compounded over
    #                        up to this many of its own steps (Self-Forcing's roll-out, with the real chunks as
    #                        targets). Costs denoise_steps + 1 cached no-grad passes a rolled chunk; 0: off.
    #                        Measured (README, fidelity ladder): K = 2 and 4 level on the walks with physics down,
    #                        K = 16 unlearns scrolling (its rollouts fall under copying the last frame)
    self_rollout_share: float = 0.5  # the share of a batch's clips whose history is rolled out (the rest stays real)
    change_weight: float = 0.0  # extra loss weight on the patches whose clean latents changed since the last frame
    action_balance: float = 0.0  # a frame's loss weight goes as its action's frequency in the training data to the
    #                              power -action_balance (1: every action weighs alike in all; 0: every frame alike):
    #                              the rare actions, which make the rare changes, count for more
    action_dropout: float = 0.0  # chance a chunk's action is replaced by "none" (-1) in training: the model also
    #                              learns the frame no matter the action, which action guidance contrasts with
    action_guidance: float = 1.0  # play: classifier-free guidance on the action, out = none + g * (action - none)
    #                               (1: the conditioned model alone; more makes the action's own effect stronger;
    #                               one more conditioning in each solver pass's call, ~1.2x a step at batch 1;
    #                               "none" is the row of an episode's first frame, which action_dropout trains on
    #                               more frames)
    history_guidance: float = 1.0  # play: guidance on the older history, out = short + g * (full - short), where
    #                                "short" is the pass that sees only the latest history_window cached frames (as
    #                                a clip's early chunks do in training): g > 1 makes what the older frames say
    #                                count for more (History-Guided Video Diffusion's temporal guidance, on the
    #                                cached K/V: those of the latest frames still carry some of the older ones
    #                                through the layers); one more conditioning in each solver pass's call; 1: none.
    #                                Measured (README, ladder): the view follows a walk longer, the world lives less
    history_window: int = 4  # the cached frames the short-history pass of history_guidance sees
    caption_dropout: float = 0.5  # chance a chunk's caption is dropped in training: the unconditioned model, which
    #                               plays every step after a prompt's first frame and which classifier-free guidance
    #                               contrasts with, is trained as much as the conditioned one
    reward_weight: float = 0.1  # reward MSE (or cross-entropy over the reward classes) beside the denoising loss
    terminated_weight: float = 0.1  # the termination head's BCE, weighted apart from the reward's loss

    def __post_init__(self):
        check(self.prediction in PREDICTIONS, "prediction", self.prediction, f"one of {PREDICTIONS}")
        check(self.history in HISTORIES, "history", self.history, f"one of {HISTORIES}")
        check(0.0 <= self.history_noise < 1.0, "history_noise", self.history_noise, "a noise level in [0, 1)")
        check(0.0 <= self.self_history <= 1.0 and (self.self_history == 0 or self.history == "clean"),
              "self_history", self.self_history, "a probability in [0, 1], above 0 only with history='clean'")
        alone = self.history == "clean" and self.self_history == 0
        check(self.self_rollout >= 0 and (self.self_rollout == 0 or alone), "self_rollout", self.self_rollout,
              "a number of chunks >= 0, above 0 only with history='clean' and without self_history")
        check(0.0 <= self.history_dropout < 1.0 and (self.history_dropout == 0 or self.history == "clean"),
              "history_dropout", self.history_dropout, "a probability in [0, 1), above 0 only with history='clean'")
        check(self.history_dropout_window >= 1, "history_dropout_window", self.history_dropout_window,
              "an integer >= 1 (history chunks)")
        check(0.0 < self.self_rollout_share <= 1.0, "self_rollout_share", self.self_rollout_share, "a share in (0, 1]")
        check(self.change_weight >= 0, "change_weight", self.change_weight, "a weight >= 0 (0: every patch alike)")
        check(0.0 <= self.action_balance <= 1.0, "action_balance", self.action_balance,
              "an exponent in [0, 1] (0: every frame alike, 1: every action alike)")
        check(0.0 <= self.action_dropout < 1.0, "action_dropout", self.action_dropout, "a probability in [0, 1)")
        check(math.isfinite(self.action_guidance) and self.action_guidance >= 0, "action_guidance",
              self.action_guidance, "a finite scale >= 0 (1: none)")
        check(math.isfinite(self.history_guidance) and self.history_guidance >= 0, "history_guidance",
              self.history_guidance, "a finite scale >= 0 (1: none)")
        check(self.history_window >= 1, "history_window", self.history_window, "an integer >= 1 (cached frames)")
        check(0.0 <= self.caption_dropout <= 1.0, "caption_dropout", self.caption_dropout, "a probability in [0, 1]")
        check(self.denoise_steps >= 1, "denoise_steps", self.denoise_steps, "an integer >= 1")
        check(0.0 <= self.clean_prob <= 1.0, "clean_prob", self.clean_prob, "a probability in [0, 1]")
        check(0.0 <= self.noise_prob <= 1.0 and self.clean_prob + self.noise_prob <= 1.0, "noise_prob",
              self.noise_prob, f"a probability in [0, 1 - clean_prob = {1 - self.clean_prob:g}]")
        check(0.0 <= self.history_sigma < 1.0, "history_sigma", self.history_sigma, "a noise level in [0, 1)")
        check(isinstance(self.reencode, bool), "reencode", self.reencode, "true or false")
        check(self.sigma_std > 0, "sigma_std", self.sigma_std, "> 0")
        check(self.shift > 0, "shift", self.shift, "> 0 (1: no shift)")
        check(self.reward_weight >= 0 and self.terminated_weight >= 0, "reward_weight, terminated_weight",
              (self.reward_weight, self.terminated_weight), "weights >= 0")


PREDICTIONS = ("velocity", "x0")
HISTORIES = ("noisy", "clean")


def sample_sigma(cfg: DiffusionConfig, shape: tuple[int, ...], generator: torch.Generator | None = None,
                 device: torch.device | str = "cpu") -> torch.Tensor:
    """Per-chunk training noise levels (B, n_chunks): logit-normal, with some chunks clean and some pure noise."""
    z = torch.randn(shape, generator=generator, device=device) * cfg.sigma_std + cfg.sigma_mean
    sigma = torch.sigmoid(z)
    u = torch.rand(shape, generator=generator, device=device)
    sigma = sigma.masked_fill(u < cfg.clean_prob, 0.0)
    return sigma.masked_fill((u >= cfg.clean_prob) & (u < cfg.clean_prob + cfg.noise_prob), 1.0)


def add_noise(x0: torch.Tensor, sigma: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """x0, eps (B, T, C, h, w); sigma (B, n_chunks) with T = n_chunks * pt, broadcast over each chunk's frames."""
    b, t = x0.shape[:2]
    pt = t // sigma.shape[1]
    s = sigma.repeat_interleave(pt, dim=1).view(b, t, 1, 1, 1)  # (B, T, 1, 1, 1)
    return (1 - s) * x0 + s * eps


def training_loss(model, x0: torch.Tensor, actions: torch.Tensor, rewards: torch.Tensor, terminated: torch.Tensor,
                  cfg: DiffusionConfig,
                  generator: torch.Generator | None = None,
                  rows: slice = slice(None), text: torch.Tensor | None = None,
                  action_weights: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """One diffusion-forcing loss on a clip.

    x0 (B, T, C, h, w) clean latents; actions (B, n_chunks) int64 (-1: no action); rewards, terminated (B, n_chunks).
    `rows`: the rows of the batch whose loss this process computes (distributed training: its share of the global
    batch); the noise is drawn for the whole batch and sliced, so N processes draw exactly what one does.
    `text` (B, n_chunks, L): each chunk's caption as word ids (DiT.tokenize), dropped with cfg.caption_dropout.
    `action_weights` (n_actions,): each action's frame loss weight (action_weights_of; an unknown action, -1,
    weighs 1), normalised over the batch to mean 1.
    """
    b = x0.shape[0]
    n_chunks = actions.shape[1]
    sigma = sample_sigma(cfg, (b, n_chunks), generator, x0.device)
    eps = torch.randn(x0.shape, generator=generator, device=x0.device)
    if cfg.history == "clean":
        level = torch.rand((b, n_chunks), generator=generator, device=x0.device) * cfg.history_noise
        noise = torch.randn(x0.shape, generator=generator, device=x0.device)
        if cfg.self_history > 0:
            own = torch.rand((b, n_chunks), generator=generator, device=x0.device) < cfg.self_history
            own[:, 0] = False  # a clip's first chunk has no history to be predicted from: it stays real
        rolling = cfg.self_rollout > 0 and n_chunks > 2  # a rolled chunk needs real ones before it and one after it
        if rolling:
            first = int(torch.randint(1, n_chunks - 1, (1,), generator=generator))  # the stretch's first rolled chunk
            rolled = torch.rand((b,), generator=generator, device=x0.device) < cfg.self_rollout_share
        if cfg.self_history > 0 or rolling:  # the noise the model's own chunks are sampled from
            start = torch.randn(x0.shape, generator=generator, device=x0.device)
        if cfg.history_dropout > 0:  # (B, n_chunks) history chunks each noisy chunk sees, 0: all
            kept = torch.randint(1, cfg.history_dropout_window + 1, (b, n_chunks), generator=generator,
                                 device=x0.device)
            short = torch.rand((b, n_chunks), generator=generator, device=x0.device) < cfg.history_dropout
            recent = torch.where(short, kept, 0)
    # normalised over the whole batch, as one process does
    weights = change_weights(x0, model.config.patch, cfg.change_weight) if cfg.change_weight > 0 else None
    if action_weights is not None:  # before action dropout: a frame weighs as the action that made it
        pt = x0.shape[1] // n_chunks
        by_action = torch.where(actions >= 0, action_weights.to(x0.device)[actions.clamp_min(0)], 1.0)  # (B, n)
        by_action = by_action.repeat_interleave(pt, dim=1).view(b, -1, 1, 1, 1)
        weights = by_action if weights is None else weights * by_action
        weights = weights / weights.mean()
    weights = None if weights is None else weights[rows]
    played = actions  # the rollout is played under the clip's own actions, as play is: before action dropout
    if cfg.action_dropout > 0:
        unknown = torch.rand((b, n_chunks), generator=generator, device=x0.device) < cfg.action_dropout
        actions = actions.masked_fill(unknown, -1)  # as an episode's first frame: no action known
    if text is not None:
        dropped = torch.rand((b, n_chunks), generator=generator, device=x0.device) < cfg.caption_dropout
        text = text.masked_fill(dropped[..., None], 0)[rows]  # all padding: no caption
    dit = getattr(model, "config", None)  # a DiT's config (a stand-in model may have none: no memory)
    # a model with a memory keeps the chunks whose absolute index is a multiple of its stride: the clip starts at any
    # phase of it, as a world reset mid-way through a vector env's steps does
    at = {"t_start": int(torch.randint(0, dit.memory_stride, (1,), generator=generator))} \
        if getattr(dit, "memory", 0) else {}
    x0, actions, played, rewards, terminated, sigma, eps = (
        t[rows] for t in (x0, actions, played, rewards, terminated, sigma, eps))
    history = {}
    if cfg.history == "clean":
        level, noise = level[rows], noise[rows]
        shown = x0
        if cfg.self_history > 0:
            shown = own_history(model, x0, start[rows], own[rows], actions, cfg.prediction, text, at)
        elif rolling:
            shown = own_rollout(model, x0, start[rows], rolled[rows], first, min(first + cfg.self_rollout, n_chunks),
                                played, cfg, at.get("t_start", 0))
        history = {"history": add_noise(shown, level, noise), "history_sigma": level}
        if cfg.history_dropout > 0:
            history["recent"] = recent[rows]
    out = model(add_noise(x0, sigma, eps), sigma, actions, **history, **at, **({} if text is None else {"text": text}))
    target = eps - x0 if cfg.prediction == "velocity" else x0
    err = (out.out.float() - target.float()) ** 2  # (B, T, C, h, w)
    if weights is not None:
        err = err * weights  # (B, T, 1, h, w)
    denoise_loss = err.mean()
    values = getattr(dit, "reward_values", ())
    if values:  # classes: the index of the nearest value
        classes = (rewards.float()[..., None] - torch.tensor(values, device=x0.device)).abs().argmin(-1)
        r_loss = F.cross_entropy(out.reward.float().flatten(0, 1), classes.flatten(), reduction="none")
    else:
        r_loss = F.mse_loss(out.reward.float(), rewards.float(), reduction="none").flatten()
    d_loss = F.binary_cross_entropy_with_logits(out.terminated_logit.float(), terminated.float(),
                                                reduction="none").flatten()
    if getattr(dit, "heads_read", "frame") == "action":
        # the heads are read where the new chunk is pure noise: they learn there alone, from the history and the action
        read = (sigma == 1.0).flatten().float()  # (B * n_chunks,)
        r_loss, d_loss = ((l * read).sum() / read.sum().clamp_min(1) for l in (r_loss, d_loss))
    else:
        r_loss, d_loss = r_loss.mean(), d_loss.mean()
    loss = denoise_loss + cfg.reward_weight * r_loss + cfg.terminated_weight * d_loss
    return loss, {"loss": loss.item(), "denoise_loss": denoise_loss.item(), "reward_loss": r_loss.item(),
                  "terminated_loss": d_loss.item()}


@torch.no_grad()
def own_history(model, x0: torch.Tensor, start: torch.Tensor, own: torch.Tensor, actions: torch.Tensor,
                prediction: str = "x0", text: torch.Tensor | None = None, at: dict | None = None) -> torch.Tensor:
    """x0 (B, T, C, h, w) with each chunk where `own` (B, n_chunks) is true replaced by the model's own prediction of
    it: one pass from the noise `start` at sigma 1 against the real history before it, a one-step sample as play
    makes them. `at`: the clip's t_start, for a model with a memory."""
    b, t = x0.shape[:2]
    ones = torch.ones(own.shape, device=x0.device)
    out = model(start, ones, actions, history=x0, history_sigma=torch.zeros_like(ones), **(at or {}),
                **({} if text is None else {"text": text})).out.to(x0.dtype)  # (B, T, C, h, w)
    pred = out if prediction == "x0" else start - out  # velocity: x0 = x_sigma - sigma * v, at sigma 1
    mask = own.repeat_interleave(t // own.shape[1], dim=1).view(b, t, 1, 1, 1)  # (B, T, 1, 1, 1)
    return torch.where(mask, pred, x0)


@torch.no_grad()
def own_rollout(model, x0: torch.Tensor, noise: torch.Tensor, rolled: torch.Tensor, first: int, end: int,
                actions: torch.Tensor, cfg: DiffusionConfig, t_start: int = 0) -> torch.Tensor:
    """x0 (B, T, C, h, w) with chunks first..end-1 of the rows `rolled` (B,) replaced by the model's own rollout of
    them, as play makes it: each chunk sampled from `noise` (like x0) in cfg.denoise_steps Euler steps against a KV
    cache of the chunks before it (real up to `first`, its own after), under the clip's actions (B, n_chunks) and no
    caption, then cached clean. The cache computes what the clip's forward pass would (the KV cache's tests), one chunk
    at a time."""
    dit = getattr(model, "module", model)  # the DiT itself under a distributed wrapper: forward_chunk is its own
    pt, b = dit.config.patch[0], x0.shape[0]
    cache, shown = dit.new_cache(b), x0.clone()
    keep = rolled.view(b, 1, 1, 1, 1)  # (B, 1, 1, 1, 1)
    for i in range(end):
        span, act, t = slice(i * pt, (i + 1) * pt), actions[:, i], t_start + i
        if i >= first:
            def velocity(x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
                return to_velocity(dit.forward_chunk(x, s, act, t, cache).out, x, s, cfg.prediction)
            own = sample(velocity, noise[:, span], cfg.denoise_steps, cfg.shift).to(x0.dtype)  # (B, pt, C, h, w)
            shown[:, span] = torch.where(keep, own, x0[:, span])
        if i < end - 1:  # the last rolled chunk is history for the next only in the training pass
            dit.forward_chunk(shown[:, span], 0.0, act, t, cache, write=True)
    return shown


def change_weights(x0: torch.Tensor, patch: tuple[int, int, int], weight: float) -> torch.Tensor:
    """(B, T, 1, h, w) loss weights: 1, plus `weight` on every latent of a patch that changed since the frame before
    (by more than a tenth of the latents' unit scale; a first frame counts as unchanged), normalised to mean 1 over the
    batch so the loss keeps its scale."""
    _, ph, pw = patch
    change = (x0[:, 1:] - x0[:, :-1]).abs().amax(2, keepdim=True)  # (B, T-1, 1, h, w)
    change = F.max_pool3d(change, (1, ph, pw)) if ph * pw > 1 else change  # a patch changes as a whole
    changed = F.interpolate(change, scale_factor=(1, ph, pw), mode="nearest") > 0.1
    w = 1 + weight * torch.cat([torch.zeros_like(changed[:, :1]), changed], 1).float()
    return w / w.mean()


def schedule(steps: int, shift: float = 1.0, device: torch.device | str = "cpu") -> torch.Tensor:
    """Noise levels from 1 to 0, `steps + 1` of them."""
    if steps < 1:
        raise ValueError(f"steps={steps}: expected at least 1 solver step")
    s = torch.linspace(1.0, 0.0, steps + 1, device=device)
    return shift * s / (1 + (shift - 1) * s)


def to_velocity(out: torch.Tensor, x: torch.Tensor, sigma: torch.Tensor, prediction: str) -> torch.Tensor:
    """The network's output for x at noise level sigma (B,) as a velocity: v as is, x0 as (x - x0) / sigma."""
    if prediction == "velocity":
        return out
    return (x - out) / sigma.view(-1, *([1] * (x.ndim - 1))).clamp_min(1e-4)  # the sampler never asks at sigma 0


@torch.no_grad()
def sample(velocity: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], noise: torch.Tensor, steps: int,
           shift: float = 1.0, start: float = 1.0) -> torch.Tensor:
    """Integrate dx/dsigma = v(x, sigma) from sigma = `start` to 0 with Euler steps; returns x0.

    `velocity(x, sigma)` gets x shaped like `noise` and sigma (B,), and returns v shaped like x. `noise` is x at
    sigma = start: pure noise from 1, or a clean latent noised to `start` (SDEdit: it keeps what the noise spared).
    """
    sigmas = schedule(steps, shift, noise.device) * start
    x = noise
    for s_from, s_to in zip(sigmas[:-1], sigmas[1:]):
        sigma = s_from.expand(noise.shape[0])  # (B,) one level for the whole new chunk
        x = x + (s_to - s_from) * velocity(x, sigma)  # s_to < s_from: a step towards the data
    return x
