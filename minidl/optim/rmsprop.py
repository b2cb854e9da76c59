"""RMSprop: steps divided by a running root-mean-square of the gradient."""
from __future__ import annotations

from .. import _checks, backend
from .optimizer import Optimizer


class RMSprop(Optimizer):
    r"""RMSprop, optionally centered and with momentum.

    Parameters
    ----------
    params : iterable of Parameter or of dict
        Parameters to optimize, or parameter groups.
    lr : float, default 1e-2
        Learning rate :math:`\gamma`.
    alpha : float, default 0.99
        Smoothing constant :math:`\alpha` of the running averages.
    eps : float, default 1e-8
        :math:`\epsilon`, added *outside* the square root.
    weight_decay : float, default 0
        L2 penalty :math:`\lambda`, added to the gradient.
    momentum : float, default 0
        Momentum factor :math:`\mu`.
    centered : bool, default False
        Divide by the estimated standard deviation of the gradient (subtract the
        squared running mean of the gradient from the running mean of its square).

    Notes
    -----
    For a parameter :math:`\theta` with gradient :math:`g_t` at step
    :math:`t = 1, 2, \ldots`, starting from :math:`v_0 = \bar g_0 = b_0 = 0`:

    .. math::

        \boxed{
        \begin{aligned}
        g_t &\leftarrow g_t + \lambda\,\theta_{t-1} \\
        v_t &\leftarrow \alpha\, v_{t-1} + (1-\alpha)\, g_t^2 \\
        \bar g_t &\leftarrow \alpha\, \bar g_{t-1} + (1-\alpha)\, g_t
            &&\text{(centered)} \\
        d_t &\leftarrow \begin{cases} \sqrt{v_t - \bar g_t^2} + \epsilon & \text{centered} \\
                                      \sqrt{v_t} + \epsilon & \text{otherwise} \end{cases} \\
        b_t &\leftarrow \mu\, b_{t-1} + g_t / d_t,
            \quad \theta_t \leftarrow \theta_{t-1} - \gamma\, b_t
            &&\text{(when } \mu > 0\text{)} \\
        \theta_t &\leftarrow \theta_{t-1} - \gamma\, g_t / d_t
            &&\text{(when } \mu = 0\text{)}
        \end{aligned}}

    Unlike :class:`SGD`, the momentum buffer starts at zero.  State per
    parameter: ``"step"`` (int), ``"square_avg"`` (v), ``"momentum_buffer"``
    (when momentum > 0) and ``"grad_avg"`` (when centered), with the
    parameter's shape.

    Matches ``torch.optim.RMSprop`` (default, single-tensor implementation).
    """

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0,
                 centered=False):
        defaults = dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
                        momentum=momentum, centered=centered)
        super().__init__(params, defaults)

    def _check_hyperparameters(self, group):
        for name in ("lr", "alpha", "eps", "weight_decay", "momentum"):
            _checks.non_negative(self._name, name, group[name])
        _checks.boolean(self._name, "centered", group["centered"])

    def step(self, closure=None):
        """Update every parameter that has a gradient (in place); return ``closure()`` if given.

        The arithmetic is :func:`rmsprop`'s; this class keeps the running averages.
        """
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            momentum = float(group["momentum"])
            centered = group["centered"]
            params = list(self._params_with_grad(group))
            for p in params:
                state = self.state[p]
                if not state:
                    xp = backend.xp(p.data)
                    state["step"] = 0
                    state["square_avg"] = xp.zeros_like(p.data)
                    if momentum > 0:
                        state["momentum_buffer"] = xp.zeros_like(p.data)
                    if centered:
                        state["grad_avg"] = xp.zeros_like(p.data)
                state["step"] += 1
            states = [self.state[p] for p in params]
            rmsprop([p.data for p in params], [p.grad for p in params],
                    [s["square_avg"] for s in states], [s.get("grad_avg") for s in states],
                    [s.get("momentum_buffer") for s in states], lr=float(group["lr"]),
                    alpha=float(group["alpha"]), eps=float(group["eps"]),
                    weight_decay=float(group["weight_decay"]), momentum=momentum,
                    centered=centered)
        return loss


def rmsprop(params, grads, square_avgs, grad_avgs, momentum_buffers, *, lr, alpha, eps,
            weight_decay, momentum, centered):
    """One RMSprop step over a list of parameters: the update of :class:`RMSprop` (its
    docstring has the formula), in place.

    ``params`` (updated in place), ``grads`` (not modified), ``square_avgs`` (``v``,
    updated in place), ``grad_avgs`` (the running mean of the gradient, updated in place
    when ``centered``, else unused: None entries) and ``momentum_buffers`` (updated in
    place when ``momentum > 0``, else unused) are lists of arrays, one entry per
    parameter, of the parameter's shape; the other arguments are :class:`RMSprop`'s.

    Matches ``torch.optim.rmsprop.rmsprop`` (single-tensor implementation).
    """
    for i, (param, grad) in enumerate(zip(params, grads)):
        xp = backend.xp(param)
        g = grad
        if weight_decay != 0:
            g = g + weight_decay * param

        v = square_avgs[i]
        v *= alpha
        v += (1 - alpha) * g * g
        if centered:
            g_avg = grad_avgs[i]
            g_avg += (1 - alpha) * (g - g_avg)
            denom = xp.sqrt(v - g_avg * g_avg) + eps
        else:
            denom = xp.sqrt(v) + eps

        if momentum > 0:
            buf = momentum_buffers[i]
            buf *= momentum
            buf += g / denom
            param -= lr * buf
        else:
            param -= lr * g / denom
