"""The pre-filter never changes what a calendar gives: every calendar below is read twice, with
plain single events read without the iCalendar library (the default) and with every component
parsed by it (``prefilter=False``), and both readings return the same events, in the same zones,
and the same skipped events with the same reasons.

The table holds the cases a quick reader gets wrong (folded lines, quoted and odd TZIDs, all-day
events, overrides, EXDATE, DURATION, the window's edges, CRLF and LF, a BOM…); the property
compares both readings on generated calendars (``ICS_PREFILTER_EXAMPLES`` examples, 60 unless
told).
"""

from __future__ import annotations

import os
from dataclasses import astuple
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recruitmail.connectors import ics
from recruitmail.contracts import limits
from recruitmail.contracts.errors import PermanentError
from recruitmail.contracts.models import Event, Period, SkippedEvent

STOCKHOLM = ZoneInfo("Europe/Stockholm")
WINDOW = Period(datetime(2026, 3, 1, tzinfo=STOCKHOLM), datetime(2026, 6, 1, tzinfo=STOCKHOLM))
EXAMPLES = int(os.environ.get("ICS_PREFILTER_EXAMPLES", "60") or "60")

VTIMEZONE_STOCKHOLM = (
    "BEGIN:VTIMEZONE",
    "TZID:Europe/Stockholm",
    "BEGIN:STANDARD",
    "DTSTART:19701025T030000",
    "RRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU",
    "TZOFFSETFROM:+0200",
    "TZOFFSETTO:+0100",
    "END:STANDARD",
    "BEGIN:DAYLIGHT",
    "DTSTART:19700329T020000",
    "RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU",
    "TZOFFSETFROM:+0100",
    "TZOFFSETTO:+0200",
    "END:DAYLIGHT",
    "END:VTIMEZONE",
)


def vtimezone(tzid: str, standard: str = "+0100", daylight: str = "+0200") -> tuple[str, ...]:
    return tuple(
        line.replace("Europe/Stockholm", tzid)
        .replace("TZOFFSETTO:+0100", f"TZOFFSETTO:{standard}")
        .replace("TZOFFSETTO:+0200", f"TZOFFSETTO:{daylight}")
        for line in VTIMEZONE_STOCKHOLM
    )


def event(uid: str, *lines: str) -> tuple[str, ...]:
    """A VEVENT with the usual people; ``lines`` give its times and anything else."""
    return (
        "BEGIN:VEVENT",
        f"UID:{uid}",
        "DTSTAMP:20260101T000000Z",
        f"SUMMARY:Intervju {uid}",
        "ORGANIZER;CN=Rut Rekryterare:mailto:rekryterare@example.se",
        'ATTENDEE;CN="Rut Rekryterare";PARTSTAT=ACCEPTED:mailto:rekryterare@example.se',
        'ATTENDEE;CN="Svensson, Anna";PARTSTAT=NEEDS-ACTION;ROLE=REQ-PARTICIPANT:mailto:'
        "anna@kandidat.example",
        *lines,
        "END:VEVENT",
    )


def document(*parts: tuple[str, ...], head: tuple[str, ...] = (), eol: str = "\r\n") -> bytes:
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//test//EN", *head]
    for part in parts:
        lines.extend(part)
    lines.append("END:VCALENDAR")
    return (eol.join(lines) + eol).encode("utf-8")


def fold(line: str, width: int = 20, eol: str = "\r\n") -> str:
    """``line`` folded every ``width`` characters (RFC 5545 §3.1)."""
    pieces = [line[i : i + width] for i in range(0, len(line), width)]
    return (eol + " ").join(pieces)


def shape(event: Event) -> tuple[Any, ...]:
    """Everything of an event, with the zones of its times (equal instants are not enough)."""
    moments = (event.start, event.end, event.updated)
    return (
        astuple(event),
        tuple((str(m.tzinfo), m.utcoffset()) if m is not None else None for m in moments),
    )


def read(data: bytes, prefilter: bool, **options: Any) -> Any:
    window = options.get("window", WINDOW)
    zone = options.get("zone", STOCKHOLM)
    left = options.get("left", limits.MAX_OCCURRENCES_PER_PASS)
    budget = ics.PassBudget(deadline=1e18, occurrences_left=left)
    try:
        return ics.read_ics(data, window, zone, "feed", budget, prefilter=prefilter)
    except PermanentError as exc:
        return exc


