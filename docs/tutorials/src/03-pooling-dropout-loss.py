"""Tutorial 3: pooling, dropout and the loss (source of docs/tutorials/03-pooling-dropout-loss.ipynb)."""
# %% [markdown]
# # 3. Pooling, dropout and the loss
#
# Three layers without weights, each with a backward pass worth reading:
#
# * **max-pooling** keeps the largest value of each window; its backward *routes* each
#   gradient to the one pixel that won, and ties need a rule;
# * **dropout** zeroes random activations while training and *scales the survivors*, so that
#   nothing changes at evaluation;
# * **softmax cross-entropy** turns scores into a loss without overflowing, and its gradient is
#   the famous $p - y$.

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
from minidl.kernels import max_pool2d_forward_reference, max_pool2d_backward_reference
from minidl.kernels import cross_entropy_reference
from minidl.kernels.naive import max_pool2d_forward_naive, max_pool2d_backward_naive
from minidl.train import fit
from tutorial import record, claim        # docs/tutorials/tutorial: stated values, checks

CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
           "Sneaker", "Bag", "Ankle boot")
N_TRAIN = 600 if SMALL else 6000        # for the dropout experiment at the end
EPOCHS = 2 if SMALL else 10
minidl.manual_seed(0)

raw = load_fashion_mnist(download=False)
data = prepare(raw.train_images[:N_TRAIN], raw.train_labels[:N_TRAIN],
               FASHION_MNIST_MEAN, FASHION_MNIST_STD)
print("small data" if SMALL else "full run", "|", data)

try:
    import torch
except ImportError:
    torch = None
    print("PyTorch is not installed: the comparisons with PyTorch are skipped.")

# %% [markdown]
# ## Max-pooling: forward
#
# With a $k \times k$ window and stride $s$,
#
# $$ y_{u,v} = \max_{0 \le i, j < k} x_{u s + i,\; v s + j}, \qquad
#    a_{u,v} = \text{the position } (u s + i, v s + j) \text{ that gave the maximum.} $$
#
# The forward pass keeps $a$ (as a flat index $h \cdot W + w$) for the backward pass. A small
# example, built with **ties**: the top-left window holds 7 twice, the top-right 3 twice and the
# bottom-right 5 four times.

# %%
x = np.array([[1, 7, 2, 3],
              [7, 0, 3, 1],
              [4, 2, 5, 5],
              [0, 6, 5, 5]], dtype=np.float64).reshape(1, 1, 4, 4)
pool = nn.MaxPool2d(2, return_indices=True)
y, a = pool(x)
print("y =\n", y[0, 0])
print("argmax a (flat index h*4 + w) =\n", a[0, 0])
print("the loop oracle agrees:", [np.array_equal(u, v) for u, v in
                                  zip((y, a), max_pool2d_forward_naive(x, 2, 2))])
claim(a[0, 0].tolist() == [[1, 3], [13, 10]], "the first maximum wins: indices 1, 3 and 10 "
      "in the three windows with ties")

# %% [markdown]
# **Ties:** the window is scanned row by row and a later value replaces the running maximum
# only if it is *strictly* larger, so the **first** maximum in row-major order wins: index 1
# (not 4) in the top-left window, 3 (not 6) in the top-right one, 10 (not 11, 14 or 15) in the
# bottom-right one.
# PyTorch uses the same rule, so gradients agree exactly, ties included.
#
# ## Max-pooling: backward routes the gradient
#
# $y_{u,v}$ depends on one input only, $x_{a_{u,v}}$, with slope 1. So
#
# $$ \frac{\partial L}{\partial x_{h,w}} = \sum_{(u,v):\ a_{u,v} = (h,w)}
#    \frac{\partial L}{\partial y_{u,v}} , $$
#
# every window hands its whole gradient to its winner, the losers get 0, and when windows
# overlap a pixel that wins several windows collects the sum.

