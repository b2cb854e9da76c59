"""Peak memory of a training epoch, each framework in a fresh process.

``measure_memory(framework, model, batch, threads, images)`` runs ``memory_worker`` in a
new interpreter (``python -m benchmarks.memory FRAMEWORK MODEL BATCH THREADS IMAGES``,
which prints its result as one JSON line), so neither framework's imports, caches or
allocator state count against the other.  The training benchmark
(``benchmarks.training``) reports it.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

from . import common, zoo

def _read_status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    """Reset the kernel's resident-set high-water mark (VmHWM) of this process (Linux)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def memory_worker(framework: str, model_name: str, batch: int, threads: int,
                  n_images: int) -> dict:
    """Peak resident memory of one training epoch, in this (fresh) process.

    Baseline: after imports, data, model and optimizer exist and one warm-up step on a
    batch of 2 has run (so code that is loaded once — Numba's cached machine code,
    oneDNN's kernels — and the optimizer state are in the baseline). Then the kernel's
    peak-RSS counter is reset (``/proc/self/clear_refs``) and the epoch runs; the epoch's
    peak is the counter at the end. Both the growth over the baseline (the working memory
    of training) and the absolute peak of the process are reported. RSS counts memory
    allocated by every library (NumPy, MKL/OpenBLAS, PyTorch's allocator), unlike
    ``tracemalloc``, which sees only Python allocations.
    """
    x, y = zoo.synthetic_fashion_mnist(n_images, seed=0)
    if framework == "minidl":
        import minidl
        minidl.performance.apply(num_threads=threads)
        minidl.manual_seed(0)
        model = zoo.build_model(minidl.nn, model_name)
        opt = minidl.optim.Adam(model.parameters(), lr=1e-3)
        crit = minidl.nn.CrossEntropyLoss()

        def step(xb, yb):
            opt.zero_grad()
            loss = crit(model(xb), yb)
            model.backward(crit.backward())
            opt.step()
            return loss
    else:
        import torch
        torch.set_num_threads(threads)
        torch.manual_seed(0)
        model = zoo.build_model(torch.nn, model_name)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        crit = torch.nn.CrossEntropyLoss()
        x, y = torch.from_numpy(x), torch.from_numpy(y)

        def step(xb, yb):
            opt.zero_grad()
            out = crit(model(xb), yb)
            out.backward()
            opt.step()
            return out.item()
    model.train()
    step(x[:2], y[:2])
    setup_peak_kb = _read_status_kb("VmHWM")
    base_kb = _read_status_kb("VmRSS")
    reset = _reset_peak_rss()
    t0 = time.perf_counter()
    steps = 0
    for i in range(0, n_images - batch + 1, batch):
        loss = step(x[i:i + batch], y[i:i + batch])
        steps += 1
    seconds = time.perf_counter() - t0
    peak_kb = _read_status_kb("VmHWM")
    maxrss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "framework": framework, "model": model_name, "batch": batch, "threads": threads,
        "images": steps * batch, "steps": steps, "seconds": seconds, "final_loss": float(loss),
        "baseline_rss_mb": base_kb / 1024 if base_kb else None,
        "setup_peak_mb": setup_peak_kb / 1024 if setup_peak_kb else None,
        "epoch_peak_mb": peak_kb / 1024 if (peak_kb and reset) else None,
        "epoch_growth_mb": (peak_kb - base_kb) / 1024 if (peak_kb and base_kb and reset) else None,
        "process_peak_mb": maxrss_kb / 1024,
        "hwm_reset": reset,
    }


def measure_memory(framework: str, model_name: str, batch: int, threads: int,
                   n_images: int, timeout: float = 900) -> dict:
    """Run ``memory_worker`` in a fresh interpreter (``python -m benchmarks.memory``) and
    return its result."""
    cmd = [sys.executable, "-m", "benchmarks.memory", framework, model_name, str(batch),
           str(threads), str(n_images)]
    proc = subprocess.run(cmd, cwd=str(common.REPO_ROOT), capture_output=True, text=True,
                          timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"memory worker {framework}/{model_name} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="one framework's epoch peak memory, in "
                                     "this process (benchmarks.training runs it)")
    parser.add_argument("framework", choices=["minidl", "torch"])
    parser.add_argument("model", choices=sorted(zoo.MODELS))
    parser.add_argument("batch", type=int)
    parser.add_argument("threads", type=int)
    parser.add_argument("images", type=int)
    args = parser.parse_args(argv)
    print(json.dumps(memory_worker(args.framework, args.model, args.batch, args.threads,
                                   args.images)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
