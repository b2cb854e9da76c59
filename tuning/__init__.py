"""tuning: Optuna studies over minidl models, as in the hyperparameter-tuning lab.

- ``tuning.spaces``: the search spaces, each one ``Space`` (sampling ``trial -> config``,
  defaults, model builder, help) in one table, ``SPACES`` (``lab-mlp``, ``mlp``, ``cnn``,
  ``rnn``); ``tuning.spaces.register(space)`` adds one.
- ``tuning.models``: ``build_model(config) -> minidl.nn.Module``, through the table.
- ``tuning.objective``: the lab-shaped ``Objective(train, val, epochs, ...)``.
- ``tuning.study``: stored study settings, samplers, pruners, creating/opening studies.
- ``tuning.storage``: journal file by default, any Optuna storage URL; passwords never
  shown.  ``tuning.journal``: the journal file itself (lock, records, repair).
- ``tuning.workers``: the worker loop, the one engine that runs trials (``run``, ``worker``);
  ``tuning.interrupts``: Ctrl-C and SIGTERM, never lost, exit status 130.
- ``tuning.rl_sampler``: ``--sampler rl``, a policy-gradient controller (an Optuna sampler).
- ``tuning.pbt``: population-based training (``tuning pbt``); ``tuning.population``: a
  population's trials read back.  ``tuning.darts``: gradient-based architecture search.
- ``tuning.commands``: one module per command, found automatically (``python -m tuning
  --help`` lists them), the options they share in ``tuning.commands.options``.
- ``tuning.cli``: ``python -m tuning COMMAND``: the parser and the one-line errors.
- ``tuning.errors``: ``TuningError`` and the package's other errors.
- ``tuning.results``: what ``retrain`` writes beside the model (per-class results,
  pictures); ``tuning.loading``: ``tuning.load_model(folder)``, the trained model back,
  safely for a folder from anyone.
"""


def load_model(folder):
    """The trained model of a ``tuning retrain --out FOLDER`` folder (see ``tuning.loading``)."""
    from .loading import load_model as _load  # noqa: PLC0415 - keeps `import tuning` light
    return _load(folder)
