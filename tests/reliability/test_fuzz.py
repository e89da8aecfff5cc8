"""Fuzzing what anyone who can send an invitation controls: calendar text and calendar events.

1. Hypothesis writes iCalendar documents: VEVENTs and VTIMEZONEs whose properties carry hostile
   values (absurd dates, unknown or traversing TZIDs, negative and enormous durations, RRULEs of
   every frequency with huge COUNTs, zero INTERVALs, BYSETPOS lists, EXDATE/RDATE storms,
   thousands of attendees, deep VALARM nesting, control characters, header and template syntax),
   next to one ordinary interview. The ICS source's own ``sync`` reads each document: it returns
   events and ``SkippedEvent``s and never raises anything but the project's errors; every event it
   returns is within the budgets of ``daemon.limits``; and the ordinary interview always survives
   the hostile events around it.
2. The same documents with raw byte mutations (flips, NULs, cut and doubled ranges, stray folds,
   truncation): only the project's errors, and the budgets hold for whatever comes back.
3. Hostile *plain* single events (no recurrence, no DURATION, no alarm: what the source reads
   without the iCalendar library) with odd parameters, escapes, folds anywhere and control
   characters, as they are and mutated: the quick reader returns exactly what the library's full
   parse returns (events, their zones, and what was skipped and why).
4. Whatever the source makes of any of these byte strings goes on through the real planner at
   a few instants: no exception, at most one draft per candidate and day, no key twice.
5. Generated events (anything within the budgets a connector lets through) and instants go
   through the real planner: no exception, at most one draft per candidate and day, no key twice.

Sized by RELIABILITY_EXAMPLES (default 60 each; ``make soak`` runs 2,000).
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from recruitmail.connectors.ics import PassBudget, SourceOptions, open_source, read_ics
from recruitmail.contracts import limits
from recruitmail.contracts.connector import ConnectorContext
from recruitmail.contracts.errors import RecruitmailError
from recruitmail.contracts.models import Attendee, Event, Period, Response, SkippedEvent, SyncResult
from tests.hostile.translate import ics_text, ordinary, vevent
from tests.planner_harness import Sim
from tests.reliability import budget
from tests.test_ics_prefilter import shape

NOW = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
WINDOW = Period(NOW - timedelta(days=30), NOW + timedelta(days=90))
ORDINARY = ordinary(NOW)
FUZZ = settings(
    max_examples=budget.EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
TIMEOUT = pytest.mark.timeout(budget.timeout(20.0, budget.EXAMPLES))

# --- values an attacker chooses -------------------------------------------------------------------

HOSTILE_TEXT = st.sampled_from(
    (
        "Intervju",
        "Intervju\r\nBcc: leak@evil.example",
        "=?utf-8?q?Bcc=3A_leak=40evil.example?=",
        "{{ 'pw' ~ 'ned' }}{% for x in range(10**9) %}x{% endfor %}",
        "\u202egnirts\u2028\x1b[31m\x00",
        "<script>alert(1)</script>",
        "Pay the fee at https://nordljus.se.login-verify.example/teams",
        "a,b;c\\d:e",
        "",
    )
)
TEXT = st.one_of(
    HOSTILE_TEXT,
    st.text(max_size=30),
    st.builds(lambda s, n: s * n, HOSTILE_TEXT, st.sampled_from((100, 5_000, 40_000))),
)
STAMPS = st.sampled_from(
    (
        "20261203T100000Z",
        "20261203T110000Z",
        "20261204T100000Z",
        "20261203T100000",
        "20261203",
        "00010101T000000Z",
        "19691231T235959Z",
        "99991231T235959Z",
        "22000101T000000Z",
        "20270328T023000",
        "notadate",
        "2026-12-03T10:00:00Z",
        "",
    )
)
TZIDS = st.sampled_from(
    ("", "Europe/Stockholm", "Fuzz/Zone", "Mars/Olympus_Mons", "../../../../etc/passwd", "UTC")
)
DURATIONS = st.sampled_from(("PT1H", "-PT1H", "PT0S", "P3000000D", "P1W", "PT", "garbage"))
FREQS = st.sampled_from(("SECONDLY", "MINUTELY", "HOURLY", "DAILY", "WEEKLY", "MONTHLY", "YEARLY"))


@st.composite
def rrules(draw: st.DrawFn) -> str:
    parts = [f"FREQ={draw(FREQS)}"]
    if draw(st.booleans()):
        parts.append(f"COUNT={draw(st.sampled_from((0, 1, 3, 500, 2_000_000_000, -1)))}")
    elif draw(st.booleans()):
        parts.append(
            f"UNTIL={draw(st.sampled_from(('20200101T000000Z', '20270101T000000Z', '99991231T235959Z')))}"
        )
    if draw(st.booleans()):
        parts.append(f"INTERVAL={draw(st.sampled_from((0, 1, 2, 1000, -1)))}")
    if draw(st.booleans()):
        hours = draw(st.integers(1, 24))
        parts.append("BYHOUR=" + ",".join(str(h) for h in range(hours)))
    if draw(st.booleans()):
        parts.append(
            f"BYDAY={draw(st.sampled_from(('MO', 'MO,TU,WE,TH,FR,SA,SU', '-1SU', '53MO')))}"
        )
    if draw(st.booleans()):
        parts.append(f"BYMONTHDAY={draw(st.sampled_from(('31', '-1', '1,15,30', '0')))}")
    if draw(st.booleans()):
        count = draw(st.integers(1, 400))
        parts.append(
            "BYSETPOS=" + ",".join(str(n) for n in range(-count // 2, count // 2 + 1) if n)
        )
    return ";".join(parts)


def _time(prop: str, stamp: str, tzid: str) -> str:
    if not stamp:
        return ""
    if stamp.isdigit():
        return f"{prop};VALUE=DATE:{stamp}\r\n"
    if tzid and not stamp.endswith("Z"):
        return f"{prop};TZID={tzid}:{stamp}\r\n"
    return f"{prop}:{stamp}\r\n"


@st.composite
def hostile_vevent(draw: st.DrawFn, index: int) -> str:
    tzid = draw(TZIDS)
    out = ["BEGIN:VEVENT\r\n", f"UID:fuzz-{index}-{ics_text(draw(TEXT))[:80]}\r\n"]
    out.append(f"SUMMARY:{ics_text(draw(TEXT))}\r\n")
    out.append(_time("DTSTART", draw(STAMPS), tzid))
    if draw(st.booleans()):
        out.append(_time("DTEND", draw(STAMPS), tzid))
    else:
        out.append(f"DURATION:{draw(DURATIONS)}\r\n")
    for _ in range(draw(st.integers(0, 2))):
        out.append(f"RRULE:{draw(rrules())}\r\n")
    if draw(st.booleans()):
        count = draw(st.sampled_from((1, 50, 5_000)))
        stamps = ",".join(
            f"2026{12 - n % 2:02d}{1 + n % 28:02d}T{n % 24:02d}0000Z" for n in range(count)
        )
        out.append(f"{draw(st.sampled_from(('EXDATE', 'RDATE')))}:{stamps}\r\n")
    if draw(st.booleans()):
        out.append(_time("RECURRENCE-ID", draw(STAMPS), tzid))
    out.append(f"DESCRIPTION:{ics_text(draw(TEXT))}\r\n")
    out.append(f"LOCATION:{ics_text(draw(TEXT))}\r\n")
    if draw(st.booleans()):
        out.append(
            f"URL:{draw(st.sampled_from(('javascript:alert(1)', 'https://teams.microsoft.com/l/x', 'https://xn--80ak6aa92e.com/')))}\r\n"
        )
    if draw(st.booleans()):
        out.append(
            f"CLASS:{draw(st.sampled_from(('PRIVATE', 'CONFIDENTIAL', 'PUBLIC', 'X-ODD')))}\r\n"
        )
    organizer = draw(st.sampled_from(("lisa.ek@nordljus.se", "attacker@evil.example", "")))
    if organizer:
        out.append(f'ORGANIZER;CN="{draw(TEXT)[:200].replace(chr(34), "")}":mailto:{organizer}\r\n')
    attendees = draw(st.sampled_from((0, 1, 3, 4, 201, 3_000)))
    partstat = draw(st.sampled_from(("ACCEPTED", "NEEDS-ACTION", "DECLINED", "X-ODD")))
    out.append(f"ATTENDEE;PARTSTAT={partstat}:mailto:lisa.ek@nordljus.se\r\n")
    out.extend(
        f"ATTENDEE;CN=P{n};PARTSTAT=ACCEPTED:mailto:p{n}@example.com\r\n" for n in range(attendees)
    )
    depth = draw(st.sampled_from((0, 1, 30, 2_000)))
    out.append("BEGIN:VALARM\r\nACTION:DISPLAY\r\nTRIGGER:-PT15M\r\n" * depth)
    out.append("END:VALARM\r\n" * depth)
    out.append("END:VEVENT\r\n")
    return "".join(out)


@st.composite
def hostile_vtimezone(draw: st.DrawFn) -> str:
    parts = draw(st.sampled_from((0, 1, 2, 300, 5_000)))
    rule = draw(
        st.sampled_from(("", "FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU", "FREQ=SECONDLY", "FREQ=DAILY"))
    )
    offset = draw(st.sampled_from(("+0100", "+0200", "-2400", "+9999", "garbage")))
    out = ["BEGIN:VTIMEZONE\r\nTZID:Fuzz/Zone\r\n"]
    for n in range(parts):
        kind = "STANDARD" if n % 2 else "DAYLIGHT"
        out.append(
            f"BEGIN:{kind}\r\nTZOFFSETFROM:+0100\r\nTZOFFSETTO:{offset}\r\n"
            f"DTSTART:{draw(st.sampled_from(('19700101T000000', '00010101T000000', '20261025T030000')))}\r\n"
            + (f"RRULE:{rule}\r\n" if rule else "")
            + f"END:{kind}\r\n"
        )
    out.append("END:VTIMEZONE\r\n")
    return "".join(out)


@st.composite
def documents(draw: st.DrawFn) -> bytes:
    """A calendar: the ordinary interview, 1–3 hostile events and maybe a hostile VTIMEZONE."""
    body = vevent(ORDINARY)
    if draw(st.booleans()):
        body += draw(hostile_vtimezone())
    for index in range(draw(st.integers(1, 3))):
        body += draw(hostile_vevent(index))
    text = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//fuzz//EN\r\n" + body + "END:VCALENDAR\r\n"
    return text.encode("utf-8", "surrogatepass")


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    return draw(mutations(draw(documents())))


@st.composite
def mutations(draw: st.DrawFn, document: bytes) -> bytes:
    """``document`` with 1–8 raw byte mutations."""
    data = bytearray(document)
    for _ in range(draw(st.integers(1, 8))):
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        action = draw(st.sampled_from(("flip", "nul", "cut", "double", "fold", "crlf", "truncate")))
        if action == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif action == "nul":
            data[at:at] = b"\x00"
        elif action == "cut":
            del data[at : at + draw(st.integers(1, 200))]
        elif action == "double":
            span = bytes(data[at : at + draw(st.integers(1, 400))])
            data[at:at] = span * draw(st.integers(1, 50))
        elif action == "fold":
            data[at:at] = b"\r\n " * draw(st.integers(1, 1000))
        elif action == "crlf":
            data[at:at] = draw(st.sampled_from((b"\r", b"\n", b"\r\n", b"\r\n\r\n")))
        else:
            del data[at:]
    return bytes(data)


# Plain single events: every line the quick reader reads, written the ways an attacker may.
PARAMETERS = st.sampled_from(
    (
        "",
        ";CN=Anna",
        ';CN="Svensson, Anna"',
        ';CN="Mallory:mailto:boss@nordljus.se"',
        ";CN=a\\,b",
        ";CN=^n^'",
        ";CN=%41",
        ';CN=""',
        ";CN=",
        ";X-ODD=1;PARTSTAT=ACCEPTED;ROLE=OPT-PARTICIPANT;CUTYPE=ROOM",
        ";PARTSTAT=accepted;EMAIL=anna@example.com",
        ";VALUE=TEXT",
        ';LANGUAGE=sv;ALTREP="cid:x"',
    )
)
UID_TAILS = st.sampled_from(("", "\\,x", " ", "@nordljus.se"))
PLAIN_STAMPS = st.sampled_from(
    (
        "20261203T100000Z",
        "20261203T100000",
        "20261203",
        "20261203T250000",
        "20261231T235960Z",
        "20261203T100000z",
        "2026120",
    )
)


@st.composite
def plain_vevent(draw: st.DrawFn, index: int) -> str:
    """A single event inside the window that the quick reader takes, with hostile lines."""
    tzid = draw(TZIDS)
    start, end = draw(PLAIN_STAMPS), draw(PLAIN_STAMPS)
    if draw(st.booleans()):  # mostly a sound hour, so that most events are read to the end
        start, end = "20261203T100000Z", "20261203T110000Z"
    lines = [
        f"UID:plain-{index}{draw(UID_TAILS)}",
        "DTSTAMP:20261101T000000Z",
        f"SUMMARY{draw(PARAMETERS)}:{ics_text(draw(TEXT))}",
        _time("DTSTART", start, tzid).strip(),
        _time("DTEND", end, tzid).strip(),
        f"DESCRIPTION:{ics_text(draw(TEXT))}",
        f"LOCATION{draw(PARAMETERS)}:{ics_text(draw(TEXT))}",
        f"ORGANIZER{draw(PARAMETERS)}:mailto:lisa.ek@nordljus.se",
        f"ATTENDEE{draw(PARAMETERS)}:mailto:lisa.ek@nordljus.se",
        f"ATTENDEE{draw(PARAMETERS)}:{draw(PEOPLE_IN_TEXT)}",
    ]
    for _ in range(draw(st.integers(0, 3))):
        lines.append(
            draw(
                st.sampled_from(
                    (
                        "CATEGORIES:EN,Intervju\\,2,,",
                        "CATEGORIES;X=1:SV",
                        "CLASS:PRIVATE",
                        "STATUS:CANCELLED",
                        "URL:https://teams.microsoft.com/l/meetup-join/x",
                        "URL;VALUE=URI:javascript:alert(1)",
                        "X-MICROSOFT-SKYPETEAMSMEETINGURL:https://teams.microsoft.com/l/y",
                        "X-GOOGLE-CONFERENCE:https://meet.google.com/abc-defg-hij",
                        "LAST-MODIFIED:20261101T000000Z",
                        "LAST-MODIFIED:garbage",
                        "SEQUENCE:x",
                        "X-ALT-DESC;FMTTYPE=text/html:<p>Agenda</p>",
                        "SUMMARY:a second summary",
                        "DTSTART:20261204T100000Z",
                    )
                )
            )
        )
    lines = [line for line in lines if line]
    order = draw(st.permutations(range(len(lines))))
    lines = [lines[n] for n in order]
    width = draw(st.sampled_from((0, 0, 1, 7, 74)))
    eol = draw(st.sampled_from(("\r\n", "\n")))
    if width:  # folded every ``width`` characters, as a careless writer might
        lines = [
            (eol + draw(st.sampled_from((" ", "\t")))).join(
                line[i : i + width] for i in range(0, len(line), width)
            )
            for line in lines
        ]
    return eol.join(["BEGIN:VEVENT", *lines, "END:VEVENT"]) + eol


PEOPLE_IN_TEXT = st.sampled_from(
    (
        "mailto:anna@example.com",
        "MAILTO:ANNA@EXAMPLE.COM",
        "mailto:anna@exämple.se",
        "mailto:erik.holm@nordljus.se.",
        "urn:uuid:1234",
        "mailto:",
        "anna@example.com",
    )
)


@st.composite
def plain_documents(draw: st.DrawFn) -> bytes:
    """The ordinary interview and 1–4 hostile plain events (maybe a VTIMEZONE, maybe mutated)."""
    body = vevent(ORDINARY)
    if draw(st.booleans()):
        body += draw(hostile_vtimezone())
    for index in range(draw(st.integers(1, 4))):
        body += draw(plain_vevent(index))
    head = draw(
        st.sampled_from(("", "X-WR-TIMEZONE:Europe/Stockholm\r\n", "X-WR-TIMEZONE:Nope\r\n"))
    )
    text = f"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//fuzz//EN\r\n{head}{body}END:VCALENDAR\r\n"
    data = text.encode("utf-8", "surrogatepass")
    if draw(st.booleans()):
        data = draw(mutations(data))
    return data


# --- the ICS source ---------------------------------------------------------------------------------


def read(path: Path, data: bytes) -> SyncResult | None:
    """The ICS source's full sync over ``data``; None when it refused the whole document with one
    of the project's errors (any other exception fails the test)."""
    path.write_bytes(data)
    context = ConnectorContext(
        mailbox="lisa.ek@nordljus.se",
        mailbox_name="Lisa Ek",
        time_zone="Europe/Stockholm",
        company_domains=("nordljus.se",),
        state_dir=path.parent,
    )
    source = open_source(SourceOptions(path=path), context)
    try:
        return source.sync(None, WINDOW)
    except RecruitmailError:
        return None
    finally:
        source.close()


