"""The decoder reads every engine frame back exactly: tiles, entities, HUD and light, at several view and tile sizes."""

from __future__ import annotations

import numpy as np
import pytest

from worldsim.envs.craft2d import Craft2DEnv, TileDecoder, decode
from worldsim.envs.craft2d.engine import Game
from worldsim.envs.craft2d.tiles import BIOME_NAMES, ITEM_NAMES, KIND_NAMES, PLACEABLE

from conftest import random_actions

TIMES = (0.1, 0.75, 0.52, 0.95, 0.3)  # day, deep night, dusk, dawn, day


def expected_hud(game: Game, width: int) -> tuple[int, str, tuple[tuple[str, int], ...]]:
    """What the HUD should show, written from the docstring: hearts, the selected item and count, then others held."""
    sel = int(PLACEABLE[game.selected])
    others = [(ITEM_NAMES[i], n) for i, n in enumerate(game.inventory) if n and i != sel]
    n_slots = (width - 3) // 2  # three heart cells, then (icon, count) pairs
    return game.health, ITEM_NAMES[sel], ((ITEM_NAMES[sel], game.inventory[sel]), *others[:n_slots - 1])


def assert_decodes_exactly(frame: np.ndarray, env: Craft2DEnv, info: dict, tile_size: int = 8) -> None:
    game = env.game
    d = decode(frame, tile_size=tile_size)
    cols, rows = env.view_width, env.view_height - 1
    assert frame.shape == (env.view_height * tile_size, env.view_width * tile_size, 3)
    assert d.exact, f"max distance {d.distance.max()} at {np.unravel_index(d.distance.argmax(), d.distance.shape)}"
    x0, y0 = info["camera"]
    assert (x0, y0) == game.camera
    assert np.array_equal(d.tiles, game.grid[y0:y0 + rows, x0:x0 + cols])
    in_view = {(KIND_NAMES[game.kinds[k]], game.xs[k] - x0, game.ys[k] - y0, "left" if game.facings[k] < 0 else "right")
               for k in range(len(game.kinds))
               if 0 <= game.xs[k] - x0 < cols and 0 <= game.ys[k] - y0 < rows}
    assert {(e.kind, e.col, e.row, e.facing) for e in d.entities} == in_view
    assert len(d.entities) == len(in_view)
    assert d.player is not None and (d.player.col + x0, d.player.row + y0) == info["player_pos"]
    assert d.player.facing == info["facing"]
    assert {(e["kind"], e["pos"]) for e in info["visible_entities"]} == \
        {(e.kind, (e.col + x0, e.row + y0)) for e in d.entities if e.kind != "player"}
    assert d.light_level == info["light_level"] == game.light_level
    health, selected, slots = expected_hud(game, cols)
    assert (d.hud.health, d.hud.selected, d.hud.slots) == (health, selected, slots)
    assert d.hud.health == info["health"] and d.hud.selected == info["selected"]


def test_decoder_is_exact_on_1000_random_frames():
    env = Craft2DEnv(world_width=512)
    biomes, levels, frames, with_animals, with_items = set(), set(), 0, 0, 0
    for episode in range(20):
        obs, info = env.reset(seed=episode, options={"world_seed": 1000 + episode,
                                                     "time_of_day": TIMES[episode % len(TIMES)]})
        for t, a in enumerate(random_actions(episode, 50)):
            if t:
                obs, _, terminated, _, info = env.step(a)
                if terminated:
                    obs, info = env.reset(options={"world_seed": 1000 + episode})
            assert_decodes_exactly(obs, env, info)
            frames += 1
            biomes.add(info["biome"])
            levels.add(info["light_level"])
            with_animals += bool(info["visible_entities"])
            with_items += len(info["inventory"]) >= 2
    assert frames == 1000
    assert biomes == set(BIOME_NAMES), f"saw only {sorted(biomes)}: add seeds"
    assert {0, 5} <= levels and len(levels) >= 4
    assert with_animals >= 20 and with_items >= 100  # the entity and HUD checks were exercised


@pytest.mark.parametrize(("view_width", "view_height", "tile_size", "shape"), [
    (12, 8, 8, (64, 96, 3)),  # 96x64 (W x H)
    (8, 12, 8, (96, 64, 3)),  # 64x96
    (8, 8, 16, (128, 128, 3)),
    (12, 8, 16, (128, 192, 3)),
])
def test_decoder_is_exact_at_other_sizes(view_width, view_height, tile_size, shape):
    env = Craft2DEnv(view_width=view_width, view_height=view_height, tile_size=tile_size)
    assert env.observation_space.shape == shape
    levels = set()
    for episode in range(4):
        obs, info = env.reset(seed=episode, options={"world_seed": 2000 + episode, "time_of_day": TIMES[episode]})
        for t, a in enumerate(random_actions(100 + episode, 40)):
            if t:
                obs, _, terminated, _, info = env.step(a)
                if terminated:
                    obs, info = env.reset()
            assert obs.shape == shape
            assert_decodes_exactly(obs, env, info, tile_size=tile_size)
            levels.add(info["light_level"])
    assert {0, 5} <= levels


def test_decoding_at_the_wrong_tile_size_fails_loudly():
    env = Craft2DEnv(tile_size=16, view_width=9, view_height=9)
    obs, _ = env.reset(seed=0)  # 144x144: divisible by 16 and by 8...
    assert not decode(obs, tile_size=8).exact  # ...but read at 8 it matches nothing exactly
    with pytest.raises(ValueError, match=r"\(63, 64, 3\)"):
        decode(np.zeros((63, 64, 3), np.uint8))
    with pytest.raises(ValueError, match=r"\(64, 64\)"):
        decode(np.zeros((64, 64), np.uint8))


def test_noisy_frames_decode_to_the_same_facts_with_nonzero_distance():
    env = Craft2DEnv()
    rng = np.random.default_rng(0)
    for seed, tod in ((0, 0.1), (1, 0.75), (2, 0.3)):
        obs, info = env.reset(seed=seed, options={"time_of_day": tod})
        clean = decode(obs)
        noisy = np.clip(obs + rng.normal(0, 3, obs.shape), 0, 255).astype(np.uint8)
        d = decode(noisy)
        assert not d.exact and (d.distance > 0).all()
        assert d.distance.max() < 6
        assert np.array_equal(d.tiles, clean.tiles)
        assert d.entities == clean.entities and d.hud == clean.hud and d.light_level == clean.light_level


def test_random_noise_is_far_from_every_sprite():
    rng = np.random.default_rng(1)
    d = decode(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    assert d.distance.min() > 40


def test_cached_decode_matches_a_fresh_decoder():
    env = Craft2DEnv()
    obs, _ = env.reset(seed=3)
    a, b = decode(obs), TileDecoder(8).decode(obs)
    assert np.array_equal(a.cell, b.cell) and a.entities == b.entities and a.hud == b.hud


def test_hud_shows_inventory_counts(start):
    s = start("""
        ........
        ..>.....
        GGGGGGGG
    """, inventory={"dirt": 7, "coal": 12, "stone": 99, "gold": 1}, selected="stone", health=3)
    d = decode(s.obs)
    assert d.hud.health == 3 and d.hud.selected == "stone"
    # room for (8 - 3) // 2 = 2 slots: the selected one, then the first other item held
    assert d.hud.slots == (("stone", 99), ("dirt", 7))
