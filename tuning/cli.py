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

Scaling out (``tuning.distributed``): ``create``, ``worker``, ``fail-stale``,
``grpc-proxy`` and ``run --workers K``.

A study lives in ``./studies/<study-name>.log`` (an Optuna journal file) unless
``--storage`` names another file or an Optuna URL.  ``run`` on an existing study
continues it with the settings stored in it: ``--n-trials N`` runs N more trials in this
session; ``--total T`` runs until the study holds T finished (complete or pruned)
trials, whichever session or process ran them.  Ctrl-C marks the trial in progress
FAIL, queues its configuration again (the next ``run`` runs it first), keeps every
finished trial, and exits with status 130.

Every error is one or two lines on standard error saying what went wrong and what to
do, with exit status 1 (2 for a usage error); ``--debug`` (anywhere on the command line)
adds the traceback.  A study is stored only once its settings, storage and data (for
``run``) or values (for ``enqueue``) have been checked.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
import warnings
from pathlib import Path

import optuna
from optuna.trial import TrialState

from . import distributed, report, workers
from .spaces import SPACES, check_values
from .argtypes import positive_int, non_negative_int, positive_float
from .storage import (JournalWarning, TuningError, check_study_name, describe,
                      folder_problem, open_storage, study_names)
from .study import (PRUNERS, SAMPLERS, create_or_open, find_study, grid_size, make_objective,
                    open_study)

STUDY_OPTIONS = ("space", "epochs", "train_size", "val_size", "seed", "sampler", "pruner",
                 "grid_file", "objectives")
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a writer its reader left


