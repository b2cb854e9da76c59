"""Adam (weight decay as an L2 term in the gradient) and AdamW (decoupled weight decay)."""
from __future__ import annotations

from .. import _checks, backend, kernels
from .optimizer import Optimizer


def check_moment_settings(owner: str, group) -> None:
    """Check ``eps``, ``betas`` (a pair in [0, 1)) and ``weight_decay`` of an Adam-style
    ``group`` (Adam, AdamW, AdamHD share them); ``betas`` becomes a tuple."""
    _checks.non_negative(owner, "eps", group["eps"])
    betas = group["betas"]
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        error = ValueError if isinstance(betas, (tuple, list)) else TypeError
        raise error(f"{owner}: expected betas to be a pair (beta1, beta2), got {betas!r}")
    group["betas"] = tuple(betas)
    for i in range(2):
        _checks.real(owner, f"betas[{i}]", betas[i], 0, 1, high_open=True)
    _checks.non_negative(owner, "weight_decay", group["weight_decay"])


class Adam(Optimizer):
    r"""Adam: steps scaled by running estimates of the gradient's first two moments.

    Parameters
    ----------
    params : iterable of Parameter or of dict
        Parameters to optimize, or parameter groups.
    lr : float, default 1e-3
        Learning rate :math:`\gamma`.
    betas : (float, float), default (0.9, 0.999)
        Decay rates :math:`(\beta_1, \beta_2)` of the moment estimates, each in [0, 1).
    eps : float, default 1e-8
        :math:`\epsilon`, added to the denominator (outside the square root).
    weight_decay : float, default 0
        L2 penalty :math:`\lambda`, added to the gradient (coupled: it passes
        through the moment estimates; see :class:`AdamW` for the decoupled form).
    amsgrad : bool, default False
        Divide by the running maximum of :math:`\hat v` (AMSGrad).

    Notes
    -----
    For a parameter :math:`\theta` with gradient :math:`g_t` at step
    :math:`t = 1, 2, \ldots`, starting from :math:`m_0 = v_0 = v^{max}_0 = 0`:

    .. math::

        \boxed{
        \begin{aligned}
        g_t &\leftarrow g_t + \lambda\,\theta_{t-1} \\
        m_t &\leftarrow \beta_1 m_{t-1} + (1-\beta_1)\, g_t \\
        v_t &\leftarrow \beta_2 v_{t-1} + (1-\beta_2)\, g_t^2 \\
        v^{max}_t &\leftarrow \max(v^{max}_{t-1}, v_t)
            \quad\text{and use } v^{max}_t \text{ for } v_t \text{ below, if amsgrad} \\
        \theta_t &\leftarrow \theta_{t-1} - \frac{\gamma}{1-\beta_1^t}\,
            \frac{m_t}{\sqrt{v_t}\,/\sqrt{1-\beta_2^t} + \epsilon}
        \end{aligned}}

    The bias corrections are computed as torch computes them: the scalars
    :math:`\gamma/(1-\beta_1^t)` and :math:`(1-\beta_2^t)^{1/2}` first, then
    ``param += -step_size * m / (sqrt(v) / bc2_sqrt + eps)``.  State per
    parameter: ``"step"`` (int), ``"exp_avg"`` (m), ``"exp_avg_sq"`` (v) and,
    with amsgrad, ``"max_exp_avg_sq"``; arrays have the parameter's shape.

    Matches ``torch.optim.Adam`` (default, single-tensor implementation).

    NOTE: in float32, a moment (``exp_avg`` or ``exp_avg_sq`` entry) whose magnitude
    falls below the smallest normal float32 (1.18e-38) is stored as zero, as a CPU in
    flush-to-zero mode would do: subnormal numbers are processed far slower by some
    CPUs and slowed long runs by up to 30%.  Only such subnormal values differ from
    torch; float64 is never flushed.
    """

    _decoupled_weight_decay = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
                 amsgrad=False):
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                        amsgrad=amsgrad)
        super().__init__(params, defaults)

    def _check_hyperparameters(self, group):
        _checks.non_negative(self._name, "lr", group["lr"])
        check_moment_settings(self._name, group)
        _checks.boolean(self._name, "amsgrad", group["amsgrad"])

    def step(self, closure=None):
        """Update every parameter that has a gradient (in place); return ``closure()`` if given.

        The arithmetic is :func:`adam`'s (``minidl.kernels.adam_update``: one fused Numba
        loop for NumPy arrays; its NumPy twin spells out the formula above); this class
        keeps the moments and step counts.
        """
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            amsgrad = group["amsgrad"]
            params = list(self._params_with_grad(group))
            for p in params:
                state = self.state[p]
                if not state:
                    xp = backend.xp(p.data)
                    state["step"] = 0
                    state["exp_avg"] = xp.zeros_like(p.data)
                    state["exp_avg_sq"] = xp.zeros_like(p.data)
                    if amsgrad:
                        state["max_exp_avg_sq"] = xp.zeros_like(p.data)
                state["step"] += 1
            states = [self.state[p] for p in params]
            beta1, beta2 = (float(b) for b in group["betas"])
            adam([p.data for p in params], [p.grad for p in params],
                 [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states],
                 [s.get("max_exp_avg_sq") for s in states], [s["step"] for s in states],
                 lr=float(group["lr"]), beta1=beta1, beta2=beta2, eps=float(group["eps"]),
                 weight_decay=float(group["weight_decay"]), amsgrad=amsgrad,
                 decoupled_weight_decay=self._decoupled_weight_decay)
        return loss


