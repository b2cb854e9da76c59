"""Reading and writing IDX files, the format of MNIST and Fashion-MNIST.

An IDX file is a small big-endian header followed by the raw array::

    offset  size       content
    0       2          two zero bytes
    2       1          dtype code (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
                       0x0D float32, 0x0E float64)
    3       1          number of dimensions d (>= 1)
    4       4 * d      each dimension as a big-endian uint32
    4 + 4d  ...        prod(dims) items, big-endian, C order

The file may be gzip-compressed; that is recognised by its first bytes (1f 8b), never
by its name, since both forms are found under both names in the wild.

The file is read as a stream: the header first, then exactly the number of bytes it
declares into an array allocated once.  A header declaring more than ``MAX_BYTES`` of
data is refused before anything is allocated or decompressed, and decompression stops
at the declared size, so a small gzip file that would expand to gigabytes (a "gzip
bomb") costs no more memory than its header declares; what follows the declared data
is an error (``trailing bytes``), found by decompressing at most ``TRAILING_PROBE``
bytes more.
"""
from __future__ import annotations

import gzip
import io
import math
import os
import stat
import zlib

import numpy as np

__all__ = ["IDXError", "read_idx", "write_idx", "MAX_BYTES"]

GZIP_MAGIC = b"\x1f\x8b"

# IDX dtype code -> big-endian NumPy dtype.
IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODE_OF_DTYPE = {dt.newbyteorder("="): code for code, dt in IDX_DTYPES.items()}

# The most data (header excluded) one IDX file may declare: 1 GiB.  The largest IDX data
# sets in use fit with room to spare (Fashion-MNIST's training images are 47 040 000
# bytes, EMNIST ByClass's 547 178 688); a header declaring more is refused before
# anything is allocated.  ``read_idx(path, max_bytes=...)`` sets another limit.
MAX_BYTES = 2 ** 30
# How much is decompressed past the declared data to tell how many trailing bytes there
# are; beyond it the message says "more than".
TRAILING_PROBE = 2 ** 16
_CHUNK = 2 ** 20


class IDXError(ValueError):
    """An IDX file that cannot be read: truncated, corrupted or not IDX at all.

    The message names the file, what was expected there and what was found.
    """


class _Reader:
    """``read(n)`` on a file object, turning gzip errors into IDXError naming ``path``."""

    def __init__(self, f, path, compressed_size: int | None):
        self.f, self.path, self.compressed_size = f, path, compressed_size

    def read(self, n: int) -> bytes:
        try:
            return self.f.read(n)
        except EOFError as exc:
            raise IDXError(f"{self.path}: truncated gzip stream: expected a complete gzip "
                           f"file ({self.compressed_size} compressed bytes found), found its "
                           f"end missing ({exc})") from None
        except (gzip.BadGzipFile, zlib.error, OSError) as exc:
            raise IDXError(f"{self.path}: corrupted gzip data: expected a valid gzip stream, "
                           f"found an error while decompressing ({exc})") from None

    def readinto(self, view: memoryview) -> int:
        """Fill ``view`` as far as the stream goes; the number of bytes read."""
        done = 0
        while done < len(view):
            chunk = self.read(min(_CHUNK, len(view) - done))
            if not chunk:
                break
            view[done:done + len(chunk)] = chunk
            done += len(chunk)
        return done


def _read_stream(reader: _Reader, path, max_bytes: int,
                 size_known: int | None = None) -> np.ndarray:
    """The array of the IDX stream ``reader``: header, then exactly the declared data.

    ``size_known``: the stream's total length when known (a plain file), to refuse a
    header that declares more than the file holds before allocating.
    """
    head = reader.read(4)
    if len(head) < 4:
        raise IDXError(f"{path}: too short for an IDX header: expected at least 4 bytes, "
                       f"found {len(head)}")
    if head[0] != 0 or head[1] != 0:
        raise IDXError(f"{path}: bad magic number: expected the file to start with two "
                       f"zero bytes, found 0x{head[0]:02x}{head[1]:02x} (not an IDX file?)")
    code, ndim = head[2], head[3]
    if code not in IDX_DTYPES:
        known = ", ".join(f"0x{c:02x}" for c in IDX_DTYPES)
        raise IDXError(f"{path}: unknown dtype code: expected one of {known}, "
                       f"found 0x{code:02x}")
    if ndim < 1:
        raise IDXError(f"{path}: bad number of dimensions: expected at least 1, found 0")
    header = 4 + 4 * ndim
    dims = reader.read(4 * ndim)
    if len(dims) < 4 * ndim:
        raise IDXError(f"{path}: truncated header: expected {header} bytes for "
                       f"{ndim} dimensions, found {4 + len(dims)} bytes in the file")
    shape = tuple(int.from_bytes(dims[4 * i: 4 + 4 * i], "big") for i in range(ndim))
    dtype = IDX_DTYPES[code]
    nbytes = math.prod(shape) * dtype.itemsize
    expected = header + nbytes
    described = (f"expected {expected} bytes (header {header} + {'x'.join(map(str, shape))} "
                 f"{dtype.newbyteorder('=').name})")
    if nbytes > max_bytes:
        raise IDXError(f"{path}: the header declares {'x'.join(map(str, shape))} "
                       f"{dtype.newbyteorder('=').name}, {nbytes} bytes of data: more than "
                       f"the limit of {max_bytes} bytes (minidl.data.idx.MAX_BYTES); not "
                       f"read")
    if size_known is not None and size_known < expected:
        raise IDXError(f"{path}: truncated: {described}, found {size_known}")
    data = np.empty(math.prod(shape), dtype=dtype)
    got = reader.readinto(memoryview(data).cast("B"))
    if got < nbytes:
        raise IDXError(f"{path}: truncated: {described}, found {header + got}")
    extra = reader.read(TRAILING_PROBE + 1)
    if extra:
        if size_known is not None:
            found = str(size_known)
        elif len(extra) > TRAILING_PROBE:
            found = f"more than {expected + TRAILING_PROBE}"
        else:
            found = str(expected + len(extra))
        raise IDXError(f"{path}: trailing bytes: {described}, found {found}")
    # native byte order, writable; no copy for one-byte dtypes
    return data.reshape(shape).astype(dtype.newbyteorder("="), copy=False)


