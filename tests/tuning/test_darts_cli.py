"""``tuning darts``: the command, Ctrl-C, bad input, and the derived configuration through
enqueue, run and retrain (end to end, on a few hundred images)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tuning import darts

TINY = {"n_conv": 2, "filters_l0": 8, "filters_l1": 8, "dense_size": 32, "batch_size": 32}


def test_darts_command_then_retrain_and_enqueue(cli, fashion_mnist):
    """The derived configuration trains with `retrain` and seeds a study, via the CLI."""
    data = ["--train-size", "128", "--val-size", "96", "--seed", "1"]
    status, out, err = cli("darts", "--space", "cnn", "--epochs", "1", *data, "--params",
                           json.dumps(TINY), "--arch-lr", "0.05", "--out", "search")
    assert status == 0, err
    assert "epoch 1/1 train_loss" in err
    params = json.loads(Path("search/params.json").read_text())
    assert f"parameters (cnn space): {json.dumps(params)}" in out
    assert "derived configuration: kernel_l0=" in out
    assert "retrain --params search/params.json --space cnn" in out
    status, out, err = cli("retrain", "--params", "search/params.json", "--space", "cnn",
                           "--epochs", "1", "--train-size", "300", "--out", "model", "--quiet")
    assert status == 0, err
    result = json.loads(Path("model/result.json").read_text())
    assert {k: result["params"][k] for k in params} == params
    assert result["config"]["kernel_sizes"] == [params["kernel_l0"], params["kernel_l1"]]
    assert 0 < result["test_accuracy"] <= 1
    # the same file seeds a study: the next trial evaluates it
    status, out, err = cli("enqueue", "--study-name", "seeded", "--space", "cnn", *data,
                           "--params", "search/params.json")
    assert status == 0, err
    status, out, err = cli("trials", "--study-name", "seeded", "--json")
    assert status == 0, err
    trials = json.loads(out)
    trials = trials["trials"] if isinstance(trials, dict) else trials
    assert len(trials) == 1 and trials[0]["params"] == params


def test_the_commands_defaults_are_tuning_darts(cli):
    from tuning.commands import darts as command
    assert command.SPACE == darts.SPACE and command.DEFAULT_ARCH_LR == darts.DEFAULT_ARCH_LR
    assert set(darts.searched_names(darts.base_params({"n_conv": 3}))) == {
        "kernel_l0", "kernel_l1", "kernel_l2", "pool_type"}
    assert all(n.startswith(command.SEARCHED_PREFIXES)
               for n in darts.searched_names(darts.base_params({"n_conv": 3})))


def test_darts_command_saves_on_ctrl_c(cli, fashion_mnist, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(darts, "evaluate", interrupted)     # at the end of epoch 1
    status, out, err = cli("darts", "--epochs", "2", "--train-size", "64", "--val-size", "64",
                           "--params", json.dumps(TINY), "--out", "search")
    assert status == 130
    assert "interrupted: the search so far (0 full epochs, 2 steps)" in err
    stored = json.loads(Path("search/darts.json").read_text())
    assert stored["interrupted"] is True and stored["steps"] == 2
    assert json.loads(Path("search/params.json").read_text()) == stored["params"]


@pytest.mark.parametrize("argv,message", [
    (["--params", '{"kernel_l0": 3}'], "kernel_l0: searched by DARTS"),
    (["--params", '{"dropout_rate": 0.7}'], "dropout_rate 0.7 is outside"),
    (["--params", "[1]"], "expected a non-empty JSON object"),
    (["--arch-lr", "0"], "--arch-lr 0.0: expected a finite number > 0"),
])
def test_darts_command_refuses_bad_input(cli, argv, message):
    status, out, err = cli("darts", "--out", "x", *argv)
    assert status == 1 and message in err, err
    assert not Path("x").exists()
