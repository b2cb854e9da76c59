"""The matrix product ``a @ b`` as a registry operation (what the layers call).

Reference: NumPy's BLAS (``gemm.matmul_reference``; CuPy's for CuPy arrays).  Fast route:
minidl's register-blocked float32 micro-kernels (``_gemm_numba.py``) where
``gemm.numba_applies`` -- the vector instruction set, the operands' layout and size, and
the thread count decide (see ``gemm.py``).
"""
from __future__ import annotations

import numpy as np

from .. import threads
from . import gemm, registry


def _example():
    return (np.zeros((64, 784), np.float32), np.zeros((256, 784), np.float32).T), {}


matmul = registry.register(
    "matmul", gemm.matmul_reference,
    registry.numba("._gemm_numba", "matmul_numba", gemm.numba_applies), example=_example,
    doc="``a @ b`` (2-D), optionally into ``out``, on the route the registry picks: the Numba "
        "GEMM where ``gemm.numba_applies``, else NumPy's BLAS.")


def matmul_long_k(a, b):
    """``a @ b`` for a contraction longer than ``gemm.NN_MAX_K`` (a weight gradient summed
    over every step and image): with several threads, and where the registry would put
    chunks of at most ``NN_MAX_K`` on the Numba GEMM (``b`` C-contiguous), the
    contraction is cut into a multiple of the thread count of such chunks, each thread
    takes whole chunks on one core (``_gemm_numba._nn_k_parallel``) and the partial
    products are added; else one ``matmul``.  A transposed ``a`` (C-contiguous ``a.T``:
    the layers' ``dG^T h``) is one ``matmul``: the registry's K-blocked ``tn`` driver,
    parallel over rows of the result.

    Why: with minidl's thread pool running, BLAS has one thread (``minidl.threads``), so
    one long product there runs on one core.  LSTM 128, T = 28, batch 64, 2 threads,
    ``dG^T h_prev`` (512x1792 @ 1792x128; Intel Xeon with AVX-512, ``python -m
    benchmarks.rnn_parts``): 1.70 ms as one BLAS call, 1.86 ms as two chunks each split
    by columns over both threads, 1.25 ms as one chunk per thread; the ``tn`` driver:
    ``benchmarks/results/rnn/rnn_parts.md``.  On one thread the micro-kernels do not take
    float32 products that OpenBLAS wins (``gemm.NN_MAX_K``).
    """
    k = a.shape[1]
    n_threads = threads.get_num_threads()
    if k <= gemm.NN_MAX_K or n_threads < 2 or not b.flags.c_contiguous \
            or a.T.flags.c_contiguous:       # a transposed: the registry's K-blocked "tn"
        return matmul(a, b)
    n_parts = -(-k // gemm.NN_MAX_K)
    n_parts = -(-n_parts // n_threads) * n_threads          # whole rounds of the threads
    step = -(-k // n_parts)
    if matmul.pick(a[:, :step], b[:step]) is None:      # not the Numba route: one product
        return matmul(a, b)
    from ._gemm_numba import _nn_k_parallel  # noqa: PLC0415 - Numba only where it runs
    parts = np.empty((n_parts, a.shape[0], b.shape[1]), np.float32)
    _nn_k_parallel(a, b, parts)
    return parts.sum(axis=0)


def matmul_pair_reference(a, b1, b2):
    """``(a @ b1, a @ b2)``: two products (``matmul``)."""
    return matmul(a, b1), matmul(a, b2)


def _pair_example():
    a = np.zeros((1792, 512), np.float32).T
    return (a, np.zeros((1792, 128), np.float32), np.zeros((1792, 28), np.float32)), {}


matmul_pair = registry.register(
    "matmul_pair", matmul_pair_reference,
    registry.numba("._gemm_numba", "matmul_pair_numba", gemm.pair_applies),
    example=_pair_example,
    doc="``(a @ b1, a @ b2)`` for one ``a`` (an LSTM's ``dG^T`` against ``h_prev`` and "
        "``x``): where ``gemm.pair_applies``, one product ``a @ [b1 | b2]`` on the Numba "
        "``tn`` driver (``dG`` read once), else two ``matmul``s.")
