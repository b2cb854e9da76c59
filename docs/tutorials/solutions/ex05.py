"""Solutions to notebook 5's exercises, and wrong answers the checks must reject."""
import numpy as np


def should_prune(values, others, step):
    best = min(v for s, v in values.items() if s <= step)
    complete = [curve[step] for state, curve in others if state == "complete" and step in curve]
    return bool(complete) and best > np.median(complete)


def should_prune_last_value(values, others, step):
    complete = [curve[step] for state, curve in others if state == "complete" and step in curve]
    return bool(complete) and values[step] > np.median(complete)


def should_prune_all_trials(values, others, step):
    best = min(v for s, v in values.items() if s <= step)
    reported = [curve[step] for _, curve in others if step in curve]
    return bool(reported) and best > np.median(reported)


def confusion_matrix(y_true, y_pred, n):
    matrix = np.zeros((n, n), dtype=np.int64)
    for t, p in zip(y_true, y_pred):
        matrix[t, p] += 1
    return matrix


def confusion_matrix_transposed(y_true, y_pred, n):
    return confusion_matrix(y_pred, y_true, n)


SOLUTIONS = {
    "check_should_prune": (should_prune, [should_prune_last_value, should_prune_all_trials]),
    "check_confusion_matrix": (confusion_matrix, [confusion_matrix_transposed]),
}
