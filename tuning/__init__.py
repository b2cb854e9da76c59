"""tuning: Optuna studies over minidl models, as in the hyperparameter-tuning lab.

- ``tuning.spaces``: search spaces ``trial -> config`` (``lab-mlp``, ``mlp``, ``cnn``).
- ``tuning.models``: ``config -> minidl.nn.Module`` (``build_model``, ``build_lab_nnet``).
- ``tuning.objective``: the lab-shaped ``Objective(train, val, epochs, ...)``.
- ``tuning.study``: stored study settings, samplers, pruners, creating/opening studies.
- ``tuning.storage``: journal file by default, any Optuna storage URL.
- ``tuning.workers``: the worker loop, the one engine that runs trials (``run``, ``worker``).
- ``tuning.commands``: one module per command (``run``, ``best``, ``trials``, ``enqueue``,
  ``plot``, ``retrain``, ``studies``, ``create``, ``worker``, ``fail-stale``,
  ``grpc-proxy``), the options they share in ``tuning.commands.options``.
- ``tuning.cli``: ``python -m tuning COMMAND``: the parser and the one-line errors.
- ``tuning.errors``: ``TuningError`` and the package's other errors.
- ``tuning.results``: what ``retrain`` writes; ``tuning.load_model(folder)`` gives its
  trained model back.
"""


def load_model(folder):
    """The trained model of a ``tuning retrain --out FOLDER`` folder (see ``tuning.results``)."""
    from .results import load_model as _load  # noqa: PLC0415 - keeps `import tuning` light
    return _load(folder)
