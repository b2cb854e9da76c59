"""Tutorial 10: gradient-based tuning (source of docs/tutorials/10-gradient-based-tuning.ipynb)."""
# %% [markdown]
# # 10. Gradient-based tuning: hypergradients and DARTS
#
# Notebook 5 tuned hyperparameters as a black box: train, look at the error, try again.
# Some hyperparameters can instead be tuned *by gradient descent*, during a single
# training run, because the loss depends on them in a way we can differentiate:
#
# * the **learning rate**: the loss after a step depends on the rate that made the step
#   (the *hypergradient*, Baydin et al. 2018; `optim.SGDHD`, `optim.AdamHD`);
# * the **architecture**: DARTS (Liu et al. 2019) runs every candidate operation at once,
#   mixes their outputs with softmax weights, and learns the weights
#   (`minidl.nn.darts.MixedOp`, `tuning.darts`).

# %%
import os, time
SMALL = os.environ.get("MINIDL_TUTORIAL_SMALL", "") not in ("", "0")   # the test suite sets it
%matplotlib inline

import warnings

import numpy as np
import matplotlib.pyplot as plt
warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm, imported by Optuna

import minidl
from minidl import nn, optim
from minidl.data import (load_fashion_mnist, prepare, train_val_split, iterate_batches,
                         FASHION_MNIST_MEAN, FASHION_MNIST_STD)
from minidl.nn import Parameter
from minidl.nn.darts import MixedOp, softmax
from tutorial import record, claim        # docs/tutorials/tutorial: stated values, checks

N_TRAIN = 2000 if SMALL else 12000
raw = load_fashion_mnist(download=False)
data = prepare(raw.train_images[:N_TRAIN], raw.train_labels[:N_TRAIN],
               FASHION_MNIST_MEAN, FASHION_MNIST_STD)
train, val = train_val_split(data, val_size=0.25, seed=0)
print("small data" if SMALL else "full run", "|", len(train), "training and", len(val),
      "validation images")

# %% [markdown]
# ## The hypergradient, derived
#
# A step of gradient descent with rate $\alpha$ moves the parameters along a direction
# $u_{t-1}$ (the gradient, for plain SGD):
#
# $$ \theta_{t-1} = \theta_{t-2} - \alpha\, u_{t-1} . $$
#
# The loss at the new point, $f(\theta_{t-1})$, depends on $\alpha$ through
# $\theta_{t-1}$, so by the chain rule
#
# $$ \frac{\partial f(\theta_{t-1})}{\partial \alpha}
#    = \nabla f(\theta_{t-1}) \cdot \frac{\partial \theta_{t-1}}{\partial \alpha}
#    = -\, g_t \cdot u_{t-1}, $$
#
# where $g_t = \nabla f(\theta_{t-1})$ is the very gradient the next step computes anyway.
# One gradient step on $\alpha$, with its own rate $\beta$, gives the update of SGD-HD:
#
# $$ \alpha_t = \alpha_{t-1} + \beta\, g_t \cdot u_{t-1}, \qquad
#    \theta_t = \theta_{t-1} - \alpha_t\, g_t . $$
#
# If the new gradient still points along the last step ($g_t \cdot u_{t-1} > 0$) the
# step was too short and $\alpha$ grows; if it points back (an overshoot) $\alpha$
# shrinks. It costs one dot product and one stored vector. First, the derivative against
# finite differences in $\alpha$, on a real loss: the lab MLP's cross-entropy on one batch.

# %%
from tuning.models import build_lab_nnet

minidl.manual_seed(0)
net = build_lab_nnet(784, 64, 0.0).double()
xb, yb = train.x[:128].astype(np.float64), train.y[:128]
loss_fn = nn.CrossEntropyLoss()
params = list(net.parameters())


def loss_and_grad():
    net.zero_grad()
    loss = loss_fn(net(xb), yb)
    net.backward(loss_fn.backward())
    return loss, [p.grad.copy() for p in params]


start = [p.data.copy() for p in params]
_, u = loss_and_grad()                        # u_{t-1}: the gradient at theta_{t-2}


def loss_after_step(alpha):
    for p, s, d in zip(params, start, u):
        p.data[...] = s - alpha * d
    return loss_and_grad()


ALPHA, EPS = 0.05, 1e-5
_, g = loss_after_step(ALPHA)
hypergradient = -sum(float((gi * ui).sum()) for gi, ui in zip(g, u))
numeric = (loss_after_step(ALPHA + EPS)[0] - loss_after_step(ALPHA - EPS)[0]) / (2 * EPS)
print(f"-g_t . u_(t-1) = {hypergradient:.8f}; finite difference in alpha: {numeric:.8f}")
claim(abs(hypergradient - numeric) < 1e-6 * max(1.0, abs(numeric)),
      "the hypergradient equals the derivative of the loss in the learning rate")

