"""Text, CSV and JSON views of a study: one line per trial, the trials table, the best trial."""
from __future__ import annotations

import csv
import json
import math
import os
import shutil
import sys

from optuna.trial import TrialState

from .spaces import config_from_params, get_space
from .storage import TuningError


def tuning_command() -> str:
    """How to start ``tuning`` again from this shell, for the hints commands print: ``python
    -m tuning`` when the ``python`` on PATH is this interpreter, else this interpreter's path
    (``.venv/bin/python -m tuning`` after ``make tune``, with no environment activated)."""
    on_path = shutil.which("python")
    here = os.path.realpath(sys.executable)
    if on_path and os.path.realpath(on_path) == here:
        return "python -m tuning"
    exe = sys.executable
    try:
        rel = os.path.relpath(exe)
        exe = rel if not rel.startswith("..") else exe
    except ValueError:          # another drive (Windows)
        pass
    return f"{exe} -m tuning"

FINISHED_OK = (TrialState.COMPLETE, TrialState.PRUNED)


def format_value(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def format_params(params: dict) -> str:
    return ", ".join(f"{k}={format_value(v)}" for k, v in params.items())


def trial_seconds(trial) -> float | None:
    if trial.duration is not None:
        return trial.duration.total_seconds()
    seconds = trial.user_attrs.get("seconds")
    return None if seconds is None else float(seconds)


def last_intermediate(trial):
    """``(step, value)`` of the trial's last report to the pruner, or None."""
    if not trial.intermediate_values:
        return None
    step = max(trial.intermediate_values)
    return step, trial.intermediate_values[step]


def trial_line(trial) -> str:
    """One line for a finished trial: number, state, value, seconds, params (and why)."""
    state = trial.state.name
    if trial.state == TrialState.COMPLETE:
        value = f"{trial.value:.4f}"
    else:
        last = last_intermediate(trial)
        value = "-" if last is None else f"{last[1]:.4f}@{last[0]}"
    seconds = trial_seconds(trial)
    line = (f"trial {trial.number:3d}  {state:<8s}  value {value:<9s}  "
            f"{'?' if seconds is None else f'{seconds:.1f}'}s  {format_params(trial.params)}")
    reason = trial.user_attrs.get("stop_reason")
    if trial.state != TrialState.COMPLETE and reason:
        line += f"  [{reason}]"
    return line


def progress_text(k: int, n: int | None, elapsed: float) -> str:
    """``(k of N, 42s elapsed, ~1m10s left)`` after the k-th trial of this run; without a
    trial count (``--timeout`` alone) only the elapsed time.  The estimate is the mean time
    per trial so far: pruned trials are short, so it moves as the run goes."""
    def clock(seconds):
        seconds = int(round(seconds))
        return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"
    if not n:
        return f"({k} done, {clock(elapsed)} elapsed)"
    left = elapsed / k * max(n - k, 0)
    return f"({k} of {n}, {clock(elapsed)} elapsed, ~{clock(left)} left)"


def count_states(study) -> dict:
    counts = {}
    for t in study.get_trials(deepcopy=False):
        counts[t.state.name] = counts.get(t.state.name, 0) + 1
    return counts


def summary_line(study) -> str:
    counts = count_states(study)
    total = sum(counts.values())
    parts = ", ".join(f"{n} {name.lower()}" for name, n in sorted(counts.items()))
    return f"study {study.study_name!r}: {total} trials" + (f" ({parts})" if parts else "")


def best_trial(study):
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        raise TuningError(f"study {study.study_name!r} has no completed trial yet")
    return study.best_trial


def best_dict(study, settings) -> dict:
    best = best_trial(study)
    return {
        "study_name": study.study_name,
        "space": settings.space,
        "trial": best.number,
        "value": best.value,
        "validation_accuracy": 1.0 - best.value,
        "params": best.params,
        "config": config_from_params(settings.space, best.params),
        "n_params": best.user_attrs.get("n_params"),
        "seconds": trial_seconds(best),
        "settings": settings.to_dict(),
    }


def best_text(study, settings) -> str:
    """The best value and hyperparameters, presented as the lab does."""
    best = best_dict(study, settings)
    lines = [summary_line(study),
             f"Best trial: {best['trial']}",
             f"Best value (validation error): {best['value']:.4f} "
             f"(validation accuracy {best['validation_accuracy']:.4f})",
             "Best hyperparameters:"]
    lines += [f"  {k}: {format_value(v)}" for k, v in best["params"].items()]
    return "\n".join(lines)


def _param_columns(trials, settings) -> list:
    order = get_space(settings.space).param_names
    seen = {name for t in trials for name in t.params}
    return [n for n in order if n in seen] + sorted(seen - set(order))


def trial_rows(study, settings) -> tuple[list, list]:
    """``(columns, rows)``: number, state, value, seconds, n_params, stop_reason, params."""
    trials = study.get_trials(deepcopy=False)
    params = _param_columns(trials, settings)
    columns = ["number", "state", "value", "seconds", "n_params", "stop_reason"] + params
    rows = []
    for t in trials:
        row = [t.number, t.state.name, t.value, trial_seconds(t), t.user_attrs.get("n_params"),
               t.user_attrs.get("stop_reason", "")]
        row += [t.params.get(p) for p in params]
        rows.append(row)
    return columns, rows


def trials_table(study, settings) -> str:
    columns, rows = trial_rows(study, settings)

    def cell(v, column):
        if v is None:
            return "-"
        if column == "seconds":
            return f"{v:.1f}"
        if isinstance(v, float):
            return f"{v:.4f}" if abs(v) >= 1e-3 or v == 0 else f"{v:.3g}"
        return str(v)

    text = [[cell(v, c) for v, c in zip(row, columns)] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in text]) for i, c in enumerate(columns)]
    out = ["  ".join(c.ljust(w) for c, w in zip(columns, widths))]
    out += ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in text]
    return "\n".join(line.rstrip() for line in out)


