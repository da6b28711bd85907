"""The Craft2D game itself: state and rules, with no rendering and no Gymnasium.

The grid is a flat `bytearray` (`cells[y * W + x]`): scalar reads from it are several times faster than numpy's, and
`grid` is a numpy view of the same memory for the renderer. Entities live in parallel lists; entity 0 is the player.
An occupancy `bytearray` holds entity index + 1 per tile, because no two entities ever share a tile (that is what makes
every frame decode exactly).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np

from worldsim.envs.craft2d.tiles import (
    BIOME_NAMES, DROP, ITEM_NAMES, KIND_NAMES, MAX_STACK, MINEABLE, PLACEABLE, PLACES_AS, SAND_PASSES, SOLID,
    TILE_NAMES, Action, Kind, Tile,
)

MAX_HEALTH = 6  # three hearts
SAFE_FALL = 3  # tiles a player can fall without damage; each tile more costs one half-heart
REGEN_EVERY = 50  # steps per half-heart healed
MAX_ENTITIES = 254  # the occupancy grid stores index + 1 in a byte

# Animals walk through what the player walks through but treat water and lava as walls: they never drown or burn.
ANIMAL_PASSES = tuple(not SOLID[t] and t not in (Tile.WATER, Tile.LAVA) for t in range(len(Tile)))
# Plain ints for the hot path: reading an IntEnum member costs about a microsecond.
_SKY, _CAVE, _WATER, _LAVA, _SAND = (int(t) for t in (Tile.SKY, Tile.CAVE, Tile.WATER, Tile.LAVA, Tile.SAND))
(_NOOP, _LEFT, _RIGHT, _JUMP, _JUMP_LEFT, _JUMP_RIGHT, _MINE, _MINE_UP, _MINE_DOWN, _PLACE, _PLACE_DOWN,
 _NEXT_BLOCK) = (int(a) for a in Action)
_PLACES_AS = tuple(int(PLACES_AS[item]) for item in PLACEABLE)
_PHASES = ("day", "dusk", "night", "dawn")


def day_phase(time: int, day_length: int) -> tuple[int, int]:
    """(light level 0..5, phase index) at `time`: day for half the cycle, then dusk, night and dawn."""
    p = (time % day_length) / day_length
    if p < 0.5:
        return 0, 0
    if p < 0.6:
        return 1 + int((p - 0.5) / 0.1 * 4), 1  # darkening through levels 1..4
    if p < 0.9:
        return 5, 2
    return 4 - int((p - 0.9) / 0.1 * 4), 3  # brightening through 4..1


@dataclass
class GameState:
    """A deep copy of everything that decides what happens next, the env's RNG state included."""

    grid: np.ndarray  # (H, W) uint8
    sky_line: np.ndarray  # (W,) int
    biome: np.ndarray  # (W,) uint8
    kinds: list[int]
    xs: list[int]
    ys: list[int]
    facings: list[int]
    walking: list[int]
    health: int
    fall: int
    inventory: list[int]
    selected: int
    time: int
    day_length: int
    falling: set[int] = field(default_factory=set)
    events: list[str] = field(default_factory=list)
    rng_state: dict | None = None


