r"""Layer normalization forward and backward over a ``(R, K)`` array, per row.

The math (and its derivation) is in ``minidl.nn.normalization``; here it is as
kernels, with :math:`\bar{\cdot}` a row mean over the ``K`` values:

    forward:   mu, sigma^2 = mean and biased variance of each row,
               r = 1/sqrt(sigma^2 + eps),  x_hat = (x - mu) r,  y = gamma x_hat + beta
    backward:  g = gamma dout,  dx = r (g - mean(g) - x_hat mean(g x_hat)),
               dgamma = sum over rows of dout x_hat,  dbeta = sum over rows of dout

The NumPy references make about eight passes over memory each way and allocate
temporaries; the Numba twins (``_layernorm_numba.py``) make three forward and two
backward for each row, one row per unit of work: for ``(1792, 128)`` float32 (an LSTM
classifier's steps x batch, 128 units), one thread, 482 -> 205 us forward and 732 ->
458 us backward (best of 7 x 50 calls, loaded 2-core development machine; the
parameter gradients stay NumPy reductions).  ``layer_norm_forward`` /
``layer_norm_backward`` are operations of the kernel registry (``registry.py``): the
Numba twin for non-empty NumPy float arrays, the reference otherwise.
"""
from __future__ import annotations

import numpy as np

from .. import backend
from . import registry


def layer_norm_forward_reference(x, weight, bias, eps):
    r"""Normalise each row of ``x`` (shape ``(R, K)``), plain NumPy (or CuPy);
    ``weight``/``bias`` are ``(K,)`` or None.

    Returns ``(y, x_hat, invstd)``: ``y`` and :math:`\hat x` of shape ``(R, K)``,
    :math:`r = 1/\sqrt{\sigma^2+\epsilon}` of shape ``(R, 1)``.
    """
    xp = backend.xp(x)
    mean = x.mean(axis=1, keepdims=True)
    x_hat = x - mean
    var = xp.square(x_hat).mean(axis=1, keepdims=True)
    invstd = 1.0 / xp.sqrt(var + eps)
    x_hat *= invstd
    if weight is None:
        y = x_hat.copy() if bias is None else x_hat + bias
    else:
        y = x_hat * weight
        if bias is not None:
            y += bias
    return y, x_hat, invstd


def layer_norm_backward_reference(dout, x_hat, invstd, weight, need_dx=True):
    r"""Gradients of :func:`layer_norm_forward_reference`: ``(dx, dweight, dbias)``.

    With :math:`g = \gamma\, \partial L/\partial y` (per row, ``K`` values):

    .. math:: \frac{\partial L}{\partial x} = r\Big(g - \overline{g} - \hat x\, \overline{g \hat x}\Big)

    (bars are row means); :math:`\partial L/\partial\gamma = \sum_{rows} \partial L/\partial y\,
    \hat x`, :math:`\partial L/\partial\beta = \sum_{rows} \partial L/\partial y`.  ``dx``
    is None unless ``need_dx``.
    """
    xp = backend.xp(dout)
    dbias = dout.sum(axis=0)
    dweight = xp.einsum("rk,rk->k", dout, x_hat)
    if not need_dx:
        return None, dweight, dbias
    g = dout if weight is None else dout * weight
    dx = g - g.mean(axis=1, keepdims=True)
    dx -= x_hat * xp.einsum("rk,rk->r", g, x_hat)[:, None] / x_hat.shape[1]
    dx *= invstd
    return dx, dweight, dbias


# -- the operations (see registry.py) --------------------------------------------------------

def _numba_ready(*arrays) -> bool:
    return (all(type(a) is np.ndarray and a.ndim == 2 for a in arrays)
            and arrays[0].dtype in (np.float32, np.float64) and arrays[0].size > 0)


def _forward_applies(x, *args, **kwargs) -> bool:
    return _numba_ready(x)


def _backward_applies(dout, x_hat, *args, **kwargs) -> bool:
    return _numba_ready(dout, x_hat) and dout.shape == x_hat.shape


def _example_forward():
    k = 128
    return (np.zeros((64 * 28, k), np.float32), np.ones(k, np.float32),
            np.zeros(k, np.float32), 1e-5), {}


def _example_backward():
    k = 128
    return (np.zeros((64 * 28, k), np.float32), np.zeros((64 * 28, k), np.float32),
            np.ones((64 * 28, 1), np.float32), np.ones(k, np.float32)), {}


layer_norm_forward = registry.register(
    "layer_norm_forward", layer_norm_forward_reference,
    registry.numba("._layernorm_numba", "layer_norm_forward_numba", _forward_applies),
    example=_example_forward,
    doc="Layer normalization forward on the route the registry picks: "
        "``(y, x_hat, invstd)``.")

layer_norm_backward = registry.register(
    "layer_norm_backward", layer_norm_backward_reference,
    registry.numba("._layernorm_numba", "layer_norm_backward_numba", _backward_applies),
    example=_example_backward,
    doc="Layer normalization backward on the route the registry picks: "
        "``(dx, dweight, dbias)``.")
