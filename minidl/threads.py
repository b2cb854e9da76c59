"""One thread setting for everything minidl runs: BLAS (matrix products) and Numba kernels.

``set_num_threads(n)`` limits the BLAS libraries loaded in the process (through
threadpoolctl) and the Numba kernels together; ``get_num_threads()`` reads it back.
The environment variable ``MINIDL_NUM_THREADS`` sets it when minidl is imported.

Default: ``MINIDL_NUM_THREADS`` if set (then BLAS is limited to it at import),
otherwise what OpenBLAS itself starts with -- ``OPENBLAS_NUM_THREADS``, else
``OMP_NUM_THREADS``, else the number of CPUs this process may run on -- so that
importing minidl changes no thread pool it did not have to (PyTorch's MKL, if
loaded, is left alone).  Those variables are the usual way to keep several worker
processes from oversubscribing a machine; a tuning run with several workers on
one machine should give each ``MINIDL_NUM_THREADS = cores // workers``.  BLAS and
Numba never run at the same time (a layer calls one, then the other), so one
count serves both without oversubscription.

Numba's threading layer
-----------------------
Unless ``NUMBA_THREADING_LAYER`` is set by the user, minidl selects Numba's
``workqueue`` layer.  Measured on the 2-core development machine (a 64k-element
``prange`` kernel called right after a 512x512 float32 GEMM): the OpenMP layer with
its default wait policy cost 3-7 ms per kernel call, because its spinning threads
and OpenBLAS's spinning threads fight over the cores; ``workqueue`` cost ~70 us and
never slows the GEMM.  OpenMP with ``OMP_WAIT_POLICY=passive`` was ~35 us, but the
policy cannot be guaranteed: PyTorch loads its own ``libgomp.so.1`` (with the same
soname) before minidl when imported first.  Small kernels, and every kernel when one
thread is asked for, run a serial (non-``prange``) twin, so they pay no launch cost.

Importing this module is cheap: it neither imports Numba nor compiles anything;
Numba learns the setting when the first kernel runs.
"""
from __future__ import annotations

import os
import sys

ENV_VAR = "MINIDL_NUM_THREADS"
_DEFAULT_THREADING_LAYER = "workqueue"


def _available_cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def _parse_count(name: str, text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise ValueError(f"minidl threads: {name} must be a positive integer, got {text!r}") from None
    if n < 1:
        raise ValueError(f"minidl threads: {name} must be a positive integer, got {text!r}")
    return n


def default_num_threads() -> int:
    """The thread count minidl starts with (see module docstring for the rule)."""
    text = os.environ.get(ENV_VAR)
    if text:
        return _parse_count(ENV_VAR, text)
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):   # OpenBLAS's own precedence
        text = os.environ.get(var, "").split(",")[0].strip()
        if text.isdigit() and int(text) >= 1:
            return int(text)
    return _available_cpus()


def _select_threading_layer() -> None:
    """Make Numba use the workqueue layer unless the user chose one."""
    if os.environ.get("NUMBA_THREADING_LAYER"):
        return
    numba = sys.modules.get("numba")
    if numba is None:
        os.environ["NUMBA_THREADING_LAYER"] = _DEFAULT_THREADING_LAYER
    elif numba.config.THREADING_LAYER == "default":
        # numba was imported before minidl: config is read; the layer is chosen
        # at the first parallel launch, so setting it now still takes effect then.
        numba.config.THREADING_LAYER = _DEFAULT_THREADING_LAYER


_num_threads = default_num_threads()
_select_threading_layer()


def _limit_blas(n: int) -> None:
    from threadpoolctl import threadpool_limits
    threadpool_limits(limits=n, user_api="blas")


def set_num_threads(n: int) -> None:
    """Use ``n`` threads for BLAS and for Numba kernels from now on.

    Every BLAS library loaded in the process is limited (threadpoolctl's
    ``user_api="blas"``, PyTorch's MKL included).  Numba's part is capped at ``numba.config.NUMBA_NUM_THREADS`` (fixed when Numba
    starts; by default the CPU count).  Raises ValueError unless ``n`` is an int >= 1.
    """
    global _num_threads
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"set_num_threads: expected a positive int, got {n!r}")
    _num_threads = n
    _limit_blas(n)


def get_num_threads() -> int:
    """The thread count set by ``set_num_threads`` / ``MINIDL_NUM_THREADS``."""
    return _num_threads


def numba_threads() -> int:
    """Threads the next Numba kernel may use, applied to Numba for the calling thread.

    Numba's own setting is per Python thread, so kernels call this on every run
    (about a microsecond) instead of trusting a value set once elsewhere.
    """
    n = _num_threads
    if n == 1:  # serial kernels only: no need to start Numba's thread pool
        return 1
    import numba
    n = min(n, numba.config.NUMBA_NUM_THREADS)
    if n > 1 and numba.get_num_threads() != n:
        numba.set_num_threads(n)
    return n


if os.environ.get(ENV_VAR):
    _limit_blas(_num_threads)      # about 5 ms (threadpoolctl)
