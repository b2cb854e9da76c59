"""The training loop: ``fit`` a model for some epochs, ``evaluate`` it in batches.

    from minidl import nn, optim
    from minidl.train import fit, evaluate
    history = fit(model, nn.CrossEntropyLoss(), optim.Adam(model.parameters(), lr=1e-3),
                  train, val, epochs=5, batch_size=64, early_stopping_patience=3)
    history.epochs[-1]["val_accuracy"], history.stop_reason, history.best_epoch

One epoch is: shuffle the training set (a fresh permutation, without replacement),
for each mini-batch ``zero_grad -> forward -> loss -> backward -> step``, then evaluate
on the validation set in eval mode, append a record to the history, step the
scheduler, call the callbacks and check early stopping.  Nothing else happens.

Epochs and steps are numbered from 1 (epoch 1 is the first epoch, step 1 the first
mini-batch of an epoch), in the history, in ``NonFiniteLossError`` and in callbacks.
"""
from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from . import _checks, backend, performance
from .grad_mode import no_grad
from .random import manual_seed

__all__ = ["fit", "evaluate", "History", "NonFiniteLossError"]

STOP_REASONS = ("completed", "early_stopping", "callback")


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite; training stopped at once.

    ``epoch`` and ``step`` (both counted from 1; ``step`` is the mini-batch index within
    the epoch) locate the batch whose loss was ``loss``.  When it is raised, the
    optimizer has not stepped on that batch and no history record exists for that epoch.
    """

    def __init__(self, epoch: int, step: int, loss: float):
        self.epoch = int(epoch)
        self.step = int(step)
        self.loss = float(loss)
        super().__init__(
            f"non-finite training loss {self.loss} at epoch {self.epoch}, step {self.step} "
            f"(the optimizer did not step on this batch); lower the learning rate or check "
            f"the data for NaN/inf")

    def __reduce__(self):  # keep (epoch, step, loss) through pickling (e.g. subprocesses)
        return type(self), (self.epoch, self.step, self.loss)


@dataclass
class History:
    """What ``fit`` did, one record per completed epoch.

    ``epochs[i]`` is a dict with keys:

    - ``epoch``: epoch number, from 1.
    - ``train_loss``: mean training loss over the epoch's samples (each batch's mean loss
      weighted by its size; dropout active, parameters changing along the epoch).
    - ``val_loss``, ``val_accuracy``, ``val_error`` (= 1 - accuracy): on the validation
      set after the epoch, in eval mode (see ``evaluate``).
    - ``seconds``: wall time of the whole epoch (training and validation).
    - ``images_per_sec``: training samples per second of the training phase alone.
    - ``lr``: learning rate of the first parameter group during this epoch (before the
      scheduler stepped at its end).

    ``stop_reason`` is ``"completed"``, ``"early_stopping"`` or ``"callback"``.
    ``best_epoch`` is the epoch number with the lowest validation loss (first of ties;
    None before any epoch).  The weights at the end of ``fit`` are the last epoch's,
    not the best epoch's.
    """

    epochs: list = field(default_factory=list)
    stop_reason: str = "completed"

    @property
    def best_epoch(self):
        best, best_loss = None, math.inf
        for rec in self.epochs:
            if rec["val_loss"] < best_loss:
                best, best_loss = rec["epoch"], rec["val_loss"]
        return best

    def __len__(self):
        return len(self.epochs)

    def to_dict(self) -> dict:
        """Plain data (lists, dicts, floats) for JSON."""
        return {"epochs": [dict(r) for r in self.epochs], "stop_reason": self.stop_reason,
                "best_epoch": self.best_epoch}


# -- helpers ------------------------------------------------------------------

def _check_dataset(name, data, fn):
    for attr in ("x", "y"):
        if not hasattr(data, attr):
            raise TypeError(
                f"{fn}: expected {name} to be a dataset with .x and .y (e.g. "
                f"minidl.data.ArrayDataset), got {type(data).__name__}")
    if len(data.x) != len(data.y):
        raise ValueError(f"{fn}: {name}.x has {len(data.x)} samples but {name}.y has "
                         f"{len(data.y)}")
    if len(data.x) == 0:
        raise ValueError(f"{fn}: {name} is empty")


def _device_reference(model):
    """A parameter array of ``model``: batches are moved to its device (numpy or cupy)."""
    for p in model.parameters():
        return p.data
    return None


def _to_model_device(a, ref):
    return a if ref is None else backend.asarray_like(a, ref)


def _modes(model):
    return [(m, m.training) for m in model.modules()]


def _restore_modes(saved):
    for m, training in saved:
        m.training = training


def _default_loss():
    from .nn import CrossEntropyLoss  # noqa: PLC0415 - keeps the train module light
    return CrossEntropyLoss()


# -- evaluate -------------------------------------------------------------------

def evaluate(model, data, batch_size: int = 1000, loss_fn=None) -> dict:
    """Loss, accuracy and error of ``model`` on ``data``, in eval mode, in batches.

    Parameters
    ----------
    model : Module mapping a batch ``x[i:i+batch_size]`` to logits ``(n, C)``.
    data : dataset with ``.x`` (N, ...) and integer labels ``.y`` (N,).
    batch_size : int, samples per forward pass; memory is bounded by one batch's
        activations whatever N is (batches are slices, so views, of ``data.x``).
    loss_fn : loss module (``loss_fn(logits, y) -> float``, mean over the batch);
        ``CrossEntropyLoss()`` when None.

    Returns
    -------
    dict with ``"loss"`` (mean over all N samples: batch means weighted by batch size),
    ``"accuracy"`` (fraction with argmax of the logits equal to the label; ties go to the
    first class, as ``argmax``) and ``"error"`` (1 - accuracy), all Python floats.

    On a GPU the images of each batch are moved to the model's device and the labels
    given to ``loss_fn`` as the data holds them (see ``fit``); each batch's loss is one
    copy to the host, and the count of correct answers, kept on the device, one more at
    the end.

    The model is put in eval mode (Dropout off) and every submodule's previous mode is
    restored on return, also when an exception (or Ctrl-C) interrupts it.  The passes
    run inside ``minidl.no_grad()``: recurrent layers keep no backward cache.
    """
    _checks.positive_int("evaluate", "batch_size", batch_size)
    _check_dataset("data", data, "evaluate")
    performance.apply()     # process-wide settings (malloc), once; see minidl.performance
    if loss_fn is None:
        loss_fn = _default_loss()
    ref = _device_reference(model)
    n = len(data.x)
    saved = _modes(model)
    model.eval()
    try:
        loss_sum, correct = 0.0, 0
        for start in range(0, n, batch_size):
            xb = _to_model_device(data.x[start:start + batch_size], ref)
            yb = data.y[start:start + batch_size]
            with no_grad():
                logits = model(xb)
            if logits.ndim != 2 or logits.shape[0] != len(yb):
                raise ValueError(
                    f"evaluate: expected the model to return logits of shape "
                    f"({len(yb)}, C), got {tuple(logits.shape)}")
            loss_sum += float(loss_fn(logits, yb)) * len(yb)
            xp = backend.xp(logits)
            # counted where the logits are, read back once at the end
            correct = correct + xp.sum(xp.argmax(logits, axis=1)
                                       == backend.asarray_like(yb, logits))
    finally:
        _restore_modes(saved)
    accuracy = int(correct) / n
    return {"loss": loss_sum / n, "accuracy": accuracy, "error": 1.0 - accuracy}


# -- progress bar ----------------------------------------------------------------

class _ProgressBar:
    """One line per epoch on ``stream``, redrawn in place with ``\\r``.

    Redraws at most ``1 / min_interval`` times a second.  ``close()`` finishes a line
    left open (an exception or Ctrl-C in the middle of an epoch), so the shell prompt or
    the traceback starts on a fresh line.
    """

    WIDTH = 20

    def __init__(self, stream, epochs: int, min_interval: float = 0.1):
        self.stream = stream
        self.epochs = epochs
        self.min_interval = min_interval
        self.open_line = False
        self.last_width = 0
        self.last_draw = -math.inf

    def _write(self, text: str, end: str = "", done: int = 1, total: int = 1):
        pad = max(0, self.last_width - len(text))
        self.stream.write("\r" + text + " " * pad + end)
        self.stream.flush()
        self.last_width = 0 if end else len(text)
        self.open_line = not end

    def _bar(self, done, total):
        filled = self.WIDTH * done // total if total else self.WIDTH
        return "[" + "#" * filled + "." * (self.WIDTH - filled) + "]"

    def update(self, epoch, step, n_steps, loss, images_per_sec):
        now = time.monotonic()
        if step != n_steps and now - self.last_draw < self.min_interval:
            return
        self.last_draw = now
        self._write(f"epoch {epoch}/{self.epochs} {self._bar(step, n_steps)} "
                    f"{step}/{n_steps} loss {loss:.4f} {images_per_sec:,.0f} img/s",
                    done=step, total=n_steps)

    def end_epoch(self, rec, n_steps):
        self._write(
            f"epoch {rec['epoch']}/{self.epochs} {self._bar(n_steps, n_steps)} "
            f"loss {rec['train_loss']:.4f} val_loss {rec['val_loss']:.4f} "
            f"val_acc {rec['val_accuracy']:.4f} {rec['images_per_sec']:,.0f} img/s "
            f"{rec['seconds']:.1f}s", end="\n")
        self.last_draw = -math.inf

    def close(self):
        if self.open_line:
            self.stream.write("\n")
            self.stream.flush()
            self.open_line = False


class _NotebookProgress(_ProgressBar):
    """The same line in a Jupyter notebook: one output per epoch, updated in place.

    Each epoch's line is a display (``IPython.display.display(..., display_id=True)``)
    whose content is replaced as the epoch advances, with an HTML ``<progress>`` bar and
    the terminal's text as the plain-text form, so a saved notebook shows every
    epoch's final line.  Needs no ipywidgets.
    """

    def __init__(self, epochs: int, min_interval: float = 0.25):
        super().__init__(None, epochs, min_interval)
        self.handle = None

    def _write(self, text: str, end: str = "", done: int = 1, total: int = 1):
        from IPython.display import display  # noqa: PLC0415 - only inside a notebook kernel
        import html  # noqa: PLC0415

        bundle = {"text/plain": text,
                  "text/html": f'<progress value="{done}" max="{max(total, 1)}" '
                               f'style="width:12em;vertical-align:middle"></progress> '
                               f'<code>{html.escape(text)}</code>'}
        if self.handle is None:
            self.handle = display(bundle, raw=True, display_id=True)
        else:
            self.handle.update(bundle, raw=True)
        self.open_line = not end
        if end:
            self.handle = None        # the next epoch gets a line of its own

    def close(self):
        self.open_line = False


def _in_notebook() -> bool:
    """True inside a Jupyter kernel (IPython's ZMQ shell); IPython is never imported here."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    try:
        shell = ipython.get_ipython()
    except Exception:  # noqa: BLE001 - a broken IPython install: draw as in a terminal
        return False
    return type(shell).__name__ == "ZMQInteractiveShell"


class _NoProgress:
    def update(self, *args):
        pass

    def end_epoch(self, *args):
        pass

    def close(self):
        pass


def _make_progress(progress, epochs):
    if progress is not None:
        _checks.boolean("fit", "progress", progress)
    if progress is False:
        return _NoProgress()
    if _in_notebook():
        return _NotebookProgress(epochs)
    if progress is None:
        isatty = getattr(sys.stderr, "isatty", None)
        progress = bool(isatty and isatty())
    return _ProgressBar(sys.stderr, epochs) if progress else _NoProgress()


# -- fit --------------------------------------------------------------------------

def fit(model, loss_fn, optimizer, train, val, epochs: int, batch_size: int,
        scheduler=None, early_stopping_patience=None, callbacks=(), seed: int = 0,
        augment=None, progress=None, eval_batch_size: int = 1000) -> History:
    """Train ``model`` on ``train`` for ``epochs`` epochs, validating after each.

    Parameters
    ----------
    model : Module, logits ``(batch, C)`` from a batch of ``train.x``.
    loss_fn : loss module: ``loss_fn(logits, y) -> float`` (mean over the batch) and
        ``loss_fn.backward() -> dL/dlogits`` (e.g. ``nn.CrossEntropyLoss()``); also used
        for the validation loss.
    optimizer : a ``minidl.optim`` optimizer over ``model.parameters()``.
    train, val : datasets with ``.x`` and integer labels ``.y`` (``minidl.data.ArrayDataset``).
        Each batch's images are moved to the model's device; their dtype is the data's
        (build the data in the model's dtype).  The labels go to ``loss_fn`` as the data
        holds them: ``CrossEntropyLoss`` checks host labels on the host and moves them to
        the logits' device itself, so a training step on a GPU copies exactly one value
        back to the host, the loss (for the running mean, the progress bar and the
        NaN/inf check).
    epochs, batch_size : positive ints.  The last batch of an epoch may be smaller.
    scheduler : optional ``minidl.optim.lr_scheduler`` scheduler, stepped once at the end
        of every epoch; ``ReduceLROnPlateau`` is stepped with the validation loss.
    early_stopping_patience : None, or a positive int ``p``: stop after ``p`` consecutive
        epochs whose validation loss is not strictly lower than the best so far.  The
        weights are left as they are after the last epoch (nothing is restored);
        ``History.best_epoch`` says which epoch was best.
    callbacks : iterable of ``cb(epoch, record) -> bool | None``, called in order after
        each epoch's record is in the history (``record`` is a copy).  ``True`` stops
        training after this epoch (``stop_reason="callback"``, the remaining callbacks
        of that epoch still run).  An exception raised by a callback (e.g.
        ``optuna.TrialPruned``) propagates out of ``fit``.
    seed : int.  ``minidl.manual_seed(seed)`` is called first (dropout masks) and the
        shuffling/augmentation generator is seeded from it: the same seed, data, initial
        weights and thread count give a bit-identical history (apart from ``seconds``
        and ``images_per_sec``).
    augment : optional ``augment(xb, rng) -> xb`` applied to training batches
        (``minidl.data.Augment``).
    progress : None shows a per-epoch bar on stderr only when stderr is a terminal, and
        in a Jupyter notebook a bar per epoch in the cell's output; False never; True
        always (in a notebook, the notebook bar).
    eval_batch_size : batch size of the validation passes (bounded memory).

    Returns
    -------
    History (see its docstring).

    Raises
    ------
    NonFiniteLossError
        When a training batch's loss is NaN or infinite.  It is raised before that batch's
        backward pass and optimizer step, so the parameters are those after the previous
        step; no record is added for that epoch and no callback runs for it.

    While training, ``model.needs_input_grad`` is False (the gradient with respect to
    the data is not computed; see ``minidl.nn.Module``); it is restored afterwards.
    Each submodule's train/eval mode from before the call is restored when ``fit``
    returns or raises (KeyboardInterrupt included; the progress line is finished first).
    """
    from .data import iterate_batches  # noqa: PLC0415 - data imports are not needed to import train

    _checks.positive_int("fit", "epochs", epochs)
    _checks.positive_int("fit", "batch_size", batch_size)
    _checks.positive_int("fit", "eval_batch_size", eval_batch_size)
    if early_stopping_patience is not None:
        _checks.positive_int("fit", "early_stopping_patience", early_stopping_patience)
    _checks.non_negative_int("fit", "seed", seed)
    if callable(callbacks):
        raise TypeError("fit: expected callbacks to be an iterable of callables; wrap a "
                         "single callback in a list")
    callbacks = list(callbacks)
    for cb in callbacks:
        if not callable(cb):
            raise TypeError(f"fit: every callback must be callable, got {cb!r}")
    _check_dataset("train", train, "fit")
    _check_dataset("val", val, "fit")
    plateau = _is_plateau_scheduler(scheduler)

    performance.apply()     # process-wide settings (malloc), once; see minidl.performance
    manual_seed(int(seed))
    # A stream distinct from the dropout generator's, derived from the same seed.
    data_rng = np.random.default_rng(np.random.SeedSequence([int(seed), 1]))
    ref = _device_reference(model)
    n_train = len(train.x)
    n_steps = -(-n_train // batch_size)
    bar = _make_progress(progress, epochs)
    history = History()
    best_val, bad_epochs = math.inf, 0
    saved_modes = _modes(model)
    # the gradient w.r.t. the input batch is never used: let the model skip it
    saved_needs_input_grad = model.needs_input_grad if hasattr(model, "needs_input_grad") else None
    try:
        if saved_needs_input_grad is not None:
            model.needs_input_grad = False
        for epoch in range(1, epochs + 1):
            t_epoch = time.perf_counter()
            lr = float(optimizer.param_groups[0]["lr"])
            model.train()
            loss_sum, seen = 0.0, 0
            batches = iterate_batches(train, batch_size, shuffle=True, rng=data_rng,
                                      augment=augment)
            for step, (xb, yb) in enumerate(batches, start=1):
                xb = _to_model_device(xb, ref)
                optimizer.zero_grad()
                loss = float(loss_fn(model(xb), yb))
                if not math.isfinite(loss):
                    raise NonFiniteLossError(epoch, step, loss)
                model.backward(loss_fn.backward())
                optimizer.step()
                loss_sum += loss * len(yb)
                seen += len(yb)
                bar.update(epoch, step, n_steps, loss_sum / seen,
                           seen / max(time.perf_counter() - t_epoch, 1e-12))
            train_seconds = time.perf_counter() - t_epoch
            scores = evaluate(model, val, eval_batch_size, loss_fn)
            record = {
                "epoch": epoch,
                "train_loss": loss_sum / seen,
                "val_loss": scores["loss"],
                "val_accuracy": scores["accuracy"],
                "val_error": scores["error"],
                "seconds": time.perf_counter() - t_epoch,
                "images_per_sec": seen / max(train_seconds, 1e-12),
                "lr": lr,
            }
            history.epochs.append(record)
            bar.end_epoch(record, n_steps)

            if scheduler is not None:
                if plateau:
                    scheduler.step(record["val_loss"])
                else:
                    scheduler.step()

            stop_asked = False
            for cb in callbacks:
                if cb(epoch, dict(record)):
                    stop_asked = True
            if stop_asked:
                history.stop_reason = "callback"
                break

            if record["val_loss"] < best_val:
                best_val, bad_epochs = record["val_loss"], 0
            else:
                bad_epochs += 1
            if early_stopping_patience is not None and bad_epochs >= early_stopping_patience:
                history.stop_reason = "early_stopping"
                break
    finally:
        bar.close()
        _restore_modes(saved_modes)
        if saved_needs_input_grad is not None:
            model.needs_input_grad = saved_needs_input_grad
    return history


def _is_plateau_scheduler(scheduler) -> bool:
    if scheduler is None:
        return False
    from .optim.lr_scheduler import ReduceLROnPlateau  # noqa: PLC0415
    return isinstance(scheduler, ReduceLROnPlateau)
