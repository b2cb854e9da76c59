"""End-to-end training and inference speed: minidl against PyTorch on the lab's five models.

    python -m benchmarks.training [--quick] [--threads 1 2] [--models ...] [--out DIR]

What is measured (issue 5), for each model of ``zoo.MODELS`` and each thread count:

- **training step**: float32, Adam (lr 1e-3), cross-entropy, one optimizer step per batch,
  batches sliced in order from in-memory arrays of Fashion-MNIST's shape (synthetic data,
  so no data set is needed). ms/step and images/s; the time ratio minidl/PyTorch is
  compared with the issue's target.
- **inference**: eval mode, one pass over 10,000 images in batches of 1000 (minidl under
  ``minidl.no_grad``, torch under
  ``inference_mode``); ratio target <= 1.0 for every model.
- **peak memory** of CNN training at batch 128 (a full epoch of the small CNN, 100 steps of
  the 2-conv CNN), each framework in a fresh process (``benchmarks.memory``).
- **cold start**: see ``benchmarks.coldstart`` (run from here too unless ``--no-coldstart``).

Fairness. Each framework runs in its own worker process (spawned once), so neither pays for
the other's threads or libraries (PyTorch's OpenMP pool, Numba's), and minidl runs without
torch loaded, as a user without PyTorch would. The parent alternates the two workers block
by block (``common.interleaved``): one sample is the mean step time over a block of about
``--block-seconds``; the figure is the median over ``--rounds`` rounds.  Before each sample
the parent sleeps ``common.SETTLE_S`` (50 ms): PyTorch's OpenMP threads spin ~9 ms after its
last operation, and a one-pass inference sample of minidl right after PyTorch's (4 ms on 2
threads) ran 2-3x slower while they did. Threads are set with
``minidl.set_num_threads`` and ``torch.set_num_threads``.

Where a target is missed, the report gives the gap and a cProfile of the minidl step.
"""
from __future__ import annotations

import cProfile
import io
import math
import os
import pstats
import sys
import time
from pathlib import Path

import numpy as np

from . import common, machine, memory, zoo
from .machine import torch_available
from .zoo import MODELS, INFERENCE_TARGET

INFER_N = 10_000
INFER_BATCH = 1000
# images in the peak-memory run: a full epoch where it is quick; the peak is reached in the
# first steps and a leak would show as growth within a few hundred steps
MEMORY_IMAGES = {"cnn_small": 60_000, "cnn_2conv": 12_800}


