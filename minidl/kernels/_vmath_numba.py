"""Sigmoid and tanh of float32 vectors, written as LLVM vector code (the recurrent cells).

``_rnn_numba`` evaluates its cells with Cephes' expf/tanhf polynomials (``_exp32``,
``_tanh32``), written in Numba so LLVM vectorises the loops over units.  It does, but on
an AVX-512 CPU LLVM prefers 256-bit vectors for loops it vectorises itself
(``prefer-vector-width``), and an LSTM cell makes five of these calls per unit: the cells
took nearly as long as the step products (LSTM 128, batch 64, one thread, Intel Xeon
with AVX-512: 1.34 ms of a 3.5 ms forward loop whose products took 1.74 ms).  Timed
against the scalar route: ``python -m benchmarks.rnn_parts``.

The intrinsics below emit the same arithmetic on explicit ``<LANES x float>`` vectors
(16 lanes with AVX-512, 8 with AVX2: ``minidl.cpu.tile_geometry``), which LLVM keeps in
full-width registers:

* ``_vsigmoid(src, s, dst, d)``: ``dst[d + l] = 1 / (1 + e^{-src[s + l]})``;
* ``_vtanh(src, s, dst, d)``: ``dst[d + l] = tanh(src[s + l])``;
* ``_vlstm_cell(p, q, gt, c_prev, c, tc, h, j, count)``: an LSTM cell for units
  ``j + l``, ``l < CELL_LANES`` (several vectors), in one pass
  (``_rnn_numba._lstm_cell``'s math); ``_vlstm_cell_tail`` the same for the lanes
  ``l < count`` only;

for ``l < LANES`` unless said, on flat float32 arrays, with no bounds checks (callers
keep the indices inside). Every operation is the scalar one's, in the same order, with
the same rounding (a multiply-add rounded once where ``FUSED``, as ``_rnn_numba._fma32``
does it; no reciprocal estimate), so a lane gives the bits ``_sig``/``_tanh32`` give for
that value: the vector and scalar routes agree exactly, and a loop may run its last
units through the scalar functions.

Fused multiply-adds in exp's reduction and polynomials and in tanh's polynomial: the
LSTM cells of 128 rows over 28 steps took 1.88 ms rounding twice and 1.38 ms fused
(Intel Xeon with AVX-512, one thread; ``python -m benchmarks.rnn_parts`` part 7, commit
cada06c).
"""
from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from ..cpu import isa, tile_geometry

LANES = tile_geometry()[0]
# multiply-adds rounded once (``llvm.fma``) where minidl has a vector route: its CPUs all
# have FMA; elsewhere rounded twice.  ``_rnn_numba._fma32`` reads this, so a lane and the
# scalar route give the same bits.
FUSED = isa() is not None

# Cephes expf / tanhf constants: the values of ``_rnn_numba``'s scalar versions
_F = np.float32
LOG2E, HALF, ONE, TWO = 1.4426950408889634, 0.5, 1.0, 2.0
LN2_HI, LN2_LO = 0.693359375, -2.12194440e-4
EXP_P = (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2,
         1.6666665459e-1, 5.0000001201e-1)
EXP_MAX, EXP_MIN = 88.0, -87.0
OVERFLOW, UNDERFLOW = 88.72283935546875, -103.97208
TANH_P = (-5.70498872745e-3, 2.06390887954e-2, -5.37397155531e-2, 1.33314422036e-1,
          -3.33332819422e-1)
TANH_SMALL = 0.625


