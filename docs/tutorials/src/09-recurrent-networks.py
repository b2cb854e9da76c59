"""Tutorial 9: recurrent networks (source of docs/tutorials/09-recurrent-networks.ipynb)."""
# %% [markdown]
# # 9. Recurrent networks: one cell, unrolled through time
#
# A recurrent network reads a sequence one step at a time and carries a **hidden state**
# $h_t$ from step to step. Here a Fashion-MNIST image is the sequence: its 28 rows, top to
# bottom, are 28 steps of 28 pixels each. We write the simplest cell by hand, run
# backpropagation through time (BPTT) on its unrolled graph, measure how the gradient
# shrinks or grows on its way back through the steps (tanh RNN against LSTM and GRU), clip
# it, and look inside the gates of a trained LSTM and GRU.

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

CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
           "Sneaker", "Bag", "Ankle boot")
N_TRAIN = 3000 if SMALL else 12000
EPOCHS = 4
H = 48                                     # hidden units
raw = load_fashion_mnist(download=False)
data = prepare(raw.train_images[:N_TRAIN], raw.train_labels[:N_TRAIN],
               FASHION_MNIST_MEAN, FASHION_MNIST_STD)
# the first 32 images as sequences: (T = 28 steps, N = 32, 28 pixels per step)
seq = data.x[:32].reshape(32, 28, 28).transpose(1, 0, 2).astype(np.float64)
T = len(seq)
print("small data" if SMALL else "full run", "| sequences:", seq.shape, "(T, N, features)")

# %% [markdown]
# ## The cell by hand
#
# An Elman RNN cell mixes the step's input and the previous state and squashes the sum:
#
# $$ h_t = \tanh\big(x_t W_{ih}^T + b_{ih} + h_{t-1} W_{hh}^T + b_{hh}\big), \qquad
#    h_{-1} = 0 . $$
#
# The *same* weights serve every step. We run it over the 28 rows with the weights of a
# minidl `nn.RNN` and compare every hidden state.

# %%
minidl.manual_seed(0)
rnn = nn.RNN(28, H).double()
W_ih, W_hh = rnn.weight_ih_l0.data, rnn.weight_hh_l0.data
b = rnn.bias_ih_l0.data + rnn.bias_hh_l0.data

h = np.zeros((32, H))
hs = []
for x_t in seq:                                   # one row of every image per step
    h = np.tanh(x_t @ W_ih.T + h @ W_hh.T + b)
    hs.append(h)
hs = np.array(hs)                                 # (T, N, H)
output, h_n = rnn(seq)
print("every h_t, by hand vs nn.RNN:", np.abs(hs - output).max())
claim(np.abs(hs - output).max() < 1e-12, "the hand-written loop gives nn.RNN's hidden states")

# %% [markdown]
# ## Backpropagation through time
#
# Unrolled, the network is a deep chain with one layer per step, all sharing $W_{hh}$:
# the picture below. Take the loss $L = \sum w \odot h_{T-1}$ for a fixed random $w$ (a
# classifier reading the last state is the same up to one more layer). Walking back from
# the last step, with $\delta_t = \partial L/\partial h_t$:
#
# $$ \delta_{T-1} = w, \qquad a\text{-gradient } \; d_t = \delta_t \odot (1 - h_t^2), \qquad
#    \delta_{t-1} = d_t\, W_{hh}, $$
#
# $$ \frac{\partial L}{\partial W_{hh}} = \sum_t d_t^T h_{t-1}, \qquad
#    \frac{\partial L}{\partial W_{ih}} = \sum_t d_t^T x_t, \qquad
#    \frac{\partial L}{\partial b} = \sum_t \sum_n d_{t,n} . $$
#
# Every step adds its share to the *same* weight gradients, because every step used the
# same weights.

