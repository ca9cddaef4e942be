"""Build every table and figure that the results of one or more sweeps allow.

A run folder contains the compacted tables ``results.parquet`` and ``epochs.parquet``,
per-trial files ``trials/<trial_key>/result.parquet`` and ``trials/<trial_key>/epochs.parquet``
written as each trial ends, or both. Per-trial files fill in the trials that the
compacted table does not hold yet. A trial key seen twice keeps its finished row over a
failed one, then the row that finished last.

Output layout: ``tables/<name>.{md,tex,csv}``, ``figures/<name>.{png,pdf}`` and an index
``report.md`` that lists what was built from how many trials, what was skipped and why,
and which trials failed or have no result yet.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from analysis import figures
from analysis.published import DATASET_NAMES
from analysis.render import ResultTable, write_table
from analysis.selection import FINISHED, SEMI_SUPERVISED, SUPERVISED
from analysis.tables import (
    ablation_table,
    dataset_statistics_table,
    semi_supervised_table,
    supervised_table,
)

logger = logging.getLogger(__name__)

RESULTS_FILE = "results.parquet"
EPOCHS_FILE = "epochs.parquet"
TRIALS_DIR = "trials"
TRIAL_RESULT_FILE = "result.parquet"
TRIAL_EPOCHS_FILE = "epochs.parquet"
INDEX_FILE = "report.md"
TABLES_DIR = "tables"
FIGURES_DIR = "figures"

FAILED = "failed"
FIGURE_SIZE = (5.0, 3.6)  # inches; one column of a two-column paper page
FIGURE_DPI = 200
FIGURE_FORMATS = ("png", "pdf")
MIN_CURVE_POINTS = 2  # a curve needs at least two x values


@dataclass(frozen=True)
class Artefact:
    """A table or figure written to disk."""

    name: str
    kind: str  # "table" or "figure"
    paths: tuple[Path, ...]
    trials: int


@dataclass(frozen=True)
class ReportSummary:
    """What :func:`build_report` read and wrote.

    ``failed`` contains the failed rows (``trial_key``, ``experiment``, ``method``,
    ``dataset``, ``seed``, ``error``, ``run_dir``); ``missing`` describes trials and run
    folders without a result; ``skipped`` pairs an artefact name with the reason.
    """

    out_dir: Path
    run_dirs: tuple[Path, ...]
    finished: int
    failed: pd.DataFrame
    missing: tuple[str, ...]
    built: tuple[Artefact, ...]
    skipped: tuple[tuple[str, str], ...]
    written: tuple[Path, ...] = field(default=())


@dataclass
class RunData:
    """Results and epoch rows of one or more run folders, with what is missing."""

    results: pd.DataFrame
    epochs: pd.DataFrame
    missing: list[str]


def _read_trial_files(
    run_dir: Path, known: set[str]
) -> tuple[list[pd.DataFrame], list[pd.DataFrame], list[str]]:
    """Read ``trials/<key>/`` files of trials missing from the compacted tables."""
    results: list[pd.DataFrame] = []
    epochs: list[pd.DataFrame] = []
    missing: list[str] = []
    trials_dir = run_dir / TRIALS_DIR
    if not trials_dir.is_dir():
        return results, epochs, missing
    for trial_dir in sorted(p for p in trials_dir.iterdir() if p.is_dir()):
        if trial_dir.name in known:
            continue
        result_path = trial_dir / TRIAL_RESULT_FILE
        if not result_path.is_file():
            missing.append(f"{run_dir}: trial {trial_dir.name} has no {TRIAL_RESULT_FILE} yet")
            continue
        results.append(pd.read_parquet(result_path))
        if (trial_dir / TRIAL_EPOCHS_FILE).is_file():
            epochs.append(pd.read_parquet(trial_dir / TRIAL_EPOCHS_FILE))
    return results, epochs, missing


def load_run(run_dir: Path) -> RunData:
    """Read one run folder in either layout (see the module docstring).

    Raises:
        FileNotFoundError: ``run_dir`` does not exist.
    """
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run folder not found: {run_dir}")
    results, epochs = [], []
    known: set[str] = set()
    if (run_dir / RESULTS_FILE).is_file():
        compacted = pd.read_parquet(run_dir / RESULTS_FILE)
        results.append(compacted)
        known = set(compacted["trial_key"].astype(str))
        if (run_dir / EPOCHS_FILE).is_file():
            epochs.append(pd.read_parquet(run_dir / EPOCHS_FILE))
    trial_results, trial_epochs, missing = _read_trial_files(run_dir, known)
    results += trial_results
    epochs += trial_epochs
    if not results:
        missing.append(f"{run_dir}: no {RESULTS_FILE} and no per-trial results")
    frame = pd.concat(results, ignore_index=True) if results else pd.DataFrame()
    epoch_frame = pd.concat(epochs, ignore_index=True) if epochs else pd.DataFrame()
    return RunData(frame.assign(run_dir=str(run_dir)), epoch_frame, missing)


def _deduplicate(results: pd.DataFrame, epochs: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Keep one row per trial key (finished over failed, then the latest) and per trial epoch."""
    if not results.empty:
        finished_at = results.get("finished_at", pd.Series("", index=results.index)).fillna("")
        order = results.assign(_finished=results["status"] == FINISHED, _at=finished_at.astype(str))
        order = order.sort_values(["_finished", "_at"], kind="stable")
        results = order.drop_duplicates("trial_key", keep="last").drop(columns=["_finished", "_at"])
        results = results.sort_index().reset_index(drop=True)
    if not epochs.empty:
        epochs = epochs.drop_duplicates(["trial_key", "epoch"], keep="last").reset_index(drop=True)
    return results, epochs


