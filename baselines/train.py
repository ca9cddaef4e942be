"""One training run of a text baseline: a word tagger, optionally with a semi-supervised strategy.

Methods and what they train (Zhou et al., 2022, tables 2 and 3):

- ``bert`` (softmax tagger), ``bert-crf`` (CRF tagger), ``bert-bilstm-crf`` (BiLSTM-CRF
  tagger): supervised, on the labelled tweets alone.
- ``st``, ``em``, ``seqvat``: the BiLSTM-CRF tagger plus self-training, entropy
  minimisation or SeqVAT (``baselines.strategies``), on the labelled tweets and the
  unlabelled rest of the training split.

Every method reads the word vectors that SMVAE reads (one vector per word): cached and
frozen by default, or from the text encoder trained with the tagger when
``encoder.finetune=true`` (:mod:`smvae.word_encoder`). No method reads images: the run
records ``images: none`` and image coverage 0, whatever the settings name. The shared
pieces are SMVAE's: settings, labelled subset, feature cache, seeding, the
early-stopping loop and the entity scorer.

Training targets are the gold tags rewritten as valid IOB2: an orphan ``I-X`` becomes
``B-X``, which reads the same entities as the scorer's lenient rule. The raw orphan tags
would put a forbidden transition into the BIO-constrained CRF's loss.

Dimension legend: ``B`` tweets in a batch, ``N`` words of the longest tweet, ``D`` word
vector size.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from baselines.strategies import EntropyMinimization, SelfTraining, SeqVAT
from baselines.taggers import (
    CRFTaggerBase,
    Tagger,
    TaggerConfig,
    build_tagger,
    repair_bio,
)
from smvae.batching import LabelMap, cached_word_batch
from smvae.corpus import SplitData
from smvae.datasets import ENTITY_TYPES, get_dataset
from smvae.loop import (
    EpochCallback,
    check_finite,
    fit_with_early_stopping,
    result_metrics,
)
from smvae.metrics import Scores, score_spans
from smvae.model import SMVAEConfig
from smvae.model_dir import write_model_dir
from smvae.settings import ImagesConfig, RunSettings
from smvae.spans import OUTSIDE_TAG, spans_from_tags
from smvae.train import (
    TrainingResult,
    cycle_batches,
    iterate_batches,
    load_word_source,
    move_to_run_device,
    new_optimizer,
    scoring_split,
    seed_everything,
    trainable_modules,
    training_indices,
)
from smvae.train import prepare_features as prepare_smvae_features
from smvae.word_encoder import WordEncoder

logger = logging.getLogger(__name__)

# Tagger head of each method. ST, EM and SeqVAT wrap BERT-BiLSTM-CRF, as Zhou et al. (2022,
# section 4.2) do.
HEADS = {
    "bert": "softmax",
    "bert-crf": "crf",
    "bert-bilstm-crf": "bilstm-crf",
    "st": "bilstm-crf",
    "em": "bilstm-crf",
    "seqvat": "bilstm-crf",
}

# ``model`` settings a tagger reads; the rest of TaggerConfig comes from the data and method.
TAGGER_SETTINGS = frozenset(
    f.name
    for f in dataclasses.fields(TaggerConfig)
    if f.name not in ("word_dim", "tag_names", "head")
)
# SMVAE settings that a spec shared by SMVAE and the baselines may carry; taggers ignore them.
SMVAE_SETTINGS = frozenset(f.name for f in dataclasses.fields(SMVAEConfig))

Strategy = SelfTraining | EntropyMinimization | SeqVAT


@dataclass
class TaggerResult(TrainingResult):
    """:class:`smvae.train.TrainingResult` with the trained tagger (``model`` stays None)."""

    tagger: Tagger | None = None


@dataclass
class TagBatch:
    """Padded word vectors of some tweets, with tag ids when the tweets are labelled."""

    indices: list[int]  # tweet indices in the split
    words: Tensor  # [B, N, D]
    mask: Tensor  # [B, N] bool, True at real words
    tags: Tensor | None = None  # [B, N] long, the id of O at padding


@dataclass
class TaggerTrainer:
    """State of one run: tagger, optimiser, data, strategy and the random generators.

    ``pseudo_tags`` maps training-split indices of unlabelled tweets to the tags that
    self-training kept for them in the current round. ``encoder`` is the text encoder
    when it is fine-tuned (None: cached word vectors).
    """

    run: RunSettings
    tagger: Tagger
    splits: dict[str, SplitData]
    labelled: list[int]
    unlabelled: list[int]
    optimizer: torch.optim.Optimizer
    python_random: random.Random
    torch_generator: torch.Generator
    strategy: Strategy | None
    encoder: WordEncoder | None = None
    pseudo_tags: dict[int, list[str]] = dataclasses.field(default_factory=dict)

    @property
    def device(self) -> torch.device:
        return next(self.tagger.parameters()).device

    @property
    def trainable(self) -> torch.nn.Module:
        """The tagger and, when it is fine-tuned, the encoder: what the optimiser trains."""
        return trainable_modules(self.tagger, self.encoder)

    def training_tags(self, index: int) -> list[str]:
        """Tags to learn for a training tweet: its pseudo tags, else its gold tags as IOB2."""
        if index in self.pseudo_tags:
            return self.pseudo_tags[index]
        return repair_bio(self.splits["train"].tweets[index].tags)


def text_only(run: RunSettings) -> RunSettings:
    """Return the run with images switched off, because the baselines never read them."""
    return dataclasses.replace(run, images=ImagesConfig())


def prepare_features(
    settings: Mapping[str, Any] | RunSettings, progress: bool = False
) -> dict[str, SplitData]:
    """Build (or open) the text feature caches of a baseline run; images are never built."""
    run = settings if isinstance(settings, RunSettings) else RunSettings.from_mapping(settings)
    return prepare_smvae_features(text_only(run), progress=progress)


def tag_names(entity_types: Sequence[str] = ENTITY_TYPES) -> tuple[str, ...]:
    """IOB2 tags in id order: O, then B- and I- of each entity type."""
    return (OUTSIDE_TAG, *(f"{p}-{t}" for t in entity_types for p in ("B", "I")))


def build_tagger_config(run: RunSettings, word_dim: int) -> TaggerConfig:
    """Build the tagger settings from ``run.model``, ignoring SMVAE keys; unknown keys raise."""
    values = dict(run.model)
    ignored = sorted(k for k in values if k in SMVAE_SETTINGS and k not in TAGGER_SETTINGS)
    unknown = sorted(k for k in values if k not in SMVAE_SETTINGS | TAGGER_SETTINGS)
    if unknown:
        raise ValueError(
            f"unknown setting model.{unknown[0]} for method {run.method}; known tagger "
            f"settings: {', '.join(sorted(TAGGER_SETTINGS))}"
        )
    if ignored:
        logger.info("method %s ignores the SMVAE settings model.%s", run.method, ignored)
    chosen = {k: v for k, v in values.items() if k in TAGGER_SETTINGS}
    return TaggerConfig(word_dim=word_dim, tag_names=tag_names(), head=HEADS[run.method], **chosen)


def build_strategy(run: RunSettings) -> Strategy | None:
    """Create the run's semi-supervised strategy; return None for the supervised taggers."""
    config = run.strategy_config()
    if config is None:
        return None
    strategies: dict[str, type[Strategy]] = {
        "st": SelfTraining,
        "em": EntropyMinimization,
        "seqvat": SeqVAT,
    }
    return strategies[run.method](config)


