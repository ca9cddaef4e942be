"""``mner status``: finished, failed and missing trials of a sweep's run folder."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "status", help="count finished, failed and missing trials of a run folder"
    )
    parser.add_argument("run_dir", help="run folder of a sweep (contains spec.yaml and trials/)")
    parser.set_defaults(handler=run_status_command)


def run_status_command(args: argparse.Namespace) -> int:
    from orchestrator.sweep import run_status

    status = run_status(args.run_dir)
    print(status.describe())
    return 0
