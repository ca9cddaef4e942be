"""Settings of one training run (SMVAE or a text baseline), read from a nested mapping.

The mapping comes from a YAML file or a sweep trial.

Defaults are the paper's where the paper gives a value (hidden 768, latent 100,
learning rate 1e-5, batch 8, at most 100 epochs, early stopping with patience 10, 100
labelled tweets). The text encoder defaults to the packaged MiniLM with frozen,
cached features, the setting for machines without a GPU; the paper fine-tunes
``bert-base-cased``.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from smvae.datasets import get_dataset

SMVAE_METHODS = ("smvae", "smvae-no-mvae")
# Text baselines trained on the labelled tweets alone (BERT, BERT-CRF, BERT-BiLSTM-CRF).
TAGGER_METHODS = ("bert", "bert-crf", "bert-bilstm-crf")
# BiLSTM-CRF tagger plus a semi-supervised strategy, mapped to its settings dataclass in
# baselines.strategies.
STRATEGY_CONFIGS = {
    "st": "SelfTrainingConfig",
    "em": "EntropyMinimizationConfig",
    "seqvat": "SeqVATConfig",
}
METHODS = SMVAE_METHODS + TAGGER_METHODS + tuple(STRATEGY_CONFIGS)
SETTINGS = ("supervised", "semi-supervised")
IMAGE_POLICIES = ("none", "resnet152", "efficientnet-lite0")

T = TypeVar("T")


# Names of the plain types a setting may declare, and a test for each; settings parsed
# from YAML or key=value overrides arrive as whatever YAML made of them.
_TYPE_CHECKS: dict[str, tuple[str, Any]] = {
    "int": ("an integer", lambda v: isinstance(v, int) and not isinstance(v, bool)),
    "float": (
        "a number",
        lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    ),
    "bool": ("true or false", lambda v: isinstance(v, bool)),
    "str": ("a string", lambda v: isinstance(v, str)),
    "None": ("null", lambda v: v is None),
    "dict[str, Any]": ("a mapping", lambda v: isinstance(v, dict)),
}


def check_setting_type(where: str, annotation: str, value: Any) -> None:
    """Raise ValueError naming the setting when ``value`` does not match its annotation.

    ``annotation`` is the field's annotation as written (``int | None``); parts that are
    not plain types (nested dataclasses) are not checked here.
    """
    parts = [part.strip() for part in annotation.split("|")]
    checks = [_TYPE_CHECKS[part] for part in parts if part in _TYPE_CHECKS]
    if len(checks) < len(parts) or any(test(value) for _, test in checks):
        return
    expected = " or ".join(description for description, _ in checks)
    raise ValueError(f"invalid setting {where}: expected {expected}, got {value!r}")


def build_dataclass(cls: type[T], values: Mapping[str, Any] | None, where: str) -> T:
    """Create ``cls`` from a mapping; an unknown key or a value of the wrong type raises."""
    if values is not None and not isinstance(values, Mapping):
        raise ValueError(f"invalid setting {where}: expected a mapping, got {values!r}")
    values = dict(values or {})
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ValueError(
            f"unknown setting {where}.{unknown[0]}; known settings of {where}: "
            + ", ".join(sorted(fields))
        )
    for name, value in values.items():
        annotation = fields[name].type
        if isinstance(annotation, str):
            check_setting_type(f"{where}.{name}" if where != "run" else name, annotation, value)
    return cls(**values)


@dataclass
class TrainingConfig:
    """Optimisation settings."""

    epochs: int = 100
    patience: int = 10
    learning_rate: float = 1e-5
    batch_size: int = 8
    eval_batch_size: int = 32
    negative_ratio: float = 1.0  # O spans drawn per gold span for the cross-entropy
    unlabelled_batch_size: int | None = None  # default: batch_size
    unlabelled_per_epoch: int | None = None  # unlabelled tweets drawn per epoch; None = all
    gradient_clip: float | None = None
    threads: int | None = None  # torch intra-op threads; None keeps torch's default
    device: str = "auto"  # "auto" (CUDA when available), "cpu", "cuda" or "cuda:N"

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"training.{name} must be at least 1, got {getattr(self, name)}")
        if self.patience < 0:
            raise ValueError(f"training.patience must be non-negative, got {self.patience}")
        if not self.learning_rate > 0:
            raise ValueError(f"training.learning_rate must be positive, got {self.learning_rate}")
        if self.device != "auto" and self.device != "cpu" and not self.device.startswith("cuda"):
            raise ValueError(
                f"training.device must be auto, cpu, cuda or cuda:N, got {self.device!r}"
            )
        if not self.negative_ratio > 0:
            raise ValueError(f"training.negative_ratio must be positive, got {self.negative_ratio}")


@dataclass
class EncoderConfig:
    """Text encoder: Hugging Face name or folder, pooling, piece limit, fine-tuning.

    ``finetune=false`` reads frozen word vectors from the feature cache. ``true`` trains
    the encoder with the model (:mod:`smvae.word_encoder`), at ``learning_rate`` if set,
    else at ``training.learning_rate``.
    """

    name: str = "minilm"
    pooling: str = "first"
    max_length: int = 256
    finetune: bool = False
    learning_rate: float | None = None

    def __post_init__(self) -> None:
        if self.pooling not in ("first", "mean"):
            raise ValueError(f"encoder.pooling must be first or mean, got {self.pooling!r}")
        if self.max_length < 3:
            raise ValueError(
                f"encoder.max_length must be at least 3 ([CLS], one piece, [SEP]), "
                f"got {self.max_length}"
            )
        if self.learning_rate is not None and not 0 < self.learning_rate < math.inf:
            raise ValueError(
                f"encoder.learning_rate must be positive and finite or null, "
                f"got {self.learning_rate}"
            )
        if self.learning_rate is not None and not self.finetune:
            raise ValueError(
                "encoder.learning_rate is used only with encoder.finetune=true; "
                "remove it or set encoder.finetune=true"
            )


@dataclass
class ImagesConfig:
    """Image policy: ``none`` (text expert alone) or an image network with weights and folder."""

    name: str = "none"
    image_dir: str | None = None
    weights: str | None = None
    min_coverage: float = 0.0  # a run fails when the share of tweets with an image is lower

    def __post_init__(self) -> None:
        if self.name not in IMAGE_POLICIES:
            raise ValueError(
                f"images.name must be one of {', '.join(IMAGE_POLICIES)}, got {self.name!r}"
            )
        if not 0.0 <= self.min_coverage <= 1.0:
            raise ValueError(f"images.min_coverage must be in [0, 1], got {self.min_coverage}")


@dataclass
class RunSettings:
    """Everything that defines one training run."""

    method: str = "smvae"
    dataset: str = "twitter2015"
    setting: str = "semi-supervised"
    labelled: int | float | str = 100  # a count, a share in (0, 1], or "all"
    labelled_seed: int = 0
    seed: int = 0
    model: dict[str, Any] = field(default_factory=dict)  # SMVAEConfig or TaggerConfig fields
    strategy: dict[str, Any] = field(default_factory=dict)  # fields of the strategy's config
    training: TrainingConfig = field(default_factory=TrainingConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    images: ImagesConfig = field(default_factory=ImagesConfig)
    data_dir: str | None = None
    cache_dir: str | None = None

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
        try:
            get_dataset(self.dataset, self.data_dir)
        except KeyError as error:
            raise ValueError(error.args[0]) from None
        if self.setting not in SETTINGS:
            raise ValueError(f"setting must be one of {', '.join(SETTINGS)}, got {self.setting!r}")
        self._check_method_setting()
        self.strategy = self._resolve_strategy()
        labelled = self.labelled
        valid = (
            labelled == "all"
            or (isinstance(labelled, int) and not isinstance(labelled, bool) and labelled >= 1)
            or (isinstance(labelled, float) and 0.0 < labelled <= 1.0)
        )
        if not valid:
            raise ValueError(
                f"labelled must be a count >= 1, a share in (0, 1] or 'all', got {labelled!r}"
            )
        if self.method in SMVAE_METHODS:
            self._check_smvae_model()

    def _check_smvae_model(self) -> None:
        """Validate ``model`` against SMVAEConfig before any data is read."""
        from smvae.model import SMVAEConfig

        derived = {"word_dim", "num_labels", "image_dim", "use_mvae", "use_images"}
        known = {f.name for f in dataclasses.fields(SMVAEConfig)} - derived
        if not isinstance(self.model, Mapping):
            raise ValueError(f"invalid setting model: expected a mapping, got {self.model!r}")
        unknown = sorted(set(self.model) - known)
        if unknown:
            raise ValueError(
                f"unknown setting model.{unknown[0]}; known settings of model: "
                + ", ".join(sorted(known))
            )
        try:
            SMVAEConfig(word_dim=1, num_labels=2, **self.model)
        except (TypeError, ValueError) as error:
            raise ValueError(f"invalid setting in model: {error}") from None

    def _check_method_setting(self) -> None:
        if self.method in TAGGER_METHODS and self.setting != "supervised":
            raise ValueError(
                f"method {self.method} trains on labelled tweets only; use setting: supervised "
                "(labelled: sets how many), or st, em or seqvat for the semi-supervised setting"
            )
        if self.method in STRATEGY_CONFIGS and self.setting != "semi-supervised":
            raise ValueError(
                f"method {self.method} needs unlabelled tweets; use setting: semi-supervised"
            )

    def _resolve_strategy(self) -> dict[str, Any]:
        """Validate ``strategy`` against the method's config and fill in its defaults."""
        if self.strategy is not None and not isinstance(self.strategy, Mapping):
            raise ValueError(f"strategy must be a mapping of settings, got {self.strategy!r}")
        if self.method not in STRATEGY_CONFIGS:
            if self.strategy:
                raise ValueError(
                    f"method {self.method} has no semi-supervised strategy, but strategy "
                    f"settings were given: {sorted(self.strategy)}"
                )
            return {}
        # Imported here because baselines.strategies imports torch, and specs are
        # validated without it.
        from baselines import strategies

        config_class = getattr(strategies, STRATEGY_CONFIGS[self.method])
        try:
            config = build_dataclass(config_class, self.strategy, "strategy")
        except ValueError as error:
            if "strategy." in str(error):
                raise
            raise ValueError(f"invalid {self.method} strategy setting: {error}") from None
        return dict(config.to_dict())

    def strategy_config(self) -> Any:
        """Build the strategy's config (SelfTrainingConfig ...); return None for other methods."""
        if self.method not in STRATEGY_CONFIGS:
            return None
        from baselines import strategies

        return getattr(strategies, STRATEGY_CONFIGS[self.method])(**self.strategy)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> RunSettings:
        values = dict(values)
        nested = {
            "training": build_dataclass(TrainingConfig, values.pop("training", None), "training"),
            "encoder": build_dataclass(EncoderConfig, values.pop("encoder", None), "encoder"),
            "images": build_dataclass(
                ImagesConfig, _images_mapping(values.pop("images", None)), "images"
            ),
        }
        latent = values.pop("latent_size", None)
        settings = build_dataclass(cls, {**values, **nested}, "run")
        if latent is not None:
            settings.model = {**settings.model, "latent_size": int(latent)}
        return settings

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def labelled_count(self, train_size: int) -> int:
        """Number of labelled tweets for a training split of ``train_size`` tweets."""
        if self.labelled == "all":
            return train_size
        if isinstance(self.labelled, float):
            return max(1, round(self.labelled * train_size))
        if int(self.labelled) > train_size:
            raise ValueError(
                f"labelled={self.labelled} exceeds the {train_size} tweets of the training split"
            )
        return int(self.labelled)


