"""Tables and anytime pictures from the saved cells (``--report-only`` rebuilds them alone).

Per task and method, over the seeds whose cells exist:

- **best validation error at the end**: the median over seeds, with the lowest and
  highest beside it;
- **test accuracy**: of each seed's best configuration retrained once (median, range);
- **work to the threshold**: the work after which the best-so-far validation error was
  first at or below the task's threshold; a seed that never reached it counts as
  infinite, so the median is finite only when more than half the seeds reached it;
- the work the runs used, their trials (complete + pruned), their wall time and the
  load average around them.

The anytime picture draws, per method, the median over seeds of the best-so-far
validation error against work (log axis) with the band between the 25th and 75th
percentiles.  Before a seed's first COMPLETE trial its best-so-far is infinite (not
drawn); after a run ends (a grid after its 9 points), its last best stands.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..common import fmt_num, markdown_table, save_figure
from ..machine import machine_markdown
from .cells import read_cell
from .methods import METHODS, TASKS

QUARTILES = (0.25, 0.5, 0.75)


# -- the numbers ---------------------------------------------------------------------------

def best_so_far(trace, works) -> np.ndarray:
    """Best validation error reached with at most ``works[i]`` work (inf: none yet).

    ``trace``: ``[[work, best-so-far or None], ...]`` after every trial, work increasing.
    """
    works = np.asarray(works, dtype=float)
    out = np.full(works.shape, np.inf)
    for work, best in trace:
        if best is not None:
            out[works >= work] = np.minimum(out[works >= work], best)
    return out


def quantile_inf(values, q: float) -> float:
    """The ``q`` quantile (linear interpolation, as ``numpy.quantile``) of values that may
    be ``inf`` (a seed with no result yet): inf when it lies toward an inf value."""
    xs = np.sort(np.asarray(values, dtype=float))
    if xs.size == 0:
        return math.nan
    pos = q * (xs.size - 1)
    lo = int(math.floor(pos))
    frac = pos - lo
    if frac == 0.0:
        return float(xs[lo])
    a, b = xs[lo], xs[lo + 1]
    if math.isinf(b):
        return math.inf
    return float(a + (b - a) * frac)


def work_to_reach(trace, threshold: float) -> float:
    """The work after which the best-so-far error was first <= ``threshold`` (inf: never)."""
    for work, best in trace:
        if best is not None and best <= threshold:
            return float(work)
    return math.inf


def load_cells(results: Path) -> list:
    """Every finished cell under ``results/cells`` (locks and partial files ignored)."""
    root = Path(results) / "cells"
    return [read_cell(p) for p in sorted(root.glob("*/*/seed*.json"))] if root.exists() else []


def check_comparable(cells: list) -> dict:
    """The one settings dict the cells of a task share; ValueError naming a cell that
    differs (cells made with another budget or data cannot be compared)."""
    first = cells[0]["settings"]
    for cell in cells[1:]:
        if cell["settings"] != first:
            diff = [f"{k} {cell['settings'].get(k)!r} vs {first.get(k)!r}" for k in first
                    if cell["settings"].get(k) != first.get(k)]
            raise ValueError(f"task {cell['task']}: cell {cell['method']} seed {cell['seed']} "
                             f"was made with other settings than {cells[0]['method']} seed "
                             f"{cells[0]['seed']} ({'; '.join(diff)}); keep each set of "
                             f"settings in its own --results folder")
    return first


def _ordered_methods(cells: list) -> list:
    """Method names in the order of ``METHODS``, then any other (from another checkout)."""
    names = {c["method"] for c in cells}
    known = [m.name for m in METHODS if m.name in names]
    return known + sorted(names - set(known))


def summarize_method(cells: list, threshold: float) -> dict:
    """The table row of one method on one task, from its cells (one per seed)."""
    finals = [c["best"]["value"] if c["best"] else math.inf for c in cells]
    tests = [c["retrain"]["test_accuracy"] for c in cells
             if c["retrain"] and "test_accuracy" in c["retrain"]]
    reach = [work_to_reach(c["trace"], threshold) for c in cells]
    loads = [x for c in cells for x in (c["load_average"]["start"][0],
                                        c["load_average"]["end"][0])]
    return {
        "method": cells[0]["method"], "label": cells[0].get("label", cells[0]["method"]),
        "seeds": sorted(c["seed"] for c in cells),
        "final_error": {"median": quantile_inf(finals, 0.5), "min": min(finals),
                        "max": max(finals), "values": finals},
        "test_accuracy": {"median": float(np.median(tests)) if tests else None,
                          "min": min(tests) if tests else None,
                          "max": max(tests) if tests else None, "values": tests},
        "work_to_threshold": {"median": quantile_inf(reach, 0.5),
                              "reached": sum(math.isfinite(r) for r in reach),
                              "values": reach},
        "work_used": float(np.median([c["work"] for c in cells])),
        "trials": float(np.median([len(c["trials"]) for c in cells])),
        "pruned": float(np.median([sum(t["state"] == "PRUNED" for t in c["trials"])
                                   for c in cells])),
        "search_seconds": float(np.median([c["seconds"]["search"] for c in cells])),
        "retrain_seconds": float(np.median([c["seconds"]["retrain"] for c in cells
                                            if c["seconds"]["retrain"] is not None] or [0.0])),
        "cpu_share": float(np.median([c["seconds"]["search_cpu"] / c["seconds"]["search"]
                                      for c in cells if c["seconds"]["search"] > 0])),
        "load": [min(loads), max(loads)],
        "stops": sorted({c["stop"] for c in cells}),
    }


def anytime(cells: list, works) -> dict:
    """``{"q25", "median", "q75"}`` of the best-so-far error over the cells at ``works``."""
    curves = np.array([best_so_far(c["trace"], works) for c in cells])
    return {name: np.array([quantile_inf(curves[:, i], q) for i in range(len(works))])
            for name, q in zip(("q25", "median", "q75"), QUARTILES)}


def summarize(results: Path) -> dict:
    """``{task: {"settings", "rows", "cells"}}`` for every task with cells."""
    cells = load_cells(results)
    out = {}
    for task in [t for t in TASKS if any(c["task"] == t for c in cells)] + \
            sorted({c["task"] for c in cells} - set(TASKS)):
        mine = [c for c in cells if c["task"] == task]
        settings = check_comparable(mine)
        rows = [summarize_method([c for c in mine if c["method"] == m], settings["threshold"])
                for m in _ordered_methods(mine)]
        out[task] = {"settings": settings, "rows": rows, "cells": mine}
    return out


# -- the words and pictures -------------------------------------------------------------

def fmt_work(images: float | None) -> str:
    """Work in images: ``"4.2M"``; ``"never"`` for inf."""
    if images is None or (isinstance(images, float) and math.isnan(images)):
        return "—"
    if math.isinf(images):
        return "not reached"
    return f"{images / 1e6:.3g}M" if images >= 1e5 else f"{images:,.0f}"


def _err(x: float) -> str:
    return "none" if x is None or math.isinf(x) else f"{x:.4f}"


def task_table(task: str, summary: dict) -> str:
    s = summary["settings"]
    headers = ["method", "seeds", "best val. error (median)", "min - max",
               "test acc. of best, retrained (median)", "min - max",
               f"work to val. error <= {s['threshold']} (median)", "seeds reaching it",
               "work used (median)", "trials (pruned)", "search wall / cell", "retrain wall",
               "CPU share", "load (1 min)"]
    rows = []
    for r in summary["rows"]:
        fe, ta, wt = r["final_error"], r["test_accuracy"], r["work_to_threshold"]
        rows.append([
            f"{r['label']} (`{r['method']}`)", len(r["seeds"]), _err(fe["median"]),
            f"{_err(fe['min'])} - {_err(fe['max'])}",
            "—" if ta["median"] is None else f"{ta['median']:.4f}",
            "—" if ta["min"] is None else f"{ta['min']:.4f} - {ta['max']:.4f}",
            fmt_work(wt["median"]), f"{wt['reached']}/{len(r['seeds'])}",
            fmt_work(r["work_used"]), f"{fmt_num(r['trials'])} ({fmt_num(r['pruned'])})",
            f"{r['search_seconds']:.0f} s", f"{r['retrain_seconds']:.0f} s",
            f"{r['cpu_share']:.2f}", f"{r['load'][0]:.2f} - {r['load'][1]:.2f}"])
    return markdown_table(headers, rows)


def settings_text(settings: dict) -> str:
    budget_trials = settings["budget_images"] / (settings["epochs"] * settings["train_size"])
    retrain = settings["retrain_size"] or 60_000
    return (f"space `{settings['space']}`, {settings['epochs']} epochs per trial on "
            f"{settings['train_size']:,} training images, {settings['val_size']:,} validation "
            f"images (split seed {settings['data_seed']}); budget "
            f"{fmt_work(settings['budget_images'])} images of work per run (= "
            f"{budget_trials:g} full trials); threshold {settings['threshold']}; best "
            f"configuration retrained on {retrain:,} images for {settings['epochs']} epochs; "
            f"{settings['threads']} thread(s) per run"
            + ("; **--quick: tiny data, the numbers mean nothing**" if settings["quick"]
               else ""))


def cells_table(summary: dict) -> str:
    """Every cell of a task: what each run did and how long it took."""
    headers = ["method", "seed", "trials (pruned)", "work", "stop", "best val. error",
               "test acc.", "search wall", "search CPU", "retrain wall", "load start -> end",
               "host, commit", "finished"]
    rows = []
    order = {m: i for i, m in enumerate(_ordered_methods(summary["cells"]))}
    for c in sorted(summary["cells"], key=lambda c: (order[c["method"]], c["seed"])):
        pruned = sum(t["state"] == "PRUNED" for t in c["trials"])
        test = c["retrain"].get("test_accuracy") if c["retrain"] else None
        rows.append([c["method"], c["seed"], f"{len(c['trials'])} ({pruned})",
                     fmt_work(c["work"]), c["stop"],
                     _err(c["best"]["value"] if c["best"] else None),
                     "—" if test is None else f"{test:.4f}",
                     f"{c['seconds']['search']:.1f} s", f"{c['seconds']['search_cpu']:.1f} s",
                     "—" if c["seconds"]["retrain"] is None
                     else f"{c['seconds']['retrain']:.1f} s",
                     f"{c['load_average']['start'][0]:.2f} -> {c['load_average']['end'][0]:.2f}",
                     f"{c['machine']['host']}, {c['machine']['minidl_commit']}",
                     c["finished"]])
    return markdown_table(headers, rows)


def _colors(names) -> dict:
    """A fixed colour per method (its place in ``METHODS``): tab20's dark shades first."""
    import matplotlib  # noqa: PLC0415
    cmap = matplotlib.colormaps["tab20"]
    index = {m.name: i for i, m in enumerate(METHODS)}
    out = {}
    for j, name in enumerate(names):
        i = index.get(name, len(METHODS) + j)
        out[name] = cmap((2 * i) % 20 + (1 if i >= 10 else 0))
    return out


