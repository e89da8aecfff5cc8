"""The hostile-calendar corpus: what an attacker can put into a recruiter's calendar by sending
an invitation (or by publishing a calendar link), and what the service must do with each.

Every entry's calendar also holds one ordinary interview (``translate.ordinary``), which must be
drafted whatever the hostile event does. The first rows are the ones reported in the issue "A
calendar anyone can write into"; the rest are further attacks in the same spirit.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from recruitmail.contracts import limits
from tests.hostile.model import (
    MALLORY,
    PANEL,
    RECRUITER,
    THURSDAY_11,
    THURSDAY_12,
    Entry,
    Ev,
    utc,
)
from tests.hostile.model import Expect as X
from tests.hostile.translate import ics_text, vevent
from tests.scenario.spec import Who

ALL = ("ics", "microsoft", "google")
MALLORY_WHO = Who(MALLORY, "Mallory Angrip", "accepted")
OUTSIDER = Who("attacker@evil.example", "Nordljus Rekrytering", "accepted")
LOCAL_THURSDAY = "20261203T110000"

REPEATS = (limits.REASON_REPEATS_TOO_OFTEN,)
RANGE = (limits.REASON_OUT_OF_RANGE, limits.REASON_TOO_LONG)
TOO_BIG = (limits.REASON_TOO_BIG,)
ZONE = (limits.REASON_TIMEZONE,)
OCCURRENCES = (limits.REASON_TOO_MANY_OCCURRENCES, limits.REASON_TOO_BIG)

STOCKHOLM_VTIMEZONE = (
    "BEGIN:VTIMEZONE\r\nTZID:Europe/Stockholm\r\n"
    "BEGIN:DAYLIGHT\r\nTZOFFSETFROM:+0100\r\nTZOFFSETTO:+0200\r\nTZNAME:CEST\r\n"
    "DTSTART:19810329T020000\r\nRRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU\r\nEND:DAYLIGHT\r\n"
    "BEGIN:STANDARD\r\nTZOFFSETFROM:+0200\r\nTZOFFSETTO:+0100\r\nTZNAME:CET\r\n"
    "DTSTART:19961027T030000\r\nRRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU\r\nEND:STANDARD\r\n"
    "END:VTIMEZONE\r\n"
)


def ev(**fields: object) -> Ev:
    return Ev(**fields)  # type: ignore[arg-type]


def lines(*extra: str, **fields: object) -> Ev:
    """A hostile interview with extra iCalendar lines (ICS only)."""
    return replace(ev(**fields), ics_lines=extra)


def zoned(tzid: str, start: str = LOCAL_THURSDAY, end: str = "20261203T120000") -> str:
    """A hostile interview whose times name the zone ``tzid``, without DTSTART/DTEND in UTC."""
    body = vevent(ev(start="", end=""))
    return body.replace(
        "END:VEVENT", f"DTSTART;TZID={tzid}:{start}\r\nDTEND;TZID={tzid}:{end}\r\nEND:VEVENT"
    )


def vtimezone(tzid: str, parts: int, rule: str = "") -> str:
    out = [f"BEGIN:VTIMEZONE\r\nTZID:{tzid}\r\n"]
    for n in range(parts):
        kind, month, offsets = (
            ("STANDARD", 10, ("+0200", "+0100")) if n % 2 else ("DAYLIGHT", 3, ("+0100", "+0200"))
        )
        out.append(
            f"BEGIN:{kind}\r\nTZOFFSETFROM:{offsets[0]}\r\nTZOFFSETTO:{offsets[1]}\r\n"
            f"DTSTART:{1971 + n // 2 % 200}{month:02d}01T0{n % 7}0000\r\n"
            + (f"RRULE:{rule}\r\n" if rule else "")
            + f"END:{kind}\r\n"
        )
    out.append("END:VTIMEZONE\r\n")
    return "".join(out)


def many_attendees(count: int) -> Ev:
    people = tuple(Who(f"p{n}@example.com", f"Person {n}", "accepted") for n in range(count))
    return ev(attendees=(RECRUITER, PANEL, MALLORY_WHO, *people))


def big_description(size: int) -> str:
    return vevent(ev(body="Agenda:\n- Presentation\n\n" + "lorem ipsum " * (size // 12)))


def x_properties(count: int) -> Ev:
    return lines(*(f"X-NOISE-{n}:{'z' * 10}" for n in range(count)))


def recurrence_storm(count: int) -> str:
    """A weekly series whose every occurrence for ``count`` weeks is moved into the window."""
    first = datetime(2026, 12, 3, 10, tzinfo=UTC)
    out = [vevent(lines("RRULE:FREQ=WEEKLY", uid="storm@calendar.example"))]
    for n in range(count):
        original = first + timedelta(weeks=n)
        moved = datetime(2026, 12, 4 + n % 20, 6 + n % 10, n % 60, tzinfo=UTC)
        out.append(
            vevent(
                lines(
                    f"RECURRENCE-ID:{original:%Y%m%dT%H%M%SZ}",
                    uid="storm@calendar.example",
                    start=utc(moved),
                    end=utc(moved + timedelta(hours=1)),
                )
            )
        )
    return "".join(out)


def exdates(count: int) -> Ev:
    values = ",".join(
        f"{2027 + n // 365}{1 + n % 12:02d}{1 + n % 28:02d}T100000Z" for n in range(count)
    )
    return lines("RRULE:FREQ=DAILY;COUNT=300", f"EXDATE:{values}")


def rdates(count: int) -> Ev:
    values = ",".join(f"202612{1 + n % 28:02d}T{n % 24:02d}{n % 60:02d}00Z" for n in range(count))
    return lines(f"RDATE:{values}")


def valarm_depth(depth: int) -> Ev:
    return lines(
        *(["BEGIN:VALARM", "ACTION:DISPLAY", "TRIGGER:-PT15M"] * depth), *(["END:VALARM"] * depth)
    )


def folded_summary() -> str:
    text = vevent(ev(subject="x"))
    folded = "SUMMARY:" + "\r\n ".join("Intervju: Mallory Angrip") + "\r\n"
    return text.replace("SUMMARY:x\r\n", folded)


def endless_folding(lines_count: int) -> str:
    text = vevent(ev())
    continuation = "DESCRIPTION:Agenda:\\n- Presentation" + "\r\n " * lines_count + "\r\n"
    return text.replace("END:VEVENT", continuation + "END:VEVENT")


def unrelated_events(count: int) -> str:
    return "".join(
        vevent(
            ev(
                uid=f"noise-{n}@calendar.example",
                subject=f"Möte {n}",
                attendees=(RECRUITER, PANEL),
                start=f"2026-12-{2 + n % 25:02d}T{6 + n % 12:02d}:00:00",
                end=f"2026-12-{2 + n % 25:02d}T{7 + n % 12:02d}:00:00",
            )
        )
        for n in range(count)
    )


PHISHING = ev(
    subject="Intervju",
    organizer=OUTSIDER,
    attendees=(
        OUTSIDER,
        Who(RECRUITER.address, RECRUITER.name, "needs_action"),
        Who(PANEL.address, "Du träffar: vår VD – betala avgiften först", "needs_action"),
        MALLORY_WHO,
    ),
    location="Pay the 50 EUR booking fee at https://evil.example/pay",
    url="https://nordljus.se.login-verify.example/teams",
    body="Agenda:\n- Bring your BankID and personnummer\n- Pay the fee\n",
)
PHISHING_WORDS = ("login-verify", "evil.example/pay", "BankID", "attacker@evil.example")

ENTRIES: tuple[Entry, ...] = (
    # --- the rows of the issue -------------------------------------------------------------------
    Entry(
        "secondly-no-end",
        "a 439-byte event repeating every second, forever",
        X("skipped", REPEATS),
        event=lines("RRULE:FREQ=SECONDLY"),
        heavy=True,
    ),
    Entry(
        "secondly-from-year-1",
        "every second since DTSTART in year 1",
        X("skipped", REPEATS + RANGE),
        event=lines("RRULE:FREQ=SECONDLY", start="0001-01-01T10:00:00", end="0001-01-01T11:00:00"),
        heavy=True,
    ),
    Entry(
        "vtimezone-secondly",
        "a VTIMEZONE whose part repeats every second",
        X("skipped", ZONE + REPEATS),
        ics=lambda: vtimezone("Evil/Secondly", 2, "FREQ=SECONDLY") + zoned("Evil/Secondly"),
        heavy=True,
    ),
    Entry(
        "minutely",
        "FREQ=MINUTELY with no end",
        X("skipped", REPEATS),
        event=lines("RRULE:FREQ=MINUTELY"),
        heavy=True,
    ),
    Entry(
        "lunch-dtend-9999",
        'an unrelated "Lunch" ending 9999-12-31',
        X("skipped", RANGE, victims=()),
        event=ev(subject="Lunch", attendees=(RECRUITER,), end="9999-12-31T23:59:59"),
        providers=ALL,
    ),
    Entry(
        "lunch-duration-3000000-days",
        'an unrelated "Lunch" lasting P3000000D',
        X("skipped", RANGE, victims=()),
        event=lines("DURATION:P3000000D", subject="Lunch", attendees=(RECRUITER,), end=""),
    ),
    Entry(
        "fifty-thousand-attendees",
        "an interview with 50,000 attendees (3.4 MB)",
        X(
            "skipped",
            (limits.REASON_TOO_MANY_ATTENDEES, limits.REASON_TOO_BIG),
            victims=(MALLORY, "p1@example.com", "p49999@example.com"),
        ),
        event=lambda: many_attendees(50_000),
        heavy=True,
    ),
    Entry(
        "gzip-gzip-bomb",
        "Content-Encoding: gzip, gzip: 2 KB that expand to 1 GiB",
        X("handled", victims=("victim@evil.example",)),
        feed="gzip-bomb",
        passes=2,
        heavy=True,
    ),
    Entry(
        "external-organiser-phishing",
        "an unanswered invitation from outside: fee, fake link, BankID",
        X("ignored", victims=(MALLORY, "attacker@evil.example"), must_not=PHISHING_WORDS),
        event=PHISHING,
        providers=ALL,
    ),
    Entry(
        "accepted-phishing-link",
        "the same invitation, accepted: the look-alike link must not travel",
        X("handled", victims=(MALLORY,), must_not=("login-verify", "evil.example/pay")),
        event=replace(PHISHING, attendees=(OUTSIDER, RECRUITER, PANEL, MALLORY_WHO)),
        providers=ALL,
    ),
    Entry(
        "colleague-under-any-name",
        "a colleague listed with a name chosen by the sender",
        X("drafted", must_not=("betala avgiften",), must=("Erik Holm",)),
        event=ev(
            attendees=(RECRUITER, Who(PANEL.address, "VD – betala avgiften först"), MALLORY_WHO)
        ),
        providers=ALL,
    ),
    Entry(
        "kundsamtal-volvo",
        '"Kundsamtal Volvo" with a customer',
        X("ignored", victims=("kund@volvo.example",)),
        event=ev(
            subject="Kundsamtal Volvo", attendees=(RECRUITER, Who("kund@volvo.example", "Kund"))
        ),
        providers=ALL,
    ),
    Entry(
        "telefonsamtal-leverantor",
        '"Telefonsamtal med leverantör"',
        X("ignored", victims=("sales@supplier.example",)),
        event=ev(
            subject="Telefonsamtal med leverantör",
            attendees=(RECRUITER, Who("sales@supplier.example", "Sälj")),
        ),
        providers=ALL,
    ),
    Entry(
        "interview-feedback-process-audit",
        '"interview feedback process - audit" with an auditor',
        X("ignored", victims=("auditor@audit.example",)),
        event=ev(
            subject="interview feedback process - audit",
            attendees=(RECRUITER, Who("auditor@audit.example", "Auditor")),
        ),
        providers=ALL,
    ),
    Entry(
        "retry-after-95-years",
        "503 with Retry-After: 3000000000 from the calendar server",
        X(
            "handled",
            ("wait",),
            victims=(),
            calendar_unavailable=True,
        ),
        feed="retry-after",
        passes=2,
    ),
    Entry(
        "redirect-to-127-0-0-2",
        "a 302 from the allowed host to http://127.0.0.2/…",
        X("ignored", victims=("victim@evil.example",)),
        feed="redirect",
        passes=2,
    ),
    Entry(
        "hundred-megabyte-description",
        "a 100 MB DESCRIPTION in a local ICS file (over the whole-calendar budget): read as a "
        "stream, that event is skipped and the rest of the calendar is read",
        X("skipped", TOO_BIG, state_max_bytes=2 * 1024 * 1024),
        ics=lambda: big_description(100 * 1024 * 1024),
        heavy=True,
    ),
    Entry(
        "forty-megabyte-description",
        "a 40 MB DESCRIPTION: under the calendar budget, far over the event budget",
        X("skipped", TOO_BIG, state_max_bytes=2 * 1024 * 1024),
        ics=lambda: big_description(40 * 1024 * 1024),
        heavy=True,
    ),
    Entry(
        "template-raises-on-real-data",
        "a template branch only this candidate's name reaches raises",
        X("ignored", victims=("boom@example.com",)),
        templates="raises-for-boom",
        event=ev(attendees=(RECRUITER, PANEL, Who("boom@example.com", "Boom Bang", "accepted"))),
        providers=ALL,
    ),
    Entry(
        "log-injection",
        "a UID holding an address, ESC and U+2028 in the subject",
        X("drafted", not_in_log=("mallory-uid@example.com", "\x1b", "\u2028")),
        event=ev(uid="mallory-uid@example.com-42", subject="Intervju \x1b[31mMallory\u2028INFO ok"),
    ),
    Entry(
        "right-to-left-override",
        "U+202E in location, link and summary",
        X("drafted"),
        event=ev(
            subject="Intervju \u202eyrollaM",
            location="Storgatan \u202e1 ,åemU",
            url="https://teams.microsoft.com/l/meetup-join/\u202eabc",
        ),
        providers=ALL,
    ),
    Entry(
        "private-class",
        "CLASS:PRIVATE interview-like event",
        X("ignored", not_in_state=("Hemlig", MALLORY)),
        event=ev(subject="Intervju: Hemlig kandidat", private=True),
        providers=ALL,
    ),
    Entry(
        "confidential-doctor",
        '"Läkarbesök – psykiatri" marked CLASS:CONFIDENTIAL',
        X(
            "ignored",
            victims=("mottagning@vard.example",),
            not_in_state=("psykiatri", "mottagning@vard"),
        ),
        event=lines(
            "CLASS:CONFIDENTIAL",
            subject="Läkarbesök – psykiatri",
            attendees=(RECRUITER, Who("mottagning@vard.example", "Mottagningen")),
        ),
    ),
    Entry(
        "trailing-dot-company-domain",
        "a colleague written as erik.holm@nordljus.se.",
        X("ignored", victims=("erik.holm@nordljus.se.",)),
        event=ev(attendees=(RECRUITER, Who("erik.holm@nordljus.se.", "Erik Holm"))),
        providers=ALL,
    ),
    Entry(
        "idn-domain",
        "a candidate at an internationalised domain",
        X("drafted", victims=("anna@exämple.se",), must=("Anna",)),
        event=ev(attendees=(RECRUITER, PANEL, Who("anna@exämple.se", "Anna Ångström", "accepted"))),
        providers=ALL,
    ),
    Entry(
        "display-name-is-an-address",
        "a display name that is another address",
        X("drafted", must_not=("boss@nordljus.se",)),
        event=ev(attendees=(RECRUITER, PANEL, Who(MALLORY, "boss@nordljus.se", "accepted"))),
        providers=ALL,
    ),
    Entry(
        "fifo-in-sent",
        "a FIFO in .Sent/cur",
        X("handled", victims=()),
        mailbox="fifo-in-sent",
        event=ev(subject="Teammöte", attendees=(RECRUITER, PANEL)),
    ),
    Entry(
        "symlinked-drafts",
        "Drafts/cur is a symlink to elsewhere",
        X("handled", victims=()),
        mailbox="symlinked-drafts",
        passes=2,
        event=ev(subject="Teammöte", attendees=(RECRUITER, PANEL)),
    ),
    Entry(
        "dst-gap-interview",
        "an interview booked 02:30–03:00 in the spring-forward gap",
        X("drafted"),
        ics=STOCKHOLM_VTIMEZONE + zoned("Europe/Stockholm", "20270328T023000", "20270328T030000"),
        now=datetime(2027, 3, 26, 8, 0, tzinfo=UTC),
    ),
    Entry(
        "vtimezone-forty-thousand-parts",
        "a VTIMEZONE with 40,000 parts",
        X("skipped", ZONE + TOO_BIG),
        ics=lambda: vtimezone("Evil/Parts", 40_000) + zoned("Evil/Parts"),
        heavy=True,
    ),
    # --- further attacks -------------------------------------------------------------------------
    Entry(
        "hourly-count",
        "FREQ=HOURLY;COUNT=5",
        X("skipped", REPEATS),
        event=lines("RRULE:FREQ=HOURLY;COUNT=5"),
    ),
    Entry(
        "daily-byminute-expansion",
        "FREQ=DAILY with BYHOUR and BYMINUTE lists: 1,440 a day",
        X("skipped", REPEATS),
        event=lines(
            "RRULE:FREQ=DAILY;BYHOUR="
            + ",".join(map(str, range(24)))
            + ";BYMINUTE="
            + ",".join(map(str, range(60)))
        ),
    ),
    Entry(
        "weekly-bysetpos-hourly",
        "FREQ=WEEKLY with 168 BYSETPOS values over every hour",
        X("skipped", REPEATS),
        event=lines(
            "RRULE:FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR,SA,SU;BYHOUR="
            + ",".join(map(str, range(24)))
            + ";BYSETPOS="
            + ",".join(map(str, range(1, 169)))
        ),
    ),
    Entry(
        "impossible-rule",
        "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=31: only DTSTART ever happens",
        X("handled"),
        event=lines("RRULE:FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=31"),
    ),
    Entry(
        "huge-count",
        "FREQ=DAILY;COUNT=2000000000",
        X("drafted"),
        event=lines("RRULE:FREQ=DAILY;COUNT=2000000000"),
    ),
    Entry(
        "daily-since-1970",
        "a daily series from 1 January 1970 with no end",
        X("handled"),
        event=lines("RRULE:FREQ=DAILY", start="1970-01-01T10:00:00", end="1970-01-01T11:00:00"),
    ),
    Entry(
        "interval-zero",
        "RRULE with INTERVAL=0",
        X("handled"),
        event=lines("RRULE:FREQ=DAILY;INTERVAL=0"),
    ),
    Entry(
        "until-before-start",
        "UNTIL before DTSTART: no occurrence",
        X("ignored"),
        event=lines("RRULE:FREQ=WEEKLY;UNTIL=20200101T000000Z"),
    ),
    Entry(
        "recurrence-id-storm",
        "5,000 RECURRENCE-ID overrides moved into the window",
        X("skipped", OCCURRENCES),
        ics=lambda: recurrence_storm(5_000),
        heavy=True,
    ),
    Entry(
        "exdate-bomb",
        "100,000 EXDATE values",
        X("skipped", TOO_BIG),
        event=lambda: exdates(100_000),
        heavy=True,
    ),
    Entry(
        "exdate-many",
        "5,000 EXDATE values (under the size budget)",
        X("drafted"),
        event=lambda: exdates(5_000),
    ),
    Entry(
        "rdate-storm",
        "1,000 RDATE values inside the window",
        X("skipped", OCCURRENCES + REPEATS),
        event=lambda: rdates(1_000),
    ),
    Entry(
        "negative-duration",
        "DURATION:-PT1H",
        X("skipped", ("ends before it starts",)),
        event=lines("DURATION:-PT1H", end=""),
    ),
    Entry(
        "ends-before-start",
        "DTEND an hour before DTSTART",
        X("skipped", ("ends before it starts",)),
        event=ev(start=THURSDAY_12, end=THURSDAY_11),
        providers=ALL,
    ),
    Entry(
        "before-1970",
        "an interview on 31 December 1969",
        X("skipped", RANGE),
        event=ev(start="1969-12-31T10:00:00", end="1969-12-31T11:00:00"),
        providers=("ics",),  # calendarView and timeMin never deliver it: nothing to skip
    ),
    Entry(
        "after-2200",
        "an interview ending in 2200",
        X("skipped", RANGE),
        event=ev(end="2200-01-02T00:00:00"),
        providers=ALL,
    ),
    Entry(
        "thirteen-hours",
        'an "interview" lasting 13 hours',
        X("ignored"),
        event=ev(end="2026-12-04T00:00:00"),
        providers=ALL,
    ),
    Entry(
        "two-hundred-one-attendees",
        "201 attendees",
        X("skipped", (limits.REASON_TOO_MANY_ATTENDEES,)),
        event=lambda: many_attendees(198),
        providers=ALL,
    ),
    Entry(
        "four-externals",
        'an "interview" with four external attendees',
        X("ignored", victims=tuple(f"x{n}@example.org" for n in range(4))),
        event=ev(
            attendees=(
                RECRUITER,
                *(Who(f"x{n}@example.org", f"X {n}", "accepted") for n in range(4)),
            )
        ),
        providers=ALL,
    ),
    Entry(
        "three-externals",
        "an interview with three candidates (a group interview)",
        X("drafted", victims=tuple(f"y{n}@example.org" for n in range(3))),
        event=ev(
            attendees=(
                RECRUITER,
                *(Who(f"y{n}@example.org", f"Ylva {n}", "accepted") for n in range(3)),
            )
        ),
        providers=ALL,
    ),
    Entry(
        "no-organiser",
        "no ORGANIZER: the recruiter's own event",
        X("drafted"),
        event=ev(organizer=None),
        providers=ALL,
    ),
    Entry(
        "colleague-organiser",
        "organised by a colleague, recruiter has not answered",
        X("drafted"),
        event=ev(
            organizer=PANEL,
            attendees=(PANEL, Who(RECRUITER.address, RECRUITER.name, "needs_action"), MALLORY_WHO),
        ),
        providers=ALL,
    ),
    Entry(
        "external-tentative",
        "an outside invitation the recruiter answered tentatively",
        X("ignored"),
        event=ev(
            organizer=OUTSIDER,
            attendees=(OUTSIDER, Who(RECRUITER.address, RECRUITER.name, "tentative"), MALLORY_WHO),
        ),
        providers=ALL,
    ),
    Entry(
        "whole-word-only",
        '"Samtalscoachning" and "Intervjuteknik-kurs" are not interviews',
        X("ignored"),
        event=ev(subject="Samtalscoachning och Intervjuteknik-kurs"),
        providers=ALL,
    ),
    Entry("missing-dtstart", "no DTSTART", X("skipped", ("no DTSTART",)), event=ev(start="")),
    Entry(
        "unknown-tzid",
        "DTSTART names a zone nobody knows",
        X("skipped", ("time zone",)),
        ics=zoned("Mars/Olympus_Mons"),
    ),
    Entry(
        "tzid-path-traversal",
        "TZID=../../../../etc/passwd",
        X("skipped", ("time zone",)),
        ics=zoned("../../../../etc/passwd"),
    ),
    Entry(
        "garbage-dtstart",
        "DTSTART:notadate",
        X("handled"),
        event=lines("DTSTART:notadate", start=""),
    ),
    Entry(
        "two-dtstarts",
        "two DTSTART lines",
        X("skipped", ("more than one DTSTART",)),
        event=lines(f"DTSTART:{THURSDAY_11.replace('-', '').replace(':', '')}Z"),
    ),
    Entry(
        "date-and-time-mixed",
        "DTSTART a date, DTEND a time",
        X("skipped", ("mix a date with a time",)),
        event=lines("DTSTART;VALUE=DATE:20261203", start=""),
    ),
    Entry(
        "many-x-properties",
        "100,000 X- properties (2 MB)",
        X("skipped", TOO_BIG),
        event=lambda: x_properties(100_000),
        heavy=True,
    ),
    Entry(
        "some-x-properties",
        "5,000 X- properties (under the size budget)",
        X("drafted"),
        event=lambda: x_properties(5_000),
    ),
    Entry(
        "endless-folding",
        "one DESCRIPTION folded over 50,000 empty continuation lines",
        X("drafted"),
        ics=lambda: endless_folding(50_000),
    ),
    Entry(
        "folded-summary",
        "the SUMMARY folded character by character",
        X("drafted"),
        ics=folded_summary,
    ),
    Entry(
        "very-long-line",
        "a 200,000-character SUMMARY on one line",
        X("drafted"),
        event=lambda: ev(subject="Intervju " + "A" * 200_000),
    ),
    Entry(
        "long-name",
        "a 100,000-character display name",
        X("drafted"),
        event=lambda: ev(
            attendees=(RECRUITER, PANEL, Who(MALLORY, "Mallory " + "B" * 100_000, "accepted"))
        ),
        providers=ALL,
    ),
    Entry(
        "bad-utf8",
        "invalid UTF-8 in DESCRIPTION and CN",
        X("handled"),
        ics=vevent(ev(body="Agenda:\n- \udcff\udcfe\udcc3(")).replace(
            "Mallory Angrip", "Mallory \udce9"
        ),
    ),
    Entry(
        "nul-bytes",
        "NUL bytes in the summary and name (a line iCalendar cannot carry)",
        X("handled"),
        event=ev(
            subject="Intervju\x00Mallory",
            attendees=(RECRUITER, PANEL, Who(MALLORY, "Mallory\x00Angrip", "accepted")),
        ),
        providers=ALL,
    ),
    Entry(
        "duplicate-uids",
        "two VEVENTs with one UID and no RECURRENCE-ID",
        X("handled"),
        ics=vevent(ev(uid="dup@calendar.example"))
        + vevent(
            ev(uid="dup@calendar.example", start="2026-12-04T10:00:00", end="2026-12-04T11:00:00")
        ),
    ),
    Entry(
        "crlf-in-mailto",
        "an attendee address with an encoded CRLF and a Bcc line",
        X("handled", must_not=("leak@evil.example",)),
        event=ev(
            attendees=(
                RECRUITER,
                PANEL,
                Who("mallory@example.com%0D%0ABcc:%20leak@evil.example", "Mallory", "accepted"),
            )
        ),
    ),
    Entry(
        "crlf-in-json-address",
        "an attendee address with a real CRLF and a Bcc line",
        X("handled", must_not=("leak@evil.example",)),
        event=ev(
            attendees=(
                RECRUITER,
                PANEL,
                Who("mallory@example.com\r\nBcc: leak@evil.example", "Mallory", "accepted"),
            )
        ),
        providers=("microsoft", "google"),
    ),
    Entry(
        "encoded-word-name",
        "=?utf-8?q?…?= in the display name",
        X("drafted", must_not=("leak@evil.example",)),
        event=ev(
            attendees=(
                RECRUITER,
                PANEL,
                Who(MALLORY, "=?utf-8?q?Bcc=3A_leak=40evil.example?=", "accepted"),
            )
        ),
        providers=ALL,
    ),
    Entry(
        "jinja-in-fields",
        "template syntax in subject, location, notes and name",
        X("drafted", must_not=("pwned",)),
        event=ev(
            subject="Intervju {{ 'pw' ~ 'ned' }}",
            location="{{ 'pw' ~ 'ned' }}",
            body="Agenda:\n- {{ 'pw' ~ 'ned' }}\n- {% for x in range(10**9) %}x{% endfor %}\n",
            attendees=(RECRUITER, PANEL, Who(MALLORY, "{{ 'pw' ~ 'ned' }} Angrip", "accepted")),
        ),
        providers=ALL,
    ),
    Entry(
        "html-and-script",
        "markup in location, notes and name",
        X("drafted", html_must_not=("<script", "<img")),
        event=ev(
            location="<script>alert(1)</script>",
            body="Agenda:\n- <img src=x onerror=alert(1)>\n- <b>bold</b>\n",
            attendees=(
                RECRUITER,
                PANEL,
                Who(MALLORY, "<script>alert(2)</script>Mallory", "accepted"),
            ),
        ),
        providers=ALL,
    ),
    Entry(
        "javascript-link",
        "URL:javascript:alert(1)",
        X("drafted", must_not=("javascript:",)),
        event=ev(url="javascript:alert(document.cookie)"),
        providers=ALL,
    ),
    Entry(
        "data-link",
        "a data: URL as the meeting link",
        X("drafted", must_not=("data:text",)),
        event=ev(url="data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg=="),
        providers=ALL,
    ),
    Entry(
        "lookalike-teams-host",
        "https://teams.microsoft.com.evil.example/…",
        X("drafted", must_not=("evil.example",)),
        event=ev(url="https://teams.microsoft.com.evil.example/l/meetup-join/1"),
        providers=ALL,
    ),
    Entry(
        "homograph-host",
        "a Cyrillic і in teams.mіcrosoft.com",
        X("drafted", must_not=("mіcrosoft", "xn--")),
        event=ev(url="https://teams.m\u0456crosoft.com/l/meetup-join/1"),
        providers=ALL,
    ),
    Entry(
        "userinfo-host",
        "https://nordljus.se@evil.example/",
        X("drafted", must_not=("evil.example",)),
        event=ev(url="https://nordljus.se@evil.example/jobb"),
        providers=ALL,
    ),
    Entry(
        "teams-link-kept",
        "a real Teams link is kept (the control for the link rules)",
        X("drafted", must=("https://teams.microsoft.com/l/meetup-join/19%3ameeting_abc",)),
        event=ev(url="https://teams.microsoft.com/l/meetup-join/19%3ameeting_abc"),
        providers=ALL,
    ),
    Entry(
        "crlf-in-link",
        "a meeting link with CRLF and a header",
        X("drafted", must_not=("Bcc: leak",)),
        event=ev(url="https://teams.microsoft.com/l/x\r\nBcc: leak@evil.example"),
        providers=("microsoft", "google"),
    ),
    Entry(
        "deep-valarm", "VALARM nested 5,000 deep", X("handled"), event=lambda: valarm_depth(5_000)
    ),
    Entry(
        "deep-valarm-large",
        "VALARM nested 20,000 deep (over the size budget)",
        X("skipped", TOO_BIG),
        event=lambda: valarm_depth(20_000),
        heavy=True,
    ),
    Entry(
        "ten-thousand-categories",
        "10,000 categories",
        X("drafted"),
        event=lines("CATEGORIES:" + ",".join(f"c{n}" for n in range(10_000))),
    ),
    Entry(
        "agenda-headings",
        "10,000 Agenda headings in the notes",
        X("drafted"),
        event=ev(body="Agenda:\n- x\n" * 10_000),
        providers=ALL,
    ),
    Entry(
        "zero-width-and-separators",
        "zero-width joiners, U+2028/9 and BOM in the name",
        X("drafted", must=("Mallory",)),
        event=ev(
            attendees=(
                RECRUITER,
                PANEL,
                Who(MALLORY, "\ufeffMal\u200dlory\u2028Angrip\u2029", "accepted"),
            )
        ),
        providers=ALL,
    ),
    Entry(
        "vtodo-interview",
        "a VTODO that looks like an interview",
        X("ignored"),
        ics=vevent(ev()).replace("VEVENT", "VTODO"),
    ),
    Entry(
        "too-many-events",
        "25,000 unrelated events in one calendar",
        X("handled", victims=()),
        ics=lambda: unrelated_events(25_000),
        heavy=True,
    ),
    Entry(
        "quoted-param-trick",
        'CN="Mallory:mailto:boss@nordljus.se"',
        X("drafted", must_not=("boss@",)),
        ics=vevent(
            ev(
                attendees=(
                    RECRUITER,
                    PANEL,
                    Who(MALLORY, "Mallory:mailto:boss@nordljus.se", "accepted"),
                )
            )
        ),
    ),
    Entry(
        "location-newlines",
        "a location of 1,000 lines",
        X("drafted"),
        event=ev(location="Storgatan 1\n" * 1_000),
        providers=ALL,
    ),
    Entry(
        "ics-text-escapes",
        "a summary of backslashes and escaped separators",
        X("drafted"),
        ics=vevent(ev()).replace("SUMMARY:", "SUMMARY:" + ics_text("\\\\;,,") + " "),
    ),
)


def by_name(name: str) -> Entry:
    return next(entry for entry in ENTRIES if entry.name == name)
