"""Registry of the Twitter-2015 and Twitter-2017 MNER datasets and where their files live.

The annotation files are the ones published with UMT (Yu et al., ACL 2020) in the
GitHub repository ``jefferyYu/UMT``; the checksums below are SHA-256 of those files.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

DATA_DIR_ENV = "MNER_DATA_DIR"
IMAGE_DIR_ENV = "MNER_IMAGE_DIR"
DEFAULT_DATA_DIR = Path("data")

# Raw-file address of the UMT release; `mner data download --base-url` replaces it.
UMT_RAW_BASE_URL = "https://raw.githubusercontent.com/jefferyYu/UMT/master/data"

SPLITS = ("train", "valid", "test")

# Entity types as reported in tables. Twitter-2015 spells MISC as OTHER.
ENTITY_TYPES = ("PER", "LOC", "ORG", "MISC")


@dataclass(frozen=True)
class SplitInfo:
    """One annotation file of a dataset."""

    name: str
    filename: str
    sha256: str
    tweets: int


@dataclass(frozen=True)
class DatasetInfo:
    """Everything the code needs to know about one dataset release."""

    name: str
    display_name: str
    splits: dict[str, SplitInfo]
    image_folder: str
    type_aliases: dict[str, str] = field(default_factory=dict)

    def split(self, name: str) -> SplitInfo:
        if name not in self.splits:
            raise KeyError(
                f"unknown split {name!r} of dataset {self.name!r}; "
                f"known splits: {', '.join(self.splits)}"
            )
        return self.splits[name]

    def url(self, split: str, base_url: str = UMT_RAW_BASE_URL) -> str:
        return f"{base_url.rstrip('/')}/{self.name}/{self.split(split).filename}"

    @property
    def checksum(self) -> str:
        """SHA-256 over the three split checksums: one identity for the whole release."""
        joined = ",".join(f"{s.name}={s.sha256}" for s in self.splits.values())
        return hashlib.sha256(joined.encode()).hexdigest()


DATASETS: dict[str, DatasetInfo] = {
    "twitter2015": DatasetInfo(
        name="twitter2015",
        display_name="Twitter-2015",
        splits={
            "train": SplitInfo(
                "train",
                "train.txt",
                "a6246e37aa1c8acd738747fa8257e01775f2a1cc0d4f36f82f9d41d6246ad6fa",
                4000,
            ),
            "valid": SplitInfo(
                "valid",
                "valid.txt",
                "9dcc7f9df7331de3c9cdf67a3450e041c41c6254b5e43925c576e2dfaaabe2ad",
                1000,
            ),
            "test": SplitInfo(
                "test",
                "test.txt",
                "edb2665b89bfe58bca06a2c10b9b31cbfa95456135b6a4cbf55c872e48d9b8f9",
                3257,
            ),
        },
        image_folder="twitter2015_images",
        type_aliases={"OTHER": "MISC"},
    ),
    "twitter2017": DatasetInfo(
        name="twitter2017",
        display_name="Twitter-2017",
        splits={
            "train": SplitInfo(
                "train",
                "train.txt",
                "801e149e8635b19d66b4ec1212c329be340ada501b35c5fa55455fb6f53633be",
                3373,
            ),
            "valid": SplitInfo(
                "valid",
                "valid.txt",
                "41b5db90cb32059c14c2c3ccd50845fb77f1e3d3e4f7d0c210a61bc507d8a73e",
                723,
            ),
            "test": SplitInfo(
                "test",
                "test.txt",
                "a7d9e172ae85bd3e35276eb2b01ce223321bdc92a47b234e24305d72e7a05243",
                723,
            ),
        },
        image_folder="twitter2017_images",
    ),
}


def get_dataset(name: str) -> DatasetInfo:
    """Look a dataset up by name; the error lists the known names."""
    if name not in DATASETS:
        raise KeyError(f"unknown dataset {name!r}; known datasets: {', '.join(sorted(DATASETS))}")
    return DATASETS[name]


def data_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """Resolve the data folder: the explicit argument, else $MNER_DATA_DIR, else ./data."""
    if explicit is not None:
        return Path(explicit)
    return Path(os.environ.get(DATA_DIR_ENV, DEFAULT_DATA_DIR))


def split_path(dataset: str, split: str, root: str | os.PathLike[str] | None = None) -> Path:
    """Path of one annotation file: ``<data dir>/<dataset>/<split file>``."""
    info = get_dataset(dataset)
    return data_dir(root) / info.name / info.split(split).filename


def image_dir(dataset: str, explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """Resolve the tweet image folder, or None when no folder is configured or present.

    Order: the explicit argument, then ``$MNER_IMAGE_DIR/<image folder>`` (or
    ``$MNER_IMAGE_DIR`` itself when it has no such subfolder), then
    ``<data dir>/<image folder>`` when it exists.
    """
    if explicit is not None:
        return Path(explicit)
    info = get_dataset(dataset)
    env = os.environ.get(IMAGE_DIR_ENV)
    if env:
        nested = Path(env) / info.image_folder
        return nested if nested.is_dir() else Path(env)
    default = data_dir() / info.image_folder
    return default if default.is_dir() else None


def sha256_file(path: str | os.PathLike[str], chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()
