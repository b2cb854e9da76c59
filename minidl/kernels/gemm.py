"""Matrix products of the layers: ``matmul(a, b) = a @ b``, float32 on the fastest path.

Every layer's arithmetic is a handful of matrix products (a convolution's
``W @ cols``, ``G @ cols^T``, ``W^T @ G``; a linear layer's ``x @ W^T``,
``dY^T @ x``, ``dY @ W``).  NumPy hands them to its BLAS (OpenBLAS).

``matmul_numba`` is a small GEMM written for this library's shapes: a register-
blocked micro-kernel emitted as LLVM vector code (see ``_gemm_numba.py``), in two
sizes, one per vector instruction set (``isa()``, chosen once from the CPU Numba
compiles for):

* ``"avx512"``: 16-lane float32 vectors, 32 vector registers (8 x 32 and 6 x 4 tiles);
* ``"avx2"``: 8-lane vectors with FMA, 16 registers (6 x 16 and 4 x 3 tiles), the
  vector unit of most laptops and of many servers;
* ``None``: neither (another architecture, or Numba told to compile for a generic
  CPU): NumPy's BLAS everywhere.

To measure the AVX2 route on an AVX-512 machine, tell Numba to compile for an AVX2
CPU before minidl is imported: ``NUMBA_CPU_NAME=haswell`` (``python -m
benchmarks.training --isa avx2`` does so, and caps PyTorch and OpenBLAS alike).  The
tile sizes follow from Numba's target, so Numba's on-disk cache (keyed by the target
CPU) never mixes the two.

The Numba GEMM is used only where it is known to pay:

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

Everything else goes to ``numpy.matmul``, the reference twin.  Results agree
with it to float32 rounding (the sums are taken in another order), not bit for bit,
and the two routes differ from each other the same way.
Set ``minidl.kernels.gemm.enabled = False`` to use NumPy's BLAS everywhere.
"""
from __future__ import annotations

import numpy as np

from .. import backend, threads

# Products smaller than this (M*N*K multiply-adds) stay with NumPy.
MIN_FLOPS = 1 << 16

# LLVM CPU names by widest float32 FMA vector, for a Numba target given by name
# (``NUMBA_CPU_NAME``); an unknown name gets no vector route (NumPy: always correct).
_AVX512_CPUS = {"skylake-avx512", "cascadelake", "cooperlake", "cannonlake", "icelake-client",
                "icelake-server", "tigerlake", "rocketlake", "sapphirerapids", "emeraldrapids",
                "graniterapids", "graniterapids-d", "znver4", "znver5", "x86-64-v4"}
_AVX2_CPUS = {"haswell", "broadwell", "skylake", "alderlake", "raptorlake", "meteorlake",
              "arrowlake", "lunarlake", "gracemont", "znver1", "znver2", "znver3", "bdver4",
              "x86-64-v3"}


def _features_isa(has) -> str | None:
    if has("avx512f") and has("fma"):
        return "avx512"
    if has("avx2") and has("fma"):
        return "avx2"
    return None


def _vector_isa() -> str | None:
    """``"avx512"``, ``"avx2"`` or None: the widest FMA vectors of the CPU that Numba
    compiles for (the host, unless ``NUMBA_CPU_NAME`` / ``NUMBA_CPU_FEATURES`` say
    otherwise), provided this host can run them."""
    try:
        import llvmlite.binding as ll
        import numba
        host = ll.get_host_cpu_features()
        host_isa = _features_isa(lambda f: bool(host.get(f)))
        name, features = numba.config.CPU_NAME, numba.config.CPU_FEATURES
    except Exception:  # any trouble asking: use NumPy
        return None
    if features:                           # "+avx2,+fma,-avx512f,...": exactly these
        flags = {f[1:]: f[0] == "+" for f in features.split(",") if f[:1] in "+-"}
        target = _features_isa(lambda f: flags.get(f, False))
    elif name in (None, "host"):
        target = host_isa
    else:
        target = "avx512" if name in _AVX512_CPUS else "avx2" if name in _AVX2_CPUS else None
    order = [None, "avx2", "avx512"]
    return target if order.index(target) <= order.index(host_isa) else None


_isa_cache: list = []


def isa() -> str | None:
    """The vector route of the Numba micro-kernels here: ``"avx512"``, ``"avx2"`` or None
    (asked once; importing this module imports neither Numba nor llvmlite)."""
    if not _isa_cache:
        _isa_cache.append(_vector_isa())
    return _isa_cache[0]


# Tile geometry of the micro-kernels for each route (``_gemm_numba.py``): float32 lanes per
# vector; rows of a ``C = A B`` tile (each two vectors wide); rows of ``A`` and of ``B^T``
# per ``C = A B^T`` tile.  Accumulators + operands must fit the register file (32 vectors
# with AVX-512, 16 with AVX2): 8x2 + 2 + 1 and 6x4 + 6 + 4 (of 32); 6x2 + 2 + 1 and
# 4x3 + 3 + 1 (of 16, A's rows loaded one at a time).  The AVX2 a @ b.T tile was the
# fastest of 3x4, 2x4, 4x3, 4x2, 2x6, 2x5 for the lab MLP's 64x784 @ 784x256 (288 us
# against 323-370 us; one core of an AMD EPYC (Zen 4) with Numba told to compile for Haswell,
# medians of 7 blocks).
# Changing a size here: delete Numba's cache (``find minidl -name '*.nb[ic]' -delete``).  A
# cached kernel is keyed by its own file and the target CPU, not by values it imported, and
# one compiled with other tile sizes reads out of bounds.
_TILES = {"avx512": (16, 8, 6, 4), "avx2": (8, 6, 4, 3)}


def tile_geometry() -> tuple[int, int, int, int]:
    """``(LANES, NN_ROWS, NT_ROWS, NT_COLS)`` of this machine's route (the AVX-512 sizes
    where there is none: the kernels then run only when called directly)."""
    return _TILES.get(isa(), _TILES["avx512"])


# Global switch (tests and benchmarks compare the two paths with it).
enabled = True


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
NT_MIN_K = 128
NN_MAX_K = 1024


def _layout(a, b) -> str | None:
    """``"nn"`` (b C-contiguous, K at most ``NN_MAX_K``), ``"nt"`` (b transposed
    C-contiguous, a C-contiguous, at least a tile's rows in each, K at least ``NT_MIN_K``
    and a whole number of vectors) or None."""
    k = a.shape[1]
    if b.flags.c_contiguous:
        return "nn" if k <= NN_MAX_K else None
    lanes, _, nt_rows, nt_cols = tile_geometry()
    if b.T.flags.c_contiguous and a.flags.c_contiguous and a.shape[0] >= nt_rows \
            and b.shape[1] >= nt_cols and k >= NT_MIN_K and k % lanes == 0:
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
            and _layout(a, b) is not None and host_supported()
            and (isa() != "avx2" or threads.get_num_threads() > 1))


def matmul(a, b, out=None):
    """``a @ b`` (2-D), optionally into ``out``: the Numba GEMM where it applies, else NumPy."""
    if numba_applies(a, b, out):
        from ._gemm_numba import matmul_numba
        return matmul_numba(a, b, out)
    return matmul_reference(a, b, out)
