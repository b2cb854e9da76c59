"""Numerical parity with PyTorch: every layer, every optimizer, a short training run.

    python -m benchmarks.parity [--quick] [--out DIR]

For each case the same weights are given to minidl and to torch (minidl's default init,
copied into torch through ``state_dict``), the same input and the same upstream gradient
go in, and the table gives, in float64 and in float32:

- ``max abs``: the largest absolute difference over every compared array;
- ``max rel``: that difference divided by the largest magnitude of torch's array
  (a norm-wise relative error; element-wise ratios explode at values near zero).

Compared: layer forward output, input gradient and each parameter gradient; optimizer
parameters after 100 steps (and the largest deviation along the way) on a fixed sequence
of gradients that depend on the current parameters; a full short training run (losses of
every step, final parameters and logits). NaN positions must match exactly (a NaN against
a number counts as an infinite difference). The tolerance column uses the project's
bounds: float64 relative 1e-10, float32 relative 1e-5.

This is a report, not a test: the tests in ``tests/`` assert parity; this shows how close.
"""
from __future__ import annotations

import math
import sys
import time

import numpy as np

from . import common, machine, zoo

TOL = {"float64": 1e-10, "float32": 1e-5}
DTYPES = ("float64", "float32")


# ============================================================== differences
def diff(a, b) -> tuple[float, float]:
    """(max abs difference, that / max|b|) with NaN positions required to match."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"parity: shapes differ, minidl {a.shape} vs torch {b.shape}")
    na, nb = np.isnan(a), np.isnan(b)
    if not np.array_equal(na, nb):
        return math.inf, math.inf
    ok = ~na
    if not ok.any():
        return 0.0, 0.0
    d = np.abs(a[ok] - b[ok])
    # equal infinities give nan in a - b: treat as equal, unequal infinities as inf
    same_inf = np.isinf(a[ok]) & (a[ok] == b[ok])
    d = np.where(same_inf, 0.0, d)
    d = np.where(np.isnan(d), math.inf, d)
    m = float(d.max()) if d.size else 0.0
    scale = float(np.max(np.abs(np.where(np.isinf(b[ok]), 0.0, b[ok])))) if d.size else 0.0
    return m, (m / scale if scale > 0 else (0.0 if m == 0 else math.inf))


class Acc:
    """Accumulates the worst difference over several arrays of one case."""

    def __init__(self):
        self.abs = 0.0
        self.rel = 0.0
        self.worst = None

    def add(self, what: str, a, b):
        d_abs, d_rel = diff(a, b)
        if d_rel > self.rel or (self.worst is None):
            self.worst = what
        self.abs = max(self.abs, d_abs)
        self.rel = max(self.rel, d_rel)


def _t(torch, a, dtype):
    return torch.from_numpy(np.ascontiguousarray(np.asarray(a, dtype=dtype)))


def _copy_weights(torch, m_model, t_model):
    sd = {k: torch.from_numpy(np.array(v)) for k, v in m_model.state_dict().items()}
    t_model.load_state_dict(sd, strict=True)


# ============================================================== layers
def layer_cases(quick: bool):
    """(name, builder(nn), input shape, input kind); the builder works for both frameworks."""
    img = (4, 3, 5, 6)
    cases = [
        ("Linear(7,5)", lambda nn: nn.Linear(7, 5), (4, 7), "randn"),
        ("Linear(7,5,bias=False)", lambda nn: nn.Linear(7, 5, bias=False), (4, 7), "randn"),
        ("Flatten()", lambda nn: nn.Flatten(), (3, 2, 4, 5), "randn"),
        ("Flatten(0,1)", lambda nn: nn.Flatten(0, 1), (3, 2, 4), "randn"),
        ("ReLU() with zeros", lambda nn: nn.ReLU(), img, "ties"),
        ("LeakyReLU(0.1)", lambda nn: nn.LeakyReLU(0.1), img, "randn"),
        ("Tanh()", lambda nn: nn.Tanh(), img, "randn"),
        ("Sigmoid()", lambda nn: nn.Sigmoid(), img, "randn"),
        ("ELU(0.7)", lambda nn: nn.ELU(0.7), img, "randn"),
        ("GELU()", lambda nn: nn.GELU(), img, "randn"),
        ("GELU('tanh')", lambda nn: nn.GELU(approximate="tanh"), img, "randn"),
        ("Dropout(0.3) eval", lambda nn: nn.Dropout(0.3), (4, 30), "randn"),
        ("Dropout(0.3) train, same mask", lambda nn: nn.Dropout(0.3), (4, 30), "randn"),
        ("Conv2d(3,4,3,padding=1)", lambda nn: nn.Conv2d(3, 4, 3, padding=1),
         (2, 3, 7, 6), "randn"),
        ("Conv2d(2,3,(3,2),stride=2,padding=(1,0))",
         lambda nn: nn.Conv2d(2, 3, (3, 2), stride=2, padding=(1, 0)), (2, 2, 9, 8), "randn"),
        ("Conv2d(2,3,3,dilation=2,bias=False)",
         lambda nn: nn.Conv2d(2, 3, 3, dilation=2, bias=False), (1, 2, 9, 9), "randn"),
        ("Conv2d(1,16,5,padding=2)", lambda nn: nn.Conv2d(1, 16, 5, padding=2),
         (2, 1, 28, 28), "randn"),
        ("Conv2d(32,64,3,padding=1)", lambda nn: nn.Conv2d(32, 64, 3, padding=1),
         (2, 32, 14, 14), "randn"),
        ("MaxPool2d(2)", lambda nn: nn.MaxPool2d(2), (2, 3, 8, 8), "randn"),
        ("MaxPool2d(2) ties after ReLU", lambda nn: nn.MaxPool2d(2), (2, 3, 8, 8), "ties"),
        ("MaxPool2d(3,2,1) overlapping, ties", lambda nn: nn.MaxPool2d(3, 2, 1),
         (2, 3, 9, 9), "ties"),
        ("MaxPool2d(3,2,ceil_mode=True)", lambda nn: nn.MaxPool2d(3, 2, ceil_mode=True),
         (2, 2, 8, 8), "randn"),
        ("MaxPool2d(2,dilation=2)", lambda nn: nn.MaxPool2d(2, dilation=2),
         (1, 2, 9, 9), "randn"),
        ("MaxPool2d(2) with NaN", lambda nn: nn.MaxPool2d(2), (2, 3, 8, 8), "nan"),
        ("AvgPool2d(2)", lambda nn: nn.AvgPool2d(2), (2, 3, 8, 8), "randn"),
        ("AvgPool2d(3,2,1)", lambda nn: nn.AvgPool2d(3, 2, 1), (2, 3, 9, 9), "randn"),
        ("AvgPool2d(3,2,1,count_include_pad=False)",
         lambda nn: nn.AvgPool2d(3, 2, 1, count_include_pad=False), (2, 3, 9, 9), "randn"),
        ("AvgPool2d(3,2,1,ceil_mode=True)",
         lambda nn: nn.AvgPool2d(3, 2, 1, ceil_mode=True), (2, 2, 8, 8), "randn"),
    ]
    if quick:
        keep = {"Linear(7,5)", "ReLU() with zeros", "Conv2d(3,4,3,padding=1)",
                "MaxPool2d(2) ties after ReLU", "AvgPool2d(2)", "Dropout(0.3) train, same mask"}
        cases = [c for c in cases if c[0] in keep]
    return cases


def _input(kind, shape, rng):
    x = rng.standard_normal(shape)
    if kind == "ties":
        # many exact zeros (as after ReLU) and repeated values: tie-breaking and ReLU'(0)
        x = np.maximum(np.round(x * 2) / 2, 0.0)
    elif kind == "nan":
        x[rng.random(shape) < 0.1] = np.nan
    return x


def layer_parity(torch, minidl, name, builder, shape, kind, dtype, seed) -> dict:
    rng = np.random.default_rng(seed)
    minidl.manual_seed(seed)
    m = builder(minidl.nn).to(np.dtype(dtype))
    t = builder(torch.nn).to(getattr(torch, dtype))
    _copy_weights(torch, m, t)
    x = _input(kind, shape, rng).astype(dtype)
    train = "eval" not in name
    m.train(train)
    t.train(train)
    y = m(x)
    dout = rng.standard_normal(np.shape(y)).astype(dtype)
    dx = m.backward(dout)
    xt = _t(torch, x, dtype).requires_grad_(True)
    if name.startswith("Dropout") and train:
        # torch draws its own mask: apply torch's formula x * mask / (1 - p) with the mask
        # minidl drew (read back from its output), so the arithmetic is what is compared
        p = 0.3
        mask = _t(torch, (np.asarray(y) != 0).astype(dtype), dtype)
        yt = xt * mask / (1 - p)
    else:
        yt = t(xt)
    yt.backward(_t(torch, dout, dtype))
    acc = Acc()
    acc.add("forward", y, yt.detach().numpy())
    acc.add("input grad", dx, xt.grad.numpy())
    t_params = dict(t.named_parameters())
    for pname, p in m.named_parameters():
        acc.add(f"{pname} grad", p.grad, t_params[pname].grad.numpy())
    return {"case": name, "dtype": dtype, "max_abs": acc.abs, "max_rel": acc.rel,
            "worst": acc.worst, "compared": "forward, input grad"
            + ("".join(f", {n} grad" for n, _ in m.named_parameters()))}


def loss_parity(torch, minidl, smoothing, dtype, seed) -> dict:
    rng = np.random.default_rng(seed)
    logits = (3 * rng.standard_normal((16, 10))).astype(dtype)
    targets = rng.integers(0, 10, 16).astype(np.int64)
    crit = minidl.nn.CrossEntropyLoss(label_smoothing=smoothing)
    loss = crit(logits, targets)
    g = crit.backward()
    lt = _t(torch, logits, dtype).requires_grad_(True)
    out = torch.nn.CrossEntropyLoss(label_smoothing=smoothing)(lt, torch.from_numpy(targets))
    out.backward()
    acc = Acc()
    acc.add("loss", np.array(loss), out.detach().numpy())
    acc.add("dlogits", g, lt.grad.numpy())
    return {"case": f"CrossEntropyLoss(label_smoothing={smoothing})", "dtype": dtype,
            "max_abs": acc.abs, "max_rel": acc.rel, "worst": acc.worst,
            "compared": "loss, dlogits"}


# ============================================================== optimizers
def optimizer_cases(quick: bool):
    cases = [
        ("SGD(lr=0.05)", "SGD", dict(lr=0.05)),
        ("SGD(momentum=0.9)", "SGD", dict(lr=0.05, momentum=0.9)),
        ("SGD(momentum=0.9, dampening=0.1, wd=1e-2)", "SGD",
         dict(lr=0.05, momentum=0.9, dampening=0.1, weight_decay=1e-2)),
        ("SGD(nesterov, wd=1e-3)", "SGD", dict(lr=0.05, momentum=0.9, nesterov=True,
                                              weight_decay=1e-3)),
        ("Adam()", "Adam", dict(lr=1e-2)),
        ("Adam(amsgrad, wd=1e-2)", "Adam", dict(lr=1e-2, amsgrad=True, weight_decay=1e-2)),
        ("AdamW()", "AdamW", dict(lr=1e-2)),
        ("AdamW(amsgrad, betas=(0.8,0.99))", "AdamW", dict(lr=1e-2, amsgrad=True,
                                                           betas=(0.8, 0.99))),
        ("RMSprop()", "RMSprop", dict(lr=1e-2)),
        ("RMSprop(centered, momentum=0.9, wd=1e-3)", "RMSprop",
         dict(lr=1e-3, centered=True, momentum=0.9, weight_decay=1e-3)),
    ]
    if quick:
        cases = [c for c in cases if c[0] in ("SGD(momentum=0.9)", "Adam()")]
    return cases


def optimizer_parity(torch, minidl, name, cls_name, kwargs, dtype, steps, seed) -> dict:
    """Parameters after ``steps`` steps of g = A_k * p + b_k (fixed random A_k, b_k)."""
    rng = np.random.default_rng(seed)
    shapes = [(5, 4), (4,), (3, 2, 3, 3)]
    init = [rng.standard_normal(s).astype(dtype) for s in shapes]
    coef = [[(rng.uniform(0.1, 1.0, s).astype(dtype), rng.standard_normal(s).astype(dtype))
             for s in shapes] for _ in range(steps)]
    m_params = [minidl.nn.Parameter(a.copy()) for a in init]
    t_params = [torch.nn.Parameter(_t(torch, a, dtype)) for a in init]
    m_opt = getattr(minidl.optim, cls_name)(m_params, **kwargs)
    t_opt = getattr(torch.optim, cls_name)(t_params, **kwargs)
    along = Acc()
    for k in range(steps):
        for mp, tp, (a, b) in zip(m_params, t_params, coef[k]):
            mp.grad = a * mp.data + b
            with torch.no_grad():
                tp.grad = torch.from_numpy(a) * tp.detach() + torch.from_numpy(b)
        m_opt.step()
        t_opt.step()
        for i, (mp, tp) in enumerate(zip(m_params, t_params)):
            along.add(f"param {i} at step {k + 1}", mp.data, tp.detach().numpy())
    final = Acc()
    for i, (mp, tp) in enumerate(zip(m_params, t_params)):
        final.add(f"param {i}", mp.data, tp.detach().numpy())
    return {"case": name, "dtype": dtype, "steps": steps, "max_abs": final.abs,
            "max_rel": final.rel, "worst": final.worst,
            "along_max_abs": along.abs, "along_max_rel": along.rel,
            "compared": f"parameters after {steps} steps"}


def scheduler_parity(torch, minidl, steps) -> list[dict]:
    """Learning-rate sequences of every scheduler against torch's (float64 values)."""
    cases = [
        ("StepLR(step_size=3, gamma=0.5)", "StepLR", dict(step_size=3, gamma=0.5)),
        ("MultiStepLR([4,9], gamma=0.3)", "MultiStepLR", dict(milestones=[4, 9], gamma=0.3)),
        ("ExponentialLR(0.9)", "ExponentialLR", dict(gamma=0.9)),
        ("CosineAnnealingLR(T_max=10, eta_min=1e-4)", "CosineAnnealingLR",
         dict(T_max=10, eta_min=1e-4)),
        ("ReduceLROnPlateau(patience=2, factor=0.5)", "ReduceLROnPlateau",
         dict(patience=2, factor=0.5)),
    ]
    rows = []
    metrics = [1.0, 0.9, 0.95, 0.95, 0.96, 0.97, 0.8, 0.85, 0.86, 0.9, 0.91, 0.92] * 4
    for name, cls, kw in cases:
        mp = [minidl.nn.Parameter(np.zeros(2))]
        tp = [torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))]
        mo, to = minidl.optim.SGD(mp, lr=0.1), torch.optim.SGD(tp, lr=0.1)
        ms = getattr(minidl.optim.lr_scheduler, cls)(mo, **kw)
        ts = getattr(torch.optim.lr_scheduler, cls)(to, **kw)
        m_lrs, t_lrs = [], []
        for k in range(steps):
            mo.step()
            to.step()
            if cls == "ReduceLROnPlateau":
                ms.step(metrics[k % len(metrics)])
                ts.step(metrics[k % len(metrics)])
            else:
                ms.step()
                ts.step()
            m_lrs.append(mo.param_groups[0]["lr"])
            t_lrs.append(to.param_groups[0]["lr"])
        acc = Acc()
        acc.add("lr sequence", np.array(m_lrs), np.array(t_lrs))
        rows.append({"case": name, "dtype": "float64", "steps": steps, "max_abs": acc.abs,
                     "max_rel": acc.rel, "worst": acc.worst,
                     "compared": f"lr over {steps} steps"})
    return rows