class Game:
    """Craft2D's rules over one world. `step(action, rng)` advances one tick and returns the reward."""

    def __init__(self, state: GameState, view: tuple[int, int], rewards: tuple[float, ...]):
        self.view_w, self.view_h = view  # playfield size in tiles (the HUD row is not part of the world view)
        self.rewards = rewards  # reward per item collected, indexed by Item
        self.load(state)

    # ---- state -------------------------------------------------------------------------------------------------
    def load(self, s: GameState) -> None:
        h, w = s.grid.shape
        if h < self.view_h or w < self.view_w:
            raise ValueError(f"world of {w}x{h} tiles is smaller than the {self.view_w}x{self.view_h} view")
        if len(s.kinds) > MAX_ENTITIES:
            raise ValueError(f"{len(s.kinds)} entities: at most {MAX_ENTITIES} fit in one world")
        self.width, self.height = w, h
        self.cells = bytearray(np.ascontiguousarray(s.grid, np.uint8).tobytes())
        self.grid = np.frombuffer(self.cells, np.uint8).reshape(h, w)  # a view: writes to cells show here
        self.sky_line = s.sky_line.copy()
        self.biome = s.biome.copy()
        self.kinds, self.xs, self.ys = list(s.kinds), list(s.xs), list(s.ys)
        self.facings, self.walking = list(s.facings), list(s.walking)
        self.health, self.fall = s.health, s.fall
        self.inventory, self.selected = list(s.inventory), s.selected
        self.time, self.day_length = s.time, s.day_length
        self.falling = set(s.falling)
        self.events = list(s.events)
        self.acted_at: int | None = None  # the tile the last step mined or placed (flat index); not saved: transient
        self.occ = bytearray(w * h)
        for k, (x, y) in enumerate(zip(self.xs, self.ys)):
            i = y * w + x
            if SOLID[self.cells[i]] or self.occ[i]:
                what = "another entity" if self.occ[i] else TILE_NAMES[self.cells[i]]
                raise ValueError(f"{KIND_NAMES[self.kinds[k]]} at ({x}, {y}) is inside {what}")
            self.occ[i] = k + 1
        # Light level and phase for every time of day, computed once: the hot path only indexes.
        self._light = tuple(day_phase(t, self.day_length) for t in range(self.day_length))

    def save(self, rng_state: dict | None = None) -> GameState:
        return GameState(
            grid=self.grid.copy(), sky_line=self.sky_line.copy(), biome=self.biome.copy(), kinds=list(self.kinds),
            xs=list(self.xs), ys=list(self.ys), facings=list(self.facings), walking=list(self.walking),
            health=self.health, fall=self.fall, inventory=list(self.inventory), selected=self.selected,
            time=self.time, day_length=self.day_length, falling=set(self.falling), events=list(self.events),
            rng_state=copy.deepcopy(rng_state))

    # ---- rules -------------------------------------------------------------------------------------------------
    def above_ground(self, i: int) -> bool:
        """Whether tile i (flat index) lies above the original ground line: emptied, it shows sky, not a cave wall."""
        w = self.width
        return i // w < self.sky_line[i % w]

    def _vacated(self, i: int) -> int:
        """What a tile becomes when emptied: sky above the original ground line, cave wall below it."""
        return _SKY if self.above_ground(i) else _CAVE

    def _move(self, k: int, i: int, j: int) -> None:
        """Move entity k from flat index i to j (both checked free by the caller)."""
        occ, w = self.occ, self.width
        occ[i], occ[j] = 0, k + 1
        self.ys[k], self.xs[k] = divmod(j, w)
        if i >= w and self.cells[i - w] == _SAND:  # sand resting on the entity now has nothing below it
            self.falling.add(i - w)

    def step(self, action: int, rng: np.random.Generator) -> float:
        cells, occ, w = self.cells, self.occ, self.width
        self.events = events = []
        self.acted_at = None
        reward = 0.0
        x, y, f = self.xs[0], self.ys[0], self.facings[0]
        i = y * w + x
        jumped = False
        if action == _LEFT or action == _RIGHT:
            f = -1 if action == _LEFT else 1
            j = i + f
            if not SOLID[cells[j]] and not occ[j]:
                self._move(0, i, j)
                i = j  # gravity, water and lava below act where the player now is
        elif action == _JUMP or action == _JUMP_LEFT or action == _JUMP_RIGHT:
            if action != _JUMP:
                f = -1 if action == _JUMP_LEFT else 1
            below = i + w
            grounded = SOLID[cells[below]] or occ[below] or cells[i] == _WATER  # in water you can always swim up
            up = i - w
            if grounded and y > 0 and not SOLID[cells[up]] and not occ[up]:
                self._move(0, i, up)
                i, jumped = up, True
            j = i + f  # sideways after the rise, or as air control when there is no rise
            if action != _JUMP and not SOLID[cells[j]] and not occ[j]:
                self._move(0, i, j)
                i = j
        elif action == _MINE or action == _MINE_UP or action == _MINE_DOWN:
            j = i + f if action == _MINE else (i - w if action == _MINE_UP else i + w)
            if j >= 0 and MINEABLE[cells[j]]:
                tile = cells[j]
                cells[j], self.acted_at = self._vacated(j), j
                events.append(f"player mined {TILE_NAMES[tile]}")
                item = DROP[tile]
                if item >= 0 and self.inventory[item] < MAX_STACK:
                    self.inventory[item] += 1
                    reward += self.rewards[item]
                if j >= w and cells[j - w] == _SAND:
                    self.falling.add(j - w)
        elif action == _PLACE or action == _PLACE_DOWN:
            j = i + f if action == _PLACE else i + w
            item = PLACEABLE[self.selected]
            if self.inventory[item] > 0 and SAND_PASSES[cells[j]] and not occ[j]:
                cells[j], self.acted_at = _PLACES_AS[self.selected], j
                self.inventory[item] -= 1
                events.append(f"player placed {ITEM_NAMES[item]}")
                if cells[j] == _SAND:
                    self.falling.add(j)
        elif action == _NEXT_BLOCK:
            self.selected = (self.selected + 1) % len(PLACEABLE)
        self.facings[0] = f

        # Gravity on the player: one tile per step, every other step in water; landing hard hurts, on landing.
        if not jumped:
            below = i + w
            if not SOLID[cells[below]] and not occ[below] and (cells[i] != _WATER or self.time % 2 == 0):
                self._move(0, i, below)
                i = below
                self.fall = 0 if cells[i] == _WATER else self.fall + 1  # water breaks a fall
            below = i + w
            if SOLID[cells[below]] or occ[below]:
                if self.fall > SAFE_FALL:
                    self.health = max(0, self.health - (self.fall - SAFE_FALL))
                    events.append("player took fall damage")
                self.fall = 0
        if cells[i] == _LAVA:
            self.health = 0
            events.append("player fell into lava")

        if self.falling:
            self._fall_sand(events)
        if len(self.kinds) > 1:
            self._animals(rng.random(len(self.kinds)).tolist())

        self.time += 1
        if self.time % REGEN_EVERY == 0 and 0 < self.health < MAX_HEALTH:
            self.health += 1
        return reward

    def _fall_sand(self, events: list[str]) -> None:
        """Each unsupported sand column moves down one tile, bottom first, so a column falls together."""
        cells, occ, w = self.cells, self.occ, self.width
        pending, self.falling = sorted(self.falling, reverse=True), set()
        for i in pending:
            below = i + w
            if cells[i] != _SAND or not SAND_PASSES[cells[below]] or occ[below]:
                continue
            top = i
            while top >= w and cells[top - w] == _SAND:  # the contiguous sand above rides along
                top -= w
            cells[below] = _SAND
            cells[top] = self._vacated(top)
            self.falling.add(below)
            if "sand fell" not in events:
                events.append("sand fell")

    def _animals(self, u: list[float]) -> None:
        """Wander: each step an animal may stop, turn and start walking; walking animals move about every other step."""
        cells, occ, w = self.cells, self.occ, self.width
        xs, ys, facings, walking = self.xs, self.ys, self.facings, self.walking
        for k in range(1, len(xs)):
            i = ys[k] * w + xs[k]
            below = i + w
            if ANIMAL_PASSES[cells[below]] and not occ[below]:
                self._move(k, i, below)
                continue
            r = u[k]
            if r < 0.04:
                walking[k] = 0
            elif r < 0.12:
                walking[k], facings[k] = 1, (-1 if r < 0.08 else 1)
            elif walking[k] and r < 0.6:
                j = i + facings[k]
                if ANIMAL_PASSES[cells[j]] and not occ[j] and not occ[j + w]:  # never onto another's head
                    self._move(k, i, j)
                elif SOLID[cells[j]] and i >= 2 * w and ANIMAL_PASSES[cells[j - w]] and not occ[j - w] \
                        and ANIMAL_PASSES[cells[i - w]] and not occ[i - w]:
                    self._move(k, i, j - w)  # hop up a one-tile step of terrain (never onto another entity)
                else:
                    facings[k] = -facings[k]

    # ---- what the env reports ------------------------------------------------------------------------------------
    @property
    def light_level(self) -> int:
        return self._light[self.time % self.day_length][0]

    @property
    def phase(self) -> str:
        return _PHASES[self._light[self.time % self.day_length][1]]

    @property
    def camera(self) -> tuple[int, int]:
        """Top-left world tile of the view: centred on the player, clamped to the world."""
        x0 = min(max(self.xs[0] - self.view_w // 2, 0), self.width - self.view_w)
        y0 = min(max(self.ys[0] - self.view_h // 2, 0), self.height - self.view_h)
        return x0, y0

    def visible(self) -> list[int]:
        """Indices of the animals inside the view."""
        x0, y0 = self.camera
        return [k for k in range(1, len(self.xs))
                if x0 <= self.xs[k] < x0 + self.view_w and y0 <= self.ys[k] < y0 + self.view_h]

    def caption(self, visible: list[int]) -> str:
        """A short factual caption: time of day, biome, what is in view and where, what just happened."""
        px, py = self.xs[0], self.ys[0]
        parts = [self.phase, f"{BIOME_NAMES[self.biome[px]]} biome"]
        if self.cells[py * self.width + px] == _WATER:
            parts.append("player swimming")
        for k in sorted(visible, key=lambda k: abs(self.xs[k] - px) + abs(self.ys[k] - py))[:2]:
            dx, dy = self.xs[k] - px, self.ys[k] - py
            where = ("left of" if dx < 0 else "right of") if dx else ("above" if dy < 0 else "below")
            parts.append(f"{KIND_NAMES[self.kinds[k]]} {where} player")
        parts.extend(self.events)
        return ", ".join(parts)

    def info(self) -> dict:
        visible = self.visible()
        x0, y0 = self.camera
        return {
            "player_pos": (self.xs[0], self.ys[0]),
            "camera": (x0, y0),
            "facing": "left" if self.facings[0] < 0 else "right",
            "health": self.health,
            "inventory": {name: n for name, n in zip(ITEM_NAMES, self.inventory) if n},
            "selected": ITEM_NAMES[PLACEABLE[self.selected]],
            "time_of_day": (self.time % self.day_length) / self.day_length,
            "light_level": self.light_level,
            "biome": BIOME_NAMES[self.biome[self.xs[0]]],
            "visible_entities": [
                {"kind": KIND_NAMES[self.kinds[k]], "pos": (self.xs[k], self.ys[k]),
                 "facing": "left" if self.facings[k] < 0 else "right"} for k in visible],
            "events": list(self.events),
            "caption": self.caption(visible),
        }


def new_state(world, player: tuple[int, int], *, time: int, day_length: int, health: int = MAX_HEALTH,
              inventory: list[int] | None = None, selected: int = 0, facing: int = 1) -> GameState:
    """A fresh GameState from a generated or scenario world with the player placed at `player` = (x, y)."""
    kinds, xs, ys, facings = [int(Kind.PLAYER)], [player[0]], [player[1]], [facing]
    for kind, x, y, fa in world.animals:
        if (x, y) != tuple(player):
            kinds.append(kind), xs.append(x), ys.append(y), facings.append(fa)
    grid = world.grid.copy()
    w = grid.shape[1]
    unsupported = (grid[:-1] == _SAND) & np.array(SAND_PASSES)[grid[1:]]  # sand a scenario left hanging: falls
    return GameState(
        grid=grid, sky_line=world.sky_line.copy(), biome=world.biome.copy(), kinds=kinds, xs=xs, ys=ys,
        facings=facings, walking=[0] * len(kinds), health=health, fall=0,
        inventory=list(inventory) if inventory is not None else [0] * len(ITEM_NAMES), selected=selected,
        time=time, day_length=day_length, falling={int(y * w + x) for y, x in zip(*np.nonzero(unsupported))})
