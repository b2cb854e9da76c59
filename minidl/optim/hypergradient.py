r"""Hypergradient descent: SGD and Adam that adapt their own learning rate every step.

Baydin, Cornish, Martínez Rubio, Schmidt and Wood, "Online Learning Rate Adaptation
with Hypergradient Descent", ICLR 2018.  Argument names, the order of the updates and
the bias-correction factors follow the authors' PyTorch reference implementation
(``SGDHD``, ``AdamHD`` in github.com/gbaydin/hypergradient-descent).

The idea in one line.  Step :math:`t-1` moved the parameters by
:math:`\theta_{t-1} = \theta_{t-2} - \alpha\, u_{t-1}`, where :math:`u_{t-1}` is the
optimizer's update direction (the gradient for plain SGD, the momentum buffer, Adam's
normalised first moment, ...).  The loss at the new point depends on the learning rate
:math:`\alpha` through :math:`\theta_{t-1}`, so by the chain rule

.. math::

    \frac{\partial f(\theta_{t-1})}{\partial \alpha}
        = \nabla f(\theta_{t-1}) \cdot \frac{\partial \theta_{t-1}}{\partial \alpha}
        = -\, g_t \cdot u_{t-1},

with :math:`g_t = \nabla f(\theta_{t-1})` the gradient the optimizer receives at step
:math:`t`.  One gradient-descent step on :math:`\alpha` with its own step size
:math:`\beta` (``hypergrad_lr``) is :math:`\alpha_t = \alpha_{t-1} + \beta\, g_t \cdot
u_{t-1}`: the rate grows while successive steps point the same way and shrinks when
they turn back (overshoot).  It costs one dot product and one stored direction; the
dependence of :math:`u_{t-1}` itself on :math:`\alpha` (through earlier steps) is
ignored, as in the paper.

The adapted rate is the parameter group's ``"lr"``, rewritten every step, so a
learning-rate scheduler, ``fit``'s history and ``state_dict()`` all see it.
"""
from __future__ import annotations

import math

import numpy as np

from .. import _checks, backend
from .adam import check_moment_settings
from .optimizer import Optimizer
from .sgd import check_sgd_settings, sgd


class _HypergradientOptimizer(Optimizer):
    """Checks shared by the two optimizers: ``lr`` and ``hypergrad_lr``.

    The rate a user gives (constructor, ``add_param_group``) must be >= 0.  The rate
    the hypergradient produces may go below zero (the reference does not clip it; the
    next steps bring it back), so a state dict saved at such a moment still loads:
    ``_check_hyperparameters``, which ``load_state_dict`` also runs, only asks for a
    finite number.
    """

    def _check_learning_rates(self, group):
        _checks.real(self._name, "lr", group["lr"], finite=True)
        _checks.real(self._name, "hypergrad_lr", group["hypergrad_lr"], 0, finite=True)

    def add_param_group(self, param_group: dict) -> None:
        if isinstance(param_group, dict):
            _checks.non_negative(self._name, "lr", param_group.get("lr", self.defaults["lr"]))
        super().add_param_group(param_group)