def build_trainer(run: RunSettings, splits: dict[str, SplitData]) -> TaggerTrainer:
    """Draw the labelled subset and create the tagger and optimiser, seeded as SMVAE is."""
    seed_everything(run.seed)
    labelled, unlabelled = training_indices(run, splits)
    encoder, word_dim = load_word_source(run, splits)
    tagger = build_tagger(build_tagger_config(run, word_dim))
    move_to_run_device(run, tagger, encoder)
    return TaggerTrainer(
        run,
        tagger,
        splits,
        labelled,
        unlabelled,
        new_optimizer(run, tagger, encoder),
        random.Random(run.seed),
        torch.Generator().manual_seed(run.seed),
        build_strategy(run),
        encoder,
    )


def collate_words(
    split: SplitData,
    indices: Sequence[int],
    device: torch.device | None = None,
    encoder: WordEncoder | None = None,
) -> TagBatch:
    """Pad the word vectors of the given tweets of a split into one batch (no tags).

    With ``encoder`` (fine-tuning mode) the vectors come from it and carry gradient.
    Otherwise they come from the split's feature cache.
    """
    lengths = [len(split.tweets[i]) for i in indices]
    if encoder is not None:
        words = encoder([split.tweets[i].words for i in indices])  # [B, N, D]
    else:
        words = cached_word_batch(split, indices)  # [B, N, D]
    mask = torch.zeros(len(indices), max(lengths), dtype=torch.bool)  # [B, N]
    for row, length in enumerate(lengths):
        mask[row, :length] = True
    if device is not None:
        words, mask = words.to(device), mask.to(device)
    return TagBatch(list(indices), words, mask)


