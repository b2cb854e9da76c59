"""Where studies live: an Optuna journal file by default, or any Optuna storage URL.

``--storage`` takes either

- a file path (or nothing: ``./studies/<study-name>.log``): an Optuna journal file
  (``JournalStorage(JournalFileBackend(path))``).  It is append-only, survives a killed
  process, can be resumed, and is safe for several processes on one machine;
- an Optuna URL: ``sqlite:///path.db``, ``postgresql://...``, ``mysql://...`` (RDB
  storage), ``redis://...`` (journal on Redis) or ``grpc://host:port`` (Optuna's gRPC
  storage proxy).
"""
from __future__ import annotations

import os
from pathlib import Path

import optuna

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
    from optuna.storages.journal import JournalFileBackend  # noqa: PLC0415
    return optuna.storages.JournalStorage(JournalFileBackend(os.fspath(path)))


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
