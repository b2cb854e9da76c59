"""Population-based training (Jaderberg et al. 2017) in a study's Optuna storage.

A population of ``population`` members of one search space trains in *intervals* of
``epochs`` epochs (the study's ``epochs`` setting).  When every member has trained its
interval -- a *generation* -- the members are ranked by validation error, and each member
of the bottom ``quantile``

- **exploits**: it copies the weights *and the optimizer state* (Adam's moments, momentum
  buffers, step counts: ``minidl.checkpoint``) of a member drawn at random from the top
  ``quantile``, with that member's hyperparameters, and
- **explores**: each mutable hyperparameter is, with probability
  ``resample_probability``, drawn afresh from the space, else multiplied by one of
  ``factors`` (chosen at random) and clipped to the space's range; a categorical one
  (``batch_size``) moves to the neighbouring choice, down for a factor below 1, up for
  one above.

The other members go on from their own checkpoint with their own hyperparameters.  The
defaults are Ray Tune's ``PopulationBasedTraining`` (quantile 0.25, resample probability
0.25, factors 0.8 and 1.2; the paper's truncation selection used 20%).  The number of
members in each quantile is ``ceil(population * quantile)``, at most half the population
(as Ray Tune counts).  A member without a usable result (its interval diverged, or failed
``MAX_ATTEMPTS`` times) always exploits; when no member has one the population stops
with ``PopulationFailed``.

What a lineage keeps
    Weights only make sense with the network they were trained in, and an optimizer's
    state only with its own update rule, so explore changes only the training
    hyperparameters (``MUTABLE``: learning rate, batch size, weight decay, dropout rate,
    augmentation strength, hypergradient step, gradient clipping norm, those the space
    has).  Everything else a space asks for -- every parameter that shapes the network,
    the optimizer family, hypergradient on or off -- is fixed inside a lineage and only
    changes when a member copies another (``fixed_params``).  Inside an interval the
    learning rate is constant (``lr_schedule`` is pinned to ``none``: the perturbations
    are the schedule), except that Adam-HD and SGD-HD adapt it step by step as they
    always do, starting each interval from the interval's ``learn_rate``.

The storage's shape: one trial per member per interval
    Each trial trains one interval, from its parent's checkpoint (none in generation 0:
    fresh weights), and completes with the validation error.  Its parameters are the
    interval's hyperparameters; its user attributes ``member``, ``generation`` and
    ``parent`` (the trial number whose checkpoint it starts from, None in generation 0),
    ``exploited`` (the member copied, or None) and ``explored`` (how each hyperparameter
    changed).  A generation's trials are queued (``enqueue``) when the previous generation
    ends, so the worker loop of ``tuning.workers`` runs them unchanged: claims, heartbeat,
    dead workers failed and their interval queued again; nothing stays RUNNING between
    intervals; ``trials``, ``best`` and ``studies`` read the study.  Generation 0 is drawn
    at random (seeded by the study's seed: every process draws the same population),
    optionally under a cost gate (``max_madds``: multiply-adds of one image's forward
    pass, ``minidl.summary``).

Several processes, one population (``run_population``)
    Every process runs the same loop: if the current generation is complete, queue the
    next one (``advance``; decided with a generator seeded by the study's seed and the
    generation, so two processes that both find it complete queue the same trials);
    otherwise queue again the intervals whose trials all failed (``repair``) or that an
    interrupted process left RUNNING before recording itself (``fail_orphans``), and run
    the worker loop until the generation's last interval has finished.  When two
    processes queue the same interval, the trial with the smaller number trains it and
    the other ends FAIL, ``not started``, before training (``duplicate_of``): no
    interval is trained twice.  Killing a process loses at most the interval it was
    training; running the command again resumes.

Checkpoints ``<checkpoint_dir>/trial-<number>.npz`` are written atomically (``minidl.
checkpoint``); those older than the previous generation are deleted when a generation
is queued, unless ``keep_checkpoints``.  The result is the best member's final weights:
among each member's last finished interval, the one with the lowest validation error
(``final_trial``); ``write_result`` tests it once and writes it as ``tuning retrain``
does, with the winner's schedule and the population's lineage drawn
(``tuning.pbt_plots``).
"""
from __future__ import annotations

import datetime
import math
import os
import time
import warnings
from pathlib import Path

import numpy as np
import optuna
from optuna.distributions import CategoricalDistribution, IntDistribution
from optuna.trial import TrialState

