"""The result store of a run folder: one Parquet row per trial, compacted into one table.

Layout::

    <run_dir>/spec.yaml                      the resolved spec of the latest sweep
    <run_dir>/trials/<key>/trial.json        the trial's settings, written when it starts
    <run_dir>/trials/<key>/trial.log         the trial's log (appended by every attempt)
    <run_dir>/trials/<key>/result.parquet    one row, written when the trial ends
    <run_dir>/trials/<key>/epochs.parquet    one row per epoch
    <run_dir>/results.parquet                every trial's row (rebuilt by compact)
    <run_dir>/epochs.parquet                 every trial's epochs (rebuilt by compact)

Every file is written to a temporary name in the same folder and moved into place with
``os.replace``, so a killed sweep never leaves a half-written table: it loses at most
the trials that were still running. The column set and types are :data:`RESULT_SCHEMA`
and :data:`EPOCH_SCHEMA`; a failed trial has the same columns with null scores.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from orchestrator.grid import canonical_json, labelled_count
from smvae.datasets import ENTITY_TYPES, get_dataset

logger = logging.getLogger(__name__)

FINISHED = "finished"
FAILED = "failed"

TRIALS_FOLDER = "trials"
RESULT_FILE = "result.parquet"
EPOCHS_FILE = "epochs.parquet"
TRIAL_INFO_FILE = "trial.json"
TRIAL_LOG_FILE = "trial.log"
SPEC_FILE = "spec.yaml"
RESULTS_TABLE = "results.parquet"
EPOCHS_TABLE = "epochs.parquet"

_SCORE_COLUMNS = [
    "dev_precision",
    "dev_recall",
    "dev_f1",
    "test_precision",
    "test_recall",
    "test_f1",
    *[f"test_f1_{t}" for t in ENTITY_TYPES],
    *[f"dev_f1_{t}" for t in ENTITY_TYPES],
    "test_macro_f1",
    "test_strict_precision",
    "test_strict_recall",
    "test_strict_f1",
]
_COUNT_COLUMNS = ["test_gold", "test_predicted", "test_correct"]

RESULT_SCHEMA = pa.schema(
    [
        ("experiment", pa.string()),
        ("trial_key", pa.string()),
        ("method", pa.string()),
        ("setting", pa.string()),
        ("dataset", pa.string()),
        ("dataset_sha256", pa.string()),
        ("labelled_count", pa.int64()),
        ("labelled_share", pa.float64()),
        ("labelled_seed", pa.int64()),
        ("seed", pa.int64()),
        ("latent_size", pa.int64()),
        ("encoder", pa.string()),
        ("encoder_finetune", pa.bool_()),
        ("image_encoder", pa.string()),
        ("images", pa.string()),
        ("image_coverage", pa.float64()),
        *[(name, pa.float64()) for name in _SCORE_COLUMNS],
        *[(name, pa.int64()) for name in _COUNT_COLUMNS],
        ("best_epoch", pa.int64()),
        ("epochs_run", pa.int64()),
        ("train_seconds", pa.float64()),
        ("wall_seconds", pa.float64()),
        ("device", pa.string()),
        ("git_commit", pa.string()),
        ("git_dirty", pa.bool_()),
        ("package_versions", pa.string()),
        ("started_at", pa.string()),
        ("finished_at", pa.string()),
        ("status", pa.string()),
        ("error", pa.string()),
        ("config_json", pa.string()),
    ]
)

EPOCH_SCHEMA = pa.schema(
    [
        ("trial_key", pa.string()),
        ("experiment", pa.string()),
        ("method", pa.string()),
        ("dataset", pa.string()),
        ("seed", pa.int64()),
        ("epoch", pa.int64()),
        ("train_loss", pa.float64()),
        ("loss_l1", pa.float64()),
        ("loss_l2", pa.float64()),
        ("loss_l3", pa.float64()),
        ("dev_precision", pa.float64()),
        ("dev_recall", pa.float64()),
        ("dev_f1", pa.float64()),
        ("seconds", pa.float64()),
    ]
)

# Row columns that a method's metrics may set; the rest come from the trial and the run.
METRIC_COLUMNS = frozenset(
    [
        *_SCORE_COLUMNS,
        *_COUNT_COLUMNS,
        "labelled_count",
        "labelled_share",
        "latent_size",
        "image_coverage",
        "best_epoch",
        "epochs_run",
        "train_seconds",
        "device",
    ]
)


def trial_dir(run_dir: str | Path, key: str) -> Path:
    return Path(run_dir) / TRIALS_FOLDER / key


def trial_log_path(run_dir: str | Path, key: str) -> Path:
    return trial_dir(run_dir, key) / TRIAL_LOG_FILE


DESCRIPTION_COLUMNS = ("latent_size", "images", "image_encoder")


def result_row(
    trial: Mapping[str, Any],
    *,
    key: str,
    experiment: str,
    status: str,
    run_info: Mapping[str, Any],
    metrics: Mapping[str, Any] | None = None,
    error: str = "",
) -> dict[str, Any]:
    """Assemble one row of :data:`RESULT_SCHEMA` from a trial, its metrics and run facts.

    ``run_info`` contains ``started_at``, ``finished_at``, ``wall_seconds``, ``git_commit``,
    ``git_dirty``, ``package_versions`` and ``device``. Metrics outside the schema are
    dropped (the full trial config is kept in ``config_json``).
    """
    dataset = get_dataset(trial["dataset"], trial.get("data_dir"))
    train_tweets = dataset.split("train").tweets
    count = labelled_count(trial["dataset"], trial["labelled"], trial.get("data_dir"))
    latent = trial.get("latent_size", trial.get("model", {}).get("latent_size"))
    row: dict[str, Any] = dict.fromkeys(RESULT_SCHEMA.names)
    row.update(
        experiment=experiment,
        trial_key=key,
        method=trial["method"],
        setting=trial["setting"],
        dataset=trial["dataset"],
        dataset_sha256=dataset.checksum,
        labelled_count=count,
        labelled_share=count / train_tweets,
        labelled_seed=trial["labelled_seed"],
        seed=trial["seed"],
        latent_size=latent,
        encoder=trial["encoder"]["name"],
        encoder_finetune=bool(trial["encoder"]["finetune"]),
        image_encoder=trial["images"]["name"],
        images=trial["images"]["name"],
        status=status,
        error=error,
        config_json=canonical_json(trial),
    )
    for name in ("started_at", "finished_at", "wall_seconds", "device"):
        row[name] = run_info.get(name)
    row["git_commit"] = run_info.get("git_commit", "unknown")
    row["git_dirty"] = bool(run_info.get("git_dirty", False))
    row["package_versions"] = run_info.get("package_versions", "{}")
    for name, value in (metrics or {}).items():
        if name in METRIC_COLUMNS and value is not None:
            row[name] = value
    # What the method reports it used beats what the trial requested: a text-only
    # baseline reads no images and has no latent size, whatever the spec shares.
    for name in DESCRIPTION_COLUMNS:
        if metrics is not None and name in metrics:
            row[name] = metrics[name]
    return row


def epoch_rows(
    epochs: Iterable[Mapping[str, Any]], trial: Mapping[str, Any], *, key: str, experiment: str
) -> list[dict[str, Any]]:
    """Rows of :data:`EPOCH_SCHEMA`; terms a method does not have stay null."""
    rows = []
    for epoch in epochs:
        row: dict[str, Any] = dict.fromkeys(EPOCH_SCHEMA.names)
        row.update({name: epoch.get(name) for name in EPOCH_SCHEMA.names if name in epoch})
        row.update(
            trial_key=key,
            experiment=experiment,
            method=trial["method"],
            dataset=trial["dataset"],
            seed=trial["seed"],
        )
        rows.append(row)
    return rows


def write_parquet_atomic(table: pa.Table, path: Path) -> None:
    """Write a table to a temporary file beside ``path``, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        pq.write_table(table, temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_text_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        temporary.write_text(text, encoding="utf-8")
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_trial_info(run_dir: str | Path, key: str, trial: Mapping[str, Any]) -> None:
    """Record a trial's settings in its folder (``trial.json``) when it starts."""
    write_text_atomic(
        trial_dir(run_dir, key) / TRIAL_INFO_FILE, json.dumps(trial, indent=2, sort_keys=True)
    )


def write_trial_result(
    run_dir: str | Path,
    row: Mapping[str, Any],
    epochs: list[dict[str, Any]] | None = None,
) -> Path:
    """Write a trial's row (and its epoch rows) into its folder; returns the row's path.

    The epochs go first, so a present ``result.parquet`` means the trial's files are
    complete.
    """
    folder = trial_dir(run_dir, str(row["trial_key"]))
    if epochs is not None:
        write_parquet_atomic(
            pa.Table.from_pylist(epochs, schema=EPOCH_SCHEMA), folder / EPOCHS_FILE
        )
    path = folder / RESULT_FILE
    write_parquet_atomic(pa.Table.from_pylist([dict(row)], schema=RESULT_SCHEMA), path)
    return path


def read_trial_row(run_dir: str | Path, key: str) -> dict[str, Any] | None:
    """Read the stored row of one trial; returns None when it has none yet."""
    path = trial_dir(run_dir, key) / RESULT_FILE
    if not path.is_file():
        return None
    rows = pq.read_table(path, schema=RESULT_SCHEMA).to_pylist()
    return rows[-1] if rows else None


def _trial_files(run_dir: str | Path, name: str) -> list[Path]:
    root = Path(run_dir) / TRIALS_FOLDER
    return sorted(root.glob(f"*/{name}")) if root.is_dir() else []


def _to_frame(table: pa.Table) -> pd.DataFrame:
    # Nullable Int64 keeps integer columns integer when failed rows leave them null.
    return table.to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get)


