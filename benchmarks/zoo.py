"""The lab's models (issue 5's table), written once for ``minidl.nn`` and ``torch.nn`` alike.

``build_model(nn, name)`` is the one builder of every benchmark's models; ``MODELS``
lists the training benchmark's with their batch sizes and targets;
``synthetic_fashion_mnist`` gives random arrays of the data set's shape.
"""
from __future__ import annotations

import numpy as np

def _sequence_glue(nn):
    """``(ImageToSequence, LastHidden)``: minidl's modules, or for torch.nn two small modules
    doing what a torch model's ``forward`` would (``x.view(N, T, -1)``; ``h_n[-1]``)."""
    if hasattr(nn, "ImageToSequence"):
        return nn.ImageToSequence, nn.LastHidden

    class ImageToSequence(nn.Module):
        def __init__(self, seq_len):
            super().__init__()
            self.seq_len = seq_len

        def forward(self, x):
            return x.reshape(x.shape[0], self.seq_len, -1)

    class LastHidden(nn.Module):
        def __init__(self, rnn):
            super().__init__()
            self.rnn = rnn

        def forward(self, x):
            _, state = self.rnn(x)
            h_n = state[0] if isinstance(state, tuple) else state    # LSTM: (h_n, c_n)
            return h_n[-1]

    return ImageToSequence, LastHidden


def build_model(nn, name: str):
    """Build model ``name`` from ``nn`` (``minidl.nn`` or ``torch.nn``: same names and args).

    The one builder of every benchmark's models (training, coldstart, threading, accuracy,
    parity, hypergradient): ``MODELS`` lists the training benchmark's, plus
    ``cnn_2conv_narrow`` (8 and 16 filters, the parity table's training run)."""
    if name == "lab_mlp_256":
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Dropout(0.3),
                             nn.Linear(256, 10))
    if name == "lab_mlp_64":
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 10))
    if name == "mlp_3layer":
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(),
                             nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(),
                             nn.Linear(64, 10))
    if name == "cnn_2conv":
        return nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Flatten(), nn.Linear(3136, 128), nn.ReLU(), nn.Dropout(0.5),
                             nn.Linear(128, 10))
    if name == "cnn_small":
        return nn.Sequential(nn.Conv2d(1, 16, 5, padding=2), nn.ReLU(), nn.AvgPool2d(2),
                             nn.Flatten(), nn.Linear(3136, 10))
    if name == "cnn_2conv_bn":      # conv -> BN -> ReLU; a conv before BN needs no bias
        return nn.Sequential(nn.Conv2d(1, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32),
                             nn.ReLU(), nn.MaxPool2d(2),
                             nn.Conv2d(32, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64),
                             nn.ReLU(), nn.MaxPool2d(2),
                             nn.Flatten(), nn.Linear(3136, 128), nn.ReLU(), nn.Dropout(0.5),
                             nn.Linear(128, 10))
    if name == "cnn_2conv_narrow":  # the parity table's training run: a quick 2-conv CNN
        return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Flatten(), nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, 10))
    if name in ("lstm_128", "gru_128"):     # each image row one step, the last hidden state
        to_sequence, last_hidden = _sequence_glue(nn)
        cell = nn.LSTM if name == "lstm_128" else nn.GRU
        return nn.Sequential(to_sequence(28), last_hidden(cell(28, 128, batch_first=True)),
                             nn.Linear(128, 10))
    raise ValueError(f"build_model: unknown model {name!r}; expected one of "
                     f"{list(MODELS) + ['cnn_2conv_narrow']}")


# name -> (description, training batch size, target ratio for the training step, issue's
# PyTorch ms/step reference measured on this machine with 2 threads)
MODELS = {
    "lab_mlp_256": ("lab MLP 784-256-10, dropout 0.3", 64, 0.5, 2.1),
    "lab_mlp_64": ("lab MLP 784-64-10", 128, None, 1.3),
    "mlp_3layer": ("MLP 784-256-128-64-10", 64, 0.6, 2.4),
    "cnn_2conv": ("CNN conv3x3 1-32, pool, conv3x3 32-64, pool, FC 3136-128-10, dropout 0.5",
                  64, 0.7, 23.7),
    "cnn_small": ("small CNN conv5x5 1-16 pad2, avgpool2, FC 3136-10", 128, 0.7, 9.5),
    # issue 14: the 2-conv CNN with batch normalization; issue 13: recurrent classifiers
    "cnn_2conv_bn": ("2-conv CNN with BatchNorm2d after each conv (conv -> BN -> ReLU)", 64,
                     0.8, None),
    "lstm_128": ("LSTM 28 -> 128 over 28 rows, last hidden state, FC 10", 64, 1.0, None),
    "gru_128": ("GRU 28 -> 128 over 28 rows, last hidden state, FC 10", 64, 1.0, None),
}
# the models a plain run measures (issue 5's five); the others on request (--models)
DEFAULT_MODELS = ["lab_mlp_256", "lab_mlp_64", "mlp_3layer", "cnn_2conv", "cnn_small"]
INFERENCE_TARGET = 1.0


def synthetic_fashion_mnist(n: int, seed: int = 0, dtype=np.float32):
    """Random arrays of Fashion-MNIST's shape: x (n,1,28,28) roughly normalised, y in 0..9."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 1, 28, 28), dtype=np.float64).astype(dtype)
    y = rng.integers(0, 10, size=n, dtype=np.int64)
    return x, y