# ============================================================== training run
def _train_models(nn, name):
    if name == "MLP 784-64-10":
        return zoo.build_model(nn, "lab_mlp_64")
    if name == "small CNN (conv5x5, avgpool)":
        return zoo.build_model(nn, "cnn_small")
    if name == "CNN (2 conv, maxpool)":
        return zoo.build_model(nn, "cnn_2conv_narrow")
    raise ValueError(name)


def training_parity(torch, minidl, model_name, dtype, steps, batch, seed) -> dict:
    """Same init, same batches, Adam: losses of every step, final weights and logits."""
    x, _ = zoo.synthetic_fashion_mnist(steps * batch + 256, seed=seed, dtype=np.float64)
    # labels from a fixed random linear "teacher", so the loss actually falls
    w = np.random.default_rng(seed + 1).standard_normal((784, 10))
    y = np.argmax(x.reshape(len(x), -1) @ w, axis=1).astype(np.int64)
    x = x.astype(dtype)
    minidl.manual_seed(seed)
    m = _train_models(minidl.nn, model_name).to(np.dtype(dtype))
    t = _train_models(torch.nn, model_name).to(getattr(torch, dtype))
    _copy_weights(torch, m, t)
    m_opt = minidl.optim.Adam(m.parameters(), lr=1e-3)
    t_opt = torch.optim.Adam(t.parameters(), lr=1e-3)
    m_crit, t_crit = minidl.nn.CrossEntropyLoss(), torch.nn.CrossEntropyLoss()
    m_losses, t_losses = [], []
    for k in range(steps):
        xb, yb = x[k * batch:(k + 1) * batch], y[k * batch:(k + 1) * batch]
        m_opt.zero_grad()
        m_losses.append(m_crit(m(xb), yb))
        m.backward(m_crit.backward())
        m_opt.step()
        t_opt.zero_grad()
        out = t_crit(t(_t(torch, xb, dtype)), torch.from_numpy(yb))
        out.backward()
        t_opt.step()
        t_losses.append(out.item())
    acc = Acc()
    acc.add("losses", np.array(m_losses), np.array(t_losses))
    t_params = dict(t.named_parameters())
    for pname, p in m.named_parameters():
        acc.add(f"final {pname}", p.data, t_params[pname].detach().numpy())
    xe = x[-256:]
    m.eval()
    t.eval()
    with torch.no_grad():
        acc.add("eval logits", m(xe), t(_t(torch, xe, dtype)).numpy())
    return {"case": f"{model_name}: {steps} Adam steps, batch {batch}", "dtype": dtype,
            "max_abs": acc.abs, "max_rel": acc.rel, "worst": acc.worst,
            "loss_first_last": [m_losses[0], m_losses[-1]],
            "compared": "every step's loss, final parameters, eval logits"}


