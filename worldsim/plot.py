"""Small line charts saved as PNG, for probe reports (accuracy per time step, valid tiles over a rollout) and
training curves (loss per step, often on a log y axis).

Drawn with Pillow and numpy alone: matplotlib is a large dependency for a few curves, and worldsim already needs
Pillow. The chart is drawn at twice the size and averaged down 2x2, which smooths lines and text (a box filter
rather than LANCZOS: it does not ring, so a line's core keeps its exact colour).
"""

from __future__ import annotations

import math
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

# matplotlib's tab10: distinct, readable on white, and familiar from other plots
COLORS = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
          (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207))
STYLES = ("line", "dashed", "points")
MIN_SIZE = (200, 150)
INK, GRID, PAD = (40, 40, 40), (228, 228, 228), 8  # PAD: the image margin, in output pixels


@dataclass(frozen=True)
class Series:
    """One curve. NaN in y is a gap; band is a +/- half-width (a std, say) drawn as a light area around it."""

    label: str
    x: Sequence[float]
    y: Sequence[float]
    band: Sequence[float] | None = None
    style: str = "line"  # "line" | "dashed" | "points"

    def __post_init__(self):  # checked here, so the mistake is reported where the series is made
        for name, values in (("y", self.y), ("band", self.band if self.band is not None else self.x)):
            if len(values) != len(self.x):
                raise ValueError(f"series {self.label!r}: x has {len(self.x)} values but {name} has {len(values)}; "
                                 "expected equal lengths")
        if self.style not in STYLES:
            raise ValueError(f"series {self.label!r}: style={self.style!r}, expected one of {STYLES}")


def _fonts(sizes: Sequence[int]) -> tuple[list, int]:
    """Pillow's default font at each size, and the drawing scale: 2 where it scales (FreeType, Pillow >= 10.1);
    the old fixed bitmap font would shrink to a blur at half size, so it is drawn at 1x."""
    try:
        fonts = [ImageFont.load_default(size=2 * s) for s in sizes]
        if all(isinstance(f, ImageFont.FreeTypeFont) for f in fonts):
            return fonts, 2
    except TypeError:  # Pillow < 10.1: no size argument
        pass
    return [ImageFont.load_default()] * len(sizes), 1


def _axis(values, log: bool) -> np.ndarray:
    """Values in axis space (log10 on a log axis); NaN for gaps and for what the axis cannot show (<= 0 on log)."""
    v = np.array(values, dtype=float).reshape(-1)
    v[~np.isfinite(v)] = np.nan
    return np.log10(np.where(v > 0, v, np.nan)) if log else v


def _limits(arrays: list[np.ndarray], log: bool, pad: float) -> tuple[float, float]:
    finite = np.concatenate([a[np.isfinite(a)] for a in arrays] + [np.empty(0)])
    if finite.size == 0:
        return 0.0, 1.0
    lo, hi = float(finite.min()), float(finite.max())
    if log:  # whole decades, so there are always two labelled decade ticks
        return math.floor(lo), max(math.ceil(hi), math.floor(lo) + 1)
    if lo == hi:
        return lo - (abs(lo) * 0.1 or 1.0), hi + (abs(lo) * 0.1 or 1.0)
    return lo - (hi - lo) * pad, hi + (hi - lo) * pad


def _nice(lo: float, hi: float, most: int) -> tuple[np.ndarray, float]:
    """Multiples of the 1/2/5 x 10^k step that puts closest to 4..most ticks in [lo, hi] (more ticks on a tie)."""
    base, best = 10.0 ** math.floor(math.log10((hi - lo) / 5)), None
    for step in (base * m for m in (1, 2, 5, 10, 20, 50, 100)):
        ticks = np.arange(math.ceil(lo / step - 1e-9), math.floor(hi / step + 1e-9) + 1) * step
        miss = max(min(4, most) - len(ticks), len(ticks) - most, 0)
        if best is None or miss < best[0]:
            best = (miss, ticks, step)
    return best[1], best[2]


def _labels(values: np.ndarray, step: float) -> list[str]:
    """Tick labels with the decimals the step needs; k and M for big numbers (training steps)."""
    values = np.where(np.abs(values) < step * 1e-6, 0.0, values)  # not "-0.0" or "2.8e-17" from float noise
    decimals, big = max(0, -math.floor(math.log10(step) + 1e-9)), np.max(np.abs(values), initial=0) >= 1e5
    return [f"{v / 1e6:g}M" if big and abs(v) >= 1e6 else f"{v / 1e3:g}k" if big and abs(v) >= 1e3
            else f"{v:.{decimals}f}" for v in values.tolist()]


