"""Craft2D's vocabulary: its name, tiles, items, actions and biomes, with the properties the engine looks up.

Every table here is indexed by id, so the engine's hot path is a tuple lookup, never a dict or an enum. The facts
other parts of worldsim need about the game (is this env Craft2D? how big is a tile? how many actions?) are answered
here once; rules such as MAX_HEALTH live with the rules, in engine.py.
"""

from __future__ import annotations

import re
from enum import IntEnum

ENV_ID = "worldsim/Craft2D-v0"  # as worldsim.registration registers it
WORLD_SIZE = (512, 48)  # (width, height) in tiles of Craft2DEnv's worlds by default, which probe scenarios assume
TILE_SIZE = 8  # pixels a tile side, Craft2DEnv's default: a 64x64 frame is 8x8 tiles (the HUD row included)
_ENV_ID = re.compile(r"(?:[\w.]+:)?worldsim/Craft2D-v\d+")  # gymnasium ids may carry a "module:" prefix


def is_craft2d(env_id: object) -> bool:
    """True for "worldsim/Craft2D-v<N>", with or without a "module:" prefix: the one test of whether an env id (of a
    dataset's manifest, a checkpoint's metadata, an agent's env) names this game. Anything else, None included, is
    not Craft2D: an env that merely has "Craft2D" in its name may be someone else's game."""
    return isinstance(env_id, str) and _ENV_ID.fullmatch(env_id) is not None


class Tile(IntEnum):
    """World tiles. SKY and CAVE are both empty; they only look different (sky above ground, dark wall below)."""

    SKY = 0
    CAVE = 1
    GRASS = 2
    DIRT = 3
    STONE = 4
    SAND = 5
    SNOW = 6
    ICE = 7
    WOOD = 8  # tree trunk: a background tile you walk through (Terraria-style), mined for wood
    LEAVES = 9
    PINE = 10  # snowy pine needles, the snow biome's leaves
    CACTUS = 11
    PLANKS = 12  # what a placed wood item becomes: solid, so you can build with it
    COAL = 13
    IRON = 14
    GOLD = 15
    WATER = 16
    LAVA = 17
    BEDROCK = 18


class Item(IntEnum):
    """Inventory items. PLACEABLE ones can be selected and placed."""

    DIRT = 0
    STONE = 1
    SAND = 2
    SNOW = 3
    WOOD = 4
    COAL = 5
    IRON = 6
    GOLD = 7


class Action(IntEnum):
    """The Discrete action space, in order."""

    NOOP = 0
    LEFT = 1
    RIGHT = 2
    JUMP = 3
    JUMP_LEFT = 4
    JUMP_RIGHT = 5
    MINE = 6  # the tile the player faces
    MINE_UP = 7
    MINE_DOWN = 8
    PLACE = 9  # the selected block, into the tile the player faces
    PLACE_DOWN = 10  # into the tile below: jump then place down pillars up
    NEXT_BLOCK = 11  # select the next placeable item


class Biome(IntEnum):
    FOREST = 0
    DESERT = 1
    SNOW = 2
    PLAINS = 3


class Kind(IntEnum):
    """Entity kinds. The player is entity 0 in every state."""

    PLAYER = 0
    PIG = 1
    SHEEP = 2


N_TILES = len(Tile)
N_ITEMS = len(Item)
N_ACTIONS = len(Action)
ACTION_MEANINGS = tuple(a.name.lower() for a in Action)
BIOME_NAMES = tuple(b.name.lower() for b in Biome)
TILE_NAMES = tuple(t.name.lower() for t in Tile)
ITEM_NAMES = tuple(i.name.lower() for i in Item)
KIND_NAMES = tuple(k.name.lower() for k in Kind)

_SOLID = {Tile.GRASS, Tile.DIRT, Tile.STONE, Tile.SAND, Tile.SNOW, Tile.ICE, Tile.PLANKS,
          Tile.COAL, Tile.IRON, Tile.GOLD, Tile.BEDROCK}
SOLID = tuple(t in _SOLID for t in Tile)
EMPTY = tuple(t in (Tile.SKY, Tile.CAVE) for t in Tile)
# Sand falls into anything that is not solid and not a plant; falling or placed into water or lava, it replaces it.
SAND_PASSES = tuple(t in (Tile.SKY, Tile.CAVE, Tile.WATER, Tile.LAVA) for t in Tile)

# What mining a tile yields; -1: nothing (leaves, ice, cactus crumble). BEDROCK and empty tiles cannot be mined.
DROP = tuple(int({
    Tile.GRASS: Item.DIRT, Tile.DIRT: Item.DIRT, Tile.STONE: Item.STONE, Tile.SAND: Item.SAND,
    Tile.SNOW: Item.SNOW, Tile.WOOD: Item.WOOD, Tile.PLANKS: Item.WOOD, Tile.COAL: Item.COAL,
    Tile.IRON: Item.IRON, Tile.GOLD: Item.GOLD,
}.get(t, -1)) for t in Tile)
MINEABLE = tuple(t not in (Tile.SKY, Tile.CAVE, Tile.WATER, Tile.LAVA, Tile.BEDROCK) for t in Tile)

PLACEABLE = (Item.DIRT, Item.STONE, Item.SAND, Item.SNOW, Item.WOOD)
PLACES_AS = {Item.DIRT: Tile.DIRT, Item.STONE: Tile.STONE, Item.SAND: Tile.SAND,
             Item.SNOW: Tile.SNOW, Item.WOOD: Tile.PLANKS}
MAX_STACK = 99  # the HUD shows two digits

# Default task: +1 for each wood or ore item collected.
DEFAULT_REWARDS = {"wood": 1.0, "coal": 1.0, "iron": 1.0, "gold": 1.0}
