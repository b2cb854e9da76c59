"""Worker processes sharing one study: the trial budget, dead workers, the worker loop.

Many processes, on one machine or many, can run trials of the same study: each opens
the shared storage, asks Optuna for a trial, trains it and tells the result.  Three
things need care beyond ``study.optimize``; this module does them.

The trial budget (``max_trials``)
    A worker stops when the study holds ``max_trials`` *finished* trials (COMPLETE or
    PRUNED, the count ``tuning run --total`` uses; FAIL trials do not count, so a crashed
    trial is made up for), and the study never holds more than that, whatever the number
    of workers.  Counting before ``ask`` is not enough (two workers can both see one
    missing trial and both start one), so every trial *claims* its place right after it
    is created, before any training, with ``claim``: it may run only if the trials that
    are already finished (COMPLETE/PRUNED) plus the RUNNING and WAITING trials with a
    smaller number are fewer than ``max_trials``.  Why this is exact: trial numbers are
    given in the order trials are created (the journal's log order; a row lock in the
    RDB storage), and a trial that ends COMPLETE/PRUNED was RUNNING or WAITING from its
    creation on.  Take the finished trial with the largest number among those that
    claimed successfully: every other one was created before it, so its claim counted
    them all, and the claim passed only if they were fewer than ``max_trials``.  A trial
    that loses its claim (a near-simultaneous start by another worker at the end of the
    study) is marked FAIL with ``stop_reason`` "not started: ..." before anything was
    trained, and enqueued parameters it carried are queued again.  Before asking, a
    worker waits (polling) while finished + RUNNING trials already reach the budget:
    one of those RUNNING trials may still fail (its worker dies) and leave room.  The
    guarantee holds among processes that claim: every command that runs trials with a
    budget of finished trials (``run --total``, ``worker --max-trials``, ``run --workers``),
    since they all run this module's loop.

Dead workers
    Every trial of a worker (and of a plain ``tuning run``) records who runs it in the
    user attribute ``worker``: host name, boot id,
    PID namespace, PID and process start time, worker rank, and the trial's own number
    (so the attribute copied into a retried trial is not mistaken for its owner).  A
    RUNNING trial's worker is known dead when it ran on this very machine (same host,
    boot id and PID namespace) and its PID is gone, a zombie, or now belongs to a
    process started at another time.  On another machine nothing can be known from
    here: ``fail_stale(..., older_than=S)`` then treats a RUNNING trial started more
    than S seconds ago as dead.  A dead worker's trial is marked FAIL and queued again
    with the same parameters by ``requeue_failed`` (as Optuna's
    ``RetryHeartbeatStaleTrialCallback`` does: the retry carries the system attribute
    ``failed_trial``), at most ``MAX_RETRIES`` times.
    On RDB storages (PostgreSQL, MySQL) the workers also run Optuna's heartbeat, which
    finds dead workers on any machine (``open_worker_storage``).

The worker loop (``run_worker``)
    The one engine of every command that runs trials: ``tuning run`` (in its own
    process, a loop with one worker), ``tuning worker`` and each process of
    ``run --workers K``.  Claim, train, tell, repeat.  Between trials it fails the trials of dead workers: with
    a heartbeat (RDB storages), Optuna's stale-trial check, which sees every machine;
    otherwise the trials of dead workers on its own machine, so local workers on a
    journal file clean up after a killed sibling by themselves.  It stops at the budget
    (``max_trials`` finished trials in the study, ``n_trials`` trials ended by this
    worker), at the ``timeout``, when asked (``should_stop``, or ``study.stop()`` as
    Optuna's grid sampler calls once its grid is done).  Ctrl-C (or SIGTERM, with
    ``tuning.interrupts.interrupt_signals``) marks the trial in progress FAIL and queues
    its parameters again.
"""
from __future__ import annotations

import datetime
import os
import socket
import threading
import time
import warnings
import zlib

import optuna
from optuna.trial import TrialState

from . import report
from .errors import TuningError, WorkerInterrupted
from .interrupts import checkpoint
from .storage import (database_error, driver_missing, open_storage, refuse_sqlite,
                      storage_failure, storage_kind, storage_label, storage_url)

