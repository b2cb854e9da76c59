"""Stochastic gradient descent, with optional momentum, dampening, Nesterov and L2 decay."""
from __future__ import annotations

from .. import _checks
from .optimizer import Optimizer


def check_sgd_settings(owner: str, group) -> None:
    """Check ``momentum``, ``dampening``, ``weight_decay`` and ``nesterov`` of an SGD-style
    ``group`` (SGD and SGDHD share them)."""
    _checks.non_negative(owner, "momentum", group["momentum"])
    _checks.real(owner, "dampening", group["dampening"])
    _checks.non_negative(owner, "weight_decay", group["weight_decay"])
    _checks.boolean(owner, "nesterov", group["nesterov"])
    if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
        raise ValueError(
            f"{owner}: Nesterov momentum requires momentum > 0 and dampening == 0, "
            f"got momentum={group['momentum']!r}, dampening={group['dampening']!r}")


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
        _checks.non_negative(self._name, "lr", group["lr"])
        check_sgd_settings(self._name, group)

    def step(self, closure=None):
        """Update every parameter that has a gradient (in place); return ``closure()`` if given.

        The arithmetic is :func:`sgd`'s; this class keeps the momentum buffers.
        """
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            params = list(self._params_with_grad(group))
            momentum = float(group["momentum"])
            buffers = [self.state[p].get("momentum_buffer") if momentum != 0 else None
                       for p in params]
            sgd([p.data for p in params], [p.grad for p in params], buffers,
                lr=float(group["lr"]), momentum=momentum, dampening=float(group["dampening"]),
                nesterov=group["nesterov"], weight_decay=float(group["weight_decay"]))
            if momentum != 0:
                for p, buf in zip(params, buffers):
                    self.state[p]["momentum_buffer"] = buf
        return loss


def sgd(params, grads, momentum_buffers, *, lr, momentum, dampening, nesterov, weight_decay):
    r"""One SGD step over a list of parameters: the update of :class:`SGD` (its docstring
    has the formula), in place.

    Parameters
    ----------
    params : list of arrays
        The parameters' values, each updated in place.
    grads : list of arrays
        Their gradients (same shapes; not modified).
    momentum_buffers : list of (array or None)
        One entry per parameter, read when ``momentum != 0``: a buffer is updated in
        place, and a None entry is replaced in the list by a new buffer (the first
        gradient); the caller keeps the entries as its state.
    lr, momentum, dampening, nesterov, weight_decay
        As in :class:`SGD` (``lr`` may be any float: the hypergradient variants pass
        the rate they adapted).

    Returns
    -------
    list of arrays
        The update direction :math:`u` of each parameter (:math:`\theta \leftarrow
        \theta - \gamma u`): the gradient, the momentum buffer or its Nesterov form.
        It may be the gradient or the buffer itself, so copy it to keep it.

    Matches ``torch.optim.sgd.sgd`` (single-tensor implementation).
    """
    directions = []
    for i, (param, grad) in enumerate(zip(params, grads)):
        g = grad
        if weight_decay != 0:
            g = g + weight_decay * param
        if momentum != 0:
            buf = momentum_buffers[i]
            if buf is None:
                buf = momentum_buffers[i] = g.astype(param.dtype, copy=True)
            else:
                buf *= momentum
                buf += (1 - dampening) * g
            g = g + momentum * buf if nesterov else buf
        param -= lr * g
        directions.append(g)
    return directions
