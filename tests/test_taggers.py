"""Tiny-config tests of the three taggers: shapes, valid BIO output, loss, padding."""

from __future__ import annotations

import pytest
import torch

from baselines.taggers import (
    BiLSTMCRFTagger,
    CRFTagger,
    CRFTaggerBase,
    SoftmaxTagger,
    Tagger,
    TaggerConfig,
    build_tagger,
    repair_bio,
)
from smvae.spans import count_orphan_inside_tags

TAG_NAMES = ("O", "B-PER", "I-PER", "B-LOC", "I-LOC")
INSIDE_IDS = [2, 4]
WORD_DIM = 16
LENGTHS = (6, 2, 4, 1)
HEADS = ("softmax", "crf", "bilstm-crf")


def _tagger(head: str, seed: int = 0, dropout: float = 0.0) -> Tagger:
    torch.manual_seed(seed)
    config = TaggerConfig(
        word_dim=WORD_DIM,
        tag_names=TAG_NAMES,
        head=head,
        lstm_hidden=8,
        lstm_layers=2,
        dropout=dropout,
    )
    return build_tagger(config)


def _batch(seed: int, lengths: tuple[int, ...] = LENGTHS) -> tuple[torch.Tensor, torch.Tensor]:
    """Random words [B, N, D] with large garbage at padding, and the mask."""
    generator = torch.Generator().manual_seed(seed)
    num_words = max(lengths)
    words = torch.randn(len(lengths), num_words, WORD_DIM, generator=generator)
    mask = torch.arange(num_words).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)
    return words.masked_fill(~mask.unsqueeze(2), 30.0), mask


def _random_tags(seed: int, mask: torch.Tensor) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, len(TAG_NAMES), mask.shape, generator=generator)


def test_builder_picks_the_head_class() -> None:
    assert type(_tagger("softmax")) is SoftmaxTagger
    assert type(_tagger("crf")) is CRFTagger
    assert type(_tagger("bilstm-crf")) is BiLSTMCRFTagger
    bilstm = _tagger("bilstm-crf")
    assert isinstance(bilstm, BiLSTMCRFTagger)
    assert isinstance(bilstm, CRFTaggerBase)
    assert bilstm.lstm.num_layers == 2


@pytest.mark.parametrize("head", HEADS)
def test_emission_shape(head: str) -> None:
    words, mask = _batch(1)
    emissions = _tagger(head).emissions(words, mask)
    assert emissions.shape == (len(LENGTHS), max(LENGTHS), len(TAG_NAMES))


@pytest.mark.parametrize("head", HEADS)
def test_decoded_tags_are_valid_bio(head: str) -> None:
    tagger = _tagger(head)
    with torch.no_grad():
        tagger.classifier.bias[INSIDE_IDS] += 5.0
    words, mask = _batch(2)
    decoded = tagger.decode(words, mask)
    assert [len(tags) for tags in decoded] == list(LENGTHS)
    assert any(tag.startswith("I-") for tags in decoded for tag in tags)
    for tags in decoded:
        assert count_orphan_inside_tags(tags) == 0


@pytest.mark.parametrize("head", HEADS)
def test_decoded_log_prob_matches_tags(head: str) -> None:
    tagger = _tagger(head).eval()
    words, mask = _batch(3)
    decoded, log_probs = tagger.decode_with_log_prob(words, mask)
    tags = tagger.encode_tags(decoded, mask.size(1))
    with torch.no_grad():
        emissions = tagger.emissions(words, mask)
        if isinstance(tagger, CRFTaggerBase):
            expected = tagger.crf.score(emissions, tags, mask) - tagger.crf.log_partition(
                emissions, mask
            )
        else:
            word_log_probs = torch.log_softmax(emissions, dim=-1).gather(2, tags.unsqueeze(2))
            expected = (word_log_probs.squeeze(2) * mask).sum(dim=1)
    torch.testing.assert_close(log_probs, expected)
    assert bool((log_probs <= 0).all())


@pytest.mark.parametrize("head", HEADS)
def test_loss_is_finite_and_backpropagates(head: str) -> None:
    tagger = _tagger(head, dropout=0.1).train()
    words, mask = _batch(4)
    words.requires_grad_(True)
    loss = tagger.loss(words, mask, _random_tags(5, mask))
    assert loss.dim() == 0
    assert torch.isfinite(loss)
    loss.backward()
    for name, parameter in tagger.named_parameters():
        assert parameter.grad is not None, name
        assert torch.isfinite(parameter.grad).all(), name
    assert words.grad is not None
    assert words.grad[mask].abs().sum() > 0
    assert words.grad[~mask].abs().sum() == 0


