"""``python -m benchmarks.search_methods``: fill the grid of cells, then write the report."""
from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path

from tuning.errors import WorkerInterrupted

from ..common import RESULTS_DIR, write_json, write_markdown
from ..machine import machine_info
from .cells import QUICK, RunSettings, cell_path, claim, read_cell, release, run_cell, save_cell
from .methods import DEFAULT_TASKS, METHODS, TASKS, get_method, get_task

DEFAULT_RESULTS = RESULTS_DIR / "search_methods"
QUICK_SEEDS = (0, 1)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.search_methods",
        description="Every search method on the same budget of work (training images "
                    "processed), over seeds; one JSON file per (task, method, seed) cell, "
                    "so a rerun skips finished cells and several processes can fill one grid.")
    p.add_argument("--tasks", nargs="+", choices=list(TASKS), default=list(DEFAULT_TASKS),
                   help=f"tasks to run (default {' '.join(DEFAULT_TASKS)})")
    p.add_argument("--methods", nargs="+", choices=[m.name for m in METHODS], default=None,
                   help="methods to run (default: every method available here)")
    p.add_argument("--seeds", nargs="+", type=int, default=None,
                   help="seeds to run (default per task: " + ", ".join(
                       f"{t.name} 0..{t.seeds - 1}" for t in TASKS.values()) + "; --quick 0 1)")
    p.add_argument("--budget", type=float, default=None, metavar="TRIALS",
                   help="work budget of a run, in full trials (a full trial is the task's "
                        "epochs x its training images); default per task: " + ", ".join(
                            f"{t.name} {t.budget_trials:g}" for t in TASKS.values()))
    p.add_argument("--results", type=Path, default=None,
                   help=f"folder of the cells and the report (default {DEFAULT_RESULTS}; "
                        f"--quick: a new temporary folder)")
    p.add_argument("--threads", type=int, default=1,
                   help="threads of each run (minidl.set_num_threads; default 1: one run "
                        "per core, start one process per core to fill the grid faster)")
    p.add_argument("--quick", action="store_true",
                   help=f"tiny data ({QUICK['train_size']} training and {QUICK['val_size']} "
                        f"validation images, {QUICK['epochs']} epochs, a budget of "
                        f"{QUICK['budget_trials']:g} full trials, seeds 0 1): proves the "
                        f"script, the numbers mean nothing")
    p.add_argument("--report-only", action="store_true",
                   help="run nothing: rebuild the tables and pictures from the saved cells")
    p.add_argument("--list", action="store_true",
                   help="list the tasks and methods (and why a method is not available)")
    return p


def list_methods() -> str:
    lines = ["tasks:"]
    for t in TASKS.values():
        lines.append(f"  {t.name:10s} {t.epochs} epochs, budget {t.budget_trials:g} full "
                     f"trials, threshold {t.threshold}, {t.seeds} seeds: {t.note}")
    lines.append("methods:")
    for m in METHODS:
        why = m.unavailable()
        where = "" if m.tasks is None else f" (only {', '.join(m.tasks)})"
        lines.append(f"  {m.name:18s} {m.label}{where}" + (f"  -- not available: {why}"
                                                             if why else ""))
    return "\n".join(lines)


def plan(args) -> tuple[list, dict]:
    """``([(seed, task, method)], {method: why skipped})``: seed by seed, so a grid cut
    short holds every method at the first seeds."""
    skipped = {}
    methods = [get_method(n) for n in args.methods] if args.methods else list(METHODS)
    for m in methods:
        why = m.unavailable()
        if why:
            skipped[m.name] = why
    usable = [m for m in methods if m.name not in skipped]
    cells = []
    seeds_of = {t: (args.seeds if args.seeds is not None else
                    (list(QUICK_SEEDS) if args.quick else list(range(get_task(t).seeds))))
                for t in args.tasks}
    for seed in sorted({s for seeds in seeds_of.values() for s in seeds}):
        for task in args.tasks:
            if seed in seeds_of[task]:
                cells += [(seed, task, m) for m in usable if m.runs_on(task)]
    return cells, skipped


