"""The matrix product ``a @ b`` as a registry operation (what the layers call).

Reference: NumPy's BLAS (``gemm.matmul_reference``; CuPy's for CuPy arrays).  Fast route:
minidl's register-blocked float32 micro-kernels (``_gemm_numba.py``) where
``gemm.numba_applies`` -- the vector instruction set, the operands' layout and size, and
the thread count decide (see ``gemm.py``).  ``gemm.matmul`` is the same choice written
out, kept for the kernels inside ``minidl.kernels`` that call it directly.
"""
from __future__ import annotations

import numpy as np

from . import gemm, registry


def _example():
    return (np.zeros((64, 784), np.float32), np.zeros((256, 784), np.float32).T), {}


matmul = registry.register(
    "matmul", gemm.matmul_reference,
    registry.numba("._gemm_numba", "matmul_numba", gemm.numba_applies), example=_example,
    doc="``a @ b`` (2-D), optionally into ``out``, on the route the registry picks: the Numba "
        "GEMM where ``gemm.numba_applies``, else NumPy's BLAS.")