from . import report, workers
from .errors import TuningError
from .spaces import get_space
from .population import (EXPLOITED, EXPLORED, GENERATION, MEMBER, PARENT, PBTSettings,
                         Population, checkpoint_path, final_trial, is_interval, key_of)
from .storage import DEFAULT_DIR, is_url, storage_kind
from .study import sampler_seed

# The training hyperparameters explore may change (those a space has); every other
# parameter of a space is fixed inside a lineage.
MUTABLE = ("learn_rate", "batch_size", "weight_decay", "dropout_rate", "augment_strength",
           "hypergrad_lr", "clip_norm")
# Parameters held at one value in every member: PBT's perturbations are the schedule.
PINNED = {"lr_schedule": "none"}
DEFAULT_EPOCHS = 1
# An interval whose trials failed this many times (not counting Ctrl-C) is given up: the
# member ranks last in that generation and copies a better one in the next.
MAX_ATTEMPTS = 3
# Random configurations drawn for one member of generation 0 before the cost gate gives up.
MAX_DRAWS = 1000
# A worker records itself on a trial milliseconds after Optuna hands it the trial; a
# RUNNING interval with no worker after this long was handed to a process that was
# interrupted in between (Ctrl-C, SIGTERM), and is failed and queued again.
ORPHAN_SECONDS = 30.0
# The worker loop hands control back this often, so that such an interval is found while
# the population waits for it.
CHECK_SECONDS = 30.0
_INITIAL_SALT = 0x9B7   # seeds of generation 0's draws and of each generation's decisions
_PLAN_SALT = 0x9B8


class PopulationFailed(TuningError):
    """No member of a generation has a usable result, so none can be copied."""


# -- settings ------------------------------------------------------------------------------


def checkpoint_dir(storage_spec: str | None, study_name: str) -> Path:
    """The default checkpoint folder: ``<name>-pbt`` beside a journal file or SQLite
    database; for a server storage (PostgreSQL, ...) ``./studies/<name>-pbt`` (give a
    folder on a file system every worker machine sees instead)."""
    folder = f"{study_name}-pbt"
    if storage_spec is None:
        return (DEFAULT_DIR / folder).absolute()
    if not is_url(storage_spec):
        return Path(storage_spec).absolute().parent / folder
    if storage_kind(storage_spec) == "sqlite":
        path = storage_spec.split("://", 1)[1]
        path = path[1:] if path.startswith("/") else path   # sqlite:///rel, sqlite:////abs
        return Path(path).absolute().parent / folder
    return (DEFAULT_DIR / folder).absolute()


# -- what a lineage keeps -------------------------------------------------------------------

def mutable_params(space_name: str) -> list:
    """The parameters of ``space_name`` that explore may change, in the space's order."""
    return [p for p in get_space(space_name).param_names if p in MUTABLE]


def fixed_params(space_name: str) -> list:
    """The parameters of ``space_name`` a lineage keeps (network, optimizer, pinned ones)."""
    return [p for p in get_space(space_name).param_names if p not in MUTABLE]


def space_distributions(space_name: str, params: dict) -> dict:
    """The distribution of every parameter a trial with ``params`` asks for."""
    trial = optuna.trial.FixedTrial(dict(params))
    get_space(space_name).function(trial)
    return dict(trial.distributions)


# -- generation 0 ---------------------------------------------------------------------------

def forward_madds(config: dict) -> int:
    """Multiply-adds of one image's forward pass (``minidl.summary``)."""
    return int(report.model_summary(config).total_mult_adds)


def initial_population(space_name: str, pbt: PBTSettings, seed: int) -> list:
    """Generation 0: ``pbt.population`` random configurations (params dicts) of the space.

    Drawn by Optuna's ``RandomSampler`` seeded from ``seed``, with ``PINNED`` parameters
    fixed; a configuration over ``pbt.max_madds`` multiply-adds per image is drawn again
    (at most ``MAX_DRAWS`` times per member, then ValueError).
    """
    space = get_space(space_name)
    pinned = {k: v for k, v in PINNED.items() if k in space.defaults}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = optuna.samplers.PartialFixedSampler(
            pinned, optuna.samplers.RandomSampler(seed=sampler_seed(seed, _INITIAL_SALT)))
        study = optuna.create_study(sampler=sampler)
    members = []
    for member in range(pbt.population):
        cheapest = None
        for _ in range(MAX_DRAWS):
            trial = study.ask()
            config = space.function(trial)
            study.tell(trial, 0.0)
            if pbt.max_madds is None:
                break
            madds = forward_madds(config)
            cheapest = madds if cheapest is None else min(cheapest, madds)
            if madds <= pbt.max_madds:
                break
        else:
            raise ValueError(f"max_madds {pbt.max_madds:g}: none of {MAX_DRAWS} random "
                             f"{space_name} configurations costs that little (the cheapest "
                             f"had {cheapest:,} multiply-adds per image)")
        members.append(dict(trial.params))
    return members


