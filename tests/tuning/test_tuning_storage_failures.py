"""Issue 23, items 3 and 4: a storage that fails is one line, and nothing finished is lost.

Disk full, permission lost or database gone while trials run stops the command with one
line naming the storage (its password masked) and the operating system's or driver's
reason, exit status 1; ``--debug`` shows the traceback.  Special files (a FIFO,
``/dev/null``) are refused before they are opened.  ``grpc-proxy`` refuses a port
another process listens on.
"""
from __future__ import annotations

import errno
import os
import signal
import socket
import subprocess
import sys
import time

import optuna
import pytest
from optuna.trial import TrialState

from support import require_or_skip
from tuning import journal
from tuning import storage as storage_mod
from tuning.errors import TuningError
from tuning.storage import open_storage
from tuning_env import tuning_env

TINY = ["--space", "lab-mlp", "--epochs", "1", "--train-size", "200", "--val-size", "200",
        "--pruner", "none", "--sampler", "random"]
STOPPED = ("failed: {reason}. The run stopped; the trials finished before are kept there "
           "(run the command again once the storage works; --debug shows the traceback)")


def tuning(cwd, *args, timeout=300, **env):
    return subprocess.run([sys.executable, "-m", "tuning", *map(str, args)], cwd=cwd,
                          env=tuning_env(**env), capture_output=True, text=True, timeout=timeout)


