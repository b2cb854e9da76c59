"""Hypergradient descent: how much the final error depends on the initial learning rate.

    python -m benchmarks.hypergradient            # full run (about 5 min on 2 quiet cores)
    python -m benchmarks.hypergradient --quick    # smoke test: tiny subset, numbers mean nothing

The lab's MLP (784-256-10, dropout 0.3) trains from each initial learning rate 1e-4,
1e-3, 1e-2 and 1e-1 with SGD, SGD-HD (``minidl.optim.SGDHD``), Adam and Adam-HD
(``minidl.optim.AdamHD``): 24 runs with the same seed, so the same initial weights,
batch order and dropout masks.  Training uses ``minidl.train.fit`` on a seeded subset
of the 50 000 training images (the 10 000 validation images of the usual 50k/10k split
are the validation set) for a few epochs.  The hypergradient learning rates are the
paper's for its MLP (Baydin et al. 2018, section 5): ``hypergrad_lr`` 1e-3 for SGD-HD,
1e-7 for Adam-HD, and Adam-HD runs again with 1e-6 and 1e-5: all are reported, none
is picked.

Reported: the final validation error of every run, and for each optimizer the spread
(max - min, and the standard deviation) of the final error over the four initial
rates: the paper's claim is that the -HD versions depend less on the initial rate.
The learning rate is recorded after every step (every ``--lr-every`` steps in the
JSON).  Results: ``benchmarks/results/hypergradient.json``, ``.md`` and ``.png``
(final error against the initial rate; the learning rate over training).
"""
from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import numpy as np

from . import common, machine, zoo

INITIAL_RATES = (1e-4, 1e-3, 1e-2, 1e-1)
# name -> (optimizer class name in minidl.optim, extra arguments).  SGD-HD's 1e-3 and
# Adam-HD's 1e-7 are the paper's values for its MLP; Adam-HD also runs with 1e-6 and
# 1e-5, every one of them reported (the paper's runs were far longer than these, and
# the rate moves by about hypergrad_lr * |g . u| per step).
OPTIMIZERS = {
    "SGD": ("SGD", {}),
    "SGD-HD": ("SGDHD", {"hypergrad_lr": 1e-3}),
    "Adam": ("Adam", {}),
    "Adam-HD": ("AdamHD", {"hypergrad_lr": 1e-7}),
    "Adam-HD (1e-6)": ("AdamHD", {"hypergrad_lr": 1e-6}),
    "Adam-HD (1e-5)": ("AdamHD", {"hypergrad_lr": 1e-5}),
}
PAIRS = (("SGD", "SGD-HD"), ("Adam", "Adam-HD"), ("Adam", "Adam-HD (1e-6)"),
         ("Adam", "Adam-HD (1e-5)"))
MODEL = "lab_mlp_256"
BATCH_SIZE = 64
VAL_SIZE = 10_000
FULL = {"train_size": 20_000, "epochs": 5}
QUICK = {"train_size": 600, "epochs": 1, "val_size": 200}
CHANCE_ERROR = 0.9     # ten balanced classes: what a diverged run is counted as


# -- data ---------------------------------------------------------------------------------

def load_data(seed: int, train_size: int, quick: bool):
    """(train subset, validation) as float32 ArrayDatasets, from the 50k/10k split."""
    from minidl import data
    splits = data.load_fashion_mnist()
    images, labels = splits.train_images, splits.train_labels
    val_size = VAL_SIZE
    if quick:
        images, labels = images[:train_size + QUICK["val_size"]], \
            labels[:train_size + QUICK["val_size"]]
        val_size = QUICK["val_size"]
    full = data.prepare(images, labels, data.FASHION_MNIST_MEAN, data.FASHION_MNIST_STD)
    train, val = data.train_val_split(full, val_size, seed)
    if train_size < len(train):
        rng = np.random.default_rng(np.random.SeedSequence([seed, 2]))
        train = train.subset(np.sort(rng.choice(len(train), train_size, replace=False)))
    return train, val


# -- one run ------------------------------------------------------------------------------

