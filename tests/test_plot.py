"""worldsim.plot draws line charts with matplotlib: the curves land in the image in their colours, gaps and log axes
are handled, bad arguments are refused by name, save_chart writes a PNG atomically, and no display is needed."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from worldsim.plot import COLORS, Series, line_chart, save_chart

X = np.arange(50, dtype=float)


def colored(image: np.ndarray, color, tol: int = 12) -> int:
    """How many pixels are within tol of color in every channel."""
    return int((np.abs(image.astype(int) - np.array(color)).max(axis=2) <= tol).sum())


def test_chart_is_an_rgb_uint8_image_of_the_requested_size():
    image = line_chart([Series("a", X, np.sin(X))], title="t", xlabel="x", ylabel="y", size=(300, 200))
    assert image.shape == (200, 300, 3) and image.dtype == np.uint8
    assert line_chart([Series("a", X, X)]).shape == (360, 640, 3)
    assert (image[0, 0] == 255).all()  # white background


def test_each_series_is_drawn_in_its_own_colour():
    # no labels, so no legend: every coloured pixel comes from a curve
    one = line_chart([Series("", X, X)])
    two = line_chart([Series("", X, X), Series("", X, 50 - X)])
    assert COLORS[0] != COLORS[1]
    assert colored(one, COLORS[0]) > 200 and colored(one, COLORS[1]) == 0
    assert colored(two, COLORS[0]) > 200 and colored(two, COLORS[1]) > 200


def test_legend_shows_each_labelled_series_colour():
    empty = [Series("model", X, np.full(50, np.nan)), Series("floor", X, np.full(50, np.nan), style="dashed")]
    image = line_chart(empty)  # nothing to draw but the legend
    assert colored(image, COLORS[0]) > 5 and colored(image, COLORS[1]) > 5
    assert colored(line_chart([Series("", X, np.full(50, np.nan))]), COLORS[0]) == 0


def test_nan_is_a_gap_in_the_line():
    y = np.sin(X / 5)
    gappy = y.copy()
    gappy[10:30] = np.nan
    full, gap = (colored(line_chart([Series("", X, v)], ylim=(-1.1, 1.1)), COLORS[0]) for v in (y, gappy))
    assert 0 < gap < full * 0.8


def test_a_point_alone_between_gaps_still_shows():
    y = np.full(50, np.nan)
    y[25] = 3.0
    assert colored(line_chart([Series("", X, y)], ylim=(0, 5)), COLORS[0]) > 5


def test_dashed_and_points_draw_less_than_a_solid_line():
    x = np.arange(10.0)  # ten points: dots far apart
    solid, dashed, points = (colored(line_chart([Series("", x, x, style=st)]), COLORS[0])
                             for st in ("line", "dashed", "points"))
    assert 0 < dashed < solid and 0 < points < solid


def test_band_is_a_light_area_around_the_curve():
    image = line_chart([Series("", X, X, band=np.full(50, 5.0))])
    light = np.array(COLORS[0]) * 50 / 255 + 255 * (1 - 50 / 255)  # the colour blended at 50/255 onto white
    assert colored(image, light, tol=8) > 1000


@pytest.mark.parametrize("series", [
    [],
    [Series("one point", [3.0], [5.0])],
    [Series("flat", X, np.full(50, 2.0))],
    [Series("all nan", X, np.full(50, np.nan))],
    [Series("short", [0, 1], [1, 2]), Series("long", X, np.cos(X))],
    [Series("inf", [0, 1, 2], [1, np.inf, 2])],
], ids=["empty", "single", "flat", "all-nan", "different-lengths", "inf"])
def test_awkward_data_still_draws(series):
    assert line_chart(series, title="t", xlabel="x", ylabel="y").shape == (360, 640, 3)


def test_log_axes_skip_values_they_cannot_show():
    y = np.r_[0.0, -1.0, np.geomspace(1e-3, 10, 48)]
    image = line_chart([Series("", X, y, band=np.full(50, 0.5))], logy=True)
    assert colored(image, COLORS[0]) > 200
    image = line_chart([Series("", X, np.zeros(50))], logy=True, logx=True)  # nothing positive at all
    assert colored(image, COLORS[0]) == 0
    assert line_chart([Series("", X, X + 1)], logy=True, ylim=(2, 9)).shape == (360, 640, 3)  # inside one decade


def test_mismatched_lengths_name_the_series_and_both_lengths():
    with pytest.raises(ValueError, match=r"'loss'.*x has 3 values but y has 2"):
        Series("loss", [0, 1, 2], [1, 2])
    with pytest.raises(ValueError, match=r"'acc'.*x has 2 values but band has 1"):
        Series("acc", [0, 1], [1, 2], band=[0.1])
    with pytest.raises(ValueError, match=r"style='dotted'"):
        Series("acc", [0, 1], [1, 2], style="dotted")


@pytest.mark.parametrize("size", [(100, 300), (640, 149), (640,)])
def test_too_small_a_size_is_refused(size):
    with pytest.raises(ValueError, match=re.escape(f"size={size!r}") + r".*at least \(200, 150\)"):
        line_chart([], size=size)


@pytest.mark.parametrize("ylim,logy", [((1.0, 1.0), False), ((2.0, 1.0), False), ((0.0, 1.0), True)])
def test_bad_ylim_is_refused(ylim, logy):
    with pytest.raises(ValueError, match=re.escape(f"ylim={ylim!r}")):
        line_chart([Series("a", X, X)], ylim=ylim, logy=logy)


def test_save_chart_writes_a_png_and_no_temporary_file(tmp_path):
    out = tmp_path / "charts" / "acc.png"
    assert save_chart(out, [Series("a", X, X)], size=(320, 240), title="acc") == out
    save_chart(out, [Series("b", X, -X)], size=(320, 240))  # replacing an existing chart
    with Image.open(out) as image:
        assert image.format == "PNG" and image.size == (320, 240)
    assert sorted(p.name for p in out.parent.iterdir()) == ["acc.png"]


def test_save_chart_leaves_nothing_behind_on_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="size="):
        save_chart(tmp_path / "a.png", [], size=(10, 10))
    with pytest.raises(ValueError, match=r"\.png"):
        save_chart(tmp_path / "a.jpg", [])
    assert list(tmp_path.iterdir()) == []


def test_charts_need_no_display_and_ignore_a_gui_backend_setting(tmp_path):
    # a user's MPLBACKEND (a GUI one here) and no X display: the Agg canvas is used all the same, pyplot never
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")} | {"MPLBACKEND": "TkAgg"}
    code = ("import sys\nfrom worldsim.plot import Series, save_chart\n"
            f"save_chart({str(tmp_path / 'a.png')!r}, [Series('a', [0, 1], [1, 2])])\n"
            "print('matplotlib.pyplot' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False"] and (tmp_path / "a.png").stat().st_size > 1000
