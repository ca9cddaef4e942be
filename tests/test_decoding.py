"""Greedy span decoding: hand cases and brute force over all subsets of entity spans."""

from __future__ import annotations

import itertools
import random

import pytest
import torch

from smvae.decoding import DecodedSpan, decode_spans
from smvae.spans import enumerate_spans

NUM_LABELS = 3  # "O" and two entity types


Tensors4 = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def one_tweet(spans: list[tuple[int, int, int, float]]) -> Tensors4:
    """Tensors for one tweet whose span k has ``label`` with probability ``prob``.

    The remaining mass is spread evenly over the other labels, so ``prob`` must be above
    ``1 / NUM_LABELS`` for ``label`` to be the argmax.
    """
    probs = torch.zeros(1, len(spans), NUM_LABELS)
    for k, (_, _, label, prob) in enumerate(spans):
        probs[0, k] = (1.0 - prob) / (NUM_LABELS - 1)
        probs[0, k, label] = prob
    starts = torch.tensor([[start for start, _, _, _ in spans]])
    ends = torch.tensor([[end for _, end, _, _ in spans]])
    mask = torch.ones(1, len(spans), dtype=torch.bool)
    return probs, starts, ends, mask


def decode_one(spans: list[tuple[int, int, int, float]]) -> list[tuple[int, int, int]]:
    (decoded,) = decode_spans(*one_tweet(spans))
    return [(start, end, label) for start, end, label, _ in decoded]


def overlaps(a: DecodedSpan | tuple[int, int], b: DecodedSpan | tuple[int, int]) -> bool:
    return not (a[1] < b[0] or b[1] < a[0])


# --- hand cases ---------------------------------------------------------------------


def test_outer_span_wins_over_nested_span() -> None:
    assert decode_one([(0, 2, 1, 0.9), (1, 1, 2, 0.8), (3, 4, 1, 0.6)]) == [(0, 2, 1), (3, 4, 1)]


def test_nested_span_wins_when_more_probable() -> None:
    assert decode_one([(0, 2, 1, 0.8), (1, 1, 2, 0.95), (3, 4, 1, 0.6)]) == [(1, 1, 2), (3, 4, 1)]


def test_tie_goes_to_earlier_start() -> None:
    assert decode_one([(1, 2, 2, 0.8), (0, 1, 1, 0.8)]) == [(0, 1, 1)]


def test_tie_with_same_start_goes_to_shorter_span() -> None:
    assert decode_one([(0, 2, 1, 0.7), (0, 0, 2, 0.7), (1, 2, 1, 0.7)]) == [(0, 0, 2), (1, 2, 1)]


def test_result_does_not_depend_on_input_order() -> None:
    spans = [(0, 1, 1, 0.7), (1, 2, 2, 0.7), (2, 2, 1, 0.9), (3, 3, 1, 0.5), (0, 0, 2, 0.7)]
    expected = decode_one(spans)
    for permutation in itertools.permutations(spans):
        assert decode_one(list(permutation)) == expected


def test_outside_and_padding_spans_are_dropped() -> None:
    probs, starts, ends, mask = one_tweet([(0, 0, 0, 0.9), (1, 1, 1, 0.6), (0, 1, 2, 0.99)])
    mask[0, 2] = False  # the most probable entity span is padding
    (decoded,) = decode_spans(probs, starts, ends, mask)
    assert [(s, e, label) for s, e, label, _ in decoded] == [(1, 1, 1)]
    assert decoded[0][3] == pytest.approx(0.6)


def test_outside_index_other_than_zero() -> None:
    probs, starts, ends, mask = one_tweet([(0, 0, 2, 0.9), (1, 1, 0, 0.6)])
    (decoded,) = decode_spans(probs, starts, ends, mask, outside_index=2)
    assert [(s, e, label) for s, e, label, _ in decoded] == [(1, 1, 0)]


def test_batch_keeps_tweets_apart() -> None:
    first = one_tweet([(0, 1, 1, 0.9), (1, 1, 2, 0.8)])
    second = one_tweet([(1, 1, 2, 0.8), (0, 0, 0, 0.9)])
    probs, starts, ends, mask = (torch.cat(pair) for pair in zip(first, second, strict=True))
    decoded = decode_spans(probs, starts, ends, mask)
    assert [[(s, e, label) for s, e, label, _ in tweet] for tweet in decoded] == [
        [(0, 1, 1)],
        [(1, 1, 2)],
    ]


