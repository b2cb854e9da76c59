"""Checkpoints: a model's weights and its optimizer's state in one ``.npz`` file.

    save_checkpoint("member3.npz", model, optimizer, epoch=12)
    metadata = load_checkpoint("member3.npz", model, optimizer)   # {"epoch": 12}

``minidl.save`` keeps a model's weights.  A checkpoint also keeps what the optimizer has
accumulated while training -- Adam's moment estimates and step counts, SGD's and
RMSprop's buffers, a hypergradient optimizer's adapted rate and previous gradient -- so
training goes on, in this process or another one, exactly as if it had not stopped:
loading a checkpoint into a fresh model and a fresh optimizer of the same kind gives
bit-identical weights, state arrays and hyperparameters (population-based training,
``tuning.pbt``, relies on it to copy one member into another).

File format: one ``numpy.savez`` archive, nothing pickled, holding

* ``model/<key>``: every ``model.state_dict()`` entry (parameters and persistent
  buffers, in their own dtypes);
* ``optimizer/<index>/<name>``: every array of ``optimizer.state_dict()["state"]``
  (``index``: the parameter's position in the optimizer's groups, as torch numbers them);
* ``__minidl_metadata__``: a one-element string array holding the JSON object
  ``{"format": "minidl-checkpoint", "version": 1, "metadata": {"optimizer": {"type":
  "Adam", "param_groups": [...], "scalars": {index: {name: value}}}, "user": {...}}}``
  -- the optimizer's class, its groups' hyperparameters and its scalar state (step
  counts), and the keyword arguments given to :func:`save_checkpoint`.

Reading goes through ``minidl.serialization``'s reader (``allow_pickle=False``; a file
that is missing is a FileNotFoundError, one that is damaged, truncated, pickled or not
numeric a ValueError naming it), so loading a checkpoint cannot run code.  Floats in the
JSON are written with Python's shortest round-trip representation, so hyperparameters
come back bit for bit.
"""
from __future__ import annotations

import json
import os

import numpy as np

from . import backend
from .serialization import METADATA_KEY, _json_default, _npz_path, _read

__all__ = ["save_checkpoint", "load_checkpoint", "read_checkpoint_metadata"]

CHECKPOINT_FORMAT = "minidl-checkpoint"
CHECKPOINT_VERSION = 1
MODEL_PREFIX = "model/"
OPTIMIZER_PREFIX = "optimizer/"


def save_checkpoint(path, model, optimizer=None, /, **metadata) -> str:
    """Write ``model``'s weights, ``optimizer``'s state and ``metadata`` to ``path``.

    ``.npz`` is appended to ``path`` when missing; ``optimizer`` may be None (weights
    only).  ``metadata`` values must be JSON-serialisable (NumPy scalars and arrays are
    converted).  The file is written beside its destination, flushed to disk and renamed
    into place, so a process killed while saving leaves the previous file (or none),
    never a half-written one.  Returns the path written.
    """
    arrays = {MODEL_PREFIX + k: backend.to_numpy(v) for k, v in model.state_dict().items()}
    header = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION,
              "metadata": {"optimizer": None, "user": metadata}}
    if optimizer is not None:
        state = optimizer.state_dict()
        scalars = {}
        for index, entries in state["state"].items():
            for name, value in entries.items():
                if isinstance(value, np.ndarray):
                    arrays[f"{OPTIMIZER_PREFIX}{index}/{name}"] = value
                else:
                    scalars.setdefault(str(index), {})[name] = value
        header["metadata"]["optimizer"] = {"type": type(optimizer).__name__,
                                           "param_groups": state["param_groups"],
                                           "scalars": scalars}
    try:
        text = json.dumps(header, default=_json_default, allow_nan=True)
    except TypeError as exc:
        raise ValueError(f"save_checkpoint: metadata must be JSON-serialisable: {exc}") from None
    arrays[METADATA_KEY] = np.array([text])
    path = _npz_path(path)
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def _tuples(value):
    """JSON gives lists where the optimizer had tuples (Adam's ``betas``)."""
    return tuple(value) if isinstance(value, list) else value


