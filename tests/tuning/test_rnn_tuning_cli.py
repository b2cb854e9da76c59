"""The ``rnn`` space through every command: enqueue, run, best, plot, retrain, create,
worker (issue 13)."""
from __future__ import annotations

import json

import optuna
import pytest
from optuna.trial import TrialState


TINY = ["--epochs", "1", "--train-size", "128", "--val-size", "128"]


# `cli` (tests/conftest.py) runs tuning in a fresh folder;
# these tests need the real data set
pytestmark = pytest.mark.usefixtures("fashion_mnist")


def test_rnn_study_every_command(cli, tmp_path):
    small = {"cell": "GRU", "n_layers": 1, "hidden_l0": 16, "seq_len": 7, "batch_size": 64}
    status, out, err = cli("enqueue", "--space", "rnn", "--study-name", "rnn",
                           "--params", json.dumps(small), "--pruner", "none", *TINY)
    assert status == 0, out + err
    status, out, err = cli("run", "--study-name", "rnn", "--n-trials", 2)
    assert status == 0, out + err
    study = optuna.load_study(study_name="rnn", storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend("studies/rnn.log")))
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2
    assert study.trials[0].params["cell"] == "GRU"
    status, out, _ = cli("best", "--study-name", "rnn", "--json")
    assert json.loads(out)["config"]["model"] == "rnn"
    status, out, _ = cli("plot", "--study-name", "rnn", "--out", "plots")
    assert status == 0
    status, out, err = cli("retrain", "--study-name", "rnn", "--out", "model", "--epochs", 1,
                           "--train-size", 256)
    assert status == 0, out + err
    assert (tmp_path / "model" / "model.npz").exists()


def test_rnn_study_create_and_worker(cli):
    status, out, err = cli("create", "--space", "rnn", "--study-name", "rnnw", "--pruner",
                           "none", *TINY)
    assert status == 0, out + err
    status, out, err = cli("enqueue", "--study-name", "rnnw", "--params",
                           json.dumps({"cell": "LSTM", "hidden_l0": 16, "seq_len": 14,
                                       "bidirectional": True}))
    assert status == 0, out + err
    status, out, err = cli("worker", "--study-name", "rnnw", "--max-trials", 1, "--threads", 1)
    assert status == 0, out + err
    study = optuna.load_study(study_name="rnnw", storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend("studies/rnnw.log")))
    assert [t.state for t in study.trials] == [TrialState.COMPLETE]
    assert study.trials[0].params["bidirectional"] is True
    assert study.trials[0].user_attrs["config"]["model"] == "rnn"
