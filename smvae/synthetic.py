"""A small generated dataset in the Twitter IMGID/CoNLL format, with a planted image signal.

Each tweet mentions made-up names in a few fixed templates. Whether a mention is a
person or a location cannot be inferred from the words: every name appears with both
types equally often. The type is fixed by the tweet's image instead, a flat colour
(red for PER, blue for LOC). A model that reads the image can get the types right; a
text-only model can find the boundaries but must guess the type. Tests and smoke
sweeps use it because it is small, needs no download, and separates a working image
path from a broken one.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path

from smvae.datasets import SPLITS, DatasetInfo, write_manifest

NAMES = ("zorvik", "talmera", "quenby", "ostravel", "pirelo", "vandrix", "kelmot", "suvani")
SURNAMES = ("brask", "lodeni", "fiorn", "mathex")
TEMPLATES = (
    ("look", "at", "{e}", "today"),
    ("{e}", "was", "amazing", "last", "night"),
    ("so", "happy", "about", "{e}", "!"),
    ("RT", "@user", ":", "{e}", "is", "trending", "now"),
    ("nothing", "to", "see", "here"),
)
COLOURS = {"PER": (220, 30, 30), "LOC": (30, 60, 220)}
IMAGE_SIZE = 32
DEFAULT_SIZES = {"train": 80, "valid": 30, "test": 40}


def _tweet(generator: random.Random, entity_type: str) -> list[tuple[str, str]]:
    template = generator.choice(TEMPLATES)
    lines: list[tuple[str, str]] = []
    for word in template:
        if word != "{e}":
            lines.append((word, "O"))
            continue
        lines.append((generator.choice(NAMES), f"B-{entity_type}"))
        if generator.random() < 0.3:
            lines.append((generator.choice(SURNAMES), f"I-{entity_type}"))
    return lines


def _write_image(path: Path, colour: tuple[int, int, int], generator: random.Random) -> None:
    from PIL import Image

    jitter = tuple(max(0, min(255, c + generator.randint(-15, 15))) for c in colour)
    Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), jitter).save(path, format="JPEG")


def generate_dataset(
    root: str | Path,
    name: str = "synthetic",
    sizes: dict[str, int] | None = None,
    seed: int = 0,
    with_images: bool = True,
    missing_images: Sequence[str] = (),
) -> DatasetInfo:
    """Write ``<root>/<name>/{train,valid,test}.txt``, its manifest and ``images/<id>.jpg``.

    ``missing_images`` lists image ids to leave out, to exercise the missing-image path.
    """
    generator = random.Random(seed)
    folder = Path(root) / name
    images = folder / "images"
    folder.mkdir(parents=True, exist_ok=True)
    if with_images:
        images.mkdir(exist_ok=True)
    counts = {**DEFAULT_SIZES, **(sizes or {})}
    for split in SPLITS:
        blocks = []
        for index in range(counts[split]):
            image_id = f"{split}_{index}"
            entity_type = generator.choice(sorted(COLOURS))
            lines = _tweet(generator, entity_type)
            blocks.append(f"IMGID:{image_id}\n" + "".join(f"{w}\t{t}\n" for w, t in lines))
            if with_images and image_id not in missing_images:
                _write_image(images / f"{image_id}.jpg", COLOURS[entity_type], generator)
        (folder / f"{split}.txt").write_text("\n".join(blocks), encoding="utf-8")
    return write_manifest(root, name, display_name="Synthetic", image_folder="images")