# %%
dy = np.array([[10., 20.], [30., 40.]]).reshape(1, 1, 2, 2)
nn_pool = nn.MaxPool2d(2)
nn_pool(x)
dx = nn_pool.backward(dy)
print("dL/dx =\n", dx[0, 0])
print("reference kernel:", np.array_equal(dx, max_pool2d_backward_reference(dy, a, x.shape)),
      "| loop oracle:", np.array_equal(dx, max_pool2d_backward_naive(dy, a, x.shape)))

if torch is None:
    print("skipped: PyTorch is not installed")
else:
    tx = torch.from_numpy(x).requires_grad_(True)
    torch.nn.functional.max_pool2d(tx, 2).backward(torch.from_numpy(dy))
    print("PyTorch's dL/dx is the same:", np.array_equal(tx.grad.numpy(), dx))

# overlapping windows (3x3, stride 1): the 7 at (0, 1) is the first maximum of two windows
# and collects both gradients; the 7 at (1, 0) wins only the window that does not hold (0, 1)
over = nn.MaxPool2d(3, stride=1)
print("overlapping windows, y =\n", over(x)[0, 0])
dx_over = over.backward(np.ones((1, 1, 2, 2)))[0, 0]
print("dL/dx for dL/dy = 1 everywhere =\n", dx_over)
claim(dx_over[0, 1] == 2 and dx_over[1, 0] == 1,
      "the 7 at (0, 1) wins two windows, the 7 at (1, 0) one")

# %% [markdown]
# A tie is a kink: the maximum is not differentiable there, and finite differences straddle it.
# Nudging the losing 7 up by $\epsilon$ makes it the winner, nudging it down does not, so the
# central difference measures a slope of $1/2$ for *both* tied entries, while the analytic rule
# says 1 and 0. `gradcheck` reports exactly that for the {{n_tied}} tied entries of `x` (two
# 7s, two 3s, four 5s) — which is why gradient checks use random inputs (no ties) — and
# passes on the same layer away from ties:

# %%
from minidl.gradcheck import check_gradients

report = check_gradients(nn.MaxPool2d(2), x)
print(report)
print(minidl.gradcheck(nn.MaxPool2d(2), np.random.default_rng(0).standard_normal((2, 3, 6, 6))))
n_tied = sum(int((x[0, 0, 2*u:2*u+2, 2*v:2*v+2] == y[0, 0, u, v]).sum())
             for u in range(2) for v in range(2) if
             (x[0, 0, 2*u:2*u+2, 2*v:2*v+2] == y[0, 0, u, v]).sum() > 1)
claim(report.checks[0].n_bad == n_tied, "gradcheck flags exactly the tied entries")
record(n_tied=n_tied)

# %% [markdown]
# On a real image, with $2 \times 2$ windows: the pooled image is half the size, and the
# backward pass of a gradient of ones marks the winners — one pixel in every window (white),
# {{n_windows}} in all. In the flat background every window is a four-way tie, so its
# top-left pixel wins: the regular grid ({{n_flat}} of the windows are such ties). Average
# pooling, for comparison, spreads $1/4$ to every pixel of the window: the uniform grey.

# %%
img = data.x[0:1].astype(np.float64)
mp = nn.MaxPool2d(2)
pooled = mp(img)
winners = mp.backward(np.ones_like(pooled))
ap = nn.AvgPool2d(2)
spread = ap.backward(np.ones_like(ap(img)))
windows = img[0, 0].reshape(14, 2, 14, 2).transpose(0, 2, 1, 3).reshape(14, 14, 4)
flat = (windows == windows[..., :1]).all(axis=-1)            # four equal values
claim(winners.sum() == 14 * 14 and (winners[0, 0, ::2, ::2][flat] == 1).all(),
      "one winner per window; in a four-way tie the top-left pixel")
claim(np.all(spread == 0.25), "average pooling hands 1/4 to every pixel")
record(n_windows=14 * 14, n_flat=int(flat.sum()))

fig, axes = plt.subplots(1, 4, figsize=(10, 3.0), layout="constrained")
panels = [(img[0, 0], f"input 28x28 ({CLASSES[data.y[0]]})", "gray_r"),
          (pooled[0, 0], "max-pooled 14x14", "gray_r"),
          (winners[0, 0], "max-pool backward of ones:\nthe winners get 1", "gray"),
          (spread[0, 0], "avg-pool backward of ones:\n1/4 everywhere", "gray")]
