"""Scaling out: many worker processes, on one machine or many, sharing one study.

    python -m tuning create --space cnn --storage URL --study-name cnn-big [--epochs ...]
    python -m tuning worker --storage URL --study-name cnn-big --max-trials 200 [--rank R]
    python -m tuning run --workers 2 --space lab-mlp --total 16 --study-name lab-2w
    python -m tuning fail-stale --storage studies/lab-2w.log --study-name lab-2w
    python -m tuning grpc-proxy --storage postgresql://... --host 0.0.0.0 --port 13000

``create`` makes the study once, with its settings stored in it (``tuning.study``), so
every worker rebuilds the same objective, sampler and pruner, and no two workers race to
create it.  ``worker`` runs trials until the study holds ``--max-trials`` finished
trials in all (see ``tuning.workers`` for why it never holds more).  ``run --workers K``
starts K local workers on the study's storage (the journal file by default) and prints
every trial they finish.

Storages (``--storage``):

- a journal file (the default, ``studies/<name>.log``): one machine, any number of
  processes;
- ``postgresql://...`` or ``mysql://...``: many machines; workers run Optuna's heartbeat
  (``--heartbeat S``; a trial whose worker stops beating for 3 S is failed and retried
  by ``RetryHeartbeatStaleTrialCallback``);
- ``grpc://HOST:PORT``: Optuna's gRPC storage proxy (``tuning grpc-proxy`` serves an
  RDB storage to very many workers, which then hold no database connection each);
- ``sqlite:///...`` is refused for workers: SQLite takes one writer at a time and
  several processes fail with "database is locked".

Each worker's sampler seed is derived from the study's seed, the worker's rank (or a hash
of host and PID) and the number of trials already in the study, so workers draw different
parameters.  Its thread budget (BLAS and Numba, ``minidl.set_num_threads``) defaults to
its share of the machine's cores: all of them for a lone ``worker``, cores // K for each
of ``run --workers K``.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import warnings

import optuna
from optuna.trial import TrialState

from . import report, workers
from .argtypes import positive_int, non_negative_int, non_negative_float
from .storage import (StudyNotFoundError, TuningError, check_study_name, database_error, describe,
                      driver_missing, is_url, open_storage, study_names)
from .study import (StudyExistsError, StudySettings, create_or_open, create_study, find_study,
                    grid_size, make_objective, make_sampler, open_study)

HEARTBEAT_INTERVAL = 10  # seconds between a worker's heartbeats on an RDB storage
GRACE_FACTOR = 3  # a trial is stale after GRACE_FACTOR missed heartbeat intervals
POLL_SECONDS = 0.5  # how often `run --workers` reads the storage for finished trials
EXIT_INTERRUPTED = 130
_RDB = ("postgresql", "postgres", "mysql", "oracle", "mssql")

SQLITE_REFUSED = (
    "SQLite is not made for several processes writing at once (they fail with 'database is "
    "locked'). For workers on one machine use a journal file: leave --storage out (it is "
    "studies/<study-name>.log) or give a path such as studies/{name}.log. For workers on "
    "several machines use PostgreSQL or MySQL: --storage postgresql://USER:PASSWORD@HOST/DB "
    "(see the README's 'Scaling out'). One process can keep SQLite with `tuning run`.")


# -- storages ---------------------------------------------------------------------------

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


def refuse_sqlite(spec: str | None, study_name: str | None) -> None:
    if storage_kind(spec) == "sqlite":
        raise TuningError(SQLITE_REFUSED.format(name=study_name or "NAME"))


def open_worker_storage(spec: str | None, study_name: str, heartbeat: int = HEARTBEAT_INTERVAL):
    """The storage a worker uses: RDB URLs get Optuna's heartbeat and retry of stale trials."""
    refuse_sqlite(spec, study_name)
    if storage_kind(spec) == "rdb":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            try:
                return optuna.storages.RDBStorage(
                    spec, heartbeat_interval=int(heartbeat),
                    grace_period=GRACE_FACTOR * int(heartbeat),
                    heartbeat_stale_trial_callback=workers.retry_callback())
            except ImportError as exc:
                raise TuningError(driver_missing(spec, exc)) from None
            except Exception as exc:  # SQLAlchemy: server down, wrong password, ...
                raise TuningError(database_error(spec, exc)) from None
    return open_storage(spec, study_name, must_exist=True)


