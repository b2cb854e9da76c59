"""``kernels.matmul_long_k``: a long contraction split into chunks the micro-kernel takes."""
import numpy as np
import pytest

import minidl
from minidl import kernels
from minidl.kernels import gemm


@pytest.fixture
def two_threads():
    before = minidl.get_num_threads()
    minidl.set_num_threads(2)
    yield
    minidl.set_num_threads(before)


@pytest.mark.parametrize("k", [gemm.NN_MAX_K - 1, gemm.NN_MAX_K + 1, 1792, 3 * gemm.NN_MAX_K + 5])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("weight_layout", [False, True], ids=["hT_d", "dT_h"])
def test_equals_the_product(two_threads, k, dtype, weight_layout):
    """Both orientations of a recurrent weight gradient: ``h^T dG`` and ``dG^T h`` (the
    layer's, a transposed first operand)."""
    rng = np.random.default_rng(k)
    h = rng.standard_normal((k, 128)).astype(dtype)
    d = rng.standard_normal((k, 512)).astype(dtype)
    if weight_layout:
        h, d = d, h
    exact = h.astype(np.float64).T @ d.astype(np.float64)
    got = kernels.matmul_long_k(h.T, d)
    assert got.shape == exact.shape and got.dtype == dtype
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(got, exact, rtol=0, atol=tol * np.abs(exact).max())


def test_chunks_only_where_the_micro_kernel_takes_them(two_threads):
    """With every kernel forced to its reference, the product is NumPy's, bit for bit."""
    rng = np.random.default_rng(0)
    h = rng.standard_normal((1792, 128)).astype(np.float32)
    d = rng.standard_normal((1792, 512)).astype(np.float32)
    with kernels.reference_kernels():
        np.testing.assert_array_equal(kernels.matmul_long_k(h.T, d), h.T @ d)