def one_line(err: str) -> str:
    """The only non-empty line of ``err`` (no traceback, nothing else)."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def load(path, name="s"):
    return optuna.load_study(study_name=name, storage=open_storage(str(path), name, write=False))


# -- special files ---------------------------------------------------------------------------

@pytest.mark.parametrize("command", [["best"], ["trials"], ["run", "--n-trials", "1", *TINY],
                                     ["worker"], ["fail-stale"]])
def test_a_fifo_as_storage_is_refused_at_once(tmp_path, command):
    fifo = tmp_path / "s.log"
    os.mkfifo(fifo)
    result = tuning(tmp_path, command[0], "--storage", fifo, "--study-name", "s", *command[1:],
                    timeout=60)     # it used to block for ever, reading the FIFO
    assert result.returncode == 1
    assert one_line(result.stderr) == (
        f"tuning {command[0]}: error: --storage {fifo}: is a named pipe (FIFO), not a regular "
        f"file; give a journal file path (e.g. studies/NAME.log) or a storage URL")


def test_dev_null_from_the_environment_is_refused(tmp_path):
    for command in (["trials", "--study-name", "s"], ["studies"],
                    ["run", "--study-name", "s", "--n-trials", "1", *TINY]):
        result = tuning(tmp_path, *command, OPTUNA_STORAGE="/dev/null", timeout=60)
        assert result.returncode == 1
        assert one_line(result.stderr) == (
            f"tuning {command[0]}: error: --storage /dev/null: is a character device, not a "
            f"regular file; give a journal file path (e.g. studies/NAME.log) or a storage URL")
    assert os.path.exists("/dev/null") and not os.path.isfile("/dev/null")


def test_special_file_kinds(tmp_path):
    os.mkfifo(tmp_path / "p")
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(tmp_path / "sock"))
        assert storage_mod.special_file_kind(tmp_path / "sock") == "a socket"
    (tmp_path / "f").write_text("")
    os.symlink(tmp_path / "p", tmp_path / "link")
    assert storage_mod.special_file_kind(tmp_path / "p") == "a named pipe (FIFO)"
    assert storage_mod.special_file_kind(tmp_path / "link") == "a named pipe (FIFO)"
    assert storage_mod.special_file_kind("/dev/null") == "a character device"
    assert storage_mod.special_file_kind(tmp_path / "f") is None
    assert storage_mod.special_file_kind(tmp_path) is None
    assert storage_mod.special_file_kind(tmp_path / "missing") is None


# -- a journal whose writes fail mid-run ----------------------------------------------------

@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EACCES, errno.EROFS])
def test_a_journal_that_fails_mid_run_stops_with_one_line(cli, monkeypatch, tmp_path,
                                                          fashion_mnist, code):
    status, out, err = cli("run", "--study-name", "s", "--n-trials", 1, *TINY)
    assert status == 0, err
    log = tmp_path / "studies" / "s.log"
    before = log.read_bytes()
    real = journal._write_chunk
    calls = []

    def failing(fd, data):
        """The first two appends go through; the third writes half, then the disk is
        full (or the file's permission or the file system's write access is gone)."""
        calls.append(len(data))
        if len(calls) < 3:
            return real(fd, data)
        if len(calls) == 3:
            return real(fd, bytes(data[:len(data) // 2]))
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(journal, "_write_chunk", failing)
    for debug in ([], ["--debug"]):
        calls.clear()
        status, out, err = cli(*debug, "run", "--study-name", "s", "--n-trials", 3)
        assert status == 1, err
        line = f"tuning run: error: the storage studies/s.log " + STOPPED.format(
            reason=os.strerror(code))
        if debug:
            assert "Traceback" in err and err.rstrip().endswith(line), err
            assert "StorageIOError" in err
        else:
            assert one_line(err) == line
            assert "AssertionError" not in err and "Should not reach" not in err
    monkeypatch.setattr(journal, "_write_chunk", real)
    # what finished before is there, byte for byte; the half record is cut by the next append
    assert log.read_bytes().startswith(before)
    trials = load(log).trials
    assert trials[0].state == TrialState.COMPLETE
    assert trials[0].value == load(log).best_value
    status, out, err = cli("enqueue", "--study-name", "s", "--params", '{"learn_rate": 0.01}')
    assert status == 0, err
    assert load(log).trials[0].state == TrialState.COMPLETE


@pytest.mark.slow
def test_a_full_disk_under_a_real_run(tmp_path, fashion_mnist):
    """A tmpfs of 256 KiB filled up while `run` writes its journal (root only: mount)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(disk)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip()}); "
                    f"test_a_journal_that_fails_mid_run_stops_with_one_line simulates it")
    try:
        log = disk / "s.log"
        first = tuning(tmp_path, "run", "--storage", log, "--study-name", "s", "--n-trials", 1,
                       *TINY)
        assert first.returncode == 0, first.stderr
        fd = os.open(disk / "filler", os.O_WRONLY | os.O_CREAT)  # fill the disk up
        try:
            while True:
                os.write(fd, b"\0" * 512)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
        finally:
            os.close(fd)
        full = tuning(tmp_path, "run", "--storage", log, "--study-name", "s", "--n-trials", 6)
        assert full.returncode == 1, full.stdout + full.stderr
        assert one_line(full.stderr) == (f"tuning run: error: the storage {log} "
                                         + STOPPED.format(reason="No space left on device"))
        os.unlink(disk / "filler")
        study = load(log)
        assert study.trials[0].state == TrialState.COMPLETE
        # the run goes on where it stopped: the trial cut short by the full disk is failed
        # (its process is gone) with a reason and run again
        again = tuning(tmp_path, "run", "--storage", log, "--study-name", "s", "--total", 3)
        assert again.returncode == 0, again.stderr
        trials = load(log).trials
        assert sum(t.state == TrialState.COMPLETE for t in trials) == 3
        for t in trials:
            assert t.state in (TrialState.COMPLETE, TrialState.FAIL), t
            if t.state == TrialState.FAIL:
                assert t.user_attrs["stop_reason"].startswith("worker died: "), t.user_attrs
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


# -- PostgreSQL stopped under a running worker ----------------------------------------------

@pytest.fixture
def pg():
    """A throwaway PostgreSQL server of this test's own (it is stopped and started)."""
    from benchmarks.pgserver import PostgresServer, available
    why = available()
    if why:
        require_or_skip("MINIDL_REQUIRE_POSTGRES", why)
    with PostgresServer() as server:
        yield server


SLOW = ["--space", "lab-mlp", "--epochs", "3", "--train-size", "6000", "--val-size", "500",
        "--pruner", "none", "--sampler", "random"]


def _wait(predicate, what, timeout=120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.1)
    pytest.fail(f"{what} within {timeout}s")


