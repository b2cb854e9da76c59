"""Numba twins of the stride-1 convolution references (see ``conv_direct.py``).

Two implementations.  For float32 with the vector micro-kernels (``gemm.py``), all three
kernels -- forward, weight gradient, input gradient -- are an *implicit GEMM* (below,
after the loop version); the gradient twins exist only in that form (they raise
ValueError otherwise, and their dispatchers take the references).  ``Conv2d`` calls
``conv2d_direct_backward_numba``, which makes both gradients and the bias gradient in one
pass over ``dout``.  Otherwise the
forward is the loop version described next (about 3x slower than the implicit GEMM
for the lab CNNs' first layers, 4x faster than im2col + GEMM).

The loop version, one image at a time: the image is copied into a zero-padded buffer of row
length ``Wp = W + 2*pw``, so that for output row ``p`` and tap ``(i, j)`` the
inputs of the whole row -- and of all rows -- sit at one constant offset:

    acc[p*Wp + q] += W[o, c, i, j] * x_pad_flat[(c*Hp + p + i*dh)*Wp + q + j*dw]

for the flat index ``p*Wp + q`` running over ``H_out*Wp`` values (the
``Wp - W_out`` extra columns of each row are computed and thrown away).  That is
one long, branch-free loop per tap, which the compiler vectorises; taps are
taken three per pass (one load and store of ``acc`` for three products).  The
last step adds the bias while copying the valid columns into ``y``.

Parallel units: images (each owns its output planes and its buffers).
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from ._gemm_numba import (LANES, NN_COLS, NN_ROWS, NT_COLS, NT_ROWS, _nn_tile, _nn_tile_gather,
                          _nn_tile_scatter_add, _nt_tile_gather, _pack_a, parallel_work)
from ._parallel import check_float_array, pick
from .gemm import implicit_gemm_applies
from .registry import reference
from .shapes import direct_conv_geometry, direct_conv_grad_geometry

# The gradients work on this many images at a time: their scratch buffers (padded
# images, dout in the wide layout) stay a few MB whatever the batch size.
CHUNK_IMAGES = 32


@njit(cache=True, error_model="numpy")
def _conv_image(x, n, weight, bias, ph, pw, dh, dw, zero, x_pad, acc, y):
    """y[n] for image ``n``, using the scratch buffers ``x_pad`` (C, Hp, Wp, zero
    borders) and ``acc``; ``zero`` is 0 in the arrays' dtype."""
    c_in, h, w = x.shape[1], x.shape[2], x.shape[3]
    c_out, kh, kw = weight.shape[0], weight.shape[2], weight.shape[3]
    hp, wp = x_pad.shape[1], x_pad.shape[2]
    ho, wo = y.shape[2], y.shape[3]
    size = ho * wp
    for c in range(c_in):
        for r in range(h):
            for s in range(w):
                x_pad[c, r + ph, s + pw] = x[n, c, r, s]
    flat = x_pad.reshape(-1)
    for o in range(c_out):
        for q in range(size):
            acc[q] = zero
        for c in range(c_in):
            for i in range(kh):
                row = (c * hp + i * dh) * wp
                j = 0
                while j + 2 < kw:
                    w0, w1, w2 = weight[o, c, i, j], weight[o, c, i, j + 1], weight[o, c, i, j + 2]
                    x0 = flat[row + j * dw:row + j * dw + size]
                    x1 = flat[row + (j + 1) * dw:row + (j + 1) * dw + size]
                    x2 = flat[row + (j + 2) * dw:row + (j + 2) * dw + size]
                    for q in range(size):
                        acc[q] += w0 * x0[q] + w1 * x1[q] + w2 * x2[q]
                    j += 3
                while j < kw:
                    w0 = weight[o, c, i, j]
                    x0 = flat[row + j * dw:row + j * dw + size]
                    for q in range(size):
                        acc[q] += w0 * x0[q]
                    j += 1
        b = bias[o]
        for p in range(ho):
            for q in range(wo):
                y[n, o, p, q] = acc[p * wp + q] + b


