"""Entity-level scores: exact match of type and both boundaries, micro and per type.

Precision, recall and F1 are in percent. Lenient and strict IOB2 readings of tags are
described in :mod:`smvae.spans`. An empty prediction or gold set gives 0, not an error.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field

from smvae.datasets import ENTITY_TYPES
from smvae.spans import Span, spans_from_tags, split_tag


@dataclass(frozen=True)
class Counts:
    """Gold, predicted and correct entity counts with the scores they give."""

    gold: int
    predicted: int
    correct: int

    @property
    def precision(self) -> float:
        return 100.0 * self.correct / self.predicted if self.predicted else 0.0

    @property
    def recall(self) -> float:
        return 100.0 * self.correct / self.gold if self.gold else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


@dataclass(frozen=True)
class Scores:
    """Micro scores over all entities plus one :class:`Counts` per entity type."""

    overall: Counts
    per_type: dict[str, Counts] = field(default_factory=dict)

    @property
    def precision(self) -> float:
        return self.overall.precision

    @property
    def recall(self) -> float:
        return self.overall.recall

    @property
    def f1(self) -> float:
        return self.overall.f1

    @property
    def macro_f1(self) -> float:
        """Mean of per-type F1 over the types listed in ``per_type``."""
        if not self.per_type:
            return 0.0
        return sum(c.f1 for c in self.per_type.values()) / len(self.per_type)

    def to_dict(self, prefix: str = "") -> dict[str, float | int]:
        """Flatten to ``{prefix}precision``, ``{prefix}f1_PER``, ``{prefix}gold`` and so on."""
        row: dict[str, float | int] = {
            f"{prefix}precision": self.precision,
            f"{prefix}recall": self.recall,
            f"{prefix}f1": self.f1,
            f"{prefix}macro_f1": self.macro_f1,
            **{f"{prefix}{k}": v for k, v in asdict(self.overall).items()},
        }
        for entity_type, counts in self.per_type.items():
            row[f"{prefix}f1_{entity_type}"] = counts.f1
            row[f"{prefix}precision_{entity_type}"] = counts.precision
            row[f"{prefix}recall_{entity_type}"] = counts.recall
        return row


def score_spans(
    gold: Sequence[Iterable[Span]],
    predicted: Sequence[Iterable[Span]],
    entity_types: Sequence[str] = ENTITY_TYPES,
) -> Scores:
    """Score predicted spans against gold spans, one collection per sentence."""
    if len(gold) != len(predicted):
        raise ValueError(f"gold has {len(gold)} sentences but the prediction has {len(predicted)}")
    types = list(entity_types)
    tallies = {t: [0, 0, 0] for t in types}  # gold, predicted, correct
    for gold_spans, predicted_spans in zip(gold, predicted, strict=True):
        gold_set, predicted_set = set(gold_spans), set(predicted_spans)
        for spans, column in ((gold_set, 0), (predicted_set, 1), (gold_set & predicted_set, 2)):
            for _, _, entity_type in spans:
                if entity_type not in tallies:
                    tallies[entity_type] = [0, 0, 0]
                tallies[entity_type][column] += 1
    per_type = {t: Counts(*tallies[t]) for t in tallies}
    overall = Counts(*(sum(c[i] for c in tallies.values()) for i in range(3)))
    return Scores(overall, per_type)


def score_tags(
    gold: Sequence[Sequence[str]],
    predicted: Sequence[Sequence[str]],
    strict: bool = False,
    entity_types: Sequence[str] = ENTITY_TYPES,
) -> Scores:
    """Score tag sequences; each predicted tag must be BIO and line up with a gold word."""
    if len(gold) != len(predicted):
        raise ValueError(f"gold has {len(gold)} sentences but the prediction has {len(predicted)}")
    for index, (gold_tags, predicted_tags) in enumerate(zip(gold, predicted, strict=True)):
        if len(gold_tags) != len(predicted_tags):
            raise ValueError(
                f"sentence {index}: gold has {len(gold_tags)} words "
                f"but the prediction has {len(predicted_tags)} tags"
            )
        for position, tag in enumerate(predicted_tags):
            try:
                split_tag(tag)
            except ValueError as error:
                raise ValueError(f"sentence {index}, word {position}: {error}") from None
    return score_spans(
        [spans_from_tags(t, strict) for t in gold],
        [spans_from_tags(t, strict) for t in predicted],
        entity_types,
    )
