"""Where a result came from: code version, package versions, device, times.

Nothing here raises: a missing git, a folder that is not a checkout, or a package that
is not installed gives ``unknown`` / ``not installed`` instead.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

UNKNOWN = "unknown"
PACKAGE_NAME = "mner-smvae"
REPORTED_PACKAGES = ("torch", "ray", "transformers", "numpy", "pandas", PACKAGE_NAME)

# A sweep submitted as a Ray Job runs from a copy of the repository without .git;
# `mner submit` passes the commit it saw through these variables.
GIT_COMMIT_ENV = "MNER_GIT_COMMIT"
GIT_DIRTY_ENV = "MNER_GIT_DIRTY"

GIT_TIMEOUT_S = 10


@dataclass(frozen=True)
class GitState:
    """Commit of the code and whether the work tree differs from it."""

    commit: str
    dirty: bool


def source_root() -> Path:
    """The folder that contains the ``orchestrator`` package (the repository in a checkout)."""
    return Path(__file__).resolve().parent.parent


def _git(root: Path, *args: str) -> str | None:
    try:
        completed = subprocess.run(
            ["git", "-C", str(root), *args],
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return completed.stdout if completed.returncode == 0 else None


def git_state(root: Path | None = None) -> GitState:
    """Commit and dirty flag of the checkout at ``root`` (default: this package's).

    ``MNER_GIT_COMMIT`` / ``MNER_GIT_DIRTY`` take precedence when set. Outside a
    checkout, or before the first commit, the commit is ``unknown``; the dirty flag is
    true when ``git status`` lists any change and false when it cannot run.
    """
    if os.environ.get(GIT_COMMIT_ENV):
        dirty = os.environ.get(GIT_DIRTY_ENV, "").lower() in ("1", "true", "yes")
        return GitState(os.environ[GIT_COMMIT_ENV], dirty)
    root = root or source_root()
    head = _git(root, "rev-parse", "--verify", "--quiet", "HEAD")
    status = _git(root, "status", "--porcelain")
    commit = head.strip() if head and head.strip() else UNKNOWN
    return GitState(commit, bool(status and status.strip()))


def package_versions() -> dict[str, str]:
    """Installed versions of the packages that decide a result."""
    versions = {}
    for name in REPORTED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def package_versions_json() -> str:
    return json.dumps(package_versions(), sort_keys=True)


def device_description(use_gpu: bool = False) -> str:
    """``cuda:<name>`` when a GPU is used, else ``cpu (<threads> threads)``."""
    try:
        import torch
    except ImportError:
        return "cpu"
    if use_gpu and torch.cuda.is_available():
        return f"cuda:{torch.cuda.get_device_name(torch.cuda.current_device())}"
    return f"cpu ({torch.get_num_threads()} threads)"


def utc_now() -> str:
    """Current time in ISO 8601, UTC (``+00:00``), to the millisecond."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")