# ===================================================================== worker processes
class _Runner:
    """One framework's model, optimizer and data, driven by the parent through a pipe."""

    def __init__(self, framework: str):
        self.framework = framework
        if framework == "minidl":
            import minidl
            self.lib = minidl
        elif framework == "torch":
            import torch
            self.lib = torch
        else:
            raise ValueError(f"training: unknown framework {framework!r}")

    def setup(self, model_name: str, threads: int, n_train: int, infer_n: int = INFER_N,
              infer_batch: int = INFER_BATCH, seed: int = 0) -> dict:
        lib = self.lib
        self.batch = MODELS[model_name][1]
        self.infer_n, self.infer_batch = infer_n, infer_batch
        x, y = zoo.synthetic_fashion_mnist(n_train, seed=seed)
        xi, yi = zoo.synthetic_fashion_mnist(infer_n, seed=seed + 1)
        if self.framework == "minidl":
            lib.performance.apply(num_threads=threads)   # as fit does: malloc, threads
            lib.manual_seed(seed)
            self.model = zoo.build_model(lib.nn, model_name)
            self.opt = lib.optim.Adam(self.model.parameters(), lr=1e-3)
            self.crit = lib.nn.CrossEntropyLoss()
            self.x, self.y, self.xi = x, y, xi
            actual = lib.get_num_threads()
        else:
            torch = lib
            torch.set_num_threads(threads)
            torch.manual_seed(seed)
            self.model = zoo.build_model(torch.nn, model_name)
            self.opt = torch.optim.Adam(self.model.parameters(), lr=1e-3)
            self.crit = torch.nn.CrossEntropyLoss()
            self.x, self.y = torch.from_numpy(x), torch.from_numpy(y)
            self.xi = torch.from_numpy(xi)
            actual = torch.get_num_threads()
        self.pos = 0
        self.n_train = n_train
        self.last_loss = float("nan")
        # warm-up: Numba loads its cache / oneDNN picks kernels; buffers reach full size
        self.train(3)
        self.infer(1, n=infer_batch)
        return {"threads": actual,
                "parameters": int(sum(int(np.prod(p.shape)) for p in self.model.parameters()))}

    def _next_batch(self):
        b = self.batch
        if self.pos + b > self.n_train:
            self.pos = 0
        i = self.pos
        self.pos += b
        return self.x[i:i + b], self.y[i:i + b]

    def train(self, steps: int) -> float:
        """Seconds per training step, averaged over ``steps`` steps."""
        model, opt, crit = self.model, self.opt, self.crit
        model.train()
        loss = float("nan")
        if self.framework == "minidl":
            # as minidl.train.fit does: the input is data, so (like torch, whose input
            # does not require a gradient) the first layer's dL/dx is not computed
            model.needs_input_grad = False
            t0 = time.perf_counter()
            for _ in range(steps):
                xb, yb = self._next_batch()
                opt.zero_grad()
                loss = crit(model(xb), yb)
                model.backward(crit.backward())
                opt.step()
            dt = time.perf_counter() - t0
        else:
            t0 = time.perf_counter()
            for _ in range(steps):
                xb, yb = self._next_batch()
                opt.zero_grad()
                out = crit(model(xb), yb)
                out.backward()
                opt.step()
                loss = out.item()   # minidl's loss is a Python float: same work here
            dt = time.perf_counter() - t0
        self.last_loss = float(loss)
        if not math.isfinite(self.last_loss):
            raise RuntimeError(f"{self.framework}: non-finite training loss {loss}")
        return dt / steps

    def infer(self, passes: int, n: int | None = None) -> float:
        """Seconds for one pass over the inference images (10k) in batches of 1000."""
        model = self.model
        n = self.infer_n if n is None else n
        nb = self.infer_batch
        model.eval()
        if self.framework == "minidl":
            t0 = time.perf_counter()
            with self.lib.no_grad():          # as torch.inference_mode below
                for _ in range(passes):
                    for i in range(0, n, nb):
                        out = model(self.xi[i:i + nb])
            dt = time.perf_counter() - t0
        else:
            torch = self.lib
            t0 = time.perf_counter()
            with torch.inference_mode():
                for _ in range(passes):
                    for i in range(0, n, nb):
                        out = model(self.xi[i:i + nb])
            dt = time.perf_counter() - t0
        if tuple(out.shape) != (min(nb, n), 10):
            raise RuntimeError(f"{self.framework}: inference output shape {tuple(out.shape)}")
        model.train()
        return dt / passes

    def profile(self, what: str, n: int, top: int = 14) -> str:
        """cProfile of ``n`` training steps (or inference passes): top entries by own time."""
        prof = cProfile.Profile()
        prof.enable()
        if what == "train":
            self.train(n)
        else:
            self.infer(n)
        prof.disable()
        buf = io.StringIO()
        stats = pstats.Stats(prof, stream=buf)
        stats.strip_dirs().sort_stats("tottime").print_stats(top)
        lines = [ln for ln in buf.getvalue().splitlines() if ln.strip()]
        # keep the header line with the total and the table itself
        keep = [ln for ln in lines if "function calls" in ln]
        start = next((i for i, ln in enumerate(lines) if ln.lstrip().startswith("ncalls")), None)
        if start is not None:
            keep += lines[start:]
        return "\n".join(keep)


def Worker(framework: str) -> common.Worker:
    """A ``_Runner`` for ``framework`` in its own spawned process."""
    return common.Worker(_Runner, framework, name=f"{framework} worker")