WORKER_ATTR = "worker"
NOT_STARTED = "not started: "
# A configuration is queued again at most this many times after failures it can have
# caused (its worker died while running it), then the study goes on without it: one that
# kills its worker (out of memory) must not loop.  Interrupts do not count (``requeue_failed``).
MAX_RETRIES = 2
# The system attribute listing the numbers of a configuration's trials whose failure
# counts towards MAX_RETRIES (Optuna's ``retry_history`` lists every earlier trial).
COUNTED_ATTR = "counted_failures"
FINISHED_OK = report.FINISHED_OK
HEARTBEAT_INTERVAL = 10  # seconds between a worker's heartbeats on an RDB storage
GRACE_FACTOR = 3  # a trial is stale after GRACE_FACTOR missed heartbeat intervals
# A RUNNING trial whose worker never recorded itself on it: its process stopped between
# Optuna creating the trial (which also runs the sampler's relative sampling) and the
# worker's first write, a moment of milliseconds to seconds.  Neither the owner check nor
# Optuna's heartbeat (which starts later) can fail such a trial, and a budgeted study would
# wait for it for ever; after this many seconds it is failed as its process's death.
ORPHAN_AFTER = 120.0


# -- the storage and the machine a worker uses --------------------------------------------

def open_worker_storage(spec: str | None, study_name: str, heartbeat: int = HEARTBEAT_INTERVAL,
                        must_exist: bool = True, sqlite: bool = False):
    """The storage a worker uses: RDB URLs get Optuna's heartbeat and retry of stale trials.

    SQLite is refused (several processes cannot write it at once) unless ``sqlite``:
    ``tuning run`` in one process may keep it.  ``must_exist``: a journal file must be
    there already (``tuning worker``; ``run`` creates its study).
    """
    if not sqlite:
        refuse_sqlite(spec, study_name)
    if storage_kind(spec) == "rdb":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            try:
                return WorkerRDBStorage(
                    spec, engine_kwargs={"pool_pre_ping": True},
                    heartbeat_interval=int(heartbeat),
                    grace_period=GRACE_FACTOR * int(heartbeat),
                    heartbeat_stale_trial_callback=retry_callback())
            except ImportError as exc:
                raise TuningError(driver_missing(spec, exc)) from None
            except Exception as exc:  # SQLAlchemy: server down, wrong password, ...
                raise TuningError(database_error(spec, exc)) from None
    return open_storage(spec, study_name, must_exist=must_exist)


_FINISHED_WRITE = threading.local()  # set while WorkerRDBStorage writes a failed trial's reason


class WorkerRDBStorage(optuna.storages.RDBStorage):
    """Optuna's RDB storage as workers open it (``open_worker_storage``), with three
    changes.

    - Its connections are tested before use (SQLAlchemy's ``pool_pre_ping``), so a
      database that was restarted between two calls is reconnected to, where a pooled
      connection to the old server would fail the next call.

    - Its heartbeat outlives a short database outage (a restart): a beat that fails is
      skipped (``heartbeat_error`` keeps why) and the next one tried, where Optuna's
      heartbeat thread would die with a traceback and leave a trial that is still being
      trained to be failed as stale.  A database that stays away stops the worker at
      its next storage call (``storage_failure``).
    - ``set_failed_trial_reason`` writes the ``stop_reason`` of a trial its heartbeat
      check has just failed (Optuna fails it first, then calls the stale-trial callback,
      and refuses attributes of a finished trial).
    """

    heartbeat_error = None

    def record_heartbeat(self, trial_id: int) -> None:
        try:
            super().record_heartbeat(trial_id)
        except Exception as exc:  # noqa: BLE001 - the database is away: beat again later
            self.heartbeat_error = exc
        else:
            self.heartbeat_error = None

    def set_failed_trial_reason(self, trial_id: int, reason: str) -> None:
        _FINISHED_WRITE.on = True
        try:
            self.set_trial_user_attr(trial_id, "stop_reason", reason)
        finally:
            _FINISHED_WRITE.on = False

    def check_trial_is_updatable(self, trial_id, trial_state) -> None:
        if not getattr(_FINISHED_WRITE, "on", False):
            super().check_trial_is_updatable(trial_id, trial_state)


