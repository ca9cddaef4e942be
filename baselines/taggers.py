"""Word taggers of the text baselines: BERT (softmax head), BERT-CRF and BERT-BiLSTM-CRF.

Dimensions:
    B  sentences in a batch
    N  words per sentence, padded
    D  size of the input word vectors (encoder output, one vector per word)
    H  LSTM hidden size per direction
    T  tags

The taggers read precomputed word vectors ``words [B, N, D]`` and ``word_mask [B, N]``.
The mask is True at real words, which come first in each row, and every sentence has at least
one word.
Labels exist only at word positions. The encoder is not part of these modules; with
``encoder.finetune=true`` the caller passes encoder outputs that carry gradient.

All taggers share one interface (:class:`Tagger`): ``emissions``, ``loss``, ``decode``,
``decode_with_log_prob`` and ``sequence_entropy``. CRF taggers expose their CRF as ``.crf``.
A perturbation of the input vectors needs no special argument: ``emissions(words + delta,
mask)`` is differentiable with respect to ``delta``, which is how SeqVAT uses it.

Tag ids follow the order of ``TaggerConfig.tag_names``; :meth:`Tagger.encode_tags` converts
tag strings to ids.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from baselines.crf import CRF
from smvae.spans import OUTSIDE_TAG, spans_from_tags, split_tag, tags_from_spans

logger = logging.getLogger(__name__)

HEADS = ("softmax", "crf", "bilstm-crf")

# BiLSTM size per direction, our own choice. The SMVAE paper (Zhou et al., 2022) gives no size
# for its BERT-BiLSTM-CRF baseline. 384 per direction makes the output 768 wide, the hidden
# size that paper gives for SMVAE.
DEFAULT_LSTM_HIDDEN = 384
# Dropout on word vectors and LSTM outputs: BERT's hidden dropout, the default
# hidden_dropout_prob of transformers' BertConfig.
DEFAULT_DROPOUT = 0.1


def validate_tag_names(tag_names: Sequence[str]) -> None:
    """Raise ValueError unless the names are distinct IOB2 tags with O and both B-/I- per type."""
    if len(set(tag_names)) != len(tag_names):
        raise ValueError(f"tag_names contains duplicates: {list(tag_names)}")
    if OUTSIDE_TAG not in tag_names:
        raise ValueError(f"tag_names must contain {OUTSIDE_TAG!r}, got {list(tag_names)}")
    prefixes_by_type: dict[str, set[str]] = {}
    for name in tag_names:
        prefix, entity_type = split_tag(name)
        if entity_type is not None:
            prefixes_by_type.setdefault(entity_type, set()).add(prefix)
    for entity_type, prefixes in sorted(prefixes_by_type.items()):
        if prefixes != {"B", "I"}:
            raise ValueError(f"entity type {entity_type!r} needs both B- and I- tags in tag_names")


def repair_bio(tags: Sequence[str]) -> list[str]:
    """Rewrite tags as valid IOB2: an I-X that does not continue X becomes B-X.

    Uses the lenient reading of :mod:`smvae.spans` (an orphan I- opens an entity), so the
    entities read from the output are the same as those read from the input.
    """
    return tags_from_spans(spans_from_tags(tags, strict=False), len(tags))


@dataclass(frozen=True)
class TaggerConfig:
    """Settings of one tagger; ``head`` picks the baseline.

    Attributes:
        word_dim: size ``D`` of the input word vectors.
        tag_names: IOB2 tags in id order, for example ("O", "B-PER", "I-PER", ...).
        head: "softmax" (BERT), "crf" (BERT-CRF) or "bilstm-crf" (BERT-BiLSTM-CRF).
        lstm_hidden: LSTM hidden size per direction (bilstm-crf only).
        lstm_layers: number of stacked BiLSTM layers (bilstm-crf only).
        dropout: dropout probability on word vectors, between LSTM layers and on LSTM outputs.
    """

    word_dim: int
    tag_names: tuple[str, ...]
    head: str = "bilstm-crf"
    lstm_hidden: int = DEFAULT_LSTM_HIDDEN
    lstm_layers: int = 1
    dropout: float = DEFAULT_DROPOUT

    def __post_init__(self) -> None:
        object.__setattr__(self, "tag_names", tuple(self.tag_names))
        if self.word_dim < 1:
            raise ValueError(f"word_dim must be at least 1, got {self.word_dim}")
        validate_tag_names(self.tag_names)
        if self.head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {self.head!r}")
        if self.lstm_hidden < 1:
            raise ValueError(f"lstm_hidden must be at least 1, got {self.lstm_hidden}")
        if self.lstm_layers < 1:
            raise ValueError(f"lstm_layers must be at least 1, got {self.lstm_layers}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {self.dropout}")

    @property
    def num_tags(self) -> int:
        return len(self.tag_names)

    def to_dict(self) -> dict[str, Any]:
        """Plain values for checkpoints and result rows."""
        row = asdict(self)
        row["tag_names"] = list(self.tag_names)
        return row


class Tagger(nn.Module, ABC):
    """Interface shared by the taggers: emission scores, loss, decoding and sequence entropy."""

    classifier: nn.Linear  # output layer that produces the emissions; each subclass sets it

    def __init__(self, config: TaggerConfig) -> None:
        super().__init__()
        self.config = config
        self.tag_names = config.tag_names
        self.tag_ids = {name: index for index, name in enumerate(config.tag_names)}
        self.dropout = nn.Dropout(config.dropout)

    def emissions(self, words: Tensor, mask: Tensor) -> Tensor:
        """Return per-word tag scores [B, N, T] for ``words [B, N, D]`` and ``mask [B, N]``."""
        if words.dim() != 3 or words.size(2) != self.config.word_dim:
            raise ValueError(
                f"words must have shape [B, N, {self.config.word_dim}], got {tuple(words.shape)}"
            )
        if mask.shape != words.shape[:2]:
            raise ValueError(
                f"mask shape {tuple(mask.shape)} does not match words {tuple(words.shape[:2])}"
            )
        return self._emissions(words, mask.bool())

    @abstractmethod
    def _emissions(self, words: Tensor, mask: Tensor) -> Tensor:
        """Compute emissions [B, N, T] from checked inputs."""

    @abstractmethod
    def loss_from_emissions(self, emissions: Tensor, mask: Tensor, tags: Tensor) -> Tensor:
        """Return the supervised loss (scalar) of tag ids ``tags [B, N]``."""

    @abstractmethod
    def decode_from_emissions(
        self, emissions: Tensor, mask: Tensor
    ) -> tuple[list[list[int]], Tensor]:
        """Return valid IOB2 tag ids per sentence (unpadded) and their log-probability [B]."""

    @abstractmethod
    def entropy_from_emissions(self, emissions: Tensor, mask: Tensor) -> Tensor:
        """Return the entropy of the model's distribution over label sequences, [B]."""

    def loss(self, words: Tensor, mask: Tensor, tags: Tensor) -> Tensor:
        """Return the supervised loss of tag ids ``tags [B, N]``; padding tags are ignored."""
        return self.loss_from_emissions(self.emissions(words, mask), mask.bool(), tags)

    @torch.no_grad()
    def decode_with_log_prob(self, words: Tensor, mask: Tensor) -> tuple[list[list[str]], Tensor]:
        """Return the decoded tags of each sentence and the model's log-probability of them [B]."""
        paths, log_probs = self.decode_from_emissions(self.emissions(words, mask), mask.bool())
        return [[self.tag_names[tag] for tag in path] for path in paths], log_probs

    def decode(self, words: Tensor, mask: Tensor) -> list[list[str]]:
        """Return valid IOB2 tags for the real words of each sentence."""
        return self.decode_with_log_prob(words, mask)[0]

    def sequence_entropy(self, words: Tensor, mask: Tensor) -> Tensor:
        """Return H(Y | x) of each sentence [B], differentiable."""
        return self.entropy_from_emissions(self.emissions(words, mask), mask.bool())

    def encode_tags(self, tags: Sequence[Sequence[str]], num_words: int) -> Tensor:
        """Convert tag strings to ids [B, num_words], padding with the id of O."""
        ids = torch.full((len(tags), num_words), self.tag_ids[OUTSIDE_TAG], dtype=torch.long)
        for row, sentence in enumerate(tags):
            if len(sentence) > num_words:
                raise ValueError(f"sentence {row} has {len(sentence)} tags, more than {num_words}")
            unknown = [tag for tag in sentence if tag not in self.tag_ids]
            if unknown:
                raise ValueError(f"sentence {row} has tags not in tag_names: {unknown}")
            ids[row, : len(sentence)] = torch.tensor([self.tag_ids[tag] for tag in sentence])
        return ids


