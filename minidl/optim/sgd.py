"""Stochastic gradient descent, with optional momentum, dampening, Nesterov and L2 decay."""
from __future__ import annotations

from .optimizer import Optimizer


class SGD(Optimizer):
    r"""Stochastic gradient descent (optionally with momentum).

    Parameters
    ----------
    params : iterable of Parameter or of dict
        Parameters to optimize, or parameter groups.
    lr : float, default 1e-3
        Learning rate :math:`\gamma`.
    momentum : float, default 0
        Momentum factor :math:`\mu`.
    dampening : float, default 0
        Dampening :math:`\tau` of the gradient added to the momentum buffer.
    weight_decay : float, default 0
        L2 penalty :math:`\lambda`, added to the gradient.
    nesterov : bool, default False
        Use Nesterov momentum (needs ``momentum > 0`` and ``dampening == 0``).

    Notes
    -----
    For a parameter :math:`\theta` with gradient :math:`g_t` at step :math:`t`:

    .. math::

        \boxed{
        \begin{aligned}
        g_t &\leftarrow g_t + \lambda\,\theta_{t-1} \\
        b_t &\leftarrow \begin{cases} g_t & t = 1 \\
                                      \mu\, b_{t-1} + (1-\tau)\, g_t & t > 1 \end{cases}
            &&\text{(when } \mu \ne 0\text{)} \\
        g_t &\leftarrow \begin{cases} g_t + \mu\, b_t & \text{nesterov} \\
                                      b_t & \text{otherwise} \end{cases} \\
        \theta_t &\leftarrow \theta_{t-1} - \gamma\, g_t
        \end{aligned}}

    The momentum buffer :math:`b` starts as the first gradient (not zero), and
    is kept in ``state[p]["momentum_buffer"]`` only when :math:`\mu \ne 0`.
    The shape of every array equals the parameter's shape.

    Matches ``torch.optim.SGD`` (default, single-tensor implementation).
    """

    def __init__(self, params, lr=1e-3, momentum=0, dampening=0, weight_decay=0,
                 nesterov=False):
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening,
                        weight_decay=weight_decay, nesterov=nesterov)
        super().__init__(params, defaults)

    def _check_hyperparameters(self, group):
        self._require_number("lr", group["lr"])
        self._require_number("momentum", group["momentum"])
        self._require_number("dampening", group["dampening"], low=None)
        self._require_number("weight_decay", group["weight_decay"])
        self._require_bool("nesterov", group["nesterov"])
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError(
                f"{self._name}: Nesterov momentum requires momentum > 0 and dampening == 0, "
                f"got momentum={group['momentum']!r}, dampening={group['dampening']!r}")

    def step(self, closure=None):
        """Update every parameter that has a gradient (in place); return ``closure()`` if given."""
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            lr = float(group["lr"])
            momentum = float(group["momentum"])
            dampening = float(group["dampening"])
            weight_decay = float(group["weight_decay"])
            for p in self._params_with_grad(group):
                g = p.grad
                if weight_decay != 0:
                    g = g + weight_decay * p.data
                if momentum != 0:
                    state = self.state[p]
                    buf = state.get("momentum_buffer")
                    if buf is None:
                        buf = state["momentum_buffer"] = g.astype(p.data.dtype, copy=True)
                    else:
                        buf *= momentum
                        buf += (1 - dampening) * g
                    g = g + momentum * buf if group["nesterov"] else buf
                p.data -= lr * g
        return loss
