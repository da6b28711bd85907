"""What a probe is, and the small map builder its scenarios are drawn with.

A probe is one or more runs of Craft2D. Each run starts from a `Scenario`, plays `warmup` actions in the engine to
make the context frames a predictor is shown, then `actions` that the predictor must continue under. The probe says
which of those steps are scored and which cells of them (see `worldsim.probes.score`).

Scenario maps are drawn relative to the player: `Patch.put(dx, dy, ch)` with dx to the right and dy down from the
player's tile, so dy = 1 is the ground under the player's feet. The patch is stamped into a generated world where the
world's biome suits it (in distribution) or does not (out of distribution), with the map's ground at the world's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from worldsim.envs.craft2d.scenario import Scenario
from worldsim.envs.craft2d.tiles import BIOME_NAMES, WORLD_SIZE

SKY_ROWS = 5  # air rows above the player's row: the view shows 3 of them, a jump one more
DEPTH = 6  # ground rows under the player: the view shows 3, pits need a few more
WORLD = WORLD_SIZE  # Craft2D-v0's default world size, which the scenarios are stamped into
OOD_SEED_BASE = 2 ** 31  # Craft2D draws world seeds below 2**31, so seeds from here on were never in any training set

# Surface, soil and deep tile of each biome, as Craft2D's world generator lays them.
PALETTES = {"forest": ("G", "D", "#"), "plains": ("G", "D", "#"), "desert": ("S", "S", "#"), "snow": ("N", "D", "#")}
PLANTS = {"forest": "tree", "plains": "tree", "desert": "cactus", "snow": "pine"}
ORES = "cio"  # coal, iron, gold


@dataclass(frozen=True)
class Run:
    """One engine run: a scenario, warm-up actions that make the context, then the actions a predictor continues."""

    scenario: Scenario
    warmup: tuple[int, ...]
    actions: tuple[int, ...]


@dataclass(frozen=True)
class Probe:
    """A question with a ground-truth answer.

    `score_at` are the steps after the context (1-based) that are scored, `labels` name them for curves. Cells are
    scored where the engine's frame differs from the last context frame; `seen_until` (frames counted from the first
    context frame) further limits them to world tiles in view in some frame before it, and `paired` adds the cells
    where two runs of the same walk, in two worlds, differ (so standing still cannot score).
    """

    name: str
    family: str
    split: str  # "id" (world seeds and combinations from training) or "ood"
    runs: tuple[Run, ...]
    score_at: tuple[int, ...]
    labels: tuple[str, ...] = ()
    seen_until: int | None = None
    paired: bool = False
    params: dict = field(default_factory=dict)  # what was randomised, for the report

    def __post_init__(self):
        lengths = {len(r.actions) for r in self.runs}
        warmups = {len(r.warmup) for r in self.runs}
        if len(lengths) != 1 or len(warmups) != 1:
            raise ValueError(f"probe {self.name}: runs of lengths {sorted(lengths)} after warm-ups of "
                             f"{sorted(warmups)}: expected one length of each, so the runs batch together")
        if not self.score_at or min(self.score_at) < 1 or max(self.score_at) > lengths.pop():
            raise ValueError(f"probe {self.name}: score_at={self.score_at} outside the run's steps")
        if self.labels and len(self.labels) != len(self.score_at):
            raise ValueError(f"probe {self.name}: {len(self.labels)} labels for {len(self.score_at)} scored steps")

    @property
    def context_length(self) -> int:
        return len(self.runs[0].warmup) + 1

    @property
    def steps(self) -> int:
        return len(self.runs[0].actions)


class Patch:
    """An ASCII map under construction: flat ground of one biome's tiles, air above, the player at (0, 0)."""

    def __init__(self, biome: str, left: int, right: int, facing: str = ">"):
        surface, soil, deep = PALETTES[biome]
        self.biome, self.left = biome, left
        width = left + 1 + right
        self.grid = [["."] * width for _ in range(SKY_ROWS + 1)]
        self.grid += [[surface] * width] + [[soil] * width] * 2 + [[deep] * width for _ in range(DEPTH - 3)]
        self.grid = [list(row) for row in self.grid]  # every row its own list
        self.put(0, 0, facing)

    def put(self, dx: int, dy: int, ch: str) -> "Patch":
        row, col = SKY_ROWS + dy, self.left + dx
        if not (0 <= row < len(self.grid) and 0 <= col < len(self.grid[0])):
            raise ValueError(f"({dx}, {dy}) is outside the patch")
        self.grid[row][col] = ch
        return self

    def column(self, dx: int, dy_from: int, dy_to: int, ch: str) -> "Patch":
        for dy in range(dy_from, dy_to + 1):
            self.put(dx, dy, ch)
        return self

    def plant(self, dx: int, kind: str) -> "Patch":
        """A tree, pine or cactus rooted at column dx (walk-through tiles: they never block a walk)."""
        if kind == "cactus":
            return self.column(dx, -1, 0, "C")
        trunk, crown = ("T", "L") if kind == "tree" else ("T", "E")
        self.column(dx, -1, 0, trunk)
        for cx in (dx - 1, dx, dx + 1):
            self.put(cx, -2, crown)
        return self.put(dx, -3, crown)

    def decorate(self, rng: np.random.Generator, keep_clear: range, plants: float = 0.15,
                 ores: float = 0.2) -> "Patch":
        """Plants on the ground and ores in the soil at random columns, leaving the columns in `keep_clear`."""
        for dx in range(-self.left + 1, len(self.grid[0]) - self.left - 1):
            if dx in keep_clear:
                continue
            if rng.random() < ores:
                self.put(dx, int(rng.integers(2, 4)), ORES[int(rng.integers(len(ORES)))])
            if rng.random() < plants and dx - 1 not in keep_clear and dx + 1 not in keep_clear:
                self.plant(dx, PLANTS[self.biome])
        return self

    @property
    def map(self) -> str:
        return "\n".join("".join(row) for row in self.grid)


