"""What a trajectory covered: how far the player wandered and how often it came back over ground it had left."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

AWAY = 16  # tiles: a return needs an excursion at least this far from the spot (two 64x64 views of 8 tiles)


@dataclass(frozen=True)
class Coverage:
    steps: int
    wander: int  # span of columns visited, in tiles
    return_gaps: tuple[int, ...]  # one per return: steps since the player last stood on the column it came back to
    revisit_steps: int  # steps spent on columns last stood on before an excursion of at least `away` tiles


def coverage(xs: np.ndarray, away: int = AWAY) -> Coverage:
    """Returns in one episode of player columns `xs` (T,). Step t is a revisit when column x_t was last stood on at
    t' and the player went at least `away` tiles from x_t in between; consecutive revisit steps are one return."""
    xs = np.asarray(xs, np.int64)
    last_seen: dict[int, int] = {}
    gaps, revisit_steps, streak = [], 0, False
    for t, x in enumerate(xs.tolist()):
        t0 = last_seen.get(x, -1)
        revisit = t0 >= 0 and t - t0 > away and int(np.abs(xs[t0:t] - x).max()) >= away  # (cheap test first)
        if revisit:
            revisit_steps += 1
            if not streak:
                gaps.append(t - t0)
        streak = revisit
        last_seen[x] = t
    wander = int(xs.max() - xs.min()) if len(xs) else 0
    return Coverage(steps=len(xs), wander=wander, return_gaps=tuple(gaps), revisit_steps=revisit_steps)
