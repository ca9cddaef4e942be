"""The text encoder as a trainable module, for ``encoder.finetune=true``.

In the frozen mode every model reads word vectors from the feature cache
(:mod:`smvae.features`). In the fine-tuning mode the encoder is trained with the model's
head: each training batch runs the encoder on the batch's words and the gradient of the
loss reaches its weights. Words become vectors exactly as in the cache: each word is
tokenised on its own (:func:`smvae.features.tokenize_words`), pooled by its first piece
or the mean of its pieces, and a word beyond ``max_length`` pieces gets a zero vector.
In eval mode, the module's output for a tweet equals what the cache holds for the same
encoder weights.

Evaluation does not go through this module: it encodes a split with
:func:`smvae.features.encode_tweets` and the current weights (:meth:`WordEncoder.encode_split`),
so the scoring code of every model stays the same in both modes.

Dimension legend: ``B`` tweets, ``P`` pieces of the longest tweet, ``N`` words of the
longest tweet, ``D`` encoder hidden size.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from smvae.features import (
    InMemoryWordVectors,
    TextEncoderSettings,
    WordPieces,
    check_max_length,
    encode_tweets,
    encoder_hidden_size,
    load_text_encoder,
    tokenize_words,
)

logger = logging.getLogger(__name__)


def pooling_weights(pieces: Sequence[WordPieces], width: int, pooling: str) -> Tensor:
    """Return weights [B, N, P] that turn piece vectors into word vectors in one product.

    Row ``(b, n)`` contains 1 at the first piece of word n (``first``) or 1/k over its k
    pieces (``mean``), and only zeros for a word beyond the piece limit and for padding.
    """
    words = max(len(p.word_starts) for p in pieces)
    weights = torch.zeros(len(pieces), words, width)  # [B, N, P]
    for row, tweet in enumerate(pieces):
        for word, (start, end) in enumerate(zip(tweet.word_starts, tweet.word_ends, strict=True)):
            if start < 0:
                continue
            if pooling == "first":
                weights[row, word, start] = 1.0
            else:
                weights[row, word, start:end] = 1.0 / (end - start)
    return weights


class WordEncoder(nn.Module):
    """A Hugging Face encoder that maps tweets (lists of words) to word vectors [B, N, D].

    Attributes:
        tokenizer: the encoder's tokenizer (not a module; saved with the weights).
        encoder: the Hugging Face model whose weights are trained.
        settings: pooling and piece limit; ``settings.name`` is where the weights came from.
    """

    def __init__(self, tokenizer: Any, encoder: nn.Module, settings: TextEncoderSettings):
        super().__init__()
        self.tokenizer = tokenizer
        self.encoder = encoder
        self.settings = settings
        self.truncation_logged = False

    @classmethod
    def load(cls, settings: TextEncoderSettings) -> WordEncoder:
        """Load the tokenizer and weights named by ``settings.name`` (hub name or folder)."""
        tokenizer, encoder = load_text_encoder(settings.name)
        check_max_length(encoder, settings)
        return cls(tokenizer, encoder, settings)

    @property
    def dim(self) -> int:
        return encoder_hidden_size(self.encoder)

    @property
    def device(self) -> torch.device:
        return next(self.encoder.parameters()).device

    def forward(self, tweets: Sequence[Sequence[str]]) -> Tensor:
        """Return the word vectors [B, N, D]: zeros at padding and beyond the piece limit."""
        limit = self.settings.max_length
        pieces = [tokenize_words(self.tokenizer, words, limit) for words in tweets]
        width = max(len(p.input_ids) for p in pieces)
        pad = self.tokenizer.pad_token_id or 0
        ids = torch.full((len(pieces), width), pad, dtype=torch.long)  # [B, P]
        mask = torch.zeros((len(pieces), width), dtype=torch.long)  # [B, P]
        for row, tweet in enumerate(pieces):
            ids[row, : len(tweet.input_ids)] = torch.tensor(tweet.input_ids)
            mask[row, : len(tweet.input_ids)] = 1
        device = self.device
        output = self.encoder(input_ids=ids.to(device), attention_mask=mask.to(device))
        hidden = output.last_hidden_state  # [B, P, D]
        weights = pooling_weights(pieces, width, self.settings.pooling).to(device, hidden.dtype)
        return torch.bmm(weights, hidden)  # [B, N, D]

    def encode_split(self, tweets: Sequence[Any]) -> InMemoryWordVectors:
        """Encode whole tweets with the current weights in eval mode, for scoring.

        The module's train/eval mode is restored afterwards.
        """
        was_training = self.training
        self.eval()
        try:
            vectors: list[np.ndarray] = [np.zeros((0, self.dim), dtype=np.float32)] * len(tweets)
            truncated = 0
            for index, word_vectors, lost in encode_tweets(
                tweets, self.tokenizer, self.encoder, self.settings
            ):
                vectors[index] = word_vectors
                truncated += lost
        finally:
            self.train(was_training)
        if truncated and not self.truncation_logged:
            # Logged once per encoder: the same tweets are encoded again every epoch.
            logger.warning(
                "%d words of %d tweets lie beyond encoder.max_length=%d and get zero "
                "vectors; they are still scored",
                truncated,
                len(tweets),
                self.settings.max_length,
            )
            self.truncation_logged = True
        return InMemoryWordVectors(vectors, self.dim)

    def save(self, folder: Path) -> None:
        """Write the weights and tokenizer in Hugging Face format (``from_pretrained`` reads it)."""
        folder.mkdir(parents=True, exist_ok=True)
        getattr(self.encoder, "save_pretrained")(str(folder))  # noqa: B009
        self.tokenizer.save_pretrained(str(folder))
