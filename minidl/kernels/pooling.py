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
from .shapes import pair, pool_output_size


def pool_options(kernel_size, stride=None, padding=0, dilation=1, owner="pooling"):
    """Normalised ``(kh, kw), (sh, sw), (ph, pw), (dh, dw)`` of a pooling window.

    ``stride=None`` means ``stride = kernel_size``.  Raises ValueError (naming
    ``owner``) for a non-positive kernel/stride/dilation, negative padding, or
    padding larger than half the kernel size (torch's rule: ``p <= k // 2``).
    """
    kh, kw = pair(kernel_size, "kernel_size", owner)
    sh, sw = (kh, kw) if stride is None else pair(stride, "stride", owner)
    ph, pw = pair(padding, "padding", owner)
    dh, dw = pair(dilation, "dilation", owner)
    if min(kh, kw, sh, sw, dh, dw) < 1:
        raise ValueError(f"{owner}: kernel_size, stride and dilation must be >= 1, got "
                         f"kernel_size={(kh, kw)}, stride={(sh, sw)}, dilation={(dh, dw)}")
    if min(ph, pw) < 0:
        raise ValueError(f"{owner}: padding must be >= 0, got {(ph, pw)}")
    if ph > kh // 2 or pw > kw // 2:
        raise ValueError(f"{owner}: padding must be at most half the kernel size, got "
                         f"padding={(ph, pw)} for kernel_size={(kh, kw)}")
    return (kh, kw), (sh, sw), (ph, pw), (dh, dw)


def pool_geometry(input_hw, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
                  owner="pooling"):
    """``pool_options(...)`` plus the output size ``(ho, wo)`` for an input of size ``input_hw``.

    Raises ValueError (naming ``owner``) as ``pool_options`` does, and when the
    window is larger than the padded input (an empty output).
    """
    h, w = input_hw
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = pool_options(kernel_size, stride, padding,
                                                          dilation, owner)
    ho = pool_output_size(h, kh, sh, ph, dh, ceil_mode)
    wo = pool_output_size(w, kw, sw, pw, dw, ceil_mode)
    if ho < 1 or wo < 1:
        raise ValueError(
            f"{owner}: kernel {(kh, kw)} (dilation {(dh, dw)}) is larger than the input "
            f"{(h, w)} padded by {(ph, pw)}: the output would be {ho}x{wo}")
    return (kh, kw), (sh, sw), (ph, pw), (dh, dw), (ho, wo)


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


def _avg_geometry(x_shape, kernel_size, stride, padding, ceil_mode, divisor_override):
    n, c, h, w = x_shape
    if divisor_override is not None and (isinstance(divisor_override, bool) or not isinstance(
            divisor_override, (int, np.integer)) or divisor_override < 1):
        raise ValueError(f"avg_pool2d: divisor_override must be None or a positive int, "
                         f"got {divisor_override!r}")
    return pool_geometry((h, w), kernel_size, stride, padding, 1, ceil_mode, "avg_pool2d")


def avg_pool2d_forward_reference(x, kernel_size, stride=None, padding=0, ceil_mode=False,
                                 count_include_pad=True, divisor_override=None):
    """Plain NumPy average pooling: (N, C, H, W) -> (N, C, Ho, Wo).

    Zero-pad (far enough for ``ceil_mode`` windows), add up one strided slice
    per window offset, divide by each window's divisor.
    """
    xp = backend.xp(x)
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw), _, (ho, wo) = _avg_geometry(
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
    (kh, kw), (sh, sw), (ph, pw), _, (ho, wo) = _avg_geometry(
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


# -- dispatchers -----------------------------------------------------------------------

def max_pool2d_forward(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    """Max pooling forward on the fastest path: returns ``(out, indices)``."""
    if isinstance(x, np.ndarray):
        from ._pooling_numba import max_pool2d_forward_numba
        return max_pool2d_forward_numba(x, kernel_size, stride, padding, dilation, ceil_mode)
    return max_pool2d_forward_reference(x, kernel_size, stride, padding, dilation, ceil_mode)


def max_pool2d_backward(dout, indices, input_shape):
    """Max pooling backward on the fastest path: gradient w.r.t. the input."""
    if isinstance(dout, np.ndarray):
        from ._pooling_numba import max_pool2d_backward_numba
        return max_pool2d_backward_numba(dout, indices, input_shape)
    return max_pool2d_backward_reference(dout, indices, input_shape)


def avg_pool2d_forward(x, kernel_size, stride=None, padding=0, ceil_mode=False,
                       count_include_pad=True, divisor_override=None):
    """Average pooling forward on the fastest path."""
    if isinstance(x, np.ndarray):
        from ._pooling_numba import avg_pool2d_forward_numba
        return avg_pool2d_forward_numba(x, kernel_size, stride, padding, ceil_mode,
                                        count_include_pad, divisor_override)
    return avg_pool2d_forward_reference(x, kernel_size, stride, padding, ceil_mode,
                                        count_include_pad, divisor_override)


def avg_pool2d_backward(dout, input_shape, kernel_size, stride=None, padding=0, ceil_mode=False,
                        count_include_pad=True, divisor_override=None):
    """Average pooling backward on the fastest path: gradient w.r.t. the input."""
    if isinstance(dout, np.ndarray):
        from ._pooling_numba import avg_pool2d_backward_numba
        return avg_pool2d_backward_numba(dout, input_shape, kernel_size, stride, padding,
                                         ceil_mode, count_include_pad, divisor_override)
    return avg_pool2d_backward_reference(dout, input_shape, kernel_size, stride, padding,
                                         ceil_mode, count_include_pad, divisor_override)
