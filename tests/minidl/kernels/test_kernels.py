"""Each Numba kernel equals its plain NumPy twin (and the twins agree with torch where
torch has the same operation: unfold/fold, max/avg pooling).

Shapes are drawn at random per case (batch 1 included, odd sizes, non-square
kernels, strides, padding, dilation, ceil_mode); inputs include NaN, +-inf and ties.
Both batch drivers of every Numba kernel (``prange`` and serial) are run, whatever
the machine's thread count.
"""
from __future__ import annotations

import json

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from minidl import kernels
from minidl.kernels import _parallel

# (kernel_size, stride, padding, dilation)
CONV_GEOMETRIES = [
    ((3, 3), (1, 1), (1, 1), (1, 1)),
    ((2, 3), (2, 1), (0, 2), (1, 1)),
    ((3, 2), (2, 3), (2, 1), (2, 1)),
    ((1, 1), (1, 1), (0, 0), (1, 1)),
    ((4, 4), (3, 3), (3, 0), (1, 2)),
]

# (kernel_size, stride, padding, dilation, ceil_mode)
MAX_POOL_GEOMETRIES = [
    ((2, 2), None, (0, 0), (1, 1), False),
    ((3, 3), (1, 1), (1, 1), (1, 1), False),
    ((3, 2), (2, 1), (1, 0), (2, 1), True),
    ((3, 3), (2, 2), (1, 1), (1, 1), True),
    ((2, 3), (3, 2), (1, 1), (2, 2), True),
]

# (kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override)
AVG_POOL_GEOMETRIES = [
    ((2, 2), None, (0, 0), False, True, None),
    ((3, 3), (2, 2), (1, 1), True, True, None),
    ((3, 3), (2, 2), (1, 1), True, False, None),
    ((2, 3), (1, 2), (1, 1), False, False, None),
    ((3, 2), (2, 3), (1, 0), True, True, 4),
    ((2, 2), (2, 2), (0, 0), True, False, None),      # 2x2 path off: ceil adds a clipped window
    ((2, 2), (2, 2), (0, 0), False, True, 3),
]


# (batch driver, dtype): the serial driver in both dtypes, the prange driver in the
# training dtype only -- its body is the same per-image function, and each parallel
# compilation costs seconds of test time.
VARIANTS = [("serial", np.float32), ("serial", np.float64), ("parallel", np.float32)]


@pytest.fixture(params=VARIANTS, ids=[f"{d}-{t.__name__}" for d, t in VARIANTS])
def dtype(request, monkeypatch):
    """The dtype to test in; the chosen batch driver is forced for the test's duration."""
    driver, dtype = request.param
    monkeypatch.setattr(_parallel, "force", driver)
    return dtype


@pytest.fixture(params=["serial", "parallel"])
def driver(request, monkeypatch):
    monkeypatch.setattr(_parallel, "force", request.param)
    return request.param


def _random_input(rng, dtype, channels=None, min_hw=6):
    n = int(rng.choice([1, 3]))
    c = int(channels or rng.integers(1, 4))
    h, w = (int(v) for v in rng.integers(min_hw, min_hw + 5, size=2))
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    return x


