"""Tutorial 8: batch normalization (source of docs/tutorials/08-batch-normalization.ipynb)."""
# %% [markdown]
# # 8. Batch normalization
#
# A layer's input changes as the layers before it learn. **Batch normalization** (Ioffe and
# Szegedy, 2015) rescales each channel, batch by batch, to mean 0 and variance 1 and then
# lets the network choose a scale $\gamma$ and a shift $\beta$ of its own. It is one of the
# few layers whose backward pass couples the samples of a batch: every $x_i$ moves the
# mean and the variance, and through them every output. This notebook derives that
# backward pass step by step down to the compact form minidl uses, then looks at the
# running statistics, training versus evaluation mode, the batch of one, and finally trains
# the same convolutional network with and without it.

# %%
import os, time
SMALL = os.environ.get("MINIDL_TUTORIAL_SMALL", "") not in ("", "0")   # the test suite sets it
%matplotlib inline

import numpy as np
import matplotlib.pyplot as plt

import minidl
from minidl import nn, optim
from minidl.data import (load_fashion_mnist, prepare, train_val_split, FASHION_MNIST_MEAN,
                         FASHION_MNIST_STD)
from minidl.train import fit
from tutorial import record, claim        # docs/tutorials/tutorial: stated values, checks

N_TRAIN = 1200 if SMALL else 12000
EPOCHS = 2 if SMALL else 4
minidl.manual_seed(0)

raw = load_fashion_mnist(download=False)
data = prepare(raw.train_images[:N_TRAIN], raw.train_labels[:N_TRAIN],
               FASHION_MNIST_MEAN, FASHION_MNIST_STD)
train, val = train_val_split(data, val_size=0.2, seed=0)
print("small data" if SMALL else "full run", "|", len(train), "training and", len(val),
      "validation images")

# %% [markdown]
# ## Forward
#
# For one channel and the $n$ values $x_1..x_n$ it takes over the batch (and, in a
# convolutional layer, over every position: $n = N H W$):
#
# $$ \mu = \frac1n \sum_i x_i, \qquad \sigma^2 = \frac1n \sum_i (x_i - \mu)^2, \qquad
#    \hat x_i = \frac{x_i - \mu}{\sqrt{\sigma^2 + \epsilon}}, \qquad
#    y_i = \gamma \hat x_i + \beta . $$
#
# We take real activations: the 8 channels of a convolution applied to a batch of
# Fashion-MNIST images, and compare the formula with `nn.BatchNorm2d`.

# %%
conv = nn.Conv2d(1, 8, 3, padding=1).double()
x = conv(train.x[:16].astype(np.float64))                 # (16, 8, 28, 28) activations
bn = nn.BatchNorm2d(8).double()
bn.weight.data[...] = np.linspace(0.5, 2.0, 8)             # some gamma and beta to see
bn.bias.data[...] = np.linspace(-1.0, 1.0, 8)
y = bn(x)

mu = x.mean(axis=(0, 2, 3), keepdims=True)
var = x.var(axis=(0, 2, 3), keepdims=True)
x_hat = (x - mu) / np.sqrt(var + bn.eps)
y_hand = bn.weight.data[None, :, None, None] * x_hat + bn.bias.data[None, :, None, None]
print("channel means before:", np.round(mu.ravel(), 3))
print("channel std before:  ", np.round(np.sqrt(var.ravel()), 3))
print("after, x_hat: mean", np.abs(x_hat.mean(axis=(0, 2, 3))).max().round(12),
      "| std", np.round(x_hat.std(axis=(0, 2, 3)), 6))
print("formula vs nn.BatchNorm2d:", np.abs(y - y_hand).max())
claim(np.abs(y - y_hand).max() < 1e-12, "the formula gives nn.BatchNorm2d's output")

