"""minidl.summary: the layer table (output shapes, parameter counts, multiply-adds)."""
from __future__ import annotations

import numpy as np
import pytest

import minidl
from minidl import nn


def _cnn():
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.BatchNorm2d(6), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 4, 3, stride=2), nn.AvgPool2d(2), nn.Dropout(0.3),
        nn.Flatten(), nn.Linear(4 * 3 * 3, 16), nn.LayerNorm(16), nn.GELU(),
        nn.Linear(16, 10))


def _rnns():
    return [
        nn.Sequential(nn.ImageToSequence(28), nn.LastHidden(
            nn.LSTM(28, 12, num_layers=2, batch_first=True, bidirectional=True)),
            nn.Linear(24, 10)),
        nn.Sequential(nn.ImageToSequence(14), nn.SequenceOutput(nn.GRU(56, 8, batch_first=True))),
        nn.Sequential(nn.ImageToSequence(7), nn.LastHidden(nn.RNN(112, 5, batch_first=True))),
    ]


def _row(s, name):
    return next(r for r in s.rows if r.name == name)


def test_output_shapes_follow_the_forward_pass():
    s = minidl.summary(_cnn(), (3, 1, 28, 28))
    assert _row(s, "0").output_shape == (3, 6, 28, 28)
    assert _row(s, "3").output_shape == (3, 6, 14, 14)
    assert _row(s, "4").output_shape == (3, 4, 6, 6)
    assert _row(s, "5").output_shape == (3, 4, 3, 3)
    assert _row(s, "7").output_shape == (3, 36)
    assert s.output_shape == (3, 10)
    assert [r.name for r in s.rows] == [""] + [str(i) for i in range(12)]


@pytest.mark.parametrize("model", [_cnn()] + _rnns(), ids=["cnn", "lstm", "gru", "rnn"])
def test_param_counts_are_the_parameter_sizes(model):
    s = minidl.summary(model, (2, 1, 28, 28))
    expected = sum(p.data.size for p in model.parameters())
    assert s.total_params == expected == model.num_parameters()
    assert sum(r.params for r in s.rows) == expected
    assert s.trainable_params == expected
    assert s.param_bytes == sum(p.data.nbytes for p in model.parameters())
    for name, module in model.named_modules():
        own = sum(p.data.size for p in module._parameters.values())
        assert _row(s, name).params == own
    assert str(s).count("\n") >= len(s.rows) + 4
    assert f"{expected:,}" in str(s)


def test_mult_adds_of_linear_and_conv2d_by_hand():
    n = 5
    model = nn.Sequential(nn.Conv2d(3, 7, (3, 5), stride=(2, 1), padding=(1, 2)), nn.ReLU(),
                          nn.Flatten(), nn.Linear(7 * 8 * 10, 11))
    s = minidl.summary(model, (n, 3, 16, 10))
    h_out = (16 + 2 * 1 - 3) // 2 + 1        # 8
    w_out = (10 + 2 * 2 - 5) // 1 + 1        # 10
    assert _row(s, "0").output_shape == (n, 7, h_out, w_out)
    assert _row(s, "0").mult_adds == n * h_out * w_out * 7 * 3 * 3 * 5
    assert _row(s, "3").mult_adds == n * (7 * h_out * w_out) * 11
    assert _row(s, "1").mult_adds == 0
    assert s.total_mult_adds == n * h_out * w_out * 7 * 3 * 3 * 5 + n * 560 * 11
    assert s.mult_adds_complete


def test_mult_adds_of_a_linear_on_a_sequence_and_of_an_lstm():
    lin = nn.Linear(6, 4)
    assert minidl.summary(lin, (2, 9, 6)).total_mult_adds == 2 * 9 * 6 * 4
    lstm = nn.LSTM(6, 3, num_layers=2)             # (T, N, I): 4 gates, H = 3
    s = minidl.summary(lstm, (9, 2, 6))
    per_step = 4 * 3 * 6 + 4 * 3 * 3 + 4 * 3 * 3 + 4 * 3 * 3   # layer 0 ih, hh; layer 1 ih, hh
    assert s.total_mult_adds == 9 * 2 * per_step
    assert s.output_shape == ((9, 2, 3), ((2, 2, 3), (2, 2, 3)))
    assert "[9, 2, 3], ([2, 2, 3], [2, 2, 3])" in str(s)


def test_buffers_modes_and_random_state_are_left_alone():
    model = _cnn()
    model.train()
    model[6].eval()
    before = np.random.get_state()[1].copy()
    bn_mean = model[1].running_mean.copy()
    s = minidl.summary(model, (2, 1, 28, 28))
    assert [m.training for m in model.modules()] == [m is not model[6] for m in model.modules()]
    assert np.array_equal(np.random.get_state()[1], before)
    assert np.array_equal(model[1].running_mean, bn_mean)      # eval mode: no update
    assert s.buffer_elements == sum(b.size for b in model.buffers())
    assert "forward" not in vars(model[0])


def test_float64_model_and_repeated_summaries():
    model = _cnn().double()
    s1 = minidl.summary(model, (1, 1, 28, 28))
    s2 = minidl.summary(model, (1, 1, 28, 28))
    assert s1.dtype == "float64"
    assert str(s1) == str(s2)
    assert s1.to_dict()["layers"][1]["output_shape"] == [1, 6, 28, 28]


def test_a_module_called_twice_counts_twice():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 4)

        def forward(self, x):
            return self.lin(self.lin(x))

        def backward(self, dout):
            raise NotImplementedError

    s = minidl.summary(Twice(), (3, 4))
    assert _row(s, "lin").calls == 2
    assert _row(s, "lin").mult_adds == 2 * 3 * 4 * 4


def test_unknown_layer_with_weights_is_marked_unknown():
    class Scale(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(np.ones(4, np.float32))

        def forward(self, x):
            return x * self.w.data

    s = minidl.summary(nn.Sequential(Scale(), nn.Linear(4, 2)), (3, 4))
    assert _row(s, "0").mult_adds is None
    assert not s.mult_adds_complete
    assert "at least" in str(s) and "?" in str(s)


@pytest.mark.parametrize("bad, error", [(784, TypeError), ((1, 0, 28, 28), ValueError),
                                        ((), ValueError), ((1, 1.5), TypeError),
                                        ("1x28", TypeError), ((True, 3), TypeError),
                                        (None, TypeError)])
def test_bad_input_shape_is_a_clear_error(bad, error):
    with pytest.raises(error, match="expected input_shape to be a tuple of positive ints "
                                         "including the batch dimension"):
        minidl.summary(_cnn(), bad)


def test_a_shape_the_model_cannot_take_names_the_shape_and_the_layer_error():
    model = _cnn()
    with pytest.raises(ValueError, match=r"summary: Sequential cannot run on an input of shape "
                                         r"\(1, 3, 28, 28\).*Conv2d"):
        minidl.summary(model, (1, 3, 28, 28))
    assert "forward" not in vars(model[0])     # the tracing is undone after an error


def test_not_a_module_is_a_clear_error():
    with pytest.raises(ValueError, match="expected a minidl.nn.Module"):
        minidl.summary(lambda x: x, (1, 2))
