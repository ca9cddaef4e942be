"""Tests of the dataset download against a real HTTP server on 127.0.0.1.

The server serves a folder that the tests write, one subfolder per registry entry. For
some datasets it responds with a fault instead: HTTP 500, a body shorter than its
Content-Length, or half a body followed by SIGINT to the test's main thread.
"""

from __future__ import annotations

import hashlib
import logging
import signal
import socket
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from smvae import datasets
from smvae.datasets import DatasetInfo, SplitInfo
from smvae.download import DownloadError, download_dataset

TRAIN_BYTES = b"IMGID:1\nAlice\tB-PER\nsays\tO\nhi\tO\n\n"
TEST_BYTES = b"IMGID:2\nParis\tB-LOC\n\nIMGID:3\nok\tO\n\n"
OTHER_BYTES = b"IMGID:1\nAlice\tO\nsays\tO\nhi\tO\n\n"
SERVER_TIMEOUT_S = 5.0
# How often serve_forever checks for shutdown; its default of 0.5 s slows every teardown.
POLL_INTERVAL_S = 0.02

# Datasets for which the server sends a fault in place of any file.
HTTP_500_DATASET = "fault_http500"
TRUNCATED_DATASET = "fault_truncated"
STALLED_DATASET = "fault_stalled"
MISSING_BYTES = 1000  # how far the truncated response's Content-Length overstates its body


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class FixtureServer:
    base_url: str
    served: Path
    requests: Counter[str]


