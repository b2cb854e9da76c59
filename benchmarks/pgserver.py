"""A throwaway PostgreSQL server that can be stopped and started again (tests, the soak).

``tests/conftest.py``'s ``postgres_url`` server lives for the whole test session and
must not be stopped under other tests; tests that stop the database under running
workers, and ``benchmarks/soak.py``, use one of these instead::

    with PostgresServer() as pg:          # initdb + pg_ctl start, in a temporary folder
        url = pg.url                      # postgresql+psycopg2://tuning@127.0.0.1:PORT/tuning
        pg.stop()                         # connections are cut (pg_ctl -m fast)
        pg.start()                        # the same data, the same port
    # stopped and removed

As root, the server runs as the ``postgres`` user (initdb refuses root), as in the test
fixture.  ``available()`` says why no server can be made here (no psycopg2, no
binaries), or None.
"""
from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile


def bindir() -> str | None:
    """The folder holding initdb and pg_ctl (Debian: /usr/lib/postgresql/VERSION/bin)."""
    def version(path):
        name = path.split("/")[-3]
        return int(name) if name.isdigit() else 0

    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=version)
    if found:
        return os.path.dirname(found[-1])
    initdb = shutil.which("initdb")
    return os.path.dirname(initdb) if initdb and shutil.which("pg_ctl") else None


def available() -> str | None:
    """Why no throwaway server can be started here, or None."""
    try:
        import psycopg2  # noqa: F401, PLC0415
    except ImportError:
        return "psycopg2 is not installed"
    if bindir() is None:
        return "PostgreSQL server binaries (initdb, pg_ctl) not found: apt-get install postgresql"
    return None


class PostgresServer:
    """initdb + pg_ctl in a temporary folder, on 127.0.0.1 at a free port (see the module)."""

    def __init__(self, user: str = "tuning", database: str = "tuning"):
        why = available()
        if why:
            raise RuntimeError(why)
        self.user, self.database = user, database
        self._bin = bindir()
        self._as_user = []
        self.tmp = tempfile.mkdtemp(prefix="minidl-pg-")
        if os.geteuid() == 0:
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError:
                owner = pwd.getpwnam("nobody")
            os.chown(self.tmp, owner.pw_uid, owner.pw_gid)
            self._as_user = ["runuser", "-u", owner.pw_name, "--"]
        os.chmod(self.tmp, 0o755)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.data = os.path.join(self.tmp, "data")
        self.log = os.path.join(self.tmp, "log")
        self.running = False

    @property
    def url(self) -> str:
        # The driver is named: SQLAlchemy 2.1 defaults postgresql:// to psycopg 3.
        return (f"postgresql+psycopg2://{self.user}@127.0.0.1:{self.port}/{self.database}")

    def _run(self, *cmd, timeout=120):
        result = subprocess.run(self._as_user + [os.path.join(self._bin, cmd[0]), *cmd[1:]],
                                capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            tail = open(self.log).read()[-2000:] if os.path.exists(self.log) else ""
            raise RuntimeError(f"{cmd[0]} failed: {result.stderr[-2000:]}\n{tail}")
        return result

    def init(self, password_auth: bool = False) -> "PostgresServer":
        """Create and start the server.  ``password_auth``: connections over TCP must give
        their role's password (scram-sha-256; ``url`` then needs one, see ``add_role``);
        the superuser keeps connecting through the server's Unix socket (``execute``)."""
        auth = (["--auth-local=trust", "--auth-host=scram-sha-256"] if password_auth
                else ["--auth=trust"])
        self._run("initdb", "-D", self.data, "-U", self.user, *auth, "-E", "UTF8",
                  "--no-sync")
        self.start()
        self.execute(f"CREATE DATABASE {self.database}", database="postgres")
        return self

    def start(self) -> None:
        self._run("pg_ctl", "-D", self.data, "-l", self.log, "-w", "-o",
                  f"-p {self.port} -k {self.tmp} -c listen_addresses=127.0.0.1 -c fsync=off",
                  "start")
        self.running = True

    def stop(self, mode: str = "fast") -> None:
        """Stop the server; ``fast`` ends every connection at once (the clients see the
        database go away), ``immediate`` does so without a clean shutdown."""
        self._run("pg_ctl", "-D", self.data, "-m", mode, "-w", "stop")
        self.running = False

    def execute(self, sql: str, database: str | None = None, params=None) -> None:
        """Run one statement as the superuser (autocommit)."""
        import psycopg2  # noqa: PLC0415
        conn = psycopg2.connect(host=self.tmp, port=self.port, user=self.user,
                                dbname=database or self.database)
        try:
            conn.autocommit = True
            conn.cursor().execute(sql, params)
        finally:
            conn.close()

    def add_role(self, name: str, password: str) -> None:
        """A login role with ``password`` that owns nothing but may use the database."""
        from psycopg2 import sql  # noqa: PLC0415
        self.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
            sql.Identifier(name), sql.Literal(password)))
        self.execute(sql.SQL("GRANT ALL ON DATABASE {} TO {}").format(
            sql.Identifier(self.database), sql.Identifier(name)))
        self.execute(sql.SQL("GRANT ALL ON SCHEMA public TO {}").format(sql.Identifier(name)))

    def close(self) -> None:
        if self.running:
            subprocess.run(self._as_user + [os.path.join(self._bin, "pg_ctl"), "-D", self.data,
                                            "-m", "immediate", "stop"],
                           capture_output=True, timeout=60)
            self.running = False
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> "PostgresServer":
        try:
            return self.init()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc) -> None:
        self.close()
