"""Numbers published by Zhou et al. (EMNLP 2022): spot checks and internal consistency."""

from __future__ import annotations

import pytest

from analysis import published as pub

# (table, setting, dataset, paper row, metric, value as printed by Zhou et al., EMNLP 2022)
SPOT_CHECKS = [
    (pub.TABLE_SEMI_SUPERVISED, "semi-supervised", "twitter2015", "ST", "MISC", 0.77),
    (pub.TABLE_SEMI_SUPERVISED, "semi-supervised", "twitter2015", "Ours", "F1", 61.65),
    (pub.TABLE_SEMI_SUPERVISED, "semi-supervised", "twitter2015", "UMT+SeqVAT", "R", 60.42),
    (pub.TABLE_SEMI_SUPERVISED, "semi-supervised", "twitter2017", "EM", "MISC", 1.47),
    (pub.TABLE_SEMI_SUPERVISED, "semi-supervised", "twitter2017", "MAF+EM", "P", 56.32),
    (pub.TABLE_SEMI_SUPERVISED, "semi-supervised", "twitter2017", "Ours", "ORG", 69.76),
    (pub.TABLE_SUPERVISED, "supervised", "twitter2015", "BERT", "PER", 84.72),
    (pub.TABLE_SUPERVISED, "supervised", "twitter2015", "UMGF", "LOC", 83.17),
    (pub.TABLE_SUPERVISED, "supervised", "twitter2017", "UAMNer", "ORG", 84.25),
    (pub.TABLE_SUPERVISED, "supervised", "twitter2017", "Ours", "MISC", 74.07),
    (pub.TABLE_SUPERVISED, "supervised", "twitter2017", "AdaCAN-BERT-CRF", "P", 85.13),
    (pub.TABLE_ABLATION, "supervised", "twitter2017", "Ours", "F1", 86.43),
    (pub.TABLE_ABLATION, "semi-supervised", "twitter2015", "w/o MVAE", "R", 54.56),
    (pub.TABLE_ABLATION, "semi-supervised", "twitter2017", "w/o MVAE", "F1", 71.89),
]


@pytest.mark.parametrize(("table", "setting", "dataset", "row", "metric", "value"), SPOT_CHECKS)
def test_published_spot_values(
    table: str, setting: str, dataset: str, row: str, metric: str, value: float
) -> None:
    assert pub.published_value(table, dataset, row, metric, setting=setting) == value


def test_published_row_counts() -> None:
    scores = pub.published_scores()
    rows = scores.drop_duplicates(["table", "setting", "dataset", "label"])
    counts = rows.groupby("table").size().to_dict()
    assert counts == {"table2": 20, "table3": 22, "table4": 8}


def test_published_significance_marks_only_ours_f1() -> None:
    scores = pub.published_scores()
    marked = scores[scores["significant"]]
    assert set(marked["label"]) == {"SMVAE (ours)"}
    assert set(marked["metric"]) == {"F1"}
    assert set(marked["dataset"]) == {"twitter2015", "twitter2017"}
    assert set(marked["table"]) == {pub.TABLE_SEMI_SUPERVISED}


def _listed_as_inconsistent(row: pub.PublishedRow) -> bool:
    return any(
        (item.table, item.setting, item.dataset, item.paper_label)
        == (row.table, row.setting, row.dataset, row.paper_label)
        and "2PR/(P+R)" in item.problem
        for item in pub.PAPER_INCONSISTENCIES
    )


def test_published_f1_matches_precision_recall() -> None:
    for row in pub.published_rows():
        recomputed = pub.f1_from_precision_recall(row.scores["P"], row.scores["R"])
        gap = abs(recomputed - row.scores["F1"])
        if _listed_as_inconsistent(row):
            # The list must stay honest: a listed row really breaks the rule.
            assert gap > pub.F1_ROUNDING_TOLERANCE, row
        else:
            assert gap <= pub.F1_ROUNDING_TOLERANCE, row


def test_published_table3_table4_disagreement_listed() -> None:
    metrics = ("P", "R", "F1")
    for dataset in pub.DATASET_NAMES:
        table3 = [pub.published_value(pub.TABLE_SUPERVISED, dataset, "Ours", m) for m in metrics]
        table4 = [
            pub.published_value(pub.TABLE_ABLATION, dataset, "Ours", m, setting="supervised")
            for m in metrics
        ]
        listed = any(
            item.dataset == dataset
            and item.table == pub.TABLE_ABLATION
            and "Table 3" in item.problem
            for item in pub.PAPER_INCONSISTENCIES
        )
        assert (table3 != table4) == listed, dataset


def test_published_semi_supervised_ablation_matches_table2() -> None:
    for dataset in pub.DATASET_NAMES:
        for metric in ("P", "R", "F1"):
            table2 = pub.published_value(pub.TABLE_SEMI_SUPERVISED, dataset, "Ours", metric)
            table4 = pub.published_value(
                pub.TABLE_ABLATION, dataset, "Ours", metric, setting="semi-supervised"
            )
            assert table2 == table4


def test_published_method_names_map_to_rows() -> None:
    scores = pub.published_scores()
    assert set(pub.PAPER_NAMES) == set(scores["method"].dropna())
    ours = scores[scores["label"] == "SMVAE (ours)"]
    assert set(ours["paper_label"]) == {"Ours"}
    assert set(ours["method"]) == {"smvae"}


def test_published_statistics_values() -> None:
    table1 = pub.published_statistics().set_index(["dataset", "split", "item"])["value"]
    assert table1[("twitter2015", "train", "tweets")] == 4000
    assert table1[("twitter2015", "valid", "LOC")] == 522
    assert table1[("twitter2015", "test", "MISC")] == 726
    assert table1[("twitter2017", "train", "PER")] == 2943
    assert table1[("twitter2017", "test", "ORG")] == 395
    assert len(table1) == 2 * 3 * 5


def test_published_value_unknown_cell_is_none() -> None:
    assert pub.published_value(pub.TABLE_ABLATION, "twitter2015", "Ours", "PER") is None
    assert pub.published_value(pub.TABLE_SUPERVISED, "twitter2015", "ST", "F1") is None
