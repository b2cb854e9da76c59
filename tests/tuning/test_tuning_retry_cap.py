"""Issue 23, items 8 and 9: what the retry cap counts, and why every FAIL says why.

The cap (``tuning.workers.MAX_RETRIES`` = 2) counts only failures the configuration can
have caused: its worker died while running it (a SIGKILL from outside, which cannot be
told from an out-of-memory kill; a heartbeat that stopped).  An interrupt the tool
received (Ctrl-C, SIGTERM) never counts.  A trial failed by the PostgreSQL heartbeat
has a ``stop_reason`` as a journal one does.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import zlib

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState

from tuning import workers
from tuning.errors import WorkerInterrupted
from tuning.storage import open_storage
from tuning_env import tuning_env

X = {"x": FloatDistribution(0.0, 1.0)}
SLOW = ["--space", "lab-mlp", "--epochs", "3", "--train-size", "10000", "--val-size", "500",
        "--pruner", "none", "--sampler", "random"]


def journal(tmp_path, name="r"):
    return optuna.create_study(storage=open_storage(str(tmp_path / f"{name}.log"), name),
                               study_name=name)


def fail_and_requeue(study, counts):
    """Run the study's next (queued) trial, fail it, requeue it; ``(queued, why)``."""
    trial = study.ask(X)
    study.tell(trial, state=TrialState.FAIL)
    return workers.requeue_failed(study, study.trials[trial.number], counts=counts)


def test_the_cap_is_two_counted_failures():
    assert workers.MAX_RETRIES == 2
    assert workers.COUNTED_ATTR == "counted_failures"


def test_interrupts_never_count(tmp_path):
    study = journal(tmp_path)
    for n in range(6):
        assert fail_and_requeue(study, counts=False) == (True, "")
        queued = study.trials[-1]
        assert queued.state == TrialState.WAITING
        assert queued.system_attrs["counted_failures"] == []
        assert queued.system_attrs["retry_history"] == list(range(n + 1))
        assert queued.system_attrs["failed_trial"] == 0
    assert len({tuple(t.params.items()) for t in study.trials if t.params}) == 1


def test_deaths_count_up_to_the_cap(tmp_path):
    study = journal(tmp_path)
    assert fail_and_requeue(study, counts=True) == (True, "")
    assert study.trials[-1].system_attrs["counted_failures"] == [0]
    assert fail_and_requeue(study, counts=True) == (True, "")
    assert study.trials[-1].system_attrs["counted_failures"] == [0, 1]
    assert fail_and_requeue(study, counts=True) == \
        (False, "not queued again (retried 2 times already)")
    assert [t.state for t in study.trials] == [TrialState.FAIL] * 3


def test_interrupts_between_deaths_do_not_use_up_the_cap(tmp_path):
    study = journal(tmp_path)
    for counts in (True, False, False, False, True, False):
        assert fail_and_requeue(study, counts=counts) == (True, "")
    assert study.trials[-1].system_attrs["counted_failures"] == [0, 4]
    assert fail_and_requeue(study, counts=True)[0] is False


def test_a_retry_queued_by_an_older_version_counts_its_whole_history(tmp_path):
    study = journal(tmp_path)
    study.enqueue_trial({"x": 0.5})
    trial = study.ask(X)
    study._storage.set_trial_system_attr(trial._trial_id, "retry_history", [7, 8])
    study.tell(trial, state=TrialState.FAIL)
    # no counted_failures: [7, 8] count, and this death makes three
    assert workers.requeue_failed(study, study.trials[0], counts=True)[0] is False
    queued, _ = workers.requeue_failed(study, study.trials[0], counts=False)
    assert queued and study.trials[-1].system_attrs["counted_failures"] == [7, 8]


