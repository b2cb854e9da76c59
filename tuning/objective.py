"""The Optuna objective: suggest, build, train with report/prune each epoch, return.

    objective = Objective(train, val, epochs=3, space="lab-mlp")
    study = optuna.create_study(direction="minimize")
    study.optimize(objective, n_trials=20)

Shaped like the lab's ``Objective``: it holds the data, and ``__call__(trial)`` samples a
configuration, trains a minidl model on the training set and returns the error on the
validation set (lower is better, so the study minimises).

Every epoch ``trial.report(val_error, epoch)`` and ``trial.should_prune()`` let the
pruner stop an unpromising trial.  What happened is stored on the trial as user
attributes: ``config``, ``n_params``, ``curve`` (per-epoch ``train_loss``, ``val_loss``,
``val_error``, ``seconds``, ``lr``: the learning rate the epoch started with, ``lr_end``:
the rate after its last step -- they differ within an epoch for Adam-HD and SGD-HD,
which adapt it every step), ``seconds`` and ``stop_reason`` (``completed``,
``pruned at epoch E``, ``diverged: ...``, ``interrupted``, ``error: ...``).

With several objectives (``objectives=("error", "params")`` or ``("error", "latency")``)
it returns a tuple: the validation error, then the model's parameter count or its
inference time per image in milliseconds (``measure_latency``: eval mode, a fixed batch of
``LATENCY_BATCH`` validation images, the median of ``LATENCY_PASSES`` passes after a
warm-up), stored on the trial as ``latency_ms`` (with ``latency_batch`` and
``latency_threads``).  Optuna cannot prune such a study, so nothing is reported per epoch
(the curve is still stored).

A run whose training loss becomes NaN/inf ends PRUNED (so it never becomes the best
trial) with ``stop_reason`` saying so; any other exception is recorded and re-raised, so
Optuna marks the trial FAIL (``study.optimize(..., catch=(Exception,))`` keeps the study
going, as ``tuning run`` does).
"""
from __future__ import annotations

import math
import time
import traceback

import numpy as np
import optuna

import minidl
from minidl import nn, optim
from minidl.train import NonFiniteLossError, fit

from .interrupts import checkpoint
from .models import build_model
from .report import format_params
from .spaces import check_values, get_space
from .spaces.common import HYPERGRADIENT_OPTIMIZERS, OPTIMIZERS

LATENCY_BATCH = 256
LATENCY_PASSES = 7
LATENCY_WARMUP = 2


def measure_latency(model, images, batch: int = LATENCY_BATCH, passes: int = LATENCY_PASSES,
                    warmup: int = LATENCY_WARMUP) -> float:
    """Inference time per image on this machine, in milliseconds.

    The model in eval mode (its previous mode is restored) classifies the first ``batch``
    of ``images`` ``warmup`` times unmeasured, then ``passes`` times; the median pass,
    divided by the batch size.  The output is brought back to the host each pass, so a
    GPU's asynchronous work is included.
    """
    from minidl import backend  # noqa: PLC0415
    x = images[:batch]
    if len(x) == 0:
        raise ValueError("measure_latency: no images")
    ref = next(iter(model.parameters()), None)
    if ref is not None:
        x = backend.asarray_like(x, ref.data)
    saved = [(m, m.training) for m in model.modules()]
    model.eval()
    times = []
    try:
        for i in range(warmup + passes):
            t0 = time.perf_counter()
            backend.to_numpy(model(x))
            if i >= warmup:
                times.append(time.perf_counter() - t0)
    finally:
        for m, training in saved:
            m.training = training
    return float(np.median(times)) / len(x) * 1000.0


# every name a configuration may hold: the spaces' optimizers and their hypergradient forms
OPTIMIZER_NAMES = (*OPTIMIZERS, *HYPERGRADIENT_OPTIMIZERS.values())


