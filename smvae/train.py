"""One SMVAE training run: data, labelled subset, training loop, early stopping, scores.

``run_training`` is the function that ``mner train`` and every sweep trial call. It
reads the cached features (building them first when needed), draws the labelled
subset, trains with Adam, keeps the state with the best development F1, scores the
test split once with that state and returns the metrics and per-epoch rows. With
``encoder.finetune=true`` there is no text cache: the text encoder trains with the
model (:mod:`smvae.word_encoder`) and early stopping keeps both.

Training step: one labelled batch (L1 + L2) and, in the semi-supervised setting, one
unlabelled batch (L3); the loss is ``lambda * L1 + L2 + L3`` with
``lambda = exp(1 - |D_l| / (|D_l| + |D_u|))``. An epoch is one pass over the
unlabelled tweets drawn for it (``training.unlabelled_per_epoch``, default all), with
the labelled batches cycled and reshuffled as often as needed; without unlabelled
data it is one pass over the labelled tweets.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import random
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from smvae.batching import LabelMap, SpanBatch, collate, keep_spans, sample_training_spans
from smvae.corpus import SplitData, prepare_dataset
from smvae.datasets import ENTITY_TYPES, data_dir, get_dataset, image_dir
from smvae.decoding import decode_spans
from smvae.features import ImageEncoderSettings, TextEncoderSettings, cache_dir
from smvae.loop import (
    EpochCallback,
    check_finite,
    fit_with_early_stopping,
    result_metrics,
    select_device,
)
from smvae.metrics import Scores, score_spans
from smvae.model import (
    OUTSIDE_LABEL,
    SMVAE,
    SMVAEConfig,
    combine_losses,
    labelled_elbo_loss,
    loss_weight_lambda,
    span_cross_entropy,
    unlabelled_elbo_loss,
)
from smvae.model_dir import save_model_dir
from smvae.settings import RunSettings
from smvae.spans import Span, spans_from_tags
from smvae.word_encoder import WordEncoder

logger = logging.getLogger(__name__)


@dataclass
class TrainingResult:
    """Flat metrics of the run (result-row columns) and one dict per epoch."""

    metrics: dict[str, Any]
    epochs: list[dict[str, Any]] = field(default_factory=list)
    model: SMVAE | None = None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def labelled_subset(
    train_size: int, count: int, labelled_seed: int, dataset_checksum: str
) -> list[int]:
    """Indices of the labelled tweets: a function of the seed and the dataset checksum alone."""
    digest = hashlib.sha256(f"{dataset_checksum}:{labelled_seed}".encode()).hexdigest()
    generator = np.random.default_rng(int(digest[:16], 16))
    chosen = generator.choice(train_size, size=count, replace=False)
    return sorted(int(i) for i in chosen)


def text_settings(run: RunSettings) -> TextEncoderSettings:
    return TextEncoderSettings(run.encoder.name, run.encoder.pooling, run.encoder.max_length)


def word_encoder(run: RunSettings) -> WordEncoder | None:
    """Load the run's text encoder as a trainable module when it is fine-tuned, else None."""
    return WordEncoder.load(text_settings(run)) if run.encoder.finetune else None


def trainable_modules(model: nn.Module, encoder: WordEncoder | None) -> nn.Module:
    """Return the modules to train and snapshot: the model and, if fine-tuned, the encoder."""
    if encoder is None:
        return model
    return nn.ModuleDict({"model": model, "encoder": encoder})


def new_optimizer(
    run: RunSettings, model: nn.Module, encoder: WordEncoder | None
) -> torch.optim.Optimizer:
    """Create Adam for the model at ``training.learning_rate`` and an encoder at its own rate."""
    groups: list[dict[str, Any]] = [{"params": list(model.parameters())}]
    if encoder is not None:
        rate = run.encoder.learning_rate or run.training.learning_rate
        groups.append({"params": list(encoder.parameters()), "lr": rate})
    return torch.optim.Adam(groups, lr=run.training.learning_rate)


