"""Tables 1-4 of Zhou et al. (EMNLP 2022) from the results table, beside the published values.

Input of every builder: a results frame with the columns of ``results.parquet`` (one row
per trial; see the orchestrator's result store). Only rows with ``status == "finished"``
count. Scores are percentages. Each builder returns a :class:`~analysis.render.ResultTable`
whose ``cells`` schema its docstring states; :mod:`analysis.render` writes it as Markdown,
LaTeX or CSV.

Measured cells are the mean and sample standard deviation (ddof=1) over seeds, with the
number of finished trials ``n``. In each column the best measured mean is marked, and it
gets ``*`` when it beats the runner-up with p <= 0.05 under Welch's t-test over seeds
(``scipy.stats.ttest_ind(equal_var=False)``; no test when either side has fewer than two
seeds). Methods that the paper reports but that have no measured rows appear with their
published values only.

``cells`` of the method tables (Tables 2-4) has one row per (row name, dataset, metric):
``block`` (``all``, or the setting in the ablation table), ``group`` (Text, Multimodal,
or the setting), ``label`` (row name), ``method`` (this project's name, None for rows
only the paper reports), ``dataset``, ``metric`` (PER, LOC, ORG, MISC, P, R, F1), ``n``
(finished trials), ``mean`` and ``std`` (percent, ddof=1), ``best`` (bool),
``significant`` (bool), ``p_value`` (Welch's test of the best against the runner-up, on
best cells only), ``published`` (percent or NaN), ``published_significant`` (the paper's
``*``) and ``note`` (footnote marker).
"""

from __future__ import annotations

import logging
import string
from collections.abc import Hashable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from analysis import published as pub
from analysis.render import ResultTable, to_csv, to_latex, to_markdown, write_table
from analysis.selection import (
    SEMI_SUPERVISED,
    SUPERVISED,
    finished_rows,
    require_columns,
    select_latent,
    select_semi_supervised,
    select_supervised,
)
from smvae.conll import read_tweets
from smvae.datasets import DATASETS, SPLITS, sha256_file, split_path
from smvae.statistics import split_statistics

__all__ = [
    "ResultTable",
    "ablation_table",
    "dataset_statistics_table",
    "finished_rows",
    "semi_supervised_table",
    "summarise",
    "supervised_table",
    "to_csv",
    "to_latex",
    "to_markdown",
    "welch_p_value",
    "write_table",
]

logger = logging.getLogger(__name__)

SIGNIFICANCE_LEVEL = 0.05
MIN_SEEDS_FOR_TEST = 2

NO_IMAGES = "none"

# Methods that never read images; image footnotes apply to the other methods only.
TEXT_ONLY_METHODS = frozenset({"bert", "bert-crf", "bert-bilstm-crf", "st", "em", "seqvat"})
ABLATION_METHODS = ("smvae", "smvae-no-mvae")

SCORE_COLUMNS = (
    "dev_precision",
    "dev_recall",
    "dev_f1",
    "test_precision",
    "test_recall",
    "test_f1",
    "test_f1_PER",
    "test_f1_LOC",
    "test_f1_ORG",
    "test_f1_MISC",
    "dev_f1_PER",
    "dev_f1_LOC",
    "dev_f1_ORG",
    "dev_f1_MISC",
    "test_macro_f1",
    "test_strict_precision",
    "test_strict_recall",
    "test_strict_f1",
)

_TABLE_COLUMNS = (
    "method",
    "setting",
    "dataset",
    "status",
    "images",
    "image_coverage",
    "encoder",
    "encoder_finetune",
    *(pub.RESULT_COLUMNS[metric] for metric in pub.ALL_METRICS),
)
_LABEL_COLUMNS = ("Group", "Method", "Source")
_ALL_ROWS = "all"

SIGNIFICANCE_NOTE = (
    "Measured cells: mean ± sample std over seeds (n = finished trials). Bold: best measured "
    "mean in its column; * after it: it beats the runner-up with p <= 0.05 under Welch's "
    "t-test over seeds. Paper rows: published values, * is the paper's significance mark."
)