# ============================================================== report
def run_case(rows, errors, section, label, fn, *a):
    """Run ``fn(*a)`` and append its row (or list of rows) to ``rows``, each with its
    ``section`` and ``within_tol`` = max rel <= the tolerance of its dtype; an exception
    becomes an entry of ``errors`` and the other cases still run."""
    try:
        res = fn(*a)
    except Exception as exc:  # a missing layer/option is reported, the rest still runs
        errors.append({"section": section, "case": label,
                       "error": f"{type(exc).__name__}: {exc}"})
        return
    for r in (res if isinstance(res, list) else [res]):
        r["section"] = section
        r["within_tol"] = r["max_rel"] <= TOL.get(r["dtype"], 1e-10)
        rows.append(r)


def render_tail(rows, errors) -> list[str]:
    """The end of a parity report: the cases that could not run, then how many
    comparisons are within tolerance."""
    out = []
    if errors:
        out += ["## Cases that could not run", "",
                common.markdown_table(["section", "case", "error"],
                                      [[e["section"], e["case"], e["error"]] for e in errors]),
                ""]
    n_ok = sum(r["within_tol"] for r in rows)
    out.append(f"{n_ok} of {len(rows)} comparisons within tolerance"
               + (f"; {len(errors)} cases failed to run." if errors else "."))
    return out


