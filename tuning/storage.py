"""Where studies live: an Optuna journal file by default, or any Optuna storage URL.

``--storage`` takes either

- a file path (or nothing: ``./studies/<study-name>.log``): an Optuna journal file
  (``JournalStorage(JournalFile(path))``, see ``JournalFile``).  It is append-only,
  survives a killed process, can be resumed, and is safe for several processes on one
  machine;
- an Optuna URL: ``sqlite:///path.db``, ``postgresql://...``, ``mysql://...`` (RDB
  storage), ``redis://...`` (journal on Redis) or ``grpc://host:port`` (Optuna's gRPC
  storage proxy).

A journal file is only ever written by appending whole records.  ``open_storage`` refuses
a file that is not a journal (a grid file given by mistake is left byte for byte as it
was); ``JournalFile`` reads past a line that is not a journal record with a warning
naming the line, and refuses to append behind one, saying how to repair the file (see
``JournalFile``).
"""
from __future__ import annotations

import errno
import json
import os
import re
import shlex
import socket
import stat
import tempfile
import time
import uuid
import warnings
from pathlib import Path
from urllib.parse import unquote

import optuna
from optuna.storages.journal import JournalFileBackend

from .errors import (JournalDamagedError, JournalWarning, StorageIOError, StudyNotFoundError,
                     TuningError)

DEFAULT_DIR = Path("studies")
_RDB_SCHEMES = ("sqlite", "postgresql", "postgres", "mysql", "oracle", "mssql")

# Study names become file names (``studies/<name>.log``), so they are plain names.
STUDY_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*")


def check_study_name(name) -> str:
    """``name`` if it is a plain study name; TuningError saying what a name may hold."""
    if not isinstance(name, str) or not STUDY_NAME.fullmatch(name):
        raise TuningError(f"--study-name {name!r}: expected a plain name of letters, digits "
                          f"and - _ . (not starting with '.'), e.g. lab-mlp-2")
    return name


def default_journal_path(study_name: str) -> Path:
    return DEFAULT_DIR / f"{study_name}.log"


def is_url(spec: str) -> bool:
    return "://" in spec


_RDB = ("postgresql", "postgres", "mysql", "oracle", "mssql")


def storage_kind(spec: str | None) -> str:
    """``journal`` (a file path or None), ``sqlite``, ``rdb``, ``grpc``, ``redis`` or ``other``."""
    if spec is None or not is_url(spec):
        return "journal"
    scheme = spec.split("://", 1)[0].split("+", 1)[0].lower()
    if scheme == "sqlite":
        return "sqlite"
    if scheme in _RDB:
        return "rdb"
    if scheme == "grpc":
        return "grpc"
    if scheme in ("redis", "rediss", "unix"):
        return "redis"
    return "other"


SQLITE_REFUSED = (
    "SQLite is not made for several processes writing at once (they fail with 'database is "
    "locked'). For workers on one machine use a journal file: leave --storage out (it is "
    "studies/<study-name>.log) or give a path such as studies/{name}.log. For workers on "
    "several machines use PostgreSQL or MySQL: --storage postgresql://USER:PASSWORD@HOST/DB "
    "(see the README's 'Scaling out'). One process can keep SQLite with `tuning run`.")


def refuse_sqlite(spec: str | None, study_name: str | None) -> None:
    """TuningError for an SQLite URL: several processes cannot share one."""
    if storage_kind(spec) == "sqlite":
        raise TuningError(SQLITE_REFUSED.format(name=study_name or "NAME"))


def describe(spec: str | None, study_name: str | None) -> str:
    """The storage for messages: the journal path, or the URL as ``show_url`` shows it."""
    if spec is None:
        return str(default_journal_path(study_name))
    return show_url(spec)


# -- storage URLs shown to people ---------------------------------------------------------

MASK = "***"
# A query parameter is secret when its name (%-decoded, any case) contains one of these:
# password, passwd, sslpassword, pwd, secret, client_secret, token, api_key, sslkey, auth...
SECRET_PARAM_WORDS = ("pass", "pwd", "secret", "token", "key", "auth", "credential")
_PARAM = re.compile(r"[?&;]([^=&;?#]*)=")
_NEXT_PARAM = re.compile(r"[&;][^=&;?#]*=")
# Secrets shorter than this are hidden inside the URL only, not wherever they occur in a
# message (replacing every "ab" of a text would garble it)
MIN_SCRUB = 4


