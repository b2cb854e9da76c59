"""The IDX reader against hostile files: gzip bombs, headers declaring huge sizes, special
files.  The header is checked before the rest is decompressed, and decompression stops at
the size the header declares."""
from __future__ import annotations

import gzip
import os
import zlib

import numpy as np
import pytest

from minidl.data import IDXError, read_idx
from minidl.data import idx as idx_module
from peak_memory import traced_peak

MiB = 2 ** 20
IMAGES = (60000, 28, 28)                      # Fashion-MNIST's training images
DECLARED = 60000 * 28 * 28                    # 47 040 000 bytes of data
EXTRA_ZEROS = 256 * MiB                       # what the bomb holds beyond the declared data


def header(code: int, shape) -> bytes:
    return bytes([0, 0, code, len(shape)]) + b"".join(int(n).to_bytes(4, "big") for n in shape)


def gzip_of(head: bytes, zeros: int) -> bytes:
    """gzip of ``head`` followed by ``zeros`` zero bytes, compressed chunk by chunk (the
    uncompressed bytes never exist at once)."""
    comp = zlib.compressobj(6, zlib.DEFLATED, 31)       # wbits 31: a gzip container
    parts = [comp.compress(head)]
    chunk = bytes(MiB)
    for _ in range(zeros // MiB):
        parts.append(comp.compress(chunk))
    parts.append(comp.compress(bytes(zeros % MiB)))
    parts.append(comp.flush())
    return b"".join(parts)


@pytest.fixture(scope="module")
def bomb(tmp_path_factory):
    """A 60000x28x28 header, its 47 MB of pixels, then 256 MiB more zeros: ~0.3 MB gzip'd."""
    path = tmp_path_factory.mktemp("bomb") / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip_of(header(0x08, IMAGES), DECLARED + EXTRA_ZEROS))
    return path


def test_a_gzip_bomb_is_refused_after_the_declared_size(bomb):
    assert os.path.getsize(bomb) < 1 * MiB
    error, peak = traced_peak(lambda: read_idx(bomb))
    assert isinstance(error, IDXError), error
    limit = DECLARED + 16 + idx_module.TRAILING_PROBE
    assert str(error) == (f"{bomb}: trailing bytes: expected {DECLARED + 16} bytes (header 16 "
                          f"+ 60000x28x28 uint8), found more than {limit}")
    # one array of the declared size and a few chunks, never the 303 MB the stream holds
    assert peak < DECLARED + 8 * MiB, peak


def test_a_header_declaring_more_than_the_limit_is_refused_before_decompressing(tmp_path):
    # 100000 x 1000 x 1000 uint8 = 1e11 bytes declared; 4 MiB of zeros follow, then bytes
    # that are not deflate data: reading stops at the header, long before them
    comp = zlib.compressobj(6, zlib.DEFLATED, 31)
    head = (comp.compress(header(0x08, (100000, 1000, 1000)) + bytes(4 * MiB))
            + comp.flush(zlib.Z_FULL_FLUSH))
    path = tmp_path / "huge.gz"
    path.write_bytes(head + b"\xff" * 200)
    error, peak = traced_peak(lambda: read_idx(path))
    assert isinstance(error, IDXError), error
    assert str(error) == (f"{path}: the header declares 100000x1000x1000 uint8, "
                          f"100000000000 bytes of data: more than the limit of 1073741824 "
                          f"bytes (minidl.data.idx.MAX_BYTES); not read")
    assert peak < 1 * MiB, peak


def test_the_limit_is_exactly_max_bytes(tmp_path):
    assert idx_module.MAX_BYTES == 2 ** 30
    path = tmp_path / "limit"
    # exactly the limit declared: accepted by the limit, then found truncated (the file's
    # size is known, so nothing is allocated)
    path.write_bytes(header(0x08, (2 ** 30,)) + bytes(10))
    with pytest.raises(IDXError, match=r"truncated: expected 1073741832 bytes .* found 18$"):
        read_idx(path)
    # one byte more: the limit
    path.write_bytes(header(0x08, (2 ** 30 + 1,)) + bytes(10))
    with pytest.raises(IDXError, match=r"1073741825 bytes of data: more than the limit of "
                                       r"1073741824 bytes"):
        read_idx(path)
    # int32 items count four bytes each
    path.write_bytes(header(0x0C, (2 ** 28 + 1,)))
    with pytest.raises(IDXError, match="1073741828 bytes of data: more than the limit"):
        read_idx(path)