def same_both_ways(data: bytes, **options: Any) -> list[Event]:
    """The events of ``data`` (asserting both readings agree on them and on what was skipped)."""
    quick, full = read(data, True, **options), read(data, False, **options)
    if isinstance(full, PermanentError):
        assert isinstance(quick, PermanentError) and str(quick) == str(full)
        return []
    assert not isinstance(quick, PermanentError), quick
    assert [shape(e) for e in quick.events] == [shape(e) for e in full.events]
    assert sorted(quick.skipped, key=repr) == sorted(full.skipped, key=repr)
    return list(quick.events)


IN = ("DTSTART:20260415T100000Z", "DTEND:20260415T110000Z")

TABLE: dict[str, bytes] = {
    "utc times": document(event("a", *IN)),
    "folded lines, CRLF": (
        b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\n"
        + "\r\n".join(
            fold(line, 13)
            for line in event("folded", *IN, "DESCRIPTION:" + "Agenda: presentation\\, frågor " * 5)
        ).encode()
        + b"\r\nEND:VCALENDAR\r\n"
    ),
    "folded lines, LF, tabs": (
        b"BEGIN:VCALENDAR\nVERSION:2.0\n"
        + "\n".join(
            fold(line, 9, "\n").replace("\n ", "\n\t") for line in event("lf", *IN)
        ).encode()
        + b"\nEND:VCALENDAR\n"
    ),
    "a fold inside a multi-byte character": document(event("ä", *IN)).replace(
        "Intervju ä".encode(), b"Intervju " + "ä".encode()[:1] + b"\r\n " + "ä".encode()[1:]
    ),
    "LF line ends": document(event("lf-only", *IN), eol="\n"),
    "a byte order mark": b"\xef\xbb\xbf" + document(event("bom", *IN)),
    "a blank line inside an event": document(event("blank", *IN, "")),
    "TZID of an IANA zone with its VTIMEZONE": document(
        VTIMEZONE_STOCKHOLM,
        event(
            "zoned",
            "DTSTART;TZID=Europe/Stockholm:20260415T100000",
            "DTEND;TZID=Europe/Stockholm:20260415T110000",
        ),
    ),
    "a quoted TZID": document(
        event(
            "quoted",
            'DTSTART;TZID="Europe/Stockholm":20260415T100000',
            'DTEND;TZID="Europe/Stockholm":20260415T110000',
        )
    ),
    "a TZID with a leading slash": document(
        event(
            "slash",
            "DTSTART;TZID=/Europe/Stockholm:20260415T100000",
            "DTEND;TZID=/Europe/Stockholm:20260415T110000",
        )
    ),
    "a Windows zone name": document(
        vtimezone("W. Europe Standard Time"),
        event(
            "windows",
            "DTSTART;TZID=W. Europe Standard Time:20260415T100000",
            "DTEND;TZID=W. Europe Standard Time:20260415T110000",
        ),
    ),
    "a zone only the calendar defines": document(
        vtimezone("Nordljus Tid", "+0300", "+0400"),
        event(
            "custom",
            'DTSTART;TZID="Nordljus Tid":20260415T100000',
            'DTEND;TZID="Nordljus Tid":20260415T110000',
        ),
    ),
    "a zone nobody knows": document(
        event(
            "unknown-zone",
            "DTSTART;TZID=Mars/Olympus:20260415T100000",
            "DTEND;TZID=Mars/Olympus:20260415T110000",
        )
    ),
    "a TZID on a UTC time": document(
        event(
            "tzid-z",
            "DTSTART;TZID=America/New_York:20260415T100000Z",
            "DTEND;TZID=America/New_York:20260415T110000Z",
        )
    ),
    "a TZID on a date": document(
        event(
            "tzid-date",
            "DTSTART;TZID=Europe/Stockholm:20260415",
            "DTEND;TZID=Europe/Stockholm:20260416",
        )
    ),
    "floating times": document(
        event("floating", "DTSTART:20260415T100000", "DTEND:20260415T110000")
    ),
    "all-day events": document(
        event("all-day", "DTSTART;VALUE=DATE:20260415", "DTEND;VALUE=DATE:20260416"),
        event("all-day-bare", "DTSTART:20260420", "DTEND:20260422"),
        event("all-day-lower", "DTSTART;value=date:20260423", "DTEND;VALUE=date:20260424"),
    ),
    "VALUE=DATE on a time": document(
        event("date-time", "DTSTART;VALUE=DATE:20260415T100000", "DTEND;VALUE=DATE:20260416")
    ),
    "a date with a time": document(
        event("mixed", "DTSTART;VALUE=DATE:20260415", "DTEND:20260415T110000Z")
    ),
    "X-WR-TIMEZONE": document(
        event("xwr-floating", "DTSTART:20260415T100000", "DTEND:20260415T110000"),
        event("xwr-utc", *IN, "LAST-MODIFIED:20260101T120000Z"),
        event("xwr-date", "DTSTART;VALUE=DATE:20260417", "DTEND;VALUE=DATE:20260418"),
        head=("X-WR-TIMEZONE:America/New_York",),
    ),
    "an X-WR-TIMEZONE nobody knows": document(
        event("xwr-unknown", "DTSTART:20260415T100000", "DTEND:20260415T110000"),
        head=("X-WR-TIMEZONE:Mars/Olympus",),
    ),
    "an X-WR-TIMEZONE with a space": document(
        event("xwr-space", *IN), head=("X-WR-TIMEZONE:Europe/Stockholm ",)
    ),
    "a series with an override outside the window and an EXDATE": document(
        event(
            "series",
            "DTSTART;TZID=Europe/Stockholm:20260302T090000",
            "DTEND;TZID=Europe/Stockholm:20260302T093000",
            "RRULE:FREQ=WEEKLY;COUNT=30",
            "EXDATE;TZID=Europe/Stockholm:20260309T090000",
        ),
        event(
            "series",
            "RECURRENCE-ID;TZID=Europe/Stockholm:20260921T090000",
            "DTSTART;TZID=Europe/Stockholm:20260922T090000",
            "DTEND;TZID=Europe/Stockholm:20260922T093000",
        ),
        event(
            "series",
            "RECURRENCE-ID;TZID=Europe/Stockholm:20260316T090000",
            "DTSTART;TZID=Europe/Stockholm:20260317T090000",
            "DTEND;TZID=Europe/Stockholm:20260317T093000",
        ),
    ),
    "a lone override of a series the calendar does not hold": document(
        event("lone", "RECURRENCE-ID:20260415T100000Z", *IN)
    ),
    "DURATION only": document(
        event("duration", "DTSTART:20260415T100000Z", "DURATION:PT45M"),
        event("duration-days", "DTSTART;TZID=Europe/Stockholm:20260328T100000", "DURATION:P2D"),
        event("no-end", "DTSTART:20260415T100000Z"),
        event("no-end-day", "DTSTART;VALUE=DATE:20260415"),
    ),
    "events crossing the window's edges": document(
        event("over-start", "DTSTART:20260227T100000Z", "DTEND:20260302T100000Z"),
        event("over-end", "DTSTART:20260531T100000Z", "DTEND:20260603T100000Z"),
        event("ends-at-start", "DTSTART:20260228T220000Z", "DTEND:20260228T230000Z"),
        event("starts-at-end", "DTSTART:20260531T220000Z", "DTEND:20260531T230000Z"),
        event("zero-at-start", "DTSTART:20260228T230000Z", "DTEND:20260228T230000Z"),
        event("day-before", "DTSTART;VALUE=DATE:20260228", "DTEND;VALUE=DATE:20260301"),
        event("day-first", "DTSTART;VALUE=DATE:20260301", "DTEND;VALUE=DATE:20260302"),
        event("day-last", "DTSTART;VALUE=DATE:20260531", "DTEND;VALUE=DATE:20260601"),
        event("day-after", "DTSTART;VALUE=DATE:20260601", "DTEND;VALUE=DATE:20260602"),
        event("floating-edge", "DTSTART:20260228T233000", "DTEND:20260301T003000"),
        event("long", "DTSTART:20260101T000000Z", "DTEND:20261231T000000Z"),
        event("far-before", "DTSTART:20250101T100000Z", "DTEND:20250101T110000Z"),
        event("far-after", "DTSTART:20270101T100000Z", "DTEND:20270101T110000Z"),
    ),
    "escaped text and categories": document(
        event(
            "escapes",
            *IN,
            "LOCATION:Storgatan 1\\, Umeå\\; rum 3\\nplan 2\\\\",
            "DESCRIPTION:Rad ett\\nRad två\\NRad tre \\: \\x",
            "CATEGORIES:EN,Intervju\\,steg 1",
            "CATEGORIES:Rekrytering",
        )
    ),
    "addresses with odd parameters": document(
        event(
            "people",
            *IN,
            'ATTENDEE;CN="Mallory:mailto:boss@example.se";PARTSTAT=ACCEPTED:mailto:m@evil.example',
            "ATTENDEE;CN=Olle Ordinär;CUTYPE=ROOM:mailto:rum@example.se",
            "ATTENDEE;EMAIL=eva@example.se;CN=Eva:urn:uuid:1234",
            "ATTENDEE;CN=Emma;ROLE=OPT-PARTICIPANT:MAILTO:emma@example.se.",
            'ATTENDEE;CN="Dubbel";CN="Sist":mailto:dubbel@example.se',
            "ATTENDEE;CN=^n rfc6868^':mailto:caret@example.se",
            "ATTENDEE;CN=a\\,b:mailto:backslash@example.se",
            'ATTENDEE;MEMBER="a","b":mailto:member@example.se',
            "ATTENDEE;CN= space :mailto:space@example.se",
        )
    ),
    "links": document(
        event("url", *IN, "URL:https://teams.microsoft.com/l/meetup-join/19%3a\\,x"),
        event(
            "x-url",
            "DTSTART:20260416T100000Z",
            "DTEND:20260416T110000Z",
            "X-MICROSOFT-SKYPETEAMSMEETINGURL:https://teams.microsoft.com/l/a\\,b",
        ),
        event(
            "body-link",
            "DTSTART:20260417T100000Z",
            "DTEND:20260417T110000Z",
            "DESCRIPTION:Länk: https://meet.google.com/abc-defg-hij.",
        ),
        event(
            "x-url-value",
            "DTSTART:20260418T100000Z",
            "DTEND:20260418T110000Z",
            "X-GOOGLE-CONFERENCE;VALUE=URI:https://meet.google.com/a\\,b",
        ),
    ),
    "an HTML description": document(
        event("html", *IN, "DESCRIPTION:", "X-ALT-DESC;FMTTYPE=text/html:<p>Agenda</p>")
    ),
    "an alarm": document(
        event("alarm", *IN, "BEGIN:VALARM", "TRIGGER:-PT15M", "ACTION:DISPLAY", "END:VALARM")
    ),
    "status, class, last change": document(
        event("cancelled", *IN, "STATUS:CANCELLED", "LAST-MODIFIED:20260101T120000Z"),
        event("private", "DTSTART:20260416T100000Z", "DTEND:20260416T110000Z", "CLASS:PRIVATE"),
        event(
            "floating-change",
            *IN[:0],
            "DTSTART:20260417T100000Z",
            "DTEND:20260417T110000Z",
            "LAST-MODIFIED:20260101T120000",
        ),
    ),
    "lower-case names": document(
        tuple(
            line.lower() if line.startswith(("SUMMARY", "DTSTART", "DTEND")) else line
            for line in event("lower", *IN)
        )
    ),
    "unreadable lines the library skips": document(
        event("broken-stamp", *IN, "DTSTAMP:yesterday", "X-FOO;=x:1", "SEQUENCE:one"),
        event("no-colon", "DTSTART:20260416T100000Z", "DTEND:20260416T110000Z", "GARBAGE"),
        event("spaced", "DTSTART:20260417T100000Z", "DTEND:20260417T110000Z", "X FOO:bar"),
    ),
    "problems": document(
        event("bad-start", "DTSTART:20260415T250000Z", "DTEND:20260415T110000Z"),
        event("backwards", "DTSTART:20260415T110000Z", "DTEND:20260415T100000Z"),
        event("twice", *IN, "DTSTART:20260416T100000Z"),
        event("year-3000", "DTSTART:30000101T100000Z", "DTEND:30000101T110000Z"),
        event("year-1", "DTSTART:00010101T100000Z", "DTEND:00010101T110000Z"),
        event("too-long", "DTSTART:20260415T100000Z", "DTEND:20280415T100000Z"),
        ("BEGIN:VEVENT", "DTSTART:20260415T100000Z", "DTEND:20260415T110000Z", "END:VEVENT"),
        ("BEGIN:VEVENT", "UID:", *IN, "END:VEVENT"),
    ),
    "the same UID twice, and written two ways": document(
        event("dup", *IN),
        event("dup", "DTSTART:20260416T100000Z", "DTEND:20260416T110000Z"),
        event("a\\,b", "DTSTART:20260417T100000Z", "DTEND:20260417T110000Z"),
        event("a,b", "DTSTART:20260418T100000Z", "DTEND:20260418T110000Z"),
        event("spaced ", "DTSTART:20260419T100000Z", "DTEND:20260419T110000Z"),
    ),
    "a DST gap": document(
        event(
            "gap",
            "DTSTART;TZID=Europe/Stockholm:20260329T023000",
            "DTEND;TZID=Europe/Stockholm:20260329T030000",
        )
    ),
    "not UTF-8": document(event("latin", *IN)).replace(b"Intervju", "Möte".encode("latin-1")),
}


