"""One reconcile pass for one mailbox: sync → snapshot → plan → carry the plan out.

This is the only place where the pure planner meets the outside world. Drafts are created in two
phases (DESIGN.md §4): the ledger says "attempting" (committed) → the mailbox is searched for the
key → adopt what is found, else create → the ledger says "drafted". A create whose outcome is
unknown is never retried blindly: the next pass looks the key up first, after a grace period.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from connectors.base import (
    CalendarSource,
    KnowsLastContact,
    KnowsOutOfOffice,
    KnowsPeople,
    KnowsTimeZone,
    MailboxSink,
)
from daemon import compose
from daemon.errors import (
    AmbiguousError,
    CursorExpired,
    PermanentError,
    RecruitmailError,
    TransientError,
)
from daemon.faults import crash_point
from daemon.interviews import REASON_BAD_TIMES, REASON_NO_CANDIDATE, Interview, Rejection, recognise
from daemon.models import DraftKey, Period, PersonInfo, pseudonym
from daemon.planner import (
    Plan,
    PlannedMail,
    Snapshot,
    entries_needing_state,
    plan,
)
from daemon.render import Renderer
from daemon.service import Metrics
from daemon.settings import Mailbox, Settings
from daemon.state import State
from daemon.workdays import WorkCalendar

log = logging.getLogger("recruitmail.executor")

KNOWLEDGE_TTL = timedelta(hours=1)

# Reasons an interview-looking event is not used that an administrator may want to know about.
NOTEWORTHY = frozenset({REASON_BAD_TIMES, REASON_NO_CANDIDATE})


@dataclass
class RecruiterWrote(PermanentError):
    """The recruiter wrote to the candidate themself: this greeting is not needed."""


@dataclass
class PassReport:
    """What one pass did, for logs, status lines and metrics."""

    mailbox: str
    drafted: list[str] = field(default_factory=list)  # kinds
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (kind, reason)
    folded: int = 0
    obsolete: int = 0
    deferred: int = 0
    synced_events: int = 0
    full_sync: bool = False


class MailboxRunner:
    """Reconciles one mailbox; keeps what it learnt of the mailbox between passes."""

    def __init__(
        self,
        settings: Settings,
        box: Mailbox,
        state: State,
        renderer: Renderer,
        source: CalendarSource,
        sink: MailboxSink,
        *,
        stop: threading.Event | None = None,
        observer: Metrics | None = None,
    ) -> None:
        self.settings = settings
        self.box = box
        self.state = state
        self.renderer = renderer
        self.source = source
        self.sink = sink
        self.stop = stop or threading.Event()
        self.observer = observer or Metrics()
        self._zone: ZoneInfo | None = None
        self._calendar: WorkCalendar | None = None
        self._absences: tuple[datetime, list[Period]] | None = None
        self._directory: dict[str, PersonInfo | None] = {}

    # -- mailbox knowledge ---------------------------------------------------------------

    def zone(self) -> ZoneInfo:
        if self._zone is None:
            name = self.box.time_zone
            if name is None and isinstance(self.sink, KnowsTimeZone):
                try:
                    name = self.sink.time_zone()
                except TransientError as exc:
                    log.warning(
                        "mailbox %s: time zone unavailable (%s); using the company's",
                        self.box.address,
                        exc,
                    )
            try:
                self._zone = ZoneInfo(name or self.settings.company.time_zone)
            except (ZoneInfoNotFoundError, ValueError):
                log.warning(
                    "mailbox %s: unknown time zone %r; using the company's", self.box.address, name
                )
                self._zone = ZoneInfo(self.settings.company.time_zone)
        return self._zone

    def calendar(self) -> WorkCalendar:
        # Kept for the runner's life: a fresh one would load the holiday tables again on every
        # pass (half of an idle pass's planning time). Its inputs never change for this runner:
        # a new configuration gets new runners, and the zone is fixed once known.
        if self._calendar is None:
            self._calendar = WorkCalendar(
                self.settings.company.country, self.zone(), self.settings.company.closure_days
            )
        return self._calendar

    def absences(self, now: datetime, calendar: WorkCalendar) -> list[Period]:
        configured = [
            Period(calendar.at(v.start, time(0)), calendar.at(v.end + timedelta(days=1), time(0)))
            for v in self.box.vacations
        ]
        if not isinstance(self.sink, KnowsOutOfOffice):
            return configured
        if (
            self._absences is None
            or now - self._absences[0] > KNOWLEDGE_TTL
            or now < self._absences[0]
        ):
            try:
                self._absences = (now, self.sink.out_of_office())
            except TransientError as exc:
                log.warning(
                    "mailbox %s: out-of-office schedule unavailable (%s)", self.box.address, exc
                )
                self._absences = (now, [])
        return configured + [p for p in self._absences[1] if p not in configured]

    def person(self, address: str) -> PersonInfo | None:
        if not isinstance(self.sink, KnowsPeople) or self.settings.person(address) is not None:
            return None
        if address not in self._directory:
            try:
                self._directory[address] = self.sink.lookup_person(address)
            except (TransientError, PermanentError):
                return None
        return self._directory[address]

    # -- the pass ------------------------------------------------------------------------

    def reconcile(self, now: datetime) -> PassReport:
        """Sync, plan and act. Raises only for mailbox-wide problems (auth, outage)."""
        report = PassReport(self.box.address)
        calendar = self.calendar()
        self.sync(now, report)
        interviews = self.interviews()
        snapshot = self.snapshot(now, calendar, interviews)
        if self.refresh_states(snapshot, now):
            snapshot = self.snapshot(now, calendar, interviews)
        decided = plan(snapshot, now, self.settings, calendar)
        self.carry_out(decided, snapshot, now, calendar, report)
        return report

    def sync(self, now: datetime, report: PassReport) -> None:
        zone = self.zone()
        today = now.astimezone(zone).date()
        window = Period(
            datetime.combine(
                today - timedelta(days=self.settings.service.window_past_days), time(0), zone
            ),
            datetime.combine(
                today + timedelta(days=self.settings.service.window_future_days), time(0), zone
            ),
        )
        cursor = self.state.cursor(self.box.address)
        try:
            try:
                result = self.source.sync(cursor, window)
            except CursorExpired:
                log.info("mailbox %s: calendar cursor expired; full resync", self.box.address)
                result = self.source.sync(None, window)
        except RecruitmailError as exc:
            self.observer.sync_error(self.box.source.type, type(exc).__name__)
            raise
        self.state.apply_sync(
            self.box.address, result.events, result.removed, result.cursor, result.full, now
        )
        crash_point("sync-after-commit")
        for event in result.events:  # say once, when an event arrives, why it will not be used
            found = recognise(event, self.box, self.settings)
            if isinstance(found, Rejection) and found.reason in NOTEWORTHY:
                log.info(
                    "mailbox %s: event %s skipped: %s",
                    self.box.address,
                    event.event_id,
                    found.reason,
                )
        report.synced_events = len(result.events) + len(result.removed)
        report.full_sync = result.full

    def interviews(self) -> tuple[Interview, ...]:
        """The interviews in our copy of the calendar."""
        found: list[Interview] = []
        for event in self.state.events(self.box.address):
            recognised = recognise(event, self.box, self.settings)
            if not isinstance(recognised, Rejection):
                found.extend(recognised)
        return tuple(found)

    def snapshot(
        self, now: datetime, calendar: WorkCalendar, interviews: tuple[Interview, ...] | None = None
    ) -> Snapshot:
        if interviews is None:
            interviews = self.interviews()
        rows = self.state.ledger(self.box.address)
        return Snapshot(
            mailbox=self.box,
            interviews=interviews,
            ledger=tuple(r.entry for r in rows),
            last_contact=self.state.contacts(self.box.address),
            absences=tuple(self.absences(now, calendar)),
            closed=self.state.closed(self.box.address),
        )

    def refresh_states(self, snapshot: Snapshot, now: datetime) -> bool:
        """Ask the mailbox what became of drafts whose interview moved or vanished; True when
        it asked (and so the ledger may have changed)."""
        needed = entries_needing_state(snapshot, now)
        if not needed:
            return False
        rows = {r.entry.key.id: r for r in self.state.ledger(self.box.address)}
        for entry in needed:
            row = rows.get(entry.key.id)
            if row is None or row.remote is None:
                continue
            state = self.sink.draft_state(row.remote)
            self.state.set_remote_state(entry.key, state, now)
        return True

    def carry_out(
        self,
        decided: Plan,
        snapshot: Snapshot,
        now: datetime,
        calendar: WorkCalendar,
        report: PassReport,
    ) -> None:
        for skip in decided.skips:
            crash_point("skip-before-commit")
            self.state.record_skip(skip.key, skip.due, skip.reason, now)
            report.skipped.append((skip.key.kind.value, skip.reason))
            self.observer.draft_skipped(skip.key.kind.value, "stale")
            log.info(
                "%s %s for %s skipped: %s",
                self.box.address,
                skip.key.kind.value,
                pseudonym(skip.key.candidate),
                skip.reason,
            )
        for gone in decided.obsolete:
            self.mark_obsolete(gone.entry.key, gone.reason, now)
            report.obsolete += 1
        for mail in decided.drafts:
            self.observer.draft_planned(mail.kind.value)
        for mail in decided.drafts:
            if self.stop.is_set():
                log.info(
                    "mailbox %s: stopping; %d mail(s) left for the next pass",
                    self.box.address,
                    len(decided.drafts),
                )
                return
            try:
                self.draft(mail, snapshot, now, calendar, report)
            except PermanentError as exc:
                self.state.record_skip(mail.key, mail.due, str(exc), now, mail.folded)
                report.skipped.append((mail.kind.value, str(exc)))
                reason = "recruiter_wrote" if isinstance(exc, RecruiterWrote) else "error"
                self.observer.draft_skipped(mail.kind.value, reason)
                log.warning(
                    "%s %s for %s skipped: %s",
                    self.box.address,
                    mail.kind.value,
                    pseudonym(mail.candidate),
                    exc,
                )
            except AmbiguousError as exc:
                self.observer.api_error(self.box.sink.type, "ambiguous")
                self.state.mark_ambiguous(mail.key, now)
                report.deferred += 1
                log.warning(
                    "%s %s for %s: outcome unknown (%s); will look it up before retrying",
                    self.box.address,
                    mail.kind.value,
                    pseudonym(mail.candidate),
                    exc,
                )

    def mark_obsolete(self, key: DraftKey, reason: str, now: datetime) -> None:
        row = self.state.ledger_row(key)
        ref = row.remote if row and row.remote else self.sink.find_draft(key)
        if ref is not None:
            try:
                self.sink.mark_obsolete(ref)
            except PermanentError as exc:  # e.g. the recruiter deleted it meanwhile
                log.info(
                    "%s %s for %s: could not mark the draft (%s)",
                    self.box.address,
                    key.kind.value,
                    pseudonym(key.candidate),
                    exc,
                )
        self.state.mark_obsolete(key, reason, now)
        log.info(
            "%s %s for %s marked obsolete: %s",
            self.box.address,
            key.kind.value,
            pseudonym(key.candidate),
            reason,
        )

    def draft(
        self,
        mail: PlannedMail,
        snapshot: Snapshot,
        now: datetime,
        calendar: WorkCalendar,
        report: PassReport,
    ) -> None:
        if mail.no_contact_since is not None and isinstance(self.sink, KnowsLastContact):
            contact = self.sink.last_contact(mail.candidate, mail.no_contact_since)
            if contact is not None and contact > mail.no_contact_since:
                self.state.record_contact(self.box.address, mail.candidate, contact)
                if mail.kind.value == "status_update":
                    log.info(
                        "%s status update for %s postponed: the recruiter wrote since",
                        self.box.address,
                        pseudonym(mail.candidate),
                    )
                    return
                raise PermanentError(
                    "the recruiter already wrote to the candidate since it became due"
                )
        facts = self.facts(mail, snapshot)
        context = compose.build_context(mail, self.box, self.settings, calendar, now, facts)
        rendered = self.renderer.render(
            mail.kind.value, compose.language_of(mail, self.box), context
        )
        message = compose.build_message(
            mail, self.box, rendered.subject, rendered.text, rendered.html, facts
        )

        existing = self.state.ledger_row(mail.key)
        if existing is not None and existing.ambiguous and existing.last_attempt is not None:
            waited = (now - existing.last_attempt).total_seconds()
            if 0 <= waited < self.settings.service.lookup_grace_seconds:
                report.deferred += 1
                return  # let the provider's search index catch up before looking
        self.state.begin_attempt(mail.key, mail.due, mail.context, now)
        crash_point("attempt-after-commit")
        ref = self.sink.find_draft(mail.key)
        adopted = ref is not None
        if ref is None:
            crash_point("create-before-call")
            ref = self.sink.create_draft(message)
            crash_point("create-after-call")
        self.state.finish_draft(mail.key, ref, rendered.subject, mail.folded, mail.context, now)
        crash_point("draft-after-commit")
        report.drafted.append(mail.kind.value)
        report.folded += len(mail.folded)
        self.observer.draft_created(mail.kind.value)
        log.info(
            "%s %s for %s %s%s",
            self.box.address,
            mail.kind.value,
            pseudonym(mail.candidate),
            "adopted (it existed already)" if adopted else "drafted",
            f", carrying {', '.join(k.kind.value for k in mail.folded)}" if mail.folded else "",
        )

    def facts(self, mail: PlannedMail, snapshot: Snapshot) -> compose.Facts:
        number = 1
        directory: dict[str, PersonInfo] = {}
        if mail.interview is not None:
            mine = sorted(
                (i for i in snapshot.interviews if i.candidate.address == mail.candidate),
                key=lambda i: (i.event.start, i.event.occasion),
            )
            number = next(
                (
                    n
                    for n, i in enumerate(mine, 1)
                    if i.event.occasion == mail.interview.event.occasion
                ),
                1,
            )
            for member in mail.interview.panel:
                found = self.person(member.address)
                if found is not None:
                    directory[member.address] = found
        latest = snapshot.latest_sent.get(mail.candidate)
        return compose.Facts(
            interview_number=number,
            absences=snapshot.absences,
            directory=directory,
            in_reply_to=latest.key.message_id() if latest else "",
        )