for ax, (im, title, cmap) in zip(axes, panels):
    shown = ax.imshow(im, cmap=cmap, **({"vmin": 0, "vmax": 1} if "backward" in title else {}))
    ax.set_title(title, fontsize=9)
    ax.axis("off")
fig.colorbar(shown, ax=axes[2:], fraction=0.04, label="dL/dx (both on 0..1)")
fig.suptitle("Pooling forward, and the backward pass of a gradient of ones", fontsize=10)
plt.show()

# %% [markdown]
# ## Dropout: scaling in training, identity in evaluation
#
# While training, dropout draws a fresh mask $m_i \sim \mathrm{Bernoulli}(1-p)$ on every
# forward pass and computes
#
# $$ y = x \odot \frac{m}{1-p}, \qquad \frac{\partial L}{\partial x} =
#    \frac{\partial L}{\partial y} \odot \frac{m}{1-p} . $$
#
# Dividing by $1-p$ ("inverted dropout") keeps the expectation: $\mathbb{E}[y_i] =
# (1-p)\cdot\frac{x_i}{1-p} = x_i$. So in evaluation mode the layer is simply the identity —
# no rescaling of the weights after training. The backward pass uses the *same* mask as the
# forward pass.

# %%
drop = nn.Dropout(p=0.5)
v = np.ones((1, 12))
drop.train()
print("train:", drop(v)[0])
print("train:", drop(v)[0], "(a new mask every call)")
print("backward of ones uses the last mask:", drop.backward(np.ones((1, 12)))[0])
drop.eval()
print("eval :", drop(v)[0])

drop.train()
draws = np.stack([drop(img)[0, 0] for _ in range(400)])
print(f"mean of 400 training-mode outputs vs input: max |difference| "
      f"{np.abs(draws.mean(axis=0) - img[0, 0]).max():.3f} (shrinks like 1/sqrt(draws))")
print(f"fraction of zeros: {(draws == 0).mean():.3f} (p = 0.5)")

# %%
fig, axes = plt.subplots(1, 5, figsize=(10, 2.4))
limit = np.abs(draws[:3]).max()
panels = [(img[0, 0], "input"), (draws[0], "train: draw 1"), (draws[1], "train: draw 2"),
          (draws.mean(axis=0), "mean of 400 draws"), (drop.eval()(img)[0, 0], "eval: identity")]
for ax, (im, title) in zip(axes, panels):
    ax.imshow(im, cmap="RdBu_r", vmin=-limit, vmax=limit)
    ax.set_title(title, fontsize=9)
    ax.axis("off")
fig.suptitle("Dropout(p=0.5) on a normalised image: survivors are doubled, the mean is kept",
             fontsize=10)
plt.show()

# %% [markdown]
# ## Softmax cross-entropy, computed so it cannot overflow
#
# The last layer gives scores (logits) $z \in \mathbb{R}^C$; softmax turns them into
# probabilities and the loss is the negative log-probability of the true class $t$:
#
# $$ p_c = \frac{e^{z_c}}{\sum_k e^{z_k}}, \qquad L = -\log p_t . $$
#
# Computed literally, $e^{z}$ overflows for $z \gtrsim 710$ (float64) or $89$ (float32) and
# the loss becomes `nan`. Since softmax does not change when a constant is subtracted from
# every $z_c$, subtract the maximum $m = \max_c z_c$ first and take the log analytically:
#
# $$ \log p_c = (z_c - m) - \log \sum_k e^{z_k - m} . $$
#
# Now every exponent is $\le 0$, and the largest term of the sum is exactly 1.

# %%
z = np.array([[1000.0, 990.0, 1010.0]])
t = np.array([2])
with np.errstate(over="ignore", invalid="ignore"):
    naive_p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
print("naive softmax :", naive_p, "-> loss", -np.log(naive_p[0, 2]))
loss, p = cross_entropy_reference(z, t)
print("stable softmax:", p, "-> loss", loss)
print("nn.CrossEntropyLoss:", nn.CrossEntropyLoss()(z, t))

