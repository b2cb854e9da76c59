"""Helpers shared by the benchmark scripts: machine facts, timing, and result writers.

Timing follows three rules, so that a number from a shared, noisy machine still means
something:

- **Interleave.** Candidates that are compared are run in alternation (A B C, B C A, ...),
  round after round, so slow drift of the machine (another process starting, thermal
  state) hits every candidate alike instead of whichever happened to run last.
- **Blocks.** One sample is the mean over a block of calls long enough (a few ms or more)
  for the clock's resolution and per-call jitter not to matter.
- **Medians.** Each candidate's figure is the median over rounds, reported together with
  the number of rounds and the spread (min, max), never a single best or mean.

Writers put ``<name>.json`` (everything measured, plus the machine), ``<name>.md`` (the
tables) and ``<name>_*.png`` (bar charts) into ``benchmarks/results/`` or ``--out``.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
README = BENCH_DIR / "README.md"
REPO_ROOT = BENCH_DIR.parent


# -- command line -------------------------------------------------------------------------
def base_parser(description: str) -> argparse.ArgumentParser:
    """The options every benchmark takes: ``--quick`` and ``--out``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true",
                        help="tiny run lengths and shapes: proves the script works, "
                             "numbers mean nothing (used by the smoke test)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR,
                        help=f"directory for JSON/Markdown/PNG results (default {RESULTS_DIR})")
    parser.add_argument("--isa", choices=["host", "avx2"], default="host",
                        help="vector instructions the libraries may use: host (all this CPU "
                             "has) or avx2 (what an AVX2 machine runs: minidl's AVX2 GEMM, "
                             "OpenBLAS's and PyTorch's AVX2 kernels), to measure the AVX2 "
                             "route on an AVX-512 CPU")
    return parser


# What an AVX2 machine runs, told to each library on a CPU that has more (AVX-512): Numba
# compiles for Haswell (so minidl's kernels, its GEMM route included, are the AVX2 ones),
# OpenBLAS takes its Haswell kernels, PyTorch its AVX2 kernels (ATen, MKL, oneDNN).
ISA_ENV = {"avx2": {"NUMBA_CPU_NAME": "haswell", "OPENBLAS_CORETYPE": "Haswell",
                    "ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2",
                    "ONEDNN_MAX_CPU_ISA": "AVX2"}}
ISA_MARK = "MINIDL_BENCH_ISA"      # set in the process that runs under an emulated ISA


def parse_args(parser: argparse.ArgumentParser, argv, module: str):
    """``parser.parse_args(argv)``; with ``--isa avx2`` (and not yet under it), runs
    ``python -m module argv`` again in a fresh process with ``ISA_ENV["avx2"]`` set, and
    returns None: the caller returns that process's exit code, kept in ``parse_args.code``.

    Those settings are read when each library loads, hence a fresh process; the spawned
    framework workers inherit them."""
    args = parser.parse_args(argv)
    if args.isa == "host" or os.environ.get(ISA_MARK) == args.isa:
        return args
    env = dict(os.environ, **ISA_ENV[args.isa], **{ISA_MARK: args.isa})
    cmd = [sys.executable, "-m", module] + list(sys.argv[1:] if argv is None else argv)
    print(f"--isa {args.isa}: running again with "
          + " ".join(f"{k}={v}" for k, v in ISA_ENV[args.isa].items()), file=sys.stderr)
    parse_args.code = subprocess.run(cmd, env=env, cwd=REPO_ROOT).returncode
    return None


def writes_official_results(args) -> bool:
    """True when a full run writes to the committed results folder (and so to the README)."""
    return (not args.quick) and Path(args.out).resolve() == RESULTS_DIR.resolve()


# -- machine --------------------------------------------------------------------------------
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
            f"Numba {info.get('numba')}, PyTorch {info.get('torch')}, "
            f"minidl commit {info.get('minidl_commit')}, {info['date']}.")


# -- timing ---------------------------------------------------------------------------------
def time_block(fn: Callable[[], object], number: int) -> float:
    """Seconds per call, averaged over one block of ``number`` back-to-back calls."""
    t0 = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - t0) / number


def calibrate(fn: Callable[[], object], target_s: float, max_number: int = 100_000) -> int:
    """How many calls make a block last about ``target_s`` (after one warm-up call)."""
    fn()
    number = 1
    while True:
        t = time_block(fn, number) * number
        if t >= target_s or number >= max_number:
            break
        grow = target_s / t if t > 0 else 10.0
        number = min(max_number, max(number + 1, int(number * min(10.0, 1.2 * grow))))
    return number


