"""The kernel benchmark's case table: for each operation and shape, its implementations.

A ``Case`` is one row of the table (an operation at one shape); its ``Impl`` cells are the
timed calls of each implementation (``IMPLS``: naive, numpy, numba, minidl, torch, cupy)
and what their output is checked against.  ``build_cases(env, quick)`` builds them all,
with the same seed every time (the torch worker process builds the same list).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

IMPLS = ("naive", "numpy", "numba", "minidl", "torch", "cupy")

# The teaching versions, every multiply-add written out, live in the library beside the
# references (minidl/kernels/naive.py), where the tests use them too.
from minidl.kernels.naive import (im2col_naive, col2im_naive, conv2d_forward_naive,  # noqa: E402
                                  conv2d_backward_naive, max_pool2d_forward_naive,
                                  max_pool2d_backward_naive, avg_pool2d_forward_naive,
                                  avg_pool2d_backward_naive, linear_forward_naive,
                                  linear_backward_naive, adam_update_naive)  # noqa: F401


# ====================================================================== cases
@dataclass
class Impl:
    run: Callable[[], object]                 # the timed call
    result: Callable[[], object] | None = None  # output to check (default: run())
    sync: Callable[[], None] | None = None    # e.g. CuPy's device synchronise
    ref_part: Callable[[object], object] | None = None  # part of the reference it matches
    remote: tuple | None = None               # (TorchKernels worker, case index): runs there


@dataclass
class Case:
    op: str
    shape: str
    impls: dict = field(default_factory=dict)   # name -> Impl
    reference: str = "numpy"                    # whose output the others are checked against
    notes: list = field(default_factory=list)   # why a cell is missing, for the report


def _sizes(shape):
    return "x".join(str(s) for s in shape)




class Env:
    """The libraries a case may use: minidl (always), torch and cupy when present."""

    def __init__(self, use_torch: bool, use_cupy: bool):
        import minidl
        from minidl import kernels as K
        minidl.performance.apply()      # the process-wide settings a training run gets
        self.minidl, self.K = minidl, K
        self.torch = None
        if use_torch:
            try:
                import torch
                self.torch = torch
            except ImportError:
                self.torch = None
        self.cp = None
        if use_cupy:
            from minidl import backend
            if backend.cuda_available():
                self.cp = backend._get_cupy()

    def t(self, a):
        return self.torch.from_numpy(np.ascontiguousarray(a))

    def c(self, a):
        return self.cp.asarray(a)

    def cupy_sync(self):
        self.cp.cuda.Device().synchronize()


def conv_shapes(quick):
    # (label, N, C, H, W, O, k, pad, stride)
    small = ("small", 2, 3, 8, 8, 4, 3, 1, 1)
    model = [("CNN conv1 (64,1,28,28) 1->32 k3 p1", 64, 1, 28, 28, 32, 3, 1, 1),
             ("CNN conv2 (64,32,14,14) 32->64 k3 p1", 64, 32, 14, 14, 64, 3, 1, 1),
             ("small CNN (128,1,28,28) 1->16 k5 p2", 128, 1, 28, 28, 16, 5, 2, 1)]
    if quick:
        model = []
    return [small] + model


def pool_shapes(quick):
    small = ("small", (2, 3, 8, 8), 2)
    model = [("CNN pool1 (64,32,28,28) k2", (64, 32, 28, 28), 2),
             ("CNN pool2 (64,64,14,14) k2", (64, 64, 14, 14), 2),
             ("small CNN (128,16,28,28) k2", (128, 16, 28, 28), 2)]
    if quick:
        model = []
    return [small] + model


def linear_shapes(quick):
    small = ("small (8,32)->16", 8, 32, 16)
    model = [("lab MLP fc1 (64,784)->256", 64, 784, 256),
             ("CNN fc1 (64,3136)->128", 64, 3136, 128)]
    if quick:
        model = []
    return [small] + model


def adam_shapes(quick):
    small = ("small: 1 tensor of 1,000", [(1000,)])
    model = [("CNN 2-conv params (421,642 in 8 tensors)",
              [(32, 1, 3, 3), (32,), (64, 32, 3, 3), (64,), (128, 3136), (128,), (10, 128), (10,)]),
             ("lab MLP params (203,530 in 4 tensors)", [(256, 784), (256,), (10, 256), (10,)])]
    if quick:
        model = []
    return [small] + model


# minidl's im2col has used two column layouts: (N, K, L) per image, as torch's unfold,
# and (K, N*L), one matrix for the batch. The benchmark follows whichever the kernels use.
def cols_layout(K) -> str:
    probe = K.im2col_reference(np.zeros((2, 1, 3, 3), np.float32), 1)
    return "NKL" if probe.ndim == 3 else "KNL"


def nkl_to_layout(a, layout, xp=np):
    """(N, K, L) columns in ``layout``."""
    if layout == "NKL":
        return a
    n, k, length = a.shape
    return xp.ascontiguousarray(a.transpose(1, 0, 2)).reshape(k, n * length)


def layout_to_nkl(cols, layout, n, xp=np):
    """Columns in ``layout`` as (N, K, L)."""
    if layout == "NKL":
        return cols
    k, nl = cols.shape
    return xp.ascontiguousarray(cols.reshape(k, n, nl // n).transpose(1, 0, 2))


def conv_forward_gemm(im2col, layout, x, w2, b, k, s, p, ho, wo, xp=np):
    """Convolution as ``im2col`` + one GEMM + bias, in the layer's formulation."""
    n, o = x.shape[0], w2.shape[0]
    cols = im2col(x, k, s, p)
    if layout == "NKL":
        y = xp.matmul(w2, cols)                                   # (N, O, L)
        y += b[:, None]
    else:
        y_mat = (w2 @ cols).reshape(o, n, -1).transpose(1, 0, 2)  # (N, O, L) view
        y = xp.empty(y_mat.shape, dtype=x.dtype)
        xp.add(y_mat, b[:, None], out=y)
    return y.reshape(n, o, ho, wo)


