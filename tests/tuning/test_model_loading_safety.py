"""Loading untrusted model files and folders: ``minidl.load`` checks every size from the
zip's central directory and the .npy headers before reading, refuses special files up
front; ``tuning.load_model`` reads only files inside the folder and checks the config's
model size before building it.  Every refusal is a ValueError naming the file and why."""
from __future__ import annotations

import io
import json
import os
import zipfile

import numpy as np
import pytest
from numpy.lib import format as npy_format

import minidl
from minidl import nn
from minidl import serialization
from tuning import loading
from tuning.models import build_model
from peak_memory import traced_peak

MiB = 2 ** 20


def mlp():
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 3))


def snapshot(model):
    return {k: np.array(v, copy=True) for k, v in model.state_dict().items()}


def assert_unchanged(model, before):
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, before[k])


def npy_header(descr: str, shape, version=(1, 0)) -> bytes:
    """A .npy header (magic, version, length, dict), as numpy writes it."""
    fp = io.BytesIO()
    header = {"descr": descr, "fortran_order": False, "shape": tuple(shape)}
    if version == (1, 0):
        npy_format.write_array_header_1_0(fp, header)
    else:
        npy_format.write_array_header_2_0(fp, header)
    return fp.getvalue()


def write_npz(path, members, compression=zipfile.ZIP_STORED):
    """``members``: name -> bytes, or name -> (header bytes, number of zero bytes after it),
    written chunk by chunk (a gigabyte of zeros never exists in memory)."""
    with zipfile.ZipFile(path, "w", compression=compression, compresslevel=1) as zf:
        for name, content in members.items():
            if isinstance(content, bytes):
                zf.writestr(name, content)
                continue
            head, zeros = content
            with zf.open(name, "w", force_zip64=True) as out:
                out.write(head)
                chunk = bytes(MiB)
                for _ in range(zeros // MiB):
                    out.write(chunk)
                out.write(bytes(zeros % MiB))
    return path


def good_members():
    """The members of a checkpoint of ``mlp()`` with every weight 0.5 (as .npy bytes)."""
    out = {}
    for key, value in mlp().state_dict().items():
        fp = io.BytesIO()
        np.save(fp, np.full(value.shape, 0.5, np.float32))
        out[key + ".npy"] = fp.getvalue()
    return out


# -- minidl.load: sizes from the headers, before reading ----------------------------------

@pytest.fixture(scope="module")
def gigabyte_member(tmp_path_factory):
    """A ~5 MB .npz whose '1.weight' is a true 1 GiB float32 array of zeros (deflated)."""
    path = tmp_path_factory.mktemp("bomb") / "model.npz"
    members = good_members()
    members["1.weight.npy"] = (npy_header("<f4", (2 ** 28,)), 2 ** 30)
    return write_npz(path, members, zipfile.ZIP_DEFLATED)


def test_a_gigabyte_member_is_refused_from_its_header_without_reading_it(gigabyte_member):
    assert os.path.getsize(gigabyte_member) < 8 * MiB
    model = mlp()
    before = snapshot(model)
    error, peak = traced_peak(lambda: minidl.load(model, gigabyte_member))
    assert isinstance(error, ValueError), error
    assert str(error) == (f"load: {str(gigabyte_member)!r} does not fit the model (Sequential): "
                          f"'1.weight': expected shape (8, 12), got (268435456,) "
                          f"(1,073,741,824 bytes in the file)")
    assert peak < 1 * MiB, peak
    assert_unchanged(model, before)


def test_an_unexpected_gigabyte_member_is_named_with_its_size_and_not_read(tmp_path):
    members = good_members()
    members["huge.npy"] = (npy_header("<f4", (2 ** 26,)), 2 ** 28)
    path = write_npz(tmp_path / "m.npz", members, zipfile.ZIP_DEFLATED)
    error, peak = traced_peak(lambda: minidl.load(mlp(), path))
    assert isinstance(error, ValueError), error
    assert str(error) == (f"load: {str(path)!r} does not fit the model (Sequential): unexpected "
                          f"keys ['huge'] (not read; 'huge': 268,435,456 bytes)")
    assert peak < 1 * MiB, peak


@pytest.mark.parametrize("reader", ["load", "read_metadata"])
def test_a_header_claiming_more_than_the_entry_holds_is_a_value_error(tmp_path, reader):
    members = good_members()
    members["1.weight.npy"] = npy_header("<f8", (10 ** 12,)) + bytes(80)
    path = write_npz(tmp_path / "m.npz", members)
    run = ((lambda: minidl.load(mlp(), path)) if reader == "load"
           else (lambda: serialization.read_metadata(path)))
    with pytest.raises(ValueError) as info:
        run()
    assert str(info.value) == (f"load: entry '1.weight' of {str(path)!r} is damaged: its "
                               f"header declares shape (1000000000000,) float64 "
                               f"(8,000,000,000,000 bytes), but the entry holds 80 bytes of "
                               f"data")


def test_an_entry_holding_more_than_its_header_declares_is_damaged(tmp_path):
    members = good_members()
    members["1.bias.npy"] = npy_header("<f4", (8,)) + bytes(33)
    path = write_npz(tmp_path / "m.npz", members)
    with pytest.raises(ValueError, match=r"entry '1.bias' of .* is damaged: its header declares "
                                         r"shape \(8,\) float32 \(32 bytes\), but the entry "
                                         r"holds 33 bytes of data$"):
        minidl.load(mlp(), path)


def test_metadata_is_limited_to_max_metadata_bytes(tmp_path):
    assert serialization.MAX_METADATA_BYTES == 16 * MiB
    key = serialization.METADATA_KEY
    prefix = '{"format": "minidl", "version": 1, "metadata": {"pad": "'
    chars = serialization.MAX_METADATA_BYTES // 4          # 4 bytes per character
    text = prefix + "x" * (chars - len(prefix) - 3) + '"}}'
    assert len(text) == chars
    members = good_members()
    for name, size in (("exact", chars), ("over", chars + 1)):
        content = text if size == chars else text[:-3] + 'x"}}'
        fp = io.BytesIO()
        np.save(fp, np.array([content]))
        members[key + ".npy"] = fp.getvalue()
        path = write_npz(tmp_path / f"{name}.npz", members, zipfile.ZIP_DEFLATED)
        if name == "exact":
            assert len(minidl.load(mlp(), path)["pad"]) == chars - len(prefix) - 3
        else:
            with pytest.raises(ValueError) as info:
                minidl.load(mlp(), path)
            assert str(info.value) == (f"load: entry {key!r} of {str(path)!r} holds "
                                       f"16,777,220 bytes, more than the limit of 16,777,216 "
                                       f"for metadata (minidl.serialization.MAX_METADATA_BYTES)")


@pytest.mark.timeout(30)
def test_a_fifo_named_model_npz_is_refused_without_waiting(tmp_path):
    path = tmp_path / "model.npz"
    os.mkfifo(path)
    for run in (lambda: minidl.load(mlp(), path), lambda: serialization.read_metadata(path)):
        with pytest.raises(ValueError) as info:
            run()
        assert str(info.value) == (f"load: {str(path)!r} is not a readable .npz archive "
                                   f"(a FIFO (named pipe), not a regular file)")


@pytest.mark.timeout(30)
def test_a_device_is_refused_without_reading_it():
    with pytest.raises(ValueError, match=r"load: '/dev/zero' is not a readable .npz archive "
                                         r"\(a character device, not a regular file\)$"):
        minidl.load(mlp(), "/dev/zero")


def test_duplicate_entries_and_unknown_npy_versions_are_refused(tmp_path):
    members = good_members()
    path = tmp_path / "dup.npz"
    with zipfile.ZipFile(path, "w") as zf:
        for name, content in members.items():
            zf.writestr(name, content)
        with pytest.warns(UserWarning, match="Duplicate name"):
            zf.writestr("1.bias.npy", members["1.bias.npy"])
    with pytest.raises(ValueError, match=r"entry '1.bias' of .* appears twice"):
        minidl.load(mlp(), path)
    # format 3.0 (UTF-8 headers, which numpy.savez writes only for non-Latin-1 field names)
    header = npy_header("<f4", (8,), version=(2, 0))
    members["1.bias.npy"] = header[:6] + b"\x03\x00" + header[8:] + bytes(32)
    path = write_npz(tmp_path / "v3.npz", members)
    with pytest.raises(ValueError, match=r"entry '1.bias' of .* is a .npy file of format "
                                         r"version 3.0, expected 1.0 or 2.0"):
        minidl.load(mlp(), path)


def test_what_numpy_writes_still_loads_exactly(tmp_path):
    """Fortran order, big-endian, .npy format 2.0, compressed archives, empty metadata."""
    src = mlp()
    state = {k: np.asarray(v) for k, v in src.state_dict().items()}
    variants = {
        "fortran.npz": {k: np.asfortranarray(v) for k, v in state.items()},
        "big-endian.npz": {k: v.astype(">f8") for k, v in state.items()},
    }
    for name, arrays in variants.items():
        np.savez(tmp_path / name, **arrays)
    np.savez_compressed(tmp_path / "compressed.npz", **state)
    members = {}
    for key, value in state.items():
        fp = io.BytesIO()
        npy_format.write_array(fp, value, version=(2, 0))
        members[key + ".npy"] = fp.getvalue()
    write_npz(tmp_path / "v2.npz", members)
    for name in [*variants, "compressed.npz", "v2.npz"]:
        dst = mlp()
        assert minidl.load(dst, tmp_path / name) == {}, name
        for k, v in dst.state_dict().items():
            np.testing.assert_array_equal(v, state[k].astype(np.float32), err_msg=name)
        assert serialization.read_metadata(tmp_path / name) == {}


# -- tuning.load_model: only files inside the folder, sizes before building ------------------

LAB = {"model": "lab-mlp", "hidden_size": 16, "dropout_rate": 0.2}


def make_folder(folder, config=LAB, **result):
    """A folder as `retrain` leaves it (model.npz and result.json); the model saved."""
    folder.mkdir(parents=True, exist_ok=True)
    minidl.manual_seed(3)
    model = build_model(config)
    minidl.save(model, folder / "model.npz", config=config)
    (folder / "result.json").write_text(json.dumps({"config": config, **result}))
    return model


def refusal(folder) -> str:
    with pytest.raises(ValueError) as info:
        loading.load_model(folder)
    return str(info.value)


def test_a_good_folder_loads(tmp_path):
    saved = make_folder(tmp_path / "m", model_file="model.npz")
    loaded = loading.load_model(tmp_path / "m")
    assert not loaded.training
    for k, v in saved.state_dict().items():
        np.testing.assert_array_equal(loaded.state_dict()[k], v)


def test_empty_result_json_names_the_file_and_the_missing_key(tmp_path):
    make_folder(tmp_path / "m")
    (tmp_path / "m" / "result.json").write_text("{}")
    assert refusal(tmp_path / "m") == (
        f"load_model: {tmp_path / 'm' / 'result.json'}: missing key 'config' (the model's "
        f"configuration): expected the result.json `tuning retrain --out` writes")


@pytest.mark.parametrize("content, reason", [
    ("[1, 2]", "expected a JSON object, got list"),
    ('{"config": [1]}', "'config' is list, expected a JSON object"),
    ("{not json", "not valid JSON (Expecting property name enclosed in double quotes: "
                  "line 1 column 2 (char 1))"),
    ('{"config": {"model": "mlp"}}', "its config lacks the key 'hidden_sizes', needed to "
                                     "build the 'mlp' model"),
    ('{"config": {"model": "cnn", "filters": [8, -8], "kernel_sizes": [3, 3]}}',
     "its config cannot describe a model: filters[1] is -8, expected an integer >= 1"),
    ('{"config": {"model": "gan"}}', "its config is refused: build_model: unknown model 'gan'; "
                                     "expected 'lab-mlp', 'mlp', 'cnn' or 'rnn'"),
])
def test_a_malformed_result_json_is_a_value_error_naming_it(tmp_path, content, reason):
    make_folder(tmp_path / "m")
    (tmp_path / "m" / "result.json").write_text(content)
    assert refusal(tmp_path / "m") == f"load_model: {tmp_path / 'm' / 'result.json'}: {reason}"


def test_model_file_outside_the_folder_is_refused(tmp_path):
    make_folder(tmp_path / "other")
    outside = str(tmp_path / "other" / "model.npz")
    result_path = tmp_path / "m" / "result.json"
    for model_file, reason in [
            (outside, f"model_file {outside!r} is an absolute path; expected a file inside "
                      f"{tmp_path / 'm'}"),
            ("../other/model.npz", f"model_file '../other/model.npz' contains '..'; expected "
                                   f"a file inside {tmp_path / 'm'}"),
            ("sub/../model.npz", f"model_file 'sub/../model.npz' contains '..'; expected a "
                                 f"file inside {tmp_path / 'm'}"),
            ("", "model_file '': expected a file name inside the folder"),
            (7, "model_file 7: expected a file name inside the folder")]:
        make_folder(tmp_path / "m", model_file=model_file)
        assert refusal(tmp_path / "m") == f"load_model: {result_path}: {reason}"
    # a symbolic link inside the folder that leads out of it
    make_folder(tmp_path / "m", model_file="link.npz")
    (tmp_path / "m" / "link.npz").symlink_to(outside)
    assert refusal(tmp_path / "m") == (f"load_model: {result_path}: model_file 'link.npz' "
                                       f"leads outside {tmp_path / 'm'} (a symbolic link to "
                                       f"{outside})")
    # one that stays inside is followed
    (tmp_path / "m" / "link.npz").unlink()
    (tmp_path / "m" / "link.npz").symlink_to("model.npz")
    loading.load_model(tmp_path / "m")


def test_result_json_leading_outside_the_folder_is_refused(tmp_path):
    make_folder(tmp_path / "other")
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "result.json").symlink_to(tmp_path / "other" / "result.json")
    assert refusal(tmp_path / "m") == (
        f"load_model: {tmp_path / 'm' / 'result.json'}: a symbolic link leading outside its "
        f"folder (to {tmp_path / 'other' / 'result.json'})")


