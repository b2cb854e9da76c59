"""Using tuning as a user does: the hints it prints, its conventions, what retrain leaves."""
from __future__ import annotations

import shlex
import subprocess
import sys

import numpy as np
import pytest

from tuning import report


def test_hint_names_this_interpreter_unless_it_is_the_python_on_path(monkeypatch, tmp_path):
    monkeypatch.setattr(report.shutil, "which", lambda name: sys.executable)
    assert report.tuning_command() == "python -m tuning"
    # no environment activated: `python` is another interpreter (or none), so the hint
    # names this one -- the path that `make tune` created, e.g. .venv/bin/python
    monkeypatch.setattr(report.shutil, "which", lambda name: None)
    monkeypatch.chdir(tmp_path)
    cmd = report.tuning_command()
    assert cmd.endswith(" -m tuning") and cmd != "python -m tuning"
    out = subprocess.run(shlex.split(cmd) + ["--help"], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0 and "run" in out.stdout, out.stderr


def _journal_study(path, name, values):
    import optuna
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(path)))
    study = optuna.create_study(study_name=name, storage=storage, direction="minimize")
    for v in values:
        study.add_trial(optuna.trial.create_trial(
            params={"x": v}, distributions={"x": optuna.distributions.FloatDistribution(0, 1)},
            value=v))


