"""The training loop every model shares: epochs, development F1, early stopping.

Models differ in what one epoch does and how the development split is scored; both
come in as callables. The loop keeps the state of the epoch with the best development
F1 and loads it back at the end, so the caller scores the test split once, with that
state.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from smvae.metrics import Scores

logger = logging.getLogger(__name__)

EpochCallback = Callable[[dict[str, Any]], None]

# Loss columns of the per-epoch table; a model without a term reports NaN for it.
LOSS_COLUMNS = {
    "train_loss": "loss",
    "loss_l1": "loss_l1",
    "loss_l2": "loss_l2",
    "loss_l3": "loss_l3",
}


class TrainingDivergedError(RuntimeError):
    """The loss became NaN or infinite; the message names the epoch and batch."""


def check_finite(loss: float, epoch: int, step: int) -> None:
    """Raise TrainingDivergedError when a batch's loss is NaN or infinite."""
    if not math.isfinite(loss):
        raise TrainingDivergedError(
            f"non-finite loss {loss} at epoch {epoch}, batch {step}; "
            "lower training.learning_rate (and encoder.learning_rate when fine-tuning) "
            "or set training.gradient_clip"
        )


def fit_with_early_stopping(
    model: nn.Module,
    epochs: int,
    patience: int,
    train_epoch: Callable[[int], dict[str, float]],
    evaluate_dev: Callable[[], Scores],
    on_epoch: EpochCallback | None = None,
    first_epoch: int = 1,
) -> tuple[list[dict[str, Any]], int, float]:
    """Train up to ``epochs`` epochs; stop after ``patience`` epochs without a better dev F1.

    Returns the per-epoch rows, the best epoch and its development F1, with the model
    holding the best epoch's state. ``first_epoch`` numbers the epochs of a run that
    trains in several stages (self-training rounds).
    """
    best_f1, best_epoch = -1.0, first_epoch
    best_state: dict[str, torch.Tensor] | None = None
    rows: list[dict[str, Any]] = []
    for epoch in range(first_epoch, first_epoch + epochs):
        started = time.perf_counter()
        losses = train_epoch(epoch)
        dev = evaluate_dev()
        row = {column: losses.get(key, math.nan) for column, key in LOSS_COLUMNS.items()}
        row = {
            "epoch": epoch,
            **row,
            "dev_precision": dev.precision,
            "dev_recall": dev.recall,
            "dev_f1": dev.f1,
            "seconds": time.perf_counter() - started,
        }
        rows.append(row)
        logger.info(
            "epoch %d: loss %.4f, dev F1 %.2f (%.1f s)",
            epoch,
            row["train_loss"],
            dev.f1,
            row["seconds"],
        )
        if on_epoch is not None:
            on_epoch(dict(row))
        if dev.f1 > best_f1:
            best_f1, best_epoch = dev.f1, epoch
            best_state = copy.deepcopy(model.state_dict())
        elif epoch - best_epoch >= patience:
            logger.info(
                "early stop at epoch %d: best dev F1 %.2f at epoch %d", epoch, best_f1, best_epoch
            )
            break
    assert best_state is not None
    model.load_state_dict(best_state)
    return rows, best_epoch, best_f1


def select_device(name: str) -> torch.device:
    """Return the torch device of a run: ``auto`` takes the first CUDA device if any.

    NOTE: the CUDA path has only been type-checked and reviewed; no GPU has run it yet.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            f"training.device={name} but torch sees no CUDA device; use training.device=cpu"
        )
    return device


def result_metrics(
    dev: Scores,
    test: Scores,
    test_strict: Scores,
    epochs: list[dict[str, Any]],
    best_epoch: int,
    train_seconds: float,
    device: torch.device,
) -> dict[str, Any]:
    """Score and run columns of a result row, the same for every model."""
    return {
        **dev.to_dict("dev_"),
        **test.to_dict("test_"),
        "test_strict_precision": test_strict.precision,
        "test_strict_recall": test_strict.recall,
        "test_strict_f1": test_strict.f1,
        "best_epoch": best_epoch,
        "epochs_run": len(epochs),
        "train_seconds": train_seconds,
        "device": str(device),
    }