def _ticks(lo: float, hi: float, log: bool, most: int) -> tuple[np.ndarray, list[str]]:
    """Tick positions in axis space and their labels: decades on a log axis, 1/2/5 x 10^k steps otherwise."""
    if log:
        k = np.arange(math.ceil(lo - 1e-9), math.floor(hi + 1e-9) + 1)
        if len(k) >= 2:
            k = k[::math.ceil(len(k) / most)]
            plain = all(-4 < e < 5 for e in k)  # 0.001 .. 10000 read best written out; past that, all as 1eN
            return k.astype(float), [f"{10.0 ** e:.{max(0, -e)}f}" if plain else f"1e{e}" for e in k.tolist()]
        values, step = _nice(10.0 ** lo, 10.0 ** hi, most)  # a tight ylim inside one decade: steps of the values
        values = values[values > 0]
        return np.log10(values), _labels(values, step)
    values, step = _nice(lo, hi, most)
    return values, _labels(values, step)


def _spaced_ticks(lo, hi, log, length, extent) -> tuple[np.ndarray, list[str]]:
    """The most ticks (up to 7) whose labels, extent(label) pixels along an axis length pixels long, do not touch."""
    for most in range(7, 1, -1):
        ticks, labels = _ticks(lo, hi, log, most)
        gaps = np.diff(ticks) / (hi - lo) * length
        if len(ticks) < 2 or gaps.min() > max(map(extent, labels)) * 1.3:
            break
    return ticks, labels


def _box(draw, text: str, font) -> tuple[int, int, int, int]:
    return draw.textbbox((0, 0), text, font=font)


def _text(draw, xy, text: str, font, anchor: str = "lt") -> None:
    """Text placed by its ink box ("l"/"m"/"r" then "t"/"m"/"b"); the bitmap font has no anchor support."""
    left, top, right, bottom = _box(draw, text, font)
    x = xy[0] - left - {"l": 0, "m": (right - left) / 2, "r": right - left}[anchor[0]]
    y = xy[1] - top - {"t": 0, "m": (bottom - top) / 2, "b": bottom - top}[anchor[1]]
    draw.text((x, y), text, font=font, fill=INK)


def _fit(draw, text: str, font, width: float) -> str:
    """The text, cut short with "..." to at most width pixels (a long title must stay inside the image)."""
    while text and _box(draw, text, font)[2] > width:
        text = text[:-4] + "..." if len(text) > 4 else ""
    return text


def _vertical_text(img: Image.Image, center, text: str, font) -> None:
    """Text turned a quarter (the y label): drawn on its own tile, then pasted in ink through the tile as mask."""
    left, top, right, bottom = font.getbbox(text or " ")
    tile = Image.new("L", (right - left, bottom - top), 0)
    ImageDraw.Draw(tile).text((-left, -top), text, font=font, fill=255)
    tile = tile.rotate(90, expand=True)
    x, y = int(center[0] - tile.width / 2), int(center[1] - tile.height / 2)
    img.paste(INK, (x, y, x + tile.width, y + tile.height), tile)


def _runs(ok: np.ndarray) -> list[np.ndarray]:
    """Indices of each stretch of consecutive valid points: a NaN breaks the line."""
    edges = np.flatnonzero(np.diff(np.r_[0, ok.astype(np.int8), 0]))
    return [np.arange(a, b) for a, b in zip(edges[::2], edges[1::2])]


def _dashes(pts: list[tuple[float, float]], on: float, off: float) -> list[list[tuple[float, float]]]:
    """The polyline cut into dashes; the on/off pattern carries on across vertices so short segments still dash."""
    pieces, cur, pos = [], [], 0.0
    for (x0, y0), (x1, y1) in zip(pts[:-1], pts[1:]):
        seg, t = math.hypot(x1 - x0, y1 - y0), 0.0
        while t < seg:
            phase = pos % (on + off)
            step = min(seg - t, on - phase if phase < on else on + off - phase)
            if phase < on:
                cur = cur or [(x0 + (x1 - x0) * t / seg, y0 + (y1 - y0) * t / seg)]
                cur.append((x0 + (x1 - x0) * (t + step) / seg, y0 + (y1 - y0) * (t + step) / seg))
            elif cur:
                pieces, cur = pieces + [cur], []
            t, pos = t + step, pos + step
    return pieces + [cur] if cur else pieces


