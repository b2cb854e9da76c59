"""Numba twin of ``cross_entropy_reference`` (see ``loss.py``): one loop per row."""
from __future__ import annotations

import numpy as np
from numba import njit

from ._parallel import check_float_array


@njit(cache=True, error_model="numpy")
def _cross_entropy(z, t, smoothing, one_minus_eps, eps_over_c, probs):
    n, c = z.shape
    total = 0.0                               # float64 sum of the per-sample losses
    for i in range(n):
        row = z[i]
        m = row[0]
        for j in range(1, c):
            v = row[j]
            if v > m or v != v:               # NaN wins, as in NumPy's max
                m = v
        s = row[0] - row[0]                   # 0 in the logits' dtype (NaN if row[0] is)
        for j in range(c):
            s += np.exp(row[j] - m)
        lse = np.log(s)
        lp_sum = s - s
        for j in range(c):
            lp = (row[j] - m) - lse
            probs[i, j] = np.exp(lp)
            lp_sum += lp
        nll = -((row[t[i]] - m) - lse)
        if smoothing:
            total += one_minus_eps * nll - eps_over_c * lp_sum
        else:
            total += nll
    return total / n


def cross_entropy_numba(logits, targets, label_smoothing=0.0):
    """Numba cross-entropy: ``(mean loss, probs)``; equals ``cross_entropy_reference`` to
    rounding."""
    logits = check_float_array(logits, "cross_entropy", "logits", 2)
    targets = np.ascontiguousarray(targets, dtype=np.int64)
    n, c = logits.shape
    if targets.shape != (n,):
        raise ValueError(f"cross_entropy: expected targets of shape ({n},), got "
                         f"{tuple(targets.shape)}")
    dt = logits.dtype.type
    eps = float(label_smoothing)
    probs = np.empty_like(logits)
    loss = _cross_entropy(logits, targets, eps > 0, dt(1 - eps), dt(eps / c), probs)
    return float(loss), probs
