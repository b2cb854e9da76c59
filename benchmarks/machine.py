"""The machine a benchmark ran on: CPU, vector extensions, libraries, threads, load.

Every benchmark's results carry ``machine_info()`` (and its one-line ``machine_markdown``):
a speed figure names its CPU and vector extensions, and ``load_note`` says when other
processes were busy during the run (``busy_processes``).
"""
from __future__ import annotations

import datetime as _dt
import os
import platform
import subprocess

import numpy as np

from .common import ISA_MARK, REPO_ROOT

def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(dist_name: str) -> str | None:
    """An installed distribution's version, read from its metadata (nothing is imported)."""
    from importlib import metadata
    try:
        return metadata.version(dist_name)
    except metadata.PackageNotFoundError:
        return None


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=10)
        if out.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(REPO_ROOT), "status", "--porcelain",
                                "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10)
        return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def busy_processes(limit: int = 8) -> list[str]:
    """Other processes using CPU right now (``ps``), to say how loaded the machine was."""
    try:
        out = subprocess.run(["ps", "-eo", "pid,pcpu,comm", "--sort=-pcpu", "--no-headers"],
                             capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    me = os.getpid()
    rows = []
    for line in out.splitlines():
        parts = line.split(None, 2)
        if len(parts) == 3 and int(parts[0]) != me and float(parts[1]) >= 5.0:
            rows.append(f"{parts[2]} ({parts[1]}% cpu)")
    return rows[:limit]


_VECTOR_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl",
                 "avx512_vnni", "amx_tile", "asimd", "sve")


def cpu_vector_flags() -> list[str]:
    """The CPU's vector extensions that matter here, from ``/proc/cpuinfo`` (Linux)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    have = set(line.split(":", 1)[1].split())
                    return [flag for flag in _VECTOR_FLAGS if flag in have]
    except OSError:
        pass
    return []


def torch_available() -> bool:
    """Whether PyTorch can be imported here (found, not imported: that takes seconds)."""
    import importlib.util  # noqa: PLC0415
    try:
        return importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):
        return False


def minidl_route() -> str:
    """The vector route of minidl's GEMM micro-kernels in this process (imports Numba)."""
    from minidl.kernels import gemm
    return gemm.isa() or "none (NumPy's BLAS)"


def machine_info(with_torch: bool = True) -> dict:
    """Facts about the machine and software a result was measured on: the CPU and its
    vector extensions, the ISA the libraries were allowed (``--isa``), minidl's GEMM
    route, the BLAS with its core type and threads, and the thread settings."""
    info = {
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "host": platform.node(),
        "cpu": _cpu_model(),
        "cpu_vector_flags": cpu_vector_flags(),
        "isa": os.environ.get(ISA_MARK, "host"),
        "minidl_gemm_route": minidl_route(),
        "thread_env": {k: os.environ.get(k) for k in (
            "MINIDL_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
            "NUMBA_NUM_THREADS", "NUMBA_THREADING_LAYER", "GOMP_SPINCOUNT", "OMP_WAIT_POLICY",
            "OPENBLAS_CORETYPE", "NUMBA_CPU_NAME", "ATEN_CPU_CAPABILITY") if os.environ.get(k)},
        "logical_cpus": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "busy_processes": busy_processes(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "numpy": np.__version__,
        "numba": _version("numba"),
        "minidl_commit": _git_commit(),
    }
    if with_torch:
        info["torch"] = _version("torch")
    try:
        from threadpoolctl import threadpool_info
        info["blas"] = [{k: d.get(k) for k in ("internal_api", "version", "num_threads",
                                                "threading_layer", "architecture")}
                        for d in threadpool_info() if d.get("user_api") == "blas"]
    except ImportError:
        info["blas"] = None
    return info


def load_note(info_start: dict, info_end: dict | None = None) -> str:
    """One sentence saying whether the machine was busy while the numbers were taken."""
    cpus = info_start.get("cpus_usable") or 1
    loads = [info_start["load_average"][0]]
    if info_end is not None:
        loads.append(info_end["load_average"][0])
    peak = max(loads)
    text = (f"1-minute load average {' -> '.join(f'{x:.2f}' for x in loads)} "
            f"on {cpus} usable cores")
    others = list(info_start.get("busy_processes") or []) + \
        list((info_end or {}).get("busy_processes") or [])
    if peak > 0.5 * cpus and not others and "busy_processes" in info_start:
        text += (", which counts this benchmark's own recent work: no other process was "
                 "using the CPU at the start or the end. The machine is a virtual machine "
                 "(KVM) whose speed drifts over minutes, so absolute times are noisy (the "
                 "interleaved ratios are the robust figures)")
    elif peak > 0.5 * cpus:
        text += (": **the machine was loaded by other processes while this ran, "
                 "so absolute times are noisy** (the interleaved ratios are the robust "
                 "figures). Multi-thread timings suffer most: a parallel region waits for "
                 "its slowest thread, and with other processes on the cores that can be a "
                 "scheduler time slice (milliseconds) per operation, for either framework")
    else:
        text += ": the machine was quiet"
    return text + "."


def machine_markdown(info: dict) -> str:
    blas = info.get("blas") or []
    blas_txt = ", ".join(f"{b.get('internal_api')} {b.get('version')} core type "
                         f"{b.get('architecture')}, {b.get('num_threads')} threads"
                         for b in blas) or "?"
    flags = info.get("cpu_vector_flags")
    isa = info.get("isa", "host")
    env = info.get("thread_env") or {}
    return (f"Machine: {info['cpu']} ({' '.join(flags) if flags else 'vector flags unknown'}), "
            + ("all its vector instructions allowed" if isa == "host" else
               f"**libraries limited to {isa}** (`--isa {isa}`)")
            + f", minidl GEMM route {info.get('minidl_gemm_route', '?')}, "
            + (f"environment {' '.join(f'{k}={v}' for k, v in env.items())}, " if env else "")
            + f"{info['cpus_usable']} usable cores, "
            f"Python {info['python']}, NumPy {info['numpy']} ({blas_txt}), "
            f"Numba {info.get('numba')}, "
            + (f"PyTorch {info['torch']}, " if info.get("torch") else "")
            + f"minidl commit {info.get('minidl_commit')}, {info['date']}.")
