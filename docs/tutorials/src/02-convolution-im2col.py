"""Tutorial 2: convolution as im2col (source of docs/tutorials/02-convolution-im2col.ipynb)."""
# %% [markdown]
# # 2. Convolution as im2col
#
# A convolution slides a small filter over the image. Written as loops it is seven nested
# `for`s; written as **im2col** it is *one matrix product*: copy every patch the filter
# sees into a column of a matrix, then multiply by the matrix of filters. This is how minidl's
# `nn.Conv2d` computes (and how most libraries did for years). We build the im2col matrix of a
# real Fashion-MNIST image, look at it, multiply, run the backward pass with **col2im**, and
# finally train a small network and look at what its filters learned.

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
from minidl.kernels import im2col_reference, col2im_reference
from minidl.kernels.naive import im2col_naive, conv2d_forward_naive, conv2d_backward_naive
from tutorial import record, claim        # docs/tutorials/tutorial: stated values, checks

CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
           "Sneaker", "Bag", "Ankle boot")
N_TRAIN = 1500 if SMALL else 20000
EPOCHS = 1 if SMALL else 3
minidl.manual_seed(0)

raw = load_fashion_mnist(download=False)
data = prepare(raw.train_images[:N_TRAIN], raw.train_labels[:N_TRAIN],
               FASHION_MNIST_MEAN, FASHION_MNIST_STD)
print("small data" if SMALL else "full run", "|", data)

# %% [markdown]
# ## The convolution, as the formula says
#
# For an input $x$ of shape $(C, H, W)$, filters $W$ of shape $(O, C, k, k)$, stride $s$ and
# zero padding $p$, output channel $o$ at position $(u, v)$ is
#
# $$ y_{o,u,v} = b_o + \sum_{c=0}^{C-1} \sum_{i=0}^{k-1} \sum_{j=0}^{k-1}
#      W_{o,c,i,j}\; x^{\text{pad}}_{c,\; u s + i,\; v s + j},
#    \qquad H_{out} = \Big\lfloor \frac{H + 2p - k}{s} \Big\rfloor + 1 .$$
#
# ## im2col on a tiny example
#
# im2col makes one **row per filter tap** $(c, i, j)$ — $C k^2$ rows — and one **column per
# output position** $(u, v)$: column $(u,v)$ holds the $k \times k$ patch that the filter sees
# there. A $4 \times 4$ image with a $2 \times 2$ filter (stride 1, no padding) has 9 output
# positions, so its matrix is $4 \times 9$:

# %%
tiny = np.arange(16, dtype=np.float64).reshape(1, 1, 4, 4)
print("image:\n", tiny[0, 0])
cols_tiny = im2col_reference(tiny, 2, stride=1, padding=0)
print("im2col (rows = taps (i,j) = (0,0), (0,1), (1,0), (1,1); columns = output positions):\n",
      cols_tiny)
print("same as the loop oracle im2col_naive:",
      np.array_equal(cols_tiny, im2col_naive(tiny, 2, 1, 0)[0]))
claim(cols_tiny.shape == (4, 9), "the matrix is 4 x 9")
claim(cols_tiny[:, 0].tolist() == [0, 1, 4, 5] and cols_tiny[:, 1].tolist() == [1, 2, 5, 6],
      "column 0 is 0, 1, 4, 5 and column 1 is 1, 2, 5, 6")

# %% [markdown]
# Read column 0: `0, 1, 4, 5` is the top-left $2\times2$ patch; column 1 `1, 2, 5, 6` is the
# patch one step to the right. Each pixel appears in several columns — the patches overlap.
# Read a *row* instead: row $(i, j)$ is the whole image shifted by $(i, j)$.
#
# `im2col_reference` (in `minidl/kernels/im2col.py`) builds it without looping over positions:
# for each tap $(i, j)$ it takes one strided slice of the padded image. The fast route
# (`minidl.kernels.im2col`, compiled with Numba) gives the same numbers.
#
# ## The im2col matrix of a real image
#
# A $28 \times 28$ image, a $3 \times 3$ filter with padding 1: 9 rows and $28 \cdot 28 = 784$
# columns. Shown as an image (each row reshaped back to $28 \times 28$ below it), the nine rows
# are nine shifted copies of the picture. The grey strips are the padding: zeros. The
# colour map draws larger values darker, and the normalised background is
# ${{background:.2f}}$, the smallest value of the image, so it is white and the zeros of
# the padding are *darker* than it.

