"""The CalDAV source against a real Radicale: the contract with and without sync tokens, and what
CalDAV adds (only changes fetched, an invalid token, a sliding window, discovery, errors)."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from recruitmail.connectors.caldav import CalDavSource, SourceOptions, open_source
from recruitmail.contracts import limits
from recruitmail.contracts.connector import ConnectorContext
from recruitmail.contracts.errors import AuthError, ConfigError, CursorExpired, TransientError
from recruitmail.contracts.models import Period
from tests.contract.calendar_source import (
    CONTRACT_WINDOW,
    CalendarSourceContract,
    by_uid,
    interview,
    local,
    only,
    utc,
)
from tests.scenario.spec import EventSpec, Moved, one_ics
from tests.servers import LOOPBACK, RadicaleServer, free_port, radicale_fixture  # noqa: F401

pytestmark = pytest.mark.servers


class RadicaleCalendar:
    """The ``calendar_backend`` of the contract: a fresh Radicale account with one calendar,
    written to over plain HTTP as any CalDAV client would (PUT and DELETE of .ics objects)."""

    def __init__(
        self, server: RadicaleServer, tmp_path: Path, *, sync_tokens: bool, direct_url: bool
    ) -> None:
        self.server = server
        self.user, self.password = server.add_user(f"rut-{uuid.uuid4().hex[:10]}")
        self.secret = tmp_path / "caldav-password"
        self.secret.write_text(self.password + "\n")
        self.sync_tokens = sync_tokens
        self.direct_url = direct_url
        self.http = httpx.Client(auth=(self.user, self.password), trust_env=False, timeout=10)
        self.opened: list[CalDavSource] = []
        self.calendar_url = self.make_calendar("rekrytering", "Rekrytering")
        self.context = ConnectorContext(
            mailbox="rekryterare@example.se",
            mailbox_name="Rut Rekryterare",
            time_zone="Europe/Stockholm",
            company_domains=("example.se",),
            state_dir=tmp_path,
        )

    def make_calendar(self, slug: str, name: str) -> str:
        url = f"{self.server.url}{self.user}/{slug}/"
        body = (
            '<?xml version="1.0" encoding="utf-8"?>'
            '<C:mkcalendar xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav">'
            f"<D:set><D:prop><D:displayname>{name}</D:displayname></D:prop></D:set>"
            "</C:mkcalendar>"
        )
        response = self.http.request("MKCALENDAR", url, content=body)
        assert response.status_code == 201, response.text
        return url

    def options(self, **changes: Any) -> SourceOptions:
        raw: dict[str, Any] = {
            "url": self.calendar_url if self.direct_url else self.server.url,
            "username": self.user,
            "password": f"file:{self.secret}",
            "sync_tokens": self.sync_tokens,
            "timeout_seconds": 10,
        }
        raw.update(changes)
        return SourceOptions(**raw)

    def source(self, **changes: Any) -> CalDavSource:
        source = open_source(self.options(**changes), self.context)
        self.opened.append(source)
        return source

    def object_url(self, uid: str) -> str:
        return f"{self.calendar_url}{uid}.ics"

    def put(self, spec: EventSpec) -> None:
        response = self.http.put(
            self.object_url(spec.uid),
            content=one_ics(spec),
            headers={"Content-Type": "text/calendar; charset=utf-8"},
        )
        assert response.status_code in (201, 204), response.text

    def delete(self, uid: str) -> None:
        assert self.http.delete(self.object_url(uid)).status_code in (200, 204)

    def window(self) -> Period:
        return CONTRACT_WINDOW

    def expire_cursor(self, cursor: str) -> str | None:
        data = json.loads(cursor)
        if data["token"] is None:
            return None  # the ETag mode has no token to expire
        # A token of the right shape that this server never issued (or has forgotten).
        data["token"] = "http://radicale.org/ns/sync/" + "0" * 64
        return json.dumps(data)

    def close(self) -> None:
        for source in self.opened:
            source.close()
        self.http.close()


@pytest.fixture(params=["sync-token", "etag"])
def calendar_backend(
    request: pytest.FixtureRequest, radicale: RadicaleServer, tmp_path: Path
) -> Iterator[RadicaleCalendar]:
    # The token mode finds the calendar from the server's root; the ETag mode gets its own URL.
    token = request.param == "sync-token"
    backend = RadicaleCalendar(radicale, tmp_path, sync_tokens=token, direct_url=not token)
    yield backend
    backend.close()


@pytest.fixture
def backend(radicale: RadicaleServer, tmp_path: Path) -> Iterator[RadicaleCalendar]:
    """A calendar read with sync tokens, found from the server's root URL."""
    made = RadicaleCalendar(radicale, tmp_path, sync_tokens=True, direct_url=False)
    yield made
    made.close()


