"""Hot kernels: matrix products, im2col/col2im, stride-1 ("direct") convolution forward and
gradients, 2-D max/average pooling, ReLU and erf, the cross-entropy loss, the Adam update,
batch and layer normalization, the recurrent cells and their time loop.

Each kernel comes three ways:

* ``<name>_reference`` -- plain, vectorised NumPy, written to be read (it also
  runs on CuPy arrays; ``matmul_reference`` is NumPy's BLAS);
* ``<name>_numba`` -- the same computation compiled by Numba (``cache=True``; no
  ``fastmath``, which would break NaN handling): plain loops, parallel over the
  images of a batch where that pays; the matrix products and the convolutions built
  on them use register-blocked micro-kernels written as LLVM vector code
  (``_gemm_numba.py``, float32 on AVX-512 and AVX2 CPUs);
* ``<name>`` -- what the layers call: an operation of the kernel registry
  (``registry.py``), which runs the Numba twin where its predicate says it applies
  (see each module) and the reference otherwise.  ``MINIDL_KERNELS=reference`` or
  ``use_reference(True)`` / ``with reference_kernels(): ...`` forces the references
  everywhere; ``python -m minidl.kernels`` (``listing()``) shows the route each
  operation takes on this machine.

The registry is the one list: this package exports every registered operation and its
reference under their own names, and each Numba twin (a route's function) on first
access (``minidl.kernels.im2col_numba``), so ``import minidl`` neither imports Numba nor
compiles anything.  ``tests/minidl/kernels/test_kernels.py`` and
``tests/minidl/kernels/test_numba_twins.py`` prove each pair agrees.
"""
from __future__ import annotations

# importing a kernel module registers its operations
from . import (activation, adam, batchnorm, conv, conv_direct, gemm, im2col,  # noqa: F401
               layernorm, loss, pooling, products, registry, rnn)
from .adam import adam_coefficients
from .conv import ConvCache
from .gemm import implicit_gemm_applies
from .products import matmul_long_k
from .registry import listing, reference_kernels, reference_only, use_reference
from .rnn import hidden_weight_grads
from .shapes import conv_output_size, direct_output_hw, pair, pool_geometry, pool_options, \
    pool_output_size

# every operation by name, and the references by their own names
KERNELS = tuple(registry.OPERATIONS)
globals().update(registry.OPERATIONS)
globals().update({op.reference.__name__: op.reference for op in registry.OPERATIONS.values()})

# the Numba twins: loaded on first access (see __getattr__)
_NUMBA_TWINS = {route.attr: route for op in registry.OPERATIONS.values()
                for route in op.routes if route.name == "numba"}

__all__ = [*KERNELS, *(registry.OPERATIONS[k].reference.__name__ for k in KERNELS),
           "adam_coefficients", "ConvCache", "implicit_gemm_applies", "matmul_long_k",
           "hidden_weight_grads", "conv_output_size", "direct_output_hw", "pair",
           "pool_geometry", "pool_options", "pool_output_size", "registry", "listing",
           "reference_kernels", "reference_only", "use_reference"]


def __getattr__(name):
    """A Numba twin, loaded on first access (keeps Numba out of ``import minidl``)."""
    route = _NUMBA_TWINS.get(name)
    if route is not None:
        return route.function()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted({*globals(), *_NUMBA_TWINS})
