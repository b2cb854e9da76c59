"""Numba's threading layers: what a parallel kernel launch costs, and what it does to training.

    python -m benchmarks.threading [--quick] [--threads 2] [--rounds 3] [--out DIR]

Why minidl runs its kernels on Numba's OpenMP layer with ``GOMP_SPINCOUNT=10000`` (see
``minidl.threads``).  Every configuration runs in fresh processes with only its
environment changed:

- ``workqueue``: Numba's own thread pool (minidl's layer before this benchmark existed);
- ``omp, spin 300000``: GNU OpenMP with its default spin before a worker sleeps (300,000
  when there are no more threads than cores);
- ``omp, spin 10000``: minidl's default;
- ``omp, passive``: ``OMP_WAIT_POLICY=passive``, workers sleep at once.

Part 1, **launch cost**: a ``prange`` loop of one trivial iteration per thread, timed
after a gap of busy Python (0, 20, 100 and 1000 us): the time between two kernels of a
training step.  Median of several hundred launches per gap.

Part 2, **training step**: the 2-conv CNN of issue 5 (batch 64, Adam), float32 and
float64, on the given thread count; the float64 step spends most of its time in NumPy's
OpenBLAS, whose own threads compete with the OpenMP workers for the cores.  One sample is
the mean over a block of steps; configurations alternate round by round; median of
``--rounds`` rounds.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys

from . import common, machine

CONFIGS = {
    "workqueue": {"NUMBA_THREADING_LAYER": "workqueue"},
    "omp, spin 300000": {"NUMBA_THREADING_LAYER": "omp", "GOMP_SPINCOUNT": "300000"},
    "omp, spin 10000 (minidl)": {"NUMBA_THREADING_LAYER": "omp", "GOMP_SPINCOUNT": "10000"},
    "omp, passive": {"NUMBA_THREADING_LAYER": "omp", "OMP_WAIT_POLICY": "passive"},
}
GAPS_US = (0, 20, 100, 1000)

_LAUNCH_CHILD = r"""
import json, sys, time
import numpy as np, numba
from numba import njit, prange
threads, launches = int(sys.argv[1]), int(sys.argv[2])
gaps = [int(g) for g in sys.argv[3].split(",")]

@njit(parallel=True)
def touch(a):
    for i in prange(a.shape[0]):
        a[i] += 1.0

def busy(us):
    end = time.perf_counter() + us * 1e-6
    while time.perf_counter() < end:
        pass