@njit(parallel=True, cache=True, error_model="numpy")
def _conv_parallel(x, weight, bias, ph, pw, dh, dw, zero, hp, wp, y):
    for n in prange(x.shape[0]):
        x_pad = np.zeros((x.shape[1], hp, wp), x.dtype)
        acc = np.empty(y.shape[2] * wp, x.dtype)
        _conv_image(x, n, weight, bias, ph, pw, dh, dw, zero, x_pad, acc, y)


@njit(cache=True, error_model="numpy")
def _conv_serial(x, weight, bias, ph, pw, dh, dw, zero, hp, wp, y):
    x_pad = np.zeros((x.shape[1], hp, wp), x.dtype)   # borders stay zero, the
    acc = np.empty(y.shape[2] * wp, x.dtype)           # interior is rewritten per image
    for n in range(x.shape[0]):
        _conv_image(x, n, weight, bias, ph, pw, dh, dw, zero, x_pad, acc, y)


def conv2d_direct_forward_numba(x, weight, bias, padding=0, dilation=1):
    """Numba stride-1 convolution; equals ``conv2d_direct_forward_reference`` to rounding."""
    owner = "conv2d_direct_forward"
    x = check_float_array(x, owner, "x", 4)
    weight = check_float_array(weight, owner, "weight", 4)
    (ph, pw), (dh, dw), (ho, wo) = direct_conv_geometry(x, weight, bias, padding, dilation,
                                                        owner)
    if weight.dtype != x.dtype:
        raise ValueError(f"{owner}: expected weight of dtype {x.dtype}, got {weight.dtype}")
    if bias is None:
        bias = np.zeros(weight.shape[0], x.dtype)
    bias = check_float_array(bias, owner, "bias", 1).astype(x.dtype, copy=False)
    if implicit_gemm_applies(x, weight.shape, weight.dtype):
        return _implicit_forward(x, weight, bias, ph, pw, dh, dw)
    n, c_in, h, w = x.shape
    kh, kw = weight.shape[2:]
    wp = w + 2 * pw
    # rows: the padded image (H + 2*ph = H_out + (kh-1)*dh), plus one so that the
    # last row's taps, which run up to (kw-1)*dw < Wp past its end into thrown-away
    # columns, stay inside the buffer
    hp = h + 2 * ph + 1
    y = np.empty((n, weight.shape[0], ho, wo), dtype=x.dtype)
    run = pick(_conv_parallel, _conv_serial, n, y.size * c_in * kh * kw)
    run(x, weight, bias, ph, pw, dh, dw, x.dtype.type(0), hp, wp, y)
    return y


# == implicit GEMM (float32, vector micro-kernels) ============================================
#
# The padded image is laid out with ``Wp = W + 2*pw`` columns per row and ``hq`` rows per
# channel plane (enough zero rows below the image that every read below stays inside the
# image's own buffer).  Output pixel ``(p, q)`` gets the "wide" index ``p*Wp + q``; the
# ``Wp - W_out`` extra columns of each row (and the indices up to ``lp``, the wide size
# rounded up to whole 32-column panels) are computed and thrown away.  With that layout,
# row ``t = (c, i, j)`` of the im2col matrix of one image *is* the padded buffer read from
# offset ``offs[t] = (c*hq + i*dh)*Wp + j*dw`` on: the micro-kernels read it in place
# (``_nn_tile_gather``, ``_nt_tile_gather``) or add into it (``_nn_tile_scatter_add``), and
# no im2col matrix is ever written.  The weight gradient multiplies the wide dout (zero in
# the thrown-away columns) by such windows; a thrown-away column can pair a zero with a
# real pixel, which is exact unless that pixel is inf or NaN: inputs holding those take
# the reference (so NaN reaches exactly the entries it reaches there).

