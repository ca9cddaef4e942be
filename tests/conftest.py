"""Shared test fixtures: where the real annotation files are, and torch threading."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

# Tests share two cores with each other and with Ray workers.
torch.set_num_threads(1)

_REPO_ROOT = Path(__file__).resolve().parent.parent


def _find_shared_data() -> Path | None:
    """Locate the Twitter annotation files: $MNER_DATA_DIR, else ../shared/data."""
    candidates = []
    if os.environ.get("MNER_DATA_DIR"):
        candidates.append(Path(os.environ["MNER_DATA_DIR"]))
    candidates.append(_REPO_ROOT.parent / "shared" / "data")
    for candidate in candidates:
        if (candidate / "twitter2015" / "train.txt").is_file():
            return candidate
    return None


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    """Folder with twitter2015/ and twitter2017/; skips the test when it is absent."""
    found = _find_shared_data()
    if found is None:
        pytest.skip(
            "Twitter annotation files not found: set MNER_DATA_DIR to a folder "
            "with twitter2015/ and twitter2017/ (or place them in ../shared/data)"
        )
    return found
