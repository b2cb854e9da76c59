"""Shared fixtures.

Optional dependencies (torch, the real Fashion-MNIST files, PostgreSQL) skip their
tests on a user's machine when absent, with the reason shown by ``-ra``.  CI sets
MINIDL_REQUIRE_TORCH / MINIDL_REQUIRE_DATA / MINIDL_REQUIRE_POSTGRES=1, which turns
each of those skips into a failure, so nothing that matters is skipped in CI.
"""
from __future__ import annotations

import os

import numpy as np
import pytest


def require_or_skip(env_var: str, reason: str):
    """Skip with ``reason``, unless ``env_var`` is set: then fail, since CI needs it."""
    if os.environ.get(env_var) == "1":
        pytest.fail(f"{reason}, and {env_var}=1 requires it")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def torch():
    """The torch module, in float64-friendly, single-thread, deterministic mode."""
    try:
        import torch as _torch
    except ImportError:
        require_or_skip("MINIDL_REQUIRE_TORCH", "torch is not installed")
    _torch.set_num_threads(1)
    return _torch


@pytest.fixture(scope="session")
def fashion_mnist():
    """(train_x, train_y, test_x, test_y) of the real Fashion-MNIST, as uint8/int64."""
    from minidl.data import load_fashion_mnist, DataNotFoundError
    try:
        return load_fashion_mnist(download=False)
    except DataNotFoundError as exc:
        require_or_skip("MINIDL_REQUIRE_DATA", f"Fashion-MNIST files not found ({exc})")


@pytest.fixture
def rng():
    return np.random.default_rng(12345)
