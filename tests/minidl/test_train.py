"""fit / evaluate: history, early stopping, callbacks, non-finite loss, determinism,
bounded-memory evaluation and the progress bar, on small synthetic data (fast)."""
from __future__ import annotations

import math
import tracemalloc
from types import SimpleNamespace

import numpy as np
import pytest

import minidl
from minidl import nn, optim
from minidl.data import ArrayDataset, Augment
from minidl.optim.lr_scheduler import ReduceLROnPlateau, StepLR
from minidl.train import History, NonFiniteLossError, evaluate, fit

RECORD_KEYS = {"epoch", "train_loss", "val_loss", "val_accuracy", "val_error", "seconds",
               "images_per_sec", "lr"}
TIMING_KEYS = {"seconds", "images_per_sec"}


# -- helpers ----------------------------------------------------------------------

def blobs(n, d=8, c=3, seed=0, dtype=np.float64):
    """A learnable problem: Gaussian clusters around fixed class centres."""
    r = np.random.default_rng(seed)
    centres = np.random.default_rng(99).normal(0.0, 2.0, size=(c, d))
    y = r.integers(0, c, size=n).astype(np.int64)
    x = centres[y] + r.normal(size=(n, d))
    return ArrayDataset(x.astype(dtype), y)


def mlp(d=8, h=16, c=3, dropout=None, seed=0):
    minidl.manual_seed(seed)
    layers = [nn.Linear(d, h), nn.ReLU()]
    if dropout is not None:
        layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(h, c))
    return nn.Sequential(*layers).double()


class Recorder(nn.Module):
    """Wraps a model; remembers every forward's input, mode, and (optionally) spoils
    the logits of the k-th training forward with NaN."""

    def __init__(self, inner, nan_at_train_call=None):
        super().__init__()
        self.inner = inner
        self.train_inputs = []
        self.modes = []
        self.batch_sizes = []
        self.nan_at = nan_at_train_call
        self.params_at_nan = None

    def forward(self, x):
        self.modes.append(self.training)
        self.batch_sizes.append(len(x))
        out = self.inner(x)
        if self.training:
            self.train_inputs.append(np.array(x, copy=True))
            if self.nan_at is not None and len(self.train_inputs) == self.nan_at:
                self.params_at_nan = {k: v.copy() for k, v in self.state_dict().items()}
                out = out.copy()
                out[0, 0] = np.nan
        return out

    def backward(self, dout):
        return self.inner.backward(dout)


class RecordingLoss(nn.Module):
    """CrossEntropyLoss that remembers (loss, batch size) of training batches."""

    def __init__(self, model):
        super().__init__()
        self.crit = nn.CrossEntropyLoss()
        self.model = model
        self.train_calls = []

    def forward(self, logits, y):
        loss = self.crit(logits, y)
        if self.model.training:
            self.train_calls.append((loss, len(y)))
        return loss

    def backward(self):
        return self.crit.backward()


def without_timing(history):
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in history.epochs]


# -- history ----------------------------------------------------------------------

def test_history_has_one_complete_record_per_epoch():
    train, val = blobs(200, seed=1), blobs(90, seed=2)
    model = mlp()
    opt = optim.Adam(model.parameters(), lr=1e-2)
    hist = fit(model, nn.CrossEntropyLoss(), opt, train, val, epochs=4, batch_size=32,
               progress=False)
    assert isinstance(hist, History)
    assert len(hist) == 4 and hist.stop_reason == "completed"
    assert [r["epoch"] for r in hist.epochs] == [1, 2, 3, 4]
    for r in hist.epochs:
        assert set(r) == RECORD_KEYS
        assert all(isinstance(r[k], float) for k in RECORD_KEYS - {"epoch"})
        assert math.isfinite(r["train_loss"]) and math.isfinite(r["val_loss"])
        assert 0.0 <= r["val_accuracy"] <= 1.0
        assert r["val_error"] == 1.0 - r["val_accuracy"]
        assert r["seconds"] > 0 and r["images_per_sec"] > 0
        assert r["lr"] == 1e-2
        # accuracy counts whole samples of the 90-sample validation set
        assert abs(r["val_accuracy"] * 90 - round(r["val_accuracy"] * 90)) < 1e-9
    # learnable data: training makes progress
    assert hist.epochs[-1]["train_loss"] < hist.epochs[0]["train_loss"]
    assert hist.epochs[-1]["val_accuracy"] > 0.9
    losses = [r["val_loss"] for r in hist.epochs]
    assert hist.best_epoch == 1 + int(np.argmin(losses))
    # the last record describes the returned model
    final = evaluate(model, val)
    assert final["loss"] == hist.epochs[-1]["val_loss"]
    assert final["accuracy"] == hist.epochs[-1]["val_accuracy"]
    d = hist.to_dict()
    assert d["stop_reason"] == "completed" and d["best_epoch"] == hist.best_epoch
    assert d["epochs"] == hist.epochs


