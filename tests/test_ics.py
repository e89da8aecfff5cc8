"""The ICS calendar source: the contract suite over a file and over a loopback HTTP link, plus
what only iCalendar files bring (Windows zone names, floating times, broken files and events)."""

from __future__ import annotations

import gzip
import hashlib
import io
import logging
import os
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from recruitmail import connectors
from recruitmail.connectors import ics
from recruitmail.connectors.ics import SourceOptions, open_source
from recruitmail.contracts import limits
from recruitmail.contracts.connector import CalendarSource, ConnectorContext
from recruitmail.contracts.errors import (
    AuthError,
    ConfigError,
    CursorExpired,
    PermanentError,
    TransientError,
)
from recruitmail.contracts.models import Event, Period, Response, SyncResult
from tests.contract.calendar_source import (
    CANDIDATE,
    CONTRACT_WINDOW,
    CalendarSourceContract,
    interview,
    local,
    only,
    utc,
)
from tests.fakes.graph import ThrowawayCA
from tests.scenario.spec import EventSpec, to_ics

WINDOW = CONTRACT_WINDOW


def context(tmp_path: Path, zone: str = "Europe/Stockholm") -> ConnectorContext:
    return ConnectorContext(
        mailbox="rekryterare@example.se",
        mailbox_name="Rut Rekryterare",
        time_zone=zone,
        company_domains=("example.se",),
        state_dir=tmp_path,
    )


@dataclass
class Request:
    path: str
    if_none_match: str | None
    status: int
    accept_encoding: str | None = None


@dataclass
class IcsServer:
    """A published-calendar server on loopback: serves one body with an ETag, answers 304."""

    body: bytes = b""
    status: int = 200
    extra_headers: dict[str, str] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    redirects: dict[str, str] = field(default_factory=dict)  # path -> Location
    port: int = 0
    server: ThreadingHTTPServer | None = None

    def wrap(self, tls: ssl.SSLContext) -> None:
        """Serve https from now on (the next connection)."""
        assert self.server is not None
        self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)

    @property
    def etag(self) -> str:
        return '"' + hashlib.sha256(self.body).hexdigest()[:16] + '"'

    def url(self, path: str = "/owa/calendar/secret-token-123/reachcalendar.ics") -> str:
        return f"http://127.0.0.1:{self.port}{path}"


def _handler(state: IcsServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the http.server naming)
            tag = self.headers.get("If-None-Match")
            status = state.status
            if status == 200 and tag == state.etag:
                status = 304
            state.requests.append(
                Request(self.path, tag, status, self.headers.get("Accept-Encoding"))
            )
            if self.path in state.redirects:
                self.send_response(302)
                self.send_header("Location", state.redirects[self.path])
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(status)
            for name, value in state.extra_headers.items():
                self.send_header(name, value)
            if status in (200, 304):
                self.send_header("ETag", state.etag)
            payload = state.body if status == 200 else b""
            if status != 304:
                self.send_header("Content-Type", "text/calendar; charset=utf-8")
                self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if status != 304:
                self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def ics_server() -> Iterator[IcsServer]:
    state = IcsServer()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.port = server.server_address[1]
    state.server = server
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


