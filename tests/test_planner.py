"""The planner as a specification: tables of (calendar, earlier passes, now) → drafts, skips, obsoletes.

Every case runs the real ``plan`` through ``tests.planner_harness.Sim``, which applies each earlier
pass to an in-memory ledger exactly as the executor does; the expectation is about the pass at
``now`` only. Candidates are written as short names (A, B) in the expectations.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from recruitmail.contracts.models import Attendee, DraftKey, Event, MailKind, Period, Response
from recruitmail.daemon.interviews import (
    REASON_BAD_TIMES,
    REASON_NO_CANDIDATE,
    Rejection,
    first_name,
    recognise,
)
from recruitmail.daemon.planner import LedgerEntry, LedgerState, Plan
from recruitmail.daemon.workdays import WorkCalendar
from tests.planner_harness import (
    RECRUITER,
    Sim,
    at,
    interview,
    make_settings,
    moved,
    person,
    summary,
)
from tests.scenario.spec import STOCKHOLM

A = "anna@example.com"
B = "bo@example.org"
WHO = {"A": A, "B": B}


def d(month: int, day: int) -> date:
    return date(2026, month, day)


# -- how a case is written ---------------------------------------------------------------------


@dataclass(frozen=True)
class Poll:
    """An earlier pass at ``at``; ``calendar`` None means the case's calendar."""

    at: datetime
    calendar: tuple[Event, ...] | None = None


@dataclass(frozen=True)
class Send:
    """The recruiter sends the newest draft to ``who`` (it leaves Drafts for Sent)."""

    at: datetime
    who: str


@dataclass(frozen=True)
class Write:
    """The recruiter writes to ``who`` by hand."""

    at: datetime
    who: str


Step = Poll | Send | Write


def polls(first: date, last: date, *times: str) -> tuple[Poll, ...]:
    """A pass at each of ``times`` on every day from ``first`` to ``last``."""
    out = []
    day = first
    while day <= last:
        out += [Poll(at(day, t)) for t in times]
        day += timedelta(days=1)
    return tuple(out)


@dataclass(frozen=True)
class Case:
    name: str
    calendar: tuple[Event, ...]
    now: datetime
    drafts: frozenset[str] = frozenset()  # "kind who"
    folded: frozenset[str] = frozenset()
    skips: frozenset[str] = frozenset()
    obsolete: frozenset[str] = frozenset()
    before: tuple[Step, ...] = ()
    ledger: tuple[LedgerEntry, ...] = ()
    absences: tuple[Period, ...] = ()
    closed: frozenset[str] = frozenset()
    overrides: dict[str, Any] = field(default_factory=dict)
    mailbox: dict[str, Any] = field(default_factory=dict)


def expect(*items: str) -> frozenset[str]:
    return frozenset(items)


def run(case: Case) -> tuple[Sim, Plan]:
    sim = Sim(
        make_settings(case.overrides, case.mailbox), absences=case.absences, closed=case.closed
    )
    for entry in case.ledger:
        sim.ledger[entry.key.id] = entry
    for step in sorted(case.before, key=lambda s: s.at):
        if isinstance(step, Poll):
            sim.poll(step.calendar if step.calendar is not None else case.calendar, step.at)
        elif isinstance(step, Send):
            sim.send(WHO[step.who], step.at)
        else:
            sim.write(WHO[step.who], step.at)
    return sim, sim.poll(case.calendar, case.now)


def named(pairs: set[tuple[str, str]]) -> set[str]:
    short = {v: k for k, v in WHO.items()}
    return {f"{kind} {short.get(who, who)}" for kind, who in pairs}


# -- the calendar pieces -------------------------------------------------------------------------

A_TUE = interview("a1@nordljus.se", A, at(d(12, 8), "10:00"))  # Tue 8 Dec
A_SECOND = interview("a2@nordljus.se", A, at(d(12, 16), "14:00"))  # Wed 16 Dec
A_FRI = interview("a-fri@nordljus.se", A, at(d(12, 11), "14:00"))  # Fri 11 Dec
A_DEC1 = interview("a-dec1@nordljus.se", A, at(d(12, 1), "10:00"))  # Tue 1 Dec
A_DEC18 = interview("a-dec18@nordljus.se", A, at(d(12, 18), "10:00"))
A_DEC16 = interview("a-dec16@nordljus.se", A, at(d(12, 16), "10:00"))
A_DEC23 = interview("a-dec23@nordljus.se", A, at(d(12, 23), "10:00"))
B_DEC1 = interview("b-dec1@nordljus.se", B, at(d(12, 1), "13:00"))
A_EASTER = interview("a-easter@nordljus.se", A, at(d(3, 31), "10:00"))  # Tue before Långfredagen
A_JUNE = interview("a-june@nordljus.se", A, at(d(6, 10), "10:00"))  # Wed before Midsummer week
A_SEPT = interview("a-sept@nordljus.se", A, at(d(9, 2), "10:00"))
A_TUE_AGAIN = interview("a1b@nordljus.se", A, at(d(12, 8), "11:00"))  # a second session
A_LATER = interview("a1@nordljus.se", A, at(d(12, 10), "10:00"))  # Thu 10 Dec, will move

NO_VACATION = {"vacations": []}

