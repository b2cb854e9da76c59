"""The operations of a training step, each with its multiply-adds and the bytes it moves,
and the bound the machine's limits put on it (``benchmarks.roofline``, part 2).
"""
from __future__ import annotations

import math

import numpy as np

from .. import zoo
from ..zoo import MODELS
from . import FLOAT


def _op(name: str, kind: str, macs: float, other: float, reads: dict, writes: dict,
        syncs: int = 1, parts: list | None = None):
    """One operation: ``macs`` multiply-adds (2 flops each) and ``other`` flops (bias
    additions, nominal element-wise work); ``reads``/``writes`` map array names to bytes
    (an array both read and written, as Adam's moments, counts in both for the traffic
    and once for the working set).  With ``parts``, the sums of the parts (working set:
    the largest part's)."""
    if parts:
        macs = sum(p["mult_adds"] for p in parts)
        flops = sum(p["flops"] for p in parts)
        traffic = sum(p["bytes"] for p in parts)
        footprint = max(p["footprint"] for p in parts)
    else:
        flops = 2 * macs + other
        traffic = sum(reads.values()) + sum(writes.values())
        arrays = dict(reads)
        for k, v in writes.items():
            arrays[k] = max(arrays.get(k, 0), v)
        footprint = sum(arrays.values())
    return {"name": name, "kind": kind, "mult_adds": float(macs), "flops": float(flops),
            "bytes": float(traffic), "footprint": float(footprint), "syncs": syncs,
            "parts": parts or [], "layer": None, "direction": None}


# nominal flops per hidden unit and step of an LSTM/GRU cell's element-wise update
# (gate nonlinearities, products, sums); tiny beside the step's product (2 G per unit)
CELL_FLOPS = 10


def _recurrent_parts(cell: str, N: int, T: int, I: int, H: int, need_dx: bool):
    """Forward and backward parts of one recurrent layer (one direction, one layer):
    batch N, T steps, input size I, hidden size H, G = gates x H."""
    G = {"LSTM": 4, "GRU": 3}[cell] * H
    f = FLOAT
    saved = {"gates": N * T * G * f, "hs": N * T * H * f,
             ("cs" if cell == "LSTM" else "hn"): N * T * H * f}
    # one operation, as minidl runs it (``recurrent_layer_forward``): the LSTM's input
    # projection is inside its loop (a joint product per step, no xg array); the GRU's
    # runs first and its xg (N T G) is written and read once more
    xg = {} if cell == "LSTM" else {"xg": N * T * G * f}
    fwd = [
        _op("projection + loop fwd", "loop", N * T * I * G + T * N * H * G,
            N * T * G + T * (N * G + CELL_FLOPS * N * H),
            {"x": N * T * I * f, "W_ih": G * I * f, "b_ih": G * f, "W_hh": G * H * f,
             "b_hh": G * f, **xg}, {**xg, **saved}, syncs=T),
    ]
    bwd = [
        _op("recurrent loop bwd", "loop", T * N * G * H, T * 2 * CELL_FLOPS * N * H,
            {"dh_n": N * H * f, "W_hh": G * H * f, **saved}, {"dgates": N * T * G * f},
            syncs=T),
        _op("hidden weight grads", "gemm", T * N * G * H, T * N * G,
            {"dgates": N * T * G * f, "hs": N * T * H * f},
            {"dW_hh": G * H * f, "db_hh": G * f}),
        _op("input weight grads", "gemm", N * T * G * I, N * T * G,
            {"dgates": N * T * G * f, "x": N * T * I * f},
            {"dW_ih": G * I * f, "db_ih": G * f}),
    ]
    if need_dx:
        bwd.append(_op("input grad", "gemm", N * T * G * I, 0,
                       {"dgates": N * T * G * f, "W_ih": G * I * f}, {"dx": N * T * I * f}))
    return fwd, bwd


def _weighted_ops(label, kind, macs, bias_adds, x_bytes, w_bytes, b_bytes, y_bytes,
                  need_dx):
    """Forward and backward of a layer that is a product with a weight (Linear, Conv2d):
    forward ``y = x W (+ b)``; backward ``dW`` (``macs``), ``db``, and ``dx`` (``macs``
    more) unless the layer is the first with parameters."""
    fwd = _op(f"{label} fwd", kind, macs, bias_adds,
              {"x": x_bytes, "W": w_bytes, "b": b_bytes}, {"y": y_bytes})
    reads, writes = {"dy": y_bytes, "x": x_bytes}, {"dW": w_bytes, "db": b_bytes}
    if need_dx:
        reads["W"], writes["dx"] = w_bytes, x_bytes
    bwd = _op(f"{label} bwd", kind, macs * (2 if need_dx else 1), bias_adds, reads, writes)
    return fwd, bwd


