"""No import circles in the project (``tools/import_cycles.py`` reads the graph from the source).

- The counter finds circles: on a small package written here, a module-level circle, a
  circle closed only by a deferred import (inside a function), a circle through a
  package's ``__init__``, and nothing for imports under ``if TYPE_CHECKING:``.
- minidl, tuning and benchmarks have none, among module-level imports nor with the
  deferred ones counted.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _tool():
    spec = importlib.util.spec_from_file_location("import_cycles",
                                                  ROOT / "tools" / "import_cycles.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write(root: Path, files: dict[str, str]):
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_the_counter_finds_module_level_deferred_and_package_circles(tmp_path):
    tool = _tool()
    _write(tmp_path, {
        "pkg/__init__.py": "from . import a\n",
        "pkg/a.py": "from . import b\n",
        "pkg/b.py": "from .a import thing\n",                    # a <-> b at module level
        "pkg/c.py": "def f():\n    from . import d\n",
        "pkg/d.py": "from . import c\n",                         # c <-> d only through f()
        "pkg/e.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import f\n",
        "pkg/f.py": "from . import e\n",                         # e -> f never runs
        "pkg/sub/__init__.py": "from ..g import x\n",
        "pkg/g.py": "import pkg.sub.h\n",                         # runs pkg.sub's __init__
        "pkg/sub/h.py": "",
        "other/__init__.py": "",
        "other/m.py": "import json\nfrom pkg import a\n",         # outside edges only
    })
    found = tool.cycles(("pkg", "other"), tmp_path)
    assert found["module level"] == [["pkg.a", "pkg.b"], ["pkg.g", "pkg.sub"]]
    assert found["all"] == [["pkg.a", "pkg.b"], ["pkg.c", "pkg.d"], ["pkg.g", "pkg.sub"]]
    assert tool.within(found["all"], "other") == []


def test_no_import_circles():
    found = _tool().cycles(("minidl", "tuning", "benchmarks"))   # across them too
    assert found["module level"] == [], found["module level"]
    assert found["all"] == [], found["all"]
