"""Span decoding: from per-span label probabilities to non-overlapping entities.

The rule is SMVAE's (Zhou et al., EMNLP 2022, section 3): spans whose most probable label
is not "O" are visited by that probability, highest first, and each is kept when it
overlaps no span kept before it. Ties in probability go to the span that starts earlier,
then to the shorter one, so the result never depends on the order of the input spans.

Dimension legend: B tweets, S candidate spans per tweet, C labels.
"""

from __future__ import annotations

from torch import Tensor

# (start, end, label, probability): inclusive 0-based word indices, label index, and the
# probability of that label.
DecodedSpan = tuple[int, int, int, float]


def decode_spans(
    probs: Tensor,  # [B,S,C]
    span_starts: Tensor,  # [B,S] long
    span_ends: Tensor,  # [B,S] long, inclusive
    span_mask: Tensor,  # [B,S] bool, False at padding spans
    outside_index: int = 0,
) -> list[list[DecodedSpan]]:
    """Pick the entities of each tweet greedily; each tweet's list is in order of start.

    The argmax and the filtering run on tensors; only spans predicted as entities reach
    the Python loop.
    """
    if probs.dim() != 3:
        raise ValueError(f"probs must have shape (B, S, C), got {tuple(probs.shape)}")
    for name, tensor in (("span_starts", span_starts), ("span_ends", span_ends)):
        if tensor.shape != probs.shape[:2]:
            raise ValueError(
                f"{name} has shape {tuple(tensor.shape)}, expected {tuple(probs.shape[:2])}"
            )
    if span_mask.shape != probs.shape[:2]:
        raise ValueError(
            f"span_mask has shape {tuple(span_mask.shape)}, expected {tuple(probs.shape[:2])}"
        )
    best_prob, best_label = probs.max(dim=-1)  # [B,S] each
    is_entity = span_mask.bool() & (best_label != outside_index)  # [B,S]
    tweet_index, span_index = is_entity.nonzero(as_tuple=True)  # [K] each
    candidates = zip(
        tweet_index.tolist(),
        span_starts[tweet_index, span_index].tolist(),
        span_ends[tweet_index, span_index].tolist(),
        best_label[tweet_index, span_index].tolist(),
        best_prob[tweet_index, span_index].tolist(),
        strict=True,
    )
    per_tweet: list[list[DecodedSpan]] = [[] for _ in range(probs.size(0))]
    for tweet, start, end, label, probability in candidates:
        per_tweet[tweet].append((start, end, label, probability))
    return [_greedy_non_overlapping(spans) for spans in per_tweet]


def _greedy_non_overlapping(spans: list[DecodedSpan]) -> list[DecodedSpan]:
    """Keep spans by probability (ties: earlier start, then earlier end) that overlap none kept."""
    ranked = sorted(spans, key=lambda span: (-span[3], span[0], span[1]))
    kept: list[DecodedSpan] = []
    for span in ranked:
        start, end = span[0], span[1]
        if all(end < other[0] or other[1] < start for other in kept):
            kept.append(span)
    return sorted(kept, key=lambda span: (span[0], span[1]))