def render(info, rows, errors, steps) -> str:
    out = ["# Parity with PyTorch", "", machine.machine_markdown(info), "",
           "max abs = largest |minidl − torch| over every compared array; max rel = that "
           "divided by the largest |torch value| of the same array. Tolerance: float64 "
           f"{TOL['float64']:g}, float32 {TOL['float32']:g} (relative). NaN positions must "
           "match exactly.", ""]
    sections = [("layers", "Layers: forward, input gradient, parameter gradients"),
                ("loss", "Loss"),
                ("optimizers", f"Optimizers: parameters after {steps} steps"),
                ("schedulers", "Learning-rate schedulers"),
                ("training", "A full short training run (same init, same batches)")]
    for key, title in sections:
        sec = [r for r in rows if r["section"] == key]
        if not sec:
            continue
        out += [f"## {title}", ""]
        by_case: dict[str, dict] = {}
        for r in sec:
            by_case.setdefault(r["case"], {})[r["dtype"]] = r
        headers = ["case"]
        dts = [d for d in DTYPES if any(d in v for v in by_case.values())]
        for d in dts:
            headers += [f"{d} max abs", f"{d} max rel"]
        if key == "optimizers":
            headers += ["float32 worst rel along the way"] if "float32" in dts else []
        headers += ["within tol", "compared"]
        table = []
        for case, per in by_case.items():
            row = [case]
            for d in dts:
                r = per.get(d)
                row += [common.fmt_sci(r["max_abs"]) if r else "—",
                        common.fmt_sci(r["max_rel"]) if r else "—"]
            if key == "optimizers" and "float32" in dts:
                row.append(common.fmt_sci(per["float32"]["along_max_rel"])
                           if "float32" in per else "—")
            row.append("yes" if all(r["within_tol"] for r in per.values()) else
                       "**no** (" + ", ".join(f"{d}: worst {r['worst']}" for d, r in per.items()
                                              if not r["within_tol"]) + ")")
            row.append(next(iter(per.values()))["compared"])
            table.append(row)
        out += [common.markdown_table(headers, table), ""]
        if key == "training":
            out += ["In float32 a training run is not held to the single-operation tolerance: "
                    "Adam divides by sqrt(v) + eps, so for a gradient entry of the size of eps "
                    "(1e-8) a rounding difference of ~1e-8 relative to the largest gradient "
                    "(the float32 level of the layer rows above) moves that entry's update by "
                    "up to ~1e-3 of lr. The float64 column is the parity evidence for the run.",
                    ""]
    return "\n".join(out + render_tail(rows, errors))


