"""``mner submit``: send a sweep to a Ray cluster's job server as a Ray Job.

Also runnable as ``python -m orchestrator.commands.submit``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("submit", help="run a sweep on a Ray cluster as a Ray Job")
    add_arguments(parser)
    parser.set_defaults(handler=run_submit_command)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("spec", help="YAML experiment spec, e.g. configs/semi_supervised.yaml")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. seeds=[0,1]")
    parser.add_argument(
        "--address", required=True, help="job server of the cluster, e.g. http://HEAD:8265"
    )
    parser.add_argument(
        "--wait",
        type=float,
        metavar="SECONDS",
        help="wait up to this many seconds for the job to end and print its logs",
    )


def run_submit_command(args: argparse.Namespace) -> int:
    from orchestrator.spec import load_spec
    from orchestrator.submit import job_logs, submit_sweep, wait_for_job

    spec = load_spec(args.spec, list(args.overrides))
    submission = submit_sweep(spec, args.address)
    print(f"submitted job {submission.job_id}")
    print(f"follow it with: {submission.follow_command}")
    if args.wait is None:
        return 0
    status = wait_for_job(args.address, submission.job_id, args.wait)
    print(job_logs(args.address, submission.job_id))
    print(f"job {submission.job_id} ended: {status}")
    return 0 if status == "SUCCEEDED" else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Run this command alone, with the ``mner`` program's logging and error handling."""
    from orchestrator.cli import configure_logging

    parser = argparse.ArgumentParser(prog="mner submit", description=__doc__)
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log more")
    add_arguments(parser)
    args = parser.parse_args(argv)
    configure_logging(args.verbose)
    try:
        return run_submit_command(args)
    except (ValueError, KeyError, FileNotFoundError, RuntimeError, TimeoutError) as error:
        print(f"mner: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
