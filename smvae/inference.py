"""Use a trained model: score an annotation file, or find entities in raw text.

Raw text is split on whitespace, as the tweets of the datasets are; each entity comes
back with its word indices and the character offsets of its first and last word in
the input string.

An entity's ``score`` depends on the model: SMVAE gives the classifier probability of
the span, a CRF tagger the probability of the tweet's whole decoded tag sequence (the
same for every entity of the tweet), and the softmax tagger the product of the
entity's word-tag probabilities (see ``baselines.train.predict_tagger_spans``).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from smvae.conll import Tweet, read_tweets
from smvae.corpus import SplitData
from smvae.datasets import ENTITY_TYPES, get_dataset, sha256_file
from smvae.features import (
    RESNET_CHANNELS,
    ImageEncoderSettings,
    InMemoryWordVectors,
    build_text_features,
    cache_dir,
    encode_tweets,
    encoder_hidden_size,
    load_text_encoder,
)
from smvae.image_features import (
    ImageFeatures,
    build_image_features,
    build_image_trunk,
    image_transform,
    load_image,
)
from smvae.metrics import score_spans
from smvae.model import SMVAE
from smvae.model_dir import LoadedModel
from smvae.spans import spans_from_tags, tags_from_spans
from smvae.train import predict_spans

logger = logging.getLogger(__name__)

EVAL_BATCH_SIZE = 32


def predict_entities(
    loaded: LoadedModel, split: SplitData, batch_size: int = EVAL_BATCH_SIZE
) -> list[list[tuple[int, int, str, float]]]:
    """Decode entities ``(start, end, type, score)`` of every tweet with a model of any method."""
    if isinstance(loaded.model, SMVAE):
        return predict_spans(loaded.model, split, loaded.label_map, batch_size)
    from baselines.train import predict_tagger_spans

    return predict_tagger_spans(loaded.model, split, batch_size)


class InMemoryImageFeatures(ImageFeatures):
    """Pooled image vectors held in memory."""

    def __init__(self, pooled: np.ndarray, has_image: np.ndarray):
        self.pooled = pooled
        self.has_image = has_image
        self.regions = None
        self.meta = {}


def evaluate_file(
    loaded: LoadedModel,
    data_file: Path,
    out_dir: Path,
    image_dir: str | None = None,
    image_weights: str | None = None,
) -> dict[str, Any]:
    """Score a model on an annotation file; write ``metrics.json`` and ``predictions.conll``."""
    dataset = get_dataset(loaded.run.dataset, loaded.run.data_dir)
    tweets = read_tweets(data_file, dataset.type_aliases)
    sha256 = sha256_file(data_file)
    root = cache_dir(loaded.run.cache_dir)
    # A file that is one of the dataset's splits shares that split's feature cache.
    known = {info.sha256: info.name for info in dataset.splits.values()}
    name = known.get(sha256, f"file-{data_file.stem}")
    words = build_text_features(dataset.name, name, sha256, tweets, loaded.text, root)
    images = None
    if loaded.uses_images:
        folder = image_dir or loaded.run.images.image_dir
        weights = image_weights or loaded.run.images.weights
        if folder and (weights or loaded.run.images.name != "resnet152"):
            settings = ImageEncoderSettings(loaded.run.images.name, weights, folder)
            images = build_image_features(dataset.name, name, sha256, tweets, settings, root)
        else:
            logger.warning(
                "no image folder or weights given: every tweet uses the text expert alone"
            )
    split = SplitData(name, data_file, sha256, tweets, words, images)
    predicted = predict_entities(loaded, split)
    predicted_spans = [[(s, e, t) for s, e, t, _ in spans] for spans in predicted]
    lenient = score_spans([spans_from_tags(t.tags) for t in tweets], predicted_spans, ENTITY_TYPES)
    strict_gold = [spans_from_tags(t.tags, strict=True) for t in tweets]
    strict = score_spans(strict_gold, predicted_spans, ENTITY_TYPES)
    metrics = {
        "model_dir": str(loaded.folder),
        "data_file": str(data_file),
        "data_sha256": sha256,
        "tweets": len(tweets),
        "image_coverage": float(images.has_image.mean()) if images is not None else 0.0,
        **lenient.to_dict(),
        **strict.to_dict("strict_"),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    write_conll(out_dir / "predictions.conll", tweets, predicted_spans)
    return metrics


def write_conll(
    path: Path, tweets: Sequence[Tweet], predicted: Sequence[Sequence[tuple[int, int, str]]]
) -> None:
    """Write ``token<TAB>gold<TAB>prediction`` lines, tweets opened by IMGID lines."""
    with open(path, "w", encoding="utf-8") as handle:
        for tweet, spans in zip(tweets, predicted, strict=True):
            handle.write(f"IMGID:{tweet.image_id}\n")
            predicted_tags = tags_from_spans(spans, len(tweet))
            for word, gold, guess in zip(tweet.words, tweet.tags, predicted_tags, strict=True):
                handle.write(f"{word}\t{gold}\t{guess}\n")
            handle.write("\n")


@dataclass
class TextInput:
    """One text to tag, optionally with an image path."""

    text: str
    image: str | None = None


def split_words(text: str) -> tuple[list[str], list[tuple[int, int]]]:
    """Split on whitespace; return the words and their (start, end) character offsets."""
    matches = list(re.finditer(r"\S+", text))
    return [m.group() for m in matches], [(m.start(), m.end()) for m in matches]


class Predictor:
    """Tags raw texts with a loaded model; loads the encoders once."""

    def __init__(self, loaded: LoadedModel, image_weights: str | None = None) -> None:
        self.loaded = loaded
        self.tokenizer, self.encoder = load_text_encoder(loaded.text.name)
        self.image_weights = image_weights or loaded.run.images.weights
        self._trunk: torch.nn.Module | None = None

    def _image_vector(self, path: str | None) -> np.ndarray | None:
        if path is None or not self.loaded.uses_images:
            return None
        if self._trunk is None:
            name = self.loaded.run.images.name
            if self.image_weights is None and name == "resnet152":
                raise ValueError(
                    "this model uses images but no image weights are known; pass --image-weights"
                )
            self._trunk = build_image_trunk(ImageEncoderSettings(name, self.image_weights))
        image = load_image(Path(path), image_transform())
        if image is None:
            logger.warning("image %s is missing or unreadable; using the text expert alone", path)
            return None
        with torch.inference_mode():
            feature_map = self._trunk(image.unsqueeze(0))  # [1, 2048, 7, 7]
        return feature_map.flatten(2).mean(dim=2)[0].numpy()  # [channels]

    def predict(self, inputs: Sequence[TextInput]) -> list[dict[str, Any]]:
        """Return one record per input with its entities (text, type, score, words, characters)."""
        tokenised = [split_words(item.text) for item in inputs]
        tweets = [
            Tweet(str(i), tuple(words), tuple("O" for _ in words), 0)
            for i, (words, _) in enumerate(tokenised)
        ]
        empty = [i for i, tweet in enumerate(tweets) if len(tweet) == 0]
        if empty:
            raise ValueError(f"input {empty[0] + 1} has no words; every text needs at least one")
        vectors: list[np.ndarray] = [np.zeros(0)] * len(tweets)
        for index, word_vectors, lost in encode_tweets(
            tweets, self.tokenizer, self.encoder, self.loaded.text
        ):
            vectors[index] = word_vectors
            if lost:
                logger.warning(
                    "input %d: %d words lie beyond encoder.max_length=%d and get zero vectors",
                    index + 1,
                    lost,
                    self.loaded.text.max_length,
                )
        pooled = np.zeros((len(tweets), self.loaded.image_dim or RESNET_CHANNELS), dtype=np.float32)
        has_image = np.zeros(len(tweets), dtype=np.uint8)
        for index, item in enumerate(inputs):
            vector = self._image_vector(item.image)
            if vector is not None:
                pooled[index], has_image[index] = vector, 1
        split = SplitData(
            "input",
            Path("-"),
            "",
            tweets,
            InMemoryWordVectors(vectors, encoder_hidden_size(self.encoder)),
            InMemoryImageFeatures(pooled, has_image),
        )
        predicted = predict_entities(self.loaded, split)
        records = []
        for item, (_, offsets), spans in zip(inputs, tokenised, predicted, strict=True):
            entities = [
                {
                    "text": item.text[offsets[s][0] : offsets[e][1]],
                    "type": entity_type,
                    "score": round(probability, 6),
                    "start_word": s,
                    "end_word": e,
                    "start_char": offsets[s][0],
                    "end_char": offsets[e][1],
                }
                for s, e, entity_type, probability in spans
            ]
            records.append({"text": item.text, "image": item.image, "entities": entities})
        return records
