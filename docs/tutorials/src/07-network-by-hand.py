"""Tutorial 7: a network by hand (source of docs/tutorials/07-network-by-hand.ipynb; see build.py)."""
# %% [markdown]
# # 7. A network by hand: Linear → ReLU → Linear → softmax cross-entropy
#
# Notebook 1 took one layer apart. A network is layers in a chain, and its backward pass is
# the chain rule applied layer after layer, in reverse. Here we write a two-layer network
# out completely in NumPy — forward, loss, and every gradient, ReLU's included — check each
# gradient against minidl's layers and against finite differences of the *whole* network,
# and then train it on Fashion-MNIST with nothing but these hand-written lines.
#
# $$ x \xrightarrow{\;W_1, b_1\;} z_1 \xrightarrow{\;\mathrm{ReLU}\;} a_1
#    \xrightarrow{\;W_2, b_2\;} z_2 \xrightarrow{\;\mathrm{softmax\ CE}\;} L $$

# %%
import os, time
SMALL = os.environ.get("MINIDL_TUTORIAL_SMALL", "") not in ("", "0")   # the test suite sets it
%matplotlib inline

import numpy as np
import matplotlib.pyplot as plt

import minidl
from minidl import nn
from minidl.data import (load_fashion_mnist, prepare, train_val_split, iterate_batches,
                         FASHION_MNIST_MEAN, FASHION_MNIST_STD)
from tutorial import record, claim        # docs/tutorials/tutorial: stated values, checks

CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
           "Sneaker", "Bag", "Ankle boot")
N_TRAIN = 3000 if SMALL else 60000
EPOCHS = 2 if SMALL else 5
HIDDEN = 128
minidl.manual_seed(0)

raw = load_fashion_mnist(download=False)
data = prepare(raw.train_images[:N_TRAIN], raw.train_labels[:N_TRAIN],
               FASHION_MNIST_MEAN, FASHION_MNIST_STD)
train, val = train_val_split(data, val_size=0.2, seed=0)
print("small data" if SMALL else "full run", "|", len(train), "training and", len(val),
      "validation images")

# %% [markdown]
# ## Forward, line by line
#
# For a batch $X$ of $N$ flattened images ($N \times 784$) and labels $t$:
#
# $$ z_1 = X W_1^T + b_1, \qquad a_1 = \max(z_1, 0), \qquad z_2 = a_1 W_2^T + b_2, $$
#
# $$ p = \mathrm{softmax}(z_2), \qquad L = -\frac1N \sum_n \log p_{n, t_n} . $$
#
# Each step keeps what its backward will need: $X$ for $W_1$'s gradient, $z_1$ (or the
# mask $z_1 > 0$) for ReLU's, $a_1$ for $W_2$'s, and $p$ for the loss's. We start from the
# weights of a minidl network, so the two can be compared number for number.

# %%
model = nn.Sequential(nn.Flatten(), nn.Linear(784, HIDDEN), nn.ReLU(),
                      nn.Linear(HIDDEN, 10)).double()
W1, b1 = model[1].weight.data.copy(), model[1].bias.data.copy()
W2, b2 = model[3].weight.data.copy(), model[3].bias.data.copy()


def forward(X, t, W1, b1, W2, b2):
    """The loss and everything the backward pass needs."""
    z1 = X @ W1.T + b1
    a1 = np.maximum(z1, 0)
    z2 = a1 @ W2.T + b2
    shifted = z2 - z2.max(axis=1, keepdims=True)          # notebook 3: no overflow
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    loss = -log_p[np.arange(len(t)), t].mean()
    return loss, (X, z1, a1, np.exp(log_p), t)


xb, tb = train.x[:32].astype(np.float64), train.y[:32]
X = xb.reshape(len(xb), -1)
loss, cache = forward(X, tb, W1, b1, W2, b2)
loss_fn = nn.CrossEntropyLoss()
loss_minidl = loss_fn(model(xb), tb)
print(f"loss by hand {loss:.12f}, with minidl's layers {loss_minidl:.12f}")
claim(abs(loss - loss_minidl) < 1e-12, "the hand-written forward pass gives minidl's loss")

