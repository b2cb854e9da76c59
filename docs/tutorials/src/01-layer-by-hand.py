"""Tutorial 1: a layer by hand (source of docs/tutorials/01-layer-by-hand.ipynb; see build.py)."""
# %% [markdown]
# # 1. A layer by hand: `Linear`, forward and backward
#
# minidl has no autograd: every layer's backward pass is the chain rule written out by hand.
# This notebook takes the simplest layer with weights, `nn.Linear`, writes its forward and
# backward passes out in NumPy, checks them against the layer, against finite differences
# (`minidl.gradcheck`) and against PyTorch, and then looks at the weight gradient as a picture.
#
# The data are real Fashion-MNIST images (28 x 28 pixels, 10 classes of clothing).

# %%
import os, time
SMALL = os.environ.get("MINIDL_TUTORIAL_SMALL", "") not in ("", "0")   # the test suite sets it
%matplotlib inline

import numpy as np
import matplotlib.pyplot as plt

import minidl
from minidl import nn, optim
from minidl.data import load_fashion_mnist, prepare, FASHION_MNIST_MEAN, FASHION_MNIST_STD
from tutorial import record, claim        # docs/tutorials/tutorial: stated values, checks

CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
           "Sneaker", "Bag", "Ankle boot")
N_TRAIN = 2000 if SMALL else 60000        # images for the short training at the end
EPOCHS = 1 if SMALL else 5
minidl.manual_seed(0)
print("small data" if SMALL else "full run", "| minidl", minidl.__version__)

# %% [markdown]
# ## The data
#
# `load_fashion_mnist` finds the four IDX files (here the Debian package's copy) and returns
# uint8 arrays. `prepare` scales the pixels to $[0, 1]$, normalises them with the training
# set's mean and standard deviation, and adds a channel axis: images become `(N, 1, 28, 28)`.
# A black background pixel, 0 before, becomes $(0 - {{mean:.3f}})/{{std:.3f}} =
# {{background:.2f}}$ after: negative, which matters for every picture of weights below.

# %%
raw = load_fashion_mnist(download=False)
data = prepare(raw.train_images[:N_TRAIN], raw.train_labels[:N_TRAIN],
               FASHION_MNIST_MEAN, FASHION_MNIST_STD)
print(data)
BACKGROUND = (0 - FASHION_MNIST_MEAN) / FASHION_MNIST_STD
claim(data.x.min() == np.float32(BACKGROUND), "a black pixel becomes the smallest value")
record(mean=FASHION_MNIST_MEAN, std=FASHION_MNIST_STD, background=BACKGROUND)

fig, axes = plt.subplots(1, 8, figsize=(10, 1.9))
for ax, img, label in zip(axes, raw.train_images[:8], raw.train_labels[:8]):
    ax.imshow(img, cmap="gray_r")
    ax.set_title(CLASSES[label], fontsize=8)
    ax.axis("off")
fig.suptitle("The first eight training images (darker = brighter pixel)", fontsize=10)
plt.show()

# %% [markdown]
# ## Forward: $y = x W^T + b$
#
# A batch of $N$ flattened images $x \in \mathbb{R}^{N \times 784}$ goes through a layer with
# weight $W \in \mathbb{R}^{10 \times 784}$ and bias $b \in \mathbb{R}^{10}$:
#
# $$ y_{nj} = \sum_{i} x_{ni} W_{ji} + b_j . $$
#
# Each of the 10 outputs is a weighted sum of the 784 pixels: one *score* per class.
# We compute it three ways: the layer, one NumPy line, and the loop oracle
# `minidl.kernels.naive.linear_forward_naive`, which spells out every multiply-add.

# %%
from minidl.kernels.naive import linear_forward_naive, linear_backward_naive

x = data.x[:4].reshape(4, -1).astype(np.float64)     # 4 images, 784 pixels each
t = data.y[:4]                                       # their labels
layer = nn.Linear(784, 10).double()                  # float64 for exact comparisons
W, b = layer.weight.data, layer.bias.data

y_layer = layer(x)
y_numpy = x @ W.T + b
y_loops = linear_forward_naive(x, W, b)
print("y shape:", y_layer.shape)
print("layer vs numpy :", np.abs(y_layer - y_numpy).max())
print("layer vs loops :", np.abs(y_layer - y_loops).max())

