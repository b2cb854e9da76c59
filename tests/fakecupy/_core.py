"""The stand-in's arrays, ufuncs and routines (the public namespace is built in ``__init__``,
so that names such as ``all``, ``sum`` and ``max`` never shadow Python's builtins here)."""
from __future__ import annotations

import contextlib
import functools
import os
import sys
import types
import warnings

import numpy as np
PACKAGE = __name__.rpartition(".")[0]

_HERE = os.path.dirname(os.path.abspath(__file__))
_NUMPY_DIR = os.path.dirname(np.__file__)
# minidl.backend only passes transfers through: the line that asked is its caller's
_BACKEND = os.path.join(os.path.dirname(os.path.dirname(_HERE)), "minidl", "backend.py")

# CuPy's top-level functions that NumPy also has (cupy/__init__.py, v14.2.0).
NAMES = frozenset("""
abs absolute acos acosh add all allclose amax amin angle any append apply_along_axis arange
arccos arccosh arcsin arcsinh arctan arctan2 arctanh argmax argmin argpartition argsort
argwhere around array array_equal array_equiv array_split asanyarray asarray
asarray_chkfinite ascontiguousarray asfortranarray asin asinh atan atan2 atanh atleast_1d
atleast_2d atleast_3d average bincount bitwise_and bitwise_count bitwise_invert
bitwise_left_shift bitwise_not bitwise_or bitwise_right_shift bitwise_xor broadcast_arrays
broadcast_to cbrt ceil choose clip column_stack compress concat concatenate conj conjugate
convolve copy copysign copyto corrcoef correlate cos cosh count_nonzero cov cross cumprod
cumsum cumulative_prod cumulative_sum deg2rad degrees delete diag diag_indices
diag_indices_from diagflat diagonal diff digitize divide divmod dot dsplit dstack ediff1d
einsum empty empty_like equal exp exp2 expand_dims expm1 extract eye fabs fill_diagonal fix
flatnonzero flip fliplr flipud float_power floor floor_divide fmax fmin fmod frexp full
full_like gcd gradient greater greater_equal heaviside histogram histogram2d histogramdd
hsplit hstack hypot i0 identity imag indices inner interp intersect1d invert isclose
iscomplex iscomplexobj isfinite isfortran isin isinf isnan isneginf isposinf isreal
isrealobj ix_ kron lcm ldexp left_shift less less_equal lexsort linspace log log10 log1p
log2 logaddexp logaddexp2 logical_and logical_not logical_or logical_xor logspace matmul
matrix_transpose max maximum mean median meshgrid min minimum mod modf moveaxis multiply
nan_to_num nanargmax nanargmin nancumprod nancumsum nanmax nanmean nanmedian nanmin nanprod
nanstd nansum nanvar negative nextafter nonzero not_equal ones ones_like outer packbits pad
partition percentile permute_dims piecewise place positive pow power prod ptp put
put_along_axis putmask quantile rad2deg radians ravel ravel_multi_index real real_if_close
reciprocal remainder repeat require reshape resize right_shift rint roll rollaxis rot90
round searchsorted select shape sign signbit sin sinc sinh size sort sort_complex split
sqrt square squeeze stack std subtract sum swapaxes take take_along_axis tan tanh tensordot
tile trace transpose trapezoid tri tril tril_indices tril_indices_from trim_zeros triu
triu_indices triu_indices_from true_divide trunc union1d unique unique_all unique_counts
unique_inverse unique_values unpackbits unravel_index unwrap vander var vdot vsplit vstack
where zeros zeros_like
""".split())

# cupy.linalg's functions that NumPy's linalg also has (cupy/linalg/__init__.py).
LINALG_NAMES = ("matrix_power", "cholesky", "qr", "svd", "eigh", "eig", "eigvalsh", "eigvals",
                "norm", "cond", "det", "matrix_rank", "slogdet", "solve", "tensorsolve",
                "lstsq", "inv", "pinv", "tensorinv")

# Functions whose result size depends on the data: CuPy reads a count back to the host.
_SYNCING = frozenset({"nonzero", "flatnonzero", "argwhere", "unique", "unique_all",
                      "unique_counts", "unique_inverse", "unique_values", "extract",
                      "compress", "intersect1d", "union1d", "setdiff1d", "trim_zeros"})

# Python scalars CuPy takes as kernel arguments (_core/_scalar.pyx: scalar_type_set).
_PY_SCALARS = (bool, int, float, complex)


