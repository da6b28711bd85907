"""Craft2D: a side-view, Minecraft-style tile world that worldsim learns from and is measured against."""

from worldsim.envs.craft2d.decoder import Decoded, Entity, Hud, TileDecoder, decode
from worldsim.envs.craft2d.engine import GameState
from worldsim.envs.craft2d.env import Craft2DEnv
from worldsim.envs.craft2d.scenario import Scenario
from worldsim.envs.craft2d.tiles import (
    ACTION_MEANINGS, ENV_ID, N_ACTIONS, TILE_SIZE, Action, Biome, Item, Tile, is_craft2d,
)

__all__ = ["ACTION_MEANINGS", "ENV_ID", "N_ACTIONS", "TILE_SIZE", "Action", "Biome", "Craft2DEnv", "Decoded", "Entity",
           "GameState", "Hud", "Item", "Scenario", "Tile", "TileDecoder", "decode", "is_craft2d"]
