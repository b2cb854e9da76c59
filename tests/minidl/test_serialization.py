"""minidl.save / minidl.load (.npz, no pickle) and torch state_dict conversion."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

import minidl
from minidl import nn
from minidl.serialization import (METADATA_KEY, from_torch_state_dict, read_metadata,
                                  to_torch_state_dict)


def mlp(hidden=8):
    return nn.Sequential(nn.Flatten(), nn.Linear(12, hidden), nn.ReLU(), nn.Dropout(0.2),
                         nn.Linear(hidden, 3))


def assert_same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for k in sa:
        assert sa[k].dtype == sb[k].dtype
        np.testing.assert_array_equal(sa[k], sb[k])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_save_load_round_trip_is_exact_and_returns_metadata(tmp_path, rng, dtype):
    minidl.manual_seed(0)
    src = mlp().to(dtype)
    path = minidl.save(src, tmp_path / "model.npz", epoch=3, val_error=np.float32(0.125),
                       config={"hidden": 8, "lr": 1e-3}, history=np.array([0.5, 0.25]))
    assert path == str(tmp_path / "model.npz") and os.path.exists(path)
    dst = mlp().to(dtype)
    meta = minidl.load(dst, path)
    assert meta == {"epoch": 3, "val_error": 0.125, "config": {"hidden": 8, "lr": 1e-3},
                    "history": [0.5, 0.25]}
    assert_same_weights(src, dst)
    x = rng.standard_normal((4, 3, 4)).astype(dtype)
    src.eval(), dst.eval()
    np.testing.assert_array_equal(src(x), dst(x))
    assert read_metadata(path) == meta


def test_save_appends_npz_and_load_finds_it(tmp_path):
    model = mlp()
    path = minidl.save(model, tmp_path / "ckpt")
    assert path.endswith("ckpt.npz") and os.path.exists(path)
    assert minidl.load(mlp(), tmp_path / "ckpt") == {}
    assert sorted(os.listdir(tmp_path)) == ["ckpt.npz"]        # no temporary file left


def test_file_layout_is_plain_arrays_and_a_json_string(tmp_path):
    path = minidl.save(mlp(), tmp_path / "m.npz", note="hi")
    with zipfile.ZipFile(path) as zf:
        assert sorted(zf.namelist()) == sorted(
            ["1.weight.npy", "1.bias.npy", "4.weight.npy", "4.bias.npy", METADATA_KEY + ".npy"])
    with np.load(path, allow_pickle=False) as f:
        header = f[METADATA_KEY]
        assert header.dtype.kind == "U" and header.shape == (1,)
        assert json.loads(header[0]) == {"format": "minidl", "version": 1,
                                         "metadata": {"note": "hi"}}


def test_loading_casts_to_the_model_dtype(tmp_path):
    src = mlp().double()
    path = minidl.save(src, tmp_path / "m.npz")
    dst = mlp()
    minidl.load(dst, path)
    assert all(p.dtype == np.float32 for p in dst.parameters())
    np.testing.assert_array_equal(dst[1].weight.data, src[1].weight.data.astype(np.float32))


def test_loading_into_a_different_architecture_fails_and_changes_nothing(tmp_path):
    path = minidl.save(mlp(hidden=8), tmp_path / "m.npz")
    other = mlp(hidden=5)
    before = other.state_dict()
    with pytest.raises(ValueError, match=r"'1.weight': expected shape \(5, 12\), got \(8, 12\)"):
        minidl.load(other, path)
    for k, v in other.state_dict().items():
        np.testing.assert_array_equal(v, before[k])
    deeper = nn.Sequential(nn.Flatten(), nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 3))
    with pytest.raises(ValueError, match=r"missing keys \['3.weight', '3.bias'\]; "
                                         r"unexpected keys \['4.weight', '4.bias'\]"):
        minidl.load(deeper, path)


def test_metadata_must_be_json(tmp_path):
    with pytest.raises(ValueError, match="save: metadata must be JSON-serialisable"):
        minidl.save(mlp(), tmp_path / "m.npz", model=object())
    assert os.listdir(tmp_path) == []


def test_load_refuses_pickled_objects(tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, **{"1.weight": np.array([{"a": 1}], dtype=object)})
    with pytest.raises(ValueError, match="entry '1.weight'.*cannot be read without pickle"):
        minidl.load(mlp(), path)


def test_load_rejects_non_archives_and_non_float_entries(tmp_path):
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip file at all")
    with pytest.raises(ValueError, match="is not a readable .npz archive"):
        minidl.load(mlp(), junk)
    single = tmp_path / "single.npy"
    np.save(single, np.zeros(3))
    with pytest.raises(ValueError, match="holds a single array"):
        minidl.load(mlp(), single)
    ints = tmp_path / "ints.npz"
    np.savez(ints, **{"1.weight": np.zeros((8, 12), np.int64)})
    with pytest.raises(ValueError, match="entry '1.weight'.*dtype int64, expected floating point"):
        minidl.load(mlp(), ints)
    with pytest.raises(FileNotFoundError):
        minidl.load(mlp(), tmp_path / "missing.npz")


def test_from_torch_state_dict_passes_numpy_through_as_copies():
    w = np.ones((2, 3))
    out = from_torch_state_dict({"weight": w})
    assert out["weight"] is not w
    np.testing.assert_array_equal(out["weight"], w)


def test_torch_conversions(torch):
    lin = nn.Linear(3, 2)
    sd = to_torch_state_dict(lin)
    assert list(sd) == ["weight", "bias"]
    assert all(isinstance(v, torch.Tensor) and v.dtype == torch.float32 for v in sd.values())
    sd["weight"].zero_()                                   # a copy: the model is untouched
    assert lin.weight.data.any()
    assert to_torch_state_dict(lin.double())["bias"].dtype == torch.float64

    t = torch.nn.Linear(3, 2)
    back = from_torch_state_dict(t.state_dict())
    assert all(isinstance(v, np.ndarray) and v.dtype == np.float32 for v in back.values())
    with torch.no_grad():
        t.weight.add_(1.0)                                 # converted arrays are copies
    assert not np.array_equal(back["weight"], t.weight.detach().numpy())
    half = from_torch_state_dict({"w": torch.ones(2, dtype=torch.bfloat16)})
    assert half["w"].dtype == np.float32


def test_importing_minidl_and_saving_does_not_import_torch(tmp_path):
    code = (
        "import sys, minidl\n"
        "from minidl import nn\n"
        "m = nn.Sequential(nn.Linear(2, 2))\n"
        f"p = minidl.save(m, {str(tmp_path / 'x.npz')!r}, a=1)\n"
        "assert minidl.load(nn.Sequential(nn.Linear(2, 2)), p) == {'a': 1}\n"
        "bad = [name for name in ('torch', 'cupy', 'optuna') if name in sys.modules]\n"
        "assert not bad, bad\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=str(Path(__file__).resolve().parents[2]))
    assert result.returncode == 0, result.stderr
