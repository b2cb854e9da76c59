"""Numba twins of the pooling references in ``pooling.py`` (same rules, one image at a time).

The scans below are PyTorch's CPU loops written out: for max pooling,
``if value > best or isnan(value)`` over the in-bounds positions of the window
in row-major order; for average pooling, a sum in the input's dtype divided by
the window's divisor.

Speed: the general loops run a few nanoseconds per window tap (short loops of
unknown length, unpredictable branches).  Two cheaper routes give the same
results: an image without NaN (checked with a vectorised count first) only needs
"first strict maximum", which skips the NaN test and, for windows wholly
inside the image, the bounds tests; and the ubiquitous kernel-2/stride-2
window is written out tap by tap, which the compiler vectorises (about 10x
faster than the exact scan on the lab CNN's first pooling layer).
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from ._parallel import check_float_array, pick
from .shapes import avg_pool_geometry, pool_geometry


@njit(cache=True)
def _count_nan(x):
    """Number of NaNs in ``x`` (a vectorised integer sum, ~0.05 ns per element)."""
    flat = x.reshape(x.size)
    count = 0
    for k in range(flat.size):
        count += flat[k] != flat[k]
    return count


@njit(cache=True)
def _is_plain_2x2(kh, kw, sh, sw, ph, pw, dh, dw, h, w, out):
    """Kernel 2, stride 2, no padding or dilation, every window inside the image
    (``ceil_mode`` on an odd size adds a clipped window: not plain)."""
    return (kh == 2 and kw == 2 and sh == 2 and sw == 2 and ph == 0 and pw == 0 and dh == 1
            and dw == 1 and 2 * out.shape[1] <= h and 2 * out.shape[2] <= w)


@njit(cache=True)
def _max_pool_image_exact(x, kh, kw, sh, sw, ph, pw, dh, dw, out, index):
    """x (C, H, W) -> out, index (C, Ho, Wo): PyTorch's scan, NaN rule included."""
    n_chan, h, w = x.shape
    ho, wo = out.shape[1], out.shape[2]
    for c in range(n_chan):
        for oh in range(ho):
            hstart = oh * sh - ph
            for ow in range(wo):
                wstart = ow * sw - pw
                best = -np.inf
                best_index = -1
                for i in range(kh):
                    ih = hstart + i * dh
                    if ih < 0 or ih >= h:
                        continue
                    for j in range(kw):
                        iw = wstart + j * dw
                        if iw < 0 or iw >= w:
                            continue
                        value = x[c, ih, iw]
                        if best_index < 0 or value > best or np.isnan(value):
                            best = value
                            best_index = ih * w + iw
                out[c, oh, ow] = best
                index[c, oh, ow] = best_index


@njit(cache=True)
def _max_pool_image_no_nan(x, kh, kw, sh, sw, ph, pw, dh, dw, out, index):
    """The exact scan for an image without NaN, where it reduces to "first strict maximum".

    Windows that lie wholly inside the image start from their first tap and
    skip the bounds tests; border windows take the exact scan's path.
    """
    n_chan, h, w = x.shape
    ho, wo = out.shape[1], out.shape[2]
    for c in range(n_chan):
        for oh in range(ho):
            hstart = oh * sh - ph
            rows_inside = hstart >= 0 and hstart + (kh - 1) * dh < h
            for ow in range(wo):
                wstart = ow * sw - pw
                if rows_inside and wstart >= 0 and wstart + (kw - 1) * dw < w:
                    best = x[c, hstart, wstart]
                    best_index = hstart * w + wstart
                    for i in range(kh):
                        ih = hstart + i * dh
                        for j in range(kw):
                            iw = wstart + j * dw
                            value = x[c, ih, iw]
                            if value > best:
                                best = value
                                best_index = ih * w + iw
                else:
                    best = -np.inf
                    best_index = -1
                    for i in range(kh):
                        ih = hstart + i * dh
                        if ih < 0 or ih >= h:
                            continue
                        for j in range(kw):
                            iw = wstart + j * dw
                            if iw < 0 or iw >= w:
                                continue
                            value = x[c, ih, iw]
                            if best_index < 0 or value > best:
                                best = value
                                best_index = ih * w + iw
                out[c, oh, ow] = best
                index[c, oh, ow] = best_index


