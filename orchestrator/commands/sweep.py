"""``mner sweep``: run a spec's trial grid with Ray Tune, locally or on a cluster.

Also runnable as ``python -m orchestrator.commands.sweep`` (the entrypoint of jobs
that ``mner submit`` sends).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

from orchestrator.spec import SpecError, SweepSpec, load_spec, parse_spec

ENV_PREFIX = "env:"


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "sweep", help="run an experiment spec as a Ray Tune sweep (local Ray unless --address)"
    )
    add_arguments(parser)
    parser.set_defaults(handler=run_sweep_command)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "spec",
        help="YAML experiment spec, e.g. configs/quickstart.yaml, or env:NAME to read the "
        "YAML from environment variable NAME",
    )
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. seeds=[0,1]")
    parser.add_argument("--address", help="Ray cluster to join (auto, HOST:6379, ray://HOST:10001)")
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print the trial grid, trial keys, finished keys and resource plan; start nothing",
    )
    parser.add_argument(
        "--resume",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="skip trials that already have a finished result in the run folder (default)",
    )
    parser.add_argument("--run-dir", help="run folder (default: the spec's run_dir or runs/NAME)")


def read_spec(source: str, overrides: list[str]) -> SweepSpec:
    """Load a spec from a file, or from an environment variable with ``env:NAME``."""
    if not source.startswith(ENV_PREFIX):
        return load_spec(source, overrides)
    from smvae.settings import parse_yaml

    name = source[len(ENV_PREFIX) :]
    text = os.environ.get(name)
    if text is None:
        raise SpecError(f"environment variable {name} with the spec is not set")
    values = parse_yaml(text)
    if not isinstance(values, dict):
        raise SpecError(f"environment variable {name}: expected a YAML mapping")
    return parse_spec(values, overrides)


def run_sweep_command(args: argparse.Namespace) -> int:
    from orchestrator.sweep import run_sweep

    overrides = list(args.overrides)
    if args.run_dir:
        overrides.append(f"run_dir={args.run_dir}")
    spec = read_spec(args.spec, overrides)

    def show(line: str) -> None:
        print(line, flush=True)

    summary = run_sweep(
        spec, address=args.address, resume=args.resume, dry_run=args.dry_run, progress=show
    )
    if summary.dry_run_text is not None:
        print(summary.dry_run_text)
        return 0
    print(summary.describe())
    return 1 if summary.failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run this command alone, through the ``mner`` program's error handling."""
    from orchestrator.cli import configure_logging

    parser = argparse.ArgumentParser(prog="mner sweep", description=__doc__)
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log more")
    add_arguments(parser)
    args = parser.parse_args(argv)
    configure_logging(args.verbose)
    try:
        return run_sweep_command(args)
    except (ValueError, KeyError, FileNotFoundError, RuntimeError) as error:
        print(f"mner: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
