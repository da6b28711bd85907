"""Line charts saved as PNG, for probe reports (accuracy per time step, valid tiles over a rollout) and training curves
(loss per step, often on a log y axis), drawn by matplotlib.

Figures are made with matplotlib's object API and its Agg canvas, never pyplot: no display is needed or touched, no
global figure state builds up, and a user's own backend choice is left alone. matplotlib is imported on first use,
so `import worldsim.plot` stays cheap for code that only names `Series`.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

# matplotlib's tab10, the colours a series gets in order: distinct, readable on white, and familiar from other plots
COLORS = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
          (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207))
STYLES = {"line": dict(linestyle="-"), "dashed": dict(linestyle="--"),
          "points": dict(linestyle="none", marker="o", markersize=4)}
BAND_ALPHA = 50 / 255  # a band is the series' colour at this opacity over white
MIN_SIZE = (200, 150)
DPI = 100  # size is in pixels: figures are size / DPI inches


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
            raise ValueError(f"series {self.label!r}: style={self.style!r}, expected one of {tuple(STYLES)}")


def _check_size(size) -> None:
    if len(size) != 2 or not (size[0] >= MIN_SIZE[0] and size[1] >= MIN_SIZE[1]):
        raise ValueError(f"size={size!r}: expected (width, height) of at least {MIN_SIZE}")


def _check_ylim(ylim, logy: bool) -> None:
    if ylim is not None and not (ylim[0] < ylim[1] and (ylim[0] > 0 or not logy)):
        raise ValueError(f"ylim={ylim!r}: expected (low, high) with low < high" + (" and low > 0 (log y)" * logy))


def _finite(values) -> np.ndarray:
    v = np.array(values, dtype=float).reshape(-1)
    v[~np.isfinite(v)] = np.nan  # inf is a gap too: matplotlib would stretch the axis toward it
    return v


def _shown(sr: Series, logx: bool, logy: bool) -> np.ndarray:
    """Which points of `sr` the axes can place: finite, and positive on a log axis."""
    x, y = _finite(sr.x), _finite(sr.y)
    return np.isfinite(x) & np.isfinite(y) & ((x > 0) | (not logx)) & ((y > 0) | (not logy))


def figure(size: tuple[int, int], rows: int = 1) -> tuple[Figure, list[Axes]]:
    """A white figure of `size` (width, height) pixels with `rows` axes stacked, on the Agg canvas (no display)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(size[0] / DPI, size[1] / DPI), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, list(fig.subplots(rows, 1, squeeze=False)[:, 0])


def draw(ax: Axes, series: Sequence[Series], *, title: str = "", xlabel: str = "", ylabel: str = "",
         ylim: tuple[float, float] | None = None, logy: bool = False, logx: bool = False) -> None:
    """The series on `ax`, coloured in order from COLORS, with a legend where any series has a label."""
    _check_ylim(ylim, logy)
    if logy:
        ax.set_yscale("log", nonpositive="mask")  # values <= 0 are gaps: a log axis cannot show them
    if logx:
        ax.set_xscale("log", nonpositive="mask")
    for i, sr in enumerate(series):
        color = np.array(COLORS[i % len(COLORS)]) / 255
        x, y = _finite(sr.x), _finite(sr.y)
        if sr.band is not None:
            band = _finite(sr.band)
            ax.fill_between(x, y - band, y + band, color=color, alpha=BAND_ALPHA, linewidth=0)
        ax.plot(x, y, color=color, linewidth=2, label=sr.label or None, **STYLES[sr.style])
        if sr.style != "points":  # a point between two gaps draws no line: show it as a dot
            ok = np.isfinite(x) & np.isfinite(y)
            alone = ok & ~np.r_[False, ok[:-1]] & ~np.r_[ok[1:], False]
            if alone.any():
                ax.plot(x[alone], y[alone], color=color, linestyle="none", marker="o", markersize=4)
    if (logx or logy) and not any(_shown(sr, logx, logy).any() for sr in series):
        ax.set_autoscale_on(False)  # no point the axes can show: fixed limits, not matplotlib's warning
        ax.set_xlim(*((1, 10) if logx else (0, 1)))
        ax.set_ylim(*((1, 10) if logy else (0, 1)))
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.grid(True, color=(0.9, 0.9, 0.9))
    ax.set_axisbelow(True)  # grid lines under the curves
    ax.set_title(title, fontsize=11, wrap=True)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if any(sr.label for sr in series):
        ax.legend(loc="best", fontsize=9, framealpha=0.9)


def to_array(fig: Figure) -> np.ndarray:
    """The figure as an (H, W, 3) uint8 RGB image."""
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()


def to_png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def _chart(series: Sequence[Series], size: tuple[int, int], **kwargs) -> Figure:
    """One chart of `size` pixels: `draw`'s keywords (and checks) on a figure of its own."""
    _check_size(size)
    fig, (ax,) = figure(size)
    draw(ax, series, **kwargs)
    return fig


def line_chart(series: Sequence[Series], *, title: str = "", xlabel: str = "", ylabel: str = "",
               ylim: tuple[float, float] | None = None, logy: bool = False, logx: bool = False,
               size: tuple[int, int] = (640, 360)) -> np.ndarray:
    """An (H, W, 3) uint8 RGB image of the chart, H and W from `size` (width, height)."""
    return to_array(_chart(series, size, title=title, xlabel=xlabel, ylabel=ylabel, ylim=ylim, logy=logy, logx=logx))


def save_chart(path, series: Sequence[Series], *, size: tuple[int, int] = (640, 360), **kwargs) -> Path:
    """line_chart, written as PNG to a temporary name and renamed (never half a file; nothing on a bad argument)."""
    from worldsim.io import atomic_write_bytes

    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"path={str(path)!r}: expected a file name ending in .png")
    return atomic_write_bytes(path, to_png(_chart(series, size, **kwargs)))
