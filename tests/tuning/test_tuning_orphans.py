"""A RUNNING trial that no worker recorded itself on: its process stopped between Optuna
creating the trial and the worker's first write.  The soak test (benchmarks/soak.py) found
one after a SIGKILL on PostgreSQL: neither the owner check nor the heartbeat could fail it,
so a budgeted study waited for it for ever.  ``workers.ORPHAN_AFTER`` seconds after it
started, it is failed with a reason and its parameters are queued again."""
from __future__ import annotations

import time

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState

from tuning import workers
from tuning.storage import open_storage

X = {"x": FloatDistribution(0.0, 1.0)}


def journal(tmp_path, name="o"):
    return optuna.create_study(storage=open_storage(str(tmp_path / f"{name}.log"), name),
                               study_name=name)


def orphan(study, x=0.25):
    """A trial created and given its parameter, as a worker killed right after ``ask``
    leaves it: RUNNING, no worker recorded."""
    study.enqueue_trial({"x": x})
    trial = study.ask(X)
    return trial.number


def test_the_orphan_window_is_two_minutes():
    assert workers.ORPHAN_AFTER == 120.0


def test_an_orphan_is_failed_with_a_reason_and_queued_again(tmp_path):
    study = journal(tmp_path)
    number = orphan(study)
    time.sleep(0.05)
    assert workers.fail_stale(study, orphan_after=60.0) == [
        (study.trials[number], "kept", "no worker recorded yet")]          # too young
    results = workers.fail_stale(study, orphan_after=0.01)
    assert [(t.number, action) for t, action, _ in results] == [(number, "failed")]
    assert results[0][2].startswith("no worker recorded itself on it in 0s (over 0.01s)")
    failed = study.trials[number]
    assert failed.state == TrialState.FAIL
    assert failed.user_attrs["stop_reason"].startswith(
        "worker died: no worker recorded itself on it in ")
    retry = study.trials[-1]
    assert retry.state == TrialState.WAITING and retry.params == {"x": 0.25}


def test_a_trial_with_its_worker_is_no_orphan(tmp_path):
    study = journal(tmp_path)
    number = orphan(study)
    trial = optuna.trial.Trial(study, study.trials[number]._trial_id)
    trial.set_user_attr(workers.WORKER_ATTR, {**workers.worker_identity(), "trial": number})
    time.sleep(0.05)
    assert [a for _, a, _ in workers.fail_stale(study, orphan_after=0.01)] == ["kept"]
    assert workers.fail_orphans(study, orphan_after=0.01) == []
    assert study.trials[number].state == TrialState.RUNNING


def test_never_an_orphan_when_the_check_is_off(tmp_path):
    study = journal(tmp_path)
    orphan(study)
    time.sleep(0.05)
    assert [a for _, a, _ in workers.fail_stale(study, orphan_after=None)] == ["kept"]


def test_fail_orphans_fails_only_orphans_old_enough(tmp_path):
    study = journal(tmp_path)
    old = orphan(study, 0.5)
    time.sleep(0.3)
    young = orphan(study, 0.75)
    failed = workers.fail_orphans(study, orphan_after=0.2)
    assert [t.number for t, _ in failed] == [old]
    assert study.trials[old].state == TrialState.FAIL
    assert study.trials[young].state == TrialState.RUNNING


@pytest.mark.timeout(120)
def test_a_budgeted_worker_does_not_wait_for_an_orphan(tmp_path, monkeypatch):
    # 2 of a budget of 3 finished, and an orphan holds the third place: the worker fails the
    # orphan once it is old enough and runs its configuration, instead of waiting for ever
    study = journal(tmp_path)
    for x in (0.1, 0.2):
        study.enqueue_trial({"x": x})
        trial = study.ask(X)
        study.tell(trial, x)
    number = orphan(study, 0.3)
    monkeypatch.setattr(workers, "ORPHAN_AFTER", 0.5)
    result = workers.run_worker(study, lambda t: t.suggest_float("x", 0.0, 1.0), max_trials=3,
                                poll=0.1, log=lambda *_: None, on_wait=lambda *_: None)
    assert result["finished"] == 3
    assert study.trials[number].state == TrialState.FAIL
    done = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert sorted(t.params["x"] for t in done) == [0.1, 0.2, 0.3]
