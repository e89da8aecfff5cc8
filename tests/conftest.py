"""What holds for the whole test run: nothing a test starts outlives the run.

Every process the run starts inherits its mark (``tests.servers.RUN_MARK_VARIABLE``), and a
watchdog process SIGKILLs what still carries it once the run is gone, however it ended (SIGKILL
included; see ``tests/servers.py``). When the session finishes normally, anything still running
with the mark is named here and stopped: a test that leaks a process shows up in the summary.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator

import pytest

from tests.postgres import postgres_fixture, suite_on_postgresql
from tests.servers import Watchdog, marked_processes, run_mark, stop_all

__all__ = ["postgres_fixture"]


def pytest_configure(config: pytest.Config) -> None:
    run_mark()
    Watchdog.start()


_left: list[tuple[int, str]] = []


@pytest.fixture(autouse=True, scope="session")
def _suite_state(request: pytest.FixtureRequest) -> Iterator[None]:
    """With ``RECRUITMAIL_TEST_STATE=postgresql`` the scenarios keep their state in the test
    PostgreSQL server (``tests/postgres.py``): started once here, stopped with the session."""
    if suite_on_postgresql():
        request.getfixturevalue("postgres")
    yield


@pytest.hookimpl(trylast=True)  # after the fixtures' own teardown
def pytest_sessionfinish(session: pytest.Session) -> None:
    stop_all()
    _left[:] = [(pid, cmd) for pid, cmd in marked_processes(run_mark()) if not _is_ours(pid)]
    for pid, _ in _left:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _left:
        terminalreporter.write_sep("-", "processes left running by the tests, stopped now")
        for pid, command in _left:
            terminalreporter.write_line(f"{pid}: {command[:200]}")


def pytest_unconfigure(config: pytest.Config) -> None:
    Watchdog.finish()


def _is_ours(pid: int) -> bool:
    """The watchdog itself is meant to run until the end."""
    return pid == Watchdog.pid()
