"""Run a spec's trial grid as a Ray Tune sweep, one Ray Train run per trial.

Ray 2.60 runs Ray Train V2, which rejects ``Tuner(TorchTrainer(...))``. Each Tune trial
is therefore a function (:func:`trial_trainable`) that builds a ``TorchTrainer`` with one
worker; :func:`train_worker` calls the method, sends each epoch to Tune through
``ray.train.report`` and ``TuneReportCallback``, and writes the trial's row and epochs
to the store. The per-trial files are written where the worker runs, so on a cluster of
several machines ``run_dir``, ``data_dir`` and ``cache_dir`` must be on shared storage,
mounted under the same path on every node.

Resources: a trial's Tune function takes :data:`TRAINABLE_CPU_SHARE` CPU and its Train
worker the rest of ``cpus_per_trial``. Summed per trial that is exactly
``cpus_per_trial``, and the number of trials running at once is capped so that every
Train worker fits next to its Tune function; without the cap, Tune functions that each
hold a whole CPU starve the workers on a small machine and the sweep never advances.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import time
import traceback
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray
import ray.train
from ray import tune
from ray.train import ScalingConfig
from ray.train.torch import TorchTrainer
from ray.tune.integration.ray_train import TuneReportCallback

from orchestrator import store
from orchestrator.grid import expand_grid, feature_group, trial_key
from orchestrator.methods import get_method, import_function
from orchestrator.provenance import (
    device_description,
    git_state,
    package_versions_json,
    utc_now,
)
from orchestrator.spec import AUTO, SpecError, SweepSpec, dump_spec

logger = logging.getLogger(__name__)

# CPU held by each trial's Tune function, which only waits on its Ray Train run.
TRAINABLE_CPU_SHARE = 0.01

ProgressFunction = Callable[[str], None]


@dataclass(frozen=True)
class ResourcePlan:
    """Placement of trials on the cluster: resources per trial and trials at once."""

    cluster_cpus: float
    cluster_gpus: float
    largest_node_cpus: float
    trainable_cpus: float
    worker_cpus: float
    worker_gpus: float
    torch_threads: int
    concurrency: int

    @property
    def use_gpu(self) -> bool:
        return self.worker_gpus > 0

    def describe(self) -> str:
        per_trial = f"{self.trainable_cpus + self.worker_cpus:g} CPU"
        if self.use_gpu:
            per_trial += f", {self.worker_gpus:g} GPU"
        return (
            f"cluster {self.cluster_cpus:g} CPU, {self.cluster_gpus:g} GPU; per trial "
            f"{per_trial} (Tune function {self.trainable_cpus:g} CPU + Train worker "
            f"{self.worker_cpus:g} CPU, {self.torch_threads} torch threads); "
            f"at most {self.concurrency} trials at once"
        )


def plan_resources(
    resources: Any,
    cluster: Mapping[str, float],
    largest_node_cpus: float,
    pending_trials: int,
) -> ResourcePlan:
    """Fit ``resources`` (a :class:`~orchestrator.spec.ResourcesSpec`) onto a cluster.

    Raises ValueError at once for a request the cluster can never satisfy, such as a GPU
    per trial on a cluster without GPUs, naming what the cluster has.
    """
    cpus = float(cluster.get("CPU", 0.0))
    gpus = float(cluster.get("GPU", 0.0))
    have = f"the cluster has {cpus:g} CPU ({largest_node_cpus:g} on its largest node), {gpus:g} GPU"
    per_trial_cpus = float(resources.cpus_per_trial)
    if per_trial_cpus > largest_node_cpus:
        raise ValueError(
            f"resources.cpus_per_trial={per_trial_cpus:g} cannot be scheduled: {have}; "
            "lower resources.cpus_per_trial"
        )
    if resources.gpus_per_trial == AUTO:
        per_trial_gpus = 1.0 if gpus >= 1 else 0.0
    else:
        per_trial_gpus = float(resources.gpus_per_trial)
    if per_trial_gpus > gpus:
        raise ValueError(
            f"resources.gpus_per_trial={resources.gpus_per_trial} cannot be scheduled: "
            f"{have}; set resources.gpus_per_trial to 0 or auto"
        )
    trainable = min(TRAINABLE_CPU_SHARE, per_trial_cpus / 2)
    concurrency = math.floor(cpus / per_trial_cpus + 1e-9)
    if per_trial_gpus > 0:
        concurrency = min(concurrency, math.floor(gpus / per_trial_gpus + 1e-9))
    if resources.max_concurrent_trials is not None:
        concurrency = min(concurrency, resources.max_concurrent_trials)
    return ResourcePlan(
        cluster_cpus=cpus,
        cluster_gpus=gpus,
        largest_node_cpus=largest_node_cpus,
        trainable_cpus=trainable,
        worker_cpus=per_trial_cpus - trainable,
        worker_gpus=per_trial_gpus,
        torch_threads=max(1, math.floor(per_trial_cpus)),
        concurrency=max(1, min(concurrency, max(pending_trials, 1))),
    )


@dataclass
class SweepSummary:
    """Outcome of a sweep. ``failures`` maps trial keys to their error text."""

    run_dir: Path
    total: int
    skipped: int
    finished: int = 0
    failed: int = 0
    failures: dict[str, str] = field(default_factory=dict)
    wall_seconds: float = 0.0
    dry_run_text: str | None = None

    def describe(self) -> str:
        text = (
            f"{self.total} trials: {self.skipped} already finished, {self.finished} finished, "
            f"{self.failed} failed in {self.wall_seconds:.0f} s; results in {self.run_dir}"
        )
        for key, error in self.failures.items():
            text += f"\n  failed {key}: {error.strip().splitlines()[-1] if error else ''}"
        return text


def describe_trial(trial: Mapping[str, Any]) -> str:
    """One-line label of a trial: method, setting, dataset, sizes, seeds."""
    parts = [
        trial["method"],
        trial["setting"],
        trial["dataset"],
        f"labelled={trial['labelled']}",
    ]
    if trial.get("latent_size") is not None:
        parts.append(f"latent={trial['latent_size']}")
    if trial["labelled_seed"] != trial["seed"]:
        parts.append(f"labelled_seed={trial['labelled_seed']}")
    parts.append(f"seed={trial['seed']}")
    return " ".join(str(part) for part in parts)


def dry_run_text(
    spec: SweepSpec,
    keyed: list[tuple[str, dict[str, Any]]],
    finished: set[str],
    plan: str,
) -> str:
    """Format the grid, each trial's key and status, and the resource plan as text."""
    lines = [f"sweep {spec.name}: {len(keyed)} trials, run folder {spec.resolved_run_dir()}"]
    for key, trial in keyed:
        state = "finished" if key in finished else "to run"
        lines.append(f"  {key}  {state:8}  {describe_trial(trial)}")
    lines.append(f"already finished: {sum(key in finished for key, _ in keyed)}")
    lines.append(f"resources: {plan}")
    return "\n".join(lines)