def load_runs(run_dirs: Sequence[Path]) -> RunData:
    """Read and concatenate several run folders; trials with another status count as missing."""
    parts = [load_run(Path(run_dir)) for run_dir in run_dirs]
    frames = [p.results for p in parts if not p.results.empty]
    epoch_frames = [p.epochs for p in parts if not p.epochs.empty]
    results = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    epochs = pd.concat(epoch_frames, ignore_index=True) if epoch_frames else pd.DataFrame()
    results, epochs = _deduplicate(results, epochs)
    missing = [line for part in parts for line in part.missing]
    if not results.empty:
        other = results[~results["status"].isin([FINISHED, FAILED])]
        missing += [
            f"{row.run_dir}: trial {row.trial_key} has status {row.status!r}"
            for row in other.itertuples(index=False)
        ]
    return RunData(results, epochs, missing)


@dataclass
class _Progress:
    """Artefacts built and skipped so far."""

    built: list[Artefact] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def skip(self, name: str, reason: str) -> None:
        logger.info("skipped %s: %s", name, reason)
        self.skipped.append((name, reason))


TableBuilder = Callable[[pd.DataFrame], ResultTable]
TABLE_BUILDERS: dict[str, TableBuilder] = {
    "semi_supervised": semi_supervised_table,
    "supervised": supervised_table,
    "ablation": ablation_table,
}


def _build_tables(results: pd.DataFrame, out_dir: Path, progress: _Progress) -> None:
    finished = results[results["status"] == FINISHED] if not results.empty else results
    for name, builder in TABLE_BUILDERS.items():
        if finished.empty:
            progress.skip(name, "no finished trials")
            continue
        table = builder(results)
        if table.trials == 0:
            progress.skip(name, "no finished trial matches this table's setting and methods")
            continue
        paths = write_table(table, out_dir / TABLES_DIR)
        progress.built.append(Artefact(name, "table", tuple(paths), table.trials))


def _build_statistics(data_dir: Path | None, out_dir: Path, progress: _Progress) -> None:
    name = "dataset_statistics"
    if data_dir is None:
        progress.skip(name, "no data folder given")
        return
    try:
        table = dataset_statistics_table(data_dir)
    except FileNotFoundError as error:
        progress.skip(name, str(error))
        return
    paths = write_table(table, out_dir / TABLES_DIR)
    progress.built.append(Artefact(name, "table", tuple(paths), 0))


def save_figure(draw: Callable[[Axes], Axes], out_dir: Path, stem: str) -> list[Path]:
    """Draw on a fresh Agg figure and save it as PNG and PDF; return the paths."""
    figure = Figure(figsize=FIGURE_SIZE)
    FigureCanvasAgg(figure)
    draw(figure.subplots())
    figure.tight_layout()
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for suffix in FIGURE_FORMATS:
        path = out_dir / f"{stem}.{suffix}"
        figure.savefig(path, dpi=FIGURE_DPI)
        paths.append(path)
    return paths


def _build_curve(
    name: str,
    series: pd.DataFrame,
    draw: Callable[[Axes], Axes],
    trials: int,
    out_dir: Path,
    progress: _Progress,
) -> None:
    points = series["x"].nunique()
    if points == 0:
        progress.skip(name, "no finished trial to plot")
        return
    if points < MIN_CURVE_POINTS:
        progress.skip(name, f"needs at least {MIN_CURVE_POINTS} x values, found {points}")
        return
    paths = save_figure(draw, out_dir / FIGURES_DIR, name)
    progress.built.append(Artefact(name, "figure", tuple(paths), trials))


