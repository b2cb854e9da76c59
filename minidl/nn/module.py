"""Module: the layer protocol every minidl layer follows.

A layer is a ``Module``.  Calling it runs ``forward(x)``, which keeps in ``self``
exactly what ``backward`` needs.  ``backward(dout)`` accumulates d(loss)/d(param)
into each ``Parameter.grad`` (``parameter.py``) and returns d(loss)/d(x).  There is
no autodiff: the chain rule is written out by hand, layer by layer, and
``Sequential.backward`` (``container.py``) walks the layers in reverse.

Names, ``state_dict`` keys and conversions (``.double()``, ``.float()``,
``.to(dtype)``) match ``torch.nn.Module`` so models port by changing one import.
A module's state is its parameters and its buffers: arrays that are not trained but
belong to the model (BatchNorm's running statistics), registered with
``register_buffer``.  The checks of a layer's input and ``dout`` are
``minidl._checks``' (``float_array``, ``same_dtype``, ``dout``); the two helpers at the
end of this module are the rest of the protocol's shared code.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import Iterator

import numpy as np

from .. import _checks, backend
from .parameter import Parameter, state_array

# dtype kinds load_state_dict accepts: float, signed and unsigned int (see its NOTE)
_LOADABLE_KINDS = "fiu"


def _check_buffer(owner: str, name: str, array):
    """``array`` as a buffer value: None, or a NumPy/CuPy array (a torch tensor or a
    list through ``state_array``); a Parameter or a non-numeric array is refused,
    since ``load_state_dict`` could never load it back."""
    if array is None:
        return None
    if isinstance(array, Parameter):
        raise ValueError(f"{owner}: buffer {name!r} must be an array or None, got a Parameter "
                         f"(use register_parameter)")
    array = state_array(array)
    if array.dtype.kind not in _LOADABLE_KINDS:
        raise ValueError(f"{owner}: buffer {name!r} must be a real numeric array (float "
                         f"or int), got dtype {array.dtype}")
    return array


class Module:
    """Base class of every layer and model.

    Subclasses implement ``forward(x)`` and ``backward(dout)``.  Assigning a
    ``Parameter`` or a ``Module`` to an attribute registers it, in assignment
    order, exactly like ``torch.nn.Module``; that order gives ``state_dict``
    keys such as ``"layers.1.weight"``.

    ``needs_input_grad`` (default True): set it to False when nobody will use the
    gradient with respect to this module's input -- a model's input is data, and
    torch does not compute the gradient of a tensor that does not require one.
    ``backward`` then still accumulates every parameter gradient (unchanged) but
    may skip computing dL/dx and return None.  ``Linear`` and ``Conv2d`` skip it
    (for the first layer of a network that is a matrix product, and for a
    convolution also the ``col2im``); ``Sequential`` hands the setting to its first
    layer that has parameters and stops its backward walk there (layers before it
    have nothing to learn).  Other modules ignore it and return dL/dx as usual.
    ``minidl.train.fit`` sets it to False on the model while it trains.  A
    container whose ``backward`` returns its child's input gradient may pass the
    setting on by overriding ``_needs_input_grad_changed(value)``.

    Buffers (``register_buffer``) are arrays a module owns but does not train, such
    as BatchNorm's running statistics.  As in torch, assigning an array (or None) to
    a buffer's attribute replaces the buffer; a persistent buffer is part of
    ``state_dict`` (after its module's parameters); float buffers follow ``.to(dtype)``
    while integer ones (``num_batches_tracked``) keep their dtype.
    """

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_non_persistent_buffers", set())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

    # -- registration -------------------------------------------------------
    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise RuntimeError(
                f"{type(self).__name__}: call super().__init__() before assigning attributes")
        params, modules = self._parameters, self._modules
        buffers = self.__dict__.get("_buffers")
        if buffers is not None and name in buffers:
            if isinstance(value, (Parameter, Module)):
                self._remove_buffer(name)
            else:
                # assigning to a buffer's name replaces the buffer, as in torch
                self._buffers[name] = _check_buffer(type(self).__name__, name, value)
                object.__setattr__(self, name, self._buffers[name])
                return
        params.pop(name, None)
        modules.pop(name, None)
        if isinstance(value, Parameter):
            params[name] = value
        elif isinstance(value, Module):
            modules[name] = value
        object.__setattr__(self, name, value)

    def __delattr__(self, name):
        self._parameters.pop(name, None)
        self._modules.pop(name, None)
        self._remove_buffer(name)
        object.__delattr__(self, name)

    def _remove_buffer(self, name: str) -> None:
        # modules unpickled from before buffers existed lack the two fields
        self.__dict__.get("_buffers", {}).pop(name, None)
        self.__dict__.get("_non_persistent_buffers", set()).discard(name)

    def register_parameter(self, name: str, param: Parameter | None) -> None:
        """Register ``param`` under ``name``; ``None`` records an absent parameter (bias=False)."""
        if param is None:
            self._parameters.pop(name, None)
            object.__setattr__(self, name, None)
        else:
            setattr(self, name, param)

    def register_buffer(self, name: str, array, persistent: bool = True) -> None:
        """Register ``array`` (or None, an absent buffer) as the buffer ``name``.

        A buffer is state that is not trained: it is not in ``parameters()``, gets no
        gradient, and is listed by ``buffers()``/``named_buffers()``.  A persistent
        buffer is saved in ``state_dict`` under ``"<module path>.<name>"`` (torch's key,
        e.g. ``"0.running_mean"``); a non-persistent one is not.  A None buffer is in
        neither.  ``array`` is kept as given (not copied).  Matches
        ``torch.nn.Module.register_buffer``.
        """
        owner = type(self).__name__
        if "_buffers" not in self.__dict__:
            raise RuntimeError(f"{owner}: call super().__init__() before register_buffer")
        if not isinstance(name, str) or not name or "." in name:
            raise ValueError(f"{owner}.register_buffer: expected a non-empty name without "
                             f"'.', got {name!r}")
        _checks.boolean(f"{owner}.register_buffer", "persistent", persistent)
        if name not in self._buffers and (name in self._parameters or name in self._modules
                                          or hasattr(self, name)):
            raise ValueError(f"{owner}.register_buffer: attribute {name!r} already exists")
        array = _check_buffer(owner, name, array)
        self._buffers[name] = array
        if persistent:
            self._non_persistent_buffers.discard(name)
        else:
            self._non_persistent_buffers.add(name)
        object.__setattr__(self, name, array)

    # -- the protocol -------------------------------------------------------
    @property
    def needs_input_grad(self) -> bool:
        """Whether ``backward`` must return dL/dx (see the class docstring)."""
        return self.__dict__.get("_needs_input_grad", True)

    @needs_input_grad.setter
    def needs_input_grad(self, value: bool) -> None:
        value = _checks.boolean(type(self).__name__, "needs_input_grad", value)
        object.__setattr__(self, "_needs_input_grad", value)
        self._needs_input_grad_changed(value)

    def _needs_input_grad_changed(self, value: bool) -> None:
        """Hook for containers that hand ``needs_input_grad`` on to a child."""

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} must implement forward()")

    def backward(self, dout):
        raise NotImplementedError(f"{type(self).__name__} must implement backward()")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    # -- traversal ----------------------------------------------------------
    def named_modules(self, prefix: str = "", _seen=None) -> Iterator[tuple[str, "Module"]]:
        """Every module in the tree (self first), each once, as in torch."""
        if _seen is None:
            _seen = set()
        if id(self) in _seen:
            return
        _seen.add(id(self))
        yield prefix, self
        for name, child in self._modules.items():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name, _seen)

    def modules(self) -> Iterator["Module"]:
        for _, m in self.named_modules():
            yield m

    def children(self) -> Iterator["Module"]:
        return iter(self._modules.values())

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        seen = set()
        for mod_name, mod in self.named_modules(prefix):
            for name, p in mod._parameters.items():
                if id(p) in seen:
                    continue
                seen.add(id(p))
                yield (f"{mod_name}.{name}" if mod_name else name), p

    def parameters(self) -> Iterator[Parameter]:
        for _, p in self.named_parameters():
            yield p

    def named_buffers(self, prefix: str = "") -> Iterator[tuple[str, object]]:
        """Every buffer that is not None (persistent or not), each array once, keyed like
        ``state_dict``."""
        seen = set()
        for mod_name, mod in self.named_modules(prefix):
            for name, b in mod.__dict__.get("_buffers", {}).items():
                if b is None or id(b) in seen:
                    continue
                seen.add(id(b))
                yield (f"{mod_name}.{name}" if mod_name else name), b

    def buffers(self) -> Iterator[object]:
        for _, b in self.named_buffers():
            yield b

    def _state_entries(self):
        """``(key, owner module, attribute name, array, is_buffer)`` for every entry of
        ``state_dict``, in torch's order: each module's parameters, then its persistent
        buffers, then its children's entries."""
        seen = set()
        for mod_name, mod in self.named_modules():
            prefix = f"{mod_name}." if mod_name else ""
            for name, p in mod._parameters.items():
                if id(p) not in seen:
                    seen.add(id(p))
                    yield prefix + name, mod, name, p.data, False
            skip = mod.__dict__.get("_non_persistent_buffers", ())
            for name, b in mod.__dict__.get("_buffers", {}).items():
                if b is not None and name not in skip and id(b) not in seen:
                    seen.add(id(b))
                    yield prefix + name, mod, name, b, True

    def num_parameters(self) -> int:
        """Total number of trainable scalars."""
        return int(sum(p.data.size for p in self.parameters()))

    # -- modes --------------------------------------------------------------
    def train(self, mode: bool = True) -> "Module":
        mode = _checks.boolean(f"{type(self).__name__}.train", "mode", mode)
        for m in self.modules():
            object.__setattr__(m, "training", mode)
        return self

    def eval(self) -> "Module":
        return self.train(False)

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.parameters():
            if set_to_none or p.grad is None:
                p.grad = None
            else:
                p.grad[...] = 0

    # -- dtype / device -----------------------------------------------------
    def _convert(self, fn) -> "Module":
        for p in self.parameters():  # each shared Parameter once
            p.data = fn(p.data)
            if p.grad is not None:
                p.grad = fn(p.grad)
        converted = {}               # a buffer shared by two modules stays shared
        for m in self.modules():
            buffers = m.__dict__.get("_buffers", {})
            for name, b in buffers.items():
                if b is not None:
                    if id(b) not in converted:
                        converted[id(b)] = fn(b)
                    buffers[name] = converted[id(b)]
                    object.__setattr__(m, name, converted[id(b)])
        for m in self.modules():
            m._convert_extra(fn)
        return self

    def _convert_extra(self, fn) -> None:
        """Hook for layers holding non-parameter arrays that must follow dtype/device."""

    def to(self, target) -> "Module":
        """``to(np.float64)`` / ``to("float32")`` casts; ``to("cpu")`` / ``to("cuda")`` moves.

        A cast changes parameters and float buffers only: integer buffers such as
        ``num_batches_tracked`` keep their dtype, as in torch.  A move moves them all.
        """
        if isinstance(target, str) and target.split(":")[0] in ("cpu", "cuda"):
            return self._convert(lambda a: backend.to_device(a, target))
        try:
            # np.dtype(None) would silently mean float64
            dtype = np.dtype(target) if target is not None else None
        except TypeError:
            dtype = None
        if dtype is None:
            raise ValueError(
                f"{type(self).__name__}.to: expected a float dtype (float32/float64) or "
                f"a device ('cpu', 'cuda'), got {target!r}")
        if dtype not in _checks.FLOAT_DTYPES:
            raise ValueError(
                f"{type(self).__name__}.to: expected float32 or float64, got {dtype}")
        return self._convert(lambda a: a.astype(dtype, copy=False) if a.dtype.kind == "f" else a)

    def double(self) -> "Module":
        return self.to(np.float64)

    def float(self) -> "Module":
        return self.to(np.float32)

    # -- state ----------------------------------------------------------------
    def state_dict(self) -> "OrderedDict[str, np.ndarray]":
        """Copies of every parameter and persistent buffer, keyed and ordered like torch
        (``"0.weight"``, ``"fc.bias"``, ``"1.running_mean"``)."""
        return OrderedDict((key, backend.to_numpy(array).copy())
                           for key, _, _, array, _ in self._state_entries())

    def load_state_dict(self, state_dict, strict: bool = True) -> None:
        """Copy arrays into the parameters and persistent buffers, checking everything first.

        ``state_dict`` maps ``state_dict`` keys to arrays: NumPy or CuPy arrays, torch
        tensors (a torch ``state_dict()`` loads directly, buffers included) or nested
        lists of numbers.  Each value must have the entry's shape and a real numeric
        dtype (float, int or unsigned int); it is cast to the entry's dtype (a float
        buffer or parameter keeps the model's float dtype, ``num_batches_tracked`` stays
        int64).  With ``strict`` (the default) the keys must be exactly the model's;
        without it missing and unexpected keys are ignored, and only the values that
        would be loaded are checked.

        Raises TypeError when ``state_dict`` is not a mapping, and ValueError naming
        every missing key, unexpected key, wrong shape and non-numeric dtype.  Every
        value is checked and converted before the first parameter or buffer changes,
        so when it raises the model is exactly as it was.  Loaded values are copies:
        the model never shares memory with ``state_dict``.

        NOTE: torch also copies bool and complex tensors into float parameters (the
        imaginary part dropped with a warning); minidl refuses them, since a weight
        of either kind is a mistake rather than a checkpoint.
        """
        name = f"{type(self).__name__}.load_state_dict"
        if not isinstance(state_dict, Mapping):
            raise TypeError(
                f"{name}: expected a mapping of parameter name -> array (such as "
                f"model.state_dict()), got {type(state_dict).__name__}")
        own = OrderedDict((entry[0], entry) for entry in self._state_entries())
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        problems = []
        if strict and missing:
            problems.append(f"missing keys {missing}")
        if strict and unexpected:
            problems.append(f"unexpected keys {unexpected}")
        arrays = OrderedDict()
        for k, (_, _, _, current, _) in own.items():
            if k not in state_dict:
                continue
            try:
                value = state_array(state_dict[k])
            except (TypeError, ValueError, RuntimeError) as exc:
                problems.append(f"'{k}': expected an array of numbers, got a "
                                f"{type(state_dict[k]).__name__} that NumPy cannot make "
                                f"one of ({exc})")
                continue
            if tuple(value.shape) != tuple(current.shape):
                problems.append(f"'{k}': expected shape {tuple(current.shape)}, got "
                                f"{tuple(value.shape)}")
            elif value.dtype.kind not in _LOADABLE_KINDS:
                problems.append(f"'{k}': expected a real numeric dtype (float or int), got "
                                f"{value.dtype}")
            else:
                arrays[k] = value
        if problems:
            raise ValueError(f"{name}: " + "; ".join(problems))
        # Convert every value before assigning any, so nothing can fail half-way.
        converted = [(own[k], backend.asarray_like(v, own[k][3]).astype(own[k][3].dtype,
                                                                        copy=True))
                     for k, v in arrays.items()]
        for (_, owner, attr, _, is_buffer), data in converted:
            if is_buffer:
                owner._buffers[attr] = data
                object.__setattr__(owner, attr, data)
            else:
                owner._parameters[attr].data = data

    # -- printing -------------------------------------------------------------
    def extra_repr(self) -> str:
        return ""

    def __repr__(self):
        lines = []
        for name, child in self._modules.items():
            child_repr = repr(child).replace("\n", "\n  ")
            lines.append(f"({name}): {child_repr}")
        head = f"{type(self).__name__}({self.extra_repr()}"
        if not lines:
            return head + ")"
        return head + "\n  " + "\n  ".join(lines) + "\n)"


# -- shared by the layers' backward ------------------------------------------------
def empty_batch_backward(layer: Module, x):
    """``layer.backward`` for a forward whose batch was empty (N = 0), as torch allows.

    Each parameter gradient is a sum over no samples, so it is zero (accumulated like
    any other, so ``grad`` is set afterwards, as in torch); dL/dx has ``x``'s empty shape
    (None when ``needs_input_grad`` is False).  Layers call this instead of their
    kernels, which assume at least one sample.
    """
    xp = backend.xp(x)
    for p in layer._parameters.values():
        p.accumulate_grad(xp.zeros_like(p.data), owned=True)
    return xp.zeros(x.shape, dtype=x.dtype) if layer.needs_input_grad else None


def backward_before_forward(owner: str) -> RuntimeError:
    """The error a layer raises when ``backward`` runs with no forward pass to differentiate."""
    return RuntimeError(
        f"{owner}.backward() called before forward(): run forward first, it keeps "
        f"what backward needs")
