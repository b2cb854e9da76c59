"""The final step: train the best configuration on all training data, test it once.

``trial=N`` retrains trial N's configuration instead of the best (any COMPLETE or PRUNED
trial); a multi-objective study has no single best trial, so there it is required (the
error names the Pareto-front trials).

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
from optuna.trial import TrialState

from .report import best_trial, dumps, is_multi, metric_names, pareto_front
from .results import write_test_report
from .spaces import config_from_params
from .storage import TuningError

MONITOR_SIZE = 1000


def choose_trial(study, number: int | None = None):
    """Trial ``number`` (COMPLETE or PRUNED), or the best trial when None; TuningError
    otherwise (for a multi-objective study without ``number``: naming its Pareto front)."""
    if number is None:
        return best_trial(study)
    trials = study.get_trials(deepcopy=False)
    found = [t for t in trials if t.number == number]
    if not found:
        raise TuningError(f"--trial {number}: study {study.study_name!r} has no trial "
                          f"{number} (its trials are 0..{len(trials) - 1})"
                          if trials else f"--trial {number}: the study has no trials")
    trial = found[0]
    if trial.state not in (TrialState.COMPLETE, TrialState.PRUNED) or not trial.params:
        hint = ""
        if is_multi(study):
            try:
                hint = "; the Pareto front is trials " + ", ".join(
                    str(t.number) for t in pareto_front(study))
            except TuningError:
                pass
        raise TuningError(f"--trial {number}: trial {number} is {trial.state.name}, not a "
                          f"finished trial (COMPLETE or PRUNED) with parameters{hint}")
    return trial


def retrain_best(study, settings, out_dir, epochs: int | None = None,
                 train_size: int | None = None, device: str = "cpu", progress=False,
                 log=None, trial: int | None = None) -> dict:
    """Retrain the best trial's configuration (or trial number ``trial``'s), test it
    once, save it; the result dict."""
    best = choose_trial(study, trial)
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
        "validation_error": best.values[0] if best.values else None,
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
    if is_multi(study):
        result["objectives"] = (None if best.values is None
                                else dict(zip(metric_names(study), best.values)))
    result.update(write_test_report(
        model, test, out, f"{study.study_name}, trial {best.number}: test accuracy "
                          f"{scores['accuracy']:.4f}"))
    minidl.save(model, model_path, config=config,
                test_accuracy=float(scores["accuracy"]), study_name=study.study_name,
                trial=int(best.number))
    (out / "result.json").write_text(dumps(result) + "\n")
    return result