def _with_specials(x, rng):
    """Sprinkle NaN, +-inf and exact ties (zero patches) into a copy of ``x``."""
    x = x.copy()
    flat = x.reshape(-1)
    picks = rng.choice(flat.size, size=max(3, flat.size // 20), replace=False)
    flat[picks[0::3]] = np.nan
    flat[picks[1::3]] = np.inf
    flat[picks[2::3]] = -np.inf
    x[:, :, :3, :4] = 0.0          # all-zero windows: ties everywhere
    x[0, 0, -2:, -3:] = 1.5        # a patch of equal positive values
    return x


def _assert_close(actual, expected, dtype):
    """Tight agreement allowing only float rounding (summation order differs)."""
    rtol = 1e-6 if dtype == np.float32 else 1e-13
    scale = float(np.nanmax(np.abs(expected))) if np.isfinite(expected).any() else 1.0
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale)


# -- im2col / col2im ---------------------------------------------------------------

@pytest.mark.parametrize("geometry", CONV_GEOMETRIES)
def test_im2col_numba_equals_reference(geometry, dtype, rng):
    x = _with_specials(_random_input(rng, dtype), rng)
    ref = kernels.im2col_reference(x, *geometry)
    out = kernels.im2col_numba(x, *geometry)
    assert out.dtype == dtype and out.shape == ref.shape
    np.testing.assert_array_equal(out, ref)          # a pure copy: bit for bit, NaN included
    np.testing.assert_array_equal(kernels.im2col(x, *geometry), ref)


@pytest.mark.parametrize("channels", [1, 3])             # one channel: parallel over images
@pytest.mark.parametrize("geometry", CONV_GEOMETRIES)
def test_col2im_numba_equals_reference(geometry, channels, dtype, rng):
    x = _random_input(rng, dtype, channels=channels)
    shape = kernels.im2col_reference(x, *geometry).shape
    cols = rng.standard_normal(shape).astype(dtype)
    cols.reshape(-1)[::7] = np.nan
    ref = kernels.col2im_reference(cols, x.shape, *geometry)
    out = kernels.col2im_numba(cols, x.shape, *geometry)
    assert out.dtype == dtype and out.shape == x.shape
    # both add the overlapping contributions of a pixel in kernel-offset order
    np.testing.assert_array_equal(out, ref)
    np.testing.assert_array_equal(kernels.col2im(cols, x.shape, *geometry), ref)


def test_col2im_accumulates_overlaps(driver):
    # a 3x3 kernel, stride 1, padding 1 over ones: each pixel is seen by as many
    # windows as its neighbourhood holds (4 at corners, 6 on edges, 9 inside)
    x = np.ones((2, 1, 4, 5), np.float32)
    cols = kernels.im2col_numba(x, 3, 1, 1, 1)
    counts = kernels.col2im_numba(np.ones_like(cols), x.shape, 3, 1, 1, 1)
    rows = np.array([2, 3, 3, 2])
    colc = np.array([2, 3, 3, 3, 2])
    np.testing.assert_array_equal(counts[0, 0], rows[:, None] * colc[None, :])
    np.testing.assert_array_equal(kernels.col2im_reference(np.ones_like(cols), x.shape, 3, 1, 1, 1),
                                  counts)


@pytest.mark.parametrize("geometry", CONV_GEOMETRIES)
def test_im2col_col2im_match_torch_unfold_fold(geometry, torch, rng):
    x = _random_input(rng, np.float64)
    k, s, p, d = geometry
    cols = kernels.im2col(x, *geometry)
    unfolded = torch.nn.functional.unfold(torch.from_numpy(x), k, dilation=d, padding=p,
                                          stride=s).numpy()                      # (N, K, L)
    n, big_k, big_l = unfolded.shape
    np.testing.assert_array_equal(cols, unfolded.transpose(1, 0, 2).reshape(big_k, n * big_l))
    per_image = np.ascontiguousarray(cols.reshape(big_k, n, big_l).transpose(1, 0, 2))
    folded = torch.nn.functional.fold(torch.from_numpy(per_image), x.shape[2:], k, dilation=d,
                                      padding=p, stride=s)
    np.testing.assert_allclose(kernels.col2im(cols, x.shape, *geometry), folded.numpy(),
                               rtol=1e-13, atol=1e-13)


def test_im2col_errors():
    x = np.zeros((1, 1, 3, 3), np.float32)
    with pytest.raises(ValueError, match="im2col"):
        kernels.im2col_numba(x, 4, 1, 0, 1)
    with pytest.raises(ValueError, match="im2col"):
        kernels.im2col_reference(x, 2, 1, 0, 3)          # dilated extent 4 > 3
    with pytest.raises(ValueError, match="im2col"):
        kernels.im2col_numba(np.zeros((3, 3), np.float32), 2)
    with pytest.raises(ValueError, match="col2im"):
        kernels.col2im_numba(np.zeros((4, 5)), (1, 1, 3, 3), 2)
    with pytest.raises(ValueError, match="float32 or float64"):
        kernels.im2col_numba(np.zeros((1, 1, 3, 3), np.int64), 2)


# -- max pooling ----------------------------------------------------------------------

@pytest.mark.parametrize("geometry", MAX_POOL_GEOMETRIES)
def test_max_pool_numba_equals_reference(geometry, dtype, rng):
    x = _with_specials(_random_input(rng, dtype), rng)
    ref, ref_idx = kernels.max_pool2d_forward_reference(x, *geometry)
    out, idx = kernels.max_pool2d_forward_numba(x, *geometry)
    assert out.dtype == dtype and idx.dtype == np.int64
    np.testing.assert_array_equal(out, ref)
    np.testing.assert_array_equal(idx, ref_idx)

    dout = rng.standard_normal(out.shape).astype(dtype)
    dref = kernels.max_pool2d_backward_reference(dout, ref_idx, x.shape)
    dx = kernels.max_pool2d_backward_numba(dout, idx, x.shape)
    assert dx.dtype == dtype and dx.shape == x.shape
    if dtype == np.float64:
        np.testing.assert_array_equal(dx, dref)      # same summation order
    else:
        _assert_close(dx, dref, dtype)               # reference sums in float64


@pytest.mark.parametrize("geometry", MAX_POOL_GEOMETRIES + [((2, 2), (2, 2), (0, 0), (1, 1), True)])
def test_max_pool_numba_without_nan_equals_reference(geometry, dtype, rng):
    # NaN-free images take the fast paths (2x2 written out; interior windows without
    # bounds tests); ties and -inf must still resolve as in the exact scan
    x = _random_input(rng, dtype, min_hw=7)
    x[:, :, :3, :4] = 0.0
    x[:, :, 4, :] = -np.inf
    x[:, :, 5:7, 1:3] = 2.0
    ref, ref_idx = kernels.max_pool2d_forward_reference(x, *geometry)
    out, idx = kernels.max_pool2d_forward_numba(x, *geometry)
    np.testing.assert_array_equal(out, ref)
    np.testing.assert_array_equal(idx, ref_idx)


@pytest.mark.parametrize("geometry", MAX_POOL_GEOMETRIES)
def test_max_pool_kernels_match_torch_indices(geometry, torch, rng):
    x = _with_specials(_random_input(rng, np.float64), rng)
    k, s, p, d, ceil = geometry
    t_out, t_idx = torch.nn.functional.max_pool2d(torch.from_numpy(x), k, s, p, d, ceil_mode=ceil,
                                                  return_indices=True)
    out, idx = kernels.max_pool2d_forward(x, *geometry)
    np.testing.assert_array_equal(out, t_out.numpy())
    np.testing.assert_array_equal(idx, t_idx.numpy())


def test_max_pool_rules_by_hand():
    x = np.array([[[[1.0, np.nan, 3.0, np.nan],
                    [np.nan, 0.0, 0.0, 0.0],
                    [0.0, 0.0, -np.inf, -np.inf],
                    [0.0, 0.0, -np.inf, -np.inf]]]])
    for fn in (kernels.max_pool2d_forward_reference, kernels.max_pool2d_forward_numba):
        out, idx = fn(x, 2)
        # last NaN of a window wins; first of equal maxima wins; all -inf picks the first
        np.testing.assert_array_equal(idx[0, 0], [[4, 3], [8, 10]])
        np.testing.assert_array_equal(out[0, 0], [[np.nan, np.nan], [0.0, -np.inf]])


def test_max_pool_backward_rejects_bad_indices():
    dout = np.ones((1, 1, 2, 2))
    with pytest.raises(ValueError, match="indices"):
        kernels.max_pool2d_backward_numba(dout, np.array([[[[0, 1], [2, 16]]]]), (1, 1, 4, 4))
    with pytest.raises(ValueError, match="max_pool2d_backward"):
        kernels.max_pool2d_backward_numba(dout, np.zeros((1, 1, 2, 3), np.int64), (1, 1, 4, 4))


# -- average pooling ------------------------------------------------------------------

@pytest.mark.parametrize("geometry", AVG_POOL_GEOMETRIES)
def test_avg_pool_numba_equals_reference(geometry, dtype, rng):
    x = _random_input(rng, dtype)
    ref = kernels.avg_pool2d_forward_reference(x, *geometry)
    out = kernels.avg_pool2d_forward_numba(x, *geometry)
    assert out.dtype == dtype
    np.testing.assert_array_equal(out, ref)          # same window sum order, same division

    xs = _with_specials(x, rng)
    with np.errstate(invalid="ignore"):              # inf + (-inf) in a window: NaN, no warning
        ref_specials = kernels.avg_pool2d_forward_reference(xs, *geometry)
    np.testing.assert_array_equal(kernels.avg_pool2d_forward_numba(xs, *geometry), ref_specials)

    dout = rng.standard_normal(out.shape).astype(dtype)
    dref = kernels.avg_pool2d_backward_reference(dout, x.shape, *geometry)
    dx = kernels.avg_pool2d_backward_numba(dout, x.shape, *geometry)
    assert dx.dtype == dtype and dx.shape == x.shape
    _assert_close(dx, dref, dtype)                   # overlaps summed in another order


@pytest.mark.parametrize("geometry", AVG_POOL_GEOMETRIES)
def test_avg_pool_kernels_match_torch(geometry, torch, rng):
    x = _random_input(rng, np.float64)
    expected = torch.nn.functional.avg_pool2d(torch.from_numpy(x), *geometry)
    np.testing.assert_array_equal(kernels.avg_pool2d_forward(x, *geometry), expected.numpy())


def test_avg_pool_divisors_by_hand():
    # 5x5 ones, kernel 2, stride 2, padding 1, ceil_mode: windows start at -1, 1, 3;
    # the last one would start at 5 (inside the right padding) and is dropped
    x = np.ones((1, 1, 5, 5))
    for fn in (kernels.avg_pool2d_forward_reference, kernels.avg_pool2d_forward_numba):
        with_pad = fn(x, 2, 2, 1, True, True)
        np.testing.assert_array_equal(with_pad[0, 0], [[0.25, 0.5, 0.5], [0.5, 1, 1], [0.5, 1, 1]])
        without = fn(x, 2, 2, 1, True, False)
        np.testing.assert_array_equal(without[0, 0], np.ones((3, 3)))
        # kernel 3, stride 2, padding 1, ceil: windows start at -1, 1, 3 and each covers
        # 3 rows of the padded input, so the divisor is 9 everywhere
        np.testing.assert_array_equal(fn(x, 3, 2, 1, True, True)[0, 0, 0], [4 / 9, 6 / 9, 4 / 9])
        # kernel 2, stride 2, no padding, ceil: the last window starts at 4 and sticks out
        # past the input; the overhang is not padding and never counts
        xr = np.arange(25.0).reshape(1, 1, 5, 5)
        y = fn(xr, 2, 2, 0, True, True)
        assert y.shape == (1, 1, 3, 3)
        assert y[0, 0, 2, 2] == 24.0 and y[0, 0, 0, 2] == (4.0 + 9.0) / 2
        # kernel 2, stride 3, padding 1, ceil on 6x6: windows start at -1, 2, 5; the first
        # and last each hold one input row and one padding row: divisor 4 with padding
        y = fn(np.ones((1, 1, 6, 6)), 2, 3, 1, True, True)
        np.testing.assert_array_equal(y[0, 0], np.outer([1, 2, 1], [1, 2, 1]) / 4)


def test_pool_geometry_errors():
    x = np.zeros((1, 1, 4, 4))
    with pytest.raises(ValueError, match="at most half"):
        kernels.max_pool2d_forward_numba(x, 3, 1, 2)
    with pytest.raises(ValueError, match="larger than the input"):
        kernels.max_pool2d_forward_numba(x, 3, 1, 0, 2)
    with pytest.raises(ValueError, match="divisor_override"):
        kernels.avg_pool2d_forward_numba(x, 2, divisor_override=0)
    with pytest.raises(ValueError, match="avg_pool2d_backward"):
        kernels.avg_pool2d_backward_numba(np.zeros((1, 1, 3, 3)), x.shape, 2)


def test_numba_twins_are_lazy_attributes():
    import minidl.kernels as k
    assert callable(k.im2col_numba) and callable(k.avg_pool2d_backward_numba)
    with pytest.raises(AttributeError):
        k.no_such_kernel_numba  # noqa: B018


# -- thread setting ---------------------------------------------------------------------

def test_set_num_threads_governs_blas():
    import minidl
    from threadpoolctl import threadpool_info
    before = minidl.get_num_threads()
    try:
        minidl.set_num_threads(1)
        assert minidl.get_num_threads() == 1
        assert all(lib["num_threads"] == 1 for lib in threadpool_info() if lib["user_api"] == "blas")
    finally:
        minidl.set_num_threads(before)
    for bad, error in ((0, ValueError), (-1, ValueError), (1.5, TypeError), (True, TypeError),
                       ("2", TypeError)):
        with pytest.raises(error, match="set_num_threads"):
            minidl.set_num_threads(bad)


def test_thread_environment_in_a_fresh_process():
    # MINIDL_NUM_THREADS is read at import, BLAS follows it, numba is not imported
    # until a kernel runs, and then it uses the OpenMP layer with that many threads, and
    # GOMP_SPINCOUNT, given to OpenMP while the pool starts, is not left in the environment
    import os
    import subprocess
    import sys
    code = (
        "import sys, numpy as np, minidl\n"
        "from threadpoolctl import threadpool_info\n"
        "assert 'numba' not in sys.modules\n"
        "blas = {lib['num_threads'] for lib in threadpool_info() if lib['user_api'] == 'blas'}\n"
        "from minidl.kernels import _parallel\n"
        "_parallel.force = 'parallel'\n"
        "minidl.kernels.max_pool2d_forward(np.ones((4, 2, 6, 6), np.float32), 2)\n"
        "import numba\n"
        "import os\n"
        "print(minidl.get_num_threads(), sorted(blas), numba.get_num_threads(),"
        " numba.threading_layer(), os.environ.get('GOMP_SPINCOUNT'))\n")
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_THREADING_LAYER"}
    env.update(MINIDL_NUM_THREADS="2", NUMBA_NUM_THREADS="2", OMP_NUM_THREADS="1")
    from pathlib import Path
    root = str(Path(__file__).resolve().parents[3])
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120, cwd=root)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["2", "[2]", "2", "omp", "None"]
    env["MINIDL_NUM_THREADS"] = "zero"
    out = subprocess.run([sys.executable, "-c", "import minidl"], env=env, capture_output=True,
                         text=True, timeout=120, cwd=root)
    assert out.returncode != 0 and "MINIDL_NUM_THREADS must be a positive integer" in out.stderr


