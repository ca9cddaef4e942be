"""Semi-supervised strategies for the taggers: self-training, entropy minimisation, SeqVAT.

Dimensions:
    B  sentences in a batch
    N  words per sentence, padded
    D  size of the input word vectors
    K  label sequences kept by k-best decoding

Each strategy is written once against the :class:`~baselines.taggers.Tagger` interface:

- Self-training (ST, Yarowsky, 1995) works with every tagger. Its confidence is the
  probability the model gives its own decoded sequence: exp(s(y*) - log Z) for a CRF, the
  product of word probabilities of the repaired argmax tags for the softmax tagger.
- Entropy minimisation (EM, Grandvalet and Bengio, 2004) works with every tagger. It
  minimises the exact sequence entropy H(Y | x) (a forward recursion for the CRF; for the
  softmax tagger the sum of word entropies, which is the same quantity because its words are
  independent given x).
- SeqVAT (Chen et al., 2020) needs a CRF tagger, because its divergence is defined over
  CRF label sequences.

The training loop that calls these (labelled batches, unlabelled batches, rounds) belongs
to the caller; nothing here steps an optimiser.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor

from baselines.taggers import CRFTaggerBase, Tagger

logger = logging.getLogger(__name__)

# Self-training defaults: 3 rounds and a sequence probability of at least 0.9 are our own
# choices, to tune on development F1.
DEFAULT_ST_ROUNDS = 3
DEFAULT_ST_THRESHOLD = 0.9

# Weight of the entropy term: our own choice, to tune on development F1. On the generated
# corpus of tests/test_strategies.py, weights of 0.3 and more often let the CRF collapse to
# all-O predictions (an entropy of 0) while 0.1 did not.
DEFAULT_EM_WEIGHT = 0.1

# SeqVAT defaults. Perturbation norm 5.0, finite-difference step 0.1 and one power iteration
# are the defaults of the virtual adversarial training code for text of Miyato, Dai and
# Goodfellow (2017), in tensorflow/models research/adversarial_text/adversarial_losses.py.
# That norm was tuned on IMDB with normalised word embeddings, so tune epsilon for each
# encoder's word vectors. k = 3 best sequences and the loss weight 1.0 are our own choices.
DEFAULT_SEQVAT_K = 3
DEFAULT_SEQVAT_EPSILON = 5.0
DEFAULT_SEQVAT_XI = 0.1
DEFAULT_SEQVAT_POWER_ITERATIONS = 1
DEFAULT_SEQVAT_WEIGHT = 1.0

# Probability mass below which the "all other sequences" bucket of SeqVAT is treated as empty.
# Near path scores of magnitude 100 (our estimate for tweets), float32 values are about 1e-5
# apart, so score - log Z is rounded by that much and a smaller remainder is rounding noise.
REMAINDER_FLOOR = 1e-5

# Norms below this are treated as zero when normalising a perturbation direction.
TINY_NORM = 1e-12


# --------------------------------------------------------------------------- self-training
@dataclass(frozen=True)
class SelfTrainingConfig:
    """Self-training settings: retraining rounds and the confidence threshold for keeping."""

    rounds: int = DEFAULT_ST_ROUNDS
    threshold: float = DEFAULT_ST_THRESHOLD

    def __post_init__(self) -> None:
        if self.rounds < 1:
            raise ValueError(f"rounds must be at least 1, got {self.rounds}")
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold must lie in [0, 1], got {self.threshold}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class PseudoLabels:
    """Sentences of an unlabelled batch that self-training keeps, with their decoded tags.

    Attributes:
        kept: batch indices of the kept sentences, ascending.
        tags: decoded IOB2 tags of the kept sentences, in the order of ``kept``.
        confidence: [B] probability of each sentence's decoded sequence, kept or not.
    """

    kept: list[int]
    tags: list[list[str]]
    confidence: Tensor


class SelfTraining:
    """Self-training (Yarowsky, 1995): keep confidently decoded unlabelled sentences.

    The caller's loop: train on labelled data, call :meth:`select_pseudo_labels` on the
    unlabelled data, retrain on labelled plus kept sentences, ``config.rounds`` times.
    """

    def __init__(self, config: SelfTrainingConfig) -> None:
        self.config = config

    @torch.no_grad()
    def select_pseudo_labels(self, tagger: Tagger, words: Tensor, mask: Tensor) -> PseudoLabels:
        """Decode a batch and keep the sentences whose sequence probability reaches the threshold.

        The tagger is switched to eval mode (no dropout) for decoding and then restored.
        """
        was_training = tagger.training
        tagger.eval()
        try:
            tags, log_probs = tagger.decode_with_log_prob(words, mask)
        finally:
            tagger.train(was_training)
        confidence = log_probs.exp()  # [B]
        kept = [
            index
            for index, value in enumerate(confidence.tolist())
            if value >= self.config.threshold
        ]
        logger.debug("self-training kept %d of %d sentences", len(kept), len(tags))
        return PseudoLabels(kept=kept, tags=[tags[index] for index in kept], confidence=confidence)


# ------------------------------------------------------------------ entropy minimisation
@dataclass(frozen=True)
class EntropyMinimizationConfig:
    """Entropy minimisation settings: the weight of the entropy term."""

    weight: float = DEFAULT_EM_WEIGHT

    def __post_init__(self) -> None:
        if self.weight < 0.0:
            raise ValueError(f"weight must be non-negative, got {self.weight}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class EntropyMinimization:
    """Entropy minimisation (Grandvalet and Bengio, 2004) on unlabelled sentences.

    The term is ``weight * mean over sentences of H(Y | x)``, with H the entropy of the
    distribution over whole label sequences. We take it rather than the mean entropy of the
    word marginals because it is the conditional entropy H(Y | x) of the structured output
    that the method minimises, and it is exact for the CRF. Per sentence, it is also on the
    scale of the CRF negative log-likelihood it is added to.
    """

    def __init__(self, config: EntropyMinimizationConfig) -> None:
        self.config = config

    def unlabelled_loss(self, tagger: Tagger, words: Tensor, mask: Tensor) -> Tensor:
        """Return the weighted mean sequence entropy of the batch (scalar, differentiable)."""
        return self.config.weight * tagger.sequence_entropy(words, mask).mean()


# ------------------------------------------------------------------------------- SeqVAT
@dataclass(frozen=True)
class SeqVATConfig:
    """SeqVAT settings.

    Attributes:
        k: number of best label sequences of the clean model that the divergence compares.
        epsilon: L2 norm of the adversarial perturbation of each sentence (all real words).
        xi: L2 norm of the probe perturbation in the finite-difference power iteration.
        power_iterations: power-iteration steps that refine the adversarial direction.
        weight: weight of the SeqVAT term in the caller's total loss.
    """

    k: int = DEFAULT_SEQVAT_K
    epsilon: float = DEFAULT_SEQVAT_EPSILON
    xi: float = DEFAULT_SEQVAT_XI
    power_iterations: int = DEFAULT_SEQVAT_POWER_ITERATIONS
    weight: float = DEFAULT_SEQVAT_WEIGHT

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ValueError(f"k must be at least 1, got {self.k}")
        if self.epsilon <= 0.0:
            raise ValueError(f"epsilon must be positive, got {self.epsilon}")
        if self.xi <= 0.0:
            raise ValueError(f"xi must be positive, got {self.xi}")
        if self.power_iterations < 1:
            raise ValueError(f"power_iterations must be at least 1, got {self.power_iterations}")
        if self.weight < 0.0:
            raise ValueError(f"weight must be non-negative, got {self.weight}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class KBestDistribution:
    """The clean model's k best label sequences and their probabilities (no gradient).

    Attributes:
        paths: [B, K, N] tag ids, best first.
        log_probs: [B, K] log p(path | x); -inf where a sentence has fewer than K sequences.
    """

    paths: Tensor
    log_probs: Tensor

    @property
    def valid(self) -> Tensor:
        """Mask [B, K] of the slots that contain a real sequence."""
        return torch.isfinite(self.log_probs)


def _require_crf_tagger(tagger: Tagger) -> CRFTaggerBase:
    if not isinstance(tagger, CRFTaggerBase):
        raise NotImplementedError(
            f"SeqVAT needs a CRF tagger (head 'crf' or 'bilstm-crf'), got {type(tagger).__name__}"
        )
    return tagger


def kbest_distribution(tagger: Tagger, words: Tensor, mask: Tensor, k: int) -> KBestDistribution:
    """Decode the k best sequences of the clean input and their probabilities, without gradient."""
    crf_tagger = _require_crf_tagger(tagger)
    with torch.no_grad():
        emissions = crf_tagger.emissions(words, mask)  # [B, N, T]
        paths, scores = crf_tagger.crf.kbest(emissions, mask, k)  # [B, K, N], [B, K]
        log_z = crf_tagger.crf.log_partition(emissions, mask)  # [B]
    return KBestDistribution(paths=paths, log_probs=scores - log_z.unsqueeze(1))


def _path_log_probs(tagger: CRFTaggerBase, words: Tensor, mask: Tensor, paths: Tensor) -> Tensor:
    """Return log p(path | words) of each of the K paths per sentence: [B, K], differentiable."""
    batch_size, k, num_words = paths.shape
    emissions = tagger.emissions(words, mask)  # [B, N, T]
    repeated = emissions.unsqueeze(1).expand(-1, k, -1, -1).reshape(batch_size * k, num_words, -1)
    repeated_mask = mask.unsqueeze(1).expand(-1, k, -1).reshape(batch_size * k, num_words)
    scores = tagger.crf.score(repeated, paths.reshape(batch_size * k, num_words), repeated_mask)
    log_z = tagger.crf.log_partition(emissions, mask)  # [B]
    return scores.view(batch_size, k) - log_z.unsqueeze(1)  # [B, K]


def _log_remainder(path_log_probs: Tensor) -> Tensor:
    """Return log(1 - sum of the path probabilities) [B], floored at log REMAINDER_FLOOR."""
    covered = torch.logsumexp(path_log_probs, dim=1).clamp(max=0.0)  # [B]
    remainder = -torch.expm1(covered)  # [B], accurate when covered is near 0
    return remainder.clamp(min=REMAINDER_FLOOR).log()  # [B]


def kbest_kl(tagger: Tagger, words: Tensor, mask: Tensor, clean: KBestDistribution) -> Tensor:
    """Return KL(p_clean || p_words) over K + 1 outcomes, per sentence: [B].

    The outcomes are the clean model's k best sequences plus one bucket for all other
    sequences: the divergence of two CRF outputs in SeqVAT (Chen et al., 2020).
    NOTE: written from a description of SeqVAT's estimator, not checked against the
    equations of the paper.
    ``p_words`` scores the same sequences on ``words`` (typically perturbed) and is
    differentiable; ``clean`` carries no gradient. A bucket with under REMAINDER_FLOOR clean
    probability counts as empty.
    """
    crf_tagger = _require_crf_tagger(tagger)
    valid = clean.valid  # [B, K]
    clean_paths = clean.log_probs.masked_fill(~valid, 0.0)  # [B, K], finite everywhere
    perturbed = _path_log_probs(crf_tagger, words, mask, clean.paths)  # [B, K]
    perturbed = perturbed.masked_fill(~valid, 0.0)  # [B, K]
    path_terms = clean_paths.exp() * (clean_paths - perturbed)  # [B, K]
    path_kl = path_terms.masked_fill(~valid, 0.0).sum(dim=1)  # [B]

    none = float("-inf")
    clean_rest = _log_remainder(clean.log_probs)  # [B]
    perturbed_rest = _log_remainder(perturbed.masked_fill(~valid, none))  # [B]
    rest_mass = clean_rest.exp()  # [B]
    rest_kl = rest_mass * (clean_rest - perturbed_rest)  # [B]
    rest_kl = rest_kl.masked_fill(rest_mass <= REMAINDER_FLOOR, 0.0)  # [B]
    return path_kl + rest_kl  # [B]


def scale_per_sentence(direction: Tensor, mask: Tensor, norm: float) -> Tensor:
    """Zero ``direction [B, N, D]`` at padding and scale each sentence to L2 norm ``norm``.

    The norm is taken over all real words and features of a sentence together. A sentence
    whose direction is zero stays zero.
    """
    masked = direction * mask.unsqueeze(2)  # [B, N, D]
    lengths = masked.flatten(1).norm(dim=1).clamp(min=TINY_NORM)  # [B]
    return masked * (norm / lengths).view(-1, 1, 1)  # [B, N, D]


def random_perturbation(
    words: Tensor, mask: Tensor, norm: float, generator: torch.Generator | None = None
) -> Tensor:
    """Return a Gaussian direction scaled to ``norm`` per sentence, zero at padding: [B, N, D]."""
    noise = torch.randn(words.shape, generator=generator, dtype=words.dtype)
    return scale_per_sentence(noise.to(words.device), mask, norm)


def adversarial_perturbation(
    tagger: Tagger,
    words: Tensor,
    mask: Tensor,
    clean: KBestDistribution,
    config: SeqVATConfig,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Return the virtual adversarial perturbation [B, N, D], detached, norm epsilon per sentence.

    Finite-difference power iteration of virtual adversarial training (as in the
    adversarial_text code of Miyato et al., 2017): start from a random unit direction d,
    take g = grad_r KL(p_clean || p(words + r)) at r = xi * d, set d to g normalised per
    sentence, repeat ``power_iterations`` times, return epsilon * d. Padding positions stay
    zero. Where g vanishes for a sentence, its previous direction is kept.
    """
    mask = mask.bool()
    base = words.detach()  # [B, N, D]
    direction = random_perturbation(base, mask, 1.0, generator)  # [B, N, D], unit per sentence
    for _ in range(config.power_iterations):
        probe = (config.xi * direction).requires_grad_(True)  # [B, N, D]
        divergence = kbest_kl(tagger, base + probe, mask, clean).sum()
        (gradient,) = torch.autograd.grad(divergence, probe)  # [B, N, D]
        gradient = gradient * mask.unsqueeze(2)  # [B, N, D]
        has_signal = gradient.flatten(1).norm(dim=1) > TINY_NORM  # [B]
        direction = torch.where(
            has_signal.view(-1, 1, 1), scale_per_sentence(gradient, mask, 1.0), direction
        )  # [B, N, D]
    return (config.epsilon * direction).detach()  # [B, N, D]


