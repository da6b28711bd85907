"""The reward family's scores: does the dream pay when, and only when, the game would, and end when it ends?

A reward event is a step whose |reward| is at least half the game's smallest payment (Craft2D pays 1 an item, so
0.5): a classifier head pays exact values, and a regression head's near-zero hum is not a payment (the idle-return
check below counts the hum). A predicted event matches an engine event at most `TOLERANCE` steps away, each event
matched once. Per probe and sampling seed,

    m = mean(F1 of reward events where the engine pays, F1 of the ending where the engine's episode ends)

with F1 = 2 matched / (engine events + predicted events). Steps after the engine's ending (plus the tolerance) are
not scored: the episode is over. A predictor that never pays and never ends scores m = 0, the floor.

The idle-return check steps an idle agent (NOOP) in the predictor from ordinary starts of the game and divides its
return by the game's random-play return over the same steps: the target is at most 1%.
"""

from __future__ import annotations

import numpy as np

from worldsim.envs.craft2d.tiles import DEFAULT_REWARDS, Action
from worldsim.probes.families import WARMUP
from worldsim.probes.predictors import Context, Predictor, Trace
from worldsim.probes.scenarios import DEFAULT_VIEW, Probe, View

EVENT = 0.5 * min(abs(v) for v in DEFAULT_REWARDS.values() if v)  # |reward| from which a step pays
TOLERANCE = 1  # a predicted event this many steps early or late still matches the engine's
IDLE_TARGET = 0.01  # an idle agent earns at most this share of random play's return
RANDOM_REPLAYS = 8  # random players per idle start: the engine is cheap, and its return is a sparse count
COUNTS = ("true", "pred", "hit", "idle", "false_idle", "ends", "end_pred", "end_hit", "false_end")


def _events(rewards: np.ndarray) -> np.ndarray:
    return np.flatnonzero(np.abs(rewards) >= EVENT)


def match_events(truth: np.ndarray, pred: np.ndarray, tolerance: int = TOLERANCE) -> set[int]:
    """The predicted steps matched to true events (both sorted step indices), each at most `tolerance` steps away and
    matched once: greedy from the earliest, which is optimal when every event has the same window."""
    matched, j = set(), 0
    for t in truth:
        while j < len(pred) and pred[j] < t - tolerance:
            j += 1
        if j < len(pred) and pred[j] <= t + tolerance:
            matched.add(int(pred[j]))
            j += 1
    return matched


def count_run(actions: np.ndarray, truth_rewards: np.ndarray, truth_ended: np.ndarray, rewards: np.ndarray,
              ended: np.ndarray) -> dict[str, int]:
    """One rollout of T steps against the engine's: its events, matches, quiet (NOOP) steps and false payments on
    them, and the ending (the first terminated step)."""
    stop = np.flatnonzero(truth_ended)
    end = int(stop[0]) if len(stop) else None
    window = len(actions) if end is None else min(len(actions), end + TOLERANCE + 1)
    truth, pred = _events(truth_rewards[:window]), _events(rewards[:window])
    matched = match_events(truth, pred)
    idle = np.asarray(actions[:window]) == int(Action.NOOP)
    mine = np.flatnonzero(ended[:window])
    out = {"true": len(truth), "pred": len(pred), "hit": len(matched), "idle": int(idle.sum()),
           "false_idle": sum(1 for p in pred if idle[p] and int(p) not in matched),
           "ends": int(end is not None), "end_pred": int(len(mine) > 0), "end_hit": 0, "false_end": 0}
    if end is not None:
        out["end_hit"] = int(len(mine) > 0 and abs(int(mine[0]) - end) <= TOLERANCE)
    else:
        out["false_end"] = int(len(mine) > 0)
    return out


def measure(probe: Probe, traces: list[Trace], rewards: np.ndarray, ended: np.ndarray) -> dict:
    """rewards, ended (runs, replicas, T) -> m (replicas,), per_step (replicas, len(score_at)) (m repeated: reward
    events have no per-step curve) and `counts`, each (replicas,) summed over runs."""
    n_rep = rewards.shape[1]
    counts = {k: np.zeros(n_rep, np.int64) for k in COUNTS}
    for j, (run, tr) in enumerate(zip(probe.runs, traces)):
        for r in range(n_rep):
            for k, v in count_run(np.array(run.actions), tr.rewards, tr.terminated, rewards[j, r], ended[j, r]).items():
                counts[k][r] += v
    parts = []
    if counts["true"].max() > 0:  # the same for every replica: the engine's events
        parts.append(_f1(counts["hit"], counts["true"], counts["pred"]))
    if counts["ends"].max() > 0:
        parts.append(_f1(counts["end_hit"], counts["ends"], counts["end_pred"]))
    m = np.mean(parts, 0) if parts else np.full(n_rep, np.nan)
    return {"m": m, "per_step": np.repeat(m[:, None], len(probe.score_at), 1), "counts": counts}


