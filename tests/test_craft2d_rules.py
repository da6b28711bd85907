"""Craft2D's rules, each played out on a small ASCII-map scenario and read back from info and the engine's state."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from worldsim.envs.craft2d import Action, Craft2DEnv, Scenario, Tile, decode
from worldsim.envs.craft2d.tiles import SOLID

from conftest import ENV_ID, Scene, random_actions

A = Action


# ---- sand --------------------------------------------------------------------------------------------------------
def test_sand_falls_one_tile_per_step_until_supported(start):
    s = start("""
        .........
        ....S....
        .........
        .........
        .>.......
        GGGGGGGGG
    """)
    for t, row in enumerate([1, 2, 3, 4, 4, 4, 4], start=0):
        if t:
            s.step(A.NOOP)
        column = [s.tile(4, r) for r in range(5)]
        assert column[row] == Tile.SAND, f"step {t}: sand expected at row {row}, column is {column}"
        assert all(s.is_empty(4, r) for r in range(5) if r != row), f"step {t}: {column}"
    assert s.tile(4, 5) == Tile.GRASS


def test_sand_column_falls_together(start):
    s = start("""
        .........
        ....S....
        ....S....
        .........
        .>.......
        GGGGGGGGG
    """)
    s.step(A.NOOP)
    assert s.is_empty(4, 1) and s.tile(4, 2) == s.tile(4, 3) == Tile.SAND
    s.step(A.NOOP)
    assert s.is_empty(4, 2) and s.tile(4, 3) == s.tile(4, 4) == Tile.SAND
    s.step(A.NOOP, 5)
    assert s.is_empty(4, 2) and s.tile(4, 3) == s.tile(4, 4) == Tile.SAND


def test_sand_falls_into_a_mined_tile(start):
    s = start("""
        .......
        ..S....
        .>D....
        GGGGGGG
    """)
    s.step(A.MINE)
    assert s.info["inventory"] == {"dirt": 1}
    assert s.tile(2, 2) == Tile.SAND and s.is_empty(2, 1)


def test_sand_rests_on_an_entity_and_falls_when_it_walks_away(start):
    s = start("""
        .......
        ..S....
        .......
        ..>....
        GGGGGGG
    """)
    s.step(A.NOOP, 3)
    assert s.tile(2, 2) == Tile.SAND and s.player == (2, 3)  # sand never falls into an occupied tile
    s.step(A.RIGHT)
    assert s.player == (3, 3)
    s.step(A.NOOP)
    assert s.tile(2, 3) == Tile.SAND and s.is_empty(2, 2)


# ---- mining ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("char", "item", "reward", "left_as"), [
    ("T", "wood", 1.0, Tile.SKY),  # a trunk is a plant: above the ground line, so it leaves sky
    ("c", "coal", 1.0, Tile.CAVE),
    ("i", "iron", 1.0, Tile.CAVE),
    ("o", "gold", 1.0, Tile.CAVE),
    ("D", "dirt", 0.0, Tile.CAVE),
    ("G", "dirt", 0.0, Tile.CAVE),
    ("#", "stone", 0.0, Tile.CAVE),
    ("=", "wood", 1.0, Tile.CAVE),
    ("L", None, 0.0, Tile.SKY),  # leaves crumble: no drop
])
def test_mining_drops_rewards_and_leaves_air(start, char, item, reward, left_as):
    s = start(f"""
        ......
        .>{char}...
        GGGGGG
    """)
    assert s.tile(2, 1) != left_as
    got = s.step(A.MINE)
    assert got == reward
    assert s.info["inventory"] == ({item: 1} if item else {})
    assert s.info["events"][0].startswith("player mined")
    for _ in range(60):  # mined is mined: nothing grows back or flows in
        assert s.tile(2, 1) == left_as
        s.step(A.NOOP)


def test_the_engine_says_which_tile_a_step_mined_or_placed_and_whether_it_lies_above_ground(start):
    """`acted_at` names the tile the step mined or placed (None on any other step); `above_ground` says whether it
    lies above the ground line, where a mined block leaves sky rather than a cave wall (`worldsim events` splits
    mining and placing so)."""
    s = Scene(gym.make(ENV_ID), Scenario("......\n.>D...\nGGGGGG", ground_row=2, inventory={"dirt": 1}))
    g, at = s.game, lambda col, row: s.world(col, row)[1] * s.game.width + s.world(col, row)[0]
    s.step(A.MINE)
    assert g.acted_at == at(2, 1) and g.above_ground(g.acted_at) and s.tile(2, 1) == Tile.SKY
    s.step(A.NOOP)
    assert g.acted_at is None
    s.step(A.PLACE)
    assert g.acted_at == at(2, 1) and s.tile(2, 1) == Tile.DIRT
    s.step(A.MINE_DOWN)  # the grass under the player: the ground itself, and the player drops into the hole
    assert g.acted_at == at(1, 2) and not g.above_ground(g.acted_at) and s.tile(1, 2) == Tile.CAVE
    s.step(A.PLACE)  # nothing left in hand: no tile changes, none named
    assert g.acted_at is None


def test_rewards_argument_sets_the_task():
    s = Scene(gym.make(ENV_ID, rewards={"dirt": 2.5}), Scenario(".....\n.>DT.\nGGGGG"))
    assert s.step(A.MINE) == 2.5
    s.step(A.RIGHT)
    assert s.step(A.MINE) == 0.0  # wood is worth nothing in this task
    assert s.info["inventory"] == {"dirt": 1, "wood": 1}


def test_mine_up_and_down(start):
    s = start("""
        ...#...
        ...>...
        ...D...
        GGGGGGG
    """)
    s.step(A.MINE_UP)
    assert s.is_empty(3, 0) and s.info["inventory"] == {"stone": 1}
    s.step(A.MINE_DOWN)  # and the player drops into the hole in the same step
    assert s.tile(3, 2) == Tile.CAVE
    assert s.player == (3, 2) and s.info["inventory"] == {"stone": 1, "dirt": 1}


def test_bedrock_cannot_be_mined(start):
    s = start("""
        ........
        B<......
        BBBBBBBB
    """)
    grid = s.game.grid.copy()
    for action in (A.MINE, A.MINE_DOWN):  # bedrock on the left and below
        assert s.step(action) == 0.0
        assert s.info["inventory"] == {} and s.info["events"] == []
    assert np.array_equal(s.game.grid, grid)
    assert s.tile(0, 1) == Tile.BEDROCK and s.tile(1, 2) == Tile.BEDROCK and s.player == (1, 1)


# ---- moving ------------------------------------------------------------------------------------------------------
def test_cannot_walk_into_stone(start):
    s = start("""
        .......
        .>#....
        GGGGGGG
    """)
    s.step(A.RIGHT, 3)
    assert s.player == (1, 1) and s.info["facing"] == "right"
    s.step(A.LEFT)
    assert s.player == (0, 1) and s.info["facing"] == "left"


def test_jump_right_climbs_a_one_tile_step(start):
    s = start("""
        .......
        .>#....
        GGGGGGG
    """)
    s.step(A.JUMP_RIGHT)
    assert s.player == (2, 0)
    s.step(A.NOOP, 3)
    assert s.player == (2, 0)  # standing on the step


def test_jump_right_cannot_climb_a_two_tile_wall(start):
    s = start("""
        ..#....
        ..#....
        .>#....
        GGGGGGG
    """)
    rows = []
    for _ in range(10):
        s.step(A.JUMP_RIGHT)
        rows.append(s.player)
        s.step(A.NOOP)
        rows.append(s.player)
    assert rows[:2] == [(1, 1), (1, 2)]  # up one, then back down
    assert all(col == 1 for col, _ in rows)


def test_jump_needs_ground(start):
    s = start("""
        .......
        .......
        .......
        .>.....
        GGGGGGG
    """)
    s.step(A.JUMP)
    assert s.player == (1, 2)
    s.step(A.JUMP)  # in the air at the top of the jump: no second rise, gravity instead
    assert s.player == (1, 3)


@pytest.mark.parametrize(("height", "damage"), [(3, 0), (4, 1), (6, 3)])
def test_falling_off_a_ledge(start, height, damage):
    rows = [">......"] + ["G......"] * height + ["GGGGGGG"]
    s = start("\n".join(rows))
    for t in range(1, height + 1):
        s.step(A.RIGHT if t == 1 else A.NOOP)
        assert s.player == (1, t), f"step {t}: expected to have fallen {t} tiles"
        landed = t == height
        assert s.info["health"] == (6 - damage if landed else 6), "the hurt comes on the landing step"
        assert ("player took fall damage" in s.info["events"]) == (landed and damage > 0)
    s.step(A.NOOP)  # standing still afterwards hurts no more
    assert s.player == (1, height)
    assert s.info["health"] == 6 - damage
    assert "player took fall damage" not in s.info["events"]
    assert not s.terminated


def test_walking_in_the_air_moves_diagonally_and_leaves_nothing_behind(start):
    rows = [">......"] + ["G......"] * 6 + ["GGGGGGG"]
    s = start("\n".join(rows))
    s.step(A.RIGHT)
    assert s.player == (1, 1)
    s.step(A.RIGHT)  # air control: sideways, and still falling
    assert s.player == (2, 2)
    assert_occupancy_matches(s.game)
    s.step(A.NOOP, 10)
    assert s.player == (2, 6) and s.info["health"] == 3  # fell 6 tiles in all


def test_a_long_enough_fall_kills(start):
    rows = [">......"] + ["G......"] * 9 + ["GGGGGGG"]
    s = start("\n".join(rows))
    s.step(A.RIGHT)
    s.step(A.NOOP, 9)
    assert s.info["health"] == 0 and s.terminated


def test_water_breaks_a_fall(start):
    rows = [">......"] + ["G......"] * 6 + ["G~~~~~~", "GGGGGGG"]
    s = start("\n".join(rows))
    s.step(A.RIGHT)
    s.step(A.NOOP, 12)
    assert s.player == (1, 7) and s.info["health"] == 6
    assert "player swimming" in s.info["caption"]


def test_lava_terminates(start):
    s = start("""
        .......
        .>.....
        GG%GGGG
        GGGGGGG
    """)
    _, _, terminated, truncated, info = s.env.step(int(A.RIGHT))
    assert terminated and not truncated
    assert info["health"] == 0 and "player fell into lava" in info["events"]


def test_health_regrows(start):
    s = start("..>..\nGGGGG", health=3)
    s.step(A.NOOP, 100)
    assert s.info["health"] == 5  # one half-heart per 50 steps


# ---- placing -----------------------------------------------------------------------------------------------------
def test_pillar_up_with_jump_then_place_down(start):
    s = start("""
        ........
        ........
        ........
        ........
        ...>....
        GGGGGGGG
    """, inventory={"dirt": 3})
    for k in range(1, 4):
        s.step(A.JUMP)
        assert s.player == (3, 4 - k)
        s.step(A.PLACE_DOWN)
        assert s.tile(3, 5 - k) == Tile.DIRT
        assert s.player == (3, 4 - k)
        assert s.info["inventory"].get("dirt", 0) == 3 - k
    s.step(A.NOOP, 3)
    assert s.player == (3, 1)  # on top of the pillar
    s.step(A.JUMP)
    s.step(A.PLACE_DOWN)  # nothing left to place
    assert s.info["events"] == [] and s.player == (3, 1)
    assert [s.tile(3, r) for r in (2, 3, 4)] == [Tile.DIRT] * 3


def test_place_consumes_inventory_and_fails_when_empty(start):
    s = start("""
        .......
        ...>...
        GGGGGGG
    """, inventory={"stone": 1, "dirt": 2}, selected="stone")
    s.step(A.PLACE)
    assert s.tile(4, 1) == Tile.STONE
    assert s.info["inventory"] == {"dirt": 2} and s.info["events"] == ["player placed stone"]
    s.step(A.LEFT)
    assert s.player == (2, 1)
    s.step(A.PLACE)  # stone selected, none left: nothing happens
    assert s.is_empty(1, 1) and s.info["events"] == [] and s.info["inventory"] == {"dirt": 2}


def test_place_onto_an_animal_fails(start):
    s = start("""
        ####
        #>p#
        ####
    """, inventory={"dirt": 1})  # the pig is boxed in: it cannot step out of the way
    s.step(A.PLACE)
    assert s.animals() == [("pig", 2, 1)]
    assert s.info["inventory"] == {"dirt": 1} and s.info["events"] == []


def test_place_into_water_and_lava(start):
    s = start("""
        ......
        .>~%..
        GGGGGG
    """, inventory={"sand": 2}, selected="sand")
    s.step(A.PLACE)
    assert s.tile(2, 1) == Tile.SAND
    s.step(A.MINE)
    s.step(A.RIGHT)  # onto the tile where the water was
    assert s.player == (2, 1)
    s.step(A.PLACE)
    assert s.tile(3, 1) == Tile.SAND and s.info["inventory"] == {"sand": 1}


def test_next_block_cycles_selection_and_wood_places_as_planks(start):
    s = start("..>...\nGGGGGG", inventory={"wood": 1})
    seen = []
    for _ in range(5):
        s.step(A.NEXT_BLOCK)
        seen.append(s.info["selected"])
    assert seen == ["stone", "sand", "snow", "wood", "dirt"]
    s.step(A.NEXT_BLOCK, 4)
    assert s.info["selected"] == "wood"
    s.step(A.PLACE)
    assert s.tile(3, 0) == Tile.PLANKS and s.info["inventory"] == {}


# ---- animals -----------------------------------------------------------------------------------------------------
def test_animal_cannot_walk_through_stone(start):
    s = start("""
        ....#..#..
        ....#..#..
        .>..#p.#..
        GGGGGGGGGG
    """)
    cols = set()
    for _ in range(400):
        s.step(A.NOOP)
        [(kind, col, row)] = s.animals()
        assert kind == "pig" and row == 2 and col in (5, 6), f"the pig got out to ({col}, {row})"
        cols.add(col)
        x, y = s.world(col, row)
        assert not SOLID[s.game.grid[y, x]]
    assert cols == {5, 6}, "the pig never walked: the walls were not tested"


def test_animal_hops_onto_a_one_tile_step(start):
    s = start("""
        ..........
        .>.p.#....
        GGGGGGGGGG
    """)
    rows = set()
    for _ in range(400):
        s.step(A.NOOP)
        [(_, col, row)] = s.animals()
        assert row in (0, 1) and (col, row) != (5, 1)
        rows.add(row)
    assert rows == {0, 1}, "the pig never hopped onto the step"


def test_animal_does_not_climb_onto_the_player(start):
    s = start("""
        B........B
        B.>p.....B
        GGGGGGGGGG
    """)
    for _ in range(400):
        s.step(A.NOOP)
        [(_, col, row)] = s.animals()
        assert row == 1, f"the pig left the ground to ({col}, {row}): entities are not steps"


def test_animal_does_not_walk_off_a_ledge_onto_the_player(start):
    s = start("""
        B.....B
        Bp.BBBB
        B#>BBBB
    """)
    for _ in range(400):
        s.step(A.NOOP)
        [(_, col, row)] = s.animals()
        assert (col, row) == (1, 1), f"the pig moved to ({col}, {row}), onto the player's head"


def test_short_map_gets_open_sky_above_not_copies_of_its_top_row(start):
    s = start("""
        ###
        .>.
        GGG
    """)
    x, y = s.info["player_pos"]
    grid = s.game.grid
    assert grid[y - 1, x] == Tile.STONE  # the map's own roof
    assert (grid[: y - 1, 1:-1] == Tile.SKY).all()  # padding above it is sky


def test_animal_falls_when_the_ground_under_it_is_mined(start):
    s = start("""
        ........
        ..p.....
        .>#.....
        GGGGGGGG
    """)
    assert s.animals() == [("pig", 2, 1)]
    s.step(A.MINE)
    assert s.info["inventory"] == {"stone": 1}
    assert s.animals() == [("pig", 2, 2)]
    visible = s.info["visible_entities"]
    assert [(e["kind"], s.to_map(*e["pos"])) for e in visible] == [("pig", (2, 2))]


def assert_occupancy_matches(game) -> None:
    """The engine's occupancy grid marks exactly the tiles entities stand on, each with its own index."""
    occ = np.frombuffer(bytes(game.occ), np.uint8).reshape(game.height, game.width)
    marked = {(int(x), int(y), int(occ[y, x]) - 1) for y, x in zip(*np.nonzero(occ))}
    assert marked == {(x, y, k) for k, (x, y) in enumerate(zip(game.xs, game.ys))}


