"""The worker loop (``tuning.workers.run_worker``) in this process: each way it stops, a
trial that loses its claim, a trial another process failed, a dead worker's trial, and
the wait at the end of the budget, with the exact words it logs.

(The same paths run between real processes in ``test_distributed.py``; here each one is
made to happen on purpose, fast, so that mutation testing reaches them.  A trial that
another process failed meanwhile is left to ``test_distributed.py``: in one process
Optuna's own bookkeeping fails first.)
"""
from __future__ import annotations

import os
import socket
import time

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState

from tuning import journal as journal_module
from tuning import workers
from tuning.errors import StorageFailedError, StorageIOError
from tuning.journal import LOCK_MODE, JournalFileLock
from tuning.storage import open_storage

X = {"x": FloatDistribution(0.0, 1.0)}


def journal(tmp_path, name="w"):
    return optuna.create_study(storage=open_storage(str(tmp_path / f"{name}.log"), name),
                               study_name=name)


def objective(trial):
    return trial.suggest_float("x", 0.0, 1.0)


def test_it_returns_what_it_ran_and_why_it_stopped(tmp_path):
    study = journal(tmp_path)
    seen = []
    result = workers.run_worker(study, objective, n_trials=3, on_trial=seen.append)
    assert result == {"trials": [0, 1, 2], "finished": 3,
                      "stop": "ran 3 trials (--n-trials 3)"}
    assert [t.number for t in seen] == [0, 1, 2]
    ident = study.trials[0].user_attrs[workers.WORKER_ATTR]
    assert ident["trial"] == 0 and ident["pid"] == os.getpid()
    assert ident["host"] == socket.gethostname()
    result = workers.run_worker(study, objective, max_trials=4)
    assert result == {"trials": [3], "finished": 4,
                      "stop": "the study has 4 finished trials (--max-trials 4)"}


def test_should_stop_and_the_study_s_stop_end_the_loop(tmp_path):
    study = journal(tmp_path)
    result = workers.run_worker(study, objective, n_trials=10, should_stop=lambda: True)
    assert result["stop"] == "asked to stop" and result["trials"] == [0]

    def stopping(trial):
        trial.study.stop()                  # as Optuna's grid sampler does when it is done
        return objective(trial)

    result = workers.run_worker(study, stopping, n_trials=10)
    assert result["stop"] == "the study was stopped (e.g. a grid sampler whose grid is done)"
    assert result["trials"] == [1]


def test_a_trial_that_loses_its_claim_is_failed_unstarted_and_queued_again(tmp_path,
                                                                          monkeypatch):
    study = journal(tmp_path)
    study.enqueue_trial({"x": 0.125})
    verdicts = iter([(False, "the study reached --max-trials 5 (test)"), (True, "")])
    monkeypatch.setattr(workers, "claim", lambda study, trial, max_trials: next(verdicts))
    logged, ran = [], []

    def counting(trial):
        ran.append(trial.number)
        return objective(trial)

    result = workers.run_worker(study, counting, max_trials=5, n_trials=1, log=logged.append)
    lost, retry = study.trials[:2]
    assert ran == [1] and result["trials"] == [1]          # the lost one does not count
    assert lost.state == TrialState.FAIL
    assert lost.user_attrs["stop_reason"] == \
        "not started: the study reached --max-trials 5 (test)"
    assert logged == ["trial 0 lost its claim; its parameters are queued again"]
    assert retry.params == {"x": 0.125} and retry.state == TrialState.COMPLETE


def test_a_dead_worker_s_trial_is_failed_and_queued_before_the_next_trial(tmp_path):
    study = journal(tmp_path)
    dead = study.ask(X)
    gone = {**workers.worker_identity(), "pid": 2 ** 22 + 12345, "trial": dead.number}
    dead.set_user_attr(workers.WORKER_ATTR, gone)
    logged = []
    result = workers.run_worker(study, objective, n_trials=1, log=logged.append)
    assert logged == [f"trial 0 failed: worker {gone['host']} pid {gone['pid']} is gone; "
                      f"queued again"]
    first, retry = study.trials
    assert first.state == TrialState.FAIL and retry.state == TrialState.COMPLETE
    assert retry.params == first.params and result["trials"] == [1]


def test_at_the_end_of_the_budget_it_waits_for_running_trials_and_says_so_once(tmp_path):
    study = journal(tmp_path)
    other = study.ask(X)                       # a live worker's trial: this process's
    other.set_user_attr(workers.WORKER_ATTR, {**workers.worker_identity(),
                                               "trial": other.number})
    waits = []
    result = workers.run_worker(study, objective, max_trials=1, timeout=0.3, poll=0.05,
                                on_wait=waits.append)
    assert waits == ["waiting: 0 finished + 1 running trials reach --max-trials 1"]
    assert result == {"trials": [], "finished": 0, "stop": "timeout (0.3s)"}


