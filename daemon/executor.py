"""One reconcile pass for one mailbox: sync → snapshot → plan → carry the plan out.

This is the only place where the pure planner meets the outside world. Drafts are created in two
phases (DESIGN.md §4): the ledger says "attempting" (committed) → the mailbox is searched for the
key → adopt what is found, else create → the ledger says "drafted". A create whose outcome is
unknown is never retried blindly: the next pass looks the key up first, after a grace period.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from time import time as epoch_seconds
from typing import Protocol, TypeVar, runtime_checkable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from recruitmail.contracts.connector import (
    CalendarSource,
    KnowsCorrespondence,
    KnowsLastContact,
    KnowsOutOfOffice,
    KnowsPeople,
    KnowsTimeZone,
    MailboxSink,
)
from recruitmail.contracts.errors import (
    AmbiguousError,
    AuthError,
    CursorExpired,
    PermanentError,
    RecruitmailError,
    RenderError,
    TransientError,
)
from recruitmail.contracts.limits import capped_retry_after
from recruitmail.contracts.models import (
    DraftKey,
    DraftMessage,
    DraftState,
    Event,
    MailKind,
    Period,
    PersonInfo,
    pseudonym,
)
from recruitmail.daemon import compose
from recruitmail.daemon.faults import crash_point
from recruitmail.daemon.interviews import (
    REASON_BAD_TIMES,
    REASON_NO_CANDIDATE,
    REASON_NOT_ACCEPTED,
    Interview,
    Rejection,
    recognise,
)
from recruitmail.daemon.planner import (
    LedgerEntry,
    Plan,
    PlannedMail,
    Skip,
    Snapshot,
    entries_needing_state,
    plan,
)
from recruitmail.daemon.render import Renderer
from recruitmail.daemon.service import Metrics
from recruitmail.daemon.settings import Mailbox, Settings
from recruitmail.daemon.state import Finished, LedgerRow, SkipRecord, State
from recruitmail.daemon.workdays import DaysOffTables, WorkCalendar

log = logging.getLogger("recruitmail.executor")
Found = TypeVar("Found")

DRAFT_BATCH = 64
"""Mails drafted per batch: one transaction records their intents, one their outcomes, and the
sink makes the batch's writes durable once."""
STALE_LINES = 10
"""A pass that skips more stale mails than this logs one INFO line for them, each at DEBUG."""
KNOWLEDGE_TTL = timedelta(hours=1)
REFUSED_RETRY = timedelta(hours=1)
"""A look-up the provider refused for good is asked again after this (a permission may be granted)."""
STALE_ABSENCES = timedelta(hours=24)
"""Out-of-office knowledge older than this is not used when a fresh look-up fails."""
REPLAN_AFTER = timedelta(hours=1)
"""A mailbox where nothing changed is planned again after this at the latest, whatever
``Plan.next_due`` says (a bound on what an unforeseen input of the planner could cost)."""

# Auxiliary look-ups: what each is called in logs, metrics and `status`, and its fallback when
# the provider refuses it for good (docs/OPERATIONS.md, "When a look-up fails").
LAST_CONTACT = "last contact"
OUT_OF_OFFICE = "out of office"
DIRECTORY = "directory"
TIME_ZONE = "time zone"
CORRESPONDENCE = "correspondence"
FALLBACKS = {
    LAST_CONTACT: "greetings and status updates are drafted without checking Sent mail",
    OUT_OF_OFFICE: "only the vacations in the configuration are used",
    DIRECTORY: "panel roles come from the configured people directory only",
    TIME_ZONE: "the configured time zone (mailbox, else company) is used",
    CORRESPONDENCE: "the candidate's language is decided from the event's text",
}

REASON_UNREADABLE = "it could not be read (the log at DEBUG has the details)"

# Reasons an interview-looking event is not used that an administrator may want to know about.
NOTEWORTHY = frozenset({REASON_BAD_TIMES, REASON_NO_CANDIDATE, REASON_NOT_ACCEPTED})


class RecruiterWrote(PermanentError):
    """The recruiter wrote to the candidate themself: this greeting is not needed."""


class LookupDeferred(TransientError):
    """An auxiliary look-up a mail depends on failed for now: the mail waits for the next pass."""


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
    planned: bool = False  # False: nothing changed since an empty plan, so none was made

    @property
    def eventful(self) -> bool:
        """Whether the pass changed or held anything (an idle pass is logged at DEBUG only)."""
        return bool(
            self.drafted
            or self.skipped
            or self.obsolete
            or self.deferred
            or self.folded
            or self.synced_events
        )


