"""minidl.checkpoint: weights and optimizer state in one .npz, back bit for bit."""
from __future__ import annotations

import json
import os
import zipfile

import numpy as np
import pytest

import minidl
from minidl import nn, optim
from minidl.checkpoint import load_checkpoint, read_checkpoint_metadata, save_checkpoint

OPTIMIZERS = {
    "Adam": lambda p, lr: optim.Adam(p, lr=lr, weight_decay=1e-4),
    "Adam-amsgrad": lambda p, lr: optim.Adam(p, lr=lr, amsgrad=True),
    "SGD-momentum": lambda p, lr: optim.SGD(p, lr=lr, momentum=0.9, nesterov=True),
    "RMSprop": lambda p, lr: optim.RMSprop(p, lr=lr, momentum=0.5, centered=True),
    "SGD-HD": lambda p, lr: optim.SGDHD(p, lr=lr, momentum=0.9, hypergrad_lr=1e-3),
    "Adam-HD": lambda p, lr: optim.AdamHD(p, lr=lr, hypergrad_lr=1e-7),
}


def net(seed):
    minidl.manual_seed(seed)
    # BatchNorm1d brings float buffers and the int64 buffer num_batches_tracked
    return nn.Sequential(nn.Linear(6, 5), nn.BatchNorm1d(5), nn.ReLU(), nn.Linear(5, 3))


def train_steps(model, optimizer, rng, steps):
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    for _ in range(steps):
        x = rng.standard_normal((8, 6)).astype(np.float32)
        y = rng.integers(0, 3, 8)
        optimizer.zero_grad()
        loss_fn(model(x), y)
        model.backward(loss_fn.backward())
        optimizer.step()


def bits(value):
    return np.ascontiguousarray(value).tobytes()


def assert_bitwise_same(model_a, opt_a, model_b, opt_b):
    sa, sb = model_a.state_dict(), model_b.state_dict()
    assert list(sa) == list(sb)
    for key in sa:
        assert sa[key].dtype == sb[key].dtype, key
        assert bits(sa[key]) == bits(sb[key]), key
    da, db = opt_a.state_dict(), opt_b.state_dict()
    assert da["param_groups"] == db["param_groups"]
    assert sorted(da["state"]) == sorted(db["state"])
    for index, entries in da["state"].items():
        assert sorted(entries) == sorted(db["state"][index])
        for name, value in entries.items():
            other = db["state"][index][name]
            assert type(value) is type(other), (index, name)
            if isinstance(value, np.ndarray):
                assert value.dtype == other.dtype and bits(value) == bits(other), (index, name)
            else:
                assert value == other, (index, name)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_round_trip_is_bitwise_and_training_continues_identically(tmp_path, name):
    rng = np.random.default_rng(0)
    model = net(0)
    opt = OPTIMIZERS[name](model.parameters(), 0.05)
    train_steps(model, opt, rng, 5)
    path = save_checkpoint(tmp_path / "ckpt", model, opt, generation=3, note="x")
    assert path == str(tmp_path / "ckpt.npz")

    # a fresh model (other initial weights) and optimizer (other learning rate, no state)
    copy_model = net(1)
    copy_opt = OPTIMIZERS[name](copy_model.parameters(), 0.5)
    assert load_checkpoint(path, copy_model, copy_opt) == {"generation": 3, "note": "x"}
    assert_bitwise_same(model, opt, copy_model, copy_opt)

    # both go on from the same point: the same batches give the same bits
    train_steps(model, opt, np.random.default_rng(7), 3)
    train_steps(copy_model, copy_opt, np.random.default_rng(7), 3)
    assert_bitwise_same(model, opt, copy_model, copy_opt)


def test_a_fresh_optimizer_without_state_round_trips(tmp_path):
    model = net(0)
    opt = optim.Adam(model.parameters(), lr=3e-4, betas=(0.8, 0.95))
    save_checkpoint(tmp_path / "c.npz", model, opt)
    other_model, other = net(2), optim.Adam(net(2).parameters(), lr=1.0)
    other = optim.Adam(other_model.parameters(), lr=1.0)
    load_checkpoint(tmp_path / "c.npz", other_model, other)
    assert other.param_groups[0]["betas"] == (0.8, 0.95)   # a tuple again, not a list
    assert other.param_groups[0]["lr"] == 3e-4
    assert_bitwise_same(model, opt, other_model, other)


def test_weights_only_checkpoints_and_metadata(tmp_path):
    model = net(0)
    save_checkpoint(tmp_path / "w.npz", model, epoch=np.int64(4), curve=np.array([0.5, 0.25]))
    assert read_checkpoint_metadata(tmp_path / "w.npz") == {"epoch": 4, "curve": [0.5, 0.25]}
    other = net(1)
    load_checkpoint(tmp_path / "w.npz", other)
    assert all(bits(a) == bits(b) for a, b in zip(model.state_dict().values(),
                                                  other.state_dict().values()))
    with pytest.raises(ValueError, match="holds no optimizer state"):
        load_checkpoint(tmp_path / "w.npz", other, optim.SGD(other.parameters(), lr=0.1))


