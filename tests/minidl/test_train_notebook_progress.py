"""fit's progress inside a Jupyter kernel: a display per epoch, updated in place.

The kernel is stood in for by a fake ``IPython`` module whose shell is a
``ZMQInteractiveShell``; the real thing runs in the tutorial notebooks
(tests/docs/test_tutorials.py checks their bars).
"""
from __future__ import annotations

import sys
import types

import numpy as np
import pytest

from minidl import nn, optim
from minidl.data import ArrayDataset
from minidl.train import fit


class ZMQInteractiveShell:        # the class name is what fit looks at
    pass


class _Handle:
    def __init__(self, log, bundle):
        self.log = log
        self.bundle = bundle
        log.append(["display", bundle])

    def update(self, bundle, raw=False):
        assert raw
        self.bundle = bundle
        self.log.append(["update", bundle])


@pytest.fixture
def kernel(monkeypatch):
    log = []
    ipython = types.ModuleType("IPython")
    ipython.get_ipython = ZMQInteractiveShell
    display_mod = types.ModuleType("IPython.display")

    def display(bundle, raw=False, display_id=False):
        assert raw and display_id
        return _Handle(log, bundle)

    display_mod.display = display
    ipython.display = display_mod
    monkeypatch.setitem(sys.modules, "IPython", ipython)
    monkeypatch.setitem(sys.modules, "IPython.display", display_mod)
    return log


def _fit(progress):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 3)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    data = ArrayDataset(x, y)
    model = nn.Sequential(nn.Linear(3, 2))
    return fit(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1),
               data, data, epochs=2, batch_size=8, progress=progress)


@pytest.mark.parametrize("progress", [None, True])
def test_in_a_notebook_each_epoch_gets_one_display_updated_in_place(kernel, capsys, progress):
    _fit(progress)
    displays = [b for kind, b in kernel if kind == "display"]
    assert len(displays) == 2                     # one line per epoch
    assert capsys.readouterr().err == ""          # nothing written to stderr in a notebook
    final = [b for kind, b in kernel][-1]
    assert final["text/plain"].startswith("epoch 2/2 [####################] loss ")
    assert "val_acc" in final["text/plain"]
    assert '<progress value="1" max="1"' in final["text/html"]
    steps = [b for kind, b in kernel if "/5 loss" in b["text/plain"]]
    assert steps and all('max="5"' in b["text/html"] for b in steps)


def test_in_a_notebook_progress_false_shows_nothing(kernel, capsys):
    _fit(False)
    assert kernel == [] and capsys.readouterr().err == ""


def test_outside_a_kernel_the_terminal_line_is_unchanged(capsys, monkeypatch):
    ipython = types.ModuleType("IPython")
    ipython.get_ipython = lambda: None            # IPython imported, but no kernel
    monkeypatch.setitem(sys.modules, "IPython", ipython)
    _fit(True)
    err = capsys.readouterr().err
    assert "\repoch 2/2 [####################] loss " in err and err.endswith("s\n")