def _read_tables(paths: list[Path], schema: pa.Schema) -> pa.Table:
    tables = [pq.read_table(path, schema=schema) for path in paths]
    return pa.concat_tables(tables) if tables else schema.empty_table()


def collect_results(run_dir: str | Path) -> pd.DataFrame:
    """Every trial's row from the per-trial files, one row per key.

    Where a key has several rows, a finished row beats failed ones and, among rows of
    the same status, the latest ``finished_at`` wins.
    """
    frame = _to_frame(_read_tables(_trial_files(run_dir, RESULT_FILE), RESULT_SCHEMA))
    if frame.empty:
        return frame
    ranked = frame.assign(_finished=frame["status"] == FINISHED)
    ranked = ranked.sort_values(["_finished", "finished_at"], ascending=False, na_position="last")
    unique = ranked.drop_duplicates("trial_key", keep="first").drop(columns="_finished")
    return unique.sort_values("trial_key").reset_index(drop=True)


def collect_epochs(run_dir: str | Path, keys: Iterable[str] | None = None) -> pd.DataFrame:
    """Every trial's epoch rows from the per-trial files (only ``keys`` when given)."""
    paths = _trial_files(run_dir, EPOCHS_FILE)
    if keys is not None:
        wanted = set(keys)
        paths = [path for path in paths if path.parent.name in wanted]
    frame = _to_frame(_read_tables(paths, EPOCH_SCHEMA))
    return frame.sort_values(["trial_key", "epoch"]).reset_index(drop=True)