def test_animals_keep_living_off_screen():
    env = Craft2DEnv()  # no time limit: all 1000 steps in one episode
    env.reset(seed=11, options={"world_seed": 11})
    game = env.game
    n = len(game.kinds)
    assert n > 10
    start = list(zip(game.xs, game.ys))
    moved_off_screen = set()
    for a in random_actions(5, 1000):
        info = env.step(a)[-1]
        assert len(game.kinds) == n
        cells = set(zip(game.xs, game.ys))
        assert len(cells) == n, "two entities share a tile"
        for x, y in cells:
            assert not SOLID[game.grid[y, x]], f"an entity is inside {Tile(game.grid[y, x]).name} at ({x}, {y})"
        assert_occupancy_matches(game)
        visible = {e["pos"] for e in info["visible_entities"]}
        moved_off_screen |= {k for k in range(1, n) if (game.xs[k], game.ys[k]) != start[k]
                             and (game.xs[k], game.ys[k]) not in visible}
    assert len(moved_off_screen) >= 5, "animals off screen should keep wandering"


# ---- how it looks ------------------------------------------------------------------------------------------------
def test_facing_left_and_right_look_different_and_decode(start):
    right = start("....\n.>..\nGGGG")
    frame_r = right.obs
    left = start("....\n.<..\nGGGG")
    frame_l = left.obs
    assert right.info["facing"] == "right" and left.info["facing"] == "left"
    assert not np.array_equal(frame_r, frame_l)
    assert decode(frame_r).player.facing == "right" and decode(frame_l).player.facing == "left"
    # the sprite is mirrored: over flat sky the two player cells are exact mirror images
    col, row = (p - c for p, c in zip(right.info["player_pos"], right.info["camera"]))
    cell = np.s_[row * 8:(row + 1) * 8, col * 8:(col + 1) * 8]
    assert np.array_equal(frame_r[cell], frame_l[cell][:, ::-1])
    assert not np.array_equal(frame_r[cell], frame_l[cell])


def test_day_and_night(start):
    day = start("....\n.>..\nGGGG", time_of_day=0.1)
    frame_day = day.obs
    assert day.info["light_level"] == 0
    night = start("....\n.>..\nGGGG", time_of_day=0.75)
    frame_night = night.obs
    assert night.info["light_level"] == 5 and "night" in night.info["caption"]
    assert not np.array_equal(frame_day, frame_night)
    assert frame_night.mean() < 0.5 * frame_day.mean()
    assert decode(frame_day).light_level == 0 and decode(frame_night).light_level == 5
    # same scene, only the light differs
    assert np.array_equal(decode(frame_day).tiles, decode(frame_night).tiles)


def test_light_follows_the_day_cycle(start):
    s = start("..>..\nGGGGG", time_of_day=0.0)
    levels = [s.info["light_level"]]
    for _ in range(300):
        s.step(A.NOOP)
        levels.append(s.info["light_level"])
    assert levels[0] == 0 and levels[-1] == 0  # a whole day later
    assert set(levels) == {0, 1, 2, 3, 4, 5}
    assert levels.index(5) > levels.index(4) > levels.index(1)  # darkening into the night
