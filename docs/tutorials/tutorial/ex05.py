"""Exercise checks of notebook 5 (the lab's study): Optuna's median pruning rule, and the
confusion matrix."""
from __future__ import annotations

import warnings

import numpy as np

from . import CheckFailed, Result, compare_arrays, run_check

__all__ = ["check_should_prune", "check_confusion_matrix"]


def _scenarios(n=60, seed=0):
    """Random studies: (the running trial's values by step, the other trials, its step)."""
    rng = np.random.default_rng(seed)
    for _ in range(n):
        step = int(rng.integers(1, 5))
        values = {s: float(v) for s, v in enumerate(rng.uniform(0.1, 0.5, step), start=1)}
        others = []
        for _ in range(int(rng.integers(1, 7))):
            state = "complete" if rng.random() < 0.6 else "pruned"
            last = 4 if state == "complete" else int(rng.integers(1, 5))
            others.append((state, {s: float(v) for s, v in
                                   enumerate(rng.uniform(0.1, 0.5, last), start=1)}))
        yield values, others, step


def _optuna_says(values, others, step):
    """What ``optuna.pruners.MedianPruner`` decides for the same situation."""
    import optuna  # noqa: PLC0415 - the reference, only when checking

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        study = optuna.create_study(direction="minimize", pruner=optuna.pruners.MedianPruner(
            n_startup_trials=0, n_warmup_steps=0))
        states = {"complete": optuna.trial.TrialState.COMPLETE,
                  "pruned": optuna.trial.TrialState.PRUNED}
        for state, curve in others:
            study.add_trial(optuna.trial.create_trial(
                state=states[state], intermediate_values=curve,
                value=curve[max(curve)] if state == "complete" else None))
        trial = study.ask()
        for s in sorted(values):
            if s <= step:
                trial.report(values[s], s)
        return trial.should_prune()


def check_should_prune(should_prune) -> Result:
    """``should_prune(values, others, step) -> bool`` against Optuna's ``MedianPruner``.

    ``values``: the running trial's validation errors by epoch (1..step); ``others``: the
    study's other trials as ``(state, {epoch: error})`` with state "complete" or "pruned".
    """
    def body(fn):
        for number, (values, others, step) in enumerate(_scenarios()):
            expected = _optuna_says(values, others, step)
            got = fn(dict(values), [(s, dict(c)) for s, c in others], step)
            if bool(got) != expected:
                complete = [c[step] for s, c in others if s == "complete" and step in c]
                median = f"median {np.median(complete):.3f}" if complete else "none"
                raise CheckFailed(
                    f"scenario {number}: the trial's errors "
                    f"{ {s: round(v, 3) for s, v in values.items()} } at epochs 1..{step}; "
                    f"the complete trials' errors at epoch {step}: "
                    f"{np.round(complete, 3).tolist()} ({median}); Optuna "
                    f"{'prunes' if expected else 'does not prune'}, yours "
                    f"{'does' if got else 'does not'}. Compare the trial's *best* error so "
                    f"far with the median over *complete* trials only")
        return "decides as Optuna's MedianPruner in 60 random studies"
    return run_check("should_prune", body, should_prune)


def check_confusion_matrix(confusion_matrix) -> Result:
    """``confusion_matrix(y_true, y_pred, n)``: ``C[t, p]`` counts class ``t`` predicted as
    ``p``, against ``tuning.results.confusion_matrix``."""
    def body(fn):
        from tuning.results import confusion_matrix as reference  # noqa: PLC0415

        rng = np.random.default_rng(5)
        y_true = rng.integers(0, 4, 50)
        y_pred = np.where(rng.random(50) < 0.6, y_true, rng.integers(0, 4, 50))
        expected = reference(y_true, y_pred, 4)
        got = np.asarray(fn(y_true, y_pred, 4))
        if got.shape == expected.shape and np.array_equal(got, expected.T) \
                and not np.array_equal(got, expected):
            raise CheckFailed("the matrix is transposed: rows are the true classes, columns "
                              "the predictions")
        compare_arrays("confusion_matrix(y_true, y_pred, 4)", got, expected)
        return "equals tuning.results.confusion_matrix"
    return run_check("confusion_matrix", body, confusion_matrix)
