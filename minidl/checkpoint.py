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
written beside its destination and renamed into place) of a ``Checkpoint`` module, whose
``state_dict`` is

* ``model.<key>``: every ``model.state_dict()`` entry (parameters and persistent
  buffers, in their own dtypes);
* ``optimizer.p<index>_<name>``: every array of ``optimizer.state_dict()["state"]``
  (``index``: the parameter's position in the optimizer's groups, as torch numbers them),
  held as buffers of an ``OptimizerState`` module;

and whose metadata is ``{"checkpoint": 1, "optimizer": {"type": "Adam", "param_groups":
[...], "scalars": {index: {name: value}}, "arrays": [[index, name], ...]}, "user":
{...}}``: the optimizer's class, its groups' hyperparameters, its scalar state (step
counts), the names of its state arrays, and the keyword arguments given to
:func:`save_checkpoint`.  JSON writes floats in their shortest round-trip form, so
hyperparameters come back bit for bit.

Reading is ``minidl.load``'s, into the same ``Checkpoint`` module built around the
model, with state buffers of the shapes the optimizer's parameters give them, so every
rule for untrusted files holds: a missing, unexpected, pickled, non-numeric or wrongly
shaped entry is a ValueError naming the file before the model or the optimizer changes,
and a missing file a FileNotFoundError.
"""
from __future__ import annotations

import numpy as np

from . import backend, nn
from .serialization import load, read_metadata, save

__all__ = ["save_checkpoint", "load_checkpoint", "read_checkpoint_metadata"]

CHECKPOINT_VERSION = 1


class OptimizerState(nn.Module):
    """An optimizer's state arrays as buffers (``p<index>_<name>``), so ``minidl.save``
    and ``minidl.load`` carry them as they carry a model's."""

    def __init__(self, arrays: dict):
        super().__init__()
        for (index, name), array in arrays.items():
            self.register_buffer(state_key(index, name), array)


class Checkpoint(nn.Module):
    """A model and its optimizer's state, as one module for ``minidl.save``/``load``."""

    def __init__(self, model, state: OptimizerState):
        super().__init__()
        self.model = model
        self.optimizer = state


def state_key(index: int, name: str) -> str:
    return f"p{int(index)}_{name}"


def _placeholder(shape, dtype) -> np.ndarray:
    """An array of ``shape`` and ``dtype`` that takes no memory: a buffer that
    ``minidl.load`` replaces with what it reads, after comparing shape and kind."""
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
    arrays, saved = {}, None
    if optimizer is not None:
        state = optimizer.state_dict()
        scalars = {}
        for index, values in state["state"].items():
            for name, value in values.items():
                if isinstance(value, np.ndarray):
                    arrays[(int(index), name)] = value
                else:
                    scalars.setdefault(str(index), {})[name] = value
        saved = {"type": type(optimizer).__name__, "param_groups": state["param_groups"],
                 "scalars": scalars, "arrays": [[i, n] for i, n in arrays]}
    return save(Checkpoint(model, OptimizerState(arrays)), path, checkpoint=CHECKPOINT_VERSION,
                optimizer=saved, user=metadata)


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
        expected[(index, name)] = _placeholder(shape, dtype)
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
    if optimizer is not None:
        if saved is None:
            raise ValueError(f"load_checkpoint: {str(path)!r} holds no optimizer state (it "
                             f"was saved without an optimizer); pass optimizer=None")
        kind = saved.get("type") if isinstance(saved, dict) else None
        if kind != type(optimizer).__name__:
            raise ValueError(f"load_checkpoint: {str(path)!r} holds the state of a {kind} "
                             f"optimizer, got a {type(optimizer).__name__}")
        expected = _expected_state(path, saved, _param_shapes(optimizer),
                                   f"the {type(optimizer).__name__} optimizer")
    elif saved is not None:
        params = [(tuple(p.data.shape), p.data.dtype) for p in model.parameters()]
        expected = _expected_state(path, saved, params, "the model")
    else:
        expected = {}
    holder = OptimizerState(expected)
    before = {k: np.array(backend.to_numpy(v), copy=True)
              for k, v in model.state_dict().items()}
    try:
        load(Checkpoint(model, holder), path)    # everything checked before anything changes
    except ValueError as exc:
        where = "" if str(path) in str(exc) else f"{str(path)!r}: "
        raise ValueError(f"load_checkpoint: {where}{exc}") from None
    if optimizer is not None:
        try:
            scalars = {int(i): dict(v) for i, v in saved["scalars"].items()}
            arrays = {}
            for index, name in expected:
                arrays.setdefault(index, {})[name] = getattr(holder, state_key(index, name))
            state = {"state": {i: {**scalars.get(i, {}), **arrays.get(i, {})}
                               for i in sorted(set(arrays) | set(scalars))},
                     "param_groups": [{k: (v if k == "params" else _tuples(v))
                                       for k, v in group.items()}
                                      for group in saved["param_groups"]]}
            optimizer.load_state_dict(state)
        except Exception as exc:
            model.load_state_dict(before)    # both or neither
            if isinstance(exc, (KeyError, TypeError, AttributeError)):
                raise ValueError(f"load_checkpoint: malformed optimizer state in "
                                 f"{str(path)!r} ({type(exc).__name__}: {exc})") from None
            raise
    return metadata["user"]


def read_checkpoint_metadata(path) -> dict:
    """The keyword arguments given to :func:`save_checkpoint`, without loading anything."""
    return _header(path)["user"]
