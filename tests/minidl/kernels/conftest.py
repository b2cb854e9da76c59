"""Fixtures of the kernel tests."""
from __future__ import annotations

import pytest


@pytest.fixture
def fast_kernels():
    """Kernels on their fast routes for the test, also in a run under
    ``MINIDL_KERNELS=reference`` (for tests about the fast routes themselves)."""
    from minidl import kernels
    previous = kernels.use_reference(False)
    yield
    kernels.use_reference(previous)