def test_the_worker_loop_requeues_an_interrupted_trial_without_counting_it(tmp_path):
    """Ctrl-C three (and more) times on the same configuration: each time it is failed
    with the reason "interrupted" and queued again, uncounted; then it completes."""
    study = journal(tmp_path)
    study.enqueue_trial({"x": 0.25})
    interrupts = []

    def objective(trial):
        x = trial.suggest_float("x", 0.0, 1.0)
        if len(interrupts) < 4:
            interrupts.append(trial.number)
            raise KeyboardInterrupt
        return x

    for n in range(4):
        with pytest.raises(WorkerInterrupted) as info:
            workers.run_worker(study, objective, n_trials=1)
        assert (info.value.trial, info.value.requeued, info.value.note) == (n, True, "")
    result = workers.run_worker(study, objective, n_trials=1)
    assert result["trials"] == [4]
    trials = study.trials
    assert [t.state for t in trials] == [TrialState.FAIL] * 4 + [TrialState.COMPLETE]
    assert all(t.params == {"x": 0.25} for t in trials)
    assert [t.user_attrs["stop_reason"] for t in trials[:4]] == ["interrupted"] * 4
    assert trials[4].system_attrs["counted_failures"] == []
    assert trials[4].system_attrs["retry_history"] == [0, 1, 2, 3]


def test_every_fail_of_the_worker_loop_has_a_reason(tmp_path):
    """An objective that gives no reason (not tuning's): the loop gives one."""
    study = journal(tmp_path)

    def broken(trial):
        trial.suggest_float("x", 0.0, 1.0)
        raise RuntimeError("out of cheese\nsecond line")

    workers.run_worker(study, broken, n_trials=2)
    assert [t.user_attrs["stop_reason"] for t in study.trials] == \
        ["error: RuntimeError: out of cheese"] * 2

    def silent(trial):
        raise ValueError

    workers.run_worker(study, silent, n_trials=1)
    assert study.trials[-1].user_attrs["stop_reason"] == "error: ValueError"

    def explained(trial):
        trial.set_user_attr("stop_reason", "its own words")
        raise ValueError("other words")

    workers.run_worker(study, explained, n_trials=1)
    assert study.trials[-1].user_attrs["stop_reason"] == "its own words"


# -- real processes: interrupted three times vs killed three times ------------------------