def test_one_thread_pool_at_a_time():
    """Once minidl's kernels run on 2 threads, BLAS gets 1 where minidl's GEMM has a vector
    route (OpenBLAS's spinning threads and Numba's fought for the cores), else keeps 2."""
    code = (
        "import json, numpy as np, minidl\n"
        "from threadpoolctl import threadpool_info\n"
        "def blas(): return sorted({l['num_threads'] for l in threadpool_info()"
        " if l['user_api'] == 'blas' and 'numpy' in l['filepath']})\n"   # NumPy's BLAS
        "seen = [blas()]\n"
        "from minidl.kernels import _parallel, gemm\n"
        "_parallel.force = 'parallel'\n"
        "minidl.kernels.max_pool2d_forward(np.ones((4, 2, 6, 6), np.float32), 2)\n"
        "seen.append(blas())\n"
        "minidl.set_num_threads(2)\n"
        "seen.append(blas())\n"
        "minidl.set_num_threads(1)\n"
        "seen.append(blas())\n"
        "print(json.dumps([gemm.isa() is not None, seen]))\n")
    out = _run_fresh(code, MINIDL_NUM_THREADS="2", NUMBA_NUM_THREADS="2")
    assert out.returncode == 0, out.stderr
    route, seen = json.loads(out.stdout.strip().splitlines()[-1])
    expected = [1] if route else [2]
    assert seen == [[2], expected, expected, [1]]


