"""Matrix products of the layers: ``matmul(a, b) = a @ b``, float32 on the fastest path.

Every layer's arithmetic is a handful of matrix products (a convolution's
``W @ cols``, ``G @ cols^T``, ``W^T @ G``; a linear layer's ``x @ W^T``,
``dY^T @ x``, ``dY @ W``).  NumPy hands them to its BLAS.  The BLAS bundled with
NumPy is OpenBLAS, and where it is told to use an older CPU's kernels (the
development machine sets ``OPENBLAS_CORETYPE=Haswell``, 256-bit AVX2, on a CPU
with 512-bit AVX-512) its float32 products run at ~105 GFLOP/s on one core.

``matmul_numba`` is a small GEMM written for this library's shapes: a register-
blocked micro-kernel emitted as LLVM vector code (16-lane float32 FMAs, see
``_gemm_numba.py``), ~180 GFLOP/s on the same core for the lab CNN's products.
It is used only where it is known to pay:

* float32 NumPy matrices (float64 -- gradient checks, parity tests -- always
  takes NumPy's BLAS);
* a CPU with AVX-512 and Numba compiling for this host (``NUMBA_CPU_NAME`` unset);
* ``b`` C-contiguous (``C = A B``: any ``a`` layout, it is packed) or ``b`` the
  transpose of a C-contiguous matrix with ``a`` C-contiguous (``C = A B^T``, dot
  products over contiguous rows; at least 6 rows in ``a`` and 4 in ``b.T``);
* at least ``MIN_FLOPS`` multiply-adds (below that, call overheads dominate).

Everything else goes to ``numpy.matmul``, the reference twin.  Results agree
with it to float32 rounding (the sums are taken in another order), not bit for bit.
Set ``minidl.kernels.gemm.enabled = False`` to use NumPy's BLAS everywhere.
"""
from __future__ import annotations

import numpy as np

from .. import backend

# Products smaller than this (M*N*K multiply-adds) stay with NumPy.
MIN_FLOPS = 1 << 16

# Tile of the a @ b.T kernel: rows of a and of b.T per tile (each needs at least that many).
NT_ROWS, NT_COLS = 6, 4

# Global switch (tests and benchmarks compare the two paths with it).
enabled = True

_host_ok = None


def host_supported() -> bool:
    """Whether this CPU and Numba's target settings allow the AVX-512 micro-kernel."""
    global _host_ok
    if _host_ok is None:
        try:
            import llvmlite.binding as ll
            import numba
            features = ll.get_host_cpu_features()
            _host_ok = bool(features.get("avx512f") and features.get("fma")
                            and numba.config.CPU_NAME in (None, "host")
                            and not numba.config.CPU_FEATURES)
        except Exception:  # any trouble asking: use NumPy
            _host_ok = False
    return _host_ok


def matmul_reference(a, b, out=None):
    """``a @ b`` by NumPy's BLAS (CuPy's for CuPy arrays)."""
    return backend.xp(a).matmul(a, b, out=out)


def _layout(a, b) -> str | None:
    """``"nn"`` (b C-contiguous), ``"nt"`` (b transposed C-contiguous, a C-contiguous, with
    at least ``NT_ROWS`` and ``NT_COLS`` rows) or None."""
    if b.flags.c_contiguous:
        return "nn"
    if b.T.flags.c_contiguous and a.flags.c_contiguous and a.shape[0] >= NT_ROWS \
            and b.shape[1] >= NT_COLS:
        return "nt"
    return None


def numba_applies(a, b, out=None) -> bool:
    """Whether ``matmul`` would take the Numba kernel for these operands."""
    return (enabled and type(a) is np.ndarray and type(b) is np.ndarray
            and a.dtype == np.float32 and b.dtype == np.float32
            and a.ndim == 2 and b.ndim == 2 and a.shape[1] == b.shape[0]
            and a.shape[0] * a.shape[1] * b.shape[1] >= MIN_FLOPS
            and (out is None or (type(out) is np.ndarray and out.dtype == np.float32
                                 and out.flags.c_contiguous
                                 and out.shape == (a.shape[0], b.shape[1])))
            and _layout(a, b) is not None and host_supported())


def matmul(a, b, out=None):
    """``a @ b`` (2-D), optionally into ``out``: the Numba GEMM where it applies, else NumPy."""
    if numba_applies(a, b, out):
        from ._gemm_numba import matmul_numba
        return matmul_numba(a, b, out)
    return matmul_reference(a, b, out)