def make_optimizer(config: dict, parameters):
    """The minidl optimizer ``config["optimizer"]`` names, with its learning rate and decay.

    ``Adam-HD`` and ``SGD-HD`` (``minidl.optim.AdamHD``, ``SGDHD``) start from
    ``learn_rate`` and adapt it every step with step size ``config["hypergrad_lr"]``.
    """
    name = config["optimizer"]
    lr = float(config["learn_rate"])
    wd = float(config.get("weight_decay", 0.0))
    momentum = float(config.get("momentum", 0.0))
    if name == "Adam":
        return optim.Adam(parameters, lr=lr, weight_decay=wd)
    if name == "SGD":
        return optim.SGD(parameters, lr=lr, momentum=momentum, weight_decay=wd)
    if name == "RMSprop":
        return optim.RMSprop(parameters, lr=lr, weight_decay=wd)
    if name in ("Adam-HD", "SGD-HD"):
        if "hypergrad_lr" not in config:
            raise ValueError(f"make_optimizer: {name} needs config['hypergrad_lr']")
        hypergrad_lr = float(config["hypergrad_lr"])
        if name == "Adam-HD":
            return optim.AdamHD(parameters, lr=lr, weight_decay=wd, hypergrad_lr=hypergrad_lr)
        return optim.SGDHD(parameters, lr=lr, momentum=momentum, weight_decay=wd,
                           hypergrad_lr=hypergrad_lr)
    raise ValueError(f"make_optimizer: unknown optimizer {name!r}; expected one of "
                     f"{', '.join(OPTIMIZER_NAMES)}")


class EpochEndRate:
    """Notes the learning rate each epoch ends with, then steps the schedule (if any).

    ``fit`` steps its ``scheduler`` once at the end of every epoch, after the epoch's
    last optimizer step and before the callbacks run; given this object as its
    scheduler, ``rates[-1]`` in a callback is the rate after the epoch's last step
    (for Adam-HD / SGD-HD the adapted rate; ``fit``'s record ``lr`` is the rate the
    epoch started with).
    """

    def __init__(self, optimizer, scheduler=None):
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.rates = []

    def step(self):
        self.rates.append(float(self.optimizer.param_groups[0]["lr"]))
        if self.scheduler is not None:
            self.scheduler.step()