def scoring_split(split: SplitData, encoder: WordEncoder | None) -> SplitData:
    """Return the split as scoring reads it, with the fine-tuned encoder's current word vectors.

    With a frozen encoder the split already contains its cached vectors and comes back as is.
    """
    if encoder is None:
        return split
    return dataclasses.replace(split, words=encoder.encode_split(split.tweets))


def image_settings(run: RunSettings) -> ImageEncoderSettings | None:
    if run.images.name == "none":
        return None
    folder = image_dir(run.dataset, run.images.image_dir, run.data_dir)
    return ImageEncoderSettings(
        run.images.name, run.images.weights, str(folder) if folder is not None else None
    )


def prepare_features(
    settings: Mapping[str, Any] | RunSettings, progress: bool = False
) -> dict[str, SplitData]:
    """Build (or open) the feature caches that a run with these settings reads."""
    run = settings if isinstance(settings, RunSettings) else RunSettings.from_mapping(settings)
    return prepare_dataset(
        run.dataset,
        data_dir(run.data_dir),
        cache_dir(run.cache_dir),
        None if run.encoder.finetune else text_settings(run),
        image_settings(run),
        progress=progress,
    )


def split_word_dim(split: SplitData) -> int:
    """Return the size of the cached word vectors of a split."""
    if split.words is None:
        raise ValueError(f"split {split.name} has no cached word vectors")
    return split.words.dim


def image_coverage(splits: Mapping[str, SplitData]) -> float:
    """Share of tweets over all splits whose image was read; 0 without images."""
    total = sum(len(s) for s in splits.values())
    found = sum(int(s.images.has_image.sum()) for s in splits.values() if s.images is not None)
    return found / total if total else 0.0


def build_model_config(
    run: RunSettings, word_dim: int, label_map: LabelMap, image_dim: int | None
) -> SMVAEConfig:
    values = {
        **run.model,
        "word_dim": word_dim,
        "num_labels": len(label_map),
        "use_mvae": run.method != "smvae-no-mvae",
        "use_images": run.images.name != "none",
    }
    if image_dim is not None:
        values["image_dim"] = image_dim
    return SMVAEConfig(**values)


def iterate_batches(
    indices: Sequence[int], batch_size: int, generator: random.Random
) -> Iterator[list[int]]:
    order = list(indices)
    generator.shuffle(order)
    for first in range(0, len(order), batch_size):
        yield order[first : first + batch_size]


def cycle_batches(
    indices: Sequence[int], batch_size: int, generator: random.Random
) -> Iterator[list[int]]:
    while True:
        yield from iterate_batches(indices, batch_size, generator)


@dataclass
class Trainer:
    """State of one run: model, optimiser, data and the random generators.

    ``encoder`` is the text encoder when it is fine-tuned (None: cached word vectors) and
    ``trainable`` what the optimiser trains (:func:`trainable_modules`).
    """

    run: RunSettings
    model: SMVAE
    splits: dict[str, SplitData]
    label_map: LabelMap
    labelled: list[int]
    unlabelled: list[int]
    optimizer: torch.optim.Optimizer
    python_random: random.Random
    torch_generator: torch.Generator
    encoder: WordEncoder | None = None

    @property
    def trainable(self) -> nn.Module:
        return trainable_modules(self.model, self.encoder)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def batch(self, split: str, indices: Sequence[int]) -> SpanBatch:
        """Collate tweets of a split. A fine-tuned encoder encodes their words, with gradient."""
        config = self.model.config
        data = self.splits[split]
        words = None
        if self.encoder is not None:
            words = self.encoder([data.tweets[i].words for i in indices])  # [B, N, Dw]
        return collate(
            data,
            indices,
            self.label_map,
            config.max_span_len,
            config.image_dim,
            config.use_images,
            words,
        ).to(self.device)

    @property
    def weight_lambda(self) -> float:
        return loss_weight_lambda(len(self.labelled), len(self.unlabelled))

    def forward(self, batch: SpanBatch) -> Any:
        return self.model(
            batch.words,
            batch.word_mask,
            batch.image,
            batch.has_image,
            batch.span_starts,
            batch.span_ends,
            batch.span_mask,
        )


