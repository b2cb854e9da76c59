"""Loading a ``tuning retrain --out`` folder back, safely: ``load_model(folder)``.

A model folder may come from anyone (a download, a colleague's share): ``load_model``
reads only files inside it, checks sizes before reading, and the model's size (counted
from the config by ``model_parameters``, nothing allocated) before building it.  What
``retrain`` writes into the folder is ``tuning.results``'s part.
"""
from __future__ import annotations

import functools
import json
import math
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


def _size(value, what: str) -> int:
    """A layer size from a config: an integer >= 1 (ValueError naming ``what`` otherwise)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"{what} is {value!r}, expected an integer >= 1")
    try:
        number = int(value)
    except (ValueError, OverflowError):
        raise ValueError(f"{what} is {value!r}, expected an integer >= 1") from None
    if number < 1:
        raise ValueError(f"{what} is {value!r}, expected an integer >= 1")
    return number


def _sizes(config: dict, key: str) -> list:
    values = config[key]
    if not isinstance(values, list):
        raise ValueError(f"{key} is {values!r}, expected a list of integers")
    return [_size(v, f"{key}[{i}]") for i, v in enumerate(values)]


def _linear(n_in: int, n_out: int) -> tuple[str, int]:
    return f"Linear({n_in}, {n_out})", n_in * n_out + n_out


def model_parameters(config: dict) -> list:
    r"""``[(layer, parameters), ...]`` of the network ``tuning.models.build_model(config)``
    builds, counted from the config alone (nothing is allocated).

    Trainable parameters, as ``Module.num_parameters`` counts them: a ``Linear(i, o)`` has
    :math:`io + o`, a ``Conv2d(i, o, k)`` :math:`o i k^2` (+ :math:`o` with a bias), a
    ``BatchNorm2d(c)`` :math:`2c`, an LSTM (GRU) layer of width :math:`h` on inputs of
    width :math:`w` :math:`d \cdot g h (w + h + 2)` with :math:`g` = 4 (3) gates and
    :math:`d` = 2 when bidirectional.  Raises KeyError for a missing key and ValueError
    for a size that is not an integer >= 1; a config ``build_model`` would refuse for
    another reason counts what it can (``build_model`` then says what is wrong).
    """
    from .spaces import IMAGE_SHAPE, NUM_CLASSES, conv_pool_plan  # noqa: PLC0415
    channels, height, _ = IMAGE_SHAPE
    pixels = math.prod(IMAGE_SHAPE)
    kind = config.get("model")
    layers = []
    if kind == "lab-mlp":
        hidden = _size(config["hidden_size"], "hidden_size")
        layers = [_linear(pixels, hidden), _linear(hidden, NUM_CLASSES)]
    elif kind == "mlp":
        widths = [pixels, *_sizes(config, "hidden_sizes"), NUM_CLASSES]
        layers = [_linear(a, b) for a, b in zip(widths, widths[1:])]
    elif kind == "cnn":
        filters, kernels = _sizes(config, "filters"), _sizes(config, "kernel_sizes")
        repeat = _size(config.get("convs_per_block", 1), "convs_per_block")
        batch_norm = config.get("batch_norm", False) is True
        in_ch = channels
        for out_ch, k in zip(filters, kernels):
            first = in_ch * out_ch * k * k + (0 if batch_norm else out_ch)
            rest = (repeat - 1) * (out_ch * out_ch * k * k + (0 if batch_norm else out_ch))
            layers.append((f"Conv2d({in_ch}, {out_ch}, {k}) x {repeat}", first + rest))
            if batch_norm:
                layers.append((f"BatchNorm2d({out_ch}) x {repeat}", 2 * out_ch * repeat))
            in_ch = out_ch
        if len(filters) == len(kernels) and filters:
            _, size = conv_pool_plan(height, kernels,
                                     _size(config["pool_kernel"], "pool_kernel"))
            dense = _size(config["dense_size"], "dense_size")
            layers += [_linear(in_ch * size * size, dense), _linear(dense, NUM_CLASSES)]
    elif kind == "rnn":
        steps = _size(config["seq_len"], "seq_len")
        gates = {"LSTM": 4, "GRU": 3}.get(config.get("cell"))
        if gates is not None and pixels % steps == 0:
            directions = 2 if config.get("bidirectional") else 1
            width = pixels // steps
            for h in _sizes(config, "hidden_sizes"):
                layers.append((f"{config['cell']}({width}, {h})",
                               directions * gates * h * (width + h + 2)))
                width = directions * h
            layers.append(_linear(width, NUM_CLASSES))
    return layers


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
