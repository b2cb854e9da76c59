"""Numba twin of ``matmul_reference`` for float32 (``gemm.py`` says when it is used).

Two register-blocked micro-kernels, written as LLVM vector code through Numba
intrinsics (Numba's own loop vectoriser keeps partial results in memory, which
caps a product at about half the speed).  The sizes below are the AVX-512 ones
(``minidl.cpu.isa() == "avx512"``: ``LANES`` 16, ``NN_ROWS`` 8, ``NT_ROWS x NT_COLS``
6 x 4); with AVX2 the same code runs on 8-lane vectors with 6-row and 4 x 3 tiles, which
fit its 16 registers (``minidl.cpu.tile_geometry``):

* ``_nn_tile``: ``C[8 rows, 32 columns] = A_pack @ B`` for ``C = A B`` with ``B``
  row-major.  ``A`` is first packed (``_pack_a``) into blocks of 8 rows stored
  k-major, so that at each ``k`` the kernel loads two 16-lane vectors of ``B``'s
  row ``k``, broadcasts the 8 values of ``A``'s column ``k`` and does 16 fused
  multiply-adds into 16 vector accumulators that stay in registers for the whole
  ``k`` loop.  Then the tile is stored once.
* ``_nt_tile``: 24 dot products ``A[i+r] . Bt[j+s]`` (``r < 6, s < 4``) for
  ``C = A Bt^T`` with both operands' rows contiguous along the contraction: per
  16-element chunk of ``k`` it loads 6 + 4 vectors and does 24 fused multiply-adds
  into 24 vectors of partial sums, whose lanes are then added up by a fixed
  shuffle-and-add tree.  Long contractions are split into blocks of ``NT_BLOCK``
  elements, so the rows stay in cache across tiles.

Edges: ``A``'s packing pads missing rows with zeros and a last partial block of
``B`` columns is copied into a zero-padded panel (``_nn``); ``_nt`` shifts an edge
tile back inside the matrix (recomputing a few values) and adds the remaining
``k % 16`` products with a scalar loop.  Fused multiply-add rounds once where
``x*y + z`` rounds twice, and the partial sums run in another order than BLAS's:
results agree with ``numpy.matmul`` to float32 rounding.

A third driver, ``_tn``, takes ``C = A^T B`` for a long contraction (``a`` the transpose
of a C-contiguous matrix, ``b`` C-contiguous, K above ``TN_MIN_K``: a weight gradient
over every step and image) on ``_nn_tile``: see its section below.

Parallel units: blocks of output columns (``_nn``: at least one per thread, at most
``NN_BLOCK`` wide); for ``_nt``, tiles of 6 output rows, or, when ``C`` has more columns
than rows, one block of columns per thread; each unit owns the part of ``C`` it writes.
"""
from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from ..cpu import tile_geometry
from .gemm import NN_MAX_K as TN_MIN_K
from ..threads import get_num_threads
from ._parallel import PARALLEL_MIN_WORK, pick

# the tile geometry of this machine's vector route (minidl.cpu): float32 lanes per vector,
# rows of a C tile in _nn_tile, rows of A and of Bt per _nt_tile

LANES, NN_ROWS, NT_ROWS, NT_COLS = tile_geometry()

NN_VECTORS = 2          # vectors per row of a C tile in _nn_tile
NN_COLS = NN_VECTORS * LANES
NN_BLOCK = 512          # columns of B (and C) per block: K x 512 floats stay in L2
NT_BLOCK = 512          # contraction elements per pass of _nt (best of 256..4096, AVX-512)

# Products (and implicit-GEMM convolutions) with fewer multiply-adds than this run on one
# thread even when more are allowed: ~20 us of work on one core.  Measured with 2 threads
# on the 2-core development machine (OpenMP layer, ``python -m benchmarks.training``
# ad hoc runs): 4M made the lab MLP's training step ~14% faster than 32M (its 13M
# products went parallel), 1M was no better than 4M.  On the workqueue layer (~90 us a
# launch) only products over 32M paid.
PARALLEL_MIN_MULADDS = 1 << 22


def parallel_work(muladds: int) -> int:
    """The ``work`` figure to give ``pick`` for ``muladds`` multiply-adds."""
    return PARALLEL_MIN_WORK if muladds >= PARALLEL_MIN_MULADDS else 0


def _vector_helpers(builder):
    f32 = ir.FloatType()
    vty = ir.VectorType(f32, LANES)
    fma_name = f"llvm.fma.v{LANES}f32"
    fma = builder.module.globals.get(fma_name)
    if fma is None:
        fma = ir.Function(builder.module, ir.FunctionType(vty, [vty, vty, vty]), fma_name)
    return vty, fma


def _load_vector(builder, base_ptr, index, vty):
    ptr = builder.bitcast(builder.gep(base_ptr, [index]), vty.as_pointer())
    return builder.load(ptr, align=4)


def _store_vector(builder, value, base_ptr, index, vty):
    ptr = builder.bitcast(builder.gep(base_ptr, [index]), vty.as_pointer())
    builder.store(value, ptr, align=4)