def train_step(
    trainer: Trainer, labelled_ids: list[int], unlabelled_ids: list[int] | None
) -> dict[str, float]:
    """Take one optimiser step on a labelled batch and, when given, an unlabelled batch (Eq. 4).

    The model runs on the spans each loss needs: the selected spans of the labelled
    batch (L1, L2) and the predicted entity spans of the unlabelled batch (L3), which a
    forward pass without gradients over all candidates finds first. Because the argmax
    that picks L3's spans has no gradient, this gives the same losses as one pass over
    all candidates, at a fraction of the cost.
    """
    model, training = trainer.model, trainer.run.training
    labelled = trainer.batch("train", labelled_ids)
    selected = sample_training_spans(labelled, training.negative_ratio, trainer.torch_generator)
    labelled = keep_spans(labelled, selected)
    output = trainer.forward(labelled)
    l1 = span_cross_entropy(output.logits, labelled.labels, labelled.span_mask)
    l2 = l3 = None
    if model.config.use_mvae:
        l2 = labelled_elbo_loss(
            model, output, labelled.labels, labelled.span_mask, labelled.image, labelled.has_image
        )
        if unlabelled_ids:
            l3 = unlabelled_step_loss(trainer, unlabelled_ids)
    loss = combine_losses(l1, l2, l3, trainer.weight_lambda)
    trainer.optimizer.zero_grad()
    loss.total.backward()
    if training.gradient_clip:
        torch.nn.utils.clip_grad_norm_(trainer.trainable.parameters(), training.gradient_clip)
    trainer.optimizer.step()
    return loss.to_floats()


def unlabelled_step_loss(trainer: Trainer, unlabelled_ids: list[int]) -> Any:
    """L3 of an unlabelled batch on the spans that the current model predicts as entities."""
    unlabelled = trainer.batch("train", unlabelled_ids)
    with torch.no_grad():
        logits = trainer.forward(unlabelled).logits  # [B, S, C]
    entities = unlabelled.span_mask & (logits.argmax(dim=-1) != OUTSIDE_LABEL)  # [B, S]
    unlabelled = keep_spans(unlabelled, entities)
    output = trainer.forward(unlabelled)
    return unlabelled_elbo_loss(
        trainer.model, output, unlabelled.image, unlabelled.has_image, unlabelled.span_mask
    )


def train_epoch(trainer: Trainer, epoch: int) -> dict[str, float]:
    """Run one epoch; return the mean of each loss term over its steps."""
    training = trainer.run.training
    trainer.trainable.train()
    unlabelled_batch_size = training.unlabelled_batch_size or training.batch_size
    unlabelled_batches: list[list[int] | None]
    if trainer.unlabelled:
        drawn = list(trainer.unlabelled)
        if training.unlabelled_per_epoch and training.unlabelled_per_epoch < len(drawn):
            drawn = trainer.python_random.sample(drawn, training.unlabelled_per_epoch)
        unlabelled_batches = list(
            iterate_batches(drawn, unlabelled_batch_size, trainer.python_random)
        )
    else:
        steps = math.ceil(len(trainer.labelled) / training.batch_size)
        unlabelled_batches = [None] * steps
    labelled_batches = cycle_batches(trainer.labelled, training.batch_size, trainer.python_random)
    totals: dict[str, float] = {}
    for step, unlabelled_ids in enumerate(unlabelled_batches, start=1):
        values = train_step(trainer, next(labelled_batches), unlabelled_ids)
        check_finite(values["loss"], epoch, step)
        for name, value in values.items():
            totals[name] = totals.get(name, 0.0) + value
    return {name: value / len(unlabelled_batches) for name, value in totals.items()}


