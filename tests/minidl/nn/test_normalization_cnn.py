"""A whole CNN with BatchNorm (conv -> BN -> ReLU -> pool, twice, then a linear head),
trained 30 steps by ``minidl.train.fit`` on real Fashion-MNIST images in float64, gives
PyTorch's loss after every step (issue 14).

Same initial weights and buffers, the same batches in the same order (recorded from
``fit`` and replayed through PyTorch): every training loss, the validation loss and
accuracy (eval mode: the running statistics) and the final running statistics must
equal PyTorch's to 1e-9 relative.
"""
from __future__ import annotations

import numpy as np
import pytest

import minidl
from minidl import nn, optim
from minidl.data import FASHION_MNIST_MEAN, FASHION_MNIST_STD, prepare
from minidl.train import fit
from recorders import BatchRecorder, LossRecorder

RTOL = 1e-9
STEPS, BATCH = 30, 16


@pytest.fixture(scope="module")
def fashion_steps(fashion_mnist):
    splits = fashion_mnist
    train = prepare(splits.train_images[:STEPS * BATCH], splits.train_labels[:STEPS * BATCH],
                    FASHION_MNIST_MEAN, FASHION_MNIST_STD, dtype=np.float64)
    val = prepare(splits.test_images[:100], splits.test_labels[:100],
                  FASHION_MNIST_MEAN, FASHION_MNIST_STD, dtype=np.float64)
    return train, val


def bn_cnn(ns, momentum=0.1, first_bias=True):
    """conv -> BN -> ReLU -> pool, x2, linear head, in minidl (ns = nn) or torch (ns = torch.nn).

    A conv bias just before a BatchNorm has a gradient that is exactly 0 in exact
    arithmetic (the normalisation subtracts any constant), so both libraries compute
    rounding noise for it.  Adam divides that noise by its own running size and turns it
    into steps: the bias then drifts apart between the two (7e-9 after 30 steps, and the
    running mean after it with it) while every loss still agrees.  The Adam test therefore
    builds the convolutions without bias (the usual conv -> BN design); the SGD test
    keeps the first one's, where noise times the learning rate stays at rounding level.
    """
    return ns.Sequential(
        ns.Conv2d(1, 4, 3, padding=1, bias=first_bias), ns.BatchNorm2d(4, momentum=momentum),
        ns.ReLU(),
        ns.MaxPool2d(2),
        ns.Conv2d(4, 8, 3, padding=1, bias=False), ns.BatchNorm2d(8, momentum=momentum),
        ns.ReLU(), ns.MaxPool2d(2),
        ns.Flatten(), ns.Linear(8 * 7 * 7, 10))


def assert_close(ours, theirs, what):
    theirs = theirs.detach().numpy() if hasattr(theirs, "detach") else np.asarray(theirs)
    scale = float(np.abs(theirs).max())
    np.testing.assert_allclose(ours, theirs, rtol=RTOL, atol=RTOL * scale, err_msg=what)


def run_both(torch, make_opts, train, val, momentum=0.1, first_bias=True):
    minidl.manual_seed(0)
    model = bn_cnn(nn, momentum, first_bias).double()
    tmodel = bn_cnn(torch.nn, momentum, first_bias).double()
    tmodel.load_state_dict({k: torch.from_numpy(v) for k, v in model.state_dict().items()})

    rec = BatchRecorder(model)
    loss_fn = LossRecorder(rec)
    opt, topt = make_opts(rec.parameters(), tmodel.parameters())
    hist = fit(rec, loss_fn, opt, train, val, epochs=1, batch_size=BATCH, seed=3, progress=False)
    assert len(rec.inputs) == len(loss_fn.losses) == STEPS

    crit = torch.nn.CrossEntropyLoss()
    torch_losses = []
    tmodel.train()
    for x, y in zip(rec.inputs, loss_fn.targets):
        topt.zero_grad()
        loss = crit(tmodel(torch.from_numpy(x)), torch.from_numpy(y))
        loss.backward()
        topt.step()
        torch_losses.append(loss.item())
    tmodel.eval()
    with torch.no_grad():
        logits = tmodel(torch.from_numpy(val.x))
        vy = torch.from_numpy(val.y)
        torch_val = (crit(logits, vy).item(), (logits.argmax(1) == vy).double().mean().item())

    np.testing.assert_allclose(loss_fn.losses, torch_losses, rtol=RTOL, atol=0)
    np.testing.assert_allclose(hist.epochs[-1]["val_loss"], torch_val[0], rtol=RTOL, atol=0)
    assert hist.epochs[-1]["val_accuracy"] == torch_val[1]
    tbuffers = dict(tmodel.named_buffers())
    for name, b in model.named_buffers():
        if b.dtype.kind == "f":
            assert_close(b, tbuffers[name], name)
        else:
            assert int(b) == int(tbuffers[name]) == STEPS
    tparams = dict(tmodel.named_parameters())
    for name, p in model.named_parameters():
        assert_close(p.data, tparams[name], name)
    # the run did train: the loss moved well beyond the tolerance
    assert abs(np.mean(torch_losses[-5:]) - np.mean(torch_losses[:5])) > 1e-2
    return hist


def test_bn_cnn_sgd_momentum_matches_torch_step_by_step(torch, fashion_steps):
    train, val = fashion_steps

    def make_opts(params, tparams):
        return (optim.SGD(params, lr=0.05, momentum=0.9, weight_decay=1e-4),
                torch.optim.SGD(tparams, lr=0.05, momentum=0.9, weight_decay=1e-4))

    run_both(torch, make_opts, train, val)


def test_bn_cnn_adam_cumulative_average_matches_torch_step_by_step(torch, fashion_steps):
    train, val = fashion_steps

    def make_opts(params, tparams):
        return optim.Adam(params, lr=2e-3), torch.optim.Adam(tparams, lr=2e-3)

    run_both(torch, make_opts, train, val, momentum=None, first_bias=False)