def test_train_loss_is_the_sample_weighted_mean_of_batch_losses():
    train, val = blobs(100, seed=1), blobs(30, seed=2)   # 100 = 3*32 + 4: a short last batch
    model = mlp()
    loss_fn = RecordingLoss(model)
    hist = fit(model, loss_fn, optim.SGD(model.parameters(), lr=0.05), train, val,
               epochs=2, batch_size=32, progress=False)
    calls = loss_fn.train_calls
    assert [n for _, n in calls] == [32, 32, 32, 4] * 2
    for e in range(2):
        chunk = calls[4 * e: 4 * e + 4]
        expected = sum(loss * n for loss, n in chunk) / 100
        assert hist.epochs[e]["train_loss"] == pytest.approx(expected, rel=1e-14)


def test_every_epoch_visits_each_sample_once_in_a_fresh_order():
    n = 70
    x = np.arange(n, dtype=np.float64)[:, None] * np.ones((1, 8))   # row i is all i
    train = ArrayDataset(x, np.arange(n, dtype=np.int64) % 3)
    model = Recorder(mlp())
    fit(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.0), train,
        blobs(10), epochs=3, batch_size=16, progress=False)
    assert len(model.train_inputs) == 3 * 5
    orders = []
    for e in range(3):
        ids = np.concatenate([b[:, 0] for b in model.train_inputs[5 * e: 5 * e + 5]])
        assert sorted(ids.astype(int).tolist()) == list(range(n))
        orders.append(ids)
    assert not np.array_equal(orders[0], orders[1])
    assert not np.array_equal(orders[1], orders[2])
    assert not np.array_equal(orders[0], np.arange(n))


def test_scheduler_is_stepped_once_per_epoch_and_lr_recorded_before_the_step():
    train, val = blobs(64, seed=1), blobs(32, seed=2)
    model = mlp()
    opt = optim.SGD(model.parameters(), lr=0.1)
    sched = StepLR(opt, step_size=1, gamma=0.5)
    hist = fit(model, nn.CrossEntropyLoss(), opt, train, val, epochs=3, batch_size=16,
               scheduler=sched, progress=False)
    assert [r["lr"] for r in hist.epochs] == [0.1, 0.05, 0.025]
    assert opt.param_groups[0]["lr"] == 0.0125


def test_reduce_on_plateau_is_stepped_with_the_validation_loss():
    class SpyPlateau(ReduceLROnPlateau):
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            self.seen = []

        def step(self, metrics):
            self.seen.append(metrics)
            return super().step(metrics)

    train, val = blobs(64, seed=1), blobs(32, seed=2)
    model = mlp()
    opt = optim.SGD(model.parameters(), lr=1e-9)    # too small to improve the loss by 1e-4
    sched = SpyPlateau(opt, factor=0.5, patience=0, eps=0.0)
    hist = fit(model, nn.CrossEntropyLoss(), opt, train, val, epochs=4, batch_size=16,
               scheduler=sched, progress=False)
    assert sched.seen == [r["val_loss"] for r in hist.epochs]
    # epoch 1 sets the best; each later epoch is a plateau and halves the lr at its end
    assert [r["lr"] for r in hist.epochs] == [1e-9, 1e-9, 5e-10, 2.5e-10]