class SoftmaxTagger(Tagger):
    """BERT baseline: a linear layer per word, cross-entropy, argmax decoding then BIO repair.

    The loss is the cross-entropy averaged over real words.
    Decoding takes the argmax tag of each word and rewrites it with :func:`repair_bio`; the
    returned log-probability is that of the repaired sequence, sum_i log p(y_i | x).
    """

    def __init__(self, config: TaggerConfig) -> None:
        super().__init__(config)
        self.classifier = nn.Linear(config.word_dim, config.num_tags)

    def _emissions(self, words: Tensor, mask: Tensor) -> Tensor:
        return self.classifier(self.dropout(words))  # [B, N, T]

    def loss_from_emissions(self, emissions: Tensor, mask: Tensor, tags: Tensor) -> Tensor:
        return F.cross_entropy(emissions[mask], tags[mask].long())  # mean over real words

    def decode_from_emissions(
        self, emissions: Tensor, mask: Tensor
    ) -> tuple[list[list[int]], Tensor]:
        log_probs = F.log_softmax(emissions, dim=-1)  # [B, N, T]
        best = log_probs.argmax(dim=-1).tolist()  # [B][N]
        lengths = mask.sum(dim=1).tolist()
        paths: list[list[int]] = []
        sequence_log_probs = []
        for row, length in enumerate(lengths):
            names = repair_bio([self.tag_names[tag] for tag in best[row][:length]])
            path = [self.tag_ids[name] for name in names]
            positions = torch.arange(length, device=emissions.device)
            chosen = torch.tensor(path, device=emissions.device)
            sequence_log_probs.append(log_probs[row, positions, chosen].sum())
            paths.append(path)
        return paths, torch.stack(sequence_log_probs)  # [B]

    def entropy_from_emissions(self, emissions: Tensor, mask: Tensor) -> Tensor:
        """Sum of per-word entropies: the sequence entropy, since words are independent here."""
        log_probs = F.log_softmax(emissions, dim=-1)  # [B, N, T]
        word_entropy = -(log_probs.exp() * log_probs).sum(dim=-1)  # [B, N]
        return word_entropy.masked_fill(~mask, 0.0).sum(dim=1)  # [B]