class _Vec:
    """IR helpers on ``<lanes x float>`` values (``LANES`` unless told) for one builder;
    multiply-adds fused where ``fused`` (``FUSED`` unless told)."""

    def __init__(self, builder, fused=None, lanes=LANES):
        self.b = builder
        self.fused = FUSED if fused is None else fused
        self.lanes = lanes
        self.f32 = ir.FloatType()
        self.vty = ir.VectorType(self.f32, lanes)
        self.ity = ir.VectorType(ir.IntType(32), lanes)

    def const(self, value):
        return ir.Constant(self.vty, [float(_F(value))] * self.lanes)

    def _intrinsic(self, name, ty, arity=1):
        module = self.b.module
        fn = module.globals.get(name)
        if fn is None:
            fn = ir.Function(module, ir.FunctionType(ty, [ty] * arity), name)
        return fn

    def floor(self, x):
        return self.b.call(self._intrinsic(f"llvm.floor.v{self.lanes}f32", self.vty), [x])

    def fabs(self, x):
        return self.b.call(self._intrinsic(f"llvm.fabs.v{self.lanes}f32", self.vty), [x])

    def add(self, x, y):
        return self.b.fadd(x, y)

    def sub(self, x, y):
        return self.b.fsub(x, y)

    def mul(self, x, y):
        return self.b.fmul(x, y)

    def fma(self, x, y, z):
        """``x * y + z``, rounded once where ``self.fused``."""
        if not self.fused:
            return self.add(self.mul(x, y), z)
        return self.b.call(self._intrinsic(f"llvm.fma.v{self.lanes}f32", self.vty, 3),
                           [x, y, z])

    def div(self, x, y):
        return self.b.fdiv(x, y)

    def select(self, cond, x, y):
        return self.b.select(cond, x, y)

    def cmp(self, op, x, y):
        """Ordered comparison (false when either side is NaN), as Python's on floats."""
        return self.b.fcmp_ordered(op, x, y)

    def is_nan(self, x):
        return self.b.fcmp_unordered("uno", x, x)

    def clamp(self, x, low, high):
        """``min(max(x, low), high)`` as Numba's ``max``/``min`` of two floats."""
        lo = self.const(low)
        y = self.select(self.cmp(">", x, lo), x, lo)    # max(x, low): x when x > low
        hi = self.const(high)
        return self.select(self.cmp("<", y, hi), y, hi)

    def exp(self, x):
        """Cephes expf, operation by operation as ``_rnn_numba._exp32``."""
        c = self.const
        y = self.clamp(x, EXP_MIN, EXP_MAX)
        n = self.floor(self.fma(y, c(LOG2E), c(HALF)))
        r = self.fma(n, c(-LN2_LO), self.fma(n, c(-LN2_HI), y))
        p = c(EXP_P[0])
        for coefficient in EXP_P[1:]:
            p = self.fma(p, r, c(coefficient))
        bits = self.b.fptosi(n, self.ity)
        bits = self.b.shl(self.b.add(bits, ir.Constant(self.ity, [127] * self.lanes)),
                          ir.Constant(self.ity, [23] * self.lanes))
        scale = self.b.bitcast(bits, self.vty)
        e = self.mul(self.add(self.fma(self.mul(p, r), r, r), c(ONE)), scale)
        e = self.select(self.cmp(">", x, c(OVERFLOW)), c(np.inf), e)
        e = self.select(self.cmp("<", x, c(UNDERFLOW)), c(0.0), e)
        return self.select(self.is_nan(x), x, e)

    def sigmoid(self, x):
        """``1 / (1 + e^{-x})`` as ``_rnn_numba._sig`` (float32)."""
        c = self.const
        return self.div(c(ONE), self.add(c(ONE), self.exp(self.b.fneg(x))))

    def tanh(self, x):
        """Cephes tanhf as ``_rnn_numba._tanh32``."""
        c = self.const
        a = self.fabs(x)
        z = self.mul(x, x)
        p = c(TANH_P[0])
        for coefficient in TANH_P[1:]:
            p = self.fma(p, z, c(coefficient))
        small = self.fma(self.mul(p, z), x, x)
        big = self.sub(c(ONE), self.div(c(TWO), self.add(self.exp(self.mul(c(TWO), a)),
                                                         c(ONE))))
        big = self.select(self.cmp(">=", x, c(0.0)), big, self.b.fneg(big))
        big = self.select(self.is_nan(x), x, big)
        return self.select(self.cmp("<", a, c(TANH_SMALL)), small, big)


def _unary(emit):
    """An intrinsic ``(src, s, dst, d)`` applying ``emit(vec, x)`` to ``LANES`` floats."""

    @intrinsic
    def kernel(typingctx, src, s, dst, d):
        sig = types.void(src, types.intp, dst, types.intp)

        def codegen(context, builder, signature, args):
            src_arr, s_off, dst_arr, d_off = args
            vec = _Vec(builder)
            src_ptr = context.make_array(signature.args[0])(context, builder, src_arr).data
            dst_ptr = context.make_array(signature.args[2])(context, builder, dst_arr).data
            load = builder.bitcast(builder.gep(src_ptr, [s_off]), vec.vty.as_pointer())
            value = emit(vec, builder.load(load, align=4))
            store = builder.bitcast(builder.gep(dst_ptr, [d_off]), vec.vty.as_pointer())
            builder.store(value, store, align=4)
            return context.get_dummy_value()

        return sig, codegen

    return kernel


_vsigmoid = _unary(lambda vec, x: vec.sigmoid(x))
_vtanh = _unary(lambda vec, x: vec.tanh(x))