class _FixtureHandler(BaseHTTPRequestHandler):
    server: _FixtureHTTPServer

    def do_GET(self) -> None:
        self.server.requests[self.path] += 1
        dataset = self.path.strip("/").split("/")[0]
        if dataset == HTTP_500_DATASET:
            self.send_error(500, "fixture failure")
        elif dataset == TRUNCATED_DATASET:
            self._send_body(TRAIN_BYTES, announced=len(TRAIN_BYTES) + MISSING_BYTES)
            self.close_connection = True
        elif dataset == STALLED_DATASET:
            self._send_half_then_interrupt_client()
        else:
            self._send_file()

    def _send_file(self) -> None:
        path = self.server.served / self.path.lstrip("/")
        if not path.is_file():
            self.send_error(404, "no such fixture file")
            return
        self._send_body(path.read_bytes(), announced=path.stat().st_size)

    def _send_body(self, body: bytes, announced: int) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(announced))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def _send_half_then_interrupt_client(self) -> None:
        # Send SIGINT to the test's main thread while it waits for the rest of the body,
        # as Ctrl-C during a download does. The rest of the body is never sent.
        self.send_response(200)
        self.send_header("Content-Length", str(len(TRAIN_BYTES)))
        self.end_headers()
        self.wfile.write(TRAIN_BYTES[: len(TRAIN_BYTES) // 2])
        self.wfile.flush()
        main_thread = threading.main_thread().ident
        assert main_thread is not None
        signal.pthread_kill(main_thread, signal.SIGINT)
        self.server.stop_stalling.wait(SERVER_TIMEOUT_S)
        self.close_connection = True

    def log_message(self, format: str, *args: object) -> None:
        pass  # keep pytest output clean


class _FixtureHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, served: Path) -> None:
        super().__init__(("127.0.0.1", 0), _FixtureHandler)
        self.served = served
        self.requests: Counter[str] = Counter()
        self.stop_stalling = threading.Event()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[FixtureServer]:
    served = tmp_path / "served"
    (served / "mini").mkdir(parents=True)
    (served / "mini" / "train.txt").write_bytes(TRAIN_BYTES)
    (served / "mini" / "test.txt").write_bytes(TEST_BYTES)
    (served / "mini_wrong").mkdir()
    (served / "mini_wrong" / "train.txt").write_bytes(OTHER_BYTES)

    httpd = _FixtureHTTPServer(served)
    thread = threading.Thread(target=httpd.serve_forever, args=(POLL_INTERVAL_S,), daemon=True)
    thread.start()
    host, port = httpd.server_address[:2]
    try:
        yield FixtureServer(f"http://{host!s}:{port}", served, httpd.requests)
    finally:
        httpd.stop_stalling.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join(SERVER_TIMEOUT_S)


def register(monkeypatch: pytest.MonkeyPatch, name: str, files: dict[str, bytes]) -> None:
    """Add a test dataset to the registry with one split per file and its checksum."""
    splits = {
        filename.removesuffix(".txt"): SplitInfo(
            filename.removesuffix(".txt"), filename, sha256(data), 1
        )
        for filename, data in files.items()
    }
    info = DatasetInfo(name, name, splits, image_folder=f"{name}_images")
    monkeypatch.setitem(datasets.DATASETS, name, info)


def assert_folder_empty(folder: Path) -> None:
    assert folder.is_dir()
    assert sorted(p.name for p in folder.iterdir()) == []


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_download_good_files(
    server: FixtureServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    register(monkeypatch, "mini", {"train.txt": TRAIN_BYTES, "test.txt": TEST_BYTES})
    root = tmp_path / "data"

    paths = download_dataset("mini", root, base_url=server.base_url + "/", timeout=SERVER_TIMEOUT_S)

    assert paths == [root / "mini" / "train.txt", root / "mini" / "test.txt"]
    assert paths[0].read_bytes() == TRAIN_BYTES
    assert paths[1].read_bytes() == TEST_BYTES
    assert sorted(p.name for p in (root / "mini").iterdir()) == ["test.txt", "train.txt"]
    assert server.requests == Counter({"/mini/train.txt": 1, "/mini/test.txt": 1})


def test_download_skips_verified_file(
    server: FixtureServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    register(monkeypatch, "mini", {"train.txt": TRAIN_BYTES})
    root = tmp_path / "data"
    download_dataset("mini", root, base_url=server.base_url, timeout=SERVER_TIMEOUT_S)
    assert server.requests["/mini/train.txt"] == 1

    with caplog.at_level(logging.INFO, logger="smvae.download"):
        paths = download_dataset("mini", root, base_url=server.base_url, timeout=SERVER_TIMEOUT_S)

    assert server.requests["/mini/train.txt"] == 1
    assert paths[0].read_bytes() == TRAIN_BYTES
    assert "not downloading" in caplog.text


def test_download_rejects_wrong_existing_file(
    server: FixtureServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    register(monkeypatch, "mini", {"train.txt": TRAIN_BYTES})
    target = tmp_path / "data" / "mini" / "train.txt"
    target.parent.mkdir(parents=True)
    target.write_bytes(OTHER_BYTES)

    with pytest.raises(DownloadError) as caught:
        download_dataset("mini", tmp_path / "data", base_url=server.base_url)

    message = str(caught.value)
    assert f"{server.base_url}/mini/train.txt" in message
    assert str(target) in message
    assert sha256(OTHER_BYTES) in message
    assert sha256(TRAIN_BYTES) in message
    assert "--force" in message
    assert target.read_bytes() == OTHER_BYTES
    assert server.requests.total() == 0


def test_download_force_replaces_wrong_file(
    server: FixtureServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    register(monkeypatch, "mini", {"train.txt": TRAIN_BYTES})
    target = tmp_path / "data" / "mini" / "train.txt"
    target.parent.mkdir(parents=True)
    target.write_bytes(OTHER_BYTES)

    download_dataset("mini", tmp_path / "data", base_url=server.base_url, force=True)

    assert target.read_bytes() == TRAIN_BYTES
    assert sorted(p.name for p in target.parent.iterdir()) == ["train.txt"]


def test_download_force_keeps_old_file_on_failure(
    server: FixtureServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    register(monkeypatch, HTTP_500_DATASET, {"train.txt": TRAIN_BYTES})
    target = tmp_path / "data" / HTTP_500_DATASET / "train.txt"
    target.parent.mkdir(parents=True)
    target.write_bytes(OTHER_BYTES)

    with pytest.raises(DownloadError, match="HTTP 500"):
        download_dataset(HTTP_500_DATASET, tmp_path / "data", base_url=server.base_url, force=True)

    assert target.read_bytes() == OTHER_BYTES
    assert sorted(p.name for p in target.parent.iterdir()) == ["train.txt"]


def test_download_checksum_mismatch(
    server: FixtureServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The registry expects TRAIN_BYTES but the server has OTHER_BYTES at that path.
    register(monkeypatch, "mini_wrong", {"train.txt": TRAIN_BYTES})

    with pytest.raises(DownloadError) as caught:
        download_dataset("mini_wrong", tmp_path / "data", base_url=server.base_url)

    message = str(caught.value)
    assert f"{server.base_url}/mini_wrong/train.txt" in message
    assert "checksum mismatch" in message
    assert f"expected SHA-256 {sha256(TRAIN_BYTES)}, got {sha256(OTHER_BYTES)}" in message
    assert str(tmp_path / "data" / "mini_wrong" / "train.txt") in message
    assert_folder_empty(tmp_path / "data" / "mini_wrong")


def test_download_http_500(
    server: FixtureServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    register(monkeypatch, HTTP_500_DATASET, {"train.txt": TRAIN_BYTES})

    with pytest.raises(DownloadError) as caught:
        download_dataset(HTTP_500_DATASET, tmp_path / "data", base_url=server.base_url)

    message = str(caught.value)
    assert f"{server.base_url}/{HTTP_500_DATASET}/train.txt" in message
    assert "server returned HTTP 500" in message
    assert "Retry" in message
    assert "--base-url" in message
    assert_folder_empty(tmp_path / "data" / HTTP_500_DATASET)


def test_download_missing_file_is_http_404(
    server: FixtureServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    register(monkeypatch, "mini", {"absent.txt": TRAIN_BYTES})

    with pytest.raises(DownloadError, match="server returned HTTP 404"):
        download_dataset("mini", tmp_path / "data", base_url=server.base_url)

    assert_folder_empty(tmp_path / "data" / "mini")


def test_download_truncated_body(
    server: FixtureServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    register(monkeypatch, TRUNCATED_DATASET, {"train.txt": TRAIN_BYTES})

    with pytest.raises(DownloadError) as caught:
        download_dataset(
            TRUNCATED_DATASET, tmp_path / "data", base_url=server.base_url, timeout=SERVER_TIMEOUT_S
        )

    message = str(caught.value)
    announced = len(TRAIN_BYTES) + MISSING_BYTES
    assert f"{server.base_url}/{TRUNCATED_DATASET}/train.txt" in message
    assert "truncated body" in message
    assert f"announced {announced} bytes" in message
    assert f"closed after {len(TRAIN_BYTES)}" in message
    assert_folder_empty(tmp_path / "data" / TRUNCATED_DATASET)


def test_download_connection_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    register(monkeypatch, "mini", {"train.txt": TRAIN_BYTES})
    base_url = f"http://127.0.0.1:{closed_port()}"

    with pytest.raises(DownloadError) as caught:
        download_dataset("mini", tmp_path / "data", base_url=base_url, timeout=SERVER_TIMEOUT_S)

    message = str(caught.value)
    assert f"{base_url}/mini/train.txt" in message
    assert "connection failed" in message
    assert str(tmp_path / "data" / "mini" / "train.txt") in message
    assert_folder_empty(tmp_path / "data" / "mini")


def test_download_interrupt_removes_partial_file(
    server: FixtureServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The server sends half the body, then SIGINT to this thread (see _FixtureHandler).
    register(monkeypatch, STALLED_DATASET, {"train.txt": TRAIN_BYTES})
    # SIGINT must raise KeyboardInterrupt in this thread, as it does in a terminal.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            download_dataset(
                STALLED_DATASET,
                tmp_path / "data",
                base_url=server.base_url,
                timeout=SERVER_TIMEOUT_S,
            )
    finally:
        signal.signal(signal.SIGINT, previous)

    assert server.requests[f"/{STALLED_DATASET}/train.txt"] == 1
    assert_folder_empty(tmp_path / "data" / STALLED_DATASET)


def test_download_unknown_dataset(tmp_path: Path) -> None:
    with pytest.raises(KeyError, match="unknown dataset 'nosuch'"):
        download_dataset("nosuch", tmp_path)