# %%
image = data.x[1:2].astype(np.float64)           # (1, 1, 28, 28): one T-shirt
cols = im2col_reference(image, 3, stride=1, padding=1)
print("cols shape:", cols.shape)
background = (0 - FASHION_MNIST_MEAN) / FASHION_MNIST_STD
claim(cols.shape == (9, 784), "9 rows and 784 columns")
claim(image.min() == np.float32(background) < 0,
      "the background is the image's smallest value, below the padding's 0")
record(background=background)

fig = plt.figure(figsize=(10, 4.6))
top = fig.add_axes([0.05, 0.58, 0.9, 0.32])
top.imshow(cols, aspect="auto", cmap="gray_r", interpolation="nearest")
top.set_yticks(range(9), [f"tap ({i},{j})" for i in range(3) for j in range(3)], fontsize=7)
top.set_xlabel("column = output position u*28 + v (784 columns)", fontsize=8)
top.set_ylabel("row = filter tap", fontsize=8)
top.set_title(f"im2col matrix of one Fashion-MNIST image ({CLASSES[data.y[1]]}), "
              f"3x3 filter, padding 1: shape {cols.shape}", fontsize=9)
for r in range(9):
    ax = fig.add_axes([0.05 + r * 0.1, 0.05, 0.09, 0.36])
    ax.imshow(cols[r].reshape(28, 28), cmap="gray_r")
    ax.set_title(f"row {r}: tap ({r // 3},{r % 3})", fontsize=7)
    ax.axis("off")
fig.suptitle("im2col: one row per filter tap, one column per output position (darker = larger)",
             fontsize=10)
plt.show()

# %% [markdown]
# ## The product with the filter matrix
#
# Flatten each filter into a row: $W_{mat}$ has shape $(O, C k^2)$. Then *all* outputs at
# once are one matrix product,
#
# $$ Y = W_{mat}\, \mathrm{cols} + b \quad (O \times 784), $$
#
# and reshaping $Y$ to $(O, 28, 28)$ gives the feature maps. We try three hand-made filters:
# two edge detectors (Sobel) and a blur, and check the result against `nn.Conv2d` and the
# seven-loop oracle `conv2d_forward_naive`.

# %%
sobel_x = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=np.float64)
filters = np.stack([sobel_x, sobel_x.T, np.full((3, 3), 1 / 9)])[:, None]    # (3, 1, 3, 3)
W_mat = filters.reshape(3, -1)                                                # (3, 9)
Y = W_mat @ cols                                                              # (3, 784)
maps = Y.reshape(1, 3, 28, 28)

conv = nn.Conv2d(1, 3, 3, padding=1).double()
conv.weight.data[...] = filters
conv.bias.data[...] = 0
print("W_mat @ cols vs nn.Conv2d        :", np.abs(maps - conv(image)).max())
print("W_mat @ cols vs conv2d_forward_naive:",
      np.abs(maps - conv2d_forward_naive(image, filters, np.zeros(3), 1, 1)).max())

fig, axes = plt.subplots(1, 4, figsize=(10, 3.0), layout="constrained")
axes[0].imshow(image[0, 0], cmap="gray_r")
axes[0].set_title("input")
edge_limit = np.abs(maps[0, :2]).max()             # one symmetric scale for both Sobel maps
for ax, m, name in zip(axes[1:], maps[0], ["Sobel x (vertical edges)",
                                           "Sobel y (horizontal edges)", "3x3 blur"]):
    if "Sobel" in name:
        edges = ax.imshow(m, cmap="RdBu_r", vmin=-edge_limit, vmax=edge_limit)
    else:
        ax.imshow(m, cmap="gray_r")
    ax.set_title(name, fontsize=9)
for ax in axes:
    ax.axis("off")
fig.colorbar(edges, ax=axes[1:3], fraction=0.03, label="Sobel response")
fig.suptitle("Three hand-made filters applied as W_mat @ cols", fontsize=10)
plt.show()

