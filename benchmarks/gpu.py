"""minidl on a GPU (CuPy): parity with PyTorch CUDA, with minidl's own CPU path, and the
training step's speed.

    python -m benchmarks.gpu [--quick] [--out DIR]      (DIR default: benchmarks/results/gpu)

Needs minidl, NumPy, Numba, CuPy (``pip install .[gpu]``) and a GPU; PyTorch with CUDA for
the comparisons with torch (without torch they are left out and say so).  No Optuna, no
data set: every input is a synthetic array.  A few minutes on one GPU.

- **Parity with PyTorch** (both on the GPU; TF32 off in torch,
  ``torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False``, and
  CuPy does not use TF32 unless ``CUPY_TF32=1``): every layer case of
  ``benchmarks.parity`` (forward, input gradient, parameter gradients), the loss, the
  optimizers after ``--steps`` steps and a short training run, in float64 and float32;
  the same measure and tolerances as ``benchmarks.parity`` (norm-wise relative: float64
  1e-10, float32 1e-5).
- **Device against host**: the same layer cases, minidl on the GPU against minidl on the
  CPU, float64: the device route (the kernels' array-module references) computes the
  host route's math.
- **Training step**: forward, loss, backward and optimizer step on one batch already on
  the GPU, minidl against torch, interleaved rounds, medians (``benchmarks.common``);
  each step ends with its loss brought to the host (minidl's one copy per step, torch's
  ``loss.item()``), so the GPU's queue is drained every step on both sides.

``--quick`` runs tiny cases: the test suite runs it on the stand-in device
(``tests/fakecupy``, torch on the CPU), which proves the script, not the numbers.
"""
from __future__ import annotations

import sys
import time

import numpy as np

from . import common, parity, machine, zoo

TOL = parity.TOL
DTYPES = parity.DTYPES
STEP_MODELS = ("lab_mlp_256", "cnn_2conv", "cnn_2conv_bn", "lstm_128")


# -- the two frameworks on their devices -------------------------------------------------
class Devices:
    """CuPy (through ``minidl.backend``), and torch on CUDA (on the CPU when it has none)."""

    def __init__(self, with_torch: bool):
        import minidl
        self.minidl = minidl
        self.cp = minidl.backend.require_cuda()
        self.torch = self.torch_device = None
        self.torch_note = "not run: --without-torch"
        if with_torch:
            try:
                import torch
            except ImportError:
                self.torch_note = "not run: PyTorch is not installed"
            else:
                self.torch = torch
                cuda = torch.cuda.is_available()
                self.torch_device = torch.device("cuda" if cuda else "cpu")
                torch.backends.cuda.matmul.allow_tf32 = False
                torch.backends.cudnn.allow_tf32 = False
                torch.backends.cudnn.benchmark = False
                self.torch_note = f"torch {torch.__version__} on {self.torch_device}"

    def info(self) -> dict:
        cp = self.cp
        props = cp.cuda.runtime.getDeviceProperties(0)
        name = props.get("name", b"?")
        info = {"cupy": getattr(cp, "__version__", "?"),
                "gpu": name.decode() if isinstance(name, bytes) else str(name),
                "gpu_memory_bytes": props.get("totalGlobalMem"),
                "cuda_runtime": cp.cuda.runtime.runtimeGetVersion(), "torch": self.torch_note}
        if self.torch is not None:
            t = self.torch
            info["tf32"] = {"torch.backends.cuda.matmul.allow_tf32":
                            t.backends.cuda.matmul.allow_tf32,
                            "torch.backends.cudnn.allow_tf32": t.backends.cudnn.allow_tf32}
            if self.torch_device.type == "cuda":
                info["torch_gpu"] = t.cuda.get_device_name(0)
        return info

    def dev(self, a):
        """A host array on the GPU (minidl's side)."""
        return self.cp.asarray(a)

    def host(self, a):
        return self.minidl.backend.to_numpy(a)

    def tensor(self, a, dtype):
        t = self.torch
        return t.from_numpy(np.ascontiguousarray(np.asarray(a, dtype=dtype))).to(self.torch_device)

    def t_host(self, t):
        return t.detach().cpu().numpy()

    def sync(self):
        self.cp.cuda.Device().synchronize()
        if self.torch is not None and self.torch_device.type == "cuda":
            self.torch.cuda.synchronize()


