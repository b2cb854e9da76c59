"""Where studies live: an Optuna journal file by default, or any Optuna storage URL.

``--storage`` takes either

- a file path (or nothing: ``./studies/<study-name>.log``): an Optuna journal file
  (``JournalStorage(JournalFile(path))``, see ``JournalFile``).  It is append-only,
  survives a killed process, can be resumed, and is safe for several processes on one
  machine;
- an Optuna URL: ``sqlite:///path.db``, ``postgresql://...``, ``mysql://...`` (RDB
  storage), ``redis://...`` (journal on Redis) or ``grpc://host:port`` (Optuna's gRPC
  storage proxy).
"""
from __future__ import annotations

import errno
import json
import os
import socket
import stat
import time
import uuid
from pathlib import Path

import optuna
from optuna.storages.journal import JournalFileBackend

DEFAULT_DIR = Path("studies")
_RDB_SCHEMES = ("sqlite", "postgresql", "postgres", "mysql", "oracle", "mssql")


class TuningError(Exception):
    """A user-facing error: the CLI prints its message and exits with status 1."""


class StudyNotFoundError(TuningError, LookupError):
    pass


def default_journal_path(study_name: str) -> Path:
    return DEFAULT_DIR / f"{study_name}.log"


def is_url(spec: str) -> bool:
    return "://" in spec


def describe(spec: str | None, study_name: str | None) -> str:
    """The storage as the user would pass it again (for messages)."""
    if spec is None:
        return str(default_journal_path(study_name))
    return spec


def open_storage(spec: str | None, study_name: str | None, must_exist: bool = False,
                 heartbeat_interval: int | None = None):
    """An Optuna storage object for ``--storage spec`` (None: the default journal file).

    ``must_exist``: for a journal file, raise ``StudyNotFoundError`` instead of creating
    an empty file (commands that only read a study).  ``heartbeat_interval`` (seconds)
    is passed to RDB storages (Optuna's heartbeat for crash recovery).
    """
    if spec is None:
        if not study_name:
            raise TuningError("give --study-name (the default storage is "
                              f"{DEFAULT_DIR}/<study-name>.log) or --storage")
        path = default_journal_path(study_name)
    elif is_url(spec):
        return _open_url(spec, heartbeat_interval)
    else:
        path = Path(spec)
    if must_exist and not path.exists():
        raise StudyNotFoundError(
            f"no study storage at {path}" + (f" (no study named {study_name!r} has been run "
                                             f"here)" if spec is None else ""))
    if not must_exist:
        path.parent.mkdir(parents=True, exist_ok=True)
    return optuna.storages.JournalStorage(JournalFile(os.fspath(path)))


def _open_url(url: str, heartbeat_interval):
    scheme = url.split("://", 1)[0].split("+", 1)[0].lower()
    if scheme in _RDB_SCHEMES:
        kwargs = {}
        if heartbeat_interval is not None:
            kwargs["heartbeat_interval"] = heartbeat_interval
        return optuna.storages.RDBStorage(url, **kwargs)
    if scheme in ("redis", "rediss", "unix"):
        from optuna.storages.journal import JournalRedisBackend  # noqa: PLC0415
        return optuna.storages.JournalStorage(JournalRedisBackend(url))
    if scheme == "grpc":
        host, _, port = url.split("://", 1)[1].rstrip("/").rpartition(":")
        if not host or not port.isdigit():
            raise TuningError(f"--storage {url}: expected grpc://HOST:PORT")
        return optuna.storages.GrpcStorageProxy(host=host, port=int(port))
    raise TuningError(
        f"--storage {url}: unknown URL scheme {scheme!r}; expected a journal file path or a "
        f"URL starting with sqlite://, postgresql://, mysql://, redis:// or grpc://")


def study_names(storage) -> list:
    return list(optuna.get_all_study_names(storage))


# -- the journal file and its lock --------------------------------------------------------

LOCK_SUFFIX = ".lock"  # Optuna's name for a journal's lock file, so plain Optuna agrees
# The mode of the lock files this module creates.  It is set by the same system call that
# creates the file, so even a writer killed before it wrote anything into its lock file
# leaves one that is recognisably ours (plain Optuna's are symlinks, or files of mode
# 0o777 less the umask).  The file holds the writer's host and PID, for people.
LOCK_MODE = 0o400


