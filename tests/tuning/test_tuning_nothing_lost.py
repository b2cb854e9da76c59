"""Issue 18, the tuning side: nothing lost, every failure explained.

Storage that is not a journal is never touched; a damaged journal is read past and never
written behind; Ctrl-C and recovery requeue what was interrupted; settings, values and
names are checked before anything is stored; every CLI failure is one clear message.
(The journal fuzz test is in ``test_tuning_journal_fuzz.py``.)
"""
from __future__ import annotations

import json
import subprocess
import sys
import warnings

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from tuning import storage as storage_mod
from tuning import workers
from tuning.errors import JournalDamagedError, JournalWarning, TuningError
from tuning.storage import open_storage
from tuning_env import tuning_env

TINY = ["--epochs", "1", "--train-size", "200", "--val-size", "200"]
LAB_DISTRIBUTIONS = {
    "hidden_size": IntDistribution(64, 256), "dropout_rate": FloatDistribution(0.1, 0.5),
    "learn_rate": FloatDistribution(1e-4, 1e-1, log=True),
    "optimizer": CategoricalDistribution(["Adam", "SGD"]),
    "batch_size": CategoricalDistribution([32, 64, 128])}
LAB_PARAMS = {"hidden_size": 128, "dropout_rate": 0.2, "learn_rate": 1e-3, "optimizer": "Adam",
              "batch_size": 64}


# `cli` (tests/conftest.py) runs tuning in a fresh folder


def assert_clean_failure(status, err, *needles):
    """Exit status 1, one or two lines on stderr naming the problem, no traceback."""
    assert status == 1, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()
             and not line.startswith("warning: ")]
    assert 1 <= len(lines) <= 2, err
    for needle in needles:
        assert needle in err, err


def make_study(path, name="s", n_complete=2, settings=None):
    """A tuning study (settings stored) with ``n_complete`` finished lab-mlp trials,
    written without training anything."""
    storage = open_storage(str(path), name)
    study = optuna.create_study(storage=storage, study_name=name)
    study.set_user_attr("tuning_settings", settings or {
        "space": "lab-mlp", "epochs": 1, "train_size": 200, "val_size": 200, "seed": 0,
        "sampler": "random", "pruner": "none", "grid": None})
    for i in range(n_complete):
        study.add_trial(optuna.trial.create_trial(
            params={**LAB_PARAMS, "hidden_size": 100 + i}, distributions=LAB_DISTRIBUTIONS,
            value=0.5 - 0.1 * i, user_attrs={"stop_reason": "completed"}))
    return study


def load(path, name="s"):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", JournalWarning)
        return optuna.load_study(study_name=name, storage=open_storage(str(path), name,
                                                                         write=False))


# -- 1. a file that is not a journal is never changed ------------------------------------

NOT_JOURNALS = {
    "grid.json": b'{"learn_rate": [0.01]}',                     # no newline at all
    "notes.txt": b"first line\nsecond line\n",
    "binary.bin": bytes(range(256)) * 3,
    "list.json": b'[{"op_code": 0}]\n',
    "almost.log": b'{"op_code": 99, "worker_id": "w"}\n',      # not an operation Optuna knows
}


@pytest.mark.parametrize("filename", sorted(NOT_JOURNALS))
def test_a_file_that_is_not_a_journal_is_refused_by_every_command(cli, tmp_path, filename):
    path = tmp_path / filename
    path.write_bytes(NOT_JOURNALS[filename])
    commands = [
        ["run", "--space", "lab-mlp", "--n-trials", 1, *TINY],
        ["enqueue", "--space", "lab-mlp", "--params", '{"hidden_size": 100}'],
        ["create", "--space", "lab-mlp"],
        ["worker", "--max-trials", 1],
        ["fail-stale"], ["trials"], ["trials", "--json"], ["best"],
        ["plot", "--out", "plots"], ["retrain", "--out", "model"],
        ["run", "--workers", 2, "--space", "lab-mlp", "--total", 2]]
    for command in commands:
        status, _, err = cli(*command, "--storage", filename, "--study-name", "s")
        assert_clean_failure(status, err, f"{filename} is not an Optuna journal file",
                             "leaves it unchanged")
        assert path.read_bytes() == NOT_JOURNALS[filename], command
    assert sorted(p.name for p in tmp_path.iterdir()) == [filename]  # no lock file either