def secret_spans(url: str) -> list:
    """``[(start, end), ...]``: the parts of ``url`` that are secret, merged and sorted.

    - the password: from the first ``:`` after ``://`` to the **last** ``@`` (a password
      may hold ``/ : @ ? %``, and SQLAlchemy takes ``user:p@ss@host`` apart wrongly, so the
      last ``@`` is taken: too much is hidden rather than a piece of the password shown);
    - the value of every query parameter whose name contains one of
      ``SECRET_PARAM_WORDS`` (``?password=...``, ``&sslpassword=...``, ``;token=...``),
      up to the next ``&name=`` / ``;name=`` or the end (a value may hold ``&`` or ``@``).

    A string without ``://`` (a journal path) has none.
    """
    start = url.find("://")
    if start < 0:
        return []
    start += 3
    spans = []
    at = url.rfind("@", start)
    colon = url.find(":", start, max(at, start))
    if colon >= 0:
        spans.append((colon + 1, at))
    for m in _PARAM.finditer(url, start):
        name = unquote(m.group(1)).lower()
        if any(word in name for word in SECRET_PARAM_WORDS):
            nxt = _NEXT_PARAM.search(url, m.end())
            spans.append((m.end(), nxt.start() if nxt else len(url)))
    merged = []
    for a, b in sorted(spans):
        if a >= b:
            continue
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(b, merged[-1][1]))
        else:
            merged.append((a, b))
    return merged


def show_url(spec: str | None) -> str | None:
    """``spec`` as it may be shown to people: the password and secret query values of a
    URL replaced by ``***``, the rest (scheme, user name, host, port, database, other
    parameters) as given; a journal path (no ``://``) unchanged.

    The one function that renders a storage for output, logs, listings and messages::

        postgresql+psycopg2://tuning:p/w@db:5432/tuning
            -> postgresql+psycopg2://tuning:***@db:5432/tuning
        postgresql://tuning@db/tuning?password=s3&sslmode=require
            -> postgresql://tuning@db/tuning?password=***&sslmode=require

    See ``secret_spans`` for what is hidden (``sqlalchemy.engine.make_url`` is not used
    to render: for ``user:p@ss@host`` it shows ``ss@host`` as the host, and it keeps
    ``?password=``).
    """
    if spec is None:
        return None
    out, pos = [], 0
    for a, b in secret_spans(spec):
        out += [spec[pos:a], MASK]
        pos = b
    out.append(spec[pos:])
    return "".join(out)


_DELIMITERS = re.compile(r"[/@:?&=#;]")


def url_secrets(spec: str | None) -> list:
    """The secret strings of ``spec``, longest first: each secret part as given and
    %-decoded, and their pieces between URL delimiters (``/ @ : ? & = # ;``), which is
    what a driver quotes when it takes a URL apart wrongly (``invalid literal for int():
    'ss@host:1'``)."""
    if not spec:
        return []
    found = set()
    for a, b in secret_spans(spec):
        for text in (spec[a:b], unquote(spec[a:b])):
            found.add(text)
            found.update(_DELIMITERS.split(text))
    found.discard("")
    return sorted(found, key=lambda text: (-len(text), text))


def scrub(text: str, *specs) -> str:
    """``text`` with each storage URL of ``specs`` shown as ``show_url`` shows it, its
    secrets (``url_secrets``, at least ``MIN_SCRUB`` characters) replaced by ``***``
    wherever else they occur (a driver's message, a traceback), and any end of a secret
    after a delimiter, of any length, where an ``@`` follows it (the piece a driver shows
    as part of the host when it splits the URL at the password's own ``@``)."""
    for spec in specs:
        if not spec or show_url(spec) == spec:
            continue
        text = text.replace(spec, show_url(spec))
        for secret in url_secrets(spec):
            if len(secret) >= MIN_SCRUB:
                text = text.replace(secret, MASK)
        # a driver that took "user:p/w@ss@host" apart at the first '@' quotes the rest of
        # the password with the host: 'could not translate host name "ss@host"'
        for tail in _tails(spec):
            text = text.replace(tail + "@", MASK + "@")
    return text


def _tails(spec: str) -> list:
    """The ends of ``spec``'s secrets that follow a URL delimiter, longest first."""
    tails = set()
    for a, b in secret_spans(spec):
        for text in (spec[a:b], unquote(spec[a:b])):
            tails.update(text[m.end():] for m in _DELIMITERS.finditer(text))
    tails.discard("")
    return sorted(tails, key=lambda tail: (-len(tail), tail))


STORAGE_ENV = "OPTUNA_STORAGE"
SECRET_NOTE = (f"(after export {STORAGE_ENV}='<the storage URL>': its password is never "
               f"printed nor put on a command line; see docs/scaling-out.md)")


