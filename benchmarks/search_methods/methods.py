"""The two tables of the comparison: the tasks searched and the methods searching them.

A **task** is a search space with its data and training length (the same split of
Fashion-MNIST for every method and seed), the default work budget and the validation
error threshold fixed for it in advance.  A **method** is one row of the comparison: a
`tuning` sampler (by its name in ``tuning.study.SAMPLERS``) with a pruner, optionally
with parameters fixed (``PartialFixedSampler``) or only configurations queued by hand
(``enqueue``), or a runner of its own.  Adding a method is adding one ``Method`` to
``METHODS``; a row whose sampler or module does not exist yet says why it is skipped
(``Method.unavailable``).
"""
from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass, field
from pathlib import Path

from tuning import study as tuning_study
from tuning.spaces import check_values, params_asked

STARTS_DIR = Path(__file__).resolve().parent.parent / "cnn_starts"


@dataclass(frozen=True)
class Task:
    """One search problem: ``space`` trained ``epochs`` epochs on ``train_size`` images
    (None: the whole 50 000-image training part), judged on ``val_size`` validation images.

    ``budget_trials``: the default work budget of a run, in full trials (one full trial
    is ``epochs`` x the training images).  ``threshold``: the validation error whose
    first crossing the tables time, fixed before any run.  ``seeds``: how many seeds
    the full grid runs.  ``manual``: the configurations the ``manual`` method queues
    (parameters left out take the space's defaults).
    """

    name: str
    space: str
    epochs: int
    train_size: int | None
    val_size: int
    budget_trials: float
    threshold: float
    seeds: int
    manual: tuple = ()
    note: str = ""

    def manual_params(self) -> list:
        """Every ``manual`` configuration as the complete parameters a trial asks for."""
        out = []
        for values in self.manual:
            check_values(self.space, values)
            out.append(params_asked(self.space, values))
        return out


def _cnn_starts() -> tuple:
    return tuple(json.loads(p.read_text()) for p in sorted(STARTS_DIR.glob("*.json")))


# Thresholds: a 10 000-image validation set measures an error near 0.11 with a standard
# error of sqrt(0.11 * 0.89 / 10 000) = 0.0031, so each threshold lies two to three of
# those above what the project's earlier studies reached on the task (README: lab-mlp
# TPE studies 0.106-0.114; cnn 12 trials of 3 epochs on 10k images 0.139).
TASKS = {
    "lab-mlp": Task(
        "lab-mlp", "lab-mlp", epochs=10, train_size=None, val_size=10_000,
        budget_trials=20, threshold=0.115, seeds=5,
        manual=(
            {},     # the starting configuration: the space's defaults
            # dropout 0.5 on a wide layer (Srivastava et al. 2014), Adam's default step
            {"hidden_size": 256, "dropout_rate": 0.5, "learn_rate": 1e-3,
             "optimizer": "Adam", "batch_size": 128},
            # plain SGD at the classic MNIST rate
            {"hidden_size": 256, "dropout_rate": 0.2, "learn_rate": 0.1,
             "optimizer": "SGD", "batch_size": 64},
            # a smaller Adam step with small batches
            {"hidden_size": 256, "dropout_rate": 0.3, "learn_rate": 3e-4,
             "optimizer": "Adam", "batch_size": 32},
        ),
        note="the lab's space: one hidden layer, dropout, Adam or plain SGD"),
    "mlp": Task(
        "mlp", "mlp", epochs=10, train_size=None, val_size=10_000,
        budget_trials=20, threshold=0.110, seeds=3,
        manual=(
            {},     # the space's defaults: 256-128, ReLU, Adam 1e-3
            # the benchmarks' 784-256-128-64-10 MLP with a cosine schedule
            {"n_layers": 3, "hidden_l0": 256, "hidden_l1": 128, "hidden_l2": 64,
             "learn_rate": 1e-3, "batch_size": 128, "lr_schedule": "cosine"},
            # SGD with momentum 0.9, a step schedule and weight decay 5e-4
            {"n_layers": 2, "hidden_l0": 512, "hidden_l1": 256, "optimizer": "SGD",
             "learn_rate": 0.05, "batch_size": 128, "weight_decay": 5e-4,
             "lr_schedule": "step"},
            # Adam-HD with the hypergradient step of Baydin et al. (2018) for an MLP
            {"hypergradient": True, "hypergrad_lr": 1e-7},
            # one wide layer, dropout 0.5, cosine
            {"n_layers": 1, "hidden_l0": 512, "dropout_rate": 0.5, "batch_size": 128,
             "lr_schedule": "cosine"},
        ),
        note="task 1: 1-3 hidden layers, activation, schedule, weight decay, hypergradient"),
    "cnn": Task(
        "cnn", "cnn", epochs=3, train_size=10_000, val_size=10_000,
        budget_trials=20, threshold=0.150, seeds=3,
        manual=({},) + _cnn_starts(),
        note="task 2 (optional): the cnn space, 3 epochs on 10 000 images"),
}
DEFAULT_TASKS = ("lab-mlp", "mlp")