def summarise(
    results: pd.DataFrame, by: Sequence[str], metrics: Iterable[str] | None = None
) -> pd.DataFrame:
    """Summarise finished trials per group.

    Input: a results frame. Output: one row per group, with the ``by`` columns, ``n``
    (finished trials, one seed each), then ``<metric>_mean`` and ``<metric>_std``
    (sample std, ddof=1, NaN when n == 1) for each metric, by default every score column
    present in the input.
    """
    rows = finished_rows(results)
    requested = list(metrics) if metrics is not None else list(SCORE_COLUMNS)
    present = [m for m in requested if m in rows.columns]
    grouped = rows.groupby(list(by), dropna=False, sort=True)
    parts: list[pd.Series] = [grouped.size().rename("n")]
    for metric in present:
        parts.append(grouped[metric].mean().rename(f"{metric}_mean"))
        parts.append(grouped[metric].std(ddof=1).rename(f"{metric}_std"))
    return pd.concat(parts, axis=1).reset_index()


def welch_p_value(
    first: Sequence[float] | np.ndarray, second: Sequence[float] | np.ndarray
) -> float | None:
    """Two-sided p-value of Welch's t-test, or None with fewer than 2 values on a side.

    Returns None as well when the test is undefined (both samples without variance).
    """
    if min(len(first), len(second)) < MIN_SEEDS_FOR_TEST:
        return None
    result = stats.ttest_ind(first, second, equal_var=False)
    p_value = float(result.pvalue)
    return None if np.isnan(p_value) else p_value


def _group_of(method: str) -> str:
    return pub.TEXT_GROUP if method in TEXT_ONLY_METHODS else pub.MULTIMODAL_GROUP


def _table_lines(
    published: pd.DataFrame, rows: pd.DataFrame, blocks: Sequence[str]
) -> pd.DataFrame:
    """Return one line per (block, row name) in print order.

    Output columns: ``block``, ``group``, ``label``, ``method`` (None for paper-only rows),
    ``order``. Published rows keep the paper's order; measured methods that the paper
    does not report follow the published rows of their group.
    """
    keys = ["block", "group", "label", "method", "order"]
    lines = published.drop_duplicates(["block", "label"])[keys]
    known = set(zip(lines["block"], lines["method"], strict=True))
    extra = []
    for block, method in rows[["block", "method"]].drop_duplicates().itertuples(index=False):
        if (block, method) not in known:
            label = pub.PAPER_NAMES.get(method, method)
            extra.append(
                {"block": block, "group": _group_of(method), "label": label, "method": method}
            )
    if extra:
        extras = pd.DataFrame(extra).sort_values("label")
        extras["order"] = np.arange(len(extras)) + len(pub.published_rows())
        lines = pd.concat([lines, extras], ignore_index=True)
    lines = lines.assign(
        block_rank=lines["block"].map({b: i for i, b in enumerate(blocks)}),
        group_rank=(lines["group"] != pub.TEXT_GROUP).astype(int),
    )
    lines = lines.sort_values(["block_rank", "group_rank", "order"], kind="stable")
    return lines.drop(columns=["block_rank", "group_rank"]).reset_index(drop=True)


Samples = dict[tuple[str, str, str, str], np.ndarray]


def _measured_cells(rows: pd.DataFrame, metrics: Sequence[str]) -> tuple[pd.DataFrame, Samples]:
    """Return mean, std (ddof=1) and n per (block, method, dataset, metric), and the samples."""
    records = []
    samples: Samples = {}
    for keys, group in rows.groupby(["block", "method", "dataset"], sort=False):
        block, method, dataset = (str(key) for key in keys)
        for metric in metrics:
            values = group[pub.RESULT_COLUMNS[metric]].dropna().to_numpy(dtype=float)
            samples[(block, method, dataset, metric)] = values
            records.append(
                {
                    "block": block,
                    "method": method,
                    "dataset": dataset,
                    "metric": metric,
                    "mean": values.mean() if len(values) else np.nan,
                    "std": values.std(ddof=1) if len(values) > 1 else np.nan,
                    "n": len(values),
                }
            )
    columns = ["block", "method", "dataset", "metric", "mean", "std", "n"]
    return pd.DataFrame.from_records(records, columns=columns), samples


