"""Recorders for the step-by-step comparisons with torch (tests/minidl/test_end_to_end_parity.py,
tests/minidl/nn/test_normalization_cnn.py): what ``fit`` fed the model, so torch can replay it."""
from __future__ import annotations

import numpy as np

from minidl import nn


class BatchRecorder(nn.Module):
    """Passes through to ``inner`` and remembers each training batch's input."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.inputs = []

    def forward(self, x):
        if self.training:
            self.inputs.append(np.array(x, copy=True))
        return self.inner(x)

    def backward(self, dout):
        return self.inner.backward(dout)


class LossRecorder:
    """CrossEntropyLoss remembering each training batch's targets and loss."""

    def __init__(self, model):
        self.crit = nn.CrossEntropyLoss()
        self.model = model
        self.targets, self.losses = [], []

    def __call__(self, logits, y):
        loss = self.crit(logits, y)
        if self.model.training:
            self.targets.append(np.array(y, copy=True))
            self.losses.append(loss)
        return loss

    def backward(self):
        return self.crit.backward()
