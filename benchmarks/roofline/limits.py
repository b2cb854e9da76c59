"""The machine's limits: peak multiply-add rate per vector route and thread count, memory
bandwidth per cache level, the cost of a parallel launch (``benchmarks.roofline``, part 1).
"""
from __future__ import annotations

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

from .. import common
from . import FLOAT, ROUTES


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
