"""A tiny pure simulator of reconcile passes: the real planner plus an in-memory ledger.

``Sim.poll(events, now)`` does what ``MailboxRunner.reconcile`` does, minus I/O: events go through
the state database's (de)serialisation and ``recognise``; drafts whose interview moved have their
mailbox state refreshed; ``plan`` decides; the plan is applied to the ledger the way the executor
and ``State`` apply it (skips recorded, obsolete marks, the last-contact check before a draft,
drafted rows with ``done_at=now``, folded rows). The recruiter's hand is modelled by ``send`` (a
draft leaves Drafts for Sent) and ``write`` (a mail written by hand). Nothing here is patched.
"""

from __future__ import annotations

import copy
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from recruitmail.contracts.models import Attendee, DraftState, Event, MailKind, Period, Response
from recruitmail.daemon.interviews import Interview, Rejection, recognise
from recruitmail.daemon.planner import (
    LedgerEntry,
    LedgerState,
    Plan,
    PlannedMail,
    Snapshot,
    entries_needing_state,
    plan,
)
from recruitmail.daemon.settings import Settings
from recruitmail.daemon.state import event_from_json, event_to_json
from recruitmail.daemon.workdays import WorkCalendar
from tests.scenario import two_weeks
from tests.scenario.spec import STOCKHOLM

RECRUITER = two_weeks.RECRUITER.address
PANEL = two_weeks.PANEL.address
ROOM = two_weeks.ROOM.address

_DUMMY_CONNECTORS = '\n[mailboxes.source]\ntype = "ics"\npath = "x"\n\n[mailboxes.sink]\ntype = "maildir"\npath = "y"\n'


def make_settings(
    overrides: dict[str, Any] | None = None, mailbox: dict[str, Any] | None = None
) -> Settings:
    """The reference scenario's configuration, with top-level sections merged from ``overrides``
    (e.g. ``{"touchpoints": {"weekend_greeting": {"enabled": False}}}``) and the one mailbox's
    keys replaced from ``mailbox`` (e.g. ``{"vacations": []}``)."""
    data = tomllib.loads(
        two_weeks.CONFIG.replace("{state_dir}", "/nonexistent") + _DUMMY_CONNECTORS
    )
    _merge(data, copy.deepcopy(overrides or {}))
    data["mailboxes"][0].update(copy.deepcopy(mailbox or {}))
    return Settings(**data)


def _merge(into: dict[str, Any], extra: dict[str, Any]) -> None:
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(into.get(k), dict):
            _merge(into[k], v)
        else:
            into[k] = v


def at(day: date, hhmm: str) -> datetime:
    """A Stockholm wall-clock time (the recruiter's zone in every test)."""
    hours, minutes = (int(p) for p in hhmm.split(":"))
    return datetime(day.year, day.month, day.day, hours, minutes, tzinfo=STOCKHOLM)


def person(
    address: str, name: str = "", response: Response = Response.ACCEPTED, **extra: Any
) -> Attendee:
    return Attendee(address=address, name=name, response=response, **extra)


def interview(
    uid: str,
    candidate: str | Attendee | None,
    start: datetime,
    minutes: int = 60,
    *,
    subject: str = "Intervju",
    attendees: tuple[Attendee, ...] | None = None,
    organizer: Attendee | None = None,
    **extra: Any,
) -> Event:
    """An interview the recruiter organises with the panel, a room and ``candidate``."""
    if attendees is None:
        who = candidate if isinstance(candidate, Attendee) else person(candidate or "", "")
        attendees = (
            person(RECRUITER, "Lisa Ek"),
            person(PANEL, "Erik Holm"),
            person(ROOM, "Rum", is_resource=True),
            *((who,) if candidate else ()),
        )
    return Event(
        event_id=uid,
        ical_uid=uid,
        subject=subject,
        start=start,
        end=start + timedelta(minutes=minutes),
        organizer=organizer or Attendee(RECRUITER, "Lisa Ek", Response.ACCEPTED, is_organizer=True),
        attendees=attendees,
        **extra,
    )


def moved(event: Event, start: datetime) -> Event:
    """The same event (same iCalUID) at another time, keeping its length."""
    return replace(event, start=start, end=start + (event.end - event.start))


@dataclass(frozen=True)
class Done:
    """A mail the simulator drafted: key, when, and what it carried."""

    mail: PlannedMail
    at: datetime

    @property
    def kind(self) -> str:
        return self.mail.kind.value