@pytest.mark.timeout(30)
def test_fifos_in_a_folder_are_refused_without_waiting(tmp_path):
    make_folder(tmp_path / "m")
    (tmp_path / "m" / "model.npz").unlink()
    os.mkfifo(tmp_path / "m" / "model.npz")
    assert refusal(tmp_path / "m") == (f"load: {str(tmp_path / 'm' / 'model.npz')!r} is not a "
                                       f"readable .npz archive (a FIFO (named pipe), not a "
                                       f"regular file)")
    (tmp_path / "m" / "result.json").unlink()
    os.mkfifo(tmp_path / "m" / "result.json")
    assert refusal(tmp_path / "m") == (f"load_model: {tmp_path / 'm' / 'result.json'}: a FIFO "
                                       f"(named pipe), not a regular file")


def test_a_result_json_over_the_limit_is_not_read(tmp_path):
    make_folder(tmp_path / "m")
    assert loading.MAX_RESULT_BYTES == 16 * MiB
    with open(tmp_path / "m" / "result.json", "r+b") as f:   # sparse: no disk used
        f.truncate(loading.MAX_RESULT_BYTES + 1)
    assert refusal(tmp_path / "m") == (f"load_model: {tmp_path / 'm' / 'result.json'}: "
                                       f"16,777,217 bytes, more than the limit of 16,777,216 "
                                       f"for a result.json")
    with open(tmp_path / "m" / "result.json", "r+b") as f:   # exactly the limit: read
        f.truncate(loading.MAX_RESULT_BYTES)
    assert "not valid JSON" in refusal(tmp_path / "m")