# After Tue 1 Dec: welcome on Mon 30 Nov, thank-you on the day, weekend greeting on Fri 4 Dec.
DEC1_HISTORY = (
    Poll(at(d(11, 30), "08:00")),
    Poll(at(d(12, 1), "11:30")),
    Poll(at(d(12, 4), "09:30")),
)

CASES = [
    # -- welcome and interview_details ----------------------------------------------------
    Case(
        "welcome for a first interview booked ahead",
        (A_TUE,),
        at(d(12, 7), "08:00"),
        drafts=expect("welcome A"),
    ),
    Case(
        "interview_details for a second interview",
        (A_TUE, A_SECOND),
        at(d(12, 10), "12:00"),
        before=(Poll(at(d(12, 7), "08:00"), (A_TUE,)), Poll(at(d(12, 8), "11:30"), (A_TUE,))),
        drafts=expect("interview_details A"),
    ),
    Case(
        "two interviews seen at once: the earlier gets the welcome today, details wait",
        (A_SECOND, A_TUE),
        at(d(12, 7), "08:00"),
        drafts=expect("welcome A"),
    ),
    Case(
        "a welcome for an interview that started before it was seen is skipped",
        (A_TUE,),
        at(d(12, 8), "10:30"),
        skips=expect("welcome A"),
    ),
    Case(
        "nothing is welcomed twice",
        (A_TUE,),
        at(d(12, 7), "16:00"),
        before=(Poll(at(d(12, 7), "08:00")),),
    ),
    # -- thank_you ---------------------------------------------------------------------------
    Case(
        "thank_you waits for the delay after the end",
        (A_TUE,),
        at(d(12, 8), "11:10"),
        before=(Poll(at(d(12, 7), "08:00")),),
    ),
    Case(
        "thank_you 15 minutes after the end",
        (A_TUE,),
        at(d(12, 8), "11:15"),
        before=(Poll(at(d(12, 7), "08:00")),),
        drafts=expect("thank_you A"),
    ),
    Case(
        "thank_you after a Friday interview is still valid on Tuesday",
        (A_FRI,),
        at(d(12, 15), "16:00"),
        before=(Poll(at(d(12, 7), "08:00")),),
        drafts=expect("thank_you A"),
        skips=expect("weekend_greeting A"),
    ),
    Case(
        "thank_you after a Friday interview is stale on Wednesday",
        (A_FRI,),
        at(d(12, 16), "08:00"),
        before=(Poll(at(d(12, 7), "08:00")),),
        skips=expect("thank_you A", "weekend_greeting A"),
    ),
    Case(
        "thank_you over Christmas: 23 Dec → valid through Tue 29 Dec",
        (A_DEC23,),
        at(d(12, 29), "16:00"),
        before=(Poll(at(d(12, 21), "08:00")),),
        mailbox=NO_VACATION,
        drafts=expect("thank_you A"),
        skips=expect("holiday_greeting A"),
    ),
    Case(
        "thank_you over Christmas is stale on Wed 30 Dec",
        (A_DEC23,),
        at(d(12, 30), "09:30"),
        before=(Poll(at(d(12, 21), "08:00")),),
        mailbox=NO_VACATION,
        drafts=expect("holiday_greeting A"),  # the New Year one, due today
        skips=expect("thank_you A", "holiday_greeting A"),
    ),  # and the Christmas one, missed
    # -- status_update -------------------------------------------------------------------------
    Case(
        "no status_update after four working days",
        (A_DEC1,),
        at(d(12, 7), "09:30"),
        before=DEC1_HISTORY,
    ),
    Case(
        "status_update after five working days of silence",
        (A_DEC1,),
        at(d(12, 8), "09:30"),
        before=DEC1_HISTORY,
        drafts=expect("status_update A"),
    ),
    Case(
        "status_update repeats five working days later",
        (A_DEC1,),
        at(d(12, 15), "09:30"),
        before=(*DEC1_HISTORY, Poll(at(d(12, 8), "09:30"))),
        drafts=expect("status_update A"),
    ),
    Case(
        "after a week down, the missed status_update is skipped and the one due today drafted",
        (A_DEC1,),
        at(d(12, 15), "09:30"),
        before=DEC1_HISTORY,
        drafts=expect("status_update A"),  # the second, due today
        skips=expect("status_update A"),  # the first, whose day went by while the service was down
    ),
    Case(
        "status_update stops after max_repeats",
        (A_DEC1,),
        at(d(12, 22), "09:30"),
        before=(*DEC1_HISTORY, Poll(at(d(12, 8), "09:30")), Poll(at(d(12, 15), "09:30"))),
    ),
    Case(
        "a mail from the recruiter postpones the status_update (not yet)",
        (A_DEC1,),
        at(d(12, 10), "09:30"),
        before=(*DEC1_HISTORY, Write(at(d(12, 4), "15:00"), "A"), Poll(at(d(12, 8), "09:30"))),
    ),
    Case(
        "a mail from the recruiter postpones the status_update (5 days after it)",
        (A_DEC1,),
        at(d(12, 11), "09:30"),
        before=(*DEC1_HISTORY, Write(at(d(12, 4), "15:00"), "A"), Poll(at(d(12, 8), "09:30"))),
        drafts=expect("status_update A"),
    ),
    Case(
        "no status_update while a next interview is booked",
        (A_DEC1, A_DEC18),
        at(d(12, 8), "09:30"),
        before=(*DEC1_HISTORY, Poll(at(d(12, 3), "12:00"))),
    ),
    Case(
        "no status_update once the process is closed",
        (A_DEC1,),
        at(d(12, 8), "09:30"),
        before=DEC1_HISTORY,
        closed=frozenset({A}),
    ),
    # -- weekend_greeting ----------------------------------------------------------------------
    Case(
        "weekend_greeting on Friday 09:00 for who had an interview this week",
        (A_TUE, B_DEC1),
        at(d(12, 11), "09:30"),
        before=polls(d(11, 30), d(12, 10), "09:30", "11:30"),
        drafts=expect("weekend_greeting A"),
    ),
    Case(
        "no weekend_greeting before 09:00",
        (A_TUE,),
        at(d(12, 11), "08:30"),
        before=polls(d(12, 7), d(12, 10), "09:30", "11:30"),
    ),
    Case(
        "no weekend_greeting on Långfredagen",
        (A_EASTER,),
        at(d(4, 3), "10:00"),
        before=polls(d(3, 30), d(4, 2), "09:30", "11:30"),
    ),
    Case(
        "the weekend greeting waits for, then rides on, the Friday thank-you (morning)",
        (A_FRI,),
        at(d(12, 11), "09:30"),
        before=(Poll(at(d(12, 7), "08:00")),),
    ),
    Case(
        "the weekend greeting waits for, then rides on, the Friday thank-you (afternoon)",
        (A_FRI,),
        at(d(12, 11), "15:30"),
        before=(Poll(at(d(12, 7), "08:00")), Poll(at(d(12, 11), "09:30"))),
        drafts=expect("thank_you A"),
        folded=expect("weekend_greeting A"),
    ),
    # -- holiday_greeting ----------------------------------------------------------------------
    Case(
        "holiday_greeting on Thu 18 June, before Midsommarafton",
        (A_JUNE,),
        at(d(6, 18), "09:30"),
        before=polls(d(6, 8), d(6, 17), "09:30", "11:30"),
        drafts=expect("holiday_greeting A"),
    ),
    Case(
        "holiday_greeting on Thu 2 April, before Långfredagen",
        (A_EASTER,),
        at(d(4, 2), "09:30"),
        before=polls(d(3, 30), d(4, 1), "09:30", "11:30"),
        drafts=expect("holiday_greeting A"),
    ),
    Case(
        "holiday_greeting on Wed 23 Dec carries the status_update due the same day",
        (A_DEC16,),
        at(d(12, 23), "09:30"),
        before=polls(d(12, 14), d(12, 22), "09:30", "11:30"),
        mailbox=NO_VACATION,
        drafts=expect("holiday_greeting A"),
        folded=expect("status_update A"),
    ),
    Case(
        "no holiday_greeting for a candidate whose last interview is long past",
        (A_JUNE,),
        at(d(12, 23), "09:30"),
        before=polls(d(6, 8), d(6, 30), "09:30"),
        mailbox=NO_VACATION,
    ),
    # -- vacation_notice -----------------------------------------------------------------------
    Case(
        "vacation_notice on 23 Dec before the configured vacation, carrying the rest",
        (A_DEC16,),
        at(d(12, 23), "09:30"),
        before=polls(d(12, 14), d(12, 22), "09:30", "11:30"),
        drafts=expect("vacation_notice A"),
        folded=expect("holiday_greeting A", "status_update A"),
    ),
    Case(
        "vacation_notice the last working day before a 3-working-day absence",
        (A_SEPT,),
        at(d(9, 11), "09:30"),
        before=polls(d(8, 31), d(9, 10), "09:30"),
        mailbox=NO_VACATION,
        absences=(Period(at(d(9, 14), "00:00"), at(d(9, 17), "00:00")),),
        drafts=expect("vacation_notice A"),
    ),
    Case(
        "no vacation_notice for a 2-working-day absence",
        (A_SEPT,),
        at(d(9, 11), "09:30"),
        before=polls(d(8, 31), d(9, 10), "09:30"),
        mailbox=NO_VACATION,
        absences=(Period(at(d(9, 14), "00:00"), at(d(9, 16), "00:00")),),
    ),
    # -- reschedule and cancellation -----------------------------------------------------------
    Case(
        "moved before the welcome was sent: obsolete, and a new welcome",
        (moved(A_LATER, at(d(12, 11), "10:00")),),
        at(d(12, 8), "09:00"),
        before=(Poll(at(d(12, 7), "08:00"), (A_LATER,)),),
        obsolete=expect("welcome A"),
        drafts=expect("welcome A"),
    ),
    Case(
        "moved after the welcome was sent: reschedule_notice",
        (moved(A_LATER, at(d(12, 11), "10:00")),),
        at(d(12, 8), "09:00"),
        before=(Poll(at(d(12, 7), "08:00"), (A_LATER,)), Send(at(d(12, 7), "12:00"), "A")),
        drafts=expect("reschedule_notice A"),
    ),
    Case(
        "cancelled before the welcome was sent: obsolete",
        (),
        at(d(12, 8), "09:00"),
        before=(Poll(at(d(12, 7), "08:00"), (A_LATER,)),),
        obsolete=expect("welcome A"),
    ),
    Case(
        "cancelled (STATUS:CANCELLED): obsolete",
        (replace(A_LATER, cancelled=True),),
        at(d(12, 8), "09:00"),
        before=(Poll(at(d(12, 7), "08:00"), (A_LATER,)),),
        obsolete=expect("welcome A"),
    ),
    Case(
        "a cancelled interview gets no thank_you",
        (),
        at(d(12, 10), "15:00"),
        before=(Poll(at(d(12, 7), "08:00"), (A_LATER,)), Poll(at(d(12, 8), "09:00"), ())),
    ),
    Case(
        "a sent welcome is left alone when the interview is cancelled",
        (),
        at(d(12, 8), "09:00"),
        before=(Poll(at(d(12, 7), "08:00"), (A_LATER,)), Send(at(d(12, 7), "12:00"), "A")),
    ),
    Case(
        "moved again after an unsent reschedule_notice: a new reschedule_notice, not details",
        (moved(A_LATER, at(d(12, 14), "10:00")),),
        at(d(12, 9), "10:00"),
        before=(
            Poll(at(d(12, 7), "08:00"), (A_LATER,)),
            Send(at(d(12, 7), "09:00"), "A"),
            Poll(at(d(12, 8), "10:00"), (moved(A_LATER, at(d(12, 11), "10:00")),)),
        ),
        obsolete=expect("reschedule_notice A"),
        drafts=expect("reschedule_notice A"),
    ),
    Case(
        "moved back to the time the candidate was sent: the unsent notice is obsolete, no new mail",
        (A_LATER,),
        at(d(12, 9), "10:00"),
        before=(
            Poll(at(d(12, 7), "08:00"), (A_LATER,)),
            Send(at(d(12, 7), "09:00"), "A"),
            Poll(at(d(12, 8), "10:00"), (moved(A_LATER, at(d(12, 11), "10:00")),)),
        ),
        obsolete=expect("reschedule_notice A"),
    ),
    Case(
        "an attempting welcome (a pass died mid-create) is planned again, not forgotten",
        (A_LATER,),
        at(d(12, 7), "09:00"),
        ledger=(
            LedgerEntry(
                DraftKey(RECRUITER, A, MailKind.WELCOME, "a1@nordljus.se@2026-12-10T09:00:00Z"),
                LedgerState.ATTEMPTING,
                at(d(12, 7), "08:00"),
                context={"occasion": "a1@nordljus.se", "start": "2026-12-10T09:00:00Z"},
            ),
        ),
        drafts=expect("welcome A"),
    ),
    # -- pacing --------------------------------------------------------------------------------
    Case(
        "thank_you and interview_details due the same moment: one draft, the other folded",
        (A_TUE, A_SECOND),
        at(d(12, 8), "12:00"),
        before=(Poll(at(d(12, 7), "08:00"), (A_TUE,)),),
        drafts=expect("interview_details A"),
        folded=expect("thank_you A"),
    ),
    Case(
        "one draft per candidate per day: a second booking the same day waits for tomorrow",
        (A_TUE, A_SECOND),
        at(d(12, 8), "15:00"),
        before=(Poll(at(d(12, 7), "08:00"), (A_TUE,)), Poll(at(d(12, 8), "11:30"), (A_TUE,))),
    ),
    Case(
        "two sessions the same day: the first thank-you waits for the second (11:15)",
        (A_TUE, A_TUE_AGAIN),
        at(d(12, 8), "11:15"),
        before=(Poll(at(d(12, 3), "08:00"), (A_TUE,)), Poll(at(d(12, 4), "08:00"))),
    ),
    Case(
        "two sessions the same day: one thank-you after the last, carrying the other (12:15)",
        (A_TUE, A_TUE_AGAIN),
        at(d(12, 8), "12:15"),
        before=(
            Poll(at(d(12, 3), "08:00"), (A_TUE,)),
            Poll(at(d(12, 4), "08:00")),
            Poll(at(d(12, 8), "11:15")),
        ),
        drafts=expect("thank_you A"),
        folded=expect("thank_you A"),
    ),
    Case(
        "an attempting row stays the main mail",
        (A_TUE, A_SECOND),
        at(d(12, 8), "12:00"),
        before=(Poll(at(d(12, 7), "08:00"), (A_TUE,)),),
        ledger=(
            LedgerEntry(
                DraftKey(RECRUITER, A, MailKind.THANK_YOU, A_TUE.occasion),
                LedgerState.ATTEMPTING,
                at(d(12, 8), "11:15"),
                context={"occasion": A_TUE.occasion},
            ),
        ),
        drafts=expect("thank_you A"),
    ),
    # -- daylight saving time ------------------------------------------------------------------
    Case(
        "spring forward (29 Mar): the thank-you is not due at 03:40 CEST",
        (interview("dst-spring", A, at(d(3, 29), "01:30"), 120),),
        datetime(2026, 3, 29, 1, 40, tzinfo=UTC),
        before=(Poll(at(d(3, 27), "10:00")),),
    ),
    Case(
        "spring forward (29 Mar): the thank-you at 03:45 CEST, an hour after it began",
        (interview("dst-spring", A, at(d(3, 29), "01:30"), 120),),
        datetime(2026, 3, 29, 1, 45, tzinfo=UTC),
        before=(Poll(at(d(3, 27), "10:00")),),
        drafts=expect("thank_you A"),
    ),
    Case(
        "fall back (25 Oct): an interview at the first 02:30 is not over at the second 02:30",
        (interview("dst-autumn", A, at(d(10, 25), "02:30"), 60),),
        datetime(2026, 10, 25, 1, 30, tzinfo=UTC),
        before=(Poll(at(d(10, 23), "10:00")),),
    ),
    Case(
        "fall back (25 Oct): its thank-you 15 minutes after it ends at 03:30 CET",
        (interview("dst-autumn", A, at(d(10, 25), "02:30"), 60),),
        datetime(2026, 10, 25, 2, 45, tzinfo=UTC),
        before=(Poll(at(d(10, 23), "10:00")),),
        drafts=expect("thank_you A"),
    ),
    # -- what is an interview ------------------------------------------------------------------
    Case(
        "an all-day event is not an interview",
        (replace(A_TUE, all_day=True, start=at(d(12, 8), "00:00"), end=at(d(12, 9), "00:00")),),
        at(d(12, 7), "08:00"),
    ),
    Case(
        "an event that ends before it starts is rejected",
        (replace(A_TUE, end=A_TUE.start - timedelta(hours=1)),),
        at(d(12, 7), "08:00"),
    ),
    Case(
        "an event the recruiter (an attendee) declined is ignored",
        (
            interview(
                "declined",
                A,
                at(d(12, 8), "10:00"),
                attendees=(person(RECRUITER, "Lisa Ek", Response.DECLINED), person(A, "Anna")),
                organizer=Attendee("erik.holm@nordljus.se", "Erik Holm", is_organizer=True),
            ),
        ),
        at(d(12, 7), "08:00"),
    ),
    Case(
        "an event the recruiter attends (not organises) counts",
        (
            interview(
                "attending",
                A,
                at(d(12, 8), "10:00"),
                attendees=(person(RECRUITER, "Lisa Ek"), person(A, "Anna")),
                organizer=Attendee("erik.holm@nordljus.se", "Erik Holm", is_organizer=True),
            ),
        ),
        at(d(12, 7), "08:00"),
        drafts=expect("welcome A"),
    ),
    Case(
        "one candidate in two letter cases is one candidate",
        (
            interview(
                "cases",
                None,
                at(d(12, 8), "10:00"),
                attendees=(
                    person(RECRUITER),
                    person("Anna@Example.COM", "Anna"),
                    person(A, "anna"),
                ),
            ),
            interview("cases-2", "ANNA@example.com", at(d(12, 16), "10:00")),
        ),
        at(d(12, 7), "08:00"),
        drafts=expect("welcome A"),
    ),
    Case(
        "the recruiter listed twice is not a candidate",
        (
            interview(
                "twice",
                None,
                at(d(12, 8), "10:00"),
                attendees=(
                    person(RECRUITER),
                    person("Lisa.Ek@Nordljus.se", "Lisa"),
                    person(A, "Anna"),
                ),
            ),
        ),
        at(d(12, 7), "08:00"),
        drafts=expect("welcome A"),
    ),
    Case(
        "an interview with no attendees drafts nothing",
        (interview("alone", None, at(d(12, 8), "10:00"), attendees=()),),
        at(d(12, 7), "08:00"),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_planner_table(case: Case) -> None:
    _, decided = run(case)
    got = {k: named(v) for k, v in summary(decided).items()}
    assert got == {
        "drafts": case.drafts,
        "folded": case.folded,
        "skips": case.skips,
        "obsolete": case.obsolete,
    }


# -- details a recruiter would check in the drafts ----------------------------------------------


def only_draft(decided: Plan) -> Any:
    (mail,) = decided.drafts
    return mail


def test_holiday_greeting_names_midsummer() -> None:
    _, decided = run(
        CASES[
            [c.name for c in CASES].index("holiday_greeting on Thu 18 June, before Midsommarafton")
        ]
    )
    mail = only_draft(decided)
    assert mail.holiday is not None
    assert mail.holiday.holiday.key == "midsummer"
    assert mail.holiday.holiday.names["sv"].startswith("Midsommar")
    assert (mail.holiday.first_day, mail.holiday.last_day) == (d(6, 19), d(6, 21))
    assert mail.valid_until == at(d(6, 19), "00:00")


def test_holiday_greeting_names_christmas() -> None:
    case = next(c for c in CASES if c.name.startswith("holiday_greeting on Wed 23 Dec"))
    mail = only_draft(run(case)[1])
    assert mail.holiday.holiday.key == "christmas"
    assert (mail.holiday.first_day, mail.holiday.last_day) == (d(12, 24), d(12, 27))


def test_status_updates_are_numbered_and_anchored() -> None:
    sim = Sim(make_settings())
    for step in DEC1_HISTORY:
        sim.poll((A_DEC1,), step.at)
    first = only_draft(sim.poll((A_DEC1,), at(d(12, 8), "09:30")))
    second = only_draft(sim.poll((A_DEC1,), at(d(12, 15), "09:30")))
    assert first.key.occasion.endswith("#1") and second.key.occasion.endswith("#2")
    assert first.due == at(d(12, 8), "09:00") and second.due == at(d(12, 15), "09:00")
    assert first.no_contact_since == A_DEC1.end
    assert first.valid_until == at(d(12, 9), "00:00")


def test_reschedule_notice_knows_the_previous_time() -> None:
    case = next(c for c in CASES if c.name == "moved after the welcome was sent: reschedule_notice")
    mail = only_draft(run(case)[1])
    assert mail.previous_start == A_LATER.start
    assert mail.interview.event.start == at(d(12, 11), "10:00")
    assert mail.valid_until == at(d(12, 11), "10:00")


def test_moved_and_moved_back_is_a_new_welcome_each_time_never_a_duplicate() -> None:
    sim = Sim(make_settings())
    other = moved(A_LATER, at(d(12, 11), "10:00"))
    sim.poll((A_LATER,), at(d(12, 7), "08:00"))
    sim.poll((other,), at(d(12, 8), "08:00"))
    sim.poll((A_LATER,), at(d(12, 9), "08:00"))
    keys = [done.mail.key.id for done in sim.drafted]
    assert len(keys) == len(set(keys)) == 3
    assert [done.mail.interview.event.start for done in sim.drafted] == [
        A_LATER.start,
        other.start,
        A_LATER.start,
    ]
    live = [k for k in keys if sim.ledger[k].state is LedgerState.DRAFTED]
    assert live == [keys[-1]]


def test_a_welcome_the_recruiter_deleted_is_not_replaced_when_the_interview_moves() -> None:
    sim = Sim(make_settings())
    sim.poll((A_LATER,), at(d(12, 7), "08:00"))
    (welcome,) = sim.drafted
    sim.deleted.add(welcome.mail.key.id)
    decided = sim.poll((moved(A_LATER, at(d(12, 11), "10:00")),), at(d(12, 8), "08:00"))
    assert decided.drafts == () and decided.obsolete == ()
    # Cancelled later: nothing to mark either.
    assert sim.poll((), at(d(12, 9), "08:00")).obsolete == ()


def test_a_reschedule_notice_after_an_unsent_one_names_the_time_the_candidate_knows() -> None:
    case = next(
        c for c in CASES if c.name.startswith("moved again after an unsent reschedule_notice")
    )
    sim, decided = run(case)
    mail = only_draft(decided)
    assert mail.previous_start == A_LATER.start  # the sent welcome's time, not the unsent notice's
    assert mail.interview.event.start == at(d(12, 14), "10:00")


def test_an_attempting_welcome_keeps_its_key() -> None:
    case = next(c for c in CASES if c.name.startswith("an attempting welcome"))
    (entry,) = case.ledger
    assert only_draft(run(case)[1]).key == entry.key


def test_dst_gap_start_is_read_as_the_instant_after_the_gap() -> None:
    """02:30 does not exist on 29 March; RFC 5545 reads it with the offset before the gap, 03:30 CEST."""
    event = interview("gap", A, at(d(3, 29), "02:30"), 90)  # until 04:00 CEST: half an hour
    sim = Sim(make_settings())
    mail = only_draft(sim.poll((event,), at(d(3, 27), "10:00")))
    assert mail.key.occasion == "gap@2026-03-29T01:30:00Z"
    assert (
        only_draft(sim.poll((event,), datetime(2026, 3, 29, 2, 15, tzinfo=UTC))).kind
        is MailKind.THANK_YOU
    )


def test_polling_twice_in_the_repeated_hour_drafts_once() -> None:
    event = interview("dst-autumn", A, at(d(10, 25), "01:00"), 60)  # ends at the first 02:00
    sim = Sim(make_settings())
    sim.poll((event,), at(d(10, 23), "10:00"))
    first_0230 = datetime(2026, 10, 25, 0, 30, tzinfo=UTC)  # 02:30 CEST
    second_0230 = datetime(2026, 10, 25, 1, 30, tzinfo=UTC)  # 02:30 CET
    assert [m.kind for m in sim.poll((event,), first_0230).drafts] == [MailKind.THANK_YOU]
    assert sim.poll((event,), second_0230).empty


def test_a_recruiter_mail_after_the_weekend_greeting_trigger_skips_it() -> None:
    """Respect the recruiter's hand: they wrote on Friday morning, the greeting is not drafted."""
    sim = Sim(make_settings())
    sim.poll((A_TUE,), at(d(12, 7), "08:00"))
    sim.poll((A_TUE,), at(d(12, 8), "11:30"))
    sim.write(A, at(d(12, 11), "08:00"))
    assert sim.poll((A_TUE,), at(d(12, 11), "09:30")).drafts  # planned, then checked against Sent
    assert sim.rows(LedgerState.SKIPPED) == {("weekend_greeting", A)}
    assert ("weekend_greeting", A) not in sim.rows(LedgerState.DRAFTED)


def test_a_status_update_chain_missed_while_down_is_caught_up_in_one_pass() -> None:
    sim = Sim(make_settings())
    for step in DEC1_HISTORY:
        sim.poll((A_DEC1,), step.at)
    caught_up = sim.poll((A_DEC1,), at(d(12, 15), "09:30"))
    assert only_draft(caught_up).key.occasion.endswith("#2")
    assert [s.key.occasion[-2:] for s in caught_up.skips] == ["#1"]
    assert sim.poll((A_DEC1,), at(d(12, 15), "09:30")).empty, "a replay plans nothing new"


def test_replaying_the_same_instant_plans_nothing_new() -> None:
    sim = Sim(make_settings())
    for moment in (at(d(12, 7), "08:00"), at(d(12, 8), "11:30"), at(d(12, 11), "09:30")):
        sim.poll((A_TUE, A_SECOND), moment)
        assert sim.poll((A_TUE, A_SECOND), moment).empty


# -- recognising interviews -----------------------------------------------------------------------


def test_rejections_say_why() -> None:
    s = make_settings()
    box = s.mailboxes[0]
    backwards = replace(A_TUE, end=A_TUE.start - timedelta(minutes=1))
    reasons = {
        "backwards": recognise(backwards, box, s),
        "alone": recognise(interview("alone", None, A_TUE.start, attendees=()), box, s),
        "all-day": recognise(replace(A_TUE, all_day=True), box, s),
        "cancelled": recognise(replace(A_TUE, cancelled=True), box, s),
        "lunch": recognise(replace(A_TUE, subject="Lunch"), box, s),
    }
    assert all(isinstance(r, Rejection) for r in reasons.values())
    assert reasons["backwards"].reason == REASON_BAD_TIMES  # type: ignore[union-attr]
    assert reasons["alone"].reason == REASON_NO_CANDIDATE  # type: ignore[union-attr]


def test_a_category_makes_an_interview_whatever_the_subject() -> None:
    s = make_settings()
    found = recognise(
        replace(A_TUE, subject="Lunch", categories=("Rekrytering",)), s.mailboxes[0], s
    )
    assert not isinstance(found, Rejection)
    assert [i.candidate.address for i in found] == [A]


@pytest.mark.parametrize(
    ("display", "expected"),
    [
        ("Svensson, Anna", "Anna"),
        ("Anna Svensson", "Anna"),
        ("ANNA SVENSSON", "Anna"),
        ("Dr. Anna Svensson", "Anna"),
        ("Anna Svensson (Extern)", "Anna"),
        (unicodedata.normalize("NFD", "Öberg, Åsa"), unicodedata.normalize("NFC", "Åsa")),
        (unicodedata.normalize("NFD", "Örjan Ek"), unicodedata.normalize("NFC", "Örjan")),
        ("\u202eAnna Svensson", "Anna"),
        ("Ann\u202ea", "Ann"),
        ("{{ 7*7 }}", ""),
        ("{% raw %}Anna", "Anna"),  # the bracketed part goes, like "(Extern)"
        ("Anna {{ config }}", "Anna"),
        ("", ""),
        ("anna.svensson@example.com", ""),
        ("O'Brien, Seán", "Seán"),
    ],
)
def test_first_name(display: str, expected: str) -> None:
    assert first_name(display) == expected


# -- working days ----------------------------------------------------------------------------------

SWEDEN = WorkCalendar("SE", STOCKHOLM)


@pytest.mark.parametrize(
    ("start", "count", "expected"),
    [
        (d(12, 8), 0, d(12, 8)),
        (d(12, 8), 1, d(12, 9)),
        (d(12, 11), 2, d(12, 15)),  # Friday + 2 → Tuesday
        (d(12, 12), 1, d(12, 14)),  # from a Saturday
        (d(12, 23), 1, d(12, 28)),  # julafton, juldagen, annandag jul, a Sunday
        (d(12, 23), 2, d(12, 29)),
        (d(12, 30), 1, date(2027, 1, 4)),  # nyårsafton, nyårsdagen, a weekend
        (d(4, 2), 1, d(4, 7)),  # Easter
        (d(6, 18), 1, d(6, 22)),  # Midsummer
        (d(5, 13), 1, d(5, 15)),  # Ascension Day
        (d(12, 1), 5, d(12, 8)),
    ],
)
def test_add_working_days(start: date, count: int, expected: date) -> None:
    assert SWEDEN.add_working_days(start, count) == expected


@pytest.mark.parametrize(
    ("day", "minimum", "expected"),
    [
        (d(6, 18), 3, (d(6, 19), d(6, 21), "midsummer")),
        (d(12, 23), 3, (d(12, 24), d(12, 27), "christmas")),
        (d(4, 2), 3, (d(4, 3), d(4, 6), "easter")),
        (d(12, 30), 3, (d(12, 31), date(2027, 1, 3), "new_year")),
        (d(5, 13), 3, None),  # Ascension Day alone is one day off
        (d(5, 13), 1, (d(5, 14), d(5, 14), "ascension")),
        (d(6, 17), 3, None),  # the day after is a working day
        (d(6, 19), 3, None),  # not a working day itself
        (d(12, 11), 2, None),  # a plain weekend has no holiday
    ],
)
def test_holiday_run_after(
    day: date, minimum: int, expected: tuple[date, date, str] | None
) -> None:
    run_ = SWEDEN.holiday_run_after(day, minimum)
    got = None if run_ is None else (run_.first_day, run_.last_day, run_.holiday.key)
    assert got == expected


def test_company_closure_days_lengthen_a_run() -> None:
    bridged = WorkCalendar(
        "SE", STOCKHOLM, closure_days=[d(5, 15)]
    )  # the "klämdag" after Ascension
    run_ = bridged.holiday_run_after(d(5, 13), 3)
    assert run_ is not None and (run_.first_day, run_.last_day, run_.holiday.key) == (
        d(5, 14),
        d(5, 17),
        "ascension",
    )


def test_eves_are_days_off() -> None:
    assert not SWEDEN.is_working_day(d(6, 19))  # Midsommarafton
    assert not SWEDEN.is_working_day(d(12, 24))  # julafton
    assert not SWEDEN.is_working_day(d(12, 31))  # nyårsafton
    assert SWEDEN.is_working_day(d(4, 2))  # skärtorsdagen is a working day


# -- greetings respect the recruiter's own mails -------------------------------------------------

A_THU = interview("a-thu@nordljus.se", A, at(d(12, 10), "13:00"))  # Thu 10 Dec
A_JUNE = interview("a-june@nordljus.se", A, at(d(6, 9), "10:00"))  # Tue 9 June
QUIET = {
    "thank_you": {"enabled": False},
    "status_update": {"enabled": False},
}


@dataclass(frozen=True)
class ContactCase:
    """The recruiter wrote to Anna at ``writes``; is the greeting due at ``now`` drafted?"""

    name: str
    calendar: tuple[Event, ...]
    writes: tuple[datetime, ...]
    now: datetime
    kind: str
    drafted: bool
    touchpoints: dict[str, Any] = field(default_factory=dict)


FRIDAY = at(d(12, 11), "09:30")  # the weekend greeting for the week of Tue 8 Dec
MIDSUMMER = at(d(6, 18), "09:30")  # the last working day before Midsommarafton
CONTACT_CASES = [
    ContactCase("weekend: no mail at all", (A_TUE,), (), FRIDAY, "weekend_greeting", True),
    ContactCase(
        "weekend: a mail after the meeting makes it redundant",
        (A_TUE,),
        (at(d(12, 9), "12:00"),),
        FRIDAY,
        "weekend_greeting",
        False,
    ),
    ContactCase(
        "weekend: a mail before the meeting does not count",
        (A_TUE,),
        (at(d(12, 7), "12:00"),),
        FRIDAY,
        "weekend_greeting",
        True,
    ),
    ContactCase(
        "weekend: a mail during the meeting does not count",
        (A_TUE,),
        (at(d(12, 8), "10:30"),),
        FRIDAY,
        "weekend_greeting",
        True,
    ),
    ContactCase(
        "weekend: a mail between two meetings does not cover the second",
        (A_TUE, A_THU),
        (at(d(12, 9), "12:00"),),
        FRIDAY,
        "weekend_greeting",
        True,
    ),
    ContactCase(
        "weekend: a mail after the last of two meetings",
        (A_TUE, A_THU),
        (at(d(12, 10), "16:00"),),
        FRIDAY,
        "weekend_greeting",
        False,
    ),
    ContactCase(
        "weekend: a mail on the greeting's own morning",
        (A_TUE,),
        (at(d(12, 11), "08:00"),),
        FRIDAY,
        "weekend_greeting",
        False,
    ),
    ContactCase("holiday: no mail at all", (A_JUNE,), (), MIDSUMMER, "holiday_greeting", True),
    ContactCase(
        "holiday: a mail three days before (the default) makes it redundant",
        (A_JUNE,),
        (at(d(6, 15), "10:00"),),
        MIDSUMMER,
        "holiday_greeting",
        False,
    ),
    ContactCase(
        "holiday: a mail four days before does not count",
        (A_JUNE,),
        (at(d(6, 14), "23:00"),),
        MIDSUMMER,
        "holiday_greeting",
        True,
    ),
    ContactCase(
        "holiday: with 0 days, a mail the day before does not count",
        (A_JUNE,),
        (at(d(6, 17), "16:00"),),
        MIDSUMMER,
        "holiday_greeting",
        True,
        {"holiday_greeting": {"after_contact_days": 0}},
    ),
    ContactCase(
        "holiday: with 0 days, a mail that morning does",
        (A_JUNE,),
        (at(d(6, 18), "08:00"),),
        MIDSUMMER,
        "holiday_greeting",
        False,
        {"holiday_greeting": {"after_contact_days": 0}},
    ),
    ContactCase(
        "holiday: with 7 days, a mail the Friday before does",
        (A_JUNE,),
        (at(d(6, 12), "16:00"),),
        MIDSUMMER,
        "holiday_greeting",
        False,
        {"holiday_greeting": {"after_contact_days": 7}},
    ),
]


@pytest.mark.parametrize("case", CONTACT_CASES, ids=[c.name for c in CONTACT_CASES])
def test_greetings_respect_the_recruiters_own_mails(case: ContactCase) -> None:
    sim = Sim(make_settings({"touchpoints": {**QUIET, **case.touchpoints}}, {"vacations": []}))
    for moment in case.writes:
        sim.write(A, moment)
    sim.poll(case.calendar, case.now)
    drafted = (case.kind, A) in sim.rows(LedgerState.DRAFTED)
    skipped = (case.kind, A) in sim.rows(LedgerState.SKIPPED)
    assert (drafted, skipped) == (case.drafted, not case.drafted)