# %% [markdown]
# ## SGD-HD in three lines, against `optim.SGDHD`
#
# The update above, written out, and minidl's optimizer from the same start for a few
# steps (with $u_0 = 0$, so the first step uses the initial rate):

# %%
def sgd_hd(theta, grad_fn, lr, beta, steps):
    u = np.zeros_like(theta)
    rates = []
    for _ in range(steps):
        g = grad_fn(theta)
        lr = lr + beta * float(g @ u)          # the hypergradient step on the rate
        theta = theta - lr * g                 # the ordinary step with the new rate
        u = g
        rates.append(lr)
    return theta, rates


A = np.diag([1.0, 10.0])
grad_fn = lambda th: A @ th                    # f = th^T A th / 2
theta_hand, rates_hand = sgd_hd(np.array([1.0, 1.0]), grad_fn, 0.01, 3e-4, 20)
p = Parameter(np.array([1.0, 1.0]))
opt = optim.SGDHD([p], lr=0.01, hypergrad_lr=3e-4)
rates_minidl = []
for _ in range(20):
    p.grad = grad_fn(p.data)
    opt.step()
    rates_minidl.append(opt.param_groups[0]["lr"])
print("largest difference in the rates:", np.abs(np.array(rates_hand) - rates_minidl).max(),
      "| in theta:", np.abs(theta_hand - p.data).max())
claim(np.abs(np.array(rates_hand) - rates_minidl).max() < 1e-12,
      "the three lines give optim.SGDHD's rates")

# %% [markdown]
# ## Learning-rate trajectories on Fashion-MNIST
#
# The question a hypergradient answers is "which rate?", so start the same network from
# rates a hundred times apart and watch where each goes. SGD-HD with
# $\beta = {{beta_sgd:g}}$ on the lab MLP, one pass over {{n_train:,}} images in batches
# of 64, from initial rates {{starts}}:

# %%
def lr_trajectory(make_optimizer, seed=0):
    minidl.manual_seed(seed)
    model = build_lab_nnet(784, 128, 0.0)
    opt = make_optimizer(list(model.parameters()))
    rates, losses = [], []
    for xb_, yb_ in iterate_batches(train, 64, rng=np.random.default_rng(seed)):
        opt.zero_grad()
        losses.append(loss_fn(model(xb_), yb_))
        model.backward(loss_fn.backward())
        opt.step()
        rates.append(opt.param_groups[0]["lr"])
    return np.array(rates), np.array(losses)


STARTS = (1e-3, 1e-2, 1e-1)
BETA_SGD, BETA_ADAM = 1e-3, 1e-7
sgd_runs = {lr0: lr_trajectory(lambda p, lr0=lr0: optim.SGDHD(p, lr=lr0, hypergrad_lr=BETA_SGD))
            for lr0 in STARTS}
adam_runs = {lr0: lr_trajectory(lambda p, lr0=lr0: optim.AdamHD(p, lr=lr0 / 10,
                                                                 hypergrad_lr=BETA_ADAM))
             for lr0 in STARTS}
for name, runs in (("SGD-HD", sgd_runs), ("Adam-HD", adam_runs)):
    for lr0, (rates, losses) in runs.items():
        print(f"{name:7s} start {rates[0]:.1e} -> end {rates[-1]:.2e}; last 20 batches' loss "
              f"{losses[-20:].mean():.3f}")
spread_start = max(STARTS) / min(STARTS)
sgd_ends = [runs[0][-1] for runs in sgd_runs.values()]
spread_end = max(sgd_ends) / min(sgd_ends)
claim(spread_end < spread_start, "SGD-HD's rates end closer together than they started")
claim(sgd_runs[min(STARTS)][0][-1] > min(STARTS) and sgd_runs[max(STARTS)][0][-1] < max(STARTS),
      "the smallest start rose and the largest fell")
record(beta_sgd=BETA_SGD, n_train=len(train),
       starts=", ".join(f"{s:g}" for s in STARTS), spread_end=spread_end,
       sgd_end_lo=min(sgd_ends), sgd_end_hi=max(sgd_ends), beta_adam=BETA_ADAM)

# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=False)
looks = [dict(ls="-"), dict(ls="--"), dict(ls=":")]
for ax, (name, runs) in zip(axes, (("SGD-HD", sgd_runs), ("Adam-HD", adam_runs))):
    for (lr0, (rates, _)), look in zip(runs.items(), looks):
        ax.plot(np.arange(1, len(rates) + 1), rates, label=f"start {rates[0]:.0e}", **look)
    ax.set_yscale("log")
    ax.set_xlabel("mini-batch")
    ax.set_ylabel("learning rate (log scale)")
    ax.set_title(name)
    ax.legend(fontsize=8)
