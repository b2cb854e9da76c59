"""Build the tutorial notebooks from their sources and execute them in place.

    python docs/tutorials/build.py                  # every tutorial, full data (make docs)
    python docs/tutorials/build.py 02-convolution-im2col --small
    python docs/tutorials/build.py --no-execute     # only convert (no outputs)

Each tutorial's source is ``docs/tutorials/src/NN-name.py``, a plain Python file cut into
cells by ``# %%`` (code) and ``# %% [markdown]`` (markdown; every line starts with ``# ``).
The notebook ``docs/tutorials/NN-name.ipynb`` is rebuilt from it and executed with
``nbclient`` in a fresh kernel of *this* Python (``sys.executable``: the venv running the
build), with ``docs/tutorials`` as the working directory, and written back with its
outputs.  ``--small`` sets ``MINIDL_TUTORIAL_SMALL=1``, which each notebook's first cell
reads to shrink its data and epochs (the test suite runs them so).

Stated values: a markdown cell may hold ``{{name}}`` or ``{{name:.3f}}`` (a Python format
spec); after the run every such placeholder is replaced by the value a code cell recorded
with ``tutorial.record(name=value)`` in the same run (``fill``).  The template is kept in
the cell's metadata (``minidl.template``), so a committed notebook shows the filled text
and still says where each number came from.  A placeholder that no cell recorded, or a
recorded value that no text uses, is an error.

Figure rules: before the first cell, the kernel runs ``tutorial.figures.install()``, which
makes every ``plt.show()`` check its figure (title, axis labels, diverging maps centred on
zero, Optuna's generic labels, overlapping lines); that set-up cell is removed again after
the run.

The committed notebooks are full runs; ``tests/docs/test_tutorials.py`` checks that they match
their sources (filled from their own recorded values), carry outputs, and that every
figure cell (a cell calling ``plt.show()``) produced a picture.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SRC = HERE / "src"
SMALL_ENV = "MINIDL_TUTORIAL_SMALL"
CELL_TIMEOUT_S = 900
_MARKER = re.compile(r"^# %%(?P<rest>.*)$")
PLACEHOLDER = re.compile(r"\{\{\s*(?P<name>[A-Za-z_]\w*)\s*(?::(?P<spec>[^{}]*))?\}\}")
SETUP_CELL = ("from tutorial.figures import install as _install_figure_rules\n"
              "_install_figure_rules()\ndel _install_figure_rules")

if str(HERE) not in sys.path:                 # the notebooks' support package, `tutorial`
    sys.path.insert(0, str(HERE))
from tutorial import FACTS_MIME  # noqa: E402


class SourceError(ValueError):
    """A tutorial source that cannot be cut into cells."""


class FillError(ValueError):
    """A markdown placeholder without a recorded value, or a recorded value never used."""


def sources() -> list[Path]:
    """The tutorial sources, in order (``NN-name.py``)."""
    return sorted(p for p in SRC.glob("[0-9][0-9]-*.py"))


def notebook_path(source: Path) -> Path:
    return HERE / (source.stem + ".ipynb")


def parse_cells(text: str, name: str = "<source>") -> list[tuple[str, str]]:
    """``[(kind, source), ...]`` with kind ``"code"`` or ``"markdown"``."""
    cells: list[tuple[str, list[str]]] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        m = _MARKER.match(line)
        if m:
            rest = m.group("rest").strip()
            if rest == "":
                cells.append(("code", []))
            elif rest == "[markdown]":
                cells.append(("markdown", []))
            else:
                raise SourceError(f"{name}:{lineno}: expected '# %%' or '# %% [markdown]', "
                                  f"got {line!r}")
            continue
        if not cells:
            continue          # a header before the first cell is not part of the notebook
        kind, lines = cells[-1]
        if kind == "markdown":
            if line == "#":
                line = ""
            elif line.startswith("# "):
                line = line[2:]
            elif line.strip() == "":
                line = ""
            else:
                raise SourceError(f"{name}:{lineno}: a markdown line must start with '# ' "
                                  f"(or be '#'), got {line!r}")
        lines.append(line)
    out = []
    for kind, lines in cells:
        while lines and lines[-1].strip() == "":
            lines.pop()
        while lines and lines[0].strip() == "":
            lines.pop(0)
        if lines:
            out.append((kind, "\n".join(lines)))
    return out


def to_notebook(source: Path):
    """The notebook (no outputs) built from ``source``."""
    import nbformat  # noqa: PLC0415 - only the docs build needs it

    nb = nbformat.v4.new_notebook()
    for kind, text in parse_cells(source.read_text(), source.name):
        if kind == "code":
            nb.cells.append(nbformat.v4.new_code_cell(text))
        else:
            cell = nbformat.v4.new_markdown_cell(text)
            if PLACEHOLDER.search(text):
                cell.metadata["minidl"] = {"template": text}
            nb.cells.append(cell)
    # stable ids, so a rebuild only changes what changed
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"{source.stem[:2]}-{i:03d}"
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    return nb


def recorded(nb) -> dict:
    """The values the notebook's outputs recorded (``tutorial.record``), by name."""
    values: dict = {}
    for index, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []) if cell.cell_type == "code" else []:
            facts = out.get("data", {}).get(FACTS_MIME)
            for name, value in (facts or {}).items():
                if name in values:
                    raise FillError(f"cell {index}: the value {name!r} is recorded twice")
                values[name] = value
    return values