def _broadcast(builder, scalar, vty):
    i32 = ir.IntType(32)
    first = builder.insert_element(ir.Constant(vty, ir.Undefined), scalar, ir.Constant(i32, 0))
    return builder.shuffle_vector(first, ir.Constant(vty, ir.Undefined),
                                  ir.Constant(ir.VectorType(i32, LANES), [0] * LANES))


def _array_ptr(context, builder, ty, value):
    return context.make_array(ty)(context, builder, value).data


def _emit_nn_tile(builder, a_ptr, a_off, k_len, b_ptr, b_row, store):
    """IR of the 8 x 32 tile ``sum_k A_pack[a_off + 8k + r] * B[b_row(k) + q]``: 16 vector
    accumulators in registers over the ``k`` loop, then ``store(r, v, vector)`` for each
    row ``r`` and 16-lane half ``v`` of the tile."""
    vty, fma = _vector_helpers(builder)
    i64 = ir.IntType(64)
    accs = [[cgutils.alloca_once_value(builder, ir.Constant(vty, [0.0] * LANES))
             for _ in range(NN_VECTORS)] for _ in range(NN_ROWS)]
    with cgutils.for_range(builder, k_len) as loop:
        k = loop.index
        row = b_row(k)
        b_vecs = [_load_vector(builder, b_ptr, builder.add(row, ir.Constant(i64, v * LANES)), vty)
                  for v in range(NN_VECTORS)]
        a_col = builder.add(a_off, builder.mul(k, ir.Constant(i64, NN_ROWS)))
        for r in range(NN_ROWS):
            a_val = builder.load(builder.gep(a_ptr, [builder.add(a_col, ir.Constant(i64, r))]))
            a_vec = _broadcast(builder, a_val, vty)
            for v in range(NN_VECTORS):
                acc = builder.load(accs[r][v])
                builder.store(builder.call(fma, [a_vec, b_vecs[v], acc]), accs[r][v])
    for r in range(NN_ROWS):
        for v in range(NN_VECTORS):
            store(r, v, builder.load(accs[r][v]))


@intrinsic
def _nn_tile(typingctx, a_pack, b, c, a_off, b_off, ldb, c_off, ldc, k_len):
    """``c[c_off + r*ldc + q] = sum_k a_pack[a_off + k*8 + r] * b[b_off + k*ldb + q]``
    for ``r < 8, q < 32`` (flat float32 arrays; no bounds checks: callers keep every
    index inside)."""
    sig = types.void(a_pack, b, c, types.intp, types.intp, types.intp, types.intp,
                     types.intp, types.intp)

    def codegen(context, builder, signature, args):
        a_arr, b_arr, c_arr, a_off, b_off, ldb, c_off, ldc, k_len = args
        a_ptr, b_ptr, c_ptr = (_array_ptr(context, builder, t, v)
                               for t, v in zip(signature.args[:3], args[:3]))
        vty, _ = _vector_helpers(builder)
        i64 = ir.IntType(64)

        def b_row(k):
            return builder.add(b_off, builder.mul(k, ldb))

        def store(r, v, vec):
            index = builder.add(builder.add(c_off, builder.mul(ir.Constant(i64, r), ldc)),
                                ir.Constant(i64, v * LANES))
            _store_vector(builder, vec, c_ptr, index, vty)

        _emit_nn_tile(builder, a_ptr, a_off, k_len, b_ptr, b_row, store)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _nn_tile_gather(typingctx, a_pack, b, b_rows, c, a_off, b_off, c_off, ldc, k_len):
    """``_nn_tile`` with row ``k`` of ``b`` starting at ``b_off + b_rows[k]`` (any offsets:
    an implicit im2col matrix whose rows are shifted windows of one padded image)."""
    sig = types.void(a_pack, b, b_rows, c, types.intp, types.intp, types.intp, types.intp,
                     types.intp)

    def codegen(context, builder, signature, args):
        a_arr, b_arr, rows_arr, c_arr, a_off, b_off, c_off, ldc, k_len = args
        a_ptr, b_ptr, rows_ptr, c_ptr = (_array_ptr(context, builder, t, v)
                                         for t, v in zip(signature.args[:4], args[:4]))
        vty, _ = _vector_helpers(builder)
        i64 = ir.IntType(64)

        def b_row(k):
            return builder.add(b_off, builder.load(builder.gep(rows_ptr, [k])))

        def store(r, v, vec):
            index = builder.add(builder.add(c_off, builder.mul(ir.Constant(i64, r), ldc)),
                                ir.Constant(i64, v * LANES))
            _store_vector(builder, vec, c_ptr, index, vty)

        _emit_nn_tile(builder, a_ptr, a_off, k_len, b_ptr, b_row, store)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _nn_tile_scatter_add(typingctx, a_pack, b, c, c_rows, a_off, b_off, ldb, c_off, k_len):
    """``_nn_tile`` whose row ``r`` is *added* to ``c[c_off + c_rows[r] + q]`` (``q < 32``),
    row after row (rows may overlap: each addition sees the previous ones) -- col2im
    fused into the product."""
    sig = types.void(a_pack, b, c, c_rows, types.intp, types.intp, types.intp, types.intp,
                     types.intp)

    def codegen(context, builder, signature, args):
        a_arr, b_arr, c_arr, rows_arr, a_off, b_off, ldb, c_off, k_len = args
        a_ptr, b_ptr, c_ptr, rows_ptr = (_array_ptr(context, builder, t, v)
                                         for t, v in zip(signature.args[:4], args[:4]))
        vty, _ = _vector_helpers(builder)
        i64 = ir.IntType(64)

        def b_row(k):
            return builder.add(b_off, builder.mul(k, ldb))

        def store(r, v, vec):
            row = builder.load(builder.gep(rows_ptr, [ir.Constant(i64, r)]))
            index = builder.add(builder.add(c_off, row), ir.Constant(i64, v * LANES))
            old = _load_vector(builder, c_ptr, index, vty)
            _store_vector(builder, builder.fadd(old, vec), c_ptr, index, vty)

        _emit_nn_tile(builder, a_ptr, a_off, k_len, b_ptr, b_row, store)
        return context.get_dummy_value()

    return sig, codegen


