"""Properties of the planner over random small calendars (Hypothesis), through the pure simulator.

A scenario is a ten-day stretch from a Monday (around Easter, Ascension, Midsummer, both DST
changes, Christmas and the recruiter's vacation, or an ordinary week) with 1–4 candidates, each
with 1–4 interviews. Every calendar change (booking, move, cancellation) and every recruiter send
happens on a whole hour, so a poll every 15 minutes and a poll every hour see the same calendar
at every instant they share.

What the generator keeps out, so that the frequency property (d) is about the planner and not
about windows shorter than the coarser interval (each exclusion names the window it avoids):
- bookings and moves happen at least a day before the (new) start: the welcome/details window
  ("until it starts") is never shorter than an hour;
- interviews run 08:00–18:00 local: a thank-you never falls due in the last hour of a day, so its
  "end of that working day" window is never shorter than an hour;
- cancellations happen before the interview starts: a thank-you due at :15 is never drafted by the
  fine schedule for an interview the coarse one already sees cancelled at the next hour;
- a recruiter "send" targets the announcement of one interview and happens once every schedule
  has drafted it (at least a day per booked interview of that candidate after the booking):
  otherwise which draft is "the newest" depends on the poll interval.
Greetings and status updates are due at 09:00 (a whole hour) and valid until midnight; they need
no exclusion.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recruitmail.contracts.models import Event
from recruitmail.daemon.planner import LedgerState, Plan, entries_needing_state
from tests.planner_harness import Sim, at, interview, make_settings
from tests.scenario.spec import STOCKHOLM

SETTINGS = make_settings()
DAYS = 10
MONDAYS = (
    date(2026, 3, 23),  # spring forward on Sunday 29 March
    date(2026, 3, 30),  # Easter
    date(2026, 5, 11),  # Ascension Day
    date(2026, 6, 15),  # Midsummer
    date(2026, 10, 19),  # fall back on Sunday 25 October
    date(2026, 12, 14),  # Christmas, then the configured vacation
    date(2026, 11, 9),  # an ordinary fortnight
)
HOUR = timedelta(hours=1)


@dataclass(frozen=True)
class Booking:
    """One interview's life: booked, perhaps moved once, perhaps cancelled."""

    candidate: str
    event: Event
    booked_at: datetime
    moved_at: datetime | None = None
    moved_to: Event | None = None
    cancelled_at: datetime | None = None

    def at(self, moment: datetime) -> Event | None:
        """The event as the calendar shows it at ``moment`` (None: not there)."""
        if moment < self.booked_at or (
            self.cancelled_at is not None and moment >= self.cancelled_at
        ):
            return None
        if self.moved_at is not None and self.moved_to is not None and moment >= self.moved_at:
            return self.moved_to
        return self.event


@dataclass(frozen=True)
class Scenario:
    origin: datetime  # Monday 00:00 local, as UTC
    bookings: tuple[Booking, ...]
    sends: tuple[
        tuple[datetime, int], ...
    ]  # (when, booking index): send that interview's announcement

    def calendar(self, moment: datetime) -> tuple[Event, ...]:
        return tuple(e for b in self.bookings if (e := b.at(moment)) is not None)

    @property
    def end(self) -> datetime:
        """Midnight after the last whole local day (DST makes some days 23 or 25 hours)."""
        last = self.origin.astimezone(STOCKHOLM).date() + timedelta(days=DAYS)
        return at(last, "00:00").astimezone(UTC)


def _hour_between(draw: st.DrawFn, first: datetime, last: datetime) -> datetime | None:
    """A whole hour in [first, last], or None when the span is empty."""
    hours = int((last - first) / HOUR)
    return None if hours < 0 else first + draw(st.integers(0, hours)) * HOUR