class SGDHD(_HypergradientOptimizer):
    r"""SGD-HD: stochastic gradient descent whose learning rate follows its hypergradient.

    Parameters
    ----------
    params : iterable of Parameter
        Parameters to optimize, in **one** parameter group (the rate is adapted from
        one dot product over all of them; a second group raises ValueError, as in the
        reference).
    lr : float, default 1e-3
        Initial learning rate :math:`\alpha_0` (>= 0; 0 works: the hypergradient
        raises it).  The current rate is ``param_groups[0]["lr"]``.
    momentum : float, default 0
        Momentum factor :math:`\mu`.
    dampening : float, default 0
        Dampening :math:`\tau` of the gradient added to the momentum buffer.
    weight_decay : float, default 0
        L2 penalty :math:`\lambda`, added to the gradient.
    nesterov : bool, default False
        Use Nesterov momentum (needs ``momentum > 0`` and ``dampening == 0``).
    hypergrad_lr : float, default 1e-6
        :math:`\beta`, the learning rate of the learning rate (>= 0; 0 gives
        :class:`SGD`).  The paper uses 1e-3 for SGD-HD and SGDN-HD.

    Notes
    -----
    Let :math:`g_t` be the concatenation of every parameter's gradient, flattened,
    and :math:`\theta` of every parameter.  At step :math:`t = 1, 2, \ldots`, starting
    from :math:`u_0 = 0`:

    .. math::

        \boxed{
        \begin{aligned}
        g_t &\leftarrow g_t + \lambda\,\theta_{t-1} \\
        h_t &\leftarrow g_t \cdot u_{t-1}
            \qquad (= -\,\partial f(\theta_{t-1}) / \partial \alpha) \\
        \alpha_t &\leftarrow \alpha_{t-1} + \beta\, h_t \\
        b_t &\leftarrow \begin{cases} g_t & t = 1 \\
                                      \mu\, b_{t-1} + (1-\tau)\, g_t & t > 1 \end{cases}
            &&\text{(when } \mu \ne 0\text{)} \\
        u_t &\leftarrow \begin{cases} g_t + \mu\, b_t & \text{nesterov} \\
                                      b_t & \text{momentum} \\
                                      g_t & \mu = 0 \end{cases} \\
        \theta_t &\leftarrow \theta_{t-1} - \alpha_t\, u_t
        \end{aligned}}

    The rate is updated first, with the *new* gradient and the *previous* update
    direction :math:`u_{t-1}` (the momentum buffer, or its Nesterov form, when
    :math:`\mu \ne 0`), then the step is :class:`SGD`'s with the new rate.  With
    ``hypergrad_lr=0`` the trajectory is :class:`SGD`'s.

    State per parameter (arrays of the parameter's shape): ``"grad_prev"``, the
    parameter's part of :math:`u_{t-1}` (the reference's name), and
    ``"momentum_buffer"`` when :math:`\mu \ne 0`.  The dot product :math:`h_t` is
    taken over the concatenated vectors, as in the reference.

    Matches the reference ``SGDHD`` (hypergradient-descent repository).

    NOTE: the reference keeps its state as flat vectors under the first parameter;
    here each parameter keeps its own slice, so ``state_dict()`` has minidl's layout
    (arrays of the parameter's shape).  As in the reference, a parameter whose
    ``grad`` is None counts as a zero gradient (weight decay and momentum still move
    it), unlike :class:`SGD`, which skips it.  Unlike the reference, ``param.grad``
    is never modified (the reference adds the weight decay to it in place).
    """

    def __init__(self, params, lr=1e-3, momentum=0, dampening=0, weight_decay=0,
                 nesterov=False, hypergrad_lr=1e-6):
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening,
                        weight_decay=weight_decay, nesterov=nesterov,
                        hypergrad_lr=hypergrad_lr)
        super().__init__(params, defaults)

    def _check_hyperparameters(self, group):
        self._check_learning_rates(group)
        check_sgd_settings(self._name, group)

    def add_param_group(self, param_group: dict) -> None:
        if self.param_groups:
            raise ValueError(
                f"{self._name}: supports a single parameter group (its learning rate is "
                f"adapted from one dot product over all parameters), got a second one")
        super().add_param_group(param_group)

    def step(self, closure=None):
        """Adapt ``lr``, then update every parameter (in place); return ``closure()`` if given."""
        loss = closure() if closure is not None else None
        group = self.param_groups[0]
        momentum = float(group["momentum"])
        dampening = float(group["dampening"])
        weight_decay = float(group["weight_decay"])
        list(self._params_with_grad(group))       # shape check before anything changes
        params = group["params"]
        xp = backend.xp(params[0].data)

        grads = []
        for p in params:
            g = xp.zeros_like(p.data) if p.grad is None else p.grad
            if weight_decay != 0:
                g = g + weight_decay * p.data
            grads.append(g)
            if not self.state[p]:
                self.state[p]["grad_prev"] = xp.zeros_like(p.data)

        # the hypergradient: one dot product over all parameters, as in the reference
        flat_grad = xp.concatenate([g.ravel() for g in grads])
        flat_prev = xp.concatenate([self.state[p]["grad_prev"].ravel() for p in params])
        h = float(xp.dot(flat_grad, flat_prev))
        group["lr"] = float(group["lr"]) + float(group["hypergrad_lr"]) * h
        lr = group["lr"]

        # the step is SGD's with the adapted rate (the gradients above hold the weight decay)
        buffers = [self.state[p].get("momentum_buffer") for p in params]
        directions = sgd([p.data for p in params], grads, buffers, lr=lr, momentum=momentum,
                         dampening=dampening, nesterov=group["nesterov"], weight_decay=0)
        for p, buf, u in zip(params, buffers, directions):
            state = self.state[p]
            if momentum != 0:
                state["momentum_buffer"] = buf
            state["grad_prev"][...] = u
        return loss