def _is_scalar(x) -> bool:
    return type(x) in _PY_SCALARS or isinstance(x, np.generic)


# -- recording transfers --------------------------------------------------------------

class Transfers:
    """Transfers between host and device, in order: ``(direction, what, where)``.

    ``direction`` is ``"to_host"`` (a copy to host memory, or a count read back: a
    synchronisation) or ``"to_device"`` (an upload); ``where`` is ``file:line`` of the
    first frame outside this module, NumPy and ``minidl/backend.py`` (the code that asked
    for it).
    """

    def __init__(self):
        self.events = []

    def to_host(self) -> list:
        return [e for e in self.events if e[0] == "to_host"]

    def to_device(self) -> list:
        return [e for e in self.events if e[0] == "to_device"]

    def clear(self) -> None:
        self.events.clear()

    def summary(self, direction: str = "to_host") -> dict:
        """``{(what, where): count}`` for one direction."""
        out = {}
        for d, what, where in self.events:
            if d == direction:
                out[(what, where)] = out.get((what, where), 0) + 1
        return out


TRANSFERS = Transfers()
_ACTIVE: list = [TRANSFERS]


@contextlib.contextmanager
def counting():
    """``with counting() as t: ...``: the transfers made inside the block."""
    t = Transfers()
    _ACTIVE.append(t)
    try:
        yield t
    finally:
        _ACTIVE.remove(t)


def _caller() -> str:
    frame = sys._getframe(2)
    while frame is not None:
        name = frame.f_code.co_filename
        if not (name.startswith(_HERE) or name.startswith(_NUMPY_DIR) or name == _BACKEND
                or name.startswith("<__array_function__")):
            return f"{os.path.relpath(name)}:{frame.f_lineno}"
        frame = frame.f_back
    return "?"


def _record(direction: str, what: str) -> None:
    event = (direction, what, _caller())
    for t in _ACTIVE:
        t.events.append(event)


# -- arrays -----------------------------------------------------------------------------

class _Flags:
    """CuPy's ``ndarray.flags``: the three it has (_core/flags.pyx)."""

    def __init__(self, a):
        self.c_contiguous = bool(a.flags.c_contiguous)
        self.f_contiguous = bool(a.flags.f_contiguous)
        self.owndata = bool(a.flags.owndata)

    def __getitem__(self, name):
        return {"C_CONTIGUOUS": self.c_contiguous, "F_CONTIGUOUS": self.f_contiguous,
                "OWNDATA": self.owndata}[name]


