"""Exercise checks of notebook 7 (a network by hand): ReLU's backward, the softmax
cross-entropy's backward, and a chain's backward walked in reverse."""
from __future__ import annotations

import numpy as np

from minidl import nn

from . import CheckFailed, Result, compare_arrays, run_check

__all__ = ["check_relu_backward", "check_cross_entropy_backward", "check_sequential_backward"]


def check_relu_backward(relu_backward) -> Result:
    """``relu_backward(z, dout)``: the gradient of ``max(z, 0)``, against ``nn.ReLU``."""
    def body(fn):
        rng = np.random.default_rng(0)
        z = rng.standard_normal((5, 7))
        z[0, :3] = 0.0                                   # exactly at the kink: gradient 0
        dout = rng.standard_normal(z.shape)
        relu = nn.ReLU()
        relu(z)
        expected = relu.backward(dout)
        got = np.asarray(fn(z, dout))
        if got.shape == expected.shape and np.allclose(got, dout * (dout > 0)):
            raise CheckFailed("the mask comes from dout; it must come from the forward input "
                              "z: the gradient passes where the unit was active (z > 0)")
        if got.shape == expected.shape and np.allclose(got, dout * (z >= 0)):
            raise CheckFailed("at z = 0 exactly the gradient should be 0 (as in minidl and "
                              "PyTorch): use z > 0, not z >= 0")
        compare_arrays("relu_backward(z, dout)", got, expected)
        return "equals nn.ReLU's backward, z = 0 included"
    return run_check("relu_backward", body, relu_backward)


def check_cross_entropy_backward(cross_entropy_backward) -> Result:
    """``cross_entropy_backward(logits, targets)``: dL/dlogits of the mean softmax
    cross-entropy, against ``nn.CrossEntropyLoss``."""
    def body(fn):
        rng = np.random.default_rng(1)
        logits = rng.standard_normal((6, 4)) * 3
        targets = rng.integers(0, 4, 6)
        loss_fn = nn.CrossEntropyLoss()
        loss_fn(logits, targets)
        expected = loss_fn.backward()
        got = np.asarray(fn(logits, targets))
        if got.shape == expected.shape and np.allclose(got, expected * 6):
            raise CheckFailed("this is p - y for each image; the loss is the mean over the "
                              "batch of 6, so divide by N")
        if got.shape == expected.shape and np.allclose(got, -expected):
            raise CheckFailed("the sign is flipped: the gradient is p - y, not y - p")
        compare_arrays("cross_entropy_backward(logits, targets)", got, expected)
        return "equals nn.CrossEntropyLoss's backward"
    return run_check("cross_entropy_backward", body, cross_entropy_backward)


def _chain(seed):
    import minidl  # noqa: PLC0415
    minidl.manual_seed(seed)
    return [nn.Linear(5, 4).double(), nn.ReLU(), nn.Linear(4, 3).double()]


def check_sequential_backward(sequential_backward) -> Result:
    """``sequential_backward(layers, dout)``: run every layer's ``backward`` so that the
    parameters get their gradients, and return dL/dx, as ``nn.Sequential.backward`` does
    (the layers have run forward already)."""
    def body(fn):
        x = np.random.default_rng(2).standard_normal((3, 5))
        dout = np.random.default_rng(3).standard_normal((3, 3))
        reference = nn.Sequential(*_chain(4))
        reference(x)
        dx_expected = reference.backward(dout)
        layers = _chain(4)
        h = x
        for layer in layers:
            h = layer(h)
        try:
            dx = fn(layers, dout.copy())
        except ValueError as exc:
            raise CheckFailed(f"a layer refused the gradient ({exc}); the last layer's "
                              f"backward comes first: walk the layers in reverse") from None
        compare_arrays("dL/dx", dx, dx_expected)
        for k in (0, 2):
            for name in ("weight", "bias"):
                compare_arrays(f"layer {k}'s {name}.grad",
                               getattr(layers[k], name).grad,
                               getattr(reference[k], name).grad)
        return "dL/dx and every parameter's gradient equal nn.Sequential.backward's"
    return run_check("sequential_backward", body, sequential_backward)