@pytest.mark.slow
def test_postgres_stopped_under_a_running_worker(tmp_path, pg, fashion_mnist):
    url = pg.url
    created = tuning(tmp_path, "create", "--storage", url, "--study-name", "s", *SLOW)
    assert created.returncode == 0, created.stderr
    worker = subprocess.Popen([sys.executable, "-m", "tuning", "worker", "--storage", url,
                               "--study-name", "s", "--max-trials", "6", "--heartbeat", "1",
                               "--threads", "1", "--quiet"], cwd=tmp_path, env=tuning_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        study = optuna.load_study(study_name="s", storage=url)

        def second_trial_running():
            trials = study.get_trials(deepcopy=False)
            return (sum(t.state == TrialState.COMPLETE for t in trials) >= 1 and
                    any(t.state == TrialState.RUNNING and "config" in t.user_attrs
                        for t in trials))

        _wait(second_trial_running, "no trial completed and another started")
        finished = {t.number: t.value for t in study.get_trials(deepcopy=False)
                    if t.state == TrialState.COMPLETE}
        pg.stop("fast")                       # the database goes away mid-trial
        out, err = worker.communicate(timeout=180)
    finally:
        worker.kill()
    assert worker.returncode == 1, out + err
    line = one_line(err)
    prefix = f"tuning worker: error: the storage {url} failed: "
    assert line.startswith(prefix) and line.endswith(STOPPED.split("{reason}")[1]), line
    reason = line[len(prefix):-len(STOPPED.split("{reason}")[1])]
    assert reason and "Should not reach" not in reason and "UnboundLocalError" not in reason

    pg.start()                                # back: nothing finished was lost
    study = optuna.load_study(study_name="s", storage=url)
    kept = {t.number: t.value for t in study.trials if t.state == TrialState.COMPLETE}
    assert {n: kept[n] for n in finished} == finished
    # the trial cut short is failed by the heartbeat of the next worker, with a reason,
    # and run again
    time.sleep(3.5)                           # > 3 missed beats of 1 s
    again = tuning(tmp_path, "worker", "--storage", url, "--study-name", "s", "--max-trials",
                   len(kept) + 1, "--heartbeat", 1, "--threads", 1, "--quiet")
    assert again.returncode == 0, again.stderr
    trials = optuna.load_study(study_name="s", storage=url).trials
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert failed and all(t.user_attrs["stop_reason"].startswith("worker died: no heartbeat")
                          for t in failed), [t.user_attrs for t in failed]
    assert not [t for t in trials if t.state == TrialState.RUNNING]


# -- grpc-proxy and a port in use -----------------------------------------------------------

def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _grpc_or_skip():
    try:
        import grpc  # noqa: F401
    except ImportError:
        require_or_skip("MINIDL_REQUIRE_POSTGRES", "grpcio is not installed (the [distributed] "
                        "extra)")


@pytest.mark.parametrize("reuseport", [False, True])
def test_grpc_proxy_refuses_a_port_in_use(tmp_path, reuseport):
    _grpc_or_skip()
    port = _free_port()
    with socket.socket() as taken:
        if reuseport:   # as a gRPC server listens: sharing the port
            taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        taken.bind(("127.0.0.1", port))
        taken.listen()
        result = tuning(tmp_path, "grpc-proxy", "--storage", f"sqlite:///{tmp_path}/x.db",
                        "--host", "127.0.0.1", "--port", port, timeout=60)
    assert result.returncode == 1
    assert one_line(result.stderr) == (
        f"tuning grpc-proxy: error: --port {port}: another process already listens on "
        f"127.0.0.1:{port} (another gRPC proxy?); stop it, or choose another --port")
    assert result.stdout == ""


def test_a_second_grpc_proxy_on_the_same_port_is_refused(tmp_path):
    _grpc_or_skip()
    port = _free_port()
    args = [sys.executable, "-m", "tuning", "grpc-proxy", "--storage",
            f"sqlite:///{tmp_path}/x.db", "--host", "127.0.0.1", "--port", str(port)]
    first = subprocess.Popen(args, cwd=tmp_path, env=tuning_env(), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        assert first.stdout.readline().startswith("starting the gRPC proxy for sqlite:///")
        second = tuning(tmp_path, *args[3:], timeout=60)
        assert second.returncode == 1
        assert f"--port {port}: another process already listens on 127.0.0.1:{port}" in \
            one_line(second.stderr)
        assert first.poll() is None          # the first one serves on
    finally:
        first.send_signal(signal.SIGINT)
        first.communicate(timeout=60)
    assert first.returncode == 130          # stopped by Ctrl-C, as documented


def test_the_proxy_listens_without_sharing_its_port(tmp_path):
    """Even past the check (two proxies started at the same instant), the server is made
    without SO_REUSEPORT, so the second cannot listen."""
    _grpc_or_skip()
    from tuning.commands.grpc_proxy import make_server
    from tuning.errors import TuningError
    storage = optuna.storages.get_storage(f"sqlite:///{tmp_path}/x.db")
    port = _free_port()
    server = make_server(storage, "127.0.0.1", port)
    server.start()
    try:
        with pytest.raises(TuningError, match=f"--port {port}: cannot listen on 127.0.0.1:{port}"):
            make_server(storage, "127.0.0.1", port)
    finally:
        server.stop(0).wait(10)


# -- how a failure is recognised and worded: exact strings -----------------------------------

def _chained(top, *causes):
    """``top`` raised while handling ``causes[0]``, itself raised while handling ..."""
    exc = top
    for cause in causes:
        exc.__context__ = cause
        exc = cause
    return top


def test_storage_failure_finds_the_driver_error_behind_optunas():
    import sqlalchemy
    from tuning.errors import StorageFailedError
    driver = sqlalchemy.exc.OperationalError(
        "SELECT 1", {}, Exception('connection to server at "h", port 1 failed: Connection '
                                  'refused\n\tIs the server running?'))
    exc = _chained(UnboundLocalError("updated_state"), ValueError("unrelated"), driver)
    url = "postgresql+psycopg2://u:Kq7Zv/Wm3@h:1/db"
    failure = storage_mod.storage_failure(exc, storage_mod.show_url(url), url)
    assert type(failure) is StorageFailedError
    assert str(failure) == (
        'the storage postgresql+psycopg2://u:***@h:1/db failed: connection to server at "h", '
        'port 1 failed: Connection refused. The run stopped; the trials finished before are '
        'kept there (run the command again once the storage works; --debug shows the '
        'traceback)')


def test_storage_failure_takes_our_errors_and_nothing_else():
    from tuning.errors import JournalDamagedError, StorageFailedError, StorageIOError
    io = StorageIOError("studies/s.log", "No space left on device")
    assert str(io) == "cannot write the journal studies/s.log: No space left on device"
    assert str(StorageIOError("j.log", "Permission denied", "read")) == \
        "cannot read the journal j.log: Permission denied"
    failure = storage_mod.storage_failure(_chained(AssertionError("Should not reach."), io),
                                          "ignored")
    assert type(failure) is StorageFailedError
    assert str(failure).startswith("the storage studies/s.log failed: No space left on "
                                   "device. The run stopped;")
    damaged = JournalDamagedError("journal j.log: line 3 is not a journal record")
    assert storage_mod.storage_failure(_chained(AssertionError(), damaged), "x") is damaged
    for other in (BrokenPipeError(32, "Broken pipe"), OSError(28, "No space left on device"),
                  AssertionError("Should not reach."), KeyError("x")):
        assert storage_mod.storage_failure(other, "x") is None
    loop = ValueError("a")
    loop.__context__ = KeyError("b")
    loop.__context__.__context__ = loop                  # a cycle ends the walk
    assert storage_mod.storage_failure(loop, "x") is None


def test_driver_reason_is_the_drivers_first_line():
    import sqlalchemy
    exc = sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception(
        "server closed the connection unexpectedly\n\tThis probably means ..."))
    assert str(exc).startswith("(builtins.Exception) server closed")
    assert storage_mod.driver_reason(exc) == "server closed the connection unexpectedly"
    assert storage_mod.driver_reason(RuntimeError("")) == "RuntimeError"
    assert storage_mod.driver_reason(RuntimeError("(not a prefix")) == "(not a prefix"
    assert storage_mod.driver_reason(RuntimeError("(x.Error) first) second")) == "first) second"
    assert storage_mod.driver_reason(RuntimeError("no (class) here")) == "no (class) here"

    class Rpc(Exception):
        def details(self):
            return "failed to connect to all addresses\nmore"
    assert storage_mod.driver_reason(Rpc("ignored")) == "failed to connect to all addresses"

    class Silent(Exception):
        def details(self):
            return None

    class Broken(Exception):
        def details(self):
            raise ValueError("no details")

    assert storage_mod.driver_reason(Silent("(grpc.X) its own words\nmore")) == "its own words"
    assert storage_mod.driver_reason(Broken("first line\nsecond")) == "first line"


def test_storage_label_names_the_storage_for_people(tmp_path):
    journal = open_storage(str(tmp_path / "s.log"), "s")
    assert storage_mod.storage_label(journal) == str(tmp_path / "s.log")
    assert storage_mod.storage_url(journal) is None

    class Rdb:
        url = "postgresql://u:pw@h/db?token=abc"

    class Cached:
        _backend = Rdb()

    class Proxy:
        _host, _port = "h", 13000

    assert storage_mod.storage_label(Cached()) == "postgresql://u:***@h/db?token=***"
    assert storage_mod.storage_url(Cached()) == Rdb.url
    assert storage_mod.storage_label(Rdb()) == "postgresql://u:***@h/db?token=***"
    assert storage_mod.storage_label(Proxy()) == "grpc://h:13000"
    assert storage_mod.storage_label(object()) == "object"


def test_heartbeat_reason_wording():
    from tuning import workers

    class Backend:
        grace_period = 30

    class Storage:
        _backend = Backend()

    frozen = optuna.trial.create_trial(state=TrialState.FAIL, user_attrs={
        "worker": {"host": "box", "pid": 42, "trial": 0}})
    frozen.number = 0
    assert workers.heartbeat_reason(Storage(), frozen) == \
        "worker died: no heartbeat for 30s (box pid 42)"
    frozen.number = 5       # the attribute was copied from another trial: no owner known
    assert workers.heartbeat_reason(Storage(), frozen) == "worker died: no heartbeat for 30s"
    assert workers.heartbeat_reason(object(), frozen) == \
        "worker died: no heartbeat for too long"


# -- what to install, where SQLite cannot create its file (in this process) ----------------

@pytest.mark.parametrize("spec, hint", [
    ("postgresql://u@h/db", " SQLAlchemy 2.1 reads postgresql:// as psycopg 3: pip install "
                            "'psycopg[binary]', or name the driver you have: "
                            "postgresql+psycopg2://..."),
    ("postgres://u@h/db", " SQLAlchemy 2.1 reads postgresql:// as psycopg 3: pip install "
                          "'psycopg[binary]', or name the driver you have: "
                          "postgresql+psycopg2://..."),
    ("postgresql+pg8000://u@h/db", " pip install the driver pg8000 (psycopg2-binary for "
                                   "psycopg2)"),
    ("postgres+psycopg2://u@h/db", " pip install the driver psycopg2 (psycopg2-binary for "
                                   "psycopg2)"),
    ("mysql://u@h/db", " pip install pymysql and write mysql+pymysql://..."),
    ("mysql+mysqldb://u@h/db", " pip install pymysql and write mysql+pymysql://..."),
    ("oracle://u@h/db", ""),
])
def test_driver_missing_says_what_to_install(spec, hint):
    scheme = spec.split("://")[0]
    exc = ModuleNotFoundError("No module named 'driver'\nsecond line")
    assert storage_mod.driver_missing(spec, exc) == \
        f"--storage {scheme}://...: no database driver (No module named 'driver').{hint}"
    wrapped = ImportError("Failed to import DB access module for the specified storage URL.")
    wrapped.__cause__ = exc                   # as Optuna's RDBStorage re-raises it
    assert storage_mod.driver_missing(spec, wrapped) == \
        f"--storage {scheme}://...: no database driver (No module named 'driver').{hint}"


def test_sqlite_in_a_missing_folder_is_refused_before_sqlalchemy(tmp_path, monkeypatch):
    check = storage_mod._check_sqlite_folder
    monkeypatch.chdir(tmp_path)
    for fine in ("sqlite://", "sqlite:///", "sqlite:///:memory:", "sqlite:///here.db",
                 f"sqlite:///{tmp_path / 'x.db'}"):     # the last: sqlite:////tmp/.../x.db
        assert check(fine) is None, fine
    with pytest.raises(TuningError) as info:
        check("sqlite:///no/such/s.db")
    assert str(info.value) == ("--storage sqlite:///no/such/s.db: the folder no/such does not "
                               "exist; create it (mkdir -p no/such) or give another path")
    missing = tmp_path / "gone"
    with pytest.raises(TuningError) as info:
        check(f"sqlite:///{missing}/s.db")
    assert str(info.value) == (f"--storage sqlite:///{missing}/s.db: the folder {missing} "
                               f"does not exist; create it (mkdir -p {missing}) or give "
                               f"another path")
    (tmp_path / "afile").write_text("x")
    with pytest.raises(TuningError) as info:
        check("sqlite:///afile/s.db")
    assert str(info.value) == ("--storage sqlite:///afile/s.db: the folder afile does not "
                               "exist; create it (mkdir -p afile) or give another path")


def test_sqlite_where_nothing_can_be_written(tmp_path, monkeypatch):
    monkeypatch.setattr(storage_mod, "folder_problem",
                        lambda folder: f"cannot write into {folder} (Read-only file system)")
    with pytest.raises(TuningError) as info:
        storage_mod._check_sqlite_folder(f"sqlite:///{tmp_path}/s.db")
    assert str(info.value) == (f"--storage sqlite:///{tmp_path}/s.db: cannot create "
                               f"{tmp_path}/s.db: cannot write into {tmp_path} (Read-only "
                               f"file system)")
    (tmp_path / "s.db").write_bytes(b"")      # an existing database needs no new file
    assert storage_mod._check_sqlite_folder(f"sqlite:///{tmp_path}/s.db") is None


# -- opening a storage URL: every refusal in one line (in this process) --------------------

def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unknown_url_scheme():
    with pytest.raises(TuningError) as info:
        open_storage("ftp://u:SECRET@host/x", "s")
    assert str(info.value) == (
        "--storage ftp://u:***@host/x: unknown URL scheme 'ftp'; expected a journal file path "
        "or a URL starting with sqlite://, postgresql://, mysql://, redis:// or grpc://")


@pytest.mark.parametrize("url", ["grpc://hostonly", "grpc://host:port", "grpc://:5000"])
def test_a_grpc_url_needs_host_and_port(url):
    with pytest.raises(TuningError) as info:
        open_storage(url, "s")
    assert str(info.value) == f"--storage {url}: expected grpc://HOST:PORT"


def test_no_grpc_proxy_at_the_port(monkeypatch):
    monkeypatch.setattr(storage_mod, "GRPC_CONNECT_TIMEOUT", 0.3)
    port = _free_port()
    with pytest.raises(TuningError) as info:
        open_storage(f"grpc://127.0.0.1:{port}/", "s")
    message = str(info.value)
    assert message.startswith(f"--storage grpc://127.0.0.1:{port}/: no gRPC storage proxy "
                              f"answers at 127.0.0.1:{port} (")
    assert message.endswith(f"); start one with `python -m tuning grpc-proxy --storage URL "
                            f"--port {port}`")


@pytest.mark.parametrize("url", ["redis://u:SECRET@127.0.0.1:1/0", "rediss://127.0.0.1:1",
                                 "unix:///tmp/no-redis.sock"])
def test_redis_without_its_client(url):
    try:                                           # redis is not a dependency of tuning
        import redis  # noqa: F401
    except ImportError:
        with pytest.raises(TuningError) as info:
            open_storage(url, "s")
        message = str(info.value)
        assert message.startswith(f"--storage {storage_mod.show_url(url)}: the Redis client is "
                                  f"missing (")
        assert message.endswith("No module named 'redis'.): pip install redis")
        assert "SECRET" not in message
    else:
        with pytest.raises(TuningError, match="cannot reach Redis: .*Check that the server "
                                              "runs"):
            open_storage(url, "s")


def test_a_database_driver_that_is_not_installed():
    with pytest.raises(TuningError) as info:
        open_storage("mysql+pymysql://u:SECRET@127.0.0.1:1/db", "s")
    assert str(info.value) == ("--storage mysql+pymysql://...: no database driver (No module "
                               "named 'pymysql'). pip install pymysql and write "
                               "mysql+pymysql://...")


def test_a_database_that_does_not_answer():
    port = _free_port()
    url = f"postgresql+psycopg2://tuning:SECRET@127.0.0.1:{port}/db"
    with pytest.raises(TuningError) as info:
        open_storage(url, "s")
    message = str(info.value)
    assert message.startswith(f"--storage postgresql+psycopg2://tuning:***@127.0.0.1:{port}/db:"
                              f" cannot open the database: connection to server at "
                              f"\"127.0.0.1\", port {port} failed")
    assert message.endswith(". Check that the server runs and the URL (user, password, host, "
                            "port, database) is right")
    assert "SECRET" not in message and "(psycopg2" not in message


def test_sqlite_takes_the_heartbeat_only_when_asked(tmp_path):
    plain = open_storage(f"sqlite:///{tmp_path / 'a.db'}", "s")
    beating = open_storage(f"sqlite:///{tmp_path / 'b.db'}", "s", heartbeat_interval=7)
    assert isinstance(plain, optuna.storages.RDBStorage)
    assert plain.heartbeat_interval is None and beating.heartbeat_interval == 7


def test_sqlite_is_refused_for_several_processes():
    storage_mod.refuse_sqlite(None, "s")
    storage_mod.refuse_sqlite("studies/s.log", "s")
    storage_mod.refuse_sqlite("postgresql://h/db", "s")
    for name, shown in (("s", "s"), (None, "NAME")):
        with pytest.raises(TuningError) as info:
            storage_mod.refuse_sqlite("sqlite:///x.db", name)
        assert str(info.value) == storage_mod.SQLITE_REFUSED.format(name=shown)
        assert f"studies/{shown}.log" in str(info.value)


# -- opening a journal file: every refusal in exact words (in this process) ---------------

def test_open_storage_refusals_in_words(tmp_path, monkeypatch):
    from tuning.errors import StudyNotFoundError
    monkeypatch.chdir(tmp_path)

    def refused(*args, **kwargs):
        with pytest.raises(TuningError) as info:
            open_storage(*args, **kwargs)
        return str(info.value)

    assert refused(None, None) == ("give --study-name (the default storage is "
                                   "studies/<study-name>.log) or --storage")
    assert refused("  ", "s") == ("--storage is empty: give a journal file path (e.g. "
                                  "studies/NAME.log) or an Optuna URL (sqlite:///x.db, "
                                  "postgresql://...)")
    assert refused(str(tmp_path), "s") == (f"--storage {tmp_path}: is a directory; give a "
                                           f"journal file path inside it, e.g. "
                                           f"{tmp_path / 's.log'}")
    assert refused(str(tmp_path), None).endswith(f"e.g. {tmp_path / 'NAME.log'}")
    assert refused("/dev/null", "s") == ("--storage /dev/null: is a character device, not a "
                                         "regular file; give a journal file path (e.g. "
                                         "studies/NAME.log) or a storage URL")
    with pytest.raises(StudyNotFoundError) as info:
        open_storage(None, "s", must_exist=True)
    assert str(info.value) == ("no study storage at studies/s.log (no study named 's' has "
                               "been run here)")
    with pytest.raises(StudyNotFoundError) as info:
        open_storage("elsewhere/s.log", "s", must_exist=True)
    assert str(info.value) == "no study storage at elsewhere/s.log"
    assert not (tmp_path / "studies").exists() and not (tmp_path / "elsewhere").exists()
    open_storage("new/s.log", "s", must_exist=False, write=False)   # reading creates nothing
    assert not (tmp_path / "new").exists()

