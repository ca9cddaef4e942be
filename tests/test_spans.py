"""Tests of span enumeration and of the lenient and strict readings of BIO tags."""

from __future__ import annotations

import random

import pytest

from smvae.spans import (
    Span,
    count_orphan_inside_tags,
    enumerate_spans,
    num_candidate_spans,
    spans_from_tags,
    split_tag,
    tags_from_spans,
)

TYPES = ("PER", "LOC", "ORG", "MISC")
ALL_TAGS = ("O", *(f"{prefix}-{t}" for t in TYPES for prefix in "BI"))


def brute_force_spans(num_words: int, max_span_len: int) -> list[tuple[int, int]]:
    return sorted(
        (i, j)
        for i in range(num_words)
        for j in range(num_words)
        if i <= j and j - i + 1 <= max_span_len
    )


def random_spans(rng: random.Random, num_words: int) -> list[Span]:
    """Non-overlapping spans placed left to right with random gaps, lengths and types."""
    spans: list[Span] = []
    position = 0
    while position < num_words:
        position += rng.randint(0, 2)  # a gap of 0 makes adjacent entities
        if position >= num_words:
            break
        end = min(num_words - 1, position + rng.randint(0, 3))
        spans.append((position, end, rng.choice(TYPES)))
        position = end + 1
    return spans


# Enumeration


@pytest.mark.parametrize("max_span_len", [1, 2, 3, 8, 9, 30])
def test_enumerate_spans_matches_brute_force(max_span_len: int) -> None:
    for num_words in range(0, 26):
        spans = enumerate_spans(num_words, max_span_len)
        assert spans == brute_force_spans(num_words, max_span_len), (num_words, max_span_len)
        assert len(spans) == num_candidate_spans(num_words, max_span_len)


def test_enumerate_spans_longer_limit_than_text() -> None:
    # 4 words, no length limit in effect: 4 + 3 + 2 + 1 = 10 spans.
    assert enumerate_spans(4, 100) == [
        (0, 0), (0, 1), (0, 2), (0, 3),
        (1, 1), (1, 2), (1, 3),
        (2, 2), (2, 3),
        (3, 3),
    ]  # fmt: skip
    assert num_candidate_spans(4, 100) == 10


def test_enumerate_spans_limit_one() -> None:
    assert enumerate_spans(3, 1) == [(0, 0), (1, 1), (2, 2)]
    assert num_candidate_spans(3, 1) == 3


def test_num_candidate_spans_hand_values() -> None:
    # 10 words, at most 8 words long: 10 + 9 + ... + 3 = 52.
    assert num_candidate_spans(10, 8) == 52
    # 5 words, at most 2 words long: 5 + 4 = 9.
    assert num_candidate_spans(5, 2) == 9
    assert num_candidate_spans(0, 8) == 0


@pytest.mark.parametrize("max_span_len", [0, -1])
def test_span_limit_below_one_rejected(max_span_len: int) -> None:
    with pytest.raises(ValueError, match="max_span_len must be at least 1"):
        enumerate_spans(5, max_span_len)
    with pytest.raises(ValueError, match="max_span_len must be at least 1"):
        num_candidate_spans(5, max_span_len)


# Tags to spans and back


def test_round_trip_random_iob2() -> None:
    rng = random.Random(20221207)
    for _ in range(2000):
        num_words = rng.randint(1, 20)
        spans = random_spans(rng, num_words)
        tags = tags_from_spans(spans, num_words)
        assert len(tags) == num_words
        # IOB2 written by tags_from_spans reads back the same under both rules.
        assert spans_from_tags(tags) == spans, tags
        assert spans_from_tags(tags, strict=True) == spans, tags
        assert count_orphan_inside_tags(tags) == 0, tags
        assert tags_from_spans(spans_from_tags(tags), num_words) == tags


def test_round_trip_span_order_irrelevant() -> None:
    spans = [(3, 4, "LOC"), (0, 1, "PER")]
    assert tags_from_spans(spans, 5) == ["B-PER", "I-PER", "O", "B-LOC", "I-LOC"]


def test_random_tags_lenient_covers_every_entity_tag() -> None:
    # Under the lenient rule every B- or I- tag lies in exactly one span and O in none.
    rng = random.Random(7)
    for _ in range(1000):
        tags = [rng.choice(ALL_TAGS) for _ in range(rng.randint(1, 15))]
        covered = [0] * len(tags)
        for start, end, entity_type in spans_from_tags(tags):
            assert tags[start].endswith(f"-{entity_type}"), tags
            for index in range(start, end + 1):
                covered[index] += 1
        assert covered == [0 if tag == "O" else 1 for tag in tags], tags