def compact(run_dir: str | Path) -> pd.DataFrame:
    """Rebuild ``results.parquet`` and ``epochs.parquet`` from the per-trial files."""
    run_dir = Path(run_dir)
    results = collect_results(run_dir)
    epochs = collect_epochs(run_dir, results["trial_key"] if not results.empty else [])
    write_parquet_atomic(
        pa.Table.from_pandas(results, schema=RESULT_SCHEMA, preserve_index=False),
        run_dir / RESULTS_TABLE,
    )
    write_parquet_atomic(
        pa.Table.from_pandas(epochs, schema=EPOCH_SCHEMA, preserve_index=False),
        run_dir / EPOCHS_TABLE,
    )
    logger.info(
        "compacted %d trial rows and %d epoch rows in %s", len(results), len(epochs), run_dir
    )
    return results


def finished_keys(run_dir: str | Path) -> set[str]:
    """Keys of the trials that have a finished row."""
    results = collect_results(run_dir)
    if results.empty:
        return set()
    return set(results.loc[results["status"] == FINISHED, "trial_key"])


def load_results(run_dir: str | Path) -> pd.DataFrame:
    """The run's result table, read from the per-trial files.

    The per-trial files are the source of truth: a sweep killed before it compacted
    still shows every trial that finished, which a stale ``results.parquet`` would not.
    """
    return collect_results(run_dir)


def load_epochs(run_dir: str | Path) -> pd.DataFrame:
    return collect_epochs(run_dir)