# Pause before each sample of an interleaved comparison: PyTorch's OpenMP threads keep
# spinning ~9 ms after its last operation (measured on the development machine), and
# would otherwise take a core from whichever candidate's sample comes next.
SETTLE_S = 0.05


def interleaved(samplers: Mapping[str, Callable[[], float]], rounds: int,
                budget_s: float | None = None, min_rounds: int = 3,
                settle_s: float = 0.0) -> dict[str, list[float]]:
    """Run each sampler once per round, rotating the order each round.

    A sampler is a zero-argument callable that measures one block and returns its seconds
    (per call, per step, whatever the caller's unit is); returns ``{name: [samples]}``.
    With ``budget_s``, rounds stop early once that much wall time has passed and at least
    ``min_rounds`` are done (a loaded machine then costs fewer rounds, not hours); every
    candidate always gets the same number of rounds, and the caller reports the count.
    ``settle_s``: seconds of sleep before each sample (see ``SETTLE_S``).
    """
    names = list(samplers)
    samples: dict[str, list[float]] = {n: [] for n in names}
    t0 = time.perf_counter()
    for r in range(rounds):
        k = r % len(names) if names else 0
        for name in names[k:] + names[:k]:
            if settle_s > 0:
                time.sleep(settle_s)
            samples[name].append(float(samplers[name]()))
        if (budget_s is not None and r + 1 >= min_rounds
                and time.perf_counter() - t0 > budget_s):
            break
    return samples


def summarize(samples: Sequence[float]) -> dict:
    """Median, spread and count of a list of timings (seconds)."""
    xs = [float(x) for x in samples if x is not None and math.isfinite(x)]
    if not xs:
        return {"median": None, "min": None, "max": None, "runs": 0}
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs), "runs": len(xs)}


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


# -- worker processes ---------------------------------------------------------------------
def _serve(conn, factory, args) -> None:
    """Worker process body: build ``factory(*args)``, then run the methods the parent asks."""
    import traceback
    try:
        obj = factory(*args)
    except Exception as exc:  # reported to the parent, which raises it
        conn.send(("error", f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"))
        return
    conn.send(("ok", None))
    while True:
        cmd, cmd_args = conn.recv()
        if cmd == "quit":
            return
        try:
            conn.send(("ok", getattr(obj, cmd)(*cmd_args)))
        except Exception as exc:
            conn.send(("error", f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"))


class Worker:
    """An object built by ``factory(*args)`` in its own spawned process, driven over a pipe.

    Used to give each framework a process of its own: neither then pays for the other's
    thread pools (PyTorch's OpenMP threads spin after each operation; Numba's and
    OpenBLAS's have their own), and minidl runs without torch loaded. ``call(name, *a)``
    runs ``obj.name(*a)`` there and returns its (picklable) result; while one worker
    runs, the others wait on their pipes without using the CPU.
    """

    def __init__(self, factory, *args, name: str = "worker"):
        import multiprocessing as mp
        ctx = mp.get_context("spawn")
        self.name = name
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_serve, args=(child, factory, args), daemon=True)
        self.proc.start()
        status, msg = self.conn.recv()
        if status != "ok":
            self.close()
            raise RuntimeError(f"{name} failed to start: {msg}")

    def call(self, cmd: str, *args):
        self.conn.send((cmd, args))
        status, result = self.conn.recv()
        if status != "ok":
            raise RuntimeError(f"{self.name}, {cmd}{args}: {result}")
        return result

    def close(self) -> None:
        try:
            self.conn.send(("quit", ()))
        except (OSError, BrokenPipeError):
            pass
        self.proc.join(timeout=30)
        if self.proc.is_alive():
            self.proc.terminate()


# -- formatting -----------------------------------------------------------------------------
def fmt_time(seconds: float | None) -> str:
    """A duration with a unit that keeps 3 significant figures (ns .. s)."""
    if seconds is None:
        return "—"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6), ("ns", 1e-9)):
        if seconds >= scale or unit == "ns":
            v = seconds / scale
            return f"{v:.3g} {unit}" if v < 100 else f"{v:.0f} {unit}"
    return f"{seconds} s"


def fmt_num(x: float | None, digits: int = 3) -> str:
    if x is None:
        return "—"
    if x == 0:
        return "0"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.{digits}g}"