# %% [markdown]
# ## Backward: the chain rule, entry by entry
#
# A loss $L$ follows the layer; the layer receives $G = \partial L / \partial y$
# (shape $N \times 10$) and must return $\partial L / \partial x$ and accumulate
# $\partial L / \partial W$, $\partial L / \partial b$. Since $y_{nj}$ depends on $W_{ji}$
# through the single term $x_{ni} W_{ji}$:
#
# $$ \frac{\partial L}{\partial W_{ji}} = \sum_n \frac{\partial L}{\partial y_{nj}}
#    \frac{\partial y_{nj}}{\partial W_{ji}} = \sum_n G_{nj}\, x_{ni}
#    \quad\Longrightarrow\quad \frac{\partial L}{\partial W} = G^T x ,$$
#
# $$ \frac{\partial L}{\partial b_j} = \sum_n G_{nj}, \qquad
#    \frac{\partial L}{\partial x_{ni}} = \sum_j G_{nj} W_{ji}
#    \quad\Longrightarrow\quad \frac{\partial L}{\partial x} = G\, W . $$
#
# The shapes check themselves: $G^T x$ is $10 \times 784$ like $W$, $G W$ is $N \times 784$
# like $x$. For $G$ we use the gradient of the cross-entropy loss of the 4 labels
# (notebook 3 derives it: $G = (\mathrm{softmax}(y) - \mathrm{onehot}(t)) / N$).

# %%
loss_fn = nn.CrossEntropyLoss()
loss = loss_fn(y_layer, t)
G = loss_fn.backward()                 # dL/dy, shape (4, 10)
print(f"loss {loss:.4f}; G shape {G.shape}")

layer.zero_grad()
dx_layer = layer.backward(G)

dW_hand, db_hand, dx_hand = G.T @ x, G.sum(axis=0), G @ W
dx_loops, dW_loops, db_loops = linear_backward_naive(x, W, G)
for name, layer_value, hand, loops in [("dL/dW", layer.weight.grad, dW_hand, dW_loops),
                                       ("dL/db", layer.bias.grad, db_hand, db_loops),
                                       ("dL/dx", dx_layer, dx_hand, dx_loops)]:
    print(f"{name}: layer vs hand {np.abs(layer_value - hand).max():.1e}, "
          f"layer vs loops {np.abs(layer_value - loops).max():.1e}")

# %% [markdown]
# ## Is the backward right? `minidl.gradcheck`
#
# Agreeing with our own derivation proves little if the derivation is wrong. Finite
# differences measure the slope directly: nudge one entry $v$ by $\pm\epsilon$ and
#
# $$ \frac{\partial L}{\partial v} \approx \frac{L(v+\epsilon) - L(v-\epsilon)}{2\epsilon} $$
#
# with an error of order $\epsilon^2$. `minidl.gradcheck` does this for every entry of the
# input and of every parameter, in float64, with $L = \sum w \odot y$ for a fixed random $w$
# (so swapped or sign-flipped entries cannot cancel). Here on a smaller layer (every entry
# costs two forward passes):

# %%
from minidl.gradcheck import check_gradients

small_x = np.random.default_rng(0).standard_normal((3, 20))
print(minidl.gradcheck(nn.Linear(20, 5), small_x))
print(check_gradients(nn.Linear(20, 5), small_x))

# %% [markdown]
# And a broken layer: a classic slip is to *average* the bias gradient over the batch
# instead of summing it. gradcheck names the array, the worst entry, and both values:

# %%
class BrokenLinear(nn.Linear):
    def backward(self, dout):
        dx = super().backward(dout)
        self.bias.grad = dout.mean(axis=0)          # wrong: should be dout.sum(axis=0)
        return dx

print(minidl.gradcheck(BrokenLinear(20, 5), small_x, raise_exception=False))
print(check_gradients(BrokenLinear(20, 5), small_x))

# %% [markdown]
# ## The same numbers as PyTorch
#
# When PyTorch is installed, we load the same weights into `torch.nn.Linear` (float64) and let
# autograd compute the gradients of the same loss. The differences are at the level of
# float64 rounding (below $10^{-12}$; the cell checks it). Without PyTorch this cell says so
# and moves on.

