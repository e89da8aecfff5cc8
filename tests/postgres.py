"""A real PostgreSQL server for the tests, started by the tests themselves (``initdb`` + the
``postgres`` server in a temporary directory), as a pytest fixture.

The server listens on a Unix socket in its own directory only (no TCP port), runs with
``fsync=off`` (a test server need not survive a power cut), and never outlives the test run: it is
started in its own process group, with a parent-death signal (the kernel kills it when the test
run ends, even by SIGKILL), stopped by the fixture's finaliser and by an ``atexit`` hook. PostgreSQL refuses to run as root, so
under root the server and ``initdb`` run as the ``postgres`` system user (or ``nobody``), who owns
the temporary directory.

One server serves the whole test run; each test gets a fresh, empty database (``new_database``).
A test module imports the fixture functions (``postgres_fixture``, ``postgres_url_fixture``,
``state_location_fixture``) and asks for ``postgres``, ``postgres_url`` (a fresh database) or
``state_location`` (a fresh state on each backend in turn).
When PostgreSQL is not installed the tests that need it are skipped with the reason — except under
CI (``CI=true``), where that fails the run (``apt-get install postgresql``).

**The suite on PostgreSQL.** With ``RECRUITMAIL_TEST_STATE=postgresql`` every scenario the suite
replays (the end-to-end pairs, the executor's tests, the crash and fault chains) keeps its state in
a fresh database of this server instead of SQLite: ``scenario_state_line()`` is the ``state = …``
line their configuration gains (``make test`` runs those modules a second time that way).
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import itertools
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.servers import missing

SUPERUSER = "recruitmail"


def binaries() -> Path | None:
    """The directory of ``initdb`` and ``postgres`` ($RECRUITMAIL_TEST_PGBIN, else Debian's newest)."""
    configured = os.environ.get("RECRUITMAIL_TEST_PGBIN")
    if configured:
        return Path(configured) if (Path(configured) / "postgres").exists() else None
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/postgres"),
        key=lambda p: (
            int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0
        ),
    )
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("postgres")
    return Path(on_path).parent if on_path else None


def _run_as() -> list[str]:
    """The prefix that makes a program die with the test run and, under root, drops to a system
    user (PostgreSQL refuses to run as root). setpriv execs: the server keeps its pid."""
    prefix = ["setpriv", "--pdeathsig=KILL"]
    if os.geteuid() != 0:
        return [*prefix, "--"]
    for user in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            entry = pwd.getpwnam(user)
            # The parent-death signal is set after the change of user, which would clear it.
            return [
                *prefix,
                f"--reuid={entry.pw_uid}",
                f"--regid={entry.pw_gid}",
                "--init-groups",
                "--",
            ]
    raise RuntimeError("running as root, and neither a postgres nor a nobody user exists")


def _owner() -> tuple[int, int] | None:
    if os.geteuid() != 0:
        return None
    for user in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            entry = pwd.getpwnam(user)
            return entry.pw_uid, entry.pw_gid
    return None


@dataclass
class PostgresServer:
    """One PostgreSQL server in ``directory``, reachable on its Unix socket there."""

    directory: Path
    bin: Path
    process: subprocess.Popen[bytes] | None = None
    _numbers: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def data(self) -> Path:
        return self.directory / "data"

    @property
    def log(self) -> Path:
        return self.directory / "postgres.log"

    def url(self, database: str = "postgres") -> str:
        """A ``postgresql://`` URL for ``database`` on this server (over the Unix socket)."""
        return f"postgresql://{SUPERUSER}@/{database}?host={quote(str(self.directory), safe='/')}"

    def start(self) -> None:
        owner = _owner()
        if owner is not None:
            os.chown(self.directory, *owner)
        subprocess.run(
            [
                *_run_as(),
                str(self.bin / "initdb"),
                "--pgdata",
                str(self.data),
                "--username",
                SUPERUSER,
                "--auth",
                "trust",
                "--encoding",
                "UTF8",
                "--locale",
                "C",
                "--no-sync",
            ],
            check=True,
            capture_output=True,
            cwd=self.directory,
        )
        with self.log.open("ab") as log:
            if owner is not None:
                os.chown(self.log, *owner)
            self.process = subprocess.Popen(
                [
                    *_run_as(),
                    str(self.bin / "postgres"),
                    "-D",
                    str(self.data),
                    "-c",
                    "listen_addresses=",
                    "-c",
                    f"unix_socket_directories={self.directory}",
                    "-c",
                    "fsync=off",
                    "-c",
                    "synchronous_commit=off",
                    "-c",
                    "full_page_writes=off",
                    "-c",
                    "max_connections=200",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.directory,
                start_new_session=True,  # its own process group; Ctrl-C is for pytest
            )
        self._wait_until_ready()

    def _wait_until_ready(self) -> None:
        # A generous deadline: this waits for readiness, it asserts nothing about speed.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"postgres exited with {self.process.returncode}:\n"
                    + self.log.read_text(errors="replace")
                )
            done = subprocess.run(
                [str(self.bin / "pg_isready"), "-h", str(self.directory), "-U", SUPERUSER],
                capture_output=True,
            )
            if done.returncode == 0:
                return
            time.sleep(0.05)
        raise RuntimeError(
            "postgres did not become ready:\n" + self.log.read_text(errors="replace")
        )

    def new_database(self) -> str:
        """A fresh, empty database; returns its URL."""
        import psycopg

        name = f"test_{os.getpid()}_{next(self._numbers)}"
        with psycopg.connect(self.url(), autocommit=True) as db:
            db.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
        return self.url(name)

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            # SIGINT is PostgreSQL's fast shutdown (SIGTERM would wait for every client).
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=20)
        # Whatever is left of the group (the server's own children) goes with it.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=5)