def default_threads(n_workers: int) -> int:
    """A worker's share of the cores this process may use, when ``n_workers`` share them."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cores = os.cpu_count() or 1
    return max(1, cores // max(1, int(n_workers)))


# -- who runs a trial ------------------------------------------------------------------

def _read_text(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def _proc_stat(pid: int) -> tuple[str, str] | None:
    """``(state, start time in clock ticks after boot)`` of a Linux process, or None."""
    text = _read_text(f"/proc/{int(pid)}/stat")
    if not text:
        return None
    fields = text.rsplit(")", 1)[-1].split()  # after "pid (comm)": field 3 onwards
    return fields[0], fields[19]


def machine_identity() -> dict:
    """What tells this machine (and PID namespace) apart from others sharing a study."""
    try:
        pidns = os.readlink("/proc/self/ns/pid")
    except OSError:
        pidns = None
    return {"host": socket.gethostname(),
            "boot": _read_text("/proc/sys/kernel/random/boot_id"),
            "pidns": pidns}


def worker_identity(rank: int | None = None) -> dict:
    """The ``worker`` user attribute of the trials this process runs (without ``trial``)."""
    pid = os.getpid()
    stat = _proc_stat(pid)
    return {**machine_identity(), "pid": pid, "start": stat[1] if stat else None,
            "rank": rank}


def worker_label(ident: dict | None) -> str:
    if not isinstance(ident, dict):
        return "?"
    if ident.get("rank") is not None:
        return f"w{ident['rank']}"
    return f"{ident.get('host')}:{ident.get('pid')}"


def worker_seed_salt(ident: dict) -> int:
    """The worker's part of its sampler seed: its rank, else a hash of host and PID."""
    if ident.get("rank") is not None:
        return int(ident["rank"])
    return zlib.crc32(f"{ident['host']}:{ident['pid']}".encode())


def owner_status(trial) -> tuple[str, str]:
    """``("alive" | "dead" | "unknown", why)`` for the worker of a RUNNING trial."""
    ident = trial.user_attrs.get(WORKER_ATTR)
    if not isinstance(ident, dict) or ident.get("trial") != trial.number:
        return "unknown", "no worker recorded yet"
    here = machine_identity()
    where = f"{ident.get('host')} pid {ident.get('pid')}"
    if any(ident.get(k) != here[k] for k in ("host", "boot", "pidns")):
        return "unknown", f"worker {where} is on another machine"
    stat = _proc_stat(ident["pid"])
    if stat is None:
        if here["boot"] is None:  # no /proc: fall back to signal 0
            try:
                os.kill(int(ident["pid"]), 0)
            except ProcessLookupError:
                return "dead", f"worker {where} is gone"
            except PermissionError:
                pass
            return "alive", f"worker {where} is running"
        return "dead", f"worker {where} is gone"
    if stat[0] in ("Z", "X"):
        return "dead", f"worker {where} is gone (zombie)"
    if ident.get("start") is not None and stat[1] != ident["start"]:
        return "dead", f"worker {where} is gone (the pid now belongs to another process)"
    return "alive", f"worker {where} is running"


# -- failing and retrying --------------------------------------------------------------

def retry_callback():
    """The callback that queues a dead worker's trial again (used by the heartbeat too).

    It does what Optuna's ``RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRIES)``
    does (the retry carries the system attributes ``failed_trial`` and
    ``retry_history``), through ``requeue_failed``, which also copes with a value
    outside its distribution; and it gives the failed trial its ``stop_reason``
    (``heartbeat_reason``), which Optuna's heartbeat check leaves empty.  A worker
    that stopped beating died while running the trial, so the failure counts towards
    ``MAX_RETRIES``.
    """
    return _on_stale_trial


def heartbeat_reason(storage, frozen) -> str:
    """``worker died: no heartbeat for 30s (host pid 123)``: why the heartbeat check
    failed ``frozen``."""
    backend = getattr(storage, "_backend", storage)
    grace = getattr(backend, "grace_period", None)
    ident = frozen.user_attrs.get(WORKER_ATTR)
    who = (f" ({ident.get('host')} pid {ident.get('pid')})"
           if isinstance(ident, dict) and ident.get("trial") == frozen.number else "")
    silent = f"for {grace}s" if grace is not None else "for too long"
    return f"worker died: no heartbeat {silent}{who}"