# %% [markdown]
# ## Backward, in reverse order
#
# Start at the loss and walk back; every line is one use of the chain rule, and every
# gradient has the shape of the thing it is the gradient of.
#
# 1. **Loss → scores** (notebook 3): $\dfrac{\partial L}{\partial z_2} = \dfrac{p - Y}{N}$,
#    with $Y$ the one-hot labels.
# 2. **Second Linear** (notebook 1): $\dfrac{\partial L}{\partial W_2} =
#    \Big(\dfrac{\partial L}{\partial z_2}\Big)^T a_1$, $\dfrac{\partial L}{\partial b_2} =
#    \sum_n \dfrac{\partial L}{\partial z_{2,n}}$, and what it sends back,
#    $\dfrac{\partial L}{\partial a_1} = \dfrac{\partial L}{\partial z_2} W_2$.
# 3. **ReLU**: $a_1 = \max(z_1, 0)$ element by element, so
#    $\dfrac{\partial a_{1}}{\partial z_{1}}$ is 1 where $z_1 > 0$ and 0 elsewhere (at
#    exactly 0 minidl and PyTorch take 0): the gradient **passes where the unit was
#    active and stops where it was not**,
#    $\dfrac{\partial L}{\partial z_1} = \dfrac{\partial L}{\partial a_1} \odot [z_1 > 0]$.
#    ReLU has no parameters; its backward is a mask.
# 4. **First Linear**: $\dfrac{\partial L}{\partial W_1} =
#    \Big(\dfrac{\partial L}{\partial z_1}\Big)^T X$, $\dfrac{\partial L}{\partial b_1} =
#    \sum_n \dfrac{\partial L}{\partial z_{1,n}}$ (and $\dfrac{\partial L}{\partial X} =
#    \dfrac{\partial L}{\partial z_1} W_1$, which nobody needs here).

# %%
def backward(cache, W1, W2):
    """dL/dW1, dL/db1, dL/dW2, dL/db2 from forward's cache."""
    X, z1, a1, p, t = cache
    n = len(t)
    dz2 = p.copy()
    dz2[np.arange(n), t] -= 1
    dz2 /= n                                  # 1. loss -> scores
    dW2, db2 = dz2.T @ a1, dz2.sum(axis=0)    # 2. second Linear ...
    da1 = dz2 @ W2                            #    ... and what it sends back
    dz1 = da1 * (z1 > 0)                      # 3. ReLU: pass where active, stop elsewhere
    dW1, db1 = dz1.T @ X, dz1.sum(axis=0)     # 4. first Linear
    return dW1, db1, dW2, db2


grads = backward(cache, W1, W2)
model.zero_grad()
model.backward(loss_fn.backward())            # minidl: Sequential.backward
minidl_grads = (model[1].weight.grad, model[1].bias.grad, model[3].weight.grad,
                model[3].bias.grad)
for name, mine, theirs in zip(("dW1", "db1", "dW2", "db2"), grads, minidl_grads):
    print(f"{name} {str(mine.shape):11s} hand vs minidl: max |difference| "
          f"{np.abs(mine - theirs).max():.1e}")
claim(max(np.abs(m - o).max() for m, o in zip(grads, minidl_grads)) < 1e-12,
      "every hand-written gradient equals minidl's to 1e-12")
active = (cache[1] > 0).mean()
record(active=active)

# %% [markdown]
# ReLU's mask decides how much of the gradient reaches the first layer: in this batch
# {{active:.0%}} of the hidden units' values are positive, so the other entries of
# $\partial L/\partial z_1$ are exactly zero. A unit that is negative for *every* image
# never gets a gradient again (a "dead" unit); the picture shows the pre-activations $z_1$
# and where the mask cuts.

