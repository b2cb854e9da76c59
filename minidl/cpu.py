"""The vector instructions minidl's micro-kernels compile for, and the tiles that fit them.

minidl's float32 GEMM and implicit-GEMM convolutions (``minidl/kernels/_gemm_numba.py``)
are register-blocked micro-kernels in two sizes, one per vector instruction set
(``isa()``, asked once from the CPU Numba compiles for):

* ``"avx512"``: 16-lane float32 vectors, 32 vector registers (8 x 32 and 6 x 4 tiles);
* ``"avx2"``: 8-lane vectors with FMA, 16 registers (6 x 16 and 4 x 3 tiles), the
  vector unit of most laptops and of many servers;
* ``None``: neither (another architecture, or Numba told to compile for a generic
  CPU): NumPy's BLAS everywhere.

To measure the AVX2 route on an AVX-512 machine, tell Numba to compile for an AVX2
CPU before minidl is imported: ``NUMBA_CPU_NAME=haswell`` (``python -m
benchmarks.training --isa avx2`` does so).  The tile sizes follow from Numba's target,
so Numba's on-disk cache (keyed by the target CPU) never mixes the two.

Importing this module imports neither Numba nor llvmlite (``isa()`` does, once), and
nothing of minidl: the thread settings (``minidl.threads``), the route predicates
(``minidl.kernels.gemm``) and the Numba kernels all read it.
"""
from __future__ import annotations

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
    (asked once)."""
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
