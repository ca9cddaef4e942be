"""Which finished trials belong to a table or figure.

Several experiments write rows of the same method and setting: the labelled-share curve
runs SMVAE at many labelled counts and the latent-size curve at many latent dimensions.
A table built from all run folders together must therefore pick one configuration per
setting. By default it picks the setting of Zhou et al. (EMNLP 2022, Section 4.1): 100
labelled tweets, latent dimension 100 and the full training set when supervised. Where
that value was not run, it picks the most common value, or the largest labelled share
when supervised. Each selector returns the rows and the footnotes that state where the
choice differs from the paper.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

PAPER_LABELLED_COUNT = 100
PAPER_LATENT_SIZE = 100
FULL_TRAINING_SHARE = 1.0

FINISHED = "finished"
SUPERVISED = "supervised"
SEMI_SUPERVISED = "semi-supervised"


def finished_rows(results: pd.DataFrame) -> pd.DataFrame:
    """Return the rows with ``status == "finished"`` (failed rows have null scores)."""
    return results[results["status"] == FINISHED]


def require_columns(results: pd.DataFrame, columns: Iterable[str]) -> None:
    """Raise ValueError naming the columns of the results schema that ``results`` lacks."""
    missing = [c for c in columns if c not in results.columns]
    if missing:
        raise ValueError(
            f"results frame lacks columns {missing}; expected the results.parquet schema"
        )


def choose_value(values: pd.Series, preferred: float, fallback: str = "common") -> float | None:
    """Pick ``preferred`` when present, else the most common value (``"common"``, ties to the
    smallest) or the maximum (``"max"``); None when ``values`` has no non-null entry."""
    present = values.dropna().astype(float)
    if present.empty:
        return None
    if np.isclose(present, preferred).any():
        return preferred
    if fallback == "max":
        return float(present.max())
    counts = present.value_counts()
    return float(counts[counts == counts.max()].index.min())


def select_latent(
    rows: pd.DataFrame, latent_size: int | None = None
) -> tuple[pd.DataFrame, list[str]]:
    """Keep rows without a latent size and rows at one latent size.

    The size is ``latent_size`` when given, else 100 when present, else the most common.
    """
    sizes = rows["latent_size"].astype("Float64")
    chosen = latent_size if latent_size is not None else choose_value(sizes, PAPER_LATENT_SIZE)
    if chosen is None:
        return rows, []
    keep = sizes.isna() | sizes.eq(chosen).fillna(False)
    notes = []
    if chosen != PAPER_LATENT_SIZE:
        notes.append(f"Latent dimension {int(chosen)}; the paper uses {PAPER_LATENT_SIZE}.")
    return rows[keep.to_numpy(dtype=bool)], notes


def select_semi_supervised(
    results: pd.DataFrame, labelled_count: int | None = None
) -> tuple[pd.DataFrame, list[str]]:
    """Return finished semi-supervised rows at one labelled count (default: 100 if present)."""
    rows = finished_rows(results)
    rows = rows[rows["setting"] == SEMI_SUPERVISED]
    chosen = labelled_count
    if chosen is None:
        value = choose_value(rows["labelled_count"], PAPER_LABELLED_COUNT)
        chosen = None if value is None else int(value)
    if chosen is None:
        return rows, []
    rows = rows[rows["labelled_count"] == chosen]
    if chosen == PAPER_LABELLED_COUNT:
        return rows, []
    return rows, [
        f"Semi-supervised rows use {chosen} labelled tweets; the paper uses {PAPER_LABELLED_COUNT}."
    ]


def select_supervised(
    results: pd.DataFrame, labelled_share: float | None = None
) -> tuple[pd.DataFrame, list[str]]:
    """Return finished supervised rows at one labelled share (default: the full training set
    if present, else the largest share)."""
    rows = finished_rows(results)
    rows = rows[rows["setting"] == SUPERVISED]
    chosen = labelled_share
    if chosen is None:
        chosen = choose_value(rows["labelled_share"], FULL_TRAINING_SHARE, "max")
    if chosen is None:
        return rows, []
    rows = rows[np.isclose(rows["labelled_share"].astype(float), chosen)]
    if np.isclose(chosen, FULL_TRAINING_SHARE):
        return rows, []
    return rows, [
        f"Supervised rows use {100 * chosen:g}% of the training set; the paper uses all of it."
    ]
