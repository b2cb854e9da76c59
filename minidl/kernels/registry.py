"""The kernel registry: every operation, its reference, its fast routes and the rule that picks one.

An *operation* (``im2col``, ``max_pool2d_forward``, ``matmul``, ...) is what a layer
calls.  Its entry holds

* the **reference**: plain NumPy, written to be read; it is what the tests trust and
  what a learner should open first.  It takes its array module from its arguments
  (``backend.xp``), so it also runs on CuPy arrays: on a GPU the reference *is* the
  device route (the *array-module reference*);
* its **fast routes**: Numba twins (``_<name>_numba.py``), each with the predicate
  that says whether it applies to the given arguments on this machine (array type,
  dtype, layout, CPU vector instructions, thread count), and the device whose arrays
  it takes (``"cpu"`` for every Numba route: Numba compiles for host memory);
* the **rule**: for host arrays, the first CPU route whose predicate holds, else the
  reference; for device arrays (any argument a CuPy array), the first device route
  whose predicate holds -- there are none yet -- else the reference.

Calling the operation applies the rule.  One switch forces the reference everywhere:
the environment variable ``MINIDL_KERNELS=reference`` (read once, when minidl is
imported) or, from Python, ``use_reference(True)`` / ``with reference_kernels(): ...``.
Results agree between the routes to rounding (see ``tests/minidl/kernels/test_kernels.py`` and
``tests/minidl/kernels/test_numba_twins.py``), so the whole test suite passes either way.

``python -m minidl.kernels`` prints, for every operation, the route it takes on this
machine for a typical float32 call, with host arrays and with device arrays
(``listing()`` returns the same rows).

Fast twins are imported on first use, by module name: the registry and the
dispatchers never import Numba at ``import minidl`` time, and a twin never imports its
dispatcher (shared geometry lives in ``shapes.py``, the micro-kernels' rules in
``gemm.py`` and ``minidl.cpu``; a twin that hands a case back to the reference gets it
from ``reference(name)``).  ``minidl.kernels`` exports each operation, its reference and
its Numba twins (loaded on first access) by the names this registry holds.
"""
from __future__ import annotations

import contextlib
import importlib
import os

from .. import _checks, backend

ENV_VAR = "MINIDL_KERNELS"
_CHOICES = {"": False, "fast": False, "reference": True}


def _reference_from_env() -> bool:
    text = os.environ.get(ENV_VAR, "").strip().lower()
    if text not in _CHOICES:
        raise ValueError(f"minidl kernels: {ENV_VAR} must be 'reference' or 'fast' (or unset), "
                         f"got {os.environ[ENV_VAR]!r}")
    return _CHOICES[text]


_reference_only = _reference_from_env()


def use_reference(on: bool = True) -> bool:
    """Force every operation onto its reference (``on=True``) or let the rule pick (False).

    Returns the previous setting.  Process-wide, like ``MINIDL_KERNELS=reference``.
    """
    global _reference_only
    on = _checks.boolean("use_reference", "on", on)
    previous, _reference_only = _reference_only, on
    return previous


def reference_only() -> bool:
    """Whether every operation is forced onto its reference now."""
    return _reference_only


@contextlib.contextmanager
def reference_kernels(on: bool = True):
    """``with reference_kernels(): ...`` runs the block on the references, then restores."""
    previous = use_reference(on)
    try:
        yield
    finally:
        use_reference(previous)


DEVICES = ("cpu", "cuda")


class Route:
    """A fast implementation of an operation: ``module.attr``, taken when ``applies(*args)``
    for arguments on ``device`` (``"cpu"``: host arrays; ``"cuda"``: CuPy arrays).

    ``module`` is a module of ``minidl.kernels`` (``"._im2col_numba"``), imported the
    first time the route runs; ``attr`` is looked up on every call (tests may replace it).
    """

    __slots__ = ("name", "module", "attr", "applies", "device", "_module")

    def __init__(self, name: str, module: str, attr: str, applies, device: str = "cpu"):
        if device not in DEVICES:
            raise ValueError(f"kernel route {name!r}: expected device 'cpu' or 'cuda', "
                             f"got {device!r}")
        self.name, self.module, self.attr, self.applies = name, module, attr, applies
        self.device = device
        self._module = None

    def function(self):
        if self._module is None:
            self._module = importlib.import_module(self.module, __package__)
        return getattr(self._module, self.attr)

    def __repr__(self) -> str:
        return f"Route({self.name!r}, {self.module[1:]}.{self.attr})"


def numba(module: str, attr: str, applies) -> Route:
    """A Numba route (the usual kind of fast route): host arrays only."""
    return Route("numba", module, attr, applies, device="cpu")


def _device(args, kwargs) -> str:
    """``"cuda"`` when any argument is a CuPy array, else ``"cpu"``."""
    if not backend.device_loaded():      # CuPy never imported: nothing can be on a device
        return "cpu"
    for a in (*args, *kwargs.values()):
        if backend.is_cupy(a):
            return "cuda"
    return "cpu"


