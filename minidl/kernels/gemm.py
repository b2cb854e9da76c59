"""Where minidl's float32 GEMM micro-kernels run: the matrix product's reference and rules.

Every layer's arithmetic is a handful of matrix products (a convolution's
``W @ cols``, ``G @ cols^T``, ``W^T @ G``; a linear layer's ``x @ W^T``,
``dY^T @ x``, ``dY @ W``).  NumPy hands them to its BLAS (OpenBLAS): that is
``matmul_reference``.

``matmul_numba`` is a small GEMM written for this library's shapes: a register-
blocked micro-kernel emitted as LLVM vector code (see ``_gemm_numba.py``), in one size
per vector instruction set (``minidl.cpu``: ``isa()`` and ``tile_geometry()``).  The
registry operation ``matmul`` (``products.py``) takes it where ``numba_applies``:

* float32 NumPy matrices (float64 -- gradient checks, parity tests -- always
  takes NumPy's BLAS);
* a vector route (``isa()`` not None), and for the AVX2 route more than one thread: on
  one core OpenBLAS's own Haswell kernels were as fast or faster (lab MLP products, one
  core of an AMD EPYC (Zen 4) compiling for Haswell, medians of 7 blocks: 64x784 @
  784x256^T 0.27 vs 0.30 ms, 1000x784 @ 784x256^T 4.0 vs 5.1 ms, the others within 5%),
  while on two threads OpenBLAS's thread pool and Numba's compete for the cores (lab MLP
  training step 1.18 ms with OpenBLAS's products, 0.64 ms with these);
* ``b`` C-contiguous (``C = A B``: any ``a`` layout, it is packed) or ``b`` the
  transpose of a C-contiguous matrix with ``a`` C-contiguous (``C = A B^T``, dot
  products over contiguous rows; at least as many rows in ``a`` and ``b.T`` as a
  tile has, ``tile_geometry()``), with a contraction length where the kernels were
  measured to pay (``NT_MIN_K``, ``NN_MAX_K``);
* at least ``MIN_FLOPS`` multiply-adds (below that, call overheads dominate).

Everything else goes to ``numpy.matmul``.  Results agree with it to float32 rounding
(the sums are taken in another order), not bit for bit, and the two routes differ from
each other the same way.  The stride-1 convolutions run the same micro-kernels on
windows of the image (an *implicit GEMM*) where ``implicit_gemm_applies``.

``MINIDL_KERNELS=reference`` (or ``minidl.kernels.use_reference()``) sends every product
and convolution to NumPy, as every other operation (see ``registry.py``).
"""
from __future__ import annotations

import numpy as np

from .. import backend, threads
from ..cpu import isa, tile_geometry

# Products smaller than this (M*N*K multiply-adds) stay with NumPy.
MIN_FLOPS = 1 << 16


def host_supported() -> bool:
    """Whether a vector route of the Numba micro-kernels exists here (``isa()`` not None)."""
    return isa() is not None


def matmul_reference(a, b, out=None):
    """``a @ b`` by NumPy's BLAS (CuPy's for CuPy arrays)."""
    return backend.xp(a).matmul(a, b, out=out)


# Contraction lengths where the micro-kernels lost to OpenBLAS (one core of an AMD EPYC
# (Zen 4), AVX-512 and AVX2 routes, medians of 7 blocks): ``a @ b.T`` with K below 128 or
# not a whole number of vectors (the rest runs a scalar loop: 1792x28 @ 28x512 took 17 ms
# against 1.5 ms; 64x64 @ 64x256 0.037 vs 0.030 ms; at K = 128 0.056 vs 0.066 ms), and
# ``a @ b`` with K above 1024 (no blocking along K: 512x1792 @ 1792x128 3.6 vs 2.4 ms).
# Above 1024 a transposed ``a`` (``dG^T h``) takes the K-blocked ``_tn`` driver instead
# (Intel Xeon with AVX-512, 512x1792 @ 1792x128, medians of 7 blocks of 20: one thread
# 1.91 ms against OpenBLAS's 1.90-1.94, two threads 1.22-1.24 ms against 1.57-2.48 for the
# K chunks of ``matmul_long_k``; 512x1792 @ 1792x28: 0.70 against 0.75 on one thread).
NT_MIN_K = 128
NN_MAX_K = 1024