def storage_option(spec: str | None) -> str:
    """How a printed hint names the storage: `` --storage PATH_OR_URL`` (shell-quoted);
    ``""`` for the default journal, and for a URL holding a secret, which is never
    printed: the hinted command then reads it from ``$OPTUNA_STORAGE``, as every command
    does when ``--storage`` is left out (``storage_note`` says so when that variable
    does not hold it).  ``--storage "$OPTUNA_STORAGE"`` would put the password on the
    command line that ``ps`` shows."""
    if spec is None or show_url(spec) != spec:
        return ""
    return f" --storage {shlex.quote(spec)}"


def storage_note(spec: str | None) -> str:
    """`` (after export OPTUNA_STORAGE=...)`` after a hint that leaves out a secret
    storage (``storage_option``) while ``$OPTUNA_STORAGE`` does not hold it; else ``""``."""
    if spec is None or show_url(spec) == spec or os.environ.get(STORAGE_ENV) == spec:
        return ""
    return " " + SECRET_NOTE


def open_storage(spec: str | None, study_name: str | None, must_exist: bool = False,
                 heartbeat_interval: int | None = None, write: bool = True):
    """An Optuna storage object for ``--storage spec`` (None: the default journal file).

    ``must_exist``: for a journal file, raise ``StudyNotFoundError`` when the file does
    not exist (commands that only read a study; a new journal and its folder are created
    by its first write).  ``heartbeat_interval`` (seconds)
    is passed to RDB storages (Optuna's heartbeat for crash recovery).  ``write``: the
    command will write to the study, so a journal file must be one that can be appended
    to (``JournalFile.check_appendable``); reading commands pass False and only get a
    warning for a damaged line.  Every problem is a ``TuningError`` saying what to do;
    nothing is created or changed before the checks pass.
    """
    if spec is None:
        if not study_name:
            raise TuningError("give --study-name (the default storage is "
                              f"{DEFAULT_DIR}/<study-name>.log) or --storage")
        path = default_journal_path(check_study_name(study_name))
    elif not spec.strip():
        raise TuningError("--storage is empty: give a journal file path (e.g. "
                          "studies/NAME.log) or an Optuna URL (sqlite:///x.db, postgresql://...)")
    elif is_url(spec):
        return _open_url(spec, heartbeat_interval)
    else:
        path = Path(spec)
    if path.is_dir():
        raise TuningError(f"--storage {path}: is a directory; give a journal file path inside "
                          f"it, e.g. {path / ((study_name or 'NAME') + '.log')}")
    check_regular_file(path, "--storage")
    if must_exist and not path.exists():
        raise StudyNotFoundError(
            f"no study storage at {path}" + (f" (no study named {study_name!r} has been run "
                                             f"here)" if spec is None else ""))
    if path.exists():
        check_journal_file(path)
    if write:
        _check_writable(path)
    try:
        backend = JournalFile(os.fspath(path))
        storage = optuna.storages.JournalStorage(backend)
    except OSError as exc:
        raise TuningError(f"cannot open the journal {path}: {exc.strerror or exc}; choose a "
                          f"writable --storage location") from None
    except TuningError:
        raise
    except Exception as exc:  # a record that reads as JSON but that Optuna cannot replay
        raise TuningError(f"cannot read the journal {path}: {type(exc).__name__}: {exc}. "
                          f"It was written by something other than Optuna, or edited") from None
    if write:
        backend.check_appendable()
    return storage


