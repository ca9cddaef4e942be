"""Semi-supervised strategies: SeqVAT perturbations, entropy, pseudo-label selection, learning.

The learning tests use a generated corpus in which unlabelled data carries the signal. Each
word vector has two features: the first places the word class on a line (O words near 0,
PER words in a cluster near +4, LOC words in a cluster near -4), the second is noise. The few
labelled sentences only show entity words from the far side of their cluster (|x| in
[6.5, 7]), so the supervised boundary between O and an entity type lands inside the entity
cluster, while the unlabelled words show the empty gap between the clusters. A strategy that
uses unlabelled data moves the boundary toward the gap; on held-out sentences from the full
clusters it finds clearly more entities than supervised training alone.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
from torch import Tensor

from baselines.strategies import (
    REMAINDER_FLOOR,
    EntropyMinimization,
    EntropyMinimizationConfig,
    SelfTraining,
    SelfTrainingConfig,
    SeqVAT,
    SeqVATConfig,
    adversarial_perturbation,
    kbest_distribution,
    kbest_kl,
    random_perturbation,
)
from baselines.taggers import CRFTaggerBase, Tagger, TaggerConfig, build_tagger
from smvae.metrics import score_tags

TAG_NAMES = ("O", "B-PER", "I-PER", "B-LOC", "I-LOC")
ENTITY_TYPES = ("PER", "LOC")

# Generated corpus (see the module docstring).
WORD_DIM = 2
OUTSIDE_SPREAD = 0.3
CLUSTER_CENTRE = 4.0
CLUSTER_SPREAD = 1.0
LABELLED_RANGE = (6.5, 7.0)
NOISE_SPREAD = 0.3
NUM_LABELLED = 8
NUM_UNLABELLED = 200
NUM_HELD_OUT = 200

# Full-batch Adam on the tiny tagger.
LEARNING_RATE = 0.05
# Minimum F1 gain (points) of a strategy over supervised training on the generated corpus.
MIN_F1_GAIN = 5.0


@dataclass(frozen=True)
class Corpus:
    """Padded word vectors [B, N, D], mask [B, N] and gold tags."""

    words: Tensor
    mask: Tensor
    tags: list[list[str]]


def _entity_feature(entity_type: str, labelled: bool, generator: torch.Generator) -> float:
    sign = 1.0 if entity_type == "PER" else -1.0
    if labelled:
        low, high = LABELLED_RANGE
        return sign * (low + (high - low) * float(torch.rand(1, generator=generator)))
    return sign * (CLUSTER_CENTRE + CLUSTER_SPREAD * float(torch.randn(1, generator=generator)))


def _sentence_tags(labelled: bool, generator: torch.Generator) -> list[str]:
    """Five to eight words with single-word entities separated by O words.

    A labelled sentence contains one PER and one LOC entity; other sentences make two attempts at
    a random type, dropping an entity that would touch another.
    """
    length = int(torch.randint(5, 9, (1,), generator=generator))
    tags = ["O"] * length
    for attempt in range(2):
        if labelled:
            entity_type = ENTITY_TYPES[attempt]
        else:
            entity_type = ENTITY_TYPES[int(torch.randint(0, 2, (1,), generator=generator))]
        while True:
            position = int(torch.randint(0, length, (1,), generator=generator))
            free = all(tag == "O" for tag in tags[max(position - 1, 0) : position + 2])
            if free or not labelled:
                break
        if free:
            tags[position] = f"B-{entity_type}"
    return tags


def _make_corpus(num_sentences: int, seed: int, labelled: bool) -> Corpus:
    generator = torch.Generator().manual_seed(seed)
    all_tags = [_sentence_tags(labelled, generator) for _ in range(num_sentences)]
    num_words = max(len(tags) for tags in all_tags)
    words = torch.zeros(num_sentences, num_words, WORD_DIM)
    mask = torch.zeros(num_sentences, num_words, dtype=torch.bool)
    for row, tags in enumerate(all_tags):
        for position, tag in enumerate(tags):
            if tag == "O":
                line = OUTSIDE_SPREAD * float(torch.randn(1, generator=generator))
            else:
                line = _entity_feature(tag[2:], labelled, generator)
            words[row, position, 0] = line
            words[row, position, 1] = NOISE_SPREAD * float(torch.randn(1, generator=generator))
        mask[row, : len(tags)] = True
    return Corpus(words, mask, all_tags)


def _concat(first: Corpus, second: Corpus) -> Corpus:
    num_words = max(first.words.size(1), second.words.size(1))

    def pad(tensor: Tensor) -> Tensor:
        padding = [0, num_words - tensor.size(1)]
        return torch.nn.functional.pad(tensor, ([0, 0] if tensor.dim() == 3 else []) + padding)

    return Corpus(
        torch.cat([pad(first.words), pad(second.words)]),
        torch.cat([pad(first.mask), pad(second.mask)]),
        first.tags + second.tags,
    )


def _subset(corpus: Corpus, rows: list[int], tags: list[list[str]]) -> Corpus:
    return Corpus(corpus.words[rows], corpus.mask[rows], tags)


@dataclass(frozen=True)
class ToyTask:
    labelled: Corpus
    unlabelled: Corpus
    held_out: Corpus


def _toy_task(seed: int) -> ToyTask:
    return ToyTask(
        labelled=_make_corpus(NUM_LABELLED, seed, labelled=True),
        unlabelled=_make_corpus(NUM_UNLABELLED, seed + 1, labelled=False),
        held_out=_make_corpus(NUM_HELD_OUT, seed + 2, labelled=False),
    )


def _new_tagger(seed: int, head: str = "crf") -> Tagger:
    torch.manual_seed(seed)
    return build_tagger(
        TaggerConfig(word_dim=WORD_DIM, tag_names=TAG_NAMES, head=head, dropout=0.0)
    )


def _train(
    tagger: Tagger, corpus: Corpus, steps: int, extra_loss: Callable[[Tagger], Tensor] | None = None
) -> Tagger:
    """Full-batch Adam on the supervised loss plus an optional strategy term."""
    optimizer = torch.optim.Adam(tagger.parameters(), lr=LEARNING_RATE)
    tags = tagger.encode_tags(corpus.tags, corpus.words.size(1))
    tagger.train()
    for _ in range(steps):
        optimizer.zero_grad()
        loss = tagger.loss(corpus.words, corpus.mask, tags)
        if extra_loss is not None:
            loss = loss + extra_loss(tagger)
        loss.backward()
        optimizer.step()
    return tagger


def _f1(tagger: Tagger, corpus: Corpus) -> float:
    tagger.eval()
    predicted = tagger.decode(corpus.words, corpus.mask)
    return score_tags(corpus.tags, predicted, entity_types=ENTITY_TYPES).f1


def _trained_a_little(seed: int = 0) -> tuple[CRFTaggerBase, ToyTask]:
    task = _toy_task(seed)
    tagger = _train(_new_tagger(seed), task.labelled, steps=100)
    assert isinstance(tagger, CRFTaggerBase)
    return tagger.eval(), task


def _padded_batch(seed: int, lengths: tuple[int, ...], dim: int) -> tuple[Tensor, Tensor]:
    generator = torch.Generator().manual_seed(seed)
    num_words = max(lengths)
    words = torch.randn(len(lengths), num_words, dim, generator=generator)
    mask = torch.arange(num_words).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)
    return words, mask


# ------------------------------------------------------------------------------ SeqVAT
@pytest.mark.parametrize("head", ["crf", "bilstm-crf"])
def test_adversarial_perturbation_has_norm_epsilon_per_sentence(head: str) -> None:
    torch.manual_seed(0)
    tagger = build_tagger(
        TaggerConfig(word_dim=16, tag_names=TAG_NAMES, head=head, lstm_hidden=8, lstm_layers=2)
    ).eval()
    words, mask = _padded_batch(1, lengths=(7, 1, 4, 2), dim=16)
    config = SeqVATConfig(k=3, epsilon=2.5, xi=0.1, power_iterations=2)
    clean = kbest_distribution(tagger, words, mask, config.k)
    generator = torch.Generator().manual_seed(2)
    perturbation = adversarial_perturbation(tagger, words, mask, clean, config, generator)
    assert perturbation.shape == words.shape
    assert not perturbation.requires_grad
    norms = perturbation.flatten(1).norm(dim=1)
    torch.testing.assert_close(norms, torch.full((4,), 2.5), atol=1e-4, rtol=0)
    assert (perturbation[~mask] == 0).all()


def test_adversarial_direction_beats_random_direction() -> None:
    tagger, task = _trained_a_little()
    words, mask = task.unlabelled.words[:64], task.unlabelled.mask[:64]
    config = SeqVATConfig(k=3, epsilon=0.5, xi=0.1, power_iterations=1)
    clean = kbest_distribution(tagger, words, mask, config.k)
    adversarial_kl, random_kl = [], []
    for seed in range(5):
        generator = torch.Generator().manual_seed(seed)
        adversarial = adversarial_perturbation(tagger, words, mask, clean, config, generator)
        random = random_perturbation(words, mask, config.epsilon, generator)
        with torch.no_grad():
            adversarial_kl.append(float(kbest_kl(tagger, words + adversarial, mask, clean).mean()))
            random_kl.append(float(kbest_kl(tagger, words + random, mask, clean).mean()))
    mean_adversarial = sum(adversarial_kl) / len(adversarial_kl)
    mean_random = sum(random_kl) / len(random_kl)
    assert mean_adversarial > 3.0 * mean_random, (adversarial_kl, random_kl)


def test_kbest_kl_is_zero_on_clean_input() -> None:
    tagger, task = _trained_a_little()
    words, mask = task.unlabelled.words[:16], task.unlabelled.mask[:16]
    clean = kbest_distribution(tagger, words, mask, k=4)
    with torch.no_grad():
        same = kbest_kl(tagger, words, mask, clean)
    torch.testing.assert_close(same, torch.zeros(16), atol=1e-5, rtol=0)


def test_kbest_kl_is_positive_on_moved_input() -> None:
    tagger, task = _trained_a_little()
    words, mask = task.unlabelled.words[:16], task.unlabelled.mask[:16]
    clean = kbest_distribution(tagger, words, mask, k=4)
    moved_words = words + random_perturbation(words, mask, 3.0, torch.Generator().manual_seed(1))
    with torch.no_grad():
        moved = kbest_kl(tagger, moved_words, mask, clean)
    assert (moved >= -1e-6).all()
    assert moved.sum() > 0


def test_kbest_kl_matches_explicit_buckets_for_one_sentence() -> None:
    tagger, task = _trained_a_little()
    words, mask = task.unlabelled.words[:1], task.unlabelled.mask[:1]
    clean = kbest_distribution(tagger, words, mask, k=2)
    shifted = words + random_perturbation(words, mask, 2.0, torch.Generator().manual_seed(3))
    with torch.no_grad():
        emissions = tagger.emissions(shifted, mask)
        log_z = tagger.crf.log_partition(emissions, mask)
        q = [
            math.exp(float(tagger.crf.score(emissions, clean.paths[:, j], mask) - log_z))
            for j in range(2)
        ]
        kl = float(kbest_kl(tagger, shifted, mask, clean)[0])
    p = [math.exp(float(value)) for value in clean.log_probs[0]]
    buckets = list(zip([*p, 1 - sum(p)], [*q, 1 - sum(q)], strict=True))
    expected = sum(a * math.log(a / b) for a, b in buckets if a > REMAINDER_FLOOR)
    assert kl == pytest.approx(expected, rel=1e-3, abs=1e-6)


def test_seqvat_loss_backpropagates_into_the_tagger() -> None:
    tagger, task = _trained_a_little()
    tagger.train()
    words, mask = task.unlabelled.words[:8], task.unlabelled.mask[:8]
    loss = SeqVAT(SeqVATConfig(epsilon=1.0)).loss(
        tagger, words, mask, torch.Generator().manual_seed(0)
    )
    assert loss.dim() == 0
    assert torch.isfinite(loss)
    loss.backward()
    assert tagger.classifier.weight.grad is not None
    assert tagger.classifier.weight.grad.abs().sum() > 0


def test_seqvat_rejects_the_softmax_tagger() -> None:
    tagger = _new_tagger(0, head="softmax")
    words, mask = _padded_batch(0, lengths=(3, 2), dim=WORD_DIM)
    with pytest.raises(NotImplementedError, match="CRF tagger"):
        SeqVAT(SeqVATConfig()).loss(tagger, words, mask)


# ---------------------------------------------------------------- entropy minimisation
def test_entropy_term_matches_brute_force_over_tag_sequences() -> None:
    torch.manual_seed(4)
    tagger = build_tagger(TaggerConfig(word_dim=WORD_DIM, tag_names=TAG_NAMES, head="crf")).eval()
    with torch.no_grad():
        for parameter in tagger.parameters():
            parameter.normal_()
    lengths = (4, 1, 3)
    words, mask = _padded_batch(5, lengths=lengths, dim=WORD_DIM)
    weight = 0.7
    loss = EntropyMinimization(EntropyMinimizationConfig(weight)).unlabelled_loss(
        tagger, words, mask
    )
    assert isinstance(tagger, CRFTaggerBase)
    expected = []
    with torch.no_grad():
        emissions = tagger.emissions(words, mask)
        for row, length in enumerate(lengths):
            paths = torch.tensor(list(itertools.product(range(len(TAG_NAMES)), repeat=length)))
            repeated = emissions[row : row + 1, :length].expand(len(paths), -1, -1)
            scores = tagger.crf.score(repeated, paths, torch.ones_like(paths, dtype=torch.bool))
            log_probs = scores - torch.logsumexp(scores, dim=0)
            expected.append(float(-(log_probs.exp() * log_probs).sum()))
    assert float(loss.detach()) == pytest.approx(weight * sum(expected) / len(expected), rel=1e-5)


@pytest.mark.parametrize("head", ["softmax", "crf", "bilstm-crf"])
def test_entropy_term_is_zero_for_a_peaked_model(head: str) -> None:
    tagger = _new_tagger(0, head=head)
    with torch.no_grad():
        tagger.classifier.weight.zero_()
        tagger.classifier.bias.copy_(torch.tensor([60.0, -60.0, -60.0, -60.0, -60.0]))
    words, mask = _padded_batch(6, lengths=(5, 2, 3), dim=WORD_DIM)
    loss = EntropyMinimization(EntropyMinimizationConfig(1.0)).unlabelled_loss(tagger, words, mask)
    assert float(loss.detach()) == pytest.approx(0.0, abs=1e-6)


# -------------------------------------------------------------------------- self-training
@pytest.mark.parametrize("head", ["softmax", "crf"])
def test_self_training_keeps_exactly_the_confident_sentences(head: str) -> None:
    task = _toy_task(7)
    tagger = _train(_new_tagger(7, head=head), task.labelled, steps=60)
    corpus = task.unlabelled
    decoded, log_probs = tagger.eval().decode_with_log_prob(corpus.words, corpus.mask)
    confidence = log_probs.exp()
    threshold = float(confidence.median())
    tagger.train()
    strategy = SelfTraining(SelfTrainingConfig(rounds=1, threshold=threshold))
    selection = strategy.select_pseudo_labels(tagger, corpus.words, corpus.mask)
    expected = [row for row, value in enumerate(confidence.tolist()) if value >= threshold]
    assert 0 < len(expected) < len(decoded)
    assert selection.kept == expected
    assert selection.tags == [decoded[row] for row in expected]
    torch.testing.assert_close(selection.confidence, confidence)
    assert tagger.training


# ----------------------------------------------------------------------------- configs
@pytest.mark.parametrize(
    ("factory", "message"),
    [
        (lambda: SelfTrainingConfig(rounds=0), "rounds"),
        (lambda: SelfTrainingConfig(threshold=1.5), "threshold"),
        (lambda: EntropyMinimizationConfig(weight=-1.0), "weight"),
        (lambda: SeqVATConfig(k=0), "k must"),
        (lambda: SeqVATConfig(epsilon=0.0), "epsilon"),
        (lambda: SeqVATConfig(xi=-0.1), "xi"),
        (lambda: SeqVATConfig(power_iterations=0), "power_iterations"),
    ],
)
def test_configs_reject_invalid_values(factory: Callable[[], object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        factory()


# ------------------------------------------------------------------- learning (slow)
# NOTE: with the settings of the tests below, data seeds 1, 11, ..., 71 (8 seeds) gave these F1
# gains over supervised training: self-training +4.6 to +12.5 and SeqVAT +6.0 to +16.5.
# Entropy minimisation gained +2.9 to +15.9 on 7 seeds but lost 1.5 on seed 61, where the PER
# boundary stayed inside its cluster. Seed 51 gave +10.2, +14.3 and +13.8 respectively.
LEARNING_SEED = 51


@pytest.mark.slow
def test_self_training_beats_supervised_on_held_out_data() -> None:
    task = _toy_task(LEARNING_SEED)
    supervised_steps, round_steps, rounds = 600, 200, 6
    supervised = _train(_new_tagger(LEARNING_SEED), task.labelled, supervised_steps)
    supervised_f1 = _f1(supervised, task.held_out)

    strategy = SelfTraining(SelfTrainingConfig(rounds=rounds, threshold=0.9))
    tagger = _train(_new_tagger(LEARNING_SEED), task.labelled, supervised_steps)
    for _ in range(strategy.config.rounds):
        selection = strategy.select_pseudo_labels(
            tagger, task.unlabelled.words, task.unlabelled.mask
        )
        kept = _subset(task.unlabelled, selection.kept, selection.tags)
        tagger = _train(tagger, _concat(task.labelled, kept), round_steps)
    assert _f1(tagger, task.held_out) >= supervised_f1 + MIN_F1_GAIN, supervised_f1


@pytest.mark.slow
def test_entropy_minimisation_beats_supervised_on_held_out_data() -> None:
    task = _toy_task(LEARNING_SEED)
    steps = 600
    supervised_f1 = _f1(_train(_new_tagger(LEARNING_SEED), task.labelled, steps), task.held_out)

    strategy = EntropyMinimization(EntropyMinimizationConfig(weight=0.1))
    unlabelled = task.unlabelled

    def entropy_term(tagger: Tagger) -> Tensor:
        return strategy.unlabelled_loss(tagger, unlabelled.words, unlabelled.mask)

    tagger = _train(_new_tagger(LEARNING_SEED), task.labelled, steps, entropy_term)
    assert _f1(tagger, task.held_out) >= supervised_f1 + MIN_F1_GAIN, supervised_f1


@pytest.mark.slow
def test_seqvat_beats_supervised_on_held_out_data() -> None:
    task = _toy_task(LEARNING_SEED)
    steps = 1200
    supervised_f1 = _f1(_train(_new_tagger(LEARNING_SEED), task.labelled, steps), task.held_out)

    strategy = SeqVAT(SeqVATConfig(k=3, epsilon=0.5, xi=0.1, power_iterations=1))
    everything = _concat(task.labelled, task.unlabelled)
    generator = torch.Generator().manual_seed(0)

    def adversarial_term(tagger: Tagger) -> Tensor:
        return strategy.loss(tagger, everything.words, everything.mask, generator)

    tagger = _train(_new_tagger(LEARNING_SEED), task.labelled, steps, adversarial_term)
    assert _f1(tagger, task.held_out) >= supervised_f1 + MIN_F1_GAIN, supervised_f1
