"""``mner report RUN_DIR [RUN_DIR ...] --out DIR``: tables, figures and an index from sweeps."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from analysis.report import build_report
from smvae.datasets import DATA_DIR_ENV, data_dir


def register(subparsers: Any) -> None:
    """Add the ``report`` subcommand to the ``mner`` parser."""
    parser = subparsers.add_parser(
        "report",
        help="build tables (Markdown, LaTeX, CSV) and figures (PNG, PDF) from run folders",
        description=(
            "Read results.parquet and epochs.parquet (or the per-trial files under trials/) "
            "of each run folder, and write every table and figure that has finished trials, "
            "with the paper's published numbers beside the measured ones, plus report.md "
            "listing what was built, skipped, failed or missing. Prints the written paths."
        ),
    )
    parser.add_argument(
        "run_dirs", nargs="+", type=Path, metavar="RUN_DIR", help="sweep output folder"
    )
    parser.add_argument(
        "--out", type=Path, required=True, help="output folder (created when missing)"
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help=(
            "folder with twitter2015/ and twitter2017/ annotation files for the dataset "
            f"statistics table (default: ${DATA_DIR_ENV}, else ./data; skipped when absent)"
        ),
    )
    parser.set_defaults(handler=run_report)


def run_report(args: argparse.Namespace) -> int:
    """Build the report and print each written path, one per line.

    Returns 0, or 2 when no folder contains a trial result (a mistyped or unfinished
    run folder). The report is written in both cases.
    """
    summary = build_report(args.run_dirs, args.out, data_dir=data_dir(args.data_dir))
    for path in summary.written:
        print(path)
    if summary.finished == 0 and summary.failed.empty:
        folders = ", ".join(str(d) for d in args.run_dirs)
        print(
            f"mner: error: no trial results in {folders}; give run folders written by "
            "`mner sweep` (they contain results.parquet or trials/<key>/result.parquet)",
            file=sys.stderr,
        )
        return 2
    return 0