def fill(args, results: Path, command: str, log=print) -> dict:
    """Run every cell of the plan that is neither saved nor claimed; counts by outcome."""
    import minidl  # noqa: PLC0415
    import optuna  # noqa: PLC0415

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    minidl.set_num_threads(args.threads)
    cells, skipped = plan(args)
    for name, why in skipped.items():
        log(f"skipping method {name}: {why}")
    settings = {t: RunSettings.for_task(t, args.budget, args.threads, args.quick)
                for t in args.tasks}
    counts = {"ran": 0, "done before": 0, "held by another process": 0, "failed": 0}
    t0 = time.perf_counter()
    for k, (seed, task, method) in enumerate(cells, start=1):
        path = cell_path(results, task, method.name, seed)
        if path.exists():
            diff = settings[task].differences(read_cell(path)["settings"])
            if diff:
                raise SystemExit(
                    f"search_methods: {path} was made with other settings: {'; '.join(diff)}. "
                    f"Give the same options, or another --results folder.")
            counts["done before"] += 1
            continue
        if not claim(path):
            log(f"cell {k}/{len(cells)}: {task} {method.name} seed {seed} is held by another "
                f"process; skipped")
            counts["held by another process"] += 1
            continue
        try:
            s = settings[task]
            log(f"cell {k}/{len(cells)}: {task} {method.name} seed {seed}: budget "
                f"{s.budget_images:,} images ({s.budget_images / s.full_trial:g} trials of "
                f"{s.epochs} epochs x {s.train_size:,}) [{time.perf_counter() - t0:.0f} s]")
            try:
                cell = run_cell(method, s, seed, log=log)
            except (KeyboardInterrupt, WorkerInterrupted):
                raise
            except Exception:    # one method's failure does not stop the others' cells
                log(f"cell {k}/{len(cells)}: {task} {method.name} seed {seed} FAILED (not "
                    f"saved; a rerun tries it again):\n{traceback.format_exc()}")
                counts["failed"] += 1
                continue
            cell["command"] = command
            save_cell(path, cell)
            counts["ran"] += 1
            test = (cell["retrain"] or {}).get("test_accuracy")
            log(f"cell {k}/{len(cells)} done: best "
                f"{'none' if cell['best'] is None else format(cell['best']['value'], '.4f')}, "
                f"test accuracy {'—' if test is None else format(test, '.4f')}, "
                f"{len(cell['trials'])} trials, work {cell['work']:,}, search "
                f"{cell['seconds']['search']:.1f} s + retrain "
                f"{cell['seconds']['retrain'] or 0:.1f} s, load "
                f"{cell['load_average']['start'][0]:.2f} -> "
                f"{cell['load_average']['end'][0]:.2f}")
        finally:
            release(path)
    log(f"cells: {counts['ran']} run, {counts['done before']} done before, "
        f"{counts['held by another process']} held by another process"
        + (f", {counts['failed']} FAILED" if counts["failed"] else ""))
    return {"counts": counts, "skipped": skipped}


def write_report(results: Path, skipped: dict, command: str, log=print) -> list:
    from .report import anytime_picture, markdown, summarize, to_json  # noqa: PLC0415

    summaries = summarize(results)
    if not summaries:
        log(f"no cells in {results / 'cells'}: nothing to report")
        return []
    machine = machine_info(with_torch=False)
    pictures = {task: f"anytime_{task}.png" for task in summaries}
    paths = [anytime_picture(task, s, results / pictures[task]) for task, s in summaries.items()]
    text = markdown(summaries, machine, command, skipped, pictures)
    paths.append(write_markdown(results, "search_methods", text))
    paths.append(write_json(results, "search_methods",
                            {"command": command, "machine": machine, "skipped": skipped,
                             "tasks": to_json(summaries)}))
    log(text)
    for p in paths:
        log(f"wrote {p}")
    return paths


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.list:
        print(list_methods())
        return 0
    if args.threads < 1:
        raise SystemExit(f"search_methods: --threads: expected at least 1, got {args.threads}")
    results = args.results
    if results is None:
        results = Path(tempfile.mkdtemp(prefix="search_methods_quick_")) if args.quick \
            else DEFAULT_RESULTS
    results = Path(results)
    log = lambda text: print(text, flush=True)  # noqa: E731
    command = "python -m benchmarks.search_methods " + " ".join(
        sys.argv[1:] if argv is None else [str(a) for a in argv])
    skipped = {}
    if not args.report_only:
        previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
        try:
            filled = fill(args, results, command, log)
            skipped = filled["skipped"]
        except (KeyboardInterrupt, WorkerInterrupted):
            log("interrupted: the finished cells are saved; run the same command to continue")
            return 130
        finally:
            signal.signal(signal.SIGTERM, previous)
    else:
        skipped = {m.name: m.unavailable() for m in METHODS if m.unavailable()}
    try:
        write_report(results, skipped, command, log)
    except ValueError as exc:      # cells made with other settings in one folder
        print(f"search_methods: {exc}", file=sys.stderr)
        return 2
    return 1 if not args.report_only and filled["counts"]["failed"] else 0