def test_a_storage_that_fails_is_one_error_naming_it(tmp_path, monkeypatch):
    study = journal(tmp_path)

    def full(fd, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(journal_module, "_write_chunk", full)
    with pytest.raises(StorageFailedError) as info:
        workers.run_worker(study, objective, n_trials=1)
    assert str(info.value) == (
        f"the storage {tmp_path / 'w.log'} failed: No space left on device. The run stopped; "
        f"the trials finished before are kept there (run the command again once the storage "
        f"works; --debug shows the traceback)")
    assert isinstance(info.value.__cause__, StorageIOError)


# -- the journal's writer lock: what a dead writer leaves behind (journal.JournalFileLock) --

def _lock(tmp_path, grace=30.0):
    (tmp_path / "j.log").write_bytes(b"")
    return JournalFileLock(str(tmp_path / "j.log"), grace_period=grace), tmp_path / "j.log.lock"


def test_the_lock_file_says_who_holds_it_and_goes_on_release(tmp_path):
    lock, path = _lock(tmp_path)
    assert lock.acquire() is True
    assert path.read_text() == f"{socket.gethostname()} pid {os.getpid()}\n"
    assert (path.stat().st_mode & 0o777) == LOCK_MODE
    lock.release()
    assert not path.exists() and list(tmp_path.iterdir()) == [tmp_path / "j.log"]
    lock.release()                                   # already gone: nothing to do


def test_our_lock_file_left_by_a_dead_writer_is_taken_at_once(tmp_path):
    lock, path = _lock(tmp_path, grace=None)           # never by age: only as ours
    fd = os.open(path, os.O_CREAT | os.O_WRONLY, LOCK_MODE)
    os.close(fd)
    t0 = time.monotonic()
    lock.acquire()
    assert time.monotonic() - t0 < 1.0
    assert path.read_text().endswith(f"pid {os.getpid()}\n")
    lock.release()


def test_a_foreign_lock_file_is_waited_for_until_its_grace_period(tmp_path):
    lock, path = _lock(tmp_path, grace=0.4)
    path.write_text("plain Optuna's lock")
    os.chmod(path, 0o644)                                # not ours: held until the grace
    t0 = time.monotonic()
    lock.acquire()
    waited = time.monotonic() - t0
    assert 0.35 < waited < 3.0
    assert path.read_text().endswith(f"pid {os.getpid()}\n")
    lock.release()
    path.write_text("an old lock")
    os.chmod(path, 0o644)
    os.utime(path, (time.time() - 60, time.time() - 60))   # older than the grace already
    t0 = time.monotonic()
    lock.acquire()
    assert time.monotonic() - t0 < 0.3
    lock.release()


# -- fail_stale: which RUNNING trials are a dead worker's ---------------------------------

def test_fail_stale_by_age_dry_run_and_kept(tmp_path):
    study = journal(tmp_path)
    elsewhere = study.ask(X)
    elsewhere.set_user_attr(workers.WORKER_ATTR, {"host": "another-host", "pid": 1,
                                                   "trial": elsewhere.number})
    mine = study.ask(X)
    mine.set_user_attr(workers.WORKER_ATTR, {**workers.worker_identity(),
                                              "trial": mine.number})
    kept = workers.fail_stale(study)
    assert [(t.number, action) for t, action, _ in kept] == [(0, "kept"), (1, "kept")]
    assert kept[0][2] == "worker another-host pid 1 is on another machine"
    dry = workers.fail_stale(study, older_than=0.0, dry_run=True)
    assert [(t.number, action) for t, action, _ in dry] == [(0, "would fail"), (1, "kept")]
    assert dry[0][2].startswith("worker another-host pid 1 is on another machine; running "
                                "for 0s (over 0s)")
    assert [t.state for t in study.trials] == [TrialState.RUNNING] * 2
    done = workers.fail_stale(study, older_than=0.0)
    assert [(t.number, action) for t, action, _ in done] == [(0, "failed"), (1, "kept")]
    first = study.trials[0]
    assert first.state == TrialState.FAIL
    assert first.user_attrs["stop_reason"].startswith(
        "worker died: worker another-host pid 1 is on another machine; running for")
    assert study.trials[-1].state == TrialState.WAITING
    assert workers.fail_stale(study, older_than=3600.0)[0][1] == "kept"