# %%
try:
    import torch
except ImportError:
    torch = None
    print("PyTorch is not installed: the comparison with PyTorch is skipped.")

if torch is not None:
    tl = torch.nn.Linear(784, 10).double()
    with torch.no_grad():
        tl.weight.copy_(torch.from_numpy(W))
        tl.bias.copy_(torch.from_numpy(b))
    tx = torch.from_numpy(x).requires_grad_(True)
    tloss = torch.nn.functional.cross_entropy(tl(tx), torch.from_numpy(t))
    tloss.backward()
    print(f"torch {torch.__version__}")
    print("loss  :", abs(tloss.item() - loss))
    print("dL/dW :", np.abs(tl.weight.grad.numpy() - layer.weight.grad).max())
    print("dL/db :", np.abs(tl.bias.grad.numpy() - layer.bias.grad).max())
    print("dL/dx :", np.abs(tx.grad.numpy() - dx_layer).max())
    claim(max(abs(tloss.item() - loss), np.abs(tl.weight.grad.numpy() - layer.weight.grad).max(),
              np.abs(tl.bias.grad.numpy() - layer.bias.grad).max(),
              np.abs(tx.grad.numpy() - dx_layer).max()) < 1e-12,
          "minidl and PyTorch agree to within 1e-12")

# %% [markdown]
# ## A picture of the weight gradient
#
# Row $j$ of $\partial L/\partial W = G^T x$ has 784 entries, one per pixel: reshaped to
# $28 \times 28$ it is an image. It is a weighted sum of the batch's images,
# $\sum_n G_{nj} x_n$, with $G_{nj} = (p_{nj} - [t_n = j])/N$: negative (blue) for the
# class of an image (the step $-\eta\,\partial L/\partial W$ will *add* that image to the
# class's weights), positive (red) for the classes the layer wrongly gives probability to.
# (The background of a normalised image is ${{background:.2f}}$, not 0, so it takes the
# opposite colour.) The four images of the batch are shown first.

# %%
fig, axes = plt.subplots(2, 7, figsize=(10, 3.8))
for ax in axes.flat:
    ax.axis("off")
for ax, img, label in zip(axes[0], x, t):
    ax.imshow(img.reshape(28, 28), cmap="gray_r")
    ax.set_title(f"input: {CLASSES[label]}", fontsize=7)
limit = np.abs(layer.weight.grad).max()
for j, ax in enumerate(list(axes[0, 4:]) + list(axes[1])):
    shown = ax.imshow(layer.weight.grad[j].reshape(28, 28), cmap="RdBu_r", vmin=-limit,
                      vmax=limit)
    ax.set_title(f"dL/dW row {j}\n{CLASSES[j]}", fontsize=7)
fig.suptitle("One batch's weight gradient, each row as an image (blue < 0 < red)", fontsize=9)
plt.tight_layout()
fig.colorbar(shown, ax=axes, fraction=0.02, label="dL/dW")
plt.show()

# %% [markdown]
# ## Many small steps: what the weights learn
#
# Softmax regression is this one layer trained with the cross-entropy loss. `minidl.train.fit`
# runs the loop `zero_grad -> forward -> loss -> backward -> step` over mini-batches (in a
# notebook it draws a progress bar per epoch). Each step subtracts $\eta$ times the gradient
# pictured above, so every row of $W$ collects images of its class (with a plus sign) and
# of the classes it is confused with (with a minus sign).

# %%
from minidl.data import train_val_split
from minidl.train import fit

train, val = train_val_split(data, val_size=0.2, seed=0)
model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
print(minidl.summary(model, (1, 1, 28, 28)))
start_weights = model[1].weight.data.copy()          # the random start, for comparison
history = fit(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.01),
              train, val, epochs=EPOCHS, batch_size=64)
print(f"validation accuracy after {EPOCHS} epoch(s): {history.epochs[-1]['val_accuracy']:.3f}")

# %%
weights = model[1].weight.data
fig, axes = plt.subplots(1, 10, figsize=(10, 1.9))
limit = np.abs(weights).max()
for j, ax in enumerate(axes):
    shown = ax.imshow(weights[j].reshape(28, 28), cmap="RdBu_r", vmin=-limit, vmax=limit)
    ax.set_title(CLASSES[j], fontsize=7)
    ax.axis("off")