def _run_fresh(code: str, **env_vars) -> subprocess.CompletedProcess:
    # these children test the Numba kernels themselves: MINIDL_KERNELS=reference (a run of
    # the suite on the references) must not send them to the NumPy twins
    env = {k: v for k, v in os.environ.items()
           if k not in ("NUMBA_THREADING_LAYER", "GOMP_SPINCOUNT", "OMP_WAIT_POLICY",
                        "MINIDL_KERNELS")}
    env.update(env_vars)
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=120, cwd=str(Path(__file__).resolve().parents[3]))


def test_forked_child_runs_kernels_serially_after_openmp():
    # GNU OpenMP cannot start parallel regions in a child forked after the parent used
    # them (Numba kills such a child with SIGTERM): minidl's kernels go serial there
    code = (
        "import os, numpy as np, minidl, numba\n"
        "from minidl import threads\n"
        "x = np.random.default_rng(0).random((64, 8, 28, 28)).astype(np.float32)\n"
        "y = minidl.kernels.max_pool2d_forward(x, 2)[0]\n"
        "assert numba.threading_layer() == 'omp', numba.threading_layer()\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    ok = threads.numba_threads() == 1 and np.array_equal(\n"
        "        minidl.kernels.max_pool2d_forward(x, 2)[0], y)\n"
        "    os._exit(0 if ok else 3)\n"
        "_, status = os.waitpid(pid, 0)\n"
        "print(os.waitstatus_to_exitcode(status), threads.numba_threads())\n")
    out = _run_fresh(code, MINIDL_NUM_THREADS="2", NUMBA_NUM_THREADS="2")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["0", "2"], out.stderr