def assert_within_budgets(result: SyncResult) -> None:
    assert len(result.events) <= limits.MAX_OCCURRENCES_PER_PASS
    for event in result.events:
        assert isinstance(event, Event)
        assert limits.event_problem(event) is None, event.event_id[:80]
        assert limits.bounded(event) == event, event.event_id[:80]
    for skipped in result.skipped:
        assert isinstance(skipped, SkippedEvent) and skipped.reason


@TIMEOUT
@seed(budget.SEED)
@FUZZ
@given(data=documents())
def test_generated_calendars_are_read_within_budgets(scratch: Path, data: bytes) -> None:
    result = read(scratch / "calendar.ics", data)
    assert result is not None, "one hostile event cost the whole calendar"
    assert_within_budgets(result)
    assert ORDINARY.uid in {e.ical_uid for e in result.events}, "the ordinary interview was lost"


@TIMEOUT
@seed(budget.SEED)
@FUZZ
@given(data=mutated())
def test_mutated_calendars_raise_only_our_errors(scratch: Path, data: bytes) -> None:
    result = read(scratch / "calendar.ics", data)
    if result is not None:
        assert_within_budgets(result)


def both_readings(data: bytes) -> tuple[object, object]:
    """``read_ics`` with the quick reader of plain events and with the library only, each as
    its result or the project's error it raised (anything else fails the test)."""
    zone = ZoneInfo("Europe/Stockholm")
    readings: list[object] = []
    for prefilter in (True, False):
        budget_ = PassBudget(deadline=float("inf"))
        try:
            readings.append(read_ics(data, WINDOW, zone, "fuzz", budget_, prefilter=prefilter))
        except RecruitmailError as exc:
            readings.append(exc)
    return readings[0], readings[1]