def _read_checkpoint(path):
    """``(weights, optimizer_state or None, user metadata)`` of a checkpoint file."""
    shown = os.fspath(path)
    arrays, metadata = _read(path)
    if not isinstance(metadata, dict) or set(metadata) != {"optimizer", "user"}:
        raise ValueError(f"load_checkpoint: {shown!r} is not a checkpoint written by "
                         f"save_checkpoint (a file of minidl.save? load it with minidl.load)")
    weights, state_arrays = {}, {}
    for key, value in arrays.items():
        if key.startswith(MODEL_PREFIX):
            weights[key[len(MODEL_PREFIX):]] = value
        elif key.startswith(OPTIMIZER_PREFIX) and key.count("/") == 2:
            _, index, name = key.split("/")
            state_arrays.setdefault(index, {})[name] = value
        else:
            raise ValueError(f"load_checkpoint: entry {key!r} of {shown!r} is neither "
                             f"{MODEL_PREFIX}<key> nor {OPTIMIZER_PREFIX}<index>/<name>")
    saved = metadata["optimizer"]
    if saved is None:
        return weights, None, metadata["user"]
    try:
        groups = [{k: (v if k == "params" else _tuples(v)) for k, v in group.items()}
                  for group in saved["param_groups"]]
        state = {}
        for index in set(state_arrays) | set(saved["scalars"]):
            state[int(index)] = {**saved["scalars"].get(index, {}),
                                 **state_arrays.get(index, {})}
        return weights, {"type": saved["type"], "state": state, "param_groups": groups}, \
            metadata["user"]
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ValueError(f"load_checkpoint: malformed optimizer state in {shown!r} "
                         f"({type(exc).__name__}: {exc})") from None


def _check_kinds(model, weights: dict, shown: str) -> None:
    """Float entries take float arrays, integer buffers integer ones (as ``minidl.load``)."""
    expected = {k: v.dtype.kind for k, v in model.state_dict().items()}
    for key, value in weights.items():
        want = expected.get(key)
        if want == "f" and value.dtype.kind != "f":
            raise ValueError(f"load_checkpoint: entry {key!r} of {shown!r} has dtype "
                             f"{value.dtype}, expected floating point")
        if want is not None and want in "iu" and value.dtype.kind not in "iu":
            raise ValueError(f"load_checkpoint: entry {key!r} of {shown!r} has dtype "
                             f"{value.dtype}, expected an integer (it is an integer buffer)")


def load_checkpoint(path, model, optimizer=None, /) -> dict:
    """Load a checkpoint into ``model`` (and ``optimizer``); return its metadata.

    ``optimizer`` must be of the class that was saved, over a model of the same shape
    (built the same way); None loads the weights alone.  The saved hyperparameters
    (learning rate, ...) replace the optimizer's, as ``Optimizer.load_state_dict`` does.

    Raises FileNotFoundError when ``path`` does not exist; ValueError naming the file
    when it is not a readable checkpoint, when ``optimizer`` is given and the file holds
    no optimizer state or another optimizer's, and (from ``load_state_dict``) naming
    missing or unexpected keys and wrong shapes.  In every one of these cases neither
    the model nor the optimizer is changed.
    """
    shown = os.fspath(path)
    weights, state, user = _read_checkpoint(path)
    _check_kinds(model, weights, shown)
    if optimizer is not None:
        if state is None:
            raise ValueError(f"load_checkpoint: {shown!r} holds no optimizer state (it was "
                             f"saved without an optimizer); pass optimizer=None")
        if state["type"] != type(optimizer).__name__:
            raise ValueError(f"load_checkpoint: {shown!r} holds the state of a "
                             f"{state['type']} optimizer, got a {type(optimizer).__name__}")
    before = {k: np.array(backend.to_numpy(v), copy=True)
              for k, v in model.state_dict().items()}
    model.load_state_dict(weights)           # checks everything before changing anything
    if optimizer is not None:
        try:
            optimizer.load_state_dict({"state": state["state"],
                                       "param_groups": state["param_groups"]})
        except Exception:
            model.load_state_dict(before)    # both or neither
            raise
    return user


def read_checkpoint_metadata(path) -> dict:
    """The keyword arguments given to :func:`save_checkpoint`, without loading anything."""
    return _read_checkpoint(path)[2]