@pytest.mark.parametrize("name", TABLE)
def test_the_prefilter_returns_what_the_full_parse_returns(name: str) -> None:
    same_both_ways(TABLE[name])


def test_the_table_reads_its_events() -> None:
    # The comparison above is only worth something if the calendars hold events to compare.
    assert [e.event_id for e in same_both_ways(TABLE["utc times"])] == ["a"]
    edges = {e.event_id for e in same_both_ways(TABLE["events crossing the window's edges"])}
    assert {"over-start", "over-end", "day-first", "day-last", "long"} <= edges
    assert not edges & {"far-before", "far-after", "ends-at-start", "day-after"}
    series = same_both_ways(TABLE["a series with an override outside the window and an EXDATE"])
    assert len(series) == 12  # 14 weeks in the window, one EXDATE, one moved out of the window


def test_past_the_pass_budget_both_readings_keep_the_same_events() -> None:
    data = document(
        *(
            event(
                f"e{n}", f"DTSTART:202604{10 + n:02d}T100000Z", f"DTEND:202604{10 + n:02d}T110000Z"
            )
            for n in range(6)
        ),
        event("weekly", "DTSTART:20260302T090000Z", "DTEND:20260302T093000Z", "RRULE:FREQ=WEEKLY"),
        event(
            "e1",
            "RECURRENCE-ID:20260411T100000Z",
            "DTSTART:20260412T100000Z",
            "DTEND:20260412T110000Z",
        ),
    )
    for left in (0, 1, 3, 5, 8, 30):
        same_both_ways(data, left=left)