def _draw_series(draw, px: np.ndarray, py: np.ndarray, color, style: str, s: int) -> None:
    for run in _runs(np.isfinite(px) & np.isfinite(py)):
        pts = list(zip(px[run].tolist(), py[run].tolist()))
        if style == "points" or len(pts) == 1:  # a lone point between gaps would draw nothing as a line
            for x, y in pts:
                draw.ellipse((x - 2.5 * s, y - 2.5 * s, x + 2.5 * s, y + 2.5 * s), fill=color)
        else:
            for piece in (_dashes(pts, 7 * s, 4 * s) if style == "dashed" else [pts]):
                draw.line(piece, fill=color, width=2 * s, joint="curve")


def _legend(plot: Image.Image, draw, items, font, s: int) -> None:
    """A legend box in the plot corner where it hides the least drawn data (top right on a tie)."""
    size, ink = plot.size, np.asarray(plot).min(axis=2) < 200  # curves; the grid and the light bands are paler
    labels = [_fit(draw, label, font, size[0] * 0.6) for label, _, _ in items]
    row = _box(draw, "Ag", font)[3] + 4 * s
    w, h, m = 38 * s + max(_box(draw, t, font)[2] for t in labels), row * len(items) + 6 * s, 6 * s
    corners = [(size[0] - w - m, m), (m, m), (size[0] - w - m, size[1] - h - m), (m, size[1] - h - m)]
    x, y = min(corners, key=lambda c: ink[max(0, c[1]):c[1] + h, max(0, c[0]):c[0] + w].sum())
    draw.rounded_rectangle((x, y, x + w, y + h), radius=3 * s, fill=(255, 255, 255, 225), outline=(200, 200, 200))
    for i, ((_, color, style), label) in enumerate(zip(items, labels)):
        cy = y + 3 * s + row * i + row / 2
        sample = [x + 15 * s] if style == "points" else [x + 6 * s, x + 24 * s]
        _draw_series(draw, np.array(sample), np.full(len(sample), cy), color, style, s)
        _text(draw, (x + 30 * s, cy), label, font, "lm")


def _to_px(values, lim: tuple[float, float], n: int, flip: bool) -> np.ndarray:
    """Axis space to plot pixels; clamped far off the plot, where PIL would choke on huge ints."""
    p = np.clip((np.asarray(values, dtype=float) - lim[0]) / (lim[1] - lim[0]) * (n - 1), -1e5, 1e5)
    return (n - 1) - p if flip else p


def _plot_area(series, xs, ys, bands, xlim, ylim, xticks, yticks, size, font, s: int) -> Image.Image:
    """Grid, bands, curves and legend on a canvas of their own, so that what runs off the axes is clipped."""
    (w, h), colors = size, [COLORS[i % len(COLORS)] for i in range(len(series))]
    plot = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(plot, "RGBA")  # RGBA: translucent bands and legend blend with what lies below
    for p in _to_px(xticks, xlim, w, False):
        draw.line([(p, 0), (p, h)], fill=GRID, width=s)
    for p in _to_px(yticks, ylim, h, True):
        draw.line([(0, p), (w, p)], fill=GRID, width=s)
    pxs, pys = [_to_px(x, xlim, w, False) for x in xs], [_to_px(y, ylim, h, True) for y in ys]
    for px, band, color in zip(pxs, bands, colors):  # every band before any curve, so no band hides a curve
        if band is not None:
            lo, hi = _to_px(band[0], ylim, h, True), _to_px(band[1], ylim, h, True)
            for run in _runs(np.isfinite(px) & np.isfinite(lo) & np.isfinite(hi)):
                outline = list(zip(px[run], hi[run])) + list(zip(px[run], lo[run]))[::-1]
                draw.polygon([(float(a), float(b)) for a, b in outline], fill=color + (50,))
    for sr, px, py, color in zip(series, pxs, pys, colors):
        _draw_series(draw, px, py, color, sr.style, s)
    items = [(sr.label, color, sr.style) for sr, color in zip(series, colors) if sr.label]
    if items:
        _legend(plot, draw, items, font, s)
    return plot