def parse_idx(buf: bytes, path="<bytes>", max_bytes: int = MAX_BYTES) -> np.ndarray:
    """Parse the (uncompressed) bytes of an IDX file; ``path`` only names it in errors."""
    return _read_stream(_Reader(io.BytesIO(buf), path, None), path, max_bytes, len(buf))


def read_idx(path, max_bytes: int = MAX_BYTES) -> np.ndarray:
    """Read an IDX file, gzip-compressed or raw, into a native-order NumPy array.

    Parameters
    ----------
    path : str or os.PathLike
    max_bytes : int
        The most data (header excluded) the header may declare (default ``MAX_BYTES``,
        1 GiB); checked before anything is allocated or decompressed.

    Returns
    -------
    np.ndarray
        Shape as stored in the header, dtype from the header's code (uint8 for MNIST),
        writable and in native byte order.

    Raises
    ------
    IDXError
        Bad magic number, unknown dtype code, zero dimensions, a header declaring more
        than ``max_bytes``, a length that does not match the header (truncated or
        trailing bytes), a corrupted gzip stream, or a path that is not a regular file
        (a FIFO, a device, a directory).  The message names the file, what was expected
        and what was found.
    FileNotFoundError
        When ``path`` does not exist.
    """
    path = os.fspath(path)
    # O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused just below
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise IDXError(f"{path}: expected a regular file, found {file_kind(st.st_mode)}")
    except BaseException:
        os.close(fd)
        raise
    with open(fd, "rb") as f:
        magic = f.read(2)
        f.seek(0)
        if magic == GZIP_MAGIC:
            with gzip.GzipFile(fileobj=f, mode="rb") as gz:
                return _read_stream(_Reader(gz, path, st.st_size), path, max_bytes)
        return _read_stream(_Reader(f, path, None), path, max_bytes, st.st_size)


def file_kind(mode: int) -> str:
    """What a path that is not a regular file is (``os.stat``'s ``st_mode``), for messages:
    ``"a FIFO (named pipe)"``, ``"a directory"``... (also ``minidl.load``'s)."""
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "a special file"
def write_idx(path, array, compress: bool | None = None) -> None:
    """Write ``array`` as an IDX file (gzip'd when ``compress``, or when ``path`` ends in
    ``.gz`` and ``compress`` is None).  The inverse of :func:`read_idx`."""
    array = np.asarray(array)
    native = array.dtype.newbyteorder("=")
    if native not in _CODE_OF_DTYPE:
        raise ValueError(f"write_idx: expected an array of dtype uint8, int8, int16, int32, "
                         f"float32 or float64, got {array.dtype}")
    if array.ndim < 1 or array.ndim > 255:
        raise ValueError(f"write_idx: expected 1 to 255 dimensions, got {array.ndim}")
    if any(n >= 2 ** 32 for n in array.shape):
        raise ValueError(f"write_idx: every dimension must be < 2**32, got {array.shape}")
    path = os.fspath(path)
    code = _CODE_OF_DTYPE[native]
    header = bytes([0, 0, code, array.ndim]) + b"".join(
        int(n).to_bytes(4, "big") for n in array.shape)
    body = np.ascontiguousarray(array, dtype=IDX_DTYPES[code]).tobytes()
    data = header + body
    if compress is None:
        compress = path.endswith(".gz")
    if compress:
        data = gzip.compress(data, mtime=0)
    with open(path, "wb") as f:
        f.write(data)
