"""Loading a ``tuning retrain --out`` folder back, safely: ``load_model(folder)``.

A model folder may come from anyone (a download, a colleague's share): ``load_model``
reads only files inside it, checks sizes before reading, and the model's size (counted
from the config by ``model_parameters``, nothing allocated) before building it.  What
``retrain`` writes into the folder is ``tuning.results``'s part.
"""
from __future__ import annotations

import functools
import json
import os
import stat
from pathlib import Path

from minidl.data.idx import file_kind

# A model folder may come from anyone (a download, a colleague's share): load_model reads
# only files inside it, checks sizes before reading, and the model's size before building.

# result.json holds a retrain's numbers, the per-class table and a 10x10 matrix: a few
# kilobytes.  16 MiB is far above that and bounds what a hostile file can make us read.
MAX_RESULT_BYTES = 16 * 2 ** 20
# The most parameters a config may describe: this many times the largest model a search
# space draws (every number of the space at its maximum, see ``largest_space_model``).
PARAMETER_LIMIT_FACTOR = 25


class _LargestTrial:
    """Stands in for a trial to draw a space's largest configuration: every number at the
    top of its range, every numeric (or bool) choice at its maximum, the first of other
    choices (``LSTM``, the larger cell, comes first)."""

    def suggest_int(self, name, low, high, **kwargs):
        return high

    def suggest_float(self, name, low, high, **kwargs):
        return high

    def suggest_categorical(self, name, choices):
        if all(isinstance(c, (int, float)) for c in choices):
            return max(choices)
        return choices[0]

    def set_user_attr(self, key, value):
        pass


def largest_space_model() -> tuple[str, int]:
    """``(space, parameters)`` of the largest configuration any search space draws (see
    ``_LargestTrial``), counted with ``model_parameters``."""
    from .spaces import SPACES  # noqa: PLC0415
    return max(((name, sum(n for _, n in model_parameters(space.function(_LargestTrial()))))
                for name, space in SPACES.items()), key=lambda item: item[1])


@functools.cache
def parameter_limit() -> int:
    """The most parameters ``load_model`` builds a model of: ``PARAMETER_LIMIT_FACTOR``
    times the largest model a search space draws (``largest_space_model``)."""
    return PARAMETER_LIMIT_FACTOR * largest_space_model()[1]


def model_parameters(config: dict) -> list:
    """``[(layer, parameters), ...]`` of the network ``tuning.models.build_model(config)``
    builds, counted from the config alone by its space (``Space.count_parameters``;
    nothing is allocated); ``[]`` for a model no space knows (``build_model`` then refuses
    it).  Raises KeyError for a missing key and ValueError for a size that is not an
    integer >= 1."""
    from .spaces import SPACES  # noqa: PLC0415
    kind = config.get("model")
    space = SPACES.get(kind) if isinstance(kind, str) else None
    return [] if space is None else space.count_parameters(config)


def _refuse(path, reason: str) -> ValueError:
    return ValueError(f"load_model: {path}: {reason}")


def _check_model_size(config: dict, result_path) -> None:
    """ValueError naming ``result_path`` unless ``config`` describes a model of at most
    ``parameter_limit()`` parameters with sizes that are integers >= 1."""
    try:
        layers = model_parameters(config)
    except KeyError as exc:
        raise _refuse(result_path, f"its config lacks the key {exc}, needed to build the "
                      f"{config.get('model')!r} model") from None
    except (ValueError, TypeError, ZeroDivisionError) as exc:
        raise _refuse(result_path, f"its config cannot describe a model: {exc}") from None
    total, limit = sum(n for _, n in layers), parameter_limit()
    if total > limit:
        layer, largest = max(layers, key=lambda item: item[1])
        raise _refuse(result_path, f"its config describes a model of {total:,} parameters "
                      f"(largest layer {layer}: {largest:,}), more than the limit of "
                      f"{limit:,} ({PARAMETER_LIMIT_FACTOR} times the largest model a search "
                      f"space draws); not built")