def labelled_batch(trainer: TaggerTrainer, indices: Sequence[int]) -> TagBatch:
    """Collate training-split tweets with the tag ids of :meth:`TaggerTrainer.training_tags`."""
    batch = collate_words(trainer.splits["train"], indices, trainer.device, trainer.encoder)
    tags = [trainer.training_tags(i) for i in indices]
    batch.tags = trainer.tagger.encode_tags(tags, batch.words.size(1)).to(trainer.device)  # [B, N]
    return batch


def strategy_loss(
    trainer: TaggerTrainer, labelled: TagBatch, unlabelled_ids: Sequence[int] | None
) -> Tensor | None:
    """Compute the weighted strategy term of a step (EM entropy or SeqVAT KL), else None.

    SeqVAT needs no tags, so it is applied to both batches. Its two batch means are
    combined into one mean over all their tweets.
    """
    strategy = trainer.strategy
    if not unlabelled_ids or not isinstance(strategy, EntropyMinimization | SeqVAT):
        return None
    unlabelled = collate_words(
        trainer.splits["train"], unlabelled_ids, trainer.device, trainer.encoder
    )
    if isinstance(strategy, EntropyMinimization):
        return strategy.unlabelled_loss(trainer.tagger, unlabelled.words, unlabelled.mask)
    generator = trainer.torch_generator
    on_labelled = strategy.loss(trainer.tagger, labelled.words, labelled.mask, generator)
    on_unlabelled = strategy.loss(trainer.tagger, unlabelled.words, unlabelled.mask, generator)
    sizes = len(labelled.indices), len(unlabelled.indices)
    return (sizes[0] * on_labelled + sizes[1] * on_unlabelled) / sum(sizes)


def train_step(
    trainer: TaggerTrainer, labelled_ids: Sequence[int], unlabelled_ids: Sequence[int] | None
) -> dict[str, float]:
    """Take one optimiser step on the supervised loss (loss_l1) plus the strategy term (loss_l2)."""
    tagger, training = trainer.tagger, trainer.run.training
    trainer.trainable.train()
    batch = labelled_batch(trainer, labelled_ids)
    assert batch.tags is not None
    supervised = tagger.loss(batch.words, batch.mask, batch.tags)
    extra = strategy_loss(trainer, batch, unlabelled_ids)
    total = supervised if extra is None else supervised + extra
    trainer.optimizer.zero_grad()
    total.backward()
    if training.gradient_clip:
        torch.nn.utils.clip_grad_norm_(trainer.trainable.parameters(), training.gradient_clip)
    trainer.optimizer.step()
    values = {"loss": total.item(), "loss_l1": supervised.item()}
    if extra is not None:
        values["loss_l2"] = extra.item()
    return values


def epoch_batches(trainer: TaggerTrainer) -> list[tuple[list[int], list[int] | None]]:
    """Draw the (labelled ids, unlabelled ids) of each step of one epoch.

    EM and SeqVAT: one pass over the unlabelled tweets drawn for the epoch
    (``training.unlabelled_per_epoch``, default all), labelled batches cycled and
    reshuffled, as SMVAE does. The other methods: one pass over the labelled tweets plus
    the tweets that self-training kept.
    """
    training = trainer.run.training
    generator = trainer.python_random
    if trainer.unlabelled and isinstance(trainer.strategy, EntropyMinimization | SeqVAT):
        drawn = list(trainer.unlabelled)
        if training.unlabelled_per_epoch and training.unlabelled_per_epoch < len(drawn):
            drawn = generator.sample(drawn, training.unlabelled_per_epoch)
        size = training.unlabelled_batch_size or training.batch_size
        unlabelled = list(iterate_batches(drawn, size, generator))
        labelled = cycle_batches(trainer.labelled, training.batch_size, generator)
        return [(next(labelled), ids) for ids in unlabelled]
    pool = [*trainer.labelled, *sorted(trainer.pseudo_tags)]
    return [(ids, None) for ids in iterate_batches(pool, training.batch_size, generator)]


