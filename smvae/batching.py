"""Batches of tweets as padded tensors, with candidate spans and their gold labels.

Dimension legend: ``B`` tweets in the batch, ``N`` words of the longest tweet, ``S``
candidate spans of the tweet with most spans, ``Dw`` word vector size, ``Dv`` image
vector size.

Every tweet, labelled or not, train or test, gets the same candidate set: all spans of
at most ``max_span_len`` words (:func:`smvae.spans.enumerate_spans`). Gold spans never
enter by another door, so a gold entity longer than the limit has no candidate and is
scored as a miss.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from smvae.corpus import SplitData
from smvae.spans import enumerate_spans, spans_from_tags

IGNORE_LABEL = -100  # the ignore_index convention of torch.nn.functional.cross_entropy


@dataclass
class SpanBatch:
    """Tensors for one batch. ``labels`` contains the label id of each candidate span (0 = O)."""

    indices: list[int]  # tweet indices in the split
    words: torch.Tensor  # [B, N, Dw]
    word_mask: torch.Tensor  # [B, N] bool
    image: torch.Tensor  # [B, Dv]
    has_image: torch.Tensor  # [B] bool
    span_starts: torch.Tensor  # [B, S] long
    span_ends: torch.Tensor  # [B, S] long
    span_mask: torch.Tensor  # [B, S] bool
    labels: torch.Tensor  # [B, S] long, 0 = O

    def to(self, device: torch.device) -> SpanBatch:
        moved: dict[str, Any] = {
            name: value.to(device)
            for name, value in self.__dict__.items()
            if isinstance(value, torch.Tensor)
        }
        return dataclasses.replace(self, **moved)


class LabelMap:
    """Label ids of span classes: 0 is O, then the entity types in a fixed order."""

    def __init__(self, entity_types: Sequence[str]):
        self.names = ["O", *entity_types]
        self.ids = {name: index for index, name in enumerate(self.names)}

    def __len__(self) -> int:
        return len(self.names)


def cached_word_batch(split: SplitData, indices: Sequence[int]) -> torch.Tensor:
    """Return padded word vectors [B, N, Dw] of some tweets, read from the split's feature cache."""
    if split.words is None:
        raise ValueError(
            f"split {split.name} has no cached word vectors (encoder.finetune=true); "
            "encode its words with the run's word encoder"
        )
    lengths = [len(split.tweets[i]) for i in indices]
    words = torch.zeros(len(indices), max(lengths), split.words.dim)  # [B, N, Dw]
    for row, (index, length) in enumerate(zip(indices, lengths, strict=True)):
        words[row, :length] = torch.from_numpy(np.array(split.words[index]))
    return words


def collate(
    split: SplitData,
    indices: Sequence[int],
    label_map: LabelMap,
    max_span_len: int,
    image_dim: int,
    use_images: bool,
    words: torch.Tensor | None = None,
) -> SpanBatch:
    """Build the padded tensors of the given tweets of a split.

    ``words`` [B, N, Dw] are the tweets' word vectors when the caller computed them, as a
    fine-tuned encoder does (its output carries gradient). Without them the vectors come
    from the split's feature cache.
    """
    tweets = [split.tweets[i] for i in indices]
    num_words = max(len(t) for t in tweets)
    span_lists = [enumerate_spans(len(t), max_span_len) for t in tweets]
    num_spans = max(len(s) for s in span_lists)
    batch_size = len(tweets)

    if words is None:
        words = cached_word_batch(split, indices)  # [B, N, Dw]
    word_mask = torch.zeros(batch_size, num_words, dtype=torch.bool)  # [B, N]
    image = torch.zeros(batch_size, image_dim)  # [B, Dv]
    has_image = torch.zeros(batch_size, dtype=torch.bool)  # [B]
    starts = torch.zeros(batch_size, num_spans, dtype=torch.long)  # [B, S]
    ends = torch.zeros(batch_size, num_spans, dtype=torch.long)  # [B, S]
    span_mask = torch.zeros(batch_size, num_spans, dtype=torch.bool)  # [B, S]
    labels = torch.zeros(batch_size, num_spans, dtype=torch.long)  # [B, S]

    for row, (index, tweet, spans) in enumerate(zip(indices, tweets, span_lists, strict=True)):
        word_mask[row, : len(tweet)] = True
        if use_images and split.images is not None and split.images.has_image[index]:
            image[row] = torch.tensor(np.asarray(split.images.pooled[index]))
            has_image[row] = True
        span_array = torch.tensor(spans, dtype=torch.long)  # [S_row, 2]
        starts[row, : len(spans)] = span_array[:, 0]
        ends[row, : len(spans)] = span_array[:, 1]
        span_mask[row, : len(spans)] = True
        gold = {(s, e): label_map.ids[t] for s, e, t in spans_from_tags(tweet.tags)}
        for column, span in enumerate(spans):
            labels[row, column] = gold.get(span, 0)
    return SpanBatch(
        list(indices), words, word_mask, image, has_image, starts, ends, span_mask, labels
    )


def sample_training_spans(
    batch: SpanBatch, negative_ratio: float, generator: torch.Generator
) -> torch.Tensor:
    """Select the spans of the span cross-entropy: every gold span plus random O spans.

    The number of O spans is ``negative_ratio`` times the gold spans of the batch (the
    paper draws as many as there are entities), at least one, drawn uniformly without
    replacement from the O candidates of the whole batch. Returns a [B, S] bool mask.
    """
    gold = (batch.labels > 0) & batch.span_mask  # [B, S]
    outside = (batch.labels == 0) & batch.span_mask  # [B, S]
    requested = max(1, round(negative_ratio * int(gold.sum())))
    outside_positions = outside.flatten().nonzero().squeeze(1)  # [O]
    count = min(requested, outside_positions.numel())
    # The generator lives on the CPU; the drawn positions move to the batch's device.
    order = torch.randperm(outside_positions.numel(), generator=generator)[:count]
    chosen = outside_positions[order.to(outside_positions.device)]
    selected = gold.flatten().clone()
    selected[chosen] = True
    return selected.view_as(gold)  # [B, S]


def keep_spans(batch: SpanBatch, keep: torch.Tensor) -> SpanBatch:
    """Return a batch with only the spans marked in ``keep`` [B, S], packed to the left.

    Training needs the model on a few spans per tweet (the selected ones for L1 and
    L2, the predicted entities for L3), not on all O(N * max_span_len) candidates.
    """
    keep = keep & batch.span_mask  # [B, S]
    width = max(1, int(keep.sum(dim=1).max()))
    # A stable sort on "not kept" moves the kept spans to the front in their order.
    order = torch.sort((~keep).to(torch.int8), dim=1, stable=True).indices[:, :width]  # [B, K]
    return dataclasses.replace(
        batch,
        span_starts=batch.span_starts.gather(1, order),  # [B, K]
        span_ends=batch.span_ends.gather(1, order),  # [B, K]
        span_mask=keep.gather(1, order),  # [B, K]
        labels=batch.labels.gather(1, order),  # [B, K]
    )