def test_past_the_pass_budget_the_rest_is_skipped_unparsed() -> None:
    # Three events fill a budget of three; the events and series after them are skipped for the
    # budget without being parsed, so even a broken one is reported with that reason.
    data = document(
        *(
            event(
                f"e{n}", f"DTSTART:202604{10 + n:02d}T100000Z", f"DTEND:202604{10 + n:02d}T110000Z"
            )
            for n in range(3)
        ),
        event("weekly", "DTSTART:20260302T090000Z", "DTEND:20260302T093000Z", "RRULE:FREQ=WEEKLY"),
        event("broken", "DTSTART:20260415T250000Z", "DTEND:20260415T110000Z", "RRULE:FREQ=DAILY"),
        event("plain", "DTSTART:20260416T100000Z", "DTEND:20260416T110000Z"),
    )
    parsed = read(data, True, left=3)
    assert [e.event_id for e in parsed.events] == ["e0", "e1", "e2"]
    assert sorted(parsed.skipped, key=repr) == sorted(
        (SkippedEvent(uid, limits.REASON_PASS_BUDGET) for uid in ("weekly", "broken", "plain")),
        key=repr,
    )


@pytest.mark.parametrize("prefilter", [True, False])
def test_an_unreadable_sequence_costs_no_other_event(prefilter: bool) -> None:
    # The expansion compares SEQUENCE numbers; one it cannot read used to stop the whole calendar.
    data = document(
        event("odd", *IN, "SEQUENCE:one"),
        event(
            "twice",
            "DTSTART:20260416T100000Z",
            "DTEND:20260416T110000Z",
            "SEQUENCE:1",
            "SEQUENCE:2",
        ),
        event("good", "DTSTART:20260417T100000Z", "DTEND:20260417T110000Z", "SEQUENCE:3"),
    )
    parsed = read(data, prefilter)
    assert not isinstance(parsed, PermanentError), parsed
    assert [e.event_id for e in parsed.events] == ["odd", "twice", "good"]
    assert parsed.skipped == []


