r"""Embedding: a lookup table of learned vectors, one row per index."""
from __future__ import annotations

import numpy as np

from .. import _checks, backend
from . import init
from .module import Module, backward_before_forward
from .parameter import Parameter

__all__ = ["Embedding"]


class Embedding(Module):
    r"""A table ``weight`` of ``num_embeddings`` vectors; the input picks rows of it.

    Parameters
    ----------
    num_embeddings : int
        Rows of the table (the valid indices are ``0 .. num_embeddings - 1``).
    embedding_dim : int
        Length of each vector.
    padding_idx : int or None
        A row that stays what it is: initialised to zeros and never given a gradient
        (e.g. the filler index of padded sequences).  Negative values count from the
        end, as in torch.

    Shapes
    ------
    input : ``(*)`` integer indices, any shape (an int array, or anything NumPy turns
    into one);  output : ``(*, embedding_dim)``;  weight : ``(num_embeddings, embedding_dim)``

    Forward
    -------
    .. math:: y_{\ldots} = W_{i_{\ldots}}

    Backward
    --------
    Every row receives the sum of the output gradients of the positions that picked it
    (an index that occurs twice gets both); the padding row gets none:

    .. math::
        \frac{\partial L}{\partial W_r} = \sum_{n:\, i_n = r} \frac{\partial L}{\partial y_n}
        \quad (r \ne \text{padding\_idx}), \qquad
        \frac{\partial L}{\partial W_{\text{padding\_idx}}} = 0

    The sum is one ``np.add.at`` over the flattened positions.  The input is integers,
    so ``backward`` returns None (torch gives no gradient for it either).

    Initialisation: ``weight ~ N(0, 1)`` (``init.normal_``), the padding row zeros.

    Matches ``torch.nn.Embedding`` (arguments, defaults, init, ``state_dict`` key
    ``weight``).  NOTE: ``max_norm``, ``scale_grad_by_freq`` and ``sparse`` are not
    supported (only their defaults None, False, False); an index outside the table raises
    IndexError, as torch's "index out of range" does.
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx=None,
                 max_norm=None, norm_type: float = 2.0, scale_grad_by_freq: bool = False,
                 sparse: bool = False):
        super().__init__()
        self.num_embeddings = _checks.non_negative_int("Embedding", "num_embeddings",
                                                       num_embeddings)
        self.embedding_dim = _checks.non_negative_int("Embedding", "embedding_dim", embedding_dim)
        if padding_idx is not None:
            n = self.num_embeddings
            padding_idx = _checks.integer(
                "Embedding", "padding_idx", padding_idx, -n,
                what=f"an int in [-{n}, {n}) (num_embeddings={n}) or None")
            if padding_idx >= n:
                raise ValueError(f"Embedding: expected padding_idx to be an int in [-{n}, {n}) "
                                 f"(num_embeddings={n}) or None, got {padding_idx!r}")
            padding_idx %= n
        self.padding_idx = padding_idx
        for name, value, default in (("max_norm", max_norm, None),
                                     ("scale_grad_by_freq", scale_grad_by_freq, False),
                                     ("sparse", sparse, False)):
            if value is not default:
                raise ValueError(f"Embedding: {name} is not supported; expected {default}, "
                                 f"got {value!r}")
        self.norm_type = norm_type
        self.weight = Parameter(np.empty((self.num_embeddings, self.embedding_dim),
                                         np.float32))
        self._indices = None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """torch's default: ``weight ~ N(0, 1)``, the padding row zeros."""
        init.normal_(self.weight)
        if self.padding_idx is not None:
            self.weight.data[self.padding_idx] = 0

    def _check_indices(self, indices):
        xp = backend.xp(self.weight.data)
        if not (hasattr(indices, "dtype") and hasattr(indices, "shape")):
            indices = np.asarray(indices)
        if indices.dtype.kind not in "iu":
            raise TypeError(f"Embedding: expected integer indices, got dtype {indices.dtype}")
        indices = xp.asarray(indices)
        if indices.size and (int(indices.min()) < 0 or int(indices.max()) >= self.num_embeddings):
            bad = int(indices.min()) if int(indices.min()) < 0 else int(indices.max())
            raise IndexError(f"Embedding: index {bad} is out of range: expected indices in "
                             f"[0, {self.num_embeddings}) (num_embeddings="
                             f"{self.num_embeddings})")
        return indices

    def forward(self, indices):
        """The rows ``weight[indices]``: ``(*)`` -> ``(*, embedding_dim)`` (a new array)."""
        indices = self._check_indices(indices)
        self._indices = indices
        return self.weight.data[indices]

    def backward(self, dout):
        r"""Accumulate ``dL/dW`` (the summed gradients of each row's positions, none for the
        padding row) into ``weight.grad``; return None (the input is integers)."""
        if self._indices is None:
            raise backward_before_forward("Embedding")
        indices = self._indices
        _checks.dout("Embedding", dout, indices.shape + (self.embedding_dim,),
                   self.weight.data.dtype)
        xp = backend.xp(dout)
        flat = indices.reshape(-1)
        rows = dout.reshape(-1, self.embedding_dim)
        if self.padding_idx is not None:
            keep = flat != self.padding_idx
            flat, rows = flat[keep], rows[keep]
        grad = xp.zeros_like(self.weight.data)
        xp.add.at(grad, flat, rows)
        self.weight.accumulate_grad(grad, owned=True)
        return None

    def _convert_extra(self, fn) -> None:
        self._indices = None

    def extra_repr(self) -> str:
        s = f"{self.num_embeddings}, {self.embedding_dim}"
        if self.padding_idx is not None:
            s += f", padding_idx={self.padding_idx}"
        return s
