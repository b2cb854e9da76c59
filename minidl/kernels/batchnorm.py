r"""Batch normalization forward and backward over a ``(N, C, M)`` array, per channel.

The math (and its derivation) is in ``minidl.nn.normalization``; here it is as
kernels:

    forward:   mu, sigma^2 = mean and biased variance over axes 0 and 2 (or given),
               r = 1/sqrt(sigma^2 + eps),  x_hat = (x - mu) r,  y = gamma x_hat + beta
    backward:  dbeta = sum dout,  dgamma = sum dout x_hat,
               dx = gamma r / n (n dout - dbeta - x_hat dgamma)   (batch statistics)
               dx = gamma r dout                                  (given statistics)

The NumPy references make about eight passes over memory each way and allocate
temporaries; the Numba twins (``_batchnorm_numba.py``) make three forward and two
backward, one channel per unit of work.  ``batch_norm_forward`` /
``batch_norm_backward`` are operations of the kernel registry (``registry.py``): the
Numba twin for non-empty NumPy float arrays, the reference otherwise.
"""
from __future__ import annotations

import numpy as np

from .. import backend
from . import registry


def batch_norm_forward_reference(x, weight, bias, eps, mean=None, var=None):
    r"""Normalise each channel of ``x`` (shape ``(N, C, M)``), plain NumPy (or CuPy).

    With ``mean``/``var`` None the batch statistics are used (training): the mean and
    the biased variance over axes 0 and 2.  Otherwise the given ``(C,)`` arrays are
    (eval mode, running statistics).  ``weight``/``bias`` are ``(C,)`` or None.

    Returns ``(y, x_hat, invstd, mean, var)``: ``y`` and :math:`\hat x` of shape
    ``(N, C, M)``, :math:`r = 1/\sqrt{\sigma^2+\epsilon}` and the statistics used, each
    ``(C,)``.
    """
    xp = backend.xp(x)
    if mean is None:
        mean = x.mean(axis=(0, 2))
        x_hat = x - mean[:, None]
        var = xp.square(x_hat).mean(axis=(0, 2))
    else:
        x_hat = x - mean[:, None]
    invstd = 1.0 / xp.sqrt(var + eps)
    x_hat *= invstd[:, None]
    if weight is None:
        y = x_hat.copy() if bias is None else x_hat + bias[:, None]
    else:
        y = x_hat * weight[:, None]
        if bias is not None:
            y += bias[:, None]
    return y, x_hat, invstd, mean, var


def batch_norm_backward_reference(dout, x_hat, invstd, weight, batch_stats, need_dx=True):
    r"""Gradients of :func:`batch_norm_forward_reference`: ``(dx, dweight, dbias)``.

    :math:`\partial L/\partial\gamma = \sum \partial L/\partial y\, \hat x` and
    :math:`\partial L/\partial\beta = \sum \partial L/\partial y` over axes 0 and 2;
    with ``batch_stats`` (the statistics came from this batch)

    .. math:: \frac{\partial L}{\partial x} = \frac{\gamma r}{n}\Big(n \frac{\partial L}{\partial y}
              - \frac{\partial L}{\partial \beta} - \hat x \frac{\partial L}{\partial \gamma}\Big)

    else :math:`\gamma r\, \partial L/\partial y`.  ``dx`` is None unless ``need_dx``.
    """
    xp = backend.xp(dout)
    dbias = dout.sum(axis=(0, 2))
    dweight = xp.einsum("ncm,ncm->c", dout, x_hat)
    if not need_dx:
        return None, dweight, dbias
    scale = invstd if weight is None else weight * invstd
    if not batch_stats:
        return dout * scale[:, None], dweight, dbias
    n = dout.shape[0] * dout.shape[2]
    dx = dout * n
    dx -= dbias[:, None]
    dx -= x_hat * dweight[:, None]
    dx *= (scale / n)[:, None]
    return dx, dweight, dbias


# -- the operations (see registry.py) --------------------------------------------------------

def _numba_ready(*arrays) -> bool:
    return (all(type(a) is np.ndarray for a in arrays)
            and arrays[0].dtype in (np.float32, np.float64) and arrays[0].size > 0)


def _forward_applies(x, *args, **kwargs) -> bool:
    return _numba_ready(x)


def _backward_applies(dout, x_hat, *args, **kwargs) -> bool:
    return _numba_ready(dout, x_hat) and dout.shape == x_hat.shape


def _example_forward():
    c = 32
    return (np.zeros((64, c, 28 * 28), np.float32), np.ones(c, np.float32),
            np.zeros(c, np.float32), 1e-5), {}


def _example_backward():
    c = 32
    return (np.zeros((64, c, 28 * 28), np.float32), np.zeros((64, c, 28 * 28), np.float32),
            np.ones(c, np.float32), np.ones(c, np.float32), True), {}


batch_norm_forward = registry.register(
    "batch_norm_forward", batch_norm_forward_reference,
    registry.numba("._batchnorm_numba", "batch_norm_forward_numba", _forward_applies),
    example=_example_forward,
    doc="Batch normalization forward on the route the registry picks: "
        "``(y, x_hat, invstd, mean, var)``.")

batch_norm_backward = registry.register(
    "batch_norm_backward", batch_norm_backward_reference,
    registry.numba("._batchnorm_numba", "batch_norm_backward_numba", _backward_applies),
    example=_example_backward,
    doc="Batch normalization backward on the route the registry picks: ``(dx, dweight, dbias)``.")