def test_a_file_with_only_a_torn_first_record_is_left_alone(cli, tmp_path):
    torn = b'{"op_code":0,"worker_id":"a-1","study_name":"s","dire'
    (tmp_path / "t.log").write_bytes(torn)
    status, _, err = cli("run", "--storage", "t.log", "--study-name", "s", "--space", "lab-mlp",
                         "--n-trials", 1)
    assert_clean_failure(status, err, "no complete journal record", "delete it")
    assert (tmp_path / "t.log").read_bytes() == torn


def test_the_append_repair_cuts_only_a_torn_record_of_ours(tmp_path):
    path = tmp_path / "j.log"
    study = make_study(path, n_complete=1)
    good = path.read_bytes()
    foreign = b"\x00\xffnot ours, no newline"
    path.write_bytes(good + foreign)
    with pytest.warns(JournalWarning, match=r"skipped 22 bytes at its end"):
        fresh = optuna.load_study(study_name="s", storage=open_storage(str(path), "s",
                                                                       write=False))
    assert len(fresh.trials) == 1
    with pytest.raises(JournalDamagedError, match=rf"truncate -s {len(good)} "):
        study.set_user_attr("x", 1)
    assert path.read_bytes() == good + foreign           # refused, and nothing cut
    # a record of ours cut short by a writer that died is cut back before the next append
    path.write_bytes(good + b'{"op_code":8,"worker_id":"dead","trial_id":0,"user_a')
    study = optuna.load_study(study_name="s", storage=open_storage(str(path), "s"))
    study.set_user_attr("x", 1)
    data = path.read_bytes()
    assert data.startswith(good) and b"dead" not in data and data.endswith(b"\n")
    assert load(path).user_attrs["x"] == 1


# -- 2. a damaged line in the middle ------------------------------------------------------

@pytest.mark.parametrize("junk", [b"garbage text\n", b"\x89\xff\x00binary\x9c\n",
                                  b'{"op_code":4,"worker_id":"w","study_id":0,"da{"op_c\n'])
def test_a_damaged_line_is_read_past_and_never_written_behind(cli, tmp_path, junk):
    path = tmp_path / "d.log"
    study = make_study(path, n_complete=2)
    good = path.read_bytes()
    bad_line = good.count(b"\n") + 1
    study.add_trial(optuna.trial.create_trial(
        params={**LAB_PARAMS, "hidden_size": 200}, distributions=LAB_DISTRIBUTIONS, value=0.1))
    # the damage lands in the middle: as if a plain Optuna writer (which checks nothing)
    # had appended that trial's records behind it
    path.write_bytes(good + junk + path.read_bytes()[len(good):])
    with pytest.raises(ValueError):  # Optuna's own reader stops at the damaged line
        optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))
    damaged = path.read_bytes()

    with pytest.warns(JournalWarning, match=rf"skipped line {bad_line}, which is not a journal"):
        study = optuna.load_study(study_name="s",
                                  storage=open_storage(str(path), "s", write=False))
    assert [t.value for t in study.trials] == [0.5, 0.4, 0.1]  # records behind it are read
    with pytest.raises(JournalDamagedError, match=rf"sed -i '{bad_line}d' "), \
            pytest.warns(JournalWarning):
        open_storage(str(path), "s")                        # a writing command: refused

    # every command works, or fails with the repair in one or two lines
    for command in (["trials"], ["trials", "--json"], ["trials", "--csv"], ["best"],
                    ["fail-stale", "--dry-run"]):
        status, out, err = cli(*command, "--storage", "d.log", "--study-name", "s")
        assert status == 0, err
        assert f"skipped line {bad_line}" in err and "Traceback" not in err
    for command in (["run", "--n-trials", 1], ["enqueue", "--params", '{"hidden_size": 99}'],
                    ["fail-stale"], ["worker", "--max-trials", 9],
                    ["create", "--space", "lab-mlp", "--reuse"]):
        status, _, err = cli(*command, "--storage", "d.log", "--study-name", "s")
        assert_clean_failure(status, err, f"line {bad_line} is not a journal record",
                             "does not write behind", f"sed -i '{bad_line}d' d.log")
        assert path.read_bytes() == damaged, command

    # the repair the message gives: the file reads in plain Optuna, and the study goes on
    subprocess.run(["sed", "-i", f"{bad_line}d", str(path)], check=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", JournalWarning)
        study = optuna.load_study(study_name="s", storage=open_storage(str(path), "s"))
    study.set_user_attr("repaired", True)
    plain = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))
    assert len(optuna.load_study(study_name="s", storage=plain).trials) == 3


