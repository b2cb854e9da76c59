r"""Finite-difference gradient checking: is a hand-written backward right?

Usage::

    import numpy as np, minidl
    from minidl import nn

    x = np.random.default_rng(0).standard_normal((4, 5))
    minidl.gradcheck(nn.Linear(5, 3), x)                 # True, or GradcheckError

    logits = np.random.default_rng(1).standard_normal((4, 10))
    targets = np.array([1, 0, 9, 3])
    minidl.gradcheck(nn.CrossEntropyLoss(label_smoothing=0.1), logits, targets)

    # a report (str() explains it) instead of True/exception:
    from minidl.gradcheck import check_gradients
    print(check_gradients(nn.Tanh(), x))

How it works
------------
Everything runs in float64 on copies: the module is deep-copied and converted
with ``.double()``, the inputs are copied to float64, so the caller's model,
gradients and arrays are left untouched.

* A **layer/model** returns an array ``y``.  The checker turns it into a scalar
  with a fixed random projection, ``L = sum(w * y)`` (``w`` standard normal, so
  wrong signs or swapped entries cannot cancel as they could with ``w = 1``);
  then ``dL/dy = w`` and the analytic gradients come from ``backward(w)``.
* A **loss** returns a scalar ``L``; the analytic gradient comes from
  ``backward()``.

Then every element ``v`` of the first input and of every parameter is nudged
both ways and the slope is measured with central differences:

.. math:: \frac{\partial L}{\partial v} \approx \frac{L(v + \epsilon) - L(v - \epsilon)}{2\epsilon}

(error :math:`O(\epsilon^2)`), and compared with the analytic value ``a``:
``|a - numeric| <= atol + rtol * |numeric|``, like ``numpy.allclose``.

Only the first input is differentiated (``backward`` returns the gradient for
it); further inputs, such as a loss's integer targets, are held fixed.  The
random generator of ``minidl.random`` is rewound before every forward pass, so
``Dropout`` in training mode draws the same mask each time, and it is restored
afterwards.  The checker also reports a forward or backward that modifies its
input or incoming gradient in place.

Pick points away from kinks (ReLU at 0, max-pool ties): a finite difference
straddling a kink measures neither side's slope.

``module_or_fn`` may be a ``Module``, any object with ``forward`` and
``backward`` methods, or a pair of functions ``(forward_fn, backward_fn)``
where ``backward_fn(dout)`` returns the input gradient (such pairs have no
parameters and are not converted to float64: pass float64 data).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np

from . import backend
from . import random as _random
from .nn.module import Module

__all__ = ["gradcheck", "check_gradients", "GradcheckError", "GradcheckReport"]


class GradcheckError(AssertionError):
    """Raised by ``gradcheck`` when analytic and numeric gradients disagree."""


@dataclass
class ArrayCheck:
    """The comparison for one differentiated array (the input or one parameter)."""
    name: str
    shape: tuple
    analytic: np.ndarray
    numeric: np.ndarray
    atol: float
    rtol: float

    @property
    def abs_err(self) -> np.ndarray:
        return np.abs(self.analytic - self.numeric)

    @property
    def excess(self) -> np.ndarray:
        """err / allowed: above 1 fails; NaN anywhere counts as failing."""
        allowed = self.atol + self.rtol * np.abs(self.numeric)
        ratio = self.abs_err / allowed
        return np.where(np.isnan(ratio), np.inf, ratio)

    @property
    def n_bad(self) -> int:
        return int((self.excess > 1).sum())


@dataclass
class GradcheckReport:
    """Result of :func:`check_gradients`; ``str(report)`` explains it."""
    checks: list = field(default_factory=list)
    problems: list = field(default_factory=list)   # structural faults (shapes, in-place writes)

    @property
    def ok(self) -> bool:
        return not self.problems and all(c.n_bad == 0 for c in self.checks)

    def __bool__(self) -> bool:
        return self.ok

    def worst(self):
        """``(check, index)`` of the element furthest outside tolerance, or None."""
        best = None
        for c in self.checks:
            if c.analytic.size == 0:
                continue
            flat = int(np.argmax(c.excess))
            value = c.excess.reshape(-1)[flat]
            if best is None or value > best[0]:
                best = (value, c, np.unravel_index(flat, c.shape))
        return None if best is None else best[1:]

    def __str__(self) -> str:
        lines = ["gradcheck " + ("passed" if self.ok else "FAILED")]
        lines += [f"  problem: {p}" for p in self.problems]
        for c in self.checks:
            max_err = float(c.abs_err.max()) if c.analytic.size else 0.0
            lines.append(f"  {c.name:<20} shape {str(c.shape):<16} {c.n_bad:>6} of "
                         f"{c.analytic.size} outside tolerance, max |analytic-numeric| {max_err:.3g}")
        worst = self.worst()
        if worst is not None and not self.ok:
            c, idx = worst
            idx = tuple(int(i) for i in idx)
            a, n = float(c.analytic[idx]), float(c.numeric[idx])
            lines.append(f"  worst: {c.name}{list(idx)}: analytic {a:.10g}, numeric {n:.10g}, "
                         f"|diff| {abs(a - n):.3g} > atol {c.atol:g} + rtol {c.rtol:g} * |numeric|")
        return "\n".join(lines)


def _float64_copy(a):
    xp = backend.xp(a)
    return xp.ascontiguousarray(a.astype(np.float64, copy=True))


def _is_scalar(out) -> bool:
    return not hasattr(out, "shape") or out.ndim == 0


def check_gradients(module_or_fn, *inputs, eps: float = 1e-6, atol: float = 1e-5,
                    rtol: float = 1e-3) -> GradcheckReport:
    """Compare analytic and central-difference gradients; return a :class:`GradcheckReport`.

    See the module docstring for what is checked; :func:`gradcheck` is the
    pass/raise front end.
    """
    if not inputs:
        raise ValueError("gradcheck: expected at least one input array to differentiate")
    if not eps > 0:
        raise ValueError(f"gradcheck: expected eps > 0, got {eps}")
    first = inputs[0]
    if not (hasattr(first, "dtype") and np.issubdtype(first.dtype, np.floating)):
        raise ValueError(
            f"gradcheck: expected the first input to be a float array, got "
            f"{getattr(first, 'dtype', type(first).__name__)}")

    params = []
    if isinstance(module_or_fn, tuple):
        if len(module_or_fn) != 2 or not all(callable(f) for f in module_or_fn):
            raise ValueError("gradcheck: expected a Module or a pair (forward_fn, backward_fn)")
        forward, backward = module_or_fn
        x0 = first.astype(first.dtype, copy=True)
    elif hasattr(module_or_fn, "forward") and hasattr(module_or_fn, "backward"):
        obj = copy.deepcopy(module_or_fn)
        if isinstance(obj, Module):
            obj.double()
            for name, p in obj.named_parameters():
                p.data = _float64_copy(p.data)
                p.grad = None
                params.append((name, p))
        forward, backward = obj.forward, obj.backward
        x0 = _float64_copy(first)
    else:
        raise ValueError(
            f"gradcheck: expected a Module, an object with forward/backward, or a pair "
            f"(forward_fn, backward_fn), got {type(module_or_fn).__name__}")
    rest = tuple(_float64_copy(a) if hasattr(a, "dtype") and np.issubdtype(a.dtype, np.floating)
                 and not isinstance(module_or_fn, tuple) else a for a in inputs[1:])

    report = GradcheckReport()
    rng_state = _random.get_generator().bit_generator.state

    def run_forward(x):
        _random.get_generator().bit_generator.state = rng_state
        return forward(x, *rest)

    try:
        # analytic gradients
        x_before = x0.copy()
        out = run_forward(x0)
        if _is_scalar(out):
            projection = None
            dx = backward()
        else:
            projection = backend.asarray_like(
                np.random.default_rng(0).standard_normal(out.shape), out).astype(out.dtype)
            dout_before = projection.copy()
            dx = backward(projection)
            if not bool((projection == dout_before).all()):
                report.problems.append("backward modified its incoming gradient in place")
        if not bool(((x0 == x_before) | (backend.xp(x0).isnan(x0) & backend.xp(x0).isnan(x_before))).all()):
            report.problems.append("forward/backward modified the input in place")
            x0 = x_before
        if not hasattr(dx, "shape") or tuple(dx.shape) != tuple(x0.shape):
            report.problems.append(
                f"backward returned a gradient of shape {tuple(getattr(dx, 'shape', ()))} "
                f"for an input of shape {tuple(x0.shape)}")
            return report
        param_grads = {}
        for name, p in params:
            if p.grad is None:
                report.problems.append(f"backward left the gradient of '{name}' as None")
                param_grads[name] = np.zeros(p.data.shape)
            else:
                param_grads[name] = backend.to_numpy(p.grad).astype(np.float64, copy=True)

        def objective(x) -> float:
            out = run_forward(x)
            if projection is None:
                return float(out)
            return float((out * projection).sum())

        def numeric_grad(array, evaluate):
            """Central differences of evaluate() w.r.t. every element of ``array`` (in place)."""
            flat = array.reshape(-1)
            grad = np.empty(flat.size)
            for i in range(flat.size):
                v = flat[i].item()
                flat[i] = v + eps
                plus = evaluate()
                flat[i] = v - eps
                minus = evaluate()
                flat[i] = v
                grad[i] = (plus - minus) / (2 * eps)
            return grad.reshape(array.shape)

        xw = x0.copy()
        report.checks.append(ArrayCheck(
            "input", tuple(x0.shape), backend.to_numpy(dx).astype(np.float64),
            numeric_grad(xw, lambda: objective(xw)), atol, rtol))
        for name, p in params:
            report.checks.append(ArrayCheck(
                f"param '{name}'", tuple(p.data.shape), param_grads[name],
                numeric_grad(p.data, lambda: objective(x0)), atol, rtol))
    finally:
        _random.get_generator().bit_generator.state = rng_state
    return report


def gradcheck(module_or_fn, *inputs, eps: float = 1e-6, atol: float = 1e-5,
              rtol: float = 1e-3, raise_exception: bool = True) -> bool:
    """Check ``module_or_fn``'s backward against finite differences, in float64.

    Parameters
    ----------
    module_or_fn : Module, object with ``forward``/``backward``, or ``(forward_fn, backward_fn)``
    *inputs : arrays passed to forward; the first (a float array) is differentiated,
        the rest (e.g. a loss's targets) are held fixed.
    eps : float
        Step of the central difference.
    atol, rtol : float
        An element passes when ``|analytic - numeric| <= atol + rtol * |numeric|``.
    raise_exception : bool
        On failure, raise :class:`GradcheckError` with the report (default), or
        return False.

    Returns
    -------
    True when the input gradient and every parameter gradient match.  The
    error message lists each checked array and the worst element: name, index,
    analytic and numeric values.  ``check_gradients`` returns the full report.
    """
    report = check_gradients(module_or_fn, *inputs, eps=eps, atol=atol, rtol=rtol)
    if report.ok:
        return True
    if raise_exception:
        raise GradcheckError(str(report))
    return False
