"""Decide which candidate mails are due: ``plan(snapshot, now, settings, calendar) -> Plan``.

Pure: it reads no clock and does no I/O; everything it knows arrives in the ``Snapshot``.
The rules are DESIGN.md §2; the non-obvious choices are explained where they are made.
"""

from __future__ import annotations

import enum
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from functools import cached_property
from typing import Any

from recruitmail.contracts.models import DraftKey, DraftState, MailKind, Period
from recruitmail.daemon.interviews import Interview
from recruitmail.daemon.settings import WEEKDAYS, Mailbox, Settings
from recruitmail.daemon.workdays import HolidayRun, WorkCalendar

# What a mail promised the candidate, kept in its ledger context so that later mails know it.
PROMISE = "promise"
"""The ISO day the mail promises the decision by; ``""`` when it names no day."""
PROMISE_LATE = "promise_late"
"""True when a day promised earlier has come without the decision (the mail says so)."""
PROMISE_REPEAT = "promise_repeat"
"""True when the mail repeats the day the previous mail promised (still ahead)."""
PROMISE_MOVED_FROM = "promise_moved_from"
"""The ISO day an earlier mail promised and this one moves (the recruiter will be away)."""
PROMISE_FROM = "promise_from"
"""The ISO day the promised day was counted from (a later mail counts again from it)."""
PROMISE_DAYS = "promise_days"
"""How many working days in the promised day was counted."""
PROMISE_HORIZON_DAYS = 60
"""A decision further away than this is not promised by date: no one can vouch for it."""


class LedgerState(enum.StrEnum):
    """Where a planned mail stands in our own ledger."""

    ATTEMPTING = "attempting"  # the create may have happened: look up before trying again
    DRAFTED = "drafted"
    SKIPPED = "skipped"
    FOLDED = "folded"  # carried as a line inside another draft of the same day
    OBSOLETE = "obsolete"  # its reason vanished; the draft (if any) is marked, never deleted

    @property
    def is_final(self) -> bool:
        return self is not LedgerState.ATTEMPTING


@dataclass(frozen=True)
class LedgerEntry:
    """One row of the ledger, as the planner sees it."""

    key: DraftKey
    state: LedgerState
    due: datetime
    done_at: datetime | None = None
    remote_state: DraftState | None = None
    context: dict[str, Any] = field(default_factory=dict)

    @property
    def is_live_draft(self) -> bool:
        """A draft that exists (or may) and is meant to reach the candidate."""
        return self.state in (LedgerState.DRAFTED, LedgerState.ATTEMPTING)


@dataclass(frozen=True)
class Snapshot:
    """Everything the planner may know about one mailbox at one moment."""

    mailbox: Mailbox
    interviews: tuple[Interview, ...]
    ledger: tuple[LedgerEntry, ...] = ()
    last_contact: dict[str, datetime] = field(default_factory=dict)
    absences: tuple[Period, ...] = ()
    closed: frozenset[str] = frozenset()

    @cached_property
    def latest_sent(self) -> dict[str, LedgerEntry]:
        """Per candidate, the newest of our mails the recruiter sent (to thread follow-ups on)."""
        newest: dict[str, LedgerEntry] = {}
        for e in self.ledger:
            if e.state is LedgerState.DRAFTED and e.remote_state is DraftState.SENT:
                known = newest.get(e.key.candidate)
                if known is None or (e.done_at or e.due) > (known.done_at or known.due):
                    newest[e.key.candidate] = e
        return newest