# %%
z1 = cache[1]
fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
axes[0].hist(z1.ravel(), bins=60, color="0.6")
axes[0].axvline(0, color="C3", lw=1.5, label="ReLU cuts here")
axes[0].set_xlabel("pre-activation $z_1$")
axes[0].set_ylabel("count (32 images x 128 units)")
axes[0].set_title("Hidden pre-activations of one batch")
axes[0].legend(fontsize=8)
mask = (z1 > 0).astype(float)
axes[1].imshow(mask.T, aspect="auto", cmap="gray_r", interpolation="nearest")
axes[1].set_xlabel("image in the batch")
axes[1].set_ylabel("hidden unit")
axes[1].set_title("The mask $[z_1 > 0]$ (black: the gradient passes)")
fig.suptitle("ReLU's backward is a mask: where the unit was active")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Chained as `Sequential.backward` does
#
# Our `backward` is one function for this one network. minidl makes it general: every
# layer has its own `backward(dout)` that takes the gradient of its *output*, accumulates
# the gradients of its parameters, and returns the gradient of its *input*; each layer
# kept what it needs from its own forward pass. `Sequential.backward` then only has to
# hand the gradient from layer to layer in reverse order:

# %%
import inspect
print(inspect.getsource(nn.Sequential.backward))

model.zero_grad()
model(xb)
dout = loss_fn.backward()
for layer in reversed(list(model)):            # what Sequential.backward does
    dout = layer.backward(dout)
    print(f"after {type(layer).__name__:8s} the gradient has shape {dout.shape}")
claim(all(np.array_equal(p.grad, g) for p, g in
          zip([model[1].weight, model[1].bias, model[3].weight, model[3].bias], minidl_grads)),
      "walking the layers in reverse gives the same gradients as Sequential.backward")

# %% [markdown]
# ## A gradient check of the whole network
#
# Both versions could share a mistake. Finite differences of the *loss* against single
# entries of every parameter test the whole chain at once, loss included:
# $\partial L/\partial\theta \approx (L(\theta + \epsilon) - L(\theta - \epsilon))/2\epsilon$.
# We nudge {{n_checked}} random entries of each of the four arrays (every entry would take
# two forward passes each: {{n_params:,}} parameters), and they agree to $10^{-8}$ (the
# rounding of the loss divided by $\epsilon$). We check on a batch where no
# pre-activation lies within $10^{-4}$ of ReLU's kink, so the $\pm\epsilon$ nudges never
# cross it (notebook 3 shows what happens when they do).

# %%
EPS = 1e-6
for first in range(0, len(train) - 32, 32):       # the first batch clear of the kink
    X_check, t_check = train.x[first:first + 32].reshape(32, -1).astype(np.float64), \
        train.y[first:first + 32]
    if np.abs(X_check @ W1.T + b1).min() > 1e-4:
        break
print(f"checking on images {first}..{first + 31}")
params = [W1, b1, W2, b2]
check_grads = backward(forward(X_check, t_check, *params)[1], W1, W2)
rng = np.random.default_rng(0)
worst = 0.0
for name, array, grad in zip(("W1", "b1", "W2", "b2"), params, check_grads):
    picks = rng.choice(array.size, size=min(20, array.size), replace=False)
    numeric = []
    for flat in picks:
        old = array.flat[flat]
        array.flat[flat] = old + EPS
        up = forward(X_check, t_check, *params)[0]
        array.flat[flat] = old - EPS
        down = forward(X_check, t_check, *params)[0]
        array.flat[flat] = old
        numeric.append((up - down) / (2 * EPS))
    error = np.abs(np.array(numeric) - grad.flat[picks])
    worst = max(worst, error.max())
    print(f"{name}: 20 entries, largest |backward - finite difference| {error.max():.1e} "
          f"(the gradients themselves are up to {np.abs(grad.flat[picks]).max():.1e})")
claim(np.abs(X_check @ W1.T + b1).min() > 1e-4, "no pre-activation lies at ReLU's kink")
claim(worst < 1e-8, "finite differences of the whole network agree with the backward pass "
      "to 1e-8")
record(n_checked=20, n_params=sum(p.size for p in params))
print("minidl.gradcheck of a small network of the same shape:",
      minidl.gradcheck(nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3)),
                       rng.standard_normal((4, 6))))

