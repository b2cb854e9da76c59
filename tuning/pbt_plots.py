"""The two pictures of a population-based training run (``tuning.pbt``).

- ``plot_schedule``: the winner's hyperparameters interval by interval, along the chain of
  checkpoints its weights went through (a change of member marks a copy), with the
  validation error each interval ended with: the schedule PBT found.
- ``plot_lineage``: every member's intervals, generation by generation, coloured by
  validation error, with a line from each interval to the one it started from; copies
  (exploit) stand out as the lines that change member, and the winner's ancestry is drawn
  thick.
"""
from __future__ import annotations

import math
from pathlib import Path

from optuna.trial import TrialState

from .population import EXPLOITED, PARENT, is_interval, key_of


def _pyplot():
    import matplotlib  # noqa: PLC0415 - plotting only when asked
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415
    return plt


def plot_schedule(chain: list, names: list, epochs: int, path, title: str) -> Path:
    """The hyperparameters ``names`` of the intervals in ``chain`` (trials, generation 0
    first) against the epoch, one panel each, and the validation error at the end of each
    interval; a log axis for a parameter searched on a log scale."""
    plt = _pyplot()
    names = [n for n in names if any(n in t.params for t in chain)]
    fig, axes = plt.subplots(len(names) + 1, 1, figsize=(8, 1.9 * (len(names) + 1) + 0.6),
                             sharex=True, squeeze=False)
    axes = axes[:, 0]
    starts = [key_of(t)[1] * epochs for t in chain]
    ends = [s + epochs for s in starts]
    copies = [(s, t.user_attrs.get(EXPLOITED)) for s, t in zip(starts, chain)
              if t.user_attrs.get(EXPLOITED) is not None]
    for ax, name in zip(axes, names):
        values = [t.params.get(name) for t in chain]
        xs, ys = [], []
        for s, e, v in zip(starts, ends, values):
            if v is not None:
                xs += [s, e]
                ys += [v, v]
        ax.plot(xs, ys, color="tab:blue", linewidth=2)
        dist = next((t.distributions[name] for t in chain if name in t.distributions), None)
        if getattr(dist, "log", False):
            ax.set_yscale("log")
        ax.set_ylabel(name)
        ax.grid(True, alpha=0.3)
    error = axes[-1]
    error.plot(ends, [t.value if t.value is not None else math.nan for t in chain],
               marker="o", color="tab:red")
    error.set_ylabel("validation error")
    error.set_xlabel("epoch")
    error.grid(True, alpha=0.3)
    for ax in axes:
        for x, member in copies:
            ax.axvline(x, color="tab:orange", linestyle="--", linewidth=1)
    for x, member in copies:
        axes[0].annotate(f"copied member {member}", (x, 1.0), xycoords=("data", "axes fraction"),
                         rotation=90, va="top", ha="right", fontsize=7, color="tab:orange")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def plot_lineage(view, winner, path, title: str) -> Path:
    """Every interval of the population ``view`` (``tuning.population.Population``) at (generation,
    member), coloured by validation error (grey crosses: diverged or given up), with a line
    to the interval it started from; the winner's ancestry thick."""
    plt = _pyplot()
    finished = {}
    for key, trials in view.intervals.items():
        done = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
        if done:
            finished[key] = min(done, key=lambda t: t.number)
    by_number = {t.number: t for t in view.trials}
    ancestry = set()
    t = winner
    while t is not None:
        ancestry.add(t.number)
        parent = t.user_attrs.get(PARENT)
        t = None if parent is None else by_number.get(int(parent))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.35 * ((view.generation or 0) + 1) + 3),
                                    max(3.0, 0.45 * view.pbt.population + 1.5)))
    for (member, generation), trial in finished.items():
        parent = trial.user_attrs.get(PARENT)
        if parent is None or int(parent) not in by_number:
            continue
        source = by_number[int(parent)]
        if not is_interval(source):
            continue
        from_member, from_generation = key_of(source)
        copied = trial.user_attrs.get(EXPLOITED) is not None
        on_path = trial.number in ancestry and source.number in ancestry
        ax.plot([from_generation, generation], [from_member, member],
                color="tab:red" if on_path else ("tab:orange" if copied else "0.75"),
                linewidth=3 if on_path else (1.2 if copied else 0.8), zorder=1)
    done = [(g, m, t.value) for (m, g), t in finished.items() if t.state == TrialState.COMPLETE]
    if done:
        points = ax.scatter([g for g, _, _ in done], [m for _, m, _ in done],
                            c=[v for _, _, v in done], cmap="viridis_r", s=36, zorder=2)
        fig.colorbar(points, ax=ax, label="validation error")
    lost = [(g, m) for (m, g), t in finished.items() if t.state != TrialState.COMPLETE]
    if lost:
        ax.scatter([g for g, _ in lost], [m for _, m in lost], marker="x", color="0.5",
                   zorder=2)
    from matplotlib.ticker import MaxNLocator  # noqa: PLC0415
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("generation")
    ax.set_ylabel("member")
    ax.set_yticks(range(view.pbt.population))
    ax.set_title(title + "\n(orange: a copy of a better member; red: the winner's ancestry; "
                 "grey x: diverged or given up)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)
