"""How a probe is scored: decoded tile grids, the cells that count, and the normalisation between floor and ceiling.

A cell of a predicted frame is right when it decodes (Craft2D's exact tile decoder) to the engine's sprite and is
near enough to that sprite to be one (`VALID_DISTANCE`). Only cells the engine changed relative to the last context
frame are scored, so copying the context scores 0 by construction; a probe may narrow them further (`seen_until`)
or widen them (`paired`). Per probe, m is the fraction of scored cells right, pooled over its runs and steps, and

    s = clip((m - floor) / (ceiling - floor), 0, 1)

with floor the best of copy-last-frame, the context's mean frame and (where the actions matter, see
`SHUFFLE_MATTERS`) the predictor's own rollout under shuffled actions; ceiling the engine under other RNG seeds.
"""

from __future__ import annotations

import numpy as np

from worldsim.envs.craft2d.decoder import VALID_DISTANCE, cells_right, decode_cells, tile_decoder
from worldsim.probes.predictors import Trace
from worldsim.probes.scenarios import Probe

MIN_SPAN = 0.05  # a probe whose ceiling is within this of its floor cannot tell anything apart: left out of means
SHUFFLE_MATTERS = 0.1  # shuffled actions count toward the floor when they cost the engine this much accuracy


def light_levels(frames: np.ndarray) -> np.ndarray:
    dec = tile_decoder()
    return np.array([dec.light_level(f) for f in frames], np.int64)


def masks(probe: Probe, traces: list[Trace], ref: list[np.ndarray]) -> list[np.ndarray]:
    """Per run, (len(score_at), rows + 1, cols) bool: the cells scored at each scored step. `ref` holds each run's
    decoded engine frames at the scored steps (`reference_cells`)."""
    t0 = probe.context_length
    steps = np.array(probe.score_at) - 1
    out = []
    for j, (tr, c) in enumerate(zip(traces, ref)):
        m = c != decode_cells(tr.context.frames[-1:])[0]  # changed relative to the last context frame
        if probe.paired:
            for k, other in enumerate(ref):
                if k != j:
                    m |= c != other
        if probe.seen_until is not None:
            m[:, -1] = False  # world tiles only: the HUD is not a place
            m &= _seen(tr.cameras[:probe.seen_until], tr.cameras[t0 + steps], m.shape[1] - 1, m.shape[2])
        out.append(m)
    return out