def seqvat_loss(
    tagger: Tagger,
    words: Tensor,
    mask: Tensor,
    *,
    k: int = DEFAULT_SEQVAT_K,
    epsilon: float = DEFAULT_SEQVAT_EPSILON,
    xi: float = DEFAULT_SEQVAT_XI,
    power_iterations: int = DEFAULT_SEQVAT_POWER_ITERATIONS,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Return the SeqVAT loss (Chen et al., 2020): mean over sentences of the k-best KL.

    KL(p(. | words) || p(. | words + r_adv)) over the clean k best sequences plus the bucket
    of all others, with the clean side detached and r_adv from
    :func:`adversarial_perturbation`. Usable on labelled and unlabelled sentences (no tags).
    Gradient flows into the tagger (and into ``words`` if they carry gradient) through the
    perturbed side only.

    NOTE: the clean and perturbed passes run in the tagger's current mode. In training mode
    they draw different dropout masks, so part of the divergence comes from dropout.
    """
    mask = mask.bool()
    config = SeqVATConfig(k=k, epsilon=epsilon, xi=xi, power_iterations=power_iterations)
    clean = kbest_distribution(tagger, words, mask, config.k)
    perturbation = adversarial_perturbation(tagger, words, mask, clean, config, generator)
    return kbest_kl(tagger, words + perturbation, mask, clean).mean()


class SeqVAT:
    """SeqVAT (Chen et al., 2020): virtual adversarial training for CRF taggers."""

    def __init__(self, config: SeqVATConfig) -> None:
        self.config = config

    def loss(
        self, tagger: Tagger, words: Tensor, mask: Tensor, generator: torch.Generator | None = None
    ) -> Tensor:
        """Return ``weight * seqvat_loss`` for a batch (labelled or unlabelled)."""
        value = seqvat_loss(
            tagger,
            words,
            mask,
            k=self.config.k,
            epsilon=self.config.epsilon,
            xi=self.config.xi,
            power_iterations=self.config.power_iterations,
            generator=generator,
        )
        return self.config.weight * value
