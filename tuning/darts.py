r"""DARTS, first order (Liu, Simonyan and Yang, ICLR 2019), over the task-2 ``cnn`` space.

    python -m tuning darts --space cnn --epochs 3 --out studies/darts-cnn

A black-box search (TPE, ``tuning run``) trains one network per configuration.  DARTS
trains *one* network that holds every candidate at once, a **supernet**, and learns
which candidate to keep by gradient descent:

- Block ``i`` of the ``cnn`` space is ``Conv2d(kernel_l{i}) -> [BatchNorm2d] -> ReLU``
  (``convs_per_block`` times), then a pooling of type ``pool_type``.  In the supernet
  the convolution is a ``minidl.nn.darts.MixedOp`` over the kernel sizes 3, 5 and 7
  (each with its own weights) with architecture parameters
  :math:`\alpha^{(i)} \in \mathbb{R}^3`, and the pooling a ``MixedOp`` over max and
  average pooling with :math:`\beta \in \mathbb{R}^2`, one vector for all blocks
  (``pool_type`` is one choice for the whole network in the space).  The two
  convolutions of a block share the block's :math:`\alpha^{(i)}` (``kernel_l{i}``
  is one choice per block).  Every other part (depth, filters, batch norm, head,
  optimizer, batch size...) is fixed by the base parameters (``--params``, default
  the space's defaults).
- The output of a mixed operation is :math:`\sum_k \mathrm{softmax}(\alpha)_k\,
  o_k(x)`: the loss is differentiable in :math:`\alpha` and :math:`\beta`.
- **Alternating, first order.**  Each step takes a batch of the *validation* split and
  moves the architecture parameters :math:`A = (\alpha, \beta)` by Adam on
  :math:`\nabla_A L_{val}(w, A)` (the weights :math:`w` held as they are: the
  first-order approximation, which drops the second-order term of DARTS' bilevel
  gradient), then a batch of the *training* split and moves the weights by the base
  configuration's optimizer on :math:`\nabla_w L_{train}(w, A)`.  Both gradients come
  from the same hand-written backward pass (``MixedOp.backward``).
- **Derived configuration.**  Each choice takes the candidate with the largest weight
  :math:`\mathrm{softmax}(\alpha)_k`; with the base parameters this is a complete set
  of the ``cnn`` space's parameters (``params.json``), which ``tuning retrain
  --params`` trains and tests and ``tuning enqueue --params`` queues into a study (e.g.
  to seed a TPE study).

The data are the same as ``tuning run``'s with the same options: the training images
split once into a training part and a validation part with ``--seed``
(``tuning.data.study_data``).  Architecture optimizer: Adam with betas (0.5, 0.999) and
weight decay 1e-3, as in the paper; its learning rate is ``--arch-lr`` (the paper's
3e-4 over 50 epochs of 25 000 images; a short search needs a larger one).
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import minidl
from minidl import nn, optim
from minidl.data import iterate_batches
from minidl.nn.darts import MixedOp, softmax
from minidl.train import NonFiniteLossError, evaluate

from .models import POOL_LAYERS, cnn_head
from .outputs import OutputFolder
from .objective import make_augment, make_optimizer, make_scheduler
from .spaces import (IMAGE_SHAPE, KERNEL_SIZES, POOL_TYPES, check_values,
                     config_from_params, conv_pool_plan, get_space, params_asked)

SPACE = "cnn"
# The paper's architecture optimizer: Adam, betas (0.5, 0.999), weight decay 1e-3.
ARCH_BETAS = (0.5, 0.999)
ARCH_WEIGHT_DECAY = 1e-3
DEFAULT_ARCH_LR = 3e-3
RECORD_EVERY = 10          # steps between two records of the architecture weights


class SuperNet(nn.Module):
    """The ``cnn`` space's network with a ``MixedOp`` wherever the space offers a choice.

    ``config`` is a ``cnn`` configuration (``tuning.spaces.cnn``'s output); its
    ``kernel_sizes`` and ``pool_type`` are ignored (they are what is searched), the rest
    is built as ``tuning.models.build_cnn`` builds it.  ``choices()`` lists the searched
    parameters with their candidates and current weights.
    """

    def __init__(self, config: dict, input_shape=IMAGE_SHAPE):
        super().__init__()
        channels, size, _ = input_shape
        filters = [int(f) for f in config["filters"]]
        convs_per_block = int(config.get("convs_per_block", 1))
        batch_norm = bool(config.get("batch_norm", False))
        pool_kernel = int(config["pool_kernel"])
        # odd kernels keep the map's size, so the plan is the same for every candidate
        pool_after, size = conv_pool_plan(size, [max(KERNEL_SIZES)] * len(filters), pool_kernel)
        self.pool_alpha = nn.Parameter(np.zeros(len(POOL_TYPES), dtype=np.float32))
        self.kernel_alphas = []
        layers = []
        in_ch = channels
        for out_ch, pools in zip(filters, pool_after):
            alpha = nn.Parameter(np.zeros(len(KERNEL_SIZES), dtype=np.float32))
            self.kernel_alphas.append(alpha)
            for _ in range(convs_per_block):
                layers.append(MixedOp([nn.Conv2d(in_ch, out_ch, k, padding=k // 2,
                                                 bias=not batch_norm) for k in KERNEL_SIZES],
                                      alpha=alpha))
                if batch_norm:
                    layers.append(nn.BatchNorm2d(out_ch))
                layers.append(nn.ReLU())
                in_ch = out_ch
            if pools:
                layers.append(MixedOp([POOL_LAYERS[p](pool_kernel) for p in POOL_TYPES],
                                      alpha=self.pool_alpha))
        self.pools = any(pool_after)
        self.layers = nn.Sequential(*layers, *cnn_head(config, in_ch * size * size))

    def forward(self, x):
        return self.layers(x)

    def backward(self, dout):
        return self.layers.backward(dout)

    def _needs_input_grad_changed(self, value: bool) -> None:
        self.layers.needs_input_grad = value

    def arch_parameters(self) -> list:
        """The architecture parameters: each block's kernel alpha, then the pooling's."""
        return self.kernel_alphas + ([self.pool_alpha] if self.pools else [])

    def weight_parameters(self) -> list:
        """Every other parameter (the network's weights)."""
        arch = {id(p) for p in self.arch_parameters()} | {id(self.pool_alpha)}
        return [p for p in self.parameters() if id(p) not in arch]

    def choices(self) -> dict:
        """``{parameter name: (candidates, softmax weights as a list)}`` in the space's names
        (``kernel_l0``, ..., ``pool_type``)."""
        out = {f"kernel_l{i}": (list(KERNEL_SIZES), _softmax_list(a))
               for i, a in enumerate(self.kernel_alphas)}
        if self.pools:
            out["pool_type"] = (list(POOL_TYPES), _softmax_list(self.pool_alpha))
        return out


def _softmax_list(alpha) -> list:
    """softmax(alpha) as a list of floats (computed in float64)."""
    return [float(v) for v in softmax(np.asarray(minidl.backend.to_numpy(alpha.data),
                                                dtype=np.float64))]


def derive(choices: dict) -> dict:
    """The discrete choice: each parameter's candidate with the largest weight (the first
    of ties)."""
    return {name: cands[int(np.argmax(w))] for name, (cands, w) in choices.items()}


def base_params(given: dict | None = None) -> dict:
    """Every parameter of the ``cnn`` space: its defaults, updated with ``given`` (checked
    as ``enqueue`` checks them; ValueError naming what is wrong)."""
    given = dict(given or {})
    check_values(SPACE, given)
    return {**get_space(SPACE).defaults, **given}


def derived_params(base: dict, chosen: dict) -> dict:
    """The derived configuration in the ``cnn`` space's parameters: ``base`` with the
    searched choices; only the names a trial of that depth asks for (what ``enqueue
    --params`` takes and a study stores)."""
    return params_asked(SPACE, {**base, **chosen})


@dataclass
class SearchResult:
    """What a search did: per-epoch records, the weights' trajectory, the final choice."""

    base: dict
    epochs_done: list = field(default_factory=list)     # one record per finished epoch
    trajectory: list = field(default_factory=list)      # {"step", "epoch", name: weights}
    choices: dict = field(default_factory=dict)         # final {name: (candidates, w)}
    steps: int = 0
    seconds: float = 0.0
    interrupted: bool = False
    n_params: int = 0

    @property
    def chosen(self) -> dict:
        return derive(self.choices)

    @property
    def params(self) -> dict:
        return derived_params(self.base, self.chosen)


def _cycle(dataset, batch_size, rng):
    """Validation batches without end: a fresh shuffle each time the split is used up."""
    while True:
        yield from iterate_batches(dataset, batch_size, shuffle=True, rng=rng)


def _step(net, loss_fn, optimizer, xb, yb, epoch, step):
    """``zero_grad -> forward -> loss -> backward -> optimizer.step``; (loss, correct)."""
    net.zero_grad()
    logits = net(xb)
    loss = float(loss_fn(logits, yb))
    if not math.isfinite(loss):
        raise NonFiniteLossError(epoch, step, loss)
    net.backward(loss_fn.backward())
    optimizer.step()
    return loss, int((minidl.backend.to_numpy(logits).argmax(axis=1) ==
                      minidl.backend.to_numpy(yb)).sum())


def search(base: dict, train, val, epochs: int, seed: int = 0,
           arch_lr: float = DEFAULT_ARCH_LR, log=None, progress=None,
           record_every: int = RECORD_EVERY) -> SearchResult:
    """Run first-order DARTS for ``epochs`` passes over ``train``; a ``SearchResult``.

    ``base``: every ``cnn`` parameter (``base_params``); its configuration fixes what is
    not searched, and its optimizer, learning rate, schedule, weight decay, batch size
    and augmentation train the weights.  ``seed`` initialises the weights and orders the
    batches.  ``log(line)``: one line per epoch; ``progress(text)``: a status line
    during the epoch (about twice a second).  Ctrl-C (KeyboardInterrupt) ends the search
    early with ``interrupted`` set: what was learned so far is returned, never lost.
    """
    config = config_from_params(SPACE, base)
    minidl.manual_seed(int(seed))
    net = SuperNet(config)
    net.needs_input_grad = False            # the data need no gradient
    weight_opt = make_optimizer(config, net.weight_parameters())
    scheduler = make_scheduler(config, weight_opt, int(epochs))
    arch_opt = optim.Adam(net.arch_parameters(), lr=float(arch_lr), betas=ARCH_BETAS,
                          weight_decay=ARCH_WEIGHT_DECAY)
    loss_fn = nn.CrossEntropyLoss()
    augment = make_augment(config)
    batch_size = int(config["batch_size"])
    train_rng = np.random.default_rng(np.random.SeedSequence([int(seed), 1]))
    val_batches = _cycle(val, batch_size, np.random.default_rng(
        np.random.SeedSequence([int(seed), 2])))
    n_steps = -(-len(train) // batch_size)
    result = SearchResult(base=dict(base), n_params=net.num_parameters())

    def record(step, epoch_float):
        result.trajectory.append({"step": step, "epoch": epoch_float,
                                  **{name: w for name, (_, w) in net.choices().items()}})

    start = time.perf_counter()
    record(0, 0.0)
    try:
        for epoch in range(1, int(epochs) + 1):
            t_epoch, last_progress = time.perf_counter(), 0.0
            lr = float(weight_opt.param_groups[0]["lr"])     # the rate this epoch starts with
            net.train()
            sums = {"train_loss": 0.0, "train_correct": 0, "arch_loss": 0.0,
                    "arch_correct": 0, "train_seen": 0, "arch_seen": 0}
            batches = iterate_batches(train, batch_size, shuffle=True, rng=train_rng,
                                      augment=augment)
            for step, (xt, yt) in enumerate(batches, start=1):
                xv, yv = next(val_batches)
                # architecture step: validation batch, the weights as they are (first order)
                loss, correct = _step(net, loss_fn, arch_opt, xv, yv, epoch, step)
                sums["arch_loss"] += loss * len(yv)
                sums["arch_correct"] += correct
                sums["arch_seen"] += len(yv)
                # weight step: training batch, the architecture as it now is
                loss, correct = _step(net, loss_fn, weight_opt, xt, yt, epoch, step)
                sums["train_loss"] += loss * len(yt)
                sums["train_correct"] += correct
                sums["train_seen"] += len(yt)
                result.steps += 1
                if result.steps % record_every == 0:
                    record(result.steps, result.steps / n_steps)
                now = time.perf_counter()
                if progress is not None and (now - last_progress > 0.5 or step == n_steps):
                    last_progress = now
                    progress(f"epoch {epoch}/{epochs} step {step}/{n_steps} train_loss "
                             f"{sums['train_loss'] / sums['train_seen']:.4f} arch_val_loss "
                             f"{sums['arch_loss'] / sums['arch_seen']:.4f} "
                             f"({now - t_epoch:.0f}s) {weights_text(net.choices())}")
            scores = evaluate(net, val, loss_fn=loss_fn)
            if scheduler is not None:
                scheduler.step()
            rec = {"epoch": epoch,
                   "train_loss": sums["train_loss"] / sums["train_seen"],
                   "train_accuracy": sums["train_correct"] / sums["train_seen"],
                   "arch_val_loss": sums["arch_loss"] / sums["arch_seen"],
                   "val_loss": scores["loss"], "val_error": scores["error"],
                   "seconds": time.perf_counter() - t_epoch,
                   "lr": lr,
                   "choices": {name: w for name, (_, w) in net.choices().items()}}
            result.epochs_done.append(rec)
            if result.steps % record_every:
                record(result.steps, float(epoch))
            if log is not None:
                log(f"  epoch {epoch}/{epochs} train_loss {rec['train_loss']:.4f} "
                    f"val_error {rec['val_error']:.4f} (supernet) "
                    f"{weights_text(net.choices())} ({rec['seconds']:.1f}s)")
    except KeyboardInterrupt:
        result.interrupted = True
        if result.trajectory[-1]["step"] != result.steps:
            record(result.steps, result.steps / n_steps)
    finally:
        result.choices = net.choices()
        result.seconds = time.perf_counter() - start
    return result


def weights_text(choices: dict) -> str:
    """``kernel_l0 5 (0.41) pool_type avg (0.55)``: each choice's leader and its weight."""
    parts = []
    for name, (cands, w) in choices.items():
        k = int(np.argmax(w))
        parts.append(f"{name} {cands[k]} ({w[k]:.2f})")
    return " ".join(parts)


# -- results ------------------------------------------------------------------------------

# Every file a search writes into its folder (``tuning.outputs.OutputFolder``'s names).
DARTS_FILES = ("params.json", "darts.json", "alphas.png")


def output_folder(out_dir, overwrite: bool = False) -> OutputFolder:
    """``out_dir`` as the ``OutputFolder`` of a search (``DARTS_FILES``): it replaces
    only files an earlier search left there, unless ``overwrite``."""
    if isinstance(out_dir, OutputFolder):
        return out_dir
    return OutputFolder(out_dir, "darts", DARTS_FILES, overwrite=overwrite)


def save(result: SearchResult, out_dir, settings: dict, overwrite: bool = False) -> dict:
    """Write ``params.json`` (the derived configuration's ``cnn`` parameters),
    ``darts.json`` (everything: settings, per-epoch records, the weights' trajectory,
    the final weights) and ``alphas.png`` (the architecture weights over the search)
    into ``out_dir`` (a folder or an ``OutputFolder``); returns the ``darts.json`` dict.

    Each file is renamed into place whole (a second Ctrl-C never leaves half a file);
    TuningError, before anything is written, when the folder holds a file of those
    names that no earlier search left there (unless ``overwrite``)."""
    from .report import dumps  # noqa: PLC0415
    folder = output_folder(out_dir, overwrite)
    folder.check()
    params = result.params
    summary = {
        "space": SPACE,
        "method": "DARTS, first order (Liu et al. 2019)",
        "interrupted": result.interrupted,
        "settings": settings,
        "base_params": result.base,
        "derived": result.chosen,
        "params": params,
        "config": config_from_params(SPACE, params),
        "final_weights": {name: {"candidates": cands, "weights": w}
                          for name, (cands, w) in result.choices.items()},
        "epochs": result.epochs_done,
        "steps": result.steps,
        "search_seconds": result.seconds,
        "supernet_params": result.n_params,
        "trajectory": result.trajectory,
    }
    folder.write_text("params.json", dumps(params) + "\n")
    folder.write_text("darts.json", dumps(summary) + "\n")
    folder.write("alphas.png", lambda path: plot_weights(result, path))
    return summary


def plot_weights(result: SearchResult, path) -> None:
    """One panel per searched parameter: each candidate's weight softmax(alpha) against
    the epoch (fractional: records every ``RECORD_EVERY`` steps)."""
    import matplotlib  # noqa: PLC0415 - plotting only here
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415
    names = list(result.choices)
    fig, axes = plt.subplots(1, len(names), figsize=(3.6 * len(names), 3.2), squeeze=False,
                             sharey=True)
    x = [r["epoch"] for r in result.trajectory]
    for ax, name in zip(axes[0], names):
        cands, final = result.choices[name]
        for k, cand in enumerate(cands):
            ax.plot(x, [r[name][k] for r in result.trajectory],
                    label=f"{cand}" + (" (chosen)" if k == int(np.argmax(final)) else ""))
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    axes[0][0].set_ylabel("weight softmax(alpha)")
    what = " (interrupted)" if result.interrupted else ""
    fig.suptitle(f"DARTS on the cnn space: architecture weights over the search{what}")
    fig.tight_layout()
    tmp = Path(str(path) + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)


def searched_names(base: dict) -> list:
    """The parameters a search with these base parameters decides, in order."""
    return list(SuperNet(config_from_params(SPACE, base)).choices())
