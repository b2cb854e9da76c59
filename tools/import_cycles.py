"""Import circles among the project's modules, read from the source (nothing is imported).

Usage::

    python tools/import_cycles.py [PACKAGE ...]      # default: minidl tuning benchmarks

It parses every ``.py`` file of the packages with :mod:`ast`, builds the graph
"module A imports module B" among those modules, and prints the strongly connected
components with more than one module (and modules that import themselves): each is a
set of modules that import each other in a circle.  Two graphs, counted separately:

* **module level**: imports that run when the module is imported (at the top of the
  file, or inside a ``class``, ``if``, ``try`` or ``with`` block at top level), except
  those under ``if TYPE_CHECKING:``, which never run;
* **all**: the module-level imports plus those inside function bodies (deferred
  imports, which run on a call and so cannot deadlock an import, but still tie the two
  modules together).

How an import becomes an edge: ``import a.b.c`` and ``from a.b.c import x`` point at
``a.b.c``; ``from a.b import c`` points at ``a.b.c`` when that is a module, else at the
package ``a.b`` (its ``__init__``).  Relative imports are resolved against the importing
module's package.  Importing ``a.b.c`` first runs the packages ``a`` and ``a.b``: those
are edges too, except for the packages that hold the importing module (they are already
being imported when it runs; counting them would put every module in a circle with the
``__init__`` that imports it).  Imports by name at run time
(``importlib.import_module``) are not seen: they are how the kernel registry loads a
Numba twin on first use.  Imports of modules outside the scanned packages are ignored.
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PACKAGES = ("minidl", "tuning", "benchmarks")


def module_files(packages=DEFAULT_PACKAGES, root: Path = ROOT) -> dict[str, Path]:
    """``{dotted module name: file}`` for every ``.py`` file under the packages."""
    found = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.Module):
    """Yield ``(node, at_module_level)`` for every import statement in the tree."""
    def walk(node, module_level):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                yield child, module_level
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                yield from walk(child, False)
            elif isinstance(child, ast.If) and _is_type_checking(child.test):
                for stmt in child.orelse:
                    yield from walk(ast.Module(body=[stmt], type_ignores=[]), module_level)
            else:
                yield from walk(child, module_level)
    yield from walk(tree, True)


def _targets(node, module: str, is_package: bool, known) -> set[str]:
    """The scanned modules an import statement points at."""
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names if alias.name in known}
    if node.level:
        package = module.split(".") if is_package else module.split(".")[:-1]
        if node.level > 1:
            package = package[:len(package) - (node.level - 1)]
        base = ".".join(package + ([node.module] if node.module else []))
    else:
        base = node.module or ""
    targets = set()
    for alias in node.names:
        sub = f"{base}.{alias.name}" if base else alias.name
        if sub in known:
            targets.add(sub)
        elif base in known:
            targets.add(base)
    return targets


def _with_packages(targets: set[str], module: str, known) -> set[str]:
    """``targets`` and the packages above them that an import runs (see module docstring)."""
    parts = module.split(".")
    holders = {".".join(parts[:i]) for i in range(1, len(parts) + 1)}
    found = set(targets)
    for target in targets:
        pieces = target.split(".")
        for i in range(1, len(pieces)):
            package = ".".join(pieces[:i])
            if package in known and package not in holders:
                found.add(package)
    return found


def import_graph(packages=DEFAULT_PACKAGES, root: Path = ROOT):
    """``(module_level, function_level)``: two ``{module: set of modules it imports}``."""
    files = module_files(packages, root)
    top, deferred = {m: set() for m in files}, {m: set() for m in files}
    for module, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        is_package = path.name == "__init__.py"
        for node, module_level in _imports(tree):
            targets = _targets(node, module, is_package, files)
            (top if module_level else deferred)[module] |= _with_packages(targets, module, files)
    return top, deferred


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iteratively: the components of more than one module, and single
    modules that import themselves; each sorted, the list sorted."""
    index, low, on_stack, stack, found = {}, {}, set(), [], []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1 or node in graph.get(node, ()):
                        found.append(sorted(component))
    return sorted(found)


def cycles(packages=DEFAULT_PACKAGES, root: Path = ROOT) -> dict[str, list[list[str]]]:
    """``{"module level": components, "all": components}`` (see the module docstring)."""
    top, deferred = import_graph(packages, root)
    both = {m: top[m] | deferred[m] for m in top}
    return {"module level": strongly_connected(top), "all": strongly_connected(both)}


def within(components, package: str) -> list[list[str]]:
    """The components with at least one module of ``package``."""
    return [c for c in components
            if any(m == package or m.startswith(package + ".") for m in c)]


def main(argv=None) -> int:
    packages = tuple(argv if argv else sys.argv[1:]) or DEFAULT_PACKAGES
    top, deferred = import_graph(packages)
    print(f"{len(top)} modules of {', '.join(packages)}: {sum(map(len, top.values()))} "
          f"module-level import edges, {sum(len(deferred[m] - top[m]) for m in top)} more "
          f"inside functions")
    found = cycles(packages)
    for kind, components in found.items():
        modules = sum(len(c) for c in components)
        print(f"{kind} imports: {len(components)} circle(s), {modules} module(s) in them")
        for component in components:
            print("  " + " <-> ".join(component))
    return 1 if found["module level"] else 0


if __name__ == "__main__":
    sys.exit(main())
