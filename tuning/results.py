"""What a retrain leaves for people to use: per-class results, pictures, and the model back.

``retrain`` (``tuning.retrain``) calls ``write_test_report`` after its one test-set pass;
it adds to the output folder:

- ``result.json``'s ``per_class`` (accuracy, count and the most frequent wrong answer for
  each of the ten classes) and ``confusion_matrix`` (rows: true class, columns: predicted);
- ``confusion_matrix.png``: that matrix, as row fractions, with the counts written in;
- ``misclassified.png``: up to 25 test images the model got wrong, with both labels;
- ``model.txt``: the network, layer by layer, and its parameter count.

(``RETRAIN_FILES``, with ``model.npz`` and ``result.json``; ``tuning.outputs`` keeps a
retrain from replacing such a file it did not write.)

``tuning.loading.load_model(folder)`` (``tuning.load_model``) rebuilds the network from
``result.json``'s config and loads ``model.npz`` into it, safely for a folder from anyone.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .outputs import OutputFolder

# Fashion-MNIST's ten labels, in label order (0 = T-shirt/top ... 9 = Ankle boot)
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
           "Sneaker", "Bag", "Ankle boot")
MISCLASSIFIED_SHOWN = 25
# Every file `retrain` writes into its folder (``tuning.outputs.OutputFolder``'s names).
RETRAIN_FILES = ("model.npz", "result.json", "confusion_matrix.png", "misclassified.png",
                 "model.txt")


def predict(model, x, batch_size: int = 1000) -> np.ndarray:
    """The predicted class (argmax of the logits) of every sample of ``x``, in eval mode."""
    from minidl import backend  # noqa: PLC0415

    ref = next(iter(model.parameters()), None)
    model.eval()
    out = []
    for i in range(0, len(x), batch_size):
        xb = x[i:i + batch_size]
        logits = model(xb if ref is None else backend.asarray_like(xb, ref.data))
        out.append(backend.to_numpy(logits.argmax(axis=1)))
    return np.concatenate(out)


def confusion_matrix(y_true, y_pred, n_classes: int) -> np.ndarray:
    """``C[t, p]`` = how many samples of class ``t`` were predicted as ``p``."""
    counts = np.zeros((n_classes, n_classes), np.int64)
    np.add.at(counts, (np.asarray(y_true), np.asarray(y_pred)), 1)
    return counts


def per_class(matrix: np.ndarray, classes=CLASSES) -> list[dict]:
    """Accuracy, count and the most frequent wrong answer of each true class."""
    rows = []
    for t, name in enumerate(classes):
        total = int(matrix[t].sum())
        wrong = matrix[t].copy()
        wrong[t] = 0
        confused = int(wrong.argmax())
        rows.append({"class": name, "count": total,
                     "accuracy": float(matrix[t, t] / total) if total else None,
                     "most_confused_with": classes[confused] if wrong[confused] else None})
    return rows


def per_class_table(rows: list[dict]) -> str:
    """``per_class`` as aligned text for the terminal."""
    lines = [f"{'class':12s} {'accuracy':>8s} {'count':>6s}  most confused with"]
    for r in rows:
        acc = "-" if r["accuracy"] is None else f"{r['accuracy']:.4f}"
        lines.append(f"{r['class']:12s} {acc:>8s} {r['count']:6d}  "
                     f"{r['most_confused_with'] or '-'}")
    return "\n".join(lines)


def _plot_confusion(matrix: np.ndarray, path: Path, title: str) -> None:
    import matplotlib  # noqa: PLC0415 - plotting only when asked
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415
    totals = matrix.sum(axis=1, keepdims=True)
    fractions = matrix / np.maximum(totals, 1)
    fig, ax = plt.subplots(figsize=(8.5, 7.5))
    image = ax.imshow(fractions, cmap="Blues", vmin=0, vmax=1)
    n = len(matrix)
    for t in range(n):
        for p in range(n):
            if matrix[t, p]:
                ax.text(p, t, str(matrix[t, p]), ha="center", va="center", fontsize=7,
                        color="white" if fractions[t, p] > 0.5 else "black")
    ax.set_xticks(range(n), CLASSES[:n], rotation=45, ha="right")
    ax.set_yticks(range(n), CLASSES[:n])
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title)
    fig.colorbar(image, ax=ax, label="fraction of the true class")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_misclassified(images: np.ndarray, y_true, y_pred, path: Path) -> None:
    import matplotlib  # noqa: PLC0415
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415
    wrong = np.flatnonzero(np.asarray(y_true) != np.asarray(y_pred))[:MISCLASSIFIED_SHOWN]
    cols = 5
    rows = max(1, -(-len(wrong) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 2.0, rows * 2.3), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, i in zip(axes.ravel(), wrong):
        ax.imshow(images[i].reshape(images.shape[-2], images.shape[-1]), cmap="gray_r")
        ax.set_title(f"true {CLASSES[y_true[i]]}\npred {CLASSES[y_pred[i]]}", fontsize=7)
    fig.suptitle(f"First {len(wrong)} misclassified test images")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_test_report(model, test, folder, title: str) -> dict:
    """Predict ``test`` once more, write the pictures and ``model.txt`` into ``folder``;
    returns ``{"per_class": ..., "confusion_matrix": ...}`` for ``result.json``.

    ``folder``: a ``tuning.outputs.OutputFolder`` (checked by the caller before its
    work), or a plain folder path, whose files of those names are replaced as they are.
    """
    if not isinstance(folder, OutputFolder):
        folder = OutputFolder(folder, "retrain", RETRAIN_FILES, overwrite=True)
    y_pred = predict(model, test.x)
    y_true = np.asarray(test.y)
    matrix = confusion_matrix(y_true, y_pred, len(CLASSES))
    folder.write("confusion_matrix.png", lambda path: _plot_confusion(matrix, path, title))
    folder.write("misclassified.png", lambda path: _plot_misclassified(
        np.asarray(test.x), y_true, y_pred, path))
    folder.write_text("model.txt", f"{model!r}\n\nparameters: {model.num_parameters():,}\n")
    return {"per_class": per_class(matrix), "confusion_matrix": matrix.tolist()}
