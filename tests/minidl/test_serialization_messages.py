"""The exact words of ``minidl.load``'s refusals: which entry, which file, what is wrong.

Each damaged archive is built by hand (a zip of .npy entries, stored uncompressed so a
byte can be changed in place), and the whole message is compared, so a message that
names the wrong entry or file, or loses the reason, fails here.  The reading of an
entry's data in chunks is tested directly with a small chunk size.
"""
from __future__ import annotations

import io
import os
import signal
import zipfile

import numpy as np
import pytest

import minidl
from minidl import nn, serialization
from minidl.serialization import _read_data, _read_header


def npy(array) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.asarray(array), allow_pickle=False)
    return buf.getvalue()


def archive(path, entries: dict) -> str:
    """Write ``{name: bytes}`` as an uncompressed zip; returns the path as a string."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return str(path)


def linear():
    minidl.manual_seed(0)
    return nn.Linear(2, 3)


def test_an_entry_that_is_not_an_array(tmp_path):
    path = archive(tmp_path / "m.npz", {"weight.npy": b"just some text, no header"})
    with pytest.raises(ValueError) as info:
        minidl.load(linear(), path)
    assert str(info.value) == (f"load: entry 'weight' of {path!r} is not a NumPy array: "
                               f"expected a .npz archive written by minidl.save or "
                               f"numpy.savez")


def test_a_damaged_header_names_its_entry_and_numpy_s_reason(tmp_path):
    good = npy(np.zeros((3, 2), np.float32))
    broken = good[:10] + b"{'descr': <broken" + good[27:]
    path = archive(tmp_path / "m.npz", {"weight.npy": broken})
    with pytest.raises(ValueError) as info:
        minidl.load(linear(), path)
    message = str(info.value)
    assert message.startswith(f"load: entry 'weight' of {path!r} is damaged (ValueError: ")
    assert message.endswith(")") and len(message) > 60


def test_a_header_cut_short_is_damaged_not_a_crash(tmp_path):
    path = archive(tmp_path / "m.npz", {"bias.npy": npy(np.zeros(3, np.float32))[:9]})
    with pytest.raises(ValueError) as info:
        minidl.load(linear(), path)
    assert str(info.value).startswith(f"load: entry 'bias' of {path!r} is damaged (")


def test_an_unknown_npy_version(tmp_path):
    data = bytearray(npy(np.zeros(3, np.float32)))
    data[6:8] = bytes([3, 0])             # format version 3.0
    path = archive(tmp_path / "m.npz", {"bias.npy": bytes(data)})
    with pytest.raises(ValueError) as info:
        minidl.load(linear(), path)
    assert str(info.value) == (f"load: entry 'bias' of {path!r} is a .npy file of format "
                               f"version 3.0, expected 1.0 or 2.0 (what numpy.savez writes)")


def test_a_bad_crc_names_the_entry(tmp_path):
    model = linear()
    path = minidl.save(model, tmp_path / "m.npz")
    entries = {}
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            entries[info.filename] = zf.read(info)
    path = archive(tmp_path / "crc.npz", entries)
    raw = bytearray(open(path, "rb").read())
    weight = npy(model.weight.data)
    at = raw.index(weight) + len(weight) - 1   # the last byte of weight's data
    raw[at] ^= 0xFF
    open(path, "wb").write(bytes(raw))
    with pytest.raises(ValueError) as info:
        minidl.load(linear(), path)
    assert str(info.value) == (f"load: entry 'weight' of {path!r} is damaged (BadZipFile: "
                               f"Bad CRC-32 for file 'weight.npy')")
    with pytest.raises(ValueError, match="Bad CRC-32 for file 'weight.npy'"):
        serialization.read_metadata(path)    # read_metadata reads (and checks) every entry


# -- reading an entry's data in chunks (the entry's size as its header declares it) -------

def entry_of(tmp_path, array, declared=None):
    """An archive with one entry ``a`` holding ``array``'s .npy bytes, and its ``_Entry``
    (with ``declared`` as the shape the header is taken to declare, when given)."""
    path = archive(tmp_path / "a.npz", {"a.npy": npy(array)})
    zf = zipfile.ZipFile(path)
    entry = _read_header(zf, zf.getinfo("a.npy"), "a", path)
    if declared is not None:
        entry = entry._replace(shape=declared)
    return zf, entry, path


@pytest.mark.parametrize("chunk", [1, 8, 24, 2 ** 20])
def test_data_is_read_whole_in_chunks(tmp_path, monkeypatch, chunk):
    monkeypatch.setattr(serialization, "_CHUNK", chunk)
    array = np.arange(21, dtype=np.float32).reshape(3, 7)     # 84 bytes: not a multiple of 8
    zf, entry, path = entry_of(tmp_path, array)
    with zf:
        assert np.array_equal(_read_data(zf, entry, path), array)
        assert _read_data(zf, entry, path, keep=False) is None
        fortran = np.asfortranarray(array)
    zf, entry, path = entry_of(tmp_path, fortran)
    with zf:
        got = _read_data(zf, entry, path)
    assert entry.fortran_order and np.array_equal(got, array)


@pytest.mark.parametrize("chunk", [8, 2 ** 20])
def test_more_data_than_declared_is_damage(tmp_path, monkeypatch, chunk):
    monkeypatch.setattr(serialization, "_CHUNK", chunk)
    zf, entry, path = entry_of(tmp_path, np.arange(22, dtype=np.float32), declared=(21,))
    with zf, pytest.raises(ValueError) as info:
        _read_data(zf, entry, path)
    assert str(info.value) == (f"load: entry 'a' of {path!r} is damaged (ValueError: more "
                               f"data than its header declares)")


def test_less_data_than_declared_is_damage(tmp_path, monkeypatch):
    monkeypatch.setattr(serialization, "_CHUNK", 8)
    zf, entry, path = entry_of(tmp_path, np.arange(20, dtype=np.float32), declared=(21,))
    with zf, pytest.raises(ValueError) as info:
        _read_data(zf, entry, path)
    assert str(info.value) == (f"load: entry 'a' of {path!r} is damaged (EOFError: 80 of 84 "
                               f"bytes of data)")


# -- the file, the archive, the entries ---------------------------------------------------

def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path):
    fifo = tmp_path / "pipe.npz"
    os.mkfifo(fifo)

    def hung(signum, frame):
        raise TimeoutError("load waited on the FIFO")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.setitimer(signal.ITIMER_REAL, 5.0)
    try:
        with pytest.raises(ValueError) as info:
            minidl.load(linear(), fifo)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert str(info.value) == (f"load: {str(fifo)!r} is not a readable .npz archive (a FIFO "
                               f"(named pipe), not a regular file)")


def test_a_path_through_a_file_is_not_readable(tmp_path):
    (tmp_path / "f").write_bytes(b"x")
    path = str(tmp_path / "f" / "m.npz")
    with pytest.raises(ValueError) as info:
        minidl.load(linear(), path)
    assert str(info.value) == (f"load: {path!r} is not a readable .npz archive ([Errno 20] "
                               f"Not a directory: {path!r})")


@pytest.mark.parametrize("content, what", [
    (b"", "the file is empty"),
    (b"GIF89a and so on", "it does not begin with a zip header: another format, or a "
                          "damaged file")])
def test_a_file_that_is_not_a_zip(tmp_path, content, what):
    path = tmp_path / "m.npz"
    path.write_bytes(content)
    with pytest.raises(ValueError) as info:
        minidl.load(linear(), path)
    assert str(info.value) == f"load: {str(path)!r} is not a readable .npz archive ({what})"


def test_a_truncated_zip(tmp_path):
    path = minidl.save(linear(), tmp_path / "m.npz")
    data = open(path, "rb").read()
    open(path, "wb").write(data[:len(data) // 2])
    with pytest.raises(ValueError) as info:
        minidl.load(linear(), path)
    assert str(info.value) == (f"load: {path!r} is not a readable .npz archive (damaged or "
                               f"truncated: BadZipFile: File is not a zip file)")


def test_entries_that_are_not_arrays_or_numbers(tmp_path):
    path = archive(tmp_path / "a.npz", {"weight.npy": npy(np.zeros((3, 2), np.float32)),
                                        "notes.txt": b"hello"})
    with pytest.raises(ValueError) as info:
        minidl.load(linear(), path)
    assert str(info.value) == (f"load: entry 'notes.txt' of {path!r} is not a NumPy array: "
                               f"expected a .npz archive written by minidl.save or "
                               f"numpy.savez")
    path = archive(tmp_path / "b.npz", {"weight.npy": npy(np.zeros((3, 2), np.complex64))})
    with pytest.raises(ValueError) as info:
        minidl.load(linear(), path)
    assert str(info.value) == (f"load: entry 'weight' of {path!r} has dtype complex64, "
                               f"expected floating point (or an integer buffer)")
    meta = serialization.METADATA_KEY
    path = archive(tmp_path / "c.npz", {f"{meta}.npy": npy(np.zeros(2, np.float64))})
    with pytest.raises(ValueError) as info:
        serialization.read_metadata(path)
    assert str(info.value) == (f"load: malformed metadata in {path!r} (dtype float64, "
                               f"expected a JSON string)")


def test_malformed_metadata_is_named(tmp_path):
    meta = serialization.METADATA_KEY
    path = archive(tmp_path / "m.npz", {f"{meta}.npy": npy(np.array(["{not json"]))})
    for read in (serialization.read_metadata, lambda p: minidl.load(linear(), p)):
        with pytest.raises(ValueError) as info:
            read(path)
        assert str(info.value).startswith(f"load: malformed metadata in {path!r} (Expecting "
                                          f"property name enclosed in double quotes")


def test_read_metadata_checks_every_entry_and_names_the_damaged_one(tmp_path):
    model = linear()
    path = minidl.save(model, tmp_path / "m.npz", epoch=3)
    assert serialization.read_metadata(path) == {"epoch": 3}
    raw = bytearray(open(path, "rb").read())
    at = raw.index(npy(model.bias.data)) + 130   # inside bias's data
    raw[at] ^= 0xFF
    open(path, "wb").write(bytes(raw))
    with pytest.raises(ValueError) as info:
        serialization.read_metadata(path)
    assert str(info.value) == (f"load: entry 'bias' of {path!r} is damaged (BadZipFile: Bad "
                               f"CRC-32 for file 'bias.npy')")


def test_the_kind_of_an_integer_buffer_and_the_sizes_of_unexpected_keys(tmp_path):
    bn = nn.BatchNorm1d(3)
    state = {k: np.asarray(v) for k, v in bn.state_dict().items()}
    state["num_batches_tracked"] = np.array(2.0)           # a float for an integer buffer
    path = str(tmp_path / "bn.npz")
    np.savez(path, **state)
    with pytest.raises(ValueError) as info:
        minidl.load(nn.BatchNorm1d(3), path)
    assert str(info.value) == (f"load: entry 'num_batches_tracked' of {path!r} has dtype "
                               f"float64, expected an integer (it is an integer buffer)")
    state = {k: np.asarray(v) for k, v in linear().state_dict().items()}
    np.savez(path, **state, extra=np.zeros(4, np.float32), more=np.zeros(2, np.float64))
    with pytest.raises(ValueError) as info:
        minidl.load(linear(), path)
    assert str(info.value) == (f"load: {path!r} does not fit the model (Linear): unexpected "
                               f"keys ['extra', 'more'] (not read; 'extra': 16 bytes, "
                               f"'more': 16 bytes)")


# -- save -------------------------------------------------------------------------------

def test_save_refuses_the_reserved_name_and_keeps_nan_metadata(tmp_path):
    model = linear()
    model.register_buffer(serialization.METADATA_KEY, np.zeros(1, np.float32))
    with pytest.raises(ValueError) as info:
        minidl.save(model, tmp_path / "m.npz")
    assert str(info.value) == (f"save: the model has a parameter named "
                               f"{serialization.METADATA_KEY!r}, which is reserved")
    path = minidl.save(linear(), tmp_path / "n.npz", loss=float("nan"), best=float("inf"))
    meta = serialization.read_metadata(path)
    assert np.isnan(meta["loss"]) and meta["best"] == float("inf")


def test_a_failed_save_leaves_no_file_and_says_why(tmp_path, monkeypatch):
    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", full_disk)
    with pytest.raises(OSError, match="No space left on device"):
        minidl.save(linear(), tmp_path / "m.npz")
    assert list(tmp_path.iterdir()) == []
