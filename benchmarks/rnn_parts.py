"""The recurrent layers' parts, each before and after issue 29's change to it.

    python -m benchmarks.rnn_parts [--quick] [--rounds 7] [--out DIR]

Each part times the code it replaced beside the code that replaced it, in one process,
interleaved (``common.interleaved``: the order rotates every round), median of
``--rounds`` blocks; LSTM of 128 units over 28 steps of 28 inputs, float32:

1. **sigmoid, tanh** (1 thread, 65,536 values): the scalar float32 functions of the
   recurrent loops (``_rnn_numba._sig``, ``_tanh32``), which LLVM vectorises at its
   preferred width, against ``_vmath_numba``'s explicit full-width vectors.
2. **hidden weight gradient** (1 thread, batch 64): ``h_prev`` concatenated from ``h0``
   and ``hs``, ``(h_prev^T dG)^T`` and a transposed copy, against
   ``kernels.hidden_weight_grads`` with the kept ``hs_full`` (``dG^T h_prev``).
3. **long contraction** (2 threads, ``dG^T h``: 512x1792 @ 1792x128): one BLAS call,
   two chunks each split by columns over the threads (``matmul_long_k`` at first), one
   chunk per thread (``_gemm_numba._nn_k_parallel``, ``matmul_long_k`` next), the
   K-blocked ``tn`` driver parallel over rows (``matmul_long_k`` now).
4. **LSTM forward for inference** (1 thread, batch 1000, no backward cache): the input
   projection as one product and then the loop, against the projection inside the loop
   (``recurrent_layer_forward``).
5. **Blocks of rows and the GRU's projection** (1 thread, batch 1000, no backward
   cache): the LSTM layer's loop as one block of 1000 rows against blocks of
   ``_rnn_numba.MAX_BLOCK_ROWS`` (each through all its steps before the next); the GRU
   layer with its input projection first (one product, then the loop) against the
   projection inside the loop (a product of the block's rows per step).
6. **The loops' step products** (1 thread, batch 64, the 28 products of one sequence):
   forward ``[h | x_t] @ [W_hh^T; W_ih^T]`` (64x156 @ 156x512) and backward
   ``da_t @ W_hh`` (64x512 @ 512x128).  Before: the rows packed value by value, the
   weight read in place (``_gemm_numba._nn_columns``); now: the rows packed by vectors
   (``_pack_rows``) and the weight packed once per sequence into panels
   (``_pack_b``, ``_nn_panels``).

7. **The LSTM cell** (1 thread, the cells of one block of ``MAX_BLOCK_ROWS`` = 128 rows
   over 28 steps, as in inference at batch 1000): one vector a call, every multiply-add
   rounded twice (before); one vector a call with fused multiply-adds
   (``_vmath_numba.FUSED``); ``CELL_LANES`` = 32 floats a call, fused (now).

Writes ``rnn_parts.md`` and ``rnn_parts.json`` to ``--out`` (default
``benchmarks/results/rnn/``).
"""
from __future__ import annotations

import json
import sys

import numpy as np

from . import common, machine

T, H, I = 28, 128, 28


def _timed(fn, block_s: float, quick: bool):
    number = 1 if quick else common.calibrate(fn, block_s)
    return lambda: common.time_block(fn, number)


def _activation_parts():
    from numba import njit

    from minidl.kernels import _rnn_numba as loops
    from minidl.kernels._vmath_numba import LANES, _vsigmoid, _vtanh

    @njit(error_model="numpy")
    def scalar_sigmoid(x, out, one):
        for i in range(x.size):
            out[i] = loops._sig(x[i], one)

    @njit(error_model="numpy")
    def scalar_tanh(x, out):
        for i in range(x.size):
            out[i] = loops._tanh32(x[i])

    @njit(error_model="numpy")
    def vector_sigmoid(x, out):
        for i in range(0, x.size, LANES):
            _vsigmoid(x, i, out, i)

    @njit(error_model="numpy")
    def vector_tanh(x, out):
        for i in range(0, x.size, LANES):
            _vtanh(x, i, out, i)

    x = (np.random.default_rng(0).standard_normal(1 << 16) * 5).astype(np.float32)
    out = np.empty_like(x)
    one = np.float32(1)
    return x.size, {
        "sigmoid: scalar (LLVM's width)": lambda: scalar_sigmoid(x, out, one),
        "sigmoid: full-width vectors": lambda: vector_sigmoid(x, out),
        "tanh: scalar (LLVM's width)": lambda: scalar_tanh(x, out),
        "tanh: full-width vectors": lambda: vector_tanh(x, out)}