class IcsBackend:
    """Keeps specs by uid and rewrites the whole calendar on each change, as a publisher does."""

    def __init__(self, tmp_path: Path, server: IcsServer | None = None) -> None:
        self.tmp_path = tmp_path
        self.file = tmp_path / "calendar.ics"
        self.server = server
        self.specs: dict[str, EventSpec] = {}
        self.sources: list[CalendarSource] = []
        self._write()

    def _write(self) -> None:
        data = to_ics(list(self.specs.values()))
        self.file.write_bytes(data)
        if self.server is not None:
            self.server.body = data

    def put(self, spec: EventSpec) -> None:
        self.specs[spec.uid] = spec
        self._write()

    def delete(self, uid: str) -> None:
        del self.specs[uid]
        self._write()

    def source(self) -> CalendarSource:
        if self.server is not None:
            options = SourceOptions(url=self.server.url())
        else:
            options = SourceOptions(path=self.file)
        source = open_source(options, context(self.tmp_path))
        self.sources.append(source)
        return source

    def window(self) -> Period:
        return WINDOW

    def expire_cursor(self, cursor: str) -> str | None:
        return cursor[: len(cursor) // 2]  # a cursor damaged in storage

    def close(self) -> None:
        for source in self.sources:
            source.close()


class TestIcsFileContract(CalendarSourceContract):
    @pytest.fixture
    def calendar_backend(self, tmp_path: Path) -> Iterator[IcsBackend]:
        backend = IcsBackend(tmp_path)
        yield backend
        backend.close()


class TestIcsLinkContract(CalendarSourceContract):
    @pytest.fixture
    def calendar_backend(self, tmp_path: Path, ics_server: IcsServer) -> Iterator[IcsBackend]:
        backend = IcsBackend(tmp_path, ics_server)
        yield backend
        backend.close()


# --- what only iCalendar brings -------------------------------------------------------------


def calendar(*events: str, header: str = "") -> bytes:
    """A VCALENDAR around raw VEVENT text, with CRLF line ends as real feeds have."""
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//Example//Feed//EN"]
    if header:
        lines.extend(header.strip().splitlines())
    for event in events:
        lines.extend(line.strip() for line in event.strip().splitlines())
    lines.append("END:VCALENDAR")
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")


def vevent(uid: str, start: str, end: str, *extra: str, summary: str = "Intervju") -> str:
    return "\n".join(
        ["BEGIN:VEVENT", f"UID:{uid}", "DTSTAMP:20260101T000000Z", f"SUMMARY:{summary}"]
        + [start, end, *extra, "END:VEVENT"]
    )


def read(tmp_path: Path, data: bytes, zone: str = "Europe/Stockholm") -> tuple[Event, ...]:
    file = tmp_path / "feed.ics"
    file.write_bytes(data)
    source = open_source(SourceOptions(path=file), context(tmp_path, zone))
    try:
        return source.sync(None, WINDOW).events
    finally:
        source.close()


def sync_file(
    tmp_path: Path, data: bytes, zone: str = "Europe/Stockholm", window: Period = WINDOW
) -> SyncResult:
    file = tmp_path / "feed.ics"
    file.write_bytes(data)
    source = open_source(SourceOptions(path=file), context(tmp_path, zone))
    try:
        return source.sync(None, window)
    finally:
        source.close()


OUTLOOK_VTIMEZONE = """
BEGIN:VTIMEZONE
TZID:W. Europe Standard Time
BEGIN:STANDARD
DTSTART:16010101T030000
TZOFFSETFROM:+0200
TZOFFSETTO:+0100
RRULE:FREQ=YEARLY;INTERVAL=1;BYDAY=-1SU;BYMONTH=10
END:STANDARD
BEGIN:DAYLIGHT
DTSTART:16010101T020000
TZOFFSETFROM:+0100
TZOFFSETTO:+0200
RRULE:FREQ=YEARLY;INTERVAL=1;BYDAY=-1SU;BYMONTH=3
END:DAYLIGHT
END:VTIMEZONE
"""


@pytest.mark.parametrize("with_vtimezone", [True, False])
def test_windows_zone_names_are_understood(tmp_path: Path, with_vtimezone: bool) -> None:
    data = calendar(
        vevent(
            "berlin",
            "DTSTART;TZID=W. Europe Standard Time:20260310T100000",
            "DTEND;TZID=W. Europe Standard Time:20260310T110000",
        ),
        vevent(
            "summer",
            "DTSTART;TZID=W. Europe Standard Time:20260610T100000",
            "DTEND;TZID=W. Europe Standard Time:20260610T110000",
        ),
        vevent(
            "helsinki",
            "DTSTART;TZID=FLE Standard Time:20260310T100000",
            "DTEND;TZID=FLE Standard Time:20260310T110000",
        ),
        header=OUTLOOK_VTIMEZONE if with_vtimezone else "",
    )
    events = read(tmp_path, data)
    assert utc(only(events, "berlin").start) == datetime(2026, 3, 10, 9, 0, tzinfo=UTC)
    assert utc(only(events, "summer").start) == datetime(2026, 6, 10, 8, 0, tzinfo=UTC)
    assert utc(only(events, "helsinki").start) == datetime(2026, 3, 10, 8, 0, tzinfo=UTC)
    assert utc(only(events, "helsinki").end) == datetime(2026, 3, 10, 9, 0, tzinfo=UTC)


def test_x_wr_timezone_gives_floating_times_their_zone(tmp_path: Path) -> None:
    data = calendar(
        vevent("floating", "DTSTART:20260310T100000", "DTEND:20260310T110000"),
        vevent("in-utc", "DTSTART:20260310T120000Z", "DTEND:20260310T130000Z"),
        header="X-WR-TIMEZONE:Europe/Helsinki",
    )
    events = read(tmp_path, data)
    assert utc(only(events, "floating").start) == datetime(2026, 3, 10, 8, 0, tzinfo=UTC)
    assert utc(only(events, "in-utc").start) == datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def test_unknown_x_wr_timezone_falls_back_to_the_recruiters_zone(tmp_path: Path) -> None:
    data = calendar(
        vevent("floating", "DTSTART:20260310T100000", "DTEND:20260310T110000"),
        header="X-WR-TIMEZONE:Middle Earth/Shire",
    )
    [event] = read(tmp_path, data)
    assert utc(event.start) == datetime(2026, 3, 10, 9, 0, tzinfo=UTC)


def test_floating_weekly_series_keeps_its_wall_clock_across_dst(tmp_path: Path) -> None:
    data = calendar(
        vevent(
            "weekly",
            "DTSTART:20260323T100000",
            "DTEND:20260323T110000",
            "RRULE:FREQ=WEEKLY;COUNT=2",
        )
    )
    events = sorted(read(tmp_path, data), key=lambda e: e.start)
    assert [utc(e.start).hour for e in events] == [9, 8]  # 10:00 CET, then 10:00 CEST


def test_floating_times_are_the_recruiters_local_time(tmp_path: Path) -> None:
    data = calendar(vevent("floating", "DTSTART:20260610T100000", "DTEND:20260610T110000"))
    [event] = read(tmp_path, data, zone="Europe/Stockholm")
    assert event.start.utcoffset() is not None
    assert utc(event.start) == datetime(2026, 6, 10, 8, 0, tzinfo=UTC)


def test_all_day_event_follows_the_recruiters_zone(tmp_path: Path) -> None:
    data = calendar(
        vevent("day", "DTSTART;VALUE=DATE:20260520", "DTEND;VALUE=DATE:20260522"),
        vevent("no-end", "DTSTART;VALUE=DATE:20260601", ""),
    )
    events = read(tmp_path, data, zone="America/New_York")
    day = only(events, "day")
    assert day.all_day
    assert utc(day.start) == datetime(2026, 5, 20, 4, 0, tzinfo=UTC)
    assert utc(day.end) == datetime(2026, 5, 22, 4, 0, tzinfo=UTC)
    no_end = only(events, "no-end")
    assert utc(no_end.end) - utc(no_end.start) == timedelta(days=1)


def test_attendee_details_are_mapped(tmp_path: Path) -> None:
    data = calendar(
        vevent(
            "panel",
            "DTSTART:20260310T100000Z",
            "DTEND:20260310T110000Z",
            "ORGANIZER;CN=Rut Rekryterare:mailto:Rekryterare@Example.se",
            'ATTENDEE;CN="Svensson, Anna";PARTSTAT=ACCEPTED;ROLE=REQ-PARTICIPANT:mailto:anna@candidate.example',
            "ATTENDEE;CN=Per;PARTSTAT=TENTATIVE;ROLE=OPT-PARTICIPANT:mailto:per@example.se",
            "ATTENDEE;CN=Rum Ada;CUTYPE=ROOM;PARTSTAT=ACCEPTED:mailto:rum-ada@example.se",
            "ATTENDEE;CN=Projektor;CUTYPE=RESOURCE:mailto:projektor@example.se",
            "ATTENDEE;CN=Nobody;PARTSTAT=ACCEPTED:urn:uuid:1234",
        )
    )
    [event] = read(tmp_path, data)
    assert event.organizer is not None
    assert event.organizer.address == "rekryterare@example.se" and event.organizer.is_organizer
    people = {a.address: a for a in event.attendees}
    assert set(people) == {
        "anna@candidate.example",
        "per@example.se",
        "rum-ada@example.se",
        "projektor@example.se",
    }
    assert people["anna@candidate.example"].name == "Svensson, Anna"
    assert people["anna@candidate.example"].response is Response.ACCEPTED
    assert not people["anna@candidate.example"].optional
    assert people["per@example.se"].optional
    assert people["rum-ada@example.se"].is_resource and people["projektor@example.se"].is_resource
    assert people["projektor@example.se"].response is Response.NONE


def test_html_only_description_becomes_plain_text_and_meeting_link_is_found(tmp_path: Path) -> None:
    link = "https://teams.microsoft.com/l/meetup-join/19%3ameeting_abc%40thread.v2/0"
    data = calendar(
        vevent(
            "teams",
            "DTSTART:20260310T100000Z",
            "DTEND:20260310T110000Z",
            f'X-ALT-DESC;FMTTYPE=text/html:<html><body><p>Hej <b>Anna</b>!</p><ul><li>Agenda: kodtest</li></ul><a href="{link}">Anslut</a></body></html>',
        )
    )
    [event] = read(tmp_path, data)
    assert "<" not in event.body
    assert "Hej Anna!" in event.body
    assert "- Agenda: kodtest" in event.body
    assert event.online_url == link


def test_cancelled_event_is_reported_cancelled(tmp_path: Path) -> None:
    data = to_ics([interview(cancelled=True)])
    [event] = read(tmp_path, data)
    assert event.cancelled


def test_cancelled_occurrence_of_a_series_is_reported_cancelled(tmp_path: Path) -> None:
    data = calendar(
        vevent(
            "weekly",
            "DTSTART:20260406T080000Z",
            "DTEND:20260406T090000Z",
            "RRULE:FREQ=WEEKLY;COUNT=3",
        ),
        vevent(
            "weekly",
            "DTSTART:20260413T080000Z",
            "DTEND:20260413T090000Z",
            "RECURRENCE-ID:20260413T080000Z",
            "STATUS:CANCELLED",
        ),
    )
    events = sorted(read(tmp_path, data), key=lambda e: e.start)
    assert [e.cancelled for e in events] == [False, True, False]
    assert events[1].event_id == "weekly/2026-04-13T08:00:00+00:00"
    assert events[1].recurrence_id == "2026-04-13T08:00:00+00:00"


def test_file_that_is_not_icalendar_is_refused_clearly(tmp_path: Path) -> None:
    with pytest.raises(PermanentError, match="not an iCalendar file"):
        read(tmp_path, b"<!DOCTYPE html><html><body>Sign in</body></html>")


def test_malformed_calendar_line_is_named_and_the_events_still_come(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = calendar(vevent("a", "DTSTART:20260310T100000Z", "DTEND:20260310T110000Z"))
    broken = data.replace(b"PRODID:-//Example//Feed//EN", b"this line is not iCalendar at all")
    with caplog.at_level(logging.WARNING, logger="recruitmail.connectors.ics"):
        [event] = read(tmp_path, broken)
    assert event.ical_uid == "a"
    assert any("line 3" in r.getMessage() for r in caplog.records)


def test_truncated_file_is_refused(tmp_path: Path) -> None:
    data = calendar(vevent("a", "DTSTART:20260310T100000Z", "DTEND:20260310T110000Z"))
    with pytest.raises(PermanentError, match="cannot be read"):
        read(tmp_path, data[: len(data) // 2])


def test_unreadable_line_inside_an_event_keeps_the_event(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = calendar(
        vevent("kept", "DTSTART:20260310T100000Z", "DTEND:20260310T110000Z", "not a content line")
    )
    with caplog.at_level(logging.WARNING, logger="recruitmail.connectors.ics"):
        [event] = read(tmp_path, data)
    assert event.ical_uid == "kept"
    assert any("lines that cannot be read" in r.getMessage() for r in caplog.records)
    assert not any("kept" in r.getMessage() for r in caplog.records)  # no event id above DEBUG


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    source = open_source(SourceOptions(path=tmp_path / "missing.ics"), context(tmp_path))
    with pytest.raises(PermanentError, match="no such calendar file"):
        source.sync(None, WINDOW)


def test_one_broken_event_is_skipped_and_named(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    anna = 'ATTENDEE;CN="Svensson, Anna":mailto:anna@candidate.example'
    data = calendar(
        vevent("good-1", "DTSTART:20260310T100000Z", "DTEND:20260310T110000Z", anna),
        vevent("no-start", "", "DTEND:20260310T110000Z", anna),
        vevent("backwards", "DTSTART:20260310T100000Z", "DTEND:20260310T090000Z", anna),
        vevent(
            "bad-zone",
            "DTSTART;TZID=Mars/Olympus Mons:20260310T100000",
            "DTEND;TZID=Mars/Olympus Mons:20260310T110000",
            anna,
        ),
        vevent("good-2", "DTSTART:20260311T100000Z", "DTEND:20260311T110000Z", anna),
    )
    with caplog.at_level(logging.DEBUG, logger="recruitmail.connectors.ics"):
        result = sync_file(tmp_path, data)
    assert sorted(e.ical_uid for e in result.events) == ["good-1", "good-2"]
    skipped = {s.event_id: s.reason for s in result.skipped}
    assert skipped == {
        "no-start": "it has no DTSTART",
        "backwards": "it ends before it starts",
        "bad-zone": "it names a time zone nobody knows",
    }
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("3 events skipped" in message for message in warnings), warnings
    # Above DEBUG: no event UID, no candidate.
    for uid in ("no-start", "backwards", "bad-zone"):
        assert not any(uid in message for message in warnings), warnings
    assert not any("Anna" in m or "anna@" in m for m in warnings)


def test_a_broken_override_drops_its_series_rather_than_misplacing_it(tmp_path: Path) -> None:
    data = calendar(
        vevent(
            "series",
            "DTSTART:20260406T080000Z",
            "DTEND:20260406T090000Z",
            "RRULE:FREQ=DAILY;COUNT=3",
        ),
        vevent(
            "series",
            "DTSTART:20260407T150000Z",
            "DTEND:20260407T140000Z",
            "RECURRENCE-ID:20260407T080000Z",
        ),
        vevent("other", "DTSTART:20260408T100000Z", "DTEND:20260408T110000Z"),
    )
    assert [e.ical_uid for e in read(tmp_path, data)] == ["other"]


def test_a_large_description_is_cut_and_an_oversized_event_is_skipped(tmp_path: Path) -> None:
    body = ("Agenda och bakgrund. " * 50 + "\n") * 150  # 160 kB: a long, real invitation
    huge = ("Agenda och bakgrund. " * 50 + "\n") * 1000  # 1 MB: over the budget of one event
    data = to_ics(
        [
            interview(uid="long", body=body),
            interview(uid="huge", body=huge),
        ]
    )
    result = sync_file(tmp_path, data)
    [event] = result.events
    assert event.ical_uid == "long"
    assert len(event.body) == limits.MAX_BODY_CHARS
    assert event.body.startswith("Agenda och bakgrund.")
    assert [(s.event_id, s.reason) for s in result.skipped] == [("huge", limits.REASON_TOO_BIG)]


def test_unchanged_link_costs_one_conditional_request(
    tmp_path: Path, ics_server: IcsServer
) -> None:
    ics_server.body = to_ics([interview()])
    source = open_source(SourceOptions(url=ics_server.url()), context(tmp_path))
    first = source.sync(None, WINDOW)
    assert len(ics_server.requests) == 1 and ics_server.requests[0].status == 200

    again = source.sync(first.cursor, WINDOW)
    assert again.events == () and again.removed == ()
    assert len(ics_server.requests) == 2
    assert ics_server.requests[1].if_none_match == ics_server.etag
    assert ics_server.requests[1].status == 304
    source.close()


def test_link_change_after_304_is_seen(tmp_path: Path, ics_server: IcsServer) -> None:
    ics_server.body = to_ics([interview()])
    source = open_source(SourceOptions(url=ics_server.url()), context(tmp_path))
    first = source.sync(None, WINDOW)
    second = source.sync(first.cursor, WINDOW)
    ics_server.body = to_ics([interview(subject="Intervju, ny rubrik")])
    third = source.sync(second.cursor, WINDOW)
    assert [e.subject for e in third.events] == ["Intervju, ny rubrik"]
    assert ics_server.requests[-1].status == 200
    source.close()


def test_refused_link_is_an_auth_error_without_the_secret(
    tmp_path: Path, ics_server: IcsServer
) -> None:
    ics_server.status = 403
    source = open_source(SourceOptions(url=ics_server.url()), context(tmp_path))
    with pytest.raises(AuthError, match="publish the calendar again") as caught:
        source.sync(None, WINDOW)
    assert "secret-token-123" not in str(caught.value)
    source.close()


def test_busy_server_is_transient_with_its_retry_after(
    tmp_path: Path, ics_server: IcsServer
) -> None:
    ics_server.status = 503
    ics_server.extra_headers = {"Retry-After": "120"}
    source = open_source(SourceOptions(url=ics_server.url()), context(tmp_path))
    with pytest.raises(TransientError) as caught:
        source.sync(None, WINDOW)
    assert caught.value.retry_after == 120
    source.close()


def test_unreachable_link_is_transient(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a loopback port that nobody listens on once released
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/calendar.ics"
    source = open_source(SourceOptions(url=url, timeout_seconds=5), context(tmp_path))
    with pytest.raises(TransientError):
        source.sync(None, WINDOW)


def test_link_may_be_a_secret_reference(
    tmp_path: Path, ics_server: IcsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    ics_server.body = to_ics([interview()])
    monkeypatch.setenv("RECRUITMAIL_TEST_ICS_URL", ics_server.url())
    source = open_source(SourceOptions(url="env:RECRUITMAIL_TEST_ICS_URL"), context(tmp_path))
    result = source.sync(None, WINDOW)
    assert [e.ical_uid for e in result.events] == ["interview-1@example.se"]
    source.close()


def test_garbage_cursor_asks_for_a_full_sync(tmp_path: Path) -> None:
    file = tmp_path / "calendar.ics"
    file.write_bytes(to_ics([interview()]))
    source = open_source(SourceOptions(path=file), context(tmp_path))
    for cursor in ("", "not json", '{"v": 99, "events": {}}', '{"v": 1, "events": [1]}'):
        with pytest.raises(CursorExpired):
            source.sync(cursor, WINDOW)


def test_window_moving_past_an_event_reports_it_removed(tmp_path: Path) -> None:
    file = tmp_path / "calendar.ics"
    file.write_bytes(to_ics([interview()]))
    source = open_source(SourceOptions(path=file), context(tmp_path))
    first = source.sync(None, WINDOW)
    later = Period(local((2026, 4, 1), "00:00"), local((2026, 12, 1), "00:00"))
    result = source.sync(first.cursor, later)
    assert result.removed == (only(first.events, "interview-1@example.se").event_id,)


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ({"url": "http://calendar.example.com/feed.ics"}, "https"),
        ({"url": "ftp://calendar.example.com/feed.ics"}, "https"),
        ({"path": "/tmp/a.ics", "url": "https://calendar.example.com/a.ics"}, "exactly one"),
        ({}, "exactly one"),
        ({"path": "/tmp/a.ics", "colour": "red"}, "colour"),
    ],
)
def test_bad_options_are_configuration_errors(raw: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        connectors.validate_options("ics", "source", raw, "mailboxes[0].source")


def test_webcal_links_are_read_over_https() -> None:
    options = SourceOptions(url="webcal://calendar.example.com/feed.ics")
    assert options.url == "https://calendar.example.com/feed.ics"


def test_source_is_built_through_the_registry(tmp_path: Path) -> None:
    file = tmp_path / "calendar.ics"
    file.write_bytes(to_ics([interview()]))
    source = connectors.open_source("ics", {"path": str(file)}, context(tmp_path), "source")
    result = source.sync(None, WINDOW)
    [event] = result.events
    assert {a.address for a in event.attendees} >= {CANDIDATE.address}
    source.close()
    source.close()


# --- a calendar anyone can write into: budgets, isolation, hostile servers -------------------

GOOD = vevent("good", "DTSTART:20260310T100000Z", "DTEND:20260310T110000Z")


def reasons(result: SyncResult) -> dict[str, str]:
    return {s.event_id: s.reason for s in result.skipped}


@pytest.mark.parametrize(
    "rule",
    [
        "RRULE:FREQ=SECONDLY",
        "RRULE:FREQ=MINUTELY",
        "RRULE:FREQ=HOURLY;INTERVAL=1",
        "RRULE:FREQ=DAILY;BYMINUTE=0,1,2,3,4,5,6,7,8,9",
        "RRULE:FREQ=WEEKLY;BYHOUR=9,10",
        "EXRULE:FREQ=SECONDLY",
        "RRULE:FREQ=SOMETIMES",
    ],
)
def test_a_series_repeating_more_often_than_daily_is_skipped_unexpanded(
    tmp_path: Path, rule: str
) -> None:
    hostile = vevent("often", "DTSTART:20260301T000000Z", "DTEND:20260301T000001Z", rule)
    result = sync_file(tmp_path, calendar(hostile, GOOD))
    assert [e.ical_uid for e in result.events] == ["good"]
    assert reasons(result) == {"often": limits.REASON_REPEATS_TOO_OFTEN}


def test_a_daily_series_from_year_one_is_skipped_and_a_yearly_birthday_is_not(
    tmp_path: Path,
) -> None:
    ancient = vevent(
        "ancient", "DTSTART:00010101T090000Z", "DTEND:00010101T100000Z", "RRULE:FREQ=DAILY"
    )
    birthday = vevent(
        "birthday", "DTSTART;VALUE=DATE:19500601", "DTEND;VALUE=DATE:19500602", "RRULE:FREQ=YEARLY"
    )
    result = sync_file(tmp_path, calendar(ancient, birthday, GOOD))
    assert sorted(e.ical_uid for e in result.events) == ["birthday", "good"]
    assert reasons(result) == {"ancient": limits.REASON_OUT_OF_RANGE}


@pytest.mark.parametrize(
    ("end", "reason"),
    [
        ("DTEND:99991231T235959Z", limits.REASON_OUT_OF_RANGE),
        ("DURATION:P3000000D", limits.REASON_TOO_LONG),
        ("DTEND:21000101T000000Z", limits.REASON_TOO_LONG),
    ],
)
def test_an_absurd_lunch_is_skipped_and_the_feed_still_reads(
    tmp_path: Path, end: str, reason: str
) -> None:
    lunch = vevent("lunch", "DTSTART:20260310T110000Z", end, summary="Lunch")
    result = sync_file(tmp_path, calendar(lunch, GOOD))
    assert [e.ical_uid for e in result.events] == ["good"]
    assert reasons(result) == {"lunch": reason}


def attendees(count: int) -> list[str]:
    return [
        f"ATTENDEE;CN=Person number {i}:mailto:person{i}@candidate.example" for i in range(count)
    ]


def test_an_interview_with_too_many_attendees_is_skipped_whole(tmp_path: Path) -> None:
    crowd = vevent("crowd", "DTSTART:20260310T100000Z", "DTEND:20260310T110000Z", *attendees(201))
    fine = vevent("fine", "DTSTART:20260311T100000Z", "DTEND:20260311T110000Z", *attendees(200))
    result = sync_file(tmp_path, calendar(crowd, fine))
    [event] = result.events
    assert event.ical_uid == "fine" and len(event.attendees) == 200
    assert reasons(result) == {"crowd": limits.REASON_TOO_MANY_ATTENDEES}


def test_fifty_thousand_attendees_are_skipped_by_size_without_reading_them(
    tmp_path: Path,
) -> None:
    crowd = vevent(
        "crowd", "DTSTART:20260310T100000Z", "DTEND:20260310T110000Z", *attendees(50_000)
    )
    data = calendar(crowd, GOOD)
    assert len(data) > 3_000_000
    result = sync_file(tmp_path, data)
    assert [e.ical_uid for e in result.events] == ["good"]
    assert reasons(result) == {"crowd": limits.REASON_TOO_BIG}


def test_a_long_series_is_skipped_past_its_occurrence_budget(tmp_path: Path) -> None:
    daily = vevent(
        "standup", "DTSTART:20260302T080000Z", "DTEND:20260302T081500Z", "RRULE:FREQ=DAILY"
    )
    two_years = Period(WINDOW.start, WINDOW.start + timedelta(days=730))
    result = sync_file(tmp_path, calendar(daily, GOOD), window=two_years)
    assert [e.ical_uid for e in result.events] == ["good"]
    assert reasons(result) == {"standup": limits.REASON_TOO_MANY_OCCURRENCES}
    # Within the budget the same series is read.
    assert len(sync_file(tmp_path, calendar(daily), window=WINDOW).events) > 200


def test_the_pass_budgets_skip_the_rest_with_a_reason() -> None:
    data = calendar(
        GOOD,
        vevent("second", "DTSTART:20260311T100000Z", "DTEND:20260311T110000Z"),
        vevent("third", "DTSTART:20260312T100000Z", "DTEND:20260312T110000Z"),
    )
    zone = ZoneInfo("Europe/Stockholm")
    counted = ics.read_ics(data, WINDOW, zone, "feed", ics.PassBudget(1e12, occurrences_left=2))
    assert len(counted.events) == 2
    assert [s.reason for s in counted.skipped] == [limits.REASON_PASS_BUDGET]
    timed = ics.read_ics(data, WINDOW, zone, "feed", ics.PassBudget(deadline=0.0))
    assert timed.events == []
    assert {s.reason for s in timed.skipped} == {limits.REASON_PASS_BUDGET}
    assert len(timed.skipped) == 3


def vtimezone(
    tzid: str, parts: int = 2, rule: str = "RRULE:FREQ=YEARLY;BYDAY=-1SU;BYMONTH=3"
) -> str:
    lines = ["BEGIN:VTIMEZONE", f"TZID:{tzid}"]
    for i in range(parts):
        kind = "DAYLIGHT" if i % 2 else "STANDARD"
        lines += [
            f"BEGIN:{kind}",
            f"DTSTART:{1970 + i % 50}0101T020000",
            "TZOFFSETFROM:+0100",
            "TZOFFSETTO:+0200" if kind == "DAYLIGHT" else "TZOFFSETTO:+0100",
            rule,
            f"END:{kind}",
        ]
    return "\n".join([*lines, "END:VTIMEZONE"])


@pytest.mark.parametrize(
    "zone_text",
    [
        vtimezone("Hostile Zone", rule="RRULE:FREQ=SECONDLY"),
        vtimezone("Hostile Zone", rule="RRULE:FREQ=DAILY"),
        vtimezone("Hostile Zone", parts=limits.MAX_TIMEZONE_PARTS + 1),
        vtimezone("Hostile Zone", parts=40_000),
    ],
    ids=["secondly", "daily", "201-parts", "40k-parts"],
)
def test_a_hostile_time_zone_is_ignored_and_its_events_skipped(
    tmp_path: Path, zone_text: str
) -> None:
    inside = vevent(
        "inside",
        "DTSTART;TZID=Hostile Zone:20260310T100000",
        "DTEND;TZID=Hostile Zone:20260310T110000",
    )
    result = sync_file(tmp_path, calendar(inside, GOOD, header=zone_text))
    assert [e.ical_uid for e in result.events] == ["good"]
    assert reasons(result) == {"inside": limits.REASON_TIMEZONE}


def test_a_hostile_definition_of_a_known_zone_costs_nothing(tmp_path: Path) -> None:
    zone_text = vtimezone("Europe/Stockholm", rule="RRULE:FREQ=SECONDLY")
    inside = vevent(
        "inside",
        "DTSTART;TZID=Europe/Stockholm:20260310T100000",
        "DTEND;TZID=Europe/Stockholm:20260310T110000",
    )
    [event] = sync_file(tmp_path, calendar(inside, header=zone_text)).events
    assert event.start == datetime(2026, 3, 10, 10, tzinfo=ZoneInfo("Europe/Stockholm"))


def test_an_interview_in_the_spring_forward_gap_is_shifted_forward(tmp_path: Path) -> None:
    gap = vevent(
        "gap",
        "DTSTART;TZID=Europe/Stockholm:20260329T023000",
        "DTEND;TZID=Europe/Stockholm:20260329T030000",
    )
    [event] = sync_file(tmp_path, calendar(gap)).events
    stockholm = ZoneInfo("Europe/Stockholm")
    assert event.start.astimezone(stockholm).strftime("%H:%M %Z") == "03:30 CEST"
    assert event.end.astimezone(stockholm).strftime("%H:%M %Z") == "04:00 CEST"
    assert event.end - event.start == timedelta(minutes=30)


def test_one_unreadable_component_is_skipped_and_the_rest_read(tmp_path: Path) -> None:
    broken = vevent("broken", "DTSTART:20260310T100000Z", "DTEND:20260310T110000Z", "END:VALARM")
    # A stray END inside the event: the parser refuses that component, and only that one.
    result = sync_file(tmp_path, calendar(broken, GOOD))
    assert [e.ical_uid for e in result.events] == ["good"]
    assert list(reasons(result)) == ["broken"]


def test_a_truncated_download_fails_the_feed_rather_than_removing_events(tmp_path: Path) -> None:
    data = calendar(GOOD, vevent("b", "DTSTART:20260311T100000Z", "DTEND:20260311T110000Z"))
    with pytest.raises(PermanentError, match="ends in the middle"):
        read(tmp_path, data[: data.index(b"UID:b")])


@pytest.mark.parametrize("marker", ["CLASS:PRIVATE", "CLASS:CONFIDENTIAL", "CLASS:PUBLIC", ""])
def test_private_events_are_marked_private(tmp_path: Path, marker: str) -> None:
    extra = [marker] if marker else []
    [event] = read(
        tmp_path,
        calendar(vevent("p", "DTSTART:20260310T100000Z", "DTEND:20260310T110000Z", *extra)),
    )
    assert event.private is (marker in ("CLASS:PRIVATE", "CLASS:CONFIDENTIAL"))


def test_a_trailing_dot_domain_is_the_same_person(tmp_path: Path) -> None:
    [event] = read(
        tmp_path,
        calendar(
            vevent(
                "dot",
                "DTSTART:20260310T100000Z",
                "DTEND:20260310T110000Z",
                "ORGANIZER:mailto:rut@example.se.",
                "ATTENDEE;CN=Anna:mailto:anna@candidate.example.",
                "ATTENDEE;CN=Anna again:mailto:ANNA@candidate.example",
            )
        ),
    )
    assert event.organizer is not None and event.organizer.address == "rut@example.se"
    assert [a.address for a in event.attendees] == ["anna@candidate.example"]


def test_a_calendar_file_over_the_feed_budget_is_refused_unread(tmp_path: Path) -> None:
    file = tmp_path / "huge.ics"
    with file.open("wb") as handle:
        handle.write(calendar(GOOD))
        handle.truncate(100 * 1024 * 1024)  # sparse: 100 MB without writing them
    source = open_source(SourceOptions(path=file), context(tmp_path))
    with pytest.raises(PermanentError, match="larger than"):
        source.sync(None, WINDOW)


def test_one_huge_event_in_a_file_over_the_feed_budget_costs_only_itself(
    tmp_path: Path,
) -> None:
    """A 100 MB invitation in a local file: read as a stream, only that event is skipped."""
    huge = vevent("huge", "DTSTART:20260310T120000Z", "DTEND:20260310T130000Z", "DESCRIPTION:x")
    head, _, tail = calendar(huge, GOOD).partition(b"DESCRIPTION:x\r\n")
    folded = b" " + b"y" * 74 + b"\r\n"  # one DESCRIPTION folded over 1.4 million lines
    file = tmp_path / "calendar.ics"
    with file.open("wb") as handle:
        handle.write(head + b"DESCRIPTION:x\r\n")
        handle.write(folded * (100 * 1024 * 1024 // len(folded) + 1))
        handle.write(tail)
    assert file.stat().st_size > limits.MAX_FEED_BYTES

    result = open_source(SourceOptions(path=file), context(tmp_path)).sync(None, WINDOW)

    assert [e.ical_uid for e in result.events] == ["good"]
    assert reasons(result) == {"huge": limits.REASON_TOO_BIG}


def test_a_fifo_as_calendar_file_is_refused_without_hanging(tmp_path: Path) -> None:
    fifo = tmp_path / "calendar.ics"
    os.mkfifo(fifo)
    source = open_source(SourceOptions(path=fifo), context(tmp_path))
    with pytest.raises(PermanentError, match="not a regular file"):
        source.sync(None, WINDOW)


def link_source(tmp_path: Path, server: IcsServer, path: str | None = None) -> CalendarSource:
    url = server.url(path) if path else server.url()
    return open_source(SourceOptions(url=url), context(tmp_path))


def test_the_link_is_asked_for_plain_bytes_and_one_gzip_layer_is_read(
    tmp_path: Path, ics_server: IcsServer
) -> None:
    ics_server.body = gzip.compress(calendar(GOOD))
    ics_server.extra_headers = {"Content-Encoding": "gzip"}
    source = link_source(tmp_path, ics_server)
    [event] = source.sync(None, WINDOW).events
    source.close()
    assert event.ical_uid == "good"
    assert ics_server.requests[0].accept_encoding == "identity"


def test_stacked_encodings_are_refused(tmp_path: Path, ics_server: IcsServer) -> None:
    ics_server.body = gzip.compress(gzip.compress(calendar(GOOD)))
    ics_server.extra_headers = {"Content-Encoding": "gzip, gzip"}
    source = link_source(tmp_path, ics_server)
    with pytest.raises(PermanentError, match="stacks encodings"):
        source.sync(None, WINDOW)
    source.close()


def gzip_bomb(size: int) -> bytes:
    """``size`` zero bytes, gzipped by streaming (a few hundred kB for a gibibyte)."""
    out = io.BytesIO()
    block = bytes(1024 * 1024)
    with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=9) as handle:
        for _ in range(size // len(block)):
            handle.write(block)
    return out.getvalue()


def test_a_gzip_bomb_is_refused_at_the_feed_budget(tmp_path: Path, ics_server: IcsServer) -> None:
    ics_server.body = gzip_bomb(1024 * 1024 * 1024)
    assert len(ics_server.body) < 2 * 1024 * 1024
    ics_server.extra_headers = {"Content-Encoding": "gzip"}
    source = link_source(tmp_path, ics_server)
    with pytest.raises(PermanentError, match="larger than"):
        source.sync(None, WINDOW)
    source.close()


@pytest.mark.parametrize(
    ("header", "expected"),
    [("3000000000", 3600.0), ("120", 120.0), ("Fri, 31 Dec 9999 23:59:59 GMT", 3600.0)],
)
def test_retry_after_is_capped_at_an_hour(
    tmp_path: Path, ics_server: IcsServer, header: str, expected: float
) -> None:
    ics_server.status = 503
    ics_server.extra_headers = {"Retry-After": header}
    source = link_source(tmp_path, ics_server)
    with pytest.raises(TransientError) as caught:
        source.sync(None, WINDOW)
    source.close()
    assert caught.value.retry_after == expected


@pytest.mark.parametrize(
    "location",
    ["http://127.0.0.2/calendar.ics", "ftp://127.0.0.1/calendar.ics", "http://example.org/x.ics"],
)
def test_a_redirect_to_a_link_the_policy_refuses_is_not_followed(
    tmp_path: Path, ics_server: IcsServer, location: str
) -> None:
    ics_server.status = 302
    ics_server.extra_headers = {"Location": location}
    source = link_source(tmp_path, ics_server)
    with pytest.raises(PermanentError, match="redirected to a link that is not allowed"):
        source.sync(None, WINDOW)
    source.close()
    assert len(ics_server.requests) == 1


def test_a_redirect_within_the_policy_is_followed_and_hops_are_bounded(
    tmp_path: Path, ics_server: IcsServer
) -> None:
    ics_server.body = calendar(GOOD)
    ics_server.redirects = {"/old.ics": "/new.ics", "/loop-a": "/loop-b", "/loop-b": "/loop-a"}
    source = link_source(tmp_path, ics_server, "/old.ics")
    [event] = source.sync(None, WINDOW).events
    source.close()
    assert event.ical_uid == "good"
    looping = link_source(tmp_path, ics_server, "/loop-a")
    with pytest.raises(PermanentError, match="redirects"):
        looping.sync(None, WINDOW)
    looping.close()
    assert sum(r.path.startswith("/loop") for r in ics_server.requests) == ics.MAX_REDIRECTS + 1


@pytest.mark.parametrize("variable", ["SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"])
def test_an_https_link_trusts_the_ca_named_by_the_usual_variables(
    tmp_path: Path, ics_server: IcsServer, monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    ca = ThrowawayCA.create(tmp_path)
    context_ = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context_.load_cert_chain(ca.cert_file, ca.key_file)
    ics_server.body = calendar(GOOD)
    ics_server.wrap(context_)
    for name in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_DIR"):
        monkeypatch.delenv(name, raising=False)
    url = f"https://127.0.0.1:{ics_server.port}/calendar.ics"
    untrusted = open_source(SourceOptions(url=url), context(tmp_path))
    with pytest.raises(ConfigError, match="certificate"):
        untrusted.sync(None, WINDOW)
    untrusted.close()
    monkeypatch.setenv(variable, str(ca.ca_file))
    trusted = open_source(SourceOptions(url=url), context(tmp_path))
    [event] = trusted.sync(None, WINDOW).events
    trusted.close()
    assert event.ical_uid == "good"


@pytest.mark.parametrize(
    ("lines", "reason"),
    [
        (("RRULE:FREQ=DAILY;INTERVAL=0",), "its recurrence rule cannot be read (INTERVAL)"),
        (
            ("EXRULE:FREQ=WEEKLY;INTERVAL=0", "RRULE:FREQ=DAILY"),
            "its recurrence rule cannot be read (INTERVAL)",
        ),
        (("RRULE:FREQ=DAILY;BYMONTH=2;BYMONTHDAY=30",), "its recurrence rule matches no day"),
        (
            ("RRULE:FREQ=DAILY;BYMONTH=4;BYMONTHDAY=31;COUNT=3",),
            "its recurrence rule matches no day",
        ),
        (("DURATION:-PT1H",), "it ends before it starts"),
    ],
)
def test_a_rule_the_expansion_would_search_forever_is_skipped(
    tmp_path: Path, lines: tuple[str, ...], reason: str
) -> None:
    hostile = "\n".join(
        ["BEGIN:VEVENT", "UID:forever", "SUMMARY:Intervju", "DTSTART:20260310T100000Z"]
        + ([] if lines[0].startswith("DURATION") else ["DTEND:20260310T110000Z"])
        + [*lines, "END:VEVENT"]
    )
    result = sync_file(tmp_path, calendar(hostile, GOOD))
    assert [e.ical_uid for e in result.events] == ["good"]
    assert reasons(result) == {"forever": reason}


def test_a_leap_day_series_is_read(tmp_path: Path) -> None:
    leap = vevent(
        "leap",
        "DTSTART:20240229T100000Z",
        "DTEND:20240229T110000Z",
        "RRULE:FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=29",
    )
    four_years = Period(WINDOW.start, WINDOW.start + timedelta(days=4 * 366))
    [event] = sync_file(tmp_path, calendar(leap), window=four_years).events
    assert event.start == datetime(2028, 2, 29, 10, tzinfo=UTC)


def test_an_unreadable_start_is_skipped_and_the_rest_read(tmp_path: Path) -> None:
    garbage = vevent("garbage", "DTSTART:notadate", "DTEND:20260310T110000Z")
    result = sync_file(tmp_path, calendar(garbage, GOOD))
    assert [e.ical_uid for e in result.events] == ["good"]
    assert list(reasons(result)) == ["garbage"]


def test_single_events_far_outside_the_window_are_not_read_at_all(tmp_path: Path) -> None:
    # Years of history before the window: never read, so even one over a budget costs nothing
    # (and is not reported: it would never have been in the window).
    old = [
        vevent(
            f"old-{n}",
            f"DTSTART:2019{1 + n:02d}10T100000Z",
            f"DTEND:2019{1 + n:02d}10T110000Z",
            *attendees(201),
        )
        for n in range(5)
    ]
    later = vevent("later", "DTSTART:20300310T100000Z", "DTEND:20300310T110000Z")
    spanning = vevent("spanning", "DTSTART;VALUE=DATE:20260201", "DTEND;VALUE=DATE:20260305")
    result = sync_file(tmp_path, calendar(*old, later, spanning, GOOD))
    assert sorted(e.ical_uid for e in result.events) == ["good", "spanning"]
    assert result.skipped == ()
