"""Containers of modules: ``Sequential``."""
from __future__ import annotations

from collections import OrderedDict

from .module import Module


class Sequential(Module):
    """A chain of modules: ``forward`` runs them in order, ``backward`` in reverse.

    Matches ``torch.nn.Sequential``: children are named ``"0"``, ``"1"``, ...,
    or take the keys of a single ``OrderedDict`` argument.

    NOTE: torch lets one stateless instance (say one ``ReLU()``) appear twice in
    a chain.  A minidl layer keeps its forward input for ``backward``, so a
    second use would overwrite the first one's cache; ``Sequential`` therefore
    raises ValueError when the same instance is added twice.
    """

    def __init__(self, *layers):
        super().__init__()
        object.__setattr__(self, "_input_grad_layer", None)
        if len(layers) == 1 and isinstance(layers[0], dict):
            items = list(layers[0].items())
        else:
            items = [(str(i), layer) for i, layer in enumerate(layers)]
        for name, layer in items:
            self._add(name, layer)

    def _add(self, name: str, layer) -> None:
        if not isinstance(layer, Module):
            raise ValueError(
                f"Sequential: layer {name!r} must be a minidl Module, got {type(layer).__name__}")
        for other_name, other in self._modules.items():
            if other is layer:
                raise ValueError(
                    f"Sequential: layer {name!r} is the same object as layer {other_name!r}; "
                    f"minidl layers cache their forward input for backward, so create a "
                    f"separate instance for each position")
        setattr(self, str(name), layer)
        if not self.needs_input_grad:
            self._needs_input_grad_changed(False)

    def _first_layer_with_parameters(self):
        for layer in self._modules.values():
            if next(iter(layer.parameters()), None) is not None:
                return layer
        return None

    def _needs_input_grad_changed(self, value: bool) -> None:
        """False: the first layer with parameters need not compute its input gradient
        either; True: give it back the setting it had before."""
        previous = self._input_grad_layer
        if previous is not None:
            previous.needs_input_grad = True
            object.__setattr__(self, "_input_grad_layer", None)
        if not value:
            first = self._first_layer_with_parameters()
            if first is not None and first.needs_input_grad:
                first.needs_input_grad = False
                object.__setattr__(self, "_input_grad_layer", first)

    def __len__(self):
        return len(self._modules)

    def __getitem__(self, idx):
        if isinstance(idx, slice):
            return Sequential(OrderedDict(list(self._modules.items())[idx]))
        return list(self._modules.values())[idx]

    def __iter__(self):
        return iter(self._modules.values())

    def append(self, layer: Module) -> "Sequential":
        self._add(str(len(self)), layer)
        return self

    def forward(self, x):
        for layer in self._modules.values():
            x = layer(x)
        return x

    def backward(self, dout):
        """Run each layer's backward in reverse order; return dL/dx, or None when
        ``needs_input_grad`` is False (the walk then stops at the first layer that
        has parameters)."""
        if self.needs_input_grad:
            for layer in reversed(self._modules.values()):
                dout = layer.backward(dout)
            return dout
        first = self._first_layer_with_parameters()
        if first is None:
            return None
        for layer in reversed(self._modules.values()):
            dout = layer.backward(dout)
            if layer is first:
                return None
        return None