# -- early stopping -----------------------------------------------------------------

def test_early_stopping_stops_after_patience_epochs_without_improvement_and_restores_nothing():
    train = blobs(200, seed=1)
    val_src = blobs(100, seed=2)
    # validation labels contradict the training rule: the better the fit, the worse val
    val = ArrayDataset(val_src.x, (val_src.y + 1) % 3)
    model = mlp()
    snapshots = []
    hist = fit(model, nn.CrossEntropyLoss(), optim.Adam(model.parameters(), lr=1e-2),
               train, val, epochs=20, batch_size=32, early_stopping_patience=2,
               callbacks=[lambda e, r: snapshots.append(model.state_dict())],
               progress=False)
    losses = [r["val_loss"] for r in hist.epochs]
    assert hist.stop_reason == "early_stopping"
    best = int(np.argmin(losses))
    assert hist.best_epoch == best + 1
    assert len(hist) == best + 1 + 2                 # best epoch, then `patience` bad ones
    assert len(hist) < 20
    # the weights are the last epoch's, not the best epoch's
    final = model.state_dict()
    for k in final:
        np.testing.assert_array_equal(final[k], snapshots[-1][k])
    assert any(not np.array_equal(final[k], snapshots[best][k]) for k in final)


def test_early_stopping_counts_consecutive_bad_epochs_only():
    train, val = blobs(64, seed=1), blobs(32, seed=2)
    model = mlp()
    # lr = 0: the validation loss never changes, so never strictly improves after epoch 1
    hist = fit(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.0),
               train, val, epochs=10, batch_size=16, early_stopping_patience=3,
               progress=False)
    assert hist.stop_reason == "early_stopping" and len(hist) == 4 and hist.best_epoch == 1
    # improving every epoch: patience never runs out
    model = mlp()
    hist = fit(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.01),
               blobs(256, seed=1), blobs(256, seed=2), epochs=4, batch_size=32,
               early_stopping_patience=1, progress=False)
    assert hist.stop_reason == "completed" and len(hist) == 4
    assert hist.best_epoch == 4


# -- callbacks --------------------------------------------------------------------------

def test_callback_true_stops_training_and_every_callback_sees_each_record():
    train, val = blobs(64, seed=1), blobs(32, seed=2)
    model = mlp()
    seen_a, seen_b = [], []

    def stopper(epoch, record):
        seen_a.append((epoch, dict(record)))
        record["val_loss"] = -1.0          # a callback's edits do not reach the history
        return epoch == 2

    def watcher(epoch, record):
        seen_b.append(epoch)

    hist = fit(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1),
               train, val, epochs=5, batch_size=16, callbacks=[stopper, watcher],
               progress=False)
    assert hist.stop_reason == "callback" and len(hist) == 2
    assert [e for e, _ in seen_a] == [1, 2] and seen_b == [1, 2]
    assert [r for _, r in seen_a] == hist.epochs
    assert all(r["val_loss"] > 0 for r in hist.epochs)


def test_callback_exception_propagates_and_modes_are_restored():
    class Pruned(Exception):
        pass

    def prune_at_2(epoch, record):
        if epoch == 2:
            raise Pruned(epoch)

    later = []
    model = mlp(dropout=0.5)
    model.eval()
    with pytest.raises(Pruned):
        fit(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1),
            blobs(64, seed=1), blobs(32, seed=2), epochs=5, batch_size=16,
            callbacks=[prune_at_2, lambda e, r: later.append(e)], progress=False)
    assert later == [1]
    assert not any(m.training for m in model.modules())


# -- non-finite loss --------------------------------------------------------------------