# -- explore and exploit ---------------------------------------------------------------------

def _draw(dist, rng: np.random.Generator):
    """A value drawn afresh from ``dist`` (uniform on its own scale)."""
    if isinstance(dist, CategoricalDistribution):
        return dist.choices[int(rng.integers(len(dist.choices)))]
    low, high = dist.low, dist.high
    if dist.step is not None and not dist.log:
        steps = int(round((high - low) / dist.step))
        value = low + dist.step * int(rng.integers(steps + 1))
    elif dist.log:
        value = math.exp(rng.uniform(math.log(low), math.log(high + (1 if isinstance(
            dist, IntDistribution) else 0))))
    else:
        value = rng.uniform(low, high + (1 if isinstance(dist, IntDistribution) else 0))
    return _fit(dist, value, floor=isinstance(dist, IntDistribution))


def _fit(dist, value, floor=False):
    """``value`` clipped to ``dist``'s range, on its step grid, of its type."""
    low, high = dist.low, dist.high
    if isinstance(dist, IntDistribution):
        value = math.floor(value) if floor else round(value)
        value = low + dist.step * round((value - low) / dist.step)
        return int(min(max(value, low), high))
    value = min(max(float(value), low), high)
    if dist.step is not None:
        value = low + dist.step * round((value - low) / dist.step)
        value = min(max(value, low), high)
    return float(value)


def _perturb(dist, value, factor: float):
    if isinstance(dist, CategoricalDistribution):
        index = list(dist.choices).index(value)
        if factor != 1:
            index += 1 if factor > 1 else -1
        return dist.choices[min(max(index, 0), len(dist.choices) - 1)]
    return _fit(dist, value * factor)


def explore(params: dict, distributions: dict, names, pbt: PBTSettings,
            rng: np.random.Generator) -> tuple[dict, dict]:
    """Perturb the hyperparameters ``names`` of ``params``; ``(new params, how)``.

    Each of ``names`` present in ``params`` is, with probability
    ``pbt.resample_probability``, drawn afresh from its distribution (``how``:
    ``"resampled"``), else multiplied by a factor drawn from ``pbt.factors`` and clipped
    to the distribution's range (``"x0.8"``); see the module docstring for categorical
    ones.  Every other parameter is kept.
    """
    new, how = dict(params), {}
    for name in names:
        if name not in params:
            continue
        dist = distributions[name]
        if rng.random() < pbt.resample_probability:
            new[name], how[name] = _draw(dist, rng), "resampled"
        else:
            factor = pbt.factors[int(rng.integers(len(pbt.factors)))]
            new[name], how[name] = _perturb(dist, params[name], factor), f"x{factor:g}"
    return new, how


def plan_generation(results: list, space_name: str, pbt: PBTSettings,
                    rng: np.random.Generator) -> list:
    """The next generation from this one's ``results`` (a ``MemberResult`` per member).

    Returns one dict per member, in member order: ``member``, ``parent`` (the trial
    whose checkpoint it starts from), ``params``, ``exploited`` (the member copied, or
    None) and ``explored`` (``explore``'s ``how``).  Ranking is by validation error,
    ties by member; the bottom ``pbt.quantile_size`` members and every member without a
    usable result copy a top member drawn with ``rng``.
    """
    ranked = sorted(results, key=lambda r: (not r.usable, r.value if r.usable else 0.0,
                                            r.member))
    usable = [r for r in ranked if r.usable]
    if not usable:
        raise PopulationFailed("no member of the generation has a usable result (every "
                               "interval diverged or failed), so there is none to copy")
    n = pbt.quantile_size
    top = usable[:n]
    top_members = {r.member for r in top}
    bottom = {r.member for r in ranked[-n:]} | {r.member for r in ranked if not r.usable}
    names = mutable_params(space_name)
    plan = []
    for r in sorted(results, key=lambda r: r.member):
        if r.member in bottom and r.member not in top_members:
            donor = top[int(rng.integers(len(top)))]
            params, how = explore(donor.params, donor.distributions, names, pbt, rng)
            plan.append({"member": r.member, "parent": donor.trial, "params": params,
                         "exploited": donor.member, "explored": how})
        else:
            plan.append({"member": r.member, "parent": r.trial, "params": dict(r.params),
                         "exploited": None, "explored": {}})
    return plan


