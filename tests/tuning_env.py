"""The environment for a ``python -m tuning`` child process in the tests."""
from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def tuning_env(**extra) -> dict:
    """This environment with this checkout first on ``PYTHONPATH``, one thread for OpenMP,
    Numba and minidl, no ``OPTUNA_STORAGE`` (a study's storage is given on the command
    line), then ``extra``."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(REPO)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    env.update(OMP_NUM_THREADS="1", NUMBA_NUM_THREADS="1", MINIDL_NUM_THREADS="1")
    env.pop("OPTUNA_STORAGE", None)
    env.update(extra)
    return env
