"""Spans: enumeration of candidate spans, gold spans from BIO tags, and back.

A span is ``(start, end, type)`` with inclusive word indices, as in the SMVAE paper's
``(l, r, y)`` tuples but 0-based.

How BIO tags become entities is decided once, here, and used by the reader's
statistics, the scorer and the models:

- lenient (default, the rule of conlleval): ``B-X`` opens an entity; ``I-X`` continues
  an open entity of type X and otherwise opens a new one. An orphan ``I-`` (after
  ``O`` or another type) therefore opens an entity, and ``B-PER I-LOC`` is two.
- strict IOB2: only ``B-X`` opens an entity and ``I-X`` only continues one of type X;
  an ``I-`` tag that continues nothing belongs to no entity.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

Span = tuple[int, int, str]

OUTSIDE_TAG = "O"


def _check_max_span_len(max_span_len: int) -> None:
    if max_span_len < 1:
        raise ValueError(f"max_span_len must be at least 1, got {max_span_len}")


def num_candidate_spans(num_words: int, max_span_len: int) -> int:
    """Number of spans of at most ``max_span_len`` words in a text of ``num_words`` words."""
    _check_max_span_len(max_span_len)
    width = min(num_words, max_span_len)
    return width * num_words - width * (width - 1) // 2


def enumerate_spans(num_words: int, max_span_len: int) -> list[tuple[int, int]]:
    """All ``(start, end)`` with ``end - start + 1 <= max_span_len``, ordered by start, then end.

    The work is O(num_words * max_span_len), not O(num_words ** 2).
    """
    _check_max_span_len(max_span_len)
    return [
        (start, end)
        for start in range(num_words)
        for end in range(start, min(start + max_span_len, num_words))
    ]


def split_tag(tag: str) -> tuple[str, str | None]:
    """Split a BIO tag into its prefix and type; raise ValueError when it is not BIO."""
    if tag == OUTSIDE_TAG:
        return OUTSIDE_TAG, None
    prefix, dash, entity_type = tag.partition("-")
    if dash != "-" or prefix not in ("B", "I") or not entity_type:
        raise ValueError(f"invalid BIO tag {tag!r}: expected 'O', 'B-<type>' or 'I-<type>'")
    return prefix, entity_type


def spans_from_tags(tags: Sequence[str], strict: bool = False) -> list[Span]:
    """Read the entities of one tag sequence (see the module docstring for the two rules)."""
    spans: list[Span] = []
    open_start: int | None = None
    open_type: str | None = None
    for index, tag in enumerate(tags):
        prefix, entity_type = split_tag(tag)
        continues = prefix == "I" and open_type == entity_type
        if continues:
            continue
        if open_type is not None:
            assert open_start is not None
            spans.append((open_start, index - 1, open_type))
            open_start, open_type = None, None
        if prefix == "B" or (prefix == "I" and not strict):
            open_start, open_type = index, entity_type
    if open_type is not None:
        assert open_start is not None
        spans.append((open_start, len(tags) - 1, open_type))
    return spans


def tags_from_spans(spans: Iterable[Span], num_words: int) -> list[str]:
    """Write non-overlapping spans as IOB2 tags; raise ValueError on overlap or bad bounds."""
    tags = [OUTSIDE_TAG] * num_words
    for start, end, entity_type in sorted(spans):
        if not 0 <= start <= end < num_words:
            raise ValueError(f"span ({start}, {end}) is outside a text of {num_words} words")
        if any(tag != OUTSIDE_TAG for tag in tags[start : end + 1]):
            raise ValueError(f"span ({start}, {end}, {entity_type}) overlaps another span")
        tags[start] = f"B-{entity_type}"
        for index in range(start + 1, end + 1):
            tags[index] = f"I-{entity_type}"
    return tags


def count_orphan_inside_tags(tags: Sequence[str]) -> int:
    """Count ``I-`` tags that follow ``O``, the start, or a tag of another type."""
    orphans = 0
    previous_type: str | None = None
    for tag in tags:
        prefix, entity_type = split_tag(tag)
        if prefix == "I" and entity_type != previous_type:
            orphans += 1
        previous_type = entity_type
    return orphans
