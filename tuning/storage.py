"""Where studies live: an Optuna journal file by default, or any Optuna storage URL.

``--storage`` takes either

- a file path (or nothing: ``./studies/<study-name>.log``): an Optuna journal file
  (``JournalStorage(JournalFile(path))``, see ``JournalFile``).  It is append-only,
  survives a killed process, can be resumed, and is safe for several processes on one
  machine;
- an Optuna URL: ``sqlite:///path.db``, ``postgresql://...``, ``mysql://...`` (RDB
  storage), ``redis://...`` (journal on Redis) or ``grpc://host:port`` (Optuna's gRPC
  storage proxy).

A journal file is only ever written by appending whole records (``tuning.journal``).
``open_storage`` refuses a file that is not a journal (a grid file given by mistake is
left byte for byte as it was); ``JournalFile`` reads past a line that is not a journal
record with a warning naming the line, and refuses to append behind one, saying how to
repair the file.

Besides opening storages, this module renders them for people (``show_url``, ``scrub``:
no password is ever shown) and turns a storage that fails under a command into one
clear line (``storage_failure``).
"""
from __future__ import annotations

import os
import re
import shlex
import stat
import tempfile
import warnings
from pathlib import Path
from urllib.parse import unquote

import optuna

from .errors import StorageIOError, StudyNotFoundError, TuningError
from .journal import JournalFile, check_journal_file

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
    text = driver_reason(exc)   # "(psycopg2.OperationalError) connection ...": its words
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
    # Optuna re-raises the driver's ImportError as "Failed to import DB access module...";
    # the driver's own error (which module is missing) is its cause
    cause = exc.__cause__ if isinstance(exc.__cause__, ImportError) else exc
    return f"--storage {scheme}://...: no database driver ({_first_line(cause)}).{hint}"


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
