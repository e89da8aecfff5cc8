"""The state database: calendar snapshots, sync cursors, the ledger.

SQLite (WAL, mode 0600) in ``service.state_dir`` is the embedded default; ``service.state =
"postgresql://…"`` puts the same schema into PostgreSQL (psycopg 3 with a connection pool,
imported only then). All SQL of the project lives in this module and is written once: a small
dialect seam (``_SQLite``, ``_PostgreSQL``) differs only in placeholders, how a write transaction
starts, where the schema version is kept, column types, ``VACUUM`` and the integrity check.
Every write happens in an explicit transaction; the ledger row for a key is the single source of
truth for "was this mail drafted".

PostgreSQL runs at READ COMMITTED. Every read-then-write that matters is one statement (an
``INSERT … ON CONFLICT`` upsert, which PostgreSQL keeps atomic against concurrent inserts of the
same key, or an ``UPDATE … WHERE state = 'attempting'``, re-checked on the newest row version
after waiting for its lock), so no update is lost; the schema migration takes a transaction-level
advisory lock. SERIALIZABLE would add serialization failures that only a replay of the whole
transaction could answer, and a transaction body here must never run twice. The exactly-once
ordering does not depend on the level: the attempt row is committed (and durable) before
``transaction()`` returns, before any mailbox is touched.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import hmac
import json
import os
import secrets
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from recruitmail.contracts.errors import ConfigError, TransientError
from recruitmail.contracts.models import (
    Attendee,
    DraftKey,
    DraftRef,
    DraftState,
    Event,
    MailKind,
    Response,
    SkippedEvent,
    install_pseudonym_key,
)
from recruitmail.contracts.secrets import load_secret
from recruitmail.daemon.faults import crash_point
from recruitmail.daemon.planner import LedgerEntry, LedgerState

SCHEMA_VERSION = 5

_MIGRATIONS: dict[int, str] = {
    1: """
    CREATE TABLE cursors (
        mailbox TEXT PRIMARY KEY,
        cursor TEXT NOT NULL,
        synced_at TEXT NOT NULL
    );
    CREATE TABLE events (
        mailbox TEXT NOT NULL,
        event_id TEXT NOT NULL,
        data TEXT NOT NULL,
        PRIMARY KEY (mailbox, event_id)
    );
    CREATE TABLE ledger (
        key_id TEXT PRIMARY KEY,
        mailbox TEXT NOT NULL,
        candidate TEXT NOT NULL,
        kind TEXT NOT NULL,
        occasion TEXT NOT NULL,
        state TEXT NOT NULL,
        reason TEXT NOT NULL DEFAULT '',
        due TEXT NOT NULL,
        done_at TEXT,
        remote_id TEXT,
        fingerprint TEXT,
        remote_state TEXT,
        folded_into TEXT,
        subject TEXT NOT NULL DEFAULT '',
        context TEXT NOT NULL DEFAULT '{}',
        attempts INTEGER NOT NULL DEFAULT 0,
        last_attempt TEXT,
        ambiguous INTEGER NOT NULL DEFAULT 0,
        updated_at TEXT NOT NULL
    );
    CREATE INDEX ledger_by_candidate ON ledger (mailbox, candidate);
    CREATE TABLE candidates (
        mailbox TEXT NOT NULL,
        address TEXT NOT NULL,
        last_contact TEXT,
        closed INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (mailbox, address)
    );
    """,
    # Version 2: what an administrator must see in `status` (failing look-ups, events left out,
    # mails held), the provider's Retry-After across processes, and the install's secret.
    2: """
    CREATE TABLE problems (
        mailbox TEXT NOT NULL,
        topic TEXT NOT NULL,
        message TEXT NOT NULL,
        permanent INTEGER NOT NULL,
        first_seen TEXT NOT NULL,
        last_seen TEXT NOT NULL,
        PRIMARY KEY (mailbox, topic)
    );
    CREATE TABLE skipped_events (
        mailbox TEXT NOT NULL,
        event_ref TEXT NOT NULL,
        reason TEXT NOT NULL,
        seen TEXT NOT NULL,
        PRIMARY KEY (mailbox, event_ref)
    );
    CREATE TABLE holds (
        mailbox TEXT PRIMARY KEY,
        until REAL NOT NULL
    );
    CREATE TABLE secrets (
        name TEXT PRIMARY KEY,
        value BLOB NOT NULL
    );
    ALTER TABLE cursors ADD COLUMN basis TEXT NOT NULL DEFAULT ''
    """,
    # Version 3: each candidate's language and why (mailbox "*": set with `recruitmail language`,
    # for every mailbox; otherwise the language a mailbox decided, kept so that it stays).
    3: """
    CREATE TABLE languages (
        mailbox TEXT NOT NULL,
        address TEXT NOT NULL,
        language TEXT NOT NULL,
        reason TEXT NOT NULL,
        decided_at TEXT NOT NULL,
        PRIMARY KEY (mailbox, address)
    )
    """,
    # Version 4: several instances sharing one database. A lease per mailbox (its holder, a
    # fencing token that only grows, and an expiry on the database's clock, in epoch seconds)
    # and the instances seen lately (docs/RELIABILITY.md, "Several instances").
    4: """
    CREATE TABLE leases (
        mailbox TEXT PRIMARY KEY,
        holder TEXT NOT NULL DEFAULT '',
        token INTEGER NOT NULL DEFAULT 0,
        acquired_at REAL NOT NULL DEFAULT 0,
        renewed_at REAL NOT NULL DEFAULT 0,
        expires_at REAL NOT NULL DEFAULT 0
    );
    CREATE INDEX leases_by_holder ON leases (holder);
    CREATE TABLE instances (
        id TEXT PRIMARY KEY,
        host TEXT NOT NULL,
        pid INTEGER NOT NULL,
        started_at REAL NOT NULL,
        last_seen REAL NOT NULL
    )
    """,
    # Version 5: a counter per mailbox, raised in the same transaction as every write to what
    # planning reads of it (its stored events, ledger rows and candidates), by any process or
    # instance; mailbox "*" for a write that may touch every mailbox (``forget``, a copy). A
    # runner that planned nothing skips planning while its mailbox's counters stay the same
    # (``State.events_version``), on PostgreSQL as on SQLite.
    5: """
    CREATE TABLE mailbox_versions (
        mailbox TEXT PRIMARY KEY,
        version INTEGER NOT NULL DEFAULT 0
    )
    """,
}

# Tables of the running fleet, not of the state: a copy to another database leaves them behind
# (the instances of the old database hold nothing in the new one). The mailboxes' change
# counters stay behind too: the copy raises the target's own ("*").
_FLEET_TABLES = frozenset({"leases", "instances", "mailbox_versions"})

ALL_MAILBOXES = "*"
"""The ``mailbox_versions`` row raised by a write that may touch every mailbox."""


@dataclass(frozen=True)
class LedgerRow:
    """A full ledger row, for the executor and ``status``."""

    entry: LedgerEntry
    reason: str
    remote: DraftRef | None
    subject: str
    folded_into: str | None
    attempts: int
    last_attempt: datetime | None
    ambiguous: bool


@dataclass(frozen=True)
class Finished:
    """A draft that now exists in the mailbox, for phase two of its ledger row."""

    key: DraftKey
    ref: DraftRef
    subject: str
    folded: tuple[DraftKey, ...] = ()
    context: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SkipRecord:
    """A mail that will never be drafted, with its reason (and the mails folded into it)."""

    key: DraftKey
    due: datetime
    reason: str
    folded: tuple[DraftKey, ...] = ()


@dataclass(frozen=True)
class Lease:
    """Who holds a mailbox (``holder`` empty: nobody), under which fencing token, until when
    (epoch seconds on the database's clock)."""

    mailbox: str
    holder: str
    token: int
    acquired_at: float
    renewed_at: float
    expires_at: float


@dataclass(frozen=True)
class Instance:
    """A ``recruitmail run`` process of the fleet, as it last said it was alive."""

    id: str
    host: str
    pid: int
    started_at: float
    last_seen: float


class LeaseLost(TransientError):
    """This instance no longer holds the mailbox's lease (another took it over, or it ran out):
    the write was refused and the pass ends; the holder reconciles the mailbox."""


@dataclass(frozen=True)
class Problem:
    """Something an administrator must know about one mailbox (shown by ``status``)."""

    topic: str  # the call or the mail, e.g. "last contact" or "template thank_you/sv"
    message: str
    permanent: bool
    first_seen: datetime
    last_seen: datetime


class State:
    """One database (SQLite, or PostgreSQL) holding every mailbox's state."""

    def __init__(self, path: Path | str, *, pool_size: int = 4) -> None:
        """``path``: the SQLite file (or ``:memory:``), or a ``postgresql://`` URL whose
        password, if any, is a secret reference (``?password=credential:NAME``)."""
        self._backend: _SQLite | _PostgreSQL = (
            _PostgreSQL(path, pool_size)
            if isinstance(path, str) and is_postgresql_url(path)
            else _SQLite(Path(path))
        )
        self.path: Path | str = self._backend.where
        self._lock = threading.RLock()
        if isinstance(self._backend, _SQLite):
            self._db = self._backend.db  # for code written before the dialect seam
            self._lock = self._backend.lock
        # Bumped whenever this connection changes a mailbox's stored events; with SQLite's
        # data_version (changed by any other connection's commit) it tells a runner whether the
        # events it decoded last time are still what the database holds.
        self._events_changes: dict[str, int] = {}  # mailbox ("" for all) → changes
        # Fencing (several instances): mailbox → (holder, token) this process holds. ``None``:
        # writes are not fenced (SQLite, and every command but ``run`` on PostgreSQL).
        self._fences: dict[str, tuple[str, int]] | None = None
        self.fenced_writes = 0  # writes refused because the lease was gone
        try:
            self._migrate()
        except BaseException:
            self._backend.close()
            raise
        self._key = self.secret("pseudonym")
        install_pseudonym_key(self._key)

    @property
    def backend(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self._backend.name

    def copy_in_memory(self) -> State:
        """A private in-memory copy, for dry runs that must not change anything."""
        copy = State(Path(":memory:"))
        if isinstance(self._backend, _SQLite):
            with self._backend.lock:
                self._backend.db.backup(copy._backend.db)  # type: ignore[union-attr]
        else:
            self.copy_into(copy)
        copy._key = copy.secret("pseudonym")  # the copy's own key was overwritten by the backup
        install_pseudonym_key(copy._key)
        return copy

    @classmethod
    def in_dir(cls, state_dir: Path) -> State:
        return cls(state_dir / "recruitmail.sqlite")

    @classmethod
    def open(cls, service: ServiceLike) -> State:
        """The configured state: ``service.state`` (PostgreSQL) when set, else the SQLite file in
        ``service.state_dir``."""
        url = getattr(service, "state", None)
        if url:
            # The state directory still keeps this machine's files (compiled templates, days-off
            # tables, directory members): made as the SQLite state would make it, else every
            # process on PostgreSQL compiled the templates afresh. Not a must: without it those
            # files cost their time again.
            with contextlib.suppress(OSError):
                Path(service.state_dir).mkdir(mode=0o700, parents=True, exist_ok=True)
            return cls(str(url), pool_size=max(2, min(int(service.workers), 16)))
        return cls.in_dir(service.state_dir)

    def close(self) -> None:
        self._backend.close()

    def _migrate(self) -> None:
        # One transaction per version; each reads the version again under the write lock (two
        # instances starting at once against one PostgreSQL: the second finds the work done).
        while True:
            with self.transaction() as db:
                version = self._backend.schema_version(db)
                if version > SCHEMA_VERSION:
                    raise ConfigError(
                        f"{self.path}: written by a newer recruitmail (schema {version} > {SCHEMA_VERSION}); upgrade"
                    )
                if version == SCHEMA_VERSION:
                    return
                for statement in _MIGRATIONS[version + 1].split(";"):
                    if statement.strip():
                        db.execute(self._backend.ddl(statement))
                self._backend.set_schema_version(db, version + 1)

    @contextmanager
    def transaction(self) -> Iterator[_Db]:
        """One atomic unit of work: committed on success, rolled back on any error."""
        with self._backend.transaction() as db:
            yield db

    def _read(self) -> contextlib.AbstractContextManager[_Db]:
        """A connection for reads outside a transaction."""
        return self._backend.read()

    def secret(self, name: str) -> bytes:
        """A random per-install secret, created on first use and kept in this database."""
        with self.transaction() as db:
            # Two processes creating it at once: the first one's value is everybody's.
            db.execute(
                "INSERT INTO secrets (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
                (name, secrets.token_bytes(32)),
            )
            row = db.execute("SELECT value FROM secrets WHERE name = ?", (name,)).fetchone()
            return bytes(row[0])

    def integrity_ok(self) -> bool:
        return self._backend.integrity_ok()

    # -- calendar ------------------------------------------------------------------------

    def cursor(self, mailbox: str, basis: str = "") -> str | None:
        """The mailbox's sync cursor, or ``None`` when there is none or it was taken under
        another ``basis`` (the rules that decided which events to keep): then a full sync reads
        the events that were left out again."""
        with self._read() as db:
            row = db.execute(
                "SELECT cursor, basis FROM cursors WHERE mailbox = ?", (mailbox,)
            ).fetchone()
        return row[0] if row and row[1] == basis else None

    def apply_sync(
        self,
        mailbox: str,
        events: tuple[Event, ...],
        removed: tuple[str, ...],
        cursor: str,
        full: bool,
        now: datetime,
        skipped: tuple[SkippedEvent, ...] = (),
        basis: str = "",
    ) -> None:
        """Merge one sync result and save its cursor, atomically (replays are harmless).

        Events left out (``skipped``) are remembered by a keyed digest of their id and a reason,
        for ``status``; their text is never stored.
        """
        with self.transaction() as db:
            self._fence(db, (mailbox,))
            if full:
                db.execute("DELETE FROM events WHERE mailbox = ?", (mailbox,))
                db.execute("DELETE FROM skipped_events WHERE mailbox = ?", (mailbox,))
            db.executemany(
                "DELETE FROM events WHERE mailbox = ? AND event_id = ?",
                [(mailbox, r) for r in removed],
            )
            if not full:
                db.executemany(
                    "DELETE FROM skipped_events WHERE mailbox = ? AND event_ref = ?",
                    [
                        (mailbox, self._event_ref(r))
                        for r in (*removed, *(e.event_id for e in events))
                    ],
                )
            db.executemany(
                "INSERT INTO skipped_events (mailbox, event_ref, reason, seen) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (mailbox, event_ref) DO UPDATE SET reason = excluded.reason, seen = excluded.seen",
                [(mailbox, self._event_ref(k.event_id), k.reason, _iso(now)) for k in skipped],
            )
            db.executemany(
                "INSERT INTO events (mailbox, event_id, data) VALUES (?, ?, ?) "
                "ON CONFLICT (mailbox, event_id) DO UPDATE SET data = excluded.data",
                [(mailbox, e.event_id, event_to_json(e)) for e in events],
            )
            db.execute(
                "INSERT INTO cursors (mailbox, cursor, synced_at, basis) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (mailbox) DO UPDATE SET cursor = excluded.cursor, "
                "synced_at = excluded.synced_at, basis = excluded.basis",
                (mailbox, cursor, _iso(now), basis),
            )
            if full or events or removed:
                self._changed(db, (mailbox,))
            crash_point("sync-before-commit")
        if full or events or removed:
            self._events_changed(mailbox)

    def _event_ref(self, event_id: str) -> str:
        return hmac.new(self._key, event_id.encode("utf-8", "replace"), hashlib.sha256).hexdigest()[
            :16
        ]

    def skipped_events(self, mailbox: str) -> dict[str, int]:
        """How many events of the mailbox's calendar are left out, by reason."""
        with self._read() as db:
            rows = db.execute(
                "SELECT reason, COUNT(*) FROM skipped_events WHERE mailbox = ? GROUP BY reason",
                (mailbox,),
            ).fetchall()
        return {r[0]: r[1] for r in rows}

    def drop_events(self, mailbox: str, event_ids: list[str]) -> None:
        """Forget stored events that are no longer needed (not interviews)."""
        with self.transaction() as db:
            self._fence(db, (mailbox,))
            db.executemany(
                "DELETE FROM events WHERE mailbox = ? AND event_id = ?",
                [(mailbox, e) for e in event_ids],
            )
            self._changed(db, (mailbox,))
        self._events_changed(mailbox)

    # -- what an administrator must see --------------------------------------------------

    def record_problem(
        self, mailbox: str, topic: str, message: str, permanent: bool, now: datetime
    ) -> None:
        """Remember a failing look-up or a held mail (``topic`` names the call or the mail)."""
        with self.transaction() as db:
            db.execute(
                "INSERT INTO problems (mailbox, topic, message, permanent, first_seen, last_seen) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (mailbox, topic) DO UPDATE SET "
                "message = excluded.message, permanent = excluded.permanent, "
                "last_seen = excluded.last_seen",
                (mailbox, topic, message, int(permanent), _iso(now), _iso(now)),
            )

    def clear_problem(self, mailbox: str, topic: str) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM problems WHERE mailbox = ? AND topic = ?", (mailbox, topic))

    def problems(self, mailbox: str) -> list[Problem]:
        with self._read() as db:
            rows = db.execute(
                "SELECT topic, message, permanent, first_seen, last_seen FROM problems "
                "WHERE mailbox = ? ORDER BY topic",
                (mailbox,),
            ).fetchall()
        return [
            Problem(
                r[0], r[1], bool(r[2]), datetime.fromisoformat(r[3]), datetime.fromisoformat(r[4])
            )
            for r in rows
        ]

    def hold_until(self, mailbox: str) -> float:
        """The wall-clock time (epoch seconds) before which the provider asked us not to call."""
        with self._read() as db:
            row = db.execute("SELECT until FROM holds WHERE mailbox = ?", (mailbox,)).fetchone()
        return float(row[0]) if row else 0.0

    def hold(self, mailbox: str, until: float) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT INTO holds (mailbox, until) VALUES (?, ?) "
                "ON CONFLICT (mailbox) DO UPDATE SET until = CASE "
                "WHEN excluded.until > holds.until THEN excluded.until ELSE holds.until END",
                (mailbox, until),
            )

    def forget_cursor(self, mailbox: str) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM cursors WHERE mailbox = ?", (mailbox,))

    def events_version(self, mailbox: str) -> tuple[int, int, int]:
        """Changes when what planning reads of ``mailbox`` may have changed (its stored events,
        ledger rows, candidates): a write through this object, or a commit by any other
        connection (another process or instance, e.g. ``close`` or ``forget``). One read."""
        foreign = self._backend.data_version(mailbox)
        with self._lock:
            return (foreign, self._events_changes.get("", 0), self._events_changes.get(mailbox, 0))

    def _changed(self, db: _Db, mailboxes: Iterable[str]) -> None:
        """Raise the change counters of ``mailboxes`` inside the caller's write transaction, so
        that the write and its mark are committed (or lost) together. In sorted order: two
        transactions raising the same rows take their locks in the same order."""
        db.executemany(
            "INSERT INTO mailbox_versions (mailbox, version) VALUES (?, 1) "
            "ON CONFLICT (mailbox) DO UPDATE SET version = mailbox_versions.version + 1",
            [(m,) for m in sorted(set(mailboxes))],
        )

    def _events_changed(self, mailbox: str) -> None:
        """Note a change of ``mailbox``'s stored events ("" for every mailbox's)."""
        with self._lock:
            self._events_changes[mailbox] = self._events_changes.get(mailbox, 0) + 1

    def events(self, mailbox: str) -> list[Event]:
        with self._read() as db:
            rows = db.execute("SELECT data FROM events WHERE mailbox = ?", (mailbox,)).fetchall()
        return [event_from_json(r[0]) for r in rows]

    def last_sync(self, mailbox: str) -> datetime | None:
        with self._read() as db:
            row = db.execute(
                "SELECT synced_at FROM cursors WHERE mailbox = ?", (mailbox,)
            ).fetchone()
        return datetime.fromisoformat(row[0]) if row else None

    # -- candidates ----------------------------------------------------------------------

    def contacts(self, mailbox: str) -> dict[str, datetime]:
        with self._read() as db:
            rows = db.execute(
                "SELECT address, last_contact FROM candidates WHERE mailbox = ? AND last_contact IS NOT NULL",
                (mailbox,),
            ).fetchall()
        return {a: datetime.fromisoformat(t) for a, t in rows}

    def closed(self, mailbox: str) -> frozenset[str]:
        with self._read() as db:
            rows = db.execute(
                "SELECT address FROM candidates WHERE mailbox = ? AND closed = 1", (mailbox,)
            ).fetchall()
        return frozenset(r[0] for r in rows)

    def record_contact(self, mailbox: str, address: str, when: datetime) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT INTO candidates (mailbox, address, last_contact) VALUES (?, ?, ?) "
                "ON CONFLICT (mailbox, address) DO UPDATE SET last_contact = CASE "
                "WHEN candidates.last_contact IS NULL "
                "OR excluded.last_contact > candidates.last_contact "
                "THEN excluded.last_contact ELSE candidates.last_contact END",
                (mailbox, address, _iso(when)),
            )
            self._changed(db, (mailbox,))

    def set_closed(self, mailbox: str | None, address: str, closed: bool) -> int:
        """Mark a candidate's process closed (or open again); returns the mailboxes touched."""
        with self.transaction() as db:
            boxes = (
                [mailbox]
                if mailbox
                else [
                    r[0]
                    for r in db.execute(
                        "SELECT DISTINCT mailbox FROM ledger WHERE candidate = ?", (address,)
                    )
                ]
            )
            for box in boxes:
                db.execute(
                    "INSERT INTO candidates (mailbox, address, closed) VALUES (?, ?, ?) "
                    "ON CONFLICT (mailbox, address) DO UPDATE SET closed = excluded.closed",
                    (box, address, int(closed)),
                )
            self._changed(db, boxes)
        return len(boxes)

    # -- languages -----------------------------------------------------------------------

    def stored_language(self, address: str) -> str | None:
        """The language set for ``address`` with ``recruitmail language``, if any."""
        with self._read() as db:
            row = db.execute(
                "SELECT language FROM languages WHERE mailbox = '*' AND address = ?", (address,)
            ).fetchone()
        return str(row[0]) if row else None

    def set_stored_language(self, address: str, language: str | None, now: datetime) -> None:
        """Set (or, with ``None``, remove) the language of ``address`` for every mailbox."""
        with self.transaction() as db:
            db.execute("DELETE FROM languages WHERE mailbox = '*' AND address = ?", (address,))
            if language is not None:
                db.execute(
                    "INSERT INTO languages (mailbox, address, language, reason, decided_at) "
                    "VALUES ('*', ?, ?, 'stored', ?)",
                    (address, language, _iso(now)),
                )

    def languages(self, mailbox: str) -> dict[str, tuple[str, str]]:
        """Address → (language, reason) as ``mailbox`` last decided them."""
        with self._read() as db:
            rows = db.execute(
                "SELECT address, language, reason FROM languages WHERE mailbox = ?", (mailbox,)
            ).fetchall()
        return {str(r[0]): (str(r[1]), str(r[2])) for r in rows}

    def remember_language(
        self, mailbox: str, address: str, language: str, reason: str, now: datetime
    ) -> None:
        with self.transaction() as db:
            db.execute(_REMEMBER_LANGUAGE, (mailbox, address, language, reason, _iso(now)))

    # -- ledger --------------------------------------------------------------------------

    def ledger(self, mailbox: str) -> list[LedgerRow]:
        with self._read() as db:
            rows = db.execute(
                f"SELECT {_LEDGER_COLUMNS} FROM ledger WHERE mailbox = ?", (mailbox,)
            ).fetchall()
        return [_row(r) for r in rows]

    def ledger_row(self, key: DraftKey) -> LedgerRow | None:
        with self._read() as db:
            row = db.execute(
                f"SELECT {_LEDGER_COLUMNS} FROM ledger WHERE key_id = ?", (key.id,)
            ).fetchone()
        return _row(row) if row else None

    def all_ledger(self) -> list[LedgerRow]:
        with self._read() as db:
            rows = db.execute(f"SELECT {_LEDGER_COLUMNS} FROM ledger ORDER BY due").fetchall()
        return [_row(r) for r in rows]

    def begin_attempt(
        self, key: DraftKey, due: datetime, context: dict[str, Any], now: datetime
    ) -> LedgerRow:
        """Phase one: the row says "attempting" (committed) before the mailbox is touched."""
        with self.transaction() as db:
            self._fence(db, (key.mailbox,))
            db.execute(_BEGIN_ATTEMPT, _attempt_values(key, due, context, now))
            self._changed(db, (key.mailbox,))
            # Read inside the transaction: what this call did, not what another did since.
            row = db.execute(
                f"SELECT {_LEDGER_COLUMNS} FROM ledger WHERE key_id = ?", (key.id,)
            ).fetchone()
        assert row is not None
        return _row(row)

    def begin_attempts(
        self,
        intents: list[tuple[DraftKey, datetime, dict[str, Any]]],
        now: datetime,
        *,
        languages: Sequence[tuple[str, str, str, str]] = (),
    ) -> frozenset[str]:
        """Phase one for a batch of mails, in one transaction: every row says "attempting"
        (committed) before the mailbox is touched for any of them. Returns the ids of the keys
        whose row this call created (no earlier pass had attempted them). ``languages``:
        (mailbox, address, language, reason) decided for the batch's candidates, stored in the
        same transaction as ``remember_language`` stores one."""
        if not intents:
            for mailbox, address, language, reason in languages:
                self.remember_language(mailbox, address, language, reason, now)
            return frozenset()
        fresh: set[str] = set()
        with self.transaction() as db:
            self._fence(db, {key.mailbox for key, _, _ in intents})
            if languages:
                db.executemany(
                    _REMEMBER_LANGUAGE,
                    [(m, a, lang, r, _iso(now)) for m, a, lang, r in languages],
                )
            for key, due, context in intents:
                # attempts is 1 only for the row this statement inserted: decided in the same
                # statement, so two instances racing for one key cannot both see it fresh.
                done = db.execute(
                    _BEGIN_ATTEMPT + " RETURNING attempts", _attempt_values(key, due, context, now)
                ).fetchall()
                if done and done[0][0] == 1:
                    fresh.add(key.id)
            self._changed(db, {key.mailbox for key, _, _ in intents})
        return frozenset(fresh)

    def abandon_attempts(self, keys: list[DraftKey]) -> None:
        """Forget intents this pass recorded for mails it never handed to the mailbox (the pass
        stopped first): no draft can carry their keys."""
        with self.transaction() as db:
            self._fence(db, {k.mailbox for k in keys})
            db.executemany(
                "DELETE FROM ledger WHERE key_id = ? AND state = 'attempting' AND attempts = 1",
                [(k.id,) for k in keys],
            )
            self._changed(db, {k.mailbox for k in keys})

    def mark_ambiguous(self, key: DraftKey, now: datetime) -> None:
        with self.transaction() as db:
            self._fence(db, (key.mailbox,))
            db.execute(
                "UPDATE ledger SET ambiguous = 1, last_attempt = ?, updated_at = ? WHERE key_id = ?",
                (_iso(now), _iso(now), key.id),
            )
            self._changed(db, (key.mailbox,))

    def finish_draft(
        self,
        key: DraftKey,
        ref: DraftRef,
        subject: str,
        folded: tuple[DraftKey, ...],
        context: dict[str, Any],
        now: datetime,
    ) -> None:
        """Phase two: the draft exists; record it and everything folded into it, atomically."""
        self.finish_drafts([Finished(key, ref, subject, folded, context)], now)

    def finish_drafts(
        self,
        finished: Sequence[Finished],
        now: datetime,
        *,
        skips: Sequence[SkipRecord] = (),
        ambiguous: Sequence[DraftKey] = (),
    ) -> None:
        """Phase two for a batch, in one transaction: the drafts that now exist (each with what
        it carries folded), the mails skipped for good and the creates whose outcome is unknown."""
        if not (finished or skips or ambiguous):
            return
        touched = (
            {d.key.mailbox for d in finished}
            | {k.key.mailbox for k in skips}
            | {k.mailbox for k in ambiguous}
        )
        with self.transaction() as db:
            self._fence(db, touched)
            for done in finished:
                db.execute(
                    "UPDATE ledger SET state = 'drafted', remote_id = ?, fingerprint = ?, "
                    "remote_state = ?, subject = ?, done_at = ?, context = ?, ambiguous = 0, "
                    "updated_at = ? WHERE key_id = ?",
                    (
                        done.ref.remote_id,
                        done.ref.fingerprint,
                        DraftState.PENDING.value,
                        done.subject,
                        _iso(now),
                        json.dumps(done.context),
                        _iso(now),
                        done.key.id,
                    ),
                )
                for other in done.folded:
                    self._insert_final(
                        db,
                        other,
                        LedgerState.FOLDED,
                        now,
                        now,
                        reason=f"folded into the {done.key.kind.value} mail",
                        folded_into=done.key.id,
                    )
            for skip in skips:
                self._skip(db, skip, now)
            db.executemany(
                "UPDATE ledger SET ambiguous = 1, last_attempt = ?, updated_at = ? WHERE key_id = ?",
                [(_iso(now), _iso(now), k.id) for k in ambiguous],
            )
            self._changed(db, touched)

    def record_skip(
        self,
        key: DraftKey,
        due: datetime,
        reason: str,
        now: datetime,
        folded: tuple[DraftKey, ...] = (),
    ) -> None:
        self.record_skips([SkipRecord(key, due, reason, folded)], now)

    def record_skips(self, skips: Sequence[SkipRecord], now: datetime) -> None:
        """Mails that will never be drafted (and what they carried folded), in one transaction."""
        if not skips:
            return
        with self.transaction() as db:
            self._fence(db, {skip.key.mailbox for skip in skips})
            for skip in skips:
                self._skip(db, skip, now)
            self._changed(db, {skip.key.mailbox for skip in skips})

    def _skip(self, db: _Db, skip: SkipRecord, now: datetime) -> None:
        for k in (skip.key, *skip.folded):
            self._insert_final(db, k, LedgerState.SKIPPED, skip.due, now, reason=skip.reason)
            db.execute(
                "UPDATE ledger SET state = 'skipped', reason = ?, updated_at = ? "
                "WHERE key_id = ? AND state = 'attempting'",
                (skip.reason, _iso(now), k.id),
            )

    def _insert_final(
        self,
        db: _Db,
        key: DraftKey,
        state: LedgerState,
        due: datetime,
        now: datetime,
        *,
        reason: str,
        folded_into: str | None = None,
    ) -> None:
        db.execute(
            "INSERT INTO ledger (key_id, mailbox, candidate, kind, occasion, state, reason, due, done_at, "
            "folded_into, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (key_id) DO NOTHING",
            (
                key.id,
                key.mailbox,
                key.candidate,
                key.kind.value,
                key.occasion,
                state.value,
                reason,
                _iso(due),
                _iso(now),
                folded_into,
                _iso(now),
            ),
        )

    def mark_obsolete(self, key: DraftKey, reason: str, now: datetime) -> None:
        with self.transaction() as db:
            self._fence(db, (key.mailbox,))
            db.execute(
                "UPDATE ledger SET state = 'obsolete', reason = ?, updated_at = ? WHERE key_id = ?",
                (reason, _iso(now), key.id),
            )
            self._changed(db, (key.mailbox,))

    def set_remote_state(self, key: DraftKey, remote_state: DraftState, now: datetime) -> None:
        with self.transaction() as db:
            self._fence(db, (key.mailbox,))
            db.execute(
                "UPDATE ledger SET remote_state = ?, updated_at = ? WHERE key_id = ?",
                (remote_state.value, _iso(now), key.id),
            )
            self._changed(db, (key.mailbox,))

    def forget(self, address: str) -> int:
        """Erase every trace of a candidate (GDPR): ledger rows, contact data, calendar copies.

        Our copies of calendar events naming the candidate are dropped too; returns the number of
        rows removed.
        """
        needle = f'"{address}"'
        with self.transaction() as db:
            removed = db.execute("DELETE FROM ledger WHERE candidate = ?", (address,)).rowcount
            removed += db.execute("DELETE FROM candidates WHERE address = ?", (address,)).rowcount
            removed += db.execute("DELETE FROM languages WHERE address = ?", (address,)).rowcount
            # Our copy of calendar events naming them goes too. The calendar itself is not ours to
            # change: an event that changes later is read again like any new one.
            removed += db.execute(
                "DELETE FROM events WHERE instr(lower(data), ?) > 0", (needle,)
            ).rowcount
            self._changed(db, (ALL_MAILBOXES,))
        self._events_changed("")
        self._backend.compact()
        return int(removed)

    # -- leases: several instances, one fleet --------------------------------------------
    #
    # Times are epoch seconds on the database's clock, so instances never compare their own
    # clocks. The fencing token of a mailbox only grows: each claim adds one, a release keeps it.

    def enable_fencing(self) -> None:
        """From now on every ledger and calendar write of a mailbox checks, in its own
        transaction, that this process still holds the mailbox's lease under the token it was
        given (``fence_with``); a write without it raises ``LeaseLost`` and changes nothing."""
        with self._lock:
            if self._fences is None:
                self._fences = {}

    def fence_with(self, mailbox: str, holder: str, token: int) -> None:
        """Writes for ``mailbox`` are fenced with ``holder`` and ``token`` (see ``claim``)."""
        with self._lock:
            if self._fences is not None:
                self._fences[mailbox] = (holder, token)

    def unfence(self, mailbox: str) -> None:
        with self._lock:
            if self._fences is not None:
                self._fences.pop(mailbox, None)

    def _fence(self, db: _Db, mailboxes: Iterable[str]) -> None:
        if self._fences is None:
            return
        for mailbox in mailboxes:
            with self._lock:
                held = self._fences.get(mailbox)
            # FOR SHARE: a claim of this lease (an UPDATE of the row) waits until this
            # transaction is over, so the token cannot change between the check and the commit.
            row = (
                db.execute(
                    "SELECT 1 FROM leases WHERE mailbox = ? AND holder = ? AND token = ? "
                    f"AND expires_at > {self._backend.now}{self._backend.share}",
                    (mailbox, held[0], held[1]),
                ).fetchone()
                if held is not None
                else None
            )
            if row is None:
                with self._lock:
                    self.fenced_writes += 1
                    if self._fences.get(mailbox) == held:
                        self._fences.pop(mailbox, None)
                raise LeaseLost(
                    f"mailbox {mailbox}: this instance no longer holds its lease; another "
                    "instance reconciles it"
                )

    def newer_schema(self) -> int | None:
        """The schema version when a newer recruitmail has upgraded the database since this one
        opened it (an instance must then step down); ``None`` otherwise."""
        with self._read() as db:
            version = self._backend.current_version(db)
        return version if version > SCHEMA_VERSION else None

    def database_time(self) -> float:
        """The database's clock, epoch seconds."""
        with self._read() as db:
            return float(db.execute(f"SELECT {self._backend.now}").fetchone()[0])

    def heartbeat(self, instance: str, host: str, pid: int, forget_after: float) -> float:
        """Say that ``instance`` is alive (and forget instances silent for ``forget_after``
        seconds); returns the database's time."""
        with self.transaction() as db:
            now = float(db.execute(f"SELECT {self._backend.now}").fetchone()[0])
            db.execute(
                "INSERT INTO instances (id, host, pid, started_at, last_seen) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET last_seen = excluded.last_seen",
                (instance, host, pid, now, now),
            )
            db.execute("DELETE FROM instances WHERE last_seen < ?", (now - forget_after,))
        return now

    def instances(self) -> list[Instance]:
        with self._read() as db:
            rows = db.execute(
                "SELECT id, host, pid, started_at, last_seen FROM instances ORDER BY started_at"
            ).fetchall()
        return [Instance(str(r[0]), str(r[1]), int(r[2]), float(r[3]), float(r[4])) for r in rows]

    def leases(self) -> list[Lease]:
        with self._read() as db:
            rows = db.execute(
                "SELECT mailbox, holder, token, acquired_at, renewed_at, expires_at FROM leases "
                "ORDER BY mailbox"
            ).fetchall()
        return [
            Lease(str(r[0]), str(r[1]), int(r[2]), float(r[3]), float(r[4]), float(r[5]))
            for r in rows
        ]

    def lease_counts(self) -> dict[str, int]:
        """Holder → how many unexpired leases it holds."""
        with self._read() as db:
            rows = db.execute(
                "SELECT holder, count(*) FROM leases WHERE holder <> '' "
                f"AND expires_at > {self._backend.now} GROUP BY holder"
            ).fetchall()
        return {str(r[0]): int(r[1]) for r in rows}

    def add_leases(self, mailboxes: Iterable[str]) -> None:
        """A lease row (held by nobody) for each mailbox that has none yet."""
        with self.transaction() as db:
            db.executemany(
                "INSERT INTO leases (mailbox) VALUES (?) ON CONFLICT (mailbox) DO NOTHING",
                [(m,) for m in mailboxes],
            )

    def renew(self, holder: str, ttl: float) -> dict[str, int]:
        """Extend every lease ``holder`` still holds by ``ttl`` seconds from now (one statement);
        returns mailbox → token of those it still holds. A lease another instance took is not
        among them."""
        with self.transaction() as db:
            rows = db.execute(
                f"UPDATE leases SET renewed_at = {self._backend.now}, "
                f"expires_at = {self._backend.now} + ? WHERE holder = ? RETURNING mailbox, token",
                (ttl, holder),
            ).fetchall()
        return {str(r[0]): int(r[1]) for r in rows}

    def claim(
        self,
        holder: str,
        wanted: Iterable[str],
        limit: int,
        ttl: float,
        now: datetime,
        *,
        exclusive: bool = False,
    ) -> dict[str, tuple[int, str]]:
        """Take up to ``limit`` of the ``wanted`` mailboxes whose lease is free or expired, each
        under its next fencing token, in one transaction; returns mailbox → (token, previous
        holder). Rows a concurrent claim is taking are skipped, not waited for.

        A mailbox taken from another holder (or given back by one) may have attempts that holder
        recorded and was about to hand to the mailbox: they are marked unclear at ``now``
        (``ambiguous``), so the
        executor looks them up only after ``service.lookup_grace_seconds`` and never creates
        one while the old holder's create could still land (docs/RELIABILITY.md).

        ``exclusive``: the caller is the only instance there can be (SQLite, under its lock):
        every lease is free to it, whatever its expiry, and nothing is marked."""
        wanted = set(wanted)
        if limit <= 0 or not wanted:
            return {}
        taken: dict[str, tuple[int, str]] = {}
        with self.transaction() as db:
            free = db.execute(
                "SELECT mailbox, holder FROM leases WHERE holder = '' OR "
                f"expires_at <= {self._backend.now} OR ?{self._backend.claim_lock}",
                (exclusive,),
            ).fetchall()
            candidates = [(str(m), str(h)) for m, h in free if m in wanted and h != holder]
            secrets.SystemRandom().shuffle(candidates)
            for mailbox, previous in candidates[:limit]:
                row = db.execute(
                    f"UPDATE leases SET holder = ?, token = token + 1, "
                    f"acquired_at = {self._backend.now}, renewed_at = {self._backend.now}, "
                    f"expires_at = {self._backend.now} + ? WHERE mailbox = ? AND holder = ? "
                    "RETURNING token",
                    (holder, ttl, mailbox, previous),
                ).fetchone()
                if row is None:
                    continue
                taken[mailbox] = (int(row[0]), previous)
                if not exclusive:
                    db.execute(
                        "UPDATE ledger SET ambiguous = 1, last_attempt = ?, updated_at = ? "
                        "WHERE mailbox = ? AND state = 'attempting'",
                        (_iso(now), _iso(now), mailbox),
                    )
            if not exclusive:
                self._changed(db, taken)
        return taken

    def release(self, holder: str, mailboxes: Iterable[str] | None = None) -> int:
        """Give leases back (all of ``holder``'s when ``mailboxes`` is ``None``): free at once
        for another instance, their tokens kept. Returns how many were released."""
        with self.transaction() as db:
            if mailboxes is None:
                cursor = db.execute(
                    f"UPDATE leases SET holder = '', expires_at = {self._backend.now} "
                    "WHERE holder = ?",
                    (holder,),
                )
                released = int(cursor.rowcount)
            else:
                released = 0
                for mailbox in mailboxes:
                    cursor = db.execute(
                        f"UPDATE leases SET holder = '', expires_at = {self._backend.now} "
                        "WHERE holder = ? AND mailbox = ?",
                        (holder, mailbox),
                    )
                    released += int(cursor.rowcount)
        return released

    def leave(self, instance: str) -> None:
        """``instance`` stops: its leases are released and it is no longer counted as live."""
        self.release(instance)
        with self.transaction() as db:
            db.execute("DELETE FROM instances WHERE id = ?", (instance,))

    # -- moving a state between databases ------------------------------------------------

    def table_digests(self) -> dict[str, tuple[int, str]]:
        """Per table: its row count and a digest of its rows, equal on every backend for the
        same content (rows in a canonical form, order-independent)."""
        digests: dict[str, tuple[int, str]] = {}
        with self._read() as db:
            for table, columns in _TABLES.items():
                rows = db.execute(f"SELECT {', '.join(columns)} FROM {table}").fetchall()
                lines = sorted(json.dumps([_canonical(v) for v in row]) for row in rows)
                digest = hashlib.sha256("\\n".join(lines).encode("utf-8")).hexdigest()
                digests[table] = (len(lines), digest)
        return digests

    def holds_data(self) -> bool:
        """Whether any table other than the install's secrets has a row."""
        with self._read() as db:
            return any(
                db.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchone() is not None
                for table in _TABLES
                if table != "secrets"
            )

    def copy_into(self, target: State) -> None:
        """Replace everything in ``target`` by this state's rows (secrets included: the
        pseudonym key travels, so ids in logs and skipped-event refs stay the same), in one
        transaction of the target."""
        unknown = self._backend.tables() - set(_TABLES) - _FLEET_TABLES
        if unknown:
            # A table this copy does not know would be left behind without a word.
            raise ConfigError(
                f"{self.path}: tables {', '.join(sorted(unknown))} are not known to the copy "
                "(daemon/state.py _TABLES); nothing was copied"
            )
        with self._read() as source:
            tables = {
                table: source.execute(f"SELECT {', '.join(columns)} FROM {table}").fetchall()
                for table, columns in _TABLES.items()
            }
        with target.transaction() as db:
            for table in _TABLES:
                db.execute(f"DELETE FROM {table}")
            for table, columns in _TABLES.items():
                if tables[table]:
                    db.executemany(
                        f"INSERT INTO {table} ({', '.join(columns)}) "
                        f"VALUES ({', '.join('?' * len(columns))})",
                        [tuple(row) for row in tables[table]],
                    )
            target._changed(db, (ALL_MAILBOXES,))
        target._key = target.secret("pseudonym")
        target._events_changed("")