class JournalFileLock:
    """A journal file's writer lock that a killed writer cannot leave behind.

    A writer first takes an exclusive ``flock`` on the journal file itself, which the
    kernel drops when the process dies, whatever killed it; then, for processes that lock
    the Optuna way (plain Optuna's ``JournalFileSymlinkLock``/``JournalFileOpenLock``),
    it creates Optuna's lock file ``<journal>.lock`` exclusively (mode ``LOCK_MODE``).
    Every process of ours creates that file only while it holds the ``flock``, so one
    found by a process holding the ``flock`` was left by a writer that died (SIGKILL, out
    of memory, power cut) inside its append: it is removed at once.

    Any other lock file (plain Optuna's, or one left by this project before this lock
    existed: Optuna's symlink lock stores the journal path as given, which, when it is
    relative, does not resolve from the link's folder, so Optuna's own 30 s grace period
    never ends and its writers wait forever) counts as held until it is ``grace_period``
    seconds old or has been seen unchanged that long; then it is removed, as Optuna does.
    Where ``flock`` does not work (some network or FUSE file systems) our own lock files
    are treated the same way.  Used through ``JournalFile``; ``acquire``/``release`` are
    the interface Optuna's ``JournalFileBackend`` expects of its ``lock_obj``.
    """

    def __init__(self, journal_path: str, grace_period: float = 30.0) -> None:
        self._journal = os.path.abspath(journal_path)
        self._path = self._journal + LOCK_SUFFIX
        self.grace_period = grace_period
        self._flock_fd = None

    def acquire(self) -> bool:
        fd = self._flock()
        try:
            self._create_lock_file(holds_flock=fd is not None)
        except BaseException:
            if fd is not None:
                os.close(fd)
            raise
        self._flock_fd = fd
        return True

    def release(self) -> None:
        fd, self._flock_fd = self._flock_fd, None
        try:
            _remove(self._path, missing_ok=True)  # missing: broken by another after a grace
        finally:
            if fd is not None:
                os.close(fd)  # drops the flock

    def _flock(self):
        """An fd of the journal holding an exclusive flock, or None where flock fails."""
        try:
            import fcntl  # noqa: PLC0415 - not on Windows
        except ImportError:
            return None
        fd = os.open(self._journal, os.O_RDONLY | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                return None
            raise
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _create_lock_file(self, holds_flock: bool) -> None:
        sleep = 0.001
        watched, since = None, time.monotonic()
        while True:
            try:
                fd = os.open(self._path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, LOCK_MODE)
            except FileExistsError:
                try:
                    st = os.lstat(self._path)
                except FileNotFoundError:
                    continue  # released meanwhile
                if holds_flock and stat.S_ISREG(st.st_mode) \
                        and stat.S_IMODE(st.st_mode) == LOCK_MODE:
                    _remove(self._path, missing_ok=True)  # its writer died mid-append
                    continue
                key = (st.st_ino, st.st_mtime_ns)
                if key != watched:
                    watched, since = key, time.monotonic()
                if self.grace_period is not None and (
                        time.time() - st.st_mtime > self.grace_period
                        or time.monotonic() - since > self.grace_period):
                    _remove(self._path, missing_ok=True)
                    continue
                time.sleep(sleep)
                sleep = min(2 * sleep, 0.05)
                continue
            try:
                os.write(fd, f"{socket.gethostname()} pid {os.getpid()}\n".encode())
            finally:
                os.close(fd)
            return


def _remove(path: str, missing_ok: bool = False) -> None:
    """Remove a lock file; renamed away first, as Optuna's own ``release`` does."""
    doomed = f"{path}.{uuid.uuid4().hex}.rename"
    try:
        os.rename(path, doomed)
    except FileNotFoundError:
        if missing_ok:
            return
        raise
    os.unlink(doomed)


class JournalFile(JournalFileBackend):
    """Optuna's journal file backend with ``JournalFileLock`` and a torn-append repair.

    A writer killed inside ``write`` can leave a partial last line.  Optuna's reader skips
    it while it is last, but the next append would be glued onto it and the journal would
    no longer read (``JSONDecodeError``).  So every append, under the lock (no live writer
    is then in the middle of one), first cuts such a tail back to the last complete line:
    what the dead writer never finished, no reader has ever seen.
    """

    def __init__(self, file_path: str, grace_period: float = 30.0) -> None:
        super().__init__(file_path, lock_obj=JournalFileLock(file_path, grace_period))

    def append_logs(self, logs: list) -> None:
        data = "".join(json.dumps(log, separators=(",", ":")) + "\n" for log in logs)
        self._lock.acquire()
        try:
            _cut_partial_last_line(self._file_path)
            with open(self._file_path, "ab") as f:
                f.write(data.encode("utf-8"))
                f.flush()
                os.fsync(f.fileno())
        finally:
            self._lock.release()


def _cut_partial_last_line(path: str, chunk: int = 1 << 16) -> bool:
    """Truncate ``path`` after its last newline if it ends without one; True if it did."""
    with open(path, "rb+") as f:
        end = f.seek(0, os.SEEK_END)
        if end == 0:
            return False
        f.seek(end - 1)
        if f.read(1) == b"\n":
            return False
        pos = end
        while pos > 0:
            start = max(0, pos - chunk)
            f.seek(start)
            block = f.read(pos - start)
            newline = block.rfind(b"\n")
            if newline >= 0:
                f.truncate(start + newline + 1)
                break
            pos = start
        else:
            f.truncate(0)
        f.flush()
        os.fsync(f.fileno())
        return True