def _lstm_cell_intrinsic(masked: bool, fused: bool | None = None, lanes: int = LANES):
    """``_vlstm_cell`` (whole vectors) or, ``masked``, ``_vlstm_cell_tail`` (the lanes
    ``l < count`` only: masked loads and stores, nothing read or written past them).
    ``fused=False`` rounds every multiply-add twice (the cell before fused multiply-adds,
    for ``benchmarks.rnn_parts``; not the scalar route's bits where ``FUSED``)."""

    @intrinsic
    def kernel(typingctx, p, q, gt, c_prev, c, tc, h, j, count):
        sig = types.void(p, q, gt, c_prev, c, tc, h, types.intp, types.intp)

        def codegen(context, builder, signature, args):
            vec = _Vec(builder, fused, lanes)
            arrays = [context.make_array(ty)(context, builder, value)
                      for ty, value in zip(signature.args[:7], args[:7])]
            p_ptr, q_ptr, gt_ptr, cp_ptr, c_ptr, tc_ptr, h_ptr = (a.data for a in arrays)
            j, count = args[7], args[8]
            units = arrays[4].nitems
            module = builder.module
            i32 = ir.IntType(32)
            align = ir.Constant(i32, 4)
            if masked:
                width = vec.lanes
                mty = ir.VectorType(ir.IntType(1), width)
                ity = ir.VectorType(count.type, width)
                first = builder.insert_element(ir.Constant(ity, ir.Undefined), count,
                                               ir.Constant(i32, 0))
                mask = builder.icmp_signed("<", ir.Constant(ity, list(range(width))),
                                           builder.shuffle_vector(
                    first, ir.Constant(ity, ir.Undefined),
                    ir.Constant(ir.VectorType(i32, width), [0] * width)))
                ptr_ty = vec.vty.as_pointer()
                name = f"llvm.masked.load.v{width}f32.p0"
                m_load = module.globals.get(name) or ir.Function(
                    module, ir.FunctionType(vec.vty, [ptr_ty, i32, mty, vec.vty]), name)
                name = f"llvm.masked.store.v{width}f32.p0"
                m_store = module.globals.get(name) or ir.Function(
                    module, ir.FunctionType(ir.VoidType(), [vec.vty, ptr_ty, i32, mty]), name)

            def at(ptr, index):
                return builder.bitcast(builder.gep(ptr, [index]), vec.vty.as_pointer())

            def load(ptr, index):
                if masked:
                    return builder.call(m_load, [at(ptr, index), align, mask, vec.const(0.0)])
                return builder.load(at(ptr, index), align=4)

            def store(value, ptr, index):
                if masked:
                    builder.call(m_store, [value, at(ptr, index), align, mask])
                else:
                    builder.store(value, at(ptr, index), align=4)

            offsets = [builder.add(j, builder.mul(units, ir.Constant(units.type, k)))
                       for k in range(4)]
            acts = []
            for k, off in enumerate(offsets):
                a = vec.add(load(p_ptr, off), load(q_ptr, off))
                acts.append(vec.tanh(a) if k == 2 else vec.sigmoid(a))
                store(acts[-1], gt_ptr, off)
            i, f, g, o = acts
            cell = vec.add(vec.mul(f, load(cp_ptr, j)), vec.mul(i, g))
            store(cell, c_ptr, j)
            t = vec.tanh(cell)
            store(t, tc_ptr, j)
            store(vec.mul(o, t), h_ptr, j)
            return context.get_dummy_value()

        return sig, codegen

    return kernel


# Floats per LSTM cell call: 2 AVX-512 vectors, 4 AVX2 ones.  A cell is five exp chains of
# some twenty dependent operations each; with several vectors per call their operations
# interleave and the core overlaps their latencies.  LSTM 128, the cells of 128 rows over
# 28 steps, one thread, Intel Xeon (ad hoc, interleaved, medians of 7): AVX-512 one vector
# 1.39 ms, two 1.16, four 1.19; AVX2 (Numba compiling for Haswell) one vector 1.91 ms, two
# 1.38, four 1.16.  ``python -m benchmarks.rnn_parts`` part 7 times one against 32.
CELL_LANES = 32

# The LSTM cell of units ``u = j + l`` (``l < CELL_LANES``, and ``l < count`` for the tail;
# ``H = len(c)`` units, gate blocks i, f, g, o at offsets 0, H, 2H, 3H of the rows ``p``,
# ``q``, ``gt``)::
#
#     a_k = p[kH + u] + q[kH + u]                   (k = 0..3: the pre-activations)
#     i, f, o = sigma(a_0), sigma(a_1), sigma(a_3);  g = tanh(a_2)   -> gt
#     c[u] = f c_prev[u] + i g;  tc[u] = tanh(c[u]);  h[u] = o tc[u]
#
# the operations of ``_rnn_numba._lstm_unit``, in its order (products and sum rounded one
# by one), so every lane gives the scalar route's bits.  ``(p, q, gt, c_prev, c, tc, h,
# j, count)``; ``_vlstm_cell`` ignores ``count``.
_vlstm_cell = _lstm_cell_intrinsic(masked=False, lanes=CELL_LANES)
_vlstm_cell_tail = _lstm_cell_intrinsic(masked=True, lanes=CELL_LANES)
