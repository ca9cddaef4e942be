"""Model directories: everything needed to reload a trained model and describe it.

The model is SMVAE or one of the text baselines' taggers (``baselines.taggers``);
``config.json`` records the method, which decides the model class on loading.

Layout::

    model.safetensors        weights (safetensors, no pickled code)
    config.json              method, model config (SMVAEConfig or TaggerConfig), run settings
    labels.json              span label names, index 0 is O
    encoder.json             text encoder name, resolved path, identity hash, pooling
    encoder/                 the trained text encoder and its tokenizer (Hugging Face
                             format), only when the encoder was fine-tuned
    dataset.json             dataset name, release checksum, split checksums
    labelled_indices.json    training-split indices of the labelled tweets
    metrics.json             development and test scores and run facts
    epochs.csv               one row per epoch
"""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from safetensors.torch import load_file, save_file
from torch import nn

from smvae.batching import LabelMap
from smvae.datasets import get_dataset
from smvae.features import TextEncoderSettings, encoder_identity, resolve_encoder_path
from smvae.model import SMVAE, SMVAEConfig
from smvae.settings import SMVAE_METHODS, RunSettings

if TYPE_CHECKING:
    from baselines.taggers import Tagger
    from smvae.train import Trainer, TrainingResult
    from smvae.word_encoder import WordEncoder

FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
ENCODER_FOLDER = "encoder"


@dataclass
class LoadedModel:
    """A model read back from its directory, with what is needed to feed it."""

    model: SMVAE | Tagger
    run: RunSettings
    label_map: LabelMap
    text: TextEncoderSettings
    folder: Path

    @property
    def uses_images(self) -> bool:
        """Whether the model reads an image feature (SMVAE with images; never a tagger)."""
        return isinstance(self.model, SMVAE) and self.model.config.use_images

    @property
    def image_dim(self) -> int | None:
        """Size of the pooled image feature the model reads, None when it reads none."""
        return self.model.config.image_dim if isinstance(self.model, SMVAE) else None


def _write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=2, sort_keys=True, default=str) + "\n")


def save_model_dir(folder: Path, trainer: Trainer, result: TrainingResult) -> None:
    """Write the trained SMVAE, its settings and its scores into ``folder``."""
    write_model_dir(
        folder,
        trainer.run,
        trainer.model,
        trainer.model.config.to_dict(),
        trainer.label_map,
        {name: split.sha256 for name, split in trainer.splits.items()},
        trainer.labelled,
        result,
        trainer.encoder,
    )