class _Device:
    id = 0

    def synchronize(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _host_array_error(where: str) -> TypeError:
    return TypeError(f"{where}: got a numpy.ndarray, which CuPy does not convert implicitly "
                     f"(move it with cupy.asarray first)")


def _unwrap(x, where: str):
    """A routine's argument for NumPy: device arrays give their data; host arrays refuse."""
    if isinstance(x, ndarray):
        return x._a
    if isinstance(x, np.ndarray):
        raise _host_array_error(where)
    if isinstance(x, (list, tuple)):
        return type(x)(_unwrap(v, where) for v in x)
    return x


def _wrap(r):
    """NumPy results as device arrays (0-d arrays for scalars, as CuPy gives)."""
    if isinstance(r, np.ndarray):
        return ndarray._of(r)
    if isinstance(r, np.generic):
        return ndarray._of(np.asarray(r))
    if isinstance(r, tuple):
        return tuple(_wrap(v) for v in r)
    if isinstance(r, list):
        return [_wrap(v) for v in r]
    return r


def _index(key):
    """An index for NumPy: device arrays as their data; lists and host arrays are uploaded
    (CuPy converts them, _prepare_slice_list); a boolean mask reads its count back."""
    parts = key if isinstance(key, tuple) else (key,)
    out = []
    for s in parts:
        if isinstance(s, ndarray):
            if s.dtype == np.bool_:
                _record("to_host", "boolean-mask index (count read back)")
            out.append(s._a)
        elif isinstance(s, (list, np.ndarray)) or (isinstance(s, tuple)):
            _record("to_device", "index array")
            a = np.asarray(s)
            if a.dtype == np.bool_:
                _record("to_host", "boolean-mask index (count read back)")
            out.append(a)
        elif isinstance(s, (bool, np.bool_)):
            out.append(s)
        else:
            out.append(s)
    return tuple(out) if isinstance(key, tuple) else out[0]


def _is_basic(key) -> bool:
    parts = key if isinstance(key, tuple) else (key,)
    return all(s is None or s is Ellipsis or isinstance(s, (slice, int, np.integer))
               and not isinstance(s, (bool, np.bool_)) for s in parts)


def _should_use_rop(x, y) -> bool:
    """core.pyx: _should_use_rop."""
    y_ufunc = getattr(y, "__array_ufunc__", _should_use_rop)
    if y_ufunc is not _should_use_rop:
        return y_ufunc is None
    return getattr(x, "__array_priority__", 0) < getattr(y, "__array_priority__", 0)


def _binary(name):
    def op(x, y):
        if isinstance(y, ndarray):
            return _UFUNCS[name](x, y)
        if _should_use_rop(x, y):
            return NotImplemented
        return getattr(np, name)(x, y)      # NumPy dispatches back through __array_ufunc__

    def rop(x, y):
        if isinstance(y, ndarray):           # not reached: y's own op ran first
            return _UFUNCS[name](y, x)
        if _should_use_rop(x, y):
            return NotImplemented
        return getattr(np, name)(y, x)
    return op, rop


def _inplace(name):
    def iop(self, other):
        return _UFUNCS[name](self, other, out=self)
    return iop


class ndarray:
    """A device array of the stand-in: the data is a NumPy array, hidden behind CuPy's rules."""

    __array_priority__ = 100
    __slots__ = ("_a", "__weakref__")
    __hash__ = None

    def __init__(self, shape, dtype=float, memptr=None, strides=None, order="C"):
        self._a = np.empty(shape, dtype=dtype, order=order)

    @classmethod
    def _of(cls, a: np.ndarray) -> "ndarray":
        obj = cls.__new__(cls)
        obj._a = a
        return obj

    # -- attributes ----------------------------------------------------------------
    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    itemsize = property(lambda self: self._a.itemsize)
    nbytes = property(lambda self: self._a.nbytes)
    strides = property(lambda self: self._a.strides)
    flags = property(lambda self: _Flags(self._a))
    T = property(lambda self: ndarray._of(self._a.T))
    mT = property(lambda self: ndarray._of(self._a.mT))
    device = property(lambda self: _Device())

    @property
    def base(self):
        return None if self._a.base is None else ndarray._of(self._a.base)

    @property
    def real(self):
        return ndarray._of(self._a.real)

    @property
    def imag(self):
        return ndarray._of(self._a.imag)

    @shape.setter
    def shape(self, value):
        self._a.shape = value

    # -- conversions: copies to the host, as in CuPy ---------------------------------
    def __array__(self, dtype=None, copy=None):
        raise TypeError("Implicit conversion to a NumPy array is not allowed. "
                        "Please use `.get()` to construct a NumPy array explicitly.")

    def get(self, stream=None, order="C", out=None, blocking=True):
        _record("to_host", "get")
        if out is not None:
            if not isinstance(out, np.ndarray):
                raise TypeError(f"get: out must be a numpy.ndarray, got {type(out).__name__}")
            out[...] = self._a
            return out
        return np.array(self._a, order=order, copy=True)

    def set(self, arr, stream=None):
        if not isinstance(arr, np.ndarray):
            raise TypeError(f"set: expected a numpy.ndarray, got {type(arr).__name__}")
        _record("to_device", "set")
        if arr.shape != self.shape or arr.dtype != self.dtype:
            raise ValueError("set: shape and dtype must match")
        self._a[...] = arr

    def item(self):
        if self.size != 1:
            raise ValueError("can only convert an array of size 1 to a Python scalar")
        _record("to_host", "item")
        return self._a.item()

    def tolist(self):
        _record("to_host", "tolist")
        return self._a.tolist()

    def tobytes(self, order="C"):
        _record("to_host", "tobytes")
        return self._a.tobytes(order)

    def __float__(self):
        _record("to_host", "float()")
        return float(self._a)

    def __int__(self):
        _record("to_host", "int()")
        return int(self._a)

    def __complex__(self):
        _record("to_host", "complex()")
        return complex(self._a)

    def __bool__(self):
        if self.size == 0:
            warnings.warn("The truth value of an empty array is ambiguous. Returning False",
                          DeprecationWarning, stacklevel=2)
            return False
        if self.size == 1:
            _record("to_host", "bool()")
            return bool(self._a.reshape(()))
        raise ValueError("The truth value of an array with more than one element is "
                         "ambiguous. Use a.any() or a.all()")

    def __repr__(self):
        _record("to_host", "repr")
        return repr(self._a)

    def __str__(self):
        _record("to_host", "str")
        return str(self._a)

    def __format__(self, spec):
        _record("to_host", "format")
        return format(self._a, spec)

    def __reduce__(self):
        _record("to_host", "pickle")
        return array, (self._a.copy(),)

    def __copy__(self):
        return self.copy()

    def __deepcopy__(self, memo):
        return self.copy()

    # -- containers -----------------------------------------------------------------
    def __len__(self):
        if self.ndim == 0:
            raise TypeError("len() of unsized object")
        return self._a.shape[0]

    def __iter__(self):
        if self.ndim == 0:
            raise TypeError("iteration over a 0-d array")
        return (self[i] for i in range(self._a.shape[0]))

    def __getitem__(self, key):
        if isinstance(key, tuple) and len(key) == self.ndim and _is_basic(key) and all(
                isinstance(s, (int, np.integer)) for s in key):
            key = key + (Ellipsis,)         # a 0-d view, as CuPy gives, not a NumPy scalar
        elif isinstance(key, (int, np.integer)) and self.ndim == 1 \
                and not isinstance(key, (bool, np.bool_)):
            key = (key, Ellipsis)
        return _wrap(self._a[_index(key)])

    def __setitem__(self, key, value):
        if isinstance(value, ndarray):
            value = value._a
        elif isinstance(value, (np.ndarray, list, tuple)):
            if _is_basic(key):
                if np.ndim(value) != 0:
                    raise ValueError("non-scalar numpy.ndarray cannot be used for fill")
            else:
                _record("to_device", "assigned value")
            value = np.asarray(value)
        self._a[_index(key)] = value

    # -- methods (CuPy's ndarray methods; core.pyx) --------------------------------------
    def astype(self, dtype, order="K", casting=None, subok=None, copy=True):
        kwargs = {} if casting is None else {"casting": casting}
        r = self._a.astype(dtype, order=order, copy=copy, **kwargs)
        return self if r is self._a else ndarray._of(r)

    def copy(self, order="C"):
        return ndarray._of(self._a.copy(order=order))

    def view(self, dtype=None):
        return ndarray._of(self._a.view() if dtype is None else self._a.view(dtype))

    def fill(self, value):
        if isinstance(value, ndarray):
            if value.shape != ():
                raise ValueError("non-scalar cupy.ndarray cannot be used for fill")
            value = value._a
        elif isinstance(value, np.ndarray) and value.shape != ():
            raise ValueError("non-scalar numpy.ndarray cannot be used for fill")
        self._a.fill(value)

    def reshape(self, *shape, order="C"):
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        return ndarray._of(self._a.reshape(shape, order=order))

    def transpose(self, *axes):
        return ndarray._of(self._a.transpose(*axes))

    def swapaxes(self, axis1, axis2):
        return ndarray._of(self._a.swapaxes(axis1, axis2))

    def ravel(self, order="C"):
        return ndarray._of(self._a.ravel(order))

    def flatten(self, order="C"):
        return ndarray._of(self._a.flatten(order))

    def squeeze(self, axis=None):
        return ndarray._of(self._a.squeeze(axis))

    def nonzero(self):
        _record("to_host", "nonzero (count read back)")
        return _wrap(self._a.nonzero())

    def dot(self, b, out=None):
        return ROUTINES["dot"](self, b, out=out)

    def __dlpack__(self, *args, **kwargs):
        raise TypeError("the stand-in device has no DLPack")


def _method(name):
    def method(self, *args, **kwargs):
        args = _unwrap(args, f"ndarray.{name}")
        out = kwargs.get("out")
        if out is not None:
            if not isinstance(out, ndarray):
                raise TypeError(f"ndarray.{name}: out must be a cupy.ndarray")
            kwargs["out"] = out._a
        kwargs = {k: _unwrap(v, f"ndarray.{name}") for k, v in kwargs.items()}
        with np.errstate(all="ignore"):
            r = getattr(self._a, name)(*args, **kwargs)
        return out if out is not None else _wrap(r)
    method.__name__ = name
    return method


for _name in ("all", "any", "argmax", "argmin", "argpartition", "argsort", "clip", "conj",
              "conjugate", "cumprod", "cumsum", "diagonal", "max", "mean", "min", "partition",
              "prod", "ptp", "put", "repeat", "round", "searchsorted", "sort", "std", "sum",
              "take", "trace", "var", "choose", "compress"):
    setattr(ndarray, _name, _method(_name))

for _name, _ufunc in (("add", "add"), ("sub", "subtract"), ("mul", "multiply"),
                      ("matmul", "matmul"), ("truediv", "true_divide"),
                      ("floordiv", "floor_divide"), ("mod", "remainder"), ("pow", "power"),
                      ("lshift", "left_shift"), ("rshift", "right_shift"),
                      ("and", "bitwise_and"), ("or", "bitwise_or"), ("xor", "bitwise_xor")):
    _op, _rop = _binary(_ufunc)
    setattr(ndarray, f"__{_name}__", _op)
    setattr(ndarray, f"__r{_name}__", _rop)
    if _name != "matmul":
        setattr(ndarray, f"__i{_name}__", _inplace(_ufunc))


def _richcmp(name):
    def cmp(self, other):
        if isinstance(other, ndarray):
            return _UFUNCS[name](self, other)
        if _should_use_rop(self, other):
            return NotImplemented
        if isinstance(other, np.ndarray) and other.ndim == 0:
            other = other.item()
        if name in ("equal", "not_equal") and other is None:
            return ROUTINES["zeros" if name == "equal" else "ones"](self.shape, dtype=np.bool_)
        return getattr(np, name)(self, other)
    return cmp


for _dunder, _ufunc in (("lt", "less"), ("le", "less_equal"), ("eq", "equal"),
                        ("ne", "not_equal"), ("gt", "greater"), ("ge", "greater_equal")):
    setattr(ndarray, f"__{_dunder}__", _richcmp(_ufunc))

ndarray.__neg__ = lambda self: _UFUNCS["negative"](self)
ndarray.__pos__ = lambda self: _UFUNCS["positive"](self)
ndarray.__abs__ = lambda self: _UFUNCS["absolute"](self)
ndarray.__invert__ = lambda self: _UFUNCS["invert"](self)


def _array_ufunc(self, ufunc, method, *inputs, **kwargs):
    """core.pyx: __array_ufunc__, as CuPy writes it."""
    inout = inputs
    if "out" in kwargs:
        out = kwargs["out"]
        if len(out) != 1:
            raise ValueError("The 'out' parameter must have exactly one array value")
        inout += out
        kwargs["out"] = out[0]
    if method not in ("__call__", "outer", "at", "reduce", "accumulate", "reduceat"):
        return NotImplemented
    name = ufunc.__name__
    try:
        func = _UFUNCS.get(name) or getattr(special, name)
        if method != "__call__":
            func = getattr(func, method)
    except AttributeError:
        return NotImplemented
    for x in inout:
        if not (_is_scalar(x) or isinstance(x, (ndarray, np.ndarray))):
            return NotImplemented
    if name in ("greater", "greater_equal", "less", "less_equal", "equal", "not_equal"):
        inputs = tuple(x.item() if isinstance(x, np.ndarray) and x.ndim == 0 else x
                       for x in inputs)
    return func(*inputs, **kwargs)


def _array_function(self, func, types_, args, kwargs):
    """core.pyx: __array_function__, as CuPy writes it."""
    try:
        module = functools.reduce(getattr, func.__module__.split(".")[1:], sys.modules[PACKAGE])
        ours = getattr(module, func.__name__)
    except AttributeError:
        return NotImplemented
    if ours is func:
        return NotImplemented
    for t in types_:
        if not issubclass(t, (ndarray, np.ndarray)):
            return NotImplemented
    return ours(*args, **kwargs)


ndarray.__array_ufunc__ = _array_ufunc
ndarray.__array_function__ = _array_function


# -- ufuncs -------------------------------------------------------------------------------

class ufunc:
    """A CuPy ufunc: device arrays and scalars in, device arrays out (_core/_kernel.pyx)."""

    _REDUCIBLE = {"add": "sum", "multiply": "prod"}

    def __init__(self, np_ufunc):
        self._np = np_ufunc
        self.__name__ = self.name = np_ufunc.__name__
        self.nin, self.nout, self.nargs = np_ufunc.nin, np_ufunc.nout, np_ufunc.nargs

    def _inputs(self, args):
        out = []
        for a in args:
            if isinstance(a, ndarray):
                out.append(a._a)
            elif _is_scalar(a):
                out.append(a)
            else:
                raise TypeError(f"Unsupported type {type(a)}")
        return out

    def __call__(self, *args, out=None, dtype=None, casting="same_kind", **kwargs):
        if kwargs:
            raise TypeError(f"Wrong arguments {kwargs}")
        if len(args) > self.nin:
            if out is not None:
                raise ValueError("Cannot specify 'out' as both a positional and keyword "
                                 "argument")
            args, out = args[:self.nin], args[self.nin]
        if len(args) != self.nin:
            raise TypeError(f"Wrong number of arguments for {self.name!r}")
        inputs = self._inputs(args)
        if isinstance(out, tuple):
            out = out[0] if len(out) == 1 else out
        if out is not None and not isinstance(out, ndarray):
            raise TypeError("Output arguments must be cupy.ndarray")
        extra = {} if dtype is None else {"dtype": dtype}
        with np.errstate(all="ignore"):
            r = self._np(*inputs, out=None if out is None else out._a, casting=casting, **extra)
        return out if out is not None else _wrap(r)

    def reduce(self, array, axis=0, dtype=None, out=None, keepdims=False):
        if self.name not in self._REDUCIBLE:
            raise NotImplementedError(f"`cupy_{self.name}.reduce` is not supported yet")
        return getattr(array, self._REDUCIBLE[self.name])(axis, dtype, out, keepdims)

    def accumulate(self, array, axis=0, dtype=None, out=None):
        if self.name not in self._REDUCIBLE:
            raise NotImplementedError(f"`cupy_{self.name}.accumulate` is not supported yet")
        return getattr(array, "cumsum" if self.name == "add" else "cumprod")(axis, dtype, out)

    def reduceat(self, array, indices, axis=0, dtype=None, out=None):
        if self.name != "add":
            raise NotImplementedError(f"`cupy_{self.name}.reduceat` is not supported yet")
        return _wrap(np.add.reduceat(_unwrap(array, "add.reduceat"), _index(indices), axis,
                                     dtype))

    def outer(self, a, b, **kwargs):
        a, b = asarray(a), asarray(b)
        return self(a.reshape(a.shape + (1,) * b.ndim), b.reshape((1,) * a.ndim + b.shape),
                    **kwargs)

    def at(self, a, indices, b=None):
        if self.name not in ("add", "subtract", "maximum", "minimum"):
            raise NotImplementedError(f"`{self.name}.at` is not supported yet")
        if not isinstance(a, ndarray):
            raise TypeError("ufunc.at: expected a cupy.ndarray")
        b = b._a if isinstance(b, ndarray) else b
        self._np.at(a._a, _index(indices), b)

    def __repr__(self):
        return f"<ufunc 'cupy_{self.name}'>"


_UFUNCS = {name: ufunc(getattr(np, name)) for name in NAMES
           if isinstance(getattr(np, name, None), np.ufunc)}
ndarray.__divmod__ = lambda x, y: _UFUNCS["divmod"](x, y)


# -- routines ----------------------------------------------------------------------------

def _routine(name, np_func):
    def routine(*args, **kwargs):
        out = kwargs.get("out")
        if out is not None:
            if not isinstance(out, ndarray):
                raise TypeError(f"{name}: out must be a cupy.ndarray")
            kwargs["out"] = out._a
        args = _unwrap(args, name)
        kwargs = {k: _unwrap(v, name) for k, v in kwargs.items()}
        if name in _SYNCING or (name == "where" and len(args) == 1):
            _record("to_host", f"{name} (count read back)")
        with np.errstate(all="ignore"):
            r = np_func(*args, **kwargs)
        return out if out is not None else _wrap(r)
    routine.__name__ = routine.__qualname__ = name
    routine.__module__ = PACKAGE
    return routine


_SPECIAL_ROUTINES = {"asarray", "array", "asanyarray", "copyto", "shape", "size", "ndim",
                     "result_type", "can_cast", "isscalar"}

ROUTINES = {name: _routine(name, getattr(np, name))
            for name in sorted(NAMES - set(_UFUNCS) - _SPECIAL_ROUTINES) if hasattr(np, name)}


def asarray(a, dtype=None, order=None, *, blocking=False):
    """A device array of ``a``: device arrays as they are (cast to ``dtype``), anything else
    uploaded."""
    if isinstance(a, ndarray):
        return a if dtype is None else a.astype(dtype, copy=False)
    if isinstance(a, (list, tuple)) and any(isinstance(v, ndarray) for v in a):
        return _wrap(np.asarray(_unwrap(a, "asarray"), dtype=dtype))   # stacked on the device
    _record("to_device", "asarray")
    return ndarray._of(np.array(a, dtype=dtype, order=order or "K", copy=True))


def array(obj, dtype=None, copy=True, order="K", subok=False, ndmin=0, *, blocking=False):
    if isinstance(obj, ndarray):
        r = obj._a.astype(obj.dtype if dtype is None else dtype, copy=copy or dtype is not None)
        return ndarray._of(np.array(r, ndmin=ndmin, copy=False) if ndmin else r)
    _record("to_device", "array")
    return ndarray._of(np.array(obj, dtype=dtype, order=order, ndmin=ndmin, copy=True))


asanyarray = asarray


def asnumpy(a, stream=None, order="C", out=None, *, blocking=True):
    """cupy/__init__.py: asnumpy: a device array's ``get()``; anything else ``numpy.asarray``."""
    if isinstance(a, ndarray):
        return a.get(stream=stream, order=order, out=out, blocking=blocking)
    temp = np.asarray(a, order=order)
    if out is not None:
        out[...] = temp
        return out
    return temp


def get_array_module(*args):
    for a in args:
        if isinstance(a, ndarray):
            return sys.modules[PACKAGE]
    return np


def copyto(dst, src, casting="same_kind", where=None):
    """_manipulation/basic.py: copyto (a host source must hold one value)."""
    if not isinstance(dst, ndarray):
        raise TypeError("copyto: dst must be a cupy.ndarray")
    if isinstance(src, np.ndarray):
        if src.size != 1:
            raise ValueError("non-scalar numpy.ndarray cannot be used for copyto")
        src = src.squeeze()[()]
    elif isinstance(src, ndarray):
        src = src._a
    if where is not None:
        if not isinstance(where, ndarray):
            raise _host_array_error("copyto(where=)") if isinstance(where, np.ndarray) \
                else TypeError("copyto: where must be a cupy.ndarray")
        where = where._a
    np.copyto(dst._a, src, casting=casting, where=True if where is None else where)


def result_type(*arrays_and_dtypes):
    return np.result_type(*(a.dtype if isinstance(a, ndarray) else a
                            for a in arrays_and_dtypes))


def can_cast(from_, to, casting="safe"):
    return np.can_cast(from_.dtype if isinstance(from_, ndarray) else from_, to, casting)


def ndim(a):
    try:
        return a.ndim
    except AttributeError:
        return np.ndim(a)


def shape(a):
    return a.shape if isinstance(a, ndarray) else np.shape(a)


def size(a, axis=None):
    if isinstance(a, ndarray):
        return a.size if axis is None else a.shape[axis]
    return np.size(a, axis)


def isscalar(element):
    return np.isscalar(element)


# -- submodules ------------------------------------------------------------------------

linalg = types.ModuleType(f"{PACKAGE}.linalg")
for _name in LINALG_NAMES:
    setattr(linalg, _name, _routine(_name, getattr(np.linalg, _name)))
    getattr(linalg, _name).__module__ = linalg.__name__

special = types.ModuleType("cupyx.scipy.special")
special.__doc__ = "The stand-in's cupyx.scipy.special: erf (what minidl uses)."


def _erf(x, out=None):
    import scipy.special  # noqa: PLC0415 - a dependency of the project
    if not isinstance(x, ndarray):
        raise TypeError(f"Unsupported type {type(x)}")
    r = scipy.special.erf(x._a)
    if out is not None:
        out._a[...] = r
        return out
    return ndarray._of(r)


special.erf = _erf

cuda = types.ModuleType(f"{PACKAGE}.cuda")
cuda.runtime = types.SimpleNamespace(
    getDeviceCount=lambda: 1,
    deviceSynchronize=lambda: None,
    runtimeGetVersion=lambda: 0,
    getDeviceProperties=lambda device: {"name": b"stand-in device (NumPy data)",
                                        "totalGlobalMem": 0})
cuda.Device = lambda device=None: _Device()
cuda.is_available = lambda: True
