"""Does the dream pay when the data paid? The reward probes' question, asked of a run's held-out data (any env).

Teacher-forced on true frames, a reward head finds the held-out events (`reward_agreement`); in play it reads the
frames the model drew, so it pays only for the events the dream draws. Held-out clips whose rollout steps hold a
reward are played in the dream from `eval_context` real frames with their recorded actions, as the run's other
held-out rollouts are: `dream_reward_recall` is the share of their rewards the dream pays within a step of the data
(the reward probes' matching, worldsim.probes.reward.match_events); on the run's ordinary held-out rollouts,
`dream_false_per_100` counts the payments no reward of the data matches, per 100 steps. Only for a reward head that
classifies with a threshold (a regression pays a little on every step).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from worldsim.data.loader import Batch, ClipDataset
from worldsim.data.shards import read_manifest
from worldsim.probes.reward import match_events


def event_clips(val: ClipDataset, context: int, most: int) -> np.ndarray:
    """Up to `most` indices of val's clips with a reward in their frames from `context` on (spread evenly over all
    such clips): one clip for each held-out reward that no clip chosen before scores, placed so that the rewards fall
    on every rollout step in turn (1 step after the real frames, then 2, ...), not all on the first or the last. A
    reward whose episode has too few frames around it for such a clip is left out."""
    steps, candidates = val.clip_len - context, val.event_clips()
    if most <= 0 or steps <= 0 or not len(candidates):  # none asked for, no rollout step, or data that never pays
        return np.zeros(0, np.int64)
    starts, shards = val.starts, val.shard_of
    picks, seen = [], set()
    for i, rewards in zip(candidates, val.rewards_of(candidates)):
        for f in np.flatnonzero(rewards[1:] != 0) + 1:  # frames that paid, as event_clips counts them
            row = (int(shards[i]), int(starts[i]) + int(f))
            if row in seen:  # the same reward, seen from an earlier clip
                continue
            seen.add(row)
            for k in range(steps):  # the next rollout step in turn, else the next one a clip fits around
                s = (len(picks) + k) % steps
                j = i + f - context - s  # the clip that shows this reward at rollout step s + 1
                if 0 <= j < len(val) and shards[j] == row[0] and starts[j] == row[1] - context - s:
                    picks.append(j)
                    # a reward in its other rollout steps is scored in it: no second clip for that one
                    seen.update((row[0], r) for r in range(row[1] - s, row[1] - s + steps))
                    break
    picks = np.asarray(picks, np.int64)
    if len(picks) > most:
        picks = picks[np.linspace(0, len(picks) - 1, most).round().astype(np.int64)]
    return picks


def paying_clips(val: ClipDataset, views: list[str], holdout: float, context: int, most: int) -> Batch | None:
    """Up to `most` held-out clips with a reward in their rollout steps (event_clips), from `val` and from the held-out
    episodes of every dataset of `views` at val's frame size (one batch plays at one size; a view whose held-out
    episodes give no clip of val's length is passed over), spread evenly over all of them: None when none pays.
    Craft2D's captions data pays rarely (12 held-out rewards), its work and build views far more."""
    sources = [val]
    for root in views:
        if tuple(read_manifest(Path(root))["frame_shape"]) != val.frame_shape:
            continue
        with warnings.catch_warnings():  # held-out episodes shorter than a clip: counted where the view trains
            warnings.simplefilter("ignore")
            try:
                sources.append(ClipDataset(root, val.clip_len, "val", holdout))
            except ValueError:  # no held-out clip of that length at all
                continue
    found = [(k, int(i)) for k, s in enumerate(sources) for i in event_clips(s, context, most)]
    if not found:
        return None
    kept = [found[j] for j in np.linspace(0, len(found) - 1, min(most, len(found))).round().astype(np.int64)]
    parts = [sources[k].get(np.array([i for kk, i in kept if kk == k], np.int64)) for k in sorted({k for k, _ in kept})]
    arrays = ("frames", "actions", "rewards", "terminated", "truncated", "episode")
    return Batch(**{f: np.concatenate([getattr(p, f) for p in parts]) for f in arrays}, captions=None)


def payments(truth: np.ndarray, paid: np.ndarray) -> dict[str, int]:
    """truth, paid (B, T) rewards of the data and of the dream over the same steps -> counts: `events` the data's
    rewards, `hits` those the dream paid within a step, `false` the dream's payments no reward matched, `steps`."""
    events = hits = false = 0
    for t, p in zip(truth, paid):
        true_steps, paid_steps = np.flatnonzero(t != 0), np.flatnonzero(p != 0)
        matched = match_events(true_steps, paid_steps)
        events, hits, false = events + len(true_steps), hits + len(matched), false + len(paid_steps) - len(matched)
    return {"events": events, "hits": hits, "false": false, "steps": int(truth.size)}


def rollout(sim, frames: np.ndarray, actions: np.ndarray, context: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Held-out clips (B, T, H, W, 3) with their actions (B, T) played in the dream (a WorldSimulator): `context` real
    frames, then the recorded actions to the clips' end -> (each step's frames (B, H, W, 3), the rewards paid
    (B, T - context))."""
    sim.reset(frames[:, :context], actions[:, :context])
    played = [sim.step(actions[:, t]) for t in range(context, actions.shape[1])]
    return [r.frames for r in played], np.stack([r.rewards for r in played], 1)


def dream_scores(ordinary: dict[str, int], paying: dict[str, int]) -> dict[str, float]:
    """The run's logs from `payments` of its ordinary held-out rollouts and of its clips with a reward."""
    return {"dream_reward_recall": paying["hits"] / max(paying["events"], 1),
            "dream_reward_events": float(paying["events"]),
            "dream_false_per_100": 100 * ordinary["false"] / max(ordinary["steps"], 1)}