def _requested_resources_text(spec: SweepSpec) -> str:
    resources = spec.resources
    limit = resources.max_concurrent_trials or "as many as fit"
    return (
        f"{resources.cpus_per_trial:g} CPU and {resources.gpus_per_trial} GPU per trial, "
        f"at most {limit} at once, {resources.max_failures} retries per failing trial "
        "(fitted to the cluster when the sweep starts)"
    )


def _absolute(path: str | None) -> str | None:
    return None if path is None else str(Path(path).expanduser().resolve())


def _absolute_if_file(path: str | None) -> str | None:
    """Resolve a weights path that exists here; keep a name such as ``IMAGENET1K_V2``."""
    return _absolute(path) if path is not None and Path(path).expanduser().exists() else path


def resolve_paths(spec: SweepSpec) -> SweepSpec:
    """Turn relative and default paths into absolute ones, as seen from this process.

    Ray Train workers run in their own folders, so a relative path would point elsewhere.
    """
    from smvae.datasets import data_dir
    from smvae.features import cache_dir

    images = dataclasses.replace(
        spec.images,
        image_dir=_absolute(spec.images.image_dir),
        weights=_absolute_if_file(spec.images.weights),
    )
    return dataclasses.replace(
        spec,
        data_dir=str(data_dir(spec.data_dir).resolve()),
        cache_dir=str(cache_dir(spec.cache_dir).resolve()),
        run_dir=str(spec.resolved_run_dir().resolve()),
        images=images,
    )


