"""Exact words of two messages the failure handling lives by: what a damaged journal is told
(``journal.damage_message``: the commands in it must repair exactly the damaged lines), and
whose a RUNNING trial is (``workers.owner_status``: fail-stale acts on it and prints it).
Pinned exactly, so that a changed line number, range or verdict fails a test (mutation
testing found both loosely tested)."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from types import SimpleNamespace

from tuning import workers
from tuning.journal import _preview, damage_message


def test_one_bad_line():
    assert damage_message("s.log", {3: b"garbage"}, None) == (
        "journal s.log: line 3 is not a journal record ('garbage'). tuning reads past it but "
        "does not write behind it (no Optuna reader could read the file afterwards).\n"
        "To repair it, keep a copy (cp s.log s.log.bak), then: sed -i '3d' s.log")


def test_bad_lines_in_ranges_and_a_foreign_tail():
    message = damage_message("s.log", {7: b"x", 2: b"first bad", 3: b"y", 4: b"z"},
                             (120, b"tail bytes"))
    assert message == (
        "journal s.log: it ends with 10 bytes that are not a journal record ('tail bytes'); "
        "lines 2-4, 7 are not journal records ('first bad'). tuning reads past them but does "
        "not write behind them (no Optuna reader could read the file afterwards).\n"
        "To repair it, keep a copy (cp s.log s.log.bak), then: truncate -s 120 s.log && "
        "sed -i '2,4d;7d' s.log")


def test_only_a_foreign_tail():
    assert damage_message("j", {}, (5, b"\xff\x00abc")) == (
        "journal j: it ends with 5 bytes that are not a journal record ('\\xff\\x00abc'). "
        "tuning reads past it but does not write behind it (no Optuna reader could read the "
        "file afterwards).\nTo repair it, keep a copy (cp j j.bak), then: truncate -s 5 j")


def test_preview_is_short_and_printable():
    assert _preview(b"a" * 24) == "a" * 24
    assert _preview(b"a" * 25) == "a" * 24 + "..."
    assert _preview(b"\n\x01") == "\\n\\x01"
    assert _preview(b"abcdef", limit=3) == "abc..."


def running(ident):
    return SimpleNamespace(number=5, user_attrs={} if ident is None else
                           {workers.WORKER_ATTR: ident})


def test_no_worker_recorded():
    assert workers.owner_status(running(None)) == ("unknown", "no worker recorded yet")
    # a worker attribute copied from another trial is not this trial's worker
    other = {**workers.worker_identity(), "trial": 4}
    assert workers.owner_status(running(other)) == ("unknown", "no worker recorded yet")


def test_this_process_is_alive():
    me = {**workers.worker_identity(), "trial": 5}
    where = f"{me['host']} pid {me['pid']}"
    assert workers.owner_status(running(me)) == ("alive", f"worker {where} is running")


def test_a_worker_on_another_machine_is_unknown():
    for key in ("host", "boot", "pidns"):
        ident = {**workers.worker_identity(), "trial": 5, key: "elsewhere"}
        where = f"{ident['host']} pid {ident['pid']}"
        assert workers.owner_status(running(ident)) == (
            "unknown", f"worker {where} is on another machine")


def test_a_finished_process_is_dead():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    ident = {**workers.machine_identity(), "pid": child.pid, "start": None, "rank": None,
             "trial": 5}
    where = f"{ident['host']} pid {child.pid}"
    assert workers.owner_status(running(ident)) == ("dead", f"worker {where} is gone")


def test_a_reused_pid_is_dead():
    ident = {**workers.worker_identity(), "trial": 5}
    ident["start"] = str(int(ident["start"]) + 1) if ident["start"] is not None else "0"
    where = f"{ident['host']} pid {os.getpid()}"
    assert workers.owner_status(running(ident)) == (
        "dead", f"worker {where} is gone (the pid now belongs to another process)")


def test_them_for_two_problems_it_for_one():
    assert "reads past them" in damage_message("s", {1: b"a"}, (9, b"b"))     # 1 line + tail
    assert "reads past them" in damage_message("s", {1: b"a", 5: b"b"}, None)  # 2 lines
    assert "reads past it" in damage_message("s", {}, (9, b"b"))


def test_a_zombie_worker_is_dead():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 30
    while (workers._proc_stat(child.pid) or ("?",))[0] != "Z":   # exited, not waited for
        assert time.monotonic() < deadline, "the child did not become a zombie"
        time.sleep(0.01)
    ident = {**workers.machine_identity(), "pid": child.pid, "start": None, "trial": 5}
    where = f"{ident['host']} pid {child.pid}"
    assert workers.owner_status(running(ident)) == ("dead", f"worker {where} is gone (zombie)")
    child.wait()


def test_without_proc_signal_zero_decides(monkeypatch):
    # no /proc (boot id unknown): a pid that answers signal 0 is alive, one that does not is gone
    monkeypatch.setattr(workers, "machine_identity",
                        lambda: {"host": "h", "boot": None, "pidns": None})
    monkeypatch.setattr(workers, "_proc_stat", lambda pid: None)
    alive = {"host": "h", "boot": None, "pidns": None, "pid": os.getpid(), "trial": 5}
    assert workers.owner_status(running(alive)) == (
        "alive", f"worker h pid {os.getpid()} is running")
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    gone = {**alive, "pid": child.pid}
    assert workers.owner_status(running(gone)) == ("dead", f"worker h pid {child.pid} is gone")
