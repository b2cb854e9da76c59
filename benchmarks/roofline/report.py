"""The roofline report: rows per model and operation, the Markdown, the charts.
"""
from __future__ import annotations

import math
import os
import subprocess
from pathlib import Path

import numpy as np

from .. import common, machine
from .ops import op_bound
from .steps import OP_WARM_S


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
            f"per framework (in {args.op_blocks} alternating blocks, each after "
            f"{OP_WARM_S:g} s of untimed steps). **Clock**: on one "
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
