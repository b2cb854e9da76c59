"""``python -m tuning`` (or the ``tuning`` console script): run, inspect and use studies.

    python -m tuning run --space lab-mlp --n-trials 20 --study-name lab-mlp-demo
    python -m tuning best --study-name lab-mlp-demo [--json]
    python -m tuning trials --study-name lab-mlp-demo [--csv | --json]
    python -m tuning enqueue --study-name lab-mlp-demo --params '{"learn_rate": 0.001}'
    python -m tuning plot --study-name lab-mlp-demo --out studies/lab-mlp-demo-plots
    python -m tuning retrain --study-name lab-mlp-demo --out studies/lab-mlp-demo-model

Scaling out (``tuning.distributed``): ``create``, ``worker``, ``fail-stale``,
``grpc-proxy`` and ``run --workers K``.

A study lives in ``./studies/<study-name>.log`` (an Optuna journal file) unless
``--storage`` names another file or an Optuna URL.  ``run`` on an existing study
continues it with the settings stored in it: ``--n-trials N`` runs N more trials in this
session; ``--total T`` runs until the study holds T finished (complete or pruned)
trials, whichever session or process ran them.  Ctrl-C marks the trial in progress
FAIL, keeps every finished trial, and exits with status 130.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings

import optuna
from optuna.trial import TrialState

from . import distributed, report, workers
from .spaces import SPACES, get_space
from .argtypes import positive_int, non_negative_int, positive_float
from .storage import TuningError, describe, open_storage
from .study import PRUNERS, SAMPLERS, grid_size, make_objective, open_study

STUDY_OPTIONS = ("space", "epochs", "train_size", "val_size", "seed", "sampler", "pruner",
                 "grid_file")
EXIT_INTERRUPTED = 130


def _train_size(text: str):
    return "all" if text == "all" else positive_int(text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tuning", description="Optuna studies over minidl models on Fashion-MNIST.",
        epilog="Run `python -m tuning COMMAND --help` for a command's options.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    where = argparse.ArgumentParser(add_help=False)
    where.add_argument("--study-name", help="the study's name (run/enqueue: defaults to "
                       "the --space name)")
    where.add_argument("--storage", metavar="URL_OR_PATH",
                       help="an Optuna journal file, or an Optuna storage URL (sqlite:///x.db, "
                       "postgresql://...); default: ./studies/<study-name>.log")

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
    g.add_argument("--pruner", choices=PRUNERS, help="default median")
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

    best = sub.add_parser("best", parents=[where], help="the best value and hyperparameters")
    best.add_argument("--json", action="store_true")
    best.set_defaults(handler=cmd_best)

    trials = sub.add_parser("trials", parents=[where], help="every trial as a table")
    fmt = trials.add_mutually_exclusive_group()
    fmt.add_argument("--csv", action="store_true", help="CSV on standard output")
    fmt.add_argument("--json", action="store_true", help="JSON on standard output")
    trials.set_defaults(handler=cmd_trials)

    enqueue = sub.add_parser("enqueue", parents=[where, settings],
                             help="queue a configuration to be evaluated next (manual search)")
    enqueue.add_argument("--params", required=True, metavar="JSON",
                         help='e.g. \'{"learn_rate": 0.001, "batch_size": 64}\'; parameters '
                         'left out are sampled')
    enqueue.set_defaults(handler=cmd_enqueue)

    plot = sub.add_parser("plot", parents=[where], help="write the study's plots as PNG")
    plot.add_argument("--out", required=True, metavar="DIR")
    plot.set_defaults(handler=cmd_plot)

    retrain = sub.add_parser("retrain", parents=[where, running],
                             help="train the best configuration on train+val, test it once")
    retrain.add_argument("--out", required=True, metavar="DIR")
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
    name = args.study_name or args.space
    if not name:
        raise TuningError("give --study-name, or --space to name a new study after its space")
    return name


def _open_existing(args):
    storage = open_storage(args.storage, args.study_name, must_exist=True)
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
    cmd = f"python -m tuning run --study-name {name}"
    if args.storage:
        cmd += f" --storage {args.storage}"
    if args.total:
        return cmd + f" --total {args.total}"
    return cmd + " --n-trials N"


# -- commands -----------------------------------------------------------------------------

def cmd_run(args) -> int:
    if args.workers is not None:
        return distributed.run_local_workers(args)
    name = _new_study_name(args)
    _apply_threads(args)
    storage = open_storage(args.storage, name)
    study, settings = open_study(storage, name, _study_options(args), create=True)
    where = describe(args.storage, name)
    if args.n_trials is None and args.total is None and args.timeout is None \
            and settings.sampler != "grid":
        raise TuningError("give --n-trials N (N more trials), --total T (until the study has "
                          "T finished trials) or --timeout SECONDS")
    # a trial left RUNNING by a process of this machine that died (SIGKILL, out of memory,
    # power) is marked FAIL and its configuration queued again, to run first
    for trial, action, why in workers.fail_stale(study):
        if action == "failed":
            print(f"trial {trial.number}: its process died ({why}); marked FAIL and queued "
                  f"again", flush=True)
    trials_before = study.get_trials(deepcopy=False)
    n_before = len(trials_before)
    finished_before = {t.number for t in trials_before if t.state.is_finished()}
    done = len(study.get_trials(deepcopy=False, states=report.FINISHED_OK))
    train_size = "all" if settings.train_size is None else settings.train_size
    print(f"study {name!r} in {where}: space {settings.space}, sampler {settings.sampler}, "
          f"pruner {settings.pruner}, {settings.epochs} epochs, train {train_size} / val "
          f"{settings.val_size} images, seed {settings.seed}; {n_before} trials so far "
          f"({done} finished)", flush=True)

    n_trials = args.n_trials
    finished = []

    def print_trial(_study, trial):
        finished.append(trial.number)
        print(report.trial_line(trial), flush=True)

    callbacks = [print_trial]
    if args.total is not None:
        missing = args.total - done
        if missing <= 0:
            print(f"the study already has {done} finished trials (--total {args.total}); "
                  f"nothing to run")
            n_trials = 0
        else:
            n_trials = missing if n_trials is None else min(n_trials, missing)
            callbacks.append(optuna.study.MaxTrialsCallback(args.total,
                                                            states=report.FINISHED_OK))
    if settings.sampler == "grid":
        print(f"grid of {grid_size(settings)} points: {settings.grid['axes']}")

    if n_trials != 0:
        tty = sys.stderr.isatty() and not args.quiet
        log = None if args.quiet else _err
        t0 = time.perf_counter()
        objective = make_objective(settings, device=args.device, progress=tty, log=log)
        print(f"data: {len(objective.train)} training / {len(objective.val)} validation "
              f"images ({time.perf_counter() - t0:.1f}s to load)", flush=True)
        identity = workers.worker_identity()

        def owned(trial):      # who runs the trial: a later run can tell if it died
            trial.set_user_attr(workers.WORKER_ATTR, {**identity, "trial": trial.number})
            return objective(trial)

        start = time.perf_counter()
        try:
            study.optimize(owned, n_trials=n_trials, timeout=args.timeout,
                           catch=(Exception,), callbacks=callbacks)
        except KeyboardInterrupt:
            _report_interrupt(study, finished_before, args, name, where)
            return EXIT_INTERRUPTED
        print(f"ran {len(finished)} trials in {time.perf_counter() - start:.1f}s")
    report.print_closing(study, settings, name, args.storage)
    return 0


def _report_interrupt(study, finished_before, args, name, where) -> None:
    failed = [t.number for t in study.get_trials(deepcopy=False)
              if t.number not in finished_before and t.state == TrialState.FAIL
              and t.user_attrs.get("stop_reason") == "interrupted"]
    done = len(study.get_trials(deepcopy=False, states=report.FINISHED_OK))
    what = (f"trial {failed[-1]} was marked FAIL" if failed
            else "no trial was in progress")
    _err(f"\ninterrupted: {what}; the study's {done} finished trials are kept in {where}.\n"
         f"continue with: {_resume_command(args, name)}")


def cmd_best(args) -> int:
    study, settings = _open_existing(args)
    if args.json:
        print(json.dumps(report.best_dict(study, settings), indent=2))
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


def check_params(space_name: str, params: dict) -> list:
    """Refuse unknown names and impossible values; return warnings (values out of range)."""
    space = get_space(space_name)
    unknown = sorted(set(params) - set(space.defaults))
    if unknown:
        raise TuningError(f"--params: unknown parameter(s) {', '.join(unknown)} for space "
                          f"{space_name!r}; its parameters are {', '.join(space.param_names)}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            space.function(optuna.trial.FixedTrial({**space.defaults, **params}))
        except (ValueError, TypeError) as exc:
            raise TuningError(f"--params: {exc}") from None
    return [str(w.message) for w in caught]


def cmd_enqueue(args) -> int:
    params = parse_params(args.params)
    name = _new_study_name(args)
    storage = open_storage(args.storage, name)
    study, settings = open_study(storage, name, _study_options(args), create=True)
    for message in check_params(settings.space, params):
        _err(f"warning: {message}")
    if settings.sampler == "grid":
        missing = sorted(set(settings.grid["axes"]) - set(params))
        if missing:
            raise TuningError(f"--params: a grid study needs every grid parameter; missing "
                              f"{', '.join(missing)}")
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


def cmd_retrain(args) -> int:
    study, settings = _open_existing(args)
    _apply_threads(args)
    from .retrain import retrain_best  # noqa: PLC0415 - imports the training stack
    tty = sys.stderr.isatty() and not args.quiet
    result = retrain_best(study, settings, args.out, epochs=args.epochs,
                          train_size=args.train_size, device=args.device, progress=tty,
                          log=None if (args.quiet or tty) else _err)
    print(f"retrained trial {result['trial']} ({settings.space}) on {result['train_size']} "
          f"images for {result['epochs']} epochs in {result['train_seconds']:.1f}s")
    print(f"test accuracy: {result['test_accuracy']:.4f} (test error "
          f"{result['test_error']:.4f}; validation error in the study "
          f"{result['validation_error']:.4f})")
    print(f"wrote {args.out}/model.npz and {args.out}/result.json")
    return 0


def main(argv=None) -> int:
    """Entry point; returns the exit status (0 ok, 1 error, 2 usage, 130 interrupted)."""
    args = build_parser().parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        return args.handler(args)
    except TuningError as exc:
        _err(f"tuning {args.command}: error: {exc}")
        return 1
    except KeyboardInterrupt:
        _err(f"\ntuning {args.command}: interrupted")
        return EXIT_INTERRUPTED
    except FileNotFoundError as exc:  # minidl.data.DataNotFoundError says how to get the data
        _err(f"tuning {args.command}: error: {exc}")
        return 1
    except BrokenPipeError:  # `tuning trials | head`: the reader left; say nothing more
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
