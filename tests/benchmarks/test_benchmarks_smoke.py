"""Smoke test of the benchmark scripts: each runs end to end in ``--quick`` mode.

Nothing here is timed and no speed is asserted (benchmarks measure, they do not pass or
fail on speed). What is asserted: each ``python -m benchmarks.<name> --quick`` exits 0 in a
fresh process, writes its JSON, Markdown and (for speed tables) PNG files into the given
folder, leaves the committed ``benchmarks/results/`` alone, and the JSON holds the
measurements the report is built from. Also the shared helpers on which every number in
the reports rests: interleaving order, medians, the difference measure of the parity table.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "benchmarks" / "results"


def _run_quick(module: str, out: Path, *extra: str) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("NUMBA_NUM_THREADS", "1")
    before = sorted((p.name, p.stat().st_mtime) for p in RESULTS.glob("*")) \
        if RESULTS.exists() else []
    proc = subprocess.run([sys.executable, "-m", f"benchmarks.{module}", "--quick",
                           "--out", str(out), *extra],
                          cwd=str(REPO), env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, (
        f"benchmarks.{module} --quick exited {proc.returncode}\n"
        f"stdout:\n{proc.stdout[-4000:]}\nstderr:\n{proc.stderr[-4000:]}")
    after = sorted((p.name, p.stat().st_mtime) for p in RESULTS.glob("*")) \
        if RESULTS.exists() else []
    assert before == after, f"--quick --out {out} must not touch {RESULTS}"
    return proc


def _finite_positive(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


# ----------------------------------------------------------------------- the scripts
def test_kernels_quick(tmp_path, torch):
    _run_quick("kernels", tmp_path)
    data = json.loads((tmp_path / "kernels.json").read_text())
    ops = {r["op"] for r in data["results"]}
    for op in ("im2col", "col2im", "conv2d forward", "conv2d backward",
               "max_pool2d forward", "max_pool2d backward", "avg_pool2d forward",
               "avg_pool2d backward", "linear forward", "linear backward", "adam update",
               "Conv2d layer fwd+bwd", "MaxPool2d layer fwd+bwd", "AvgPool2d layer fwd+bwd",
               "Linear layer fwd+bwd"):
        assert op in ops, f"kernels benchmark lacks {op!r}; has {sorted(ops)}"
    for r in data["results"]:
        for impl in ("numpy", "numba", "torch"):
            cell = r["impls"].get(impl)
            if cell is not None and cell.get("median") is not None:
                assert _finite_positive(cell["median"]), (r["op"], impl, cell)
        # every implementation computed the same result as the reference of its row
        checked = [impl for impl, cell in r["impls"].items()
                   if cell is not None and cell.get("max_rel_diff") is not None]
        assert len(checked) >= 2, (r["op"], checked)
        for impl in checked:
            assert r["impls"][impl]["max_rel_diff"] <= 1e-5, (r["op"], impl, r["impls"][impl])
    assert data["cupy"]["available"] in (True, False)
    assert (tmp_path / "kernels.md").read_text().count("|") > 20
    assert list(tmp_path.glob("kernels*.png")), "no chart written"


def test_threading_quick(tmp_path):
    _run_quick("threading", tmp_path)
    data = json.loads((tmp_path / "threading.json").read_text())["threading"]
    layers = {name: cfg["layer"] for name, cfg in data["configs"].items()}
    assert layers["workqueue"] == "workqueue" and layers["omp, passive"] == "omp", layers
    for cfg in data["configs"].values():
        assert all(_finite_positive(v) for v in cfg["launch_us"].values()), cfg
        assert all(_finite_positive(v) for v in cfg["step_s"].values()), cfg
    assert (tmp_path / "threading.png").exists()


def test_rnn_parts_quick(tmp_path):
    _run_quick("rnn_parts", tmp_path)
    data = json.loads((tmp_path / "rnn_parts.json").read_text())["results"]
    assert len(data) == 7
    for rows in data.values():
        assert len(rows) >= 2 and all(_finite_positive(r["median"]) for r in rows.values())
    text = (tmp_path / "rnn_parts.md").read_text()
    assert "projection inside the loop" in text and "weight in panels" in text
    assert "GRU: projection inside the loop" in text
    assert "floats a call, fused (now)" in text


def test_training_quick(tmp_path, torch):
    _run_quick("training", tmp_path)
    data = json.loads((tmp_path / "training.json").read_text())
    models = {r["model"] for r in data["training"]}
    assert models == {"lab_mlp_256", "lab_mlp_64", "mlp_3layer", "cnn_2conv", "cnn_small"}
    for r in data["training"] + data["inference"]:
        for fw in ("minidl", "torch"):
            assert _finite_positive(r[fw]["median"]), (r["model"], fw, r[fw])
            assert r[fw]["runs"] >= 2
        assert _finite_positive(r["ratio"])
    for m in data["memory"]:
        assert _finite_positive(m["process_peak_mb"])
    cold = data["coldstart"]
    assert _finite_positive(cold["minidl_warm"]["wall_s"])
    assert _finite_positive(cold["torch"]["wall_s"])
    md = (tmp_path / "training.md").read_text()
    assert "## Training step" in md and "## Cold start" in md
    assert {p.name for p in tmp_path.glob("*.png")} >= {"training_step.png",
                                                      "training_inference.png",
                                                      "training_ratio.png"}


def test_parity_quick(tmp_path, torch):
    _run_quick("parity", tmp_path)
    data = json.loads((tmp_path / "parity.json").read_text())
    assert data["errors"] == []
    sections = {r["section"] for r in data["results"]}
    assert sections >= {"layers", "loss", "optimizers", "training"}
    assert {r["dtype"] for r in data["results"]} == {"float64", "float32"}
    for r in data["results"]:
        assert r["max_abs"] >= 0 and math.isfinite(r["max_abs"]), r


# ----------------------------------------------------------------------- helpers
def test_interleaved_rotates_order_and_counts_rounds():
    from benchmarks.common import interleaved
    calls = []
    samples = interleaved({n: (lambda n=n: calls.append(n) or 1.0) for n in "abc"}, rounds=3)
    assert calls == list("abc") + list("bca") + list("cab")
    assert {k: len(v) for k, v in samples.items()} == {"a": 3, "b": 3, "c": 3}


def test_load_note_tells_own_load_from_other_processes():
    from benchmarks.machine import load_note
    quiet = {"cpus_usable": 2, "load_average": [0.3, 0, 0], "busy_processes": []}
    own = {"cpus_usable": 2, "load_average": [1.2, 0, 0], "busy_processes": []}
    other = {"cpus_usable": 2, "load_average": [1.2, 0, 0], "busy_processes": ["yes (99% cpu)"]}
    assert "quiet" in load_note(quiet, quiet)
    assert "own recent work" in load_note(quiet, own)
    assert "loaded by other processes" in load_note(own, other)


def test_summarize_takes_the_median_and_ignores_missing():
    from benchmarks.common import summarize
    s = summarize([5.0, 1.0, 100.0, None, 2.0, float("nan")])
    assert s == {"median": 3.5, "min": 1.0, "max": 100.0, "runs": 4}
    assert summarize([])["runs"] == 0


def test_parity_diff_measures_nan_positions_and_scale():
    from benchmarks.parity import diff
    b = np.array([1.0, -4.0, np.nan])
    assert diff(b.copy(), b) == (0.0, 0.0)
    a = np.array([1.0, -3.0, np.nan])
    assert diff(a, b) == (1.0, 0.25)
    assert diff(np.array([1.0, -4.0, 0.0]), b) == (math.inf, math.inf)
    with pytest.raises(ValueError, match="shapes differ"):
        diff(np.zeros(2), np.zeros(3))


def test_markdown_table_escapes_pipes():
    from benchmarks.common import markdown_table
    md = markdown_table(["a", "b"], [[1, "x|y"]])
    assert md.splitlines() == ["| a | b |", "|---|---|", "| 1 | x\\|y |"]


def test_rl_sampler_quick(tmp_path, fashion_mnist):
    proc = _run_quick("rl_sampler", tmp_path)
    report = json.loads((tmp_path / "rl_sampler.json").read_text())
    assert sorted(report["methods"]) == ["random", "rl", "tpe"]
    for method in report["methods"].values():
        assert method["n"] == 1 and 0.0 <= method["mean"] <= 1.0
    assert "rl: best val error" in proc.stdout
