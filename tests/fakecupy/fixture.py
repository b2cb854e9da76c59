"""The ``cuda_device`` fixture: ``minidl.backend`` pointed at the stand-in for one test.

Import it into a test module (``from fakecupy.fixture import cuda_device``); it yields the
stand-in module (``cupy`` for the test's duration), with its transfer record cleared.
"""
from __future__ import annotations

import pytest

import fakecupy


@pytest.fixture
def cuda_device(monkeypatch):
    cp = fakecupy.install(monkeypatch)
    fakecupy.TRANSFERS.clear()
    yield cp
