"""Sequence models: ImageToSequence, SequenceOutput, LastHidden, and the ``rnn`` space and
builder in ``tuning/rnn_models.py``."""
from __future__ import annotations

import numpy as np
import pytest

import minidl
from minidl import nn, optim

RTOL = 1e-10


def assert_close(ours, theirs, what=""):
    theirs = theirs.detach().numpy() if hasattr(theirs, "detach") else np.asarray(theirs)
    assert ours.shape == theirs.shape, what
    atol = RTOL * float(np.abs(theirs).max())
    np.testing.assert_allclose(ours, theirs, rtol=RTOL, atol=atol, err_msg=what)


@pytest.mark.parametrize("T", [7, 14, 28])
def test_image_to_sequence_reads_groups_of_rows(rng, T):
    x = rng.standard_normal((3, 1, 28, 28)).astype(np.float32)
    layer = nn.ImageToSequence(T)
    seq = layer(x)
    rows = 28 // T
    assert seq.shape == (3, T, 784 // T)
    for t in (0, T // 2, T - 1):
        np.testing.assert_array_equal(seq[:, t], x[:, 0, t * rows:(t + 1) * rows].reshape(3, -1))
    d = rng.standard_normal(seq.shape).astype(np.float32)
    np.testing.assert_array_equal(layer.backward(d), d.reshape(x.shape))
    assert repr(layer) == f"ImageToSequence(seq_len={T})"


def test_image_to_sequence_errors():
    with pytest.raises(ValueError, match="seq_len to be a positive int"):
        nn.ImageToSequence(0)
    with pytest.raises(ValueError,
                       match=r"divide into seq_len=5 steps, got shape \(2, 1, 28, 28\)"):
        nn.ImageToSequence(5)(np.zeros((2, 1, 28, 28), np.float32))
    with pytest.raises(RuntimeError, match="before forward"):
        nn.ImageToSequence(4).backward(np.zeros((2, 4, 7), np.float32))
    with pytest.raises(ValueError, match="expected an nn.RNN, nn.LSTM or nn.GRU"):
        nn.LastHidden(nn.Linear(3, 4))
    with pytest.raises(RuntimeError, match="LastHidden.backward"):
        nn.LastHidden(nn.GRU(3, 4)).backward(np.zeros((2, 4), np.float32))


@pytest.mark.parametrize("cell", ["LSTM", "GRU"])
@pytest.mark.parametrize("bidir", [False, True], ids=["uni", "bi"])
def test_stacked_classifier_matches_torch(torch, rng, cell, bidir):
    """ImageToSequence -> SequenceOutput(cell) -> LastHidden(cell) -> Linear, against the
    same network written in torch by hand (reshape, two layers, h_n of the last one)."""
    D = 2 if bidir else 1
    first = getattr(nn, cell)(56, 5, batch_first=True, bidirectional=bidir)
    second = getattr(nn, cell)(D * 5, 4, num_layers=2, batch_first=True, bidirectional=bidir)
    model = nn.Sequential(nn.ImageToSequence(14), nn.SequenceOutput(first),
                          nn.LastHidden(second), nn.Linear(D * 4, 10)).double()
    t_first = getattr(torch.nn, cell)(56, 5, batch_first=True, bidirectional=bidir).double()
    t_second = getattr(torch.nn, cell)(D * 5, 4, num_layers=2, batch_first=True,
                                       bidirectional=bidir).double()
    t_fc = torch.nn.Linear(D * 4, 10).double()
    t_modules = {"1.rnn.": t_first, "2.rnn.": t_second, "3.": t_fc}
    state = model.state_dict()
    for prefix, m in t_modules.items():
        m.load_state_dict({k[len(prefix):]: torch.tensor(v) for k, v in state.items()
                           if k.startswith(prefix)})
    x = rng.standard_normal((3, 1, 28, 28))
    xt = torch.tensor(x, requires_grad=True)
    logits = model(x)
    out, _ = t_first(xt.reshape(3, 14, 56))
    _, h_n = t_second(out)
    h_n = h_n[0] if cell == "LSTM" else h_n
    logits_t = t_fc(torch.cat(list(h_n[-D:]), dim=1))
    assert_close(logits, logits_t, "logits")
    d = rng.standard_normal(logits.shape)
    logits_t.backward(torch.tensor(d))
    assert_close(model.backward(d), xt.grad, "input gradient")
    for name, p in model.named_parameters():
        prefix = next(pre for pre in t_modules if name.startswith(pre))
        t_param = dict(t_modules[prefix].named_parameters())[name[len(prefix):]]
        assert_close(p.grad, t_param.grad, f"gradient of {name}")


@pytest.mark.parametrize("cell", ["LSTM", "GRU"])
def test_gradcheck_wrappers(rng, cell):
    minidl.manual_seed(0)
    model = nn.Sequential(
        nn.ImageToSequence(4),
        nn.SequenceOutput(getattr(nn, cell)(3, 3, batch_first=True, bidirectional=True)),
        nn.LastHidden(getattr(nn, cell)(6, 2, num_layers=2, batch_first=True,
                                        bidirectional=True)))
    assert minidl.gradcheck(model, rng.standard_normal((2, 1, 4, 3)))


# -- the rnn space and builder -------------------------------------------------------------
optuna = pytest.importorskip("optuna")
rnn_models = pytest.importorskip("tuning.rnn_models")
from tuning import spaces  # noqa: E402
from tuning.models import build_model  # noqa: E402


def test_space_samples_buildable_configs(rng):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    x = rng.standard_normal((2, 1, 28, 28)).astype(np.float32)
    seen = set()
    for _ in range(12):
        trial = study.ask()
        config = spaces.rnn(trial)
        assert set(trial.params) <= set(spaces.SPACES["rnn"].defaults)
        assert len(config["hidden_sizes"]) == trial.params["n_layers"]
        assert all(16 <= h <= 256 for h in config["hidden_sizes"])
        assert config["seq_len"] in (7, 14, 28) and config["cell"] in ("LSTM", "GRU")
        seen.add((config["cell"], config["bidirectional"], config["seq_len"]))
        model = build_model(config)
        assert isinstance(model, rnn_models.RNNClassifier) and model(x).shape == (2, 10)
        study.tell(trial, 0.5)
    assert len(seen) >= 4


def test_defaults_config_and_clipping(rng):
    trial = optuna.trial.FixedTrial(spaces.SPACES["rnn"].defaults)
    config = spaces.rnn(trial)
    assert config["hidden_sizes"] == [128] and config["clip_norm"] == 1.0
    minidl.manual_seed(0)
    model = rnn_models.build_rnn({**config, "hidden_sizes": [8, 6], "bidirectional": True,
                                  "seq_len": 14, "clip_norm": 0.01})
    kinds = [type(m).__name__ for m in model.layers]
    assert kinds == ["ImageToSequence", "SequenceOutput", "Dropout", "LastHidden", "Dropout",
                     "Linear"]
    x = rng.standard_normal((4, 1, 28, 28)).astype(np.float32)
    loss_fn = nn.CrossEntropyLoss()
    loss_fn(model(x), np.array([0, 1, 2, 3]))
    model.needs_input_grad = False
    assert model.backward(loss_fn.backward()) is None
    total = np.sqrt(sum(float((p.grad.astype(np.float64) ** 2).sum())
                        for p in model.parameters()))
    assert total <= 0.01 * (1 + 1e-5)
    with pytest.raises(ValueError, match="seq_len=5 does not divide"):
        rnn_models.build_rnn({**config, "seq_len": 5})
    with pytest.raises(ValueError, match="unknown cell 'RNN'"):
        rnn_models.build_rnn({**config, "cell": "RNN"})
    for bad in (0, -1.0, float("nan"), float("inf"), True, "1"):
        with pytest.raises(ValueError, match="clip_norm to be a finite number > 0"):
            rnn_models.build_rnn({**config, "clip_norm": bad})


@pytest.mark.parametrize("cell", ["LSTM", "GRU"])
def test_sequence_classifier_learns(rng, cell):
    """Adam fits 32 random images with random labels: the loss falls well below ln 10."""
    minidl.manual_seed(0)
    model = rnn_models.build_rnn({"cell": cell, "hidden_sizes": [32], "bidirectional": False,
                                  "seq_len": 7, "dropout_rate": 0.0, "clip_norm": 5.0})
    x = rng.standard_normal((32, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, 32)
    loss_fn = nn.CrossEntropyLoss()
    opt = optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(60):
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        model.backward(loss_fn.backward())
        opt.step()
    assert loss < 0.5, loss


def test_save_and_load_round_trip(rng, tmp_path):
    minidl.manual_seed(0)
    config = {"cell": "GRU", "hidden_sizes": [6, 5], "bidirectional": True, "seq_len": 7,
              "dropout_rate": 0.3, "clip_norm": 1.0}
    model = rnn_models.build_rnn(config).eval()
    path = minidl.save(model, tmp_path / "rnn")
    other = rnn_models.build_rnn(config).eval()
    minidl.load(other, path)
    x = rng.standard_normal((3, 1, 28, 28)).astype(np.float32)
    np.testing.assert_array_equal(other(x), model(x))
    assert "layers.1.rnn.weight_hh_l0_reverse" in model.state_dict()


def test_check_values_refuses_impossible_rnn_values():
    assert spaces.check_values("rnn", {"cell": "GRU", "seq_len": 14}) == []
    with pytest.raises(ValueError, match="seq_len: expected one of"):
        spaces.check_values("rnn", {"seq_len": 5})
    with pytest.raises(ValueError, match="clip_norm"):
        spaces.check_values("rnn", {"clip_norm": -1.0})
    with pytest.raises(ValueError, match="cell: expected one of"):
        spaces.check_values("rnn", {"cell": "RNN"})
