# Tutorial 6: the same kernel four ways (Python loops, NumPy, Numba, PyTorch), timed here.

# %% [markdown]
# # 6. Kernels and speed: loops, NumPy, Numba and PyTorch
#
# A layer's arithmetic is a handful of *kernels*: im2col (unfold a convolution's input into
# columns), GEMM (a matrix product) and pooling, among others. minidl keeps every kernel
# in up to three forms, beside one another:
#
# | form | where | what it is |
# |---|---|---|
# | naive loops | `minidl.kernels.naive` | one scalar at a time, straight from the formula; the tests' oracle |
# | NumPy reference | `minidl.kernels.<name>_reference` | vectorised NumPy, written to be read; what the tests trust |
# | Numba twin | `minidl.kernels.<name>_numba` | the same loops compiled to machine code, parallel, vectorised |
#
# and a **registry** (`minidl/kernels/registry.py`) that decides, call by call, which one a
# layer runs: the first fast route whose condition holds (NumPy arrays, float32, the CPU's
# vector instructions, big enough to pay), else the reference. This notebook times the three
# forms, and PyTorch's own CPU operators when PyTorch is installed, **on your machine**, for
# im2col, GEMM and max pooling.
#
# These are illustrative timings from one short run (a few timed blocks per kernel, on a
# machine that may be doing other things), not a benchmark: the project's measurements are
# made by
# `python -m benchmarks.kernels`, which interleaves the implementations, calibrates its
# blocks and runs many more repeats.

# %%
import os, time
SMALL = os.environ.get("MINIDL_TUTORIAL_SMALL", "") not in ("", "0")   # the test suite sets it
%matplotlib inline

import platform

import numpy as np
import matplotlib.pyplot as plt

import minidl
from minidl import kernels
from minidl.kernels import gemm, naive, registry
from tutorial import record               # docs/tutorials/tutorial: stated values

try:
    import torch
    import torch.nn.functional as F
except ImportError:
    torch = None
    print("PyTorch is not installed: the PyTorch column below is skipped.")

REPEATS = 3 if SMALL else 15          # timed blocks per measurement
MIN_BLOCK_S = 0.002 if SMALL else 0.005  # each block lasts at least this long
print("small mode" if SMALL else "full mode", f"- {REPEATS} timed blocks per measurement")

# %% [markdown]
# ## The machine
#
# Speed depends on the CPU: how many cores, and which **vector instructions** it has. A
# vector instruction does the same operation on several numbers at once: AVX2 works on 8
# float32 numbers (256 bits) per instruction, AVX-512 on 16, and FMA computes $a \cdot b + c$
# in one instruction. minidl's GEMM micro-kernels are written for AVX-512 or AVX2 and pick
# one from the CPU that Numba compiles for (`minidl.kernels.gemm.isa()`).
#
# We time on **one thread** (`THREADS = 1`): the comparison is then about the code (Python
# loops, NumPy's vectorised calls, compiled loops, PyTorch's C++), not about how many
# cores each library manages to use, and one thread is also what a busy machine gives
# reliably. Set `THREADS` to `minidl.get_num_threads()` and rerun to add the cores.

# %%
def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def vector_extensions():
    try:
        import llvmlite.binding as llvm
        features = llvm.get_host_cpu_features()
    except Exception as exc:                       # llvmlite comes with Numba
        return f"(could not ask llvmlite: {exc})"
    wanted = ["sse4.2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512vnni",
              "avx512bf16", "amx-tile", "neon", "sve"]
    return " ".join(f for f in wanted if features.get(f)) or "none of " + " ".join(wanted)


print(f"CPU:                {cpu_name()} ({os.cpu_count()} logical cores)")
print(f"vector extensions:  {vector_extensions()}")
print(f"minidl GEMM route:  {gemm.isa() or 'none (NumPy BLAS everywhere)'}")
print(f"minidl threads:     {minidl.get_num_threads()} by default")

