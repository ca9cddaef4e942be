"""A tiny real method for orchestrator tests: a linear tagger on generated word features.

It follows the method contract of ``orchestrator.methods``: it trains a torch model for
``training.epochs`` epochs, calls ``on_epoch`` after each, and returns entity-level
scores computed from its predictions. Test hooks:

- ``model.fail_seeds``: seeds whose trials raise ``RuntimeError`` after the first epoch;
- ``$FIXTURE_SLEEP_SEEDS`` / ``$FIXTURE_SLEEP_S``: seeds (comma-separated) whose trials
  sleep that many seconds per epoch. An environment variable, not a setting, so a
  resumed sweep keeps the same trial keys and runs fast;
- :func:`prepare_fixture` appends one line per call to ``<cache_dir>/prepare-calls.txt``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

TYPES = ("O", "PER", "LOC", "ORG", "MISC")  # label 0 is "no entity"
FEATURES = 8
WORDS = {"train": 200, "valid": 80, "test": 80}


@dataclass
class FixtureResult:
    metrics: dict[str, Any]
    epochs: list[dict[str, Any]] = field(default_factory=list)


def generate_split(seed: int, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Words with features ``x`` (W, F) and labels ``argmax(x @ A)`` for a fixed map ``A``."""
    mapping = torch.randn(FEATURES, len(TYPES), generator=torch.Generator().manual_seed(1234))
    offset = {"train": 0, "valid": 1, "test": 2}[split]
    generator = torch.Generator().manual_seed(1000 * seed + offset)
    features = torch.randn(WORDS[split], FEATURES, generator=generator)  # W, F
    return features, (features @ mapping).argmax(dim=1)  # W


def entity_scores(gold: torch.Tensor, predicted: torch.Tensor, prefix: str) -> dict[str, Any]:
    """Precision, recall, F1 in percent over words labelled as entities (exact type match)."""
    scores: dict[str, Any] = {}
    for index, name in enumerate(TYPES[1:], start=1):
        correct = int(((predicted == index) & (gold == index)).sum())
        scores[f"{prefix}f1_{name}"] = _f1(
            correct, int((gold == index).sum()), int((predicted == index).sum())
        )[2]
    correct = int(((predicted == gold) & (gold > 0)).sum())
    n_gold, n_predicted = int((gold > 0).sum()), int((predicted > 0).sum())
    precision, recall, f1 = _f1(correct, n_gold, n_predicted)
    scores.update({f"{prefix}precision": precision, f"{prefix}recall": recall, f"{prefix}f1": f1})
    scores.update(
        {f"{prefix}gold": n_gold, f"{prefix}predicted": n_predicted, f"{prefix}correct": correct}
    )
    return scores


def _f1(correct: int, gold: int, predicted: int) -> tuple[float, float, float]:
    precision = 100.0 * correct / predicted if predicted else 0.0
    recall = 100.0 * correct / gold if gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def _sleep_seconds(seed: int) -> float:
    seeds = {int(s) for s in os.environ.get("FIXTURE_SLEEP_SEEDS", "").split(",") if s.strip()}
    return float(os.environ.get("FIXTURE_SLEEP_S", "0")) if seed in seeds else 0.0


def run_fixture(
    settings: dict[str, Any], on_epoch: Callable[[dict[str, Any]], None] | None = None
) -> FixtureResult:
    """Train the linear tagger with the trial's seed; score the best development epoch."""
    started = time.perf_counter()
    seed = int(settings["seed"])
    training, model_settings = settings.get("training", {}), settings.get("model", {})
    torch.manual_seed(seed)
    data = {split: generate_split(seed, split) for split in WORDS}
    model = nn.Linear(FEATURES, len(TYPES))
    optimiser = torch.optim.SGD(model.parameters(), lr=float(training.get("learning_rate", 0.5)))
    epochs: list[dict[str, Any]] = []
    best: tuple[float, int, dict[str, Any]] = (-1.0, 0, {})
    for epoch in range(1, int(training.get("epochs", 2)) + 1):
        epoch_started = time.perf_counter()
        features, labels = data["train"]
        loss = nn.functional.cross_entropy(model(features), labels)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        time.sleep(_sleep_seconds(seed))
        with torch.no_grad():
            dev = entity_scores(data["valid"][1], model(data["valid"][0]).argmax(1), "dev_")
            test = entity_scores(data["test"][1], model(data["test"][0]).argmax(1), "test_")
        row = {
            "epoch": epoch,
            "train_loss": float(loss),
            "loss_l1": float(loss),
            "dev_precision": dev["dev_precision"],
            "dev_recall": dev["dev_recall"],
            "dev_f1": dev["dev_f1"],
            "seconds": time.perf_counter() - epoch_started,
        }
        epochs.append(row)
        if on_epoch is not None:
            on_epoch(row)
        if seed in model_settings.get("fail_seeds", []):
            raise RuntimeError(f"configured failure for seed {seed}")
        if dev["dev_f1"] > best[0]:
            best = (dev["dev_f1"], epoch, {**dev, **test})
    metrics = {
        **best[2],
        "test_macro_f1": sum(best[2][f"test_f1_{t}"] for t in TYPES[1:]) / 4,
        "test_strict_precision": best[2]["test_precision"],
        "test_strict_recall": best[2]["test_recall"],
        "test_strict_f1": best[2]["test_f1"],
        "best_epoch": best[1],
        "epochs_run": len(epochs),
        "train_seconds": time.perf_counter() - started,
        "image_coverage": 0.0,
        "device": "cpu",
    }
    return FixtureResult(metrics, epochs)


def prepare_fixture(settings: dict[str, Any]) -> None:
    """Record the call, standing in for building a feature cache."""
    folder = Path(settings["cache_dir"])
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "prepare-calls.txt", "a", encoding="utf-8") as calls:
        calls.write(f"{settings['dataset']} {settings['encoder']['name']}\n")
