"""Tests of entity-level scores: hand-computed cases, then agreement with seqeval.

Scores are in percent. Each hand case writes its arithmetic next to the expected value.
"""

from __future__ import annotations

import random

import pytest
from seqeval.metrics import classification_report, f1_score, precision_score, recall_score
from seqeval.scheme import IOB2

from smvae.metrics import Counts, Scores, score_spans, score_tags

TYPES = ("PER", "LOC", "ORG", "MISC")
ALL_TAGS = ("O", *(f"{prefix}-{t}" for t in TYPES for prefix in "BI"))
SEQEVAL_SUMMARY_ROWS = ("micro avg", "macro avg", "weighted avg")


def assert_scores(scores: Scores | Counts, precision: float, recall: float, f1: float) -> None:
    assert scores.precision == pytest.approx(precision)
    assert scores.recall == pytest.approx(recall)
    assert scores.f1 == pytest.approx(f1)


# Hand-computed cases


def test_orphan_inside_tag_lenient_and_strict() -> None:
    gold = [["O", "I-PER", "I-PER", "O", "B-LOC"]]
    predicted = [["O", "B-PER", "I-PER", "O", "O"]]

    # Lenient: gold {PER(1,2), LOC(4,4)}, predicted {PER(1,2)}, correct 1.
    # P = 1/1 = 100, R = 1/2 = 50, F1 = 2*100*50/150 = 66.67.
    lenient = score_tags(gold, predicted)
    assert lenient.overall == Counts(gold=2, predicted=1, correct=1)
    assert_scores(lenient, 100.0, 50.0, 200 / 3)

    # Strict: the orphan I-PER opens nothing, so gold is {LOC(4,4)} and nothing is correct.
    strict = score_tags(gold, predicted, strict=True)
    assert strict.overall == Counts(gold=1, predicted=1, correct=0)
    assert_scores(strict, 0.0, 0.0, 0.0)


def test_type_change_inside_entity() -> None:
    gold = [["B-PER", "I-LOC", "O", "B-ORG"]]
    predicted = [["B-PER", "O", "O", "B-ORG"]]

    # Lenient: gold {PER(0,0), LOC(1,1), ORG(3,3)}, predicted {PER(0,0), ORG(3,3)}.
    # P = 2/2 = 100, R = 2/3 = 66.67, F1 = 2*100*(200/3)/(100+200/3) = 80.
    lenient = score_tags(gold, predicted)
    assert lenient.overall == Counts(gold=3, predicted=2, correct=2)
    assert_scores(lenient, 100.0, 200 / 3, 80.0)

    # Strict: I-LOC continues no LOC entity and belongs to none; gold is {PER(0,0), ORG(3,3)}.
    strict = score_tags(gold, predicted, strict=True)
    assert strict.overall == Counts(gold=2, predicted=2, correct=2)
    assert_scores(strict, 100.0, 100.0, 100.0)


def test_entities_at_first_and_last_word() -> None:
    gold = [["B-LOC", "O", "O", "B-PER", "I-PER"]]
    predicted = [["B-LOC", "O", "O", "O", "B-PER"]]

    # gold {LOC(0,0), PER(3,4)}, predicted {LOC(0,0), PER(4,4)}: only LOC is correct.
    # P = 1/2 = 50, R = 1/2 = 50, F1 = 50.
    scores = score_tags(gold, predicted)
    assert scores.overall == Counts(gold=2, predicted=2, correct=1)
    assert_scores(scores, 50.0, 50.0, 50.0)
    assert_scores(scores.per_type["LOC"], 100.0, 100.0, 100.0)
    assert_scores(scores.per_type["PER"], 0.0, 0.0, 0.0)


def test_adjacent_entities_of_one_type() -> None:
    gold = [["B-LOC", "I-LOC", "B-LOC", "I-LOC"]]

    # One long span in place of two: gold {LOC(0,1), LOC(2,3)}, predicted {LOC(0,3)}.
    # P = 0/1, R = 0/2, F1 = 0.
    merged = score_tags(gold, [["B-LOC", "I-LOC", "I-LOC", "I-LOC"]])
    assert merged.overall == Counts(gold=2, predicted=1, correct=0)
    assert_scores(merged, 0.0, 0.0, 0.0)

    # predicted {LOC(0,1), LOC(2,2)}: P = 1/2 = 50, R = 1/2 = 50, F1 = 50.
    split = score_tags(gold, [["B-LOC", "I-LOC", "B-LOC", "O"]])
    assert split.overall == Counts(gold=2, predicted=2, correct=1)
    assert_scores(split, 50.0, 50.0, 50.0)