def _start_worker(cwd, *args):
    return subprocess.Popen([sys.executable, "-m", "tuning", "worker", "--study-name", "c",
                             "--threads", "1", "--quiet", *args], cwd=cwd, env=tuning_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _running_trial_of(log, pid, timeout=120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        study = optuna.load_study(study_name="c", storage=open_storage(str(log), "c",
                                                                       write=False))
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if (t.user_attrs.get("worker") or {}).get("pid") == pid and "config" in t.user_attrs:
                return t
        time.sleep(0.1)
    pytest.fail(f"worker {pid} started no trial within {timeout}s")


def _create(tmp_path):
    made = subprocess.run([sys.executable, "-m", "tuning", "create", "--study-name", "c",
                           *SLOW], cwd=tmp_path, env=tuning_env(), capture_output=True, text=True,
                          timeout=120)
    assert made.returncode == 0, made.stderr
    return tmp_path / "studies" / "c.log"


@pytest.mark.slow
def test_a_configuration_interrupted_three_times_is_still_queued(tmp_path, fashion_mnist):
    log = _create(tmp_path)
    params = None
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGINT):
        proc = _start_worker(tmp_path, "--max-trials", "1")
        trial = _running_trial_of(log, proc.pid)
        params = params or trial.params
        assert trial.params == params            # the queued configuration runs first
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 130, out + err
        assert f"trial {trial.number} was marked FAIL and queued again" in err
    study = optuna.load_study(study_name="c", storage=open_storage(str(log), "c"))
    (queued,) = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
    assert queued.params == params and queued.system_attrs["counted_failures"] == []
    assert queued.system_attrs["retry_history"] == [0, 1, 2]
    assert [t.user_attrs["stop_reason"] for t in study.trials[:3]] == ["interrupted"] * 3
    done = subprocess.run([sys.executable, "-m", "tuning", "worker", "--study-name", "c",
                           "--max-trials", "1", "--threads", "1", "--quiet"], cwd=tmp_path,
                          env=tuning_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    final = optuna.load_study(study_name="c", storage=open_storage(str(log), "c")).trials
    assert final[queued.number].state == TrialState.COMPLETE
    assert final[queued.number].params == params


@pytest.mark.slow
def test_a_configuration_killed_three_times_is_dropped(tmp_path, fashion_mnist):
    log = _create(tmp_path)
    params = None
    for _ in range(3):
        proc = _start_worker(tmp_path, "--max-trials", "1")
        trial = _running_trial_of(log, proc.pid)
        params = params or trial.params
        assert trial.params == params
        proc.send_signal(signal.SIGKILL)         # from outside: as the kernel's OOM killer
        proc.wait(60)
    out = subprocess.run([sys.executable, "-m", "tuning", "fail-stale", "--study-name", "c"],
                         cwd=tmp_path, env=tuning_env(), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "trial 2: failed" in out.stdout
    assert "not queued again (retried 2 times already)" in out.stdout
    study = optuna.load_study(study_name="c", storage=open_storage(str(log), "c"))
    assert [t.state for t in study.trials] == [TrialState.FAIL] * 3
    assert all(t.params == params for t in study.trials)
    assert all(t.user_attrs["stop_reason"].startswith("worker died: worker ")
               for t in study.trials)


# -- item 9: the PostgreSQL heartbeat's FAIL has a reason -------------------------------------

@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used")
def test_a_trial_failed_by_the_heartbeat_has_a_reason(postgres_url):
    name = f"hb-{os.getpid()}-{time.monotonic_ns()}"
    storage = workers.open_worker_storage(postgres_url, name, heartbeat=1, must_exist=False)
    assert isinstance(storage, workers.WorkerRDBStorage)
    assert (storage.heartbeat_interval, storage.grace_period) == (1, 3)
    study = optuna.create_study(storage=storage, study_name=name)
    trial = study.ask(X)
    trial.set_user_attr(workers.WORKER_ATTR, {**workers.worker_identity(), "trial": 0})
    storage.record_heartbeat(trial._trial_id)           # one beat, then silence
    time.sleep(4.5)
    workers.fail_stale_heartbeat(study)
    fresh = optuna.load_study(study_name=name, storage=postgres_url)
    dead, retry = fresh.trials
    assert dead.state == TrialState.FAIL
    assert dead.user_attrs["stop_reason"] == (f"worker died: no heartbeat for 3s "
                                              f"({socket.gethostname()} pid {os.getpid()})")
    assert retry.state == TrialState.WAITING and retry.params == dead.params
    assert retry.system_attrs["counted_failures"] == [0]   # a death counts
    assert "stop_reason" not in retry.user_attrs and "worker" not in retry.user_attrs


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used")
def test_the_heartbeat_outlives_a_database_outage(postgres_url, monkeypatch):
    import sqlalchemy
    storage = workers.open_worker_storage(postgres_url, "x", heartbeat=1, must_exist=False)
    study = optuna.create_study(storage=storage, study_name=f"ok-{time.monotonic_ns()}")
    trial = study.ask(X)
    gone = sqlalchemy.exc.OperationalError("UPDATE", {}, Exception("server closed the "
                                                                   "connection"))

    def away(self, trial_id):
        raise gone

    with monkeypatch.context() as m:
        m.setattr(optuna.storages.RDBStorage, "record_heartbeat", away)
        storage.record_heartbeat(trial._trial_id)       # kept, not raised in the thread
    assert storage.heartbeat_error is gone
    storage.record_heartbeat(trial._trial_id)           # the database is back
    assert storage.heartbeat_error is None
    # and the reason of a finished trial is written only through set_failed_trial_reason
    study.tell(trial, state=TrialState.FAIL)
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        storage.set_trial_user_attr(trial._trial_id, "stop_reason", "late")
    storage.set_failed_trial_reason(trial._trial_id, "why")
    assert storage.get_trial(trial._trial_id).user_attrs["stop_reason"] == "why"
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        storage.set_trial_user_attr(trial._trial_id, "stop_reason", "later")


def test_a_trial_that_lost_its_claim_is_queued_again_as_it_was(tmp_path):
    """``requeue``: the parameters (asked or enqueued) and the configuration's user
    attributes come back in a WAITING trial; the run's own attributes do not."""
    study = journal(tmp_path)
    study.enqueue_trial({"x": 0.75}, user_attrs={"note": "mine"})
    trial = study.ask(X)
    trial.set_user_attr(workers.WORKER_ATTR, {"pid": 1, "trial": trial.number})
    trial.set_user_attr("stop_reason", "not started: the study is full")
    study.tell(trial, state=TrialState.FAIL)
    frozen = study.trials[trial.number]
    assert workers.requeue(study, frozen) is True
    queued = study.trials[-1]
    assert queued.state == TrialState.WAITING and queued.number == trial.number + 1
    assert queued.params == {"x": 0.75}
    assert queued.user_attrs == {"note": "mine"}
    assert queued.system_attrs == frozen.system_attrs
    assert study.ask(X).params == {"x": 0.75}             # it runs next

    empty = study.ask()                                   # asked for nothing: nothing to queue
    study.tell(empty, state=TrialState.FAIL)
    before = len(study.trials)
    assert workers.requeue(study, study.trials[empty.number]) is False
    assert len(study.trials) == before


def test_worker_labels_and_seed_salts():
    host = {"host": "node7", "pid": 4242}
    assert workers.worker_label(None) == workers.worker_label("w1") == "?"
    assert workers.worker_label({**host, "rank": 3}) == "w3"
    assert workers.worker_label({**host, "rank": 0}) == "w0"
    assert workers.worker_label({**host, "rank": None}) == "node7:4242"
    assert workers.worker_label(host) == "node7:4242"
    assert workers.worker_seed_salt({**host, "rank": 3}) == 3
    assert workers.worker_seed_salt({**host, "rank": 0}) == 0
    assert workers.worker_seed_salt({**host, "rank": None}) == zlib.crc32(b"node7:4242")
    assert workers.worker_seed_salt(host) != workers.worker_seed_salt({**host, "pid": 4243})


def test_claim_counts_finished_trials_and_those_ahead():
    """``claim``: the finished trials (any number) plus the RUNNING and WAITING trials
    numbered before this one must stay under the budget."""
    from types import SimpleNamespace

    study = optuna.create_study(storage=optuna.storages.InMemoryStorage())
    dist = {"x": FloatDistribution(0.0, 1.0)}
    states = [TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING,
              TrialState.WAITING, TrialState.RUNNING, TrialState.RUNNING, TrialState.WAITING,
              TrialState.COMPLETE]
    for state in states:
        values = {"value": 0.5} if state == TrialState.COMPLETE else {}
        study.add_trial(optuna.trial.create_trial(state=state, params={"x": 0.5},
                                                  distributions=dist, **values))
    me = SimpleNamespace(number=5)            # trial 5: three finished, two ahead of it
    assert workers.claim(study, me, 6) == (True, "")
    assert workers.claim(study, me, 5) == (
        False, "the study reached --max-trials 5 (3 finished, 2 running or queued before trial 5)")
    assert workers.claim(study, SimpleNamespace(number=3), 4) == (True, "")
    assert workers.claim(study, SimpleNamespace(number=3), 3)[0] is False


def test_default_threads_shares_the_cores_this_process_may_use(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)))
    assert [workers.default_threads(k) for k in (1, 2, 3, 8, 16, 0)] == [8, 4, 2, 1, 1, 8]
    monkeypatch.delattr(os, "sched_getaffinity")       # not Linux: every core counts
    monkeypatch.setattr(os, "cpu_count", lambda: 6)
    assert [workers.default_threads(k) for k in (1, 4, 7)] == [6, 1, 1]
    monkeypatch.setattr(os, "cpu_count", lambda: None)
    assert workers.default_threads(1) == 1


def test_a_value_outside_its_distribution_is_queued_again_as_fixed_params(tmp_path):
    study = journal(tmp_path)
    study.enqueue_trial({"x": 2.0}, user_attrs={"note": "mine"})
    with pytest.warns(UserWarning):
        trial = study.ask(X)                             # Optuna keeps the enqueued 2.0
    assert trial.params == {"x": 2.0}
    study.tell(trial, state=TrialState.FAIL)
    assert workers.requeue(study, study.trials[0]) is True
    queued = study.trials[-1]
    assert queued.state == TrialState.WAITING and queued.params == {}
    assert queued.system_attrs["fixed_params"] == {"x": 2.0}
    assert queued.user_attrs == {"note": "mine"}
    with pytest.warns(UserWarning):
        assert study.ask(X).params == {"x": 2.0}