def make_scheduler(config: dict, optimizer, epochs: int):
    """``none``; ``step``: lr x 0.1 once, after half the epochs; ``cosine``: to 0 over the run."""
    name = config.get("lr_schedule", "none")
    if name == "none":
        return None
    if name == "step":
        return optim.lr_scheduler.StepLR(optimizer, step_size=max(1, (epochs + 1) // 2),
                                         gamma=0.1)
    if name == "cosine":
        return optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    raise ValueError(f"make_scheduler: unknown lr_schedule {name!r}; expected none, step or cosine")


def make_augment(config: dict):
    """Random shifts and flips of strength ``augment_strength`` (None at strength 0).

    The uncovered border is filled with the normalised value of a black pixel, the
    Fashion-MNIST background.
    """
    strength = float(config.get("augment_strength", 0.0))
    if strength <= 0.0:
        return None
    from minidl.data import FASHION_MNIST_MEAN, FASHION_MNIST_STD, Augment  # noqa: PLC0415
    return Augment.from_strength(strength, fill=-FASHION_MNIST_MEAN / FASHION_MNIST_STD)


def train_config(config: dict, train, val, epochs: int, seed: int = 0, callbacks=(),
                 device: str = "cpu", progress=False, eval_batch_size: int = 1000,
                 on_model=None):
    """Build the model ``config`` describes (weights seeded by ``seed``) and ``fit`` it.

    ``on_model(model)``, when given, is called with the new model before training.
    Each callback's record also holds ``lr_end``, the learning rate after the epoch's
    last step (see ``EpochEndRate``).  Returns ``(model, history)``.  The one training path of the package: the objective
    and ``tuning retrain`` both call it.
    """
    minidl.manual_seed(int(seed))
    model = build_model(config)
    if device != "cpu":
        model.to(device)
    if on_model is not None:
        on_model(model)
    optimizer = make_optimizer(config, model.parameters())
    rate = EpochEndRate(optimizer, make_scheduler(config, optimizer, int(epochs)))
    # every callback sees the rate the epoch ended with as record["lr_end"]
    callbacks = [lambda epoch, record, cb=cb: cb(epoch, {**record, "lr_end": rate.rates[-1]})
                 for cb in callbacks]
    # after every epoch: an interrupt Python swallowed stops the training here
    callbacks.insert(0, lambda _epoch, _record: checkpoint())
    # A diverging run overflows before its loss turns NaN; fit raises NonFiniteLossError
    # for it, so NumPy's overflow warnings would only repeat that, once per layer.
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        history = fit(model, nn.CrossEntropyLoss(), optimizer, train, val, epochs=int(epochs),
                      batch_size=int(config["batch_size"]),
                      scheduler=rate, callbacks=callbacks, seed=int(seed), augment=make_augment(config),
                      progress=progress, eval_batch_size=eval_batch_size)
    return model, history


class TrialOutcome:
    """Records how a trial's training ends, as user attributes of the trial.

        with TrialOutcome(trial, curve) as outcome:
            ...                                  # train
            outcome.stop_reason = "completed"
            return error

    On leaving the block it stores ``curve``, ``seconds`` (wall time of the block),
    ``cpu_seconds`` (this process's CPU time, only with ``cpu_seconds=True``) and
    ``stop_reason``: what the block set (``"error"`` unless it set one), else the pruning
    message (``"pruned"`` for an empty one), ``"diverged: ..."`` for ``NonFiniteLossError``
    (raised again as ``optuna.TrialPruned``, so the trial ends PRUNED), ``"interrupted"``
    for ``KeyboardInterrupt``, or ``"error: Type: message"`` with the end of the
    ``traceback`` for any other exception.  Exceptions other than ``NonFiniteLossError``
    propagate unchanged.
    """

    def __init__(self, trial, curve: list, *, cpu_seconds: bool = False):
        self.trial, self.curve, self.cpu_seconds = trial, curve, cpu_seconds
        self.stop_reason = "error"

    def __enter__(self) -> TrialOutcome:
        self._started, self._cpu_started = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        try:
            if isinstance(exc, optuna.TrialPruned):
                self.stop_reason = str(exc) or "pruned"
            elif isinstance(exc, NonFiniteLossError):
                self.stop_reason = f"diverged: {exc}"
                raise optuna.TrialPruned(self.stop_reason) from exc
            elif isinstance(exc, KeyboardInterrupt):
                self.stop_reason = "interrupted"
            elif isinstance(exc, Exception):
                self.stop_reason = f"error: {type(exc).__name__}: {exc}"
                self.trial.set_user_attr(
                    "traceback", "".join(traceback.format_exception(exc))[-4000:])
            return False
        finally:
            trial = self.trial
            trial.set_user_attr("curve", self.curve)
            trial.set_user_attr("seconds", time.perf_counter() - self._started)
            if self.cpu_seconds:
                trial.set_user_attr("cpu_seconds", time.process_time() - self._cpu_started)
            trial.set_user_attr("stop_reason", self.stop_reason)


class Objective:
    """Callable objective: ``Objective(train, val, epochs, space=...)(trial) -> val_error``.

    Parameters
    ----------
    train, val : ``minidl.data.ArrayDataset`` (x float32 ``(N, 1, 28, 28)``, y int64).
    epochs : int, training epochs per trial (one report to the pruner per epoch).
    space : name of a search space in ``tuning.spaces.SPACES``.
    seed : int; trial ``t`` initialises and shuffles with ``seed + t.number``.
    device : ``"cpu"`` or ``"cuda"`` (the model is moved there; ``fit`` moves batches).
    progress : passed to ``minidl.train.fit`` (a per-epoch bar on stderr when True).
    log : optional ``log(str)``, called with a line when a trial starts and, unless
        ``progress`` draws fit's bar, one line per epoch.
    objectives : ``("error",)`` (returns a float) or ``("error", "params")``,
        ``("error", "latency")``, ... (returns a tuple; no pruning).
    """

    def __init__(self, train, val, epochs: int, space: str = "lab-mlp", seed: int = 0,
                 device: str = "cpu", progress=False, log=None, eval_batch_size: int = 1000,
                 objectives=("error",)):
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
            raise ValueError(f"Objective: expected epochs to be a positive int, got {epochs!r}")
        self.train = train
        self.val = val
        self.epochs = epochs
        self.space = get_space(space)
        self.seed = int(seed)
        self.device = device
        self.progress = progress
        self.log = log
        self.eval_batch_size = eval_batch_size
        self.objectives = tuple(objectives)
        if not self.objectives or self.objectives[0] != "error" or not set(
                self.objectives) <= {"error", "params", "latency"}:
            raise ValueError(f"Objective: objectives must start with 'error', then 'params' "
                             f"and/or 'latency'; got {objectives!r}")

    def _explain(self, trial, exc) -> str:
        """Why the space could not use the trial's given values (Optuna's message does not
        name the parameter): ``check_values``'s reason when it finds one."""
        try:  # the values enqueued for this trial (Optuna's system attribute)
            given = trial.storage.get_trial(trial._trial_id).system_attrs.get("fixed_params")
        except AttributeError:  # not a trial of a stored study
            given = None
        if not given:
            return str(exc)
        try:
            check_values(self.space.name, given, outside_range=True)
        except ValueError as reason:
            return str(reason)
        return str(exc)

    def __call__(self, trial) -> float:
        try:
            config = self.space.function(trial)
        except Exception as exc:  # a value no trial can use (a grid or an enqueued value)
            trial.set_user_attr("stop_reason", f"error: {type(exc).__name__}: "
                                f"{self._explain(trial, exc)}")
            trial.set_user_attr("traceback", traceback.format_exc()[-4000:])
            raise
        trial.set_user_attr("config", config)
        if self.log is not None:
            self.log(f"  trial {trial.number} started: {format_params(trial.params)}")
        curve = []

        def report_epoch(epoch, record):
            curve.append({k: float(record[k]) for k in
                          ("epoch", "train_loss", "val_loss", "val_error", "seconds", "lr",
                           "lr_end")})
            if self.log is not None and not self.progress:
                self.log(f"  trial {trial.number} epoch {epoch}/{self.epochs} "
                         f"train_loss {record['train_loss']:.4f} val_error "
                         f"{record['val_error']:.4f} ({record['seconds']:.1f}s)")
            if not math.isfinite(record["val_loss"]):  # finite training loss, exploded weights
                raise optuna.TrialPruned(f"diverged: validation loss {record['val_loss']} "
                                         f"at epoch {epoch}")
            if len(self.objectives) > 1:   # Optuna has no pruning for several objectives
                return
            trial.report(record["val_error"], epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned at epoch {epoch} "
                                         f"(val_error {record['val_error']:.4f})")

        with TrialOutcome(trial, curve) as outcome:
            model, history = train_config(
                config, self.train, self.val, self.epochs, seed=self.seed + trial.number,
                callbacks=[report_epoch], device=self.device, progress=self.progress,
                eval_batch_size=self.eval_batch_size,
                on_model=lambda m: trial.set_user_attr("n_params", m.num_parameters()))
            outcome.stop_reason = history.stop_reason
            error = float(history.epochs[-1]["val_error"])
            if len(self.objectives) == 1:
                return error
            values = [error]
            for name in self.objectives[1:]:
                if name == "params":
                    values.append(float(model.num_parameters()))
                else:
                    latency = measure_latency(model, self.val.x)
                    trial.set_user_attr("latency_ms", latency)
                    trial.set_user_attr("latency_batch", min(LATENCY_BATCH, len(self.val.x)))
                    trial.set_user_attr("latency_threads", minidl.get_num_threads())
                    values.append(latency)
            return tuple(values)
