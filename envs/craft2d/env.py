"""Craft2D-v0: the Gymnasium environment over the game."""

from __future__ import annotations

import operator
from functools import lru_cache
from typing import Any, Mapping

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.error import ResetNeeded

from worldsim.envs.craft2d.engine import Game, GameState, new_state
from worldsim.envs.craft2d.render import MIN_VIEW_WIDTH, Renderer
from worldsim.envs.craft2d.scenario import Scenario
from worldsim.envs.craft2d.tiles import (ACTION_MEANINGS, DEFAULT_REWARDS, ITEM_NAMES, MAX_STACK, PLACEABLE, SOLID,
                                        TILE_SIZE, WORLD_SIZE, Tile)
from worldsim.envs.craft2d.worldgen import World, generate
from worldsim.envs.window import FrameWindow, RendersFrames

_STAND_IN = (Tile.SKY, Tile.WOOD, Tile.LEAVES, Tile.PINE, Tile.CACTUS)  # where the player may spawn
_RESET_OPTIONS = ("scenario", "world_seed", "time_of_day")


@lru_cache(maxsize=16)
def _world(seed: int, width: int, height: int, surface_ores: float) -> World:
    return generate(seed, width, height, surface_ores)  # shared: callers copy before changing anything


class Craft2DEnv(RendersFrames, gym.Env):
    """A side-view, Minecraft-style tile world: walk, jump, mine, place, under a day/night cycle.

    ## Description
    A world at least 512 tiles wide and 48 high is generated from a seed: hills with grass, dirt and stone layers;
    coal, iron and gold ores; caves; lava in the deepest caves; lakes (frozen over in the snow); trees, pines and
    cacti; a bedrock floor and walls. Columns belong to biomes (forest, desert, snow, plains) that change which tiles
    appear. Pigs and sheep wander (driven by the env's RNG), fall, never pass solid tiles and keep living off-screen.
    Unsupported sand falls one tile per step. Every entity occupies one whole tile and no two share one, and the
    camera moves by whole tiles, so every frame decodes exactly (`worldsim.envs.craft2d.decode`).

    ## Action Space
    `Discrete(12)`:
    | n | action      | effect                                                                                  |
    |---|-------------|-----------------------------------------------------------------------------------------|
    | 0 | noop        | nothing (gravity, animals, sand and time still move)                                    |
    | 1 | left        | face left and walk one tile if the tile is free                                         |
    | 2 | right       | face right and walk one tile if the tile is free                                        |
    | 3 | jump        | rise one tile when standing on something (or swimming); gravity resumes next step       |
    | 4 | jump_left   | face left, rise one tile if possible, then move one tile left: climbs a one-tile step   |
    | 5 | jump_right  | face right, rise one tile if possible, then move one tile right                        |
    | 6 | mine        | mine the tile the player faces; its drop goes to the inventory (bedrock can't be mined) |
    | 7 | mine_up     | mine the tile above                                                                     |
    | 8 | mine_down   | mine the tile below                                                                     |
    | 9 | place       | place the selected block in the faced tile if it is air, water or lava                  |
    | 10| place_down  | place the selected block below (jump, then place_down, to pillar up)                    |
    | 11| next_block  | select the next placeable item: dirt, stone, sand, snow, wood (placed as planks)        |

    ## Observation Space
    `Box(0, 255, (view_height * tile_size, view_width * tile_size, 3), uint8)`, by default (64, 64, 3): the world
    around the player in the top `view_height - 1` rows of tiles, and a HUD strip in the bottom row: three hearts,
    the selected item with its count, then other items held with their counts. The whole frame is dimmed by the day
    cycle (six light levels).

    ## Rewards
    The reward is the sum, over items collected this step, of `rewards[item]`. By default +1 for each wood, coal,
    iron or gold collected, 0 otherwise.

    ## Starting State
    A new world per episode (seeded from the env's RNG) unless `world_seed` is fixed; the player stands on the
    ground at a random column, with full health and an empty inventory (or `start_inventory`), at a random time of
    day.

    ## Episode End
    Terminated when health reaches 0: falling more than 3 tiles costs one half-heart per tile beyond 3 (health
    is 6 half-hearts and regrows one every 50 steps), and lava kills at once. Water is safe (you swim; no drowning).
    Truncated after `max_episode_steps` (1000 when made with `gymnasium.make`).

    ## Arguments
    ```python
    gymnasium.make("worldsim/Craft2D-v0", render_mode=None, tile_size=8, view_width=8, view_height=8,
                   world_width=512, world_height=48, world_seed=None, day_length=300, rewards=None,
                   surface_ores=0.0, start_inventory=None)
    ```
    `view_width`/`view_height` are in tiles, the HUD row included: (12, 8) gives a 96x64 frame (W x H) and (8, 12)
    a 64x96 one. `reset(options=...)` accepts `scenario` (a `Scenario` or an ASCII map), `world_seed` and
    `time_of_day` (a fraction of the cycle); the reset info says which `world_seed` was played. `surface_ores` lays
    that share of the ground's top three tiles bare as ores (0: every ore lies in stone 3 or more tiles down), for
    data where ores meet the player in daylight; the rest of each world is its seed's. `start_inventory` (item name
    -> count, e.g. `{"dirt": 10, "wood": 5}`) is what the player holds at every start instead of nothing, the
    selected block drawn among the placeable ones held: an agent can then build on the surface from its first step,
    where one with empty hands digs for blocks first and does its building underground. `get_state()` /
    `set_state()` copy the full state, RNG included.

    ## Version History
    * v0: initial release; `surface_ores` added (default 0: the same worlds); `start_inventory` added (default None:
      empty hands, the same episodes).
    """

    metadata = {"render_modes": ["human", "rgb_array"], "render_fps": 10}
    window_caption = "Craft2D"

    def __init__(self, render_mode: str | None = None, *, tile_size: int = TILE_SIZE, view_width: int = 8,
                 view_height: int = 8, world_width: int = WORLD_SIZE[0], world_height: int = WORLD_SIZE[1],
                 world_seed: int | None = None, day_length: int = 300, rewards: Mapping[str, float] | None = None,
                 surface_ores: float = 0.0, start_inventory: Mapping[str, int] | None = None,
                 window_scale: int = 6):
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode={render_mode!r}: expected None or one of {self.metadata['render_modes']}")
        if view_width < MIN_VIEW_WIDTH or view_height < 3:
            raise ValueError(f"view {view_width}x{view_height} tiles: expected at least {MIN_VIEW_WIDTH} wide "
                             f"(the HUD) and 3 high (two world rows and the HUD)")
        if day_length < 10:
            raise ValueError(f"day_length={day_length}: expected at least 10 steps")
        if not 0.0 <= surface_ores <= 1.0:
            raise ValueError(f"surface_ores={surface_ores}: expected a share of the ground's top tiles in [0, 1]")
        start_inventory = dict(start_inventory or {})
        for name, n in start_inventory.items():
            if name not in ITEM_NAMES:
                raise ValueError(f"start_inventory item {name!r}: expected one of {ITEM_NAMES}")
            if not isinstance(n, (int, np.integer)) or not 0 <= n <= MAX_STACK:
                raise ValueError(f"start_inventory {name}={n!r}: expected a count from 0 to {MAX_STACK}")
        rewards = dict(DEFAULT_REWARDS if rewards is None else rewards)
        for name in rewards:
            if name not in ITEM_NAMES:
                raise ValueError(f"reward for {name!r}: expected items from {ITEM_NAMES}")
        self.render_mode = render_mode
        self.tile_size, self.view_width, self.view_height = tile_size, view_width, view_height
        self.world_size = (world_width, world_height)
        self.world_seed, self.day_length, self.window_scale = world_seed, day_length, window_scale
        self.rewards, self.surface_ores = rewards, float(surface_ores)
        self.start_inventory = {name: int(n) for name, n in start_inventory.items() if n}
        self._reward_table = tuple(float(rewards.get(name, 0.0)) for name in ITEM_NAMES)
        self.renderer = Renderer(tile_size, view_width, view_height)  # raises for a tile size that can't be drawn
        self.action_space = spaces.Discrete(len(ACTION_MEANINGS))
        self.observation_space = spaces.Box(0, 255, self.renderer.shape, np.uint8)
        self.game: Game | None = None
        self._frame: np.ndarray | None = None
        self._window: FrameWindow | None = None

    # ---- Gymnasium API -----------------------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        options = dict(options or {})
        unknown = set(options) - set(_RESET_OPTIONS)
        if unknown:
            raise ValueError(f"reset options {sorted(unknown)}: expected keys among {_RESET_OPTIONS}")
        view = (self.view_width, self.view_height - 1)
        if "scenario" in options:
            clash = set(options) - {"scenario"}
            if clash:
                raise ValueError(f"reset options {sorted(clash)} with a scenario: set them on the Scenario "
                                 f"(Scenario(..., time_of_day=..., world_seed=...)) instead")
            scenario = options["scenario"]
            if isinstance(scenario, str):
                scenario = Scenario(scenario)
            if not isinstance(scenario, Scenario):
                raise TypeError(f"scenario of type {type(scenario).__name__}: expected a Scenario or an ASCII map")
            state = scenario.build(view, self.world_size, self.day_length)
            world_seed = scenario.world_seed
        else:
            world_seed = options.get("world_seed", self.world_seed)
            if world_seed is None:
                world_seed = int(self.np_random.integers(2 ** 31))
            world = _world(int(world_seed), *self.world_size, self.surface_ores)
            player = self._spawn(world)
            if "time_of_day" in options:
                time = round(float(options["time_of_day"]) * self.day_length) % self.day_length
            else:
                time = int(self.np_random.integers(self.day_length))
            facing = 1 if self.np_random.random() < 0.5 else -1
            inventory, selected = self._start_hands()
            state = new_state(world, player, time=time, day_length=self.day_length, facing=facing,
                              inventory=inventory, selected=selected)
        self.game = Game(state, view, self._reward_table)
        info = self.game.info()
        info["world_seed"] = world_seed  # None for a map-only scenario
        return self._observe(), info

    def _start_hands(self) -> tuple[list[int] | None, int]:
        """(inventory, selected) at a start: `start_inventory`, the selected block drawn among the placeable ones
        held (no draw, so the same episodes, without one)."""
        if not self.start_inventory:
            return None, 0
        inventory = [self.start_inventory.get(name, 0) for name in ITEM_NAMES]
        held = [k for k, item in enumerate(PLACEABLE) if inventory[item]]
        return inventory, int(held[self.np_random.integers(len(held))]) if held else 0

    def step(self, action):
        if self.game is None:
            raise ResetNeeded("Craft2DEnv.step() was called before reset(): call env.reset() first")
        try:
            a = operator.index(action)
        except TypeError:
            raise ValueError(f"action {action!r}: expected an integer in [0, {self.action_space.n - 1}]") from None
        if not 0 <= a < self.action_space.n:
            raise ValueError(f"action {action!r} is outside Discrete({self.action_space.n}): expected an integer in "
                             f"[0, {self.action_space.n - 1}], one of {dict(enumerate(ACTION_MEANINGS))}")
        reward = self.game.step(a, self.np_random)
        terminated = self.game.health <= 0
        return self._observe(), reward, terminated, False, self.game.info()

    # ---- Craft2D extras ----------------------------------------------------------------------------------------
    def get_action_meanings(self) -> list[str]:
        return list(ACTION_MEANINGS)

    def get_keys_to_action(self) -> dict[tuple[int, ...], int]:
        """Key combinations to actions for `gymnasium.utils.play.play` (arrows/WASD, space; J/U/S mine; K/L place)."""
        from worldsim.envs.craft2d.keys import keys_to_action  # here, not at the top: it imports pygame

        return keys_to_action()

    def get_state(self) -> GameState:
        """A deep copy of the game, the RNG included: `set_state` of it continues exactly from here."""
        if self.game is None:
            raise ResetNeeded("Craft2DEnv.get_state() was called before reset(): call env.reset() first")
        return self.game.save(self.np_random.bit_generator.state)

    def set_state(self, state: GameState) -> None:
        if not isinstance(state, GameState):
            raise TypeError(f"state of type {type(state).__name__}: expected a GameState from get_state()")
        view = (self.view_width, self.view_height - 1)
        self.game = Game(state, view, self._reward_table)
        if state.rng_state is not None:
            self.np_random.bit_generator.state = state.rng_state  # the setter copies
        self._observe()

    # ---- internals ---------------------------------------------------------------------------------------------
    def _spawn(self, world: World) -> tuple[int, int]:
        grid = world.grid
        width = grid.shape[1]
        solid = np.array(SOLID)
        taken = {(x, y) for _, x, y, _ in world.animals}
        for _ in range(200):
            x = int(self.np_random.integers(self.view_width, width - self.view_width))
            y = int(np.argmax(solid[grid[:, x]])) - 1
            if y >= 0 and grid[y, x] in _STAND_IN and (x, y) not in taken:
                return x, y
        raise RuntimeError(f"found no dry ground to spawn on in a {width}-wide world")  # never seen in practice

    def _observe(self) -> np.ndarray:
        self._frame = self.renderer.render(self.game)
        if self.render_mode == "human":
            self._show()
        return self._frame