_REMEMBER_LANGUAGE = (
    "INSERT INTO languages (mailbox, address, language, reason, decided_at) "
    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (mailbox, address) DO UPDATE SET "
    "language = excluded.language, reason = excluded.reason, "
    "decided_at = excluded.decided_at"
)
_BEGIN_ATTEMPT = (
    "INSERT INTO ledger (key_id, mailbox, candidate, kind, occasion, state, due, context, "
    "attempts, last_attempt, updated_at) VALUES (?, ?, ?, ?, ?, 'attempting', ?, ?, 1, ?, ?) "
    "ON CONFLICT (key_id) DO UPDATE SET attempts = ledger.attempts + 1, "
    "last_attempt = excluded.last_attempt, updated_at = excluded.updated_at "
    "WHERE ledger.state = 'attempting'"
)


def _attempt_values(
    key: DraftKey, due: datetime, context: dict[str, Any], now: datetime
) -> tuple[str, ...]:
    return (
        key.id,
        key.mailbox,
        key.candidate,
        key.kind.value,
        key.occasion,
        _iso(due),
        json.dumps(context),
        _iso(now),
        _iso(now),
    )


_LEDGER_COLUMNS = (
    "key_id, mailbox, candidate, kind, occasion, state, reason, due, done_at, remote_id, fingerprint, "
    "remote_state, folded_into, subject, context, attempts, last_attempt, ambiguous"
)


