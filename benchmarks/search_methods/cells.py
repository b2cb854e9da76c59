"""One cell of the grid: a (task, method, seed) search that stops at its work budget, then
one retrain of the best configuration, saved as a JSON file when it finishes.

**Work** is training images processed: every epoch of every trial adds the training
images (``epochs x images``, summed over the run's trials).  A pruned trial adds the
epochs it trained; a trial whose loss turns non-finite inside an epoch adds the batches
it reached in that epoch (``step x batch_size``).  Validation passes are not counted
(every method validates once per epoch it trains).  A run stops once its work reaches
the budget: the trial in progress then is stopped at the end of that epoch (it ends
PRUNED with ``stop_reason`` "budget spent at epoch E"; a trial at its last epoch
completes), so a run overshoots the budget by less than one epoch of work.  A method may
stop earlier on its own (the grid after its 9 points, ``manual`` after its queue).

The best configuration is the COMPLETE trial with the lowest validation error: only a
configuration trained for the task's full number of epochs is a result (a pruned trial's
error is an error after fewer epochs).  It is retrained once, with the cell's seed, on
the training and validation images together for the task's epochs, and tested once on
the 10 000 test images.

Cells live in ``RESULTS/cells/TASK/METHOD/seedN.json``.  A process *claims* a cell by
creating ``seedN.lock`` with ``O_CREAT | O_EXCL`` (atomic on one file system), so any
number of processes can fill one grid; a lock whose process has died on this machine
(``tuning.workers.owner_status``) is taken over.
"""
from __future__ import annotations

import datetime
import json
import os
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import optuna

from tuning.data import TRAIN_IMAGES, retrain_data, study_data, test_data
from tuning.errors import TuningError
from tuning.objective import Objective, train_config
from tuning.retrain import MONITOR_SIZE
from tuning.study import StudySettings, make_pruner, make_sampler, resolve_grid
from tuning.workers import owner_status, run_worker, worker_identity

from ..machine import busy_processes, machine_info
from .methods import Method, get_task

FORMAT = 1
DATA_SEED = 0     # every cell of a task sees the same split: a task is its data
QUICK = {"train_size": 256, "val_size": 256, "epochs": 2, "budget_trials": 4.0,
         "retrain_size": 512}


@dataclass(frozen=True)
class RunSettings:
    """Everything that must agree between the cells of one task (they are compared).

    ``train_size``: the training images a trial sees; ``budget_images``: the work of a
    run; ``retrain_size``: images of the final retrain (None: all 60 000).
    """

    task: str
    space: str
    epochs: int
    train_size: int
    val_size: int
    budget_images: int
    threshold: float
    retrain_size: int | None
    data_seed: int
    threads: int
    quick: bool

    @classmethod
    def for_task(cls, task_name: str, budget_trials: float | None = None, threads: int = 1,
                 quick: bool = False) -> "RunSettings":
        """The settings of ``task_name``'s cells: ``budget_trials`` full trials of work
        (default: the task's), ``--quick``'s tiny data when ``quick``."""
        task = get_task(task_name)
        epochs, val_size, retrain_size = task.epochs, task.val_size, None
        train_size = task.train_size or (TRAIN_IMAGES - task.val_size)
        if quick:
            epochs, val_size = QUICK["epochs"], QUICK["val_size"]
            train_size, retrain_size = QUICK["train_size"], QUICK["retrain_size"]
        trials = budget_trials if budget_trials is not None else (
            QUICK["budget_trials"] if quick else task.budget_trials)
        if not trials > 0:
            raise ValueError(f"--budget: expected a positive number of full trials, got "
                             f"{trials!r}")
        return cls(task=task.name, space=task.space, epochs=epochs, train_size=train_size,
                   val_size=val_size, budget_images=int(round(trials * epochs * train_size)),
                   threshold=task.threshold, retrain_size=retrain_size,
                   data_seed=DATA_SEED, threads=int(threads), quick=bool(quick))

    @property
    def full_trial(self) -> int:
        """The work of one trial trained for all its epochs."""
        return self.epochs * self.train_size

    def to_dict(self) -> dict:
        return asdict(self)

    def differences(self, other: dict) -> list:
        """``["budget_images 1000 (the cell has 2000)", ...]`` against a cell's settings."""
        mine = self.to_dict()
        return [f"{k} {mine[k]!r} (the cell has {other.get(k)!r})" for k in mine
                if other.get(k) != mine[k]]


