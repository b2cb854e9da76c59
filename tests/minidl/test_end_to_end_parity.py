"""End to end: ``fit`` on real Fashion-MNIST images gives PyTorch's loss after every step.

Same initial weights, the same batches in the same order (recorded from ``fit`` and
replayed through PyTorch), no dropout, float64: every training loss, and every epoch's
validation loss and accuracy, must equal PyTorch's to 1e-8 relative.
"""
from __future__ import annotations

import numpy as np
import pytest

import minidl
from minidl import nn, optim
from minidl.data import FASHION_MNIST_MEAN, FASHION_MNIST_STD, prepare
from minidl.train import fit
from recorders import BatchRecorder, LossRecorder

RTOL = 1e-8


@pytest.fixture(scope="module")
def small_fashion(fashion_mnist):
    splits = fashion_mnist
    train = prepare(splits.train_images[:256], splits.train_labels[:256],
                    FASHION_MNIST_MEAN, FASHION_MNIST_STD, dtype=np.float64)
    val = prepare(splits.test_images[:128], splits.test_labels[:128],
                  FASHION_MNIST_MEAN, FASHION_MNIST_STD, dtype=np.float64)
    return train, val


def run_both(torch, build_minidl, build_torch, make_opts, train, val, epochs=2, batch_size=32):
    minidl.manual_seed(0)
    model = build_minidl().double()
    tmodel = build_torch().double()
    tmodel.load_state_dict({k: torch.from_numpy(v) for k, v in model.state_dict().items()})

    rec = BatchRecorder(model)
    loss_fn = LossRecorder(rec)
    opt, topt = make_opts(rec.parameters(), tmodel.parameters())
    hist = fit(rec, loss_fn, opt, train, val, epochs=epochs, batch_size=batch_size,
               seed=7, progress=False)
    steps_per_epoch = -(-len(train.y) // batch_size)
    assert len(rec.inputs) == len(loss_fn.losses) == epochs * steps_per_epoch

    crit = torch.nn.CrossEntropyLoss()
    torch_losses, torch_val = [], []
    vx, vy = torch.from_numpy(val.x), torch.from_numpy(val.y)
    for e in range(epochs):
        tmodel.train()
        for i in range(e * steps_per_epoch, (e + 1) * steps_per_epoch):
            topt.zero_grad()
            loss = crit(tmodel(torch.from_numpy(rec.inputs[i])),
                        torch.from_numpy(loss_fn.targets[i]))
            loss.backward()
            topt.step()
            torch_losses.append(loss.item())
        tmodel.eval()
        with torch.no_grad():
            logits = tmodel(vx)
            torch_val.append((crit(logits, vy).item(),
                              (logits.argmax(1) == vy).double().mean().item()))

    np.testing.assert_allclose(loss_fn.losses, torch_losses, rtol=RTOL, atol=0)
    np.testing.assert_allclose([r["val_loss"] for r in hist.epochs],
                               [v for v, _ in torch_val], rtol=RTOL, atol=0)
    assert [r["val_accuracy"] for r in hist.epochs] == [a for _, a in torch_val]
    # the run did train: the loss moved well beyond the tolerance
    assert abs(torch_losses[-1] - torch_losses[0]) > 1e-2
    return hist


def test_mlp_adam_matches_torch_step_by_step(torch, small_fashion):
    train, val = small_fashion

    def build_minidl():
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 10))

    def build_torch():
        tn = torch.nn
        return tn.Sequential(tn.Flatten(), tn.Linear(784, 64), tn.ReLU(), tn.Linear(64, 10))

    def make_opts(params, tparams):
        return (optim.Adam(params, lr=1e-3),
                torch.optim.Adam(tparams, lr=1e-3))

    run_both(torch, build_minidl, build_torch, make_opts, train, val)


def test_cnn_sgd_momentum_matches_torch_step_by_step(torch, small_fashion):
    train, val = small_fashion

    def build_minidl():
        return nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(4, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(8 * 7 * 7, 10))

    def build_torch():
        tn = torch.nn
        return tn.Sequential(
            tn.Conv2d(1, 4, 3, padding=1), tn.ReLU(), tn.MaxPool2d(2),
            tn.Conv2d(4, 8, 3, padding=1), tn.ReLU(), tn.MaxPool2d(2),
            tn.Flatten(), tn.Linear(8 * 7 * 7, 10))

    def make_opts(params, tparams):
        return (optim.SGD(params, lr=0.05, momentum=0.9),
                torch.optim.SGD(tparams, lr=0.05, momentum=0.9))

    run_both(torch, build_minidl, build_torch, make_opts, train, val)
