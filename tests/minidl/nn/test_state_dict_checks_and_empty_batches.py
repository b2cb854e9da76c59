"""Issue 18, library part: load_state_dict checks everything before changing anything,
damaged checkpoint files are a ValueError naming the file, and layers take empty batches
(N = 0) forward and backward as torch does."""
from __future__ import annotations

import io
import os
import zipfile

import numpy as np
import pytest

import minidl
from minidl import nn


def mlp():
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 3))


def snapshot(model):
    return {k: v.copy() for k, v in model.state_dict().items()}


def assert_unchanged(model, before):
    after = model.state_dict()
    assert list(after) == list(before)
    for k in before:
        assert after[k].dtype == before[k].dtype
        np.testing.assert_array_equal(after[k], before[k])


# -- load_state_dict (item 6) ----------------------------------------------------------------

def test_a_bad_value_for_a_later_layer_leaves_earlier_layers_unchanged():
    model = mlp()
    before = snapshot(model)
    state = {k: np.full_like(v, 5.0) for k, v in before.items()}
    state["3.weight"] = np.full((3, 8), "x")            # strings, where floats belong
    with pytest.raises(ValueError, match=r"'3.weight': expected a real numeric dtype .*got <U1"):
        model.load_state_dict(state)
    assert_unchanged(model, before)                      # layer 1 kept its old weights


@pytest.mark.parametrize("bad, dtype_name", [
    (np.array([None, None, None], dtype=object), "object"),   # used to load as NaN
    (np.array(["1.0", "2.0", "3.0"]), "<U3"),                # used to load as numbers
    (np.array([b"1", b"2", b"3"]), "|S1"),
    (np.ones(3, dtype=complex), "complex128"),
    (np.ones(3, dtype=bool), "bool"),
])
def test_non_numeric_dtypes_are_refused(bad, dtype_name):
    model = mlp()
    before = snapshot(model)
    state = dict(before, **{"3.bias": bad})
    with pytest.raises(ValueError) as info:
        model.load_state_dict(state)
    assert f"'3.bias': expected a real numeric dtype (float or int), got {dtype_name}" \
        in str(info.value)
    assert_unchanged(model, before)


def test_integer_arrays_and_nested_lists_still_load():
    lin = nn.Linear(2, 2)
    lin.load_state_dict({"weight": np.array([[1, 2], [3, 4]], np.int64),
                         "bias": [np.uint8(7), 8]})
    np.testing.assert_array_equal(lin.weight.data, [[1, 2], [3, 4]])
    np.testing.assert_array_equal(lin.bias.data, [7, 8])
    assert lin.weight.dtype == np.float32 and lin.bias.dtype == np.float32


def test_a_ragged_list_is_reported_with_its_key():
    lin = nn.Linear(2, 2)
    before = snapshot(lin)
    with pytest.raises(ValueError, match=r"'bias': expected an array of numbers, got a list"):
        lin.load_state_dict({"weight": np.zeros((2, 2)), "bias": [[1.0], [2.0, 3.0]]})
    assert_unchanged(lin, before)


@pytest.mark.parametrize("not_a_mapping", [None, [("weight", np.zeros((2, 2)))], "weights.npz",
                                           np.zeros((2, 2))])
def test_a_non_mapping_is_a_clear_type_error(not_a_mapping):
    lin = nn.Linear(2, 2)
    before = snapshot(lin)
    with pytest.raises(TypeError, match=r"Linear.load_state_dict: expected a mapping of "
                                        r"parameter name -> array .* got "):
        lin.load_state_dict(not_a_mapping)
    assert_unchanged(lin, before)


def test_every_problem_is_reported_at_once():
    model = mlp()
    state = snapshot(model)
    state["1.bias"] = np.zeros(7)
    state["3.weight"] = np.array([[None] * 8] * 3)
    with pytest.raises(ValueError) as info:
        model.load_state_dict(state)
    msg = str(info.value)
    assert "'1.bias': expected shape (8,), got (7,)" in msg
    assert "'3.weight': expected a real numeric dtype (float or int), got object" in msg


def test_non_strict_skips_values_it_does_not_load():
    lin = nn.Linear(2, 2)
    lin.load_state_dict({"weight": np.ones((2, 2)), "extra": np.array(["text"])}, strict=False)
    np.testing.assert_array_equal(lin.weight.data, np.ones((2, 2)))