def validate_trials(trials: list[dict[str, Any]]) -> None:
    """Check every trial's settings as its training run will, before Ray starts.

    A bad value in ``model``, ``training`` or ``encoder`` then fails the dry run and
    the sweep at once, naming the setting, instead of failing every trial later.
    Methods registered from elsewhere (``register_method``) check their own settings.
    """
    from smvae.settings import METHODS, RunSettings

    for trial in trials:
        if trial["method"] not in METHODS:
            continue
        try:
            RunSettings.from_mapping(trial)
        except (ValueError, NotImplementedError) as error:
            where = ""
            if trial.get("strategy") and "strategy" in str(error):
                where = f" (set under strategies.{trial['method']} in the spec)"
            raise SpecError(
                f"invalid spec for trial {describe_trial(trial)}: {error}{where}"
            ) from None


def run_sweep(
    spec: SweepSpec,
    address: str | None = None,
    resume: bool = True,
    dry_run: bool = False,
    progress: ProgressFunction | None = None,
) -> SweepSummary:
    """Run every trial of ``spec`` that has no finished result yet; write and compact results.

    ``address`` connects to a running cluster. Without it, a local Ray instance is
    started through :func:`orchestrator.ray_local.start_local_ray` and stopped at
    the end, unless this process is already connected. With ``resume`` false, every
    trial runs again. ``dry_run`` starts nothing and returns the plan in
    ``dry_run_text``. ``progress`` receives one line per finished trial.
    """
    started = time.perf_counter()
    trials = expand_grid(spec)
    validate_trials(trials)
    keyed = [(trial_key(trial), trial) for trial in trials]
    run_dir = spec.resolved_run_dir()
    finished = store.finished_keys(run_dir) if resume else set()
    summary = SweepSummary(run_dir, len(keyed), sum(key in finished for key, _ in keyed))
    if dry_run:
        summary.dry_run_text = dry_run_text(spec, keyed, finished, _requested_resources_text(spec))
        return summary

    spec = resolve_paths(spec)
    run_dir = summary.run_dir = Path(str(spec.run_dir))
    store.write_text_atomic(run_dir / store.SPEC_FILE, dump_spec(spec))
    keyed = list(zip([key for key, _ in keyed], expand_grid(spec), strict=True))
    pending = [(key, trial) for key, trial in keyed if key not in finished]
    if pending:
        _run_pending(spec, pending, address, progress)
    results = store.compact(run_dir)
    _count_outcomes(summary, results, [key for key, _ in pending])
    summary.wall_seconds = time.perf_counter() - started
    logger.info("sweep %s done: %s", spec.name, summary.describe())
    return summary


def _count_outcomes(summary: SweepSummary, results: Any, keys: list[str]) -> None:
    if results.empty:
        summary.failed = len(keys)
        summary.failures = dict.fromkeys(keys, "no result was written")
        return
    by_key = results.set_index("trial_key")
    for key in keys:
        if key in by_key.index and by_key.at[key, "status"] == store.FINISHED:
            summary.finished += 1
        else:
            summary.failed += 1
            error = by_key.at[key, "error"] if key in by_key.index else "no result was written"
            summary.failures[key] = str(error)


def _run_pending(
    spec: SweepSpec,
    pending: list[tuple[str, dict[str, Any]]],
    address: str | None,
    progress: ProgressFunction | None,
) -> None:
    """Start or join Ray, prepare features, run the trials, and stop what was started."""
    from orchestrator.ray_local import start_local_ray, stop_ray

    owns_ray = not ray.is_initialized()
    if owns_ray:
        start_local_ray(address=address)
    try:
        plan = plan_resources(
            spec.resources, ray.cluster_resources(), _largest_node_cpus(), len(pending)
        )
        logger.info("resource plan: %s", plan.describe())
        if progress:
            progress(f"{len(pending)} trials to run; {plan.describe()}")
        runnable = _prepare_features(spec, pending, plan, progress)
        if runnable:
            _run_trials(spec, runnable, plan, progress)
    finally:
        if owns_ray:
            stop_ray()


def _largest_node_cpus() -> float:
    alive = [node for node in ray.nodes() if node.get("Alive")]
    return max((float(node["Resources"].get("CPU", 0.0)) for node in alive), default=0.0)


def _run_info(started_at: str, wall_seconds: float | None, device: str) -> dict[str, Any]:
    git = git_state()
    return {
        "started_at": started_at,
        "finished_at": utc_now(),
        "wall_seconds": wall_seconds,
        "git_commit": git.commit,
        "git_dirty": git.dirty,
        "package_versions": package_versions_json(),
        "device": device,
    }