class LearningRateTrace:
    """An optimizer seen through ``fit``: every ``step()`` passes on, then the rate of
    parameter group 0 is recorded (the -HD optimizers change it every step)."""

    def __init__(self, optimizer):
        self.optimizer = optimizer
        self.lrs: list[float] = []

    @property
    def param_groups(self):
        return self.optimizer.param_groups

    def zero_grad(self, set_to_none: bool = True):
        self.optimizer.zero_grad(set_to_none)

    def step(self, closure=None):
        loss = self.optimizer.step(closure)
        self.lrs.append(float(self.optimizer.param_groups[0]["lr"]))
        return loss


def train_one(name: str, lr0: float, train, val, epochs: int, seed: int) -> dict:
    """Train the lab MLP with optimizer ``name`` from rate ``lr0``; final error and lr trace."""
    import minidl
    from minidl import nn, optim
    from minidl.train import NonFiniteLossError, fit

    cls_name, extra = OPTIMIZERS[name]
    minidl.manual_seed(seed)
    model = zoo.build_model(nn, MODEL)
    traced = LearningRateTrace(getattr(optim, cls_name)(model.parameters(), lr=lr0, **extra))
    t0 = time.perf_counter()
    diverged = None
    try:
        history = fit(model, nn.CrossEntropyLoss(), traced, train, val, epochs=epochs,
                      batch_size=BATCH_SIZE, seed=seed, progress=False)
        epochs_done = history.to_dict()["epochs"]
    except NonFiniteLossError as exc:
        diverged = f"non-finite loss {exc.loss} at epoch {exc.epoch}, step {exc.step}"
        epochs_done = []
    seconds = time.perf_counter() - t0
    final_error = epochs_done[-1]["val_error"] if diverged is None else CHANCE_ERROR
    return {
        "optimizer": name, "optimizer_class": cls_name, "initial_lr": lr0, **extra,
        "final_val_error": final_error, "diverged": diverged,
        "final_lr": traced.lrs[-1] if traced.lrs else lr0,
        "lr_min": min(traced.lrs, default=lr0), "lr_max": max(traced.lrs, default=lr0),
        "steps": len(traced.lrs), "seconds": seconds,
        "epochs": [{k: r[k] for k in ("epoch", "train_loss", "val_loss", "val_error", "lr")}
                   for r in epochs_done],
        "lr_trace": traced.lrs,
    }


# -- summary and report ---------------------------------------------------------------------

def spread(runs: list[dict], name: str) -> dict:
    """Final errors of optimizer ``name`` over the initial rates, and how much they vary."""
    errors = [r["final_val_error"] for r in runs if r["optimizer"] == name]
    return {"errors": errors, "min": min(errors), "max": max(errors),
            "range": max(errors) - min(errors),
            "std": statistics.pstdev(errors) if len(errors) > 1 else 0.0,
            "mean": statistics.fmean(errors)}


def fmt_rate(x: float) -> str:
    return f"{x:.0e}".replace("e-0", "e-")


def fmt_lr(x: float) -> str:
    return f"{x:.3g}"