def _weight_gradient_parts(rng):
    from minidl import kernels
    n = 64
    hs_full = rng.standard_normal((T + 1, n, H)).astype(np.float32)
    hs, h0 = hs_full[1:], hs_full[0]
    dg = rng.standard_normal((T, n, 4 * H)).astype(np.float32)

    def before():
        h_prev = np.concatenate([h0[None], hs[:-1]], axis=0).reshape(T * n, H)
        d2 = dg.reshape(T * n, 4 * H)
        return np.ascontiguousarray(kernels.matmul_long_k(h_prev.T, d2).T), d2.sum(axis=0)

    return {"concatenate, (h^T dG)^T, transposed copy": before,
            "kept states, dG^T h": lambda: kernels.hidden_weight_grads(dg, hs, h0, True,
                                                                       hs_full)}


def _long_contraction_parts(rng):
    from minidl import kernels
    from minidl.kernels.gemm import NN_MAX_K, matmul_reference
    n = 64
    h = rng.standard_normal((T * n, H)).astype(np.float32)
    d2 = rng.standard_normal((T * n, 4 * H)).astype(np.float32)
    a, k = d2.T, T * n
    step = -(-k // -(-k // NN_MAX_K))

    def column_chunks():
        out = kernels.matmul(a[:, :step], h[:step])
        for start in range(step, k, step):
            out += kernels.matmul(a[:, start:start + step], h[start:start + step])
        return out

    def chunk_per_thread():
        from minidl.kernels._gemm_numba import _nn_k_parallel
        parts = np.empty((-(-k // step), a.shape[0], h.shape[1]), np.float32)
        _nn_k_parallel(a, h, parts)
        return parts.sum(axis=0)

    return {"one BLAS call": lambda: matmul_reference(a, h),
            "chunks split by columns (at first)": column_chunks,
            "one chunk per thread (next)": chunk_per_thread,
            "K-blocked tn driver (now)": lambda: kernels.matmul_long_k(a, h)}


def _inference_parts(rng):
    import minidl
    from minidl import kernels
    from minidl.kernels import _rnn_numba as loops
    n = 1000
    x = rng.standard_normal((T, n, I)).astype(np.float32)
    w_ih = (rng.standard_normal((4 * H, I)) * 0.2).astype(np.float32)
    w_hh = (rng.standard_normal((4 * H, H)) * 0.1).astype(np.float32)
    b = (rng.standard_normal(4 * H) * 0.1).astype(np.float32)
    h0 = np.zeros((n, H), np.float32)

    def projection_first():
        xg = kernels.matmul(x.reshape(T * n, I), np.ascontiguousarray(w_ih.T))
        xg += b
        return loops.recurrent_forward_numba("LSTM", xg.reshape(T, n, -1), w_hh, b, h0, h0,
                                             keep=False)

    assert minidl.get_num_threads() == 1
    return {"projection, then the loop": projection_first,
            "projection inside the loop": lambda: loops.recurrent_layer_forward_numba(
                "LSTM", x, w_ih, b, w_hh, b, h0, h0, keep=False)}


def _block_parts(rng):
    from minidl import kernels
    from minidl.kernels import _rnn_numba as loops
    n = 1000
    x = rng.standard_normal((T, n, I)).astype(np.float32)
    h0 = np.zeros((n, H), np.float32)
    weights = {}
    for mode, gates in (("LSTM", 4), ("GRU", 3)):
        weights[mode] = ((rng.standard_normal((gates * H, I)) * 0.2).astype(np.float32),
                         (rng.standard_normal(gates * H) * 0.1).astype(np.float32),
                         (rng.standard_normal((gates * H, H)) * 0.1).astype(np.float32))

    def lstm(max_rows):
        w_ih, b, w_hh = weights["LSTM"]
        saved, loops.MAX_BLOCK_ROWS = loops.MAX_BLOCK_ROWS, max_rows
        try:
            return loops.recurrent_layer_forward_numba("LSTM", x, w_ih, b, w_hh, b, h0, h0,
                                                       keep=False)
        finally:
            loops.MAX_BLOCK_ROWS = saved

    def gru_projection_first():
        w_ih, b, w_hh = weights["GRU"]
        xg = kernels.matmul(x.reshape(T * n, I), np.ascontiguousarray(w_ih.T))
        xg += b
        return loops.recurrent_forward_numba("GRU", xg.reshape(T, n, -1), w_hh, b, h0,
                                             keep=False)

    def gru_projection_inside():
        w_ih, b, w_hh = weights["GRU"]
        return loops.recurrent_layer_forward_numba("GRU", x, w_ih, b, w_hh, b, h0, keep=False)

    return {"LSTM: one block of 1000 rows": lambda: lstm(n),
            f"LSTM: blocks of {loops.MAX_BLOCK_ROWS} rows": lambda: lstm(loops.MAX_BLOCK_ROWS),
            "GRU: projection, then the loop": gru_projection_first,
            "GRU: projection inside the loop": gru_projection_inside}


def _step_product_parts(rng):
    from numba import njit

    from minidl.kernels._gemm_numba import (NN_ROWS, _nn_columns, _nn_panels, _pack_a,
                                            _pack_b, _pack_rows)
    n = 64

    @njit
    def pack_value_by_value(h, x):      # the forward loop's packing before (row by row)
        m, kh = h.shape
        k = kh + x.shape[1]
        packed = np.zeros(-(-m // NN_ROWS) * k * NN_ROWS, np.float32)
        for blk in range(-(-m // NN_ROWS)):
            base = blk * k * NN_ROWS
            for r in range(min(NN_ROWS, m - blk * NN_ROWS)):
                hr, xr = h[blk * NN_ROWS + r], x[blk * NN_ROWS + r]
                for kk in range(kh):
                    packed[base + kk * NN_ROWS + r] = hr[kk]
                for kk in range(k - kh):
                    packed[base + (kh + kk) * NN_ROWS + r] = xr[kk]
        return packed

    @njit
    def forward_before(hs, xs, w, out):
        m, kh = hs.shape[1:]
        for t in range(xs.shape[0]):
            _nn_columns(pack_value_by_value(hs[t], xs[t]), m, kh + xs.shape[2], w, out, 0,
                        w.shape[1])

    @njit
    def forward_now(hs, xs, w, out):
        m, kh = hs.shape[1:]
        k = kh + xs.shape[2]
        panels = _pack_b(w)
        for t in range(xs.shape[0]):
            packed = np.empty(-(-m // NN_ROWS) * NN_ROWS * k, np.float32)
            _pack_rows(hs[t], packed, k, 0)
            _pack_rows(xs[t], packed, k, kh)
            _nn_panels(packed, m, k, panels, out)

    @njit
    def backward_before(das, w, out):
        m, k = das.shape[1:]
        for t in range(das.shape[0]):
            _nn_columns(_pack_a(das[t]), m, k, w, out, 0, w.shape[1])

    @njit
    def backward_now(das, w, out):
        m, k = das.shape[1:]
        panels = _pack_b(w)
        for t in range(das.shape[0]):
            packed = np.empty(-(-m // NN_ROWS) * NN_ROWS * k, np.float32)
            _pack_rows(das[t], packed, k, 0)
            _nn_panels(packed, m, k, panels, out)

    hs = rng.standard_normal((T, n, H)).astype(np.float32)
    xs = rng.standard_normal((T, n, I)).astype(np.float32)
    das = rng.standard_normal((T, n, 4 * H)).astype(np.float32)
    w_cat = rng.standard_normal((H + I, 4 * H)).astype(np.float32)
    w_hh = rng.standard_normal((4 * H, H)).astype(np.float32)
    gates, dh = np.empty((n, 4 * H), np.float32), np.empty((n, H), np.float32)
    return {"forward: rows value by value, weight in place": lambda: forward_before(
                hs, xs, w_cat, gates),
            "forward: rows by vectors, weight in panels": lambda: forward_now(
                hs, xs, w_cat, gates),
            "backward: rows value by value, weight in place": lambda: backward_before(
                das, w_hh, dh),
            "backward: rows by vectors, weight in panels": lambda: backward_now(das, w_hh, dh)}


def _cell_parts(rng):
    from numba import njit

    from minidl.kernels._rnn_numba import MAX_BLOCK_ROWS
    from minidl.kernels._vmath_numba import CELL_LANES, LANES, _lstm_cell_intrinsic
    rounded_twice = _lstm_cell_intrinsic(masked=False, fused=False)
    fused_one_vector = _lstm_cell_intrinsic(masked=False)
    wide = _lstm_cell_intrinsic(masked=False, lanes=CELL_LANES)
    m, G = MAX_BLOCK_ROWS, 4 * H

    def cells(kind):
        step = CELL_LANES if kind == 2 else LANES

        @njit(error_model="numpy")
        def run(u, b, gt, cs, tc, hs):
            for t in range(T):
                for r in range(m):
                    c_prev, c, h = cs[t % 2, r], cs[(t + 1) % 2, r], hs[t + 1, r]
                    for j in range(0, H, step):
                        if kind == 0:
                            rounded_twice(u[r], b, gt, c_prev, c, tc, h, j, step)
                        elif kind == 1:
                            fused_one_vector(u[r], b, gt, c_prev, c, tc, h, j, step)
                        else:
                            wide(u[r], b, gt, c_prev, c, tc, h, j, step)
        return run

    hs = rng.standard_normal((T + 1, m, H)).astype(np.float32)
    u = rng.standard_normal((m, G)).astype(np.float32)
    b, gt = np.zeros(G, np.float32), np.empty(G, np.float32)
    cs, tc = np.zeros((2, m, H), np.float32), np.empty(H, np.float32)
    runs = [cells(kind) for kind in range(3)]
    names = ["one vector a call, rounded twice", "one vector a call, fused",
             f"{CELL_LANES} floats a call, fused (now)"]
    return {name: (lambda run=run: run(u, b, gt, cs, tc, hs)) for name, run in zip(names, runs)}


def _measure(parts: dict, rounds: int, quick: bool, block_s: float) -> dict:
    samplers = {name: _timed(fn, block_s, quick) for name, fn in parts.items()}
    samples = common.interleaved(samplers, rounds)
    return {name: common.summarize(s) for name, s in samples.items()}


def main(argv=None) -> int:
    parser = common.base_parser(__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds (default 7)")
    args = common.parse_args(parser, argv, "benchmarks.rnn_parts")
    if args is None:
        return common.parse_args.code
    out = args.out if args.out != common.RESULTS_DIR else common.RESULTS_DIR / "rnn"
    out.mkdir(parents=True, exist_ok=True)
    rounds, block_s = (1, 0.0) if args.quick else (args.rounds, 0.2)
    import minidl
    info = machine.machine_info(with_torch=False)
    rng = np.random.default_rng(0)
    results = {}
    minidl.set_num_threads(1)
    size, activation = _activation_parts()
    results["sigmoid and tanh, 1 thread (per value)"] = {
        name: {k: (v / size if isinstance(v, float) and k != "runs" else v)
               for k, v in s.items()}
        for name, s in _measure(activation, rounds, args.quick, block_s).items()}
    results["hidden weight gradient, batch 64, 1 thread"] = _measure(
        _weight_gradient_parts(rng), rounds, args.quick, block_s)
    results["LSTM forward without cache, batch 1000, 1 thread"] = _measure(
        _inference_parts(rng), rounds, args.quick, block_s)
    results["blocks of rows and the GRU's projection, batch 1000, no cache, 1 thread"] = \
        _measure(_block_parts(rng), rounds, args.quick, block_s)
    results[f"the loops' step products, batch 64, {T} steps, 1 thread"] = _measure(
        _step_product_parts(rng), rounds, args.quick, block_s)
    results[f"the LSTM cells of a block of 128 rows, {T} steps, 1 thread"] = _measure(
        _cell_parts(rng), rounds, args.quick, block_s)
    import numba
    two = min(2, numba.config.NUMBA_NUM_THREADS)     # 1 where Numba was limited to one
    minidl.set_num_threads(two)
    results[f"dG^T h, 512x1792 @ 1792x128, {two} thread{'s' if two > 1 else ''}"] = _measure(
        _long_contraction_parts(rng), rounds, args.quick, block_s)
    info_end = machine.machine_info(with_torch=False)
    lines = ["# The recurrent layers' parts, before and after (issue 29)", "",
             machine.machine_markdown(info), "", machine.load_note(info, info_end), "",
             f"`python -m benchmarks.rnn_parts`: each part's old and new code in one process, "
             f"interleaved, median of {rounds} blocks (min-max beside).", ""]
    for part, rows in results.items():
        lines += [f"## {part}", "", "| code | median | min-max |", "|---|---|---|"]
        for name, s in rows.items():
            lines.append(f"| {name} | {common.fmt_time(s['median'])} | "
                         f"{common.fmt_time(s['min'])}-{common.fmt_time(s['max'])} |")
        lines.append("")
    (out / "rnn_parts.md").write_text("\n".join(lines))
    (out / "rnn_parts.json").write_text(json.dumps(
        {"machine": info, "machine_end": info_end, "rounds": rounds, "results": results},
        indent=1))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
