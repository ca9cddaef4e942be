"""A sweep process killed with SIGKILL after its first trial resumes with only the rest."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from orchestrator import store
from orchestrator.ray_local import session_processes

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parent.parent
FIXTURE = "tests.orchestrator_fixture_method"
FIRST_RESULT_TIMEOUT_S = 240
RERUN_TIMEOUT_S = 300


def write_spec(tmp_path: Path) -> Path:
    spec = {
        "name": "resume",
        "methods": ["fixture"],
        "extra_methods": {"fixture": {"target": f"{FIXTURE}:run_fixture"}},
        "datasets": ["twitter2015"],
        "seeds": [0, 1],
        "labelled": [100],
        "training": {"epochs": 2},
        "resources": {"cpus_per_trial": 1, "max_failures": 0},
        "run_dir": str(tmp_path / "run"),
    }
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def sweep_command(spec: Path) -> list[str]:
    return [sys.executable, "-m", "orchestrator.commands.sweep", str(spec)]


def kill_session(session_id: int) -> None:
    """SIGKILL every process of the sweep's session (the driver and the Ray it started)."""
    for pid in session_processes(session_id):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while session_processes(session_id) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not session_processes(session_id), "processes of the killed sweep are still running"


def test_killed_sweep_resumes_missing_trials(tmp_path: Path) -> None:
    spec = write_spec(tmp_path)
    run_dir = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    # Seed 1 sleeps, so it is still running when seed 0 has finished.
    slow_env = {**env, "FIXTURE_SLEEP_SEEDS": "1", "FIXTURE_SLEEP_S": "120"}
    started = time.perf_counter()
    with open(tmp_path / "first.log", "wb") as log:
        sweep = subprocess.Popen(
            sweep_command(spec),
            env=slow_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=REPO_ROOT,
        )
    try:
        deadline = time.monotonic() + FIRST_RESULT_TIMEOUT_S
        while not list(run_dir.glob("trials/*/result.parquet")):
            assert sweep.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "no trial finished in time"
            time.sleep(0.2)
        first_seconds = time.perf_counter() - started
    finally:
        kill_session(sweep.pid)
        sweep.wait()
    finished_before = store.collect_results(run_dir)
    assert len(finished_before) == 1
    assert finished_before.iloc[0]["seed"] == 0
    assert not (run_dir / "results.parquet").exists()  # killed before compacting

    started = time.perf_counter()
    rerun = subprocess.run(
        sweep_command(spec),
        env=env,
        capture_output=True,
        text=True,
        timeout=RERUN_TIMEOUT_S,
        cwd=REPO_ROOT,
    )
    rerun_seconds = time.perf_counter() - started
    print(f"first trial result after {first_seconds:.1f} s; rerun took {rerun_seconds:.1f} s")
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    assert "2 trials: 1 already finished, 1 finished, 0 failed" in rerun.stdout

    results = store.load_results(run_dir)
    assert len(results) == 2
    assert results["trial_key"].is_unique
    assert set(results["status"]) == {"finished"}
    skipped = results.set_index("trial_key").loc[finished_before.iloc[0]["trial_key"]]
    assert skipped["started_at"] == finished_before.iloc[0]["started_at"]  # not run again
    import pandas as pd

    compacted = pd.read_parquet(run_dir / "results.parquet")
    assert len(compacted) == 2
    assert compacted["trial_key"].is_unique