def predict_spans(
    model: SMVAE, split: SplitData, label_map: LabelMap, batch_size: int
) -> list[list[tuple[int, int, str, float]]]:
    """Decoded entities ``(start, end, type, probability)`` of every tweet, in tweet order."""
    model.eval()
    config = model.config
    device = next(model.parameters()).device
    predictions: list[list[tuple[int, int, str, float]]] = [[] for _ in range(len(split))]
    # Tweets of similar length share a batch, so little work goes into padding spans.
    by_length = sorted(range(len(split)), key=lambda i: len(split.tweets[i]))
    with torch.inference_mode():
        for first in range(0, len(split), batch_size):
            indices = by_length[first : first + batch_size]
            batch = collate(
                split, indices, label_map, config.max_span_len, config.image_dim, config.use_images
            ).to(device)
            output = model(
                batch.words,
                batch.word_mask,
                batch.image,
                batch.has_image,
                batch.span_starts,
                batch.span_ends,
                batch.span_mask,
            )
            probabilities = output.logits.softmax(-1)  # [B, S, C]
            decoded = decode_spans(
                probabilities, batch.span_starts, batch.span_ends, batch.span_mask
            )
            for index, spans in zip(indices, decoded, strict=True):
                predictions[index] = [(s, e, label_map.names[k], p) for s, e, k, p in spans]
    return predictions


def predict_split(trainer: Trainer, split: str) -> list[list[Span]]:
    """Decoded entity spans of every tweet of a training-run split, in tweet order."""
    predicted = predict_spans(
        trainer.model,
        scoring_split(trainer.splits[split], trainer.encoder),
        trainer.label_map,
        trainer.run.training.eval_batch_size,
    )
    return [[(s, e, t) for s, e, t, _ in spans] for spans in predicted]


def evaluate(trainer: Trainer, split: str) -> tuple[Scores, Scores]:
    """Lenient and strict IOB2 entity scores of a split against the gold tags of its file."""
    predictions = predict_split(trainer, split)
    tweets = trainer.splits[split].tweets
    lenient = score_spans([spans_from_tags(t.tags) for t in tweets], predictions, ENTITY_TYPES)
    strict_gold = [spans_from_tags(t.tags, strict=True) for t in tweets]
    return lenient, score_spans(strict_gold, predictions, ENTITY_TYPES)


def training_indices(run: RunSettings, splits: dict[str, SplitData]) -> tuple[list[int], list[int]]:
    """Return the labelled and unlabelled training-split indices of a run.

    The unlabelled list is empty in the supervised setting.
    """
    train_size = len(splits["train"])
    count = run.labelled_count(train_size)
    labelled = labelled_subset(
        train_size, count, run.labelled_seed, get_dataset(run.dataset, run.data_dir).checksum
    )
    unlabelled: list[int] = []
    if run.setting == "semi-supervised":
        chosen = set(labelled)
        unlabelled = [i for i in range(train_size) if i not in chosen]
    return labelled, unlabelled


def load_word_source(
    run: RunSettings, splits: dict[str, SplitData]
) -> tuple[WordEncoder | None, int]:
    """Return the fine-tuned encoder (None with cached vectors) and the word vector size."""
    encoder = word_encoder(run)
    word_dim = encoder.dim if encoder is not None else split_word_dim(splits["train"])
    return encoder, word_dim


def move_to_run_device(run: RunSettings, model: nn.Module, encoder: WordEncoder | None) -> None:
    """Move the model and a fine-tuned encoder to the run's ``training.device``."""
    device = select_device(run.training.device)
    model.to(device)
    if encoder is not None:
        encoder.to(device)


