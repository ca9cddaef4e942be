"""Orchestrator pieces that need no Ray: specs, overrides, the grid, keys, plans, the store."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from orchestrator import store
from orchestrator.commands import status as status_command
from orchestrator.commands.sweep import read_spec
from orchestrator.grid import CODE_VERSION, expand_grid, trial_key
from orchestrator.provenance import git_state, package_versions
from orchestrator.spec import ResourcesSpec, SpecError, dump_spec, load_spec, parse_spec
from orchestrator.submit import SPEC_ENV, job_entrypoint, job_runtime_env
from orchestrator.sweep import plan_resources, run_status, run_sweep, validate_trials

REPO_ROOT = Path(__file__).resolve().parent.parent
CONFIGS = REPO_ROOT / "configs"

BASE: dict[str, Any] = {
    "name": "unit",
    "methods": ["smvae"],
    "datasets": ["twitter2015"],
    "seeds": [0, 1],
    "labelled": [100],
}


def spec_with(**changes: Any) -> dict[str, Any]:
    return {**BASE, **changes}


def test_unknown_method_lists_known_methods() -> None:
    with pytest.raises(SpecError) as error:
        parse_spec(spec_with(methods=["smvae", "crf-magic"]))
    message = str(error.value)
    assert "crf-magic" in message
    assert "smvae, smvae-no-mvae" in message


@pytest.mark.parametrize(
    ("changes", "key_path"),
    [
        ({"seeds": ["zero"]}, "seeds"),
        ({"training": 3}, "training"),
        ({"resources": {"cpus_per_trial": -1}}, "resources.cpus_per_trial"),
        ({"resources": {"gpus_per_trial": "many"}}, "resources.gpus_per_trial"),
        ({"encoder": {"max_length": "long"}}, "encoder.max_length"),
        ({"images": {"name": "resnet152", "min_coverage": 2}}, "images.min_coverage"),
        ({"images": "vgg"}, "images.name"),
        ({"labelled": [0]}, "labelled"),
        ({"labelled": [1.5]}, "labelled"),
        ({"datasets": ["twitter2019"]}, "datasets"),
    ],
)
def test_invalid_value_names_key_path(changes: dict[str, Any], key_path: str) -> None:
    with pytest.raises(SpecError) as error:
        parse_spec(spec_with(**changes))
    assert key_path in str(error.value)


def test_unknown_key_lists_known_keys() -> None:
    with pytest.raises(SpecError) as error:
        parse_spec(spec_with(encoder={"name": "minilm", "layers": 3}))
    assert "encoder.layers" in str(error.value)
    assert "max_length" in str(error.value)


def test_overrides_apply_before_validation() -> None:
    spec = parse_spec(
        spec_with(training={"epochs": 50}),
        ["training.epochs=3", "seeds=[4,5,6]", "images.name=resnet152", "labelled=all"],
    )
    assert spec.training["epochs"] == 3
    assert spec.seeds == [4, 5, 6]
    assert spec.images.name == "resnet152"
    assert spec.labelled == ["all"]
    with pytest.raises(SpecError, match="seeds"):
        parse_spec(BASE, ["seeds=[a]"])
    with pytest.raises(SpecError, match="key=value"):
        parse_spec(BASE, ["seeds"])


def test_exponent_floats_read_as_numbers(tmp_path: Path) -> None:
    # PyYAML alone reads 1e-5 as the string "1e-5" (YAML 1.1 wants 1.0e-5).
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(BASE) + "training: {learning_rate: 1e-5}\n")

    overrides = ["encoder.finetune=true", "encoder.learning_rate=2e-5", "training.epochs=3"]
    spec = load_spec(spec_file, overrides)

    assert spec.training["learning_rate"] == 1e-5
    assert spec.encoder.learning_rate == 2e-5
    assert spec.training["epochs"] == 3
    assert isinstance(spec.training["epochs"], int)


def test_setting_applies_to_methods_that_support_it(tmp_path: Path) -> None:
    extra = {
        "sup": {"target": "m:f", "settings": ["supervised"]},
        "semi": {"target": "m:f", "settings": ["semi-supervised"]},
    }
    spec = parse_spec(
        spec_with(
            methods=["smvae", "sup", "semi"],
            extra_methods=extra,
            setting=["supervised", "semi-supervised"],
        )
    )
    assert spec.settings == {
        "smvae": ["supervised", "semi-supervised"],
        "sup": ["supervised"],
        "semi": ["semi-supervised"],
    }
    with pytest.raises(SpecError, match=r"setting\.sup"):
        parse_spec(
            spec_with(methods=["sup"], extra_methods=extra, setting={"sup": "semi-supervised"})
        )
    assert parse_spec(BASE).settings == {"smvae": ["semi-supervised"]}


def test_grid_crosses_every_axis() -> None:
    spec = parse_spec(
        spec_with(
            methods=["smvae", "smvae-no-mvae"],
            datasets=["twitter2015", "twitter2017"],
            labelled=[0.1, "all"],
            latent_sizes=[64, 128],
            setting=["supervised", "semi-supervised"],
        )
    )
    trials = expand_grid(spec)
    # smvae: 2 settings x 2 datasets x 2 labelled x 2 latent x 2 seeds; the ablation has
    # no latent size, so one latent "value".
    assert len(trials) == 32 + 16
    assert {t.get("latent_size") for t in trials if t["method"] == "smvae"} == {64, 128}
    assert all("latent_size" not in t for t in trials if t["method"] == "smvae-no-mvae")
    assert all(t["labelled_seed"] == t["seed"] for t in trials)
    json.dumps(trials)  # plain data, JSON-serialisable
    assert len({trial_key(t) for t in trials}) == len(trials)


def test_labelled_sizes_per_setting() -> None:
    spec = parse_spec(
        spec_with(
            setting=["supervised", "semi-supervised"],
            labelled={"supervised": ["all"], "semi-supervised": [100, 0.5]},
        )
    )
    trials = expand_grid(spec)
    sizes = {(t["setting"], t["labelled"]) for t in trials}
    assert sizes == {("supervised", "all"), ("semi-supervised", 100), ("semi-supervised", 0.5)}
    assert len(trials) == 6
    with pytest.raises(SpecError, match=r"labelled\.semi-supervised"):
        parse_spec(
            spec_with(setting=["supervised", "semi-supervised"], labelled={"supervised": [1.0]})
        )


def test_strategy_settings_per_method() -> None:
    spec = parse_spec(
        spec_with(methods=["smvae", "st"], strategies={"st": {"rounds": 2, "threshold": 0.8}})
    )
    trials = expand_grid(spec)
    by_method = {t["method"]: t for t in trials}

    assert by_method["st"]["strategy"] == {"rounds": 2, "threshold": 0.8}
    assert "strategy" not in by_method["smvae"]
    validate_trials(trials)
    with pytest.raises(SpecError, match=r"rounds must be at least 1.*strategies\.st"):
        validate_trials(
            expand_grid(parse_spec(spec_with(methods=["st"], strategies={"st": {"rounds": 0}})))
        )
    narrowed = parse_spec(spec_with(methods=["st"], strategies={"em": {"weight": 1.0}}))
    assert ["strategy" in t for t in expand_grid(narrowed)] == [False, False]
    with pytest.raises(SpecError, match=r"strategies\.crf-magic is not a method"):
        parse_spec(spec_with(methods=["st"], strategies={"crf-magic": {"weight": 1.0}}))
    with pytest.raises(SpecError, match=r"unknown setting strategy\.round"):
        validate_trials(
            expand_grid(parse_spec(spec_with(methods=["st"], strategies={"st": {"round": 2}})))
        )


def test_labelled_seeds_cross_with_seeds() -> None:
    trials = expand_grid(parse_spec(spec_with(labelled_seeds=[7, 8])))
    assert sorted((t["labelled_seed"], t["seed"]) for t in trials) == [
        (7, 0),
        (7, 1),
        (8, 0),
        (8, 1),
    ]


def test_trial_key_stable_across_processes() -> None:
    trial = expand_grid(parse_spec(BASE))[0]
    code = (
        "import json, sys; from orchestrator.grid import trial_key; "
        "print(trial_key(json.loads(sys.argv[1])))"
    )
    other = subprocess.run(
        [sys.executable, "-c", code, json.dumps(trial)], capture_output=True, text=True, check=True
    )
    assert other.stdout.strip() == trial_key(trial)
    assert len(trial_key(trial)) == 16


@pytest.mark.parametrize(
    "change",
    [
        lambda t: t.update(method="smvae-no-mvae"),
        lambda t: t.update(setting="supervised"),
        lambda t: t.update(dataset="twitter2017"),
        lambda t: t.update(seed=9),
        lambda t: t.update(labelled_seed=9),
        lambda t: t.update(labelled=200),
        lambda t: t.update(latent_size=64),
        lambda t: t["model"].update(hidden_size=64),
        lambda t: t["training"].update(epochs=4),
        lambda t: t["encoder"].update(pooling="mean"),
        lambda t: t["images"].update(name="resnet152"),
        lambda t: t["images"].update(min_coverage=0.5),
    ],
)
def test_trial_key_changes_with_defining_setting(change: Any) -> None:
    trial = expand_grid(parse_spec(spec_with(training={"epochs": 2})))[0]
    changed = json.loads(json.dumps(trial))
    change(changed)
    assert trial_key(changed) != trial_key(trial)


def test_trial_key_ignores_run_only_settings() -> None:
    trial = expand_grid(parse_spec(BASE))[0]
    moved = json.loads(json.dumps(trial))
    moved.update(data_dir="/elsewhere/data", cache_dir="/elsewhere/cache")
    moved["images"].update(image_dir="/elsewhere/images", weights="/elsewhere/w.pth")
    moved["training"]["threads"] = 8
    assert trial_key(moved) == trial_key(trial)
    # A share and the count it resolves to are the same trial: 0.025 x 4000 = 100.
    share = json.loads(json.dumps(trial))
    share["labelled"] = 0.025
    assert trial_key(share) == trial_key(trial)
    assert CODE_VERSION


def test_plan_caps_concurrency_so_workers_fit() -> None:
    plan = plan_resources(ResourcesSpec(cpus_per_trial=1), {"CPU": 2.0}, 2.0, pending_trials=5)
    assert plan.concurrency == 2
    assert plan.trainable_cpus + plan.worker_cpus == pytest.approx(1.0)
    assert plan.concurrency * (plan.trainable_cpus + plan.worker_cpus) <= 2.0
    assert not plan.use_gpu
    single = plan_resources(ResourcesSpec(cpus_per_trial=2), {"CPU": 2.0}, 2.0, 5)
    assert single.concurrency == 1
    assert single.torch_threads == 2
    capped = plan_resources(ResourcesSpec(max_concurrent_trials=1), {"CPU": 8.0}, 8.0, 5)
    assert capped.concurrency == 1
    gpu = plan_resources(ResourcesSpec(), {"CPU": 16.0, "GPU": 2.0}, 16.0, 5)
    assert gpu.worker_gpus == 1.0
    assert gpu.concurrency == 2


def test_plan_rejects_infeasible_requests() -> None:
    with pytest.raises(ValueError, match=r"gpus_per_trial=1.*0 GPU"):
        plan_resources(ResourcesSpec(gpus_per_trial=1), {"CPU": 2.0}, 2.0, 1)
    with pytest.raises(ValueError, match=r"cpus_per_trial=4.*2 on its largest node"):
        plan_resources(ResourcesSpec(cpus_per_trial=4), {"CPU": 4.0}, 2.0, 1)


RUN_INFO = {
    "started_at": "2026-12-01T00:00:00.000+00:00",
    "finished_at": "2026-12-01T00:01:00.000+00:00",
    "wall_seconds": 60.0,
    "git_commit": "abc",
    "git_dirty": False,
    "package_versions": "{}",
    "device": "cpu",
}


def write_row(run_dir: Path, trial: dict[str, Any], status: str, **info: Any) -> dict[str, Any]:
    metrics = {"dev_f1": 50.0, "test_f1": 40.0, "best_epoch": 2, "epochs_run": 3}
    row = store.result_row(
        trial,
        key=trial_key(trial),
        experiment="unit",
        status=status,
        run_info={**RUN_INFO, **info},
        metrics=metrics if status == store.FINISHED else None,
        error="" if status == store.FINISHED else "RuntimeError: boom",
    )
    epochs = [{"epoch": 1, "train_loss": 1.0, "dev_f1": 10.0, "seconds": 0.5}]
    store.write_trial_result(
        run_dir, row, store.epoch_rows(epochs, trial, key=row["trial_key"], experiment="unit")
    )
    return row


def test_store_full_schema_one_row_per_key(tmp_path: Path) -> None:
    first, second = expand_grid(parse_spec(BASE))
    write_row(tmp_path, first, store.FINISHED)
    write_row(tmp_path, second, store.FAILED)
    results = store.compact(tmp_path)
    assert list(results.columns) == store.RESULT_SCHEMA.names
    assert len(results) == 2
    failed = results.set_index("trial_key").loc[trial_key(second)]
    assert failed["status"] == "failed"
    assert failed["error"] == "RuntimeError: boom"
    assert pd_isna(failed["test_f1"])
    assert failed["labelled_count"] == 100
    assert failed["labelled_share"] == pytest.approx(100 / 4000)
    assert str(results["best_epoch"].dtype) == "Int64"
    assert store.finished_keys(tmp_path) == {trial_key(first)}
    table = store.load_results(tmp_path)
    assert table.equals(results)
    epochs = store.load_epochs(tmp_path)
    assert list(epochs.columns) == store.EPOCH_SCHEMA.names
    assert pd_isna(epochs["loss_l2"].iloc[0])
    assert (tmp_path / "results.parquet").is_file()
    assert not list(tmp_path.rglob("*.tmp"))


def test_collect_prefers_finished_then_latest(tmp_path: Path) -> None:
    trial = expand_grid(parse_spec(BASE))[0]
    key = trial_key(trial)
    rows = [
        store.result_row(
            trial, key=key, experiment="u", status=s, run_info={**RUN_INFO, "finished_at": t}
        )
        for s, t in [
            ("failed", "2026-12-03"),
            ("finished", "2026-12-01"),
            ("finished", "2026-12-02"),
        ]
    ]
    with_duplicates = store.trial_dir(tmp_path, key) / store.RESULT_FILE
    with_duplicates.parent.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=store.RESULT_SCHEMA), with_duplicates)
    results = store.collect_results(tmp_path)
    assert len(results) == 1
    assert results.iloc[0]["status"] == "finished"
    assert results.iloc[0]["finished_at"] == "2026-12-02"


def pd_isna(value: Any) -> bool:
    return bool(pd.isna(value))


def test_dry_run_lists_keys_and_finished(tmp_path: Path) -> None:
    spec = parse_spec(spec_with(run_dir=str(tmp_path)))
    first, second = expand_grid(spec)
    write_row(tmp_path, first, store.FINISHED)
    summary = run_sweep(spec, dry_run=True)
    text = summary.dry_run_text or ""
    assert f"{trial_key(first)}  finished" in text
    assert f"{trial_key(second)}  to run" in text
    assert "already finished: 1" in text
    assert "1 CPU and auto GPU per trial" in text
    assert summary.skipped == 1
    assert not (tmp_path / "spec.yaml").exists()  # a dry run writes nothing


def test_status_counts_against_saved_spec(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = parse_spec(spec_with(seeds=[0, 1, 2], run_dir=str(tmp_path)))
    (tmp_path / "spec.yaml").write_text(dump_spec(spec))
    finished, failed, started = expand_grid(spec)
    write_row(tmp_path, finished, store.FINISHED)
    write_row(tmp_path, failed, store.FAILED)
    store.write_trial_info(tmp_path, trial_key(started), started)
    status = run_status(tmp_path)
    assert status.finished == [trial_key(finished)]
    assert status.failed == {trial_key(failed): "RuntimeError: boom"}
    assert status.started == [trial_key(started)]
    assert status.missing == []

    parser = argparse.ArgumentParser()
    status_command.register(parser.add_subparsers())
    args = parser.parse_args(["status", str(tmp_path)])
    assert args.handler(args) == 0
    output = capsys.readouterr().out
    assert "3 trials: 1 finished, 1 failed, 1 started" in output
    assert f"failed {trial_key(failed)}: RuntimeError: boom" in output


def test_resolved_spec_round_trips(tmp_path: Path) -> None:
    spec = parse_spec(
        spec_with(setting=["supervised"], images={"name": "resnet152", "min_coverage": 0.9})
    )
    path = tmp_path / "spec.yaml"
    path.write_text(dump_spec(spec))
    assert load_spec(path) == spec


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_configs_parse(path: Path) -> None:
    spec = load_spec(path)
    assert expand_grid(spec)


def test_quickstart_is_two_semi_supervised_trials() -> None:
    trials = expand_grid(load_spec(CONFIGS / "quickstart.yaml"))
    assert [(t["method"], t["setting"], t["dataset"], t["seed"]) for t in trials] == [
        ("smvae", "semi-supervised", "twitter2015", 0),
        ("smvae", "semi-supervised", "twitter2015", 1),
    ]
    assert all(t["images"]["name"] == "none" for t in trials)


def test_git_state_outside_checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MNER_GIT_COMMIT", raising=False)
    assert git_state(tmp_path).commit == "unknown"
    assert git_state(tmp_path).dirty is False
    monkeypatch.setenv("MNER_GIT_COMMIT", "f00d")
    monkeypatch.setenv("MNER_GIT_DIRTY", "true")
    assert git_state(tmp_path) == git_state(REPO_ROOT)
    assert git_state(tmp_path).commit == "f00d"
    versions = package_versions()
    assert set(versions) == {"torch", "ray", "transformers", "numpy", "pandas", "mner-smvae"}
    assert versions["ray"].startswith("2.")


def test_submit_runtime_env_carries_spec(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = parse_spec(spec_with(run_dir="/shared/runs/unit"), ["training.epochs=2"])
    runtime_env = job_runtime_env(spec, REPO_ROOT)
    assert runtime_env["working_dir"] == str(REPO_ROOT)
    for excluded in (".git", "/data/", "/runs/", "/.cache/", "/venv/", "/.venv/"):
        assert excluded in runtime_env["excludes"]
    assert f"env:{SPEC_ENV}" in job_entrypoint()
    monkeypatch.setenv(SPEC_ENV, runtime_env["env_vars"][SPEC_ENV])
    assert read_spec(f"env:{SPEC_ENV}", []) == spec
    assert yaml.safe_load(runtime_env["env_vars"][SPEC_ENV])["training"] == {"epochs": 2}


def test_result_row_takes_method_description() -> None:
    spec = parse_spec(
        {**BASE, "methods": ["seqvat"], "setting": "semi-supervised", "images": "resnet152"}
        | {"model": {"latent_size": 100}}
    )
    trial = expand_grid(spec)[0]
    metrics = {"test_f1": 40.0, "latent_size": None, "images": "none", "image_encoder": "none"}

    row = store.result_row(
        trial, key="k", experiment="unit", status=store.FINISHED, run_info=RUN_INFO, metrics=metrics
    )

    assert row["latent_size"] is None
    assert row["images"] == "none"
    assert row["image_encoder"] == "none"
    assert row["test_f1"] == 40.0


def test_cli_overrides_after_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from orchestrator.cli import main

    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(BASE))
    run_dir = tmp_path / "runs"

    assert main(["sweep", str(spec_file), "--dry-run", "--run-dir", str(run_dir), "seeds=[7]"]) == 0
    printed = capsys.readouterr().out
    assert "seed=7" in printed
    assert "seed=0" not in printed
    with pytest.raises(SystemExit):
        main(["sweep", str(spec_file), "--dry-run", "not-an-override"])
    assert "unrecognized arguments: not-an-override" in capsys.readouterr().err
