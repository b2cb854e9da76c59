"""Hot kernels: matrix products, im2col/col2im, direct (stride-1) convolution, 2-D
max/average pooling and ReLU (forward and backward), the Adam update.

Each kernel comes three ways:

* ``<name>_reference`` -- plain, vectorised NumPy, written to be read (it also
  runs on CuPy arrays);
* ``<name>_numba`` -- the same computation as a Numba loop, parallel over the
  images of a batch (``cache=True``; no ``fastmath``, which would break NaN
  handling);
* ``<name>`` -- what the layers call: the Numba twin for NumPy arrays, the
  reference for other array types.

``tests/test_kernels.py`` proves each pair agrees.  The Numba twins live in
modules that import Numba; they are loaded on first use (accessing
``minidl.kernels.im2col_numba`` or calling a dispatcher), so ``import minidl``
neither imports Numba nor compiles anything.
"""
from __future__ import annotations

import importlib

from .activation import (relu_backward, relu_backward_reference, relu_forward,
                         relu_forward_reference)
from .adam import adam_update, adam_update_reference
from .conv_direct import (conv2d_direct_forward, conv2d_direct_forward_reference,
                          direct_output_hw)
from .gemm import matmul, matmul_reference
from .im2col import col2im, col2im_reference, im2col, im2col_reference
from .pooling import (avg_pool2d_backward, avg_pool2d_backward_reference, avg_pool2d_forward,
                      avg_pool2d_forward_reference, max_pool2d_backward,
                      max_pool2d_backward_reference, max_pool2d_forward,
                      max_pool2d_forward_reference, pool_geometry,
                      pool_options)
from .shapes import conv_output_size, pair, pool_output_size

_NUMBA_TWINS = {
    "im2col_numba": "._im2col_numba",
    "col2im_numba": "._im2col_numba",
    "max_pool2d_forward_numba": "._pooling_numba",
    "max_pool2d_backward_numba": "._pooling_numba",
    "avg_pool2d_forward_numba": "._pooling_numba",
    "avg_pool2d_backward_numba": "._pooling_numba",
    "adam_update_numba": "._adam_numba",
    "conv2d_direct_forward_numba": "._conv_direct_numba",
    "matmul_numba": "._gemm_numba",
    "relu_forward_numba": "._activation_numba",
    "relu_backward_numba": "._activation_numba",
}

KERNELS = ("im2col", "col2im", "max_pool2d_forward", "max_pool2d_backward",
           "avg_pool2d_forward", "avg_pool2d_backward", "conv2d_direct_forward", "relu_forward", "relu_backward",
           "adam_update", "matmul")

__all__ = [*KERNELS, *(f"{k}_reference" for k in KERNELS), *_NUMBA_TWINS,
           "conv_output_size", "direct_output_hw", "pool_output_size", "pool_geometry",
           "pool_options", "pair"]


def __getattr__(name):
    """Load a Numba twin on first access (keeps Numba out of ``import minidl``)."""
    if name in _NUMBA_TWINS:
        module = importlib.import_module(_NUMBA_TWINS[name], __name__)
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