fig.suptitle("The learning rate each hypergradient run chose, from three starting rates")
fig.tight_layout()
plt.show()

# %% [markdown]
# The three SGD-HD runs started a factor of 100 apart and end between
# {{sgd_end_lo:.3g}} and {{sgd_end_hi:.3g}}, a factor of {{spread_end:.1f}}: the
# smallest rate rose and the largest fell, towards the range this loss tolerates. The hypergradient is not free of
# hyperparameters, though: $\beta$ (here {{beta_sgd:g}} for SGD, {{beta_adam:g}} for
# Adam, whose directions are normalised and much longer) sets how fast the rate can move,
# and notebook 4 shows a $\beta$ too large making the rate explode. With mini-batches
# $g_t \cdot u_{t-1}$ is also noisy: successive gradients come from different images.
#
# ## DARTS: the architecture as a parameter
#
# Which convolution should the first layer use, $3\times3$, $5\times5$ or $7\times7$?
# DARTS keeps all three and mixes them:
#
# $$ y = \sum_k w_k\, o_k(x), \qquad w = \mathrm{softmax}(\alpha), $$
#
# with one architecture parameter $\alpha_k$ per candidate. The loss is now differentiable
# in $\alpha$. With $G = \partial L/\partial y$ and $g_k = \langle G, o_k(x)\rangle$ (the sum
# over every element), the softmax's Jacobian $\partial w_k/\partial \alpha_j =
# w_k(\delta_{kj} - w_j)$ gives
#
# $$ \frac{\partial L}{\partial \alpha_j} = \sum_k g_k\, w_k (\delta_{kj} - w_j)
#    = w_j \Big(g_j - \sum_k w_k g_k\Big) . $$
#
# Candidate $j$'s weight grows (its $\alpha_j$ gradient is negative) when its output lowers
# the loss more than the current mixture does. `MixedOp` computes exactly this in its
# backward pass; here it is by hand, and against finite differences in $\alpha$:

