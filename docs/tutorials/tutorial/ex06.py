"""Exercise checks of notebook 6 (kernels and speed): a vectorised max pooling with the tie
rule and index layout of minidl's kernels, and a blocked matrix product."""
from __future__ import annotations

import numpy as np

from minidl.kernels import matmul_reference
from minidl.kernels.naive import max_pool2d_forward_naive

from . import CheckFailed, Result, compare_arrays, run_check

__all__ = ["check_max_pool_forward", "check_matmul_blocked"]


def check_max_pool_forward(max_pool_forward) -> Result:
    """``max_pool_forward(x, k) -> (out, idx)`` with ``k x k`` windows and stride ``k``:
    the first maximum in row-major order wins ties, and ``idx`` is the flat position
    ``h*W + w`` of the winner, as ``max_pool2d_forward_naive`` returns them."""
    def body(fn):
        rng = np.random.default_rng(0)
        x = rng.integers(0, 3, size=(2, 3, 6, 8)).astype(np.float32)    # ties everywhere
        out_ref, idx_ref = max_pool2d_forward_naive(x, 2, 2)
        got = fn(x, 2)
        if not isinstance(got, tuple) or len(got) != 2:
            raise CheckFailed(f"expected a tuple (out, idx), got {type(got).__name__}")
        out, idx = (np.asarray(a) for a in got)
        compare_arrays("out", out, out_ref)
        if idx.shape == idx_ref.shape and idx.max() < 4 and not np.array_equal(idx, idx_ref):
            raise CheckFailed("idx holds the position inside the window (0..k*k-1); minidl "
                              "keeps the flat position in the image, h*W + w")
        if idx.shape == idx_ref.shape and not np.array_equal(idx, idx_ref):
            same_value = x.reshape(6, -1)[np.arange(6)[:, None],
                                          idx.reshape(6, -1)] == out_ref.reshape(6, -1)
            if same_value.all():
                raise CheckFailed("every idx points at a maximum, but not always the first "
                                  "one in row-major order (ties: the first maximum wins)")
        compare_arrays("idx", idx, idx_ref)
        return "out and idx equal max_pool2d_forward_naive, ties included"
    return run_check("max_pool_forward", body, max_pool_forward)


def check_matmul_blocked(matmul_blocked) -> Result:
    """``matmul_blocked(a, b, tile)``: ``a @ b`` computed tile by tile, against
    ``matmul_reference``, for sizes that are not multiples of the tile."""
    def body(fn):
        rng = np.random.default_rng(1)
        for m, k, n, tile in ((8, 8, 8, 4), (7, 10, 5, 4), (3, 2, 9, 4)):
            a, b = rng.standard_normal((m, k)), rng.standard_normal((k, n))
            got = np.asarray(fn(a, b, tile))
            expected = matmul_reference(a, b)
            if got.shape == expected.shape and not np.allclose(got, expected):
                if any(size % tile for size in (m, k, n)):
                    raise CheckFailed(f"wrong for ({m}, {k}) @ ({k}, {n}) with tile {tile}: "
                                      f"the sizes are not multiples of the tile, so the last "
                                      f"tile of each loop is shorter (slices stop at the edge)")
            compare_arrays(f"matmul_blocked(a, b, {tile}) for ({m}, {k}) @ ({k}, {n})", got,
                           expected)
        return "equals matmul_reference, edge tiles included"
    return run_check("matmul_blocked", body, matmul_blocked)
