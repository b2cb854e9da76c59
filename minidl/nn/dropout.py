"""Inverted dropout."""
from __future__ import annotations

import numpy as np

from .. import _checks, backend
from ..random import get_generator
from .module import Module, backward_before_forward

__all__ = ["Dropout"]


def _bernoulli_keep(shape, p: float) -> np.ndarray:
    """Booleans, True with probability ``1 - p``, from ``minidl.random``'s generator.

    Each element takes 32 random bits (half of one raw 64-bit draw of the generator's
    bit generator) and is kept when they, read as an integer ``u``, satisfy
    ``u >= round(p * 2**32)`` (capped at ``2**32 - 1``): P(keep) is ``1 - p`` to within
    ``2**-32``.  Raw bits cost half of ``Generator.random``'s 53-bit floats, which were
    most of Dropout's time in the lab MLP's training step.
    """
    n = int(np.prod(shape))
    raw = get_generator().bit_generator.random_raw((n + 1) // 2)
    bits = raw.view(np.uint32)[:n]
    return (bits >= np.uint32(min(round(p * 2**32), 2**32 - 1))).reshape(shape)


class Dropout(Module):
    r"""Inverted dropout: zero each element with probability ``p`` while training.

    In training mode a fresh mask :math:`m_i \sim \text{Bernoulli}(1-p)` is drawn
    from ``minidl.random.get_generator()`` on every forward call (32 random bits per
    element, see ``_bernoulli_keep``), and

    .. math::
        y = x \odot \frac{m}{1-p}, \qquad
        \frac{\partial L}{\partial x} = \frac{\partial L}{\partial y} \odot \frac{m}{1-p}

    so :math:`\mathbb{E}[y] = x` and nothing needs rescaling at test time.
    In eval mode (and for ``p = 0``) it is the identity: ``y = x`` and
    ``dL/dx = dL/dy``.  ``p = 1`` gives zeros (and zero gradient).

    Shapes: any ``(*)`` -> same.

    Matches ``torch.nn.Dropout`` (same distribution; the random stream is
    NumPy's, so masks differ from torch's for the same seed).  As in torch,
    the identity cases return the input object itself.
    """

    def __init__(self, p: float = 0.5, inplace: bool = False):
        super().__init__()
        p = _checks.probability("Dropout", "p", p)
        if inplace is not False:
            raise ValueError(
                f"Dropout: expected inplace=False, got {inplace!r}; minidl layers never "
                f"modify their input")
        self.p = float(p)
        self.inplace = False
        self._noise = None      # m / (1-p) of the last training forward; None: identity
        self._out_meta = None   # (shape, dtype) of the last output

    def forward(self, x):
        r"""Training: ``y = x * m / (1-p)`` with a fresh mask ``m ~ Bernoulli(1-p)``; the
        scaled mask is kept for backward.  Eval (or ``p = 0``): ``y = x``."""
        _checks.float_array("Dropout", x)
        self._out_meta = (tuple(x.shape), x.dtype)
        if not self.training or self.p == 0:
            self._noise = None
            return x
        if self.p == 1:
            noise = backend.xp(x).zeros(x.shape, dtype=x.dtype)
        else:
            keep = _bernoulli_keep(x.shape, self.p)                   # P(keep) = 1 - p
            noise = backend.asarray_like(keep, x).astype(x.dtype) / (1 - self.p)
        self._noise = noise
        return x * noise

    def backward(self, dout):
        r"""``dL/dx = dL/dy * m / (1-p)`` with the last forward's mask (``dL/dy`` when that
        forward was the identity)."""
        if self._out_meta is None:
            raise backward_before_forward("Dropout")
        _checks.dout("Dropout", dout, *self._out_meta)
        if self._noise is None:
            return dout
        return dout * self._noise

    def extra_repr(self) -> str:
        return f"p={self.p}, inplace={self.inplace}"