THREADS = 1                       # try minidl.get_num_threads(): all the cores minidl uses
minidl.set_num_threads(THREADS)   # minidl's Numba kernels and NumPy's BLAS
if torch is not None:
    torch.set_num_threads(THREADS)
print(f"timed on {THREADS} thread(s); NumPy {np.__version__}"
      + (f", PyTorch {torch.__version__}" if torch is not None else ", PyTorch not installed"))

# %% [markdown]
# ## The three kernels
#
# **im2col** copies every $k \times k$ receptive field of the input $x$ (shape $N, C, H, W$)
# into a column, so that a convolution becomes one matrix product:
#
# $$\mathrm{cols}\big[(c\,k + i)\,k + j,\; n L + o_h W_o + o_w\big] = x_{pad}[n, c,\; o_h s + i,\; o_w s + j].$$
#
# **GEMM** is the matrix product $C = AB$, $C_{mn} = \sum_k A_{mk} B_{kn}$: $M N K$
# multiply-adds. We use the lab MLP's first layer, $x W^\top$ with a batch of 64 images of
# 784 pixels and 256 hidden units. (The naive oracle is `linear_forward_naive`, $y = x W^\top + b$,
# run with $b = 0$.)
#
# **Max pooling** with a $2 \times 2$ window and stride 2 keeps the largest value of each
# window and the index of the winner (the backward pass sends the gradient there).
#
# Each kernel is timed on two shapes: a **tiny** one, where the naive loops finish in a
# moment, and a **real** one, the sizes of the lab's networks, where the loops would take
# minutes and are left out. Before timing, every implementation's output is compared with
# the NumPy reference: a fast wrong kernel is worthless.

# %%
rng = np.random.default_rng(0)


def images(shape):
    return rng.standard_normal(shape).astype(np.float32)


def naive_im2col(x, k, pad):
    cols = naive.im2col_naive(x, k, 1, pad)            # (N, C*k*k, L), one block per image
    return cols.transpose(1, 0, 2).reshape(cols.shape[1], -1)   # -> (C*k*k, N*L)


def torch_im2col(x, k, pad):
    cols = F.unfold(torch.from_numpy(x), k, padding=pad)  # (N, C*k*k, L), like the naive one
    return cols.permute(1, 0, 2).reshape(cols.shape[1], -1)


def im2col_case(shape):
    x = images(shape)
    return {
        "naive": lambda: naive_im2col(x, 3, 1),
        "numpy": lambda: kernels.im2col_reference(x, 3, 1, 1),
        "numba": lambda: kernels.im2col_numba(x, 3, 1, 1),
        "torch": lambda: torch_im2col(x, 3, 1),
    }, ("im2col", (x, 3, 1, 1))


def gemm_case(m, k, n):
    x, w = images((m, k)), images((n, k))               # x @ w.T, as nn.Linear computes it
    xt, wt = (torch.from_numpy(x), torch.from_numpy(w)) if torch is not None else (None, None)
    return {
        "naive": lambda: naive.linear_forward_naive(x, w, np.zeros(n, np.float32)),
        "numpy": lambda: kernels.matmul_reference(x, w.T),
        "numba": lambda: kernels.matmul_numba(x, w.T),
        "torch": lambda: torch.matmul(xt, wt.T),
    }, ("matmul", (x, w.T))


def pool_case(shape):
    x = images(shape)
    xt = torch.from_numpy(x) if torch is not None else None
    return {
        "naive": lambda: naive.max_pool2d_forward_naive(x, 2, 2),
        "numpy": lambda: kernels.max_pool2d_forward_reference(x, 2),
        "numba": lambda: kernels.max_pool2d_forward_numba(x, 2),
        "torch": lambda: F.max_pool2d(xt, 2, return_indices=True),
    }, ("max_pool2d_forward", (x, 2))