def _seen(before: np.ndarray, now: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """(len(now), rows + 1, cols): cells of frames with cameras `now` that show a world tile a `before` frame showed."""
    r, c = np.mgrid[0:rows, 0:cols]
    out = np.zeros((len(now), rows + 1, cols), bool)
    for i, (x0, y0) in enumerate(now):
        wx, wy = x0 + c, y0 + r
        for bx, by in before:
            out[i, :rows] |= (wx >= bx) & (wx < bx + cols) & (wy >= by) & (wy < by + rows)
    return out


def reference_cells(probe: Probe, traces: list[Trace]) -> list[np.ndarray]:
    steps = np.array(probe.score_at) - 1
    return [decode_cells(tr.frames[steps])[0] for tr in traces]


def accuracy(probe: Probe, ref: list[np.ndarray], mask: list[np.ndarray], pred: np.ndarray) -> tuple[np.ndarray,
                                                                                                       np.ndarray]:
    """pred (runs, replicas, T, H, W, 3) -> (m (replicas,), per scored step (replicas, len(score_at))).

    m pools every scored cell of every run; a replica with no scored cell at all gets NaN."""
    steps = np.array(probe.score_at) - 1
    n_rep = pred.shape[1]
    right = np.zeros((n_rep, len(steps)))
    total = np.zeros((n_rep, len(steps)))
    for j in range(pred.shape[0]):
        for r in range(n_rep):
            cells, dist = decode_cells(pred[j, r, steps])
            ok = cells_right(cells, dist, ref[j]) & mask[j]
            right[r] += ok.sum((1, 2))
            total[r] += mask[j].sum((1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        return right.sum(1) / total.sum(1), right / total


MOVES = [(dx, dy) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]  # a camera's move in one step, in tiles
MOVE_SPANS = ((1, 4), (5, 12), (13, None))  # steps of a rollout (1-based) the moves are counted over apart


def view_moves(trace: Trace, pred: np.ndarray, before: np.ndarray | None = None) -> np.ndarray:
    """pred (replicas, T, H, W, 3) -> (len(MOVE_SPANS), 2) counts over replicas: [steps told, steps right]. Each
    step's move is read off the frames alone: the shift (dx, dy) in tiles that best maps the frame before (the last
    context frame for the first step; `before` (T, H, W, 3), where given, is each step's frame before: the engine's,
    for frames each made from its history) onto this one, on the world cells away from the edges and from the player's
    column (the camera centres on the player, who stays put). A step is told when one shift is best, and right when it
    is the move of the engine's camera. A world that stops scrolling, or draws what sticks to the player, moves wrong
    however well it remembers; over flat featureless ground nothing is told."""
    t0 = len(trace.context.frames)
    moves = trace.cameras[t0:] - trace.cameras[t0 - 1:-1]  # (T, 2) the engine camera's move at each step
    last = decode_cells(trace.context.frames[-1:])[0][0, :-1]
    rows, cols = last.shape
    inner = np.arange(1, cols - 1)
    keep = [(inner != cols // 2) & (inner + dx != cols // 2) for dx, _ in MOVES]  # columns compared under each move
    span_of = [next(i for i, (lo, hi) in enumerate(MOVE_SPANS) if t >= lo and (hi is None or t <= hi))
               for t in range(1, len(moves) + 1)]  # each step's span
    given = None if before is None else decode_cells(before)[0][:, :-1]  # (T, rows, cols) world cells
    out = np.zeros((len(MOVE_SPANS), 2), np.int64)
    for rollout in pred:
        cells = decode_cells(rollout)[0][:, :-1]  # (T, rows, cols) world cells
        for t, (prev, now) in enumerate(zip([last, *cells[:-1]] if given is None else given, cells)):
            truth = tuple(int(v) for v in moves[t])
            if truth not in MOVES:
                continue  # a camera clamped or teleported: no one-tile move to judge
            # under move (dx, dy), now[r, c] shows what prev showed at [r + dy, c + dx]
            fit = np.array([(now[1:-1, 1:-1] == prev[1 + dy:rows - 1 + dy, 1 + dx:cols - 1 + dx])[:, k].mean()
                            for (dx, dy), k in zip(MOVES, keep)])
            best = np.flatnonzero(fit == fit.max())
            if len(best) == 1:
                out[span_of[t]] += (1, int(MOVES[best[0]] == truth))
    return out


def stability(probe: Probe, trace: Trace, pred: np.ndarray, every: int) -> dict[str, np.ndarray]:
    """pred (replicas, T, H, W, 3) of a long rollout -> per replica and scored step: `valid` (cells that look like a
    sprite), `live` (valid cells that differ from the last context frame, over the engine's share of changed cells,
    at most 1: 0 for a frozen or dissolved world), `continuity` (share of steps in the window before where the light
    level moved at most one level), `daynight` (how alike the time spent at each light level is, in the rollout so far
    and in the engine's: 1 - their total variation distance, so a night that never ends scores low however smoothly
    it fell) and `m` = live x continuity x daynight, averaged over the scored steps."""
    steps = np.array(probe.score_at) - 1
    last = decode_cells(trace.context.frames[-1:])[0][0]
    engine_changed = np.array([(c != last).mean() for c in decode_cells(trace.frames[steps])[0]])
    valid, live, cont, daynight, lights = [], [], [], [], []
    engine_light = trace.light[len(trace.context.frames) - 1:]  # (T + 1,): the last context frame's, then each step's
    for rollout in pred:
        cells, dist = decode_cells(rollout[steps])
        ok = dist <= VALID_DISTANCE
        valid.append(ok.mean((1, 2)))
        live.append(np.minimum(1.0, (ok & (cells != last)).mean((1, 2)) / np.maximum(engine_changed, 1e-3)))
        light = np.concatenate([light_levels(trace.context.frames[-1:]), light_levels(rollout)])
        smooth = np.abs(np.diff(light)) <= 1  # (T,): step t's frame against the one before
        cont.append(np.array([smooth[max(0, s + 1 - every):s + 1].mean() for s in steps]))
        daynight.append(np.array([1 - _light_distance(light[:s + 2], engine_light[:s + 2]) for s in steps]))
        lights.append(light[1:])
    valid, live, cont, daynight = np.array(valid), np.array(live), np.array(cont), np.array(daynight)
    per_step = live * cont * daynight
    return {"m": per_step.mean(1), "per_step": per_step, "valid": valid, "live": live, "continuity": cont,
            "daynight": daynight, "light": np.array(lights[:1])}  # (1, T): the first replica's, for the report


def _light_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Total variation distance between the shares of steps two light-level sequences spend at each level (0..5)."""
    levels = max(int(a.max()), int(b.max())) + 1
    share_a, share_b = np.bincount(a, minlength=levels) / len(a), np.bincount(b, minlength=levels) / len(b)
    return 0.5 * float(np.abs(share_a - share_b).sum())


def finite_mean(x) -> float:
    """The mean of the finite values; NaN, quietly, when there are none (a probe with nothing to score)."""
    x = np.asarray(x, np.float64)
    x = x[np.isfinite(x)]
    return float(x.mean()) if len(x) else float("nan")


def percent(x) -> str:
    """A share as a person reads it: "42%", or "n/a" where nothing was counted (None or NaN)."""
    return "n/a" if x is None or not np.isfinite(x) else f"{x:.0%}"


def normalise(m: np.ndarray, floor: float, ceiling: float) -> tuple[float, float, bool]:
    """(s, its std over replicas, informative) for the replicas' m."""
    span = ceiling - floor
    if not np.isfinite(span) or span < MIN_SPAN or not np.isfinite(m).any():
        return float("nan"), float("nan"), False
    mean = finite_mean(m)
    return float(np.clip((mean - floor) / span, 0.0, 1.0)), float(np.nanstd(m) / span), True


def control_matrix(ref: list[np.ndarray], pred: np.ndarray, mask: list[np.ndarray]) -> np.ndarray:
    """(A, A): row a, the share of replicas whose last frame under action a matches best the engine's last frame
    under each action b, judged on the cells that either outcome changed. Ties share the replica; a share that goes
    to an action whose engine outcome equals a's own (in a given state, mine and noop may both change nothing) counts
    as a. So a frame that matches every outcome equally (noise, a blank) is not a recognised action: it spreads over
    the row. An action that changes nothing is judged on the cells the others change (the frame must keep them).
    ref and mask per run (= action)."""
    n = len(ref)
    same = np.array([[np.array_equal(ref[a][-1], ref[b][-1]) for b in range(n)] for a in range(n)])
    conf = np.zeros((n, n))
    anywhere = np.any([m[-1] for m in mask], 0)  # the cells some action's outcome changes
    for a in range(n):
        for r in range(pred.shape[1]):
            cells, dist = decode_cells(pred[a, r, -1:])
            hit_any = cells_right(cells[0][None], dist[0], np.stack([x[-1] for x in ref]))  # (A, rows + 1, cols)
            sim = np.empty(n)
            for b in range(n):
                region = mask[a][-1] | mask[b][-1]
                region = region if region.any() else anywhere  # a and b both change nothing: judged where others do
                sim[b] = hit_any[b][region].mean() if region.any() else 1.0
            best = np.flatnonzero(sim >= sim.max() - 1e-9)
            share = 1.0 / len(best) / pred.shape[1]
            conf[a, a] += share * same[a, best].sum()
            conf[a, best[~same[a, best]]] += share
    return conf


def psnr_rows(pred: np.ndarray, truth: np.ndarray) -> float:
    """Mean PSNR (dB) over frames of pred and truth (..., H, W, 3) uint8, each frame capped at 60 dB."""
    err = ((pred.astype(np.float64) - truth.astype(np.float64)) ** 2).reshape(-1, int(np.prod(pred.shape[-3:])))
    mse = np.maximum(err.mean(1), 255.0 ** 2 / 10 ** 6)
    return float(np.mean(10 * np.log10(255.0 ** 2 / mse)))
