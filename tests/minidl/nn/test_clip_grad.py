"""nn.utils.clip_grad_norm_ / clip_grad_value_ against torch.nn.utils (issue 13).

Norms and clipped gradients agree to 1e-10 (float64) / 1e-5 (float32) relative.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from minidl import nn
from minidl.nn import utils

RTOL = {np.float64: 1e-10, np.float32: 1e-5}
SHAPES = [(3, 4), (5,), (2, 2, 2), (1,)]


def make(torch, rng, dtype, scale=1.0, shapes=SHAPES):
    grads = [(rng.standard_normal(s) * scale).astype(dtype) for s in shapes]
    ours = [nn.Parameter(np.zeros_like(g), g.copy()) for g in grads]
    theirs = []
    for g in grads:
        t = torch.zeros(g.shape, dtype=torch.float64 if dtype == np.float64 else torch.float32,
                        requires_grad=True)
        t.grad = torch.tensor(g)
        theirs.append(t)
    return ours, theirs


def assert_grads_close(ours, theirs, dtype):
    for p, t in zip(ours, theirs):
        assert p.grad.dtype == dtype
        np.testing.assert_allclose(p.grad, t.grad.numpy(), rtol=RTOL[dtype], atol=0)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("norm_type", [2.0, 1, 3.5, "inf", math.inf, 0, -math.inf])
@pytest.mark.parametrize("max_norm", [0.3, 1e3])
def test_clip_grad_norm_matches_torch(torch, rng, dtype, norm_type, max_norm):
    ours, theirs = make(torch, rng, dtype)
    total = utils.clip_grad_norm_(iter(ours), max_norm, norm_type)    # a generator works
    total_t = torch.nn.utils.clip_grad_norm_(theirs, max_norm, norm_type)
    assert isinstance(total, float)
    assert total == pytest.approx(total_t.item(), rel=RTOL[dtype], abs=0)
    assert_grads_close(ours, theirs, dtype)


def test_clip_grad_norm_clips_to_max_norm(rng):
    ours = [nn.Parameter(np.zeros(4), rng.standard_normal(4) * 10) for _ in range(3)]
    before = math.sqrt(sum(float((p.grad ** 2).sum()) for p in ours))
    assert utils.clip_grad_norm_(ours, 2.0) == pytest.approx(before, rel=1e-14)
    after = math.sqrt(sum(float((p.grad ** 2).sum()) for p in ours))
    assert after == pytest.approx(2.0 * before / (before + 1e-6), rel=1e-14)


def test_clip_grad_norm_skips_none_and_handles_no_gradients(torch, rng):
    p = nn.Parameter(np.ones(3))
    assert utils.clip_grad_norm_([p], 1.0) == 0.0                # torch: tensor(0.)
    assert p.grad is None
    q = nn.Parameter(np.ones(2), np.array([3.0, 4.0]))
    assert utils.clip_grad_norm_([p, q], 1.0) == 5.0
    assert p.grad is None
    np.testing.assert_allclose(q.grad, [3 / (5 + 1e-6), 4 / (5 + 1e-6)], rtol=1e-15)
    r = nn.Parameter(np.ones(2), np.array([3.0, 4.0]))           # a single Parameter
    assert utils.clip_grad_norm_(r, 10.0) == 5.0
    np.testing.assert_array_equal(r.grad, [3.0, 4.0])
    assert utils.clip_grad_norm_([], 1.0) == 0.0


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_clip_grad_norm_nonfinite(torch, rng, bad):
    ours, theirs = make(torch, rng, np.float64)
    ours[1].grad[2] = bad
    theirs[1].grad[2] = bad
    before = [p.grad.copy() for p in ours]
    with pytest.raises(RuntimeError, match="non-finite"):
        utils.clip_grad_norm_(ours, 1.0, error_if_nonfinite=True)
    with pytest.raises(RuntimeError):
        torch.nn.utils.clip_grad_norm_(theirs, 1.0, error_if_nonfinite=True)
    for p, b in zip(ours, before):                                # untouched
        np.testing.assert_array_equal(p.grad, b)
    total = utils.clip_grad_norm_(ours, 1.0)                      # default: scale anyway
    total_t = torch.nn.utils.clip_grad_norm_(theirs, 1.0)
    assert (math.isnan(total) and math.isnan(total_t.item())) or total == total_t.item()
    for p, t in zip(ours, theirs):
        np.testing.assert_array_equal(p.grad, t.grad.numpy())    # NaN or 0 alike


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("clip_value", [0.5, 2, 0.0])
def test_clip_grad_value_matches_torch(torch, rng, dtype, clip_value):
    ours, theirs = make(torch, rng, dtype, scale=2.0)
    ours[0].grad[0, 0] = np.nan
    theirs[0].grad[0, 0] = np.nan
    assert utils.clip_grad_value_(ours, clip_value) is None
    torch.nn.utils.clip_grad_value_(theirs, clip_value)
    for p, t in zip(ours, theirs):
        np.testing.assert_array_equal(p.grad, t.grad.numpy())
    assert np.isnan(ours[0].grad[0, 0])


def test_clip_bad_arguments():
    p = nn.Parameter(np.ones(2), np.ones(2))
    with pytest.raises(ValueError, match="max_norm"):
        utils.clip_grad_norm_([p], "big")
    with pytest.raises(TypeError, match="norm_type"):
        utils.clip_grad_norm_([p], 1.0, norm_type=None)
    with pytest.raises(TypeError, match="Parameter"):
        utils.clip_grad_norm_([np.ones(2)], 1.0)
    with pytest.raises(TypeError, match="iterable"):
        utils.clip_grad_value_(3, 1.0)
    with pytest.raises(TypeError, match="clip_value"):
        utils.clip_grad_value_([p], None)
