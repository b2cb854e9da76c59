"""Exercise checks of notebook 3 (pooling, dropout and the loss): max-pool backward, inverted
dropout, and the stable softmax cross-entropy with its gradient."""
from __future__ import annotations

import numpy as np

from minidl.kernels import cross_entropy_reference
from minidl.kernels.naive import max_pool2d_backward_naive, max_pool2d_forward_naive

from . import CheckFailed, Result, compare_arrays, run_check

__all__ = ["check_max_pool_backward", "check_dropout_forward", "check_cross_entropy"]


def check_max_pool_backward(max_pool_backward) -> Result:
    """``max_pool_backward(dout, idx, input_shape)``: each ``dout`` entry added to the pixel
    ``idx`` names (flat ``h*W + w`` per image and channel), against the loop oracle, with
    overlapping windows where one pixel wins several."""
    def body(fn):
        rng = np.random.default_rng(0)
        x = rng.integers(0, 4, size=(2, 2, 5, 5)).astype(np.float64)   # many ties
        _, idx = max_pool2d_forward_naive(x, 3, 1)                      # overlapping windows
        dout = rng.standard_normal(idx.shape)
        expected = max_pool2d_backward_naive(dout, idx, x.shape)
        got = np.asarray(fn(dout, idx, x.shape))
        if got.shape == expected.shape and not np.allclose(got, expected):
            last_wins = np.zeros_like(expected)
            n, c, h, w = x.shape
            for b in range(n):
                for ch in range(c):
                    for (u, v), p in np.ndenumerate(idx[b, ch]):
                        last_wins[b, ch, p // w, p % w] = dout[b, ch, u, v]
            if np.allclose(got, last_wins):
                raise CheckFailed("a pixel that wins several windows keeps only the last "
                                  "window's gradient: add them up (+=, not =)")
        compare_arrays("max_pool_backward(dout, idx, shape) for 3x3 windows, stride 1", got,
                       expected)
        return "equals max_pool2d_backward_naive, pixels winning several windows included"
    return run_check("max_pool_backward", body, max_pool_backward)


def check_dropout_forward(dropout_forward) -> Result:
    """``dropout_forward(x, mask, p)``: inverted dropout with a given 0/1 ``mask``."""
    def body(fn):
        rng = np.random.default_rng(1)
        x = rng.standard_normal((4, 6))
        for p in (0.5, 0.2):
            mask = (rng.random(x.shape) >= p).astype(x.dtype)
            got = np.asarray(fn(x, mask, p))
            if got.shape == x.shape and np.allclose(got, x * mask) and p > 0:
                raise CheckFailed(f"with p={p} the survivors keep their value; divide them by "
                                  f"1 - p so that the expected output is x")
            compare_arrays(f"dropout_forward(x, mask, p={p})", got, x * mask / (1 - p))
        return "survivors scaled by 1/(1-p), the dropped ones 0"
    return run_check("dropout_forward", body, dropout_forward)


def check_cross_entropy(cross_entropy) -> Result:
    """``cross_entropy(logits, targets) -> (loss, dlogits)``: the mean loss and its gradient
    ``(p - onehot(t)) / N``, against ``cross_entropy_reference``, scores near 1000 included."""
    def body(fn):
        rng = np.random.default_rng(2)
        targets = np.array([0, 3, 1, 3])
        for scale, shift in ((1.0, 0.0), (3.0, 1000.0)):
            logits = rng.standard_normal((4, 5)) * scale + shift
            loss, dlogits = fn(logits, targets)
            if not np.isfinite(loss) or not np.all(np.isfinite(dlogits)):
                raise CheckFailed(f"scores around {shift:g} give loss {loss} (exp overflows): "
                                  f"subtract each row's maximum before exponentiating")
            expected_loss, p = cross_entropy_reference(logits, targets)
            if not np.isclose(loss, expected_loss, rtol=1e-9, atol=1e-12):
                raise CheckFailed(f"loss for scores around {shift:g}: expected "
                                  f"{expected_loss:.6g}, got {float(loss):.6g}")
            grad = (p - np.eye(5)[targets]) / len(targets)
            if np.shape(dlogits) == grad.shape and np.allclose(dlogits, grad * len(targets)):
                raise CheckFailed("dlogits is p - y; the loss is the mean over the batch, so "
                                  "divide by N")
            compare_arrays("dlogits", dlogits, grad)
        return "loss and gradient equal the reference, scores near 1000 included"
    return run_check("cross_entropy", body, cross_entropy)
