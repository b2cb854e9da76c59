"""``tuning worker``: run trials of an existing study, beside any number of other workers.

The worker loop is ``tuning.workers.run_worker``, the one engine that also runs
``tuning run`` (with one worker, in its own process) and each process of
``run --workers K``.
"""
from __future__ import annotations

import sys
import time

from .. import report, workers
from ..argtypes import non_negative_float, non_negative_int, positive_int
from ..errors import WorkerInterrupted
from ..interrupts import interrupt_signals
from ..storage import describe, storage_kind
from ..study import grid_size, make_objective, make_sampler, open_study, settings_text
from . import options

NAME = "worker"
HELP = "run trials of an existing study (start one per machine or per core group)"


def add_arguments(parser) -> None:
    options.add_study_location(parser)
    options.add_running(parser)
    parser.add_argument("--max-trials", type=positive_int, metavar="TOTAL",
                        help="stop when the study holds TOTAL finished (complete+pruned) "
                        "trials counted over all workers; never more (default: no limit; a "
                        "grid study: its grid size)")
    parser.add_argument("--timeout", type=non_negative_float, metavar="SECONDS",
                        help="start no new trial after this many seconds")
    parser.add_argument("--rank", type=non_negative_int, metavar="R",
                        help="this worker's number (seeds its sampler; default: a hash of "
                        "host and PID)")
    options.add_heartbeat(parser)


def run(args) -> int:
    name = options.require_study_name(args)
    threads = args.threads or workers.default_threads(1)
    import minidl  # noqa: PLC0415
    minidl.set_num_threads(threads)
    storage = workers.open_worker_storage(args.storage, name, args.heartbeat)
    study, settings = open_study(storage, name)
    options.refuse_population(study)
    identity = workers.worker_identity(args.rank)
    label = workers.worker_label(identity)
    n_before = len(study.get_trials(deepcopy=False))
    study.sampler = make_sampler(settings, workers.worker_seed_salt(identity), n_before)
    max_trials = args.max_trials
    if max_trials is None and settings.sampler == "grid":
        max_trials = grid_size(settings)
    heartbeat = (f", heartbeat every {args.heartbeat}s" if storage_kind(args.storage) == "rdb"
                 else "")
    print(f"worker {label} (pid {identity['pid']} on {identity['host']}, {threads} threads"
          f"{heartbeat}) on study {name!r} in {describe(args.storage, name)}: "
          f"{settings_text(settings)}; max-trials "
          f"{'none' if max_trials is None else max_trials}", flush=True)

    def err(text):
        print(f"[{label}] {text}", file=sys.stderr, flush=True)

    def on_trial(frozen):
        print(f"[{label}] {report.trial_line(frozen, settings.metric_names)}", flush=True)

    objective = make_objective(settings, device=args.device, progress=False,
                               log=None if args.quiet else err)
    start = time.perf_counter()
    try:
        with interrupt_signals():
            result = workers.run_worker(study, objective, max_trials=max_trials,
                                        timeout=args.timeout, identity=identity,
                                        on_trial=on_trial, log=err,
                                        on_wait=None if args.quiet else err)
    except WorkerInterrupted as exc:
        err(f"interrupted: {interrupted_text(exc)}")
        return options.EXIT_INTERRUPTED
    print(f"worker {label}: ran {len(result['trials'])} trials in "
          f"{time.perf_counter() - start:.1f}s; stopped: {result['stop']}", flush=True)
    return 0


def interrupted_text(exc: WorkerInterrupted) -> str:
    """What Ctrl-C did to the trial in progress (``run_worker`` failed and re-queued it)."""
    if exc.trial is None:
        return "no trial was in progress"
    if exc.requeued:
        return f"trial {exc.trial} was marked FAIL and queued again"
    return f"trial {exc.trial} was marked FAIL" + (f"; {exc.note}" if exc.note else "")