def _copy_weights(d: Devices, m, t):
    t.load_state_dict({k: d.torch.from_numpy(np.array(v)) for k, v in m.state_dict().items()})


# -- parity with torch ---------------------------------------------------------------------
def layer_vs_torch(d: Devices, name, builder, shape, kind, dtype, seed) -> dict:
    mdl, torch = d.minidl, d.torch
    rng = np.random.default_rng(seed)
    mdl.manual_seed(seed)
    m = builder(mdl.nn).to(np.dtype(dtype))
    t = builder(torch.nn).to(getattr(torch, dtype))
    _copy_weights(d, m, t)
    m.to("cuda")
    t.to(d.torch_device)
    x = parity._input(kind, shape, rng).astype(dtype)
    train = "eval" not in name
    m.train(train)
    t.train(train)
    y = m(d.dev(x))
    dout = rng.standard_normal(y.shape).astype(dtype)
    dx = m.backward(d.dev(dout))
    xt = d.tensor(x, dtype).requires_grad_(True)
    if name.startswith("Dropout") and train:   # minidl's mask, torch's formula
        mask = d.tensor((d.host(y) != 0).astype(dtype), dtype)
        yt = xt * mask / (1 - 0.3)
    else:
        yt = t(xt)
    yt.backward(d.tensor(dout, dtype))
    acc = parity.Acc()
    acc.add("forward", d.host(y), d.t_host(yt))
    acc.add("input grad", d.host(dx), d.t_host(xt.grad))
    t_params = dict(t.named_parameters())
    for pname, p in m.named_parameters():
        acc.add(f"{pname} grad", d.host(p.grad), d.t_host(t_params[pname].grad))
    return _row(name, dtype, acc, "forward, input grad"
                + "".join(f", {n} grad" for n, _ in m.named_parameters()))


def loss_vs_torch(d: Devices, smoothing, dtype, seed) -> dict:
    rng = np.random.default_rng(seed)
    logits = (3 * rng.standard_normal((16, 10))).astype(dtype)
    targets = rng.integers(0, 10, 16).astype(np.int64)
    crit = d.minidl.nn.CrossEntropyLoss(label_smoothing=smoothing)
    loss = crit(d.dev(logits), targets)
    g = crit.backward()
    lt = d.tensor(logits, dtype).requires_grad_(True)
    out = d.torch.nn.CrossEntropyLoss(label_smoothing=smoothing)(
        lt, d.torch.from_numpy(targets).to(d.torch_device))
    out.backward()
    acc = parity.Acc()
    acc.add("loss", np.array(loss), d.t_host(out))
    acc.add("dlogits", d.host(g), d.t_host(lt.grad))
    return _row(f"CrossEntropyLoss(label_smoothing={smoothing})", dtype, acc, "loss, dlogits")


def optimizer_vs_torch(d: Devices, name, cls_name, kwargs, dtype, steps, seed) -> dict:
    """Parameters after ``steps`` steps of g = A_k * p + b_k, as ``benchmarks.parity``."""
    mdl, torch = d.minidl, d.torch
    rng = np.random.default_rng(seed)
    shapes = [(5, 4), (4,), (3, 2, 3, 3)]
    init = [rng.standard_normal(s).astype(dtype) for s in shapes]
    coef = [[(rng.uniform(0.1, 1.0, s).astype(dtype), rng.standard_normal(s).astype(dtype))
             for s in shapes] for _ in range(steps)]
    m_params = [mdl.nn.Parameter(d.dev(a)) for a in init]
    t_params = [torch.nn.Parameter(d.tensor(a, dtype)) for a in init]
    m_opt = getattr(mdl.optim, cls_name)(m_params, **kwargs)
    t_opt = getattr(torch.optim, cls_name)(t_params, **kwargs)
    for k in range(steps):
        for mp, tp, (a, b) in zip(m_params, t_params, coef[k]):
            mp.grad = d.dev(a) * mp.data + d.dev(b)
            with torch.no_grad():
                tp.grad = d.tensor(a, dtype) * tp.detach() + d.tensor(b, dtype)
        m_opt.step()
        t_opt.step()
    acc = parity.Acc()
    for i, (mp, tp) in enumerate(zip(m_params, t_params)):
        acc.add(f"param {i}", d.host(mp.data), d.t_host(tp))
    return _row(name, dtype, acc, f"parameters after {steps} steps")