def _mark_best(cells: pd.DataFrame, samples: Samples) -> pd.DataFrame:
    """Mark the best measured mean per (block, dataset, metric) and test it against the runner-up.

    Ties for the best mean are all marked best and none is tested.
    """
    cells = cells.assign(best=False, significant=False, p_value=np.nan)
    measured = cells[cells["n"] > 0]
    for keys, column in measured.groupby(["block", "dataset", "metric"]):
        block, dataset, metric = (str(key) for key in keys)
        ranked = column.sort_values("mean", ascending=False)
        top = ranked["mean"].iloc[0]
        best_index = ranked.index[ranked["mean"] == top]
        cells.loc[best_index, "best"] = True
        if len(best_index) > 1 or len(ranked) < 2:
            continue
        best, runner_up = ranked.iloc[0], ranked.iloc[1]
        p_value = welch_p_value(
            samples[(block, str(best["method"]), dataset, metric)],
            samples[(block, str(runner_up["method"]), dataset, metric)],
        )
        if p_value is not None:
            cells.loc[best_index, "p_value"] = p_value
            cells.loc[best_index, "significant"] = p_value <= SIGNIFICANCE_LEVEL
    return cells


def _coverage_text(coverage: pd.Series) -> str:
    low, high = float(coverage.min()), float(coverage.max())
    return f"{100 * low:.1f}%" if np.isclose(low, high) else f"{100 * low:.1f}-{100 * high:.1f}%"


def _dataset_notes(method: str, runs: pd.DataFrame, max_seeds: int) -> list[str]:
    """Return the caveats of one method's runs on one dataset."""
    notes = []
    if method not in TEXT_ONLY_METHODS:
        text_only = int((runs["images"] == NO_IMAGES).sum())
        if text_only:
            notes.append(f"{text_only} of {len(runs)} runs text-only (images = none)")
        with_images = runs[runs["images"] != NO_IMAGES]
        partial = with_images[with_images["image_coverage"] < 1.0]
        if len(partial):
            coverage = _coverage_text(partial["image_coverage"])
            notes.append(f"{len(partial)} of {len(runs)} runs with image coverage {coverage}")
    if len(runs) < max_seeds:
        seeds = "1 seed" if len(runs) == 1 else f"{len(runs)} seeds"
        notes.append(f"{seeds} where other rows have {max_seeds}")
    return notes


def _row_notes(rows: pd.DataFrame, multiple_blocks: bool) -> dict[tuple[str, str], str]:
    """Return one footnote text per (block, method) that has caveats, keyed by the pair."""
    if rows.empty:
        return {}
    max_seeds = int(rows.groupby(["block", "method", "dataset"]).size().max())
    notes = {}
    for keys, runs in rows.groupby(["block", "method"], sort=False):
        block, method = (str(key) for key in keys)
        parts = []
        for dataset, dataset_runs in runs.groupby("dataset", sort=True):
            caveats = _dataset_notes(method, dataset_runs, max_seeds)
            if caveats:
                parts.append(f"{DATASETS[str(dataset)].display_name}: {'; '.join(caveats)}")
        if parts:
            label = pub.PAPER_NAMES.get(method, method)
            where = f" ({block})" if multiple_blocks else ""
            notes[(block, method)] = f"{label}{where}: {'. '.join(parts)}."
    return notes


def _configuration_note(rows: pd.DataFrame) -> str:
    """Describe the encoders and image features the measured rows used."""
    encoders = sorted(
        {
            f"{encoder} ({'fine-tuned' if finetune else 'frozen'})"
            for encoder, finetune in zip(rows["encoder"], rows["encoder_finetune"], strict=True)
        }
    )
    images = sorted(set(rows["images"]))
    return f"Measured with text encoder {', '.join(encoders)}; image features {', '.join(images)}."


Cell = dict[Hashable, Any]


def _measured_text(cell: Cell) -> str:
    if cell["n"] == 0 or pd.isna(cell["mean"]):
        return ""
    spread = "" if pd.isna(cell["std"]) else f" ± {cell['std']:.2f}"
    mark = "*" if cell["significant"] else ""
    return f"{cell['mean']:.2f}{spread} ({int(cell['n'])}){mark}"


def _published_text(cell: Cell) -> str:
    if pd.isna(cell["published"]):
        return ""
    return f"{cell['published']:.2f}{'*' if cell['published_significant'] else ''}"


def _display_columns(metrics: Sequence[str]) -> pd.MultiIndex:
    keys = [("", name) for name in _LABEL_COLUMNS]
    keys += [(DATASETS[d].display_name, m) for d in pub.DATASET_NAMES for m in metrics]
    return pd.MultiIndex.from_tuples(keys)