# %% [markdown]
# For a batch, minidl puts the columns of all $N$ images side by side: `cols` is
# $(C k^2, N \cdot H_{out} W_{out})$ and one product does the whole batch (see the docstring of
# `minidl/kernels/im2col.py` for why one large product beats $N$ small ones).
#
# ## Backward: the same product, transposed, and col2im
#
# With $G = \partial L/\partial Y$ as an $(O, N H_{out} W_{out})$ matrix, the chain rule
# through $Y = W_{mat}\,\mathrm{cols} + b$ gives, exactly as for `Linear` in notebook 1,
#
# $$ \frac{\partial L}{\partial W_{mat}} = G\, \mathrm{cols}^T, \qquad
#    \frac{\partial L}{\partial b_o} = \sum_m G_{o,m}, \qquad
#    \frac{\partial L}{\partial\,\mathrm{cols}} = W_{mat}^T\, G . $$
#
# The last one is a gradient with respect to the *copies*. Every pixel was copied into several
# columns, so its gradient is the **sum** over its copies: that is **col2im**, the adjoint
# of im2col, which adds every entry back to the pixel it came from. Applied to a matrix of
# ones, col2im counts how many patches each pixel is in: 4 for a corner pixel, 6 on an
# edge, 9 inside.

# %%
counts = col2im_reference(np.ones_like(cols), image.shape, 3, stride=1, padding=1)
print("copies of each pixel (top-left corner):\n", counts[0, 0, :4, :4])
claim(counts[0, 0, 0, 0] == 4 and counts[0, 0, 0, 1] == 6 and counts[0, 0, 1:-1, 1:-1].min() == 9,
      "a corner pixel is in 4 patches, an edge pixel in 6, an inner pixel in 9")

rng = np.random.default_rng(0)
G = rng.standard_normal((3, 784))                  # some dL/dY
dW_mat = G @ cols.T
dx = col2im_reference(W_mat.T @ G, image.shape, 3, stride=1, padding=1)

conv.zero_grad()
conv(image)
dx_layer = conv.backward(G.reshape(1, 3, 28, 28))
dx_loops, dW_loops, db_loops = conv2d_backward_naive(image, filters, G.reshape(1, 3, 28, 28), 1, 1)
print("dL/dW: hand vs layer", np.abs(dW_mat.reshape(filters.shape) - conv.weight.grad).max(),
      "| hand vs loops", np.abs(dW_mat.reshape(filters.shape) - dW_loops).max())
print("dL/db: hand vs layer", np.abs(G.sum(axis=1) - conv.bias.grad).max())
print("dL/dx: hand vs layer", np.abs(dx - dx_layer).max(), "| hand vs loops",
      np.abs(dx - dx_loops).max())
print("gradcheck of a small Conv2d:",
      minidl.gradcheck(nn.Conv2d(2, 3, 3, stride=2, padding=1),
                       rng.standard_normal((2, 2, 7, 7))))

# %%
fig, axes = plt.subplots(1, 3, figsize=(10, 3.2), layout="constrained")
panels = [(counts[0, 0], "col2im(ones): copies per pixel", "viridis", "copies"),
          (G[0].reshape(28, 28), "dL/dY, channel 0", "RdBu_r", "dL/dY"),
          (dx[0, 0], "dL/dx = col2im(W_mat^T G)", "RdBu_r", "dL/dx")]
for ax, (img, title, cmap, label) in zip(axes, panels):
    limit = np.abs(img).max()
    im = ax.imshow(img, cmap=cmap, **({"vmin": -limit, "vmax": limit} if cmap == "RdBu_r"
                                       else {}))
    ax.set_title(title, fontsize=9)
    ax.axis("off")
    fig.colorbar(im, ax=ax, fraction=0.046, label=label)
fig.suptitle("The backward pass of the convolution: col2im adds the copies back", fontsize=10)
plt.show()

# %% [markdown]
# ## A short training, then the learned filters
#
# A small convolutional network: 16 filters of $5 \times 5$ on the image, ReLU, max-pooling,
# 32 filters of $3 \times 3$, pooling, and a `Linear` classifier. `minidl.summary` lists each
# layer's output shape, parameters and multiply-adds (the convolutions are where the work is).