def training_vs_torch(d: Devices, model_name, dtype, steps, batch, seed) -> dict:
    """Same init, same batches, Adam: every step's loss, the final weights, eval logits."""
    mdl, torch = d.minidl, d.torch
    x, _ = zoo.synthetic_fashion_mnist(steps * batch + 64, seed=seed, dtype=np.float64)
    w = np.random.default_rng(seed + 1).standard_normal((784, 10))
    y = np.argmax(x.reshape(len(x), -1) @ w, axis=1).astype(np.int64)
    x = x.astype(dtype)
    mdl.manual_seed(seed)
    m = zoo.build_model(mdl.nn, model_name).to(np.dtype(dtype))
    t = zoo.build_model(torch.nn, model_name).to(getattr(torch, dtype))
    _copy_weights(d, m, t)
    m.to("cuda")
    t.to(d.torch_device)
    m_opt = mdl.optim.Adam(m.parameters(), lr=1e-3)
    t_opt = torch.optim.Adam(t.parameters(), lr=1e-3)
    m_crit, t_crit = mdl.nn.CrossEntropyLoss(), torch.nn.CrossEntropyLoss()
    m_losses, t_losses = [], []
    for k in range(steps):
        xb, yb = x[k * batch:(k + 1) * batch], y[k * batch:(k + 1) * batch]
        m_opt.zero_grad()
        m_losses.append(m_crit(m(d.dev(xb)), yb))
        m.backward(m_crit.backward())
        m_opt.step()
        t_opt.zero_grad()
        out = t_crit(t(d.tensor(xb, dtype)), torch.from_numpy(yb).to(d.torch_device))
        out.backward()
        t_opt.step()
        t_losses.append(out.item())
    acc = parity.Acc()
    acc.add("losses", np.array(m_losses), np.array(t_losses))
    t_params = dict(t.named_parameters())
    for pname, p in m.named_parameters():
        acc.add(f"final {pname}", d.host(p.data), d.t_host(t_params[pname]))
    m.eval()
    t.eval()
    with torch.no_grad():
        acc.add("eval logits", d.host(m(d.dev(x[-64:]))), d.t_host(t(d.tensor(x[-64:], dtype))))
    return _row(f"{model_name}: {steps} Adam steps, batch {batch}", dtype, acc,
                "every step's loss, final parameters, eval logits")


def layer_vs_host(d: Devices, name, builder, shape, kind, seed) -> dict:
    """minidl on the GPU against minidl on the CPU, float64."""
    mdl = d.minidl
    rng = np.random.default_rng(seed)
    mdl.manual_seed(seed)
    host = builder(mdl.nn).double()
    dev = builder(mdl.nn).double()
    dev.load_state_dict(host.state_dict())
    dev.to("cuda")
    x = parity._input(kind, shape, rng)
    train = "eval" not in name
    results = []
    for m, put in ((host, lambda a: a), (dev, d.dev)):
        m.train(train)
        mdl.manual_seed(seed)                       # the same dropout mask
        y = m(put(x))
        dout = np.random.default_rng(seed + 1).standard_normal(y.shape)
        dx = m.backward(put(dout))
        results.append((d.host(y), d.host(dx),
                        {n: d.host(p.grad) for n, p in m.named_parameters()}))
    acc = parity.Acc()
    (y_h, dx_h, g_h), (y_d, dx_d, g_d) = results
    acc.add("forward", y_d, y_h)
    acc.add("input grad", dx_d, dx_h)
    for pname in g_h:
        acc.add(f"{pname} grad", g_d[pname], g_h[pname])
    return _row(name, "float64", acc, "forward, input grad, parameter grads")


def _row(case, dtype, acc, compared) -> dict:
    return {"case": case, "dtype": dtype, "max_abs": acc.abs, "max_rel": acc.rel,
            "worst": acc.worst, "compared": compared}


