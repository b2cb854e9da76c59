"""The IDX reader: every dtype, gzip detection by content, and each way a file can be bad."""
from __future__ import annotations

import gzip

import numpy as np
import pytest

from minidl.data import IDXError, read_idx, write_idx


def idx_bytes(code: int, shape, body: bytes) -> bytes:
    """An IDX file built by hand (independent of write_idx)."""
    header = bytes([0, 0, code, len(shape)])
    header += b"".join(int(n).to_bytes(4, "big") for n in shape)
    return header + body


def write(path, data: bytes, gz: bool = False):
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


@pytest.mark.parametrize("gz", [False, True])
def test_reads_uint8_images_by_hand(tmp_path, gz):
    pixels = np.arange(2 * 3 * 4, dtype=np.uint8)
    path = write(tmp_path / "images", idx_bytes(0x08, (2, 3, 4), pixels.tobytes()), gz)
    out = read_idx(path)
    assert out.dtype == np.uint8 and out.shape == (2, 3, 4)
    np.testing.assert_array_equal(out, pixels.reshape(2, 3, 4))
    out[0, 0, 0] = 99  # writable, and a copy of the file's bytes
    np.testing.assert_array_equal(read_idx(path)[0, 0, 0], 0)


@pytest.mark.parametrize("code, big_endian, values", [
    (0x09, ">i1", [-128, -1, 0, 127]),
    (0x0B, ">i2", [-32768, -2, 258, 32767]),
    (0x0C, ">i4", [-2 ** 31, -7, 65536 + 3, 2 ** 31 - 1]),
    (0x0D, ">f4", [-1.5, 0.0, 3.25, 1e30]),
    (0x0E, ">f8", [-1e300, 0.1, 2.5, np.pi]),
])
def test_multibyte_dtypes_are_big_endian_and_returned_native(tmp_path, code, big_endian,
                                                             values):
    body = np.array(values, dtype=big_endian).tobytes()
    path = write(tmp_path / "x.idx", idx_bytes(code, (4,), body))
    out = read_idx(path)
    assert out.dtype == np.dtype(big_endian).newbyteorder("=")
    assert out.dtype.isnative
    np.testing.assert_array_equal(out, np.array(values, dtype=big_endian))


def test_gzip_is_detected_by_magic_bytes_not_by_name(tmp_path):
    body = np.arange(6, dtype=np.uint8).tobytes()
    raw = idx_bytes(0x08, (6,), body)
    gz_named_raw = write(tmp_path / "labels.gz", raw)                # raw under a .gz name
    raw_named_gz = write(tmp_path / "labels-idx1-ubyte", raw, gz=True)  # gzip, no .gz
    np.testing.assert_array_equal(read_idx(gz_named_raw), np.arange(6))
    np.testing.assert_array_equal(read_idx(raw_named_gz), np.arange(6))


@pytest.mark.parametrize("dtype", ["uint8", "int8", "int16", "int32", "float32", "float64"])
@pytest.mark.parametrize("name", ["a.idx", "a.idx.gz"])
def test_write_idx_round_trip(tmp_path, rng, dtype, name):
    a = (rng.standard_normal((3, 5, 2)) * 50).astype(dtype)
    write_idx(tmp_path / name, a)
    assert ((tmp_path / name).read_bytes()[:2] == b"\x1f\x8b") == name.endswith(".gz")
    out = read_idx(tmp_path / name)
    assert out.dtype == a.dtype and out.shape == a.shape
    np.testing.assert_array_equal(out, a)


def test_write_idx_rejects_unsupported_dtype(tmp_path):
    with pytest.raises(ValueError, match="int64"):
        write_idx(tmp_path / "x", np.zeros(3, dtype=np.int64))


GOOD = idx_bytes(0x08, (3, 2, 2), bytes(range(12)))


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("case, data, pattern", [
    ("truncated body", GOOD[:-1], r"truncated: expected 28 bytes .* found 27"),
    ("truncated header", GOOD[:9], r"truncated header: expected 16 bytes .* found 9"),
    ("shorter than 4 bytes", GOOD[:3], r"expected at least 4 bytes, found 3"),
    ("empty", b"", r"expected at least 4 bytes, found 0"),
    ("trailing bytes", GOOD + b"\x00\x00", r"trailing bytes: expected 28 bytes .* found 30"),
    ("wrong magic", b"\x08\x03" + GOOD[2:], r"bad magic number: expected .* zero bytes, "
                                            r"found 0x0803"),
    ("wrong dtype code", GOOD[:2] + b"\x0a" + GOOD[3:], r"unknown dtype code: expected "
                                                       r"one of .*found 0x0a"),
    ("zero dimensions", b"\x00\x00\x08\x00", r"dimensions: expected at least 1, found 0"),
    # the header says 4 images of 2x2 but 3 are stored
    ("wrong count", idx_bytes(0x08, (4, 2, 2), bytes(range(12))),
     r"truncated: expected 32 bytes .*4x2x2 uint8.* found 28"),
    ("wrong count for int32", idx_bytes(0x0C, (3,), bytes(8)),
     r"truncated: expected 20 bytes \(header 8 \+ 3 int32\), found 16"),
])
def test_bad_files_raise_idx_error_naming_file_expected_and_found(tmp_path, gz, case, data,
                                                                  pattern):
    path = write(tmp_path / "bad-idx3-ubyte", data, gz)
    with pytest.raises(IDXError, match=pattern) as info:
        read_idx(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, ValueError)


def test_truncated_gzip_stream(tmp_path):
    compressed = gzip.compress(idx_bytes(0x08, (1000,), bytes(range(250)) * 4))
    path = tmp_path / "cut.gz"
    path.write_bytes(compressed[:len(compressed) // 2])
    with pytest.raises(IDXError, match=r"truncated gzip stream") as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_corrupted_gzip_stream(tmp_path):
    payload = np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes()
    compressed = bytearray(gzip.compress(idx_bytes(0x08, (4000,), payload)))
    compressed[-6] ^= 0xFF  # inside the CRC32 trailer
    path = tmp_path / "crc.gz"
    path.write_bytes(bytes(compressed))
    with pytest.raises(IDXError, match=r"corrupted gzip data") as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_idx(tmp_path / "nope")
