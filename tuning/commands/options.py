"""Options and helpers shared by the ``tuning`` commands, each defined once.

A command's ``add_arguments(parser)`` picks the groups it takes:

    add_study_location(parser)       --study-name, --storage
    add_storage(parser)              --storage alone (``studies``, ``grpc-proxy``)
    add_space(parser, ...)           --space alone (``retrain --params``)
    add_study_settings(parser)       --space, --epochs, --train-size, --val-size, --seed,
                                     --sampler, --pruner, --objectives, --grid-file
    add_data_options(parser, ...)    --epochs, --train-size, --val-size (a group of its own
                                     or inside another; the help texts can be replaced)
    add_seed(parser, ...)            --seed
    add_running(parser)              --threads, --device, --quiet
    add_heartbeat(parser)            --heartbeat (PostgreSQL/MySQL workers)
    add_out_dir(parser, ...)         --out DIR (checked with ``check_out_dir``)
    add_result_folder(parser, ...)   --out DIR and --overwrite, for a command's result files

and its ``run(args)`` the helpers: ``study_options(args)`` (the settings as
``StudySettings.from_options`` takes them), ``new_study_name`` / ``require_study_name``,
``open_existing(args)`` (a study that must exist, ``(study, settings)``),
``apply_threads(args)``, ``progress_flags(args)``, ``check_out_dir``,
``parse_params(text)`` (a JSON object given as text or as a file), ``err(text)``;
``--workers K`` of ``run`` and ``pbt``: ``run_worker_processes`` (start K worker processes
here, print the trials they finish) and ``fail_dead_workers``.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from ..argtypes import non_negative_int, positive_int
from ..errors import TuningError
from ..spaces import SPACES
from ..storage import check_study_name, folder_problem, open_storage
from ..study import PRUNERS, SAMPLERS, open_study
from ..interrupts import interrupt_signals
from ..workers import GRACE_FACTOR, HEARTBEAT_INTERVAL, WORKER_ATTR, fail_stale, worker_label

# The options a study stores (``tuning.study.StudySettings.from_options``).
STUDY_OPTIONS = ("space", "epochs", "train_size", "val_size", "seed", "sampler", "pruner",
                 "grid_file", "objectives")
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a writer its reader left
# The thread counts a worker process started by ``--workers K`` is given.
THREAD_VARIABLES = ("MINIDL_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                    "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")


def train_size_or_all(text: str):
    """``--train-size``: a positive integer or ``all``."""
    return "all" if text == "all" else positive_int(text)


# -- where a study is ---------------------------------------------------------------------

def add_study_name(parser, help: str | None = None) -> None:
    parser.add_argument("--study-name", help=help or "the study's name (run/enqueue/create: "
                        "defaults to the --space name)")


def add_storage(parser, required: bool = False, help: str | None = None,
                metavar: str = "URL_OR_PATH") -> None:
    """``--storage``; defaults to ``$OPTUNA_STORAGE`` as Optuna's own CLI does (also where
    it is ``required``: the variable keeps a password off the command line)."""
    from_env = os.environ.get("OPTUNA_STORAGE") or None
    parser.add_argument(
        "--storage", metavar=metavar, required=required and from_env is None, default=from_env,
        help=help or "an Optuna journal file, or an Optuna storage URL (sqlite:///x.db, "
        "postgresql://...); default: $OPTUNA_STORAGE if set (as Optuna's own CLI), else "
        "./studies/<study-name>.log")


def add_study_location(parser) -> None:
    """``--study-name`` and ``--storage``."""
    add_study_name(parser)
    add_storage(parser)


# -- a study's settings ----------------------------------------------------------------

def add_space(parser, help: str | None = None, **kwargs) -> None:
    """``--space`` (one of ``tuning.spaces.SPACES``); ``kwargs`` go to ``add_argument``
    (e.g. ``choices``, ``default``)."""
    kwargs.setdefault("choices", sorted(SPACES))
    parser.add_argument("--space", help=help or "search space: " + "; ".join(
        f"{s.name}: {s.description}" for s in SPACES.values()), **kwargs)


def _per_space(value) -> str:
    """``"lab-mlp 10, mlp 10, ..."``: ``value(space)`` of every registered space."""
    return ", ".join(f"{name} {value(space)}" for name, space in SPACES.items())


def add_data_options(parser, *, epochs_help: str | None = None,
                     train_size_help: str | None = None, train_size_all: bool = True,
                     val_size: bool = True) -> None:
    """``--epochs``, ``--train-size`` (N or ``all`` unless ``train_size_all`` is False),
    ``--val-size`` (unless ``val_size`` is False)."""
    parser.add_argument("--epochs", type=positive_int, metavar="E",
                        help=epochs_help or "training epochs per trial (default: "
                        + _per_space(lambda space: str(space.epochs)) + ")")
    parser.add_argument("--train-size", metavar="N|all" if train_size_all else "N",
                        type=train_size_or_all if train_size_all else positive_int,
                        help=train_size_help or "subsample the training part to N images "
                        "(default: " + _per_space(lambda space: "all" if space.train_size is None
                                                  else str(space.train_size)) + ")")
    if val_size:
        parser.add_argument("--val-size", type=positive_int, metavar="N",
                            help="validation images split off the training set (default "
                            "10000)")


def add_seed(parser, help: str | None = None) -> None:
    parser.add_argument("--seed", type=non_negative_int, metavar="S",
                        help=help or "data split, sampler and training seed (default 0)")


def add_study_settings(parser) -> None:
    """The settings stored in a new study (``tuning.study.StudySettings``), as one group."""
    g = parser.add_argument_group(
        "study settings", "stored in a new study; an existing study keeps its own (giving a "
        "different value is an error)")
    add_space(g)
    add_data_options(g)
    add_seed(g)
    g.add_argument("--sampler", choices=SAMPLERS, help="default tpe (multivariate); ga is "
                   "NSGA-II, cmaes is CMA-ES, qmc is scrambled Sobol, rl is a REINFORCE LSTM "
                   "controller (docs/rl-sampler.md)")
    g.add_argument("--pruner", choices=PRUNERS, help="default median (none with several "
                   "--objectives: Optuna cannot prune them, and another pruner is refused)")
    g.add_argument("--objectives", metavar="LIST",
                   help="what the study minimises: error (default: the validation error), "
                   "error,params (and the parameter count) or error,latency (and the "
                   "measured inference time per image, ms); several objectives give a "
                   "Pareto front (samplers tpe, ga (NSGA-II), random, qmc, grid)")
    g.add_argument("--grid-file", metavar="JSON", help="grid sampler: a JSON object mapping "
                   "parameters to lists of values (axes) or single values (fixed); default "
                   "the lab's grid learn_rate {0.01, 0.001, 0.0001} x batch_size {32, 64, 128}")


# -- how trials run ---------------------------------------------------------------------

def add_running(parser) -> None:
    """``--threads``, ``--device``, ``--quiet``."""
    parser.add_argument("--threads", type=positive_int, metavar="N",
                        help="BLAS and Numba threads (default: minidl's default)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--quiet", action="store_true", help="no per-epoch progress lines")


def add_heartbeat(parser) -> None:
    parser.add_argument("--heartbeat", type=positive_int, default=HEARTBEAT_INTERVAL,
                        metavar="SECONDS",
                        help="PostgreSQL/MySQL: heartbeat interval; a trial whose process "
                        f"misses {GRACE_FACTOR} beats is failed and retried (default "
                        f"{HEARTBEAT_INTERVAL})")


def add_out_dir(parser, help: str | None = None) -> None:
    parser.add_argument("--out", required=True, metavar="DIR", help=help)


def add_result_folder(parser, files: str, writer: str, refuses_before: str) -> None:
    """``--out DIR`` (required) and ``--overwrite`` for a command that writes ``files``
    (e.g. ``"params.json, darts.json and alphas.png"``) into a folder and keeps any file of
    those names that an earlier ``writer`` (e.g. ``"darts search"``) did not write there,
    refusing before ``refuses_before`` (e.g. ``"searching"``) unless ``--overwrite``."""
    add_out_dir(parser, help=f"the folder for {files} (created if missing). Files of these "
                f"names that an earlier {writer} left there are replaced; any other file of "
                f"these names is kept, and the command refuses before {refuses_before}: give "
                f"--overwrite, or another folder")
    parser.add_argument("--overwrite", action="store_true",
                        help=f"replace files in --out of the names above even when no earlier "
                        f"{writer} wrote them (the user's own, or edited since)")


# -- helpers for ``run(args)`` -----------------------------------------------------------

def study_options(args) -> dict:
    """The study settings given on the command line (None: not given)."""
    return {name: getattr(args, name, None) for name in STUDY_OPTIONS}


def new_study_name(args) -> str:
    """``--study-name``, or the space's name for a new study; a plain name either way."""
    name = args.study_name if args.study_name is not None else getattr(args, "space", None)
    if name is None:
        raise TuningError("give --study-name, or --space to name a new study after its space")
    return check_study_name(name)