def special_file_kind(path) -> str | None:
    """What ``path`` is when it exists but is not a regular file or folder (a FIFO, a
    device, a socket), else None; symbolic links are followed."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    for test, kind in ((stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return kind
    return None


def check_regular_file(path, option: str = "--storage") -> None:
    """TuningError if ``path`` is a FIFO, a device or a socket: reading one may block for
    ever (a FIFO) or read nothing (``/dev/null``), so it is refused before it is opened."""
    kind = special_file_kind(path)
    if kind is not None:
        raise TuningError(f"{option} {path}: is {kind}, not a regular file; give a journal "
                          f"file path (e.g. studies/NAME.log) or a storage URL")


def _check_writable(path: Path) -> None:
    """TuningError unless this process can append to ``path``, or create it (and its folders).

    The journal and its folder are created by the first append, so the check looks at
    the nearest folder that exists.
    """
    if path.exists():
        if not os.access(path, os.W_OK):
            raise TuningError(f"cannot write the journal {path}: permission denied; choose a "
                              f"writable --storage location")
        return
    problem = folder_problem(path.absolute().parent)
    if problem:
        raise TuningError(f"cannot create the journal {path}: {problem}; choose a writable "
                          f"--storage location")


def folder_problem(folder: Path) -> str | None:
    """Why files cannot be created in ``folder`` (or in the folders it would take), or None.

    Tried for real, with a temporary file in the nearest folder that exists: permission
    bits do not tell (root may write anywhere but a read-only file system or /proc).
    """
    folder = Path(folder)
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir():
        return f"{folder} is a file, not a folder"
    try:
        fd, probe = tempfile.mkstemp(prefix=".tuning-probe-", dir=folder)
    except OSError as exc:
        return f"cannot write into {folder} ({exc.strerror or exc})"
    os.close(fd)
    os.unlink(probe)
    return None


def _open_url(url: str, heartbeat_interval):
    scheme = url.split("://", 1)[0].split("+", 1)[0].lower()
    shown = show_url(url)
    if scheme in _RDB_SCHEMES:
        if scheme == "sqlite":
            _check_sqlite_folder(url)
        kwargs = {}
        if heartbeat_interval is not None:
            kwargs["heartbeat_interval"] = heartbeat_interval
        try:
            return optuna.storages.RDBStorage(url, **kwargs)
        except ImportError as exc:
            raise TuningError(driver_missing(url, exc)) from None
        except Exception as exc:  # SQLAlchemy: server down, wrong password, no database ...
            raise TuningError(database_error(url, exc)) from None
    if scheme in ("redis", "rediss", "unix"):
        try:
            from optuna.storages.journal import JournalRedisBackend  # noqa: PLC0415
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.JournalStorage(JournalRedisBackend(url))
        except ImportError as exc:
            raise TuningError(f"--storage {shown}: the Redis client is missing ({exc}): "
                              f"pip install redis") from None
        except Exception as exc:
            raise TuningError(f"--storage {shown}: cannot reach Redis: "
                              f"{scrub(_first_line(exc), url)}. Check that the server "
                              f"runs") from None
    if scheme == "grpc":
        host, _, port = url.split("://", 1)[1].rstrip("/").rpartition(":")
        if not host or not port.isdigit():
            raise TuningError(f"--storage {shown}: expected grpc://HOST:PORT")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                proxy = optuna.storages.GrpcStorageProxy(host=host, port=int(port))
            proxy.wait_server_ready(timeout=GRPC_CONNECT_TIMEOUT)
        except ImportError as exc:
            raise TuningError(f"--storage {shown}: gRPC is not installed ({exc}): pip install "
                              f"grpcio protobuf (the [distributed] extra)") from None
        except Exception as exc:
            at = f"{host}:{port}" if shown == url else shown
            raise TuningError(
                f"--storage {shown}: no gRPC storage proxy answers at {at} "
                f"({scrub(_first_line(exc), url)}); start one with `python -m tuning "
                f"grpc-proxy --storage URL --port {port}`") from None
        return proxy
    raise TuningError(
        f"--storage {shown}: unknown URL scheme {scheme!r}; expected a journal file path or a "
        f"URL starting with sqlite://, postgresql://, mysql://, redis:// or grpc://")


GRPC_CONNECT_TIMEOUT = 5.0  # seconds to wait for a gRPC storage proxy to answer


def database_error(url: str, exc: Exception) -> str:
    """The message for a database that cannot be opened (SQLAlchemy's first line)."""
    text = _first_line(exc)
    if text.startswith("(") and ") " in text:  # "(psycopg2.OperationalError) connection ..."
        text = text.split(") ", 1)[1]
    return (f"--storage {show_url(url)}: cannot open the database: {scrub(text, url)}. Check "
            f"that the server runs and the URL (user, password, host, port, database) is right")


def _first_line(exc: Exception) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def _check_sqlite_folder(url: str) -> None:
    """SQLite creates the database file, not its folder: say so before SQLAlchemy does."""
    path = url.split("://", 1)[1]
    if not path.startswith("/") or path in ("/", "/:memory:"):
        return
    db = Path(path[1:])  # sqlite:///rel.db -> rel.db; sqlite:////abs.db -> /abs.db
    if str(db.parent) and not db.parent.is_dir():
        raise TuningError(f"--storage {show_url(url)}: the folder {db.parent} does not exist; "
                          f"create it (mkdir -p {db.parent}) or give another path")
    problem = None if db.exists() else folder_problem(db.absolute().parent)
    if problem:
        raise TuningError(f"--storage {show_url(url)}: cannot create {db}: {problem}")


def driver_missing(spec: str, exc: Exception) -> str:
    """What to install when SQLAlchemy finds no driver for ``spec``."""
    scheme = spec.split("://", 1)[0]
    hint = ""
    if scheme in ("postgresql", "postgres"):
        hint = (" SQLAlchemy 2.1 reads postgresql:// as psycopg 3: pip install 'psycopg[binary]',"
                " or name the driver you have: postgresql+psycopg2://...")
    elif scheme.startswith(("postgresql+", "postgres+")):
        hint = f" pip install the driver {scheme.split('+', 1)[1]} (psycopg2-binary for psycopg2)"
    elif scheme.startswith("mysql"):
        hint = " pip install pymysql and write mysql+pymysql://..."
    return f"--storage {scheme}://...: no database driver ({_first_line(exc)}).{hint}"


# -- a storage that fails while trials run -----------------------------------------------

def storage_url(storage) -> str | None:
    """The URL a storage object was opened with (secrets included: never print it), or
    None (a journal file, a gRPC proxy)."""
    for obj in (storage, getattr(storage, "_backend", None)):
        url = getattr(obj, "url", None) or getattr(obj, "_url", None)
        if isinstance(url, str):
            return url
    return None


def storage_label(storage) -> str:
    """The storage object ``storage`` as people know it: the journal file's path, or the
    URL as ``show_url`` shows it (``grpc://HOST:PORT`` for a gRPC proxy)."""
    path = getattr(getattr(storage, "_backend", None), "_file_path", None)
    if path is not None:
        return str(path)
    url = storage_url(storage)
    if url is not None:
        return show_url(url)
    if getattr(storage, "_host", None) is not None:
        return f"grpc://{storage._host}:{storage._port}"
    return type(storage).__name__


def _database_errors() -> tuple:
    """The exception classes of the database and network clients imported so far."""
    import sys  # noqa: PLC0415
    found = []
    if "sqlalchemy" in sys.modules:
        found.append(sys.modules["sqlalchemy"].exc.SQLAlchemyError)
    if "grpc" in sys.modules:
        found.append(sys.modules["grpc"].RpcError)
    if "redis" in sys.modules and hasattr(sys.modules["redis"], "exceptions"):
        found.append(sys.modules["redis"].exceptions.RedisError)
    return tuple(found)


def driver_reason(exc: BaseException) -> str:
    """A database or gRPC error's own words, in one line: ``connection to server at
    "127.0.0.1", port 5432 failed: Connection refused`` (SQLAlchemy's ``(psycopg2.
    OperationalError)`` prefix and its ``[SQL: ...]`` lines left out)."""
    details = getattr(exc, "details", None)
    if callable(details):   # grpc.RpcError
        try:
            text = details()
        except Exception:  # noqa: BLE001 - no details: its first line below
            text = None
        if text:
            return str(text).splitlines()[0]
    text = _first_line(exc)
    if text.startswith("(") and ") " in text:
        text = text.split(") ", 1)[1]
    return text


def storage_failure(exc: BaseException, where: str, url: str | None = None):
    """The ``TuningError`` to stop with when ``exc`` comes from the storage ``where``
    (its name for people, ``storage_label``; ``url``: its URL, whose secrets are
    scrubbed from the driver's words) failing, else None.

    ``exc`` is looked at with the exceptions it was raised from or while handling
    (Optuna turns a failed ``tell`` into ``AssertionError: Should not reach.`` or
    ``UnboundLocalError``, with the storage's error as their context): a
    ``StorageIOError`` (a journal's disk full, permission lost) or an error of
    SQLAlchemy, gRPC or Redis becomes a ``StorageFailedError`` naming the storage and
    the operating system's or driver's reason; another ``TuningError`` of ours
    (``JournalDamagedError``) is returned as it is.  Nothing else is taken for a storage
    failure (a ``BrokenPipeError`` of a closed standard output is not).
    """
    from .errors import StorageFailedError  # noqa: PLC0415
    database = _database_errors()
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, StorageIOError):
            return StorageFailedError(stopped_message(exc.where, exc.reason))
        if isinstance(exc, TuningError):
            return exc
        if database and isinstance(exc, database):
            return StorageFailedError(stopped_message(where, scrub(driver_reason(exc), url)))
        exc = exc.__cause__ or exc.__context__
    return None


