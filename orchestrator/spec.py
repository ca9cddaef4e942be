"""Experiment specs: a YAML file (plus ``key=value`` overrides) -> a validated :class:`SweepSpec`.

A spec lists what to cross (methods, datasets, seeds, labelled sizes, latent sizes,
settings) and the settings every trial shares (model, training, encoder, images),
plus where data, caches and results live and what each trial may use. Every error
names the key path and what is allowed there.

Example::

    name: quickstart
    methods: [smvae]
    datasets: [twitter2015]
    seeds: [0, 1]
    labelled: [100]            # counts, shares in (0, 1], "all", or {setting: list}
    setting: semi-supervised   # or a list, or {method: setting(s)}
    training: {epochs: 5, batch_size: 16}
    strategies: {st: {rounds: 2}}   # settings of a method's semi-supervised strategy
    images: none
    resources: {cpus_per_trial: 1}
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from orchestrator.methods import SETTINGS, get_method, known_methods, register_method
from smvae.datasets import get_dataset
from smvae.settings import IMAGE_POLICIES, apply_overrides, load_yaml

POOLINGS = ("first", "mean")
AUTO = "auto"
DEFAULT_RUN_ROOT = Path("runs")


class SpecError(ValueError):
    """An invalid spec; the message names the key path."""


def _fail(path: str, expected: str, value: Any) -> SpecError:
    return SpecError(f"invalid spec: {path} must be {expected}, got {value!r}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else [value]


def _check_mapping(path: str, value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise _fail(path, "a mapping", value)
    return dict(value)


def _check_keys(path: str, values: Mapping[str, Any], known: list[str]) -> None:
    unknown = sorted(set(values) - set(known))
    if unknown:
        where = f"{path}." if path else ""
        raise SpecError(
            f"invalid spec: unknown key {where}{unknown[0]}; known keys"
            f"{' of ' + path if path else ''}: {', '.join(sorted(known))}"
        )


@dataclass(frozen=True)
class EncoderSpec:
    """Text encoder: a name (``minilm`` or a Hugging Face name or folder), pooling, limit.

    ``finetune`` trains the encoder with each model's head, and ``learning_rate`` is then
    the encoder's own rate (null: ``training.learning_rate``).
    """

    name: str = "minilm"
    pooling: str = "first"
    max_length: int = 256
    finetune: bool = False
    learning_rate: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise _fail("encoder.name", "a non-empty string", self.name)
        if self.pooling not in POOLINGS:
            raise _fail("encoder.pooling", f"one of {', '.join(POOLINGS)}", self.pooling)
        if not _is_int(self.max_length) or self.max_length < 1:
            raise _fail("encoder.max_length", "an integer >= 1", self.max_length)
        if not isinstance(self.finetune, bool):
            raise _fail("encoder.finetune", "true or false", self.finetune)
        if self.learning_rate is not None and (
            not _is_number(self.learning_rate) or not 0 < self.learning_rate < math.inf
        ):
            raise _fail(
                "encoder.learning_rate", "a finite positive number or null", self.learning_rate
            )
        if self.learning_rate is not None and not self.finetune:
            raise SpecError(
                "invalid spec: encoder.learning_rate is used only with encoder.finetune: true; "
                "remove it or set encoder.finetune: true"
            )


@dataclass(frozen=True)
class ImagesSpec:
    """Image policy: ``none``, or an image network with its image folder and weights."""

    name: str = "none"
    image_dir: str | None = None
    weights: str | None = None
    min_coverage: float = 0.0

    def __post_init__(self) -> None:
        if self.name not in IMAGE_POLICIES:
            raise _fail("images.name", f"one of {', '.join(IMAGE_POLICIES)}", self.name)
        for key in ("image_dir", "weights"):
            value = getattr(self, key)
            if value is not None and not isinstance(value, str):
                raise _fail(f"images.{key}", "a path string or null", value)
        if not _is_number(self.min_coverage) or not 0.0 <= self.min_coverage <= 1.0:
            raise _fail("images.min_coverage", "a number in [0, 1]", self.min_coverage)


@dataclass(frozen=True)
class ResourcesSpec:
    """What one trial may use, and how many trials may run at once.

    ``gpus_per_trial: auto`` takes one GPU per trial when the cluster has GPUs and
    none otherwise. ``max_failures`` bounds the retries of a trial that raises.
    """

    cpus_per_trial: float = 1.0
    gpus_per_trial: float | str = AUTO
    max_concurrent_trials: int | None = None
    max_failures: int = 1

    def __post_init__(self) -> None:
        if not _is_number(self.cpus_per_trial) or self.cpus_per_trial <= 0:
            raise _fail("resources.cpus_per_trial", "a number > 0", self.cpus_per_trial)
        gpus = self.gpus_per_trial
        if gpus != AUTO and (not _is_number(gpus) or float(gpus) < 0):
            raise _fail("resources.gpus_per_trial", "'auto' or a number >= 0", gpus)
        concurrent = self.max_concurrent_trials
        if concurrent is not None and (not _is_int(concurrent) or concurrent < 1):
            raise _fail("resources.max_concurrent_trials", "an integer >= 1 or null", concurrent)
        if not _is_int(self.max_failures) or self.max_failures < 0:
            raise _fail("resources.max_failures", "an integer >= 0", self.max_failures)


@dataclass(frozen=True)
class SweepSpec:
    """A validated experiment spec. ``settings`` maps each method to the settings it runs."""

    name: str
    methods: list[str]
    datasets: list[str]
    seeds: list[int]
    labelled: list[int | float | str] | dict[str, list[int | float | str]]
    settings: dict[str, list[str]]
    labelled_seeds: list[int] | None = None
    latent_sizes: list[int] | None = None
    model: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    strategies: dict[str, dict[str, Any]] = field(default_factory=dict)
    encoder: EncoderSpec = field(default_factory=EncoderSpec)
    images: ImagesSpec = field(default_factory=ImagesSpec)
    resources: ResourcesSpec = field(default_factory=ResourcesSpec)
    data_dir: str | None = None
    cache_dir: str | None = None
    run_dir: str | None = None
    extra_methods: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip() or "/" in self.name:
            raise _fail("name", "a non-empty string without '/'", self.name)
        _check_names("methods", self.methods, known_methods())
        _check_datasets(self.datasets, self.data_dir)
        _check_int_list("seeds", self.seeds, minimum=0)
        if self.labelled_seeds is not None:
            _check_int_list("labelled_seeds", self.labelled_seeds, minimum=0)
        if self.latent_sizes is not None:
            _check_int_list("latent_sizes", self.latent_sizes, minimum=1)
        if isinstance(self.labelled, dict):
            _check_keys("labelled", self.labelled, list(SETTINGS))
            for setting, sizes in self.labelled.items():
                _check_labelled(sizes, f"labelled.{setting}")
            for method, settings in self.settings.items():
                missing = [s for s in settings if s not in self.labelled]
                if missing:
                    raise SpecError(
                        f"invalid spec: labelled has no sizes for setting {missing[0]!r} "
                        f"of method {method!r}; add labelled.{missing[0]}"
                    )
        else:
            _check_labelled(self.labelled, "labelled")
        for key in ("data_dir", "cache_dir", "run_dir"):
            value = getattr(self, key)
            if value is not None and not isinstance(value, str):
                raise _fail(key, "a path string or null", value)

    def labelled_for(self, setting: str) -> list[int | float | str]:
        """Labelled sizes of a setting: the per-setting list, or the shared one."""
        if isinstance(self.labelled, dict):
            return list(self.labelled.get(setting, []))
        return list(self.labelled)

    def resolved_run_dir(self) -> Path:
        """The run folder: ``run_dir`` when set, else ``runs/<name>``."""
        return Path(self.run_dir) if self.run_dir else DEFAULT_RUN_ROOT / self.name

    def to_dict(self) -> dict[str, Any]:
        """The resolved spec as plain data; :func:`parse_spec` reads it back unchanged."""
        values = dataclasses.asdict(self)
        values["setting"] = values.pop("settings")
        return values


# Top-level keys a spec may have.
SPEC_KEYS = [
    "name",
    "methods",
    "datasets",
    "seeds",
    "labelled_seeds",
    "labelled",
    "latent_sizes",
    "setting",
    "model",
    "training",
    "strategies",
    "encoder",
    "images",
    "resources",
    "data_dir",
    "cache_dir",
    "run_dir",
    "extra_methods",
]


def _check_datasets(values: list[Any], data_dir: str | None) -> None:
    """Every dataset must be built in or described by a manifest under the data dir."""
    if not isinstance(values, list) or not values:
        raise _fail("datasets", "a non-empty list of dataset names", values)
    for index, name in enumerate(values):
        if not isinstance(name, str):
            raise _fail(f"datasets[{index}]", "a dataset name", name)
        try:
            get_dataset(name, data_dir)
        except KeyError as error:
            raise SpecError(f"invalid spec: datasets[{index}]: {error.args[0]}") from None


def _check_names(path: str, values: list[Any], known: list[str]) -> None:
    if not values:
        raise _fail(path, f"a non-empty list of: {', '.join(known)}", values)
    for value in values:
        if value not in known:
            kind = path.rstrip("s")
            raise SpecError(
                f"invalid spec: unknown {kind} {value!r} in {path}; "
                f"known {path}: {', '.join(known)}"
            )
    if len(set(values)) != len(values):
        raise _fail(path, "a list without repeats", values)


def _check_int_list(path: str, values: list[Any], minimum: int) -> None:
    if not values or not all(_is_int(v) and v >= minimum for v in values):
        raise _fail(path, f"a non-empty list of integers >= {minimum}", values)
    if len(set(values)) != len(values):
        raise _fail(path, "a list without repeats", values)


def _check_labelled(values: list[Any], path: str) -> None:
    expected = "'all' or a list of counts >= 1, shares in (0, 1] or 'all'"
    if not values:
        raise _fail(path, expected, values)
    for value in values:
        valid = (
            value == "all"
            or (_is_int(value) and value >= 1)
            or (isinstance(value, float) and 0.0 < value <= 1.0)
        )
        if not valid:
            raise _fail(path, expected, value)


def _parse_extra_methods(values: Any) -> dict[str, dict[str, Any]]:
    """Register methods that a spec brings along (``name: "module:function"`` or a mapping)."""
    extra: dict[str, dict[str, Any]] = {}
    for name, entry in _check_mapping("extra_methods", values).items():
        path = f"extra_methods.{name}"
        if isinstance(entry, str):
            entry = {"target": entry}
        entry = _check_mapping(path, entry)
        _check_keys(path, entry, ["target", "prepare", "settings", "latent"])
        if not isinstance(entry.get("target"), str):
            raise _fail(f"{path}.target", "a 'module:function' string", entry.get("target"))
        settings = _as_list(entry.get("settings", list(SETTINGS)))
        try:
            register_method(
                str(name),
                entry["target"],
                settings=[str(s) for s in settings],
                has_latent=bool(entry.get("latent", False)),
                prepare=entry.get("prepare"),
            )
        except ValueError as error:
            raise SpecError(f"invalid spec: {path}: {error}") from None
        extra[str(name)] = {
            "target": entry["target"],
            "prepare": entry.get("prepare"),
            "settings": settings,
            "latent": bool(entry.get("latent", False)),
        }
    return extra


def _parse_strategies(values: Any, methods: list[str]) -> dict[str, dict[str, Any]]:
    """Return the strategy settings per method, keyed by known method names.

    Settings of a known method that the spec does not run are kept but unused, so that
    ``methods=[st]`` on the command line narrows a spec with settings for several
    strategies. The settings themselves are checked against the method's strategy when
    the trials are validated (``RunSettings``), which names the unknown key.
    """
    strategies: dict[str, dict[str, Any]] = {}
    for method, settings in _check_mapping("strategies", values).items():
        if method not in known_methods():
            raise SpecError(
                f"invalid spec: strategies.{method} is not a method; "
                f"methods of this spec: {', '.join(methods)}"
            )
        strategies[str(method)] = _check_mapping(f"strategies.{method}", settings)
    return strategies


def _parse_settings(value: Any, methods: list[str]) -> dict[str, list[str]]:
    """Resolve ``setting`` (absent, one, a list, or per method) to each method's settings.

    A setting given for all methods applies to those that support it; a method that
    supports none of them is an error. A per-method setting must be supported.
    """
    resolved: dict[str, list[str]] = {}
    per_method = isinstance(value, Mapping)
    if per_method:
        _check_keys("setting", value, methods)
    for method in methods:
        info = get_method(method)
        path = f"setting.{method}" if per_method else "setting"
        requested = value.get(method) if per_method else value
        if requested is None:
            resolved[method] = [info.default_setting]
            continue
        names = _as_list(requested)
        for name in names:
            if name not in SETTINGS:
                raise _fail(path, f"one of {', '.join(SETTINGS)} (or a list)", name)
        chosen = [n for n in names if n in info.settings]
        if not chosen or (per_method and len(chosen) != len(names)):
            raise SpecError(
                f"invalid spec: {path}: method {method!r} supports only "
                f"{', '.join(info.settings)}, got {names}"
            )
        resolved[method] = list(dict.fromkeys(chosen))
    return resolved


def _normalise_images(value: Any) -> dict[str, Any]:
    if value is None or isinstance(value, str):
        return {"name": value or "none"}
    return _check_mapping("images", value)


def _build(cls: type[Any], path: str, values: Any) -> Any:
    mapping = _check_mapping(path, values)
    _check_keys(path, mapping, [f.name for f in dataclasses.fields(cls)])
    return cls(**mapping)


def parse_spec(values: Mapping[str, Any], overrides: list[str] | None = None) -> SweepSpec:
    """Validate a spec mapping after applying ``key=value`` overrides (dotted keys)."""
    raw = dict(_check_mapping("spec", values))
    if "images" in raw:
        raw["images"] = _normalise_images(raw["images"])
    try:
        raw = apply_overrides(raw, list(overrides or []))
    except ValueError as error:
        raise SpecError(str(error)) from None
    _check_keys("", raw, SPEC_KEYS)
    if "name" not in raw:
        raise SpecError("invalid spec: missing key name")
    extra = _parse_extra_methods(raw.get("extra_methods"))
    methods = [str(m) for m in _as_list(raw.get("methods", ["smvae"]))]
    _check_names("methods", methods, known_methods())
    labelled = raw.get("labelled", [100])
    latent = raw.get("latent_sizes")
    labelled_seeds = raw.get("labelled_seeds")
    return SweepSpec(
        name=raw["name"],
        methods=methods,
        datasets=_as_list(raw.get("datasets", ["twitter2015"])),
        seeds=_as_list(raw.get("seeds", [0])),
        labelled=(
            {str(k): _as_list(v) for k, v in labelled.items()}
            if isinstance(labelled, Mapping)
            else _as_list(labelled)
        ),
        settings=_parse_settings(raw.get("setting"), methods),
        labelled_seeds=None if labelled_seeds is None else _as_list(labelled_seeds),
        latent_sizes=None if latent is None else _as_list(latent),
        model=_check_mapping("model", raw.get("model")),
        training=_check_mapping("training", raw.get("training")),
        strategies=_parse_strategies(raw.get("strategies"), methods),
        encoder=_build(EncoderSpec, "encoder", raw.get("encoder")),
        images=_build(ImagesSpec, "images", _normalise_images(raw.get("images"))),
        resources=_build(ResourcesSpec, "resources", raw.get("resources")),
        data_dir=raw.get("data_dir"),
        cache_dir=raw.get("cache_dir"),
        run_dir=raw.get("run_dir"),
        extra_methods=extra,
    )


def load_spec(path: str | Path, overrides: list[str] | None = None) -> SweepSpec:
    """Read a YAML spec file and validate it with the overrides applied."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"spec file not found: {path}")
    values = load_yaml(path)
    if not isinstance(values, Mapping):
        raise SpecError(f"invalid spec {path}: expected a YAML mapping at the top level")
    return parse_spec(values, overrides)


def dump_spec(spec: SweepSpec) -> str:
    """The resolved spec as YAML text."""
    return yaml.safe_dump(copy.deepcopy(spec.to_dict()), sort_keys=False)