def require_study_name(args) -> str:
    if args.study_name is None:
        raise TuningError("give --study-name")
    return check_study_name(args.study_name)


def open_existing(args):
    """``(study, settings)`` of the study ``--study-name``/``--storage`` name; it must exist."""
    if args.study_name is not None and args.storage is None:
        check_study_name(args.study_name)  # it names a file: studies/<name>.log
    storage = open_storage(args.storage, args.study_name, must_exist=True, write=False)
    return open_study(storage, args.study_name)


def parse_params(text: str, option: str = "--params") -> dict:
    """A non-empty JSON object of parameter values, given as text or, when ``text`` names
    an existing file (``tuning darts``'s ``params.json``), as that file's content."""
    import json  # noqa: PLC0415
    source = text
    if not text.lstrip().startswith("{") and Path(text).is_file():
        try:
            source = Path(text).read_text()
        except OSError as exc:
            raise TuningError(f"{option} {text}: cannot read it ({exc.strerror})") from None
    try:
        params = json.loads(source)
    except json.JSONDecodeError as exc:
        raise TuningError(f"{option} is not valid JSON ({exc}): {text}") from None
    if not isinstance(params, dict) or not params:
        raise TuningError(f"{option}: expected a non-empty JSON object like "
                          f'\'{{"learn_rate": 0.001}}\', got {text}')
    return params