def conv_backward_gemm(col2im, layout, cols, w2, dout, xshape, k, s, p, xp=np):
    """(dx, dweight flat, dbias) from the forward's columns: the layer's GEMMs + ``col2im``."""
    n, o = dout.shape[:2]
    if layout == "NKL":
        g = dout.reshape(n, o, -1)                                    # (N, O, L)
        db = g.sum(axis=(0, 2))
        dw = xp.matmul(g, cols.transpose(0, 2, 1)).sum(axis=0)        # (O, K)
        dcols = xp.matmul(w2.T, g)                                    # (N, K, L)
    else:
        g = xp.ascontiguousarray(dout.reshape(n, o, -1).transpose(1, 0, 2)).reshape(o, -1)
        db = g.sum(axis=1)
        dw = g @ cols.T                                               # (O, K)
        dcols = w2.T @ g                                              # (K, N*L)
    return col2im(dcols, xshape, k, s, p), dw.reshape(-1), db


def build_cases(env: Env, quick: bool, dtype=np.float32) -> list[Case]:
    K, nn, torch, cp = env.K, env.minidl.nn, env.torch, env.cp
    F = torch.nn.functional if torch else None
    aten = torch.ops.aten if torch else None
    rng = np.random.default_rng(0)
    cases = []
    layout = cols_layout(K)

    # ---- im2col / col2im / conv forward / conv backward
    for label, n, c, h, w, o, k, pad, s in conv_shapes(quick):
        small = label == "small"
        shape = f"{label}" if not small else f"small x {_sizes((n, c, h, w))} k{k} p{pad}"
        x = rng.standard_normal((n, c, h, w)).astype(dtype)
        wgt = (rng.standard_normal((o, c, k, k)) * 0.1).astype(dtype)
        b = rng.standard_normal(o).astype(dtype)
        ho = (h + 2 * pad - k) // s + 1
        wo = (w + 2 * pad - k) // s + 1
        cols = K.im2col_reference(x, k, s, pad)
        dcols = rng.standard_normal(cols.shape).astype(dtype)
        dout = rng.standard_normal((n, o, ho, wo)).astype(dtype)
        w2 = wgt.reshape(o, -1)

        case = Case("im2col", shape)
        if small:
            case.impls["naive"] = Impl(lambda x=x, k=k, s=s, p=pad:
                                       nkl_to_layout(im2col_naive(x, k, s, p), layout))
        case.impls["numpy"] = Impl(lambda x=x, k=k, s=s, p=pad: K.im2col_reference(x, k, s, p))
        case.impls["numba"] = Impl(lambda x=x, k=k, s=s, p=pad: K.im2col_numba(x, k, s, p))
        if torch:
            xt = env.t(x)
            unfold = (lambda xt=xt, k=k, s=s, p=pad:
                      F.unfold(xt, k, dilation=1, padding=p, stride=s))
            # timed in torch's own (N, K, L) layout; checked in minidl's
            case.impls["torch"] = Impl(unfold, result=lambda f=unfold:
                                       nkl_to_layout(f().numpy(), layout))
        if cp:
            xc = env.c(x)
            case.impls["cupy"] = Impl(lambda xc=xc, k=k, s=s, p=pad:
                                      K.im2col_reference(xc, k, s, p),
                                      sync=env.cupy_sync)
        cases.append(case)

        case = Case("col2im", shape)
        if small:
            case.impls["naive"] = Impl(lambda d=dcols, sh=x.shape, k=k, s=s, p=pad:
                                       col2im_naive(layout_to_nkl(d, layout, sh[0]), sh, k, s, p))
        case.impls["numpy"] = Impl(lambda d=dcols, sh=x.shape, k=k, s=s, p=pad:
                                   K.col2im_reference(d, sh, k, s, p))
        case.impls["numba"] = Impl(lambda d=dcols, sh=x.shape, k=k, s=s, p=pad:
                                   K.col2im_numba(d, sh, k, s, p))
        if torch:
            dt = env.t(layout_to_nkl(dcols, layout, n))
            case.impls["torch"] = Impl(lambda dt=dt, hw=(h, w), k=k, s=s, p=pad:
                                       F.fold(dt, hw, k, dilation=1, padding=p, stride=s))
        if cp:
            dc = env.c(dcols)
            case.impls["cupy"] = Impl(lambda dc=dc, sh=x.shape, k=k, s=s, p=pad:
                                      K.col2im_reference(dc, sh, k, s, p), sync=env.cupy_sync)
        cases.append(case)

        def conv_fwd(im2col, x, w2, b, k, s, p, ho=ho, wo=wo, xp=np):
            return conv_forward_gemm(im2col, layout, x, w2, b, k, s, p, ho, wo, xp)

        def conv_bwd(col2im, cols, w2, dout, xshape, k, s, p, xp=np):
            return conv_backward_gemm(col2im, layout, cols, w2, dout, xshape, k, s, p, xp)

        layer = nn.Conv2d(c, o, k, stride=s, padding=pad)
        layer.weight.data = wgt.copy()
        layer.bias.data = b.copy()

        case = Case("conv2d forward", shape)
        if small:
            case.impls["naive"] = Impl(lambda x=x, wgt=wgt, b=b, s=s, p=pad:
                                       conv2d_forward_naive(x, wgt, b, s, p))
        case.impls["numpy"] = Impl(lambda x=x, w2=w2, b=b, k=k, s=s, p=pad, f=conv_fwd:
                                   f(K.im2col_reference, x, w2, b, k, s, p))
        case.impls["numba"] = Impl(lambda x=x, w2=w2, b=b, k=k, s=s, p=pad, f=conv_fwd:
                                   f(K.im2col_numba, x, w2, b, k, s, p))
        case.impls["minidl"] = Impl(lambda layer=layer, x=x: layer(x))
        if torch:
            xt, wt, bt = env.t(x), env.t(wgt), env.t(b)
            case.impls["torch"] = Impl(lambda xt=xt, wt=wt, bt=bt, s=s, p=pad:
                                       F.conv2d(xt, wt, bt, stride=s, padding=p))
        if cp:
            xc, w2c, bc = env.c(x), env.c(w2), env.c(b)
            case.impls["cupy"] = Impl(lambda xc=xc, w2c=w2c, bc=bc, k=k, s=s, p=pad, f=conv_fwd:
                                      f(K.im2col_reference, xc, w2c, bc, k, s, p, xp=cp),
                                      sync=env.cupy_sync)
        cases.append(case)

        case = Case("conv2d backward", shape)
        if small:
            case.impls["naive"] = Impl(
                lambda x=x, wgt=wgt, dout=dout, s=s, p=pad:
                (lambda r: (r[0], r[1].reshape(-1), r[2]))(
                    conv2d_backward_naive(x, wgt, dout, s, p)))
        case.impls["numpy"] = Impl(lambda cols=cols, w2=w2, dout=dout, sh=x.shape, k=k, s=s, p=pad:
                                   conv_bwd(K.col2im_reference, cols, w2, dout, sh, k, s, p))
        case.impls["numba"] = Impl(lambda cols=cols, w2=w2, dout=dout, sh=x.shape, k=k, s=s, p=pad:
                                   conv_bwd(K.col2im_numba, cols, w2, dout, sh, k, s, p))
        if torch:
            xt, wt, dt = env.t(x), env.t(wgt), env.t(dout)

            def t_bwd(xt=xt, wt=wt, dt=dt, o=o, s=s, p=pad):
                dx, dw, db = aten.convolution_backward(dt, xt, wt, [o], [s, s], [p, p], [1, 1],
                                                       False, [0, 0], 1, [True, True, True])
                return dx, dw.reshape(-1), db
            case.impls["torch"] = Impl(t_bwd)
        if cp:
            colsc, w2c, dc = env.c(cols), env.c(w2), env.c(dout)
            case.impls["cupy"] = Impl(lambda colsc=colsc, w2c=w2c, dc=dc, sh=x.shape, k=k, s=s,
                                      p=pad: conv_bwd(K.col2im_reference, colsc, w2c, dc, sh, k,
                                                      s, p, xp=cp), sync=env.cupy_sync)
        cases.append(case)
        if s == 1 and not small:
            cases += _direct_conv_cases(env, shape, x, wgt, b, dout, k, pad)
        tl = None
        if torch:
            tl = torch.nn.Conv2d(c, o, k, stride=s, padding=pad)
            with torch.no_grad():
                tl.weight.copy_(env.t(wgt))
                tl.bias.copy_(env.t(b))
        cases.append(_layer_case(env, "Conv2d layer fwd+bwd", shape, layer, tl, x, dout))

    # ---- pooling
    for label, xshape, k in pool_shapes(quick):
        small = label == "small"
        shape = label if not small else f"small x {_sizes(xshape)} k{k}"
        # ReLU-like input: many exact zeros, so ties are exercised as in the real model
        x = np.maximum(rng.standard_normal(xshape), 0).astype(dtype)
        out_ref, idx = K.max_pool2d_forward_reference(x, k)
        dout = rng.standard_normal(out_ref.shape).astype(dtype)
        mp_layer, ap_layer = nn.MaxPool2d(k), nn.AvgPool2d(k)

        for kind in ("max", "avg"):
            fwd_ref = getattr(K, f"{kind}_pool2d_forward_reference")
            fwd_nb = getattr(K, f"{kind}_pool2d_forward_numba")
            lay = mp_layer if kind == "max" else ap_layer
            case = Case(f"{kind}_pool2d forward", shape)
            if small:
                naive = max_pool2d_forward_naive if kind == "max" else avg_pool2d_forward_naive
                case.impls["naive"] = Impl(lambda x=x, k=k, f=naive: f(x, k, k))
            case.impls["numpy"] = Impl(lambda x=x, k=k, f=fwd_ref: f(x, k))
            case.impls["numba"] = Impl(lambda x=x, k=k, f=fwd_nb: f(x, k))
            # the max-pool layer returns the output only (it keeps the indices itself)
            case.impls["minidl"] = Impl(lambda x=x, lay=lay: lay(x),
                                        ref_part=(lambda r: r[0]) if kind == "max" else None)
            if torch:
                xt = env.t(x)
                if kind == "max":
                    case.impls["torch"] = Impl(lambda xt=xt, k=k:
                                               F.max_pool2d(xt, k, return_indices=True))
                else:
                    case.impls["torch"] = Impl(lambda xt=xt, k=k: F.avg_pool2d(xt, k))
            if cp:
                xc = env.c(x)
                case.impls["cupy"] = Impl(lambda xc=xc, k=k, f=fwd_ref: f(xc, k),
                                          sync=env.cupy_sync)
            cases.append(case)

            case = Case(f"{kind}_pool2d backward", shape)
            if kind == "max":
                if small:
                    case.impls["naive"] = Impl(lambda d=dout, i=idx, sh=xshape:
                                               max_pool2d_backward_naive(d, i, sh))
                case.impls["numpy"] = Impl(lambda d=dout, i=idx, sh=xshape:
                                           K.max_pool2d_backward_reference(d, i, sh))
                case.impls["numba"] = Impl(lambda d=dout, i=idx, sh=xshape:
                                           K.max_pool2d_backward_numba(d, i, sh))
            else:
                if small:
                    case.impls["naive"] = Impl(lambda d=dout, sh=xshape, k=k:
                                               avg_pool2d_backward_naive(d, sh, k, k))
                case.impls["numpy"] = Impl(lambda d=dout, sh=xshape, k=k:
                                           K.avg_pool2d_backward_reference(d, sh, k))
                case.impls["numba"] = Impl(lambda d=dout, sh=xshape, k=k:
                                           K.avg_pool2d_backward_numba(d, sh, k))
            if torch:
                xt, dt, it = env.t(x), env.t(dout), env.t(idx)
                if kind == "max":
                    case.impls["torch"] = Impl(
                        lambda xt=xt, dt=dt, it=it, k=k:
                        aten.max_pool2d_with_indices_backward(dt, xt, [k, k], [k, k], [0, 0],
                                                              [1, 1], False, it))
                else:
                    case.impls["torch"] = Impl(
                        lambda xt=xt, dt=dt, k=k:
                        aten.avg_pool2d_backward(dt, xt, [k, k], [k, k], [0, 0], False, True,
                                                 None))
            if cp:
                dc, ic = env.c(dout), env.c(idx)
                if kind == "max":
                    case.impls["cupy"] = Impl(lambda dc=dc, ic=ic, sh=xshape:
                                              K.max_pool2d_backward_reference(dc, ic, sh),
                                              sync=env.cupy_sync)
                else:
                    case.impls["cupy"] = Impl(lambda dc=dc, sh=xshape, k=k:
                                              K.avg_pool2d_backward_reference(dc, sh, k),
                                              sync=env.cupy_sync)
            cases.append(case)
            tl = None
            if torch:
                tl = torch.nn.MaxPool2d(k) if kind == "max" else torch.nn.AvgPool2d(k)
            cases.append(_layer_case(env, f"{type(lay).__name__} layer fwd+bwd", shape,
                                     lay, tl, x, dout))

    # ---- linear
    for label, n, d, o in linear_shapes(quick):
        small = label.startswith("small")
        x = rng.standard_normal((n, d)).astype(dtype)
        wgt = (rng.standard_normal((o, d)) * 0.05).astype(dtype)
        b = rng.standard_normal(o).astype(dtype)
        dout = rng.standard_normal((n, o)).astype(dtype)
        layer = nn.Linear(d, o)
        layer.weight.data, layer.bias.data = wgt.copy(), b.copy()

        def np_fwd(x, w, b):
            y = x @ w.T
            y += b
            return y

        def np_bwd(x, w, dout):
            return dout @ w, dout.T @ x, dout.sum(axis=0)

        case = Case("linear forward", label)
        if small:
            case.impls["naive"] = Impl(lambda x=x, w=wgt, b=b: linear_forward_naive(x, w, b))
        case.impls["numpy"] = Impl(lambda x=x, w=wgt, b=b: np_fwd(x, w, b))
        case.impls["minidl"] = Impl(lambda layer=layer, x=x: layer(x))
        if torch:
            xt, wt, bt = env.t(x), env.t(wgt), env.t(b)
            case.impls["torch"] = Impl(lambda xt=xt, wt=wt, bt=bt: F.linear(xt, wt, bt))
        if cp:
            xc, wc, bc = env.c(x), env.c(wgt), env.c(b)
            case.impls["cupy"] = Impl(lambda xc=xc, wc=wc, bc=bc: np_fwd(xc, wc, bc),
                                      sync=env.cupy_sync)
        cases.append(case)

        case = Case("linear backward", label)
        if small:
            case.impls["naive"] = Impl(lambda x=x, w=wgt, d=dout: linear_backward_naive(x, w, d))
        case.impls["numpy"] = Impl(lambda x=x, w=wgt, d=dout: np_bwd(x, w, d))
        if torch:
            xt, wt, dt = env.t(x), env.t(wgt), env.t(dout)
            case.impls["torch"] = Impl(lambda xt=xt, wt=wt, dt=dt:
                                       (dt.mm(wt), dt.t().mm(xt), dt.sum(0)))
        if cp:
            xc, wc, dc = env.c(x), env.c(wgt), env.c(dout)
            case.impls["cupy"] = Impl(lambda xc=xc, wc=wc, dc=dc: np_bwd(xc, wc, dc),
                                      sync=env.cupy_sync)
        cases.append(case)
        tl = None
        if torch:
            tl = torch.nn.Linear(d, o)
            with torch.no_grad():
                tl.weight.copy_(env.t(wgt))
                tl.bias.copy_(env.t(b))
        cases.append(_layer_case(env, "Linear layer fwd+bwd", label, layer, tl, x, dout))

    # ---- Adam update
    for label, shapes in adam_shapes(quick):
        small = label.startswith("small")
        params0 = [rng.standard_normal(s).astype(dtype) for s in shapes]
        grads = [rng.standard_normal(s).astype(dtype) for s in shapes]
        cases.append(_adam_case(env, label, params0, grads, small))
    return cases