# -- the population in the storage -------------------------------------------------------------

def interval_seed(study_seed: int, member: int, generation: int) -> int:
    """The seed of one member's one interval (weights of generation 0, dropout, batches)."""
    return sampler_seed(study_seed, member, generation)


def _counts_as_attempt(trial) -> bool:
    """A FAIL trial that trained (or tried to) for a reason other than Ctrl-C."""
    reason = str(trial.user_attrs.get("stop_reason", ""))
    return trial.state == TrialState.FAIL and reason != "interrupted" \
        and not reason.startswith(workers.NOT_STARTED)


def _enqueue(study, params: dict, attrs: dict) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)   # Optuna's note on fixed parameters
        study.enqueue_trial(params, user_attrs=attrs)


def start_population(study, space_name: str, pbt: PBTSettings, seed: int) -> bool:
    """Queue generation 0 unless it is there already; True when this call queued it."""
    if Population(study, pbt).generation is not None:
        return False
    for member, params in enumerate(initial_population(space_name, pbt, seed)):
        _enqueue(study, params, {MEMBER: member, GENERATION: 0, PARENT: None,
                                 EXPLOITED: None, EXPLORED: {}})
    return True


def advance(study, space_name: str, pbt: PBTSettings, seed: int,
            keep_checkpoints: bool = False) -> list | None:
    """Queue the generation after the current (complete) one; the plan, or None when
    another process queued it first.  Deletes checkpoints no longer needed."""
    view = Population(study, pbt)
    g = view.generation
    if g is None or not view.complete(g):
        raise ValueError(f"advance: generation {g} is not complete")
    results = [view.result(m, g) for m in range(pbt.population)]
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), _PLAN_SALT, g + 1]))
    plan = plan_generation(results, space_name, pbt, rng)
    if Population(study, pbt).generation != g:   # queued meanwhile by another process
        return None
    for item in plan:
        _enqueue(study, item["params"], {MEMBER: item["member"], GENERATION: g + 1,
                                         PARENT: item["parent"],
                                         EXPLOITED: item["exploited"],
                                         EXPLORED: item["explored"]})
    if not keep_checkpoints and pbt.checkpoint_dir is not None:
        remove_old_checkpoints(view, pbt, keep_from=g)
    return plan


def remove_old_checkpoints(view: Population, pbt: PBTSettings, keep_from: int) -> None:
    """Delete the checkpoints of generations before ``keep_from`` (the next generation
    starts from ``keep_from``'s; each member's latest weights are there or later),
    and those of trials that did not complete."""
    for (_, generation), trials in view.intervals.items():
        for t in trials:
            if generation < keep_from or t.state != TrialState.COMPLETE:
                if t.state in (TrialState.RUNNING, TrialState.WAITING):
                    continue
                try:
                    os.remove(checkpoint_path(pbt, t.number))
                except FileNotFoundError:
                    pass


def repair(study, pbt: PBTSettings, generation: int, log=None) -> None:
    """Queue again the intervals of ``generation`` whose trials all failed.

    ``tuning.workers`` queues a dead worker's or an interrupted interval again (at most
    ``MAX_RETRIES`` times); this also covers an interval that failed with an error, or
    whose retries ran out.  After ``MAX_ATTEMPTS`` failures (Ctrl-C not counted) the
    interval is given up: a PRUNED trial stands for it, and the member ranks last.
    """
    log = log or (lambda _text: None)
    view = Population(study, pbt)
    for m in view.unfinished(generation):
        if view.live(m, generation):
            continue
        trials = view.intervals.get((m, generation), [])
        if not trials:
            continue   # not queued yet: advance queues it
        last = max(trials, key=lambda t: t.number)
        attrs = {k: last.user_attrs.get(k) for k in (MEMBER, GENERATION, PARENT, EXPLOITED,
                                                      EXPLORED)}
        attempts = [t for t in trials if _counts_as_attempt(t)]
        if len(attempts) >= MAX_ATTEMPTS:
            reason = attempts[-1].user_attrs.get("stop_reason", "failed")
            study.add_trial(optuna.trial.create_trial(
                state=TrialState.PRUNED, user_attrs={
                    **attrs, "stop_reason": f"given up after {len(attempts)} failed "
                    f"attempts; the last: {reason}"}))
            log(f"member {m}, generation {generation}: given up after {len(attempts)} "
                f"failed attempts ({reason}); it copies a better member next")
            continue
        params = dict(last.params) or dict(last.system_attrs.get("fixed_params") or {})
        _enqueue(study, params, attrs)
        log(f"member {m}, generation {generation}: queued again (trial {last.number} "
            f"{last.state.name.lower()}: {last.user_attrs.get('stop_reason', '?')})")


