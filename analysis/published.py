"""Numbers reported by Zhou et al., "A Span-based Multimodal Variational Autoencoder for
Semi-supervised Multimodal Named Entity Recognition" (EMNLP 2022), as data.

Tables 2 (semi-supervised), 3 (supervised) and 4 (ablation) contain test-set scores in
percent; Table 1 contains dataset statistics. Row names are the paper's; :data:`PAPER_NAMES`
maps this project's method names to them. The paper prints "Ours" for SMVAE; here that
row is labelled "SMVAE (ours)". The paper marks significance with ``*`` only on the
overall F1 of SMVAE in Table 2; its bold marks of best values are not transcribed.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import pandas as pd

DATASET_NAMES = ("twitter2015", "twitter2017")

# Columns of the per-type tables in paper order (single-type F1, then overall P, R, F1).
TYPE_METRICS = ("PER", "LOC", "ORG", "MISC")
OVERALL_METRICS = ("P", "R", "F1")
ALL_METRICS = TYPE_METRICS + OVERALL_METRICS

# Metric name of the published tables -> column of results.parquet.
RESULT_COLUMNS: dict[str, str] = {
    "PER": "test_f1_PER",
    "LOC": "test_f1_LOC",
    "ORG": "test_f1_ORG",
    "MISC": "test_f1_MISC",
    "P": "test_precision",
    "R": "test_recall",
    "F1": "test_f1",
}

# This project's method name -> row name used in generated tables.
PAPER_NAMES: dict[str, str] = {
    "smvae": "SMVAE (ours)",
    "smvae-no-mvae": "w/o MVAE",
    "bert": "BERT",
    "bert-crf": "BERT-CRF",
    "bert-bilstm-crf": "BERT-BiLSTM-CRF",
    "st": "ST",
    "em": "EM",
    "seqvat": "SeqVAT",
    "umt-st": "UMT+ST",
    "umt-em": "UMT+EM",
    "umt-seqvat": "UMT+SeqVAT",
    "maf-st": "MAF+ST",
    "maf-em": "MAF+EM",
    "maf-seqvat": "MAF+SeqVAT",
}

TABLE_SEMI_SUPERVISED = "table2"
TABLE_SUPERVISED = "table3"
TABLE_ABLATION = "table4"

TEXT_GROUP = "Text"
MULTIMODAL_GROUP = "Multimodal"


@dataclass(frozen=True)
class PublishedRow:
    """One method row of Table 2, 3 or 4 on one dataset; Table 4 rows lack per-type F1."""

    table: str
    setting: str
    dataset: str
    label: str
    paper_label: str
    group: str
    scores: dict[str, float]
    significant: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if self.dataset not in DATASET_NAMES:
            raise ValueError(f"unknown dataset {self.dataset!r}; expected one of {DATASET_NAMES}")
        unknown = set(self.scores) - set(ALL_METRICS)
        if unknown:
            raise ValueError(f"unknown metrics {sorted(unknown)} in row {self.label!r}")
        if not self.significant <= set(self.scores):
            raise ValueError(f"significance mark on a metric missing from row {self.label!r}")


def _label_of(paper_label: str) -> str:
    return PAPER_NAMES["smvae"] if paper_label == "Ours" else paper_label


def _rows_from_text(
    table: str, setting: str, dataset: str, text: str, metrics: tuple[str, ...]
) -> list[PublishedRow]:
    """Parse lines ``group | label | scores``; a trailing ``*`` on a score marks significance."""
    rows = []
    for line in text.strip().splitlines():
        group, paper_label, block = (part.strip() for part in line.split("|"))
        values = block.split()
        if len(values) != len(metrics):
            raise ValueError(
                f"{table} row {paper_label!r} on {dataset}: {len(values)} values, "
                f"expected {len(metrics)}"
            )
        rows.append(
            PublishedRow(
                table=table,
                setting=setting,
                dataset=dataset,
                label=_label_of(paper_label),
                paper_label=paper_label,
                group=group,
                scores={m: float(v.rstrip("*")) for m, v in zip(metrics, values, strict=True)},
                significant=frozenset(
                    m for m, v in zip(metrics, values, strict=True) if v.endswith("*")
                ),
            )
        )
    return rows


# Table 2: semi-supervised setting, 100 labelled tweets, mean over five seeds.
# Columns: F1 of PER, LOC, ORG, MISC, then overall P, R, F1.
_TABLE2 = {
    "twitter2015": """