def _display(
    lines: pd.DataFrame,
    cells: pd.DataFrame,
    metrics: Sequence[str],
    markers: dict[tuple[str, str], str],
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Lay the cells out as printed: a measured line and a paper line per row name.

    The group name is printed on the first line of each group only.
    """
    cell_of = {
        (c["block"], c["label"], c["dataset"], c["metric"]): c for c in cells.to_dict("records")
    }
    keys = [(d, m) for d in pub.DATASET_NAMES for m in metrics]
    texts: list[list[str]] = []
    bolds: list[list[bool]] = []
    previous_group: tuple[str, str] | None = None
    for line in lines.to_dict("records"):
        row_cells = [cell_of[(line["block"], line["label"], d, m)] for d, m in keys]
        group_text = line["group"] if (line["block"], line["group"]) != previous_group else ""
        previous_group = (line["block"], line["group"])
        if any(cell["n"] > 0 for cell in row_cells):
            marker = markers.get((line["block"], line["method"]), "")
            label = f"{line['label']} [{marker}]" if marker else line["label"]
            texts.append([group_text, label, "measured"] + [_measured_text(c) for c in row_cells])
            bolds.append([False] * 3 + [bool(c["best"]) for c in row_cells])
            group_text = ""
        if any(pd.notna(cell["published"]) for cell in row_cells):
            texts.append(
                [group_text, line["label"], "paper"] + [_published_text(c) for c in row_cells]
            )
            bolds.append([False] * (3 + len(keys)))
    columns = _display_columns(metrics)
    return pd.DataFrame(texts, columns=columns), pd.DataFrame(bolds, columns=columns)


_CELL_COLUMNS = [
    "block",
    "group",
    "label",
    "method",
    "dataset",
    "metric",
    "n",
    "mean",
    "std",
    "best",
    "significant",
    "p_value",
    "published",
    "published_significant",
    "note",
]


def _published_block(table: str, block_by_setting: bool) -> pd.DataFrame:
    published = pub.published_scores()
    published = published[published["table"] == table]
    return published.assign(block=published["setting"] if block_by_setting else _ALL_ROWS)


def _inconsistency_notes(table: str) -> list[str]:
    return [
        f"Paper, {item.paper_label} on {DATASETS[item.dataset].display_name}: {item.problem}."
        for item in pub.PAPER_INCONSISTENCIES
        if item.table == table
    ]


def _cells(
    lines: pd.DataFrame, rows: pd.DataFrame, published: pd.DataFrame, metrics: Sequence[str]
) -> pd.DataFrame:
    """Join measured and published values on the grid of lines x datasets x metrics."""
    measured, samples = _measured_cells(rows, metrics)
    grid = pd.DataFrame(
        [(d, m) for d in pub.DATASET_NAMES for m in metrics], columns=["dataset", "metric"]
    )
    cells = lines.merge(grid, how="cross")
    cells = cells.merge(measured, on=["block", "method", "dataset", "metric"], how="left")
    cells["n"] = cells["n"].fillna(0).astype(int)
    paper = published[["block", "label", "dataset", "metric", "value", "significant"]].rename(
        columns={"value": "published", "significant": "published_significant"}
    )
    cells = cells.merge(paper, on=["block", "label", "dataset", "metric"], how="left")
    cells["published_significant"] = cells["published_significant"].fillna(False).astype(bool)
    return _mark_best(cells, samples)


def _marker(index: int) -> str:
    """Return footnote marker ``index``: a to z, then aa, ab and so on."""
    letters = string.ascii_lowercase
    if index < len(letters):
        return letters[index]
    return letters[index // len(letters) - 1] + letters[index % len(letters)]


def _method_table(
    name: str,
    caption: str,
    rows: pd.DataFrame,
    published: pd.DataFrame,
    blocks: Sequence[str],
    metrics: Sequence[str],
    notes: Sequence[str],
) -> ResultTable:
    """Build a per-method table; tables with several blocks (Table 4) use the block as group."""
    lines = _table_lines(published, rows, blocks)
    if len(blocks) > 1:
        lines["group"] = lines["block"].str.capitalize()
    cells = _cells(lines, rows, published, metrics)

    row_notes = _row_notes(rows, multiple_blocks=len(blocks) > 1)
    markers = {key: _marker(index) for index, key in enumerate(row_notes)}
    cells["note"] = [
        markers.get((block, method), "")
        for block, method in zip(cells["block"], cells["method"], strict=True)
    ]
    display, bold = _display(lines, cells, metrics, markers)

    footnotes = [SIGNIFICANCE_NOTE, *notes]
    if not rows.empty:
        footnotes.append(_configuration_note(rows))
    footnotes += [f"[{markers[key]}] {text}" for key, text in row_notes.items()]
    measured_labels = set(cells.loc[cells["n"] > 0, "label"])
    paper_only = [label for label in dict.fromkeys(lines["label"]) if label not in measured_labels]
    if paper_only:
        footnotes.append(f"Not run here (paper values only): {', '.join(paper_only)}.")
    footnotes += _inconsistency_notes(str(published["table"].iloc[0]))
    return ResultTable(
        name=name,
        caption=caption,
        cells=cells[_CELL_COLUMNS].reset_index(drop=True),
        display=display,
        bold=bold,
        footnotes=tuple(footnotes),
        trials=len(rows),
    )


def semi_supervised_table(
    results: pd.DataFrame, labelled_count: int | None = None, latent_size: int | None = None
) -> ResultTable:
    """Build Table 2: semi-supervised methods, per-type F1 and overall P, R, F1.

    Uses finished rows with ``setting == "semi-supervised"`` except the ablation method
    ``smvae-no-mvae``, at one labelled count (default: 100 as in the paper when present,
    else the most common) and, for methods with a latent space, one latent size
    (default: 100 when present, else the most common). ``cells`` follows the method-table
    schema of this module's docstring.
    """
    require_columns(results, (*_TABLE_COLUMNS, "labelled_count", "latent_size"))
    semi, notes = select_semi_supervised(results, labelled_count)
    rows, latent_notes = select_latent(semi, latent_size)
    notes += latent_notes
    rows = rows[rows["method"] != "smvae-no-mvae"].assign(block=_ALL_ROWS)
    published = _published_block(pub.TABLE_SEMI_SUPERVISED, block_by_setting=False)
    caption = "Semi-supervised MNER on Twitter-2015 and Twitter-2017 (test set, percent)."
    return _method_table(
        "semi_supervised", caption, rows, published, [_ALL_ROWS], pub.ALL_METRICS, notes
    )


def supervised_table(
    results: pd.DataFrame, labelled_share: float | None = None, latent_size: int | None = None
) -> ResultTable:
    """Build Table 3: supervised methods, per-type F1 and overall P, R, F1.

    Uses finished rows with ``setting == "supervised"`` except ``smvae-no-mvae``, at one
    labelled share (default: the full training set when present, else the largest share)
    and one latent size (default: 100 when present, else the most common). ``cells``
    follows the method-table schema of this module's docstring.
    """
    require_columns(results, (*_TABLE_COLUMNS, "labelled_share", "latent_size"))
    full, notes = select_supervised(results, labelled_share)
    rows, latent_notes = select_latent(full, latent_size)
    notes += latent_notes
    rows = rows[rows["method"] != "smvae-no-mvae"].assign(block=_ALL_ROWS)
    published = _published_block(pub.TABLE_SUPERVISED, block_by_setting=False)
    caption = "Supervised MNER on Twitter-2015 and Twitter-2017 (test set, percent)."
    return _method_table(
        "supervised", caption, rows, published, [_ALL_ROWS], pub.ALL_METRICS, notes
    )


def ablation_table(
    results: pd.DataFrame,
    labelled_count: int | None = None,
    labelled_share: float | None = None,
    latent_size: int | None = None,
) -> ResultTable:
    """Build Table 4: SMVAE with and without the multimodal VAE, overall P, R, F1.

    One block per setting; rows are selected as in :func:`supervised_table` and
    :func:`semi_supervised_table`, restricted to ``smvae`` and ``smvae-no-mvae``. The best
    mark and the test compare the two methods within a block. ``cells`` follows the
    method-table schema of this module's docstring.
    """
    require_columns(results, (*_TABLE_COLUMNS, "labelled_count", "labelled_share", "latent_size"))
    full, full_notes = select_supervised(results, labelled_share)
    semi, semi_notes = select_semi_supervised(results, labelled_count)
    rows = pd.concat([full.assign(block=SUPERVISED), semi.assign(block=SEMI_SUPERVISED)])
    rows, latent_notes = select_latent(rows, latent_size)
    rows = rows[rows["method"].isin(ABLATION_METHODS)]
    published = _published_block(pub.TABLE_ABLATION, block_by_setting=True)
    caption = "Ablation of the multimodal VAE (MVAE) of SMVAE (test set, percent)."
    blocks = [SUPERVISED, SEMI_SUPERVISED]
    notes = [*full_notes, *semi_notes, *latent_notes]
    return _method_table("ablation", caption, rows, published, blocks, pub.OVERALL_METRICS, notes)


def count_dataset_statistics(data_dir: Path) -> pd.DataFrame:
    """Count tweets and entities per type in every split of every dataset found in ``data_dir``.

    Counts come from :func:`smvae.statistics.split_statistics`: entities are read with
    the lenient rule (an orphan ``I-`` tag opens an entity) after the reader maps
    Twitter-2015's ``OTHER`` to ``MISC``. Output columns: ``dataset``, ``split``, ``item``
    (``tweets``, PER, LOC, ORG, MISC), ``value`` (int) and ``checksum_ok`` (whether the
    file is the published release). Datasets whose files are missing are left out.
    """
    records = []
    for name, info in DATASETS.items():
        paths = {split: split_path(name, split, data_dir) for split in SPLITS}
        missing = [str(path) for path in paths.values() if not path.is_file()]
        if missing:
            logger.info("dataset %s left out of the statistics: missing %s", name, missing)
            continue
        for split, path in paths.items():
            tweets = read_tweets(path, info.type_aliases)
            counts = split_statistics(
                split, path, tweets, sha256_file(path), info.split(split).sha256
            )
            items = {"tweets": counts.tweets, **{k: counts.entities[k] for k in pub.TYPE_METRICS}}
            records += [
                {
                    "dataset": name,
                    "split": split,
                    "item": item,
                    "value": value,
                    "checksum_ok": counts.checksum_ok,
                }
                for item, value in items.items()
            ]
    columns = ["dataset", "split", "item", "value", "checksum_ok"]
    return pd.DataFrame.from_records(records, columns=columns)


def dataset_statistics_table(data_dir: Path) -> ResultTable:
    """Build Table 1: tweets and entities per type per split, counted beside the paper's.

    Output ``cells`` columns: ``dataset``, ``split``, ``item``, ``measured`` (int),
    ``checksum_ok`` (bool), ``published`` (int) and ``difference`` (measured - published).
    Display cells read ``measured (paper)``.

    Raises:
        FileNotFoundError: no dataset has all three annotation files under ``data_dir``.
    """
    measured = count_dataset_statistics(data_dir)
    if measured.empty:
        raise FileNotFoundError(
            f"no dataset annotation files found under {data_dir}; expected "
            "<data dir>/twitter2015/train.txt and the other splits"
        )
    paper = pub.published_statistics().rename(columns={"value": "published"})
    cells = measured.rename(columns={"value": "measured"}).merge(
        paper, on=["dataset", "split", "item"], how="left"
    )
    cells["difference"] = cells["measured"] - cells["published"]

    datasets = list(dict.fromkeys(cells["dataset"]))
    keys = [("", "Item")] + [(DATASETS[d].display_name, s) for d in datasets for s in SPLITS]
    count_of = {(c["dataset"], c["split"], c["item"]): c for c in cells.to_dict("records")}
    texts = []
    for item in pub.STATISTIC_ITEMS:
        name = "# Tweets" if item == "tweets" else f"# {item} entities"
        found = [count_of[(d, s, item)] for d in datasets for s in SPLITS]
        texts.append([name] + [f"{c['measured']} ({c['published']})" for c in found])
    columns = pd.MultiIndex.from_tuples(keys)
    display = pd.DataFrame(texts, columns=columns)
    footnotes = [
        "Cells: count from the annotation files, the paper's Table 1 in parentheses.",
        "Entities use the lenient rule (an orphan I- tag opens an entity); "
        "Twitter-2015's OTHER is counted as MISC.",
    ]
    altered = sorted({str(d) for d in cells.loc[~cells["checksum_ok"], "dataset"]})
    if altered:
        footnotes.append(
            f"SHA-256 differs from the UMT release for {', '.join(altered)}: "
            "these counts are of other copies of the files."
        )
    return ResultTable(
        name="dataset_statistics",
        caption="Statistics of the Twitter MNER datasets.",
        cells=cells,
        display=display,
        bold=pd.DataFrame(False, index=display.index, columns=columns),
        footnotes=tuple(footnotes),
    )
