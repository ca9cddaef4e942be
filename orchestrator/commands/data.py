"""``mner data check`` and ``mner data download``."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from smvae.conll import read_tweets
from smvae.datasets import (
    ENTITY_TYPES,
    SPLITS,
    UMT_RAW_BASE_URL,
    data_dir,
    get_dataset,
    image_dir,
    sha256_file,
    split_path,
)
from smvae.statistics import SplitStatistics, split_statistics


def register(subparsers: Any) -> None:
    data = subparsers.add_parser("data", help="check or download a dataset")
    commands = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")

    check = commands.add_parser("check", help="validate a dataset and print its statistics")
    check.add_argument(
        "dataset", help="twitter2015, twitter2017, or a folder name with dataset.json"
    )
    check.add_argument(
        "--data-dir", help="folder with <dataset>/train.txt (default $MNER_DATA_DIR)"
    )
    check.add_argument("--image-dir", help="folder with <IMGID>.jpg (default $MNER_IMAGE_DIR)")
    check.add_argument("--json", action="store_true", help="print JSON instead of a table")
    check.set_defaults(handler=run_check)

    download = commands.add_parser("download", help="download annotation files, verify SHA-256")
    download.add_argument(
        "dataset", help="twitter2015, twitter2017, or a folder name with dataset.json"
    )
    download.add_argument("--data-dir", help="target folder (default $MNER_DATA_DIR or ./data)")
    download.add_argument(
        "--base-url", default=UMT_RAW_BASE_URL, help="URL prefix of <dataset>/<split>.txt"
    )
    download.add_argument("--force", action="store_true", help="replace files that fail the check")
    download.set_defaults(handler=run_download)


def check_dataset(
    dataset: str, root: str | None = None, images: str | None = None
) -> list[SplitStatistics]:
    """Read and validate every split of a dataset."""
    info = get_dataset(dataset, root)
    folder = image_dir(dataset, images, root)
    statistics = []
    for split in SPLITS:
        path = split_path(dataset, split, root)
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} not found; run `mner data download {dataset}` or set MNER_DATA_DIR "
                f"to the folder that contains {dataset}/ (now {data_dir(root)})"
            )
        tweets = read_tweets(path, info.type_aliases)
        statistics.append(
            split_statistics(
                split, path, tweets, sha256_file(path), info.split(split).sha256, folder
            )
        )
    return statistics


def format_table(dataset: str, statistics: list[SplitStatistics], root: str | None = None) -> str:
    rows: list[tuple[str, ...]] = [("", *(s.split for s in statistics))]

    def add(label: str, values: list[Any]) -> None:
        rows.append((label, *(str(v) for v in values)))

    add("tweets", [s.tweets for s in statistics])
    add("words", [s.words for s in statistics])
    for entity_type in ENTITY_TYPES:
        add(f"{entity_type} entities", [s.entities[entity_type] for s in statistics])
    add("entities (lenient)", [s.entities_total for s in statistics])
    add("B- tags", [s.begin_tags for s in statistics])
    add("orphan I- tags", [s.orphan_inside_tags for s in statistics])
    add("longest tweet (words)", [s.longest_tweet_words for s in statistics])
    add("mean tweet (words)", [f"{s.mean_tweet_words:.1f}" for s in statistics])
    add("longest entity (words)", [s.longest_entity_words for s in statistics])
    add("checksum", ["ok" if s.checksum_ok else "MISMATCH" for s in statistics])
    if statistics[0].image_coverage is not None:
        add("image coverage", [f"{100 * (s.image_coverage or 0):.1f}%" for s in statistics])
    else:
        add("image coverage", ["no image folder"] * len(statistics))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [f"{get_dataset(dataset, root).display_name} ({dataset})"]
    for row in rows:
        lines.append(
            "  ".join(
                cell.ljust(w) if i == 0 else cell.rjust(w)
                for i, (cell, w) in enumerate(zip(row, widths, strict=True))
            )
        )
    return "\n".join(lines)


def run_check(args: argparse.Namespace) -> int:
    statistics = check_dataset(args.dataset, args.data_dir, args.image_dir)
    if args.json:
        print(
            json.dumps(
                {"dataset": args.dataset, "splits": [asdict(s) for s in statistics]}, indent=2
            )
        )
    else:
        print(format_table(args.dataset, statistics, args.data_dir))
    mismatched = [s.path for s in statistics if not s.checksum_ok]
    if mismatched:
        print(
            "warning: SHA-256 differs from the published release for: " + ", ".join(mismatched),
        )
    info = get_dataset(args.dataset, args.data_dir)
    for split in statistics:
        expected = info.split(split.split).tweets
        if split.tweets != expected:
            print(f"warning: {split.path} has {split.tweets} tweets, the release has {expected}")
    return 0


def run_download(args: argparse.Namespace) -> int:
    from smvae.download import download_dataset

    paths = download_dataset(
        args.dataset, data_dir(args.data_dir), base_url=args.base_url, force=args.force
    )
    for path in paths:
        print(Path(path))
    return 0
