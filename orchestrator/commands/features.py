"""``mner features build``: compute and cache word and image features for a dataset."""

from __future__ import annotations

import argparse
import logging
from typing import Any

import torch

from smvae.corpus import prepare_dataset
from smvae.datasets import SPLITS, data_dir, image_dir
from smvae.features import ImageEncoderSettings, TextEncoderSettings, cache_dir

logger = logging.getLogger(__name__)


def register(subparsers: Any) -> None:
    features = subparsers.add_parser("features", help="build the feature cache")
    commands = features.add_subparsers(dest="features_command", required=True, metavar="ACTION")
    build = commands.add_parser(
        "build", help="encode a dataset once; a no-op when the cache is current"
    )
    build.add_argument(
        "dataset", help="twitter2015, twitter2017, or a folder name with dataset.json"
    )
    build.add_argument(
        "--data-dir", help="folder with <dataset>/train.txt (default $MNER_DATA_DIR)"
    )
    build.add_argument("--cache-dir", help="feature cache folder (default $MNER_CACHE_DIR)")
    build.add_argument(
        "--encoder", default="minilm", help="Hugging Face name or folder (default: packaged MiniLM)"
    )
    build.add_argument("--pooling", choices=("first", "mean"), default="first")
    build.add_argument("--max-length", type=int, default=256, help="encoder limit in pieces")
    build.add_argument("--batch-size", type=int, default=32, help="tweets per encoder batch")
    build.add_argument("--splits", nargs="+", choices=SPLITS, default=list(SPLITS))
    build.add_argument(
        "--images",
        choices=("none", "resnet152"),
        default="none",
        help="image network; 'none' builds text features only",
    )
    build.add_argument("--image-dir", help="folder with <IMGID>.jpg (default $MNER_IMAGE_DIR)")
    build.add_argument(
        "--image-weights", help="ResNet-152 state-dict file, or a torchvision weights name"
    )
    build.add_argument("--regions", action="store_true", help="also keep the 49 region vectors")
    build.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    build.set_defaults(handler=run_build)


def run_build(args: argparse.Namespace) -> int:
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    text = TextEncoderSettings(args.encoder, args.pooling, args.max_length, args.batch_size)
    image = None
    if args.images != "none":
        folder = image_dir(args.dataset, args.image_dir, args.data_dir)
        image = ImageEncoderSettings(
            args.images,
            args.image_weights,
            str(folder) if folder else None,
            regions=args.regions,
        )
    prepared = prepare_dataset(
        args.dataset,
        data_dir(args.data_dir),
        cache_dir(args.cache_dir),
        text,
        image,
        splits=args.splits,
        progress=True,
    )
    for name, split in prepared.items():
        assert split.words is not None  # text settings were given, so every split has a cache
        line = f"{args.dataset}/{name}: {len(split)} tweets, words in {split.words.folder}"
        if split.images is not None:
            line += f", images {100 * split.images.coverage:.1f}% in {split.images.folder}"
        print(line)
    return 0
