"""``python -m tuning`` (or the ``tuning`` console script): run, inspect and use studies.

    python -m tuning run --space lab-mlp --n-trials 20 --study-name lab-mlp-demo
    python -m tuning best --study-name lab-mlp-demo [--json]
    python -m tuning trials --study-name lab-mlp-demo [--csv | --json]
    python -m tuning enqueue --study-name lab-mlp-demo --params '{"learn_rate": 0.001}'
    python -m tuning plot --study-name lab-mlp-demo --out studies/lab-mlp-demo-plots
    python -m tuning retrain --study-name lab-mlp-demo --out studies/lab-mlp-demo-model

Several objectives: ``run --objectives error,params`` (or ``error,latency``) makes a
multi-objective study (no pruning); ``best`` then lists its Pareto front, ``plot`` adds
``pareto_front.png`` and ``retrain --trial N`` retrains the chosen trial.

Scaling out: ``create``, ``worker``, ``fail-stale``, ``grpc-proxy`` and ``run --workers K``.

Each command is a module of ``tuning.commands`` (``tuning/commands/run.py`` is ``run``,
its options and what it does); options several commands take are defined once, in
``tuning.commands.options``.  This module only builds the parser from them and turns
what goes wrong into one clear line.  Every command that runs trials runs them with one
engine, the worker loop ``tuning.workers.run_worker``: ``run`` in its own process is
that loop with one worker.

A study lives in ``./studies/<study-name>.log`` (an Optuna journal file) unless
``--storage`` names another file or an Optuna URL.  ``run`` on an existing study
continues it with the settings stored in it: ``--n-trials N`` runs N more trials in this
session; ``--total T`` runs until the study holds T finished (complete or pruned)
trials, whichever session or process ran them.  Ctrl-C marks the trial in progress
FAIL, queues its configuration again (the next ``run`` runs it first), keeps every
finished trial, and exits with status 130.

Every error is one or two lines on standard error saying what went wrong and what to
do, with exit status 1 (2 for a usage error); ``--debug`` (anywhere on the command line)
adds the traceback.  A storage that fails under a command (disk full, database gone) is
one line naming it and the reason.  No message or traceback shows the password of a
storage URL (``tuning.storage.show_url``, ``scrub``).  A study is stored only once its
settings, storage and data (for ``run``) or values (for ``enqueue``) have been checked.
"""
from __future__ import annotations

import argparse
import os
import sys
import traceback
import warnings

import optuna

from . import commands
from .commands.enqueue import check_params, parse_params  # noqa: F401 - public names
from .commands.options import (EXIT_BROKEN_PIPE, EXIT_INTERRUPTED,  # noqa: F401
                               STUDY_OPTIONS, check_out_dir, err)
from .commands.run import silence
from .errors import JournalWarning, TuningError
from .interrupts import forget_python_interrupt
from .storage import STORAGE_ENV, describe, scrub, storage_failure


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tuning", description="Optuna studies over minidl models on Fashion-MNIST.",
        epilog="Run `python -m tuning COMMAND --help` for a command's options.")
    parser.add_argument("--debug", action="store_true",
                        help="on an error, show the full traceback (may come anywhere on the "
                        "command line)")
    parser.add_argument("--version", action="version", version=_version_text())
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_commands(sub)
    return parser


def _version_text() -> str:
    from importlib import metadata  # noqa: PLC0415
    try:
        ours = metadata.version("minidl-tuning")
    except metadata.PackageNotFoundError:   # run from a source tree that is not installed
        ours = "(not installed)"
    return f"tuning {ours} (Optuna {optuna.__version__})"


def _show_warning(message, category, filename, lineno, file=None, line=None):
    """Warnings as one line on stderr (``warning: ...``), not Python's two-line format."""
    err(f"warning: {message}")


def main(argv=None) -> int:
    """Entry point; returns the exit status (0 ok, 1 error, 2 usage, 130 interrupted,
    141 standard output closed by its reader)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    args = build_parser().parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        warnings.simplefilter("always", JournalWarning)  # each skipped line, every time
        status = _run(args, debug)
    if status == EXIT_INTERRUPTED:
        # the interrupt may have passed through an exec() of a string on its way, after
        # which CPython would end the process by SIGINT instead of with this status
        forget_python_interrupt()
    return status


def _run(args, debug: bool) -> int:
    """Run the parsed command; what goes wrong becomes one line and an exit status."""
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        err(f"\ntuning {args.command}: interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `tuning trials | head`: the reader left; say nothing more
        silence(sys.stdout)
        return EXIT_BROKEN_PIPE
    except Exception as exc:  # noqa: BLE001 - every error becomes one clear line
        # a storage URL's password never reaches the screen, whatever printed it
        urls = (getattr(args, "storage", None), os.environ.get(STORAGE_ENV))
        if debug:
            err(scrub(traceback.format_exc().rstrip("\n"), *urls))
        failure = storage_failure(exc, _where(args), getattr(args, "storage", None))
        if failure is not None:
            exc = failure
        err(scrub(f"tuning {args.command}: error: {_describe_error(exc)}", *urls))
        if not _is_user_error(exc) and not debug:
            err("(an unexpected error: run the command again with --debug for the "
                "traceback)")
        return 1


def _is_user_error(exc: Exception) -> bool:
    """An error that says what to do (ours, a missing file, a damaged data file), as
    opposed to an unexpected one, after which ``--debug`` is suggested."""
    from minidl.data.idx import IDXError  # noqa: PLC0415

    return isinstance(exc, (TuningError, FileNotFoundError, IDXError))


def _where(args) -> str:
    """The storage a command was given, for messages (``tuning.storage.describe``)."""
    spec, name = getattr(args, "storage", None), getattr(args, "study_name", None)
    if spec is None and not name:
        return "of this command"
    return describe(spec, name)


def _describe_error(exc: Exception) -> str:
    """``exc`` in one line: the message of our own errors, type and first line otherwise."""
    text = str(exc).strip()
    if isinstance(exc, TuningError):
        return text
    # minidl.data.DataNotFoundError says how to get the data; OSErrors name their file
    if isinstance(exc, FileNotFoundError) and type(exc) is not FileNotFoundError:
        return text
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    lines = text.splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}".rstrip(": ")
