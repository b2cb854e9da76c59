"""The only place in minidl that knows CuPy exists.

It answers "which array module does this array belong to?" (``xp``), moves
arrays between host and device, hands out CuPy's special functions
(``device_special``), and reports whether a GPU path is available.  CuPy is
imported lazily, on first use of a device path, so ``import minidl`` never
imports it.

Rules of device code (CuPy's, and the test suite's stand-in device enforces them,
``tests/fakecupy``): a device array never becomes a host array implicitly
(``np.asarray(device_array)`` raises TypeError; use ``to_numpy``); a host array is
never an operand of a device computation (move it with ``asarray_like`` first;
Python and NumPy scalars are fine); Numba functions take host arrays only; and every
``float()``, ``int()``, ``bool()`` or ``.item()`` of a device array is a copy to the
host that waits for the device, so the training step does exactly one (the loss).
"""
from __future__ import annotations

import numpy as np

_cupy = None


def _get_cupy():
    """Import CuPy on demand; raise a clear error when it or a GPU is missing."""
    global _cupy
    if _cupy is None:
        try:
            import cupy  # noqa: PLC0415 - optional dependency, imported lazily
        except ImportError as exc:
            raise RuntimeError(
                "device 'cuda' needs CuPy: install it with `pip install .[gpu]` "
                "(and an NVIDIA driver)") from exc
        try:
            if cupy.cuda.runtime.getDeviceCount() < 1:
                raise RuntimeError("no CUDA device")
        except Exception as exc:  # CUDA driver errors have several types
            raise RuntimeError(f"device 'cuda' asked for but no usable GPU: {exc}") from exc
        _cupy = cupy
    return _cupy


def require_cuda():
    """Return the CuPy module, or raise RuntimeError saying what is missing."""
    return _get_cupy()


def cuda_available() -> bool:
    try:
        _get_cupy()
        return True
    except RuntimeError:
        return False


def device_loaded() -> bool:
    """Whether CuPy has been imported here (no array can be on a device before)."""
    return _cupy is not None


def is_cupy(a) -> bool:
    return _cupy is not None and isinstance(a, _cupy.ndarray)


def xp(a):
    """The array module (numpy or cupy) that ``a`` belongs to."""
    return _cupy if is_cupy(a) else np


def to_numpy(a) -> np.ndarray:
    """A host NumPy array for ``a`` (no copy when it already is one)."""
    if is_cupy(a):
        return _cupy.asnumpy(a)
    return np.asarray(a)


def to_device(a, device: str):
    """Move ``a`` to ``'cpu'`` or ``'cuda'``."""
    kind = device.split(":")[0]
    if kind == "cpu":
        return to_numpy(a)
    if kind == "cuda":
        return _get_cupy().asarray(a)
    raise ValueError(f"to_device: expected 'cpu' or 'cuda', got {device!r}")


def device_of(a) -> str:
    return "cuda" if is_cupy(a) else "cpu"


def device_special(name: str):
    """The function ``name`` of ``cupyx.scipy.special`` (e.g. ``"erf"``), for device arrays."""
    _get_cupy()
    import cupyx.scipy.special as special  # noqa: PLC0415 - optional dependency, GPU only
    return getattr(special, name)


def asarray_like(a, like):
    """``a`` as an array of the same module (numpy/cupy) as ``like``."""
    if is_cupy(like):
        return _cupy.asarray(a)
    return to_numpy(a)