def anytime_picture(task: str, summary: dict, path: Path) -> Path:
    """Median best-so-far validation error against work, interquartile band, log x."""
    import matplotlib  # noqa: PLC0415
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    s = summary["settings"]
    cells = summary["cells"]
    first = min((t["work_end"] for c in cells for t in c["trials"]), default=1)
    works = np.geomspace(max(1.0, first * 0.9), max(s["budget_images"],
                         max(c["work"] for c in cells)), 300)
    names = _ordered_methods(cells)
    colors = _colors(names)
    fig, ax = plt.subplots(figsize=(9, 5.5))
    lows, highs = [], []
    for name in names:
        mine = [c for c in cells if c["method"] == name]
        end = max(c["work"] for c in mine)
        upto = works <= end * 1.0001
        q = anytime(mine, works[upto])
        med = np.where(np.isfinite(q["median"]), q["median"], np.nan)
        lo = np.where(np.isfinite(q["q25"]), q["q25"], np.nan)
        hi = np.where(np.isfinite(q["q75"]), q["q75"], np.nan)
        label = mine[0].get("label", name) + f" ({len(mine)} seed{'s' * (len(mine) > 1)})"
        ax.plot(works[upto], med, color=colors[name], label=label, linewidth=1.8)
        if end < s["budget_images"] and np.isfinite(med[-1]):   # stopped by itself: its
            ax.plot([end, s["budget_images"]], [med[-1], med[-1]],   # best stands (dotted)
                    color=colors[name], linestyle=":", linewidth=1.5)
        ax.fill_between(works[upto], lo, np.where(np.isnan(hi), med, hi), color=colors[name],
                        alpha=0.15, linewidth=0)
        finite = med[np.isfinite(med)]
        if finite.size:
            lows.append(np.nanmin(lo) if np.isfinite(lo).any() else finite.min())
            highs.append(finite[min(len(finite) - 1, len(finite) // 8)])
    ax.axhline(s["threshold"], color="k", linestyle="--", linewidth=1,
               label=f"threshold {s['threshold']}")
    ax.axvline(s["budget_images"], color="0.5", linestyle=":", linewidth=1, label="budget")
    ax.set_xscale("log")
    if lows and highs:
        bottom = min(lows + [s["threshold"]])
        top = max(highs + [s["threshold"]])
        pad = 0.08 * (top - bottom) if top > bottom else 0.01
        ax.set_ylim(bottom - pad, top + pad)
    ax.set_xlabel("work: training images processed (epochs x images, summed over trials)")
    ax.set_ylabel("best validation error so far")
    ax.set_title(f"{task}: best-so-far validation error vs work (median over seeds, "
                 f"band 25-75%)", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return save_figure(fig, path)


def markdown(summaries: dict, machine: dict, command: str, skipped: dict,
             picture_names: dict) -> str:
    cells = [c for s in summaries.values() for c in s["cells"]]
    made_by = sorted({c["command"] for c in cells if c.get("command")})
    lines = ["# Search methods side by side, on the same budget of work", "",
             "Cells made by: " + "; ".join(f"`{c}`" for c in made_by) + ".", "",
             f"This report: `{command}`, built on this machine (each cell records its own "
             f"host, commit and load: see *every cell*):", "", machine_markdown(machine), ""]
    if cells:
        starts = [c["load_average"]["start"][0] for c in cells]
        ends = [c["load_average"]["end"][0] for c in cells]
        lines += [f"Cells: {len(cells)}, finished {min(c['finished'] for c in cells)} to "
                  f"{max(c['finished'] for c in cells)} on "
                  f"{', '.join(sorted({c['machine']['host'] for c in cells}))}; 1-minute load "
                  f"average at the cells' starts {min(starts):.2f}-{max(starts):.2f}, at their "
                  f"ends {min(ends):.2f}-{max(ends):.2f} "
                  f"({machine.get('cpus_usable')} usable cores; a load above the cores in "
                  f"use means the runs shared them, and wall times grow with it, not the "
                  f"work).", ""]
    if skipped:
        lines += ["Methods not run here: " + "; ".join(
            f"`{name}` ({why})" for name, why in skipped.items()) + ".", ""]
    lines += ["Work = training images processed (epochs x images, summed over all of a run's "
              "trials; pruned trials count the epochs they trained). Best validation error: "
              "the best COMPLETE trial (trained all its epochs). Work to the threshold: "
              "median over seeds, a seed that never reached it counting as infinite. CPU "
              "share: search CPU time / search wall time of the run's process (below 1: "
              "the run waited for a core).", ""]
    for task, summary in summaries.items():
        have = {c["method"] for c in summary["cells"]}
        missing = [m.name for m in METHODS if m.runs_on(task) and m.name not in have
                   and m.name not in skipped]
        seeds = sorted({c["seed"] for c in summary["cells"]})
        lines += [f"## {task}", "", settings_text(summary["settings"]) + ".", "",
                  f"Seeds with cells: {', '.join(map(str, seeds))}."
                  + (f" **Partial grid**: no cells yet for {', '.join(missing)}."
                     if missing else ""), "",
                  task_table(task, summary), "",
                  f"![anytime {task}]({picture_names[task]})", "",
                  "<details><summary>every cell</summary>", "", cells_table(summary), "",
                  "</details>", ""]
    return "\n".join(lines)


def to_json(summaries: dict) -> dict:
    """The summaries without the cells (they are in ``cells/``), JSON-safe (inf -> None)."""
    def clean(x):
        if isinstance(x, dict):
            return {k: clean(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [clean(v) for v in x]
        if isinstance(x, float) and not math.isfinite(x):
            return None
        return x
    return {task: clean({"settings": s["settings"], "rows": s["rows"],
                         "cells": [f"cells/{c['task']}/{c['method']}/seed{c['seed']}.json"
                                   for c in s["cells"]]})
            for task, s in summaries.items()}