# %% [markdown]
# ## Backward, step by step
#
# Write $G_i = \partial L/\partial y_i$. The parameters are easy:
# $\partial L/\partial\beta = \sum_i G_i$ and $\partial L/\partial\gamma = \sum_i G_i \hat
# x_i$. For $x$, follow the computation graph backwards, one node at a time. $x_i$ reaches
# the loss three ways: directly through $\hat x_i$, through $\mu$ and through $\sigma^2$.
#
# 1. $\dfrac{\partial L}{\partial \hat x_i} = \gamma G_i =: g_i$.
# 2. $\sigma^2$ appears in every $\hat x_i$ through $(\sigma^2+\epsilon)^{-1/2}$:
#    $\dfrac{\partial L}{\partial \sigma^2} = \sum_i g_i (x_i - \mu)
#    \cdot\big(-\tfrac12\big)(\sigma^2 + \epsilon)^{-3/2}$.
# 3. $\mu$ appears in every $\hat x_i$ and in $\sigma^2$:
#    $\dfrac{\partial L}{\partial \mu} = -\sum_i g_i\, r + \dfrac{\partial L}{\partial
#    \sigma^2} \cdot \dfrac{-2}{n}\sum_i (x_i - \mu)$, with $r = (\sigma^2+\epsilon)^{-1/2}$;
#    the last sum is 0.
# 4. Finally, with $\partial\mu/\partial x_i = 1/n$ and $\partial\sigma^2/\partial x_i =
#    2(x_i - \mu)/n$:
#    $\dfrac{\partial L}{\partial x_i} = g_i r + \dfrac{\partial L}{\partial \sigma^2}
#    \dfrac{2(x_i - \mu)}{n} + \dfrac{\partial L}{\partial \mu}\dfrac1n .$
#
# Substituting 2 and 3 into 4 and writing $x_i - \mu = \hat x_i / r$, everything collapses
# into the **compact form** (the derivation is in `minidl/nn/normalization.py`):
#
# $$ \frac{\partial L}{\partial x_i} = \frac{\gamma r}{n}\Big(n\,G_i - \sum_j G_j -
#    \hat x_i \sum_j G_j \hat x_j\Big)
#    = \frac{\gamma r}{n}\Big(n\,G_i - \frac{\partial L}{\partial\beta} - \hat x_i
#    \frac{\partial L}{\partial\gamma}\Big). $$
#
# Read it as: the plain gradient $n G_i$, minus its mean (shifting every $x_i$ by the same
# amount changes nothing, since $\mu$ moves along), minus its component along $\hat x$
# (scaling all $x_i - \mu$ changes nothing, since $\sigma$ scales along). Both the staged
# and the compact form, against minidl:

# %%
G = np.random.default_rng(0).standard_normal(y.shape)      # some dL/dy
gamma = bn.weight.data[None, :, None, None]
axes = (0, 2, 3)
n = x.shape[0] * x.shape[2] * x.shape[3]
r = 1 / np.sqrt(var + bn.eps)

# staged: the four steps above
g = gamma * G
d_var = (g * (x - mu)).sum(axis=axes, keepdims=True) * -0.5 * r ** 3
d_mu = -(g * r).sum(axis=axes, keepdims=True)
dx_staged = g * r + d_var * 2 * (x - mu) / n + d_mu / n

# compact
d_beta = G.sum(axis=axes, keepdims=True)
d_gamma = (G * x_hat).sum(axis=axes, keepdims=True)
dx_compact = gamma * r / n * (n * G - d_beta - x_hat * d_gamma)

bn.zero_grad()
dx_minidl = bn.backward(G)
print("staged vs compact  :", np.abs(dx_staged - dx_compact).max())
print("compact vs minidl  :", np.abs(dx_compact - dx_minidl).max())
print("dL/dgamma, dL/dbeta:", np.abs(d_gamma.ravel() - bn.weight.grad).max(),
      np.abs(d_beta.ravel() - bn.bias.grad).max())
print("gradcheck of a small BatchNorm2d:",
      minidl.gradcheck(nn.BatchNorm2d(3), np.random.default_rng(1).standard_normal((4, 3, 2, 2))))
