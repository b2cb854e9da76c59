"""The commands that ``tuning`` prints for the user to run next work in a fresh shell."""
from __future__ import annotations

import shlex
import subprocess
import sys

from tuning import report


def test_hint_names_this_interpreter_unless_it_is_the_python_on_path(monkeypatch, tmp_path):
    monkeypatch.setattr(report.shutil, "which", lambda name: sys.executable)
    assert report.tuning_command() == "python -m tuning"
    # no environment activated: `python` is another interpreter (or none), so the hint
    # names this one -- the path that `make tune` created, e.g. .venv/bin/python
    monkeypatch.setattr(report.shutil, "which", lambda name: None)
    monkeypatch.chdir(tmp_path)
    cmd = report.tuning_command()
    assert cmd.endswith(" -m tuning") and cmd != "python -m tuning"
    out = subprocess.run(shlex.split(cmd) + ["--help"], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0 and "run" in out.stdout, out.stderr