def err(text: str) -> None:
    """A line on standard error."""
    print(text, file=sys.stderr, flush=True)


def apply_threads(args) -> None:
    """Apply --threads, and refuse --device cuda up front when CuPy or a GPU is missing."""
    if getattr(args, "threads", None):
        import minidl  # noqa: PLC0415
        minidl.set_num_threads(args.threads)
    if getattr(args, "device", "cpu") == "cuda":
        from minidl import backend  # noqa: PLC0415
        try:
            backend.require_cuda()
        except RuntimeError as exc:
            raise TuningError(f"--device cuda: {exc}") from None


def progress_flags(args) -> tuple[bool, bool]:
    """``(bar, lines)``: fit's progress bar on a terminal, else per-epoch lines (on
    standard error), neither with ``--quiet``."""
    quiet = getattr(args, "quiet", False)
    tty = sys.stderr.isatty() and not quiet
    return tty, not quiet and not tty


def check_out_dir(out: str) -> Path:
    """TuningError unless ``out`` is a folder that exists or can be made, and is writable.

    Checked before any training, so that a result is not lost at the end.
    """
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise TuningError(f"--out {out}: is a file; give a folder (it is created if missing)")
    problem = folder_problem(path.absolute())
    if problem:
        raise TuningError(f"--out {out}: {problem}; give a writable folder")
    for name in ("model.npz", "result.json"):
        if (path / name).is_dir():
            raise TuningError(f"--out {out}: {path / name} is a folder; remove it or give "
                              f"another --out")
    return path


def refuse_population(study) -> None:
    """TuningError for a population-based training study (``tuning pbt``): its queued
    intervals continue from checkpoints, which only ``tuning pbt`` loads."""
    if study is None:
        return
    from ..population import load_pbt_settings  # noqa: PLC0415

    if load_pbt_settings(study) is not None:
        raise TuningError(
            f"study {study.study_name!r} is a population-based training study: its intervals "
            f"start from checkpoints that only `tuning pbt` loads. Continue it with `tuning pbt "
            f"--study-name {study.study_name}`, or add a worker with `tuning pbt --study-name "
            f"{study.study_name} --join`")


def run_worker_processes(command: list, k: int, threads: int, study, printed: set, line,
                         poll_seconds: float, env: dict | None = None):
    """Run ``k`` processes ``command + ["--rank", r]`` (r = 0 .. k-1) on this machine and
    print the trials of ``study`` they finish; ``(procs, interrupted)`` once all have exited.

    Each process runs in a session of its own with standard output discarded, the
    environment of this one plus ``env`` and every variable of ``THREAD_VARIABLES`` set to
    ``threads``.  Every ``poll_seconds``, and once after the last has exited, each finished
    trial not in ``printed`` is printed as ``line(trial)`` with the worker that ran it and
    added to ``printed``.  Ctrl-C or SIGTERM sends SIGINT to the processes still running and
    waits for them (``interrupted`` is then True).
    """
    env = {**os.environ, **(env or {})}
    for var in THREAD_VARIABLES:
        env[var] = str(threads)
    procs = [subprocess.Popen(command + ["--rank", str(rank)], env=env,
                              stdout=subprocess.DEVNULL, start_new_session=True)
             for rank in range(k)]

    def print_new():
        for t in study.get_trials(deepcopy=False):
            if t.state.is_finished() and t.number not in printed:
                print(f"{line(t)}  ({worker_label(t.user_attrs.get(WORKER_ATTR))})",
                      flush=True)
                printed.add(t.number)

    interrupted = False
    try:
        with interrupt_signals((signal.SIGTERM,)):
            while True:
                running = any(p.poll() is None for p in procs)
                print_new()
                if not running:
                    break
                time.sleep(poll_seconds)
    except KeyboardInterrupt:
        interrupted = True
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in procs:
            p.wait()
        print_new()
    return procs, interrupted


def fail_dead_workers(study, procs) -> None:
    """A worker process that died (an exit status other than 0 or ``EXIT_INTERRUPTED``)
    cannot fail its own trial: fail the study's stale trials for it (they are queued
    again), a line each."""
    if any(p.returncode not in (0, EXIT_INTERRUPTED) for p in procs):
        for trial, action, why in fail_stale(study):
            if action == "failed":
                print(f"trial {trial.number} failed ({why}); queued again")
