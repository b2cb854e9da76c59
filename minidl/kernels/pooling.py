"""Max and average pooling over 2-D windows, forward and backward.

Conventions (all as PyTorch's CPU kernels):

* Window ``(oh, ow)`` starts at ``(oh*sh - ph, ow*sw - pw)`` and visits
  ``(start_h + i*dh, start_w + j*dw)`` for ``i < kh, j < kw`` (dilation ``d``;
  average pooling has none).
* Max pooling scans the in-bounds positions of a window in row-major order and
  takes a position when ``value > running max`` or ``value`` is NaN.  So padding
  acts as -inf (it is never picked), the *first* maximum wins ties, the *last*
  NaN wins when there are NaNs (and the output is NaN), and a window whose
  values are all -inf picks its first in-bounds position.  The chosen flat
  index ``ih*W + iw`` is returned (int64, as ``return_indices=True`` gives).
  Backward adds each output gradient into its chosen position; overlapping
  windows that chose the same position add up.
* Average pooling divides the window sum by, with ``hend = min(hstart+kh, H+ph)``
  (``wend`` likewise; ``ceil_mode`` windows may stick out further, and that part
  never counts):

  - ``divisor_override`` when given,
  - else ``(hend-hstart)*(wend-wstart)`` with ``count_include_pad=True``
    (padding counts, the overhang past the padding does not),
  - else the number of in-bounds positions.

  Backward spreads ``dout / divisor`` evenly over the in-bounds positions.

Every kernel has a plain NumPy twin (``*_reference``, vectorised over the batch
and channels, one loop step per window offset) and a Numba twin (``*_numba``,
parallel over images); the public names dispatch (Numba for NumPy arrays).
"""
from __future__ import annotations

import numpy as np

from .. import backend
from . import registry
from .shapes import avg_pool_geometry, pool_geometry


def _window_offsets(n_out, stride, first, size, xp):
    """Input index seen by each output position at one window offset, and whether in bounds."""
    idx = xp.arange(n_out) * stride + first
    return idx, (idx >= 0) & (idx < size)


# -- max pooling ---------------------------------------------------------------------

def max_pool2d_forward_reference(x, kernel_size, stride=None, padding=0, dilation=1,
                                 ceil_mode=False):
    """Plain NumPy max pooling: (N, C, H, W) -> (out (N, C, Ho, Wo), indices int64 (N, C, Ho, Wo)).

    Replays PyTorch's scan, one window offset ``(i, j)`` at a time, for all
    windows at once: take the offset's value where it is in bounds and (no
    position taken yet, or it beats the running max, or it is NaN).
    """
    xp = backend.xp(x)
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw), (dh, dw), (ho, wo) = pool_geometry(
        (h, w), kernel_size, stride, padding, dilation, ceil_mode, "max_pool2d")
    best = xp.full((n, c, ho, wo), -xp.inf, dtype=x.dtype)
    index = xp.full((n, c, ho, wo), -1, dtype=xp.int64)
    for i in range(kh):
        ih, ih_ok = _window_offsets(ho, sh, i * dh - ph, h, xp)
        for j in range(kw):
            iw, iw_ok = _window_offsets(wo, sw, j * dw - pw, w, xp)
            inside = ih_ok[:, None] & iw_ok[None, :]                       # (ho, wo)
            value = x[:, :, xp.clip(ih, 0, h - 1)[:, None], xp.clip(iw, 0, w - 1)[None, :]]
            take = inside & ((index < 0) | (value > best) | xp.isnan(value))
            best = xp.where(take, value, best)
            index = xp.where(take, ih[:, None] * w + iw[None, :], index)
    return best, index


def max_pool2d_backward_reference(dout, indices, input_shape):
    """Plain NumPy max-pool backward: add each ``dout`` entry into the position it came from.

    ``np.bincount`` sums the entries sharing a position (overlapping windows)
    in output order; it sums in float64, then the result is cast back.
    """
    xp = backend.xp(dout)
    n, c, h, w = input_shape
    plane = xp.arange(n * c, dtype=xp.int64).reshape(n, c, 1, 1) * (h * w)
    flat = (plane + indices).reshape(-1)
    dx = xp.bincount(flat, weights=dout.reshape(-1).astype(xp.float64), minlength=n * c * h * w)
    return dx.astype(dout.dtype).reshape(n, c, h, w)


# -- average pooling -----------------------------------------------------------------

def avg_pool2d_divisors(input_hw, kernel_size, stride, padding, output_hw, count_include_pad,
                        divisor_override, xp=np):
    """The divisor of every window, shape (Ho, Wo), int64 (see module docstring)."""
    (h, w), (kh, kw), (sh, sw), (ph, pw), (ho, wo) = (input_hw, kernel_size, stride, padding,
                                                      output_hw)
    hstart = xp.arange(ho) * sh - ph
    wstart = xp.arange(wo) * sw - pw
    hend = xp.minimum(hstart + kh, h + ph)
    wend = xp.minimum(wstart + kw, w + pw)
    if divisor_override:
        return xp.full((ho, wo), divisor_override, dtype=xp.int64)
    if count_include_pad:
        return (hend - hstart)[:, None] * (wend - wstart)[None, :]
    rows = xp.minimum(hend, h) - xp.maximum(hstart, 0)
    cols = xp.minimum(wend, w) - xp.maximum(wstart, 0)
    # every window overlaps the input (padding <= kernel/2 and ceil_mode's rule),
    # so the count is >= 1; the maximum only guards against dividing by zero
    return xp.maximum(rows[:, None] * cols[None, :], 1)