# --- generated calendars ---

ESCAPES = ["\\,", "\\;", "\\n", "\\N", "\\\\", "\\"]
MOMENTS = st.datetimes(min_value=datetime(2026, 2, 20), max_value=datetime(2026, 6, 10))
ZONES = st.sampled_from(
    [
        "Z",
        "",
        "Europe/Stockholm",
        '"Europe/Stockholm"',
        "America/New_York",
        "UTC",
        "W. Europe Standard Time",
    ]
)
TEXT = st.lists(
    st.sampled_from(["a", "å", "Z", " ", ",", ";", ":", '"', "'", "^", "é", "€"] + ESCAPES),
    max_size=12,
).map("".join)


def _stamp(moment: datetime, kind: str) -> tuple[str, str]:
    """(parameters, value) of a date-time of ``kind``: "date", "Z", "" (floating) or a TZID."""
    if kind == "date":
        return ";VALUE=DATE", moment.strftime("%Y%m%d")
    value = moment.strftime("%Y%m%dT%H%M%S")
    if kind == "Z":
        return "", value + "Z"
    if kind == "":
        return "", value
    return f";TZID={kind}", value


@st.composite
def generated_event(draw: st.DrawFn, uid: str) -> tuple[str, ...]:
    start = draw(MOMENTS).replace(microsecond=0)
    kind = draw(st.one_of(ZONES, st.just("date")))
    if kind == "date":
        start = start.replace(hour=0, minute=0, second=0)
    length = draw(
        st.sampled_from([timedelta(0), timedelta(minutes=45), timedelta(days=1), timedelta(days=3)])
    )
    end_kind = draw(st.sampled_from(["same", "same", "same", "other", "duration", "none"]))
    params, value = _stamp(start, kind)
    lines = [f"DTSTART{params}:{value}"]
    if end_kind == "same":
        params, value = _stamp(start + length, kind)
        lines.append(f"DTEND{params}:{value}")
    elif end_kind == "other":
        params, value = _stamp(start + length, draw(st.one_of(ZONES, st.just("date"))))
        lines.append(f"DTEND{params}:{value}")
    elif end_kind == "duration":
        lines.append(f"DURATION:PT{int(length.total_seconds() // 60)}M")
    lines.append(f"SUMMARY:{draw(TEXT)}")
    if draw(st.booleans()):
        lines.append(f"LOCATION:{draw(TEXT)}")
    if draw(st.booleans()):
        lines.append(f'ATTENDEE;CN="{draw(TEXT).replace(chr(34), "")}":mailto:x@example.se')
    if draw(st.booleans()):
        lines.append(f"ATTENDEE;CN={draw(TEXT)}:mailto:y@example.se")
    if draw(st.booleans()):
        lines.append(f"CATEGORIES:{draw(TEXT)}")
    extra = draw(st.sampled_from(["", "", "", "rrule", "override", "alarm", "status"]))
    if extra == "rrule":
        lines.append("RRULE:FREQ=WEEKLY;COUNT=4")
    elif extra == "override":
        params, value = _stamp(start, kind)
        lines.append(f"RECURRENCE-ID{params}:{value}")
    elif extra == "alarm":
        lines += ["BEGIN:VALARM", "TRIGGER:-PT5M", "ACTION:DISPLAY", "END:VALARM"]
    elif extra == "status":
        lines.append("STATUS:CANCELLED")
    return ("BEGIN:VEVENT", f"UID:{uid}", *lines, "END:VEVENT")


