"""Shared fixtures.

Optional dependencies (torch, the real Fashion-MNIST files, PostgreSQL) skip their
tests on a user's machine when absent, with the reason shown by ``-ra``.  CI sets
MINIDL_REQUIRE_TORCH / MINIDL_REQUIRE_DATA / MINIDL_REQUIRE_POSTGRES=1, which turns
each of those skips into a failure, so nothing that matters is skipped in CI.
"""
from __future__ import annotations

import os

import numpy as np
import pytest


def require_or_skip(env_var: str, reason: str):
    """Skip with ``reason``, unless ``env_var`` is set: then fail, since CI needs it."""
    if os.environ.get(env_var) == "1":
        pytest.fail(f"{reason}, and {env_var}=1 requires it")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def torch():
    """The torch module, in float64-friendly, single-thread, deterministic mode."""
    try:
        import torch as _torch
    except ImportError:
        require_or_skip("MINIDL_REQUIRE_TORCH", "torch is not installed")
    _torch.set_num_threads(1)
    return _torch


@pytest.fixture(scope="session")
def fashion_mnist():
    """(train_x, train_y, test_x, test_y) of the real Fashion-MNIST, as uint8/int64."""
    from minidl.data import load_fashion_mnist, DataNotFoundError
    try:
        return load_fashion_mnist(download=False)
    except DataNotFoundError as exc:
        require_or_skip("MINIDL_REQUIRE_DATA", f"Fashion-MNIST files not found ({exc})")


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


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


# -- which fast routes this run exercised -------------------------------------------------
# The vector routes of minidl's GEMM micro-kernels (AVX-512, AVX2) run only on CPUs that
# have those instructions.  Tests that exercise a route note it here, and a route that no
# test could run on this CPU is noted with the reason; the summary at the end of the run
# lists both, so a run on an AVX2 machine says plainly that the AVX-512 route went untested.
VECTOR_ROUTES = {"exercised": {}, "not exercised": {}}


def note_route(route: str, how: str | None = None, why_not: str | None = None) -> None:
    """Record that ``route`` was exercised (``how``) or could not be (``why_not``)."""
    if why_not is None:
        VECTOR_ROUTES["exercised"][route] = how
    else:
        VECTOR_ROUTES["not exercised"][route] = why_not


def pytest_terminal_summary(terminalreporter):
    done, missing = VECTOR_ROUTES["exercised"], VECTOR_ROUTES["not exercised"]
    if not done and not missing:
        return
    terminalreporter.section("minidl vector routes")
    for route, how in done.items():
        terminalreporter.write_line(f"exercised:     {route} ({how})")
    for route, why in missing.items():
        if route not in done:
            terminalreporter.write_line(f"NOT exercised: {route} ({why})")


@pytest.fixture
def fast_kernels():
    """Kernels on their fast routes for the test, also in a run under
    ``MINIDL_KERNELS=reference`` (for tests about the fast routes themselves)."""
    from minidl import kernels
    previous = kernels.use_reference(False)
    yield
    kernels.use_reference(previous)


@pytest.fixture
def cli(tmp_path, monkeypatch, capsys):
    """Run ``tuning`` in a fresh folder; returns (exit status, stdout, stderr)."""
    from tuning.cli import main
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OPTUNA_STORAGE", raising=False)

    def run(*argv):
        status = main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return status, out, err

    return run