def train_epoch(trainer: TaggerTrainer, epoch: int) -> dict[str, float]:
    """Run one epoch; return the mean of each loss term over its steps."""
    steps = epoch_batches(trainer)
    totals: dict[str, float] = {}
    for step, (labelled_ids, unlabelled_ids) in enumerate(steps, start=1):
        values = train_step(trainer, labelled_ids, unlabelled_ids)
        check_finite(values["loss"], epoch, step)
        for name, value in values.items():
            totals[name] = totals.get(name, 0.0) + value
    return {name: value / len(steps) for name, value in totals.items()}


@torch.inference_mode()
@torch.no_grad()
def predict_tagger_spans(
    tagger: Tagger, split: SplitData, batch_size: int
) -> list[list[tuple[int, int, str, float]]]:
    """Decode the entities ``(start, end, type, score)`` of every tweet, in tweet order.

    Decoding gives valid IOB2 (constrained Viterbi for CRF taggers, argmax then repair for
    the softmax tagger). The score of an entity is the probability of the tweet's whole
    decoded sequence for a CRF tagger, exp(s(y*) - log Z), and the product of the entity's
    word-tag probabilities for the softmax tagger.
    """
    tagger.eval()
    device = next(tagger.parameters()).device
    predictions: list[list[tuple[int, int, str, float]]] = [[] for _ in range(len(split))]
    # Tweets of similar length share a batch, so little work goes into padding.
    by_length = sorted(range(len(split)), key=lambda i: len(split.tweets[i]))
    for first in range(0, len(split), batch_size):
        batch = collate_words(split, by_length[first : first + batch_size], device)
        emissions = tagger.emissions(batch.words, batch.mask)  # [B, N, T]
        paths, sequence_log_probs = tagger.decode_from_emissions(emissions, batch.mask)
        word_log_probs = F.log_softmax(emissions, dim=-1)  # [B, N, T]
        for row, (index, path) in enumerate(zip(batch.indices, paths, strict=True)):
            names = [tagger.tag_names[tag] for tag in path]
            entities = []
            for start, end, entity_type in spans_from_tags(names):
                if isinstance(tagger, CRFTaggerBase):
                    log_score = sequence_log_probs[row]
                else:
                    chosen = torch.tensor(path[start : end + 1], device=device)
                    positions = torch.arange(start, end + 1, device=device)
                    log_score = word_log_probs[row, positions, chosen].sum()
                entities.append((start, end, entity_type, math.exp(float(log_score))))
            predictions[index] = entities
    return predictions


def evaluate(trainer: TaggerTrainer, split: str) -> tuple[Scores, Scores]:
    """Score a split against the gold tags of its file: lenient and strict IOB2 readings."""
    data = scoring_split(trainer.splits[split], trainer.encoder)
    predicted = predict_tagger_spans(trainer.tagger, data, trainer.run.training.eval_batch_size)
    predictions = [[(s, e, t) for s, e, t, _ in spans] for spans in predicted]
    lenient_gold = [spans_from_tags(t.tags) for t in data.tweets]
    strict_gold = [spans_from_tags(t.tags, strict=True) for t in data.tweets]
    return (
        score_spans(lenient_gold, predictions, ENTITY_TYPES),
        score_spans(strict_gold, predictions, ENTITY_TYPES),
    )


def fit_stage(
    trainer: TaggerTrainer, on_epoch: EpochCallback | None, first_epoch: int = 1
) -> tuple[list[dict[str, Any]], int, float]:
    """Train with early stopping on development F1; the tagger ends at the stage's best state."""
    training = trainer.run.training
    return fit_with_early_stopping(
        trainer.trainable,
        training.epochs,
        training.patience,
        lambda epoch: train_epoch(trainer, epoch),
        lambda: evaluate(trainer, "valid")[0],
        on_epoch,
        first_epoch=first_epoch,
    )


def select_pseudo_labels(trainer: TaggerTrainer, strategy: SelfTraining) -> dict[int, list[str]]:
    """Decode every unlabelled tweet; keep those whose decoded sequence is confident enough."""
    kept: dict[int, list[str]] = {}
    split = scoring_split(trainer.splits["train"], trainer.encoder)
    batch_size = trainer.run.training.eval_batch_size
    for first in range(0, len(trainer.unlabelled), batch_size):
        batch = collate_words(split, trainer.unlabelled[first : first + batch_size], trainer.device)
        selected = strategy.select_pseudo_labels(trainer.tagger, batch.words, batch.mask)
        for position, tags in zip(selected.kept, selected.tags, strict=True):
            kept[batch.indices[position]] = tags
    return kept


