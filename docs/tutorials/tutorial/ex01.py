"""Exercise checks of notebook 1 (a layer by hand): ``Linear`` forward and backward, and a
central difference."""
from __future__ import annotations

import numpy as np

from minidl.kernels.naive import linear_backward_naive, linear_forward_naive

from . import CheckFailed, Result, compare_arrays, run_check

__all__ = ["check_linear_forward", "check_linear_backward", "check_central_difference"]


def _batch(seed=1, n=3, d=5, o=4):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)), rng.standard_normal((o, d)), rng.standard_normal(o)


def check_linear_forward(linear_forward) -> Result:
    """``linear_forward(x, W, b)`` against the loop oracle ``linear_forward_naive``."""
    def body(fn):
        x, w, b = _batch()
        got = fn(x, w, b)
        if np.shape(got) == (3, 4) and np.allclose(got, x @ w.T):
            raise CheckFailed("y = x W^T is right, but the bias b is missing")
        compare_arrays("linear_forward(x, W, b) for x (3, 5), W (4, 5), b (4,)", got,
                       linear_forward_naive(x, w, b))
        return "equals linear_forward_naive on a random batch"
    return run_check("linear_forward", body, linear_forward)


def check_linear_backward(linear_backward) -> Result:
    """``linear_backward(x, W, dout) -> (dx, dW, db)`` against ``linear_backward_naive``."""
    def body(fn):
        x, w, _ = _batch(seed=2)
        dout = np.random.default_rng(3).standard_normal((3, 4))
        got = fn(x, w, dout)
        if not isinstance(got, tuple) or len(got) != 3:
            raise CheckFailed(f"expected a tuple (dx, dW, db), got {type(got).__name__}")
        dx, dw, db = linear_backward_naive(x, w, dout)
        if np.shape(got[2]) == db.shape and np.allclose(got[2], db / len(x)):
            raise CheckFailed("db is the *mean* of dout over the batch; the loss sums over "
                              "the batch's rows, so db is the sum")
        for name, g, e in zip(("dx", "dW", "db"), got, (dx, dw, db)):
            compare_arrays(name, g, e)
        return "dx, dW and db equal linear_backward_naive"
    return run_check("linear_backward", body, linear_backward)


def check_central_difference(central_difference) -> Result:
    """``central_difference(f, x, eps)`` -> the gradient of scalar ``f`` at ``x``, entry by
    entry, to within the ``eps**2`` error of a central difference."""
    def body(fn):
        x = np.array([0.3, -1.2, 2.0])
        a = np.array([1.0, 2.0, -0.5])

        def f(v):                     # steep enough that a one-sided difference shows
            return float(np.sum(np.exp(a * v)) + v[0] ** 3 * v[1])

        exact = a * np.exp(a * x) + np.array([3 * x[0] ** 2 * x[1], x[0] ** 3, 0.0])
        before = x.copy()
        got = fn(f, x, 1e-3)
        if not np.array_equal(x, before):
            raise CheckFailed("x was changed: put every entry back after nudging it")
        got = np.asarray(got, dtype=float)
        if got.shape != x.shape:
            raise CheckFailed(f"expected one derivative per entry, shape {x.shape}, "
                              f"got {got.shape}")
        error = np.abs(got - exact).max()
        if error > 1e-4:
            raise CheckFailed(f"off by up to {error:.2g} with eps = 1e-3; a central difference "
                              f"(f(x+eps) - f(x-eps)) / (2 eps) is off by about eps^2 = 1e-6 "
                              f"here, a one-sided one by about eps")
        return f"within {error:.1e} of the exact gradient"
    return run_check("central_difference", body, central_difference)