def write_trials_csv(study, settings, stream) -> None:
    columns, rows = trial_rows(study, settings)
    writer = csv.writer(stream)
    writer.writerow(columns)
    writer.writerows(["" if v is None else v for v in row] for row in rows)


def json_safe(value):
    """``value`` with every NaN or infinite float written as a string, for strict JSON.

    ``json.dumps`` writes them as ``NaN``/``Infinity``, which strict parsers (and the
    JSON standard) reject.  Here they become the strings ``"NaN"``, ``"Infinity"`` and
    ``"-Infinity"``, everywhere in the output (values, parameters, user attributes), so
    a reader can still tell them apart; every other value is unchanged.
    """
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def dumps(value) -> str:
    """Strict JSON of ``value`` (``json_safe``), indented, as ``trials --json`` prints it."""
    return json.dumps(json_safe(value), indent=2, allow_nan=False, default=str)


def trials_json(study) -> str:
    items = []
    for t in study.get_trials(deepcopy=False):
        items.append({
            "number": t.number,
            "state": t.state.name,
            "value": t.value,
            "params": t.params,
            "intermediate_values": {str(k): v for k, v in sorted(t.intermediate_values.items())},
            "seconds": trial_seconds(t),
            "datetime_start": t.datetime_start.isoformat() if t.datetime_start else None,
            "datetime_complete": (t.datetime_complete.isoformat()
                                  if t.datetime_complete else None),
            "user_attrs": t.user_attrs,
        })
    return dumps(items)


def print_closing(study, settings, name: str, storage) -> None:
    """The end of a ``run``: the best trial as the lab presents it, and how to plot."""
    try:
        print(best_text(study, settings))
    except TuningError as exc:
        print(str(exc))
    print(f"plots: {tuning_command()} plot --study-name {name}"
          + (f" --storage {storage}" if storage else "")
          + f" --out studies/{name}-plots")