def _layout(a, b) -> str | None:
    """``"nn"`` (b C-contiguous, K at most ``NN_MAX_K``), ``"tn"`` (b C-contiguous, a
    transposed C-contiguous, K above ``NN_MAX_K``: the K-blocked driver ``_tn``, a weight
    gradient over every step and image), ``"nt"`` (b transposed C-contiguous, a
    C-contiguous, at least a tile's rows in each, K at least ``NT_MIN_K`` and a whole
    number of vectors) or None."""
    k = a.shape[1]
    if b.flags.c_contiguous:
        if k <= NN_MAX_K:
            return "nn"
        return "tn" if a.T.flags.c_contiguous else None
    lanes, _, nt_rows, nt_cols = tile_geometry()
    if b.T.flags.c_contiguous and a.flags.c_contiguous and a.shape[0] >= nt_rows \
            and b.shape[1] >= nt_cols and k >= NT_MIN_K and k % lanes == 0:
        return "nt"
    return None


def numba_applies(a, b, out=None) -> bool:
    """Whether the Numba kernel applies to these operands (``matmul``'s route predicate)."""
    return (type(a) is np.ndarray and type(b) is np.ndarray
            and a.dtype == np.float32 and b.dtype == np.float32
            and a.ndim == 2 and b.ndim == 2 and a.shape[1] == b.shape[0]
            and a.shape[0] * a.shape[1] * b.shape[1] >= MIN_FLOPS
            and (out is None or (type(out) is np.ndarray and out.dtype == np.float32
                                 and out.flags.c_contiguous
                                 and out.shape == (a.shape[0], b.shape[1])))
            and _layout(a, b) is not None and host_supported()
            and (isa() != "avx2" or threads.get_num_threads() > 1))


def pair_applies(a, b1, b2) -> bool:
    """Whether ``products.matmul_pair`` takes the Numba ``tn`` driver: float32 NumPy
    matrices, one contraction, the ``"tn"`` layout for both, at least ``MIN_FLOPS``, a
    vector route -- on one thread too where the route is AVX2 (``matmul``'s rule): the
    two products in one pass beat OpenBLAS's two there (LSTM 128's ``dG^T [h_prev | x]``,
    Intel Xeon compiling for Haswell, one thread, medians of 7 blocks of 20, three
    rounds: 3.50-3.52 ms against 3.76-3.86)."""
    return (all(type(v) is np.ndarray and v.dtype == np.float32 and v.ndim == 2
                for v in (a, b1, b2))
            and a.shape[1] == b1.shape[0] == b2.shape[0]
            and a.shape[0] * a.shape[1] * (b1.shape[1] + b2.shape[1]) >= MIN_FLOPS
            and _layout(a, b1) == "tn" and _layout(a, b2) == "tn" and host_supported())


def implicit_gemm_applies(a, weight_shape, weight_dtype=np.float32) -> bool:
    """Whether the stride-1 convolution twins take the implicit-GEMM kernels
    (``_conv_direct_numba.py``) for data ``a`` (the input or dout) and a weight of
    ``weight_shape``: float32 NumPy arrays, a vector route of the micro-kernels
    (``host_supported``), at least as many output channels and kernel taps as the
    weight-gradient tile has rows and columns (``tile_geometry``)."""
    o, c, kh, kw = weight_shape
    _, _, nt_rows, nt_cols = tile_geometry()
    return (type(a) is np.ndarray and a.dtype == np.float32
            and np.dtype(weight_dtype) == np.float32
            and o >= nt_rows and c * kh * kw >= nt_cols and host_supported())
