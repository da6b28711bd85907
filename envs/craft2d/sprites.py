"""The sprite atlas, drawn in code: tiles, entities (each facing), HUD glyphs, at every light level.

Everything the renderer draws is one cell of `tile_size` pixels taken from a single atlas, so a frame is one gather:
  atlas index    what it is
  [0, N_TILES)                    a world tile
  [COMPOSITE, COMPOSITE + S*N)    entity sprite s drawn over tile n: COMPOSITE + s * N_TILES + n
  [HUD, HUD + N_HUD)              a HUD glyph (panel, hearts, item icons, two-digit counts)
Entities stand on whole tiles and never share one, so precomputed composites make a frame exact and decodable.
Sprites are designed at 8x8 and scaled by nearest neighbour; `Atlas` refuses a tile size at which two cells collide.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from worldsim.envs.craft2d.tiles import N_ITEMS, N_TILES, TILE_SIZE, Item, Kind, Tile

BASE = 8  # sprites are designed on an 8x8 grid
LIGHT_FACTORS = (1.0, 0.85, 0.7, 0.56, 0.45, 0.36)  # light level 0 is full day, the last is deepest night
N_LIGHT = len(LIGHT_FACTORS)
HUD_RULE = (220, 220, 220)  # top pixel row of every HUD cell: the reference the decoder reads the light level from
HUD_PANEL = (96, 96, 110)

# Entity sprites: index = kind * 2 + facing_right. '.' is transparent.
N_SPRITES = 2 * 3
COMPOSITE = N_TILES
HUD = COMPOSITE + N_SPRITES * N_TILES
# HUD glyph offsets, relative to HUD
HUD_BLANK, HEART_EMPTY, HEART_HALF, HEART_FULL = 0, 1, 2, 3
ICON = 4  # + item
ICON_SELECTED = ICON + N_ITEMS  # + item
COUNT = ICON_SELECTED + N_ITEMS  # + count (0..99)
N_HUD = COUNT + 100
N_CELLS = HUD + N_HUD

_PALETTE = {
    "h": (70, 45, 25), "s": (236, 188, 150), "e": (20, 20, 60), "b": (40, 110, 200), "l": (50, 50, 90),
    "p": (240, 150, 170), "n": (200, 90, 120), "o": (20, 20, 20), "w": (245, 245, 240), "f": (80, 70, 70),
    "k": (60, 50, 50), "r": (220, 30, 40), "d": (90, 20, 30), "y": (250, 210, 40),
}

_ENTITY_RIGHT = {
    # Facing must show in many pixels, not in one eye: a learned model (and its 8x autoencoder) reads left from
    # right here, and a one-pixel difference is the first detail a compressed latent drops.
    Kind.PLAYER: ["..hhhh..",
                  ".hhhsse.",
                  "..hssss.",
                  "..bbbbss",
                  "..bbbb..",
                  "..bbbb..",
                  "..l..l..",
                  "..ll.ll."],
    Kind.PIG: ["........",
               "........",
               "......n.",
               ".ppppppp",
               ".pppppon",
               "pppppppn",
               ".pppppp.",
               ".n.n.n.n"],
    Kind.SHEEP: ["........",
                 "........",
                 ".wwwww..",
                 "wwwwwwff",
                 "wwwwwwfo",
                 "wwwwwwf.",
                 ".wwwww..",
                 ".k.k.k.."],
}

_HEART = ["........",
          ".rr.rr..",
          "rrrrrrr.",
          "rrrrrrr.",
          ".rrrrr..",
          "..rrr...",
          "...r....",
          "........"]

# 3x5 digit font; each digit has its own colour, so digits that differ in one pixel of the font (0 and 8, 5 and 6)
# differ in all their pixels: a count must survive compression to a latent to be read back
_DIGIT_COLOR = [(250, 250, 250), (255, 230, 80), (255, 150, 50), (255, 90, 90), (255, 120, 220), (190, 140, 255),
                (110, 190, 255), (80, 240, 240), (120, 250, 120), (40, 160, 60)]
_DIGITS = ["111101101101111", "010110010010111", "111001111100111", "111001111001111", "101101111001001",
           "111100111001111", "111100111101111", "111001010010010", "111101111101111", "111101111001111"]

_ICON_COLOR = {Item.DIRT: (134, 96, 67), Item.STONE: (128, 128, 128), Item.SAND: (219, 207, 142),
               Item.SNOW: (250, 250, 255), Item.WOOD: (160, 110, 60), Item.COAL: (30, 30, 30),
               Item.IRON: (216, 175, 147), Item.GOLD: (250, 215, 60)}


def _noise(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random((BASE, BASE))


def _fill(color, jitter: int, seed: int, spots=None, spot_color=None, spot_p: float = 0.0) -> np.ndarray:
    """A textured 8x8 tile: a base colour with per-pixel jitter, plus optional spots."""
    n = _noise(seed)
    img = np.array(color, np.float64)[None, None, :] + (n[..., None] - 0.5) * 2 * jitter
    if spot_color is not None:
        mask = spots if spots is not None else _noise(seed + 1000) < spot_p
        img[mask] = spot_color
    return np.clip(img, 0, 255).astype(np.uint8)


def _ore(seed: int, color) -> np.ndarray:
    img = _fill((128, 128, 128), 14, 4)  # the stone texture underneath
    spots = np.zeros((BASE, BASE), bool)
    rng = np.random.default_rng(seed)
    for _ in range(3):  # three 2x2 nuggets
        y, x = rng.integers(0, BASE - 1, size=2)
        spots[y:y + 2, x:x + 2] = True
    img[spots] = color
    return img


def _tiles() -> np.ndarray:
    t = np.zeros((N_TILES, BASE, BASE, 3), np.uint8)
    t[Tile.SKY] = (135, 190, 235)
    t[Tile.CAVE] = _fill((58, 48, 44), 6, 1, spot_color=(40, 33, 30), spot_p=0.15)
    dirt = _fill((134, 96, 67), 16, 3, spot_color=(100, 70, 50), spot_p=0.12)
    t[Tile.DIRT] = dirt
    t[Tile.GRASS] = dirt
    t[Tile.GRASS, :2] = _fill((70, 160, 60), 12, 2)[:2]
    t[Tile.GRASS, 2, ::3] = (70, 160, 60)  # blades hanging over the dirt
    t[Tile.STONE] = _fill((128, 128, 128), 14, 4, spot_color=(96, 96, 96), spot_p=0.1)
    t[Tile.SAND] = _fill((219, 207, 142), 10, 5, spot_color=(196, 180, 120), spot_p=0.1)
    t[Tile.SNOW] = dirt
    t[Tile.SNOW, :3] = _fill((245, 248, 255), 6, 6)[:3]
    t[Tile.ICE] = _fill((165, 205, 245), 8, 7)
    t[Tile.ICE, np.arange(BASE), np.arange(BASE)] = (235, 245, 255)  # a diagonal glint
    bark = _fill((110, 75, 40), 10, 8)
    bark[:, 2::3] = (80, 52, 28)  # vertical bark grooves
    t[Tile.WOOD] = bark
    t[Tile.LEAVES] = _fill((40, 130, 45), 18, 9, spot_color=(25, 95, 30), spot_p=0.2)
    t[Tile.PINE] = _fill((30, 90, 60), 12, 10, spot_color=(235, 240, 250), spot_p=0.18)
    cactus = np.broadcast_to(t[Tile.SKY], (BASE, BASE, 3)).copy()
    cactus[:, 2:6] = _fill((60, 150, 60), 10, 11)[:, 2:6]
    cactus[1::3, 2] = (30, 90, 30)  # spines
    cactus[2::3, 5] = (30, 90, 30)
    t[Tile.CACTUS] = cactus
    planks = _fill((190, 145, 90), 8, 12)
    planks[3] = planks[7] = (120, 85, 50)  # seams between boards
    planks[0:3, 5] = planks[4:7, 2] = (120, 85, 50)
    t[Tile.PLANKS] = planks
    t[Tile.COAL] = _ore(13, (25, 25, 25))
    t[Tile.IRON] = _ore(14, (216, 160, 120))
    t[Tile.GOLD] = _ore(15, (250, 215, 60))
    water = _fill((45, 90, 205), 10, 16)
    water[0, ::2] = (120, 160, 240)  # ripples
    t[Tile.WATER] = water
    t[Tile.LAVA] = _fill((215, 75, 20), 20, 17, spot_color=(250, 200, 40), spot_p=0.15)
    t[Tile.BEDROCK] = _fill((40, 40, 40), 20, 18, spot_color=(15, 15, 15), spot_p=0.3)
    return t


def _pattern(rows: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(rgb (8, 8, 3), opaque mask (8, 8)) from a list of palette strings."""
    rgb = np.zeros((BASE, BASE, 3), np.uint8)
    mask = np.zeros((BASE, BASE), bool)
    for y, row in enumerate(rows):
        for x, ch in enumerate(row):
            if ch != ".":
                rgb[y, x] = _PALETTE[ch]
                mask[y, x] = True
    return rgb, mask


