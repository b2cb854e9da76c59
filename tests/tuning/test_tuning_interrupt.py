"""Ctrl-C (SIGINT) in the middle of a trial of ``python -m tuning run``, then resuming:
the interrupted configuration is queued again and runs first."""
from __future__ import annotations

import signal
import subprocess
import sys
import time

import optuna
from optuna.trial import TrialState

from tuning_env import tuning_env

RUN = [sys.executable, "-m", "tuning", "run", "--study-name", "s", "--total", "3"]
SETTINGS = ["--space", "lab-mlp", "--epochs", "20", "--train-size", "12000",
            "--val-size", "1000", "--pruner", "none"]


def _load(tmp_path):
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(tmp_path / "studies" / "s.log")))
    return optuna.load_study(study_name="s", storage=storage)


def test_sigint_mid_trial_then_resume(tmp_path, fashion_mnist):
    proc = subprocess.Popen(RUN + SETTINGS, cwd=tmp_path, env=tuning_env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # Per-epoch progress goes to stderr when it is not a terminal: wait until the second
    # trial has finished its first epoch, so the interrupt lands inside that trial.
    seen = []
    deadline = time.monotonic() + 60
    try:
        for line in proc.stderr:
            seen.append(line)
            if line.startswith("  trial 1 epoch 1/20"):
                proc.send_signal(signal.SIGINT)
                break
            assert time.monotonic() < deadline, "".join(seen)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, "".join(seen) + err
    assert "interrupted: trial 1 was marked FAIL and queued again" in err
    # the command names this interpreter unless it is the `python` on PATH
    assert "-m tuning run --study-name s --total 3" in err.split("continue with: ", 1)[1]
    assert "trial   0  COMPLETE" in out

    study = _load(tmp_path)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE, TrialState.FAIL,
                                               TrialState.WAITING]
    first = study.trials[0]
    interrupted = study.trials[1]
    assert interrupted.user_attrs["stop_reason"] == "interrupted"
    assert len(interrupted.user_attrs["curve"]) >= 1
    # its configuration is queued again (issue 18), so the next run evaluates it first
    assert study.trials[2].params == interrupted.params
    assert study.trials[2].system_attrs["failed_trial"] == 1

    # Resume: the same command completes the study up to 3 finished trials.
    done = subprocess.run(RUN, cwd=tmp_path, env=tuning_env(), text=True, capture_output=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    study = _load(tmp_path)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE, TrialState.FAIL,
                                               TrialState.COMPLETE, TrialState.COMPLETE]
    kept = study.trials[0]
    assert (kept.value, kept.params, kept.user_attrs) == (first.value, first.params,
                                                          first.user_attrs)
    assert [t.number for t in study.trials] == [0, 1, 2, 3]
    assert study.trials[2].params == interrupted.params
    assert "Best value (validation error):" in done.stdout