def _write_failure(
    run_dir: Path, key: str, trial: Mapping[str, Any], experiment: str, error: str, **info: Any
) -> None:
    run_info = _run_info(info.get("started_at", utc_now()), info.get("wall_seconds"), "")
    row = store.result_row(
        trial, key=key, experiment=experiment, status=store.FAILED, run_info=run_info, error=error
    )
    store.write_trial_result(run_dir, row, info.get("epochs"))


def _prepare_task(target: str, settings: dict[str, Any], threads: int) -> None:
    """Ray task: build one feature group's caches with ``threads`` torch threads."""
    import torch

    torch.set_num_threads(threads)
    import_function(target)(settings)


def _prepare_features(
    spec: SweepSpec,
    pending: list[tuple[str, dict[str, Any]]],
    plan: ResourcePlan,
    progress: ProgressFunction | None,
) -> list[tuple[str, dict[str, Any]]]:
    """Build each distinct feature cache once, before any trial; return the runnable trials.

    Trials whose preparation fails are written as failed with its error.
    """
    groups: dict[tuple[str, str], list[tuple[str, dict[str, Any]]]] = {}
    for key, trial in pending:
        prepare = get_method(trial["method"]).prepare
        if prepare is not None:
            groups.setdefault((prepare, feature_group(trial)), []).append((key, trial))
    remote = ray.remote(_prepare_task).options(
        num_cpus=plan.largest_node_cpus, num_gpus=plan.worker_gpus, max_retries=0
    )
    threads = max(1, math.floor(plan.largest_node_cpus))
    caches = "feature cache" if len(groups) == 1 else "feature caches"
    if groups and progress:
        progress(f"preparing {len(groups)} {caches} before the trials")
    futures = {
        group: remote.remote(group[0], copy.deepcopy(members[0][1]), threads)
        for group, members in groups.items()
    }
    failed: set[str] = set()
    for group, future in futures.items():
        members = groups[group]
        started_at = utc_now()
        try:
            ray.get(future)
        except Exception as error:
            text = f"feature preparation failed: {_error_text(error)}"
            logger.error("%s (%d trials skipped)", text, len(members))
            for key, trial in members:
                _write_failure(
                    Path(str(spec.run_dir)), key, trial, spec.name, text, started_at=started_at
                )
                failed.add(key)
    if groups and progress:
        progress(f"prepared {len(groups)} {caches}")
    return [(key, trial) for key, trial in pending if key not in failed]


def _error_text(error: BaseException) -> str:
    """``Type: message`` of the innermost error Ray wrapped, else of the error itself."""
    cause = getattr(error, "cause", None)
    inner = cause if isinstance(cause, BaseException) else error
    return f"{type(inner).__name__}: {inner}".strip()


def _run_trials(
    spec: SweepSpec,
    pending: list[tuple[str, dict[str, Any]]],
    plan: ResourcePlan,
    progress: ProgressFunction | None,
) -> None:
    run_dir = Path(str(spec.run_dir))
    context = {
        "run_dir": str(run_dir),
        "experiment": spec.name,
        "targets": {trial["method"]: get_method(trial["method"]).target for _, trial in pending},
        "worker_cpus": plan.worker_cpus,
        "worker_gpus": plan.worker_gpus,
        "torch_threads": plan.torch_threads,
        "max_failures": spec.resources.max_failures,
        "storage_path": str(run_dir / "ray"),
    }
    payloads = [{"key": key, "trial": trial} for key, trial in pending]
    callback = _ProgressCallback(run_dir, len(pending), progress)
    tuner = tune.Tuner(
        tune.with_resources(
            tune.with_parameters(trial_trainable, context=context), {"CPU": plan.trainable_cpus}
        ),
        param_space={"payload": tune.grid_search(payloads)},
        tune_config=tune.TuneConfig(
            max_concurrent_trials=plan.concurrency,
            trial_name_creator=_trial_name,
            trial_dirname_creator=_trial_name,
        ),
        run_config=tune.RunConfig(
            name=f"tune-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}",
            storage_path=str(run_dir / "ray"),
            verbose=0,
            callbacks=[callback],
        ),
    )
    grid = tuner.fit()
    _record_lost_trials(run_dir, spec.name, pending, grid)


def _trial_name(trial: Any) -> str:
    return f"trial-{trial.config['payload']['key']}"


