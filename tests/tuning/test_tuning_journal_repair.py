"""Issue 23, item 2: the journal never cuts a complete record.

Repair trims only a last line that does not parse as a record (a torn write); a complete
last record that lacks only its newline (an editor, a copy tool, a crash between the
record and its newline) is read, and the next append gives it its newline.  The byte
tests pin where a torn record ends and which bytes this format writes.
"""
from __future__ import annotations

import json
import subprocess
import sys
import warnings

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState

from tuning.errors import JournalDamagedError, JournalWarning, TuningError
from tuning.journal import (RECORD_START, JournalFile, check_journal_file, is_torn_record,
                            parse_record, tail_kind)
from tuning.storage import open_storage
from tuning_env import tuning_env

TINY = ["--space", "lab-mlp", "--epochs", "1", "--train-size", "200", "--val-size", "200",
        "--pruner", "none"]
X = {"x": FloatDistribution(0.0, 1.0)}


def tuning(cwd, *args):
    return subprocess.run([sys.executable, "-m", "tuning", *map(str, args)], cwd=cwd,
                          env=tuning_env(), capture_output=True, text=True, timeout=300)


def journal_study(path, values=(0.5, 0.25)):
    study = optuna.create_study(storage=open_storage(str(path), "t"), study_name="t")
    for v in values:
        study.tell(study.ask(X), v)
    return study


def reload(path, name="t"):
    return optuna.load_study(study_name=name, storage=open_storage(str(path), name, write=False))


# -- the command a user runs ---------------------------------------------------------------

@pytest.mark.slow
def test_a_complete_last_record_without_its_newline_keeps_its_trial(tmp_path, fashion_mnist):
    """`truncate -s -1 studies/s.log` after a run, then `tuning run`: the trial stays
    COMPLETE (it used to be cut, read as RUNNING and failed by the next run)."""
    first = tuning(tmp_path, "run", "--study-name", "s", "--n-trials", 1, *TINY)
    assert first.returncode == 0, first.stderr
    log = tmp_path / "studies" / "s.log"
    whole = log.read_bytes()
    last = json.loads(whole.rstrip(b"\n").rsplit(b"\n", 1)[1])
    assert (last["op_code"], last["state"]) == (6, 1)      # trial 0 set COMPLETE, last
    subprocess.run(["truncate", "-s", "-1", str(log)], check=True)
    assert log.read_bytes() == whole[:-1] and whole.endswith(b"}\n")

    listed = tuning(tmp_path, "trials", "--study-name", "s")     # reading: no warning
    assert listed.returncode == 0 and listed.stderr == "", listed.stderr
    assert "COMPLETE" in listed.stdout.splitlines()[1]

    again = tuning(tmp_path, "run", "--study-name", "s", "--n-trials", 1)
    assert again.returncode == 0, again.stderr
    assert "died" not in again.stdout and "warning" not in again.stderr, again.stdout
    assert "continuing study 's': 1 finished trials" in again.stdout
    trials = reload(log, "s").trials
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.COMPLETE]
    # the newline was added where it was missing: the old bytes are all there, in place
    assert log.read_bytes().startswith(whole)


# -- the reader and the writer --------------------------------------------------------------

def test_reading_and_appending_after_a_record_without_newline(tmp_path):
    path = tmp_path / "t.log"
    journal_study(path)
    whole = path.read_bytes()
    path.write_bytes(whole[:-1])                            # the last newline gone
    with warnings.catch_warnings():
        warnings.simplefilter("error", JournalWarning)      # nothing skipped
        study = reload(path)
        assert [(t.state, t.value) for t in study.trials] == \
            [(TrialState.COMPLETE, 0.5), (TrialState.COMPLETE, 0.25)]
        writer = optuna.load_study(study_name="t", storage=open_storage(str(path), "t"))
        writer.tell(writer.ask(X), 0.125)
        data = path.read_bytes()
        assert data.startswith(whole) and data.count(b"\n") == data.count(b'{"op_code"')
        assert b"}{" not in data
        # a reader that had read the record without its newline reads on past the newline
        # added later (not a line of its own, no warning) and sees the new trial
        assert [t.value for t in study.trials] == [0.5, 0.25, 0.125]
        assert [t.value for t in reload(path).trials] == [0.5, 0.25, 0.125]