@dataclass(frozen=True)
class Method:
    """One row of the comparison.

    ``sampler``: a name in ``tuning.study.SAMPLERS`` (built by ``tuning.study.make_sampler``
    from the run's seed); ``pruner``: one of ``tuning.study.PRUNERS``.  ``fixed``:
    parameters held at these values (Optuna's ``PartialFixedSampler`` around the
    sampler).  ``enqueue``: run only the task's ``manual`` configurations.  ``runner``:
    the method's own run (``cells.RUNNERS``) instead of a sampler's.  ``module``, ``needs``:
    a module the method uses and the names it needs from it (the row is skipped while
    they cannot be imported).  ``tasks``: the tasks it runs on (None: all).
    """

    name: str
    label: str
    sampler: str | None = None
    pruner: str = "none"
    fixed: dict = field(default_factory=dict)
    enqueue: bool = False
    runner: str | None = None
    module: str | None = None
    needs: tuple = ()
    tasks: tuple | None = None

    def unavailable(self) -> str | None:
        """Why this method cannot run in this checkout, or None when it can."""
        if self.sampler is not None and self.sampler not in tuning_study.SAMPLERS:
            return (f"tuning.study has no {self.sampler!r} sampler (SAMPLERS is "
                    f"{', '.join(tuning_study.SAMPLERS)})")
        if self.module is not None:
            if importlib.util.find_spec(self.module) is None:
                return f"{self.module} does not exist in this checkout"
            module = importlib.import_module(self.module)
            missing = [name for name in self.needs if not hasattr(module, name)]
            if missing:
                return f"{self.module} has no {', '.join(missing)}"
        return None

    def runs_on(self, task: str) -> bool:
        return self.tasks is None or task in self.tasks


METHODS = (
    Method("manual", "manual (queued by hand)", sampler="random", enqueue=True),
    Method("grid", "grid (lab's 3x3)", sampler="grid"),
    Method("random", "random", sampler="random"),
    Method("qmc", "QMC (Sobol)", sampler="qmc"),
    Method("tpe", "TPE", sampler="tpe"),
    Method("tpe-median", "TPE + median pruning", sampler="tpe", pruner="median"),
    Method("tpe-hyperband", "TPE + Hyperband", sampler="tpe", pruner="hyperband"),
    Method("cmaes", "CMA-ES", sampler="cmaes"),
    Method("nsga2", "NSGA-II (GA)", sampler="ga"),
    Method("rl", "RL controller", sampler="rl"),
    Method("pbt", "PBT", runner="pbt", module="tuning.pbt",
           needs=("PBTSettings", "IntervalObjective", "run_population", "final_trial",
                  "checkpoint_path")),
    Method("tpe-hypergradient", "TPE, hypergradient on", sampler="tpe",
           fixed={"hypergradient": True}, tasks=("mlp",)),
)
METHODS_BY_NAME = {m.name: m for m in METHODS}


def get_task(name: str) -> Task:
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; expected one of {', '.join(TASKS)}") from None


def get_method(name: str) -> Method:
    try:
        return METHODS_BY_NAME[name]
    except KeyError:
        raise ValueError(f"unknown method {name!r}; expected one of "
                         f"{', '.join(METHODS_BY_NAME)}") from None
