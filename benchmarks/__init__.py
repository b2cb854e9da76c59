"""Benchmarks for minidl and tuning: speed, parity, accuracy and search against PyTorch.

Each is a runnable module that prints its table and writes JSON, Markdown and (for the
speed tables) PNG charts to ``benchmarks/results/``::

    python -m benchmarks.kernels         # one hot operation at a time, five implementations
    python -m benchmarks.training        # the lab's models, minidl vs PyTorch, threads 1 and 2
    python -m benchmarks.roofline        # each training step against this CPU's limits
    python -m benchmarks.threading       # Numba's threading layers: launch cost, training
    python -m benchmarks.coldstart       # new-process import + first CNN step; first compile
    python -m benchmarks.parity          # max abs/rel difference to PyTorch, float64/float32
    python -m benchmarks.accuracy        # test accuracy after 5 epochs, minidl and PyTorch
    python -m benchmarks.hypergradient   # final error against the initial learning rate
    python -m benchmarks.gpu             # the CuPy path against PyTorch CUDA (needs a GPU)
    python -m benchmarks.rl_sampler      # --sampler rl against random and tpe
    python -m benchmarks.search_methods  # every search method on one budget, anytime curves
    python -m benchmarks.cnn_study       # a cnn study to 0.93 and the evidence it is not luck
    python -m benchmarks.soak            # workers on PostgreSQL under SIGKILLs and a restart

``--quick`` runs a tiny version of each (the smoke tests use it; the soak takes
``--minutes``, the cnn study ``--search-minutes``); ``--out DIR`` writes elsewhere.
Benchmarks measure and report; they are never tests with a time limit.  Shared parts:
``common`` (command line, timing, writers), ``machine`` (the machine's facts, with every
result), ``zoo`` (the models), ``memory`` (peak memory in a fresh process), ``pgserver``
(a PostgreSQL server for the soak).
"""
