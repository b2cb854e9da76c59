"""SIGTERM stops ``tuning darts`` and ``tuning retrain`` as Ctrl-C (SIGINT) does: a real
process, a real signal.  ``darts`` saves what it learned (its three files, exit status
130); ``retrain`` stops with status 130 and leaves no file, whole or half."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

TINY_CNN = {"n_conv": 2, "filters_l0": 8, "filters_l1": 8, "dense_size": 32, "batch_size": 32}
REPO = Path(__file__).resolve().parents[2]


def start(tmp_path, *argv):
    """``python -m tuning ARGV`` in ``tmp_path``, standard error into a file."""
    err = open(tmp_path / "stderr.txt", "w")
    env = {**os.environ, "PYTHONPATH": str(REPO), "MINIDL_NUM_THREADS": "1"}
    env.pop("OPTUNA_STORAGE", None)
    proc = subprocess.Popen([sys.executable, "-m", "tuning", *argv], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=err, text=True)
    err.close()
    return proc


def wait_for(proc, tmp_path, needle: str, timeout: float = 240) -> str:
    """Standard error once it holds ``needle`` (the process still running)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = (tmp_path / "stderr.txt").read_text()
        if needle in text:
            return text
        if proc.poll() is not None:
            pytest.fail(f"the command ended ({proc.returncode}) before {needle!r}:\n{text}")
        time.sleep(0.05)
    proc.kill()
    pytest.fail(f"no {needle!r} within {timeout}s")


def stop(proc, tmp_path, signum) -> tuple[int, str, str]:
    proc.send_signal(signum)
    out, _ = proc.communicate(timeout=120)
    return proc.returncode, out, (tmp_path / "stderr.txt").read_text()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_darts_saves_its_three_files_on_a_signal(tmp_path, fashion_mnist, signum):
    proc = start(tmp_path, "darts", "--epochs", "500", "--train-size", "128", "--val-size",
                 "64", "--params", json.dumps(TINY_CNN), "--out", "search")
    wait_for(proc, tmp_path, "epoch 1/500 train_loss")
    status, out, err = stop(proc, tmp_path, signum)
    assert status == 130, err
    assert "interrupted: the search so far (" in err and "saved in search/" in err
    stored = json.loads((tmp_path / "search" / "darts.json").read_text())
    assert stored["interrupted"] is True and len(stored["epochs"]) >= 1
    assert json.loads((tmp_path / "search" / "params.json").read_text()) == stored["params"]
    assert (tmp_path / "search" / "alphas.png").read_bytes()[:4] == b"\x89PNG"
    assert f"parameters (cnn space): {json.dumps(stored['params'])}" in out
    assert sorted(os.listdir(tmp_path / "search")) == [
        ".tuning-outputs.json", "alphas.png", "darts.json", "params.json"]   # no temp file


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_retrain_stops_on_a_signal_and_writes_nothing(tmp_path, fashion_mnist, signum):
    proc = start(tmp_path, "retrain", "--params", '{"hidden_size": 64}', "--space",
                 "lab-mlp", "--epochs", "500", "--train-size", "2000", "--out", "final")
    wait_for(proc, tmp_path, "retrain epoch 1/500")
    status, out, err = stop(proc, tmp_path, signum)
    assert status == 130, err
    assert err.endswith("\ninterrupted: the retrain did not finish; nothing was written in "
                        "final/\n"), err
    assert "Traceback" not in err and out == ""
    assert not (tmp_path / "final").exists() or os.listdir(tmp_path / "final") == []