Text       | ST         | 73.30 46.90 16.62  0.77 56.85 46.05 50.88
Text       | EM         | 76.29 50.12  8.52  0.78 61.30 46.27 52.73
Text       | SeqVAT     | 74.17 58.21 17.58  8.04 60.92 49.32 54.51
Multimodal | UMT+ST     | 76.30 58.41 23.63  7.52 55.49 53.86 54.66
Multimodal | UMT+EM     | 72.91 65.85 28.51 13.92 52.59 58.03 55.17
Multimodal | UMT+SeqVAT | 70.36 63.94 28.01 12.89 52.17 60.42 56.00
Multimodal | MAF+ST     | 77.18 52.44 12.77  0.52 57.14 51.18 54.12
Multimodal | MAF+EM     | 76.20 54.74 26.09  6.39 50.47 57.30 53.67
Multimodal | MAF+SeqVAT | 74.00 63.54 29.96 10.34 52.67 58.41 55.39
Multimodal | Ours       | 78.33 65.44 38.04  7.90 68.92 55.76 61.65*
""",
    "twitter2017": """
Text       | ST         | 83.53 48.35 53.11 17.84 63.81 62.39 63.09
Text       | EM         | 81.69 51.95 48.80  1.47 69.45 59.32 63.99
Text       | SeqVAT     | 84.82 60.19 53.87 11.11 65.26 66.45 65.85
Multimodal | UMT+ST     | 81.03 60.16 56.58 13.95 67.07 60.92 63.85
Multimodal | UMT+EM     | 79.94 58.74 54.02 18.00 62.84 62.84 62.84
Multimodal | UMT+SeqVAT | 76.82 61.11 55.48 19.75 61.03 63.88 62.42
Multimodal | MAF+ST     | 82.31 51.49 52.35  9.76 70.81 58.18 63.88
Multimodal | MAF+EM     | 77.64 60.90 52.45 14.88 56.32 64.62 60.19
Multimodal | MAF+SeqVAT | 81.66 61.81 57.03 19.61 64.15 65.43 64.79
Multimodal | Ours       | 87.40 58.33 69.76 32.86 79.27 69.36 73.98*
""",
}

# Table 3: supervised setting, full training sets. Same columns as Table 2.
_TABLE3 = {
    "twitter2015": """
Text       | BERT            | 84.72 79.91 58.26 38.81 68.30 74.61 71.32
Text       | BERT-CRF        | 84.74 80.51 60.27 37.29 69.22 74.59 71.81
Text       | BERT-BiLSTM-CRF | 84.32 79.31 61.66 37.53 71.03 73.57 72.27
Multimodal | GVATT-BERT-CRF  | 84.43 80.87 59.02 38.14 69.15 74.46 71.70
Multimodal | AdaCAN-BERT-CRF | 85.28 80.64 59.39 38.88 69.87 74.59 72.15
Multimodal | MT-BERT-CRF     | 85.30 81.21 61.10 37.97 70.48 74.80 72.58
Multimodal | UMT-BERT-CRF    | 85.24 81.58 63.03 39.45 71.67 75.23 73.41
Multimodal | UMGF            | 84.26 83.17 62.45 42.42 74.49 75.21 74.85
Multimodal | UAMNer          | 85.14 81.66 62.46 40.95 73.02 74.75 73.87
Multimodal | MAF             | 84.67 81.18 63.35 41.82 71.86 75.10 73.42
Multimodal | Ours            | 85.82 81.56 63.20 43.67 74.40 75.76 75.07
""",
    "twitter2017": """
