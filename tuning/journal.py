"""The journal file: Optuna's append-only log of a study, written safely by many processes.

``JournalFile`` is the backend ``tuning.storage.open_storage`` gives a journal path
(``JournalStorage(JournalFile(path))``).  It appends whole records under a lock
(``JournalFileLock``) and reads past a line that is not a journal record with a warning
naming the line; it refuses to append behind one, and ``damage_message`` says how to
repair the file.  ``check_journal_file`` refuses a file that is not a journal before
anything is written to it (a grid file given by mistake is left byte for byte as it
was).
"""
from __future__ import annotations

import errno
import json
import os
import socket
import stat
import time
import uuid
import warnings
from pathlib import Path

from optuna.storages.journal import JournalFileBackend

from .errors import JournalDamagedError, JournalWarning, StorageIOError, TuningError

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