BATCH = 16 if SMALL else 64
CASES = {
    "tiny": {
        "im2col 2x3x10x10, k3": im2col_case((2, 3, 10, 10)),
        "GEMM 16x64 @ 64x32": gemm_case(16, 64, 32),
        "max-pool 2x4x16x16": pool_case((2, 4, 16, 16)),
    },
    "real": {
        f"im2col {BATCH}x32x14x14, k3": im2col_case((BATCH, 32, 14, 14)),
        "GEMM 64x784 @ 784x256": gemm_case(64, 784, 256),
        f"max-pool {BATCH}x32x28x28": pool_case((BATCH, 32, 28, 28)),
    },
}
IMPLEMENTATIONS = ["naive", "numpy", "numba"] + (["torch"] if torch is not None else [])
print("implementations timed:", ", ".join(IMPLEMENTATIONS))

# %% [markdown]
# ## Which route does a layer take?
#
# `registry.OPERATIONS[name].pick(*args)` answers without running anything: the fast route
# the registry would take for these arguments, or `None` for the reference. Look at the GEMM
# rows: the tiny product goes to NumPy's BLAS (below `gemm.MIN_FLOPS` multiply-adds the
# call overhead of the Numba kernel does not pay), the real one to the Numba micro-kernel
# when this CPU has AVX-512 or AVX2 (with AVX2 only, also more than one thread).
# `python -m minidl.kernels` prints the routes of every operation.

# %%
for size, cases in CASES.items():
    for label, (_, (operation, args)) in cases.items():
        route = registry.OPERATIONS[operation].pick(*args)
        print(f"{size:4s}  {label:28s} -> {'NumPy reference' if route is None else route.name}")

# %% [markdown]
# ## Timing
#
# `block_times` calls the function once unmeasured (Numba compiles a kernel, or loads it from
# its on-disk cache, at its first call), then runs `REPEATS` blocks of calls, each block long
# enough for the clock, and returns the time per call of every block. We print the fastest
# block and the median one, and chart the **fastest**: other programs on the machine can
# only make a block slower, never faster, so the minimum is the best estimate of what the
# kernel itself costs (the advice of Python's `timeit`), while the median is what you would
# typically see. A large gap between the two says the machine was busy. The first call's
# time is printed for the Numba twins: that is the one-off cost you pay in a fresh process.
#
# We time **one library at a time**: all kernels with NumPy, then all with Numba, then all
# with PyTorch, with a short pause between. A thread pool (OpenBLAS's, Numba's OpenMP
# workers, PyTorch's own OpenMP) keeps its idle threads spinning for a while after each
# call; on a machine with few cores they would take the cores from the next call of
# another library, and both would look slower than they are.

# %%
def block_times(function, repeats=REPEATS, min_block_s=MIN_BLOCK_S):
    """Seconds per call of each of ``repeats`` timed blocks, and the first call's time."""
    start = time.perf_counter()
    function()
    first = time.perf_counter() - start
    number = max(1, int(min_block_s / max(first, 1e-7)))
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(number):
            function()
        samples.append((time.perf_counter() - start) / number)
    return np.array(samples), first


def as_arrays(result):
    parts = result if isinstance(result, tuple) else (result,)
    return [np.asarray(p.detach().numpy() if hasattr(p, "detach") else p) for p in parts]


references = {(size, label): as_arrays(functions["numpy"]())
              for size, cases in CASES.items() for label, (functions, _) in cases.items()}
timings = {key: {} for key in references}        # (size, label) -> {implementation: s/call}
for impl in IMPLEMENTATIONS:                     # one library at a time (see above)
    time.sleep(0.5)                              # the previous one's idle threads go to sleep
    for size, cases in CASES.items():
        if impl == "naive" and size == "real":
            continue                             # minutes per call: left out
        for label, (functions, _) in cases.items():
            got = as_arrays(functions[impl]())
            diff = max(float(np.max(np.abs(g.astype(np.float64) - r)))
                       for g, r in zip(got, references[(size, label)]))
            if diff > 1e-3:
                raise AssertionError(f"{label}: {impl} differs from the NumPy reference by {diff}")
            samples, first = block_times(functions[impl],
                                         repeats=1 if impl == "naive" else REPEATS)
            timings[(size, label)][impl] = samples.min()
            compiled = f", first call {first * 1e3:.0f} ms" if impl == "numba" else ""
            print(f"{impl:6s} {size:4s}  {label:28s} fastest {samples.min() * 1e6:10,.1f} us, "
                  f"median {np.median(samples) * 1e6:10,.1f} us per call "
                  f"(max |diff| {diff:.1e}{compiled})")

