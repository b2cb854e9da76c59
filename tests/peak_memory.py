"""Peak memory of a call, for the tests that feed loaders hostile files."""
from __future__ import annotations

import tracemalloc


def traced_peak(fn):
    """``(result or exception, peak bytes traced)`` of ``fn()``; NumPy arrays are traced,
    and an exception is handed back for the test to look at."""
    tracemalloc.start()
    try:
        try:
            result = fn()
        except Exception as exc:  # noqa: BLE001 - handed back to the test
            result = exc
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