def _build_figures(data: RunData, out_dir: Path, progress: _Progress) -> None:
    results, epochs = data.results, data.epochs
    if results.empty or not (results["status"] == FINISHED).any():
        progress.skip("figures", "no finished trials")
        return
    for dataset in DATASET_NAMES:
        share = figures.labelled_share_series(results, dataset)
        _build_curve(
            f"labelled_share_{dataset}",
            share,
            partial(figures.plot_labelled_share, results=results, dataset=dataset),
            int(share["n"].sum()),  # each trial is one point of one line
            out_dir,
            progress,
        )
        latent = figures.latent_size_series(results, dataset)
        _build_curve(
            f"latent_size_{dataset}",
            latent,
            partial(figures.plot_latent_size, results=results, dataset=dataset),
            int(latent["n"].sum()),
            out_dir,
            progress,
        )
        for setting in (SUPERVISED, SEMI_SUPERVISED):
            name = f"dev_f1_{dataset}_{setting}"
            if epochs.empty:
                progress.skip(name, "no epoch rows")
                continue
            curves = figures.dev_curve_series(epochs, results, dataset, setting)
            _build_curve(
                name,
                curves,
                partial(
                    figures.plot_dev_curves,
                    epochs=epochs,
                    results=results,
                    dataset=dataset,
                    setting=setting,
                ),
                # Every trial reports epoch 1, so a line's largest count is its trial count.
                int(curves.groupby("line")["n"].max().sum()) if len(curves) else 0,
                out_dir,
                progress,
            )


FAILED_COLUMNS = ["trial_key", "experiment", "method", "dataset", "seed", "error", "run_dir"]


def _failed_rows(results: pd.DataFrame) -> pd.DataFrame:
    if results.empty:
        return pd.DataFrame(columns=FAILED_COLUMNS)
    failed = results[results["status"] == FAILED]
    present = [c for c in FAILED_COLUMNS if c in failed.columns]
    return failed[present].reset_index(drop=True)


def _markdown_cell(value: object) -> str:
    return str(value).replace("|", r"\|").replace("\n", " ")


def _index_lines(summary: ReportSummary) -> list[str]:
    """Return the lines of ``report.md``; paths are relative to the output folder."""
    lines = ["# Report", "", "Run folders:", ""]
    lines += [f"- `{run_dir}`" for run_dir in summary.run_dirs]
    lines += [
        "",
        f"Trials: {summary.finished} finished, {len(summary.failed)} failed, "
        f"{len(summary.missing)} missing.",
    ]
    for kind, title in (("table", "Tables"), ("figure", "Figures")):
        lines += ["", f"## {title}", ""]
        built = [a for a in summary.built if a.kind == kind]
        for artefact in built:
            links = ", ".join(
                f"[{p.suffix[1:]}]({p.relative_to(summary.out_dir).as_posix()})"
                for p in artefact.paths
            )
            source = f"from {artefact.trials} trials" if artefact.trials else "from the data files"
            lines.append(f"- {artefact.name} ({links}), {source}")
        if not built:
            lines.append(f"No {kind} was built.")
    if summary.skipped:
        lines += ["", "## Skipped", ""]
        lines += [f"- {name}: {reason}" for name, reason in summary.skipped]
    if len(summary.failed):
        lines += ["", "## Failed trials", ""]
        columns = list(summary.failed.columns)
        lines.append("| " + " | ".join(columns) + " |")
        lines.append("| " + " | ".join("---" for _ in columns) + " |")
        for row in summary.failed.itertuples(index=False):
            lines.append("| " + " | ".join(_markdown_cell(v) for v in row) + " |")
    if summary.missing:
        lines += ["", "## Missing", ""]
        lines += [f"- {item}" for item in summary.missing]
    return lines


def build_report(
    run_dirs: Sequence[Path], out_dir: Path, data_dir: Path | None = None
) -> ReportSummary:
    """Write every table and figure that the run folders have data for, and ``report.md``.

    Tables 2-4 and the figures use finished rows only. Table 1 is counted from the
    annotation files under ``data_dir`` and skipped when it is None or lacks them. An
    artefact without matching rows is skipped with a logged reason, not an error.

    Raises:
        FileNotFoundError: a run folder does not exist.
    """
    out_dir = Path(out_dir)
    data = load_runs([Path(r) for r in run_dirs])
    progress = _Progress()
    _build_tables(data.results, out_dir, progress)
    _build_statistics(data_dir, out_dir, progress)
    _build_figures(data, out_dir, progress)

    finished = 0 if data.results.empty else int((data.results["status"] == FINISHED).sum())
    summary = ReportSummary(
        out_dir=out_dir,
        run_dirs=tuple(Path(r) for r in run_dirs),
        finished=finished,
        failed=_failed_rows(data.results),
        missing=tuple(data.missing),
        built=tuple(progress.built),
        skipped=tuple(progress.skipped),
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    index = out_dir / INDEX_FILE
    index.write_text("\n".join(_index_lines(summary)) + "\n", encoding="utf-8")
    written = [path for artefact in summary.built for path in artefact.paths] + [index]
    logger.info("report: %d artefacts in %s", len(summary.built), out_dir)
    return replace(summary, written=tuple(written))