# %% [markdown]
# ## The chart
#
# Time per call (the fastest block) on a **logarithmic** axis (each grid line is a factor
# of 10), lower is faster. Timings depend on the machine and on what else it is doing, so
# every number below is filled in from this run; the reasons are what to expect, and you
# can compare them with what your run measured.
#
# - **naive vs the rest** (left panel): Python executes one bytecode at a time, some
#   $10^7$ simple operations per second, while compiled vector code does several float32
#   operations per instruction, billions per second. In this run the naive loops took
#   {{naive_lo:,.1f}} ({{naive_lo_kernel}}) to {{naive_hi:,.0f}} ({{naive_hi_kernel}})
#   times NumPy's time on the tiny shapes. Expect the gap to be largest where NumPy's work
#   is one compiled call, such as the GEMM's $MNK$ multiply-adds in BLAS, and smallest
#   where NumPy's own version is a handful of small calls, each with microseconds of
#   overhead.
# - **NumPy vs Numba**: expect NumPy to hold its own where each call does a lot of work
#   (the real GEMM is one BLAS call; the real im2col is nine large strided copies, limited
#   by memory whoever does them) and to lose where the work is many small steps: the tiny
#   shapes, where a NumPy call's overhead is more than the arithmetic, and max pooling at
#   any size, where the reference makes temporary arrays for each of the window's offsets
#   and keeps the winner's index, while the Numba twin does it all in one pass. A tiny GEMM
#   is one BLAS call against the Numba kernel's set-up, which is why the registry sends
#   it to NumPy (the routes printed above). This run, Numba's speed-up over NumPy:
#   {{numba_ratios}}.
# - **minidl vs PyTorch**: PyTorch is not necessarily ahead. Its general-purpose operators
#   (`unfold`, max pooling that also returns indices) pay for their generality, while
#   GEMMs all end in tuned vector kernels. This run, minidl's Numba twins against
#   PyTorch, as PyTorch's time over Numba's: {{torch_ratios}}. Which side wins a row
#   depends on the machine: the project measures these ratios properly, many runs each,
#   in `benchmarks/` (`python -m benchmarks.kernels`).

# %%
def ratio_list(numerator, denominator):
    """'kernel: ratio' for every kernel timed by both implementations."""
    return "; ".join(f"{size} {label.split(' ')[0]} {row[numerator] / row[denominator]:.2g}x"
                     for (size, label), row in timings.items()
                     if numerator in row and denominator in row)


naive_gap = {label: row["naive"] / row["numpy"] for (size, label), row in timings.items()
             if "naive" in row}
record(naive_lo=min(naive_gap.values()), naive_lo_kernel=min(naive_gap, key=naive_gap.get),
       naive_hi=max(naive_gap.values()), naive_hi_kernel=max(naive_gap, key=naive_gap.get),
       numba_ratios=ratio_list("numpy", "numba"),
       torch_ratios=(ratio_list("torch", "numba") if torch is not None
                     else "not measured (PyTorch is not installed)"))

fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
colors = {"naive": "C3", "numpy": "C0", "numba": "C2", "torch": "C1"}
for ax, size in zip(axes, CASES):
    labels = list(CASES[size])
    impls = [i for i in IMPLEMENTATIONS if any(i in timings[(size, l)] for l in labels)]
    height = 0.8 / len(impls)
    for j, impl in enumerate(impls):
        ys = [i + (j - (len(impls) - 1) / 2) * height for i in range(len(labels))]
        xs = [timings[(size, l)].get(impl, np.nan) * 1e6 for l in labels]
        ax.barh(ys, xs, height=height, color=colors[impl], label=impl)
    ax.set_yticks(range(len(labels)), [l.replace(" ", "\n", 1) for l in labels], fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("microseconds per call (log scale)")
    ax.set_ylabel("kernel and shape")
    ax.set_title(f"{size} shapes" + (" (naive loops left out)" if size == "real" else ""),
                 fontsize=10)
    ax.grid(axis="x", which="major", alpha=0.4)
fig.legend(*axes[0].get_legend_handles_labels(), loc="lower center", ncol=len(IMPLEMENTATIONS),
           fontsize=9)
fig.suptitle(f"Kernel time on {cpu_name()}, {THREADS} thread(s)", fontsize=10)
fig.tight_layout(rect=(0, 0.07, 1, 1))
plt.show()

# %% [markdown]
# ## Speed-ups, as ratios
#
# The same numbers as ratios: how many times faster than the NumPy reference each
# implementation is (above 1: faster). Ratios travel better between machines than
# microseconds do, but they still depend on the core count, the vector width and what
# else the machine is doing; rerun the timing cell to see how much they move.

# %%
print(f"{'':4s}  {'kernel':28s}" + "".join(f"{impl:>10s}" for impl in IMPLEMENTATIONS))
for (size, label), row in timings.items():
    cells = "".join(f"{row['numpy'] / row[impl]:>9.3g}x" if impl in row else f"{'-':>10s}"
                    for impl in IMPLEMENTATIONS)
    print(f"{size:4s}  {label:28s}{cells}")

# %% [markdown]
# ## Read the kernels
#
# Open the three forms of one kernel side by side and match the lines to the formula:
#
# - `minidl/kernels/naive.py`: `im2col_naive`, six nested loops, one pixel per iteration;
# - `minidl/kernels/im2col.py`: `im2col_reference`, one strided slice per kernel offset
#   $(i, j)$, $k^2$ NumPy copies in all;
# - `minidl/kernels/_im2col_numba.py`: `im2col_numba`, the loops again, compiled, with the
#   rows of `cols` split between threads so that each thread owns the memory it writes.
#
# The GEMM's Numba form (`_gemm_numba.py`) is different: a register-blocked micro-kernel
# that keeps a tile of $C$ in vector registers while it streams $A$ and $B$, the same idea
# as the BLAS libraries. `gemm.py` explains the tile sizes for AVX-512 and AVX2.
#
# ## Try it
#
# - Set `THREADS = minidl.get_num_threads()` and rerun: which kernels gain the most from
#   more cores?
# - Time `kernels.im2col` (the registry's choice) instead of `kernels.im2col_numba`: the
#   difference is the cost of the dispatch.
# - Add average pooling (`naive.avg_pool2d_forward_naive`, `kernels.avg_pool2d_forward_reference`,
#   `kernels.avg_pool2d_forward_numba`, `F.avg_pool2d`).

# %% [markdown]
# ## Exercises
#
# Fill in each function, run its cell, and read what the check says: it runs your function
# beside minidl's own implementation and names what differs. (Worked solutions are in
# `docs/tutorials/solutions/ex06.py`; try first.)
#
# **1. Max pooling without loops over positions.** For `x` $(N, C, H, W)$ and
# $k \times k$ windows with stride $k$, return `(out, idx)` as minidl's kernels do: the
# first maximum in row-major order wins ties, and `idx` is the flat position $h W + w$ of
# the winner in the image. Use NumPy (reshape the windows into an axis, then `argmax`).

# %%
from tutorial.ex06 import check_max_pool_forward, check_matmul_blocked


def max_pool_forward(x, k):
    raise NotImplementedError          # your code here


check_max_pool_forward(max_pool_forward)

# %% [markdown]
# **2. A blocked matrix product.** Return `a @ b` computed tile by tile, as a GEMM
# kernel does: loop over `tile` x `tile` blocks of the result and accumulate the products
# of the matching blocks of `a` and `b`. The sizes need not be multiples of `tile`.

# %%
def matmul_blocked(a, b, tile):
    raise NotImplementedError          # your code here


check_matmul_blocked(matmul_blocked)

# %% [markdown]
# Next: [7. A network by hand](07-network-by-hand.ipynb).
