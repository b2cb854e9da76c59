"""Exercise checks of notebook 8 (batch normalization): the compact backward pass, and the
running statistics."""
from __future__ import annotations

import numpy as np

from minidl import nn

from . import CheckFailed, Result, compare_arrays, run_check

__all__ = ["check_batchnorm_backward", "check_running_stats"]


def check_batchnorm_backward(batchnorm_backward) -> Result:
    """``batchnorm_backward(dout, x_hat, invstd, gamma) -> (dx, dgamma, dbeta)`` for an
    ``(N, C)`` batch in training mode, against ``nn.BatchNorm1d``."""
    def body(fn):
        rng = np.random.default_rng(0)
        x = rng.standard_normal((8, 3)) * [1.0, 3.0, 0.5] + [0.0, 2.0, -1.0]
        bn = nn.BatchNorm1d(3).double()
        bn.weight.data[...] = [0.5, 1.5, 2.0]
        y = bn(x)
        dout = rng.standard_normal(y.shape)
        bn.zero_grad()
        dx = bn.backward(dout)
        mean, var = x.mean(axis=0), x.var(axis=0)
        invstd = 1 / np.sqrt(var + bn.eps)
        x_hat = (x - mean) * invstd
        got = fn(dout, x_hat, invstd, bn.weight.data.copy())
        if not isinstance(got, tuple) or len(got) != 3:
            raise CheckFailed(f"expected a tuple (dx, dgamma, dbeta), got {type(got).__name__}")
        compare_arrays("dbeta", got[2], bn.bias.grad)
        compare_arrays("dgamma", got[1], bn.weight.grad)
        n = len(x)
        without_xhat = bn.weight.data * invstd / n * (n * dout - dout.sum(axis=0))
        if np.shape(got[0]) == dx.shape and np.allclose(got[0], without_xhat):
            raise CheckFailed("dx lacks the term - x_hat * dgamma: sigma depends on x too")
        if np.shape(got[0]) == dx.shape and np.allclose(got[0], bn.weight.data * invstd * dout):
            raise CheckFailed("dx = gamma * invstd * dout treats mean and variance as "
                              "constants (that is eval mode); in training they depend on x")
        compare_arrays("dx", got[0], dx)
        return "dx, dgamma and dbeta equal nn.BatchNorm1d's backward"
    return run_check("batchnorm_backward", body, batchnorm_backward)


def check_running_stats(running_stats) -> Result:
    """``running_stats(running_mean, running_var, x, momentum) -> (mean, var)``: the
    buffers after one training-mode forward pass of ``nn.BatchNorm1d`` on ``x``."""
    def body(fn):
        rng = np.random.default_rng(1)
        bn = nn.BatchNorm1d(4, momentum=0.2).double()
        mean, var = bn.running_mean.copy(), bn.running_var.copy()
        for step in range(3):
            x = rng.standard_normal((5, 4)) * 2 + 1
            bn(x)
            mean, var = fn(mean.copy(), var.copy(), x, 0.2)
            compare_arrays(f"running_mean after batch {step + 1}", mean, bn.running_mean)
            if step == 0 and np.allclose(var, 0.8 * 1 + 0.2 * x.var(axis=0)):
                raise CheckFailed("the running variance averages the *unbiased* variance of "
                                  "the batch, n/(n-1) times sigma^2 (as PyTorch does)")
            compare_arrays(f"running_var after batch {step + 1}", var, bn.running_var)
        return "equals nn.BatchNorm1d's running_mean and running_var over three batches"
    return run_check("running_stats", body, running_stats)
