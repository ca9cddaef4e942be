"""SMVAE training runs end to end on the generated dataset (smvae.synthetic)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from orchestrator.cli import main as mner
from smvae.corpus import load_split_tweets
from smvae.datasets import get_dataset
from smvae.inference import Predictor, TextInput
from smvae.loop import TrainingDivergedError
from smvae.model_dir import load_model_dir
from smvae.settings import RunSettings
from smvae.synthetic import generate_dataset
from smvae.train import labelled_subset, predict_split, run_training

pytestmark = pytest.mark.slow

TINY_MODEL = {"hidden_size": 32, "latent_size": 8, "dropout": 0.0}


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data")
    generate_dataset(root)
    return root


def settings(root: Path, cache: Path, **overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "method": "smvae",
        "dataset": "synthetic",
        "setting": "supervised",
        "labelled": "all",
        "seed": 0,
        "data_dir": str(root),
        "cache_dir": str(cache),
        "images": "none",
        "model": dict(TINY_MODEL),
        "training": {"epochs": 3, "patience": 3, "learning_rate": 0.005, "batch_size": 8},
    }
    values.update(overrides)
    return values


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


def test_image_signal_beats_text_alone(synthetic_root: Path, cache: Path) -> None:
    # Entity types in this dataset are fixed by the image colour alone, so only a model
    # whose image path carries information can type the entities.
    training = {"epochs": 25, "patience": 25, "learning_rate": 0.01, "batch_size": 8}
    with_images = run_training(
        settings(synthetic_root, cache, images="efficientnet-lite0", training=training)
    )
    text_only = run_training(settings(synthetic_root, cache, training=training))

    assert with_images.metrics["image_coverage"] == 1.0
    assert text_only.metrics["images"] == "none"
    assert with_images.metrics["test_f1"] >= 70.0
    assert with_images.metrics["test_f1"] >= text_only.metrics["test_f1"] + 25.0


def test_same_seeds_same_metrics(synthetic_root: Path, cache: Path) -> None:
    first = run_training(settings(synthetic_root, cache, setting="semi-supervised", labelled=20))
    second = run_training(settings(synthetic_root, cache, setting="semi-supervised", labelled=20))

    def scores(metrics: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in metrics.items() if k != "train_seconds"}

    assert scores(first.metrics) == scores(second.metrics)
    assert [e["train_loss"] for e in first.epochs] == [e["train_loss"] for e in second.epochs]


def test_semi_supervised_uses_unlabelled_loss(synthetic_root: Path, cache: Path) -> None:
    result = run_training(settings(synthetic_root, cache, setting="semi-supervised", labelled=20))

    assert result.metrics["labelled_count"] == 20
    assert result.metrics["unlabelled_count"] == 60
    assert all(np.isfinite(e["loss_l3"]) for e in result.epochs)
    assert all(np.isfinite(e["loss_l2"]) for e in result.epochs)


def test_ablation_has_no_elbo_terms(synthetic_root: Path, cache: Path) -> None:
    result = run_training(settings(synthetic_root, cache, method="smvae-no-mvae"))

    assert result.metrics["latent_size"] is None
    assert all(np.isnan(e["loss_l2"]) for e in result.epochs)
    assert result.metrics["test_gold"] > 0


def test_labelled_subset_depends_on_seed_and_checksum() -> None:
    first = labelled_subset(4000, 100, 0, "checksum-a")

    assert first == labelled_subset(4000, 100, 0, "checksum-a")
    assert first != labelled_subset(4000, 100, 1, "checksum-a")
    assert first != labelled_subset(4000, 100, 0, "checksum-b")
    assert len(set(first)) == 100
    assert first == sorted(first)


def test_train_save_load_predict_round_trip(
    synthetic_root: Path, cache: Path, tmp_path: Path
) -> None:
    model_dir = tmp_path / "model"
    result = run_training(settings(synthetic_root, cache), model_dir=model_dir)
    loaded = load_model_dir(model_dir)

    for name in ("config.json", "labels.json", "encoder.json", "dataset.json", "epochs.csv"):
        assert (model_dir / name).is_file(), name
    assert json.loads((model_dir / "labelled_indices.json").read_text()) == list(range(80))
    assert loaded.run == RunSettings.from_mapping(settings(synthetic_root, cache))

    # Predictions from raw text through the live encoder equal those of the trained
    # model on cached features.
    assert result.model is not None
    _, tweets = load_split_tweets("synthetic", "test", synthetic_root)
    from smvae.train import build_trainer, prepare_features

    trainer = build_trainer(loaded.run, prepare_features(loaded.run))
    trainer.model = result.model
    expected = predict_split(trainer, "test")
    records = Predictor(loaded).predict([TextInput(" ".join(t.words)) for t in tweets])
    predicted = [
        [(e["start_word"], e["end_word"], e["type"]) for e in record["entities"]]
        for record in records
    ]
    assert predicted == expected
    first = next(r for r in records if r["entities"])
    entity = first["entities"][0]
    assert first["text"][entity["start_char"] : entity["end_char"]] == entity["text"]


def test_cli_train_evaluate_predict(
    synthetic_root: Path, cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "run.yaml"
    values = settings(synthetic_root, cache)
    import yaml

    config.write_text(yaml.safe_dump(values))
    model_dir = tmp_path / "model"
    assert mner(["train", str(config), "training.epochs=2", "--out", str(model_dir)]) == 0
    metrics = json.loads((model_dir / "metrics.json").read_text())
    assert metrics["epochs_run"] == 2

    test_file = synthetic_root / "synthetic" / "test.txt"
    assert mner(["evaluate", str(model_dir), str(test_file), "--out", str(tmp_path / "eval")]) == 0
    evaluated = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert evaluated["f1"] == pytest.approx(metrics["test_f1"])
    conll = (tmp_path / "eval" / "predictions.conll").read_text().splitlines()
    assert conll[0] == "IMGID:test_0"
    assert len(conll[1].split("\t")) == 3

    capsys.readouterr()
    assert mner(["predict", str(model_dir), "--text", "look at zorvik today"]) == 0
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert record["text"] == "look at zorvik today"
    assert isinstance(record["entities"], list)


def test_non_finite_features_stop_with_epoch_and_batch(
    synthetic_root: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    run_training(settings(synthetic_root, cache, training={"epochs": 1, "batch_size": 80}))
    # Corrupt the cached word vectors of the training split: the loss becomes NaN.
    folder = next((cache / "text").glob("synthetic-train-*"))
    vectors = np.load(folder / "vectors.npy", mmap_mode="r+")
    vectors[:] = np.nan
    vectors.flush()
    del vectors

    with pytest.raises(TrainingDivergedError, match=r"epoch 1, batch 1"):
        run_training(settings(synthetic_root, cache, training={"epochs": 1, "batch_size": 80}))


def test_image_coverage_floor(tmp_path: Path) -> None:
    root = tmp_path / "data"
    generate_dataset(
        root, sizes={"train": 12, "valid": 4, "test": 4}, missing_images=["train_0", "train_1"]
    )
    values = settings(
        root,
        tmp_path / "cache",
        images={"name": "efficientnet-lite0", "min_coverage": 0.95},
        training={"epochs": 1},
    )
    with pytest.raises(RuntimeError, match=r"image coverage 0\.900 is below"):
        run_training(values)

    values["images"]["min_coverage"] = 0.5
    result = run_training(values)
    assert result.metrics["image_coverage"] == pytest.approx(18 / 20)


def test_unknown_dataset_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown dataset 'nope'"):
        RunSettings.from_mapping({"dataset": "nope", "data_dir": str(tmp_path)})
    assert get_dataset("twitter2015").display_name == "Twitter-2015"


def test_unknown_setting_names_the_key() -> None:
    with pytest.raises(ValueError, match=r"unknown setting training\.epoch;"):
        RunSettings.from_mapping({"training": {"epoch": 3}})
