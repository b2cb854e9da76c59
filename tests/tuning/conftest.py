"""Fixtures of the tuning tests: a throwaway PostgreSQL server for the scale-out tests."""
from __future__ import annotations

import os

import pytest

from support import require_or_skip


def _postgres_bindir():
    """The directory holding initdb and pg_ctl (Debian: /usr/lib/postgresql/VERSION/bin)."""
    import glob
    import shutil

    def version(path):
        name = path.split("/")[-2]
        return int(name) if name.isdigit() else 0

    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: version(p[:-7]))
    if found:
        return os.path.dirname(found[-1])
    initdb = shutil.which("initdb")
    return os.path.dirname(initdb) if initdb and shutil.which("pg_ctl") else None


@pytest.fixture(scope="session")
def postgres_url():
    """URL of a throwaway PostgreSQL server: initdb + pg_ctl in a temporary directory,
    listening on 127.0.0.1 at a free port, stopped and removed after the session.

    As root (CI), the server runs as the ``postgres`` user (initdb refuses root).
    """
    import pwd
    import shutil
    import socket
    import subprocess
    import tempfile

    try:
        import psycopg2
    except ImportError:
        require_or_skip("MINIDL_REQUIRE_POSTGRES", "psycopg2 is not installed")
    bindir = _postgres_bindir()
    if bindir is None:
        require_or_skip("MINIDL_REQUIRE_POSTGRES", "PostgreSQL server binaries (initdb, pg_ctl) "
                        "not found: apt-get install postgresql")
    as_user = []
    tmp = tempfile.mkdtemp(prefix="minidl-pg-")
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            owner = pwd.getpwnam("nobody")
        os.chown(tmp, owner.pw_uid, owner.pw_gid)
        as_user = ["runuser", "-u", owner.pw_name, "--"]
    os.chmod(tmp, 0o755)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = os.path.join(tmp, "data")

    def run(*cmd):
        result = subprocess.run(as_user + [os.path.join(bindir, cmd[0]), *cmd[1:]],
                                capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            log = os.path.join(tmp, "log")
            tail = open(log).read()[-2000:] if os.path.exists(log) else ""
            pytest.fail(f"{' '.join(cmd[:1])} failed: {result.stderr[-2000:]}\n{tail}")

    run("initdb", "-D", data, "-U", "tuning", "--auth=trust", "-E", "UTF8", "--no-sync")
    run("pg_ctl", "-D", data, "-l", os.path.join(tmp, "log"), "-w", "-o",
        f"-p {port} -k {tmp} -c listen_addresses=127.0.0.1 -c fsync=off", "start")
    try:
        conn = psycopg2.connect(host="127.0.0.1", port=port, user="tuning", dbname="postgres")
        conn.autocommit = True
        conn.cursor().execute("CREATE DATABASE tuning")
        conn.close()
        # The driver is named: SQLAlchemy 2.1 defaults postgresql:// to psycopg 3.
        yield f"postgresql+psycopg2://tuning@127.0.0.1:{port}/tuning"
    finally:
        subprocess.run(as_user + [os.path.join(bindir, "pg_ctl"), "-D", data, "-m", "immediate",
                                  "stop"], capture_output=True, timeout=60)
        shutil.rmtree(tmp, ignore_errors=True)