class Operation:
    """One registry entry; calling it runs the route the rule picks (see module docstring)."""

    def __init__(self, name: str, reference, routes=(), example=None, doc: str | None = None):
        self.name = self.__name__ = self.__qualname__ = name
        self.reference = reference
        self.routes = tuple(routes)
        self.example = example      # () -> (args, kwargs) of a typical call, for listing()
        self.__doc__ = doc or f"{name} on the route the registry picks (reference: " \
                              f"{reference.__module__}.{reference.__name__})."

    def pick(self, *args, **kwargs) -> Route | None:
        """The fast route these arguments take, or None for the reference."""
        if _reference_only:
            return None
        device = _device(args, kwargs)
        for route in self.routes:
            if route.device == device and route.applies(*args, **kwargs):
                return route
        return None

    def __call__(self, *args, **kwargs):
        route = self.pick(*args, **kwargs)
        if route is not None:
            return route.function()(*args, **kwargs)
        return self.reference(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<minidl kernel operation {self.name}: {len(self.routes)} fast route(s)>"


OPERATIONS: dict[str, Operation] = {}


def register(name: str, reference, *routes: Route, example=None, doc: str | None = None
             ) -> Operation:
    """Enter an operation in the registry and return it (the callable layers use)."""
    if name in OPERATIONS:
        raise ValueError(f"kernel registry: operation {name!r} is registered twice")
    op = OPERATIONS[name] = Operation(name, reference, routes, example, doc)
    return op


def operations() -> dict[str, Operation]:
    """Every registered operation by name (importing ``minidl.kernels`` registers them all)."""
    importlib.import_module(__package__)
    return dict(OPERATIONS)


def reference(name: str):
    """The reference of operation ``name``, for a fast route that hands back a case it
    cannot compute exactly (a twin asks the registry: it never imports its dispatcher)."""
    return operations()[name].reference


def listing() -> list[dict]:
    """For each operation: the route a typical float32 call takes here, and the others.

    Rows ``{"operation", "route", "device", "reference", "fast", "example"}``: ``route``
    is ``"reference"`` or the fast route's name, as the rule picks it for the example
    arguments (the lab CNN's sizes, host arrays) with the current switch, threads and
    CPU; ``device`` is the route the same call takes with device (CuPy) arrays: the
    array-module ``"reference"`` unless a device route applies.
    """
    rows = []
    for name, op in operations().items():
        route, device, example = "-", "-", "-"
        if op.example is not None:
            args, kwargs = op.example()
            picked = op.pick(*args, **kwargs)
            route = "reference" if picked is None else picked.name
            example = _describe(args)
        if not any(r.device == "cuda" for r in op.routes) or _reference_only:
            device = "reference"
        elif op.example is not None and backend.cuda_available():
            args, kwargs = op.example()
            picked = op.pick(*(backend.to_device(a, "cuda") if hasattr(a, "dtype") else a
                               for a in args), **kwargs)
            device = "reference" if picked is None else picked.name
        rows.append({"operation": name, "route": route, "device": device,
                     "reference": f"{op.reference.__module__}.{op.reference.__name__}",
                     "fast": ", ".join(f"{r.name} ({r.device}): minidl.kernels."
                                       f"{r.module[1:]}.{r.attr}" for r in op.routes) or "-",
                     "example": example})
    return rows


def _describe(args) -> str:
    parts = []
    for a in args:
        if hasattr(a, "shape") and hasattr(a, "dtype"):
            parts.append(f"{a.dtype}{tuple(a.shape)}")
        elif isinstance(a, (tuple, int, float)) and len(parts) < 3:
            parts.append(repr(a))
    return " ".join(parts)


def format_listing(rows=None) -> str:
    """``listing()`` as a plain-text table (what ``python -m minidl.kernels`` prints)."""
    rows = listing() if rows is None else rows
    head = ("operation", "route", "device", "example", "reference", "fast")
    widths = [max(len(head[i]), *(len(r[h]) for r in rows)) for i, h in enumerate(head[:4])]
    lines = [f"{ENV_VAR}={'reference' if _reference_only else 'fast'}: "
             + ("every operation runs its reference" if _reference_only
                else "each operation takes its first fast route that applies, else its reference"),
             "route: with host (NumPy) arrays; device: with device (CuPy) arrays, where the "
             "reference runs on CuPy through backend.xp (the array-module reference)",
             "  ".join(h.ljust(w) for h, w in zip(head[:4], widths)) + "  reference / fast"]
    for r in rows:
        lines.append("  ".join(r[h].ljust(w) for h, w in zip(head[:4], widths))
                     + f"  {r['reference']} / {r['fast']}")
    return "\n".join(lines)