# -- the data, once per process --------------------------------------------------------

_DATA = {}


def task_data(settings: RunSettings):
    """``(train, val)`` of a task: the same seeded split for every cell."""
    key = (settings.val_size, settings.train_size, settings.data_seed)
    if key not in _DATA:
        full = TRAIN_IMAGES - settings.val_size
        _DATA[key] = study_data(settings.val_size, settings.data_seed,
                                None if settings.train_size == full else settings.train_size)
    return _DATA[key]


# -- the work budget -------------------------------------------------------------------

class WorkLedger:
    """The work a run has done, against its budget (images; see the module docstring)."""

    def __init__(self, budget: int, n_train: int, epochs: int):
        self.budget = int(budget)
        self.n_train = int(n_train)
        self.epochs = int(epochs)
        self.work = 0
        self.trial_work = {}

    def spent(self) -> bool:
        return self.work >= self.budget

    def charge(self, number: int, images: int) -> None:
        self.trial_work[number] = int(images)
        self.work += int(images)

    def wrap(self, objective):
        """``objective`` behind the budget: counts each trial's work and stops the trial
        in progress once the run's work reaches the budget."""
        from minidl.train import NonFiniteLossError  # noqa: PLC0415

        def run(trial):
            seen = BudgetedTrial(trial, self)
            partial = 0    # images of an epoch a non-finite loss cut short
            try:
                return objective(seen)
            except optuna.TrialPruned as exc:
                if seen.cut:
                    trial.set_user_attr("stop_reason", f"budget spent at epoch {seen.epochs_done}")
                if isinstance(exc.__cause__, NonFiniteLossError):
                    batch = (trial.user_attrs.get("config") or {}).get("batch_size", 1)
                    partial = min(self.n_train, exc.__cause__.step * int(batch))
                raise
            finally:
                epochs = len(trial.user_attrs.get("curve", []))
                self.charge(trial.number, epochs * self.n_train + partial)
        return run


class BudgetedTrial:
    """A trial as the objective sees it: ``should_prune`` is also True once the run's work
    (finished trials plus this trial's epochs) reaches the budget, unless this trial has
    just finished its last epoch.  Everything else is the real trial's."""

    def __init__(self, trial, ledger: WorkLedger):
        self._trial = trial
        self._ledger = ledger
        self.epochs_done = 0
        self.cut = False

    def __getattr__(self, name):
        return getattr(self._trial, name)

    def report(self, value, step):
        self._trial.report(value, step)
        self.epochs_done = int(step)

    def should_prune(self) -> bool:
        ledger = self._ledger
        if self.epochs_done < ledger.epochs and \
                ledger.work + self.epochs_done * ledger.n_train >= ledger.budget:
            self.cut = True
            return True
        return self._trial.should_prune()


# -- one search ------------------------------------------------------------------------

def make_method_sampler(method: Method, settings: RunSettings, seed: int):
    """The method's sampler and pruner for a run with ``seed``, built by ``tuning.study``."""
    study_settings = StudySettings(
        space=settings.space, epochs=settings.epochs, train_size=settings.train_size,
        val_size=settings.val_size, seed=int(seed), sampler=method.sampler,
        pruner=method.pruner,
        grid=resolve_grid(settings.space, None) if method.sampler == "grid" else None)
    sampler = make_sampler(study_settings)
    if method.fixed:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            sampler = optuna.samplers.PartialFixedSampler(dict(method.fixed), sampler)
    return sampler, make_pruner(study_settings)


