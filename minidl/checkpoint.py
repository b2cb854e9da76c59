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

File format: a file of ``minidl.save`` (one ``numpy.savez`` archive, nothing pickled,
written beside its destination and renamed into place) whose entries are

* ``model/<key>``: every ``model.state_dict()`` entry (parameters and persistent
  buffers, in their own dtypes);
* ``optimizer/<index>/<name>``: every array of ``optimizer.state_dict()["state"]``
  (``index``: the parameter's position in the optimizer's groups, as torch numbers them);

and whose metadata is ``{"checkpoint": 1, "optimizer": {"type": "Adam", "param_groups":
[...], "scalars": {index: {name: value}}, "arrays": [[index, name], ...]}, "user":
{...}}``: the optimizer's class, its groups' hyperparameters, its scalar state (step
counts), the names of its state arrays, and the keyword arguments given to
:func:`save_checkpoint`.  JSON writes floats in their shortest round-trip form, so
hyperparameters come back bit for bit.

Reading is ``minidl.load``'s, with its rules for untrusted files: a stand-in for the
model (``_Entries``) declares every entry the file must hold, with the shape and kind
the model and the optimizer's parameters give it, so a missing, unexpected, pickled,
non-numeric or wrongly shaped entry is a ValueError naming the file before the model or
the optimizer changes, and a missing file a FileNotFoundError.
"""
from __future__ import annotations

import numpy as np

from . import backend
from .serialization import load, read_metadata, save

__all__ = ["save_checkpoint", "load_checkpoint", "read_checkpoint_metadata"]

CHECKPOINT_VERSION = 1
MODEL_PREFIX = "model/"
OPTIMIZER_PREFIX = "optimizer/"


class _Entries:
    """Stands in for a model in ``minidl.save`` and ``minidl.load``: ``state_dict()`` is
    the archive's entries (arrays to write, or placeholders of the expected shape and
    dtype to check a file against), ``load_state_dict`` keeps what was read."""

    def __init__(self, entries: dict):
        self.entries = entries
        self.loaded = None

    def state_dict(self) -> dict:
        return self.entries

    def load_state_dict(self, arrays) -> None:
        """Keep ``arrays`` when they are exactly the expected entries, in their shapes
        (what ``Module.load_state_dict`` checks); ValueError naming every problem."""
        missing = [k for k in self.entries if k not in arrays]
        unexpected = [k for k in arrays if k not in self.entries]
        problems = [f"missing keys {missing}"] if missing else []
        if unexpected:
            problems.append(f"unexpected keys {unexpected}")
        problems += [f"'{k}': expected shape {tuple(self.entries[k].shape)}, got "
                     f"{tuple(np.shape(v))}" for k, v in arrays.items()
                     if k in self.entries and tuple(np.shape(v)) != self.entries[k].shape]
        if problems:
            raise ValueError("; ".join(problems))
        self.loaded = dict(arrays)


def _placeholder(shape, dtype) -> np.ndarray:
    """An array of ``shape`` and ``dtype`` that takes no memory (its shape and kind are
    what ``minidl.load`` compares)."""
    return np.broadcast_to(np.zeros((), dtype=np.dtype(dtype)), tuple(shape))


def _param_shapes(optimizer) -> list:
    """``[(shape, dtype)]`` of the optimizer's parameters, numbered as ``state_dict`` does."""
    seen, out = set(), []
    for group in optimizer.param_groups:
        for p in group["params"]:
            if id(p) not in seen:
                seen.add(id(p))
                out.append((tuple(p.data.shape), p.data.dtype))
    return out


def save_checkpoint(path, model, optimizer=None, /, **metadata) -> str:
    """Write ``model``'s weights, ``optimizer``'s state and ``metadata`` to ``path``.

    ``.npz`` is appended to ``path`` when missing; ``optimizer`` may be None (weights
    only).  ``metadata`` values must be JSON-serialisable (NumPy scalars and arrays are
    converted).  Written by ``minidl.save``: beside its destination, then renamed into
    place, so a process killed while saving leaves the previous file (or none), never a
    half-written one.  Returns the path written.
    """
    entries = {MODEL_PREFIX + k: backend.to_numpy(v) for k, v in model.state_dict().items()}
    saved = None
    if optimizer is not None:
        state = optimizer.state_dict()
        scalars, names = {}, []
        for index, values in state["state"].items():
            for name, value in values.items():
                if isinstance(value, np.ndarray):
                    entries[f"{OPTIMIZER_PREFIX}{index}/{name}"] = value
                    names.append([int(index), name])
                else:
                    scalars.setdefault(str(index), {})[name] = value
        saved = {"type": type(optimizer).__name__, "param_groups": state["param_groups"],
                 "scalars": scalars, "arrays": names}
    return save(_Entries(entries), path, checkpoint=CHECKPOINT_VERSION, optimizer=saved,
                user=metadata)


