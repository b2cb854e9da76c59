"""Exercise checks of notebook 10 (gradient-based tuning): one SGD-HD step, and the DARTS
architecture gradient of a mixed operation."""
from __future__ import annotations

import numpy as np

import minidl
from minidl import nn, optim
from minidl.nn import Parameter
from minidl.nn.darts import MixedOp

from . import CheckFailed, Result, compare_arrays, run_check

__all__ = ["check_sgd_hd_step", "check_alpha_gradient"]


def check_sgd_hd_step(sgd_hd_step) -> Result:
    """``sgd_hd_step(theta, grad, grad_prev, lr, hypergrad_lr) -> (theta, lr)``, for several
    steps against ``optim.SGDHD``."""
    def body(fn):
        rng = np.random.default_rng(0)
        a = np.diag([1.0, 4.0, 9.0])
        p = Parameter(np.array([1.0, -1.0, 0.5]))
        opt = optim.SGDHD([p], lr=0.02, hypergrad_lr=0.01)
        theta, lr, prev = p.data.copy(), 0.02, np.zeros(3)
        for step in range(1, 9):
            g = a @ p.data + 0.1 * rng.standard_normal(3)
            p.grad = g.copy()
            opt.step()
            got = fn(theta.copy(), g.copy(), prev.copy(), lr, 0.01)
            if not isinstance(got, tuple) or len(got) != 2:
                raise CheckFailed(f"expected a tuple (theta, lr), got {type(got).__name__}")
            theta, new_lr = np.asarray(got[0]), float(got[1])
            expected_lr = opt.param_groups[0]["lr"]
            if step > 1 and np.isclose(new_lr, 2 * lr - expected_lr, rtol=1e-9) \
                    and not np.isclose(new_lr, expected_lr, rtol=1e-9):
                raise CheckFailed(f"step {step}: the rate moved the wrong way; the loss falls "
                                  f"along -dL/dlr = +grad . grad_prev, so lr += hypergrad_lr * "
                                  f"grad . grad_prev")
            if not np.isclose(new_lr, expected_lr, rtol=1e-9, atol=1e-15):
                raise CheckFailed(f"step {step}: expected lr {expected_lr:.8g}, got {new_lr:.8g}")
            compare_arrays(f"theta after step {step}", theta, p.data, rtol=1e-9)
            lr, prev = new_lr, g
        return "rates and parameters equal optim.SGDHD's for 8 steps"
    return run_check("sgd_hd_step", body, sgd_hd_step)


def check_alpha_gradient(alpha_gradient) -> Result:
    """``alpha_gradient(alpha, outs, dout) -> dL/dalpha``, against ``MixedOp.backward``."""
    def body(fn):
        minidl.manual_seed(1)
        mixed = MixedOp([nn.Linear(4, 3).double() for _ in range(3)])
        mixed.alpha.data[...] = [0.3, -0.2, 0.1]
        x = np.random.default_rng(1).standard_normal((5, 4))
        y = mixed(x)
        dout = np.random.default_rng(2).standard_normal(y.shape)
        outs = [op(x) for op in mixed.ops]
        mixed(x)                                   # the caches of the mixture's forward
        mixed.zero_grad()
        mixed.backward(dout)
        got = np.asarray(fn(mixed.alpha.data.copy(), outs, dout))
        g = np.array([(dout * o).sum() for o in outs])
        if got.shape == g.shape and np.allclose(got, g):
            raise CheckFailed("this is dL/dw_k = <dout, o_k>; alpha reaches the loss through "
                              "the softmax: multiply by its Jacobian w_k (delta_kj - w_j)")
        compare_arrays("dL/dalpha", got, mixed.alpha.grad)
        return "equals MixedOp.backward's alpha gradient"
    return run_check("alpha_gradient", body, alpha_gradient)