def _on_stale_trial(study, frozen) -> None:
    storage = study._storage
    backend = getattr(storage, "_backend", storage)
    if hasattr(backend, "set_failed_trial_reason"):
        backend.set_failed_trial_reason(frozen._trial_id, heartbeat_reason(storage, frozen))
    requeue_failed(study, frozen)


def requeue_failed(study, frozen, counts: bool = True) -> tuple[bool, str]:
    """Queue a failed trial's configuration again, to run next; ``(queued, why not)``.

    ``counts``: whether this failure counts towards ``MAX_RETRIES``.  What counts is a
    failure the configuration can have caused: its worker died while running it (a
    SIGKILL from outside, which cannot be told apart from the kernel's out-of-memory
    kill that the configuration's size may have caused; a heartbeat that stopped).
    What does not count (``counts=False``): an interrupt the tool itself received
    (Ctrl-C, SIGTERM), which says nothing about the configuration.  The counted
    failures of a configuration's trials are listed in the system attribute
    ``counted_failures`` (a retry queued by an older version, without it, counts all of
    its ``retry_history``); once they exceed ``MAX_RETRIES`` it is not queued again.
    (A trial that fails by its own exception is not queued again at all.)

    A trial whose parameters lie outside their distributions (enqueued with
    ``--outside-range``, or by an older version) cannot be stored again as parameters
    (Optuna refuses them with a ``ValueError``); its values are queued as fixed
    parameters instead, as ``enqueue`` does, so recovering it never crashes.
    """
    history = list(frozen.system_attrs.get("retry_history", [])) + [frozen.number]
    counted = list(frozen.system_attrs.get(COUNTED_ATTR,
                                           frozen.system_attrs.get("retry_history", [])))
    if counts:
        counted.append(frozen.number)
    if len(counted) > MAX_RETRIES:
        return False, f"not queued again (retried {MAX_RETRIES} times already)"
    system_attrs = {"failed_trial": frozen.number, **frozen.system_attrs,
                    "retry_history": history, COUNTED_ATTR: counted}
    _add_waiting(study, frozen, _configuration_attrs(frozen), system_attrs)
    return True, ""


# What a run of a trial records about itself (``tuning.objective``, the worker): a queued
# retry has not run yet, so it does not carry these over from the trial that failed.
RUN_ATTRS = (WORKER_ATTR, "stop_reason", "curve", "seconds", "cpu_seconds", "traceback",
             "n_params", "config", "pooling_skipped", "latency_ms", "latency_batch",
             "latency_threads")


def _configuration_attrs(frozen) -> dict:
    return {k: v for k, v in frozen.user_attrs.items() if k not in RUN_ATTRS}


def _add_waiting(study, frozen, user_attrs: dict, system_attrs: dict) -> None:
    """Add a WAITING trial with ``frozen``'s parameters (see ``requeue_failed``)."""
    try:
        trial = optuna.trial.create_trial(
            state=TrialState.WAITING, params=frozen.params, distributions=frozen.distributions,
            user_attrs=user_attrs, system_attrs=system_attrs)
    except ValueError:  # a value outside its distribution
        fixed = {**system_attrs.get("fixed_params", {}), **frozen.params}
        trial = optuna.trial.create_trial(
            state=TrialState.WAITING, user_attrs=user_attrs,
            system_attrs={**system_attrs, "fixed_params": fixed})
    study.add_trial(trial)


def fail_and_retry(study, trial, reason: str) -> bool:
    """Mark a RUNNING trial FAIL (``stop_reason`` = ``reason``) and queue it again.

    Returns False when the trial finished meanwhile (or another process failed it
    first): nothing is changed then, so two cleaners never queue a trial twice.
    """
    storage = study._storage
    try:
        storage.set_trial_user_attr(trial._trial_id, "stop_reason", reason)
        if not storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL):
            return False
    except optuna.exceptions.UpdateFinishedTrialError:
        return False
    requeue_failed(study, storage.get_trial(trial._trial_id))
    return True