class TestCalDavSource(CalendarSourceContract):
    pass


# -- what CalDAV adds to the contract --------------------------------------------------------


def series(uid: str = "series@example.se", **changes: Any) -> EventSpec:
    first = local((2026, 4, 6), "10:00")
    return interview(
        uid,
        subject="Intervjuserie",
        start=first,
        end=first + timedelta(hours=1),
        rrule="FREQ=WEEKLY;COUNT=4",
        **changes,
    )


def test_the_sync_token_brings_only_the_changed_moved_and_deleted_events(
    backend: RadicaleCalendar,
) -> None:
    for n in range(1, 6):
        backend.put(interview(f"interview-{n}@example.se", subject=f"Intervju {n}"))
    backend.put(series())
    source = backend.source()
    first = source.sync(None, CONTRACT_WINDOW)
    assert json.loads(first.cursor)["mode"] == "sync"
    assert len(first.events) == 5 + 4

    backend.put(interview("interview-1@example.se", subject="Intervju 1 (ändrad)", sequence=1))
    moved = local((2026, 3, 20), "09:00")
    backend.put(
        interview("interview-2@example.se", start=moved, end=moved + timedelta(hours=1), sequence=1)
    )
    backend.delete("interview-3@example.se")
    later = source.sync(first.cursor, CONTRACT_WINDOW)

    assert not later.full
    assert sorted(e.ical_uid for e in later.events) == [
        "interview-1@example.se",
        "interview-2@example.se",
    ]
    assert only(later.events, "interview-1@example.se").subject == "Intervju 1 (ändrad)"
    assert utc(only(later.events, "interview-2@example.se").start) == utc(moved)
    assert later.removed == ("interview-3@example.se",)
    # The cursor now knows exactly the remaining objects.
    assert len(json.loads(later.cursor)["objects"]) == 5


def test_one_moved_occurrence_of_a_series_is_the_only_change(backend: RadicaleCalendar) -> None:
    backend.put(series())
    source = backend.source()
    first = source.sync(None, CONTRACT_WINDOW)
    second_start = local((2026, 4, 13), "10:00")
    moved_to = local((2026, 4, 14), "15:00")
    backend.put(series(moved=(Moved(second_start, moved_to, moved_to + timedelta(hours=1)),)))

    later = source.sync(first.cursor, CONTRACT_WINDOW)
    [event] = later.events
    assert utc(event.start) == utc(moved_to)
    assert utc(datetime.fromisoformat(event.recurrence_id)) == utc(second_start)
    assert later.removed == ()


def test_an_invalid_token_is_refused_and_a_full_resync_has_no_duplicates(
    backend: RadicaleCalendar,
) -> None:
    backend.put(interview())
    backend.put(series())
    source = backend.source()
    first = source.sync(None, CONTRACT_WINDOW)
    bogus = backend.expire_cursor(first.cursor)
    assert bogus is not None

    with pytest.raises(CursorExpired):
        source.sync(bogus, CONTRACT_WINDOW)
    again = source.sync(None, CONTRACT_WINDOW)

    assert again.full
    ids = [e.event_id for e in again.events]
    assert len(ids) == len(set(ids)) == 5
    assert sorted(ids) == sorted(e.event_id for e in first.events)