def stopped_message(where: str, reason: str) -> str:
    """The one line a run stops with when its storage fails."""
    return (f"the storage {where} failed: {reason}. The run stopped; the trials finished "
            f"before are kept there (run the command again once the storage works; "
            f"--debug shows the traceback)")


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


# -- journal records ----------------------------------------------------------------------

# What each journal operation carries besides "op_code" and "worker_id" (Optuna 5's
# ``JournalOperation`` numbers and the fields its replay reads).  A line that is JSON but
# lacks them would make the replay fail; it is read as "not a journal record".
_RECORD_FIELDS = {
    0: ("study_name", "directions"),                          # CREATE_STUDY
    1: ("study_id",),                                         # DELETE_STUDY
    2: ("study_id", "user_attr"),                             # SET_STUDY_USER_ATTR
    3: ("study_id", "system_attr"),                           # SET_STUDY_SYSTEM_ATTR
    4: ("study_id", "datetime_start"),                        # CREATE_TRIAL
    5: ("trial_id", "param_name", "param_value_internal", "distribution"),  # SET_TRIAL_PARAM
    6: ("trial_id", "state", "values"),                       # SET_TRIAL_STATE_VALUES
    7: ("trial_id", "step", "intermediate_value"),            # SET_TRIAL_INTERMEDIATE_VALUE
    8: ("trial_id", "user_attr"),                             # SET_TRIAL_USER_ATTR
    9: ("trial_id", "system_attr"),                           # SET_TRIAL_SYSTEM_ATTR
    10: (),                                                   # DISCARD_TRIALS (ignored)
}
# Every record starts so: Optuna writes ``json.dumps({"op_code": ..., ...},
# separators=(",", ":"))``, and ``json.dumps`` writes printable ASCII only.
RECORD_START = b'{"op_code":'


