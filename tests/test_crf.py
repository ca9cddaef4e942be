"""CRF checks against brute force over every tag sequence of short padded sentences."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from baselines.crf import CRF, FORBIDDEN_SCORE, bio_allowed_transitions
from smvae.spans import count_orphan_inside_tags, split_tag

TAG_NAMES = ("O", "B-PER", "I-PER", "B-LOC", "I-LOC")
NUM_TAGS = len(TAG_NAMES)
LENGTHS = (4, 1, 3, 2)  # padded batch of different lengths, N = 4


def _random_crf(seed: int, constrained: bool) -> CRF:
    """CRF with standard-normal start, end and transition scores."""
    generator = torch.Generator().manual_seed(seed)
    crf = CRF(NUM_TAGS, TAG_NAMES if constrained else None).double()
    with torch.no_grad():
        for parameter in (crf.start_scores, crf.end_scores, crf.transitions):
            parameter.copy_(torch.randn(parameter.shape, generator=generator, dtype=torch.float64))
    return crf


def _random_batch(
    seed: int, lengths: tuple[int, ...] = LENGTHS
) -> tuple[torch.Tensor, torch.Tensor]:
    """Emissions [B, N, T] (padding filled with large values that must be ignored) and mask."""
    generator = torch.Generator().manual_seed(seed)
    num_words = max(lengths)
    emissions = 2.0 * torch.randn(
        len(lengths), num_words, NUM_TAGS, generator=generator, dtype=torch.float64
    )
    mask = torch.arange(num_words).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)
    emissions = emissions.masked_fill(~mask.unsqueeze(2), 50.0)
    return emissions, mask


def _reference_score(
    crf: CRF, emissions: torch.Tensor, path: tuple[int, ...], constrained: bool
) -> float:
    """Score of one path written out term by term; a forbidden step scores FORBIDDEN_SCORE."""
    start, end, transitions = (
        p.detach() for p in (crf.start_scores, crf.end_scores, crf.transitions)
    )
    names = [TAG_NAMES[tag] for tag in path]
    total = float(end[path[-1]])
    for position, tag in enumerate(path):
        total += float(emissions[position, tag])
        forbidden = constrained and _continues_nothing(names, position)
        if forbidden:
            total += FORBIDDEN_SCORE
        elif position == 0:
            total += float(start[tag])
        else:
            total += float(transitions[path[position - 1], tag])
    return total


def _continues_nothing(names: list[str], position: int) -> bool:
    """Whether the tag at ``position`` is an I- tag whose type the previous tag does not have."""
    prefix, entity_type = split_tag(names[position])
    previous_type = split_tag(names[position - 1])[1] if position > 0 else None
    return prefix == "I" and entity_type != previous_type


def _num_forbidden_steps(path: tuple[int, ...]) -> int:
    """Count I- tags that continue nothing: the steps IOB2 forbids (start or transition)."""
    return count_orphan_inside_tags([TAG_NAMES[tag] for tag in path])


def _enumerate(
    crf: CRF, emissions: torch.Tensor, length: int, constrained: bool
) -> list[tuple[float, tuple[int, ...]]]:
    """All (score, path) pairs of one sentence, best first."""
    paths = itertools.product(range(NUM_TAGS), repeat=length)
    scored = [(_reference_score(crf, emissions, path, constrained), path) for path in paths]
    return sorted(scored, reverse=True)


def _logsumexp(values: list[float]) -> float:
    top = max(values)
    return top + math.log(sum(math.exp(value - top) for value in values))


@pytest.mark.parametrize("constrained", [False, True])
def test_log_partition_matches_brute_force(constrained: bool) -> None:
    crf = _random_crf(0, constrained)
    emissions, mask = _random_batch(1)
    log_z = crf.log_partition(emissions, mask).detach()
    assert log_z.shape == (len(LENGTHS),)
    for row, length in enumerate(LENGTHS):
        scored = _enumerate(crf, emissions[row], length, constrained)
        expected = _logsumexp([score for score, _ in scored])
        assert float(log_z[row]) == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("constrained", [False, True])
def test_score_and_nll_match_brute_force(constrained: bool) -> None:
    crf = _random_crf(2, constrained)
    emissions, mask = _random_batch(3)
    generator = torch.Generator().manual_seed(4)
    tags = torch.randint(0, NUM_TAGS, mask.shape, generator=generator)
    scores = crf.score(emissions, tags, mask).detach()
    expected_nll = []
    for row, length in enumerate(LENGTHS):
        path = tuple(tags[row, :length].tolist())
        expected = _reference_score(crf, emissions[row], path, constrained)
        assert float(scores[row]) == pytest.approx(expected, abs=1e-9)
        log_z = _logsumexp([s for s, _ in _enumerate(crf, emissions[row], length, constrained)])
        expected_nll.append(log_z - expected)
    nll_sum = crf.neg_log_likelihood(emissions, tags, mask, reduction="sum").detach()
    nll_mean = crf.neg_log_likelihood(emissions, tags, mask, reduction="mean").detach()
    assert float(nll_sum) == pytest.approx(sum(expected_nll), abs=1e-8)
    assert float(nll_mean) == pytest.approx(sum(expected_nll) / len(LENGTHS), abs=1e-8)


def test_viterbi_matches_argmax() -> None:
    crf = _random_crf(5, constrained=False)
    emissions, mask = _random_batch(6)
    paths, scores = crf.viterbi(emissions, mask)
    for row, length in enumerate(LENGTHS):
        best_score, best_path = _enumerate(crf, emissions[row], length, constrained=False)[0]
        assert paths[row] == list(best_path)
        assert float(scores[row]) == pytest.approx(best_score, abs=1e-9)


@pytest.mark.parametrize("k", [1, 3, 7])
def test_kbest_matches_sorted_enumeration(k: int) -> None:
    crf = _random_crf(7, constrained=False)
    emissions, mask = _random_batch(8)
    paths, scores = crf.kbest(emissions, mask, k)
    assert paths.shape == (len(LENGTHS), k, max(LENGTHS))
    assert scores.shape == (len(LENGTHS), k)
    for row, length in enumerate(LENGTHS):
        expected = _enumerate(crf, emissions[row], length, constrained=False)[:k]
        found = len(expected)  # the one-word sentence has only 5 < 7 sequences
        for rank, (expected_score, expected_path) in enumerate(expected):
            assert float(scores[row, rank]) == pytest.approx(expected_score, abs=1e-9)
            assert tuple(paths[row, rank, :length].tolist()) == expected_path
        assert torch.isneginf(scores[row, found:]).all()
        assert (paths[row, :, length:] == 0).all()


def test_kbest_with_constraints_ranks_valid_paths_only() -> None:
    crf = _random_crf(9, constrained=True)
    emissions, mask = _random_batch(10)
    k = 6  # a one-word sentence has only 3 valid sequences: O, B-PER, B-LOC
    paths, scores = crf.kbest(emissions, mask, k)
    for row, length in enumerate(LENGTHS):
        valid = [
            (score, path)
            for score, path in _enumerate(crf, emissions[row], length, constrained=True)
            if _num_forbidden_steps(path) == 0
        ][:k]
        for rank, (expected_score, expected_path) in enumerate(valid):
            assert float(scores[row, rank]) == pytest.approx(expected_score, abs=1e-9)
            assert tuple(paths[row, rank, :length].tolist()) == expected_path
        assert torch.isneginf(scores[row, len(valid) :]).all()
    assert torch.isfinite(scores[1, :3]).all()


@pytest.mark.parametrize("constrained", [False, True])
def test_marginals_match_brute_force(constrained: bool) -> None:
    crf = _random_crf(11, constrained)
    emissions, mask = _random_batch(12)
    marginals = crf.marginals(emissions, mask).detach()
    assert marginals.shape == emissions.shape
    for row, length in enumerate(LENGTHS):
        scored = _enumerate(crf, emissions[row], length, constrained)
        log_z = _logsumexp([score for score, _ in scored])
        expected = torch.zeros(max(LENGTHS), NUM_TAGS, dtype=torch.float64)
        for score, path in scored:
            for position, tag in enumerate(path):
                expected[position, tag] += math.exp(score - log_z)
        torch.testing.assert_close(marginals[row], expected, atol=1e-9, rtol=0)


@pytest.mark.parametrize("constrained", [False, True])
def test_log_partition_gradient_equals_marginals(constrained: bool) -> None:
    crf = _random_crf(13, constrained)
    emissions, mask = _random_batch(14)
    emissions.requires_grad_(True)
    crf.log_partition(emissions, mask).sum().backward()
    assert emissions.grad is not None
    torch.testing.assert_close(
        emissions.grad, crf.marginals(emissions.detach(), mask), atol=1e-9, rtol=0
    )


@pytest.mark.parametrize("constrained", [False, True])
def test_entropy_matches_brute_force(constrained: bool) -> None:
    crf = _random_crf(15, constrained)
    emissions, mask = _random_batch(16)
    entropy = crf.entropy(emissions, mask).detach()
    for row, length in enumerate(LENGTHS):
        scored = _enumerate(crf, emissions[row], length, constrained)
        log_z = _logsumexp([score for score, _ in scored])
        expected = -sum(math.exp(s - log_z) * (s - log_z) for s, _ in scored)
        assert float(entropy[row]) == pytest.approx(expected, abs=1e-9)


def test_entropy_is_zero_for_peaked_emissions() -> None:
    crf = _random_crf(17, constrained=True)
    emissions, mask = _random_batch(18)
    peaked = torch.full_like(emissions, -200.0)
    peaked[:, :, 0] = 200.0  # every word O with certainty
    assert torch.allclose(
        crf.entropy(peaked, mask), torch.zeros(len(LENGTHS), dtype=torch.float64), atol=1e-12
    )


def test_decoded_paths_are_valid_bio_on_random_emissions() -> None:
    crf = _random_crf(19, constrained=True)
    generator = torch.Generator().manual_seed(20)
    lengths = (9, 1, 5, 2, 7, 3, 9, 4)
    num_words = max(lengths)
    emissions = 4.0 * torch.randn(
        len(lengths), num_words, NUM_TAGS, generator=generator, dtype=torch.float64
    )
    emissions[:, :, [2, 4]] += 3.0  # favour I- tags so that unconstrained decoding breaks IOB2
    mask = torch.arange(num_words).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)
    best_paths, _ = crf.viterbi(emissions, mask)
    paths, scores = crf.kbest(emissions, mask, k=5)
    unconstrained = CRF(NUM_TAGS).double()
    with torch.no_grad():
        for name in ("start_scores", "end_scores", "transitions"):
            getattr(unconstrained, name).copy_(getattr(crf, name))
    loose_paths, _ = unconstrained.viterbi(emissions, mask)
    assert any(count_orphan_inside_tags([TAG_NAMES[t] for t in p]) for p in loose_paths)
    for row, length in enumerate(lengths):
        assert count_orphan_inside_tags([TAG_NAMES[t] for t in best_paths[row]]) == 0
        for rank in range(5):
            if torch.isfinite(scores[row, rank]):
                names = [TAG_NAMES[t] for t in paths[row, rank, :length].tolist()]
                assert count_orphan_inside_tags(names) == 0


def test_bio_allowed_transitions_table() -> None:
    allowed_start, allowed = bio_allowed_transitions(TAG_NAMES)
    assert allowed_start.tolist() == [True, True, False, True, False]
    # rows: from O, B-PER, I-PER, B-LOC, I-LOC; columns: to the same tags
    assert allowed.tolist() == [
        [True, True, False, True, False],
        [True, True, True, True, False],
        [True, True, True, True, False],
        [True, True, False, True, True],
        [True, True, False, True, True],
    ]


def test_invalid_mask_is_rejected() -> None:
    crf = CRF(NUM_TAGS)
    emissions = torch.zeros(2, 3, NUM_TAGS)
    with pytest.raises(ValueError, match="prefix"):
        crf.log_partition(emissions, torch.tensor([[True, False, True], [True, True, True]]))
    with pytest.raises(ValueError, match="at least one real word"):
        crf.log_partition(emissions, torch.tensor([[False, False, False], [True, True, True]]))
    with pytest.raises(ValueError, match="shape"):
        crf.log_partition(torch.zeros(2, 3, NUM_TAGS + 1), torch.ones(2, 3, dtype=torch.bool))