# %%
train, val = train_val_split(data, val_size=0.15, seed=0)
model = nn.Sequential(
    nn.Conv2d(1, 16, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
    nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
    nn.Flatten(), nn.Linear(32 * 7 * 7, 10))
print(minidl.summary(model, (1, 1, 28, 28)))
from minidl.train import fit

start_filters = model[0].weight.data.copy()          # to see how far training moves them
t0 = time.perf_counter()
history = fit(model, nn.CrossEntropyLoss(), optim.Adam(model.parameters(), lr=2e-3),
              train, val, epochs=EPOCHS, batch_size=64)
print(f"{EPOCHS} epoch(s) on {len(train)} images in {time.perf_counter() - t0:.1f} s; "
      f"validation accuracy {history.epochs[-1]['val_accuracy']:.3f}")

# %% [markdown]
# The first layer's 16 filters are $5 \times 5$ images themselves. They started as uniform
# random noise, and {{epochs}} epoch(s) of training moved them by {{median_change:.1f}}
# times their initial size (the median over the 16; from {{min_change:.1f}} to
# {{max_change:.1f}}), so each picture is still part noise. Look for a red side next to a
# blue side (an edge detector) or a filter that is mostly one colour (it responds to bright
# or dark areas); longer training makes such patterns clearer.

# %%
w1 = model[0].weight.data[:, 0]                     # (16, 5, 5)
moved = (np.linalg.norm((model[0].weight.data - start_filters).reshape(16, -1), axis=1)
         / np.linalg.norm(start_filters.reshape(16, -1), axis=1))
record(epochs=EPOCHS, median_change=np.median(moved), min_change=moved.min(),
       max_change=moved.max())
fig, axes = plt.subplots(2, 8, figsize=(10, 2.8))
for k, ax in enumerate(axes.flat):
    limit = np.abs(w1[k]).max()
    ax.imshow(w1[k], cmap="RdBu_r", vmin=-limit, vmax=limit)
    ax.set_title(f"filter {k}", fontsize=8)
    ax.axis("off")
fig.suptitle("Learned 5x5 filters of the first Conv2d (red > 0 > blue)", fontsize=10)
plt.show()

# %% [markdown]
# Their **feature maps** on one image: the output of the first convolution after ReLU,
# `model[1](model[0](x))`, one $28 \times 28$ map per filter. Each map lights up where its
# filter's pattern appears in the image; after ReLU a map is 0 wherever the filter's
# response is negative.

# %%
model.eval()
sample = val.x[:1]
feature_maps = model[1](model[0](sample))[0]        # (16, 28, 28)
fig, axes = plt.subplots(2, 9, figsize=(10, 2.6))
axes[0, 0].imshow(sample[0, 0], cmap="gray_r")
axes[0, 0].set_title(CLASSES[val.y[0]], fontsize=8)
axes[1, 0].axis("off")
for k, ax in enumerate([a for a in axes.flat if a not in (axes[0, 0], axes[1, 0])]):
    ax.imshow(feature_maps[k], cmap="magma")
    ax.set_title(f"map {k}", fontsize=7)
for ax in axes.flat:
    ax.set_xticks([])
    ax.set_yticks([])
fig.suptitle("Feature maps of the first layer (after ReLU) for one validation image", fontsize=10)
if not SMALL:
    os.makedirs("images", exist_ok=True)
    fig.savefig("images/02-feature-maps.png", dpi=90, bbox_inches="tight")
plt.show()

# %% [markdown]
# **Try it:** use `stride=2` in the tiny im2col example and count the columns; replace the
# blur by your own filter; train with `nn.Conv2d(1, 16, 3, ...)` and compare the filters.

# %% [markdown]
# ## Exercises
#
# Fill in each function, run its cell, and read what the check says: it runs your function
# beside minidl's own implementation and names what differs. (Worked solutions are in
# `docs/tutorials/solutions/ex02.py`; try first.)
#
# **1. im2col of one image.** For `x` of shape $(C, H, W)$, a $k \times k$ filter,
# `stride` and zero padding `pad`, return the $(C k^2, H_{out} W_{out})$ matrix whose row
# $(c k + i) k + j$ holds tap $(c, i, j)$ of every output position.

# %%
from tutorial.ex02 import check_im2col, check_col2im, check_conv2d_forward


def im2col(x, k, stride, pad):
    raise NotImplementedError          # your code here


check_im2col(im2col)

# %% [markdown]
# **2. col2im.** The adjoint: given such a matrix `cols` and the image's `shape`
# $(C, H, W)$, add every entry back to the pixel it was copied from.

# %%
def col2im(cols, shape, k, stride, pad):
    raise NotImplementedError          # your code here


check_col2im(col2im)

# %% [markdown]
# **3. A convolution as one product per image.** For a batch `x` $(N, C, H, W)$, `weight`
# $(O, C, k, k)$ and `bias` $(O,)$, return the $(N, O, H_{out}, W_{out})$ output using your
# `im2col` and a matrix product.

# %%
def conv2d_forward(x, weight, bias, stride, pad):
    raise NotImplementedError          # your code here


check_conv2d_forward(conv2d_forward)

# %% [markdown]
# Next: [3. Pooling, dropout and the loss](03-pooling-dropout-loss.ipynb).
