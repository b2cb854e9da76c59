"""Hot kernels: matrix products, im2col/col2im, stride-1 ("direct") convolution forward and
gradients, 2-D max/average pooling and ReLU (forward and backward), the cross-entropy
loss, the Adam update, batch normalization (forward and backward).

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

``tests/test_kernels.py`` and ``tests/test_fast_paths.py`` prove each pair agrees.
The Numba twins live in modules that import Numba; they are loaded on first use
(accessing ``minidl.kernels.im2col_numba`` or calling a dispatcher), so
``import minidl`` neither imports Numba nor compiles anything.
"""
from __future__ import annotations

import importlib

from .activation import (relu_backward, relu_backward_reference, relu_forward,
                         relu_forward_reference)
from .adam import adam_coefficients, adam_update, adam_update_reference
from .batchnorm import (batch_norm_backward, batch_norm_backward_reference, batch_norm_forward,
                        batch_norm_forward_reference)
from .conv_direct import (conv2d_direct_backward, conv2d_direct_backward_reference,
                          conv2d_direct_forward, conv2d_direct_forward_reference,
                          conv2d_direct_input_grad, conv2d_direct_input_grad_reference,
                          conv2d_direct_weight_grad, conv2d_direct_weight_grad_reference,
                          direct_output_hw, implicit_gemm_applies)
from . import gemm, registry
from .gemm import matmul_reference
from .products import matmul, matmul_long_k
from .conv import ConvCache, conv2d_backward, conv2d_forward
from .im2col import col2im, col2im_reference, im2col, im2col_reference
from .loss import cross_entropy, cross_entropy_reference
from .pooling import (avg_pool2d_backward, avg_pool2d_backward_reference, avg_pool2d_forward,
                      avg_pool2d_forward_reference, max_pool2d_backward,
                      max_pool2d_backward_reference, max_pool2d_forward,
                      max_pool2d_forward_reference, pool_geometry,
                      pool_options)
from .registry import listing, reference_kernels, reference_only, use_reference
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
    "conv2d_direct_weight_grad_numba": "._conv_direct_numba",
    "conv2d_direct_input_grad_numba": "._conv_direct_numba",
    "conv2d_direct_backward_numba": "._conv_direct_numba",
    "matmul_numba": "._gemm_numba",
    "cross_entropy_numba": "._loss_numba",
    "relu_forward_numba": "._activation_numba",
    "relu_backward_numba": "._activation_numba",
    "batch_norm_forward_numba": "._batchnorm_numba",
    "batch_norm_backward_numba": "._batchnorm_numba",
}

KERNELS = ("im2col", "col2im", "max_pool2d_forward", "max_pool2d_backward",
           "avg_pool2d_forward", "avg_pool2d_backward", "conv2d_direct_forward",
           "conv2d_direct_weight_grad", "conv2d_direct_input_grad", "relu_forward",
           "relu_backward", "adam_update", "matmul", "cross_entropy", "batch_norm_forward",
           "batch_norm_backward")

__all__ = [*KERNELS, *(f"{k}_reference" for k in KERNELS), *_NUMBA_TWINS,
           "adam_coefficients", "matmul_long_k", "conv2d_direct_backward", "conv_output_size", "direct_output_hw",
           "implicit_gemm_applies", "pool_output_size", "pool_geometry", "pool_options", "pair",
           "conv2d_direct_backward_reference", "registry", "listing", "use_reference",
           "reference_kernels", "reference_only", "conv2d_forward", "conv2d_backward", "ConvCache"]


def __getattr__(name):
    """Load a Numba twin on first access (keeps Numba out of ``import minidl``)."""
    if name in _NUMBA_TWINS:
        module = importlib.import_module(_NUMBA_TWINS[name], __name__)
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# The recurrent cells (issue 13): references, dispatchers and Numba twins; the time loop
# itself (``recurrent_forward`` / ``recurrent_backward``) is in ``rnn.py``.
from .rnn import (gru_cell_backward, gru_cell_backward_reference, gru_cell_forward,
                  gru_cell_forward_reference, hidden_weight_grads, lstm_cell_backward,
                  lstm_cell_backward_reference, lstm_cell_forward, lstm_cell_forward_reference,
                  recurrent_backward, recurrent_forward, rnn_cell_backward,
                  rnn_cell_backward_reference, rnn_cell_forward, rnn_cell_forward_reference)

_RNN_KERNELS = ("rnn_cell_forward", "rnn_cell_backward", "lstm_cell_forward",
                "lstm_cell_backward", "gru_cell_forward", "gru_cell_backward")
_NUMBA_TWINS.update({f"{k}_numba": "._rnn_numba" for k in _RNN_KERNELS})
KERNELS += _RNN_KERNELS
__all__ += [*_RNN_KERNELS, *(f"{k}_reference" for k in _RNN_KERNELS),
            *(f"{k}_numba" for k in _RNN_KERNELS), "recurrent_forward", "recurrent_backward",
            "hidden_weight_grads"]
