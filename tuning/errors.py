"""The errors (and the one warning) of the ``tuning`` package, in one place.

``python -m tuning`` prints a ``TuningError``'s message as one line and exits with
status 1; any other exception is reported as unexpected (see ``tuning.cli``).

- ``TuningError``: a user-facing error, its message says what was expected.
- ``StudyNotFoundError``: no study of that name (also a ``LookupError``).
- ``StudyExistsError``: creating a study whose name is taken.
- ``JournalDamagedError``: a journal file holds lines that are not records; nothing is
  appended to it (``tuning.storage``).
- ``StorageIOError``: reading or writing a journal file failed (disk full, permission
  lost, a file that vanished); ``reason`` is the operating system's word for it.
- ``StorageFailedError``: the storage failed while trials ran (``tuning.workers``): one
  line naming the storage (its password masked) and the reason.
- ``WorkerInterrupted``: Ctrl-C or SIGTERM stopped the worker loop (``tuning.workers``).
- ``JournalWarning``: a journal line that is not a record was skipped while reading.

The names are also importable from where they used to live (``tuning.storage``,
``tuning.study``, ``tuning.workers``).
"""
from __future__ import annotations


class TuningError(Exception):
    """A user-facing error: the CLI prints its message and exits with status 1."""


class StudyNotFoundError(TuningError, LookupError):
    """No study of the given name in the storage (or no storage at all)."""


class StudyExistsError(TuningError):
    """``create_study`` found a study of that name already in the storage."""


class JournalDamagedError(TuningError):
    """A journal file holds lines that are not journal records: nothing is appended to it."""


class StorageIOError(TuningError):
    """Reading or writing a journal file failed: ``where`` (the file), ``reason`` (the
    operating system's message, e.g. "No space left on device")."""

    def __init__(self, where: str, reason: str, doing: str = "write"):
        super().__init__(f"cannot {doing} the journal {where}: {reason}")
        self.where = where
        self.reason = reason


class StorageFailedError(TuningError):
    """The study's storage failed while trials ran: the run stopped, finished trials stay."""


class WorkerInterrupted(Exception):
    """Ctrl-C/SIGTERM stopped the worker loop.

    ``trial``: the number of the trial it was running (marked FAIL), or None;
    ``requeued``: whether that trial's configuration was queued again; ``note``: why
    not, when it was not (it was retried too often already).
    """

    def __init__(self, trial, requeued: bool = False, note: str = ""):
        super().__init__(trial)
        self.trial = trial
        self.requeued = requeued
        self.note = note


class JournalWarning(UserWarning):
    """A journal line that is not a record was skipped while reading (the CLI prints it)."""
