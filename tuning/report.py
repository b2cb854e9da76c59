"""Text, CSV and JSON views of a study: one line per trial, the trials table, the best trial.

A multi-objective study (``--objectives error,params`` or ``error,latency``) has no single
best trial: ``best_*`` then give its Pareto front (the complete trials no other complete
trial beats on every objective), and the tables show each objective's value in a column
of its own (``error``, ``params``, ``latency_ms``) instead of ``value``.
"""
from __future__ import annotations

import csv
import json
import math
import os
import shutil
import sys

from optuna.trial import TrialState

from .spaces import config_from_params, get_space
from .errors import TuningError
from .population import final_trial, load_pbt_settings
from .storage import storage_note, storage_option


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


def metric_names(study) -> list:
    """The names of the study's objectives: ``["error"]``, ``["error", "params"]``, ..."""
    n = len(study.directions)
    names = study.metric_names
    if names and len(names) == n:
        return list(names)
    return ["error"] if n == 1 else ["error"] + [f"value{i}" for i in range(1, n)]


def is_multi(study) -> bool:
    return len(study.directions) > 1


def format_objective(name: str, value) -> str:
    """An objective's value as people read it: error 0.1234, params 101,770, 0.0123 ms."""
    if value is None:
        return "-"
    if name == "params":
        return f"{int(round(value)):,}"
    if name == "latency_ms":
        return f"{value:.4g} ms"
    return f"{value:.4f}"


def objective_label(name: str) -> str:
    """How a line names an objective (its value carries the unit: ``latency 0.05 ms``)."""
    return "latency" if name == "latency_ms" else name


def format_values(values, names) -> str:
    return ", ".join(f"{objective_label(n)} {format_objective(n, v)}"
                     for n, v in zip(names, values))


