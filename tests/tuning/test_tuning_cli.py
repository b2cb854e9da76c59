"""Tiny real studies through the CLI (``tuning.cli.main``) on Fashion-MNIST subsets."""
from __future__ import annotations

import csv
import io
import json
import os

import optuna
import pytest
from optuna.trial import TrialState

import minidl
from minidl.train import evaluate
from tuning.data import test_data as load_test_data
from tuning.models import build_model
from tuning.plots import PLOTS
from tuning.spaces import LAB_GRID

TINY = ["--epochs", "1", "--train-size", "200", "--val-size", "200"]


# `cli` (tests/conftest.py) runs tuning in a fresh folder;
# these tests need the real data set
pytestmark = pytest.mark.usefixtures("fashion_mnist")


def load(name, storage=None):
    storage = storage or optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(f"studies/{name}.log"))
    return optuna.load_study(study_name=name, storage=storage)


def states(study):
    return [t.state for t in study.trials]


def test_lab_mlp_study_best_trials_plot_retrain(cli, tmp_path):
    status, out, _ = cli("run", "--space", "lab-mlp", "--study-name", "lab", "--n-trials", 4,
                         "--pruner", "none", "--seed", 3, *TINY)
    assert status == 0, out
    assert (tmp_path / "studies" / "lab.log").exists()
    lines = [line for line in out.splitlines() if line.startswith("trial ")]
    assert len(lines) == 4 and all("COMPLETE" in line and "hidden_size=" in line
                                   for line in lines)
    assert "Best value (validation error):" in out and "Best hyperparameters:" in out
    study = load("lab")
    assert states(study) == [TrialState.COMPLETE] * 4
    settings = study.user_attrs["tuning_settings"]
    assert settings == {"space": "lab-mlp", "epochs": 1, "train_size": 200, "val_size": 200,
                        "seed": 3, "sampler": "tpe", "pruner": "none", "grid": None}
    for t in study.trials:
        assert t.user_attrs["stop_reason"] == "completed"
        assert len(t.user_attrs["curve"]) == 1 and t.user_attrs["n_params"] > 0

    status, out, _ = cli("best", "--study-name", "lab", "--json")
    best = json.loads(out)
    assert best["trial"] == study.best_trial.number and best["value"] == study.best_value
    assert best["params"] == study.best_params and best["config"]["model"] == "lab-mlp"

    status, out, _ = cli("trials", "--study-name", "lab", "--csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [int(r["number"]) for r in rows] == [0, 1, 2, 3]
    assert float(rows[1]["value"]) == study.trials[1].value
    assert rows[1]["hidden_size"] == str(study.trials[1].params["hidden_size"])
    status, out, _ = cli("trials", "--study-name", "lab", "--json")
    assert [t["state"] for t in json.loads(out)] == ["COMPLETE"] * 4
    status, out, _ = cli("trials", "--study-name", "lab")
    assert status == 0 and out.splitlines()[0].split()[:3] == ["number", "state", "value"]

    status, out, _ = cli("plot", "--study-name", "lab", "--out", "plots")
    assert status == 0
    for name in PLOTS:
        png = tmp_path / "plots" / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name

    status, out, _ = cli("retrain", "--study-name", "lab", "--out", "final",
                         "--train-size", 500)
    assert status == 0, out
    result = json.loads((tmp_path / "final" / "result.json").read_text())
    assert result["trial"] == study.best_trial.number and result["train_size"] == 500
    assert result["epochs"] == 1 and 0.3 < result["test_accuracy"] <= 1.0
    model = build_model(result["config"])
    metadata = minidl.load(model, tmp_path / "final" / "model.npz")
    assert metadata["config"] == result["config"]
    assert metadata["test_accuracy"] == result["test_accuracy"]
    assert evaluate(model, load_test_data())["accuracy"] == result["test_accuracy"]


def test_mlp_study_random_sampler_hyperband(cli):
    status, out, _ = cli("run", "--space", "mlp", "--n-trials", 3, "--sampler", "random",
                         "--pruner", "hyperband", *TINY)
    assert status == 0
    study = load("mlp")  # named after the space
    assert len(study.trials) == 3
    assert all(s in (TrialState.COMPLETE, TrialState.PRUNED) for s in states(study))
    assert all(f"hidden_l{i}" in t.params for t in study.trials
               for i in range(t.params["n_layers"]))


def test_cnn_study_with_enqueued_small_configs(cli):
    small = {"n_conv": 1, "filters_l0": 8, "kernel_l0": 3, "pool_kernel": 2,
             "dense_size": 32, "batch_size": 64}
    for kernel in (3, 5):
        status, out, _ = cli("enqueue", "--space", "cnn", "--study-name", "cnn",
                             "--params", json.dumps({**small, "kernel_l0": kernel}), *TINY)
        assert status == 0 and "enqueued" in out
    status, out, _ = cli("run", "--study-name", "cnn", "--n-trials", 2)
    assert status == 0
    study = load("cnn")
    assert [t.params["kernel_l0"] for t in study.trials] == [3, 5]
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    assert all(t.user_attrs["config"]["filters"] == [8] for t in study.trials)


@pytest.mark.filterwarnings("ignore:Fixed parameter learn_rate with value 10000.0 is out of range")
def test_enqueued_diverging_config_is_pruned_and_the_study_goes_on(cli):
    params = '{"learn_rate": 10000.0, "optimizer": "SGD"}'
    status, _, err = cli("enqueue", "--space", "lab-mlp", "--study-name", "nan",
                         "--params", params, *TINY)
    assert status == 1 and "learn_rate 10000.0 is outside the space's range" in err
    status, _, err = cli("enqueue", "--space", "lab-mlp", "--study-name", "nan",
                         "--params", params, "--outside-range", *TINY)
    assert status == 0 and "warning" in err and "learn_rate" in err  # outside the range
    status, out, _ = cli("run", "--study-name", "nan", "--n-trials", 3)
    assert status == 0
    study = load("nan")
    assert states(study) == [TrialState.PRUNED, TrialState.COMPLETE, TrialState.COMPLETE]
    diverged = study.trials[0]
    assert diverged.params["learn_rate"] == 10000.0
    assert diverged.user_attrs["stop_reason"].startswith("diverged: non-finite training loss")
    assert study.best_trial.number != 0
    assert "PRUNED" in out and "[diverged: non-finite" in out


@pytest.mark.parametrize("sampler", ["cmaes", "ga", "qmc"])
def test_other_samplers(cli, sampler):
    status, out, _ = cli("run", "--space", "lab-mlp", "--study-name", sampler,
                         "--n-trials", 3, "--sampler", sampler, *TINY)
    assert status == 0, out
    study = load(sampler)
    assert len(study.trials) == 3 and study.best_trial is not None
    assert len({t.params["learn_rate"] for t in study.trials}) == 3


def test_grid_sampler_runs_the_lab_grid_then_stops(cli):
    status, out, _ = cli("run", "--space", "lab-mlp", "--study-name", "grid",
                         "--sampler", "grid", *TINY)
    assert status == 0, out
    study = load("grid")
    points = {(t.params["learn_rate"], t.params["batch_size"]) for t in study.trials}
    assert len(study.trials) == 9
    assert points == {(lr, bs) for lr in LAB_GRID["learn_rate"] for bs in LAB_GRID["batch_size"]}
    assert {t.params["hidden_size"] for t in study.trials} == {128}
    assert {t.params["optimizer"] for t in study.trials} == {"Adam"}
    # the grid is done: running it again runs nothing (its budget is the grid's size)
    status, out, _ = cli("run", "--study-name", "grid")
    assert status == 0 and "nothing to run" in out and len(load("grid").trials) == 9


def test_grid_file(cli, tmp_path):
    (tmp_path / "grid.json").write_text(json.dumps(
        {"hidden_size": [64, 256], "optimizer": "SGD", "learn_rate": 0.05}))
    status, out, _ = cli("run", "--space", "lab-mlp", "--study-name", "g2", "--sampler", "grid",
                         "--grid-file", "grid.json", *TINY)
    assert status == 0, out
    study = load("g2")
    assert sorted(t.params["hidden_size"] for t in study.trials) == [64, 256]
    assert {(t.params["optimizer"], t.params["learn_rate"]) for t in study.trials} == {
        ("SGD", 0.05)}
    (tmp_path / "bad.json").write_text("{learn_rate: [1]")
    status, _, err = cli("run", "--space", "lab-mlp", "--study-name", "g3", "--sampler", "grid",
                         "--grid-file", "bad.json", *TINY)
    assert status == 1 and "not valid JSON" in err


def test_resume_counts_and_settings_conflicts(cli):
    assert cli("run", "--space", "lab-mlp", "--study-name", "r", "--n-trials", 2, *TINY)[0] == 0
    status, out, _ = cli("run", "--study-name", "r", "--n-trials", 1)
    assert status == 0 and "2 trials so far" in out
    assert len(load("r").trials) == 3
    status, out, _ = cli("run", "--study-name", "r", "--total", 5)
    assert status == 0 and len(load("r").trials) == 5
    status, out, _ = cli("run", "--study-name", "r", "--total", 5)
    assert status == 0 and "nothing to run" in out and len(load("r").trials) == 5
    # A resumed session does not replay the first session's random draws.
    params = [tuple(sorted(t.params.items())) for t in load("r").trials]
    assert len(set(params)) == 5
    status, _, err = cli("run", "--study-name", "r", "--n-trials", 1, "--epochs", 2)
    assert status == 1 and "--epochs 2 (the study has 1)" in err


def test_any_optuna_storage_url(cli, tmp_path):
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    status, out, _ = cli("run", "--space", "lab-mlp", "--study-name", "sql", "--storage", url,
                         "--n-trials", 2, *TINY)
    assert status == 0, out
    study = optuna.load_study(study_name="sql", storage=url)
    assert len(study.trials) == 2
    status, out, _ = cli("best", "--storage", url)  # the only study in this storage
    assert status == 0 and "Best trial:" in out


def test_small_study_plots_what_it_can(cli, tmp_path):
    assert cli("run", "--space", "lab-mlp", "--study-name", "one", "--n-trials", 1, *TINY)[0] == 0
    status, out, _ = cli("plot", "--study-name", "one", "--out", "p")
    assert status == 0
    assert "param_importances: skipped, parameter importances need at least 2 complete" in out
    assert sorted(p.stem for p in (tmp_path / "p").glob("*.png")) == sorted(
        set(PLOTS) - {"param_importances"})


def test_plot_replaces_only_its_own_pictures(cli, tmp_path):
    assert cli("run", "--space", "lab-mlp", "--study-name", "one", "--n-trials", 1, *TINY)[0] == 0
    assert cli("plot", "--study-name", "one", "--out", "p")[0] == 0
    first = (tmp_path / "p" / "slice.png").read_bytes()
    assert cli("plot", "--study-name", "one", "--out", "p")[0] == 0   # its own: refreshed
    (tmp_path / "p" / "slice.png").write_bytes(b"my own picture")     # now the user's
    status, _, err = cli("plot", "--study-name", "one", "--out", "p")
    assert status == 1
    assert ("--out p: slice.png already exists there, not left by an earlier `tuning plot` "
            "into this folder (or changed since); nothing was replaced. Give --overwrite") in err
    assert (tmp_path / "p" / "slice.png").read_bytes() == b"my own picture"
    assert cli("plot", "--study-name", "one", "--out", "p", "--overwrite")[0] == 0
    assert (tmp_path / "p" / "slice.png").read_bytes()[:4] == first[:4] == b"\x89PNG"


def test_clear_errors(cli, tmp_path):
    with pytest.raises(SystemExit) as exc:
        cli("run", "--space", "transformer", "--n-trials", 1)
    assert exc.value.code == 2
    status, _, err = cli("best", "--study-name", "nope")
    assert status == 1 and "no study storage at studies/nope.log" in err
    assert not (tmp_path / "studies" / "nope.log").exists()
    status, _, err = cli("enqueue", "--space", "lab-mlp", "--study-name", "e",
                         "--params", "{learn_rate: 1}")
    assert status == 1 and "--params is not valid JSON" in err
    status, _, err = cli("enqueue", "--space", "lab-mlp", "--study-name", "e",
                         "--params", '{"filters_l0": 8}')
    assert status == 1 and "unknown parameter(s) filters_l0 for space 'lab-mlp'" in err
    status, _, err = cli("run", "--space", "lab-mlp", "--study-name", "e")
    assert status == 1 and "give --n-trials" in err
    # none of the failed commands above stored anything (issue 18)
    assert not (tmp_path / "studies").exists()
    assert cli("create", "--space", "lab-mlp", "--study-name", "e")[0] == 0
    status, _, err = cli("best", "--study-name", "e")
    assert status == 1 and "has no completed trial yet" in err
    status, _, err = cli("best", "--storage", "studies/e.log", "--study-name", "other")
    assert status == 1 and "study 'other' not found; studies in this storage: e" in err
    status, _, err = cli("run", "--study-name", "fresh", "--n-trials", 1)
    assert status == 1 and "a new study needs --space" in err


def test_run_in_one_process_is_the_worker_loop(cli, monkeypatch):
    # one engine: `run` hands its budget to tuning.workers.run_worker, as `worker` does
    from tuning import workers
    calls = []
    real = workers.run_worker

    def spy(study, objective, **kwargs):
        calls.append(kwargs)
        return real(study, objective, **kwargs)

    monkeypatch.setattr(workers, "run_worker", spy)
    status, out, _ = cli("run", "--space", "lab-mlp", "--study-name", "one", "--n-trials", 2,
                         "--total", 3, *TINY)
    assert status == 0, out
    assert len(calls) == 1 and (calls[0]["n_trials"], calls[0]["max_trials"]) == (2, 3)
    assert "(2 of 2," in out and "ran 2 trials" in out
    status, out, _ = cli("run", "--study-name", "one", "--total", 3)
    assert status == 0 and (calls[1]["n_trials"], calls[1]["max_trials"]) == (1, 3)
    study = load("one")
    assert states(study) == [TrialState.COMPLETE] * 3
    # every trial records the process that ran it, as a worker's trials do
    assert all(t.user_attrs[workers.WORKER_ATTR]["pid"] == os.getpid() and
               t.user_attrs[workers.WORKER_ATTR]["trial"] == t.number for t in study.trials)