def layer_ops(layer, index: int, in_shape, out_shape, need_dx: bool) -> list[dict]:
    """``[forward, backward]`` operations of one minidl layer with these input and
    output shapes (``need_dx``: whether its backward computes the input gradient)."""
    kind = type(layer).__name__
    f = FLOAT
    e_in, e_out = math.prod(in_shape), math.prod(out_shape)
    label = f"{index} {kind}"
    if kind in ("LastHidden", "LSTM", "GRU"):
        rnn = layer.rnn if kind == "LastHidden" else layer
        cell = type(rnn).__name__
        if cell not in ("LSTM", "GRU") or rnn.num_layers != 1 or rnn.bidirectional:
            raise ValueError(f"roofline: expected a one-layer, one-direction LSTM or GRU, "
                             f"got {cell} with num_layers={rnn.num_layers}, "
                             f"bidirectional={rnn.bidirectional}")
        N, T, I = in_shape if rnn.batch_first else (in_shape[1], in_shape[0], in_shape[2])
        label = f"{index} {cell}"
        fwd_parts, bwd_parts = _recurrent_parts(cell, N, T, I, rnn.hidden_size, need_dx)
        fwd = _op(f"{label} fwd", "recurrent", 0, 0, {}, {}, parts=fwd_parts)
        bwd = _op(f"{label} bwd", "recurrent", 0, 0, {}, {}, parts=bwd_parts)
    elif kind == "Linear":
        N, I, O = e_in // layer.in_features, layer.in_features, layer.out_features
        bias = layer.bias is not None
        fwd, bwd = _weighted_ops(label, "gemm", N * I * O, N * O if bias else 0,
                                 N * I * f, O * I * f, O * f if bias else 0, N * O * f,
                                 need_dx)
    elif kind == "Conv2d":
        F, Ho, Wo = out_shape[1], out_shape[2], out_shape[3]
        w = int(layer.weight.size)
        bias = layer.bias is not None
        fwd, bwd = _weighted_ops(label, "conv", in_shape[0] * Ho * Wo * w,
                                 e_out if bias else 0, e_in * f, w * f,
                                 F * f if bias else 0, e_out * f, need_dx)
    elif kind in ("MaxPool2d", "AvgPool2d"):
        window = math.prod(layer.kernel_size) if isinstance(layer.kernel_size, tuple) \
            else layer.kernel_size ** 2
        choice = {"choice": e_out} if kind == "MaxPool2d" else {}    # 1 byte per output
        fwd = _op(f"{label} fwd", "pool", 0, e_out * window, {"x": e_in * f},
                  {"y": e_out * f, **choice})
        bwd = _op(f"{label} bwd", "pool", 0, e_in, {"dy": e_out * f, **choice},
                  {"dx": e_in * f})
    elif kind == "BatchNorm2d":
        C = in_shape[1]
        # forward: statistics, then y = xhat * gamma + beta (one multiply-add per element,
        # as minidl.summary counts it); backward: dgamma, dbeta and dx
        fwd = _op(f"{label} fwd", "norm", e_in, 5 * e_in,
                  {"x": e_in * f, "gamma_beta": 2 * C * f, "running": 2 * C * f},
                  {"y": e_in * f, "running": 2 * C * f, "saved_stats": 2 * C * f})
        bwd = _op(f"{label} bwd", "norm", 0, 9 * e_in,
                  {"dy": e_in * f, "x": e_in * f, "gamma_stats": 3 * C * f},
                  {"dx": e_in * f, "dgamma_dbeta": 2 * C * f})
    elif kind == "ReLU":
        fwd = _op(f"{label} fwd", "elementwise", 0, e_in, {"x": e_in * f}, {"y": e_out * f})
        bwd = _op(f"{label} bwd", "elementwise", 0, e_in, {"dy": e_out * f, "y": e_out * f},
                  {"dx": e_in * f})
    elif kind == "Dropout":                                   # mask: 1 byte per element
        fwd = _op(f"{label} fwd", "elementwise", 0, e_in, {"x": e_in * f},
                  {"y": e_out * f, "mask": e_in})
        bwd = _op(f"{label} bwd", "elementwise", 0, e_in, {"dy": e_out * f, "mask": e_in},
                  {"dx": e_in * f})
    elif kind in ("Flatten", "ImageToSequence"):
        fwd = _op(f"{label} fwd", "view", 0, 0, {}, {})
        bwd = _op(f"{label} bwd", "view", 0, 0, {}, {})
    else:
        raise ValueError(f"roofline: no cost model for layer {index} of type {kind}; "
                         f"expected one of Linear, Conv2d, MaxPool2d, AvgPool2d, "
                         f"BatchNorm2d, ReLU, Dropout, Flatten, ImageToSequence, "
                         f"LastHidden(LSTM/GRU)")
    fwd.update(layer=index, direction="fwd")
    bwd.update(layer=index, direction="bwd")
    return [fwd, bwd]


