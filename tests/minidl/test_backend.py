"""The backend's dispatch, tested with NumPy (the GPU path needs CuPy and a GPU)."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from minidl import backend, nn

HAS_CUPY = importlib.util.find_spec("cupy") is not None


def test_numpy_arrays_dispatch_to_numpy():
    a = np.arange(6.0).reshape(2, 3)
    assert backend.xp(a) is np
    assert backend.device_of(a) == "cpu"
    assert backend.to_numpy(a) is a
    assert backend.to_device(a, "cpu") is a
    moved = backend.asarray_like([1.0, 2.0], a)
    assert isinstance(moved, np.ndarray) and moved.tolist() == [1.0, 2.0]


def test_to_device_rejects_unknown_devices():
    with pytest.raises(ValueError, match="expected 'cpu' or 'cuda'"):
        backend.to_device(np.zeros(2), "tpu")


def test_model_to_cpu_keeps_numpy_parameters():
    model = nn.Sequential(nn.Linear(3, 2), nn.ReLU())
    model.to("cpu")
    assert all(isinstance(p.data, np.ndarray) for p in model.parameters())


@pytest.mark.skipif(HAS_CUPY and backend.cuda_available(), reason="a GPU is present here")
def test_cuda_without_cupy_or_gpu_is_a_clear_error():
    with pytest.raises(RuntimeError, match="cuda"):
        backend.require_cuda()
    with pytest.raises(RuntimeError, match="cuda"):
        nn.Linear(2, 2).to("cuda")


@pytest.mark.skipif(HAS_CUPY and backend.cuda_available(), reason="a GPU is present here")
def test_tuning_run_with_device_cuda_fails_up_front(tmp_path, capsys):
    from tuning.cli import main
    status = main(["run", "--space", "lab-mlp", "--n-trials", "1", "--device", "cuda",
                   "--storage", str(tmp_path / "s.log"), "--study-name", "gpu"])
    assert status == 1
    assert "--device cuda" in capsys.readouterr().err
    assert not (tmp_path / "s.log").exists() or "trial" not in (tmp_path / "s.log").read_text()
