"""``benchmarks.gpu --quick`` on the stand-in device: the script runs end to end and writes
its results (torch on the CPU here; the numbers are the stand-in's, not a GPU's)."""
from __future__ import annotations

import json

import fakecupy
from fakecupy.fixture import cuda_device  # noqa: F401 - the fixture


def _run(tmp_path, *extra):
    from benchmarks import gpu
    status = gpu.main(["--quick", "--out", str(tmp_path), *extra])
    data = json.loads((tmp_path / "gpu.json").read_text())
    assert status == 0, data["errors"]
    assert (tmp_path / "gpu.md").read_text().startswith("# minidl on a GPU")
    return data


def test_gpu_benchmark_quick_without_torch(cuda_device, tmp_path):
    data = _run(tmp_path, "--without-torch")
    assert data["device"]["cupy"] == fakecupy.__version__
    host = [r for r in data["results"] if r["section"] == "host"]
    assert host and {r["section"] for r in data["results"]} == {"host"}
    # the stand-in computes with NumPy: the device route gives the host route's numbers
    assert all(r["max_rel"] <= 1e-12 for r in host), host
    (step,) = data["training_step"]
    assert step["minidl"]["median"] > 0 and step["torch"] is None


def test_gpu_benchmark_quick_with_torch(cuda_device, torch, tmp_path):
    data = _run(tmp_path)
    sections = {r["section"] for r in data["results"]}
    assert sections == {"torch-layers", "torch-loss", "torch-optimizers", "torch-training",
                        "host"}
    assert all(r["within_tol"] for r in data["results"])
    assert data["device"]["tf32"] == {"torch.backends.cuda.matmul.allow_tf32": False,
                                      "torch.backends.cudnn.allow_tf32": False}
    (step,) = data["training_step"]
    assert step["torch"]["median"] > 0 and step["ratio"] > 0