def test_an_unreadable_cursor_asks_for_a_full_sync(backend: RadicaleCalendar) -> None:
    with pytest.raises(CursorExpired):
        backend.source().sync("not json", CONTRACT_WINDOW)


@pytest.mark.parametrize("sync_tokens", [True, False])
def test_a_sliding_window_brings_events_in_and_lets_them_go(
    radicale: RadicaleServer, tmp_path: Path, sync_tokens: bool
) -> None:
    cal = RadicaleCalendar(radicale, tmp_path, sync_tokens=sync_tokens, direct_url=True)
    try:
        early = interview(
            "early@example.se", start=local((2026, 3, 5), "10:00"), end=local((2026, 3, 5), "11:00")
        )
        late = interview(
            "late@example.se",
            start=local((2026, 6, 10), "10:00"),
            end=local((2026, 6, 10), "11:00"),
        )
        for spec in (early, late, series()):
            cal.put(spec)
        march = Period(local((2026, 3, 1), "00:00"), local((2026, 5, 1), "00:00"))
        april_may = Period(local((2026, 4, 10), "00:00"), local((2026, 7, 1), "00:00"))
        source = cal.source()

        first = source.sync(None, march)
        assert sorted({e.ical_uid for e in first.events}) == [
            "early@example.se",
            "series@example.se",
        ]
        assert len(by_uid(first.events, "series@example.se")) == 4

        slid = source.sync(first.cursor, april_may)
        assert [e.ical_uid for e in slid.events] == ["late@example.se"]
        # The early interview and the series' first occurrence fell out of the window.
        gone = {e.event_id for e in first.events if utc(e.end) <= utc(april_may.start)}
        assert set(slid.removed) == gone and "early@example.se" in gone and len(gone) == 2

        settled = source.sync(slid.cursor, april_may)
        assert settled.events == () and settled.removed == ()
    finally:
        cal.close()


def test_the_calendar_is_found_by_name_among_several(backend: RadicaleCalendar) -> None:
    backend.make_calendar("privat", "Privat")
    backend.put(interview())
    with pytest.raises(ConfigError, match="several calendars"):
        backend.source().sync(None, CONTRACT_WINDOW)
    result = backend.source(calendar="rekrytering").sync(None, CONTRACT_WINDOW)
    assert [e.ical_uid for e in result.events] == ["interview-1@example.se"]
    with pytest.raises(ConfigError, match="Privat"):
        backend.source(calendar="Jobb").sync(None, CONTRACT_WINDOW)


def test_a_wrong_password_is_an_auth_error(backend: RadicaleCalendar, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-password")
    with pytest.raises(AuthError, match=backend.user):
        backend.source(password=f"file:{wrong}").sync(None, CONTRACT_WINDOW)


def test_a_server_that_does_not_answer_is_transient(backend: RadicaleCalendar) -> None:
    nobody = f"http://{LOOPBACK}:{free_port()}/"
    with pytest.raises(TransientError):
        backend.source(url=nobody).sync(None, CONTRACT_WINDOW)


def test_a_missing_password_file_fails_when_opened(
    backend: RadicaleCalendar, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match="caldav password"):
        backend.source(password=f"file:{tmp_path / 'absent'}")


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"url": "http://caldav.example.se/dav/"}, "https"),
        ({"password": "hunter2"}, "secret reference"),
        ({"timeout_seconds": 0}, "greater than 0"),
    ],
)
def test_unsafe_options_are_refused(changes: dict[str, Any], problem: str) -> None:
    raw: dict[str, Any] = {
        "url": "https://caldav.example.se/dav/",
        "username": "u",
        "password": "env:P",
    }
    raw.update(changes)
    with pytest.raises(ValidationError, match=problem):
        SourceOptions(**raw)


