"""``tuning run``: create or continue a study and run trials.

In this process (the default), ``run`` is the worker loop (``tuning.workers.run_worker``)
with one worker: the engine of ``tuning worker`` too, so a plain ``run`` claims its
trials, records who runs them, fails the trials of dead processes and re-queues an
interrupted trial exactly as workers do.  ``--workers K`` starts K ``tuning worker``
processes on the study's storage instead and prints the trials they finish.

The budget: ``--n-trials N`` runs N more trials in this session (pruned and failed ones
count); ``--total T`` runs until the study holds T finished (complete + pruned) trials,
whoever ran them, and never more; ``--timeout S`` starts no new trial after S seconds;
a grid study without them runs until its grid is done.  Ctrl-C (or SIGTERM) marks the
running trial FAIL, queues its configuration again and exits with status 130.
"""
from __future__ import annotations

import os
import sys
import time

from .. import report, workers
from ..argtypes import positive_float, positive_int
from ..errors import TuningError, WorkerInterrupted
from ..interrupts import interrupt_signals
from ..storage import (STORAGE_ENV, default_journal_path, describe, open_storage,
                       refuse_sqlite, storage_note, storage_option)
from ..study import create_or_open, find_study, grid_size, make_objective, settings_text
from . import options
from .worker import interrupted_text

NAME = "run"
HELP = "create or continue a study and run trials"
DESCRIPTION = (
    "Create the study (or continue it, with the settings stored in it) and run trials, "
    "printing one line per finished trial and the best trial at the end. --n-trials N runs "
    "N more trials in this session (pruned and failed ones count); --total T runs until the "
    "study holds T complete+pruned trials, whoever ran them. Ctrl-C marks the running trial "
    "FAIL and exits with status 130; run again to continue.")
POLL_SECONDS = 0.5  # how often `run --workers` reads the storage for finished trials


def add_arguments(parser) -> None:
    options.add_study_location(parser)
    options.add_study_settings(parser)
    options.add_running(parser)
    parser.add_argument("--n-trials", type=positive_int, metavar="N",
                        help="run N more trials in this session")
    parser.add_argument("--total", type=positive_int, metavar="T",
                        help="stop when the study has T complete+pruned trials in all")
    parser.add_argument("--timeout", type=positive_float, metavar="SECONDS",
                        help="start no new trial after this many seconds")
    parser.add_argument("--workers", type=positive_int, metavar="K",
                        help="run the trials in K local worker processes sharing the study's "
                        "storage (each gets cores // K threads unless --threads is given)")
    options.add_heartbeat(parser)


def run(args) -> int:
    name = options.new_study_name(args)
    if args.workers is None:
        options.apply_threads(args)
        # PostgreSQL/MySQL: with Optuna's heartbeat, as a worker's (SQLite is fine here)
        storage = workers.open_worker_storage(args.storage, name, args.heartbeat,
                                              must_exist=False, sqlite=True)
    else:
        if args.workers > 1:
            refuse_sqlite(args.storage, name)
        storage = open_storage(args.storage, name)
    given = options.study_options(args)
    study, settings = find_study(storage, name, given)   # nothing written yet
    options.refuse_population(study)
    if args.n_trials is None and args.total is None and args.timeout is None \
            and settings.sampler != "grid":
        raise TuningError("give --n-trials N (N more trials), --total T (until the study has "
                          "T finished trials) or --timeout SECONDS")
    settings.check_data_sizes()
    if args.workers is None:
        return _run_here(args, name, storage, study, settings, given)
    return _run_workers(args, name, storage, study, settings, given)


def resume_command(args, name: str, total: int | None) -> str:
    """The command that continues this run after an interruption."""
    cmd = f"{report.tuning_command()} run"
    if args.workers is not None:
        cmd += f" --workers {args.workers}"
    cmd += f" --study-name {name}"
    cmd += storage_option(args.storage or None)
    return (cmd + (f" --total {total}" if total is not None else " --n-trials N")
            + storage_note(args.storage or None))


# -- in this process: the worker loop with one worker -------------------------------------