# %% [markdown]
# ## Its gradient: $p - y$
#
# With $\log p_t = z_t - \log\sum_k e^{z_k}$,
#
# $$ \frac{\partial L}{\partial z_c} = -[c = t] + \frac{e^{z_c}}{\sum_k e^{z_k}}
#    = p_c - y_c , $$
#
# where $y$ is the one-hot target; for a mean over a batch of $N$ each row is divided by $N$.
# The gradient pushes the true class's score up by $1 - p_t$ and every other score down by
# its probability; it is never larger than 1 in size, however wrong the scores. With label
# smoothing $\varepsilon$, $y$ becomes $(1-\varepsilon)\,\mathrm{onehot}(t) + \varepsilon/C$.

# %%
rng = np.random.default_rng(0)
logits = rng.standard_normal((4, 10)) * 3
targets = data.y[:4]
ce = nn.CrossEntropyLoss()
ce(logits, targets)
grad = ce.backward()
_, probs = cross_entropy_reference(logits, targets)
by_hand = (probs - np.eye(10)[targets]) / 4
print("p - y (divided by N) vs backward():", np.abs(grad - by_hand).max())
print("gradcheck:", minidl.gradcheck(ce, logits, targets),
      "| with label smoothing:", minidl.gradcheck(nn.CrossEntropyLoss(label_smoothing=0.1),
                                                   logits, targets))
if torch is not None:
    tz = torch.from_numpy(logits).requires_grad_(True)
    tl = torch.nn.functional.cross_entropy(tz, torch.from_numpy(targets))
    tl.backward()
    print("vs PyTorch: loss", abs(tl.item() - ce(logits, targets)),
          "gradient", np.abs(tz.grad.numpy() - ce.backward()).max())

# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
margin = np.linspace(-8, 8, 200)              # z_t minus the other (equal) logits, 10 classes
zz = np.zeros((len(margin), 10))
zz[:, 0] = margin
loss_curve = [cross_entropy_reference(row[None], np.array([0]))[0] for row in zz]
p_true = cross_entropy_reference(zz, np.zeros(len(zz), dtype=np.int64))[1][:, 0]
axes[0].plot(margin, loss_curve, label="loss $-\\log p_t$")
axes[0].plot(margin, p_true - 1, label="gradient $\\partial L/\\partial z_t = p_t - 1$")
axes[0].axhline(0, color="gray", lw=0.5)
axes[0].set_xlabel("score of the true class minus the other 9 scores")
axes[0].set_ylabel("loss, or its gradient")
axes[0].legend(fontsize=8)
axes[0].set_title("One sample, 10 classes", fontsize=10)
k = np.arange(10)
axes[1].bar(k - 0.2, probs[0], width=0.4, label="softmax p")
axes[1].bar(k + 0.2, grad[0] * 4, width=0.4, label="gradient p - y")
axes[1].set_xticks(k, [c.split("/")[0] for c in CLASSES], rotation=45, fontsize=7)
axes[1].set_xlabel("class")
axes[1].set_ylabel("probability, or gradient")
axes[1].legend(fontsize=8)
axes[1].set_title(f"Random scores, true class {CLASSES[targets[0]]}: p and p - y", fontsize=10)
fig.suptitle("Softmax cross-entropy and its gradient p - y", fontsize=11)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Dropout at work: a small experiment
#
# Train the same MLP twice on a subset of Fashion-MNIST, without dropout and with
# `Dropout(0.5)` after each hidden layer, and compare training and validation losses. The
# training loss is measured with dropout active, so with dropout it is *higher*; what matters
# is the gap between the dashed (training) and solid (validation) line of each colour.

# %%
train, val = train_val_split(data, val_size=0.25, seed=0)

def mlp(p):
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Dropout(p),
                         nn.Linear(256, 256), nn.ReLU(), nn.Dropout(p), nn.Linear(256, 10))

