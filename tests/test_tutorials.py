"""The tutorial notebooks (docs/tutorials): they run, draw their figures, and the committed
copies are current.

Every ``docs/tutorials/NN-name.ipynb`` is executed here in a fresh kernel of the Python
running the tests (so in ``.venv`` with torch and in ``.venv-notorch`` without), on small
data (``MINIDL_TUTORIAL_SMALL=1``); any error in any cell fails the test.  Each code cell
that calls ``plt.show()`` must have produced a PNG.  The committed notebooks must be
built from their sources (``docs/tutorials/src/NN-name.py``) and carry the outputs of a
full run (``make docs`` regenerates them).  The time each notebook took is printed in the
terminal summary ("tutorial notebooks").
"""
from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path

import pytest

from conftest import require_or_skip

ROOT = Path(__file__).resolve().parent.parent
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
        if not TIMES:
            return
        terminalreporter.section("tutorial notebooks (executed on small data)")
        for name, seconds in TIMES.items():
            terminalreporter.write_line(f"{name}: {seconds:.1f} s")
        terminalreporter.write_line(f"all {len(TIMES)} together: {sum(TIMES.values()):.1f} s")


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
    assert [(c.cell_type, c.source) for c in committed.cells] == \
        [(c.cell_type, c.source) for c in fresh.cells], (
        f"{path.name} was not built from src/{source.name} as it is now: run `make docs`")
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
