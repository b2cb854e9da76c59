"""Cross-entropy loss on logits, with a fused, numerically stable log-softmax."""
from __future__ import annotations

import numpy as np

from .. import _checks, backend, kernels
from .module import Module, backward_before_forward

__all__ = ["CrossEntropyLoss"]


class CrossEntropyLoss(Module):
    r"""Mean cross-entropy between softmax(logits) and integer class targets.

    Parameters
    ----------
    label_smoothing : float in [0, 1]
        :math:`\varepsilon`: the target distribution becomes
        :math:`q_c = (1-\varepsilon)[c = t] + \varepsilon / C`.

    Shapes
    ------
    logits : ``(N, C)`` float;  targets : ``(N,)`` integers in ``[0, C)``;
    ``forward`` returns a Python float;  ``backward()`` returns ``(N, C)``.
    On a GPU the targets may be host or device arrays: host targets are checked on the
    host and then moved to the logits' device (``fit`` and ``evaluate`` pass them so);
    checking device targets reads one bool back.  The loss value is the one copy to the
    host that a forward pass makes.
    An empty batch (``N = 0``) gives NaN, the mean of nothing, and an empty
    gradient, as in torch.

    Forward (log-softmax fused and shifted by the row maximum, so ``exp``
    never overflows)
    -------
    .. math::
        m_n = \max_c z_{nc}, \qquad
        \log p_{nc} = z_{nc} - m_n - \log \sum_k e^{z_{nk} - m_n}

        L = -\frac1N \sum_n \sum_c q_{nc} \log p_{nc}
          = \frac1N \sum_n \Big[ -(1-\varepsilon) \log p_{n t_n}
            - \frac{\varepsilon}{C} \sum_c \log p_{nc} \Big]

    Backward
    --------
    .. math:: \frac{\partial L}{\partial z_{nc}} = \frac{p_{nc} - q_{nc}}{N}

    Matches ``torch.nn.CrossEntropyLoss(reduction='mean', label_smoothing=...)``
    for class-index targets.

    NOTE: only class-index targets and mean reduction; there is no ``weight``
    and no ``ignore_index`` (torch ignores targets equal to -100 by default;
    here every target must lie in ``[0, C)``, anything else is a ValueError).
    """

    def __init__(self, label_smoothing: float = 0.0):
        super().__init__()
        self.label_smoothing = _checks.real("CrossEntropyLoss", "label_smoothing",
                                            label_smoothing, 0, 1)
        self._probs = None    # softmax(logits) of the last forward
        self._targets = None

    def forward(self, logits, targets) -> float:
        r"""``L = mean_n [-(1-eps) log p[n, t_n] - (eps/C) sum_c log p[n, c]]`` with
        ``log p = log_softmax(z)`` (shifted by the row maximum); ``p`` is kept for backward."""
        _checks.float_array("CrossEntropyLoss", logits, "logits")
        if logits.ndim != 2 or logits.shape[1] < 1:
            raise ValueError(
                f"CrossEntropyLoss: expected logits of shape (N, C) with C >= 1, "
                f"got {tuple(logits.shape)}")
        n, c = logits.shape
        targets = self._check_targets(targets, n, c, logits)
        if n == 0:   # the mean over no samples is 0/0: NaN, as torch returns
            loss, probs = float("nan"), backend.xp(logits).empty((0, c), dtype=logits.dtype)
        else:        # the formula above, row by row (minidl.kernels.cross_entropy)
            loss, probs = kernels.cross_entropy(logits, targets, self.label_smoothing)
        self._probs, self._targets = probs, targets
        return loss

    def backward(self, dout: float = 1.0):
        r"""``d(dout * L)/dz = dout * (p - q) / N``, shape (N, C), with ``q`` the smoothed
        target distribution ``(1-eps)[c = t_n] + eps/C``; ``dout`` defaults to 1."""
        if self._probs is None:
            raise backward_before_forward("CrossEntropyLoss")
        if isinstance(dout, bool) or not (isinstance(dout, (int, float, np.number))
                                          or getattr(dout, "ndim", None) == 0):
            raise TypeError(f"CrossEntropyLoss.backward: expected a scalar dout, got {dout!r}")
        p, t = self._probs, self._targets
        n, c = p.shape
        if n == 0:   # an empty batch has an empty gradient (and no 1/N)
            return backend.xp(p).zeros((0, c), dtype=p.dtype)
        eps = self.label_smoothing
        grad = p - eps / c                                  # new array: p - eps/C everywhere ...
        grad[backend.xp(p).arange(n), t] -= 1 - eps         # ... and -(1-eps) more at the target
        grad *= float(dout) / n
        return grad

    @staticmethod
    def _check_targets(targets, n: int, c: int, logits):
        name = "CrossEntropyLoss"
        if not hasattr(targets, "dtype"):
            targets = np.asarray(targets)
        kind = targets.dtype.kind
        if kind == "f":
            t = backend.to_numpy(targets)
            if not np.isfinite(t).all():
                problem = "contains non-finite values (NaN or inf)"
            elif not (t == np.round(t)).all():
                problem = "contains non-integer values"
            else:
                problem = "holds whole numbers; convert it with .astype(np.int64)"
            raise ValueError(
                f"{name}: expected integer class indices, got a {targets.dtype} array that {problem}")
        if kind not in "iu":
            raise ValueError(f"{name}: expected integer class indices, got dtype {targets.dtype}")
        if tuple(targets.shape) != (n,):
            raise ValueError(
                f"{name}: expected targets of shape ({n},) to match logits {tuple(logits.shape)}, "
                f"got {tuple(targets.shape)}")
        out_of_range = (targets < 0) | (targets >= c)
        # on a device, one bool read back, and the labels only when one is wrong (a device
        # does not check indices: an out-of-range one would silently wrap around)
        if bool(out_of_range.any()):
            t = backend.to_numpy(targets)
            bad = np.flatnonzero((t < 0) | (t >= c))
            raise ValueError(
                f"{name}: expected class indices in [0, {c}) for C={c} classes, got "
                f"{t[bad[0]]} at position {bad[0]} ({bad.size} out of range)")
        return backend.asarray_like(targets, logits)

    def extra_repr(self) -> str:
        return f"label_smoothing={self.label_smoothing}" if self.label_smoothing else ""
