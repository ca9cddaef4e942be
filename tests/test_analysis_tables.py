"""Tables from hand-made results frames: summaries, best and significance marks, footnotes,
writers, and Table 1 from annotation files."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis import tables
from analysis.render import escape_latex, to_csv, to_latex, to_markdown

_KEYS = itertools.count()
SCORE_METRICS = ("test_f1_PER", "test_f1_LOC", "test_f1_ORG", "test_f1_MISC")


def result_row(method: str, setting: str, dataset: str, f1: float, **overrides: Any) -> dict:
    """One finished trial with every test score derived from ``f1``: P = f1 + 1, R = f1 - 1."""
    row: dict[str, Any] = {
        "experiment": "test",
        "trial_key": f"{next(_KEYS):08x}",
        "method": method,
        "setting": setting,
        "dataset": dataset,
        "labelled_count": 100,
        "labelled_share": 0.025 if setting == "semi-supervised" else 1.0,
        "seed": 0,
        "latent_size": 100 if method.startswith("smvae") else None,
        "encoder": "minilm",
        "encoder_finetune": False,
        "images": "resnet152",
        "image_coverage": 1.0,
        "test_precision": f1 + 1,
        "test_recall": f1 - 1,
        "test_f1": f1,
        **{metric: f1 for metric in SCORE_METRICS},
        "status": "finished",
        "error": "",
    }
    row.update(overrides)
    return row


def frame(rows: list[dict]) -> pd.DataFrame:
    results = pd.DataFrame(rows)
    results["latent_size"] = results["latent_size"].astype("Int64")
    return results


def runs(method: str, setting: str, dataset: str, f1s: list[float], **overrides: Any) -> list[dict]:
    return [
        result_row(method, setting, dataset, f1, seed=seed, **overrides)
        for seed, f1 in enumerate(f1s)
    ]


def cell(table: tables.ResultTable, label: str, dataset: str, metric: str) -> pd.Series:
    cells = table.cells
    chosen = cells[
        (cells["label"] == label) & (cells["dataset"] == dataset) & (cells["metric"] == metric)
    ]
    assert len(chosen) == 1, (label, dataset, metric)
    return chosen.iloc[0]


SEMI = "semi-supervised"
T15 = "twitter2015"
T17 = "twitter2017"


def test_summarise_mean_std_and_count() -> None:
    rows = runs("smvae", SEMI, T15, [60.0, 62.0, 67.0]) + runs("st", SEMI, T15, [50.0])
    rows.append(result_row("st", SEMI, T15, float("nan"), status="failed", seed=9))
    summary = tables.summarise(frame(rows), by=["method"], metrics=["test_f1"])
    by_method = summary.set_index("method")
    assert by_method.loc["smvae", "n"] == 3
    assert by_method.loc["smvae", "test_f1_mean"] == pytest.approx(63.0)
    assert by_method.loc["smvae", "test_f1_std"] == pytest.approx(np.std([60, 62, 67], ddof=1))
    assert by_method.loc["st", "n"] == 1
    assert by_method["test_f1_std"].isna()["st"]


def test_summarise_defaults_to_present_score_columns() -> None:
    summary = tables.summarise(frame(runs("smvae", SEMI, T15, [60.0, 61.0])), by=["dataset"])
    assert "test_f1_PER_mean" in summary.columns
    assert "dev_f1_mean" not in summary.columns


def test_welch_p_value_matches_scipy() -> None:
    first, second = [60.0, 61.5, 59.0, 62.0], [55.0, 58.0, 57.5]
    expected = stats.ttest_ind(first, second, equal_var=False).pvalue
    assert tables.welch_p_value(first, second) == pytest.approx(expected)
    assert tables.welch_p_value([60.0], second) is None


def test_semi_supervised_cell_values() -> None:
    smvae, seqvat = [60.0, 61.0, 62.5], [50.0, 51.5, 53.0]
    results = frame(runs("smvae", SEMI, T15, smvae) + runs("seqvat", SEMI, T15, seqvat))
    table = tables.semi_supervised_table(results)
    f1 = cell(table, "SMVAE (ours)", T15, "F1")
    assert f1["n"] == 3
    assert f1["mean"] == pytest.approx(np.mean(smvae))
    assert f1["std"] == pytest.approx(np.std(smvae, ddof=1))
    assert f1["published"] == 61.65
    assert bool(f1["published_significant"])
    precision = cell(table, "SeqVAT", T15, "P")
    assert precision["mean"] == pytest.approx(np.mean(seqvat) + 1)
    assert precision["published"] == 60.92
    expected_p = stats.ttest_ind(smvae, seqvat, equal_var=False).pvalue
    assert f1["p_value"] == pytest.approx(expected_p)


def test_best_mark_significant_case() -> None:
    results = frame(
        runs("smvae", SEMI, T15, [60.0, 61.0, 62.0])
        + runs("seqvat", SEMI, T15, [50.0, 51.0, 52.0])
        + runs("st", SEMI, T15, [40.0, 41.0, 42.0])
    )
    table = tables.semi_supervised_table(results)
    best = cell(table, "SMVAE (ours)", T15, "F1")
    assert bool(best["best"])
    assert bool(best["significant"])
    runner_up = cell(table, "SeqVAT", T15, "F1")
    assert not runner_up["best"]
    assert not runner_up["significant"]
    assert np.isnan(runner_up["p_value"])
    measured_line = table.display[table.display[("", "Source")] == "measured"]
    texts = measured_line[("Twitter-2015", "F1")].tolist()
    assert "61.00 ± 1.00 (3)*" in texts
    assert "51.00 ± 1.00 (3)" in texts


def test_best_mark_not_significant_case() -> None:
    results = frame(
        runs("smvae", SEMI, T15, [60.0, 66.0, 54.0]) + runs("seqvat", SEMI, T15, [59.0, 60.0, 58.0])
    )
    table = tables.semi_supervised_table(results)
    best = cell(table, "SMVAE (ours)", T15, "F1")
    assert bool(best["best"])
    assert not best["significant"]
    expected_p = stats.ttest_ind([60, 66, 54], [59, 60, 58], equal_var=False).pvalue
    assert best["p_value"] == pytest.approx(expected_p)
    assert expected_p > tables.SIGNIFICANCE_LEVEL


def test_no_test_with_one_seed() -> None:
    results = frame(runs("smvae", SEMI, T15, [70.0]) + runs("seqvat", SEMI, T15, [50.0, 51.0]))
    best = cell(tables.semi_supervised_table(results), "SMVAE (ours)", T15, "F1")
    assert bool(best["best"])
    assert not best["significant"]
    assert np.isnan(best["p_value"])


def test_best_marked_in_bold_table() -> None:
    results = frame(runs("smvae", SEMI, T15, [60.0, 61.0]) + runs("st", SEMI, T15, [50.0, 52.0]))
    table = tables.semi_supervised_table(results)
    column = ("Twitter-2015", "F1")
    bold_texts = table.display[column][table.bold[column].to_numpy(dtype=bool)].tolist()
    assert bold_texts == ["60.50 ± 0.71 (2)*"]
    assert r"**60.50 ± 0.71 (2)\***" in to_markdown(table)


def test_paper_only_rows_have_published_values() -> None:
    table = tables.semi_supervised_table(frame(runs("smvae", SEMI, T15, [60.0, 61.0])))
    umt = cell(table, "UMT+EM", T17, "MISC")
    assert umt["n"] == 0
    assert umt["published"] == 18.00
    paper_lines = table.display[table.display[("", "Method")] == "UMT+EM"]
    assert paper_lines[("", "Source")].tolist() == ["paper"]
    assert any("Not run here" in note and "UMT+EM" in note for note in table.footnotes)


def test_footnote_text_only_runs() -> None:
    results = frame(runs("smvae", SEMI, T15, [60.0, 61.0], images="none", image_coverage=0.0))
    table = tables.semi_supervised_table(results)
    notes = [n for n in table.footnotes if n.startswith("[a]")]
    assert notes == ["[a] SMVAE (ours): Twitter-2015: 2 of 2 runs text-only (images = none)."]
    assert cell(table, "SMVAE (ours)", T15, "F1")["note"] == "a"
    assert "SMVAE (ours) [a]" in table.display[("", "Method")].tolist()


def test_footnote_partial_coverage() -> None:
    results = frame(runs("smvae", SEMI, T15, [60.0, 61.0], image_coverage=0.874))
    notes = tables.semi_supervised_table(results).footnotes
    assert any("2 of 2 runs with image coverage 87.4%" in note for note in notes)


def test_footnote_fewer_seeds() -> None:
    results = frame(runs("smvae", SEMI, T15, [60.0, 61.0, 62.0]) + runs("st", SEMI, T15, [50.0]))
    notes = tables.semi_supervised_table(results).footnotes
    assert any(note.startswith("[a] ST: Twitter-2015: 1 seed where") for note in notes)
    assert not any(note.startswith("[b]") for note in notes)


def test_text_method_without_images_gets_no_footnote() -> None:
    results = frame(
        runs("st", SEMI, T15, [50.0, 51.0], images="none") + runs("smvae", SEMI, T15, [60.0, 61.0])
    )
    notes = tables.semi_supervised_table(results).footnotes
    assert not any(note.startswith("[a]") for note in notes)


def test_table_uses_paper_labelled_count() -> None:
    results = frame(
        runs("smvae", SEMI, T15, [60.0, 62.0])
        + runs("smvae", SEMI, T15, [30.0, 31.0], labelled_count=10, labelled_share=0.0025)
    )
    table = tables.semi_supervised_table(results)
    assert cell(table, "SMVAE (ours)", T15, "F1")["mean"] == pytest.approx(61.0)
    assert table.trials == 2


def test_table_falls_back_to_other_labelled_count() -> None:
    results = frame(runs("smvae", SEMI, T15, [30.0, 32.0], labelled_count=10))
    table = tables.semi_supervised_table(results)
    assert cell(table, "SMVAE (ours)", T15, "F1")["mean"] == pytest.approx(31.0)
    assert any("10 labelled tweets" in note for note in table.footnotes)


def test_supervised_table_excludes_other_latent_sizes() -> None:
    results = frame(
        runs("smvae", "supervised", T17, [85.0, 86.0])
        + runs("smvae", "supervised", T17, [70.0, 71.0], latent_size=512)
        + runs("bert", "supervised", T17, [80.0, 81.0])
    )
    table = tables.supervised_table(results)
    assert cell(table, "SMVAE (ours)", T17, "F1")["mean"] == pytest.approx(85.5)
    assert cell(table, "BERT", T17, "F1")["mean"] == pytest.approx(80.5)
    assert cell(table, "BERT", T17, "F1")["published"] == 82.95


def test_ablation_marks_best_per_setting() -> None:
    results = frame(
        runs("smvae", "supervised", T15, [75.0, 76.0])
        + runs("smvae-no-mvae", "supervised", T15, [74.0, 74.5])
        + runs("smvae", SEMI, T15, [55.0, 56.0])
        + runs("smvae-no-mvae", SEMI, T15, [58.0, 59.0])
        + runs("st", SEMI, T15, [90.0, 91.0])
    )
    table = tables.ablation_table(results)
    cells = table.cells[(table.cells["metric"] == "F1") & (table.cells["dataset"] == T15)]
    best = cells[cells["best"]].set_index("block")["label"].to_dict()
    assert best == {"supervised": "SMVAE (ours)", "semi-supervised": "w/o MVAE"}
    assert set(cells["label"]) == {"SMVAE (ours)", "w/o MVAE"}
    semi = cells[(cells["block"] == SEMI) & (cells["label"] == "w/o MVAE")].iloc[0]
    assert semi["published"] == 60.51
    assert table.trials == 8


def test_latex_has_booktabs_rules_and_escapes() -> None:
    results = frame(runs("smvae", SEMI, T15, [60.0, 61.0]) + runs("st", SEMI, T15, [50.0, 51.0]))
    latex = to_latex(tables.semi_supervised_table(results))
    for rule in (r"\toprule", r"\midrule", r"\bottomrule"):
        assert latex.count(rule) == 1, rule
    assert latex.index(r"\toprule") < latex.index(r"\midrule") < latex.index(r"\bottomrule")
    assert r"\textbf{60.50 $\pm$ 0.71 (2)*}" in latex
    assert r"\multicolumn{7}{c}{Twitter-2015}" in latex
    assert "±" not in latex


def test_escape_latex_special_characters() -> None:
    assert escape_latex("a_b & 5% #1 $x$ {y} ~ ^ \\") == (
        r"a\_b \& 5\% \#1 \$x\$ \{y\} \textasciitilde{} \textasciicircum{} \textbackslash{}"
    )


def test_csv_holds_tidy_cells() -> None:
    results = frame(runs("smvae", SEMI, T15, [60.0, 61.0]))
    text = to_csv(tables.semi_supervised_table(results))
    header = text.splitlines()[0].split(",")
    assert header[:6] == ["block", "group", "label", "method", "dataset", "metric"]
    assert len(text.splitlines()) == 1 + 10 * 2 * 7


def test_missing_schema_column_raises() -> None:
    results = frame(runs("smvae", SEMI, T15, [60.0])).drop(columns=["images"])
    with pytest.raises(ValueError, match="images"):
        tables.semi_supervised_table(results)


def write_split(path: Path, tweets: list[list[tuple[str, str]]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    blocks = []
    for index, tweet in enumerate(tweets):
        lines = [f"IMGID:{path.stem}{index}"] + [f"{word}\t{tag}" for word, tag in tweet]
        blocks.append("\n".join(lines))
    path.write_text("\n\n".join(blocks) + "\n", encoding="utf-8")


def test_dataset_statistics_from_small_files(tmp_path: Path) -> None:
    # An orphan I- tag opens an entity (lenient rule) and OTHER counts as MISC.
    tweet = [("Obama", "B-PER"), ("in", "O"), ("New", "I-LOC"), ("York", "I-LOC"), ("x", "B-OTHER")]
    for split in ("train", "valid", "test"):
        write_split(tmp_path / "twitter2015" / f"{split}.txt", [tweet, [("hi", "O")]])
    table = tables.dataset_statistics_table(tmp_path)
    counts = table.cells.set_index(["dataset", "split", "item"])
    assert counts.loc[("twitter2015", "test", "tweets"), "measured"] == 2
    assert counts.loc[("twitter2015", "test", "LOC"), "measured"] == 1
    assert counts.loc[("twitter2015", "test", "MISC"), "measured"] == 1
    assert counts.loc[("twitter2015", "test", "MISC"), "published"] == 726
    assert set(table.cells["dataset"]) == {"twitter2015"}
    assert table.display.iloc[0, 1] == "2 (4000)"
    assert any("SHA-256 differs" in note for note in table.footnotes)


def test_dataset_statistics_without_files_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no dataset annotation files"):
        tables.dataset_statistics_table(tmp_path)


@pytest.mark.realdata
def test_dataset_statistics_real_files(real_data_dir: Path) -> None:
    table = tables.dataset_statistics_table(real_data_dir)
    counts = table.cells.set_index(["dataset", "split", "item"])["measured"]
    assert counts[("twitter2015", "train", "tweets")] == 4000
    assert counts[("twitter2017", "valid", "tweets")] == 723
    test_entities = sum(counts[("twitter2015", "test", t)] for t in ("PER", "LOC", "ORG", "MISC"))
    assert test_entities == 5207
    assert counts[("twitter2017", "test", "PER")] == 621
    assert table.cells["checksum_ok"].all()