def test_a_fresh_source_continues_from_a_stored_cursor(backend: RadicaleCalendar) -> None:
    backend.put(interview())
    first = backend.source().sync(None, CONTRACT_WINDOW)
    backend.put(replace(interview(), subject="Intervju (flyttad)", sequence=1))
    later = backend.source().sync(first.cursor, CONTRACT_WINDOW)
    assert [e.subject for e in later.events] == ["Intervju (flyttad)"]


# -- a calendar anyone can write into: the ICS budgets apply to every object -------------------


def put_raw(backend: RadicaleCalendar, name: str, *lines: str) -> None:
    text = "\r\n".join(
        [
            "BEGIN:VCALENDAR",
            "VERSION:2.0",
            "PRODID:-//Example//Hostile//EN",
            *lines,
            "END:VCALENDAR",
        ]
    )
    response = backend.http.put(
        f"{backend.calendar_url}{name}.ics",
        content=(text + "\r\n").encode(),
        headers={"Content-Type": "text/calendar; charset=utf-8"},
    )
    assert response.status_code in (201, 204), response.text


def raw_event(uid: str, *lines: str, start: str = "20260310T100000Z") -> list[str]:
    return [
        "BEGIN:VEVENT",
        f"UID:{uid}",
        "DTSTAMP:20260101T000000Z",
        "SUMMARY:Intervju",
        f"DTSTART:{start}",
        *lines,
        "END:VEVENT",
    ]


def test_hostile_objects_are_skipped_one_by_one_and_the_rest_is_read(
    backend: RadicaleCalendar,
) -> None:
    backend.put(interview())
    put_raw(backend, "lunch", *raw_event("lunch", "DTEND:99991231T235959Z"))
    put_raw(
        backend,
        "often",
        *raw_event("often", "DTEND:20260310T100001Z", "RRULE:FREQ=SECONDLY;COUNT=5"),
    )
    crowd = [f"ATTENDEE;CN=P{i}:mailto:p{i}@candidate.example" for i in range(201)]
    put_raw(backend, "crowd", *raw_event("crowd", "DTEND:20260310T110000Z", *crowd))
    put_raw(backend, "private", *raw_event("private", "DTEND:20260310T110000Z", "CLASS:PRIVATE"))
    result = backend.source().sync(None, CONTRACT_WINDOW)
    assert sorted(e.ical_uid for e in result.events) == ["interview-1@example.se", "private"]
    assert only(result.events, "private").private
    assert not only(result.events, "interview-1@example.se").private
    assert {s.event_id: s.reason for s in result.skipped} == {
        "lunch": limits.REASON_OUT_OF_RANGE,
        "often": limits.REASON_REPEATS_TOO_OFTEN,
        "crowd": limits.REASON_TOO_MANY_ATTENDEES,
    }


class _Throttling(BaseHTTPRequestHandler):
    """A CalDAV server that is always busy and asks to be left alone for 95 years."""

    def _busy(self) -> None:
        self.send_response(429)
        self.send_header("Retry-After", "3000000000")
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_PROPFIND = do_REPORT = do_GET = do_OPTIONS = _busy  # noqa: N815

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_a_retry_after_of_95_years_is_capped_at_an_hour(tmp_path: Path) -> None:
    server = ThreadingHTTPServer((LOOPBACK, 0), _Throttling)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        secret = tmp_path / "password"
        secret.write_text("x")
        source = open_source(
            SourceOptions(
                url=f"http://{LOOPBACK}:{server.server_address[1]}/dav/rut/cal/",
                username="rut",
                password=f"file:{secret}",
                timeout_seconds=5,
            ),
            ConnectorContext(
                mailbox="rekryterare@example.se",
                mailbox_name="Rut",
                time_zone="Europe/Stockholm",
                company_domains=("example.se",),
                state_dir=tmp_path,
            ),
        )
        with pytest.raises(TransientError) as caught:
            source.sync(None, CONTRACT_WINDOW)
        source.close()
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    assert caught.value.retry_after == limits.MAX_RETRY_AFTER