@pytest.mark.parametrize("head", HEADS)
def test_padding_does_not_change_the_loss(head: str) -> None:
    tagger = _tagger(head).eval()
    words, mask = _batch(6, lengths=(3, 7))
    tags = _random_tags(7, mask)
    padded = tagger.loss(words[:1], mask[:1], tags[:1])  # 3 words padded to 7
    alone = tagger.loss(words[:1, :3], mask[:1, :3], tags[:1, :3])
    torch.testing.assert_close(padded, alone)
    garbage_tags = tags[:1].clone()
    garbage_tags[0, 3:] = 4
    torch.testing.assert_close(tagger.loss(words[:1], mask[:1], garbage_tags), alone)


@pytest.mark.parametrize("head", HEADS)
def test_padding_does_not_change_emissions_of_real_words(head: str) -> None:
    tagger = _tagger(head).eval()
    words, mask = _batch(8, lengths=(3, 7))
    with torch.no_grad():
        padded = tagger.emissions(words, mask)[0, :3]
        alone = tagger.emissions(words[:1, :3], mask[:1, :3])[0]
    torch.testing.assert_close(padded, alone)


@pytest.mark.parametrize("head", HEADS)
def test_perturbation_of_words_reaches_the_emissions(head: str) -> None:
    tagger = _tagger(head).eval()
    words, mask = _batch(9)
    delta = torch.zeros_like(words, requires_grad=True)
    tagger.emissions(words + delta, mask).sum().backward()
    assert delta.grad is not None
    assert delta.grad[mask].abs().sum() > 0


def test_softmax_entropy_is_sum_of_word_entropies() -> None:
    tagger = _tagger("softmax").eval()
    words, mask = _batch(10)
    with torch.no_grad():
        probs = torch.softmax(tagger.emissions(words, mask), dim=-1)
        expected = (-(probs * probs.log()).sum(dim=-1) * mask).sum(dim=1)
        torch.testing.assert_close(tagger.sequence_entropy(words, mask), expected)


def test_repair_bio_opens_orphan_entities() -> None:
    tags = ["I-PER", "I-PER", "O", "I-LOC", "B-PER", "I-LOC", "I-LOC"]
    assert repair_bio(tags) == ["B-PER", "I-PER", "O", "B-LOC", "B-PER", "B-LOC", "I-LOC"]
    assert repair_bio(["O", "B-LOC", "I-LOC"]) == ["O", "B-LOC", "I-LOC"]


def test_encode_tags_pads_with_outside() -> None:
    tagger = _tagger("crf")
    ids = tagger.encode_tags([["B-PER", "I-PER"], ["O"]], num_words=3)
    assert ids.tolist() == [[1, 2, 0], [0, 0, 0]]
    with pytest.raises(ValueError, match="not in tag_names"):
        tagger.encode_tags([["B-ORG"]], num_words=3)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"head": "lstm"}, "head must be one of"),
        ({"tag_names": ("O", "B-PER")}, "needs both B- and I-"),
        ({"tag_names": ("B-PER", "I-PER")}, "must contain 'O'"),
        ({"tag_names": ("O", "O", "B-PER", "I-PER")}, "duplicates"),
        ({"tag_names": ("O", "PER")}, "invalid BIO tag"),
        ({"dropout": 1.0}, "dropout"),
        ({"word_dim": 0}, "word_dim"),
        ({"lstm_layers": 0}, "lstm_layers"),
    ],
)
def test_config_rejects_invalid_values(changes: dict[str, object], message: str) -> None:
    settings: dict[str, object] = {"word_dim": WORD_DIM, "tag_names": TAG_NAMES}
    settings.update(changes)
    with pytest.raises(ValueError, match=message):
        TaggerConfig(**settings)  # type: ignore[arg-type]


def test_config_round_trips_through_a_dict() -> None:
    config = TaggerConfig(word_dim=WORD_DIM, tag_names=list(TAG_NAMES), head="crf")  # type: ignore[arg-type]
    assert config.tag_names == TAG_NAMES
    assert TaggerConfig(**{**config.to_dict(), "tag_names": tuple(TAG_NAMES)}) == config
