r"""DARTS' mixed operation: candidate operations weighted by a softmax over
architecture parameters (Liu, Simonyan and Yang, "DARTS: Differentiable Architecture
Search", ICLR 2019).

    from minidl import nn
    from minidl.nn.darts import MixedOp
    conv = MixedOp([nn.Conv2d(8, 16, k, padding=k // 2) for k in (3, 5, 7)])
    y = conv(x)                  # sum_k softmax(conv.alpha)_k * conv_k(x)
    dx = conv.backward(dy)       # fills the convolutions' grads AND conv.alpha.grad

A search replaces a discrete choice ("kernel 3, 5 or 7?") by a continuous one: every
candidate runs, and their outputs are mixed with weights :math:`w = \mathrm{softmax}
(\alpha)`.  The loss is then differentiable in :math:`\alpha`, which gradient descent
trains like any weight; at the end the candidate with the largest weight is the choice.
"""
from __future__ import annotations

import numpy as np

from .. import _checks, backend
from .module import Module, backward_before_forward
from .parameter import Parameter

__all__ = ["MixedOp", "softmax"]


def softmax(alpha):
    r""":math:`w_k = e^{\alpha_k - m} / \sum_j e^{\alpha_j - m}` with :math:`m = \max_j
    \alpha_j` (the shift changes nothing but keeps ``exp`` from overflowing)."""
    xp = backend.xp(alpha)
    e = xp.exp(alpha - alpha.max())
    return e / e.sum()


class MixedOp(Module):
    r"""A softmax-weighted sum of candidate operations on the same input.

    .. math::

        w = \mathrm{softmax}(\alpha), \qquad y = \sum_{k=1}^{K} w_k\, o_k(x)

    with :math:`K` candidate modules :math:`o_k` (their outputs must have one shape) and
    the architecture parameters :math:`\alpha \in \mathbb{R}^K` (``self.alpha``).

    Backward, with :math:`G = \partial L / \partial y`:

    .. math::

        \frac{\partial L}{\partial x} &= \sum_k w_k\, J_{o_k}(x)^\top G
            \qquad\text{(candidate } k\text{'s backward, given } w_k G\text{)} \\
        \frac{\partial L}{\partial \theta_k} &= \text{what } o_k
            \text{'s backward accumulates when given } w_k G \\
        g_k := \frac{\partial L}{\partial w_k} &= \langle G,\, o_k(x) \rangle
            \qquad\text{(sum over every element, batch included)} \\
        \frac{\partial L}{\partial \alpha_j}
            &= \sum_k g_k \frac{\partial w_k}{\partial \alpha_j}
             = \sum_k g_k\, w_k (\delta_{kj} - w_j)
             = w_j \Big(g_j - \sum_k w_k g_k\Big)

    (the softmax's Jacobian is :math:`\partial w_k / \partial \alpha_j = w_k(\delta_{kj}
    - w_j)`).  So :math:`\alpha_j` grows when candidate :math:`j`'s output lowers the
    loss more than the current mixture does.

    Parameters
    ----------
    ops : list of Module
        The candidates, registered as children ``"0"``, ``"1"``, ...; each keeps its
        own parameters.
    alpha : Parameter, optional
        Shape ``(K,)``.  Default: a new one of zeros (equal weights).  One Parameter may
        be given to several MixedOps, which then share the choice (the gradients of
        every use add up in ``alpha.grad``).

    Shapes: input as the candidates take it; output the candidates' (common) shape.
    The forward pass keeps every candidate's output (for :math:`g_k`).  ``.double()``
    converts :math:`\alpha` with the other parameters; the mixture is computed in the
    output's dtype.
    """

    def __init__(self, ops, alpha: Parameter | None = None):
        super().__init__()
        ops = list(ops)
        if not ops or not all(isinstance(op, Module) for op in ops):
            raise ValueError(f"MixedOp: expected a non-empty list of minidl Modules, got "
                             f"{[type(op).__name__ for op in ops]}")
        if len({id(op) for op in ops}) != len(ops):
            raise ValueError("MixedOp: the same module appears twice among the candidates; "
                             "minidl layers cache their forward input, give separate instances")
        for k, op in enumerate(ops):
            setattr(self, str(k), op)
        if alpha is None:
            alpha = Parameter(np.zeros(len(ops), dtype=np.float32))
        if not isinstance(alpha, Parameter) or tuple(alpha.shape) != (len(ops),):
            raise ValueError(f"MixedOp: expected alpha to be a Parameter of shape "
                             f"({len(ops)},), one per candidate, got "
                             f"{getattr(alpha, 'shape', type(alpha).__name__)}")
        self.alpha = alpha
        self._outs = None       # every candidate's output of the last forward
        self._w = None          # softmax(alpha) of the last forward

    @property
    def ops(self) -> list:
        """The candidate modules, in order."""
        return [m for name, m in self._modules.items()]

    def weights(self):
        r""":math:`\mathrm{softmax}(\alpha)`, the current mixing weights (a new array)."""
        return softmax(self.alpha.data)

    def forward(self, x):
        r""":math:`y = \sum_k w_k\, o_k(x)`, :math:`w = \mathrm{softmax}(\alpha)`; every
        :math:`o_k(x)` and :math:`w` are kept for backward."""
        _checks.float_array("MixedOp", x)
        outs = [op(x) for op in self.ops]
        shapes = {tuple(o.shape) for o in outs}
        if len(shapes) != 1:
            raise ValueError(f"MixedOp: the candidates' outputs differ in shape "
                             f"{[tuple(o.shape) for o in outs]}; they must be mixable")
        w = softmax(self.alpha.data).astype(outs[0].dtype)
        y = w[0] * outs[0]
        for wk, out in zip(w[1:], outs[1:]):
            y += wk * out
        self._outs, self._w = outs, w
        return y

    def backward(self, dout):
        r"""Accumulate :math:`\partial L/\partial\alpha_j = w_j (g_j - \sum_k w_k g_k)` with
        :math:`g_k = \langle G, o_k(x)\rangle`, run each candidate's backward on
        :math:`w_k G`, and return :math:`\sum_k w_k J_{o_k}^\top G` (None when
        ``needs_input_grad`` is False)."""
        if self._outs is None:
            raise backward_before_forward("MixedOp")
        _checks.dout("MixedOp", dout, self._outs[0].shape, self._outs[0].dtype)
        xp = backend.xp(dout)
        w = self._w
        g = xp.stack([(dout * out).sum() for out in self._outs]).astype(w.dtype)
        self.alpha.accumulate_grad((w * (g - (w * g).sum())).astype(self.alpha.dtype),
                                   owned=True)
        dx = None
        for wk, op in zip(w, self.ops):
            d = op.backward(wk * dout)
            if d is not None:
                dx = d if dx is None else dx + d
        return dx if self.needs_input_grad else None

    def _needs_input_grad_changed(self, value: bool) -> None:
        # backward returns the sum of the candidates' input gradients: they may skip theirs
        for op in self.ops:
            op.needs_input_grad = value

    def extra_repr(self) -> str:
        w = backend.to_numpy(self.weights())
        return "weights=[" + ", ".join(f"{v:.3f}" for v in w) + "]"