@TIMEOUT
@seed(budget.SEED)
@FUZZ
@given(data=plain_documents())
def test_hostile_plain_events_are_read_as_the_library_reads_them(data: bytes) -> None:
    quick, full = both_readings(data)
    if isinstance(full, RecruitmailError):
        assert isinstance(quick, RecruitmailError) and str(quick) == str(full)
        return
    assert not isinstance(quick, RecruitmailError), quick
    assert [shape(e) for e in quick.events] == [shape(e) for e in full.events]  # type: ignore[attr-defined]
    assert sorted(quick.skipped, key=repr) == sorted(full.skipped, key=repr)  # type: ignore[attr-defined]


@TIMEOUT
@seed(budget.SEED)
@FUZZ
@given(data=st.one_of(documents(), mutated(), plain_documents()), later=st.integers(0, 20))
def test_hostile_bytes_through_the_source_and_the_planner(
    scratch: Path, data: bytes, later: int
) -> None:
    """Whatever the source makes of a byte string is safe to plan with: the planner raises
    nothing and drafts no key twice and no candidate twice a day."""
    result = read(scratch / "calendar.ics", data)
    if result is None:
        return  # the whole document refused with one of the project's errors
    assert_within_budgets(result)
    sim = Sim()
    drafted: Counter[str] = Counter()
    per_day: Counter[tuple[str, str]] = Counter()
    for now in (NOW, NOW + timedelta(days=2, hours=5), NOW + timedelta(days=later, hours=9)):
        for mail in sim.poll(result.events, now).drafts:
            drafted[mail.key.id] += 1
            day = now.astimezone(ZoneInfo("Europe/Stockholm")).date().isoformat()
            per_day[(mail.candidate, day)] += 1
    assert all(count == 1 for count in drafted.values()), "a key was drafted twice"
    assert all(count == 1 for count in per_day.values()), "two drafts to one candidate in a day"