fig.suptitle("Learned weights W, one row per class (red > 0 > blue); the score adds "
             "weight x pixel, and a background pixel is negative", fontsize=9)
fig.colorbar(shown, ax=axes, fraction=0.015, shrink=0.7, label="weight")
plt.show()

# how much training changed W, against the size of its random start
change = np.linalg.norm(weights - start_weights) / np.linalg.norm(start_weights)
# how much each row resembles what sets its class apart: the class's mean image minus the
# mean of all images (correlation over the 784 pixels)
pixels = train.x.reshape(-1, 784)
apart = np.stack([pixels[train.y == j].mean(axis=0) - pixels.mean(axis=0) for j in range(10)])
resemblance = np.array([np.corrcoef(weights[j], apart[j])[0, 1] for j in range(10)])
order = np.argsort(resemblance)[::-1]
print(f"|W - W_start| / |W_start| = {change:.2f}")
print("correlation of each row with (its class's mean image - the mean image):")
for j in order:
    print(f"  {CLASSES[j]:12s} {resemblance[j]:+.2f}")
claim(resemblance.min() > 0, "every row correlates positively with its class's difference "
      "from the mean image")
record(accuracy=history.epochs[-1]["val_accuracy"], change=change,
       most_alike=CLASSES[order[0]], most_alike_r=resemblance[order[0]],
       least_alike=CLASSES[order[-1]], least_alike_r=resemblance[order[-1]])

# %% [markdown]
# How to read these pictures: the score of class $j$ is $\sum_i W_{ji} x_i + b_j$, so a
# weight's colour tells what a pixel does only together with the pixel's value. On a bright
# pixel (the garment, $x_i > 0$) red raises the score and blue lowers it; on the background
# ($x_i = {{background:.2f}}$) it is the other way round, red *lowers* the score. A row is
# therefore not simply a picture of its class, and most rows do not look like one. Two
# reasons, both measured above. The rows still carry their random start: training changed
# $W$ by {{change:.2f}} times the size of the initial weights, so the noise of the start is
# still a large part of every row. And what a row learns is what *sets its class apart*,
# not the class itself: each row correlates positively with its class's mean image minus
# the mean of all images, from {{least_alike_r:.2f}} ({{least_alike}}) to
# {{most_alike_r:.2f}} ({{most_alike}}). Where a class has a shape of its own (the gap
# between trouser legs, a shoe's sole) the eye finds it; where classes differ from each
# other in a few pixels, what sets one apart looks like noise. After this training the
# layer classifies
# {{accuracy:.1%}} of the validation images correctly.
#
# **Try it:** set the bias gradient back to the sum in `BrokenLinear` and rerun gradcheck;
# change `lr` in `fit` to 0.1 or 0.001 and see how the rows change.

# %% [markdown]
# ## Exercises
#
# Fill in each function, run its cell, and read what the check says: it runs your function
# beside minidl's own implementation and names what differs. (Worked solutions are in
# `docs/tutorials/solutions/ex01.py`; try first.)
#
# **1. Forward.** Return $y = x W^T + b$ for `x` $(N, D)$, `W` $(O, D)$, `b` $(O,)$.

# %%
from tutorial.ex01 import check_linear_forward, check_linear_backward, check_central_difference


def linear_forward(x, W, b):
    raise NotImplementedError          # your code here


check_linear_forward(linear_forward)

# %% [markdown]
# **2. Backward.** Given `dout` $= \partial L/\partial y$, return the tuple
# `(dx, dW, db)`.

# %%
def linear_backward(x, W, dout):
    raise NotImplementedError          # your code here


check_linear_backward(linear_backward)

# %% [markdown]
# **3. Finite differences.** Return the gradient of the scalar function `f` at the array
# `x`, one central difference $(f(x + \epsilon e_i) - f(x - \epsilon e_i))/2\epsilon$ per
# entry (nudge the entry in place, and put it back).

# %%
def central_difference(f, x, eps):
    raise NotImplementedError          # your code here


check_central_difference(central_difference)

# %% [markdown]
# Next: [2. Convolution as im2col](02-convolution-im2col.ipynb).
