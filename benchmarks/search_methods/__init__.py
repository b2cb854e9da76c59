"""Every search method of the lab side by side, on the same budget of work.

    python -m benchmarks.search_methods                     # the full grid (hours; resumable)
    python -m benchmarks.search_methods --tasks lab-mlp --methods random tpe grid --seeds 0
    python -m benchmarks.search_methods --report-only       # tables and pictures from the cells
    python -m benchmarks.search_methods --quick --results /tmp/sm   # proves the script

A run of a method on a task with a seed is a *cell*; its budget is counted in work,
training images processed (epochs x images, summed over the run's trials), so a method
that prunes or stops early gets credit for what it saves, and wall time is recorded
beside it with the machine's load.  Each cell is saved when it finishes, so a rerun
skips the finished cells and several processes (one per core) can fill one grid.

- ``methods``: the tasks and the methods (one entry per method);
- ``cells``: one cell: the budgeted search, the retrain of its best configuration, the
  file and its lock;
- ``report``: the tables, the anytime pictures (``--report-only`` rebuilds them);
- ``cli``: the command line.

Results: ``benchmarks/results/search_methods/`` (``search_methods.md``/``.json``,
``anytime_TASK.png``, ``cells/``); the page ``docs/search-methods.md`` explains them.
"""
