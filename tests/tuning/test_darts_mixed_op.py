"""DARTS' mixed operation (minidl.nn.darts.MixedOp): gradient checks including the
architecture parameters, PyTorch parity, shared parameters, bad input."""
from __future__ import annotations

import numpy as np
import pytest

import minidl
from minidl import nn
from minidl.nn.darts import MixedOp, softmax


def _mixed_conv(c_in=2, c_out=3, alpha=(0.3, -0.5, 0.9)):
    minidl.manual_seed(0)
    op = MixedOp([nn.Conv2d(c_in, c_out, k, padding=k // 2) for k in (3, 5, 7)])
    op.alpha.data[...] = alpha
    return op


def test_softmax_is_shifted_and_normalised():
    w = softmax(np.array([1000.0, 1000.0, 999.0]))
    e = np.exp([0.0, 0.0, -1.0])
    np.testing.assert_allclose(w, e / e.sum(), rtol=1e-15)


def test_gradcheck_mixed_convolutions_including_alpha(rng):
    op = _mixed_conv()
    x = rng.standard_normal((2, 2, 6, 6))
    names = {name for name, _ in op.double().named_parameters()}
    assert "alpha" in names and "2.weight" in names
    report = minidl.gradcheck(op, x, atol=1e-7, rtol=1e-6)
    assert report


def test_gradcheck_mixed_pooling_including_alpha(rng):
    op = MixedOp([nn.MaxPool2d(2), nn.AvgPool2d(2)])
    op.alpha.data[...] = [0.7, -0.2]
    x = rng.standard_normal((2, 3, 6, 6))   # continuous values: no ties in a max window
    assert minidl.gradcheck(op, x, atol=1e-7, rtol=1e-6)


def test_gradcheck_a_block_chain_with_a_shared_alpha(rng):
    """Two blocks whose poolings share one alpha (the cnn space's pool_type is global):
    alpha's gradient is the sum over both uses."""
    minidl.manual_seed(1)
    pool_alpha = nn.Parameter(np.array([0.4, -0.1], dtype=np.float32))
    net = nn.Sequential(
        _mixed_conv(1, 2, (0.1, 0.2, -0.3)), nn.Tanh(),
        MixedOp([nn.MaxPool2d(2), nn.AvgPool2d(2)], alpha=pool_alpha),
        _mixed_conv(2, 2, (-0.2, 0.5, 0.0)), nn.Tanh(),
        MixedOp([nn.MaxPool2d(2), nn.AvgPool2d(2)], alpha=pool_alpha),
    )
    names = [name for name, _ in net.named_parameters()]
    assert names.count("2.alpha") == 1 and "5.alpha" not in names   # one shared Parameter
    x = rng.standard_normal((2, 1, 8, 8))
    assert minidl.gradcheck(net, x, atol=1e-7, rtol=1e-6)


def test_alpha_gradient_is_the_softmax_chain_rule(rng):
    """g_k = <G, o_k(x)>, dL/dalpha_j = w_j (g_j - sum_k w_k g_k), written out."""
    op = _mixed_conv().double()
    x = rng.standard_normal((3, 2, 5, 5))
    y = op(x)
    G = rng.standard_normal(y.shape)
    op.backward(G)
    outs = [conv(x) for conv in op.ops]
    w = np.exp(op.alpha.data) / np.exp(op.alpha.data).sum()
    np.testing.assert_allclose(y, sum(wk * o for wk, o in zip(w, outs)), rtol=1e-13)
    g = np.array([(G * o).sum() for o in outs])
    np.testing.assert_allclose(op.alpha.grad, w * (g - w @ g), rtol=1e-12, atol=1e-12)
    assert abs(op.alpha.grad.sum()) < 1e-10      # softmax is shift-invariant


def test_matches_pytorch_in_float64(torch, rng):
    op = _mixed_conv().double()
    x = rng.standard_normal((2, 2, 7, 7))
    y = op(x)
    G = rng.standard_normal(y.shape)
    dx = op.backward(G)

    tx = torch.tensor(x, requires_grad=True)
    ta = torch.tensor(op.alpha.data, requires_grad=True)
    convs = []
    for conv in op.ops:
        tc = torch.nn.Conv2d(2, 3, conv.kernel_size, padding=conv.padding).double()
        with torch.no_grad():
            tc.weight.copy_(torch.tensor(conv.weight.data))
            tc.bias.copy_(torch.tensor(conv.bias.data))
        convs.append(tc)
    tw = torch.softmax(ta, 0)
    ty = sum(tw[k] * convs[k](tx) for k in range(3))
    ty.backward(torch.tensor(G))
    scale = lambda a: max(1.0, float(np.abs(a).max()))  # noqa: E731
    for ours, theirs in [(y, ty.detach().numpy()), (dx, tx.grad.numpy()),
                         (op.alpha.grad, ta.grad.numpy())] + \
            [(c.weight.grad, tc.weight.grad.numpy()) for c, tc in zip(op.ops, convs)] + \
            [(c.bias.grad, tc.bias.grad.numpy()) for c, tc in zip(op.ops, convs)]:
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-12 * scale(theirs))


def test_needs_input_grad_false_still_fills_every_parameter(rng):
    op = _mixed_conv()
    op.needs_input_grad = False
    x = rng.standard_normal((2, 2, 5, 5)).astype(np.float32)
    y = op(x)
    assert op.backward(np.ones_like(y)) is None
    assert op.alpha.grad is not None and all(c.weight.grad is not None for c in op.ops)
    op.needs_input_grad = True
    assert all(c.needs_input_grad for c in op.ops)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="non-empty list of minidl Modules"):
        MixedOp([])
    conv = nn.Conv2d(1, 1, 3)
    with pytest.raises(ValueError, match="appears twice"):
        MixedOp([conv, conv])
    with pytest.raises(ValueError, match=r"alpha to be a Parameter of shape \(2,\)"):
        MixedOp([nn.ReLU(), nn.Tanh()], alpha=nn.Parameter(np.zeros(3)))
    op = MixedOp([nn.Conv2d(1, 1, 3), nn.Conv2d(1, 1, 5)])   # no padding: 3x3 vs 1x1
    with pytest.raises(ValueError, match="outputs differ in shape"):
        op(np.zeros((1, 1, 5, 5), dtype=np.float32))
    with pytest.raises(RuntimeError, match="before forward"):
        MixedOp([nn.ReLU()]).backward(np.zeros(3))
