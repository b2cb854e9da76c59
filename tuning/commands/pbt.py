"""``tuning pbt``: population-based training of one space, in the study's storage.

The engine is ``tuning.pbt``: one trial per member per interval, the next generation
queued when one ends, the worker loop of ``tuning.workers`` running the intervals.  This
process trains intervals itself, or with ``--workers K`` starts K processes that do
(``tuning pbt --join``, which also joins a population from another machine), then tests
the best member's final weights once and writes them as ``tuning retrain`` does, with
the winner's schedule and the population's lineage drawn.  Ctrl-C (or SIGTERM) loses
at most the intervals in progress; the same command continues.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .. import report, workers
from ..argtypes import non_negative_int, positive_float, positive_int
from ..errors import TuningError, WorkerInterrupted
from ..interrupts import interrupt_signals
from ..spaces import SPACES
from ..storage import describe, open_storage, refuse_sqlite
from ..study import StudySettings, create_or_open, find_study, settings_text
from . import options
from .worker import interrupted_text

NAME = "pbt"
HELP = "population-based training: members train in intervals, the worst copy the best"
POLL_SECONDS = 0.5


def _lineage_text() -> str:
    import textwrap  # noqa: PLC0415

    from ..pbt import fixed_params, mutable_params  # noqa: PLC0415
    lines = []
    for name in SPACES:
        lines += textwrap.wrap(f"{name}: explore changes {', '.join(mutable_params(name))};",
                               92, initial_indent="  ", subsequent_indent="    ")
        lines += textwrap.wrap(f"fixed: {', '.join(fixed_params(name))}", 92,
                               initial_indent="    ", subsequent_indent="      ")
    return "\n".join(lines)


def _description() -> str:
    return (
        "Population-based training (Jaderberg et al. 2017): a population of --population "
        "members of\none space trains in intervals of --epochs epochs. After each "
        "generation the bottom --quantile\nof the members copy the weights and optimizer "
        "state of a random top-quantile member (exploit)\nand perturb its hyperparameters "
        "(explore: each one times a --perturb-factors factor,\nclipped to the space, or "
        "drawn afresh with --resample-probability). Each interval is one\ntrial of the "
        "study (user attributes member, generation, parent), so `trials`, `best` and\n"
        "`studies` read it. The result is the best member's final weights, tested once "
        "(no retrain),\nwritten to --out with schedule.png and lineage.png.\n\n"
        "What a lineage keeps (the network, the optimizer family, hypergradient on/off; "
        "lr_schedule is\nnone: the perturbations are the schedule) and what explore "
        "changes, per space:\n" + _lineage_text())


DESCRIPTION = _description()


def factors_list(text: str) -> tuple:
    """``--perturb-factors 0.8,1.2``."""
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, such as "
                                         f"0.8,1.2, got {text!r}") from None
    return values


def add_arguments(parser) -> None:
    from ..pbt import DEFAULT_EPOCHS  # noqa: PLC0415
    from ..population import (DEFAULT_POPULATION, DEFAULT_QUANTILE,  # noqa: PLC0415
                              DEFAULT_RESAMPLE_PROBABILITY)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    options.add_study_location(parser)
    g = parser.add_argument_group(
        "population", "stored in a new population; an existing one keeps its own (giving a "
        "different value is an error)")
    options.add_space(g)
    options.add_data_options(g, epochs_help=f"epochs per interval, between two rankings "
                             f"(default {DEFAULT_EPOCHS})")
    options.add_seed(g, help="data split, the first generation's draws, weights, batch order "
                     "and the copy decisions (default 0)")
    g.add_argument("--population", type=int, metavar="P",
                   help=f"members (default {DEFAULT_POPULATION}, at least 2)")
    g.add_argument("--quantile", type=float, metavar="Q",
                   help=f"the fraction of members in the top and in the bottom quantile "
                   f"(default {DEFAULT_QUANTILE}, Ray Tune's; in (0, 0.5])")
    g.add_argument("--resample-probability", type=float, metavar="P",
                   help=f"chance that explore draws a hyperparameter afresh instead of "
                   f"scaling it (default {DEFAULT_RESAMPLE_PROBABILITY})")
    g.add_argument("--perturb-factors", type=factors_list, metavar="F,F",
                   help="explore multiplies a hyperparameter by one of these (default 0.8,1.2)")
    g.add_argument("--max-madds", type=positive_float, metavar="M",
                   help="cost gate: the first generation's random networks cost at most M "
                   "multiply-adds per image (minidl.summary; e.g. 8e6); default none")
    parser.add_argument("--checkpoint-dir", metavar="DIR",
                        help="the members' checkpoints (default: <study-name>-pbt beside a "
                        "journal file or SQLite database, else ./studies/<study-name>-pbt; "
                        "workers on several machines need one folder they all see)")
    b = parser.add_argument_group("budget (at least one)")
    b.add_argument("--generations", type=positive_int, metavar="G",
                   help="until every member has trained G intervals (stored: run again with "
                   "a larger G to go on)")
    b.add_argument("--timeout", type=positive_float, metavar="SECONDS",
                   help="stop by then: no interval starts that would end later, judged by "
                   "its parent's duration")
    options.add_running(parser)
    parser.add_argument("--workers", type=positive_int, metavar="K",
                        help="train in K local processes sharing the population (each gets "
                        "cores // K threads unless --threads is given)")
    parser.add_argument("--join", action="store_true",
                        help="join an existing population as one more worker (e.g. from "
                        "another machine): train intervals, write no result")
    parser.add_argument("--rank", type=non_negative_int, metavar="R",
                        help="this worker's number, in its trials' worker attribute")
    parser.add_argument("--out", metavar="DIR",
                        help="the result folder (default <checkpoint-dir>/result); files of "
                        "its names that an earlier `tuning pbt` did not write there are kept, "
                        "and the command refuses before training: give --overwrite, or "
                        "another folder")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace such files in --out")
    parser.add_argument("--keep-checkpoints", action="store_true",
                        help="keep every interval's checkpoint (default: those older than "
                        "the previous generation are deleted)")
    options.add_heartbeat(parser)


# -- the population's settings ------------------------------------------------------------

_PBT_OPTIONS = {"population": "--population", "quantile": "--quantile",
                "resample_probability": "--resample-probability",
                "factors": "--perturb-factors", "max_madds": "--max-madds"}


def _given_pbt(args) -> dict:
    given = {k: getattr(args, k if k != "factors" else "perturb_factors") for k in _PBT_OPTIONS}
    return {k: v for k, v in given.items() if v is not None}


def _new_pbt(args, name: str):
    from ..pbt import checkpoint_dir  # noqa: PLC0415
    from ..population import PBTSettings  # noqa: PLC0415
    folder = Path(args.checkpoint_dir).absolute() if args.checkpoint_dir else \
        checkpoint_dir(args.storage, name)
    try:
        return PBTSettings(**_given_pbt(args), generations=args.generations,
                           checkpoint_dir=str(folder))
    except (TypeError, ValueError) as exc:
        raise TuningError(_option_names(str(exc))) from None


def _option_names(text: str) -> str:
    """``PBT quantile: ...`` -> ``--quantile: ...`` (the option the user typed)."""
    for field, option in {**_PBT_OPTIONS, "generations": "--generations"}.items():
        text = text.replace(f"PBT {field}:", f"{option}:")
    return text


def _existing_pbt(study, args, name: str):
    from dataclasses import replace  # noqa: PLC0415

    from ..population import load_pbt_settings  # noqa: PLC0415
    pbt = load_pbt_settings(study)
    if pbt is None:
        raise TuningError(f"study {name!r} is not a population (it was made by `tuning run` "
                          f"or `create`); choose another --study-name for `tuning pbt`")
    problems = []
    for field, value in _given_pbt(args).items():
        stored = getattr(pbt, field)
        if (tuple(value) if field == "factors" else value) != stored:
            shown = ",".join(f"{v:g}" for v in value) if field == "factors" else value
            problems.append(f"{_PBT_OPTIONS[field]} {shown} (the population has {stored})")
    if problems:
        raise TuningError(f"population {name!r} exists with other settings: "
                          + "; ".join(problems) + ". Leave these options out to continue it.")
    if args.generations is not None and args.generations != pbt.generations and not args.join:
        pbt = replace(pbt, generations=args.generations)
        study.set_user_attr("pbt", pbt.to_dict())
    if args.checkpoint_dir is not None:   # this machine's path to the shared folder
        pbt = replace(pbt, checkpoint_dir=str(Path(args.checkpoint_dir).absolute()))
    return pbt


# -- the command ---------------------------------------------------------------------------

def run(args) -> int:
    name = options.new_study_name(args)
    if args.workers is not None and args.join:
        raise TuningError("--join makes this process one worker; leave out --workers")
    if args.workers is None:
        options.apply_threads(args)
        storage = workers.open_worker_storage(args.storage, name, args.heartbeat,
                                              must_exist=args.join, sqlite=True)
    else:
        if args.workers > 1:
            refuse_sqlite(args.storage, name)
        storage = open_storage(args.storage, name)
    given = {k: getattr(args, k) for k in ("space", "epochs", "train_size", "val_size", "seed")}
    study, settings = find_study(storage, name, given) if not args.join else \
        _join_study(storage, name, given)
    if study is None:
        from ..pbt import DEFAULT_EPOCHS  # noqa: PLC0415
        settings = StudySettings.from_options({**given, "epochs": args.epochs or DEFAULT_EPOCHS,
                                               "sampler": "random", "pruner": "none"})
        pbt = _new_pbt(args, name)
        _check_budget(args, pbt)
        out = _out_dir(args, pbt)
        from ..data import check_data  # noqa: PLC0415
        check_data()
        study, settings = create_or_open(storage, name, settings, given, 0)
        if study.user_attrs.get("pbt") is None:
            study.set_user_attr("pbt", pbt.to_dict())
        else:   # another process made it in between
            pbt = _existing_pbt(study, args, name)
    else:
        pbt = _existing_pbt(study, args, name)
        _check_budget(args, pbt)
        out = _out_dir(args, pbt)
    if args.workers is None:
        return _run_here(args, name, study, settings, pbt, out)
    return _run_workers(args, name, study, settings, pbt, out)


def _join_study(storage, name, given):
    from ..study import open_study  # noqa: PLC0415
    return open_study(storage, name, given)


def _check_budget(args, pbt) -> None:
    if pbt.generations is None and args.timeout is None:
        raise TuningError("give --generations G (every member trains G intervals) or "
                          "--timeout SECONDS, or both")


def _out_dir(args, pbt):
    if args.join:
        return None
    from ..pbt import output_folder  # noqa: PLC0415
    out = Path(args.out) if args.out else Path(pbt.checkpoint_dir) / "result"
    options.check_out_dir(str(out))
    folder = output_folder(out, overwrite=args.overwrite)
    folder.check()          # before any training: a refusal loses nothing
    return folder


def _header(name, where, settings, pbt, study) -> str:
    from ..population import Population  # noqa: PLC0415
    view = Population(study, pbt)
    so_far = "new" if view.generation is None else (
        f"at generation {view.generation}, {view.n_finished()} intervals finished")
    gens = "until stopped" if pbt.generations is None else f"{pbt.generations} generations"
    return (f"population {name!r} in {where} ({so_far}): {pbt.population} members, "
            f"{settings_text(settings).replace(' epochs', ' epochs per interval')}; "
            f"{gens}; quantile {pbt.quantile:g}, resample probability "
            f"{pbt.resample_probability:g}, factors {', '.join(f'{f:g}' for f in pbt.factors)}"
            + (f", cost gate {pbt.max_madds:g} multiply-adds" if pbt.max_madds else "")
            + f"; checkpoints in {pbt.checkpoint_dir}")


def interval_line(trial) -> str:
    """One line for a finished interval: member, generation, where it started from."""
    from ..population import EXPLOITED, EXPLORED, PARENT, is_interval, key_of  # noqa: PLC0415
    if not is_interval(trial):
        return report.trial_line(trial)
    member, generation = key_of(trial)
    origin = ""
    if trial.user_attrs.get(EXPLOITED) is not None:
        how = ", ".join(f"{k} {v}" for k, v in (trial.user_attrs.get(EXPLORED) or {}).items())
        origin = (f"  (copied member {trial.user_attrs[EXPLOITED]}, trial "
                  f"{trial.user_attrs.get(PARENT)}; {how or 'nothing perturbed'})")
    return f"member {member} gen {generation}: {report.trial_line(trial)}{origin}"


def resume_command(args, name: str) -> str:
    cmd = f"{report.tuning_command()} pbt"
    if args.workers is not None:
        cmd += f" --workers {args.workers}"
    cmd += f" --study-name {name}"
    if args.storage:
        cmd += f" --storage {args.storage}"
    if args.timeout is not None:
        cmd += " --timeout SECONDS"
    return cmd


def _run_here(args, name, study, settings, pbt, out) -> int:
    from ..data import study_data  # noqa: PLC0415
    from ..pbt import IntervalObjective, PopulationFailed, run_population  # noqa: PLC0415
    where = describe(args.storage, name)
    print(_header(name, where, settings, pbt, study), flush=True)
    t0 = time.perf_counter()
    train, val = study_data(settings.val_size, settings.seed, settings.train_size)
    print(f"data: {len(train)} training / {len(val)} validation images "
          f"({time.perf_counter() - t0:.1f}s to load)", flush=True)
    log = None if args.quiet else options.err
    objective = IntervalObjective(train, val, settings.space, settings.epochs, settings.seed,
                                  pbt, device=args.device, log=log)
    label = workers.worker_label(workers.worker_identity(args.rank))
    prefix = f"[{label}] " if args.join else ""
    started = time.perf_counter()
    try:
        with interrupt_signals():
            why = run_population(study, objective, settings.space, pbt, settings.seed,
                                 timeout=args.timeout,
                                 identity=workers.worker_identity(args.rank),
                                 keep_checkpoints=args.keep_checkpoints,
                                 on_trial=lambda t: print(prefix + interval_line(t), flush=True),
                                 log=lambda text: print(prefix + text, flush=True),
                                 on_wait=log)
    except WorkerInterrupted as exc:
        options.err(f"\ninterrupted: {interrupted_text(exc)}; the finished intervals are "
                    f"kept in {where}.\ncontinue with: {resume_command(args, name)}")
        return options.EXIT_INTERRUPTED
    except PopulationFailed as exc:
        raise TuningError(f"population {name!r}: {exc}") from None
    print(f"{prefix}stopped after {time.perf_counter() - started:.1f}s: {why}", flush=True)
    if args.join:
        return 0
    return _finish(args, name, study, settings, pbt, out)


def _finish(args, name, study, settings, pbt, out) -> int:
    from ..pbt import write_result  # noqa: PLC0415
    result = write_result(study, settings, pbt, out, device=args.device)
    out = out.path
    print(f"result: member {result['member']}'s weights after generation "
          f"{result['generation']} (trial {result['trial']}, {result['epochs']} epochs): "
          f"validation error {result['validation_error']:.4f}, test accuracy "
          f"{result['test_accuracy']:.4f}")
    steps = [f"gen {s['generation']} m{s['member']}" + (" (copy)" if s["exploited"] is not None
                                                         else "") for s in result["schedule"]]
    print(f"its lineage: {' -> '.join(steps)}")
    print(f"wrote {out}/: model.npz, result.json, confusion_matrix.png, misclassified.png, "
          f"model.txt, schedule.png, lineage.png")
    print(f"use it: tuning.load_model({str(out)!r}) returns the trained model")
    return 0


def _run_workers(args, name, study, settings, pbt, out) -> int:
    """K ``tuning pbt --join`` processes on this machine, their intervals printed here."""
    from ..data import check_data  # noqa: PLC0415
    from ..pbt import start_population  # noqa: PLC0415
    check_data()
    where = describe(args.storage, name)
    print(_header(name, where, settings, pbt, study), flush=True)
    start_population(study, settings.space, pbt, settings.seed)
    k = args.workers
    threads = args.threads or workers.default_threads(k)
    print(f"starting {k} workers with {threads} thread{'s' * (threads > 1)} each", flush=True)
    command = [sys.executable, "-m", "tuning", "pbt", "--join", "--study-name", name,
               "--storage", where, "--threads", str(threads), "--device", args.device,
               "--heartbeat", str(args.heartbeat), "--checkpoint-dir", pbt.checkpoint_dir,
               "--quiet"]
    if args.timeout is not None:
        command += ["--timeout", str(args.timeout)]
    if args.keep_checkpoints:
        command.append("--keep-checkpoints")
    printed = {t.number for t in study.get_trials(deepcopy=False) if t.state.is_finished()}
    procs, interrupted = options.run_worker_processes(command, k, threads, study, printed,
                                                      interval_line, POLL_SECONDS)
    options.fail_dead_workers(study, procs)
    if interrupted:
        options.err(f"\ninterrupted: the intervals in progress were marked FAIL and queued "
                    f"again; finished intervals are kept in {where}.\ncontinue with: "
                    f"{resume_command(args, name)}")
        return options.EXIT_INTERRUPTED
    failed = [(rank, p.returncode) for rank, p in enumerate(procs) if p.returncode != 0]
    if failed:
        raise TuningError("; ".join(f"worker w{rank} exited with status {code}"
                                    for rank, code in failed))
    return _finish(args, name, study, settings, pbt, out)
