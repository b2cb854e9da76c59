"""``Parameter``, a trainable array, and ``state_array``, what a ``state_dict`` value becomes.

A parameter holds ``data`` and the gradient accumulated into ``grad`` by the layers'
``backward``; a module registers the parameters assigned to its attributes
(``minidl.nn.Module``) and an optimizer updates them (``minidl.optim``).
"""
from __future__ import annotations

import numpy as np


def state_array(value):
    """A ``state_dict`` value as an array: NumPy and CuPy arrays as they are, a torch
    tensor as a NumPy array, anything else through ``np.asarray``.

    A torch tensor is recognised by its ``detach`` and ``cpu`` methods, so torch is
    never imported here.  It is detached (a parameter that requires grad cannot
    become a NumPy array otherwise) and moved to the CPU; half and bfloat16 become
    float32, since NumPy has no bfloat16.  The result may share memory with ``value``.
    """
    if hasattr(value, "detach") and hasattr(value, "cpu"):
        value = value.detach().cpu()
        if value.is_floating_point() and str(value.dtype) not in ("torch.float32",
                                                                 "torch.float64"):
            value = value.float()
        return value.numpy()
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        return value
    return np.asarray(value)


class Parameter:
    """A trainable array: ``data`` and the gradient accumulated into ``grad``.

    ``grad`` is ``None`` until a backward pass writes it (as in torch after
    ``zero_grad(set_to_none=True)``, torch's default).  Optimizers skip a
    parameter whose ``grad`` is ``None``.
    """

    __slots__ = ("data", "grad")

    def __init__(self, data, grad=None):
        if not hasattr(data, "shape") or not hasattr(data, "dtype"):
            data = np.asarray(data)
        self.data = data
        self.grad = grad

    @property
    def shape(self):
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def size(self):
        return self.data.size

    def accumulate_grad(self, g, owned: bool = False) -> None:
        """Add ``g`` to ``grad`` (a fresh copy when ``grad`` is None; never aliases ``g``).

        ``owned=True`` is for a layer handing over an array it has just computed and
        holds no other reference to: when ``grad`` is None (the usual case after
        ``zero_grad()``) that array becomes ``grad`` without a copy.
        """
        data = self.data
        if g.shape != data.shape:
            raise ValueError(
                f"Parameter: gradient of shape {tuple(g.shape)} does not match data "
                f"of shape {tuple(data.shape)}")
        if self.grad is None:
            self.grad = g if owned and g.dtype == data.dtype else g.astype(data.dtype, copy=True)
        else:
            self.grad += g

    def __repr__(self):
        return f"Parameter(shape={tuple(self.data.shape)}, dtype={self.data.dtype})"
