"""Exercise checks of notebook 4 (optimizers): an SGD step with momentum (heavy ball and
Nesterov) and an Adam step, each run for several steps beside minidl's own."""
from __future__ import annotations

import numpy as np

from minidl import optim
from minidl.kernels.naive import adam_update_naive
from minidl.nn import Parameter

from . import CheckFailed, Result, compare_arrays, run_check

__all__ = ["check_sgd_step", "check_adam_step"]

STEPS = 6


def _gradients(seed):
    return np.random.default_rng(seed).standard_normal((STEPS, 3))


def check_sgd_step(sgd_step) -> Result:
    """``sgd_step(theta, grad, buf, lr, momentum, nesterov) -> (theta, buf)`` (``buf`` starts
    at zeros), for several steps against ``minidl.optim.SGD``."""
    def body(fn):
        for nesterov in (False, True):
            start = np.array([0.5, -1.0, 2.0])
            reference = Parameter(start.copy())
            opt = optim.SGD([reference], lr=0.1, momentum=0.9, nesterov=nesterov)
            theta, buf = start.copy(), np.zeros(3)
            for step, g in enumerate(_gradients(3), start=1):
                reference.grad = g.copy()
                opt.step()
                theta, buf = fn(theta, g.copy(), buf, 0.1, 0.9, nesterov)
                kind = "Nesterov" if nesterov else "heavy-ball momentum"
                compare_arrays(f"theta after step {step} ({kind})", theta, reference.data,
                               rtol=1e-12, atol=1e-12)
        return f"matches optim.SGD for {STEPS} steps, with and without Nesterov"
    return run_check("sgd_step", body, sgd_step)


def check_adam_step(adam_step) -> Result:
    """``adam_step(theta, grad, m, v, t, lr, beta1, beta2, eps) -> (theta, m, v)`` (``t``
    counts from 1), for several steps against the loop oracle ``adam_update_naive``."""
    def body(fn):
        start = np.array([0.5, -1.0, 2.0])
        p, m_ref, v_ref = start.copy(), np.zeros(3), np.zeros(3)
        theta, m, v = start.copy(), np.zeros(3), np.zeros(3)
        for t, g in enumerate(_gradients(4), start=1):
            adam_update_naive([p], [g], [m_ref], [v_ref], t, lr=0.1)
            theta, m, v = fn(theta, g.copy(), m, v, t, 0.1, 0.9, 0.999, 1e-8)
            if t == 1 and np.allclose(theta, start - 0.1 * 0.1 * g / (np.sqrt(0.001) * np.abs(g)),
                                      rtol=1e-6):
                raise CheckFailed("the first step is (1 - beta1) / sqrt(1 - beta2) = 3.2 times too "
                                  "long: divide m by 1 - beta1^t and v by 1 - beta2^t (bias "
                                  "correction)")
            compare_arrays(f"theta after step {t}", theta, p, rtol=1e-10, atol=1e-12)
        return f"matches adam_update_naive for {STEPS} steps"
    return run_check("adam_step", body, adam_step)
