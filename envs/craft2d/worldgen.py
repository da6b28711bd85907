"""World generation: one seed, one world, bit for bit.

Columns are split into biome segments; a smooth height map makes hills (flatter in the desert, steeper in the snow);
soil layers depend on the biome; worms carve caves; lava fills the deepest caves; lakes sit in local dips (frozen over
in the snow); trees, pines and cacti grow on top; animals spawn on the surface. Every random draw comes from one
`numpy.random.Generator` in a fixed order, so the same seed gives the same world on every machine.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from worldsim.envs.craft2d.tiles import SAND_PASSES, SOLID, Biome, Kind, Tile

MIN_WIDTH, MIN_HEIGHT = 32, 24
_SKY, _CAVE, _SAND, _WATER, _LAVA = int(Tile.SKY), int(Tile.CAVE), int(Tile.SAND), int(Tile.WATER), int(Tile.LAVA)


@dataclass
class World:
    """A generated world, before any step: the engine copies it into its state."""

    grid: np.ndarray  # (H, W) uint8 tile ids
    biome: np.ndarray  # (W,) uint8 biome per column
    sky_line: np.ndarray  # (W,) int: rows above it are open sky, rows at or below it underground (mined -> CAVE)
    animals: list[tuple[int, int, int, int]]  # (kind, x, y, facing) with facing -1 left, +1 right


def _value_noise(rng: np.random.Generator, n: int, period: float) -> np.ndarray:
    """Smooth noise in [-1, 1] with features about `period` columns apart."""
    knots = rng.random(int(n / period) + 2) * 2 - 1
    x = np.arange(n) / period
    i = x.astype(np.int64)
    f = x - i
    f = f * f * (3 - 2 * f)  # smoothstep between knots
    return knots[i] * (1 - f) + knots[i + 1] * f


def _biomes(rng: np.random.Generator, width: int) -> np.ndarray:
    biome = np.empty(width, np.uint8)
    x, prev = 0, -1
    while x < width:
        length = int(rng.integers(48, 112))
        choice = int(rng.integers(len(Biome)))
        if choice == prev:  # neighbouring segments always differ
            choice = (choice + 1) % len(Biome)
        biome[x:x + length] = choice
        x, prev = x + length, choice
    return biome


def _surface(rng: np.random.Generator, biome: np.ndarray, height: int) -> np.ndarray:
    width = len(biome)
    amp_by_biome = np.array([4.0, 2.0, 7.0, 1.5])[biome]  # forest, desert, snow, plains
    amp = np.convolve(np.pad(amp_by_biome, 8, mode="edge"), np.ones(17) / 17, mode="valid")  # no cliffs at borders
    base = round(height * 0.42)
    h = base + amp * (_value_noise(rng, width, 24) + 0.4 * _value_noise(rng, width, 7))
    return np.clip(np.round(h), 6, height - 16).astype(np.int64)


def _layers(biome: np.ndarray, surf: np.ndarray, height: int) -> np.ndarray:
    depth = np.arange(height)[:, None] - surf[None, :]  # (H, W): 0 at the surface tile
    grid = np.full(depth.shape, Tile.STONE, np.uint8)
    grid[depth < 0] = Tile.SKY
    green = (biome == Biome.FOREST) | (biome == Biome.PLAINS)
    desert = biome == Biome.DESERT
    snow = biome == Biome.SNOW
    soil = (depth >= 0) & (depth <= 3)
    grid[soil & (green | snow)[None]] = Tile.DIRT
    grid[(depth == 0) & green[None]] = Tile.GRASS
    grid[(depth == 0) & snow[None]] = Tile.SNOW
    grid[(depth >= 0) & (depth <= 4) & desert[None]] = Tile.SAND
    return grid


def _ores(rng: np.random.Generator, grid: np.ndarray, surf: np.ndarray) -> None:
    depth = np.arange(grid.shape[0])[:, None] - surf[None, :]
    r = rng.random(grid.shape)
    stone = grid == Tile.STONE
    grid[stone & (r < 0.06) & (depth >= 3)] = Tile.COAL
    grid[stone & (r >= 0.06) & (r < 0.085) & (depth >= 8)] = Tile.IRON
    grid[stone & (r >= 0.085) & (r < 0.095) & (depth >= 15)] = Tile.GOLD


def _lakes(rng: np.random.Generator, grid: np.ndarray, biome: np.ndarray, surf: np.ndarray) -> None:
    height, width = grid.shape
    for x in range(16, width - 16, 40):
        if rng.random() > 0.5 or biome[x] == Biome.DESERT:
            continue
        half = int(rng.integers(2, 5))
        window = slice(x - half - 4, x + half + 5)
        x0 = window.start + int(np.argmax(surf[window]))  # the lowest ground nearby: water stays in its dip
        level = int(surf[x0])
        if np.any(surf[x0 - half - 1:x0 + half + 2] > level):
            continue
        for cx in range(x0 - half, x0 + half + 1):
            depth = 1 + min(cx - (x0 - half), (x0 + half) - cx, 2)  # a bowl, 1 to 3 deep
            grid[:level, cx] = Tile.SKY
            grid[level:level + depth, cx] = Tile.WATER
            grid[level + depth, cx] = Tile.SAND
            if biome[cx] == Biome.SNOW:
                grid[level, cx] = Tile.ICE
            surf[cx] = level


def _caves(rng: np.random.Generator, grid: np.ndarray, surf: np.ndarray) -> None:
    height, width = grid.shape
    paths = []
    for _ in range(width // 32):
        x0 = int(rng.integers(4, width - 4))
        y0 = int(rng.integers(int(surf[x0]) + 3, height - 3))
        n = int(rng.integers(20, 70))
        angle = rng.random() * 2 * np.pi + np.cumsum((rng.random(n) - 0.5) * 1.2)  # a wandering heading
        xs = np.clip(x0 + np.cumsum(np.cos(angle)), 2, width - 3).astype(np.int64)
        ys = np.clip(y0 + np.cumsum(0.6 * np.sin(angle)), 2, height - 3).astype(np.int64)
        paths.append((xs, ys))
    xs = np.concatenate([p[0] for p in paths])
    ys = np.concatenate([p[1] for p in paths])
    keep = ys > surf[xs] + 1  # a worm reaching the surface stops short of it, leaving a roof
    xs, ys = xs[keep], ys[keep]
    for dy in (-1, 0, 1):  # carve a 3x3 brush along the paths
        for dx in (-1, 0, 1):
            patch = grid[ys + dy, xs + dx]
            carve = (patch != _WATER) & (patch != _SAND)
            grid[(ys + dy)[carve], (xs + dx)[carve]] = _CAVE
    deep = grid[height - 6:]
    deep[deep == _CAVE] = _LAVA  # the deepest caves hold lava


_GAP = {int(Biome.FOREST): (4, 8), int(Biome.PLAINS): (12, 24), int(Biome.SNOW): (5, 10), int(Biome.DESERT): (6, 14)}


def _plants(rng: np.random.Generator, grid: np.ndarray, biome: np.ndarray, surf: np.ndarray) -> None:
    width = grid.shape[1]
    desert, snow = int(Biome.DESERT), int(Biome.SNOW)
    sky, sand, grass, snow_tile = int(Tile.SKY), _SAND, int(Tile.GRASS), int(Tile.SNOW)
    x = 3
    while x < width - 3:
        b = int(biome[x])
        top = int(surf[x]) - 1  # the first tile above the ground
        ground = int(grid[top + 1, x])
        if b == desert and ground == sand:
            grid[top - int(rng.integers(1, 4)) + 1:top + 1, x] = Tile.CACTUS
        elif b != desert and b != snow and ground == grass and top >= 7:
            crown = top - int(rng.integers(3, 6))
            leaves = grid[crown - 1:crown + 2, x - 1:x + 2]
            leaves[leaves == sky] = Tile.LEAVES
            if grid[crown - 2, x] == sky:
                grid[crown - 2, x] = Tile.LEAVES
            grid[crown + 1:top + 1, x] = Tile.WOOD
        elif b == snow and ground == snow_tile and top >= 7:
            crown = top - int(rng.integers(2, 4))
            for dy, half in ((0, 1), (-1, 1), (-2, 0), (-3, 0)):  # a pointed pine
                row = grid[crown + dy, x - half:x + half + 1]
                row[row == sky] = Tile.PINE
            grid[crown + 1:top + 1, x] = Tile.WOOD
        x += int(rng.integers(*_GAP[b]))


def settle_sand(grid: np.ndarray, sky_line: np.ndarray) -> None:
    """Let every unsupported sand tile fall until it rests (in place); the tile it leaves is sky or cave."""
    passes = np.array(SAND_PASSES)
    rows = np.arange(grid.shape[0] - 1)[:, None]
    vacated = np.where(rows < sky_line[None, :], _SKY, _CAVE).astype(np.uint8)  # (H-1, W)
    while True:
        falls = (grid[:-1] == _SAND) & passes[grid[1:]]  # (H-1, W): sand with room below; never two in a column
        if not falls.any():
            return
        grid[1:][falls] = _SAND
        grid[:-1][falls] = vacated[falls]


def _animals(rng: np.random.Generator, grid: np.ndarray, biome: np.ndarray) -> list[tuple[int, int, int, int]]:
    solid = np.array(SOLID)
    width = grid.shape[1]
    desert, snow, plains = int(Biome.DESERT), int(Biome.SNOW), int(Biome.PLAINS)
    columns = rng.choice(np.arange(3, width - 3), size=width // 24, replace=False)
    coins = rng.random((len(columns), 2))
    tops = np.argmax(solid[grid[:, columns]], axis=0) - 1  # the tile above the first solid one, per column
    animals = []
    for x, y, (c_kind, c_facing) in zip(columns.tolist(), tops.tolist(), coins.tolist()):
        b = int(biome[x])
        if y < 1 or grid[y, x] == _WATER or grid[y, x] == _LAVA or b == desert:
            continue
        kind = Kind.SHEEP if b == snow or (b == plains and c_kind < 0.5) else Kind.PIG
        animals.append((int(kind), x, y, 1 if c_facing < 0.5 else -1))
    return animals


def _outcrops(rng: np.random.Generator, grid: np.ndarray, surf: np.ndarray, share: float) -> None:
    """Lay ores bare: a `share` of the ground's top three tiles (soil or stone, not water, ice or plants) become coal,
    iron or gold, in the deep ores' proportions (6 : 2.5 : 1)."""
    depth = np.arange(grid.shape[0])[:, None] - surf[None, :]
    ground = np.isin(grid, [Tile.GRASS, Tile.DIRT, Tile.STONE, Tile.SAND, Tile.SNOW]) & (depth >= 0) & (depth < 3)
    r = rng.random(grid.shape) / share  # below 1 on `share` of the tiles
    grid[ground & (r < 6 / 9.5)] = Tile.COAL
    grid[ground & (r >= 6 / 9.5) & (r < 8.5 / 9.5)] = Tile.IRON
    grid[ground & (r >= 8.5 / 9.5) & (r < 1)] = Tile.GOLD