def drop_duplicates(study, pbt: PBTSettings) -> None:
    """End FAIL (``not started``) the queued trials of intervals that have finished: the
    twins two processes queued at once, left when the generation ended without them."""
    view = Population(study, pbt)
    for (member, generation), trials in view.intervals.items():
        done = view.finished(member, generation)
        if done is None:
            continue
        for t in trials:
            if t.state == TrialState.WAITING:
                try:
                    study._storage.set_trial_user_attr(
                        t._trial_id, "stop_reason", workers.NOT_STARTED + f"member {member}'s "
                        f"interval {generation} is trial {done.number}'s")
                    study._storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL)
                except optuna.exceptions.UpdateFinishedTrialError:
                    pass    # it ran meanwhile (and refused itself)


def fail_orphans(study, pbt: PBTSettings, log=None) -> list:
    """Fail and queue again the RUNNING intervals that no worker ever recorded itself on,
    started more than ``ORPHAN_SECONDS`` ago (``tuning.workers`` cannot tell whose they
    are, so its dead-worker check keeps them); the trials failed."""
    now = datetime.datetime.now()
    failed = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if not is_interval(t) or workers.WORKER_ATTR in t.user_attrs \
                or t.datetime_start is None \
                or (now - t.datetime_start).total_seconds() < ORPHAN_SECONDS:
            continue
        if workers.fail_and_retry(study, t, "worker died: interrupted before it recorded "
                                  "itself on the trial"):
            failed.append(t)
            if log is not None:
                log(f"trial {t.number} (member {key_of(t)[0]}, generation {key_of(t)[1]}) "
                    f"was left RUNNING by an interrupted process; failed and queued again")
    return failed


def duplicate_of(study, trial, member: int, generation: int):
    """The trial that trains this interval instead of ``trial``, or None.

    Another trial of the same interval wins when it finished, or when it is RUNNING or
    WAITING with a smaller number (trial numbers follow creation order, so of two
    processes that queued the same interval, both agree which trial runs it)."""
    for t in study.get_trials(deepcopy=False):
        if t.number == trial.number or not is_interval(t) or key_of(t) != (member, generation):
            continue
        if t.state in report.FINISHED_OK:
            return t
        if t.state in (TrialState.RUNNING, TrialState.WAITING) and t.number < trial.number:
            return t
    return None


# -- one interval -------------------------------------------------------------------------------

