"""How far each training step is from what this CPU can do: a roofline for every model.

    python -m benchmarks.roofline [--quick] [--threads 1 2] [--models ...] [--out DIR]
                                  [--isa host|avx2] [--no-torch]

A ratio to PyTorch says who is faster; it does not say how far either is from the
machine's limit, and it moves with the CPU (issue 29).  This script measures the limit
and puts both frameworks against it.

**1. The machine's limits** (measured here, never taken from a data sheet):

- *Peak float32 multiply-add throughput*, per vector route the CPU has (AVX-512: 16
  lanes in ``zmm`` registers; AVX2: 8 lanes in ``ymm``): a loop of independent fused
  multiply-adds on accumulators that stay in registers (24 with AVX-512's 32 registers,
  12 with AVX2's 16), emitted as LLVM vector code through a Numba intrinsic and checked
  in the generated assembly (``vfmadd...ps`` on the route's registers, no memory
  operand).  Each route runs in a process of its own; AVX2 with
  ``NUMBA_CPU_NAME=haswell`` (``common.ISA_ENV``, the mechanism of ``--isa avx2``).
  On 1 thread and on every usable core at once (Python threads running the ``nogil``
  kernel, started together); flops = 2 per multiply-add.
- *Memory bandwidth*: STREAM's copy (``c = a``) and triad (``a = b + s c``), on 1 thread
  and on all usable cores, with working sets sized to each level: half of L1d and half
  of L2 per thread (private caches: every thread its own arrays), 8 x L2 (in L3, shared)
  and at least twice L3 (memory).  Bytes as STREAM counts them: copy one read and one
  write per element, triad two reads and one write (write-allocate traffic not counted).
- *Fork-join latency*: an empty ``prange`` over n threads on minidl's threading setup
  (Numba's OpenMP layer, ``minidl.threads``) -- the least a step of a recurrent loop
  split over threads costs, since each step waits for the previous one.

Rates are per CPU second of the thread doing the work (``time.thread_time``: time other
processes held the core is not counted; the wall-clock rates are recorded beside), and
every limit is the best of its repeats; medians are recorded beside them.  On all cores
the rate is the sum of the threads' rates: on a loaded machine the threads may not all
run at once, so for shared levels (L3, memory) that sum can overstate what they deliver
together -- the bound is then lower, still a lower bound.

**2. A lower bound on each training step**, from its operations (``model_ops``): each
operation's time is at least ``max(flops / peak, bytes / bandwidth, syncs x latency)``,
with the bandwidth of the cache level its working set (every array it touches, once)
fits in, and the latency term only where the work is split over threads (``syncs`` = 1,
or T for a recurrent loop of T steps).  On n threads the bound is the best over
1..n threads (an implementation may use fewer); so a loop too short to pay for its
synchronisation is bound by its one-thread compute, and a row whose best is the
latency term is *latency-bound*.  The step's bound is the sum over its operations.

Counting.  **Flops**: 2 per multiply-add of every matrix product and convolution (the
products a layer must do: a first layer computes no input gradient, as in both
frameworks), 1 per bias addition; element-wise work has nominal counts (1 per element
for ReLU, dropout, pooling comparisons; 7 forward / 9 backward for BatchNorm; ~10 per
hidden unit and step for an LSTM or GRU cell; 13 per parameter for Adam) -- these
operations sit far below the machine balance, so their bound is set by bytes either way.
**Bytes**: each operand read once and each result written once, per operation, in
float32 (4 bytes); masks (dropout, max-pooling's choice) 1 byte per element; what a
recurrent loop keeps for its backward (gate activations, cell states) counted as
written.  An operation is a layer's forward or backward (a recurrent layer's is the sum
of its parts: input projection, the loop, the weight gradients), the loss (forward and
backward), and the optimizer step.  Reshapes (Flatten, ImageToSequence) are views:
bound 0.

**3. The measured steps.**  Each framework in its own worker process
(``benchmarks.training``'s runner: same models, data, Adam, loss).  *Step*: blocks of
steps alternated between the two frameworks, median over rounds (as
``benchmarks.training``).  *Per operation*: steps with a timer around each layer's
forward and backward, the loss and the optimizer step, median over N steps (N in the
report).  minidl: the layers are called one by one, as ``Sequential`` does.  PyTorch:
each layer's forward call is timed; its backward is the time between the autograd
hooks on consecutive layer outputs (a hook on a tensor fires just before the gradient
function that made it runs), so one ``loss.backward()`` runs as usual.  For minidl's
recurrent layers, the loop's own kernels (``minidl.kernels.rnn``) are timed too.
Clock: on one thread the worker's CPU time (all the work runs on the calling thread, so
it is the time the work held a core, whatever other processes did), on more the wall
clock; both are recorded.  Multiples are measured time / bound: 1.0 would be the
machine's limit.  ``--replot`` writes the report again from the JSON.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from . import common, machine, zoo
from .zoo import MODELS

OUT_DIR = common.RESULTS_DIR / "roofline"
FLOAT = 4                       # bytes of a float32
ALL_MODELS = ["lab_mlp_256", "lab_mlp_64", "mlp_3layer", "cnn_2conv", "cnn_small",
              "cnn_2conv_bn", "lstm_128", "gru_128"]
# route -> (float32 lanes, accumulators in registers, register name, environment)
ROUTES = {"avx512": (16, 24, "zmm", {}),
          "avx2": (8, 12, "ymm", {"NUMBA_CPU_NAME": "haswell"})}


# ============================================================== the machine's limits
def cache_sizes() -> dict:
    """Data-cache sizes in bytes from ``/sys`` (Linux): ``{"L1": per core, "L2": per
    core, "L3": shared}``; a level the system does not report is missing."""
    sizes = {}
    base = Path("/sys/devices/system/cpu/cpu0/cache")
    for index in sorted(base.glob("index*")):
        try:
            level = int((index / "level").read_text())
            kind = (index / "type").read_text().strip()
            text = (index / "size").read_text().strip()
        except (OSError, ValueError):
            continue
        if kind == "Instruction":
            continue
        scale = {"K": 1024, "M": 1024 ** 2, "G": 1024 ** 3}.get(text[-1:], 1)
        sizes[f"L{level}"] = int(text.rstrip("KMG")) * scale
    return sizes


def routes_available(flags) -> list[str]:
    """The float32 FMA vector routes of a CPU with these ``/proc/cpuinfo`` flags."""
    have = set(flags)
    out = []
    if {"avx512f", "fma"} <= have:
        out.append("avx512")
    if {"avx2", "fma"} <= have:
        out.append("avx2")
    return out


def _fma_kernel(lanes: int, accumulators: int):
    """A ``nogil`` Numba function ``kernel(out, iters, a, b)``: ``iters`` times,
    ``acc_j = acc_j * a + b`` on ``accumulators`` independent vectors of ``lanes``
    float32 (fused multiply-adds), then their sum into ``out[:lanes]``.  With
    ``0 < a < 1`` the accumulators converge to ``b / (1 - a)``: no overflow, and the
    result is known (``accumulators * b / (1 - a)`` per lane)."""
    from llvmlite import ir
    from numba import njit, types
    from numba.core import cgutils
    from numba.extending import intrinsic

    @intrinsic
    def _loop(typingctx, out, iters, a, b):
        sig = types.void(out, types.intp, types.float32, types.float32)

        def codegen(context, builder, signature, args):
            out_arr, n, a_val, b_val = args
            vty = ir.VectorType(ir.FloatType(), lanes)
            i32 = ir.IntType(32)
            name = f"llvm.fma.v{lanes}f32"
            fma = builder.module.globals.get(name) or ir.Function(
                builder.module, ir.FunctionType(vty, [vty, vty, vty]), name)

            def broadcast(scalar):
                first = builder.insert_element(ir.Constant(vty, ir.Undefined), scalar,
                                               ir.Constant(i32, 0))
                return builder.shuffle_vector(first, ir.Constant(vty, ir.Undefined),
                                              ir.Constant(ir.VectorType(i32, lanes),
                                                          [0] * lanes))
            va, vb = broadcast(a_val), broadcast(b_val)
            accs = [cgutils.alloca_once_value(builder, ir.Constant(vty, [1.0] * lanes))
                    for _ in range(accumulators)]
            with cgutils.for_range(builder, n):
                for acc in accs:
                    builder.store(builder.call(fma, [builder.load(acc), va, vb]), acc)
            total = builder.load(accs[0])
            for acc in accs[1:]:
                total = builder.fadd(total, builder.load(acc))
            data = context.make_array(signature.args[0])(context, builder, out_arr).data
            builder.store(total, builder.bitcast(data, vty.as_pointer()), align=4)
            return context.get_dummy_value()
        return sig, codegen

    @njit(nogil=True)
    def kernel(out, iters, a, b):
        _loop(out, iters, a, b)
    return kernel


def fma_instructions(asm: str) -> dict:
    """Counts of packed single FMA instructions in ``asm`` by register width, and how
    many of them take a memory operand (a register-resident loop has none)."""
    lines = [ln for ln in asm.splitlines() if re.search(r"\bvfmadd\w*ps\b", ln)]
    counts = {w: sum(1 for ln in lines if f"%{w}" in ln or re.search(rf"\b{w}\d", ln))
              for w in ("zmm", "ymm", "xmm")}
    counts["memory_operand"] = sum(1 for ln in lines if "(" in ln or "[" in ln)
    return counts


def _run_threads(fn, n: int) -> tuple[float, list[float]]:
    """``fn(i)`` on ``n`` Python threads released together (``fn`` must release the GIL:
    a ``nogil`` Numba function); returns the wall seconds until all are done and each
    thread's own CPU seconds (``time.thread_time``)."""
    cpu = [0.0] * n
    errors = []
    start = threading.Barrier(n + 1) if n > 1 else None

    def body(i):
        if start is not None:
            start.wait()
        t0 = time.thread_time()
        try:
            fn(i)
        except Exception as exc:        # re-raised below, in the caller's thread
            errors.append(exc)
        cpu[i] = time.thread_time() - t0
    if n == 1:
        t0 = time.perf_counter()
        body(0)
        wall = time.perf_counter() - t0
    else:
        workers = [threading.Thread(target=body, args=(i,)) for i in range(n)]
        for w in workers:
            w.start()
        start.wait()
        t0 = time.perf_counter()
        for w in workers:
            w.join()
        wall = time.perf_counter() - t0
    if errors:
        raise errors[0]
    return wall, cpu