def test_empty_prediction_scores_zero() -> None:
    # P = 0/0 is taken as 0, R = 0/1 = 0, F1 = 0.
    scores = score_tags([["B-PER", "O"]], [["O", "O"]])
    assert scores.overall == Counts(gold=1, predicted=0, correct=0)
    assert_scores(scores, 0.0, 0.0, 0.0)


def test_empty_gold_scores_zero() -> None:
    # P = 0/1 = 0, R = 0/0 is taken as 0, F1 = 0.
    scores = score_tags([["O", "O"]], [["B-PER", "O"]])
    assert scores.overall == Counts(gold=0, predicted=1, correct=0)
    assert_scores(scores, 0.0, 0.0, 0.0)


def test_no_entities_anywhere() -> None:
    scores = score_tags([["O"], []], [["O"], []])
    assert scores.overall == Counts(gold=0, predicted=0, correct=0)
    assert_scores(scores, 0.0, 0.0, 0.0)
    assert scores.macro_f1 == 0.0


def per_type_case() -> Scores:
    gold = [
        ["B-PER", "I-PER", "O", "B-LOC"],
        ["B-ORG", "O", "B-MISC", "I-MISC"],
        ["B-PER", "O", "O", "O"],
    ]
    predicted = [
        ["B-PER", "I-PER", "O", "B-ORG"],  # PER right, ORG(3,3) wrong
        ["B-ORG", "O", "B-MISC", "O"],  # ORG right, MISC(2,2) wrong boundary
        ["B-PER", "O", "B-LOC", "O"],  # PER right, LOC(2,2) wrong
    ]
    return score_tags(gold, predicted)


def test_counts_overall() -> None:
    # gold: PER 2, LOC 1, ORG 1, MISC 1 = 5; predicted: PER 2, LOC 1, ORG 2, MISC 1 = 6;
    # correct: PER 2, ORG 1 = 3.
    scores = per_type_case()
    assert scores.overall == Counts(gold=5, predicted=6, correct=3)
    # P = 3/6 = 50, R = 3/5 = 60, F1 = 2*50*60/110 = 54.55.
    assert_scores(scores, 50.0, 60.0, 6000 / 110)


def test_counts_per_type() -> None:
    scores = per_type_case()
    assert scores.per_type["PER"] == Counts(gold=2, predicted=2, correct=2)
    assert scores.per_type["LOC"] == Counts(gold=1, predicted=1, correct=0)
    assert scores.per_type["ORG"] == Counts(gold=1, predicted=2, correct=1)
    assert scores.per_type["MISC"] == Counts(gold=1, predicted=1, correct=0)
    assert_scores(scores.per_type["PER"], 100.0, 100.0, 100.0)
    assert_scores(scores.per_type["LOC"], 0.0, 0.0, 0.0)
    # ORG: P = 1/2 = 50, R = 1/1 = 100, F1 = 2*50*100/150 = 66.67.
    assert_scores(scores.per_type["ORG"], 50.0, 100.0, 200 / 3)
    assert_scores(scores.per_type["MISC"], 0.0, 0.0, 0.0)


def test_macro_f1_and_flat_dict() -> None:
    scores = per_type_case()
    # macro F1 = (100 + 0 + 66.67 + 0) / 4 = 41.67.
    assert scores.macro_f1 == pytest.approx((100 + 200 / 3) / 4)

    row = scores.to_dict(prefix="test_")
    assert row["test_f1"] == pytest.approx(6000 / 110)
    assert row["test_macro_f1"] == pytest.approx((100 + 200 / 3) / 4)
    assert row["test_f1_ORG"] == pytest.approx(200 / 3)
    assert row["test_recall_ORG"] == pytest.approx(100.0)
    assert row["test_gold"] == 5
    assert row["test_predicted"] == 6
    assert row["test_correct"] == 3


def test_types_listed_without_entities() -> None:
    # Every configured type gets a row, so macro F1 averages over all four types:
    # PER F1 = 100 and the other three 0 give (100 + 0 + 0 + 0) / 4 = 25.
    scores = score_tags([["B-PER"]], [["B-PER"]])
    assert list(scores.per_type) == list(TYPES)
    assert scores.per_type["MISC"] == Counts(gold=0, predicted=0, correct=0)
    assert scores.macro_f1 == pytest.approx(25.0)