def test_a_torch_state_dict_and_torch_parameters_load_directly(torch):
    torch.manual_seed(0)
    t = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 8), torch.nn.ReLU(),
                            torch.nn.Linear(8, 3))
    model = mlp()
    model.load_state_dict(t.state_dict())
    for k, v in t.state_dict().items():
        np.testing.assert_array_equal(model.state_dict()[k], v.numpy())
    # parameters that require grad, and half precision, as torch would hand them over
    model = mlp().double()
    model.load_state_dict(dict(t.named_parameters()))
    np.testing.assert_array_equal(model[3].bias.data, t[3].bias.detach().double().numpy())
    model.load_state_dict({k: v.half() for k, v in t.state_dict().items()})
    np.testing.assert_array_equal(model[1].weight.data,
                                  t[1].weight.detach().half().double().numpy())
    before = snapshot(model)
    bad = dict(t.state_dict(), **{"3.bias": torch.ones(3, dtype=torch.complex64)})
    with pytest.raises(ValueError, match=r"'3.bias': expected a real numeric dtype"):
        model.load_state_dict(bad)
    assert_unchanged(model, before)


# -- damaged checkpoint files (item 9) -----------------------------------------------------

def _damaged_files(tmp_path):
    """name -> bytes of files minidl.load cannot read, made from one good checkpoint."""
    good = open(minidl.save(mlp(), tmp_path / "good.npz"), "rb").read()
    flipped = bytearray(good)
    flipped[len(good) // 3] ^= 0xFF                    # inside an entry's data: bad CRC
    plain_zip = io.BytesIO()
    with zipfile.ZipFile(plain_zip, "w") as zf:
        zf.writestr("notes.txt", "not an array")
    return {
        "truncated-half.npz": good[:len(good) // 2],
        "truncated-tail.npz": good[:-10],
        "truncated-head.npz": good[:3],
        "random.npz": np.random.default_rng(0).bytes(500),
        "text.npz": b"weights: 1 2 3\n",
        "empty.npz": b"",
        "flipped.npz": bytes(flipped),
        "plain-zip.npz": plain_zip.getvalue(),
    }


def test_damaged_files_are_a_value_error_naming_the_file(tmp_path):
    for name, content in _damaged_files(tmp_path).items():
        path = tmp_path / name
        path.write_bytes(content)
        model = mlp()
        before = snapshot(model)
        with pytest.raises(ValueError) as info:
            minidl.load(model, path)
        assert str(path) in str(info.value), name
        assert_unchanged(model, before)
        with pytest.raises(ValueError, match=str(path)):
            minidl.serialization.read_metadata(path)


def test_a_directory_is_a_value_error_and_a_missing_file_stays_file_not_found(tmp_path):
    (tmp_path / "model.npz").mkdir()
    with pytest.raises(ValueError, match="is not a readable .npz archive"):
        minidl.load(mlp(), tmp_path / "model.npz")
    with pytest.raises(FileNotFoundError):
        minidl.load(mlp(), tmp_path / "missing.npz")
    assert os.path.isdir(tmp_path / "model.npz")


# -- empty batches (item 10) ------------------------------------------------------------------

def _torch_twin(torch, layer):
    """The torch layer with ``layer``'s constructor arguments and weights, in float64."""
    from minidl.serialization import to_torch_state_dict
    tnn = torch.nn
    if isinstance(layer, nn.Conv2d):
        twin = tnn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size,
                          layer.stride, layer.padding, layer.dilation,
                          bias=layer.bias is not None)
    elif isinstance(layer, nn.Linear):
        twin = tnn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None)
    elif isinstance(layer, nn.MaxPool2d):
        twin = tnn.MaxPool2d(layer.kernel_size, layer.stride, layer.padding, layer.dilation,
                             ceil_mode=layer.ceil_mode)
    elif isinstance(layer, nn.AvgPool2d):
        twin = tnn.AvgPool2d(layer.kernel_size, layer.stride, layer.padding, layer.ceil_mode)
    else:
        twin = getattr(tnn, type(layer).__name__)()
    twin = twin.double()
    if layer.state_dict():
        twin.load_state_dict(to_torch_state_dict(layer))
    return twin