# ===================================================================== the benchmark
def _verdict(r: float | None, target: float | None) -> str:
    if r is None:
        return "—"
    if target is None:
        return "(no target)"
    if r <= target:
        return f"met (≤ {target})"
    over, cut = r / target - 1, 1 - target / r
    fmt = ".2%" if over < 0.01 else ".1%" if over < 0.1 else ".0%"
    return f"**missed** by {over:{fmt}} (needs {cut:{fmt}} less time)"


def run_speed(args, workers: dict, log) -> tuple[list[dict], list[dict]]:
    train_rows, infer_rows = [], []
    frameworks = list(workers)
    for threads in args.threads:
        for name in args.models:
            desc, batch, target, ref_ms = MODELS[name]
            setup = {fw: workers[fw].call("setup", name, threads, args.n_train, args.infer_n,
                                          args.infer_batch)
                     for fw in frameworks}
            # a block per framework lasts about block_seconds: calibrate from a short probe
            # (a second probe of ~0.1 s: the first steps after setup run slower, and a block
            # sized from them alone came out at a fraction of block_seconds)
            probe = {fw: workers[fw].call("train", 3) for fw in frameworks}
            probe = {fw: workers[fw].call("train", max(3, int(0.1 / max(probe[fw], 1e-6))))
                     for fw in frameworks}
            steps = {fw: max(2, int(args.block_seconds / max(probe[fw], 1e-6)))
                     for fw in frameworks}
            samples = common.interleaved(
                {fw: (lambda fw=fw: workers[fw].call("train", steps[fw])) for fw in frameworks},
                args.rounds, budget_s=args.budget_seconds, settle_s=common.SETTLE_S)
            stats = {fw: common.summarize(samples[fw]) for fw in frameworks}
            row = {"model": name, "description": desc, "batch": batch, "threads": threads,
                   "target": target, "issue_torch_ms": ref_ms,
                   "steps_per_block": steps, "setup": setup}
            for fw in frameworks:
                row[fw] = stats[fw]
                row[fw]["samples"] = samples[fw]
                row[fw]["img_per_s"] = batch / stats[fw]["median"]
            row["ratio"] = common.ratio(stats["minidl"]["median"],
                                        stats.get("torch", {}).get("median"))
            row["met"] = (None if row["ratio"] is None or target is None
                          else row["ratio"] <= target)
            train_rows.append(row)
            log(f"train  {name:12s} t={threads} " + "  ".join(
                f"{fw} {stats[fw]['median'] * 1e3:7.2f} ms" for fw in frameworks)
                + (f"  ratio {row['ratio']:.2f}" if row["ratio"] else ""))

            isamples = common.interleaved(
                {fw: (lambda fw=fw: workers[fw].call("infer", 1)) for fw in frameworks},
                args.infer_rounds, budget_s=args.budget_seconds, settle_s=common.SETTLE_S)
            istats = {fw: common.summarize(isamples[fw]) for fw in frameworks}
            irow = {"model": name, "threads": threads, "target": INFERENCE_TARGET,
                    "images": args.infer_n, "batch": args.infer_batch}
            for fw in frameworks:
                irow[fw] = istats[fw]
                irow[fw]["samples"] = isamples[fw]
                irow[fw]["img_per_s"] = args.infer_n / istats[fw]["median"]
            irow["ratio"] = common.ratio(istats["minidl"]["median"],
                                         istats.get("torch", {}).get("median"))
            irow["met"] = None if irow["ratio"] is None else irow["ratio"] <= INFERENCE_TARGET
            infer_rows.append(irow)
            log(f"infer  {name:12s} t={threads} " + "  ".join(
                f"{fw} {istats[fw]['median'] * 1e3:7.1f} ms" for fw in frameworks)
                + (f"  ratio {irow['ratio']:.2f}" if irow["ratio"] else ""))

            # profile the minidl step where a target is missed, while it is set up
            if row["met"] is False:
                row["profile"] = workers["minidl"].call(
                    "profile", "train", 1 if args.quick else max(steps["minidl"], 5))
            if irow["met"] is False:
                irow["profile"] = workers["minidl"].call("profile", "infer", 1)
    return train_rows, infer_rows