def _direct_conv_cases(env: Env, shape, x, wgt, b, dout, k, pad) -> list[Case]:
    """Stride-1 convolution without im2col: ``minidl.kernels.conv2d_direct_*`` twins.

    A Numba twin that refuses a shape (it raises ValueError saying why) leaves its cell
    empty, with the reason in the row's notes.
    """
    K, torch, cp = env.K, env.torch, env.cp
    F = torch.nn.functional if torch else None
    fwd = Case("conv2d direct forward", shape)
    fwd.impls["numpy"] = Impl(lambda: K.conv2d_direct_forward_reference(x, wgt, b, pad))
    fwd.impls["numba"] = Impl(lambda: K.conv2d_direct_forward_numba(x, wgt, b, pad))
    bwd = Case("conv2d direct backward", shape)

    def backward(weight_grad, input_grad, xp=np, x=x, wgt=wgt, dout=dout):
        dw = weight_grad(x, dout, wgt.shape, pad)
        dx = input_grad(dout, wgt, x.shape, pad)
        return dx, dw.reshape(-1), dout.sum(axis=(0, 2, 3))
    bwd.impls["numpy"] = Impl(lambda: backward(K.conv2d_direct_weight_grad_reference,
                                               K.conv2d_direct_input_grad_reference))
    bwd.impls["numba"] = Impl(lambda: backward(K.conv2d_direct_weight_grad_numba,
                                               K.conv2d_direct_input_grad_numba))
    if torch:
        xt, wt, bt, dt = env.t(x), env.t(wgt), env.t(b), env.t(dout)
        o = wgt.shape[0]
        fwd.impls["torch"] = Impl(lambda: F.conv2d(xt, wt, bt, padding=pad))

        def t_bwd():
            dx, dw, db = torch.ops.aten.convolution_backward(
                dt, xt, wt, [o], [1, 1], [pad, pad], [1, 1], False, [0, 0], 1,
                [True, True, True])
            return dx, dw.reshape(-1), db
        bwd.impls["torch"] = Impl(t_bwd)
    if cp:
        xc, wc, bc, dc = env.c(x), env.c(wgt), env.c(b), env.c(dout)
        fwd.impls["cupy"] = Impl(lambda: K.conv2d_direct_forward_reference(xc, wc, bc, pad),
                                 sync=env.cupy_sync)
        bwd.impls["cupy"] = Impl(lambda: backward(K.conv2d_direct_weight_grad_reference,
                                                  K.conv2d_direct_input_grad_reference,
                                                  x=xc, wgt=wc, dout=dc), sync=env.cupy_sync)
    for case in (fwd, bwd):
        try:
            case.impls["numba"].run()
        except ValueError as exc:
            del case.impls["numba"]
            case.notes.append(f"numba: {exc}")
    return [fwd, bwd]


