"""``python -m benchmarks.kernels``: build the cases, time them, write the report."""
from __future__ import annotations

import sys
import time

from .. import common, machine
from .cases import Env, Impl, build_cases
from .charts import charts
from .report import _row_ratios, render
from .timing import TorchKernels, measure_case

DESCRIPTION = "Kernel benchmark: each hot operation, five ways, timed side by side."


def main(argv=None) -> int:
    parser = common.base_parser(DESCRIPTION)
    parser.add_argument("--threads", type=int, nargs="+", default=None,
                        help="thread counts (default 1 2; --quick: 1)")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--block-seconds", type=float, default=None)
    parser.add_argument("--no-torch", action="store_true")
    args = common.parse_args(parser, argv, "benchmarks.kernels")
    if args is None:          # ran again under --isa
        return common.parse_args.code
    q = args.quick
    args.threads = args.threads or ([1] if q else [1, 2])
    args.rounds = args.rounds or (2 if q else 5)
    args.block_seconds = args.block_seconds or (0.002 if q else 0.03)
    naive_block = 0.0 if q else 0.05

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    t_start = time.perf_counter()
    env = Env(use_torch=False, use_cupy=True)   # torch runs in its own process
    cupy_note = ("present: the NumPy twins run on CuPy arrays" if env.cp is not None else
                 "no usable GPU/CuPy on this machine, column skipped")
    worker = None
    if not args.no_torch:
        from ..machine import torch_available
        if torch_available():
            worker = common.Worker(TorchKernels, q, name="torch kernel worker")
        else:
            log("PyTorch is not installed: no torch column")
    info = machine.machine_info(with_torch=worker is not None)
    rows = []
    try:
        for threads in args.threads:
            env.minidl.set_num_threads(threads)
            cases = build_cases(env, q)
            if worker is not None:
                worker.call("set_threads", threads)
                names = worker.call("names")
                if names != [(c.op, c.shape) for c in cases]:
                    raise RuntimeError("kernels: the torch worker built different cases")
                for i, (case, has) in enumerate(zip(cases, worker.call("has_torch"))):
                    if has:
                        case.impls["torch"] = Impl(run=None, remote=(worker, i))
            for case in cases:
                if threads != args.threads[0]:
                    case.impls.pop("naive", None)   # loops are single-threaded: timed once
                r = measure_case(case, args.rounds, args.block_seconds, naive_block)
                r["threads"] = threads
                rows.append(r)
                med = {k: v["median"] for k, v in r["impls"].items() if v}
                log(f"t={threads} {r['op']:20s} {r['shape'][:38]:38s} " +
                    " ".join(f"{k}={common.fmt_time(v)}" for k, v in med.items()))
    finally:
        if worker is not None:
            worker.close()
    info_end = machine.machine_info(with_torch=False)
    for r in rows:
        r["ratios"] = _row_ratios(r)
    md = render(info, info_end, rows, args, cupy_note)
    chart_paths = charts(args, rows)
    for p in chart_paths:
        log(f"wrote {p}")
    readme_md = (md.split("\n", 2)[2] + "\n\n"
                 + "\n".join(f"![{p.stem}](results/{p.name})" for p in chart_paths))
    payload = {"machine": info, "machine_end": {"load_average": info_end["load_average"]},
               "settings": {"threads": args.threads, "rounds": args.rounds,
                            "block_seconds": args.block_seconds, "quick": q},
               "cupy": {"available": env.cp is not None, "note": cupy_note},
               "results": rows, "seconds": time.perf_counter() - t_start}
    common.finish(args, "kernels", payload, md, readme_md)
    print(md)
    return 0