class Recorder:
    """What a run did, trial by trial: the records, the best-so-far trace (``[work, best
    validation error or None]`` after every trial), one progress line per trial."""

    def __init__(self, ledger: WorkLedger, tag: str, log=print):
        self.ledger, self.tag, self.log = ledger, tag, log
        self.trials, self.trace = [], []
        self.best = {"value": None}
        self.t0 = time.perf_counter()

    def ended(self, frozen) -> None:
        """``on_trial`` of the worker loop: record ``frozen`` (its work is charged)."""
        ledger = self.ledger
        curve = frozen.user_attrs.get("curve", [])
        value = frozen.value if frozen.state == optuna.trial.TrialState.COMPLETE else None
        if value is not None and (self.best["value"] is None or value < self.best["value"]):
            self.best = {"value": value, "number": frozen.number, "params": frozen.params,
                         "config": frozen.user_attrs.get("config")}
        record = {
            "number": frozen.number, "state": frozen.state.name, "value": value,
            "last_val_error": curve[-1]["val_error"] if curve else None,
            "epochs": len(curve), "work": ledger.trial_work.get(frozen.number, 0),
            "work_end": ledger.work, "seconds": frozen.user_attrs.get("seconds"),
            "stop_reason": frozen.user_attrs.get("stop_reason"),
            "enqueued": bool(frozen.user_attrs.get("enqueued")), "params": frozen.params}
        record.update({k: frozen.user_attrs[k] for k in ("member", "generation", "parent")
                       if k in frozen.user_attrs})
        self.trials.append(record)
        self.trace.append([ledger.work, self.best["value"]])
        shown = "" if value is None else f" {value:.4f}"
        best = "none yet" if self.best["value"] is None else f"{self.best['value']:.4f}"
        self.log(f"{self.tag} trial {frozen.number} {frozen.state.name}{shown} "
                 f"({record['stop_reason']}) | work {ledger.work / 1e6:.3g}M of "
                 f"{ledger.budget / 1e6:.3g}M ({100 * ledger.work / ledger.budget:.0f}%) | "
                 f"best {best} | {time.perf_counter() - self.t0:.0f} s")

    def result(self, stop: str) -> dict:
        return {"trials": self.trials, "trace": self.trace, "work": self.ledger.work,
                "stop": stop, "best": self.best}


def _start(method: Method, settings: RunSettings, seed: int, log):
    """``(train, val, ledger, recorder)`` of a run, after checking it can run here."""
    unavailable = method.unavailable()
    if unavailable:
        raise ValueError(f"method {method.name!r} cannot run here: {unavailable}")
    train, val = task_data(settings)
    if len(train) != settings.train_size:
        raise ValueError(f"task {settings.task}: expected {settings.train_size} training "
                         f"images, the split has {len(train)}")
    ledger = WorkLedger(settings.budget_images, len(train), settings.epochs)
    return train, val, ledger, Recorder(ledger, f"[{settings.task} {method.name} seed {seed}]",
                                        log)


def search(method: Method, settings: RunSettings, seed: int, log=print) -> dict:
    """Run ``method`` on the task until its work reaches the budget (or the method ends
    by itself); ``Recorder.result``, plus ``tested`` when the method tested its own
    result (PBT's final weights) instead of a retrain."""
    if method.runner is not None:
        return RUNNERS[method.runner](method, settings, seed, log)
    train, val, ledger, recorder = _start(method, settings, seed, log)
    sampler, pruner = make_method_sampler(method, settings, seed)
    study = optuna.create_study(direction="minimize", sampler=sampler, pruner=pruner)
    if method.enqueue:
        for params in get_task(settings.task).manual_params():
            study.enqueue_trial(params, user_attrs={"enqueued": True})
    objective = Objective(train, val, settings.epochs, space=settings.space, seed=int(seed))

    def should_stop() -> bool:
        if ledger.spent():
            return True
        return method.enqueue and not study.get_trials(
            deepcopy=False, states=(optuna.trial.TrialState.WAITING,))

    outcome = run_worker(study, ledger.wrap(objective), on_trial=recorder.ended,
                         should_stop=should_stop, log=log)
    stop = "budget spent" if ledger.spent() else outcome["stop"]
    if method.enqueue and not ledger.spent():
        stop = "every queued configuration ran"
    return recorder.result(stop)


