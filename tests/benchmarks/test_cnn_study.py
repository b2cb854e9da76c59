"""benchmarks.cnn_study (issue 14): its cost gate counts what minidl.summary counts."""

import argparse
from pathlib import Path

import optuna
import pytest

import minidl
from benchmarks.cnn_study import forward_madds, search, starting_point
from tuning.models import build_model
from tuning.spaces import config_from_params


def _products(config) -> int:
    """Multiply-adds of the model's convolutions and linear layers, by minidl.summary."""
    table = minidl.summary(build_model(config), (1, 1, 28, 28))
    return sum(row.mult_adds for row in table.rows if row.type in ("Conv2d", "Linear"))


@pytest.mark.parametrize("filters,kernels,convs,pool", [
    ([16], [3], 1, 2), ([16, 32, 64], [3, 5, 7], 2, 2), ([8, 128], [7, 3], 1, 3),
    ([32, 64, 64], [5, 5, 3], 2, 3),
])
def test_forward_madds_equals_the_summary(filters, kernels, convs, pool):
    config = {"model": "cnn", "filters": filters, "kernel_sizes": kernels,
              "convs_per_block": convs, "batch_norm": True, "pool_type": "max",
              "pool_kernel": pool, "dense_size": 57, "dropout_rate": 0.2}
    assert forward_madds(config) == _products(config)


STARTS = sorted((Path(__file__).resolve().parents[2] / "benchmarks" / "cnn_starts").glob("*.json"))


@pytest.mark.parametrize("path", STARTS, ids=lambda p: p.stem)
def test_committed_starting_points_are_points_of_the_space(path):
    params = starting_point(str(path))
    config = config_from_params("cnn", params)
    assert config["batch_norm"] is True and forward_madds(config) <= 8e6


@pytest.mark.parametrize("text,expected", [
    ('{"learn_rate": 5.0}', "learn_rate"),
    ('{"kernel_l0": 4}', "kernel_l0"),
    ('{"no_such": 1}', "unknown parameter"),
    ("[1, 2]", "non-empty JSON object"),
])
def test_a_bad_starting_point_is_refused_with_the_reason(text, expected):
    with pytest.raises(SystemExit, match=expected):
        starting_point(text)


def test_starting_points_are_queued_once_when_the_study_is_made(tmp_path):
    args = argparse.Namespace(epochs=1, train_size=100, val_size=100, seed=3,
                              search_minutes=0.0, max_madds=8e6)
    starts = [starting_point(str(path)) for path in STARTS]
    for _ in range(2):      # the second call opens the study: nothing queued again
        study, _, _ = search(args, tmp_path, {}, starts)
    waiting = study.get_trials(states=(optuna.trial.TrialState.WAITING,))
    assert [t.system_attrs["fixed_params"] for t in waiting] == starts
