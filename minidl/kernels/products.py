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
    over every step and image): when the registry would put chunks of at most
    ``NN_MAX_K`` on the Numba GEMM, the sum of ``a[:, c] @ b[c]`` over those chunks;
    else one ``matmul``.

    Why: with minidl's thread pool running, BLAS has one thread (``minidl.threads``), so
    one long product there runs on one core. LSTM 128, T=28, batch 64, 2 threads,
    ``128x1792 @ 1792x512``: 2.6 ms as one BLAS call, 1.6 ms as two chunks on the
    micro-kernel (AMD EPYC Zen 4, AVX-512, median of 7 blocks of 20). On one thread the
    micro-kernels do not take float32 products that OpenBLAS wins (``gemm.NN_MAX_K``).
    """
    k = a.shape[1]
    step = -(-k // -(-k // gemm.NN_MAX_K))          # equal chunks of at most NN_MAX_K
    if k <= gemm.NN_MAX_K or threads.get_num_threads() < 2 \
            or matmul.pick(a[:, :step], b[:step]) is None:
        return matmul(a, b)
    out = matmul(a[:, :step], b[:step])
    for start in range(step, k, step):
        out += matmul(a[:, start:start + step], b[start:start + step])
    return out