def _sum_lanes(builder, vectors):
    """16 vectors of 16 lanes -> one vector whose lane ``t`` is the sum of ``vectors[t]``.

    Four rounds; each adds the two halves of every lane group of a pair of vectors
    (16 -> 8 -> 4 -> 2 -> 1 lanes per input), a fixed order of additions.
    """
    i32 = ir.IntType(32)
    width = LANES
    while len(vectors) > 1:
        half = width // 2
        low, high = [], []
        for group in range(0, 2 * LANES, width):      # lane groups of the pair (a, b)
            low += list(range(group, group + half))
            high += list(range(group + half, group + width))
        low_mask = ir.Constant(ir.VectorType(i32, LANES), low)
        high_mask = ir.Constant(ir.VectorType(i32, LANES), high)
        vectors = [builder.fadd(builder.shuffle_vector(a, b, low_mask),
                                builder.shuffle_vector(a, b, high_mask))
                   for a, b in zip(vectors[0::2], vectors[1::2])]
        width = half
    return vectors[0]


def _emit_nt_tile(builder, a_ptr, a_rows, b_ptr, b_rows, n_reps, a_step, b_step, n_chunks,
                  o_ptr):
    """IR of 24 dot products: for ``rep < n_reps``, ``t < n_chunks``, lanes ``l < 16``:
    ``sum a[a_rows[r] + rep*a_step + 16t + l] * b[b_rows[s] + rep*b_step + 16t + l]``
    (``r < 6, s < 4``), partial sums in 24 vector registers, then their lanes added up
    (``_sum_lanes``) and stored to ``o_ptr[r*4 + s]``."""
    vty, fma = _vector_helpers(builder)
    i64 = ir.IntType(64)
    accs = [[cgutils.alloca_once_value(builder, ir.Constant(vty, [0.0] * LANES))
             for _ in range(NT_COLS)] for _ in range(NT_ROWS)]
    with cgutils.for_range(builder, n_reps) as outer:
        a_shift = builder.mul(outer.index, a_step)
        b_shift = builder.mul(outer.index, b_step)
        a_base = [builder.add(row, a_shift) for row in a_rows]
        b_base = [builder.add(row, b_shift) for row in b_rows]
        with cgutils.for_range(builder, n_chunks) as loop:
            shift = builder.mul(loop.index, ir.Constant(i64, LANES))
            a_vecs = [_load_vector(builder, a_ptr, builder.add(row, shift), vty) for row in a_base]
            b_vecs = [_load_vector(builder, b_ptr, builder.add(row, shift), vty) for row in b_base]
            for r in range(NT_ROWS):
                for s in range(NT_COLS):
                    acc = builder.load(accs[r][s])
                    builder.store(builder.call(fma, [a_vecs[r], b_vecs[s], acc]), accs[r][s])
    vectors = [builder.load(accs[r][s]) for r in range(NT_ROWS) for s in range(NT_COLS)]
    zero = ir.Constant(vty, [0.0] * LANES)
    for start in range(0, len(vectors), LANES):     # 16 sums per stored vector
        group = vectors[start:start + LANES]
        group += [zero] * (LANES - len(group))
        _store_vector(builder, _sum_lanes(builder, group), o_ptr, ir.Constant(i64, start), vty)


