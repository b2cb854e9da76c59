"""Test accuracy after 5 epochs on Fashion-MNIST: the lab's MLP and the 2-conv CNN.

    python -m benchmarks.accuracy                      # both models, minidl only
    python -m benchmarks.accuracy --model mlp --torch  # also train the same model in PyTorch
    python -m benchmarks.accuracy --model cnn --epochs 5 --seed 0

The 60 000 training images are split 50 000 / 10 000 (train / validation, seeded), the
model trains with ``minidl.train.fit`` (Adam, lr 1e-3, batch 64), and the 10 000 test
images are used once, at the end.  ``--torch`` trains the same architecture with PyTorch
in the same run (same split, same batch size, optimizer and epochs; its own
initialisation and shuffling), so the two accuracies and times come from one machine.

Results go to ``benchmarks/results/accuracy.json`` and ``.md``.  A run updates the
entries of the models and frameworks it trained and keeps the others, so
``--model mlp`` and ``--model cnn`` can be run separately.

Targets (from the project's issue 3; PyTorch reaches 0.858-0.870 and 0.895-0.907 here):
MLP >= 0.86, CNN >= 0.895.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from . import common, machine, zoo

MODELS = ("mlp", "cnn")
TARGETS = {"mlp": 0.86, "cnn": 0.895}
DESCRIPTIONS = {
    "mlp": "Flatten, Linear 784->256, ReLU, Dropout 0.3, Linear 256->10",
    "cnn": ("Conv 1->32 3x3 pad 1, ReLU, MaxPool 2; Conv 32->64 3x3 pad 1, ReLU, MaxPool 2; "
            "Flatten, Linear 3136->128, ReLU, Dropout 0.5, Linear 128->10"),
}
BATCH_SIZE = 64
LR = 1e-3
VAL_SIZE = 10_000


# -- models ---------------------------------------------------------------------------

# The two models are the training benchmark's lab_mlp_256 and cnn_2conv (one builder for
# minidl.nn and torch.nn alike: ``zoo.build_model``).
COMMON_NAMES = {"mlp": "lab_mlp_256", "cnn": "cnn_2conv"}


def build_minidl(name: str):
    from minidl import nn
    return zoo.build_model(nn, COMMON_NAMES[name])


def build_torch(name: str):
    from torch import nn
    return zoo.build_model(nn, COMMON_NAMES[name])


# -- data -------------------------------------------------------------------------------

def load_data(seed: int, quick: bool):
    """(train 50k, val 10k, test 10k) as float32 NCHW ArrayDatasets, normalised."""
    from minidl import data
    splits = data.load_fashion_mnist()
    tr_img, tr_lab = splits.train_images, splits.train_labels
    te_img, te_lab = splits.test_images, splits.test_labels
    val_size = VAL_SIZE
    if quick:
        tr_img, tr_lab, te_img, te_lab = tr_img[:1200], tr_lab[:1200], te_img[:500], te_lab[:500]
        val_size = 200
    full = data.prepare(tr_img, tr_lab, data.FASHION_MNIST_MEAN, data.FASHION_MNIST_STD)
    train, val = data.train_val_split(full, val_size, seed)
    test = data.prepare(te_img, te_lab, data.FASHION_MNIST_MEAN, data.FASHION_MNIST_STD)
    return train, val, test


# -- training -----------------------------------------------------------------------------

def run_minidl(name: str, train, val, test, epochs: int, seed: int) -> dict:
    import minidl
    from minidl import nn, optim
    from minidl.train import evaluate, fit

    minidl.manual_seed(seed)
    model = build_minidl(name)
    opt = optim.Adam(model.parameters(), lr=LR)
    t0 = time.perf_counter()
    def log_epoch(epoch, r):   # fit's bar shows on a terminal; a log file gets one line
        print(f"minidl {name} epoch {epoch}/{epochs}: val_acc {r['val_accuracy']:.4f} "
              f"({r['seconds']:.1f}s)", file=sys.stderr)

    tty = sys.stderr.isatty()
    hist = fit(model, nn.CrossEntropyLoss(), opt, train, val, epochs=epochs,
               batch_size=BATCH_SIZE, seed=seed, progress=tty,
               callbacks=[] if tty else [log_epoch])
    train_seconds = time.perf_counter() - t0
    t1 = time.perf_counter()
    test_scores = evaluate(model, test)
    test_seconds = time.perf_counter() - t1
    return {
        "framework": "minidl",
        "threads": minidl.get_num_threads(),
        "test_accuracy": test_scores["accuracy"],
        "test_loss": test_scores["loss"],
        "train_seconds": train_seconds,
        "test_seconds": test_seconds,
        "epochs": [{k: r[k] for k in ("epoch", "train_loss", "val_loss", "val_accuracy",
                                      "seconds", "images_per_sec")} for r in hist.epochs],
    }


def run_torch(name: str, train, val, test, epochs: int, seed: int) -> dict:
    """The same model, optimizer and batch size in PyTorch: a plain loop, no DataLoader."""
    import torch

    torch.manual_seed(seed)
    model = build_torch(name)
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    crit = torch.nn.CrossEntropyLoss()
    rng = np.random.default_rng(seed)
    tx, ty = torch.from_numpy(train.x), torch.from_numpy(train.y)

    def scores(ds):
        model.eval()
        loss_sum, correct = 0.0, 0
        with torch.no_grad():
            for s in range(0, len(ds.y), 1000):
                xb = torch.from_numpy(ds.x[s:s + 1000])
                yb = torch.from_numpy(ds.y[s:s + 1000])
                out = model(xb)
                loss_sum += crit(out, yb).item() * len(yb)
                correct += int((out.argmax(1) == yb).sum())
        return loss_sum / len(ds.y), correct / len(ds.y)

    records = []
    t0 = time.perf_counter()
    for epoch in range(1, epochs + 1):
        te = time.perf_counter()
        model.train()
        perm = torch.from_numpy(rng.permutation(len(ty)))
        loss_sum = 0.0
        for s in range(0, len(ty), BATCH_SIZE):
            idx = perm[s:s + BATCH_SIZE]
            opt.zero_grad()
            loss = crit(model(tx[idx]), ty[idx])
            loss.backward()
            opt.step()
            loss_sum += loss.item() * len(idx)
        train_s = time.perf_counter() - te
        val_loss, val_acc = scores(val)
        records.append({"epoch": epoch, "train_loss": loss_sum / len(ty), "val_loss": val_loss,
                        "val_accuracy": val_acc, "seconds": time.perf_counter() - te,
                        "images_per_sec": len(ty) / train_s})
        print(f"torch {name} epoch {epoch}/{epochs}: val_acc {val_acc:.4f} "
              f"({records[-1]['seconds']:.1f}s)", file=sys.stderr)
    train_seconds = time.perf_counter() - t0
    t1 = time.perf_counter()
    test_loss, test_acc = scores(test)
    return {
        "framework": "torch",
        "threads": torch.get_num_threads(),
        "test_accuracy": test_acc,
        "test_loss": test_loss,
        "train_seconds": train_seconds,
        "test_seconds": time.perf_counter() - t1,
        "epochs": records,
    }


# -- report -------------------------------------------------------------------------------

def markdown(payload: dict) -> str:
    rows = []
    for name in MODELS:
        for fw in ("minidl", "torch"):
            r = payload["results"].get(name, {}).get(fw)
            if r is None:
                continue
            n_ep = len(r["epochs"])
            target = TARGETS[name]
            rows.append([
                name, fw, n_ep, f"{r['test_accuracy']:.4f}",
                f">= {target}" + ("" if r["quick"] else
                                  (" ok" if r["test_accuracy"] >= target else " **missed**")),
                f"{r['train_seconds']:.1f}", f"{r['train_seconds'] / max(n_ep, 1):.1f}",
                common.fmt_num(float(np.median([e["images_per_sec"] for e in r["epochs"]]))),
                r["threads"], r["seed"], r["machine"]["date"],
            ])
    table = common.markdown_table(
        ["model", "framework", "epochs", "test acc", "target", "train+val wall (s)",
         "s/epoch", "train img/s (median epoch)", "threads", "seed", "measured"], rows)
    lines = [
        "# Fashion-MNIST test accuracy (50k/10k split, Adam lr 1e-3, batch 64)",
        "",
        "Command: `python -m benchmarks.accuracy --model {mlp,cnn} --epochs 5 --seed 0 --torch`",
        "",
        table,
        "",
    ]
    for name in MODELS:
        if name in payload["results"]:
            lines.append(f"- **{name}**: {DESCRIPTIONS[name]}.")
    lines.append("")
    seen = set()
    for name in MODELS:
        for fw in ("minidl", "torch"):
            r = payload["results"].get(name, {}).get(fw)
            if r is None:
                continue
            key = (r["machine"]["date"], r["machine"]["cpu"])
            if key in seen:
                continue
            seen.add(key)
            lines.append(f"- {name}/{fw} run: {machine.machine_markdown(r['machine'])} "
                         f"{r['load_note']}")
    if any(r.get("quick") for m in payload["results"].values() for r in m.values()):
        lines += ["", "Rows from `--quick` runs are smoke tests on a tiny subset: their "
                      "numbers mean nothing."]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = common.base_parser(__doc__.split("\n")[0])
    parser.add_argument("--model", choices=MODELS + ("all",), default="all")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--torch", action="store_true",
                        help="also train the same model with PyTorch in this run")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for minidl (and torch); default: minidl's default")
    args = common.parse_args(parser, argv, "benchmarks.accuracy")
    if args is None:          # ran again under --isa
        return common.parse_args.code
    if args.epochs < 1:
        parser.error("--epochs must be >= 1")
    if args.quick:
        args.epochs = 1

    import minidl
    if args.threads is not None:
        minidl.set_num_threads(args.threads)
    if args.torch:
        import torch
        torch.set_num_threads(minidl.get_num_threads())

    train, val, test = load_data(args.seed, args.quick)
    print(f"data: train {len(train.y)}, val {len(val.y)}, test {len(test.y)}", file=sys.stderr)

    json_path = Path(args.out) / "accuracy.json"
    payload = {"results": {}}
    if json_path.exists():
        try:
            payload = json.loads(json_path.read_text())
        except (OSError, ValueError):
            payload = {"results": {}}
    payload.setdefault("results", {})

    names = MODELS if args.model == "all" else (args.model,)
    for name in names:
        runners = [run_minidl] + ([run_torch] if args.torch else [])
        for runner in runners:
            info_start = machine.machine_info(with_torch=args.torch)
            print(f"== {name} / {runner.__name__[4:]}: {args.epochs} epochs", file=sys.stderr)
            result = runner(name, train, val, test, args.epochs, args.seed)
            info_end = machine.machine_info(with_torch=args.torch)
            result.update({
                "model": name, "description": DESCRIPTIONS[name], "seed": args.seed,
                "batch_size": BATCH_SIZE, "lr": LR, "optimizer": "Adam",
                "train_size": len(train.y), "val_size": len(val.y), "test_size": len(test.y),
                "target": TARGETS[name], "quick": bool(args.quick),
                "meets_target": result["test_accuracy"] >= TARGETS[name],
                "command": "python -m benchmarks.accuracy " + " ".join(
                    sys.argv[1:] if argv is None else argv),
                "machine": info_start,
                # one run per framework, not interleaved: the load note's advice on ratios
                # does not apply here
                "load_note": machine.load_note(info_start, info_end).replace(
                    " (the interleaved ratios are the robust figures)", ""),
            })
            payload["results"].setdefault(name, {})[result["framework"]] = result
            print(f"{name} / {result['framework']}: test accuracy "
                  f"{result['test_accuracy']:.4f} (target {TARGETS[name]}), "
                  f"train+val {result['train_seconds']:.1f}s", file=sys.stderr)
            # write after every run, so a long CNN run never loses the MLP's numbers
            common.finish(args, "accuracy", payload, markdown(payload))
    return 0


if __name__ == "__main__":
    sys.exit(main())