def test_the_newline_is_added_once_and_only_where_missing(tmp_path):
    path = tmp_path / "j.log"
    backend = JournalFile(str(path))
    record = {"op_code": 0, "worker_id": "w", "study_name": "a", "directions": [1]}
    line = json.dumps(record, separators=(",", ":")).encode()
    path.write_bytes(line)                                  # one record, no newline
    check_journal_file(path)                                # a journal, not refused
    assert list(backend.read_logs(0)) == [record]
    scan = backend.scan_for_damage()
    assert (scan.unterminated, scan.torn, scan.foreign, scan.end, scan.lines) == \
        (True, None, None, len(line), 1)
    backend.append_logs([record])
    assert path.read_bytes() == line + b"\n" + line + b"\n"
    backend.append_logs([record])                           # nothing more to add now
    assert path.read_bytes() == (line + b"\n") * 3
    assert list(JournalFile(str(path)).read_logs(0)) == [record] * 3


def test_a_torn_record_is_cut_at_exactly_its_first_byte(tmp_path):
    path = tmp_path / "t.log"
    journal_study(path, values=(0.5,))
    whole = path.read_bytes()
    torn = b'{"op_code":6,"worker_id":"dead","trial_id":0,"state":1,"values":[0.2'
    path.write_bytes(whole + torn)
    backend = JournalFile(str(path))
    scan = backend.scan_for_damage()
    assert (scan.torn, scan.unterminated, scan.end) == (len(whole), False, len(whole))
    record = {"op_code": 10, "worker_id": "w"}
    backend.append_logs([record])
    assert path.read_bytes() == whole + b'{"op_code":10,"worker_id":"w"}\n'


def test_a_file_of_one_torn_record_is_left_alone(tmp_path):
    path = tmp_path / "t.log"
    path.write_bytes(b'{"op_code":0,"worker_id":"w","study_na')
    with pytest.raises(TuningError, match="holds no complete journal record"):
        check_journal_file(path)
    with pytest.raises(JournalDamagedError, match="holds no complete record"):
        JournalFile(str(path)).append_logs([{"op_code": 10, "worker_id": "w"}])
    assert path.read_bytes() == b'{"op_code":0,"worker_id":"w","study_na'


def test_a_foreign_tail_is_kept_and_refused(tmp_path):
    path = tmp_path / "t.log"
    journal_study(path, values=(0.5,))
    whole = path.read_bytes()
    path.write_bytes(whole + b"note to self")          # not written by this format
    with pytest.raises(JournalDamagedError, match=f"truncate -s {len(whole)} "):
        JournalFile(str(path)).append_logs([{"op_code": 10, "worker_id": "w"}])
    assert path.read_bytes() == whole + b"note to self"


# -- which last lines are torn records: exact bytes ----------------------------------------

def test_is_torn_record_takes_printable_ascii_only():
    head = b'{"op_code":8,"worker_id":"w","trial_id":0,"user_attr":{"a":"'
    assert is_torn_record(head + b" ")            # 32: the first printable byte
    assert is_torn_record(head + b"~")            # 126: the last
    assert not is_torn_record(head + b"\x1f")     # 31: a control byte json.dumps escapes
    assert not is_torn_record(head + b"\x7f")     # 127: DEL, escaped by json.dumps too
    assert not is_torn_record(head + b"\xc3\xa9")  # UTF-8: json.dumps writes \u00e9
    assert not is_torn_record(head + b"\t")