class _Output:
    """Prints that survive the reader leaving: ``tuning run ... | head -3``.

    When a stream's reader has gone (``BrokenPipeError``), later writes to it are
    dropped and ``broken`` asks the worker loop to stop after the trial in progress,
    which ends and is stored as usual (a broken pipe inside the objective would
    otherwise fail it).
    """

    def __init__(self):
        self.broken = False

    def print(self, text: str, stream=None) -> None:
        stream = stream or sys.stdout
        if self.broken:
            return
        try:
            print(text, file=stream, flush=True)
        except BrokenPipeError:
            self.broken = True
            silence(stream)

    def err(self, text: str) -> None:
        self.print(text, sys.stderr)


def silence(stream) -> None:
    """Point ``stream``'s file descriptor at /dev/null (so Python's exit flush is quiet)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # not a real file (pytest's capture): nothing to do
        pass


def _run_here(args, name, storage, study, settings, given) -> int:
    where = describe(args.storage, name)
    out = _Output()
    objective = {}

    def load_data():
        tty = sys.stderr.isatty() and not args.quiet
        t0 = time.perf_counter()
        objective["f"] = make_objective(settings, device=args.device, progress=tty,
                                        log=None if args.quiet else out.err)
        objective["line"] = (f"data: {len(objective['f'].train)} training / "
                             f"{len(objective['f'].val)} validation images "
                             f"({time.perf_counter() - t0:.1f}s to load)")

    if study is None:
        # a new study is stored only once its data has loaded (an IDX error, a size
        # larger than the data: nothing is left behind)
        load_data()
        study, settings = create_or_open(storage, name, settings, given, 0)
    # a trial left RUNNING by a process of this machine that died (SIGKILL, out of memory,
    # power) is marked FAIL and its configuration queued again, to run first
    for trial, action, why in workers.fail_stale(study):
        if action == "failed":
            out.print(f"trial {trial.number}: its process died ({why}); marked FAIL and "
                      f"queued again")
    n_before = len(study.get_trials(deepcopy=False))
    done = len(study.get_trials(deepcopy=False, states=report.FINISHED_OK))
    train_size = "all" if settings.train_size is None else settings.train_size
    verb = f"continuing study {name!r}: {done} finished trials," if n_before else \
        f"new study {name!r}"
    out.print(f"{verb} in {where}: space {settings.space}, sampler {settings.sampler}, "
              f"pruner {settings.pruner}, {settings.epochs} epochs, train {train_size} / val "
              f"{settings.val_size} images, seed {settings.seed}; {n_before} trials so far "
              f"({done} finished)")
    if settings.multi_objective:
        out.print(f"objectives: {', '.join(settings.metric_names)} (all minimized; `best` "
                  f"lists the Pareto front); pruning is off: Optuna cannot prune a study "
                  f"with several objectives")
    names = report.metric_names(study)

    # The budget: this session's trials (--n-trials, and what --total still misses) and
    # the study's finished trials (--total; a grid study alone: its grid's size).
    n_trials, target = args.n_trials, args.total
    grid = settings.sampler == "grid" and target is None and n_trials is None \
        and args.timeout is None
    if grid:
        target = grid_size(settings)
    if target is not None:
        missing = target - done
        if missing <= 0:
            limit = f"its grid of {target} points" if grid else f"--total {target}"
            out.print(f"the study already has {done} finished trials ({limit}); nothing to run")
            n_trials = 0
        else:
            n_trials = missing if n_trials is None else min(n_trials, missing)
    if settings.sampler == "grid":
        out.print(f"grid of {grid_size(settings)} points: {settings.grid['axes']}")

    if n_trials != 0 and not out.broken:
        if "f" not in objective:
            load_data()
        out.print(objective["line"])
        counted = []
        started = time.perf_counter()

        def print_trial(trial):
            if not str(trial.user_attrs.get("stop_reason", "")).startswith(
                    workers.NOT_STARTED):
                counted.append(trial.number)
            out.print(report.trial_line(trial, names) + "  " + report.progress_text(
                len(counted), n_trials, time.perf_counter() - started))

        try:
            with interrupt_signals():
                workers.run_worker(study, objective["f"], max_trials=target, n_trials=n_trials,
                                   timeout=args.timeout, identity=workers.worker_identity(),
                                   on_trial=print_trial, log=out.print,
                                   on_wait=None if args.quiet else out.err,
                                   should_stop=lambda: out.broken)
        except WorkerInterrupted as exc:
            what = interrupted_text(exc)
            if exc.requeued:
                what += " (the next run runs it first)"
            done = len(study.get_trials(deepcopy=False, states=report.FINISHED_OK))
            options.err(f"\ninterrupted: {what}; the study's {done} finished trials are kept "
                        f"in {where}.\ncontinue with: {resume_command(args, name, args.total)}")
            return options.EXIT_INTERRUPTED
        if out.broken:
            return options.EXIT_BROKEN_PIPE
        out.print(f"ran {len(counted)} trials in {time.perf_counter() - started:.1f}s")
    if out.broken:
        return options.EXIT_BROKEN_PIPE
    try:
        report.print_closing(study, settings, name, args.storage)
    except BrokenPipeError:
        silence(sys.stdout)
        return options.EXIT_BROKEN_PIPE
    return 0


# -- --workers K: K worker processes on this machine ---------------------------------------

def _run_workers(args, name, storage, study, settings, given) -> int:
    """K ``worker`` processes on this machine, with combined progress."""
    k = args.workers
    if study is None:
        from ..data import check_data  # noqa: PLC0415 - reads the data files
        check_data()
        study, settings = create_or_open(storage, name, settings, given, 0)
    where = describe(args.storage, name)
    trials = study.get_trials(deepcopy=False)
    done = sum(1 for t in trials if t.state in report.FINISHED_OK)
    if args.total is not None:
        target = args.total if args.n_trials is None else min(args.total, done + args.n_trials)
    elif args.n_trials is not None:
        target = done + args.n_trials
    elif settings.sampler == "grid":
        target = grid_size(settings)
    else:  # --timeout alone
        target = None
    threads = args.threads or workers.default_threads(k)
    print(f"study {name!r} in {where}: {settings_text(settings)}; {len(trials)} trials so far "
          f"({done} finished)", flush=True)
    if target is not None and done >= target:
        print(f"the study already has {done} finished trials (target {target}); nothing to run")
        return _summary(study, settings, name, args, {}, 0.0)
    print(f"starting {k} workers with {threads} thread{'s' * (threads > 1)} each"
          + (f", until the study has {target} finished trials" if target is not None else "")
          + (f", for at most {args.timeout:g}s" if args.timeout is not None else ""), flush=True)

    # The storage reaches the workers in their environment, never on their command line
    # (which any user's `ps` shows): a URL may hold a password.
    command = [sys.executable, "-m", "tuning", "worker",
               "--study-name", name, "--threads", str(threads), "--device", args.device,
               "--heartbeat", str(args.heartbeat), "--quiet"]
    if target is not None:
        command += ["--max-trials", str(target)]
    if args.timeout is not None:
        command += ["--timeout", str(args.timeout)]
    env = {STORAGE_ENV: args.storage if args.storage else str(default_journal_path(name))}
    already = {t.number for t in trials if t.state.is_finished()}
    start = time.perf_counter()
    procs, interrupted = options.run_worker_processes(
        command, k, threads, study, set(already),
        lambda t: report.trial_line(t, settings.metric_names), POLL_SECONDS, env)
    seconds = time.perf_counter() - start
    options.fail_dead_workers(study, procs)
    ran = {}
    for t in study.get_trials(deepcopy=False):
        if t.state.is_finished() and t.number not in already \
                and not str(t.user_attrs.get("stop_reason", "")).startswith(workers.NOT_STARTED):
            label = workers.worker_label(t.user_attrs.get(workers.WORKER_ATTR))
            ran[label] = ran.get(label, 0) + 1
    if interrupted:
        print(f"\ninterrupted: running trials were marked FAIL and queued again; finished "
              f"trials are kept in {where}.\ncontinue with: "
              f"{resume_command(args, name, target)}", file=sys.stderr)
        _summary(study, settings, name, args, ran, seconds)
        return options.EXIT_INTERRUPTED
    failed = [(rank, p.returncode) for rank, p in enumerate(procs) if p.returncode != 0]
    status = _summary(study, settings, name, args, ran, seconds)
    if failed:
        print("; ".join(f"worker w{rank} exited with status {code}" for rank, code in failed),
              file=sys.stderr)
        return 1
    return status


def _summary(study, settings, name, args, ran: dict, seconds: float) -> int:
    if ran:
        per_worker = ", ".join(f"{label} {n}" for label, n in sorted(ran.items()))
        print(f"ran {sum(ran.values())} trials in {seconds:.1f}s ({per_worker})")
    report.print_closing(study, settings, name, args.storage)
    return 0
