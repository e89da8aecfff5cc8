"""The Google Calendar source: ``events.list`` with ``singleEvents`` and sync tokens.

The cursor is the sync token together with the span and calendar it was made for: a window that
slides past the synced span starts a fresh full sync (a week wider than asked, so that this is
rare). An idle calendar costs one request per cycle. Every event is read on its own: one that is
malformed, absurd or too large becomes a ``SkippedEvent`` with the reason, and the others still
come through. Descriptions edited in Google's web UI arrive as HTML and leave as plain text.
"""

from __future__ import annotations

import json
import logging
import random
import re
import time
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from html.parser import HTMLParser
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from googleapiclient.http import HttpRequest

from recruitmail.connectors.google.auth import _grant
from recruitmail.connectors.google.client import Sleeper, _build, _Caller, _close, _endpoint
from recruitmail.connectors.google.options import (
    DEFAULT_CALENDAR_ENDPOINT,
    SourceOptions,
    calendar_scopes,
)
from recruitmail.contracts import limits
from recruitmail.contracts.connector import ConnectorContext
from recruitmail.contracts.errors import CursorExpired, TransientError
from recruitmail.contracts.models import (
    Attendee,
    Event,
    Period,
    Response,
    SkippedEvent,
    SyncResult,
    normalise_address,
)

log = logging.getLogger(__name__)

# A full sync covers a little more than the window asked for, so that the window sliding forward
# day by day keeps using the sync token (one request per idle cycle) instead of forcing a full sync.
WINDOW_SLACK = timedelta(days=7)


