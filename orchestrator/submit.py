"""Submit a sweep to a Ray cluster as a Ray Job.

The job's working directory is this repository without its git folder, data, caches,
run folders and virtual environments. The resolved spec (overrides applied) travels in
the environment variable :data:`SPEC_ENV`, so a spec file outside the repository works
too, and the job's entrypoint runs the ``sweep`` command on the cluster. The commit and
dirty flag seen here travel along, because the uploaded copy has no ``.git``.

Results are written to the spec's ``run_dir`` on the cluster, so give an absolute path
on storage that the cluster shares. A relative ``run_dir`` ends up inside the job's temporary
working directory on the head node.
"""

from __future__ import annotations

import logging
import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.provenance import GIT_COMMIT_ENV, GIT_DIRTY_ENV, git_state, source_root
from orchestrator.ray_local import HEALTH_CHECK_INTERVAL_S
from orchestrator.spec import SweepSpec, dump_spec

logger = logging.getLogger(__name__)

SPEC_ENV = "MNER_SWEEP_SPEC"

# Paths of the repository that a job never needs (runtime_env "excludes" patterns in
# gitignore syntax; a leading "/" anchors a pattern at the repository root).
WORKING_DIR_EXCLUDES = [
    ".git",
    "/data/",
    "/runs/",
    "/models/",
    "/.cache/",
    "/venv/",
    "/.venv/",
    "/build/",
    "*.egg-info",
    "__pycache__",
    ".mypy_cache/",
    ".ruff_cache/",
    ".pytest_cache/",
]

JOB_POLL_INTERVAL_S = 1.0


@dataclass(frozen=True)
class Submission:
    """A submitted job and how to follow it."""

    job_id: str
    address: str

    @property
    def follow_command(self) -> str:
        return f"ray job logs --follow {self.job_id} --address {self.address}"


def job_entrypoint() -> str:
    """Command the job runs on the cluster: the sweep command reading the spec variable."""
    return f"python -m orchestrator.commands.sweep env:{SPEC_ENV} --address auto"


def job_runtime_env(spec: SweepSpec, root: Path | None = None) -> dict[str, Any]:
    """Ray Jobs runtime environment: the repository as working directory, spec and commit."""
    root = root or source_root()
    git = git_state(root)
    return {
        "working_dir": str(root),
        "excludes": list(WORKING_DIR_EXCLUDES),
        "env_vars": {
            SPEC_ENV: dump_spec(spec),
            GIT_COMMIT_ENV: git.commit,
            GIT_DIRTY_ENV: "true" if git.dirty else "false",
            "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": HEALTH_CHECK_INTERVAL_S,
            "TOKENIZERS_PARALLELISM": "false",
        },
    }


# How long a submission waits for the job agent of a freshly started head.
AGENT_WAIT_S = 120.0
NO_AGENT_MESSAGE = "No available agent to submit job"


def submit_sweep(spec: SweepSpec, address: str, root: Path | None = None) -> Submission:
    """Submit ``spec`` as a Ray Job to the job server at ``address`` (``http://HOST:8265``)."""
    from ray.job_submission import JobSubmissionClient

    if spec.run_dir is None or not Path(spec.run_dir).is_absolute():
        logger.warning(
            "run_dir %s is relative: results will be written inside the job's working "
            "directory on the head node; set run_dir=/shared/path to keep them",
            spec.resolved_run_dir(),
        )
    client = JobSubmissionClient(address)
    runtime_env = job_runtime_env(spec, root)
    deadline = time.monotonic() + AGENT_WAIT_S
    attempt = 1
    while True:
        try:
            job_id = client.submit_job(entrypoint=job_entrypoint(), runtime_env=runtime_env)
            break
        except RuntimeError as error:
            # A head that has just started returns HTTP 500 "No available agent to submit
            # job" until its job agent is up; anything else is a real failure.
            if NO_AGENT_MESSAGE not in str(error) or time.monotonic() > deadline:
                raise
            logger.info("job agent of %s not ready (attempt %d); retrying", address, attempt)
            attempt += 1
            time.sleep(JOB_POLL_INTERVAL_S)
    logger.info("submitted sweep %s as job %s to %s", spec.name, job_id, address)
    return Submission(job_id, address)


def wait_for_job(address: str, job_id: str, timeout_s: float) -> str:
    """Poll a job until it ends; returns its final status (``SUCCEEDED``, ``FAILED`` ...).

    Raises TimeoutError when the job is still running after ``timeout_s`` seconds.
    """
    from ray.job_submission import JobSubmissionClient

    client = JobSubmissionClient(address)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = client.get_job_status(job_id)
        if status.is_terminal():
            return str(status.value)
        time.sleep(JOB_POLL_INTERVAL_S)
    raise TimeoutError(
        f"job {job_id} still running after {timeout_s:.0f} s; "
        f"follow it with: ray job logs --follow {shlex.quote(job_id)} --address {address}"
    )


def job_logs(address: str, job_id: str) -> str:
    from ray.job_submission import JobSubmissionClient

    return str(JobSubmissionClient(address).get_job_logs(job_id))