# -- 3 and 4. Ctrl-C requeues; recovery never crashes on an out-of-range value -------------

def _dead_identity():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    ident = {**workers.machine_identity(), "pid": proc.pid, "rank": None}
    stat = workers._proc_stat(proc.pid)
    ident["start"] = stat[1] if stat else None
    proc.wait()
    return ident


def test_recovery_requeues_an_out_of_range_enqueued_value(cli, tmp_path, fashion_mnist):
    status, _, err = cli("enqueue", "--space", "lab-mlp", "--study-name", "oor", "--params",
                         '{"hidden_size": 300}', *TINY)
    assert_clean_failure(status, err, "hidden_size 300 is outside the space's range 64..256",
                         "--outside-range")
    status, _, err = cli("enqueue", "--space", "lab-mlp", "--study-name", "oor", "--params",
                         '{"hidden_size": 300}', "--outside-range", *TINY)
    assert status == 0 and "warning: hidden_size 300 is outside" in err
    # a run killed outright while it trained the queued configuration
    path = tmp_path / "studies" / "oor.log"
    study = optuna.load_study(study_name="oor", storage=open_storage(str(path), "oor"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # Optuna: the fixed value is out of range
        trial = study.ask()
        trial.suggest_int("hidden_size", 64, 256)
    trial.set_user_attr(workers.WORKER_ATTR, {**_dead_identity(), "trial": trial.number})
    with pytest.raises(ValueError), warnings.catch_warnings():  # why Optuna's retry crashed
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.RetryHeartbeatStaleTrialCallback()(study, study.trials[0])

    status, out, err = cli("run", "--study-name", "oor", "--n-trials", 1)
    assert status == 0, err
    assert "Traceback" not in err and "trial 0: its process died" in out
    trials = optuna.load_study(study_name="oor", storage=open_storage(str(path), "oor")).trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE]
    assert trials[1].params["hidden_size"] == 300
    assert trials[1].system_attrs["failed_trial"] == 0
    assert trials[1].user_attrs["n_params"] == 784 * 300 + 300 + 300 * 10 + 10


def test_requeue_failed_keeps_optunas_bookkeeping_and_bound(tmp_path):
    study = make_study(tmp_path / "r.log", n_complete=0)
    study.add_trial(optuna.trial.create_trial(
        state=TrialState.FAIL, params=LAB_PARAMS, distributions=LAB_DISTRIBUTIONS))
    frozen = study.trials[0]
    for retry in range(1, workers.MAX_RETRIES + 1):
        assert workers.requeue_failed(study, frozen) == (True, "")
        waiting = study.trials[-1]
        assert waiting.state == TrialState.WAITING and waiting.params == LAB_PARAMS
        assert waiting.system_attrs["failed_trial"] == 0
        study._storage.set_trial_state_values(waiting._trial_id, TrialState.RUNNING)
        study._storage.set_trial_state_values(waiting._trial_id, TrialState.FAIL)
        frozen = study.trials[-1]
    queued, why = workers.requeue_failed(study, frozen)
    assert not queued and f"retried {workers.MAX_RETRIES} times" in why


@pytest.mark.parametrize("signum", ["SIGINT", "SIGTERM"])
def test_ctrl_c_on_a_plain_run_requeues_the_trial(tmp_path, fashion_mnist, signum):
    """SIGINT (or SIGTERM, as for a worker: one engine) in the middle of a trial: FAIL,
    queued again, run first by the next run."""
    import signal
    import time
    settings = ["--space", "lab-mlp", "--epochs", "30", "--train-size", "3000",
                "--val-size", "500", "--pruner", "none", "--sampler", "random"]
    proc = subprocess.Popen([sys.executable, "-m", "tuning", "run", "--study-name", "c",
                             "--n-trials", "3", *settings], cwd=tmp_path, env=tuning_env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 90
        for line in proc.stderr:
            if line.startswith("  trial 0 epoch 1/30"):
                proc.send_signal(getattr(signal, signum))
                break
            assert time.monotonic() < deadline
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "trial 0 was marked FAIL and queued again" in err
    study = load(tmp_path / "studies" / "c.log", "c")
    interrupted, waiting = study.trials
    assert interrupted.state == TrialState.FAIL and waiting.state == TrialState.WAITING
    assert interrupted.user_attrs["stop_reason"] == "interrupted"
    assert waiting.params == interrupted.params
    done = subprocess.run([sys.executable, "-m", "tuning", "run", "--study-name", "c",
                           "--n-trials", "1", "--quiet"], cwd=tmp_path, env=tuning_env(), text=True,
                          capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr
    study = load(tmp_path / "studies" / "c.log", "c")
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.COMPLETE]
    assert study.trials[1].params == interrupted.params


# -- 5 and 11. settings, sizes and names are checked before anything is stored ------------

def test_bad_settings_store_nothing_and_valid_ones_then_work(cli, tmp_path, fashion_mnist,
                                                             monkeypatch):
    for command, needle in [
            (["run", "--n-trials", 1, "--val-size", 70000], "--val-size 70000: the training "
             "set has 60000 images"),
            (["create", "--val-size", 60000], "give at most 59999"),
            (["run", "--n-trials", 1, "--train-size", 100000], "--train-size 100000: the "
             "training part holds 50000 images (60000 less --val-size 10000); give at most "
             "50000"),
            (["create", "--train-size", 59500, "--val-size", 600], "give at most 59400"),
            (["enqueue", "--val-size", 70000, "--params", '{"hidden_size": 100}'],
             "--val-size 70000")]:
        status, _, err = cli(*command, "--space", "lab-mlp", "--study-name", "b")
        assert_clean_failure(status, err, needle)
        assert not (tmp_path / "studies").exists(), command
    # data that cannot be read: no study is left behind
    import tuning.data
    with monkeypatch.context() as patch:
        patch.setattr(tuning.data, "_full_train", _raise_idx_error)
        status, _, err = cli("run", "--space", "lab-mlp", "--study-name", "b", "--n-trials", 1,
                             *TINY)
    assert_clean_failure(status, err, "ValueError: train-images-idx3-ubyte: bad magic number")
    assert not (tmp_path / "studies").exists()
    status, out, err = cli("run", "--space", "lab-mlp", "--study-name", "b", "--n-trials", 1,
                           *TINY)
    assert status == 0 and "trial   0  COMPLETE" in out, err


def _raise_idx_error(*_args):
    raise ValueError("train-images-idx3-ubyte: bad magic number 0x00000000, expected 0x00000803")


def test_study_names_are_plain_names(cli, tmp_path):
    for name in ("../../x", "", ".hidden", "a/b", "x y"):
        for command in (["run", "--space", "lab-mlp", "--n-trials", 1],
                        ["create", "--space", "lab-mlp"], ["trials"],
                        ["enqueue", "--space", "lab-mlp", "--params", '{"hidden_size": 99}']):
            status, _, err = cli(*command, "--study-name", name)
            assert_clean_failure(status, err, f"--study-name {name!r}: expected a plain name")
    assert list(tmp_path.parent.glob("x*")) == [] and list(tmp_path.iterdir()) == []
    status, out, _ = cli("create", "--space", "lab-mlp", "--study-name", "lab_2.b-c")
    assert status == 0 and (tmp_path / "studies" / "lab_2.b-c.log").exists()


def test_retrain_train_size_larger_than_the_data_is_refused(cli, tmp_path):
    make_study(tmp_path / "studies" / "s.log")
    status, _, err = cli("retrain", "--study-name", "s", "--out", "m", "--train-size", 70000)
    assert_clean_failure(status, err, "--train-size 70000: there are 60000 training images")
    assert not (tmp_path / "m").exists()


# -- 7 and 8. values outside the space are refused; every failure has a reason -----------

@pytest.mark.parametrize("params, reason", [
    ({"hidden_size": -5}, "hidden_size: expected a layer size >= 1, got -5"),
    ({"dropout_rate": 1.5}, "dropout_rate: expected a probability in [0, 1), got 1.5"),
    ({"learn_rate": float("inf")}, "learn_rate: expected a finite number, got inf"),
    ({"learn_rate": -1}, "learn_rate: expected a finite number > 0, got -1"),
    ({"batch_size": 7}, "batch_size: expected one of [32, 64, 128], got 7"),
    ({"hidden_size": 128.5}, "hidden_size: expected an integer, got 128.5")])
def test_enqueue_refuses_values_that_can_never_work(cli, tmp_path, params, reason):
    text = json.dumps(params)  # Infinity for inf, as a user would type it
    for extra in ([], ["--outside-range"]):
        status, _, err = cli("enqueue", "--space", "lab-mlp", "--study-name", "e", "--params",
                             text, *extra)
        assert_clean_failure(status, err, reason)
    assert not (tmp_path / "studies").exists()


@pytest.mark.parametrize("grid, reason", [
    ({"batch_size": [32, 7]}, "grid: batch_size 7 cannot be used: batch_size: expected one of"),
    ({"learn_rate": [0.01, -1]}, "grid: learn_rate -1 cannot be used: learn_rate: expected a "
                                 "finite number > 0"),
    ({"hidden_size": [64, 512]}, "grid: hidden_size 512 cannot be used: hidden_size 512 is "
                                 "outside the space's range 64..256"),
    ({"hidden_size": [64], "dropout_rate": 2.0}, "dropout_rate: expected a probability")])
def test_grid_files_refuse_values_outside_the_space(cli, tmp_path, grid, reason):
    (tmp_path / "grid.json").write_text(json.dumps(grid))
    status, _, err = cli("run", "--space", "lab-mlp", "--study-name", "g", "--sampler", "grid",
                         "--grid-file", "grid.json", *TINY)
    assert_clean_failure(status, err, reason)
    assert not (tmp_path / "studies").exists()


def test_a_trial_that_fails_in_its_space_records_why(cli, tmp_path, fashion_mnist):
    # a value only the Optuna API lets in (enqueue refuses it): the trial says why it failed
    status, _, _ = cli("create", "--space", "lab-mlp", "--study-name", "f", *TINY)
    assert status == 0
    path = tmp_path / "studies" / "f.log"
    optuna.load_study(study_name="f", storage=open_storage(str(path), "f")).enqueue_trial(
        {"batch_size": 7})
    status, out, err = cli("run", "--study-name", "f", "--n-trials", 2)
    assert status == 0, err
    failed, ok = load(path, "f").trials
    assert failed.state == TrialState.FAIL and ok.state == TrialState.COMPLETE
    assert failed.user_attrs["stop_reason"].startswith("error: ValueError:")
    assert failed.user_attrs["stop_reason"] == ("error: ValueError: batch_size: expected one "
                                                "of [32, 64, 128], got 7")
    assert "FAIL" in out and "[error: ValueError:" in out


def test_trials_json_is_strict_json(cli, tmp_path):
    study = make_study(tmp_path / "studies" / "s.log", n_complete=1)
    study.add_trial(optuna.trial.create_trial(
        state=TrialState.PRUNED, params=LAB_PARAMS, distributions=LAB_DISTRIBUTIONS,
        intermediate_values={0: float("nan")},
        user_attrs={"curve": [{"train_loss": float("inf"), "val_loss": float("-inf")}]}))

    def refuse(token):
        raise AssertionError(f"non-standard JSON token {token}")

    status, out, _ = cli("trials", "--study-name", "s", "--json")
    assert status == 0
    trials = json.loads(out, parse_constant=refuse)
    assert trials[1]["intermediate_values"] == {"0": "NaN"}
    assert trials[1]["user_attrs"]["curve"] == [{"train_loss": "Infinity",
                                                  "val_loss": "-Infinity"}]
    assert trials[0]["value"] == 0.5
    status, out, _ = cli("best", "--study-name", "s", "--json")
    assert json.loads(out, parse_constant=refuse)["value"] == 0.5


# -- 9. every failure is one or two lines, with --debug for the traceback ------------------

def test_storage_failures_are_one_clear_message(cli, tmp_path, monkeypatch):
    monkeypatch.setattr(storage_mod, "GRPC_CONNECT_TIMEOUT", 0.5)
    (tmp_path / "adir").mkdir()
    cases = [
        ("postgresql+psycopg2://u:secret@127.0.0.1:1/db", "cannot open the database"),
        ("grpc://127.0.0.1:1", "no gRPC storage proxy answers at 127.0.0.1:1"),
        (f"sqlite:///{tmp_path}/missing/x.db", "/missing does not exist; create it"),
        ("adir", "--storage adir: is a directory"),
        ("", "--storage is empty"),
    ]
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        cases[0] = ("postgresql+psycopg2://u:secret@127.0.0.1:1/db", "no database driver")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        cases.append(("postgresql://u:secret@127.0.0.1:1/db", "no database driver"))
    try:
        import redis  # noqa: F401
    except ImportError:
        cases.append(("redis://127.0.0.1:1", "pip install redis"))
    for spec, needle in cases:
        for command in (["run", "--space", "lab-mlp", "--n-trials", 1], ["trials"]):
            status, _, err = cli(*command, "--storage", spec, "--study-name", "s")
            assert_clean_failure(status, err, needle)
            assert "secret" not in err
    status, _, err = cli("run", "--storage", "/proc/no-such-dir/s.log", "--study-name", "s",
                         "--space", "lab-mlp", "--n-trials", 1)   # a location nobody can write
    assert_clean_failure(status, err, "/proc/no-such-dir", "choose a writable --storage")
    status, _, err = cli("trials", "--storage", "", "--study-name", "s", "--debug")
    assert status == 1 and "Traceback" in err and "--storage is empty" in err


def test_retrain_checks_its_output_folder_before_training(cli, tmp_path, monkeypatch):
    make_study(tmp_path / "studies" / "s.log")
    import tuning.retrain

    def no_training(*args, **kwargs):
        raise AssertionError("trained before checking --out")
    monkeypatch.setattr(tuning.retrain, "train_config", no_training)
    (tmp_path / "taken").write_text("keep me")
    for out, needle in [("taken", "--out taken: is a file"),
                        ("taken/model", "taken is a file, not a folder"),
                        ("/proc/model", "cannot write into /proc")]:
        status, _, err = cli("retrain", "--study-name", "s", "--out", out)
        assert_clean_failure(status, err, needle)
    assert (tmp_path / "taken").read_text() == "keep me"


def test_an_unexpected_error_is_one_line_and_debug_shows_the_traceback(cli, tmp_path,
                                                                        monkeypatch):
    make_study(tmp_path / "studies" / "s.log")
    import tuning.report
    monkeypatch.setattr(tuning.report, "trials_table", _raise_idx_error)
    status, _, err = cli("trials", "--study-name", "s")
    assert_clean_failure(status, err, "tuning trials: error: ValueError: train-images-idx3",
                         "--debug")
    status, _, err = cli("trials", "--study-name", "s", "--debug")
    assert status == 1 and "Traceback (most recent call last)" in err


# -- 11. a reader that leaves early (run ... | head) -------------------------------------

def test_run_into_a_closed_pipe_stops_quietly_and_fails_no_trial(tmp_path, fashion_mnist):
    # `tuning run ... 2>&1 | head -3`: the per-trial log lines go to the closed pipe too
    proc = subprocess.Popen([sys.executable, "-m", "tuning", "run", "--space", "lab-mlp",
                             "--study-name", "p", "--n-trials", "4", *TINY], cwd=tmp_path,
                            env=tuning_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    head = [proc.stdout.readline() for _ in range(3)]
    proc.stdout.close()
    status = proc.wait(120)
    study = load(tmp_path / "studies" / "p.log", "p")
    assert [(t.state, t.user_attrs.get("stop_reason")) for t in study.trials][:1] == [
        (TrialState.COMPLETE, "completed")]
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    assert status == 141, head
    assert len(study.trials) < 4   # it stopped after the trial in progress


def test_trials_into_a_closed_pipe_is_quiet(tmp_path):
    make_study(tmp_path / "studies" / "s.log", n_complete=50)
    result = subprocess.run(f"{sys.executable} -m tuning trials --study-name s | head -1",
                            shell=True, cwd=tmp_path, env=tuning_env(), capture_output=True,
                            text=True, timeout=60)
    assert result.stdout.startswith("number") and result.stderr == ""


def test_open_storage_refuses_before_creating_anything(tmp_path):
    (tmp_path / "x.log").write_bytes(b"hello\n")
    with pytest.raises(TuningError, match="is not an Optuna journal"):
        open_storage(str(tmp_path / "x.log"), "x")
    storage = open_storage(str(tmp_path / "new" / "deeper" / "y.log"), "y")
    assert not (tmp_path / "new").exists()   # created by the first write only
    optuna.create_study(storage=storage, study_name="y")
    assert (tmp_path / "new" / "deeper" / "y.log").stat().st_size > 0


def test_a_queued_retry_does_not_carry_the_failed_runs_record(tmp_path):
    study = make_study(tmp_path / "q.log", n_complete=0)
    study.add_trial(optuna.trial.create_trial(
        state=TrialState.FAIL, params=LAB_PARAMS, distributions=LAB_DISTRIBUTIONS,
        user_attrs={"enqueued": True, "stop_reason": "interrupted", "curve": [], "seconds": 2.0,
                    "n_params": 5, "worker": {"pid": 1}}))
    assert workers.requeue_failed(study, study.trials[0])[0]
    assert study.trials[1].state == TrialState.WAITING
    assert study.trials[1].user_attrs == {"enqueued": True}