def _record_lost_trials(
    run_dir: Path, experiment: str, pending: list[tuple[str, dict[str, Any]]], grid: Any
) -> None:
    """Write a failed row for each trial that ended without writing one (a crashed trainable)."""
    errors = {}
    for result in grid:
        if result.error is not None:
            errors[result.config["payload"]["key"]] = _error_text(result.error)
    for key, trial in pending:
        if store.read_trial_row(run_dir, key) is None:
            error = errors.get(key, "the trial ended without a result")
            logger.error("trial %s wrote no result: %s", key, error)
            _write_failure(run_dir, key, trial, experiment, error)


class _ProgressCallback(tune.Callback):
    """Driver-side Tune callback: one line per ended trial with its F1 and the count left."""

    def __init__(self, run_dir: Path, total: int, progress: ProgressFunction | None) -> None:
        self.run_dir = run_dir
        self.total = total
        self.done = 0
        self.progress = progress

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._report(trial)

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._report(trial)

    def _report(self, trial: Any) -> None:
        self.done += 1
        key = trial.config["payload"]["key"]
        row = store.read_trial_row(self.run_dir, key)
        left = self.total - self.done
        label = describe_trial(trial.config["payload"]["trial"])
        if row is None:
            line = f"trial {key} ({label}) ended without a result; {left} left"
        elif row["status"] == store.FINISHED:
            line = (
                f"trial {key} ({label}) finished: dev F1 {row['dev_f1']:.2f}, "
                f"test F1 {row['test_f1']:.2f}, {row['wall_seconds']:.0f} s; {left} left"
            )
        else:
            error = (row["error"] or "").strip().splitlines()
            line = f"trial {key} ({label}) failed: {error[-1] if error else ''}; {left} left"
        logger.info(line)
        if self.progress:
            self.progress(line)


def trial_trainable(config: dict[str, Any], context: dict[str, Any]) -> None:
    """Tune function for one trial: run it as a one-worker Ray Train run.

    A failure that the worker could not record itself (a crashed worker process, say)
    is written here as a failed row with Ray's error text.
    """
    payload = config["payload"]
    key, trial = payload["key"], payload["trial"]
    run_dir = Path(context["run_dir"])
    started_at = utc_now()
    store.write_trial_info(run_dir, key, trial)
    trainer = TorchTrainer(
        train_worker,
        train_loop_config={
            "payload": payload,
            "context": context,
            "started_at": started_at,
            "started": time.time(),
        },
        scaling_config=ScalingConfig(
            num_workers=1,
            use_gpu=context["worker_gpus"] > 0,
            resources_per_worker=_worker_resources(context),
        ),
        run_config=ray.train.RunConfig(
            name=f"{key}-{uuid.uuid4().hex[:6]}",
            storage_path=context["storage_path"],
            failure_config=ray.train.FailureConfig(max_failures=context["max_failures"]),
            # ray.train exports the V2 RunConfig at run time, but mypy reads the V1 class.
            callbacks=[TuneReportCallback()],  # type: ignore[list-item]
        ),
    )
    try:
        trainer.fit()
    except Exception as error:
        row = store.read_trial_row(run_dir, key)
        if row is None or row["started_at"] != started_at:
            _write_failure(
                run_dir,
                key,
                trial,
                context["experiment"],
                _error_text(error),
                started_at=started_at,
            )


def _worker_resources(context: Mapping[str, Any]) -> dict[str, float]:
    resources = {"CPU": float(context["worker_cpus"])}
    if context["worker_gpus"] > 0:
        resources["GPU"] = float(context["worker_gpus"])
    return resources


def train_worker(config: dict[str, Any]) -> None:
    """Ray Train loop of one trial: call the method, report epochs, write the row.

    A method that raises gets a failed row with its error, and its traceback goes to
    the trial log. The error is then raised again, so Ray Train retries the trial up
    to ``resources.max_failures`` times. A later finished attempt replaces the row.
    """
    import torch

    payload, context = config["payload"], config["context"]
    key, trial = payload["key"], payload["trial"]
    run_dir = Path(context["run_dir"])
    threads = int(context["torch_threads"])
    torch.set_num_threads(threads)
    settings = copy.deepcopy(trial)
    settings["training"] = {**settings.get("training", {}), "threads": threads}
    epochs: list[dict[str, Any]] = []

    def on_epoch(row: dict[str, Any]) -> None:
        epochs.append(dict(row))
        ray.train.report({name: value for name, value in row.items() if _is_number(value)})

    handler = _attach_trial_log(run_dir, key)
    device = device_description(context["worker_gpus"] > 0)
    try:
        logger.info("trial %s started on %s: %s", key, device, describe_trial(trial))
        method = import_function(context["targets"][trial["method"]])
        result = method(settings, on_epoch)
    except BaseException as error:
        logger.error("trial %s failed:\n%s", key, traceback.format_exc())
        rows = store.epoch_rows(epochs, trial, key=key, experiment=context["experiment"])
        _write_failure(
            run_dir,
            key,
            trial,
            context["experiment"],
            f"{type(error).__name__}: {error}",
            started_at=config["started_at"],
            wall_seconds=time.time() - config["started"],
            epochs=rows,
        )
        raise
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()
    _write_success(config, settings, result, device)


