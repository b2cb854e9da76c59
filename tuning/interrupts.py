"""Ctrl-C and SIGTERM: how a command that trains stops, and why it never misses one.

``interrupt_signals()`` is the one place signals are handled.  Inside it, the first
SIGINT or SIGTERM raises ``KeyboardInterrupt`` at once (as Python's own Ctrl-C does, so
loading data or compiling a kernel stops promptly too) and is *remembered*; repeats are
ignored, so the clean-up after the first (failing and re-queueing the trial) is not cut
short.  The command catches the ``KeyboardInterrupt``, cleans up and exits with status
130.

Two ways an asynchronous ``KeyboardInterrupt`` goes wrong, both seen in this project's
tests (a signal sent while a worker imports SciPy for Numba's first compilation), and
what this module does about each:

1. **Swallowed.**  When the signal lands while Python runs a weak-reference callback or
   a ``__del__`` (the import system's module locks use one), Python prints "Exception
   ignored in ..." and carries on: the interrupt is lost, and with repeats ignored the
   worker would run trials for ever.  ``checkpoint()`` raises a remembered interrupt
   again; the worker loop calls it before every trial and training calls it after every
   epoch (``tuning.objective.train_config``), so a swallowed interrupt stops the work
   within one epoch.
2. **Remembered by CPython.**  A ``KeyboardInterrupt`` that passes through ``exec`` or
   ``eval`` of a string (``collections.namedtuple`` and SciPy's imports use them) sets a
   flag in CPython (``_Py_UnhandledKeyboardInterrupt``, in ``Python/pythonrun.c``) even
   when the exception is caught later; at exit CPython then kills the process with
   SIGINT, so the exit status 130 the command returned is lost (a parent sees -2).
   ``forget_python_interrupt()`` clears that flag (an ``exec`` of an empty string resets
   it); the CLI calls it after a command that was interrupted.
"""
from __future__ import annotations

import contextlib
import signal
import threading

# the signal received inside ``interrupt_signals`` (None: none yet)
_received: dict[str, int | None] = {"signum": None}


def _on_signal(signum, _frame):
    if _received["signum"] is not None:
        return                      # a repeat: the first one's clean-up runs undisturbed
    _received["signum"] = signum
    raise KeyboardInterrupt


@contextlib.contextmanager
def interrupt_signals(signals=(signal.SIGINT, signal.SIGTERM)):
    """Inside: the first of ``signals`` raises KeyboardInterrupt and is remembered
    (``interrupted``, ``checkpoint``); repeats are ignored.  On leaving, the previous
    handlers come back and the memory is cleared.  Outside the main thread (where
    handlers cannot be set) it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _received["signum"] = None
    previous = {s: signal.signal(s, _on_signal) for s in signals}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        _received["signum"] = None


def interrupted() -> int | None:
    """The signal received inside ``interrupt_signals`` so far, or None."""
    return _received["signum"]


def checkpoint() -> None:
    """Raise KeyboardInterrupt if a signal was received (see the module's point 1): a
    place where stopping is safe calls this, so an interrupt Python swallowed is not
    lost."""
    if _received["signum"] is not None:
        raise KeyboardInterrupt


def forget_python_interrupt() -> None:
    """Clear CPython's memory of a KeyboardInterrupt that passed through ``exec`` of a
    string (see the module's point 2), so the exit status the command returns is the one
    the process ends with.  CPython resets the flag at the start of every ``exec`` of a
    string, and an empty one raises nothing that would set it again."""
    exec("")  # noqa: S102 - an empty string: nothing runs
