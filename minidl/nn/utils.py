r"""Gradient clipping, as ``torch.nn.utils``: ``clip_grad_norm_`` and ``clip_grad_value_``.

Both work in place on the ``grad`` of each ``Parameter`` (those whose ``grad`` is
None are skipped) and run between ``backward`` and the optimizer's ``step``::

    model.backward(loss_fn.backward())
    nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)
    opt.step()

Recurrent networks need them: a gradient sent back through many steps can grow
by the same factor at every step and explode.
"""
from __future__ import annotations

import math

import numpy as np

from .. import _checks, backend
from .parameter import Parameter

__all__ = ["clip_grad_norm_", "clip_grad_value_", "get_total_norm", "clip_grads_with_norm_"]


def _grads(owner: str, parameters) -> list:
    """The non-None gradients of a Parameter or an iterable of Parameters."""
    if isinstance(parameters, Parameter):
        parameters = [parameters]
    try:
        params = list(parameters)
    except TypeError:
        raise TypeError(f"{owner}: expected a Parameter or an iterable of Parameters (such "
                        f"as model.parameters()), got {type(parameters).__name__}") from None
    for p in params:
        if not isinstance(p, Parameter):
            raise TypeError(f"{owner}: expected Parameters, got a {type(p).__name__}")
    return [p.grad for p in params if p.grad is not None]


def _number(owner: str, name: str, value) -> float:
    if isinstance(value, str):                  # "inf" is allowed, as in torch
        try:
            return float(value)
        except ValueError:
            raise ValueError(f"{owner}: expected {name} to be a number, got {value!r}") from None
    return _checks.real(owner, name, value)


def _vector_norm(xp, g, p: float):
    """``||g||_p`` of the flattened array, in its dtype (``torch.linalg.vector_norm``)."""
    a = xp.abs(g.reshape(-1))
    if p == math.inf:
        return a.max() if a.size else g.dtype.type(0)
    if p == -math.inf:
        return a.min() if a.size else g.dtype.type(math.inf)
    if p == 0:
        return (a != 0).sum().astype(g.dtype)
    if p == 1:
        return a.sum()
    if p == 2:
        return xp.sqrt((a * a).sum())
    return (a ** p).sum() ** (1 / p)


def _total_norm(owner: str, grads: list, p: float, error_if_nonfinite: bool):
    """The p-norm of the gradients' norms: a 0-d array of their module and common dtype."""
    xp = backend.xp(grads[0])
    dtype = np.result_type(*(g.dtype for g in grads))
    norms = xp.stack([xp.asarray(_vector_norm(xp, g, p), dtype=dtype) for g in grads])
    total = _vector_norm(xp, norms, p)
    if error_if_nonfinite and not bool(xp.isfinite(total)):
        raise RuntimeError(
            f"{owner}: the total norm of order {p} of the gradients is non-finite "
            f"({float(total)}), so it cannot be clipped; set error_if_nonfinite=False to "
            f"scale the gradients by the non-finite norm anyway")
    return total


def _scale_to(grads: list, max_norm: float, total) -> None:
    """``g *= min(max_norm / (total + 1e-6), 1)`` for every gradient, in ``total``'s dtype."""
    xp, dtype = backend.xp(total), total.dtype
    coef = xp.minimum(dtype.type(max_norm) / (total + dtype.type(1e-6)), dtype.type(1))
    with np.errstate(invalid="ignore"):       # inf * 0 = NaN, as in torch
        for g in grads:
            g *= coef.astype(g.dtype)


def _arrays(owner: str, tensors) -> list:
    if hasattr(tensors, "shape") and hasattr(tensors, "dtype"):
        return [tensors]
    try:
        arrays = list(tensors)
    except TypeError:
        raise TypeError(f"{owner}: expected an array or an iterable of arrays (such as the "
                        f"parameters' gradients), got {type(tensors).__name__}") from None
    for a in arrays:
        if not (hasattr(a, "shape") and hasattr(a, "dtype")):
            raise TypeError(f"{owner}: expected arrays, got a {type(a).__name__}")
    return arrays