def _write_success(
    config: Mapping[str, Any], settings: Mapping[str, Any], result: Any, device: str
) -> None:
    payload, context = config["payload"], config["context"]
    key, trial = payload["key"], payload["trial"]
    run_info = _run_info(config["started_at"], time.time() - config["started"], device)
    metrics = {"device": device, **dict(result.metrics)}
    if str(metrics.get("device", "")) in ("cpu", "cuda"):
        metrics["device"] = device
    row = store.result_row(
        trial,
        key=key,
        experiment=context["experiment"],
        status=store.FINISHED,
        run_info=run_info,
        metrics=metrics,
    )
    epochs = store.epoch_rows(result.epochs, trial, key=key, experiment=context["experiment"])
    store.write_trial_result(Path(context["run_dir"]), row, epochs)
    with open(store.trial_log_path(context["run_dir"], key), "a", encoding="utf-8") as log:
        log.write(
            f"{utc_now()} trial {key} finished: dev F1 {row['dev_f1']}, test F1 "
            f"{row['test_f1']}, train {row['train_seconds']} s, wall {row['wall_seconds']:.1f} s\n"
        )


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _attach_trial_log(run_dir: Path, key: str) -> logging.Handler:
    """Send this process's log records to the trial's log file until the handler is removed."""
    path = store.trial_log_path(run_dir, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.INFO)
    # Ray's own progress records (one per ray.train.report) would drown the method's.
    ray_folder = str(Path(ray.__file__).parent)
    handler.addFilter(
        lambda record: (
            record.levelno >= logging.WARNING or not record.pathname.startswith(ray_folder)
        )
    )
    root = logging.getLogger()
    root.addHandler(handler)
    if root.level > logging.INFO or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)
    return handler


@dataclass
class RunStatus:
    """Trials of a run folder compared with the spec saved there."""

    spec_name: str
    total: int
    finished: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    started: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    other_keys: list[str] = field(default_factory=list)

    def describe(self) -> str:
        lines = [
            f"{self.spec_name}: {self.total} trials: {len(self.finished)} finished, "
            f"{len(self.failed)} failed, {len(self.started)} started without a result "
            f"(running or interrupted), {len(self.missing)} not started",
        ]
        if self.other_keys:
            lines.append(
                f"{len(self.other_keys)} stored results belong to trials outside the saved spec"
            )
        for key, error in self.failed.items():
            lines.append(f"failed {key}: {error}")
        return "\n".join(lines)


def run_status(run_dir: str | Path) -> RunStatus:
    """Count finished, failed, started and missing trials of the spec saved in ``run_dir``."""
    from orchestrator.spec import load_spec

    run_dir = Path(run_dir)
    spec_path = run_dir / store.SPEC_FILE
    if not spec_path.is_file():
        raise FileNotFoundError(f"{spec_path} not found: is {run_dir} a sweep's run folder?")
    spec = load_spec(spec_path)
    keyed = [(trial_key(trial), trial) for trial in expand_grid(spec)]
    results = store.collect_results(run_dir)
    rows = {} if results.empty else results.set_index("trial_key").to_dict("index")
    status = RunStatus(spec.name, len(keyed))
    for key, _ in keyed:
        row = rows.get(key)
        if row is not None and row["status"] == store.FINISHED:
            status.finished.append(key)
        elif row is not None:
            status.failed[key] = str(row["error"])
        elif (store.trial_dir(run_dir, key) / store.TRIAL_INFO_FILE).is_file():
            status.started.append(key)
        else:
            status.missing.append(key)
    status.other_keys = sorted(str(key) for key in set(rows) - {key for key, _ in keyed})
    return status