def _entities() -> tuple[np.ndarray, np.ndarray]:
    rgb = np.zeros((N_SPRITES, BASE, BASE, 3), np.uint8)
    mask = np.zeros((N_SPRITES, BASE, BASE), bool)
    for kind, rows in _ENTITY_RIGHT.items():
        c, m = _pattern(rows)
        rgb[2 * kind + 1], mask[2 * kind + 1] = c, m  # facing right
        rgb[2 * kind], mask[2 * kind] = c[:, ::-1], m[:, ::-1]  # facing left: mirrored
    return rgb, mask


def _hud() -> np.ndarray:
    g = np.zeros((N_HUD, BASE, BASE, 3), np.uint8)
    g[:] = HUD_PANEL
    heart, hmask = _pattern(_HEART)
    g[HEART_FULL][hmask] = heart[hmask]
    g[HEART_HALF][hmask] = _PALETTE["d"]
    half = hmask.copy()
    half[:, 4:] = False
    g[HEART_HALF][half] = heart[half]
    g[HEART_EMPTY][hmask] = _PALETTE["d"]
    for item in Item:
        g[ICON + item, 2:7, 1:7] = _ICON_COLOR[item]
        g[ICON + item, 2, 1] = g[ICON + item, 6, 6] = HUD_PANEL  # round the corners a little
        sel = g[ICON + item].copy()
        sel[1, :] = sel[7, :] = sel[:, 0] = sel[:, 7] = _PALETTE["y"]  # selected: a yellow frame
        g[ICON_SELECTED + item] = sel
    for n in range(100):
        for half_x, digit in ((0, n // 10), (4, n % 10)):
            bits = np.array([int(b) for b in _DIGITS[digit]], bool).reshape(5, 3)
            cell = g[COUNT + n, 2:7, half_x + 1:half_x + 4]
            cell[bits] = _DIGIT_COLOR[digit]
    g[:, 0, :] = HUD_RULE
    return g


def _resize(cells: np.ndarray, tile_size: int) -> np.ndarray:
    """Nearest-neighbour resize of (..., 8, 8, C) cells to (..., ts, ts, C)."""
    idx = (np.arange(tile_size) * BASE) // tile_size
    return cells[..., idx, :, :][..., idx, :]


@dataclass(frozen=True)
class Atlas:
    """All cells at one tile size: `cells[level, index]` is a (ts, ts, 3) uint8 image."""

    tile_size: int
    cells: np.ndarray  # (N_LIGHT, N_CELLS, ts, ts, 3) uint8
    sprite_mask: np.ndarray  # (N_SPRITES, ts, ts) bool: opaque pixels of each entity sprite

    @property
    def rule_values(self) -> np.ndarray:
        """(N_LIGHT,) brightness of the HUD rule at each light level."""
        return self.cells[:, HUD + HUD_BLANK, 0, 0, 0].astype(np.float64)


@lru_cache(maxsize=8)
def build_atlas(tile_size: int = TILE_SIZE) -> Atlas:
    """Draw every cell at `tile_size` pixels and every light level; checked so that no two cells look alike."""
    if not isinstance(tile_size, (int, np.integer)) or tile_size < 4:
        raise ValueError(f"tile_size={tile_size!r}: expected an integer >= 4 (sprites are drawn on an 8x8 grid)")
    tiles = _tiles()
    ent_rgb, ent_mask = _entities()
    base = np.zeros((N_CELLS, BASE, BASE, 3), np.uint8)
    base[:N_TILES] = tiles
    for s in range(N_SPRITES):
        comp = np.where(ent_mask[s][None, :, :, None], ent_rgb[s][None], tiles)  # (N_TILES, 8, 8, 3)
        base[COMPOSITE + s * N_TILES:COMPOSITE + (s + 1) * N_TILES] = comp
    base[HUD:] = _hud()
    base = _resize(base, tile_size)
    # Integer lighting, so the same frame comes out on every machine.
    scale = np.array([round(f * 256) for f in LIGHT_FACTORS], np.uint16)
    cells = ((base[None].astype(np.uint16) * scale[:, None, None, None, None]) >> 8).astype(np.uint8)
    mask = _resize(ent_mask[..., None], tile_size)[..., 0]
    for level in range(N_LIGHT):
        flat = cells[level].reshape(N_CELLS, -1)
        if len(np.unique(flat, axis=0)) != N_CELLS:
            raise ValueError(f"tile_size={tile_size}: some sprites look identical at this size; use a larger one "
                             "(8 is the default)")
    cells.setflags(write=False)
    return Atlas(tile_size=tile_size, cells=cells, sprite_mask=mask)