print(minidl.summary(mlp(0.5), (64, 1, 28, 28)))
histories = {}
for p_drop in (0.0, 0.5):
    model = mlp(p_drop)
    histories[p_drop] = fit(model, nn.CrossEntropyLoss(), optim.Adam(model.parameters(), lr=1e-3),
                            train, val, epochs=EPOCHS, batch_size=64, seed=0, progress=False)
    last = histories[p_drop].epochs[-1]
    print(f"p={p_drop}: train loss {last['train_loss']:.3f}, val loss {last['val_loss']:.3f}, "
          f"val accuracy {last['val_accuracy']:.3f}")
gap = {p: h.epochs[-1]["val_loss"] - h.epochs[-1]["train_loss"] for p, h in histories.items()}
val0 = [r["val_loss"] for r in histories[0.0].epochs]
claim(gap[0.0] > gap[0.5], "the gap between validation and training loss is larger "
      "without dropout")
record(gap0=gap[0.0], gap5=gap[0.5], best0=int(np.argmin(val0)) + 1, epochs=EPOCHS,
       train0=histories[0.0].epochs[-1]["train_loss"], first_train0=histories[0.0].epochs[0]["train_loss"])

# %%
fig, ax = plt.subplots(figsize=(7, 3.4))
for p_drop, color in ((0.0, "tab:red"), (0.5, "tab:blue")):
    ep = [r["epoch"] for r in histories[p_drop].epochs]
    ax.plot(ep, [r["train_loss"] for r in histories[p_drop].epochs], "--", color=color,
            label=f"train, dropout p={p_drop}")
    ax.plot(ep, [r["val_loss"] for r in histories[p_drop].epochs], "-", color=color,
            label=f"validation, dropout p={p_drop}")
ax.set_xlabel("epoch")
ax.set_ylabel("cross-entropy")
ax.legend(fontsize=8)
ax.set_title(f"MLP 784-256-256-10 on {len(train)} Fashion-MNIST images", fontsize=10)
plt.show()

# %% [markdown]
# At the last epoch the validation loss minus the training loss is {{gap0:+.3f}} without
# dropout and {{gap5:+.3f}} with it. Without dropout the training loss falls
# from {{first_train0:.3f}} to {{train0:.3f}}, while the validation loss was lowest at
# epoch {{best0}} of {{epochs}}: a network that improves on its training images more than on
# new ones is memorising them. Dropout keeps the two lines closer together: it makes the
# network's training harder in a way that does not carry over to images it has not seen.

# %% [markdown]
# **Try it:** pool with `nn.MaxPool2d(3, stride=2)` and count the windows each pixel wins;
# set `p=0.9` and look at the dropout draws; feed `z * 100` to the naive softmax.

# %% [markdown]
# ## Exercises
#
# Fill in each function, run its cell, and read what the check says: it runs your function
# beside minidl's own implementation and names what differs. (Worked solutions are in
# `docs/tutorials/solutions/ex03.py`; try first.)
#
# **1. Max-pool backward.** `idx` holds, for every output of a max pooling, the flat
# position $h W + w$ of its winner in the input (per image and channel). Return
# $\partial L/\partial x$ of shape `input_shape` for the output gradient `dout`; the
# check uses overlapping windows.

# %%
from tutorial.ex03 import check_max_pool_backward, check_dropout_forward, check_cross_entropy


def max_pool_backward(dout, idx, input_shape):
    raise NotImplementedError          # your code here


check_max_pool_backward(max_pool_backward)

# %% [markdown]
# **2. Inverted dropout.** Given the 0/1 `mask` of the kept entries and the drop
# probability `p`, return the training-mode output.

# %%
def dropout_forward(x, mask, p):
    raise NotImplementedError          # your code here


check_dropout_forward(dropout_forward)

# %% [markdown]
# **3. The stable loss and its gradient.** Return `(loss, dlogits)`: the mean softmax
# cross-entropy of `logits` $(N, C)$ for integer `targets`, and its gradient. The check
# feeds scores near 1000.

# %%
def cross_entropy(logits, targets):
    raise NotImplementedError          # your code here


check_cross_entropy(cross_entropy)

# %% [markdown]
# Next: [4. Optimizers](04-optimizers.ipynb).