def _images_mapping(value: Any) -> Mapping[str, Any] | None:
    """Accept ``images: none`` as shorthand for ``images: {name: none}``."""
    if value is None or isinstance(value, Mapping):
        return value
    if isinstance(value, str):
        return {"name": value}
    raise ValueError(f"images must be a policy name or a mapping, got {value!r}")


# A float in YAML 1.2 notation: PyYAML follows YAML 1.1, which needs a dot in the
# mantissa and a sign in the exponent, so it reads ``1e-5`` and ``2e3`` as strings.
_FLOAT_PATTERN = re.compile(
    r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)(?:[eE][-+]?[0-9]+)?$"
    r"|^[-+]?\.(?:inf|Inf|INF)$|^\.(?:nan|NaN|NAN)$"
)


def _yaml_loader() -> Any:
    """Return a safe YAML loader class that also reads ``1e-5`` and ``2e3`` as numbers."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    # Drop the YAML 1.1 float rule, then add one that matches YAML 1.2 floats. Integers
    # are matched first by their own rule, so ``3`` stays an int.
    resolvers = {
        first: [(tag, rule) for tag, rule in rules if tag != "tag:yaml.org,2002:float"]
        for first, rules in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    Loader.yaml_implicit_resolvers = resolvers
    Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_PATTERN, list("-+0123456789."))
    return Loader


def parse_yaml(text: str) -> Any:
    """Parse YAML text safely, reading exponent floats such as ``1e-5`` as numbers."""
    import yaml

    return yaml.load(text, Loader=_yaml_loader())


def load_yaml(path: str | Path) -> Any:
    """Read a YAML file; a syntax error raises ValueError naming the file, line and column."""
    import yaml

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from None
    try:
        return parse_yaml(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
        problem = getattr(error, "problem", None) or str(error)
        raise ValueError(f"{where}: invalid YAML ({problem}); fix the file's syntax") from None


def apply_overrides(values: Mapping[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key=value`` overrides with dotted keys; values are parsed as YAML scalars or lists.

    ``training.epochs=3`` sets ``values["training"]["epochs"] = 3``; ``seeds=[0,1]`` sets
    a list. A missing ``=`` or an empty key raises ValueError naming the override.
    """
    import copy

    result: dict[str, Any] = copy.deepcopy(dict(values))
    for override in overrides:
        key, equals, raw = override.partition("=")
        if not equals or not key.strip():
            raise ValueError(
                f"invalid override {override!r}: expected key=value, e.g. training.epochs=3"
            )
        target = result
        parts = key.strip().split(".")
        for part in parts[:-1]:
            child = target.get(part)
            if child is None:
                child = target[part] = {}
            if not isinstance(child, dict):
                raise ValueError(f"invalid override {override!r}: {part} is not a mapping")
            target = child
        target[parts[-1]] = parse_yaml(raw) if raw else ""
    return result