def _ms(s):
    return common.fmt_num(None if s is None else s * 1e3)


def render(args, info, info_end, train_rows, infer_rows, mem_rows, cold) -> tuple[str, str]:
    has_torch = any("torch" in r for r in train_rows)
    out = ["# Training and inference speed: minidl vs PyTorch", "",
           machine.machine_markdown(info), "", machine.load_note(info, info_end), "",
           f"Synthetic float32 data of Fashion-MNIST's shape; Adam, cross-entropy; batches "
           f"sliced from in-memory arrays. Each framework in its own process; blocks of "
           f"~{args.block_seconds:g} s alternated between the two, median of up to "
           f"{args.rounds} rounds (training) and {args.infer_rounds} rounds (inference), at "
           f"least 3 (fewer than the maximum when one measurement passed "
           f"{args.budget_seconds} s: the *runs* columns give the counts). "
           f"Ratio = minidl time / PyTorch time (lower is better for minidl).", ""]
    out += ["## Training step", ""]
    rows = []
    for r in train_rows:
        t = r.get("torch", {})
        rows.append([r["model"], r["batch"], r["threads"],
                     _ms(r["minidl"]["median"]), _ms(t.get("median")),
                     common.fmt_num(r["minidl"]["img_per_s"]), common.fmt_num(t.get("img_per_s")),
                     common.fmt_num(r["ratio"], 2), _verdict(r["ratio"], r["target"]),
                     f"{r['minidl']['runs']}×{r['steps_per_block']['minidl']}"
                     + (f" / {t['runs']}×{r['steps_per_block']['torch']}" if t else ""),
                     common.fmt_num(r["issue_torch_ms"])])
    out.append(common.markdown_table(
        ["model", "batch", "threads", "minidl ms/step", "torch ms/step", "minidl img/s",
         "torch img/s", "ratio", "target", "runs×steps (minidl / torch)",
         "issue's torch ms (2 thr)"], rows))
    out += ["", f"## Inference over {args.infer_n:,} images (batch {args.infer_batch}, "
                f"eval mode)", ""]
    rows = []
    for r in infer_rows:
        t = r.get("torch", {})
        rows.append([r["model"], r["threads"], _ms(r["minidl"]["median"]), _ms(t.get("median")),
                     common.fmt_num(r["minidl"]["img_per_s"]), common.fmt_num(t.get("img_per_s")),
                     common.fmt_num(r["ratio"], 2), _verdict(r["ratio"], r["target"]),
                     r["minidl"]["runs"]])
    out.append(common.markdown_table(
        ["model", "threads", "minidl ms/pass", "torch ms/pass", "minidl img/s", "torch img/s",
         "ratio", "target", "runs"], rows))
    if mem_rows:
        out += ["", "## Peak memory of CNN training at batch 128", "",
                "Each framework in a fresh process. *Epoch growth* is the peak resident set "
                "during the epoch minus the resident set just before it (after imports, data, "
                "model, optimizer and one warm-up step on 2 images); *process peak* is the "
                "whole process's maximum RSS, interpreter and libraries included. The "
                "run's synthetic images are in memory in both (part of the baseline). "
                "*images*: a full epoch (60,000) where it is quick, else 100 steps: the "
                "peak is reached in the first steps and a leak would show as growth.", ""]
        rows = []
        for m in mem_rows:
            rows.append([m["model"], m["framework"], m["threads"], m["images"],
                         common.fmt_num(m["baseline_rss_mb"]), common.fmt_num(m["epoch_peak_mb"]),
                         common.fmt_num(m["epoch_growth_mb"]), common.fmt_num(m["process_peak_mb"]),
                         common.fmt_num(m["seconds"]), m.get("verdict", "")])
        out.append(common.markdown_table(
            ["model", "framework", "threads", "images", "RSS before epoch MB", "epoch peak MB",
             "epoch growth MB", "process peak MB", "epoch s", "target (growth ≤ torch)"], rows))
    if cold:
        from . import coldstart
        out += ["", coldstart.render_section(cold)]
    missed = [("training", r) for r in train_rows if r.get("met") is False] + \
             [("inference", r) for r in infer_rows if r.get("met") is False]
    if missed:
        out += ["", "## Missed targets and where minidl's time goes", ""]
        for kind, r in missed:
            out += [f"### {r['model']}, {kind}, {r['threads']} thread(s): ratio "
                    f"{r['ratio']:.3f} vs target {r['target']} — "
                    + _verdict(r["ratio"], r["target"]).replace("**", ""), ""]
            if r.get("profile"):
                out += ["cProfile of the minidl " + ("step" if kind == "training" else
                                                     "inference pass")
                        + " (top entries by own time; profiling adds overhead):", "",
                        "```", r["profile"], "```", ""]
    elif has_torch:
        out += ["", "All measured targets were met in this run."]
    md = "\n".join(out)
    # the README gets the tables and charts; the profiles stay in results/training.md
    cut = md.find("\n## Missed targets")
    readme = md if cut < 0 else (md[:cut].rstrip()
                                 + "\n\nMissed targets and the cProfile of each missed "
                                 "minidl step: [results/training.md](results/training.md).")
    readme += ("\n\n![training step](results/training_step.png)\n"
               "![ratios](results/training_ratio.png)")
    readme = readme.replace("# Training and inference speed: minidl vs PyTorch\n\n", "", 1)
    return md, readme