def parse_record(line: bytes) -> dict | None:
    """The journal record on ``line`` (with or without its newline), or None if it is not one."""
    try:
        record = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):  # JSONDecodeError is a ValueError
        return None
    if not isinstance(record, dict):
        return None
    op = record.get("op_code")
    if type(op) is not int or op not in _RECORD_FIELDS \
            or not isinstance(record.get("worker_id"), str):
        return None
    if any(name not in record for name in _RECORD_FIELDS[op]):
        return None
    return record


def is_torn_record(tail: bytes) -> bool:
    """Could ``tail`` (the bytes after the last newline) be the start of a record this
    format writes, cut short by a writer that died?  It starts as every record does
    (``RECORD_START``, or is a prefix of it) and holds printable ASCII only (bytes 32 to
    126: what ``json.dumps`` writes).  A complete record lacking only its newline is not
    torn (``tail_kind``)."""
    if not tail:
        return False
    if not (tail.startswith(RECORD_START) or RECORD_START.startswith(tail)):
        return False
    return all(32 <= b < 127 for b in tail)


def tail_kind(tail: bytes) -> str | None:
    """What a last line without newline is: None (there is none), ``"record"`` (a complete
    record whose newline is missing: an editor, a copy tool, a writer that died between
    the two; it is kept, and the next append adds the newline), ``"torn"`` (the start of a
    record cut short, ``is_torn_record``: the next append cuts it off) or ``"foreign"``
    (bytes this format never writes: kept, named, never written behind)."""
    if not tail:
        return None
    if parse_record(tail) is not None:
        return "record"
    return "torn" if is_torn_record(tail) else "foreign"


def _preview(data: bytes, limit: int = 24) -> str:
    """A short, printable view of some bytes, for messages."""
    text = repr(data[:limit])[2:-1]  # bytes repr without b'...': escapes what is not ASCII
    return text + ("..." if len(data) > limit else "")