# --- the planner ------------------------------------------------------------------------------------

ZONES = tuple(
    ZoneInfo(z) for z in ("Europe/Stockholm", "UTC", "Pacific/Chatham", "America/St_Johns")
)
PEOPLE = st.sampled_from(
    (
        "lisa.ek@nordljus.se",
        "erik.holm@nordljus.se",
        "erik.holm@nordljus.se.",
        "anna@example.com",
        "anna@exämple.se",
        "ANNA@EXAMPLE.COM",
        "x@evil.example",
        "",
        "not-an-address",
    )
)


@st.composite
def events(draw: st.DrawFn, index: int) -> Event:
    zone = draw(st.sampled_from(ZONES))
    start = draw(
        st.datetimes(datetime(1970, 1, 2), datetime(2199, 1, 1), timezones=st.just(zone))
        | st.datetimes(datetime(2026, 11, 1), datetime(2027, 4, 1), timezones=st.just(zone))
    )
    length = draw(
        st.sampled_from(
            (timedelta(0), timedelta(minutes=-30), timedelta(hours=1), timedelta(days=365))
        )
        | st.timedeltas(timedelta(minutes=1), timedelta(days=3))
    )
    attendees = tuple(
        Attendee(
            address=draw(PEOPLE),
            name=draw(TEXT),
            response=draw(st.sampled_from(tuple(Response))),
            is_resource=draw(st.booleans()),
            optional=draw(st.booleans()),
        )
        for _ in range(draw(st.integers(0, 6)))
    )
    organizer = draw(st.none() | st.builds(lambda a: Attendee(a, is_organizer=True), PEOPLE))
    return limits.bounded(
        Event(
            event_id=f"e{index}",
            ical_uid=f"u{index}",
            subject=draw(TEXT),
            start=start,
            end=start + length,
            body=draw(TEXT),
            all_day=draw(st.booleans()),
            cancelled=draw(st.booleans()),
            location=draw(TEXT),
            online_url=draw(
                st.sampled_from(("", "https://teams.microsoft.com/l/x", "javascript:x"))
            ),
            organizer=organizer,
            attendees=attendees,
            categories=tuple(draw(st.lists(TEXT, max_size=3))),
            private=draw(st.booleans()),
        )
    )


