"""Model directories: everything needed to reload a trained SMVAE and say what it is.

Layout::

    model.safetensors        weights (safetensors, no pickled code)
    config.json              SMVAEConfig and the full run settings
    labels.json              span label names, index 0 is O
    encoder.json             text encoder name, resolved path, identity hash, pooling
    dataset.json             dataset name, release checksum, split checksums
    labelled_indices.json    training-split indices of the labelled tweets
    metrics.json             development and test scores and run facts
    epochs.csv               one row per epoch
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from safetensors.torch import load_file, save_file

from smvae.batching import LabelMap
from smvae.datasets import get_dataset
from smvae.features import TextEncoderSettings, encoder_identity, resolve_encoder_path
from smvae.model import SMVAE, SMVAEConfig
from smvae.settings import RunSettings

if TYPE_CHECKING:
    from smvae.train import Trainer, TrainingResult

FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"


@dataclass
class LoadedModel:
    """A model read back from its directory, with what is needed to feed it."""

    model: SMVAE
    run: RunSettings
    label_map: LabelMap
    text: TextEncoderSettings
    folder: Path


def _write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=2, sort_keys=True, default=str) + "\n")


def save_model_dir(folder: Path, trainer: Trainer, result: TrainingResult) -> None:
    """Write the trained model, its settings and its scores into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    run = trainer.run
    state = {name: tensor.contiguous() for name, tensor in trainer.model.state_dict().items()}
    save_file(state, str(folder / WEIGHTS_FILE))
    _write_json(
        folder / "config.json",
        {
            "format_version": FORMAT_VERSION,
            "model": trainer.model.config.to_dict(),
            "run": run.to_dict(),
        },
    )
    _write_json(folder / "labels.json", trainer.label_map.names)
    _write_json(
        folder / "encoder.json",
        {
            "name": run.encoder.name,
            "path": resolve_encoder_path(run.encoder.name),
            "identity": encoder_identity(run.encoder.name),
            "pooling": run.encoder.pooling,
            "max_length": run.encoder.max_length,
        },
    )
    _write_json(
        folder / "dataset.json",
        {
            "name": run.dataset,
            "checksum": get_dataset(run.dataset, run.data_dir).checksum,
            "splits": {name: split.sha256 for name, split in trainer.splits.items()},
        },
    )
    _write_json(folder / "labelled_indices.json", trainer.labelled)
    _write_json(folder / "metrics.json", result.metrics)
    if result.epochs:
        with open(folder / "epochs.csv", "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(result.epochs[0]))
            writer.writeheader()
            writer.writerows(result.epochs)


def load_model_dir(folder: str | Path) -> LoadedModel:
    """Read a model directory written by :func:`save_model_dir`."""
    folder = Path(folder)
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        raise FileNotFoundError(
            f"{weights} not found; give a model directory written by `mner train`"
        )
    config = json.loads((folder / "config.json").read_text())
    if config.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{folder / 'config.json'}: format_version {config.get('format_version')!r} "
            f"is not supported (expected {FORMAT_VERSION})"
        )
    model = SMVAE(SMVAEConfig.from_dict(config["model"]))
    model.load_state_dict(load_file(str(weights)))
    model.eval()
    run = RunSettings.from_mapping(config["run"])
    label_map = LabelMap(json.loads((folder / "labels.json").read_text())[1:])
    encoder = json.loads((folder / "encoder.json").read_text())
    text = TextEncoderSettings(encoder["name"], encoder["pooling"], encoder["max_length"])
    return LoadedModel(model, run, label_map, text, folder)