def generate(seed: int, width: int = 512, height: int = 48, surface_ores: float = 0.0) -> World:
    """Generate the world for `seed`. Same seed and size, same world, bit for bit. `surface_ores` > 0 lays that share
    of the ground's top three tiles bare as ores (drawn apart: the rest of the world is the seed's, unchanged)."""
    if width < MIN_WIDTH or height < MIN_HEIGHT:
        raise ValueError(f"world size {width}x{height}: expected at least {MIN_WIDTH} wide and {MIN_HEIGHT} high")
    rng = np.random.default_rng(seed)
    biome = _biomes(rng, width)
    surf = _surface(rng, biome, height)
    grid = _layers(biome, surf, height)
    _ores(rng, grid, surf)
    _lakes(rng, grid, biome, surf)
    _caves(rng, grid, surf)
    _plants(rng, grid, biome, surf)
    grid[height - 1] = Tile.BEDROCK  # an unbreakable floor, ragged on top
    grid[height - 2][rng.random(width) < 0.5] = Tile.BEDROCK
    grid[:, 0] = grid[:, width - 1] = Tile.BEDROCK  # the world's side walls
    if surface_ores > 0:
        _outcrops(np.random.default_rng([seed, 1]), grid, surf, surface_ores)
    settle_sand(grid, surf)
    animals = _animals(rng, grid, biome)
    return World(grid=grid, biome=biome, sky_line=surf, animals=animals)
