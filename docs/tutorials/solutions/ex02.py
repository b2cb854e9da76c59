"""Solutions to notebook 2's exercises, and wrong answers the checks must reject."""
import numpy as np


def _out(h, w, k, stride, pad):
    return (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1


def im2col(x, k, stride, pad):
    c, h, w = x.shape
    ho, wo = _out(h, w, k, stride, pad)
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad)))
    cols = np.empty((c, k, k, ho, wo), dtype=x.dtype)
    for i in range(k):
        for j in range(k):
            cols[:, i, j] = xp[:, i:i + stride * ho:stride, j:j + stride * wo:stride]
    return cols.reshape(c * k * k, ho * wo)


def im2col_taps_first(x, k, stride, pad):
    c = x.shape[0]
    cols = im2col(x, k, stride, pad)
    return cols.reshape(c, k * k, -1).transpose(1, 0, 2).reshape(cols.shape)


def _col2im(cols, shape, k, stride, pad, add):
    c, h, w = shape
    ho, wo = _out(h, w, k, stride, pad)
    xp = np.zeros((c, h + 2 * pad, w + 2 * pad), dtype=cols.dtype)
    blocks = cols.reshape(c, k, k, ho, wo)
    for i in range(k):
        for j in range(k):
            window = (slice(None), slice(i, i + stride * ho, stride), slice(j, j + stride * wo, stride))
            if add:
                xp[window] += blocks[:, i, j]
            else:
                xp[window] = blocks[:, i, j]
    return xp[:, pad:pad + h, pad:pad + w]


def col2im(cols, shape, k, stride, pad):
    return _col2im(cols, shape, k, stride, pad, add=True)


def col2im_assigns(cols, shape, k, stride, pad):
    return _col2im(cols, shape, k, stride, pad, add=False)


def conv2d_forward(x, weight, bias, stride, pad):
    n = x.shape[0]
    o, _, k, _ = weight.shape
    ho, wo = _out(x.shape[2], x.shape[3], k, stride, pad)
    w_mat = weight.reshape(o, -1)
    return np.stack([(w_mat @ im2col(img, k, stride, pad) + bias[:, None]).reshape(o, ho, wo)
                     for img in x])


def conv2d_forward_flipped(x, weight, bias, stride, pad):
    return conv2d_forward(x, weight[:, :, ::-1, ::-1], bias, stride, pad)   # a true convolution


SOLUTIONS = {
    "check_im2col": (im2col, [im2col_taps_first]),
    "check_col2im": (col2im, [col2im_assigns]),
    "check_conv2d_forward": (conv2d_forward, [conv2d_forward_flipped]),
}
