"""Fixtures shared by the whole tree (those of one part are in its own ``conftest.py``:
``tuning/`` starts PostgreSQL, ``minidl/kernels/`` switches the fast routes on).

Optional dependencies (torch, the real Fashion-MNIST files, PostgreSQL) skip their
tests on a user's machine when absent, with the reason shown by ``-ra``.  CI sets
MINIDL_REQUIRE_TORCH / MINIDL_REQUIRE_DATA / MINIDL_REQUIRE_POSTGRES=1, which turns
each of those skips into a failure, so nothing that matters is skipped in CI.
"""
from __future__ import annotations


import numpy as np
import pytest

from support import VECTOR_ROUTES, require_or_skip


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


def pytest_terminal_summary(terminalreporter):
    done, missing = VECTOR_ROUTES["exercised"], VECTOR_ROUTES["not exercised"]
    if not done and not missing:
        return
    terminalreporter.section("minidl vector routes")
    for route, how in done.items():
        terminalreporter.write_line(f"exercised:     {route} ({how})")
    for route, why in missing.items():
        if route not in done:
            terminalreporter.write_line(f"NOT exercised: {route} ({why})")


@pytest.fixture
def cli(tmp_path, monkeypatch, capsys):
    """Run ``tuning`` in a fresh folder; returns (exit status, stdout, stderr)."""
    from tuning.cli import main
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OPTUNA_STORAGE", raising=False)

    def run(*argv):
        status = main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return status, out, err

    return run