def _orphaned(trial, now, orphan_after: float | None) -> str | None:
    """Why ``trial`` (RUNNING) is an orphan: no worker recorded on it ``orphan_after``
    seconds after it started (see ``ORPHAN_AFTER``); None otherwise."""
    if orphan_after is None or trial.datetime_start is None:
        return None
    ident = trial.user_attrs.get(WORKER_ATTR)
    if isinstance(ident, dict) and ident.get("trial") == trial.number:
        return None
    age = (now - trial.datetime_start).total_seconds()
    if age <= orphan_after:
        return None
    return (f"no worker recorded itself on it in {age:.0f}s (over {orphan_after:g}s): its "
            f"process stopped as the trial was created")


def fail_orphans(study, orphan_after: float = ORPHAN_AFTER) -> list:
    """Fail (and queue again) the RUNNING trials no worker recorded itself on within
    ``orphan_after`` seconds; the heartbeat cannot see them.  ``[(trial, why)]``."""
    now = datetime.datetime.now()
    out = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        why = _orphaned(trial, now, orphan_after)
        if why is not None and fail_and_retry(study, trial, f"worker died: {why}"):
            out.append((trial, why))
    return out


def fail_stale(study, older_than: float | None = None, dry_run: bool = False,
               orphan_after: float | None = ORPHAN_AFTER) -> list:
    """Fail the RUNNING trials of dead workers and queue their parameters again.

    Dead: a worker on this machine whose process is gone (``owner_status``), a trial no
    worker recorded itself on within ``orphan_after`` seconds (``ORPHAN_AFTER``; None: never
    for that reason), or, with ``older_than`` (seconds), any RUNNING trial started longer
    ago whose worker is not seen alive on this machine.  Returns ``[(trial, action, why)]``
    for every RUNNING trial, ``action`` in ``"failed"``, ``"would fail"`` (dry run),
    ``"kept"``, and ``"finished"`` (it ended while we looked).
    """
    now = datetime.datetime.now()
    out = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        status, why = owner_status(trial)
        stale = status == "dead"
        orphan = None if stale else _orphaned(trial, now, orphan_after)
        if orphan is not None:
            stale, why = True, orphan
        if not stale and status != "alive" and older_than is not None \
                and trial.datetime_start is not None:
            age = (now - trial.datetime_start).total_seconds()
            if age > older_than:
                stale, why = True, f"{why}; running for {age:.0f}s (over {older_than:g}s)"
        if not stale:
            out.append((trial, "kept", why))
        elif dry_run:
            out.append((trial, "would fail", why))
        elif fail_and_retry(study, trial, f"worker died: {why}"):
            out.append((trial, "failed", why))
        else:
            out.append((trial, "finished", why))
    return out


def has_heartbeat(study) -> bool:
    """Does the study's storage run Optuna's heartbeat (RDB storage opened with one)?"""
    interval = getattr(study._storage, "get_heartbeat_interval", None)
    return interval is not None and interval() is not None


def fail_stale_heartbeat(study) -> None:
    """Optuna's heartbeat check (a no-op unless the storage runs a heartbeat)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


def requeue(study, frozen) -> bool:
    """Queue a trial's fixed parameters again (a trial that lost its claim); True if any."""
    fixed = frozen.system_attrs.get("fixed_params")
    if not frozen.params and not fixed:
        return False
    _add_waiting(study, frozen, _configuration_attrs(frozen), frozen.system_attrs)
    return True


# -- the budget -----------------------------------------------------------------------

def claim(study, trial, max_trials: int) -> tuple[bool, str]:
    """May ``trial`` (just created, nothing trained) run without exceeding ``max_trials``?

    See the module docstring for why counting the finished trials plus the RUNNING and
    WAITING trials *numbered before this one* keeps the study at or under the budget.
    """
    finished = ahead = 0
    for t in study.get_trials(deepcopy=False):
        if t.number == trial.number:
            continue
        if t.state in FINISHED_OK:
            finished += 1
        elif t.state in (TrialState.RUNNING, TrialState.WAITING) and t.number < trial.number:
            ahead += 1
    if finished + ahead < max_trials:
        return True, ""
    return False, (f"the study reached --max-trials {max_trials} ({finished} finished, "
                   f"{ahead} running or queued before trial {trial.number})")