# %%
fig, ax = plt.subplots(figsize=(10, 3.2))
steps = ["0", "1", "2", "t", "T-1"]
for k, name in enumerate(steps):
    xk = 1.6 * k + 1
    ax.add_patch(plt.Rectangle((xk - 0.35, 1.0), 0.7, 0.6, fc="#dde8f5", ec="k"))
    ax.text(xk, 1.3, f"$h_{{{name}}}$", ha="center", va="center", fontsize=12)
    ax.annotate("", (xk, 1.0), (xk, 0.35), arrowprops=dict(arrowstyle="->"))
    ax.text(xk, 0.2, f"$x_{{{name}}}$", ha="center", va="center", fontsize=11)
    if k > 0:
        gap = "..." if name in ("t", "T-1") else ""
        ax.annotate("", (xk - 0.37, 1.38), (xk - 1.23, 1.38),
                    arrowprops=dict(arrowstyle="->"))
        ax.text(xk - 0.8, 1.5, "$W_{hh}$" + gap, ha="center", fontsize=9)
        ax.annotate("", (xk - 1.23, 1.15), (xk - 0.37, 1.15),
                    arrowprops=dict(arrowstyle="->", color="C3", ls="--"))
        ax.text(xk - 0.8, 0.93, r"$\delta \odot (1-h^2)\, W_{hh}$", ha="center", fontsize=7,
                color="C3")
ax.annotate("", (1.6 * 4 + 1.9, 1.3), (1.6 * 4 + 1.37, 1.3), arrowprops=dict(arrowstyle="->"))
ax.text(1.6 * 4 + 2.2, 1.3, "$L = \\sum w \\odot h_{T-1}$", va="center", fontsize=10)
ax.text(1.6 * 4 + 2.2, 1.0, "$\\delta_{T-1} = w$", va="center", fontsize=9, color="C3")
ax.set_xlim(0, 10.2)
ax.set_ylim(0, 1.8)
ax.axis("off")
ax.set_title("The RNN unrolled: black arrows run forward, red dashed ones carry the gradient "
             "back")
plt.show()

# %%
w = np.random.default_rng(0).standard_normal((32, H))
dW_ih, dW_hh, db = np.zeros_like(W_ih), np.zeros_like(W_hh), np.zeros(H)
delta = w                                          # dL/dh_{T-1}
delta_norms = np.zeros(T)
for t in range(T - 1, -1, -1):
    delta_norms[t] = np.linalg.norm(delta)
    d = delta * (1 - hs[t] ** 2)                   # through tanh
    h_prev = hs[t - 1] if t > 0 else np.zeros_like(hs[0])
    dW_hh += d.T @ h_prev
    dW_ih += d.T @ seq[t]
    db += d.sum(axis=0)
    delta = d @ W_hh                               # to the step before

d_output = np.zeros_like(output)
d_output[-1] = w
rnn.zero_grad()
rnn.backward(d_output)
for name, mine, theirs in [("dW_ih", dW_ih, rnn.weight_ih_l0.grad),
                           ("dW_hh", dW_hh, rnn.weight_hh_l0.grad),
                           ("db", db, rnn.bias_ih_l0.grad)]:
    print(f"{name}: BPTT by hand vs nn.RNN.backward {np.abs(mine - theirs).max():.1e}")
claim(max(np.abs(dW_ih - rnn.weight_ih_l0.grad).max(), np.abs(dW_hh - rnn.weight_hh_l0.grad).max(),
          np.abs(db - rnn.bias_hh_l0.grad).max()) < 1e-12,
      "BPTT by hand gives nn.RNN's weight gradients")
print("gradcheck of a small RNN (every step's output):",
      minidl.gradcheck(nn.SequenceOutput(nn.RNN(3, 4)),
                       np.random.default_rng(1).standard_normal((5, 2, 3))))

# %% [markdown]
# ## Vanishing and exploding gradients
#
# Each step back multiplies the gradient by $\mathrm{diag}(1 - h_t^2)\, W_{hh}$. Over many
# steps that is a product of many matrices: if they shrink vectors the gradient
# **vanishes** (steps far back learn nothing from the loss), if they stretch them it
# **explodes**. We measure the gradient that reaches each step's input,
# $\|\partial L/\partial x_t\|$, for the same loss and the same 32 images, in four networks
# of {{hidden}} units: a tanh RNN with minidl's (PyTorch's) initialisation, the same with
# $W_{hh}$ replaced by {{scale}} times a random orthogonal matrix, an LSTM and a GRU.

# %%
def gradient_by_step(layer):
    """||dL/dx_t|| for every step t, for L = sum(w * h_{T-1})."""
    out, _ = layer(seq)
    d_out = np.zeros_like(out)
    d_out[-1] = w
    layer.zero_grad()
    return np.linalg.norm(layer.backward(d_out), axis=(1, 2))