def test_the_file_has_no_pickled_entries_and_no_temporary_file_is_left(tmp_path):
    model = net(0)
    opt = optim.Adam(model.parameters())
    train_steps(model, opt, np.random.default_rng(0), 2)
    save_checkpoint(tmp_path / "c.npz", model, opt)
    save_checkpoint(tmp_path / "c.npz", model, opt)     # over an existing file
    assert os.listdir(tmp_path) == ["c.npz"]
    with np.load(tmp_path / "c.npz", allow_pickle=False) as archive:
        for key in archive.files:
            assert archive[key].dtype != object
        header = json.loads(str(archive["__minidl_metadata__"][0]))
    assert header["metadata"]["checkpoint"] == 1
    assert header["metadata"]["optimizer"]["type"] == "Adam"
    assert header["metadata"]["optimizer"]["scalars"]["0"]["step"] == 2


def test_wrong_optimizer_or_shape_changes_nothing(tmp_path):
    model = net(0)
    opt = optim.Adam(model.parameters(), lr=0.01)
    train_steps(model, opt, np.random.default_rng(0), 2)
    path = save_checkpoint(tmp_path / "c.npz", model, opt)

    target = net(5)
    before = {k: bits(v) for k, v in target.state_dict().items()}
    sgd = optim.SGD(target.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="state of a Adam optimizer, got a SGD"):
        load_checkpoint(path, target, sgd)
    assert {k: bits(v) for k, v in target.state_dict().items()} == before

    minidl.manual_seed(0)
    wider = nn.Sequential(nn.Linear(6, 7), nn.BatchNorm1d(7), nn.ReLU(), nn.Linear(7, 3))
    before = {k: bits(v) for k, v in wider.state_dict().items()}
    adam = optim.Adam(wider.parameters(), lr=0.5)
    with pytest.raises(ValueError, match="expected shape"):
        load_checkpoint(path, wider, adam)
    assert {k: bits(v) for k, v in wider.state_dict().items()} == before
    assert adam.param_groups[0]["lr"] == 0.5 and not adam.state


def test_optimizer_failure_after_the_weights_restores_the_weights(tmp_path):
    """The weights load first; an optimizer whose groups do not match puts them back."""
    model = net(0)
    opt = optim.Adam(model.parameters(), lr=0.01)
    train_steps(model, opt, np.random.default_rng(0), 2)
    path = save_checkpoint(tmp_path / "c.npz", model, opt)
    target = net(5)
    before = {k: bits(v) for k, v in target.state_dict().items()}
    params = list(target.parameters())
    split = optim.Adam([{"params": params[:2]}, {"params": params[2:]}], lr=0.5)
    with pytest.raises(ValueError, match="parameter groups"):
        load_checkpoint(path, target, split)
    assert {k: bits(v) for k, v in target.state_dict().items()} == before


def test_bad_files_are_clear_errors(tmp_path):
    model = net(0)
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.npz", model)
    minidl.save(model, tmp_path / "weights.npz")
    with pytest.raises(ValueError, match="not a checkpoint written by save_checkpoint"):
        load_checkpoint(tmp_path / "weights.npz", model)
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(ValueError, match="text.npz"):
        load_checkpoint(tmp_path / "text.npz", model)
    good = save_checkpoint(tmp_path / "good.npz", model, optim.SGD(model.parameters(), lr=0.1))
    data = open(good, "rb").read()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="cut.npz"):
        load_checkpoint(tmp_path / "cut.npz", model)
    # an entry that is neither the model's nor the optimizer's
    with zipfile.ZipFile(good, "a") as archive:
        with archive.open("stray.npy", "w") as f:
            np.lib.format.write_array(f, np.zeros(2))
    with pytest.raises(ValueError, match=r"good.npz.*unexpected keys \['stray'\]"):
        load_checkpoint(good, model)


def test_pickled_entries_are_refused(tmp_path):
    model = net(0)
    path = save_checkpoint(tmp_path / "c.npz", model)
    with zipfile.ZipFile(path, "a") as archive:
        with archive.open("model.evil.npy", "w") as f:
            np.lib.format.write_array(f, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="pickle"):
        load_checkpoint(path, model)


def test_unserialisable_metadata_is_refused(tmp_path):
    with pytest.raises(ValueError, match="JSON-serialisable"):
        save_checkpoint(tmp_path / "c.npz", net(0), object=object())
    assert not os.listdir(tmp_path)


def test_optimizer_state_of_the_wrong_shape_is_refused_before_it_is_read(tmp_path):
    model = net(0)
    opt = optim.Adam(model.parameters())
    train_steps(model, opt, np.random.default_rng(0), 1)
    path = save_checkpoint(tmp_path / "c.npz", model, opt)
    # a hand-made archive: parameter 0's exp_avg replaced by a much larger array
    out = tmp_path / "big.npz"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            if info.filename == "optimizer.p0_exp_avg.npy":
                with dst.open(info.filename, "w") as f:
                    np.lib.format.write_array(f, np.zeros((500, 6), np.float32))
            else:
                dst.writestr(info, src.read(info))
    target = net(3)
    adam = optim.Adam(target.parameters(), lr=0.5)
    with pytest.raises(ValueError, match=r"big.npz.*'optimizer.p0_exp_avg': expected shape "
                                         r"\(5, 6\), got \(500, 6\)"):
        load_checkpoint(out, target, adam)
    assert adam.param_groups[0]["lr"] == 0.5 and not adam.state