class _Unclaimed(Exception):
    """Raised inside the objective when a trial lost its claim (it becomes FAIL)."""


def budget_state(study) -> tuple[int, int]:
    """``(finished, running)`` trials of the study."""
    finished = running = 0
    for t in study.get_trials(deepcopy=False):
        if t.state in FINISHED_OK:
            finished += 1
        elif t.state == TrialState.RUNNING:
            running += 1
    return finished, running


# -- the loop ----------------------------------------------------------------------

def run_worker(study, objective, *, max_trials: int | None = None,
               n_trials: int | None = None, timeout: float | None = None,
               identity: dict | None = None, poll: float = 1.0, on_trial=None, log=None,
               on_wait=None, should_stop=None) -> dict:
    """Run trials of ``study`` with ``objective`` until the budget or time is spent.

    ``max_trials``: stop when the study holds that many finished (COMPLETE/PRUNED) trials
    (None: no budget); every trial claims its place first (``claim``).  ``n_trials``:
    stop after this worker ended that many trials (any state; a trial that lost its
    claim does not count).  ``timeout`` (seconds): start no trial after that.
    ``should_stop()``: asked after every trial; True stops the loop (so does
    ``study.stop()`` inside a trial or callback, as Optuna's grid sampler does when its
    grid is done).  ``identity``: this worker's ``worker`` attribute
    (``worker_identity``).  ``on_trial(frozen)`` is called for every trial this worker
    ends; ``log(text)`` with what it does to other trials (failing a dead worker's
    trial, re-queueing); ``on_wait(text)`` when it waits for running trials at the end
    of the budget.
    Returns ``{"trials": [numbers ended here], "finished": n, "stop": why}``.  Raises
    ``WorkerInterrupted`` on KeyboardInterrupt, after failing and re-queueing its trial.
    """
    identity = identity or worker_identity()
    log = log or (lambda _text: None)
    on_wait = on_wait or (lambda _text: None)
    should_stop = should_stop or (lambda: False)
    mine = []
    current = {}

    def gated(trial):
        current["id"] = trial._trial_id
        current["number"] = trial.number
        trial.set_user_attr(WORKER_ATTR, {**identity, "trial": trial.number})
        if max_trials is not None:
            ok, why = claim(study, trial, max_trials)
            if not ok:
                current["unclaimed"] = True
                trial.set_user_attr("stop_reason", NOT_STARTED + why)
                raise _Unclaimed(why)
        try:
            return objective(trial)
        except optuna.TrialPruned:
            raise
        except (Exception, KeyboardInterrupt) as exc:
            give_reason(study, trial, exc)
            raise

    def ended(_study, frozen):
        if not current.get("unclaimed"):
            mine.append(frozen.number)
        if on_trial is not None:
            on_trial(frozen)

    budget = _Budget(max_trials, n_trials, timeout, mine, should_stop)
    try:
        try:
            stop = _loop(study, gated, ended, current, budget, poll, log, on_wait)
        except KeyboardInterrupt:
            number, requeued, note = None, False, ""
            if "id" in current and not current.get("unclaimed"):
                frozen = study._storage.get_trial(current["id"])
                if frozen.state == TrialState.FAIL:  # the interrupted trial (Optuna failed it)
                    number = frozen.number
                    # an interrupt this process received: not the configuration's doing
                    requeued, note = requeue_failed(study, frozen, counts=False)
            raise WorkerInterrupted(number, requeued, note) from None
        finished, _ = budget_state(study)
    except WorkerInterrupted:
        raise
    except Exception as exc:
        # the storage failed (disk full, database gone, permission lost): one clear error
        # naming it, instead of what Optuna makes of it ("AssertionError: Should not
        # reach.", "UnboundLocalError"); what finished before is in the storage already
        failure = storage_failure(exc, storage_label(study._storage),
                                  storage_url(study._storage))
        if failure is None or failure is exc:
            raise
        raise failure from exc
    return {"trials": mine, "finished": finished, "stop": stop}


