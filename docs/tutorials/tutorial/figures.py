"""The figure rules of the tutorials, checked on every ``plt.show()`` while build.py runs them.

A figure breaks a rule when

* it has no title: a ``suptitle``, or the title of its only plot;
* a plot with tick marks has no label on an axis (a shared axis may take its label from a
  sibling, a figure from ``supxlabel``/``supylabel``); a colour bar has no label;
* a diverging colour map (``RdBu``, ``coolwarm``, ...) is not centred on zero: its limits
  must be ``-m`` and ``+m``, so that white means 0;
* Optuna's generic labels ("Objective Value", "Intermediate Value") are still there
  instead of what the value is;
* two lines of one plot lie on top of each other (within 2 pixels on at least a fifth of
  their points) with the same line style and marker: colour alone cannot tell them apart.

``install()`` wraps ``matplotlib.pyplot.show`` so that it raises :class:`FigureRuleError`
naming the rule and the plot.  build.py installs it before a notebook's first cell; a
learner running the notebook by hand is not checked.
"""
from __future__ import annotations

import numpy as np

__all__ = ["FigureRuleError", "problems", "install"]

DIVERGING = {"RdBu", "RdBu_r", "bwr", "bwr_r", "coolwarm", "coolwarm_r", "seismic",
             "seismic_r", "PiYG", "PiYG_r", "PRGn", "PRGn_r", "BrBG", "BrBG_r", "PuOr",
             "PuOr_r", "RdGy", "RdGy_r", "RdYlBu", "RdYlBu_r", "RdYlGn", "RdYlGn_r",
             "Spectral", "Spectral_r", "vlag", "icefire"}
OPTUNA_GENERIC = {"Objective Value", "Intermediate Value"}


class FigureRuleError(AssertionError):
    """A figure that breaks one of the tutorials' figure rules."""


def _is_colorbar(ax) -> bool:
    return getattr(ax, "_colorbar", None) is not None


def _title(ax) -> str:
    return " ".join(ax.get_title(loc) for loc in ("left", "center", "right")).strip()


def _name(ax) -> str:
    title = _title(ax)
    return f"the plot {title!r}" if title else "an untitled plot"


def _has_ticks(axis) -> bool:
    if not axis.get_visible():
        return False
    return any(t.label1.get_visible() and t.label1.get_text() or t.tick1line.get_visible()
               for t in axis.get_major_ticks()) and len(axis.get_ticklocs()) > 0


def _labelled(ax, which: str, fig) -> bool:
    get = "get_xlabel" if which == "x" else "get_ylabel"
    if getattr(ax, get)():
        return True
    sup = getattr(fig, "_supxlabel" if which == "x" else "_supylabel", None)
    if sup is not None and sup.get_text():
        return True
    shared = ax.get_shared_x_axes() if which == "x" else ax.get_shared_y_axes()
    return any(getattr(sibling, get)() for sibling in shared.get_siblings(ax))


def _texts(fig):
    for text in fig.findobj(lambda a: hasattr(a, "get_text")):
        try:
            yield text.get_text()
        except TypeError:
            continue


def _overlapping_lines(ax):
    lines = [ln for ln in ax.get_lines() if ln.get_visible() and len(ln.get_xdata()) > 4
             and not ln.get_label().startswith("_")]
    found = []
    for i, a in enumerate(lines):
        for b in lines[i + 1:]:
            if (a.get_linestyle(), a.get_marker()) != (b.get_linestyle(), b.get_marker()):
                continue
            xa, xb = np.asarray(a.get_xdata(), float), np.asarray(b.get_xdata(), float)
            if xa.shape != xb.shape or not np.allclose(xa, xb):
                continue
            pa = ax.transData.transform(np.column_stack([xa, a.get_ydata()]))
            pb = ax.transData.transform(np.column_stack([xb, b.get_ydata()]))
            distance = np.hypot(*(pa - pb).T)
            if np.mean(distance < 2.0) >= 0.2:
                found.append((a.get_label(), b.get_label()))
    return found


def problems(fig) -> list[str]:
    """The figure rules ``fig`` breaks, one sentence each (empty: none)."""
    fig.canvas.draw()                       # settle limits, norms and tick labels
    out = []
    plots = [ax for ax in fig.axes if ax.get_visible() and not _is_colorbar(ax)]
    suptitle = fig._suptitle.get_text() if fig._suptitle is not None else ""
    if not suptitle and not (len(plots) == 1 and _title(plots[0])):
        out.append(f"the figure has no title (a suptitle, or the title of its only plot; it "
                   f"has {len(plots)} plots)")
    for ax in fig.axes:
        if not ax.get_visible():
            continue
        if _is_colorbar(ax):
            cb = ax._colorbar
            long_axis = ax.yaxis if cb.orientation == "vertical" else ax.xaxis
            if not long_axis.get_label_text():
                out.append("a colour bar has no label (say what the colour measures)")
            continue
        if ax.axison:
            for which, axis in (("x", ax.xaxis), ("y", ax.yaxis)):
                if _has_ticks(axis) and not _labelled(ax, which, fig):
                    out.append(f"{_name(ax)} has no {which}-axis label")
        for mappable in list(ax.images) + list(ax.collections):
            cmap = getattr(mappable, "get_cmap", lambda: None)()
            if cmap is None or cmap.name not in DIVERGING or mappable.get_array() is None:
                continue
            vmin, vmax = mappable.norm.vmin, mappable.norm.vmax
            if vmin is None or vmax is None or not np.isclose(vmin, -vmax, rtol=1e-6,
                                                              atol=1e-12):
                out.append(f"{_name(ax)} draws the diverging map {cmap.name} with limits "
                           f"({vmin}, {vmax}); expected (-m, +m), so that white is 0")
        for a, b in _overlapping_lines(ax):
            out.append(f"{_name(ax)}: the lines {a!r} and {b!r} overlap with the same style "
                       f"(give one a dashed/dotted line or markers)")
    generic = sorted(set(_texts(fig)) & OPTUNA_GENERIC)
    if generic:
        out.append(f"Optuna's generic label(s) {generic} are still there: name the value")
    return out


def install() -> None:
    """Make ``matplotlib.pyplot.show`` check every open figure first."""
    import matplotlib.pyplot as plt  # noqa: PLC0415

    if getattr(plt.show, "_figure_rules", False):
        return
    original = plt.show

    def show(*args, **kwargs):
        for number in plt.get_fignums():
            fig = plt.figure(number)
            found = problems(fig)
            if found:
                plt.close("all")
                raise FigureRuleError("figure rules broken:\n  - " + "\n  - ".join(found))
        return original(*args, **kwargs)

    show._figure_rules = True
    plt.show = show