_server: PostgresServer | None = None
_starting = threading.Lock()  # scenario chains run side by side and may ask for it at once


def _stop_server() -> None:
    global _server
    server, _server = _server, None
    if server is not None:
        server.stop()
        shutil.rmtree(server.directory, ignore_errors=True)


atexit.register(_stop_server)


def available() -> bool:
    """Whether a PostgreSQL server (and the psycopg driver) can be started for the tests."""
    try:
        import psycopg  # noqa: F401
        import psycopg_pool  # noqa: F401
    except ImportError:
        return False
    return binaries() is not None and shutil.which("setpriv") is not None


def server() -> PostgresServer:
    """The test run's PostgreSQL server, started on first use (skips or fails when missing)."""
    with _starting:
        return _running_server()


def _running_server() -> PostgresServer:
    global _server
    if _server is not None and _server.process is not None and _server.process.poll() is None:
        return _server
    if not available():
        missing("PostgreSQL (initdb and postgres, psycopg and psycopg-pool)")
    pgbin = binaries()
    assert pgbin is not None
    _stop_server()
    _server = PostgresServer(Path(tempfile.mkdtemp(prefix="recruitmail-pg-")), pgbin)
    try:
        _server.start()
    except BaseException:
        _stop_server()
        raise
    return _server


@pytest.fixture(name="postgres", scope="session")
def postgres_fixture() -> Iterator[PostgresServer]:
    """The running server; stopped when the test run ends."""
    yield server()
    _stop_server()


@pytest.fixture(name="postgres_url")
def postgres_url_fixture(postgres: PostgresServer) -> str:
    """The URL of a fresh, empty database on the test server."""
    return postgres.new_database()


@pytest.fixture(name="state_location", params=["sqlite", "postgresql"])
def state_location_fixture(request: pytest.FixtureRequest, tmp_path: Path) -> Path | str:
    """Where a fresh ``State`` lives, once per backend: a SQLite file, then a PostgreSQL URL
    (``State(state_location)`` opens either). PostgreSQL skips, or fails under CI, when missing."""
    if request.param == "sqlite":
        return tmp_path / "state" / "recruitmail.sqlite"
    # Through the session's fixture, so that its teardown stops the server with the session.
    running: PostgresServer = request.getfixturevalue("postgres")
    return running.new_database()


SUITE_STATE_VARIABLE = "RECRUITMAIL_TEST_STATE"
"""``sqlite`` (the default) or ``postgresql``: where the suite's scenarios keep their state."""


def suite_on_postgresql() -> bool:
    """Whether this test run keeps its scenarios' state in PostgreSQL."""
    value = os.environ.get(SUITE_STATE_VARIABLE, "").strip().lower() or "sqlite"
    if value not in ("sqlite", "postgresql"):
        raise pytest.UsageError(
            f"{SUITE_STATE_VARIABLE} must be sqlite or postgresql, not {value!r}"
        )
    return value == "postgresql"


def scenario_state_line() -> str:
    """The ``[service]`` line that puts a scenario's state in a fresh PostgreSQL database when
    the suite runs on PostgreSQL; nothing (SQLite in ``state_dir``, the default) otherwise."""
    if not suite_on_postgresql():
        return ""
    return f'state = "{server().new_database()}"\n'