SCALE = 3.0
networks = {}
minidl.manual_seed(0)
networks["tanh RNN"] = nn.RNN(28, H).double()
minidl.manual_seed(0)
big = nn.RNN(28, H).double()
q, _ = np.linalg.qr(np.random.default_rng(1).standard_normal((H, H)))
big.weight_hh_l0.data[...] = SCALE * q
networks[f"tanh RNN, W_hh = {SCALE:g} Q"] = big
minidl.manual_seed(0)
networks["LSTM"] = nn.LSTM(28, H).double()
minidl.manual_seed(0)
networks["GRU"] = nn.GRU(28, H).double()
norms = {name: gradient_by_step(layer) for name, layer in networks.items()}
ratio = {name: n[0] / n[-1] for name, n in norms.items()}
for name, r in ratio.items():
    print(f"{name:24s} ||dL/dx_0|| / ||dL/dx_T-1|| = {r:.1e}")
claim(ratio["tanh RNN"] < 1e-4, "in the tanh RNN the gradient vanishes on the way back")
claim(ratio[f"tanh RNN, W_hh = {SCALE:g} Q"] > 1, "with the large W_hh it explodes")
claim(min(ratio["LSTM"], ratio["GRU"]) > 100 * ratio["tanh RNN"],
      "LSTM and GRU keep over 100 times more of the gradient than the tanh RNN")
record(hidden=H, scale=SCALE, r_rnn=ratio["tanh RNN"],
       r_big=ratio[f"tanh RNN, W_hh = {SCALE:g} Q"], r_lstm=ratio["LSTM"], r_gru=ratio["GRU"])

fig, ax = plt.subplots(figsize=(8, 4))
for (name, n), style in zip(norms.items(), [dict(ls="-", marker="o"), dict(ls="--", marker="^"),
                                            dict(ls="-.", marker="s"), dict(ls=":", marker="v")]):
    ax.semilogy(np.arange(T), n, label=name, ms=4, **style)
ax.set_xlabel("time step t (the loss reads the last one)")
ax.set_ylabel("||dL/dx_t|| (log scale)")
ax.set_title("How much gradient reaches each step, 32 Fashion-MNIST images as row sequences")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# From the last step to the first, the gradient falls by a factor of
# {{r_rnn:.0e}} in the tanh RNN: the first rows of the image learn essentially nothing from
# a loss on the last state. With the large $W_{hh}$ it *grows* by {{r_big:.0e}} instead.
# The LSTM ({{r_lstm:.0e}}) and the GRU ({{r_gru:.0e}}) still lose gradient — untrained,
# their forget and update gates sit near one half — but far less. Their state has a path
# back without a matrix product: the LSTM's cell, $c_t = f \odot c_{t-1} + i \odot g$,
# passes gradient back as $\partial L/\partial c_{t-1} = \partial L/\partial c_t \odot f$,
# scaled only by the forget gate, and a forget gate near 1 keeps it.
#
# ## Clipping
#
# Exploding gradients make one step jump far. **Gradient clipping** scales the whole
# gradient, every parameter by the same factor, down to a maximum norm:
# $g \leftarrow g \cdot \min(1, \text{max\_norm}/\|g\|)$. The direction is kept; only the
# length is capped. `minidl.nn.utils.clip_grad_norm_` does this in place and returns the
# norm before clipping:

# %%
from minidl.nn.utils import clip_grad_norm_

params = list(big.parameters())
before = np.concatenate([p.grad.ravel() for p in params])
total = clip_grad_norm_(params, max_norm=1.0)
after = np.concatenate([p.grad.ravel() for p in params])
cosine = before @ after / (np.linalg.norm(before) * np.linalg.norm(after))
print(f"norm before {total:.3g}, after {np.linalg.norm(after):.6f}; cosine of the two "
      f"directions {cosine:.12f}")
claim(abs(np.linalg.norm(after) - 1.0) < 1e-6 and cosine > 1 - 1e-12,
      "clipping brings the norm to max_norm and keeps the direction")
record(clip_before=total)