def markdown(payload: dict) -> str:
    s = payload["settings"]
    runs = payload["runs"]
    by = {(r["optimizer"], r["initial_lr"]): r for r in runs}
    rows = []
    for name in OPTIMIZERS:
        cells = [name]
        for lr0 in s["initial_rates"]:
            r = by[(name, lr0)]
            cells.append("diverged" if r["diverged"] else f"{r['final_val_error']:.4f}")
        sp = payload["spread"][name]
        cells += [f"{sp['range']:.4f}", f"{sp['std']:.4f}", f"{sp['mean']:.4f}"]
        rows.append(cells)
    error_table = common.markdown_table(
        ["optimizer"] + [f"lr0 = {fmt_rate(x)}" for x in s["initial_rates"]]
        + ["range (max - min)", "std", "mean"], rows)
    lr_rows = []
    for name in OPTIMIZERS:
        if not OPTIMIZERS[name][1]:
            continue
        lr_rows.append([name] + [
            f"{fmt_lr(by[(name, x)]['final_lr'])} ({fmt_lr(by[(name, x)]['lr_min'])} .. "
            f"{fmt_lr(by[(name, x)]['lr_max'])})" for x in s["initial_rates"]])
    lr_table = common.markdown_table(
        ["optimizer"] + [f"lr0 = {fmt_rate(x)}" for x in s["initial_rates"]], lr_rows)
    verdicts = []
    for base, hd in PAIRS:
        a, b = payload["spread"][base], payload["spread"][hd]
        verdicts.append(
            f"- **{hd} vs {base}**: final error ranges over {b['min']:.4f} .. {b['max']:.4f} "
            f"(range {b['range']:.4f}, std {b['std']:.4f}) against {a['min']:.4f} .. "
            f"{a['max']:.4f} (range {a['range']:.4f}, std {a['std']:.4f}): "
            + ("**varies less**" if b["range"] < a["range"] else "**does not vary less**")
            + " over the four initial rates.")
    diverged = [r for r in runs if r["diverged"]]
    lines = [
        "# Hypergradient descent: final validation error against the initial learning rate",
        "",
        f"Command: `{payload['command']}`",
        "",
        f"Lab MLP 784-256-10 (dropout 0.3), `minidl.train.fit`, batch {s['batch_size']}, "
        f"{s['epochs']} epochs on {s['train_size']:,} training images (a seeded subset of "
        f"the 50k split), validation on {s['val_size']:,} images, seed {s['seed']} for "
        f"every run (same initial weights, batches and dropout masks). SGD without "
        f"momentum; Adam with betas (0.9, 0.999), eps 1e-8. hypergrad_lr: SGD-HD "
        f"{OPTIMIZERS['SGD-HD'][1]['hypergrad_lr']:g} and Adam-HD "
        f"{OPTIMIZERS['Adam-HD'][1]['hypergrad_lr']:g} (the paper's MLP values); "
        "Adam-HD (1e-6) and Adam-HD (1e-5) are Adam-HD with those hypergrad_lr "
        "(every value run is shown).",
        "",
        "## Final validation error",
        "",
        error_table,
        "",
        *verdicts,
        "",
        "## Learning rate of the -HD optimizers: final (min .. max over training)",
        "",
        lr_table,
        "",
        "![final error and learning rate](hypergradient.png)",
        "",
        f"Wall time: {payload['seconds']:.0f} s for the {len(runs)} runs.",
        "",
        f"{machine.machine_markdown(payload['machine'])} {payload['load_note']}",
    ]
    if diverged:
        lines += ["", "Diverged runs (a non-finite training loss) count as error "
                      f"{CHANCE_ERROR} in the spread: "
                  + "; ".join(f"{r['optimizer']} lr0 {fmt_rate(r['initial_lr'])}: "
                              f"{r['diverged']}" for r in diverged) + "."]
    if payload["settings"]["quick"]:
        lines += ["", "This is a `--quick` run on a tiny subset: its numbers mean nothing."]
    return "\n".join(lines)


# plot colours: the plain optimizer dashed, its -HD version(s) solid
COLORS = {"SGD": "tab:blue", "SGD-HD": "tab:blue", "Adam": "tab:red", "Adam-HD": "tab:red",
          "Adam-HD (1e-6)": "tab:orange", "Adam-HD (1e-5)": "tab:purple"}


