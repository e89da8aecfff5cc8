"""The Microsoft 365 calendar source: Graph ``calendarView/delta`` over a sliding window.

The cursor is the ``@odata.deltaLink`` together with the window it was made for: Graph bakes the
window into the link, so when the requested window reaches past the synced one a fresh full sync
starts (reaching ``slide_days`` further, so that this happens rarely). An idle mailbox costs one
request: the delta link, answered with no changes.

Many idle mailboxes of one app can be asked in JSON batches (``GraphCalendarSource.probe_many``):
each source's next delta link goes into a ``$batch`` of up to 20, and the page that comes back is
kept for that source's next ``sync``, which uses it only if it is the answer to exactly the link
that sync would follow, instead of asking again. A change is never missed: the kept page is the
page a direct request would have returned at that moment, and its delta link covers what happens
after. An expired token answered inside the batch is the same ``CursorExpired`` (a full resync);
a throttled one holds only its own mailbox (its ``Retry-After`` becomes that mailbox's wait) and
its sync asks directly once the wait is over.

Every event is read on its own: one that is malformed (a bad dateTime, an unknown zone), absurd
(year 9999, 50,000 attendees) or too large (a 10 MB body) becomes a ``SkippedEvent`` with the
reason, and the others still come through. Windows zone names resolve with the company's country.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time as clock
from collections.abc import Hashable, Sequence
from datetime import UTC, datetime, time, timedelta
from html.parser import HTMLParser
from typing import Any
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo

from recruitmail.connectors.microsoft.client import (
    BATCH_LIMIT,
    BatchGet,
    GraphClient,
    error_of,
    json_of,
    release,
)
from recruitmail.connectors.microsoft.options import SourceOptions
from recruitmail.connectors.microsoft.zones import to_iana
from recruitmail.contracts import limits
from recruitmail.contracts.connector import ConnectorContext
from recruitmail.contracts.errors import (
    AuthError,
    ConfigError,
    CursorExpired,
    PermanentError,
    TransientError,
)
from recruitmail.contracts.models import Attendee, Event, Period, Response, SkippedEvent, SyncResult

log = logging.getLogger(__name__)

CURSOR_VERSION = 1
# Every spelling of "your delta token is no longer valid" the Graph documentation mentions.
EXPIRED_CODES = frozenset(
    {
        "syncstatenotfound",
        "resyncrequired",
        "syncstateinvalid",
        "invalidsyncstate",
        "fullsyncrequired",
    }
)
_RESPONSES = {
    "accepted": Response.ACCEPTED,
    "organizer": Response.ACCEPTED,
    "tentativelyaccepted": Response.TENTATIVE,
    "declined": Response.DECLINED,
    "notresponded": Response.NEEDS_ACTION,
    "none": Response.NONE,
}
_FRACTION = re.compile(r"(\.\d{1,6})\d*")
_PRIVATE = frozenset({"private", "confidential"})
REASON_UNREADABLE = "it cannot be read (malformed dates, time zone or fields)"
CURSOR_REFRESH_SECONDS = 3600.0
"""While nothing changes, a sync hands back the cursor it was given (the state need not be
written), and keeps following the newest delta link itself; at least this often the newest link
becomes the cursor, so that a restart resumes from a recent one."""
_KEPT_STATUSES = frozenset({200, 400, 404, 409, 410})  # what a direct sync reads itself
PREFETCH_TTL_SECONDS = 60.0
"""A delta page fetched ahead (``GraphCalendarSource.probe_many``) older than this is not used."""


def graph_time(value: datetime) -> str:
    """A UTC timestamp as Graph query parameters want it."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_instant(value: str) -> datetime:
    """An ISO 8601 timestamp from Graph (up to 7 fractional digits; ``Z`` or offset; naive = UTC)."""
    cleaned = _FRACTION.sub(r"\1", value.strip()).replace("Z", "+00:00")
    parsed = datetime.fromisoformat(cleaned)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def parse_date_time_zone(value: dict[str, Any], country: str | None = None) -> datetime:
    """A Graph ``dateTimeTimeZone`` (naive local time plus a Windows or IANA zone name);
    ``country`` resolves a Windows name that several countries share."""
    zone_name = str(value.get("timeZone") or "UTC")
    zone = to_iana(zone_name, country)
    if zone is None:
        raise PermanentError("unknown time zone in an event")
    naive = parse_instant(str(value["dateTime"])).replace(tzinfo=None)
    return naive.replace(tzinfo=ZoneInfo(zone))