def _f1(hit: np.ndarray, true: np.ndarray, pred: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(true + pred > 0, 2 * hit / np.maximum(true + pred, 1), np.nan)


def summary(measured: list[dict]) -> dict:
    """Pooled over the reward probes and sampling seeds: precision and recall of reward events, false payments per
    100 quiet steps, and recall of endings (None where no probe ends), with false endings where none was due."""
    c = {k: int(sum(g["counts"][k].sum() for g in measured)) for k in COUNTS}

    def share(a, b):
        return a / b if b else None

    return {"events": c["true"], "precision": share(c["hit"], c["pred"]), "recall": share(c["hit"], c["true"]),
            "false_per_100_idle": share(100 * c["false_idle"], c["idle"]), "idle_steps": c["idle"],
            "termination_recall": share(c["end_hit"], c["ends"]), "endings": c["ends"],
            "false_terminations": c["false_end"], "counts": c}


def starts(rows: int, seed: int, view: View = DEFAULT_VIEW) -> list[Context]:
    """`rows` ordinary starts of Craft2D-v0 at `view` (a fresh world and place each), each with the probes' warm-up
    context."""
    env = view.env()
    out = []
    for s in np.random.default_rng([seed, 6007]).integers(2 ** 31, size=rows):
        frames = [env.reset(seed=int(s))[0]] + [env.step(a)[0] for a in WARMUP]
        out.append(Context(np.stack(frames), np.array((-1,) + WARMUP, np.int64), env.get_state()))
    return out


def idle_return(predictor: Predictor, contexts: list[Context], steps: int, seeds: np.ndarray) -> dict:
    """An idle agent's mean return over `steps` NOOPs in `predictor` from each context, against the mean return of
    random play (`worldsim.agents`' random agent) in the game over the same steps from the same states. Returns
    count up to and including the first terminated step."""
    from worldsim.agents.random_agent import RandomAgent

    if len(seeds) != len(contexts):
        raise ValueError(f"{len(seeds)} seeds for {len(contexts)} idle starts: expected one seed a start")
    rollout = predictor.predict(contexts, np.full((len(contexts), steps), int(Action.NOOP), np.int64), seeds)
    idle = [_return(r, e) for r, e in zip(rollout.rewards, rollout.terminated)]
    env = contexts[0].view.env()  # the game the starts were made in
    played = []
    for i, ctx in enumerate(contexts):
        for k in range(RANDOM_REPLAYS):
            env.set_state(ctx.state)
            env.np_random = np.random.default_rng([i, k])
            agent = RandomAgent(env.action_space)
            agent.reset(seed=[i, k, 1])
            total, info = 0.0, {}
            for _ in range(steps):
                _, reward, terminated, _, info = env.step(agent.act(None, info))
                total += reward
                if terminated:
                    break
            played.append(total)
    idle_mean, random_mean = float(np.mean(idle)), float(np.mean(played))
    ratio = idle_mean / random_mean if random_mean > 0 else None  # a game that never pays here cannot judge
    return {"steps": steps, "rows": len(contexts), "idle_return": idle_mean, "random_return": random_mean,
            "ratio": ratio, "target": IDLE_TARGET, "met": None if ratio is None else bool(ratio <= IDLE_TARGET)}


def _return(rewards: np.ndarray, ended: np.ndarray) -> float:
    stop = np.flatnonzero(ended)
    return float(rewards[:stop[0] + 1 if len(stop) else len(rewards)].sum())


def describe(reward: dict) -> str:
    """The reward family's figures in one line, for the table and the report."""
    def pct(x):
        return "n/a" if x is None else f"{x:.0%}"

    idle = reward.get("idle") or {}
    line = (f"events caught (recall) {pct(reward['recall'])}, payments that were due (precision) "
            f"{pct(reward['precision'])}, false payments {_fmt(reward['false_per_100_idle'])} per 100 quiet steps, "
            f"endings caught {pct(reward['termination_recall'])}")
    if idle:
        line += (f"; idle agent's return over {idle['steps']} steps {idle['idle_return']:.3f} vs random play's "
                 f"{idle['random_return']:.3f}: {pct(idle['ratio'])} (target <= {idle['target']:.0%})")
    return line


def _fmt(x) -> str:
    return "n/a" if x is None else f"{x:.2f}"