class AdamHD(_HypergradientOptimizer):
    r"""Adam-HD: Adam whose learning rate follows its hypergradient.

    Parameters
    ----------
    params : iterable of Parameter or of dict
        Parameters to optimize, or parameter groups (each group adapts its own rate).
    lr : float, default 1e-3
        Initial learning rate :math:`\alpha_0` (>= 0).  The current rate is the
        group's ``"lr"``.
    betas : (float, float), default (0.9, 0.999)
        Decay rates :math:`(\beta_1, \beta_2)` of the moment estimates, each in [0, 1).
    eps : float, default 1e-8
        :math:`\epsilon`, added to :math:`\sqrt{v_t}` (see the NOTE).
    weight_decay : float, default 0
        L2 penalty :math:`\lambda`, added to the gradient.
    hypergrad_lr : float, default 1e-8
        :math:`\beta`, the learning rate of the learning rate (>= 0).  The paper uses
        1e-7 for its logistic-regression and MLP runs, 1e-8 for VGG.

    Notes
    -----
    For a parameter :math:`\theta` with gradient :math:`g_t` at step
    :math:`t = 1, 2, \ldots`, starting from :math:`m_0 = v_0 = 0`, with the update
    direction of step :math:`t`

    .. math::

        u_t = \frac{\sqrt{1-\beta_2^t}}{1-\beta_1^t}\,
              \frac{m_t}{\sqrt{v_t} + \epsilon}, \qquad
        \theta_t = \theta_{t-1} - \alpha_t\, u_t ,

    the step is

    .. math::

        \boxed{
        \begin{aligned}
        g_t &\leftarrow g_t + \lambda\,\theta_{t-1} \\
        h_t &\leftarrow g_t \cdot u_{t-1}
            = \frac{\sqrt{1-\beta_2^{t-1}}}{1-\beta_1^{t-1}}\;
              g_t \cdot \frac{m_{t-1}}{\sqrt{v_{t-1}} + \epsilon}
            &&\text{(} t > 1\text{)} \\
        \alpha_t &\leftarrow \alpha_{t-1} + \beta\, h_t
            &&\text{(} t > 1\text{)} \\
        m_t &\leftarrow \beta_1 m_{t-1} + (1-\beta_1)\, g_t \\
        v_t &\leftarrow \beta_2 v_{t-1} + (1-\beta_2)\, g_t^2 \\
        \theta_t &\leftarrow \theta_{t-1} - \alpha_t\,
            \frac{\sqrt{1-\beta_2^t}}{1-\beta_1^t}\, \frac{m_t}{\sqrt{v_t} + \epsilon}
        \end{aligned}}

    As in the reference, the loop runs over the parameters of a group one after
    the other and each parameter's :math:`h_t` updates the group's rate before that
    parameter moves: with a single parameter tensor this is the paper's single dot
    product; with several, later parameters step with the rate already changed by
    the earlier ones' terms (the rates after the whole step are the same either
    way).  Parameters whose ``grad`` is None are skipped.  State per parameter:
    ``"step"`` (int), ``"exp_avg"`` (m), ``"exp_avg_sq"`` (v), of the parameter's
    shape.

    Matches the reference ``AdamHD`` (hypergradient-descent repository).

    NOTE: :math:`\epsilon` is added to :math:`\sqrt{v_t}` *before* the bias
    correction, as in the reference (and the Adam paper's efficient form), whereas
    :class:`Adam` (``torch.optim.Adam``) adds it to
    :math:`\sqrt{v_t}/\sqrt{1-\beta_2^t}`.  So with ``hypergrad_lr=0`` AdamHD is
    Adam with :math:`\epsilon` replaced by :math:`\epsilon\,/\sqrt{1-\beta_2^t}`
    (the same where :math:`\epsilon` is negligible against :math:`\sqrt{v_t}`).
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
                 hypergrad_lr=1e-8):
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                        hypergrad_lr=hypergrad_lr)
        super().__init__(params, defaults)

    def _check_hyperparameters(self, group):
        self._check_learning_rates(group)
        check_moment_settings(self._name, group)

    def step(self, closure=None):
        """Adapt ``lr`` and update every parameter that has a gradient (in place);
        return ``closure()`` if given.  The arithmetic is :func:`adam_hd`'s."""
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            params = list(self._params_with_grad(group))
            for p in params:
                state = self.state[p]
                if not state:
                    xp = backend.xp(p.data)
                    state["step"] = 0
                    state["exp_avg"] = xp.zeros_like(p.data)
                    state["exp_avg_sq"] = xp.zeros_like(p.data)
                state["step"] += 1
            states = [self.state[p] for p in params]
            beta1, beta2 = (float(b) for b in group["betas"])
            lr = adam_hd([p.data for p in params], [p.grad for p in params],
                         [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states],
                         [s["step"] for s in states], lr=float(group["lr"]), beta1=beta1,
                         beta2=beta2, eps=float(group["eps"]),
                         weight_decay=float(group["weight_decay"]),
                         hypergrad_lr=float(group["hypergrad_lr"]))
            if lr is not None:
                group["lr"] = lr
        return loss


