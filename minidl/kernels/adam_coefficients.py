"""The scalars of one Adam/AdamW update, in the parameter's dtype (see ``adam.py``).

Shared by the reference (``adam.py``) and its Numba twin (``_adam_numba.py``), so the
twin never imports its dispatcher.
"""
from __future__ import annotations

import numpy as np

# Magnitudes below this are flushed to zero in float32 moments (the smallest
# normal float32); float64 moments are never flushed (threshold 0).
FLUSH_BELOW = {np.dtype(np.float32): float(np.finfo(np.float32).tiny),
               np.dtype(np.float64): 0.0}


def flush_threshold(dtype) -> float:
    """The magnitude below which a moment of ``dtype`` is flushed to zero (0: never)."""
    return FLUSH_BELOW.get(np.dtype(dtype), 0.0)


# The order of the scalars in an ``adam_coefficients`` array.
COEFFICIENTS = ("decay", "weight_decay", "one_minus_beta1", "beta2", "one_minus_beta2",
                "flush_below", "step_size", "bias_correction2_sqrt", "eps")


def adam_coefficients(dtype, *, lr, beta1, beta2, eps, weight_decay, decoupled, step_size,
                      bias_correction2_sqrt) -> np.ndarray:
    """The scalars of one update, in ``dtype`` (the order of ``COEFFICIENTS``).

    ``decay = 1 - lr*weight_decay`` for AdamW (else 1) multiplies the parameter;
    ``weight_decay`` is the coupled (Adam) decay added to the gradient (0 for AdamW);
    ``flush_below`` is ``flush_threshold(dtype)``.  An optimizer computes them once per
    step for all parameters of a group (they are the same), not once per parameter.
    """
    dt = np.dtype(dtype).type
    decay = 1 - lr * weight_decay if (decoupled and weight_decay != 0) else 1.0
    coupled = 0.0 if decoupled else weight_decay
    return np.array([decay, coupled, 1 - beta1, beta2, 1 - beta2, flush_threshold(dtype),
                     step_size, bias_correction2_sqrt, eps], dtype=dt)


def coefficients_for(param, coefficients, scalars):
    if coefficients is None:
        return adam_coefficients(param.dtype, **scalars)
    if scalars:
        raise ValueError(f"adam_update: pass coefficients or the scalars "
                         f"{sorted(scalars)}, not both")
    return coefficients
