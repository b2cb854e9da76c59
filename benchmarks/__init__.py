"""Benchmarks for minidl: kernels, end-to-end training, PyTorch parity, cold start.

Each is a runnable module that prints its table and writes JSON, Markdown and (for the
speed tables) PNG bar charts to ``benchmarks/results/``::

    python -m benchmarks.kernels     # one hot operation at a time, five implementations
    python -m benchmarks.training    # the five models, minidl vs PyTorch, threads 1 and 2
    python -m benchmarks.parity      # max abs/rel difference to PyTorch, float64 and float32
    python -m benchmarks.coldstart   # new-process import + first CNN step; first-ever compile

``--quick`` runs a tiny version of each (the smoke test uses it); ``--out DIR`` writes
elsewhere. Benchmarks measure and report; they are never tests with a time limit.
"""