@TIMEOUT
@seed(budget.SEED)
@FUZZ
@given(data=st.data())
def test_generated_events_and_instants_through_the_planner(data: st.DataObject) -> None:
    calendar = [data.draw(events(n)) for n in range(data.draw(st.integers(1, 6)))]
    calendar = [e for e in calendar if limits.event_problem(e) is None]
    sim = Sim()
    drafted: Counter[str] = Counter()
    per_day: Counter[tuple[str, str]] = Counter()
    moments = sorted(
        data.draw(
            st.lists(
                st.sampled_from([e.start for e in calendar] + [NOW]).flatmap(
                    lambda m: st.timedeltas(timedelta(days=-10), timedelta(days=10)).map(
                        lambda d: m + d
                    )
                ),
                min_size=1,
                max_size=4,
            )
        ),
        key=lambda m: m.astimezone(UTC),
    )
    for now in moments:
        if not limits.EARLIEST <= now.astimezone(UTC) < limits.LATEST:
            continue
        plan = sim.poll(calendar, now)
        for mail in plan.drafts:
            drafted[mail.key.id] += 1
            day = now.astimezone(ZoneInfo("Europe/Stockholm")).date().isoformat()
            per_day[(mail.candidate, day)] += 1
    assert all(count == 1 for count in drafted.values()), "a key was drafted twice"
    assert all(count == 1 for count in per_day.values()), "two drafts to one candidate in a day"
    private = {e.ical_uid for e in calendar if e.private}
    assert not any(
        mail.mail.interview is not None and mail.mail.interview.event.ical_uid in private
        for mail in sim.drafted
    ), "a private event became an interview"
