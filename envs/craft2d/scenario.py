"""Scenarios: a world, or a patch of one, written as an ASCII map, with the player, animals, inventory and time placed.

    Scenario('''
        .........
        ..>...p..
        GGGGGGGGG
        #########
    ''', inventory={"dirt": 3}, time_of_day=0.7)

Alone, the map is the whole world: it is widened to at least the view (its edge columns repeated outward), raised
to at least the view with open sky on top, walled with bedrock on both sides and floored with bedrock. With
`world_seed`, the map is stamped into that generated world with its top-left tile at `origin` (default: centred on
the world, straddling the ground line); in the map's columns, the map's own ground line becomes the world's.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

import numpy as np

from worldsim.envs.craft2d.engine import MAX_HEALTH, GameState, new_state
from worldsim.envs.craft2d.tiles import BIOME_NAMES, EMPTY, ITEM_NAMES, PLACEABLE, Kind, Tile
from worldsim.envs.craft2d.worldgen import World, generate

# '.' is air: open sky above a column's ground line, a cave below it.
LEGEND = MappingProxyType({
    ".": Tile.SKY, "G": Tile.GRASS, "D": Tile.DIRT, "#": Tile.STONE, "S": Tile.SAND, "N": Tile.SNOW,
    "I": Tile.ICE, "T": Tile.WOOD, "L": Tile.LEAVES, "E": Tile.PINE, "C": Tile.CACTUS, "=": Tile.PLANKS,
    "c": Tile.COAL, "i": Tile.IRON, "o": Tile.GOLD, "~": Tile.WATER, "%": Tile.LAVA, "B": Tile.BEDROCK,
})
# Entities stand in air. Player: '>' faces right, '<' faces left. Animals: lower case faces right, upper case left.
ENTITIES = MappingProxyType({">": (Kind.PLAYER, 1), "<": (Kind.PLAYER, -1), "p": (Kind.PIG, 1),
                             "P": (Kind.PIG, -1), "h": (Kind.SHEEP, 1), "H": (Kind.SHEEP, -1)})


@dataclass(frozen=True)
class Scenario:
    """An ASCII map plus the player's situation. `Craft2DEnv.reset(options={"scenario": scenario})` starts it."""

    map: str
    inventory: Mapping[str, int] = field(default_factory=dict)
    selected: str = "dirt"
    time_of_day: float = 0.0  # fraction of the day cycle: 0 morning, 0.5 dusk, 0.6-0.9 night
    health: int = MAX_HEALTH
    biome: str = "forest"  # reported for every column of a map-only world
    world_seed: int | None = None
    origin: tuple[int, int] | None = None  # world (x, y) of the map's top-left tile, with world_seed
    # Map row where the ground starts in every column: air above it is sky, below it cave, and what is mined above
    # it opens to the sky. Default: per column, the first tile that is neither air nor a plant (so a pillar standing
    # on the ground counts as ground).
    ground_row: int | None = None

    def rows(self) -> list[str]:
        """The map's lines, dedented, without blank lines at either end; checked character by character."""
        lines = textwrap.dedent(self.map).strip("\n").split("\n")
        lines = [line.rstrip() for line in lines]
        if not lines or not any(lines):
            raise ValueError("scenario map is empty: expected rows of characters such as '..>..' and 'GGGGG'")
        width = max(len(line) for line in lines)
        for n, line in enumerate(lines, 1):
            for c, ch in enumerate(line, 1):
                if ch not in LEGEND and ch not in ENTITIES:
                    known = "".join(LEGEND) + "".join(ENTITIES)
                    raise ValueError(f"scenario map line {n}, column {c}: unknown character {ch!r}; "
                                     f"expected one of {known!r}")
        return [line.ljust(width, ".") for line in lines]

    def __post_init__(self):
        """Check everything that does not depend on the env, so a bad scenario fails where it is written."""
        rows = self.rows()
        players = sum(ENTITIES[ch][0] == Kind.PLAYER for line in rows for ch in line if ch in ENTITIES)
        if players != 1:
            raise ValueError(f"scenario map has {players} players: expected exactly one '>' or '<'")
        for name, n in self.inventory.items():
            if name not in ITEM_NAMES:
                raise ValueError(f"scenario inventory item {name!r}: expected one of {ITEM_NAMES}")
            if not isinstance(n, (int, np.integer)) or not 0 <= n <= 99:
                raise ValueError(f"scenario inventory {name}={n!r}: expected a count from 0 to 99")
        placeable = [ITEM_NAMES[i] for i in PLACEABLE]
        if self.selected not in placeable:
            raise ValueError(f"scenario selected={self.selected!r}: expected one of {placeable}")
        if not 0 < self.health <= MAX_HEALTH:
            raise ValueError(f"scenario health={self.health}: expected 1 to {MAX_HEALTH}")
        if self.biome not in BIOME_NAMES:
            raise ValueError(f"scenario biome={self.biome!r}: expected one of {BIOME_NAMES}")
        if not 0.0 <= self.time_of_day < 1.0:
            raise ValueError(f"scenario time_of_day={self.time_of_day}: expected a fraction of the day in [0, 1)")
        if self.ground_row is not None and not 0 <= self.ground_row <= len(rows):
            raise ValueError(f"scenario ground_row={self.ground_row}: expected a row of the map, 0 to {len(rows)}")
        if self.origin is not None and self.world_seed is None:
            raise ValueError(f"scenario origin={self.origin}: an origin needs a world_seed to stamp the map into")

    def build(self, view: tuple[int, int], world_size: tuple[int, int], day_length: int) -> GameState:
        """The starting GameState for a view of (cols, rows) world tiles."""
        rows = self.rows()
        inventory = [0] * len(ITEM_NAMES)
        for name, n in self.inventory.items():
            inventory[ITEM_NAMES.index(name)] = int(n)
        placeable = [ITEM_NAMES[i] for i in PLACEABLE]

        tiles = np.array([[LEGEND.get(ch, Tile.SKY) for ch in line] for line in rows], np.uint8)  # (h, w)
        world, (ox, oy) = (self._stamp(tiles, world_size) if self.world_seed is not None
                           else self._alone(tiles, view))
        animals, player = [], None
        for r, line in enumerate(rows):
            for c, ch in enumerate(line):
                if ch in ENTITIES:
                    kind, facing = ENTITIES[ch]
                    if kind == Kind.PLAYER:
                        player = (c + ox, r + oy, facing)
                    else:
                        animals.append((int(kind), c + ox, r + oy, facing))
        world.animals = [a for a in world.animals if not (ox <= a[1] < ox + tiles.shape[1] and
                                                           oy <= a[2] < oy + tiles.shape[0])] + animals
        return new_state(world, player[:2], facing=player[2], time=round(self.time_of_day * day_length) % day_length,
                         day_length=day_length, health=self.health, inventory=inventory,
                         selected=placeable.index(self.selected))

    def _alone(self, tiles: np.ndarray, view: tuple[int, int]) -> tuple[World, tuple[int, int]]:
        h, w = tiles.shape
        grow_w = max(view[0] - w, 0)
        left = grow_w // 2
        tiles = np.pad(tiles, ((0, 0), (left, grow_w - left)), mode="edge")  # the ground goes on sideways
        tiles = np.pad(tiles, ((max(view[1] - h, 0), 0), (0, 0)), constant_values=Tile.SKY)  # open sky above
        tiles = np.pad(tiles, ((0, 1), (1, 1)), constant_values=Tile.BEDROCK)
        sky_line = self._ground(tiles, top=max(view[1] - h, 0))
        _air(tiles, sky_line)
        biome = np.full(tiles.shape[1], BIOME_NAMES.index(self.biome), np.uint8)
        return World(grid=tiles, biome=biome, sky_line=sky_line, animals=[]), (left + 1, max(view[1] - h, 0))

    def _ground(self, tiles: np.ndarray, top: int) -> np.ndarray:
        """The ground line of each column of `tiles`, whose map rows start `top` rows down."""
        if self.ground_row is None:
            return _ground_line(tiles)
        return np.full(tiles.shape[1], top + self.ground_row, np.int64)

    def _stamp(self, tiles: np.ndarray, world_size: tuple[int, int]) -> tuple[World, tuple[int, int]]:
        world = generate(self.world_seed, *world_size)
        h, w = tiles.shape
        ww, wh = world_size
        ox, oy = self.origin if self.origin is not None else (ww // 2 - w // 2, int(world.sky_line[ww // 2]) - h // 2)
        if ox < 1 or oy < 0 or ox + w > ww - 1 or oy + h > wh - 1:
            raise ValueError(f"scenario origin ({ox}, {oy}) puts the {w}x{h} map outside the {ww}x{wh} world "
                             f"(inside the bedrock walls and floor)")
        world.grid[oy:oy + h, ox:ox + w] = tiles
        # Where the map has ground, its ground line is the world's: its air above is sky, not cave, and what is
        # mined there opens to the sky, whatever the hills around it do.
        line = self._ground(tiles, top=0)
        has_ground = line < h
        world.sky_line[ox:ox + w][has_ground] = oy + line[has_ground]
        _air(world.grid, world.sky_line)
        return world, (ox, oy)


def _ground_line(tiles: np.ndarray) -> np.ndarray:
    """Per column, the first row that is neither air nor a plant: above it is sky, from it down is underground."""
    ground = ~np.array(EMPTY)[tiles] & ~np.isin(tiles, [Tile.WOOD, Tile.LEAVES, Tile.PINE, Tile.CACTUS])
    return np.where(ground.any(0), ground.argmax(0), tiles.shape[0]).astype(np.int64)


def _air(tiles: np.ndarray, sky_line: np.ndarray) -> None:
    """Air below the ground line is cave (in place)."""
    below = np.arange(tiles.shape[0])[:, None] >= sky_line[None, :]
    tiles[below & np.array(EMPTY)[tiles]] = Tile.CAVE