def _rates(work_per_thread: float, wall: float, cpu: list[float]) -> tuple[float, float]:
    """``(per wall second, per CPU second)`` of ``len(cpu)`` threads that each did
    ``work_per_thread``: the total over the wall time, and the sum of each thread's work
    over its own CPU time (what the cores deliver while they run it: time taken by other
    processes is not counted)."""
    return (len(cpu) * work_per_thread / wall,
            sum(work_per_thread / max(c, 1e-9) for c in cpu))


def _cell(samples_cpu: list[float], samples_wall: list[float], unit: str) -> dict:
    return {f"{unit}_best": max(samples_cpu), f"{unit}_median": statistics.median(samples_cpu),
            f"{unit}_wall_best": max(samples_wall),
            f"{unit}_wall_median": statistics.median(samples_wall),
            "samples_cpu": samples_cpu, "samples_wall": samples_wall}


def measure_peak(route: str, thread_counts, repeats: int, sample_s: float) -> dict:
    """Peak float32 FMA throughput of ``route`` in this process (GFLOP/s per thread
    count: best and median of ``repeats`` samples of about ``sample_s`` seconds), with
    the assembly check."""
    lanes, accs, reg, _ = ROUTES[route]
    kernel = _fma_kernel(lanes, accs)
    a, b = np.float32(0.999), np.float32(0.001)
    outs = [np.zeros(lanes, np.float32) for _ in range(max(thread_counts))]
    kernel(outs[0], 10, a, b)
    asm = kernel.inspect_asm(kernel.signatures[0])
    check = fma_instructions(asm)
    expect = accs * float(b) / (1 - float(a))
    # iterations for one sample: calibrate on one thread
    iters = 10_000
    while True:
        dt = min(_run_threads(lambda i: kernel(outs[0], iters, a, b), 1)[1])
        if dt >= sample_s / 4 or iters > 1 << 34:
            break
        iters *= 4
    iters = max(1000, int(iters * sample_s / max(dt, 1e-9)))
    flops_per_thread = 2.0 * iters * accs * lanes
    result = {"route": route, "lanes": lanes, "accumulators": accs, "register": reg,
              "fma_instructions": check, "iterations": iters,
              "numba_cpu_name": os.environ.get("NUMBA_CPU_NAME", "host"), "threads": {}}
    for n in thread_counts:
        samples_cpu, samples_wall = [], []
        for _ in range(repeats):
            wall, cpu = _run_threads(lambda i: kernel(outs[i], iters, a, b), n)
            per_wall, per_cpu = _rates(flops_per_thread / 1e9, wall, cpu)
            samples_wall.append(per_wall)
            samples_cpu.append(per_cpu)
        for out in outs[:n]:
            if not np.allclose(out, expect, rtol=1e-3):
                raise RuntimeError(f"roofline: FMA loop of route {route} computed "
                                   f"{out[:4]}, expected {expect:.4f} per lane")
        result["threads"][str(n)] = _cell(samples_cpu, samples_wall, "gflops")
    return result


def _stream_kernels():
    from numba import njit

    @njit(nogil=True, cache=True)
    def copy(a, c, reps):
        # alternate the direction so that no pass repeats the previous one's stores
        n = a.size
        for r in range(reps):
            if r % 2 == 0:
                for i in range(n):
                    c[i] = a[i]
            else:
                for i in range(n):
                    a[i] = c[i]
        return a[0] + c[n - 1]

    @njit(nogil=True, cache=True)
    def triad(a, b, c, s, reps):
        n = a.size
        for r in range(reps):
            sr = s + np.float32(r) * np.float32(1e-7)
            for i in range(n):
                a[i] = b[i] + sr * c[i]
        return a[0] + a[n - 1]
    return copy, triad


STREAM_BYTES = {"copy": 2 * FLOAT, "triad": 3 * FLOAT}   # counted per element


