"""Sweeps on a real local Ray instance with the fixture method: smoke run, failure, environment."""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator import store
from orchestrator.commands import status as status_command
from orchestrator.grid import trial_key
from orchestrator.ray_local import CLOSED_PROXY_URL, start_local_ray, stop_ray
from orchestrator.spec import SweepSpec, parse_spec
from orchestrator.sweep import run_sweep

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parent.parent
FIXTURE = "tests.orchestrator_fixture_method"


def fixture_spec(run_dir: Path, **changes: Any) -> SweepSpec:
    """A spec running the fixture method, with the feature-prepare hook counting calls."""
    values: dict[str, Any] = {
        "name": "fixture-sweep",
        "methods": ["fixture"],
        "extra_methods": {
            "fixture": {"target": f"{FIXTURE}:run_fixture", "prepare": f"{FIXTURE}:prepare_fixture"}
        },
        "datasets": ["twitter2015"],
        "seeds": [0, 1],
        "labelled": [100],
        "training": {"epochs": 3},
        "resources": {"cpus_per_trial": 1, "max_failures": 0},
        "cache_dir": str(run_dir / "cache"),
        "run_dir": str(run_dir),
    }
    values.update(changes)
    return parse_spec(values)


def descendants(pid: int) -> set[int]:
    """Live (non-zombie) descendants of a process, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] != "Z":
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found: set[int] = set()
    stack = [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.add(child)
            stack.append(child)
    return found


def read_environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(
        item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item
    )


def process_name(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")


@pytest.fixture(scope="module")
def ray_instance() -> Iterator[dict[str, Any]]:
    """One local Ray instance for this module; checks afterwards that nothing is left."""
    before_children = descendants(os.getpid())
    with pytest.MonkeyPatch.context() as patch:
        # Ray workers import the fixture method from the repository root.
        patch.setenv("PYTHONPATH", str(REPO_ROOT))
        environ_before = dict(os.environ)
        started = time.perf_counter()
        start_local_ray(num_cpus=2)
        info = {
            "environ_before": environ_before,
            "environ_after": dict(os.environ),
            "start_seconds": time.perf_counter() - started,
            "children": descendants(os.getpid()) - before_children,
        }
        try:
            yield info
        finally:
            stop_ray()
    deadline = time.monotonic() + 30
    while descendants(os.getpid()) - before_children and time.monotonic() < deadline:
        time.sleep(0.5)
    left = descendants(os.getpid()) - before_children
    assert not left, f"processes left after ray.shutdown: {[process_name(p) for p in left]}"


def test_local_ray_children_get_loopback_environment(ray_instance: dict[str, Any]) -> None:
    import ray

    assert ray_instance["environ_after"] == ray_instance["environ_before"]
    assert "http_proxy" not in os.environ or os.environ["http_proxy"] != CLOSED_PROXY_URL
    ray_children = [
        pid
        for pid in ray_instance["children"]
        if any(name in process_name(pid) for name in ("raylet", "gcs_server", "dashboard"))
    ]
    assert ray_children, "start_local_ray started no raylet/gcs/dashboard process"
    for pid in ray_children:
        environ = read_environ(pid)
        assert environ["http_proxy"] == CLOSED_PROXY_URL, process_name(pid)
        assert environ["HTTPS_PROXY"] == CLOSED_PROXY_URL
        assert "127.0.0.1" in environ["no_proxy"]
        assert environ["RAY_USAGE_STATS_ENABLED"] == "0"
        assert environ["RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"] == "0.2"
        assert environ["HF_HUB_OFFLINE"] == "1"
    assert {node["NodeManagerAddress"] for node in ray.nodes()} == {"127.0.0.1"}


def test_smoke_sweep_writes_both_rows(ray_instance: dict[str, Any], tmp_path: Path) -> None:
    spec = fixture_spec(tmp_path)
    lines: list[str] = []
    started = time.perf_counter()
    summary = run_sweep(spec, progress=lines.append)
    seconds = time.perf_counter() - started
    print(f"2-trial smoke sweep: {seconds:.1f} s")

    assert summary.finished == 2
    assert summary.failed == 0
    results = store.load_results(tmp_path)
    assert list(results.columns) == store.RESULT_SCHEMA.names
    assert set(results["status"]) == {"finished"}
    assert sorted(results["seed"]) == [0, 1]
    assert (results["test_f1"] > 0).all()
    assert (results["epochs_run"] == 3).all()
    assert (results["labelled_count"] == 100).all()
    assert (results["wall_seconds"] > results["train_seconds"]).all()
    assert results["package_versions"].str.contains('"ray"').all()
    for _, row in results.iterrows():
        print(
            f"trial {row['trial_key']}: wall {row['wall_seconds']:.1f} s, method "
            f"{row['train_seconds']:.1f} s, Ray overhead "
            f"{row['wall_seconds'] - row['train_seconds']:.1f} s"
        )
    compacted = store.load_results(tmp_path)
    assert len(compacted) == 2
    epochs = store.load_epochs(tmp_path)
    assert len(epochs) == 6
    assert sorted(epochs["epoch"].unique()) == [1, 2, 3]
    # One feature group (same dataset, encoder and images) -> prepared once.
    calls = (tmp_path / "cache" / "prepare-calls.txt").read_text().splitlines()
    assert calls == ["twitter2015 minilm"]
    assert sum("finished: dev F1" in line for line in lines) == 2
    assert any("0 left" in line for line in lines)
    for key in results["trial_key"]:
        log = store.trial_log_path(tmp_path, key).read_text()
        assert f"trial {key} finished" in log


def test_failed_trial_is_recorded(
    ray_instance: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = fixture_spec(
        tmp_path,
        model={"fail_seeds": [1]},
        resources={"cpus_per_trial": 1, "max_failures": 1},
    )
    summary = run_sweep(spec)
    failing = next(key for key in summary.failures)

    assert summary.finished == 1
    assert summary.failed == 1
    results = store.load_results(tmp_path).set_index("trial_key")
    failed = results.loc[failing]
    assert failed["status"] == "failed"
    assert failed["error"] == "RuntimeError: configured failure for seed 1"
    assert failed["seed"] == 1
    assert bool(failed[["test_f1", "dev_f1", "best_epoch"]].isna().all())
    assert results.drop(index=failing)["status"].tolist() == ["finished"]
    # max_failures=1: the trial ran twice, so its log has two tracebacks.
    log = store.trial_log_path(tmp_path, failing).read_text()
    assert log.count("RuntimeError: configured failure for seed 1") == 2
    assert trial_key({**_trial_of(results, failing)}) == failing

    parser = argparse.ArgumentParser()
    status_command.register(parser.add_subparsers())
    args = parser.parse_args(["status", str(tmp_path)])
    args.handler(args)
    output = capsys.readouterr().out
    assert "2 trials: 1 finished, 1 failed" in output
    assert f"failed {failing}: RuntimeError: configured failure for seed 1" in output


def _trial_of(results: Any, key: str) -> dict[str, Any]:
    import json

    return dict(json.loads(results.loc[key, "config_json"]))
