"""``no_grad``: forward passes that will not be followed by a backward pass.

minidl has no autograd: every layer keeps what its backward needs during ``forward``.
For most layers that is the input (a reference, no copy).  A recurrent layer keeps far
more -- every step's gates and cell state, ``T`` times its output -- and for inference
(evaluation, prediction) that is memory written and never read.  Inside ``no_grad()``
the recurrent layers (``nn.RNN``/``LSTM``/``GRU`` and their cells) skip it:

    with minidl.no_grad():
        logits = model(x)

as ``torch.no_grad()``.  A ``backward`` after such a forward raises (its cache is gone).
Other layers keep their cache as usual: it costs nothing to keep.  The setting is per
thread and nests; ``is_grad_enabled()`` reads it.
"""
from __future__ import annotations

import threading

_state = threading.local()


def is_grad_enabled() -> bool:
    """False inside ``no_grad()`` (in this thread), else True."""
    return getattr(_state, "enabled", True)


class no_grad:
    """Context manager: the forward passes inside keep no backward cache where that
    cache is large (recurrent layers); see the module docstring."""

    def __enter__(self):
        self._before = is_grad_enabled()
        _state.enabled = False
        return self

    def __exit__(self, *exc):
        _state.enabled = self._before
        return False