def avg_pool2d_forward_reference(x, kernel_size, stride=None, padding=0, ceil_mode=False,
                                 count_include_pad=True, divisor_override=None):
    """Plain NumPy average pooling: (N, C, H, W) -> (N, C, Ho, Wo).

    Zero-pad (far enough for ``ceil_mode`` windows), add up one strided slice
    per window offset, divide by each window's divisor.
    """
    xp = backend.xp(x)
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw), _, (ho, wo) = avg_pool_geometry(
        x.shape, kernel_size, stride, padding, ceil_mode, divisor_override)
    bottom = max(ph, (ho - 1) * sh + kh - h - ph)
    right = max(pw, (wo - 1) * sw + kw - w - pw)
    x_pad = xp.pad(x, ((0, 0), (0, 0), (ph, bottom), (pw, right)))
    total = xp.zeros((n, c, ho, wo), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            total += x_pad[:, :, i:i + sh * (ho - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw]
    divisor = avg_pool2d_divisors((h, w), (kh, kw), (sh, sw), (ph, pw), (ho, wo),
                                  count_include_pad, divisor_override, xp)
    return (total / divisor).astype(x.dtype, copy=False)


def avg_pool2d_backward_reference(dout, input_shape, kernel_size, stride=None, padding=0,
                                  ceil_mode=False, count_include_pad=True, divisor_override=None):
    """Plain NumPy average-pool backward: (N, C, Ho, Wo) -> (N, C, H, W).

    Each window hands ``dout / divisor`` to every position it covers: one
    ``+=`` into a strided slice of a padded buffer per window offset, then the
    padding is cut off (positions there are not inputs).
    """
    xp = backend.xp(dout)
    n, c, h, w = input_shape
    (kh, kw), (sh, sw), (ph, pw), _, (ho, wo) = avg_pool_geometry(
        input_shape, kernel_size, stride, padding, ceil_mode, divisor_override)
    divisor = avg_pool2d_divisors((h, w), (kh, kw), (sh, sw), (ph, pw), (ho, wo),
                                  count_include_pad, divisor_override, xp)
    share = (dout / divisor).astype(dout.dtype, copy=False)
    bottom = max(ph, (ho - 1) * sh + kh - h - ph)
    right = max(pw, (wo - 1) * sw + kw - w - pw)
    dx_pad = xp.zeros((n, c, ph + h + bottom, pw + w + right), dtype=dout.dtype)
    for i in range(kh):
        for j in range(kw):
            dx_pad[:, :, i:i + sh * (ho - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw] += share
    return dx_pad[:, :, ph:ph + h, pw:pw + w].copy()


# -- the operations (see registry.py): Numba for NumPy arrays, else the reference ------------

def _numpy_array(a, *args, **kwargs) -> bool:
    return isinstance(a, np.ndarray)


def _example_x():
    return (np.zeros((64, 32, 28, 28), np.float32), 2), {}


def _example_max_backward():
    out = np.zeros((64, 32, 14, 14), np.float32)
    return (out, np.zeros(out.shape, np.int64), (64, 32, 28, 28)), {}


def _example_avg_backward():
    return (np.zeros((64, 32, 14, 14), np.float32), (64, 32, 28, 28), 2), {}


max_pool2d_forward = registry.register(
    "max_pool2d_forward", max_pool2d_forward_reference,
    registry.numba("._pooling_numba", "max_pool2d_forward_numba", _numpy_array),
    example=_example_x,
    doc="Max pooling forward on the route the registry picks: returns ``(out, indices)``.")

max_pool2d_backward = registry.register(
    "max_pool2d_backward", max_pool2d_backward_reference,
    registry.numba("._pooling_numba", "max_pool2d_backward_numba", _numpy_array),
    example=_example_max_backward,
    doc="Max pooling backward on the route the registry picks: gradient w.r.t. the input.")

avg_pool2d_forward = registry.register(
    "avg_pool2d_forward", avg_pool2d_forward_reference,
    registry.numba("._pooling_numba", "avg_pool2d_forward_numba", _numpy_array),
    example=_example_x,
    doc="Average pooling forward on the route the registry picks.")

avg_pool2d_backward = registry.register(
    "avg_pool2d_backward", avg_pool2d_backward_reference,
    registry.numba("._pooling_numba", "avg_pool2d_backward_numba", _numpy_array),
    example=_example_avg_backward,
    doc="Average pooling backward on the route the registry picks: gradient w.r.t. the input.")
