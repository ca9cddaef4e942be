"""A dataset's splits with their cached word and image features, ready for training."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from smvae.conll import Tweet, read_tweets
from smvae.datasets import SPLITS, get_dataset, sha256_file, split_path
from smvae.features import (
    ImageEncoderSettings,
    TextEncoderSettings,
    WordVectors,
    build_text_features,
    load_text_encoder,
    text_cache_folder,
)
from smvae.image_features import ImageFeatures, build_image_features

logger = logging.getLogger(__name__)


@dataclass
class SplitData:
    """Tweets of one split with their word vectors and, when images are used, image features.

    ``words`` is None when the encoder is fine-tuned: the model then encodes the words itself.
    """

    name: str
    path: Path
    sha256: str
    tweets: list[Tweet]
    words: WordVectors | None
    images: ImageFeatures | None

    def __len__(self) -> int:
        return len(self.tweets)


def load_split_tweets(dataset: str, split: str, data_root: Path | None) -> tuple[Path, list[Tweet]]:
    path = split_path(dataset, split, data_root)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found; run `mner data download {dataset}` or set MNER_DATA_DIR "
            f"to the folder that contains {dataset}/"
        )
    return path, read_tweets(path, get_dataset(dataset, data_root).type_aliases)


def prepare_dataset(
    dataset: str,
    data_root: Path | None,
    cache_root: Path,
    text: TextEncoderSettings | None,
    image: ImageEncoderSettings | None,
    splits: Sequence[str] = SPLITS,
    progress: bool = False,
) -> dict[str, SplitData]:
    """Read the splits and build (or open) their feature caches.

    The text encoder is loaded only when at least one split has no cache yet, and
    then once for all splits. ``text=None`` (fine-tuning mode) builds no text cache.
    """
    encoder: tuple[Any, nn.Module] | None = None
    prepared: dict[str, SplitData] = {}
    for split in splits:
        path, tweets = load_split_tweets(dataset, split, data_root)
        sha256 = sha256_file(path)
        words = None
        if text is not None:
            if encoder is None:
                folder = text_cache_folder(dataset, split, sha256, text, cache_root)
                if not (folder / "meta.json").is_file():
                    encoder = load_text_encoder(text.name)
            words = build_text_features(
                dataset, split, sha256, tweets, text, cache_root, progress, encoder
            )
        images = None
        if image is not None:
            images = build_image_features(
                dataset, split, sha256, tweets, image, cache_root, progress
            )
        prepared[split] = SplitData(split, path, sha256, tweets, words, images)
    return prepared