claim(max(np.abs(dx_staged - dx_compact).max(), np.abs(dx_compact - dx_minidl).max()) < 1e-12,
      "the staged form, the compact form and minidl agree")
claim(np.abs(dx_minidl.sum(axis=axes)).max() < 1e-9, "dL/dx sums to zero in every channel")
record(n=n)

# %% [markdown]
# Each channel here normalises $n = {{n:,}}$ values (16 images of $28 \times 28$). The last
# check is the first half of the reading of the compact form: per channel,
# $\partial L/\partial x$ sums to zero. (It would also be exactly orthogonal to $\hat x$ if
# $\epsilon$ were 0; with $\epsilon$, $\sum_i \hat x_i^2 = n\sigma^2/(\sigma^2+\epsilon)$
# falls a little short of $n$.)
#
# ## Running statistics
#
# A trained network must classify one image at a time, when there is no batch to average
# over. So in training the layer also keeps **running** estimates, updated after every
# batch with the momentum $f = 0.1$,
#
# $$ \mu_{run} \leftarrow (1-f)\,\mu_{run} + f\,\mu, \qquad
#    \sigma^2_{run} \leftarrow (1-f)\,\sigma^2_{run} + f\,\frac{n}{n-1}\sigma^2 $$
#
# (the *unbiased* variance), starting from 0 and 1. After $k$ batches the start still
# weighs $(1-f)^k$: about a third after 10 batches, 0.5 % after 50. We feed batches of
# activations whose true per-channel mean and variance we know (the statistics of the
# whole training set) and watch the estimates converge.

# %%
features = conv(train.x.astype(np.float64))                 # every training image
true_mean = features.mean(axis=(0, 2, 3))
true_var = features.var(axis=(0, 2, 3))
tracker = nn.BatchNorm2d(8).double()
rng = np.random.default_rng(0)
means, variances = [tracker.running_mean.copy()], [tracker.running_var.copy()]
for step in range(60):
    batch = features[rng.choice(len(features), 32, replace=False)]
    tracker(batch)
    means.append(tracker.running_mean.copy())
    variances.append(tracker.running_var.copy())
means, variances = np.array(means), np.array(variances)
error_10 = np.abs(means[10] - true_mean).max()
error_60 = np.abs(means[60] - true_mean).max()
print(f"largest |running mean - true mean| after 10 batches {error_10:.4f}, "
      f"after 60: {error_60:.4f}")
claim(error_60 < error_10, "the running mean is closer after 60 batches than after 10")
record(error_10=error_10, error_60=error_60)

fig, axes_ = plt.subplots(1, 2, figsize=(10, 3.4))
for c, ls in zip(range(3), ["-", "--", ":"]):
    axes_[0].plot(means[:, c], ls=ls, color=f"C{c}", label=f"channel {c}")
    axes_[0].axhline(true_mean[c], color=f"C{c}", lw=0.6)
    axes_[1].plot(variances[:, c], ls=ls, color=f"C{c}", label=f"channel {c}")
    axes_[1].axhline(true_var[c], color=f"C{c}", lw=0.6)
axes_[0].set_ylabel("running_mean")
axes_[1].set_ylabel("running_var")
for a in axes_:
    a.set_xlabel("batches seen")
    a.legend(fontsize=8)
axes_[0].set_title("mean (thin line: the training set's)")
axes_[1].set_title("variance (thin line: the training set's)")
fig.suptitle("Running statistics converge to the data's, from their start at 0 and 1")
fig.tight_layout()
plt.show()

# %% [markdown]
# After 10 batches the running mean is still up to {{error_10:.3f}} off (the start at 0
# still weighs a third); after 60, {{error_60:.3f}}, what the batches' own noise leaves.
#
# ## Training versus evaluation
#
# In **training** mode an image's output depends on the other images of its batch (they
# set $\mu$ and $\sigma^2$); in **evaluation** mode (`model.eval()`) the layer uses the
# running statistics, a fixed affine map, and an image's output is its own. The same
# image, in two different batches:

