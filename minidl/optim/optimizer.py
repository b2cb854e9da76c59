"""The optimizer base class: parameter groups, per-parameter state, checkpoints.

Every minidl optimizer follows ``torch.optim.Optimizer``'s layout, so code and
checkpoints read the same:

- ``param_groups`` is a list of dicts.  Each holds ``"params"`` (a list of
  :class:`~minidl.nn.Parameter`) and that group's hyperparameters (``"lr"``,
  ``"momentum"``, ...); keys a group leaves out take the constructor's values.
- ``state`` maps a ``Parameter`` to a dict of its running buffers (momentum,
  moment estimates, step count).  A buffer is created lazily, on the first
  step at which the parameter has a gradient.
- ``state_dict()`` replaces each ``Parameter`` by its index in the order the
  groups list them, so a checkpoint can be loaded into a fresh optimizer built
  over a fresh model.

Subclasses implement ``_check_hyperparameters(group)`` and ``step()``: the class
holds the state (creates the buffers, counts the steps) and hands lists of arrays to
its functional update beside it -- ``sgd.sgd``, ``adam.adam``, ``rmsprop.rmsprop``,
``hypergradient.adam_hd``, as ``torch.optim.sgd.sgd`` and the like -- which holds the
math, written as one NumPy expression per line, in place.  A variant calls its
parent's function (``SGDHD`` steps with ``sgd``) instead of repeating it.
"""
from __future__ import annotations

import copy
from collections import defaultdict

import numpy as np

from .. import backend
from ..nn.parameter import Parameter