@dataclass
class Sim:
    """One mailbox over time: the ledger and what the mailbox holds, as the executor would leave them."""

    settings: Settings = field(default_factory=lambda: make_settings())
    absences: tuple[Period, ...] = ()
    closed: frozenset[str] = frozenset()
    ledger: dict[str, LedgerEntry] = field(default_factory=dict)
    drafted: list[Done] = field(default_factory=list)
    sent: set[str] = field(default_factory=set)  # key ids the recruiter sent
    deleted: set[str] = field(default_factory=set)  # key ids the recruiter deleted unsent
    outbox: dict[str, datetime] = field(default_factory=dict)  # candidate -> last mail in Sent
    contacts: dict[str, datetime] = field(default_factory=dict)  # what the state learnt of them

    def __post_init__(self) -> None:
        self._seen: dict[int, tuple[Event, list[Interview]]] = {}
        self.box = self.settings.mailboxes[0]
        self.calendar = WorkCalendar(
            self.settings.company.country, STOCKHOLM, self.settings.company.closure_days
        )
        # Configured vacations become absences exactly as MailboxRunner.absences makes them.
        configured = tuple(
            Period(
                self.calendar.at(v.start, time(0)),
                self.calendar.at(v.end + timedelta(days=1), time(0)),
            )
            for v in self.box.vacations
        )
        self.absences = configured + tuple(p for p in self.absences if p not in configured)

    # -- the recruiter's hand ------------------------------------------------------------

    def send(self, candidate: str, when: datetime) -> None:
        """The recruiter sends the newest live draft addressed to ``candidate``."""
        mine = [
            d
            for d in self.drafted
            if d.mail.candidate == candidate
            and self.ledger[d.mail.key.id].state is LedgerState.DRAFTED
            and d.mail.key.id not in self.sent
        ]
        newest = max(mine, key=lambda d: d.at)
        self.sent.add(newest.mail.key.id)
        self.write(candidate, when)

    def write(self, candidate: str, when: datetime) -> None:
        """A mail to ``candidate`` lands in Sent at ``when``."""
        self.outbox[candidate] = max(when, self.outbox.get(candidate, when))

    # -- one pass ------------------------------------------------------------------------

    def snapshot(self, events: Iterable[Event]) -> Snapshot:
        interviews: list[Interview] = []
        for event in events:
            seen = self._seen.get(id(event))
            if seen is None or seen[0] is not event:  # recognising is pure: once per event object
                # Through the state database's serialisation, as the executor reads events back.
                found = recognise(event_from_json(event_to_json(event)), self.box, self.settings)
                seen = self._seen[id(event)] = (
                    event,
                    [] if isinstance(found, Rejection) else found,
                )
            interviews.extend(seen[1])
        return Snapshot(
            mailbox=self.box,
            interviews=tuple(interviews),
            ledger=tuple(self.ledger.values()),
            last_contact=dict(self.contacts),
            absences=self.absences,
            closed=self.closed,
        )

    def poll(self, events: Iterable[Event], now: datetime) -> Plan:
        """One reconcile pass at ``now`` over the calendar ``events``; returns the plan it carried out."""
        now = now.astimezone(UTC)  # the CLI and the scheduler hand the planner a fixed-offset clock
        events = tuple(events)
        for entry in entries_needing_state(self.snapshot(events), now):
            remote = (
                DraftState.SENT
                if entry.key.id in self.sent
                else DraftState.DELETED
                if entry.key.id in self.deleted
                else DraftState.PENDING
            )
            self.ledger[entry.key.id] = replace(entry, remote_state=remote)
        decided = plan(self.snapshot(events), now, self.settings, self.calendar)
        for skip in decided.skips:
            self._final(skip.key.id, LedgerEntry(skip.key, LedgerState.SKIPPED, skip.due, now))
        for gone in decided.obsolete:
            self.ledger[gone.entry.key.id] = replace(
                self.ledger[gone.entry.key.id], state=LedgerState.OBSOLETE
            )
        for mail in decided.drafts:
            self._draft(mail, now)
        return decided

    def _draft(self, mail: PlannedMail, now: datetime) -> None:
        if mail.no_contact_since is not None:
            contact = self.outbox.get(mail.candidate)
            if contact is not None and contact > mail.no_contact_since:
                self.contacts[mail.candidate] = max(
                    contact, self.contacts.get(mail.candidate, contact)
                )
                if mail.kind is MailKind.STATUS_UPDATE:
                    return  # postponed: the next pass anchors on the contact
                for key in (mail.key, *mail.folded):
                    self._final(key.id, LedgerEntry(key, LedgerState.SKIPPED, mail.due, now))
                return
        attempted = self.ledger.get(mail.key.id)  # an attempting row keeps its first due
        due = attempted.due if attempted is not None else mail.due
        self.ledger[mail.key.id] = LedgerEntry(
            mail.key, LedgerState.DRAFTED, due, now, DraftState.PENDING, dict(mail.context)
        )
        for key in mail.folded:
            self._final(key.id, LedgerEntry(key, LedgerState.FOLDED, now, now))
        self.drafted.append(Done(mail, now))

    def _final(self, key_id: str, entry: LedgerEntry) -> None:
        """Insert a final row unless one exists; an attempting row becomes it (State.record_skip)."""
        existing = self.ledger.get(key_id)
        if existing is None:
            self.ledger[key_id] = entry
        elif existing.state is LedgerState.ATTEMPTING:
            self.ledger[key_id] = replace(existing, state=entry.state)

    # -- reading the outcome -------------------------------------------------------------

    def rows(self, state: LedgerState) -> set[tuple[str, str]]:
        """(kind, candidate) of every ledger row in ``state``."""
        return {
            (e.key.kind.value, e.key.candidate) for e in self.ledger.values() if e.state is state
        }

    def handled(self) -> set[str]:
        """Key ids that count as done for the candidate: drafted (or since obsolete) and folded."""
        done = (LedgerState.DRAFTED, LedgerState.FOLDED, LedgerState.OBSOLETE)
        return {k for k, e in self.ledger.items() if e.state in done}


def summary(decided: Plan) -> dict[str, set[tuple[str, str]]]:
    """A plan as sets of (kind, candidate), the way a test states what it expects."""
    return {
        "drafts": {(m.kind.value, m.candidate) for m in decided.drafts},
        "folded": {(k.kind.value, m.candidate) for m in decided.drafts for k in m.folded},
        "skips": {(s.key.kind.value, s.key.candidate) for s in decided.skips},
        "obsolete": {(o.entry.key.kind.value, o.entry.key.candidate) for o in decided.obsolete},
    }
