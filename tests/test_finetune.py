"""Fine-tuning mode (encoder.finetune=true): the text encoder trains with each model's head."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from baselines.train import build_trainer as build_tagger_trainer
from baselines.train import prepare_features as prepare_tagger_features
from baselines.train import run_training as run_tagger_training
from baselines.train import train_step as tagger_train_step
from orchestrator.grid import expand_grid
from orchestrator.spec import SpecError, load_spec
from smvae.conll import Tweet
from smvae.datasets import split_path
from smvae.features import (
    TextEncoderSettings,
    encode_tweets,
    load_text_encoder,
    tokenize_words,
)
from smvae.inference import evaluate_file
from smvae.model_dir import load_model_dir
from smvae.settings import RunSettings
from smvae.synthetic import generate_dataset
from smvae.train import build_trainer, prepare_features, run_training
from smvae.word_encoder import WordEncoder

pytestmark = pytest.mark.slow

ZERO_WIDTH_SPACE = "\u200b"


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data")
    generate_dataset(root)
    return root


def settings(root: Path, cache: Path, **overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "method": "smvae",
        "dataset": "synthetic",
        "setting": "semi-supervised",
        "labelled": 20,
        "seed": 0,
        "data_dir": str(root),
        "cache_dir": str(cache),
        "images": "none",
        "model": {"hidden_size": 32, "latent_size": 8, "dropout": 0.0},
        "training": {"epochs": 1, "patience": 1, "learning_rate": 0.005, "batch_size": 8},
        "encoder": {"finetune": True, "learning_rate": 1e-4},
    }
    values.update(overrides)
    return values


@pytest.mark.parametrize(("pooling", "max_length"), [("first", 256), ("mean", 256), ("mean", 6)])
def test_word_encoder_matches_the_cache_in_eval_mode(pooling: str, max_length: int) -> None:
    # The same words must give the same vectors whether the model encodes them itself
    # (fine-tuning) or reads them from a cache built with the same weights. A limit of 6
    # pieces leaves the last words of the long tweet beyond it (zero vectors).
    tweets = [
        Tweet("1", ("Obama", "visits", "Reykjavik", "today"), ("O",) * 4, 1),
        Tweet("2", ("RT", ZERO_WIDTH_SPACE, "@user", "#unbelievable", "!"), ("O",) * 5, 2),
        Tweet("3", ("ok",), ("O",), 3),
    ]
    text = TextEncoderSettings(pooling=pooling, max_length=max_length)
    tokenizer, model = load_text_encoder(text.name)
    cached = {index: vectors for index, vectors, _ in encode_tweets(tweets, tokenizer, model, text)}
    encoder = WordEncoder(tokenizer, model, text).eval()

    with torch.no_grad():
        encoded = encoder([t.words for t in tweets])  # [3, 5, 384]

    assert encoded.shape == (3, 5, 384)
    for row, tweet in enumerate(tweets):
        np.testing.assert_allclose(encoded[row, : len(tweet)].numpy(), cached[row], atol=1e-5)
        assert torch.all(encoded[row, len(tweet) :] == 0)
    beyond = [
        (row, word)
        for row, tweet in enumerate(tweets)
        for word, start in enumerate(tokenize_words(tokenizer, tweet.words, max_length).word_starts)
        if start < 0
    ]
    assert bool(beyond) == (max_length == 6)
    for row, word in beyond:
        assert torch.all(encoded[row, word] == 0)


def test_finetuned_smvae_round_trip(synthetic_root: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    model_dir = tmp_path / "model"
    result = run_training(settings(synthetic_root, cache), model_dir=model_dir)

    assert result.metrics["encoder_finetune"] is True
    # No text cache is built in this mode: the model encodes its words itself.
    assert not (cache / "text").exists()
    loaded = load_model_dir(model_dir)
    assert loaded.text.name == str(model_dir / "encoder")
    _, base = load_text_encoder("minilm")
    trained = WordEncoder.load(loaded.text).encoder.state_dict()
    changed = [
        name for name, value in base.state_dict().items() if not torch.equal(value, trained[name])
    ]
    assert changed, "fine-tuning left every encoder weight unchanged"

    # Scoring the test file with the saved head and encoder gives the in-training scores.
    test_file = split_path("synthetic", "test", synthetic_root)
    metrics = evaluate_file(loaded, test_file, tmp_path / "eval")
    assert metrics["f1"] == pytest.approx(result.metrics["test_f1"], abs=1e-9)
    assert metrics["predicted"] == result.metrics["test_predicted"]


def test_encoder_learning_rate_is_its_own_parameter_group(
    synthetic_root: Path, tmp_path: Path
) -> None:
    run = RunSettings.from_mapping(settings(synthetic_root, tmp_path))
    trainer = build_trainer(run, prepare_features(run))

    assert trainer.encoder is not None
    head, encoder = trainer.optimizer.param_groups
    assert head["lr"] == 0.005
    assert encoder["lr"] == 1e-4
    assert {id(p) for p in encoder["params"]} == {id(p) for p in trainer.encoder.parameters()}


@pytest.mark.parametrize("method", ["bert-crf", "seqvat"])
def test_tagger_step_trains_the_encoder(method: str, synthetic_root: Path, tmp_path: Path) -> None:
    setting = "supervised" if method == "bert-crf" else "semi-supervised"
    values = settings(
        synthetic_root, tmp_path, method=method, setting=setting, labelled=20, model={}
    )
    run = RunSettings.from_mapping(values)
    trainer = build_tagger_trainer(run, prepare_tagger_features(run))
    assert trainer.encoder is not None
    before = copy.deepcopy(trainer.trainable.state_dict())

    unlabelled = trainer.unlabelled[:8] if setting == "semi-supervised" else None
    tagger_train_step(trainer, trainer.labelled[:8], unlabelled)

    after = trainer.encoder.state_dict()
    assert any(not torch.equal(before[f"encoder.{name}"], value) for name, value in after.items())
    # Early stopping keeps trainer.trainable's state: loading it back restores the encoder.
    trainer.trainable.load_state_dict(before)
    restored = trainer.encoder.state_dict()
    assert all(torch.equal(before[f"encoder.{name}"], value) for name, value in restored.items())


def test_finetuned_tagger_round_trip(synthetic_root: Path, tmp_path: Path) -> None:
    model_dir = tmp_path / "model"
    values = settings(
        synthetic_root, tmp_path / "cache", method="bert", setting="supervised", labelled="all"
    )
    values["model"] = {}
    result = run_tagger_training(values, model_dir=model_dir)

    loaded = load_model_dir(model_dir)
    metrics = evaluate_file(loaded, split_path("synthetic", "test", synthetic_root), tmp_path / "e")
    assert metrics["f1"] == pytest.approx(result.metrics["test_f1"], abs=1e-9)

    # A removed tokenizer file would load as a near-empty tokenizer: loading must fail.
    (model_dir / "encoder" / "tokenizer.json").unlink()
    with pytest.raises(ValueError, match="differ from those the model was saved with"):
        load_model_dir(model_dir)

    # A frozen model written into the same folder leaves no stale encoder behind.
    values["encoder"] = {"finetune": False}
    run_tagger_training(values, model_dir=model_dir)
    assert not (model_dir / "encoder").exists()
    assert load_model_dir(model_dir).text.name == "minilm"


def test_max_length_beyond_positions_rejected() -> None:
    with pytest.raises(ValueError, match=r"encoder\.max_length=1000 exceeds the 512 positions"):
        WordEncoder.load(TextEncoderSettings(max_length=1000))


def test_encoder_learning_rate_must_be_positive(synthetic_root: Path, tmp_path: Path) -> None:
    values = settings(synthetic_root, tmp_path)
    values["encoder"] = {"finetune": True, "learning_rate": 0}
    with pytest.raises(ValueError, match=r"encoder\.learning_rate must be positive"):
        RunSettings.from_mapping(values)


def test_spec_encoder_learning_rate(tmp_path: Path) -> None:
    spec_file = tmp_path / "spec.yaml"
    base = "name: x\nmethods: [smvae]\ndatasets: [twitter2015]\nseeds: [0]\nlabelled: [100]\n"
    spec_file.write_text(base)
    without = expand_grid(load_spec(spec_file))[0]
    spec_file.write_text(base + "encoder: {finetune: true, learning_rate: 2.0e-5}\n")
    with_rate = expand_grid(load_spec(spec_file))[0]

    # Specs written before the setting existed keep their trial keys.
    assert "learning_rate" not in without["encoder"]
    assert with_rate["encoder"] == {
        "name": "minilm",
        "pooling": "first",
        "max_length": 256,
        "finetune": True,
        "learning_rate": 2.0e-5,
    }
    spec_file.write_text(base + "encoder: {learning_rate: -1}\n")
    with pytest.raises(SpecError, match=r"encoder\.learning_rate"):
        load_spec(spec_file)
    spec_file.write_text(base + "encoder: {finetune: true, learning_rate: .inf}\n")
    with pytest.raises(SpecError, match=r"encoder\.learning_rate must be a finite"):
        load_spec(spec_file)
    spec_file.write_text(base + "encoder: {learning_rate: 1.0e-5}\n")
    with pytest.raises(SpecError, match=r"only with encoder\.finetune"):
        load_spec(spec_file)


def test_encoder_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="text encoder folder not found"):
        load_text_encoder(str(tmp_path / "absent"))
    with pytest.raises(FileNotFoundError, match="not a Hugging Face model folder"):
        load_text_encoder(str(tmp_path))


@pytest.mark.parametrize(
    ("encoder", "message"),
    [
        ({"pooling": "max"}, r"encoder\.pooling must be first or mean"),
        ({"max_length": 2}, r"encoder\.max_length must be at least 3"),
    ],
)
def test_encoder_settings_rejected(
    encoder: dict[str, Any], message: str, synthetic_root: Path, tmp_path: Path
) -> None:
    values = settings(synthetic_root, tmp_path)
    values["encoder"] = encoder
    with pytest.raises(ValueError, match=message):
        RunSettings.from_mapping(values)