Text       | BERT            | 90.88 84.00 79.25 61.63 82.19 83.72 82.95
Text       | BERT-CRF        | 90.25 83.05 81.13 62.21 83.32 83.57 83.44
Text       | BERT-BiLSTM-CRF | 90.29 84.55 80.97 64.85 83.20 84.68 83.93
Multimodal | GVATT-BERT-CRF  | 90.94 83.52 81.91 62.75 83.64 84.38 84.01
Multimodal | AdaCAN-BERT-CRF | 90.20 82.97 82.67 64.83 85.13 83.20 84.10
Multimodal | MT-BERT-CRF     | 91.47 82.05 81.84 65.80 84.60 84.16 84.42
Multimodal | UMT-BERT-CRF    | 91.56 84.73 82.24 70.10 85.28 85.34 85.31
Multimodal | UMGF            | 91.92 85.22 83.13 69.83 86.54 84.50 85.51
Multimodal | UAMNer          | 91.86 85.71 84.25 68.73 86.17 86.23 86.20
Multimodal | MAF             | 91.51 85.80 85.10 68.79 86.13 86.38 86.25
Multimodal | Ours            | 91.96 81.89 84.13 74.07 85.77 86.97 86.37
""",
}

# Table 4: ablation, overall P, R, F1 per setting (the paper's "Settings" column).
_TABLE4 = {
    ("supervised", "twitter2015"): """
Multimodal | Ours     | 74.40 75.76 75.07
Multimodal | w/o MVAE | 73.17 75.51 74.32
""",
    ("supervised", "twitter2017"): """
Multimodal | Ours     | 85.46 87.42 86.43
Multimodal | w/o MVAE | 85.16 87.05 86.09
""",
    ("semi-supervised", "twitter2015"): """
Multimodal | Ours     | 68.92 55.76 61.65
Multimodal | w/o MVAE | 67.48 54.56 60.51
""",
    ("semi-supervised", "twitter2017"): """