def _train_size(text: str):
    return "all" if text == "all" else positive_int(text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tuning", description="Optuna studies over minidl models on Fashion-MNIST.",
        epilog="Run `python -m tuning COMMAND --help` for a command's options.")
    parser.add_argument("--debug", action="store_true",
                        help="on an error, show the full traceback (may come anywhere on the "
                        "command line)")
    parser.add_argument("--version", action="version", version=_version_text())
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    where = argparse.ArgumentParser(add_help=False)
    where.add_argument("--study-name", help="the study's name (run/enqueue: defaults to "
                       "the --space name)")
    where.add_argument("--storage", metavar="URL_OR_PATH",
                       default=os.environ.get("OPTUNA_STORAGE") or None,
                       help="an Optuna journal file, or an Optuna storage URL (sqlite:///x.db, "
                       "postgresql://...); default: $OPTUNA_STORAGE if set (as Optuna's own "
                       "CLI), else ./studies/<study-name>.log")

    settings = argparse.ArgumentParser(add_help=False)
    g = settings.add_argument_group(
        "study settings", "stored in a new study; an existing study keeps its own (giving a "
        "different value is an error)")
    g.add_argument("--space", choices=sorted(SPACES),
                   help="search space: " + "; ".join(f"{s.name}: {s.description}"
                                                     for s in SPACES.values()))
    g.add_argument("--epochs", type=positive_int, metavar="E", help="training epochs per trial (default: "
                   "lab-mlp and mlp 10, cnn 3)")
    g.add_argument("--train-size", type=_train_size, metavar="N|all",
                   help="subsample the training part to N images (default: lab-mlp and mlp "
                   "all (50000 with the default --val-size), cnn 10000)")
    g.add_argument("--val-size", type=positive_int, metavar="N",
                   help="validation images split off the training set (default 10000)")
    g.add_argument("--seed", type=non_negative_int, metavar="S", help="data split, sampler and training "
                   "seed (default 0)")
    g.add_argument("--sampler", choices=SAMPLERS, help="default tpe (multivariate); ga is "
                   "NSGA-II, cmaes is CMA-ES, qmc is scrambled Sobol")
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

    running = argparse.ArgumentParser(add_help=False)
    running.add_argument("--threads", type=positive_int, metavar="N",
                         help="BLAS and Numba threads (default: minidl's default)")
    running.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    running.add_argument("--quiet", action="store_true", help="no per-epoch progress lines")

    run = sub.add_parser(
        "run", parents=[where, settings, running], help="create or continue a study and run trials",
        description="Create the study (or continue it, with the settings stored in it) and run "
        "trials, printing one line per finished trial and the best trial at the end. "
        "--n-trials N runs N more trials in this session (pruned and failed ones count); "
        "--total T runs until the study holds T complete+pruned trials, whoever ran them. "
        "Ctrl-C marks the running trial FAIL and exits with status 130; run again to continue.")
    run.add_argument("--n-trials", type=positive_int, metavar="N",
                     help="run N more trials in this session")
    run.add_argument("--total", type=positive_int, metavar="T",
                     help="stop when the study has T complete+pruned trials in all")
    run.add_argument("--timeout", type=positive_float, metavar="SECONDS",
                     help="start no new trial after this many seconds")
    run.set_defaults(handler=cmd_run)

    studies = sub.add_parser(
        "studies", help="the studies in a storage: trials, finished, best value",
        description="List the studies in --storage (or $OPTUNA_STORAGE), or, with neither, "
        "in every journal file of ./studies/.")
    studies.add_argument("--storage", metavar="URL_OR_PATH",
                         default=os.environ.get("OPTUNA_STORAGE") or None)
    studies.set_defaults(handler=cmd_studies)

    best = sub.add_parser("best", parents=[where], help="the best value and hyperparameters")
    best.add_argument("--json", action="store_true")
    best.set_defaults(handler=cmd_best)

    trials = sub.add_parser("trials", parents=[where], help="every trial as a table")
    fmt = trials.add_mutually_exclusive_group()
    fmt.add_argument("--csv", action="store_true", help="CSV on standard output")
    fmt.add_argument("--json", action="store_true",
                     help="strict JSON on standard output (a NaN or infinite number is "
                     'written as the string "NaN", "Infinity" or "-Infinity")')
    trials.set_defaults(handler=cmd_trials)

    enqueue = sub.add_parser("enqueue", parents=[where, settings],
                             help="queue a configuration to be evaluated next (manual search)")
    enqueue.add_argument("--params", required=True, metavar="JSON",
                         help='e.g. \'{"learn_rate": 0.001, "batch_size": 64}\'; parameters '
                         'left out are sampled. Values must lie inside the space')
    enqueue.add_argument("--outside-range", action="store_true",
                         help="accept numbers outside the range the space searches (still "
                         "refused: values no trial can use, such as a negative layer size)")
    enqueue.set_defaults(handler=cmd_enqueue)

    plot = sub.add_parser("plot", parents=[where], help="write the study's plots as PNG")
    plot.add_argument("--out", required=True, metavar="DIR")
    plot.set_defaults(handler=cmd_plot)

    retrain = sub.add_parser("retrain", parents=[where, running],
                             help="train the best configuration on train+val, test it once")
    retrain.add_argument("--out", required=True, metavar="DIR")
    retrain.add_argument("--trial", type=non_negative_int, metavar="N",
                         help="retrain trial N's configuration (default: the best trial; "
                         "required for a study with several objectives, e.g. one of its "
                         "Pareto front, which `best` lists)")
    retrain.add_argument("--epochs", type=positive_int,
                         help="epochs (default: the study's)")
    retrain.add_argument("--train-size", type=positive_int,
                         help="subsample the 60000 training images (default: all)")
    retrain.set_defaults(handler=cmd_retrain)

    # Scaling out (issue 6): `run --workers K`, `create`, `worker`, `fail-stale`, `grpc-proxy`.
    distributed.add_run_options(run)
    distributed.add_commands(sub, where, settings, running)
    return parser


# -- helpers ------------------------------------------------------------------------------

def _study_options(args) -> dict:
    return {name: getattr(args, name, None) for name in STUDY_OPTIONS}


def _new_study_name(args) -> str:
    """``--study-name``, or the space's name for a new study; a plain name either way."""
    name = args.study_name if args.study_name is not None else args.space
    if name is None:
        raise TuningError("give --study-name, or --space to name a new study after its space")
    return check_study_name(name)


def _open_existing(args):
    if args.study_name is not None and args.storage is None:
        check_study_name(args.study_name)  # it names a file: studies/<name>.log
    storage = open_storage(args.storage, args.study_name, must_exist=True, write=False)
    return open_study(storage, args.study_name)