def _layer_case(env: Env, op, shape, layer, torch_layer, x, dout) -> Case:
    """A layer as a user runs it in training: forward, then backward; minidl vs torch.nn.

    Returns (output, input gradient, parameter gradients) for the check against minidl.
    """
    case = Case(op, shape, reference="minidl")
    layer.train()

    def run_minidl():
        layer.zero_grad()
        y = layer(x)
        dx = layer.backward(dout)
        return [y, dx] + [p.grad for p in layer.parameters()]
    case.impls["minidl"] = Impl(run_minidl)
    if torch_layer is not None:
        xt, dt = env.t(x), env.t(dout)

        def run_torch():
            torch_layer.zero_grad(set_to_none=True)
            xr = xt.detach().requires_grad_(True)
            y = torch_layer(xr)
            y.backward(dt)
            return [y.detach(), xr.grad] + [p.grad for p in torch_layer.parameters()]
        case.impls["torch"] = Impl(run_torch)
    return case


def _adam_case(env: Env, label, params0, grads, small) -> Case:
    """Adam: every implementation does steps from its own state; checked on one fresh step."""
    minidl, torch, cp, K = env.minidl, env.torch, env.cp, env.K
    case = Case("adam update", label, reference="numpy")

    def fresh_numpy_state():
        return ([p.copy() for p in params0], [np.zeros_like(p) for p in params0],
                [np.zeros_like(p) for p in params0])

    def twin_adam(kernel):
        """One Adam step over every tensor with a ``minidl.kernels.adam_update*`` twin."""
        def update(params, grads_, ms, vs, step, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8):
            step_size = lr / (1 - beta1 ** step)
            bc2_sqrt = (1 - beta2 ** step) ** 0.5
            for p, g, m, v in zip(params, grads_, ms, vs):
                kernel(p, g, m, v, None, lr=lr, beta1=beta1, beta2=beta2, eps=eps,
                       weight_decay=0.0, decoupled=False, step_size=step_size,
                       bias_correction2_sqrt=bc2_sqrt)
        return update
    numpy_adam = twin_adam(K.adam_update_reference)

    def stepper(update, state):
        counter = [0]

        def run():
            counter[0] += 1
            update(state[0], grads_for(state), state[1], state[2], counter[0])
        return run

    def grads_for(state):
        return state[3] if len(state) > 3 else grads

    def one_step(update, make_state):
        st = make_state()
        update(st[0], grads_for(st), st[1], st[2], 1)
        return st[0]

    if small:
        case.impls["naive"] = Impl(stepper(adam_update_naive, fresh_numpy_state()),
                                   result=lambda: one_step(adam_update_naive, fresh_numpy_state))
    case.impls["numpy"] = Impl(stepper(numpy_adam, fresh_numpy_state()),
                               result=lambda: one_step(numpy_adam, fresh_numpy_state))
    numba_adam = twin_adam(K.adam_update_numba)
    case.impls["numba"] = Impl(stepper(numba_adam, fresh_numpy_state()),
                               result=lambda: one_step(numba_adam, fresh_numpy_state))

    def minidl_opt():
        ps = [minidl.nn.Parameter(p.copy()) for p in params0]
        for p, g in zip(ps, grads):
            p.grad = g
        return ps, minidl.optim.Adam(ps, lr=1e-3)
    ps, opt = minidl_opt()

    def minidl_result():
        ps2, opt2 = minidl_opt()
        opt2.step()
        return [p.data for p in ps2]
    case.impls["minidl"] = Impl(opt.step, result=minidl_result)
    if torch:
        def torch_opt():
            tps = [torch.nn.Parameter(env.t(p.copy())) for p in params0]
            for p, g in zip(tps, grads):
                p.grad = env.t(g)
            return tps, torch.optim.Adam(tps, lr=1e-3)
        tps, topt = torch_opt()

        def torch_result():
            tps2, topt2 = torch_opt()
            topt2.step()
            return [p.detach() for p in tps2]
        case.impls["torch"] = Impl(topt.step, result=torch_result)
    if cp:
        def cupy_state():
            return ([cp.asarray(p) for p in params0], [cp.zeros(p.shape, p.dtype) for p in params0],
                    [cp.zeros(p.shape, p.dtype) for p in params0], [cp.asarray(g) for g in grads])

        def cupy_adam(params, grads_, ms, vs, step):
            numpy_adam(params, grads_, ms, vs, step)   # the reference runs on CuPy arrays
        case.impls["cupy"] = Impl(stepper(cupy_adam, cupy_state()),
                                  result=lambda: one_step(cupy_adam, cupy_state),
                                  sync=env.cupy_sync)
    return case