@intrinsic
def _nt_tile(typingctx, a, bt, out, a_off, lda, b_off, ldb, n_chunks):
    """``out[r*4 + s] = sum_{k < 16*n_chunks} a[a_off + r*lda + k] * bt[b_off + s*ldb + k]``
    for ``r < 6, s < 4``: 24 dot products (lane-wise partial sums, then ``_sum_lanes``)."""
    sig = types.void(a, bt, out, types.intp, types.intp, types.intp, types.intp, types.intp)

    def codegen(context, builder, signature, args):
        a_arr, b_arr, out_arr, a_off, lda, b_off, ldb, n_chunks = args
        a_ptr, b_ptr, o_ptr = (_array_ptr(context, builder, t, v)
                               for t, v in zip(signature.args[:3], args[:3]))
        i64 = ir.IntType(64)
        a_rows = [builder.add(a_off, builder.mul(ir.Constant(i64, r), lda))
                  for r in range(NT_ROWS)]
        b_rows = [builder.add(b_off, builder.mul(ir.Constant(i64, s), ldb))
                  for s in range(NT_COLS)]
        one, zero = ir.Constant(i64, 1), ir.Constant(i64, 0)
        _emit_nt_tile(builder, a_ptr, a_rows, b_ptr, b_rows, one, zero, zero, n_chunks, o_ptr)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _nt_tile_gather(typingctx, a, bt, bt_rows, out, a_off, lda, a_step, b_off, b_step, n_reps,
                    n_chunks):
    """``_nt_tile`` summed over ``n_reps`` repetitions (images): in repetition ``p``, row
    ``r`` of ``a`` starts at ``a_off + p*a_step + r*lda`` and row ``s`` of ``bt`` at
    ``b_off + p*b_step + bt_rows[s]`` (shifted windows of a padded image)."""
    sig = types.void(a, bt, bt_rows, out, types.intp, types.intp, types.intp, types.intp,
                     types.intp, types.intp, types.intp)

    def codegen(context, builder, signature, args):
        (a_arr, b_arr, rows_arr, out_arr, a_off, lda, a_step, b_off, b_step, n_reps,
         n_chunks) = args
        a_ptr, b_ptr, rows_ptr, o_ptr = (_array_ptr(context, builder, t, v)
                                         for t, v in zip(signature.args[:4], args[:4]))
        i64 = ir.IntType(64)
        a_rows = [builder.add(a_off, builder.mul(ir.Constant(i64, r), lda))
                  for r in range(NT_ROWS)]
        b_rows = [builder.add(b_off, builder.load(builder.gep(rows_ptr, [ir.Constant(i64, s)])))
                  for s in range(NT_COLS)]
        _emit_nt_tile(builder, a_ptr, a_rows, b_ptr, b_rows, n_reps, a_step, b_step, n_chunks,
                      o_ptr)
        return context.get_dummy_value()

    return sig, codegen


# -- C = A B ------------------------------------------------------------------------------

@njit(cache=True)
def _pack_a(a):
    """``a`` (M, K), any strides -> blocks of ``NN_ROWS`` rows, k-major: ``[block][k][r]``
    (zero rows pad).  Written in the packed order, so a transposed ``a`` (a layer's
    ``dY^T``) is read down its contiguous columns: reading it row by row instead made
    packing a 512 x 1792 transposed view take most of a 6 ms product."""
    m, k = a.shape
    blocks = (m + NN_ROWS - 1) // NN_ROWS
    packed = np.zeros(blocks * k * NN_ROWS, np.float32)
    for blk in range(blocks):
        rows = min(NN_ROWS, m - blk * NN_ROWS)
        base = blk * k * NN_ROWS
        for kk in range(k):
            for r in range(rows):
                packed[base + kk * NN_ROWS + r] = a[blk * NN_ROWS + r, kk]
    return packed


@njit(cache=True)
def _nn_columns(packed, m, k, b, c, j_lo, j_hi):
    """Columns ``[j_lo, j_hi)`` of ``c = A b`` for every row (``A`` as packed)."""
    n = b.shape[1]
    b_flat = b.reshape(-1)
    c_flat = c.reshape(-1)
    scratch = np.empty(NN_ROWS * NN_COLS, np.float32)
    blocks = (m + NN_ROWS - 1) // NN_ROWS
    full_hi = j_lo + (j_hi - j_lo) // NN_COLS * NN_COLS
    for blk in range(blocks):
        rows = min(NN_ROWS, m - blk * NN_ROWS)
        i0 = blk * NN_ROWS
        for j in range(j_lo, full_hi, NN_COLS):
            if rows == NN_ROWS:
                _nn_tile(packed, b_flat, c_flat, blk * k * NN_ROWS, j, n, i0 * n + j, n, k)
            else:
                _nn_tile(packed, b_flat, scratch, blk * k * NN_ROWS, j, n, 0, NN_COLS, k)
                for r in range(rows):
                    for q in range(NN_COLS):
                        c[i0 + r, j + q] = scratch[r * NN_COLS + q]
    width = j_hi - full_hi
    if width > 0:      # last partial panel: a zero-padded copy of those columns of b
        panel = np.zeros(k * NN_COLS, np.float32)
        for kk in range(k):
            for q in range(width):
                panel[kk * NN_COLS + q] = b[kk, full_hi + q]
        for blk in range(blocks):
            rows = min(NN_ROWS, m - blk * NN_ROWS)
            _nn_tile(packed, panel, scratch, blk * k * NN_ROWS, 0, NN_COLS, 0, NN_COLS, k)
            for r in range(rows):
                for q in range(width):
                    c[blk * NN_ROWS + r, full_hi + q] = scratch[r * NN_COLS + q]


