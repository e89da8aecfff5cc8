"""Hostile input at volume: Hypothesis writes whole calendars of odd events as ICS and runs them
through ``recruitmail once`` (in-process ``daemon.cli.main``) into a Maildir.

Names carry CR/LF and header lines, encoded words, template syntax, right-to-left overrides,
decomposed letters and megabytes of text; times come in several zones (some under their Windows
names), as series with EXDATE and moved occurrences, or end before they start; some events lose
required properties. For every calendar: no crash; every sound interview's candidate gets exactly
one draft, to them alone, with no injected header; broken events are skipped with a logged reason;
no candidate address in the logs. Sized by RELIABILITY_EXAMPLES (default 60).
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import io
import re
import tempfile
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, Phase, example, given, seed, settings
from hypothesis import strategies as st

from recruitmail.contracts.connector import KEY_HEADER
from recruitmail.contracts.limits import MAX_EVENT_BYTES, REASON_TOO_BIG
from recruitmail.daemon.cli import main
from recruitmail.daemon.interviews import REASON_BAD_TIMES
from tests.reliability import budget
from tests.scenario import two_weeks
from tests.scenario.default_backend import IcsMaildirBackend
from tests.scenario.runner import write_config
from tests.scenario.spec import EventSpec, Moved, Who, to_ics

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=ZoneInfo("Europe/Stockholm"))  # a Tuesday
PAYLOAD = "pwn" + "ed"  # what a template expression smuggled into a name would print
ZONES = ("Europe/Stockholm", "America/New_York", "Asia/Kolkata", "Pacific/Chatham", "UTC")
WINDOWS_NAMES = {
    "Europe/Stockholm": "W. Europe Standard Time",
    "America/New_York": "Eastern Standard Time",
}
ALLOWED_HEADERS = {
    "from", "to", "subject", "date", "message-id", "mime-version", "content-type",
    "content-transfer-encoding", "in-reply-to", "references", "x-recruitmail-key",
    "content-language", "x-unsent", "auto-submitted", "x-keywords", "keywords",
}  # fmt: skip

HOSTILE = st.sampled_from(
    (
        "Anna\r\nBcc: leak@evil.example",
        "Bo\nSubject: you won",
        "=?utf-8?q?Bcc=3A_leak=40evil.example?=",
        "=?utf-8?b?QmNjOiBsZWFrQGV2aWwuZXhhbXBsZQ==?=",
        "{{ 'pwn' ~ 'ed' }}",
        "{% for x in range(3) %}{{ 'pwn' ~ 'ed' }}{% endfor %}",
        "\u202egnirts desrever",
        "\u0645\u0631\u064a\u0645 \u0627\u0644\u0639\u0644\u064a",
        "O\u0308berg, E\u0301va",
        "<script>alert(1)</script>",
        "Svensson, Anna",
        "",
        "\x00\x07\x1b[31m",
        "Robert'); DROP TABLE ledger;--",
    )
)
TEXT = st.one_of(
    HOSTILE,
    st.text(max_size=40),
    st.builds(lambda s, n: s * n, HOSTILE, st.integers(500, 4000)),  # huge: up to ~250 kB a field
)


@dataclass(frozen=True)
class Case:
    spec: EventSpec
    candidate: str
    sound: bool  # a well-formed interview with a future start: it must be drafted
    broken: str = (
        ""  # "" | "ends-before-start" | "missing-DTEND" | "missing-SUMMARY" | "missing-ORGANIZER"
    )


@st.composite
def cases(draw: st.DrawFn, index: int) -> Case:
    zone = ZoneInfo(draw(st.sampled_from(ZONES)))
    day = NOW.date() + timedelta(days=draw(st.integers(1, 40)))
    start = datetime(
        day.year,
        day.month,
        day.day,
        draw(st.integers(0, 23)),
        draw(st.sampled_from((0, 15, 30, 45))),
        tzinfo=zone,
    )
    minutes = draw(st.integers(15, 180))
    candidate = f"cand{index}-{draw(st.integers(0, 99))}@example.com".lower()
    name = draw(TEXT)
    kind = draw(st.sampled_from(("plain", "plain", "series", "ends-before-start", "missing")))
    fields: dict[str, object] = {
        "uid": f"hv-{index}@nordljus.se",
        "subject": "Intervju " + draw(TEXT),
        "start": start,
        "end": start + timedelta(minutes=minutes),
        "organizer": two_weeks.RECRUITER,
        "attendees": (two_weeks.RECRUITER, two_weeks.PANEL, Who(candidate, name)),
        "body": draw(TEXT),
        "location": draw(TEXT),
    }
    broken = ""
    if kind == "series":
        count = draw(st.integers(2, 5))
        fields["rrule"] = f"FREQ=WEEKLY;COUNT={count}"
        occurrences = [start + timedelta(weeks=n) for n in range(count)]
        if draw(st.booleans()):
            fields["exdates"] = (occurrences[-1],)
        if draw(st.booleans()):
            moved = occurrences[1] + timedelta(hours=draw(st.integers(-30, 30)))
            fields["moved"] = (Moved(occurrences[1], moved, moved + timedelta(minutes=minutes)),)
    elif kind == "ends-before-start":
        fields["end"] = start - timedelta(minutes=minutes)
        broken = kind
    elif kind == "missing":
        broken = "missing-" + draw(st.sampled_from(("DTEND", "SUMMARY", "ORGANIZER")))
    return Case(EventSpec(**fields), candidate, sound=not broken, broken=broken)  # type: ignore[arg-type]


@st.composite
def calendars(draw: st.DrawFn) -> tuple[list[Case], bool]:
    size = draw(st.integers(1, 8))
    return [draw(cases(n)) for n in range(size)], draw(st.booleans())


def write_ics(path: Path, found: list[Case], windows_names: bool) -> None:
    """The cases as one calendar; some properties dropped; zones perhaps under Windows names."""
    text = to_ics([c.spec for c in found]).decode("utf-8")
    text = re.sub(r"\r\n[ \t]", "", text)  # unfold, so that whole properties can be dropped
    out: list[str] = []
    block: list[str] | None = None
    for line in text.split("\r\n"):
        if line == "BEGIN:VEVENT":
            block = []
        if block is None:
            out.append(line)
            continue
        block.append(line)
        if line == "END:VEVENT":
            uid = next(b[4:] for b in block if b.startswith("UID:"))
            case = next((c for c in found if c.spec.uid == uid), None)
            drop = (
                case.broken[len("missing-") :]
                if case and case.broken.startswith("missing-")
                else ""
            )
            out.extend(b for b in block if not (drop and re.match(rf"{drop}[;:]", b)))
            block = None
    text = "\r\n".join(out)
    if windows_names:
        for iana, windows in WINDOWS_NAMES.items():
            text = text.replace(f"TZID={iana}", f"TZID={windows}").replace(
                f"TZID:{iana}", f"TZID:{windows}"
            )
    path.write_text(text, encoding="utf-8")


def bad_times_reasons(case: Case) -> list[str]:
    """What the log may give as the reason an event that ends before it starts was left out
    (patterns): that, or another problem of the same event found first. One whose text alone
    is about the size limit may be left out for its size; one whose lines carry control
    characters may lose its attendee line and with it its candidate."""
    reasons = [re.escape(REASON_BAD_TIMES)]
    if len(to_ics([case.spec])) > MAX_EVENT_BYTES - 8 * 1024:
        reasons.append(re.escape(REASON_TOO_BIG))
    if has_controls(case.spec):
        reasons.append(".+")
    return reasons


def has_controls(spec: EventSpec) -> bool:
    texts = (spec.subject, spec.body, spec.location, *(w.name for w in spec.attendees))
    return any(unicodedata.category(ch) == "Cc" and ch not in "\r\n\t" for t in texts for ch in t)


def describe(found: list[Case]) -> str:
    """The generated calendar in short (the full example runs to megabytes)."""
    return "\n".join(
        f"  {c.spec.uid} {c.broken or 'sound'} {c.spec.start.isoformat()} ({c.spec.start.tzinfo}) "
        f"-> {c.spec.end.isoformat()} rrule={c.spec.rrule!r} exdates={len(c.spec.exdates)} "
        f"moved={len(c.spec.moved)} name={c.spec.attendees[-1].name[:30]!r} subject={c.spec.subject[:30]!r}"
        for c in found
    )


def assert_well_formed(message: EmailMessage, candidates: set[str]) -> str:
    """One recipient, a known one; no header we did not write; no template code executed."""
    assert message.defects == [] or all("Header" not in type(d).__name__ for d in message.defects)
    names = {n.lower() for n in message}
    assert names <= ALLOWED_HEADERS, names - ALLOWED_HEADERS
    assert message["Bcc"] is None and message["Cc"] is None
    (to,) = message.get_all("To") or []
    (address,) = to.addresses
    assert address.addr_spec in candidates
    for name, value in message.items():
        assert "\n" not in str(value) and "\r" not in str(value), name
    assert str(message["Subject"]).strip()
    assert message[KEY_HEADER]
    for part in ("plain", "html"):
        body = message.get_body((part,))
        assert body is not None
        content = body.get_content()
        assert PAYLOAD not in content
        if part == "html":
            assert "<script>" not in content
    return str(address.addr_spec)


def oversized_and_ending_before_it_starts() -> Case:
    """Found by a run of the property: an event with two problems, left out for the one found
    first (its size), and the reason the oracle expected was the other."""
    start = datetime(2026, 12, 29, 1, 0, tzinfo=ZoneInfo("Pacific/Chatham"))
    code = "{% for x in range(3) %}{{ 'pwn' ~ 'ed' }}{% endfor %}"
    return Case(
        EventSpec(
            uid="hv-0@nordljus.se",
            subject="Intervju " + code * 2540,
            start=start,
            end=start - timedelta(minutes=45),
            organizer=two_weeks.RECRUITER,
            attendees=(
                two_weeks.RECRUITER,
                two_weeks.PANEL,
                Who(
                    "cand0-43@example.com",
                    "\u0645\u0631\u064a\u0645 \u0627\u0644\u0639\u0644\u064a",
                ),
            ),
            body=code * 3796,
            location="E/pV",
        ),
        "cand0-43@example.com",
        sound=False,
        broken="ends-before-start",
    )


@pytest.mark.timeout(budget.timeout(10.0, budget.EXAMPLES))
@seed(budget.SEED)
@settings(
    max_examples=budget.EXAMPLES,
    deadline=None,
    database=None,
    # Examples are whole calendars with megabyte fields: shrinking one takes longer than the
    # suite; the failing calendar is printed as generated.
    phases=(Phase.explicit, Phase.generate),
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)
@given(calendars())
@example(([oversized_and_ending_before_it_starts()], False))
def test_generated_calendars_are_drafted_or_skipped_never_crash(
    drawn: tuple[list[Case], bool],
) -> None:
    found, windows_names = drawn
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        backend = IcsMaildirBackend(root)
        write_ics(backend.ics, found, windows_names)
        config = write_config(backend, root)
        logs = io.StringIO()
        with contextlib.redirect_stderr(logs), contextlib.redirect_stdout(io.StringIO()):
            code = main(["--config", str(config), "once", "--now", NOW.isoformat()])
        log = logs.getvalue()
        assert "Traceback" not in log
        assert code == 0, log[-2000:]
        drafts = [
            email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
            for p in backend.files(".Drafts")
        ]
    everyone = {c.candidate for c in found}
    to = [assert_well_formed(m, everyone) for m in drafts]
    assert len(to) == len(set(to)), "one draft per candidate per day"
    # Control characters are not allowed in iCalendar text: a line carrying them may be dropped
    # by the parser (the event then has no candidate, and says so); everything else is drafted.
    sound = {c.candidate for c in found if c.sound and not has_controls(c.spec)}
    assert sound <= set(to), (
        f"sound interviews not drafted: {sorted(sound - set(to))}\n{describe(found)}\n{log[-3000:]}"
    )
    # Every interview-like event that made no draft is accounted for, by count and reason (the
    # log names no event above DEBUG: an event's UID may carry an address).
    unexplained = [c for c in found if c.candidate not in to and c.broken != "missing-SUMMARY"]
    reported = sum(
        int(m.group(1)) for m in re.finditer(r"(\d+) event\(s\) (?:not used|left out)", log)
    )
    assert reported >= len(unexplained), (
        f"{len(unexplained)} events neither drafted nor reported with a reason\n"
        f"{describe(found)}\n{log[-3000:]}"
    )
    for case in found:
        if case.broken == "ends-before-start" and case.candidate not in sound:
            assert case.candidate not in to
            assert re.search(
                rf"event\(s\) (?:not used|left out): (?:{'|'.join(bad_times_reasons(case))})", log
            ), log[-2000:]
        if case.broken == "missing-SUMMARY" and case.candidate not in sound:
            assert case.candidate not in to  # no subject: not recognisably an interview
    for case in found:
        assert case.spec.uid not in log, "an event's UID in the logs above DEBUG"
    for line in log.splitlines():
        assert not any(c in line for c in everyone), "a candidate address in the logs above DEBUG"


def test_the_oracle_sees_a_draft_when_there_is_one(scratch: Path) -> None:
    # The property above is only as good as its reading of the Maildir: one plain case, by hand.
    start = datetime(2026, 12, 3, 14, 0, tzinfo=ZoneInfo("Europe/Stockholm"))
    case = Case(
        EventSpec(
            uid="hv-plain@nordljus.se",
            subject="Intervju",
            start=start,
            end=start + timedelta(hours=1),
            organizer=two_weeks.RECRUITER,
            attendees=(
                two_weeks.RECRUITER,
                Who("plain@example.com", "Anna\r\nBcc: leak@evil.example"),
            ),
        ),
        "plain@example.com",
        sound=True,
    )
    backend = IcsMaildirBackend(scratch)
    write_ics(backend.ics, [case], windows_names=False)
    assert (
        main(["--config", str(write_config(backend, scratch)), "once", "--now", NOW.isoformat()])
        == 0
    )
    (path,) = backend.files(".Drafts")
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert assert_well_formed(message, {"plain@example.com"}) == "plain@example.com"
