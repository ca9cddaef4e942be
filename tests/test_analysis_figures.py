"""Figures: the plotted line and band data read back from the axis, not from pixels."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pandas as pd
import pytest
from matplotlib.axes import Axes
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from analysis import figures

_KEYS = itertools.count()
T15 = "twitter2015"


def result_row(setting: str, share: float, f1: float, **overrides: Any) -> dict:
    """One finished SMVAE trial on Twitter-2015 with test F1 ``f1``."""
    row: dict[str, Any] = {
        "trial_key": f"{next(_KEYS):08x}",
        "method": "smvae",
        "setting": setting,
        "dataset": T15,
        "labelled_count": round(4000 * share),
        "labelled_share": share,
        "latent_size": 100,
        "test_f1": f1,
        "status": "finished",
    }
    row.update(overrides)
    return row


def frame(rows: list[dict]) -> pd.DataFrame:
    results = pd.DataFrame(rows)
    results["latent_size"] = results["latent_size"].astype("Int64")
    return results


def new_axis() -> Axes:
    return Figure().subplots()


def xy(line: Line2D) -> tuple[list[float], list[float]]:
    """Return the plotted x and y values of a line as plain floats."""
    x = np.asarray(line.get_xdata(), dtype=float)
    y = np.asarray(line.get_ydata(), dtype=float)
    return x.tolist(), y.tolist()


def band_edges(ax: Axes, index: int, x: float) -> list[float]:
    """Return the distinct y values of the ``index``-th band's outline at ``x``."""
    collection = ax.collections[index]
    assert isinstance(collection, PolyCollection)
    vertices = np.asarray(collection.get_paths()[0].vertices, dtype=float)
    at_x = vertices[np.isclose(vertices[:, 0], x), 1]
    return sorted({round(float(y), 9) for y in at_x})


def labelled_share_results() -> pd.DataFrame:
    rows = []
    for share, f1s in ((0.1, [40.0, 42.0]), (0.5, [60.0, 64.0]), (1.0, [70.0, 71.0, 72.0])):
        rows += [result_row("supervised", share, f1) for f1 in f1s]
    for share, f1s in ((0.1, [50.0, 54.0]), (0.5, [66.0])):
        rows += [result_row("semi-supervised", share, f1) for f1 in f1s]
    # Other latent sizes and failed trials must not move the supervised line.
    rows.append(result_row("supervised", 1.0, 10.0, latent_size=512))
    rows.append(result_row("supervised", 1.0, np.nan, status="failed"))
    return frame(rows)


def test_labelled_share_lines_equal_means() -> None:
    ax = figures.plot_labelled_share(new_axis(), labelled_share_results(), T15)
    supervised, semi = ax.lines
    assert supervised.get_label() == "supervised"
    assert xy(supervised) == ([10.0, 50.0, 100.0], pytest.approx([41.0, 62.0, 71.0]))
    assert semi.get_label() == "semi-supervised"
    assert xy(semi) == ([10.0, 50.0], pytest.approx([52.0, 66.0]))


def test_labelled_share_band_is_one_std() -> None:
    ax = figures.plot_labelled_share(new_axis(), labelled_share_results(), T15)
    spread = float(np.std([60.0, 64.0], ddof=1))
    assert band_edges(ax, 0, 50.0) == pytest.approx([62.0 - spread, 62.0 + spread])
    # A point with one seed has no band: both edges sit on the mean.
    assert band_edges(ax, 1, 50.0) == [66.0]


def test_labelled_share_labels_and_colours() -> None:
    ax = figures.plot_labelled_share(new_axis(), labelled_share_results(), T15)
    assert ax.get_xlabel() == "labelled share of the training set (%)"
    assert ax.get_ylabel() == "test F1 (%)"
    assert ax.get_title() == "Twitter-2015"
    colours = {line.get_color() for line in ax.lines}
    assert colours <= set(figures.OKABE_ITO)
    assert len(colours) == 2


def latent_results() -> pd.DataFrame:
    rows = []
    for size, f1 in zip((64, 128, 256, 512, 1024), (75.0, 74.0, 73.0, 72.0, 70.0), strict=True):
        rows += [result_row("supervised", 1.0, f1 + d, latent_size=size) for d in (-1.0, 1.0)]
    # A point of the labelled-share curve (10% of the training set) must be left out.
    rows.append(result_row("supervised", 0.1, 20.0, latent_size=64))
    rows.append(result_row("supervised", 1.0, 60.0, latent_size=None, method="bert"))
    return frame(rows)


def test_latent_size_line_and_log2_axis() -> None:
    ax = figures.plot_latent_size(new_axis(), latent_results(), T15)
    (line,) = ax.lines
    assert xy(line) == ([64.0, 128.0, 256.0, 512.0, 1024.0], [75.0, 74.0, 73.0, 72.0, 70.0])
    assert ax.get_xscale() == "log"
    assert getattr(ax.xaxis.get_transform(), "base", None) == 2
    assert [t.get_text() for t in ax.get_xticklabels()] == ["64", "128", "256", "512", "1024"]
    assert ax.get_xlabel() == "latent dimension"
    assert ax.get_ylabel() == "test F1 (%)"


def test_plot_without_rows_raises() -> None:
    results = frame([result_row("supervised", 1.0, 70.0, dataset="twitter2017")])
    with pytest.raises(ValueError, match="nothing to plot"):
        figures.plot_labelled_share(new_axis(), results, T15)


def test_dev_curves_mean_per_epoch() -> None:
    results = frame(
        [
            result_row("supervised", 1.0, 70.0, trial_key="a"),
            result_row("supervised", 1.0, 71.0, trial_key="b"),
            result_row("semi-supervised", 0.025, 50.0, trial_key="c"),
        ]
    )
    epochs = pd.DataFrame(
        {
            "trial_key": ["a", "a", "b", "b", "b", "c"],
            "method": ["smvae"] * 6,
            "epoch": [1, 2, 1, 2, 3, 1],
            "dev_f1": [10.0, 20.0, 30.0, 40.0, 50.0, 99.0],
        }
    )
    ax = figures.plot_dev_curves(new_axis(), epochs, results, T15, "supervised")
    (line,) = ax.lines
    assert xy(line) == ([1.0, 2.0, 3.0], [20.0, 30.0, 50.0])
    assert ax.get_xlabel() == "epoch"
    assert ax.get_ylabel() == "development F1 (%)"
