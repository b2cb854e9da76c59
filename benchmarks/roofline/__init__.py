"""How far each training step is from what this CPU can do: a roofline for every model.

    python -m benchmarks.roofline [--quick] [--threads 1 2] [--models ...] [--out DIR]
                                  [--isa host|avx2] [--no-torch]

A ratio to PyTorch says who is faster; it does not say how far either is from the
machine's limit, and it moves with the CPU (issue 29).  This script measures the limit
and puts both frameworks against it.

**1. The machine's limits** (measured here, never taken from a data sheet):

- *Peak float32 multiply-add throughput*, per vector route the CPU has (AVX-512: 16
  lanes in ``zmm`` registers; AVX2: 8 lanes in ``ymm``): a loop of independent fused
  multiply-adds on accumulators that stay in registers (24 with AVX-512's 32 registers,
  12 with AVX2's 16), emitted as LLVM vector code through a Numba intrinsic and checked
  in the generated assembly (``vfmadd...ps`` on the route's registers, no memory
  operand).  Each route runs in a process of its own; AVX2 with
  ``NUMBA_CPU_NAME=haswell`` (``common.ISA_ENV``, the mechanism of ``--isa avx2``).
  On 1 thread and on every usable core at once (Python threads running the ``nogil``
  kernel, started together); flops = 2 per multiply-add.
- *Memory bandwidth*: STREAM's copy (``c = a``) and triad (``a = b + s c``), on 1 thread
  and on all usable cores, with working sets sized to each level: half of L1d and half
  of L2 per thread (private caches: every thread its own arrays), 8 x L2 (in L3, shared)
  and at least twice L3 (memory).  Bytes as STREAM counts them: copy one read and one
  write per element, triad two reads and one write (write-allocate traffic not counted).
- *Fork-join latency*: an empty ``prange`` over n threads on minidl's threading setup
  (Numba's OpenMP layer, ``minidl.threads``) -- the least a step of a recurrent loop
  split over threads costs, since each step waits for the previous one.

Rates are per CPU second of the thread doing the work (``time.thread_time``: time other
processes held the core is not counted; the wall-clock rates are recorded beside), and
every limit is the best of its repeats; medians are recorded beside them.  On all cores
the rate is the sum of the threads' rates: on a loaded machine the threads may not all
run at once, so for shared levels (L3, memory) that sum can overstate what they deliver
together -- the bound is then lower, still a lower bound.

**2. A lower bound on each training step**, from its operations (``model_ops``): each
operation's time is at least ``max(flops / peak, bytes / bandwidth, syncs x latency)``,
with the bandwidth of the cache level its working set (every array it touches, once)
fits in, and the latency term only where the work is split over threads (``syncs`` = 1,
or T for a recurrent loop of T steps).  On n threads the bound is the best over
1..n threads (an implementation may use fewer); so a loop too short to pay for its
synchronisation is bound by its one-thread compute, and a row whose best is the
latency term is *latency-bound*.  The step's bound is the sum over its operations.

Counting.  **Flops**: 2 per multiply-add of every matrix product and convolution (the
products a layer must do: a first layer computes no input gradient, as in both
frameworks), 1 per bias addition; element-wise work has nominal counts (1 per element
for ReLU, dropout, pooling comparisons; 7 forward / 9 backward for BatchNorm; ~10 per
hidden unit and step for an LSTM or GRU cell; 13 per parameter for Adam) -- these
operations sit far below the machine balance, so their bound is set by bytes either way.
**Bytes**: each operand read once and each result written once, per operation, in
float32 (4 bytes); masks (dropout, max-pooling's choice) 1 byte per element; what a
recurrent loop keeps for its backward (gate activations, cell states) counted as
written.  An operation is a layer's forward or backward (a recurrent layer's is the sum
of its parts: the projection and loop forward, the loop backward, the weight gradients), the loss (forward and
backward), and the optimizer step.  Reshapes (Flatten, ImageToSequence) are views:
bound 0.

**3. The measured steps.**  Each framework in its own worker process
(``benchmarks.training``'s runner: same models, data, Adam, loss).  *Step*: blocks of
steps alternated between the two frameworks, median over rounds (as
``benchmarks.training``).  *Per operation*: steps with a timer around each layer's
forward and backward, the loss and the optimizer step, median over N steps (N in the
report).  minidl: the layers are called one by one, as ``Sequential`` does.  PyTorch:
each layer's forward call is timed; its backward is the time between the autograd
hooks on consecutive layer outputs (a hook on a tensor fires just before the gradient
function that made it runs), so one ``loss.backward()`` runs as usual.  For minidl's
recurrent layers, the loop's own kernels (``minidl.kernels.rnn``) are timed too.
Clock: on one thread the worker's CPU time (all the work runs on the calling thread, so
it is the time the work held a core, whatever other processes did), on more the wall
clock; both are recorded.  Multiples are measured time / bound: 1.0 would be the
machine's limit.  ``--replot`` writes the report again from the JSON.

The package: ``limits`` (part 1), ``ops`` (part 2), ``steps`` (part 3), ``report``
and ``cli`` (``python -m benchmarks.roofline``).
"""
from __future__ import annotations

from .. import common

OUT_DIR = common.RESULTS_DIR / "roofline"
FLOAT = 4                       # bytes of a float32
ALL_MODELS = ["lab_mlp_256", "lab_mlp_64", "mlp_3layer", "cnn_2conv", "cnn_small",
              "cnn_2conv_bn", "lstm_128", "gru_128"]
# route -> (float32 lanes, accumulators in registers, register name, environment)
ROUTES = {"avx512": (16, 24, "zmm", {}),
          "avx2": (8, 12, "ymm", {"NUMBA_CPU_NAME": "haswell"})}
