"""The ``mner`` command line: one program, one subcommand per task.

Each subcommand lives in its own module that exposes ``register(subparsers)``; that
function adds the subcommand's parser and sets ``handler`` to a callable that takes
the parsed arguments and returns an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

COMMAND_MODULES = (
    "orchestrator.commands.data",
    "orchestrator.commands.features",
    "orchestrator.commands.train",
    "orchestrator.commands.report",
    "orchestrator.commands.sweep",
    "orchestrator.commands.status",
    "orchestrator.commands.submit",
)

logger = logging.getLogger("mner")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mner",
        description="Semi-supervised multimodal NER: SMVAE and baselines, swept with Ray.",
    )
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="log more (-v info, -vv debug)"
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def configure_logging(verbosity: int) -> None:
    level = logging.WARNING
    if verbosity == 1:
        level = logging.INFO
    elif verbosity > 1:
        level = logging.DEBUG
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _is_override(item: str) -> bool:
    """Return whether a command-line word reads as a ``key=value`` override."""
    return "=" in item and not item.startswith("-")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # argparse stops filling a positional list at the first option, so overrides written
    # after an option (``mner train CONFIG --out DIR seed=1``) arrive here.
    if extra and hasattr(args, "overrides") and all(_is_override(item) for item in extra):
        args.overrides = [*args.overrides, *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    configure_logging(args.verbose)
    try:
        return int(args.handler(args))
    except (ValueError, KeyError, OSError, RuntimeError, NotImplementedError) as error:
        # Expected failures (bad input, missing files) end with one readable line;
        # -vv shows the traceback.
        logger.debug("command failed", exc_info=True)
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"mner: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