EMPTY_BATCH_CASES = [
    (lambda: nn.Conv2d(3, 4, 3), (0, 3, 8, 8)),
    (lambda: nn.Conv2d(1, 16, 5, padding=2), (0, 1, 8, 8)),      # the direct route's shape
    (lambda: nn.Conv2d(3, 8, 3, stride=2, bias=False), (0, 3, 9, 9)),
    (lambda: nn.MaxPool2d(2), (0, 3, 8, 8)),
    (lambda: nn.MaxPool2d(3, 2, 1, ceil_mode=True), (0, 3, 8, 8)),
    (lambda: nn.AvgPool2d(2), (0, 3, 8, 8)),
    (lambda: nn.Linear(5, 3), (0, 5)),
    (lambda: nn.Linear(0, 3), (4, 0)),                           # no input features
    (lambda: nn.Linear(0, 3), (0, 0)),
    (lambda: nn.Linear(3, 0), (4, 3)),                           # no output features
    (lambda: nn.Flatten(), (0, 3, 8, 8)),
    (lambda: nn.ReLU(), (0, 5)),
    (lambda: nn.Tanh(), (0, 3, 2, 2)),
    (lambda: nn.Sigmoid(), (0, 5)),
    (lambda: nn.GELU(), (0, 5)),
]


@pytest.mark.filterwarnings("ignore:Initializing zero-element tensors")  # torch, Linear(0, 3)
@pytest.mark.parametrize("make, shape", EMPTY_BATCH_CASES)
@pytest.mark.parametrize("training", [True, False])
def test_empty_batches_match_torch_forward_and_backward(torch, make, shape, training):
    minidl.manual_seed(0)
    layer = make().double().train(training)
    twin = _torch_twin(torch, layer).train(training)
    x = np.zeros(shape)
    y = layer(x)
    xt = torch.zeros(shape, dtype=torch.float64, requires_grad=True)
    yt = twin(xt)
    assert y.shape == tuple(yt.shape) and y.dtype == np.float64
    np.testing.assert_array_equal(y, yt.detach().numpy())        # Linear(0, 3): the bias
    dout = np.ones(y.shape)
    dx = layer.backward(dout)
    yt.backward(torch.ones(yt.shape, dtype=torch.float64))
    assert dx.shape == tuple(xt.grad.shape) and dx.dtype == np.float64
    for name, p in layer.named_parameters():
        expected = dict(twin.named_parameters())[name].grad.numpy()
        assert p.grad is not None and p.grad.shape == expected.shape, name
        np.testing.assert_array_equal(p.grad, expected)          # N = 0: zeros, as in torch


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_empty_batch_parameter_gradients_are_zero_and_accumulate(dtype):
    conv = nn.Conv2d(3, 16, 3).to(dtype)
    conv.needs_input_grad = False
    conv(np.zeros((0, 3, 6, 6), dtype))
    assert conv.backward(np.zeros((0, 16, 4, 4), dtype)) is None
    assert conv.weight.grad.dtype == dtype and not conv.weight.grad.any()
    conv.weight.grad[...] = 2.0                                   # an earlier batch's gradient
    conv(np.zeros((0, 3, 6, 6), dtype))
    conv.backward(np.zeros((0, 16, 4, 4), dtype))
    np.testing.assert_array_equal(conv.weight.grad, np.full(conv.weight.shape, 2.0, dtype))


def test_empty_batch_dropout_and_a_cnn_end_to_end():
    minidl.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                          nn.Dropout(0.5), nn.Linear(4 * 3 * 3, 10))
    loss_fn = nn.CrossEntropyLoss()
    loss = loss_fn(model(np.zeros((0, 1, 8, 8), np.float32)), np.zeros(0, np.int64))
    assert np.isnan(loss)
    dx = model.backward(loss_fn.backward())
    assert dx.shape == (0, 1, 8, 8) and dx.dtype == np.float32
    assert all(p.grad is not None and not p.grad.any() for p in model.parameters())


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_cross_entropy_of_an_empty_batch_is_nan_as_in_torch(torch, label_smoothing):
    ours = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
    loss = ours(np.zeros((0, 10)), np.zeros(0, np.int64))
    grad = ours.backward()
    logits = torch.zeros((0, 10), dtype=torch.float64, requires_grad=True)
    theirs = torch.nn.CrossEntropyLoss(label_smoothing=label_smoothing)(
        logits, torch.zeros(0, dtype=torch.long))
    theirs.backward()
    assert np.isnan(loss) and np.isnan(theirs.item())
    assert grad.shape == tuple(logits.grad.shape) == (0, 10) and grad.dtype == np.float64
    with pytest.raises(ValueError, match=r"expected logits of shape \(N, C\) with C >= 1"):
        ours(np.zeros((0, 0)), np.zeros(0, np.int64))
