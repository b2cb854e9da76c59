"""Fuzzing the journal reader and writer: random truncations and appended junk.

A journal is cut at a random byte (a writer killed mid-append, a full disk) and random
junk is appended (binary bytes, text lines, half records, JSON that is not a record,
good records behind damage).  Whatever the damage:

- reading never raises, and every trial that was finished in the intact part of the
  file (what plain Optuna reads from the complete lines before the cut) is read back
  with the same state, value and parameters;
- a write either is refused (``TuningError``, file byte for byte unchanged) or goes
  through, and then plain Optuna can still read the whole file and nothing finished
  was lost;
- a file that is not a journal is never changed.
"""
from __future__ import annotations

import json
import random
import warnings

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState

from tuning.errors import JournalWarning, TuningError
from tuning.storage import open_storage

ITERATIONS = 1000
X = {"x": FloatDistribution(0.0, 1.0)}


def plain_finished(path, name="s") -> dict:
    """``{number: (state, value, params)}`` of the finished trials plain Optuna reads."""
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(path)))
    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        return {}
    return {t.number: (t.state, t.value, t.params) for t in study.get_trials(deepcopy=False)
            if t.state.is_finished()}


def ours_finished(study) -> dict:
    return {t.number: (t.state, t.value, t.params) for t in study.get_trials(deepcopy=False)
            if t.state.is_finished()}


def build_journal(path) -> bytes:
    """A small study: complete, pruned and failed trials, one left RUNNING, attributes."""
    study = optuna.create_study(storage=open_storage(str(path), "s"), study_name="s")
    study.set_user_attr("tuning_settings", {"space": "lab-mlp"})
    for i in range(8):
        trial = study.ask(X)
        trial.report(0.1 * i, 0)
        trial.set_user_attr("curve", [{"val_error": 0.1 * i}])
        state = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)[i % 3]
        study.tell(trial, 0.5 + i / 100 if state == TrialState.COMPLETE else None, state=state)
    study.ask(X)  # RUNNING
    return path.read_bytes()


def junk(rng: random.Random, records: list) -> bytes:
    kind = rng.randrange(7)
    if kind == 0:
        return b""
    if kind == 1:      # binary bytes, newlines among them
        return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 120)))
    if kind == 2:      # a line of text
        return b"garbage \xe2\x82\xac line\n"
    if kind == 3:      # the start of a record of ours (what a killed writer leaves)
        record = rng.choice(records)
        return record[:rng.randrange(1, len(record) - 1)]
    if kind == 4:      # JSON that is not a record
        return json.dumps({"op_code": rng.choice([99, "4", None])}).encode() + b"\n"
    if kind == 5:      # damage, then good records behind it (a plain Optuna writer)
        return b"\x00\xff junk\n" + b"".join(rng.sample(records, 2))
    return bytes(rng.randrange(32, 127) for _ in range(rng.randrange(1, 60)))  # ASCII, no \n


def test_random_truncations_and_junk_lose_no_finished_trial(tmp_path):
    rng = random.Random(18)
    reference = build_journal(tmp_path / "reference.log")
    records = [line + b"\n" for line in reference.split(b"\n")[:-1]]
    path = tmp_path / "j.log"
    outcomes = {"refused": 0, "written": 0}
    for i in range(ITERATIONS):
        cut = rng.randrange(len(reference) + 1)
        damaged = reference[:cut] + junk(rng, records)
        # the oracle: what plain Optuna reads from the complete lines before the cut
        path.write_bytes(reference[:reference.rfind(b"\n", 0, cut) + 1])
        expected = plain_finished(path)
        path.write_bytes(damaged)
        context = f"iteration {i}: cut at {cut}, file {damaged[-80:]!r}"

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", JournalWarning)
            try:
                storage = open_storage(str(path), "s", write=False)
            except TuningError:  # not a journal (the cut took its first line): untouched
                assert path.read_bytes() == damaged, context
                assert cut < len(records[0]), context
                continue
            try:
                read = ours_finished(optuna.load_study(study_name="s", storage=storage))
            except KeyError:  # the study's record itself was cut
                read = {}
            for number, trial in expected.items():
                assert read.get(number) == trial, context

            try:
                storage = open_storage(str(path), "s")
                study = optuna.load_study(study_name="s", storage=storage)
                study.tell(study.ask(X), 0.25)
            except KeyError:
                continue
            except TuningError:
                outcomes["refused"] += 1
                assert path.read_bytes() == damaged, context
                continue
        outcomes["written"] += 1
        after = plain_finished(path)  # plain Optuna reads every line: nothing written behind
        for number, trial in expected.items():
            assert after.get(number) == trial, context
        assert sum(1 for state, value, _ in after.values() if value == 0.25) == 1, context
    assert outcomes["refused"] > 20 and outcomes["written"] > 20, outcomes


@pytest.mark.parametrize("seed", range(3))
def test_files_that_are_not_journals_are_never_changed(tmp_path, seed):
    rng = random.Random(seed)
    for i in range(60):
        kind = rng.randrange(4)
        if kind == 0:
            data = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300)))
        elif kind == 1:
            data = json.dumps({"learn_rate": [rng.random() for _ in range(3)]}).encode()
        elif kind == 2:
            data = b"\n".join(bytes(rng.randrange(32, 127) for _ in range(20))
                              for _ in range(rng.randrange(1, 5))) + b"\n"
        else:  # a record, but not as the first line
            data = b"# my notes\n" + b'{"op_code":0,"worker_id":"w","study_name":"s",' \
                   b'"directions":[1]}\n'
        path = tmp_path / f"f{i}.dat"
        path.write_bytes(data)
        with pytest.raises(TuningError, match="not an Optuna journal|no complete journal"):
            storage = open_storage(str(path), "s")
            optuna.create_study(storage=storage, study_name="s")
        assert path.read_bytes() == data
        assert not (tmp_path / f"f{i}.dat.lock").exists()