def _header(path) -> dict:
    """The checkpoint part of a file's metadata; ValueError for a file that is not one."""
    metadata = read_metadata(path)
    if not isinstance(metadata, dict) or metadata.get("checkpoint") != CHECKPOINT_VERSION \
            or not isinstance(metadata.get("user"), dict):
        raise ValueError(f"load_checkpoint: {str(path)!r} is not a checkpoint written by "
                         f"save_checkpoint (a file of minidl.save? load it with minidl.load)")
    return metadata


def _tuples(value):
    """JSON gives lists where the optimizer had tuples."""
    return tuple(value) if isinstance(value, list) else value


def _expected_state(path, saved, params: list, who: str) -> dict:
    """Placeholders of the optimizer's state arrays: each ``[index, name]`` the file lists,
    shaped as parameter ``index`` of ``params``."""
    expected = {}
    try:
        names = [(int(index), str(name)) for index, name in saved["arrays"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"load_checkpoint: malformed optimizer state in {str(path)!r} "
                         f"({type(exc).__name__}: {exc})") from None
    for index, name in names:
        if not 0 <= index < len(params):
            raise ValueError(f"load_checkpoint: {str(path)!r} holds optimizer state for "
                             f"parameter {index}; {who} has {len(params)} parameters")
        shape, dtype = params[index]
        expected[f"{OPTIMIZER_PREFIX}{index}/{name}"] = _placeholder(shape, dtype)
    return expected


def load_checkpoint(path, model, optimizer=None, /) -> dict:
    """Load a checkpoint into ``model`` (and ``optimizer``); return its metadata.

    ``optimizer`` must be of the class that was saved, over a model of the same shape
    (built the same way); its state and the saved hyperparameters (learning rate, ...)
    replace its own, as ``Optimizer.load_state_dict`` does.  None loads the weights alone
    (a saved optimizer state is then checked against ``model.parameters()``, the
    parameters an optimizer is usually built over, and dropped).

    Raises FileNotFoundError when ``path`` does not exist; ValueError naming the file
    when it is not a readable checkpoint (damaged, truncated, pickled, not numeric, not
    written by :func:`save_checkpoint`), when an entry does not fit the model or the
    optimizer (kind, missing or unexpected key, shape), when the file holds another
    optimizer's state or none, and (from ``Optimizer.load_state_dict``) when the
    parameter groups differ.  In every one of these cases neither the model nor the
    optimizer is changed.
    """
    metadata = _header(path)
    saved = metadata.get("optimizer")
    expected = {MODEL_PREFIX + k: _placeholder(v.shape, v.dtype)
                for k, v in model.state_dict().items()}
    if optimizer is not None:
        if saved is None:
            raise ValueError(f"load_checkpoint: {str(path)!r} holds no optimizer state (it "
                             f"was saved without an optimizer); pass optimizer=None")
        kind = saved.get("type") if isinstance(saved, dict) else None
        if kind != type(optimizer).__name__:
            raise ValueError(f"load_checkpoint: {str(path)!r} holds the state of a {kind} "
                             f"optimizer, got a {type(optimizer).__name__}")
        expected.update(_expected_state(path, saved, _param_shapes(optimizer),
                                        f"the {type(optimizer).__name__} optimizer"))
    elif saved is not None:
        params = [(tuple(p.data.shape), p.data.dtype) for p in model.parameters()]
        expected.update(_expected_state(path, saved, params, "the model"))
    entries = _Entries(expected)
    try:
        load(entries, path)
    except ValueError as exc:
        where = "" if str(path) in str(exc) else f"{str(path)!r}: "
        raise ValueError(f"load_checkpoint: {where}{exc}") from None
    weights = {k[len(MODEL_PREFIX):]: v for k, v in entries.loaded.items()
               if k.startswith(MODEL_PREFIX)}
    state = None
    if optimizer is not None:
        try:
            arrays = {}
            for key, value in entries.loaded.items():
                if key.startswith(OPTIMIZER_PREFIX):
                    _, index, name = key.split("/", 2)
                    arrays.setdefault(int(index), {})[name] = value
            scalars = {int(i): dict(v) for i, v in saved["scalars"].items()}
            state = {"state": {i: {**scalars.get(i, {}), **arrays.get(i, {})}
                               for i in sorted(set(arrays) | set(scalars))},
                     "param_groups": [{k: (v if k == "params" else _tuples(v))
                                       for k, v in group.items()}
                                      for group in saved["param_groups"]]}
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"load_checkpoint: malformed optimizer state in {str(path)!r} "
                             f"({type(exc).__name__}: {exc})") from None
    before = {k: np.array(backend.to_numpy(v), copy=True)
              for k, v in model.state_dict().items()}
    model.load_state_dict(weights)           # checks everything before changing anything
    if optimizer is not None:
        try:
            optimizer.load_state_dict(state)
        except Exception:
            model.load_state_dict(before)    # both or neither
            raise
    return metadata["user"]


def read_checkpoint_metadata(path) -> dict:
    """The keyword arguments given to :func:`save_checkpoint`, without loading anything."""
    return _header(path)["user"]