# %%
image = features[:1]
companions_a, companions_b = features[1:8], features[100:107]
tracker.train()
out_a = tracker(np.concatenate([image, companions_a]))[0]
out_b = tracker(np.concatenate([image, companions_b]))[0]
tracker.eval()
eval_a = tracker(np.concatenate([image, companions_a]))[0]
eval_b = tracker(np.concatenate([image, companions_b]))[0]
train_change = np.abs(out_a - out_b).max()
eval_change = np.abs(eval_a - eval_b).max()
print(f"training mode: the image's output changes by up to {train_change:.3f} with its batch")
print(f"eval mode:     it changes by {eval_change}")
claim(train_change > 0.01 and eval_change == 0, "in training mode the output depends on the "
      "batch, in evaluation mode it does not")
record(train_change=train_change)

# %% [markdown]
# Forgetting `model.eval()` before testing is a classic bug: the test accuracy then
# depends on how the test images were batched (here the output moved by up to
# {{train_change:.2f}}), and every test batch also *changes* the running statistics.
#
# ## A batch of one
#
# With a single value per channel ($n = 1$), $x_1 - \mu = 0$: $\hat x = 0$ and $y = \beta$
# whatever the input was. The layer would destroy all information, and its gradient with
# respect to $x$ is exactly zero. minidl, like PyTorch, refuses to train on it. In
# `BatchNorm2d` one image still has $H W$ values per channel, so a batch of one works,
# but it normalises each image by its *own* statistics, and the running statistics then
# follow single images, which makes them noisy. In evaluation mode a batch of one is no
# problem at all: nothing is computed from the batch.

# %%
bn1 = nn.BatchNorm1d(4)
try:
    bn1(np.ones((1, 4), dtype=np.float32))
except ValueError as exc:
    print("training, BatchNorm1d, batch of one:", exc)
    refused = True
bn1.eval()
print("evaluation, batch of one:", bn1(np.full((1, 4), 3.0, dtype=np.float32)))
claim(refused, "training on a batch of one value per channel is refused")

# %% [markdown]
# ## The same CNN with and without batch normalization
#
# Two copies of a small convolutional network, `Conv → [BatchNorm] → ReLU → MaxPool`
# twice and a `Linear` classifier, from the same seed, trained with the same SGD rate and
# the same batches. With batch normalization the convolutions need no bias ($\beta$ does
# its job).

# %%
def cnn(batch_norm):
    minidl.manual_seed(0)
    def block(cin, cout):
        layers = [nn.Conv2d(cin, cout, 3, padding=1, bias=not batch_norm)]
        layers += [nn.BatchNorm2d(cout)] if batch_norm else []
        return layers + [nn.ReLU(), nn.MaxPool2d(2)]
    return nn.Sequential(*block(1, 16), *block(16, 32), nn.Flatten(), nn.Linear(32 * 7 * 7, 10))


print(minidl.summary(cnn(True), (1, 1, 28, 28)))
from minidl.data import iterate_batches
from minidl.train import evaluate


def train_curves(model, lr=0.02):
    """Per-batch training losses and the validation accuracy after each epoch."""
    opt = optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    batch_rng = np.random.default_rng(0)            # the same batches for both networks
    losses, accuracies = [], []
    for epoch in range(EPOCHS):
        model.train()
        for xb, yb in iterate_batches(train, 64, rng=batch_rng):
            opt.zero_grad()
            losses.append(loss_fn(model(xb), yb))
            model.backward(loss_fn.backward())
            opt.step()
        accuracies.append(evaluate(model, val)["accuracy"])   # evaluate() switches to eval
    return np.array(losses), np.array(accuracies)


curves = {}
for batch_norm in (False, True):
    start = time.perf_counter()
    curves[batch_norm] = train_curves(cnn(batch_norm))
    print(f"batch norm {batch_norm!s:5s}: validation accuracy by epoch "
          f"{np.round(curves[batch_norm][1], 3).tolist()} ({time.perf_counter() - start:.0f} s)")