class _TextOfHtml(HTMLParser):
    _BREAKS = frozenset({"br", "p", "div", "tr", "h1", "h2", "h3", "h4"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._href: str | None = None
        self._link_text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._BREAKS:
            self.parts.append("\n")
        if tag == "li":
            self.parts.append("\n- ")
        if tag == "a":
            self._href = dict(attrs).get("href") or None
            self._link_text = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("p", "div", "tr", "h1", "h2", "h3", "h4", "ul", "ol"):
            self.parts.append("\n")
        if tag == "a" and self._href is not None:
            if self._href not in "".join(self._link_text):
                self.parts.append(f" <{self._href}>")
            self._href = None

    def handle_data(self, data: str) -> None:
        self.parts.append(data)
        if self._href is not None:
            self._link_text.append(data)


_LOOKS_LIKE_HTML = re.compile(r"<(?:br|p|div|a|b|i|u|ul|ol|li|span|strong|em)\b[^>]*>", re.I)


def html_to_text(description: str) -> str:
    """Google stores descriptions edited in its web UI as HTML; the core wants plain text."""
    if not _LOOKS_LIKE_HTML.search(description):
        return description
    parser = _TextOfHtml()
    parser.feed(description)
    parser.close()
    text = "".join(parser.parts).replace("\xa0", " ")
    lines = [line.rstrip() for line in text.splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


_RESPONSES = {
    "accepted": Response.ACCEPTED,
    "tentative": Response.TENTATIVE,
    "declined": Response.DECLINED,
    "needsAction": Response.NEEDS_ACTION,
}


def _zone(name: str | None, fallback: ZoneInfo) -> ZoneInfo:
    if not name:
        return fallback
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return fallback


def _when(value: Mapping[str, Any], zone: ZoneInfo) -> tuple[datetime, bool]:
    here = _zone(value.get("timeZone"), zone)
    if value.get("dateTime"):
        moment = datetime.fromisoformat(str(value["dateTime"]))
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=here)
        return moment.astimezone(here), False
    day = date.fromisoformat(str(value["date"]))
    return datetime(day.year, day.month, day.day, tzinfo=here), True


def recurrence_id(original: Mapping[str, Any], zone: ZoneInfo) -> str:
    """An occurrence's original start in iCalendar form: UTC ``YYYYMMDDTHHMMSSZ``, or ``YYYYMMDD``."""
    if original.get("dateTime"):
        moment, _ = _when(original, zone)
        return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    return date.fromisoformat(str(original["date"])).strftime("%Y%m%d")


def _online_url(item: Mapping[str, Any]) -> str:
    if item.get("hangoutLink"):
        return str(item["hangoutLink"])
    entry_points = (item.get("conferenceData") or {}).get("entryPoints") or []
    for kind in ("video", "more", "phone"):
        for entry in entry_points:
            if entry.get("entryPointType") == kind and entry.get("uri"):
                return str(entry["uri"])
    return ""


def event_from_google(item: Mapping[str, Any], zone: ZoneInfo) -> Event:
    """One ``events.list`` item (``singleEvents=True``) as an ``Event``."""
    start, all_day = _when(item["start"], zone)
    end, _ = _when(item.get("end") or item["start"], zone)
    attendees = tuple(
        Attendee(
            address=str(a["email"]),
            name=limits.clip(str(a.get("displayName", "")), limits.MAX_NAME_CHARS),
            response=_RESPONSES.get(str(a.get("responseStatus", "")), Response.NONE),
            is_resource=bool(a.get("resource", False)),
            is_organizer=bool(a.get("organizer", False)),
            optional=bool(a.get("optional", False)),
        )
        for a in item.get("attendees") or ()
        if a.get("email")
    )
    organizer = None
    if (item.get("organizer") or {}).get("email"):
        org = item["organizer"]
        address = normalise_address(str(org["email"]))
        answer = next((a.response for a in attendees if a.address == address), Response.ACCEPTED)
        organizer = Attendee(
            address=address,
            name=limits.clip(str(org.get("displayName", "")), limits.MAX_NAME_CHARS),
            response=answer,
            is_organizer=True,
        )
    updated = None
    if item.get("updated"):
        updated = datetime.fromisoformat(str(item["updated"]))
    original = item.get("originalStartTime")
    return Event(
        event_id=str(item["id"]),
        ical_uid=str(item.get("iCalUID") or item["id"]),
        subject=str(item.get("summary", "")),
        start=start,
        end=end,
        recurrence_id=recurrence_id(original, zone) if original else "",
        body=html_to_text(str(item.get("description", ""))),
        all_day=all_day,
        cancelled=item.get("status") == "cancelled",
        location=str(item.get("location", "")),
        online_url=_online_url(item),
        organizer=organizer,
        attendees=attendees,
        updated=updated,
        private=item.get("visibility") in ("private", "confidential"),
    )


REASON_UNREADABLE = "it could not be read (malformed event data)"
REASON_NO_ID = "it has no event id"


class _Budget:
    """What one sync may still spend: events, wall time, occurrences per series."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.events = 0
        self.per_series: dict[str, int] = {}


def _take(
    item: Any,
    zone: ZoneInfo,
    budget: _Budget,
    events: list[Event],
    removed: list[str],
    skipped: list[SkippedEvent],
) -> None:
    """One ``events.list`` item into ``events``/``removed``/``skipped``; never raises."""
    if not isinstance(item, dict):
        skipped.append(SkippedEvent("", REASON_UNREADABLE))
        return
    event_id = item.get("id")
    if not isinstance(event_id, str) or not event_id:
        skipped.append(SkippedEvent("", REASON_NO_ID))
        return
    if item.get("status") == "cancelled":
        removed.append(event_id)
        return
    budget.events += 1
    if (
        budget.events > limits.MAX_OCCURRENCES_PER_PASS
        or time.monotonic() - budget.started > limits.PASS_SECONDS
    ):
        skipped.append(SkippedEvent(event_id, limits.REASON_PASS_BUDGET))
        return
    series = item.get("recurringEventId")
    if isinstance(series, str):
        budget.per_series[series] = budget.per_series.get(series, 0) + 1
        if budget.per_series[series] > limits.MAX_OCCURRENCES_PER_SERIES:
            skipped.append(SkippedEvent(event_id, limits.REASON_TOO_MANY_OCCURRENCES))
            return
    attendees = item.get("attendees")
    if isinstance(attendees, list) and len(attendees) > limits.MAX_ATTENDEES:
        skipped.append(SkippedEvent(event_id, limits.REASON_TOO_MANY_ATTENDEES))
        return
    try:
        size = len(json.dumps(item, ensure_ascii=False).encode("utf-8"))
    except (TypeError, ValueError, RecursionError):
        skipped.append(SkippedEvent(event_id, REASON_UNREADABLE))
        return
    if size > limits.MAX_EVENT_BYTES:
        skipped.append(SkippedEvent(event_id, limits.REASON_TOO_BIG))
        return
    try:
        event = event_from_google(item, zone)
    except OverflowError:
        skipped.append(SkippedEvent(event_id, limits.REASON_OUT_OF_RANGE))
        return
    except Exception as exc:  # any shape of hostile data: this event only, never the sync
        log.debug("google calendar: event %s unreadable: %r", event_id, exc)
        skipped.append(SkippedEvent(event_id, REASON_UNREADABLE))
        return
    problem = limits.event_problem(event)
    if problem is not None:
        skipped.append(SkippedEvent(event_id, problem))
        return
    events.append(limits.bounded(event))


def _encode_cursor(token: str, start: datetime, end: datetime, calendar_id: str) -> str:
    return json.dumps(
        {
            "v": 1,
            "token": token,
            "from": start.isoformat(),
            "to": end.isoformat(),
            "cal": calendar_id,
        },
        separators=(",", ":"),
    )


def _decode_cursor(cursor: str) -> tuple[str, datetime, datetime, str] | None:
    try:
        data = json.loads(cursor)
        return (
            str(data["token"]),
            datetime.fromisoformat(data["from"]),
            datetime.fromisoformat(data["to"]),
            str(data["cal"]),
        )
    except (ValueError, KeyError, TypeError):
        return None


class GoogleCalendarSource:
    """Reads one recruiter's Google calendar with ``events.list`` and sync tokens."""

    def __init__(
        self,
        options: SourceOptions,
        context: ConnectorContext,
        *,
        sleep: Sleeper = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self._options = options
        grant = _grant(options, context, calendar_scopes(options))
        self._caller = _Caller(options, grant, sleep, rng or random.Random())
        endpoint = _endpoint(options.calendar_endpoint, DEFAULT_CALENDAR_ENDPOINT, "calendar/v3/")
        self._service = _build("calendar", "v3", endpoint, grant, options)
        self._zone_name: str | None = None
        self._fallback_zone = _zone(context.time_zone, ZoneInfo("UTC"))

    @property
    def requests(self) -> int:
        """API requests made so far."""
        return self._caller.requests

    def time_zone(self) -> str | None:
        """The calendar's own time zone, as the last ``events.list`` answer gave it.

        Before any sync it asks with one small ``events.list`` (``calendars.get`` and
        ``settings.get`` are refused under ``calendar.events.readonly``). Errors follow the
        connector contract: TransientError, AuthError naming the scope, PermanentError.
        """
        if self._zone_name is None:
            now = datetime.now(UTC).replace(microsecond=0)
            page = self._caller.call(
                lambda: self._service.events().list(
                    calendarId=self._options.calendar_id,
                    singleEvents=True,
                    maxResults=1,
                    timeMin=now.isoformat().replace("+00:00", "Z"),
                ),
                "events.list",
            )
            if isinstance(page.get("timeZone"), str) and page["timeZone"]:
                self._zone_name = str(page["timeZone"])
        return self._zone_name

    def sync(self, cursor: str | None, window: Period) -> SyncResult:
        """Full sync of ``window`` without a cursor; else what changed since the sync token."""
        if cursor is not None:
            decoded = _decode_cursor(cursor)
            if decoded is None:
                raise CursorExpired("google: the stored cursor is not one of ours")
            token, start, end, calendar_id = decoded
            if (
                calendar_id == self._options.calendar_id
                and start <= window.start
                and window.end <= end
            ):
                return self._incremental(token, start, end)
            log.info("google calendar: the window moved past the synced span; full sync")
        return self._full(window)

    def _full(self, window: Period) -> SyncResult:
        start = window.start.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        end = window.end.astimezone(UTC) + WINDOW_SLACK
        events: list[Event] = []
        removed: list[str] = []
        skipped: list[SkippedEvent] = []
        params = {
            "timeMin": start.isoformat().replace("+00:00", "Z"),
            "timeMax": end.isoformat().replace("+00:00", "Z"),
        }
        token = self._pages(params, events, removed, skipped)
        return SyncResult(
            tuple(events),
            tuple(removed),
            _encode_cursor(token, start, end, self._options.calendar_id),
            full=True,
            skipped=tuple(skipped),
        )

    def _incremental(self, token: str, start: datetime, end: datetime) -> SyncResult:
        events: list[Event] = []
        removed: list[str] = []
        skipped: list[SkippedEvent] = []
        new_token = self._pages({"syncToken": token}, events, removed, skipped)
        return SyncResult(
            tuple(events),
            tuple(removed),
            _encode_cursor(new_token, start, end, self._options.calendar_id),
            full=False,
            skipped=tuple(skipped),
        )

    def _pages(
        self,
        params: dict[str, str],
        events: list[Event],
        removed: list[str],
        skipped: list[SkippedEvent],
    ) -> str:
        budget = _Budget()
        page_token: str | None = None
        while True:
            # Every page, and every later syncToken call, carries the same parameters: Google
            # ties a sync token to the query that made it.
            extra = dict(params)
            if page_token:
                extra["pageToken"] = page_token

            def request(extra: dict[str, str] = extra) -> HttpRequest:
                return self._service.events().list(
                    calendarId=self._options.calendar_id,
                    singleEvents=True,
                    maxResults=self._options.page_size,
                    **extra,
                )

            page = self._caller.call(request, "events.list")
            if isinstance(page.get("timeZone"), str) and page["timeZone"]:
                self._zone_name = str(page["timeZone"])
            zone = _zone(self._zone_name, self._fallback_zone)
            items = page.get("items") or ()
            for item in items if isinstance(items, list) else ():
                _take(item, zone, budget, events, removed, skipped)
            page_token = page.get("nextPageToken")
            if not page_token:
                sync_token = page.get("nextSyncToken")
                if not sync_token:
                    raise TransientError(
                        "google events.list: the last page carried no nextSyncToken"
                    )
                if skipped:
                    log.warning("google calendar: %d event(s) skipped, see status", len(skipped))
                return str(sync_token)

    def close(self) -> None:
        """Release the HTTP connections."""
        _close(self._service)
