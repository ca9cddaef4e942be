"""Text-baseline training runs end to end on the generated dataset (smvae.synthetic).

Entity types of the generated tweets are fixed by their images alone, so a text-only
tagger can learn the entity boundaries but must guess the types: the tests check
boundaries, not typed F1, for learning.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import pytest
import yaml

from baselines.strategies import SelfTraining, SeqVATConfig
from baselines.train import (
    TaggerResult,
    build_trainer,
    labelled_batch,
    predict_tagger_spans,
    prepare_features,
    run_training,
    select_pseudo_labels,
)
from orchestrator.cli import main as mner
from orchestrator.methods import get_method, import_function
from orchestrator.store import METRIC_COLUMNS
from smvae.corpus import load_split_tweets
from smvae.inference import Predictor, TextInput
from smvae.model_dir import load_model_dir
from smvae.settings import RunSettings
from smvae.spans import spans_from_tags
from smvae.synthetic import generate_dataset

pytestmark = pytest.mark.slow

SUPERVISED_METHODS = ("bert", "bert-crf", "bert-bilstm-crf")
STRATEGY_METHODS = ("st", "em", "seqvat")
TINY_TAGGER = {"lstm_hidden": 16, "dropout": 0.0}
# Result-row columns that describe a run; scores come from METRIC_COLUMNS.
DESCRIPTION_KEYS = {
    "method",
    "setting",
    "dataset",
    "dataset_sha256",
    "labelled_seed",
    "seed",
    "encoder",
    "encoder_finetune",
    "image_encoder",
    "images",
}


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data")
    generate_dataset(root)
    return root


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


def settings(root: Path, cache: Path, method: str, **overrides: Any) -> dict[str, Any]:
    semi = method in STRATEGY_METHODS
    values: dict[str, Any] = {
        "method": method,
        "dataset": "synthetic",
        "setting": "semi-supervised" if semi else "supervised",
        "labelled": 20 if semi else "all",
        "seed": 0,
        "data_dir": str(root),
        "cache_dir": str(cache),
        "images": "none",
        "model": dict(TINY_TAGGER),
        "training": {"epochs": 2, "patience": 2, "learning_rate": 0.01, "batch_size": 8},
    }
    values.update(overrides)
    return values


def without_timing(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in metrics.items() if k != "train_seconds"}


@pytest.mark.parametrize("method", SUPERVISED_METHODS + STRATEGY_METHODS)
def test_method_trains_end_to_end(synthetic_root: Path, cache: Path, method: str) -> None:
    result = run_training(settings(synthetic_root, cache, method))
    metrics = result.metrics

    assert set(metrics) >= METRIC_COLUMNS | DESCRIPTION_KEYS
    assert metrics["method"] == method
    assert metrics["latent_size"] is None
    assert metrics["images"] == "none"
    assert metrics["image_encoder"] == "none"
    assert metrics["image_coverage"] == 0.0
    assert metrics["test_gold"] > 0
    assert metrics["epochs_run"] == len(result.epochs) >= 2
    semi = method in STRATEGY_METHODS
    assert metrics["labelled_count"] == (20 if semi else 80)
    assert metrics["unlabelled_count"] == (60 if semi else 0)
    for row in result.epochs:
        assert math.isfinite(row["train_loss"])
        assert math.isfinite(row["loss_l1"])
        assert math.isnan(row["loss_l3"])
        # Only EM and SeqVAT add a strategy term to the loss of each step.
        assert math.isfinite(row["loss_l2"]) == (method in ("em", "seqvat"))


def test_strategy_term_adds_to_total_loss(synthetic_root: Path, cache: Path) -> None:
    result = run_training(settings(synthetic_root, cache, "em"))

    for row in result.epochs:
        assert row["loss_l2"] > 0.0
        assert row["train_loss"] == pytest.approx(row["loss_l1"] + row["loss_l2"])


@pytest.mark.parametrize("method", ["seqvat", "st"])
def test_same_seeds_same_metrics(synthetic_root: Path, cache: Path, method: str) -> None:
    strategy = {"threshold": 0.0, "rounds": 1} if method == "st" else {}
    values = settings(synthetic_root, cache, method, strategy=strategy)
    first = run_training(values)
    second = run_training(values)
    other_seed = run_training({**values, "seed": 1})

    assert without_timing(first.metrics) == without_timing(second.metrics)
    assert [e["train_loss"] for e in first.epochs] == [e["train_loss"] for e in second.epochs]
    assert [e["train_loss"] for e in first.epochs] != [e["train_loss"] for e in other_seed.epochs]


def test_self_training_numbers_epochs_across_rounds(synthetic_root: Path, cache: Path) -> None:
    # Threshold 0 keeps every unlabelled tweet, so each of the two rounds trains.
    values = settings(synthetic_root, cache, "st", strategy={"rounds": 2, "threshold": 0.0})
    result = run_training(values)

    assert [e["epoch"] for e in result.epochs] == [1, 2, 3, 4, 5, 6]
    best = max(result.epochs, key=lambda e: e["dev_f1"])
    assert result.metrics["best_epoch"] == best["epoch"]
    assert result.metrics["dev_f1"] == pytest.approx(best["dev_f1"])


def test_pseudo_labels_cover_unlabelled_tweets(synthetic_root: Path, cache: Path) -> None:
    run = RunSettings.from_mapping(
        settings(synthetic_root, cache, "st", strategy={"threshold": 0.0})
    )
    trainer = build_trainer(run, prepare_features(run))
    kept = select_pseudo_labels(trainer, SelfTraining(run.strategy_config()))

    assert sorted(kept) == trainer.unlabelled
    tweets = trainer.splits["train"].tweets
    for index, tags in kept.items():
        assert len(tags) == len(tweets[index])
        assert spans_from_tags(tags, strict=True) == spans_from_tags(tags)


def test_orphan_inside_tags_train_as_begin(synthetic_root: Path, cache: Path) -> None:
    run = RunSettings.from_mapping(settings(synthetic_root, cache, "bert-crf"))
    trainer = build_trainer(run, prepare_features(run))
    train = trainer.splits["train"]
    index = trainer.labelled[0]
    length = len(train.tweets[index])
    # Orphan I- tags occur in Twitter-2015: the CRF forbids O -> I-X and start -> I-X.
    orphans = ("I-PER",) + ("O",) * (length - 2) + ("I-LOC",)
    train.tweets[index] = dataclasses.replace(train.tweets[index], tags=orphans)

    assert trainer.training_tags(index)[0] == "B-PER"
    assert trainer.training_tags(index)[-1] == "B-LOC"
    batch = labelled_batch(trainer, [index])
    assert batch.tags is not None
    loss = trainer.tagger.loss(batch.words, batch.mask, batch.tags)
    # A forbidden transition would add 1e4 to the negative log-likelihood.
    assert loss.item() < 100.0


def test_tagger_learns_entity_boundaries(synthetic_root: Path, cache: Path) -> None:
    training = {"epochs": 10, "patience": 10, "learning_rate": 0.02, "batch_size": 8}
    result = run_training(settings(synthetic_root, cache, "bert-crf", training=training))
    assert isinstance(result, TaggerResult)
    assert result.tagger is not None

    run = RunSettings.from_mapping(settings(synthetic_root, cache, "bert-crf"))
    test = prepare_features(run)["test"]
    predicted = predict_tagger_spans(result.tagger, test, batch_size=16)
    gold = {(i, s, e) for i, t in enumerate(test.tweets) for s, e, _ in spans_from_tags(t.tags)}
    found = {(i, s, e) for i, spans in enumerate(predicted) for s, e, _, _ in spans}
    # Boundaries follow from the words; types are a coin flip without the image.
    assert len(gold & found) >= 0.9 * len(gold)
    assert len(gold & found) >= 0.9 * len(found)


def test_entity_scores_are_probabilities(synthetic_root: Path, cache: Path) -> None:
    training = {"epochs": 3, "patience": 3, "learning_rate": 0.02, "batch_size": 8}
    crf = run_training(settings(synthetic_root, cache, "bert-crf", training=training))
    softmax = run_training(settings(synthetic_root, cache, "bert", training=training))
    run = RunSettings.from_mapping(settings(synthetic_root, cache, "bert"))
    test = prepare_features(run)["test"]
    assert crf.tagger is not None and softmax.tagger is not None

    for spans in predict_tagger_spans(crf.tagger, test, batch_size=16):
        scores = {score for _, _, _, score in spans}
        # A CRF entity gets the probability of its tweet's whole decoded sequence.
        assert len(scores) <= 1
        assert all(0.0 < score <= 1.0 for score in scores)
    multi_word = 0
    for spans in predict_tagger_spans(softmax.tagger, test, batch_size=16):
        for start, end, _, score in spans:
            assert 0.0 < score <= 1.0
            multi_word += end > start
    assert multi_word > 0


@pytest.mark.parametrize("method", ["bert-crf", "bert"])
def test_cli_train_evaluate_predict(
    synthetic_root: Path,
    cache: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    method: str,
) -> None:
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(settings(synthetic_root, cache, method)))
    model_dir = tmp_path / "model"
    assert mner(["train", str(config), "training.epochs=3", "--out", str(model_dir)]) == 0
    metrics = json.loads((model_dir / "metrics.json").read_text())
    assert metrics["method"] == method
    assert metrics["epochs_run"] == 3
    assert json.loads((model_dir / "config.json").read_text())["method"] == method
    loaded = load_model_dir(model_dir)
    assert loaded.run.method == method
    assert not loaded.uses_images

    test_file = synthetic_root / "synthetic" / "test.txt"
    out = tmp_path / "eval"
    assert mner(["evaluate", str(model_dir), str(test_file), "--out", str(out)]) == 0
    evaluated = json.loads((out / "metrics.json").read_text())
    assert evaluated["f1"] == pytest.approx(metrics["test_f1"])
    assert evaluated["strict_f1"] == pytest.approx(metrics["test_strict_f1"])
    predicted_tags = predicted_tag_column(out / "predictions.conll")
    assert len(predicted_tags) == 40
    for tags in predicted_tags:
        assert spans_from_tags(tags, strict=True) == spans_from_tags(tags)

    # Raw text through the live encoder gives the predictions of the cached features.
    _, tweets = load_split_tweets("synthetic", "test", synthetic_root)
    records = Predictor(loaded).predict([TextInput(" ".join(t.words)) for t in tweets])
    from_text = [
        [(e["start_word"], e["end_word"], e["type"]) for e in record["entities"]]
        for record in records
    ]
    assert from_text == [spans_from_tags(tags) for tags in predicted_tags]

    capsys.readouterr()
    assert mner(["predict", str(model_dir), "--text", "look at zorvik brask today"]) == 0
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert record["text"] == "look at zorvik brask today"
    for entity in record["entities"]:
        assert record["text"][entity["start_char"] : entity["end_char"]] == entity["text"]
        assert 0.0 < entity["score"] <= 1.0


def predicted_tag_column(path: Path) -> list[list[str]]:
    """Tags of the prediction column of a ``token<TAB>gold<TAB>prediction`` file, per tweet."""
    tweets: list[list[str]] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("IMGID:"):
            tweets.append([])
        elif line:
            tweets[-1].append(line.split("\t")[2])
    return tweets


def test_registry_resolves_baselines() -> None:
    info = get_method("seqvat")

    assert import_function(info.target) is run_training
    assert not info.has_latent
    assert info.settings == ("semi-supervised",)
    assert get_method("bert-bilstm-crf").settings == ("supervised",)
    assert import_function(get_method("bert").prepare or "") is prepare_features


def test_strategy_settings_are_validated(synthetic_root: Path, cache: Path) -> None:
    values = settings(synthetic_root, cache, "seqvat", strategy={"epsilon": 1.0})
    run = RunSettings.from_mapping(values)
    assert run.strategy_config() == SeqVATConfig(epsilon=1.0)
    assert run.strategy["k"] == SeqVATConfig().k

    with pytest.raises(ValueError, match=r"rounds must be at least 1"):
        RunSettings.from_mapping(settings(synthetic_root, cache, "st", strategy={"rounds": 0}))
    with pytest.raises(ValueError, match=r"unknown setting strategy\.epsilon"):
        RunSettings.from_mapping(settings(synthetic_root, cache, "em", strategy={"epsilon": 1}))
    with pytest.raises(ValueError, match=r"method bert-crf has no semi-supervised strategy"):
        RunSettings.from_mapping(
            settings(synthetic_root, cache, "bert-crf", strategy={"weight": 1.0})
        )
    with pytest.raises(ValueError, match=r"use setting: supervised"):
        RunSettings.from_mapping(settings(synthetic_root, cache, "bert", setting="semi-supervised"))
    with pytest.raises(ValueError, match=r"use setting: semi-supervised"):
        RunSettings.from_mapping(settings(synthetic_root, cache, "em", setting="supervised"))


def test_model_settings_of_smvae_are_ignored(synthetic_root: Path, cache: Path) -> None:
    shared = {"hidden_size": 32, "latent_size": 8, "max_span_len": 8, **TINY_TAGGER}
    result = run_training(
        settings(synthetic_root, cache, "bert-crf", model=shared, training={"epochs": 1})
    )
    assert result.tagger is not None
    assert result.tagger.config.lstm_hidden == TINY_TAGGER["lstm_hidden"]

    with pytest.raises(ValueError, match=r"unknown setting model\.lstm_size"):
        run_training(settings(synthetic_root, cache, "bert", model={"lstm_size": 8}))
