"""`submit` against a Ray head with a job server, started by the test on 127.0.0.1."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from orchestrator import store
from orchestrator.provenance import git_state
from orchestrator.ray_local import session_processes, start_local_head, stop_local_head

pytestmark = pytest.mark.slow

FIXTURE = "tests.orchestrator_fixture_method"
JOB_TIMEOUT_S = 180


def test_submit_runs_sweep_as_job(tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        yaml.safe_dump(
            {
                "name": "submitted",
                "methods": ["fixture"],
                "extra_methods": {"fixture": {"target": f"{FIXTURE}:run_fixture"}},
                "datasets": ["twitter2015"],
                "seeds": [0],
                "labelled": [100],
                "training": {"epochs": 2},
                "resources": {"cpus_per_trial": 1, "max_failures": 0},
            }
        )
    )
    run_dir = tmp_path / "run"
    started = time.perf_counter()
    head = start_local_head(num_cpus=2)
    try:
        # A separate client process, as a user runs it: Ray reads the token settings of
        # a client when it is imported.
        submit = subprocess.run(
            [
                sys.executable,
                "-m",
                "orchestrator.commands.submit",
                str(spec),
                f"run_dir={run_dir}",
                "--address",
                head.dashboard_url,
                "--wait",
                str(JOB_TIMEOUT_S),
            ],
            env={**os.environ, **head.client_env},
            capture_output=True,
            text=True,
            timeout=JOB_TIMEOUT_S + 60,
        )
        output = submit.stdout
        assert submit.returncode == 0, output[-4000:] + submit.stderr[-4000:]
        job_id = output.split("submitted job ", 1)[1].split()[0]
        assert f"ray job logs --follow {job_id} --address {head.dashboard_url}" in output
        assert f"job {job_id} ended: SUCCEEDED" in output
        print(f"submit test: job finished {time.perf_counter() - started:.1f} s after head start")
    finally:
        stop_local_head(head)
        shutil.rmtree(head.temp_dir, ignore_errors=True)
    assert not session_processes(head.session_id)

    results = store.load_results(run_dir)
    assert len(results) == 1
    row = results.iloc[0]
    assert row["status"] == "finished"
    assert row["experiment"] == "submitted"
    assert row["git_commit"] == git_state().commit
    assert (run_dir / "results.parquet").is_file()