def fill_text(template: str, values: dict, where: str = "") -> tuple[str, set]:
    """``template`` with every ``{{name:spec}}`` replaced; also the names it used."""
    used = set()

    def replace(match):
        name, spec = match.group("name"), match.group("spec") or ""
        if name not in values:
            raise FillError(f"{where}: the text quotes {{{{{name}}}}}, but no cell recorded "
                            f"it (recorded: {', '.join(sorted(values)) or 'nothing'})")
        used.add(name)
        try:
            return format(values[name], spec)
        except (TypeError, ValueError) as exc:
            raise FillError(f"{where}: cannot format {name}={values[name]!r} with "
                            f"{spec!r}: {exc}") from None

    return PLACEHOLDER.sub(replace, template), used


def fill(nb, name: str = "notebook") -> None:
    """Fill every templated markdown cell of ``nb`` from the values its outputs recorded."""
    values = recorded(nb)
    used = set()
    for index, cell in enumerate(nb.cells):
        template = cell.get("metadata", {}).get("minidl", {}).get("template")
        if cell.cell_type == "markdown" and template is not None:
            cell.source, names = fill_text(template, values, f"{name}, cell {index}")
            used |= names
    unused = sorted(set(values) - used)
    if unused:
        raise FillError(f"{name}: recorded but quoted by no text: {', '.join(unused)} "
                        f"(drop the record or use {{{{name}}}} in a markdown cell)")


def kernel_manager(socket_dir: str):
    """A kernel manager that starts ``sys.executable -m ipykernel_launcher``.

    Not the ``python3`` kernelspec found on the search path: a user-wide one could point
    at another Python, and the notebooks must run in the venv that runs the build/tests.
    The kernel talks over Unix sockets in ``socket_dir`` (local only, not TCP).
    """
    from jupyter_client import KernelManager  # noqa: PLC0415
    from jupyter_client.kernelspec import KernelSpec, KernelSpecManager  # noqa: PLC0415

    class ThisPython(KernelSpecManager):
        def get_kernel_spec(self, kernel_name, *args, **kwargs):
            return KernelSpec(argv=[sys.executable, "-m", "ipykernel_launcher", "-f",
                                    "{connection_file}"],
                              display_name="Python 3", language="python", resource_dir="")

    km = KernelManager(kernel_name="python3", kernel_spec_manager=ThisPython())
    km.transport = "ipc"
    km.ip = os.path.join(socket_dir, "kernel")
    return km


def execute(nb, small: bool, cwd: Path = HERE, timeout: int = CELL_TIMEOUT_S) -> float:
    """Run every cell of ``nb`` in place (outputs added); returns the wall seconds.

    A set-up cell that installs the figure rules runs first and is removed afterwards.
    Raises ``nbclient.exceptions.CellExecutionError`` on the first failing cell.
    """
    import nbformat  # noqa: PLC0415
    from nbclient import NotebookClient  # noqa: PLC0415

    nb.cells.insert(0, nbformat.v4.new_code_cell(SETUP_CELL))

    saved = os.environ.get(SMALL_ENV)
    os.environ[SMALL_ENV] = "1" if small else "0"
    try:
        with tempfile.TemporaryDirectory(prefix="minidl-nb-") as socket_dir:
            km = kernel_manager(socket_dir)
            client = NotebookClient(nb, km=km, timeout=timeout,
                                    record_timing=False, allow_errors=False,
                                    resources={"metadata": {"path": str(cwd)}})
            t0 = time.perf_counter()
            try:
                client.execute()
            finally:
                # nbclient stops only the kernels it started itself: stop ours
                if km.has_kernel:
                    km.shutdown_kernel(now=False)
            seconds = time.perf_counter() - t0
    finally:
        del nb.cells[0]                           # the set-up cell
        for cell in nb.cells:                     # counted from 1 again, without it
            if cell.cell_type == "code" and cell.execution_count is not None:
                cell.execution_count -= 1
        if saved is None:
            os.environ.pop(SMALL_ENV, None)
        else:
            os.environ[SMALL_ENV] = saved
    nb.metadata["minidl_tutorial"] = {"small": bool(small)}
    return seconds


def build(source: Path, run: bool = True, small: bool = False) -> float | None:
    """Rebuild (and execute) one notebook; write it; the execution seconds or None."""
    import nbformat  # noqa: PLC0415

    nb = to_notebook(source)
    seconds = None
    if run:
        seconds = execute(nb, small)
        fill(nb, source.stem)
    out = notebook_path(source)
    nbformat.write(nb, str(out))
    return seconds


def _select(names: list[str]) -> list[Path]:
    everything = sources()
    if not names:
        return everything
    chosen = []
    for name in names:
        stem = Path(name).stem
        match = [p for p in everything if p.stem == stem or p.stem.startswith(stem + "-")]
        if len(match) != 1:
            raise SystemExit(f"build.py: no single tutorial source named {name!r} in {SRC} "
                             f"(have: {', '.join(p.stem for p in everything) or 'none'})")
        chosen.append(match[0])
    return chosen


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="tutorial stems (e.g. 01-layer-by-hand or "
                        "01); none = all")
    parser.add_argument("--small", action="store_true",
                        help=f"small data ({SMALL_ENV}=1), as the test suite runs them")
    parser.add_argument("--no-execute", action="store_true", help="convert only, no outputs")
    args = parser.parse_args(argv)
    from nbclient.exceptions import CellExecutionError  # noqa: PLC0415

    total = 0.0
    for source in _select(args.names):
        print(f"{source.stem}: ", end="", flush=True)
        try:
            seconds = build(source, run=not args.no_execute, small=args.small)
        except (CellExecutionError, FillError) as exc:
            print("FAILED")
            print(exc, file=sys.stderr)
            return 1
        if seconds is None:
            print(f"converted -> {notebook_path(source).relative_to(HERE.parent.parent)}")
        else:
            total += seconds
            print(f"executed in {seconds:.1f} s -> "
                  f"{notebook_path(source).relative_to(HERE.parent.parent)}")
    if not args.no_execute:
        print(f"total {total:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