@njit(cache=True)
def _max_pool_image_2x2(x, out, index):
    """kernel 2, stride 2, no padding or dilation, no NaN: the four taps written out
    (the compiler vectorises this; the generic loops run ~5x slower)."""
    n_chan, h, w = x.shape
    ho, wo = out.shape[1], out.shape[2]
    for c in range(n_chan):
        for oh in range(ho):
            top = x[c, 2 * oh]
            bottom = x[c, 2 * oh + 1]
            for ow in range(wo):
                best = top[2 * ow]
                tap = 0
                value = top[2 * ow + 1]
                if value > best:
                    best = value
                    tap = 1
                value = bottom[2 * ow]
                if value > best:
                    best = value
                    tap = 2
                value = bottom[2 * ow + 1]
                if value > best:
                    best = value
                    tap = 3
                out[c, oh, ow] = best
                index[c, oh, ow] = (2 * oh + tap // 2) * w + 2 * ow + tap % 2


@njit(cache=True)
def _max_pool_image(x, kh, kw, sh, sw, ph, pw, dh, dw, out, index):
    """x (C, H, W) -> out, index (C, Ho, Wo) for one image.

    Without NaN, PyTorch's rule is "the first strict maximum", which the fast
    paths compute; an image holding a NaN takes the exact scan.
    """
    if _count_nan(x) > 0:
        _max_pool_image_exact(x, kh, kw, sh, sw, ph, pw, dh, dw, out, index)
    elif _is_plain_2x2(kh, kw, sh, sw, ph, pw, dh, dw, x.shape[1], x.shape[2], out):
        _max_pool_image_2x2(x, out, index)
    else:
        _max_pool_image_no_nan(x, kh, kw, sh, sw, ph, pw, dh, dw, out, index)


@njit(cache=True)
def _max_pool_backward_image(dout, index, dx):
    """dout, index (C, Ho*Wo) -> dx (C, H*W) for one image; returns the number of
    indices outside [0, H*W) (skipped: writing there would corrupt memory)."""
    dx[...] = 0
    size = dx.shape[1]
    bad = 0
    for c in range(dout.shape[0]):
        for k in range(dout.shape[1]):
            at = index[c, k]
            if at < 0 or at >= size:
                bad += 1
            else:
                dx[c, at] += dout[c, k]
    return bad


@njit(cache=True)
def _avg_pool_image(x, kh, kw, sh, sw, ph, pw, include_pad, override, out):
    """x (C, H, W) -> out (C, Ho, Wo) for one image."""
    n_chan, h, w = x.shape
    ho, wo = out.shape[1], out.shape[2]
    if _is_plain_2x2(kh, kw, sh, sw, ph, pw, 1, 1, h, w, out):
        # the common case written out; same sum order (row-major) and division
        divisor = override if override > 0 else 4
        for c in range(n_chan):
            for oh in range(ho):
                top = x[c, 2 * oh]
                bottom = x[c, 2 * oh + 1]
                for ow in range(wo):
                    total = x.dtype.type(0)
                    total += top[2 * ow]
                    total += top[2 * ow + 1]
                    total += bottom[2 * ow]
                    total += bottom[2 * ow + 1]
                    out[c, oh, ow] = total / divisor
        return
    for oh in range(ho):
        hstart = oh * sh - ph
        hend = min(hstart + kh, h + ph)
        h0, h1 = max(hstart, 0), min(hend, h)
        for ow in range(wo):
            wstart = ow * sw - pw
            wend = min(wstart + kw, w + pw)
            w0, w1 = max(wstart, 0), min(wend, w)
            if override > 0:
                divisor = override
            elif include_pad:
                divisor = (hend - hstart) * (wend - wstart)
            else:
                divisor = max((h1 - h0) * (w1 - w0), 1)
            for c in range(n_chan):
                total = x.dtype.type(0)
                for ih in range(h0, h1):
                    for iw in range(w0, w1):
                        total += x[c, ih, iw]
                out[c, oh, ow] = total / divisor


@njit(cache=True)
def _avg_pool_backward_image(dout, kh, kw, sh, sw, ph, pw, include_pad, override, dx):
    """dout (C, Ho, Wo) -> dx (C, H, W) for one image."""
    n_chan, h, w = dx.shape
    ho, wo = dout.shape[1], dout.shape[2]
    dx[...] = 0
    if _is_plain_2x2(kh, kw, sh, sw, ph, pw, 1, 1, h, w, dout):
        divisor = override if override > 0 else 4
        for c in range(n_chan):
            for oh in range(ho):
                top = dx[c, 2 * oh]
                bottom = dx[c, 2 * oh + 1]
                for ow in range(wo):
                    share = dx.dtype.type(dout[c, oh, ow] / divisor)
                    top[2 * ow] += share
                    top[2 * ow + 1] += share
                    bottom[2 * ow] += share
                    bottom[2 * ow + 1] += share
        return
    for c in range(n_chan):
        for oh in range(ho):
            hstart = oh * sh - ph
            hend = min(hstart + kh, h + ph)
            h0, h1 = max(hstart, 0), min(hend, h)
            for ow in range(wo):
                wstart = ow * sw - pw
                wend = min(wstart + kw, w + pw)
                w0, w1 = max(wstart, 0), min(wend, w)
                if override > 0:
                    divisor = override
                elif include_pad:
                    divisor = (hend - hstart) * (wend - wstart)
                else:
                    divisor = max((h1 - h0) * (w1 - w0), 1)
                share = dx.dtype.type(dout[c, oh, ow] / divisor)
                for ih in range(h0, h1):
                    for iw in range(w0, w1):
                        dx[c, ih, iw] += share


# -- batch drivers: prange (each thread owns whole images) and serial ---------------

@njit(parallel=True, cache=True)
def _max_pool_parallel(x, kh, kw, sh, sw, ph, pw, dh, dw, out, index):
    for n in prange(x.shape[0]):
        _max_pool_image(x[n], kh, kw, sh, sw, ph, pw, dh, dw, out[n], index[n])


@njit(cache=True)
def _max_pool_serial(x, kh, kw, sh, sw, ph, pw, dh, dw, out, index):
    for n in range(x.shape[0]):
        _max_pool_image(x[n], kh, kw, sh, sw, ph, pw, dh, dw, out[n], index[n])


@njit(parallel=True, cache=True)
def _max_pool_backward_parallel(dout, index, dx):
    bad = 0
    for n in prange(dx.shape[0]):
        bad += _max_pool_backward_image(dout[n], index[n], dx[n])
    return bad


@njit(cache=True)
def _max_pool_backward_serial(dout, index, dx):
    bad = 0
    for n in range(dx.shape[0]):
        bad += _max_pool_backward_image(dout[n], index[n], dx[n])
    return bad


@njit(parallel=True, cache=True)
def _avg_pool_parallel(x, kh, kw, sh, sw, ph, pw, include_pad, override, out):
    for n in prange(x.shape[0]):
        _avg_pool_image(x[n], kh, kw, sh, sw, ph, pw, include_pad, override, out[n])


@njit(cache=True)
def _avg_pool_serial(x, kh, kw, sh, sw, ph, pw, include_pad, override, out):
    for n in range(x.shape[0]):
        _avg_pool_image(x[n], kh, kw, sh, sw, ph, pw, include_pad, override, out[n])


@njit(parallel=True, cache=True)
def _avg_pool_backward_parallel(dout, kh, kw, sh, sw, ph, pw, include_pad, override, dx):
    for n in prange(dx.shape[0]):
        _avg_pool_backward_image(dout[n], kh, kw, sh, sw, ph, pw, include_pad, override, dx[n])


@njit(cache=True)
def _avg_pool_backward_serial(dout, kh, kw, sh, sw, ph, pw, include_pad, override, dx):
    for n in range(dx.shape[0]):
        _avg_pool_backward_image(dout[n], kh, kw, sh, sw, ph, pw, include_pad, override, dx[n])


# -- Python wrappers -------------------------------------------------------------------

def max_pool2d_forward_numba(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    """Numba max pooling; equals ``max_pool2d_forward_reference`` (values and indices)."""
    x = check_float_array(x, "max_pool2d", "x", 4)
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw), (dh, dw), (ho, wo) = pool_geometry(
        (h, w), kernel_size, stride, padding, dilation, ceil_mode, "max_pool2d")
    out = np.empty((n, c, ho, wo), dtype=x.dtype)
    index = np.empty((n, c, ho, wo), dtype=np.int64)
    run = pick(_max_pool_parallel, _max_pool_serial, n, out.size * kh * kw)
    run(x, kh, kw, sh, sw, ph, pw, dh, dw, out, index)
    return out, index


def max_pool2d_backward_numba(dout, indices, input_shape):
    """Numba max-pool backward; equals ``max_pool2d_backward_reference``."""
    dout = check_float_array(dout, "max_pool2d_backward", "dout", 4)
    n, c, h, w = (int(v) for v in input_shape)
    if tuple(indices.shape) != dout.shape or dout.shape[:2] != (n, c):
        raise ValueError(f"max_pool2d_backward: expected dout and indices of one shape "
                         f"(N, C, Ho, Wo) with (N, C) = {(n, c)}, got {tuple(dout.shape)} "
                         f"and {tuple(indices.shape)}")
    index = np.ascontiguousarray(indices, dtype=np.int64).reshape(n, c, -1)
    dx = np.empty((n, c, h * w), dtype=dout.dtype)
    run = pick(_max_pool_backward_parallel, _max_pool_backward_serial, n, dx.size + dout.size)
    if run(dout.reshape(n, c, -1), index, dx):
        raise ValueError(f"max_pool2d_backward: indices must lie in [0, {h * w}) for an input "
                         f"of spatial size {(h, w)}")
    return dx.reshape(n, c, h, w)


def avg_pool2d_forward_numba(x, kernel_size, stride=None, padding=0, ceil_mode=False,
                             count_include_pad=True, divisor_override=None):
    """Numba average pooling; equals ``avg_pool2d_forward_reference``."""
    x = check_float_array(x, "avg_pool2d", "x", 4)
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw), _, (ho, wo) = avg_pool_geometry(
        x.shape, kernel_size, stride, padding, ceil_mode, divisor_override)
    out = np.empty((n, c, ho, wo), dtype=x.dtype)
    run = pick(_avg_pool_parallel, _avg_pool_serial, n, out.size * kh * kw)
    run(x, kh, kw, sh, sw, ph, pw, bool(count_include_pad), int(divisor_override or 0), out)
    return out


def avg_pool2d_backward_numba(dout, input_shape, kernel_size, stride=None, padding=0,
                              ceil_mode=False, count_include_pad=True, divisor_override=None):
    """Numba average-pool backward; equals ``avg_pool2d_backward_reference``."""
    dout = check_float_array(dout, "avg_pool2d_backward", "dout", 4)
    n, c, h, w = (int(v) for v in input_shape)
    (kh, kw), (sh, sw), (ph, pw), _, (ho, wo) = avg_pool_geometry(
        (n, c, h, w), kernel_size, stride, padding, ceil_mode, divisor_override)
    if dout.shape != (n, c, ho, wo):
        raise ValueError(f"avg_pool2d_backward: expected dout of shape {(n, c, ho, wo)}, "
                         f"got {tuple(dout.shape)}")
    dx = np.empty((n, c, h, w), dtype=dout.dtype)
    run = pick(_avg_pool_backward_parallel, _avg_pool_backward_serial, n, dout.size * kh * kw)
    run(dout, kh, kw, sh, sw, ph, pw, bool(count_include_pad), int(divisor_override or 0), dx)
    return dx
