r"""Glue for sequence models in a ``Sequential``: images as sequences, and the recurrent
layers' outputs as plain arrays.

A recurrent layer returns ``(output, state)`` and its ``backward`` takes two gradients,
so it cannot sit in a ``Sequential`` by itself.  Two wrappers make it a one-array layer:

* ``SequenceOutput(rnn)``: ``x -> output`` (every step), to stack recurrent layers of
  different widths, with ``Dropout`` between them if wanted;
* ``LastHidden(rnn)``: ``x -> the last layer's final hidden state`` (both directions
  side by side), the summary a classifier head reads.

``ImageToSequence(T)`` reads an image as ``T`` steps.  The lab's Fashion-MNIST
classifier as a sequence model (each step one row of 28 pixels)::

    model = nn.Sequential(
        nn.ImageToSequence(28),                                   # (N, 1, 28, 28) -> (N, 28, 28)
        nn.LastHidden(nn.LSTM(28, 128, batch_first=True)),       # -> (N, 128)
        nn.Linear(128, 10),
    )

None of these exists in torch, where the same is written in a model's ``forward``
(``x.view(N, T, -1)``, ``out, (h_n, c_n) = lstm(x)``, ``fc(h_n[-1])``).
"""
from __future__ import annotations

import math

from .. import _checks, backend
from .module import Module, backward_before_forward
from .rnn import _RNNBase

__all__ = ["ImageToSequence", "SequenceOutput", "LastHidden"]


class ImageToSequence(Module):
    r"""Read each sample as a sequence of ``seq_len`` equal chunks: ``(N, *) -> (N, T, F)``.

    ``F = prod(*) / T``; the chunks are consecutive in C order, so an image
    ``(N, 1, 28, 28)`` with ``T = 28`` gives one row per step, ``T = 14`` two rows,
    ``T = 7`` four rows (``F = 784 / T``).  The output is batch-first: the
    recurrent layer after it needs ``batch_first=True``.

    Forward: ``y = x.reshape(N, T, F)``; backward: ``dL/dx = (dL/dy).reshape(x.shape)``.
    """

    def __init__(self, seq_len: int):
        super().__init__()
        self.seq_len = _checks.positive_int("ImageToSequence", "seq_len", seq_len)
        self._in_meta = None

    def forward(self, x):
        _checks.float_array("ImageToSequence", x)
        size = math.prod(x.shape[1:]) if x.ndim >= 2 else 0
        if x.ndim < 2 or size % self.seq_len:
            raise ValueError(
                f"ImageToSequence: expected an input (N, ...) whose features per sample "
                f"divide into seq_len={self.seq_len} steps, got shape {tuple(x.shape)}")
        self._in_meta = (tuple(x.shape), x.dtype)
        return x.reshape(x.shape[0], self.seq_len, size // self.seq_len)

    def backward(self, dout):
        if self._in_meta is None:
            raise backward_before_forward("ImageToSequence")
        shape, dtype = self._in_meta
        size = math.prod(shape[1:])
        _checks.dout("ImageToSequence", dout, (shape[0], self.seq_len, size // self.seq_len), dtype)
        return dout.reshape(shape)

    def extra_repr(self) -> str:
        return f"seq_len={self.seq_len}"


class _Wrapper(Module):
    def __init__(self, rnn):
        super().__init__()
        if not isinstance(rnn, _RNNBase):
            raise ValueError(f"{type(self).__name__}: expected an nn.RNN, nn.LSTM or nn.GRU, "
                             f"got {type(rnn).__name__}")
        self.rnn = rnn

    def _needs_input_grad_changed(self, value: bool) -> None:
        # backward returns the recurrent layer's input gradient: let it skip its last product
        self.rnn.needs_input_grad = value


class SequenceOutput(_Wrapper):
    """``x -> rnn(x)[0]``: the recurrent layer's output at every step (the state dropped).

    Backward: ``rnn.backward(dL/doutput)``.  Shapes as ``rnn`` (e.g. ``(N, T, D*H)``
    with ``batch_first=True``).
    """

    def forward(self, x):
        return self.rnn(x)[0]

    def backward(self, dout):
        return self.rnn.backward(dout)


class LastHidden(_Wrapper):
    r"""``x -> [h_n^{fwd}, h_n^{rev}]``: the last layer's final hidden state, ``(N, D*H)``.

    For one direction that is the output at the last step; for two, the forward
    direction's state after step T-1 beside the reverse direction's after step 0 --
    each has read the whole sequence.  Backward hands the gradient to ``rnn`` as
    ``d_state`` (zero for the layers below, whose states are not used) with no
    output gradient.
    """

    def __init__(self, rnn):
        super().__init__(rnn)
        self._state_meta = None     # (shape, dtype) of the last forward's h_n

    def forward(self, x):
        _, state = self.rnn(x)
        h_n = state[0] if isinstance(state, tuple) else state
        D = self.rnn.num_directions
        self._state_meta = (tuple(h_n.shape), h_n.dtype)
        xp = backend.xp(h_n)
        return xp.concatenate(list(h_n[-D:]), axis=1)

    def backward(self, dout):
        meta = self._state_meta
        if meta is None:
            raise backward_before_forward("LastHidden")
        (LD, N, H), dtype = meta
        D = self.rnn.num_directions
        _checks.dout("LastHidden", dout, (N, D * H), dtype)
        dh_n = backend.xp(dout).zeros((LD, N, H), dtype)
        for d in range(D):
            dh_n[LD - D + d] = dout[:, d * H:(d + 1) * H]
        return self.rnn.backward(None, (dh_n, None) if self.rnn.mode == "LSTM" else dh_n)