def _row(r: tuple[Any, ...]) -> LedgerRow:
    (
        _key_id,
        mailbox,
        candidate,
        kind,
        occasion,
        state,
        reason,
        due,
        done_at,
        remote_id,
        fingerprint,
        remote_state,
        folded_into,
        subject,
        context,
        attempts,
        last_attempt,
        ambiguous,
    ) = r
    key = DraftKey(mailbox, candidate, MailKind(kind), occasion)
    entry = LedgerEntry(
        key=key,
        state=LedgerState(state),
        due=datetime.fromisoformat(due),
        done_at=datetime.fromisoformat(done_at) if done_at else None,
        remote_state=DraftState(remote_state) if remote_state else None,
        context=json.loads(context or "{}"),
    )
    return LedgerRow(
        entry=entry,
        reason=reason,
        remote=DraftRef(remote_id, fingerprint or "") if remote_id else None,
        subject=subject,
        folded_into=folded_into,
        attempts=attempts,
        last_attempt=datetime.fromisoformat(last_attempt) if last_attempt else None,
        ambiguous=bool(ambiguous),
    )


def _iso(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("naive datetime reached the state database")
    return moment.astimezone(UTC).isoformat()


# -- event (de)serialisation -------------------------------------------------------------


def event_to_json(event: Event) -> str:
    def person(a: Attendee | None) -> dict[str, Any] | None:
        if a is None:
            return None
        return {
            "address": a.address,
            "name": a.name,
            "response": a.response.value,
            "is_resource": a.is_resource,
            "is_organizer": a.is_organizer,
            "optional": a.optional,
        }

    data: dict[str, Any] = {
        "event_id": event.event_id,
        "ical_uid": event.ical_uid,
        "recurrence_id": event.recurrence_id,
        "subject": event.subject,
        "start": event.start.isoformat(),
        "end": event.end.isoformat(),
        "body": event.body,
        "all_day": event.all_day,
        "cancelled": event.cancelled,
        "location": event.location,
        "online_url": event.online_url,
        "organizer": person(event.organizer),
        "attendees": [person(a) for a in event.attendees],
        "categories": list(event.categories),
        "updated": event.updated.isoformat() if event.updated else None,
        "zone": _zone_name(event.start),
    }
    if event.private:  # never stored by the executor; kept so that a copy says the same
        data["private"] = True
    return json.dumps(data, ensure_ascii=False)


def _zone_name(moment: datetime) -> str:
    key = getattr(moment.tzinfo, "key", None)
    return key if isinstance(key, str) else ""


def event_from_json(text: str) -> Event:
    d = json.loads(text)

    def person(p: dict[str, Any] | None) -> Attendee | None:
        if p is None:
            return None
        return Attendee(
            address=p["address"],
            name=p["name"],
            response=Response(p["response"]),
            is_resource=p["is_resource"],
            is_organizer=p["is_organizer"],
            optional=p["optional"],
        )

    start = datetime.fromisoformat(d["start"])
    end = datetime.fromisoformat(d["end"])
    if d.get("zone"):
        from zoneinfo import ZoneInfo

        zone = ZoneInfo(d["zone"])
        start, end = start.astimezone(zone), end.astimezone(zone)
    attendees = tuple(a for a in (person(p) for p in d["attendees"]) if a is not None)
    return Event(
        event_id=d["event_id"],
        ical_uid=d["ical_uid"],
        recurrence_id=d["recurrence_id"],
        subject=d["subject"],
        start=start,
        end=end,
        body=d["body"],
        all_day=d["all_day"],
        cancelled=d["cancelled"],
        location=d["location"],
        online_url=d["online_url"],
        organizer=person(d["organizer"]),
        attendees=attendees,
        categories=tuple(d["categories"]),
        updated=datetime.fromisoformat(d["updated"]) if d["updated"] else None,
        private=bool(d.get("private", False)),
    )


# -- the dialect seam --------------------------------------------------------------------

# Every table with every column, for copies between databases and their digests.
_TABLES: dict[str, tuple[str, ...]] = {
    "cursors": ("mailbox", "cursor", "synced_at", "basis"),
    "events": ("mailbox", "event_id", "data"),
    "ledger": (
        "key_id",
        "mailbox",
        "candidate",
        "kind",
        "occasion",
        "state",
        "reason",
        "due",
        "done_at",
        "remote_id",
        "fingerprint",
        "remote_state",
        "folded_into",
        "subject",
        "context",
        "attempts",
        "last_attempt",
        "ambiguous",
        "updated_at",
    ),
    "candidates": ("mailbox", "address", "last_contact", "closed"),
    "languages": ("mailbox", "address", "language", "reason", "decided_at"),
    "problems": ("mailbox", "topic", "message", "permanent", "first_seen", "last_seen"),
    "skipped_events": ("mailbox", "event_ref", "reason", "seen"),
    "holds": ("mailbox", "until"),
    "secrets": ("name", "value"),
}


def _canonical(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return {"bytes": bytes(value).hex()}
    if isinstance(value, float):
        return {"float": value.hex()}
    return value


class _Db(Protocol):
    """What a statement needs of a connection (``sqlite3.Connection`` is one)."""

    def execute(self, sql: str, parameters: Sequence[Any] = ..., /) -> Any: ...

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> Any: ...


class ServiceLike(Protocol):
    """The part of ``settings.service`` that says where the state lives."""

    @property
    def state_dir(self) -> Path: ...

    @property
    def workers(self) -> int: ...


def is_postgresql_url(value: str) -> bool:
    return value.startswith(("postgresql://", "postgres://"))


# SQLite's primary result codes of a database that cannot answer now: busy or locked by another
# connection, an I/O error, the disk full.
_SQLITE_FOR_NOW = frozenset(
    (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_FULL)
)


class _SQLite:
    """One SQLite file, one connection shared by the threads under a lock; writes start with
    ``BEGIN IMMEDIATE`` (the write lock is taken first, so writers never deadlock)."""

    name = "sqlite"
    # The database's clock in epoch seconds; row locks are the whole file's (BEGIN IMMEDIATE).
    now = "((julianday('now') - 2440587.5) * 86400.0)"
    share = ""
    claim_lock = ""

    def __init__(self, path: Path) -> None:
        self.where = path
        try:
            if str(path) != ":memory:":
                path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            if str(path) != ":memory:" and not path.exists():
                os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
            self.db = sqlite3.connect(
                path, isolation_level=None, check_same_thread=False, timeout=30
            )
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(
                f"{path}: cannot open the state database ({exc}); check service.state_dir"
            ) from None
        self.lock = threading.RLock()
        self.db.execute("PRAGMA journal_mode=WAL")
        # NORMAL is crash-safe in WAL mode; after a power loss the last commit may be missing,
        # which two-phase creation tolerates (the next pass finds the draft by its key).
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA foreign_keys=ON")

    @contextmanager
    def read(self) -> Iterator[_Db]:
        with self._answering(), self.lock:
            yield self.db

    @contextmanager
    def transaction(self) -> Iterator[_Db]:
        with self._answering(), self.lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
            except BaseException:
                if self.db.in_transaction:
                    self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")

    @contextmanager
    def _answering(self) -> Iterator[None]:
        """The file locked by another process for longer than the 30 s wait, the disk full or
        failing: ``TransientError`` (the pass fails and the next one tries again). Any other
        error (a statement SQLite does not understand) is a bug and stays what it is."""
        try:
            yield
        except sqlite3.OperationalError as exc:
            if getattr(exc, "sqlite_errorcode", 0) & 0xFF not in _SQLITE_FOR_NOW:
                raise
            raise TransientError(f"{self.where}: the state database failed ({exc})") from exc

    def schema_version(self, db: _Db) -> int:
        return int(db.execute("PRAGMA user_version").fetchone()[0])

    def set_schema_version(self, db: _Db, version: int) -> None:
        db.execute(f"PRAGMA user_version = {int(version)}")

    def current_version(self, db: _Db) -> int:
        return int(db.execute("PRAGMA user_version").fetchone()[0])

    def ddl(self, statement: str) -> str:
        return statement

    def tables(self) -> set[str]:
        with self.lock:
            rows = self.db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite%'"
            ).fetchall()
        return {str(r[0]) for r in rows}

    def data_version(self, mailbox: str) -> int:
        """Changes with any other connection's commit."""
        with self.lock:
            return int(self.db.execute("PRAGMA data_version").fetchone()[0])

    def compact(self) -> None:
        """Rewrite the file so that deleted rows leave no trace in it."""
        with self.lock:
            self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self.db.execute("VACUUM")

    def integrity_ok(self) -> bool:
        with self.lock:
            return bool(self.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok")

    def close(self) -> None:
        with self.lock:
            self.db.close()


@functools.lru_cache(maxsize=512)
def _postgresql_sql(statement: str) -> str:
    """The statement in PostgreSQL's words: ``%s`` placeholders, ``strpos`` for ``instr``
    (same arguments in the same order). No statement of this module has a ``?`` or a ``%``
    inside a string literal."""
    return statement.replace("%", "%%").replace("?", "%s").replace("instr(", "strpos(")


# Schema types in PostgreSQL's words. Text compares byte by byte, as SQLite's BINARY does (ISO
# times compare as times whatever the database's locale); REAL is SQLite's 8-byte float.
_POSTGRESQL_TYPES = (
    (" TEXT", ' TEXT COLLATE "C"'),
    (" BLOB", " BYTEA"),
    (" REAL", " DOUBLE PRECISION"),
)

# pg_advisory_xact_lock key of the schema migration ("recruitm" in ASCII).
_MIGRATION_LOCK = 0x72656372_7569746D


class _PostgresConnection:
    """A psycopg connection that takes this module's statements (``?`` placeholders)."""

    def __init__(self, connection: Any) -> None:
        self._connection = connection

    def execute(self, sql: str, parameters: Sequence[Any] = ()) -> Any:
        return self._connection.execute(_postgresql_sql(sql), tuple(parameters))

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]]) -> Any:
        cursor = self._connection.cursor()
        cursor.executemany(_postgresql_sql(sql), [tuple(p) for p in parameters])
        return cursor