def plot(path: Path, payload: dict) -> Path:
    """Left: final validation error against the initial rate (log x), one line per
    optimizer.  Middle and right: the learning rate of every SGD-HD and Adam-HD run over
    training (log y; a rate below zero, possible for a while, leaves a gap)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = payload["runs"]
    rates = payload["settings"]["initial_rates"]
    fig, (ax_err, ax_sgd, ax_adam) = plt.subplots(1, 3, figsize=(17, 4.8))
    for name in OPTIMIZERS:
        errors = [next(r["final_val_error"] for r in runs
                       if r["optimizer"] == name and r["initial_lr"] == x) for x in rates]
        style = "-" if OPTIMIZERS[name][1] else "--"
        ax_err.plot(rates, errors, style, color=COLORS[name], marker="o", label=name)
    ax_err.set_xscale("log")
    ax_err.set_xlabel("initial learning rate")
    ax_err.set_ylabel("final validation error")
    ax_err.set_title("Final validation error against the initial rate", fontsize=10)
    ax_err.grid(alpha=0.3)
    ax_err.legend(fontsize=8)

    shades = dict(zip(rates, np.linspace(0.3, 1.0, len(rates))))
    for ax, family in ((ax_sgd, "SGDHD"), (ax_adam, "AdamHD")):
        for r in runs:
            if r["optimizer_class"] != family:
                continue
            lrs = np.asarray(r["lr_trace"], dtype=float)
            steps = np.arange(1, len(lrs) + 1)
            color = matplotlib.colors.to_rgba(COLORS[r["optimizer"]], shades[r["initial_lr"]])
            ax.plot(steps, np.where(lrs > 0, lrs, np.nan), color=color, linewidth=1,
                    label=f"{r['optimizer']} from {fmt_rate(r['initial_lr'])}")
        ax.set_yscale("log")
        ax.set_xlabel("training step")
        ax.set_ylabel("learning rate")
        ax.set_title(f"Learning rate of {family[:-2]}-HD over training", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6.5, ncol=2 if family == "AdamHD" else 1)
    return common.save_figure(fig, path)


def main(argv=None) -> int:
    parser = common.base_parser(__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for minidl; default: minidl's default")
    parser.add_argument("--lr-every", type=int, default=5,
                        help="keep every N-th step's learning rate in the JSON (default 5)")
    args = common.parse_args(parser, argv, "benchmarks.hypergradient")
    if args is None:          # ran again under --isa
        return common.parse_args.code
    if args.lr_every < 1:
        parser.error("--lr-every must be >= 1")

    import minidl
    if args.threads is not None:
        minidl.set_num_threads(args.threads)
    sizes = QUICK if args.quick else FULL
    train, val = load_data(args.seed, sizes["train_size"], args.quick)
    print(f"data: train {len(train)}, val {len(val)}; {sizes['epochs']} epochs, "
          f"batch {BATCH_SIZE}", file=sys.stderr)

    info_start = machine.machine_info(with_torch=False)
    t0 = time.perf_counter()
    runs = []
    for lr0 in INITIAL_RATES:
        for name in OPTIMIZERS:
            r = train_one(name, lr0, train, val, sizes["epochs"], args.seed)
            runs.append(r)
            print(f"{name:8s} lr0 {fmt_rate(lr0)}: final val error {r['final_val_error']:.4f}, "
                  f"lr {fmt_lr(r['final_lr'])}"
                  + (f" DIVERGED ({r['diverged']})" if r["diverged"] else "")
                  + f" ({r['seconds']:.1f}s)", file=sys.stderr)
    seconds = time.perf_counter() - t0
    info_end = machine.machine_info(with_torch=False)

    # the plot shows every step's rate; the JSON keeps every N-th
    plot_runs = runs
    runs = [dict(r, lr_trace=r["lr_trace"][args.lr_every - 1::args.lr_every]) for r in runs]
    payload = {
        "command": "python -m benchmarks.hypergradient " + " ".join(
            sys.argv[1:] if argv is None else argv),
        "settings": {"model": MODEL, "batch_size": BATCH_SIZE, "epochs": sizes["epochs"],
                     "train_size": len(train), "val_size": len(val), "seed": args.seed,
                     "initial_rates": list(INITIAL_RATES), "quick": bool(args.quick),
                     "optimizers": {k: {"class": c, **kw} for k, (c, kw) in OPTIMIZERS.items()},
                     "lr_trace_every": args.lr_every, "threads": minidl.get_num_threads()},
        "runs": runs,
        "spread": {name: spread(runs, name) for name in OPTIMIZERS},
        "seconds": seconds,
        "machine": info_start,
        "load_note": machine.load_note(info_start, info_end).replace(
            " (the interleaved ratios are the robust figures)", ""),
    }
    payload["hd_varies_less"] = {hd: payload["spread"][hd]["range"]
                                      < payload["spread"][base]["range"] for base, hd in PAIRS}
    plot(Path(args.out) / "hypergradient.png", dict(payload, runs=plot_runs))
    common.finish(args, "hypergradient", payload, markdown(payload))
    print(markdown(payload))
    return 0


if __name__ == "__main__":
    sys.exit(main())