def test_is_torn_record_takes_the_start_of_a_record_only():
    assert RECORD_START == b'{"op_code":'
    for n in range(1, len(RECORD_START) + 1):       # every prefix of the start
        assert is_torn_record(RECORD_START[:n])
    assert is_torn_record(RECORD_START + b"4")
    assert not is_torn_record(b"")
    assert not is_torn_record(b'{"op_coda')        # not a prefix
    assert not is_torn_record(b' {"op_code":4')    # not at the start
    assert not is_torn_record(b'{"worker_id":"w","op_code":4')


def test_tail_kind():
    record = b'{"op_code":10,"worker_id":"w"}'
    assert parse_record(record) == {"op_code": 10, "worker_id": "w"}
    assert tail_kind(b"") is None
    assert tail_kind(record) == "record"
    assert tail_kind(record[:-1]) == "torn"
    assert tail_kind(b'{"op_code":99,"worker_id":"w"}') == "torn"    # not one: cut
    assert tail_kind(b"hello") == "foreign"
    assert tail_kind(record[:-1] + b"\x7f") == "foreign"


# -- what a reader says about damage it reads past (in this process) -----------------------

def test_a_skipped_line_and_a_foreign_tail_are_each_named_once(tmp_path):
    path = tmp_path / "t.log"
    journal_study(path, values=(0.5,))
    lines = path.read_bytes().split(b"\n")
    damaged = b"\n".join(lines[:2] + [b"not a record at all"] + lines[2:]) + b"tail junk"
    path.write_bytes(damaged)
    backend = JournalFile(str(path))
    for _ in range(2):                      # a second read warns no more
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            records = list(backend.read_logs(0))
        texts = [str(w.message) for w in seen if w.category is JournalWarning]
        if _ == 0:
            assert texts == [
                f"journal {path}: skipped line 3, which is not a journal record "
                f"('not a record at all\\n')",
                f"journal {path}: skipped 9 bytes at its end that are not a journal record "
                f"('tail junk')"]
        else:
            assert texts == []
        assert len(records) == len(lines) - 1   # every record, the damage left out


# -- check_journal_file: what is taken for a journal, in exact words -----------------------

def test_check_journal_file_in_words(tmp_path):
    def refusal(content: bytes, name="f.log"):
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(TuningError) as info:
            check_journal_file(path)
        return path, str(info.value)

    not_journal = ("{path} is not an Optuna journal file (it starts with '{preview}'); tuning "
                   "leaves it unchanged. Give another --storage path (a new file, e.g. "
                   "studies/NAME.log, or an existing journal)")
    path, message = refusal(b"x")
    assert message == not_journal.format(path=path, preview="x")
    path, message = refusal(b'{"grid": [1, 2]}\n{"op_code": 0}\n')
    assert message == not_journal.format(path=path, preview='{"grid": [1, 2]}\\n{"op_co...')
    path, message = refusal(RECORD_START + b' 4, "work')
    assert message == (f"{path} holds no complete journal record, only the start of one (20 "
                       f"bytes: a run killed while it created its study?). tuning leaves it "
                       f"as it is; delete it to start that study again, or give another "
                       f"--storage path")
    (tmp_path / "empty.log").write_bytes(b"")
    check_journal_file(tmp_path / "empty.log")                      # a new journal
    record = b'{"op_code": 0, "worker_id": "w", "study_name": "s", "directions": [1]}'
    (tmp_path / "one.log").write_bytes(record)                     # its newline missing
    check_journal_file(tmp_path / "one.log")
    (tmp_path / "two.log").write_bytes(record + b"\n" + b"junk after the first line\n")
    check_journal_file(tmp_path / "two.log")                       # the first line decides
    with pytest.raises(TuningError) as info:
        check_journal_file(tmp_path)
    assert str(info.value) == f"--storage {tmp_path}: is a directory; give a journal file path"
    with pytest.raises(TuningError) as info:
        check_journal_file(tmp_path / "one.log" / "below")
    assert str(info.value) == f"cannot read {tmp_path / 'one.log' / 'below'}: Not a directory"