def _start(draw: st.DrawFn, monday: date) -> datetime:
    day = monday + timedelta(days=draw(st.integers(1, DAYS - 1)))
    return at(day, f"{draw(st.integers(8, 16)):02d}:00")


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    monday = draw(st.sampled_from(MONDAYS))
    origin = at(monday, "00:00").astimezone(UTC)
    bookings: list[Booking] = []
    sends: list[tuple[datetime, int]] = []
    for c in range(draw(st.integers(1, 4))):
        candidate = f"cand{c}@example.com"
        count = draw(st.integers(1, 4))
        for j in range(count):
            start = _start(draw, monday)
            event = interview(
                f"{c}-{j}@nordljus.se", candidate, start, draw(st.sampled_from((30, 60, 90)))
            )
            booked = (
                _hour_between(draw, origin, start.astimezone(UTC) - timedelta(days=1)) or origin
            )
            booking = Booking(candidate, event, booked)
            if draw(st.booleans()):
                moved_at = booked + draw(st.integers(1, 72)) * HOUR
                new_start = _start(draw, monday)
                if moved_at < event.start and new_start - moved_at >= timedelta(days=1):
                    booking = replace(
                        booking,
                        moved_at=moved_at,
                        moved_to=replace(
                            event, start=new_start, end=new_start + (event.end - event.start)
                        ),
                    )
            if draw(st.integers(0, 4)) == 0:
                first_start = min(
                    event.start, booking.moved_to.start if booking.moved_to else event.start
                )
                booking = replace(
                    booking, cancelled_at=_hour_between(draw, booked + HOUR, first_start - HOUR)
                )
            if draw(st.booleans()):
                settle = booked + timedelta(days=count + 1)
                sends.append((settle + draw(st.integers(0, 48)) * HOUR, len(bookings)))
            bookings.append(booking)
    return Scenario(origin, tuple(bookings), tuple(sorted(sends, key=lambda s: s[0])))


def send_announcement(sim: Sim, scenario: Scenario, index: int, moment: datetime) -> None:
    """The recruiter sends the live announcement of booking ``index``, if the sim drafted one."""
    occasion = scenario.bookings[index].event.occasion
    for done in sim.drafted:
        entry = sim.ledger[done.mail.key.id]
        if (
            done.mail.kind.is_announcement
            and entry.state is LedgerState.DRAFTED
            and entry.context.get("occasion") == occasion
            and done.mail.key.id not in sim.sent
        ):
            sim.sent.add(done.mail.key.id)
            sim.write(done.mail.candidate, moment)


def instants(scenario: Scenario, step: timedelta) -> list[datetime]:
    out = []
    moment = scenario.origin
    while moment < scenario.end:
        out.append(moment)
        moment += step
    return out


def simulate(scenario: Scenario, step: timedelta, check: bool = False) -> Sim:
    """Poll every ``step`` over the scenario; with ``check``, assert (a), (b) and (c) on the way."""
    sim = Sim(SETTINGS)
    sends = list(scenario.sends)
    for moment in instants(scenario, step):
        while sends and sends[0][0] <= moment:
            when, index = sends.pop(0)
            send_announcement(sim, scenario, index, when)
        calendar = scenario.calendar(moment)
        final_before = {k for k, e in sim.ledger.items() if e.state.is_final}
        decided = sim.poll(calendar, moment)
        if not check:
            continue
        # (a) nothing already drafted, folded or skipped is drafted or folded again.
        touched = [m.key.id for m in decided.drafts] + [
            k.id for m in decided.drafts for k in m.folded
        ]
        assert len(touched) == len(set(touched)), "a key is planned twice in one pass"
        assert not set(touched) & final_before, "a key that was done is drafted or folded again"
        # (b) at most one live draft per candidate on this local day.
        today = moment.astimezone(STOCKHOLM).date()
        live_today = Counter(
            e.key.candidate
            for e in sim.ledger.values()
            if e.state is LedgerState.DRAFTED
            and e.done_at is not None
            and e.done_at.astimezone(STOCKHOLM).date() == today
        )
        assert max(live_today.values(), default=0) <= 1, (
            f"two live drafts for one candidate on {today}"
        )
        # (c) the same instant again plans nothing new.
        if not decided.empty:
            again = sim.poll(calendar, moment)
            assert again.empty, f"replaying {moment} planned {again}"
    if check:
        drafted = [d.mail.key.id for d in sim.drafted]
        assert len(drafted) == len(set(drafted)), "a key was drafted twice"
    return sim


def handled(sim: Sim) -> set[tuple[str, str, str]]:
    """(candidate, kind, occasion) of every key drafted (even if since obsolete) or folded."""
    return {
        (e.key.candidate, e.key.kind.value, e.key.occasion)
        for k, e in sim.ledger.items()
        if k in sim.handled()
    }


BOUNDED = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@BOUNDED
@given(scenarios())
def test_no_duplicates_one_live_draft_a_day_and_replays_are_empty(scenario: Scenario) -> None:
    simulate(scenario, timedelta(minutes=15), check=True)