class _PostgreSQL:
    """A PostgreSQL database through a psycopg connection pool: reads in autocommit, writes in
    ``BEGIN`` … ``COMMIT`` at READ COMMITTED (see the module's docstring for why)."""

    name = "postgresql"
    now = "extract(epoch from clock_timestamp())::float8"
    share = " FOR SHARE"
    # Claims by several instances at once: each takes the rows no other claim is taking.
    claim_lock = " FOR UPDATE SKIP LOCKED"

    def __init__(self, url: str, pool_size: int) -> None:
        conninfo, password, self.where = postgresql_conninfo(url)
        try:
            import psycopg
            from psycopg_pool import ConnectionPool
        except ImportError:
            raise ConfigError(
                "service.state is a PostgreSQL URL, but psycopg is not installed; "
                "install recruitmail[postgresql]"
            ) from None
        kwargs: dict[str, Any] = {"autocommit": True}
        if password is not None:
            kwargs["password"] = password
        try:
            # One direct connection first: a wrong host, database or password is reported with
            # the server's own words, not as a pool that timed out.
            psycopg.connect(conninfo, connect_timeout=15, **kwargs).close()
        except psycopg.Error as exc:
            raise ConfigError(
                f"{self.where}: cannot open the state database ({str(exc).strip()}); "
                "check service.state"
            ) from None
        self.pool = ConnectionPool(
            conninfo,
            kwargs=kwargs,
            min_size=1,
            max_size=max(1, pool_size),
            name="recruitmail-state",
            open=True,
        )

    @contextmanager
    def read(self) -> Iterator[_Db]:
        with self._answering(), self.pool.connection() as connection:
            yield _PostgresConnection(connection)

    @contextmanager
    def transaction(self) -> Iterator[_Db]:
        with self._answering(), self.pool.connection() as connection, connection.transaction():
            yield _PostgresConnection(connection)

    @contextmanager
    def _answering(self) -> Iterator[None]:
        """The server out of reach, a connection lost, no connection free in time, a deadlock
        or a lock not granted: ``TransientError`` (the pass fails and the next one tries again;
        a write that failed left nothing, a commit whose answer was lost is read back then)."""
        import psycopg

        try:
            yield
        except psycopg.OperationalError as exc:
            first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise TransientError(
                f"{self.where}: the state database did not answer ({first_line[:200]})"
            ) from exc

    def schema_version(self, db: _Db) -> int:
        # Serialises instances migrating at once; released with the transaction.
        db.execute("SELECT pg_advisory_xact_lock(?)", (_MIGRATION_LOCK,))
        db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = db.execute("SELECT max(version) FROM schema_version").fetchone()
        return int(row[0] or 0)

    def current_version(self, db: _Db) -> int:
        row = db.execute("SELECT max(version) FROM schema_version").fetchone()
        return int(row[0] or 0)

    def set_schema_version(self, db: _Db, version: int) -> None:
        db.execute("DELETE FROM schema_version")
        db.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))

    def ddl(self, statement: str) -> str:
        for sqlite_type, postgresql_type in _POSTGRESQL_TYPES:
            statement = statement.replace(sqlite_type, postgresql_type)
        return statement

    def tables(self) -> set[str]:
        with self.read() as db:
            rows = db.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() "
                "AND tablename <> 'schema_version'"
            ).fetchall()
        return {str(r[0]) for r in rows}

    def data_version(self, mailbox: str) -> int:
        """Changes with every commit, by any connection, that wrote the mailbox's stored events,
        ledger rows or candidates (or any mailbox's: ``*``): the sum of their change counters,
        which only grow, raised in the same transaction as the write."""
        with self.read() as db:
            row = db.execute(
                "SELECT coalesce(sum(version), 0) FROM mailbox_versions WHERE mailbox IN (?, ?)",
                (mailbox, ALL_MAILBOXES),
            ).fetchone()
        return int(row[0])

    def compact(self) -> None:
        """Rewrite the tables a candidate's rows were erased from (``VACUUM FULL``), so that no
        dead row keeps them; PostgreSQL's WAL and backups keep them until they are recycled."""
        with self.read() as db:
            db.execute("VACUUM FULL ledger, candidates, events")

    def integrity_ok(self) -> bool:
        """PostgreSQL checks its own pages; this checks that the schema is there and readable."""
        with self.read() as db:
            row = db.execute("SELECT max(version) FROM schema_version").fetchone()
            return bool(row and row[0] == SCHEMA_VERSION)

    def close(self) -> None:
        self.pool.close()


def postgresql_conninfo(url: str) -> tuple[str, str | None, str]:
    """(the URL for libpq without the password reference, the password read from its reference
    or ``None``, the URL to show). A password written in the URL itself is refused."""
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    parts = urlsplit(url)
    shown = urlunsplit(parts._replace(query=""))
    if parts.password is not None:
        raise ConfigError(
            f"service.state: {shown.replace(':' + parts.password + '@', ':…@')} holds a "
            "password; give a reference instead: ?password=credential:NAME, file:/path or env:NAME"
        )
    query = parse_qsl(parts.query, keep_blank_values=True)
    references = [value for key, value in query if key == "password"]
    password = load_secret(references[-1], "service.state password") if references else None
    kept = urlencode([(key, value) for key, value in query if key != "password"])
    return urlunsplit(parts._replace(query=kept)), password, shown