def test_two_python_threads_run_parallel_kernels_at_once():
    # the OpenMP layer takes parallel launches from several Python threads at a time (the
    # workqueue layer terminates the process when that happens)
    code = (
        "import threading, numpy as np, minidl\n"
        "from minidl.kernels import _parallel\n"
        "_parallel.force = 'parallel'\n"
        "x = np.random.default_rng(0).random((32, 8, 28, 28)).astype(np.float32)\n"
        "ref = minidl.kernels.max_pool2d_forward(x, 2)[0]\n"
        "bad = []\n"
        "def work():\n"
        "    for _ in range(200):\n"
        "        if not np.array_equal(minidl.kernels.max_pool2d_forward(x, 2)[0], ref):\n"
        "            bad.append(1)\n"
        "ts = [threading.Thread(target=work) for _ in range(3)]\n"
        "[t.start() for t in ts]\n"
        "[t.join() for t in ts]\n"
        "print(len(bad))\n")
    out = _run_fresh(code, MINIDL_NUM_THREADS="2", NUMBA_NUM_THREADS="2")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["0"], out.stderr


def test_user_openmp_wait_settings_are_kept():
    code = ("import os, numpy as np, minidl\n"
            "from minidl.kernels import _parallel\n"
            "_parallel.force = 'parallel'\n"
            "minidl.kernels.max_pool2d_forward(np.ones((4, 2, 6, 6), np.float32), 2)\n"
            "print(os.environ.get('GOMP_SPINCOUNT'), os.environ.get('OMP_WAIT_POLICY'))\n")
    out = _run_fresh(code, MINIDL_NUM_THREADS="2", GOMP_SPINCOUNT="123")
    assert out.returncode == 0 and out.stdout.split() == ["123", "None"], out.stderr
    out = _run_fresh(code, MINIDL_NUM_THREADS="2", OMP_WAIT_POLICY="passive")
    assert out.returncode == 0 and out.stdout.split() == ["None", "passive"], out.stderr


def test_default_thread_count_rule(monkeypatch):
    from minidl import threads
    for var in ("MINIDL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        monkeypatch.delenv(var, raising=False)
    assert threads.default_num_threads() == threads._available_cpus()
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert threads.default_num_threads() == 3
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "5")          # OpenBLAS's own precedence
    assert threads.default_num_threads() == 5
    monkeypatch.setenv("MINIDL_NUM_THREADS", "2")
    assert threads.default_num_threads() == 2
    monkeypatch.setenv("MINIDL_NUM_THREADS", "-1")
    with pytest.raises(ValueError, match="MINIDL_NUM_THREADS must be a positive integer"):
        threads.default_num_threads()