# -- the training step ---------------------------------------------------------------------
class _MinidlStep:
    def __init__(self, d: Devices, model_name, batch, seed):
        mdl = d.minidl
        x, y = zoo.synthetic_fashion_mnist(batch, seed=seed)
        mdl.manual_seed(seed)
        self.d = d
        self.model = zoo.build_model(mdl.nn, model_name).to("cuda")
        self.model.needs_input_grad = False            # as fit trains
        self.opt = mdl.optim.Adam(self.model.parameters(), lr=1e-3)
        self.crit = mdl.nn.CrossEntropyLoss()
        self.x, self.y = d.dev(x), y                 # labels on the host, as fit gives them

    def __call__(self):
        self.opt.zero_grad()
        loss = self.crit(self.model(self.x), self.y)      # the step's one copy to the host
        self.model.backward(self.crit.backward())
        self.opt.step()
        return loss


class _TorchStep:
    def __init__(self, d: Devices, model_name, batch, seed):
        torch = d.torch
        x, y = zoo.synthetic_fashion_mnist(batch, seed=seed)
        torch.manual_seed(seed)
        self.model = zoo.build_model(torch.nn, model_name).to(d.torch_device)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=1e-3)
        self.crit = torch.nn.CrossEntropyLoss()
        self.x = d.tensor(x, np.float32)
        self.y = torch.from_numpy(y).to(d.torch_device)

    def __call__(self):
        self.opt.zero_grad()
        loss = self.crit(self.model(self.x), self.y)
        loss.backward()
        self.opt.step()
        return loss.item()


def training_step(d: Devices, model_name, batch, rounds, block_s, seed=0) -> dict:
    steps = {"minidl": _MinidlStep(d, model_name, batch, seed)}
    if d.torch is not None:
        steps["torch"] = _TorchStep(d, model_name, batch, seed)
    numbers = {}
    for name, step in steps.items():          # warm-up: CuPy compiles its kernels here
        step()
        d.sync()
        numbers[name] = common.calibrate(lambda s=step: s(), block_s, max_number=1000)

    def sampler(name):
        def sample():
            d.sync()
            t = common.time_block(steps[name], numbers[name])
            d.sync()
            return t
        return sample

    samples = common.interleaved({n: sampler(n) for n in steps}, rounds)
    stats = {n: common.summarize(s) for n, s in samples.items()}
    row = {"model": model_name, "description": zoo.MODELS.get(model_name, ("",))[0],
           "batch": batch, "minidl": stats["minidl"], "torch": stats.get("torch"),
           "steps_per_block": numbers}
    if "torch" in stats:
        row["ratio"] = common.ratio(stats["minidl"]["median"], stats["torch"]["median"])
    return row


# -- the report ----------------------------------------------------------------------------
def render(info, device, rows, errors, step_rows, steps, quick) -> str:
    out = ["# minidl on a GPU", "",
           machine.machine_markdown(info), "",
           f"GPU: {device['gpu']} (CuPy {device['cupy']}, CUDA runtime "
           f"{device['cuda_runtime']}); {device['torch']}"
           + (f"; TF32 off: {device['tf32']}" if "tf32" in device else "") + ".", ""]
    if quick:
        out += ["**--quick**: tiny cases, numbers mean nothing.", ""]
    out += ["max rel = largest |difference| over every compared array divided by the largest "
            "|reference value| of that array (benchmarks.parity's measure); tolerance "
            f"float64 {TOL['float64']:g}, float32 {TOL['float32']:g}.", ""]
    sections = [("torch-layers", "Parity with PyTorch: layers (both on the GPU)"),
                ("torch-loss", "Parity with PyTorch: loss"),
                ("torch-optimizers", f"Parity with PyTorch: optimizers after {steps} steps"),
                ("torch-training", "Parity with PyTorch: a short training run"),
                ("host", "minidl on the GPU against minidl on the CPU (float64)")]
    for key, title in sections:
        sec = [r for r in rows if r["section"] == key]
        if not sec:
            continue
        out += [f"## {title}", "",
                common.markdown_table(
                    ["case", "dtype", "max abs", "max rel", "within tol", "compared"],
                    [[r["case"], r["dtype"], common.fmt_sci(r["max_abs"]),
                      common.fmt_sci(r["max_rel"]),
                      "yes" if r["within_tol"] else f"**no** (worst {r['worst']})",
                      r["compared"]] for r in sec]), ""]
    if step_rows:
        out += ["## Training step (forward, loss, backward, Adam; batch on the GPU)", "",
                common.markdown_table(
                    ["model", "batch", "minidl GPU", "torch", "minidl / torch", "rounds"],
                    [[r["model"], r["batch"], common.fmt_time(r["minidl"]["median"]),
                      common.fmt_time(r["torch"]["median"]) if r["torch"] else "—",
                      common.fmt_num(r.get("ratio")), r["minidl"]["runs"]]
                     for r in step_rows]), "",
                "Each step ends with its loss on the host (minidl: the one copy to the host "
                "a step makes; torch: `loss.item()`). Medians of interleaved rounds.", ""]
    return "\n".join(out + parity.render_tail(rows, errors))


