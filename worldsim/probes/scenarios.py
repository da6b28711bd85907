"""What a probe is, and the small map builder its scenarios are drawn with.

A probe is one or more runs of Craft2D. Each run starts from a `Scenario`, plays `warmup` actions in the engine to
make the context frames a predictor is shown, then `actions` that the predictor must continue under. The probe says
which of those steps are scored and which cells of them (see `worldsim.probes.score`).

Scenario maps are drawn relative to the player: `Patch.put(dx, dy, ch)` with dx to the right and dy down from the
player's tile, so dy = 1 is the ground under the player's feet. The patch is stamped into a generated world where the
world's biome suits it (in distribution) or does not (out of distribution), with the map's ground at the world's.

Every run is played at one `View` (Craft2DEnv's view_width x view_height tiles, 8x8 by default). The scenarios are
drawn for the default view; a larger one grows each patch by the columns and rows it shows beyond the default's, so
what it shows is the patch too, never an arbitrary cut of the world. The columns it adds draw from their own random
stream, so the default view's part of every scenario, its world and mostly its place are the same at every view.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from worldsim.config import check
from worldsim.envs.craft2d.scenario import Scenario
from worldsim.envs.craft2d.tiles import BIOME_NAMES, TILE_SIZE, WORLD_SIZE

VIEW_TILES = (8, 16)  # the views the probes take, per side in tiles: from Craft2D-v0's default (what the scenarios
#                       place, up to 4 columns left of the player and 3 rows above and below it, must be in view) to
#                       twice it (the consistency walks' patches must still fit inside one biome of a world)
WORLD = WORLD_SIZE  # Craft2D-v0's default world size, which the scenarios are stamped into
OOD_SEED_BASE = 2 ** 31  # Craft2D draws world seeds below 2**31, so seeds from here on were never in any training set

# Surface, soil and deep tile of each biome, as Craft2D's world generator lays them.
PALETTES = {"forest": ("G", "D", "#"), "plains": ("G", "D", "#"), "desert": ("S", "S", "#"), "snow": ("N", "D", "#")}
PLANTS = {"forest": "tree", "plains": "tree", "desert": "cactus", "snow": "pine"}
ORES = "cio"  # coal, iron, gold


@dataclass(frozen=True)
class View:
    """The view a probe plays Craft2D at: `width` x `height` tiles, the HUD row included (Craft2DEnv's view_width and
    view_height). The camera centres on the player, so `left` world columns of the view lie left of the player's and
    `right` right of it, `above` rows above the player's row and `below` under it."""

    width: int = 8
    height: int = 8

    def __post_init__(self):
        lo, hi = VIEW_TILES
        for name, n in (("view_width", self.width), ("view_height", self.height)):
            check(type(n) is int and lo <= n <= hi, name, n,
                  f"a whole number of tiles from {lo} to {hi}: the probes' scenarios need at least Craft2D-v0's "
                  f"default {lo}x{lo} view (Craft2DEnv itself draws from 5x3), and their patches fit a world's "
                  f"biomes up to {hi}")

    @classmethod
    def of(cls, frame_shape) -> "View":
        """The view that draws frames of `frame_shape` (H, W, ...) pixels."""
        h, w = frame_shape[:2]
        if h % TILE_SIZE or w % TILE_SIZE:
            raise ValueError(f"frames of {w}x{h} pixels (W x H): expected whole Craft2D tiles of {TILE_SIZE} px")
        return cls(w // TILE_SIZE, h // TILE_SIZE)

    @property
    def frame_shape(self) -> tuple[int, int, int]:
        return self.height * TILE_SIZE, self.width * TILE_SIZE, 3

    @property
    def left(self) -> int:
        return self.width // 2  # Craft2D's camera: x0 = player x - view_width // 2

    @property
    def right(self) -> int:
        return self.width - 1 - self.left

    @property
    def above(self) -> int:
        return (self.height - 1) // 2  # the world rows are height - 1 (the HUD row is not world), y0 = y - rows // 2

    @property
    def below(self) -> int:
        return self.height - 2 - self.above

    @property
    def sky_rows(self) -> int:
        return self.above + 2  # air rows above the player's row: a jump shows one more, and one to spare

    @property
    def depth(self) -> int:
        return self.below + 3  # ground rows under the player: a fall into a three-deep pit shows three more

    @property
    def pad(self) -> tuple[int, int]:
        """The columns this view shows beyond the default view's, left and right of the player."""
        return self.left - DEFAULT_VIEW.left, self.right - DEFAULT_VIEW.right

    def env(self):
        """Craft2D-v0 at this view, its defaults otherwise."""
        from worldsim.envs.craft2d import Craft2DEnv

        return Craft2DEnv(view_width=self.width, view_height=self.height)

    def __str__(self) -> str:
        h, w, _ = self.frame_shape
        return f"{self.width}x{self.height} tiles ({w}x{h} px, W x H)"


DEFAULT_VIEW = View()


@dataclass(frozen=True)
class Run:
    """One engine run: a scenario, warm-up actions that make the context, then the actions a predictor continues, at a
    view."""

    scenario: Scenario
    warmup: tuple[int, ...]
    actions: tuple[int, ...]
    view: View = DEFAULT_VIEW


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
        if len({r.view for r in self.runs}) != 1:
            raise ValueError(f"probe {self.name}: runs at views {sorted({str(r.view) for r in self.runs})}: expected "
                             "one view, so the runs batch together")
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

    @property
    def view(self) -> View:
        return self.runs[0].view


class Patch:
    """An ASCII map under construction: flat ground of one biome's tiles, air above, the player at (0, 0).

    `left` and `right` are the columns beside the player the map needs at the default view; `view` adds the columns
    it shows beyond that on each side (`View.pad`) and its sky and depth rows, and `further` the columns a walk goes
    further than at the default view, left and right. What the default view needs is the patch's core: drawn and
    placed as at the default view (`decorate`, `place`)."""

    def __init__(self, biome: str, left: int, right: int, facing: str = ">", view: View = DEFAULT_VIEW,
                 further: tuple[int, int] = (0, 0)):
        surface, soil, deep = PALETTES[biome]
        self.biome, self.view = biome, view
        self.pad = (view.pad[0] + further[0], view.pad[1] + further[1])  # columns beyond the core, left and right
        self.left, self.sky = left + self.pad[0], view.sky_rows
        width = self.left + 1 + right + self.pad[1]
        self.grid = [["."] * width for _ in range(self.sky + 1)]
        self.grid += [[surface] * width] + [[soil] * width] * 2 + [[deep] * width for _ in range(view.depth - 3)]
        self.grid = [list(row) for row in self.grid]  # every row its own list
        self.put(0, 0, facing)

    def put(self, dx: int, dy: int, ch: str) -> "Patch":
        row, col = self.sky + dy, self.left + dx
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
        """Plants on the ground and ores in the soil at random columns, leaving the columns in `keep_clear`. The columns
        beyond the core draw from a child stream of `rng`: the core's columns, and every draw after, are the same at
        every view."""
        inner = range(-self.left + 1, len(self.grid[0]) - self.left - 1)
        core = range(inner.start + self.pad[0], inner.stop - self.pad[1])
        self._decorate(rng, core, keep_clear, plants, ores)
        if self.pad != (0, 0):
            extra = [dx for dx in inner if dx not in core]
            self._decorate(rng.spawn(1)[0], extra, keep_clear, plants, ores)
        return self

    def _decorate(self, rng: np.random.Generator, columns, keep_clear: range, plants: float, ores: float) -> None:
        for dx in columns:
            if dx in keep_clear:
                continue
            if rng.random() < ores:
                self.put(dx, int(rng.integers(2, 4)), ORES[int(rng.integers(len(ORES)))])
            if rng.random() < plants and dx - 1 not in keep_clear and dx + 1 not in keep_clear:
                self.plant(dx, PLANTS[self.biome])

    @property
    def map(self) -> str:
        return "\n".join("".join(row) for row in self.grid)


@lru_cache(maxsize=4)
def training_world_seeds(collect_seed: int = 0, episodes: int = 64, view: View = DEFAULT_VIEW) -> tuple[int, ...]:
    """The world seeds of the first episodes `worldsim collect seed=collect_seed` plays at `view`: in-distribution
    worlds."""
    from worldsim.data.collect import derive_seed

    env = view.env()
    return tuple(env.reset(seed=derive_seed(collect_seed, e, 0))[1]["world_seed"] for e in range(episodes))


@lru_cache(maxsize=64)
def _world(seed: int):
    from worldsim.envs.craft2d.worldgen import generate

    return generate(seed, *WORLD)


def place(patch: Patch, rng: np.random.Generator, split: str, *, time_of_day: float | None = None,
          inventory: dict | None = None, selected: str = "dirt", collect_seed: int = 0) -> tuple[Scenario, dict]:
    """Stamp `patch` into a world: in distribution, a training world in a column range of the patch's own biome; out
    of distribution, a never-seen world seed in a biome the patch's tiles do not belong to. Returns the scenario
    and what was chosen. The place is drawn for the patch's core (the default view's patch), and taken where the
    columns beyond it fit too, so a probe at another view is the default view's, shown larger."""
    if split not in ("id", "ood"):
        raise ValueError(f"split={split!r}: expected 'id' or 'ood'")
    width, height = len(patch.grid[0]), len(patch.grid)
    core = width - sum(patch.pad)
    for _ in range(100):
        if split == "id":
            seeds = training_world_seeds(collect_seed, view=patch.view)
            seed = int(seeds[int(rng.integers(len(seeds)))])
        else:
            seed = OOD_SEED_BASE + int(rng.integers(2 ** 30))
        world = _world(seed)
        biome = np.asarray(world.biome)
        want = BIOME_NAMES.index(patch.biome)
        fits = biome == want if split == "id" else biome != want
        starts = _starts(fits, core)
        if not len(starts):
            continue
        ox = int(starts[int(rng.integers(len(starts)))]) - patch.pad[0]
        # the drawn place where the columns beyond the core fit too (always at the default view, which has none),
        # else the nearest place in this world where they do, without drawing again: the probes after stay the same
        wide = _starts(fits, width)
        if not len(wide):
            continue
        ox = int(wide[np.argmin(np.abs(wide - ox))])
        oy = int(world.sky_line[ox + patch.left]) - (patch.sky + 1)  # the patch's ground at the world's
        if oy < 0 or oy + height > WORLD[1] - 1:
            continue
        if time_of_day is None:
            time_of_day = float(rng.uniform(0.0, 0.45)) if split == "id" else float(rng.uniform(0.65, 0.85))
        scenario = Scenario(patch.map, inventory=dict(inventory or {}), selected=selected,
                            time_of_day=round(time_of_day, 3), world_seed=seed, origin=(ox, oy),
                            ground_row=patch.sky + 1)
        return scenario, {"world_seed": seed, "x": ox + patch.left, "biome": patch.biome,
                          "world_biome": BIOME_NAMES[int(biome[ox + patch.left])], "time_of_day": round(time_of_day, 3)}
    raise RuntimeError(f"no world found for a {width}-wide {patch.biome} patch ({split})")  # never seen in practice


def _starts(fits: np.ndarray, width: int) -> np.ndarray:
    """The start columns of a `width`-wide patch that lies in fitting columns, away from the bedrock walls."""
    ok = np.convolve(fits.astype(np.int64), np.ones(width, np.int64), mode="valid") == width
    ok[:8] = False
    ok[-8:] = False
    return np.flatnonzero(ok)