def fit_self_training(
    trainer: TaggerTrainer, strategy: SelfTraining, on_epoch: EpochCallback | None
) -> tuple[list[dict[str, Any]], int]:
    """Self-training: fit on labelled tweets, then pseudo-label and refit ``rounds`` times.

    Each round decodes all unlabelled tweets with the best tagger so far, keeps the
    confident ones (replacing the previous round's) and trains on labelled plus kept
    tweets with a fresh optimiser and early stopping; epochs are numbered across rounds.
    The tagger ends at the state with the best development F1 over all rounds. Rounds stop
    early when no tweet reaches the threshold, since retraining would repeat the last one.
    """
    rows, best_epoch, best_f1 = fit_stage(trainer, on_epoch)
    best_state = copy.deepcopy(trainer.trainable.state_dict())
    for round_number in range(1, strategy.config.rounds + 1):
        trainer.pseudo_tags = select_pseudo_labels(trainer, strategy)
        logger.info(
            "self-training round %d: kept %d of %d unlabelled tweets",
            round_number,
            len(trainer.pseudo_tags),
            len(trainer.unlabelled),
        )
        if not trainer.pseudo_tags:
            break
        trainer.optimizer = new_optimizer(trainer.run, trainer.tagger, trainer.encoder)
        stage_rows, stage_epoch, stage_f1 = fit_stage(trainer, on_epoch, len(rows) + 1)
        rows += stage_rows
        if stage_f1 > best_f1:
            best_epoch, best_f1 = stage_epoch, stage_f1
            best_state = copy.deepcopy(trainer.trainable.state_dict())
        else:
            trainer.trainable.load_state_dict(best_state)
    trainer.trainable.load_state_dict(best_state)
    return rows, best_epoch


def fit(trainer: TaggerTrainer, on_epoch: EpochCallback | None) -> tuple[list[dict[str, Any]], int]:
    """Train with the method's loop, leaving the tagger at its best development F1 state."""
    if isinstance(trainer.strategy, SelfTraining):
        return fit_self_training(trainer, trainer.strategy, on_epoch)
    rows, best_epoch, _ = fit_stage(trainer, on_epoch)
    return rows, best_epoch


def run_description(run: RunSettings, trainer: TaggerTrainer) -> dict[str, Any]:
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
        "latent_size": None,
        "encoder": run.encoder.name,
        "encoder_finetune": run.encoder.finetune,
        "image_encoder": "none",
        "images": "none",
        "image_coverage": 0.0,
    }


def run_training(
    settings: Mapping[str, Any] | RunSettings,
    on_epoch: EpochCallback | None = None,
    model_dir: str | Path | None = None,
) -> TaggerResult:
    """Train a text baseline with the given settings, score it, and save it if requested.

    Returns the same metrics keys as :func:`smvae.train.run_training`, with ``latent_size``
    None, ``images`` and ``image_encoder`` "none" and ``image_coverage`` 0.
    """
    run = settings if isinstance(settings, RunSettings) else RunSettings.from_mapping(settings)
    if run.method not in HEADS:
        raise ValueError(f"method {run.method!r} is not a text baseline; known: {', '.join(HEADS)}")
    if run.training.threads:
        torch.set_num_threads(run.training.threads)
    if run.images.name != "none":
        logger.info("method %s is text-only and ignores images: %s", run.method, run.images.name)
    started = time.perf_counter()
    trainer = build_trainer(run, prepare_features(run))
    logger.info(
        "training %s on %s: %d labelled, %d unlabelled tweets",
        run.method,
        run.dataset,
        len(trainer.labelled),
        len(trainer.unlabelled),
    )
    epochs, best_epoch = fit(trainer, on_epoch)
    dev, _ = evaluate(trainer, "valid")
    test, test_strict = evaluate(trainer, "test")
    metrics = {
        **run_description(run, trainer),
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
    result = TaggerResult(metrics, epochs, tagger=trainer.tagger)
    if model_dir is not None:
        save_tagger_dir(Path(model_dir), trainer, result)
    return result


def save_tagger_dir(folder: Path, trainer: TaggerTrainer, result: TrainingResult) -> None:
    """Write the trained tagger, its settings and its scores as a model directory."""

    write_model_dir(
        folder,
        trainer.run,
        trainer.tagger,
        trainer.tagger.config.to_dict(),
        LabelMap(ENTITY_TYPES),
        {name: split.sha256 for name, split in trainer.splits.items()},
        trainer.labelled,
        result,
        trainer.encoder,
    )
