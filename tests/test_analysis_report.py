"""``build_report`` and ``mner report`` over hand-layout Parquet run folders in both layouts."""

from __future__ import annotations

import argparse
import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from analysis.report import ReportSummary, build_report, load_runs
from orchestrator import cli
from orchestrator.commands import report as report_command

_KEYS = itertools.count()
SEMI = "semi-supervised"
SUPERVISED = "supervised"
T15 = "twitter2015"
TYPE_COLUMNS = ("test_f1_PER", "test_f1_LOC", "test_f1_ORG", "test_f1_MISC")


def result_row(method: str, setting: str, f1: float, **overrides: Any) -> dict:
    """One finished trial on Twitter-2015; every test score equals ``f1``."""
    row: dict[str, Any] = {
        "experiment": "test",
        "trial_key": f"k{next(_KEYS):07d}",
        "method": method,
        "setting": setting,
        "dataset": T15,
        "labelled_count": 100 if setting == SEMI else 4000,
        "labelled_share": 0.025 if setting == SEMI else 1.0,
        "seed": 0,
        "latent_size": 100 if method.startswith("smvae") else None,
        "encoder": "minilm",
        "encoder_finetune": False,
        "images": "resnet152",
        "image_coverage": 1.0,
        "test_precision": f1,
        "test_recall": f1,
        "test_f1": f1,
        **{column: f1 for column in TYPE_COLUMNS},
        "status": "finished",
        "error": "",
        "finished_at": "2026-12-01T10:00:00+00:00",
    }
    row.update(overrides)
    return row


def failed_row(method: str, setting: str, error: str, **overrides: Any) -> dict:
    return result_row(method, setting, np.nan, status="failed", error=error, **overrides)


def frame(rows: list[dict]) -> pd.DataFrame:
    results = pd.DataFrame(rows)
    results["latent_size"] = results["latent_size"].astype("Int64")
    return results


def epoch_rows(row: dict, dev_f1: list[float]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "trial_key": row["trial_key"],
            "experiment": row["experiment"],
            "method": row["method"],
            "dataset": row["dataset"],
            "seed": row["seed"],
            "epoch": list(range(1, len(dev_f1) + 1)),
            "train_loss": 1.0,
            "dev_f1": dev_f1,
        }
    )


def write_compacted(run_dir: Path, rows: list[dict], epochs: list[pd.DataFrame]) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    frame(rows).to_parquet(run_dir / "results.parquet", index=False)
    if epochs:
        pd.concat(epochs).to_parquet(run_dir / "epochs.parquet", index=False)


def write_trial(run_dir: Path, row: dict, dev_f1: list[float] | None = None) -> None:
    trial_dir = run_dir / "trials" / row["trial_key"]
    trial_dir.mkdir(parents=True, exist_ok=True)
    frame([row]).to_parquet(trial_dir / "result.parquet", index=False)
    if dev_f1:
        epoch_rows(row, dev_f1).to_parquet(trial_dir / "epochs.parquet", index=False)


def make_runs(root: Path) -> dict[str, Any]:
    """Three run folders: compacted, per-trial only, and one without any result."""
    compacted = [
        *(result_row("smvae", SEMI, f1, seed=s) for s, f1 in enumerate([60.0, 61.0, 62.0])),
        *(result_row("st", SEMI, f1, seed=s) for s, f1 in enumerate([50.0, 51.0, 52.0])),
        *(
            result_row("smvae", SUPERVISED, f1, labelled_share=share, seed=s)
            for s, (share, f1) in enumerate([(0.1, 40.0), (0.5, 60.0), (1.0, 74.0), (1.0, 76.0)])
        ),
        failed_row("seqvat", SEMI, "CUDA out of memory", trial_key="failedseqvat"),
        failed_row("em", SEMI, "worker died", trial_key="retried"),
    ]
    epochs = [epoch_rows(compacted[0], [30.0, 50.0]), epoch_rows(compacted[3], [20.0, 40.0])]
    write_compacted(root / "run_a", compacted, epochs)

    per_trial = [
        result_row("smvae-no-mvae", SEMI, 55.0, seed=0),
        result_row("smvae-no-mvae", SEMI, 57.0, seed=1),
        result_row("em", SEMI, 45.0, trial_key="retried"),
    ]
    for row in per_trial:
        write_trial(root / "run_b", row, dev_f1=[10.0, 30.0])
    (root / "run_b" / "trials" / "stillrunning").mkdir(parents=True)
    (root / "run_c").mkdir()
    return {"dirs": [root / "run_a", root / "run_b", root / "run_c"], "finished": 13}