def test_version_and_studies_and_optuna_storage(tmp_path, monkeypatch, capsys):
    from tuning.cli import main
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OPTUNA_STORAGE", raising=False)
    try:
        main(["--version"])
    except SystemExit as exc:
        assert exc.code == 0
    assert capsys.readouterr().out.startswith("tuning ")
    assert main(["studies"]) == 1                                   # nothing here yet
    assert "no studies here" in capsys.readouterr().err
    (tmp_path / "studies").mkdir()
    _journal_study(tmp_path / "studies" / "a.log", "a", [0.3, 0.2])
    _journal_study(tmp_path / "other.log", "b", [0.5])
    assert main(["studies"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["study", "storage", "trials", "finished", "best", "value"]
    assert out[1].split() == ["a", "studies/a.log", "2", "2", "0.2000"] and len(out) == 2
    # $OPTUNA_STORAGE names the storage when --storage is not given, as in Optuna's CLI
    monkeypatch.setenv("OPTUNA_STORAGE", str(tmp_path / "other.log"))
    assert main(["studies"]) == 0
    assert capsys.readouterr().out.splitlines()[1].split()[0::2] == ["b", "1", "0.5000"]


def test_retrain_leaves_results_people_can_use(tmp_path, monkeypatch, capsys, fashion_mnist):
    import json

    from tuning.cli import main
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OPTUNA_STORAGE", raising=False)
    tiny = ["--epochs", "1", "--train-size", "300", "--val-size", "200"]
    assert main(["run", "--space", "lab-mlp", "--study-name", "u", "--n-trials", "2",
                 "--pruner", "none", *tiny]) == 0
    assert main(["retrain", "--study-name", "u", "--out", "final", "--train-size", "400"]) == 0
    out = capsys.readouterr().out
    assert "Ankle boot" in out and "tuning.load_model('final')" in out
    folder = tmp_path / "final"
    for name in ("confusion_matrix.png", "misclassified.png"):
        assert (folder / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    assert "Linear" in (folder / "model.txt").read_text()
    result = json.loads((folder / "result.json").read_text())
    matrix = np.array(result["confusion_matrix"])
    assert matrix.shape == (10, 10) and matrix.sum() == 10_000
    assert np.trace(matrix) / matrix.sum() == result["test_accuracy"]
    assert [r["count"] for r in result["per_class"]] == list(matrix.sum(axis=1))
    assert [r["accuracy"] for r in result["per_class"]] == list(np.diag(matrix) / matrix.sum(1))
    # one call in a fresh process gives the model back, with the same test accuracy
    code = ("import tuning; from minidl.train import evaluate; from tuning.data import test_data;"
            "m = tuning.load_model('final'); print(repr(evaluate(m, test_data())['accuracy']))")
    fresh = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                           text=True, timeout=300)
    assert fresh.returncode == 0, fresh.stderr
    assert float(fresh.stdout.strip()) == result["test_accuracy"]


def test_progress_text():
    assert report.progress_text(1, 4, 10.0) == "(1 of 4, 10s elapsed, ~30s left)"
    assert report.progress_text(3, 4, 95.0) == "(3 of 4, 1m35s elapsed, ~32s left)"
    assert report.progress_text(2, None, 5.2) == "(2 done, 5s elapsed)"


def test_an_enqueued_trial_shows_its_queued_values(cli):
    import json
    status, out, err = cli("enqueue", "--space", "lab-mlp", "--study-name", "q",
                           "--params", '{"hidden_size": 128, "learn_rate": 0.001}')
    assert status == 0, err
    status, out, err = cli("trials", "--study-name", "q", "--json")
    assert status == 0, err
    (trial,) = json.loads(out)
    assert trial["state"] == "WAITING"
    assert trial["params"] == {"hidden_size": 128, "learn_rate": 0.001}


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_parallel_coordinate_plot_is_readable(tmp_path):
    """Its own title gone (the figure's names the study), one wide figure, labels on boxes."""
    import matplotlib
    matplotlib.use("Agg")
    import optuna
    from tuning import plots
    study = optuna.create_study(study_name="pc", direction="minimize")
    rng = np.random.default_rng(0)
    dists = {"a": optuna.distributions.FloatDistribution(0, 1),
             "b": optuna.distributions.IntDistribution(1, 9)}
    for _ in range(6):
        study.add_trial(optuna.trial.create_trial(
            params={"a": float(rng.random()), "b": int(rng.integers(1, 10))},
            distributions=dists, value=float(rng.random())))
    axes = optuna.visualization.matplotlib.plot_parallel_coordinate(study)
    fig = axes.figure
    plots._readable_parallel_coordinate(fig)
    assert axes.get_title() == "" and fig.get_size_inches()[0] >= 8
    labels = [t for ax in fig.axes for t in list(ax.texts) + ax.get_yticklabels()]
    assert labels and all(t.get_bbox_patch() is not None for t in labels)


def test_retrain_seeds_params_file_and_model_summaries(cli, tmp_path, fashion_mnist):
    import json

    import minidl
    from tuning.models import build_model
    tiny = ["--epochs", 1, "--train-size", 300, "--val-size", 200]
    assert cli("run", "--space", "lab-mlp", "--study-name", "m", "--n-trials", 2, "--pruner",
               "none", "--seed", 4, *tiny)[0] == 0
    # best: the best trial's model as minidl.summary's table, and in --json
    status, out, _ = cli("best", "--study-name", "m")
    best = json.loads(cli("best", "--study-name", "m", "--json")[1])
    n_params = build_model(best["config"]).num_parameters()
    assert status == 0 and n_params == best["n_params"]
    assert f"Model of trial {best['trial']} (minidl.summary" in out
    assert f"Total params: {n_params:,}" in out and "Linear" in out
    assert best["summary"]["total_params"] == n_params
    assert best["summary"]["input_shape"] == [1, 1, 28, 28]

    # retrain: the study's seed by default, --seed S another one (the same images)
    runs = {}
    for seed in (None, 4, 7):
        folder = f"r{seed}"
        extra = [] if seed is None else ["--seed", seed]
        status, out, err = cli("retrain", "--study-name", "m", "--out", folder,
                               "--train-size", 300, *extra)
        assert status == 0, err
        result = json.loads((tmp_path / folder / "result.json").read_text())
        assert result["seed"] == (4 if seed is None else seed)
        assert f"(seed {result['seed']})" in out and f"Total params: {n_params:,}" in out
        runs[seed] = (result, np.load(tmp_path / folder / "model.npz"))
    weights = {seed: runs[seed][1]["layers.1.weight"] for seed in runs}
    assert np.array_equal(weights[None], weights[4])        # the default is the study's seed
    assert not np.array_equal(weights[4], weights[7])       # another seed, other weights
    assert runs[4][0]["train_size"] == runs[7][0]["train_size"] == 300

    # retrain --params FILE --space: a configuration that is no study's trial
    (tmp_path / "params.json").write_text(json.dumps({"hidden_size": 64, "optimizer": "SGD"}))
    status, out, err = cli("retrain", "--params", "params.json", "--space", "lab-mlp",
                           "--out", "given", "--epochs", 1, "--train-size", 300, "--seed", 2)
    assert status == 0, err
    result = json.loads((tmp_path / "given" / "result.json").read_text())
    assert result["study_name"] is None and result["trial"] is None and result["seed"] == 2
    assert result["params"]["hidden_size"] == 64 and result["params"]["optimizer"] == "SGD"
    assert result["config"]["hidden_size"] == 64 and result["epochs"] == 1
    assert "learn_rate" in result["params"]                    # left out: the default
    assert "retrained the given lab-mlp configuration" in out
    metadata = minidl.load(build_model(result["config"]), tmp_path / "given" / "model.npz")
    assert metadata["test_accuracy"] == result["test_accuracy"]
    for argv, needle in [(["--space", "lab-mlp", "--study-name", "m"], "leave out --study-name"),
                         ([], "--params needs --space"),
                         (["--space", "mlp"], "unknown parameter")]:
        status, _, err = cli("retrain", "--params", "params.json", "--out", "x", *argv)
        assert status == 1 and needle in err, err
    status, _, err = cli("retrain", "--study-name", "m", "--space", "lab-mlp", "--out", "x")
    assert status == 1 and "--space is for --params" in err
