"""The tutorial notebooks (docs/tutorials): they run, draw their figures, and the committed
copies are current.

Every ``docs/tutorials/NN-name.ipynb`` is executed here in a fresh kernel of the Python
running the tests (so in ``.venv`` with torch and in ``.venv-notorch`` without), on small
data (``MINIDL_TUTORIAL_SMALL=1``); any error in any cell fails the test.  Each code cell
that calls ``plt.show()`` must have produced a PNG.  The committed notebooks must be
built from their sources (``docs/tutorials/src/NN-name.py``) and carry the outputs of a
full run (``make docs`` regenerates them); a markdown cell with ``{{name}}`` placeholders
must read exactly as its template filled from the values the committed outputs recorded.
Every ``plt.show()`` checks the figure rules while the tests run them (``tutorial.figures``).
The time each notebook took is printed in the terminal summary ("tutorial notebooks").
"""
from __future__ import annotations

import copy
import importlib.util
import json
import time
from pathlib import Path

import numpy as np
import pytest

from support import require_or_skip

ROOT = Path(__file__).resolve().parents[2]
TUTORIALS = ROOT / "docs" / "tutorials"


def _load_build():
    spec = importlib.util.spec_from_file_location("minidl_tutorial_build", TUTORIALS / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build = _load_build()
SOURCES = build.sources()
NOTEBOOKS = sorted(TUTORIALS.glob("[0-9][0-9]-*.ipynb"))
TIMES: dict[str, float] = {}


class _TimesSummary:
    """Prints each notebook's execution time at the end of the run."""

    def pytest_terminal_summary(self, terminalreporter):
        if not TIMES and not CHECK_TIMES:
            return
        terminalreporter.section("tutorial notebooks (executed on small data)")
        for name, seconds in TIMES.items():
            terminalreporter.write_line(f"{name}: {seconds:.1f} s")
        if TIMES:
            terminalreporter.write_line(f"all {len(TIMES)} together: "
                                        f"{sum(TIMES.values()):.1f} s")
        if CHECK_TIMES:
            terminalreporter.write_line(
                f"exercise checks of {len(CHECK_TIMES)} notebooks (solution, wrong answers, "
                f"empty stub): {sum(CHECK_TIMES.values()):.1f} s; notebooks and checks "
                f"together: {sum(TIMES.values()) + sum(CHECK_TIMES.values()):.1f} s")


@pytest.fixture(scope="module", autouse=True)
def _report_times(request):
    plugins = request.config.pluginmanager
    if not plugins.has_plugin("minidl-tutorial-times"):
        plugins.register(_TimesSummary(), "minidl-tutorial-times")


def _figure_cells(nb):
    return [c for c in nb.cells if c.cell_type == "code" and "plt.show()" in c.source]


def _has_png(cell) -> bool:
    return any("image/png" in out.get("data", {}) for out in cell.get("outputs", []))


def _data_or_skip():
    from minidl.data import DataNotFoundError, find_dataset
    try:
        find_dataset("fashion-mnist")
    except DataNotFoundError as exc:
        require_or_skip("MINIDL_REQUIRE_DATA", f"Fashion-MNIST files not found ({exc})")


def test_every_source_has_a_notebook_and_back():
    assert SOURCES, f"no tutorial sources in {build.SRC}"
    assert [p.stem for p in NOTEBOOKS] == [p.stem for p in SOURCES], (
        "docs/tutorials/*.ipynb and docs/tutorials/src/*.py differ: run `make docs`")


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_committed_notebook_is_current_and_has_outputs(source):
    import nbformat
    path = build.notebook_path(source)
    assert path.exists(), f"{path.name} is missing: run `make docs`"
    committed = nbformat.read(str(path), as_version=4)
    fresh = build.to_notebook(source)
    assert [(c.cell_type, c.get("metadata", {}).get("minidl", {}).get("template", c.source))
            for c in committed.cells] == [(c.cell_type, c.source) for c in fresh.cells], (
        f"{path.name} was not built from src/{source.name} as it is now: run `make docs`")
    refilled = copy.deepcopy(committed)
    build.fill(refilled, path.name)       # from the values the committed outputs recorded
    stale = [i for i, (a, b) in enumerate(zip(refilled.cells, committed.cells))
             if a.source != b.source]
    assert not stale, (f"{path.name}: cells {stale} do not read as their templates filled "
                       f"from the values the notebook recorded: run `make docs`")
    assert committed.metadata.get("minidl_tutorial", {}).get("small") is False, (
        f"{path.name} must carry the outputs of a full run (`make docs`), not a small one")
    code = [c for c in committed.cells if c.cell_type == "code"]
    not_run = [i for i, c in enumerate(committed.cells)
               if c.cell_type == "code" and c.execution_count is None]
    assert code and not not_run, f"{path.name}: cells {not_run} have not been executed"
    errors = [o for c in code for o in c.outputs if o.output_type == "error"]
    assert not errors, f"{path.name} carries an error output: {errors[0].get('ename')}"
    missing = [committed.cells.index(c) for c in _figure_cells(committed) if not _has_png(c)]
    assert not missing, f"{path.name}: figure cells {missing} carry no picture"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_executes_on_small_data(notebook):
    import nbformat
    _data_or_skip()
    nb = nbformat.read(str(notebook), as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    t0 = time.perf_counter()
    build.execute(nb, small=True, timeout=180)
    TIMES[notebook.stem] = time.perf_counter() - t0
    build.fill(nb, notebook.stem)          # every quoted value recorded, every record quoted
    figures = _figure_cells(nb)
    missing = [nb.cells.index(c) for c in figures if not _has_png(c)]
    assert not missing, f"{notebook.name}: figure cells {missing} drew no picture"
    text = json.dumps([c.get("outputs", []) for c in nb.cells])
    assert "Traceback" not in text, f"{notebook.name}: a cell printed a traceback"


def test_source_cells_are_cut_at_markers():
    cells = build.parse_cells("header\n# %% [markdown]\n# # Title\n#\n# $x^2$\n\n"
                              "# %%\nx = 1\n\n\n# %%\nprint(x)\n")
    assert cells == [("markdown", "# Title\n\n$x^2$"), ("code", "x = 1"), ("code", "print(x)")]


def test_bad_markdown_line_is_a_clear_error():
    with pytest.raises(build.SourceError, match="must start with '# '"):
        build.parse_cells("# %% [markdown]\nnot a comment\n", "t.py")
    with pytest.raises(build.SourceError, match=r"expected '# %%' or '# %% \[markdown\]'"):
        build.parse_cells("# %% [raw]\n", "t.py")


# -- stated values (tutorial.record / {{name}}), claims ------------------------------------
def _notebook_with(markdown: str, values: dict):
    import nbformat
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_markdown_cell(markdown)
    cell.metadata["minidl"] = {"template": markdown}
    code = nbformat.v4.new_code_cell("record(...)")
    code.outputs = [nbformat.v4.new_output("display_data", data={
        build.FACTS_MIME: values, "text/plain": "values quoted in the text"})]
    nb.cells = [code, cell]
    return nb


def test_placeholders_are_filled_from_recorded_values():
    nb = _notebook_with("ends at $f = {{f:.1e}}$ after {{steps}} steps ({{name}})",
                        {"f": 0.000163, "steps": 150, "name": "Adam"})
    build.fill(nb)
    assert nb.cells[1].source == "ends at $f = 1.6e-04$ after 150 steps (Adam)"
    assert nb.cells[1].metadata["minidl"]["template"].startswith("ends at $f = {{f:.1e}}$")
    fresh = build.parse_cells("# %% [markdown]\n# $\\frac{a}{b}$ is {{x}}\n")
    assert fresh == [("markdown", "$\\frac{a}{b}$ is {{x}}")]


def test_a_quoted_value_nobody_recorded_or_a_record_nobody_quotes_is_an_error():
    with pytest.raises(build.FillError, match=r"quotes \{\{g\}\}, but no cell recorded it"):
        build.fill(_notebook_with("{{g}}", {"f": 1.0}))
    with pytest.raises(build.FillError, match="recorded but quoted by no text: unused"):
        build.fill(_notebook_with("{{f}}", {"f": 1.0, "unused": 2}))
    with pytest.raises(build.FillError, match="cannot format"):
        build.fill(_notebook_with("{{f:.2f}}", {"f": "text"}))


def test_claim_fails_when_the_run_contradicts_the_text(capsys):
    from tutorial import ClaimError, claim, record
    claim(2 > 1, "two is more than one")
    assert "checked: two is more than one" in capsys.readouterr().out
    with pytest.raises(ClaimError, match="the text says: 'one is more than two'"):
        claim(1 > 2, "one is more than two")
    with pytest.raises(ValueError, match="finite number"):
        record(x=float("nan"))


# -- figure rules (tutorial.figures) ---------------------------------------------------------
@pytest.fixture
def plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as pyplot
    yield pyplot
    pyplot.close("all")


def test_a_figure_that_keeps_the_rules_passes(plt):
    from tutorial.figures import problems
    fig, (ax, bx) = plt.subplots(1, 2)
    ax.plot([0, 1, 2, 3, 4, 5], [0, 1, 2, 3, 4, 5], label="a")
    ax.plot([0, 1, 2, 3, 4, 5], [0, 1, 2, 3, 4, 5.01], "--", label="b")   # overlaps: styled
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    image = bx.imshow(np.arange(-4, 5).reshape(3, 3), cmap="RdBu_r", vmin=-4, vmax=4)
    bx.axis("off")
    fig.colorbar(image, ax=bx, label="gradient")
    fig.suptitle("two panels")
    assert problems(fig) == []


def test_each_figure_rule_is_enforced(plt):
    from tutorial.figures import problems
    fig, ax = plt.subplots()
    ax.plot([0, 1, 2, 3, 4, 5], [0, 1, 2, 3, 4, 5], label="Adam")
    ax.plot([0, 1, 2, 3, 4, 5], [0, 1, 2, 3, 4, 5], label="AdamW")
    ax.set_ylabel("Objective Value")
    image = ax.imshow(np.arange(9.0).reshape(3, 3) - 2, cmap="RdBu_r")
    fig.colorbar(image, ax=ax)
    found = "\n".join(problems(fig))
    for expected in ("no title", "no x-axis label", "diverging map RdBu_r",
                     "colour bar has no label", "'Adam' and 'AdamW' overlap",
                     "Optuna's generic label"):
        assert expected in found, f"{expected!r} not reported in:\n{found}"


def test_show_raises_on_a_broken_figure(plt, monkeypatch):
    from tutorial.figures import FigureRuleError, install
    monkeypatch.setattr(plt, "show", plt.show)      # put back the unchecked one afterwards
    install()
    plt.subplots(1, 2)
    with pytest.raises(FigureRuleError, match="no title"):
        plt.show()


# -- exercises (tutorial.exNN checks, solutions/exNN.py) -----------------------------------
CHECK_TIMES: dict[str, float] = {}


def _exercise_modules(source):
    """The notebook's check module and its solutions module."""
    import importlib
    number = source.stem[:2]
    checks = importlib.import_module(f"tutorial.ex{number}")
    path = TUTORIALS / "solutions" / f"ex{number}.py"
    spec = importlib.util.spec_from_file_location(f"minidl_tutorial_solutions_{number}", path)
    solutions = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(solutions)
    return checks, solutions


def _not_written(*args, **kwargs):
    raise NotImplementedError


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_every_notebook_ends_with_exercises_that_call_its_checks(source):
    checks, solutions = _exercise_modules(source)
    assert 2 <= len(checks.__all__) <= 3, f"ex{source.stem[:2]}: expected 2 or 3 checks"
    cells = build.parse_cells(source.read_text(), source.name)
    headings = [i for i, (kind, text) in enumerate(cells)
                if kind == "markdown" and text.startswith("## Exercises")]
    assert headings, f"{source.name} has no '## Exercises' section"
    after = "\n".join(text for kind, text in cells[headings[-1]:] if kind == "code")
    for name in checks.__all__:
        assert f"{name}(" in after, f"{source.name}: the exercises never call {name}"
    later_sections = [text for kind, text in cells[headings[-1] + 1:]
                      if kind == "markdown" and text.startswith("## ")]
    assert not later_sections, f"{source.name}: the exercises must come last"
    assert sorted(solutions.SOLUTIONS) == sorted(checks.__all__), (
        f"solutions/ex{source.stem[:2]}.py must solve exactly the checks of tutorial/ex"
        f"{source.stem[:2]}.py")


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_exercise_checks_pass_the_solution_and_reject_wrong_answers(source):
    checks, solutions = _exercise_modules(source)
    t0 = time.perf_counter()
    for name in checks.__all__:
        check = getattr(checks, name)
        solution, wrong_answers = solutions.SOLUTIONS[name]
        result = check(solution)
        assert result.passed, f"{name} rejects the reference solution: {result}"
        assert wrong_answers, f"{name}: no deliberately wrong answer to reject"
        for wrong in wrong_answers:
            result = check(wrong)
            assert not result.passed, f"{name} accepts the wrong answer {wrong.__name__}"
            assert result.message, f"{name} rejects {wrong.__name__} without saying why"
        result = check(_not_written)
        assert not result.passed and "not written yet" in result.message, result
    CHECK_TIMES[source.stem] = time.perf_counter() - t0
