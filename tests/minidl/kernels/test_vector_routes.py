"""Every vector route of the GEMM micro-kernels that this CPU can run is exercised.

minidl's float32 GEMM and implicit-GEMM convolution have one route per vector instruction
set (``minidl.cpu``, ``minidl.kernels.gemm``): AVX-512 (16 lanes) and AVX2 with FMA (8 lanes), chosen from
the CPU Numba compiles for.  The rest of the suite runs the route of this machine
in-process; here each *other* route the CPU can execute runs in a child process with
Numba told to compile for a CPU of that kind (``NUMBA_CPU_NAME``), against the float64
NumPy product and the NumPy reference convolution.  A route the CPU cannot execute is
listed as not exercised in the run's summary (``tests/conftest.py``), not silently skipped.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from support import note_route
from minidl import cpu
from minidl.kernels import gemm

ROOT = Path(__file__).resolve().parents[3]

# a CPU of each kind, for NUMBA_CPU_NAME
ROUTE_CPUS = {"avx512": "skylake-avx512", "avx2": "haswell"}

# run in the child: the route it got, then every layout and both drivers against float64
CHILD = r'''
import sys
import numpy as np
from minidl import kernels
from minidl.kernels import _parallel, gemm
from minidl.kernels._gemm_numba import matmul_numba

assert gemm.isa() == sys.argv[1], (gemm.isa(), sys.argv[1])
lanes, nn_rows, nt_rows, nt_cols = gemm.tile_geometry()
rng = np.random.default_rng(7)
worst = 0.0
for force in ("serial", "parallel"):
    _parallel.force = force
    # edge sizes around the tiles and blocks, and the lab models' products
    for m, k, n in [(1, 1, 1), (nt_rows, 3, nt_cols), (nn_rows + 1, lanes + 3, 2 * lanes + 5),
                    (13, 2 * lanes - 1, 37), (64, 784, 256), (256, 64, 784), (70, 600, 530),
                    (nn_rows + 3, 1100, 2 * lanes + 5)]:
        a = rng.standard_normal((m, k)).astype(np.float32)
        b = rng.standard_normal((k, n)).astype(np.float32)
        operands = [(a, b), (np.asfortranarray(a), b)]
        if m >= nt_rows and n >= nt_cols:
            operands.append((a, np.ascontiguousarray(b.T).T))
        for x, y in operands:
            got = matmul_numba(x, y)
            exact = x.astype(np.float64) @ y.astype(np.float64)
            bound = np.abs(x).astype(np.float64) @ np.abs(y).astype(np.float64)
            worst = max(worst, float((np.abs(got - exact) / (bound + 1e-30)).max()))
    # the implicit-GEMM convolution: forward, weight and input gradients
    x = rng.standard_normal((3, 5, 9, 11)).astype(np.float32)
    w = rng.standard_normal((7, 5, 3, 3)).astype(np.float32)
    bias = rng.standard_normal(7).astype(np.float32)
    assert kernels.implicit_gemm_applies(x, w.shape)
    y = kernels.conv2d_direct_forward_numba(x, w, bias, 1, 1)
    dout = rng.standard_normal(y.shape).astype(np.float32)
    dw, db, dx = kernels.conv2d_direct_backward_numba(x, dout, w, 1, 1)
    x64, w64, d64 = x.astype(np.float64), w.astype(np.float64), dout.astype(np.float64)
    pairs = [(y, kernels.conv2d_direct_forward_reference(x64, w64, bias.astype(np.float64), 1, 1)),
             (dw, kernels.conv2d_direct_weight_grad_reference(x64, d64, w.shape, 1, 1)),
             (dx, kernels.conv2d_direct_input_grad_reference(d64, w64, x.shape, 1, 1))]
    for got, exact in pairs:
        np.testing.assert_allclose(got, exact, rtol=1e-5, atol=1e-5 * np.abs(exact).max())
    # the recurrent loops' product: rows packed by vectors (a transpose in registers whose
    # code differs per route), the weight in panels, against float64 and _pack_a
    from minidl.kernels import _gemm_numba as g
    for m, k, n in [(2 * nn_rows + 3, 2 * lanes + 5, 6 * lanes + 7), (64, 156, 512)]:
        a = rng.standard_normal((m, k + 3)).astype(np.float32)[:, 1:1 + k]
        b = rng.standard_normal((k, n)).astype(np.float32)
        packed = np.zeros_like(g._pack_a(np.ascontiguousarray(a)))
        g._pack_rows(a, packed, k, 0)
        assert np.array_equal(packed, g._pack_a(np.ascontiguousarray(a))), (m, k)
        got = np.empty((m, n), np.float32)
        g._nn_panels(packed, m, k, g._pack_b(b), got)
        exact = a.astype(np.float64) @ b.astype(np.float64)
        bound = np.abs(a).astype(np.float64) @ np.abs(b).astype(np.float64)
        worst = max(worst, float((np.abs(got - exact) / bound).max()))
    # the recurrent loops' LSTM cell: whole calls of CELL_LANES floats and the masked tail
    from minidl.kernels import _rnn_numba
    from minidl.kernels._vmath_numba import CELL_LANES
    T, N, I, H = 3, 11, 5, CELL_LANES + lanes + 3
    x = rng.standard_normal((T, N, I))
    w_ih, w_hh = rng.standard_normal((4 * H, I)) * 0.3, rng.standard_normal((4 * H, H)) * 0.3
    b, h0, c0 = rng.standard_normal(4 * H), rng.standard_normal((N, H)), rng.standard_normal((N, H))
    runs = [_rnn_numba.recurrent_layer_forward_numba(
        "LSTM", *(v.astype(dtype) for v in (x, w_ih, b, w_hh, b, h0, c0)))[0]
        for dtype in (np.float32, np.float64)]
    np.testing.assert_allclose(runs[0], runs[1], rtol=1e-5, atol=1e-5)
# float32 products of these sizes: each entry within a few ulps of its |a| |b| bound
assert worst < 1e-6, worst
print("ok", gemm.isa(), worst)
'''


def test_in_process_route_is_this_cpus():
    """The route the rest of the suite exercised (or that there is none)."""
    route = gemm.isa()
    if route is None:
        for name in ROUTE_CPUS:
            note_route(name, why_not="no vector route in this process (NumPy's BLAS "
                                     "everywhere): not an x86-64 CPU with AVX2 and FMA, "
                                     "or Numba compiles for a generic CPU")
    else:
        note_route(route, "in-process, the whole suite")
        assert gemm.host_supported()


@pytest.mark.parametrize("route", sorted(ROUTE_CPUS))
def test_each_route_the_cpu_can_run(route):
    import llvmlite.binding as ll
    host = ll.get_host_cpu_features()
    needs = ["avx512f", "fma"] if route == "avx512" else ["avx2", "fma"]
    missing = [f for f in needs if not host.get(f)]
    if missing:
        note_route(route, why_not=f"this CPU has no {', '.join(missing)}")
        return
    if route == gemm.isa():
        return                          # the whole suite ran it in-process
    env = dict(os.environ, NUMBA_CPU_NAME=ROUTE_CPUS[route], MINIDL_NUM_THREADS="2")
    env.pop("NUMBA_CPU_FEATURES", None)
    out = subprocess.run([sys.executable, "-c", CHILD, route], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.startswith(f"ok {route}")
    note_route(route, f"in a child process compiled for {ROUTE_CPUS[route]}")


def test_route_choice_follows_numbas_target(monkeypatch):
    """The route comes from the CPU Numba compiles for, capped by what the host runs."""
    import llvmlite.binding as ll
    import numba
    host = ll.get_host_cpu_features()
    host_isa = cpu._features_isa(lambda f: bool(host.get(f)))
    cases = [("haswell", None, "avx2"), ("generic", None, None), ("x86-64", None, None),
             ("skylake-avx512", None, "avx512"), (None, "+avx2,+fma,-avx512f", "avx2"),
             (None, "+avx2,-fma", None)]
    order = [None, "avx2", "avx512"]
    for name, features, wanted in cases:
        monkeypatch.setattr(numba.config, "CPU_NAME", name)
        monkeypatch.setattr(numba.config, "CPU_FEATURES", features)
        expected = wanted if order.index(wanted) <= order.index(host_isa) else None
        assert cpu._vector_isa() == expected, (name, features)
