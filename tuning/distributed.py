"""Deprecated: what this module held now lives with the concept it belongs to.

- the commands ``create``, ``worker``, ``fail-stale``, ``grpc-proxy`` and
  ``run --workers K``: ``tuning.commands.create``, ``.worker``, ``.fail_stale``,
  ``.grpc_proxy`` and ``.run`` (each module's ``run(args)``);
- ``open_worker_storage``, ``default_threads``, ``HEARTBEAT_INTERVAL``, ``GRACE_FACTOR``:
  ``tuning.workers`` (the worker loop, the one engine of every command that runs trials);
- ``storage_kind``, ``refuse_sqlite``, ``SQLITE_REFUSED``: ``tuning.storage``;
- ``load_any_study``: ``tuning.study``.

The old names still work here, with a ``DeprecationWarning`` naming the new place.
"""
from __future__ import annotations

import importlib
import warnings

_MOVED = {
    "storage_kind": ("tuning.storage", "storage_kind"),
    "refuse_sqlite": ("tuning.storage", "refuse_sqlite"),
    "SQLITE_REFUSED": ("tuning.storage", "SQLITE_REFUSED"),
    "open_worker_storage": ("tuning.workers", "open_worker_storage"),
    "default_threads": ("tuning.workers", "default_threads"),
    "HEARTBEAT_INTERVAL": ("tuning.workers", "HEARTBEAT_INTERVAL"),
    "GRACE_FACTOR": ("tuning.workers", "GRACE_FACTOR"),
    "load_any_study": ("tuning.study", "load_any_study"),
    "EXIT_INTERRUPTED": ("tuning.commands.options", "EXIT_INTERRUPTED"),
    "POLL_SECONDS": ("tuning.commands.run", "POLL_SECONDS"),
    "cmd_create": ("tuning.commands.create", "run"),
    "cmd_worker": ("tuning.commands.worker", "run"),
    "cmd_fail_stale": ("tuning.commands.fail_stale", "run"),
    "cmd_grpc_proxy": ("tuning.commands.grpc_proxy", "run"),
    "run_local_workers": ("tuning.commands.run", "run"),
}
_GONE = {
    "add_commands": "the commands are modules of tuning.commands; "
                    "tuning.commands.add_commands(subparsers) adds them all",
    "add_run_options": "`run --workers` is an option of tuning.commands.run",
}


def __getattr__(name):
    if name in _MOVED:
        module, attr = _MOVED[name]
        warnings.warn(f"tuning.distributed.{name} is deprecated: use {module}.{attr}",
                      DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module(module), attr)
    if name in _GONE:
        raise AttributeError(f"tuning.distributed.{name} was removed: {_GONE[name]}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