# %% [markdown]
# The exploding network's gradient had norm {{clip_before:.3g}}; after clipping it has
# norm 1 and points the same way. Clipping is a safety net for the rare huge step, not a
# cure for vanishing gradients: a tiny gradient stays tiny.
#
# ## Inside the gates of a trained LSTM and GRU
#
# Now train a small classifier of each kind on the rows of the images
# (`ImageToSequence → LastHidden(LSTM or GRU) → Linear`), then open the cells. The LSTM's
# gates, for each step and unit:
#
# $$ i = \sigma(a^i), \; f = \sigma(a^f), \; g = \tanh(a^g), \; o = \sigma(a^o), \qquad
#    c_t = f \odot c_{t-1} + i \odot g, \qquad h_t = o \odot \tanh(c_t), $$
#
# with $[a^i, a^f, a^g, a^o] = x_t W_{ih}^T + b_{ih} + h_{t-1} W_{hh}^T + b_{hh}$ (PyTorch's
# order). The GRU has a reset gate $r$ and an update gate $z$:
# $h_t = (1 - z) \odot n + z \odot h_{t-1}$, so $z$ near 1 keeps the old state.

# %%
train, val = train_val_split(data, val_size=0.2, seed=0)
trained = {}
for kind in (nn.LSTM, nn.GRU):
    minidl.manual_seed(0)
    model = nn.Sequential(nn.ImageToSequence(28), nn.LastHidden(kind(28, H, batch_first=True)),
                          nn.Linear(H, 10))
    start = time.perf_counter()
    history = fit(model, nn.CrossEntropyLoss(), optim.Adam(model.parameters(), lr=3e-3),
                  train, val, epochs=EPOCHS, batch_size=64, seed=0, progress=False)
    trained[kind.__name__] = (model, history.epochs[-1]["val_accuracy"])
    print(f"{kind.__name__}: validation accuracy {history.epochs[-1]['val_accuracy']:.3f} "
          f"after {EPOCHS} epochs on {len(train)} images ({time.perf_counter() - start:.0f} s)")
claim(min(acc for _, acc in trained.values()) > 0.6,
      "both recurrent classifiers get more than 60% of the validation images right")
record(acc_lstm=trained["LSTM"][1], acc_gru=trained["GRU"][1], rnn_epochs=EPOCHS)


# %%
def sigmoid(a):
    return 1 / (1 + np.exp(-a))


def lstm_gates(lstm, rows):
    """i, f, g, o and h for every step of one image (rows: (T, 28)), by hand."""
    W_ih, W_hh = lstm.weight_ih_l0.data, lstm.weight_hh_l0.data
    b = lstm.bias_ih_l0.data + lstm.bias_hh_l0.data
    h, c = np.zeros(H), np.zeros(H)
    gates = {k: [] for k in "ifgoh"}
    for x_t in rows:
        a = x_t @ W_ih.T + h @ W_hh.T + b
        i, f, g, o = sigmoid(a[:H]), sigmoid(a[H:2 * H]), np.tanh(a[2 * H:3 * H]), sigmoid(a[3 * H:])
        c = f * c + i * g
        h = o * np.tanh(c)
        for k, v in zip("ifgoh", (i, f, g, o, h)):
            gates[k].append(v)
    return {k: np.array(v) for k, v in gates.items()}


def gru_gates(gru, rows):
    """r, z, n and h for every step of one image, by hand."""
    W_ih, W_hh = gru.weight_ih_l0.data, gru.weight_hh_l0.data
    b_ih, b_hh = gru.bias_ih_l0.data, gru.bias_hh_l0.data
    h = np.zeros(H)
    gates = {k: [] for k in "rznh"}
    for x_t in rows:
        ai, ah = x_t @ W_ih.T + b_ih, h @ W_hh.T + b_hh
        r, z = sigmoid(ai[:H] + ah[:H]), sigmoid(ai[H:2 * H] + ah[H:2 * H])
        n = np.tanh(ai[2 * H:] + r * ah[2 * H:])
        h = (1 - z) * n + z * h
        for k, v in zip("rznh", (r, z, n, h)):
            gates[k].append(v)
    return {k: np.array(v) for k, v in gates.items()}


