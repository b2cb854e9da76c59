"""benchmarks.cnn_study (issue 14): its cost gate counts what minidl.summary counts."""

import pytest

import minidl
from benchmarks.cnn_study import forward_madds
from tuning.models import build_model


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
