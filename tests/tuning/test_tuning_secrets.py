"""Issue 23, item 1: a storage URL's password is never printed, listed or put on a
command line.

``tuning.storage.show_url`` is the one function that renders a storage for people; the
unit tests pin its output byte for byte.  The command tests feed passwords holding
``/ @ : %`` and ``?password=`` parameters through every command that prints a storage
(a real PostgreSQL server that checks the password, or a host nobody listens on for the
error messages) and look for every piece of the secret in what comes out, including
the command lines of ``run --workers``'s worker processes.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from urllib.parse import quote

import pytest

from support import require_or_skip
from tuning import storage as storage_mod
from tuning.storage import (MASK, scrub, secret_spans, show_url, storage_note,
                            storage_option, url_secrets)
from tuning_env import tuning_env

TINY = ["--space", "lab-mlp", "--epochs", "1", "--train-size", "200", "--val-size", "200",
        "--pruner", "none"]
# Five pieces no message would hold by chance, joined by the characters that make URLs
# hard to take apart: the test looks for each piece in everything printed.
PIECES = ["Kq7Zv", "Wm3Xr", "Jt9Yp", "Hn5Lb", "Fd8Gc"]
PASSWORD = "Kq7Zv/Wm3Xr@Jt9Yp:Hn5Lb%41Fd8Gc"   # '%41' is a literal %-sign in the password
ESCAPED = quote(PASSWORD, safe="")          # Kq7Zv%2FWm3Xr%40Jt9Yp%3AHn5Lb%2541Fd8Gc


def assert_no_secret(*texts):
    for text in texts:
        for piece in PIECES + [PASSWORD, ESCAPED, "%2541"]:
            assert piece not in text, f"{piece!r} printed:\n{text}"


# -- show_url: exactly what is shown ------------------------------------------------------

@pytest.mark.parametrize("url, shown", [
    # the password, whatever it holds; the user name, host, port and database kept
    ("postgresql+psycopg2://tuning:SECRET@db.example:5432/tuning",
     "postgresql+psycopg2://tuning:***@db.example:5432/tuning"),
    ("postgresql+psycopg2://tuning:a/b:c@db/tuning", "postgresql+psycopg2://tuning:***@db/tuning"),
    ("postgresql+psycopg2://tuning:p@ss@db/tuning", "postgresql+psycopg2://tuning:***@db/tuning"),
    ("postgresql+psycopg2://tuning:p%40ss%2F@db/tuning",
     "postgresql+psycopg2://tuning:***@db/tuning"),
    (f"postgresql+psycopg2://tuning:{PASSWORD}@127.0.0.1:1/db",
     "postgresql+psycopg2://tuning:***@127.0.0.1:1/db"),
    ("mysql+pymysql://root:pw?x#y@h/db", "mysql+pymysql://root:***@h/db"),
    ("redis://:tok3n@localhost:6379/0", "redis://:***@localhost:6379/0"),
    ("postgresql://user@server:pw@h/db", "postgresql://user@server:***@h/db"),
    ("postgresql://u:@h/db", "postgresql://u:@h/db"),            # an empty password
    # secret query parameters (names compared %-decoded, in any case), values up to the
    # next parameter: '@', '&' and '/' inside a value stay hidden
    ("postgresql://tuning@db/tuning?password=s3&sslmode=require",
     "postgresql://tuning@db/tuning?password=***&sslmode=require"),
    ("postgresql://tuning@db/tuning?sslmode=require&password=a@b&application_name=x",
     "postgresql://tuning@db/tuning?sslmode=require&password=***&application_name=x"),
    ("postgresql://tuning@db/tuning?PassWord=a&b&c=d",
     "postgresql://tuning@db/tuning?PassWord=***&c=d"),
    ("postgresql://tuning@db/tuning?pass%77ord=x", "postgresql://tuning@db/tuning?pass%77ord=***"),
    ("postgresql://tuning@db/t?sslpassword=k1&sslkey=/k.pem&sslcert=/c.pem",
     "postgresql://tuning@db/t?sslpassword=***&sslkey=***&sslcert=/c.pem"),
    ("mysql://u:pw@h/db;token=abc", "mysql://u:***@h/db;token=***"),
    ("postgresql://h/db?auth_token=abc", "postgresql://h/db?auth_token=***"),
    ("postgresql://h/db?client_secret=", "postgresql://h/db?client_secret="),  # empty value
    ("postgresql://h/db?pwd=1#frag", "postgresql://h/db?pwd=***"),
    # both at once, and a query value holding '@' after a password: everything from the
    # password on is hidden rather than a piece of either shown
    ("postgresql://u:pw@h/db?password=x@y", "postgresql://u:***"),
    # nothing secret: unchanged
    ("postgresql+psycopg2://tuning@127.0.0.1:5432/tuning",
     "postgresql+psycopg2://tuning@127.0.0.1:5432/tuning"),
    ("postgresql://h/db?application_name=me@host", "postgresql://h/db?application_name=me@host"),
    ("grpc://localhost:13000", "grpc://localhost:13000"),
    ("sqlite:///studies/x.db", "sqlite:///studies/x.db"),
    ("studies/lab:1@x.log", "studies/lab:1@x.log"),              # a journal path
    ("", ""),
])
def test_show_url(url, shown):
    assert show_url(url) == shown


def test_show_url_of_nothing_and_the_mask():
    assert show_url(None) is None
    assert MASK == "***"


def test_secret_spans_are_merged_and_exact():
    url = "postgresql://u:pw@h/db?password=x&token=y&a=b"
    spans = secret_spans(url)
    assert [url[a:b] for a, b in spans] == ["pw", "x", "y"]
    # overlapping spans merge into one; an empty value is no span.  "?token=" inside a
    # password could also start the query: its value then runs to the end
    url = "postgresql://u:a?token=b@h/db"
    assert [url[a:b] for a, b in secret_spans(url)] == ["a?token=b@h/db"]
    url = "postgresql://u:a?token=b&x=1@h/db"          # the query span ends inside
    assert [url[a:b] for a, b in secret_spans(url)] == ["a?token=b&x=1"]
    assert secret_spans("postgresql://u@h/db?password=") == []
    assert secret_spans("studies/a:b@c.log") == []


def test_url_secrets_lists_the_secret_its_decoding_and_its_pieces():
    secrets = url_secrets(f"postgresql://u:{ESCAPED}@h/db")
    # as given, %-decoded once, and the pieces between delimiters; longest first
    assert secrets == [ESCAPED, PASSWORD, "Hn5Lb%41Fd8Gc", "Jt9Yp", "Kq7Zv", "Wm3Xr"]
    assert url_secrets(None) == [] and url_secrets("sqlite:///x.db") == []
    assert "" not in url_secrets("postgresql://u:a//b@h/db")


def test_scrub_hides_the_url_and_its_secrets_everywhere():
    url = f"postgresql+psycopg2://tuning:{PASSWORD}@127.0.0.1:1/db"
    text = f"could not connect to {url}: invalid literal for int(): 'Hn5Lb%41Fd8Gc@127.0.0.1:1'"
    out = scrub(text, url)
    assert out == ("could not connect to postgresql+psycopg2://tuning:***@127.0.0.1:1/db: "
                   "invalid literal for int(): '***@127.0.0.1:1'")
    assert scrub(text, None, "sqlite:///x.db") == text  # nothing secret: unchanged
    # secrets shorter than MIN_SCRUB (4) are hidden inside the URL only
    assert storage_mod.MIN_SCRUB == 4
    short = "postgresql://u:abc@h/db"
    assert scrub("abc at postgresql://u:abc@h/db", short) == "abc at postgresql://u:***@h/db"
    four = "postgresql://u:abcd@h/db"
    assert scrub("abcd at postgresql://u:abcd@h/db", four) == "*** at postgresql://u:***@h/db"


def test_scrub_hides_a_short_piece_a_driver_shows_with_the_host():
    url = "postgresql+psycopg2://tuning:p/w@ss@127.0.0.1:1/db"
    text = 'could not translate host name "ss@127.0.0.1" to address'
    assert scrub(text, url) == 'could not translate host name "***@127.0.0.1" to address'
    assert storage_mod._tails(url) == ["w@ss", "ss"]
    assert scrub("w@ss@h and ss@h", url) == "***@h and ***@h"
    assert scrub("ss and ss.", url) == "ss and ss."     # short, no '@': left alone


def test_a_short_password_piece_is_not_in_the_drivers_message(cli):
    status, out, err = cli("trials", "--study-name", "s", "--storage",
                           "postgresql+psycopg2://tuning:p/w@ss@127.0.0.1:1/db")
    assert status == 1 and "ss@" not in err and "p/w" not in err, err
    assert err.startswith("tuning trials: error: --storage postgresql+psycopg2://tuning:***@"
                          "127.0.0.1:1/db: cannot open the database: "), err


def test_hints_leave_a_secret_storage_to_the_variable(monkeypatch):
    monkeypatch.delenv("OPTUNA_STORAGE", raising=False)
    secret = "postgresql+psycopg2://tuning:pw@db/tuning"
    assert storage_option(None) == ""
    assert storage_option("studies/a b.log") == " --storage 'studies/a b.log'"
    assert storage_option("postgresql://tuning@db/tuning") == \
        " --storage postgresql://tuning@db/tuning"
    assert storage_option(secret) == ""          # never on the command line, not even "$VAR"
    assert storage_note(secret) == (" (after export OPTUNA_STORAGE='<the storage URL>': its "
                                    "password is never printed nor put on a command line; "
                                    "see docs/scaling-out.md)")
    assert storage_note(None) == "" and storage_note("studies/a.log") == ""
    monkeypatch.setenv("OPTUNA_STORAGE", secret)       # it holds it already: no note
    assert storage_note(secret) == ""


# -- commands on a host nobody listens on: the error messages ------------------------------

def _bogus_urls():
    return [
        f"postgresql+psycopg2://tuning:{PASSWORD}@127.0.0.1:1/tuning",   # as typed
        f"postgresql+psycopg2://tuning:{ESCAPED}@127.0.0.1:1/tuning",    # %-escaped
        f"postgresql+psycopg2://tuning@127.0.0.1:1/tuning?password={ESCAPED}&sslmode=disable",
        f"postgresql+psycopg2://tuning@127.0.0.1:1/tuning?sslmode=disable&password={PASSWORD}",
    ]


COMMANDS = [
    ["create", "--study-name", "s", *TINY],
    ["run", "--study-name", "s", "--n-trials", "1", *TINY],
    ["run", "--workers", "2", "--study-name", "s", "--total", "2", *TINY],
    ["worker", "--study-name", "s"],
    ["enqueue", "--study-name", "s", "--space", "lab-mlp", "--params", '{"learn_rate": 0.01}'],
    ["trials", "--study-name", "s"],
    ["best", "--study-name", "s"],
    ["plot", "--study-name", "s", "--out", "plots"],
    ["fail-stale", "--study-name", "s"],
    ["studies"],
    ["grpc-proxy", "--port", "1"],
]


@pytest.mark.parametrize("url", _bogus_urls(), ids=["raw", "escaped", "query", "query-raw"])
def test_no_error_message_shows_the_password(cli, url):
    for command in COMMANDS:
        for debug in ([], ["--debug"]):
            status, out, err = cli(*command, "--storage", url, *debug)
            assert status == 1, (command, out, err)
            assert "error: " in err, err
            assert_no_secret(out, err)


def test_no_error_message_shows_the_password_from_the_environment(cli, monkeypatch):
    for url in _bogus_urls():
        monkeypatch.setenv("OPTUNA_STORAGE", url)
        for command in (["trials", "--study-name", "s", "--debug"], ["studies"]):
            status, out, err = cli(*command)
            assert status == 1 and "cannot open the database" in err, err
            assert_no_secret(out, err)


# -- a real PostgreSQL that checks the password ---------------------------------------------

@pytest.fixture(scope="module")
def pg_secret():
    """A throwaway server whose TCP connections need a password, and a role ``tuner``
    whose password is ``PASSWORD``; yields the server."""
    from benchmarks.pgserver import PostgresServer, available
    why = available()
    if why:
        require_or_skip("MINIDL_REQUIRE_POSTGRES", why)
    server = PostgresServer()
    try:
        server.init(password_auth=True)
        server.add_role("tuner", PASSWORD)
        yield server
    finally:
        server.close()


def _children(pid: int) -> list:
    """PIDs of the processes whose parent is ``pid``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(entry))
    return found


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode()
    except OSError:
        return ""


