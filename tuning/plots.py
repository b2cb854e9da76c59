"""PNG plots of a study with Optuna's matplotlib visualisations.

``write_plots(study, out_dir)`` writes

- ``optimization_history.png``: every trial's value and the best so far;
- ``param_importances.png``: which hyperparameters mattered (needs 2+ complete trials);
- ``parallel_coordinate.png``: each complete trial as a line through its parameters;
- ``intermediate_values.png``: the per-epoch validation error of every trial, pruned
  ones included (the learning curves the pruner judged);
- ``slice.png``: the value against each parameter.

and, for a multi-objective study (``--objectives error,params`` / ``error,latency``),

- ``pareto_front.png``: every complete trial on the objectives' axes, the Pareto front
  highlighted;

the other plots then show the validation error (the first objective).  Such a study
reports no per-epoch values (Optuna cannot prune it), so ``intermediate_values.png`` is
skipped with that reason; each trial's learning curve is in its ``curve`` user attribute.

A plot that a small study cannot support is skipped with the reason, never an error.
"""
from __future__ import annotations

import warnings

import optuna
from optuna.trial import TrialState

PLOTS = ("optimization_history", "param_importances", "parallel_coordinate",
         "intermediate_values", "slice")
MULTI_PLOTS = ("pareto_front",) + PLOTS
AXIS_LABELS = {"error": "validation error", "params": "parameters",
               "latency_ms": "latency (ms per image)"}


def _why_not(name: str, n_complete: int, has_intermediate: bool,
             multi: bool = False) -> str | None:
    if name == "intermediate_values":
        if multi:
            return ("a multi-objective study reports no per-epoch values (Optuna cannot "
                    "prune it); each trial's learning curve is its 'curve' in `trials --json`")
        return None if has_intermediate else "no trial has reported an intermediate value yet"
    if name == "param_importances" and n_complete < 2:
        return f"parameter importances need at least 2 complete trials (the study has {n_complete})"
    if n_complete < 1:
        return "no complete trial yet"
    return None


def _name_the_value(ax) -> None:
    """Say what Optuna's generic "Objective Value" / "Step" are in this package."""
    for get, set_ in ((ax.get_xlabel, ax.set_xlabel), (ax.get_ylabel, ax.set_ylabel)):
        label = get()
        if label in ("Objective Value", "Intermediate Value"):
            set_("validation error")
        elif label == "Step":
            set_("epoch")


def _log_scale_spread(ax, study):
    """A 2-objective Pareto plot's second axis (parameters, latency) on a log scale when its
    values span more than a factor of 20, as a CNN space's parameter counts do."""
    if len(study.directions) == 2:
        values = [t.values[1] for t in study.get_trials(deepcopy=False,
                                                        states=(TrialState.COMPLETE,))]
        if values and min(values) > 0 and max(values) / min(values) > 20:
            ax.set_yscale("log")
    return ax


def _readable_parallel_coordinate(fig) -> None:
    """Optuna draws one vertical axis per parameter, labelled in place: widen the figure
    so the axes are apart, drop its own title (ours is the figure's), and put each axis
    label on a white box so it stays legible where the trial lines cross it."""
    axes = fig.axes
    main = axes[0]
    n_axes = max(2, len(main.get_xticks()))
    fig.set_size_inches(max(8.0, 1.7 * n_axes), 5.5)
    main.set_title("")
    for ax in axes:
        for text in list(ax.texts) + ax.get_yticklabels():
            text.set_fontsize(8)
            text.set_bbox({"facecolor": "white", "edgecolor": "none", "alpha": 0.85,
                           "pad": 1.0})


def plot_folder(out_dir, overwrite: bool = False):
    """``out_dir`` as the ``tuning.outputs.OutputFolder`` of ``tuning plot``: its PNGs are
    replaced when an earlier ``tuning plot`` wrote them, never when the user did."""
    from .outputs import OutputFolder  # noqa: PLC0415

    return OutputFolder(out_dir, "plot", [f"{name}.png" for name in MULTI_PLOTS],
                        overwrite=overwrite)


def write_plots(study, out_dir) -> tuple[list, list]:
    """Write the PNGs into ``out_dir`` (a folder path, or ``plot_folder(...)``); return
    ``(written paths, skipped messages)``."""
    import matplotlib  # noqa: PLC0415 - plotting is optional at import time
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415
    from optuna.visualization import matplotlib as ovm  # noqa: PLC0415

    from .report import metric_names  # noqa: PLC0415

    from .outputs import OutputFolder  # noqa: PLC0415

    folder = out_dir if isinstance(out_dir, OutputFolder) else plot_folder(out_dir)
    folder.check()
    trials = study.get_trials(deepcopy=False)
    n_complete = sum(t.state == TrialState.COMPLETE for t in trials)
    has_intermediate = any(t.intermediate_values for t in trials)
    multi = len(study.directions) > 1
    functions = {
        "optimization_history": ovm.plot_optimization_history,
        "param_importances": ovm.plot_param_importances,
        "parallel_coordinate": ovm.plot_parallel_coordinate,
        "intermediate_values": ovm.plot_intermediate_values,
        "slice": ovm.plot_slice,
    }
    if multi:
        # the single-objective plots show the first objective, the validation error
        error = {"target": lambda t: t.values[0], "target_name": "validation error"}
        functions = {name: (lambda f: lambda s: f(s, **error))(f)
                     if name != "intermediate_values" else f
                     for name, f in functions.items()}
        labels = [AXIS_LABELS.get(n, n) for n in metric_names(study)]
        functions["pareto_front"] = lambda s: _log_scale_spread(
            ovm.plot_pareto_front(s, target_names=labels), s)
    written, skipped = [], []
    for name in (MULTI_PLOTS if multi else PLOTS):
        reason = _why_not(name, n_complete, has_intermediate, multi)
        if reason is not None:
            skipped.append(f"{name}: skipped, {reason}")
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            warnings.simplefilter("ignore", UserWarning)
            try:
                axes = functions[name](study)
            except (ValueError, RuntimeError, ZeroDivisionError) as exc:
                skipped.append(f"{name}: skipped, Optuna could not draw it ({exc})")
                plt.close("all")
                continue
        for ax in (axes.flat if hasattr(axes, "flat") else [axes]):
            _name_the_value(ax)
        fig = (axes.flat[0] if hasattr(axes, "flat") else axes).figure
        if name == "parallel_coordinate":
            _readable_parallel_coordinate(fig)
        fig.suptitle(f"{study.study_name}: {name.replace('_', ' ')}", fontsize=10)
        path = folder.write(f"{name}.png",
                            lambda tmp: fig.savefig(tmp, dpi=100, bbox_inches="tight"))
        plt.close(fig)
        written.append(path)
    return written, skipped