# %% [markdown]
# ## Training it by hand
#
# Now the loop of every training, with our own functions only: for each mini-batch,
# forward, backward, and an SGD step $\theta \leftarrow \theta - \eta\,\partial L/\partial
# \theta$ on the four arrays (in float32, as a training would run). The network starts
# from the same random weights as above.

# %%
LR, BATCH = 0.1, 64
weights = [p.astype(np.float32) for p in (W1, b1, W2, b2)]
val_X = val.x.reshape(len(val), -1)
history = []
batch_rng = np.random.default_rng(0)
start = time.perf_counter()
for epoch in range(1, EPOCHS + 1):
    losses = []
    for xb_, tb_ in iterate_batches(train, BATCH, rng=batch_rng):
        loss, cache = forward(xb_.reshape(len(xb_), -1), tb_, *weights)
        for w, g in zip(weights, backward(cache, weights[0], weights[2])):
            w -= LR * g                                   # SGD, in place
        losses.append(loss)
    z = np.maximum(val_X @ weights[0].T + weights[1], 0) @ weights[2].T + weights[3]
    accuracy = (z.argmax(axis=1) == val.y).mean()
    history.append((epoch, np.mean(losses), accuracy))
    print(f"epoch {epoch}: training loss {np.mean(losses):.4f}, validation accuracy "
          f"{accuracy:.4f}")
seconds = time.perf_counter() - start
claim(history[-1][2] > 0.70, "the hand-trained network classifies more than 70% of the "
      "validation images correctly")
claim(history[-1][1] < history[0][1], "the training loss fell")
record(accuracy=history[-1][2], epochs=EPOCHS, n_train=len(train), seconds=seconds)

# %%
fig, ax = plt.subplots(figsize=(7, 3.6))
epochs_axis = [h[0] for h in history]
ax.plot(epochs_axis, [h[1] for h in history], "o-", color="C0", label="training loss")
ax.set_xlabel("epoch")
ax.set_ylabel("cross-entropy (mean over the epoch)", color="C0")
bx = ax.twinx()
bx.plot(epochs_axis, [h[2] for h in history], "s--", color="C1", label="validation accuracy")
bx.set_ylabel("validation accuracy", color="C1")
fig.suptitle(f"The hand-written network on {len(train)} Fashion-MNIST images")
fig.legend(loc="center right", fontsize=8)
fig.tight_layout()
plt.show()

# %% [markdown]
# After {{epochs}} epoch(s) on {{n_train:,}} images the network written by hand
# classifies **{{accuracy:.1%}}** of the validation images correctly, in {{seconds:.0f}} s
# of NumPy on this machine. Compare it with the single layer of notebook 1: the hidden
# layer, with its ReLU, is what lets the network combine pixels non-linearly.

# %% [markdown]
# ## Exercises
#
# Fill in each function, run its cell, and read what the check says: it runs your function
# beside minidl's own layers and names what differs. (Worked solutions are in
# `docs/tutorials/solutions/ex07.py`; try first.)
#
# **1. ReLU's backward.** Given the forward input `z` and `dout` $= \partial L/\partial a$
# for $a = \max(z, 0)$, return $\partial L/\partial z$.

# %%
from tutorial.ex07 import (check_relu_backward, check_cross_entropy_backward,
                           check_sequential_backward)


def relu_backward(z, dout):
    raise NotImplementedError          # your code here


check_relu_backward(relu_backward)

# %% [markdown]
# **2. The loss's backward.** Return $\partial L/\partial z_2$ for the mean softmax
# cross-entropy of `logits` (shape $N \times C$) and integer `targets`.

# %%
def cross_entropy_backward(logits, targets):
    raise NotImplementedError          # your code here


check_cross_entropy_backward(cross_entropy_backward)

# %% [markdown]
# **3. A chain's backward.** `layers` is a list of minidl layers that have just run
# forward; call their `backward` methods so that every parameter gets its gradient, and
# return $\partial L/\partial x$ for the chain's input.

# %%
def sequential_backward(layers, dout):
    raise NotImplementedError          # your code here


check_sequential_backward(sequential_backward)

# %% [markdown]
# Next: [8. Batch normalization](08-batch-normalization.ipynb).
