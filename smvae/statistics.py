"""Statistics of a dataset split: what ``mner data check`` prints.

Entities are counted with the lenient rule of :mod:`smvae.spans` (an orphan ``I-``
opens an entity), the rule the scorer uses too.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from smvae.conll import Tweet
from smvae.datasets import ENTITY_TYPES
from smvae.spans import count_orphan_inside_tags, spans_from_tags


@dataclass
class SplitStatistics:
    """Counts for one annotation file."""

    split: str
    path: str
    tweets: int
    words: int
    entities: dict[str, int]
    entities_total: int
    begin_tags: int
    orphan_inside_tags: int
    longest_tweet_words: int
    mean_tweet_words: float
    longest_entity_words: int
    sha256: str
    checksum_ok: bool
    images_found: int | None = None
    image_coverage: float | None = None
    entity_length_histogram: dict[int, int] = field(default_factory=dict)


def split_statistics(
    split: str,
    path: Path,
    tweets: Sequence[Tweet],
    sha256: str,
    expected_sha256: str,
    image_dir: Path | None = None,
) -> SplitStatistics:
    """Compute the statistics of one split; image coverage only when an image folder is given."""
    entity_counts: Counter[str] = Counter()
    lengths: Counter[int] = Counter()
    begin_tags = 0
    orphans = 0
    for tweet in tweets:
        for start, end, entity_type in spans_from_tags(tweet.tags):
            entity_counts[entity_type] += 1
            lengths[end - start + 1] += 1
        begin_tags += sum(tag.startswith("B-") for tag in tweet.tags)
        orphans += count_orphan_inside_tags(tweet.tags)
    words = sum(len(t) for t in tweets)
    images_found = None
    coverage = None
    if image_dir is not None:
        images_found = sum((image_dir / f"{t.image_id}.jpg").is_file() for t in tweets)
        coverage = images_found / len(tweets) if tweets else 0.0
    return SplitStatistics(
        split=split,
        path=str(path),
        tweets=len(tweets),
        words=words,
        entities={t: entity_counts.get(t, 0) for t in ENTITY_TYPES},
        entities_total=sum(entity_counts.values()),
        begin_tags=begin_tags,
        orphan_inside_tags=orphans,
        longest_tweet_words=max((len(t) for t in tweets), default=0),
        mean_tweet_words=words / len(tweets) if tweets else 0.0,
        longest_entity_words=max(lengths, default=0),
        sha256=sha256,
        checksum_ok=sha256 == expected_sha256,
        images_found=images_found,
        image_coverage=coverage,
        entity_length_histogram=dict(sorted(lengths.items())),
    )
