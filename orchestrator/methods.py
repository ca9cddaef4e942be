"""Registry of the methods a sweep can run: name -> training function, by import path.

A method is a callable ``(settings, on_epoch) -> result``. ``settings`` is a trial's
plain dict (see :mod:`orchestrator.grid`); ``on_epoch`` is called with one dict per
finished epoch (``epoch``, ``train_loss``, ``loss_l1`` ... ``dev_f1``, ``seconds``) or is
None. The result has ``.metrics`` (result-row columns: scores, ``best_epoch``,
``epochs_run``, ``train_seconds``, ``image_coverage``, ``labelled_count``, ``device``)
and ``.epochs`` (the per-epoch dicts).

Entries name their functions as ``"module:function"`` strings and are imported only
when a trial runs, so listing or validating a spec never imports torch models.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

SUPERVISED = "supervised"
SEMI_SUPERVISED = "semi-supervised"
SETTINGS = (SUPERVISED, SEMI_SUPERVISED)


class MethodResult(Protocol):
    """Result of a method: result-row metrics and per-epoch rows."""

    metrics: Mapping[str, Any]
    epochs: list[dict[str, Any]]


EpochCallback = Callable[[dict[str, Any]], None]
MethodFunction = Callable[[dict[str, Any], EpochCallback | None], MethodResult]
PrepareFunction = Callable[[dict[str, Any]], Any]


def _split_import_path(path: str) -> tuple[str, str]:
    module_name, colon, function_name = path.partition(":")
    if not colon or not module_name or not function_name:
        raise ValueError(f"invalid import path {path!r}: expected 'package.module:function'")
    return module_name, function_name


@dataclass(frozen=True)
class MethodInfo:
    """One registered method.

    ``target`` and ``prepare`` are ``"module:function"`` import paths. ``prepare``
    builds the feature caches that a trial's dataset, encoder and images need. A sweep
    calls it once per distinct (dataset, encoder, images) before any trial starts.
    """

    name: str
    target: str
    settings: tuple[str, ...] = SETTINGS
    has_latent: bool = False
    prepare: str | None = None

    def __post_init__(self) -> None:
        for path in (self.target, self.prepare):
            if path is not None:
                _split_import_path(path)
        unknown = [s for s in self.settings if s not in SETTINGS]
        if not self.settings or unknown:
            raise ValueError(
                f"method {self.name!r}: settings must be a non-empty subset of "
                f"{', '.join(SETTINGS)}, got {list(self.settings)}"
            )

    @property
    def default_setting(self) -> str:
        """The setting a trial gets when the spec names none: semi-supervised when supported."""
        return SEMI_SUPERVISED if SEMI_SUPERVISED in self.settings else self.settings[0]


_SMVAE_TRAIN = "smvae.train:run_training"
_SMVAE_PREPARE = "smvae.train:prepare_features"

_REGISTRY: dict[str, MethodInfo] = {
    "smvae": MethodInfo("smvae", _SMVAE_TRAIN, has_latent=True, prepare=_SMVAE_PREPARE),
    # The ablation removes both VAEs, so it has no latent size.
    "smvae-no-mvae": MethodInfo("smvae-no-mvae", _SMVAE_TRAIN, prepare=_SMVAE_PREPARE),
}

# Text baselines. Their prepare step builds the text features alone: they never read images.
_BASELINE_TRAIN = "baselines.train:run_training"
_BASELINE_PREPARE = "baselines.train:prepare_features"
# Taggers trained on labelled tweets alone: the supervised table (Zhou et al., 2022, table 3).
_REGISTRY.update(
    {
        name: MethodInfo(name, _BASELINE_TRAIN, settings=(SUPERVISED,), prepare=_BASELINE_PREPARE)
        for name in ("bert", "bert-crf", "bert-bilstm-crf")
    }
)
# BiLSTM-CRF plus a semi-supervised strategy: the semi-supervised table (table 2).
_REGISTRY.update(
    {
        name: MethodInfo(
            name, _BASELINE_TRAIN, settings=(SEMI_SUPERVISED,), prepare=_BASELINE_PREPARE
        )
        for name in ("st", "em", "seqvat")
    }
)


def register_method(
    name: str,
    target: str,
    *,
    settings: tuple[str, ...] | list[str] = SETTINGS,
    has_latent: bool = False,
    prepare: str | None = None,
) -> MethodInfo:
    """Add (or replace) a method; returns its entry."""
    info = MethodInfo(name, target, tuple(settings), has_latent, prepare)
    _REGISTRY[name] = info
    return info


def known_methods() -> list[str]:
    return sorted(_REGISTRY)


def get_method(name: str) -> MethodInfo:
    """Look a method up; the error lists the known names."""
    if name not in _REGISTRY:
        raise KeyError(f"unknown method {name!r}; known methods: {', '.join(known_methods())}")
    return _REGISTRY[name]


def import_function(path: str) -> Callable[..., Any]:
    """Import ``"package.module:function"`` and return the function."""
    module_name, function_name = _split_import_path(path)
    module = importlib.import_module(module_name)
    try:
        function = getattr(module, function_name)
    except AttributeError:
        raise ImportError(f"module {module_name!r} has no function {function_name!r}") from None
    if not callable(function):
        raise TypeError(f"{path} is not callable")
    return function
