"""Exercise checks of notebook 2 (convolution as im2col): im2col of one image, col2im, and
a convolution as one matrix product."""
from __future__ import annotations

import numpy as np

from minidl.kernels.naive import col2im_naive, conv2d_forward_naive, im2col_naive

from . import CheckFailed, Result, compare_arrays, run_check

__all__ = ["check_im2col", "check_col2im", "check_conv2d_forward"]


def _image(seed=0, c=2, h=5, w=6):
    return np.random.default_rng(seed).standard_normal((c, h, w))


def check_im2col(im2col) -> Result:
    """``im2col(x, k, stride, pad)`` for one image ``(C, H, W)`` -> ``(C*k*k, Ho*Wo)``, rows
    ordered ``(c, i, j)``, against ``im2col_naive``."""
    def body(fn):
        for k, stride, pad in ((3, 1, 1), (2, 2, 0), (3, 2, 1)):
            x = _image()
            expected = im2col_naive(x[None], k, stride, pad)[0]
            got = np.asarray(fn(x, k, stride, pad))
            if got.shape == expected.shape:
                c = x.shape[0]
                swapped = expected.reshape(c, k * k, -1).transpose(1, 0, 2).reshape(expected.shape)
                if np.allclose(got, swapped) and not np.allclose(got, expected):
                    raise CheckFailed("the rows are ordered (i, j, c); im2col orders them "
                                      "(c, i, j): row = (c*k + i)*k + j")
            compare_arrays(f"im2col(x, k={k}, stride={stride}, pad={pad}) of a (2, 5, 6) image",
                           got, expected)
        return "equals im2col_naive for three kernel/stride/padding settings"
    return run_check("im2col", body, im2col)


def check_col2im(col2im) -> Result:
    """``col2im(cols, shape, k, stride, pad)`` for one image (``shape = (C, H, W)``): every
    column entry added back to its pixel, against ``col2im_naive``."""
    def body(fn):
        for k, stride, pad in ((3, 1, 1), (2, 2, 0)):
            shape = (2, 5, 6)
            cols = im2col_naive(_image()[None], k, stride, pad)[0]
            cols = cols + np.random.default_rng(1).standard_normal(cols.shape)
            expected = col2im_naive(cols[None], (1, *shape), k, stride, pad)[0]
            got = np.asarray(fn(cols, shape, k, stride, pad))
            if got.shape == expected.shape and not np.allclose(got, expected):
                overlap = k > stride
                if overlap:
                    raise CheckFailed(
                        f"with k={k}, stride={stride} the patches overlap and the pixels "
                        f"in several patches are wrong: a pixel's gradient is the *sum* of "
                        f"its copies (+=, not =)")
            compare_arrays(f"col2im(cols, {shape}, k={k}, stride={stride}, pad={pad})", got,
                           expected)
        return "equals col2im_naive, overlapping patches included"
    return run_check("col2im", body, col2im)


def check_conv2d_forward(conv2d_forward) -> Result:
    """``conv2d_forward(x, weight, bias, stride, pad)`` for a batch ``(N, C, H, W)``, against
    the seven-loop ``conv2d_forward_naive``."""
    def body(fn):
        rng = np.random.default_rng(2)
        x = rng.standard_normal((2, 3, 6, 5))
        weight = rng.standard_normal((4, 3, 3, 3))
        bias = rng.standard_normal(4)
        for stride, pad in ((1, 1), (2, 0)):
            compare_arrays(f"conv2d_forward(x, weight, bias, stride={stride}, pad={pad})",
                           fn(x, weight, bias, stride, pad),
                           conv2d_forward_naive(x, weight, bias, stride, pad))
        return "equals conv2d_forward_naive on a batch of two images"
    return run_check("conv2d_forward", body, conv2d_forward)