def _err(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _apply_threads(args) -> None:
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


def _resume_command(args, name) -> str:
    cmd = f"{report.tuning_command()} run --study-name {name}"
    if args.storage:
        cmd += f" --storage {args.storage}"
    if args.total:
        return cmd + f" --total {args.total}"
    return cmd + " --n-trials N"


# -- commands -----------------------------------------------------------------------------

class _Output:
    """Prints that survive the reader leaving: ``tuning run ... | head -3``.

    When a stream's reader has gone (``BrokenPipeError``), later writes to it are
    dropped and the study is asked to stop after the trial in progress, which ends and
    is stored as usual (a broken pipe inside the objective would otherwise fail it).
    """

    def __init__(self):
        self.broken = False
        self.study = None

    def print(self, text: str, stream=None) -> None:
        stream = stream or sys.stdout
        if self.broken:
            return
        try:
            print(text, file=stream, flush=True)
        except BrokenPipeError:
            self.broken = True
            _silence(stream)
            if self.study is not None:
                self.study.stop()

    def err(self, text: str) -> None:
        self.print(text, sys.stderr)


def _silence(stream) -> None:
    """Point ``stream``'s file descriptor at /dev/null (so Python's exit flush is quiet)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # not a real file (pytest's capture): nothing to do
        pass


def cmd_run(args) -> int:
    if args.workers is not None:
        return distributed.run_local_workers(args)
    name = _new_study_name(args)
    _apply_threads(args)
    storage = open_storage(args.storage, name)
    options = _study_options(args)
    study, settings = find_study(storage, name, options)   # nothing written yet
    where = describe(args.storage, name)
    if args.n_trials is None and args.total is None and args.timeout is None \
            and settings.sampler != "grid":
        raise TuningError("give --n-trials N (N more trials), --total T (until the study has "
                          "T finished trials) or --timeout SECONDS")
    settings.check_data_sizes()
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
        study, settings = create_or_open(storage, name, settings, options, 0)
    out.study = study
    # a trial left RUNNING by a process of this machine that died (SIGKILL, out of memory,
    # power) is marked FAIL and its configuration queued again, to run first
    for trial, action, why in workers.fail_stale(study):
        if action == "failed":
            out.print(f"trial {trial.number}: its process died ({why}); marked FAIL and "
                      f"queued again")
    trials_before = study.get_trials(deepcopy=False)
    n_before = len(trials_before)
    finished_before = {t.number for t in trials_before if t.state.is_finished()}
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

    n_trials = args.n_trials
    finished = []
    started = time.perf_counter()

    def print_trial(_study, trial):
        finished.append(trial.number)
        out.print(report.trial_line(trial, names) + "  " + report.progress_text(
            len(finished), n_trials, time.perf_counter() - started))

    callbacks = [print_trial]
    if args.total is not None:
        missing = args.total - done
        if missing <= 0:
            out.print(f"the study already has {done} finished trials (--total {args.total}); "
                      f"nothing to run")
            n_trials = 0
        else:
            n_trials = missing if n_trials is None else min(n_trials, missing)
            callbacks.append(optuna.study.MaxTrialsCallback(args.total,
                                                            states=report.FINISHED_OK))
    if settings.sampler == "grid":
        out.print(f"grid of {grid_size(settings)} points: {settings.grid['axes']}")

    if n_trials != 0:
        if "f" not in objective:
            load_data()
        out.print(objective["line"])
        identity = workers.worker_identity()

        def owned(trial):      # who runs the trial: a later run can tell if it died
            trial.set_user_attr(workers.WORKER_ATTR, {**identity, "trial": trial.number})
            return objective["f"](trial)

        start = time.perf_counter()
        try:
            study.optimize(owned, n_trials=n_trials, timeout=args.timeout,
                           catch=(Exception,), callbacks=callbacks)
        except KeyboardInterrupt:
            _report_interrupt(study, finished_before, args, name, where)
            return EXIT_INTERRUPTED
        if out.broken:
            return EXIT_BROKEN_PIPE
        out.print(f"ran {len(finished)} trials in {time.perf_counter() - start:.1f}s")
    if out.broken:
        return EXIT_BROKEN_PIPE
    try:
        report.print_closing(study, settings, name, args.storage)
    except BrokenPipeError:
        _silence(sys.stdout)
        return EXIT_BROKEN_PIPE
    return 0


def _report_interrupt(study, finished_before, args, name, where) -> None:
    """After Ctrl-C: queue the interrupted trial's configuration again, say what to do."""
    failed = [t for t in study.get_trials(deepcopy=False)
              if t.number not in finished_before and t.state == TrialState.FAIL
              and t.user_attrs.get("stop_reason") == "interrupted"]
    what = "no trial was in progress"
    if failed:
        trial = failed[-1]
        requeued, note = workers.requeue_failed(study, trial)
        what = (f"trial {trial.number} was marked FAIL and queued again (the next run runs "
                f"it first)" if requeued else f"trial {trial.number} was marked FAIL; {note}")
    done = len(study.get_trials(deepcopy=False, states=report.FINISHED_OK))
    _err(f"\ninterrupted: {what}; the study's {done} finished trials are kept in {where}.\n"
         f"continue with: {_resume_command(args, name)}")


def _version_text() -> str:
    from importlib import metadata  # noqa: PLC0415
    try:
        ours = metadata.version("minidl-tuning")
    except metadata.PackageNotFoundError:   # run from a source tree that is not installed
        ours = "(not installed)"
    return f"tuning {ours} (Optuna {optuna.__version__})"


def cmd_studies(args) -> int:
    """One line per study: its name, where it is, trials, finished trials, best value."""
    if args.storage is not None:
        places = [(args.storage, open_storage(args.storage, None, must_exist=True,
                                              write=False))]
    else:
        files = sorted(Path("studies").glob("*.log"))
        if not files:
            raise TuningError("no studies here: ./studies/ holds no journal file; give "
                              "--storage (or set OPTUNA_STORAGE)")
        places = [(str(f), open_storage(str(f), None, must_exist=True, write=False))
                  for f in files]
    rows = []
    for where, storage in places:
        for name in study_names(storage):
            study = optuna.load_study(study_name=name, storage=storage)
            trials = study.get_trials(deepcopy=False)
            finished = sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
            if len(study.directions) > 1:    # several objectives: the Pareto front's size
                front = len(study.best_trials)
                best = f"front of {front}" if front else "-"
            else:
                try:
                    best = f"{study.best_value:.4f}"
                except (ValueError, RuntimeError):    # no complete trial yet
                    best = "-"
            rows.append((name, where, str(len(trials)), str(finished), best))
    header = ("study", "storage", "trials", "finished", "best value")
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header))]
    for row in [header] + rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    return 0