def main(argv=None) -> int:
    parser = common.base_parser(__doc__.split("\n")[0])
    parser.set_defaults(out=common.RESULTS_DIR / "gpu")
    parser.add_argument("--steps", type=int, default=None, help="optimizer steps (default 50)")
    parser.add_argument("--without-torch", action="store_true",
                        help="leave out every comparison with PyTorch")
    args = parser.parse_args(argv)
    try:
        d = Devices(with_torch=not args.without_torch)
    except RuntimeError as exc:          # no CuPy or no GPU: say which
        print(f"benchmarks.gpu: {exc}", file=sys.stderr)
        return 2
    mdl = d.minidl
    if d.torch is not None:
        d.torch.set_num_threads(1)
    mdl.set_num_threads(1)
    q = args.quick
    steps = args.steps or (3 if q else 50)
    t0 = time.perf_counter()
    info = machine.machine_info(with_torch=d.torch is not None)
    device = d.info()
    rows, errors = [], []
    run = parity.run_case         # a failing case is reported; the others still run
    cases = parity.layer_cases(q)
    if d.torch is not None:
        for dtype in DTYPES:
            for i, (name, builder, shape, kind) in enumerate(cases):
                run(rows, errors, "torch-layers", f"{name} {dtype}", layer_vs_torch, d, name,
                    builder, shape, kind, dtype, 100 + i)
            for smoothing in (0.0, 0.1):
                run(rows, errors, "torch-loss", f"loss {smoothing} {dtype}", loss_vs_torch, d,
                    smoothing, dtype, 7)
            for i, (name, cls, kw) in enumerate(parity.optimizer_cases(q)):
                run(rows, errors, "torch-optimizers", f"{name} {dtype}", optimizer_vs_torch,
                    d, name, cls, kw, dtype, steps, 200 + i)
            for name in (["cnn_2conv_narrow"] if q else ["lab_mlp_64", "cnn_2conv_narrow"]):
                run(rows, errors, "torch-training", f"{name} {dtype}", training_vs_torch, d,
                    name, dtype, 3 if q else 20, 8 if q else 32, 300)
    for i, (name, builder, shape, kind) in enumerate(cases):
        run(rows, errors, "host", name, layer_vs_host, d, name, builder, shape, kind, 100 + i)
    step_rows = []
    for name in (["lab_mlp_64"] if q else STEP_MODELS):
        try:
            step_rows.append(training_step(d, name, 16 if q else 64, 2 if q else 7,
                                           0.001 if q else 0.3))
        except Exception as exc:  # noqa: BLE001 - reported beside the other results
            errors.append({"section": "training-step", "case": name,
                           "error": f"{type(exc).__name__}: {exc}"})
    md = render(info, device, rows, errors, step_rows, steps, q)
    payload = {"machine": info, "device": device, "tolerance": TOL, "results": rows,
               "training_step": step_rows, "errors": errors,
               "seconds": time.perf_counter() - t0}
    common.finish(args, "gpu", payload, md)
    print(md)
    return 1 if errors or not all(r["within_tol"] for r in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
