"""Smoke test of ``benchmarks.hypergradient``: its ``--quick`` run ends well and reports.

Nothing is timed and no error rate is asserted (a benchmark measures, the quick run's
numbers mean nothing).  Asserted: the script exits 0 in a fresh process, writes its
JSON, Markdown and PNG into ``--out`` and leaves ``benchmarks/results/`` alone, every
optimizer ran from every initial rate, and the -HD runs really moved their rate.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "benchmarks" / "results"


def test_hypergradient_quick(tmp_path, fashion_mnist):
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("NUMBA_NUM_THREADS", "1")
    before = sorted((p.name, p.stat().st_mtime) for p in RESULTS.glob("*"))
    proc = subprocess.run([sys.executable, "-m", "benchmarks.hypergradient", "--quick",
                           "--out", str(tmp_path)],
                          cwd=str(REPO), env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"stdout:\n{proc.stdout[-4000:]}\nstderr:\n{proc.stderr[-4000:]}"
    assert sorted((p.name, p.stat().st_mtime) for p in RESULTS.glob("*")) == before

    data = json.loads((tmp_path / "hypergradient.json").read_text())
    runs = data["runs"]
    rates = data["settings"]["initial_rates"]
    assert rates == [1e-4, 1e-3, 1e-2, 1e-1]
    names = list(data["settings"]["optimizers"])
    assert {"SGD", "SGD-HD", "Adam", "Adam-HD"} <= set(names)
    assert sorted((r["optimizer"], r["initial_lr"]) for r in runs) == sorted(
        (name, x) for name in names for x in rates)
    for r in runs:
        assert 0.0 <= r["final_val_error"] <= 1.0 and r["steps"] > 0, r["optimizer"]
        assert r["lr_trace"] and all(math.isfinite(x) for x in r["lr_trace"])
        if r["optimizer_class"] in ("SGD", "Adam"):
            assert r["final_lr"] == r["initial_lr"]
        else:
            assert r["final_lr"] != r["initial_lr"], (r["optimizer"], r["initial_lr"])
    for name in names:
        spread = data["spread"][name]
        assert math.isclose(spread["range"], spread["max"] - spread["min"])
    assert set(data["hd_varies_less"]) == {n for n in names if n not in ("SGD", "Adam")}
    text = (tmp_path / "hypergradient.md").read_text()
    assert "| Adam-HD |" in text and "over the four initial rates" in text
    assert (tmp_path / "hypergradient.png").stat().st_size > 10_000