@dataclass(frozen=True)
class BuiltReport:
    layout: dict[str, Any]
    out: Path
    summary: ReportSummary


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> BuiltReport:
    """One report over the three run folders of :func:`make_runs`, shared by the tests below."""
    root = tmp_path_factory.mktemp("runs")
    layout = make_runs(root)
    out = root / "out"
    return BuiltReport(layout, out, build_report(layout["dirs"], out))


def test_report_writes_tables_figures_and_index(built: BuiltReport) -> None:
    out, summary = built.out, built.summary

    for name in ("semi_supervised", "supervised", "ablation"):
        for suffix in ("md", "tex", "csv"):
            assert (out / "tables" / f"{name}.{suffix}").is_file(), (name, suffix)
    for suffix in ("png", "pdf"):
        path = out / "figures" / f"labelled_share_{T15}.{suffix}"
        assert path.stat().st_size > 0
    assert (out / "figures" / f"labelled_share_{T15}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "figures" / f"labelled_share_{T15}.pdf").read_bytes()[:5] == b"%PDF-"
    assert (out / "figures" / f"dev_f1_{T15}_{SEMI}.png").is_file()
    assert all(path.is_file() for path in summary.written)
    assert summary.written[-1] == out / "report.md"


def test_report_counts_failed_and_missing(built: BuiltReport) -> None:
    summary = built.summary
    assert summary.finished == built.layout["finished"]
    assert summary.failed["trial_key"].tolist() == ["failedseqvat"]
    assert summary.failed["error"].tolist() == ["CUDA out of memory"]
    assert any("stillrunning" in item for item in summary.missing)
    assert any("run_c" in item and "no results.parquet" in item for item in summary.missing)
    assert len(summary.missing) == 2


def test_report_skips_artefacts_without_rows(built: BuiltReport) -> None:
    skipped = dict(built.summary.skipped)
    assert skipped["dataset_statistics"] == "no data folder given"
    assert "found 1" in skipped[f"latent_size_{T15}"]
    assert skipped["labelled_share_twitter2017"] == "no finished trial to plot"
    assert not (built.out / "figures" / f"latent_size_{T15}.png").exists()


def test_report_index_lists_everything(built: BuiltReport) -> None:
    index = (built.out / "report.md").read_text(encoding="utf-8")
    assert "Trials: 13 finished, 1 failed, 2 missing." in index
    assert "[md](tables/semi_supervised.md)" in index
    assert "semi_supervised ([md](tables/semi_supervised.md), [tex]" in index
    assert "from 7 trials" in index
    assert "[png](figures/labelled_share_twitter2015.png)" in index
    assert "dev_f1_twitter2015_semi-supervised" in index
    assert "[pdf](figures/dev_f1_twitter2015_semi-supervised.pdf)), from 5 trials" in index
    assert "| failedseqvat | test | seqvat |" in index
    assert "stillrunning" in index
    assert "## Skipped" in index


def test_report_tables_combine_both_layouts(built: BuiltReport) -> None:
    out = built.out
    ablation = pd.read_csv(out / "tables" / "ablation.csv")
    no_mvae = ablation[
        (ablation["label"] == "w/o MVAE")
        & (ablation["block"] == SEMI)
        & (ablation["dataset"] == T15)
        & (ablation["metric"] == "F1")
    ].iloc[0]
    assert no_mvae["n"] == 2
    assert no_mvae["mean"] == pytest.approx(56.0)
    semi = pd.read_csv(out / "tables" / "semi_supervised.csv")
    em = semi[(semi["label"] == "EM") & (semi["dataset"] == T15) & (semi["metric"] == "F1")]
    assert em.iloc[0]["n"] == 1
    assert em.iloc[0]["mean"] == pytest.approx(45.0)
    assert "w/o MVAE" not in set(semi["label"])


def test_compacted_table_wins_over_trial_file(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    compacted = [result_row("smvae", SEMI, 60.0, trial_key="same")]
    write_compacted(run_dir, compacted, [])
    write_trial(run_dir, result_row("smvae", SEMI, 10.0, trial_key="same"))
    write_trial(run_dir, result_row("smvae", SEMI, 62.0, trial_key="newer"))
    data = load_runs([run_dir])
    by_key = data.results.set_index("trial_key")["test_f1"].to_dict()
    assert by_key == {"same": 60.0, "newer": 62.0}
    assert data.missing == []


def test_report_without_results(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    summary = build_report([tmp_path / "empty"], tmp_path / "out")
    assert summary.built == ()
    assert summary.finished == 0
    index = (tmp_path / "out" / "report.md").read_text(encoding="utf-8")
    assert "No table was built." in index
    assert "No figure was built." in index
    assert dict(summary.skipped)["semi_supervised"] == "no finished trials"


def test_report_missing_run_dir_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="run folder not found"):
        build_report([tmp_path / "absent"], tmp_path / "out")


def run_cli(argv: list[str]) -> int:
    """Run ``mner`` with ``argv``; register the report command here if cli.py lacks it."""
    if "orchestrator.commands.report" in cli.COMMAND_MODULES:
        return cli.main(argv)
    parser = argparse.ArgumentParser(prog="mner")
    report_command.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.handler(args))


def test_cli_report_prints_written_paths(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    layout = make_runs(tmp_path)
    out = tmp_path / "out"
    argv = ["report", *map(str, layout["dirs"]), "--out", str(out), "--data-dir", str(tmp_path)]
    assert run_cli(argv) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[-1] == str(out / "report.md")
    assert str(out / "tables" / "semi_supervised.tex") in printed
    assert all(Path(line).is_file() for line in printed)
    assert len(printed) == len(set(printed))


def test_cli_report_missing_run_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["report", str(tmp_path / "absent"), "--out", str(tmp_path / "out")]
    if "orchestrator.commands.report" in cli.COMMAND_MODULES:
        assert cli.main(argv) == 2
        assert "run folder not found" in capsys.readouterr().err
    else:
        with pytest.raises(FileNotFoundError, match="run folder not found"):
            run_cli(argv)


def test_cli_report_on_folder_without_results(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "not_a_run").mkdir()
    argv = ["report", str(tmp_path / "not_a_run"), "--out", str(tmp_path / "out")]

    assert run_cli(argv) == 2
    assert "no trial results in" in capsys.readouterr().err
    assert (tmp_path / "out" / "report.md").is_file()


def test_shipped_results_rebuild_tables(tmp_path: Path) -> None:
    # docs/runs contains the result files behind docs/results.md.
    runs = Path(__file__).resolve().parent.parent / "docs" / "runs"
    folders = [runs / "semi_supervised_cpu", runs / "supervised_cpu"]
    summary = build_report(folders, tmp_path / "out")

    assert summary.finished == 48
    assert summary.failed.empty
    semi = (tmp_path / "out" / "tables" / "semi_supervised.md").read_text(encoding="utf-8")
    supervised = (tmp_path / "out" / "tables" / "supervised.md").read_text(encoding="utf-8")
    assert "| Text | ST | measured |" in semi
    assert "52.79 ± 2.90 (3)" in semi  # ST, Twitter-2015 F1
    assert "78.86 ± 0.41 (3)" in supervised  # BERT-BiLSTM-CRF, Twitter-2017 F1