@pytest.mark.parametrize("gz", [False, True])
def test_max_bytes_argument(tmp_path, gz):
    data = header(0x08, (3, 4)) + bytes(range(12))
    path = tmp_path / "a"
    path.write_bytes(gzip.compress(data) if gz else data)
    np.testing.assert_array_equal(read_idx(path, max_bytes=12), np.arange(12).reshape(3, 4))
    with pytest.raises(IDXError, match="12 bytes of data: more than the limit of 11 bytes"):
        read_idx(path, max_bytes=11)


def test_trailing_bytes_in_a_gzip_file_are_counted_up_to_the_probe(tmp_path):
    body = header(0x08, (4,)) + bytes(4)
    path = tmp_path / "t.gz"
    path.write_bytes(gzip.compress(body + bytes(idx_module.TRAILING_PROBE)))
    with pytest.raises(IDXError, match=rf"trailing bytes: .* found {12 + 2 ** 16}$"):
        read_idx(path)
    path.write_bytes(gzip.compress(body + bytes(idx_module.TRAILING_PROBE + 1)))
    with pytest.raises(IDXError, match=rf"trailing bytes: .* found more than {12 + 2 ** 16}$"):
        read_idx(path)


@pytest.mark.timeout(30)
def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path):
    path = tmp_path / "train-labels-idx1-ubyte"
    os.mkfifo(path)
    with pytest.raises(IDXError) as info:
        read_idx(path)
    assert str(info.value) == f"{path}: expected a regular file, found a FIFO (named pipe)"


def test_a_directory_is_refused(tmp_path):
    with pytest.raises(IDXError, match=r": expected a regular file, found a directory$"):
        read_idx(tmp_path)


def test_a_declared_size_larger_than_a_raw_file_allocates_nothing(tmp_path):
    path = tmp_path / "raw"
    path.write_bytes(header(0x08, (512, 1024, 1024)) + bytes(5))    # declares 512 MiB
    error, peak = traced_peak(lambda: read_idx(path))
    assert isinstance(error, IDXError) and "truncated: expected 536870928 bytes" in str(error)
    assert peak < 1 * MiB, peak


def test_multibyte_data_read_in_chunks_is_exact(tmp_path):
    # more than one read chunk (1 MiB), an item split across chunks, big-endian to native
    values = np.arange(300_001, dtype=">f8") * 1.5
    path = tmp_path / "f.gz"
    path.write_bytes(gzip.compress(header(0x0E, (300_001,)) + values.tobytes(), compresslevel=1))
    out = read_idx(path)
    assert out.dtype == np.float64 and out.dtype.isnative and out.flags.writeable
    np.testing.assert_array_equal(out, values)


def test_a_damaged_data_file_is_one_clear_line_in_the_cli(cli, tmp_path, monkeypatch, request):
    # a damaged IDX file says what is wrong with it; the CLI shows that line alone, not
    # the "unexpected error, run again with --debug" of a bug
    data = tmp_path / "data"
    data.mkdir()
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                 "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (data / name).write_bytes(b"\x00\x00\x08\x03not an idx file")
    monkeypatch.setenv("MINIDL_DATA", str(data))
    # tuning.data keeps the data set it read: read afresh here, and again after this test
    import tuning.data
    cached = [f for f in vars(tuning.data).values() if hasattr(f, "cache_clear")]
    assert cached
    for f in cached:
        f.cache_clear()
        request.addfinalizer(f.cache_clear)
    status, _, err = cli("run", "--space", "lab-mlp", "--study-name", "d", "--n-trials", "1",
                         "--epochs", "1", "--train-size", "200", "--val-size", "200")
    assert status == 1
    assert "tuning run: error:" in err and "idx" in err.lower()
    assert "--debug" not in err