a = np.zeros(threads)
numba.set_num_threads(threads)
touch(a)
out = {"layer": numba.threading_layer(), "launch_us": {}}
for gap in gaps:
    times = []
    for _ in range(launches):
        busy(gap)
        t = time.perf_counter()
        touch(a)
        times.append(time.perf_counter() - t)
    out["launch_us"][str(gap)] = sorted(times)[len(times) // 2] * 1e6
print(json.dumps(out))
"""

_STEP_CHILD = r"""
import json, sys, time
import numpy as np
import minidl
from benchmarks import zoo
threads, steps = int(sys.argv[1]), int(sys.argv[2])
minidl.performance.apply(num_threads=threads)
minidl.kernels.use_reference(False)     # Numba's layers are measured: the fast routes, always
out = {}
for dtype in (np.float32, np.float64):
    minidl.manual_seed(0)
    model = zoo.build_model(minidl.nn, "cnn_2conv")
    if dtype == np.float64:
        model.double()
    model.needs_input_grad = False
    opt = minidl.optim.Adam(model.parameters(), lr=1e-3)
    crit = minidl.nn.CrossEntropyLoss()
    x, y = zoo.synthetic_fashion_mnist(64 * 4, seed=0, dtype=dtype)

    def step(i):
        xb, yb = x[64 * (i % 4):64 * (i % 4 + 1)], y[64 * (i % 4):64 * (i % 4 + 1)]
        opt.zero_grad()
        crit(model(xb), yb)
        model.backward(crit.backward())
        opt.step()

    for i in range(3):
        step(i)
    t = time.perf_counter()
    for i in range(steps):
        step(i)
    out[np.dtype(dtype).name] = (time.perf_counter() - t) / steps
import numba
out["layer"] = numba.threading_layer()
print(json.dumps(out))
"""


def _child(code: str, env_extra: dict, args: list[str], timeout: float = 600) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("NUMBA_THREADING_LAYER", "NUMBA_THREADING_LAYER_PRIORITY",
                        "GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    env.update(env_extra)
    env["NUMBA_NUM_THREADS"] = args[0]          # the thread count asked for
    env.pop("MINIDL_NUM_THREADS", None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(common.REPO_ROOT),
                                                      env.get("PYTHONPATH")]))
    proc = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True,
                          text=True, timeout=timeout, cwd=str(common.REPO_ROOT))
    if proc.returncode != 0:
        raise RuntimeError(f"threading benchmark child failed ({env_extra}):\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure(threads: int, rounds: int, quick: bool, log) -> dict:
    launches = 50 if quick else 400
    steps = 2 if quick else 25
    gaps = ",".join(str(g) for g in GAPS_US)
    result = {"threads": threads, "rounds": rounds, "launches": launches, "steps": steps,
              "configs": {}}
    for name, env in CONFIGS.items():
        log(f"launch cost: {name}")
        result["configs"][name] = {"env": env,
                                   **_child(_LAUNCH_CHILD, env, [str(threads), str(launches),
                                                                 gaps]),
                                   "step_samples": {"float32": [], "float64": []}}
    for r in range(rounds):
        for name, env in CONFIGS.items():
            log(f"training step, round {r + 1}/{rounds}: {name}")
            out = _child(_STEP_CHILD, env, [str(threads), str(steps)])
            for dt in ("float32", "float64"):
                result["configs"][name]["step_samples"][dt].append(out[dt])
    for cfg in result["configs"].values():
        cfg["step_s"] = {dt: statistics.median(s) for dt, s in cfg["step_samples"].items()}
    return result


def render(res: dict) -> str:
    t = res["threads"]
    launch_rows = [[name, cfg["layer"]] + [common.fmt_num(cfg["launch_us"][str(g)], 3)
                                           for g in GAPS_US]
                   for name, cfg in res["configs"].items()]
    base = res["configs"]["workqueue"]["step_s"]
    step_rows = [[name] + [f"{common.fmt_time(cfg['step_s'][dt])} "
                           f"({common.fmt_num(common.ratio(cfg['step_s'][dt], base[dt]), 2)})"
                           for dt in ("float32", "float64")]
                 for name, cfg in res["configs"].items()]
    return "\n".join([
        f"### Launch cost of a `prange` loop on {t} threads (us, median of "
        f"{res['launches']} launches)", "",
        "Columns: busy Python before each launch (the gap between two kernels).", "",
        common.markdown_table(["configuration", "layer"] + [f"gap {g} us" for g in GAPS_US],
                              launch_rows), "",
        f"### 2-conv CNN training step on {t} threads (batch 64, Adam; median of "
        f"{res['rounds']} rounds of {res['steps']} steps; in brackets: time / workqueue's)", "",
        common.markdown_table(["configuration", "float32", "float64"], step_rows),
    ])


def main(argv=None) -> int:
    parser = common.base_parser(__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    args = common.parse_args(parser, argv, "benchmarks.threading")
    if args is None:          # ran again under --isa
        return common.parse_args.code
    if args.threads < 2 or args.rounds < 1:
        parser.error("--threads must be at least 2 and --rounds at least 1")
    rounds = 1 if args.quick else args.rounds
    info = machine.machine_info(with_torch=False)
    res = measure(args.threads, rounds, args.quick,
                  log=lambda m: print(m, file=sys.stderr, flush=True))
    info_end = machine.machine_info(with_torch=False)
    md = "\n".join(["# Numba threading layers", "", machine.machine_markdown(info), "",
                    machine.load_note(info, info_end), "", render(res)])
    common.finish(args, "threading", {"machine": info, "machine_end": info_end,
                                      "threading": res}, md)
    names = list(res["configs"])
    common.bar_chart(args.out / "threading.png",
                     f"2-conv CNN training step, {args.threads} threads", names,
                     {dt: [res["configs"][n]["step_s"][dt] * 1e3 for n in names]
                      for dt in ("float32", "float64")}, "ms per step")
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