def cmd_best(args) -> int:
    study, settings = _open_existing(args)
    if args.json:
        print(report.dumps(report.best_dict(study, settings)))
    else:
        print(report.best_text(study, settings))
    return 0


def cmd_trials(args) -> int:
    study, settings = _open_existing(args)
    if args.csv:
        report.write_trials_csv(study, settings, sys.stdout)
    elif args.json:
        print(report.trials_json(study))
    else:
        print(report.trials_table(study, settings))
        print(report.summary_line(study))
    return 0


def parse_params(text: str) -> dict:
    try:
        params = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TuningError(f"--params is not valid JSON ({exc}): {text}") from None
    if not isinstance(params, dict) or not params:
        raise TuningError(f"--params: expected a non-empty JSON object like "
                          f'\'{{"learn_rate": 0.001}}\', got {text}')
    return params


def check_params(space_name: str, params: dict, outside_range: bool = False) -> list:
    """Refuse unknown names and values no trial can use, and (unless ``outside_range``)
    numbers outside the space's ranges; return warnings (``tuning.spaces.check_values``)."""
    try:
        return check_values(space_name, params, outside_range=outside_range)
    except ValueError as exc:
        raise TuningError(f"--params: {exc}") from None


def cmd_enqueue(args) -> int:
    params = parse_params(args.params)
    name = _new_study_name(args)
    storage = open_storage(args.storage, name)
    options = _study_options(args)
    study, settings = find_study(storage, name, options)   # nothing written yet
    for message in check_params(settings.space, params, args.outside_range):
        _err(f"warning: {message}")
    if settings.sampler == "grid":
        missing = sorted(set(settings.grid["axes"]) - set(params))
        if missing:
            raise TuningError(f"--params: a grid study needs every grid parameter; missing "
                              f"{', '.join(missing)}")
    if study is None:
        study, settings = create_or_open(storage, name, settings, options, 0)
    study.enqueue_trial(params, user_attrs={"enqueued": True})
    print(f"enqueued in study {name!r} ({describe(args.storage, name)}): "
          f"{report.format_params(params)}; the next trial started on this study evaluates it")
    return 0