def charts(args, train_rows, infer_rows) -> list[Path]:
    paths = []
    if not train_rows:
        return paths
    groups = [f"{r['model']} t{r['threads']}" for r in train_rows]
    series = {"minidl": [r["minidl"]["median"] * 1e3 for r in train_rows]}
    if "torch" in train_rows[0]:
        series["PyTorch"] = [r["torch"]["median"] * 1e3 for r in train_rows]
    paths.append(common.bar_chart(Path(args.out) / "training_step.png",
                                  "Training step time (median, lower is better)", groups,
                                  series, "ms / step", log=True))
    igroups = [f"{r['model']} t{r['threads']}" for r in infer_rows]
    iseries = {"minidl": [r["minidl"]["median"] * 1e3 for r in infer_rows]}
    if "torch" in infer_rows[0]:
        iseries["PyTorch"] = [r["torch"]["median"] * 1e3 for r in infer_rows]
    paths.append(common.bar_chart(Path(args.out) / "training_inference.png",
                                  "Inference over 10k images, batch 1000 (lower is better)",
                                  igroups, iseries, "ms / 10k images", log=True))
    if "torch" in train_rows[0]:
        paths.append(common.bar_chart(
            Path(args.out) / "training_ratio.png",
            "Time ratio minidl / PyTorch (below 1: minidl faster)", groups,
            {"training step": [r["ratio"] for r in train_rows],
             "inference": [r["ratio"] for r in infer_rows]},
            "ratio", hline=1.0, hline_label="parity"))
    return paths