class CRFTaggerBase(Tagger):
    """Taggers whose emissions feed a BIO-constrained linear-chain CRF (``self.crf``).

    The loss is the CRF negative log-likelihood averaged over sentences. Decoding is Viterbi,
    and the returned log-probability is s(y*) - log Z.
    """

    def __init__(self, config: TaggerConfig) -> None:
        super().__init__(config)
        self.crf = CRF(config.num_tags, config.tag_names)

    def loss_from_emissions(self, emissions: Tensor, mask: Tensor, tags: Tensor) -> Tensor:
        return self.crf.neg_log_likelihood(emissions, tags, mask, reduction="mean")

    def decode_from_emissions(
        self, emissions: Tensor, mask: Tensor
    ) -> tuple[list[list[int]], Tensor]:
        paths, best_scores = self.crf.viterbi(emissions, mask)
        return paths, best_scores - self.crf.log_partition(emissions, mask)  # [B]

    def entropy_from_emissions(self, emissions: Tensor, mask: Tensor) -> Tensor:
        return self.crf.entropy(emissions, mask)  # [B]


class CRFTagger(CRFTaggerBase):
    """BERT-CRF baseline: linear emissions from the word vectors, then a CRF."""

    def __init__(self, config: TaggerConfig) -> None:
        super().__init__(config)
        self.classifier = nn.Linear(config.word_dim, config.num_tags)

    def _emissions(self, words: Tensor, mask: Tensor) -> Tensor:
        return self.classifier(self.dropout(words))  # [B, N, T]


class BiLSTMCRFTagger(CRFTaggerBase):
    """BERT-BiLSTM-CRF baseline: a BiLSTM over the word vectors, linear emissions, a CRF.

    The LSTM reads packed sequences, so padding never reaches the backward direction and
    padded batches give the same emissions at real words as unpadded ones.
    """

    def __init__(self, config: TaggerConfig) -> None:
        super().__init__(config)
        self.lstm = nn.LSTM(
            input_size=config.word_dim,
            hidden_size=config.lstm_hidden,
            num_layers=config.lstm_layers,
            bidirectional=True,
            batch_first=True,
            dropout=config.dropout if config.lstm_layers > 1 else 0.0,
        )
        self.classifier = nn.Linear(2 * config.lstm_hidden, config.num_tags)

    def _emissions(self, words: Tensor, mask: Tensor) -> Tensor:
        lengths = mask.sum(dim=1).cpu()  # [B], on the CPU as packing requires
        packed = pack_padded_sequence(
            self.dropout(words), lengths, batch_first=True, enforce_sorted=False
        )
        encoded, _ = self.lstm(packed)
        hidden, _ = pad_packed_sequence(
            encoded, batch_first=True, total_length=words.size(1)
        )  # [B, N, 2H], zero at padding
        return self.classifier(self.dropout(hidden))  # [B, N, T]


_TAGGERS: dict[str, type[Tagger]] = {
    "softmax": SoftmaxTagger,
    "crf": CRFTagger,
    "bilstm-crf": BiLSTMCRFTagger,
}


def build_tagger(config: TaggerConfig) -> Tagger:
    """Build the tagger that ``config.head`` names."""
    tagger = _TAGGERS[config.head](config)
    logger.debug("built %s tagger with %d tags", config.head, config.num_tags)
    return tagger
