"""Solutions to notebook 11's exercises, and wrong answers the checks must reject."""
import math

import numpy as np


def trace_from_trials(trials):
    trace, best = [], None
    for t in trials:
        if t["state"] == "COMPLETE" and (best is None or t["value"] < best):
            best = t["value"]
        trace.append([t["work_end"], best])
    return trace


def trace_counting_pruned(trials):
    trace, best = [], None
    for t in trials:
        value = t["value"] if t["state"] == "COMPLETE" else t["last_val_error"]
        if value is not None and (best is None or value < best):
            best = value
        trace.append([t["work_end"], best])
    return trace


def trace_last_value(trials):
    trace, best = [], None
    for t in trials:
        if t["state"] == "COMPLETE":
            best = t["value"]
        trace.append([t["work_end"], best])
    return trace


def work_to_reach(trace, threshold):
    for work, best in trace:
        if best is not None and best <= threshold:
            return float(work)
    return math.inf


def work_to_reach_strict(trace, threshold):
    for work, best in trace:
        if best is not None and best < threshold:
            return float(work)
    return math.inf


def work_to_reach_none(trace, threshold):
    for work, best in trace:
        if best is not None and best <= threshold:
            return float(work)
    return None


def median_over_seeds(values):
    xs = sorted(values)
    mid = (len(xs) - 1) / 2
    lo, hi = xs[math.floor(mid)], xs[math.ceil(mid)]
    return hi if math.isinf(hi) else (lo + hi) / 2


def median_of_finite(values):
    return float(np.median([v for v in values if math.isfinite(v)]))


def mean_over_seeds(values):
    return float(np.mean(values))


SOLUTIONS = {
    "check_trace_from_trials": (trace_from_trials, [trace_counting_pruned, trace_last_value]),
    "check_work_to_reach": (work_to_reach, [work_to_reach_strict, work_to_reach_none]),
    "check_median_over_seeds": (median_over_seeds, [median_of_finite, mean_over_seeds]),
}