# Lenient and strict readings on hand cases

READING_CASES = [
    # (tags, lenient spans, strict spans)
    (["O", "I-PER", "I-PER", "O"], [(1, 2, "PER")], []),
    (["B-PER", "I-LOC"], [(0, 0, "PER"), (1, 1, "LOC")], [(0, 0, "PER")]),
    (
        ["B-LOC", "I-LOC", "B-LOC", "I-LOC"],
        [(0, 1, "LOC"), (2, 3, "LOC")],
        [(0, 1, "LOC"), (2, 3, "LOC")],
    ),
    (["B-ORG", "O", "O", "B-PER"], [(0, 0, "ORG"), (3, 3, "PER")], [(0, 0, "ORG"), (3, 3, "PER")]),
    (["O", "O", "B-MISC", "I-MISC"], [(2, 3, "MISC")], [(2, 3, "MISC")]),
    (["B-PER"], [(0, 0, "PER")], [(0, 0, "PER")]),
    (["I-PER"], [(0, 0, "PER")], []),
    (["O"], [], []),
    ([], [], []),
    (["B-PER", "I-PER", "I-LOC", "I-LOC"], [(0, 1, "PER"), (2, 3, "LOC")], [(0, 1, "PER")]),
    (["I-PER", "I-LOC", "B-ORG"], [(0, 0, "PER"), (1, 1, "LOC"), (2, 2, "ORG")], [(2, 2, "ORG")]),
    (["B-PER", "I-LOC", "I-PER"], [(0, 0, "PER"), (1, 1, "LOC"), (2, 2, "PER")], [(0, 0, "PER")]),
]


@pytest.mark.parametrize(("tags", "lenient", "strict"), READING_CASES)
def test_spans_from_tags_hand_cases(
    tags: list[str], lenient: list[Span], strict: list[Span]
) -> None:
    assert spans_from_tags(tags) == lenient
    assert spans_from_tags(tags, strict=True) == strict


def test_lenient_count_is_b_plus_orphans() -> None:
    # Each B- and each orphan I- opens one lenient entity, and nothing else does.
    rng = random.Random(11)
    for _ in range(1000):
        tags = [rng.choice(ALL_TAGS) for _ in range(rng.randint(0, 15))]
        b_tags = sum(tag.startswith("B-") for tag in tags)
        assert len(spans_from_tags(tags)) == b_tags + count_orphan_inside_tags(tags), tags
        assert len(spans_from_tags(tags, strict=True)) == b_tags, tags


@pytest.mark.parametrize("tag", ["X-PER", "PER", "B-", "b-PER", "B_PER", ""])
def test_spans_from_tags_rejects_non_bio(tag: str) -> None:
    with pytest.raises(ValueError, match="invalid BIO tag"):
        spans_from_tags(["O", tag])


def test_split_tag() -> None:
    assert split_tag("O") == ("O", None)
    assert split_tag("B-PER") == ("B", "PER")
    assert split_tag("I-MISC") == ("I", "MISC")


# tags_from_spans rejections


@pytest.mark.parametrize(
    "spans",
    [
        [(0, 2, "PER"), (2, 3, "LOC")],
        [(1, 1, "PER"), (0, 3, "LOC")],
        [(1, 2, "PER"), (1, 2, "PER")],
    ],
)
def test_tags_from_spans_rejects_overlap(spans: list[Span]) -> None:
    with pytest.raises(ValueError, match="overlaps another span"):
        tags_from_spans(spans, 5)


@pytest.mark.parametrize("span", [(3, 5, "PER"), (5, 5, "PER"), (-1, 0, "PER"), (2, 1, "PER")])
def test_tags_from_spans_rejects_out_of_range(span: Span) -> None:
    with pytest.raises(ValueError, match="outside a text of 5 words"):
        tags_from_spans([span], 5)


# Orphan I- tags


@pytest.mark.parametrize(
    ("tags", "orphans"),
    [
        (["I-PER"], 1),
        (["O", "I-PER", "I-PER"], 1),
        (["B-PER", "I-LOC"], 1),
        (["B-PER", "I-PER", "I-LOC", "I-PER"], 2),
        (["B-PER", "I-PER", "O", "B-LOC", "I-LOC"], 0),
        (["I-PER", "O", "I-PER", "I-ORG"], 3),
        ([], 0),
    ],
)
def test_count_orphan_inside_tags(tags: list[str], orphans: int) -> None:
    assert count_orphan_inside_tags(tags) == orphans
