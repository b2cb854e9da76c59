"""The final step: train the best configuration on all training data, test it once.

``retrain_best`` trains the study's best configuration on the training and validation
parts together (all 60 000 training images unless ``train_size`` subsamples them) for
the study's number of epochs, evaluates the model once on the 10 000 test images, and
writes ``model.npz`` (``minidl.save``, with the config and test accuracy as metadata),
``result.json`` (with per-class accuracy and the confusion matrix), ``confusion_matrix.png``,
``misclassified.png`` and ``model.txt`` into the output folder (``tuning.results``;
``tuning.load_model(folder)`` gives the model back).

``fit`` validates after every epoch; here there is no held-out data left to select
with, so it monitors the first ``MONITOR_SIZE`` training images (reported as
``train_monitor_accuracy``, a training accuracy, not a validation one).
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

import minidl
from minidl.train import NonFiniteLossError, evaluate

from .data import retrain_data, test_data
from .objective import train_config
from .report import best_trial, dumps
from .results import write_test_report
from .spaces import config_from_params
from .storage import TuningError

MONITOR_SIZE = 1000


def retrain_best(study, settings, out_dir, epochs: int | None = None,
                 train_size: int | None = None, device: str = "cpu", progress=False,
                 log=None) -> dict:
    """Retrain the best trial's configuration, test it once, save it; the result dict."""
    best = best_trial(study)
    config = config_from_params(settings.space, best.params)
    epochs = settings.epochs if epochs is None else int(epochs)
    train = retrain_data(train_size, settings.seed)
    monitor = train.subset(np.arange(min(MONITOR_SIZE, len(train))))

    def log_epoch(epoch, record):
        if log is not None:
            log(f"  retrain epoch {epoch}/{epochs} train_loss {record['train_loss']:.4f} "
                f"({record['seconds']:.1f}s)")

    start = time.perf_counter()
    try:
        model, history = train_config(config, train, monitor, epochs, seed=settings.seed,
                                      callbacks=[log_epoch], device=device,
                                      progress=progress)
    except NonFiniteLossError as exc:
        raise TuningError(f"retraining trial {best.number}'s configuration diverged: {exc}") \
            from None
    train_seconds = time.perf_counter() - start
    test = test_data()
    scores = evaluate(model, test)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model_path = out / "model.npz"
    result = {
        "study_name": study.study_name,
        "space": settings.space,
        "trial": best.number,
        "validation_error": best.value,
        "params": best.params,
        "config": config,
        "epochs": epochs,
        "train_size": len(train),
        "seed": settings.seed,
        "n_params": model.num_parameters(),
        "train_seconds": train_seconds,
        "final_train_loss": history.epochs[-1]["train_loss"],
        "train_monitor_accuracy": history.epochs[-1]["val_accuracy"],
        "test_accuracy": scores["accuracy"],
        "test_error": scores["error"],
        "test_loss": scores["loss"],
        "model_file": model_path.name,
    }
    result.update(write_test_report(
        model, test, out, f"{study.study_name}, trial {best.number}: test accuracy "
                          f"{scores['accuracy']:.4f}"))
    minidl.save(model, model_path, config=config,
                test_accuracy=float(scores["accuracy"]), study_name=study.study_name,
                trial=int(best.number))
    (out / "result.json").write_text(dumps(result) + "\n")
    return result
