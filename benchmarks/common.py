"""Helpers shared by the benchmark scripts: the command line, timing, and result writers.

(The machine's facts are in ``benchmarks.machine``, the models in ``benchmarks.zoo``.)

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
import json
import math
import os
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