@st.composite
def generated_calendar(draw: st.DrawFn) -> bytes:
    uids = draw(
        st.lists(st.sampled_from(["a", "b", "c", "d", "e", "f", "a\\,b", "a,b"]), max_size=8)
    )
    events = [draw(generated_event(uid)) for uid in uids]
    head: tuple[str, ...] = ()
    if draw(st.booleans()):
        head = (
            f"X-WR-TIMEZONE:{draw(st.sampled_from(['America/New_York', 'Europe/Stockholm', 'Nowhere']))}",
        )
    zones = (vtimezone("W. Europe Standard Time"),) if draw(st.booleans()) else ()
    eol = draw(st.sampled_from(["\r\n", "\n"]))
    width = draw(st.sampled_from([0, 7, 30, 75]))
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", *head]
    for part in (*zones, *events):
        lines.extend(fold(line, width, eol) if width else line for line in part)
    lines.append("END:VCALENDAR")
    data = (eol.join(lines) + eol).encode("utf-8")
    return (b"\xef\xbb\xbf" + data) if draw(st.booleans()) else data


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=generated_calendar(), left=st.sampled_from([limits.MAX_OCCURRENCES_PER_PASS, 0, 1, 3]))
def test_generated_calendars_read_the_same_both_ways(data: bytes, left: int) -> None:
    same_both_ways(data, left=left)
