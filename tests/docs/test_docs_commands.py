"""Every ``python -m tuning ...`` command shown in README.md and docs/*.md parses and
validates: a reader who pastes one gets the command it describes, not a usage error.

Commands are read from the Markdown as written (continuation lines joined, a trailing
``# comment`` dropped).  Placeholders a reader fills in are replaced by sample values:
``$STORAGE``/``"$OPTUNA_STORAGE"`` by a PostgreSQL URL, ``K`` by 2, ``PROXY_HOST`` by a
host name; ``[--json]``-style optional parts are tried both with and without the option.
A command whose arguments are elided (``...``) is skipped, and counted.
"""
from __future__ import annotations

import itertools
import re
import shlex
from pathlib import Path

import pytest

from tuning.cli import build_parser
from tuning.errors import TuningError
from tuning.study import StudySettings

REPO = Path(__file__).resolve().parents[2]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
START = re.compile(r"(?:\.venv/bin/)?python -m tuning\b")
SAMPLE = {"$STORAGE": "postgresql+psycopg2://tuning@db/tuning",
          '"$OPTUNA_STORAGE"': "postgresql+psycopg2://tuning@db/tuning",
          "$OPTUNA_STORAGE": "postgresql+psycopg2://tuning@db/tuning",
          "PROXY_HOST": "proxy", "--workers K": "--workers 2"}


def _logical_lines(text: str):
    """The page's lines with backslash continuations joined."""
    pending = ""
    for line in text.splitlines():
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        yield pending + line
        pending = ""


def commands(page: Path) -> list[str]:
    """Every ``python -m tuning`` command on ``page``, from the module name to the end of
    the command (a closing backtick, a ``|`` table cell or a ``#`` comment ends it)."""
    found = []
    for line in _logical_lines(page.read_text(encoding="utf-8")):
        for match in START.finditer(line):
            rest = line[match.end():]
            rest = re.split(r"`|\s#\s|\s{3,}#|\s\|\s", rest)[0]
            found.append(rest.strip())
    return found


def variants(args: str) -> list[str]:
    """``args`` with each ``[optional]`` part left out and put in (``[--csv|--json]``: each)."""
    parts = re.split(r"(\[[^\]]*\])", args)
    choices = []
    for part in parts:
        if part.startswith("[") and part.endswith("]"):
            choices.append([""] + [" " + o.strip() + " " for o in part[1:-1].split("|")])
        else:
            choices.append([part])
    return ["".join(c) for c in itertools.product(*choices)]


ALL = [(page.relative_to(REPO).as_posix(), cmd) for page in PAGES for cmd in commands(page)]
ELIDED = [c for c in ALL if "..." in c[1] or c[1] in ("", "COMMAND")]
CHECKED = [c for c in ALL if c not in ELIDED]


def test_the_pages_show_commands():
    # the README and the tuning guide must be read: a broken pattern would check nothing
    pages = {page for page, _ in CHECKED}
    assert "README.md" in pages and "docs/tuning.md" in pages
    assert len(CHECKED) >= 30, CHECKED


def check(args: str) -> None:
    """Parse ``python -m tuning ARGS`` (SystemExit on a usage error) and, for a command
    that makes a new study from ``--space``, validate the study it describes."""
    parsed = build_parser().parse_args(shlex.split(args))
    options = vars(parsed)
    if options.get("space") and parsed.command in ("run", "create", "enqueue", "pbt"):
        StudySettings.from_options(options)


@pytest.mark.parametrize("page,args", CHECKED, ids=[f"{p}:{a[:60]}" for p, a in CHECKED])
def test_command_parses_and_validates(page, args, monkeypatch):
    # the pages tell the reader to keep a shared storage's URL in OPTUNA_STORAGE
    monkeypatch.setenv("OPTUNA_STORAGE", SAMPLE["$STORAGE"])
    text = args
    for placeholder, value in SAMPLE.items():
        text = text.replace(placeholder, value)
    for variant in variants(text):
        try:
            check(variant)
        except SystemExit as exc:
            pytest.fail(f"{page}: `python -m tuning {variant.strip()}` does not parse "
                        f"(exit {exc.code})")


@pytest.mark.parametrize("bad", ["run --space lab-mlp --n-trails 3",   # misspelt option
                                 "run --space no-such-space",          # unknown space
                                 "run --space lab-mlp --sampler grid --grid-file /no/such.json",
                                 "darts --space cnn"])                 # --out missing
def test_checker_refuses_a_wrong_command(bad):
    with pytest.raises((SystemExit, TuningError)):
        check(bad)


def test_variants_expand_optional_parts():
    assert [v.split() for v in variants("trials --study-name s [--csv|--json]")] == [
        ["trials", "--study-name", "s"], ["trials", "--study-name", "s", "--csv"],
        ["trials", "--study-name", "s", "--json"]]


BENCH = re.compile(r"python -m (benchmarks\.[a-z_]+)")
BENCHMARKS = sorted({m for page in [*PAGES, REPO / "benchmarks" / "README.md",
                                     REPO / "benchmarks" / "__init__.py"]
                     for m in BENCH.findall(page.read_text(encoding="utf-8"))})


# benchmarks whose short proof is not --quick: the soak test's length is --minutes; the
# cnn study is a study (no --quick), proven on small settings by tests/benchmarks/test_cnn_study.py
SHORT_FORM = {"benchmarks.soak": "--minutes", "benchmarks.cnn_study": "--search-minutes"}


def test_every_documented_benchmark_has_a_quick_mode():
    # a long benchmark command in the docs is proven by its --quick run in the suite;
    # each one named must exist and offer --quick (the soak test: --minutes instead)
    import subprocess
    import sys
    assert len(BENCHMARKS) >= 10, BENCHMARKS
    for module in BENCHMARKS:
        proc = subprocess.run([sys.executable, "-m", module, "--help"], cwd=REPO, text=True,
                              capture_output=True, timeout=120)
        assert proc.returncode == 0, f"python -m {module} --help: {proc.stderr[-500:]}"
        flag = SHORT_FORM.get(module, "--quick")
        assert flag in proc.stdout, f"python -m {module} has no {flag}"