def test_a_huge_layer_is_refused_before_anything_is_allocated(tmp_path):
    make_folder(tmp_path / "m")
    config = {"model": "mlp", "hidden_sizes": [40000, 40000], "activation": "ReLU",
              "dropout_rate": 0.1}
    (tmp_path / "m" / "result.json").write_text(json.dumps({"config": config}))
    loading.parameter_limit()         # computed once (imports the spaces) before measuring
    error, peak = traced_peak(lambda: loading.load_model(tmp_path / "m"))
    assert isinstance(error, ValueError), error
    assert str(error) == (
        f"load_model: {tmp_path / 'm' / 'result.json'}: its config describes a model of "
        f"1,631,840,010 parameters (largest layer Linear(40000, 40000): 1,600,040,000), more "
        f"than the limit of 101,437,050 (25 times the largest model a search space draws); "
        f"not built")
    assert peak < 1 * MiB, peak


def test_the_parameter_limit_is_25_times_the_largest_model_the_spaces_draw():
    # the largest draw: the cnn space with every number at its maximum, built for real
    largest = {"model": "cnn", "filters": [128, 128, 128], "kernel_sizes": [7, 7, 7],
               "convs_per_block": 2, "batch_norm": True, "pool_type": "max",
               "pool_kernel": 3, "dense_size": 256, "dropout_rate": 0.5}
    n = build_model(largest).num_parameters()
    assert n == 4_057_482
    assert loading.largest_space_model() == ("cnn", n)
    assert loading.PARAMETER_LIMIT_FACTOR == 25
    assert loading.parameter_limit() == 25 * n == 101_437_050