@pytest.mark.slow
@pytest.mark.parametrize("form", ["userinfo", "query", "environment"])
def test_commands_on_a_password_protected_database(tmp_path, cli, monkeypatch, pg_secret,
                                                   fashion_mnist, form):
    host = f"127.0.0.1:{pg_secret.port}"
    if form == "query":
        url = f"postgresql+psycopg2://tuner@{host}/tuning?password={ESCAPED}&sslmode=disable"
        shown = f"postgresql+psycopg2://tuner@{host}/tuning?password=***&sslmode=disable"
    else:
        url = f"postgresql+psycopg2://tuner:{ESCAPED}@{host}/tuning"
        shown = f"postgresql+psycopg2://tuner:***@{host}/tuning"
    name = f"sec-{form}"
    if form == "environment":
        monkeypatch.setenv("OPTUNA_STORAGE", url)
        given = []
    else:
        given = ["--storage", url]
    printed = []

    def tuning(*argv):
        status, out, err = cli(*argv)
        printed.append(out + err)
        assert status == 0, out + err
        assert_no_secret(out, err)
        return out

    # the password is checked: a wrong one is refused, without showing either
    wrong = url.replace(ESCAPED, "WrongPassword1")
    status, out, err = cli("trials", "--study-name", name, "--storage", wrong)
    assert status == 1 and 'password authentication failed for user "tuner"' in err
    assert "WrongPassword1" not in err

    out = tuning("create", *given, "--study-name", name, *TINY)
    assert f"created study '{name}' in {shown}: " in out
    hint = out.splitlines()[1]
    assert f" -m tuning worker --study-name {name} --max-trials N" in hint
    assert ("after export OPTUNA_STORAGE=" in hint) == (form != "environment")
    out = tuning("enqueue", *given, "--study-name", name, "--params", '{"learn_rate": 0.01}')
    assert f"enqueued in study '{name}' ({shown})" in out
    out = tuning("run", *given, "--study-name", name, "--n-trials", 1)
    assert f"continuing study '{name}': 0 finished trials, in {shown}: " in out
    assert f" plot --study-name {name} --out studies/{name}-plots" in out
    out = tuning("worker", *given, "--study-name", name, "--max-trials", 2, "--quiet")
    assert f"on study '{name}' in {shown}: " in out
    out = tuning("studies", *given)
    rows = [line.split()[:2] for line in out.splitlines()[1:]]
    assert [name, shown] in rows and {where for _, where in rows} == {shown}
    tuning("trials", *given, "--study-name", name)
    tuning("best", *given, "--study-name", name)
    tuning("fail-stale", *given, "--study-name", name)

    # run --workers: the URL reaches the workers in their environment, not on their
    # command line (which any user's `ps` shows)
    env = tuning_env(OPTUNA_STORAGE=url) if form == "environment" else tuning_env()
    proc = subprocess.Popen([sys.executable, "-m", "tuning", "run", "--workers", "2",
                             "--threads", "1", *given, "--study-name", name, "--total", "4"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    seen = {}
    try:
        while proc.poll() is None and len(seen) < 2:
            for child in _children(proc.pid):
                line = _cmdline(child)
                if " worker " in line:
                    seen[child] = line
            time.sleep(0.02)
        out, err = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 0, out + err
    assert len(seen) == 2, (seen, out, err)
    for line in seen.values():
        assert "-m tuning worker --study-name" in line and "--storage" not in line
        assert_no_secret(line)
    assert_no_secret(out, err)
    assert f"study '{name}' in {shown}: " in out
    assert "ran " in out

    # the gRPC proxy names what it serves, masked
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proxy = subprocess.Popen([sys.executable, "-m", "tuning", "grpc-proxy", *given,
                              "--host", "127.0.0.1", "--port", str(port)],
                             cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        first = proxy.stdout.readline()
    finally:
        proxy.send_signal(signal.SIGINT)
        rest, err = proxy.communicate(timeout=60)
    assert first.startswith(f"starting the gRPC proxy for {shown} on 127.0.0.1:{port}"), \
        first + err
    assert_no_secret(first, rest, err)
    assert_no_secret(*printed)


@pytest.mark.parametrize("url, shown", [
    # a second "://" later (a query value): the password is still the first part's
    ("postgresql://u:pw@h/db?next=http://x", "postgresql://u:***@h/db?next=http://x"),
    # an empty password first, then a secret parameter: both looked at
    ("postgresql://u:@h/db?password=x", "postgresql://u:@h/db?password=***"),
    # a secret parameter's value starting exactly where the password ends: one mask
    ("postgresql://u:x?pwd=@h/db", "postgresql://u:***"),
])
def test_show_url_edge_cases(url, shown):
    assert show_url(url) == shown


def test_database_error_keeps_the_drivers_words_without_its_class_or_the_password():
    url = "postgresql+psycopg2://tuning:S3cretPW@db:5432/t"
    tail = ". Check that the server runs and the URL (user, password, host, port, database) " \
           "is right"
    head = "--storage postgresql+psycopg2://tuning:***@db:5432/t: cannot open the database: "
    cases = [
        ('(psycopg2.OperationalError) connection to server at "db" failed: refused\nmore',
         'connection to server at "db" failed: refused'),
        ("(x.Error) first) second", "first) second"),       # only the class is cut
        ("password authentication failed (code 28) for S3cretPW",
         "password authentication failed (code 28) for ***"),
        ("(psycopg2.OperationalError)", "(psycopg2.OperationalError)"),
    ]
    for raw, said in cases:
        assert storage_mod.database_error(url, RuntimeError(raw)) == head + said + tail