def check_journal_file(path) -> None:
    """TuningError unless ``path`` (an existing file) is empty or starts with a journal record.

    This is what stops ``--storage grid.json`` from turning a grid file into a journal: a
    file is taken for a journal only if its first line is a journal record.  The file is
    only read.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(1 << 16)
            size = os.fstat(f.fileno()).st_size
    except IsADirectoryError:
        raise TuningError(f"--storage {path}: is a directory; give a journal file path") from None
    except OSError as exc:
        raise TuningError(f"cannot read {path}: {exc.strerror or exc}") from None
    if size == 0:
        return
    newline = head.find(b"\n")
    if newline >= 0 and parse_record(head[:newline + 1]) is not None:
        return
    if newline < 0 and size <= len(head) and tail_kind(head) == "record":
        return  # one record, its newline missing: the next append adds it
    if newline < 0 and size <= len(head) and is_torn_record(head):
        raise TuningError(
            f"{path} holds no complete journal record, only the start of one ({size} bytes: "
            f"a run killed while it created its study?). tuning leaves it as it is; delete it "
            f"to start that study again, or give another --storage path")
    raise TuningError(
        f"{path} is not an Optuna journal file (it starts with '{_preview(head)}'); tuning "
        f"leaves it unchanged. Give another --storage path (a new file, e.g. "
        f"studies/NAME.log, or an existing journal)")


def _line_ranges(numbers) -> list:
    """``[3, 4, 5, 9]`` -> ``[(3, 5), (9, 9)]``: runs of consecutive line numbers."""
    out = []
    for n in sorted(numbers):
        if out and out[-1][1] == n - 1:
            out[-1][1] = n
        else:
            out.append([n, n])
    return [tuple(r) for r in out]


def damage_message(path: str, bad_lines: dict, foreign_tail) -> str:
    """What is wrong with a journal and the commands that repair it.

    ``bad_lines``: ``{line number: first bytes}`` of complete lines that are not records;
    ``foreign_tail``: ``(offset, bytes)`` of a last line without newline that tuning did
    not write, or None.
    """
    problems, commands = [], []
    if foreign_tail is not None:
        offset, tail = foreign_tail
        problems.append(f"it ends with {len(tail)} bytes that are not a journal record "
                        f"('{_preview(tail)}')")
        commands.append(f"truncate -s {offset} {path}")
    if bad_lines:
        ranges = _line_ranges(bad_lines)
        names = ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in ranges)
        one = len(bad_lines) == 1
        problems.append(f"line{'' if one else 's'} {names} "
                        f"{'is not a journal record' if one else 'are not journal records'} "
                        f"('{_preview(bad_lines[min(bad_lines)])}')")
        script = ";".join(f"{a}d" if a == b else f"{a},{b}d" for a, b in ranges)
        commands.append(f"sed -i '{script}' {path}")
    it = "them" if len(bad_lines) + (foreign_tail is not None) > 1 else "it"
    return (f"journal {path}: {'; '.join(problems)}. tuning reads past {it} but does not "
            f"write behind {it} (no Optuna reader could read the file afterwards).\n"
            f"To repair it, keep a copy (cp {path} {path}.bak), then: {' && '.join(commands)}")


class JournalFile(JournalFileBackend):
    """Optuna's journal file backend with ``JournalFileLock``, a reader that skips damage,
    and appends that never make the file unreadable.

    Reading: a complete line that is not a journal record (text or binary junk appended
    by something else, a half record glued to another by a plain Optuna writer) is
    skipped with a ``JournalWarning`` naming the line; the records around it are read as
    usual.  Optuna's own reader stops with ``JSONDecodeError``/``UnicodeDecodeError``
    at such a line.  A last line without newline is read as a record when it is one
    (``tail_kind``: a complete record whose newline is missing).

    Writing: a writer killed inside ``write`` can leave a partial last line; appended to
    as it is, the next record would be glued onto it.  So every append, under the lock
    (no live writer is then in the middle of one), first checks what other processes
    wrote since it last looked (``tail_kind`` of the last line): a torn last record of
    this format is cut back to the last complete line (what the dead writer never
    finished, no reader has ever seen); a complete record lacking only its newline gets
    its newline (nothing is cut: its trial stays as it was); anything else that is not a
    record (a foreign line anywhere, a foreign tail) stops the append with
    ``JournalDamagedError``, which says how to repair the file.  Nothing but a last line
    that does not parse as a record is ever removed.

    Failures: an operating-system error while reading or writing (disk full, permission
    lost, the file's folder removed) is raised as ``StorageIOError`` naming the file and
    the reason; what was written before stays (an append cut short by a full disk is a
    torn record, cut off by the next append).
    """

    def __init__(self, file_path: str, grace_period: float = 30.0) -> None:
        # Optuna's __init__ is not called: it creates the file at once, and a command that
        # fails its checks (bad settings, missing data) should leave nothing behind.  The
        # file and its folder are created by the first append.
        self._file_path = file_path
        self._lock = JournalFileLock(file_path, grace_period)
        # record number -> (byte offset to read it from, its line number - 1); skipped
        # lines have no record number, so Optuna's numbering counts records only
        self._offsets = {0: (0, 0)}
        self._warned = set()
        self._checked_end = 0      # bytes known to hold only complete records
        self._checked_lines = 0
        # offsets just after a record read without its newline: the newline an append
        # adds there later is not a line of its own
        self._unterminated = set()

    # reading

    def read_logs(self, log_number_from: int):
        try:
            yield from self._read_logs(log_number_from)
        except OSError as exc:
            raise StorageIOError(self._file_path, exc.strerror or str(exc), "read") from exc

    def _read_logs(self, log_number_from: int):
        if not os.path.exists(self._file_path):  # nothing written yet
            return
        with open(self._file_path, "rb") as f:
            size = os.fstat(f.fileno()).st_size  # lines appended meanwhile: next time
            number, (pos, lineno) = ((log_number_from, self._offsets[log_number_from])
                                     if log_number_from in self._offsets else (0, (0, 0)))
            f.seek(pos)
            while pos < size:
                line = f.readline(size - pos)
                if line == b"\n" and pos in self._unterminated:
                    pos += 1   # the newline added after a record already read
                    continue
                terminated = line.endswith(b"\n")
                kind = "line" if terminated else tail_kind(line)
                if kind != "line" and kind != "record":
                    # the last line: a record being written now, or torn by a dead writer
                    # (cut by the next append), or foreign bytes (named, never cut)
                    if kind == "foreign":
                        self._warn(("tail", pos),
                                   f"journal {self._file_path}: skipped {len(line)} bytes at "
                                   f"its end that are not a journal record "
                                   f"('{_preview(line)}')")
                    break
                pos += len(line)
                lineno += 1
                record = parse_record(line)
                if record is None:
                    self._warn(("line", lineno),
                               f"journal {self._file_path}: skipped line {lineno}, which is "
                               f"not a journal record ('{_preview(line)}')")
                    continue
                if not terminated:
                    self._unterminated.add(pos)
                self._offsets.setdefault(number + 1, (pos, lineno))
                if number >= log_number_from:
                    yield record
                number += 1

    def _warn(self, key, text: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            warnings.warn(text, JournalWarning, stacklevel=2)

    # writing

    def scan_for_damage(self, start: int = 0, start_line: int = 0) -> "Scan":
        """What the file holds from byte ``start`` (line ``start_line``) on; only reads."""
        bad, tail, tail_at, foreign = {}, None, None, None
        pos, lineno = start, start_line
        if os.path.exists(self._file_path):
            with open(self._file_path, "rb") as f:
                f.seek(pos)
                for line in f:
                    if not line.endswith(b"\n"):
                        tail, tail_at = tail_kind(line), pos
                        if tail == "record":
                            pos += len(line)
                            lineno += 1
                        elif tail == "foreign":
                            foreign = (pos, line)
                        break
                    pos += len(line)
                    lineno += 1
                    if parse_record(line) is None:
                        bad[lineno] = line[:60]
        return Scan(bad=bad, foreign=foreign, torn=tail_at if tail == "torn" else None,
                    unterminated=tail == "record", end=pos, lines=lineno)

    def check_appendable(self) -> None:
        """JournalDamagedError, with the repair, if an append would go behind damage."""
        scan = self.scan_for_damage()
        if scan.bad or scan.foreign:
            raise JournalDamagedError(damage_message(self._file_path, scan.bad, scan.foreign))

    def append_logs(self, logs: list) -> None:
        data = "".join(json.dumps(log, separators=(",", ":")) + "\n" for log in logs).encode()
        try:
            folder = os.path.dirname(self._file_path)
            if folder:
                os.makedirs(folder, exist_ok=True)
            self._lock.acquire()
        except OSError as exc:
            raise StorageIOError(self._file_path, exc.strerror or str(exc)) from exc
        try:
            scan = self.scan_for_damage(self._checked_end, self._checked_lines)
            if scan.bad or scan.foreign:
                raise JournalDamagedError(damage_message(self._file_path, scan.bad,
                                                         scan.foreign))
            if scan.torn == 0:  # nothing but a torn record: never empty a file (see open_storage)
                raise JournalDamagedError(
                    f"journal {self._file_path} holds no complete record, only the start of "
                    f"one; tuning leaves it as it is. Delete it to start again")
            if scan.torn is not None:
                _truncate(self._file_path, scan.torn)
            if scan.unterminated:   # a complete last record lacking its newline: add it
                data = b"\n" + data
            _append(self._file_path, data)
            self._checked_end = scan.end + len(data)
            self._checked_lines = scan.lines + len(logs)
        except OSError as exc:
            raise StorageIOError(self._file_path, exc.strerror or str(exc)) from exc
        finally:
            try:
                self._lock.release()
            except OSError as exc:
                raise StorageIOError(self._file_path, exc.strerror or str(exc)) from exc


class Scan:
    """What ``JournalFile.scan_for_damage`` found: ``bad`` (``{line number: first
    bytes}`` of complete lines that are not records), ``foreign`` (``(offset, bytes)`` of
    a last line without newline that tuning did not write, or None), ``torn`` (offset of a
    torn last record, or None), ``unterminated`` (the last line is a complete record
    without its newline), ``end``/``lines`` (where the complete lines end, that record
    included)."""

    def __init__(self, bad, foreign, torn, unterminated, end, lines):
        self.bad, self.foreign, self.torn = bad, foreign, torn
        self.unterminated, self.end, self.lines = unterminated, end, lines


def _write_chunk(fd: int, data) -> int:
    """One ``os.write`` (a seam for tests that simulate a full disk)."""
    return os.write(fd, data)


def _append(path: str, data: bytes) -> None:
    """Append ``data`` to ``path`` (created if missing) and fsync; a short write is
    continued, an error (a full disk) raised with what was written left in place."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        view = memoryview(data)
        while view:
            view = view[_write_chunk(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


def _truncate(path: str, size: int) -> None:
    with open(path, "rb+") as f:
        f.truncate(size)
        f.flush()
        os.fsync(f.fileno())