def write_model_dir(
    folder: Path,
    run: RunSettings,
    model: nn.Module,
    model_config: Mapping[str, Any],
    label_map: LabelMap,
    split_checksums: Mapping[str, str],
    labelled: Sequence[int],
    result: TrainingResult,
    encoder: WordEncoder | None = None,
) -> None:
    """Write a trained model of any method with the files listed in the module docstring.

    ``model_config`` is the config that rebuilds ``model`` (SMVAEConfig or TaggerConfig
    values), ``labelled`` the training-split indices of the labelled tweets and
    ``encoder`` the fine-tuned text encoder, if any.
    """
    folder.mkdir(parents=True, exist_ok=True)
    state = {
        name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()
    }
    save_file(state, str(folder / WEIGHTS_FILE))
    _write_json(
        folder / "config.json",
        {
            "format_version": FORMAT_VERSION,
            "method": run.method,
            "model": dict(model_config),
            "run": run.to_dict(),
        },
    )
    _write_json(folder / "labels.json", label_map.names)
    encoder_facts = {
        "name": run.encoder.name,
        "path": resolve_encoder_path(run.encoder.name),
        "identity": encoder_identity(run.encoder.name),
        "pooling": run.encoder.pooling,
        "max_length": run.encoder.max_length,
        "finetuned": encoder is not None,
    }
    if encoder is None and (folder / ENCODER_FOLDER).is_dir():
        # A model written earlier into this folder was fine-tuned, so its encoder is stale.
        shutil.rmtree(folder / ENCODER_FOLDER)
    if encoder is not None:
        encoder.save(folder / ENCODER_FOLDER)
        # The model reads the trained weights, and base_identity keeps the base encoder on record.
        encoder_facts["base_identity"] = encoder_facts["identity"]
        encoder_facts["path"] = ENCODER_FOLDER
        encoder_facts["identity"] = encoder_identity(str(folder / ENCODER_FOLDER))
    _write_json(folder / "encoder.json", encoder_facts)
    _write_json(
        folder / "dataset.json",
        {
            "name": run.dataset,
            "checksum": get_dataset(run.dataset, run.data_dir).checksum,
            "splits": dict(split_checksums),
        },
    )
    _write_json(folder / "labelled_indices.json", list(labelled))
    _write_json(folder / "metrics.json", result.metrics)
    if result.epochs:
        with open(folder / "epochs.csv", "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(result.epochs[0]))
            writer.writeheader()
            writer.writerows(result.epochs)


def build_model(method: str, model_config: Mapping[str, Any]) -> SMVAE | Tagger:
    """Create the untrained model of ``method`` from the config values of its directory."""
    if method in SMVAE_METHODS:
        return SMVAE(SMVAEConfig.from_dict(dict(model_config)))
    # Imported here so that loading an SMVAE directory never imports the baselines package.
    from baselines.taggers import TaggerConfig, build_tagger

    return build_tagger(TaggerConfig(**model_config))


def _read_json(path: Path) -> Any:
    """Read one JSON file of a model directory; errors name the file."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; the model directory is incomplete")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(
            f"{path}: invalid JSON ({error}); write the model directory again"
        ) from None


def check_saved_encoder(encoder_folder: Path, identity: str | None) -> None:
    """Raise when a fine-tuned encoder's files are missing or differ from those written.

    A deleted tokenizer file would otherwise load as an almost empty tokenizer, and
    replaced weights would load silently: both give wrong predictions without an error.
    """
    if not (encoder_folder / "config.json").is_file():
        raise FileNotFoundError(
            f"{encoder_folder} contains no fine-tuned encoder (config.json missing); "
            "the model directory is incomplete, write it again with `mner train`"
        )
    found = encoder_identity(str(encoder_folder))
    if identity is not None and found != identity:
        raise ValueError(
            f"the files in {encoder_folder} differ from those the model was saved with "
            f"(identity {found[:12]}, expected {identity[:12]} from encoder.json); a file "
            "was changed, removed or damaged, so write the model directory again with "
            "`mner train`"
        )


def load_model_dir(folder: str | Path) -> LoadedModel:
    """Read a model directory written by :func:`write_model_dir` (SMVAE or a tagger)."""
    folder = Path(folder)
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        raise FileNotFoundError(
            f"{weights} not found; give a model directory written by `mner train`"
        )
    config = _read_json(folder / "config.json")
    if config.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{folder / 'config.json'}: format_version {config.get('format_version')!r} "
            f"is not supported (expected {FORMAT_VERSION})"
        )
    run = RunSettings.from_mapping(config["run"])
    # Directories written before ``method`` was recorded at the top level take it from the run.
    model = build_model(config.get("method", run.method), config["model"])
    model.load_state_dict(load_file(str(weights)))
    model.eval()
    label_map = LabelMap(_read_json(folder / "labels.json")[1:])
    encoder = _read_json(folder / "encoder.json")
    name = encoder["name"]
    if encoder.get("finetuned"):
        name = str(folder / ENCODER_FOLDER)
        check_saved_encoder(folder / ENCODER_FOLDER, encoder.get("identity"))
    text = TextEncoderSettings(name, encoder["pooling"], encoder["max_length"])
    return LoadedModel(model, run, label_map, text, folder)
