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
``tuning.load_model(folder)`` gives the model back).  A file of those names that no
earlier retrain left in the folder is never replaced: the retrain refuses before
training, unless ``overwrite`` (``tuning.outputs``).

``seed`` (``retrain --seed S``) sets the weight initialisation and batch order (default:
the study's seed); a ``train_size`` subsample is drawn with the study's seed, so retrains
with several seeds train on the same images.  ``retrain_params`` retrains a space's
parameters given directly (``retrain --params FILE --space SPACE``, e.g. the
``params.json`` of ``tuning darts``), without a study.

``fit`` validates after every epoch; here there is no held-out data left to select
with, so it monitors the first ``MONITOR_SIZE`` training images (reported as
``train_monitor_accuracy``, a training accuracy, not a validation one).
"""
from __future__ import annotations

import time

import numpy as np

import minidl
from minidl.train import NonFiniteLossError, evaluate

from .data import retrain_data, test_data
from .objective import train_config
from optuna.trial import TrialState

from .outputs import OutputFolder
from .report import best_trial, dumps, is_multi, metric_names, pareto_front
from .results import RETRAIN_FILES, write_test_report
from .spaces import config_from_params, get_space
from .errors import TuningError

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
                 log=None, trial: int | None = None, seed: int | None = None,
                 overwrite: bool = False) -> dict:
    """Retrain the best trial's configuration (or trial number ``trial``'s), test it
    once, save it; the result dict.

    ``seed``: the weight initialisation and batch order of this retrain (default: the
    study's seed); a ``train_size`` subsample is drawn with the study's seed either way,
    so retrains with several seeds see the same images.  ``out_dir``: a folder, or a
    ``tuning.outputs.OutputFolder``; before training, TuningError when it holds a file
    of a retrain's names that no retrain left there (unless ``overwrite``).
    """
    best = choose_trial(study, trial)
    config = config_from_params(settings.space, best.params)
    result = {"study_name": study.study_name, "space": settings.space, "trial": best.number,
              "validation_error": best.values[0] if best.values else None,
              "params": best.params, "config": config}
    if is_multi(study):
        result["objectives"] = (None if best.values is None
                                else dict(zip(metric_names(study), best.values)))
    return _retrain(result, out_dir, settings.epochs if epochs is None else int(epochs),
                    train_size, settings.seed, settings.seed if seed is None else int(seed),
                    device, progress, log, f"{study.study_name}, trial {best.number}",
                    f"trial {best.number}'s configuration", overwrite)


def params_config(space_name: str, params: dict) -> tuple[dict, dict]:
    """``(params, config)`` of a space for the given parameter values; parameters left
    out take the space's defaults, and ``params`` holds every value the space used."""
    import optuna  # noqa: PLC0415

    space = get_space(space_name)
    fixed = optuna.trial.FixedTrial({**space.defaults, **params})
    config = space.function(fixed)
    return dict(fixed.params), config


def retrain_params(space_name: str, params: dict, out_dir, epochs: int | None = None,
                   train_size: int | None = None, seed: int = 0, device: str = "cpu",
                   progress=False, log=None, overwrite: bool = False) -> dict:
    """Retrain a configuration given as a space's parameters (e.g. ``tuning darts``'s
    ``params.json``), without a study; test it once, save it; the result dict (its
    ``study_name`` and ``trial`` are None).  ``epochs`` defaults to the space's default
    for a study; ``seed`` draws a ``train_size`` subsample, the weights and batch order.
    ``out_dir`` and ``overwrite`` as for ``retrain_best``."""

    params, config = params_config(space_name, params)
    result = {"study_name": None, "space": space_name, "trial": None,
              "validation_error": None, "params": params, "config": config}
    epochs = get_space(space_name).epochs if epochs is None else int(epochs)
    return _retrain(result, out_dir, epochs, train_size, int(seed), int(seed), device,
                    progress, log, f"{space_name} configuration", "the configuration",
                    overwrite)


def output_folder(out_dir, overwrite: bool = False) -> OutputFolder:
    """``out_dir`` as the ``OutputFolder`` of a retrain (``RETRAIN_FILES``)."""
    if isinstance(out_dir, OutputFolder):
        return out_dir
    return OutputFolder(out_dir, "retrain", RETRAIN_FILES, overwrite=overwrite)


def _retrain(result: dict, out_dir, epochs: int, train_size, data_seed: int, seed: int,
             device, progress, log, title: str, what: str, overwrite: bool) -> dict:
    """Train ``result["config"]`` on the training images, test it once, write the folder."""
    config = result["config"]
    folder = output_folder(out_dir, overwrite)
    folder.check()                     # before training: a refusal loses nothing
    train = retrain_data(train_size, data_seed)
    monitor = train.subset(np.arange(min(MONITOR_SIZE, len(train))))

    def log_epoch(epoch, record):
        if log is not None:
            log(f"  retrain epoch {epoch}/{epochs} train_loss {record['train_loss']:.4f} "
                f"({record['seconds']:.1f}s)")

    start = time.perf_counter()
    try:
        model, history = train_config(config, train, monitor, epochs, seed=seed,
                                      callbacks=[log_epoch], device=device,
                                      progress=progress)
    except NonFiniteLossError as exc:
        raise TuningError(f"retraining {what} diverged: {exc}") from None
    train_seconds = time.perf_counter() - start
    test = test_data()
    scores = evaluate(model, test)

    result.update({
        "epochs": epochs,
        "train_size": len(train),
        "seed": seed,
        "n_params": model.num_parameters(),
        "train_seconds": train_seconds,
        "final_train_loss": history.epochs[-1]["train_loss"],
        "train_monitor_accuracy": history.epochs[-1]["val_accuracy"],
        "test_accuracy": scores["accuracy"],
        "test_error": scores["error"],
        "test_loss": scores["loss"],
        "model_file": "model.npz",
    })
    result.update(write_test_report(
        model, test, folder, f"{title}: test accuracy {scores['accuracy']:.4f}"))
    folder.write("model.npz", lambda path: minidl.save(
        model, path, config=config, test_accuracy=float(scores["accuracy"]),
        study_name=result["study_name"],
        trial=None if result["trial"] is None else int(result["trial"])))
    folder.write_text("result.json", dumps(result) + "\n")
    return result
