"""Registry of the Twitter-2015 and Twitter-2017 MNER datasets and where their files live.

The annotation files are the ones published with UMT (Yu et al., ACL 2020) in the
GitHub repository ``jefferyYu/UMT``; the checksums below are SHA-256 of those files.
"""

from __future__ import annotations

import hashlib
import json
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


MANIFEST_FILE = "dataset.json"
DATASET_HELP = "twitter2015, twitter2017, or a data-dir folder that has a dataset.json manifest"


def get_dataset(name: str, root: str | os.PathLike[str] | None = None) -> DatasetInfo:
    """Look a dataset up by name: a built-in one, or one described by a manifest.

    A manifest ``<data dir>/<name>/dataset.json`` registers a dataset of the same
    IMGID/CoNLL format that the project does not ship, for example a new corpus or a
    small generated one::

        {"display_name": "My tweets", "image_folder": "images",
         "type_aliases": {"OTHER": "MISC"},
         "splits": {"train": {"filename": "train.txt", "sha256": "...", "tweets": 80},
                    "valid": {...}, "test": {...}}}
    """
    if name in DATASETS:
        return DATASETS[name]
    manifest = data_dir(root) / name / MANIFEST_FILE
    if manifest.is_file():
        return read_manifest(name, manifest)
    raise KeyError(
        f"unknown dataset {name!r}; known datasets: {', '.join(sorted(DATASETS))}, "
        f"or a folder with {MANIFEST_FILE} under the data dir (looked for {manifest})"
    )


def read_manifest(name: str, path: Path) -> DatasetInfo:
    """Build a DatasetInfo from a manifest; errors name the file and the key."""
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
        splits = {
            split: SplitInfo(
                split, str(entry["filename"]), str(entry["sha256"]), int(entry["tweets"])
            )
            for split, entry in values["splits"].items()
        }
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
        raise ValueError(
            f"{path}: invalid dataset manifest ({type(error).__name__}: {error}); it needs "
            "splits.<split>.filename, .sha256 and .tweets for train, valid and test"
        ) from None
    missing = [split for split in SPLITS if split not in splits]
    if missing:
        raise ValueError(f"{path}: dataset manifest lacks the split(s) {', '.join(missing)}")
    return DatasetInfo(
        name=name,
        display_name=str(values.get("display_name", name)),
        splits=splits,
        image_folder=str(values.get("image_folder", "images")),
        type_aliases=dict(values.get("type_aliases", {})),
    )


def write_manifest(
    root: str | os.PathLike[str],
    name: str,
    display_name: str | None = None,
    image_folder: str = "images",
    type_aliases: dict[str, str] | None = None,
) -> DatasetInfo:
    """Describe the split files found in ``<root>/<name>/`` in a manifest and return it."""
    folder = Path(root) / name
    splits = {}
    for split in SPLITS:
        path = folder / f"{split}.txt"
        tweets = sum(
            line.startswith("IMGID:") for line in path.read_text(encoding="utf-8-sig").split("\n")
        )
        splits[split] = {"filename": path.name, "sha256": sha256_file(path), "tweets": tweets}
    manifest = {
        "display_name": display_name or name,
        "image_folder": image_folder,
        "type_aliases": type_aliases or {},
        "splits": splits,
    }
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
    return read_manifest(name, folder / MANIFEST_FILE)


def data_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """Resolve the data folder: the explicit argument, else $MNER_DATA_DIR, else ./data."""
    if explicit is not None:
        return Path(explicit)
    return Path(os.environ.get(DATA_DIR_ENV, DEFAULT_DATA_DIR))


def split_path(dataset: str, split: str, root: str | os.PathLike[str] | None = None) -> Path:
    """Path of one annotation file: ``<data dir>/<dataset>/<split file>``."""
    info = get_dataset(dataset, root)
    return data_dir(root) / info.name / info.split(split).filename


def image_dir(
    dataset: str,
    explicit: str | os.PathLike[str] | None = None,
    root: str | os.PathLike[str] | None = None,
) -> Path | None:
    """Resolve the tweet image folder, or None when no folder is configured or present.

    Order: the explicit argument, then ``$MNER_IMAGE_DIR/<image folder>`` (or
    ``$MNER_IMAGE_DIR`` itself when it has no such subfolder), then
    ``<data dir>/<dataset>/<image folder>`` and ``<data dir>/<image folder>`` when
    they exist.
    """
    if explicit is not None:
        return Path(explicit)
    info = get_dataset(dataset, root)
    env = os.environ.get(IMAGE_DIR_ENV)
    if env:
        nested = Path(env) / info.image_folder
        return nested if nested.is_dir() else Path(env)
    for candidate in (
        data_dir(root) / info.name / info.image_folder,
        data_dir(root) / info.image_folder,
    ):
        if candidate.is_dir():
            return candidate
    return None


def sha256_file(path: str | os.PathLike[str], chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()