@njit(parallel=True, cache=True)
def _nn_parallel(a, b, c, n_threads):
    m, k = a.shape
    n = b.shape[1]
    packed = _pack_a(a)
    # at least one block per thread, blocks whole tiles wide: 784 columns on 2 threads
    # are 416 + 368, not 512 + 272
    blocks = max(-(-n // NN_BLOCK), n_threads)
    width = -(-(-(-n // blocks)) // NN_COLS) * NN_COLS
    for blk in prange(-(-n // width)):
        _nn_columns(packed, m, k, b, c, blk * width, min(n, (blk + 1) * width))


@njit(cache=True)
def _nn_serial(a, b, c, n_threads):
    m, k = a.shape
    n = b.shape[1]
    packed = _pack_a(a)
    for j0 in range(0, n, NN_BLOCK):
        _nn_columns(packed, m, k, b, c, j0, min(n, j0 + NN_BLOCK))


@njit(parallel=True, cache=True)
def _nn_k_parallel(a, b, parts):
    """``parts[p] = a[:, chunk p] @ b[chunk p]``: the contraction cut into
    ``len(parts)`` equal chunks, one serial product per chunk, the chunks over the
    threads (``products.matmul_long_k`` adds the parts)."""
    n_parts = parts.shape[0]
    k = a.shape[1]
    step = -(-k // n_parts)
    for p in prange(n_parts):
        lo = min(k, p * step)
        hi = min(k, lo + step)
        if hi > lo:
            _nn_serial(a[:, lo:hi], b[lo:hi], parts[p], 1)
        else:
            parts[p][:] = 0


# -- C = A B for a B used by many products (a recurrent weight: one product per step) ----
#
# ``_nn_columns`` reads each tile's ``B`` rows where they lie, ``ldb`` floats apart.  A
# weight of 512 columns puts its rows 2 KiB apart, so a tile's 2 x 156 cache lines map to
# 4 of L1's 64 sets and cannot stay there: every row block reads ``B`` again from L2.  A
# weight reused by the 28 products of a time loop is worth packing once into panels
# ``NN_COLS`` wide, each contiguous (``_pack_b``): then ``_nn_panels`` takes one panel at
# a time (20 KiB for K = 156) through every row block, from L1.  And a row-major ``A``
# (the states, the gate gradients) is packed by whole vectors (``_pack_rows``).  LSTM 128,
# batch 64, one core, Intel Xeon with AVX-512 (``python -m benchmarks.rnn_parts``): see
# ``benchmarks/results/rnn/rnn_parts.md``.

@njit(cache=True)
def _pack_b(b):
    """``b`` (K, N) -> panels ``[p][k][q]`` of ``NN_COLS`` columns each (``q < NN_COLS``),
    the last one zero-padded, as one flat array."""
    k, n = b.shape
    panels = -(-n // NN_COLS)
    out = np.zeros(panels * k * NN_COLS, np.float32)
    for p in range(panels):
        width = min(NN_COLS, n - p * NN_COLS)
        for kk in range(k):
            base = (p * k + kk) * NN_COLS
            for q in range(width):
                out[base + q] = b[kk, p * NN_COLS + q]
    return out


def _zip(builder, xs, ys):
    """Two streams of vectors interleaved element by element, ``x0 y0 x1 y1 ...``."""
    i32 = ir.IntType(32)
    half = LANES // 2
    masks = [ir.Constant(ir.VectorType(i32, LANES), [v for i in range(lo, lo + half)
                                                        for v in (i, LANES + i)])
             for lo in (0, half)]
    return [builder.shuffle_vector(x, y, mask) for x, y in zip(xs, ys) for mask in masks]


def _interleave(builder, streams):
    """Streams of vectors -> one, element ``k`` of every stream in turn.  For a power-of-two
    count, the even streams' interleaving zipped with the odd streams' (``log2`` rounds of
    two-vector shuffles); otherwise lane by lane (the AVX2 route's 6 rows)."""
    if len(streams) == 1:
        return streams[0]
    if len(streams) & (len(streams) - 1) == 0:
        return _zip(builder, _interleave(builder, streams[0::2]),
                    _interleave(builder, streams[1::2]))
    i32 = ir.IntType(32)
    width = len(streams[0]) * LANES
    values = [builder.extract_element(s[e // LANES], ir.Constant(i32, e % LANES))
              for e in range(width) for s in streams]
    out = []
    for start in range(0, len(values), LANES):
        vec = ir.Constant(streams[0][0].type, ir.Undefined)
        for lane, value in enumerate(values[start:start + LANES]):
            vec = builder.insert_element(vec, value, ir.Constant(i32, lane))
        out.append(vec)
    return out


@intrinsic
def _pack_rows_tile(typingctx, a, out, a_off, lda, o_off):
    """``out[o_off + k*NN_ROWS + r] = a[a_off + r*lda + k]`` for ``r < NN_ROWS, k < LANES``:
    one vector load per row, a transpose in registers (``_interleave``), ``NN_ROWS``
    vector stores."""
    sig = types.void(a, out, types.intp, types.intp, types.intp)

    def codegen(context, builder, signature, args):
        a_arr, o_arr, a_off, lda, o_off = args
        a_ptr, o_ptr = (_array_ptr(context, builder, t, v)
                        for t, v in zip(signature.args[:2], args[:2]))
        vty, _ = _vector_helpers(builder)
        i64 = ir.IntType(64)
        rows = [[_load_vector(builder, a_ptr,
                              builder.add(a_off, builder.mul(ir.Constant(i64, r), lda)), vty)]
                for r in range(NN_ROWS)]
        for i, vec in enumerate(_interleave(builder, rows)):
            _store_vector(builder, vec, o_ptr, builder.add(o_off, ir.Constant(i64, i * LANES)),
                          vty)
        return context.get_dummy_value()

    return sig, codegen


@njit(cache=True)
def _pack_rows(a, packed, k_total, col0):
    """``a`` (M, W) with unit column stride -> columns ``[col0, col0 + W)`` of ``A``'s
    packing (``_pack_a``'s layout, ``k_total`` columns in all) in ``packed``.  Rows are
    read along their length: whole ``NN_ROWS x LANES`` tiles by ``_pack_rows_tile``, the
    rest value by value.  Rows past M are left as they are."""
    m, w = a.shape
    lda = a.strides[0] // 4
    for blk in range(-(-m // NN_ROWS)):
        i0 = blk * NN_ROWS
        rows = min(NN_ROWS, m - i0)
        base = blk * k_total * NN_ROWS + col0 * NN_ROWS
        done = 0
        if rows == NN_ROWS:
            done = w // LANES * LANES
            for kk in range(0, done, LANES):
                _pack_rows_tile(a, packed, i0 * lda + kk, lda, base + kk * NN_ROWS)
        for r in range(rows):
            row = a[i0 + r]
            for kk in range(done, w):
                packed[base + kk * NN_ROWS + r] = row[kk]


@njit(cache=True)
def _nn_panels(packed, m, k, panels, c):
    """``c`` (M, N), unit column stride, ``= A B`` for ``A`` packed (``_pack_a`` /
    ``_pack_rows``, M rows, K columns) and ``B`` packed into panels (``_pack_b``).  Panel
    by panel, each through every row block while it is in L1; edge tiles through a
    scratch tile."""
    n = c.shape[1]
    ldc = c.strides[0] // 4
    scratch = np.empty(NN_ROWS * NN_COLS, np.float32)
    for p in range(-(-n // NN_COLS)):
        j = p * NN_COLS
        width = min(NN_COLS, n - j)
        for blk in range(-(-m // NN_ROWS)):
            i0 = blk * NN_ROWS
            rows = min(NN_ROWS, m - i0)
            if rows == NN_ROWS and width == NN_COLS:
                _nn_tile(packed, panels, c, blk * k * NN_ROWS, p * k * NN_COLS, NN_COLS,
                         i0 * ldc + j, ldc, k)
            else:
                _nn_tile(packed, panels, scratch, blk * k * NN_ROWS, p * k * NN_COLS, NN_COLS,
                         0, NN_COLS, k)
                for r in range(rows):
                    for q in range(width):
                        c[i0 + r, j + q] = scratch[r * NN_COLS + q]


# -- C = A^T B for a long contraction (a weight gradient over every step and image) ------
#
# ``dW = dG^T h`` sums over T x N rows (1792 for an LSTM of 28 steps at batch 64): ``A``
# (K x M) and ``B`` (K x N) are both row-major over the contraction.  ``_tn_rows`` cuts it
# into blocks of ``TN_KC`` rows: per block, ``A``'s columns are packed for the tiles
# (``NN_ROWS`` consecutive floats of each row) and every tile adds its product to ``C``;
# ``B`` is packed once into panels (``_pack_b``), read block by block from L1.  Used for
# contractions longer than ``TN_MIN_K`` (``gemm.NN_MAX_K``), where the ``_nn`` driver
# (no blocking along K) lost to OpenBLAS.

TN_KC = 128             # contraction rows per block (best of 64..512 for LSTM 128's dG^T h)


@intrinsic
def _copy_tile_row(typingctx, src, s_off, dst, d_off):
    """``dst[d_off + r] = src[s_off + r]`` for ``r < NN_ROWS``: one ``<NN_ROWS x float>``
    load and store (a loop over ``r`` stays scalar: LLVM cannot tell the arrays apart)."""
    sig = types.void(src, types.intp, dst, types.intp)

    def codegen(context, builder, signature, args):
        s_arr, s_off, d_arr, d_off = args
        s_ptr, d_ptr = (_array_ptr(context, builder, t, v)
                        for t, v in ((signature.args[0], s_arr), (signature.args[2], d_arr)))
        vty = ir.VectorType(ir.FloatType(), NN_ROWS)
        _store_vector(builder, _load_vector(builder, s_ptr, s_off, vty), d_ptr, d_off, vty)
        return context.get_dummy_value()

    return sig, codegen


@njit(cache=True)
def _tn_rows(a, panels, c, i_lo, i_hi):
    """Rows ``[i_lo, i_hi)`` of ``c = a^T B`` (``a`` (K, M) with unit column stride,
    ``B`` (K, N) as ``_pack_b``'s panels, ``c`` (M, N) with unit column stride)."""
    k = a.shape[0]
    n = c.shape[1]
    lda = a.strides[0] // 4
    ldc = c.strides[0] // 4
    blocks = -(-(i_hi - i_lo) // NN_ROWS)
    packed = np.zeros(blocks * TN_KC * NN_ROWS, np.float32)
    scratch = np.empty(NN_ROWS * NN_COLS, np.float32)
    c_rows = np.arange(NN_ROWS) * ldc
    for i in range(i_lo, i_hi):
        c[i, :] = 0
    for k0 in range(0, k, TN_KC):
        kc = min(TN_KC, k - k0)
        for blk in range(blocks):              # A^T's rows of this block, k-major
            i0 = i_lo + blk * NN_ROWS
            rows = min(NN_ROWS, i_hi - i0)
            base = blk * kc * NN_ROWS
            if rows == NN_ROWS:
                for kk in range(kc):
                    _copy_tile_row(a, (k0 + kk) * lda + i0, packed, base + kk * NN_ROWS)
            else:
                for kk in range(kc):
                    for r in range(rows):
                        packed[base + kk * NN_ROWS + r] = a[k0 + kk, i0 + r]
        for p in range(-(-n // NN_COLS)):
            j = p * NN_COLS
            width = min(NN_COLS, n - j)
            b_off = (p * k + k0) * NN_COLS
            for blk in range(blocks):
                i0 = i_lo + blk * NN_ROWS
                rows = min(NN_ROWS, i_hi - i0)
                if rows == NN_ROWS and width == NN_COLS:
                    _nn_tile_scatter_add(packed, panels, c, c_rows, blk * kc * NN_ROWS, b_off,
                                         NN_COLS, i0 * ldc + j, kc)
                else:
                    _nn_tile(packed, panels, scratch, blk * kc * NN_ROWS, b_off, NN_COLS, 0,
                             NN_COLS, kc)
                    for r in range(rows):
                        for q in range(width):
                            c[i0 + r, j + q] += scratch[r * NN_COLS + q]


@njit(cache=True)
def _pack_b_pair(b1, b2):
    """``_pack_b`` of ``[b1 | b2]`` (same rows) without forming it."""
    k, n1 = b1.shape
    n = n1 + b2.shape[1]
    panels = -(-n // NN_COLS)
    out = np.zeros(panels * k * NN_COLS, np.float32)
    for p in range(panels):
        j0 = p * NN_COLS
        split = min(NN_COLS, max(0, n1 - j0))           # this panel's columns of b1
        width = min(NN_COLS, n - j0)
        for kk in range(k):
            base = (p * k + kk) * NN_COLS
            for q in range(split):
                out[base + q] = b1[kk, j0 + q]
            for q in range(split, width):
                out[base + q] = b2[kk, j0 + q - n1]
    return out


@njit(parallel=True, cache=True)
def _tn_pair_parallel(a, b1, b2, c, n_threads):
    """``c = a^T [b1 | b2]``: ``_tn_parallel`` with ``B`` in two parts (the layers' ``dG^T
    [h_prev | x]``: one pass over ``dG`` for both weight gradients)."""
    panels = _pack_b_pair(b1, b2)
    m = a.shape[1]
    per = -(-(-(-m // NN_ROWS)) // max(1, n_threads)) * NN_ROWS
    for t in prange(-(-m // per)):
        _tn_rows(a, panels, c, t * per, min(m, (t + 1) * per))


@njit(cache=True)
def _tn_pair_serial(a, b1, b2, c, n_threads):
    _tn_rows(a, _pack_b_pair(b1, b2), c, 0, a.shape[1])


def matmul_pair_numba(a, b1, b2):
    """``(a @ b1, a @ b2)`` for a transposed ``a`` (``a.T`` C-contiguous) with a long
    contraction and C-contiguous ``b1``, ``b2`` (``gemm.pair_applies``): one product
    ``a @ [b1 | b2]`` on the ``tn`` driver, split by columns."""
    m, k = a.shape
    n1 = b1.shape[1]
    c = np.empty((m, n1 + b2.shape[1]), np.float32)
    run = pick(_tn_pair_parallel, _tn_pair_serial, -(-m // NN_ROWS),
               parallel_work(m * k * c.shape[1]))
    run(a.T, b1, b2, c, max(1, get_num_threads()))
    return np.ascontiguousarray(c[:, :n1]), np.ascontiguousarray(c[:, n1:])


@njit(parallel=True, cache=True)
def _tn_parallel(a, b, c, n_threads):
    """``c = a^T b``: the rows of ``c`` in one run of whole tiles per thread, ``b``'s
    panels packed once and shared."""
    panels = _pack_b(b)
    m = a.shape[1]
    per = -(-(-(-m // NN_ROWS)) // max(1, n_threads)) * NN_ROWS
    for t in prange(-(-m // per)):
        _tn_rows(a, panels, c, t * per, min(m, (t + 1) * per))


@njit(cache=True)
def _tn_serial(a, b, c, n_threads):
    _tn_rows(a, _pack_b(b), c, 0, a.shape[1])


# -- C = A Bt^T ---------------------------------------------------------------------------

@njit(cache=True)
def _nt_block(a, bt, c, i_lo, i_hi, j_lo, j_hi):
    """Block ``[i_lo, i_hi) x [j_lo, j_hi)`` of ``c = a bt^T`` (``a`` has at least 6 rows,
    ``bt`` 4; ``j_lo`` a multiple of 4).  Writes only inside the block: an edge tile is
    shifted back inside the matrix and its entries outside the block are skipped."""
    m, k = a.shape
    n = bt.shape[0]
    a_flat = a.reshape(-1)
    b_flat = bt.reshape(-1)
    partial = np.empty(-(-NT_ROWS * NT_COLS // LANES) * LANES, np.float32)
    chunks = k // LANES
    for i in range(i_lo, i_hi):
        for j in range(j_lo, j_hi):
            c[i, j] = 0
    for t0 in range(0, chunks, NT_BLOCK // LANES):
        n_chunks = min(NT_BLOCK // LANES, chunks - t0)
        for i in range(i_lo, i_hi, NT_ROWS):
            i0 = min(i, m - NT_ROWS)          # an edge tile is shifted back inside
            for j in range(j_lo, j_hi, NT_COLS):
                j0 = min(j, n - NT_COLS)
                _nt_tile(a_flat, b_flat, partial, i0 * k + t0 * LANES, k, j0 * k + t0 * LANES,
                         k, n_chunks)
                for r in range(NT_ROWS):
                    if i0 + r < i or i0 + r >= i_hi:
                        continue
                    for s in range(NT_COLS):
                        if j0 + s < j or j0 + s >= j_hi:
                            continue
                        c[i0 + r, j0 + s] += partial[r * NT_COLS + s]
    for kk in range(chunks * LANES, k):    # the last k % 16 products
        for i in range(i_lo, i_hi):
            for j in range(j_lo, j_hi):
                c[i, j] += a[i, kk] * bt[j, kk]


@njit(parallel=True, cache=True)
def _nt_parallel(a, bt, c, n_threads):
    m = a.shape[0]
    for t in prange((m + NT_ROWS - 1) // NT_ROWS):
        _nt_block(a, bt, c, t * NT_ROWS, min(m, (t + 1) * NT_ROWS), 0, bt.shape[0])


@njit(parallel=True, cache=True)
def _nt_parallel_columns(a, bt, c, n_threads):
    # for C with more columns than rows (a layer's forward pass, x @ W^T): one block of
    # columns per thread, so each reads its own part of bt (the weight) into its own cache
    # (64x784 @ 784x256 on 2 threads: 74 us, against 83 us split by rows); a separate
    # function: the two prange loops as branches of one function ran 7x slower
    n = bt.shape[0]
    width = -(-(-(-n // n_threads)) // NT_COLS) * NT_COLS
    for blk in prange(-(-n // width)):
        _nt_block(a, bt, c, 0, a.shape[0], blk * width, min(n, (blk + 1) * width))


@njit(cache=True)
def _nt_serial(a, bt, c, n_threads):
    _nt_block(a, bt, c, 0, a.shape[0], 0, bt.shape[0])


def matmul_numba(a, b, out=None):
    """``a @ b`` for float32 matrices (``b`` C-contiguous, or ``b.T`` and ``a`` C-contiguous
    with at least 6 and 4 rows); equals ``numpy.matmul`` to float32 rounding."""
    if a.dtype != np.float32 or b.dtype != np.float32 or a.ndim != 2 or b.ndim != 2 \
            or a.shape[1] != b.shape[0]:
        raise ValueError(f"matmul_numba: expected float32 matrices (M, K) and (K, N), got "
                         f"{a.dtype} {tuple(a.shape)} and {b.dtype} {tuple(b.shape)}")
    m, k = a.shape
    n = b.shape[1]
    c = np.empty((m, n), np.float32) if out is None else out
    if c.shape != (m, n) or c.dtype != np.float32 or not c.flags.c_contiguous:
        raise ValueError(f"matmul_numba: expected out to be a C-contiguous float32 array of "
                         f"shape {(m, n)}, got {c.dtype} {tuple(c.shape)}")
    work = m * n * k
    if b.flags.c_contiguous and a.T.flags.c_contiguous and k > TN_MIN_K:
        run = pick(_tn_parallel, _tn_serial, -(-m // NN_ROWS), parallel_work(work))
        run(a.T, b, c, max(1, get_num_threads()))
    elif b.flags.c_contiguous:
        run = pick(_nn_parallel, _nn_serial, -(-n // NN_COLS), parallel_work(work))
        run(a, b, c, max(1, get_num_threads()))
    elif b.T.flags.c_contiguous and a.flags.c_contiguous:
        if m < NT_ROWS or n < NT_COLS:
            raise ValueError(f"matmul_numba: a @ b.T needs at least {NT_ROWS} rows in a and "
                             f"{NT_COLS} in b.T, got shapes {tuple(a.shape)} and {tuple(b.shape)}")
        if n > m:
            run = pick(_nt_parallel_columns, _nt_serial, -(-n // NT_COLS), parallel_work(work))
        else:
            run = pick(_nt_parallel, _nt_serial, -(-m // NT_ROWS), parallel_work(work))
        run(a, b.T, c, max(1, get_num_threads()))
    else:
        raise ValueError("matmul_numba: expected b C-contiguous, or b.T and a C-contiguous")
    return c
