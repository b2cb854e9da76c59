"""Many workers on one study: journal file, PostgreSQL with heartbeat, fail-stale, refusals.

The workers are real ``python -m tuning`` processes on tiny lab-mlp studies (a few
hundred to a few thousand images, one to three epochs, 500 validation images).
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time

import optuna
import pytest
from optuna.trial import TrialState

from support import require_or_skip
from tuning import workers
from tuning.journal import LOCK_MODE, JournalFileLock
from tuning.storage import open_storage
from tuning_env import tuning_env

TINY = ["--space", "lab-mlp", "--epochs", "1", "--train-size", "600", "--val-size", "500",
        "--pruner", "none"]
# Trials of a second or two, so that a worker can be killed in the middle of one.
SLOW = ["--space", "lab-mlp", "--epochs", "2", "--train-size", "20000", "--val-size", "500",
        "--pruner", "none"]


def tuning(cwd, *args, timeout=120):
    """Run ``python -m tuning ARGS`` in ``cwd``; the CompletedProcess (text)."""
    return subprocess.run([sys.executable, "-m", "tuning", *map(str, args)], cwd=cwd,
                          env=tuning_env(), capture_output=True, text=True, timeout=timeout)


def start_worker(cwd, *args):
    return subprocess.Popen([sys.executable, "-m", "tuning", "worker", "--threads", "1",
                             "--quiet", *map(str, args)], cwd=cwd, env=tuning_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def ok(result):
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def load(storage, name):
    return optuna.load_study(study_name=name, storage=storage)


def wait_for_running_trial(study, pid, timeout=60.0):
    """The RUNNING trial of worker ``pid`` once its parameters are sampled."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            who = t.user_attrs.get(workers.WORKER_ATTR) or {}
            if who.get("pid") == pid and "config" in t.user_attrs:
                return t
        time.sleep(0.05)
    pytest.fail(f"worker {pid} started no trial within {timeout}s")


def assert_lineage_complete(study, total):
    """Exactly ``total`` COMPLETE trials, each original configuration completed once."""
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == total
    assert len({t.number for t in trials}) == len(trials)
    origins = [t.system_attrs.get("failed_trial", t.number) for t in complete]
    assert len(set(origins)) == len(origins), "a configuration completed twice"
    assert not [t.number for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    return complete


# -- the budget -------------------------------------------------------------------------

def test_claim_never_exceeds_budget_under_racing_threads(tmp_path):
    """Six racing workers (own storage objects, like processes) with queued trials among
    them: exactly the budget completes; the only failures are trials that lost a claim."""
    path = str(tmp_path / "race.log")
    name = "race"
    optuna.create_study(storage=open_storage(path, name), study_name=name)
    seed_study = load(open_storage(path, name), name)
    for x in (0.11, 0.22, 0.33):
        seed_study.enqueue_trial({"x": x})
    budget = 25
    results, errors = [], []

    def objective(trial):
        x = trial.suggest_float("x", 0.0, 1.0)
        time.sleep(0.002)
        return x

    def worker(rank):
        try:
            study = load(open_storage(path, name), name)
            study.sampler = optuna.samplers.RandomSampler(seed=rank)
            results.append(workers.run_worker(study, objective, max_trials=budget,
                                              identity=workers.worker_identity(rank),
                                              poll=0.01))
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(r,)) for r in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors
    study = load(open_storage(path, name), name)
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == budget
    assert sum(len(r["trials"]) for r in results) == budget
    for t in trials:
        if t.state == TrialState.FAIL:
            assert t.user_attrs["stop_reason"].startswith(workers.NOT_STARTED)
    # Every enqueued configuration ran exactly once, even if a claim bounced it.
    ran = sorted(t.params["x"] for t in complete if t.params["x"] in (0.11, 0.22, 0.33))
    assert ran == [0.11, 0.22, 0.33]
    assert [w["stop"] for w in results if "--max-trials" not in w["stop"]] == []


def test_claim_counts_finished_and_earlier_running_trials(tmp_path):
    storage = open_storage(str(tmp_path / "c.log"), "c")
    study = optuna.create_study(storage=storage, study_name="c")
    study.tell(study.ask(), 0.5)
    first = study.ask()      # RUNNING, numbered before
    mine = study.ask()
    assert workers.claim(study, mine, 3) == (True, "")
    allowed, why = workers.claim(study, mine, 2)
    assert not allowed and "1 finished, 1 running or queued before trial 2" in why
    # A later RUNNING trial does not count against an earlier one.
    assert workers.claim(study, first, 2) == (True, "")
    study.tell(first, state=TrialState.PRUNED)   # pruned trials count as finished
    assert not workers.claim(study, mine, 2)[0]


