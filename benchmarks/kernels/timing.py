"""The kernel benchmark's timing: check each cell's output, then time it.

``measure_case`` compares every implementation's output with the row's reference
(``output_diff``), calibrates a block of calls per implementation (``calibrate_block``) and
takes interleaved rounds of blocks (``common.interleaved``), the median of which is the
cell's time.  ``TorchKernels`` holds the PyTorch cells in a process of their own.
"""
from __future__ import annotations

import math
import time

import numpy as np

from .. import common
from .cases import IMPLS, Env, Impl, Case, build_cases


def _to_np(a):
    if isinstance(a, (tuple, list)):
        return [_to_np(v) for v in a]
    if hasattr(a, "detach"):
        return a.detach().cpu().numpy()
    if hasattr(a, "get") and not isinstance(a, np.ndarray):
        return a.get()
    return np.asarray(a)


def _flat(a):
    out = []
    for v in (a if isinstance(a, (tuple, list)) else [a]):
        out += _flat(v) if isinstance(v, (tuple, list)) else [np.asarray(v)]
    return out


def output_diff(a, b) -> tuple[float, float]:
    """(max |a - b|, max over arrays of that / max |b|) over all arrays of two outputs.

    NaN positions must agree (else both are inf), as must the number and shapes of arrays.
    """
    a, b = _flat(_to_np(a)), _flat(_to_np(b))
    if len(a) != len(b):
        return math.inf, math.inf
    worst_abs = worst_rel = 0.0
    for u, v in zip(a, b):
        if u.shape != v.shape:
            return math.inf, math.inf
        u64, v64 = u.astype(np.float64), v.astype(np.float64)
        if not np.array_equal(np.isnan(u64), np.isnan(v64)):
            return math.inf, math.inf
        ok = ~np.isnan(u64)
        if ok.any():
            d = float(np.max(np.abs(u64[ok] - v64[ok])))
            scale = float(np.max(np.abs(v64[ok])))
            worst_abs = max(worst_abs, d)
            worst_rel = max(worst_rel, d / scale if scale > 0 else (0.0 if d == 0 else math.inf))
    return worst_abs, worst_rel



def _sampler(impl: Impl, number: int):
    def sample():
        t0 = time.perf_counter()
        for _ in range(number):
            impl.run()
        if impl.sync is not None:
            impl.sync()
        return (time.perf_counter() - t0) / number
    return sample


def measure_case(case: Case, rounds: int, block_s: float, naive_block_s: float) -> dict:
    checks = {}
    ref = None
    if case.reference in case.impls:
        r = case.impls[case.reference]
        ref = (r.result or r.run)()
    for name, impl in case.impls.items():
        if impl.remote is not None:
            worker, index = impl.remote
            checks[name] = tuple(worker.call("check", index))
            continue
        out = (impl.result or impl.run)()
        if impl.sync is not None:
            impl.sync()
        if ref is None:
            checks[name] = (None, None)
        else:
            checks[name] = output_diff(out, impl.ref_part(ref) if impl.ref_part else ref)
    samplers = {}
    numbers = {}
    for name, impl in case.impls.items():
        target = naive_block_s if name == "naive" else block_s
        if impl.remote is not None:
            worker, index = impl.remote
            numbers[name] = worker.call("calibrate", index, target)
            samplers[name] = (lambda w=worker, i=index, k=numbers[name]: w.call("sample", i, k))
            continue
        run = impl.run if impl.sync is None else (lambda impl=impl: (impl.run(), impl.sync()))
        numbers[name] = calibrate_block(run, target)
        samplers[name] = _sampler(impl, numbers[name])
    n_rounds = {name: (max(1, min(rounds, 3)) if name == "naive" else rounds)
                for name in samplers}
    # naive loops are slow: they join only the first rounds
    samples = {name: [] for name in samplers}
    for r in range(rounds):
        active = {n: s for n, s in samplers.items() if r < n_rounds[n]}
        for name, vals in common.interleaved(active, 1).items():
            samples[name] += vals
        # rotate the order between rounds, as common.interleaved does within its rounds
        samplers = dict(list(samplers.items())[1:] + list(samplers.items())[:1])
    impls = {}
    for name in IMPLS:
        if name not in case.impls:
            impls[name] = None
            continue
        st = common.summarize(samples[name])
        st["calls_per_block"] = numbers[name]
        st["max_abs_diff"], st["max_rel_diff"] = checks[name]
        impls[name] = st
    return {"op": case.op, "shape": case.shape, "impls": impls, "notes": case.notes}


def calibrate_block(run, target_s: float) -> int:
    return common.calibrate(run, target_s, max_number=20_000)


class TorchKernels:
    """The PyTorch cells of the benchmark, in a process of their own (``common.Worker``).

    PyTorch's OpenMP threads spin after every operation; in the same process as Numba's
    and OpenBLAS's threads they steal the cores the next minidl call needs (and the other
    way round), which on this 2-core machine made 2-thread timings meaningless. Here
    each side runs alone while the other waits on its pipe. The case list is built the
    same way (same seed) on both sides; the check against the row's reference output is
    computed here, next to torch's output.
    """

    def __init__(self, quick: bool):
        self.env = Env(use_torch=True, use_cupy=False)
        if self.env.torch is None:
            raise RuntimeError("PyTorch is not importable")
        self.cases = build_cases(self.env, quick)

    def names(self) -> list[tuple[str, str]]:
        return [(c.op, c.shape) for c in self.cases]

    def has_torch(self) -> list[bool]:
        return ["torch" in c.impls for c in self.cases]

    def set_threads(self, n: int) -> int:
        self.env.torch.set_num_threads(n)
        self.env.minidl.set_num_threads(n)
        return self.env.torch.get_num_threads()

    def check(self, index: int) -> tuple[float, float]:
        case = self.cases[index]
        r = case.impls[case.reference]
        ref = (r.result or r.run)()
        t = case.impls["torch"]
        return output_diff((t.result or t.run)(), t.ref_part(ref) if t.ref_part else ref)

    def calibrate(self, index: int, target_s: float) -> int:
        return calibrate_block(self.cases[index].impls["torch"].run, target_s)

    def sample(self, index: int, number: int) -> float:
        return _sampler(self.cases[index].impls["torch"], number)()
