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

The committed notebooks are full runs; ``tests/test_tutorials.py`` checks that they match
their sources, carry outputs, and that every figure cell (a cell calling ``plt.show()``)
produced a picture.
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


class SourceError(ValueError):
    """A tutorial source that cannot be cut into cells."""


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
            nb.cells.append(nbformat.v4.new_markdown_cell(text))
    # stable ids, so a rebuild only changes what changed
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"{source.stem[:2]}-{i:03d}"
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    return nb


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

    Raises ``nbclient.exceptions.CellExecutionError`` on the first failing cell.
    """
    from nbclient import NotebookClient  # noqa: PLC0415

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
    seconds = execute(nb, small) if run else None
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
        except CellExecutionError as exc:
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