sample = val.x[:1]
rows = sample[0, 0].astype(np.float32)
lstm_layer = trained["LSTM"][0][1].rnn
gru_layer = trained["GRU"][0][1].rnn
lstm_g, gru_g = lstm_gates(lstm_layer, rows), gru_gates(gru_layer, rows)
h_lstm = trained["LSTM"][0][:2](sample)[0]
h_gru = trained["GRU"][0][:2](sample)[0]
print("last hidden state by hand vs the layer: LSTM", np.abs(lstm_g["h"][-1] - h_lstm).max(),
      "| GRU", np.abs(gru_g["h"][-1] - h_gru).max())
claim(max(np.abs(lstm_g["h"][-1] - h_lstm).max(), np.abs(gru_g["h"][-1] - h_gru).max()) < 1e-5,
      "the gates computed by hand reproduce both layers' last state (float32)")
record(f_mean=lstm_g["f"].mean(), z_mean=gru_g["z"].mean(),
       n_keep=int((lstm_g["f"].min(axis=0) > 0.9).sum()),
       n_forget=int((lstm_g["f"].max(axis=0) < 0.5).sum()))

# %%
fig, axes_ = plt.subplots(1, 4, figsize=(11, 3.4), gridspec_kw={"width_ratios": [1, 1.3, 1.3, 1.3]},
                          layout="constrained")
axes_[0].imshow(sample[0, 0], cmap="gray_r")
axes_[0].set_title(f"the image ({CLASSES[val.y[0]]})", fontsize=9)
axes_[0].set_xlabel("pixel in the row")
axes_[0].set_ylabel("row = time step")
for ax, (values, title) in zip(axes_[1:], [(lstm_g["f"], "LSTM forget gate f"),
                                            (lstm_g["i"], "LSTM input gate i"),
                                            (gru_g["z"], "GRU update gate z")]):
    shown = ax.imshow(values, cmap="viridis", vmin=0, vmax=1, aspect="auto")
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("hidden unit")
    ax.set_ylabel("time step")
fig.colorbar(shown, ax=axes_[1:], label="gate value (0: closed, 1: open)")
fig.suptitle("Gates of the trained LSTM and GRU, step by step, for one validation image")
plt.show()

# %% [markdown]
# After {{rnn_epochs}} epochs the LSTM classifies {{acc_lstm:.1%}} of the validation
# images correctly and the GRU {{acc_gru:.1%}}, reading one row at a time. In the picture,
# each row of a heat map is one step and each column one unit. Over this image the LSTM's
# forget gate averages {{f_mean:.2f}} and the GRU's update gate {{z_mean:.2f}}: units with
# gates near 1 carry their state across many rows (they remember), units near 0 overwrite
# it at every step: {{n_keep}} of the {{hidden}} LSTM units keep their forget gate above
# 0.9 on every row of this image, and {{n_forget}} never open it beyond 0.5. In the heat
# maps this shows as vertical stripes: a unit keeps much the same role from row to row.

# %% [markdown]
# ## Exercises
#
# Fill in each function, run its cell, and read what the check says: it runs your function
# beside minidl's cells and names what differs. (Worked solutions are in
# `docs/tutorials/solutions/ex09.py`; try first.)
#
# **1. One step of BPTT.** For one tanh step $h = \tanh(x W_{ih}^T + h_{prev} W_{hh}^T +
# b)$, given `dh` $= \partial L/\partial h$, return `(dx, dh_prev, dW_ih, dW_hh, db)`.

# %%
from tutorial.ex09 import check_rnn_step_backward, check_clip_grad_norm, check_lstm_step


def rnn_step_backward(x, h_prev, h, dh, W_ih, W_hh):
    raise NotImplementedError          # your code here


check_rnn_step_backward(rnn_step_backward)

# %% [markdown]
# **2. Clipping.** Given a list of gradient arrays and `max_norm`, return the clipped
# list (new arrays), as `clip_grad_norm_` would leave them.

# %%
def clip_grad_norm(grads, max_norm):
    raise NotImplementedError          # your code here


check_clip_grad_norm(clip_grad_norm)

# %% [markdown]
# **3. One LSTM step.** Return `(h, c)` after one step from `(h_prev, c_prev)`, with
# PyTorch's gate order `i, f, g, o` in the rows of the weights.

# %%
def lstm_step(x, h_prev, c_prev, W_ih, W_hh, b_ih, b_hh):
    raise NotImplementedError          # your code here


check_lstm_step(lstm_step)

# %% [markdown]
# Next: [10. Gradient-based tuning](10-gradient-based-tuning.ipynb).
