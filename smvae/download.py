"""Download the annotation files of a dataset from their public release and verify them.

Each file is streamed into a temporary file in the target folder while its SHA-256 is
computed. Only a file whose checksum equals the registry's (:mod:`smvae.datasets`) is
moved into place, with ``os.replace``, so the target path never contains a partial or
unverified download. The temporary file is removed on every failure, Ctrl-C included.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import BinaryIO

from smvae.datasets import UMT_RAW_BASE_URL, DatasetInfo, SplitInfo, get_dataset, sha256_file

logger = logging.getLogger(__name__)

CHUNK_SIZE = 1 << 16  # bytes per read; the annotation files are at most about 700 kB
TEMP_SUFFIX = ".part"
USER_AGENT = "mner-smvae-download"


class DownloadError(RuntimeError):
    """A file that could not be downloaded or verified; the message names the URL and the fix."""

    def __init__(self, url: str, reason: str, fix: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(f"download of {url} failed: {reason}. {fix}")


def download_dataset(
    dataset: str,
    root: str | os.PathLike[str],
    base_url: str = UMT_RAW_BASE_URL,
    force: bool = False,
    timeout: float = 60.0,
) -> list[Path]:
    """Download every split file of ``dataset`` into ``<root>/<dataset>/`` and verify it.

    A file already present with the registry checksum is kept and not downloaded again.
    A present file with another checksum is replaced only when ``force`` is true.

    Args:
        dataset: a name of the registry, such as ``twitter2015``.
        root: the data folder; the files go to ``<root>/<dataset>/<split file>``.
        base_url: the address that ``<dataset>/<split file>`` is appended to.
        force: replace present files whose checksum differs from the registry.
        timeout: seconds to wait for the connection and for each read.

    Returns:
        The paths of the split files, in the registry's split order.

    Raises:
        KeyError: ``dataset`` is not in the registry.
        DownloadError: an HTTP error status, a connection failure, a truncated body,
            a checksum mismatch, or a present file with a wrong checksum without ``force``.
    """
    info = get_dataset(dataset, root)
    folder = Path(root) / info.name
    folder.mkdir(parents=True, exist_ok=True)
    paths = [
        _fetch_split(info, split, folder, base_url, force, timeout)
        for split in info.splits.values()
    ]
    logger.info("%s: %d files present and verified in %s", info.name, len(paths), folder)
    return paths


def _fetch_split(
    info: DatasetInfo,
    split: SplitInfo,
    folder: Path,
    base_url: str,
    force: bool,
    timeout: float,
) -> Path:
    """Make ``folder/<split file>`` hold the verified file, downloading it when needed."""
    target = folder / split.filename
    url = info.url(split.name, base_url)
    if target.exists():
        actual = sha256_file(target)
        if actual == split.sha256:
            logger.info("%s is present with the expected SHA-256; not downloading it", target)
            return target
        if not force:
            raise DownloadError(
                url,
                f"{target} already exists with SHA-256 {actual}, expected {split.sha256}",
                "Delete that file or download again with force (--force) to replace it",
            )
        logger.warning("replacing %s: its SHA-256 %s differs from %s", target, actual, split.sha256)

    handle, temp_name = tempfile.mkstemp(
        dir=folder, prefix=f".{split.filename}.", suffix=TEMP_SUFFIX
    )
    temp_path = Path(temp_name)
    try:
        with os.fdopen(handle, "wb") as temp_file:
            actual = _stream(url, temp_file, target, timeout)
        if actual != split.sha256:
            raise DownloadError(
                url,
                f"checksum mismatch: expected SHA-256 {split.sha256}, got {actual}",
                f"The server sent another version of the file. Check --base-url, "
                f"or place the verified file by hand at {target}",
            )
        os.replace(temp_path, target)
    except BaseException:
        # BaseException so that Ctrl-C during a download also removes the partial file.
        temp_path.unlink(missing_ok=True)
        raise
    logger.info("saved %s (SHA-256 verified)", target)
    return target


def _stream(url: str, out: BinaryIO, target: Path, timeout: float) -> str:
    """Copy the body at ``url`` into ``out`` and return its SHA-256 hex digest.

    Raises DownloadError on an HTTP error status, a connection failure, or a body
    shorter than the Content-Length header announced.
    """
    retry = f"Retry, check --base-url, or place the file by hand at {target}"
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    logger.info("downloading %s", url)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as error:
        raise DownloadError(
            url, f"server returned HTTP {error.code} ({error.reason})", retry
        ) from error
    except urllib.error.URLError as error:
        raise DownloadError(url, f"connection failed: {error.reason}", retry) from error
    except OSError as error:  # a timeout or reset while the headers are read
        raise DownloadError(url, f"connection failed: {error}", retry) from error

    digest = hashlib.sha256()
    received = 0
    with response:
        announced = _content_length(response)
        try:
            while chunk := response.read(CHUNK_SIZE):
                digest.update(chunk)
                out.write(chunk)
                received += len(chunk)
        except http.client.IncompleteRead as error:
            received += len(error.partial)
            raise DownloadError(url, _truncated(received, announced), retry) from error
        except OSError as error:
            raise DownloadError(
                url, f"connection failed after {received} bytes: {error}", retry
            ) from error
    if announced is not None and received < announced:
        raise DownloadError(url, _truncated(received, announced), retry)
    logger.debug("received %d bytes from %s", received, url)
    return digest.hexdigest()


def _content_length(response: http.client.HTTPResponse) -> int | None:
    value = response.headers.get("Content-Length")
    if value is None or not value.strip().isdigit():
        return None
    return int(value)


def _truncated(received: int, announced: int | None) -> str:
    expected = "an unknown number of" if announced is None else str(announced)
    return (
        f"truncated body: the server announced {expected} bytes (Content-Length) "
        f"but the connection closed after {received}"
    )
