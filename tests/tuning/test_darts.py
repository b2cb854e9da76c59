"""DARTS over the cnn space (tuning.darts): the supernet and its gradients, the search,
Ctrl-C, the derived configuration and what is saved (the command: test_darts_cli.py)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import minidl
from minidl.data import FASHION_MNIST_MEAN, FASHION_MNIST_STD, prepare
from minidl.nn.darts import MixedOp
from tuning import darts, spaces
from tuning.spaces import config_from_params

TINY = {"n_conv": 2, "filters_l0": 8, "filters_l1": 8, "dense_size": 32, "batch_size": 32}


def _supernet(params, input_shape=spaces.IMAGE_SHAPE):
    minidl.manual_seed(0)
    return darts.SuperNet(config_from_params("cnn", darts.base_params(params)), input_shape)


def test_supernet_mixes_every_choice_of_the_space():
    net = _supernet({"n_conv": 3, "convs_per_block": 2, "batch_norm": True})
    choices = net.choices()
    assert list(choices) == ["kernel_l0", "kernel_l1", "kernel_l2", "pool_type"]
    assert choices["kernel_l1"] == ([3, 5, 7], pytest.approx([1 / 3] * 3))
    assert choices["pool_type"] == (["max", "avg"], pytest.approx([0.5, 0.5]))
    mixed = [m for m in net.modules() if isinstance(m, MixedOp)]
    convs = [m for m in mixed if len(m.ops) == 3]
    pools = [m for m in mixed if len(m.ops) == 2]
    assert [tuple(op.kernel_size) for op in convs[0].ops] == [(3, 3), (5, 5), (7, 7)]
    assert len(convs) == 6 and len(pools) == 3
    # the two convolutions of a block share its alpha; every pooling shares one
    assert [id(m.alpha) for m in convs] == [id(a) for a in net.kernel_alphas for _ in (0, 1)]
    assert {id(m.alpha) for m in pools} == {id(net.pool_alpha)}
    arch, weights = net.arch_parameters(), net.weight_parameters()
    assert len(arch) == 4
    assert {id(p) for p in arch} | {id(p) for p in weights} == {id(p) for p in net.parameters()}
    assert not {id(p) for p in arch} & {id(p) for p in weights}
    # batch norm: the convolutions have no bias, as build_cnn builds them
    assert all(op.bias is None for m in convs for op in m.ops)


def test_supernet_gradcheck_including_architecture_parameters(rng):
    """The whole supernet in float64 on 6x6 images: weights, kernel alphas, pool alpha."""
    net = _supernet({"n_conv": 2, "filters_l0": 8, "filters_l1": 8, "dense_size": 32,
                     "dropout_rate": 0.0, "batch_norm": False}, input_shape=(1, 6, 6))
    # smaller layers than the space allows, to keep the finite differences quick
    for m in net.modules():
        if isinstance(m, MixedOp) and len(m.ops) == 3:
            for op in m.ops:
                op.weight.data = op.weight.data[:2, :min(op.in_channels, 2)].copy()
                op.bias.data = op.bias.data[:2].copy()
                op.out_channels, op.in_channels = 2, min(op.in_channels, 2)
    head = [m for m in net.layers if type(m).__name__ == "Linear"]
    head[0].weight.data = head[0].weight.data[:, :2 * 1 * 1].copy()
    head[0].in_features = 2
    for a, v in zip(net.arch_parameters(), ([0.2, -0.4, 0.1], [0.0, 0.3, -0.2], [0.5, -0.5])):
        a.data[...] = v
    x = rng.standard_normal((2, 1, 6, 6))
    assert minidl.gradcheck(net, x, atol=1e-7, rtol=1e-6)


@pytest.fixture(scope="module")
def tiny_data(fashion_mnist):
    tx, ty = fashion_mnist.train_images, fashion_mnist.train_labels
    train = prepare(tx[:128], ty[:128], FASHION_MNIST_MEAN, FASHION_MNIST_STD)
    val = prepare(tx[128:224], ty[128:224], FASHION_MNIST_MEAN, FASHION_MNIST_STD)
    return train, val


def test_search_moves_the_architecture_and_derives_a_cnn_configuration(tiny_data, tmp_path):
    train, val = tiny_data
    base = darts.base_params({**TINY, "lr_schedule": "cosine"})
    lines = []
    result = darts.search(base, train, val, epochs=2, seed=3, arch_lr=0.05, log=lines.append,
                          record_every=2)
    assert not result.interrupted and result.steps == 8 and len(result.epochs_done) == 2
    assert len(lines) == 2 and lines[1].startswith("  epoch 2/2 train_loss")
    # the weights' rate each epoch started with: cosine over the 2 epochs of the search
    assert [r["lr"] for r in result.epochs_done] == pytest.approx([1e-3, 5e-4])
    first, last = result.trajectory[0], result.trajectory[-1]
    assert first["step"] == 0 and first["kernel_l0"] == pytest.approx([1 / 3] * 3)
    assert [r["step"] for r in result.trajectory] == [0, 2, 4, 6, 8]
    assert last["kernel_l0"] != first["kernel_l0"]          # the alphas were trained
    for name, (cands, w) in result.choices.items():
        assert sum(w) == pytest.approx(1.0) and result.chosen[name] == cands[int(np.argmax(w))]
    params = result.params
    assert spaces.check_values("cnn", params) == []
    assert {k: params[k] for k in TINY} == TINY                # the fixed part is kept
    assert "kernel_l2" not in params and "hypergrad_lr" not in params   # not asked
    # the same seed gives the same search, bit for bit
    again = darts.search(base, train, val, epochs=2, seed=3, arch_lr=0.05, record_every=2)
    assert again.trajectory == result.trajectory

    summary = darts.save(result, tmp_path, {"epochs": 2})
    assert json.loads((tmp_path / "params.json").read_text()) == params
    stored = json.loads((tmp_path / "darts.json").read_text())
    assert stored["params"] == params and stored["config"] == summary["config"]
    assert stored["config"]["kernel_sizes"] == [params["kernel_l0"], params["kernel_l1"]]
    assert (tmp_path / "alphas.png").stat().st_size > 1000


def test_ctrl_c_keeps_what_the_search_learned(tiny_data, monkeypatch):
    train, val = tiny_data
    lines = []
    real_step = darts._step

    def interrupt_in_epoch_2(*args, **kwargs):    # Ctrl-C at epoch 2's first step
        if lines:
            raise KeyboardInterrupt
        return real_step(*args, **kwargs)

    monkeypatch.setattr(darts, "_step", interrupt_in_epoch_2)
    result = darts.search(darts.base_params(TINY), train, val, epochs=2, seed=0,
                          arch_lr=0.05, log=lines.append, record_every=100)
    assert result.interrupted and result.steps == 4 and len(result.epochs_done) == 1
    # the trajectory ends with the weights the search stopped at
    assert [(r["step"], r["epoch"]) for r in result.trajectory] == [(0, 0.0), (4, 1.0)]
    assert result.trajectory[-1]["kernel_l0"] == result.choices["kernel_l0"][1]
    assert spaces.check_values("cnn", result.params) == []
