"""Solutions to notebook 6's exercises, and wrong answers the checks must reject."""
import numpy as np


def max_pool_forward(x, k):
    n, c, h, w = x.shape
    ho, wo = h // k, w // k
    windows = x[:, :, :ho * k, :wo * k].reshape(n, c, ho, k, wo, k).transpose(0, 1, 2, 4, 3, 5)
    windows = windows.reshape(n, c, ho, wo, k * k)
    inside = windows.argmax(axis=-1)                  # the first maximum wins ties
    out = np.take_along_axis(windows, inside[..., None], axis=-1)[..., 0]
    rows = np.arange(ho)[:, None] * k + inside // k
    cols = np.arange(wo)[None, :] * k + inside % k
    return out, (rows * w + cols).astype(np.int64)


def max_pool_forward_window_index(x, k):
    out, idx = max_pool_forward(x, k)
    w = x.shape[3]
    return out, (idx // w % k) * k + idx % w % k


def matmul_blocked(a, b, tile):
    m, k = a.shape
    n = b.shape[1]
    c = np.zeros((m, n), dtype=np.result_type(a, b))
    for i in range(0, m, tile):
        for j in range(0, n, tile):
            for p in range(0, k, tile):
                c[i:i + tile, j:j + tile] += a[i:i + tile, p:p + tile] @ b[p:p + tile, j:j + tile]
    return c


def matmul_blocked_whole_tiles(a, b, tile):
    m, k = a.shape
    n = b.shape[1]
    c = np.zeros((m, n), dtype=np.result_type(a, b))
    for i in range(0, m - tile + 1, tile):
        for j in range(0, n - tile + 1, tile):
            for p in range(0, k - tile + 1, tile):
                c[i:i + tile, j:j + tile] += a[i:i + tile, p:p + tile] @ b[p:p + tile, j:j + tile]
    return c


SOLUTIONS = {
    "check_max_pool_forward": (max_pool_forward, [max_pool_forward_window_index]),
    "check_matmul_blocked": (matmul_blocked, [matmul_blocked_whole_tiles]),
}