def load_any_study(storage, study_name: str):
    """Any study (also one not made by ``tuning``), or ``StudyNotFoundError``."""
    try:
        return optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:
        names = study_names(storage)
        raise StudyNotFoundError(
            f"study {study_name!r} not found; " + (f"studies in this storage: {', '.join(names)}"
                                                   if names else "this storage has no studies")
        ) from None


def default_threads(n_workers: int) -> int:
    """A worker's share of the cores this process may use, when ``n_workers`` share them."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cores = os.cpu_count() or 1
    return max(1, cores // max(1, int(n_workers)))


# -- argument parsing -------------------------------------------------------------------


def add_commands(sub, where, settings, running) -> None:
    """Add ``create``, ``worker``, ``fail-stale`` and ``grpc-proxy`` to the CLI's subparsers.

    ``where``, ``settings`` and ``running`` are the CLI's parent parsers (``--storage``
    and ``--study-name``; the study settings; ``--threads``, ``--device``, ``--quiet``).
    """
    create = sub.add_parser(
        "create", parents=[where, settings],
        help="create a study once, with its settings stored, for workers to share")
    create.add_argument("--reuse", action="store_true",
                        help="if the study exists, use it (the options given must agree with "
                        "its stored settings) instead of failing")
    create.set_defaults(handler=cmd_create)

    worker = sub.add_parser(
        "worker", parents=[where, running],
        help="run trials of an existing study (start one per machine or per core group)")
    worker.add_argument("--max-trials", type=positive_int, metavar="TOTAL",
                        help="stop when the study holds TOTAL finished (complete+pruned) "
                        "trials counted over all workers; never more (default: no limit; a "
                        "grid study: its grid size)")
    worker.add_argument("--timeout", type=non_negative_float, metavar="SECONDS",
                        help="start no new trial after this many seconds")
    worker.add_argument("--rank", type=non_negative_int, metavar="R",
                        help="this worker's number (seeds its sampler; default: a hash of "
                        "host and PID)")
    worker.add_argument("--heartbeat", type=positive_int, default=HEARTBEAT_INTERVAL,
                        metavar="SECONDS",
                        help="PostgreSQL/MySQL: heartbeat interval; a trial whose worker "
                        f"misses {GRACE_FACTOR} beats is failed and retried (default "
                        f"{HEARTBEAT_INTERVAL})")
    worker.set_defaults(handler=cmd_worker)

    stale = sub.add_parser(
        "fail-stale", parents=[where],
        help="fail the RUNNING trials of dead workers and queue their parameters again")
    stale.add_argument("--older-than", type=non_negative_float, metavar="SECONDS",
                       help="also treat as dead a RUNNING trial started more than SECONDS ago "
                       "whose worker is not seen alive on this machine (needed for workers "
                       "on other machines)")
    stale.add_argument("--dry-run", action="store_true", help="only say what would be done")
    stale.set_defaults(handler=cmd_fail_stale)

    proxy = sub.add_parser(
        "grpc-proxy", help="serve a PostgreSQL/MySQL storage to workers as grpc://HOST:PORT")
    proxy.add_argument("--storage", required=True, metavar="URL",
                       help="the RDB storage to serve (postgresql://..., mysql://...)")
    proxy.add_argument("--host", default="localhost",
                       help="address to listen on (default localhost; 0.0.0.0 for all)")
    proxy.add_argument("--port", type=positive_int, default=13000, help="default 13000")
    proxy.set_defaults(handler=cmd_grpc_proxy)


def add_run_options(run) -> None:
    """``run --workers K``."""
    run.add_argument("--workers", type=positive_int, metavar="K",
                     help="run the trials in K local worker processes sharing the study's "
                     "storage (each gets cores // K threads unless --threads is given)")


# -- commands ---------------------------------------------------------------------------

def _study_options(args) -> dict:
    from .cli import STUDY_OPTIONS  # noqa: PLC0415 - cli imports this module
    return {name: getattr(args, name, None) for name in STUDY_OPTIONS}


def _settings_text(settings: StudySettings) -> str:
    train_size = "all" if settings.train_size is None else settings.train_size
    text = (f"space {settings.space}, sampler {settings.sampler}, pruner {settings.pruner}, "
            f"{settings.epochs} epochs, train {train_size} / val {settings.val_size} images, "
            f"seed {settings.seed}")
    if settings.multi_objective:
        text += (f"; objectives {', '.join(settings.metric_names)} (no pruning with several "
                 f"objectives)")
    return text


def _require_name(args) -> str:
    if args.study_name is None:
        raise TuningError("give --study-name")
    return check_study_name(args.study_name)


def cmd_create(args) -> int:
    name = _require_name(args)
    storage = open_storage(args.storage, name)
    where = describe(args.storage, name)
    options = _study_options(args)
    settings, verb = None, "created"
    if args.reuse:
        try:
            _, settings = open_study(storage, name, options)
            verb = "reusing"
        except StudyNotFoundError:
            pass
    if settings is None:
        settings = StudySettings.from_options(options)
        try:
            create_study(storage, name, settings, 0)
        except StudyExistsError:
            if not args.reuse:
                raise TuningError(
                    f"study {name!r} already exists in {where}. Pass --reuse to use it as it "
                    f"is (the options given must agree with its stored settings), or choose "
                    f"another --study-name.") from None
            _, settings = open_study(storage, name, options)  # created meanwhile elsewhere
            verb = "reusing"
    print(f"{verb} study {name!r} in {where}: {_settings_text(settings)}")
    print(f"start workers with: {report.tuning_command()} worker --storage {where} "
          f"--study-name {name} --max-trials N")
    return 0


def _raise_interrupt(signum, _frame):
    signal.signal(signum, signal.SIG_IGN)  # one signal stops the worker; ignore repeats
    raise KeyboardInterrupt


def cmd_worker(args) -> int:
    name = _require_name(args)
    threads = args.threads or default_threads(1)
    import minidl  # noqa: PLC0415
    minidl.set_num_threads(threads)
    storage = open_worker_storage(args.storage, name, args.heartbeat)
    study, settings = open_study(storage, name)
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
          f"{_settings_text(settings)}; max-trials "
          f"{'none' if max_trials is None else max_trials}", flush=True)

    def err(text):
        print(f"[{label}] {text}", file=sys.stderr, flush=True)

    def on_trial(frozen):
        print(f"[{label}] {report.trial_line(frozen, settings.metric_names)}", flush=True)

    objective = make_objective(settings, device=args.device, progress=False,
                               log=None if args.quiet else err)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(signal.SIGINT, _raise_interrupt)
    start = time.perf_counter()
    try:
        result = workers.run_worker(study, objective, max_trials=max_trials,
                                    timeout=args.timeout, identity=identity, on_trial=on_trial,
                                    log=err, on_wait=None if args.quiet else err)
    except workers.WorkerInterrupted as exc:
        what = ("no trial was running" if exc.trial is None else
                f"trial {exc.trial} was marked FAIL and queued again")
        err(f"interrupted: {what}")
        return EXIT_INTERRUPTED
    print(f"worker {label}: ran {len(result['trials'])} trials in "
          f"{time.perf_counter() - start:.1f}s; stopped: {result['stop']}", flush=True)
    return 0


def cmd_fail_stale(args) -> int:
    name = _require_name(args)
    storage = open_storage(args.storage, name, must_exist=True, write=not args.dry_run)
    study = load_any_study(storage, name)
    results = workers.fail_stale(study, older_than=args.older_than, dry_run=args.dry_run)
    retries = {t.system_attrs.get("failed_trial"): t.number
               for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,))}
    failed = 0
    for trial, action, why in results:
        line = f"trial {trial.number}: {action} ({why})"
        if action == "failed":
            failed += 1
            original = trial.system_attrs.get("failed_trial", trial.number)
            if original in retries:
                line += f"; queued again as trial {retries[original]}"
            else:
                line += f"; not queued again (retried {workers.MAX_RETRIES} times already)"
        print(line)
    kept = sum(1 for _, action, _ in results if action == "kept")
    print(f"{len(results)} running trials: {failed} failed, {kept} kept" +
          (" (dry run: nothing changed)" if args.dry_run else ""))
    if kept and args.older_than is None:
        print("trials of workers on other machines are kept; add --older-than SECONDS to fail "
              "those running longer than that")
    return 0


def cmd_grpc_proxy(args) -> int:
    kind = storage_kind(args.storage)
    if kind not in ("rdb", "sqlite"):
        raise TuningError(f"--storage {args.storage}: the gRPC proxy serves an RDB storage "
                          f"(postgresql://..., mysql://...); Optuna's proxy does not support "
                          f"journal storages")
    try:
        import grpc  # noqa: F401, PLC0415
        from google import protobuf  # noqa: F401, PLC0415
    except ImportError:
        raise TuningError("the gRPC proxy needs grpcio and protobuf: pip install grpcio "
                          "protobuf (or the project's [distributed] extra)") from None
    try:
        storage = optuna.storages.get_storage(args.storage)
    except ImportError as exc:
        raise TuningError(driver_missing(args.storage, exc)) from None
    except Exception as exc:  # SQLAlchemy: server down, wrong password, ...
        raise TuningError(database_error(args.storage, exc)) from None
    print(f"starting the gRPC proxy for {args.storage.split('@')[-1]} on {args.host}:"
          f"{args.port}; workers use --storage grpc://HOST:{args.port}; Ctrl-C stops",
          flush=True)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        # Optuna's own server object, so that Ctrl-C stops it: run_grpc_proxy_server leaves
        # the server running when interrupted, and the exit then waits on its threads (the
        # proxy once outlived a 30 s wait after SIGINT in a loaded test run)
        try:
            from optuna.storages._grpc.server import make_server  # noqa: PLC0415
        except ImportError:      # a later Optuna moved it: its public function
            optuna.storages.run_grpc_proxy_server(storage, host=args.host, port=args.port)
            return 0
        server = make_server(storage, args.host, args.port)
        server.start()
        try:
            server.wait_for_termination()
        finally:
            server.stop(grace=2).wait(10)
    return 0


# -- run --workers K ---------------------------------------------------------------------

def run_local_workers(args) -> int:
    """``run --workers K``: K ``worker`` processes on this machine, with combined progress."""
    k = args.workers
    name = args.study_name if args.study_name is not None else args.space
    if name is None:
        raise TuningError("give --study-name, or --space to name a new study after its space")
    check_study_name(name)
    if k > 1:
        refuse_sqlite(args.storage, name)
    storage = open_storage(args.storage, name)
    options = _study_options(args)
    study, settings = find_study(storage, name, options)   # checked before it is stored
    if args.total is None and args.n_trials is None and args.timeout is None \
            and settings.sampler != "grid":
        raise TuningError("give --n-trials N (N more trials), --total T (until the study has "
                          "T finished trials) or --timeout SECONDS")
    settings.check_data_sizes()
    if study is None:
        from .data import check_data  # noqa: PLC0415 - reads the data files
        check_data()
        study, settings = create_or_open(storage, name, settings, options, 0)
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
    threads = args.threads or default_threads(k)
    print(f"study {name!r} in {where}: {_settings_text(settings)}; {len(trials)} trials so far "
          f"({done} finished)", flush=True)
    if target is not None and done >= target:
        print(f"the study already has {done} finished trials (target {target}); nothing to run")
        return _summary(study, settings, name, args, {}, 0.0)
    print(f"starting {k} workers with {threads} thread{'s' * (threads > 1)} each"
          + (f", until the study has {target} finished trials" if target is not None else "")
          + (f", for at most {args.timeout:g}s" if args.timeout is not None else ""), flush=True)

    command = [sys.executable, "-m", "tuning", "worker", "--storage", where,
               "--study-name", name, "--threads", str(threads), "--device", args.device,
               "--quiet"]
    if target is not None:
        command += ["--max-trials", str(target)]
    if args.timeout is not None:
        command += ["--timeout", str(args.timeout)]
    env = dict(os.environ)
    for var in ("MINIDL_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        env[var] = str(threads)
    already = {t.number for t in trials if t.state.is_finished()}
    start = time.perf_counter()
    procs = [subprocess.Popen(command + ["--rank", str(rank)], env=env,
                              stdout=subprocess.DEVNULL, start_new_session=True)
             for rank in range(k)]
    interrupted = False
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        printed = set(already)
        while True:
            running = [p for p in procs if p.poll() is None]
            printed |= _print_new(study, printed, settings.metric_names)
            if not running:
                break
            time.sleep(POLL_SECONDS)
    except KeyboardInterrupt:
        interrupted = True
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in procs:
            p.wait()
        _print_new(study, printed, settings.metric_names)
    finally:
        signal.signal(signal.SIGTERM, previous)
    seconds = time.perf_counter() - start
    if any(p.returncode not in (0, EXIT_INTERRUPTED) for p in procs):
        # A worker that died cannot fail its own trial: do it for it.
        for trial, action, why in workers.fail_stale(study):
            if action == "failed":
                print(f"trial {trial.number} failed ({why}); queued again")
    ran = {}
    for t in study.get_trials(deepcopy=False):
        if t.state.is_finished() and t.number not in already \
                and not str(t.user_attrs.get("stop_reason", "")).startswith(workers.NOT_STARTED):
            label = workers.worker_label(t.user_attrs.get(workers.WORKER_ATTR))
            ran[label] = ran.get(label, 0) + 1
    if interrupted:
        print(f"\ninterrupted: running trials were marked FAIL and queued again; finished "
              f"trials are kept in {where}.\ncontinue with: {report.tuning_command()} run "
              f"--workers {k} "
              f"--study-name {name}" + (f" --storage {args.storage}" if args.storage else "")
              + (f" --total {target}" if target is not None else " --n-trials N"),
              file=sys.stderr)
        _summary(study, settings, name, args, ran, seconds)
        return EXIT_INTERRUPTED
    failed = [(rank, p.returncode) for rank, p in enumerate(procs) if p.returncode != 0]
    status = _summary(study, settings, name, args, ran, seconds)
    if failed:
        print("; ".join(f"worker w{rank} exited with status {code}" for rank, code in failed),
              file=sys.stderr)
        return 1
    return status


def _print_new(study, printed: set, names=None) -> set:
    new = set()
    for t in study.get_trials(deepcopy=False):
        if t.state.is_finished() and t.number not in printed:
            label = workers.worker_label(t.user_attrs.get(workers.WORKER_ATTR))
            print(f"{report.trial_line(t, names)}  ({label})", flush=True)
            new.add(t.number)
    return new


def _summary(study, settings, name, args, ran: dict, seconds: float) -> int:
    if ran:
        per_worker = ", ".join(f"{label} {n}" for label, n in sorted(ran.items()))
        print(f"ran {sum(ran.values())} trials in {seconds:.1f}s ({per_worker})")
    report.print_closing(study, settings, name, args.storage)
    return 0