def trial_line(trial, names=None) -> str:
    """One line for a finished trial: number, state, value(s), seconds, params (and why).

    ``names``: the study's objective names (``metric_names``); a trial of a
    multi-objective study shows every value (``error 0.1234, params 101,770``).
    """
    state = trial.state.name
    values = trial.values if trial.state == TrialState.COMPLETE else None
    if values is not None and len(values) > 1:
        names = names or ["error"] + [f"value{i}" for i in range(1, len(values))]
        value = format_values(values, names)
    elif trial.state == TrialState.COMPLETE:
        value = f"{trial.value:.4f}"
    else:
        last = last_intermediate(trial)
        value = "-" if last is None else f"{last[1]:.4f}@{last[0]}"
    seconds = trial_seconds(trial)
    label = "" if values is not None and len(values) > 1 else "value "
    line = (f"trial {trial.number:3d}  {state:<8s}  {label}{value:<9s}  "
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
    if is_multi(study):
        raise TuningError(
            f"study {study.study_name!r} has several objectives "
            f"({', '.join(metric_names(study))}), so no single best trial; its Pareto front "
            f"is trials {', '.join(str(t.number) for t in pareto_front(study))}: choose one "
            f"with --trial N")
    pbt = load_pbt_settings(study)
    if pbt is not None:   # a population: its result is the best member's last interval
        return final_trial(study, pbt)
    return study.best_trial


def pareto_front(study) -> list:
    """The complete trials of a multi-objective study that no other complete trial
    dominates (Optuna's ``best_trials``), sorted by their objective values."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        raise TuningError(f"study {study.study_name!r} has no completed trial yet")
    return sorted(study.best_trials, key=lambda t: (list(t.values), t.number))


def _front_dict(study, settings) -> dict:
    names = metric_names(study)
    front = []
    for t in pareto_front(study):
        front.append({
            "trial": t.number,
            "values": dict(zip(names, t.values)),
            "validation_accuracy": 1.0 - t.values[0],
            "params": t.params,
            "config": config_from_params(settings.space, t.params),
            "n_params": t.user_attrs.get("n_params"),
            "seconds": trial_seconds(t),
        })
    return {
        "study_name": study.study_name,
        "space": settings.space,
        "objectives": names,
        "directions": [d.name.lower() for d in study.directions],
        "pareto_front": front,
        "settings": settings.to_dict(),
    }


def _front_text(study, settings) -> str:
    best = _front_dict(study, settings)
    names = best["objectives"]
    front = best["pareto_front"]
    lines = [summary_line(study),
             f"Pareto front ({', '.join(names)}; all minimized): {len(front)} trial"
             f"{'s' * (len(front) != 1)} that no other complete trial beats on every "
             f"objective"]
    header = ["trial"] + [objective_label(n) for n in names] + ["hyperparameters"]
    rows = [[str(t["trial"])] + [format_objective(n, t["values"][n]) for n in names]
            + [format_params(t["params"])] for t in front]
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header) - 1)]
    for row in [header] + rows:
        lines.append("  " + "  ".join(c.rjust(w) for c, w in zip(row, widths)) + "  " + row[-1])
    lines.append(f"retrain one with: {tuning_command()} retrain --study-name "
                 f"{study.study_name} --trial N --out DIR")
    return "\n".join(lines)


def best_dict(study, settings) -> dict:
    """The best trial; for a multi-objective study its Pareto front (``pareto_front``)."""
    if is_multi(study):
        return _front_dict(study, settings)
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
    """The best value and hyperparameters, presented as the lab does (the Pareto front
    for a multi-objective study)."""
    if is_multi(study):
        return _front_text(study, settings)
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
    """``(columns, rows)``: number, state, value, seconds, n_params, stop_reason, params.

    A multi-objective study has a column per objective (``error``, ``params``,
    ``latency_ms``) where a single-objective one has ``value``.
    """
    trials = study.get_trials(deepcopy=False)
    params = _param_columns(trials, settings)
    names = metric_names(study) if is_multi(study) else ["value"]
    columns = ["number", "state"] + names + ["seconds", "n_params", "stop_reason"] + params
    rows = []
    for t in trials:
        values = list(t.values) if t.values is not None else [None] * len(names)
        row = [t.number, t.state.name, *values, trial_seconds(t),
               t.user_attrs.get("n_params"), t.user_attrs.get("stop_reason", "")]
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
        if column == "params":
            return str(int(round(v)))
        if column == "latency_ms":
            return f"{v:.4g}"
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


def queued_params(trial) -> dict:
    """A trial's parameters; for one still WAITING in the queue (``enqueue``), the values it
    was queued with (Optuna fills ``params`` only once the trial runs)."""
    if trial.params or trial.state != TrialState.WAITING:
        return trial.params
    return dict(trial.system_attrs.get("fixed_params") or {})


def trials_json(study) -> str:
    """Every trial as strict JSON; a multi-objective study's trials carry ``values``
    (``{"error": ..., "params": ...}``, null when the trial has none) instead of ``value``."""
    multi = is_multi(study)
    names = metric_names(study)
    items = []
    for t in study.get_trials(deepcopy=False):
        if multi:
            value = {"values": None if t.values is None else dict(zip(names, t.values))}
        else:
            value = {"value": t.value}
        items.append({
            "number": t.number,
            "state": t.state.name,
            **value,
            "params": queued_params(t),
            "intermediate_values": {str(k): v for k, v in sorted(t.intermediate_values.items())},
            "seconds": trial_seconds(t),
            "datetime_start": t.datetime_start.isoformat() if t.datetime_start else None,
            "datetime_complete": (t.datetime_complete.isoformat()
                                  if t.datetime_complete else None),
            "user_attrs": t.user_attrs,
        })
    return dumps(items)


INPUT_SHAPE = (1, 1, 28, 28)  # one Fashion-MNIST image, as every space's models take it


def model_summary(config: dict):
    """``minidl.summary`` of the model ``config`` builds, for one image (``INPUT_SHAPE``):
    its layers, output shapes, parameter counts and multiply-adds."""
    import minidl  # noqa: PLC0415 - the model stack only when a summary is asked for
    from .models import build_model  # noqa: PLC0415
    return minidl.summary(build_model(config), INPUT_SHAPE)


def print_closing(study, settings, name: str, storage) -> None:
    """The end of a ``run``: the best trial as the lab presents it, and how to plot."""
    try:
        print(best_text(study, settings))
    except TuningError as exc:
        print(str(exc))
    print(f"plots: {tuning_command()} plot --study-name {name}{storage_option(storage or None)}"
          f" --out studies/{name}-plots{storage_note(storage or None)}")
