"""Multi-objective studies (issue 17): ``--objectives error,params`` / ``error,latency``.

Tiny real studies through the CLI (``tuning.cli.main``) on Fashion-MNIST subsets: the
values stored, the Pareto front ``best`` lists, the plots, ``retrain --trial N``, the
refused combinations, and a single-objective study stored before the setting existed.
"""
from __future__ import annotations

import csv
import io
import json

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

from tuning.cli import main
from tuning.errors import TuningError
from tuning.study import StudySettings, parse_objectives

TINY = ["--epochs", "1", "--train-size", "300", "--val-size", "200"]
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def cli(tmp_path, monkeypatch, capsys, fashion_mnist):
    """Run ``tuning`` in a fresh folder; returns (exit status, stdout, stderr)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OPTUNA_STORAGE", raising=False)

    def run(*argv):
        status = main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return status, out, err

    return run


def journal(name):
    return optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(f"studies/{name}.log"))


def load(name):
    return optuna.load_study(study_name=name, storage=journal(name))


def dominates(a, b) -> bool:
    return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))


def test_error_params_study_front_trials_plot_retrain(cli, tmp_path):
    status, out, err = cli("run", "--space", "lab-mlp", "--study-name", "mo", "--objectives",
                           "error,params", "--n-trials", 5, "--seed", 1, "--quiet", *TINY)
    assert status == 0, err
    assert out.count("pruning is off") == 1 and "objectives: error, params" in out
    lines = [line for line in out.splitlines() if line.startswith("trial ")]
    assert len(lines) == 5 and all("error 0." in line and "params " in line for line in lines)

    study = load("mo")
    assert [d.name for d in study.directions] == ["MINIMIZE", "MINIMIZE"]
    assert study.metric_names == ["error", "params"]
    settings = study.user_attrs["tuning_settings"]
    assert settings["objectives"] == "error,params" and settings["pruner"] == "none"
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 5
    for t in complete:
        assert len(t.values) == 2 and 0 <= t.values[0] <= 1
        assert t.values[1] == t.user_attrs["n_params"] > 0
        assert not t.intermediate_values                  # nothing reported: no pruning

    # best: the Pareto front, non-dominated, and every other trial dominated by it
    status, out, _ = cli("best", "--study-name", "mo", "--json")
    best = json.loads(out)
    assert best["objectives"] == ["error", "params"]
    assert best["directions"] == ["minimize", "minimize"]
    front = {f["trial"]: [f["values"]["error"], f["values"]["params"]]
             for f in best["pareto_front"]}
    assert front and set(front) == {t.number for t in study.best_trials}
    values = {t.number: t.values for t in complete}
    for n, v in front.items():
        assert v == values[n]
        assert not any(dominates(w, v) for w in values.values())
    for n, v in values.items():
        if n not in front:
            assert any(dominates(w, v) or w == v for w in front.values())
    status, out, _ = cli("best", "--study-name", "mo")
    assert status == 0 and "Pareto front (error, params" in out
    table = out.splitlines()
    head = next(i for i, line in enumerate(table) if line.split()[:3] == ["trial", "error",
                                                                          "params"])
    assert [int(r.split()[0]) for r in table[head + 1:head + 1 + len(front)]] == \
        sorted(front, key=lambda n: (front[n], n))

    # trials: one column per objective, in the table, CSV and JSON
    status, out, _ = cli("trials", "--study-name", "mo", "--csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert "value" not in rows[0] and len(rows) == 5
    assert [float(r["error"]) for r in rows] == [values[n][0] for n in range(5)]
    assert [float(r["params"]) for r in rows] == [values[n][1] for n in range(5)]
    status, out, _ = cli("trials", "--study-name", "mo", "--json")
    items = json.loads(out)
    assert [list(i["values"].values()) for i in items] == [values[n] for n in range(5)]
    status, out, _ = cli("trials", "--study-name", "mo")
    assert out.splitlines()[0].split()[:4] == ["number", "state", "error", "params"]

    # plot: pareto_front.png, the other plots on the error, intermediate values skipped
    status, out, _ = cli("plot", "--study-name", "mo", "--out", "plots")
    assert status == 0, out
    assert (tmp_path / "plots" / "pareto_front.png").read_bytes()[:8] == PNG
    assert (tmp_path / "plots" / "optimization_history.png").read_bytes()[:8] == PNG
    assert "intermediate_values: skipped, a multi-objective study" in out

    # retrain: --trial is required (the message names the front), and any trial works
    status, _, err = cli("retrain", "--study-name", "mo", "--out", "model")
    assert status == 1 and len(err.strip().splitlines()) == 1
    assert "--trial N" in err and all(str(n) in err for n in front)
    assert not (tmp_path / "model").exists()
    status, _, err = cli("retrain", "--study-name", "mo", "--out", "model", "--trial", 7)
    assert status == 1 and "no trial 7" in err
    chosen = max(values)                  # any trial, on the front or not
    status, out, err = cli("retrain", "--study-name", "mo", "--out", "model", "--trial",
                           chosen, "--train-size", 400, "--quiet")
    assert status == 0, err
    assert f"retrained trial {chosen} " in out and "in the study error" in out
    result = json.loads((tmp_path / "model" / "result.json").read_text())
    assert result["trial"] == chosen and result["params"] == study.trials[chosen].params
    assert result["objectives"] == {"error": values[chosen][0], "params": values[chosen][1]}

    # studies: the front's size where a single-objective study has its best value
    status, out, _ = cli("studies")
    assert out.splitlines()[1].split()[4:] == ["front", "of", str(len(front))]


def test_error_latency_stores_a_positive_latency(cli):
    status, out, err = cli("run", "--space", "lab-mlp", "--study-name", "lat", "--objectives",
                           "error,latency", "--sampler", "ga", "--n-trials", 2, "--quiet", *TINY)
    assert status == 0, err
    assert "objectives: error, latency_ms" in out and " ms  " in out
    study = load("lat")
    assert study.metric_names == ["error", "latency_ms"]
    for t in study.trials:
        assert t.state == TrialState.COMPLETE
        assert t.values[1] == t.user_attrs["latency_ms"] > 0
        assert t.user_attrs["latency_batch"] == 200 and t.user_attrs["latency_threads"] >= 1
    status, out, _ = cli("trials", "--study-name", "lat", "--csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [float(r["latency_ms"]) for r in rows] == [t.values[1] for t in study.trials]


@pytest.mark.parametrize("options, message", [
    (["--objectives", "error,params", "--sampler", "cmaes"],
     "--sampler cmaes cannot optimise several objectives"),
    (["--objectives", "error,latency", "--pruner", "median"],
     "--pruner median: Optuna cannot prune a study with several objectives"),
    (["--objectives", "params"], "the validation error comes first"),
    (["--objectives", "error,error"], "the validation error comes first"),
    (["--objectives", "error,size"], "unknown objective 'size'"),
])
def test_refused_combinations_store_nothing(cli, tmp_path, options, message):
    for command in ("run", "create"):
        status, out, err = cli(command, "--space", "lab-mlp", "--study-name", "bad",
                               "--n-trials", 1, *options, *TINY) if command == "run" else \
            cli(command, "--space", "lab-mlp", "--study-name", "bad", *options, *TINY)
        assert status == 1 and message in err and len(err.strip().splitlines()) == 1, err
        assert not (tmp_path / "studies").exists()


def test_grid_with_two_objectives_and_create(cli):
    status, out, err = cli("create", "--space", "lab-mlp", "--study-name", "g", "--objectives",
                           "error,params", "--sampler", "grid", *TINY)
    assert status == 0, err
    assert "objectives error, params" in out
    study = load("g")
    assert len(study.directions) == 2 and study.user_attrs["tuning_settings"]["pruner"] == "none"
    status, out, err = cli("run", "--study-name", "g", "--n-trials", 1, "--objectives", "error")
    assert status == 1 and "--objectives error (the study has error,params)" in err


def test_old_single_objective_study_still_works_unchanged(cli):
    # as stored before --objectives existed: no "objectives" in the settings
    import os
    os.makedirs("studies")
    study = optuna.create_study(storage=journal("old"), study_name="old", direction="minimize")
    old = {"space": "lab-mlp", "epochs": 1, "train_size": 300, "val_size": 200, "seed": 0,
           "sampler": "random", "pruner": "none", "grid": None}
    study.set_user_attr("tuning_settings", old)
    status, out, err = cli("run", "--study-name", "old", "--n-trials", 2, "--quiet")
    assert status == 0, err
    assert "objectives" not in out and "pruning is off" not in out
    assert all(" value 0." in line for line in out.splitlines() if line.startswith("trial "))
    status, out, _ = cli("best", "--study-name", "old")
    assert "Best value (validation error):" in out and "Pareto" not in out
    status, out, _ = cli("trials", "--study-name", "old")
    assert out.splitlines()[0].split()[:3] == ["number", "state", "value"]
    status, out, err = cli("run", "--study-name", "old", "--n-trials", 1, "--objectives",
                           "error,params")
    assert status == 1 and "--objectives error,params (the study has error)" in err
    study = load("old")
    assert study.user_attrs["tuning_settings"] == old            # left as it was
    assert len(study.directions) == 1 and len(study.trials) == 2
    # a new single-objective study is stored exactly as before the setting existed
    status, _, err = cli("create", "--space", "lab-mlp", "--study-name", "new", *TINY)
    assert status == 0, err
    assert "objectives" not in load("new").user_attrs["tuning_settings"]


def test_parse_objectives_and_settings():
    assert parse_objectives("error") == ("error",)
    assert parse_objectives(" Error , params ") == ("error", "params")
    assert parse_objectives("error,params,latency") == ("error", "params", "latency")
    for bad in ("", "params,error", "error,params,params", "error;params"):
        with pytest.raises(TuningError):
            parse_objectives(bad)
    s = StudySettings.from_options({"space": "lab-mlp", "objectives": "error,latency"})
    assert s.multi_objective and s.pruner == "none" and s.metric_names == ["error", "latency_ms"]
    assert StudySettings.from_dict(s.to_dict()) == s
    assert StudySettings.from_dict({"space": "cnn"}).objective_names == ("error",)


def test_measure_latency_per_image_in_eval_mode():
    import minidl
    from tuning.models import build_model
    from tuning.objective import measure_latency
    minidl.manual_seed(0)
    model = build_model({"model": "lab-mlp", "hidden_size": 32, "dropout_rate": 0.5})
    model.train()
    x = np.random.default_rng(0).standard_normal((300, 1, 28, 28)).astype(np.float32)
    ms = measure_latency(model, x, batch=64, passes=3, warmup=1)
    assert 0 < ms < 100 and model.training                  # its mode is restored


def test_workers_run_a_multi_objective_study(cli):
    # `run --workers 1` starts a `tuning worker` process: it rebuilds the objective with
    # both objectives from the stored settings
    status, out, err = cli("run", "--workers", 1, "--space", "lab-mlp", "--study-name", "w",
                           "--objectives", "error,params", "--n-trials", 1, *TINY)
    assert status == 0, err
    assert "objectives error, params" in out and "Pareto front (error, params" in out
    assert any(line.startswith("trial ") and "params " in line for line in out.splitlines())
    (trial,) = load("w").trials
    assert trial.state == TrialState.COMPLETE and trial.values[1] == trial.user_attrs["n_params"]