@dataclass
class Pass:
    """One pass over one mailbox as its steps hand it on: the instant it plans for, the working
    calendar, what it did (``report``), and what the snapshot step found."""

    now: datetime
    calendar: WorkCalendar
    report: PassReport
    version: tuple[int, int, int] | None = None  # the stored events' version the snapshot read
    refreshed: bool = False  # mailbox states were asked (the ledger may have changed)


@dataclass(frozen=True)
class _Quiet:
    """What an empty plan was decided on, and until when it stays the answer."""

    version: tuple[int, int, int]
    absences: tuple[Period, ...]
    planned_at: datetime
    until: datetime


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
        self._refused: dict[str, datetime] = {}  # look-up → when the provider refused it for good
        self._basis: str | None = None
        self._problems: set[str] | None = None  # topics recorded in state, loaded on first use
        # The interviews recognised in the stored events, and the stored events' version they
        # were read at: an idle pass (nothing synced, nothing forgotten) neither decodes nor
        # recognises them again. Recognition depends on the settings, which are fixed for a
        # runner's life (a reload builds new runners).
        self._interviews: tuple[tuple[int, int, int], tuple[Interview, ...]] | None = None
        self._numbers: tuple[Snapshot, dict[tuple[str, str], int]] | None = None
        # Per snapshot: (the languages decided so far, those set with `recruitmail language`).
        self._languages: tuple[Snapshot, dict[str, tuple[str, str]], dict[str, str]] | None = None
        self._quiet: _Quiet | None = None  # the last plan, when it was empty (nothing_to_plan)
        # Languages decided for new candidates, written with the batch's intents (one
        # transaction instead of one per candidate): (candidate, language, reason).
        self._new_languages: list[tuple[str, str, str]] = []
        self.wall: Callable[[], float] = epoch_seconds  # the real clock, for Retry-After only

    # -- mailbox knowledge ---------------------------------------------------------------
    #
    # Auxiliary look-ups never cost a mail (DESIGN.md, "Respect the recruiter's hand"): a
    # transient failure makes the mail that depends on it wait for the next pass; a refusal for
    # good (a missing permission, a query the provider does not accept) falls back as FALLBACKS
    # says, is logged, and is shown by `status` until the look-up works again.

    def note_problem(self, topic: str, exc: RecruitmailError, now: datetime) -> None:
        permanent = isinstance(exc, (PermanentError, AuthError))
        self.observer.lookup_failed(topic.replace(" ", "_"), permanent)
        message = str(exc)
        if permanent:
            self._refused[topic] = now
            message += f" — {FALLBACKS[topic]}" if topic in FALLBACKS else ""
            log.warning("mailbox %s: %s look-up refused: %s", self.box.address, topic, message)
        else:
            log.warning("mailbox %s: %s look-up failed for now: %s", self.box.address, topic, exc)
        self.problems().add(topic)
        self.state.record_problem(self.box.address, topic, message, permanent, now)

    def clear_problem(self, topic: str) -> None:
        self._refused.pop(topic, None)
        if topic in self.problems():
            self.problems().discard(topic)
            self.state.clear_problem(self.box.address, topic)

    def problems(self) -> set[str]:
        if self._problems is None:
            self._problems = {p.topic for p in self.state.problems(self.box.address)}
        return self._problems

    def refused_recently(self, topic: str, now: datetime) -> bool:
        since = self._refused.get(topic)
        return since is not None and timedelta(0) <= now - since < REFUSED_RETRY

    def zone(self, now: datetime | None = None) -> ZoneInfo:
        if self._zone is None:
            name = self.box.time_zone
            if name is None and isinstance(self.sink, KnowsTimeZone):
                try:
                    name = self.sink.time_zone()
                except TransientError as exc:
                    # Planning in a guessed zone would put greetings on the wrong day: the
                    # whole pass waits (nothing is lost: every window is at least a day).
                    if now is not None:
                        self.note_problem(TIME_ZONE, exc, now)
                    raise
                except (PermanentError, AuthError) as exc:
                    if now is not None:
                        self.note_problem(TIME_ZONE, exc, now)
                else:
                    self.clear_problem(TIME_ZONE)
            try:
                self._zone = ZoneInfo(name or self.settings.company.time_zone)
            except (ZoneInfoNotFoundError, ValueError):
                log.warning(
                    "mailbox %s: unknown time zone %r; using the company's", self.box.address, name
                )
                self._zone = ZoneInfo(self.settings.company.time_zone)
        return self._zone

    def calendar(self, now: datetime | None = None) -> WorkCalendar:
        # Kept for the runner's life: a fresh one would load the holiday tables again on every
        # pass (half of an idle pass's planning time). Its inputs never change for this runner:
        # a new configuration gets new runners, and the zone is fixed once known.
        if self._calendar is None:
            self._calendar = WorkCalendar(
                self.settings.company.country,
                self.zone(now),
                self.settings.company.closure_days,
                self.settings.company.subdivision,
                # Days off worked out once are kept beside the compiled templates, also for the
                # daemon and the gallery (a kept table spares the holidays package's import).
                tables=DaysOffTables(self.renderer.cache_dir)
                if self.renderer.cache_dir is not None
                else None,
            )
        return self._calendar

    def absences(self, now: datetime, calendar: WorkCalendar) -> list[Period]:
        configured = [
            Period(calendar.at(v.start, time(0)), calendar.at(v.end + timedelta(days=1), time(0)))
            for v in self.box.vacations
        ]
        if not isinstance(self.sink, KnowsOutOfOffice) or self.refused_recently(OUT_OF_OFFICE, now):
            return configured
        if (
            self._absences is None
            or now - self._absences[0] > KNOWLEDGE_TTL
            or now < self._absences[0]
        ):
            try:
                self._absences = (now, self.sink.out_of_office())
            except TransientError as exc:
                self.note_problem(OUT_OF_OFFICE, exc, now)
                last = self._absences
                if last is None or not timedelta(0) <= now - last[0] <= STALE_ABSENCES:
                    raise  # planning as if the recruiter were in could draft the wrong mails
            except (PermanentError, AuthError) as exc:
                self.note_problem(OUT_OF_OFFICE, exc, now)
                self._absences = None
                return configured
            else:
                self.clear_problem(OUT_OF_OFFICE)
        scheduled: list[Period] = self._absences[1] if self._absences is not None else []
        return configured + [p for p in scheduled if p not in configured]

    def person(self, address: str, now: datetime) -> PersonInfo | None:
        if not isinstance(self.sink, KnowsPeople) or self.settings.person(address) is not None:
            return None
        if address in self._directory:
            return self._directory[address]
        sink = self.sink
        found = self.look_up(DIRECTORY, lambda: sink.lookup_person(address), now)
        if DIRECTORY not in self._refused:  # a refusal is asked again later, not remembered
            self._directory[address] = found
        return found

    def last_contact(self, address: str, since: datetime, now: datetime) -> datetime | None:
        """When the recruiter last wrote to ``address`` after ``since`` (None: not known to)."""
        if not isinstance(self.sink, KnowsLastContact):
            return None
        sink = self.sink
        return self.look_up(LAST_CONTACT, lambda: sink.last_contact(address, since), now)

    def look_up(self, topic: str, call: Callable[[], Found], now: datetime) -> Found | None:
        """An auxiliary look-up a mail depends on: ``None`` when refused for good (the mail goes
        on with the fallback); ``LookupDeferred`` when it failed for now (the mail waits)."""
        if self.refused_recently(topic, now):
            return None
        try:
            found = call()
        except TransientError as exc:
            self.note_problem(topic, exc, now)
            raise LookupDeferred(
                f"the {topic} look-up failed for now ({exc})", retry_after=exc.retry_after
            ) from None
        except (PermanentError, AuthError) as exc:
            self.note_problem(topic, exc, now)
            return None
        self.clear_problem(topic)
        return found

    # -- the pass ------------------------------------------------------------------------

    def reconcile(self, now: datetime) -> PassReport:
        """Sync, plan and act. Raises only for mailbox-wide problems (auth, outage)."""
        wait = self.state.hold_until(self.box.address) - self.wall()
        if wait > 0:  # the provider's Retry-After outlives the pass, and the process
            raise TransientError(
                f"the provider asked us to wait; {wait:.0f} s left", retry_after=wait
            )
        try:
            return self.run_pass(now)
        except TransientError as exc:
            self.hold_for(exc)
            raise

    def hold_for(self, exc: TransientError) -> None:
        """Remember a provider's Retry-After past this pass and process. The pass itself goes on:
        the connector waits it out (or refuses) before its own next request."""
        if exc.retry_after:
            self.state.hold(self.box.address, self.wall() + capped_retry_after(exc.retry_after))

    def run_pass(self, now: datetime) -> PassReport:
        """The pass as its steps; each takes what it needs and hands on what the next needs."""
        run = Pass(now, self.calendar(now), PassReport(self.box.address))
        self.sync(now, run.report)
        if self.nothing_to_plan(run):
            return run.report
        snapshot = self.settled_snapshot(run)
        decided = plan(snapshot, now, self.settings, run.calendar)
        self.carry_out(decided, snapshot, run)
        self.remember_if_quiet(decided, snapshot, run)
        return run.report

    def sync(self, now: datetime, report: PassReport) -> None:
        zone = self.zone(now)
        today = now.astimezone(zone).date()
        window = Period(
            datetime.combine(
                today - timedelta(days=self.settings.service.window_past_days), time(0), zone
            ),
            datetime.combine(
                today + timedelta(days=self.settings.service.window_future_days), time(0), zone
            ),
        )
        cursor = self.state.cursor(self.box.address, self.basis())
        try:
            try:
                result = self.source.sync(cursor, window)
            except CursorExpired:
                log.info("mailbox %s: calendar cursor expired; full resync", self.box.address)
                result = self.source.sync(None, window)
        except RecruitmailError as exc:
            self.observer.sync_error(self.box.source.type, type(exc).__name__)
            raise
        report.synced_events = len(result.events) + len(result.removed)
        report.full_sync = result.full
        if not (result.events or result.removed or result.skipped or result.full) and (
            result.cursor == cursor
        ):
            # Nothing came and the cursor is the one stored: there is nothing to write (the
            # source hands the same cursor back while its calendar is quiet). An idle pass
            # then takes no write transaction at all.
            crash_point("sync-after-commit")
            return
        # Only interviews are kept (and never a private event): the rest of the calendar is
        # none of our business. An event that stopped being an interview is dropped.
        kept: list[Event] = []
        dropped: list[str] = []
        noteworthy: dict[str, int] = {}
        for event in result.events:
            found = self.recognise(event)
            if isinstance(found, Rejection) or event.private:
                dropped.append(event.event_id)
                if isinstance(found, Rejection) and found.reason in NOTEWORTHY:
                    noteworthy[found.reason] = noteworthy.get(found.reason, 0) + 1
                    log.debug(
                        "mailbox %s: event %r: %s", self.box.address, event.event_id, found.reason
                    )
            else:
                kept.append(event)
        self.state.apply_sync(
            self.box.address,
            tuple(kept),
            (*result.removed, *dropped),
            result.cursor,
            result.full,
            now,
            result.skipped,
            self.basis(),
        )
        crash_point("sync-after-commit")
        for reason, count in sorted(noteworthy.items()):  # said once, when the events arrive
            log.info("mailbox %s: %d event(s) not used: %s", self.box.address, count, reason)
        if result.skipped:
            self.observer.events_skipped(len(result.skipped))
            reasons: dict[str, int] = {}
            for skipped in result.skipped:
                reasons[skipped.reason] = reasons.get(skipped.reason, 0) + 1
                log.debug(
                    "mailbox %s: event %r left out: %s",
                    self.box.address,
                    skipped.event_id,
                    skipped.reason,
                )
            for reason, count in sorted(reasons.items()):
                log.info("mailbox %s: %d event(s) left out: %s", self.box.address, count, reason)

    def recognise(self, event: Event) -> list[Interview] | Rejection:
        """``recognise``, isolated: an event it cannot read never stops the others."""
        try:
            return recognise(event, self.box, self.settings)
        except Exception as exc:  # noqa: BLE001 - one event's data must not stop the mailbox
            log.warning(
                "mailbox %s: an event could not be read (%s); it is left out",
                self.box.address,
                type(exc).__name__,
            )
            log.debug("mailbox %s: event %r", self.box.address, event.event_id, exc_info=True)
            return Rejection(event.event_id, REASON_UNREADABLE)

    def basis(self) -> str:
        """A digest of the rules that decide which events are kept: when they change (a reload),
        the stored cursor is not used and a full sync reads the calendar again."""
        if self._basis is None:
            rules = {
                "detection": self.settings.detection.model_dump(mode="json"),
                "domains": list(self.settings.company.domains),
                "mailbox": self.box.address,
            }
            text = json.dumps(rules, sort_keys=True, ensure_ascii=False)
            self._basis = hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
        return self._basis

    def interviews(self, version: tuple[int, int, int] | None = None) -> tuple[Interview, ...]:
        """The interviews in our copy of the calendar (decoded and recognised again only when
        the stored events changed since the last time; ``version``: the stored events' version
        the caller read, else read here)."""
        if version is None:
            version = self.state.events_version(self.box.address)
        if self._interviews is not None and self._interviews[0] == version:
            return self._interviews[1]
        found: list[Interview] = []
        unused: list[str] = []
        for event in self.state.events(self.box.address):
            recognised = self.recognise(event)
            if isinstance(recognised, Rejection) or event.private:
                unused.append(event.event_id)  # e.g. stored by an older version
            else:
                found.extend(recognised)
        if unused:
            self.state.drop_events(self.box.address, unused)  # a new version: read next time
            self._interviews = None
        else:
            self._interviews = (version, tuple(found))
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

    def settled_snapshot(self, run: Pass) -> Snapshot:
        """What the planner may know now, with the mailbox states of drafts whose interview moved
        or vanished asked first (read again if any was asked). Notes in ``run`` the stored
        events' version it was read at (before any read: a write after it shows as a change)."""
        self._quiet = None
        run.version = self.state.events_version(self.box.address)
        interviews = self.interviews(run.version)
        snapshot = self.snapshot(run.now, run.calendar, interviews)
        run.refreshed = self.refresh_states(snapshot, run.now)
        if run.refreshed:
            snapshot = self.snapshot(run.now, run.calendar, interviews)
        return snapshot

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

    # -- skipping the passes that cannot do anything -------------------------------------------
    #
    # The planner is pure: the same snapshot at another instant before ``Plan.next_due`` gives
    # the same plan. After an empty plan the runner remembers what it was decided on; a later
    # pass whose sync stored nothing new, whose state no one else wrote to and whose absences
    # are the same then skips snapshot and planning. "No one else": SQLite's ``data_version``
    # changes with any other connection's commit; on PostgreSQL every write to a mailbox's
    # events, ledger or candidates raises its change counter in the same transaction, whichever
    # instance or command wrote (``State.events_version``). Only the runner's own passes write
    # this mailbox's ledger in this process, and a pass that writes to it is not quiet (its
    # plan was not empty), so the next one plans. Kept in memory only: a new process plans on
    # its first pass, so nothing here can survive a crash to mislead a later pass.

    def nothing_to_plan(self, run: Pass) -> bool:
        """Whether planning now would decide what the last, empty plan decided: nothing."""
        quiet = self._quiet
        if quiet is None or not quiet.planned_at <= run.now < quiet.until:
            return False
        if self.state.events_version(self.box.address) != quiet.version:
            return False
        return tuple(self.absences(run.now, run.calendar)) == quiet.absences

    def remember_if_quiet(self, decided: Plan, snapshot: Snapshot, run: Pass) -> None:
        """After an empty plan decided on a snapshot that needed no mailbox states: remember it
        until its next due time (``nothing_to_plan``), and let go of what only planning needs."""
        run.report.planned = True
        self._numbers = None
        self._languages = None
        if not decided.empty or run.refreshed or run.version is None or decided.next_due is None:
            return
        until = min(decided.next_due, run.now + REPLAN_AFTER)
        self._quiet = _Quiet(run.version, snapshot.absences, run.now, until)
        # Until something changes no pass reads the interviews; the next plan reads them again.
        self._interviews = None

    def carry_out(self, decided: Plan, snapshot: Snapshot, run: Pass) -> None:
        """The plan, done: stale mails recorded, obsolete drafts marked, due mails drafted."""
        now, report = run.now, run.report
        stale = [skip for skip in decided.skips if not self.postponed(skip, now)]
        if stale:
            # Stale mails are final: one transaction for all of them (a kill before it only
            # means the next pass records them).
            crash_point("skip-before-commit")
            self.state.record_skips(
                [SkipRecord(skip.key, skip.due, skip.reason) for skip in stale], now
            )
        # A pass that finds many (the first over a calendar with months of history) says so in
        # one INFO line; each mail's line is then at DEBUG, and ``status`` shows every reason.
        summed_up = len(stale) > STALE_LINES
        each_at = logging.DEBUG if summed_up else logging.INFO
        for skip in stale:
            self.clear_problem(held_topic(skip.key))
            report.skipped.append((skip.key.kind.value, skip.reason))
            self.observer.draft_skipped(skip.key.kind.value, "stale")
            log.log(
                each_at,
                "%s %s for %s skipped: %s",
                self.box.address,
                skip.key.kind.value,
                pseudonym(skip.key.candidate),
                skip.reason,
            )
        if summed_up:
            kinds = Counter(skip.key.kind.value for skip in stale)
            log.info(
                "%s %d mails past their time skipped (%s); each is in `recruitmail status`",
                self.box.address,
                len(stale),
                ", ".join(f"{kind} {count}" for kind, count in sorted(kinds.items())),
            )
        for gone in decided.obsolete:
            self.mark_obsolete(gone.entry, gone.reason, now)
            report.obsolete += 1
        for mail in decided.drafts:
            self.observer.draft_planned(mail.kind.value)
        if not decided.drafts:
            return
        rows = {r.entry.key.id: r for r in self.state.ledger(self.box.address)}
        for start in range(0, len(decided.drafts), DRAFT_BATCH):
            if not self.draft_batch(
                decided.drafts[start : start + DRAFT_BATCH], rows, snapshot, run
            ):
                log.info(
                    "mailbox %s: stopping; %d mail(s) left for the next pass",
                    self.box.address,
                    len(decided.drafts) - start,
                )
                return

    def draft_batch(
        self,
        batch: tuple[PlannedMail, ...],
        rows: dict[str, LedgerRow],
        snapshot: Snapshot,
        run: Pass,
    ) -> bool:
        """Draft a batch of mails in two phases (DESIGN.md §4), with one transaction per phase:
        every intent is committed before the mailbox is touched for any of them; each mail is
        then looked up by its key and created only when not found; the sink makes its writes
        durable once (docs/RELIABILITY.md, "A batch of drafts"); then the outcomes are
        committed. False when the pass was asked to stop."""
        now, report = run.now, run.report
        outcome = _Outcome()
        composed: list[_Composed] = []
        fresh: frozenset[str] = frozenset()
        handed = 0
        stopped = False
        try:
            for mail in batch:
                if self.stop.is_set():
                    return False
                try:
                    ready = self.prepare(mail, snapshot, run, rows.get(mail.key.id))
                except RecruitmailError as exc:
                    self.held(mail, exc, now, report, outcome)
                    continue
                if ready is not None:
                    composed.append(ready)
            languages, self._new_languages = self._new_languages, []
            fresh = self.state.begin_attempts(
                [(c.mail.key, c.mail.due, c.mail.context) for c in composed],
                now,
                languages=[(self.box.address, *decided) for decided in languages],
            )
            if composed and isinstance(self.sink, FlushesWrites):
                self.sink.hold()  # the batch's files are fsynced together by ``flush``
            for item in composed:
                if self.stop.is_set():
                    stopped = True
                    break
                handed += 1
                crash_point("attempt-after-commit")
                try:
                    ref = self.sink.find_draft(item.mail.key)
                    if ref is not None:
                        outcome.adopted.add(item.mail.key.id)
                    else:
                        crash_point("create-before-call")
                        ref = self.sink.create_draft(item.message)
                        crash_point("create-after-call")
                except (PermanentError, AmbiguousError) as exc:
                    self.held(item.mail, exc, now, report, outcome)
                    continue
                outcome.finished.append(
                    Finished(item.mail.key, ref, item.subject, item.mail.folded, item.mail.context)
                )
        finally:
            self.settle(outcome, composed[handed:], fresh, now)
        for done in outcome.finished:
            crash_point("draft-after-commit")
            kind = done.key.kind.value
            self.clear_problem(held_topic(done.key))
            report.drafted.append(kind)
            report.folded += len(done.folded)
            self.observer.draft_created(kind)
            log.info(
                "%s %s for %s %s%s",
                self.box.address,
                kind,
                pseudonym(done.key.candidate),
                "adopted (it existed already)" if done.key.id in outcome.adopted else "drafted",
                f", carrying {', '.join(k.kind.value for k in done.folded)}" if done.folded else "",
            )
        return not stopped

    def settle(
        self,
        outcome: _Outcome,
        untouched: list[_Composed],
        fresh: frozenset[str],
        now: datetime,
    ) -> None:
        """Phase two of a batch: make the sink's writes durable, then commit the outcomes in one
        transaction; forget the intents of mails never handed to the mailbox."""
        if outcome.finished and isinstance(self.sink, FlushesWrites):
            try:
                self.sink.flush()
            except RecruitmailError:
                # Not durable yet: the rows stay "attempting" and the next pass looks the keys
                # up (finding the drafts or not) before creating anything.
                outcome.finished.clear()
                raise
        self.state.finish_drafts(outcome.finished, now, skips=outcome.skips)
        abandoned = [c.mail.key for c in untouched if c.mail.key.id in fresh]
        if abandoned:
            self.state.abandon_attempts(abandoned)

    def held(
        self,
        mail: PlannedMail,
        exc: RecruitmailError,
        now: datetime,
        report: PassReport,
        outcome: _Outcome,
    ) -> None:
        """One mail that cannot be drafted now: waits, is held or skipped; anything else ends
        the pass (re-raised)."""
        if isinstance(exc, LookupDeferred):
            report.deferred += 1
            self.observer.draft_held(mail.kind.value, "lookup")
            log.info(
                "%s %s for %s waits for the next pass: %s",
                self.box.address,
                mail.kind.value,
                pseudonym(mail.candidate),
                exc,
            )
            self.hold_for(exc)
        elif isinstance(exc, RenderError):
            # A template that fails on one mail's data holds that mail (it is tried again
            # every pass while it is valid, so a fixed template drafts it); the rest flow.
            report.deferred += 1
            self.observer.draft_held(mail.kind.value, "template")
            topic = held_topic(mail.key)
            self.problems().add(topic)
            self.state.record_problem(
                self.box.address, topic, f"template failed: {exc}", False, now
            )
            log.error(
                "%s %s for %s held: the template failed (%s)",
                self.box.address,
                mail.kind.value,
                pseudonym(mail.candidate),
                exc,
            )
        elif isinstance(exc, PermanentError):
            outcome.skips.append(SkipRecord(mail.key, mail.due, str(exc), mail.folded))
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
        elif isinstance(exc, AmbiguousError):
            self.observer.api_error(self.box.sink.type, "ambiguous")
            # Committed at once, not with the batch: the grace period before the next look-up
            # (the provider's search index may not show the draft yet) must survive a kill.
            self.state.mark_ambiguous(mail.key, now)
            report.deferred += 1
            log.warning(
                "%s %s for %s: outcome unknown (%s); will look it up before retrying",
                self.box.address,
                mail.kind.value,
                pseudonym(mail.candidate),
                exc,
            )
            self.hold_for(exc)
        else:
            raise exc

    def postponed(self, skip: Skip, now: datetime) -> bool:
        """Whether a stale status update was in fact moved by the recruiter's own mail (read
        now, as the service was not running when it became due): then it is not skipped, and
        the next pass plans it from that mail."""
        if skip.key.kind is not MailKind.STATUS_UPDATE or skip.no_contact_since is None:
            return False
        try:
            contact = self.last_contact(skip.key.candidate, skip.no_contact_since, now)
        except LookupDeferred:
            return True  # decided on a later pass, when Sent mail can be read
        if contact is None or contact <= skip.no_contact_since:
            return False
        self.state.record_contact(self.box.address, skip.key.candidate, contact)
        log.info(
            "%s status update for %s postponed: the recruiter wrote since",
            self.box.address,
            pseudonym(skip.key.candidate),
        )
        return True

    def mark_obsolete(self, entry: LedgerEntry, reason: str, now: datetime) -> None:
        key = entry.key
        if entry.remote_state is DraftState.EDITED:
            # An edited draft is the recruiter's: never touched again, not even with a marker.
            self.state.mark_obsolete(key, reason, now)
            log.info(
                "%s %s for %s no longer needed (%s); edited by the recruiter, so left unmarked",
                self.box.address,
                key.kind.value,
                pseudonym(key.candidate),
                reason,
            )
            return
        row = self.state.ledger_row(key)
        ref = row.remote if row and row.remote else self.sink.find_draft(key)
        if ref is not None:
            try:
                self.sink.mark_obsolete(ref)
            except PermanentError as exc:  # e.g. the recruiter deleted or edited it meanwhile
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

    def prepare(
        self,
        mail: PlannedMail,
        snapshot: Snapshot,
        run: Pass,
        row: LedgerRow | None,
    ) -> _Composed | None:
        """The mail rendered and built, ready for the mailbox; ``None`` when it is not drafted
        on this pass (postponed, or waiting for the provider's search index)."""
        now = run.now
        if mail.no_contact_since is not None:
            contact = self.last_contact(mail.candidate, mail.no_contact_since, now)
            if contact is not None and contact > mail.no_contact_since:
                self.state.record_contact(self.box.address, mail.candidate, contact)
                if mail.kind.value == "status_update":
                    log.info(
                        "%s status update for %s postponed: the recruiter wrote since",
                        self.box.address,
                        pseudonym(mail.candidate),
                    )
                    return None
                raise RecruiterWrote(
                    "the recruiter already wrote to the candidate since it became due"
                )
        facts = self.facts(mail, snapshot, now)
        try:
            context = compose.build_context(mail, self.box, self.settings, run.calendar, now, facts)
            rendered = self.renderer.render(
                mail.kind.value, compose.language_of(mail, self.box, facts), context
            )
            message = compose.build_message(
                mail, self.box, rendered.subject, rendered.text, rendered.html, facts
            )
        except RecruitmailError:
            raise
        except Exception as exc:  # a bug on one mail's data holds that mail, not the mailbox
            log.debug("composing %s failed", mail.key.id, exc_info=True)
            raise RenderError(f"composing the mail failed ({type(exc).__name__})") from None
        for reason in context.get("left_out", ()):
            # Said so the recruiter's administrator knows why a link or a name is missing.
            log.info(
                "%s %s for %s: %s",
                self.box.address,
                mail.kind.value,
                pseudonym(mail.candidate),
                reason,
            )
        if row is not None and row.ambiguous and row.last_attempt is not None:
            waited = (now - row.last_attempt).total_seconds()
            if 0 <= waited < self.settings.service.lookup_grace_seconds:
                run.report.deferred += 1
                return None  # let the provider's search index catch up before looking
        return _Composed(mail, message, rendered.subject)

    def facts(self, mail: PlannedMail, snapshot: Snapshot, now: datetime) -> compose.Facts:
        number = 1
        directory: dict[str, PersonInfo] = {}
        if mail.interview is not None:
            number = self.interview_numbers(snapshot).get(
                (mail.candidate, mail.interview.event.occasion), 1
            )
            for member in mail.interview.panel:
                found = self.person(member.address, now)
                if found is not None:
                    directory[member.address] = found
        latest = snapshot.latest_sent.get(mail.candidate)
        return compose.Facts(
            interview_number=number,
            absences=snapshot.absences,
            directory=directory,
            in_reply_to=latest.key.message_id() if latest else "",
            language=self.language(mail, snapshot, now),
        )

    def language(self, mail: PlannedMail, snapshot: Snapshot, now: datetime) -> str:
        """The candidate's language, decided once and kept (``compose.decide_language``); the
        decision and its reason are stored for ``recruitmail status``. The stored languages are
        read once per snapshot, not once per mail.

        The recruiter's last mail to the candidate (Sent mail of the last 180 days) is read only
        when nothing stronger decides and no language was kept for the candidate: once per
        candidate. A look-up that fails never costs the mail: it is written in the language the
        event's text or the default gives, and that choice is not kept, so a later mail reads
        Sent again. ``recruitmail status`` shows the failing look-up ("correspondence").
        """
        if self._languages is None or self._languages[0] is not snapshot:
            stored = {a: lang for a, (lang, _) in self.state.languages("*").items()}
            self._languages = (snapshot, self.state.languages(self.box.address), stored)
        _, decided, stored = self._languages
        remembered = decided.get(mail.candidate)
        failed = False

        def last_written() -> str | None:
            nonlocal failed
            if not isinstance(self.sink, KnowsCorrespondence):
                return None
            sink, since = self.sink, now - timedelta(days=180)
            try:
                return self.look_up(
                    CORRESPONDENCE, lambda: sink.last_sent_text(mail.candidate, since), now
                )
            except LookupDeferred:
                failed = True
                return None

        language, reason = compose.decide_language(
            mail,
            self.box,
            self.settings,
            stored=stored.get(mail.candidate),
            remembered=remembered,
            last_written=last_written,
        )
        if remembered != (language, reason.value) and not failed:
            # Kept with the batch's intents (``draft_batch``), before any mail of the batch is
            # created: a candidate's first mail and the language it was written in are stored
            # in the same transaction.
            self._new_languages.append((mail.candidate, language, reason.value))
            decided[mail.candidate] = (language, reason.value)
        return language

    def interview_numbers(self, snapshot: Snapshot) -> dict[tuple[str, str], int]:
        """(candidate, occasion) → which of the candidate's interviews it is (1 = the first),
        counted once per snapshot instead of once per mail."""
        if self._numbers is not None and self._numbers[0] is snapshot:
            return self._numbers[1]
        mine: dict[str, list[Interview]] = {}
        for interview in snapshot.interviews:
            mine.setdefault(interview.candidate.address, []).append(interview)
        numbers: dict[tuple[str, str], int] = {}
        for candidate, interviews in mine.items():
            interviews.sort(key=lambda i: (i.event.start, i.event.occasion))
            for n, interview in enumerate(interviews, 1):
                numbers.setdefault((candidate, interview.event.occasion), n)
        self._numbers = (snapshot, numbers)
        return numbers


@dataclass(frozen=True)
class _Composed:
    """A planned mail rendered into the draft the mailbox gets."""

    mail: PlannedMail
    message: DraftMessage
    subject: str


@dataclass
class _Outcome:
    """What one batch's second phase commits."""

    finished: list[Finished] = field(default_factory=list)
    adopted: set[str] = field(default_factory=set)
    skips: list[SkipRecord] = field(default_factory=list)


@runtime_checkable
class FlushesWrites(Protocol):
    """A sink whose creates become durable only when ``flush`` returns (the Maildir: one
    directory fsync per batch instead of one per draft)."""

    def hold(self) -> None:
        """Creates from now on may be put in place only by the next ``flush`` (a look-up in
        this process finds them before; a crash before it leaves none of them visible)."""

    def flush(self) -> None:
        """Make every create since the last flush durable and visible, or raise."""


def held_topic(key: DraftKey) -> str:
    """The `status` topic of a mail held back by a template failure."""
    return f"held {key.kind.value} for {pseudonym(key.candidate)} ({key.id[:8]})"
