"""Every layer's forward and backward on the stand-in device equal the CPU path's (float64),
and parameters and gradients stay device arrays."""
from __future__ import annotations

import copy

import numpy as np
import pytest

import fakecupy
import minidl
from fakecupy.checks import assert_close, assert_model_on_device, assert_on_device
from fakecupy.fixture import cuda_device  # noqa: F401 - the fixture
from minidl import backend, nn
from minidl.nn.darts import MixedOp


def _plain(layer, x):
    return layer(x)


def _image(shape):
    return lambda rng: (rng.standard_normal(shape),)


# (id, layer factory, inputs(rng) -> tuple of host arrays, kind)
LAYERS = [
    ("linear", lambda: nn.Linear(5, 4), _image((3, 5)), "plain"),
    ("linear-3d-nobias", lambda: nn.Linear(5, 4, bias=False), _image((2, 3, 5)), "plain"),
    ("flatten", lambda: nn.Flatten(), _image((2, 3, 4, 4)), "plain"),
    ("relu", lambda: nn.ReLU(), _image((3, 7)), "plain"),
    ("leaky-relu", lambda: nn.LeakyReLU(0.2), _image((3, 7)), "plain"),
    ("tanh", lambda: nn.Tanh(), _image((3, 7)), "plain"),
    ("sigmoid", lambda: nn.Sigmoid(), _image((3, 7)), "plain"),
    ("elu", lambda: nn.ELU(0.7), _image((3, 7)), "plain"),
    ("gelu", lambda: nn.GELU(), _image((3, 7)), "plain"),
    ("gelu-tanh", lambda: nn.GELU("tanh"), _image((3, 7)), "plain"),
    ("dropout", lambda: nn.Dropout(0.3), _image((4, 9)), "plain"),
    ("conv", lambda: nn.Conv2d(3, 4, 3, padding=1), _image((2, 3, 6, 6)), "plain"),
    ("conv-1-channel", lambda: nn.Conv2d(1, 4, 3), _image((2, 1, 6, 6)), "plain"),
    ("conv-strided", lambda: nn.Conv2d(2, 3, (3, 2), stride=2, padding=(1, 0), dilation=(1, 2),
                                       bias=False), _image((2, 2, 7, 8)), "plain"),
    ("max-pool", lambda: nn.MaxPool2d(2), _image((2, 3, 6, 6)), "plain"),
    ("max-pool-padded", lambda: nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True),
     _image((2, 3, 7, 7)), "plain"),
    ("avg-pool", lambda: nn.AvgPool2d(2), _image((2, 3, 6, 6)), "plain"),
    ("avg-pool-padded", lambda: nn.AvgPool2d(3, 2, 1, ceil_mode=True, count_include_pad=False),
     _image((2, 3, 7, 7)), "plain"),
    ("batch-norm-1d", lambda: nn.BatchNorm1d(4), _image((8, 4)), "plain"),
    ("batch-norm-1d-3d", lambda: nn.BatchNorm1d(4, momentum=None), _image((8, 4, 5)), "plain"),
    ("batch-norm-2d", lambda: nn.BatchNorm2d(3), _image((4, 3, 5, 5)), "plain"),
    ("batch-norm-2d-eval", lambda: nn.BatchNorm2d(3).eval(), _image((4, 3, 5, 5)), "plain"),
    ("batch-norm-no-affine", lambda: nn.BatchNorm2d(3, affine=False,
                                                    track_running_stats=False),
     _image((4, 3, 5, 5)), "plain"),
    ("layer-norm", lambda: nn.LayerNorm((5,)), _image((3, 4, 5)), "plain"),
    ("sequential", lambda: nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.BatchNorm2d(3),
                                         nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                                         nn.Dropout(0.2), nn.Linear(27, 4)),
     _image((5, 1, 6, 6)), "plain"),
    ("image-to-sequence-lstm", lambda: nn.Sequential(
        nn.ImageToSequence(4), nn.LastHidden(nn.LSTM(6, 5, num_layers=2, batch_first=True,
                                                     dropout=0.3, bidirectional=True)),
        nn.Linear(10, 3)), _image((3, 1, 4, 6)), "plain"),
    ("sequence-output-gru", lambda: nn.SequenceOutput(nn.GRU(4, 5, batch_first=True)),
     _image((3, 6, 4)), "plain"),
    ("mixed-op", lambda: MixedOp([nn.Conv2d(2, 3, k, padding=k // 2) for k in (1, 3)],
                                 nn.Parameter(np.array([0.3, -0.2]))),
     _image((2, 2, 5, 5)), "plain"),
    ("rnn-relu", lambda: nn.RNN(4, 5, num_layers=2, nonlinearity="relu"),
     lambda rng: (rng.standard_normal((6, 3, 4)), rng.standard_normal((2, 3, 5))), "rnn"),
    ("rnn-tanh-bidirectional", lambda: nn.RNN(4, 5, bidirectional=True),
     _image((6, 3, 4)), "rnn"),
    ("lstm", lambda: nn.LSTM(4, 5, num_layers=2, dropout=0.25),
     lambda rng: (rng.standard_normal((6, 3, 4)), (rng.standard_normal((2, 3, 5)),
                                                   rng.standard_normal((2, 3, 5)))), "rnn"),
    ("gru-bidirectional", lambda: nn.GRU(4, 5, bidirectional=True, batch_first=True),
     _image((3, 6, 4)), "rnn"),
    ("rnn-cell", lambda: nn.RNNCell(4, 5),
     lambda rng: (rng.standard_normal((3, 4)), rng.standard_normal((3, 5))), "cell"),
    ("lstm-cell", lambda: nn.LSTMCell(4, 5),
     lambda rng: (rng.standard_normal((3, 4)), (rng.standard_normal((3, 5)),
                                                rng.standard_normal((3, 5)))), "cell"),
    ("gru-cell", lambda: nn.GRUCell(4, 5), _image((3, 4)), "cell"),
    ("embedding", lambda: nn.Embedding(7, 3, padding_idx=2),
     lambda rng: (rng.integers(0, 7, (4, 5)),), "embedding"),
]


def _draw_like(rng, value):
    if isinstance(value, tuple):
        return tuple(_draw_like(rng, v) for v in value)
    return rng.standard_normal(value.shape)


def _to(value, device):
    if value is None:
        return None
    if isinstance(value, tuple):
        return tuple(_to(v, device) for v in value)
    return backend.to_device(value, device)


def _run(layer, kind, inputs, grads, device):
    """Forward, then backward with ``grads``; every result as the device gives it."""
    inputs = _to(inputs, device)
    minidl.manual_seed(7)                      # dropout masks: the same draws on both paths
    if kind == "embedding":
        out = layer(*inputs)
        dx = layer.backward(_to(grads, device))
        return out, dx, None
    out = layer(*inputs)
    g = _to(grads, device)
    if kind == "rnn":
        output, state = out
        dx = layer.backward(*g)
    elif kind == "cell":
        dx = layer.backward(*g) if isinstance(g, tuple) else layer.backward(g)
    else:
        dx = layer.backward(g)
    return out, dx, getattr(layer, "hx_grad", None)


def _double(layer):
    layer.double()
    return layer


@pytest.mark.parametrize("name, factory, make_inputs, kind", LAYERS, ids=[c[0] for c in LAYERS])
def test_layer_forward_backward_equal_cpu(cuda_device, name, factory, make_inputs, kind):
    rng = np.random.default_rng(0)
    minidl.manual_seed(1)
    cpu = _double(factory())
    gpu = copy.deepcopy(cpu).to("cuda")
    inputs = make_inputs(rng)
    # the gradients arriving from above: drawn in the CPU output's shape
    probe = copy.deepcopy(cpu)
    minidl.manual_seed(7)
    probe_out = probe(*inputs)
    grads = _draw_like(rng, probe_out)

    out_c, dx_c, hx_c = _run(cpu, kind, inputs, grads, "cpu")
    out_d, dx_d, hx_d = _run(gpu, kind, inputs, grads, "cuda")

    assert_close(out_d, out_c, f"{name}: output")
    assert_close(dx_d, dx_c, f"{name}: input gradient")
    assert_close(hx_d, hx_c, f"{name}: initial-state gradient")
    assert_model_on_device(gpu)
    for (key, p_d), (_, p_c) in zip(gpu.named_parameters(), cpu.named_parameters()):
        assert_close(p_d.grad, p_c.grad, f"{name}: gradient of {key}")
    for (key, b_d), (_, b_c) in zip(gpu.named_buffers(), cpu.named_buffers()):
        assert_close(b_d, b_c, f"{name}: buffer {key}")


def test_cross_entropy_on_device_equals_cpu(cuda_device):
    rng = np.random.default_rng(1)
    logits, targets = rng.standard_normal((6, 5)), rng.integers(0, 5, 6)
    for smoothing in (0.0, 0.1):
        cpu, gpu = nn.CrossEntropyLoss(smoothing), nn.CrossEntropyLoss(smoothing)
        loss_c = cpu(logits, targets)
        for t in (targets, cuda_device.asarray(targets)):     # host or device labels
            loss_d = gpu(cuda_device.asarray(logits), t)
            assert_close(loss_d, loss_c, "loss")
            assert_close(gpu.backward(), cpu.backward(), "dL/dlogits")
    with pytest.raises(ValueError, match="class indices in"):
        gpu(cuda_device.asarray(logits), cuda_device.asarray(np.full(6, 5)))


def test_clip_grad_and_init_on_device(cuda_device):
    rng = np.random.default_rng(2)
    grads = [rng.standard_normal((3, 4)) * 5, rng.standard_normal(4)]
    cpu = [nn.Parameter(np.zeros_like(g), g.copy()) for g in grads]
    gpu = [nn.Parameter(cuda_device.zeros(g.shape), cuda_device.asarray(g)) for g in grads]
    for norm_type in (2.0, 1.0, "inf", 3.0):
        total_c = nn.utils.clip_grad_norm_(cpu, 1.5, norm_type)
        total_d = nn.utils.clip_grad_norm_(gpu, 1.5, norm_type)
        assert_close(total_d, total_c, f"total norm ({norm_type})")
    # the two halves: no copy to the host
    for norm_type in (2.0, "inf"):
        total_c = nn.utils.get_total_norm([p.grad for p in cpu], norm_type)
        with fakecupy.counting() as transfers:
            total_d = nn.utils.get_total_norm([p.grad for p in gpu], norm_type)
            nn.utils.clip_grads_with_norm_(gpu, 0.5, total_d)
        nn.utils.clip_grads_with_norm_(cpu, 0.5, total_c)
        assert transfers.events == []
        assert_close(total_d, np.asarray(total_c), f"get_total_norm ({norm_type})")
    nn.utils.clip_grad_value_(cpu, 0.1)
    nn.utils.clip_grad_value_(gpu, 0.1)
    for p_d, p_c in zip(gpu, cpu):
        assert_close(p_d.grad, p_c.grad, "clipped gradient")
    w_c, w_d = np.zeros((4, 3, 2, 2)), cuda_device.zeros((4, 3, 2, 2))
    for fill in (nn.init.kaiming_uniform_, nn.init.kaiming_normal_, nn.init.xavier_uniform_,
                 nn.init.xavier_normal_, nn.init.ones_, nn.init.zeros_):
        minidl.manual_seed(3)
        fill(w_c)
        minidl.manual_seed(3)
        assert fill(w_d) is w_d
        assert_close(w_d, w_c, fill.__name__)
    assert_on_device("init", w_d)


def test_clip_halves_match_torch(torch):
    """``get_total_norm`` + ``clip_grads_with_norm_`` (what a training step on a GPU calls
    to clip without a copy to the host) against torch's, float64."""
    rng = np.random.default_rng(3)
    grads = [rng.standard_normal((3, 4)) * 5, rng.standard_normal(4)]
    for norm_type in (2.0, 1.0, "inf", 3.0):
        ours = [nn.Parameter(np.zeros_like(g), g.copy()) for g in grads]
        theirs = [torch.nn.Parameter(torch.zeros(g.shape, dtype=torch.float64)) for g in grads]
        for t, g in zip(theirs, grads):
            t.grad = torch.from_numpy(g.copy())
        total = nn.utils.get_total_norm([p.grad for p in ours], norm_type)
        total_t = torch.nn.utils.get_total_norm([t.grad for t in theirs], norm_type)
        np.testing.assert_allclose(total, total_t.numpy(), rtol=1e-12)
        nn.utils.clip_grads_with_norm_(ours, 1.5, total)
        torch.nn.utils.clip_grads_with_norm_(theirs, 1.5, total_t)
        for p, t in zip(ours, theirs):
            np.testing.assert_allclose(p.grad, t.grad.numpy(), rtol=1e-12, atol=1e-15)
    with pytest.raises(TypeError, match="expected total_norm to be a 0-d array"):
        nn.utils.clip_grads_with_norm_(ours, 1.0, 3.0)