# -- local workers on a journal file ---------------------------------------------------------

def test_two_local_workers_on_a_journal_file(tmp_path, fashion_mnist):
    out = ok(tuning(tmp_path, "run", "--workers", 2, "--threads", 1, "--study-name", "two",
                    "--total", 10, *TINY))
    study = load(open_storage(str(tmp_path / "studies" / "two.log"), "two"), "two")
    trials = study.get_trials(deepcopy=False)
    assert sorted(t.number for t in trials) == list(range(len(trials)))
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 10
    # Two workers finishing the same instant may both start "the last" trial: one loses
    # its claim and ends FAIL before training anything.
    for t in trials:
        assert t.state == TrialState.COMPLETE or \
            t.user_attrs["stop_reason"].startswith(workers.NOT_STARTED)
    params = [tuple(sorted(t.params.items())) for t in complete]
    assert len(set(params)) == 10
    owners = {t.user_attrs["worker"]["rank"] for t in complete}
    assert owners <= {0, 1}
    pids = {t.user_attrs["worker"]["pid"] for t in complete}
    assert len(pids) == len(owners)  # one process per rank
    # The combined progress: one line per finished trial, and the per-worker totals.
    for t in complete:
        prefix = f"trial {t.number:3d}  COMPLETE"
        assert sum(line.startswith(prefix) for line in out.splitlines()) == 1
    assert "ran 10 trials" in out
    # Running again with the same total has nothing to do.
    again = ok(tuning(tmp_path, "run", "--workers", 2, "--study-name", "two", "--total", 10))
    assert "nothing to run" in again
    # ... and adds no trial (the first run may hold 11: a lost claim, see above)
    assert len(study.get_trials(deepcopy=False)) == len(trials)


def test_fail_stale_on_a_journal_study_with_a_killed_worker(tmp_path, fashion_mnist):
    log = tmp_path / "studies" / "fs.log"
    ok(tuning(tmp_path, "create", "--study-name", "fs", *SLOW))
    victim = start_worker(tmp_path, "--study-name", "fs", "--max-trials", 3)
    study = load(open_storage(str(log), "fs"), "fs")
    running = wait_for_running_trial(study, victim.pid)
    victim.send_signal(signal.SIGKILL)
    victim.wait(30)
    assert study.get_trials(deepcopy=False)[running.number].state == TrialState.RUNNING

    dry = ok(tuning(tmp_path, "fail-stale", "--study-name", "fs", "--dry-run"))
    assert f"trial {running.number}: would fail" in dry
    assert study.get_trials(deepcopy=False)[running.number].state == TrialState.RUNNING
    out = ok(tuning(tmp_path, "fail-stale", "--study-name", "fs"))
    trials = study.get_trials(deepcopy=False)
    dead = trials[running.number]
    assert dead.state == TrialState.FAIL
    assert dead.user_attrs["stop_reason"].startswith("worker died")
    (retry,) = [t for t in trials if t.state == TrialState.WAITING]
    assert f"trial {running.number}: failed" in out
    assert f"queued again as trial {retry.number}" in out
    assert retry.system_attrs["failed_trial"] == running.number
    assert retry.params == running.params

    # A fresh worker runs the queued configuration first, then completes the budget.
    done = sum(t.state == TrialState.COMPLETE for t in trials)
    ok(tuning(tmp_path, "worker", "--study-name", "fs", "--max-trials", done + 2,
              "--threads", 1, "--quiet", timeout=120))
    trials = study.get_trials(deepcopy=False)
    assert trials[retry.number].state == TrialState.COMPLETE
    assert trials[retry.number].params == running.params
    assert_lineage_complete(study, done + 2)