def _inside(folder: Path, root: Path, name, result_path) -> Path:
    """``folder / name`` resolved (symbolic links followed), refused with a ValueError
    naming ``result_path`` unless ``name`` is a relative path without ``..`` that stays
    inside ``root`` (the folder, resolved)."""
    shown = f"model_file {name!r}"
    if not isinstance(name, str) or not name:
        raise _refuse(result_path, f"{shown}: expected a file name inside the folder")
    relative = Path(name)
    if relative.is_absolute():
        raise _refuse(result_path, f"{shown} is an absolute path; expected a file inside "
                      f"{folder}")
    if ".." in relative.parts:
        raise _refuse(result_path, f"{shown} contains '..'; expected a file inside {folder}")
    resolved = (root / relative).resolve()
    if not resolved.is_relative_to(root):
        raise _refuse(result_path, f"{shown} leads outside {folder} (a symbolic link to "
                      f"{resolved})")
    return resolved


def _read_result(result_path: Path, root: Path) -> dict:
    """``result.json`` as a dict, read only if it is a regular file inside ``root`` of at
    most ``MAX_RESULT_BYTES``; ValueError naming it otherwise."""
    resolved = result_path.resolve()
    if not resolved.is_relative_to(root):
        raise _refuse(result_path, f"a symbolic link leading outside its folder (to "
                      f"{resolved})")
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused just below
        fd = os.open(resolved, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise _refuse(result_path, f"cannot be read ({exc.strerror})") from None
    with open(fd, "rb", closefd=True) as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _refuse(result_path, f"{file_kind(st.st_mode)}, not a regular file")
        if st.st_size > MAX_RESULT_BYTES:
            raise _refuse(result_path, f"{st.st_size:,} bytes, more than the limit of "
                          f"{MAX_RESULT_BYTES:,} for a result.json")
        raw = f.read(st.st_size + 1)   # st_size <= MAX_RESULT_BYTES: checked just above
    try:
        result = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise _refuse(result_path, f"not valid JSON ({exc})") from None
    if not isinstance(result, dict):
        raise _refuse(result_path, f"expected a JSON object, got {type(result).__name__}")
    if "config" not in result:
        raise _refuse(result_path, "missing key 'config' (the model's configuration): "
                      "expected the result.json `tuning retrain --out` writes")
    if not isinstance(result["config"], dict):
        raise _refuse(result_path, f"'config' is {type(result['config']).__name__}, "
                      f"expected a JSON object")
    return result


def load_model(folder):
    """The trained model of a ``retrain`` output folder, ready to use (eval mode).

    Rebuilds the network from ``result.json``'s ``config`` (``tuning.models.build_model``)
    and loads ``model.npz`` (or ``result.json``'s ``model_file``) into it
    (``minidl.load``).  FileNotFoundError names a missing file.

    Safe for a folder from anyone: no code runs (nothing is unpickled) and nothing
    outside the folder is read.  Each of these is a ValueError naming the file and the
    reason: ``result.json`` or ``model_file`` leading outside the folder (an absolute
    path, ``..``, a symbolic link), not a regular file (a FIFO, a device), a
    ``result.json`` larger than ``MAX_RESULT_BYTES``, not JSON or without ``config``; a
    config with a size that is not an integer >= 1 or describing more than
    ``parameter_limit()`` parameters (checked before anything is allocated), or one
    ``build_model`` refuses; and whatever ``minidl.load`` refuses (a damaged archive, an
    entry declaring more data than the model has, checked before it is read).
    """
    import minidl  # noqa: PLC0415
    from .models import build_model  # noqa: PLC0415
    folder = Path(folder)
    result_path = folder / "result.json"
    if not os.path.lexists(result_path):
        raise FileNotFoundError(f"load_model: {result_path} does not exist: expected the "
                                f"folder `tuning retrain --out` wrote")
    root = folder.resolve()
    result = _read_result(result_path, root)
    model_path = _inside(folder, root, result.get("model_file", "model.npz"), result_path)
    config = result["config"]
    _check_model_size(config, result_path)
    try:
        model = build_model(config)
    except (KeyError, TypeError, ValueError, ZeroDivisionError) as exc:
        reason = f"lacks the key {exc}" if isinstance(exc, KeyError) else f"is refused: {exc}"
        raise _refuse(result_path, f"its config {reason}") from None
    minidl.load(model, model_path)
    return model.eval()
