"""`worldsim train reward`: a reward/end model (worldsim/models/reward.py) for a trained world model, with the loop every
`worldsim train` task shares (resume, EMA, bf16 where it is fast, torchrun).

    worldsim train reward world=CKPT data=DIR [views=[DIR,...] init=CKPT optim.steps=N loop.out=DIR ...]

It learns on the latents the world's autoencoder makes of the datasets (the caches `worldsim train world` encodes, made
here where missing): from the `history` latent frames before a step and its action, the step's reward (one of the
data's few distinct rewards) and whether the episode ended. Rewards are rare (Craft2D pays ~1 step in 800), so a share of
each batch is drawn from the clips that pay or end (`event_share`). Each clip of `history + 1` frames gives `history`
examples: the step after each frame, its earlier frames standing in for those before the clip, as a world's first
frame does at play. `init=` starts from another checkpoint's reward model, one that read the same autoencoder's
latents: a world fine-tuned from the same autoencoder keeps its reward model, continued on its file.

The checkpoint it writes (loop.out/last.safetensors) is the world, whole, with the reward model added ("reward.*",
metadata reward_config; the world's own run config kept as world_config): Dream-v0, the probes and `worldsim play`
take it as they take the world. Its threshold (the probability of a reward above which a step pays) is chosen on
every held-out step at each save, and the evaluation scores each half of them at the threshold chosen on the other.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import MISSING

from worldsim.checkpoint import component, load_checkpoint, load_init, load_world, prefixed, read_metadata
from worldsim.config import check, show, to_dict
from worldsim.data.latents import LatentClipDataset, ViewBuckets
from worldsim.data.loader import ClipDataset
from worldsim.data.shards import read_manifest
from worldsim.device import resolve_device
from worldsim.models.reward import RewardModel, RewardModelConfig
from worldsim.train import dist
from worldsim.train.loop import LoopConfig, OptimConfig, Task, train
from worldsim.train.world import best_threshold, cache_dir, encode_caches, reward_values

EVAL_BATCH = 4096  # held-out steps a forward pass
MAX_CLASSES = 8  # distinct rewards it classifies among, as the world's heads (reward_classes)


@dataclass(frozen=True)
class TrainRewardConfig:
    world: str = field(default=MISSING, metadata={"help": "the world-model checkpoint (worldsim train world) whose "
                                                          "latents it reads and whose file it extends"})
    data: str = field(default=MISSING, metadata={"help": "dataset directory (worldsim collect) of the world's game"})
    views: list[str] = field(default_factory=list, metadata={"help": "more datasets of the same game, any frame "
                                                                     "size; a batch is drawn from one of them"})
    init: str | None = field(default=None, metadata={"help": "start from this checkpoint's reward model (of a world "
                                                             "with the same autoencoder: it reads the same latents), "
                                                             "e.g. to carry it onto a fine-tuned world"})
    history: int = field(default=2, metadata={"help": "latent frames before a step the model reads"})
    width: int = field(default=64, metadata={"help": "channels of the model's convolutions"})
    depth: int = field(default=3, metadata={"help": "convolutions: a 3x3 one, then depth - 1 of `kernel`"})
    kernel: int = field(default=3, metadata={"help": "kernel of the convolutions after the first (1: the model sees "
                                                     "each cell's 3x3 neighbourhood alone)"})
    after: bool = field(default=False, metadata={"help": "read the frame the step made as well (in a dream, the frame "
                                                        "the world drew), as DIAMOND's reward/end model does"})
    after_dropout: float = field(default=0.0, metadata={"help": "share of training examples (with after) whose frame "
                                                                "made is replaced by the one before it, as a dream "
                                                                "that draws nothing new shows it: the model also "
                                                                "learns what foretells an event"})
    batch_size: int = field(default=256, metadata={"help": "clips per step (each gives `history` examples)"})
    event_share: float = field(default=0.25, metadata={"help": "share of each batch drawn from the clips that pay "
                                                               "or end"})
    holdout: float = field(default=0.05, metadata={"help": "fraction of episodes held out (the world's split: the "
                                                           "same hash of each episode's seed)"})
    terminated_weight: float = field(default=1.0, metadata={"help": "weight of the termination loss"})
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(steps=3000, lr=1e-3, warmup=100, ema=0.99))
    loop: LoopConfig = field(default_factory=lambda: LoopConfig(out="runs/reward", eval_every=1000))

    def __post_init__(self):
        check(bool(self.world), "world", self.world, "a world-model checkpoint (worldsim train world)")
        check(bool(self.data), "data", self.data, "a dataset directory (worldsim collect)")
        check(self.init != "", "init", "", "a checkpoint with a reward model, or null")
        check(self.history >= 1, "history", self.history, "latent frames >= 1")
        check(self.width >= 1 and self.depth >= 1, "width, depth", (self.width, self.depth), "integers >= 1")
        check(self.kernel in (1, 3), "kernel", self.kernel, "1 or 3")
        check(0.0 <= self.after_dropout <= 1.0 and (self.after or not self.after_dropout), "after_dropout",
              self.after_dropout, "a share in [0, 1], and 0 without after=true")
        check(self.batch_size >= 1, "batch_size", self.batch_size, "clips per step >= 1")
        check(0.0 <= self.event_share <= 1.0, "event_share", self.event_share, "a share of the batch in [0, 1]")
        check(0.0 < self.holdout < 1.0, "holdout", self.holdout, "a fraction in (0, 1): the threshold is chosen on "
                                                                 "held-out episodes")
        check(self.terminated_weight >= 0, "terminated_weight", self.terminated_weight, "a weight >= 0")


def examples(latents: torch.Tensor, actions: torch.Tensor, k: int, last_only: bool = False, after: bool = False):
    """The examples of clips (B, k + 1, C, h, w) with their actions (B, k + 1): (frames (N, k, C, h, w), actions
    (N,), the frame index each predicts (N,)); the step to frame t reads frames t-k..t-1, the clip's first frame
    standing in for those before it, and frame t itself with `after` (N, k + 1, C, h, w). `last_only`: the clip's
    last step alone (every step of an episode once, over all its clips)."""
    steps = [k] if last_only else range(1, k + 1)
    hist = [latents[:, [max(0, t - k + j) for j in range(k)] + ([t] if after else [])] for t in steps]
    return torch.cat(hist), torch.cat([actions[:, t] for t in steps]), list(steps)


def build_task(cfg: TrainRewardConfig) -> Task:
    world = load_world(cfg.world)
    meanings = world.metadata["action_meanings"]
    for d in (cfg.data, *cfg.views):
        theirs = read_manifest(Path(d)).get("action_meanings")
        check(theirs == meanings, "data" if d == cfg.data else "views", d,
              f"a dataset of the world's game, with its actions {meanings} (it has {theirs})")
    k = cfg.history
    # before anything is encoded: the frame datasets hold the same rewards and clips as their caches will
    frames = [ClipDataset(d, k + 1, "train", cfg.holdout) for d in (cfg.data, *cfg.views)]
    values = reward_values(frames, MAX_CLASSES)
    check(0.0 in values, "data", cfg.data, f"data whose steps pay 2 to {MAX_CLASSES} distinct rewards, 0 among them "
                                           "(a step pays or not), with its views: these pay one value alone, or "
                                           "more kinds than that")
    check(not cfg.event_share or any(len(f.event_clips()) for f in frames), "event_share", cfg.event_share,
          "0 for this data: none of its training clips pays or ends")
    rcfg = RewardModelConfig(latent_channels=world.ae.cfg.latent_channels, n_actions=world.dit.config.n_actions,
                             values=values, history=k, width=cfg.width, depth=cfg.depth, kernel=cfg.kernel,
                             after=cfg.after)
    if cfg.init:
        _check_init(cfg.init, cfg.world, world.ae.state_dict(), rcfg)
    caches = [(d, cache_dir(d, world.ae)) for d in (cfg.data, *cfg.views)]
    encode_caches(world.ae, caches, str(cfg.world))
    sets = [LatentClipDataset(cache, k + 1, "train", cfg.holdout) for _, cache in caches]
    buckets = ViewBuckets(sets)
    heldout = [_heldout(cache, k, cfg.holdout, cfg.after) for _, cache in caches]
    heldout = [h for h in heldout if h is not None]
    check(bool(heldout), "holdout", cfg.holdout, "a share that leaves some held-out episodes longer than history + 1 "
                                                 "frames: the threshold is chosen on them")
    torch.manual_seed(cfg.loop.seed)
    model = RewardModel(rcfg)
    if cfg.init:
        load_init(model, cfg.init, "reward", "reward/end model", "`worldsim train reward`",
                  "set width=, depth=, kernel=, history= and after= to its reward_config's")
    table = torch.tensor(values)

    def batch(r: np.random.Generator):
        b = buckets.sample(cfg.batch_size, r, cfg.event_share)
        return tuple(torch.from_numpy(np.asarray(a)) for a in (b.latents, b.actions, b.rewards, b.terminated))

    def loss(m, b, gen, rows):
        device = next(m.parameters()).device
        latents, actions, rewards, ended = (t[rows].to(device) for t in b)
        hist, acts, steps = examples(latents, actions, k, after=cfg.after)
        if cfg.after_dropout:  # (N, k + 1, C, h, w): some examples see the frame before where the made one was
            drop = torch.rand(len(hist), generator=gen, device=gen.device) < cfg.after_dropout
            made = torch.where(drop[:, None, None, None, None], hist[:, k - 1:k], hist[:, k:])  # (N, 1, C, h, w)
            hist = torch.cat([hist[:, :k], made], 1)
        logits, end_logit = m(hist, acts)
        classes = (torch.cat([rewards[:, t] for t in steps]).float()[:, None] - table.to(device)).abs().argmin(-1)
        r_loss = F.cross_entropy(logits.float(), classes)
        e_loss = F.binary_cross_entropy_with_logits(end_logit.float(), torch.cat([ended[:, t] for t in steps]).float())
        value = r_loss + cfg.terminated_weight * e_loss
        return value, {"loss": value.item(), "reward_loss": r_loss.item(), "terminated_loss": e_loss.item()}

    def evaluate(m) -> dict[str, float]:
        return agreement(m, heldout)

    def report(logs: dict[str, float]) -> str:
        return (f"  {logs['events']:.0f} rewards on {logs['steps']:.0f} held-out steps (EMA weights): F1 of reward "
                f"events {logs['reward_f1']:.2f} (recall {logs['reward_recall']:.0%}, precision "
                f"{logs['reward_precision']:.0%}; each half at the threshold chosen on the other), endings "
                f"{logs['ends']:.0f}: F1 {logs['end_f1']:.2f}")

    tensors, _ = load_checkpoint(cfg.world)
    world_tensors = {name: t for name, t in tensors.items() if not name.startswith("reward.")}  # one reward model
    world_meta = {key: v for key, v in world.metadata.items()
                  if key not in ("format_version", "kind", "step", "reward_config", "world_config")}

    def export(ema: dict[str, torch.Tensor], final: bool) -> dict[str, torch.Tensor]:
        scratch = RewardModel(rcfg)
        scratch.load_state_dict(ema)
        scores, events, _ = _scores(scratch, heldout)
        ema = {**ema, "threshold": torch.tensor(best_threshold(scores, events))}
        return {**world_tensors, **prefixed(ema, "reward")}

    config = to_dict(cfg)
    metadata = {**world_meta, "config": config, "reward_config": asdict(rcfg),
                "world_config": world.metadata.get("world_config", world.metadata["config"])}
    return Task(name="reward", model=model, batch=batch, loss=loss, evaluate=evaluate, report=report, export=export,
                metadata=metadata, defaults=to_dict(type(cfg)),
                data_id=dist.fingerprint([s.manifest for s in sets]),
                tokens_per_batch=cfg.batch_size * k)  # examples a step: the progress bar's "tok/s"


def _check_init(path: str, world_path: str, own: dict[str, torch.Tensor], rcfg: RewardModelConfig) -> None:
    """init= must hold a reward model of this run's shape that read the latents of this world's autoencoder (`own`,
    its weights, as loaded): a reward model of another autoencoder's latents would pay at random."""
    theirs = read_metadata(path).get("reward_config")
    check(theirs is not None, "init", path, "a checkpoint with a reward model (one `worldsim train reward` wrote)")
    theirs = asdict(RewardModelConfig(**theirs))
    differ = {key: v for key, v in asdict(rcfg).items() if theirs[key] != v}
    check(not differ, "init", path, "a reward model of this run's shape; its reward_config has " + ", ".join(
        f"{key}={theirs[key]} (this run: {v})" for key, v in differ.items()) + " (set width=, depth=, kernel=, "
        "history=, after= to its; values come from the data)")
    other = component(load_checkpoint(path)[0], "ae")
    check(own.keys() == other.keys() and all(torch.equal(own[n], other[n]) for n in own), "init", path,
          f"a checkpoint whose autoencoder is world={world_path}'s: its reward model read other latents (train one "
          "from scratch without init=)")


