"""Figures 3 and 4 of Zhou et al. (EMNLP 2022) and development-F1 curves, from results.

Each ``*_series`` function is pure: it turns a results frame (``results.parquet``
schema) into the points to draw. Each ``plot_*`` function draws those points on the
axis it is given and returns that axis. It never saves or shows, because the caller owns
the figure; :mod:`analysis.report` saves with the Agg canvas. Lines show the mean over seeds
and a band of one sample standard deviation (no band where a point has one seed).
Colours come from the Okabe-Ito palette, which stays distinct under the common forms
of colour blindness.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.ticker import NullLocator

from analysis.selection import (
    SEMI_SUPERVISED,
    SUPERVISED,
    finished_rows,
    require_columns,
    select_latent,
    select_semi_supervised,
    select_supervised,
)
from smvae.datasets import DATASETS

# Okabe & Ito, "Color Universal Design" (2008).
OKABE_ITO = (
    "#E69F00",  # orange
    "#56B4E9",  # sky blue
    "#009E73",  # bluish green
    "#F0E442",  # yellow
    "#0072B2",  # blue
    "#D55E00",  # vermillion
    "#CC79A7",  # reddish purple
    "#000000",  # black
)
SETTING_STYLES = {
    SUPERVISED: {"color": OKABE_ITO[4], "marker": "o", "linestyle": "-"},
    SEMI_SUPERVISED: {"color": OKABE_ITO[5], "marker": "s", "linestyle": "--"},
}
BAND_ALPHA = 0.2
BAND_LEGEND_TITLE = "mean over seeds, band: ±1 s.d."
SERIES_COLUMNS = ["line", "x", "mean", "std", "n"]

F1_LABEL = "test F1 (%)"
DEV_F1_LABEL = "development F1 (%)"
SHARE_LABEL = "labelled share of the training set (%)"
LATENT_LABEL = "latent dimension"
EPOCH_LABEL = "epoch"

SMVAE = "smvae"


def _aggregate(rows: pd.DataFrame, x: pd.Series, value: str, by: str) -> pd.DataFrame:
    """Return mean, sample std and count of ``value`` per (``by``, x); ``by`` becomes ``line``."""
    grouped = rows.assign(x=x.to_numpy(dtype=float)).groupby([by, "x"])[value]
    series = grouped.agg(mean="mean", std=lambda v: v.std(ddof=1), n="count").reset_index()
    return series.rename(columns={by: "line"}).sort_values(["line", "x"], ignore_index=True)


def _method_rows(results: pd.DataFrame, dataset: str, method: str) -> pd.DataFrame:
    require_columns(results, ("method", "dataset", "setting", "status", "latent_size", "test_f1"))
    rows = finished_rows(results)
    return rows[(rows["method"] == method) & (rows["dataset"] == dataset)]


def labelled_share_series(results: pd.DataFrame, dataset: str, method: str = SMVAE) -> pd.DataFrame:
    """Return test F1 against labelled share for one method and dataset, per setting.

    Rows: finished rows of ``method`` on ``dataset``, at one latent size per setting
    (100 when present, else the most common). Output columns: ``line`` (the setting),
    ``x`` (labelled share in percent), ``mean``, ``std`` (ddof=1) and ``n`` of ``test_f1``.
    """
    rows = _method_rows(results, dataset, method)
    parts = []
    for setting in (SUPERVISED, SEMI_SUPERVISED):
        selected, _ = select_latent(rows[rows["setting"] == setting])
        if not selected.empty:
            parts.append(
                _aggregate(selected, 100 * selected["labelled_share"], "test_f1", "setting")
            )
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=SERIES_COLUMNS)


def latent_size_series(results: pd.DataFrame, dataset: str, method: str = SMVAE) -> pd.DataFrame:
    """Return test F1 against latent dimension for one method and dataset, per setting.

    Rows: finished rows of ``method`` on ``dataset`` with a latent size, at the full
    training set when supervised and at 100 labelled tweets when semi-supervised (else
    the most common configuration, as in the tables). Output columns: ``line`` (the
    setting), ``x`` (latent dimension), ``mean``, ``std`` (ddof=1) and ``n`` of ``test_f1``.
    """
    rows = _method_rows(results, dataset, method)
    rows = rows[rows["latent_size"].notna()]
    parts = []
    for selected, _ in (select_supervised(rows), select_semi_supervised(rows)):
        if not selected.empty:
            parts.append(_aggregate(selected, selected["latent_size"], "test_f1", "setting"))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=SERIES_COLUMNS)


def dev_curve_series(
    epochs: pd.DataFrame, results: pd.DataFrame, dataset: str, setting: str
) -> pd.DataFrame:
    """Return mean development F1 per epoch for every method on one dataset and setting.

    ``epochs`` has the ``epochs.parquet`` schema; only epochs of finished trials in
    ``results`` count. Output columns: ``line`` (the method name), ``x``
    (epoch), ``mean``, ``std`` and ``n`` (trials that reached that epoch).
    """
    trials = finished_rows(results)
    trials = trials[(trials["dataset"] == dataset) & (trials["setting"] == setting)]
    rows = epochs[epochs["trial_key"].isin(trials["trial_key"])].dropna(subset=["dev_f1"])
    if rows.empty:
        return pd.DataFrame(columns=SERIES_COLUMNS)
    return _aggregate(rows, rows["epoch"], "dev_f1", by="method")


def _draw_series(ax: Axes, series: pd.DataFrame, styles: dict[str, dict[str, str]]) -> None:
    """Draw one mean line and one +-1 std band per value of ``series["line"]``."""
    if series.empty:
        raise ValueError("nothing to plot: the series has no points")
    for index, (name, part) in enumerate(series.groupby("line", sort=False)):
        style = styles.get(str(name), {"color": OKABE_ITO[index % len(OKABE_ITO)], "marker": "o"})
        x = part["x"].to_numpy(dtype=float)
        mean = part["mean"].to_numpy(dtype=float)
        spread = np.nan_to_num(part["std"].to_numpy(dtype=float))
        ax.plot(
            x,
            mean,
            label=str(name),
            color=style["color"],
            marker=style["marker"],
            linestyle=style.get("linestyle", "-"),
        )
        ax.fill_between(x, mean - spread, mean + spread, color=style["color"], alpha=BAND_ALPHA)
    ax.legend(title=BAND_LEGEND_TITLE, title_fontsize="small")
    ax.grid(True, alpha=0.3)


def plot_labelled_share(ax: Axes, results: pd.DataFrame, dataset: str) -> Axes:
    """Plot SMVAE test F1 against labelled share, supervised and semi-supervised (Figure 3).

    Raises:
        ValueError: ``results`` has no finished SMVAE row on ``dataset``.
    """
    series = labelled_share_series(results, dataset)
    _draw_series(ax, _in_setting_order(series), SETTING_STYLES)
    ax.set_xlabel(SHARE_LABEL)
    ax.set_ylabel(F1_LABEL)
    ax.set_title(DATASETS[dataset].display_name)
    return ax


def plot_latent_size(ax: Axes, results: pd.DataFrame, dataset: str) -> Axes:
    """Plot SMVAE test F1 against latent dimension on a log2 axis (Figure 4; 64 to 1024).

    Ticks sit at the latent sizes that were run.

    Raises:
        ValueError: ``results`` has no finished SMVAE row with a latent size on ``dataset``.
    """
    series = latent_size_series(results, dataset)
    _draw_series(ax, _in_setting_order(series), SETTING_STYLES)
    ax.set_xscale("log", base=2)
    ticks = sorted(int(x) for x in series["x"].unique())
    ax.set_xticks(ticks, labels=[str(t) for t in ticks])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel(LATENT_LABEL)
    ax.set_ylabel(F1_LABEL)
    ax.set_title(DATASETS[dataset].display_name)
    return ax


def plot_dev_curves(
    ax: Axes, epochs: pd.DataFrame, results: pd.DataFrame, dataset: str, setting: str
) -> Axes:
    """Plot mean development F1 against epoch, one line per method.

    Raises:
        ValueError: no finished trial on ``dataset`` in ``setting`` has epoch rows.
    """
    series = dev_curve_series(epochs, results, dataset, setting)
    _draw_series(ax, series, {})
    ax.set_xlabel(EPOCH_LABEL)
    ax.set_ylabel(DEV_F1_LABEL)
    ax.set_title(f"{DATASETS[dataset].display_name}, {setting}")
    return ax


def _in_setting_order(series: pd.DataFrame) -> pd.DataFrame:
    """Sort so that the supervised line is drawn (and listed in the legend) first."""
    rank = series["line"].map({SUPERVISED: 0, SEMI_SUPERVISED: 1})
    return series.assign(rank=rank).sort_values(["rank", "x"], kind="stable").drop(columns="rank")