@BOUNDED
@given(scenarios())
def test_polling_every_15_minutes_or_every_hour_handles_the_same_mails(scenario: Scenario) -> None:
    fine = handled(simulate(scenario, timedelta(minutes=15)))
    coarse = handled(simulate(scenario, timedelta(hours=1)))
    assert sorted(fine - coarse) == [] and sorted(coarse - fine) == []


# -- skipping the passes that cannot plan anything ---------------------------------------------


class SkippingSim(Sim):
    """The simulator with the daemon's idle rule (``MailboxRunner.nothing_to_plan``): after an
    empty plan over a snapshot that needed no mailbox states, a pass whose calendar, ledger and
    contacts are unchanged and whose instant is before the plan's ``next_due`` plans nothing."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.quiet: tuple[tuple[Event, ...], dict[str, object], dict[str, datetime]] | None = None
        self.quiet_span: tuple[datetime, datetime] | None = None
        self.skipped = 0
        self.planned = 0

    def poll(self, events: Iterable[Event], now: datetime) -> Plan:
        now = now.astimezone(UTC)
        events = tuple(events)
        inputs = (events, dict(self.ledger), dict(self.contacts))
        if (
            self.quiet is not None
            and self.quiet_span is not None
            and self.quiet == inputs
            and self.quiet_span[0] <= now < self.quiet_span[1]
        ):
            self.skipped += 1
            return Plan()
        self.planned += 1
        asked = bool(entries_needing_state(self.snapshot(events), now))
        decided = super().poll(events, now)
        if decided.empty and not asked and decided.next_due is not None:
            assert decided.next_due > now, "the next due time of a plan is after its instant"
            self.quiet = (events, dict(self.ledger), dict(self.contacts))
            self.quiet_span = (now, decided.next_due)
        else:
            self.quiet = self.quiet_span = None
        return decided


def replay(sim: Sim, scenario: Scenario, step: timedelta) -> Sim:
    """``simulate``'s loop, for a simulator of the caller's choosing."""
    sends = list(scenario.sends)
    for moment in instants(scenario, step):
        while sends and sends[0][0] <= moment:
            when, index = sends.pop(0)
            send_announcement(sim, scenario, index, when)
        sim.poll(scenario.calendar(moment), moment)
    return sim


def drafted_log(sim: Sim) -> list[tuple[str, datetime, tuple[str, ...]]]:
    return [(d.mail.key.id, d.at, tuple(k.id for k in d.mail.folded)) for d in sim.drafted]


SKIP_EXAMPLES = int(os.environ.get("PLANNER_SKIP_EXAMPLES", "8"))
"""Each example replays a fortnight twice (about a second each); 300 were run when it was built."""


@settings(max_examples=SKIP_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios(), st.sampled_from((timedelta(minutes=15), timedelta(hours=1))))
def test_skipping_passes_while_nothing_changed_drafts_exactly_what_planning_every_pass_drafts(
    scenario: Scenario, step: timedelta
) -> None:
    every = replay(Sim(SETTINGS), scenario, step)
    skipping = replay(SkippingSim(SETTINGS), scenario, step)
    # The same mails, at the same instants, carrying the same folded mails; the same ledger
    # (skips, obsolete marks and their reasons' keys, promises in the contexts).
    assert drafted_log(skipping) == drafted_log(every)
    assert skipping.ledger == every.ledger
    assert skipping.contacts == every.contacts


def test_an_idle_fortnight_is_mostly_skipped() -> None:
    """The rule above is not vacuous: polled every 15 minutes, a fortnight with two candidates
    plans on a small share of its passes (midnights, due times, interview starts and ends)."""
    monday = MONDAYS[-1]
    origin = at(monday, "00:00").astimezone(UTC)
    bookings = tuple(
        Booking(f"cand{n}@example.com", event, origin)
        for n, event in enumerate(
            (
                interview("a@nordljus.se", "cand0@example.com", at(monday + timedelta(2), "10:00")),
                interview("b@nordljus.se", "cand1@example.com", at(monday + timedelta(3), "14:00")),
            )
        )
    )
    scenario = Scenario(origin, bookings, ())
    skipping = replay(SkippingSim(SETTINGS), scenario, timedelta(minutes=15))
    every = replay(Sim(SETTINGS), scenario, timedelta(minutes=15))
    assert drafted_log(skipping) == drafted_log(every) and drafted_log(every)
    total = skipping.skipped + skipping.planned
    assert skipping.planned < total / 10, (skipping.planned, total)