def get_total_norm(tensors, norm_type=2.0, error_if_nonfinite: bool = False, foreach=None):
    r"""The norm of the norms of ``tensors`` (arrays, such as gradients):
    :math:`\big\| (\|g_1\|_p, \ldots, \|g_k\|_p) \big\|_p`.

    Returns a 0-d array (a NumPy scalar on the host; on a GPU a CuPy array, which stays
    there: nothing is copied to the host) in the arrays' common dtype; a float64 0 for no
    arrays.  RuntimeError
    for a non-finite norm when ``error_if_nonfinite``.  ``foreach`` is accepted and ignored.
    Matches ``torch.nn.utils.get_total_norm``.
    """
    owner = "get_total_norm"
    p = _number(owner, "norm_type", norm_type)
    arrays = _arrays(owner, tensors)
    if not arrays:
        return np.zeros((), np.float64)
    return _total_norm(owner, arrays, p, error_if_nonfinite)


def clip_grads_with_norm_(parameters, max_norm, total_norm, foreach=None) -> None:
    r"""Scale every gradient by :math:`\min\big(\text{max\_norm} / (\text{total\_norm} +
    10^{-6}), 1\big)` in place, given the total norm (``get_total_norm``'s).

    The factor is computed in ``total_norm``'s dtype and applied even when it is 1, as
    torch does; NaN or inf totals scale by NaN or 0.  ``foreach`` is accepted and ignored.
    Matches ``torch.nn.utils.clip_grads_with_norm_``.
    """
    owner = "clip_grads_with_norm_"
    max_norm = _number(owner, "max_norm", max_norm)
    if not (hasattr(total_norm, "dtype") and getattr(total_norm, "ndim", None) == 0):
        raise TypeError(f"{owner}: expected total_norm to be a 0-d array (get_total_norm's), "
                        f"got {type(total_norm).__name__}")
    grads = _grads(owner, parameters)
    if grads:
        _scale_to(grads, max_norm, total_norm)


def clip_grad_norm_(parameters, max_norm, norm_type=2.0, error_if_nonfinite: bool = False,
                    foreach=None) -> float:
    r"""Scale all gradients together so that their total norm is at most ``max_norm``.

    .. math::
        \text{total} = \Big\| \big(\|g_1\|_p, \ldots, \|g_k\|_p\big) \Big\|_p
                     = \Big(\sum_i \sum_j |g_{ij}|^p\Big)^{1/p}, \qquad
        g_i \leftarrow g_i \cdot \min\Big(1, \frac{\text{max\_norm}}{\text{total} + 10^{-6}}\Big)

    ``p = norm_type`` (``inf`` or ``"inf"``: the largest ``|g_ij|``).  The norm and the
    factor are computed in the gradients' dtype, and the factor is applied even when
    it is 1, as torch does: ``get_total_norm`` then ``clip_grads_with_norm_``.

    Returns the total norm *before* clipping, as a Python float (0.0 when no
    parameter has a gradient).  A non-finite total (a NaN or inf gradient) scales the
    gradients by NaN or 0, as in torch, unless ``error_if_nonfinite`` is True: then
    RuntimeError, with the gradients untouched.  ``foreach`` is accepted and ignored.

    Matches ``torch.nn.utils.clip_grad_norm_``.  NOTE: torch returns a 0-dim tensor; the
    float here is a copy to the host on a GPU, which a training step that ignores the
    norm avoids by calling the two functions above (``tuning``'s recurrent classifier
    does).
    """
    owner = "clip_grad_norm_"
    max_norm = _number(owner, "max_norm", max_norm)
    p = _number(owner, "norm_type", norm_type)
    grads = _grads(owner, parameters)
    if not grads:
        return 0.0
    total = _total_norm(owner, grads, p, error_if_nonfinite)
    _scale_to(grads, max_norm, total)
    return float(total)


def clip_grad_value_(parameters, clip_value, foreach=None) -> None:
    r"""Clamp every gradient element into ``[-clip_value, clip_value]``, in place.

    .. math:: g_{ij} \leftarrow \min(\max(g_{ij}, -c), c)

    NaN stays NaN.  Returns None; ``foreach`` is accepted and ignored.
    Matches ``torch.nn.utils.clip_grad_value_``.
    """
    c = _number("clip_grad_value_", "clip_value", clip_value)
    for g in _grads("clip_grad_value_", parameters):
        xp = backend.xp(g)
        xp.minimum(xp.maximum(g, g.dtype.type(-c), out=g), g.dtype.type(c), out=g)
