"""Helpers the tests import by name (``from support import ...``): a conftest is not a
module to import from (there is one per level of the tree).

``require_or_skip``: skip a test whose optional dependency is missing, or fail under CI's
``MINIDL_REQUIRE_*=1``.  ``note_route``: record which vector routes of minidl's GEMM this
run exercised; the root ``conftest.py`` lists them at the end of the run.
"""
from __future__ import annotations

import os

import pytest


def require_or_skip(env_var: str, reason: str):
    """Skip with ``reason``, unless ``env_var`` is set: then fail, since CI needs it."""
    if os.environ.get(env_var) == "1":
        pytest.fail(f"{reason}, and {env_var}=1 requires it")
    pytest.skip(reason)


# -- which fast routes this run exercised -------------------------------------------------
# The vector routes of minidl's GEMM micro-kernels (AVX-512, AVX2) run only on CPUs that
# have those instructions.  Tests that exercise a route note it here, and a route that no
# test could run on this CPU is noted with the reason; the summary at the end of the run
# lists both, so a run on an AVX2 machine says plainly that the AVX-512 route went untested.
VECTOR_ROUTES = {"exercised": {}, "not exercised": {}}


def note_route(route: str, how: str | None = None, why_not: str | None = None) -> None:
    """Record that ``route`` was exercised (``how``) or could not be (``why_not``)."""
    if why_not is None:
        VECTOR_ROUTES["exercised"][route] = how
    else:
        VECTOR_ROUTES["not exercised"][route] = why_not
