"""Promises that hold: every day a mail names is still ahead of it, and later mails keep earlier ones.

A thank-you promises the decision by a day from the stage's rule (working days on which the
recruiter is in). A status update on or after that day says it is taking longer and gives a new
day, once; a renewed promise that is broken too gets honest words without a third date. A vacation
notice that eats the days a promise counted on moves it. What each mail promised is kept in its
ledger context (``planner.PROMISE``), so the next mail knows.

The property runs the real planner (through the pure simulator of ``tests.planner_harness``) and
the real composer and renderer over generated calendars, absences that become known at any time,
holidays, recruiter mails and poll instants.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from babel.dates import format_date
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recruitmail.contracts.models import Event, MailKind, Period
from recruitmail.daemon import compose
from recruitmail.daemon.planner import (
    PROMISE,
    PROMISE_LATE,
    PROMISE_MOVED_FROM,
    PROMISE_REPEAT,
    PlannedMail,
    decision_day,
)
from recruitmail.daemon.render import Renderer
from recruitmail.daemon.settings import Settings
from tests.planner_harness import Sim, at, interview, make_settings
from tests.scenario.spec import STOCKHOLM

ANNA = "anna@example.com"
RENDERER = Renderer(None)
LOCALES = {"sv": "sv_SE", "en": "en_GB"}


def stages(*decision_days: int) -> list[dict[str, Any]]:
    return [
        {"name": {"sv": f"intervju {n}", "en": f"interview {n}"}, "decision_working_days": days}
        for n, days in enumerate(decision_days, 1)
    ]


def promise_settings(
    decision_days: tuple[int, ...] = (5, 5), after: int = 5, repeats: int = 2
) -> Settings:
    return make_settings(
        {
            "stages": stages(*decision_days),
            "touchpoints": {"status_update": {"after_working_days": after, "max_repeats": repeats}},
        },
        mailbox={"vacations": []},
    )


def away(first: date, last: date) -> Period:
    """The recruiter is away from ``first`` to ``last`` inclusive."""
    return Period(at(first, "00:00"), at(last + timedelta(days=1), "00:00"))


def run(
    sim: Sim, events: list[Event], first: date, days: int, hours: tuple[str, ...]
) -> list[tuple[PlannedMail, datetime]]:
    out = []
    for n in range(days):
        for hhmm in hours:
            moment = at(first + timedelta(days=n), hhmm)
            before = len(sim.drafted)
            sim.poll(events, moment)
            out += [(d.mail, d.at) for d in sim.drafted[before:]]
    return out


def context_of(sim: Sim, mail: PlannedMail, now: datetime) -> dict[str, Any]:
    facts = compose.Facts(interview_number=1, absences=sim.absences)
    return compose.build_context(mail, sim.box, sim.settings, sim.calendar, now, facts)


def of_kind(mails: list[tuple[PlannedMail, datetime]], kind: MailKind) -> list[Any]:
    return [(m, t) for m, t in mails if m.kind is kind]


# -- the rules, one case each ------------------------------------------------------------


def test_a_status_update_on_the_promised_day_says_so_and_gives_a_new_day() -> None:
    # Thursday 3 December: the interview. The thank-you promises Thursday 10 December.
    sim = Sim(promise_settings())
    events = [interview("a@x", ANNA, at(date(2026, 12, 3), "10:00"))]
    mails = run(sim, events, date(2026, 12, 3), 8, ("09:00", "12:00"))
    ((thanks, when),) = of_kind(mails, MailKind.THANK_YOU)
    assert thanks.context[PROMISE] == "2026-12-10"
    ((update, on),) = of_kind(mails, MailKind.STATUS_UPDATE)
    assert on.astimezone(STOCKHOLM).date() == date(2026, 12, 10)
    assert update.context[PROMISE_LATE] is True
    assert update.context[PROMISE] == "2026-12-17"  # five working days on, from the day itself
    text = RENDERER.render("status_update", "sv", context_of(sim, update, on)).text
    assert "det tar lite längre tid än jag sa" in text
    assert "senast torsdag 17 december i stället" in text
    assert "10 december" not in text


def test_a_renewed_promise_that_is_broken_too_gets_no_third_date() -> None:
    sim = Sim(promise_settings(repeats=3))
    events = [interview("a@x", ANNA, at(date(2026, 11, 2), "10:00"))]
    mails = run(sim, events, date(2026, 11, 2), 22, ("09:00",))
    updates = of_kind(mails, MailKind.STATUS_UPDATE)
    assert [m.context[PROMISE] for m, _ in updates] == ["2026-11-16", "", ""]
    assert all(m.context[PROMISE_LATE] for m, _ in updates)
    second, on = updates[1]
    text = RENDERER.render("status_update", "en", context_of(sim, second, on)).text
    assert "taking a little longer than I said" in text
    assert "I don't want to promise a new date" in text


def test_a_status_update_before_the_promised_day_repeats_it() -> None:
    sim = Sim(promise_settings(decision_days=(8,), after=3))
    events = [interview("a@x", ANNA, at(date(2026, 11, 2), "10:00"))]
    mails = run(sim, events, date(2026, 11, 2), 6, ("09:00",))
    ((thanks, _),) = of_kind(mails, MailKind.THANK_YOU)
    ((update, on),) = of_kind(mails, MailKind.STATUS_UPDATE)
    assert update.context[PROMISE] == thanks.context[PROMISE] == "2026-11-12"
    assert update.context[PROMISE_REPEAT] is True
    text = RENDERER.render("status_update", "sv", context_of(sim, update, on)).text
    assert "Som jag skrev får du besked från mig senast torsdag 12 november." in text
    assert "längre tid" not in text


def test_the_promise_skips_the_days_the_recruiter_is_away() -> None:
    sim = Sim(promise_settings(), absences=(away(date(2026, 12, 7), date(2026, 12, 11)),))
    events = [interview("a@x", ANNA, at(date(2026, 12, 3), "10:00"))]
    ((thanks, _),) = of_kind(run(sim, events, date(2026, 12, 3), 1, ("12:00",)), MailKind.THANK_YOU)
    # Friday 4, then Monday 14 to Thursday 17: five days in.
    assert thanks.context[PROMISE] == "2026-12-17"


def test_a_vacation_notice_moves_a_promise_its_absence_eats() -> None:
    sim = Sim(promise_settings())
    events = [interview("a@x", ANNA, at(date(2026, 12, 1), "10:00"))]
    mails = run(sim, events, date(2026, 12, 1), 1, ("12:00",))
    assert mails[0][0].context[PROMISE] == "2026-12-08"
    # Only now does the recruiter book Friday 4 to Wednesday 9 December off.
    sim.absences = (away(date(2026, 12, 4), date(2026, 12, 9)),)
    mails = run(sim, events, date(2026, 12, 2), 2, ("09:00", "12:00"))
    ((notice, on),) = of_kind(mails, MailKind.VACATION_NOTICE)
    assert notice.context[PROMISE_MOVED_FROM] == "2026-12-08"
    # The notice goes on Thursday 3 December; the three days left (4, 7, 8) become 10, 11, 14.
    assert notice.context[PROMISE] == "2026-12-14"
    context = context_of(sim, notice, on)
    text = RENDERER.render("vacation_notice", "sv", context).text
    assert "dröjer beskedet jag lovade till tisdag 8 december lite" in text
    assert "du får det från mig senast måndag 14 december" in text
    assert context["vacation"]["back_day"] == "torsdag 10 december"


def test_a_promise_that_counted_the_absence_already_is_kept_by_the_vacation_notice() -> None:
    # Away Monday 7 to Friday 11 December, known from the start: the thank-you of Tuesday 1
    # December counts around it (2, 3, 4, 14, 15), and the notice on Friday 4 keeps that day.
    sim = Sim(promise_settings(), absences=(away(date(2026, 12, 7), date(2026, 12, 11)),))
    events = [interview("a@x", ANNA, at(date(2026, 12, 1), "10:00"))]
    mails = run(sim, events, date(2026, 12, 1), 4, ("09:00", "12:00"))
    ((thanks, _),) = of_kind(mails, MailKind.THANK_YOU)
    ((notice, on),) = of_kind(mails, MailKind.VACATION_NOTICE)
    assert thanks.context[PROMISE] == "2026-12-15"
    assert PROMISE not in notice.context
    text = RENDERER.render("vacation_notice", "sv", context_of(sim, notice, on)).text
    assert "beskedet" not in text


def test_no_date_is_promised_when_the_stage_promises_none() -> None:
    sim = Sim(promise_settings(decision_days=(0,)))
    events = [interview("a@x", ANNA, at(date(2026, 11, 2), "10:00"))]
    mails = run(sim, events, date(2026, 11, 2), 1, ("12:00",))
    ((thanks, on),) = of_kind(mails, MailKind.THANK_YOU)
    context = context_of(sim, thanks, on)
    assert context["decision_date"] == ""
    text = RENDERER.render("thank_you", "sv", context).text
    assert "Jag hör av mig så snart jag vet mer om nästa steg." in text


def test_a_vacation_back_day_skips_an_absence_right_after() -> None:
    sim = Sim(
        promise_settings(),
        absences=(
            away(date(2026, 11, 9), date(2026, 11, 13)),
            away(date(2026, 11, 16), date(2026, 11, 17)),
        ),
    )
    events = [interview("a@x", ANNA, at(date(2026, 11, 3), "10:00"))]
    mails = run(sim, events, date(2026, 11, 6), 1, ("09:30",))
    ((notice, on),) = of_kind(mails, MailKind.VACATION_NOTICE)
    assert context_of(sim, notice, on)["vacation"]["back_day"] == "onsdag 18 november"


def test_decision_day_counts_only_working_days_in() -> None:
    sim = Sim(promise_settings())
    holiday_week = (away(date(2026, 12, 21), date(2026, 12, 23)),)
    # Friday 18 December: Christmas Eve to Boxing Day off, the recruiter away 21-23.
    assert decision_day(sim.calendar, holiday_week, date(2026, 12, 18), 2) == date(2026, 12, 29)
    assert decision_day(sim.calendar, (), date(2026, 12, 18), 0) is None
    assert (
        decision_day(
            sim.calendar, (away(date(2026, 1, 1), date(2026, 12, 31)),), date(2026, 1, 1), 1
        )
        is None
    )


# -- the property ------------------------------------------------------------------------

MONDAYS = (
    date(2026, 3, 23),  # Easter a week later
    date(2026, 5, 4),  # Ascension Day
    date(2026, 6, 8),  # Midsummer
    date(2026, 10, 19),  # daylight saving time ends
    date(2026, 11, 30),  # Christmas and New Year
    date(2026, 11, 2),  # an ordinary month
)
SPAN_DAYS = 32


@dataclass(frozen=True)
class World:
    first: date
    settings: Settings
    events: tuple[Event, ...]
    absences: tuple[tuple[datetime, Period], ...]  # (known from, period)
    writes: tuple[tuple[datetime, str], ...]  # the recruiter's own mails
    hours: tuple[str, ...]


@st.composite
def worlds(draw: st.DrawFn) -> World:
    first = draw(st.sampled_from(MONDAYS))
    decision = tuple(draw(st.lists(st.integers(0, 9), min_size=1, max_size=3)))
    chosen = promise_settings(
        decision, after=draw(st.integers(1, 7)), repeats=draw(st.integers(1, 3))
    )
    events = []
    candidates = [f"cand{c}@example.com" for c in range(draw(st.integers(1, 3)))]
    for c, address in enumerate(candidates):
        for j in range(draw(st.integers(1, 3))):
            day = first + timedelta(days=draw(st.integers(0, 13)))
            start = at(day, f"{draw(st.integers(8, 16)):02d}:00")
            events.append(interview(f"{c}-{j}@nordljus.se", address, start, 60))
    absences = []
    for _ in range(draw(st.integers(0, 2))):
        start_day = first + timedelta(days=draw(st.integers(0, SPAN_DAYS - 2)))
        last_day = start_day + timedelta(days=draw(st.integers(0, 12)))
        known = at(first + timedelta(days=draw(st.integers(0, SPAN_DAYS - 1))), "00:00")
        absences.append((min(known, at(start_day, "00:00")), away(start_day, last_day)))
    writes = []
    for _ in range(draw(st.integers(0, 2))):
        moment = at(
            first + timedelta(days=draw(st.integers(0, SPAN_DAYS - 1))),
            f"{draw(st.integers(7, 20)):02d}:30",
        )
        writes.append((moment, draw(st.sampled_from(candidates))))
    hours = sorted(
        draw(
            st.sets(
                st.sampled_from(("07:00", "09:00", "11:40", "15:20", "18:00", "23:10")),
                min_size=1,
                max_size=3,
            )
        )
    )
    return World(first, chosen, tuple(events), tuple(absences), tuple(sorted(writes)), tuple(hours))


def days_by_name(language: str, around: date) -> dict[str, date]:
    """Every day a mail may name, by how the mail names it (unique within a year)."""
    days = (around - timedelta(days=60) + timedelta(days=n) for n in range(300))
    return {format_date(d, "EEEE d MMMM", locale=LOCALES[language]): d for d in days}


def promised_days(context: dict[str, Any]) -> list[str]:
    """The days a mail names as ahead of it: the decision, a moved promise, a vacation."""
    named = [context["decision_date"], context["decision_moved_from"]]
    for vacation in (context["vacation"], context["also"]["vacation"]):
        if vacation:
            named += [vacation["first_day"], vacation["back_day"]]
    return [n for n in named if n]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(worlds())
def test_no_mail_names_a_day_that_is_not_ahead_and_updates_never_go_back(world: World) -> None:
    sim = Sim(world.settings)
    names = {lang: days_by_name(lang, world.first) for lang in LOCALES}
    last_named: dict[str, date] = {}
    writes = list(world.writes)
    for n in range(SPAN_DAYS):
        for hhmm in world.hours:
            now = at(world.first + timedelta(days=n), hhmm)
            today = now.date()
            while writes and writes[0][0] <= now:
                sim.write(writes[0][1], writes[0][0])
                writes.pop(0)
            sim.absences = tuple(p for known, p in world.absences if known <= now)
            before = len(sim.drafted)
            sim.poll(world.events, now)
            for done in sim.drafted[before:]:
                mail = done.mail
                promise = mail.context.get(PROMISE, "")
                assert not promise or date.fromisoformat(promise) > today, (mail.kind, promise)
                context = context_of(sim, mail, now)
                language = context["language"]
                for name in promised_days(context):
                    assert names[language][name] > today, (mail.kind.value, name, today)
                if mail.kind.is_announcement:
                    assert mail.interview is not None and mail.interview.event.start > now
                text = RENDERER.render(mail.kind.value, language, context).text
                named = context["decision_date"]
                if mail.kind in (MailKind.THANK_YOU, MailKind.STATUS_UPDATE) and named:
                    assert named in text
                if not named:
                    continue
                day = names[language][named]
                if mail.kind is MailKind.STATUS_UPDATE and mail.candidate in last_named:
                    assert day >= last_named[mail.candidate], (mail.candidate, day)
                last_named[mail.candidate] = day


def test_the_status_update_in_the_demo_keeps_its_word(tmp_path: Any) -> None:
    from recruitmail.daemon import demo

    monday = date(2026, 11, 30)
    until = at(date(2026, 12, 11), "16:00")
    assert demo.run(tmp_path, monday, until=until, times=("15:30",)) == 0
    mails = demo.drafts(tmp_path / "Maildir")
    (thanks,) = [m for m in mails if "bo.ek@" in str(m["To"]) and "Thank you" in str(m["Subject"])]
    (update,) = [m for m in mails if "bo.ek@" in str(m["To"]) and "update" in str(m["Subject"])]
    promised = thanks.get_body(("plain",)).get_content()
    assert "You will hear from me by Thursday 10 December at the latest." in promised
    text = update.get_body(("plain",)).get_content()
    assert text.startswith(
        "Hi Bo,\n\nI promised you an answer by now, and it is taking a little longer than I said"
        " – I'm sorry about that!"
    )
    # Thursday 10 December is the day itself; Friday 11, then the recruiter is away 14-18
    # December, Christmas Eve to Boxing Day are off: Monday 28 December is the fifth day in.
    assert "You will hear from me by Monday 28 December at the latest instead." in text
    assert "10 December" not in text
    # The next day's vacation notice knows the new day already counted the vacation: it keeps it.
    (notice,) = [m for m in mails if "bo.ek@" in str(m["To"]) and "away" in str(m["Subject"])]
    assert "answer I promised" not in notice.get_body(("plain",)).get_content()