def give_reason(study, trial, exc: BaseException) -> None:
    """Give a trial that is about to fail its ``stop_reason`` if its objective gave none:
    ``interrupted`` (Ctrl-C, SIGTERM) or ``error: Type: message``.  Every FAIL says why.
    A storage that fails meanwhile is left to the error on its way."""
    try:
        if study._storage.get_trial(trial._trial_id).user_attrs.get("stop_reason"):
            return
        if isinstance(exc, KeyboardInterrupt):
            reason = "interrupted"
        else:
            lines = str(exc).strip().splitlines()
            reason = f"error: {type(exc).__name__}" + (f": {lines[0]}" if lines else "")
        trial.set_user_attr("stop_reason", reason)
    except Exception:  # noqa: BLE001, S110 - the storage is failing: its own error follows
        pass


class _Budget:
    """When ``run_worker`` stops, apart from the study's finished trials: why, or None."""

    def __init__(self, max_trials, n_trials, timeout, mine, should_stop):
        self.max_trials = max_trials
        self.n_trials = n_trials
        self.timeout = timeout
        self.mine = mine
        self.should_stop = should_stop
        self.started = time.monotonic()

    def spent(self) -> str | None:
        if self.n_trials is not None and len(self.mine) >= self.n_trials:
            return f"ran {len(self.mine)} trials (--n-trials {self.n_trials})"
        if self.timeout is not None and time.monotonic() - self.started >= self.timeout:
            return f"timeout ({self.timeout:g}s)"
        return None


def _loop(study, gated, ended, current, budget, poll, log, on_wait) -> str:
    """``run_worker``'s loop; returns why it stopped."""
    max_trials = budget.max_trials
    waiting_logged = False
    heartbeat = has_heartbeat(study)
    while True:
        checkpoint()  # an interrupt Python swallowed during the last trial stops here
        why = budget.spent()
        if why:
            return why
        if heartbeat:
            fail_stale_heartbeat(study)
            for trial, why in fail_orphans(study, ORPHAN_AFTER):
                log(f"trial {trial.number} failed: {why}; queued again")
        else:
            for trial, action, why in fail_stale(study, orphan_after=ORPHAN_AFTER):
                if action == "failed":
                    log(f"trial {trial.number} failed: {why}; queued again")
        if max_trials is not None:
            finished, running = budget_state(study)
            if finished >= max_trials:
                return f"the study has {finished} finished trials (--max-trials {max_trials})"
            if finished + running >= max_trials:
                if not waiting_logged:
                    on_wait(f"waiting: {finished} finished + {running} running trials reach "
                            f"--max-trials {max_trials}")
                    waiting_logged = True
                time.sleep(poll)
                continue
        waiting_logged = False
        current.clear()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                study.optimize(gated, n_trials=1, catch=(Exception,), callbacks=[ended])
        except (optuna.exceptions.UpdateFinishedTrialError, ValueError) as exc:
            # Another process declared this worker dead (missed heartbeats) and failed
            # its trial; the trial was queued again there, so this result is dropped.
            # (Optuna's ``tell`` then says "Cannot tell a FAIL trial.")
            if isinstance(exc, ValueError) and not str(exc).startswith("Cannot tell a "):
                raise
            log(f"trial {current.get('number')} was failed by another process (its worker "
                f"looked dead); its result is dropped and its retry runs instead")
            current.clear()
            continue
        if current.get("unclaimed"):
            frozen = study._storage.get_trial(current["id"])
            if requeue(study, frozen):
                log(f"trial {frozen.number} lost its claim; its parameters are queued again")
        current.clear()
        # ``study.stop()`` during the trial (Optuna's grid sampler once the grid is done, a
        # callback): Optuna keeps that request in the study's ``_stop_flag`` until the next
        # ``optimize`` resets it, so it is read here, after the trial.
        if getattr(study, "_stop_flag", False):
            return "the study was stopped (e.g. a grid sampler whose grid is done)"
        if budget.should_stop():
            return "asked to stop"