def start_member(config: dict, seed: int, parent_checkpoint=None, device: str = "cpu"):
    """``(model, optimizer)`` for an interval with ``config``'s hyperparameters.

    Generation 0 (``parent_checkpoint`` None): fresh weights drawn with ``seed``.  Later:
    the parent's weights and optimizer state, bit for bit, with this interval's
    hyperparameters (learning rate, weight decay, ... as ``make_optimizer`` sets them from
    ``config``) in place of the parent's.
    """
    import minidl  # noqa: PLC0415 - the training stack only where an interval trains
    from minidl.checkpoint import load_checkpoint  # noqa: PLC0415

    from .models import build_model  # noqa: PLC0415
    from .objective import make_optimizer  # noqa: PLC0415

    minidl.manual_seed(int(seed))
    model = build_model(config)
    if device != "cpu":
        model.to(device)
    optimizer = make_optimizer(config, model.parameters())
    if parent_checkpoint is not None:
        chosen = [{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups]
        load_checkpoint(parent_checkpoint, model, optimizer)
        for group, hyperparameters in zip(optimizer.param_groups, chosen):
            group.update(hyperparameters)
    return model, optimizer


class _NotStarted(Exception):
    """An interval trial that must not train (a duplicate, or no interval at all)."""


class IntervalObjective:
    """The objective of a population's trials: train one interval, return its error.

    ``train``, ``val``: the study's data; ``epochs``: the interval's length; ``seed``:
    the study's seed (``interval_seed``); ``pbt``: with its ``checkpoint_dir``.  Stores
    ``config``, ``curve`` (per epoch: train_loss, val_loss, val_error, seconds, lr,
    lr_end), ``seconds``, ``stop_reason`` and ``n_params`` on the trial, as
    ``tuning.objective`` does, and ``cpu_seconds`` (this process's CPU time for the
    interval: on a busy machine, what the interval would take alone on its threads); a
    diverged interval ends PRUNED; an error ends FAIL (``repair`` queues it again).  A trial that was not queued as an interval (the queue
    was empty) ends FAIL before training and stops the worker loop (``study.stop()``).
    """

    def __init__(self, train, val, space_name: str, epochs: int, seed: int,
                 pbt: PBTSettings, device: str = "cpu", log=None, eval_batch_size: int = 1000):
        self.train, self.val = train, val
        self.space = get_space(space_name)
        self.epochs, self.seed, self.pbt = int(epochs), int(seed), pbt
        self.device, self.log, self.eval_batch_size = device, log, eval_batch_size
        Path(pbt.checkpoint_dir).mkdir(parents=True, exist_ok=True)

    def __call__(self, trial) -> float:
        from minidl.checkpoint import save_checkpoint  # noqa: PLC0415

        from .objective import TrialOutcome  # noqa: PLC0415

        attrs = trial.user_attrs
        if MEMBER not in attrs or GENERATION not in attrs:
            trial.set_user_attr("stop_reason", workers.NOT_STARTED + "no interval was queued "
                                "(this trial was not made by the population)")
            trial.study.stop()
            raise _NotStarted("not an interval of the population")
        member, generation = int(attrs[MEMBER]), int(attrs[GENERATION])
        other = duplicate_of(trial.study, trial, member, generation)
        if other is not None:
            trial.set_user_attr("stop_reason", workers.NOT_STARTED + f"member {member}'s "
                                f"interval {generation} is trial {other.number}'s")
            raise _NotStarted(f"duplicate of trial {other.number}")
        config = self.space.function(trial)
        trial.set_user_attr("config", config)
        parent = attrs.get(PARENT)
        if self.log is not None:
            start = "fresh weights" if parent is None else f"from trial {parent}"
            self.log(f"  trial {trial.number} member {member} generation {generation} "
                     f"started ({start}): {report.format_params(trial.params)}")
        curve, rates = [], []
        first_epoch = generation * self.epochs

        def report_epoch(epoch, record):
            rates.append(float(record["lr"]))
            curve.append({k: float(record[k]) for k in ("epoch", "train_loss", "val_loss",
                                                        "val_error", "seconds", "lr")})
            curve[-1]["lr_end"] = float(optimizer.param_groups[0]["lr"])
            if self.log is not None:
                self.log(f"  trial {trial.number} epoch {epoch}/{self.epochs} train_loss "
                         f"{record['train_loss']:.4f} val_error {record['val_error']:.4f} "
                         f"({record['seconds']:.1f}s)")
            if not math.isfinite(record["val_loss"]):
                raise optuna.TrialPruned(f"diverged: validation loss {record['val_loss']} "
                                         f"at epoch {epoch}")
            trial.report(record["val_error"], first_epoch + epoch)

        with TrialOutcome(trial, curve, cpu_seconds=True) as outcome:
            source = None if parent is None else checkpoint_path(self.pbt, parent)
            model, optimizer = start_member(config, interval_seed(self.seed, member, generation),
                                            source, self.device)
            trial.set_user_attr("n_params", model.num_parameters())
            history = self._fit(model, optimizer, config, member, generation, report_epoch)
            error = float(history.epochs[-1]["val_error"])
            save_checkpoint(checkpoint_path(self.pbt, trial.number), model, optimizer,
                            trial=trial.number, member=member, generation=generation,
                            config=config, validation_error=error)
            outcome.stop_reason = "completed"
            return error

    def _fit(self, model, optimizer, config, member, generation, report_epoch):
        from minidl import nn  # noqa: PLC0415
        from minidl.train import fit  # noqa: PLC0415

        from .objective import make_augment  # noqa: PLC0415
        # A diverging run overflows before its loss turns NaN; fit raises for it.
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            return fit(model, nn.CrossEntropyLoss(), optimizer, self.train, self.val,
                       epochs=self.epochs, batch_size=int(config["batch_size"]),
                       callbacks=[report_epoch],
                       seed=interval_seed(self.seed, member, generation),
                       augment=make_augment(config), progress=False,
                       eval_batch_size=self.eval_batch_size)


# -- the loop ------------------------------------------------------------------------------------

def _expected_seconds(view: Population, generation: int) -> float:
    """How long the slowest interval still to run in ``generation`` may take: its
    parent's time (0 in generation 0, where nothing is known)."""
    by_number = {t.number: t for t in view.trials}
    longest = 0.0
    for m in view.unfinished(generation):
        for t in view.intervals.get((m, generation), []):
            parent = by_number.get(t.user_attrs.get(PARENT))
            if parent is not None:
                longest = max(longest, float(parent.user_attrs.get("seconds") or 0.0))
    return longest


def run_population(study, objective, space_name: str, pbt: PBTSettings, seed: int, *,
                   timeout: float | None = None, identity: dict | None = None,
                   keep_checkpoints: bool = False, on_trial=None, log=None, on_wait=None,
                   should_stop=None, poll: float = 0.5) -> str:
    """Train the population until ``pbt.generations`` generations are complete, the
    ``timeout`` (seconds) leaves no time for another interval, or ``should_stop()``;
    returns why it stopped.

    Any number of processes may run it on one study at once (see the module docstring).
    ``timeout``: no interval starts that would, judged by its parent's duration, end
    after it.  ``on_trial(frozen)``: every trial this process ends; ``log(text)``: what
    it does to the population; ``on_wait(text)``: when it waits for other processes'
    intervals.  Raises ``WorkerInterrupted`` on Ctrl-C (the interval in progress is
    queued again), ``PopulationFailed`` when a generation has no usable member.
    """
    identity = identity or workers.worker_identity()
    log = log or (lambda _text: None)
    should_stop = should_stop or (lambda: False)
    deadline = None if timeout is None else time.monotonic() + float(timeout)
    said = {}

    def waiting(text):     # once per text: the worker loop is re-entered every CHECK_SECONDS
        if on_wait is not None and said.get("text") != text:
            said["text"] = text
            on_wait(text)

    def ended(frozen):
        if on_trial is not None:
            on_trial(frozen)
        # an interval that trained and failed is queued again at once (one that lost
        # its claim is queued again by the worker loop itself)
        if is_interval(frozen) and _counts_as_attempt(frozen):
            repair(study, pbt, key_of(frozen)[1], log)

    start_population(study, space_name, pbt, seed)
    while True:
        view = Population(study, pbt)
        g = view.generation
        if view.complete(g):
            drop_duplicates(study, pbt)
            if pbt.generations is not None and g + 1 >= pbt.generations:
                return f"{g + 1} generations done"
            if deadline is not None and time.monotonic() >= deadline:
                return f"timeout ({timeout:g}s)"
            plan = advance(study, space_name, pbt, seed, keep_checkpoints)
            if plan is not None:
                copied = [f"{p['member']} <- {p['exploited']}" for p in plan
                          if p["exploited"] is not None]
                log(f"generation {g + 1} queued; copied: {', '.join(copied) or 'none'}")
            continue
        fail_orphans(study, pbt, log)
        repair(study, pbt, g, log)
        left = None
        if deadline is not None:
            left = deadline - time.monotonic() - _expected_seconds(view, g)
            if left <= 0:
                return f"timeout ({timeout:g}s): no time left for another interval"
        target = view.n_finished() + len(view.unfinished(g))
        result = workers.run_worker(study, objective, max_trials=target,
                                    timeout=CHECK_SECONDS if left is None
                                    else min(left, CHECK_SECONDS),
                                    identity=identity, poll=poll, on_trial=ended, log=log,
                                    on_wait=waiting, should_stop=should_stop)
        if result["stop"] == "asked to stop":
            return result["stop"]
        # otherwise the generation ended, CHECK_SECONDS passed, or the objective stopped
        # the loop (an empty queue): look at the population again


# -- the result ------------------------------------------------------------------------------------

def ancestry(study, trial) -> list:
    """The intervals ``trial``'s weights went through, from generation 0 to ``trial``."""
    by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
    chain = [trial]
    while chain[-1].user_attrs.get(PARENT) is not None:
        parent = by_number.get(int(chain[-1].user_attrs[PARENT]))
        if parent is None:
            break
        chain.append(parent)
    return chain[::-1]


RESULT_FILES = ("model.npz", "result.json", "confusion_matrix.png", "misclassified.png",
                "model.txt", "schedule.png", "lineage.png")


def output_folder(out_dir, overwrite: bool = False):
    """``out_dir`` as the ``tuning.outputs.OutputFolder`` of ``tuning pbt``'s result:
    ``check()`` it before training, so that a file it may not replace is found first."""
    from .outputs import OutputFolder  # noqa: PLC0415
    if isinstance(out_dir, OutputFolder):
        return out_dir
    return OutputFolder(out_dir, "pbt", RESULT_FILES, overwrite=overwrite)


def write_result(study, settings, pbt: PBTSettings, out_dir, device: str = "cpu",
                 overwrite: bool = False) -> dict:
    """Test the population's result (``final_trial``'s weights) once and write it.

    Writes into ``out_dir`` (an ``OutputFolder``, see ``output_folder``, or a path) what
    ``tuning retrain`` writes -- ``model.npz`` (``minidl.save``, with the config and
    test accuracy), ``result.json`` (with per-class accuracy and the confusion matrix),
    ``confusion_matrix.png``, ``misclassified.png``, ``model.txt``;
    ``tuning.load_model(out_dir)`` gives the model back -- and ``schedule.png`` (the
    winner's hyperparameters, interval by interval) and ``lineage.png`` (who copied
    whom).  Returns the result dict.
    """
    import minidl  # noqa: PLC0415
    from minidl.checkpoint import load_checkpoint  # noqa: PLC0415
    from minidl.train import evaluate  # noqa: PLC0415

    from .data import TRAIN_IMAGES, test_data  # noqa: PLC0415
    from .models import build_model  # noqa: PLC0415
    from .pbt_plots import plot_lineage, plot_schedule  # noqa: PLC0415
    from .results import write_test_report  # noqa: PLC0415
    from .spaces import config_from_params  # noqa: PLC0415

    folder = output_folder(out_dir, overwrite)
    folder.check()
    winner = final_trial(study, pbt)
    config = winner.user_attrs.get("config") or config_from_params(settings.space,
                                                                    winner.params)
    model = build_model(config)
    if device != "cpu":
        model.to(device)
    path = checkpoint_path(pbt, winner.number)
    if not path.exists():
        raise TuningError(f"the best member's checkpoint {path} is missing (trial "
                          f"{winner.number}); was --checkpoint-dir moved or cleaned?")
    load_checkpoint(path, model)
    test = test_data()
    scores = evaluate(model, test)
    chain = ancestry(study, winner)
    member, generation = key_of(winner)
    view = Population(study, pbt)
    names = mutable_params(settings.space)
    result = {
        "study_name": study.study_name, "space": settings.space, "method": "pbt",
        "trial": winner.number, "member": member, "generation": generation,
        "validation_error": winner.value, "params": dict(winner.params), "config": config,
        "epochs": (generation + 1) * settings.epochs,
        "train_size": (settings.train_size if settings.train_size is not None
                       else TRAIN_IMAGES - settings.val_size),
        "seed": settings.seed, "population": pbt.population,
        "generations_complete": sum(view.complete(g) for g in range(
            (view.generation or 0) + 1)),
        "pbt": pbt.to_dict(),
        "n_params": model.num_parameters(),
        "train_seconds": float(sum(float(t.user_attrs.get("seconds") or 0.0) for t in chain)),
        "test_accuracy": scores["accuracy"], "test_error": scores["error"],
        "test_loss": scores["loss"], "model_file": "model.npz",
        "schedule": [{"generation": key_of(t)[1], "trial": t.number, "member": key_of(t)[0],
                      "validation_error": t.value, "exploited": t.user_attrs.get(EXPLOITED),
                      "explored": t.user_attrs.get(EXPLORED) or {},
                      "params": {k: t.params[k] for k in names if k in t.params}}
                     for t in chain],
    }
    result.update(write_test_report(
        model, test, folder, f"{study.study_name}, PBT member {member} (trial "
        f"{winner.number}): test accuracy {scores['accuracy']:.4f}"))
    folder.write("schedule.png", lambda tmp: plot_schedule(
        chain, names, settings.epochs, tmp, f"{study.study_name}: the winner's "
        f"hyperparameters (member {member}, test accuracy {scores['accuracy']:.4f})"))
    folder.write("lineage.png", lambda tmp: plot_lineage(
        view, winner, tmp, f"{study.study_name}: population of {pbt.population}, who "
        f"copied whom"))
    folder.write("model.npz", lambda tmp: minidl.save(
        model, tmp, config=config, test_accuracy=float(scores["accuracy"]),
        study_name=study.study_name, trial=int(winner.number)))
    folder.write_text("result.json", report.dumps(result) + "\n")
    return result