def line_chart(series: Sequence[Series], *, title: str = "", xlabel: str = "", ylabel: str = "",
               ylim: tuple[float, float] | None = None, logy: bool = False, logx: bool = False,
               size: tuple[int, int] = (640, 360)) -> np.ndarray:
    """An (H, W, 3) uint8 RGB image of the chart."""
    if len(size) != 2 or not (size[0] >= MIN_SIZE[0] and size[1] >= MIN_SIZE[1]):
        raise ValueError(f"size={size!r}: expected (width, height) of at least {MIN_SIZE}")
    if ylim is not None and not (ylim[0] < ylim[1] and (ylim[0] > 0 or not logy)):
        raise ValueError(f"ylim={ylim!r}: expected (low, high) with low < high" + (" and low > 0 (log y)" * logy))
    (tick_font, label_font, title_font), s = _fonts((12, 13, 14))
    W, H, pad, tick = int(size[0]) * s, int(size[1]) * s, PAD * s, 4 * s
    xs, ys = [_axis(sr.x, logx) for sr in series], [_axis(sr.y, logy) for sr in series]
    bands = [None if sr.band is None else (_axis(np.subtract(sr.y, sr.band), logy),
                                           _axis(np.add(sr.y, sr.band), logy)) for sr in series]
    xlim = _limits(xs, logx, 0.02)
    ylim = (_limits(ys + [b for pair in bands if pair for b in pair], logy, 0.05) if ylim is None
            else tuple(_axis(ylim, logy).tolist()))

    img = Image.new("RGB", (W, H), "white")
    draw = ImageDraw.Draw(img)
    line_h, tick_h = _box(draw, "Ag", label_font)[3], _box(draw, "0", tick_font)[3]
    width = lambda text: _box(draw, text, tick_font)[2]  # noqa: E731
    # margins sized from the text they hold, so labels neither leave the image nor run into the plot
    top = pad + (_box(draw, "Ag", title_font)[3] + 2 * tick if title else tick)
    bottom = H - pad - 2 * tick - tick_h - (2 * tick + line_h if xlabel else 0)
    yticks, ylabels = _spaced_ticks(*ylim, logy, bottom - top, lambda _: tick_h)
    left = pad + (line_h + 2 * tick if ylabel else 0) + max(map(width, ylabels), default=0) + 2 * tick
    xticks, xlabels = _spaced_ticks(*xlim, logx, W - left - 2 * pad, width)
    edge = max(map(width, xlabels[:1] + xlabels[-1:]), default=0) / 2 + pad  # end labels hang past the frame
    left, right = int(max(left, edge)), int(W - max(edge, 2 * pad))
    pw, ph = right - left, bottom - top

    img.paste(_plot_area(series, xs, ys, bands, xlim, ylim, xticks, yticks, (pw, ph), tick_font, s), (left, top))
    draw.rectangle((left, top, right - 1, bottom - 1), outline=INK, width=s)
    for p, label in zip(_to_px(xticks, xlim, pw, False) + left, xlabels):
        draw.line([(p, bottom), (p, bottom + tick)], fill=INK, width=s)
        _text(draw, (p, bottom + 2 * tick), label, tick_font, "mt")
    for p, label in zip(_to_px(yticks, ylim, ph, True) + top, ylabels):
        draw.line([(left - tick, p), (left, p)], fill=INK, width=s)
        _text(draw, (left - 2 * tick, p), label, tick_font, "rm")
    if title:
        _text(draw, (W / 2, pad), _fit(draw, title, title_font, W - 2 * pad), title_font, "mt")
    if xlabel:
        _text(draw, (left + pw / 2, H - pad), _fit(draw, xlabel, label_font, W - 2 * pad), label_font, "mb")
    if ylabel:
        _vertical_text(img, (pad + line_h / 2, top + ph / 2), _fit(draw, ylabel, label_font, ph), label_font)
    if s > 1:
        img = img.reduce(s)
    return np.asarray(img, dtype=np.uint8).copy()


def save_chart(path, series: Sequence[Series], **kwargs) -> Path:
    """line_chart, written as PNG to a temporary name in the same directory and renamed (never half a file)."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"path={str(path)!r}: expected a file name ending in .png")
    image = Image.fromarray(line_chart(series, **kwargs))  # first: a bad argument leaves no file behind
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{uuid.uuid4().hex[:8]}.png")  # same directory: os.replace stays atomic
    try:
        image.save(tmp, format="PNG")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
