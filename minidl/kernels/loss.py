"""Cross-entropy of logits against class indices: the loss and the softmax, in one pass.

For logits ``z`` (N, C), targets ``t`` (N,) and label smoothing ``eps``::

    m_n      = max_c z_nc
    lp_nc    = (z_nc - m_n) - log sum_k exp(z_nk - m_n)        (log-softmax, stable)
    loss_n   = -lp_{n t_n}                         (eps = 0)
             = -(1 - eps) lp_{n t_n} - (eps / C) sum_c lp_nc
    loss     = mean_n loss_n,    probs = exp(lp)   (kept for the backward pass)

``cross_entropy_reference`` is NumPy (also CuPy): about fifteen small array operations,
which for the lab's batches (64 x 10) cost more in per-call overhead than in arithmetic;
``cross_entropy_numba`` does each row in one loop.  Both compute in the logits' dtype,
except that the Numba twin adds up the per-sample losses in float64 (NumPy's mean of a
float32 array accumulates in float32); they agree to rounding.  NaN or inf among a
row's logits make that row's loss NaN in both (as in torch).  The targets must already
be checked (integers in ``[0, C)``; ``CrossEntropyLoss`` does that).
"""
from __future__ import annotations

import numpy as np

from .. import backend
from . import registry


def cross_entropy_reference(logits, targets, label_smoothing=0.0):
    """``(mean loss as a Python float, softmax probabilities (N, C))``."""
    xp = backend.xp(logits)
    n, c = logits.shape
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))
    nll = -log_probs[xp.arange(n), targets]
    eps = label_smoothing
    if eps > 0:
        per_sample = (1 - eps) * nll - (eps / c) * log_probs.sum(axis=1)
    else:
        per_sample = nll
    return float(per_sample.mean()), xp.exp(log_probs)


def _numba_applies(logits, targets, label_smoothing=0.0) -> bool:
    return (type(logits) is np.ndarray and logits.dtype in (np.float32, np.float64)
            and type(targets) is np.ndarray)


def _example():
    return (np.zeros((64, 10), np.float32), np.zeros(64, np.int64)), {}


cross_entropy = registry.register(
    "cross_entropy", cross_entropy_reference,
    registry.numba("._loss_numba", "cross_entropy_numba", _numba_applies), example=_example,
    doc="The loss and probabilities on the route the registry picks (Numba for NumPy arrays).")