@lru_cache(maxsize=1)
def training_world_seeds(collect_seed: int = 0, episodes: int = 64) -> tuple[int, ...]:
    """The world seeds of the first episodes `worldsim collect seed=collect_seed` plays: in-distribution worlds."""
    from worldsim.envs.craft2d import Craft2DEnv
    from worldsim.data.collect import derive_seed

    env = Craft2DEnv()
    return tuple(env.reset(seed=derive_seed(collect_seed, e, 0))[1]["world_seed"] for e in range(episodes))


@lru_cache(maxsize=64)
def _world(seed: int):
    from worldsim.envs.craft2d.worldgen import generate

    return generate(seed, *WORLD)


def place(patch: Patch, rng: np.random.Generator, split: str, *, time_of_day: float | None = None,
          inventory: dict | None = None, selected: str = "dirt", collect_seed: int = 0) -> tuple[Scenario, dict]:
    """Stamp `patch` into a world: in distribution, a training world in a column range of the patch's own biome; out
    of distribution, a never-seen world seed in a biome the patch's tiles do not belong to. Returns the scenario
    and what was chosen."""
    if split not in ("id", "ood"):
        raise ValueError(f"split={split!r}: expected 'id' or 'ood'")
    width, height = len(patch.grid[0]), len(patch.grid)
    for _ in range(100):
        if split == "id":
            seeds = training_world_seeds(collect_seed)
            seed = int(seeds[int(rng.integers(len(seeds)))])
        else:
            seed = OOD_SEED_BASE + int(rng.integers(2 ** 30))
        world = _world(seed)
        biome = np.asarray(world.biome)
        want = BIOME_NAMES.index(patch.biome)
        fits = biome == want if split == "id" else biome != want
        # the start columns whose whole patch lies in fitting columns, away from the bedrock walls
        ok = np.convolve(fits.astype(np.int64), np.ones(width, np.int64), mode="valid") == width
        ok[:8] = False
        ok[-8:] = False
        starts = np.flatnonzero(ok)
        if not len(starts):
            continue
        ox = int(starts[int(rng.integers(len(starts)))])
        oy = int(world.sky_line[ox + patch.left]) - (SKY_ROWS + 1)  # the patch's ground at the world's
        if oy < 0 or oy + height > WORLD[1] - 1:
            continue
        if time_of_day is None:
            time_of_day = float(rng.uniform(0.0, 0.45)) if split == "id" else float(rng.uniform(0.65, 0.85))
        scenario = Scenario(patch.map, inventory=dict(inventory or {}), selected=selected,
                            time_of_day=round(time_of_day, 3), world_seed=seed, origin=(ox, oy),
                            ground_row=SKY_ROWS + 1)
        return scenario, {"world_seed": seed, "x": ox + patch.left, "biome": patch.biome,
                          "world_biome": BIOME_NAMES[int(biome[ox + patch.left])], "time_of_day": round(time_of_day, 3)}
    raise RuntimeError(f"no world found for a {width}-wide {patch.biome} patch ({split})")  # never seen in practice