def test_empty_batch_and_no_entities() -> None:
    probs, starts, ends, mask = one_tweet([(0, 0, 0, 0.9)])
    assert decode_spans(probs, starts, ends, mask) == [[]]
    empty = torch.zeros(0, 0, NUM_LABELS)
    no_spans = torch.zeros(0, 0, dtype=torch.long)
    assert decode_spans(empty, no_spans, no_spans, no_spans.bool()) == []


def test_rejects_mismatched_shapes() -> None:
    probs, starts, ends, mask = one_tweet([(0, 0, 1, 0.9), (0, 1, 1, 0.9)])
    with pytest.raises(ValueError, match="span_ends"):
        decode_spans(probs, starts, ends[:, :1], mask)
    with pytest.raises(ValueError, match="probs"):
        decode_spans(probs[0], starts, ends, mask)


# --- brute force --------------------------------------------------------------------


def reference_greedy(candidates: list[DecodedSpan]) -> list[DecodedSpan]:
    """The rule written out plainly: best probability first, ties by (start, end)."""
    kept: list[DecodedSpan] = []
    for span in sorted(candidates, key=lambda c: (-c[3], c[0], c[1])):
        if not any(overlaps(span, other) for other in kept):
            kept.append(span)
    return sorted(kept)


def best_subset_by_priority(candidates: list[DecodedSpan]) -> list[DecodedSpan]:
    """Brute force over every subset: the non-overlapping subset that is largest in
    lexicographic order of membership along the priority order (greedy's defining property).
    """
    ranked = sorted(candidates, key=lambda c: (-c[3], c[0], c[1]))
    best: tuple[int, ...] | None = None
    for membership in itertools.product((1, 0), repeat=len(ranked)):
        chosen = [span for span, keep in zip(ranked, membership, strict=True) if keep]
        if all(not overlaps(a, b) for a, b in itertools.combinations(chosen, 2)):
            best = membership  # product((1, 0)) visits memberships in decreasing order
            break
    assert best is not None
    return sorted(span for span, keep in zip(ranked, best, strict=True) if keep)


def random_case(rng: random.Random) -> Tensors4:
    """A padded batch of 1-3 tweets with few distinct probabilities, so that ties occur."""
    lengths = [rng.randint(1, 5) for _ in range(rng.randint(1, 3))]
    per_tweet = []
    for length in lengths:
        bounds = enumerate_spans(length, 3)
        rng.shuffle(bounds)
        per_tweet.append(
            [(s, e, rng.randrange(NUM_LABELS), rng.choice([0.4, 0.5, 0.6, 0.9])) for s, e in bounds]
        )
    width = max(len(spans) for spans in per_tweet)
    tensors = [one_tweet(spans + [(0, 0, 1, 0.99)] * (width - len(spans))) for spans in per_tweet]
    probs, starts, ends, mask = (torch.cat(parts) for parts in zip(*tensors, strict=True))
    for b, spans in enumerate(per_tweet):
        mask[b, len(spans) :] = False  # padding spans that would otherwise win
    return probs, starts, ends, mask


def test_greedy_matches_reference_and_brute_force() -> None:
    rng = random.Random(0)
    for _ in range(200):
        probs, starts, ends, mask = random_case(rng)
        decoded = decode_spans(probs, starts, ends, mask)
        for b, kept in enumerate(decoded):
            best_prob, best_label = probs[b].max(dim=-1)
            candidates = [
                (int(starts[b, k]), int(ends[b, k]), int(best_label[k]), float(best_prob[k]))
                for k in range(probs.size(1))
                if mask[b, k] and best_label[k] != 0
            ]
            assert kept == sorted(kept), "each tweet's spans come in order of start"
            assert kept == reference_greedy(candidates)
            assert kept == best_subset_by_priority(candidates)
            for a, other in itertools.combinations(kept, 2):
                assert not overlaps(a, other)
            for dropped in set(candidates) - set(kept):  # maximal: nothing more fits
                assert any(overlaps(dropped, other) for other in kept)
