"""Start Ray on this machine, or connect to a cluster: the one place that calls ``ray.init``.

A local Ray instance must send nothing beyond loopback. Ray 2.60's dashboard and
usage-stats processes ask cloud metadata addresses (169.254.169.254 and
metadata.google.internal) which cloud they run on, even with usage stats disabled.
Those requests go through ``requests``, which honours the proxy variables, so the
processes Ray starts get a proxy on a closed loopback port and ``no_proxy`` for
loopback: the metadata requests fail at once with "connection refused" and Ray's
own gRPC traffic to 127.0.0.1 goes direct. The variables are set only while Ray
starts (its processes inherit them) and the driver's environment is restored
afterwards. Connecting to a user's cluster changes no environment variable.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

LOOPBACK_HOST = "127.0.0.1"

# Port 9 is the IANA "discard" port. It is below 1024, so no unprivileged process can
# listen there, and nothing does by default: a request sent through this "proxy" is
# refused at once instead of waiting for a timeout or reaching the network.
CLOSED_PROXY_URL = f"http://{LOOPBACK_HOST}:9"
LOOPBACK_NAMES = f"{LOOPBACK_HOST},localhost"

# Ray Train's controller polls its workers at this interval; each ray.train.report
# waits for a poll. Ray's default is 2 s. 0.2 s cut a 3-trial smoke sweep from 171 s
# to 52 s on a 2-core machine (measured with Ray 2.60).
HEALTH_CHECK_INTERVAL_S = "0.2"

# Seconds to wait for a head node's processes to exit after SIGTERM before SIGKILL.
HEAD_STOP_GRACE_S = 5.0
# Seconds to wait for `ray start --head` to bring up its job server.
HEAD_START_TIMEOUT_S = 120.0


def local_ray_environment() -> dict[str, str]:
    """Environment variables for the processes of a local Ray instance.

    ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` is Ray's single-node mode: Ray then binds
    its own services to 127.0.0.1 instead of replacing a loopback ``node_ip_address``
    with the machine's outward address.
    """
    return {
        "http_proxy": CLOSED_PROXY_URL,
        "https_proxy": CLOSED_PROXY_URL,
        "HTTP_PROXY": CLOSED_PROXY_URL,
        "HTTPS_PROXY": CLOSED_PROXY_URL,
        "no_proxy": LOOPBACK_NAMES,
        "NO_PROXY": LOOPBACK_NAMES,
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": os.environ.get(
            "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", HEALTH_CHECK_INTERVAL_S
        ),
        # A single machine is never preempted; the watcher would cost one actor
        # process per trial.
        "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
        "TOKENIZERS_PARALLELISM": "false",
        "HF_HUB_OFFLINE": "1",
    }


@contextlib.contextmanager
def patched_environ(values: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables for the block, then restore the whole environment.

    Whatever the block adds or changes is undone too: Ray 2.60's ``ray.init`` writes
    ``RAY_AUTH_MODE=token`` into the environment of the process that starts it.
    """
    saved = dict(os.environ)
    os.environ.update(values)
    try:
        yield
    finally:
        for name in set(os.environ) - set(saved):
            del os.environ[name]
        os.environ.update(saved)


@contextlib.contextmanager
def _single_node_mode() -> Iterator[None]:
    """Make an already imported Ray resolve 127.0.0.1 to itself while it starts.

    Ray reads ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER`` once, at import; when the driver
    imported Ray before this call, only the module constant can still change its mind.
    """
    from ray._private import ray_constants

    # NOTE: private Ray attribute (Ray 2.60); the local-start test checks that the
    # node address still comes out as 127.0.0.1.
    saved = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved


def start_local_ray(
    num_cpus: int | None = None,
    num_gpus: int | None = None,
    *,
    address: str | None = None,
    include_dashboard: bool = False,
    log_to_driver: bool = True,
) -> Any:
    """Start a local Ray instance bound to 127.0.0.1, or connect to ``address``.

    Without ``address`` (and without ``RAY_ADDRESS`` in the environment) this starts
    Ray in this process with the loopback-only environment of
    :func:`local_ray_environment` and the dashboard off. With an address, such as
    ``auto``, ``HOST:6379`` or ``ray://HOST:10001``, it connects and changes nothing
    in the environment. ``num_cpus`` and ``num_gpus`` are ignored there, because a
    running cluster has its own. Returns Ray's context object.
    """
    import ray

    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        logger.info("connecting to the Ray cluster at %s", address)
        return ray.init(address=address, log_to_driver=log_to_driver)

    started = time.perf_counter()
    with patched_environ(local_ray_environment()), _single_node_mode():
        context = ray.init(
            num_cpus=num_cpus,
            num_gpus=num_gpus,
            include_dashboard=include_dashboard,
            _node_ip_address=LOOPBACK_HOST,
            log_to_driver=log_to_driver,
        )
    logger.info(
        "started a local Ray instance on %s in %.1f s: %s",
        LOOPBACK_HOST,
        time.perf_counter() - started,
        {key: value for key, value in ray.cluster_resources().items() if "node:" not in key},
    )
    return context


def stop_ray() -> None:
    """Disconnect from Ray; a local instance started by this process stops with it."""
    import ray

    if ray.is_initialized():
        ray.shutdown()


@contextlib.contextmanager
def local_ray(num_cpus: int | None = None, num_gpus: int | None = None) -> Iterator[None]:
    """Run the block with a local Ray instance, stopping it afterwards."""
    start_local_ray(num_cpus, num_gpus)
    try:
        yield
    finally:
        stop_ray()


def free_loopback_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK_HOST, 0))
        return int(probe.getsockname()[1])


@dataclass
class LocalHead:
    """A Ray head node started by :func:`start_local_head`, with its job server."""

    process: subprocess.Popen[bytes]
    gcs_address: str
    dashboard_url: str
    temp_dir: Path
    auth_token: str
    log_path: Path
    client_env: dict[str, str] = field(default_factory=dict)

    @property
    def session_id(self) -> int:
        """Session id shared by every process of this head (the `ray start` process leads it)."""
        return self.process.pid


def start_local_head(
    num_cpus: int = 2,
    *,
    temp_dir: str | os.PathLike[str] | None = None,
    extra_env: Mapping[str, str] | None = None,
) -> LocalHead:
    """Run ``ray start --head --block`` bound to 127.0.0.1 with a job server on a free port.

    The head runs in its own session, so :func:`stop_local_head` can stop exactly its
    processes. It has its own authentication token, and ``client_env`` contains the
    variables that a client process needs to reach it (``RAY_AUTH_MODE``,
    ``RAY_AUTH_TOKEN``, loopback ``no_proxy``). The head's ``PATH`` starts with this
    interpreter's folder, so ``python`` in a job's entrypoint is this environment's.
    """
    token = secrets.token_hex(32)
    gcs_port = free_loopback_port()
    dashboard_port = free_loopback_port()
    folder = Path(temp_dir) if temp_dir is not None else Path(tempfile.mkdtemp(prefix="ray-head-"))
    folder.mkdir(parents=True, exist_ok=True)
    log_path = folder / "ray-start.log"
    env = {
        **os.environ,
        **local_ray_environment(),
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": token,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        **(extra_env or {}),
    }
    command = [
        str(Path(sys.executable).parent / "ray"),
        "start",
        "--head",
        "--block",
        f"--node-ip-address={LOOPBACK_HOST}",
        f"--port={gcs_port}",
        f"--dashboard-host={LOOPBACK_HOST}",
        f"--dashboard-port={dashboard_port}",
        # Ray's fixed defaults (52365 and 10001) clash when two heads run on one machine,
        # and the job server then rejects every submission with "No available agent".
        f"--dashboard-agent-listen-port={free_loopback_port()}",
        f"--ray-client-server-port={free_loopback_port()}",
        "--include-dashboard=true",
        f"--num-cpus={num_cpus}",
        "--disable-usage-stats",
        f"--temp-dir={folder}",
    ]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    head = LocalHead(
        process=process,
        gcs_address=f"{LOOPBACK_HOST}:{gcs_port}",
        dashboard_url=f"http://{LOOPBACK_HOST}:{dashboard_port}",
        temp_dir=folder,
        auth_token=token,
        log_path=log_path,
        client_env={
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN": token,
            "no_proxy": LOOPBACK_NAMES,
            "NO_PROXY": LOOPBACK_NAMES,
        },
    )
    try:
        _wait_for_job_server(head)
    except BaseException:
        stop_local_head(head)
        raise
    logger.info("started a Ray head at %s, job server %s", head.gcs_address, head.dashboard_url)
    return head


def _wait_for_job_server(head: LocalHead) -> None:
    """Poll the job server's version endpoint until it responds or the head exits."""
    import urllib.request

    # An opener without proxy handlers: the request must go straight to 127.0.0.1.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(
        f"{head.dashboard_url}/api/version",
        headers={"Authorization": f"Bearer {head.auth_token}"},
    )
    deadline = time.monotonic() + HEAD_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if head.process.poll() is not None:
            raise RuntimeError(
                f"ray start --head exited with code {head.process.returncode}; see {head.log_path}"
            )
        try:
            with opener.open(request, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError(
        f"the Ray job server at {head.dashboard_url} did not respond within "
        f"{HEAD_START_TIMEOUT_S:.0f} s; see {head.log_path}"
    )


def session_processes(session_id: int) -> list[int]:
    """Return the ids of live (non-zombie) processes in a session, read from /proc."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Fields after the parenthesised command name: state, ppid, pgrp, session, ...
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] != "Z" and int(fields[3]) == session_id:
            members.append(int(entry.name))
    return members


def stop_local_head(head: LocalHead) -> None:
    """Stop every process of a head started by :func:`start_local_head`.

    ``ray stop`` is not used because it stops every Ray process on the machine. This
    sends SIGTERM to the head's session, then SIGKILL to whatever is left after
    :data:`HEAD_STOP_GRACE_S` seconds.
    """
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in session_processes(head.session_id):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + HEAD_STOP_GRACE_S
        while time.monotonic() < deadline:
            head.process.poll()
            if not session_processes(head.session_id):
                return
            time.sleep(0.2)
    head.process.poll()
    left = session_processes(head.session_id)
    if left:
        logger.warning("Ray head processes still running after SIGKILL: %s", left)
