"""The trial grid of a spec, and the key that names each trial.

A trial is the plain, JSON-serialisable dict that the method function receives:
``method``, ``setting``, ``dataset``, ``labelled`` (count, share or ``"all"``),
``labelled_seed``, ``seed``, ``latent_size`` (methods with a latent only), ``model``,
``training``, ``encoder``, ``images``, ``data_dir``, ``cache_dir``.

The trial key is the first 16 hex digits of the SHA-256 of the canonical JSON of what
defines the result. That is the trial without its paths and with the labelled size
resolved to a count, plus the dataset release checksum and :data:`CODE_VERSION`.
Paths (data, cache, images, weights, run folder), resources and ``training.threads``
are left out, so moving a run to another machine or giving it more CPUs keeps its keys.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
from collections.abc import Iterator
from typing import Any

from orchestrator.methods import get_method
from orchestrator.spec import SweepSpec
from smvae.datasets import get_dataset

# Bump when a code change alters what a finished trial would produce, so a resumed
# sweep reruns trials instead of keeping results of the older code.
CODE_VERSION = "2026-12-1"

KEY_LENGTH = 16

# Trial settings that give locations or speed, not what is computed.
RUN_ONLY_KEYS = ("data_dir", "cache_dir")
RUN_ONLY_IMAGE_KEYS = ("image_dir", "weights")
RUN_ONLY_TRAINING_KEYS = ("threads",)


def labelled_count(dataset: str, labelled: int | float | str, data_dir: str | None = None) -> int:
    """Resolve a labelled size to a tweet count of the dataset's training split.

    A share is rounded to the nearest count (at least 1); ``"all"`` is the whole split.
    ``data_dir`` locates a dataset that is registered by a manifest in that folder.
    """
    train_tweets = get_dataset(dataset, data_dir).split("train").tweets
    if labelled == "all":
        return train_tweets
    if isinstance(labelled, float):
        return max(1, round(labelled * train_tweets))
    return int(labelled)


def _latent_sizes(spec: SweepSpec, method: str) -> list[int | None]:
    if not get_method(method).has_latent:
        return [None]
    return list(spec.latent_sizes) if spec.latent_sizes else [None]


def _seed_pairs(spec: SweepSpec) -> Iterator[tuple[int, int]]:
    """(labelled seed, initialisation seed) pairs: paired unless labelled_seeds is given."""
    if spec.labelled_seeds is None:
        for seed in spec.seeds:
            yield seed, seed
    else:
        yield from itertools.product(spec.labelled_seeds, spec.seeds)


def encoder_settings(spec: SweepSpec) -> dict[str, Any]:
    """Return the trial's ``encoder`` mapping, with ``learning_rate`` only when it is set.

    Leaving the unset key out keeps the trial keys of older specs unchanged.
    """
    values: dict[str, Any] = {
        "name": spec.encoder.name,
        "pooling": spec.encoder.pooling,
        "max_length": spec.encoder.max_length,
        "finetune": spec.encoder.finetune,
    }
    if spec.encoder.learning_rate is not None:
        values["learning_rate"] = spec.encoder.learning_rate
    return values


def expand_grid(spec: SweepSpec) -> list[dict[str, Any]]:
    """Cross methods x settings x datasets x labelled x latent sizes x seeds into trials."""
    trials = []
    for method in spec.methods:
        for setting, dataset, latent in itertools.product(
            spec.settings[method], spec.datasets, _latent_sizes(spec, method)
        ):
            for labelled, (labelled_seed, seed) in itertools.product(
                spec.labelled_for(setting), _seed_pairs(spec)
            ):
                trial: dict[str, Any] = {
                    "method": method,
                    "setting": setting,
                    "dataset": dataset,
                    "labelled": labelled,
                    "labelled_seed": labelled_seed,
                    "seed": seed,
                    "model": copy.deepcopy(spec.model),
                    "training": copy.deepcopy(spec.training),
                    "encoder": encoder_settings(spec),
                    "images": {
                        "name": spec.images.name,
                        "image_dir": spec.images.image_dir,
                        "weights": spec.images.weights,
                        "min_coverage": spec.images.min_coverage,
                    },
                    "data_dir": spec.data_dir,
                    "cache_dir": spec.cache_dir,
                }
                if latent is not None:
                    trial["latent_size"] = latent
                # Only when given, so that trials of specs without it keep their keys.
                if spec.strategies.get(method):
                    trial["strategy"] = copy.deepcopy(spec.strategies[method])
                trials.append(trial)
    return trials


def key_material(trial: dict[str, Any]) -> dict[str, Any]:
    """Return what defines a trial's result: the trial minus run-only settings, plus identities."""
    material = copy.deepcopy(trial)
    for key in RUN_ONLY_KEYS:
        material.pop(key, None)
    for key in RUN_ONLY_IMAGE_KEYS:
        material.get("images", {}).pop(key, None)
    for key in RUN_ONLY_TRAINING_KEYS:
        material.get("training", {}).pop(key, None)
    data_dir = trial.get("data_dir")
    material["dataset_sha256"] = get_dataset(trial["dataset"], data_dir).checksum
    # A share, "all" and a count that resolve to the same number are the same trial.
    material["labelled_count"] = labelled_count(
        trial["dataset"], material.pop("labelled"), data_dir
    )
    material["code_version"] = CODE_VERSION
    return material


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no whitespace: equal settings give equal text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def trial_key(trial: dict[str, Any]) -> str:
    """SHA-256 (first 16 hex digits) of the canonical JSON of :func:`key_material`."""
    digest = hashlib.sha256(canonical_json(key_material(trial)).encode("utf-8"))
    return digest.hexdigest()[:KEY_LENGTH]


def feature_group(trial: dict[str, Any]) -> str:
    """Identity of the feature caches a trial reads: dataset, encoder, images and paths."""
    return canonical_json(
        {
            "dataset": trial["dataset"],
            "encoder": trial["encoder"],
            "images": trial["images"],
            "data_dir": trial.get("data_dir"),
            "cache_dir": trial.get("cache_dir"),
        }
    )