def adam_hd(params, grads, exp_avgs, exp_avg_sqs, steps, *, lr, beta1, beta2, eps,
            weight_decay, hypergrad_lr):
    r"""One Adam-HD step over a parameter group: the update of :class:`AdamHD` (its
    docstring has the formula), in place; returns the adapted rate (a float), or None
    when no parameter had a previous step to adapt it from.

    ``params`` (updated in place), ``grads`` (not modified), ``exp_avgs`` (m) and
    ``exp_avg_sqs`` (v) (updated in place) are lists of arrays, one entry per parameter;
    ``steps`` the step number ``t`` of each (already counted: 1 at the first update).
    Not :func:`minidl.optim.adam.adam`: the reference adds :math:`\epsilon` before the
    bias correction and updates the moments as ``m = beta1*m + (1 - beta1)*g``.

    Matches the reference ``AdamHD.step`` (hypergradient-descent repository).
    """
    # The rate changes parameter by parameter (see AdamHD's docstring).  It is kept where
    # the dot products are, a float64 0-d array of the parameters' module, while the step
    # runs, and read back once at its end: on a GPU one copy to the host per step, not one
    # per parameter.  The same float64 operations in the same order as with Python floats.
    adapted = False
    for param, grad, exp_avg, exp_avg_sq, t in zip(params, grads, exp_avgs, exp_avg_sqs,
                                                   steps):
        xp = backend.xp(param)
        g = grad
        if weight_decay != 0:
            g = g + weight_decay * param

        if t > 1:
            prev_bias_correction1 = 1 - beta1 ** (t - 1)
            prev_bias_correction2 = 1 - beta2 ** (t - 1)
            prev_direction = exp_avg / (xp.sqrt(exp_avg_sq) + eps)
            dot = xp.dot(g.ravel(), prev_direction.ravel()).astype(np.float64)
            h = dot * math.sqrt(prev_bias_correction2) / prev_bias_correction1
            lr, adapted = lr + hypergrad_lr * h, True

        exp_avg *= beta1
        exp_avg += (1 - beta1) * g
        exp_avg_sq *= beta2
        exp_avg_sq += (1 - beta2) * (g * g)
        denom = xp.sqrt(exp_avg_sq) + eps
        bias_correction1 = 1 - beta1 ** t
        bias_correction2 = 1 - beta2 ** t
        step_size = lr * math.sqrt(bias_correction2) / bias_correction1
        if type(step_size) is not float:        # an array scalar: the parameter's dtype,
            step_size = step_size.astype(param.dtype)   # as a Python float would be
        param -= step_size * (exp_avg / denom)
    return float(lr) if adapted else None