def test_a_plain_run_requeues_the_trial_of_a_killed_run(tmp_path, fashion_mnist):
    # `tuning run` records who runs each trial, so the next run on this machine fails the
    # trial of a run that was killed and runs its configuration again
    ok(tuning(tmp_path, "create", "--study-name", "pk", *SLOW))
    victim = subprocess.Popen([sys.executable, "-m", "tuning", "run", "--study-name", "pk",
                               "--total", "3"], cwd=tmp_path, env=tuning_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    study = load(open_storage(str(tmp_path / "studies" / "pk.log"), "pk"), "pk")
    running = wait_for_running_trial(study, victim.pid)
    victim.send_signal(signal.SIGKILL)
    victim.wait(30)
    assert study.get_trials(deepcopy=False)[running.number].state == TrialState.RUNNING

    out = ok(tuning(tmp_path, "run", "--study-name", "pk", "--total", 2, timeout=180))
    assert f"trial {running.number}: its process died" in out
    trials = study.get_trials(deepcopy=False)
    dead = trials[running.number]
    assert dead.state == TrialState.FAIL
    assert dead.user_attrs["stop_reason"].startswith("worker died")
    (retry,) = [t for t in trials if t.system_attrs.get("failed_trial") == running.number]
    assert retry.state == TrialState.COMPLETE and retry.params == running.params
    assert_lineage_complete(study, 2)


# A worker SIGKILLed inside a journal append: it holds the journal's lock and has written
# half a record.  (Runs in tmp_path with the default, relative, journal path.)
KILLED_INSIDE_AN_APPEND = """
import os, signal
import optuna
from tuning import workers
from tuning.storage import open_storage
storage = open_storage(None, "k")
study = optuna.load_study(study_name="k", storage=storage)
trial = study.ask()
trial.suggest_float("x", 0.0, 1.0)
trial.set_user_attr(workers.WORKER_ATTR, {**workers.worker_identity(), "trial": trial.number})
backend = storage._backend
backend._lock.acquire()
with open(backend._file_path, "ab") as f:
    f.write(b'{"op_code":8,"worker_id":"w","trial_id":0,"user_attr":{"n_par')
os.kill(os.getpid(), signal.SIGKILL)
"""


def _in_thread(fn, timeout):
    """Run ``fn()`` in a daemon thread; its result, or fail if it has not ended in time."""
    result = {}
    thread = threading.Thread(target=lambda: result.setdefault("value", fn()), daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), f"still blocked after {timeout}s"
    return result["value"]


def test_fail_stale_after_a_worker_killed_inside_a_journal_write(tmp_path):
    log = tmp_path / "studies" / "k.log"
    optuna.create_study(storage=open_storage(str(log), "k"), study_name="k")
    victim = subprocess.run([sys.executable, "-c", KILLED_INSIDE_AN_APPEND], cwd=tmp_path,
                            env=tuning_env(), capture_output=True, text=True, timeout=60)
    assert victim.returncode == -signal.SIGKILL, victim.stderr
    assert os.path.lexists(f"{log}.lock") and not log.read_bytes().endswith(b"\n")

    # The lock is known to be stale at once (not after a grace period, nor never), and
    # the half record is dropped rather than glued to the next one.
    study = load(open_storage(str(log), "k"), "k")
    results = _in_thread(lambda: workers.fail_stale(study), timeout=20)
    [(trial, action, why)] = results
    assert action == "failed" and "is gone" in why
    assert not os.path.lexists(f"{log}.lock")
    journal = log.read_bytes()
    assert journal.endswith(b"\n") and b'"n_par' not in journal
    fresh = load(open_storage(str(log), "k"), "k")   # the journal reads from the start
    trials = fresh.get_trials(deepcopy=False)
    assert trials[trial.number].state == TrialState.FAIL
    (retry,) = [t for t in trials if t.state == TrialState.WAITING]
    assert retry.system_attrs["failed_trial"] == trial.number
    assert retry.params == trial.params
    again = fresh.ask()                              # and the study goes on
    assert again.number == retry.number and again.params == trial.params


def test_a_torn_last_record_is_cut_before_the_next_append(tmp_path):
    path = tmp_path / "t.log"
    study = optuna.create_study(storage=open_storage(str(path), "t"), study_name="t")
    x = {"x": optuna.distributions.FloatDistribution(0.0, 1.0)}
    study.tell(study.ask(x), 0.5)
    with open(path, "ab") as f:
        f.write(b'{"op_code":4,"worker_id":"dead","study_id":0,"datetime_st')
    assert len(load(open_storage(str(path), "t"), "t").get_trials()) == 1
    study.tell(study.ask(x), 0.25)
    fresh = load(open_storage(str(path), "t"), "t")
    assert [(t.number, t.value) for t in fresh.get_trials()] == [(0, 0.5), (1, 0.25)]
    assert path.read_bytes().endswith(b"\n") and b'"dead"' not in path.read_bytes()


def test_journal_lock_waits_for_live_writers_and_breaks_dead_ones(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = "studies/l.log"   # relative, as by default
    os.mkdir("studies")
    optuna.create_study(storage=open_storage(path, "l"), study_name="l")
    lock_file = path + ".lock"

    def write_in_thread():
        done = threading.Event()

        def write():
            load(open_storage(path, "l"), "l").set_user_attr("n", 1)
            done.set()
        threading.Thread(target=write, daemon=True).start()
        return done

    # A live writer of ours holds it: the others wait.
    holder = JournalFileLock(path)
    holder.acquire()
    done = write_in_thread()
    assert not done.wait(0.5)
    holder.release()
    assert done.wait(20)
    # One of ours killed between creating its lock file and writing its PID into it.
    os.close(os.open(lock_file, os.O_CREAT | os.O_EXCL | os.O_WRONLY, LOCK_MODE))
    assert write_in_thread().wait(20)
    assert not os.path.lexists(lock_file)

    # Plain Optuna's lock (a symlink to the relative path, which does not resolve from
    # the link's folder) is respected while it may be in use ...
    from optuna.storages.journal import JournalFileSymlinkLock
    assert JournalFileSymlinkLock(path).acquire()
    assert os.path.islink(lock_file) and not os.path.exists(lock_file)
    done = write_in_thread()
    assert not done.wait(0.5)
    os.unlink(lock_file)          # its writer releases it
    assert done.wait(20)
    # ... and removed once older than the grace period (its writer died holding it).
    assert JournalFileSymlinkLock(path).acquire()
    old = time.time() - 60
    os.utime(lock_file, (old, old), follow_symlinks=False)
    assert write_in_thread().wait(20)
    assert not os.path.lexists(lock_file)


def _dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    ident = {**workers.machine_identity(), "pid": proc.pid, "rank": None}
    stat = workers._proc_stat(proc.pid)
    ident["start"] = stat[1] if stat else None
    proc.wait()
    return ident


def test_fail_stale_judges_each_running_trial(tmp_path):
    storage = open_storage(str(tmp_path / "j.log"), "j")
    study = optuna.create_study(storage=storage, study_name="j")

    def running(ident, own_number=True, x=0.5):
        trial = study.ask()
        trial.suggest_float("x", 0, 1)
        if ident is not None:
            trial.set_user_attr("worker", {**ident, "trial": trial.number + (not own_number)})
        return trial.number

    alive = running(workers.worker_identity(0))
    elsewhere = running({**workers.worker_identity(1), "host": "another-machine"})
    dead = running(_dead_pid())
    copied = running(_dead_pid(), own_number=False)   # attribute copied from another trial
    unknown = running(None)

    actions = {t.number: a for t, a, _ in workers.fail_stale(study)}
    assert actions == {alive: "kept", elsewhere: "kept", dead: "failed", copied: "kept",
                       unknown: "kept"}
    actions = {t.number: a for t, a, _ in workers.fail_stale(study, older_than=0)}
    assert actions == {alive: "kept", elsewhere: "failed", copied: "failed", unknown: "failed"}
    trials = study.get_trials(deepcopy=False)
    waiting = {t.system_attrs["failed_trial"]: t for t in trials if t.state == TrialState.WAITING}
    assert set(waiting) == {dead, elsewhere, copied, unknown}
    assert waiting[dead].params == trials[dead].params
    assert trials[alive].state == TrialState.RUNNING


# -- PostgreSQL with the heartbeat ------------------------------------------------------

def test_postgres_workers_survive_a_killed_worker(tmp_path, postgres_url, fashion_mnist):
    name = "pg-kill"
    ok(tuning(tmp_path, "create", "--storage", postgres_url, "--study-name", name, *SLOW))
    common = ["--storage", postgres_url, "--study-name", name, "--max-trials", 4,
              "--heartbeat", 1]
    victim = start_worker(tmp_path, *common, "--rank", 1)
    survivor = start_worker(tmp_path, *common, "--rank", 0)
    study = load(postgres_url, name)
    killed = wait_for_running_trial(study, victim.pid)
    victim.send_signal(signal.SIGKILL)
    victim.wait(30)
    out, err = survivor.communicate(timeout=120)
    assert survivor.returncode == 0, out + err

    complete = assert_lineage_complete(study, 4)
    dead = study.get_trials(deepcopy=False)[killed.number]
    assert dead.state == TrialState.FAIL
    # Failed by Optuna's heartbeat, which says why (fail-stale's reason says "is gone") ...
    assert dead.user_attrs["stop_reason"] == (f"worker died: no heartbeat for 3s "
                                              f"({socket.gethostname()} pid {victim.pid})")
    # ... and run again, once, with the same parameters, to completion.
    (retry,) = [t for t in complete if t.system_attrs.get("failed_trial") == killed.number]
    assert retry.params == killed.params
    assert retry.user_attrs["worker"]["rank"] == 0


def test_a_plain_run_on_postgres_runs_the_heartbeat(tmp_path, postgres_url, fashion_mnist):
    # `run` in one process is the worker loop with one worker, on a worker's storage: on
    # PostgreSQL its trials beat, so a dead `run` is found from any machine
    import sqlalchemy
    out = ok(tuning(tmp_path, "run", "--storage", postgres_url, "--study-name", "pg-run",
                    "--n-trials", 2, "--heartbeat", 1, *TINY))
    assert "ran 2 trials" in out
    study = load(postgres_url, "pg-run")
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2
    ids = [t._trial_id for t in study.trials]
    engine = sqlalchemy.create_engine(postgres_url)
    try:
        with engine.connect() as conn:
            beats = conn.execute(sqlalchemy.text(
                "SELECT count(*) FROM trial_heartbeats WHERE trial_id = ANY(:ids)"),
                {"ids": ids}).scalar()
    finally:
        engine.dispose()
    assert beats == 2


def test_grpc_proxy_serves_workers(tmp_path, postgres_url, fashion_mnist):
    try:
        import grpc  # noqa: F401
    except ImportError:
        require_or_skip("MINIDL_REQUIRE_POSTGRES",
                        "grpcio is not installed (the [distributed] extra)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proxy = subprocess.Popen([sys.executable, "-m", "tuning", "grpc-proxy", "--storage",
                              postgres_url, "--host", "127.0.0.1", "--port", str(port)],
                             cwd=tmp_path, env=tuning_env(), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        assert "gRPC proxy" in proxy.stdout.readline()
        deadline = time.monotonic() + 60
        while True:  # until the proxy listens
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert proxy.poll() is None and time.monotonic() < deadline, proxy.stderr.read()
                time.sleep(0.1)
        url = f"grpc://127.0.0.1:{port}"
        ok(tuning(tmp_path, "create", "--storage", url, "--study-name", "via-grpc", *TINY))
        ok(tuning(tmp_path, "run", "--workers", 2, "--threads", 1, "--storage", url,
                  "--study-name", "via-grpc", "--total", 4))
    finally:
        proxy.send_signal(signal.SIGINT)
        proxy.wait(30)
    study = load(postgres_url, "via-grpc")
    assert_lineage_complete(study, 4)


# -- refusals -----------------------------------------------------------------------------

def test_sqlite_with_several_workers_is_refused(tmp_path):
    url = f"sqlite:///{tmp_path / 'x.db'}"
    for args in (["worker", "--storage", url, "--study-name", "s"],
                 ["run", "--workers", 2, "--storage", url, "--study-name", "s", "--total", 2,
                  "--space", "lab-mlp"]):
        result = tuning(tmp_path, *args)
        assert result.returncode == 1
        assert "SQLite" in result.stderr and "journal file" in result.stderr
        assert "postgresql://" in result.stderr
    assert not (tmp_path / "x.db").exists()


def test_create_refuses_an_existing_study_unless_reused(tmp_path):
    ok(tuning(tmp_path, "create", "--study-name", "c", "--space", "cnn", "--epochs", 2))
    again = tuning(tmp_path, "create", "--study-name", "c", "--space", "cnn")
    assert again.returncode == 1
    assert "already exists" in again.stderr and "--reuse" in again.stderr
    assert "reusing study 'c'" in ok(tuning(tmp_path, "create", "--study-name", "c", "--reuse"))
    clash = tuning(tmp_path, "create", "--study-name", "c", "--reuse", "--epochs", 3)
    assert clash.returncode == 1 and "--epochs 3 (the study has 2)" in clash.stderr
    study = load(open_storage(str(tmp_path / "studies" / "c.log"), "c"), "c")
    assert study.user_attrs["tuning_settings"]["space"] == "cnn"
    assert study.user_attrs["tuning_settings"]["epochs"] == 2
    missing = tuning(tmp_path, "worker", "--study-name", "nope")
    assert missing.returncode == 1 and "no study storage" in missing.stderr