def _stream_arrays(count: int, offset: int = 1088) -> list[np.ndarray]:
    """Three float32 arrays of ``count`` elements filled with 1, 2, 3, carved from one
    page-aligned buffer so that their starts differ by ``offset`` bytes modulo 4 KiB:
    arrays whose addresses agree in their low 12 bits make loads wait on unrelated
    stores ("4K aliasing"), which cut an L1 copy to a third on the development machine."""
    stride = -(-count * FLOAT // 4096) * 4096 + offset
    raw = np.empty(3 * stride + 4096, np.uint8)
    start = (-raw.ctypes.data) % 4096
    out = []
    for j in range(3):
        a = raw[start + j * stride:start + j * stride + count * FLOAT].view(np.float32)
        a[:] = 1.0 + j
        out.append(a)
    return out


def stream_levels(caches: dict, quick: bool, mem_available: int | None) -> dict:
    """Working set in bytes per level: per thread for the private L1/L2, in total for
    L3 and memory (split over the threads)."""
    l1 = caches.get("L1", 32 * 1024)
    l2 = caches.get("L2", 1024 ** 2)
    l3 = caches.get("L3", 8 * 1024 ** 2)
    levels = {"L1": {"bytes": l1 // 2, "private": True},
              "L2": {"bytes": l2 // 2, "private": True},
              "L3": {"bytes": min(8 * l2, l3 // 2), "private": False}}
    dram = max(2 * l3, 256 * 1024 ** 2)
    if mem_available:
        dram = min(dram, mem_available // 4)
    if quick:
        levels["L3"]["bytes"] = min(levels["L3"]["bytes"], 4 * 1024 ** 2)
        dram = 32 * 1024 ** 2
    levels["DRAM"] = {"bytes": dram, "private": False}
    return levels


def _mem_available() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def measure_bandwidth(levels: dict, thread_counts, repeats: int, sample_s: float,
                      log=print) -> dict:
    """STREAM copy and triad per level and thread count: GB/s (1e9 bytes), best and
    median of ``repeats`` samples."""
    copy, triad = _stream_kernels()
    result = {}
    for level, spec in levels.items():
        result[level] = {"working_set_bytes": spec["bytes"], "private": spec["private"],
                         "threads": {}}
        for n in thread_counts:
            per_thread = spec["bytes"] if spec["private"] else spec["bytes"] // n
            cell = {}
            for name, per_elem in STREAM_BYTES.items():
                count = max(1024, per_thread // per_elem)
                arrays = [_stream_arrays(count) for _ in range(n)]
                s = np.float32(0.5)

                def run(i, reps, name=name):
                    a, b, c = arrays[i]
                    if name == "copy":
                        copy(a, c, reps)
                    else:
                        triad(a, b, c, s, reps)
                run(0, 1)
                reps = 1
                while True:
                    dt = min(_run_threads(lambda i: run(i, reps), 1)[1])
                    if dt >= sample_s / 4 or reps > 1 << 30:
                        break
                    reps *= 4
                reps = max(1, int(reps * sample_s / max(dt, 1e-9)))
                samples_cpu, samples_wall = [], []
                for _ in range(repeats):
                    wall, cpu = _run_threads(lambda i: run(i, reps), n)
                    per_wall, per_cpu = _rates(reps * count * per_elem / 1e9, wall, cpu)
                    samples_wall.append(per_wall)
                    samples_cpu.append(per_cpu)
                if name == "triad":      # every thread's a = b + s' c, with b = 2, c = 3
                    for a, b, c in arrays:
                        s_last = np.float32(s + np.float32(reps - 1) * np.float32(1e-7))
                        if not np.allclose(a, b + s_last * c, rtol=1e-5):
                            raise RuntimeError(f"roofline: STREAM triad ({level}) "
                                               f"computed {a[:3]}")
                cell[name] = {**_cell(samples_cpu, samples_wall, "gbs"),
                              "elements_per_thread": count, "reps": reps}
                del arrays
            result[level]["threads"][str(n)] = cell
            log(f"bandwidth {level:4s} t={n}: copy {cell['copy']['gbs_best']:.1f}, "
                f"triad {cell['triad']['gbs_best']:.1f} GB/s")
    return result


def measure_fork_join(thread_counts, calls: int) -> dict:
    """Seconds per launch of an empty ``prange`` over n threads on minidl's threading
    setup, each launch timed alone, back to back (the workers still spin: the cheapest
    case); the floor used by the bounds is the fastest launch (other processes only
    ever make one slower)."""
    from minidl import threads as mthreads
    import numba
    from numba import njit, prange
    mthreads.ensure_numba_pool()

    @njit(parallel=True)
    def fork_join(out):
        for i in prange(out.size):
            out[i] += 1.0
    result = {"threading_layer": None, "calls": calls, "threads": {}}
    for n in thread_counts:
        if n == 1 or n > numba.config.NUMBA_NUM_THREADS:
            continue
        numba.set_num_threads(n)
        out = np.zeros(n)
        fork_join(out)
        samples = np.empty(calls)
        for j in range(calls):
            t0 = time.perf_counter()
            fork_join(out)
            samples[j] = time.perf_counter() - t0
        result["threads"][str(n)] = {
            "seconds_best": float(samples.min()),
            "seconds_p10": float(np.percentile(samples, 10)),
            "seconds_median": float(np.median(samples))}
        result["threading_layer"] = numba.threading_layer()
    return result


def peak_worker(route: str, thread_counts, repeats: int, sample_s: float) -> dict:
    """Body of ``--peak-worker``: ``measure_peak`` in this (fresh) process."""
    return measure_peak(route, thread_counts, repeats, sample_s)


def measure_peaks(routes, thread_counts, repeats: int, sample_s: float, log=print) -> dict:
    """``measure_peak`` for each route, each in a fresh process compiled for it."""
    out = {}
    for route in routes:
        env = {k: v for k, v in os.environ.items()
               if k not in ("NUMBA_CPU_NAME", "NUMBA_CPU_FEATURES")}
        env.update(ROUTES[route][3])
        cmd = [sys.executable, "-m", "benchmarks.roofline", "--peak-worker", route,
               "--peak-threads", *map(str, thread_counts), "--peak-repeats", str(repeats),
               "--peak-seconds", str(sample_s)]
        proc = subprocess.run(cmd, cwd=str(common.REPO_ROOT), env=env, capture_output=True,
                              text=True, timeout=600)
        if proc.returncode != 0:
            raise RuntimeError(f"roofline: peak worker for {route} failed:\n"
                               f"{proc.stderr[-3000:]}")
        out[route] = json.loads(proc.stdout.strip().splitlines()[-1])
        log(f"peak {route}: " + ", ".join(
            f"t={n} {c['gflops_best']:.1f} GFLOP/s" for n, c in out[route]["threads"].items())
            + f"  (asm: {out[route]['fma_instructions']})")
    return out


def limits_for(peaks: dict, bandwidth: dict, fork_join: dict, caches: dict,
               route: str) -> dict:
    """The figures the bounds use, per thread count: peak GFLOP/s of ``route``, the
    best of copy and triad per level, the fork-join latency, and each level's capacity
    (private levels: per core x threads)."""
    out = {"route": route, "threads": {}}
    for n_text, cell in peaks[route]["threads"].items():
        n = int(n_text)
        bw = {level: max(v["threads"][n_text][k]["gbs_best"] for k in STREAM_BYTES)
              for level, v in bandwidth.items() if n_text in v["threads"]}
        capacity = {}
        for level in bw:
            if level == "DRAM":
                capacity[level] = math.inf
            elif bandwidth[level]["private"]:
                capacity[level] = caches.get(level, 0) * n
            else:
                capacity[level] = caches.get(level, 0)
        lat = fork_join["threads"].get(n_text, {}).get("seconds_best", 0.0) if n > 1 else 0.0
        out["threads"][n] = {"peak_gflops": cell["gflops_best"], "bandwidth_gbs": bw,
                             "capacity_bytes": capacity, "fork_join_s": lat}
    return out


# ============================================================== operations of a step
def _op(name: str, kind: str, macs: float, other: float, reads: dict, writes: dict,
        syncs: int = 1, parts: list | None = None):
    """One operation: ``macs`` multiply-adds (2 flops each) and ``other`` flops (bias
    additions, nominal element-wise work); ``reads``/``writes`` map array names to bytes
    (an array both read and written, as Adam's moments, counts in both for the traffic
    and once for the working set).  With ``parts``, the sums of the parts (working set:
    the largest part's)."""
    if parts:
        macs = sum(p["mult_adds"] for p in parts)
        flops = sum(p["flops"] for p in parts)
        traffic = sum(p["bytes"] for p in parts)
        footprint = max(p["footprint"] for p in parts)
    else:
        flops = 2 * macs + other
        traffic = sum(reads.values()) + sum(writes.values())
        arrays = dict(reads)
        for k, v in writes.items():
            arrays[k] = max(arrays.get(k, 0), v)
        footprint = sum(arrays.values())
    return {"name": name, "kind": kind, "mult_adds": float(macs), "flops": float(flops),
            "bytes": float(traffic), "footprint": float(footprint), "syncs": syncs,
            "parts": parts or [], "layer": None, "direction": None}


# nominal flops per hidden unit and step of an LSTM/GRU cell's element-wise update
# (gate nonlinearities, products, sums); tiny beside the step's product (2 G per unit)
CELL_FLOPS = 10


def _recurrent_parts(cell: str, N: int, T: int, I: int, H: int, need_dx: bool):
    """Forward and backward parts of one recurrent layer (one direction, one layer):
    batch N, T steps, input size I, hidden size H, G = gates x H."""
    G = {"LSTM": 4, "GRU": 3}[cell] * H
    f = FLOAT
    saved = {"gates": N * T * G * f, "hs": N * T * H * f,
             ("cs" if cell == "LSTM" else "hn"): N * T * H * f}
    fwd = [
        _op("input projection", "gemm", N * T * I * G, N * T * G,
            {"x": N * T * I * f, "W_ih": G * I * f, "b_ih": G * f}, {"xg": N * T * G * f}),
        _op("recurrent loop fwd", "loop", T * N * H * G, T * (N * G + CELL_FLOPS * N * H),
            {"xg": N * T * G * f, "W_hh": G * H * f, "b_hh": G * f}, dict(saved), syncs=T),
    ]
    bwd = [
        _op("recurrent loop bwd", "loop", T * N * G * H, T * 2 * CELL_FLOPS * N * H,
            {"dh_n": N * H * f, "W_hh": G * H * f, **saved}, {"dgates": N * T * G * f},
            syncs=T),
        _op("hidden weight grads", "gemm", T * N * G * H, T * N * G,
            {"dgates": N * T * G * f, "hs": N * T * H * f},
            {"dW_hh": G * H * f, "db_hh": G * f}),
        _op("input weight grads", "gemm", N * T * G * I, N * T * G,
            {"dgates": N * T * G * f, "x": N * T * I * f},
            {"dW_ih": G * I * f, "db_ih": G * f}),
    ]
    if need_dx:
        bwd.append(_op("input grad", "gemm", N * T * G * I, 0,
                       {"dgates": N * T * G * f, "W_ih": G * I * f}, {"dx": N * T * I * f}))
    return fwd, bwd


def _weighted_ops(label, kind, macs, bias_adds, x_bytes, w_bytes, b_bytes, y_bytes,
                  need_dx):
    """Forward and backward of a layer that is a product with a weight (Linear, Conv2d):
    forward ``y = x W (+ b)``; backward ``dW`` (``macs``), ``db``, and ``dx`` (``macs``
    more) unless the layer is the first with parameters."""
    fwd = _op(f"{label} fwd", kind, macs, bias_adds,
              {"x": x_bytes, "W": w_bytes, "b": b_bytes}, {"y": y_bytes})
    reads, writes = {"dy": y_bytes, "x": x_bytes}, {"dW": w_bytes, "db": b_bytes}
    if need_dx:
        reads["W"], writes["dx"] = w_bytes, x_bytes
    bwd = _op(f"{label} bwd", kind, macs * (2 if need_dx else 1), bias_adds, reads, writes)
    return fwd, bwd


def layer_ops(layer, index: int, in_shape, out_shape, need_dx: bool) -> list[dict]:
    """``[forward, backward]`` operations of one minidl layer with these input and
    output shapes (``need_dx``: whether its backward computes the input gradient)."""
    kind = type(layer).__name__
    f = FLOAT
    e_in, e_out = math.prod(in_shape), math.prod(out_shape)
    label = f"{index} {kind}"
    if kind in ("LastHidden", "LSTM", "GRU"):
        rnn = layer.rnn if kind == "LastHidden" else layer
        cell = type(rnn).__name__
        if cell not in ("LSTM", "GRU") or rnn.num_layers != 1 or rnn.bidirectional:
            raise ValueError(f"roofline: expected a one-layer, one-direction LSTM or GRU, "
                             f"got {cell} with num_layers={rnn.num_layers}, "
                             f"bidirectional={rnn.bidirectional}")
        N, T, I = in_shape if rnn.batch_first else (in_shape[1], in_shape[0], in_shape[2])
        label = f"{index} {cell}"
        fwd_parts, bwd_parts = _recurrent_parts(cell, N, T, I, rnn.hidden_size, need_dx)
        fwd = _op(f"{label} fwd", "recurrent", 0, 0, {}, {}, parts=fwd_parts)
        bwd = _op(f"{label} bwd", "recurrent", 0, 0, {}, {}, parts=bwd_parts)
    elif kind == "Linear":
        N, I, O = e_in // layer.in_features, layer.in_features, layer.out_features
        bias = layer.bias is not None
        fwd, bwd = _weighted_ops(label, "gemm", N * I * O, N * O if bias else 0,
                                 N * I * f, O * I * f, O * f if bias else 0, N * O * f,
                                 need_dx)
    elif kind == "Conv2d":
        F, Ho, Wo = out_shape[1], out_shape[2], out_shape[3]
        w = int(layer.weight.size)
        bias = layer.bias is not None
        fwd, bwd = _weighted_ops(label, "conv", in_shape[0] * Ho * Wo * w,
                                 e_out if bias else 0, e_in * f, w * f,
                                 F * f if bias else 0, e_out * f, need_dx)
    elif kind in ("MaxPool2d", "AvgPool2d"):
        window = math.prod(layer.kernel_size) if isinstance(layer.kernel_size, tuple) \
            else layer.kernel_size ** 2
        choice = {"choice": e_out} if kind == "MaxPool2d" else {}    # 1 byte per output
        fwd = _op(f"{label} fwd", "pool", 0, e_out * window, {"x": e_in * f},
                  {"y": e_out * f, **choice})
        bwd = _op(f"{label} bwd", "pool", 0, e_in, {"dy": e_out * f, **choice},
                  {"dx": e_in * f})
    elif kind == "BatchNorm2d":
        C = in_shape[1]
        # forward: statistics, then y = xhat * gamma + beta (one multiply-add per element,
        # as minidl.summary counts it); backward: dgamma, dbeta and dx
        fwd = _op(f"{label} fwd", "norm", e_in, 5 * e_in,
                  {"x": e_in * f, "gamma_beta": 2 * C * f, "running": 2 * C * f},
                  {"y": e_in * f, "running": 2 * C * f, "saved_stats": 2 * C * f})
        bwd = _op(f"{label} bwd", "norm", 0, 9 * e_in,
                  {"dy": e_in * f, "x": e_in * f, "gamma_stats": 3 * C * f},
                  {"dx": e_in * f, "dgamma_dbeta": 2 * C * f})
    elif kind == "ReLU":
        fwd = _op(f"{label} fwd", "elementwise", 0, e_in, {"x": e_in * f}, {"y": e_out * f})
        bwd = _op(f"{label} bwd", "elementwise", 0, e_in, {"dy": e_out * f, "y": e_out * f},
                  {"dx": e_in * f})
    elif kind == "Dropout":                                   # mask: 1 byte per element
        fwd = _op(f"{label} fwd", "elementwise", 0, e_in, {"x": e_in * f},
                  {"y": e_out * f, "mask": e_in})
        bwd = _op(f"{label} bwd", "elementwise", 0, e_in, {"dy": e_out * f, "mask": e_in},
                  {"dx": e_in * f})
    elif kind in ("Flatten", "ImageToSequence"):
        fwd = _op(f"{label} fwd", "view", 0, 0, {}, {})
        bwd = _op(f"{label} bwd", "view", 0, 0, {}, {})
    else:
        raise ValueError(f"roofline: no cost model for layer {index} of type {kind}; "
                         f"expected one of Linear, Conv2d, MaxPool2d, AvgPool2d, "
                         f"BatchNorm2d, ReLU, Dropout, Flatten, ImageToSequence, "
                         f"LastHidden(LSTM/GRU)")
    fwd.update(layer=index, direction="fwd")
    bwd.update(layer=index, direction="bwd")
    return [fwd, bwd]


def _has_parameters(layer) -> bool:
    return next(iter(layer.parameters()), None) is not None


def model_ops(name: str, batch: int | None = None) -> dict:
    """The operations of one training step of model ``name`` (``zoo.build_model``)
    at its training batch: every layer's forward, the backward of the layers from the
    last down to the first with parameters (that one without its input gradient), the
    loss and Adam's step.  Shapes come from ``minidl.summary``."""
    import minidl
    from minidl import nn
    batch = batch or MODELS[name][1]
    model = zoo.build_model(nn, name)
    s = minidl.summary(model, (batch, 1, 28, 28), dtype=np.float32)
    rows = {r.name: r for r in s.rows}
    layers = list(model)
    first = next(i for i, layer in enumerate(layers) if _has_parameters(layer))
    shape = (batch, 1, 28, 28)
    fwd_ops, bwd_ops = [], []
    for i, layer in enumerate(layers):
        out_shape = rows[str(i)].output_shape
        ops = layer_ops(layer, i, shape, out_shape, need_dx=i > first)
        fwd_ops.append(ops[0])
        if i >= first:
            bwd_ops.append(ops[1])
        shape = out_shape
    n_classes = shape[-1]
    f = FLOAT
    loss = _op("loss (fwd+bwd)", "loss", 0, 5 * batch * n_classes,
               {"logits": batch * n_classes * f, "labels": batch * 8},
               {"dlogits": batch * n_classes * f})
    params = s.total_params
    adam = _op("optimizer (Adam)", "optimizer", 0, 13 * params,
               {"p": params * f, "g": params * f, "m": params * f, "v": params * f},
               {"p": params * f, "m": params * f, "v": params * f})
    ops = fwd_ops + [loss] + bwd_ops[::-1] + [adam]
    return {"model": name, "batch": batch, "params": params,
            "summary_forward_mult_adds": s.total_mult_adds, "ops": ops,
            "first_layer_with_params": first}


def op_bound(op: dict, limits: dict, threads: int) -> dict:
    """``max(flops / peak, bytes / bandwidth, syncs x fork-join)``, best over 1..threads
    threads; a composite operation is the sum of its parts' bounds."""
    if op["parts"]:
        parts = [op_bound(p, limits, threads) for p in op["parts"]]
        total = sum(p["seconds"] for p in parts)
        top = max(parts, key=lambda p: p["seconds"])
        return {"seconds": total, "limited_by": top["limited_by"], "parts": parts,
                "threads": top["threads"], "level": top["level"]}
    if op["flops"] == 0 and op["bytes"] == 0:
        return {"seconds": 0.0, "limited_by": "nothing (a view)", "threads": 1,
                "level": None, "terms": {}}
    best = None
    for k in range(1, threads + 1):
        lim = limits["threads"].get(k)
        if lim is None:
            continue
        level = next(lv for lv in ("L1", "L2", "L3", "DRAM")
                     if lv in lim["bandwidth_gbs"]
                     and op["footprint"] <= lim["capacity_bytes"][lv])
        terms = {"compute": op["flops"] / (lim["peak_gflops"] * 1e9),
                 f"{level} bandwidth": op["bytes"] / (lim["bandwidth_gbs"][level] * 1e9),
                 "latency": op["syncs"] * lim["fork_join_s"] if k > 1 else 0.0}
        limited_by = max(terms, key=terms.get)
        cand = {"seconds": terms[limited_by], "limited_by": limited_by, "threads": k,
                "level": level, "terms": terms}
        if best is None or cand["seconds"] < best["seconds"]:
            best = cand
    return best


# ============================================================== measured steps
class _Timer:
    """Intervals on the wall clock and, when ``cpu``, on the process's CPU clock
    (``time.process_time``: every thread of the process), recorded by name."""

    def __init__(self, cpu: bool):
        self.cpu = cpu
        self.wall: dict[str, list] = {}
        self.cpu_s: dict[str, list] = {}

    def now(self) -> tuple[float, float]:
        return time.perf_counter(), (time.process_time() if self.cpu else 0.0)

    def add(self, name: str, t0, t1=None) -> None:
        t1 = self.now() if t1 is None else t1
        self.wall.setdefault(name, []).append(t1[0] - t0[0])
        if self.cpu:
            self.cpu_s.setdefault(name, []).append(t1[1] - t0[1])

    def result(self) -> dict:
        return {"wall": self.wall, "cpu": self.cpu_s}


class _Runner:
    """``benchmarks.training``'s runner (model, Adam, loss, batches) plus a step timed
    operation by operation (``op_times``), on the wall clock and, on one thread, on the
    process's CPU clock."""

    def __init__(self, framework: str):
        from .training import _Runner as TrainingRunner
        self.inner = TrainingRunner(framework)
        self.framework = framework
        self.threads = 1

    def setup(self, model_name: str, threads: int, n_train: int, warmup: int) -> dict:
        batch = MODELS[model_name][1]
        info = self.inner.setup(model_name, threads, n_train, infer_n=batch,
                                infer_batch=batch)
        self.threads = threads
        self.inner.train(warmup)
        layers = list(self.inner.model)
        self.first = next(i for i, layer in enumerate(layers)
                          if next(iter(layer.parameters()), None) is not None)
        return info

    def train(self, steps: int) -> tuple[float, float]:
        """``(wall, CPU)`` seconds per step over ``steps`` training steps (CPU: the
        whole process's, every thread included)."""
        c0 = time.process_time()
        wall = self.inner.train(steps)
        return wall, (time.process_time() - c0) / steps

    def op_times(self, steps: int) -> dict:
        """Seconds of each operation in each of ``steps`` training steps:
        ``{"wall": {name: [seconds per step]}, "cpu": {...}}`` (``cpu`` empty on more
        than one thread); names as ``model_ops``'s, plus minidl's recurrent kernels and
        the instrumented step's total."""
        timer = _Timer(cpu=self.threads == 1)
        if self.framework == "minidl":
            self._minidl_op_times(steps, timer)
        else:
            self._torch_op_times(steps, timer)
        return timer.result()

    def _minidl_op_times(self, steps: int, timer: _Timer) -> None:
        r = self.inner
        model, opt, crit = r.model, r.opt, r.crit
        model.train()
        model.needs_input_grad = False
        layers = list(model)
        names = [f"{i} {self._label(layer)}" for i, layer in enumerate(layers)]
        sub: dict[str, list] = {}
        restore = self._time_recurrent_kernels(sub, timer)
        try:
            for _ in range(steps):
                sub.clear()
                xb, yb = r._next_batch()
                t_step = timer.now()
                opt.zero_grad()
                x = xb
                for i, layer in enumerate(layers):
                    t0 = timer.now()
                    x = layer(x)
                    timer.add(f"{names[i]} fwd", t0)
                t0 = timer.now()
                loss = crit(x, yb)
                d = crit.backward()
                timer.add("loss (fwd+bwd)", t0)
                for i in range(len(layers) - 1, self.first - 1, -1):
                    t0 = timer.now()
                    d = layers[i].backward(d)
                    timer.add(f"{names[i]} bwd", t0)
                t0 = timer.now()
                opt.step()
                timer.add("optimizer (Adam)", t0)
                timer.add("step (instrumented)", t_step)
                for k, (wall, cpu) in sub.items():
                    timer.add(k, (0.0, 0.0), (wall, cpu))
        finally:
            restore()
        if not math.isfinite(float(loss)):
            raise RuntimeError(f"minidl: non-finite loss {loss}")

    @staticmethod
    def _label(layer) -> str:
        kind = type(layer).__name__
        if kind == "LastHidden":
            return type(layer.rnn).__name__
        return kind

    @staticmethod
    def _time_recurrent_kernels(sub: dict, timer: _Timer):
        """Wrap minidl's recurrent-loop kernels (looked up on their module at each call)
        with timers adding ``[wall, cpu]`` into ``sub``; returns the function that
        unwraps them."""
        try:
            from minidl.kernels import rnn as rk
        except ImportError:
            return lambda: None
        names = {"recurrent_forward": "recurrent loop fwd",
                 "recurrent_backward": "recurrent loop bwd",
                 "hidden_weight_grads": "hidden weight grads"}
        saved = {}
        for attr, label in names.items():
            fn = getattr(rk, attr, None)
            if fn is None:
                continue
            saved[attr] = fn

            def timed(*args, _fn=fn, _label=label, **kwargs):
                t0 = timer.now()
                try:
                    return _fn(*args, **kwargs)
                finally:
                    t1 = timer.now()
                    acc = sub.setdefault(_label, [0.0, 0.0])
                    acc[0] += t1[0] - t0[0]
                    acc[1] += t1[1] - t0[1]
            setattr(rk, attr, timed)

        def restore():
            for attr, fn in saved.items():
                setattr(rk, attr, fn)
        return restore

    def _torch_op_times(self, steps: int, timer: _Timer) -> None:
        r = self.inner
        model, opt, crit = r.model, r.opt, r.crit
        model.train()
        layers = list(model)
        names = [f"{i} {self._label(layer)}" for i, layer in enumerate(layers)]
        for _ in range(steps):
            xb, yb = r._next_batch()
            t_step = timer.now()
            opt.zero_grad()
            x = xb
            outs = []
            for i, layer in enumerate(layers):
                t0 = timer.now()
                x = layer(x)
                timer.add(f"{names[i]} fwd", t0)
                outs.append(x)
            # a hook on a layer's output fires just before the gradient function that
            # made it runs: the start of that layer's backward, the end of the next one's
            marks = {}
            for i in range(self.first, len(layers)):
                if outs[i].requires_grad:
                    outs[i].register_hook(lambda g, i=i: marks.__setitem__(i, timer.now()))
            t0 = timer.now()
            loss = crit(x, yb)
            t_loss = timer.now()
            loss.backward()
            t_end = timer.now()
            value = loss.item()
            last = len(layers) - 1
            # the loss: its forward, then its backward up to the last layer's start
            timer.add("loss (fwd+bwd)", t0, marks[last])
            for i in range(last, self.first - 1, -1):
                end = marks.get(i - 1, t_end) if i > self.first else t_end
                timer.add(f"{names[i]} bwd", marks[i], end)
            t0 = timer.now()
            opt.step()
            timer.add("optimizer (Adam)", t0)
            timer.add("step (instrumented)", t_step)
        if not math.isfinite(value):
            raise RuntimeError(f"torch: non-finite loss {value}")


def Worker(framework: str) -> common.Worker:
    return common.Worker(_Runner, framework, name=f"{framework} roofline worker")


def measure_model(name: str, threads: int, workers: dict, args, log) -> dict:
    """The step (interleaved blocks, median) and each operation (median over
    ``args.op_steps`` steps, in alternating blocks) for each framework, on the wall
    clock and (one thread) the process's CPU clock."""
    fws = list(workers)
    setup = {fw: workers[fw].call("setup", name, threads, args.n_train, args.warmup)
             for fw in fws}
    probe = {fw: workers[fw].call("train", 3)[0] for fw in fws}
    steps = {fw: max(2, int(args.block_seconds / max(probe[fw], 1e-6))) for fw in fws}
    cpu_samples = {fw: [] for fw in fws}

    def sampler(fw):
        wall, cpu = workers[fw].call("train", steps[fw])
        cpu_samples[fw].append(cpu)
        return wall
    samples = common.interleaved({fw: (lambda fw=fw: sampler(fw)) for fw in fws},
                                 args.rounds, budget_s=args.budget_seconds,
                                 settle_s=common.SETTLE_S)
    per_op = {fw: {"wall": {}, "cpu": {}} for fw in fws}
    blocks = max(1, args.op_blocks)
    per_block = max(1, math.ceil(args.op_steps / blocks))
    for b in range(blocks):
        for fw in fws[b % len(fws):] + fws[:b % len(fws)]:
            time.sleep(common.SETTLE_S)
            for clock, recs in workers[fw].call("op_times", per_block).items():
                for k, v in recs.items():
                    per_op[fw][clock].setdefault(k, []).extend(v)
    out = {"setup": setup, "steps_per_block": steps}
    for fw in fws:
        out[fw] = {"step": {"wall": {**common.summarize(samples[fw]), "samples": samples[fw]},
                            "cpu": {**common.summarize(cpu_samples[fw]),
                                    "samples": cpu_samples[fw]}},
                   "ops": {clock: {k: {**common.summarize(v), "samples": v}
                                   for k, v in recs.items()}
                           for clock, recs in per_op[fw].items()}}
    log(f"{name:12s} t={threads} " + "  ".join(
        f"{fw} wall {out[fw]['step']['wall']['median'] * 1e3:.3f} ms, cpu "
        f"{out[fw]['step']['cpu']['median'] * 1e3:.3f} ms" for fw in fws))
    return out


# ============================================================== report
def _fmt_x(x):
    return "—" if x is None else f"{x:.3g}×" if x < 100 else f"{x:,.0f}×"


def _us(s):
    return "—" if s is None else common.fmt_time(s)


def clock_for(threads: int) -> str:
    """The clock a row's times are read on: the process's CPU time on one thread (all
    the work runs on the calling thread, so it is the time the work held a core,
    whatever other processes did meanwhile), the wall clock on more."""
    return "cpu" if threads == 1 else "wall"


def build_rows(models_ops: dict, measured: dict, limits: dict, threads_list) -> list[dict]:
    """One row per model and thread count: the step's bound, each framework's step and
    its multiple (on ``clock_for(threads)``), and the per-operation rows."""
    rows = []
    for threads in threads_list:
        clock = clock_for(threads)
        for name, mo in models_ops.items():
            meas = measured.get((name, threads))
            if meas is None:
                continue
            fws = [fw for fw in ("minidl", "torch") if fw in meas]

            def op_row(op, b, **extra):
                row = {"op": op["name"], **extra, "kind": op["kind"], "flops": op["flops"],
                       "bytes": op["bytes"], "footprint": op["footprint"],
                       "intensity": op["flops"] / op["bytes"] if op["bytes"] else None,
                       "bound_s": b["seconds"], "limited_by": b["limited_by"],
                       "bound_threads": b["threads"], "level": b["level"],
                       "bound_terms": b.get("terms")}
                for fw in fws:
                    m = meas[fw]["ops"][clock].get(op["name"], {}).get("median")
                    row[fw] = m
                    row[f"{fw}_x"] = (m / b["seconds"]) if (m and b["seconds"]) else None
                    row[f"{fw}_wall"] = meas[fw]["ops"]["wall"].get(op["name"], {}).get("median")
                return row

            op_rows = []
            for op in mo["ops"]:
                b = op_bound(op, limits, threads)
                op_rows.append(op_row(op, b))
                for part, pb in zip(op["parts"], b.get("parts", [])):
                    op_rows.append(op_row(part, pb, part_of=op["name"]))
            bound = sum(r["bound_s"] for r in op_rows if "part_of" not in r)
            by_kind = {}
            for r in op_rows:
                if "part_of" not in r:
                    key = r["limited_by"].split(" ")[0] if "bandwidth" in r["limited_by"] \
                        else r["limited_by"]
                    key = "memory" if key in ("L1", "L2", "L3", "DRAM") else key
                    by_kind[key] = by_kind.get(key, 0.0) + r["bound_s"]
            row = {"model": name, "batch": mo["batch"], "threads": threads, "clock": clock,
                   "bound_s": bound, "bound_by_kind": by_kind, "ops": op_rows}
            for fw in fws:
                step = meas[fw]["step"][clock]["median"]
                wall = meas[fw]["step"]["wall"]["median"]
                inst = meas[fw]["ops"][clock].get("step (instrumented)", {})
                row[fw] = {"step_s": step, "x_bound": step / bound if bound else None,
                           "wall_step_s": wall,
                           "wall_x_bound": wall / bound if bound else None,
                           "runs": meas[fw]["step"]["wall"]["runs"],
                           "steps_per_block": meas["steps_per_block"][fw],
                           "instrumented_step_s": inst.get("median"),
                           "op_steps": inst.get("runs")}
            for fw in fws:
                row[fw]["largest_gap"] = largest_gap(row, fw)
            if "torch" in fws:
                row["ratio"] = common.ratio(row["minidl"]["step_s"], row["torch"]["step_s"])
                row["wall_ratio"] = common.ratio(row["minidl"]["wall_step_s"],
                                                 row["torch"]["wall_step_s"])
            rows.append(row)
    return rows


def largest_gap(row: dict, fw: str) -> dict | None:
    """The operation with the most measured time above its bound in ``fw``'s step:
    ``{"op", "gap_s", "share"}`` (share of the plain step's median)."""
    best = None
    for o in row["ops"]:
        if "part_of" in o or o.get(fw) is None:
            continue
        gap = o[fw] - o["bound_s"]
        if best is None or gap > best["gap_s"]:
            best = {"op": o["op"], "gap_s": gap, "share": o[fw] / row[fw]["step_s"]}
    return best


def _largest_gap(row, fw):
    g = largest_gap(row, fw)
    return "—" if g is None else f"{g['op']} ({g['share']:.0%} of the step)"


def _level_text(bytes_):
    return common.fmt_num(bytes_ / 1024) + " KiB" if bytes_ < 1024 ** 2 else \
        common.fmt_num(bytes_ / 1024 ** 2) + " MiB"


def render(args, info, info_end, uptimes, limits_raw, limits, rows) -> str:
    peaks, bandwidth, fj = limits_raw["peaks"], limits_raw["bandwidth"], limits_raw["fork_join"]
    has_torch = any("torch" in r for r in rows)
    out = ["# Roofline: each training step against this machine's limits", "",
           machine.machine_markdown(info), "",
           f"Load (`uptime`) before: `{uptimes[0]}`; after: `{uptimes[1]}`.", "",
           machine.load_note(info, info_end), ""]
    if args.quick:
        out += ["**--quick run: tiny sizes and repeats; the numbers mean nothing.**", ""]
    out += ["## The machine's limits", "",
            "Peak float32 multiply-add throughput: a loop of independent fused "
            "multiply-adds on register-resident accumulators (Numba, LLVM vector "
            "intrinsics), per vector route, each in its own process; best of "
            f"{args.limit_repeats} samples (median beside it). Flops = 2 per "
            "multiply-add. Each thread's rate is its work over its own CPU time "
            "(`time.thread_time`), so time other processes held the core is not counted; "
            "the wall-clock rate (total work / wall time) is beside it. *asm*: the "
            "packed-single FMA instructions found in the compiled loop, by register, and "
            "how many take a memory operand.", ""]
    prow = []
    for route, res in peaks.items():
        chk = res["fma_instructions"]
        asm = ", ".join(f"{chk[w]} {w}" for w in ("zmm", "ymm", "xmm") if chk[w]) \
            + f"; {chk['memory_operand']} with a memory operand"
        for n, c in res["threads"].items():
            prow.append([route, f"{res['lanes']} × {res['accumulators']} {res['register']}",
                         res["numba_cpu_name"], n, common.fmt_num(c["gflops_best"]),
                         common.fmt_num(c["gflops_median"]),
                         common.fmt_num(c["gflops_best"] / int(n)),
                         f"{common.fmt_num(c['gflops_wall_best'])} "
                         f"({common.fmt_num(c['gflops_wall_median'])})", asm])
    out.append(common.markdown_table(
        ["route", "lanes × accumulators", "Numba CPU", "threads", "GFLOP/s (best)",
         "GFLOP/s (median)", "per core", "wall-clock GFLOP/s best (median)", "asm"], prow))
    out += ["", "Memory bandwidth, STREAM copy (`c = a`: 8 bytes per element) and triad "
                "(`a = b + s·c`: 12 bytes per element), GB/s = 1e9 bytes/s, best of "
                f"{args.limit_repeats} (median), per CPU second as the peak (wall clock "
                "beside). Working set: per thread for L1 and L2 (each thread its own "
                "arrays in its own core's cache), in total for L3 and memory.", ""]
    brow = []
    for level, v in bandwidth.items():
        for n, c in v["threads"].items():
            brow.append([level, _level_text(v["working_set_bytes"])
                         + (" per thread" if v["private"] else " total"), n,
                         f"{c['copy']['gbs_best']:.1f} ({c['copy']['gbs_median']:.1f})",
                         f"{c['triad']['gbs_best']:.1f} ({c['triad']['gbs_median']:.1f})",
                         f"{c['copy']['gbs_wall_best']:.1f} / "
                         f"{c['triad']['gbs_wall_best']:.1f}"])
    out.append(common.markdown_table(["level", "working set", "threads", "copy GB/s",
                                      "triad GB/s", "wall clock: copy / triad best"], brow))
    caches = limits_raw["caches"]
    out += ["", "Caches (from `/sys`): " + ", ".join(
        f"{k} {_level_text(v)}" + (" per core" if k in ("L1", "L2") else " shared")
        for k, v in caches.items()) + "."]
    if fj["threads"]:
        out += ["", "Fork-join latency (an empty `prange` on minidl's threading setup, "
                    f"layer {fj['threading_layer']}, back to back): " + ", ".join(
                        f"{n} threads: fastest of {fj['calls']} launches "
                        f"{common.fmt_time(c['seconds_best'])}, 10th percentile "
                        f"{common.fmt_time(c['seconds_p10'])}, median "
                        f"{common.fmt_time(c['seconds_median'])}"
                        for n, c in fj["threads"].items()) + "."]
    out += ["", f"The bounds use route **{limits['route']}** "
                + ("(the widest this CPU has)" if info.get("isa", "host") == "host" else
                   f"(`--isa {info.get('isa')}`)")
                + ": " + "; ".join(
                    f"{n} thread{'s' if n > 1 else ''}: peak "
                    f"{common.fmt_num(v['peak_gflops'])} GFLOP/s, bandwidth "
                    + ", ".join(f"{lv} {bw:.0f}" for lv, bw in v['bandwidth_gbs'].items())
                    + " GB/s" for n, v in limits["threads"].items()) + ".", ""]

    out += ["## How the bound is computed", "",
            "Each operation's time is at least max(flops / peak, bytes / bandwidth, "
            "syncs × fork-join latency), with the bandwidth of the level its working set "
            "(every array it touches, counted once) fits in (L1 and L2: per core × "
            "threads; L3 shared); the latency term only when the operation is split over "
            "threads (syncs = 1, or T for a recurrent loop of T steps), and on n threads "
            "the bound is the best over 1..n threads. **Flops**: 2 per multiply-add of "
            "each matrix product and convolution a training step must do (the first layer "
            "with parameters computes no input gradient, in both frameworks), 1 per bias "
            "addition; nominal counts for element-wise work (these operations are far "
            "below the machine balance, so bytes set their bound). **Bytes**: each "
            "operand read once and each result written once, per operation, float32; "
            "masks 1 byte per element; what a recurrent loop keeps for its backward "
            "(gates, cell states) counted as written. The step's bound is the sum over "
            "its operations; reshapes are views (bound 0), and Python overhead has no "
            "bound: it shows as the gap between the step's multiple and its operations'. "
            "*Multiple* = measured median / bound (1.0 = the machine's limit).", ""]

    out += ["## Training step as a multiple of its bound", "",
            f"Step: interleaved blocks of ~{args.block_seconds:g} s alternating between "
            f"the frameworks (each in its own process), median over the rounds "
            f"(*runs×steps*). Per operation: median over N = {args.op_steps} timed steps "
            f"per framework (in {args.op_blocks} alternating blocks). **Clock**: on one "
            "thread the process's CPU time (`time.process_time`, every thread of the "
            "worker: the work runs on the calling thread, so this is the time it held a "
            "core, whatever other processes did meanwhile); on two threads the wall clock "
            "(a parallel region waits for its slowest thread, so the time other processes "
            "take is in it). The wall-clock step and its multiple are beside.", ""]
    srow = []
    for r in rows:
        m, t = r["minidl"], r.get("torch")
        kinds = ", ".join(f"{k} {v / r['bound_s']:.0%}" for k, v in
                          sorted(r["bound_by_kind"].items(), key=lambda kv: -kv[1])
                          if v >= 0.005 * r["bound_s"])
        wall = (f"{_us(m['wall_step_s'])} ({_fmt_x(m['wall_x_bound'])})"
                + (f" / {_us(t['wall_step_s'])} ({_fmt_x(t['wall_x_bound'])})" if t else ""))
        srow.append([r["model"], r["batch"], r["threads"], _us(r["bound_s"]), kinds,
                     r["clock"], _us(m["step_s"]), _fmt_x(m["x_bound"]),
                     _us(t["step_s"]) if t else "—", _fmt_x(t["x_bound"]) if t else "—",
                     common.fmt_num(r.get("ratio"), 2),
                     wall if r["clock"] != "wall" else "(same)",
                     _largest_gap(r, "minidl"),
                     f"{m['runs']}×{m['steps_per_block']}"
                     + (f" / {t['runs']}×{t['steps_per_block']}" if t else "")])
    out.append(common.markdown_table(
        ["model", "batch", "threads", "bound", "bound set by", "clock", "minidl",
         "minidl × bound", "torch", "torch × bound", "minidl / torch",
         "wall clock: minidl (× bound) / torch (× bound)", "minidl's largest gap",
         "runs×steps (minidl / torch)"], srow))
    out += ["", "## Per operation", "",
            "Bound per operation with what sets it (*compute*, a level's *bandwidth*, or "
            "*latency*) and the thread count it assumes; each framework's median time and "
            "its multiple of the bound. Rows marked ↳ are parts of a recurrent layer "
            "(bound only, or minidl's own kernels timed inside the layer). *instrumented "
            "step* is the sum as timed operation by operation, beside the plain step.", ""]
    for r in rows:
        out += [f"### {r['model']}, {r['threads']} thread{'s' if r['threads'] > 1 else ''} "
                f"({'CPU time' if r['clock'] == 'cpu' else 'wall clock'})", ""]
        orow = []
        for o in r["ops"]:
            label = f"↳ {o['op']}" if "part_of" in o else o["op"]
            orow.append([label, common.fmt_num(o["flops"] / 1e6), common.fmt_num(o["bytes"] / 1e6),
                         common.fmt_num(o["intensity"], 2) if o["intensity"] else "—",
                         _us(o["bound_s"]),
                         f"{o['limited_by']} ({o['bound_threads']}t)",
                         _us(o.get("minidl")), _fmt_x(o.get("minidl_x")),
                         _us(o.get("torch")) if has_torch else "—",
                         _fmt_x(o.get("torch_x")) if has_torch else "—"])
        m, t = r["minidl"], r.get("torch")
        orow.append(["**step** (instrumented / plain)", "", "", "", _us(r["bound_s"]), "",
                     f"{_us(m['instrumented_step_s'])} / {_us(m['step_s'])}",
                     _fmt_x(m["x_bound"]),
                     f"{_us(t['instrumented_step_s'])} / {_us(t['step_s'])}" if t else "—",
                     _fmt_x(t["x_bound"]) if t else "—"])
        out.append(common.markdown_table(
            ["operation", "MFLOP", "MB", "flop/byte", "bound", "set by", "minidl",
             "× bound", "torch", "× bound"], orow))
        out += ["", f"![roofline {r['model']}](roofline_{r['model']}.png)", ""]
    return "\n".join(out)


def roofline_chart(path: Path, model: str, rows: list[dict], limits: dict) -> Path:
    """Log-log roofline of one model: each operation a point (arithmetic intensity,
    achieved GFLOP/s) per framework, under the compute roof and each level's bandwidth
    roof; one panel per thread count."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mrows = [r for r in rows if r["model"] == model]
    fig, axes = plt.subplots(1, len(mrows), figsize=(6.5 * len(mrows), 5.2), squeeze=False)
    for ax, r in zip(axes[0], mrows):
        lim = limits["threads"][r["threads"]]
        pts = [o for o in r["ops"] if o["flops"] > 0 and o["bytes"] > 0]
        xs = [o["intensity"] for o in pts]
        lo, hi = min(xs + [0.05]) / 2, max(xs + [50.0]) * 2
        grid = np.logspace(math.log10(lo), math.log10(hi), 200)
        peak = lim["peak_gflops"]
        ax.axhline(peak, color="k", linewidth=1.2)
        ax.text(hi, peak * 1.08, f"peak {peak:.0f} GFLOP/s", ha="right", fontsize=7)
        for level, bw in lim["bandwidth_gbs"].items():
            roof = np.minimum(bw * grid, peak)
            ax.plot(grid, roof, linestyle="--", linewidth=0.9)
            xi = min(peak / bw, hi) / 3
            ax.text(xi, bw * xi * 1.15, f"{level} {bw:.0f} GB/s", fontsize=7, rotation=30)
        markers = {"minidl": ("o", "tab:blue"), "torch": ("s", "tab:red")}
        for fw, (mk, col) in markers.items():
            if fw not in r:
                continue
            px, py, labels = [], [], []
            for o in pts:
                t = o.get(fw)
                if t:
                    px.append(o["intensity"])
                    py.append(o["flops"] / t / 1e9)
                    labels.append(o["op"].strip())
            ax.scatter(px, py, marker=mk, color=col, label=f"{fw} (measured)",
                       alpha=0.8, s=30, zorder=3)
            if fw == "minidl":
                for x, y, lab in zip(px, py, labels):
                    ax.annotate(lab, (x, y), fontsize=6, xytext=(3, -8),
                                textcoords="offset points")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(lo, hi)
        ax.set_xlabel("arithmetic intensity (flop / byte)")
        ax.set_ylabel("achieved GFLOP/s")
        ax.set_title(f"{model}, batch {r['batch']}, {r['threads']} thread"
                     f"{'s' if r['threads'] > 1 else ''}: step "
                     + " ".join(f"{fw} {r[fw]['x_bound']:.1f}× bound"
                                for fw in ("minidl", "torch") if fw in r), fontsize=9)
        ax.grid(True, which="both", alpha=0.25)
        ax.legend(fontsize=7, loc="lower right")
    return common.save_figure(fig, path)


def _uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True,
                              timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "load average: " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


# ============================================================== main
def main(argv=None) -> int:
    parser = common.base_parser(__doc__.split("\n")[0])
    parser.set_defaults(out=OUT_DIR)
    parser.add_argument("--threads", type=int, nargs="+", default=None,
                        help="thread counts (default 1 2; --quick: 1)")
    parser.add_argument("--models", nargs="+", choices=ALL_MODELS, default=None,
                        help="default: all eight (--quick: lab_mlp_64 lstm_128)")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved step rounds")
    parser.add_argument("--block-seconds", type=float, default=None)
    parser.add_argument("--budget-seconds", type=float, default=None)
    parser.add_argument("--op-steps", type=int, default=None,
                        help="timed steps per framework for the per-operation medians (N)")
    parser.add_argument("--op-blocks", type=int, default=None)
    parser.add_argument("--limit-repeats", type=int, default=None,
                        help="samples per machine limit (the best is used)")
    parser.add_argument("--no-torch", action="store_true", help="measure minidl alone")
    # internal: one vector route's peak in a fresh process
    parser.add_argument("--peak-worker", choices=list(ROUTES), help=argparse.SUPPRESS)
    parser.add_argument("--peak-threads", type=int, nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--peak-repeats", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--peak-seconds", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--replot", action="store_true",
                        help="measure nothing: write the Markdown and the pictures again "
                             "from OUT/roofline.json")
    args = common.parse_args(parser, argv, "benchmarks.roofline")
    if args is None:
        return common.parse_args.code
    if args.replot:
        payload = json.loads((Path(args.out) / "roofline.json").read_text())
        for p in write_report(Path(args.out), payload):
            print(f"wrote {p}", file=sys.stderr)
        return 0
    if args.peak_worker:
        print(json.dumps(peak_worker(args.peak_worker, args.peak_threads, args.peak_repeats,
                                     args.peak_seconds)))
        return 0

    import minidl.threads  # noqa: F401  -- before Numba: minidl's threading-layer choice
    q = args.quick
    args.threads = args.threads or ([1] if q else [1, 2])
    args.models = args.models or (["lab_mlp_64", "lstm_128"] if q
                                  else list(ALL_MODELS))
    args.rounds = args.rounds or (1 if q else 7)
    args.block_seconds = args.block_seconds or (0.01 if q else 0.3)
    args.budget_seconds = args.budget_seconds or (None if q else 20.0)
    args.op_steps = args.op_steps or (2 if q else 50)
    args.op_blocks = args.op_blocks or (1 if q else 5)
    args.limit_repeats = args.limit_repeats or (2 if q else 7)
    args.n_train = 256 if q else 4096
    args.warmup = 1 if q else 5
    sample_s = 0.005 if q else 0.1

    def log(msg):
        print(f"[{time.perf_counter() - t_start:6.1f} s] {msg}", file=sys.stderr, flush=True)

    t_start = time.perf_counter()
    from .machine import torch_available
    use_torch = (not args.no_torch) and torch_available()
    if not use_torch and not args.no_torch:
        log("PyTorch is not installed: measuring minidl alone")
    uptime_start = _uptime()
    info = machine.machine_info(with_torch=use_torch)

    cpus = info["cpus_usable"]
    limit_threads = sorted({1, *[min(n, cpus) for n in args.threads], cpus})
    caches = cache_sizes()
    routes = routes_available(info["cpu_vector_flags"])
    if not routes:
        raise SystemExit("roofline: this CPU has neither AVX-512 nor AVX2 with FMA; the "
                         "peak loop is written for those two vector routes")
    log(f"routes {routes}, caches {caches}, threads {limit_threads}")
    peaks = measure_peaks(routes, limit_threads, args.limit_repeats, sample_s, log)
    levels = stream_levels(caches, q, _mem_available())
    bandwidth = measure_bandwidth(levels, limit_threads, args.limit_repeats, sample_s, log)
    fork_join = measure_fork_join(limit_threads, 200 if q else 5000)
    route = "avx2" if info.get("isa") == "avx2" and "avx2" in routes else routes[0]
    limits = limits_for(peaks, bandwidth, fork_join, caches, route)
    limits_raw = {"peaks": peaks, "bandwidth": bandwidth, "fork_join": fork_join,
                  "caches": caches}

    log(f"fork-join: {fork_join['threads']}")
    models_ops = {name: model_ops(name) for name in args.models}
    measured = {}
    workers = {}
    try:
        workers["minidl"] = Worker("minidl")
        if use_torch:
            workers["torch"] = Worker("torch")
        for threads in args.threads:
            for name in args.models:
                measured[(name, threads)] = measure_model(name, threads, workers, args, log)
    finally:
        for w in workers.values():
            w.close()
    log("workers closed")

    rows = build_rows(models_ops, measured, limits, args.threads)
    info_end = machine.machine_info(with_torch=False)
    payload = {"machine": info,
               "machine_end": {"load_average": info_end["load_average"],
                               "busy_processes": info_end["busy_processes"]},
               "uptime": {"before": uptime_start, "after": _uptime()},
               "settings": {k: (str(v) if isinstance(v, Path) else v)
                            for k, v in vars(args).items() if not k.startswith("peak_")},
               "limits": limits_raw, "bound_limits": limits,
               "models": models_ops,
               "measured": [{"model": name, "threads": threads, **m}
                            for (name, threads), m in measured.items()],
               "rows": rows, "seconds": time.perf_counter() - t_start}
    paths = [common.write_json(args.out, "roofline", payload)]
    paths += write_report(Path(args.out), json.loads(paths[0].read_text()))
    for p in paths:
        log(f"wrote {p}")
    return 0


def write_report(out: Path, payload: dict) -> list[Path]:
    """``roofline.md`` and one ``roofline_<model>.png`` per model, from the JSON payload
    (as written: thread counts are string keys there)."""
    args = argparse.Namespace(**payload["settings"])
    limits = dict(payload["bound_limits"])
    limits["threads"] = {int(k): v for k, v in limits["threads"].items()}
    md = render(args, payload["machine"], payload["machine_end"],
                (payload["uptime"]["before"], payload["uptime"]["after"]),
                payload["limits"], limits, payload["rows"])
    paths = [common.write_markdown(out, "roofline", md)]
    paths += [roofline_chart(out / f"roofline_{name}.png", name, payload["rows"], limits)
              for name in args.models]
    return paths


if __name__ == "__main__":
    raise SystemExit(main())