Multimodal | Ours     | 79.27 69.36 73.98
Multimodal | w/o MVAE | 77.28 67.21 71.89
""",
}

# F1 tolerance for rounding: P and R are printed to 0.01, so F1 = 2PR / (P + R) recomputed
# from them can differ from the printed F1 by a few hundredths.
F1_ROUNDING_TOLERANCE = 0.06


@dataclass(frozen=True)
class Inconsistency:
    """A published row that contradicts itself or another table."""

    table: str
    setting: str
    dataset: str
    paper_label: str
    problem: str


# Found by recomputing every F1 from its P and R and by comparing Tables 3 and 4.
PAPER_INCONSISTENCIES: tuple[Inconsistency, ...] = (
    Inconsistency(
        TABLE_SEMI_SUPERVISED,
        "semi-supervised",
        "twitter2015",
        "MAF+ST",
        "printed F1 54.12, but 2PR/(P+R) from P 57.14 and R 51.18 is 54.00",
    ),
    Inconsistency(
        TABLE_ABLATION,
        "semi-supervised",
        "twitter2015",
        "w/o MVAE",
        "printed F1 60.51, but 2PR/(P+R) from P 67.48 and R 54.56 is 60.34",
    ),
    Inconsistency(
        TABLE_ABLATION,
        "supervised",
        "twitter2017",
        "Ours",
        "P/R/F1 85.46/87.42/86.43 in Table 4, but 85.77/86.97/86.37 in Table 3",
    ),
)


@cache
def published_rows() -> tuple[PublishedRow, ...]:
    """Return every method row of Tables 2, 3 and 4, table by table, then dataset by dataset."""
    rows: list[PublishedRow] = []
    for dataset, text in _TABLE2.items():
        rows += _rows_from_text(
            TABLE_SEMI_SUPERVISED, "semi-supervised", dataset, text, ALL_METRICS
        )
    for dataset, text in _TABLE3.items():
        rows += _rows_from_text(TABLE_SUPERVISED, "supervised", dataset, text, ALL_METRICS)
    for (setting, dataset), text in _TABLE4.items():
        rows += _rows_from_text(TABLE_ABLATION, setting, dataset, text, OVERALL_METRICS)
    return tuple(rows)


def published_scores() -> pd.DataFrame:
    """Build Tables 2-4 as a tidy frame, one row per (table, setting, dataset, label, metric).

    Columns: ``table`` (``table2``/``table3``/``table4``), ``setting``
    (``supervised``/``semi-supervised``), ``dataset``, ``label`` (row name of generated
    tables), ``paper_label`` (as printed), ``method`` (this project's method name, or
    None when the project does not implement it), ``group`` (``Text``/``Multimodal``),
    ``order`` (row position within its table), ``metric`` (PER, LOC, ORG, MISC, P, R,
    F1), ``column`` (results.parquet column of that metric), ``value`` (percent) and
    ``significant`` (bool, the paper's ``*``).
    """
    method_of = {label: method for method, label in PAPER_NAMES.items()}
    records = []
    for order, row in enumerate(published_rows()):
        for metric, value in row.scores.items():
            records.append(
                {
                    "table": row.table,
                    "setting": row.setting,
                    "dataset": row.dataset,
                    "label": row.label,
                    "paper_label": row.paper_label,
                    "method": method_of.get(row.label),
                    "group": row.group,
                    "order": order,
                    "metric": metric,
                    "column": RESULT_COLUMNS[metric],
                    "value": value,
                    "significant": metric in row.significant,
                }
            )
    return pd.DataFrame.from_records(records)


def published_value(
    table: str, dataset: str, label: str, metric: str, setting: str | None = None
) -> float | None:
    """Return one published score, or None when the table has no such cell.

    ``label`` is a row name of generated tables (``"SMVAE (ours)"``, ``"UMT+ST"``) or the
    paper's ``"Ours"``. ``setting`` picks the block of Table 4; without it the first
    matching row (the supervised one) is returned.
    """
    requested = _label_of(label)
    for row in published_rows():
        if (row.table, row.dataset, row.label) != (table, dataset, requested):
            continue
        if setting is None or row.setting == setting:
            return row.scores.get(metric)
    return None


def f1_from_precision_recall(precision: float, recall: float) -> float:
    """Harmonic mean F1 = 2PR / (P + R); 0 when both are 0."""
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


# Table 1: tweets and entities per type per split.
_TABLE1 = {
    "twitter2015": {
        "train": {"tweets": 4000, "PER": 2217, "LOC": 2091, "ORG": 928, "MISC": 940},
        "valid": {"tweets": 1000, "PER": 552, "LOC": 522, "ORG": 247, "MISC": 225},
        "test": {"tweets": 3257, "PER": 1816, "LOC": 1697, "ORG": 839, "MISC": 726},
    },
    "twitter2017": {
        "train": {"tweets": 3373, "PER": 2943, "LOC": 731, "ORG": 1674, "MISC": 701},
        "valid": {"tweets": 723, "PER": 626, "LOC": 173, "ORG": 375, "MISC": 150},
        "test": {"tweets": 723, "PER": 621, "LOC": 178, "ORG": 395, "MISC": 157},
    },
}

STATISTIC_ITEMS = ("tweets", "PER", "LOC", "ORG", "MISC")


def published_statistics() -> pd.DataFrame:
    """Build Table 1 as a tidy frame.

    Columns: ``dataset``, ``split`` (``train``/``valid``/``test``; the paper's "Dev" is
    ``valid``), ``item`` (``tweets``, PER, LOC, ORG, MISC) and ``value`` (int count).
    """
    records = [
        {"dataset": dataset, "split": split, "item": item, "value": value}
        for dataset, splits in _TABLE1.items()
        for split, counts in splits.items()
        for item, value in counts.items()
    ]
    return pd.DataFrame.from_records(records)