def adam(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps, *, lr, beta1, beta2,
         eps, weight_decay, amsgrad, decoupled_weight_decay=False):
    """One Adam (or, with ``decoupled_weight_decay``, AdamW) step over a list of parameters:
    the update of :class:`Adam` / :class:`AdamW` (their docstrings have the formulas), in
    place.

    ``params`` (updated in place), ``grads`` (not modified), ``exp_avgs`` (m),
    ``exp_avg_sqs`` (v) and, with ``amsgrad``, ``max_exp_avg_sqs`` (updated in place;
    else unused: None entries) are lists of arrays, one entry per parameter, of the
    parameter's shape; ``steps`` the step number ``t`` of each (already counted: 1 at the
    first update).  Each parameter's arithmetic is ``minidl.kernels.adam_update``; its
    scalars (``adam_coefficients``) are made once per step number and dtype.

    Matches ``torch.optim.adam.adam`` (single-tensor implementation).
    """
    coefficients = {}          # (step, dtype) -> the update's scalars, made once
    for i, param in enumerate(params):
        t = steps[i]
        key = (t, param.dtype)
        c = coefficients.get(key)
        if c is None:
            c = coefficients[key] = kernels.adam_coefficients(
                param.dtype, lr=lr, beta1=beta1, beta2=beta2, eps=eps,
                weight_decay=weight_decay, decoupled=decoupled_weight_decay,
                step_size=lr / (1 - beta1 ** t), bias_correction2_sqrt=(1 - beta2 ** t) ** 0.5)
        kernels.adam_update(param, grads[i], exp_avgs[i], exp_avg_sqs[i],
                            max_exp_avg_sqs[i] if amsgrad else None, c)


class AdamW(Adam):
    r"""AdamW: Adam with weight decay applied to the parameter, not to the gradient.

    Parameters
    ----------
    params : iterable of Parameter or of dict
        Parameters to optimize, or parameter groups.
    lr : float, default 1e-3
        Learning rate :math:`\gamma`.
    betas : (float, float), default (0.9, 0.999)
        Decay rates :math:`(\beta_1, \beta_2)` of the moment estimates, each in [0, 1).
    eps : float, default 1e-8
        :math:`\epsilon`, added to the denominator (outside the square root).
    weight_decay : float, default 1e-2
        Decoupled decay :math:`\lambda`: the parameter shrinks by
        :math:`\gamma\lambda\theta` each step, independently of the moments.
    amsgrad : bool, default False
        Divide by the running maximum of :math:`\hat v` (AMSGrad).

    Notes
    -----
    For a parameter :math:`\theta` with gradient :math:`g_t` at step
    :math:`t = 1, 2, \ldots`, starting from :math:`m_0 = v_0 = v^{max}_0 = 0`:

    .. math::

        \boxed{
        \begin{aligned}
        \theta_{t-1} &\leftarrow \theta_{t-1}\,(1 - \gamma\lambda) \\
        m_t &\leftarrow \beta_1 m_{t-1} + (1-\beta_1)\, g_t \\
        v_t &\leftarrow \beta_2 v_{t-1} + (1-\beta_2)\, g_t^2 \\
        v^{max}_t &\leftarrow \max(v^{max}_{t-1}, v_t)
            \quad\text{and use } v^{max}_t \text{ for } v_t \text{ below, if amsgrad} \\
        \theta_t &\leftarrow \theta_{t-1} - \frac{\gamma}{1-\beta_1^t}\,
            \frac{m_t}{\sqrt{v_t}\,/\sqrt{1-\beta_2^t} + \epsilon}
        \end{aligned}}

    The update is :class:`Adam`'s ``step`` with the decay moved out of the
    gradient; state is the same as Adam's.

    Matches ``torch.optim.AdamW`` (default, single-tensor implementation).

    NOTE (as :class:`Adam`): in float32, a moment (``exp_avg`` or ``exp_avg_sq``
    entry) whose magnitude falls below the smallest normal float32 (1.18e-38) is
    stored as zero, as a CPU in flush-to-zero mode would do: subnormal numbers are
    processed far slower by some CPUs and slowed long runs by up to 30%.  Only such
    subnormal values differ from torch; float64 is never flushed.
    """

    _decoupled_weight_decay = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
                 amsgrad=False):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                         amsgrad=amsgrad)