def fmt_sci(x: float | None) -> str:
    if x is None:
        return "—"
    if x == 0:
        return "0"
    return f"{x:.2e}"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub-flavoured Markdown table; cells are converted with ``str``."""
    def clean(cell):
        return str(cell).replace("|", "\\|").replace("\n", " ")
    lines = ["| " + " | ".join(clean(h) for h in headers) + " |",
             "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(clean(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


# -- writers --------------------------------------------------------------------------------
def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_json(out_dir: Path, name: str, payload: dict) -> Path:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.json"
    path.write_text(json.dumps(_jsonable(payload), indent=2, allow_nan=False) + "\n")
    return path


def write_markdown(out_dir: Path, name: str, text: str) -> Path:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.md"
    path.write_text(text.rstrip() + "\n")
    return path


def bar_chart(path: Path, title: str, groups: Sequence[str],
              series: Mapping[str, Sequence[float | None]], ylabel: str,
              log: bool = False, hline: float | None = None,
              hline_label: str | None = None) -> Path:
    """Grouped bar chart: one group per entry of ``groups``, one bar per series.

    Missing values (None) leave a gap. ``hline`` draws a reference line (e.g. a target ratio).
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_series = max(1, len(series))
    width = 0.8 / n_series
    fig_w = max(6.0, 0.9 * len(groups) * max(1.0, n_series / 2.5) + 2)
    fig, ax = plt.subplots(figsize=(min(fig_w, 18.0), 4.5))
    x = np.arange(len(groups))
    for i, (label, values) in enumerate(series.items()):
        vals = [np.nan if v is None else float(v) for v in values]
        ax.bar(x - 0.4 + width * (i + 0.5), vals, width, label=label)
    if hline is not None:
        ax.axhline(hline, color="k", linestyle="--", linewidth=1, label=hline_label)
    ax.set_xticks(x)
    ax.set_xticklabels(groups, rotation=25, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    if log:
        ax.set_yscale("log")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return save_figure(fig, path)


def save_figure(fig, path) -> Path:
    """Lay out ``fig``, write it to ``path`` (PNG, 110 dpi; the folder is made if missing)
    and close it; the path."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def update_readme(section: str, markdown: str) -> bool:
    """Replace the README block between ``<!-- results:SECTION:begin/end -->`` markers.

    Returns False (and changes nothing) when the README or its markers are missing.
    """
    if not README.exists():
        return False
    text = README.read_text()
    begin, end = f"<!-- results:{section}:begin -->", f"<!-- results:{section}:end -->"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    if not pattern.search(text):
        return False
    # the README's result sections are level-3 headings: nest the report's headings below
    body = re.sub(r"(?m)^(#{1,4}) ", lambda m: "#" * (len(m.group(1)) + 2) + " ",
                  markdown.strip())
    new = pattern.sub(lambda _m: f"{begin}\n{body}\n{end}", text)
    README.write_text(new)
    return True


def finish(args, name: str, payload: dict, markdown: str,
           readme_markdown: str | None = None) -> list[Path]:
    """Write ``name``.json/.md into ``args.out``; refresh the README on full official runs."""
    paths = [write_json(args.out, name, payload), write_markdown(args.out, name, markdown)]
    if writes_official_results(args):
        if readme_markdown is None:
            # the README has its own headings: drop the report's title line
            readme_markdown = re.sub(r"\A# [^\n]*\n+", "", markdown)
        update_readme(name, readme_markdown)
    for p in paths:
        print(f"wrote {p}", file=sys.stderr)
    return paths


# -- the lab's models (issue 5's table), written once for minidl.nn and torch.nn alike ----
def _sequence_glue(nn):
    """``(ImageToSequence, LastHidden)``: minidl's modules, or for torch.nn two small modules
    doing what a torch model's ``forward`` would (``x.view(N, T, -1)``; ``h_n[-1]``)."""
    if hasattr(nn, "ImageToSequence"):
        return nn.ImageToSequence, nn.LastHidden

    class ImageToSequence(nn.Module):
        def __init__(self, seq_len):
            super().__init__()
            self.seq_len = seq_len

        def forward(self, x):
            return x.reshape(x.shape[0], self.seq_len, -1)

    class LastHidden(nn.Module):
        def __init__(self, rnn):
            super().__init__()
            self.rnn = rnn

        def forward(self, x):
            _, state = self.rnn(x)
            h_n = state[0] if isinstance(state, tuple) else state    # LSTM: (h_n, c_n)
            return h_n[-1]

    return ImageToSequence, LastHidden


def build_model(nn, name: str):
    """Build model ``name`` from ``nn`` (``minidl.nn`` or ``torch.nn``: same names and args).

    The one builder of every benchmark's models (training, coldstart, threading, accuracy,
    parity, hypergradient): ``MODELS`` lists the training benchmark's, plus
    ``cnn_2conv_narrow`` (8 and 16 filters, the parity table's training run)."""
    if name == "lab_mlp_256":
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Dropout(0.3),
                             nn.Linear(256, 10))
    if name == "lab_mlp_64":
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 10))
    if name == "mlp_3layer":
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(),
                             nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(),
                             nn.Linear(64, 10))
    if name == "cnn_2conv":
        return nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Flatten(), nn.Linear(3136, 128), nn.ReLU(), nn.Dropout(0.5),
                             nn.Linear(128, 10))
    if name == "cnn_small":
        return nn.Sequential(nn.Conv2d(1, 16, 5, padding=2), nn.ReLU(), nn.AvgPool2d(2),
                             nn.Flatten(), nn.Linear(3136, 10))
    if name == "cnn_2conv_bn":      # conv -> BN -> ReLU; a conv before BN needs no bias
        return nn.Sequential(nn.Conv2d(1, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32),
                             nn.ReLU(), nn.MaxPool2d(2),
                             nn.Conv2d(32, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64),
                             nn.ReLU(), nn.MaxPool2d(2),
                             nn.Flatten(), nn.Linear(3136, 128), nn.ReLU(), nn.Dropout(0.5),
                             nn.Linear(128, 10))
    if name == "cnn_2conv_narrow":  # the parity table's training run: a quick 2-conv CNN
        return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Flatten(), nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, 10))
    if name in ("lstm_128", "gru_128"):     # each image row one step, the last hidden state
        to_sequence, last_hidden = _sequence_glue(nn)
        cell = nn.LSTM if name == "lstm_128" else nn.GRU
        return nn.Sequential(to_sequence(28), last_hidden(cell(28, 128, batch_first=True)),
                             nn.Linear(128, 10))
    raise ValueError(f"build_model: unknown model {name!r}; expected one of "
                     f"{list(MODELS) + ['cnn_2conv_narrow']}")


