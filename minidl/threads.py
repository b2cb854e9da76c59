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
Unless ``NUMBA_THREADING_LAYER`` is set by the user, minidl asks Numba for its OpenMP
layer first (``omp``; then ``workqueue``, then ``tbb`` where OpenMP cannot load).
Measured on the 2-core development machine (``python -m benchmarks.threading``):
launching a ``prange`` loop on 2 threads costs ~1 us on OpenMP while its worker still
spins, ~25 us once it sleeps, and 70-100 us on ``workqueue``; the 2-conv CNN's training
step took 0.68 of its ``workqueue`` time on OpenMP.

How long OpenMP's workers spin before they sleep matters here: GNU OpenMP's default
(``GOMP_SPINCOUNT`` 300,000, a few milliseconds) keeps a spinning worker on a core
while NumPy's OpenBLAS wants it, which doubled a float64 CNN step (float64 products run
in OpenBLAS; float32 ones in minidl's own kernels).  So when minidl
starts Numba's thread pool it gives GNU OpenMP ``GOMP_SPINCOUNT=10000`` (about
0.1-0.3 ms: long enough to cover the Python between two kernels of a step) unless
``GOMP_SPINCOUNT`` or ``OMP_WAIT_POLICY`` is set; the variable is set only while the
pool starts, so child processes (and a PyTorch imported later) do not inherit it.
Measured trade-off (2-conv CNN step, 2 threads, relative to ``workqueue``): float32 0.68
with this spin, 0.72 with ``OMP_WAIT_POLICY=passive``; float64 1.1 with this spin, 0.88
passive.  Training is float32, so the spin wins; set ``OMP_WAIT_POLICY=passive`` for
float64 work on two or more threads.

Threads: the OpenMP layer accepts parallel kernels launched from several Python threads
at once (the workqueue layer terminates the process when that happens).

Fork safety: GNU OpenMP cannot run parallel regions in a process forked from one that
already used them (Numba terminates such a child).  A child forked after minidl's
kernels ran in parallel therefore runs every minidl kernel on one thread (BLAS keeps
its setting); processes started with ``spawn``/``forkserver`` or ``subprocess`` are
unaffected.

Small kernels, and every kernel when one thread is asked for, run a serial
(non-``prange``) twin, so they pay no launch cost.

One thread pool at a time: once minidl's kernels run on several threads (Numba's pool
has started) on a CPU where minidl's own GEMM has a vector route (``cpu.isa()``: its
float32 products run in that pool), BLAS is given one thread.  OpenBLAS's idle threads
spin for a long while after each call and kept Numba's workers off the cores: an LSTM
classifier's training step (whose short-contraction products go to OpenBLAS) took 41 ms
on 2 threads against 13.8 ms with BLAS on one thread (2-core AMD EPYC, medians of 9
blocks); the MLP and CNN steps, whose products run in minidl's GEMM, were unchanged.
Where there is no vector route, every product is BLAS's, and BLAS keeps the full count.

Importing this module is cheap: it neither imports Numba nor compiles anything;
Numba learns the setting when the first kernel runs.
"""
from __future__ import annotations

import os
import sys

from . import _checks, cpu

ENV_VAR = "MINIDL_NUM_THREADS"
# Numba tries these in order when the user chose no layer (see module docstring).
_LAYER_PRIORITY = ("omp", "workqueue", "tbb")
# GNU OpenMP's spin before a worker sleeps, given while Numba's pool starts.
_GOMP_SPINCOUNT = "10000"
_GOMP_VARS = ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")


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
    """Make Numba prefer the OpenMP layer unless the user chose one."""
    if os.environ.get("NUMBA_THREADING_LAYER") or os.environ.get("NUMBA_THREADING_LAYER_PRIORITY"):
        return
    numba = sys.modules.get("numba")
    if numba is None:
        os.environ["NUMBA_THREADING_LAYER_PRIORITY"] = " ".join(_LAYER_PRIORITY)
    elif numba.config.THREADING_LAYER == "default":
        # numba was imported before minidl: config is read; the layer is chosen
        # at the first parallel launch, so setting it now still takes effect then.
        numba.config.THREADING_LAYER_PRIORITY = list(_LAYER_PRIORITY)


_num_threads = default_num_threads()
_select_threading_layer()


def _limit_blas(n: int) -> None:
    from threadpoolctl import threadpool_limits
    threadpool_limits(limits=n, user_api="blas")


def blas_threads(n: int) -> int:
    """BLAS's share of minidl's thread count ``n`` (see "One thread pool at a time")."""
    if n > 1 and _pool_started and not _serial_only and cpu.isa() is not None:
        return 1
    return n


def set_num_threads(n: int) -> None:
    """Use ``n`` threads for minidl's kernels and for BLAS from now on (BLAS gets one once
    Numba's pool runs, where minidl's GEMM has a vector route: see the module docstring).

    Every BLAS library loaded in the process is limited (threadpoolctl's
    ``user_api="blas"``, PyTorch's MKL included).  Numba's part is capped at
    ``numba.config.NUMBA_NUM_THREADS`` (fixed when Numba starts; by default the CPU
    count), and is one thread in a child forked after kernels ran on GNU OpenMP.
    Raises TypeError unless ``n`` is an int, ValueError unless it is >= 1.
    """
    global _num_threads
    _num_threads = _checks.positive_int("set_num_threads", "n", n)
    _limit_blas(blas_threads(n))


def get_num_threads() -> int:
    """The thread count set by ``set_num_threads`` / ``MINIDL_NUM_THREADS``."""
    return _num_threads


# Set in a child forked after the parent's kernels ran on GNU OpenMP: serial kernels only.
_serial_only = False
_pool_started = False


def ensure_numba_pool() -> None:
    """Start Numba's thread pool (once) with GNU OpenMP's spin limit (see module docstring)."""
    global _pool_started
    if _pool_started:
        return
    import numba
    ours = not any(var in os.environ for var in _GOMP_VARS)    # the user set neither
    if ours:
        os.environ["GOMP_SPINCOUNT"] = _GOMP_SPINCOUNT
    try:
        numba.get_num_threads()             # loads the threading layer (and its OpenMP)
    finally:
        if ours:
            del os.environ["GOMP_SPINCOUNT"]
    _pool_started = True
    if blas_threads(_num_threads) != _num_threads:
        _limit_blas(blas_threads(_num_threads))


def _after_fork_in_child() -> None:
    global _serial_only
    if _pool_started and not _serial_only:
        numba = sys.modules.get("numba")
        try:
            layer = numba.threading_layer()
        except Exception:   # no parallel kernel has run yet
            return
        _serial_only = layer == "omp"


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def numba_threads() -> int:
    """Threads the next Numba kernel may use, applied to Numba for the calling thread.

    Numba's own setting is per Python thread, so kernels call this on every run
    (about a microsecond) instead of trusting a value set once elsewhere.
    """
    n = _num_threads
    if n == 1 or _serial_only:  # serial kernels only: no need to start Numba's thread pool
        return 1
    import numba
    if not _pool_started:
        ensure_numba_pool()
    n = min(n, numba.config.NUMBA_NUM_THREADS)
    if n > 1 and numba.get_num_threads() != n:
        numba.set_num_threads(n)
    return n


if os.environ.get(ENV_VAR):
    _limit_blas(_num_threads)      # about 5 ms (threadpoolctl)
