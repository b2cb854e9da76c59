"""A strict stand-in for CuPy, for the tests: device arrays whose data are NumPy arrays.

No GPU has to be present.  ``install(monkeypatch)`` puts this module in ``sys.modules`` as
``cupy`` (and ``special`` as ``cupyx.scipy.special``), so ``minidl.backend`` imports it
through its ordinary path; the ``cuda_device`` fixture (``tests/fakecupy/fixture.py``) does
that for one test.  Nothing outside ``tests/`` can reach it.

It implements the slice of CuPy's interface minidl uses, and CuPy's rules (each checked
against CuPy's source: cupy/cupy v14.2.0, what the ``gpu`` extra installs, whose files
cited here are unchanged on main at 6b6d9563c; cited as file:function):

* ``ndarray.__array__`` raises ``TypeError('Implicit conversion to a NumPy array is not
  allowed. ...')`` (_core/core.pyx: __array__): ``np.asarray(device_array)`` fails.
* NumPy functions and ufuncs called on device arrays dispatch to this module
  (``__array_function__``, ``__array_ufunc__``, written as CuPy's are) and return device
  arrays; a NumPy function CuPy does not have raises TypeError (NumPy's "no implementation
  found"): ``NAMES`` is CuPy's top-level namespace (cupy/__init__.py) intersected with NumPy's.
* Computing functions never take a host array: a ``numpy.ndarray`` (0-d included) among
  a ufunc's inputs is ``TypeError: Unsupported type`` (_core/_kernel.pyx: _preprocess_arg,
  _core/_scalar.pyx: CScalar); Python and NumPy scalars are fine.  Other routines refuse
  host arrays too, except where CuPy converts them: ``asarray``/``array`` (an upload),
  index arrays and lists (_core/_routines_indexing.pyx: _prepare_slice_list), values of
  advanced-index assignment (_scatter_op_single), 0-d values of basic assignment and fill
  (core.pyx: fill: "non-scalar numpy.ndarray cannot be used for fill"), size-1 ``copyto``
  sources (_manipulation/basic.py: copyto).
* ufuncs take only ``out``, ``dtype`` and ``casting`` (_kernel.pyx: ufunc.__call__: "Wrong
  arguments"; no ``where=``); ``reduce``/``accumulate`` only for add and multiply.
* Reductions and integer indexing give 0-d device arrays, never NumPy scalars; there is no
  ``__index__``, so a device scalar cannot be a Python index or a ``range`` bound.
* ``float()``, ``int()``, ``bool()``, ``complex()`` (size-1 arrays), ``.item()``,
  ``.tolist()``, ``.get()``, ``asnumpy``, ``repr``/``str``/``format`` and pickling copy to
  the host, as in CuPy (core.pyx: __float__ = float(self.get()), ...).  Boolean-mask
  indexing, ``nonzero``, ``flatnonzero``, ``argwhere`` and ``unique`` read a count back
  (a synchronisation).  Each of these is recorded, with the line of code outside this
  module that asked for it, in ``TRANSFERS`` and in every active ``counting()`` block, as
  is every upload (host to device).
* Numba cannot type a device array: a Numba function handed one raises.

Stricter than CuPy would be wrong too (it would flag code that works on a GPU): float()
and the like work, as they do in CuPy; only the recording says they cost a copy.
GPU kernels do not warn on overflow or invalid values, so nothing here emits NumPy's
floating-point warnings.
"""
from __future__ import annotations

import sys
import types

# CuPy takes these from NumPy (cupy/__init__.py: "from numpy import ...")
from numpy import (bool_, complex64, complex128, dtype, e, finfo, float16, float32,  # noqa: F401
                   float64, iinfo, inf, int8, int16, int32, int64, intp, issubdtype, nan,
                   newaxis, pi, promote_types, uint8, uint16, uint32, uint64)

from ._core import (LINALG_NAMES, NAMES, ROUTINES, TRANSFERS, Transfers, _UFUNCS,  # noqa: F401
                    array, asanyarray, asarray, asnumpy, can_cast, copyto, counting, cuda,
                    get_array_module, isscalar, linalg, ndarray, ndim, result_type, shape,
                    size, special, ufunc)

__version__ = "0.0-stand-in"

globals().update(_UFUNCS)
globals().update(ROUTINES)


def install(monkeypatch) -> types.ModuleType:
    """Make ``import cupy`` and ``import cupyx.scipy.special`` give this stand-in for the
    rest of the test (``monkeypatch`` undoes it), and point ``minidl.backend`` at it."""
    from minidl import backend  # noqa: PLC0415

    me = sys.modules[__name__]
    cupyx = types.ModuleType("cupyx")
    cupyx.scipy = types.ModuleType("cupyx.scipy")
    cupyx.scipy.special = special
    for name, module in (("cupy", me), ("cupy.cuda", cuda), ("cupy.linalg", linalg),
                         ("cupyx", cupyx), ("cupyx.scipy", cupyx.scipy),
                         ("cupyx.scipy.special", special)):
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setattr(backend, "_cupy", None)
    if backend.require_cuda() is not me:
        raise RuntimeError("install: minidl.backend did not take the stand-in")
    return me
