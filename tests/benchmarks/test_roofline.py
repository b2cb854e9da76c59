"""``benchmarks.roofline``: the cost model, the bound, and a ``--quick`` run end to end.

Nothing here asserts a speed.  What is asserted: the operations' multiply-adds agree with
``minidl.summary`` (an independent count) and with the formulas; the bound is
``max(flops / peak, bytes / bandwidth, syncs x latency)`` with the right cache level and
the best thread count; the assembly check sees what it should; and a ``--quick`` run
writes its JSON, Markdown and one roofline PNG per model into a temporary folder (not
``benchmarks/results/roofline/``), measures every operation it bounds, and reports multiples
that are its measured times over its bounds.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import roofline
from benchmarks.roofline import limits as rf_limits
from benchmarks.roofline import ops as rf_ops

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "benchmarks" / "results" / "roofline"     # the script's default --out


# ----------------------------------------------------------------------- cost model
@pytest.mark.parametrize("name", roofline.ALL_MODELS)
def test_forward_mult_adds_agree_with_summary(name):
    ops = rf_ops.model_ops(name)
    fwd = sum(o["mult_adds"] for o in ops["ops"] if o["direction"] == "fwd")
    assert fwd == ops["summary_forward_mult_adds"] > 0
    # every layer's forward, its backward from the last layer down to the first with
    # parameters, the loss and the optimizer
    names = [o["name"] for o in ops["ops"]]
    assert names.count("loss (fwd+bwd)") == 1 and names[-1] == "optimizer (Adam)"
    assert len(set(names)) == len(names)


def test_linear_counts():
    ops = {o["name"]: o for o in rf_ops.model_ops("lab_mlp_256")["ops"]}
    n, i, o = 64, 784, 256
    first = ops["1 Linear bwd"]          # the first layer with parameters: no dL/dx
    assert first["flops"] == 2 * n * i * o + n * o
    assert first["bytes"] == 4 * (n * o + n * i + o * i + o)
    fwd = ops["1 Linear fwd"]
    assert fwd["flops"] == 2 * n * i * o + n * o
    assert fwd["bytes"] == 4 * (n * i + o * i + o + n * o)
    last = ops["4 Linear bwd"]           # 256 -> 10, with dL/dx
    assert last["mult_adds"] == 2 * n * 256 * 10
    assert last["bytes"] == 4 * (n * 10 + n * 256 + 10 * 256 + 10 * 256 + 10 + n * 256)
    drop = ops["3 Dropout fwd"]          # x read, y written, a 1-byte mask written
    assert drop["bytes"] == 4 * n * o * 2 + n * o


def test_adam_and_recurrent_counts():
    mo = rf_ops.model_ops("lstm_128")
    ops = {o["name"]: o for o in mo["ops"]}
    p = mo["params"]
    assert p == 4 * 128 * (28 + 128) + 2 * 4 * 128 + 128 * 10 + 10
    adam = ops["optimizer (Adam)"]
    assert adam["bytes"] == 28 * p and adam["footprint"] == 16 * p
    n, t, i, h = 64, 28, 28, 128
    g = 4 * h
    fwd = {q["name"]: q for q in ops["1 LSTM fwd"]["parts"]}
    # the LSTM's projection runs inside its loop: one operation, with no xg traffic
    assert list(fwd) == ["projection + loop fwd"]
    assert fwd["projection + loop fwd"]["mult_adds"] == n * t * i * g + t * n * h * g
    assert fwd["projection + loop fwd"]["syncs"] == t
    # bytes: x, W_ih, b_ih, W_hh, b_hh read; gates, hs, cs written (4 bytes each)
    want = 4 * (n * t * i + g * i + g + g * h + g + n * t * g + 2 * n * t * h)
    assert fwd["projection + loop fwd"]["bytes"] == want
    gru = {o["name"]: o for o in rf_ops.model_ops("gru_128")["ops"]}["1 GRU fwd"]["parts"]
    g3 = 3 * h                        # the GRU's xg is written and read once more
    assert gru[0]["bytes"] == 4 * (n * t * i + g3 * i + g3 + g3 * h + g3 + n * t * g3
                                   + 2 * n * t * h) + 2 * 4 * n * t * g3
    bwd = {q["name"]: q for q in ops["1 LSTM bwd"]["parts"]}
    assert "input grad" not in bwd       # the first layer with parameters
    assert sum(q["mult_adds"] for q in bwd.values()) == n * t * i * g + 2 * t * n * h * g
    assert ops["1 LSTM bwd"]["flops"] == sum(q["flops"] for q in bwd.values())


def test_unknown_layer_is_refused():
    from minidl import nn
    with pytest.raises(ValueError, match="no cost model for layer 0 of type Tanh"):
        rf_ops.layer_ops(nn.Tanh(), 0, (2, 3), (2, 3), need_dx=True)


# ----------------------------------------------------------------------- the bound
def _limits():
    mib = 1024 ** 2
    cap = {1: {"L1": 48 * 1024, "L2": 2 * mib, "L3": 64 * mib, "DRAM": math.inf}}
    cap[2] = {"L1": 96 * 1024, "L2": 4 * mib, "L3": 64 * mib, "DRAM": math.inf}
    return {"route": "avx512", "threads": {
        1: {"peak_gflops": 100.0, "bandwidth_gbs": {"L1": 200.0, "L2": 100.0, "L3": 50.0,
                                                     "DRAM": 10.0},
            "capacity_bytes": cap[1], "fork_join_s": 0.0},
        2: {"peak_gflops": 200.0, "bandwidth_gbs": {"L1": 400.0, "L2": 200.0, "L3": 60.0,
                                                     "DRAM": 12.0},
            "capacity_bytes": cap[2], "fork_join_s": 1e-6}}}


def test_bound_compute_and_level():
    lim = _limits()
    gemm = rf_ops._op("g", "gemm", 1e9, 0, {"a": 1000}, {"c": 1000})
    b = rf_ops.op_bound(gemm, lim, 1)
    assert b["limited_by"] == "compute" and b["seconds"] == pytest.approx(2e9 / 100e9)
    assert rf_ops.op_bound(gemm, lim, 2)["seconds"] == pytest.approx(2e9 / 200e9)
    # 3 MiB of traffic: DRAM? no -- fits the 64 MiB L3 on 1 thread
    stream = rf_ops._op("s", "elementwise", 0, 10, {"x": 3 * 1024 ** 2}, {"y": 1024})
    b = rf_ops.op_bound(stream, lim, 1)
    assert b["level"] == "L3" and b["limited_by"] == "L3 bandwidth"
    assert b["seconds"] == pytest.approx((3 * 1024 ** 2 + 1024) / 50e9)
    # on 2 threads the same working set fits the two L2s
    b = rf_ops.op_bound(stream, lim, 2)
    assert b["level"] == "L2" and b["threads"] == 2
    small = rf_ops._op("t", "elementwise", 0, 10, {"x": 1000}, {"y": 1000})
    assert rf_ops.op_bound(small, lim, 1)["level"] == "L1"
    view = rf_ops._op("v", "view", 0, 0, {}, {})
    assert rf_ops.op_bound(view, lim, 2)["seconds"] == 0


def test_bound_latency_and_parts():
    lim = _limits()
    # a loop of 100 steps: on 2 threads 100 x 1e-4 s of synchronisation would exceed its
    # one-thread compute time, so its 2-thread bound is its 1-thread one
    loop = rf_ops._op("loop", "loop", 1e6, 0, {"w": 1000}, {"h": 1000}, syncs=100)
    b1, b2 = rf_ops.op_bound(loop, lim, 1), rf_ops.op_bound(loop, lim, 2)
    assert b2["threads"] == 1 and b2["seconds"] == b1["seconds"] == pytest.approx(2e6 / 100e9)
    # a loop whose split pays, but whose synchronisation still dominates: latency-bound
    long_loop = rf_ops._op("loop", "loop", 1e9, 0, {"w": 1000}, {"h": 1000}, syncs=50)
    b = rf_ops.op_bound(long_loop, lim, 2)
    assert b["threads"] == 2 and b["limited_by"] == "compute"
    lat = dict(lim)
    lat["threads"] = {1: lim["threads"][1], 2: dict(lim["threads"][2], fork_join_s=1e-4,
                                                    peak_gflops=1e6)}
    b = rf_ops.op_bound(long_loop, lat, 2)
    assert b["limited_by"] == "latency" and b["seconds"] == pytest.approx(50 * 1e-4)
    parts = [loop, rf_ops._op("g", "gemm", 1e9, 0, {"a": 1000}, {"c": 1000})]
    both = rf_ops._op("layer", "recurrent", 0, 0, {}, {}, parts=parts)
    assert both["flops"] == 2e6 + 2e9
    b = rf_ops.op_bound(both, lim, 1)
    assert b["seconds"] == pytest.approx(sum(rf_ops.op_bound(p, lim, 1)["seconds"] for p in parts))


def test_fma_instruction_count():
    asm = """
    vfmadd213ps %zmm1, %zmm0, %zmm2
    vfmadd231ps %zmm3, %zmm4, %zmm5
    vfmadd213ps (%rax), %ymm0, %ymm1
    vaddps %zmm1, %zmm2, %zmm3
    """
    assert rf_limits.fma_instructions(asm) == {"zmm": 2, "ymm": 1, "xmm": 0, "memory_operand": 1}


def test_stream_levels_and_routes():
    caches = {"L1": 48 * 1024, "L2": 2 * 1024 ** 2, "L3": 480 * 1024 ** 2}
    lv = rf_limits.stream_levels(caches, quick=False, mem_available=20 * 1024 ** 3)
    assert lv["L1"]["bytes"] == 24 * 1024 and lv["L1"]["private"]
    assert lv["L2"]["bytes"] == 1024 ** 2
    assert caches["L2"] * 2 < lv["L3"]["bytes"] < caches["L3"]
    assert lv["DRAM"]["bytes"] >= 2 * caches["L3"]
    assert rf_limits.routes_available(["avx2", "fma", "avx512f"]) == ["avx512", "avx2"]
    assert rf_limits.routes_available(["avx2", "fma"]) == ["avx2"]
    assert rf_limits.routes_available(["sse4_2"]) == []


def test_stream_arrays_avoid_4k_aliasing():
    arrays = rf_limits._stream_arrays(3072)
    assert [a.ctypes.data % 4096 for a in arrays] == [0, 1088, 2176]
    assert [float(a[0]) for a in arrays] == [1.0, 2.0, 3.0]
    assert all(a.size == 3072 and a.dtype.name == "float32" for a in arrays)
    ends = [a.ctypes.data + a.nbytes for a in arrays]
    assert all(ends[j] <= arrays[j + 1].ctypes.data for j in range(2))


# ----------------------------------------------------------------------- --quick run
@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """One ``--quick`` run (with PyTorch when it is installed), shared by the tests below."""
    out = tmp_path_factory.mktemp("roofline")
    before = sorted((p.name, p.stat().st_mtime) for p in RESULTS.rglob("*"))  # may not exist
    env = dict(os.environ)
    proc = subprocess.run([sys.executable, "-m", "benchmarks.roofline", "--quick",
                           "--out", str(out)], cwd=str(REPO), env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"stdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"
    after = sorted((p.name, p.stat().st_mtime) for p in RESULTS.rglob("*"))
    assert before == after, f"--quick --out {out} must not touch {RESULTS}"
    return out, json.loads((out / "roofline.json").read_text())


def test_quick_limits(quick_run):
    _, data = quick_run
    flags = data["machine"]["cpu_vector_flags"]
    peaks = data["limits"]["peaks"]
    assert list(peaks) == rf_limits.routes_available(flags)
    for route, res in peaks.items():
        reg = roofline.ROUTES[route][2]
        chk = res["fma_instructions"]
        # the loop is what it claims: FMAs on the route's registers, none from memory
        assert chk[reg] >= res["accumulators"] and chk["memory_operand"] == 0, (route, chk)
        assert chk["zmm"] == 0 or route == "avx512"
        for cell in res["threads"].values():
            assert cell["gflops_best"] >= cell["gflops_median"] > 0
    for level in ("L1", "L2", "L3", "DRAM"):
        for cell in data["limits"]["bandwidth"][level]["threads"].values():
            assert cell["copy"]["gbs_best"] > 0 and cell["triad"]["gbs_best"] > 0
    assert "load average" in data["uptime"]["before"]
    assert "load average" in data["uptime"]["after"]


def test_quick_rows_are_measured_over_bound(quick_run):
    out, data = quick_run
    lim = {int(k): v for k, v in data["bound_limits"]["threads"].items()}
    for r in data["rows"]:
        fws = [fw for fw in ("minidl", "torch") if fw in r]
        assert "minidl" in fws
        top = [o for o in r["ops"] if "part_of" not in o]
        assert r["bound_s"] == pytest.approx(sum(o["bound_s"] for o in top))
        for fw in fws:
            assert r[fw]["x_bound"] == pytest.approx(r[fw]["step_s"] / r["bound_s"])
        for o in top:
            # every operation that has a bound was timed, in every framework
            for fw in fws:
                assert o[fw] is not None and o[fw] > 0, (r["model"], o["op"], fw)
                if o["bound_s"] > 0:
                    assert o[f"{fw}_x"] == pytest.approx(o[fw] / o["bound_s"])
            if o.get("bound_terms"):
                terms = o["bound_terms"]
                assert o["bound_s"] == pytest.approx(max(terms.values()))
                level = o["level"]
                k = lim[o["bound_threads"]]
                bw = k["bandwidth_gbs"][level] * 1e9
                assert terms[f"{level} bandwidth"] == pytest.approx(o["bytes"] / bw)
                assert terms["compute"] == pytest.approx(o["flops"] / (k["peak_gflops"] * 1e9))
        if r["threads"] == 1:
            # one thread: the process's CPU time, which cannot exceed the wall time
            # unless another thread of the worker did work (then it would be the wrong clock)
            assert r["clock"] == "cpu"
            for fw in fws:
                assert 0 < r[fw]["step_s"] <= 1.2 * r[fw]["wall_step_s"], (r["model"], fw)
        gap = r["minidl"]["largest_gap"]
        assert gap["op"] in {o["op"] for o in top} and 0 < gap["share"] <= 1.5
        # minidl's recurrent kernels are timed inside the layer
        if r["model"] in ("lstm_128", "gru_128"):
            loop = next(o for o in r["ops"] if o["op"].strip() == "projection + loop fwd")
            assert loop["minidl"] > 0
    md = (out / "roofline.md").read_text()
    assert "× bound" in md and "Training step as a multiple of its bound" in md
    for name in data["settings"]["models"]:
        assert (out / f"roofline_{name}.png").stat().st_size > 10_000


def test_replot_writes_the_same_report(quick_run, tmp_path):
    out, _ = quick_run
    first = (out / "roofline.md").read_text()
    (out / "roofline.md").unlink()
    proc = subprocess.run([sys.executable, "-m", "benchmarks.roofline", "--replot", "--out",
                           str(out)], cwd=str(REPO), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (out / "roofline.md").read_text() == first


def test_quick_with_torch(quick_run, torch):
    _, data = quick_run
    assert data["rows"] and all("torch" in r for r in data["rows"])
    for r in data["rows"]:
        assert r["ratio"] == pytest.approx(r["minidl"]["step_s"] / r["torch"]["step_s"])
