"""World generation: one seed, one world, with the tiles, biomes and animals the env's docstring promises."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from worldsim.envs.craft2d import Biome, Craft2DEnv, Tile
from worldsim.envs.craft2d.tiles import BIOME_NAMES, SAND_PASSES, SOLID, Kind
from worldsim.envs.craft2d.worldgen import generate

REPO = Path(__file__).resolve().parents[1]
SEEDS = (0, 1, 2, 3, 4)


@pytest.fixture(scope="module")
def worlds():
    return {seed: generate(seed) for seed in SEEDS}


def _digest(world) -> str:
    h = hashlib.sha256()
    for part in (world.grid, world.biome, world.sky_line):
        h.update(np.ascontiguousarray(part).tobytes())
    h.update(repr(world.animals).encode())
    return h.hexdigest()


def test_same_seed_same_world_bit_for_bit(worlds):
    again = generate(0)
    w = worlds[0]
    assert np.array_equal(again.grid, w.grid) and again.grid.dtype == w.grid.dtype
    assert np.array_equal(again.biome, w.biome) and np.array_equal(again.sky_line, w.sky_line)
    assert again.animals == w.animals
    assert _digest(worlds[0]) != _digest(worlds[1])


def test_same_world_in_another_process(worlds):
    code = ("import hashlib, numpy as np\nfrom worldsim.envs.craft2d.worldgen import generate\nw = generate(0)\n"
            "h = hashlib.sha256()\nfor p in (w.grid, w.biome, w.sky_line):\n    h.update(np.ascontiguousarray(p).tobytes())\n"
            "h.update(repr(w.animals).encode())\nprint(h.hexdigest())\n")
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONHASHSEED": "123"}
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == _digest(worlds[0])


def test_default_size_and_env_world(worlds):
    assert worlds[0].grid.shape == (48, 512) and worlds[0].grid.dtype == np.uint8
    env = Craft2DEnv()
    assert env.world_size[0] >= 512 and env.world_size[1] >= 48
    env.reset(seed=0, options={"world_seed": 3})
    assert np.array_equal(env.game.grid, worlds[3].grid)  # the env plays exactly the generated world
    assert sorted(zip(env.game.kinds[1:], env.game.xs[1:], env.game.ys[1:])) == \
        sorted((k, x, y) for k, x, y, _ in worlds[3].animals)


@pytest.mark.parametrize("seed", SEEDS)
def test_world_has_bedrock_floor_and_walls(worlds, seed):
    grid = worlds[seed].grid
    assert (grid[-1] == Tile.BEDROCK).all()
    assert (grid[:, 0] == Tile.BEDROCK).all() and (grid[:, -1] == Tile.BEDROCK).all()
    assert (grid[:-2, 1:-1] != Tile.BEDROCK).all()  # and nowhere else but the ragged row above the floor


@pytest.mark.parametrize("seed", SEEDS)
def test_world_has_every_kind_of_ground(worlds, seed):
    present = {Tile(t) for t in np.unique(worlds[seed].grid)}
    for tile in (Tile.GRASS, Tile.DIRT, Tile.STONE, Tile.SAND, Tile.COAL, Tile.IRON, Tile.WOOD, Tile.LEAVES,
                 Tile.CAVE, Tile.SKY):
        assert tile in present, f"seed {seed}: no {tile.name}"
    assert Tile.WATER in present or Tile.LAVA in present


def test_biomes_across_seeds(worlds):
    seen = set()
    for seed, w in worlds.items():
        assert len(w.biome) == 512 and w.biome.max() < len(Biome)
        assert len(set(w.biome.tolist())) >= 2, f"seed {seed} is one biome"
        seen |= {BIOME_NAMES[b] for b in w.biome}
    assert len(seen) >= 3 and seen == set(BIOME_NAMES)


def test_biome_decides_the_surface(worlds):
    for w in worlds.values():
        for x in range(8, 504):
            top = w.grid[w.sky_line[x], x]
            if w.biome[x] == Biome.DESERT and top not in (Tile.WATER, Tile.CAVE):
                assert top == Tile.SAND, f"desert column {x} topped with {Tile(top).name}"
        assert not (w.grid[:, w.biome == Biome.DESERT] == Tile.GRASS).any()  # (tree crowns may overhang)


@pytest.mark.parametrize("seed", SEEDS)
def test_no_sand_left_hanging(worlds, seed):
    grid = worlds[seed].grid
    hanging = (grid[:-1] == Tile.SAND) & np.array(SAND_PASSES)[grid[1:]]
    assert not hanging.any(), f"sand over air at {np.argwhere(hanging)[:5].tolist()}"


@pytest.mark.parametrize("seed", SEEDS)
def test_animals_stand_on_ground(worlds, seed):
    w = worlds[seed]
    assert len(w.animals) >= 5
    assert len({(x, y) for _, x, y, _ in w.animals}) == len(w.animals)
    for kind, x, y, facing in w.animals:
        assert kind in (Kind.PIG, Kind.SHEEP) and facing in (-1, 1)
        assert not SOLID[w.grid[y, x]] and SOLID[w.grid[y + 1, x]], (kind, x, y)
        assert w.biome[x] != Biome.DESERT


def test_too_small_world_is_refused():
    with pytest.raises(ValueError, match=r"16x48"):
        generate(0, 16, 48)
    with pytest.raises(ValueError, match=r"64x10"):
        generate(0, 64, 10)


def test_other_sizes_generate():
    w = generate(7, 1024, 64)
    assert w.grid.shape == (64, 1024) and (w.grid[-1] == Tile.BEDROCK).all()


def test_surface_ores_lay_ores_bare_in_the_top_ground_tiles_and_change_nothing_deeper(worlds):
    plain, bare = worlds[3], generate(3, surface_ores=0.1)
    depth = np.arange(plain.grid.shape[0])[:, None] - plain.sky_line[None, :]
    ores = np.isin(bare.grid, [Tile.COAL, Tile.IRON, Tile.GOLD]) & ~np.isin(plain.grid, [Tile.COAL, Tile.IRON,
                                                                                          Tile.GOLD])
    assert ores[(depth >= 0) & (depth < 3)].mean() == pytest.approx(0.1, abs=0.03)  # some sand fell on changes
    assert not ores[depth >= 3].any() and not ores[depth < 0].any()
    for kind in (Tile.COAL, Tile.IRON, Tile.GOLD):  # every kind of ore, coal the most
        assert (bare.grid[ores] == kind).sum() >= 3
    assert (bare.grid[ores] == Tile.COAL).sum() > (bare.grid[ores] == Tile.GOLD).sum()
    assert np.array_equal(bare.biome, plain.biome) and np.array_equal(bare.sky_line, plain.sky_line)
    assert _digest(generate(3, surface_ores=0.0)) == _digest(plain)  # 0: the seed's world, bit for bit
    env = Craft2DEnv(surface_ores=0.1, world_seed=3)
    env.reset(seed=0)
    assert np.array_equal(env.game.grid, bare.grid)  # the env plays that world


def test_a_surface_ore_share_outside_0_to_1_is_refused():
    share = r"\[0, 1\]"
    with pytest.raises(ValueError, match=r"surface_ores=1.5: expected a share of the ground's top tiles in " + share):
        Craft2DEnv(surface_ores=1.5)