def cmd_plot(args) -> int:
    study, _ = _open_existing(args)
    from .plots import write_plots  # noqa: PLC0415 - matplotlib only when plotting
    written, skipped = write_plots(study, args.out)
    for message in skipped:
        print(message)
    for path in written:
        print(f"wrote {path}")
    print(f"{len(written)} plots in {args.out}")
    return 0


def check_out_dir(out: str) -> Path:
    """TuningError unless ``out`` is a folder that exists or can be made, and is writable.

    Checked before any training, so that a retrain is not lost at the end.
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


def cmd_retrain(args) -> int:
    study, settings = _open_existing(args)
    check_out_dir(args.out)
    from .data import TRAIN_IMAGES  # noqa: PLC0415
    if args.train_size is not None and args.train_size > TRAIN_IMAGES:
        raise TuningError(f"--train-size {args.train_size}: there are {TRAIN_IMAGES} training "
                          f"images; give at most {TRAIN_IMAGES}, or leave it out for all")
    _apply_threads(args)
    from .retrain import choose_trial, retrain_best  # noqa: PLC0415 - the training stack
    choose_trial(study, args.trial)     # a wrong --trial is refused before any training
    tty = sys.stderr.isatty() and not args.quiet
    result = retrain_best(study, settings, args.out, epochs=args.epochs,
                          train_size=args.train_size, device=args.device, progress=tty,
                          log=None if (args.quiet or tty) else _err, trial=args.trial)
    print(f"retrained trial {result['trial']} ({settings.space}) on {result['train_size']} "
          f"images for {result['epochs']} epochs in {result['train_seconds']:.1f}s")
    in_study = ("" if result["validation_error"] is None else
                f"; validation error in the study {result['validation_error']:.4f}")
    if result.get("objectives"):
        in_study = "; in the study " + report.format_values(
            result["objectives"].values(), list(result["objectives"]))
    print(f"test accuracy: {result['test_accuracy']:.4f} (test error "
          f"{result['test_error']:.4f}{in_study})")
    from .results import per_class_table  # noqa: PLC0415
    print(per_class_table(result["per_class"]))
    print(f"wrote {args.out}/: model.npz, result.json, confusion_matrix.png, "
          f"misclassified.png, model.txt")
    print(f"use it: tuning.load_model({str(args.out)!r}) returns the trained model")
    return 0


def _show_warning(message, category, filename, lineno, file=None, line=None):
    """Warnings as one line on stderr (``warning: ...``), not Python's two-line format."""
    _err(f"warning: {message}")


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
        try:
            return args.handler(args)
        except KeyboardInterrupt:
            _err(f"\ntuning {args.command}: interrupted")
            return EXIT_INTERRUPTED
        except BrokenPipeError:  # `tuning trials | head`: the reader left; say nothing more
            _silence(sys.stdout)
            return EXIT_BROKEN_PIPE
        except Exception as exc:  # noqa: BLE001 - every error becomes one clear line
            if debug:
                traceback.print_exc()
            _err(f"tuning {args.command}: error: {_describe_error(exc)}")
            if not isinstance(exc, (TuningError, FileNotFoundError)) and not debug:
                _err("(an unexpected error: run the command again with --debug for the "
                     "traceback)")
            return 1


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