def test_the_limit_is_inclusive(tmp_path, monkeypatch):
    result_path = tmp_path / "result.json"
    n = build_model(LAB).num_parameters()
    monkeypatch.setattr(loading, "parameter_limit", lambda: n)
    loading._check_model_size(LAB, result_path)              # exactly the limit: accepted
    monkeypatch.setattr(loading, "parameter_limit", lambda: n - 1)
    with pytest.raises(ValueError, match=rf"model of {n:,} parameters .* more than the limit "
                                         rf"of {n - 1:,} "):
        loading._check_model_size(LAB, result_path)


def test_model_parameters_counts_what_build_model_builds():
    import optuna
    from tuning.spaces import SPACES
    configs = []
    for name, space in SPACES.items():
        configs.append(space.function(optuna.trial.FixedTrial(dict(space.defaults))))
        configs.append(space.function(loading._LargestTrial()))
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
        for _ in range(12):
            configs.append(space.function(study.ask()))
    assert {c["model"] for c in configs} == {"lab-mlp", "mlp", "cnn", "rnn"}
    assert any(c["model"] == "cnn" and c["batch_norm"] for c in configs)
    assert any(c["model"] == "cnn" and not c["batch_norm"] for c in configs)
    assert any(c["model"] == "rnn" and c["cell"] == "GRU" and c["bidirectional"]
               for c in configs)
    for config in configs:
        counted = sum(n for _, n in loading.model_parameters(config))
        built = build_model(config).num_parameters()
        assert counted == built, config
        assert built <= loading.parameter_limit() // 20, config