@dataclass(frozen=True)
class PlannedMail:
    """A mail to draft now."""

    key: DraftKey
    due: datetime
    valid_until: datetime
    interview: Interview | None = None
    folded: tuple[DraftKey, ...] = ()
    no_contact_since: datetime | None = None
    holiday: HolidayRun | None = None
    absence: Period | None = None
    previous_start: datetime | None = None
    context: dict[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> MailKind:
        return self.key.kind

    @property
    def candidate(self) -> str:
        return self.key.candidate

    @property
    def folded_kinds(self) -> frozenset[MailKind]:
        return frozenset(k.kind for k in self.folded)


@dataclass(frozen=True)
class Skip:
    """A mail that will never be drafted, with the reason a person can read."""

    key: DraftKey
    due: datetime
    reason: str
    no_contact_since: datetime | None = None  # a status update the recruiter's mail may postpone


@dataclass(frozen=True)
class Obsolete:
    """A draft whose reason vanished: mark it, never delete it."""

    entry: LedgerEntry
    reason: str


@dataclass(frozen=True)
class Plan:
    drafts: tuple[PlannedMail, ...] = ()
    skips: tuple[Skip, ...] = ()
    obsolete: tuple[Obsolete, ...] = ()
    next_due: datetime | None = None
    """The earliest instant after ``now`` at which planning the same snapshot could decide
    anything else: a touchpoint it saw becomes due or its window closes, an interview starts or
    ends, the local day turns. Until then, the same snapshot gives the same plan (``None``: not
    known, plan every time)."""

    @property
    def empty(self) -> bool:
        return not (self.drafts or self.skips or self.obsolete)


@dataclass(frozen=True)
class _Candidate:
    """A touchpoint for one candidate before pacing decides its fate."""

    mail: PlannedMail

    @property
    def priority(self) -> tuple[int, datetime, str]:
        # Between two booking mails, the one about the earlier interview goes first.
        when = (
            self.mail.interview.event.start
            if self.mail.kind.is_announcement and self.mail.interview
            else self.mail.due
        )
        return (self.mail.kind.priority, when, self.mail.key.id)


def plan(snapshot: Snapshot, now: datetime, settings: Settings, calendar: WorkCalendar) -> Plan:
    """The drafts, skips and obsolete marks due for ``snapshot`` at ``now``."""
    if now.tzinfo is None:
        raise ValueError("now must be time-zone aware")
    first = _Planner(snapshot, now, settings, calendar).run()
    if not first.obsolete:
        return first
    # Decide the rest as if the obsolete marks were already made: otherwise a draft marked
    # obsolete now would still count as today's live draft (holding its replacement) and as the
    # candidate's welcome, and the next pass at the same instant would plan something else.
    gone = {o.entry.key.id for o in first.obsolete}
    ledger = tuple(
        replace(e, state=LedgerState.OBSOLETE) if e.key.id in gone else e for e in snapshot.ledger
    )
    second = _Planner(replace(snapshot, ledger=ledger), now, settings, calendar).run()
    return Plan(
        second.drafts,
        second.skips,
        first.obsolete + second.obsolete,
        _earliest(first.next_due, second.next_due),
    )


def _earliest(*moments: datetime | None) -> datetime | None:
    known = [m for m in moments if m is not None]
    return min(known) if known else None


class _Planner:
    def __init__(
        self, snapshot: Snapshot, now: datetime, settings: Settings, calendar: WorkCalendar
    ) -> None:
        self.s = snapshot
        self.now = now
        self.settings = settings
        self.cal = calendar
        self.tp = settings.touchpoints
        self.box = snapshot.mailbox
        self.today = calendar.local(now).date()
        self.lookback_start = self.today - timedelta(days=settings.service.lookback_days)
        self.ledger = {e.key.id: e for e in snapshot.ledger}
        self.by_candidate: dict[str, list[Interview]] = defaultdict(list)
        for interview in snapshot.interviews:
            self.by_candidate[interview.candidate.address].append(interview)
        for interviews in self.by_candidate.values():
            interviews.sort(key=lambda i: (i.event.start, i.event.occasion))
        self.entries_by_candidate: dict[str, list[LedgerEntry]] = defaultdict(list)
        for entry in snapshot.ledger:
            self.entries_by_candidate[entry.key.candidate].append(entry)
        self.skips: list[Skip] = []
        self.obsolete: list[Obsolete] = []

    # -- helpers -------------------------------------------------------------------------

    def key(self, candidate: str, kind: MailKind, occasion: str) -> DraftKey:
        return DraftKey(self.box.address, candidate, kind, occasion)

    def is_done(self, key: DraftKey) -> bool:
        entry = self.ledger.get(key.id)
        return entry is not None and entry.state.is_final

    def consider(self, mail: PlannedMail, out: list[_Candidate]) -> None:
        """Keep ``mail`` if it is not done yet; a mail past its window becomes a recorded skip."""
        if self.is_done(mail.key):
            return
        if self.now >= mail.valid_until:
            if mail.due.date() >= self.lookback_start or mail.kind.is_announcement:
                self.skips.append(
                    Skip(mail.key, mail.due, _stale_reason(mail), mail.no_contact_since)
                )
            return
        out.append(_Candidate(mail))

    # -- the run -------------------------------------------------------------------------

    def run(self) -> Plan:
        candidates: list[_Candidate] = []
        self.announcements(candidates)
        self.thank_yous(candidates)
        self.status_updates(candidates)
        self.weekend_greetings(candidates)
        self.holiday_greetings(candidates)
        self.vacation_notices(candidates)
        drafts = self.pace(candidates)
        return Plan(
            tuple(drafts), tuple(self.skips), tuple(self.obsolete), self.next_due(candidates)
        )

    def next_due(self, candidates: list[_Candidate]) -> datetime | None:
        """When this plan may stop being the answer for this snapshot (``Plan.next_due``).

        Everything the planner reads from ``now`` is one of these instants: ``today`` (and with it
        the lookback, the greetings' days, the status updates' days, pacing's "drafted today")
        turns at local midnight; a touchpoint not done yet becomes ready at its due time and stale
        at the end of its window; an interview's start and end decide its announcement's window,
        when its status updates start counting and whether its thank-you may fold early; a
        ledger row's interview start decides whether a vanished interview's draft is still
        marked obsolete (and whether its mailbox state is asked)."""
        later = [self.cal.end_of_day(self.today)]
        for c in candidates:
            later += (c.mail.due, c.mail.valid_until)
        for interview in self.s.interviews:
            later += (interview.event.start, interview.event.end)
        for entry in self.s.ledger:
            start = _parse(entry.context.get("start"))
            if start is not None and start.tzinfo is not None:
                later.append(start)
        return min((m for m in later if m > self.now), default=None)

    # -- booking mails -------------------------------------------------------------------

    def announcements(self, out: list[_Candidate]) -> None:
        live_occasions: dict[str, set[str]] = defaultdict(set)
        for address, interviews in self.by_candidate.items():
            announced = [
                e for e in self.entries_by_candidate.get(address, []) if e.key.kind.is_announcement
            ]
            welcomed = {
                e.context.get("occasion")
                for e in announced
                if e.key.kind is MailKind.WELCOME and e.is_live_draft
            }
            for number, interview in enumerate(interviews, start=1):
                occasion = interview.event.occasion
                live_occasions[address].add(occasion)
                prior = [
                    e
                    for e in announced
                    if e.context.get("occasion") == occasion and e.is_live_draft
                ]
                prior.sort(key=lambda e: (e.done_at or e.due, e.key.id))
                latest = prior[-1] if prior else None
                sent = [e for e in prior if e.remote_state is DraftState.SENT]
                if latest is not None and latest.remote_state is DraftState.DELETED:
                    continue  # the recruiter deleted this interview's mail: that decision stands
                if latest is not None and latest.context.get("start") == instant(
                    interview.event.start
                ):
                    if latest.state is LedgerState.ATTEMPTING:
                        # A create that may have happened: plan it again under its own key, so
                        # the executor looks it up (and adopts or creates) instead of forgetting it.
                        kind = latest.key.kind
                        previous = sent[-1] if sent and kind is MailKind.RESCHEDULE_NOTICE else None
                        self.announce(kind, interview, out, previous, key=latest.key)
                    continue
                if latest is None:
                    # The earliest interview we know of gets the welcome, unless another
                    # interview's welcome is already out (a cancelled first interview whose
                    # welcome was sent: the next one is "details").
                    first = number == 1 and not (welcomed - {occasion})
                    self.announce(
                        MailKind.WELCOME if first else MailKind.INTERVIEW_DETAILS, interview, out
                    )
                elif latest.remote_state is DraftState.SENT:
                    self.announce(MailKind.RESCHEDULE_NOTICE, interview, out, previous=latest)
                else:
                    self.obsolete.append(
                        Obsolete(latest, "the interview moved before the mail was sent")
                    )
                    if sent and sent[-1].context.get("start") == instant(interview.event.start):
                        pass  # moved back to the time the candidate was sent: nothing to tell
                    elif sent:
                        # The candidate knows the time from a sent mail: tell them it moved.
                        self.announce(MailKind.RESCHEDULE_NOTICE, interview, out, previous=sent[-1])
                    else:
                        self.announce(
                            latest.key.kind
                            if latest.key.kind is not MailKind.RESCHEDULE_NOTICE
                            else MailKind.INTERVIEW_DETAILS,
                            interview,
                            out,
                        )
        # Announcements for interviews that no longer exist (cancelled, removed, declined).
        for address, entries in self.entries_by_candidate.items():
            for entry in entries:
                if not (entry.key.kind.is_announcement and entry.is_live_draft):
                    continue
                if entry.context.get("occasion") in live_occasions.get(address, set()):
                    continue
                start = _parse(entry.context.get("start"))
                if entry.remote_state in (DraftState.SENT, DraftState.DELETED) or (
                    start is not None and start <= self.now
                ):
                    continue
                self.obsolete.append(Obsolete(entry, "the interview was cancelled or removed"))

    def announce(
        self,
        kind: MailKind,
        interview: Interview,
        out: list[_Candidate],
        previous: LedgerEntry | None = None,
        key: DraftKey | None = None,
    ) -> None:
        if not self.enabled(kind):
            return
        event = interview.event
        occasion = f"{event.occasion}@{instant(event.start)}"
        if key is None:
            key = self.key(interview.candidate.address, kind, occasion)
            # Moved away and back, or cancelled and booked again: the draft for this time is
            # obsolete and a key is drafted at most once, so take the next revision of the key.
            revision = 1
            while (
                entry := self.ledger.get(key.id)
            ) is not None and entry.state is LedgerState.OBSOLETE:
                revision += 1
                key = self.key(interview.candidate.address, kind, f"{occasion}#{revision}")
        mail = PlannedMail(
            key=key,
            due=min(self.now, event.start),
            valid_until=event.start,
            interview=interview,
            previous_start=_parse(previous.context.get("start")) if previous else None,
            context={"occasion": event.occasion, "start": instant(event.start)},
        )
        self.consider(mail, out)

    # -- after interviews ----------------------------------------------------------------

    def thank_yous(self, out: list[_Candidate]) -> None:
        if not self.tp.thank_you.enabled:
            return
        delay = timedelta(minutes=self.tp.thank_you.delay_minutes)
        for address, interviews in self.by_candidate.items():
            for interview in interviews:
                end = interview.event.end
                if (
                    end + delay > self.cal.end_of_day(self.today)
                    or self.cal.local(end).date() < self.lookback_start
                ):
                    continue
                last_day = self.cal.add_working_days(
                    self.cal.local(end).date(), self.tp.thank_you.valid_working_days
                )
                mail = PlannedMail(
                    key=self.key(address, MailKind.THANK_YOU, interview.event.occasion),
                    due=end + delay,
                    valid_until=self.cal.end_of_day(last_day),
                    interview=interview,
                    context={"occasion": interview.event.occasion},
                )
                self.consider(mail, out)

    def status_updates(self, out: list[_Candidate]) -> None:
        rule = self.tp.status_update
        if not rule.enabled:
            return
        for address, interviews in self.by_candidate.items():
            if address in self.s.closed or any(i.event.end > self.now for i in interviews):
                continue
            last = interviews[-1]
            occasion = last.event.occasion
            # By the key, not the context: a status update folded into another mail has none.
            earlier = [
                e
                for e in self.entries_by_candidate.get(address, [])
                if e.key.kind is MailKind.STATUS_UPDATE
                and e.key.occasion.rpartition("#")[0] == occasion
                and e.state.is_final
            ]
            anchors = [last.event.end]
            anchors += [e.due for e in earlier]
            contact = self.s.last_contact.get(address)
            if contact is not None:
                anchors.append(contact)
            anchor = max(anchors)
            # The whole chain up to today in one pass: an update whose day has gone by is skipped
            # (its window passed), and the next one counts from it, as it would have in time.
            for number in range(len(earlier) + 1, rule.max_repeats + 1):
                day = self.cal.add_working_days(
                    self.cal.local(anchor).date(), rule.after_working_days
                )
                if day > self.today:
                    break
                mail = PlannedMail(
                    key=self.key(address, MailKind.STATUS_UPDATE, f"{occasion}#{number}"),
                    due=self.cal.at(day, rule.at),
                    valid_until=self.cal.end_of_day(day),
                    interview=last,
                    no_contact_since=anchor,
                    context={"occasion": occasion, "number": number},
                )
                self.consider(mail, out)
                if mail.valid_until >= self.now:
                    break
                anchor = mail.due

    # -- greetings -----------------------------------------------------------------------

    def weekend_greetings(self, out: list[_Candidate]) -> None:
        rule = self.tp.weekend_greeting
        if not rule.enabled:
            return
        weekday = WEEKDAYS.index(rule.weekday)
        monday = self.today - timedelta(days=self.today.weekday())
        while monday + timedelta(days=weekday) >= self.lookback_start:
            day = monday + timedelta(days=weekday)
            week_start = self.cal.at(monday, _midnight())
            week_end = self.cal.end_of_day(day)
            if day <= self.today and self.cal.is_working_day(day):
                iso = day.isocalendar()
                for address, interviews in self.by_candidate.items():
                    met = [i for i in interviews if week_start <= i.event.start < week_end]
                    if not met:
                        continue
                    # It thanks for "the meeting this week": a mail the recruiter wrote to the
                    # candidate since that meeting ended makes it redundant.
                    mail = PlannedMail(
                        key=self.key(
                            address, MailKind.WEEKEND_GREETING, f"{iso.year}-W{iso.week:02d}"
                        ),
                        due=self.cal.at(day, rule.at),
                        valid_until=week_end,
                        interview=met[-1],
                        no_contact_since=min(met[-1].event.end, self.cal.at(day, _midnight())),
                    )
                    self.consider(mail, out)
            monday -= timedelta(days=7)

    def active_candidates(self, day: date) -> list[tuple[str, Interview]]:
        """Candidates in a process on ``day``: an interview within ``active_days`` before it or
        any time after, and not closed. Paired with their latest interview."""
        since = self.cal.at(day - timedelta(days=self.tp.active_days), _midnight())
        out = []
        for address, interviews in self.by_candidate.items():
            if address in self.s.closed:
                continue
            if any(i.event.end >= since for i in interviews):
                out.append((address, interviews[-1]))
        return out

    def holiday_greetings(self, out: list[_Candidate]) -> None:
        rule = self.tp.holiday_greeting
        if not rule.enabled:
            return
        for day in _days(self.lookback_start, self.today):
            run = self.cal.holiday_run_after(day, rule.min_days_off)
            if run is None:
                continue
            for address, interview in self.active_candidates(day):
                mail = PlannedMail(
                    key=self.key(
                        address, MailKind.HOLIDAY_GREETING, f"holiday:{run.first_day.isoformat()}"
                    ),
                    due=self.cal.at(day, rule.at),
                    valid_until=self.cal.end_of_day(day),
                    interview=interview,
                    # A mail the recruiter wrote in the last few days says enough.
                    no_contact_since=self.cal.at(
                        day - timedelta(days=rule.after_contact_days), _midnight()
                    ),
                    holiday=run,
                )
                self.consider(mail, out)

    def vacation_notices(self, out: list[_Candidate]) -> None:
        rule = self.tp.vacation_notice
        if not rule.enabled:
            return
        for absence in self.s.absences:
            first = self.cal.local(absence.start).date()
            last = self.cal.local(absence.end - timedelta(microseconds=1)).date()
            if (
                self.cal.working_days_between(first, last + timedelta(days=1))
                < rule.min_working_days
            ):
                continue
            day = first - timedelta(days=1)
            while not self.cal.is_working_day(day):
                day -= timedelta(days=1)
            if not (self.lookback_start <= day <= self.today):
                continue
            for address, interview in self.active_candidates(day):
                mail = PlannedMail(
                    key=self.key(
                        address, MailKind.VACATION_NOTICE, f"vacation:{first.isoformat()}"
                    ),
                    due=self.cal.at(day, rule.at),
                    valid_until=self.cal.end_of_day(day),
                    interview=interview,
                    absence=absence,
                )
                self.consider(mail, out)

    def enabled(self, kind: MailKind) -> bool:
        rule = getattr(self.tp, kind.value)
        return bool(rule.enabled)

    # -- pacing --------------------------------------------------------------------------

    def pace(self, candidates: list[_Candidate]) -> list[PlannedMail]:
        """At most one live draft per candidate per local day; what else is due that day folds
        into it. A lower-priority mail waits when a more important one is due later the same day
        (the weekend wish rides on the afternoon's thank-you), so the outcome does not depend on
        how often we poll."""
        drafts: list[PlannedMail] = []
        by_candidate: dict[str, list[_Candidate]] = defaultdict(list)
        for c in candidates:
            by_candidate[c.mail.candidate].append(c)
        end_of_today = self.cal.end_of_day(self.today)
        for address in sorted(by_candidate):
            if self.drafted_today(address):
                continue  # the rest waits for tomorrow (or its window closes: then a skip)
            items = by_candidate[address]
            # A mail already attempting (a pass died mid-create) must stay the main one: folding
            # it away would leave a draft in the mailbox that the ledger does not account for.
            ready = sorted(
                (c for c in items if c.mail.due <= self.now),
                key=lambda c: (not self.attempting(c.mail.key), c.priority),
            )
            later = sorted(
                (c for c in items if self.now < c.mail.due < end_of_today), key=lambda c: c.priority
            )
            if not ready:
                continue
            main = ready[0]
            # Two interviews the same day: one thank-you after the last, not one per session
            # (else the second waits for tomorrow, or not, depending on how often we poll).
            another_thank_you = main.mail.kind is MailKind.THANK_YOU and any(
                c.mail.kind is MailKind.THANK_YOU for c in later
            )
            if (
                later
                and (later[0].mail.kind.priority < main.mail.kind.priority or another_thank_you)
                and not self.attempting(main.mail.key)
            ):
                continue  # hold: everything folds into the more important mail later today
            # Another booking mail never folds: each interview's time and place deserve their
            # own mail, so it waits for the next day.
            folded = [c.mail.key for c in ready[1:] if not c.mail.kind.is_announcement]
            folded += [c.mail.key for c in later if self.may_fold_early(c.mail)]
            drafts.append(self.with_promise(_with_folded(main.mail, folded)))
        return drafts

    # -- promises ------------------------------------------------------------------------

    def with_promise(self, mail: PlannedMail) -> PlannedMail:
        """``mail`` with what it promises about the decision in its context (see ``PROMISE``).

        A thank-you promises a day from the stage's rule; a status update (or a vacation notice)
        keeps the last promise while it is ahead, moves it when the recruiter will be away, and
        when its day has come says so and gives a new day from the rule, once: a renewed
        promise that is broken too gets no third date, only the honest wording.
        """
        promise: dict[str, Any] | None
        if mail.kind is MailKind.THANK_YOU:
            promise = self.thank_you_promise(mail)
        elif mail.kind is MailKind.STATUS_UPDATE or (
            mail.kind is MailKind.VACATION_NOTICE or MailKind.STATUS_UPDATE in mail.folded_kinds
        ):
            promise = self.renewed_promise(mail)
        else:
            promise = None
        if promise is None:
            return mail
        return replace(mail, context={**mail.context, **promise})

    def decision_working_days(self, interview: Interview | None) -> int:
        stages = self.settings.stages
        if not stages:
            return 5
        number = 1
        if interview is not None:
            mine = self.by_candidate.get(interview.candidate.address, [])
            number = next(
                (n for n, i in enumerate(mine, 1) if i.event.occasion == interview.event.occasion),
                1,
            )
        return stages[min(number, len(stages)) - 1].decision_working_days

    def counted(self, start: date, days: int) -> dict[str, Any]:
        """A promise of the decision ``days`` working days in after ``start``, with its basis
        (so that a later mail can tell whether an absence it learns of moves the day)."""
        day = decision_day(self.cal, self.s.absences, start, days)
        return {PROMISE: _iso_day(day), PROMISE_FROM: start.isoformat(), PROMISE_DAYS: days}

    def thank_you_promise(self, mail: PlannedMail) -> dict[str, Any]:
        assert mail.interview is not None
        days = self.decision_working_days(mail.interview)
        promise = self.counted(self.cal.local(mail.interview.event.end).date(), days)
        day = _parse_day(promise[PROMISE])
        if day is not None and day <= self.today:
            promise = self.counted(self.today, days)
        return promise

    def renewed_promise(self, mail: PlannedMail) -> dict[str, Any] | None:
        speaks_of_decision = mail.kind is MailKind.STATUS_UPDATE or (
            MailKind.STATUS_UPDATE in mail.folded_kinds
        )
        days = self.decision_working_days(mail.interview)
        previous = self.latest_promise(mail.candidate, mail.key)
        if previous is None:
            return self.counted(self.today, days) if speaks_of_decision else None
        was_late = bool(previous.context.get(PROMISE_LATE))
        promised = _parse_day(previous.context.get(PROMISE))
        if promised is None:  # the last mail named no day: name one only if none was broken
            if not speaks_of_decision:
                return None
            if was_late:
                return {PROMISE: "", PROMISE_LATE: True}
            return self.counted(self.today, days)
        if promised > self.today:
            # Still ahead: keep it, unless an absence learnt of since eats the days it counted
            # on (counted again from the same start, the day can only move later).
            basis = {
                k: previous.context[k]
                for k in (PROMISE_FROM, PROMISE_DAYS)
                if k in previous.context
            }
            start = _parse_day(basis.get(PROMISE_FROM))
            count = basis.get(PROMISE_DAYS)
            if start is not None and isinstance(count, int):
                again = decision_day(self.cal, self.s.absences, start, count)
                if again is None or again > promised:
                    return {
                        PROMISE: _iso_day(again),
                        PROMISE_MOVED_FROM: promised.isoformat(),
                        **basis,
                    }
            if not speaks_of_decision:
                return None
            return {PROMISE: promised.isoformat(), PROMISE_REPEAT: True, **basis}
        # The promised day has come without a decision: say so, and renew the promise once.
        if was_late:
            return {PROMISE: "", PROMISE_LATE: True}
        return {**self.counted(self.today, days), PROMISE_LATE: True}

    def latest_promise(self, address: str, exclude: DraftKey) -> LedgerEntry | None:
        """The newest of our mails to ``address`` that said something about the decision and
        may have reached the candidate."""
        newest: LedgerEntry | None = None
        for entry in self.entries_by_candidate.get(address, []):
            if (
                entry.key.id == exclude.id
                or PROMISE not in entry.context
                or not entry.is_live_draft
                or entry.remote_state is DraftState.DELETED
            ):
                continue
            if newest is None or (entry.done_at or entry.due, entry.key.id) > (
                newest.done_at or newest.due,
                newest.key.id,
            ):
                newest = entry
        return newest

    def attempting(self, key: DraftKey) -> bool:
        entry = self.ledger.get(key.id)
        return entry is not None and entry.state is LedgerState.ATTEMPTING

    def drafted_today(self, address: str) -> bool:
        for entry in self.entries_by_candidate.get(address, []):
            if (
                entry.is_live_draft
                and entry.done_at is not None
                and self.cal.local(entry.done_at).date() == self.today
            ):
                return True
        return False

    def may_fold_early(self, mail: PlannedMail) -> bool:
        """A mail due later today may ride along now unless it speaks of something yet to happen."""
        if mail.kind is MailKind.THANK_YOU:
            return mail.interview is not None and mail.interview.event.end <= self.now
        return not mail.kind.is_announcement


def _with_folded(mail: PlannedMail, folded: list[DraftKey]) -> PlannedMail:
    return PlannedMail(
        key=mail.key,
        due=mail.due,
        valid_until=mail.valid_until,
        interview=mail.interview,
        folded=tuple(folded),
        no_contact_since=mail.no_contact_since,
        holiday=mail.holiday,
        absence=mail.absence,
        previous_start=mail.previous_start,
        context=mail.context,
    )


def _stale_reason(mail: PlannedMail) -> str:
    if mail.kind.is_announcement:
        return "the interview had already started when it was first seen"
    return "its window had passed (the service was not running, or the candidate already had a mail that day)"


def is_away(absences: Iterable[Period], calendar: WorkCalendar, day: date) -> bool:
    """Whether the recruiter is away for any part of ``day``."""
    for absence in absences:
        first = calendar.local(absence.start).date()
        last = calendar.local(absence.end - timedelta(microseconds=1)).date()
        if first <= day <= last:
            return True
    return False


def decision_day(
    calendar: WorkCalendar, absences: Iterable[Period], start: date, working_days: int
) -> date | None:
    """The day ``working_days`` working days after ``start`` on which the recruiter is in, or
    None when no day can be promised (no days configured, or further than the horizon)."""
    if working_days <= 0:
        return None
    away = tuple(absences)
    limit = start + timedelta(days=PROMISE_HORIZON_DAYS)
    day = start
    counted = 0
    while counted < working_days:
        day += timedelta(days=1)
        if day > limit:
            return None
        if calendar.is_working_day(day) and not is_away(away, calendar, day):
            counted += 1
    return day


def back_day(calendar: WorkCalendar, absences: Iterable[Period], absence: Period) -> date:
    """The first working day after ``absence`` on which the recruiter is in again (an absence
    right after this one counts too)."""
    day = calendar.local(absence.end - timedelta(microseconds=1)).date()
    away = tuple(absences)
    limit = day + timedelta(days=PROMISE_HORIZON_DAYS * 6)
    day = calendar.next_working_day(day)
    while is_away(away, calendar, day) and day < limit:
        day = calendar.next_working_day(day)
    return day


def _iso_day(day: date | None) -> str:
    return day.isoformat() if day is not None else ""


def _parse_day(value: Any) -> date | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        return None


def instant(moment: datetime) -> str:
    """A moment as a canonical UTC string, the same whichever zone a provider reported it in."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def _midnight() -> time:
    return time(0, 0)


def _days(first: date, last: date) -> Iterable[date]:
    day = first
    while day <= last:
        yield day
        day += timedelta(days=1)


def entries_needing_state(snapshot: Snapshot, now: datetime) -> list[LedgerEntry]:
    """Announcement drafts whose interview moved or vanished: the planner must know whether they
    were sent (reschedule notice) or not (mark obsolete, draft anew) before it can decide."""
    current: dict[tuple[str, str], str] = {
        (i.candidate.address, i.event.occasion): instant(i.event.start) for i in snapshot.interviews
    }
    out = []
    for entry in snapshot.ledger:
        if not (entry.key.kind.is_announcement and entry.state is LedgerState.DRAFTED):
            continue
        if entry.remote_state in (DraftState.SENT, DraftState.DELETED):
            continue
        start = _parse(entry.context.get("start"))
        if start is not None and start <= now:
            continue
        where = (entry.key.candidate, str(entry.context.get("occasion")))
        if current.get(where) != entry.context.get("start"):
            out.append(entry)
    return out