def main(argv=None) -> int:
    parser = common.base_parser(__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=None, help="optimizer steps (default 100)")
    args = common.parse_args(parser, argv, "benchmarks.parity")
    if args is None:          # ran again under --isa
        return common.parse_args.code
    try:
        import torch
    except ImportError:
        print("benchmarks.parity needs PyTorch (pip install torch)", file=sys.stderr)
        return 2
    import minidl
    torch.set_num_threads(1)
    minidl.set_num_threads(1)
    q = args.quick
    steps = args.steps or (5 if q else 100)
    t0 = time.perf_counter()
    info = machine.machine_info()
    rows: list[dict] = []
    errors: list[dict] = []
    for dtype in DTYPES:
        for i, (name, builder, shape, kind) in enumerate(layer_cases(q)):
            run_case(rows, errors, "layers", f"{name} {dtype}", layer_parity,
                      torch, minidl, name, builder, shape, kind, dtype, 100 + i)
        for smoothing in (0.0, 0.1):
            run_case(rows, errors, "loss", f"CrossEntropyLoss({smoothing}) {dtype}",
                      loss_parity, torch, minidl, smoothing, dtype, 7)
        for i, (name, cls, kw) in enumerate(optimizer_cases(q)):
            run_case(rows, errors, "optimizers", f"{name} {dtype}", optimizer_parity,
                      torch, minidl, name, cls, kw, dtype, steps, 200 + i)
        models = ["MLP 784-64-10"] if q else ["MLP 784-64-10", "CNN (2 conv, maxpool)",
                                              "small CNN (conv5x5, avgpool)"]
        for name in models:
            run_case(rows, errors, "training", f"{name} {dtype}", training_parity,
                      torch, minidl, name, dtype, 3 if q else 30, 16 if q else 32, 300)
    if not q:
        run_case(rows, errors, "schedulers", "all schedulers", scheduler_parity,
                  torch, minidl, 30)
    md = render(info, rows, errors, steps)
    payload = {"machine": info, "tolerance": TOL, "results": rows, "errors": errors,
               "seconds": time.perf_counter() - t0}
    common.finish(args, "parity", payload, md)
    print(md)
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
