"""The ``tuning`` commands: one module per command, found by ``tuning.cli``.

A command module is a module of this package that defines

    NAME = "plot"                       # the command: ``python -m tuning plot``
    HELP = "write the study's plots"    # its line in ``python -m tuning --help``
    DESCRIPTION = "..."                 # optional: the text of ``tuning plot --help``

    def add_arguments(parser):          # its options, on an argparse parser of its own;
        options.add_study_location(parser)   # shared options come from ``.options``
        parser.add_argument("--out", required=True)

    def run(args) -> int:               # do it; return the exit status
        ...                             # raise TuningError for a user error (one line,
                                        # status 1); heavy imports go inside ``run``

Any module here with a ``NAME`` is a command (``options`` is the shared options, not a
command); ``ORDER`` only sets where the known ones appear in ``--help``, new ones follow
in alphabetical order.  ``tuning.cli`` builds the parser from ``command_modules()`` and
calls ``args.handler(args)`` (``run``); it turns exceptions into one-line messages and
Ctrl-C into status 130.

The commands, by concept:

- a study's trials: ``run`` (in this process: the worker loop with one worker;
  ``--workers K``: K worker processes), ``worker``, ``create``, ``enqueue``;
- reading a study: ``studies``, ``best``, ``trials``, ``plot``;
- using its result: ``retrain``;
- keeping shared studies healthy: ``fail-stale``, ``grpc-proxy``.
"""
from __future__ import annotations

import importlib
import pkgutil

ORDER = ("run", "studies", "best", "trials", "enqueue", "plot", "retrain", "create",
         "worker", "fail-stale", "grpc-proxy")


def command_modules() -> list:
    """Every command module of this package, in ``ORDER`` and then by name."""
    found = []
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_") or info.name == "options":
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(module, "NAME"):
            found.append(module)
    rank = {name: i for i, name in enumerate(ORDER)}
    return sorted(found, key=lambda m: (rank.get(m.NAME, len(ORDER)), m.NAME))


def add_commands(subparsers) -> dict:
    """Add every command to ``subparsers``; ``{name: module}``."""
    commands = {}
    for module in command_modules():
        parser = subparsers.add_parser(module.NAME, help=module.HELP,
                                       description=getattr(module, "DESCRIPTION", None))
        module.add_arguments(parser)
        parser.set_defaults(handler=module.run)
        commands[module.NAME] = module
    return commands