def test_score_spans_duplicates_count_once() -> None:
    scores = score_spans([[(0, 1, "PER")]], [[(0, 1, "PER"), (0, 1, "PER")]])
    assert scores.overall == Counts(gold=1, predicted=1, correct=1)


# Rejected inputs


@pytest.mark.parametrize("tag", ["X-PER", "PER", "B-", "b-PER", ""])
def test_non_bio_prediction_rejected(tag: str) -> None:
    gold = [["O", "O"], ["O", "B-PER", "O"]]
    predicted = [["O", "O"], ["O", tag, "O"]]
    with pytest.raises(ValueError) as caught:
        score_tags(gold, predicted)
    message = str(caught.value)
    assert "sentence 1, word 1" in message
    assert repr(tag) in message


def test_sentence_count_mismatch_rejected() -> None:
    with pytest.raises(ValueError, match="gold has 2 sentences but the prediction has 1"):
        score_tags([["O"], ["O"]], [["O"]])
    with pytest.raises(ValueError, match="gold has 1 sentences but the prediction has 0"):
        score_spans([[(0, 0, "PER")]], [])


def test_word_count_mismatch_rejected() -> None:
    with pytest.raises(ValueError, match="sentence 1: gold has 3 words but the prediction has 2"):
        score_tags([["O"], ["O", "B-PER", "O"]], [["O"], ["O", "B-PER"]])


# Agreement with seqeval


def random_corpus(rng: random.Random) -> tuple[list[list[str]], list[list[str]]]:
    """Gold tags drawn at random (orphan I- and type switches included) and a noisy copy."""
    gold, predicted = [], []
    for _ in range(rng.randint(1, 6)):
        length = rng.randint(1, 12)
        sentence = [rng.choice(ALL_TAGS) if rng.random() < 0.6 else "O" for _ in range(length)]
        noisy = [rng.choice(ALL_TAGS) if rng.random() < 0.3 else tag for tag in sentence]
        gold.append(sentence)
        predicted.append(noisy)
    return gold, predicted


def assert_same_as_seqeval(
    ours: Scores,
    gold: list[list[str]],
    predicted: list[list[str]],
    strict: bool,
) -> None:
    options: dict[str, object] = {"mode": "strict", "scheme": IOB2} if strict else {}
    context = (gold, predicted, "strict" if strict else "lenient")
    for ours_value, theirs in (
        (ours.precision, precision_score(gold, predicted, zero_division=0, **options)),
        (ours.recall, recall_score(gold, predicted, zero_division=0, **options)),
        (ours.f1, f1_score(gold, predicted, zero_division=0, **options)),
    ):
        assert ours_value / 100 == pytest.approx(float(theirs), abs=1e-12), context

    report = classification_report(gold, predicted, output_dict=True, zero_division=0, **options)
    reported_types = set(report) - set(SEQEVAL_SUMMARY_ROWS)
    for entity_type, counts in ours.per_type.items():
        if entity_type not in reported_types:
            # seqeval lists only types seen in gold or prediction.
            assert counts == Counts(0, 0, 0), (entity_type, context)
            continue
        row = report[entity_type]
        assert counts.gold == row["support"], (entity_type, context)
        assert counts.f1 / 100 == pytest.approx(float(row["f1-score"]), abs=1e-12), context
        assert counts.precision / 100 == pytest.approx(float(row["precision"]), abs=1e-12)
        assert counts.recall / 100 == pytest.approx(float(row["recall"]), abs=1e-12)
    assert reported_types <= set(ours.per_type)


# seqeval's strict report averages over an empty list when a corpus has no entities.
@pytest.mark.filterwarnings("ignore:Mean of empty slice:RuntimeWarning")
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("strict", [False, True], ids=["lenient", "strict"])
def test_agrees_with_seqeval(strict: bool) -> None:
    # Lenient equals seqeval's default (conlleval-like) mode; strict equals
    # seqeval's mode="strict" with the IOB2 scheme.
    rng = random.Random(1234)
    for _ in range(300):
        gold, predicted = random_corpus(rng)
        ours = score_tags(gold, predicted, strict=strict)
        assert_same_as_seqeval(ours, gold, predicted, strict)
