"""``python -m benchmarks.roofline``: measure, then write the report (``--replot``: again
from the JSON; ``--peak-worker``: one route's peak, in a fresh process).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from .. import common, machine
from . import ALL_MODELS, OUT_DIR, ROUTES
from . import __doc__ as PACKAGE_DOC
from .limits import (_mem_available, cache_sizes, limits_for, measure_bandwidth,
                     measure_fork_join, measure_peaks, peak_worker, routes_available,
                     stream_levels)
from .ops import model_ops
from .report import _uptime, build_rows, render, roofline_chart
from .steps import Worker, measure_model


def main(argv=None) -> int:
    parser = common.base_parser(PACKAGE_DOC.split("\n")[0])
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
    from ..machine import torch_available
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

