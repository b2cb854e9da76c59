"""An interrupt is never lost and always ends with status 130 (``tuning.interrupts``).

Found by CI: a SIGINT that reached a worker while it imported SciPy for Numba's first
compilation either vanished (raised inside a weak-reference callback, where Python only
prints "Exception ignored"; the worker, ignoring repeats, then ran trials for ever) or
ended the process by SIGINT instead of with status 130 (the KeyboardInterrupt had passed
through an ``exec`` of a string, which CPython remembers).  These tests make both happen
on purpose.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import optuna
import pytest

from minidl.data import ArrayDataset
from tuning import interrupts, workers
from tuning.commands.options import EXIT_INTERRUPTED
from tuning.errors import WorkerInterrupted
from tuning.objective import train_config
from tuning_env import tuning_env


def _swallowed_signal(signum=signal.SIGINT):
    """Send ``signum`` to this process where its KeyboardInterrupt is swallowed, as Python
    swallows one raised inside a weak-reference callback."""
    try:
        os.kill(os.getpid(), signum)
        time.sleep(1.0)         # the handler runs at the next bytecode; never sleeps long
    except KeyboardInterrupt:
        return
    pytest.fail("the signal raised no KeyboardInterrupt")


def test_a_swallowed_interrupt_is_raised_again_at_the_checkpoint():
    with interrupts.interrupt_signals():
        interrupts.checkpoint()                 # nothing received: nothing raised
        _swallowed_signal(signal.SIGTERM)
        assert interrupts.interrupted() == signal.SIGTERM
        os.kill(os.getpid(), signal.SIGINT)     # a repeat is ignored ...
        time.sleep(0.05)
        with pytest.raises(KeyboardInterrupt):  # ... and the first is not forgotten
            interrupts.checkpoint()
    assert interrupts.interrupted() is None     # forgotten on leaving, handlers back
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    interrupts.checkpoint()


def test_the_worker_loop_stops_before_its_next_trial(tmp_path):
    study = optuna.create_study(study_name="s", storage=optuna.storages.InMemoryStorage())
    ran = []

    def objective(trial):
        ran.append(trial.number)
        if trial.number == 0:
            _swallowed_signal()
        return trial.suggest_float("x", 0.0, 1.0)

    with interrupts.interrupt_signals(), pytest.raises(WorkerInterrupted) as info:
        workers.run_worker(study, objective, n_trials=5)
    assert ran == [0]
    assert info.value.trial is None             # no trial was in progress
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE]


def test_training_stops_after_the_epoch_the_interrupt_was_swallowed_in():
    rng = np.random.default_rng(0)
    data = ArrayDataset(rng.normal(size=(64, 1, 28, 28)).astype(np.float32),
                        rng.integers(0, 10, size=64))
    config = {"model": "lab-mlp", "hidden_size": 8, "dropout_rate": 0.1, "learn_rate": 0.01,
              "optimizer": "SGD", "batch_size": 32, "momentum": 0.0, "weight_decay": 0.0,
              "lr_schedule": "none", "augment_strength": 0.0}
    seen = []

    def callback(epoch, _record):
        seen.append(epoch)
        if epoch == 1:
            _swallowed_signal()

    with interrupts.interrupt_signals(), pytest.raises(KeyboardInterrupt):
        train_config(config, data, data, epochs=4, callbacks=[callback])
    assert seen == [1]


_EXEC_INTERRUPT = """
    import sys
    from tuning import cli, commands
    from tuning.commands import best

    def interrupted_inside_exec(args):
        exec("import os, signal, time; os.kill(os.getpid(), signal.SIGINT); time.sleep(5)")

    best.run = interrupted_inside_exec
    {setup}
    raise SystemExit(cli.main(["best", "--study-name", "x"]))
"""


@pytest.mark.parametrize("forget", [True, False], ids=["cli", "without-the-fix"])
def test_an_interrupt_that_passed_through_exec_still_exits_130(tmp_path, forget):
    setup = "" if forget else "cli.forget_python_interrupt = lambda: None"
    (tmp_path / "interrupt_cli.py").write_text(textwrap.dedent(_EXEC_INTERRUPT.format(setup=setup)))
    # run with -m, as `python -m tuning` runs (a script file exits by another path)
    done = subprocess.run([sys.executable, "-m", "interrupt_cli"], cwd=tmp_path, env=tuning_env(),
                          capture_output=True, text=True, timeout=120)
    assert "tuning best: interrupted" in done.stderr
    # CPython's own behaviour, which the CLI undoes: the process dies by SIGINT
    assert done.returncode == (EXIT_INTERRUPTED if forget else -signal.SIGINT), \
        done.stderr