class _TextOfHtml(HTMLParser):
    """Plain text of an HTML body: block elements become line breaks, scripts and styles vanish."""

    BLOCKS = frozenset(
        {"p", "div", "br", "tr", "li", "h1", "h2", "h3", "h4", "h5", "h6", "table", "ul", "ol"}
    )
    SKIP = frozenset({"script", "style", "head", "title"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.SKIP:
            self.skipping += 1
        elif tag == "br":
            self.parts.append("\n")
        elif tag in self.BLOCKS:
            self._break()
            if tag == "li":
                self.parts.append("- ")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SKIP:
            self.skipping = max(0, self.skipping - 1)
        elif tag in self.BLOCKS:
            self._break()

    def _break(self) -> None:
        # Nested blocks (Outlook wraps every line in a div) make one line break, not several.
        if self.parts and not self.parts[-1].endswith("\n"):
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self.parts.append(data)


def html_to_text(html: str) -> str:
    """The readable text of an HTML event body."""
    parser = _TextOfHtml()
    parser.feed(html)
    parser.close()
    lines = [
        " ".join(line.replace("\xa0", " ").split()) for line in "".join(parser.parts).split("\n")
    ]
    text = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def _attendee(raw: dict[str, Any], *, organizer: bool = False) -> Attendee | None:
    email = raw.get("emailAddress") or {}
    address = str(email.get("address") or "").strip()
    if not address:
        return None
    status = str((raw.get("status") or {}).get("response") or "none").lower()
    kind = str(raw.get("type") or "required").lower()
    return Attendee(
        address=address,
        name=str(email.get("name") or ""),
        response=Response.ACCEPTED if organizer else _RESPONSES.get(status, Response.NONE),
        is_resource=kind == "resource",
        is_organizer=organizer,
        optional=kind == "optional",
    )


def event_from_graph(
    item: dict[str, Any],
    zone: ZoneInfo,
    mailbox: str,
    series_uid: str | None = None,
    country: str | None = None,
) -> Event:
    """Translate one Graph event into ``Event``; ``zone`` places all-day events in local time.

    ``series_uid`` is the iCalUId of the series an occurrence belongs to: Graph gives each
    occurrence an iCalUId of its own, but an occasion is the series' UID plus the original start.
    Text fields are not yet cut to their budgets (``limits.bounded`` does that).
    """
    all_day = bool(item.get("isAllDay"))
    start = parse_date_time_zone(item["start"], country)
    end = parse_date_time_zone(item["end"], country)
    if all_day:
        # All-day events float: their date is the recruiter's date, whatever zone Graph used.
        start = datetime.combine(start.date(), time(), zone)
        end = datetime.combine(end.date(), time(), zone)
    kind = str(item.get("type") or "singleInstance")
    recurrence_id = ""
    if kind in ("occurrence", "exception"):
        original = item.get("originalStart")
        first = parse_instant(original) if original else start
        if all_day:
            first = datetime.combine(first.date(), time(), zone)
        # The same form as every other source: the original start as a UTC ISO 8601 instant.
        recurrence_id = first.astimezone(UTC).isoformat()
    body = item.get("body") or {}
    # Only the budgeted part of a body is parsed: a 10 MB body costs no more than a normal one.
    content = str(body.get("content") or "")[: 4 * limits.MAX_BODY_CHARS]
    text = html_to_text(content) if str(body.get("contentType", "")).lower() == "html" else content
    organizer = _attendee(item["organizer"], organizer=True) if item.get("organizer") else None
    raw_attendees = item.get("attendees") or []
    if len(raw_attendees) > limits.MAX_ATTENDEES:
        raise _Skip(limits.REASON_TOO_MANY_ATTENDEES)
    attendees = [a for a in (_attendee(raw) for raw in raw_attendees) if a]
    own = str((item.get("responseStatus") or {}).get("response") or "").lower()
    if own in _RESPONSES and own not in ("none", "organizer"):
        # The mailbox owner's own answer lives in responseStatus, not in the attendee list.
        attendees = [
            Attendee(a.address, a.name, _RESPONSES[own], a.is_resource, a.is_organizer, a.optional)
            if a.address == mailbox
            else a
            for a in attendees
        ]
    online = item.get("onlineMeeting") or {}
    updated = item.get("lastModifiedDateTime")
    return Event(
        event_id=str(item["id"]),
        ical_uid=series_uid or str(item.get("iCalUId") or item["id"]),
        subject=str(item.get("subject") or ""),
        start=start,
        end=end,
        recurrence_id=recurrence_id,
        body=text,
        all_day=all_day,
        cancelled=bool(item.get("isCancelled")),
        location=str((item.get("location") or {}).get("displayName") or ""),
        online_url=str(online.get("joinUrl") or item.get("onlineMeetingUrl") or ""),
        organizer=organizer,
        attendees=tuple(attendees),
        categories=tuple(str(c) for c in (item.get("categories") or ())[: limits.MAX_CATEGORIES]),
        updated=parse_instant(updated) if updated else None,
        private=str(item.get("sensitivity") or "").lower() in _PRIVATE,
    )


class _Skip(Exception):
    """An event over a budget: skipped with ``reason`` (ours, safe to show)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def encode_cursor(link: str, window: Period) -> str:
    """The opaque cursor: the delta link and the window it covers."""
    return json.dumps(
        {
            "v": CURSOR_VERSION,
            "link": link,
            "start": graph_time(window.start),
            "end": graph_time(window.end),
        },
        separators=(",", ":"),
    )


def decode_cursor(cursor: str) -> tuple[str, Period]:
    """The delta link and window of a cursor; a cursor we cannot read is an expired one."""
    try:
        data = json.loads(cursor)
        if data["v"] != CURSOR_VERSION:
            raise ValueError("old cursor version")
        return str(data["link"]), Period(parse_instant(data["start"]), parse_instant(data["end"]))
    except (ValueError, KeyError, TypeError):
        raise CursorExpired("the stored Microsoft 365 calendar cursor is unreadable") from None


class GraphCalendarSource:
    """One recruiter's calendar, read with Graph ``calendarView/delta``."""

    def __init__(
        self, client: GraphClient, options: SourceOptions, context: ConnectorContext
    ) -> None:
        self.client = client
        self.options = options
        self.user = (options.user or context.mailbox).strip()
        self.mailbox = context.mailbox
        self.zone = ZoneInfo(context.time_zone)
        self.country = context.country
        self._base = f"/users/{quote(self.user, safe='@')}"
        self._series: dict[str, str] = {}
        self._closed = False
        self._lock = threading.Lock()
        self._given: str | None = None  # the cursor the last sync handed back
        self._given_at = 0.0  # when that cursor's link was the newest (monotonic)
        self._link: str | None = None  # the newest delta link, equivalent to ``_given``
        self._ahead: tuple[str, float, Any] | None = None  # (link, fetched at, response)

    # -- JSON batching over many mailboxes -------------------------------------------------

    def probe_group(self) -> Hashable | None:
        """What this source can be batched with (sources sharing one client), or ``None`` when
        it has nothing to ask ahead: no delta link yet, closed, or not signed in app-only."""
        if self._closed or self._link is None or self.client.options.auth != "app":
            return None
        return ("microsoft", id(self.client))

    @classmethod
    def probe_many(cls, sources: Sequence[GraphCalendarSource]) -> dict[str, int]:
        """Ask each source's next delta link ahead, 20 to a ``$batch`` per shared client, and keep
        each answer for that source's next ``sync``. Returns how many sources came back
        ``changed``, ``unchanged``, ``refused`` (an expired token, a missing permission: the sync
        says so), and ``direct`` (left out or throttled: the sync asks on its own)."""
        counts = {"changed": 0, "unchanged": 0, "refused": 0, "direct": 0}
        groups: dict[int, list[GraphCalendarSource]] = {}
        for source in sources:
            if source.probe_group() is not None:
                groups.setdefault(id(source.client), []).append(source)
            else:
                counts["direct"] += 1
        for members in groups.values():
            for start in range(0, len(members), BATCH_LIMIT):
                chunk = members[start : start + BATCH_LIMIT]
                asked = {str(n): (s, s._link) for n, s in enumerate(chunk) if s._link}
                answers = chunk[0].client.batch(
                    [
                        BatchGet(key, s.user, link, s._prefer())
                        for key, (s, link) in asked.items()
                        if link
                    ]
                )
                for key, (source, link) in asked.items():
                    outcome = source._keep(link, answers.get(key)) if link else "direct"
                    counts[outcome] += 1
        return counts

    def _keep(self, link: str, response: Any) -> str:
        """Keep a batched answer to ``link`` for the next sync; say what it was."""
        if response is None or response.status_code not in _KEPT_STATUSES:
            return "direct"  # throttled, failing, or a sign-in matter: the sync asks itself
        with self._lock:
            self._ahead = (link, clock.monotonic(), response)
        if response.status_code >= 400:
            return "refused"
        try:
            page = response.json()
        except ValueError:
            return "changed"
        quiet = not page.get("value") and not page.get("@odata.nextLink")
        return "unchanged" if quiet else "changed"

    def _take_ahead(self, link: str) -> Any:
        """The answer fetched ahead for exactly ``link``, once, while it is fresh."""
        with self._lock:
            ahead, self._ahead = self._ahead, None
        if ahead is None or ahead[0] != link:
            return None
        if clock.monotonic() - ahead[1] > PREFETCH_TTL_SECONDS:
            return None
        return ahead[2]

    def _prefer(self) -> tuple[str, ...]:
        return ('outlook.timezone="UTC"', f"odata.maxpagesize={self.options.page_size}")

    # -- sync --------------------------------------------------------------------------------

    def sync(self, cursor: str | None, window: Period) -> SyncResult:
        """Changes since ``cursor``, or the whole window (plus ``slide_days``) when it is ``None``."""
        if cursor is not None:
            link, synced = decode_cursor(cursor)
            if synced.start <= window.start and window.end <= synced.end:
                known = cursor == self._given and self._link is not None
                result = self._follow(
                    self._link if known and self._link else link, synced, full=False
                )
                return self._hand_back(cursor, result, known)
            log.info("calendar window of %s moved past the synced one: full sync", self.user)
        synced = Period(window.start, window.end + timedelta(days=self.options.slide_days))
        params = {"startDateTime": graph_time(synced.start), "endDateTime": graph_time(synced.end)}
        first = f"{self._base}/calendarView/delta?{urlencode(params)}"
        return self._hand_back(None, self._follow(first, synced, full=True), False)

    def _hand_back(self, cursor: str | None, result: SyncResult, known: bool) -> SyncResult:
        """The cursor to store: the one given while nothing changed (for up to an hour), else the
        newest; remember the newest link either way."""
        link, _ = decode_cursor(result.cursor)
        quiet = not (result.events or result.removed or result.skipped or result.full)
        fresh = clock.monotonic() - self._given_at < CURSOR_REFRESH_SECONDS
        with self._lock:
            self._link = link
            if cursor is not None and quiet and known and fresh:
                return SyncResult((), (), cursor, False, ())
            self._given, self._given_at = result.cursor, clock.monotonic()
        return result

    def _follow(self, link: str, window: Period, *, full: bool) -> SyncResult:
        changes: dict[str, Event | SkippedEvent | None] = {}
        prefer = self._prefer()
        ahead = self._take_ahead(link)
        while True:
            response = ahead or self.client.request(
                "GET",
                link,
                mailbox=self.user,
                permission="Calendars.Read",
                prefer=prefer,
                expect=frozenset({400, 404, 409, 410}),
            )
            ahead = None
            if response.status_code >= 400:
                self._refused(response)
            page = json_of(response, "a calendar delta page")
            for item in page.get("value") or []:
                self._merge(changes, item)
            if page.get("@odata.nextLink"):
                link = str(page["@odata.nextLink"])
                continue
            if page.get("@odata.deltaLink"):
                delta = str(page["@odata.deltaLink"])
                break
            raise TransientError("a calendar delta page carried neither a next nor a delta link")
        events = tuple(e for e in changes.values() if isinstance(e, Event))
        skipped = tuple(e for e in changes.values() if isinstance(e, SkippedEvent))
        removed = () if full else tuple(i for i, e in changes.items() if e is None)
        if skipped:
            log.warning("calendar %s: %d event(s) skipped", self.user, len(skipped))
        log.debug("calendar %s: %d changed, %d removed", self.user, len(events), len(removed))
        return SyncResult(events, removed, encode_cursor(delta, window), full, skipped)

    def _merge(self, changes: dict[str, Event | SkippedEvent | None], item: Any) -> None:
        if not isinstance(item, dict):
            return
        event_id = str(item.get("id") or "")
        if not event_id:
            return
        # A replayed or later change of the same id replaces the earlier one: merging is idempotent.
        changes.pop(event_id, None)
        if "@removed" in item:
            changes[event_id] = None
            return
        if item.get("type") == "seriesMaster":
            return  # calendarView lists the occurrences themselves
        changes[event_id] = self._event(event_id, item)

    def _event(self, event_id: str, item: dict[str, Any]) -> Event | SkippedEvent:
        """One event read on its own: any trouble makes it a ``SkippedEvent``, never a failure."""
        try:
            attendees = item.get("attendees")
            if isinstance(attendees, list) and len(attendees) > limits.MAX_ATTENDEES:
                raise _Skip(limits.REASON_TOO_MANY_ATTENDEES)
            if len(json.dumps(item, ensure_ascii=False, default=str)) > limits.MAX_EVENT_BYTES:
                raise _Skip(limits.REASON_TOO_BIG)
            series = self._series_uid(item)
            event = event_from_graph(item, self.zone, self.mailbox, series, self.country)
            problem = limits.event_problem(event)
            if problem is not None:
                raise _Skip(problem)
            return limits.bounded(event)
        except _Skip as skip:
            reason = skip.reason
        except (TransientError, AuthError, ConfigError):
            raise  # the mailbox's trouble, not this event's
        except (PermanentError, LookupError, ValueError, TypeError, AttributeError, OverflowError):
            reason = REASON_UNREADABLE
        log.debug("calendar %s: event %s skipped: %s", self.user, event_id, reason)
        return SkippedEvent(event_id, reason)

    def _series_uid(self, item: dict[str, Any]) -> str | None:
        """The iCalUId of an occurrence's series master (one request per series, then cached)."""
        master = item.get("seriesMasterId")
        if item.get("type") not in ("occurrence", "exception") or not master:
            return None
        master = str(master)
        if master not in self._series:
            response = self.client.request(
                "GET",
                f"{self._base}/events/{quote(master, safe='')}",
                mailbox=self.user,
                permission="Calendars.Read",
                params={"$select": "iCalUId"},
                expect=frozenset({404}),
            )
            if response.status_code == 404:
                return None
            self._series[master] = str(json_of(response, "a series master").get("iCalUId") or "")
        return self._series[master] or None

    def _refused(self, response: Any) -> None:
        code, message = error_of(response)
        if response.status_code == 410 or code.lower() in EXPIRED_CODES:
            raise CursorExpired(
                f"Microsoft 365 no longer accepts the calendar cursor ({code or 410})"
            )
        if response.status_code == 404:
            raise ConfigError(
                f"Microsoft 365 has no calendar for {self.user} (404 {code}): check the mailbox "
                "address or the source's user option"
            )
        raise PermanentError(
            f"Microsoft 365 refused the calendar sync ({response.status_code} {code}: {message[:200]})"
        )

    def close(self) -> None:
        """Let go of the shared client. Safe to call more than once."""
        if not self._closed:
            self._closed = True
            release(self.client)
