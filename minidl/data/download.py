"""Downloading a file safely: checksum verified, atomic, never a partial file left.

The bytes go to a hidden temporary file in the destination's directory; only when the
transfer is complete (Content-Length reached) and the MD5 matches is it renamed onto
the destination with ``os.replace`` (atomic on POSIX and Windows).  Any exception on
the way, KeyboardInterrupt included, removes the temporary file, so the destination
either holds the full verified file or does not exist.
"""
from __future__ import annotations

import hashlib
import http.client
import os
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

__all__ = ["DownloadError", "ChecksumError", "download_file"]

CHUNK_BYTES = 1 << 16


class DownloadError(OSError):
    """A download that failed: network or HTTP error, short transfer, bad checksum."""


class ChecksumError(DownloadError):
    """The downloaded bytes do not have the expected MD5."""


class _ProgressBar:
    """A one-line ``\\r``-updated progress display on a stream (stderr by default)."""

    def __init__(self, label: str, stream=None, min_interval: float = 0.1):
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.min_interval = min_interval
        self._last = 0.0
        self._start = time.perf_counter()

    def __call__(self, done: int, total: int | None) -> None:
        now = time.perf_counter()
        if now - self._last < self.min_interval and done != total:
            return
        self._last = now
        rate = done / max(now - self._start, 1e-9) / 1e6
        if total:
            text = (f"\r{self.label}: {done / 1e6:6.1f}/{total / 1e6:.1f} MB "
                    f"{100 * done / total:3.0f}% {rate:5.1f} MB/s")
        else:
            text = f"\r{self.label}: {done / 1e6:6.1f} MB {rate:5.1f} MB/s"
        self.stream.write(text)
        self.stream.flush()

    def close(self) -> None:
        self.stream.write("\n")
        self.stream.flush()


def _make_progress(progress, label: str):
    """(callback, bar) for ``progress``: None = bar if stderr is a TTY, bool, or callable."""
    if callable(progress):
        return progress, None
    if progress is None:
        progress = sys.stderr is not None and sys.stderr.isatty()
    if progress is True:
        bar = _ProgressBar(label)
        return bar, bar
    if progress is False:
        return None, None
    raise ValueError(f"download_file: expected progress None, True, False or a callable "
                     f"(done, total), got {progress!r}")


def download_file(url: str, dest, md5: str | None = None, *, timeout: float = 30.0,
                  progress=None) -> Path:
    """Download ``url`` to ``dest`` atomically, verifying its MD5 when given.

    Parameters
    ----------
    url : str
        http(s):// or file:// URL.
    dest : path
        Final location; its directory is created if needed.  It is only ever written
        by an atomic rename of a complete, verified file.
    md5 : str, optional
        Expected hex MD5 of the downloaded bytes.
    timeout : float
        Seconds to wait on the connection and on each read.
    progress : None, bool or callable
        None shows a progress line on stderr when stderr is a TTY; True always; False
        never; a callable is called as ``progress(bytes_done, total_or_None)`` after
        each chunk (an exception it raises aborts the download cleanly).

    Returns
    -------
    pathlib.Path
        ``dest``.

    Raises
    ------
    ChecksumError
        The MD5 of the bytes received differs from ``md5``.
    DownloadError
        Network/HTTP failure, or fewer bytes than the announced Content-Length.
    """
    dest = Path(dest)
    if urllib.parse.urlsplit(url).scheme not in ("http", "https", "file"):
        raise DownloadError(f"cannot download {url!r}: expected an http://, https:// or "
                            f"file:// URL")
    report, bar = _make_progress(progress, f"downloading {dest.name}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    try:
        digest = hashlib.md5(usedforsecurity=False)
        done, total = 0, None
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=timeout) as response:
                    length = response.headers.get("Content-Length")
                    total = int(length) if length and length.isdigit() else None
                    while chunk := response.read(CHUNK_BYTES):
                        out.write(chunk)
                        digest.update(chunk)
                        done += len(chunk)
                        if report is not None:
                            report(done, total)
            except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
                raise DownloadError(f"downloading {url} failed after {done} bytes: "
                                    f"{exc}") from exc
            out.flush()
            os.fsync(out.fileno())
        if total is not None and done != total:
            raise DownloadError(f"downloading {url}: connection closed early: expected "
                                f"{total} bytes (Content-Length), received {done}")
        if md5 is not None and digest.hexdigest() != md5.lower():
            raise ChecksumError(f"downloading {url}: checksum mismatch: expected MD5 {md5}, "
                                f"got {digest.hexdigest()} ({done} bytes); file discarded")
        os.chmod(tmp_name, 0o644)  # mkstemp makes 0600; the data is not secret
        os.replace(tmp_name, dest)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise
    finally:
        if bar is not None:
            bar.close()
    return dest
