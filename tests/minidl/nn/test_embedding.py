"""nn.Embedding against torch.nn.Embedding (float64): forward, backward, padding_idx,
initialisation, and the errors for bad arguments and indices."""
from __future__ import annotations

import numpy as np
import pytest

import minidl
from minidl import nn


def _pair(torch, num, dim, padding_idx=None, seed=0):
    """A minidl and a torch Embedding with the same float64 weights (padding row zeroed
    as both initialise it)."""
    ours = nn.Embedding(num, dim, padding_idx=padding_idx).double()
    ours.weight.data[...] = np.random.default_rng(seed).standard_normal((num, dim))
    if ours.padding_idx is not None:
        ours.weight.data[ours.padding_idx] = 0
    theirs = torch.nn.Embedding(num, dim, padding_idx=padding_idx).double()
    theirs.load_state_dict({"weight": torch.from_numpy(ours.weight.data.copy())})
    return ours, theirs


@pytest.mark.parametrize("shape", [(7,), (3, 5), (2, 3, 4), ()], ids=str)
@pytest.mark.parametrize("padding_idx", [None, 2, -1])
def test_forward_and_backward_match_torch(torch, rng, shape, padding_idx):
    num, dim = 6, 4
    ours, theirs = _pair(torch, num, dim, padding_idx)
    # every index several times (the padding one included), so the sum over positions
    # and the padding row's missing gradient are both exercised
    idx = rng.integers(0, num, size=shape)
    dout = rng.standard_normal(shape + (dim,))
    y = ours(idx)
    t_idx = torch.from_numpy(idx)
    t_y = theirs(t_idx)
    np.testing.assert_array_equal(y, t_y.detach().numpy())
    assert ours.backward(dout) is None
    t_y.backward(torch.from_numpy(dout))
    np.testing.assert_allclose(ours.weight.grad, theirs.weight.grad.numpy(), rtol=0,
                               atol=1e-12)
    if padding_idx is not None:
        assert not ours.weight.grad[padding_idx % num].any()


def test_repeated_index_sums_its_gradients(rng):
    emb = nn.Embedding(3, 2).double()
    emb(np.array([1, 1, 1, 0]))
    dout = rng.standard_normal((4, 2))
    emb.backward(dout)
    np.testing.assert_allclose(emb.weight.grad[1], dout[:3].sum(axis=0), rtol=0, atol=1e-15)
    np.testing.assert_allclose(emb.weight.grad[0], dout[3], rtol=0, atol=0)
    assert not emb.weight.grad[2].any()
    emb(np.array([2]))
    emb.backward(np.ones((1, 2)))        # accumulates, as every layer's backward does
    np.testing.assert_array_equal(emb.weight.grad[2], [1.0, 1.0])
    np.testing.assert_allclose(emb.weight.grad[1], dout[:3].sum(axis=0), rtol=0, atol=1e-15)


def test_init_is_standard_normal_with_zero_padding_row():
    minidl.manual_seed(3)
    emb = nn.Embedding(2000, 50, padding_idx=7)
    w = emb.weight.data
    assert w.dtype == np.float32 and w.shape == (2000, 50)
    assert not w[7].any()
    rest = np.delete(w, 7, axis=0).astype(np.float64)
    # 99 950 draws: the mean's standard error is 0.0032, the std's 0.0022
    assert abs(rest.mean()) < 0.02 and abs(rest.std() - 1) < 0.02
    minidl.manual_seed(3)
    np.testing.assert_array_equal(nn.Embedding(2000, 50, padding_idx=7).weight.data, w)


def test_state_dict_loads_torch(torch):
    theirs = torch.nn.Embedding(5, 3, padding_idx=0)
    ours = nn.Embedding(5, 3, padding_idx=0)
    ours.load_state_dict(theirs.state_dict())
    np.testing.assert_array_equal(ours.weight.data, theirs.weight.detach().numpy())
    assert list(ours.state_dict()) == list(theirs.state_dict()) == ["weight"]


def test_repr():
    assert repr(nn.Embedding(10, 3)) == "Embedding(10, 3)"
    assert repr(nn.Embedding(10, 3, padding_idx=-2)) == "Embedding(10, 3, padding_idx=8)"


def test_errors():
    with pytest.raises(TypeError, match="num_embeddings to be a non-negative int"):
        nn.Embedding(2.0, 3)
    with pytest.raises(ValueError, match="embedding_dim to be a non-negative int"):
        nn.Embedding(2, -1)
    with pytest.raises(ValueError, match=r"padding_idx to be an int in \[-4, 4\).*got 4"):
        nn.Embedding(4, 2, padding_idx=4)
    with pytest.raises(TypeError, match=r"padding_idx to be an int in \[-4, 4\).* or None"):
        nn.Embedding(4, 2, padding_idx=1.0)
    with pytest.raises(ValueError, match="max_norm is not supported"):
        nn.Embedding(4, 2, max_norm=1.0)
    emb = nn.Embedding(4, 2)
    with pytest.raises(TypeError, match="expected integer indices, got dtype float64"):
        emb(np.array([0.0, 1.0]))
    with pytest.raises(IndexError, match=r"index 4 is out of range: expected indices in \[0, 4\)"):
        emb(np.array([1, 4]))
    with pytest.raises(IndexError, match="index -1 is out of range"):
        emb(np.array([-1]))
    with pytest.raises(RuntimeError, match="before forward"):
        nn.Embedding(4, 2).backward(np.zeros((1, 2), np.float32))
    emb(np.array([[0, 1]]))
    with pytest.raises(ValueError, match=r"expected dout of shape \(1, 2, 2\)"):
        emb.backward(np.zeros((2, 2), np.float32))