def _implicit_geometry(h, w, kh, kw, ph, pw, dh, dw):
    hp, wp = h + 2 * ph, w + 2 * pw
    ho, wo = hp - dh * (kh - 1), wp - dw * (kw - 1)
    lp = -(-(ho * wp) // NN_COLS) * NN_COLS
    hq = (kh - 1) * dh + -(-(lp + (kw - 1) * dw) // wp)
    return wp, ho, wo, lp, hq


@njit(cache=True)
def _tap_offsets(c_in, kh, kw, dh, dw, hq, wp):
    offs = np.empty(c_in * kh * kw, np.int64)
    t = 0
    for c in range(c_in):
        for i in range(kh):
            for j in range(kw):
                offs[t] = (c * hq + i * dh) * wp + j * dw
                t += 1
    return offs


@njit(cache=True, error_model="numpy")
def _pad_one(x, n, ph, pw, out):
    """Zero ``out[n]`` and copy image ``n`` into its interior; its number of inf/NaN values."""
    out[n] = 0
    c_in, h, w = x.shape[1], x.shape[2], x.shape[3]
    bad = 0
    for c in range(c_in):
        for r in range(h):
            src = x[n, c, r]
            dst = out[n, c, r + ph, pw:pw + w]
            for s in range(w):
                v = src[s]
                dst[s] = v
                bad += (v - v) != (v - v)      # NaN exactly for inf and NaN
    return bad


# The batch drivers fill arrays allocated by the caller, each image zeroed by the thread
# that copies it (an np.zeros and a sum reduction inside the prange function made the
# parallel twin slower than the serial one).
@njit(parallel=True, cache=True, error_model="numpy")
def _pad_images_parallel(x, ph, pw, out, bad):
    for n in prange(x.shape[0]):
        bad[n] = _pad_one(x, n, ph, pw, out)


@njit(cache=True, error_model="numpy")
def _pad_images_serial(x, ph, pw, out, bad):
    for n in range(x.shape[0]):
        bad[n] = _pad_one(x, n, ph, pw, out)


def _pad_images(x, ph, pw, hq, wp):
    """(padded copy (N, C, hq, wp) of ``x``, number of inf/NaN values in ``x``)."""
    out = np.empty((x.shape[0], x.shape[1], hq, wp), x.dtype)
    bad = np.empty(x.shape[0], np.int64)
    run = pick(_pad_images_parallel, _pad_images_serial, x.shape[0], 2 * out.size)
    run(x, ph, pw, out, bad)
    return out, int(bad.sum())


@njit(cache=True)
def _wide_one(dout, n, wp, out, sums):
    """Image ``n`` of the wide dout (zero between rows), and its per-channel sums (float64)."""
    out[n] = 0
    c_out, ho, wo = dout.shape[1], dout.shape[2], dout.shape[3]
    column_sums = np.empty(wo, np.float64)   # one running sum per column: SIMD, where one
    for o in range(c_out):                   # scalar sum would be a chain of dependent adds
        column_sums[:] = 0
        for p in range(ho):
            dst = out[n, o, p * wp:p * wp + wo]
            src = dout[n, o, p]
            for q in range(wo):
                dst[q] = src[q]
                column_sums[q] += src[q]
        sums[n, o] = column_sums.sum()


@njit(parallel=True, cache=True)
def _wide_dout_parallel(dout, wp, out, sums):
    for n in prange(dout.shape[0]):
        _wide_one(dout, n, wp, out, sums)


@njit(cache=True)
def _wide_dout_serial(dout, wp, out, sums):
    for n in range(dout.shape[0]):
        _wide_one(dout, n, wp, out, sums)


def _wide_dout(dout, wp, lp):
    """(dout (N, O, Ho, Wo) -> (N, O, lp) with row ``p`` at ``p*wp`` and zeros elsewhere,
    the float64 sums (N, O) of each image's channels: the bias gradient's terms)."""
    out = np.empty((dout.shape[0], dout.shape[1], lp), dout.dtype)
    sums = np.empty((dout.shape[0], dout.shape[1]), np.float64)
    run = pick(_wide_dout_parallel, _wide_dout_serial, dout.shape[0], 2 * out.size)
    run(dout, wp, out, sums)
    return out, sums


@njit(cache=True)
def _pad_image(x, n, ph, pw, x_pad):
    """Copy image ``n`` into the interior of ``x_pad`` (C, hq, wp), whose border is zero."""
    c_in, h, w = x.shape[1], x.shape[2], x.shape[3]
    for c in range(c_in):
        for r in range(h):
            src = x[n, c, r]
            dst = x_pad[c, r + ph, pw:pw + w]
            for s in range(w):
                dst[s] = src[s]


@njit(cache=True, error_model="numpy")
def _implicit_forward_image(packed, offs, x, ph, pw, x_pad, bias, lp, wp, scratch, y, n):
    c_out, ho, wo = y.shape[1], y.shape[2], y.shape[3]
    t_len = offs.size
    _pad_image(x, n, ph, pw, x_pad)
    x_flat = x_pad.reshape(-1)
    for blk in range(-(-c_out // NN_ROWS)):
        for q0 in range(0, lp, NN_COLS):
            _nn_tile_gather(packed, x_flat, offs, scratch, blk * t_len * NN_ROWS, q0, q0, lp,
                            t_len)
        for r in range(min(NN_ROWS, c_out - blk * NN_ROWS)):
            o = blk * NN_ROWS + r
            b = bias[o]
            for p in range(ho):
                src = scratch[r * lp + p * wp:r * lp + p * wp + wo]
                dst = y[n, o, p]
                for q in range(wo):
                    dst[q] = src[q] + b


@njit(parallel=True, cache=True, error_model="numpy")
def _implicit_forward_parallel(packed, offs, x, ph, pw, hq, bias, lp, wp, y):
    for n in prange(y.shape[0]):
        scratch = np.empty(NN_ROWS * lp, np.float32)
        x_pad = np.zeros((x.shape[1], hq, wp), np.float32)
        _implicit_forward_image(packed, offs, x, ph, pw, x_pad, bias, lp, wp, scratch, y, n)


@njit(cache=True, error_model="numpy")
def _implicit_forward_serial(packed, offs, x, ph, pw, hq, bias, lp, wp, y):
    scratch = np.empty(NN_ROWS * lp, np.float32)
    x_pad = np.zeros((x.shape[1], hq, wp), np.float32)    # the border stays zero
    for n in range(y.shape[0]):
        _implicit_forward_image(packed, offs, x, ph, pw, x_pad, bias, lp, wp, scratch, y, n)


@njit(cache=True, error_model="numpy")
def _implicit_weight_grad_rows(g_flat, x_flat, offs, n_img, c_out, lp, img_size, block, dw_mat,
                               o_lo, o_hi):
    """Rows ``[o_lo, o_hi)`` of dW (O, T): NT tiles summed over the images, ``block`` images
    at a time (their wide dout and padded images stay in cache across the tiles)."""
    t_len = offs.size
    partial = np.empty(-(-NT_ROWS * NT_COLS // LANES) * LANES, np.float32)
    for o in range(o_lo, o_hi):
        for t in range(t_len):
            dw_mat[o, t] = 0
    for n0 in range(0, n_img, block):
        reps = min(block, n_img - n0)
        for o in range(o_lo, o_hi, NT_ROWS):
            o0 = min(o, c_out - NT_ROWS)            # an edge tile is shifted back inside
            for t in range(0, t_len, NT_COLS):
                t0 = min(t, t_len - NT_COLS)
                _nt_tile_gather(g_flat, x_flat, offs[t0:t0 + NT_COLS], partial,
                                n0 * c_out * lp + o0 * lp, lp, c_out * lp, n0 * img_size,
                                img_size, reps, lp // LANES)
                for r in range(NT_ROWS):
                    if o0 + r < o or o0 + r >= o_hi:
                        continue
                    for s in range(NT_COLS):
                        if t0 + s >= t:
                            dw_mat[o0 + r, t0 + s] += partial[r * NT_COLS + s]


@njit(parallel=True, cache=True, error_model="numpy")
def _implicit_weight_grad_parallel(g_flat, x_flat, offs, n_img, c_out, lp, img_size, block,
                                   dw_mat):
    for tile in prange(-(-c_out // NT_ROWS)):
        _implicit_weight_grad_rows(g_flat, x_flat, offs, n_img, c_out, lp, img_size, block,
                                   dw_mat, tile * NT_ROWS, min(c_out, (tile + 1) * NT_ROWS))


@njit(cache=True, error_model="numpy")
def _implicit_weight_grad_serial(g_flat, x_flat, offs, n_img, c_out, lp, img_size, block,
                                 dw_mat):
    _implicit_weight_grad_rows(g_flat, x_flat, offs, n_img, c_out, lp, img_size, block, dw_mat,
                               0, c_out)


@njit(cache=True, error_model="numpy")
def _implicit_input_grad_image(packed_t, g_flat, offs, dx_flat, n, c_out, lp, img_size,
                               scratch):
    """Add ``W_mat^T G_n`` of image ``n`` into its padded input-gradient buffer: col2im
    fused into the product, tile by tile (tiles of one image run in order: their
    windows overlap)."""
    t_len = offs.size
    for blk in range(-(-t_len // NN_ROWS)):
        rows = min(NN_ROWS, t_len - blk * NN_ROWS)
        for q0 in range(0, lp, NN_COLS):
            b_off = n * c_out * lp + q0
            if rows == NN_ROWS:
                _nn_tile_scatter_add(packed_t, g_flat, dx_flat,
                                     offs[blk * NN_ROWS:(blk + 1) * NN_ROWS],
                                     blk * c_out * NN_ROWS, b_off, lp, n * img_size + q0, c_out)
            else:     # last partial block of taps: through a scratch tile
                _nn_tile(packed_t, g_flat, scratch, blk * c_out * NN_ROWS, b_off, lp, 0,
                         NN_COLS, c_out)
                for r in range(rows):
                    dst = dx_flat[n * img_size + q0 + offs[blk * NN_ROWS + r]:]
                    for q in range(NN_COLS):
                        dst[q] += scratch[r * NN_COLS + q]


@njit(parallel=True, cache=True, error_model="numpy")
def _implicit_input_grad_parallel(packed_t, g_flat, offs, dx_flat, n_img, c_out, lp, img_size):
    for n in prange(n_img):
        scratch = np.empty(NN_ROWS * NN_COLS, np.float32)
        _implicit_input_grad_image(packed_t, g_flat, offs, dx_flat, n, c_out, lp, img_size,
                                   scratch)


@njit(cache=True, error_model="numpy")
def _implicit_input_grad_serial(packed_t, g_flat, offs, dx_flat, n_img, c_out, lp, img_size):
    scratch = np.empty(NN_ROWS * NN_COLS, np.float32)
    for n in range(n_img):
        _implicit_input_grad_image(packed_t, g_flat, offs, dx_flat, n, c_out, lp, img_size,
                                   scratch)


@njit(cache=True)
def _crop_into(dx_pad, ph, pw, dx, n0):
    """dx[n0 + n] = dx_pad[n] without its padding, for every image of ``dx_pad``."""
    c_in, h, w = dx.shape[1], dx.shape[2], dx.shape[3]
    for n in range(dx_pad.shape[0]):
        for c in range(c_in):
            for r in range(h):
                src = dx_pad[n, c, r + ph, pw:pw + w]
                dst = dx[n0 + n, c, r]
                for s in range(w):
                    dst[s] = src[s]


def _implicit_forward(x, weight, bias, ph, pw, dh, dw):
    n, c_in, h, w = x.shape
    c_out, _, kh, kw = weight.shape
    wp, ho, wo, lp, hq = _implicit_geometry(h, w, kh, kw, ph, pw, dh, dw)
    offs = _tap_offsets(c_in, kh, kw, dh, dw, hq, wp)
    packed = _pack_a(np.ascontiguousarray(weight.reshape(c_out, -1)))
    y = np.empty((n, c_out, ho, wo), np.float32)
    run = pick(_implicit_forward_parallel, _implicit_forward_serial, n,
               parallel_work(n * c_out * lp * offs.size))
    run(packed, offs, x, ph, pw, hq, bias, lp, wp, y)
    return y


def _check_weight_grad_args(x, dout, weight_shape, padding, dilation, owner):
    x = check_float_array(x, owner, "x", 4)
    dout = check_float_array(dout, owner, "dout", 4)
    (ph, pw), (dh, dw), _ = direct_conv_grad_geometry(x.shape, dout.shape, weight_shape,
                                                      padding, dilation, owner)
    if x.dtype != np.float32 or dout.dtype != np.float32:
        raise ValueError(f"{owner}: the implicit GEMM is float32 only, got {x.dtype}, "
                         f"{dout.dtype}")
    c_out, c_in, kh, kw = (int(v) for v in weight_shape)
    if c_out < NT_ROWS or c_in * kh * kw < NT_COLS:
        raise ValueError(f"{owner}: the implicit GEMM needs at least {NT_ROWS} output channels "
                         f"and {NT_COLS} kernel taps, got weight shape {tuple(weight_shape)}")
    return x, dout, (ph, pw, dh, dw)


def _check_input_grad_args(dout, weight, input_shape, padding, dilation, owner):
    dout = check_float_array(dout, owner, "dout", 4)
    weight = check_float_array(weight, owner, "weight", 4)
    (ph, pw), (dh, dw), _ = direct_conv_grad_geometry(input_shape, dout.shape, weight.shape,
                                                      padding, dilation, owner)
    if dout.dtype != np.float32 or weight.dtype != np.float32:
        raise ValueError(f"{owner}: the implicit GEMM is float32 only, got {dout.dtype}, "
                         f"{weight.dtype}")
    return dout, weight, (ph, pw, dh, dw)


def _implicit_backward(x, dout, weight, weight_shape, input_shape, padding, dilation,
                       want_dw, want_dx):
    """``(dL/dW or None, dL/db, dL/dx or None)`` by the implicit GEMM, ``CHUNK_IMAGES`` images
    at a time (bounded scratch memory); each chunk's wide dout is made once and serves all
    three (dL/db = the sum of dout over images and pixels, accumulated in float64)."""
    (ph, pw), (dh, dw) = padding, dilation
    n, c_in, h, w = (int(v) for v in input_shape)
    c_out, _, kh, kw = (int(v) for v in weight_shape)
    wp, _, _, lp, hq = _implicit_geometry(h, w, kh, kw, ph, pw, dh, dw)
    offs = _tap_offsets(c_in, kh, kw, dh, dw, hq, wp)
    img_size = c_in * hq * wp
    chunk_work = parallel_work(min(n, CHUNK_IMAGES) * c_out * lp * offs.size)
    dw_out = dx = None
    db = np.zeros(c_out, np.float64)
    if want_dw:
        block = max(1, (1 << 19) // (4 * (c_out * lp + img_size)))   # ~512 KB of images a pass
        run_w = pick(_implicit_weight_grad_parallel, _implicit_weight_grad_serial,
                     -(-c_out // NT_ROWS), chunk_work)
        dw_mat = np.zeros((c_out, offs.size), np.float32)
        part = np.empty_like(dw_mat)
    if want_dx and not np.isfinite(weight).all():
        # the thrown-away columns would multiply inf/NaN weights by zeros
        dx = reference("conv2d_direct_input_grad")(dout, weight, input_shape, padding, dilation)
        want_dx = False
    if want_dx:
        packed_t = _pack_a(weight.reshape(c_out, -1).T)
        run_x = pick(_implicit_input_grad_parallel, _implicit_input_grad_serial,
                     min(n, CHUNK_IMAGES), chunk_work)
        dx = np.empty((n, c_in, h, w), np.float32)
    for n0 in range(0, n, CHUNK_IMAGES):
        n1 = min(n, n0 + CHUNK_IMAGES)
        g, sums = _wide_dout(dout[n0:n1], wp, lp)
        db += sums.sum(axis=0)
        if want_dw:
            x_pad, non_finite = _pad_images(x[n0:n1], ph, pw, hq, wp)
            if non_finite:     # see the note on the layout above
                dw_out = reference("conv2d_direct_weight_grad")(x, dout, weight_shape, padding,
                                                                dilation)
                want_dw = False
            else:
                run_w(g.reshape(-1), x_pad.reshape(-1), offs, n1 - n0, c_out, lp, img_size,
                      block, part)
                dw_mat += part
        if want_dx:
            dx_pad = np.zeros((n1 - n0, c_in, hq, wp), np.float32)
            run_x(packed_t, g.reshape(-1), offs, dx_pad.reshape(-1), n1 - n0, c_out, lp,
                  img_size)
            _crop_into(dx_pad, ph, pw, dx, n0)
    if want_dw:
        dw_out = dw_mat.reshape(c_out, c_in, kh, kw)
    return dw_out, db.astype(np.float32), dx


def conv2d_direct_weight_grad_numba(x, dout, weight_shape, padding=0, dilation=1):
    """dL/dW (O, C, kh, kw) of a stride-1 convolution by the implicit GEMM (float32; vector
    micro-kernels); equals ``conv2d_direct_weight_grad_reference`` to rounding."""
    x, dout, (ph, pw, dh, dw) = _check_weight_grad_args(x, dout, weight_shape, padding,
                                                         dilation, "conv2d_direct_weight_grad")
    return _implicit_backward(x, dout, None, weight_shape, x.shape, (ph, pw), (dh, dw),
                              True, False)[0]


def conv2d_direct_input_grad_numba(dout, weight, input_shape, padding=0, dilation=1):
    """dL/dx (N, C, H, W) of a stride-1 convolution by the implicit GEMM with col2im fused
    (float32; vector micro-kernels); equals ``conv2d_direct_input_grad_reference`` to
    rounding."""
    dout, weight, (ph, pw, dh, dw) = _check_input_grad_args(dout, weight, input_shape, padding,
                                                            dilation, "conv2d_direct_input_grad")
    return _implicit_backward(None, dout, weight, weight.shape, input_shape, (ph, pw),
                              (dh, dw), False, True)[2]


def conv2d_direct_backward_numba(x, dout, weight, padding=0, dilation=1, need_dx=True):
    """``(dL/dW, dL/db, dL/dx or None)`` of a stride-1 convolution in one pass over ``dout``:
    the two functions above and the bias gradient, sharing the wide copy of each chunk of
    ``dout``."""
    owner = "conv2d_direct_backward"
    weight = check_float_array(weight, owner, "weight", 4)
    x, dout, (ph, pw, dh, dw) = _check_weight_grad_args(x, dout, weight.shape, padding,
                                                         dilation, owner)
    if weight.dtype != np.float32:
        raise ValueError(f"{owner}: the implicit GEMM is float32 only, got weight "
                         f"{weight.dtype}")
    return _implicit_backward(x, dout, weight, weight.shape, x.shape, (ph, pw), (dh, dw),
                              True, bool(need_dx))