def search_pbt(method: Method, settings: RunSettings, seed: int, log=print) -> dict:
    """Population-based training (``tuning.pbt``) on the budget.

    The population has as many members as the budget has full trials, each trains in
    intervals of one epoch for the task's epochs (generations), so the population spends
    the budget exactly and every member's final weights had the task's epochs, as a
    full trial's.  Every COMPLETE interval is a model with a validation error, so the
    best-so-far trace takes them all; the cell's best is PBT's result
    (``tuning.population.final_trial``: the best member's latest weights), tested once as they
    are (trained on the training part only: PBT's result is weights and a schedule, not
    a configuration to retrain).
    """
    import tempfile  # noqa: PLC0415

    from minidl.checkpoint import load_checkpoint  # noqa: PLC0415
    from minidl.train import evaluate  # noqa: PLC0415
    from tuning import pbt as tuning_pbt  # noqa: PLC0415
    from tuning import population as members  # noqa: PLC0415
    from tuning.models import build_model  # noqa: PLC0415

    train, val, ledger, recorder = _start(method, settings, seed, log)
    population = max(2, int(round(settings.budget_images / settings.full_trial)))
    with tempfile.TemporaryDirectory(prefix="search_methods_pbt_") as folder:
        pbt = members.PBTSettings(population=population, generations=settings.epochs,
                                     checkpoint_dir=folder)
        study = optuna.create_study(direction="minimize",
                                    sampler=optuna.samplers.RandomSampler(seed=int(seed)))
        objective = tuning_pbt.IntervalObjective(train, val, settings.space, 1, int(seed), pbt)
        why = tuning_pbt.run_population(study, ledger.wrap(objective), settings.space, pbt,
                                        int(seed), on_trial=recorder.ended,
                                        should_stop=ledger.spent, log=log)
        found = recorder.result("budget spent" if ledger.spent() else why)
        try:
            winner = members.final_trial(study, pbt)
        except TuningError:
            return found          # no member completed an interval: nothing to test
        config = winner.user_attrs["config"]
        model = build_model(config)
        load_checkpoint(members.checkpoint_path(pbt, winner.number), model)
        t0 = time.perf_counter()
        scores = evaluate(model, test_data())
    found["best"] = {"value": winner.value, "number": winner.number,
                     "params": winner.params, "config": config,
                     "member": winner.user_attrs.get("member"),
                     "generation": winner.user_attrs.get("generation")}
    found["tested"] = {"test_accuracy": float(scores["accuracy"]),
                       "test_error": float(scores["error"]),
                       "seconds": time.perf_counter() - t0, "train_size": len(train),
                       "epochs": (winner.user_attrs["generation"] + 1), "seed": int(seed),
                       "note": "the best member's final weights, tested as they are"}
    return found


# Methods with a runner of their own (``Method.runner``), by name.
RUNNERS = {"pbt": search_pbt}