def test_injected_nan_raises_with_epoch_and_step_and_writes_nothing_after_it():
    train, val = blobs(128, seed=1), blobs(32, seed=2)        # 8 steps per epoch
    model = Recorder(mlp(), nan_at_train_call=8 + 3)          # epoch 2, step 3
    opt = optim.Adam(model.parameters(), lr=1e-2)
    records = []
    with pytest.raises(NonFiniteLossError) as info:
        fit(model, nn.CrossEntropyLoss(), opt, train, val, epochs=3, batch_size=16,
            callbacks=[lambda e, r: records.append(e)], progress=False)
    err = info.value
    assert (err.epoch, err.step) == (2, 3) and math.isnan(err.loss)
    assert "epoch 2, step 3" in str(err)
    assert records == [1]                 # no record (and no callback) for epoch 2
    # the optimizer did not step on the broken batch
    after = model.state_dict()
    for k, v in model.params_at_nan.items():
        np.testing.assert_array_equal(after[k], v)
    assert model.training                 # the mode from before fit


def test_absurd_learning_rate_raises_non_finite_loss_error():
    train, val = blobs(128, seed=1), blobs(32, seed=2)
    model = mlp()
    with pytest.raises(NonFiniteLossError) as info, np.errstate(over="ignore", invalid="ignore"):
        fit(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=1e200),
            train, val, epochs=3, batch_size=16, progress=False)
    err = info.value
    assert err.epoch == 1 and 2 <= err.step <= 8
    assert not math.isfinite(err.loss)
    assert isinstance(err, FloatingPointError)


# -- determinism --------------------------------------------------------------------------

def test_same_seed_gives_a_bit_identical_history_and_weights():
    r = np.random.default_rng(5)
    x = r.normal(size=(96, 1, 6, 6))
    y = (x[:, 0, :3].sum(axis=(1, 2)) > 0).astype(np.int64)
    train, val = ArrayDataset(x[:64], y[:64]), ArrayDataset(x[64:], y[64:])

    def run(seed, draws_before_fit=0):
        minidl.manual_seed(0)
        model = nn.Sequential(nn.Flatten(), nn.Linear(36, 16), nn.ReLU(), nn.Dropout(0.3),
                              nn.Linear(16, 2)).double()
        # fit reseeds minidl's generator: what happened to it before does not matter
        minidl.random.get_generator().random(draws_before_fit)
        hist = fit(model, nn.CrossEntropyLoss(), optim.Adam(model.parameters(), lr=1e-2),
                   train, val, epochs=3, batch_size=8, seed=seed,
                   augment=Augment(max_shift=1, hflip=True), progress=False)
        return without_timing(hist), model.state_dict()

    h1, w1 = run(seed=3)
    h2, w2 = run(seed=3, draws_before_fit=17)
    h3, _ = run(seed=4)
    assert h1 == h2
    for k in w1:
        assert w1[k].tobytes() == w2[k].tobytes()
    assert h1 != h3                        # the seed does drive shuffling/dropout


# -- evaluate --------------------------------------------------------------------------------

def test_evaluate_matches_a_full_batch_computation_and_uses_bounded_batches():
    data = blobs(1050, seed=3)
    model = Recorder(mlp())
    res = evaluate(model, data, batch_size=100)
    assert model.batch_sizes == [100] * 10 + [50]
    assert model.modes == [False] * 11
    crit = nn.CrossEntropyLoss()
    logits = model.inner(data.x)
    assert res["loss"] == pytest.approx(crit(logits, data.y), rel=1e-13)
    acc = float(np.mean(np.argmax(logits, axis=1) == data.y))
    assert res["accuracy"] == acc and res["error"] == 1.0 - acc
    assert all(isinstance(v, float) for v in res.values())


def test_evaluate_memory_does_not_grow_with_the_data_set():
    model = mlp(d=8, h=64, c=10)
    data = blobs(40_000, c=10, seed=4)          # full-set activations: 40000*64*8 B = 20 MB
    evaluate(model, blobs(100, c=10), batch_size=200)        # warm-up allocations
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        evaluate(model, data, batch_size=200)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000, f"evaluate peaked at {peak} bytes above baseline"