def _heldout(cache: str, k: int, holdout: float, after: bool) -> tuple[torch.Tensor, ...] | None:
    """Every held-out step of a latent cache after an episode's first `k`, as (histories, actions, rewards,
    terminated); None when no held-out episode is that long."""
    try:
        val = LatentClipDataset(cache, k + 1, "val", holdout)
    except ValueError:
        return None
    b = val.get(np.arange(len(val)))  # every clip: every step once as a clip's last
    hist, acts, _ = examples(torch.from_numpy(b.latents), torch.from_numpy(b.actions), k, last_only=True, after=after)
    return hist, acts, torch.from_numpy(b.rewards[:, k]), torch.from_numpy(np.asarray(b.terminated[:, k], bool))


@torch.no_grad()
def _scores(m: RewardModel, heldout) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(probability of a reward (N,), reward events (N,) bool, termination logits (N,)) over the held-out steps."""
    was_training = m.training
    m.eval()
    device = next(m.parameters()).device
    scores, ends = [], []
    for hist, acts, _, _ in heldout:
        for i in range(0, len(hist), EVAL_BATCH):
            logits, end = m(hist[i:i + EVAL_BATCH].to(device), acts[i:i + EVAL_BATCH].to(device))
            scores.append(m.scores(logits).cpu())
            ends.append(end.float().cpu())
    m.train(was_training)
    events = torch.cat([rewards != 0 for _, _, rewards, _ in heldout])
    return torch.cat(scores), events, torch.cat(ends)


def agreement(m: RewardModel, heldout) -> dict[str, float]:
    """The reward model against the held-out steps: F1, recall and precision of reward events, each half of the steps
    scored at the threshold chosen on the other (alternate steps: both halves span the episodes), and the F1 of
    endings (logit > 0)."""
    scores, events, end_logits = _scores(m, heldout)
    ended = torch.cat([t for *_, t in heldout])
    paid = torch.zeros_like(events)
    halves = torch.arange(len(scores)) % 2
    for half in (0, 1):
        fit, scored = halves != half, halves == half
        paid[scored] = scores[scored] > best_threshold(scores[fit], events[fit])
    hits, said = float((paid & events).sum()), float(paid.sum())
    n_events, ends = float(events.sum()), float(ended.sum())
    end_hits, end_said = float(((end_logits > 0) & ended).sum()), float((end_logits > 0).sum())
    return {"steps": float(len(scores)), "events": n_events, "reward_f1": 2 * hits / max(1.0, said + n_events),
            "reward_recall": hits / max(1.0, n_events), "reward_precision": hits / max(1.0, said),
            "ends": ends, "end_f1": 2 * end_hits / max(1.0, end_said + ends)}


def run(cfg: TrainRewardConfig) -> dict[str, float]:
    print(show(cfg), end="")
    return train(build_task(cfg), cfg.optim, cfg.loop, resolve_device(cfg.loop.device))