def main(argv=None) -> int:
    parser = common.base_parser(__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, nargs="+", default=None,
                        help="thread counts to measure (default: 1 2; --quick: 1)")
    parser.add_argument("--models", nargs="+", choices=list(MODELS),
                        default=list(zoo.DEFAULT_MODELS),
                        help="default: issue 5's five; also cnn_2conv_bn (issue 14), "
                             "lstm_128 and gru_128 (issue 13)")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved training rounds")
    parser.add_argument("--infer-rounds", type=int, default=None)
    parser.add_argument("--block-seconds", type=float, default=None)
    parser.add_argument("--budget-seconds", type=float, default=None,
                        help="after this long on one measurement, stop adding rounds once 3 "
                             "are done (default 25; a loaded machine gets fewer rounds)")
    parser.add_argument("--n-train", type=int, default=None,
                        help="synthetic training images kept in memory")
    parser.add_argument("--memory-models", nargs="*", default=None,
                        help="CNNs whose epoch peak memory is measured (default both)")
    parser.add_argument("--memory-images", type=int, default=None,
                        help="images in the memory run (default: a full epoch of 60000 for "
                             "cnn_small, 12800 = 100 steps for the slower cnn_2conv)")
    parser.add_argument("--no-coldstart", action="store_true")
    parser.add_argument("--no-torch", action="store_true", help="measure minidl alone")
    args = common.parse_args(parser, argv, "benchmarks.training")
    if args is None:          # ran again under --isa
        return common.parse_args.code

    q = args.quick
    args.threads = args.threads or ([1] if q else [1, 2])
    args.rounds = args.rounds or (2 if q else 7)
    args.infer_rounds = args.infer_rounds or (2 if q else 5)
    args.block_seconds = args.block_seconds or (0.02 if q else 0.4)
    args.budget_seconds = args.budget_seconds or (None if q else 25.0)
    args.n_train = args.n_train or (2048 if q else 60_000)
    args.infer_n = 500 if q else INFER_N
    args.infer_batch = 250 if q else INFER_BATCH
    if args.memory_models is None:
        args.memory_models = ["cnn_small"] if q else ["cnn_2conv", "cnn_small"]


    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    use_torch = (not args.no_torch) and torch_available()
    if not use_torch and not args.no_torch:
        log("PyTorch is not installed: measuring minidl alone (no ratios)")
    info = machine.machine_info(with_torch=use_torch)
    info["env"] = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "NUMBA_NUM_THREADS",
                                                  "MINIDL_NUM_THREADS", "MKL_NUM_THREADS",
                                                  "OPENBLAS_NUM_THREADS", "NUMBA_THREADING_LAYER")}
    t_start = time.perf_counter()

    workers = {}
    try:
        workers["minidl"] = Worker("minidl")
        if use_torch:
            workers["torch"] = Worker("torch")
        train_rows, infer_rows = run_speed(args, workers, log)
    finally:
        for w in workers.values():
            w.close()

    mem_rows = []
    mem_threads = max(args.threads)
    for name in args.memory_models:
        per_fw = {}
        for fw in (["minidl", "torch"] if use_torch else ["minidl"]):
            n_img = args.memory_images or (256 if q else MEMORY_IMAGES[name])
            per_fw[fw] = memory.measure_memory(fw, name, 128, mem_threads, n_img)
            log(f"memory {name:12s} {fw:6s} growth {per_fw[fw]['epoch_growth_mb']} MB, "
                f"process peak {per_fw[fw]['process_peak_mb']:.0f} MB")
        if "torch" in per_fw:
            g_m, g_t = per_fw["minidl"]["epoch_growth_mb"], per_fw["torch"]["epoch_growth_mb"]
            if g_m is not None and g_t is not None:
                per_fw["minidl"]["verdict"] = (
                    "met" if g_m <= g_t else f"**missed** by {g_m - g_t:.1f} MB "
                                             f"({g_m / max(g_t, 1e-9):.2f}× torch)")
        mem_rows += list(per_fw.values())

    cold = None
    if not args.no_coldstart:
        from . import coldstart
        cold = coldstart.measure(quick=q, with_torch=use_torch, log=log)

    info_end = machine.machine_info(with_torch=False)
    payload = {"machine": info, "machine_end": {"load_average": info_end["load_average"],
                                                "busy_processes": info_end["busy_processes"]},
               "settings": {k: (str(v) if isinstance(v, Path) else v)
                            for k, v in vars(args).items() if not k.startswith("memory_w")},
               "training": train_rows, "inference": infer_rows, "memory": mem_rows,
               "coldstart": cold, "seconds": time.perf_counter() - t_start}
    md, readme_md = render(args, info, info_end, train_rows, infer_rows, mem_rows, cold)
    for p in charts(args, train_rows, infer_rows):
        log(f"wrote {p}")
    common.finish(args, "training", payload, md, readme_md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