# %%
minidl.manual_seed(0)
mixed = MixedOp([nn.Conv2d(1, 4, k, padding=k // 2) for k in (3, 5, 7)]).double()
mixed.alpha.data[...] = [0.2, -0.1, 0.4]
x_small = train.x[:8].astype(np.float64)
y = mixed(x_small)
G = np.random.default_rng(0).standard_normal(y.shape)
mixed.zero_grad()
mixed.backward(G)
outs = [op(x_small) for op in mixed.ops]
w_mix = softmax(mixed.alpha.data)
g_k = np.array([(G * o).sum() for o in outs])
by_hand = w_mix * (g_k - (w_mix * g_k).sum())


def mixed_loss(alpha):
    w_ = softmax(alpha)
    return float((G * sum(wk * o for wk, o in zip(w_, outs))).sum())


numeric = np.array([(mixed_loss(mixed.alpha.data + e) - mixed_loss(mixed.alpha.data - e)) / 2e-6
                    for e in np.eye(3) * 1e-6])
print("dL/dalpha by hand :", by_hand)
print("MixedOp.backward  :", mixed.alpha.grad)
print("finite differences:", numeric)
claim(np.abs(by_hand - mixed.alpha.grad).max() < 1e-10 and
      np.abs(numeric - by_hand).max() < 1e-5 * max(1.0, np.abs(by_hand).max()),
      "the alpha gradient by hand equals MixedOp's and finite differences")
claim(abs(by_hand.sum()) < 1e-9, "the alpha gradient sums to zero (adding a constant to "
      "every alpha changes nothing)")

# %% [markdown]
# The gradient sums to zero: adding the same constant to every $\alpha_j$ leaves the
# softmax unchanged.
#
# ## A small search
#
# A supernet: a `MixedOp` over the three convolutions (8 filters each), ReLU, max-pooling,
# and a linear classifier. The search alternates, as `tuning.darts.search` does: a
# **validation** batch moves $\alpha$ (Adam, the paper's betas $(0.5, 0.999)$), then a
# **training** batch moves the weights (SGD with momentum), each with the other held
# fixed — the first-order DARTS approximation. Choosing $\alpha$ on validation data is
# what makes it a *hyperparameter* search: on training data every candidate could simply
# fit more. We record the softmax weights as they move.

# %%
minidl.manual_seed(0)
supernet = nn.Sequential(MixedOp([nn.Conv2d(1, 8, k, padding=k // 2) for k in (3, 5, 7)]),
                         nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8 * 14 * 14, 10))
alpha = supernet[0].alpha
weights = [p for p in supernet.parameters() if p is not alpha]
arch_opt = optim.Adam([alpha], lr=0.03, betas=(0.5, 0.999))
weight_opt = optim.SGD(weights, lr=0.05, momentum=0.9)
EPOCHS = 1 if SMALL else 2
val_rng, train_rng = np.random.default_rng(1), np.random.default_rng(0)


def val_batches():
    while True:
        yield from iterate_batches(val, 64, rng=val_rng)


val_stream = val_batches()
trajectory = [softmax(alpha.data.astype(np.float64))]
start = time.perf_counter()
for epoch in range(EPOCHS):
    for xt, yt in iterate_batches(train, 64, rng=train_rng):
        xv, yv = next(val_stream)
        for opt, (xb_, yb_) in ((arch_opt, (xv, yv)), (weight_opt, (xt, yt))):
            supernet.zero_grad()
            loss = loss_fn(supernet(xb_), yb_)
            supernet.backward(loss_fn.backward())
            opt.step()
        trajectory.append(softmax(alpha.data.astype(np.float64)))
trajectory = np.array(trajectory)
search_seconds = time.perf_counter() - start
from minidl.train import evaluate
accuracy = evaluate(supernet, val)["accuracy"]
order = np.argsort(trajectory[-1])[::-1]
kernels = [3, 5, 7]
print(f"{len(trajectory) - 1} steps in {search_seconds:.0f} s; final weights "
      + ", ".join(f"{k}x{k}: {w:.3f}" for k, w in zip(kernels, trajectory[-1]))
      + f"; supernet validation accuracy {accuracy:.3f}")
claim(np.allclose(trajectory.sum(axis=1), 1), "the weights stay a probability vector")
record(n_steps=len(trajectory) - 1, winner=f"{kernels[order[0]]}x{kernels[order[0]]}",
       w_winner=trajectory[-1][order[0]], w_last=trajectory[-1][order[-1]],
       loser=f"{kernels[order[-1]]}x{kernels[order[-1]]}", search_accuracy=accuracy)

# %%
fig, ax = plt.subplots(figsize=(8, 3.8))
for k, look in zip(range(3), [dict(ls="-"), dict(ls="--"), dict(ls=":")]):
    ax.plot(trajectory[:, k], label=f"{kernels[k]}x{kernels[k]} convolution", lw=1.5, **look)
ax.axhline(1 / 3, color="0.6", lw=0.8)
ax.set_xlabel("search step (one validation batch for alpha, one training batch for w)")
ax.set_ylabel("architecture weight softmax(alpha)_k")
ax.set_title("DARTS: how the three candidates' weights move during the search")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# All three start at $1/3$ (the grey line: $\alpha = 0$). After {{n_steps}} steps the
# {{winner}} convolution leads with weight {{w_winner:.3f}} and the {{loser}} one trails
# with {{w_last:.3f}}; the derived architecture keeps the
# candidate with the largest weight. The supernet itself classifies
# {{search_accuracy:.1%}} of the validation images (a mixture, not the final network: the
# chosen architecture is retrained from scratch, as `tuning retrain` does). A short search
# like this one is noisy: the ranking can change with the seed, the architecture rate and
# the number of steps. `python -m tuning darts --space cnn` runs the real thing over every
# block's kernel size and the pooling type of the project's `cnn` space.

# %% [markdown]
# ## Exercises
#
# Fill in each function, run its cell, and read what the check says: it runs your function
# beside minidl's own and names what differs. (Worked solutions are in
# `docs/tutorials/solutions/ex10.py`; try first.)
#
# **1. One SGD-HD step.** Given `theta`, the new gradient `grad`, the previous gradient
# `grad_prev` (zeros at the first step), the rate `lr` and `hypergrad_lr`, return the new
# `(theta, lr)`.

# %%
from tutorial.ex10 import check_sgd_hd_step, check_alpha_gradient


def sgd_hd_step(theta, grad, grad_prev, lr, hypergrad_lr):
    raise NotImplementedError          # your code here


check_sgd_hd_step(sgd_hd_step)

# %% [markdown]
# **2. The architecture gradient.** Given `alpha` $(K,)$, the candidates' outputs `outs`
# (a list of $K$ arrays) and `dout` $= \partial L/\partial y$, return
# $\partial L/\partial\alpha$ for $y = \sum_k \mathrm{softmax}(\alpha)_k\, o_k$.

# %%
def alpha_gradient(alpha, outs, dout):
    raise NotImplementedError          # your code here


check_alpha_gradient(alpha_gradient)

# %% [markdown]
# Next: [11. Which search method should I use?](11-choosing-a-search-method.ipynb)
