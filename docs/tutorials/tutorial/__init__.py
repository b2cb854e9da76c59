"""What the tutorial notebooks share: stated values, checked claims, exercise checks.

A tutorial's prose may state a number or an ordering that one of its outputs shows.  Two
ways keep such a sentence true when a rerun changes the outputs:

* **filled in** -- a code cell calls ``record(name=value)``; a markdown cell writes
  ``{{name}}`` or ``{{name:.3f}}`` (a Python format spec) and ``build.py`` replaces it with
  the value recorded in the same run.  Anything that depends on timing or on the machine is
  stated this way only.
* **asserted** -- ``claim(condition, "what the text says")`` fails the cell, and so the
  build and the test run, when a rerun makes the sentence false.  A claim must hold on the
  small data of the tests as well as on the full data of the committed notebooks.

The recorded values travel in the notebook's outputs (one display output with the MIME
type :data:`FACTS_MIME` and a one-line text form), so the committed notebook carries both
the values and the text filled from them; ``tests/docs/test_tutorials.py`` checks that they agree.

The exercises at the end of each notebook call ``check_*`` functions from
``tutorial.exNN``; each returns a :class:`Result` that says what is wrong.  The reference
solutions (and deliberately wrong ones, which every check must reject) are in
``docs/tutorials/solutions/``.
"""
from __future__ import annotations

import json
import math
import numbers
import traceback

import numpy as np

__all__ = ["FACTS_MIME", "record", "claim", "ClaimError", "Result", "run_check",
           "compare_arrays", "CheckFailed"]

FACTS_MIME = "application/vnd.minidl.facts+json"


class ClaimError(AssertionError):
    """A sentence of the tutorial that this run's outputs contradict."""


def _plain(value):
    """``value`` as a JSON value (NumPy scalars become Python numbers)."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f"record: expected a finite number, got {value!r}")
        return value
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    raise TypeError(f"record: expected a number, a string or a list of them, "
                    f"got {type(value).__name__}")


def record(**values) -> None:
    """Record values that the notebook's text quotes as ``{{name}}`` (filled by build.py).

    Shows one short line, so a reader sees which values the text below is filled from.
    """
    if not values:
        raise ValueError("record: expected at least one name=value")
    plain = {name: _plain(v) for name, v in values.items()}
    text = "values quoted in the text: " + ", ".join(
        f"{name} = {format(v, '.4g') if isinstance(v, float) else v}"
        for name, v in plain.items())
    try:
        from IPython.display import display  # noqa: PLC0415 - only inside a notebook
    except ImportError:                        # plain Python: just print the line
        print(text)
        return
    display({FACTS_MIME: json.loads(json.dumps(plain)), "text/plain": text}, raw=True)


def claim(condition, text: str) -> None:
    """Assert a sentence of the text about this run's outputs; prints it when it holds."""
    if not isinstance(text, str) or not text:
        raise TypeError(f"claim: expected the sentence as a non-empty str, got {text!r}")
    if not bool(condition):
        raise ClaimError(f"the text says: {text!r}, but this run's outputs contradict it "
                         f"(edit the sentence or find out what changed)")
    print(f"checked: {text}")


# -- exercises -----------------------------------------------------------------------------
class CheckFailed(AssertionError):
    """Raised inside a check to report what is wrong (caught by :func:`run_check`)."""


class Result:
    """The outcome of one exercise check: ``passed`` and a message saying why."""

    def __init__(self, name: str, passed: bool, message: str):
        self.name, self.passed, self.message = name, bool(passed), message

    def __bool__(self) -> bool:
        return self.passed

    def __repr__(self) -> str:
        mark = "passed" if self.passed else "not yet"
        return f"{self.name}: {mark} -- {self.message}"


def run_check(name: str, body, solution) -> Result:
    """Run ``body(solution)``; a :class:`CheckFailed` or an error in ``solution`` fails it.

    ``body`` raises :class:`CheckFailed` with the reason, or returns a short success text.
    """
    if not callable(solution):
        return Result(name, False, f"expected a function, got {type(solution).__name__}")
    try:
        text = body(solution)
    except NotImplementedError:
        return Result(name, False, "not written yet: replace `raise NotImplementedError` by "
                                   "your code and run the cell again")
    except CheckFailed as exc:
        return Result(name, False, str(exc))
    except Exception as exc:  # noqa: BLE001 - any error in the learner's code is the answer
        frames = traceback.extract_tb(exc.__traceback__)
        where = f" (line {frames[-1].lineno})" if frames else ""
        return Result(name, False, f"your function raised {type(exc).__name__}: {exc}{where}")
    return Result(name, True, text or "matches the reference")


def compare_arrays(what: str, got, expected, *, rtol: float = 1e-7, atol: float = 1e-10):
    """Raise :class:`CheckFailed` naming ``what`` unless ``got`` equals ``expected``.

    The message gives the shape, or the worst entry with both values.
    """
    if got is None:
        raise CheckFailed(f"{what}: expected an array of shape {np.shape(expected)}, got None")
    got = np.asarray(got)
    expected = np.asarray(expected)
    if got.shape != expected.shape:
        hint = " (transposed?)" if got.shape == expected.shape[::-1] else ""
        raise CheckFailed(f"{what}: expected shape {expected.shape}, got {got.shape}{hint}")
    if not np.issubdtype(got.dtype, np.number) and got.dtype != np.bool_:
        raise CheckFailed(f"{what}: expected numbers, got dtype {got.dtype}")
    bad = ~np.isclose(got, expected, rtol=rtol, atol=atol, equal_nan=True)
    if bad.any():
        worst = np.unravel_index(np.argmax(np.where(bad, np.abs(got - expected), -1)), got.shape)
        raise CheckFailed(f"{what}: {int(bad.sum())} of {got.size} entries differ; at "
                          f"{tuple(int(i) for i in worst)} expected {expected[worst]:.6g}, "
                          f"got {got[worst]:.6g}")
