"""Kernel benchmark: each hot operation, five ways, timed side by side.

    python -m benchmarks.kernels [--quick] [--threads 1 2] [--out DIR]

Operations: im2col, col2im, conv2d forward and backward (im2col + GEMM; backward from the
forward's columns, the GEMMs of ``nn.Conv2d.backward``), max and average pooling forward
and backward, linear forward and backward, the Adam update, and each layer's forward +
backward as the training step runs it. At the real shapes, also the stride-1 convolution
without im2col (``conv2d_direct_*`` twins: forward; weight + input gradient).

Implementations (columns):

- ``naive``  — plain Python loops, the teaching versions in ``minidl/kernels/naive.py``;
  timed on the *small* shape only (it is 10^3-10^5 times slower);
- ``numpy``  — the vectorised NumPy twins ``minidl.kernels.<name>_reference`` (for conv:
  ``im2col_reference`` + ``np.matmul``; for linear, plain ``@``);
- ``numba``  — the Numba twins ``minidl.kernels.<name>_numba`` (for conv: ``im2col_numba``
  + the same GEMM);
- ``minidl`` — what a minidl user gets, with every dispatch and check it does: the layer's
  forward (``nn.Conv2d``, ``nn.MaxPool2d``, ...), ``optim.Adam.step()``, and the rows
  "<Layer> layer fwd+bwd": the layer's forward then backward (a layer frees its cache in
  backward, so backward alone is not timed) against ``torch.nn`` with autograd;
- ``torch``  — PyTorch's CPU operator for the same computation (``F.unfold``/``F.fold``,
  ``F.conv2d``/``aten.convolution_backward``, ``F.max_pool2d``/its ``aten`` backward, ...,
  ``optim.Adam.step()``), when PyTorch is installed; it runs in a worker process of its
  own (see ``TorchKernels``), its blocks alternating with the others';
- ``cupy``   — the NumPy twins run on CuPy arrays, synchronised, when a GPU is present
  (skipped otherwise).

Shapes: a small one for every column, and the lab CNN's real shapes (issue 5) for all but
``naive``. Each timing is the median of interleaved rounds of calibrated blocks (see
``common``). Before timing, every implementation's output is compared with the ``numpy``
twin's (``max |diff|`` in the JSON): a benchmark of a wrong kernel is worthless.

The package, by concern: ``cases`` (the case table: operations, shapes, implementations),
``timing`` (output checks, calibrated interleaved timing, the torch worker), ``report``
(the Markdown tables), ``charts`` (the PNG charts) and ``cli`` (``main``: the run).
"""
from __future__ import annotations

from .cases import IMPLS, Case, Env, Impl, build_cases  # noqa: F401
from .charts import charts  # noqa: F401
from .cli import main  # noqa: F401
from .report import render  # noqa: F401
from .timing import TorchKernels, calibrate_block, measure_case, output_diff  # noqa: F401