class Optimizer:
    """Base class of minidl optimizers.

    Parameters
    ----------
    params : iterable of Parameter, or iterable of dict
        The parameters to optimize (e.g. ``model.parameters()``), or parameter
        groups: dicts with a ``"params"`` entry and per-group hyperparameters.
    defaults : dict
        Hyperparameters used by groups that do not set them.

    Matches ``torch.optim.Optimizer`` (``param_groups``, ``state``,
    ``zero_grad``, ``state_dict``/``load_state_dict``, ``add_param_group``).

    NOTE: ``state_dict()`` returns copies of the state arrays (torch returns
    references), so a saved checkpoint does not change when training goes on.
    Invalid arguments raise ``TypeError`` (a wrong type: a non-parameter, a set of
    parameters, a string for a rate) or ``ValueError`` (a wrong value) naming the
    optimizer.
    """

    def __init__(self, params, defaults: dict):
        self.defaults = dict(defaults)
        self._check_hyperparameters(self.defaults)
        self.state: defaultdict[Parameter, dict] = defaultdict(dict)
        self.param_groups: list[dict] = []

        if isinstance(params, (Parameter, set, frozenset)):
            raise TypeError(
                f"{self._name}: expected an ordered iterable of Parameters or of dicts "
                f"(e.g. list(model.parameters())), got {type(params).__name__}")
        try:
            groups = list(params)
        except TypeError:
            raise TypeError(
                f"{self._name}: expected an iterable of Parameters or of dicts, "
                f"got {type(params).__name__}") from None
        if not groups:
            raise ValueError(f"{self._name}: got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    @property
    def _name(self) -> str:
        return type(self).__name__

    # -- hyperparameters --------------------------------------------------------
    def _check_hyperparameters(self, group: dict) -> None:
        """Raise TypeError or ValueError for an invalid hyperparameter in ``group``
        (subclass hook; the checks are ``minidl._checks``')."""

    # -- groups -------------------------------------------------------------------
    def add_param_group(self, param_group: dict) -> None:
        """Add a group of parameters (with optional per-group hyperparameters).

        Keys the group leaves out take the constructor's values.  A parameter may
        belong to one group only.
        """
        if not isinstance(param_group, dict):
            raise TypeError(
                f"{self._name}.add_param_group: expected a dict, got {type(param_group).__name__}")
        if "params" not in param_group:
            raise ValueError(f"{self._name}.add_param_group: the group has no 'params' entry")
        params = param_group["params"]
        if isinstance(params, (set, frozenset)):
            raise TypeError(
                f"{self._name}: parameters must come in an ordered collection (a list), "
                "not a set whose order changes between runs")
        params = [params] if isinstance(params, Parameter) else list(params)
        for i, p in enumerate(params):
            if not isinstance(p, Parameter):
                raise TypeError(
                    f"{self._name}: can only optimize minidl Parameters, but params[{i}] "
                    f"is a {type(p).__name__}")
        if len({id(p) for p in params}) != len(params):
            raise ValueError(f"{self._name}: a parameter group lists the same parameter twice")
        unknown = sorted(set(param_group) - set(self.defaults) - {"params", "initial_lr"})
        if unknown:
            raise ValueError(
                f"{self._name}: unknown hyperparameters {unknown} in a parameter group; "
                f"expected some of {sorted(self.defaults)}")

        group = dict(param_group)
        group["params"] = params
        for name, default in self.defaults.items():
            group.setdefault(name, default)
        self._check_hyperparameters(group)

        existing = {id(p) for g in self.param_groups for p in g["params"]}
        if any(id(p) in existing for p in params):
            raise ValueError(f"{self._name}: some parameters appear in more than one group")
        self.param_groups.append(group)

    # -- the training loop --------------------------------------------------------
    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget the gradients: set them to None (default) or fill them with zeros."""
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    p.grad[...] = 0

    def step(self, closure=None):
        """Update every parameter that has a gradient; return ``closure()`` if given."""
        raise NotImplementedError(f"{self._name} must implement step()")

    def _params_with_grad(self, group: dict):
        """The parameters of ``group`` that have a gradient, each checked for shape."""
        for p in group["params"]:
            if p.grad is None:
                continue
            if p.grad.shape != p.data.shape:
                raise ValueError(
                    f"{self._name}.step: gradient of shape {tuple(p.grad.shape)} does not "
                    f"match parameter of shape {tuple(p.data.shape)}")
            yield p

    # -- checkpoints ----------------------------------------------------------------
    def state_dict(self) -> dict:
        """The optimizer's state as plain data, shaped like torch's.

        Returns
        -------
        dict
            ``{"state": {index: {name: value}}, "param_groups": [group, ...]}``
            where each group lists its parameters by index (0, 1, ... in group
            order) instead of by object.  Arrays are host NumPy copies.
        """
        index = {}
        groups = []
        for group in self.param_groups:
            packed = {k: copy.deepcopy(v) for k, v in group.items() if k != "params"}
            packed["params"] = []
            for p in group["params"]:
                index.setdefault(id(p), len(index))
                packed["params"].append(index[id(p)])
            groups.append(packed)
        state = {index[id(p)]: {k: _copy_value(v) for k, v in s.items()}
                 for p, s in self.state.items() if s}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore state saved by :meth:`state_dict` (of an optimizer of the same shape).

        The saved groups' hyperparameters replace the current ones; the current
        parameters stay.  Raises ValueError when the number of groups, a group's
        size, or a state array's shape differs; nothing changes unless every
        check passes.
        """
        if not isinstance(state_dict, dict) or set(state_dict) != {"state", "param_groups"}:
            got = sorted(state_dict) if isinstance(state_dict, dict) else type(state_dict).__name__
            raise (ValueError if isinstance(state_dict, dict) else TypeError)(
                f"{self._name}.load_state_dict: expected a dict with keys 'state' and "
                f"'param_groups', got {got}")
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(
                f"{self._name}.load_state_dict: the state dict has {len(saved_groups)} "
                f"parameter groups, the optimizer has {len(self.param_groups)}")
        for i, (group, saved) in enumerate(zip(self.param_groups, saved_groups)):
            if len(saved["params"]) != len(group["params"]):
                raise ValueError(
                    f"{self._name}.load_state_dict: parameter group {i} has "
                    f"{len(saved['params'])} parameters in the state dict, "
                    f"{len(group['params'])} in the optimizer")

        params_by_index = {}
        for group, saved in zip(self.param_groups, saved_groups):
            params_by_index.update(zip(saved["params"], group["params"]))
        new_groups = []
        for group, saved in zip(self.param_groups, saved_groups):
            new_group = {k: copy.deepcopy(v) for k, v in saved.items() if k != "params"}
            for name, default in self.defaults.items():
                new_group.setdefault(name, default)
            new_group["params"] = group["params"]
            self._check_hyperparameters(new_group)
            new_groups.append(new_group)

        new_state = defaultdict(dict)
        for idx, saved_state in state_dict["state"].items():
            if idx not in params_by_index:
                raise ValueError(
                    f"{self._name}.load_state_dict: state for parameter {idx!r}, which no "
                    f"parameter group lists")
            p = params_by_index[idx]
            restored = {}
            for name, value in saved_state.items():
                if _is_array(value):
                    if tuple(value.shape) != tuple(p.data.shape):
                        raise ValueError(
                            f"{self._name}.load_state_dict: state '{name}' of parameter {idx} "
                            f"has shape {tuple(value.shape)}, the parameter has "
                            f"{tuple(p.data.shape)}")
                    value = backend.asarray_like(value, p.data).astype(p.data.dtype, copy=True)
                else:
                    value = copy.deepcopy(value)
                restored[name] = value
            new_state[p] = restored

        self.param_groups = new_groups
        self.state = new_state

    # -- printing -------------------------------------------------------------------
    def __repr__(self):
        lines = [f"{self._name} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            for key in sorted(k for k in group if k != "params"):
                lines.append(f"    {key}: {group[key]}")
        lines.append(")")
        return "\n".join(lines)


def _is_array(value) -> bool:
    return isinstance(value, np.ndarray) or backend.is_cupy(value)


def _copy_value(value):
    if _is_array(value):
        return backend.to_numpy(value).copy()
    return copy.deepcopy(value)
