"""A state database that cannot answer for now fails the pass as ``TransientError`` (the next
pass tries again), never as an internal error: PostgreSQL dropping the service's connections
(a restart, a fail-over, an administrator's ``pg_terminate_backend``), SQLite locked by another
process for longer than its wait.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import psycopg
import pytest

from recruitmail.contracts.errors import TransientError
from recruitmail.daemon.state import State
from tests.postgres import postgres_fixture, postgres_url_fixture  # noqa: F401

MAILBOX = "lisa.ek@nordljus.se"


def test_postgresql_dropping_the_connections_is_an_error_for_now_and_the_next_call_works(
    postgres_url: str,
) -> None:
    state = State(postgres_url, pool_size=2)
    try:
        state.hold(MAILBOX, 1234.0)
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            dropped = admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            ).fetchone()
        assert dropped is not None and dropped[0] >= 1

        with pytest.raises(TransientError, match="the state database did not answer"):
            state.hold_until(MAILBOX)
        # The pool replaces the broken connections: within a few calls the state answers again,
        # with what was committed before.
        answers = []
        for _ in range(4):
            try:
                answers.append(state.hold_until(MAILBOX))
                break
            except TransientError:
                continue
        assert answers == [1234.0]
    finally:
        state.close()


def test_sqlite_failing_for_now_is_an_error_for_now_and_a_wrong_statement_stays_a_bug(
    tmp_path: Path,
) -> None:
    state = State.in_dir(tmp_path)
    try:
        state.hold(MAILBOX, 99.0)
        backend = state._backend
        assert isinstance(backend.db, sqlite3.Connection)
        # Another process holds the write lock: the state's connection is told so at once here
        # (its own wait is 30 s), as it would be told after its wait.
        backend.db.execute("PRAGMA busy_timeout = 0")
        other = sqlite3.connect(tmp_path / "recruitmail.sqlite", isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(TransientError, match="the state database failed"):
                state.hold(MAILBOX, 100.0)
        finally:
            other.execute("ROLLBACK")
            other.close()
        state.hold(MAILBOX, 101.0)
        assert state.hold_until(MAILBOX) == 101.0

        with pytest.raises(sqlite3.OperationalError), backend.read() as db:
            db.execute("SELECT no_such_column FROM ledger")
    finally:
        state.close()
