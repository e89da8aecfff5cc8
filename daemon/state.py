"""The state database (SQLite, WAL, mode 0600): calendar snapshots, sync cursors, the ledger.

All SQL of the project lives in this module, so that another engine can replace it in one place.
Every write happens in an explicit transaction; the ledger row for a key is the single source of
truth for "was this mail drafted".
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from recruitmail.daemon.faults import crash_point
from recruitmail.daemon.planner import LedgerEntry, LedgerState

from recruitmail.contracts.errors import ConfigError
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

SCHEMA_VERSION = 2

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
}


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
class Problem:
    """Something an administrator must know about one mailbox (shown by ``status``)."""

    topic: str  # the call or the mail, e.g. "last contact" or "template thank_you/sv"
    message: str
    permanent: bool
    first_seen: datetime
    last_seen: datetime


class State:
    """One SQLite database holding every mailbox's state."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            if str(path) != ":memory:":
                path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            if str(path) != ":memory:" and not path.exists():
                os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
            self._db = sqlite3.connect(
                path, isolation_level=None, check_same_thread=False, timeout=30
            )
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(
                f"{path}: cannot open the state database ({exc}); check service.state_dir"
            ) from None
        self._lock = threading.RLock()
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL is crash-safe in WAL mode; after a power loss the last commit may be missing,
        # which two-phase creation tolerates (the next pass finds the draft by its key).
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._migrate()
        self._key = self.secret("pseudonym")
        install_pseudonym_key(self._key)

    def copy_in_memory(self) -> State:
        """A private in-memory copy, for dry runs that must not change anything."""
        copy = State(Path(":memory:"))
        with self._lock:
            self._db.backup(copy._db)
        copy._key = copy.secret("pseudonym")  # the copy's own key was overwritten by the backup
        install_pseudonym_key(copy._key)
        return copy

    @classmethod
    def in_dir(cls, state_dir: Path) -> State:
        return cls(state_dir / "recruitmail.sqlite")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise ConfigError(
                f"{self.path}: written by a newer recruitmail (schema {version} > {SCHEMA_VERSION}); upgrade"
            )
        for target in range(version + 1, SCHEMA_VERSION + 1):
            # executescript() would commit on its own; run the statements inside our transaction.
            with self.transaction() as db:
                for statement in _MIGRATIONS[target].split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute(f"PRAGMA user_version = {target}")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic unit of work: committed on success, rolled back on any error."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def secret(self, name: str) -> bytes:
        """A random per-install secret, created on first use and kept in this database."""
        with self.transaction() as db:
            row = db.execute("SELECT value FROM secrets WHERE name = ?", (name,)).fetchone()
            if row is not None:
                return bytes(row[0])
            value = secrets.token_bytes(32)
            db.execute("INSERT INTO secrets (name, value) VALUES (?, ?)", (name, value))
            return value

    def integrity_ok(self) -> bool:
        with self._lock:
            return bool(self._db.execute("PRAGMA integrity_check").fetchone()[0] == "ok")

    # -- calendar ------------------------------------------------------------------------

    def cursor(self, mailbox: str, basis: str = "") -> str | None:
        """The mailbox's sync cursor, or ``None`` when there is none or it was taken under
        another ``basis`` (the rules that decided which events to keep): then a full sync reads
        the events that were left out again."""
        with self._lock:
            row = self._db.execute(
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
            crash_point("sync-before-commit")

    def _event_ref(self, event_id: str) -> str:
        return hmac.new(self._key, event_id.encode("utf-8", "replace"), hashlib.sha256).hexdigest()[
            :16
        ]

    def skipped_events(self, mailbox: str) -> dict[str, int]:
        """How many events of the mailbox's calendar are left out, by reason."""
        with self._lock:
            rows = self._db.execute(
                "SELECT reason, COUNT(*) FROM skipped_events WHERE mailbox = ? GROUP BY reason",
                (mailbox,),
            ).fetchall()
        return {r[0]: r[1] for r in rows}

    def drop_events(self, mailbox: str, event_ids: list[str]) -> None:
        """Forget stored events that are no longer needed (not interviews)."""
        with self.transaction() as db:
            db.executemany(
                "DELETE FROM events WHERE mailbox = ? AND event_id = ?",
                [(mailbox, e) for e in event_ids],
            )

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
        with self._lock:
            rows = self._db.execute(
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
        with self._lock:
            row = self._db.execute(
                "SELECT until FROM holds WHERE mailbox = ?", (mailbox,)
            ).fetchone()
        return float(row[0]) if row else 0.0

    def hold(self, mailbox: str, until: float) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT INTO holds (mailbox, until) VALUES (?, ?) "
                "ON CONFLICT (mailbox) DO UPDATE SET until = MAX(until, excluded.until)",
                (mailbox, until),
            )

    def forget_cursor(self, mailbox: str) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM cursors WHERE mailbox = ?", (mailbox,))

    def events(self, mailbox: str) -> list[Event]:
        with self._lock:
            rows = self._db.execute(
                "SELECT data FROM events WHERE mailbox = ?", (mailbox,)
            ).fetchall()
        return [event_from_json(r[0]) for r in rows]

    def last_sync(self, mailbox: str) -> datetime | None:
        with self._lock:
            row = self._db.execute(
                "SELECT synced_at FROM cursors WHERE mailbox = ?", (mailbox,)
            ).fetchone()
        return datetime.fromisoformat(row[0]) if row else None

    # -- candidates ----------------------------------------------------------------------

    def contacts(self, mailbox: str) -> dict[str, datetime]:
        with self._lock:
            rows = self._db.execute(
                "SELECT address, last_contact FROM candidates WHERE mailbox = ? AND last_contact IS NOT NULL",
                (mailbox,),
            ).fetchall()
        return {a: datetime.fromisoformat(t) for a, t in rows}

    def closed(self, mailbox: str) -> frozenset[str]:
        with self._lock:
            rows = self._db.execute(
                "SELECT address FROM candidates WHERE mailbox = ? AND closed = 1", (mailbox,)
            ).fetchall()
        return frozenset(r[0] for r in rows)

    def record_contact(self, mailbox: str, address: str, when: datetime) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT INTO candidates (mailbox, address, last_contact) VALUES (?, ?, ?) "
                "ON CONFLICT (mailbox, address) DO UPDATE SET last_contact = "
                "max(coalesce(last_contact, ''), excluded.last_contact)",
                (mailbox, address, _iso(when)),
            )

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
        return len(boxes)

    # -- ledger --------------------------------------------------------------------------

    def ledger(self, mailbox: str) -> list[LedgerRow]:
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_LEDGER_COLUMNS} FROM ledger WHERE mailbox = ?", (mailbox,)
            ).fetchall()
        return [_row(r) for r in rows]

    def ledger_row(self, key: DraftKey) -> LedgerRow | None:
        with self._lock:
            row = self._db.execute(
                f"SELECT {_LEDGER_COLUMNS} FROM ledger WHERE key_id = ?", (key.id,)
            ).fetchone()
        return _row(row) if row else None

    def all_ledger(self) -> list[LedgerRow]:
        with self._lock:
            rows = self._db.execute(f"SELECT {_LEDGER_COLUMNS} FROM ledger ORDER BY due").fetchall()
        return [_row(r) for r in rows]

    def begin_attempt(
        self, key: DraftKey, due: datetime, context: dict[str, Any], now: datetime
    ) -> LedgerRow:
        """Phase one: the row says "attempting" (committed) before the mailbox is touched."""
        with self.transaction() as db:
            db.execute(
                "INSERT INTO ledger (key_id, mailbox, candidate, kind, occasion, state, due, context, "
                "attempts, last_attempt, updated_at) VALUES (?, ?, ?, ?, ?, 'attempting', ?, ?, 1, ?, ?) "
                "ON CONFLICT (key_id) DO UPDATE SET attempts = attempts + 1, "
                "last_attempt = excluded.last_attempt, updated_at = excluded.updated_at "
                "WHERE state = 'attempting'",
                (
                    key.id,
                    key.mailbox,
                    key.candidate,
                    key.kind.value,
                    key.occasion,
                    _iso(due),
                    json.dumps(context),
                    _iso(now),
                    _iso(now),
                ),
            )
        row = self.ledger_row(key)
        assert row is not None
        return row

    def mark_ambiguous(self, key: DraftKey, now: datetime) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE ledger SET ambiguous = 1, last_attempt = ?, updated_at = ? WHERE key_id = ?",
                (_iso(now), _iso(now), key.id),
            )

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
        with self.transaction() as db:
            db.execute(
                "UPDATE ledger SET state = 'drafted', remote_id = ?, fingerprint = ?, remote_state = ?, "
                "subject = ?, done_at = ?, context = ?, ambiguous = 0, updated_at = ? WHERE key_id = ?",
                (
                    ref.remote_id,
                    ref.fingerprint,
                    DraftState.PENDING.value,
                    subject,
                    _iso(now),
                    json.dumps(context),
                    _iso(now),
                    key.id,
                ),
            )
            for other in folded:
                self._insert_final(
                    db,
                    other,
                    LedgerState.FOLDED,
                    now,
                    now,
                    reason=f"folded into the {key.kind.value} mail",
                    folded_into=key.id,
                )

    def record_skip(
        self,
        key: DraftKey,
        due: datetime,
        reason: str,
        now: datetime,
        folded: tuple[DraftKey, ...] = (),
    ) -> None:
        with self.transaction() as db:
            for k in (key, *folded):
                self._insert_final(db, k, LedgerState.SKIPPED, due, now, reason=reason)
                db.execute(
                    "UPDATE ledger SET state = 'skipped', reason = ?, updated_at = ? "
                    "WHERE key_id = ? AND state = 'attempting'",
                    (reason, _iso(now), k.id),
                )

    def _insert_final(
        self,
        db: sqlite3.Connection,
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
            db.execute(
                "UPDATE ledger SET state = 'obsolete', reason = ?, updated_at = ? WHERE key_id = ?",
                (reason, _iso(now), key.id),
            )

    def set_remote_state(self, key: DraftKey, remote_state: DraftState, now: datetime) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE ledger SET remote_state = ?, updated_at = ? WHERE key_id = ?",
                (remote_state.value, _iso(now), key.id),
            )

    def forget(self, address: str) -> int:
        """Erase every trace of a candidate (GDPR): ledger rows, contact data, calendar copies.

        Our copies of calendar events naming the candidate are dropped too; returns the number of
        rows removed.
        """
        needle = f'"{address}"'
        with self.transaction() as db:
            removed = db.execute("DELETE FROM ledger WHERE candidate = ?", (address,)).rowcount
            removed += db.execute("DELETE FROM candidates WHERE address = ?", (address,)).rowcount
            # Our copy of calendar events naming them goes too. The calendar itself is not ours to
            # change: an event that changes later is read again like any new one.
            removed += db.execute(
                "DELETE FROM events WHERE instr(lower(data), ?) > 0", (needle,)
            ).rowcount
        with self._lock:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._db.execute("VACUUM")
        return int(removed)


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

    return json.dumps(
        {
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
        },
        ensure_ascii=False,
    )


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
    )