def test_evaluate_restores_each_modules_previous_mode_even_on_error():
    model = mlp(dropout=0.5)
    model.train()
    model[2].eval()                         # a mixed state: only the Dropout in eval
    before = [m.training for m in model.modules()]
    evaluate(model, blobs(50), batch_size=16)
    assert [m.training for m in model.modules()] == before

    bad = ArrayDataset(np.zeros((10, 5)), np.zeros(10, dtype=np.int64))   # wrong width
    with pytest.raises(ValueError):
        evaluate(model, bad, batch_size=4)
    assert [m.training for m in model.modules()] == before


def test_evaluate_turns_dropout_off():
    model = mlp(dropout=0.9)
    data = blobs(64)
    a, b = evaluate(model, data), evaluate(model, data)
    assert a == b                           # no random masks in eval mode


# -- progress bar -----------------------------------------------------------------------------

def _small_fit(model=None, **kw):
    model = model or mlp()
    return fit(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1),
               blobs(64, seed=1), blobs(32, seed=2), epochs=2, batch_size=16, **kw)


def test_progress_bar_only_when_asked_or_on_a_terminal(capsys):
    _small_fit(progress=True)
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.split("\n")
    assert err.endswith("\n") and len(lines) == 3
    for e, line in enumerate(lines[:2], start=1):
        final = line.split("\r")[-1]
        assert final.startswith(f"epoch {e}/2 [####################]")
        assert "loss" in final and "val_acc" in final and "img/s" in final

    _small_fit(progress=False)
    assert capsys.readouterr() == ("", "")
    _small_fit()                            # None: captured stderr is not a terminal
    assert capsys.readouterr() == ("", "")


def test_progress_none_draws_on_a_terminal(monkeypatch, capsys):
    import sys
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    _small_fit()
    assert "epoch 2/2" in capsys.readouterr().err


def test_keyboard_interrupt_propagates_and_finishes_the_bar_line(capsys):
    class Interrupting(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner, self.calls = inner, 0

        def forward(self, x):
            self.calls += 1
            if self.calls == 3:
                raise KeyboardInterrupt
            return self.inner(x)

        def backward(self, d):
            return self.inner.backward(d)

    model = Interrupting(mlp(dropout=0.5))
    model.eval()
    with pytest.raises(KeyboardInterrupt):
        _small_fit(model, progress=True)
    err = capsys.readouterr().err
    assert "epoch 1/2" in err and err.endswith("\n")
    assert not any(m.training for m in model.modules())


# -- arguments --------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, error, match", [   # a wrong type: TypeError
    ({"epochs": 0}, ValueError, "epochs"),
    ({"batch_size": 0}, ValueError, "batch_size"),
    ({"eval_batch_size": 2.5}, TypeError, "eval_batch_size"),
    ({"early_stopping_patience": 0}, ValueError, "early_stopping_patience"),
    ({"seed": -1}, ValueError, "seed"),
    ({"progress": "yes"}, TypeError, "progress"),
    ({"callbacks": print}, TypeError, "callbacks"),
    ({"callbacks": [1]}, TypeError, "callable"),
])
def test_fit_rejects_bad_arguments(kwargs, error, match):
    model = mlp()
    args = dict(epochs=1, batch_size=8, progress=False)
    args.update(kwargs)
    with pytest.raises(error, match=match):
        fit(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1),
            blobs(16), blobs(8), **args)


def test_fit_rejects_mismatched_or_empty_data():
    model = mlp()
    opt = optim.SGD(model.parameters(), lr=0.1)
    bad = SimpleNamespace(x=np.zeros((4, 8)), y=np.zeros(3, dtype=np.int64))
    with pytest.raises(ValueError, match="train"):
        fit(model, nn.CrossEntropyLoss(), opt, bad, blobs(8), epochs=1, batch_size=2)
    with pytest.raises(TypeError, match="val"):
        fit(model, nn.CrossEntropyLoss(), opt, blobs(8), (np.zeros(3), np.zeros(3)),
            epochs=1, batch_size=2)