def build_trainer(run: RunSettings, splits: dict[str, SplitData]) -> Trainer:
    """Draw the labelled subset and create the model and optimiser, seeded by the run."""
    seed_everything(run.seed)
    labelled, unlabelled = training_indices(run, splits)
    label_map = LabelMap(ENTITY_TYPES)
    images = splits["train"].images
    image_dim = int(images.pooled.shape[1]) if images is not None else None
    encoder, word_dim = load_word_source(run, splits)
    model = SMVAE(build_model_config(run, word_dim, label_map, image_dim))
    move_to_run_device(run, model, encoder)
    optimizer = new_optimizer(run, model, encoder)
    generator = torch.Generator().manual_seed(run.seed)
    return Trainer(
        run,
        model,
        splits,
        label_map,
        labelled,
        unlabelled,
        optimizer,
        random.Random(run.seed),
        generator,
        encoder,
    )


def check_image_coverage(run: RunSettings, coverage: float) -> None:
    if run.images.name != "none" and coverage < run.images.min_coverage:
        raise RuntimeError(
            f"image coverage {coverage:.3f} is below images.min_coverage="
            f"{run.images.min_coverage}; put the missing <IMGID>.jpg files into "
            f"{run.images.image_dir}, lower images.min_coverage, or use images: none"
        )


def fit(trainer: Trainer, on_epoch: EpochCallback | None) -> tuple[list[dict[str, Any]], int]:
    """Train with early stopping on development F1, then load the state of the best epoch."""
    training = trainer.run.training
    epochs, best_epoch, _ = fit_with_early_stopping(
        trainer.trainable,
        training.epochs,
        training.patience,
        lambda epoch: train_epoch(trainer, epoch),
        lambda: evaluate(trainer, "valid")[0],
        on_epoch,
    )
    return epochs, best_epoch


def run_training(
    settings: Mapping[str, Any] | RunSettings,
    on_epoch: EpochCallback | None = None,
    model_dir: str | Path | None = None,
) -> TrainingResult:
    """Train SMVAE with the given settings, score it, and write a model directory if requested."""
    run = settings if isinstance(settings, RunSettings) else RunSettings.from_mapping(settings)
    if run.training.threads:
        torch.set_num_threads(run.training.threads)
    started = time.perf_counter()
    splits = prepare_features(run)
    coverage = image_coverage(splits)
    check_image_coverage(run, coverage)
    trainer = build_trainer(run, splits)
    logger.info(
        "training %s on %s: %d labelled, %d unlabelled tweets, lambda %.3f",
        run.method,
        run.dataset,
        len(trainer.labelled),
        len(trainer.unlabelled),
        trainer.weight_lambda,
    )
    epochs, best_epoch = fit(trainer, on_epoch)
    dev, _ = evaluate(trainer, "valid")
    test, test_strict = evaluate(trainer, "test")
    metrics = {
        **run_description(run, trainer, coverage),
        **result_metrics(
            dev,
            test,
            test_strict,
            epochs,
            best_epoch,
            time.perf_counter() - started,
            trainer.device,
        ),
    }
    result = TrainingResult(metrics, epochs, trainer.model)
    if model_dir is not None:
        save_model_dir(Path(model_dir), trainer, result)
    return result


def run_description(run: RunSettings, trainer: Trainer, coverage: float) -> dict[str, Any]:
    """Result-row columns that describe the run rather than its scores."""
    train_size = len(trainer.splits["train"])
    return {
        "method": run.method,
        "setting": run.setting,
        "dataset": run.dataset,
        "dataset_sha256": get_dataset(run.dataset, run.data_dir).checksum,
        "labelled_count": len(trainer.labelled),
        "labelled_share": len(trainer.labelled) / train_size,
        "unlabelled_count": len(trainer.unlabelled),
        "labelled_seed": run.labelled_seed,
        "seed": run.seed,
        "latent_size": trainer.model.config.latent_size if trainer.model.config.use_mvae else None,
        "encoder": run.encoder.name,
        "encoder_finetune": run.encoder.finetune,
        "image_encoder": run.images.name,
        "images": run.images.name,
        "image_coverage": coverage,
    }