# name -> (description, training batch size, target ratio for the training step, issue's
# PyTorch ms/step reference measured on this machine with 2 threads)
MODELS = {
    "lab_mlp_256": ("lab MLP 784-256-10, dropout 0.3", 64, 0.5, 2.1),
    "lab_mlp_64": ("lab MLP 784-64-10", 128, None, 1.3),
    "mlp_3layer": ("MLP 784-256-128-64-10", 64, 0.6, 2.4),
    "cnn_2conv": ("CNN conv3x3 1-32, pool, conv3x3 32-64, pool, FC 3136-128-10, dropout 0.5",
                  64, 0.7, 23.7),
    "cnn_small": ("small CNN conv5x5 1-16 pad2, avgpool2, FC 3136-10", 128, 0.7, 9.5),
    # issue 14: the 2-conv CNN with batch normalization; issue 13: recurrent classifiers
    "cnn_2conv_bn": ("2-conv CNN with BatchNorm2d after each conv (conv -> BN -> ReLU)", 64,
                     0.8, None),
    "lstm_128": ("LSTM 28 -> 128 over 28 rows, last hidden state, FC 10", 64, 1.0, None),
    "gru_128": ("GRU 28 -> 128 over 28 rows, last hidden state, FC 10", 64, 1.0, None),
}
# the models a plain run measures (issue 5's five); the others on request (--models)
DEFAULT_MODELS = ["lab_mlp_256", "lab_mlp_64", "mlp_3layer", "cnn_2conv", "cnn_small"]
INFERENCE_TARGET = 1.0


def synthetic_fashion_mnist(n: int, seed: int = 0, dtype=np.float32):
    """Random arrays of Fashion-MNIST's shape: x (n,1,28,28) roughly normalised, y in 0..9."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 1, 28, 28), dtype=np.float64).astype(dtype)
    y = rng.integers(0, 10, size=n, dtype=np.int64)
    return x, y