def _has_parameters(layer) -> bool:
    return next(iter(layer.parameters()), None) is not None


def model_ops(name: str, batch: int | None = None) -> dict:
    """The operations of one training step of model ``name`` (``zoo.build_model``)
    at its training batch: every layer's forward, the backward of the layers from the
    last down to the first with parameters (that one without its input gradient), the
    loss and Adam's step.  Shapes come from ``minidl.summary``."""
    import minidl
    from minidl import nn
    batch = batch or MODELS[name][1]
    model = zoo.build_model(nn, name)
    s = minidl.summary(model, (batch, 1, 28, 28), dtype=np.float32)
    rows = {r.name: r for r in s.rows}
    layers = list(model)
    first = next(i for i, layer in enumerate(layers) if _has_parameters(layer))
    shape = (batch, 1, 28, 28)
    fwd_ops, bwd_ops = [], []
    for i, layer in enumerate(layers):
        out_shape = rows[str(i)].output_shape
        ops = layer_ops(layer, i, shape, out_shape, need_dx=i > first)
        fwd_ops.append(ops[0])
        if i >= first:
            bwd_ops.append(ops[1])
        shape = out_shape
    n_classes = shape[-1]
    f = FLOAT
    loss = _op("loss (fwd+bwd)", "loss", 0, 5 * batch * n_classes,
               {"logits": batch * n_classes * f, "labels": batch * 8},
               {"dlogits": batch * n_classes * f})
    params = s.total_params
    adam = _op("optimizer (Adam)", "optimizer", 0, 13 * params,
               {"p": params * f, "g": params * f, "m": params * f, "v": params * f},
               {"p": params * f, "m": params * f, "v": params * f})
    ops = fwd_ops + [loss] + bwd_ops[::-1] + [adam]
    return {"model": name, "batch": batch, "params": params,
            "summary_forward_mult_adds": s.total_mult_adds, "ops": ops,
            "first_layer_with_params": first}


def op_bound(op: dict, limits: dict, threads: int) -> dict:
    """``max(flops / peak, bytes / bandwidth, syncs x fork-join)``, best over 1..threads
    threads; a composite operation is the sum of its parts' bounds."""
    if op["parts"]:
        parts = [op_bound(p, limits, threads) for p in op["parts"]]
        total = sum(p["seconds"] for p in parts)
        top = max(parts, key=lambda p: p["seconds"])
        return {"seconds": total, "limited_by": top["limited_by"], "parts": parts,
                "threads": top["threads"], "level": top["level"]}
    if op["flops"] == 0 and op["bytes"] == 0:
        return {"seconds": 0.0, "limited_by": "nothing (a view)", "threads": 1,
                "level": None, "terms": {}}
    best = None
    for k in range(1, threads + 1):
        lim = limits["threads"].get(k)
        if lim is None:
            continue
        level = next(lv for lv in ("L1", "L2", "L3", "DRAM")
                     if lv in lim["bandwidth_gbs"]
                     and op["footprint"] <= lim["capacity_bytes"][lv])
        terms = {"compute": op["flops"] / (lim["peak_gflops"] * 1e9),
                 f"{level} bandwidth": op["bytes"] / (lim["bandwidth_gbs"][level] * 1e9),
                 "latency": op["syncs"] * lim["fork_join_s"] if k > 1 else 0.0}
        limited_by = max(terms, key=terms.get)
        cand = {"seconds": terms[limited_by], "limited_by": limited_by, "threads": k,
                "level": level, "terms": terms}
        if best is None or cand["seconds"] < best["seconds"]:
            best = cand
    return best