per_epoch = len(curves[True][0]) // EPOCHS
first_epoch = {bn_: curves[bn_][0][:per_epoch].mean() for bn_ in curves}
claim(curves[True][1][0] > curves[False][1][0],
      "with batch normalization the validation accuracy after the first epoch is higher")
record(first_plain=first_epoch[False], first_bn=first_epoch[True],
       acc1_plain=curves[False][1][0], acc1_bn=curves[True][1][0],
       acc_plain=curves[False][1][-1], acc_bn=curves[True][1][-1], bn_epochs=EPOCHS)

# %%
def smooth(values, a=0.9):
    s, out = 0.0, []
    for t, v in enumerate(values, start=1):
        s = a * s + (1 - a) * v
        out.append(s / (1 - a ** t))
    return np.array(out)


fig, (ax, bx) = plt.subplots(1, 2, figsize=(10, 3.8), gridspec_kw={"width_ratios": [2, 1]})
for batch_norm, style in ((False, dict(color="C3", ls="--")), (True, dict(color="C0", ls="-"))):
    label = "with BatchNorm2d" if batch_norm else "without"
    losses, accuracies = curves[batch_norm]
    ax.plot(np.arange(1, len(losses) + 1) / per_epoch, smooth(losses), label=label, **style)
    bx.plot(np.arange(1, EPOCHS + 1), accuracies, marker="o", label=label, **style)
ax.set_xlabel("epoch")
ax.set_ylabel("training loss (smoothed per batch)")
ax.set_title("Training loss")
ax.legend(fontsize=8)
bx.set_xlabel("epoch")
bx.set_ylabel("validation accuracy")
bx.set_title("Validation accuracy")
bx.set_xticks(range(1, EPOCHS + 1))
fig.suptitle(f"The same CNN, same seed and batches, SGD lr 0.02: {len(train)} images")
fig.tight_layout()
plt.show()

# %% [markdown]
# After the first epoch the network with batch normalization classifies
# {{acc1_bn:.1%}} of the validation images correctly, the one without {{acc1_plain:.1%}};
# after {{bn_epochs}} epochs, {{acc_bn:.1%}} against {{acc_plain:.1%}}. (The mean training
# loss of the first epoch: {{first_bn:.3f}} with, {{first_plain:.3f}} without.) The
# check above asserts only the first epoch: whether the head start lasts to the end
# depends on the run, so compare the last two numbers yourself.
# Normalising each channel keeps every layer's inputs at a similar scale whatever the
# layers before it do, so one learning rate suits all the layers. Two cautions from
# trying this network at other settings: with very few batches the running statistics
# have not converged yet and evaluation mode suffers (see above), and batch normalization
# does not make every learning rate safe (try `lr=0.1`).

# %% [markdown]
# ## Exercises
#
# Fill in each function, run its cell, and read what the check says: it runs your function
# beside minidl's `BatchNorm1d` and names what differs. (Worked solutions are in
# `docs/tutorials/solutions/ex08.py`; try first.)
#
# **1. The compact backward.** For a batch `dout` $= \partial L/\partial y$ of shape
# $(N, C)$, the forward's `x_hat` and `invstd` $= 1/\sqrt{\sigma^2 + \epsilon}$ (shape
# $(C,)$) and `gamma`, return `(dx, dgamma, dbeta)`.

# %%
from tutorial.ex08 import check_batchnorm_backward, check_running_stats


def batchnorm_backward(dout, x_hat, invstd, gamma):
    raise NotImplementedError          # your code here


check_batchnorm_backward(batchnorm_backward)

# %% [markdown]
# **2. Running statistics.** Return the new `(running_mean, running_var)` after a
# training-mode forward pass on the batch `x` $(N, C)$ with momentum `momentum`.

# %%
def running_stats(running_mean, running_var, x, momentum):
    raise NotImplementedError          # your code here


check_running_stats(running_stats)

# %% [markdown]
# Next: [9. Recurrent networks](09-recurrent-networks.ipynb).