def retrain(settings: RunSettings, config: dict, seed: int) -> dict:
    """Train ``config`` on training + validation images for the task's epochs, test once.

    As ``tuning retrain`` does (``tuning.retrain``), without writing a model folder: a
    monitor of the first ``MONITOR_SIZE`` training images stands in for validation."""
    from minidl.train import NonFiniteLossError, evaluate  # noqa: PLC0415

    data = retrain_data(settings.retrain_size, settings.data_seed)
    monitor = data.subset(np.arange(min(MONITOR_SIZE, len(data))))
    t0 = time.perf_counter()
    try:
        model, _ = train_config(config, data, monitor, settings.epochs, seed=int(seed))
    except NonFiniteLossError as exc:
        return {"error": f"diverged: {exc}", "seconds": time.perf_counter() - t0,
                "train_size": len(data), "epochs": settings.epochs, "seed": int(seed)}
    seconds = time.perf_counter() - t0
    scores = evaluate(model, test_data())
    return {"test_accuracy": float(scores["accuracy"]), "test_error": float(scores["error"]),
            "seconds": seconds, "train_size": len(data), "epochs": settings.epochs,
            "seed": int(seed)}


def run_cell(method: Method, settings: RunSettings, seed: int, log=print) -> dict:
    """Search, then retrain the best configuration: the cell's record (not yet saved)."""
    machine = machine_info(with_torch=False)
    cpu0, t0 = time.process_time(), time.perf_counter()
    found = search(method, settings, seed, log=log)
    search_seconds = time.perf_counter() - t0
    search_cpu = time.process_time() - cpu0
    best = found["best"]
    retrained = found.get("tested")
    if best["value"] is not None and retrained is None:
        log(f"[{settings.task} {method.name} seed {seed}] retraining trial {best['number']} "
            f"on {settings.retrain_size or TRAIN_IMAGES} images")
        retrained = retrain(settings, best["config"], seed)
    return {
        "format": FORMAT, "task": settings.task, "method": method.name, "label": method.label,
        "seed": int(seed), "settings": settings.to_dict(),
        "work": found["work"], "stop": found["stop"],
        "best": best if best["value"] is not None else None,
        "retrain": retrained, "trace": found["trace"], "trials": found["trials"],
        "seconds": {"search": search_seconds, "search_cpu": search_cpu,
                    "retrain": None if retrained is None else retrained["seconds"]},
        "load_average": {"start": machine["load_average"],
                         "end": [round(x, 2) for x in os.getloadavg()]},
        "busy_processes": {"start": machine["busy_processes"], "end": busy_processes()},
        "machine": {k: machine[k] for k in ("host", "cpu", "cpu_vector_flags", "cpus_usable",
                                            "python", "numpy", "numba", "minidl_commit",
                                            "minidl_gemm_route", "thread_env")},
        "finished": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
    }


# -- files and claims ------------------------------------------------------------------

def cell_path(results: Path, task: str, method: str, seed: int) -> Path:
    return Path(results) / "cells" / task / method / f"seed{int(seed)}.json"


def read_cell(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def save_cell(path: Path, cell: dict) -> None:
    """Write atomically (a reader never sees half a cell)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(cell, indent=1, allow_nan=False) + "\n")
    tmp.replace(path)


def _lock_path(path: Path) -> Path:
    return path.with_suffix(".lock")


def lock_owner(path: Path) -> tuple[str, str]:
    """``("alive" | "dead" | "unknown", why)`` for the process holding a cell's lock."""
    try:
        ident = json.loads(_lock_path(path).read_text())
    except (OSError, ValueError):
        return "unknown", "the lock is being written"
    return owner_status(SimpleNamespace(number=0, user_attrs={"worker": {**ident, "trial": 0}}))


def claim(path: Path) -> bool:
    """Take the cell at ``path`` for this process: True when the lock file was created
    here (a dead owner's lock on this machine is removed first); False when another
    living process (or one on another machine) holds it."""
    lock = _lock_path(path)
    lock.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            status, _why = lock_owner(path)
            if status != "dead":
                return False
            try:
                lock.unlink()
            except FileNotFoundError:
                pass
            continue
        with os.fdopen(fd, "w") as f:
            json.dump(worker_identity(), f)
        return True
    return False


def release(path: Path) -> None:
    try:
        _lock_path(path).unlink()
    except FileNotFoundError:
        pass
